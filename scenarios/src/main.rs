//! `netpoll-sim`: run, sweep, replay, trace and shrink netpoll's workloads, and merge the
//! outputs of sharded sweeps. The command line itself is [`netpoll_scenarios::cli`], which a
//! user's own binary can serve over its own registry of workloads.
//!
//! The binary allocates through [`HugePages`]: its large slabs and tables (2 MiB or more) get
//! transparent huge pages, which cuts the TLB misses of runs with many connections open at
//! once. `NETPOLL_HUGE_PAGES=0` turns that off (everything goes to the system allocator); any
//! value other than `0` or `1` is an error (exit status 2). [`netpoll_scenarios::cli::main`]
//! installs the CPU's prefetch instruction as the cache hint of `netpoll::hint`
//! ([`netpoll_realnet::cache`]).

use std::process::ExitCode;

use netpoll_realnet::alloc::HugePages;
use netpoll_scenarios::registry::Registry;

#[global_allocator]
static ALLOC: HugePages = HugePages::new();

fn main() -> ExitCode {
    if let Err(e) = ALLOC.configure_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    netpoll_scenarios::cli::main(Registry::builtin())
}

//! `netpoll-sim`: run, sweep, replay, trace and shrink netpoll's workloads, and merge the
//! outputs of sharded sweeps. The command line itself is [`netpoll_scenarios::cli`], which a
//! user's own binary can serve over its own registry of workloads.

use std::process::ExitCode;

use netpoll_scenarios::registry::Registry;

fn main() -> ExitCode {
    netpoll_scenarios::cli::main(Registry::builtin())
}

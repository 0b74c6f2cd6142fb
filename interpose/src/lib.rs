//! # netpoll-interpose: unmodified mio, tokio and std::net programs on the simulated kernel
//!
//! Linking this crate into a binary replaces libc's socket, epoll, clock and randomness calls
//! for the whole executable (std, mio and tokio included) with definitions that send the calls
//! of a thread inside [`run`] to a [`netpoll_sim::Sim`], and forward everything else to glibc.
//! A tokio `current_thread` runtime or a mio event loop then runs on the simulated kernel
//! unchanged: deterministic by seed, in virtual time, under the kernel's fault plans.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! let sim = netpoll_sim::Sim::new(7);
//! let echoed = netpoll_interpose::run(&sim, || {
//!     let l = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
//!     let (mut s, _) = l.accept().unwrap();
//!     c.write_all(b"ping").unwrap();
//!     let mut buf = [0; 4];
//!     s.read_exact(&mut buf).unwrap();
//!     buf
//! });
//! assert_eq!(&echoed, b"ping");
//! println!("sim calls: {:?}", sim.fingerprint());
//! ```
//!
//! (The examples `tokio_echo` and `mio_echo` run an echo server with N clients on either
//! kernel; `tests/interpose.rs` is the test binary, `tests/threads.rs` the one for threads.)
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | this file | [`run`]: puts the calling thread on a simulated kernel for a closure |
//! | `state.rs` | the thread's run, and descriptor numbering: routing by number |
//! | `calls/mod.rs` | what every interposed call shares: routing, errno, the panic guard, buffers |
//! | `calls/{epoll,socket,data,fd,time,thread}.rs` | the `#[no_mangle] extern "C"` definitions, one file per call family |
//! | `calls/limits.rs` | the one place that refuses what a run does not support, naming the limitation |
//! | `waits.rs` | the async lost-wakeup oracle: what the program waits for on each descriptor |
//! | `check.rs` | [`CheckInterposed`]: `Check::run_tokio`, `run_interposed`, and with threads `run_tokio_threads`, `run_threads_interposed` (feature `check`, on by default) |
//! | `real.rs` | glibc's definitions through `dlsym(RTLD_NEXT)`, raw `syscall` fallbacks |
//! | `auto.rs` | `NETPOLL_SIM=<seed>`: every new thread (every libtest test) on a kernel of its own; `NETPOLL_SIM=threads:<seed>`: every test as a threaded run |
//! | `replay.rs` | the replay line of a failing `NETPOLL_SIM` test: `--test <target>` or `--lib`, `--exact <path>` |
//! | `kernel.rs` | the kernel a run drives: a `Sim` of its own, or the threads' shared `ThreadedSim` |
//! | `threads.rs` | [`run_threads`]; `pthread_create`, `pthread_join`, `pthread_setname_np` on its threads |
//! | `futex.rs` | `syscall(SYS_futex)`: waits and wakes as switch points; timed waits in virtual time |
//!
//! ## Which binaries get the interposer
//!
//! Only those that link this crate: its own tests and examples, and a user's test binary that
//! depends on it. No other crate of the workspace depends on it; `nm <binary> | grep ' T
//! epoll_wait$'` finds the definitions in `target/debug/deps/interpose-*` and in no other
//! test binary of `cargo test --workspace`.
//!
//! ## Existing test suites: `NETPOLL_SIM`
//!
//! With `NETPOLL_SIM=<seed>` set, every thread started from a thread that is not on a run gets
//! a simulated kernel of its own, made at its first call that needs one and seeded with the
//! seed mixed with the thread's name. libtest runs each test on a thread named after it, so
//! a suite of `#[test]` or `#[tokio::test]` functions (tokio's default test runtime is
//! `current_thread`) runs on the simulated kernel unchanged, each test with a seed that does
//! not depend on the order or the parallelism. A failing test prints its seed and the replay
//! line, which reruns that test alone: `NETPOLL_SIM=<seed> cargo test --test <target> --
//! --exact <test path>` for an integration test (`tests/<target>.rs`; the target is read from
//! the binary's name, cargo's `<target>-<hash>`), `--lib` for the library's unit tests, and no
//! selector when the package's layout does not say which target built the binary. These kernels use [`netpoll_sim::SimConfig::linux_loopback`]. A value that is not a
//! number stops the program with a message and exit status 2. A test file that never names the
//! crate links it with one line, `extern crate netpoll_interpose;`. tokio's 55 TCP tests run
//! this way: 30 pass on the sim, and each of the others fails with a message naming what is
//! not supported (BENCHMARKS.md lists them).
//!
//! `NETPOLL_SIM=threads:<seed>` runs each test as simulated threads instead (as
//! [`run_threads`] does): the test, and every thread it starts (tokio's `multi_thread`
//! workers and blocking pool, `std::thread::spawn`), share a kernel of its own, and the seed
//! interleaves them (`NETPOLL_SCHEDULE=random` or `pct:DEPTH:STEPS` picks the policy). So
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` tests run on the sim without
//! an edit (`tests/unchanged_threads.rs`). Each run's seed is the variable's (a test's name is
//! not known before its thread starts). libtest's parallelism needs no `--test-threads 1`: the
//! runs are admitted one at a time ([`run_threads`]), so each test's schedule is its seed's
//! alone. A failing test prints its replay line
//! (`NETPOLL_SIM=threads:<seed> [NETPOLL_SCHEDULE=...] cargo test --test <target> -- --exact
//! <test path>`); a run the scheduler fails (a deadlock, reported with each thread's blocking
//! call) prints the report and the replay line and ends the test process with status 101: the
//! test's threads cannot be unwound, and libtest would wait for them for ever.
//!
//! ## Loopback timing
//!
//! On Linux, loopback TCP data is readable at the peer before `write` returns. After every
//! interposed call on a run, the kernel delivers whatever is due at that instant
//! (`Sim::settle`); with [`netpoll_sim::SimConfig::linux_loopback`] (zero latency) that is
//! Linux's timing, which programs and tests written against real loopback assume; it is the
//! default under `NETPOLL_SIM`. A kernel made with [`Sim::new`] keeps its latency model, under
//! which each seed orders deliveries differently (and a fault plan's `latency` chooses
//! another): that is how [`run`] explores schedules. `tests/interpose.rs` checks both against
//! real loopback.
//!
//! ## How a call is routed
//!
//! A descriptor the simulated kernel created is shown to the program as
//! [`SIM_BASE`]` + (run slot << 20) + n`, far above any real descriptor. A call on a number
//! below [`SIM_BASE`] goes to glibc unchanged, on every thread. A call on a simulated
//! descriptor goes to the calling thread's kernel; one of another thread's run fails with
//! `EBADF` and a message, one of a run that has ended fails with `EBADF`, except `close` and
//! `fcntl(F_GETFD)`, which succeed quietly (std's debug check of owned descriptors calls them
//! when a socket outlives its run). Calls that create descriptors (`socket`, `epoll_create1`,
//! `eventfd`, `pipe2`, `socketpair`, `accept4`, `dup`) go to the kernel on a run's thread.
//!
//! ## Time and randomness on a run
//!
//! - `clock_gettime` of the monotonic clocks reads the kernel's virtual clock (offset by
//!   [`MONOTONIC_START`]); the real-time clocks read [`REALTIME_START`] plus virtual time.
//! - `nanosleep` and `clock_nanosleep` (`std::thread::sleep`) let virtual time pass.
//! - A loop that waits without blocking (zero-timeout `epoll_wait` or `poll`, `sched_yield`)
//!   lets virtual time move to the next delivery after a short run of idle calls.
//! - Timed futex waits (`recv_timeout`, `Condvar::wait_timeout`, `thread::park_timeout`) follow
//!   virtual time: on [`run`], nothing on the run can wake the thread, so a wait whose word
//!   still holds the expected value lets virtual time pass to its deadline and times out (a
//!   wake from a thread that is not on the run is not seen). On [`run_threads`], the thread
//!   blocks in the scheduler; time reaches its deadline when no thread can run. An untimed
//!   futex wait on [`run`] goes to Linux.
//! - `getrandom` draws from the run's own ChaCha stream, so std's `RandomState` keys made on
//!   a thread's first hash map, if that is on a run, follow the seed.
//! - tokio's own randomness (the branch order of `select!` without `biased;`) comes from the
//!   runtime's generator, which tokio 1.54 seeds in `Builder::new_*` by hashing a process-wide
//!   counter with a `RandomState` (whose keys std makes once per thread, then increments): it
//!   depends on how many runtimes and hash maps the process made before, not on the seed, and
//!   no interposed call can reset it. What users must set: build with
//!   `RUSTFLAGS="--cfg tokio_unstable"`; [`tokio_runtime`] (and so
//!   [`CheckInterposed::run_tokio`]) then calls `Builder::rng_seed` with the run's seed, and
//!   one seed gives one branch order, two seeds two (`tests/select_seed.rs`, run by CI in a
//!   target directory of its own). A test that builds its own runtime calls `rng_seed` itself,
//!   or writes `biased;`.
//!
//! ## Threads: [`run_threads`]
//!
//! [`run`] is one thread. [`run_threads`] runs a closure and every thread it starts (through
//! `pthread_create`, so `std::thread::spawn`, tokio's multi-thread runtime and its
//! `spawn_blocking` pool) as simulated threads of `netpoll-threads`: real OS threads of which
//! exactly one runs at a time, sharing one kernel, with the seed choosing who runs at each
//! switch point. The switch points are every call on the kernel, every futex wait and wake
//! (std's `Mutex`, `Condvar`, `park` and channels), `sched_yield`, thread creation and
//! `pthread_join`. A thread blocked in `epoll_wait`, a futex or a join is not runnable until
//! another thread (or virtual time) wakes it; all threads blocked with nothing in flight is a
//! deadlock, reported with each thread's blocking call. The same seed gives the same schedule
//! and the same kernel trace in every process (`tests/threads.rs` checks it in two); another
//! seed gives another interleaving.
//!
//! ```
//! let out = netpoll_interpose::run_threads(
//!     netpoll_threads::Runner::new(5),
//!     netpoll_sim::Sim::new(5),
//!     || {
//!         let rt = tokio::runtime::Builder::new_multi_thread()
//!             .worker_threads(2)
//!             .enable_all()
//!             .build()
//!             .unwrap();
//!         rt.block_on(async { tokio::task::spawn_blocking(|| 6 * 7).await.unwrap() })
//!     },
//! )
//! .unwrap();
//! assert_eq!(out.value, 42);
//! ```
//!
//! Only threads created by a simulated thread join the scheduler. The test harness's threads,
//! glibc's and std's own helpers and threads started outside the run keep running on Linux;
//! one that calls on a run's descriptor gets `EBADF` and a message. A futex wake from such a
//! thread does not reach a simulated thread waiting in the scheduler (the wait must be timed
//! to see it). The scheduler's misuse reports apply: a simulated thread that spins without a
//! switch point, or blocks in something the scheduler cannot see (a glibc lock, a blocking
//! call on a real descriptor), is reported by the watchdog with its last call. A run's threads
//! never unwind through the interposer's C frames: when the run fails, those still blocked are
//! left waiting, and [`run_threads`] returns the failure.
//!
//! ## Over many seeds, under faults
//!
//! [`CheckInterposed`] gives `netpoll_scenarios::check::Check` two more ways to run:
//! `run_tokio(|| async { ... })` (a fresh `current_thread` runtime with every driver per seed,
//! as `#[madsim::test]` does) and `run_interposed(|| ...)` (std::net or mio code). Each seed
//! runs on a fresh kernel under the check's fault plan and oracles; a failure prints the seed,
//! the oracle, the replay line and the shrunk fault plan. `#[netpoll::test(tokio, seeds = ..,
//! faults = "chaos")]` on an `async fn` writes the `#[test]` around it
//! (`#[netpoll::test(interposed)]` for a plain function). The examples take `--faults
//! none|chaos|swarm|loopback` or one knob alone.
//!
//! With threads: `run_tokio_threads(workers, || async { ... })` (a `multi_thread` runtime per
//! seed, what `#[tokio::test(flavor = "multi_thread")]` runs) and `run_threads_interposed(||
//! ...)` (std threads) run each seed inside [`run_threads`], interleaved by the seed under the
//! check's `schedule` (`NETPOLL_SCHEDULE`); a deadlock fails the seed with each thread's
//! blocking call, and the replay line names the schedule. `#[netpoll::test(tokio, threads,
//! workers = 2)]` writes the test.
//!
//! ## The lost-wakeup oracle for async programs
//!
//! The kernel's scan judges, at quiescence (the runtime asleep in `epoll_wait` with nothing in
//! flight), the registrations that are ready with no event queued, by what the program wants
//! on each. For a program on a run, what it wants comes from its own calls (`waits.rs`): after
//! a read that got `EAGAIN` or fewer bytes than asked, it wants `IN`; after a write that got
//! `EAGAIN` or took part of the buffer, `OUT`; after `accept` got `EAGAIN`, `IN`; after a
//! `connect` in progress, `OUT` until `SO_ERROR` is read. That is tokio's contract: those are
//! exactly the results after which `PollEvented` clears its cached readiness and parks the
//! task on the next edge. So a registration that is ready for what the program last waited
//! for, whose edge was reported and that nobody read since, is an edge that woke no task: a
//! future that returned `Pending` without registering its waker. A program that gets `EAGAIN`
//! and then, on purpose, waits for something else (polling with `try_read` and a timer) is
//! reported too: switch the oracle off for it (`Check::oracles`, or
//! [`quiet_lost_wakeup_scan`] inside the run).
//!
//! ## Not supported
//!
//! - **Threads on [`run`] and under `NETPOLL_SIM=<seed>`.** Such a run is one thread:
//!   `pthread_create` on it fails with `EAGAIN` and a message naming the limitation and
//!   [`run_threads`]: tokio's `spawn_blocking`, file I/O, name resolution and multi-thread
//!   runtime stop with tokio's own error naming the failed spawn ("OS can't spawn worker
//!   thread"), and the limitation. Under [`run_threads`], the threaded checks and
//!   `NETPOLL_SIM=threads:<seed>` they work.
//! - **Futex commands** other than `FUTEX_WAIT`, `FUTEX_WAKE` and their `_BITSET` forms
//!   (requeue, `WAKE_OP`, priority inheritance) fail with `ENOSYS` and a message on a simulated
//!   thread. std and tokio use none of them.
//! - **Signals.** tokio's signal driver (features `signal`, `process`) keeps one socket pair
//!   for the whole process: made on the first run's kernel, it is a dead descriptor for every
//!   later runtime; its `F_DUPFD_CLOEXEC` fails with `EBADF` and a message naming this
//!   (`Failed building the Runtime: EBADF`). Build tokio without those features for programs
//!   on the sim.
//! - **Name resolution.** `getaddrinfo` of a name fails with `EAI_FAIL` and a message; numeric
//!   IPv4 addresses work.
//! - **What the kernel does not model:** IPv6, UDP, unix sockets by path, `recv` flags other
//!   than `MSG_PEEK`, `MSG_DONTWAIT` and `MSG_NOSIGNAL`, `F_SETFL` flags other than
//!   `O_NONBLOCK`, control messages, `dup2`/`dup3` onto a simulated descriptor, socket options
//!   other than `SO_LINGER`, `SO_ERROR`, `SO_TYPE` and the remembered `SO_REUSEADDR`,
//!   `SO_REUSEPORT`, `SO_KEEPALIVE` and `TCP_NODELAY`. Each fails with the errno Linux uses
//!   for an unsupported request and a line on stderr, never a panic or a hang.
//! - **Static builds** work for the forwarded calls (raw system calls), but have not been
//!   tested.
//! - Descriptors of more than 1,024 runs alive at once.

mod auto;
mod calls;
#[cfg(feature = "check")]
mod check;
mod futex;
mod kernel;
mod real;
mod replay;
mod state;
mod threads;
mod waits;

use netpoll_sim::Sim;

pub use auto::VAR as SEED_VAR;
pub use calls::{MONOTONIC_START, REALTIME_START};
#[cfg(feature = "check")]
pub use check::{tokio_runtime, tokio_runtime_threads, CheckInterposed};
pub use state::{sim_fd, SIM_BASE};
pub use threads::run_threads;

/// Runs `f` with the calling thread on `sim`: every socket, epoll, eventfd and pipe it creates
/// is `sim`'s, its clocks read `sim`'s virtual time, and its sleeps pass virtually. Returns
/// what `f` returns; a panic in `f` leaves the thread off the simulated kernel and goes on.
///
/// Runs may nest (the inner one wins until it returns) and may go on on several threads at
/// once, one kernel each.
///
/// The kernel's lost-wakeup scan judges `sim`'s registrations by what the program's own calls
/// say it waits for (a task that got `EAGAIN` waits for the next edge: see "The lost-wakeup
/// oracle for async programs" above), not by their interest: runtimes that cache readiness
/// (mio's users, tokio) keep an edge for a task that has not asked yet.
///
/// # Panics
/// If 1,024 runs are alive at once in the process.
///
/// # Examples
///
/// ```
/// let sim = netpoll_sim::Sim::new(1);
/// let t = netpoll_interpose::run(&sim, || {
///     std::thread::sleep(std::time::Duration::from_secs(10));
///     std::time::Instant::now()
/// });
/// assert_eq!(sim.now_ns(), 10_000_000_000); // ten virtual seconds, in no real time
/// # let _ = t;
/// ```
pub fn run<T>(sim: &Sim, f: impl FnOnce() -> T) -> T {
    keep_symbols();
    let slot = state::claim_slot().expect("at most 1,024 netpoll_interpose runs alive at once");
    let cur = state::Current::new(sim, slot, sim.seed());
    struct Release(u32);
    impl Drop for Release {
        fn drop(&mut self) {
            state::release_slot(self.0);
        }
    }
    let _release = Release(slot);
    let _entered = state::enter(&cur);
    f()
}

/// Switches the async lost-wakeup judgement off for `sim`: its scan takes the program to wait
/// for nothing. For a program that gets `EAGAIN` and then waits for something else on purpose
/// (it polls with `try_read` and a timer); call it inside [`run`], after the run began.
///
/// ```
/// let sim = netpoll_sim::Sim::new(1);
/// netpoll_interpose::run(&sim, || netpoll_interpose::quiet_lost_wakeup_scan(&sim));
/// ```
pub fn quiet_lost_wakeup_scan(sim: &Sim) {
    sim.set_wants(|_| netpoll::sys::Events::NONE);
}

/// The last feature the calling thread's run does not support that the program ran into (a
/// thread, a host name, a descriptor of an ended run), with what in tokio needs it; taken, so
/// the next call returns `None` until another refusal. `None` off a run.
///
/// ```
/// let sim = netpoll_sim::Sim::new(1);
/// netpoll_interpose::run(&sim, || {
///     assert!(std::thread::Builder::new().spawn(|| ()).is_err());
///     let why = netpoll_interpose::take_limitation().unwrap();
///     assert!(why.contains("spawn_blocking"), "{why}");
/// });
/// ```
pub fn take_limitation() -> Option<String> {
    state::existing().and_then(|c| c.limit.borrow_mut().take())
}

/// Whether the calling thread is inside [`run`].
pub fn on_sim() -> bool {
    state::current().is_some()
}

/// Makes sure the linker keeps every interposed definition in a binary that calls [`run`],
/// whichever object file of this crate each one landed in.
fn keep_symbols() {
    let table: &[*const ()] = &[
        calls::epoll_create1 as *const (),
        calls::epoll_create as *const (),
        calls::epoll_ctl as *const (),
        calls::epoll_wait as *const (),
        calls::epoll_pwait as *const (),
        calls::eventfd as *const (),
        calls::socket as *const (),
        calls::socketpair as *const (),
        calls::bind as *const (),
        calls::listen as *const (),
        calls::accept as *const (),
        calls::accept4 as *const (),
        calls::connect as *const (),
        calls::getsockname as *const (),
        calls::getpeername as *const (),
        calls::getsockopt as *const (),
        calls::setsockopt as *const (),
        calls::read as *const (),
        calls::write as *const (),
        calls::recv as *const (),
        calls::recvfrom as *const (),
        calls::send as *const (),
        calls::sendto as *const (),
        calls::readv as *const (),
        calls::writev as *const (),
        calls::recvmsg as *const (),
        calls::sendmsg as *const (),
        calls::shutdown as *const (),
        calls::close as *const (),
        calls::dup as *const (),
        calls::dup2 as *const (),
        calls::dup3 as *const (),
        calls::epoll_pwait2 as *const (),
        calls::pipe as *const (),
        calls::pipe2 as *const (),
        calls::fcntl as *const (),
        calls::ioctl as *const (),
        calls::poll as *const (),
        calls::clock_gettime as *const (),
        calls::nanosleep as *const (),
        calls::clock_nanosleep as *const (),
        calls::sched_yield as *const (),
        calls::getrandom as *const (),
        calls::pthread_create as *const (),
        threads::pthread_join as *const (),
        threads::pthread_setname_np as *const (),
        futex::syscall as *const (),
        calls::getaddrinfo as *const (),
    ];
    std::hint::black_box(table);
}

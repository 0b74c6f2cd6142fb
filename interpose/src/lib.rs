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
//! | `real.rs` | glibc's definitions through `dlsym(RTLD_NEXT)`, raw `syscall` fallbacks |
//! | `auto.rs` | `NETPOLL_SIM=<seed>`: every new thread (every libtest test) on a kernel of its own |
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
//! line. These kernels use [`netpoll_sim::SimConfig::linux_loopback`]. A value that is not a
//! number stops the program with a message and exit status 2. A test file that never names the
//! crate links it with one line, `extern crate netpoll_interpose;`. tokio's 55 TCP tests run
//! this way: 30 pass on the sim, and each of the others fails with a message naming what is
//! not supported (BENCHMARKS.md lists them).
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
//! - `getrandom` draws from the run's own ChaCha stream, so std's `RandomState` keys made on
//!   the run follow the seed. tokio seeds its runtime (the branch order of `select!`) from
//!   `RandomState`: create the runtime inside [`run`] and its choices follow the seed. With
//!   `--cfg tokio_unstable`, `Builder::rng_seed` fixes it explicitly.
//!
//! ## Over many seeds, under faults
//!
//! [`run`] takes any [`Sim`], so a sweep is a loop over seeds and fault plans
//! (`SimConfig { faults: FaultPlan::chaos(), .. }`; the examples take `--faults
//! none|chaos|swarm|loopback`). The one-call check (`netpoll_scenarios::check::Check`, being
//! written on another branch) hands its closure a `&Sim` per seed; a tokio program runs under it
//! as `Check::new().run(|sim| netpoll_interpose::run(sim, || program()))`, judged by the same
//! oracles. That integration, and the `#[netpoll::test]` attribute for async tests, are not
//! done here.
//!
//! ## Not supported
//!
//! - **Threads on [`run`] and under `NETPOLL_SIM`.** Such a run is one thread: `pthread_create`
//!   on it fails with `EAGAIN` and a message naming [`run_threads`], and tokio's
//!   `spawn_blocking`, file I/O, name resolution and multi-thread runtime stop with tokio's
//!   own error naming the failed spawn. Under [`run_threads`] they work.
//! - **Futex commands** other than `FUTEX_WAIT`, `FUTEX_WAKE` and their `_BITSET` forms
//!   (requeue, `WAKE_OP`, priority inheritance) fail with `ENOSYS` and a message on a simulated
//!   thread. std and tokio use none of them.
//! - **Signals.** tokio's signal driver (features `signal`, `process`) keeps one socket pair
//!   for the whole process: made on the first run's kernel, it is a dead descriptor for every
//!   later runtime (`Failed building the Runtime: EBADF`). Build tokio without those features
//!   for programs on the sim.
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
mod futex;
mod kernel;
mod real;
mod state;
mod threads;

use std::cell::{Cell, RefCell};

use netpoll_sim::rng::{stream, Stream};
use netpoll_sim::Sim;

pub use auto::VAR as SEED_VAR;
pub use calls::{MONOTONIC_START, REALTIME_START};
pub use state::{sim_fd, SIM_BASE};
pub use threads::run_threads;

/// Runs `f` with the calling thread on `sim`: every socket, epoll, eventfd and pipe it creates
/// is `sim`'s, its clocks read `sim`'s virtual time, and its sleeps pass virtually. Returns
/// what `f` returns; a panic in `f` leaves the thread off the simulated kernel and goes on.
///
/// Runs may nest (the inner one wins until it returns) and may go on on several threads at
/// once, one kernel each.
///
/// The kernel's own lost-wakeup scan is switched off for `sim` ([`quiet_lost_wakeup_scan`]):
/// it judges a registration by its interest, and runtimes that cache readiness (mio's users,
/// tokio) keep an edge for a task that has not asked yet, which that judgement would call lost.
/// The hang, livelock and leak oracles stay on. A lost-wakeup oracle that asks the runtime what
/// its tasks wait for is future work (issue 11, part 5).
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
    quiet_lost_wakeup_scan(sim);
    let slot = state::claim_slot().expect("at most 1,024 netpoll_interpose runs alive at once");
    let cur = state::Current {
        sim: kernel::Kernel::Single(sim),
        slot,
        rng: RefCell::new(stream(sim.seed(), Stream::Getrandom)),
        idle: Cell::new(0),
        opts: state::Opts::default(),
        events: RefCell::new(Vec::new()),
    };
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

/// Tells `sim`'s lost-wakeup scan that the program waits for nothing it could see: the kernel
/// cannot know which cached edges an unmodified runtime's tasks still wait for.
pub fn quiet_lost_wakeup_scan(sim: &Sim) {
    sim.set_wants(|_| netpoll::sys::Events::NONE);
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

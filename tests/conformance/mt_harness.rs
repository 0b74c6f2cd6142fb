//! The threaded two-arm harness: a case runs on real threads over real epoll and on simulated
//! threads (`netpoll-threads`) over the simulated kernel, records what it observes, and the logs
//! must be identical (and meet the case's expectations, as in `harness.rs`).
//!
//! A case is `fn name<P: Threads>(p: &P, log: &mut Log)`. It starts threads with
//! [`Threads::spawn`] (or [`bg`]), and calls [`Threads::settle`] where it asserts who is still
//! blocked:
//! - real arm: `settle` waits (wall clock, polling `/proc/self/task/<tid>/{stat,syscall}`) until
//!   every thread the case started and that has not finished sleeps in a blocking system call;
//! - sim arm: `netpoll_threads::settle`, which runs until every other thread is blocked and the
//!   kernel has delivered what is in flight.
//!
//! Cases assert only what Linux makes deterministic once the threads are settled: how many
//! waiters returned, what each got, who is still blocked. Every wait of the real arm is bounded
//! (waits use [`BLOCK_MS`] timeouts or are released by a later step of the case), and the real
//! arm runs under a wall-clock limit, so a disagreement fails, never hangs. The sim arm runs under
//! [`SIM_SEEDS`] consecutive seeds from the case's seed (even seeds with uniform random choices,
//! odd ones with PCT priority schedules of depth 3), each a different interleaving, and every
//! seed must give the same log.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netpoll::{Fd, Poller};
use netpoll_threads::Policy;

use crate::harness::{compare, new_sim, panic_text, seed, val, ArmResult, Log, Waited, FD_TABLE};

/// The real arm's poller: shared by the case's threads.
pub type RealT = Arc<netpoll_realnet::RealNet>;
/// The sim arm's poller.
pub type SimT = netpoll_threads::ThreadedSim;

/// How long a waiter that must stay blocked waits (milliseconds), on both arms.
pub const BLOCK_MS: i32 = 300;

/// How many seeds (interleavings) the sim arm runs.
pub const SIM_SEEDS: u64 = 4;

/// The real arm's wall-clock limit.
const REAL_LIMIT: Duration = Duration::from_secs(20);

/// A kernel shared by threads, with a way to start them and to wait until they block.
pub trait Threads: Poller + Clone + Send + Sync + 'static {
    /// Starts `f` on a new thread of this arm.
    fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Joiner<T>;

    /// Waits until every thread started by the case and not finished is blocked in the kernel.
    fn settle(&self);
}

/// A started thread, to join.
pub struct Joiner<T>(Box<dyn FnOnce() -> T>);

impl<T> Joiner<T> {
    /// Waits for the thread; its panic goes on in the caller.
    pub fn join(self) -> T {
        (self.0)()
    }
}

/// A thread the real arm started: its kernel thread id (0 until it ran) and whether it returned.
struct RealThread {
    tid: Arc<AtomicI32>,
    done: Arc<AtomicBool>,
}

thread_local! {
    /// The threads the case running on this OS thread started (real arm).
    static SPAWNED: RefCell<Vec<RealThread>> = const { RefCell::new(Vec::new()) };
}

/// The system calls a real thread may be blocked in for `settle` (x86_64 and aarch64 numbers
/// from `libc`).
fn blocking_syscall(nr: i64) -> bool {
    [
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_accept4,
        libc::SYS_ppoll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_accept,
    ]
    .contains(&nr)
}

/// The calling thread's kernel thread id, from `/proc/thread-self` (`<pid>/task/<tid>`).
fn own_tid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("/proc/thread-self names the thread")
}

/// Whether kernel thread `tid` of this process sleeps in one of the blocking calls.
fn blocked_in_kernel(tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.trim().chars().next());
    if state != Some('S') {
        return false;
    }
    let Ok(sc) = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    sc.split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok())
        .is_some_and(blocking_syscall)
}

impl Threads for RealT {
    fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Joiner<T> {
        let tid = Arc::new(AtomicI32::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let h = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn({
                let (tid, done) = (tid.clone(), done.clone());
                move || {
                    tid.store(own_tid(), Ordering::SeqCst);
                    let r = f();
                    done.store(true, Ordering::SeqCst);
                    r
                }
            })
            .expect("spawn");
        SPAWNED.with(|s| s.borrow_mut().push(RealThread { tid, done }));
        Joiner(Box::new(move || {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
        }))
    }

    fn settle(&self) {
        let start = Instant::now();
        let mut calm = 0;
        while calm < 3 {
            let all = SPAWNED.with(|s| {
                s.borrow().iter().all(|t| {
                    t.done.load(Ordering::SeqCst) || {
                        let tid = t.tid.load(Ordering::SeqCst);
                        tid != 0 && blocked_in_kernel(tid)
                    }
                })
            });
            calm = if all { calm + 1 } else { 0 };
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "settle: the case's threads did not all block within 10 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Threads for SimT {
    fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Joiner<T> {
        let h = netpoll_threads::spawn(name, f);
        Joiner(Box::new(move || h.join()))
    }

    fn settle(&self) {
        netpoll_threads::settle();
    }
}

/// A background thread of a case, with a flag it sets when its closure returns.
pub struct Bg<T> {
    join: Joiner<T>,
    done: Arc<AtomicBool>,
}

impl<T> Bg<T> {
    /// Whether its call returned (read after [`Threads::settle`]).
    pub fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Its result.
    pub fn join(self) -> T {
        self.join.join()
    }
}

/// Starts `f(p)` on a new thread.
pub fn bg<P: Threads, T: Send + 'static>(
    p: &P,
    name: &str,
    f: impl FnOnce(&P) -> T + Send + 'static,
) -> Bg<T> {
    let done = Arc::new(AtomicBool::new(false));
    let join = p.spawn(name, {
        let (p, done) = (p.clone(), done.clone());
        move || {
            let r = f(&p);
            done.store(true, Ordering::SeqCst);
            r
        }
    });
    Bg { join, done }
}

/// A thread blocked in `epoll_wait(ep, 8 entries, timeout_ms)`.
pub fn bg_wait<P: Threads>(p: &P, name: &str, ep: Fd, timeout_ms: i32) -> Bg<Waited> {
    bg(p, name, move |p| crate::harness::wait(p, ep, 8, timeout_ms))
}

/// A thread blocked in `read(fd, 64 bytes)`: the bytes read, or the errno.
pub fn bg_read<P: Threads>(p: &P, name: &str, fd: Fd) -> Bg<Result<Vec<u8>, i32>> {
    bg(p, name, move |p| {
        let mut buf = [0u8; 64];
        val(&p.read(fd, &mut buf)).map(|n| buf[..n].to_vec())
    })
}

/// How many of `bgs` have returned.
pub fn done_count<T>(bgs: &[&Bg<T>]) -> usize {
    bgs.iter().filter(|b| b.done()).count()
}

fn run_real(case: fn(&RealT, &mut Log)) -> ArmResult {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("real-arm".into())
        .spawn(move || {
            let log = Arc::new(Mutex::new(Log::new("real")));
            let r = catch_unwind(AssertUnwindSafe(|| {
                let p: RealT = Arc::new(netpoll_realnet::RealNet::new());
                case(&p, &mut log.lock().unwrap_or_else(|e| e.into_inner()));
            }));
            let log = Arc::try_unwrap(log)
                .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
                .unwrap_or_else(|_| Log::new("real"));
            let _ = tx.send(ArmResult {
                log,
                panic: r.err().map(|e| panic_text(&*e)),
            });
        })
        .expect("spawn the real arm");
    rx.recv_timeout(REAL_LIMIT).unwrap_or_else(|_| ArmResult {
        log: Log::new("real"),
        panic: Some(format!(
            "the real arm did not finish within {REAL_LIMIT:?}: a thread the case expected to be \
             released is still blocked"
        )),
    })
}

fn run_sim(case: fn(&SimT, &mut Log), seed: u64, policy: Policy) -> ArmResult {
    let log = Arc::new(Mutex::new(Log::new("sim")));
    let r = netpoll_threads::Runner::new(seed)
        .policy(policy)
        .run(new_sim(seed), {
            let log = log.clone();
            move |k| case(&k, &mut log.lock().unwrap_or_else(|e| e.into_inner()))
        });
    let log = Arc::try_unwrap(log)
        .ok()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_else(|| Log::new("sim"));
    ArmResult {
        log,
        panic: r
            .err()
            .map(|f| format!("sim seed {seed} ({policy:?}): {f}")),
    }
}

/// Runs a threaded case on both arms (the sim arm under [`SIM_SEEDS`] seeds) and fails with a
/// report on any difference.
pub fn run(name: &str, real_case: fn(&RealT, &mut Log), sim_case: fn(&SimT, &mut Log)) {
    let _guard = FD_TABLE.read().unwrap_or_else(|e| e.into_inner());
    let real = run_real(real_case);
    let base = seed();
    for s in base..base + SIM_SEEDS {
        // Uniform choices, and PCT's priority schedules with a few preemptions.
        let policy = if s % 2 == 0 {
            Policy::Random
        } else {
            Policy::Pct {
                depth: 3,
                steps: 200,
            }
        };
        let sim = run_sim(sim_case, s, policy);
        compare(name, s, &real, &sim);
    }
}

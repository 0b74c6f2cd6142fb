//! # netpoll-threads: simulated threads on the simulated kernel
//!
//! The races that lose wakeups in real netpollers happen between threads: a worker blocked in
//! `epoll_wait` while another queues a task or closes a descriptor, two workers woken for one
//! edge, a wake write coalesced with a wait that already returned. This crate runs several
//! threads on one [`netpoll_sim::Sim`], interleaved by seed, so that such a race is found by
//! sweeping seeds and replayed from the one that failed.
//!
//! The threads are real OS threads, but exactly one runs at a time: a token is handed from
//! thread to thread at **switch points**: every call on the shared kernel ([`ThreadedSim`], a
//! [`netpoll::Poller`]), [`spawn`], [`JoinHandle::join`], [`park`] and [`yield_now`]. At each
//! one the seed picks who runs next ([`Policy::Random`], or [`Policy::Pct`]'s priority schedules
//! with a bounded number of preemptions). Between switch points a thread runs alone, so code
//! between two calls is atomic as far as the kernel is concerned.
//!
//! ```
//! use netpoll::{sys::*, Poller};
//! use netpoll_sim::Sim;
//! use netpoll_threads::{Policy, Runner};
//!
//! // Two threads write into one pipe: which byte comes first depends on the seed.
//! let first = |seed| {
//!     Runner::new(seed)
//!         .policy(Policy::Random)
//!         .run(Sim::new(seed), |k| {
//!             let [r, w] = k.pipe2(O_NONBLOCK).unwrap();
//!             let t = netpoll_threads::spawn("b", {
//!                 let k = k.clone();
//!                 move || k.write(w, b"b").unwrap()
//!             });
//!             k.write(w, b"a").unwrap();
//!             t.join();
//!             let mut buf = [0u8; 2];
//!             k.read(r, &mut buf).unwrap();
//!             buf[0]
//!         })
//!         .unwrap()
//!         .value
//! };
//! assert_eq!(first(5), first(5)); // one seed, one schedule
//! let both: std::collections::BTreeSet<u8> = (0..20).map(first).collect();
//! assert_eq!(both.len(), 2); // some seeds let `b` go first
//! ```
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | `sched.rs` | the scheduler: the token, thread states, blocking, virtual time, failures (start here) |
//! | `policy.rs` | [`Policy`]: who runs next |
//! | `poller.rs` | [`ThreadedSim`]: the kernel shared by the threads; which calls block; `epoll_wait` on the kernel's wait queues |
//! | `report.rs` | [`Report`] and [`Failure`]: the schedule, one track per thread; replay lines ([`schedule_point`] places a traced call in it) |
//! | [`sync`] | a [`Mutex`](sync::Mutex) and a [`Condvar`](sync::Condvar) whose blocking is the scheduler's |
//! | `futex.rs` | [`futex_wait`] / [`futex_wake`] (with deadlines in virtual time), wakes across runs sharing a word, and [`sleep`] |
//! | [`host`] | hooks for a layer that hosts unmodified code (netpoll-interpose): threads it creates, threads that never unwind |
//! | [`SimThreads`] | the seam that runs `netpoll::rt::MultiRuntime`'s workers here |
//! | `gate.rs` | admission of runs: one run that hosts unmodified code at a time per process ([`Runner::run`], "One run at a time") |
//!
//! ## Blocking and time
//!
//! A call that would block (`epoll_wait` with a timeout, a `read`, `write` or `accept4` on a
//! blocking descriptor, [`JoinHandle::join`], [`park`]) takes its thread off the runnable set.
//! A thread blocked in `epoll_wait` (or `epoll_pwait`, `epoll_pwait2`) waits on the epoll
//! instance's wait queue as in Linux's `ep_poll`: it becomes runnable only when the kernel wakes
//! it (one wakeup of the instance wakes one waiter, the last to block; a level-triggered item
//! left ready after a delivery wakes the next) or its timeout passes, and it holds the instance
//! for the whole call, so another thread's `close(epfd)` does not end the wait. A thread
//! blocked in another call becomes runnable again, and retries its call, as soon as
//! another thread's call may have changed the kernel (any call that succeeded); it too holds
//! the open file while blocked, so a `close` of its descriptor by another thread neither wakes
//! it nor ends the call, which goes on on the file ([`Sim::on_held`](netpoll_sim::Sim::on_held)),
//! as on Linux. Virtual time
//! moves only when no thread is runnable: to the kernel's next queued event (a packet on the
//! loopback network) or the earliest deadline (of an `epoll_wait`, a timed [`futex_wait`] or a
//! [`sleep`]), whichever is first. If there is
//! neither, every thread would wait for ever: the run fails with [`FailureKind::Deadlock`],
//! reporting each thread's blocking call.
//!
//! ## Misuse, reported
//!
//! - A thread that spins without reaching a switch point, or blocks on something the scheduler
//!   cannot see (a `std` mutex another simulated thread holds, a sleep, a channel), holds the
//!   token for ever. A wall-clock watchdog ([`Runner::watchdog`], 10 s by default) reports it
//!   ([`FailureKind::Spin`]) with the thread and its last call. The watchdog only reports: it
//!   never takes part in the schedule. The spinning OS thread is left behind (it cannot be
//!   killed), but the test does not hang.
//! - Threads that keep calling without changing anything (busy-polling with timeout 0, which on
//!   the sim never lets time pass) are stopped deterministically after
//!   [`Runner::max_idle_steps`] such switch points ([`FailureKind::Livelock`]).
//! - A call on the kernel from a thread that is not one of the run's simulated threads fails the
//!   run ([`FailureKind::Outside`]) and panics in that thread.
//!
//! ## Determinism
//!
//! The scheduler draws from its own ChaCha stream of the run's seed (stream number
//! [`SCHED_STREAM`], distinct from the kernel's streams in `netpoll_sim::rng`), so scheduling
//! draws never shift the kernel's. Threads are numbered in spawn order and the policy sees them
//! in that order. The OS decides nothing: a thread runs only when it holds the token.
//!
//! ## Not modelled
//!
//! - Preemption between switch points: code between two calls runs atomically. Memory-model
//!   effects (weak orderings of atomics) are loom's job, not this crate's.
//! - `EINTR` and the `timer_first` fault of the kernel's fault plan in blocking `epoll_wait`:
//!   each try is a non-blocking poll, which never draws those faults.
//! - A blocking `connect`, and a blocking `write` larger than the room in the buffer, let virtual
//!   time pass inside the call as on one thread, instead of blocking in the scheduler.
//! - Wait queues of blocking `read`, `write`, `accept4` and `poll`: every thread blocked in one
//!   retries after any change, and the schedule decides who gets there first. What each returns
//!   matches Linux (one byte, one connection: one thread returns; a hangup: all do), but how
//!   many threads woke and went back to sleep does not.
//! - [`Poller::now`](netpoll::Poller::now) and [`ThreadedSim::with_sim`] are not switch points
//!   and are not checked for the calling thread (they change nothing another thread can see).
//! - Weak memory orderings inside `netpoll::rt`'s lock-free parts (the poll descriptor's
//!   state words): with [`SimThreads`] the runtime's synchronisation points are switch points,
//!   but each point is one atomic step. loom (`--cfg loom`) checks orderings.
//! - `std::sync` primitives: a simulated thread that blocks on a `std::sync::Mutex` held by
//!   another simulated thread stalls the run (reported by the watchdog). Use [`sync`]'s, or
//!   [`park`] / [`Thread::unpark`] or [`futex_wait`] / [`futex_wake`] to build others. Under
//!   `netpoll_interpose::run_threads`, std's own primitives (built on Linux's futex) become
//!   these futex waits and wakes, and `std::thread::spawn` starts simulated threads.

mod futex;
mod gate;
pub mod host;
mod policy;
mod poller;
mod report;
mod sched;
pub mod sync;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netpoll_sim::Sim;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use futex::{futex_wait, futex_wake, sleep, FutexWait};
pub use policy::Policy;
pub use poller::ThreadedSim;
pub use report::{Failure, FailureKind, Report, Step, ThreadReport};
pub use sched::{Call, Tid};

use sched::{current_or_panic, lock, Cfg, Shared, Wait};

/// The scheduler's ChaCha stream number ("thrd" in ASCII), far from the kernel's small ones.
pub const SCHED_STREAM: u64 = 0x7468_7264;

/// One run of simulated threads: its seed, policy and guards.
///
/// # Examples
///
/// ```
/// use netpoll_sim::Sim;
/// use netpoll_threads::{Policy, Runner};
///
/// let out = Runner::new(42)
///     .policy(Policy::Pct { depth: 2, steps: 100 })
///     .run(Sim::new(42), |_k| 1 + 1)
///     .unwrap();
/// assert_eq!(out.value, 2);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Runner {
    seed: u64,
    policy: Policy,
    max_idle_steps: u64,
    watchdog: Duration,
    pin: bool,
    exclusive: bool,
}

/// What a successful run returns.
#[derive(Debug)]
pub struct Outcome<T> {
    /// What the main closure returned.
    pub value: T,
    /// The schedule.
    pub report: Report,
    /// The kernel, for inspection after the run ([`ThreadedSim::with_sim`]).
    pub kernel: ThreadedSim,
}

impl Runner {
    /// A run with `seed`, [`Policy::Random`], at most 100,000 idle switch points in a row and a
    /// 10 s watchdog.
    pub fn new(seed: u64) -> Runner {
        Runner {
            seed,
            policy: Policy::Random,
            max_idle_steps: 100_000,
            watchdog: Duration::from_secs(10),
            pin: true,
            exclusive: false,
        }
    }

    /// Whether the run is admitted alone in the process: it waits (in wall-clock time) until
    /// no other run is alive, and no other run starts until it is over. Off by default, where a
    /// run waits only for exclusive ones and overlaps other shared ones, which cannot change
    /// its schedule (its threads block only in the scheduler, on the run's own objects).
    /// `netpoll_interpose` turns it on for every run it hosts, whose threads block on std's
    /// process-wide futex words; turn it on for runs whose threads share `static`
    /// [`sync`] primitives or futex words with other runs. Either way the schedule is the
    /// seed's: the gate only decides when the run starts (see [`Runner::run`]).
    pub fn exclusive(mut self, on: bool) -> Runner {
        self.exclusive = on;
        self
    }

    /// Whether the run's OS threads are pinned to one CPU (the one the caller runs on when the
    /// run starts); on by default. Only one runs at a time, so this loses no parallelism, and a
    /// hand-off between threads on one CPU costs about half the CPU time of one between CPUs
    /// (`BENCHMARKS.md`, "The multi-threaded netpoller on simulated threads"). It never changes
    /// the schedule: the seed decides who runs. Turn it off when many runs share a process on
    /// several CPUs and each should be free to move.
    pub fn pin_to_one_cpu(mut self, pin: bool) -> Runner {
        self.pin = pin;
        self
    }

    /// Who runs next.
    pub fn policy(mut self, policy: Policy) -> Runner {
        self.policy = policy;
        self
    }

    /// How many switch points in a row may pass with no change to the kernel and no thread
    /// finishing before the run fails as a livelock. Deterministic.
    pub fn max_idle_steps(mut self, n: u64) -> Runner {
        self.max_idle_steps = n;
        self
    }

    /// How long (wall clock) one thread may hold the token without reaching a switch point
    /// before the run fails as spinning. A last-resort guard against hanging the test: it only
    /// reports, it never decides the schedule. It is also how long a run whose threads all
    /// wait on process-wide futex words waits for a wake from outside the run (another run, a
    /// plain OS thread) before it reports a deadlock (see [`host::futex_wait_shared`]).
    pub fn watchdog(mut self, d: Duration) -> Runner {
        self.watchdog = d;
        self
    }

    /// Runs `f` as simulated thread `t0` ("main") on `sim`, with the threads it spawns, until
    /// every one has finished or the run fails.
    ///
    /// # One run at a time
    ///
    /// Runs started at once from several OS threads of a process (the tests of a suite, which
    /// cargo runs in parallel) do not change each other's schedules: a run's schedule is its
    /// seed's and policy's, the same as a lone run's. By construction: a run is admitted by a
    /// process-wide gate before its first thread starts. An [exclusive](Runner::exclusive) run
    /// (every run that hosts unmodified code through `netpoll_interpose`, whose threads block
    /// on std's process-wide futex words) waits in wall-clock time until no other run is
    /// alive, and no run starts while it is alive; other runs overlap each other but not an
    /// exclusive one. The admission is given back when `run` returns, whether the run passed,
    /// failed (a deadlock report, a panic, a spin) or the supervisor panicked. Users need no
    /// lock of their own. Plain OS threads (not on any run) that take a process-wide lock while
    /// a run is alive can still make one of its threads wait there; the run goes on by the
    /// wake from outside (see [`host::futex_wait_shared`]).
    ///
    /// # Errors
    /// A [`Failure`] (deadlock, panic, livelock, spin, call from outside) with every thread's
    /// state, the schedule, and the replay line.
    ///
    /// # Panics
    /// If called from a simulated thread (of this or another live run): the run could not be
    /// admitted before the run it is on ends.
    pub fn run<T, F>(self, sim: Sim, f: F) -> Result<Outcome<T>, Failure>
    where
        T: Send + 'static,
        F: FnOnce(ThreadedSim) -> T + Send + 'static,
    {
        gate::refuse_nested("netpoll_threads::Runner::run");
        // Given back when this returns, on every path.
        let _admission = gate::admit(self.exclusive);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(SCHED_STREAM);
        let cfg = Cfg {
            seed: self.seed,
            policy: self.policy,
            max_idle_steps: self.max_idle_steps,
            cpu: if self.pin {
                netpoll_realnet::process::current_cpu()
            } else {
                None
            },
        };
        let shared = Arc::new(Shared::new(cfg, sim, rng));
        futex::register(&shared);
        let kernel = ThreadedSim {
            shared: Arc::clone(&shared),
        };
        let slot = Arc::new(Mutex::new(None));
        {
            let k = kernel.clone();
            let mut st = lock(&shared.state);
            shared.start(&mut st, Tid(0), Arc::clone(&slot), move || f(k));
        }

        // Supervise: wait for the end, and watch for a thread that never reaches a switch point.
        let mut st = lock(&shared.state);
        let mut seen = st.step;
        let mut since = Instant::now();
        let mut spinning = None;
        let mut stalled_since: Option<Instant> = None;
        while !st.over {
            // While stalled, re-read the words often: a plain thread's unlock may change one
            // without a wake this run can see (its waiter set the word, not that thread).
            let tick = if st.stalled.is_some() {
                Duration::from_millis(1)
            } else {
                self.watchdog.min(Duration::from_millis(100))
            };
            st = shared
                .done
                .wait_timeout(st, tick)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if st.over {
                break;
            }
            if st.stalled.is_some() {
                let t0 = *stalled_since.get_or_insert_with(Instant::now);
                if shared.resume_stalled(&mut st) {
                    stalled_since = None;
                    since = Instant::now();
                } else {
                    let bound = Shared::stall_bound(&st, self.watchdog);
                    if t0.elapsed() >= bound {
                        shared.fail_stalled(&mut st, bound);
                    }
                }
                continue;
            }
            if st.step != seen {
                seen = st.step;
                since = Instant::now();
            } else if since.elapsed() >= self.watchdog {
                let (t, name, last) = Shared::running(&st).expect("a thread holds the token");
                let last = last.map_or("none yet".to_owned(), |c| c.to_string());
                let msg = format!(
                    "thread {t} `{name}` has held the token for {:?} of wall-clock time without \
                     reaching a switch point (its last call: {last}): it spins without making a \
                     call, or blocks on something the scheduler cannot see (a std lock, a \
                     sleep, a channel)",
                    self.watchdog
                );
                shared.fail(&mut st, FailureKind::Spin, msg);
                spinning = Some(t);
            }
        }
        let os = std::mem::take(&mut st.os);
        // A hosted thread that has not finished waits for ever after a failure (it cannot
        // unwind through its host's C frames): it is left behind, like a spinning one.
        let stuck: Vec<Tid> = st
            .threads
            .iter()
            .enumerate()
            .filter(|(_, th)| th.hosted && th.status != sched::Status::Finished)
            .map(|(i, _)| Tid(i as u32))
            .collect();
        let failure = st.failure.clone();
        let names = Shared::names(&st);
        let schedule = std::mem::take(&mut st.schedule);
        let steps = st.step;
        drop(st);
        futex::unregister(&shared);
        for (t, h) in os {
            if Some(t) != spinning && !stuck.contains(&t) {
                // Panics were caught in the thread; nothing is left to propagate.
                let _ = h.join();
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        let value = lock(&slot)
            .take()
            .expect("run: the main thread finished without a value");
        let now_ns = kernel.with_sim(Sim::now_ns);
        Ok(Outcome {
            value,
            report: Report {
                seed: self.seed,
                policy: self.policy,
                names,
                schedule,
                steps,
                now_ns,
            },
            kernel,
        })
    }
}

/// A handle to a simulated thread: [`JoinHandle::join`] waits for it (a switch point).
#[derive(Debug)]
pub struct JoinHandle<T> {
    tid: Tid,
    slot: Arc<Mutex<Option<T>>>,
}

impl<T> JoinHandle<T> {
    /// The thread's id.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// Blocks (in the scheduler) until the thread has finished, and returns its value. If it
    /// panicked, the run has failed and this never returns.
    ///
    /// # Panics
    /// If called from a thread that is not a simulated thread.
    pub fn join(self) -> T {
        let (s, me) = current_or_panic("JoinHandle::join");
        let call = Call {
            op: "join",
            fd: None,
            arg: Some(i64::from(self.tid.0)),
        };
        s.switch(me, call);
        s.block(me, call, Wait::Join(self.tid));
        lock(&self.slot)
            .take()
            .expect("join: the thread finished without a value")
    }
}

/// Starts a simulated thread named `name` running `f`. A switch point: the new thread may run
/// first.
///
/// # Panics
/// If called from a thread that is not a simulated thread (only code inside
/// [`Runner::run`] may spawn).
///
/// # Examples
///
/// ```
/// use netpoll_sim::Sim;
/// use netpoll_threads::{spawn, Runner};
///
/// let out = Runner::new(0).run(Sim::new(0), |_k| {
///     let hs: Vec<_> = (0..3).map(|i| spawn(format!("w{i}"), move || i * 10)).collect();
///     hs.into_iter().map(|h| h.join()).sum::<i32>()
/// }).unwrap();
/// assert_eq!(out.value, 30);
/// ```
pub fn spawn<T, F>(name: impl Into<String>, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (s, me) = current_or_panic("spawn");
    let slot = Arc::new(Mutex::new(None));
    let tid = s.spawn(name.into(), Arc::clone(&slot), f);
    s.switch(
        me,
        Call {
            op: "spawn",
            fd: None,
            arg: Some(i64::from(tid.0)),
        },
    );
    JoinHandle { tid, slot }
}

/// A switch point with no call: lets the seed run another thread.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
pub fn yield_now() {
    yield_in(Call::bare("yield"));
}

/// Blocks the calling simulated thread until every other thread is blocked or finished and
/// the kernel has nothing in flight that falls due before the earliest timeout of a blocked
/// thread: the point where, on a real machine, the other threads have reached their blocking
/// calls and loopback traffic has arrived. Virtual time moves only to deliver what is in
/// flight, never to a thread's timeout. For tests that assert "this waiter is still blocked".
///
/// # Panics
/// If called from a thread that is not a simulated thread.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use netpoll::{sys::*, Poller};
/// use netpoll_sim::Sim;
/// use netpoll_threads::Runner;
///
/// Runner::new(1).run(Sim::new(1), |k| {
///     let [a, b] = k.socketpair(0).unwrap(); // blocking
///     let done = Arc::new(AtomicBool::new(false));
///     let reader = netpoll_threads::spawn("reader", {
///         let (k, done) = (k.clone(), done.clone());
///         move || {
///             let mut buf = [0u8; 8];
///             let n = k.read(b, &mut buf).unwrap();
///             done.store(true, Ordering::Relaxed);
///             n
///         }
///     });
///     netpoll_threads::settle();
///     assert!(!done.load(Ordering::Relaxed)); // blocked in read
///     k.write(a, b"hi").unwrap();
///     netpoll_threads::settle();
///     assert!(done.load(Ordering::Relaxed));
///     assert_eq!(reader.join(), 2);
/// }).unwrap();
/// ```
pub fn settle() {
    let call = Call::bare("settle");
    let (s, me) = current_or_panic(call.op);
    s.block(me, call, Wait::Settle);
}

/// A switch point reported as `call`.
pub(crate) fn yield_in(call: Call) {
    let (s, me) = current_or_panic(call.op);
    s.switch(me, call);
}

/// Blocks the calling simulated thread until [`Thread::unpark`] is called for it (at once if it
/// was called since the last `park`): `std::thread::park`'s contract without spurious wakeups,
/// and the futex-like building block of blocking primitives.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use netpoll_sim::Sim;
/// use netpoll_threads::{current, park, spawn, Runner};
///
/// Runner::new(9).run(Sim::new(9), |_k| {
///     let flag = Arc::new(AtomicBool::new(false));
///     let me = current();
///     let t = spawn("setter", {
///         let flag = flag.clone();
///         move || { flag.store(true, Ordering::SeqCst); me.unpark(); }
///     });
///     while !flag.load(Ordering::SeqCst) {
///         park();
///     }
///     t.join();
/// }).unwrap();
/// ```
pub fn park() {
    park_in(Call::bare("park"));
}

/// [`park`], reported as `call` (`mutex_lock`, `condvar_wait`) in the schedule and in reports.
pub(crate) fn park_in(call: Call) {
    let (s, me) = current_or_panic(call.op);
    s.switch(me, call);
    s.block(me, call, Wait::Park);
}

/// The [`netpoll::rt::Threads`] seam on simulated threads: a
/// [`MultiRuntime`](netpoll::rt::MultiRuntime) built with it (over a [`ThreadedSim`]) starts
/// its workers with [`spawn`], parks them with [`park`], and makes each of its synchronisation
/// points a switch point, so that the seed interleaves the workers there as well as at every
/// kernel call.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use netpoll::rt::{self, MultiRuntime, UnixStream};
/// use netpoll_sim::Sim;
/// use netpoll_threads::{Runner, SimThreads, ThreadedSim};
///
/// let out = Runner::new(3).run(Sim::new(3), |k| {
///     let rt = MultiRuntime::with_threads(k, 2, Arc::new(SimThreads)).unwrap();
///     rt.block_on(async {
///         let (a, b) = UnixStream::<ThreadedSim>::pair().unwrap();
///         let reader = rt::spawn(async move {
///             let mut buf = [0u8; 8];
///             b.read(&mut buf).await.unwrap()
///         });
///         a.write_all(b"hi").await.unwrap();
///         reader.await.unwrap()
///     })
///     .unwrap()
/// }).unwrap();
/// assert_eq!(out.value, 2);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SimThreads;

impl netpoll::rt::Threads for SimThreads {
    fn spawn(&self, name: String, f: Box<dyn FnOnce() + Send>) -> netpoll::rt::Joiner {
        let h = spawn(name, f);
        Box::new(move || h.join())
    }
    fn unparker(&self) -> netpoll::rt::Unparker {
        let t = current();
        Arc::new(move || t.unpark())
    }
    fn park(&self) {
        park_in(Call::bare("rt_park"));
    }
    fn sync_point(&self, what: &'static str) {
        yield_in(Call::bare(what));
    }
}

/// A handle to a simulated thread, for [`unpark`](Thread::unpark).
#[derive(Debug, Clone)]
pub struct Thread {
    shared: Arc<Shared>,
    tid: Tid,
}

impl Thread {
    /// Its id.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// Makes the thread runnable if it is parked; otherwise its next [`park`] returns at once.
    /// Not a switch point (like a futex wake, it is one step of the caller's).
    pub fn unpark(&self) {
        self.shared.unpark(self.tid);
    }
}

/// The calling simulated thread.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
pub fn current() -> Thread {
    let (shared, tid) = current_or_panic("current");
    Thread { shared, tid }
}

/// Where the calling thread is in its run's schedule: its id, and how many entries the
/// schedule ([`Report::schedule`], [`Failure::schedule`]) has at this moment; `None` on a
/// thread that is not a simulated thread. Not a switch point, and it takes no lock, so a
/// kernel trace sink ([`Sim::set_trace_sink`](netpoll_sim::Sim::set_trace_sink)) may call it
/// for each call it records: the call was made by that thread, after those entries and before
/// the next. A trace puts each call on its thread's track and in the schedule's order this way
/// (`netpoll-sim trace` of a threaded run).
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use netpoll::Poller;
/// use netpoll_sim::Sim;
/// use netpoll_threads::{schedule_point, Runner, Tid};
///
/// assert_eq!(schedule_point(), None); // not a simulated thread
/// let sim = Sim::new(4);
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// sim.set_trace_sink(Some(Box::new(move |r| {
///     sink.lock().unwrap().push((r.op.name(), schedule_point()));
/// })));
/// let out = Runner::new(4).run(sim, |k| {
///     let t = netpoll_threads::spawn("piper", {
///         let k = k.clone();
///         move || k.pipe2(0).map(|_| ())
///     });
///     t.join().unwrap();
/// }).unwrap();
/// let seen = seen.lock().unwrap();
/// let (op, Some((tid, after))) = seen[0] else { panic!("no point") };
/// assert_eq!((op, tid), ("pipe2", Tid(1)));
/// // The entry just before the call is the thread's own switch point for it.
/// let entry = out.report.schedule()[after as usize - 1];
/// assert_eq!((entry.tid, entry.call.op), (Tid(1), "pipe2"));
/// ```
pub fn schedule_point() -> Option<(Tid, u64)> {
    // `try_with`: a call from a thread-local destructor may come after this one is gone.
    sched::CURRENT
        .try_with(|c| {
            c.try_borrow().ok().and_then(|c| {
                c.as_ref()
                    .map(|(s, t)| (*t, s.entries.load(std::sync::atomic::Ordering::Relaxed)))
            })
        })
        .ok()
        .flatten()
}

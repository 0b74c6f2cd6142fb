//! The scheduler: one token, handed from thread to thread under a mutex and a condition variable.
//!
//! # The state machine of one simulated thread
//!
//! ```text
//!            spawn                 picked at a switch point
//!   (new) ──────────▶ Runnable ◀──────────────────────────┐
//!                      │   ▲                               │
//!       its call would │   │ another thread changed the    │
//!       block (block)  │   │ kernel / virtual time moved / │
//!                      ▼   │ the joined thread finished /  │
//!                     Blocked   it was unparked            │
//!                      │                                   │
//!   returns from its closure (finish) ──▶ Finished ────────┘ (never leaves)
//! ```
//!
//! Exactly one thread holds the token (`State::current`); every other simulated thread waits on
//! its own condition variable (under the one state mutex) for its id to be chosen, so a hand-off
//! wakes one OS thread, not all of them. The running thread gives the token away only
//! at a switch point ([`Shared::switch`]), when it blocks ([`Shared::block`]) or when it
//! finishes. The choice is made by the [`Chooser`] from the scheduler's own ChaCha stream, over
//! the runnable threads in id order, so one seed gives one schedule whatever the OS does.
//!
//! Virtual time moves only when no thread is runnable: the thread that found nobody to hand the
//! token to asks the kernel for its next event (no later than the earliest `epoll_wait`
//! deadline), and every thread blocked on the kernel retries. If nothing is queued and no thread
//! has a deadline, the run is deadlocked, and the report lists each thread's blocking call.
//!
//! A failure (deadlock, a panic in a thread, a livelock, a spinning thread, a call from outside)
//! is recorded once in `State::failure`; every simulated thread that then waits for the token
//! unwinds instead (with a private payload that prints nothing), and [`Runner::run`] returns the
//! failure.
//!
//! [`Runner::run`]: crate::Runner::run

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle as OsJoinHandle;

use netpoll_sim::Sim;
use rand_chacha::ChaCha8Rng;

use crate::futex::{outside_words, wake_rechecked, Waiter};
use crate::policy::{Chooser, Policy};
use crate::report::{Failure, FailureKind, Step, ThreadReport};

/// A simulated thread's id: its spawn order, `t0` being the closure given to
/// [`Runner::run`](crate::Runner::run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(pub u32);

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// One call at a switch point, as the trace and the failure reports show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// The call's name (`epoll_wait`, `read`, `spawn`, `join`, `park`, `yield`).
    pub op: &'static str,
    /// The descriptor it is about, if any.
    pub fd: Option<i32>,
    /// Its main scalar argument (a timeout, a length, an `epoll_ctl` op), if any.
    pub arg: Option<i64>,
}

impl Call {
    /// A call with no descriptor and no argument.
    pub const fn bare(op: &'static str) -> Call {
        Call {
            op,
            fd: None,
            arg: None,
        }
    }

    /// A call on descriptor `fd` with argument `arg`.
    pub const fn on(op: &'static str, fd: i32, arg: i64) -> Call {
        Call {
            op,
            fd: Some(fd),
            arg: Some(arg),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.fd, self.arg) {
            (Some(fd), Some(a)) => write!(f, "{}(fd {fd}, {a})", self.op),
            (Some(fd), None) => write!(f, "{}(fd {fd})", self.op),
            (None, Some(a)) => write!(f, "{}({a})", self.op),
            (None, None) => write!(f, "{}()", self.op),
        }
    }
}

/// What a blocked thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A change of the kernel's state (another thread's call, or virtual time), and optionally a
    /// deadline in virtual nanoseconds. With `queued`, the thread sits on a kernel wait queue
    /// (`epoll_wait`) and only a wakeup the kernel names ([`Sim::take_woken`]) or the deadline
    /// makes it runnable; otherwise every change does.
    Kernel {
        deadline_ns: Option<u64>,
        queued: bool,
    },
    /// Another simulated thread to finish.
    Join(Tid),
    /// An [`unpark`](crate::Thread::unpark).
    Park,
    /// [`settle`](crate::settle): no other thread runnable and nothing in flight in the kernel
    /// before the earliest deadline.
    Settle,
    /// A [`futex_wake`](crate::futex_wake) on the word it waits on, or virtual time reaching
    /// the deadline (see `futex.rs`).
    Futex { deadline_ns: Option<u64> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Runnable,
    Blocked(Wait, Call),
    Finished,
}

#[derive(Debug)]
pub(crate) struct Th {
    pub(crate) name: String,
    pub(crate) status: Status,
    last: Option<Call>,
    /// An unpark that arrived while the thread was not parked (`std::thread::park`'s token).
    unparked: bool,
    /// The thread waits here for the token: a hand-off wakes exactly the thread chosen.
    cv: Arc<Condvar>,
    /// Run by a host layer (the interposer) that cannot unwind through its callers: after a
    /// failure it stays parked for ever instead, and the supervisor does not join it.
    pub(crate) hosted: bool,
}

/// Payload of the unwinding that ends a simulated thread after the run failed elsewhere.
struct Aborted;

/// The knobs of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cfg {
    pub(crate) seed: u64,
    pub(crate) policy: Policy,
    pub(crate) max_idle_steps: u64,
    /// The CPU every thread of the run is pinned to (they run one at a time), if any.
    pub(crate) cpu: Option<usize>,
}

pub(crate) struct State {
    pub(crate) threads: Vec<Th>,
    pub(crate) current: Option<Tid>,
    pub(crate) chooser: Chooser,
    pub(crate) rng: ChaCha8Rng,
    /// Switch points so far (the PCT clock).
    pub(crate) step: u64,
    /// Switch points since the kernel last changed.
    pub(crate) idle: u64,
    /// Futex wait queues: the word's address -> its waiters, oldest first.
    pub(crate) futex: BTreeMap<usize, VecDeque<Waiter>>,
    /// Set when no thread can run but some wait on a process-wide futex word: the run waits,
    /// token in no thread's hands, for a wake from outside ([`Shared::resume_stalled`]); the
    /// thread that handed off last.
    pub(crate) stalled: Option<Tid>,
    pub(crate) schedule: Vec<Step>,
    pub(crate) failure: Option<Failure>,
    pub(crate) os: Vec<(Tid, OsJoinHandle<()>)>,
    pub(crate) cfg: Cfg,
    pub(crate) finished: usize,
    /// Whether the run is over (every thread finished, or a failure was reported).
    pub(crate) over: bool,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("current", &self.current)
            .field("step", &self.step)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

/// The scheduler and the kernel it guards, shared by every simulated thread of one run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// The supervisor ([`Runner::run`](crate::Runner::run)) waits here for the end of the run.
    pub(crate) done: Condvar,
    /// The simulated kernel. Uncontended: only the thread holding the token locks it. Lock order:
    /// `state` before `sim`, never the reverse.
    pub(crate) sim: Mutex<Sim>,
    /// How many entries the schedule has so far ([`crate::schedule_point`]): a copy of
    /// `State::schedule`'s length that a trace sink can read while the kernel is locked (the
    /// state must not be locked after the kernel).
    pub(crate) entries: AtomicU64,
    /// The addresses that have a futex queue in `state`, for wakes from outside the run: a leaf
    /// lock (taken after `state`, never before it, and nothing is taken under it), so that such
    /// a wake never takes `state` for a word the run does not wait on.
    pub(crate) futex_keys: Mutex<BTreeSet<usize>>,
}

thread_local! {
    /// The scheduler this OS thread belongs to, and its id there.
    pub(crate) static CURRENT: RefCell<Option<(Arc<Shared>, Tid)>> = const { RefCell::new(None) };
    /// Whether this OS thread is a hosted simulated thread (see `Th::hosted`).
    pub(crate) static HOSTED: Cell<bool> = const { Cell::new(false) };
}

/// Locks `m`, ignoring poisoning: the scheduler never panics while it holds a lock (failures
/// are recorded, and threads unwind after releasing it).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The calling OS thread's scheduler and id, if it is a simulated thread.
pub(crate) fn current() -> Option<(Arc<Shared>, Tid)> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The calling simulated thread's scheduler and id; panics (a misuse, named) otherwise.
pub(crate) fn current_or_panic(what: &str) -> (Arc<Shared>, Tid) {
    current().unwrap_or_else(|| {
        panic!(
            "netpoll_threads::{what} called from {}, which is not a simulated thread (start \
             threads with netpoll_threads::spawn inside Runner::run)",
            os_thread_name()
        )
    })
}

pub(crate) fn os_thread_name() -> String {
    let t = std::thread::current();
    match t.name() {
        Some(n) => format!("OS thread `{n}` ({:?})", t.id()),
        None => format!("an unnamed OS thread ({:?})", t.id()),
    }
}

/// Ends the calling simulated thread after the run failed elsewhere: it unwinds, or, for a
/// hosted thread (which must not unwind through C frames), it waits for ever.
fn abort() -> ! {
    if HOSTED.with(Cell::get) {
        let m = Mutex::new(());
        let cv = Condvar::new();
        let mut g = lock(&m);
        loop {
            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
    panic::resume_unwind(Box::new(Aborted))
}

/// [`abort`], except in a thread that is already unwinding (from [`abort`] or a panic): a
/// destructor that makes a call on the way out (closing a descriptor) must not panic again,
/// which would abort the whole process. The run has failed and its report is taken; the call
/// goes through without the scheduler.
fn abort_unless_unwinding() {
    if !std::thread::panicking() {
        abort();
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_owned()
    }
}

impl Th {
    pub(crate) fn new(name: String, hosted: bool) -> Th {
        Th {
            name,
            status: Status::Runnable,
            last: None,
            unparked: false,
            cv: Arc::new(Condvar::new()),
            hosted,
        }
    }
}

impl Shared {
    pub(crate) fn new(cfg: Cfg, sim: Sim, mut rng: ChaCha8Rng) -> Shared {
        let mut chooser = Chooser::new(cfg.policy, &mut rng);
        chooser.on_spawn(Tid(0), &mut rng);
        Shared {
            state: Mutex::new(State {
                threads: vec![Th {
                    name: "main".to_owned(),
                    status: Status::Runnable,
                    last: None,
                    unparked: false,
                    cv: Arc::new(Condvar::new()),
                    hosted: false,
                }],
                current: Some(Tid(0)),
                chooser,
                rng,
                step: 0,
                idle: 0,
                futex: BTreeMap::new(),
                stalled: None,
                schedule: Vec::new(),
                failure: None,
                os: Vec::new(),
                cfg,
                finished: 0,
                over: false,
            }),
            done: Condvar::new(),
            sim: Mutex::new(sim),
            entries: AtomicU64::new(0),
            futex_keys: Mutex::new(BTreeSet::new()),
        }
    }

    /// Starts OS thread `tid` running `f` as a simulated thread; it waits for its first turn.
    pub(crate) fn start<T: Send + 'static>(
        self: &Arc<Self>,
        st: &mut State,
        tid: Tid,
        slot: Arc<Mutex<Option<T>>>,
        f: impl FnOnce() -> T + Send + 'static,
    ) {
        let shared = Arc::clone(self);
        let name = format!("sim-{tid}-{}", st.threads[tid.0 as usize].name);
        let cpu = st.cfg.cpu;
        let h = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                if let Some(cpu) = cpu {
                    // Only a cost: the token decides who runs, never the OS.
                    let _ = netpoll_realnet::process::pin_thread_to_cpu(cpu);
                }
                CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(&shared), tid)));
                let r = panic::catch_unwind(AssertUnwindSafe(|| {
                    drop(shared.wait_turn(lock(&shared.state), tid));
                    f()
                }));
                match r {
                    Ok(v) => {
                        *lock(&slot) = Some(v);
                        shared.finish(tid, None);
                    }
                    Err(p) if p.is::<Aborted>() => {}
                    Err(p) => shared.finish(tid, Some(panic_message(&*p))),
                }
                CURRENT.with(|c| *c.borrow_mut() = None);
            })
            .expect("netpoll_threads: the OS refused to start a thread");
        st.os.push((tid, h));
    }

    /// Registers a new simulated thread (runnable, not yet running) and starts it.
    pub(crate) fn spawn<T: Send + 'static>(
        self: &Arc<Self>,
        name: String,
        slot: Arc<Mutex<Option<T>>>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Tid {
        let mut st = lock(&self.state);
        let tid = Tid(st.threads.len() as u32);
        st.threads.push(Th {
            name,
            status: Status::Runnable,
            last: None,
            unparked: false,
            cv: Arc::new(Condvar::new()),
            hosted: false,
        });
        let State { chooser, rng, .. } = &mut *st;
        chooser.on_spawn(tid, rng);
        self.start(&mut st, tid, slot, f);
        tid
    }

    /// Waits until `me` holds the token; unwinds if the run failed meanwhile.
    pub(crate) fn wait_turn<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        me: Tid,
    ) -> MutexGuard<'a, State> {
        if st.current != Some(me) && st.failure.is_none() {
            let cv = Arc::clone(&st.threads[me.0 as usize].cv);
            while st.current != Some(me) && st.failure.is_none() {
                st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        if st.failure.is_some() && !std::thread::panicking() {
            drop(st);
            abort();
        }
        st
    }

    /// A switch point: `me` (running) is about to make `call`. The seed picks who runs now;
    /// returns when it is `me`'s turn again.
    pub(crate) fn switch(&self, me: Tid, call: Call) {
        let mut st = lock(&self.state);
        if st.failure.is_some() {
            drop(st);
            abort_unless_unwinding();
            return;
        }
        debug_assert_eq!(st.current, Some(me), "switch: {me} runs without the token");
        st.threads[me.0 as usize].last = Some(call);
        st.step += 1;
        st.idle += 1;
        if st.idle > st.cfg.max_idle_steps {
            let msg = format!(
                "{} switch points in a row without any change to the kernel or any thread \
                 finishing: the threads are polling without progress (a busy loop on \
                 non-blocking calls never lets virtual time pass)",
                st.cfg.max_idle_steps
            );
            self.fail(&mut st, FailureKind::Livelock, msg);
            drop(st);
            abort_unless_unwinding();
            return;
        }
        let next = self.choose(&mut st, Some(me));
        let next = next.expect("switch: the running thread is runnable");
        if next != me {
            st.current = Some(next);
            st.threads[next.0 as usize].cv.notify_one();
            st = self.wait_turn(st, me);
        }
        let step = st.step;
        self.push(
            &mut st,
            Step {
                step,
                tid: me,
                call,
                blocked: false,
            },
        );
    }

    /// Appends `entry` to the schedule.
    fn push(&self, st: &mut State, entry: Step) {
        st.schedule.push(entry);
        // Only the thread holding the token pushes or reads it; the hand-off's mutex orders it.
        self.entries
            .store(st.schedule.len() as u64, Ordering::Relaxed);
    }

    /// After a call by the running thread: the waiters the kernel woke from its wait queues
    /// become runnable; and if the kernel's state may have changed (`changed`: the call
    /// succeeded), so does every thread blocked on the kernel but not on a wait queue, to retry.
    pub(crate) fn after_call(&self, changed: bool) {
        let mut st = lock(&self.state);
        let woken = lock(&self.sim).take_woken();
        if changed || !woken.is_empty() {
            st.idle = 0;
        }
        Self::wake_kernel_waiters(&mut st, changed, &woken, None);
    }

    /// Makes runnable the threads blocked on the kernel that `woken` names or (with `all`) that
    /// are not on a wait queue, and every thread in the kernel or a timed futex wait whose
    /// deadline is at or before `now_ns`.
    fn wake_kernel_waiters(st: &mut State, all: bool, woken: &[u64], now_ns: Option<u64>) {
        let due = |deadline_ns: Option<u64>| matches!((deadline_ns, now_ns), (Some(d), Some(now)) if d <= now);
        for (i, th) in st.threads.iter_mut().enumerate() {
            let wake = match th.status {
                Status::Blocked(
                    Wait::Kernel {
                        deadline_ns,
                        queued,
                    },
                    _,
                ) => (all && !queued) || due(deadline_ns) || woken.contains(&(i as u64)),
                Status::Blocked(Wait::Futex { deadline_ns }, _) => due(deadline_ns),
                _ => false,
            };
            if wake {
                th.status = Status::Runnable;
            }
        }
    }

    /// `me` (running) cannot go on until `wait` is satisfied: hand the token on, letting
    /// virtual time pass if nobody can run. Returns when `me` runs again.
    pub(crate) fn block(&self, me: Tid, call: Call, wait: Wait) {
        let mut st = lock(&self.state);
        if st.failure.is_some() {
            drop(st);
            abort_unless_unwinding();
            return;
        }
        if wait == Wait::Park && std::mem::take(&mut st.threads[me.0 as usize].unparked) {
            return;
        }
        if let Wait::Join(t) = wait {
            if st.threads[t.0 as usize].status == Status::Finished {
                return;
            }
        }
        st.step += 1;
        let step = st.step;
        self.push(
            &mut st,
            Step {
                step,
                tid: me,
                call,
                blocked: true,
            },
        );
        let th = &mut st.threads[me.0 as usize];
        th.last = Some(call);
        th.status = Status::Blocked(wait, call);
        if self.hand_off(&mut st, me) {
            drop(self.wait_turn(st, me));
        } else {
            drop(st);
            abort_unless_unwinding();
        }
    }

    /// `me` returned from its closure (or panicked with `panicked`).
    pub(crate) fn finish(&self, me: Tid, panicked: Option<String>) {
        let mut st = lock(&self.state);
        if st.failure.is_some() {
            return;
        }
        st.threads[me.0 as usize].status = Status::Finished;
        st.finished += 1;
        st.idle = 0;
        if let Some(msg) = panicked {
            let name = st.threads[me.0 as usize].name.clone();
            self.fail(
                &mut st,
                FailureKind::Panic,
                format!("thread {me} `{name}` panicked: {msg}"),
            );
            return;
        }
        for th in &mut st.threads {
            if matches!(th.status, Status::Blocked(Wait::Join(t), _) if t == me) {
                th.status = Status::Runnable;
            }
        }
        if st.finished == st.threads.len() {
            st.current = None;
            st.over = true;
            self.done.notify_all();
            return;
        }
        // A failure found here (a deadlock) is recorded; this thread is done either way.
        let _ = self.hand_off(&mut st, me);
    }

    /// Unparks `t`: runnable if it is parked, else its next `park` returns at once.
    pub(crate) fn unpark(&self, t: Tid) {
        let mut st = lock(&self.state);
        let th = &mut st.threads[t.0 as usize];
        match th.status {
            Status::Blocked(Wait::Park, _) => th.status = Status::Runnable,
            Status::Finished => {}
            _ => th.unparked = true,
        }
    }

    /// Picks the next thread among the runnable ones, or `None` if none is.
    fn choose(&self, st: &mut State, running: Option<Tid>) -> Option<Tid> {
        let mut runnable: Vec<Tid> = Vec::with_capacity(st.threads.len());
        runnable.extend(
            st.threads
                .iter()
                .enumerate()
                .filter(|(_, th)| th.status == Status::Runnable)
                .map(|(i, _)| Tid(i as u32)),
        );
        if runnable.is_empty() {
            return None;
        }
        let State {
            chooser, rng, step, ..
        } = st;
        Some(chooser.pick(&runnable, running, *step, rng))
    }

    /// `me` stopped running (blocked or finished): give the token to a runnable thread, letting
    /// virtual time pass while there is none. Returns `false` if the run is deadlocked (the
    /// failure is then recorded and everyone is told).
    fn hand_off(&self, st: &mut State, me: Tid) -> bool {
        loop {
            if let Some(next) = self.choose(st, Some(me)) {
                st.current = Some(next);
                st.threads[next.0 as usize].cv.notify_one();
                return true;
            }
            if self.settle_step(st) {
                continue;
            }
            if !self.let_time_pass(st) {
                // Before a deadlock: futex waiters a wake from outside the run chose, or whose
                // word changed, go on (spurious wakeups are legal).
                if wake_rechecked(self, st) {
                    continue;
                }
                if !outside_words(st).0.is_empty() {
                    // Code outside the run may still wake them: the supervisor waits for it.
                    st.current = None;
                    st.stalled = Some(me);
                    self.done.notify_all();
                    return true;
                }
                let msg = "every thread is blocked, nothing is in flight in the kernel and no \
                           thread waits with a timeout: the program would hang for ever"
                    .to_owned();
                self.fail(st, FailureKind::Deadlock, msg);
                return false;
            }
        }
    }

    /// Nobody is runnable and a thread settles: deliver the kernel's next event if it falls
    /// before every deadline (what real loopback does in no time), else let the settling
    /// threads run. `false` if nobody settles.
    fn settle_step(&self, st: &mut State) -> bool {
        if !st
            .threads
            .iter()
            .any(|th| matches!(th.status, Status::Blocked(Wait::Settle, _)))
        {
            return false;
        }
        let deadline = Self::earliest_deadline(st);
        let (moved, woken) = {
            let sim = lock(&self.sim);
            let due = sim
                .next_event_ns()
                .is_some_and(|t| deadline.is_none_or(|d| t < d));
            let moved = due && sim.advance(deadline);
            (moved, sim.take_woken())
        };
        if moved {
            st.idle = 0;
            Self::wake_kernel_waiters(st, true, &woken, None);
        } else {
            for th in &mut st.threads {
                if matches!(th.status, Status::Blocked(Wait::Settle, _)) {
                    th.status = Status::Runnable;
                }
            }
        }
        true
    }

    /// The earliest deadline of a thread blocked on the kernel or in a timed futex wait.
    fn earliest_deadline(st: &State) -> Option<u64> {
        st.threads
            .iter()
            .filter_map(|th| match th.status {
                Status::Blocked(
                    Wait::Kernel {
                        deadline_ns: Some(d),
                        ..
                    },
                    _,
                )
                | Status::Blocked(
                    Wait::Futex {
                        deadline_ns: Some(d),
                    },
                    _,
                ) => Some(d),
                _ => None,
            })
            .min()
    }

    /// Nobody is runnable: move virtual time to the kernel's next event or the earliest
    /// deadline (of an `epoll_wait` or a timed futex wait), make the kernel's waiters retry and
    /// wake the futex waiters whose deadline has come. `false` if time cannot move.
    fn let_time_pass(&self, st: &mut State) -> bool {
        let mut any_kernel = false;
        let mut deadline: Option<u64> = None;
        for th in &st.threads {
            let d = match th.status {
                Status::Blocked(Wait::Kernel { deadline_ns, .. }, _) => {
                    any_kernel = true;
                    deadline_ns
                }
                Status::Blocked(Wait::Futex { deadline_ns }, _) => deadline_ns,
                _ => None,
            };
            if let Some(d) = d {
                deadline = Some(deadline.map_or(d, |e| e.min(d)));
            }
        }
        if !any_kernel && deadline.is_none() {
            return false;
        }
        let (moved, now_ns, woken) = {
            let sim = lock(&self.sim);
            let moved = sim.advance(deadline);
            (moved, sim.now_ns(), sim.take_woken())
        };
        if !moved && deadline.is_none() {
            return false;
        }
        st.idle = 0;
        Self::wake_kernel_waiters(st, true, &woken, Some(now_ns));
        true
    }

    /// How long the stalled run waits for a wake from outside, given the watchdog's bound.
    pub(crate) fn stall_bound(st: &State, watchdog: std::time::Duration) -> std::time::Duration {
        if outside_words(st).1 {
            watchdog
        } else {
            crate::futex::OUTSIDE_GRACE.min(watchdog)
        }
    }

    /// The run is stalled (no thread can run, some wait on futex words code outside may change): if a wake
    /// from outside came, or a word changed, hand the token on as [`Shared::hand_off`] would
    /// have and return `true`. Called by the supervisor, never by a simulated thread.
    pub(crate) fn resume_stalled(&self, st: &mut State) -> bool {
        let Some(me) = st.stalled else {
            return true;
        };
        if !wake_rechecked(self, st) {
            return false;
        }
        st.stalled = None;
        let next = self
            .choose(st, Some(me))
            .expect("resume_stalled: a woken waiter is runnable");
        st.current = Some(next);
        st.threads[next.0 as usize].cv.notify_one();
        true
    }

    /// The stalled run's outside wake never came: report the deadlock, naming the words.
    pub(crate) fn fail_stalled(&self, st: &mut State, waited: std::time::Duration) {
        let (words, wide) = outside_words(st);
        // Counted, not named: addresses differ from process to process, and a replay must
        // print the same report.
        let msg = format!(
            "every thread is blocked and nothing is in flight in the kernel; some threads wait \
             in futex_wait on {} {}word(s) that code outside this run (another run in this \
             process, or a plain OS thread) may hold, but no wake came from outside this run \
             in {waited:?} of wall-clock time: the program would hang for ever",
            words.len(),
            if wide { "process-wide " } else { "" },
        );
        st.stalled = None;
        self.fail(st, FailureKind::Deadlock, msg);
    }

    /// Records the run's failure (the first one wins) and wakes every waiting thread to unwind.
    pub(crate) fn fail(&self, st: &mut State, kind: FailureKind, message: String) {
        if st.failure.is_none() {
            let threads = st
                .threads
                .iter()
                .enumerate()
                .map(|(i, th)| ThreadReport {
                    tid: Tid(i as u32),
                    name: th.name.clone(),
                    state: match th.status {
                        Status::Runnable if st.current == Some(Tid(i as u32)) => {
                            "running".to_owned()
                        }
                        Status::Runnable => "runnable".to_owned(),
                        Status::Blocked(
                            Wait::Kernel {
                                deadline_ns: None, ..
                            },
                            c,
                        ) => {
                            format!("blocked in {c}")
                        }
                        Status::Blocked(
                            Wait::Kernel {
                                deadline_ns: Some(d),
                                ..
                            },
                            c,
                        ) => {
                            format!("blocked in {c} until {d} ns")
                        }
                        Status::Blocked(Wait::Join(t), _) => format!("blocked joining {t}"),
                        Status::Blocked(Wait::Park, c) => format!("parked in {c}"),
                        Status::Blocked(Wait::Settle, _) => "settling".to_owned(),
                        Status::Blocked(Wait::Futex { deadline_ns: None }, c) => {
                            format!("waiting in {c}")
                        }
                        Status::Blocked(
                            Wait::Futex {
                                deadline_ns: Some(d),
                            },
                            c,
                        ) => format!("waiting in {c} until {d} ns"),
                        Status::Finished => "finished".to_owned(),
                    },
                    last_call: th.last,
                })
                .collect();
            st.failure = Some(Failure {
                kind,
                message,
                seed: st.cfg.seed,
                policy: st.cfg.policy,
                threads,
                schedule: std::mem::take(&mut st.schedule),
            });
        }
        st.over = true;
        for th in &st.threads {
            th.cv.notify_one();
        }
        self.done.notify_all();
    }

    /// The thread holding the token, and its last call, for the watchdog's report.
    pub(crate) fn running(st: &State) -> Option<(Tid, String, Option<Call>)> {
        let t = st.current?;
        let th = &st.threads[t.0 as usize];
        Some((t, th.name.clone(), th.last))
    }

    pub(crate) fn names(st: &State) -> Vec<String> {
        st.threads.iter().map(|t| t.name.clone()).collect()
    }
}

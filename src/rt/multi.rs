//! [`MultiRuntime`]: N worker threads sharing one driver (one epoll instance), on `std` threads
//! or on simulated ones (see [`Threads`]).
//!
//! Tasks are `Send` and live in one shared FIFO queue; any worker runs any task. As in Go, there
//! is no dedicated poller thread: a worker that finds no task takes the poll role (if no other
//! worker holds it) and turns the driver, blocking until the next event or timer; the other idle
//! workers sleep (parked, on a list kept under the queue's lock, like Go's idle Ms). Tasks the
//! poll loop wakes are queued, and sleepers are woken once per turn, not once per task.
//!
//! Who wakes whom, so that nothing sleeps while there is work:
//!
//! - a task queued while a worker sleeps: the sleeper is taken off the list and unparked;
//! - a task queued from outside the workers (a plain thread, `block_on`) while every worker is
//!   busy or polling: the poller is woken through the driver's eventfd ([`super::wake`]:
//!   coalesced, and free when nobody is blocked in `epoll_wait`). A task queued by a worker
//!   (spawned, or woken while it was running) does not wake the poller: that worker is not idle
//!   and comes back to the queue after its current task;
//! - the poll role released: one sleeper is unparked, so that it can take it (a worker goes to
//!   sleep only under the queue lock and only while the role is held, and the releaser clears
//!   the role before it looks at the list under that lock).
//!
//! A task state word (`IDLE`, `SCHEDULED`, `RUNNING`, `NOTIFIED`, `DONE`) makes sure a task is
//! queued at most once and that a wake during its own poll re-queues it after the poll.
//!
//! # On simulated threads
//!
//! [`MultiRuntime::with_threads`] takes the [`Threads`] seam. With `netpoll_threads::SimThreads`
//! and the simulated kernel's threaded wrapper as the poller, every worker is a simulated thread
//! and the seed interleaves them at every kernel call and at the runtime's synchronisation
//! points (`rt_queue_lock`, `rt_poll_role`, `rt_task_wake`, `rt_wake_poller`, and parking), so a
//! lost wakeup between workers is found by seed and replayed. The
//! [quiescence hook](MultiRuntime::set_quiescence_hook) runs when the poller is about to block
//! while every other worker sleeps and nothing is queued: the moment a netpoller-level
//! lost-wakeup oracle can judge.

use std::any::Any;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};

use super::driver::{Driver, DriverApi, Wakes};
use super::sync::{OsThreads, Threads, Unparker};
use super::{enter, set_current_task, Ctx, Exec, JoinSink, TaskFuture};
use crate::Poller;

type SendFuture = Pin<Box<dyn TaskFuture + Send>>;

/// A quiescence hook: see [`MultiRuntime::set_quiescence_hook`].
type Hook<P> = Box<dyn FnMut(&Driver<P>) -> io::Result<()> + Send>;

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

thread_local! {
    /// Set while this worker dispatches a turn: wakes queue without unparking, and the worker
    /// unparks sleepers once afterwards.
    static BATCHING: Cell<bool> = const { Cell::new(false) };
    /// Set on worker threads: a worker that queues a task will come back for it, so it never
    /// breaks a blocked poller's `epoll_wait` for it (that costs an eventfd write and read).
    static WORKER: Cell<bool> = const { Cell::new(false) };
}

struct Task {
    id: u64,
    state: AtomicU8,
    fut: Mutex<Option<SendFuture>>,
    /// Where its result goes (published once the future is dropped).
    join: Arc<dyn JoinSink + Send + Sync>,
    shared: Weak<Shared>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let Some(s) = self.shared.upgrade() else {
            return;
        };
        s.threads.sync_point("rt_task_wake");
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let next = match cur {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                _ => return,
            };
            match self
                .state
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == IDLE {
            s.push(self.clone());
        }
    }
}

/// The run queue and the workers sleeping until it has something (or the poll role is free).
struct Queue {
    tasks: VecDeque<Arc<Task>>,
    /// Sleeping workers, by worker number, most recent last.
    sleepers: Vec<(usize, Unparker)>,
}

/// The part of a multi-threaded runtime that does not depend on the Poller type.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    poll_busy: AtomicBool,
    shutdown: AtomicBool,
    /// Every live task, to drop them when the runtime stops.
    tasks: Mutex<BTreeMap<u64, Arc<Task>>>,
    next_id: AtomicU64,
    wake_poller: Box<dyn Fn() + Send + Sync>,
    failure: Mutex<Option<Failure>>,
    main: Unparker,
    threads: Arc<dyn Threads>,
}

enum Failure {
    Panic(Box<dyn Any + Send>),
    Io(io::Error),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Locks the run queue: a synchronisation point.
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.threads.sync_point("rt_queue_lock");
        lock(&self.queue)
    }

    fn push(&self, t: Arc<Task>) {
        let sleeper = {
            let mut q = self.lock_queue();
            q.tasks.push_back(t);
            if BATCHING.with(Cell::get) {
                return;
            }
            q.sleepers.pop()
        };
        match sleeper {
            Some((_, unpark)) => unpark(),
            None if !WORKER.with(Cell::get) => self.wake_poller(),
            None => {}
        }
    }

    fn wake_poller(&self) {
        self.threads.sync_point("rt_wake_poller");
        (self.wake_poller)();
    }

    pub(crate) fn spawn(self: &Arc<Self>, fut: SendFuture, join: Arc<dyn JoinSink + Send + Sync>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Task {
            id,
            state: AtomicU8::new(SCHEDULED),
            fut: Mutex::new(Some(fut)),
            join,
            shared: Arc::downgrade(self),
        });
        lock(&self.tasks).insert(id, t.clone());
        self.push(t);
    }

    fn fail(&self, f: Failure) {
        {
            let mut slot = lock(&self.failure);
            if slot.is_none() {
                *slot = Some(f);
            }
        }
        self.stop();
    }

    fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let sleepers = std::mem::take(&mut self.lock_queue().sleepers);
        for (_, unpark) in sleepers {
            unpark();
        }
        self.wake_poller();
        (self.main)();
    }

    /// The poll role was released: unparks one sleeping worker per queued task, and at least
    /// one (to take the role).
    fn wake_sleepers(&self) {
        let woken: Vec<_> = {
            let mut q = self.lock_queue();
            let n = q.tasks.len().max(1);
            let keep = q.sleepers.len().saturating_sub(n);
            q.sleepers.split_off(keep)
        };
        for (_, unpark) in woken {
            unpark();
        }
    }

    fn run(&self, t: Arc<Task>) {
        t.state.store(RUNNING, Ordering::Release);
        let waker = Waker::from(t.clone());
        let mut slot = lock(&t.fut);
        let Some(fut) = slot.as_mut() else {
            return;
        };
        set_current_task(t.id);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fut.as_mut()
                .poll_task(&mut Context::from_waker(&waker), &*t.join)
        }));
        set_current_task(0);
        match r {
            Ok(Poll::Ready(())) => {
                t.state.store(DONE, Ordering::Release);
                let fut = slot.take();
                drop(slot);
                drop(fut);
                t.join.publish();
                lock(&self.tasks).remove(&t.id);
            }
            Ok(Poll::Pending) => {
                drop(slot);
                if t.state
                    .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // Woken during its own poll.
                    t.state.store(SCHEDULED, Ordering::Release);
                    self.push(t);
                }
            }
            Err(p) => {
                t.state.store(DONE, Ordering::Release);
                drop(slot);
                self.fail(Failure::Panic(p));
            }
        }
    }
}

/// A multi-threaded runtime: `workers` threads sharing one driver. See the [module docs](self).
///
/// It needs a `Send + Sync` poller: the real kernel (`netpoll_realnet::RealNet`), or the
/// simulated kernel shared by simulated threads (`netpoll_threads::ThreadedSim`, with
/// `netpoll_threads::SimThreads` as the [`Threads`] seam).
///
/// # Examples
///
/// ```
/// use netpoll::rt::{self, MultiRuntime, UnixStream};
/// use netpoll_realnet::RealNet;
///
/// let rt = MultiRuntime::new(RealNet::new(), 2)?;
/// let total = rt.block_on(async {
///     let (a, b) = UnixStream::<RealNet>::pair()?;
///     let reader = rt::spawn(async move {
///         let mut buf = [0u8; 16];
///         let mut total = 0;
///         loop {
///             match b.read(&mut buf).await? {
///                 0 => return Ok::<_, std::io::Error>(total),
///                 n => total += n,
///             }
///         }
///     });
///     for _ in 0..10 {
///         a.write_all(b"0123456789").await?;
///     }
///     drop(a); // end of file for the reader
///     reader.await?
/// })??;
/// assert_eq!(total, 100);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct MultiRuntime<P: Poller + Send + Sync + 'static> {
    driver: Arc<Driver<P>>,
    workers: usize,
    threads: Arc<dyn Threads>,
    hook: Arc<Mutex<Option<Hook<P>>>>,
}

impl<P: Poller + Send + Sync + 'static> fmt::Debug for MultiRuntime<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiRuntime")
            .field("workers", &self.workers)
            .finish()
    }
}

struct ThreadWaker(Unparker);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        (self.0)();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        (self.0)();
    }
}

impl<P: Poller + Send + Sync + 'static> MultiRuntime<P> {
    /// A runtime with `workers` threads (at least 1) on `std` threads ([`OsThreads`]), started
    /// by each [`block_on`](Self::block_on).
    ///
    /// # Errors
    /// Creating the epoll instance or the wake eventfd failed.
    pub fn new(poller: P, workers: usize) -> io::Result<MultiRuntime<P>> {
        MultiRuntime::with_threads(poller, workers, Arc::new(OsThreads))
    }

    /// A runtime whose `workers` threads (at least 1) are started, parked and woken through
    /// `threads`, which also sees its synchronisation points (see [`Threads`]). `block_on` must
    /// then be called from a thread `threads` can park.
    ///
    /// # Errors
    /// Creating the epoll instance or the wake eventfd failed.
    pub fn with_threads(
        poller: P,
        workers: usize,
        threads: Arc<dyn Threads>,
    ) -> io::Result<MultiRuntime<P>> {
        Ok(MultiRuntime {
            driver: Arc::new(Driver::new(poller)?),
            workers: workers.max(1),
            threads,
            hook: Arc::new(Mutex::new(None)),
        })
    }

    /// The driver.
    pub fn driver(&self) -> &Driver<P> {
        &self.driver
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Calls `hook` whenever the runtime is quiescent: the worker holding the poll role is
    /// about to block in `epoll_wait`, nothing is queued, and every other worker sleeps. No
    /// task can run until the kernel reports an event or a timer fires, so that is where an
    /// oracle can judge the runtime (for example: no task parked on a descriptor that is ready
    /// for it). An `Err` stops the runtime, and [`block_on`](Self::block_on) returns it.
    ///
    /// The hook runs on the polling worker, with no lock of the runtime held.
    pub fn set_quiescence_hook(
        &mut self,
        hook: impl FnMut(&Driver<P>) -> io::Result<()> + Send + 'static,
    ) {
        *lock(&self.hook) = Some(Box::new(hook));
    }

    /// Runs `fut` as a task on the workers until it completes, then stops the workers and drops
    /// every task still alive.
    ///
    /// # Errors
    /// An `epoll_wait` error, or the quiescence hook's.
    ///
    /// # Panics
    /// If `fut` panicked: the panic is resumed here. A spawned task's panic comes back through
    /// its [`JoinHandle`](super::JoinHandle) instead, and the other tasks go on.
    pub fn block_on<F>(&self, fut: F) -> io::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let d = Arc::downgrade(&self.driver);
        let main = self.threads.unparker();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                tasks: VecDeque::new(),
                sleepers: Vec::new(),
            }),
            poll_busy: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            tasks: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            wake_poller: Box::new(move || {
                if let Some(d) = d.upgrade() {
                    d.wake_loop();
                }
            }),
            failure: Mutex::new(None),
            main: main.clone(),
            threads: self.threads.clone(),
        });
        let ctx = Ctx {
            driver: self.driver.clone() as Arc<dyn DriverApi>,
            exec: Exec::Multi(shared.clone()),
        };
        let handle = {
            let _g = enter(ctx.clone());
            super::spawn(fut)
        };
        let joins: Vec<_> = (0..self.workers)
            .map(|i| {
                let w = Worker {
                    id: i,
                    workers: self.workers,
                    shared: shared.clone(),
                    driver: self.driver.clone(),
                    hook: self.hook.clone(),
                };
                self.threads
                    .spawn(format!("netpoll-worker-{i}"), Box::new(move || w.run()))
            })
            .collect();
        // Wait for the main task on this thread.
        let waker = Waker::from(Arc::new(ThreadWaker(main)));
        let mut handle = std::pin::pin!(handle);
        let out = loop {
            if shared.shutdown.load(Ordering::SeqCst) {
                break None;
            }
            if let Poll::Ready(v) = handle.as_mut().poll(&mut Context::from_waker(&waker)) {
                break Some(v);
            }
            self.threads.park();
        };
        shared.stop();
        for join in joins {
            join();
        }
        // Drop what is left, inside a context so that descriptors close through the driver.
        {
            let _g = enter(ctx);
            let tasks = std::mem::take(&mut *lock(&shared.tasks));
            for t in tasks.values() {
                let f = lock(&t.fut).take();
                drop(f);
                t.join.publish();
            }
            lock(&shared.queue).tasks.clear();
        }
        let failure = lock(&shared.failure).take();
        match (out, failure) {
            (_, Some(Failure::Panic(p))) => std::panic::resume_unwind(p),
            (_, Some(Failure::Io(e))) => Err(e),
            (Some(Ok(v)), None) => Ok(v),
            // The main future panicked: its panic, as if it had run on this thread.
            (Some(Err(e)), None) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            (Some(Err(e)), None) => unreachable!("the main task ended without a value: {e}"),
            (None, None) => unreachable!("stopped without a result or a failure"),
        }
    }
}

/// One worker thread.
struct Worker<P: Poller + Send + Sync + 'static> {
    id: usize,
    workers: usize,
    shared: Arc<Shared>,
    driver: Arc<Driver<P>>,
    hook: Arc<Mutex<Option<Hook<P>>>>,
}

impl<P: Poller + Send + Sync + 'static> Worker<P> {
    fn run(self) {
        let shared = &self.shared;
        let _g = enter(Ctx {
            driver: self.driver.clone() as Arc<dyn DriverApi>,
            exec: Exec::Multi(shared.clone()),
        });
        WORKER.with(|w| w.set(true));
        let me = shared.threads.unparker();
        loop {
            if shared.shutdown.load(Ordering::SeqCst) {
                return;
            }
            let next = {
                let mut q = shared.lock_queue();
                // Off the sleepers' list, in case the park returned spuriously.
                q.sleepers.retain(|s| s.0 != self.id);
                q.tasks.pop_front()
            };
            if let Some(t) = next {
                shared.run(t);
                continue;
            }
            shared.threads.sync_point("rt_poll_role");
            if shared
                .poll_busy
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if let Err(e) = self.poll() {
                    shared.fail(Failure::Io(e));
                    return;
                }
                continue;
            }
            // Another worker polls: sleep until a task is queued or the poll role is free.
            let mut q = shared.lock_queue();
            if q.tasks.is_empty()
                && shared.poll_busy.load(Ordering::SeqCst)
                && !shared.shutdown.load(Ordering::SeqCst)
            {
                q.sleepers.push((self.id, me.clone()));
                let last = q.sleepers.len() + 1 == self.workers;
                drop(q);
                // The last worker to sleep while the poller waits in `epoll_wait` makes the
                // runtime quiescent: judge it now, the poller cannot.
                if last && self.driver.polling() {
                    if let Err(e) = self.quiescent(false) {
                        shared.fail(Failure::Io(e));
                        continue;
                    }
                }
                shared.threads.park();
            }
        }
    }

    /// Runs the quiescence hook if the runtime is quiescent: nothing queued, every worker but
    /// the poller asleep (the caller is the poller about to turn, or the last worker to fall
    /// asleep while the poller waits).
    ///
    /// `poller`: the caller holds the poll role and has not started its turn. Otherwise the
    /// poller must be inside its wait, checked after the last synchronisation point before the
    /// hook (a poller that returned from `epoll_wait` and is still dispatching has taken events
    /// from the kernel that its tasks have not seen yet).
    fn quiescent(&self, poller: bool) -> io::Result<()> {
        if lock(&self.hook).is_none() {
            return Ok(());
        }
        let quiet = {
            let q = self.shared.lock_queue();
            q.tasks.is_empty() && q.sleepers.len() + 1 >= self.workers
        };
        if !quiet
            || self.shared.shutdown.load(Ordering::SeqCst)
            || (!poller && !self.driver.polling())
        {
            return Ok(());
        }
        // No lock of the runtime is held across the hook (it may wake tasks, which are
        // synchronisation points); a hook already running on another thread judges for both.
        let mut hook = match self.hook.try_lock() {
            Ok(h) => h,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        match hook.as_mut() {
            Some(hook) => hook(&self.driver),
            None => Ok(()),
        }
    }

    /// One turn of the driver in the poll role, then the role released.
    fn poll(&self) -> io::Result<()> {
        let shared = &self.shared;
        if let Err(e) = self.quiescent(true) {
            shared.poll_busy.store(false, Ordering::SeqCst);
            return Err(e);
        }
        BATCHING.with(|b| b.set(true));
        let r = self.driver.turn(true, false, Wakes::AsDispatched, || {
            !shared.lock_queue().tasks.is_empty() || shared.shutdown.load(Ordering::SeqCst)
        });
        BATCHING.with(|b| b.set(false));
        shared.poll_busy.store(false, Ordering::SeqCst);
        r?;
        // Hand the poll role and the extra tasks to sleeping workers.
        shared.wake_sleepers();
        Ok(())
    }
}

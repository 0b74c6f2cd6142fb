//! [`MultiRuntime`]: N worker threads sharing one driver (one epoll instance), for the real
//! kernel.
//!
//! Tasks are `Send` and live in one shared FIFO queue; any worker runs any task. As in Go, there
//! is no dedicated poller thread: a worker that finds no task takes the poll role (if no other
//! worker holds it) and turns the driver, blocking until the next event or timer; the other idle
//! workers sleep on a condition variable. Tasks the poll loop wakes are queued, and idle workers
//! are notified once per turn, not once per task.
//!
//! Who wakes whom, so that nothing sleeps while there is work:
//!
//! - a task queued while a worker sleeps on the condvar: the condvar is notified;
//! - a task queued from outside the workers (a plain thread, `block_on`) while every worker is
//!   busy or polling: the poller is woken through the driver's eventfd ([`super::wake`]:
//!   coalesced, and free when nobody is blocked in `epoll_wait`). A task queued by a worker
//!   (spawned, or woken while it was running) does not wake the poller: that worker is not idle
//!   and comes back to the queue after its current task;
//! - the poll role released: one sleeping worker is notified, so that it can take it (the
//!   sleeper checks the role under the queue lock, and the releaser notifies under it).
//!
//! A task state word (`IDLE`, `SCHEDULED`, `RUNNING`, `NOTIFIED`, `DONE`) makes sure a task is
//! queued at most once and that a wake during its own poll re-queues it after the poll.

use std::any::Any;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use super::driver::{Driver, DriverApi};
use super::{enter, set_current_task, Ctx, Exec};
use crate::Poller;

type SendFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

thread_local! {
    /// Set while this worker dispatches a turn: wakes queue without notifying, and the worker
    /// notifies once afterwards.
    static BATCHING: Cell<bool> = const { Cell::new(false) };
    /// Set on worker threads: a worker that queues a task will come back for it, so it never
    /// breaks a blocked poller's `epoll_wait` for it (that costs an eventfd write and read).
    static WORKER: Cell<bool> = const { Cell::new(false) };
}

struct Task {
    id: u64,
    state: AtomicU8,
    fut: Mutex<Option<SendFuture>>,
    shared: Weak<Shared>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
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
            if let Some(s) = self.shared.upgrade() {
                s.push(self.clone());
            }
        }
    }
}

/// The part of a multi-threaded runtime that does not depend on the Poller type.
pub(crate) struct Shared {
    queue: Mutex<VecDeque<Arc<Task>>>,
    cv: Condvar,
    idle: AtomicUsize,
    poll_busy: AtomicBool,
    shutdown: AtomicBool,
    /// Every live task, to drop them when the runtime stops.
    tasks: Mutex<BTreeMap<u64, Arc<Task>>>,
    next_id: AtomicU64,
    wake_poller: Box<dyn Fn() + Send + Sync>,
    failure: Mutex<Option<Failure>>,
    main: Mutex<Option<Thread>>,
}

enum Failure {
    Panic(Box<dyn Any + Send>),
    Io(io::Error),
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<Arc<Task>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, t: Arc<Task>) {
        self.lock_queue().push_back(t);
        if BATCHING.with(Cell::get) {
            return;
        }
        if self.idle.load(Ordering::SeqCst) > 0 {
            self.cv.notify_one();
        } else if !WORKER.with(Cell::get) {
            (self.wake_poller)();
        }
    }

    pub(crate) fn spawn(self: &Arc<Self>, fut: SendFuture) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Task {
            id,
            state: AtomicU8::new(SCHEDULED),
            fut: Mutex::new(Some(fut)),
            shared: Arc::downgrade(self),
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, t.clone());
        self.push(t);
    }

    fn fail(&self, f: Failure) {
        {
            let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(f);
            }
        }
        self.stop();
    }

    fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        drop(self.lock_queue());
        self.cv.notify_all();
        (self.wake_poller)();
        if let Some(t) = self.main.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            t.unpark();
        }
    }

    fn run(&self, t: Arc<Task>) {
        t.state.store(RUNNING, Ordering::Release);
        let waker = Waker::from(t.clone());
        let mut slot = t.fut.lock().unwrap_or_else(|e| e.into_inner());
        let Some(fut) = slot.as_mut() else {
            return;
        };
        set_current_task(t.id);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            fut.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        set_current_task(0);
        match r {
            Ok(Poll::Ready(())) => {
                t.state.store(DONE, Ordering::Release);
                let fut = slot.take();
                drop(slot);
                drop(fut);
                self.tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&t.id);
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
/// It needs a `Send + Sync` poller: the real kernel (`netpoll_realnet::RealNet`), not the
/// simulated one.
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
}

impl<P: Poller + Send + Sync + 'static> fmt::Debug for MultiRuntime<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiRuntime")
            .field("workers", &self.workers)
            .finish()
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl<P: Poller + Send + Sync + 'static> MultiRuntime<P> {
    /// A runtime with `workers` threads (at least 1), started by each
    /// [`block_on`](Self::block_on).
    ///
    /// # Errors
    /// Creating the epoll instance or the wake eventfd failed.
    pub fn new(poller: P, workers: usize) -> io::Result<MultiRuntime<P>> {
        Ok(MultiRuntime {
            driver: Arc::new(Driver::new(poller)?),
            workers: workers.max(1),
        })
    }

    /// The driver.
    pub fn driver(&self) -> &Driver<P> {
        &self.driver
    }

    /// Runs `fut` as a task on the workers until it completes, then stops the workers and drops
    /// every task still alive.
    ///
    /// # Errors
    /// An `epoll_wait` error.
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
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            idle: AtomicUsize::new(0),
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
            main: Mutex::new(Some(thread::current())),
        });
        let ctx = Ctx {
            driver: self.driver.clone() as Arc<dyn DriverApi>,
            exec: Exec::Multi(shared.clone()),
        };
        let handle = {
            let _g = enter(ctx.clone());
            super::spawn(fut)
        };
        let threads: Vec<_> = (0..self.workers)
            .map(|i| {
                let shared = shared.clone();
                let driver = self.driver.clone();
                thread::Builder::new()
                    .name(format!("netpoll-worker-{i}"))
                    .spawn(move || worker(&shared, &driver))
                    .expect("spawn a worker thread")
            })
            .collect();
        // Wait for the main task on this thread.
        let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
        let mut handle = std::pin::pin!(handle);
        let out = loop {
            if shared.shutdown.load(Ordering::SeqCst) {
                break None;
            }
            if let Poll::Ready(v) = handle.as_mut().poll(&mut Context::from_waker(&waker)) {
                break Some(v);
            }
            thread::park();
        };
        shared.stop();
        for t in threads {
            let _ = t.join();
        }
        // Drop what is left, inside a context so that descriptors close through the driver.
        {
            let _g = enter(ctx);
            let tasks =
                std::mem::take(&mut *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
            for t in tasks.values() {
                let f = t.fut.lock().unwrap_or_else(|e| e.into_inner()).take();
                drop(f);
            }
            shared.lock_queue().clear();
        }
        let failure = shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
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

fn worker<P: Poller + Send + Sync + 'static>(shared: &Arc<Shared>, driver: &Arc<Driver<P>>) {
    let _g = enter(Ctx {
        driver: driver.clone() as Arc<dyn DriverApi>,
        exec: Exec::Multi(shared.clone()),
    });
    WORKER.with(|w| w.set(true));
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let next = shared.lock_queue().pop_front();
        if let Some(t) = next {
            shared.run(t);
            continue;
        }
        if shared
            .poll_busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            BATCHING.with(|b| b.set(true));
            let r = driver.turn(true, false, || {
                !shared.lock_queue().is_empty() || shared.shutdown.load(Ordering::SeqCst)
            });
            BATCHING.with(|b| b.set(false));
            shared.poll_busy.store(false, Ordering::SeqCst);
            if let Err(e) = r {
                shared.fail(Failure::Io(e));
                return;
            }
            // Hand the poll role and the extra tasks to sleeping workers.
            let queued = {
                let q = shared.lock_queue();
                q.len()
            };
            let idle = shared.idle.load(Ordering::SeqCst);
            if idle > 0 {
                for _ in 0..idle.min(queued.max(1)) {
                    shared.cv.notify_one();
                }
            }
            continue;
        }
        // Another worker polls: sleep until a task is queued or the poll role is free.
        let mut q = shared.lock_queue();
        shared.idle.fetch_add(1, Ordering::SeqCst);
        while q.is_empty()
            && shared.poll_busy.load(Ordering::SeqCst)
            && !shared.shutdown.load(Ordering::SeqCst)
        {
            q = shared.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        shared.idle.fetch_sub(1, Ordering::SeqCst);
    }
}

//! [`Runtime`]: the single-threaded executor, on either kernel.
//!
//! One thread runs tasks and the poll loop in turn: it runs up to [`BUDGET`] runnable tasks,
//! then turns the driver once (without waiting if tasks are still runnable; otherwise until the
//! next timer or event), and repeats until the main future completes.
//!
//! **Scheduling.** [`Runtime::new`] runs tasks in the order they were woken (FIFO), the fair
//! choice for latency on the real kernel. [`Runtime::seeded`] picks the next runnable task from
//! a seeded generator, and also flips a seeded coin each turn for the order of readiness and
//! timers at the same instant ([`super::driver`]): on the simulated kernel a seed fixes the whole
//! run, and different seeds explore different interleavings. Nothing else is a choice: the run
//! queue is a `VecDeque`, tasks live in a slab indexed by number, no hash map is iterated, no
//! wall clock is read, no thread is spawned.
//!
//! **Quiescence hook.** [`Runtime::set_quiescence_hook`] installs a callback that runs each
//! time the runtime is about to block in the poller with no runnable task: the moment a
//! lost-wakeup oracle looks for a task parked on a descriptor that is in fact ready (the
//! `rt-echo` scenario of `netpoll-scenarios` does). It sees the [`Driver`] (the parked tasks,
//! the epoll fd, the next timer, the poller); an error it returns ends
//! [`block_on`](Runtime::block_on) with that error. Without a hook the cost is one branch per
//! blocking turn.
//!
//! **Hangs.** When no task is runnable and nothing can ever wake one, the simulated kernel's
//! `epoll_wait(-1)` returns `Deadlock`; [`Runtime::block_on`] turns that into an error of kind
//! `Deadlock` that names every live task and what it is parked on.
//!
//! **Livelocks.** A kernel that interrupts every wait (`EINTR`) or reports only events that no
//! task can use (spurious ones: the retried syscall says `EAGAIN` again) never lets the loop
//! block, and on the simulated kernel never lets virtual time pass: without a bound the runtime
//! would spin for ever. A *fruitless turn* is a turn taken with no task runnable, in which the
//! kernel returned only `EINTR` or descriptor events (no timer fired, no other thread woke the
//! loop), and after which no task finished and no operation ended (no syscall of a net type
//! returned anything but `EAGAIN`, no awaited edge arrived) by the next such turn.
//! [`LIVELOCK_TURNS`] fruitless turns in a row (change it with [`Runtime::set_livelock_turns`])
//! end [`block_on`](Runtime::block_on) with an error of kind `Other` whose payload is a
//! [`Livelock`] ([`Livelock::is_livelock`] recognises it) naming the live tasks. A single
//! operation that ends resets the count, so a program that makes progress under heavy but
//! finite fault rates never sees it (0.99 interruptions a wait reach 10,000 in a row with
//! probability 10^-44).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use super::driver::{Driver, DriverApi, Wakes};
use super::rng::Rng;
use super::{enter, set_current_task, CellFuture, Ctx, Exec, JoinError, JoinSink, TaskFuture};
use crate::Poller;

/// How many tasks run between two turns of the poll loop.
pub const BUDGET: usize = 128;

/// The default livelock bound: how many fruitless turns in a row end
/// [`block_on`](Runtime::block_on) with a [`Livelock`] error (see the [module docs](self)).
pub const LIVELOCK_TURNS: u32 = 10_000;

const MAIN: u32 = u32::MAX;

type LocalFuture = Pin<Box<dyn TaskFuture>>;
type SendFuture = Pin<Box<dyn CellFuture>>;

/// A callback run when the runtime is about to block (see [`Runtime::set_quiescence_hook`]).
pub type QuiescenceHook<P> = Box<dyn FnMut(&Driver<P>) -> io::Result<()>>;

/// The shared run queue: the cells of tasks woken off the runtime's thread (a waker may be
/// called on any thread). Tasks woken or spawned on the runtime's own thread go to its local
/// queue ([`LocalCore`]'s `local`) instead, with no lock: a lock is two locked instructions,
/// each about 13 cycles here and a full fence that stalls behind every cache miss in flight,
/// and a message through `rt-echo` took eight of them in queue traffic alone. The loop moves
/// this queue's cells to the local queue before it picks the next task.
///
/// `len` mirrors the queue's length, written under the lock, so that the loop's checks (is
/// anything queued here?) are one plain load. A waker on another thread pushes under the lock
/// and then wakes the loop through the driver's eventfd protocol ([`super::wake`]), whose
/// fences order the `len` store before the loop's re-check.
pub(crate) struct RunQueue {
    q: Mutex<VecDeque<Arc<TaskCell>>>,
    len: AtomicUsize,
    /// Wakes the poll loop from another thread; set by [`Runtime::enable_remote_wakeups`].
    /// (Asserted unwind-safe: it only wakes the loop, and a [`JoinHandle`](super::JoinHandle),
    /// which holds a task's cell and so this queue, stays `UnwindSafe` as it was.)
    remote: OnceLock<AssertUnwindSafe<Box<dyn Fn() + Send + Sync>>>,
}

impl RunQueue {
    fn new() -> RunQueue {
        RunQueue {
            q: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            remote: OnceLock::new(),
        }
    }

    fn push(&self, cell: Arc<TaskCell>) {
        self.with(|q| q.push_back(cell));
        if let Some(r) = self.remote.get() {
            (r.0)();
        }
    }

    /// Runs `f` on the queue under its lock, and keeps `len` in step.
    fn with<R>(&self, f: impl FnOnce(&mut VecDeque<Arc<TaskCell>>) -> R) -> R {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut q);
        self.len.store(q.len(), Ordering::Release);
        r
    }

    fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }
}

/// Where a new task's future and join state live.
enum Home {
    /// A `Send` task's: both in its cell.
    Cell(SendFuture),
    /// A local task's: both in its slab slot.
    Slot(LocalFuture, Arc<dyn JoinSink>),
}

/// A task's waker target, and for a task spawned with [`spawn`](super::spawn) (a `Send`
/// future) the task itself: one allocation holds the queued flag, the future's box and the
/// join state, as tokio's task header does, so that a wake and the poll that follows touch this
/// cell and the future, not a separate waker, slab slot and future, and spawning allocates no
/// separate join state (the [`JoinHandle`](super::JoinHandle) holds the cell). A task of
/// [`spawn_local`](super::spawn_local) (not `Send`, so not reachable from a waker) keeps its
/// future and join state in its slab [`Slot`]; its cell's join part, like the main future's,
/// stays unused.
///
/// 88 bytes (104 with the `Arc`'s counts, 112 with malloc's header), `repr(C)` in two parts:
/// the hot one first, what a wake and a poll touch (the state word, the id, the queue, the
/// body's mutex: 48 bytes, 64 with the counts, as before the join state moved in), then the
/// cold [`join`](TaskCell::join), touched only at spawn, when the task ends, and by its
/// handle. The task's waker is built at each poll (a reference count up and down on the hot
/// line) rather than kept in the cell.
#[repr(C)]
pub(crate) struct TaskCell {
    /// The task's number in reports (1, 2, ... in spawn order; 0 is the main future), shifted
    /// left by one, or'ed with [`SCHEDULED`]: set by a wake that queued the task, cleared by
    /// the poll that follows.
    state: AtomicU64,
    /// The slab slot and its generation ([`MAIN`] for the main future).
    id: (u32, u32),
    queue: Arc<RunQueue>,
    /// A `Send` task's future; `None` for a local task and the main future, and once finished.
    body: Mutex<Option<SendFuture>>,
    /// A `Send` task's join state (cold: after the hot fields).
    join: Mutex<CellJoin>,
}

/// The join state of a task kept in its cell: how it ended, and the waker of the
/// [`JoinHandle`](super::JoinHandle) awaiting it. 32 bytes whatever the output type.
///
/// `end` is `None` while the task runs, then one box whose type says how it ended: its value
/// itself (a zero-sized value such as `()` is not allocated), a [`Panicked`] error, or
/// [`Cancelled`]; [`Taken`] once the handle has it. These three types are private to this
/// module, so no task's output is one of them, and the two zero-sized ones allocate nothing: a
/// task's end allocates only for a value that is not zero-sized, or a panic.
struct CellJoin {
    end: Option<Box<dyn Any + Send>>,
    waker: Option<Waker>,
}

/// [`CellJoin::end`] of a task that panicked: its error, as the poll that caught the panic
/// made it.
struct Panicked(JoinError);

/// [`CellJoin::end`] of a task dropped unfinished (its runtime was dropped).
struct Cancelled;

/// [`CellJoin::end`] once the handle took the task's output.
struct Taken;

/// How much of a woken task's future [`TaskCell::warm`] hints at: six lines, the whole of
/// `rt-echo`'s client (360 bytes) and server (240) futures.
const WARM_BYTES: usize = 384;

/// [`TaskCell::state`]'s flag: the task is in the run queue.
const SCHEDULED: u64 = 1;

const _: () = assert!(std::mem::offset_of!(TaskCell, join) == 48);
const _: () = assert!(std::mem::size_of::<TaskCell>() == 88);

impl TaskCell {
    fn new(id: (u32, u32), number: u64, queue: Arc<RunQueue>) -> TaskCell {
        TaskCell {
            state: AtomicU64::new(number << 1 | SCHEDULED),
            id,
            queue,
            body: Mutex::new(None),
            join: Mutex::new(CellJoin {
                end: None,
                waker: None,
            }),
        }
    }

    fn lock_join(&self) -> std::sync::MutexGuard<'_, CellJoin> {
        self.join.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task ended (its value, or [`Panicked`]) or was dropped unfinished ([`Cancelled`]),
    /// its future already dropped: stores that for the handle and wakes it. Only the first
    /// call counts.
    fn finish(&self, end: Box<dyn Any + Send>) {
        let w = {
            let mut j = self.lock_join();
            if j.end.is_some() {
                return;
            }
            j.end = Some(end);
            j.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Whether the task ended (returned, panicked, or was dropped): for
    /// [`JoinHandle::is_finished`](super::JoinHandle::is_finished).
    pub(crate) fn join_finished(&self) -> bool {
        self.lock_join().end.is_some()
    }

    /// The handle's poll: the task's boxed value or its [`JoinError`] once it has ended;
    /// otherwise keeps `cx`'s waker to be woken then.
    ///
    /// # Panics
    /// If the output was already taken.
    pub(crate) fn poll_join(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Box<dyn Any + Send>, JoinError>> {
        let end = {
            let mut j = self.lock_join();
            match j.end.take() {
                Some(end) => {
                    j.end = Some(Box::new(Taken));
                    end
                }
                None => {
                    if !j.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        j.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        };
        if end.is::<Taken>() {
            panic!("netpoll: JoinHandle polled after it returned");
        }
        if end.is::<Cancelled>() {
            return Poll::Ready(Err(JoinError::cancelled()));
        }
        Poll::Ready(match end.downcast::<Panicked>() {
            Ok(p) => Err(p.0),
            Err(value) => Ok(value),
        })
    }

    /// Hints that the task's future is about to be polled ([`crate::hint`]): its first
    /// [`WARM_BYTES`], so that the lines its poll starts with are on their way while the tasks
    /// queued before it run. Nothing without an installed hint, for a local task (its future
    /// is in its slot), or while the future is being polled (the task woke itself).
    fn warm(&self) {
        if !crate::hint::installed() {
            return;
        }
        if let Ok(body) = self.body.try_lock() {
            if let Some(f) = body.as_ref() {
                crate::hint::prefetch(&**f, WARM_BYTES);
            }
        }
    }

    /// The task's number.
    fn number(&self) -> u64 {
        self.state.load(Ordering::Relaxed) >> 1
    }

    /// Sets [`SCHEDULED`]: whether it was clear (the caller queues the task).
    fn schedule(&self) -> bool {
        self.state.fetch_or(SCHEDULED, Ordering::AcqRel) & SCHEDULED == 0
    }

    /// Clears [`SCHEDULED`] before a poll; returns the task's number.
    fn unschedule(&self) -> u64 {
        self.state.fetch_and(!SCHEDULED, Ordering::AcqRel) >> 1
    }
}

impl Wake for TaskCell {
    /// The waker's reference goes to the queue: no count up and down.
    fn wake(self: Arc<Self>) {
        if self.schedule() {
            queue(self);
        }
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.schedule() {
            queue(self.clone());
        }
    }
}

/// Queues a woken task: in its runtime's local queue when woken on that runtime's thread
/// (the common case: a wake from the poll loop's dispatch or from another task), in the shared
/// one otherwise.
fn queue(cell: Arc<TaskCell>) {
    let mut cell = Some(cell);
    super::try_with_local_core(|core| {
        let mine = cell
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.queue, &core.queue));
        if let (true, Ok(mut local)) = (mine, core.local.try_borrow_mut()) {
            if let Some(c) = cell.take() {
                c.warm();
                local.push_back(c);
            }
        }
    });
    if let Some(cell) = cell {
        let q = Arc::clone(&cell.queue);
        q.push(cell);
    }
}

/// A task's slot in the slab (for reports, the runtime's drop, and a local task's future and
/// join state): 48 bytes. A `Send` task's poll does not touch it until the task ends; a
/// local task's poll reads the generation, takes the future and the join state out and puts
/// them back. A local task's waker is built
/// at each poll from `cell` (a reference count up and down, on the line the poll touches
/// anyway to clear the queued flag) rather than stored beside it.
struct Slot {
    gen: u32,
    /// A local task's future, boxed once. `None` while it is being polled, for a `Send` task
    /// (whose future is in its cell), and when the slot is free.
    fut: Option<LocalFuture>,
    /// A local task's join state (out of the slot while its future is polled; a `Send` task's
    /// is in its cell).
    join: Option<Arc<dyn JoinSink>>,
    /// The task's cell; `Some` exactly while a task lives here.
    cell: Option<Arc<TaskCell>>,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 48);

/// The executor's state, reachable from the thread's context so that `spawn` can add tasks.
pub(crate) struct LocalCore {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// Runnable tasks woken or spawned on this thread, in order (see [`RunQueue`]).
    local: RefCell<VecDeque<Arc<TaskCell>>>,
    /// Runnable tasks woken on other threads.
    queue: Arc<RunQueue>,
    rng: RefCell<Option<Rng>>,
    next_number: Cell<u64>,
    /// Tasks that ran to completion (progress, for the livelock bound).
    completed: Cell<u64>,
}

impl LocalCore {
    /// Takes a slot for a new task and queues its new cell; the future and the join state go
    /// where `home` says. Returns the cell of a `Send` task, for its handle.
    fn add(&self, home: Home) -> Option<Arc<TaskCell>> {
        let number = self.next_number.get();
        self.next_number.set(number + 1);
        let mut slots = self.slots.borrow_mut();
        let idx = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    gen: 0,
                    fut: None,
                    join: None,
                    cell: None,
                });
                u32::try_from(slots.len() - 1).expect("fewer than 2^32 tasks")
            }
        };
        let slot = &mut slots[idx as usize];
        let cell = Arc::new(TaskCell::new((idx, slot.gen), number, self.queue.clone()));
        let handle = match home {
            Home::Cell(fut) => {
                *cell.body.lock().unwrap_or_else(|e| e.into_inner()) = Some(fut);
                Some(cell.clone())
            }
            Home::Slot(fut, join) => {
                slot.fut = Some(fut);
                slot.join = Some(join);
                None
            }
        };
        slot.cell = Some(cell.clone());
        self.local.borrow_mut().push_back(cell);
        handle
    }

    /// Spawns a task whose future need not be `Send` (kept in its slab slot, with its join
    /// state).
    pub(crate) fn spawn(&self, fut: LocalFuture, join: Arc<dyn JoinSink>) {
        self.add(Home::Slot(fut, join));
    }

    /// Spawns a `Send` task (kept in its cell, with its join state); returns the cell, for the
    /// task's [`JoinHandle`](super::JoinHandle).
    pub(crate) fn spawn_send(&self, fut: SendFuture) -> Arc<TaskCell> {
        self.add(Home::Cell(fut)).expect("a Send task's cell")
    }

    /// The next runnable task: the oldest, or a seeded choice.
    fn pop(&self) -> Option<Arc<TaskCell>> {
        let mut q = self.local.borrow_mut();
        if !self.queue.is_empty() {
            self.queue.with(|remote| q.extend(remote.drain(..)));
        }
        match self.rng.borrow_mut().as_mut() {
            None => q.pop_front(),
            Some(rng) if !q.is_empty() => {
                let i = rng.below(q.len());
                q.swap_remove_back(i)
            }
            Some(_) => None,
        }
    }

    /// Whether no task is runnable (in either queue).
    fn idle(&self) -> bool {
        self.local.borrow().is_empty() && self.queue.is_empty()
    }

    /// Polls the task of `cell` once (if it still exists).
    fn run(&self, cell: &Arc<TaskCell>) {
        let mut body = cell.body.lock().unwrap_or_else(|e| e.into_inner());
        let Some(fut) = body.as_mut() else {
            drop(body);
            return self.run_local(cell);
        };
        let idx = cell.id.0;
        let number = cell.unschedule();
        let waker = Waker::from(cell.clone());
        set_current_task(number);
        let r = fut.as_mut().poll_erased(&mut Context::from_waker(&waker));
        set_current_task(0);
        drop(waker);
        let Poll::Ready(out) = r else {
            return;
        };
        let fut = body.take().expect("polled just now");
        drop(body);
        let own = self.retire(idx);
        drop(own);
        // The future first (it may hold descriptors), then the output for the handle.
        drop(fut);
        cell.finish(out.unwrap_or_else(|e| Box::new(Panicked(e))));
    }

    /// A task ran to completion: frees its slot (a new generation, so a stale wake misses it)
    /// and returns the slot's hold on the task's cell, for the caller to drop with no borrow of
    /// the slab held. (The slot holds no join state by then: a local task's is out of the slot
    /// while it is polled, a `Send` task's is in its cell.)
    fn retire(&self, idx: u32) -> Option<Arc<TaskCell>> {
        self.completed.set(self.completed.get() + 1);
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[idx as usize];
        let own = slot.cell.take();
        slot.gen = slot.gen.wrapping_add(1);
        self.free.borrow_mut().push(idx);
        own
    }

    /// Polls a local task (its future is in its slot) once, if it still exists.
    fn run_local(&self, cell: &Arc<TaskCell>) {
        let id = cell.id;
        let (mut fut, join) = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(id.0 as usize) else {
                return;
            };
            if slot.gen != id.1 || slot.cell.is_none() {
                return; // a stale wake for a finished task
            }
            let Some(fut) = slot.fut.take() else {
                return;
            };
            let join = slot.join.take().expect("a live local task's join state");
            (fut, join)
        };
        let number = cell.unschedule();
        let waker = Waker::from(cell.clone());
        set_current_task(number);
        let done = fut
            .as_mut()
            .poll_task(&mut Context::from_waker(&waker), &*join)
            .is_ready();
        set_current_task(0);
        drop(waker);
        if done {
            let own = self.retire(id.0);
            drop(fut);
            drop(own);
            join.publish();
            return;
        }
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[id.0 as usize];
        if slot.cell.is_some() {
            slot.fut = Some(fut);
            slot.join = Some(join);
        } else {
            drop(slots);
            drop(fut);
            join.publish();
        }
    }

    fn live(&self) -> Vec<u64> {
        self.slots
            .borrow()
            .iter()
            .filter_map(|s| s.cell.as_ref().map(|c| c.number()))
            .collect()
    }

    /// Takes every task's future out, with its join state, to be dropped (then cancelled) by
    /// the caller.
    fn drain(&self) -> Vec<Unfinished> {
        let mut slots = self.slots.borrow_mut();
        slots
            .iter_mut()
            .filter_map(|s| {
                let cell = s.cell.take()?;
                let body = cell.body.lock().unwrap_or_else(|e| e.into_inner()).take();
                match body {
                    Some(fut) => Some(Unfinished::Cell(fut, cell)),
                    None => Some(Unfinished::Slot(s.fut.take()?, s.join.take()?)),
                }
            })
            .collect()
    }
}

/// A task dropped with its runtime: its future, and where its cancellation goes.
enum Unfinished {
    /// A `Send` task: its join state is in its cell.
    Cell(SendFuture, Arc<TaskCell>),
    /// A local task.
    Slot(LocalFuture, Arc<dyn JoinSink>),
}

impl Unfinished {
    /// Drops the future (it may hold descriptors), then tells the handle.
    fn cancel(self) {
        match self {
            Unfinished::Cell(fut, cell) => {
                drop(fut);
                cell.finish(Box::new(Cancelled));
            }
            Unfinished::Slot(fut, join) => {
                drop(fut);
                join.publish();
            }
        }
    }
}

/// A single-threaded runtime over any [`Poller`]. See the [module docs](self).
///
/// # Examples
///
/// An echo round trip between two tasks on the simulated kernel, seeded. The runtime is given
/// an `Rc<Sim>`, so the test can look at the kernel while the runtime uses it (a plain `&Sim`
/// will not do: the net types find their runtime through a thread-local, which holds only
/// `'static` types).
///
/// ```
/// use std::rc::Rc;
///
/// use netpoll::rt::{self, Runtime, TcpListener, TcpStream};
/// use netpoll_sim::Sim;
///
/// let sim = Rc::new(Sim::new(7));
/// let mut rt = Runtime::seeded(Rc::clone(&sim), 7)?;
/// let reply = rt.block_on(async {
///     let ln = TcpListener::<Rc<Sim>>::bind("127.0.0.1:0".parse().unwrap())?;
///     let addr = ln.local_addr()?;
///     let server = rt::spawn(async move {
///         let (conn, _) = ln.accept().await?;
///         let mut buf = [0u8; 5];
///         let n = conn.read(&mut buf).await?;
///         conn.write_all(&buf[..n]).await
///     });
///     let conn = TcpStream::<Rc<Sim>>::connect(addr).await?;
///     conn.write_all(b"hello").await?;
///     let mut buf = [0u8; 5];
///     let mut got = 0;
///     while got < 5 {
///         got += conn.read(&mut buf[got..]).await?;
///     }
///     server.await??;
///     Ok::<_, std::io::Error>(buf)
/// })??;
/// assert_eq!(&reply, b"hello");
/// assert!(sim.now_ns() > 0, "virtual time passed: the network has latency");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime<P: Poller + 'static> {
    driver: Arc<Driver<P>>,
    core: Rc<LocalCore>,
    seed: Option<u64>,
    hook: Option<QuiescenceHook<P>>,
    livelock_turns: Option<u32>,
}

impl<P: Poller + 'static> fmt::Debug for Runtime<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("poller", &self.driver.poller().name())
            .field("seed", &self.seed)
            .finish()
    }
}

impl<P: Poller + 'static> Runtime<P> {
    /// A runtime that runs tasks in wake order.
    ///
    /// # Errors
    /// Creating the epoll instance or the wake eventfd failed.
    pub fn new(poller: P) -> io::Result<Runtime<P>> {
        Runtime::build(poller, None)
    }

    /// A runtime whose every choice (the next task, the order of readiness and timers at one
    /// instant) comes from `seed`.
    ///
    /// # Errors
    /// As [`Runtime::new`].
    pub fn seeded(poller: P, seed: u64) -> io::Result<Runtime<P>> {
        Runtime::build(poller, Some(seed))
    }

    fn build(poller: P, seed: Option<u64>) -> io::Result<Runtime<P>> {
        Ok(Runtime {
            driver: Arc::new(Driver::new_exclusive(poller)?),
            core: Rc::new(LocalCore {
                slots: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                local: RefCell::new(VecDeque::new()),
                queue: Arc::new(RunQueue::new()),
                rng: RefCell::new(seed.map(Rng::new)),
                next_number: Cell::new(1),
                completed: Cell::new(0),
            }),
            seed,
            hook: None,
            livelock_turns: Some(LIVELOCK_TURNS),
        })
    }

    /// The seed, for [`Runtime::seeded`] runtimes.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The driver (its poller, for direct syscalls in tests).
    pub fn driver(&self) -> &Driver<P> {
        &self.driver
    }

    /// Installs `hook`, run by [`block_on`](Self::block_on) each time it is about to turn the
    /// poll loop with permission to block: no task (the main future included) is runnable.
    /// The wait that follows may still be a poll, if a timer is due (compare
    /// [`Driver::next_timer`] with the poller's clock) or, with remote wakeups enabled, if
    /// another thread woke a task in between.
    ///
    /// The hook runs outside every task, with the runtime's context entered (so it may look at
    /// net values it holds, but it must not block). If it returns an error, `block_on` returns
    /// that error at once; the tasks stay as they are, parked, until the runtime is dropped.
    /// Replaces any previous hook; `None`-like removal is [`Runtime::clear_quiescence_hook`].
    pub fn set_quiescence_hook(
        &mut self,
        hook: impl FnMut(&Driver<P>) -> io::Result<()> + 'static,
    ) {
        self.hook = Some(Box::new(hook));
    }

    /// Removes the quiescence hook.
    pub fn clear_quiescence_hook(&mut self) {
        self.hook = None;
    }

    /// Sets the livelock bound: after `turns` fruitless turns in a row (see the
    /// [module docs](self)) [`block_on`](Self::block_on) returns a [`Livelock`] error; `None`
    /// spins for ever instead. The default is [`LIVELOCK_TURNS`].
    ///
    /// # Panics
    /// If `turns` is `Some(0)` (a bound no run could meet).
    pub fn set_livelock_turns(&mut self, turns: Option<u32>) {
        assert!(turns != Some(0), "netpoll: a livelock bound of 0 turns");
        self.livelock_turns = turns;
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            driver: self.driver.clone() as Arc<dyn DriverApi>,
            exec: Exec::Local(self.core.clone()),
        }
    }

    /// Spawns a task (it runs once [`block_on`](Self::block_on) runs).
    pub fn spawn<F>(&self, fut: F) -> super::JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let _g = enter(self.ctx());
        super::spawn_local(fut)
    }

    /// Runs `fut` (and every spawned task) until `fut` completes.
    ///
    /// # Errors
    /// `Deadlock` if no task can ever make progress (the simulated kernel detects this; the
    /// message names the live tasks and what they wait on); a [`Livelock`] (kind `Other`) after
    /// the livelock bound's fruitless turns (see the [module docs](self)); the quiescence hook's
    /// error; any other `epoll_wait` error.
    pub fn block_on<F: Future>(&mut self, fut: F) -> io::Result<F::Output> {
        let _g = enter(self.ctx());
        let core = &*self.core;
        let main_waker = Arc::new(TaskCell::new((MAIN, 0), 0, core.queue.clone()));
        core.local.borrow_mut().push_back(main_waker.clone());
        let waker = Waker::from(main_waker.clone());
        let mut fut = std::pin::pin!(fut);
        // The livelock bound: fruitless turns so far, and the progress marks taken after the
        // last turn that returned only kernel noise (checked at the next blocking turn).
        let mut fruitless = Fruitless::default();
        let mut watch: Option<(u64, u64)> = None;
        loop {
            for _ in 0..BUDGET {
                let Some(cell) = core.pop() else { break };
                if cell.id.0 == MAIN {
                    main_waker.unschedule();
                    set_current_task(0);
                    if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
                        return Ok(v);
                    }
                } else {
                    core.run(&cell);
                }
            }
            let block = core.idle();
            if block {
                if let Some(mark) = watch.take() {
                    if self.driver.progress() == mark.0 && core.completed.get() == mark.1 {
                        fruitless.turns += 1;
                        if Some(fruitless.turns) == self.livelock_turns {
                            return Err(self.livelock_report(&fruitless));
                        }
                    } else {
                        fruitless = Fruitless::default();
                    }
                }
                if let Some(hook) = self.hook.as_mut() {
                    hook(&self.driver)?;
                }
            }
            let timers_first = core.rng.borrow_mut().as_mut().is_some_and(Rng::coin);
            match self
                .driver
                .turn(block, timers_first, Wakes::AfterDispatch, || !core.idle())
            {
                Ok(turn) => {
                    if block && turn.only_kernel_noise() {
                        fruitless.interrupted += u32::from(turn.interrupted);
                        watch = Some((self.driver.progress(), core.completed.get()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Deadlock => {
                    return Err(self.deadlock_report(&e));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn livelock_report(&self, fruitless: &Fruitless) -> io::Error {
        let head = format!(
            "netpoll runtime ({}): livelock: {} turns in a row in which the kernel returned only \
             interruptions or events no task could use, and no operation ended ({} waits \
             interrupted by EINTR, {} returning only events after which every retried syscall \
             said EAGAIN)",
            self.driver.poller().name(),
            fruitless.turns,
            fruitless.interrupted,
            fruitless.turns - fruitless.interrupted,
        );
        let message = self.describe_tasks(head);
        io::Error::other(Livelock {
            turns: fruitless.turns,
            message,
        })
    }

    fn deadlock_report(&self, cause: &io::Error) -> io::Error {
        let head = format!(
            "netpoll runtime ({}): no task can make progress ({cause})",
            self.driver.poller().name()
        );
        io::Error::new(io::ErrorKind::Deadlock, self.describe_tasks(head))
    }

    /// `msg`, then the seed, every live task and what it is parked on, and the armed sleeps.
    fn describe_tasks(&self, mut msg: String) -> String {
        if let Some(seed) = self.seed {
            let _ = write!(msg, "; seed {seed}");
        }
        let parked = self.driver.parked();
        let mut live = self.core.live();
        live.insert(0, 0);
        for n in live {
            let name = if n == 0 {
                "main".to_string()
            } else {
                format!("task {n}")
            };
            let on: Vec<String> = parked
                .iter()
                .filter(|p| p.task == n)
                .map(|p| format!("{} fd {}", p.dir.name(), p.fd))
                .collect();
            if on.is_empty() {
                let _ = write!(msg, "; {name} parked (not on a descriptor)");
            } else {
                let _ = write!(msg, "; {name} parked on {}", on.join(", "));
            }
        }
        let sleeping = self.driver.sleeping();
        if sleeping > 0 {
            let _ = write!(msg, "; {sleeping} sleep timers armed");
        }
        msg
    }
}

/// Fruitless turns in a row (see the module docs).
#[derive(Default)]
struct Fruitless {
    turns: u32,
    interrupted: u32,
}

/// The payload of the error [`Runtime::block_on`] returns on a livelock: the loop turned
/// [`LIVELOCK_TURNS`] times (or the bound set by [`Runtime::set_livelock_turns`]) without any
/// task making progress, the kernel returning only `EINTR` or events no task could use.
///
/// # Examples
/// ```
/// use netpoll::rt::{self, executor::Livelock, Runtime, TcpListener};
/// use netpoll_sim::{FaultPlan, Sim, SimConfig};
///
/// // A kernel that interrupts every wait: nothing can ever arrive.
/// let sim = Sim::with_config(7, SimConfig {
///     faults: FaultPlan { eintr: 1.0, ..FaultPlan::none() },
///     ..SimConfig::default()
/// });
/// let mut rt = Runtime::new(sim)?;
/// let e = rt
///     .block_on(async {
///         let ln = TcpListener::<Sim>::bind("127.0.0.1:0".parse().unwrap())?;
///         ln.accept().await.map(drop)
///     })
///     .unwrap_err();
/// assert!(Livelock::is_livelock(&e), "{e}");
/// assert!(e.to_string().contains("livelock"));
/// # let _ = rt::spawn::<std::future::Ready<()>>;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Livelock {
    /// The fruitless turns counted.
    pub turns: u32,
    message: String,
}

impl Livelock {
    /// Whether `e` is a livelock verdict of [`Runtime::block_on`].
    pub fn is_livelock(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Livelock>())
    }
}

impl fmt::Display for Livelock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Livelock {}

impl<P: Poller + Send + Sync + 'static> Runtime<P> {
    /// Lets wakers called on other threads interrupt a blocked `epoll_wait` (through the
    /// driver's eventfd, coalesced: see [`super::wake`]). Without it such a wake is seen at the
    /// loop's next turn only.
    pub fn enable_remote_wakeups(&self) {
        let d = Arc::downgrade(&self.driver);
        let _ = self
            .core
            .queue
            .remote
            .set(AssertUnwindSafe(Box::new(move || {
                if let Some(d) = d.upgrade() {
                    d.wake_loop();
                }
            })));
    }
}

impl<P: Poller + 'static> Drop for Runtime<P> {
    fn drop(&mut self) {
        // Drop the tasks inside the context, so that their descriptors close through the driver.
        let _g = enter(self.ctx());
        // Each task's future first (it may hold descriptors), then its cancellation.
        for task in self.core.drain() {
            task.cancel();
        }
    }
}

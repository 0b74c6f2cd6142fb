//! The netpoller: a Go-style runtime written against the [`Poller`](crate::Poller) trait.
//!
//! Users write blocking-style async code, one task per connection, and the same code runs on
//! real epoll (`netpoll_realnet::RealNet`) and on the simulated kernel (`netpoll_sim::Sim`):
//!
//! ```no_run
//! use netpoll::rt::{self, TcpListener, TcpStream};
//! use netpoll::Poller;
//!
//! async fn echo<P: Poller + 'static>(conn: TcpStream<P>) -> std::io::Result<()> {
//!     let mut buf = [0u8; 4096];
//!     loop {
//!         let n = conn.read(&mut buf).await?;
//!         if n == 0 {
//!             break;
//!         }
//!         conn.write_all(&buf[..n]).await?;
//!     }
//!     Ok(())
//! }
//!
//! async fn serve<P: Poller + 'static>(ln: TcpListener<P>) -> std::io::Result<()> {
//!     loop {
//!         let (conn, _) = ln.accept().await?;
//!         rt::spawn(echo(conn));
//!     }
//! }
//! # let _ = serve::<netpoll::NoKernel>;
//! ```
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`pd`] | the poll descriptor and its read/write [`Side`](pd::Side) state machines: start here |
//! | [`driver`] | one epoll instance: the descriptor table, timers, the poll loop's turn |
//! | [`wake`] | waking a blocked poll loop from another thread (eventfd, coalesced) |
//! | `timer` | the timer heap (sleeps and descriptor deadlines) |
//! | [`executor`] | [`Runtime`]: the single-threaded executor, FIFO or seeded, with a quiescence hook for oracles |
//! | [`multi`] | [`MultiRuntime`]: N worker threads sharing one driver, on `std` threads or simulated ones ([`Threads`]) |
//! | [`net`] | [`TcpListener`], [`TcpStream`], [`UnixStream`], [`PipeReader`], [`PipeWriter`] |
//!
//! ## How a read parks
//!
//! `read` tries the syscall first. On `EAGAIN` it asks the read [`Side`](pd::Side) of its poll
//! descriptor to park the task; the side either hands back an edge that arrived in between
//! (retry), or stores the task's waker. The poll loop, on an epoll event for that fd, marks the
//! side ready and wakes the waker. Deadlines are timers that mark a side expired; close marks both
//! sides closed. Each of these wakes the parked task, which then sees why.
//!
//! ## The runtime context
//!
//! Net types, [`spawn`], [`sleep`] and [`now`] find their runtime through a thread-local set by
//! [`Runtime::block_on`] (and by every worker of a [`MultiRuntime`]). So the net types hold no
//! reference to the Poller: a `TcpStream<Sim>` is `Send` even though `Sim` is not, and the same
//! handler can be spawned with [`spawn`] on every runtime. Using one outside its runtime's
//! thread(s) panics with a message saying so.
//!
//! ## Locked instructions
//!
//! Every type here is `Send` and `Sync`, so that one handler runs on a [`Runtime`] and on a
//! [`MultiRuntime`] alike. On x86 each atomic read-modify-write (a lock, an `Arc` clone, a
//! `fetch_add`) is a locked instruction: about 13 cycles even on a line in the cache, and a full
//! fence that waits for every load and store before it. The single-threaded [`Runtime`] avoids
//! the ones its single thread makes pointless: a task woken on the runtime's thread goes to a
//! local run queue (no lock; wakers called on other threads use the shared, locked one), and its
//! driver is *exclusive*, since no other thread can make a syscall on, close, or move the sides
//! of one of its descriptors (the argument is in [`pd`], "On an exclusive driver"): no reference
//! taken on a descriptor around a syscall; tokens, progress and the sides' transitions (an
//! edge consumed, a park, an event's `NIL → READY`, a deadline reset with nobody parked) made
//! with plain loads and stores; its table and timers under the turn's lock, one lock a turn
//! instead of three. A message through `rt-echo` (four syscalls, two task wakes) took 108
//! locked instructions and takes 35 (callgrind, 2,000 connections; `BENCHMARKS.md`, "Locked
//! instructions" and "rtexcl"). What remains is the mutexes and atomics of the shared state
//! machines: the task cell's queued flag, future and waker (16), the descriptor's waiter slot
//! (a lock at each park and at each wake, 8), the turn's lock and the poll fence that pairs
//! with remote wakers (6), the deadline re-arm's lock (2).
//!
//! ## Memory per connection
//!
//! What the netpoller itself holds for one open connection, on top of the kernel's socket (on
//! the simulated kernel about 0.9 KB a connection, `echo`'s figure in `BENCHMARKS.md`, "Scale"):
//!
//! | what | bytes | notes |
//! |---|---:|---|
//! | poll descriptor ([`PollDesc`](pd::PollDesc)) | 104 | one word for the syscall count, the flags and the token source (8), the tag and the read side's row in the driver's deadline table (8), two [`Side`](pd::Side)s of 40 (state word, mutex-guarded waiter slot), the fd and the write side's row (8), in that order (`repr(C)`: everything an event, a read and a write touch is in the first 64 bytes) |
//! | its `Arc` and the driver's table slot | 16 + 8 | one descriptor = one `Arc<PollDesc>`, malloc's chunk is 128 |
//! | a task | boxed future + about 160 | the future is the handler's state machine (its locals: a [`TcpStream`] is 32 bytes; a read or write in progress is one small struct, no `async fn` nested around it), boxed once; the task's cell (the waker's target: its number and queued flag and the future's box, 48 bytes, then the join state the [`JoinHandle`] reads, 40; 112 with the `Arc`'s counts and malloc's header) and the executor's slab slot (48: a [`spawn_local`] task's future box and join state) add the rest. A [`spawn_local`] task, or a task on a [`MultiRuntime`], has a separate join state instead (about 112) |
//! | buffers | the handler's | whatever the task allocates to read and write into |
//! | a read or write deadline | about 88 while armed | one timer entry (40) per side, however often it is re-armed (a re-arm in deadline order appends a new entry and the old one is dropped when it reaches the front), and the side's row in the driver's deadline table (carrier 16, later deadline 16, owner 16); see `timer` |
//!
//! So a server connection with one task and a 4 KiB read buffer costs about 4.5 KB plus its
//! future. `rt-echo` keeps both ends in one process: per connection two descriptors, two tasks
//! (client and server), a 64-byte and a 128-byte buffer held inline in the tasks' futures (the
//! client's future about 360 bytes, the server connection's 240), and one deadline; it
//! measured about 2.2 KB a connection above `echo`'s hand-written loop with 100,000 connections
//! open at once (`BENCHMARKS.md`, "The netpoller at 100,000 connections"), about 1.6 KB since
//! its futures shrank (`BENCHMARKS.md`, "rtlazy").
//!
//! ## Not done, and why
//!
//! - No work stealing: a [`MultiRuntime`]'s workers share one FIFO queue (simple, and enough to
//!   use N threads; per-worker queues would cut lock traffic).
//! - On simulated threads ([`Threads`]), the poll descriptor's atomics (shared with the
//!   single-threaded runtime, whose hot path must stay free of hooks) are not switch points:
//!   the multi-threaded runtime's own synchronisation points and every kernel call are.
//! - No task cancellation other than dropping the runtime; no `EPOLLEXCLUSIVE`; IPv4 only (the
//!   trait's addresses are `SocketAddrV4`).
//! - A net value dropped on a thread outside its runtime cannot reach the Poller (it is found
//!   through the thread's context, see above): its fd is queued, and the driver closes it at its
//!   next turn or when the runtime is dropped. Until then the number stays taken.
//! - Two operations on the same side at once are refused only when both park (the second gets
//!   `ResourceBusy`); Go also serialises the syscalls with its `fdMutex`. Share a stream between
//!   one reader and one writer, not two readers.
//! - The short-read shortcut ([`net`]) is taken only where the poller promises that a short read
//!   drained the buffer (Linux; the sim without short-read faults); see
//!   [`Driver::short_read_drains`].
//! - A task's future is boxed beside its cell, and a parked waker sits behind a mutex in its
//!   poll descriptor's side: a future inline in the task's allocation (tokio's task layout) and
//!   a lock-free waker slot (tokio's `AtomicWaker`) both need `unsafe`, which `rt` does not use.
//!   With 100,000 connections live a message's cost is mostly its dependent cache misses (the
//!   descriptor at dispatch, the task's cell at the wake, the future's lines at the poll, the
//!   kernel's lines), and those layouts would each save one or two (`BENCHMARKS.md`, "Locked
//!   instructions").

pub mod driver;
pub mod executor;
pub mod multi;
pub mod net;
pub mod pd;
pub mod rng;
mod sync;
pub(crate) mod timer;
pub mod wake;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskCx, Poll, Waker};
use std::time::Duration;

pub use driver::Driver;
pub use executor::Runtime;
pub use multi::MultiRuntime;
pub use net::{pipe, PipeReader, PipeWriter, TcpListener, TcpStream, UnixStream};
pub use sync::{Joiner, OsThreads, Threads, Unparker};

use driver::DriverApi;
use timer::{Action, SleepShared};

/// Which executor a thread's context spawns onto.
#[derive(Clone)]
pub(crate) enum Exec {
    Local(Rc<executor::LocalCore>),
    Multi(Arc<multi::Shared>),
}

/// What a runtime thread knows: its driver and its executor.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) driver: Arc<dyn DriverApi>,
    pub(crate) exec: Exec,
}

thread_local! {
    static CONTEXT: RefCell<Option<Ctx>> = const { RefCell::new(None) };
    static CURRENT_TASK: Cell<u64> = const { Cell::new(0) };
}

/// Restores the previous context when dropped.
pub(crate) struct EnterGuard(Option<Ctx>);

pub(crate) fn enter(ctx: Ctx) -> EnterGuard {
    EnterGuard(CONTEXT.with(|c| c.borrow_mut().replace(ctx)))
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        CONTEXT.with(|c| *c.borrow_mut() = prev);
    }
}

pub(crate) fn set_current_task(id: u64) {
    CURRENT_TASK.with(|c| c.set(id));
}

pub(crate) fn current_task() -> u64 {
    CURRENT_TASK.with(|c| c.get())
}

const NO_RUNTIME: &str = "netpoll: no runtime on this thread (call this inside Runtime::block_on \
     or a MultiRuntime task)";

fn with_ctx<R>(f: impl FnOnce(&Ctx) -> R) -> R {
    CONTEXT.with(|c| f(c.borrow().as_ref().expect(NO_RUNTIME)))
}

/// Runs `f` with this thread's single-threaded executor; `None` outside a runtime, on a
/// [`MultiRuntime`] worker, or while the context is being switched.
pub(crate) fn try_with_local_core<R>(f: impl FnOnce(&executor::LocalCore) -> R) -> Option<R> {
    CONTEXT.with(|c| match c.try_borrow().ok()?.as_ref()? {
        Ctx {
            exec: Exec::Local(core),
            ..
        } => Some(f(core)),
        _ => None,
    })
}

/// Runs `f` with this thread's driver if it is a `Driver<P>`; `None` outside a runtime or in a
/// runtime of another Poller type.
pub(crate) fn try_with_driver<P: crate::Poller + 'static, R>(
    f: impl FnOnce(&Driver<P>) -> R,
) -> Option<R> {
    CONTEXT.with(|c| {
        let c = c.borrow();
        let d = c.as_ref()?.driver.as_any().downcast_ref::<Driver<P>>()?;
        Some(f(d))
    })
}

/// Runs `f` with this thread's driver, which must be a `Driver<P>`.
///
/// # Panics
/// Outside a runtime, or if the runtime's Poller type is not `P`.
pub(crate) fn with_driver<P: crate::Poller + 'static, R>(f: impl FnOnce(&Driver<P>) -> R) -> R {
    try_with_driver(f).unwrap_or_else(|| {
        let in_runtime = CONTEXT.with(|c| c.borrow().is_some());
        if in_runtime {
            panic!("netpoll: this descriptor belongs to a runtime of another Poller type");
        }
        panic!("{NO_RUNTIME}");
    })
}

/// The Poller's clock ([`Poller::now`](crate::Poller::now)): the time base of every deadline.
///
/// # Panics
/// Outside a runtime.
pub fn now() -> Duration {
    with_ctx(|c| c.driver.now())
}

/// Spawns a task on the current runtime; it runs until it completes or the runtime is dropped.
///
/// The future must be `Send` so that the same call works on a [`MultiRuntime`]; on a
/// single-threaded [`Runtime`], [`spawn_local`] takes futures that are not.
///
/// # Panics
/// Outside a runtime.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    with_ctx(|c| match &c.exec {
        Exec::Local(core) => JoinHandle {
            inner: Inner::Cell(core.spawn_send(Box::pin(fut)), unbox::<F::Output>),
        },
        Exec::Multi(shared) => {
            let (join, handle) = join_state::<F::Output>();
            shared.spawn(Box::pin(fut), join);
            handle
        }
    })
}

/// Spawns a task that need not be `Send` on the current single-threaded [`Runtime`].
///
/// # Panics
/// Outside a runtime, or on a [`MultiRuntime`].
pub fn spawn_local<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (join, handle) = join_state::<F::Output>();
    with_ctx(|c| match &c.exec {
        Exec::Local(core) => core.spawn(Box::pin(fut), join),
        Exec::Multi(_) => panic!("netpoll: spawn_local on a MultiRuntime (use spawn)"),
    });
    handle
}

struct JoinState<T> {
    value: Option<Result<T, JoinError>>,
    done: bool,
    waker: Option<Waker>,
}

/// Awaits a spawned task's output: `Ok` with its value, or a [`JoinError`] if the task
/// panicked or was dropped before it finished (its runtime was dropped). Dropping the handle
/// detaches the task.
///
/// A panic in a task is caught where the task is polled: the runtime and its other tasks go on,
/// and the panic comes back through the handle, as with tokio. (The panic hook still prints
/// the panic message when it happens.)
///
/// # Examples
/// ```
/// use netpoll::rt::{self, Runtime};
/// use netpoll_sim::Sim;
///
/// let mut rt = Runtime::new(Sim::new(1))?;
/// let (ok, bad) = rt.block_on(async {
///     let ok = rt::spawn(async { 6 * 7 });
///     let bad = rt::spawn(async {
///         if rt::now() >= std::time::Duration::ZERO {
///             panic!("boom");
///         }
///         0
///     });
///     (ok.await, bad.await)
/// })?;
/// assert_eq!(ok.unwrap(), 42);
/// let e = bad.unwrap_err();
/// assert!(e.is_panic());
/// assert_eq!(e.panic_message(), Some("boom"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct JoinHandle<T> {
    inner: Inner<T>,
}

/// Where a [`JoinHandle`] finds its task's output.
enum Inner<T> {
    /// A separate join state: a [`spawn_local`] task's, or a task's on a [`MultiRuntime`].
    State(Arc<Mutex<JoinState<T>>>),
    /// The task's cell: a [`spawn`] task's on a [`Runtime`], whose join state is in its cell
    /// (the output boxed, its type erased), and [`unbox`] for `T` (a function pointer, so the
    /// handle's auto traits stay as the other variant makes them).
    Cell(Arc<executor::TaskCell>, fn(Box<dyn Any + Send>) -> T),
}

/// A task's output as its cell keeps it, back to its type.
fn unbox<T: 'static>(v: Box<dyn Any + Send>) -> T {
    *v.downcast::<T>()
        .expect("netpoll: a task's output of its type")
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// Whether the task has completed (returned, panicked, or was dropped).
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::State(state) => state.lock().unwrap_or_else(|e| e.into_inner()).done,
            Inner::Cell(cell, _) => cell.join_finished(),
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<T, JoinError>> {
        let state = match &self.inner {
            Inner::State(state) => state,
            Inner::Cell(cell, unbox) => return cell.poll_join(cx).map(|r| r.map(unbox)),
        };
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if s.done {
            // The value is stored before the task's future is dropped, and published after.
            let v = s.value.take();
            return Poll::Ready(v.expect("netpoll: JoinHandle polled after it returned"));
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Why a task gave no value: it panicked, or it was dropped unfinished (cancelled). Converts
/// into an [`io::Error`] (kind `Other`), so `handle.await?` works in a function returning
/// `io::Result`.
pub struct JoinError {
    repr: JoinRepr,
    /// The task's number (1, 2, ... in spawn order on a [`Runtime`]; 0 if unknown).
    task: u64,
}

enum JoinRepr {
    /// The payload (behind a mutex only so that the error is `Sync`) and its message, if the
    /// payload is a string.
    Panic(
        Mutex<Box<dyn std::any::Any + Send + 'static>>,
        Option<String>,
    ),
    Cancelled,
}

impl JoinError {
    fn cancelled() -> JoinError {
        JoinError {
            repr: JoinRepr::Cancelled,
            task: 0,
        }
    }

    fn panic(task: u64, payload: Box<dyn std::any::Any + Send + 'static>) -> JoinError {
        let msg = payload
            .downcast_ref::<&'static str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        JoinError {
            repr: JoinRepr::Panic(Mutex::new(payload), msg),
            task,
        }
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, JoinRepr::Panic(..))
    }

    /// Whether the task was dropped before it finished (its runtime was dropped).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, JoinRepr::Cancelled)
    }

    /// The panic's payload, to resume it with [`std::panic::resume_unwind`].
    ///
    /// # Panics
    /// If the task did not panic (see [`JoinError::is_panic`]).
    pub fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        match self.repr {
            JoinRepr::Panic(p, _) => p.into_inner().unwrap_or_else(|e| e.into_inner()),
            JoinRepr::Cancelled => panic!("netpoll: JoinError::into_panic on a cancelled task"),
        }
    }

    /// The panic message, when the payload is a string (as `panic!` with a message makes it).
    pub fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            JoinRepr::Panic(_, m) => m.as_deref(),
            JoinRepr::Cancelled => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            JoinRepr::Panic(_, m) => f
                .debug_struct("JoinError::Panic")
                .field("task", &self.task)
                .field("message", m)
                .finish(),
            JoinRepr::Cancelled => f
                .debug_struct("JoinError::Cancelled")
                .field("task", &self.task)
                .finish(),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            JoinRepr::Panic(_, Some(m)) => write!(f, "task {} panicked: {m}", self.task),
            JoinRepr::Panic(_, None) => write!(f, "task {} panicked", self.task),
            JoinRepr::Cancelled => write!(f, "task {} was dropped unfinished", self.task),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for io::Error {
    fn from(e: JoinError) -> io::Error {
        io::Error::other(e)
    }
}

/// A spawned task's future as the executors hold it when its join state is separate (a
/// [`spawn_local`] task's, any task's on a [`MultiRuntime`]; a [`Runtime`] holds a [`spawn`]
/// task's as a [`CellFuture`]): the future itself, boxed once (no wrapper between the
/// executor's slot and the task's state), polled with panics caught. Its result goes to the
/// task's [`JoinSink`], which the executor publishes once the future is dropped.
pub(crate) trait TaskFuture {
    /// Polls the future once. When it completes (or panics) its result is stored in `join`,
    /// unpublished, and this returns `Ready`: the executor then drops the future (it may hold
    /// descriptors) and calls [`JoinSink::publish`].
    fn poll_task(self: Pin<&mut Self>, cx: &mut TaskCx<'_>, join: &dyn JoinSink) -> Poll<()>;
}

impl<F: Future> TaskFuture for F
where
    F::Output: 'static,
{
    fn poll_task(self: Pin<&mut Self>, cx: &mut TaskCx<'_>, join: &dyn JoinSink) -> Poll<()> {
        match poll_caught(self, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                store(join, r);
                Poll::Ready(())
            }
        }
    }
}

/// A task's output with its type erased, as a [`Runtime`] keeps a [`spawn`] task's in its
/// cell: the value boxed (a zero-sized one, such as `()`, allocates nothing), or the panic as
/// [`poll_caught`] caught it.
pub(crate) type Output = Result<Box<dyn Any + Send>, JoinError>;

/// A [`spawn`] task's future as a [`Runtime`] holds it in the task's cell: polled with panics
/// caught, its output boxed ([`Output`]) for the cell's join state.
pub(crate) trait CellFuture: Send {
    /// Polls the future once; `Ready` with its output when it completes or panics (the
    /// executor then drops the future and stores the output in the cell).
    fn poll_erased(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Output>;
}

impl<F: Future + Send> CellFuture for F
where
    F::Output: Send + 'static,
{
    fn poll_erased(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Output> {
        poll_caught(self, cx).map(|r| r.map(|v| Box::new(v) as Box<dyn Any + Send>))
    }
}

/// Polls `fut` once, a panic caught as the task's [`JoinError`].
fn poll_caught<F: Future>(
    fut: Pin<&mut F>,
    cx: &mut TaskCx<'_>,
) -> Poll<Result<F::Output, JoinError>> {
    // A panic unwinds out of the task's own state only: the runtime's state is not borrowed
    // across this poll, and the task is never polled again.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Err(payload) => Poll::Ready(Err(JoinError::panic(current_task(), payload))),
    }
}

/// Stores a task's result in its join state, unpublished.
fn store<T: 'static>(join: &dyn JoinSink, r: Result<T, JoinError>) {
    if let Some(s) = join.as_any().downcast_ref::<Mutex<JoinState<T>>>() {
        s.lock().unwrap_or_else(|e| e.into_inner()).value = Some(r);
    }
}

/// A task's join state, with its output type erased (the executors keep it beside the task's
/// future).
pub(crate) trait JoinSink {
    /// The state, for [`TaskFuture::poll_task`] to store the result in.
    fn as_any(&self) -> &dyn std::any::Any;
    /// The task's future is gone: publish the stored result (a cancellation if the task was
    /// dropped unfinished) and wake the [`JoinHandle`].
    fn publish(&self);
}

impl<T: 'static> JoinSink for Mutex<JoinState<T>> {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn publish(&self) {
        let w = {
            let mut s = self.lock().unwrap_or_else(|e| e.into_inner());
            if s.done {
                return;
            }
            if s.value.is_none() {
                s.value = Some(Err(JoinError::cancelled()));
            }
            s.done = true;
            s.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// A new task's join state and its handle.
fn join_state<T>() -> (Arc<Mutex<JoinState<T>>>, JoinHandle<T>) {
    let state = Arc::new(Mutex::new(JoinState {
        value: None,
        done: false,
        waker: None,
    }));
    let inner = Inner::State(state.clone());
    (state, JoinHandle { inner })
}

/// A future that completes at an instant of the Poller's clock. See [`sleep`].
#[derive(Debug)]
pub struct Sleep {
    at: Duration,
    shared: Option<Arc<SleepShared>>,
}

/// Completes `d` after now, on the Poller's clock (virtual time on the simulated kernel).
///
/// # Panics
/// Outside a runtime.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(now() + d)
}

/// Completes at `at` on the Poller's clock.
pub fn sleep_until(at: Duration) -> Sleep {
    Sleep { at, shared: None }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<()> {
        if let Some(s) = &self.shared {
            if s.fired.load(std::sync::atomic::Ordering::Acquire) {
                return Poll::Ready(());
            }
            let mut w = s.waker.lock().unwrap_or_else(|e| e.into_inner());
            // Re-check under the lock: the timer sets `fired` before taking the waker.
            if s.fired.load(std::sync::atomic::Ordering::Acquire) {
                return Poll::Ready(());
            }
            *w = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let at = self.at;
        let ready = with_ctx(|c| {
            if c.driver.now() >= at {
                return None;
            }
            let s = Arc::new(SleepShared::default());
            *s.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            c.driver.add_timer(at, Action::Wake(s.clone()));
            Some(s)
        });
        match ready {
            None => Poll::Ready(()),
            Some(s) => {
                self.shared = Some(s);
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.cancelled
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Runs `fut` for at most `d`: its output, or an error of kind `TimedOut` (and `fut` dropped).
///
/// # Panics
/// Outside a runtime.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> io::Result<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut sl = std::pin::pin!(sleep(d));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if sl.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "netpoll: timeout elapsed",
            )));
        }
        Poll::Pending
    })
    .await
}

/// Yields once to the scheduler.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

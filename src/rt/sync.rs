//! The synchronisation primitives of the lock-free parts ([`pd`](super::pd) and
//! [`wake`](super::wake)): `std`'s in a normal build, loom's under `--cfg loom`, so that the
//! model checker sees every atomic access and every lock of those state machines.
//!
//! It also holds [`Threads`], the seam through which a [`MultiRuntime`](super::MultiRuntime)
//! runs on threads other than `std`'s (simulated ones, whose scheduler sees its synchronisation
//! points as switch points).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;

pub(crate) use std::sync::atomic::Ordering;

/// Locks `m`, ignoring poisoning: every critical section here leaves its data consistent before
/// anything in it can panic (wakers are woken after the guard is dropped).
#[cfg(not(loom))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks `m` (loom's mutex), ignoring poisoning.
#[cfg(loom)]
pub(crate) fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls the runtime makes on the calling thread's [`Threads`] seam: unparks the thread that
/// made it (`std::thread::Thread::unpark`'s contract).
pub type Unparker = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Joins a thread started by [`Threads::spawn`].
pub type Joiner = Box<dyn FnOnce() + Send>;

/// The seam between a [`MultiRuntime`](super::MultiRuntime) and the threads it runs on: how
/// it starts its workers, how an idle worker (or `block_on`'s caller) sleeps and is woken, and
/// where its synchronisation points are.
///
/// [`OsThreads`] (the default) is `std::thread`, and its synchronisation points cost nothing.
/// `netpoll_threads::SimThreads` makes the workers simulated threads on the simulated kernel:
/// every synchronisation point (the run-queue lock, taking the poll role, a task's wake, a
/// write to the poller's eventfd) becomes a switch point at which the run's seed picks who
/// runs next, and parking blocks in its scheduler. So this crate does not depend on the
/// scheduler, and the single-threaded [`Runtime`](super::Runtime) never calls any of it.
///
/// A synchronisation point is a place where another thread's step can change what this thread
/// sees next: the points listed above, plus every [`Poller`](crate::Poller) call (which the
/// simulated kernel's threaded wrapper makes switch points by itself). Between two points the
/// runtime's code runs atomically under a simulated scheduler; the memory model's weak
/// orderings are loom's job (`--cfg loom`, the atomics and locks at the top of this module).
///
/// # Examples
///
/// A seam that counts the runtime's synchronisation points on `std` threads:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use netpoll::rt::{self, Joiner, MultiRuntime, OsThreads, Threads, Unparker};
/// use netpoll_realnet::RealNet;
///
/// #[derive(Default)]
/// struct Counted(AtomicU64);
///
/// impl Threads for Counted {
///     fn spawn(&self, name: String, f: Box<dyn FnOnce() + Send>) -> Joiner {
///         OsThreads.spawn(name, f)
///     }
///     fn unparker(&self) -> Unparker {
///         OsThreads.unparker()
///     }
///     fn park(&self) {
///         OsThreads.park()
///     }
///     fn sync_point(&self, _what: &'static str) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let seam = Arc::new(Counted::default());
/// let rt = MultiRuntime::with_threads(RealNet::new(), 2, seam.clone())?;
/// let v = rt.block_on(async { rt::spawn(async { 6 * 7 }).await.unwrap() })?;
/// assert_eq!(v, 42);
/// assert!(seam.0.load(Ordering::Relaxed) > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Threads: Send + Sync + 'static {
    /// Starts a thread named `name` running `f`; the returned closure waits for it to end.
    fn spawn(&self, name: String, f: Box<dyn FnOnce() + Send>) -> Joiner;
    /// Something that unparks the calling thread, from any thread.
    fn unparker(&self) -> Unparker;
    /// Blocks the calling thread until it is unparked (at once if it was unparked since its
    /// last `park`). May return spuriously: callers re-check their condition.
    fn park(&self);
    /// A synchronisation point named `what` (for schedules and reports): another thread may
    /// run here. Nothing by default.
    fn sync_point(&self, what: &'static str) {
        let _ = what;
    }
}

/// [`Threads`] on `std::thread`: real threads, parked with `std::thread::park`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsThreads;

impl Threads for OsThreads {
    fn spawn(&self, name: String, f: Box<dyn FnOnce() + Send>) -> Joiner {
        let h = std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .expect("spawn a worker thread");
        Box::new(move || {
            // A worker catches its tasks' panics; a panic here is already reported.
            let _ = h.join();
        })
    }
    fn unparker(&self) -> Unparker {
        let t = std::thread::current();
        std::sync::Arc::new(move || t.unpark())
    }
    fn park(&self) {
        std::thread::park();
    }
}

//! Blocking primitives for simulated threads: a [`Mutex`] and a [`Condvar`] that block in the
//! scheduler ([`park`](crate::park)) instead of in the OS, so that a thread waiting for a lock
//! another simulated thread holds lets that thread run, and a lock cycle is reported as a
//! deadlock instead of hanging.
//!
//! `lock` and `wait` are switch points; unlocking and notifying are not (like a futex wake, they
//! are one step of the caller's). Waiters are served in FIFO order. There are no spurious
//! wakeups, but code should loop on its condition anyway, as with `std`.
//!
//! These are what a runtime's synchronisation layer maps to when its workers are simulated
//! threads (as `netpoll::rt`'s `sync` module maps to loom's under `--cfg loom`).

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex as StdMutex, MutexGuard as StdGuard, TryLockError};

use crate::sched::lock;
use crate::{current, park_in, Call, Thread};

/// A mutual exclusion lock for simulated threads.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use netpoll_sim::Sim;
/// use netpoll_threads::{spawn, sync::Mutex, Runner};
///
/// let out = Runner::new(1).run(Sim::new(1), |_k| {
///     let n = Arc::new(Mutex::new(0));
///     let ts: Vec<_> = (0..3).map(|i| {
///         let n = n.clone();
///         spawn(format!("w{i}"), move || {
///             let mut g = n.lock();
///             netpoll_threads::yield_now(); // the others block on the lock meanwhile
///             *g += 1;
///         })
///     }).collect();
///     ts.into_iter().for_each(|t| t.join());
///     let total = *n.lock();
///     total
/// }).unwrap();
/// assert_eq!(out.value, 3);
/// ```
#[derive(Default)]
pub struct Mutex<T> {
    data: StdMutex<T>,
    waiters: StdMutex<VecDeque<Thread>>,
}

impl<T: fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.data.try_lock() {
            Ok(g) => f.debug_struct("Mutex").field("data", &*g).finish(),
            Err(_) => f.debug_struct("Mutex").field("data", &"<locked>").finish(),
        }
    }
}

/// Holds a [`Mutex`]; unlocks it (and makes its first waiter runnable) when dropped.
pub struct MutexGuard<'a, T> {
    /// `None` only while [`Condvar::wait`] has given the lock up.
    guard: Option<StdGuard<'a, T>>,
    mutex: &'a Mutex<T>,
}

impl<T: fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Mutex<T> {
    /// A new, unlocked mutex.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            data: StdMutex::new(value),
            waiters: StdMutex::new(VecDeque::new()),
        }
    }

    /// Locks the mutex, blocking the calling simulated thread (in the scheduler) while another
    /// holds it. A switch point.
    ///
    /// # Panics
    /// If called from a thread that is not a simulated thread.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        let call = Call::bare("mutex_lock");
        crate::yield_in(call);
        loop {
            match self.data.try_lock() {
                Ok(g) => {
                    return MutexGuard {
                        guard: Some(g),
                        mutex: self,
                    }
                }
                // A panic while locked fails the run; the data is only read by its report.
                Err(TryLockError::Poisoned(e)) => {
                    return MutexGuard {
                        guard: Some(e.into_inner()),
                        mutex: self,
                    }
                }
                Err(TryLockError::WouldBlock) => {
                    lock(&self.waiters).push_back(current());
                    park_in(call);
                }
            }
        }
    }

    /// Consumes the mutex, returning its value.
    pub fn into_inner(self) -> T {
        self.data.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_one(&self) {
        if let Some(t) = lock(&self.waiters).pop_front() {
            t.unpark();
        }
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard
            .as_ref()
            .expect("MutexGuard: used while given up")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard
            .as_mut()
            .expect("MutexGuard: used while given up")
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.guard.take().is_some() {
            self.mutex.wake_one();
        }
    }
}

/// A condition variable for simulated threads, used with [`Mutex`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use netpoll_sim::Sim;
/// use netpoll_threads::{spawn, sync::{Condvar, Mutex}, Runner};
///
/// Runner::new(4).run(Sim::new(4), |_k| {
///     let pair = Arc::new((Mutex::new(false), Condvar::new()));
///     let t = spawn("setter", {
///         let pair = pair.clone();
///         move || { *pair.0.lock() = true; pair.1.notify_one(); }
///     });
///     let mut ready = pair.0.lock();
///     while !*ready {
///         ready = pair.1.wait(ready);
///     }
///     drop(ready);
///     t.join();
/// }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct Condvar {
    waiters: StdMutex<VecDeque<Thread>>,
}

impl Condvar {
    /// A new condition variable.
    pub const fn new() -> Condvar {
        Condvar {
            waiters: StdMutex::new(VecDeque::new()),
        }
    }

    /// Gives up `guard`'s lock, blocks until notified, and locks again. A switch point.
    ///
    /// # Panics
    /// If called from a thread that is not a simulated thread.
    pub fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let mutex = guard.mutex;
        lock(&self.waiters).push_back(current());
        // Registered before unlocking, and nothing runs in between: no notify can be missed.
        drop(guard.guard.take());
        mutex.wake_one();
        drop(guard);
        park_in(Call::bare("condvar_wait"));
        mutex.lock()
    }

    /// Makes the longest-waiting thread runnable, if any.
    pub fn notify_one(&self) {
        if let Some(t) = lock(&self.waiters).pop_front() {
            t.unpark();
        }
    }

    /// Makes every waiting thread runnable.
    pub fn notify_all(&self) {
        for t in lock(&self.waiters).drain(..) {
            t.unpark();
        }
    }
}

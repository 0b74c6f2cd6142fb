//! Futex-style waits and wakes between simulated threads, and virtual sleeps: the blocking
//! primitives under `std::sync` (its `Mutex`, `Condvar`, `thread::park` and channels are built
//! on Linux's `futex(2)`), which the interposer maps onto the scheduler.
//!
//! Each wait and each wake is a switch point. A waiter blocks in the scheduler until a wake on
//! its word chooses it (oldest waiter first, as Linux wakes waiters of one priority) or until
//! virtual time reaches its deadline; time moves only when no simulated thread can run, so a
//! timed wait with nobody to wake it returns `TimedOut` at once in wall-clock terms, with the
//! kernel's clock at its deadline.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sched::{current_or_panic, lock, Call, Wait};

/// How a [`futex_wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// A [`futex_wake`] chose this waiter (Linux: 0).
    Woken,
    /// The word did not hold the expected value (Linux: `EAGAIN`).
    Mismatch,
    /// Virtual time reached the deadline first (Linux: `ETIMEDOUT`).
    TimedOut,
}

/// `FUTEX_WAIT_BITSET`: if `word` holds `expected`, blocks the calling simulated thread until a
/// [`futex_wake`] on `word` whose bitset shares a bit with `bitset` chooses it, or until the
/// kernel's virtual clock reaches `deadline_ns` (nanoseconds since the kernel was made;
/// `None` waits for ever). The comparison and the queueing are atomic with respect to the
/// other simulated threads: only one runs at a time. A switch point.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use netpoll_sim::Sim;
/// use netpoll_threads::{futex_wait, futex_wake, spawn, FutexWait, Runner};
///
/// let out = Runner::new(4).run(Sim::new(4), |_k| {
///     let word = Arc::new(AtomicU32::new(0));
///     let t = spawn("waker", {
///         let word = word.clone();
///         move || {
///             word.store(1, Ordering::SeqCst);
///             futex_wake(&word, 1, u32::MAX)
///         }
///     });
///     while word.load(Ordering::SeqCst) == 0 {
///         futex_wait(&word, 0, u32::MAX, None);
///     }
///     t.join();
///     // Nobody wakes this one: virtual time jumps to its deadline.
///     futex_wait(&word, 1, u32::MAX, Some(5_000_000_000))
/// }).unwrap();
/// assert_eq!(out.value, FutexWait::TimedOut);
/// assert_eq!(out.report.now_ns(), 5_000_000_000);
/// ```
pub fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    bitset: u32,
    deadline_ns: Option<u64>,
) -> FutexWait {
    let (s, me) = current_or_panic("futex_wait");
    let call = Call {
        op: "futex_wait",
        fd: None,
        arg: deadline_ns.map(|d| d as i64),
    };
    s.switch(me, call);
    if word.load(Ordering::SeqCst) != expected {
        return FutexWait::Mismatch;
    }
    if deadline_ns.is_some_and(|d| d <= lock(&s.sim).now_ns()) {
        return FutexWait::TimedOut;
    }
    let key = std::ptr::from_ref(word) as usize;
    lock(&s.state)
        .futex
        .entry(key)
        .or_default()
        .push_back((me, bitset));
    s.block(me, call, Wait::Futex { deadline_ns });
    // Still queued: nobody chose this waiter, so its deadline came.
    let mut st = lock(&s.state);
    let Some(q) = st.futex.get_mut(&key) else {
        return FutexWait::Woken;
    };
    let Some(i) = q.iter().position(|&(t, _)| t == me) else {
        return FutexWait::Woken;
    };
    q.remove(i);
    if q.is_empty() {
        st.futex.remove(&key);
    }
    FutexWait::TimedOut
}

/// `FUTEX_WAKE_BITSET`: makes runnable up to `n` simulated threads waiting on `word` whose
/// bitset shares a bit with `bitset`, oldest first, and returns how many. A switch point
/// (before the wake, so that the seed can run another thread between a store and its wake).
///
/// # Panics
/// If called from a thread that is not a simulated thread.
pub fn futex_wake(word: &AtomicU32, n: u32, bitset: u32) -> u32 {
    let (s, me) = current_or_panic("futex_wake");
    s.switch(
        me,
        Call {
            op: "futex_wake",
            fd: None,
            arg: Some(i64::from(n)),
        },
    );
    let key = std::ptr::from_ref(word) as usize;
    let mut st = lock(&s.state);
    let Some(q) = st.futex.get_mut(&key) else {
        return 0;
    };
    let mut woken = Vec::new();
    q.retain(|&(t, b)| {
        if woken.len() < n as usize && b & bitset != 0 {
            woken.push(t);
            false
        } else {
            true
        }
    });
    if q.is_empty() {
        st.futex.remove(&key);
    }
    for &t in &woken {
        let th = &mut st.threads[t.0 as usize];
        if matches!(
            th.status,
            crate::sched::Status::Blocked(Wait::Futex { .. }, _)
        ) {
            th.status = crate::sched::Status::Runnable;
        }
    }
    if !woken.is_empty() {
        st.idle = 0;
    }
    woken.len() as u32
}

/// Lets `d` of virtual time pass for the calling simulated thread: it blocks in the scheduler,
/// the others run, and the clock moves to its deadline when no thread can run. A switch point.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use netpoll_sim::Sim;
/// use netpoll_threads::Runner;
///
/// let out = Runner::new(1).run(Sim::new(1), |_k| {
///     netpoll_threads::sleep(Duration::from_secs(3));
/// }).unwrap();
/// assert_eq!(out.report.now_ns(), 3_000_000_000);
/// ```
pub fn sleep(d: Duration) {
    let (s, me) = current_or_panic("sleep");
    let until = lock(&s.sim)
        .now_ns()
        .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let call = Call {
        op: "sleep",
        fd: None,
        arg: Some(until as i64),
    };
    s.switch(me, call);
    while lock(&s.sim).now_ns() < until {
        s.block(
            me,
            call,
            Wait::Futex {
                deadline_ns: Some(until),
            },
        );
    }
}

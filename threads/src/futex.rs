//! Futex-style waits and wakes between simulated threads, and virtual sleeps: the blocking
//! primitives under `std::sync` (its `Mutex`, `Condvar`, `thread::park` and channels are built
//! on Linux's `futex(2)`), which the interposer maps onto the scheduler.
//!
//! Each wait and each wake is a switch point. A waiter blocks in the scheduler until a wake on
//! its word chooses it (oldest waiter first, as Linux wakes waiters of one priority) or until
//! virtual time reaches its deadline; time moves only when no simulated thread can run, so a
//! timed wait with nobody to wake it returns `TimedOut` at once in wall-clock terms, with the
//! kernel's clock at its deadline.

//!
//! # Words shared with code outside the run
//!
//! A futex word may be shared with code that is not on the run: another run alive in the same
//! process (runs that are not [exclusive](crate::Runner::exclusive) overlap each other; an
//! exclusive one, as every run that hosts unmodified code, is alone), or a plain OS thread
//! (std's process-wide locks, such as the lock every std thread takes when it starts and
//! exits). Linux allows spurious wakeups and every user of a futex
//! re-checks its word, so:
//!
//! - every live run is in a process-wide registry ([`RUNS`]); a wake that finds fewer waiters
//!   than it may wake on its own run goes on to the waiters of the other runs
//!   ([`wake_outside`]), and [`host::futex_wake_outside`](crate::host::futex_wake_outside)
//!   does the same for a wake from a thread on no run. Such a wake only marks the waiter: the
//!   run makes it runnable when none of its threads can run (at what would otherwise be a
//!   deadlock), so it neither adds a draw from the run's random stream nor moves any switch
//!   point of a run that shares no word;
//! - at that point a waiter whose word can be re-read (a wait through
//!   [`host::futex_wait_shared`](crate::host::futex_wait_shared)) and no longer holds the
//!   expected value is woken too (a spurious wakeup, as Linux allows);
//! - and if waiters on words the host can re-read remain, the run does not report a deadlock
//!   at once: its supervisor waits in wall-clock time for a wake from outside (see
//!   `Shared::resume_stalled`), for at most [`Runner::watchdog`] if a word is process-wide
//!   (another run or any OS thread may hold it), else for [`OUTSIDE_GRACE`] (a heap word a
//!   plain OS thread may share with the run), and then reports a deadlock that says so.
//!
//! [`Runner::watchdog`]: crate::Runner::watchdog

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::sched::{current_or_panic, lock, Call, Shared, State, Status, Wait};

/// One waiter in a futex queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiter {
    pub(crate) tid: crate::Tid,
    pub(crate) bitset: u32,
    /// Woken by a wake from outside the run; made runnable when no thread of the run can run.
    pub(crate) outside: bool,
    /// How to re-read the word, and what the waiter expects there, if the host said.
    pub(crate) share: Option<(Share, u32)>,
}

/// How the scheduler may re-read a futex word a simulated thread waits on, for
/// [`host::futex_wait_shared`](crate::host::futex_wait_shared).
///
/// # Examples
///
/// ```
/// use netpoll_threads::host::Share;
///
/// // A host that can read any waiter's word by its address (the interposer reads it as an
/// // `AtomicU32`; this one reads nothing and says the word is the run's own).
/// fn read(_addr: usize) -> u32 {
///     0
/// }
/// let share = Share { read, process_wide: false };
/// assert!(!share.process_wide);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Share {
    /// Reads the word at an address, while its waiter is blocked (as the kernel does).
    pub read: fn(usize) -> u32,
    /// Whether any code outside the run (another run, a plain OS thread) may change the word, as
    /// for a `static` in the process's own memory. A run whose waiters wait on such words waits
    /// up to [`Runner::watchdog`](crate::Runner::watchdog) for a wake from outside before it
    /// reports a deadlock (100 ms for other words the host can re-read).
    pub process_wide: bool,
}

/// Every live run of the process, in start order.
static RUNS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
/// How many runs are in [`RUNS`] (read without the lock by wakes from outside every run).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Adds a run to the process-wide registry.
pub(crate) fn register(s: &Arc<Shared>) {
    let mut runs = lock(&RUNS);
    runs.push(Arc::downgrade(s));
    LIVE.store(runs.len(), Ordering::SeqCst);
}

/// Takes a run that is over out of the process-wide registry.
pub(crate) fn unregister(s: &Arc<Shared>) {
    let mut runs = lock(&RUNS);
    runs.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(s)));
    LIVE.store(runs.len(), Ordering::SeqCst);
}

/// Whether any run is alive in the process.
pub(crate) fn any_live() -> bool {
    LIVE.load(Ordering::SeqCst) > 0
}

/// Keeps `s.futex_keys` in step with the queue of `key` in `st`.
fn sync_key(s: &Shared, st: &State, key: usize) {
    let mut keys = lock(&s.futex_keys);
    if st.futex.contains_key(&key) {
        keys.insert(key);
    } else {
        keys.remove(&key);
    }
}

/// Takes up to `n` waiters on `key` whose bitset meets `bitset` off `st`'s queue (oldest
/// first, skipping those a wake from outside already chose), and returns them.
fn take_waiters(st: &mut State, key: usize, n: u32, bitset: u32) -> Vec<crate::Tid> {
    let Some(q) = st.futex.get_mut(&key) else {
        return Vec::new();
    };
    let mut woken = Vec::new();
    q.retain(|w| {
        if woken.len() < n as usize && !w.outside && w.bitset & bitset != 0 {
            woken.push(w.tid);
            false
        } else {
            true
        }
    });
    if q.is_empty() {
        st.futex.remove(&key);
    }
    woken
}

/// A wake of up to `n` waiters on the word at `key` from outside the runs other than
/// `except`: marks them (oldest first, run by run in start order) and returns how many. Takes
/// no lock of `except`'s.
pub(crate) fn wake_outside(except: Option<&Arc<Shared>>, key: usize, n: u32, bitset: u32) -> u32 {
    if n == 0 || !any_live() {
        return 0;
    }
    let runs: Vec<Arc<Shared>> = lock(&RUNS).iter().filter_map(Weak::upgrade).collect();
    let mut marked = 0;
    for run in runs {
        if marked >= n || except.is_some_and(|e| Arc::ptr_eq(e, &run)) {
            continue;
        }
        if !lock(&run.futex_keys).contains(&key) {
            continue;
        }
        let mut st = lock(&run.state);
        let Some(q) = st.futex.get_mut(&key) else {
            continue;
        };
        let before = marked;
        for w in q.iter_mut() {
            if marked < n && !w.outside && w.bitset & bitset != 0 {
                w.outside = true;
                marked += 1;
            }
        }
        if marked > before && st.stalled.is_some() {
            // The supervisor of a stalled run resumes it.
            run.done.notify_all();
        }
    }
    marked
}

/// Makes runnable every futex waiter that a wake from outside chose, or whose word no longer
/// holds the value it waits for (a spurious wakeup). `true` if any.
pub(crate) fn wake_rechecked(s: &Shared, st: &mut State) -> bool {
    let mut woken = Vec::new();
    let mut emptied = Vec::new();
    st.futex.retain(|&key, q| {
        q.retain(|w| {
            let changed = w
                .share
                .is_some_and(|(sh, expected)| (sh.read)(key) != expected);
            if w.outside || changed {
                woken.push(w.tid);
                false
            } else {
                true
            }
        });
        if q.is_empty() {
            emptied.push(key);
        }
        !q.is_empty()
    });
    for key in emptied {
        sync_key(s, st, key);
    }
    for &t in &woken {
        let th = &mut st.threads[t.0 as usize];
        if matches!(th.status, Status::Blocked(Wait::Futex { .. }, _)) {
            th.status = Status::Runnable;
        }
    }
    !woken.is_empty()
}

/// How long a run whose waiters wait only on words that are not process-wide (heap memory,
/// which a plain OS thread may still share with the run: a harness's lock) waits for a wake
/// from outside before it reports a deadlock.
pub(crate) const OUTSIDE_GRACE: Duration = Duration::from_millis(100);

/// The words the run's futex waiters still wait on that code outside the run may change (those
/// the host can re-read), and whether any is process-wide.
pub(crate) fn outside_words(st: &State) -> (Vec<usize>, bool) {
    let mut wide = false;
    let words = st
        .futex
        .iter()
        .filter(|(_, q)| {
            q.iter().any(|w| {
                w.share.is_some_and(|(s, _)| {
                    wide |= s.process_wide;
                    true
                })
            })
        })
        .map(|(&k, _)| k)
        .collect();
    (words, wide)
}

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
    wait(word, expected, bitset, deadline_ns, None)
}

/// [`futex_wait`], with how to re-read the word if the host knows ([`Share`]).
pub(crate) fn wait(
    word: &AtomicU32,
    expected: u32,
    bitset: u32,
    deadline_ns: Option<u64>,
    share: Option<Share>,
) -> FutexWait {
    let (s, me) = current_or_panic("futex_wait");
    let call = Call {
        op: "futex_wait",
        fd: None,
        arg: deadline_ns.map(|d| d as i64),
    };
    s.switch(me, call);
    if deadline_ns.is_some_and(|d| d <= lock(&s.sim).now_ns()) {
        return if word.load(Ordering::SeqCst) != expected {
            FutexWait::Mismatch
        } else {
            FutexWait::TimedOut
        };
    }
    let key = std::ptr::from_ref(word) as usize;
    {
        // The comparison and the queueing under the run's lock, which a wake from outside the
        // run also takes: such a wake either finds this waiter or changed the word before.
        let mut st = lock(&s.state);
        if word.load(Ordering::SeqCst) != expected {
            return FutexWait::Mismatch;
        }
        st.futex.entry(key).or_default().push_back(Waiter {
            tid: me,
            bitset,
            outside: false,
            share: share.map(|sh| (sh, expected)),
        });
        sync_key(&s, &st, key);
    }
    s.block(me, call, Wait::Futex { deadline_ns });
    // Still queued: nobody chose this waiter, so its deadline came.
    let mut st = lock(&s.state);
    let Some(q) = st.futex.get_mut(&key) else {
        return FutexWait::Woken;
    };
    let Some(i) = q.iter().position(|w| w.tid == me) else {
        return FutexWait::Woken;
    };
    // A wake from outside that chose it as its deadline came counts: woken.
    let outside = q[i].outside;
    q.remove(i);
    if q.is_empty() {
        st.futex.remove(&key);
        sync_key(&s, &st, key);
    }
    if outside {
        FutexWait::Woken
    } else {
        FutexWait::TimedOut
    }
}

/// `FUTEX_WAKE_BITSET`: makes runnable up to `n` simulated threads waiting on `word` whose
/// bitset shares a bit with `bitset`, oldest first, and returns how many. If the run has fewer
/// such waiters than `n`, the rest of the wake goes to other runs' waiters on the same word
/// (see the module's docs), which count too. A switch point
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
    let woken = take_waiters(&mut st, key, n, bitset);
    if !woken.is_empty() {
        sync_key(&s, &st, key);
    }
    for &t in &woken {
        let th = &mut st.threads[t.0 as usize];
        if matches!(th.status, Status::Blocked(Wait::Futex { .. }, _)) {
            th.status = Status::Runnable;
        }
    }
    if !woken.is_empty() {
        st.idle = 0;
    }
    drop(st);
    let here = woken.len() as u32;
    // Fewer waiters here than it may wake: the word may be shared with another run.
    here + wake_outside(Some(&s), key, n - here, bitset)
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

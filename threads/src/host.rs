//! Hooks for a layer that runs unmodified code on simulated threads: `netpoll-interpose`, whose
//! `pthread_create` makes the OS thread itself and whose calls come through `extern "C"`
//! functions that must never unwind.
//!
//! The protocol, for a thread created by someone else's thread-creation call:
//!
//! 1. On the creating simulated thread, [`reserve`] registers the new thread (runnable, not
//!    running). Ids are given in reservation order, so the schedule does not depend on the OS.
//! 2. The host creates the OS thread. If that fails, [`Reserved::abandon`]; otherwise
//!    [`Reserved::started`], the creator's switch point.
//! 3. The new OS thread calls [`Reserved::attach`] before anything else: it waits for its
//!    first turn.
//! 4. When its work is done (for a pthread, in the last thread-local destructor), it calls
//!    [`detach`]: it has finished, and leaves the scheduler.
//!
//! A hosted thread ([`hosted`], and every attached thread) never unwinds when the run fails
//! elsewhere: it waits for ever instead, and [`Runner::run`](crate::Runner::run) returns the
//! failure without joining it (the thread is left behind, as a spinning one is).
//!
//! ```
//! use netpoll::{sys::*, Poller};
//! use netpoll_sim::Sim;
//! use netpoll_threads::{host, Runner};
//!
//! let out = Runner::new(3).run(Sim::new(3), |k| {
//!     let [r, w] = k.pipe2(O_NONBLOCK).unwrap();
//!     // A thread the host makes itself (here with std; the interposer uses pthread_create).
//!     let reserved = host::reserve("writer");
//!     let tid = reserved.tid();
//!     let os = std::thread::spawn({
//!         let (reserved, k) = (reserved.clone(), k.clone());
//!         move || {
//!             reserved.attach();
//!             k.write(w, b"hi").unwrap();
//!             host::detach();
//!         }
//!     });
//!     reserved.started();
//!     host::join(tid);
//!     os.join().unwrap();
//!     let mut buf = [0u8; 2];
//!     k.read(r, &mut buf).unwrap();
//!     buf
//! }).unwrap();
//! assert_eq!(&out.value, b"hi");
//! assert_eq!(out.report.thread_names(), ["main", "writer"]);
//! ```

use std::cell::Cell;
use std::sync::Arc;

use crate::sched::{
    current, current_or_panic, lock, Call, Shared, Status, Th, Wait, CURRENT, HOSTED,
};
use crate::{ThreadedSim, Tid};

/// The calling simulated thread's kernel, if it is a simulated thread.
pub fn current_kernel() -> Option<ThreadedSim> {
    current().map(|(shared, _)| ThreadedSim { shared })
}

/// The calling simulated thread's id, if it is one.
pub fn current_tid() -> Option<Tid> {
    current().map(|(_, t)| t)
}

/// Marks the calling simulated thread as hosted: after a failure elsewhere it waits for ever
/// instead of unwinding.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
pub fn hosted() {
    let (s, me) = current_or_panic("host::hosted");
    lock(&s.state).threads[me.0 as usize].hosted = true;
    HOSTED.with(|h| h.set(true));
}

/// A simulated thread registered by [`reserve`], whose OS thread is not attached yet.
#[derive(Debug, Clone)]
pub struct Reserved {
    shared: Arc<Shared>,
    tid: Tid,
}

/// Registers a new hosted simulated thread named `name`, runnable from the next switch point.
/// Not a switch point itself.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
pub fn reserve(name: impl Into<String>) -> Reserved {
    let (shared, _) = current_or_panic("host::reserve");
    let tid = {
        let mut st = lock(&shared.state);
        let tid = Tid(st.threads.len() as u32);
        st.threads.push(Th::new(name.into(), true));
        let crate::sched::State { chooser, rng, .. } = &mut *st;
        chooser.on_spawn(tid, rng);
        tid
    };
    Reserved { shared, tid }
}

impl Reserved {
    /// The new thread's id.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// The OS thread could not be created: the thread counts as finished without running.
    pub fn abandon(self) {
        let mut st = lock(&self.shared.state);
        let th = &mut st.threads[self.tid.0 as usize];
        if th.status != Status::Finished {
            th.status = Status::Finished;
            st.finished += 1;
        }
    }

    /// On the creating thread, once the OS thread exists: the creator's switch point (the new
    /// thread may run first).
    pub fn started(&self) {
        let (s, me) = current_or_panic("host::started");
        s.switch(
            me,
            Call {
                op: "spawn",
                fd: None,
                arg: Some(i64::from(self.tid.0)),
            },
        );
    }

    /// On the new OS thread, first: makes it the simulated thread and waits for its first turn.
    /// Never returns if the run fails before then.
    pub fn attach(&self) {
        CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(&self.shared), self.tid)));
        HOSTED.with(|h| h.set(true));
        drop(self.shared.wait_turn(lock(&self.shared.state), self.tid));
    }
}

/// The calling hosted thread has finished: the scheduler hands the token on, and the OS thread
/// leaves the scheduler (whatever it does afterwards is not simulated). Nothing happens on a
/// thread that is not a simulated thread.
pub fn detach() {
    let Some((s, me)) = current() else {
        return;
    };
    s.finish(me, None);
    CURRENT.with(|c| *c.borrow_mut() = None);
    HOSTED.with(|h| h.set(false));
}

/// Blocks the calling simulated thread until thread `t` has finished (a switch point, as
/// [`JoinHandle::join`](crate::JoinHandle::join)).
///
/// # Panics
/// If called from a thread that is not a simulated thread.
pub fn join(t: Tid) {
    let (s, me) = current_or_panic("host::join");
    let call = Call {
        op: "join",
        fd: None,
        arg: Some(i64::from(t.0)),
    };
    s.switch(me, call);
    s.block(me, call, Wait::Join(t));
}

/// Renames the calling simulated thread (in the schedule and in reports): a hosted thread is
/// reserved before its program names it. Nothing happens on a thread that is not simulated.
pub fn set_name(name: impl Into<String>) {
    if let Some((s, me)) = current() {
        lock(&s.state).threads[me.0 as usize].name = name.into();
    }
}

/// Whether the calling OS thread is a hosted simulated thread.
pub fn is_hosted() -> bool {
    HOSTED.with(Cell::get)
}

pub use crate::futex::Share;

/// [`futex_wait`](crate::futex_wait) on a word the scheduler may re-read through `share`: a host
/// (the interposer) whose program's words may be shared with code outside the run. When no
/// thread of the run can run, a waiter whose word no longer holds `expected` is woken (a
/// spurious wakeup, which every futex user tolerates); and if the word is process-wide, the run
/// waits (in wall-clock time, for at most [`Runner::watchdog`](crate::Runner::watchdog)) for a
/// wake from outside instead of reporting a deadlock. A switch point.
///
/// # Panics
/// If called from a thread that is not a simulated thread.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use netpoll_sim::Sim;
/// use netpoll_threads::{host, FutexWait, Runner};
///
/// fn read(_addr: usize) -> u32 {
///     1
/// }
/// let share = host::Share { read, process_wide: false };
/// let out = Runner::new(2).run(Sim::new(2), move |_k| {
///     let word = AtomicU32::new(1);
///     word.store(2, Ordering::SeqCst);
///     // The word no longer holds 1.
///     host::futex_wait_shared(&word, 1, u32::MAX, None, share)
/// }).unwrap();
/// assert_eq!(out.value, FutexWait::Mismatch);
/// ```
pub fn futex_wait_shared(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    bitset: u32,
    deadline_ns: Option<u64>,
    share: Share,
) -> crate::FutexWait {
    crate::futex::wait(word, expected, bitset, deadline_ns, Some(share))
}

/// A futex wake of up to `n` waiters (whose bitset meets `bitset`) on the word at `addr` from a
/// thread on no run (a plain OS thread): it reaches the simulated waiters of every live run,
/// which go on when their run has no other thread to run. Returns how many it chose; the host
/// wakes real waiters itself. Not a switch point; cheap when no run is alive.
///
/// ```
/// // No run is alive: nobody to wake.
/// assert_eq!(netpoll_threads::host::futex_wake_outside(0x1000, 1, u32::MAX), 0);
/// ```
pub fn futex_wake_outside(addr: usize, n: u32, bitset: u32) -> u32 {
    crate::futex::wake_outside(None, addr, n, bitset)
}

/// Panics, naming `what`, if the calling thread is a simulated thread: a host that starts runs
/// (`netpoll_interpose::run_threads`) calls it before it sets anything up, since a run started
/// on a live run's thread could not be admitted before that run ends
/// ([`Runner::run`](crate::Runner::run), "One run at a time"). Nothing happens elsewhere.
///
/// ```
/// // Not a simulated thread: nothing happens.
/// netpoll_threads::host::refuse_nested("my_host::run");
/// ```
pub fn refuse_nested(what: &str) {
    crate::gate::refuse_nested(what);
}

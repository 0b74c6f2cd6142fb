//! Waking a blocked poll loop from another thread: an eventfd, and two flags that make the
//! wake cheap and coalesced (Go's `netpollBreak` / `netpollWakeSig`).
//!
//! The poll loop's eventfd is registered in its epoll set. A thread that queued work for the
//! loop (a task woken from outside, a new timer earlier than the one the loop sleeps until)
//! calls [`WakeSignal::notify`]; when it returns `true` the caller writes 1 to the eventfd.
//!
//! # The two flags
//!
//! - `polling`: set by the loop from just before it re-checks its queues until it returns from
//!   `epoll_wait`. Outside that window the loop will look at its queues anyway, so nobody needs
//!   to write the eventfd (a task woken by the loop itself, during dispatch, costs no syscall).
//! - `pending`: an eventfd write is in flight and the loop has not read it back yet. Only the
//!   thread that moves it `false → true` writes; every other notifier in between is coalesced
//!   into that one write. The loop clears it after reading the eventfd.
//!
//! # Why no wake is lost
//!
//! A notifier publishes its work, then (SeqCst fence) reads `polling`; the loop sets `polling`,
//! then (SeqCst fence) re-checks its queues. By the fences one of the two sees the other: either
//! the loop finds the work and does not block, or the notifier sees `polling` and writes (or
//! finds `pending`, meaning a write is already on its way and its edge is still queued in epoll,
//! so the next `epoll_wait` returns at once). The loop clears `pending` only after reading the
//! eventfd and before it re-checks its queues, so work published while `pending` was set is seen
//! by that re-check. `tests/loom_pd.rs` model-checks this with two notifiers and one loop.

use super::sync::{fence, AtomicBool, Ordering};

/// The coalescing flags of one poll loop's eventfd. See the [module docs](self).
#[derive(Debug)]
pub struct WakeSignal {
    polling: AtomicBool,
    pending: AtomicBool,
}

impl Default for WakeSignal {
    fn default() -> WakeSignal {
        WakeSignal::new()
    }
}

impl WakeSignal {
    /// Not polling, nothing pending.
    pub fn new() -> WakeSignal {
        WakeSignal {
            polling: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        }
    }

    /// The loop is about to block: after this, re-check the queues, then wait.
    ///
    /// A relaxed store, then the fence: the fence is what pairs with the notifier's (a store
    /// sequenced before a SeqCst fence is seen by a load sequenced after a later one), and on
    /// x86 a SeqCst store is a second locked instruction, on every turn.
    pub fn begin_poll(&self) {
        self.polling.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// The loop returned from `epoll_wait`. No fence: a notifier that still sees `true` writes
    /// the eventfd for nothing (its edge is read at a later turn), and the loop's next
    /// [`begin_poll`](Self::begin_poll) fences before it re-checks its queues.
    pub fn end_poll(&self) {
        self.polling.store(false, Ordering::Release);
    }

    /// Work for the loop was published: whether the caller must write the eventfd.
    pub fn notify(&self) -> bool {
        fence(Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            return false;
        }
        !self.pending.swap(true, Ordering::AcqRel)
    }

    /// Whether the loop is between [`begin_poll`](Self::begin_poll) and
    /// [`end_poll`](Self::end_poll): it has dispatched its last turn and is about to block, or
    /// blocks, in `epoll_wait`.
    pub fn is_polling(&self) -> bool {
        self.polling.load(Ordering::SeqCst)
    }

    /// The loop read the eventfd: later notifiers must write again.
    pub fn drained(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}

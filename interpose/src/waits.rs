//! The lost-wakeup oracle for unmodified async programs (issue 11, part 5): what the program
//! waits for on each descriptor, as its own calls say.
//!
//! The kernel's lost-wakeup scan asks, at quiescence (the program asleep in `epoll_wait`,
//! nothing in flight), which registrations are ready with no event queued, and what the program
//! wants on each ([`netpoll_sim::Sim::set_wants`]). Judged by the registration's interest alone
//! that is wrong for tokio and mio's users: they register every socket edge-triggered for
//! `IN | OUT | RDHUP` once and cache the readiness epoll reports, so a socket that is readable
//! while no task reads it (a connection nobody polls yet) is normal.
//!
//! What a runtime that caches readiness does promise is this: a task that got `EAGAIN` waits for
//! the next edge. tokio's `poll_read` clears the cached readiness on `EAGAIN` (and after a read
//! that filled part of the buffer) and registers the task's waker; when epoll reports the edge,
//! the task is woken and reads again. So the program
//! *wants* a side of a descriptor from the call on it that said "not now" until its next call of
//! that kind:
//!
//! | call on the descriptor | then it wants |
//! |---|---|
//! | a read (`read`, `recv*`, `readv`) that fails with `EAGAIN`, or fills part of the buffer (tokio clears read readiness after a short read: on Linux it means the socket is drained) | `IN` |
//! | an `accept` that fails with `EAGAIN` | `IN` |
//! | a write (`write`, `send*`, `writev`) that fails with `EAGAIN`, or takes part of the buffer (tokio clears write readiness after a short write) | `OUT` |
//! | `connect` that fails with `EINPROGRESS` | `OUT`, until `getsockopt(SO_ERROR)` or a write |
//! | any other result of those calls, and `close` | nothing more on that side |
//!
//! The kernel then reports a lost wakeup when, at quiescence, a descriptor is ready for a side
//! the program wants, no event is queued for it, and the program has not tried again since the
//! edge was reported: the edge reached the runtime but woke no task that reads. That is the bug
//! of a future that returns `Pending` without arranging to be woken (`try_read` then `Pending`,
//! a waker registered for the wrong side or dropped), and of a runtime that drops a wakeup.
//!
//! A program that polls with `try_read` and sleeps on a timer instead of awaiting readiness, or
//! that drops a pending read future and leaves the socket unread while it waits for something
//! else, breaks the assumption and is reported too: switch the oracle off for it with
//! `Oracles { lost_wakeup: false, .. }` (`Check::oracles`), or call
//! [`quiet_lost_wakeup_scan`](crate::quiet_lost_wakeup_scan) inside the run.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use netpoll::sys::Events;
use netpoll::Fd;
use netpoll_sim::Sim;

/// The sides each descriptor of one run is waited on, shared with the kernel's scan.
#[derive(Clone, Default)]
pub(crate) struct Waits(Arc<Mutex<BTreeMap<Fd, Events>>>);

fn eagain<T>(r: &io::Result<T>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN))
}

impl Waits {
    /// Makes `sim`'s lost-wakeup scan judge by this table.
    pub(crate) fn install(&self, sim: &Sim) {
        let t = Arc::clone(&self.0);
        sim.set_wants(move |s| match t.lock() {
            Ok(m) => m.get(&s.fd).copied().unwrap_or(Events::NONE),
            // A panic while the table was held: judge nothing rather than wrongly.
            Err(_) => Events::NONE,
        });
    }

    fn set(&self, fd: Fd, side: Events, on: bool) {
        let Ok(mut m) = self.0.lock() else {
            return;
        };
        let w = m.entry(fd).or_insert(Events::NONE);
        *w = if on { *w | side } else { w.without(side) };
        if w.is_empty() {
            m.remove(&fd);
        }
    }

    /// After a read of `asked` bytes on `fd`.
    pub(crate) fn after_read(&self, fd: Fd, asked: usize, r: &io::Result<usize>) {
        let short = matches!(r, Ok(n) if *n > 0 && *n < asked);
        self.set(fd, Events::IN, eagain(r) || short);
    }

    /// After an `accept` on `fd`.
    pub(crate) fn after_accept<T>(&self, fd: Fd, r: &io::Result<T>) {
        self.set(fd, Events::IN, eagain(r));
    }

    /// After a write of `asked` bytes on `fd`.
    pub(crate) fn after_write(&self, fd: Fd, asked: usize, r: &io::Result<usize>) {
        let short = matches!(r, Ok(n) if *n < asked);
        self.set(fd, Events::OUT, eagain(r) || short);
    }

    /// After `connect` on `fd`.
    pub(crate) fn after_connect(&self, fd: Fd, r: &io::Result<()>) {
        let pending = matches!(r, Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS));
        self.set(fd, Events::OUT, pending);
    }

    /// After `getsockopt(SO_ERROR)` on `fd`: a pending `connect` has been looked at.
    pub(crate) fn after_take_error(&self, fd: Fd) {
        self.set(fd, Events::OUT, false);
    }

    /// After `fd` was closed.
    pub(crate) fn closed(&self, fd: Fd) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&fd);
        }
    }
}

//! The kernel a thread's run drives: a [`Sim`] of its own (one thread, [`crate::run`]), or the
//! [`ThreadedSim`] shared by the simulated threads of [`crate::run_threads`].
//!
//! The calls see it as a [`Poller`] (it dereferences to one), plus the few things of the
//! simulated kernel's own that the interposer needs; those that let time pass
//! ([`Kernel::sleep`]) block in the scheduler on a threaded run instead of moving the clock.

use std::io;
use std::ops::Deref;
use std::time::Duration;

use netpoll::{Fd, Poller};
use netpoll_sim::Sim;
use netpoll_threads::ThreadedSim;

pub(crate) enum Kernel<'a> {
    /// One thread on its own kernel.
    Single(&'a Sim),
    /// One of the simulated threads sharing a kernel.
    Threaded(ThreadedSim),
}

impl Deref for Kernel<'_> {
    type Target = dyn Poller + 'static;

    fn deref(&self) -> &(dyn Poller + 'static) {
        match self {
            Kernel::Single(s) => *s,
            Kernel::Threaded(t) => t,
        }
    }
}

impl Kernel<'_> {
    fn with<R>(&self, f: impl FnOnce(&Sim) -> R) -> R {
        match self {
            Kernel::Single(s) => f(s),
            Kernel::Threaded(t) => t.with_sim(f),
        }
    }

    /// Delivers whatever is due now (`Sim::settle`).
    pub(crate) fn settle(&self) {
        self.with(Sim::settle);
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.with(Sim::now_ns)
    }

    pub(crate) fn next_event_ns(&self) -> Option<u64> {
        self.with(Sim::next_event_ns)
    }

    pub(crate) fn status_flags(&self, fd: Fd) -> io::Result<i32> {
        self.with(|s| s.status_flags(fd))
    }

    /// Lets `d` of virtual time pass for the calling thread: on one thread the clock moves; on
    /// a threaded run the thread blocks in the scheduler until the clock gets there.
    pub(crate) fn sleep(&self, d: Duration) {
        match self {
            Kernel::Single(s) => s.sleep(d),
            Kernel::Threaded(_) => netpoll_threads::sleep(d),
        }
    }

    pub(crate) fn seed(&self) -> u64 {
        self.with(Sim::seed)
    }

    pub(crate) fn is_threaded(&self) -> bool {
        matches!(self, Kernel::Threaded(_))
    }
}

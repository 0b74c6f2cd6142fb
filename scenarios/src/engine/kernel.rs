//! The kernel adapter: what the engine needs of a poller beyond the [`Poller`] trait (the
//! simulated kernel's introspection for the oracles), and the real kernel's deadline slack.

use netpoll::Poller;
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

use crate::raw_epoll::TICK_NS;

/// How late a deadline may fire on the real kernel, where the thread competes for a CPU.
pub const REAL_SLACK_NS: u64 = 250 * TICK_NS;

/// A poller the engine can run on: the simulated kernel offers introspection for the oracles.
pub trait Kernel: Poller {
    /// The simulated kernel, when this is one.
    fn sim(&self) -> Option<&Sim>;
}

impl Kernel for Sim {
    fn sim(&self) -> Option<&Sim> {
        Some(self)
    }
}

impl Kernel for RealNet {
    fn sim(&self) -> Option<&Sim> {
        None
    }
}

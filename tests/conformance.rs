//! The two-arm conformance suite: every case runs on real Linux epoll (`RealNet`) and on the
//! simulated kernel (`Sim`), and both must make the same observations, which must also be the
//! values Linux is known to give. See `conformance/harness.rs`.
//!
//! Run one case: `cargo test --test conformance <name>`; replay the sim arm with another seed:
//! `NETPOLL_SEED=<n> cargo test --test conformance <name>`.

/// The two kernels under test.
mod arms {
    /// The real kernel.
    pub type Real = netpoll_realnet::RealNet;
    /// The simulated kernel.
    pub type Sim = netpoll_sim::Sim;

    pub fn new_real() -> Real {
        netpoll_realnet::RealNet::new()
    }

    pub fn new_sim(seed: u64) -> Sim {
        netpoll_sim::Sim::new(seed)
    }
}

#[macro_use]
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/buffers.rs"]
mod buffers;
#[path = "conformance/close_dup.rs"]
mod close_dup;
#[path = "conformance/ctl_errors.rs"]
mod ctl_errors;
#[path = "conformance/ctl_ready.rs"]
mod ctl_ready;
#[path = "conformance/epoll_lt_et.rs"]
mod epoll_lt_et;
#[path = "conformance/eventfd.rs"]
mod eventfd;
#[path = "conformance/exclusive.rs"]
mod exclusive;
#[path = "conformance/hangups.rs"]
mod hangups;
#[path = "conformance/maxevents_order.rs"]
mod maxevents_order;
#[path = "conformance/nested.rs"]
mod nested;
#[path = "conformance/oneshot.rs"]
mod oneshot;
#[path = "conformance/tcp.rs"]
mod tcp;
#[path = "conformance/timeouts.rs"]
mod timeouts;
#[path = "conformance/masks.rs"]
mod masks;

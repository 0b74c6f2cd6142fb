//! The simulated kernel's knobs: buffer sizes, network latency, limits.
//!
//! Defaults follow a stock Linux 6.x on loopback where a number is observable (pipe capacity,
//! the unix socket send buffer and its per-write overhead, the accept queue rule); latency is
//! a seeded uniform draw so that different seeds order deliveries differently.

use crate::faults::FaultPlan;

/// Configuration of a [`crate::Sim`] kernel. `Default` is the faithful Linux-like setting.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Largest number of open descriptors (`RLIMIT_NOFILE`); beyond it calls fail with `EMFILE`.
    pub max_fds: usize,
    /// Lowest descriptor number handed out. A real process has 0, 1 and 2 open; so does this one.
    pub first_fd: i32,
    /// `SO_SNDBUF` of a unix stream socket (Linux: `net.core.wmem_default`, 212992).
    pub unix_sndbuf: usize,
    /// Pipe capacity in 4096-byte pages (Linux: 16, i.e. 65536 bytes).
    pub pipe_pages: usize,
    /// Bytes one direction of a TCP connection holds (in flight plus unread) before `write`
    /// returns `EAGAIN` (Linux on loopback: about 3.9 MB, the grown send buffer plus the peer's
    /// receive buffer; it varies from run to run there).
    pub tcp_window: usize,
    /// TCP maximum segment size on loopback: larger writes travel as several segments.
    pub tcp_mss: usize,
    /// One-way network latency, drawn uniformly from this range for each packet (ns).
    pub latency_ns: (u64, u64),
    /// Initial SYN retransmission timeout when a listener's accept queue is full (Linux: 1 s).
    pub syn_rto_ns: u64,
    /// SYN retransmissions before `connect` fails with `ETIMEDOUT` (Linux: `tcp_syn_retries`, 6).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions for a handshake the accept queue has no room for, before the
    /// request is dropped and the client reset (Linux: `tcp_synack_retries`, 5).
    pub synack_retries: u32,
    /// Largest listen backlog (`net.core.somaxconn`, 4096).
    pub somaxconn: usize,
    /// Faults to inject (none by default).
    pub faults: FaultPlan,
    /// What the kernel checks on its own (all on by default; see [`crate::oracle`]).
    pub oracles: crate::oracle::Oracles,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            max_fds: 1 << 20,
            first_fd: 3,
            unix_sndbuf: 212_992,
            pipe_pages: 16,
            tcp_window: 3_932_160,
            tcp_mss: 65_483,
            latency_ns: (5_000, 50_000),
            faults: FaultPlan::default(),
            syn_rto_ns: 1_000_000_000,
            syn_retries: 6,
            synack_retries: 5,
            somaxconn: 4096,
            oracles: crate::oracle::Oracles::default(),
        }
    }
}

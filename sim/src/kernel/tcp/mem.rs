//! The machine-wide TCP memory account (`net.ipv4.tcp_mem`; `net/core/sock.c`'s
//! `__sk_mem_raise_allocated`, `tcp.c`'s `tcp_sendmsg`, `tcp_input.c`'s `tcp_try_rmem_schedule`).
//!
//! # Model
//!
//! Every byte queued in a TCP connection (written and not yet read) is charged to one account,
//! from the `write` that queues it to the `read` (or close, or reset) that frees it. Linux
//! charges the sending socket until the segment is acknowledged and the receiving socket until
//! it is read, in page quanta of each buffer's true size; the sim charges the payload once (the
//! per-segment overhead is not modelled), and splits it the same way for the per-socket figures:
//! the bytes in flight are the sender's (`sk_wmem_queued`), the unread ones the receiver's
//! (`sk_rmem_alloc`).
//!
//! A charge of `size` bytes (one segment) is judged as Linux judges it, with `total` the account
//! after the charge and `low`, `pressure`, `high` the three thresholds in bytes:
//!
//! - `total <= low`: granted, and the account leaves memory pressure;
//! - `total > pressure`: the account enters memory pressure;
//! - `total > high`: refused (the hard limit; no minimum is guaranteed past it);
//! - the socket holds less than the minimum (`tcp_wmem[0]` queued for a send, `tcp_rmem[0]`
//!   unread for a receive, 4096 bytes): granted;
//! - not under pressure, or the socket's own pages times the number of TCP sockets still below
//!   the hard limit (its fair share): granted;
//! - else refused.
//!
//! What a refusal does:
//!
//! - **send** (`sk_wmem_schedule` in `tcp_sendmsg`): the socket's send buffer is moderated to
//!   half of what it has queued (at least `SOCK_MIN_SNDBUF`). The segment is still granted when
//!   the socket has nothing queued (`sk_forced_mem_schedule` of a first buffer) or is at or over
//!   that moderated buffer (Linux cannot fail a socket that is under it any other way); the
//!   next segment then finds the buffer full, so the write is short or `EAGAIN`, `poll` stops
//!   saying `OUT`, and `OUT` comes back when the socket's queue drains. The buffer grows back
//!   (`tcp_should_expand_sndbuf`) only when the account is out of pressure and below `low`.
//! - **receive** (`tcp_try_rmem_schedule`, then `tcp_prune_queue`, which has nothing to
//!   collapse at this level): the segment is dropped, unless the receiver has nothing unread
//!   (`tcp_data_queue` then charges it by force: a reader that drains always gets the next
//!   segment). The sender retransmits after the retransmission timeout (200 ms, `TCP_RTO_MIN`,
//!   doubling for each loss in a row up to `TCP_RTO_MAX`, 120 s). Segments behind the lost one
//!   are dropped too (Linux would keep them out of order if it could charge them: it cannot,
//!   over the limit), and so is a FIN; the retransmission sends them all again, in order.
//!
//! Receive buffers do not grow under pressure in Linux (`tcp_rcv_space_adjust`); the sim's
//! window does not grow at all, so there is nothing to stop.

/// Linux's page (`SK_MEM_QUANTUM`): the unit of `tcp_mem`.
pub(crate) const PAGE: u64 = 4096;
/// `tcp_wmem[0]` and `tcp_rmem[0]`: the minimum a socket gets under pressure.
const MIN_BUF: u64 = 4096;
/// `SOCK_MIN_SNDBUF` on x86-64 (twice `TCP_SKB_MIN_TRUESIZE`, 2 x (2048 + 256)): the smallest
/// moderated send buffer.
pub(super) const SOCK_MIN_SNDBUF: u32 = 4608;
/// `TCP_RTO_MIN` and `TCP_RTO_MAX`.
pub(super) const RTO_MIN_NS: u64 = 200_000_000;
pub(super) const RTO_MAX_NS: u64 = 120_000_000_000;

/// What a charge is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Send,
    Recv,
}

/// A socket's own figures: bytes it has in flight (`sk_wmem_queued`) and unread
/// (`sk_rmem_alloc`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Usage {
    pub(super) wmem: u64,
    pub(super) rmem: u64,
}

/// The account.
#[derive(Debug, Default)]
pub(crate) struct TcpMem {
    /// Bytes queued in all TCP connections.
    pub(super) allocated: u64,
    /// The most ever queued.
    pub(super) peak: u64,
    /// `tcp_memory_pressure`.
    pub(super) pressure: bool,
    /// Times the account entered pressure.
    pub(super) pressure_entries: u64,
    /// TCP sockets open (`tcp_sockets_allocated`), for the fair share.
    pub(super) sockets: u64,
    /// Sends refused or moderated, and segments dropped at the receiver.
    pub(super) send_moderated: u64,
    pub(super) recv_dropped: u64,
    /// Sockets whose send buffer is moderated: while none is, a delivery need not look at the
    /// sender (the default runs never get here).
    pub(super) moderated_socks: u64,
}

/// The thresholds in bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) low: u64,
    pub(super) pressure: u64,
    pub(super) high: u64,
}

impl Limits {
    pub(super) fn of(tcp_mem: [u64; 3]) -> Limits {
        Limits {
            low: tcp_mem[0] * PAGE,
            pressure: tcp_mem[1] * PAGE,
            high: tcp_mem[2] * PAGE,
        }
    }
}

impl TcpMem {
    /// Whether charging `size` more bytes needs no judgement at all (the account stays at or
    /// below `low`): the path every default run takes.
    #[inline]
    pub(super) fn free_below_low(&self, size: u64, lim: &Limits) -> bool {
        self.allocated + size <= lim.low
    }

    /// Judges a charge of `size` bytes for a socket with `own` usage (see the module docs).
    /// Does not charge: the caller charges what it queues.
    pub(super) fn judge(&mut self, kind: Kind, size: u64, own: Usage, lim: &Limits) -> bool {
        let total = self.allocated + size;
        if total <= lim.low {
            self.pressure = false;
            return true;
        }
        if total > lim.pressure && !self.pressure {
            self.pressure = true;
            self.pressure_entries += 1;
        }
        if total > lim.high {
            return false;
        }
        let below_min = match kind {
            Kind::Send => own.wmem < MIN_BUF,
            Kind::Recv => own.rmem < MIN_BUF,
        };
        if below_min || !self.pressure {
            return true;
        }
        let pages = (own.wmem + own.rmem).div_ceil(PAGE);
        lim.high / PAGE > self.sockets.max(1) * pages
    }

    pub(super) fn charge(&mut self, n: u64) {
        self.allocated += n;
        self.peak = self.peak.max(self.allocated);
    }

    /// Frees `n` bytes (`sk_mem_uncharge` and the reclaim after it): below `low` the account
    /// leaves pressure.
    pub(super) fn uncharge(&mut self, n: u64, lim: &Limits) {
        self.allocated -= n;
        if self.pressure && self.allocated < lim.low {
            self.pressure = false;
        }
    }

    /// `tcp_should_expand_sndbuf`'s memory conditions: a moderated send buffer may grow back.
    pub(super) fn may_expand(&self, lim: &Limits) -> bool {
        !self.pressure && self.allocated < lim.low
    }
}

/// The retransmission timeout after `losses` losses in a row (1 for the first).
pub(super) fn rto_ns(losses: u8) -> u64 {
    (RTO_MIN_NS << u32::from(losses.saturating_sub(1)).min(10)).min(RTO_MAX_NS)
}

/// What the TCP memory account shows: [`crate::Sim::tcp_memory`].
///
/// # Examples
/// ```
/// use netpoll_sim::Sim;
///
/// let sim = Sim::new(1);
/// let m = sim.tcp_memory();
/// assert_eq!((m.allocated, m.under_pressure, m.dropped_segments), (0, false, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpMemory {
    /// Bytes queued in TCP connections now (written, not yet read).
    pub allocated: u64,
    /// The most ever queued at once.
    pub peak: u64,
    /// Whether the account is under memory pressure (`tcp_memory_pressure`).
    pub under_pressure: bool,
    /// Times it entered pressure.
    pub pressure_entries: u64,
    /// Sends that met the limit: the socket's send buffer was moderated.
    pub moderated_sends: u64,
    /// Segments dropped at the receiver for want of memory (each retransmitted later).
    pub dropped_segments: u64,
}

impl TcpMem {
    pub(crate) fn view(&self) -> TcpMemory {
        TcpMemory {
            allocated: self.allocated,
            peak: self.peak,
            under_pressure: self.pressure,
            pressure_entries: self.pressure_entries,
            moderated_sends: self.send_moderated,
            dropped_segments: self.recv_dropped,
        }
    }
}

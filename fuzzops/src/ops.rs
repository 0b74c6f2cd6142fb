//! The vocabulary: one [`Op`] per `Poller` call, with arguments chosen to reach both sensible
//! and nonsensical states (closed descriptors, wrong kinds of file, bad flags, odd sizes).
//!
//! Every type here derives both `arbitrary::Arbitrary` (for cargo-fuzz, which feeds raw bytes)
//! and `proptest_derive::Arbitrary` (for the stable proptest twins, which shrink). Values are
//! taken raw and bounded by the interpreter ([`crate::interp`]), so that any byte string is a
//! valid input and both generators mean the same thing by the same value.

use proptest::collection::vec;
use proptest::prelude::any;

/// Which descriptor an op names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub enum FdRef {
    /// The descriptor made by the `n % made`-th successful creating call (maybe closed since).
    Slot(u8),
    /// The descriptor made most recently.
    Latest,
    /// A raw number: negative, huge, or (on the sim) anything. The differential target maps it
    /// to a number that is certainly not open in either kernel.
    Raw(i32),
}

/// Creation flags, as bits: each kernel call keeps the ones it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub struct Flags {
    /// `O_NONBLOCK` (forced on by the differential target: the real kernel would block).
    pub nonblock: bool,
    /// `O_CLOEXEC`.
    pub cloexec: bool,
    /// A bit no call accepts (`0x100`): `EINVAL` everywhere.
    pub bogus: bool,
    /// `EFD_SEMAPHORE`, for `eventfd` only.
    pub semaphore: bool,
}

/// `epoll_ctl`'s operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub enum CtlOp {
    /// `EPOLL_CTL_ADD`.
    Add,
    /// `EPOLL_CTL_MOD`.
    Mod,
    /// `EPOLL_CTL_DEL`.
    Del,
    /// Any other number (`EINVAL` unless it happens to be 1..=3).
    Raw(i32),
}

/// Which IPv4 address a `bind` or `connect` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub enum Ip {
    /// 127.0.0.1.
    Localhost,
    /// 127.0.0.2, another loopback address.
    Loopback2,
    /// 0.0.0.0.
    Any,
    /// 10.1.2.3, not loopback: `EADDRNOTAVAIL` on the sim. Never sent to the real kernel.
    Foreign,
}

/// Which port a `bind` or `connect` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub enum Port {
    /// 0: an ephemeral port.
    Zero,
    /// `20000 + n`.
    Fixed(u8),
    /// The port `local_addr` gives for that descriptor (1 if it fails): how connects find
    /// listeners.
    Of(FdRef),
}

/// One `Poller` call.
#[derive(Clone, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub enum Op {
    /// `epoll_create1`.
    EpollCreate { flags: Flags },
    /// `epoll_ctl`. `interest` picks bits from [`crate::interp::INTEREST_BITS`]; `raw` (sim
    /// targets only) ORs in arbitrary bits; `null` passes no event.
    EpollCtl {
        ep: FdRef,
        op: CtlOp,
        fd: FdRef,
        interest: u16,
        raw: u32,
        data: u8,
        null: bool,
    },
    /// `epoll_wait` with `max % 9` slots (0: `EINVAL`). The differential target forces
    /// `timeout == 0`.
    EpollWait { ep: FdRef, max: u8, timeout: i32 },
    /// `socketpair`.
    Socketpair { flags: Flags },
    /// `pipe2`.
    Pipe { flags: Flags },
    /// `eventfd`.
    EventFd { init: u32, flags: Flags },
    /// `socket(AF_INET, SOCK_STREAM)`.
    TcpSocket { flags: Flags },
    /// `bind`.
    Bind { fd: FdRef, ip: Ip, port: Port },
    /// `listen`.
    Listen { fd: FdRef, backlog: i8 },
    /// `connect` (not in the differential target: its timing is the real kernel's).
    Connect { fd: FdRef, ip: Ip, port: Port },
    /// `accept4`.
    Accept { fd: FdRef, flags: Flags },
    /// `getsockname`.
    LocalAddr { fd: FdRef },
    /// `getpeername`.
    PeerAddr { fd: FdRef },
    /// `getsockopt(SO_ERROR)`.
    TakeError { fd: FdRef },
    /// `setsockopt(SO_LINGER)`.
    SetLinger { fd: FdRef, secs: Option<u8> },
    /// `read` into a buffer of `len % 4097` bytes.
    Read { fd: FdRef, len: u16 },
    /// `write` of `len` bytes (bounded per target) of a pattern starting at `fill`.
    Write { fd: FdRef, len: u16, fill: u8 },
    /// `write` of 8 bytes holding `value`, native-endian: an eventfd increment.
    WriteCounter { fd: FdRef, value: u64 },
    /// `shutdown` with `how` (0..=2 valid).
    Shutdown { fd: FdRef, how: i8 },
    /// `close`.
    Close { fd: FdRef },
    /// `dup`.
    Dup { fd: FdRef },
    /// `fcntl(F_SETFL)`. The differential target forces `on`.
    SetNonblocking { fd: FdRef, on: bool },
    /// A shortcut to deep TCP states: `socket`, `bind(127.0.0.1:0)`, `listen(backlog)`.
    TcpListener { backlog: i8, nonblock: bool },
    /// A shortcut: `socket`, then `connect` to the address of `listener` (not in the
    /// differential target).
    TcpConnectTo { listener: FdRef, nonblock: bool },
    /// Virtual time passes until something becomes readable: a private epoll instance with
    /// every descriptor made so far registered for `IN`, waited on for up to `ms` ms (sim
    /// targets only). Stops mid-handshake, as an event loop does.
    WaitReadable { ms: u8 },
    /// Virtual time passes: `epoll_wait` on a fresh epoll instance for `ms` ms (sim targets
    /// only; a no-op in the differential target).
    Sleep { ms: u8 },
}

/// The simulated kernel's knobs a sim input may turn. Mapped into valid ranges by
/// [`Knobs::config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub struct Knobs {
    /// `max_fds`: `first_fd + 2 + n % 48`, so that `EMFILE` is reachable.
    pub max_fds: u8,
    /// `first_fd`: `n % 4`.
    pub first_fd: u8,
    /// `unix_sndbuf`: 1 KiB to 208 KiB.
    pub unix_sndbuf: u16,
    /// `pipe_pages`: 1 to 16.
    pub pipe_pages: u8,
    /// `tcp_window`: 1 byte to 64 KiB.
    pub tcp_window: u16,
    /// `tcp_mss`: 1 byte to 64 KiB.
    pub tcp_mss: u16,
    /// The two ends of the latency range, in microseconds (sorted).
    pub latency_us: (u8, u8),
    /// The fault plan's `split_write`: `n / 255`.
    pub split: u8,
    /// The fault plan's `short_read`, `short_write`, `spurious`, `eintr`, `reset`,
    /// `accept_abort` and `timer_first`: each `n / 510` (at most one half).
    pub faults: [u8; 7],
    /// `syn_retries` and `synack_retries`: `n % 7`.
    pub syn_retries: u8,
    /// `somaxconn`: 1 to 8.
    pub somaxconn: u8,
}

impl Knobs {
    /// The configuration these knobs describe: always a valid one.
    pub fn config(&self) -> netpoll_sim::SimConfig {
        let first_fd = i32::from(self.first_fd % 4);
        let (a, b) = self.latency_us;
        let (lo, hi) = (u64::from(a.min(b)), u64::from(a.max(b)));
        netpoll_sim::SimConfig {
            max_fds: first_fd as usize + 2 + usize::from(self.max_fds % 48),
            first_fd,
            unix_sndbuf: 1024 + usize::from(self.unix_sndbuf) * 3,
            pipe_pages: 1 + usize::from(self.pipe_pages % 16),
            tcp_window: 1 + usize::from(self.tcp_window),
            tcp_mss: 1 + usize::from(self.tcp_mss),
            tcp_mem: netpoll_sim::SimConfig::default().tcp_mem,
            latency_ns: (lo * 1000, hi * 1000),
            syn_rto_ns: 1_000_000_000,
            syn_retries: u32::from(self.syn_retries % 7),
            synack_retries: u32::from(self.syn_retries % 7),
            somaxconn: 1 + usize::from(self.somaxconn % 8),
            // No capacity hint: the ops' tables stay small (a hint changes no behaviour).
            expected_conns: 0,
            // The ops exercise raw kernel semantics (edge-triggered data left unread on
            // purpose, calls made after a simulated hang): no oracle may stop them.
            oracles: netpoll_sim::Oracles::off(),
            faults: {
                let p = |n: u8| f64::from(n) / 510.0;
                let [r, w, sp, ei, rst, ab, tf] = self.faults;
                netpoll_sim::FaultPlan {
                    short_read: p(r),
                    short_write: p(w),
                    split_write: f64::from(self.split) / 255.0,
                    spurious: p(sp),
                    eintr: p(ei),
                    reset: p(rst),
                    accept_abort: p(ab),
                    timer_first: p(tf),
                    ..netpoll_sim::FaultPlan::default()
                }
            },
        }
    }
}

/// Input of the `sim_no_panic` target: any call sequence on a sim with any seed and knobs.
#[derive(Clone, Debug, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub struct NoPanicInput {
    /// The sim's seed.
    pub seed: u64,
    /// The default configuration (`false`) or the knobs' one (`true`).
    pub custom: bool,
    /// The knobs.
    pub knobs: Knobs,
    /// The calls, at most [`crate::MAX_OPS`] of them.
    #[proptest(strategy = "vec(any::<Op>(), 0..64)")]
    pub ops: Vec<Op>,
}

/// Input of the `differential` target: call sequences on socketpairs, pipes, eventfds, epoll
/// instances and unconnected TCP sockets, run on both kernels.
#[derive(Clone, Debug, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub struct DiffInput {
    /// The sim's seed (results must not depend on it).
    pub seed: u64,
    /// The calls, at most [`crate::MAX_DIFF_OPS`] of them.
    #[proptest(strategy = "vec(any::<Op>(), 0..48)")]
    pub ops: Vec<Op>,
}

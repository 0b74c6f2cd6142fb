//! What the kernel records about the calls made to it: a bounded recent history (always on, for
//! failure reports), an optional full trace (for trace files and the determinism self-check), and
//! a running fingerprint of every call and result (two runs of one seed must end with the same).

use netpoll::Fd;

/// The system call a [`Record`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Op {
    EpollCreate,
    EpollCtl,
    EpollWait,
    Socketpair,
    Pipe,
    EventFd,
    Socket,
    Bind,
    Listen,
    Connect,
    Accept,
    LocalAddr,
    PeerAddr,
    TakeError,
    SetLinger,
    Read,
    Write,
    Shutdown,
    Close,
    Dup,
    SetNonblocking,
    /// Virtual time let pass by [`crate::Sim::sleep`] (`arg`: nanoseconds).
    Sleep,
    /// `recv` (`arg`: the flags in the high 32 bits, the buffer's length in the low).
    Recv,
    /// `poll` (`arg`: the timeout in ms; `fd` is -1).
    Poll,
    /// `ioctl(FIONREAD)`.
    FionRead,
    /// `fcntl(F_GETFL)`.
    GetStatusFlags,
    /// `fcntl(F_SETFL)` (`arg`: the flags).
    SetStatusFlags,
}

/// One system call and its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// Virtual time when the call returned.
    pub at_ns: u64,
    /// Which call.
    pub op: Op,
    /// The descriptor it was about (the epoll fd for epoll calls; -1 for none).
    pub fd: Fd,
    /// A second argument: the target fd for `epoll_ctl`, the byte count for reads and writes,
    /// the op for `epoll_ctl` in the high bits; otherwise 0.
    pub arg: i64,
    /// The result: a count or new descriptor, or the errno (`Err(0)` for a non-errno error,
    /// the simulated hang).
    pub ret: Result<i64, i32>,
}

/// How many recent records the history keeps.
pub const HISTORY_LEN: usize = 1024;

/// Where a streamed trace goes: called with every call's record as it is made (see
/// [`Sim::set_trace_sink`](crate::Sim::set_trace_sink)).
pub type TraceSink = Box<dyn FnMut(&Record) + Send>;

/// A [`Record`] as the history ring holds it: 32 bytes, two to a cache line, each field its own
/// plain integer. [`Tracer::record`] writes these fields from the values it already holds in
/// registers; copying the caller's `Record` whole (40 bytes, in 8- and 16-byte moves) read its
/// fields back across the narrower stores that had just written them, a load the processor
/// cannot forward from its store buffer, and so waited for every older store to reach the
/// cache (11 to 13% of a 100,000-connection run, all on that copy).
#[derive(Clone, Copy, Debug)]
struct Entry {
    at_ns: u64,
    arg: i64,
    /// The count, or the errno when `err`.
    ret: i64,
    fd: Fd,
    op: Op,
    err: bool,
}

impl Entry {
    fn record(self) -> Record {
        Record {
            at_ns: self.at_ns,
            op: self.op,
            fd: self.fd,
            arg: self.arg,
            ret: if self.err {
                Err(self.ret as i32)
            } else {
                Ok(self.ret)
            },
        }
    }
}

pub(crate) struct Tracer {
    /// A ring, allocated whole: call `n` (counting from 0) is at `n % HISTORY_LEN`, so the
    /// place to write is the call count masked, with neither a length nor a head to keep nor a
    /// bounds check (the oldest record is at `count % HISTORY_LEN` once the ring is full).
    recent: Box<[Entry; HISTORY_LEN]>,
    full: Option<Vec<Record>>,
    sink: Option<TraceSink>,
    /// `full` or `sink` is on: one test on the hot path instead of two.
    tee: bool,
    fingerprint: u64,
    count: u64,
}

impl Default for Tracer {
    fn default() -> Self {
        let empty = Entry {
            at_ns: 0,
            arg: 0,
            ret: 0,
            fd: -1,
            op: Op::Read,
            err: false,
        };
        let recent: Box<[Entry]> = vec![empty; HISTORY_LEN].into_boxed_slice();
        Tracer {
            recent: recent.try_into().expect("HISTORY_LEN entries"),
            full: None,
            sink: None,
            tee: false,
            fingerprint: 0,
            count: 0,
        }
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("recent", &self.count.min(HISTORY_LEN as u64))
            .field("full", &self.full.as_ref().map(Vec::len))
            .field("sink", &self.sink.is_some())
            .field("fingerprint", &self.fingerprint)
            .field("count", &self.count)
            .finish()
    }
}

impl Tracer {
    /// Records one call: the fingerprint, the history ring, and the full trace and the sink
    /// if they are on. Inlined into its two callers, so that the record's fields stay in
    /// registers on the hot path (see [`Entry`]).
    #[inline(always)]
    pub(crate) fn record(&mut self, r: Record) {
        let at = self.count as usize % HISTORY_LEN;
        self.count += 1;
        // FNV-1a over the record's fields: cheap, stable across platforms and versions.
        let mut h = self.fingerprint ^ 0xcbf2_9ce4_8422_2325;
        let (ret, err) = match r.ret {
            Ok(v) => (v, false),
            Err(e) => (i64::from(e), true),
        };
        let hashed = if err {
            (1 << 63) | ret as u64
        } else {
            ret as u64
        };
        for w in [r.at_ns, r.op as u64, r.fd as u64, r.arg as u64, hashed] {
            h ^= w;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.fingerprint = h;
        let e = Entry {
            at_ns: r.at_ns,
            arg: r.arg,
            ret,
            fd: r.fd,
            op: r.op,
            err,
        };
        self.recent[at] = e;
        if self.tee {
            self.record_out(r);
        }
    }

    /// The full trace and the sink's share of [`Tracer::record`], out of the hot path.
    #[cold]
    #[inline(never)]
    fn record_out(&mut self, r: Record) {
        if let Some(full) = &mut self.full {
            full.push(r);
        }
        if let Some(sink) = &mut self.sink {
            sink(&r);
        }
    }

    pub(crate) fn set_sink(&mut self, sink: Option<TraceSink>) {
        self.sink = sink;
        self.tee = self.full.is_some() || self.sink.is_some();
    }

    pub(crate) fn set_full(&mut self, on: bool) {
        self.full = if on { Some(Vec::new()) } else { None };
        self.tee = self.full.is_some() || self.sink.is_some();
    }

    pub(crate) fn take_full(&mut self) -> Vec<Record> {
        self.full.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub(crate) fn recent(&self) -> impl Iterator<Item = Record> + '_ {
        let (newer, older) = if self.count < HISTORY_LEN as u64 {
            (&self.recent[..self.count as usize], &self.recent[..0])
        } else {
            self.recent.split_at(self.count as usize % HISTORY_LEN)
        };
        older.iter().chain(newer).map(|e| e.record())
    }

    pub(crate) fn fingerprint(&self) -> (u64, u64) {
        (self.count, self.fingerprint)
    }
}

/// The errno's symbolic name (`EAGAIN`), or `errno N` for one the simulated kernel never
/// returns.
pub fn errno_name(e: i32) -> String {
    use netpoll::sys::errno::*;
    let name = match e {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        EINTR => "EINTR",
        EBADF => "EBADF",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EFAULT => "EFAULT",
        EEXIST => "EEXIST",
        EINVAL => "EINVAL",
        ENFILE => "ENFILE",
        EMFILE => "EMFILE",
        ENOSPC => "ENOSPC",
        EPIPE => "EPIPE",
        EDEADLK => "EDEADLK",
        ELOOP => "ELOOP",
        ENOTSOCK => "ENOTSOCK",
        EDESTADDRREQ => "EDESTADDRREQ",
        EOPNOTSUPP => "EOPNOTSUPP",
        EAFNOSUPPORT => "EAFNOSUPPORT",
        EADDRINUSE => "EADDRINUSE",
        EADDRNOTAVAIL => "EADDRNOTAVAIL",
        ENETUNREACH => "ENETUNREACH",
        ECONNABORTED => "ECONNABORTED",
        ECONNRESET => "ECONNRESET",
        ENOBUFS => "ENOBUFS",
        EISCONN => "EISCONN",
        ENOTCONN => "ENOTCONN",
        ETIMEDOUT => "ETIMEDOUT",
        ECONNREFUSED => "ECONNREFUSED",
        EALREADY => "EALREADY",
        EINPROGRESS => "EINPROGRESS",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

impl Op {
    /// The system call's name, as `strace` would print it (`accept4`, `epoll_ctl`).
    pub fn name(self) -> &'static str {
        match self {
            Op::EpollCreate => "epoll_create1",
            Op::EpollCtl => "epoll_ctl",
            Op::EpollWait => "epoll_wait",
            Op::Socketpair => "socketpair",
            Op::Pipe => "pipe2",
            Op::EventFd => "eventfd",
            Op::Socket => "socket",
            Op::Bind => "bind",
            Op::Listen => "listen",
            Op::Connect => "connect",
            Op::Accept => "accept4",
            Op::LocalAddr => "getsockname",
            Op::PeerAddr => "getpeername",
            Op::TakeError => "SO_ERROR",
            Op::SetLinger => "SO_LINGER",
            Op::Read => "read",
            Op::Write => "write",
            Op::Shutdown => "shutdown",
            Op::Close => "close",
            Op::Dup => "dup",
            Op::SetNonblocking => "set_nonblocking",
            Op::Sleep => "nanosleep",
            Op::Recv => "recv",
            Op::Poll => "poll",
            Op::FionRead => "FIONREAD",
            Op::GetStatusFlags => "F_GETFL",
            Op::SetStatusFlags => "F_SETFL",
        }
    }
}

impl Record {
    /// The second argument in words: `ADD fd 7`, `timeout 10 ms`, `65536 bytes`.
    pub fn arg_text(&self) -> String {
        match self.op {
            Op::EpollCtl => {
                let op = match self.arg >> 32 {
                    1 => "ADD",
                    2 => "DEL",
                    3 => "MOD",
                    _ => "?",
                };
                format!("{op} fd {}", self.arg as u32 as i32)
            }
            Op::EpollWait | Op::Poll => format!("timeout {} ms", self.arg),
            Op::Read | Op::Write => format!("{} bytes", self.arg),
            Op::Recv => format!("{} bytes, flags {:#x}", self.arg as u32, self.arg >> 32),
            _ => self.arg.to_string(),
        }
    }

    /// The result in words: a count or descriptor, an errno name, or `hang` (`Err(0)`: the
    /// call was stopped, not failed by the kernel).
    pub fn ret_text(&self) -> String {
        match self.ret {
            Ok(v) => v.to_string(),
            Err(0) => "hang".into(),
            Err(e) => errno_name(e),
        }
    }

    /// The call alone, without its time: `read(fd 7, 65536 bytes) -> EAGAIN`.
    pub fn call_text(&self) -> String {
        format!(
            "{}(fd {}, {}) -> {}",
            self.op.name(),
            self.fd,
            self.arg_text(),
            self.ret_text()
        )
    }
}

/// `      1200000 read(fd 7, 65536 bytes) -> EAGAIN`: the virtual time in nanoseconds, right
/// aligned, then the call.
///
/// ```
/// use netpoll::Poller;
/// let sim = netpoll_sim::Sim::new(1);
/// let [a, _b] = sim.socketpair(netpoll::sys::O_NONBLOCK).unwrap();
/// let _ = sim.read(a, &mut [0; 16]);
/// let line = sim.history(a).last().unwrap().to_string();
/// assert_eq!(line.trim(), "0 read(fd 3, 16 bytes) -> EAGAIN");
/// ```
impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>12} {}", self.at_ns, self.call_text())
    }
}

/// The last `max` records of `history` as indented lines, oldest first, as failure reports
/// print them (`fd` names the descriptor in the heading).
pub fn fmt_history(
    f: &mut std::fmt::Formatter<'_>,
    fd: Fd,
    history: &[Record],
    max: usize,
) -> std::fmt::Result {
    if history.is_empty() {
        return writeln!(
            f,
            "no call on fd {fd} among the kernel's last {HISTORY_LEN} (a full trace shows all)"
        );
    }
    let skip = history.len().saturating_sub(max);
    if skip > 0 {
        writeln!(
            f,
            "recent calls on fd {fd} (last {max} of {}, oldest first):",
            history.len()
        )?;
    } else {
        writeln!(f, "recent calls on fd {fd} (oldest first):")?;
    }
    for r in &history[skip..] {
        writeln!(f, "  {r}")?;
    }
    Ok(())
}

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
pub type TraceSink = Box<dyn FnMut(&Record)>;

#[derive(Default)]
pub(crate) struct Tracer {
    /// A ring: the oldest record is at `head` once the ring is full.
    recent: Vec<Record>,
    head: usize,
    full: Option<Vec<Record>>,
    sink: Option<TraceSink>,
    fingerprint: u64,
    count: u64,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("recent", &self.recent.len())
            .field("full", &self.full.as_ref().map(Vec::len))
            .field("sink", &self.sink.is_some())
            .field("fingerprint", &self.fingerprint)
            .field("count", &self.count)
            .finish()
    }
}

impl Tracer {
    pub(crate) fn record(&mut self, r: Record) {
        self.count += 1;
        // FNV-1a over the record's fields: cheap, stable across platforms and versions.
        let mut h = self.fingerprint ^ 0xcbf2_9ce4_8422_2325;
        let ret = match r.ret {
            Ok(v) => v as u64,
            Err(e) => (1 << 63) | e as u64,
        };
        for w in [r.at_ns, r.op as u64, r.fd as u64, r.arg as u64, ret] {
            h ^= w;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.fingerprint = h;
        if self.recent.len() < HISTORY_LEN {
            self.recent.push(r);
        } else {
            self.recent[self.head] = r;
            self.head = (self.head + 1) % HISTORY_LEN;
        }
        if let Some(full) = &mut self.full {
            full.push(r);
        }
        if let Some(sink) = &mut self.sink {
            sink(&r);
        }
    }

    pub(crate) fn set_sink(&mut self, sink: Option<TraceSink>) {
        self.sink = sink;
    }

    pub(crate) fn set_full(&mut self, on: bool) {
        self.full = if on { Some(Vec::new()) } else { None };
    }

    pub(crate) fn take_full(&mut self) -> Vec<Record> {
        self.full.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub(crate) fn recent(&self) -> impl Iterator<Item = &Record> {
        let (newer, older) = self.recent.split_at(self.head);
        older.iter().chain(newer)
    }

    pub(crate) fn fingerprint(&self) -> (u64, u64) {
        (self.count, self.fingerprint)
    }
}

//! Traces people can read: Chrome/Perfetto trace-event JSON (open it in `ui.perfetto.dev` or
//! `chrome://tracing`) and a compact text form (pinned by the insta snapshots).
//!
//! Tracks: one for the poller (`epoll_create1`, `epoll_ctl`, `epoll_wait`, the last shown as a
//! slice from the previous call to its return: the time the loop slept), one for the listener,
//! and one per connection, holding the calls on both its client and its server descriptor.
//! Timestamps are virtual time (microseconds in the JSON, as the format wants).

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};

use netpoll::Fd;
use netpoll_sim::trace::{Op, Record};
use serde_json::{json, Value};

/// An fd's owner, recorded when `Spec::label_fds` (crate::engine) is set: `(virtual ns, fd, connection
/// index, is the server's end)`.
pub type FdLabel = (u64, Fd, usize, bool);

pub use netpoll_sim::trace::errno_name;

/// Who a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Track {
    /// The epoll instance and the loop's waits.
    Poller,
    /// The listening socket (the first socket a run makes) and its accepts.
    Listener,
    /// A descriptor no label names (the listener).
    Other(Fd),
    /// Connection `n`, its client end (`false`) or server end (`true`).
    Conn(usize, bool),
}

impl Track {
    fn tid(self) -> u64 {
        match self {
            Track::Poller => 1,
            Track::Listener => 2,
            Track::Other(fd) => 3 + fd.max(0) as u64,
            Track::Conn(n, _) => 1_000_000 + n as u64,
        }
    }

    fn name(self) -> String {
        match self {
            Track::Poller => "poller".into(),
            Track::Listener => "listener".into(),
            Track::Other(fd) => format!("fd {fd}"),
            Track::Conn(n, _) => format!("conn {n}"),
        }
    }

    fn side(self) -> &'static str {
        match self {
            Track::Conn(_, false) => "client",
            Track::Conn(_, true) => "server",
            _ => "",
        }
    }
}

/// Assigns records their tracks one at a time, in call order, following descriptor reuse: a
/// `socket` or `accept4` that returns fd N takes fd N's next label. Holds only the labels and
/// the descriptors open now, so a trace can be streamed.
#[derive(Debug)]
pub struct Assigner {
    queued: BTreeMap<Fd, VecDeque<(usize, bool)>>,
    current: BTreeMap<Fd, Track>,
    epfds: Vec<Fd>,
    listener_seen: bool,
}

impl Assigner {
    /// An assigner for a run whose descriptors carry `labels`.
    pub fn new(labels: &[FdLabel]) -> Assigner {
        let mut queued: BTreeMap<Fd, VecDeque<(usize, bool)>> = BTreeMap::new();
        for &(_, fd, conn, server) in labels {
            queued.entry(fd).or_default().push_back((conn, server));
        }
        Assigner {
            queued,
            current: BTreeMap::new(),
            epfds: Vec::new(),
            listener_seen: false,
        }
    }

    /// The track of the next record.
    pub fn track(&mut self, r: &Record) -> Track {
        let created = match (r.op, r.ret) {
            // The wake eventfd of a netpoller is the poller's too.
            (Op::EpollCreate | Op::EventFd, Ok(fd)) => {
                self.epfds.push(fd as Fd);
                return Track::Poller;
            }
            (Op::Socket, Ok(fd)) => Some(fd as Fd),
            (Op::Accept, Ok(fd)) => Some(fd as Fd),
            _ => None,
        };
        if let Some(fd) = created {
            // The first socket is the listener; every later one, and every accepted
            // connection, is a labelled connection end.
            let track = if r.op == Op::Socket && !self.listener_seen {
                self.listener_seen = true;
                Track::Listener
            } else {
                match self.queued.get_mut(&fd).and_then(|q| q.pop_front()) {
                    Some((n, s)) => Track::Conn(n, s),
                    None => Track::Other(fd),
                }
            };
            self.current.insert(fd, track);
            // An accept's record is on the listener's track (a failed one already is).
            return if r.op == Op::Accept {
                self.current
                    .get(&r.fd)
                    .copied()
                    .unwrap_or(Track::Other(r.fd))
            } else {
                track
            };
        }
        if self.epfds.contains(&r.fd) {
            return Track::Poller;
        }
        self.current
            .get(&r.fd)
            .copied()
            .unwrap_or(Track::Other(r.fd))
    }
}

/// Assigns every record its track (see [`Assigner`]).
pub fn assign(records: &[Record], labels: &[FdLabel]) -> Vec<Track> {
    let mut a = Assigner::new(labels);
    records.iter().map(|r| a.track(r)).collect()
}

/// One call as text: `read(fd 7, 65536 bytes) -> EAGAIN` ([`Record::call_text`]).
pub fn call_text(r: &Record) -> String {
    r.call_text()
}

/// The trace as compact text, one call per line:
/// `virtual-ns  track  call(fd, arg) -> result`.
pub fn text(records: &[Record], labels: &[FdLabel]) -> String {
    let mut out = Vec::new();
    write_text(records.iter().copied(), labels, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("the trace is ASCII")
}

/// Writes the compact text form of `records` to `w` as they come (nothing is held but the
/// descriptors' tracks). Returns the number of calls written.
///
/// ```
/// use netpoll_sim::trace::{Op, Record};
/// use netpoll_scenarios::trace_out;
///
/// let r = Record { at_ns: 5, op: Op::Read, fd: 7, arg: 64, ret: Err(11) };
/// let mut out = Vec::new();
/// assert_eq!(trace_out::write_text([r], &[], &mut out).unwrap(), 1);
/// assert!(String::from_utf8(out).unwrap().ends_with("read(fd 7, 64 bytes) -> EAGAIN\n"));
/// ```
///
/// # Errors
/// `w`'s.
pub fn write_text<W: Write>(
    records: impl IntoIterator<Item = Record>,
    labels: &[FdLabel],
    w: &mut W,
) -> io::Result<u64> {
    let mut a = Assigner::new(labels);
    let mut n = 0;
    for r in records {
        let who = match a.track(&r) {
            Track::Conn(n, s) => format!("conn {n} {}", if s { "server" } else { "client" }),
            other => other.name(),
        };
        writeln!(
            w,
            "{:>9} {:<16} {}(fd {}, {}) -> {}",
            r.at_ns,
            who,
            r.op.name(),
            r.fd,
            r.arg_text(),
            r.ret_text()
        )?;
        n += 1;
    }
    Ok(n)
}

/// The trace as Chrome trace-event JSON.
pub fn chrome(records: &[Record], labels: &[FdLabel], title: &str) -> Value {
    let mut out = Vec::new();
    write_chrome(records.iter().copied(), labels, title, &mut out).expect("writing to memory");
    serde_json::from_slice(&out).expect("the trace writer writes JSON")
}

/// Writes `records` as Chrome trace-event JSON to `w` as they come: one event at a time, the
/// track names at the end. The bytes are those of [`chrome`]'s value printed compactly (keys in
/// order). Returns the number of calls written.
///
/// # Errors
/// `w`'s.
pub fn write_chrome<W: Write>(
    records: impl IntoIterator<Item = Record>,
    labels: &[FdLabel],
    title: &str,
    w: &mut W,
) -> io::Result<u64> {
    let mut a = Assigner::new(labels);
    let mut named: BTreeMap<u64, String> = BTreeMap::new();
    let us = |ns: u64| ns as f64 / 1000.0;
    let mut prev_ns = 0;
    let mut n = 0;
    // `{"displayTimeUnit":"ns","traceEvents":[...]}`: a JSON object's keys in order, as
    // serde_json prints a `Value`.
    w.write_all(br#"{"displayTimeUnit":"ns","traceEvents":["#)?;
    let mut first = true;
    let mut event = |w: &mut W, v: Value| -> io::Result<()> {
        if !std::mem::take(&mut first) {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, &v).map_err(io::Error::other)
    };
    for r in records {
        let t = a.track(&r);
        named.entry(t.tid()).or_insert_with(|| t.name());
        let name = match t.side() {
            "" => r.op.name().to_string(),
            side => format!("{side} {}", r.op.name()),
        };
        let args = json!({ "fd": r.fd, "arg": r.arg_text(), "ret": r.ret_text() });
        let v = if r.op == Op::EpollWait {
            json!({
                "name": name, "cat": "poller", "ph": "X", "pid": 1, "tid": t.tid(),
                "ts": us(prev_ns), "dur": us(r.at_ns - prev_ns), "args": args,
            })
        } else {
            json!({
                "name": name, "cat": t.side(), "ph": "i", "s": "t", "pid": 1, "tid": t.tid(),
                "ts": us(r.at_ns), "args": args,
            })
        };
        event(w, v)?;
        prev_ns = r.at_ns;
        n += 1;
    }
    event(
        w,
        json!({ "name": "process_name", "ph": "M", "pid": 1, "args": { "name": title } }),
    )?;
    for (tid, name) in named {
        event(
            w,
            json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": name } }),
        )?;
        event(
            w,
            json!({ "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": { "sort_index": tid } }),
        )?;
    }
    w.write_all(b"]}")?;
    Ok(n)
}

/// The size of one record in a spill file ([`spill`], [`unspill`]).
pub const SPILL_LEN: usize = 30;

/// Every [`Op`], by its discriminant (for reading a spilled record back).
const OPS: [Op; 27] = [
    Op::EpollCreate,
    Op::EpollCtl,
    Op::EpollWait,
    Op::Socketpair,
    Op::Pipe,
    Op::EventFd,
    Op::Socket,
    Op::Bind,
    Op::Listen,
    Op::Connect,
    Op::Accept,
    Op::LocalAddr,
    Op::PeerAddr,
    Op::TakeError,
    Op::SetLinger,
    Op::Read,
    Op::Write,
    Op::Shutdown,
    Op::Close,
    Op::Dup,
    Op::SetNonblocking,
    Op::Sleep,
    Op::Recv,
    Op::Poll,
    Op::FionRead,
    Op::GetStatusFlags,
    Op::SetStatusFlags,
];

/// A record as 30 bytes (little-endian time, op, fd, arg, result), for spilling a trace to a
/// file while the run goes on: a run's labels are known only at its end, and its calls need
/// not wait in memory until then.
pub fn spill(r: &Record) -> [u8; SPILL_LEN] {
    let mut b = [0u8; SPILL_LEN];
    b[0..8].copy_from_slice(&r.at_ns.to_le_bytes());
    b[8] = r.op as u8;
    b[9..13].copy_from_slice(&r.fd.to_le_bytes());
    b[13..21].copy_from_slice(&r.arg.to_le_bytes());
    let (tag, v) = match r.ret {
        Ok(v) => (0, v),
        Err(e) => (1, i64::from(e)),
    };
    b[21] = tag;
    b[22..30].copy_from_slice(&v.to_le_bytes());
    b
}

/// The record [`spill`] wrote, or `None` for bytes it cannot have written.
pub fn unspill(b: &[u8; SPILL_LEN]) -> Option<Record> {
    let word = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let v = word(22);
    Some(Record {
        at_ns: word(0) as u64,
        op: *OPS.get(usize::from(b[8]))?,
        fd: Fd::from_le_bytes(b[9..13].try_into().expect("4 bytes")),
        arg: word(13),
        ret: match b[21] {
            0 => Ok(v),
            1 => Err(i32::try_from(v).ok()?),
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::{spill, unspill, OPS};
    use netpoll_sim::trace::Record;

    #[test]
    fn every_op_reads_back_from_its_discriminant() {
        for (i, &op) in OPS.iter().enumerate() {
            assert_eq!(op as usize, i, "{op:?}");
        }
    }

    #[test]
    fn a_spilled_record_reads_back_the_same() {
        for (k, &op) in OPS.iter().enumerate() {
            let k = k as i64;
            for ret in [Ok(k * 1_000_003), Err(11), Err(0), Ok(-1)] {
                let r = Record {
                    at_ns: 123_456_789_000 + k as u64,
                    op,
                    fd: k as i32 - 3,
                    arg: (2 << 32) | k,
                    ret,
                };
                assert_eq!(unspill(&spill(&r)), Some(r));
            }
        }
        let mut bad = spill(&Record {
            at_ns: 0,
            op: OPS[0],
            fd: 0,
            arg: 0,
            ret: Ok(0),
        });
        bad[8] = 200;
        assert_eq!(unspill(&bad), None);
    }
}

//! Traces people can read: Chrome/Perfetto trace-event JSON (open it in `ui.perfetto.dev` or
//! `chrome://tracing`) and a compact text form (pinned by the insta snapshots).
//!
//! Tracks: one for the poller (`epoll_create1`, `epoll_ctl`, `epoll_wait`, the last shown as a
//! slice from the previous call to its return: the time the loop slept), one for the listener,
//! and one per connection, holding the calls on both its client and its server descriptor.
//! Timestamps are virtual time (microseconds in the JSON, as the format wants).

use std::collections::BTreeMap;

use netpoll::Fd;
use netpoll_sim::trace::{Op, Record};

pub use netpoll_sim::trace::errno_name;
use serde_json::{json, Value};

/// An fd's owner, recorded when `Spec::label_fds` (crate::engine) is set: `(virtual ns, fd, connection
/// index, is the server's end)`.
pub type FdLabel = (u64, Fd, usize, bool);

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

/// Assigns every record its track, following descriptor reuse: a `socket` or `accept4` that
/// returns fd N takes fd N's next label.
pub fn assign(records: &[Record], labels: &[FdLabel]) -> Vec<Track> {
    let mut queued: BTreeMap<Fd, std::collections::VecDeque<(usize, bool)>> = BTreeMap::new();
    for &(_, fd, conn, server) in labels {
        queued.entry(fd).or_default().push_back((conn, server));
    }
    let mut current: BTreeMap<Fd, Track> = BTreeMap::new();
    let mut epfds: Vec<Fd> = Vec::new();
    let mut listener_seen = false;
    records
        .iter()
        .map(|r| {
            let created = match (r.op, r.ret) {
                // The wake eventfd of a netpoller is the poller's too.
                (Op::EpollCreate | Op::EventFd, Ok(fd)) => {
                    epfds.push(fd as Fd);
                    return Track::Poller;
                }
                (Op::Socket, Ok(fd)) => Some(fd as Fd),
                (Op::Accept, Ok(fd)) => Some(fd as Fd),
                _ => None,
            };
            if let Some(fd) = created {
                // The first socket is the listener; every later one, and every accepted
                // connection, is a labelled connection end.
                let track = if r.op == Op::Socket && !listener_seen {
                    listener_seen = true;
                    Track::Listener
                } else {
                    match queued.get_mut(&fd).and_then(|q| q.pop_front()) {
                        Some((n, s)) => Track::Conn(n, s),
                        None => Track::Other(fd),
                    }
                };
                current.insert(fd, track);
                // An accept's record is on the listener's track (a failed one already is).
                return if r.op == Op::Accept {
                    current.get(&r.fd).copied().unwrap_or(Track::Other(r.fd))
                } else {
                    track
                };
            }
            if epfds.contains(&r.fd) {
                return Track::Poller;
            }
            current.get(&r.fd).copied().unwrap_or(Track::Other(r.fd))
        })
        .collect()
}

/// One call as text: `read(fd 7, 65536 bytes) -> EAGAIN` ([`Record::call_text`]).
pub fn call_text(r: &Record) -> String {
    r.call_text()
}

/// The trace as compact text, one call per line:
/// `virtual-ns  track  call(fd, arg) -> result`.
pub fn text(records: &[Record], labels: &[FdLabel]) -> String {
    let tracks = assign(records, labels);
    let mut out = String::new();
    for (r, t) in records.iter().zip(tracks) {
        let who = match t {
            Track::Conn(n, s) => format!("conn {n} {}", if s { "server" } else { "client" }),
            other => other.name(),
        };
        out.push_str(&format!(
            "{:>9} {:<16} {}(fd {}, {}) -> {}\n",
            r.at_ns,
            who,
            r.op.name(),
            r.fd,
            r.arg_text(),
            r.ret_text()
        ));
    }
    out
}

/// The trace as Chrome trace-event JSON.
pub fn chrome(records: &[Record], labels: &[FdLabel], title: &str) -> Value {
    let tracks = assign(records, labels);
    let mut events = Vec::with_capacity(records.len() + 16);
    let mut named: BTreeMap<u64, String> = BTreeMap::new();
    let us = |ns: u64| ns as f64 / 1000.0;
    let mut prev_ns = 0;
    for (r, t) in records.iter().zip(tracks) {
        named.entry(t.tid()).or_insert_with(|| t.name());
        let name = match t.side() {
            "" => r.op.name().to_string(),
            side => format!("{side} {}", r.op.name()),
        };
        let args = json!({ "fd": r.fd, "arg": r.arg_text(), "ret": r.ret_text() });
        if r.op == Op::EpollWait {
            events.push(json!({
                "name": name, "cat": "poller", "ph": "X", "pid": 1, "tid": t.tid(),
                "ts": us(prev_ns), "dur": us(r.at_ns - prev_ns), "args": args,
            }));
        } else {
            events.push(json!({
                "name": name, "cat": t.side(), "ph": "i", "s": "t", "pid": 1, "tid": t.tid(),
                "ts": us(r.at_ns), "args": args,
            }));
        }
        prev_ns = r.at_ns;
    }
    events.push(json!({ "name": "process_name", "ph": "M", "pid": 1, "args": { "name": title } }));
    for (tid, name) in named {
        events.push(json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": name } }));
        events.push(json!({ "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": { "sort_index": tid } }));
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ns" })
}

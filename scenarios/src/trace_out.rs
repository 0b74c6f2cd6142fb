//! Traces people can read: Chrome/Perfetto trace-event JSON (open it in `ui.perfetto.dev` or
//! `chrome://tracing`) and a compact text form (pinned by the insta snapshots).
//!
//! Tracks: one for the poller (`epoll_create1`, `epoll_ctl`, `epoll_wait`, the last shown as a
//! slice from the previous call to its return: the time the loop slept), one for the listener,
//! and one per connection, holding the calls on both its client and its server descriptor.
//! Timestamps are virtual time (microseconds in the JSON, as the format wants).
//!
//! A run on simulated threads (`rt-echo --workers N`, the `zoo-mt-*` races) is traced by thread
//! instead ([`write_chrome_threads`], [`write_text_threads`]): each call carries the thread that
//! made it ([`Mark`], taken by the trace sink as the call is made), and the run's [`Schedule`]
//! (the scheduler's switch points, the same data as the failure report's table) gives the
//! interleaving. The Chrome trace has one track per simulated thread (`t2 netpoll-worker-1`),
//! each holding that thread's calls (instants, the descriptor's owner in the args), its switch
//! points, a `running` slice for every span in which it held the token, and a `blocked in ...`
//! slice from each blocking call to its next span. Since several threads' calls share one
//! instant of virtual time, the time axis of such a trace is the schedule's order: one
//! microsecond per schedule entry or call; each call's args give its virtual time, and a
//! `virtual time (ns)` counter track follows it.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};

use netpoll::Fd;
use netpoll_sim::trace::{Op, Record};
use netpoll_threads::Step;
use serde_json::{json, Value};

/// An fd's owner, recorded when `Spec::label_fds` (crate::engine) is set: `(virtual ns, fd, connection
/// index, is the server's end)`.
pub type FdLabel = (u64, Fd, usize, bool);

pub use netpoll_sim::trace::errno_name;

/// The simulated thread that made a call, and where in the run's [`Schedule`] the call came:
/// after its first `after` entries (and before the next). A trace sink takes it as each call is
/// made ([`Mark::here`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The thread's id (`t2` is 2), its index in [`Schedule::names`].
    pub tid: u32,
    /// How many schedule entries came before the call.
    pub after: u64,
}

impl Mark {
    /// The calling thread's mark, or `None` if it is not a simulated thread (a run on one
    /// thread, or a call made outside the run's threads). Cheap enough for a trace sink: a
    /// thread-local read, no lock ([`netpoll_threads::schedule_point`]).
    ///
    /// ```
    /// assert_eq!(netpoll_scenarios::trace_out::Mark::here(), None);
    /// ```
    pub fn here() -> Option<Mark> {
        netpoll_threads::schedule_point().map(|(t, after)| Mark { tid: t.0, after })
    }
}

/// A run's schedule on simulated threads, for its trace: each thread's name by id, and the
/// scheduler's entries in order ([`netpoll_threads::Report::schedule`], or a failure's).
///
/// ```
/// use netpoll_scenarios::trace_out::Schedule;
///
/// let s = Schedule { names: vec!["main".into(), "netpoll-worker-0".into()], entries: vec![] };
/// assert_eq!(s.track_name(1), "t1 netpoll-worker-0");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Thread names by id (`t0` is `main`).
    pub names: Vec<String>,
    /// The entries, in the order they happened.
    pub entries: Vec<Step>,
}

impl From<&netpoll_threads::Report> for Schedule {
    /// A finished run's schedule.
    fn from(r: &netpoll_threads::Report) -> Schedule {
        Schedule {
            names: r.thread_names().to_vec(),
            entries: r.schedule().to_vec(),
        }
    }
}

impl From<&netpoll_threads::Failure> for Schedule {
    /// A failed run's schedule, up to the failure.
    fn from(f: &netpoll_threads::Failure) -> Schedule {
        Schedule {
            names: f.threads.iter().map(|t| t.name.clone()).collect(),
            entries: f.schedule.clone(),
        }
    }
}

impl Schedule {
    /// Thread `tid`'s track name: `t2 netpoll-worker-1`, as the failure report's table heads
    /// its columns.
    pub fn track_name(&self, tid: u32) -> String {
        match self.names.get(tid as usize) {
            Some(n) => format!("t{tid} {n}"),
            None => format!("t{tid}"),
        }
    }
}

/// The track of calls made by no simulated thread (before or after a threaded run).
const NO_THREAD: &str = "no thread";
/// Its Chrome `tid`; a simulated thread `tN` has `N + 1`.
const NO_THREAD_TID: u64 = 1_000_000;

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

    /// The owner as the text form names it: `conn 3 server`, `poller`, `fd 9`.
    fn owner(self) -> String {
        match self {
            Track::Conn(n, s) => format!("conn {n} {}", if s { "server" } else { "client" }),
            other => other.name(),
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
    text_lines(records.into_iter().map(|r| (r, None)), labels, None, w)
}

/// [`write_text`] for a run on simulated threads: each line names, after the virtual time,
/// the thread that made the call (`t2 netpoll-worker-1`; `no thread` for a call made outside
/// the run's threads). Returns the number of calls written.
///
/// ```
/// use netpoll_sim::trace::{Op, Record};
/// use netpoll_scenarios::trace_out::{self, Mark, Schedule};
///
/// let r = Record { at_ns: 5, op: Op::Read, fd: 7, arg: 64, ret: Err(11) };
/// let s = Schedule { names: vec!["main".into(), "reader".into()], entries: vec![] };
/// let mut out = Vec::new();
/// trace_out::write_text_threads([(r, Some(Mark { tid: 1, after: 0 }))], &[], &s, &mut out)
///     .unwrap();
/// let line = String::from_utf8(out).unwrap();
/// assert!(line.contains(" t1 reader "), "{line}");
/// ```
///
/// # Errors
/// `w`'s.
pub fn write_text_threads<W: Write>(
    records: impl IntoIterator<Item = (Record, Option<Mark>)>,
    labels: &[FdLabel],
    schedule: &Schedule,
    w: &mut W,
) -> io::Result<u64> {
    text_lines(records, labels, Some(schedule), w)
}

/// The text form, with a thread column when there is a schedule.
fn text_lines<W: Write>(
    records: impl IntoIterator<Item = (Record, Option<Mark>)>,
    labels: &[FdLabel],
    schedule: Option<&Schedule>,
    w: &mut W,
) -> io::Result<u64> {
    let mut a = Assigner::new(labels);
    let mut n = 0;
    for (r, mark) in records {
        let who = a.track(&r).owner();
        write!(w, "{:>9} ", r.at_ns)?;
        if let Some(s) = schedule {
            let thread = mark.map_or_else(|| NO_THREAD.to_owned(), |m| s.track_name(m.tid));
            write!(w, "{thread:<20} ")?;
        }
        writeln!(
            w,
            "{:<16} {}(fd {}, {}) -> {}",
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
    let mut out = Events::begin(w)?;
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
        out.event(&v)?;
        prev_ns = r.at_ns;
        n += 1;
    }
    out.end(title, named)?;
    Ok(n)
}

/// The trace of a run on simulated threads as Chrome trace-event JSON (see the module's
/// documentation): one track per thread of `schedule`, with its calls, switch points, `running`
/// and `blocked in` slices, in the schedule's order. `records` come in call order, each with
/// the [`Mark`] of the thread that made it. Returns the number of calls written.
///
/// ```
/// use netpoll_sim::trace::{Op, Record};
/// use netpoll_scenarios::trace_out::{self, Mark, Schedule};
/// use netpoll_threads::{Call, Step, Tid};
///
/// // Thread t0 reaches its switch point for a read, then makes it.
/// let entry = Step { step: 1, tid: Tid(0), call: Call::on("read", 7, 64), blocked: false };
/// let s = Schedule { names: vec!["main".into()], entries: vec![entry] };
/// let r = Record { at_ns: 5, op: Op::Read, fd: 7, arg: 64, ret: Err(11) };
/// let mut out = Vec::new();
/// let mark = Mark { tid: 0, after: 1 };
/// trace_out::write_chrome_threads([(r, Some(mark))], &[], &s, "demo", &mut out).unwrap();
/// let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
/// let ev = v["traceEvents"].as_array().unwrap();
/// // The switch point at tick 0, the call at tick 1, one span of t0 (track 1) over both.
/// assert!(ev.iter().any(|e| e["name"] == "read(fd 7, 64)" && e["ts"] == 0));
/// assert!(ev.iter().any(|e| e["name"] == "read" && e["ts"] == 1 && e["tid"] == 1));
/// assert!(ev.iter().any(|e| e["name"] == "running" && e["ts"] == 0 && e["dur"] == 2));
/// ```
///
/// # Errors
/// `w`'s.
pub fn write_chrome_threads<W: Write>(
    records: impl IntoIterator<Item = (Record, Option<Mark>)>,
    labels: &[FdLabel],
    schedule: &Schedule,
    title: &str,
    w: &mut W,
) -> io::Result<u64> {
    let mut a = Assigner::new(labels);
    let mut out = Events::begin(w)?;
    let mut tl = Timeline::new(schedule);
    let mut n = 0;
    let mut outside = false;
    let mut shown_ns = None;
    for (r, mark) in records {
        if let Some(m) = mark {
            tl.entries_until(m.after, &mut out)?;
        }
        let tick = tl.tick(mark.map(|m| m.tid), &mut out)?;
        let owner = a.track(&r).owner();
        let tid = match mark {
            Some(m) => u64::from(m.tid) + 1,
            None => {
                outside = true;
                NO_THREAD_TID
            }
        };
        if shown_ns != Some(r.at_ns) {
            shown_ns = Some(r.at_ns);
            out.event(&json!({
                "name": "virtual time (ns)", "ph": "C", "pid": 1, "ts": tick,
                "args": { "ns": r.at_ns },
            }))?;
        }
        out.event(&json!({
            "name": r.op.name(), "cat": "call", "ph": "i", "s": "t", "pid": 1, "tid": tid,
            "ts": tick,
            "args": {
                "fd": r.fd, "arg": r.arg_text(), "ret": r.ret_text(), "owner": owner,
                "virtual ns": r.at_ns,
            },
        }))?;
        n += 1;
    }
    tl.entries_until(schedule.entries.len() as u64, &mut out)?;
    tl.finish(&mut out)?;
    let mut named: BTreeMap<u64, String> = (0..schedule.names.len() as u32)
        .map(|t| (u64::from(t) + 1, schedule.track_name(t)))
        .collect();
    if outside {
        named.insert(NO_THREAD_TID, NO_THREAD.to_owned());
    }
    out.end(title, named)?;
    Ok(n)
}

/// The schedule laid out on a threaded trace's time axis: one tick (a microsecond) per
/// schedule entry or call, a `running` slice per span of ticks in which one thread held the
/// token, a `blocked in` slice from each blocking entry to its thread's next span.
struct Timeline<'s> {
    schedule: &'s Schedule,
    /// The next schedule entry to lay out.
    next: usize,
    /// The next tick.
    tick: u64,
    /// The span running now: its thread, first tick, and calls.
    span: Option<(u32, u64, u64)>,
    /// Threads blocked now, by id: since which tick, in which call.
    blocked: BTreeMap<u32, (u64, String)>,
}

impl<'s> Timeline<'s> {
    fn new(schedule: &'s Schedule) -> Timeline<'s> {
        Timeline {
            schedule,
            next: 0,
            tick: 0,
            span: None,
            blocked: BTreeMap::new(),
        }
    }

    /// Lays out the schedule's entries up to (not including) entry `until`.
    fn entries_until<W: Write>(&mut self, until: u64, out: &mut Events<'_, W>) -> io::Result<()> {
        let until = (until as usize).min(self.schedule.entries.len());
        while self.next < until {
            let e = self.schedule.entries[self.next];
            self.next += 1;
            let tick = self.tick(Some(e.tid.0), out)?;
            let (name, cat) = if e.blocked {
                (format!("{} blocks", e.call), "block")
            } else {
                (e.call.to_string(), "switch")
            };
            out.event(&json!({
                "name": name, "cat": cat, "ph": "i", "s": "t", "pid": 1,
                "tid": u64::from(e.tid.0) + 1, "ts": tick, "args": { "step": e.step },
            }))?;
            if e.blocked {
                self.close_span(self.tick, out)?;
                self.blocked
                    .insert(e.tid.0, (self.tick, format!("blocked in {}", e.call)));
            }
        }
        Ok(())
    }

    /// Takes the next tick for an event of thread `tid` (`None`: no simulated thread's),
    /// ending the running span if another thread runs now.
    fn tick<W: Write>(&mut self, tid: Option<u32>, out: &mut Events<'_, W>) -> io::Result<u64> {
        let tick = self.tick;
        self.tick += 1;
        if let Some(t) = tid {
            match &mut self.span {
                Some((running, _, calls)) if *running == t => *calls += 1,
                _ => {
                    self.close_span(tick, out)?;
                    if let Some((since, name)) = self.blocked.remove(&t) {
                        out.event(&json!({
                            "name": name, "cat": "blocked", "ph": "X", "pid": 1,
                            "tid": u64::from(t) + 1, "ts": since, "dur": tick - since,
                        }))?;
                    }
                    self.span = Some((t, tick, 1));
                }
            }
        }
        Ok(tick)
    }

    /// Ends the running span, if any, before tick `end`.
    fn close_span<W: Write>(&mut self, end: u64, out: &mut Events<'_, W>) -> io::Result<()> {
        if let Some((t, from, events)) = self.span.take() {
            out.event(&json!({
                "name": "running", "cat": "schedule", "ph": "X", "pid": 1,
                "tid": u64::from(t) + 1, "ts": from, "dur": end - from,
                "args": { "events": events },
            }))?;
        }
        Ok(())
    }

    /// Ends the last span, and shows the threads still blocked (a deadlock's) up to the end.
    fn finish<W: Write>(mut self, out: &mut Events<'_, W>) -> io::Result<()> {
        self.close_span(self.tick, out)?;
        // One end for all, at least a tick after the last block (a deadlock's last entry).
        let end = self.blocked.values().map(|&(since, _)| since + 1).max();
        let end = end.unwrap_or(0).max(self.tick);
        for (t, (since, name)) in std::mem::take(&mut self.blocked) {
            out.event(&json!({
                "name": name, "cat": "blocked", "ph": "X", "pid": 1,
                "tid": u64::from(t) + 1, "ts": since, "dur": end - since,
            }))?;
        }
        Ok(())
    }
}

/// Chrome trace-event JSON written one event at a time:
/// `{"displayTimeUnit":"ns","traceEvents":[...]}`, a JSON object's keys in order, as serde_json
/// prints a `Value`.
struct Events<'w, W: Write> {
    w: &'w mut W,
    first: bool,
}

impl<'w, W: Write> Events<'w, W> {
    fn begin(w: &'w mut W) -> io::Result<Events<'w, W>> {
        w.write_all(br#"{"displayTimeUnit":"ns","traceEvents":["#)?;
        Ok(Events { w, first: true })
    }

    fn event(&mut self, v: &Value) -> io::Result<()> {
        if !std::mem::take(&mut self.first) {
            self.w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *self.w, v).map_err(io::Error::other)
    }

    /// The process's name, each track's name and order, and the end of the JSON.
    fn end(mut self, title: &str, tracks: BTreeMap<u64, String>) -> io::Result<()> {
        self.event(
            &json!({ "name": "process_name", "ph": "M", "pid": 1, "args": { "name": title } }),
        )?;
        for (tid, name) in tracks {
            self.event(
                &json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": name } }),
            )?;
            self.event(
                &json!({ "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": { "sort_index": tid } }),
            )?;
        }
        self.w.write_all(b"]}")
    }
}

/// The size of one record in a spill file ([`spill`], [`unspill`]).
pub const SPILL_LEN: usize = 43;

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

/// A record and its thread's mark as 43 bytes (little-endian time, op, fd, arg, result, then
/// whether there is a mark, its thread and its place in the schedule), for spilling a trace to
/// a file while the run goes on: a run's labels and schedule are known only at its end, and
/// its calls need not wait in memory until then.
pub fn spill(r: &Record, mark: Option<Mark>) -> [u8; SPILL_LEN] {
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
    if let Some(m) = mark {
        b[30] = 1;
        b[31..35].copy_from_slice(&m.tid.to_le_bytes());
        b[35..43].copy_from_slice(&m.after.to_le_bytes());
    }
    b
}

/// The record and mark [`spill`] wrote, or `None` for bytes it cannot have written.
pub fn unspill(b: &[u8; SPILL_LEN]) -> Option<(Record, Option<Mark>)> {
    let word = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let v = word(22);
    let r = Record {
        at_ns: word(0) as u64,
        op: *OPS.get(usize::from(b[8]))?,
        fd: Fd::from_le_bytes(b[9..13].try_into().expect("4 bytes")),
        arg: word(13),
        ret: match b[21] {
            0 => Ok(v),
            1 => Err(i32::try_from(v).ok()?),
            _ => return None,
        },
    };
    let mark = match b[30] {
        0 => None,
        1 => Some(Mark {
            tid: u32::from_le_bytes(b[31..35].try_into().expect("4 bytes")),
            after: word(35) as u64,
        }),
        _ => return None,
    };
    Some((r, mark))
}

#[cfg(test)]
mod tests {
    use super::{spill, unspill, Mark, OPS};
    use netpoll_sim::trace::Record;

    #[test]
    fn every_op_reads_back_from_its_discriminant() {
        for (i, &op) in OPS.iter().enumerate() {
            assert_eq!(op as usize, i, "{op:?}");
        }
    }

    /// Two threads: t0 blocks in a read, t1 writes, t0's read returns. The layout: each event
    /// one tick, a running span per turn, t0 blocked from its block to its next turn.
    #[test]
    fn the_timeline_lays_out_turns_and_blocks() {
        use super::{write_chrome_threads, Schedule};
        use netpoll_sim::trace::Op;
        use netpoll_threads::{Call, Step, Tid};
        let read = Call::on("read", 3, 8);
        let write = Call::on("write", 4, 1);
        let step = |step, t, call, blocked| Step {
            step,
            tid: Tid(t),
            call,
            blocked,
        };
        let s = Schedule {
            names: vec!["main".into(), "writer".into()],
            entries: vec![
                step(1, 0, read, false),
                step(2, 0, read, true),
                step(3, 1, write, false),
                step(4, 0, read, false),
            ],
        };
        let rec = |op, fd, ret| Record {
            at_ns: 0,
            op,
            fd,
            arg: 1,
            ret,
        };
        let calls = [
            (rec(Op::Write, 4, Ok(1)), Some(Mark { tid: 1, after: 3 })),
            (rec(Op::Read, 3, Ok(1)), Some(Mark { tid: 0, after: 4 })),
            (rec(Op::Close, 3, Ok(0)), None),
        ];
        let mut out = Vec::new();
        assert_eq!(
            write_chrome_threads(calls, &[], &s, "t", &mut out).unwrap(),
            3
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let slices: Vec<(String, u64, u64, u64)> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .map(|e| {
                let n = |k: &str| e[k].as_u64().unwrap();
                (
                    e["name"].as_str().unwrap().to_owned(),
                    n("tid"),
                    n("ts"),
                    n("dur"),
                )
            })
            .collect();
        // Ticks: 0 t0 switch, 1 t0 blocks, 2 t1 switch, 3 t1 write, 4 t0 switch, 5 t0 read,
        // 6 the close by no thread (t0's span goes on: no thread took the token).
        assert_eq!(
            slices,
            [
                ("running".to_owned(), 1, 0, 2),
                ("running".to_owned(), 2, 2, 2),
                ("blocked in read(fd 3, 8)".to_owned(), 1, 2, 2),
                ("running".to_owned(), 1, 4, 3),
            ]
        );
        let names: Vec<&str> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["t0 main", "t1 writer", "no thread"]);
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
                for mark in [
                    None,
                    Some(Mark {
                        tid: k as u32,
                        after: 1 << 40 | k as u64,
                    }),
                ] {
                    assert_eq!(unspill(&spill(&r, mark)), Some((r, mark)));
                }
            }
        }
        let r = Record {
            at_ns: 0,
            op: OPS[0],
            fd: 0,
            arg: 0,
            ret: Ok(0),
        };
        let mut bad = spill(&r, None);
        bad[8] = 200;
        assert_eq!(unspill(&bad), None);
        let mut bad = spill(&r, None);
        bad[30] = 2;
        assert_eq!(unspill(&bad), None);
    }
}

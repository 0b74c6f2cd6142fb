//! The bug zoo: small hand-written event loops, each with one real class of lost-wakeup bug,
//! shipped as fixtures that prove the framework finds such bugs by seed.
//!
//! Every zoo scenario runs one reactor (an echo server and its clients on one epoll instance,
//! in one thread, on the simulated kernel) with a deliberate bug, or, with `--param fixed=1`,
//! its corrected twin. The oracles are the crate's: the lost-wakeup scan at quiescence
//! ([`netpoll_sim::Sim::stranded`] against what the loop waits for), the hang oracle (the
//! kernel's `Deadlock` from `epoll_wait(-1)`), byte-for-byte integrity of every echo, deadline
//! accuracy, and leaks at the end.
//!
//! | scenario | the bug | what exposes it | found as |
//! |---|---|---|---|
//! | `zoo-et-partial-read` | an edge-triggered handler reads once per event (a buffer's worth) instead of until `EAGAIN` | a read cut short (`short_read` fault) or a message larger than the buffer | lost wakeup |
//! | `zoo-et-accept-one` | an edge-triggered listener accepts one connection per event | two handshakes completing before the loop collects the edge (deliveries on one instant: `quantum_ns`, bursts) | lost wakeup |
//! | `zoo-oneshot-no-rearm` | oneshot connections are re-armed after every read, but the path that flushes queued output on `EPOLLOUT` returns without re-arming | a write cut short (`short_write` fault), so output is queued | lost wakeup (oneshot disarmed) |
//! | `zoo-park-no-recheck` | a Go-style poll descriptor whose `park` overwrites the ready flag instead of re-checking it, so a notification that lands between the failed read and the park is lost | the scheduler polling between the two (`preempt-pct`) while the peer's next message arrives | lost wakeup |
//! | `zoo-timer-not-in-timeout` | the idle deadline is armed but the `epoll_wait` timeout ignores it (`-1`) | a client that stalls mid-message | hang, or a deadline fired late |
//!
//! The zoo has its own small loop (clients included) rather than switches in
//! [`crate::raw_epoll::EchoServer`]: the example server stays free of deliberate bugs, and a
//! 10-connection zoo run costs about 0.2 ms of CPU, so sweeps of thousands of seeds take seconds.
//! A hang whose cause is a stranded registration (the last delivery landed inside the blocking
//! `epoll_wait` that then found nothing to report) is reported as the lost wakeup it is.
//!
//! # The poll descriptor
//!
//! `zoo-park-no-recheck` serves each connection from a task (a state machine) that blocks on a
//! poll descriptor, as Go's `runtime/netpoll.go` does. The descriptor's read semaphore `rg` has
//! three states ([`Rg`]):
//!
//! ```text
//!   Idle --notify--> Ready           (an event came while nobody waits: remember it)
//!   Idle --park----> Waiting         (the task sleeps)
//!   Ready --park---> Idle            (correct: consume the notification and read again)
//!   Ready --park---> Waiting         (THE BUG: the notification is overwritten and lost)
//!   Waiting --notify--> Idle         (the task is made runnable)
//!   Waiting --park--> panic          ("double wait": only one task reads a descriptor)
//! ```
//!
//! Between a task's read that fails with `EAGAIN` and its park, the scheduler may run the
//! netpoller (with a 1 ms timeout: other threads run meanwhile), a seeded choice made with
//! probability `preempt-pct`. That is the window in which Go's netpoller, on another thread,
//! delivers the notification.
//!
//! # Not modelled
//!
//! One thread, one epoll instance, the simulated kernel only (no `--backend real`: the zoo
//! exists to be caught, and only the simulated kernel can be asked what is stranded).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{
    errno::*, errno_of, Events, EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_MOD, SOCK_CLOEXEC,
    SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Fd, Poller};
use netpoll_sim::Sim;

use crate::engine::pattern;
use crate::oracle::{io_fail, Failure};
use crate::params::{ParamSpec, CONNS, FAULTS, MSGS, SIZE};
use crate::raw_epoll::{timeout_ms, TICK_NS};
use crate::rng::{mix, Rng};
use crate::workload::{simulate, Kind, Request, Run, Workload};

/// Which bug a zoo scenario carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// ET connection handler reads once per event.
    EtPartialRead,
    /// ET listener accepts one connection per event.
    EtAcceptOne,
    /// Oneshot connection not re-armed after flushing queued output.
    OneshotNoRearm,
    /// Poll descriptor parks without re-checking its ready flag.
    ParkNoRecheck,
    /// The idle deadline is left out of the `epoll_wait` timeout.
    TimerNotInTimeout,
}

/// A zoo scenario: its registry entry and its bug.
#[derive(Debug)]
pub struct ZooScenario {
    /// The registry name (`netpoll-sim run NAME`).
    pub name: &'static str,
    /// One line: the bug.
    pub about: &'static str,
    /// Its parameters (`fixed` among them).
    pub params: &'static [ParamSpec],
    /// The bug (absent when `fixed=1`).
    pub bug: Bug,
}

impl Workload for ZooScenario {
    fn name(&self) -> &str {
        self.name
    }
    fn about(&self) -> &str {
        self.about
    }
    fn invariants(&self) -> &str {
        "with fixed=0 the oracles must catch the bug (lost wakeup or hang); with fixed=1 every oracle passes"
    }
    fn params(&self) -> &'static [ParamSpec] {
        self.params
    }
    fn real_ok(&self) -> bool {
        false
    }
    fn kind(&self) -> Kind {
        Kind::Zoo
    }
    fn run(&self, req: &Request, trace: bool) -> Run {
        go(self, req, trace)
    }
}

/// The parameter that selects the corrected twin.
pub const FIXED: &str = "fixed";

const fn p_conns() -> ParamSpec {
    ParamSpec::new(CONNS, 10, 1, 10_000, "connections")
}
const fn p_msgs() -> ParamSpec {
    ParamSpec::new(MSGS, 10, 1, 1_000_000, "messages per connection")
}
const fn p_size(d: u64) -> ParamSpec {
    ParamSpec::new(SIZE, d, 1, 1 << 20, "bytes per message")
}
const P_FIXED: ParamSpec = ParamSpec::new(FIXED, 0, 0, 1, "1: run the corrected loop");

static ET_READ: &[ParamSpec] = &[
    p_conns(),
    p_msgs(),
    p_size(64),
    P_FIXED,
    FAULTS,
    ParamSpec::new(
        "read-buf",
        4096,
        1,
        65_536,
        "bytes the handler reads per call",
    ),
];
static PLAIN: &[ParamSpec] = &[p_conns(), p_msgs(), p_size(64), P_FIXED, FAULTS];
static PARK: &[ParamSpec] = &[
    p_conns(),
    p_msgs(),
    p_size(64),
    P_FIXED,
    FAULTS,
    ParamSpec::new(
        "preempt-pct",
        30,
        0,
        100,
        "chance (%) the netpoller runs between a failed read and the park",
    ),
];
static TIMER: &[ParamSpec] = &[
    p_conns(),
    p_msgs(),
    p_size(64),
    P_FIXED,
    FAULTS,
    ParamSpec::new(
        "stall-pct",
        20,
        0,
        100,
        "share of clients (%) that stop mid-message",
    ),
    ParamSpec::new("deadline-ms", 50, 1, 60_000, "the server's idle deadline"),
];

const fn zoo(
    name: &'static str,
    about: &'static str,
    params: &'static [ParamSpec],
    bug: Bug,
) -> ZooScenario {
    ZooScenario {
        name,
        about,
        params,
        bug,
    }
}

/// The zoo, in `list` order.
pub static ZOO: [ZooScenario; 5] = [
    zoo(
        "zoo-et-partial-read",
        "BUG: an edge-triggered handler reads once per event instead of until EAGAIN",
        ET_READ,
        Bug::EtPartialRead,
    ),
    zoo(
        "zoo-et-accept-one",
        "BUG: an edge-triggered listener accepts one connection per event",
        PLAIN,
        Bug::EtAcceptOne,
    ),
    zoo(
        "zoo-oneshot-no-rearm",
        "BUG: a oneshot connection is not re-armed after its queued output is flushed",
        PLAIN,
        Bug::OneshotNoRearm,
    ),
    zoo(
        "zoo-park-no-recheck",
        "BUG: a Go-style poll descriptor parks without re-checking its ready flag",
        PARK,
        Bug::ParkNoRecheck,
    ),
    zoo(
        "zoo-timer-not-in-timeout",
        "BUG: an idle deadline is armed but left out of the epoll_wait timeout",
        TIMER,
        Bug::TimerNotInTimeout,
    ),
];

/// The zoo scenario named `name`.
pub fn find(name: &str) -> Option<&'static ZooScenario> {
    ZOO.iter().find(|z| z.name == name)
}

fn go(z: &ZooScenario, req: &Request, trace: bool) -> Run {
    let p = &req.params;
    let cfg = Cfg {
        bug: (p.get(FIXED) == 0).then_some(z.bug),
        kind: z.bug,
        conns: p.get(CONNS) as usize,
        msgs: p.get(MSGS),
        size: p.get(SIZE),
        read_buf: p.try_get("read-buf").unwrap_or(65_536) as usize,
        preempt_pct: p.try_get("preempt-pct").unwrap_or(0),
        stall_pct: p.try_get("stall-pct").unwrap_or(0),
        deadline_ns: p.try_get("deadline-ms").map(|ms| ms * 1_000_000),
    };
    simulate(req, trace, |k, stats| {
        let mut zr = Zoo::new(k, cfg, req.seed)?;
        let v = zr.run();
        stats.bytes = zr.bytes;
        stats.bytes_sent = zr.bytes_sent;
        stats.epoll_events = zr.epoll_events;
        stats.quiescence_checks = zr.scans;
        stats.closed_idle = zr.closed_idle;
        stats.max_late_ns = zr.max_late_ns;
        v
    })
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    /// The bug in force (`None`: the fixed twin).
    bug: Option<Bug>,
    /// Which loop runs (the bug's family, fixed or not).
    kind: Bug,
    conns: usize,
    msgs: u64,
    size: u64,
    read_buf: usize,
    preempt_pct: u64,
    stall_pct: u64,
    deadline_ns: Option<u64>,
}

const LISTENER: u64 = 1 << 62;
const SERVER: u64 = 2 << 62;
const CLIENT: u64 = 3 << 62;
const MASK: u64 = 3 << 62;
const READISH: Events = Events::IN
    .union(Events::RDHUP)
    .union(Events::HUP)
    .union(Events::ERR);

/// A poll descriptor's read semaphore (see the module docs for its transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rg {
    /// No notification pending, nobody waiting.
    Idle,
    /// A notification came while nobody waited.
    Ready,
    /// The connection's task is parked on it.
    Waiting,
}

#[derive(Debug)]
struct SConn {
    fd: Fd,
    /// Output not yet written.
    out: Vec<u8>,
    eof: bool,
    /// Idle deadline (timer loop): pushed back by each read.
    deadline_ns: u64,
    rg: Rg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Active,
    /// Stopped sending mid-message; waits for the server's close.
    Stalled,
    Done,
}

#[derive(Debug)]
struct Client {
    fd: Fd,
    phase: Phase,
    key: u64,
    sent: u64,
    recv: u64,
    /// Bytes it sends in all (a staller stops early).
    send_total: u64,
}

struct Zoo<'k> {
    k: &'k Sim,
    cfg: Cfg,
    ep: Fd,
    listener: Fd,
    addr: SocketAddrV4,
    conns: Vec<Option<SConn>>,
    open: usize,
    clients: Vec<Client>,
    done: usize,
    /// Poll-descriptor tasks ready to run.
    runq: VecDeque<usize>,
    /// (deadline, slot), lazily checked.
    deadlines: BinaryHeap<Reverse<(u64, usize)>>,
    rng: Rng,
    buf: Vec<u8>,
    bytes: u64,
    bytes_sent: u64,
    epoll_events: u64,
    scans: u64,
    closed_idle: u64,
    max_late_ns: u64,
}

impl<'k> Zoo<'k> {
    fn new(k: &'k Sim, cfg: Cfg, seed: u64) -> Result<Zoo<'k>, Failure> {
        let ep = k
            .epoll_create1(EPOLL_CLOEXEC)
            .map_err(|e| io_fail("epoll_create1", e))?;
        let listener = k
            .tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC)
            .map_err(|e| io_fail("socket", e))?;
        k.bind(listener, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| io_fail("bind", e))?;
        k.listen(listener, 1024).map_err(|e| io_fail("listen", e))?;
        let interest = if cfg.kind == Bug::EtAcceptOne {
            Events::IN | Events::ET
        } else {
            Events::IN
        };
        k.epoll_ctl(
            ep,
            EPOLL_CTL_ADD,
            listener,
            Some(EpollEvent::new(interest, LISTENER)),
        )
        .map_err(|e| io_fail("epoll_ctl ADD listener", e))?;
        let addr = k
            .local_addr(listener)
            .map_err(|e| io_fail("getsockname", e))?;
        let mut rng = Rng::new(seed, 7);
        let per_conn = cfg.msgs * cfg.size;
        let clients = (0..cfg.conns)
            .map(|i| {
                let send_total = if cfg.stall_pct > 0 && rng.chance(cfg.stall_pct, 100) {
                    rng.range(0, cfg.msgs - 1) * cfg.size + rng.range(1, cfg.size.max(2) - 1)
                } else {
                    per_conn
                };
                Client {
                    fd: -1,
                    phase: Phase::Connecting,
                    key: mix(seed ^ mix(i as u64 + 1)),
                    sent: 0,
                    recv: 0,
                    send_total: send_total.min(per_conn),
                }
            })
            .collect();
        Ok(Zoo {
            k,
            cfg,
            ep,
            listener,
            addr,
            conns: Vec::new(),
            open: 0,
            clients,
            done: 0,
            runq: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            rng,
            buf: vec![0; 64 * 1024],
            bytes: 0,
            bytes_sent: 0,
            epoll_events: 0,
            scans: 0,
            closed_idle: 0,
            max_late_ns: 0,
        })
    }

    fn bug(&self, b: Bug) -> bool {
        self.cfg.bug == Some(b)
    }

    fn now_ns(&self) -> u64 {
        self.k.now_ns()
    }

    fn run(&mut self) -> Result<(), Failure> {
        for i in 0..self.clients.len() {
            self.connect(i)?;
        }
        let mut instant = (u64::MAX, 0u32);
        loop {
            while let Some(slot) = self.runq.pop_front() {
                self.task(slot)?;
            }
            if self.done == self.clients.len() && self.open == 0 {
                break;
            }
            let now = self.now_ns();
            if instant.0 == now {
                instant.1 += 1;
                if instant.1 > 100_000 {
                    return Err(self.hang("livelock: 100,000 turns without time passing"));
                }
            } else {
                instant = (now, 0);
            }
            if now > 3_600_000_000_000 {
                return Err(self.hang("more than an hour of virtual time passed"));
            }
            let timeout = match self.deadlines.peek() {
                // The bug: the loop's timeout was written before idle deadlines existed.
                Some(_) if self.bug(Bug::TimerNotInTimeout) => -1,
                Some(&Reverse((d, _))) => timeout_ms(d, now),
                None => -1,
            };
            if timeout != 0 {
                self.quiescence()?;
            }
            self.netpoll(timeout)?;
            self.on_time()?;
        }
        // Let the last FINs land; then nothing but the listener and epoll may be open.
        let mut evs = [EpollEvent::EMPTY; 8];
        let mut guard = 0;
        while self.k.pending() > 0 && guard < 100_000 {
            guard += 1;
            self.k
                .epoll_wait(self.ep, &mut evs, 1000)
                .map_err(|e| io_fail("draining", e))?;
        }
        let open = self.k.open_files();
        if open != 2 {
            return Err(Failure::Invariant(format!(
                "{open} files are open after the run; expected 2"
            )));
        }
        self.k
            .close(self.listener)
            .map_err(|e| io_fail("close", e))?;
        self.k.close(self.ep).map_err(|e| io_fail("close", e))
    }

    fn hang(&self, why: &str) -> Failure {
        let left = self
            .clients
            .iter()
            .filter(|c| c.phase != Phase::Done)
            .count();
        let mut detail = format!(
            "{why}; {left} of {} clients not done, {} server connections open",
            self.clients.len(),
            self.open
        );
        if let Some((i, c)) = self
            .clients
            .iter()
            .enumerate()
            .find(|(_, c)| c.phase != Phase::Done)
        {
            detail.push_str(&format!(
                "; first unfinished: client {i} (fd {}, {:?}, sent {}/{} bytes, read {} bytes)",
                c.fd, c.phase, c.sent, c.send_total, c.recv
            ));
        }
        if !self.deadlines.is_empty() {
            detail.push_str(&format!("; {} deadlines armed", self.deadlines.len()));
        }
        Failure::Hang {
            detail,
            at_ns: self.now_ns(),
        }
    }

    /// One `epoll_wait` and the dispatch of what it reports (also the poll descriptors'
    /// netpoller).
    fn netpoll(&mut self, timeout: i32) -> Result<(), Failure> {
        let mut evs = [EpollEvent::EMPTY; 64];
        let n = match self.k.epoll_wait(self.ep, &mut evs, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Deadlock => {
                // The kernel delivered what was in flight inside this call and found nothing to
                // report: if a registration is stranded, that is the cause, not just a hang.
                self.quiescence()?;
                return Err(self.hang(&format!("epoll_wait would block for ever ({e})")));
            }
            Err(e) if errno_of(&e) == Some(EINTR) => return Ok(()),
            Err(e) => return Err(io_fail("epoll_wait", e)),
        };
        self.epoll_events += n as u64;
        for ev in &evs[..n] {
            let id = (ev.data & 0xffff_ffff) as usize;
            match ev.data & MASK {
                LISTENER => self.accept()?,
                SERVER => self.server_event(id, ev.events)?,
                CLIENT => self.client_event(id, ev.events)?,
                _ => return Err(Failure::Invariant(format!("unknown token {:#x}", ev.data))),
            }
        }
        Ok(())
    }

    /// The lost-wakeup oracle, before a sleep with nothing in flight.
    fn quiescence(&mut self) -> Result<(), Failure> {
        if self.k.pending() > 0 {
            return Ok(());
        }
        self.scans += 1;
        let stranded = self
            .k
            .stranded(self.ep)
            .map_err(|e| io_fail("stranded()", e))?;
        for s in stranded {
            let wants = self.wants(s.data);
            if (s.ready & wants).is_empty() {
                continue;
            }
            let id = s.data & 0xffff_ffff;
            let owner = match s.data & MASK {
                LISTENER => "the listener".to_string(),
                SERVER => format!("server connection {id}"),
                _ => format!("client {id}"),
            };
            return Err(Failure::LostWakeup {
                fd: s.fd,
                data: s.data,
                owner,
                interest: s.interest,
                ready: s.ready,
                wants,
                disarmed: s.disarmed,
                at_ns: self.now_ns(),
                history: self.k.history(s.fd),
            });
        }
        Ok(())
    }

    /// What the loop waits for on the registration `data`.
    fn wants(&self, data: u64) -> Events {
        let id = (data & 0xffff_ffff) as usize;
        match data & MASK {
            LISTENER => Events::IN,
            SERVER => match self.conns.get(id).and_then(Option::as_ref) {
                None => Events::NONE,
                Some(c) => {
                    let mut w = Events::NONE;
                    let reading = match self.cfg.kind {
                        Bug::ParkNoRecheck => c.rg == Rg::Waiting,
                        _ => !c.eof,
                    };
                    if reading {
                        w |= READISH;
                    }
                    if !c.out.is_empty() {
                        w |= Events::OUT | Events::ERR | Events::HUP;
                    }
                    w
                }
            },
            _ => match self.clients.get(id) {
                Some(c) => match c.phase {
                    Phase::Connecting => Events::OUT | Events::ERR | Events::HUP,
                    Phase::Active | Phase::Stalled => {
                        let mut w = READISH;
                        if c.sent < self.send_target(c) {
                            w |= Events::OUT;
                        }
                        w
                    }
                    Phase::Done => Events::NONE,
                },
                None => Events::NONE,
            },
        }
    }

    // ---- the server ----

    fn accept(&mut self) -> Result<(), Failure> {
        loop {
            let fd = match self.k.accept4(self.listener, SOCK_NONBLOCK | SOCK_CLOEXEC) {
                Ok((fd, _)) => fd,
                Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                Err(e) if errno_of(&e) == Some(ECONNABORTED) => continue,
                Err(e) => return Err(io_fail("accept4", e)),
            };
            let slot = self.conns.len();
            let deadline_ns = match self.cfg.deadline_ns {
                Some(t) => {
                    let d = self.now_ns() + t;
                    self.deadlines.push(Reverse((d, slot)));
                    d
                }
                None => 0,
            };
            self.conns.push(Some(SConn {
                fd,
                out: Vec::new(),
                eof: false,
                deadline_ns,
                rg: Rg::Idle,
            }));
            self.open += 1;
            let interest = match self.cfg.kind {
                Bug::OneshotNoRearm => Events::IN | Events::RDHUP | Events::ONESHOT,
                _ => Events::IN | Events::OUT | Events::RDHUP | Events::ET,
            };
            self.k
                .epoll_ctl(
                    self.ep,
                    EPOLL_CTL_ADD,
                    fd,
                    Some(EpollEvent::new(interest, SERVER | slot as u64)),
                )
                .map_err(|e| io_fail("epoll_ctl ADD conn", e))?;
            if self.cfg.kind == Bug::ParkNoRecheck {
                self.runq.push_back(slot); // the connection's task starts by reading
            }
            if self.bug(Bug::EtAcceptOne) {
                return Ok(()); // the bug: one accept per edge
            }
        }
    }

    fn conn(&mut self, slot: usize) -> Option<&mut SConn> {
        self.conns.get_mut(slot).and_then(Option::as_mut)
    }

    fn server_event(&mut self, slot: usize, ev: Events) -> Result<(), Failure> {
        if self.conn(slot).is_none() {
            return Ok(()); // closed since the event was collected
        }
        if ev.contains(Events::OUT) || ev.intersects(Events::ERR | Events::HUP) {
            self.flush(slot)?;
        }
        if self.conn(slot).is_none() {
            return Ok(());
        }
        let readable = ev.intersects(READISH);
        match self.cfg.kind {
            Bug::ParkNoRecheck => {
                if readable {
                    self.notify(slot);
                }
                Ok(())
            }
            Bug::OneshotNoRearm => {
                if readable {
                    self.read_all(slot)?;
                } else if self.bug(Bug::OneshotNoRearm) {
                    // The bug: the EPOLLOUT path flushed and returns; nobody re-arms IN.
                    return Ok(());
                }
                self.rearm(slot)
            }
            _ => {
                if readable {
                    self.read_all(slot)?;
                }
                Ok(())
            }
        }
    }

    fn rearm(&mut self, slot: usize) -> Result<(), Failure> {
        let Some(c) = self.conn(slot) else {
            return Ok(());
        };
        let mut interest = Events::IN | Events::RDHUP | Events::ONESHOT;
        if !c.out.is_empty() {
            interest |= Events::OUT;
        }
        let fd = c.fd;
        self.k
            .epoll_ctl(
                self.ep,
                EPOLL_CTL_MOD,
                fd,
                Some(EpollEvent::new(interest, SERVER | slot as u64)),
            )
            .map_err(|e| io_fail("epoll_ctl MOD (re-arm)", e))
    }

    /// Reads until `EAGAIN` (the partial-read bug: once), answering each read.
    fn read_all(&mut self, slot: usize) -> Result<(), Failure> {
        let limit = if self.cfg.kind == Bug::EtPartialRead {
            self.cfg.read_buf.min(self.buf.len())
        } else {
            self.buf.len()
        };
        loop {
            match self.read_once(slot, limit)? {
                Read::Data => {
                    if self.bug(Bug::EtPartialRead) {
                        return Ok(()); // the bug: one read per edge
                    }
                }
                Read::Again | Read::Closed => return Ok(()),
            }
        }
    }

    /// One read on a server connection and its answer.
    fn read_once(&mut self, slot: usize, limit: usize) -> Result<Read, Failure> {
        let Some(c) = self.conn(slot) else {
            return Ok(Read::Closed);
        };
        if c.eof {
            return Ok(Read::Again);
        }
        let fd = c.fd;
        let n = match self.k.read(fd, &mut self.buf[..limit]) {
            Ok(0) => {
                let c = self.conn(slot).expect("live");
                c.eof = true;
                if c.out.is_empty() {
                    self.close(slot)?;
                    return Ok(Read::Closed);
                }
                return Ok(Read::Again);
            }
            Ok(n) => n,
            Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(Read::Again),
            Err(e) => return Err(io_fail(format!("server read on connection {slot}"), e)),
        };
        if let Some(t) = self.cfg.deadline_ns {
            let now = self.now_ns();
            self.conn(slot).expect("live").deadline_ns = now + t;
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.send(slot, &buf[..n]);
        self.buf = buf;
        r?;
        Ok(Read::Data)
    }

    /// Answers `bytes`: behind queued output, else written now (oneshot: one write; the rest
    /// is queued for `EPOLLOUT`), the rest queued.
    fn send(&mut self, slot: usize, bytes: &[u8]) -> Result<(), Failure> {
        let once = self.cfg.kind == Bug::OneshotNoRearm;
        let c = self.conns[slot].as_mut().expect("live");
        let mut at = 0;
        if c.out.is_empty() {
            while at < bytes.len() {
                match self.k.write(c.fd, &bytes[at..]) {
                    Ok(n) => at += n,
                    Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                    Err(e) => return Err(io_fail(format!("server write on {slot}"), e)),
                }
                if once {
                    break;
                }
            }
        }
        c.out.extend_from_slice(&bytes[at..]);
        Ok(())
    }

    fn flush(&mut self, slot: usize) -> Result<(), Failure> {
        let c = self.conns[slot].as_mut().expect("live");
        let mut at = 0;
        while at < c.out.len() {
            match self.k.write(c.fd, &c.out[at..]) {
                Ok(n) => at += n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) => return Err(io_fail(format!("server flush on {slot}"), e)),
            }
        }
        c.out.drain(..at);
        if c.out.is_empty() && c.eof {
            self.close(slot)?;
        }
        Ok(())
    }

    fn close(&mut self, slot: usize) -> Result<(), Failure> {
        let c = self.conns[slot].take().expect("closing a live connection");
        self.open -= 1;
        self.k
            .close(c.fd)
            .map_err(|e| io_fail(format!("closing connection {slot}"), e))
    }

    fn on_time(&mut self) -> Result<(), Failure> {
        let now = self.now_ns();
        while let Some(&Reverse((d, slot))) = self.deadlines.peek() {
            if d > now {
                break;
            }
            self.deadlines.pop();
            let Some(c) = self.conn(slot) else {
                continue;
            };
            if c.deadline_ns > now {
                let d = c.deadline_ns;
                self.deadlines.push(Reverse((d, slot)));
                continue;
            }
            let d = c.deadline_ns;
            if now - d > TICK_NS {
                return Err(Failure::Deadline {
                    what: format!("the idle deadline of server connection {slot}"),
                    deadline_ns: d,
                    fired_ns: now,
                    tolerance_ns: TICK_NS,
                });
            }
            self.max_late_ns = self.max_late_ns.max(now - d);
            self.closed_idle += 1;
            self.close(slot)?;
        }
        Ok(())
    }

    // ---- the poll descriptor and its tasks ----

    /// The netpoller saw `slot` readable.
    fn notify(&mut self, slot: usize) {
        let c = self.conns[slot].as_mut().expect("live");
        match c.rg {
            Rg::Waiting => {
                c.rg = Rg::Idle;
                self.runq.push_back(slot);
            }
            Rg::Idle | Rg::Ready => c.rg = Rg::Ready,
        }
    }

    /// The task would block: returns whether it parked (`false`: read again).
    fn park(&mut self, slot: usize) -> bool {
        let buggy = self.bug(Bug::ParkNoRecheck);
        let c = self.conns[slot].as_mut().expect("live");
        match c.rg {
            Rg::Waiting => panic!("double wait on the poll descriptor of connection {slot}"),
            Rg::Ready if !buggy => {
                c.rg = Rg::Idle; // consume the notification, read again
                false
            }
            // Idle, or (the bug) Ready overwritten without a look.
            _ => {
                c.rg = Rg::Waiting;
                true
            }
        }
    }

    /// Runs connection `slot`'s task until it parks or ends.
    fn task(&mut self, slot: usize) -> Result<(), Failure> {
        loop {
            match self.read_once(slot, self.buf.len())? {
                Read::Data => continue,
                Read::Closed => return Ok(()),
                Read::Again => {
                    if self.conn(slot).is_some_and(|c| c.eof) {
                        return Ok(()); // closes once the output is flushed
                    }
                    if self.rng.chance(self.cfg.preempt_pct, 100) {
                        // Descheduled between the failed read and the park: the netpoller
                        // runs (other threads, 1 ms) and may notify this very descriptor.
                        self.netpoll(1)?;
                        if self.conn(slot).is_none() {
                            return Ok(());
                        }
                    }
                    if self.park(slot) {
                        return Ok(());
                    }
                }
            }
        }
    }

    // ---- the clients (correct edge-triggered code) ----

    fn connect(&mut self, i: usize) -> Result<(), Failure> {
        let k = self.k;
        let fd = k
            .tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC)
            .map_err(|e| io_fail("client socket", e))?;
        self.clients[i].fd = fd;
        let interest = Events::IN | Events::OUT | Events::RDHUP | Events::ET;
        k.epoll_ctl(
            self.ep,
            EPOLL_CTL_ADD,
            fd,
            Some(EpollEvent::new(interest, CLIENT | i as u64)),
        )
        .map_err(|e| io_fail("epoll_ctl ADD client", e))?;
        match k.connect(fd, self.addr) {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(EINPROGRESS) => Ok(()),
            Err(e) => Err(io_fail(format!("connect client {i}"), e)),
        }
    }

    /// The request bytes client `c` may have written by now: one message at a time.
    fn send_target(&self, c: &Client) -> u64 {
        ((c.recv / self.cfg.size + 1) * self.cfg.size).min(c.send_total)
    }

    fn client_event(&mut self, i: usize, ev: Events) -> Result<(), Failure> {
        match self.clients[i].phase {
            Phase::Done => Ok(()),
            Phase::Connecting => {
                let fd = self.clients[i].fd;
                let err = self
                    .k
                    .take_socket_error(fd)
                    .map_err(|e| io_fail("SO_ERROR", e))?;
                if err != 0 {
                    return Err(io_fail(
                        format!("connecting client {i}"),
                        io::Error::from_raw_os_error(err),
                    ));
                }
                if !ev.contains(Events::OUT) {
                    return Ok(()); // spurious
                }
                self.clients[i].phase = Phase::Active;
                self.client_step(i)
            }
            Phase::Active | Phase::Stalled => self.client_step(i),
        }
    }

    /// Reads and writes until `EAGAIN`.
    fn client_step(&mut self, i: usize) -> Result<(), Failure> {
        let fd = self.clients[i].fd;
        loop {
            let n = match self.k.read(fd, &mut self.buf) {
                Ok(0) => return self.client_eof(i),
                Ok(n) => n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) => return Err(io_fail(format!("client {i} read"), e)),
            };
            let c = &mut self.clients[i];
            if c.recv + n as u64 > c.sent {
                return Err(Failure::Integrity {
                    conn: i,
                    offset: c.recv,
                    detail: format!("{n} bytes arrived; only {} are owed", c.sent - c.recv),
                });
            }
            if let Some(j) = (0..n).find(|&j| self.buf[j] != pattern(c.key, c.recv + j as u64)) {
                return Err(Failure::Integrity {
                    conn: i,
                    offset: c.recv + j as u64,
                    detail: "a byte differs from the request (lost or reordered bytes)".into(),
                });
            }
            c.recv += n as u64;
            self.bytes += n as u64;
        }
        loop {
            let c = &self.clients[i];
            let target = self.send_target(c);
            if c.sent >= target {
                break;
            }
            let len = ((target - c.sent) as usize).min(self.buf.len());
            let (key, sent) = (c.key, c.sent);
            for (j, b) in self.buf[..len].iter_mut().enumerate() {
                *b = pattern(key, sent + j as u64);
            }
            match self.k.write(fd, &self.buf[..len]) {
                Ok(n) => {
                    self.clients[i].sent += n as u64;
                    self.bytes_sent += n as u64;
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) => return Err(io_fail(format!("client {i} write"), e)),
            }
        }
        let per_conn = self.cfg.msgs * self.cfg.size;
        let c = &mut self.clients[i];
        if c.send_total < per_conn && c.sent == c.send_total {
            c.phase = Phase::Stalled;
        }
        if c.recv == per_conn {
            self.client_close(i)?;
        }
        Ok(())
    }

    fn client_eof(&mut self, i: usize) -> Result<(), Failure> {
        let c = &self.clients[i];
        if c.phase != Phase::Stalled || c.recv != c.sent {
            return Err(Failure::Integrity {
                conn: i,
                offset: c.recv,
                detail: format!(
                    "the server closed early (sent {} of {} bytes, {} echoed)",
                    c.sent, c.send_total, c.recv
                ),
            });
        }
        self.client_close(i)
    }

    fn client_close(&mut self, i: usize) -> Result<(), Failure> {
        let c = &mut self.clients[i];
        c.phase = Phase::Done;
        let fd = std::mem::replace(&mut c.fd, -1);
        self.done += 1;
        self.k
            .close(fd)
            .map_err(|e| io_fail(format!("closing client {i}"), e))
    }
}

enum Read {
    /// Bytes were read and answered.
    Data,
    /// `EAGAIN`, or end of file with output still queued.
    Again,
    /// The connection is closed.
    Closed,
}

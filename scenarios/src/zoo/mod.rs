//! The bug zoo: small hand-written event loops, each with one real class of lost-wakeup bug,
//! shipped as fixtures that prove the framework finds such bugs by seed.
//!
//! Every zoo scenario runs one reactor (an echo server and its clients on one epoll instance,
//! in one thread, on the simulated kernel) with a deliberate bug, or, with `--param fixed=1`,
//! its corrected twin. The oracles are the crate's: the lost-wakeup scan at quiescence
//! (the kernel's scan, [`crate::oracle::lost_wakeup`], against what the loop waits for), the hang oracle (the
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
//! | `zoo-mt-close-no-wake` | a close marks the poll descriptor closed and takes it off the epoll set, but leaves the reader parked on it asleep | the close landing while the reader is parked (simulated threads, interleaved by seed) | hang, with each thread's blocking call |
//! | `zoo-mt-spin-no-recheck` | an idle worker drops its "spinning" count after its last look at the run queue, and parks; a submitter that saw it spinning skipped the wake | a task queued between that look and the drop (simulated threads) | hang, with each thread's blocking call |
//!
//! The last two are races between threads, in [`threaded`]: Go-style runtimes on
//! [`netpoll_threads`]'s simulated threads, not the one-thread reactor below.
//!
//! The zoo has its own small server loop rather than switches in
//! [`crate::raw_epoll::EchoServer`]: the example server stays free of deliberate bugs, and a
//! 10-connection zoo run costs about 0.2 ms of CPU, so sweeps of thousands of seeds take seconds.
//! Its clients are the crate's ([`crate::clients::Clients`]): every client connects at once,
//! sends one message at a time and checks each echoed byte; with `stall-pct` some stop
//! mid-message and wait for the server's idle deadline ([`ClientMode::Stall`]).
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
//! # Files
//!
//! `mod.rs` holds the registry entries, the reactor's state, its loop and the oracles; each bug
//! lives in the file named after it, with its fixed twin beside it (`et_partial_read.rs` the
//! read handler, `et_accept_one.rs` the accept handler, `oneshot_no_rearm.rs` re-arming and
//! flushing, `park_no_recheck.rs` the poll descriptor and its tasks, `timer_not_in_timeout.rs`
//! the loop's timeout and the idle deadlines).
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
    errno::*, errno_of, Events, EPOLL_CLOEXEC, EPOLL_CTL_ADD, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Fd, Poller};
use netpoll_sim::Sim;

use crate::clients::{ClientMix, ClientMode, Clients};
use crate::oracle::{io_fail, lost_wakeup, Failure, Lateness};
use crate::params::{ParamSpec, CONNS, FAULTS, MSGS, SIZE};
use crate::rng::Rng;
use crate::workload::{sim_judged_by_loop, simulate_on, Kind, Request, Run, Tracing, Workload};

mod et_accept_one;
mod et_partial_read;
mod mt_close_no_wake;
mod mt_spin_no_recheck;
mod oneshot_no_rearm;
mod park_no_recheck;
pub mod threaded;
mod timer_not_in_timeout;

pub use park_no_recheck::Rg;

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
    fn kind(&self) -> Kind {
        Kind::Zoo
    }
    fn run(&self, req: &Request, tracing: Tracing) -> Run {
        go(self, req, tracing)
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

/// `zoo-et-partial-read`'s messages (6,000 bytes) outgrow its handler's default read buffer
/// (4,096): more bytes arrive in one edge than one read takes, which is how reading once per
/// edge loses data on Linux. With messages that fit one read (`--size 64`) the bug is latent:
/// Linux follows every arrival with an edge, so no fault plan Linux can produce exposes it.
static ET_READ: &[ParamSpec] = &[
    p_conns(),
    p_msgs(),
    p_size(6000),
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

/// The zoo's races between threads (see [`threaded`]), in `list` order.
pub static THREADED: [threaded::ThreadedZoo; 2] = [
    threaded::ThreadedZoo {
        name: "zoo-mt-close-no-wake",
        about: "BUG: a close marks the poll descriptor closed but leaves its parked reader asleep (threads)",
        params: threaded::PARAMS,
        body: mt_close_no_wake::body,
    },
    threaded::ThreadedZoo {
        name: "zoo-mt-spin-no-recheck",
        about: "BUG: an idle worker stops spinning after its last look at the run queue, and parks (threads)",
        params: threaded::PARAMS,
        body: mt_spin_no_recheck::body,
    },
];

/// The zoo scenario named `name`.
pub fn find(name: &str) -> Option<&'static ZooScenario> {
    ZOO.iter().find(|z| z.name == name)
}

fn go(z: &ZooScenario, req: &Request, tracing: Tracing) -> Run {
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
    simulate_on(sim_judged_by_loop(req), req, tracing, |k, stats| {
        let mut zr = Zoo::new(k, cfg, req.seed)?;
        let v = zr.run();
        let cs = zr.clients.stats();
        stats.bytes = cs.bytes;
        stats.bytes_sent = cs.bytes_sent;
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
/// The clients' tag ([`crate::clients::TOKEN`]).
const CLIENT: u64 = crate::clients::TOKEN;
const MASK: u64 = 3 << 62;
const READISH: Events = Events::IN
    .union(Events::RDHUP)
    .union(Events::HUP)
    .union(Events::ERR);

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

struct Zoo<'k> {
    k: &'k Sim,
    cfg: Cfg,
    ep: Fd,
    listener: Fd,
    conns: Vec<Option<SConn>>,
    open: usize,
    clients: Clients<'k, Sim>,
    /// Poll-descriptor tasks ready to run.
    runq: VecDeque<usize>,
    /// (deadline, slot), lazily checked.
    deadlines: BinaryHeap<Reverse<(u64, usize)>>,
    rng: Rng,
    buf: Vec<u8>,
    epoll_events: u64,
    scans: u64,
    closed_idle: u64,
    max_late_ns: u64,
    /// The handler cost charged by turn, for the idle deadline's bound.
    lateness: Lateness,
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
        // Every client connects at once and closes once its echo is in (or, stalled, once the
        // server closes it); none makes a new connection.
        let mix = ClientMix {
            connect_window: cfg.conns,
            ..ClientMix::new(cfg.conns, cfg.msgs, cfg.size)
        }
        .mode(ClientMode::Stall { pct: cfg.stall_pct });
        let clients = Clients::new(k, ep, addr, mix, seed);
        Ok(Zoo {
            k,
            cfg,
            ep,
            listener,
            conns: Vec::new(),
            open: 0,
            clients,
            runq: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            rng: Rng::new(seed, 7),
            buf: vec![0; 64 * 1024],
            epoll_events: 0,
            scans: 0,
            closed_idle: 0,
            max_late_ns: 0,
            lateness: Lateness::default(),
        })
    }

    fn bug(&self, b: Bug) -> bool {
        self.cfg.bug == Some(b)
    }

    fn now_ns(&self) -> u64 {
        self.k.now_ns()
    }

    fn run(&mut self) -> Result<(), Failure> {
        self.clients.start(0)?;
        let mut instant = (u64::MAX, 0u32);
        loop {
            while let Some(slot) = self.runq.pop_front() {
                self.task(slot)?;
            }
            if self.clients.done() && self.open == 0 {
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
            self.lateness.mark_turn(self.k);
            let timeout = self.wait_timeout(now);
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
        let mut detail = format!(
            "{why}; {} of {} clients not done, {} server connections open",
            self.clients.waiting(),
            self.clients.mix().conns,
            self.open
        );
        if let Some(c) = self.clients.first_unfinished() {
            detail.push_str(&format!("; first unfinished: {c}"));
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
                CLIENT => self.clients.handle(*ev)?,
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
        lost_wakeup(
            self.k,
            self.ep,
            |s| self.wants(s.data),
            |s| {
                let id = s.data & 0xffff_ffff;
                match s.data & MASK {
                    LISTENER => "the listener".to_string(),
                    SERVER => format!("server connection {id}"),
                    _ => format!("client {id}"),
                }
            },
        )
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
            _ => self.clients.wants(data),
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

    fn close(&mut self, slot: usize) -> Result<(), Failure> {
        let c = self.conns[slot].take().expect("closing a live connection");
        self.open -= 1;
        self.k
            .close(c.fd)
            .map_err(|e| io_fail(format!("closing connection {slot}"), e))
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

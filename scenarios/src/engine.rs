//! The workload engine: one hand-written event loop that drives the [`EchoServer`] and a
//! population of simulated clients on a single epoll instance, and checks the oracles as it
//! goes.
//!
//! # Model
//!
//! - **Clients** are state machines ([`Phase`]), one per connection, registered edge-triggered
//!   like the server's connections. At most [`Spec::connect_window`] connect at once. Each sends
//!   its connection's deterministic byte stream ([`pattern`]) and checks every byte of the answer
//!   as it reads it (data integrity, incrementally: nothing is buffered for the check).
//! - What a client does is its [`ClientMode`]: request/response echo, pipelined then half-closed,
//!   reset in the middle of a message, stall (stop sending) or read slowly. Per-connection choices
//!   (which client stalls, where it resets) are drawn from the harness's own seeded stream.
//! - **Timers**: the server's idle deadlines and accept pauses, the slow readers' ticks and the
//!   timer-storm's timers all feed one timeout: `epoll_wait` sleeps to the earliest deadline,
//!   rounded up to the millisecond ([`TICK_NS`]).
//! - **Quiescence** (simulated kernel only): before a sleep with nothing in flight, the loop asks
//!   the kernel which registrations are ready with no event queued ([`netpoll_sim::Sim::stranded`])
//!   and reports those whose readiness the owner is waiting for. The scan costs one pass over the
//!   registrations, so it runs only when the work done since the last scan paid for it, and
//!   always when the loop would otherwise sleep for ever.
//! - **The goal**: every client finished as planned and closed, every server connection closed.
//!   The run then lets the network drain and checks for leaks.
//!
//! # Not modelled
//!
//! Clients and server share one process, one epoll instance and one thread (as they must on
//! the single-threaded simulated kernel; on the real kernel it keeps the two arms alike).
//! Clients have no think time beyond the slow readers' ticks. The loop's timers are its own
//! heaps, not the netpoller's. The lost-wakeup oracle needs the simulated kernel; on the real one
//! only the hang (a 30 s silence), integrity and deadline oracles run, the latter with 250 ms of
//! slack for the scheduler.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use netpoll::sys::{
    errno::*, errno_of, Events, EPOLL_CLOEXEC, EPOLL_CTL_ADD, SHUT_WR, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Fd, Poller};
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

use crate::oracle::{io_fail, Failure};
use crate::raw_epoll::{tag, timeout_ms, EchoServer, ServerConfig, TICK_NS};
use crate::rng::{mix, Rng};

/// How late a deadline may fire on the real kernel, where the thread competes for a CPU.
pub const REAL_SLACK_NS: u64 = 250 * TICK_NS;

/// A poller the engine can run on: the simulated kernel offers introspection for the oracles.
pub trait Kernel: Poller {
    /// The simulated kernel, when this is one.
    fn sim(&self) -> Option<&Sim>;
}

impl Kernel for Sim {
    fn sim(&self) -> Option<&Sim> {
        Some(self)
    }
}

impl Kernel for RealNet {
    fn sim(&self) -> Option<&Sim> {
        None
    }
}

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    /// Send a message, read its echo, repeat; then hold the connection until every client is
    /// done (so all connections are open at once), then close.
    Echo,
    /// Send every message at once, `shutdown(SHUT_WR)`, read every echo, expect end of file.
    HalfClose,
    /// Each client resets (`SO_LINGER` 0, `close`) after a seeded number of whole messages plus
    /// a seeded part of the next.
    Reset,
    /// `pct`% of the clients stop sending in the middle of a seeded message and wait for the
    /// server to close them; the others echo normally and close.
    Stall {
        /// Percentage of clients that stall.
        pct: u64,
    },
    /// Request/response, but the answer is read `chunk` bytes per `interval_ns`.
    SlowReader {
        /// Bytes read per tick.
        chunk: usize,
        /// Time between ticks.
        interval_ns: u64,
    },
}

/// A workload.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Connections.
    pub conns: usize,
    /// Messages per connection.
    pub msgs: u64,
    /// Bytes per message.
    pub size: u64,
    /// What the clients do.
    pub mode: ClientMode,
    /// The server.
    pub server: ServerConfig,
    /// Clients connecting at once, at most.
    pub connect_window: usize,
    /// Extra timers to arm (the timer storm), spread over `timer_span_ns`.
    pub timers: usize,
    /// The span of the timer storm's deadlines.
    pub timer_span_ns: u64,
    /// Record which fd belongs to which connection (for trace files).
    pub label_fds: bool,
    /// How often a client makes a new connection after `connect` timed out (`ETIMEDOUT`: every
    /// SYN was dropped by a full accept queue) or the connection was reset before any answer
    /// (the server gave up a handshake it had no queue room for). 0: either fails the run.
    pub connect_retries: u32,
    /// Whether a short read means the receive queue was empty: true on Linux (and on the
    /// simulated kernel without `short_read` faults), where the clients then skip the read
    /// that would only say `EAGAIN`. The `Poller` contract does not promise it, so under
    /// injected short reads it must be false.
    pub short_read_drains: bool,
}

impl Spec {
    /// A plain echo of `conns x msgs x size`.
    pub fn echo(conns: usize, msgs: u64, size: u64) -> Spec {
        Spec {
            conns,
            msgs,
            size,
            mode: ClientMode::Echo,
            server: ServerConfig::default(),
            connect_window: 512,
            timers: 0,
            timer_span_ns: 0,
            label_fds: false,
            connect_retries: 0,
            short_read_drains: true,
        }
    }
}

/// The byte at `offset` of connection `conn`'s request stream: a keyed arithmetic sequence, so
/// a lost, duplicated or reordered byte (or one from another connection) shows.
#[inline]
pub fn pattern(key: u64, offset: u64) -> u8 {
    (key.wrapping_add(offset.wrapping_mul(PATTERN_STEP)) >> 56) as u8
}

const PATTERN_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Fills `buf` with the stream `key` from `offset` on (the same bytes as [`pattern`], one
/// addition per byte).
pub fn fill_pattern(buf: &mut [u8], key: u64, offset: u64) {
    let mut x = key.wrapping_add(offset.wrapping_mul(PATTERN_STEP));
    for b in buf {
        *b = (x >> 56) as u8;
        x = x.wrapping_add(PATTERN_STEP);
    }
}

/// The index of the first byte of `got` that is not the stream `key` from `offset` on.
pub fn check_pattern(got: &[u8], key: u64, offset: u64) -> Option<usize> {
    let mut x = key.wrapping_add(offset.wrapping_mul(PATTERN_STEP));
    let mut bad = false;
    for &b in got {
        bad |= b != (x >> 56) as u8;
        x = x.wrapping_add(PATTERN_STEP);
    }
    if !bad {
        return None;
    }
    (0..got.len()).find(|&j| got[j] != pattern(key, offset + j as u64))
}

/// Where a client is in its life.
///
/// ```text
/// Idle --start_clients--> Connecting --(OUT, SO_ERROR 0)--> Active
///                         Connecting --(SO_ERROR ETIMEDOUT, retries left)--> Connecting (new socket)
/// Active --(all answers in; echo)--> Holding --(every client finished)--> Done
/// Active --(all answers in; other modes) | (reset point) | (expected EOF)--> Done
/// ```
///
/// Anything else (an EOF nobody expected, a connect error) ends the run with a failure. Events
/// for a `Holding` or `Done` client are ignored: held connections wait for nothing, and a done
/// client's fd is closed (its registration went with it; the event was already collected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// `connect` under way.
    Connecting,
    /// Sending and reading.
    Active,
    /// Done, connection held open until every client is done.
    Holding,
    /// Closed; nothing more to do.
    Done,
}

#[derive(Debug)]
struct Client {
    fd: Fd,
    phase: Phase,
    key: u64,
    /// Request bytes written.
    sent: u64,
    /// Response bytes read and checked.
    recv: u64,
    /// Request bytes this client will send in all (a stall or reset stops early).
    send_total: u64,
    /// What happens at `send_total`.
    stop: Stop,
    shut_wr: bool,
    /// Slow reader: bytes it may still read before its next tick.
    budget: usize,
    /// Slow reader: a tick is queued.
    tick_armed: bool,
    /// Connects that timed out and were made again.
    retries: u32,
    /// When the client saw the server's end of file.
    eof_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Finishes all messages.
    Complete,
    /// Resets the connection once `send_total` bytes are written.
    Reset,
    /// Stops sending at `send_total` and waits for the server to close.
    Stall,
}

pub use crate::trace_out::FdLabel;
pub use crate::workload::{thread_cpu_ns, RunStats};

/// The outcome of [`run`].
#[derive(Debug)]
pub struct RunResult {
    /// The counters.
    pub stats: RunStats,
    /// `Ok` or the first failed oracle.
    pub verdict: Result<(), Failure>,
    /// Fd ownership, if asked for.
    pub labels: Vec<FdLabel>,
}

/// The storm's timers: (deadline, id); cancelled ids are skipped when they come up.
#[derive(Debug, Default)]
struct Storm {
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    /// Per timer: its current deadline, or `None` once cancelled or fired.
    due: Vec<Option<u64>>,
    fired: u64,
    cancelled: u64,
    last_fired_ns: u64,
    rng: Option<Rng>,
}

/// The event loop and everything it drives.
struct Engine<'k, K: Kernel> {
    k: &'k K,
    spec: &'k Spec,
    ep: Fd,
    server: EchoServer<'k, K>,
    addr: SocketAddrV4,
    clients: Vec<Client>,
    next_client: usize,
    connecting: usize,
    /// Clients that reached `Holding`, those of them closed, and the next index to look at.
    holding: usize,
    held_closed: usize,
    next_to_close: usize,
    finished: usize,
    closed: usize,
    buf: Vec<u8>,
    /// Slow readers' ticks: (when, client).
    ticks: BinaryHeap<Reverse<(u64, u32)>>,
    storm: Storm,
    stats: RunStats,
    /// Syscalls since the last quiescence scan.
    scan_credit: u64,
    labels: Vec<FdLabel>,
    ports: BTreeMap<SocketAddrV4, usize>,
    start_ns: u64,
}

/// Runs `spec` on `k` with `seed` (the harness's own choices; the simulated kernel has its own
/// seed already).
pub fn run<K: Kernel>(k: &K, spec: &Spec, seed: u64) -> RunResult {
    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    let mut labels = Vec::new();
    let mut stats = RunStats::default();
    let verdict = match Engine::new(k, spec, seed) {
        Ok(mut e) => {
            let v = e.run();
            stats = std::mem::take(&mut e.stats);
            labels = std::mem::take(&mut e.labels);
            for &(at, fd, peer) in e.server.accept_log() {
                if let Some(&i) = e.ports.get(&peer) {
                    labels.push((at, fd, i, true));
                }
            }
            labels.sort_unstable();
            stats.virtual_ns = e.now_ns() - e.start_ns;
            let s = e.server.stats();
            stats.closed_idle = s.closed_idle;
            stats.closed_reset = s.closed_reset;
            stats.closed_eof = s.closed_eof;
            stats.server_write_blocked = s.write_blocked;
            stats.server_paused = s.paused;
            stats.timers_fired = e.storm.fired;
            stats.timers_cancelled = e.storm.cancelled;
            v
        }
        Err(f) => Err(f),
    };
    if let Some(sim) = k.sim() {
        let st = sim.stats();
        stats.syscalls = st.syscalls;
        stats.deliveries = st.deliveries;
        stats.events = st.syscalls + st.deliveries;
    } else {
        stats.events = stats.epoll_events;
    }
    stats.wall_ns = wall.elapsed().as_nanos() as u64;
    stats.cpu_ns = thread_cpu_ns().saturating_sub(cpu);
    RunResult {
        stats,
        verdict,
        labels,
    }
}

impl<'k, K: Kernel> Engine<'k, K> {
    fn new(k: &'k K, spec: &'k Spec, seed: u64) -> Result<Self, Failure> {
        let ep = k
            .epoll_create1(EPOLL_CLOEXEC)
            .map_err(|e| io_fail("creating the epoll instance", e))?;
        let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let mut server = EchoServer::bind(k, ep, any, spec.server.clone())
            .map_err(|e| io_fail("starting the server", e))?;
        if spec.label_fds {
            server.log_accepts();
        }
        let addr = server.local_addr().map_err(|e| io_fail("getsockname", e))?;
        let mut rng = Rng::new(seed, 1);
        let per_conn = spec.msgs * spec.size;
        let clients = (0..spec.conns)
            .map(|i| {
                let (send_total, stop) = match spec.mode {
                    ClientMode::Reset => {
                        let at = rng.range(0, per_conn.saturating_sub(1));
                        (at, Stop::Reset)
                    }
                    ClientMode::Stall { pct } if rng.chance(pct, 100) => {
                        // Stop inside a message, never at its boundary.
                        let msg = rng.range(0, spec.msgs - 1);
                        let part = rng.range(1, spec.size.max(2) - 1).min(spec.size);
                        (msg * spec.size + part, Stop::Stall)
                    }
                    _ => (per_conn, Stop::Complete),
                };
                Client {
                    fd: -1,
                    phase: Phase::Idle,
                    key: mix(seed ^ mix(i as u64 + 1)),
                    sent: 0,
                    recv: 0,
                    send_total,
                    stop,
                    shut_wr: false,
                    budget: 0,
                    tick_armed: false,
                    retries: 0,
                    eof_ns: 0,
                }
            })
            .collect();
        let mut storm = Storm::default();
        let start_ns = k.now().as_nanos() as u64;
        if spec.timers > 0 {
            let mut trng = Rng::new(seed, 2);
            storm.due = Vec::with_capacity(spec.timers);
            for id in 0..spec.timers {
                let d = start_ns + trng.range(1, spec.timer_span_ns.max(1));
                storm.due.push(Some(d));
                storm.heap.push(Reverse((d, id as u32)));
            }
            storm.rng = Some(trng);
        }
        Ok(Engine {
            k,
            spec,
            ep,
            server,
            addr,
            clients,
            next_client: 0,
            connecting: 0,
            holding: 0,
            held_closed: 0,
            next_to_close: 0,
            finished: 0,
            closed: 0,
            buf: vec![0; 64 * 1024],
            ticks: BinaryHeap::new(),
            storm,
            stats: RunStats::default(),
            scan_credit: 0,
            labels: Vec::new(),
            ports: BTreeMap::new(),
            start_ns,
        })
    }

    fn now_ns(&self) -> u64 {
        self.k.now().as_nanos() as u64
    }

    fn goal_met(&self) -> bool {
        self.closed == self.spec.conns && self.server.open_conns() == 0 && self.storm_done()
    }

    fn storm_done(&self) -> bool {
        self.storm.heap.is_empty()
    }

    fn next_deadline(&self) -> Option<u64> {
        [
            self.server.next_deadline_ns(),
            self.ticks.peek().map(|r| r.0 .0),
            self.storm.heap.peek().map(|r| r.0 .0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn run(&mut self) -> Result<(), Failure> {
        let mut events = vec![EpollEvent::EMPTY; 1024];
        let real = self.k.sim().is_none();
        // Budgets: a run that neither finishes nor deadlocks is a livelock.
        let virtual_budget_ns: u64 = 3_600 * 1_000_000_000;
        let wall = Instant::now();
        let mut idle_turns = 0u32;
        // A loop that turns without time passing (an fd reported again and again and never
        // handled) would spin for ever at one virtual instant: bound the turns per instant.
        let mut instant = (u64::MAX, 0u64);
        const TURNS_PER_INSTANT_MAX: u64 = 1_000_000;
        loop {
            self.start_clients()?;
            if self.goal_met() {
                break;
            }
            let now = self.now_ns();
            if instant.0 == now {
                instant.1 += 1;
                if instant.1 > TURNS_PER_INSTANT_MAX && !real {
                    return Err(self.hang(&format!(
                        "livelock: {TURNS_PER_INSTANT_MAX} turns of the loop without virtual time passing"
                    )));
                }
            } else {
                instant = (now, 0);
            }
            let next_deadline = self.next_deadline();
            let deadline_driven = next_deadline.is_some();
            let mut timeout = match next_deadline {
                Some(d) => timeout_ms(d, now),
                None => -1,
            };
            if real {
                // The real kernel has no deadlock detector: wake up now and then to check.
                timeout = if timeout < 0 { 1000 } else { timeout.min(1000) };
                if wall.elapsed().as_secs() > 120 {
                    return Err(self.hang("the run took more than 120 s of wall time"));
                }
            } else if now - self.start_ns > virtual_budget_ns {
                return Err(self.hang("more than an hour of virtual time passed"));
            }
            if timeout != 0 {
                self.quiescence(timeout < 0)?;
            }
            let n = match self.k.epoll_wait(self.ep, &mut events, timeout) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Deadlock => {
                    // What was in flight arrived inside this wait, which then found nothing to
                    // report: a stranded registration is the cause, not just a hang.
                    self.quiescence(true)?;
                    return Err(self.hang(&format!("epoll_wait would block for ever ({e})")));
                }
                Err(e) if errno_of(&e) == Some(EINTR) => continue,
                Err(e) => return Err(io_fail("epoll_wait", e)),
            };
            self.stats.epoll_events += n as u64;
            if n == 0 && real && !deadline_driven {
                idle_turns += 1;
                if idle_turns > 30 {
                    return Err(self.hang("no event for 30 s on the real kernel"));
                }
            } else {
                idle_turns = 0;
            }
            for ev in &events[..n] {
                let ev = *ev;
                if EchoServer::<K>::owns(ev.data) {
                    self.server.handle(ev).map_err(|e| io_fail("serving", e))?;
                } else if ev.data & tag::MASK == tag::CLIENT {
                    let i = (ev.data & 0xffff_ffff) as usize;
                    self.drive(i, ev.events)?;
                } else {
                    return Err(Failure::Invariant(format!(
                        "event with unknown token {:#x}",
                        ev.data
                    )));
                }
            }
            self.server
                .on_time()
                .map_err(|e| io_fail("server timers", e))?;
            self.on_ticks()?;
            self.on_storm()?;
        }
        self.finish()
    }

    fn hang(&self, why: &str) -> Failure {
        let waiting = self
            .clients
            .iter()
            .filter(|c| c.phase != Phase::Done)
            .count();
        let mut detail = format!(
            "{why}; {waiting} of {} clients not done, {} server connections open",
            self.spec.conns,
            self.server.open_conns()
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
        if !self.storm.heap.is_empty() {
            detail.push_str(&format!("; {} storm timers pending", self.storm.heap.len()));
        }
        Failure::Hang {
            detail,
            at_ns: self.now_ns(),
        }
    }

    /// The lost-wakeup oracle: the loop is about to sleep. `forever`: it would sleep with no
    /// timeout, so the scan is not optional.
    fn quiescence(&mut self, forever: bool) -> Result<(), Failure> {
        let Some(sim) = self.k.sim() else {
            return Ok(());
        };
        if sim.pending() > 0 {
            return Ok(());
        }
        let syscalls = sim.stats().syscalls;
        let registered = (self.server.open_conns() + self.clients.len() - self.closed) as u64 + 1;
        if !forever && syscalls < self.scan_credit + registered {
            return Ok(());
        }
        self.scan_credit = syscalls;
        self.stats.quiescence_checks += 1;
        let stranded = sim
            .stranded(self.ep)
            .map_err(|e| io_fail("stranded()", e))?;
        for s in stranded {
            let wants = self.wants(s.data);
            if (s.ready & wants).is_empty() {
                continue;
            }
            return Err(Failure::LostWakeup {
                fd: s.fd,
                data: s.data,
                owner: self.owner(s.data),
                interest: s.interest,
                ready: s.ready,
                wants,
                disarmed: s.disarmed,
                at_ns: sim.now_ns(),
                history: sim.history(s.fd),
            });
        }
        Ok(())
    }

    fn owner(&self, data: u64) -> String {
        match data & tag::MASK {
            tag::LISTENER => "the listener".into(),
            tag::SERVER => format!("server connection, slot {}", data & 0xffff_ffff),
            tag::CLIENT => format!("client {}", data & 0xffff_ffff),
            _ => "unknown".into(),
        }
    }

    fn wants(&self, data: u64) -> Events {
        if EchoServer::<K>::owns(data) {
            return self.server.wants(data);
        }
        let Some(c) = self.clients.get((data & 0xffff_ffff) as usize) else {
            return Events::NONE;
        };
        match c.phase {
            Phase::Connecting => Events::OUT | Events::ERR | Events::HUP,
            Phase::Active => {
                let mut w = Events::ERR | Events::HUP;
                let slow = matches!(self.spec.mode, ClientMode::SlowReader { .. });
                if !slow || c.budget > 0 {
                    w |= Events::IN | Events::RDHUP;
                }
                if c.sent < self.send_target(c) && !c.shut_wr {
                    w |= Events::OUT;
                }
                w
            }
            // A held connection watches for the server misbehaving (data, FIN, reset).
            Phase::Holding => Events::IN | Events::RDHUP | Events::HUP | Events::ERR,
            _ => Events::NONE,
        }
    }

    fn start_clients(&mut self) -> Result<(), Failure> {
        self.close_held()?;
        while self.next_client < self.spec.conns
            && self.connecting < self.spec.connect_window.max(1)
        {
            let i = self.next_client;
            self.next_client += 1;
            self.connect(i)?;
        }
        Ok(())
    }

    fn connect(&mut self, i: usize) -> Result<(), Failure> {
        let k = self.k;
        let fd = k
            .tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC)
            .map_err(|e| io_fail(format!("socket for client {i}"), e))?;
        if self.spec.conns > 20_000 {
            // 28,232 ephemeral ports per address: spread clients over 127.0.0.1, .2, ...,
            // 10,000 each, so that finding a free port stays cheap.
            let ip = Ipv4Addr::new(127, 0, 0, 1 + (i / 10_000) as u8);
            k.bind(fd, SocketAddrV4::new(ip, 0))
                .map_err(|e| io_fail(format!("bind for client {i}"), e))?;
        }
        let c = &mut self.clients[i];
        c.fd = fd;
        c.phase = Phase::Connecting;
        self.connecting += 1;
        let interest = Events::IN | Events::OUT | Events::RDHUP | Events::ET;
        let token = tag::CLIENT | i as u64;
        k.epoll_ctl(
            self.ep,
            EPOLL_CTL_ADD,
            fd,
            Some(EpollEvent::new(interest, token)),
        )
        .map_err(|e| io_fail(format!("epoll_ctl ADD client {i}"), e))?;
        match k.connect(fd, self.addr) {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(EINPROGRESS) => {}
            Err(e) => return Err(io_fail(format!("connect for client {i}"), e)),
        }
        if self.spec.label_fds {
            let at = self.now_ns();
            self.labels.push((at, fd, i, false));
            if let Ok(a) = k.local_addr(fd) {
                self.ports.insert(a, i);
            }
        }
        Ok(())
    }

    /// The request bytes a client may have written by now.
    fn send_target(&self, c: &Client) -> u64 {
        let factor = u64::from(self.spec.server.reply_factor.max(1));
        let limit = match self.spec.mode {
            ClientMode::HalfClose => c.send_total,
            // One message at a time: the next once the previous one's answer is in.
            _ => (c.recv / (self.spec.size * factor) + 1) * self.spec.size,
        };
        limit.min(c.send_total)
    }

    /// Runs client `i`'s state machine after an event (edge-triggered: read and write until
    /// `EAGAIN`).
    fn drive(&mut self, i: usize, ready: Events) -> Result<(), Failure> {
        let c = &self.clients[i];
        match c.phase {
            Phase::Connecting => {
                let fd = c.fd;
                let err = self
                    .k
                    .take_socket_error(fd)
                    .map_err(|e| io_fail("SO_ERROR", e))?;
                if err == 0 && !ready.contains(Events::OUT) {
                    return Ok(()); // a spurious event: still connecting
                }
                if err == ETIMEDOUT && self.may_reconnect(i) {
                    // The server was too busy for every SYN retransmission.
                    self.connecting -= 1;
                    return self.reconnect(i);
                }
                if err != 0 {
                    return Err(io_fail(
                        format!("connecting client {i}"),
                        io::Error::from_raw_os_error(err),
                    ));
                }
                self.connecting -= 1;
                self.clients[i].phase = Phase::Active;
                if let ClientMode::SlowReader { chunk, .. } = self.spec.mode {
                    self.clients[i].budget = chunk;
                }
                self.step(i, Some(ready))
            }
            Phase::Active => self.step(i, Some(ready)),
            Phase::Holding => self.check_held(i),
            // Done: the fd is closed; the event was collected before.
            _ => Ok(()),
        }
    }

    /// Reads and writes until `EAGAIN`, then moves the client on if it is finished.
    ///
    /// `ready` is the event that brought us here (`None`: a timer). Two shortcuts save a
    /// syscall each without breaking the edge-triggered rule: an event that does not report
    /// `IN` (nor `RDHUP`, `HUP`, `ERR`) means nothing is buffered yet, and its edge is still to
    /// come; a read that returns less than it asked for emptied the receive queue, so unless
    /// the event reported a FIN (`RDHUP`: the end of file may sit behind the data) the next
    /// read would only say `EAGAIN`. Both hold on Linux and on the simulated kernel, where
    /// every arriving segment is a wakeup. The server ([`EchoServer`]) does not take them: it
    /// reads until `EAGAIN`, the plain rule, as the example to copy.
    fn step(&mut self, i: usize, ready: Option<Events>) -> Result<(), Failure> {
        let factor = u64::from(self.spec.server.reply_factor.max(1));
        let fd = self.clients[i].fd;
        let readable = Events::IN | Events::RDHUP | Events::HUP | Events::ERR;
        let skip_read = ready.is_some_and(|r| !r.intersects(readable));
        let short_read_drains = self.spec.short_read_drains
            && ready.is_some_and(|r| !r.intersects(Events::RDHUP | Events::HUP | Events::ERR));
        // Read everything there is (a slow reader: up to its budget).
        loop {
            if skip_read {
                break;
            }
            let c = &self.clients[i];
            if c.phase != Phase::Active {
                return Ok(());
            }
            let slow = matches!(self.spec.mode, ClientMode::SlowReader { .. });
            let want = if slow {
                c.budget.min(self.buf.len())
            } else {
                self.buf.len()
            };
            if want == 0 {
                break;
            }
            let n = match self.k.read(fd, &mut self.buf[..want]) {
                Ok(0) => return self.on_eof(i),
                Ok(n) => n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e)
                    if matches!(errno_of(&e), Some(ECONNRESET | EPIPE))
                        && self.clients[i].stop == Stop::Stall =>
                {
                    return self.on_eof(i);
                }
                Err(e)
                    if matches!(errno_of(&e), Some(ECONNRESET | EPIPE))
                        && self.may_reconnect(i) =>
                {
                    return self.reconnect(i);
                }
                Err(e) => return Err(io_fail(format!("client {i} read"), e)),
            };
            let c = &mut self.clients[i];
            let expected_total = c.sent * factor;
            let base = c.recv;
            if base + n as u64 > expected_total {
                return Err(Failure::Integrity {
                    conn: i,
                    offset: base,
                    detail: format!(
                        "read {n} bytes but only {} of the answer are owed (duplicated bytes?)",
                        expected_total - base
                    ),
                });
            }
            let bad = if factor == 1 {
                check_pattern(&self.buf[..n], c.key, base)
            } else {
                (0..n).find(|&j| self.buf[j] != pattern(c.key, (base + j as u64) / factor))
            };
            if let Some(j) = bad {
                let off = base + j as u64;
                let (want, got) = (pattern(c.key, off / factor), self.buf[j]);
                return Err(Failure::Integrity {
                    conn: i,
                    offset: off,
                    detail: format!(
                        "expected {want:#04x}, got {got:#04x} (lost or reordered bytes)"
                    ),
                });
            }
            c.recv += n as u64;
            if slow {
                c.budget -= n;
            }
            self.stats.bytes += n as u64;
            if n < want && short_read_drains {
                break;
            }
        }
        // Write what may be written now.
        loop {
            let c = &self.clients[i];
            let target = self.send_target(c);
            if c.sent >= target || c.shut_wr {
                break;
            }
            let len = ((target - c.sent) as usize).min(self.buf.len());
            let (key, sent) = (c.key, c.sent);
            fill_pattern(&mut self.buf[..len], key, sent);
            match self.k.write(fd, &self.buf[..len]) {
                Ok(n) => {
                    self.clients[i].sent += n as u64;
                    self.stats.bytes_sent += n as u64;
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e)
                    if matches!(errno_of(&e), Some(ECONNRESET | EPIPE))
                        && self.may_reconnect(i) =>
                {
                    return self.reconnect(i);
                }
                Err(e) => return Err(io_fail(format!("client {i} write"), e)),
            }
        }
        let c = &self.clients[i];
        let all_sent = c.sent == c.send_total;
        match c.stop {
            Stop::Reset if all_sent => {
                self.k
                    .set_linger(fd, Some(0))
                    .map_err(|e| io_fail("SO_LINGER", e))?;
                self.close_client(i)?;
                return self.client_finished(i, false);
            }
            Stop::Complete if all_sent && self.spec.mode == ClientMode::HalfClose && !c.shut_wr => {
                self.k
                    .shutdown(fd, SHUT_WR)
                    .map_err(|e| io_fail("shutdown(SHUT_WR)", e))?;
                self.clients[i].shut_wr = true;
            }
            Stop::Complete
                if c.recv == c.send_total * factor && self.spec.mode != ClientMode::HalfClose =>
            {
                let hold = self.spec.mode == ClientMode::Echo;
                if !hold {
                    self.close_client(i)?;
                }
                return self.client_finished(i, hold);
            }
            _ => {}
        }
        if let ClientMode::SlowReader { interval_ns, .. } = self.spec.mode {
            let c = &self.clients[i];
            if c.budget == 0 && c.phase == Phase::Active && !c.tick_armed {
                // Out of budget: sleep until the next tick (reading nothing meanwhile).
                let at = self.now_ns() + interval_ns;
                self.ticks.push(Reverse((at, i as u32)));
                self.clients[i].tick_armed = true;
            }
        }
        Ok(())
    }

    /// Whether client `i` may give up its connection and make a new one: only where the
    /// scenario allows it (an overloaded server), and only before any answer came back.
    fn may_reconnect(&self, i: usize) -> bool {
        let c = &self.clients[i];
        c.retries < self.spec.connect_retries && c.recv == 0
    }

    /// Client `i`'s connection timed out or was reset before it was ever served (Linux resets a
    /// handshake the full accept queue never took): start over with a new socket, as a client
    /// library would. The request stream starts again from its first byte.
    fn reconnect(&mut self, i: usize) -> Result<(), Failure> {
        let c = &mut self.clients[i];
        c.retries += 1;
        c.sent = 0;
        c.shut_wr = false;
        let fd = std::mem::replace(&mut c.fd, -1);
        self.stats.connect_retries += 1;
        self.k
            .close(fd)
            .map_err(|e| io_fail("closing a failed connection", e))?;
        self.connect(i)
    }

    /// A held connection had an event: the server must neither send nor close now.
    fn check_held(&mut self, i: usize) -> Result<(), Failure> {
        let c = &self.clients[i];
        let (fd, recv) = (c.fd, c.recv);
        let detail = match self.k.read(fd, &mut self.buf) {
            Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()), // spurious
            Ok(0) => "the server closed the connection while the client held it open".to_string(),
            Ok(n) => format!("{n} bytes arrived that nobody asked for"),
            Err(e) => format!("the held connection failed: {e}"),
        };
        Err(Failure::Integrity {
            conn: i,
            offset: recv,
            detail,
        })
    }

    fn on_eof(&mut self, i: usize) -> Result<(), Failure> {
        let factor = u64::from(self.spec.server.reply_factor.max(1));
        let now = self.now_ns();
        let c = &mut self.clients[i];
        c.eof_ns = now;
        let owed = c.sent * factor;
        let expected = match c.stop {
            Stop::Stall => true,
            Stop::Complete => self.spec.mode == ClientMode::HalfClose && c.shut_wr,
            Stop::Reset => false,
        };
        if !expected {
            return Err(Failure::Integrity {
                conn: i,
                offset: c.recv,
                detail: format!(
                    "the server closed the connection early (sent {} of {} bytes)",
                    c.sent, c.send_total
                ),
            });
        }
        if c.recv != owed {
            return Err(Failure::Integrity {
                conn: i,
                offset: c.recv,
                detail: format!(
                    "end of file after {} of {owed} owed bytes (lost bytes)",
                    c.recv
                ),
            });
        }
        self.close_client(i)?;
        self.client_finished(i, false)
    }

    fn close_client(&mut self, i: usize) -> Result<(), Failure> {
        let c = &mut self.clients[i];
        c.phase = Phase::Done;
        let fd = std::mem::replace(&mut c.fd, -1);
        self.closed += 1;
        self.k
            .close(fd)
            .map_err(|e| io_fail(format!("closing client {i}"), e))
    }

    /// Client `i` reached its end. `hold`: keep the connection until everyone is done.
    fn client_finished(&mut self, i: usize, hold: bool) -> Result<(), Failure> {
        self.finished += 1;
        if hold {
            self.clients[i].phase = Phase::Holding;
            self.holding += 1;
        }
        Ok(())
    }

    /// Once everyone is done, closes the held connections, at most a window's worth whose
    /// end of file the server has not yet seen at a time (a hundred thousand FINs at once
    /// would only make the simulated network's event queue big).
    fn close_held(&mut self) -> Result<(), Failure> {
        if self.finished < self.spec.conns {
            return Ok(());
        }
        let window = self.spec.connect_window.max(1);
        while self.next_to_close < self.clients.len() {
            // Server connections whose client is closed and whose EOF is not yet handled.
            let held_left = self.holding - self.held_closed;
            let in_flight = self.server.open_conns().saturating_sub(held_left);
            if in_flight >= window {
                break;
            }
            let j = self.next_to_close;
            self.next_to_close += 1;
            if self.clients[j].phase == Phase::Holding {
                self.held_closed += 1;
                self.close_client(j)?;
            }
        }
        Ok(())
    }

    fn on_ticks(&mut self) -> Result<(), Failure> {
        let ClientMode::SlowReader { chunk, .. } = self.spec.mode else {
            return Ok(());
        };
        let now = self.now_ns();
        while let Some(&Reverse((at, i))) = self.ticks.peek() {
            if at > now {
                break;
            }
            self.ticks.pop();
            let i = i as usize;
            self.clients[i].tick_armed = false;
            if self.clients[i].phase == Phase::Active {
                self.clients[i].budget = chunk;
                self.step(i, None)?;
            }
        }
        Ok(())
    }

    fn on_storm(&mut self) -> Result<(), Failure> {
        let now = self.now_ns();
        let tolerance = if self.k.sim().is_some() {
            TICK_NS
        } else {
            REAL_SLACK_NS
        };
        while let Some(&Reverse((d, id))) = self.storm.heap.peek() {
            if d > now {
                break;
            }
            self.storm.heap.pop();
            let slot = &mut self.storm.due[id as usize];
            if *slot != Some(d) {
                continue; // cancelled or moved
            }
            *slot = None;
            if now < d || now - d > tolerance {
                return Err(Failure::Deadline {
                    what: format!("storm timer {id}"),
                    deadline_ns: d,
                    fired_ns: now,
                    tolerance_ns: tolerance,
                });
            }
            if d < self.storm.last_fired_ns {
                return Err(Failure::Invariant(format!(
                    "storm timer {id} (due {d} ns) fired after a timer due at {} ns",
                    self.storm.last_fired_ns
                )));
            }
            self.storm.last_fired_ns = d;
            self.stats.max_late_ns = self.stats.max_late_ns.max(now - d);
            self.storm.fired += 1;
            // Each firing cancels or moves another pending timer, as handlers do.
            let n = self.storm.due.len() as u64;
            let rng = self.storm.rng.as_mut().expect("storm rng");
            let other = rng.range(0, n - 1) as usize;
            let action = rng.range(0, 3);
            let delay = rng.range(1, self.spec.timer_span_ns.max(1) / 4 + 1);
            if let Some(old) = self.storm.due[other] {
                match action {
                    0 => {
                        self.storm.due[other] = None;
                        self.storm.cancelled += 1;
                    }
                    1 => {
                        let _ = old;
                        let new = now + delay;
                        self.storm.due[other] = Some(new);
                        self.storm.heap.push(Reverse((new, other as u32)));
                    }
                    _ => {}
                }
            }
        }
        // A timer that must fire must still be in the heap: checked at the end by count.
        Ok(())
    }

    /// The goal is met: check the deadlines, let the network drain, check for leaks.
    fn finish(&mut self) -> Result<(), Failure> {
        let sim = self.k.sim();
        let tolerance = if sim.is_some() {
            TICK_NS
        } else {
            REAL_SLACK_NS
        };
        let closes = self.server.stats().idle_closes.clone();
        for (deadline, at) in closes {
            if at < deadline || at - deadline > tolerance {
                return Err(Failure::Deadline {
                    what: "a server idle deadline".into(),
                    deadline_ns: deadline,
                    fired_ns: at,
                    tolerance_ns: tolerance,
                });
            }
            self.stats.max_late_ns = self.stats.max_late_ns.max(at - deadline);
        }
        let s = self.server.stats();
        let stallers = self
            .clients
            .iter()
            .filter(|c| c.stop == Stop::Stall)
            .count() as u64;
        if s.closed_idle != stallers {
            return Err(Failure::Invariant(format!(
                "the server closed {} connections for idleness; {stallers} clients stalled",
                s.closed_idle
            )));
        }
        if s.accepted != self.spec.conns as u64 {
            return Err(Failure::Invariant(format!(
                "the server accepted {} connections of {}",
                s.accepted, self.spec.conns
            )));
        }
        let fired_or_cancelled = self.storm.fired + self.storm.cancelled;
        if fired_or_cancelled != self.storm.due.len() as u64 {
            return Err(Failure::Invariant(format!(
                "{} storm timers fired and {} were cancelled, of {}",
                self.storm.fired,
                self.storm.cancelled,
                self.storm.due.len()
            )));
        }
        self.stats.conns = self.spec.conns as u64;
        if let Some(sim) = sim {
            // Let the last FINs and resets land, then nothing may be left behind.
            let mut events = [EpollEvent::EMPTY; 16];
            let mut guard = 0;
            while sim.pending() > 0 && guard < 1_000_000 {
                guard += 1;
                // Only the listener is registered now; a report from it would be a stray
                // connection, which the leak check below catches.
                match self.k.epoll_wait(self.ep, &mut events, 1000) {
                    Ok(_) => {}
                    Err(e) if errno_of(&e) == Some(EINTR) => {} // a signal (or the fault plan): again
                    Err(e) => return Err(io_fail("draining", e)),
                }
            }
            self.quiescence(true)?;
            let open = sim.open_files();
            if open != 2 {
                return Err(Failure::Invariant(format!(
                    "{open} files are open after the run; expected 2 (the epoll instance and the listener)"
                )));
            }
        }
        self.server
            .close_listener()
            .map_err(|e| io_fail("closing the listener", e))?;
        self.k
            .close(self.ep)
            .map_err(|e| io_fail("closing the epoll fd", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_pattern_is_the_pattern() {
        let key = mix(42);
        let mut buf = [0u8; 300];
        fill_pattern(&mut buf, key, 1000);
        for (j, &b) in buf.iter().enumerate() {
            assert_eq!(b, pattern(key, 1000 + j as u64));
        }
        assert_eq!(check_pattern(&buf, key, 1000), None);
        buf[123] ^= 1;
        assert_eq!(check_pattern(&buf, key, 1000), Some(123));
        // A shifted stream (one byte lost) is caught at once.
        fill_pattern(&mut buf, key, 1001);
        assert_eq!(check_pattern(&buf, key, 1000), Some(0));
    }
}

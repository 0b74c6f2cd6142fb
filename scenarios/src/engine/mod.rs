//! The workload engine: one hand-written event loop that drives the [`EchoServer`] and a
//! population of simulated clients on a single epoll instance, and checks the oracles as it
//! goes.
//!
//! # Model
//!
//! - **Clients** are the [`crate::clients`] library's state machines, one per connection, registered edge-triggered
//!   like the server's connections. At most [`Spec::connect_window`] connect at once. Each sends
//!   its connection's deterministic byte stream ([`crate::clients::pattern()`]) and checks every byte of the answer
//!   as it reads it (data integrity, incrementally: nothing is buffered for the check).
//! - What a client does is its [`ClientMode`]: request/response echo, pipelined then half-closed,
//!   reset in the middle of a message, stall (stop sending) or read slowly. Per-connection choices
//!   (which client stalls, where it resets) are drawn from the harness's own seeded stream.
//! - **Timers**: the server's idle deadlines and accept pauses, the slow readers' ticks and the
//!   timer-storm's timers all feed one timeout: `epoll_wait` sleeps to the earliest deadline,
//!   rounded up to the millisecond ([`TICK_NS`]).
//! - **Quiescence** (simulated kernel only): before a sleep with nothing in flight, the loop asks
//!   the kernel which registrations are ready with no event queued (the kernel's scan,
//!   [`crate::oracle::lost_wakeup`])
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

//!
//! # Files
//!
//! `mod.rs` the workload ([`Spec`]) and the loop; `kernel.rs` the kernel adapter ([`Kernel`]);
//! `storm.rs` the timer storm. The byte pattern and the client state machines are the
//! [`crate::clients`] library's.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use netpoll::sys::{errno::*, errno_of, Events, EPOLL_CLOEXEC};
use netpoll::{EpollEvent, Fd};
use netpoll_sim::Sim;

pub use crate::clients::Reconnect;
use crate::clients::{ClientMix, Clients};
use crate::oracle::{io_fail, lost_wakeup, Failure, Lateness};
use crate::raw_epoll::{tag, timeout_ms, EchoServer, ServerConfig, TICK_NS};

mod kernel;
mod storm;

pub use crate::clients::pattern::{check_pattern, fill_pattern, pattern};
pub use crate::clients::{ClientMode, Phase};
pub use crate::trace_out::FdLabel;
pub use crate::workload::{thread_cpu_ns, RunStats};
pub use kernel::{Kernel, REAL_SLACK_NS};

use storm::Storm;

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
    /// Whether and how a client makes a new connection after `connect` timed out
    /// (`ETIMEDOUT`: every SYN was dropped by a full accept queue) or the connection was reset
    /// before any answer (the server gave up a handshake it had no queue room for): see
    /// [`Reconnect`]. `None`: either fails the run.
    pub reconnect: Option<Reconnect>,
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
            reconnect: None,
            short_read_drains: true,
        }
    }
}

impl Spec {
    /// The client population this workload drives.
    pub fn client_mix(&self) -> ClientMix {
        let mut mix = ClientMix::new(self.conns, self.msgs, self.size).mode(self.mode);
        mix.connect_window = self.connect_window;
        mix.reconnect = self.reconnect;
        mix.reply_factor = self.server.reply_factor;
        mix.short_read_drains = self.short_read_drains;
        mix.label_fds = self.label_fds;
        mix
    }
}

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

/// [`Engine::tolerance`], for a caller that holds other parts of the engine.
fn tolerance(sim: Option<&Sim>, lateness: &Lateness, deadline_ns: u64, fired_ns: u64) -> u64 {
    match sim {
        None => REAL_SLACK_NS,
        Some(sim) => TICK_NS + lateness.allowance(sim, deadline_ns, fired_ns),
    }
}

/// The event loop and everything it drives.
struct Engine<'k, K: Kernel> {
    k: &'k K,
    spec: &'k Spec,
    ep: Fd,
    server: EchoServer<'k, K>,
    clients: Clients<'k, K>,
    storm: Storm,
    stats: RunStats,
    /// Syscalls since the last quiescence scan.
    scan_credit: u64,
    start_ns: u64,
    /// The handler cost charged by turn, for the deadline oracles' bound ([`Lateness`]).
    lateness: Lateness,
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
            let c = e.clients.stats();
            stats.bytes = c.bytes;
            stats.bytes_sent = c.bytes_sent;
            stats.connect_retries = c.connect_retries;
            labels = e.clients.take_labels();
            for &(at, fd, peer) in e.server.accept_log() {
                if let Some(i) = e.clients.client_at(peer) {
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
        if spec.conns >= netpoll_sim::MIN_EXPECTED_CONNS {
            // Sized like the kernel's tables (`SimConfig::expected_conns`), on either kernel.
            server.reserve(spec.conns);
        }
        let addr = server.local_addr().map_err(|e| io_fail("getsockname", e))?;
        let clients = Clients::new(k, ep, addr, spec.client_mix(), seed);
        let start_ns = k.now().as_nanos() as u64;
        let storm = Storm::new(seed, spec.timers, spec.timer_span_ns, start_ns);
        Ok(Engine {
            k,
            spec,
            ep,
            server,
            clients,
            storm,
            stats: RunStats::default(),
            scan_credit: 0,
            start_ns,
            lateness: Lateness::default(),
        })
    }

    /// How late a deadline due at `deadline_ns` may fire at `fired_ns`: [`REAL_SLACK_NS`] on
    /// the real kernel; on the simulated one a tick (the millisecond timeout's rounding) plus
    /// the handler cost charged after the deadline ([`Lateness`]).
    fn tolerance(&self, deadline_ns: u64, fired_ns: u64) -> u64 {
        tolerance(self.k.sim(), &self.lateness, deadline_ns, fired_ns)
    }

    fn now_ns(&self) -> u64 {
        self.k.now().as_nanos() as u64
    }

    fn goal_met(&self) -> bool {
        self.clients.done() && self.server.open_conns() == 0 && self.storm_done()
    }

    fn storm_done(&self) -> bool {
        self.storm.heap.is_empty()
    }

    fn next_deadline(&self) -> Option<u64> {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        min(
            min(
                self.server.next_deadline_ns(),
                self.clients.next_deadline_ns(),
            ),
            self.storm.next_deadline(),
        )
    }

    fn run(&mut self) -> Result<(), Failure> {
        let mut events = vec![EpollEvent::EMPTY; 1024];
        let mut soon = [0u64; 64];
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
            self.clients.start(self.server.open_conns())?;
            if self.goal_met() {
                break;
            }
            let now = self.now_ns();
            if let Some(sim) = self.k.sim() {
                self.lateness.mark_turn(sim);
            }
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
            // The kernel's look-ahead: the state of the events it will report next, asked of
            // the cache now so that it is there when they come.
            let m = self.k.upcoming(&mut soon);
            for &data in &soon[..m] {
                if Clients::<K>::owns(data) {
                    self.clients.hint(data);
                } else {
                    self.server.hint(data);
                }
            }
            // One pass reads the server slot or client state every event names, so that the
            // handlers below find them in the cache (their misses overlap here instead of
            // coming one at a time).
            for ev in &events[..n] {
                if Clients::<K>::owns(ev.data) {
                    self.clients.warm(ev.data);
                } else {
                    self.server.warm(ev.data);
                }
            }
            for ev in &events[..n] {
                let ev = *ev;
                if EchoServer::<K>::owns(ev.data) {
                    self.server.handle(ev).map_err(|e| io_fail("serving", e))?;
                } else if Clients::<K>::owns(ev.data) {
                    self.clients.handle(ev)?;
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
            self.clients.on_time(self.now_ns())?;
            self.on_storm()?;
        }
        self.finish()
    }

    fn hang(&self, why: &str) -> Failure {
        let waiting = self.clients.waiting();
        let mut detail = format!(
            "{why}; {waiting} of {} clients not done, {} server connections open",
            self.spec.conns,
            self.server.open_conns()
        );
        if let Some(c) = self.clients.first_unfinished() {
            detail.push_str(&format!("; first unfinished: {c}"));
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
    ///
    /// Inline up to the common case, once a turn of the loop: something is in flight.
    #[inline]
    fn quiescence(&mut self, forever: bool) -> Result<(), Failure> {
        match self.k.sim() {
            Some(sim) if sim.pending() == 0 => self.quiescence_scan(forever),
            _ => Ok(()),
        }
    }

    /// [`Engine::quiescence`] with nothing in flight on the simulated kernel.
    #[inline(never)]
    fn quiescence_scan(&mut self, forever: bool) -> Result<(), Failure> {
        let Some(sim) = self.k.sim() else {
            return Ok(());
        };
        let syscalls = sim.stats().syscalls;
        let registered =
            (self.server.open_conns() + self.spec.conns - self.clients.closed()) as u64 + 1;
        if !forever && syscalls < self.scan_credit + registered {
            return Ok(());
        }
        self.scan_credit = syscalls;
        self.stats.quiescence_checks += 1;
        lost_wakeup(sim, self.ep, |s| self.wants(s.data), |s| self.owner(s.data))
    }

    fn owner(&self, data: u64) -> String {
        match data & tag::MASK {
            tag::LISTENER => "the listener".into(),
            tag::SERVER => format!("server connection, slot {}", data & 0xffff_ffff),
            tag::CLIENT => self.clients.owner(data),
            _ => "unknown".into(),
        }
    }

    fn wants(&self, data: u64) -> Events {
        if EchoServer::<K>::owns(data) {
            return self.server.wants(data);
        }
        self.clients.wants(data)
    }

    fn on_storm(&mut self) -> Result<(), Failure> {
        if self.storm_done() {
            return Ok(()); // no storm, or it is over: nothing can fire
        }
        let now = self.now_ns();
        let span = self.spec.timer_span_ns;
        let (sim, lateness) = (self.k.sim(), &self.lateness);
        let late = self
            .storm
            .fire(now, |d| tolerance(sim, lateness, d, now), span)?;
        self.stats.max_late_ns = self.stats.max_late_ns.max(late);
        Ok(())
    }

    /// The goal is met: check the deadlines, let the network drain, check for leaks.
    fn finish(&mut self) -> Result<(), Failure> {
        let sim = self.k.sim();
        let closes = self.server.stats().idle_closes.clone();
        for (deadline, at) in closes {
            let tolerance = self.tolerance(deadline, at);
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
        let stallers = self.clients.stalled();
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

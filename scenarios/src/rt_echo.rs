//! `rt-echo`: the echo workload written as tasks on the Go-style netpoller ([`netpoll::rt`]),
//! not as a hand-written loop, with a lost-wakeup oracle at the netpoller's level.
//!
//! # What runs
//!
//! One seeded [`Runtime`] (the run's seed picks which runnable task goes next, and the order of
//! readiness and timers at one instant), or with `--workers N` a [`MultiRuntime`] of N
//! simulated threads interleaved by the seed, over the simulated kernel, or over real epoll
//! with `--backend real`. Every piece is a task in blocking style:
//!
//! - the **server**: an accept loop that takes exactly `conns` connections and spawns one task
//!   per connection; that task reads (with a read deadline of `deadline-ms` from each read,
//!   when it is not 0) and writes back what it read, until end of file, then closes;
//! - **clients** `0..conns`: connect, then `msgs` times: write a message of `size` bytes of
//!   the connection's deterministic stream ([`crate::engine::pattern`]), read its echo and check
//!   every byte; the last message is followed at once by a half-close (so the server may see
//!   data and end of file in one edge), and after its echo the client expects end of file (a
//!   byte more is a duplicate). The server reads into a buffer twice the message size, so
//!   most reads are short and the netpoller's short-read shortcut is exercised. At most
//!   `window` clients connect at once: client `i` starts client `i + window` once connected.
//!
//! # Oracles
//!
//! | oracle | how |
//! |---|---|
//! | lost wakeup (simulated kernel) | a [quiescence hook](Runtime::set_quiescence_hook) runs whenever the runtime is about to block with no runnable task; when nothing is in flight either (`Sim::pending() == 0`) and no timer is due, every task parked on a poll descriptor ([`netpoll::rt::Driver::parked`]) whose fd is ready for its side (read: `IN`, `RDHUP`, `HUP`, `ERR`; write: `OUT`, `HUP`, `ERR`) while the kernel has no event queued for it (the kernel's scan of the driver's epoll fd, [`crate::oracle::lost_wakeup`]) is a [`Failure::LostWakeup`] naming the fd, the task, the side, who owns the fd, and the fd's recent calls. The scan is amortised as the engine's is (once the syscalls since the last scan pay for a pass), and made every time the runtime would otherwise sleep for ever |
//! | hang | the simulated kernel's `Deadlock` from the runtime (its message names every task and what it waits on), the runtime's livelock verdict (`netpoll::rt::executor::Livelock`: every wait interrupted, or only spurious events, for `LIVELOCK_TURNS` turns in a row), a virtual hour passing, or (real kernel) 120 s of wall time |
//! | data integrity | every echoed byte against the stream, in order, exactly once (the end of file after the half-close proves nothing extra came) |
//! | totals and leaks | every connection accepted, served to end of file and closed; none closed by its deadline; no file left open once the runtime is gone |
//! | determinism | `--check-determinism`: two runs of one seed end with the same fingerprint |
//!
//! In a passing run the scan rarely happens: until the end, a correct echo always has a task
//! runnable or a packet in flight. The oracle's job is the failing run: it turns the stall a lost
//! wakeup causes (which would otherwise surface as the read deadline closing a connection, or as
//! a hang naming every task) into a report that names the descriptor, the parked task and the
//! calls that led there.
//!
//! # What it found
//!
//! Its traces showed every woken read leaving its edge behind (`READY`), so that the next read
//! that met `EAGAIN` read again for nothing; consuming that edge on wake
//! (`netpoll::rt::pd::Side::take_ready`) then exposed a lost wakeup the stale edge had been
//! hiding: data and the peer's half-close in one edge, a short read, and the short-read shortcut
//! parking the next read although the end of file gets no edge of its own. `tests/rt_net.rs`'s
//! `half_close` hung on it first; this scenario (whose clients half-close behind their last
//! message for that reason) reports it on every seed as a lost wakeup on a server connection's
//! read side. Both are fixed (`PollDesc::read_closed`), with regressions in
//! `tests/rt_regressions.rs`.
//!
//! # The canary
//!
//! `rt-canary` is the same workload over a broken kernel: the simulated kernel's `drop_event`
//! fault (at most once a run) drops the first readable event of a connection that
//! `epoll_wait` would report. The netpoller is correct; the kernel lost a wakeup, and the oracle
//! must say so (the
//! scenario FAILS ON PURPOSE; `scenarios/tests/rt_echo.rs` checks that it does, with the fd and
//! the replay line).
//!
//! # Not modelled
//!
//! - Clients and server share the runtime and its epoll instance.
//! - With `workers` (`--workers N`, N ≥ 1), a [`MultiRuntime`] of N workers: on the simulated
//!   kernel they are simulated threads ([`netpoll_threads`]) sharing the kernel, interleaved by
//!   the seed at every kernel call and every synchronisation point of the runtime; on the real
//!   kernel they are `std` threads (no replay). The lost-wakeup oracle runs at the runtime's
//!   quiescence (the poller about to block with every other worker asleep and nothing queued);
//!   a run whose threads all block with nothing in flight is a hang with each thread's blocking
//!   call. The fingerprint includes a hash of the schedule. The default (0) is the
//!   single-threaded, seeded [`Runtime`].
//! - A message is written in full before its echo is read, so `size` is capped at 64 KiB:
//!   larger ones could fill both directions' buffers on real Linux and deadlock by design.
//! - No resets, stalls or slow readers (the hand-written scenarios cover those); under the
//!   `faults` plans the kernel still cuts reads and writes short, splits segments, delays them,
//!   reports spurious events and `EINTR`.
//! - On the real kernel there is no lost-wakeup oracle and no replay.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::rc::Rc;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use netpoll::rt::executor::Livelock;
use netpoll::rt::pd::Dir;
use netpoll::rt::{self, Driver, MultiRuntime, OsThreads, Runtime, TcpListener, TcpStream};
use netpoll::{Events, Fd, Poller};
use netpoll_realnet::RealNet;
use netpoll_sim::trace::Record;
use netpoll_sim::Sim;
use netpoll_threads::{SimThreads, ThreadedSim};

use crate::engine::{check_pattern, fill_pattern, pattern};
use crate::oracle::{io_fail, lost_wakeup, Failure};
use crate::params::{ParamSpec, CONNS, FAULTS, MSGS, SIZE};
use crate::rng::mix;
use crate::swarm::Phase;
use crate::threaded::run_threads;
use crate::trace_out::{FdLabel, Schedule};
use crate::workload::{
    fd_limit, sim_config_for, sim_judged_by_loop, thread_cpu_ns, Backend, Kind, Report, Request,
    Run, RunStats, Tracing, Workload,
};

/// The registry name of the workload.
pub const NAME: &str = "rt-echo";
/// The registry name of its canary (fails on purpose).
pub const CANARY_NAME: &str = "rt-canary";

/// The `workers` parameter.
const WORKERS: &str = "workers";

/// Bytes a server connection reads at once (and the client's read buffer), at most.
const BUF_MAX: usize = 16 * 1024;

/// Bytes a client's buffer holds inline, in its future, before it is allocated on its own: one
/// default 64-byte message.
const CLIENT_INLINE: usize = 64;

/// Bytes a server connection's buffer holds inline: twice the default message (it reads into
/// twice the message size).
const SERVER_INLINE: usize = 128;

/// A task's read or write buffer: inline in the task's future up to `N` bytes (the default
/// 64-byte messages), so that with 100,000 connections live a message does not touch a
/// separately allocated buffer (a cache miss each) besides the task's own state. `N` is no
/// larger than the task needs: every byte of it spreads the future over more cache lines.
enum Buf<const N: usize> {
    Inline([u8; N], usize),
    Heap(Vec<u8>),
}

impl<const N: usize> Buf<N> {
    fn new(len: usize) -> Buf<N> {
        if len <= N {
            Buf::Inline([0; N], len)
        } else {
            Buf::Heap(vec![0; len])
        }
    }
}

impl<const N: usize> std::ops::Deref for Buf<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Inline(b, n) => &b[..*n],
            Buf::Heap(v) => v,
        }
    }
}

impl<const N: usize> std::ops::DerefMut for Buf<N> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Buf::Inline(b, n) => &mut b[..*n],
            Buf::Heap(v) => v,
        }
    }
}

/// The parameters of `rt-echo` (and `rt-canary`).
pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new(CONNS, 100, 1, 1_000_000, "connections"),
    ParamSpec::new(MSGS, 10, 1, 1_000_000, "messages per connection"),
    ParamSpec::new(
        SIZE,
        64,
        1,
        65_536,
        "bytes per message (written in full before the echo is read)",
    ),
    ParamSpec::new("window", 64, 1, 1_000_000, "clients connecting at once"),
    ParamSpec::new(
        WORKERS,
        0,
        0,
        64,
        "worker threads of a MultiRuntime, simulated threads interleaved by the seed (0: the single-threaded runtime)",
    ),
    ParamSpec::new(
        "deadline-ms",
        60_000,
        0,
        3_600_000,
        "the server's read deadline, from each read (0: none)",
    ),
    FAULTS,
];

/// The `rt-echo` workload, or (with `canary`) `rt-canary`: the same tasks over a kernel that
/// loses one read event for a parked reader, which the netpoller-level oracle must report.
#[derive(Clone, Copy, Debug)]
pub struct RtEcho {
    /// Steal one event (`rt-canary`, which fails on purpose).
    pub canary: bool,
}

/// `rt-echo`.
pub static RT_ECHO: RtEcho = RtEcho { canary: false };
/// `rt-canary`.
pub static RT_CANARY: RtEcho = RtEcho { canary: true };

impl Workload for RtEcho {
    fn name(&self) -> &str {
        if self.canary {
            CANARY_NAME
        } else {
            NAME
        }
    }
    fn about(&self) -> &str {
        if self.canary {
            "FAILS ON PURPOSE: rt-echo over a kernel that loses one read event for a parked reader"
        } else {
            "echo as tasks on the Go-style netpoller (netpoll::rt): an accept loop, a task per connection, N client tasks, seeded scheduling"
        }
    }
    fn invariants(&self) -> &str {
        if self.canary {
            "the netpoller-level lost-wakeup oracle must report the parked task and its fd"
        } else {
            "no task parked on a descriptor that is ready for its side at quiescence (the netpoller-level lost-wakeup oracle); every byte echoed once and in order; every connection served to end of file and closed; no read deadline fires"
        }
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn test_params(&self) -> &[(&'static str, u64)] {
        if self.canary {
            &[(CONNS, 4), (MSGS, 3)]
        } else {
            &[(CONNS, 20), (MSGS, 4), (SIZE, 300)]
        }
    }
    fn real_ok(&self) -> bool {
        !self.canary
    }
    fn kind(&self) -> Kind {
        if self.canary {
            Kind::Canary
        } else {
            Kind::Scenario
        }
    }
    fn run(&self, req: &Request, tracing: Tracing) -> Run {
        let (report, trace) = go(req, self.canary, tracing);
        Run { report, trace }
    }
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    conns: u64,
    msgs: u64,
    size: u64,
    window: u64,
    deadline: Option<Duration>,
    seed: u64,
    /// 0: the single-threaded runtime; otherwise a `MultiRuntime` of that many workers.
    workers: u64,
    /// Label every descriptor by who holds it (for a trace's tracks): only a traced run on
    /// the simulated kernel, the one place that decides it. At 100,000 connections the labels
    /// cost a lookup of each server connection's client among 100,000 addresses, cache misses
    /// all (about 2% of the run).
    labels: bool,
}

fn go(req: &Request, canary: bool, tracing: Tracing) -> (Report, Vec<Record>) {
    let p = &req.params;
    let cfg = Cfg {
        conns: p.get(CONNS),
        msgs: p.get(MSGS),
        size: p.get(SIZE),
        window: p.get("window"),
        deadline: Some(p.get("deadline-ms"))
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis),
        seed: req.seed,
        workers: p.get(WORKERS),
        labels: req.backend == Backend::Sim && !matches!(tracing, Tracing::Off),
    };
    let wall = Instant::now();
    let cpu = cpu_ns(cfg);
    let mut records = Vec::new();
    let mut fingerprint = None;
    let mut faults = None;
    let mut schedule = None;
    let mut out = match req.backend {
        Backend::Real => {
            fd_limit();
            let mut out = if cfg.workers == 0 {
                run_single(RealNet::new(), None, cfg)
            } else {
                run_multi(RealNet::new(), Arc::new(OsThreads), None, cfg)
            };
            out.stats.events = out.stats.epoll_events;
            out
        }
        Backend::Sim => {
            let sim = if canary {
                // The canary's broken kernel: its first reported readable event of a
                // connection is dropped (the kernel's `drop_event` fault), a lost wakeup the
                // netpoller cannot recover from.
                let mut c = sim_config_for(req);
                c.oracles.lost_wakeup = false;
                c.faults.drop_event = 1.0;
                c.faults.drop_event_max = 1;
                Sim::with_config(req.seed, c)
            } else {
                sim_judged_by_loop(req)
            };
            let trace = tracing.install(&sim);
            let mut judge = |mut out: Outcome, sim: &Sim, schedule: u64| {
                after_sim(&mut out, sim);
                if trace {
                    records = sim.take_trace();
                }
                // With threads, the schedule too (one thread has none: unchanged).
                let (a, b) = sim.fingerprint();
                let b = if schedule == 0 { b } else { mix(b ^ schedule) };
                fingerprint = Some((a, b));
                faults = Some(sim.fault_counts());
                out
            };
            if cfg.workers == 0 {
                let sim = Rc::new(sim);
                let out = run_single(sim.clone(), Some(sim.clone()), cfg);
                judge(out, &sim, 0)
            } else {
                let (out, k, hash, order) = on_threads(sim, cfg);
                schedule = trace.then_some(order);
                match k {
                    Some(k) => k.with_sim(|sim| judge(out, sim, hash)),
                    // A thread spins holding the kernel: report without it.
                    None => out,
                }
            }
        }
    };
    out.stats.wall_ns = wall.elapsed().as_nanos() as u64;
    out.stats.cpu_ns = cpu_ns(cfg).saturating_sub(cpu);
    let report = Report {
        request: req.clone(),
        stats: out.stats,
        failure: out.verdict.err(),
        labels: out.labels,
        schedule,
        fingerprint,
        faults,
        phase: Phase::Single,
    };
    (report, records)
}

/// CPU time so far: the calling thread's on one thread, the process's with workers (they run
/// on threads of their own).
fn cpu_ns(cfg: Cfg) -> u64 {
    if cfg.workers == 0 {
        thread_cpu_ns()
    } else {
        netpoll_realnet::process::process_cpu_ns()
    }
}

/// The kernel's verdicts and figures after a run on the simulated kernel.
fn after_sim(out: &mut Outcome, sim: &Sim) {
    out.verdict =
        crate::oracle::with_kernel_verdict(sim, std::mem::replace(&mut out.verdict, Ok(())));
    if out.verdict.is_ok() {
        // The runtime is gone (its tasks, descriptors, epoll instance): nothing may be left.
        let open = sim.open_files();
        if open != 0 {
            out.verdict = Err(Failure::Invariant(format!(
                "{open} files are open after the runtime was dropped; expected none"
            )));
        }
    }
    out.stats.count_kernel(sim);
}

/// Runs the workload on a [`MultiRuntime`] of `cfg.workers` simulated threads sharing `sim`,
/// interleaved by the run's seed ([`netpoll_threads::Policy::Random`]). Returns the outcome, the kernel, a
/// hash of the schedule (which thread made which call, in order), and the schedule for the
/// trace. A failure of the threads
/// themselves (every thread blocked with nothing in flight, a panic, a livelock) is a hang or
/// a panic of the run, with the scheduler's report (each thread's blocking call).
fn on_threads(sim: Sim, cfg: Cfg) -> (Outcome, Option<ThreadedSim>, u64, Schedule) {
    let run = run_threads(sim, cfg.seed, move |k| {
        run_multi(k.clone(), Arc::new(SimThreads), Some(k), cfg)
    });
    let out = match run.value {
        Ok(mut out) => {
            out.stats.switch_points = run.switch_points;
            out
        }
        Err(failure) => Outcome {
            stats: RunStats::default(),
            verdict: Err(failure),
            labels: Vec::new(),
        },
    };
    (out, run.kernel, run.schedule, run.trace_schedule)
}

/// Who holds an fd, for reports.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Listener,
    Client(u64),
    /// A server connection, with its peer's address (the client it serves is found by it).
    Server(SocketAddrV4),
}

/// What the tasks share with each other and with the harness (across worker threads when
/// `workers` is set: atomics and locks, uncontended on one thread).
struct Shared {
    /// The run's parameters: read here, not copied into each task's future (72 bytes a copy,
    /// in every client's and server connection's state).
    cfg: Cfg,
    failure: Mutex<Option<Failure>>,
    /// Whether `failure` is set: read at every blocking turn (by the oracle's hook), where
    /// the lock would be two locked instructions.
    failed: AtomicBool,
    /// Units of work left: every client, every server connection, the accept loop.
    left: AtomicU64,
    main: Mutex<Option<Waker>>,
    bytes: AtomicU64,
    bytes_sent: AtomicU64,
    accepted: AtomicU64,
    closed_eof: AtomicU64,
    closed_idle: AtomicU64,
    /// Owners by fd number (numbers are reused: the latest owner wins, which is the live one).
    owners: Mutex<Vec<Option<Owner>>>,
    /// Clients and their local addresses, in order of connecting (an address may come back
    /// in a longer run: the latest is its client). A list, not a map: a client's connect
    /// appends (a map insert was 1% of `rt-echo` at 100,000 connections, cache misses all),
    /// and only reports look an address up.
    ports: Mutex<Vec<(SocketAddrV4, u64)>>,
    /// (virtual ns, fd, owner) in order of opening, for trace files: kept only when the run
    /// labels its descriptors ([`Cfg::labels`]; at 100,000 connections, 6 MB written and a
    /// lock per descriptor for nothing otherwise).
    opened: Mutex<Vec<(u64, Fd, Owner)>>,
}

/// Locks `m`, ignoring poisoning (a task's panic fails the run anyway).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn for_run(cfg: Cfg) -> Arc<Shared> {
        Arc::new(Shared {
            cfg,
            failure: Mutex::default(),
            failed: AtomicBool::new(false),
            left: AtomicU64::new(2 * cfg.conns + 1),
            main: Mutex::default(),
            bytes: AtomicU64::default(),
            bytes_sent: AtomicU64::default(),
            accepted: AtomicU64::default(),
            closed_eof: AtomicU64::default(),
            closed_idle: AtomicU64::default(),
            // Sized for the run up front: grown as connections open, these lists reallocate
            // (and glibc consolidates the chunks freed so far) a few dozen times at 100,000.
            owners: Mutex::new(Vec::with_capacity(
                2 * cfg.conns.min(cfg.window) as usize + 16,
            )),
            ports: Mutex::new(Vec::with_capacity(cfg.conns as usize)),
            opened: Mutex::new(if cfg.labels {
                Vec::with_capacity(2 * cfg.conns as usize + 1)
            } else {
                Vec::new()
            }),
        })
    }

    fn fail(&self, f: Failure) {
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(f);
        }
        self.failed.store(true, Release);
        drop(slot);
        self.wake_main();
    }

    fn failed(&self) -> bool {
        self.failed.load(Acquire)
    }

    fn done_one(&self) {
        if self.left.fetch_sub(1, Relaxed) == 1 {
            self.wake_main();
        }
    }

    fn wake_main(&self) {
        let w = lock(&self.main).take();
        if let Some(w) = w {
            w.wake();
        }
    }

    fn own(&self, fd: Fd, who: Owner) {
        let i = fd as usize;
        let mut o = lock(&self.owners);
        if o.len() <= i {
            o.resize(i + 1, None);
        }
        o[i] = Some(who);
        drop(o);
        if self.cfg.labels {
            lock(&self.opened).push((now_ns(), fd, who));
        }
    }

    /// The client connected from `peer` (the latest), for a report.
    fn client_of(&self, peer: SocketAddrV4) -> Option<u64> {
        let ports = lock(&self.ports);
        ports
            .iter()
            .rev()
            .find(|&&(a, _)| a == peer)
            .map(|&(_, i)| i)
    }

    fn describe(&self, fd: Fd) -> String {
        let who = lock(&self.owners).get(fd as usize).copied().flatten();
        match who {
            Some(Owner::Listener) => "the listener".into(),
            Some(Owner::Client(i)) => format!("client {i}"),
            Some(Owner::Server(peer)) => match self.client_of(peer) {
                Some(i) => format!("the server's connection to client {i}"),
                None => format!("a server connection (peer {peer})"),
            },
            None => "a socket still connecting".into(),
        }
    }

    fn labels(&self) -> Vec<FdLabel> {
        let mut clients = BTreeMap::new();
        for &(addr, i) in lock(&self.ports).iter() {
            clients.insert(addr, i); // the latest client of an address wins
        }
        let opened = lock(&self.opened).clone();
        opened
            .iter()
            .filter_map(|&(at, fd, who)| match who {
                Owner::Listener => None,
                Owner::Client(i) => Some((at, fd, i as usize, false)),
                Owner::Server(peer) => clients.get(&peer).map(|&i| (at, fd, i as usize, true)),
            })
            .collect()
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

fn now_ns() -> u64 {
    rt::now().as_nanos() as u64
}

/// What a run produced before the harness adds the kernel's counters.
struct Outcome {
    stats: RunStats,
    verdict: Result<(), Failure>,
    labels: Vec<FdLabel>,
}

/// The events that wake a side's waiter (as [`netpoll::rt::pd::PollDesc::on_event`] routes
/// them).
pub fn side_events(dir: Dir) -> Events {
    match dir {
        Dir::Read => Events::IN | Events::RDHUP | Events::HUP | Events::ERR,
        Dir::Write => Events::OUT | Events::HUP | Events::ERR,
    }
}

/// The netpoller-level lost-wakeup oracle, run by the quiescence hook: `Err` with the failure
/// when a parked task's fd is ready for its side and the kernel has nothing queued for it.
fn lost_wakeups<P: Poller>(d: &Driver<P>, sim: &Sim, sh: &Shared) -> Result<(), Failure> {
    let parked = d.parked();
    if parked.is_empty() {
        return Ok(());
    }
    // What a parked task waits for: its side's events (two tasks may wait on one fd).
    let wants = |fd: Fd| {
        parked
            .iter()
            .filter(|p| p.fd == fd)
            .fold(Events::NONE, |w, p| w | side_events(p.dir))
    };
    lost_wakeup(
        sim,
        d.epfd(),
        |s| wants(s.fd),
        |s| {
            let p = parked
                .iter()
                .find(|p| p.fd == s.fd && s.ready.intersects(side_events(p.dir)))
                .expect("a lost wakeup is judged by a parked task's side");
            format!(
                "{}; task {} is parked on its {} side",
                sh.describe(p.fd),
                p.task,
                p.dir.name()
            )
        },
    )
}

/// The quiescence oracle's state: run whenever the runtime is about to block with no runnable
/// task (the single-threaded runtime's hook, or a [`MultiRuntime`]'s when every other worker
/// sleeps).
struct Quiet {
    sh: Arc<Shared>,
    scans: Arc<AtomicU64>,
    credit: u64,
    budget: Duration,
}

impl Quiet {
    fn new(sh: &Arc<Shared>, scans: &Arc<AtomicU64>, start: Duration) -> Quiet {
        Quiet {
            sh: sh.clone(),
            scans: scans.clone(),
            credit: 0,
            budget: start + Duration::from_secs(3600),
        }
    }

    /// Records what [`judge`](Self::judge) found (outside the kernel's lock) and says whether
    /// the runtime goes on.
    fn settle(&self, r: Result<(), (io::Error, Option<Failure>)>) -> io::Result<()> {
        r.map_err(|(e, f)| {
            if let Some(f) = f {
                self.sh.fail(f);
            }
            e
        })
    }

    /// `Err` stops the runtime, with the failure to record (if not recorded already).
    fn judge<P: Poller>(
        &mut self,
        d: &Driver<P>,
        sim: &Sim,
    ) -> Result<(), (io::Error, Option<Failure>)> {
        let sh = &self.sh;
        if sh.failed() {
            return Err((io::Error::other("a task failed"), None));
        }
        // The kernel's clock, not `d.poller()`'s: on simulated threads that is the same kernel,
        // already locked by the caller.
        let now = Poller::now(sim);
        if now > self.budget {
            let f = Failure::Hang {
                detail: "more than an hour of virtual time passed".into(),
                at_ns: sim.now_ns(),
            };
            return Err((io::Error::other("virtual time budget"), Some(f)));
        }
        if sim.pending() > 0 {
            return Ok(()); // something in flight may still wake a parked task
        }
        let next = d.next_timer();
        if next.is_some_and(|t| t <= now) {
            return Ok(()); // a timer is due: the runtime will not sleep
        }
        // The scan is a pass over the descriptor table: amortise it over the work done,
        // unless the runtime would sleep for ever.
        let syscalls = sim.stats().syscalls;
        if next.is_some() && syscalls < self.credit + sim.open_files() as u64 {
            return Ok(());
        }
        self.credit = syscalls;
        self.scans.fetch_add(1, Relaxed);
        lost_wakeups(d, sim, sh).map_err(|f| (io::Error::other("lost wakeup"), Some(f)))
    }
}

/// One run on the single-threaded runtime over `poller`; `sim` is the simulated kernel behind
/// it (for the oracles).
fn run_single<P: Poller + 'static>(poller: P, sim: Option<Rc<Sim>>, cfg: Cfg) -> Outcome {
    let mut rt = match Runtime::seeded(poller, cfg.seed) {
        Ok(rt) => rt,
        Err(e) => return Outcome::broken(e),
    };
    let sh = Shared::for_run(cfg);
    let scans = Arc::new(AtomicU64::new(0));
    let start = rt.driver().poller().now();
    if let Some(sim) = sim.clone() {
        let mut q = Quiet::new(&sh, &scans, start);
        rt.set_quiescence_hook(move |d| {
            let r = q.judge(d, &sim);
            q.settle(r)
        });
    }
    let r = rt.block_on(main_or_timeout::<P>(sh.clone(), sim.is_none()));
    let end = rt.driver().poller().now();
    let events = rt.driver().dispatched();
    drop(rt); // closes whatever the tasks still held (after a failure)
    let now = sim.as_ref().map_or(0, |s| s.now_ns());
    judged(r, &sh, cfg, now, &scans).with_times(events, start, end)
}

/// One run on a [`MultiRuntime`] of `workers` threads over `poller`: `std` threads on the real
/// kernel, or (`sim`) simulated threads sharing the simulated kernel, interleaved by the seed.
fn run_multi<P: Poller + Send + Sync + 'static>(
    poller: P,
    threads: Arc<dyn netpoll::rt::Threads>,
    sim: Option<ThreadedSim>,
    cfg: Cfg,
) -> Outcome {
    let mut rt = match MultiRuntime::with_threads(poller, cfg.workers as usize, threads) {
        Ok(rt) => rt,
        Err(e) => return Outcome::broken(e),
    };
    let sh = Shared::for_run(cfg);
    let scans = Arc::new(AtomicU64::new(0));
    let start = rt.driver().poller().now();
    if let Some(k) = sim.clone() {
        let mut q = Quiet::new(&sh, &scans, start);
        rt.set_quiescence_hook(move |d| {
            // Judged with the kernel locked; the failure is recorded after (recording wakes the
            // main task, a switch point, which must not happen with the kernel locked).
            let r = k.with_sim(|s| q.judge(d, s));
            q.settle(r)
        });
    }
    let r = rt.block_on(main_or_timeout::<P>(sh.clone(), sim.is_none()));
    let end = rt.driver().poller().now();
    let events = rt.driver().dispatched();
    drop(rt); // closes whatever the tasks still held (after a failure)
    let now = sim.as_ref().map_or(0, |k| k.with_sim(Sim::now_ns));
    judged(r, &sh, cfg, now, &scans).with_times(events, start, end)
}

/// The main task, bounded by 120 s of wall time on the real kernel.
async fn main_or_timeout<P: Poller + 'static>(sh: Arc<Shared>, real: bool) -> Result<(), Failure> {
    let main = main_task::<P>(sh.clone());
    if !real {
        return main.await;
    }
    match rt::timeout(Duration::from_secs(120), main).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Hang {
            detail: format!(
                "the run took more than 120 s on the real kernel; {} units of work left",
                Shared::get(&sh.left)
            ),
            at_ns: now_ns(),
        }),
    }
}

/// The run's verdict from what `block_on` returned and what the tasks recorded.
fn judged(
    r: io::Result<Result<(), Failure>>,
    sh: &Shared,
    cfg: Cfg,
    now_ns: u64,
    scans: &AtomicU64,
) -> Outcome {
    let mut verdict = match r {
        Ok(v) => v,
        // The runtime's own verdicts: no task can ever run again, or the kernel keeps it
        // turning without progress (every wait interrupted, only spurious events).
        Err(e) if e.kind() == io::ErrorKind::Deadlock || Livelock::is_livelock(&e) => Err(Failure::Hang {
            detail: format!(
                "{e}; {} units of work left ({} clients and server connections, and the accept loop)",
                Shared::get(&sh.left),
                2 * cfg.conns + 1
            ),
            at_ns: now_ns,
        }),
        Err(e) => Err(io_fail("running the runtime", e)),
    };
    // A task's failure (or the oracle's) is the run's, whatever the runtime said after it.
    if let Some(f) = lock(&sh.failure).take() {
        verdict = Err(f);
    }
    if verdict.is_ok() {
        verdict = totals(sh, cfg);
    }
    let stats = RunStats {
        conns: Shared::get(&sh.accepted),
        bytes: Shared::get(&sh.bytes),
        bytes_sent: Shared::get(&sh.bytes_sent),
        closed_eof: Shared::get(&sh.closed_eof),
        closed_idle: Shared::get(&sh.closed_idle),
        quiescence_checks: scans.load(Relaxed),
        ..RunStats::default()
    };
    Outcome {
        stats,
        verdict,
        labels: if cfg.labels { sh.labels() } else { Vec::new() },
    }
}

impl Outcome {
    fn broken(e: io::Error) -> Outcome {
        Outcome {
            stats: RunStats::default(),
            verdict: Err(io_fail("creating the runtime", e)),
            labels: Vec::new(),
        }
    }

    /// Adds the driver's figures.
    fn with_times(mut self, epoll_events: u64, start: Duration, end: Duration) -> Outcome {
        self.stats.epoll_events = epoll_events;
        self.stats.virtual_ns = end.saturating_sub(start).as_nanos() as u64;
        self
    }
}

fn totals(sh: &Shared, cfg: Cfg) -> Result<(), Failure> {
    let want = cfg.conns * cfg.msgs * cfg.size;
    if Shared::get(&sh.accepted) != cfg.conns {
        return Err(Failure::Invariant(format!(
            "the server accepted {} connections of {}",
            Shared::get(&sh.accepted),
            cfg.conns
        )));
    }
    if Shared::get(&sh.closed_idle) != 0 {
        return Err(Failure::Invariant(format!(
            "{} connections were closed by the server's read deadline; no client stalls",
            Shared::get(&sh.closed_idle)
        )));
    }
    if Shared::get(&sh.closed_eof) != cfg.conns {
        return Err(Failure::Invariant(format!(
            "{} server connections ended at end of file, of {}",
            Shared::get(&sh.closed_eof),
            cfg.conns
        )));
    }
    if Shared::get(&sh.bytes) != want || Shared::get(&sh.bytes_sent) != want {
        return Err(Failure::Invariant(format!(
            "{} bytes echoed and {} sent; expected {want} each",
            Shared::get(&sh.bytes),
            Shared::get(&sh.bytes_sent)
        )));
    }
    Ok(())
}

async fn main_task<P: Poller + 'static>(sh: Arc<Shared>) -> Result<(), Failure> {
    let cfg = sh.cfg;
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let ln = TcpListener::<P>::bind(any).map_err(|e| io_fail("binding the listener", e))?;
    sh.own(ln.as_raw_fd(), Owner::Listener);
    let addr = ln
        .local_addr()
        .map_err(|e| io_fail("the listener's address", e))?;
    rt::spawn(accept_loop(ln, sh.clone()));
    for i in 0..cfg.window.min(cfg.conns) {
        rt::spawn(client::<P>(sh.clone(), addr, i));
    }
    std::future::poll_fn(|cx| {
        if Shared::get(&sh.left) == 0 || sh.failed() {
            return Poll::Ready(());
        }
        *lock(&sh.main) = Some(cx.waker().clone());
        // Again after storing the waker: on several workers the last unit may end in between.
        if Shared::get(&sh.left) == 0 || sh.failed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    Ok(())
}

async fn accept_loop<P: Poller + 'static>(ln: TcpListener<P>, sh: Arc<Shared>) {
    for _ in 0..sh.cfg.conns {
        match ln.accept().await {
            Ok((conn, peer)) => {
                Shared::add(&sh.accepted, 1);
                sh.own(conn.as_raw_fd(), Owner::Server(peer));
                rt::spawn(serve(conn, sh.clone()));
            }
            Err(e) => return sh.fail(io_fail("accepting", e)),
        }
    }
    drop(ln);
    sh.done_one();
}

/// A server connection's task. A function returning an `async` block, not an `async fn`: an
/// `async fn` keeps its arguments twice in its future (as captured and as locals; rustc
/// #62958), 40 bytes of every server connection's state (280 bytes, 240 this way).
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
fn serve<P: Poller + 'static>(
    conn: TcpStream<P>,
    sh: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        // Twice the message: most reads are short, so the netpoller's short-read shortcut (park
        // without the read that would say EAGAIN) is on the path.
        let mut buf = Buf::<SERVER_INLINE>::new((2 * sh.cfg.size as usize).clamp(1, BUF_MAX));
        let fd = conn.as_raw_fd();
        loop {
            if let Some(d) = sh.cfg.deadline {
                if let Err(e) = conn.set_read_deadline(Some(rt::now() + d)) {
                    return sh.fail(io_fail(format!("setting the read deadline of fd {fd}"), e));
                }
            }
            let n = match conn.read(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    Shared::add(&sh.closed_idle, 1);
                    break;
                }
                Err(e) => return sh.fail(io_fail(format!("server reading fd {fd}"), e)),
            };
            if n == 0 {
                Shared::add(&sh.closed_eof, 1);
                break;
            }
            if let Err(e) = conn.write_all(&buf[..n]).await {
                return sh.fail(io_fail(format!("server writing fd {fd}"), e));
            }
        }
        drop(conn);
        sh.done_one();
    }
}

/// [`client`], boxed: a client starts the next one, and the explicit `Send` future type breaks
/// that cycle for the compiler.
fn client_task<P: Poller + 'static>(
    sh: Arc<Shared>,
    addr: SocketAddrV4,
    i: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(client::<P>(sh, addr, i))
}

async fn client<P: Poller + 'static>(sh: Arc<Shared>, addr: SocketAddrV4, i: u64) {
    // The body gets its own reference: through `&sh` each of its reads of the parameters and
    // counters would first load a line of this outer future.
    if let Err(f) = client_body::<P>(sh.clone(), addr, i).await {
        return sh.fail(f);
    }
    sh.done_one();
}

async fn client_body<P: Poller + 'static>(
    sh: Arc<Shared>,
    addr: SocketAddrV4,
    i: u64,
) -> Result<(), Failure> {
    let cfg = &sh.cfg;
    // 28,232 ephemeral ports per address: past 20,000 clients, spread them over 127.0.0.1,
    // .2, ..., 10,000 each, as the echo engine does (all at once, 100,000 clients would run out
    // of ports on one address).
    let s = if cfg.conns > 20_000 {
        let ip = Ipv4Addr::new(127, 0, 0, 1 + (i / 10_000) as u8);
        TcpStream::<P>::connect_from(SocketAddrV4::new(ip, 0), addr).await
    } else {
        TcpStream::<P>::connect(addr).await
    };
    let s = s.map_err(|e| io_fail(format!("client {i} connecting"), e))?;
    sh.own(s.as_raw_fd(), Owner::Client(i));
    let local = s
        .local_addr()
        .map_err(|e| io_fail(format!("client {i}'s address"), e))?;
    lock(&sh.ports).push((local, i));
    let next = i + cfg.window;
    if next < cfg.conns {
        rt::spawn(client_task::<P>(sh.clone(), addr, next));
    }
    let key = mix(cfg.seed ^ mix(i + 1));
    // One buffer for the message and its echo (the next message is generated anew), unless
    // the message is larger than a read: one fewer buffer in the task's future to touch.
    let mut out = Buf::<CLIENT_INLINE>::new(cfg.size as usize);
    let mut big_in = (cfg.size as usize > BUF_MAX).then(|| vec![0u8; BUF_MAX]);
    for m in 0..cfg.msgs {
        let base = m * cfg.size;
        fill_pattern(&mut out, key, base);
        s.write_all(&out)
            .await
            .map_err(|e| io_fail(format!("client {i} writing message {m}"), e))?;
        Shared::add(&sh.bytes_sent, cfg.size);
        if m + 1 == cfg.msgs {
            // Half-close behind the last message, before its echo: the server may see the data
            // and the end of file in one edge.
            s.shutdown(Shutdown::Write)
                .map_err(|e| io_fail(format!("client {i} half-closing"), e))?;
        }
        let inb: &mut [u8] = match big_in.as_mut() {
            Some(b) => b,
            None => &mut out,
        };
        let mut got = 0u64;
        while got < cfg.size {
            let want = ((cfg.size - got) as usize).min(inb.len());
            let n = s
                .read(&mut inb[..want])
                .await
                .map_err(|e| io_fail(format!("client {i} reading message {m}"), e))?;
            let off = base + got;
            if n == 0 {
                return Err(Failure::Integrity {
                    conn: i as usize,
                    offset: off,
                    detail: format!(
                        "end of file with {} bytes of message {m} missing",
                        cfg.size - got
                    ),
                });
            }
            if let Some(j) = check_pattern(&inb[..n], key, off) {
                return Err(Failure::Integrity {
                    conn: i as usize,
                    offset: off + j as u64,
                    detail: format!(
                        "expected {:#04x}, got {:#04x}",
                        pattern(key, off + j as u64),
                        inb[j]
                    ),
                });
            }
            got += n as u64;
            Shared::add(&sh.bytes, n as u64);
        }
    }
    // Everything came back once; anything more would be a duplicate.
    let mut one = [0u8; 1];
    let n = s
        .read(&mut one)
        .await
        .map_err(|e| io_fail(format!("client {i} reading end of file"), e))?;
    if n != 0 {
        return Err(Failure::Integrity {
            conn: i as usize,
            offset: cfg.msgs * cfg.size,
            detail: format!("a byte ({:#04x}) after the last echo", one[0]),
        });
    }
    Ok(())
}

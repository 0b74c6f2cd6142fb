//! `rt-echo`: the echo workload written as tasks on the Go-style netpoller ([`netpoll::rt`]),
//! not as a hand-written loop, with a lost-wakeup oracle at the netpoller's level.
//!
//! # What runs
//!
//! One seeded [`Runtime`] (the run's seed picks which runnable task goes next, and the order of
//! readiness and timers at one instant) over the simulated kernel, or over real epoll with
//! `--backend real`. Every piece is a task in blocking style:
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
//! - One thread: the single-threaded [`Runtime`], not [`netpoll::rt::MultiRuntime`] (which the
//!   simulated kernel cannot host). Clients and server share the runtime and its epoll instance.
//! - A message is written in full before its echo is read, so `size` is capped at 64 KiB:
//!   larger ones could fill both directions' buffers on real Linux and deadlock by design.
//! - No resets, stalls or slow readers (the hand-written scenarios cover those); under the
//!   `faults` plans the kernel still cuts reads and writes short, splits segments, delays them,
//!   reports spurious events and `EINTR`.
//! - On the real kernel there is no lost-wakeup oracle and no replay.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use netpoll::rt::executor::Livelock;
use netpoll::rt::pd::Dir;
use netpoll::rt::{self, Driver, Runtime, TcpListener, TcpStream};
use netpoll::{Events, Fd, Poller};
use netpoll_realnet::RealNet;
use netpoll_sim::trace::Record;
use netpoll_sim::Sim;

use crate::engine::{check_pattern, fill_pattern, pattern};
use crate::oracle::{io_fail, lost_wakeup, Failure};
use crate::params::{ParamSpec, CONNS, FAULTS, MSGS, SIZE};
use crate::rng::mix;
use crate::trace_out::FdLabel;
use crate::workload::{
    fd_limit, sim_config_for, sim_judged_by_loop, thread_cpu_ns, Backend, Kind, Report, Request,
    Run, RunStats, Tracing, Workload,
};

/// The registry name of the workload.
pub const NAME: &str = "rt-echo";
/// The registry name of its canary (fails on purpose).
pub const CANARY_NAME: &str = "rt-canary";

/// Bytes a server connection reads at once (and the client's read buffer), at most.
const BUF_MAX: usize = 16 * 1024;

/// Bytes a task's buffer holds inline, in its future, before it is allocated on its own.
const INLINE: usize = 128;

/// A task's read or write buffer: inline in the task's future up to [`INLINE`] bytes (the
/// default 64-byte messages), so that with 100,000 connections live a message does not touch
/// a separately allocated buffer (a cache miss each) besides the task's own state.
enum Buf {
    Inline([u8; INLINE], usize),
    Heap(Vec<u8>),
}

impl Buf {
    fn new(len: usize) -> Buf {
        if len <= INLINE {
            Buf::Inline([0; INLINE], len)
        } else {
            Buf::Heap(vec![0; len])
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Inline(b, n) => &b[..*n],
            Buf::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Buf {
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
    };
    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    let mut trace = false;
    let (mut out, sim) = match req.backend {
        Backend::Real => {
            fd_limit();
            (run_rt(RealNet::new(), None, cfg), None)
        }
        Backend::Sim => {
            let sim = Rc::new(if canary {
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
            });
            trace = tracing.install(&sim);
            let mut out = run_rt(sim.clone(), Some(sim.clone()), cfg);
            out.verdict = crate::oracle::with_kernel_verdict(&sim, out.verdict);
            (out, Some(sim))
        }
    };
    let mut records = Vec::new();
    if let Some(sim) = &sim {
        if out.verdict.is_ok() {
            // The runtime is gone (its tasks, descriptors, epoll instance): nothing may be left.
            let open = sim.open_files();
            if open != 0 {
                out.verdict = Err(Failure::Invariant(format!(
                    "{open} files are open after the runtime was dropped; expected none"
                )));
            }
        }
        let st = sim.stats();
        out.stats.syscalls = st.syscalls;
        out.stats.deliveries = st.deliveries;
        out.stats.events = st.syscalls + st.deliveries;
        if trace {
            records = sim.take_trace();
        }
    } else {
        out.stats.events = out.stats.epoll_events;
    }
    out.stats.wall_ns = wall.elapsed().as_nanos() as u64;
    out.stats.cpu_ns = thread_cpu_ns().saturating_sub(cpu);
    let report = Report {
        request: req.clone(),
        stats: out.stats,
        failure: out.verdict.err(),
        labels: if trace { out.labels } else { Vec::new() },
        fingerprint: sim.as_ref().map(|s| s.fingerprint()),
        faults: sim.as_ref().map(|s| s.fault_counts()),
    };
    (report, records)
}

/// Who holds an fd, for reports.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Listener,
    Client(u64),
    /// A server connection, with its peer's address (the client it serves is found by it).
    Server(SocketAddrV4),
}

/// What the tasks share with each other and with the harness.
#[derive(Default)]
struct Shared {
    failure: RefCell<Option<Failure>>,
    /// Units of work left: every client, every server connection, the accept loop.
    left: Cell<u64>,
    main: RefCell<Option<Waker>>,
    bytes: Cell<u64>,
    bytes_sent: Cell<u64>,
    accepted: Cell<u64>,
    closed_eof: Cell<u64>,
    closed_idle: Cell<u64>,
    /// Owners by fd number (numbers are reused: the latest owner wins, which is the live one).
    owners: RefCell<Vec<Option<Owner>>>,
    /// Clients by their local address.
    ports: RefCell<BTreeMap<SocketAddrV4, u64>>,
    /// (virtual ns, fd, owner) in order of opening, for trace files.
    opened: RefCell<Vec<(u64, Fd, Owner)>>,
}

impl Shared {
    fn fail(&self, f: Failure) {
        let mut slot = self.failure.borrow_mut();
        if slot.is_none() {
            *slot = Some(f);
        }
        drop(slot);
        self.wake_main();
    }

    fn failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    fn done_one(&self) {
        self.left.set(self.left.get() - 1);
        if self.left.get() == 0 {
            self.wake_main();
        }
    }

    fn wake_main(&self) {
        if let Some(w) = self.main.borrow_mut().take() {
            w.wake();
        }
    }

    fn own(&self, fd: Fd, who: Owner) {
        let i = fd as usize;
        let mut o = self.owners.borrow_mut();
        if o.len() <= i {
            o.resize(i + 1, None);
        }
        o[i] = Some(who);
        self.opened.borrow_mut().push((now_ns(), fd, who));
    }

    fn client_of(&self, peer: SocketAddrV4) -> Option<u64> {
        self.ports.borrow().get(&peer).copied()
    }

    fn describe(&self, fd: Fd) -> String {
        match self.owners.borrow().get(fd as usize).copied().flatten() {
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
        self.opened
            .borrow()
            .iter()
            .filter_map(|&(at, fd, who)| match who {
                Owner::Listener => None,
                Owner::Client(i) => Some((at, fd, i as usize, false)),
                Owner::Server(peer) => self.client_of(peer).map(|i| (at, fd, i as usize, true)),
            })
            .collect()
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

/// One run on `poller`; `sim` is the simulated kernel behind it (for the oracles).
fn run_rt<P: Poller + 'static>(poller: P, sim: Option<Rc<Sim>>, cfg: Cfg) -> Outcome {
    let mut stats = RunStats::default();
    let mut rt = match Runtime::seeded(poller, cfg.seed) {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome {
                stats,
                verdict: Err(io_fail("creating the runtime", e)),
                labels: Vec::new(),
            }
        }
    };
    let sh = Rc::new(Shared::default());
    sh.left.set(2 * cfg.conns + 1);
    let start = rt.driver().poller().now();
    let scans = Rc::new(Cell::new(0u64));
    if let Some(sim) = sim.clone() {
        let sh = sh.clone();
        let scans = scans.clone();
        let mut credit = 0u64;
        let budget = start + Duration::from_secs(3600);
        rt.set_quiescence_hook(move |d| {
            if sh.failed() {
                return Err(io::Error::other("a task failed"));
            }
            let now = d.poller().now();
            if now > budget {
                sh.fail(Failure::Hang {
                    detail: "more than an hour of virtual time passed".into(),
                    at_ns: sim.now_ns(),
                });
                return Err(io::Error::other("virtual time budget"));
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
            if next.is_some() && syscalls < credit + sim.open_files() as u64 {
                return Ok(());
            }
            credit = syscalls;
            scans.set(scans.get() + 1);
            match lost_wakeups(d, &sim, &sh) {
                Ok(()) => Ok(()),
                Err(f) => {
                    sh.fail(f);
                    Err(io::Error::other("lost wakeup"))
                }
            }
        });
    }
    let real = sim.is_none();
    let sh2 = sh.clone();
    let r = rt.block_on(async move {
        let main = main_task::<P>(sh2.clone(), cfg);
        if real {
            match rt::timeout(Duration::from_secs(120), main).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Hang {
                    detail: format!(
                        "the run took more than 120 s on the real kernel; {} units of work left",
                        sh2.left.get()
                    ),
                    at_ns: now_ns(),
                }),
            }
        } else {
            main.await
        }
    });
    let end = rt.driver().poller().now();
    stats.epoll_events = rt.driver().dispatched();
    let mut verdict = match r {
        Ok(v) => v,
        // The runtime's own verdicts: no task can ever run again, or the kernel keeps it
        // turning without progress (every wait interrupted, only spurious events).
        Err(e) if e.kind() == io::ErrorKind::Deadlock || Livelock::is_livelock(&e) => Err(Failure::Hang {
            detail: format!(
                "{e}; {} units of work left ({} clients and server connections, and the accept loop)",
                sh.left.get(),
                2 * cfg.conns + 1
            ),
            at_ns: sim.as_ref().map_or(0, |s| s.now_ns()),
        }),
        Err(e) => Err(io_fail("running the runtime", e)),
    };
    // A task's failure (or the oracle's) is the run's, whatever the runtime said after it.
    if let Some(f) = sh.failure.borrow_mut().take() {
        verdict = Err(f);
    }
    if verdict.is_ok() {
        verdict = totals(&sh, cfg);
    }
    stats.conns = sh.accepted.get();
    stats.bytes = sh.bytes.get();
    stats.bytes_sent = sh.bytes_sent.get();
    stats.closed_eof = sh.closed_eof.get();
    stats.closed_idle = sh.closed_idle.get();
    stats.virtual_ns = end.saturating_sub(start).as_nanos() as u64;
    stats.quiescence_checks = scans.get();
    let labels = sh.labels();
    drop(rt); // closes whatever the tasks still held (after a failure)
    Outcome {
        stats,
        verdict,
        labels,
    }
}

fn totals(sh: &Shared, cfg: Cfg) -> Result<(), Failure> {
    let want = cfg.conns * cfg.msgs * cfg.size;
    if sh.accepted.get() != cfg.conns {
        return Err(Failure::Invariant(format!(
            "the server accepted {} connections of {}",
            sh.accepted.get(),
            cfg.conns
        )));
    }
    if sh.closed_idle.get() != 0 {
        return Err(Failure::Invariant(format!(
            "{} connections were closed by the server's read deadline; no client stalls",
            sh.closed_idle.get()
        )));
    }
    if sh.closed_eof.get() != cfg.conns {
        return Err(Failure::Invariant(format!(
            "{} server connections ended at end of file, of {}",
            sh.closed_eof.get(),
            cfg.conns
        )));
    }
    if sh.bytes.get() != want || sh.bytes_sent.get() != want {
        return Err(Failure::Invariant(format!(
            "{} bytes echoed and {} sent; expected {want} each",
            sh.bytes.get(),
            sh.bytes_sent.get()
        )));
    }
    Ok(())
}

async fn main_task<P: Poller + 'static>(sh: Rc<Shared>, cfg: Cfg) -> Result<(), Failure> {
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let ln = TcpListener::<P>::bind(any).map_err(|e| io_fail("binding the listener", e))?;
    sh.own(ln.as_raw_fd(), Owner::Listener);
    let addr = ln
        .local_addr()
        .map_err(|e| io_fail("the listener's address", e))?;
    rt::spawn_local(accept_loop(ln, sh.clone(), cfg));
    for i in 0..cfg.window.min(cfg.conns) {
        rt::spawn_local(client::<P>(sh.clone(), cfg, addr, i));
    }
    std::future::poll_fn(|cx| {
        if sh.left.get() == 0 || sh.failed() {
            Poll::Ready(())
        } else {
            *sh.main.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
    Ok(())
}

async fn accept_loop<P: Poller + 'static>(ln: TcpListener<P>, sh: Rc<Shared>, cfg: Cfg) {
    for _ in 0..cfg.conns {
        match ln.accept().await {
            Ok((conn, peer)) => {
                sh.accepted.set(sh.accepted.get() + 1);
                sh.own(conn.as_raw_fd(), Owner::Server(peer));
                rt::spawn_local(serve(conn, sh.clone(), cfg));
            }
            Err(e) => return sh.fail(io_fail("accepting", e)),
        }
    }
    drop(ln);
    sh.done_one();
}

async fn serve<P: Poller + 'static>(conn: TcpStream<P>, sh: Rc<Shared>, cfg: Cfg) {
    // Twice the message: most reads are short, so the netpoller's short-read shortcut (park
    // without the read that would say EAGAIN) is on the path.
    let mut buf = Buf::new((2 * cfg.size as usize).clamp(1, BUF_MAX));
    let fd = conn.as_raw_fd();
    loop {
        if let Some(d) = cfg.deadline {
            if let Err(e) = conn.set_read_deadline(Some(rt::now() + d)) {
                return sh.fail(io_fail(format!("setting the read deadline of fd {fd}"), e));
            }
        }
        let n = match conn.read(&mut buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                sh.closed_idle.set(sh.closed_idle.get() + 1);
                break;
            }
            Err(e) => return sh.fail(io_fail(format!("server reading fd {fd}"), e)),
        };
        if n == 0 {
            sh.closed_eof.set(sh.closed_eof.get() + 1);
            break;
        }
        if let Err(e) = conn.write_all(&buf[..n]).await {
            return sh.fail(io_fail(format!("server writing fd {fd}"), e));
        }
    }
    drop(conn);
    sh.done_one();
}

async fn client<P: Poller + 'static>(sh: Rc<Shared>, cfg: Cfg, addr: SocketAddrV4, i: u64) {
    if let Err(f) = client_body::<P>(&sh, cfg, addr, i).await {
        return sh.fail(f);
    }
    sh.done_one();
}

async fn client_body<P: Poller + 'static>(
    sh: &Rc<Shared>,
    cfg: Cfg,
    addr: SocketAddrV4,
    i: u64,
) -> Result<(), Failure> {
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
    sh.ports.borrow_mut().insert(local, i);
    let next = i + cfg.window;
    if next < cfg.conns {
        rt::spawn_local(client::<P>(sh.clone(), cfg, addr, next));
    }
    let key = mix(cfg.seed ^ mix(i + 1));
    let mut out = Buf::new(cfg.size as usize);
    let mut inb = Buf::new((cfg.size as usize).min(BUF_MAX));
    for m in 0..cfg.msgs {
        let base = m * cfg.size;
        fill_pattern(&mut out, key, base);
        s.write_all(&out)
            .await
            .map_err(|e| io_fail(format!("client {i} writing message {m}"), e))?;
        sh.bytes_sent.set(sh.bytes_sent.get() + cfg.size);
        if m + 1 == cfg.msgs {
            // Half-close behind the last message, before its echo: the server may see the data
            // and the end of file in one edge.
            s.shutdown(Shutdown::Write)
                .map_err(|e| io_fail(format!("client {i} half-closing"), e))?;
        }
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
            sh.bytes.set(sh.bytes.get() + n as u64);
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

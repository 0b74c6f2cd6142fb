//! The two-arm harness: every case runs once on the real kernel and once on the simulated one,
//! records what it observes into a [`Log`], and the two logs must be identical.
//!
//! A case also states Linux's expected values where they are well defined ([`Log::expect`] and
//! the `expect_*` helpers), so a case cannot pass by both arms being equally wrong: the real arm
//! failing an expectation means the case is wrong (or Linux surprised us), the sim arm failing one
//! means the simulated kernel diverges.
//!
//! Replay a failing case with the seed printed in its report:
//! `NETPOLL_SEED=<n> cargo test --test conformance <name>`.

use std::fmt::{Debug, Write as _};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::RwLock;
use std::time::Duration;

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{EpollEvent, Events, Fd, Poller};

pub use crate::arms::{new_real, new_sim, Real, Sim};

/// The sim arm's seed when `NETPOLL_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x5EED_0001;

/// The seed for the sim arm: `NETPOLL_SEED` (decimal or `0x` hex) or [`DEFAULT_SEED`].
pub fn seed() -> u64 {
    match std::env::var("NETPOLL_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("NETPOLL_SEED={s:?} is not a u64"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// Real arms of most cases take this for reading; cases that observe descriptor *numbers* take it
/// for writing, so that no other test thread allocates or frees descriptors in the same process
/// while they look (the real descriptor table is shared by all test threads).
pub(crate) static FD_TABLE: RwLock<()> = RwLock::new(());

/// The observations of one arm.
#[derive(Debug)]
pub struct Log {
    arm: &'static str,
    lines: Vec<String>,
    failures: Vec<String>,
}

/// The errno's symbolic name (`EAGAIN`): the simulated kernel's table, one for the workspace.
pub use netpoll_sim::trace::errno_name;

/// `Ok(<shown value>)` or `Err(ENAME)`.
pub fn show<T>(r: &io::Result<T>, f: impl FnOnce(&T) -> String) -> String {
    match r {
        Ok(v) => format!("Ok({})", f(v)),
        Err(e) => match e.raw_os_error() {
            Some(n) => format!("Err({})", errno_name(n)),
            None => format!("Err({:?}: {e})", e.kind()),
        },
    }
}

/// A result reduced to what both arms must agree on: `Ok(())` or the errno.
pub fn res<T>(r: &io::Result<T>) -> Result<(), i32> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

/// A result reduced to its value or errno.
pub fn val<T: Copy>(r: &io::Result<T>) -> Result<T, i32> {
    match r {
        Ok(v) => Ok(*v),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

impl Log {
    pub(crate) fn new(arm: &'static str) -> Log {
        Log {
            arm,
            lines: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Records an observation and checks it against Linux's expected value (soft: the case goes
    /// on, and the arm fails at the end).
    pub fn expect<T: Debug + PartialEq>(&mut self, what: &str, actual: T, expected: T) {
        let line = format!("{what}: {actual:?}");
        if actual != expected {
            self.failures.push(format!(
                "line {}: {what}: got {actual:?}, Linux gives {expected:?}",
                self.lines.len() + 1
            ));
            self.lines
                .push(format!("{line}    <-- expected {expected:?}"));
        } else {
            self.lines.push(line);
        }
    }

    /// Records a boolean property that must hold.
    pub fn check(&mut self, what: &str, ok: bool) {
        self.expect(what, ok, true);
    }

    /// A result that must be `Ok` (for setup steps): records `what: Ok`, returns the value,
    /// panics (failing this arm) otherwise.
    pub fn ok<T>(&mut self, what: &str, r: io::Result<T>) -> T {
        match r {
            Ok(v) => {
                self.lines.push(format!("{what}: Ok"));
                v
            }
            Err(e) => {
                let s = show::<()>(&Err(e), |_| String::new());
                self.lines.push(format!("{what}: {s}    <-- expected Ok"));
                panic!("[{}] {what}: {s}, expected Ok", self.arm);
            }
        }
    }

    /// A result that must fail with `errno`.
    pub fn err<T>(&mut self, what: &str, r: io::Result<T>, errno: i32) {
        self.expect(what, res(&r).map_err(errno_name), Err(errno_name(errno)));
    }

    /// A `usize` result (a read or write count) that must be exactly `expected`.
    pub fn count(&mut self, what: &str, r: io::Result<usize>, expected: Result<usize, i32>) {
        let show = |v: Result<usize, i32>| v.map_err(errno_name);
        self.expect(what, show(val(&r)), show(expected));
    }
}

/// What one `epoll_wait` returned, as `(data, events)` pairs in order, or the errno.
pub type Waited = Result<Vec<(u64, Events)>, i32>;

/// `epoll_wait` with a buffer of `max` entries.
pub fn wait<P: Poller>(p: &P, ep: Fd, max: usize, timeout_ms: i32) -> Waited {
    let mut buf = vec![EpollEvent::EMPTY; max];
    let n = val(&p.epoll_wait(ep, &mut buf, timeout_ms))?;
    Ok(buf[..n].iter().map(|e| (e.data, e.events)).collect())
}

/// Waits (up to `timeout_ms`) and checks that exactly `expected` is reported, in that order.
pub fn expect_events<P: Poller>(
    p: &P,
    log: &mut Log,
    what: &str,
    ep: Fd,
    timeout_ms: i32,
    expected: &[(u64, Events)],
) {
    let got = wait(p, ep, 64, timeout_ms);
    log.expect(what, got, Ok(expected.to_vec()));
}

/// Checks that nothing is ready (timeout 0).
pub fn expect_no_events<P: Poller>(p: &P, log: &mut Log, what: &str, ep: Fd) {
    expect_events(p, log, what, ep, 0, &[]);
}

/// Reads until `EAGAIN` or end of file; returns the number of bytes read.
pub fn drain<P: Poller>(p: &P, fd: Fd) -> usize {
    let mut buf = [0u8; 65536];
    let mut total = 0;
    loop {
        match p.read(fd, &mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.raw_os_error() == Some(EAGAIN) => return total,
            Err(e) => panic!("drain: {e}"),
        }
    }
}

/// Writes until `EAGAIN`; returns the number of bytes written (kernel-dependent: never compare
/// it across arms).
pub fn fill<P: Poller>(p: &P, fd: Fd) -> usize {
    let buf = [0x5au8; 65536];
    let mut total = 0;
    let mut chunk = buf.len();
    loop {
        match p.write(fd, &buf[..chunk]) {
            Ok(n) => total += n,
            Err(e) if e.raw_os_error() == Some(EAGAIN) => {
                // Room for less than a chunk may remain: finish with single bytes.
                if chunk == 1 {
                    return total;
                }
                chunk = 1;
            }
            Err(e) => panic!("fill: {e}"),
        }
    }
}

/// Waits on a scratch epoll instance until `fd` reports every bit of `mask` (or `ERR`/`HUP`),
/// for up to `timeout_ms` of the poller's clock. Never sleeps: this blocks in `epoll_wait` on an
/// edge-triggered registration, so each wakeup is a state change. Returns the last events seen,
/// for the interest `mask | IN | OUT | RDHUP`.
pub fn wait_for<P: Poller>(p: &P, fd: Fd, mask: Events, timeout_ms: u64) -> Events {
    let ep = p
        .epoll_create1(EPOLL_CLOEXEC)
        .expect("wait_for: epoll_create1");
    let interest = mask | Events::IN | Events::OUT | Events::RDHUP | Events::ET;
    p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(EpollEvent::new(interest, 0)))
        .expect("wait_for: epoll_ctl");
    let deadline = p.now() + Duration::from_millis(timeout_ms);
    let mut last = Events::NONE;
    loop {
        let now = p.now();
        if now >= deadline {
            break;
        }
        let left = (deadline - now).as_millis().clamp(1, 60_000) as i32;
        match wait(p, ep, 4, left) {
            Ok(evs) => {
                if let Some(&(_, ev)) = evs.first() {
                    last = ev;
                    if ev.contains(mask) || ev.intersects(Events::ERR | Events::HUP) {
                        break;
                    }
                }
            }
            Err(e) if e == EINTR => continue,
            Err(e) => panic!("wait_for: epoll_wait: {}", errno_name(e)),
        }
    }
    let _ = p.close(ep);
    last
}

/// The readiness `fd` reports right now for `interest` (LT, timeout 0, scratch epoll), `NONE` if
/// nothing.
pub fn poll_now<P: Poller>(p: &P, fd: Fd, interest: Events) -> Events {
    let ep = p
        .epoll_create1(EPOLL_CLOEXEC)
        .expect("poll_now: epoll_create1");
    p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(EpollEvent::new(interest, 0)))
        .expect("poll_now: epoll_ctl");
    let got = wait(p, ep, 4, 0).expect("poll_now: epoll_wait");
    let _ = p.close(ep);
    got.first().map(|e| e.1).unwrap_or(Events::NONE)
}

/// Shorthand for `epoll_ctl(ep, op, fd, Some(EpollEvent::new(events, data)))`.
pub fn ctl<P: Poller>(p: &P, ep: Fd, op: i32, fd: Fd, events: Events, data: u64) -> io::Result<()> {
    p.epoll_ctl(ep, op, fd, Some(EpollEvent::new(events, data)))
}

/// A new non-blocking epoll instance.
pub fn epoll<P: Poller>(p: &P) -> Fd {
    p.epoll_create1(EPOLL_CLOEXEC).expect("epoll_create1")
}

/// A connected TCP pair over loopback: `(listener, client, server)`, all non-blocking, the
/// handshake complete on both ends.
pub fn tcp_pair<P: Poller>(p: &P) -> (Fd, Fd, Fd) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).expect("local_addr");
    let c = p.tcp_socket(SOCK_NONBLOCK).expect("tcp_socket");
    match val(&p.connect(c, addr)) {
        Ok(()) | Err(EINPROGRESS) => {}
        Err(e) => panic!("connect: {}", errno_name(e)),
    }
    let ev = wait_for(p, l, Events::IN, 10_000);
    assert!(ev.contains(Events::IN), "listener never readable: {ev:?}");
    let (s, _) = p.accept4(l, SOCK_NONBLOCK).expect("accept4");
    let ev = wait_for(p, c, Events::OUT, 10_000);
    assert!(ev.contains(Events::OUT), "client never writable: {ev:?}");
    assert_eq!(p.take_socket_error(c).expect("SO_ERROR"), 0);
    (l, c, s)
}

/// A non-blocking TCP listener on `127.0.0.1:0`.
pub fn tcp_listener<P: Poller>(p: &P) -> Fd {
    let l = p.tcp_socket(SOCK_NONBLOCK).expect("tcp_socket");
    p.bind(l, std::net::SocketAddrV4::new([127, 0, 0, 1].into(), 0))
        .expect("bind");
    p.listen(l, 16).expect("listen");
    l
}

/// Closes every fd in `fds`, checking each close succeeds.
pub fn close_all<P: Poller>(p: &P, fds: &[Fd]) {
    for &fd in fds {
        p.close(fd).expect("close");
    }
}

/// How a case uses the process's descriptor table (real arm only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fds {
    /// Never looks at descriptor numbers: runs in parallel with everything.
    Shared,
    /// Compares descriptor numbers: runs alone in the process.
    Exclusive,
}

pub(crate) struct ArmResult {
    pub(crate) log: Log,
    pub(crate) panic: Option<String>,
}

/// A panic payload's message.
pub(crate) fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

fn run_arm<P: Poller>(p: P, arm: &'static str, case: fn(&P, &mut Log)) -> ArmResult {
    let mut log = Log::new(arm);
    let r = catch_unwind(AssertUnwindSafe(|| case(&p, &mut log)));
    drop(p);
    let panic = r.err().map(|e| panic_text(&*e));
    ArmResult { log, panic }
}

fn render(name: &str, r: &ArmResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "--- {name} arm log ---");
    for (i, l) in r.log.lines.iter().enumerate() {
        let _ = writeln!(s, "{:4}  {l}", i + 1);
    }
    if let Some(p) = &r.panic {
        let _ = writeln!(s, "      PANICKED: {p}");
    }
    s
}

/// Runs `case` on both arms and fails with a report if either arm misses an expectation, panics,
/// or the two logs differ.
pub fn run(name: &str, fds: Fds, real_case: fn(&Real, &mut Log), sim_case: fn(&Sim, &mut Log)) {
    let seed = seed();
    // The sim arm holds the guard too: cheap, and right for a stand-in that uses real fds.
    let guard = |f: &dyn Fn() -> ArmResult| match fds {
        Fds::Shared => {
            let _guard = FD_TABLE.read().unwrap_or_else(|e| e.into_inner());
            f()
        }
        Fds::Exclusive => {
            let _guard = FD_TABLE.write().unwrap_or_else(|e| e.into_inner());
            f()
        }
    };
    let real = guard(&|| run_arm(new_real(), "real", real_case));
    let sim = guard(&|| run_arm(new_sim(seed), "sim", sim_case));
    compare(name, seed, &real, &sim);
}

/// Fails with a report if either arm missed an expectation or panicked, or if the logs differ.
pub(crate) fn compare(name: &str, seed: u64, real: &ArmResult, sim: &ArmResult) {
    let short = name.rsplit("::").next().unwrap_or(name);
    let mut report = String::new();
    let mut failed = false;
    if real.panic.is_some() || !real.log.failures.is_empty() {
        failed = true;
        let _ = writeln!(
            report,
            "REAL KERNEL did not behave as the case expects (the case is wrong, or Linux surprised us):"
        );
        for f in &real.log.failures {
            let _ = writeln!(report, "  {f}");
        }
        if let Some(p) = &real.panic {
            let _ = writeln!(report, "  panicked: {p}");
        }
    }
    if sim.panic.is_some() || !sim.log.failures.is_empty() {
        failed = true;
        let _ = writeln!(report, "SIM diverges from Linux's expected values:");
        for f in &sim.log.failures {
            let _ = writeln!(report, "  {f}");
        }
        if let Some(p) = &sim.panic {
            let _ = writeln!(report, "  panicked: {p}");
        }
    }
    let first_diff = real
        .log
        .lines
        .iter()
        .zip(sim.log.lines.iter())
        .position(|(a, b)| a != b)
        .or_else(|| {
            (real.log.lines.len() != sim.log.lines.len())
                .then(|| real.log.lines.len().min(sim.log.lines.len()))
        });
    if let Some(i) = first_diff {
        failed = true;
        let none = "<log ends>".to_string();
        let _ = writeln!(report, "LOGS DIFFER first at line {}:", i + 1);
        let _ = writeln!(report, "  real: {}", real.log.lines.get(i).unwrap_or(&none));
        let _ = writeln!(report, "  sim:  {}", sim.log.lines.get(i).unwrap_or(&none));
    }
    if failed {
        let _ = writeln!(report);
        report.push_str(&render("real", real));
        report.push_str(&render("sim", sim));
        panic!(
            "conformance case `{name}` failed (sim seed {seed}; replay: NETPOLL_SEED={seed} cargo test --test conformance {short})\n{report}"
        );
    }
}

/// Declares cases: for each generic `fn name<P: Poller>(p: &P, log: &mut Log)` in scope, a test
/// `name::real_vs_sim` that runs it on both arms. Attributes (e.g. `#[ignore = "..."]`) before a
/// name apply to its test. `exclusive_fds: [...]` cases hold the process's descriptor table alone.
#[macro_export]
macro_rules! cases {
    (@one $fds:expr, $(#[$m:meta])* $name:ident) => {
        mod $name {
            #[test]
            $(#[$m])*
            fn real_vs_sim() {
                $crate::harness::run(
                    module_path!(),
                    $fds,
                    super::$name::<$crate::harness::Real>,
                    super::$name::<$crate::harness::Sim>,
                );
            }
        }
    };
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        $( $crate::cases!(@one $crate::harness::Fds::Shared, $(#[$m])* $name); )*
    };
}

/// Declares threaded cases: for each `fn name<P: Threads>(p: &P, log: &mut Log)` in scope, a
/// test `name::real_vs_sim` that runs it on real threads over `RealNet` and on simulated
/// threads over `ThreadedSim` (several seeds), see `mt_harness.rs`.
#[macro_export]
macro_rules! mt_cases {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                $(#[$m])*
                fn real_vs_sim() {
                    $crate::mt_harness::run(
                        module_path!(),
                        super::$name::<$crate::mt_harness::RealT>,
                        super::$name::<$crate::mt_harness::SimT>,
                    );
                }
            }
        )*
    };
}

/// Like [`cases!`], for cases that compare descriptor numbers.
#[macro_export]
macro_rules! exclusive_cases {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        $( $crate::cases!(@one $crate::harness::Fds::Exclusive, $(#[$m])* $name); )*
    };
}

/// Interest shorthands.
pub const IN: Events = Events::IN;
/// `EPOLLOUT`.
pub const OUT: Events = Events::OUT;
/// `EPOLLERR`.
pub const ERR: Events = Events::ERR;
/// `EPOLLHUP`.
pub const HUP: Events = Events::HUP;
/// `EPOLLRDHUP`.
pub const RDHUP: Events = Events::RDHUP;
/// `EPOLLET`.
pub const ET: Events = Events::ET;
/// `EPOLLONESHOT`.
pub const ONESHOT: Events = Events::ONESHOT;
/// `EPOLLEXCLUSIVE`.
pub const EXCLUSIVE: Events = Events::EXCLUSIVE;
/// No interest.
pub const NONE: Events = Events::NONE;

/// The harness itself: a divergence and a wrong expectation must fail the test.
mod selftest {
    use super::*;

    fn names_differ<P: Poller>(p: &P, log: &mut Log) {
        log.expect("ok", 1, 1);
        log.check("name", !p.name().is_empty());
        let name = p.name();
        log.expect("the kernel's name (differs between arms)", name, name);
    }

    fn wrong_expectation<P: Poller>(p: &P, log: &mut Log) {
        let e = p.eventfd(0, EFD_NONBLOCK).expect("eventfd");
        let mut buf = [0u8; 8];
        log.count("read an empty eventfd", p.read(e, &mut buf), Ok(8));
        p.close(e).unwrap();
    }

    #[test]
    #[should_panic(expected = "LOGS DIFFER first at line 3")]
    fn harness_reports_a_divergence() {
        run(
            "selftest::names_differ",
            Fds::Shared,
            names_differ::<Real>,
            names_differ::<Sim>,
        );
    }

    #[test]
    #[should_panic(expected = "REAL KERNEL did not behave as the case expects")]
    fn harness_reports_a_wrong_expectation() {
        run(
            "selftest::wrong_expectation",
            Fds::Shared,
            wrong_expectation::<Real>,
            wrong_expectation::<Sim>,
        );
    }
}

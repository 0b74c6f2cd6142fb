//! The one-call check (`netpoll_scenarios::check`) on two user loops with a classic bug each:
//! an edge-triggered echo server that reads once per edge, and a ONESHOT server that never
//! re-arms. Each is found by a test of a few lines, its failure prints a replay line that
//! reproduces it, and its fixed twin passes.
//!
//! The 10,000-seed sweeps of the fixed twins (`cargo test` runs 500):
//!
//! ```text
//! NETPOLL_SEEDS=0..10000 cargo test --release -p netpoll-scenarios --test check -- fixed
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::errno::{EAGAIN, ECONNABORTED, EINPROGRESS};
use netpoll::sys::{errno_of, EPOLL_CTL_ADD, EPOLL_CTL_MOD, SOCK_NONBLOCK};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_scenarios::check::{Check, CheckError, Failure, Faults, Phase};
use netpoll_sim::{Oracles, Sim, Violation};

#[path = "support/check_env.rs"]
mod check_env;
use check_env::replay_env;

// ---------------------------------------------------------------------------------------------
// The server under test: what a user writes. One epoll instance; the listener level-triggered
// (data 0), each connection under its own fd as data.

/// Which server, and which bug.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Edge-triggered, reading until `EAGAIN`.
    Et,
    /// BUG: edge-triggered, reading once per edge.
    EtReadOnce,
    /// `EPOLLONESHOT`, re-armed with `EPOLL_CTL_MOD` after each event.
    Oneshot,
    /// BUG: `EPOLLONESHOT`, never re-armed.
    OneshotNoRearm,
}

/// An echo server.
struct Echo {
    ep: Fd,
    listener: Fd,
    addr: SocketAddrV4,
    mode: Mode,
    open: usize,
    /// Which fds are open connections (an event in a batch may name one closed earlier in it).
    conns: Vec<bool>,
}

impl Server for Echo {
    fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    fn on_event(&mut self, p: &Sim, ev: &EpollEvent) -> io::Result<()> {
        Echo::on_event(self, p, ev)
    }

    fn busy(&self) -> bool {
        self.open > 0
    }
}

impl Echo {
    fn bind(p: &impl Poller, ep: Fd, mode: Mode) -> io::Result<Echo> {
        let listener = p.tcp_socket(SOCK_NONBLOCK)?;
        p.bind(listener, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        p.listen(listener, 64)?;
        p.epoll_ctl(
            ep,
            EPOLL_CTL_ADD,
            listener,
            Some(EpollEvent::new(Events::IN, 0)),
        )?;
        let addr = p.local_addr(listener)?;
        Ok(Echo {
            ep,
            listener,
            addr,
            mode,
            open: 0,
            conns: Vec::new(),
        })
    }

    fn interest(&self) -> Events {
        match self.mode {
            Mode::Et | Mode::EtReadOnce => Events::IN | Events::RDHUP | Events::ET,
            Mode::Oneshot | Mode::OneshotNoRearm => Events::IN | Events::RDHUP | Events::ONESHOT,
        }
    }

    fn on_event(&mut self, p: &impl Poller, ev: &EpollEvent) -> io::Result<()> {
        if ev.data == 0 {
            return self.accept(p);
        }
        let fd = ev.data as Fd;
        if !self.conns.get(fd as usize).copied().unwrap_or(false) {
            return Ok(());
        }
        let mut buf = [0u8; 4096];
        loop {
            match p.read(fd, &mut buf) {
                Ok(0) => {
                    self.open -= 1;
                    self.conns[fd as usize] = false;
                    return p.close(fd);
                }
                Ok(n) => write_all(p, fd, &buf[..n])?,
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) => return Err(e),
            }
            if self.mode == Mode::EtReadOnce {
                break;
            }
        }
        if self.mode == Mode::Oneshot {
            let ev = EpollEvent::new(self.interest(), fd as u64);
            p.epoll_ctl(self.ep, EPOLL_CTL_MOD, fd, Some(ev))?;
        }
        Ok(())
    }

    fn accept(&mut self, p: &impl Poller) -> io::Result<()> {
        loop {
            match p.accept4(self.listener, SOCK_NONBLOCK) {
                Ok((fd, _)) => {
                    let ev = EpollEvent::new(self.interest(), fd as u64);
                    p.epoll_ctl(self.ep, EPOLL_CTL_ADD, fd, Some(ev))?;
                    self.open += 1;
                    if self.conns.len() <= fd as usize {
                        self.conns.resize(fd as usize + 1, false);
                    }
                    self.conns[fd as usize] = true;
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                Err(e) if errno_of(&e) == Some(ECONNABORTED) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes all of `buf` to a non-blocking socket whose window is far larger than one message.
fn write_all(p: &impl Poller, fd: Fd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        buf = &buf[p.write(fd, buf)?..];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The client mix: `conns` clients, each sending `msgs` messages of `size` bytes one at a time
// and checking every echoed byte. (Minimal clients for these tests only.)

const CLIENT: u64 = 1 << 32;

/// A client population.
#[derive(Clone, Copy, Debug)]
struct Mix {
    conns: usize,
    msgs: usize,
    size: usize,
}

/// What the tests use: a few clients, messages of a few segments' worth of reads.
const SMALL: Mix = Mix {
    conns: 3,
    msgs: 4,
    size: 3000,
};

struct Client {
    fd: Fd,
    msg: usize,
    sent: usize,
    got: usize,
}

struct Clients {
    mix: Mix,
    all: Vec<Client>,
    done: usize,
}

impl Clients {
    fn connect(p: &impl Poller, ep: Fd, to: SocketAddrV4, mix: Mix) -> io::Result<Clients> {
        let mut all = Vec::with_capacity(mix.conns);
        for i in 0..mix.conns {
            let fd = p.tcp_socket(SOCK_NONBLOCK)?;
            match p.connect(fd, to) {
                Err(e) if errno_of(&e) != Some(EINPROGRESS) => return Err(e),
                _ => {}
            }
            let ev = Events::IN | Events::OUT | Events::RDHUP | Events::ET;
            p.epoll_ctl(
                ep,
                EPOLL_CTL_ADD,
                fd,
                Some(EpollEvent::new(ev, CLIENT + i as u64)),
            )?;
            all.push(Client {
                fd,
                msg: 0,
                sent: 0,
                got: 0,
            });
        }
        Ok(Clients { mix, all, done: 0 })
    }

    fn done(&self) -> bool {
        self.done == self.all.len()
    }

    /// The byte at `off` of message `msg` of client `i`.
    fn byte(i: usize, msg: usize, off: usize) -> u8 {
        (i * 31 + msg * 7 + off) as u8
    }

    fn on_event(&mut self, p: &impl Poller, ev: &EpollEvent) -> io::Result<()> {
        let Mix { msgs, size, .. } = self.mix;
        let i = (ev.data - CLIENT) as usize;
        let c = &mut self.all[i];
        if c.msg == msgs {
            return Ok(());
        }
        if c.msg == 0 && c.sent == 0 {
            match p.take_socket_error(c.fd)? {
                0 => {}
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            if c.sent < size {
                let len = (size - c.sent).min(buf.len());
                for (k, b) in buf[..len].iter_mut().enumerate() {
                    *b = Self::byte(i, c.msg, c.sent + k);
                }
                match p.write(c.fd, &buf[..len]) {
                    Ok(n) => c.sent += n,
                    Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                    Err(e) => return Err(e),
                }
                continue;
            }
            let len = (size - c.got).min(buf.len());
            let n = match p.read(c.fd, &mut buf[..len]) {
                Ok(0) => return Err(io::Error::other(format!("client {i}: server closed early"))),
                Ok(n) => n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                Err(e) => return Err(e),
            };
            for (k, &b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    b,
                    Self::byte(i, c.msg, c.got + k),
                    "client {i}: echo byte differs"
                );
            }
            c.got += n;
            if c.got == size {
                (c.msg, c.sent, c.got) = (c.msg + 1, 0, 0);
                if c.msg == msgs {
                    self.done += 1;
                    return p.close(c.fd);
                }
            }
        }
    }
}

/// What [`drive`] needs of a server whose descriptors share the clients' epoll instance.
trait Server {
    /// Where the clients connect.
    fn addr(&self) -> SocketAddrV4;
    /// An event for one of the server's registrations (data below [`CLIENT`]).
    fn on_event(&mut self, p: &Sim, ev: &EpollEvent) -> io::Result<()>;
    /// Whether the server still has connections open.
    fn busy(&self) -> bool;
}

/// Connects the client mix to `server` and runs the one event loop (on `ep`, blocking) until
/// every client is done and the server has closed every connection.
fn drive(sim: &Sim, ep: Fd, mix: Mix, server: &mut impl Server) -> io::Result<()> {
    let mut clients = Clients::connect(sim, ep, server.addr(), mix)?;
    let mut events = [EpollEvent::default(); 16];
    while !clients.done() || server.busy() {
        let n = match sim.epoll_wait(ep, &mut events, -1) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        for ev in &events[..n] {
            if ev.data >= CLIENT {
                clients.on_event(sim, ev)?
            } else {
                server.on_event(sim, ev)?
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The check: the lines a user writes beyond the server and the client mix.

fn echo_check(sim: &Sim, mode: Mode) -> io::Result<()> {
    echo_with(sim, mode, SMALL)
}

fn echo_with(sim: &Sim, mode: Mode, mix: Mix) -> io::Result<()> {
    let ep = sim.epoll_create1(0)?;
    let mut server = Echo::bind(sim, ep, mode)?;
    drive(sim, ep, mix, &mut server)?;
    sim.close(server.listener)?;
    sim.close(ep)
}

/// The buggy ET server fails the check. This is the whole test a user writes beyond the server
/// and the client mix: 9 lines, attributes included.
#[netpoll_scenarios::test(seeds = 0..1000, faults = "swarm")]
#[should_panic(expected = "oracle: lost-wakeup")]
fn et_server_that_reads_once_per_edge_is_found(sim: &Sim) -> io::Result<()> {
    let ep = sim.epoll_create1(0)?;
    let mut server = Echo::bind(sim, ep, Mode::EtReadOnce)?;
    drive(sim, ep, SMALL, &mut server)?;
    sim.close(server.listener)?;
    sim.close(ep)
}

/// The ONESHOT server that never re-arms, the same way (here through the shared helper).
#[netpoll_scenarios::test(seeds = 0..1000, faults = "swarm")]
#[should_panic(expected = "oracle: lost-wakeup")]
fn oneshot_server_that_never_rearms_is_found(sim: &Sim) -> io::Result<()> {
    echo_check(sim, Mode::OneshotNoRearm)
}

#[netpoll_scenarios::test(seeds = 0..500, faults = "swarm")]
fn fixed_et_server_passes(sim: &Sim) -> io::Result<()> {
    echo_check(sim, Mode::Et)
}

#[netpoll_scenarios::test(seeds = 0..500, faults = "swarm")]
fn fixed_oneshot_server_passes(sim: &Sim) -> io::Result<()> {
    echo_check(sim, Mode::Oneshot)
}

/// Both fixed servers, alternating by seed.
fn either_fixed(sim: &Sim) -> io::Result<()> {
    let mode = [Mode::Et, Mode::Oneshot][sim.seed() as usize % 2];
    echo_check(sim, mode)
}

#[netpoll_scenarios::test(seeds = 0..200, faults = "chaos")]
fn fixed_servers_pass_under_chaos(sim: &Sim) -> io::Result<()> {
    either_fixed(sim)
}

#[netpoll_scenarios::test(seeds = 0..200)]
fn fixed_servers_pass_without_faults(sim: &Sim) -> io::Result<()> {
    either_fixed(sim)
}

// ---------------------------------------------------------------------------------------------
// The failure report, and its replay line replayed.

/// The failure of `mode` over seeds 0..1000 with swarm faults, the environment ignored.
fn failure(mode: Mode) -> Failure {
    let r = Check::new()
        .seeds(0..1000)
        .faults(Faults::Swarm)
        .env(|_| None)
        .test_name("replay_test")
        .try_run(|sim| echo_check(sim, mode));
    match r {
        Err(CheckError::Failed(f)) => *f,
        other => panic!("{mode:?}: expected a failure, got {other:?}"),
    }
}

/// Reruns a failure from its printed replay line alone: the same oracle fires at the same fd.
fn rerun(line: &str, mode: Mode) -> Failure {
    let vars = replay_env(line);
    assert!(vars.iter().any(|(k, _)| k == "NETPOLL_SEED"), "{line}");
    assert!(vars.iter().any(|(k, _)| k == "NETPOLL_FAULTS"), "{line}");
    let r = Check::new()
        .seeds(0..1000)
        .env(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .try_run(|sim| echo_check(sim, mode));
    match r {
        Err(CheckError::Failed(f)) => *f,
        other => panic!("the replay line {line:?} did not fail: {other:?}"),
    }
}

#[test]
fn failures_print_everything_and_their_replay_lines_reproduce_them() {
    for mode in [Mode::EtReadOnce, Mode::OneshotNoRearm] {
        let f = failure(mode);
        let text = f.to_string();
        assert_eq!(f.oracle, "lost-wakeup", "{text}");
        for want in [
            &format!("seed {}", f.seed)[..],
            "oracle: lost-wakeup",
            "recent calls on fd",
            "replay: NETPOLL_SEED=",
            "-p netpoll-scenarios --test check -- --exact replay_test",
            "trace:",
        ] {
            assert!(text.contains(want), "{mode:?}: no {want:?} in\n{text}");
        }
        let path = f.trace.as_ref().expect("a trace file");
        let json = std::fs::read_to_string(path).expect("the trace file is there");
        assert!(json.contains("traceEvents"), "{}", path.display());

        let again = rerun(&f.replay, mode);
        assert_eq!((again.seed, again.oracle), (f.seed, f.oracle), "{text}");
        assert_eq!(again.diagnosis, f.diagnosis, "{text}");

        // A quiet-phase failure has no faults to shrink, and its replay line names no faults.
        if f.phase == Phase::Quiet {
            assert!(f.shrunk.is_none(), "{text}");
            assert!(f.replay.contains("NETPOLL_FAULTS=none "), "{text}");
            continue;
        }
        // Swarm faults played a part: the shrunk plan replays to the same oracle too.
        assert_eq!(f.phase, Phase::Faulted, "{text}");
        assert!(f.replay.contains("NETPOLL_FAULTS=swarm-only "), "{text}");
        let (spec, line) = f.shrunk.as_ref().expect("a shrunk plan");
        assert_ne!(*spec, Faults::Swarm, "{text}");
        let shrunk = rerun(line, mode);
        assert_eq!((shrunk.seed, shrunk.oracle), (f.seed, f.oracle), "{text}");
    }
}

#[test]
fn the_oneshot_bug_needs_no_faults_and_the_et_bug_does() {
    // Request/response clients: a never re-armed ONESHOT strands the second message on every
    // seed; reading once per edge loses only when an edge carries more than one read's worth,
    // which takes short reads or coalesced segments: the shrunk plan keeps such a fault.
    let oneshot = failure(Mode::OneshotNoRearm);
    assert_eq!(oneshot.seed, 0);
    assert!(
        matches!(
            oneshot.violation,
            Some(Violation::LostWakeup { disarmed: true, .. })
        ),
        "{oneshot}"
    );
    assert!(oneshot.diagnosis.contains("never re-armed"), "{oneshot}");
    // Swarm runs each seed's quiet phase first, and that is where it fails: no faults to shrink.
    assert_eq!(oneshot.phase, Phase::Quiet, "{oneshot}");
    assert!(oneshot.shrunk.is_none(), "{oneshot}");
    assert!(
        oneshot.to_string().contains("phase:  the quiet phase"),
        "{oneshot}"
    );
    let et = failure(Mode::EtReadOnce);
    assert_eq!(et.phase, Phase::Faulted, "{et}");
    let (plan, _) = et.shrunk.as_ref().expect("shrunk");
    assert!(matches!(plan, Faults::Plan(_)), "{et}");
}

// ---------------------------------------------------------------------------------------------
// Bad input, determinism, panics, invariants, tasks.

fn config_error(vars: &'static [(&'static str, &'static str)]) -> String {
    let r = Check::new()
        .seeds(0..10)
        .env(move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .try_run(|_| Ok(()));
    match r {
        Err(CheckError::Config(e)) => e,
        other => panic!("{vars:?}: expected a config error, got {other:?}"),
    }
}

#[test]
fn bad_environment_gets_a_clear_error_not_a_panic() {
    let e = config_error(&[("NETPOLL_SEEDS", "10..2")]);
    assert!(
        e.contains("NETPOLL_SEEDS") && e.contains("empty range") && e.contains("A..B"),
        "{e}"
    );
    let e = config_error(&[("NETPOLL_SEEDS", "ten")]);
    assert!(e.contains("NETPOLL_SEEDS") && e.contains("A..B"), "{e}");
    let e = config_error(&[("NETPOLL_FAULTS", "lots")]);
    assert!(
        e.contains("NETPOLL_FAULTS") && e.contains("none, chaos, swarm"),
        "{e}"
    );
    let e = config_error(&[("NETPOLL_SEED", "-1")]);
    assert!(e.contains("NETPOLL_SEED"), "{e}");
    let e = config_error(&[("NETPOLL_CHECK_DETERMINISM", "sure")]);
    assert!(e.contains("NETPOLL_CHECK_DETERMINISM"), "{e}");
    let r = Check::new().seeds(5..5).env(|_| None).try_run(|_| Ok(()));
    assert!(matches!(r, Err(CheckError::Config(e)) if e.contains("empty")));
    let r = Check::new()
        .faults_str("sometimes")
        .env(|_| None)
        .try_run(|_| Ok(()));
    assert!(matches!(r, Err(CheckError::Config(e)) if e.contains("sometimes")));
}

#[test]
#[should_panic(expected = "NETPOLL_SEEDS=\"3..x\"")]
fn run_fails_the_test_with_the_message() {
    Check::new()
        .env(|k| (k == "NETPOLL_SEEDS").then(|| "3..x".to_string()))
        .run(|_| Ok(()));
}

#[test]
fn the_environment_picks_seeds_and_faults() {
    let vars = [
        ("NETPOLL_SEEDS", "7..9"),
        ("NETPOLL_FAULTS", "short_read=0.5,eintr=0.25"),
    ];
    let mut seen = Vec::new();
    let passed = Check::new()
        .env(move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .try_run(|sim| {
            seen.push(sim.seed());
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, [7, 8]);
    assert_eq!(
        passed.faults,
        Faults::parse("short_read=0.5 eintr=0.25").unwrap()
    );
}

#[test]
fn the_determinism_check_catches_a_closure_that_depends_on_more_than_the_seed() {
    let mut runs = 0u64;
    let r = Check::new()
        .seeds(0..3)
        .check_determinism(true)
        .env(|_| None)
        .try_run(|sim| {
            runs += 1;
            let [a, b] = sim.socketpair(0)?;
            // Depends on how many times the closure ran: differs between two runs of a seed.
            sim.write(a, &vec![0u8; 1 + (runs % 2) as usize])?;
            sim.close(a)?;
            sim.close(b)
        });
    let Err(CheckError::Failed(f)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.oracle, "nondeterminism", "{f}");
    assert!(f.diagnosis.contains("differ at call"), "{f}");
    assert!(f.replay.contains("NETPOLL_CHECK_DETERMINISM=1"), "{f}");
    // The fixed servers are deterministic.
    Check::new()
        .seeds(0..20)
        .faults(Faults::Swarm)
        .check_determinism(true)
        .env(|_| None)
        .run(|sim| echo_check(sim, Mode::Et));
}

#[test]
fn panics_errors_and_invariants_fail_a_seed() {
    let r = Check::new().seeds(0..5).env(|_| None).try_run(|sim| {
        assert!(sim.seed() != 3, "seed three is unlucky");
        Ok(())
    });
    let Err(CheckError::Failed(f)) = r else {
        panic!("{r:?}")
    };
    assert_eq!((f.seed, f.oracle, f.passed), (3, "panic", 3), "{f}");
    assert!(f.diagnosis.contains("seed three is unlucky"), "{f}");
    assert!(
        f.diagnosis.contains("tests/check.rs:"),
        "where it panicked: {f}"
    );

    let r = Check::new().seeds(0..5).env(|_| None).try_run(|sim| {
        sim.close(99).map(drop) // EBADF
    });
    let Err(CheckError::Failed(f)) = r else {
        panic!("{r:?}")
    };
    assert_eq!((f.seed, f.oracle), (0, "error"), "{f}");

    let r = Check::new()
        .seeds(0..5)
        .env(|_| None)
        .invariant("no socket left", |sim| match sim.open_files() {
            0 => Ok(()),
            n => Err(format!("{n} files open")),
        })
        .try_run(|sim| sim.tcp_socket(0).map(drop));
    let Err(CheckError::Failed(f)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.oracle, "invariant", "{f}");
    assert!(f.diagnosis.contains("no socket left"), "{f}");
}

#[test]
fn the_kernels_leak_oracle_and_declared_fds_pass_through() {
    let leaky = |sim: &Sim| sim.socketpair(0).map(drop);
    let r = Check::new().seeds(0..3).env(|_| None).try_run(leaky);
    let Err(CheckError::Failed(f)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.oracle, "leak", "{f}");
    assert!(
        matches!(&f.violation, Some(Violation::Leak { fds }) if fds.len() == 2),
        "{f}"
    );
    // Declared open (descriptors are numbered from 3, lowest free first), or the oracle off.
    let declared = Check::new()
        .seeds(0..3)
        .env(|_| None)
        .expect_open(3)
        .expect_open(4);
    declared.try_run(leaky).unwrap();
    let off = Oracles {
        leaks: false,
        ..Oracles::default()
    };
    Check::new()
        .seeds(0..3)
        .env(|_| None)
        .oracles(off)
        .try_run(leaky)
        .unwrap();
}

#[test]
fn invariants_are_judged_at_quiescence_too() {
    // The invariant breaks while the loop sleeps in epoll_wait with a timeout: the kernel
    // judges it there, and the run stops before the closure returns.
    let r = Check::new()
        .seeds(0..3)
        .env(|_| None)
        .invariant("nothing unread", |sim| match sim.readiness(4) {
            Ok(e) if e.contains(Events::IN) => Err("fd 4 has unread bytes".into()),
            _ => Ok(()),
        })
        .try_run(|sim| {
            let [a, b] = sim.socketpair(SOCK_NONBLOCK)?;
            let ep = sim.epoll_create1(0)?;
            sim.write(a, b"x")?;
            let r = sim.epoll_wait(ep, &mut [EpollEvent::default(); 1], 10);
            assert!(r.is_err(), "the run is stopped at the wait");
            for fd in [a, b, ep] {
                sim.close(fd)?;
            }
            Ok(())
        });
    let Err(CheckError::Failed(f)) = r else {
        panic!("{r:?}")
    };
    assert!(
        matches!(
            &f.violation,
            Some(Violation::Invariant { at_end: false, .. })
        ),
        "{f}"
    );
}

/// `netpoll::rt` tasks inside a check: an echo over TCP as tasks, under swarm faults.
#[netpoll_scenarios::test(seeds = 0..100, faults = "swarm")]
fn tasks_on_the_netpoller_run_inside_a_check(sim: &Sim) -> io::Result<()> {
    use netpoll::rt::{self, TcpListener, TcpStream};
    use netpoll_scenarios::check::SimRc;
    let mut rt = netpoll_scenarios::check::runtime(sim)?;
    rt.block_on(async {
        let ln = TcpListener::<SimRc>::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let addr = ln.local_addr()?;
        let server = rt::spawn(async move {
            let (conn, _) = ln.accept().await?;
            let mut buf = [0u8; 1024];
            loop {
                match conn.read(&mut buf).await? {
                    0 => return io::Result::Ok(()),
                    n => conn.write_all(&buf[..n]).await?,
                }
            }
        });
        let c = TcpStream::<SimRc>::connect(addr).await?;
        for round in 0..5u8 {
            c.write_all(&[round; 100]).await?;
            let mut got = 0;
            let mut buf = [0u8; 100];
            while got < 100 {
                got += c.read(&mut buf[got..]).await?;
            }
            assert_eq!(buf, [round; 100]);
        }
        c.shutdown(std::net::Shutdown::Write)?;
        server.await? // the task's own result (a panic in it would be a JoinError here)
    })?
}

/// The speed figure: a sweep of 10 connections x 10 messages x 64 bytes (the workload of the
/// `netpoll-sim sweep echo --conns 10` row of BENCHMARKS.md) through `Check`. Run it with
/// `NETPOLL_SEEDS=0..10000 /usr/bin/time cargo test --release -p netpoll-scenarios --test check
/// -- --ignored --exact sweep_of_ten_connections`; `cargo test` does not.
#[netpoll_scenarios::test(seeds = 0..1000, faults = "swarm")]
#[ignore = "a speed measurement: run it in release with NETPOLL_SEEDS=0..10000"]
fn sweep_of_ten_connections(sim: &Sim) -> io::Result<()> {
    echo_with(
        sim,
        Mode::Et,
        Mix {
            conns: 10,
            msgs: 10,
            size: 64,
        },
    )
}

/// The attribute through the root crate's re-export, a function returning nothing, and the
/// determinism check as an argument.
#[netpoll::test(seeds = 10..=30, faults = "chaos", check_determinism = true)]
fn the_attribute_takes_functions_returning_nothing(sim: &Sim) {
    let [a, b] = sim.socketpair(0).unwrap();
    sim.close(a).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(sim.read(b, &mut buf).unwrap(), 0, "end of file");
    sim.close(b).unwrap();
}

/// A plan as a report prints it is a valid `faults` argument.
#[netpoll::test(seeds = 0..50, faults = "short_read=0.5 short_write=0.5,latency=uniform:1000:90000")]
fn the_attribute_takes_explicit_plans(sim: &Sim) -> io::Result<()> {
    echo_check(sim, Mode::Et)
}

/// A task that leaves bytes unread while it sleeps: the netpoller cached the edge, no task
/// waits for it, so it is no lost wakeup. `check::runtime` judges by what parked tasks wait
/// for; the kernel's default judgement (the registration's interest) would call it one.
#[test]
fn tasks_are_judged_by_what_they_wait_for() {
    use netpoll::rt::{self, Runtime, UnixStream};
    use netpoll_scenarios::check::{self, SimRc};
    use std::time::Duration;

    async fn nap_with_bytes_unread() -> io::Result<()> {
        let (a, b) = UnixStream::<SimRc>::pair()?;
        a.write_all(&[1; 100]).await?;
        let mut buf = [0u8; 100];
        let mut got = b.read(&mut buf[..10]).await?; // 90 bytes or more stay unread
        rt::sleep(Duration::from_millis(5)).await; // a quiescent wait: the kernel scans
        while got < 100 {
            got += b.read(&mut buf[got..]).await?;
        }
        Ok(())
    }
    let check = || {
        Check::new()
            .seeds(0..20)
            .faults(Faults::Swarm)
            .env(|_| None)
    };
    check().run(|sim| check::runtime(sim)?.block_on(nap_with_bytes_unread())?);
    let plain = check().try_run(|sim| {
        let mut rt = Runtime::seeded(check::shared(sim)?, sim.seed())?;
        rt.block_on(nap_with_bytes_unread())?
    });
    let Err(CheckError::Failed(f)) = plain else {
        panic!("{plain:?}")
    };
    assert_eq!(f.oracle, "lost-wakeup", "{f}");
}

// ---------------------------------------------------------------------------------------------
// chaos and swarm include none's schedules.

/// A pair of sockets, some bytes through them, and whether any fault (the cost model included)
/// fired: a stand-in for a loop whose bug shows only with the quiet timing (`quiet_bug`) or
/// only under a fault plan (`fault_bug`).
fn ping(sim: &Sim, fail_when_quiet: bool) -> io::Result<()> {
    let [a, b] = sim.socketpair(SOCK_NONBLOCK)?;
    let sent = sim.write(a, b"ping")?;
    let mut got = 0;
    while got < sent {
        match sim.read(b, &mut [0u8; 4]) {
            Err(e) if errno_of(&e) == Some(EAGAIN) => {
                sim.sleep(std::time::Duration::from_millis(1))
            }
            r => got += r?,
        }
    }
    sim.close(a)?;
    sim.close(b)?;
    let quiet = sim.fault_counts() == netpoll_sim::FaultCounts::default();
    if quiet == fail_when_quiet {
        return Err(io::Error::other(if quiet {
            "quiet-only bug"
        } else {
            "fault-only bug"
        }));
    }
    Ok(())
}

fn ping_failure(faults: Faults, fail_when_quiet: bool) -> Failure {
    let r = Check::new()
        .seeds(0..20)
        .faults(faults)
        .env(|_| None)
        .shrink_runs(0)
        .test_name("replay_test")
        .try_run(|sim| ping(sim, fail_when_quiet));
    match r {
        Err(CheckError::Failed(f)) => *f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn chaos_and_swarm_find_what_none_finds_and_name_the_phase_that_failed() {
    for (named, only) in [(Faults::Chaos, "chaos-only"), (Faults::Swarm, "swarm-only")] {
        // A bug only the quiet timing shows: chaos's faulted run alone (the cost model fires on
        // every call) would never find it; its quiet phase does, on the first seed.
        let f = ping_failure(named.clone(), true);
        assert_eq!((f.seed, f.phase), (0, Phase::Quiet), "{f}");
        assert!(f.replay.contains("NETPOLL_FAULTS=none "), "{f}");
        assert!(f.to_string().contains("phase:  the quiet phase"), "{f}");
        // A bug only the faults show: found in the faulted phase, whose replay line reruns
        // that run alone and fails the same way.
        let f = ping_failure(named, false);
        assert_eq!(f.phase, Phase::Faulted, "{f}");
        assert!(f.replay.contains(&format!("NETPOLL_FAULTS={only} ")), "{f}");
        let vars = replay_env(&f.replay);
        let again = Check::new()
            .seeds(0..20)
            .shrink_runs(0)
            .env(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .try_run(|sim| ping(sim, false));
        let Err(CheckError::Failed(again)) = again else {
            panic!("the replay line {:?} did not fail", f.replay)
        };
        assert_eq!(
            (again.seed, again.phase),
            (f.seed, Phase::Single),
            "{again}"
        );
        assert_eq!(again.diagnosis, f.diagnosis);
    }
    // `none` and explicit plans are one run per seed.
    assert_eq!(ping_failure(Faults::None, true).phase, Phase::Single);
}

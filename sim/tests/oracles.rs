//! The kernel's oracles ([`netpoll_sim::oracle`]): each fires on a minimal buggy loop and stays
//! quiet on its fixed twin.

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

use netpoll::sys::{errno::*, *};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_sim::{Oracles, Sim, SimConfig, Violation};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Server {
    /// Reads until `EAGAIN` on an edge-triggered registration.
    Et,
    /// The bug: one read of 256 bytes per edge.
    EtReadOnce,
    /// Reads until `EAGAIN`, then re-arms its ONESHOT registration.
    Oneshot,
    /// The bug: never re-arms.
    OneshotNoRearm,
}

const LISTENER: u64 = u64::MAX;
const CLIENT: u64 = 1 << 32;
const MSG: usize = 3000;

struct Client {
    fd: Fd,
    msgs_left: u32,
    got: usize,
    connected: bool,
}

/// A TCP echo server and `n` clients (each sends 3 messages of 3000 bytes, one at a time, and
/// waits for the echo) on one epoll loop. `Err`: the loop stopped (the kernel's oracles say
/// why in `sim.violation()`).
fn echo(p: &Sim, server: Server, n: usize) -> io::Result<()> {
    let ep = p.epoll_create1(0)?;
    let l = p.tcp_socket(SOCK_NONBLOCK)?;
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    p.listen(l, 64)?;
    let addr = p.local_addr(l)?;
    p.epoll_ctl(
        ep,
        EPOLL_CTL_ADD,
        l,
        Some(EpollEvent::new(Events::IN, LISTENER)),
    )?;
    let mut clients = Vec::new();
    for i in 0..n {
        let fd = p.tcp_socket(SOCK_NONBLOCK)?;
        match p.connect(fd, addr) {
            Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
            other => other?,
        }
        let ev = EpollEvent::new(Events::OUT, CLIENT | i as u64);
        p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(ev))?;
        clients.push(Client {
            fd,
            msgs_left: 3,
            got: 0,
            connected: false,
        });
    }
    let conn_events = match server {
        Server::Et | Server::EtReadOnce => Events::IN | Events::RDHUP | Events::ET,
        Server::Oneshot | Server::OneshotNoRearm => Events::IN | Events::RDHUP | Events::ONESHOT,
    };
    let mut open_conns = 0;
    let mut done = 0;
    let mut evs = [EpollEvent::EMPTY; 16];
    let mut buf = [0u8; 4096];
    while done < n || open_conns > 0 {
        let k = p.epoll_wait(ep, &mut evs, -1)?;
        for ev in &evs[..k] {
            if ev.data == LISTENER {
                loop {
                    match p.accept4(l, SOCK_NONBLOCK) {
                        Ok((fd, _)) => {
                            let ev = EpollEvent::new(conn_events, fd as u64);
                            p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(ev))?;
                            open_conns += 1;
                        }
                        Err(e) if e.raw_os_error() == Some(EAGAIN) => break,
                        Err(e) => return Err(e),
                    }
                }
            } else if ev.data & CLIENT != 0 {
                let c = &mut clients[(ev.data & 0xffff) as usize];
                if !c.connected {
                    c.connected = true;
                    p.write(c.fd, &[7; MSG])?;
                    let ev = EpollEvent::new(Events::IN, ev.data);
                    p.epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, Some(ev))?;
                    continue;
                }
                match p.read(c.fd, &mut buf) {
                    Ok(m) => c.got += m,
                    Err(e) if e.raw_os_error() == Some(EAGAIN) => continue,
                    Err(e) => return Err(e),
                }
                if c.got == MSG {
                    c.got = 0;
                    c.msgs_left -= 1;
                    if c.msgs_left == 0 {
                        p.close(c.fd)?;
                        done += 1;
                    } else {
                        p.write(c.fd, &[7; MSG])?;
                    }
                }
            } else {
                let fd = ev.data as Fd;
                let once = server == Server::EtReadOnce;
                let mut closed = false;
                loop {
                    let cap = if once { 256 } else { buf.len() };
                    match p.read(fd, &mut buf[..cap]) {
                        Ok(0) => {
                            p.close(fd)?;
                            open_conns -= 1;
                            closed = true;
                            break;
                        }
                        Ok(m) => {
                            assert_eq!(p.write(fd, &buf[..m])?, m);
                            if once {
                                break;
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(EAGAIN) => break,
                        Err(e) => return Err(e),
                    }
                }
                if server == Server::Oneshot && !closed {
                    let ev = EpollEvent::new(conn_events, fd as u64);
                    p.epoll_ctl(ep, EPOLL_CTL_MOD, fd, Some(ev))?;
                }
            }
        }
    }
    p.close(l)?;
    p.close(ep)
}

fn run(seed: u64, server: Server) -> Result<(), Violation> {
    let p = Sim::new(seed);
    let r = echo(&p, server, 3);
    let v = p.finish();
    if v.is_ok() {
        r.unwrap_or_else(|e| {
            panic!("seed {seed}: {server:?}: the loop failed with no violation: {e}")
        });
    }
    v
}

#[test]
fn et_handler_that_reads_once_per_edge_is_a_lost_wakeup() {
    for seed in 0..30 {
        let v = run(seed, Server::EtReadOnce).expect_err("the ET bug must be caught");
        let Violation::LostWakeup {
            ready,
            wanted,
            disarmed,
            ref history,
            ..
        } = v
        else {
            panic!("seed {seed}: expected a lost wakeup, got {v}");
        };
        assert!(
            ready.contains(Events::IN) && wanted.contains(Events::IN),
            "{v}"
        );
        assert!(!disarmed);
        assert!(
            history.iter().any(|r| r.call_text().starts_with("read(")),
            "{v}"
        );
        let text = v.to_string();
        assert!(text.starts_with("lost wakeup at "), "{text}");
        assert!(text.contains("recent calls on fd"), "{text}");
    }
}

#[test]
fn et_handler_that_reads_until_eagain_passes() {
    for seed in 0..200 {
        run(seed, Server::Et).unwrap_or_else(|v| panic!("seed {seed}: false alarm: {v}"));
    }
}

#[test]
fn oneshot_never_rearmed_is_a_lost_wakeup_of_a_disarmed_registration() {
    for seed in 0..30 {
        let v = run(seed, Server::OneshotNoRearm).expect_err("the ONESHOT bug must be caught");
        assert!(
            matches!(v, Violation::LostWakeup { disarmed: true, .. }),
            "seed {seed}: {v}"
        );
        assert!(v.to_string().contains("never re-armed"), "{v}");
    }
}

#[test]
fn oneshot_rearmed_after_each_event_passes() {
    for seed in 0..200 {
        run(seed, Server::Oneshot).unwrap_or_else(|v| panic!("seed {seed}: false alarm: {v}"));
    }
}

#[test]
fn after_a_violation_every_blocking_call_fails_at_once() {
    let p = Sim::new(3);
    let e = echo(&p, Server::EtReadOnce, 1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Deadlock);
    assert_eq!(e.to_string(), "netpoll-sim: run stopped: lost-wakeup");
    let t = p.now_ns();
    let ep = p.epoll_create1(0).unwrap();
    let mut evs = [EpollEvent::EMPTY; 1];
    // Even with a timeout, and with nothing of this instance's wrong: the run is over.
    let e = p.epoll_wait(ep, &mut evs, 10).unwrap_err();
    assert!(e.to_string().starts_with("netpoll-sim: run stopped"), "{e}");
    assert_eq!(p.now_ns(), t, "a stopped call lets no time pass");
    // A call that does not block still works.
    assert_eq!(p.epoll_wait(ep, &mut evs, 0).unwrap(), 0);
    // Only the first violation is kept.
    assert_eq!(p.finish().unwrap_err().oracle(), "lost-wakeup");
}

#[test]
fn the_oracles_off_leave_the_kernel_alone() {
    let cfg = SimConfig {
        oracles: Oracles::off(),
        ..SimConfig::default()
    };
    let p = Sim::with_config(3, cfg);
    // The ET bug still strands the loop, which hangs: a plain Deadlock, no verdict.
    let e = echo(&p, Server::EtReadOnce, 1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Deadlock);
    assert!(!e.to_string().contains("run stopped"), "{e}");
    assert_eq!(p.violation(), None);
    assert_eq!(p.finish(), Ok(()));
}

#[test]
fn a_wait_with_nothing_to_wake_it_is_a_hang() {
    let p = Sim::new(1);
    let ep = p.epoll_create1(0).unwrap();
    let [a, _b] = p.socketpair(SOCK_NONBLOCK).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, a, Some(EpollEvent::new(Events::IN, 0)))
        .unwrap();
    let mut evs = [EpollEvent::EMPTY; 4];
    // The fixed twin: a wait with a deadline ends.
    assert_eq!(p.epoll_wait(ep, &mut evs, 5).unwrap(), 0);
    assert_eq!(p.violation(), None);
    let e = p.epoll_wait(ep, &mut evs, -1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Deadlock);
    assert!(
        e.to_string().starts_with("netpoll-sim: run stopped: hang"),
        "{e}"
    );
    let v = p.violation().unwrap();
    assert_eq!(
        v,
        Violation::Hang {
            call: format!("epoll_wait(fd {ep}, timeout -1)"),
            at_ns: 5_000_000
        }
    );
    // A blocking read is judged the same way.
    let p = Sim::new(1);
    let [a, _b] = p.socketpair(0).unwrap();
    assert!(p.read(a, &mut [0; 4]).is_err());
    assert!(
        matches!(p.violation(), Some(Violation::Hang { ref call, .. }) if call == &format!("read(fd {a})"))
    );
}

/// Reads a TCP socket whose data is still in flight: `spin` retries `EAGAIN` at once (time
/// never passes, the data never arrives), the fixed twin waits in `epoll_wait`.
fn reader(p: &Sim, spin: bool) -> io::Result<usize> {
    let l = p.tcp_socket(0)?;
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    p.listen(l, 4)?;
    let c = p.tcp_socket(0)?;
    p.connect(c, p.local_addr(l)?)?;
    // A blocking accept: waits for the handshake's last ACK.
    let (s, _) = p.accept4(l, SOCK_NONBLOCK)?;
    p.write(c, b"hello")?;
    let ep = p.epoll_create1(0)?;
    p.epoll_ctl(ep, EPOLL_CTL_ADD, s, Some(EpollEvent::new(Events::IN, 0)))?;
    let mut buf = [0u8; 16];
    for _ in 0..1_000_000 {
        match p.read(s, &mut buf) {
            Ok(n) => {
                for fd in [s, c, l, ep] {
                    p.close(fd)?;
                }
                return Ok(n);
            }
            Err(e) if e.raw_os_error() == Some(EAGAIN) => {}
            Err(e) => return Err(e),
        }
        if !spin {
            p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], -1)?;
        }
    }
    panic!("the livelock oracle let a spinning loop run a million turns");
}

#[test]
fn a_loop_that_spins_on_eagain_is_a_livelock() {
    let cfg = SimConfig {
        oracles: Oracles {
            livelock_turns: 1000,
            ..Oracles::default()
        },
        ..SimConfig::default()
    };
    let p = Sim::with_config(5, cfg.clone());
    let e = reader(&p, true).unwrap_err();
    assert_eq!(e.to_string(), "netpoll-sim: run stopped: livelock");
    let v = p.violation().unwrap();
    assert!(matches!(v, Violation::Livelock { turns: 1000, .. }), "{v}");
    // After a livelock every call fails, blocking or not.
    assert!(p.epoll_create1(0).is_err());

    let p = Sim::with_config(5, cfg);
    assert_eq!(reader(&p, false).unwrap(), 5);
    assert_eq!(p.finish(), Ok(()));
}

#[test]
fn the_default_livelock_budget_catches_a_spin() {
    let p = Sim::new(5);
    assert!(reader(&p, true).is_err());
    assert!(matches!(
        p.violation(),
        Some(Violation::Livelock {
            turns: netpoll_sim::oracle::LIVELOCK_TURNS,
            ..
        })
    ));
}

#[test]
fn an_fd_left_open_is_a_leak_unless_declared() {
    let p = Sim::new(1);
    let ep = p.epoll_create1(0).unwrap();
    let [a, b] = p.socketpair(0).unwrap();
    let l = p.tcp_socket(0).unwrap();
    p.close(a).unwrap();
    let v = p.finish().unwrap_err();
    assert_eq!(
        v,
        Violation::Leak {
            fds: vec![
                (ep, "epoll".to_string()),
                (b, "unix".to_string()),
                (l, "tcp".to_string())
            ]
        }
    );
    assert!(v.to_string().contains(&format!("{b} (unix)")), "{v}");

    // The fixed twin closes what it made, and declares what it keeps.
    let p = Sim::new(1);
    let ep = p.epoll_create1(0).unwrap();
    let [a, b] = p.socketpair(0).unwrap();
    p.expect_open(ep);
    p.close(a).unwrap();
    p.close(b).unwrap();
    assert_eq!(p.finish(), Ok(()));
}

#[test]
fn user_invariants_run_at_quiescence_and_at_the_end() {
    let p = Sim::new(1);
    let runs = Rc::new(Cell::new(0));
    let seen = Rc::clone(&runs);
    p.add_invariant("at most one pipe", move |s| {
        seen.set(seen.get() + 1);
        if s.open_files() <= 3 {
            Ok(())
        } else {
            Err(format!("{} files open", s.open_files()))
        }
    });
    let ep = p.epoll_create1(0).unwrap();
    let [r, _w] = p.pipe2(O_NONBLOCK).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, r, Some(EpollEvent::new(Events::IN, 0)))
        .unwrap();
    let mut evs = [EpollEvent::EMPTY; 4];
    assert_eq!(p.epoll_wait(ep, &mut evs, 1).unwrap(), 0);
    assert_eq!(runs.get(), 1, "run once at the quiescent wait");
    assert_eq!(p.epoll_wait(ep, &mut evs, 0).unwrap(), 0);
    assert_eq!(runs.get(), 1, "a poll is not a quiescence");
    let [_r2, _w2] = p.pipe2(O_NONBLOCK).unwrap();
    let e = p.epoll_wait(ep, &mut evs, 1).unwrap_err();
    assert!(e.to_string().contains("run stopped: invariant"), "{e}");
    let v = p.violation().unwrap();
    assert_eq!(
        v,
        Violation::Invariant {
            name: "at most one pipe".into(),
            message: "5 files open".into(),
            at_end: false,
            at_ns: 1_000_000,
        }
    );

    // At the end, through finish().
    let p = Sim::new(1);
    p.add_invariant("nothing open", |s| match s.open_files() {
        0 => Ok(()),
        n => Err(format!("{n} open")),
    });
    let [r, w] = p.pipe2(0).unwrap();
    p.expect_open(r);
    p.expect_open(w);
    let v = p.finish().unwrap_err();
    assert!(
        matches!(v, Violation::Invariant { at_end: true, .. }),
        "{v}"
    );
}

#[test]
fn set_wants_decides_what_counts() {
    // The ET bug, but the loop says it does not wait on server connections: no verdict, and
    // the loop then hangs for real.
    let p = Sim::new(2);
    p.set_wants(|s| {
        if s.data == LISTENER || s.data & CLIENT != 0 {
            netpoll_sim::default_wants(s)
        } else {
            Events::NONE
        }
    });
    assert!(echo(&p, Server::EtReadOnce, 2).is_err());
    assert_eq!(p.violation().map(|v| v.oracle()), Some("hang"));
}

//! A burst of 1,000 connects at a listener with mio's and tokio's default backlog (128), on
//! real Linux and on the simulated kernel: the same body, the same counts.
//!
//! Linux (6.x, `tcp_syncookies=1`, `tcp_abort_on_overflow=0`): loopback runs each handshake in
//! the caller's context, so the accept queue fills during the burst and holds backlog + 1
//! connections (`sk_acceptq_is_full` is `>`); the later clients' SYNs are dropped
//! (`tcp_conn_request`), so they stay in `SYN_SENT` (a write fails with `EAGAIN`, `SO_ERROR` is
//! 0) and retry after a second. Nobody is reset within the first 200 ms.
//!
//! The sim arm runs with Linux's loopback timing ([`SimConfig::linux_loopback`] and
//! [`Sim::settle`] after each call, which is what the interposer does for unmodified
//! programs), and gives the same counts (FINDINGS.md T3). Under the default latency model every
//! SYN is in flight before any handshake completes, so the listener answers them all and the
//! clients it has no room for are established on their side while it retries their ACKs: what
//! Linux does when the network has latency, which the last test pins down.
//!
//! [`SimConfig::linux_loopback`]: netpoll_sim::SimConfig::linux_loopback
//! [`Sim::settle`]: netpoll_sim::Sim::settle

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{
    errno::{EAGAIN, ENOTCONN},
    Events, SOCK_NONBLOCK,
};
use netpoll::Poller;

const CLIENTS: usize = 1000;
const BACKLOG: i32 = 128;

/// (accepted, clients whose write fails with EAGAIN, clients with a pending socket error).
fn burst<P: Poller>(p: &P, settle: impl Fn()) -> (usize, usize, usize) {
    let ln = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(ln, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(ln, BACKLOG).unwrap();
    let addr = p.local_addr(ln).unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let c = p.tcp_socket(SOCK_NONBLOCK).unwrap();
            let _ = p.connect(c, addr); // EINPROGRESS
            settle();
            c
        })
        .collect();
    // 200 ms with nothing accepted (real time on Linux, virtual on the sim).
    assert_eq!(p.poll(&mut [], 200).unwrap(), 0);
    let mut accepted = Vec::new();
    loop {
        match p.accept4(ln, SOCK_NONBLOCK) {
            Ok((fd, _)) => accepted.push(fd),
            Err(e) if e.raw_os_error() == Some(EAGAIN) => break,
            Err(e) => panic!("accept4: {e}"),
        }
    }
    let mut again = 0;
    let mut errors = 0;
    for &c in &clients {
        match p.take_socket_error(c) {
            Ok(0) => {}
            _ => errors += 1,
        }
        if matches!(p.write(c, b"x"), Err(e) if e.raw_os_error() == Some(EAGAIN)) {
            again += 1;
        }
    }
    for fd in clients.into_iter().chain(accepted.iter().copied()) {
        p.close(fd).unwrap();
    }
    p.close(ln).unwrap();
    (accepted.len(), again, errors)
}

const LINUX: (usize, usize, usize) = (BACKLOG as usize + 1, CLIENTS - BACKLOG as usize - 1, 0);

#[test]
fn real_backlog_burst() {
    assert_eq!(burst(&netpoll_realnet::RealNet::new(), || {}), LINUX);
}

#[test]
fn sim_backlog_burst_with_loopback_timing() {
    let sim = netpoll_sim::Sim::with_config(1, netpoll_sim::SimConfig::linux_loopback());
    sim.set_wants(|_| Events::NONE);
    assert_eq!(burst(&sim, || sim.settle()), LINUX);
}

/// With network latency the whole burst is in flight before the first handshake completes: the
/// listener answers every SYN (the accept queue is still empty), and the clients it then has
/// no room for are established on their side, writable, while it retries their final ACK.
#[test]
fn sim_backlog_burst_with_latency_answers_every_syn() {
    let sim = netpoll_sim::Sim::new(1);
    sim.set_wants(|_| Events::NONE);
    assert_eq!(burst(&sim, || {}), (BACKLOG as usize + 1, 0, 0));
}

/// (`SO_ERROR`, `getpeername`'s errno, `write`'s errno) of a client whose SYN a full queue
/// dropped, and whether the client the queue took has a peer.
fn syn_sent_has_no_peer<P: Poller>(p: &P, settle: impl Fn()) -> (i32, i32, i32, bool) {
    let ln = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(ln, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(ln, 0).unwrap(); // the queue holds one connection
    let addr = p.local_addr(ln).unwrap();
    let mut fds = Vec::new();
    for _ in 0..2 {
        let c = p.tcp_socket(SOCK_NONBLOCK).unwrap();
        let _ = p.connect(c, addr); // EINPROGRESS
        settle();
        fds.push(c);
    }
    let (queued, dropped) = (fds[0], fds[1]);
    let out = (
        p.take_socket_error(dropped).unwrap(),
        errno(p.peer_addr(dropped).err()),
        errno(p.write(dropped, b"x").err()),
        p.peer_addr(queued).is_ok(),
    );
    for fd in fds.into_iter().chain([ln]) {
        p.close(fd).unwrap();
    }
    out
}

fn errno(e: Option<std::io::Error>) -> i32 {
    e.and_then(|e| e.raw_os_error()).unwrap_or(0)
}

/// What the client library's connect check relies on: a client still in `SYN_SENT` has
/// `SO_ERROR` 0 (so a spurious `EPOLLOUT` looks like a finished connect) and no peer
/// (`getpeername` says `ENOTCONN`); a write says `EAGAIN`. `Clients` asks `getpeername` before
/// a client that will write nothing (a reset at byte 0, an idle client) takes its connection
/// as made (`netpoll-sim sweep reset --faults swarm`, seed 47, closed one in `SYN_SENT`).
const SYN_SENT: (i32, i32, i32, bool) = (0, ENOTCONN, EAGAIN, true);

#[test]
fn real_syn_sent_has_no_peer() {
    assert_eq!(
        syn_sent_has_no_peer(&netpoll_realnet::RealNet::new(), || {}),
        SYN_SENT
    );
}

#[test]
fn sim_syn_sent_has_no_peer_with_loopback_timing() {
    let sim = netpoll_sim::Sim::with_config(1, netpoll_sim::SimConfig::linux_loopback());
    sim.set_wants(|_| Events::NONE);
    assert_eq!(syn_sent_has_no_peer(&sim, || sim.settle()), SYN_SENT);
}

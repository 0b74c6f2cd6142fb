//! TCP over loopback: listeners, non-blocking connect, accept order, hang-ups and resets.
//!
//! Real TCP is asynchronous even on loopback: every observation here waits (in `epoll_wait`, never
//! a sleep) for the state it checks, and `connect`'s immediate result is normalised (`Ok` or
//! `EINPROGRESS` are the same outcome).

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{Events, Fd, Poller};

use crate::harness::*;

const T: i32 = 10_000;
const ALL: Events = IN.union(OUT).union(RDHUP);
const LOCALHOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// `connect`'s immediate result, normalised: `"started"` for `Ok` and `EINPROGRESS`.
fn connect<P: Poller>(p: &P, fd: Fd, addr: SocketAddrV4) -> String {
    match val(&p.connect(fd, addr)) {
        Ok(()) | Err(EINPROGRESS) => "started".to_string(),
        Err(e) => errno_name(e),
    }
}

pub fn tcp_listener_readable_when_pending<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let ep = epoll(p);
    log.ok(
        "ADD listener IN|OUT",
        ctl(p, ep, EPOLL_CTL_ADD, l, IN | OUT, 1),
    );
    expect_no_events(p, log, "idle listener: nothing, not even OUT", ep);
    log.err("accept empty", p.accept4(l, SOCK_NONBLOCK), EAGAIN);
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect", connect(p, c, addr), "started".to_string());
    expect_events(p, log, "pending connection", ep, T, &[(1, IN)]);
    expect_events(p, log, "LT: still pending", ep, 0, &[(1, IN)]);
    let (s, peer) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
    log.check("peer is the client", Some(peer) == p.local_addr(c).ok());
    log.check("server's peer_addr", p.peer_addr(s).ok() == Some(peer));
    log.check(
        "server's local_addr is the listener's",
        p.local_addr(s).ok() == Some(addr),
    );
    log.err("accept again", p.accept4(l, SOCK_NONBLOCK), EAGAIN);
    expect_no_events(p, log, "queue empty", ep);
    close_all(p, &[ep, l, c, s]);
}

pub fn tcp_accept_order_and_et_listener<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let ep = epoll(p);
    log.ok(
        "ADD listener IN|ET",
        ctl(p, ep, EPOLL_CTL_ADD, l, IN | ET, 1),
    );
    let mut clients = Vec::new();
    for i in 0..3 {
        let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
        log.expect("connect", connect(p, c, addr), "started".to_string());
        expect_events(
            p,
            log,
            &format!("client {i} queued: a new edge"),
            ep,
            T,
            &[(1, IN)],
        );
        clients.push(c);
    }
    for (i, &c) in clients.iter().enumerate() {
        let (s, peer) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
        log.check(
            &format!("accepted in order: client {i}"),
            Some(peer) == p.local_addr(c).ok(),
        );
        p.close(s).unwrap();
    }
    log.err("accept empty", p.accept4(l, SOCK_NONBLOCK), EAGAIN);
    close_all(p, &clients);
    close_all(p, &[ep, l]);
}

pub fn tcp_nonblocking_connect<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD client IN|OUT|RDHUP|ET",
        ctl(p, ep, EPOLL_CTL_ADD, c, ALL | ET, 1),
    );
    expect_events(p, log, "fresh socket: OUT|HUP", ep, 0, &[(1, OUT | HUP)]);
    let first = val(&p.connect(c, addr));
    log.check(
        "connect: Ok or EINPROGRESS",
        first == Ok(()) || first == Err(EINPROGRESS),
    );
    expect_events(p, log, "connected: OUT exactly", ep, T, &[(1, OUT)]);
    log.expect("SO_ERROR", val(&p.take_socket_error(c)), Ok(0));
    log.check(
        "peer_addr is the listener",
        p.peer_addr(c).ok() == Some(addr),
    );
    let local = p.local_addr(c).unwrap();
    log.check(
        "auto-bound to loopback, port != 0",
        *local.ip() == LOCALHOST && local.port() != 0,
    );
    // The first connect after an EINPROGRESS one reports its success; after that, EISCONN.
    let again = val(&p.connect(c, addr));
    log.check(
        "connect again: Ok or EISCONN",
        again == Ok(()) || again == Err(EISCONN),
    );
    log.err("and again", p.connect(c, addr), EISCONN);
    log.expect("listener", wait_for(p, l, IN, T as u64), IN);
    let (s, _) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
    close_all(p, &[ep, l, c, s]);
}

pub fn tcp_connect_refused<P: Poller>(p: &P, log: &mut Log) {
    // A port with no listener: bind one (never listen) and keep it bound, so nobody else takes it.
    let hold = log.ok("placeholder", p.tcp_socket(SOCK_NONBLOCK));
    log.ok("bind", p.bind(hold, SocketAddrV4::new(LOCALHOST, 0)));
    let addr = p.local_addr(hold).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD client IN|OUT|RDHUP",
        ctl(p, ep, EPOLL_CTL_ADD, c, ALL, 1),
    );
    let r = connect(p, c, addr);
    log.check(
        "connect started or refused at once",
        r == "started" || r == "ECONNREFUSED",
    );
    let refused = IN | OUT | ERR | HUP | RDHUP;
    expect_events(p, log, "refused", ep, T, &[(1, refused)]);
    let so = val(&p.take_socket_error(c));
    log.check(
        "SO_ERROR is ECONNREFUSED (0 if connect returned it)",
        so == Ok(ECONNREFUSED) || (so == Ok(0) && r == "ECONNREFUSED"),
    );
    log.expect("SO_ERROR cleared", val(&p.take_socket_error(c)), Ok(0));
    expect_events(
        p,
        log,
        "ERR gone with SO_ERROR",
        ep,
        0,
        &[(1, IN | OUT | HUP | RDHUP)],
    );
    close_all(p, &[ep, c, hold]);
}

/// On loopback the refusal is pending by the time a non-blocking `connect` returns: no wait,
/// no latency (Linux resets the SYN in the caller's context; the sim used to deliver the reset a
/// network latency later, so a `timeout 0` wait saw nothing).
pub fn tcp_connect_refused_is_pending_at_once<P: Poller>(p: &P, log: &mut Log) {
    let hold = log.ok("placeholder", p.tcp_socket(SOCK_NONBLOCK));
    log.ok("bind", p.bind(hold, SocketAddrV4::new(LOCALHOST, 0)));
    let addr = p.local_addr(hold).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD client", ctl(p, ep, EPOLL_CTL_ADD, c, ALL, 1));
    log.err("connect", p.connect(c, addr), EINPROGRESS);
    let refused = IN | OUT | ERR | HUP | RDHUP;
    expect_events(p, log, "refused, without waiting", ep, 0, &[(1, refused)]);
    log.expect("SO_ERROR", val(&p.take_socket_error(c)), Ok(ECONNREFUSED));
    let b = log.ok("blocking client", p.tcp_socket(0));
    log.err("blocking connect", p.connect(b, addr), ECONNREFUSED);
    close_all(p, &[ep, c, b, hold]);
}

pub fn tcp_fresh_and_listener_sockets<P: Poller>(p: &P, log: &mut Log) {
    let t = log.ok("fresh", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("fresh mask", poll_now(p, t, ALL), OUT | HUP);
    let mut buf = [0u8; 8];
    log.err("read fresh", p.read(t, &mut buf), ENOTCONN);
    log.err("write fresh", p.write(t, b"x"), EPIPE);
    log.err("peer_addr fresh", p.peer_addr(t), ENOTCONN);
    log.expect("SO_ERROR fresh", val(&p.take_socket_error(t)), Ok(0));
    log.err("accept on unlistened", p.accept4(t, SOCK_NONBLOCK), EINVAL);
    let l = tcp_listener(p);
    log.expect("listener mask", poll_now(p, l, ALL), Events::NONE);
    log.err("read listener", p.read(l, &mut buf), ENOTCONN);
    log.err("write listener", p.write(l, b"x"), EPIPE);
    log.err("peer_addr listener", p.peer_addr(l), ENOTCONN);
    log.err(
        "bind again",
        p.bind(l, SocketAddrV4::new(LOCALHOST, 0)),
        EINVAL,
    );
    let addr = p.local_addr(l).unwrap();
    log.err("bind to a port in use", p.bind(t, addr), EADDRINUSE);
    let [r, w] = log.ok("pipe", p.pipe2(O_NONBLOCK));
    log.err("accept on a pipe", p.accept4(r, SOCK_NONBLOCK), ENOTSOCK);
    log.err("bind a pipe", p.bind(r, addr), ENOTSOCK);
    log.err("SO_ERROR of a pipe", p.take_socket_error(r), ENOTSOCK);
    close_all(p, &[t, l, r, w]);
}

pub fn tcp_peer_close<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    let ep = epoll(p);
    log.ok("ADD client", ctl(p, ep, EPOLL_CTL_ADD, c, ALL, 1));
    expect_events(p, log, "writable", ep, 0, &[(1, OUT)]);
    log.ok("server closes", p.close(s));
    let ev = wait_for(p, c, IN | RDHUP, T as u64);
    log.expect("FIN", ev, IN | OUT | RDHUP);
    expect_events(p, log, "FIN, LT", ep, 0, &[(1, IN | OUT | RDHUP)]);
    let mut buf = [0u8; 8];
    log.count("read EOF", p.read(c, &mut buf), Ok(0));
    log.count(
        "write into the closed peer is accepted",
        p.write(c, b"x"),
        Ok(1),
    );
    let ev = wait_for(p, c, ERR, T as u64);
    log.expect("the peer's RST", ev, IN | OUT | ERR | HUP | RDHUP);
    log.expect(
        "SO_ERROR after RST in CLOSE_WAIT",
        val(&p.take_socket_error(c)),
        Ok(EPIPE),
    );
    log.err("write", p.write(c, b"x"), EPIPE);
    log.count("read", p.read(c, &mut buf), Ok(0));
    close_all(p, &[ep, l, c]);
}

pub fn tcp_shutdown_wr<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    let ep = epoll(p);
    log.ok("ADD server", ctl(p, ep, EPOLL_CTL_ADD, s, ALL, 2));
    log.count("client writes", p.write(c, b"bye"), Ok(3));
    log.ok("client SHUT_WR", p.shutdown(c, SHUT_WR));
    let ev = wait_for(p, s, IN | RDHUP, T as u64);
    log.expect("server sees data + FIN", ev, IN | OUT | RDHUP);
    let mut buf = [0u8; 8];
    log.count("server reads", p.read(s, &mut buf), Ok(3));
    log.count("then EOF", p.read(s, &mut buf), Ok(0));
    log.expect("client's own mask", poll_now(p, c, ALL), OUT);
    log.err("client writes after SHUT_WR", p.write(c, b"x"), EPIPE);
    log.count("server can still write", p.write(s, b"ok"), Ok(2));
    wait_for(p, c, IN, T as u64);
    log.count("client reads", p.read(c, &mut buf), Ok(2));
    log.ok("server SHUT_WR too", p.shutdown(s, SHUT_WR));
    let ev = wait_for(p, c, HUP, T as u64);
    log.expect("both directions closed: HUP", ev, IN | OUT | HUP | RDHUP);
    log.count("client EOF", p.read(c, &mut buf), Ok(0));
    close_all(p, &[ep, l, c, s]);
}

pub fn tcp_reset_by_linger0<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    let ep = epoll(p);
    log.ok("ADD server", ctl(p, ep, EPOLL_CTL_ADD, s, ALL, 2));
    log.ok("SO_LINGER 0", p.set_linger(c, Some(0)));
    log.ok("client closes: RST", p.close(c));
    let ev = wait_for(p, s, ERR, T as u64);
    log.expect("reset", ev, IN | OUT | ERR | HUP | RDHUP);
    expect_events(
        p,
        log,
        "reset, LT",
        ep,
        0,
        &[(2, IN | OUT | ERR | HUP | RDHUP)],
    );
    let mut buf = [0u8; 8];
    log.err("read", p.read(s, &mut buf), ECONNRESET);
    log.count("read again: EOF", p.read(s, &mut buf), Ok(0));
    log.expect(
        "SO_ERROR consumed by the read",
        val(&p.take_socket_error(s)),
        Ok(0),
    );
    log.err("write", p.write(s, b"x"), EPIPE);
    expect_events(
        p,
        log,
        "after the error",
        ep,
        0,
        &[(2, IN | OUT | HUP | RDHUP)],
    );
    close_all(p, &[ep, l, s]);
}

pub fn tcp_reset_write_first<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.ok("SO_LINGER 0", p.set_linger(c, Some(0)));
    log.ok("client closes: RST", p.close(c));
    let ev = wait_for(p, s, ERR, T as u64);
    log.expect("reset", ev, IN | OUT | ERR | HUP | RDHUP);
    log.err("write takes the error", p.write(s, b"x"), ECONNRESET);
    log.err("write again", p.write(s, b"x"), EPIPE);
    let mut buf = [0u8; 8];
    log.count("read: EOF", p.read(s, &mut buf), Ok(0));
    close_all(p, &[l, s]);
}

pub fn tcp_close_with_unread_resets<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.count("client writes", p.write(c, b"unread"), Ok(6));
    let ev = wait_for(p, s, IN, T as u64);
    log.expect("server readable", ev, IN | OUT);
    log.ok("server closes without reading", p.close(s));
    let ev = wait_for(p, c, ERR, T as u64);
    log.expect("client reset", ev, IN | OUT | ERR | HUP | RDHUP);
    let mut buf = [0u8; 8];
    log.err("read", p.read(c, &mut buf), ECONNRESET);
    close_all(p, &[l, c]);
}

pub fn tcp_listener_close_resets_pending<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect", connect(p, c, addr), "started".to_string());
    let ev = wait_for(p, l, IN, T as u64);
    log.expect("queued", ev, IN);
    let ev = wait_for(p, c, OUT, T as u64);
    log.expect("client established", ev, OUT);
    log.ok("close the listener, connection unaccepted", p.close(l));
    let ev = wait_for(p, c, ERR, T as u64);
    log.expect("client reset", ev, IN | OUT | ERR | HUP | RDHUP);
    log.expect("SO_ERROR", val(&p.take_socket_error(c)), Ok(ECONNRESET));
    close_all(p, &[c]);
}

pub fn tcp_shutdown_rd_local<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.ok("client SHUT_RD", p.shutdown(c, SHUT_RD));
    log.expect("client's mask", poll_now(p, c, ALL), IN | OUT | RDHUP);
    let mut buf = [0u8; 8];
    log.count("client read: EOF", p.read(c, &mut buf), Ok(0));
    log.count("client can still write", p.write(c, b"hi"), Ok(2));
    wait_for(p, s, IN, T as u64);
    log.count("server reads", p.read(s, &mut buf), Ok(2));
    close_all(p, &[l, c, s]);
}

/// `EPOLLOUT` comes back (ET: as an edge) once the reader drains a full connection.
pub fn tcp_epollout_after_full<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    let ep = epoll(p);
    log.ok(
        "ADD client OUT|ET",
        ctl(p, ep, EPOLL_CTL_ADD, c, OUT | ET, 1),
    );
    expect_events(p, log, "writable", ep, 0, &[(1, OUT)]);
    let n = fill(p, c);
    log.check("filled to EAGAIN", n > 0);
    log.err("write when full", p.write(c, b"x"), EAGAIN);
    let mut read = 0;
    let mut got = Events::NONE;
    for _ in 0..10_000 {
        read += drain(p, s);
        if let Ok(evs) = wait(p, ep, 4, 0) {
            if let Some(e) = evs.first() {
                got = e.1;
                break;
            }
        }
        wait_for(p, s, IN, 100);
    }
    log.expect("OUT edge after the reader drained", got, OUT);
    log.check("reader got bytes", read > 0);
    close_all(p, &[ep, l, c, s]);
}

/// The accept queue holds `backlog + 1` connections; a further client's SYN is dropped, so it
/// stays connecting until the queue has room and its SYN is retransmitted (about 1 s).
pub fn tcp_backlog_full_client_waits<P: Poller>(p: &P, log: &mut Log) {
    let l = log.ok("socket", p.tcp_socket(SOCK_NONBLOCK));
    log.ok("bind", p.bind(l, SocketAddrV4::new(LOCALHOST, 0)));
    log.ok("listen(0)", p.listen(l, 0));
    let addr = p.local_addr(l).unwrap();
    let c1 = log.ok("client 1", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect 1", connect(p, c1, addr), "started".to_string());
    log.expect("client 1 connected", wait_for(p, c1, OUT, T as u64), OUT);
    log.expect("queued", wait_for(p, l, IN, T as u64), IN);
    let c2 = log.ok("client 2", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect 2", connect(p, c2, addr), "started".to_string());
    log.expect(
        "client 2 not connected within 300 ms",
        wait_for(p, c2, OUT, 300),
        NONE,
    );
    let (s1, peer) = log.ok("accept 1", p.accept4(l, SOCK_NONBLOCK));
    log.check("client 1 first", Some(peer) == p.local_addr(c1).ok());
    log.expect(
        "client 2 connects after the retransmission",
        wait_for(p, c2, OUT, T as u64),
        OUT,
    );
    log.expect("SO_ERROR", val(&p.take_socket_error(c2)), Ok(0));
    log.expect("queued", wait_for(p, l, IN, T as u64), IN);
    let (s2, peer) = log.ok("accept 2", p.accept4(l, SOCK_NONBLOCK));
    log.check("client 2", Some(peer) == p.local_addr(c2).ok());
    close_all(p, &[l, c1, c2, s1, s2]);
}

pub fn tcp_blocking_calls<P: Poller>(p: &P, log: &mut Log) {
    let l = log.ok("blocking listener", p.tcp_socket(0));
    log.ok("bind", p.bind(l, SocketAddrV4::new(LOCALHOST, 0)));
    log.ok("listen", p.listen(l, 8));
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("blocking client", p.tcp_socket(0));
    log.ok("blocking connect", p.connect(c, addr));
    let (s, _) = log.ok("blocking accept", p.accept4(l, 0));
    log.count("write", p.write(c, b"hello"), Ok(5));
    let mut buf = [0u8; 16];
    log.count(
        "blocking read waits for the data",
        p.read(s, &mut buf),
        Ok(5),
    );
    log.ok("client closes", p.close(c));
    log.count("blocking read sees EOF", p.read(s, &mut buf), Ok(0));
    let hold = log.ok("placeholder", p.tcp_socket(0));
    log.ok("bind", p.bind(hold, SocketAddrV4::new(LOCALHOST, 0)));
    let closed = p.local_addr(hold).unwrap();
    let c2 = log.ok("blocking client 2", p.tcp_socket(0));
    log.err(
        "blocking connect to no listener",
        p.connect(c2, closed),
        ECONNREFUSED,
    );
    log.expect("SO_ERROR consumed", val(&p.take_socket_error(c2)), Ok(0));
    close_all(p, &[l, s, hold, c2]);
}

pub fn tcp_data_before_accept<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect", connect(p, c, addr), "started".to_string());
    log.expect("connected", wait_for(p, c, OUT, T as u64), OUT);
    log.count("write before accept", p.write(c, b"early"), Ok(5));
    log.ok("client SHUT_WR", p.shutdown(c, SHUT_WR));
    log.expect("queued", wait_for(p, l, IN, T as u64), IN);
    let (s, _) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
    let ev = wait_for(p, s, IN | RDHUP, T as u64);
    log.expect("accepted socket: data and FIN", ev, IN | OUT | RDHUP);
    let ep = epoll(p);
    log.ok(
        "ADD IN|ET after the fact",
        ctl(p, ep, EPOLL_CTL_ADD, s, IN | ET, 3),
    );
    expect_events(p, log, "ADD reports it", ep, 0, &[(3, IN)]);
    let mut buf = [0u8; 16];
    log.count("read", p.read(s, &mut buf), Ok(5));
    log.count("EOF", p.read(s, &mut buf), Ok(0));
    close_all(p, &[ep, l, c, s]);
}

pub fn tcp_listen_and_connect_rules<P: Poller>(p: &P, log: &mut Log) {
    let t = log.ok("socket", p.tcp_socket(SOCK_NONBLOCK));
    log.ok("listen unbound: auto-binds", p.listen(t, 4));
    let addr = p.local_addr(t).unwrap();
    log.check("bound to a port", addr.port() != 0);
    log.err("connect a listener", p.connect(t, addr), EISCONN);
    log.err("accept4 bad flags", p.accept4(t, 1), EINVAL);
    log.err("tcp_socket bad flags", p.tcp_socket(0x10), EINVAL);
    let (l, c, s) = tcp_pair(p);
    log.err("listen on a connected socket", p.listen(c, 4), EINVAL);
    log.err(
        "bind a connected socket",
        p.bind(c, SocketAddrV4::new(LOCALHOST, 0)),
        EINVAL,
    );
    close_all(p, &[t, l, c, s]);
}

/// `shutdown(SHUT_RD)` on a listener stops it listening (the trick that wakes a blocked
/// `accept`); `SHUT_WR` alone does nothing.
pub fn tcp_shutdown_listener<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    log.ok("SHUT_WR a listener", p.shutdown(l, SHUT_WR));
    log.expect("still a listener", poll_now(p, l, ALL), NONE);
    log.err("accept", p.accept4(l, SOCK_NONBLOCK), EAGAIN);
    let ep = epoll(p);
    log.ok("ADD IN|OUT|RDHUP", ctl(p, ep, EPOLL_CTL_ADD, l, ALL, 1));
    log.ok("SHUT_RD a listener", p.shutdown(l, SHUT_RD));
    expect_events(p, log, "closed", ep, 0, &[(1, OUT | HUP)]);
    log.err("accept", p.accept4(l, SOCK_NONBLOCK), EINVAL);
    close_all(p, &[ep, l]);
}

/// What one write accepted arrives whole at the reader, however it was segmented.
pub fn tcp_large_write_arrives_whole<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sent = p.write(c, &data).unwrap_or(0);
    log.check("write took something", sent > 0);
    log.ok("SHUT_WR", p.shutdown(c, SHUT_WR));
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match p.read(s, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.raw_os_error() == Some(EAGAIN) => {
                if wait_for(p, s, IN, T as u64).is_empty() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    log.check(
        "received exactly what was accepted, in order",
        got[..] == data[..sent],
    );
    close_all(p, &[l, c, s]);
}

/// `SO_LINGER` back to `None` restores the orderly close (FIN, not RST).
pub fn tcp_linger_none_restores_fin<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.ok("SO_LINGER 0", p.set_linger(c, Some(0)));
    log.ok("SO_LINGER off", p.set_linger(c, None));
    log.ok("close", p.close(c));
    log.expect(
        "server sees FIN",
        wait_for(p, s, IN | RDHUP, T as u64),
        IN | OUT | RDHUP,
    );
    let mut buf = [0u8; 4];
    log.count("EOF", p.read(s, &mut buf), Ok(0));
    close_all(p, &[l, s]);
}

/// After a refused connect: the error once, then EOF on read, EPIPE on write, no peer; the next
/// connect is `ECONNABORTED` and resets the socket, the one after it starts afresh.
pub fn tcp_refused_socket_afterwards<P: Poller>(p: &P, log: &mut Log) {
    let hold = log.ok("placeholder", p.tcp_socket(SOCK_NONBLOCK));
    log.ok("bind", p.bind(hold, SocketAddrV4::new(LOCALHOST, 0)));
    let addr = p.local_addr(hold).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    let _ = p.connect(c, addr);
    let ev = wait_for(p, c, ERR, T as u64);
    log.expect("refused", ev, IN | OUT | ERR | HUP | RDHUP);
    let mut buf = [0u8; 4];
    log.err("read takes the error", p.read(c, &mut buf), ECONNREFUSED);
    log.count("then EOF", p.read(c, &mut buf), Ok(0));
    log.err("write", p.write(c, b"x"), EPIPE);
    log.err("peer_addr", p.peer_addr(c), ENOTCONN);
    log.ok("listen on the port", p.listen(hold, 4));
    // The socket still counts as connecting; the failure was consumed, so Linux reports the
    // attempt as aborted and resets the socket to a fresh one.
    log.err(
        "connect again: the old attempt is aborted",
        p.connect(c, addr),
        ECONNABORTED,
    );
    log.expect("a fresh socket again", poll_now(p, c, ALL), OUT | HUP);
    let r = connect(p, c, addr);
    log.expect("connect a third time", r, "started".to_string());
    log.expect("connected this time", wait_for(p, c, OUT, T as u64), OUT);
    log.expect("SO_ERROR", val(&p.take_socket_error(c)), Ok(0));
    close_all(p, &[hold, c]);
}

pub fn tcp_zero_length_io<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.count("write nothing", p.write(c, &[]), Ok(0));
    let mut buf = [0u8; 1];
    log.count("read into nothing", p.read(s, &mut buf[..0]), Ok(0));
    log.count("read: nothing sent", p.read(s, &mut buf), Err(EAGAIN));
    log.ok("SHUT_WR", p.shutdown(c, SHUT_WR));
    log.count("write nothing after SHUT_WR", p.write(c, &[]), Err(EPIPE));
    log.ok("SHUT_WR twice", p.shutdown(c, SHUT_WR));
    close_all(p, &[l, c, s]);
}

/// After a reset the socket is unconnected: no peer, `shutdown` is `ENOTCONN`.
pub fn tcp_after_reset<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.ok("SO_LINGER 0", p.set_linger(c, Some(0)));
    log.ok("close: RST", p.close(c));
    log.expect(
        "reset",
        wait_for(p, s, ERR, T as u64),
        IN | OUT | ERR | HUP | RDHUP,
    );
    log.expect("SO_ERROR", val(&p.take_socket_error(s)), Ok(ECONNRESET));
    log.err("peer_addr", p.peer_addr(s), ENOTCONN);
    log.err("shutdown", p.shutdown(s, SHUT_RDWR), ENOTCONN);
    let mut buf = [0u8; 4];
    log.count("read: EOF", p.read(s, &mut buf), Ok(0));
    close_all(p, &[l, s]);
}

/// `SHUT_RD` on TCP tells the peer nothing: data it sends afterwards still arrives and is read.
pub fn tcp_shut_rd_then_peer_writes<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.ok("client SHUT_RD", p.shutdown(c, SHUT_RD));
    log.count("server writes", p.write(s, b"late"), Ok(4));
    log.expect("server unaffected", poll_now(p, s, ALL), OUT);
    let mut buf = [0u8; 8];
    let mut got = Err(EAGAIN);
    for _ in 0..100 {
        got = val(&p.read(c, &mut buf));
        if got != Ok(0) {
            break;
        }
        // EOF until the segment arrives (the socket polls IN all along): let 10 ms pass on the
        // poller's clock, in an empty epoll_wait.
        let ep = epoll(p);
        let _ = wait(p, ep, 1, 10);
        p.close(ep).unwrap();
    }
    log.expect("the data is readable", got, Ok(4));
    log.count("then EOF", p.read(c, &mut buf), Ok(0));
    close_all(p, &[l, c, s]);
}

/// A connection reset while still in the accept queue is accepted all the same; the error waits
/// on the accepted socket.
pub fn tcp_reset_before_accept<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect", connect(p, c, addr), "started".to_string());
    log.expect("connected", wait_for(p, c, OUT, T as u64), OUT);
    log.expect("queued", wait_for(p, l, IN, T as u64), IN);
    log.ok("SO_LINGER 0", p.set_linger(c, Some(0)));
    log.ok("client resets", p.close(c));
    let (s, _) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
    log.expect(
        "accepted socket reset",
        wait_for(p, s, ERR, T as u64),
        IN | OUT | ERR | HUP | RDHUP,
    );
    let mut buf = [0u8; 4];
    log.err("read", p.read(s, &mut buf), ECONNRESET);
    log.err("accept again", p.accept4(l, SOCK_NONBLOCK), EAGAIN);
    close_all(p, &[l, s]);
}

/// A client that sent data and closed before being accepted: the accepted socket has the data
/// and the FIN.
pub fn tcp_fin_before_accept<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect", connect(p, c, addr), "started".to_string());
    log.expect("connected", wait_for(p, c, OUT, T as u64), OUT);
    log.count("write", p.write(c, b"bye"), Ok(3));
    log.ok("client closes", p.close(c));
    log.expect("queued", wait_for(p, l, IN, T as u64), IN);
    let (s, _) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
    log.expect(
        "data and FIN",
        wait_for(p, s, IN | RDHUP, T as u64),
        IN | OUT | RDHUP,
    );
    let mut buf = [0u8; 8];
    log.count("read", p.read(s, &mut buf), Ok(3));
    log.count("EOF", p.read(s, &mut buf), Ok(0));
    close_all(p, &[l, s]);
}

/// `shutdown` of a socket still connecting (its SYN dropped by a full accept queue) aborts the
/// attempt: Linux disconnects it, whatever `how` is.
pub fn tcp_shutdown_while_connecting<P: Poller>(p: &P, log: &mut Log) {
    let l = log.ok("socket", p.tcp_socket(SOCK_NONBLOCK));
    log.ok("bind", p.bind(l, SocketAddrV4::new(LOCALHOST, 0)));
    log.ok("listen(0)", p.listen(l, 0));
    let addr = p.local_addr(l).unwrap();
    let c1 = log.ok("client 1", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect 1", connect(p, c1, addr), "started".to_string());
    log.expect("client 1 connected", wait_for(p, c1, OUT, T as u64), OUT);
    log.expect("queued", wait_for(p, l, IN, T as u64), IN);
    let c2 = log.ok("client 2", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect 2", connect(p, c2, addr), "started".to_string());
    log.expect("client 2 still connecting", wait_for(p, c2, OUT, 100), NONE);
    log.ok(
        "shutdown(SHUT_WR) while connecting",
        p.shutdown(c2, SHUT_WR),
    );
    log.expect("aborted", poll_now(p, c2, ALL), OUT | ERR | HUP);
    log.expect("SO_ERROR", val(&p.take_socket_error(c2)), Ok(ECONNRESET));
    log.expect(
        "a new connect starts afresh",
        connect(p, c2, addr),
        "started".to_string(),
    );
    close_all(p, &[l, c1, c2]);
}

/// Addresses: an unbound socket is `0.0.0.0:0`; any 127/8 address can be bound; a client
/// connecting to 127.0.0.2 gets the loopback route's source address, 127.0.0.1.
pub fn tcp_addresses<P: Poller>(p: &P, log: &mut Log) {
    let t = log.ok("fresh", p.tcp_socket(SOCK_NONBLOCK));
    log.expect(
        "unbound local_addr",
        val(&p.local_addr(t)),
        Ok(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
    );
    let l = log.ok("listener", p.tcp_socket(SOCK_NONBLOCK));
    let two = Ipv4Addr::new(127, 0, 0, 2);
    log.ok("bind 127.0.0.2:0", p.bind(l, SocketAddrV4::new(two, 0)));
    log.ok("listen", p.listen(l, 4));
    let addr = p.local_addr(l).unwrap();
    log.expect("listener ip", *addr.ip(), two);
    log.expect("connect", connect(p, t, addr), "started".to_string());
    log.expect("connected", wait_for(p, t, OUT, T as u64), OUT);
    log.expect(
        "client's source address",
        val(&p.local_addr(t)).map(|a| *a.ip()),
        Ok(LOCALHOST),
    );
    log.expect("queued", wait_for(p, l, IN, T as u64), IN);
    let (s, peer) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
    log.check("peer is the client", Some(peer) == p.local_addr(t).ok());
    log.check(
        "server's local address is the listener's",
        p.local_addr(s).ok() == Some(addr),
    );
    close_all(p, &[t, l, s]);
}

/// `shutdown` of an unconnected TCP socket fails with `ENOTCONN` but still marks the socket shut
/// down (Linux's "hack to wake up other listeners" in `inet_shutdown`).
pub fn tcp_shutdown_unconnected_still_shuts<P: Poller>(p: &P, log: &mut Log) {
    let t = log.ok("fresh", p.tcp_socket(SOCK_NONBLOCK));
    log.err("SHUT_RD", p.shutdown(t, SHUT_RD), ENOTCONN);
    log.expect(
        "now reads as shut down",
        poll_now(p, t, ALL),
        IN | OUT | HUP | RDHUP,
    );
    let mut buf = [0u8; 4];
    log.count("read: EOF, not ENOTCONN", p.read(t, &mut buf), Ok(0));
    let u = log.ok("fresh", p.tcp_socket(SOCK_NONBLOCK));
    log.err("SHUT_WR", p.shutdown(u, SHUT_WR), ENOTCONN);
    log.expect("mask", poll_now(p, u, ALL), OUT | HUP);
    log.err("write", p.write(u, b"x"), EPIPE);
    log.count("read: still ENOTCONN", p.read(u, &mut buf), Err(ENOTCONN));
    close_all(p, &[t, u]);
}

/// Data arriving at a socket that has shut down both directions (`FIN_WAIT` with reading shut)
/// makes it reset the connection (RFC 1122), on both ends.
pub fn tcp_data_after_shut_rdwr_resets<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.ok("client SHUT_RDWR", p.shutdown(c, SHUT_RDWR));
    log.expect(
        "server sees FIN",
        wait_for(p, s, RDHUP, T as u64),
        IN | OUT | RDHUP,
    );
    log.count("server writes", p.write(s, b"x"), Ok(1));
    // The client already polls HUP (its own SHUT_RDWR), so waiting on it would not wait for
    // the data. The server's reset comes back only after the client's: wait for that instead.
    log.expect(
        "server reset",
        wait_for(p, s, ERR, T as u64),
        IN | OUT | ERR | HUP | RDHUP,
    );
    log.expect(
        "client resets",
        poll_now(p, c, IN | OUT | RDHUP),
        IN | OUT | ERR | HUP | RDHUP,
    );
    log.expect(
        "client SO_ERROR",
        val(&p.take_socket_error(c)),
        Ok(ECONNRESET),
    );
    log.expect("server SO_ERROR", val(&p.take_socket_error(s)), Ok(EPIPE));
    close_all(p, &[l, c, s]);
}

/// `shutdown` settles a non-blocking connect's pending state: the next `connect` is `EISCONN`
/// (without the shutdown, the first repeat would report the connect's success).
pub fn tcp_shutdown_settles_connect<P: Poller>(p: &P, log: &mut Log) {
    let l = tcp_listener(p);
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("connect", connect(p, c, addr), "started".to_string());
    log.expect("connected", wait_for(p, c, OUT, T as u64), OUT);
    log.ok("SHUT_WR", p.shutdown(c, SHUT_WR));
    log.err("connect again", p.connect(c, addr), EISCONN);
    close_all(p, &[l, c]);
}

crate::cases! {
    tcp_listener_readable_when_pending,
    tcp_accept_order_and_et_listener,
    tcp_nonblocking_connect,
    tcp_connect_refused,
    tcp_connect_refused_is_pending_at_once,
    tcp_fresh_and_listener_sockets,
    tcp_peer_close,
    tcp_shutdown_wr,
    tcp_reset_by_linger0,
    tcp_reset_write_first,
    tcp_close_with_unread_resets,
    tcp_listener_close_resets_pending,
    tcp_shutdown_rd_local,
    tcp_epollout_after_full,
    tcp_backlog_full_client_waits,
    tcp_blocking_calls,
    tcp_data_before_accept,
    tcp_listen_and_connect_rules,
    tcp_shutdown_listener,
    tcp_large_write_arrives_whole,
    tcp_linger_none_restores_fin,
    tcp_refused_socket_afterwards,
    tcp_zero_length_io,
    tcp_after_reset,
    tcp_shut_rd_then_peer_writes,
    tcp_reset_before_accept,
    tcp_fin_before_accept,
    tcp_shutdown_while_connecting,
    tcp_addresses,
    tcp_shutdown_unconnected_still_shuts,
    tcp_data_after_shut_rdwr_resets,
    tcp_shutdown_settles_connect,
}

//! Hang-ups on unix sockets and pipes: `shutdown`, `close`, and the exact masks they produce.

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{Fd, Poller};

use crate::harness::*;

const ALL: netpoll::Events = IN.union(OUT).union(RDHUP);

/// Registers `a` (data 1) and `b` (data 2) for IN|OUT|RDHUP, LT.
fn watch_pair<P: Poller>(p: &P, log: &mut Log, a: Fd, b: Fd) -> Fd {
    let ep = epoll(p);
    log.ok("ADD a", ctl(p, ep, EPOLL_CTL_ADD, a, ALL, 1));
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, ALL, 2));
    log.expect(
        "both writable",
        wait(p, ep, 8, 0),
        Ok(vec![(1, OUT), (2, OUT)]),
    );
    ep
}

fn sorted(w: Waited) -> Waited {
    w.map(|mut v| {
        v.sort();
        v
    })
}

pub fn socketpair_shutdown_wr<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = watch_pair(p, log, a, b);
    log.ok("shutdown a WR", p.shutdown(a, SHUT_WR));
    log.expect(
        "masks",
        sorted(wait(p, ep, 8, 0)),
        Ok(vec![(1, OUT), (2, IN | OUT | RDHUP)]),
    );
    let mut buf = [0u8; 8];
    log.count("b reads EOF", p.read(b, &mut buf), Ok(0));
    log.err("a writes", p.write(a, b"x"), EPIPE);
    log.count("b can still write", p.write(b, b"x"), Ok(1));
    log.count("a reads it", p.read(a, &mut buf), Ok(1));
    log.ok("shutdown a WR again", p.shutdown(a, SHUT_WR));
    close_all(p, &[ep, a, b]);
}

pub fn socketpair_shutdown_rd<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = watch_pair(p, log, a, b);
    log.ok("shutdown a RD", p.shutdown(a, SHUT_RD));
    log.expect(
        "masks",
        sorted(wait(p, ep, 8, 0)),
        Ok(vec![(1, IN | OUT | RDHUP), (2, OUT)]),
    );
    let mut buf = [0u8; 8];
    log.count("a reads EOF", p.read(a, &mut buf), Ok(0));
    log.err("b writes", p.write(b, b"x"), EPIPE);
    log.count("a can still write", p.write(a, b"x"), Ok(1));
    log.count("b reads it", p.read(b, &mut buf), Ok(1));
    close_all(p, &[ep, a, b]);
}

pub fn socketpair_shutdown_rdwr<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = watch_pair(p, log, a, b);
    log.ok("shutdown a RDWR", p.shutdown(a, SHUT_RDWR));
    let hup = IN | OUT | HUP | RDHUP;
    log.expect(
        "both fully hung up",
        sorted(wait(p, ep, 8, 0)),
        Ok(vec![(1, hup), (2, hup)]),
    );
    let mut buf = [0u8; 8];
    log.count("a reads EOF", p.read(a, &mut buf), Ok(0));
    log.count("b reads EOF", p.read(b, &mut buf), Ok(0));
    log.err("a writes", p.write(a, b"x"), EPIPE);
    log.err("b writes", p.write(b, b"x"), EPIPE);
    close_all(p, &[ep, a, b]);
}

pub fn socketpair_close_peer<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = watch_pair(p, log, a, b);
    log.count("a writes 3", p.write(a, b"abc"), Ok(3));
    log.ok("close a", p.close(a));
    log.expect(
        "b",
        wait(p, ep, 8, 0),
        Ok(vec![(2, IN | OUT | HUP | RDHUP)]),
    );
    let mut buf = [0u8; 8];
    log.count("b reads the bytes", p.read(b, &mut buf), Ok(3));
    log.count("then EOF", p.read(b, &mut buf), Ok(0));
    log.count("EOF again", p.read(b, &mut buf), Ok(0));
    log.err("b writes", p.write(b, b"x"), EPIPE);
    log.count("empty read", p.read(b, &mut []), Ok(0));
    close_all(p, &[ep, b]);
}

/// Closing a unix socket with unread bytes resets the peer: `ERR`, then `ECONNRESET` once.
pub fn socketpair_close_with_unread<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = watch_pair(p, log, a, b);
    log.count("a writes 3", p.write(a, b"abc"), Ok(3));
    log.ok("close b unread", p.close(b));
    log.expect(
        "a",
        wait(p, ep, 8, 0),
        Ok(vec![(1, IN | OUT | ERR | HUP | RDHUP)]),
    );
    let mut buf = [0u8; 8];
    log.err("a reads: reset", p.read(a, &mut buf), ECONNRESET);
    log.count("then EOF", p.read(a, &mut buf), Ok(0));
    log.expect(
        "ERR gone",
        wait(p, ep, 8, 0),
        Ok(vec![(1, IN | OUT | HUP | RDHUP)]),
    );
    log.err("a writes", p.write(a, b"x"), EPIPE);
    close_all(p, &[ep, a]);
}

pub fn socketpair_close_unread_write_first<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.count("a writes 3", p.write(a, b"abc"), Ok(3));
    log.ok("close b unread", p.close(b));
    log.err(
        "a writes: EPIPE before the pending reset",
        p.write(a, b"x"),
        EPIPE,
    );
    let mut buf = [0u8; 8];
    log.err("a reads: reset", p.read(a, &mut buf), ECONNRESET);
    log.count("then EOF", p.read(a, &mut buf), Ok(0));
    close_all(p, &[a]);
}

pub fn rdhup_only_when_asked<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b IN", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.ok("shutdown a WR", p.shutdown(a, SHUT_WR));
    expect_events(p, log, "IN, no RDHUP", ep, 0, &[(1, IN)]);
    log.ok("MOD OUT", ctl(p, ep, EPOLL_CTL_MOD, b, OUT, 1));
    expect_events(p, log, "OUT only", ep, 0, &[(1, OUT)]);
    log.ok("close a", p.close(a));
    expect_events(p, log, "HUP unasked", ep, 0, &[(1, OUT | HUP)]);
    close_all(p, &[ep, b]);
}

pub fn et_hangup_edge<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD b IN|RDHUP|ET",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | RDHUP | ET, 1),
    );
    expect_no_events(p, log, "idle", ep);
    log.ok("shutdown a WR", p.shutdown(a, SHUT_WR));
    expect_events(p, log, "edge", ep, 0, &[(1, IN | RDHUP)]);
    expect_no_events(p, log, "once", ep);
    log.ok("close a", p.close(a));
    expect_events(
        p,
        log,
        "close is another edge",
        ep,
        0,
        &[(1, IN | HUP | RDHUP)],
    );
    expect_no_events(p, log, "once", ep);
    close_all(p, &[ep, b]);
}

pub fn pipe_close_writer<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD r IN|RDHUP",
        ctl(p, ep, EPOLL_CTL_ADD, r, IN | RDHUP, 1),
    );
    log.ok("close w", p.close(w));
    expect_events(
        p,
        log,
        "HUP alone: no IN without data, no RDHUP on pipes",
        ep,
        0,
        &[(1, HUP)],
    );
    let mut buf = [0u8; 8];
    log.count("read EOF", p.read(r, &mut buf), Ok(0));
    close_all(p, &[ep, r]);
}

pub fn pipe_close_writer_with_data<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD r IN", ctl(p, ep, EPOLL_CTL_ADD, r, IN, 1));
    log.count("write", p.write(w, b"abc"), Ok(3));
    log.ok("close w", p.close(w));
    expect_events(p, log, "IN|HUP", ep, 0, &[(1, IN | HUP)]);
    let mut buf = [0u8; 8];
    log.count("read data", p.read(r, &mut buf), Ok(3));
    expect_events(p, log, "HUP", ep, 0, &[(1, HUP)]);
    log.count("read EOF", p.read(r, &mut buf), Ok(0));
    close_all(p, &[ep, r]);
}

pub fn pipe_close_reader<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD w OUT", ctl(p, ep, EPOLL_CTL_ADD, w, OUT, 1));
    expect_events(p, log, "writable", ep, 0, &[(1, OUT)]);
    log.ok("close r", p.close(r));
    expect_events(p, log, "OUT|ERR", ep, 0, &[(1, OUT | ERR)]);
    log.err("write", p.write(w, b"x"), EPIPE);
    close_all(p, &[ep, w]);
}

pub fn pipe_close_reader_when_full<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD w OUT", ctl(p, ep, EPOLL_CTL_ADD, w, OUT, 1));
    let n = fill(p, w);
    log.check("filled", n > 0);
    expect_no_events(p, log, "full", ep);
    log.ok("close r", p.close(r));
    expect_events(p, log, "ERR alone: full, not writable", ep, 0, &[(1, ERR)]);
    log.err("write", p.write(w, b"x"), EPIPE);
    close_all(p, &[ep, w]);
}

pub fn shutdown_errors<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let t = log.ok("tcp socket", p.tcp_socket(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.err("shutdown pipe", p.shutdown(r, SHUT_RDWR), ENOTSOCK);
    log.err("shutdown eventfd", p.shutdown(e, SHUT_WR), ENOTSOCK);
    log.err("shutdown epoll", p.shutdown(ep, SHUT_RD), ENOTSOCK);
    log.err("shutdown how=3", p.shutdown(a, 3), EINVAL);
    log.err("shutdown how=-1", p.shutdown(a, -1), EINVAL);
    log.err(
        "shutdown unconnected tcp",
        p.shutdown(t, SHUT_RDWR),
        ENOTCONN,
    );
    log.ok("shutdown RDWR", p.shutdown(a, SHUT_RDWR));
    log.ok("shutdown RDWR twice", p.shutdown(a, SHUT_RDWR));
    close_all(p, &[r, w, e, a, b, t, ep]);
}

/// A unix socket's pending reset is also its `SO_ERROR`: reading that consumes it, and the
/// next `read` is plain end of file.
pub fn socketpair_reset_via_so_error<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.expect("SO_ERROR idle", val(&p.take_socket_error(a)), Ok(0));
    log.count("a writes", p.write(a, b"abc"), Ok(3));
    log.ok("close b unread", p.close(b));
    log.expect("SO_ERROR", val(&p.take_socket_error(a)), Ok(ECONNRESET));
    log.expect("consumed", val(&p.take_socket_error(a)), Ok(0));
    let mut buf = [0u8; 4];
    log.count("read: EOF, no reset left", p.read(a, &mut buf), Ok(0));
    close_all(p, &[a]);
}

/// `SO_LINGER` is accepted on a unix socket and changes nothing: close still hangs up cleanly.
pub fn socketpair_linger_is_inert<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.ok("SO_LINGER 0", p.set_linger(a, Some(0)));
    log.ok("close a", p.close(a));
    log.expect("b", poll_now(p, b, ALL), IN | OUT | HUP | RDHUP);
    log.expect("no error", val(&p.take_socket_error(b)), Ok(0));
    let mut buf = [0u8; 4];
    log.count("EOF", p.read(b, &mut buf), Ok(0));
    close_all(p, &[b]);
}

/// TCP-only calls on a unix socketpair and on a pipe.
pub fn socket_calls_on_non_tcp<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let addr: std::net::SocketAddrV4 = "127.0.0.1:1".parse().unwrap();
    log.err("listen on a socketpair (unbound)", p.listen(a, 1), EINVAL);
    log.err(
        "accept on a socketpair",
        p.accept4(a, SOCK_NONBLOCK),
        EINVAL,
    );
    log.err(
        "connect a socketpair to an IPv4 address",
        p.connect(a, addr),
        EINVAL,
    );
    log.err(
        "bind a socketpair to an IPv4 address",
        p.bind(a, addr),
        EINVAL,
    );
    log.err("local_addr of a socketpair", p.local_addr(a), EOPNOTSUPP);
    log.err("peer_addr of a socketpair", p.peer_addr(a), EOPNOTSUPP);
    log.err("listen on a pipe", p.listen(r, 1), ENOTSOCK);
    log.err("connect a pipe", p.connect(w, addr), ENOTSOCK);
    log.err("peer_addr of a pipe", p.peer_addr(r), ENOTSOCK);
    log.err("linger on a pipe", p.set_linger(w, None), ENOTSOCK);
    close_all(p, &[a, b, r, w]);
}

crate::cases! {
    socketpair_shutdown_wr,
    socketpair_shutdown_rd,
    socketpair_shutdown_rdwr,
    socketpair_close_peer,
    socketpair_close_with_unread,
    socketpair_close_unread_write_first,
    rdhup_only_when_asked,
    et_hangup_edge,
    pipe_close_writer,
    pipe_close_writer_with_data,
    pipe_close_reader,
    pipe_close_reader_when_full,
    shutdown_errors,
    socketpair_reset_via_so_error,
    socketpair_linger_is_inert,
    socket_calls_on_non_tcp,
}

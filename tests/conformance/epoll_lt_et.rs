//! Level- vs edge-triggered reporting on every object type, and Linux's "every write is a new
//! edge" rule.

use netpoll::sys::*;
use netpoll::{Fd, Poller};

use crate::harness::*;

/// LT on a stream (`w` writes, `r` reads): reported on every wait while bytes remain.
fn lt_stream<P: Poller>(p: &P, log: &mut Log, w: Fd, r: Fd, timeout: i32) {
    let ep = epoll(p);
    log.ok("ADD r IN", ctl(p, ep, EPOLL_CTL_ADD, r, IN, 1));
    expect_no_events(p, log, "nothing written", ep);
    log.count("write 5", p.write(w, b"hello"), Ok(5));
    expect_events(p, log, "readable", ep, timeout, &[(1, IN)]);
    expect_events(p, log, "LT: reported again", ep, 0, &[(1, IN)]);
    let mut buf = [0u8; 2];
    log.count("read 2", p.read(r, &mut buf), Ok(2));
    log.expect("bytes", &buf, b"he");
    expect_events(p, log, "LT: 3 bytes left", ep, 0, &[(1, IN)]);
    log.expect("drain", drain(p, r), 3);
    expect_no_events(p, log, "drained", ep);
    log.count("read after drain", p.read(r, &mut buf), Err(errno::EAGAIN));
    p.close(ep).unwrap();
}

/// ET on a stream: one event per wakeup; on Linux every write is a wakeup even if earlier bytes
/// are still unread.
fn et_stream<P: Poller>(p: &P, log: &mut Log, w: Fd, r: Fd, timeout: i32) {
    let ep = epoll(p);
    log.ok("ADD r IN|ET", ctl(p, ep, EPOLL_CTL_ADD, r, IN | ET, 1));
    expect_no_events(p, log, "nothing written", ep);
    log.count("write 5", p.write(w, b"hello"), Ok(5));
    expect_events(p, log, "edge", ep, timeout, &[(1, IN)]);
    expect_no_events(p, log, "ET: not again", ep);
    let mut buf = [0u8; 2];
    log.count("read 2", p.read(r, &mut buf), Ok(2));
    expect_no_events(p, log, "ET: a partial read is no edge", ep);
    log.count("write 1 more", p.write(w, b"!"), Ok(1));
    expect_events(
        p,
        log,
        "a write to an undrained file is a new edge",
        ep,
        timeout,
        &[(1, IN)],
    );
    expect_no_events(p, log, "once", ep);
    log.expect("drain", drain(p, r), 4);
    expect_no_events(p, log, "drained", ep);
    log.count("write 3", p.write(w, b"abc"), Ok(3));
    expect_events(p, log, "edge after drain", ep, timeout, &[(1, IN)]);
    p.close(ep).unwrap();
}

pub fn lt_socketpair<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    lt_stream(p, log, a, b, 0);
    lt_stream(p, log, b, a, 0);
    close_all(p, &[a, b]);
}

pub fn et_socketpair<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    et_stream(p, log, a, b, 0);
    close_all(p, &[a, b]);
}

pub fn lt_pipe<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    lt_stream(p, log, w, r, 0);
    close_all(p, &[r, w]);
}

pub fn et_pipe<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    et_stream(p, log, w, r, 0);
    close_all(p, &[r, w]);
}

pub fn lt_tcp<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    lt_stream(p, log, c, s, 5000);
    lt_stream(p, log, s, c, 5000);
    close_all(p, &[l, c, s]);
}

pub fn et_tcp<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    et_stream(p, log, c, s, 5000);
    close_all(p, &[l, c, s]);
}

pub fn lt_eventfd<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD IN|OUT", ctl(p, ep, EPOLL_CTL_ADD, e, IN | OUT, 1));
    expect_events(p, log, "writable only", ep, 0, &[(1, OUT)]);
    expect_events(p, log, "LT: again", ep, 0, &[(1, OUT)]);
    log.count("write 1", p.write(e, &1u64.to_ne_bytes()), Ok(8));
    expect_events(p, log, "readable", ep, 0, &[(1, IN | OUT)]);
    expect_events(p, log, "LT: again", ep, 0, &[(1, IN | OUT)]);
    let mut buf = [0u8; 8];
    log.count("read", p.read(e, &mut buf), Ok(8));
    log.expect("counter", u64::from_ne_bytes(buf), 1);
    expect_events(p, log, "counter 0", ep, 0, &[(1, OUT)]);
    close_all(p, &[ep, e]);
}

pub fn et_eventfd<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD IN|ET", ctl(p, ep, EPOLL_CTL_ADD, e, IN | ET, 1));
    expect_no_events(p, log, "counter 0", ep);
    log.count("write 1", p.write(e, &1u64.to_ne_bytes()), Ok(8));
    expect_events(p, log, "edge", ep, 0, &[(1, IN)]);
    expect_no_events(p, log, "ET: once", ep);
    log.count(
        "write 2 (undrained)",
        p.write(e, &2u64.to_ne_bytes()),
        Ok(8),
    );
    expect_events(p, log, "every write is an edge", ep, 0, &[(1, IN)]);
    let mut buf = [0u8; 8];
    log.count("read", p.read(e, &mut buf), Ok(8));
    log.expect("counter", u64::from_ne_bytes(buf), 3);
    expect_no_events(p, log, "a read is no IN edge", ep);
    close_all(p, &[ep, e]);
}

/// ET `OUT` on a unix socket: the peer consuming bytes frees room and wakes the writer, even
/// though the buffer was never full.
pub fn et_out_socketpair_peer_read<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD a OUT|ET", ctl(p, ep, EPOLL_CTL_ADD, a, OUT | ET, 2));
    expect_events(p, log, "writable at ADD", ep, 0, &[(2, OUT)]);
    expect_no_events(p, log, "ET: once", ep);
    log.count("write 10", p.write(a, &[1; 10]), Ok(10));
    expect_no_events(p, log, "own write: no edge", ep);
    log.expect("peer drains", drain(p, b), 10);
    expect_events(p, log, "peer read frees room: edge", ep, 0, &[(2, OUT)]);
    close_all(p, &[ep, a, b]);
}

/// ET `OUT` on a pipe: a reader only wakes the writer when the pipe was full.
pub fn et_out_pipe_reader_read<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD w OUT|ET", ctl(p, ep, EPOLL_CTL_ADD, w, OUT | ET, 2));
    expect_events(p, log, "writable at ADD", ep, 0, &[(2, OUT)]);
    log.count("write 10", p.write(w, &[1; 10]), Ok(10));
    expect_no_events(p, log, "own write: no edge", ep);
    log.expect("reader drains", drain(p, r), 10);
    expect_no_events(p, log, "pipe was not full: no edge", ep);
    let n = fill(p, w);
    log.check("filled", n > 0);
    expect_no_events(p, log, "full", ep);
    log.check("reader drains all", drain(p, r) == n);
    expect_events(p, log, "pipe was full: edge", ep, 0, &[(2, OUT)]);
    close_all(p, &[ep, r, w]);
}

/// A socketpair end registered for both directions reports the union, exactly.
pub fn lt_in_out_socketpair<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD b IN|OUT|RDHUP",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | OUT | RDHUP, 9),
    );
    expect_events(p, log, "writable", ep, 0, &[(9, OUT)]);
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "readable and writable", ep, 0, &[(9, IN | OUT)]);
    close_all(p, &[ep, a, b]);
}

/// A pipe's read end is never writable and its write end never readable.
pub fn pipe_directions<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD r IN|OUT", ctl(p, ep, EPOLL_CTL_ADD, r, IN | OUT, 1));
    log.ok("ADD w IN|OUT", ctl(p, ep, EPOLL_CTL_ADD, w, IN | OUT, 2));
    expect_events(p, log, "write end writable", ep, 0, &[(2, OUT)]);
    log.count("write", p.write(w, b"x"), Ok(1));
    let got = wait(p, ep, 8, 0).map(|mut v| {
        v.sort();
        v
    });
    log.expect("both", got, Ok(vec![(1, IN), (2, OUT)]));
    let mut buf = [0u8; 4];
    log.count("read the write end", p.read(w, &mut buf), Err(errno::EBADF));
    log.count("write the read end", p.write(r, b"x"), Err(errno::EBADF));
    close_all(p, &[ep, r, w]);
}

/// A unix socket's writer is woken when the reader consumes a whole write (an skb), not part of
/// one.
pub fn et_out_socketpair_whole_skb<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD a OUT|ET", ctl(p, ep, EPOLL_CTL_ADD, a, OUT | ET, 2));
    expect_events(p, log, "writable at ADD", ep, 0, &[(2, OUT)]);
    log.count("write 10", p.write(a, &[1; 10]), Ok(10));
    log.count("write 10 more", p.write(a, &[2; 10]), Ok(10));
    let mut buf = [0u8; 20];
    log.count("peer reads 5", p.read(b, &mut buf[..5]), Ok(5));
    expect_no_events(p, log, "part of a write: no edge", ep);
    log.count(
        "peer reads 10 (the rest of the first write and half the second)",
        p.read(b, &mut buf[..10]),
        Ok(10),
    );
    expect_events(p, log, "first write consumed: edge", ep, 0, &[(2, OUT)]);
    log.count("peer reads the rest", p.read(b, &mut buf), Ok(5));
    expect_events(p, log, "second write consumed: edge", ep, 0, &[(2, OUT)]);
    close_all(p, &[ep, a, b]);
}

/// TCP wakes a writer for room only after it ran out of room: acknowledgements of a small
/// write are no `OUT` edge.
pub fn et_out_tcp_no_edge_without_pressure<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    let ep = epoll(p);
    log.ok(
        "ADD client IN|OUT|ET",
        ctl(p, ep, EPOLL_CTL_ADD, c, IN | OUT | ET, 1),
    );
    expect_events(p, log, "writable at ADD", ep, 0, &[(1, OUT)]);
    log.count("write 10", p.write(c, &[1; 10]), Ok(10));
    log.expect("server got it", wait_for(p, s, IN, 10_000), IN | OUT);
    expect_events(p, log, "no edge for the ACK (50 ms)", ep, 50, &[]);
    log.expect("server reads", drain(p, s), 10);
    expect_events(p, log, "no edge for the read either (50 ms)", ep, 50, &[]);
    log.count("server writes", p.write(s, b"x"), Ok(1));
    expect_events(p, log, "data: edge", ep, 10_000, &[(1, IN | OUT)]);
    close_all(p, &[ep, l, c, s]);
}

crate::cases! {
    lt_socketpair,
    et_socketpair,
    lt_pipe,
    et_pipe,
    lt_tcp,
    et_tcp,
    lt_eventfd,
    et_eventfd,
    et_out_socketpair_peer_read,
    et_out_pipe_reader_read,
    lt_in_out_socketpair,
    pipe_directions,
    et_out_socketpair_whole_skb,
    et_out_tcp_no_edge_without_pressure,
}

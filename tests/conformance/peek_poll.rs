//! `recv` with `MSG_PEEK` / `MSG_DONTWAIT`, and `poll`: what stays queued, what readiness says,
//! the errnos, and `poll`'s bits (`POLLIN`/`POLLOUT`/`POLLHUP`/`POLLERR`/`POLLNVAL`) and
//! timeouts.

use std::time::Duration;

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{Events, Fd, PollFd, Poller};

use crate::harness::*;

/// `recv(fd, len bytes, flags)` as the bytes it returned, or the errno.
fn recv<P: Poller>(p: &P, fd: Fd, len: usize, flags: i32) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    val(&p.recv(fd, &mut buf, flags)).map(|n| buf[..n].to_vec())
}

/// `poll` on one entry: (the count, `revents`) or the errno.
fn poll1<P: Poller>(
    p: &P,
    fd: Fd,
    events: Events,
    timeout_ms: i32,
) -> Result<(usize, Events), i32> {
    let mut fds = [PollFd::new(fd, events)];
    val(&p.poll(&mut fds, timeout_ms)).map(|n| (n, fds[0].revents))
}

/// A descriptor number open on neither arm: far above anything a test process opens.
const NEVER_OPEN: Fd = 900_000;

pub fn peek_unix_keeps_data<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.count("write hello", p.write(a, b"hello"), Ok(5));
    log.count("write world", p.write(a, b"world"), Ok(5));
    log.expect("peek 3", recv(p, b, 3, MSG_PEEK), Ok(b"hel".to_vec()));
    log.expect(
        "peek 16 spans both writes",
        recv(p, b, 16, MSG_PEEK),
        Ok(b"helloworld".to_vec()),
    );
    log.expect("still readable", poll_now(p, b, IN), IN);
    log.expect("read 4", recv(p, b, 4, 0), Ok(b"hell".to_vec()));
    log.expect(
        "peek the rest",
        recv(p, b, 16, MSG_PEEK),
        Ok(b"oworld".to_vec()),
    );
    log.expect("read the rest", recv(p, b, 16, 0), Ok(b"oworld".to_vec()));
    log.expect("peek empty", recv(p, b, 16, MSG_PEEK), Err(EAGAIN));
    log.expect("not readable", poll_now(p, b, IN), Events::NONE);
    log.ok("shutdown a WR", p.shutdown(a, SHUT_WR));
    log.expect("peek at EOF", recv(p, b, 16, MSG_PEEK), Ok(vec![]));
    log.expect("peek at EOF again", recv(p, b, 16, MSG_PEEK), Ok(vec![]));
    log.expect("read at EOF", recv(p, b, 16, 0), Ok(vec![]));
    close_all(p, &[a, b]);
}

pub fn peek_tcp_keeps_data<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.count("write ping", p.write(c, b"ping"), Ok(4));
    let ev = wait_for(p, s, Events::IN, 10_000);
    log.check("server readable", ev.contains(Events::IN));
    log.expect("peek 2", recv(p, s, 2, MSG_PEEK), Ok(b"pi".to_vec()));
    log.expect("peek 16", recv(p, s, 16, MSG_PEEK), Ok(b"ping".to_vec()));
    log.expect("still readable", poll_now(p, s, IN), IN);
    log.expect(
        "peek with DONTWAIT",
        recv(p, s, 16, MSG_PEEK | MSG_DONTWAIT),
        Ok(b"ping".to_vec()),
    );
    log.expect("read", recv(p, s, 16, 0), Ok(b"ping".to_vec()));
    log.expect("peek empty", recv(p, s, 16, MSG_PEEK), Err(EAGAIN));
    log.ok("close client", p.close(c));
    let ev = wait_for(p, s, Events::RDHUP, 10_000);
    log.check("server sees the FIN", ev.contains(Events::RDHUP));
    log.expect("peek at EOF", recv(p, s, 16, MSG_PEEK), Ok(vec![]));
    log.expect("read at EOF", recv(p, s, 16, 0), Ok(vec![]));
    close_all(p, &[l, s]);
}

pub fn recv_dontwait_on_blocking_socket<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair, blocking", p.socketpair(0));
    log.expect("DONTWAIT, empty", recv(p, b, 8, MSG_DONTWAIT), Err(EAGAIN));
    log.expect(
        "PEEK | DONTWAIT, empty",
        recv(p, b, 8, MSG_PEEK | MSG_DONTWAIT),
        Err(EAGAIN),
    );
    log.count("write", p.write(a, b"xy"), Ok(2));
    log.expect(
        "PEEK on a blocking socket with data",
        recv(p, b, 8, MSG_PEEK),
        Ok(b"xy".to_vec()),
    );
    log.expect(
        "DONTWAIT with data",
        recv(p, b, 8, MSG_DONTWAIT),
        Ok(b"xy".to_vec()),
    );
    log.expect(
        "DONTWAIT, empty again",
        recv(p, b, 8, MSG_DONTWAIT),
        Err(EAGAIN),
    );
    close_all(p, &[a, b]);
}

pub fn recv_errors<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.expect("recv on a pipe", recv(p, r, 8, 0), Err(ENOTSOCK));
    log.expect("peek on a pipe", recv(p, r, 8, MSG_PEEK), Err(ENOTSOCK));
    let e = log.ok("eventfd", p.eventfd(1, EFD_NONBLOCK));
    log.expect("recv on an eventfd", recv(p, e, 8, MSG_PEEK), Err(ENOTSOCK));
    let ep = epoll(p);
    log.expect("recv on an epoll fd", recv(p, ep, 8, 0), Err(ENOTSOCK));
    log.expect("recv on a bad fd", recv(p, NEVER_OPEN, 8, 0), Err(EBADF));
    log.expect("recv on fd -1", recv(p, -1, 8, MSG_PEEK), Err(EBADF));
    let t = log.ok("tcp_socket", p.tcp_socket(SOCK_NONBLOCK));
    log.expect(
        "peek, never connected",
        recv(p, t, 8, MSG_PEEK),
        Err(ENOTCONN),
    );
    let l = tcp_listener(p);
    log.expect("peek on a listener", recv(p, l, 8, MSG_PEEK), Err(ENOTCONN));
    close_all(p, &[r, w, e, ep, t, l]);
}

pub fn poll_bits<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.expect("writable", poll1(p, a, IN | OUT, 0), Ok((1, OUT)));
    log.expect("nothing to read", poll1(p, b, IN, 0), Ok((0, Events::NONE)));
    log.count("write", p.write(a, b"z"), Ok(1));
    log.expect("readable", poll1(p, b, IN, 0), Ok((1, IN)));
    log.expect("masked by events", poll1(p, b, OUT, 0), Ok((1, OUT)));
    let mut fds = [
        PollFd::new(b, IN | OUT),
        PollFd::new(-1, IN),
        PollFd::new(NEVER_OPEN, IN),
        PollFd::new(a, IN),
    ];
    let n = val(&p.poll(&mut fds, 0));
    log.expect("b and the NVAL entry count, -1 does not", n, Ok(2));
    log.expect(
        "revents",
        fds.map(|f| f.revents),
        [IN | OUT, Events::NONE, Events::NVAL, Events::NONE],
    );
    log.ok("close a", p.close(a));
    log.expect(
        "peer gone: HUP without asking, data still there",
        poll1(p, b, IN, 0),
        Ok((1, IN | HUP)),
    );
    log.expect(
        "HUP even for no interest",
        poll1(p, b, Events::NONE, 0),
        Ok((1, HUP)),
    );
    close_all(p, &[b]);

    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.expect("empty pipe, write end", poll1(p, w, OUT, 0), Ok((1, OUT)));
    log.ok("close write end", p.close(w));
    log.expect(
        "read end after the writer left",
        poll1(p, r, IN, 0),
        Ok((1, HUP)),
    );
    let [r2, w2] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.ok("close read end", p.close(r2));
    log.expect(
        "write end after the reader left: ERR",
        poll1(p, w2, OUT, 0),
        Ok((1, OUT | ERR)),
    );
    close_all(p, &[r, w2]);
}

pub fn poll_timeouts<P: Poller>(p: &P, log: &mut Log) {
    let t0 = p.now();
    log.expect("no entries, 0", val(&p.poll(&mut [], 0)), Ok(0));
    log.check(
        "no time passes (< 100 ms)",
        p.now() - t0 < Duration::from_millis(100),
    );
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    for ms in [1, 30] {
        let t0 = p.now();
        log.expect("nothing ready", poll1(p, b, IN, ms), Ok((0, Events::NONE)));
        let dt = p.now() - t0;
        log.check(
            "waited at least the timeout",
            dt >= Duration::from_millis(ms as u64),
        );
        log.check(
            "and not absurdly longer (< +2 s)",
            dt < Duration::from_millis(ms as u64 + 2000),
        );
    }
    let t0 = p.now();
    log.expect(
        "only a negative fd, 20 ms",
        val(&p.poll(&mut [PollFd::new(-1, IN)], 20)),
        Ok(0),
    );
    log.check("waited", p.now() - t0 >= Duration::from_millis(20));
    log.expect("ready, timeout -1", poll1(p, a, OUT, -1), Ok((1, OUT)));
    close_all(p, &[a, b]);
}

pub fn poll_wakes_on_tcp_data<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    log.count("write", p.write(c, b"data"), Ok(4));
    log.expect(
        "poll wakes for the data",
        poll1(p, s, IN, 10_000),
        Ok((1, IN)),
    );
    log.expect(
        "peek leaves it",
        recv(p, s, 8, MSG_PEEK),
        Ok(b"data".to_vec()),
    );
    log.expect(
        "poll again: still readable",
        poll1(p, s, IN, 0),
        Ok((1, IN)),
    );
    log.expect("read", recv(p, s, 8, 0), Ok(b"data".to_vec()));
    log.ok("close client", p.close(c));
    log.expect(
        "poll wakes for the FIN",
        poll1(p, s, IN | Events::RDHUP, 10_000),
        Ok((1, IN | Events::RDHUP)),
    );
    close_all(p, &[l, s]);
}

crate::cases! {
    peek_unix_keeps_data,
    peek_tcp_keeps_data,
    recv_dontwait_on_blocking_socket,
    recv_errors,
    poll_bits,
    poll_timeouts,
    poll_wakes_on_tcp_data,
}

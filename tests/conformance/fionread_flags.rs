//! `ioctl(FIONREAD)` on each kind of file, and the file-status flags (`fcntl(F_GETFL/F_SETFL)`):
//! access modes, `O_NONBLOCK` round-tripping, sharing by `dup`, ignored bits.

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{Events, Poller};

use crate::harness::*;

/// A descriptor number open on neither arm.
const NEVER_OPEN: i32 = 900_000;

pub fn fionread_unix_and_pipe<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.expect("empty", val(&p.fionread(b)), Ok(0));
    log.count("write 5", p.write(a, b"hello"), Ok(5));
    log.count("write 3", p.write(a, b"abc"), Ok(3));
    log.expect("both writes", val(&p.fionread(b)), Ok(8));
    log.expect("the writer's side is empty", val(&p.fionread(a)), Ok(0));
    let mut buf = [0u8; 2];
    log.count("read 2", p.read(b, &mut buf), Ok(2));
    log.expect("the rest", val(&p.fionread(b)), Ok(6));
    log.ok("shutdown a WR", p.shutdown(a, SHUT_WR));
    log.expect("EOF adds nothing", val(&p.fionread(b)), Ok(6));
    close_all(p, &[a, b]);

    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.expect("empty pipe", val(&p.fionread(r)), Ok(0));
    log.count("write 3", p.write(w, b"xyz"), Ok(3));
    log.expect("read end", val(&p.fionread(r)), Ok(3));
    log.expect("write end sees the same pipe", val(&p.fionread(w)), Ok(3));
    close_all(p, &[r, w]);
}

pub fn fionread_tcp<P: Poller>(p: &P, log: &mut Log) {
    let t = log.ok("tcp_socket", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("never connected", val(&p.fionread(t)), Ok(0));
    let (l, c, s) = tcp_pair(p);
    log.expect("a listener", val(&p.fionread(l)), Err(EINVAL));
    log.expect("connected, empty", val(&p.fionread(s)), Ok(0));
    log.count("write 4", p.write(c, b"data"), Ok(4));
    let ev = wait_for(p, s, Events::IN, 10_000);
    log.check("server readable", ev.contains(Events::IN));
    log.expect("4 queued", val(&p.fionread(s)), Ok(4));
    let mut buf = [0u8; 8];
    log.count("read", p.read(s, &mut buf), Ok(4));
    log.expect("drained", val(&p.fionread(s)), Ok(0));
    log.ok("close client", p.close(c));
    let ev = wait_for(p, s, Events::RDHUP, 10_000);
    log.check("server sees the FIN", ev.contains(Events::RDHUP));
    log.expect("the FIN is not a byte", val(&p.fionread(s)), Ok(0));
    close_all(p, &[t, l, s]);
}

pub fn fionread_errors<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(3, EFD_NONBLOCK));
    log.expect("eventfd", val(&p.fionread(e)), Err(ENOTTY));
    let ep = epoll(p);
    log.expect(
        "epoll (Linux 6.9+: its own ioctl)",
        val(&p.fionread(ep)),
        Err(EINVAL),
    );
    log.expect("bad fd", val(&p.fionread(NEVER_OPEN)), Err(EBADF));
    log.expect("fd -1", val(&p.fionread(-1)), Err(EBADF));
    close_all(p, &[e, ep]);
}

pub fn status_flags_access_modes<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair(NONBLOCK)", p.socketpair(SOCK_NONBLOCK));
    log.expect(
        "socketpair end",
        val(&p.get_status_flags(a)),
        Ok(O_RDWR | O_NONBLOCK),
    );
    let [r, w] = log.ok("pipe2(0)", p.pipe2(0));
    log.expect("pipe read end", val(&p.get_status_flags(r)), Ok(O_RDONLY));
    log.expect("pipe write end", val(&p.get_status_flags(w)), Ok(O_WRONLY));
    let e = log.ok("eventfd(NONBLOCK)", p.eventfd(0, EFD_NONBLOCK));
    log.expect(
        "eventfd",
        val(&p.get_status_flags(e)),
        Ok(O_RDWR | O_NONBLOCK),
    );
    let ep = log.ok("epoll_create1(CLOEXEC)", p.epoll_create1(EPOLL_CLOEXEC));
    log.expect(
        "epoll (CLOEXEC is not a status flag)",
        val(&p.get_status_flags(ep)),
        Ok(O_RDWR),
    );
    let t = log.ok("tcp_socket(0)", p.tcp_socket(0));
    log.expect("tcp socket", val(&p.get_status_flags(t)), Ok(O_RDWR));
    log.expect("bad fd", val(&p.get_status_flags(NEVER_OPEN)), Err(EBADF));
    log.expect(
        "bad fd, set",
        val(&p.set_status_flags(NEVER_OPEN, 0)),
        Err(EBADF),
    );
    close_all(p, &[a, b, r, w, e, ep, t]);
}

pub fn status_flags_nonblock_round_trip<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair(0)", p.socketpair(0));
    let fl = log.ok("F_GETFL", p.get_status_flags(b));
    log.expect("blocking", fl, O_RDWR);
    log.ok(
        "F_SETFL(fl | O_NONBLOCK)",
        p.set_status_flags(b, fl | O_NONBLOCK),
    );
    log.expect(
        "now non-blocking",
        val(&p.get_status_flags(b)),
        Ok(O_RDWR | O_NONBLOCK),
    );
    log.expect(
        "set_nonblocking agrees",
        val(&p.read(b, &mut [0u8; 4])),
        Err(EAGAIN),
    );
    let d = log.ok("dup", p.dup(b));
    log.expect(
        "the dup shares it",
        val(&p.get_status_flags(d)),
        Ok(O_RDWR | O_NONBLOCK),
    );
    log.ok("F_SETFL(dup, O_RDWR)", p.set_status_flags(d, O_RDWR));
    log.expect(
        "cleared for the original too",
        val(&p.get_status_flags(b)),
        Ok(O_RDWR),
    );
    log.ok(
        "F_SETFL ignores the access mode and O_CLOEXEC",
        p.set_status_flags(b, O_RDONLY | O_CLOEXEC | O_NONBLOCK),
    );
    log.expect(
        "still O_RDWR",
        val(&p.get_status_flags(b)),
        Ok(O_RDWR | O_NONBLOCK),
    );
    log.ok("set_nonblocking(false)", p.set_nonblocking(b, false));
    log.expect("F_GETFL sees it", val(&p.get_status_flags(b)), Ok(O_RDWR));
    let [r, w] = log.ok("pipe2(0)", p.pipe2(0));
    log.ok("F_SETFL pipe read end", p.set_status_flags(r, O_NONBLOCK));
    log.expect(
        "read end",
        val(&p.get_status_flags(r)),
        Ok(O_RDONLY | O_NONBLOCK),
    );
    log.expect(
        "write end untouched",
        val(&p.get_status_flags(w)),
        Ok(O_WRONLY),
    );
    log.expect(
        "empty pipe, non-blocking",
        val(&p.read(r, &mut [0u8; 4])),
        Err(EAGAIN),
    );
    close_all(p, &[a, b, d, r, w]);
}

crate::cases! {
    fionread_unix_and_pipe,
    fionread_tcp,
    fionread_errors,
    status_flags_access_modes,
    status_flags_nonblock_round_trip,
}

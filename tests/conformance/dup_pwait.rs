//! `dup2`, `dup3`, `epoll_pwait` and `epoll_pwait2`: results, errnos in Linux's order of checks,
//! registrations across a `dup2` that replaces a descriptor, masks and nanosecond timeouts.

use std::time::Duration;

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{EpollEvent, Poller, Timespec};

use crate::harness::*;

fn pwait<P: Poller>(p: &P, ep: i32, timeout_ms: i32, mask: Option<u64>) -> Waited {
    let mut buf = [EpollEvent::EMPTY; 8];
    let n = val(&p.epoll_pwait(ep, &mut buf, timeout_ms, mask))?;
    Ok(buf[..n].iter().map(|e| (e.data, e.events)).collect())
}

fn pwait2<P: Poller>(p: &P, ep: i32, timeout: Option<Timespec>) -> Waited {
    let mut buf = [EpollEvent::EMPTY; 8];
    let n = val(&p.epoll_pwait2(ep, &mut buf, timeout, None))?;
    Ok(buf[..n].iter().map(|e| (e.data, e.events)).collect())
}

pub fn dup2_replaces_a_descriptor<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair 1", p.socketpair(SOCK_NONBLOCK));
    let [c, d] = log.ok("socketpair 2", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD d", ctl(p, ep, EPOLL_CTL_ADD, d, IN, 2));
    let r = p.dup2(b, d);
    log.check("dup2(b, d) returns d", matches!(r, Ok(n) if n == d));
    log.err("d's old socket is gone: its peer", p.write(c, b"x"), EPIPE);
    log.count("write a", p.write(a, b"hi"), Ok(2));
    let mut buf = [0u8; 8];
    log.count("read through d (b's socket)", p.read(d, &mut buf), Ok(2));
    expect_no_events(p, log, "the old registration went with its file", ep);
    log.ok(
        "ADD d again (now b's file)",
        ctl(p, ep, EPOLL_CTL_ADD, d, IN, 3),
    );
    log.count("write a", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "new registration", ep, 0, &[(3, IN)]);
    close_all(p, &[ep, a, b, c, d]);
}

pub fn dup2_keeps_a_registration_under_the_replaced_number<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let c = log.ok("c = dup(b)", p.dup(b));
    let ep = epoll(p);
    log.ok("ADD c", ctl(p, ep, EPOLL_CTL_ADD, c, IN, 7));
    log.check("dup2(a, c)", matches!(p.dup2(a, c), Ok(n) if n == c));
    log.count("write to c (now a)", p.write(c, b"x"), Ok(1));
    expect_events(
        p,
        log,
        "the registration lives on with b's file, under c's data",
        ep,
        0,
        &[(7, IN)],
    );
    log.err(
        "DEL c finds (a's file, c): nothing",
        ctl(p, ep, EPOLL_CTL_DEL, c, NONE, 0),
        ENOENT,
    );
    log.ok("close b (the file's last descriptor)", p.close(b));
    expect_no_events(p, log, "gone with the file", ep);
    close_all(p, &[ep, a, c]);
}

pub fn dup2_same_and_bad<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.check(
        "dup2(b, b) returns b",
        matches!(p.dup2(b, b), Ok(n) if n == b),
    );
    log.err("dup2(b, -1)", p.dup2(b, -1), EBADF);
    log.err("dup2(-1, -1)", p.dup2(-1, -1), EBADF);
    log.err("dup2(-1, b)", p.dup2(-1, b), EBADF);
    log.err("dup2(b, 1 << 30)", p.dup2(b, 1 << 30), EBADF);
    log.check("b still open", p.fionread(b).is_ok());
    close_all(p, &[a, b]);
}

pub fn dup3_errors_in_order<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.err("dup3(b, b, 0)", p.dup3(b, b, 0), EINVAL);
    log.err("dup3(b, a, O_NONBLOCK)", p.dup3(b, a, O_NONBLOCK), EINVAL);
    log.err(
        "dup3(-1, -1, bad flags): flags first",
        p.dup3(-1, -1, 0x40),
        EINVAL,
    );
    log.err("dup3(-1, -1, 0): equal next", p.dup3(-1, -1, 0), EINVAL);
    log.err("dup3(b, -1, 0)", p.dup3(b, -1, 0), EBADF);
    log.err("dup3(-1, a, 0)", p.dup3(-1, a, 0), EBADF);
    log.err("dup3(b, 1 << 30, 0)", p.dup3(b, 1 << 30, 0), EBADF);
    log.check(
        "dup3(b, a, O_CLOEXEC) returns a",
        matches!(p.dup3(b, a, O_CLOEXEC), Ok(n) if n == a),
    );
    log.err(
        "a is b's socket now, whose peer went",
        p.write(a, b"x"),
        EPIPE,
    );
    close_all(p, &[a, b]);
}

pub fn dup3_onto_a_free_number<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let spare = log.ok("spare = dup(b)", p.dup(b));
    log.ok("close spare (its number is free now)", p.close(spare));
    log.check(
        "dup3(b, spare, O_CLOEXEC)",
        matches!(p.dup3(b, spare, O_CLOEXEC), Ok(n) if n == spare),
    );
    let next = log.ok("dup(a)", p.dup(a));
    log.check("the number is taken again", next != spare);
    log.count("write a", p.write(a, b"x"), Ok(1));
    let mut buf = [0u8; 4];
    log.count("read spare", p.read(spare, &mut buf), Ok(1));
    close_all(p, &[a, b, spare, next]);
}

pub fn epoll_pwait_null_and_empty_masks<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.expect("null mask, nothing", pwait(p, ep, 0, None), Ok(vec![]));
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect("null mask", pwait(p, ep, 0, None), Ok(vec![(1, IN)]));
    log.expect("empty mask", pwait(p, ep, -1, Some(0)), Ok(vec![(1, IN)]));
    log.expect(
        "a mask blocking SIGUSR1",
        pwait(p, ep, 10, Some(1 << (10 - 1))),
        Ok(vec![(1, IN)]),
    );
    let t0 = p.now();
    drain(p, b);
    log.expect(
        "timeout with an empty mask",
        pwait(p, ep, 20, Some(0)),
        Ok(vec![]),
    );
    log.check("20 ms passed", p.now() - t0 >= Duration::from_millis(20));
    log.expect("EBADF", pwait(p, -1, 0, Some(0)), Err(EBADF));
    let mut none: [EpollEvent; 0] = [];
    log.err("no room", p.epoll_pwait(ep, &mut none, 0, None), EINVAL);
    close_all(p, &[ep, a, b]);
}

pub fn epoll_pwait2_nanosecond_timeouts<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    let zero = Some(Timespec::default());
    log.expect("zero timeout", pwait2(p, ep, zero), Ok(vec![]));
    let t0 = p.now();
    let t = Timespec {
        sec: 0,
        nsec: 1_500_000,
    };
    log.expect("1.5 ms", pwait2(p, ep, Some(t)), Ok(vec![]));
    log.check(
        "at least 1.5 ms passed",
        p.now() - t0 >= Duration::from_micros(1_500),
    );
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect("no timeout, ready", pwait2(p, ep, None), Ok(vec![(1, IN)]));
    log.expect(
        "nsec of a whole second",
        pwait2(
            p,
            ep,
            Some(Timespec {
                sec: 0,
                nsec: 1_000_000_000,
            }),
        ),
        Err(EINVAL),
    );
    log.expect(
        "negative nsec",
        pwait2(p, ep, Some(Timespec { sec: 0, nsec: -1 })),
        Err(EINVAL),
    );
    log.expect(
        "negative sec",
        pwait2(p, ep, Some(Timespec { sec: -1, nsec: 0 })),
        Err(EINVAL),
    );
    log.expect(
        "bad timeout and bad epfd: the timeout is checked first",
        pwait2(p, -1, Some(Timespec { sec: -1, nsec: 0 })),
        Err(EINVAL),
    );
    log.expect("bad epfd", pwait2(p, -1, zero), Err(EBADF));
    log.expect("not an epoll fd", pwait2(p, a, zero), Err(EINVAL));
    close_all(p, &[ep, a, b]);
}

crate::cases! {
    dup2_replaces_a_descriptor,
    dup2_keeps_a_registration_under_the_replaced_number,
    dup2_same_and_bad,
    dup3_errors_in_order,
    epoll_pwait_null_and_empty_masks,
    epoll_pwait2_nanosecond_timeouts,
}

crate::exclusive_cases! {
    dup3_onto_a_free_number,
}

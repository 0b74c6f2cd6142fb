//! Nested epoll: an epoll instance is readable while it has ready events.

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{Fd, Poller};

use crate::harness::*;

/// `(a, b, inner, outer)`: `b` in `inner` with `interest` (data 1), `inner` in `outer` with
/// `outer_interest` (data 100).
fn nest<P: Poller>(
    p: &P,
    log: &mut Log,
    interest: netpoll::Events,
    outer_interest: netpoll::Events,
) -> (Fd, Fd, Fd, Fd) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let inner = epoll(p);
    let outer = epoll(p);
    log.ok(
        "ADD b to inner",
        ctl(p, inner, EPOLL_CTL_ADD, b, interest, 1),
    );
    log.ok(
        "ADD inner to outer",
        ctl(p, outer, EPOLL_CTL_ADD, inner, outer_interest, 100),
    );
    (a, b, inner, outer)
}

pub fn nested_inner_readable<P: Poller>(p: &P, log: &mut Log) {
    let (a, b, inner, outer) = nest(p, log, IN, IN | OUT);
    expect_no_events(p, log, "nothing ready: outer idle, never OUT", outer);
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(
        p,
        log,
        "outer: inner readable (IN only)",
        outer,
        0,
        &[(100, IN)],
    );
    expect_events(p, log, "LT", outer, 0, &[(100, IN)]);
    expect_events(p, log, "inner", inner, 0, &[(1, IN)]);
    expect_events(
        p,
        log,
        "outer: inner still has a ready LT item",
        outer,
        0,
        &[(100, IN)],
    );
    log.expect("drain", drain(p, b), 1);
    expect_no_events(p, log, "outer: inner's item no longer ready", outer);
    expect_no_events(p, log, "inner", inner);
    close_all(p, &[outer, inner, a, b]);
}

pub fn nested_et_outer<P: Poller>(p: &P, log: &mut Log) {
    let (a, b, inner, outer) = nest(p, log, IN, IN | ET);
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "edge", outer, 0, &[(100, IN)]);
    expect_no_events(p, log, "once", outer);
    log.count("write again", p.write(a, b"y"), Ok(1));
    expect_events(
        p,
        log,
        "each wakeup inside is an edge outside",
        outer,
        0,
        &[(100, IN)],
    );
    expect_no_events(p, log, "once", outer);
    close_all(p, &[outer, inner, a, b]);
}

pub fn nested_inner_et_consumed<P: Poller>(p: &P, log: &mut Log) {
    let (a, b, inner, outer) = nest(p, log, IN | ET, IN);
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "outer", outer, 0, &[(100, IN)]);
    expect_events(p, log, "inner consumes the edge", inner, 0, &[(1, IN)]);
    expect_no_events(p, log, "outer: inner has nothing left", outer);
    log.count("write", p.write(a, b"y"), Ok(1));
    expect_events(p, log, "outer again", outer, 0, &[(100, IN)]);
    close_all(p, &[outer, inner, a, b]);
}

pub fn nested_inner_oneshot<P: Poller>(p: &P, log: &mut Log) {
    let (a, b, inner, outer) = nest(p, log, IN | ONESHOT, IN);
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "outer", outer, 0, &[(100, IN)]);
    expect_events(p, log, "inner fires the oneshot", inner, 0, &[(1, IN)]);
    expect_no_events(p, log, "outer: disarmed item is not ready", outer);
    log.ok(
        "MOD re-arm",
        ctl(p, inner, EPOLL_CTL_MOD, b, IN | ONESHOT, 1),
    );
    expect_events(p, log, "outer after re-arm", outer, 0, &[(100, IN)]);
    close_all(p, &[outer, inner, a, b]);
}

pub fn nested_three_levels<P: Poller>(p: &P, log: &mut Log) {
    let (a, b, inner, mid) = nest(p, log, IN, IN);
    let top = epoll(p);
    log.ok("ADD mid to top", ctl(p, top, EPOLL_CTL_ADD, mid, IN, 1000));
    expect_no_events(p, log, "idle", top);
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "top", top, 0, &[(1000, IN)]);
    log.expect("drain", drain(p, b), 1);
    expect_no_events(p, log, "top idle again", top);
    close_all(p, &[top, mid, inner, a, b]);
}

pub fn nested_epoll_fd_io<P: Poller>(p: &P, log: &mut Log) {
    let ep = epoll(p);
    let mut buf = [0u8; 8];
    log.err("read an epoll fd", p.read(ep, &mut buf), EINVAL);
    log.err("write an epoll fd", p.write(ep, b"x"), EINVAL);
    let d = log.ok("dup an epoll fd", p.dup(ep));
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    log.ok("ADD via the dup", ctl(p, d, EPOLL_CTL_ADD, e, IN, 5));
    expect_events(p, log, "same instance", ep, 0, &[(5, IN)]);
    log.err(
        "ADD the dup into the epoll: same file",
        ctl(p, ep, EPOLL_CTL_ADD, d, IN, 6),
        EINVAL,
    );
    close_all(p, &[ep, d, e]);
}

crate::cases! {
    nested_inner_readable,
    nested_et_outer,
    nested_inner_et_consumed,
    nested_inner_oneshot,
    nested_three_levels,
    nested_epoll_fd_io,
}

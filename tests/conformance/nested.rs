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

/// Adding an already-ready file to the inner instance wakes the outer one.
pub fn nested_add_ready_wakes_outer<P: Poller>(p: &P, log: &mut Log) {
    let inner = epoll(p);
    let outer = epoll(p);
    log.ok(
        "ADD inner to outer ET",
        ctl(p, outer, EPOLL_CTL_ADD, inner, IN | ET, 100),
    );
    expect_no_events(p, log, "inner empty", outer);
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    log.ok(
        "ADD ready eventfd to inner",
        ctl(p, inner, EPOLL_CTL_ADD, e, IN, 1),
    );
    expect_events(p, log, "outer edge", outer, 0, &[(100, IN)]);
    expect_no_events(p, log, "once", outer);
    log.ok(
        "MOD in inner (still ready)",
        ctl(p, inner, EPOLL_CTL_MOD, e, IN, 2),
    );
    expect_no_events(p, log, "MOD of a queued item: no new edge outside", outer);
    expect_events(p, log, "inner", inner, 0, &[(2, IN)]);
    close_all(p, &[outer, inner, e]);
}

/// Closing the inner instance removes it from the outer one.
pub fn nested_close_inner<P: Poller>(p: &P, log: &mut Log) {
    let (a, b, inner, outer) = nest(p, log, IN, IN);
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "outer", outer, 0, &[(100, IN)]);
    log.ok("close inner", p.close(inner));
    expect_no_events(p, log, "gone", outer);
    log.count("write", p.write(a, b"y"), Ok(1));
    expect_no_events(p, log, "still gone", outer);
    close_all(p, &[outer, a, b]);
}

/// Two inner instances in one outer: reported in the order they became ready.
pub fn nested_two_inners_order<P: Poller>(p: &P, log: &mut Log) {
    let e1 = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let e2 = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let i1 = epoll(p);
    let i2 = epoll(p);
    let outer = epoll(p);
    log.ok("e1 in i1", ctl(p, i1, EPOLL_CTL_ADD, e1, IN, 1));
    log.ok("e2 in i2", ctl(p, i2, EPOLL_CTL_ADD, e2, IN, 2));
    log.ok("i1 in outer", ctl(p, outer, EPOLL_CTL_ADD, i1, IN, 10));
    log.ok("i2 in outer", ctl(p, outer, EPOLL_CTL_ADD, i2, IN, 20));
    log.count("write e2", p.write(e2, &1u64.to_ne_bytes()), Ok(8));
    log.count("write e1", p.write(e1, &1u64.to_ne_bytes()), Ok(8));
    expect_events(p, log, "i2 then i1", outer, 0, &[(20, IN), (10, IN)]);
    close_all(p, &[outer, i1, i2, e1, e2]);
}

/// Polling an epoll instance (from an outer one) drops the stale entries at the front of its
/// ready list, which changes the order its own `epoll_wait` reports later.
pub fn nested_poll_prunes_stale_items<P: Poller>(p: &P, log: &mut Log) {
    for outer_looks in [false, true] {
        let ea = log.ok("eventfd A", p.eventfd(0, EFD_NONBLOCK));
        let eb = log.ok("eventfd B", p.eventfd(0, EFD_NONBLOCK));
        let inner = epoll(p);
        let outer = epoll(p);
        log.ok("A in inner", ctl(p, inner, EPOLL_CTL_ADD, ea, IN, 1));
        log.ok("B in inner", ctl(p, inner, EPOLL_CTL_ADD, eb, IN, 2));
        log.ok(
            "inner in outer",
            ctl(p, outer, EPOLL_CTL_ADD, inner, IN, 100),
        );
        log.count("bump A", p.write(ea, &1u64.to_ne_bytes()), Ok(8));
        log.count("bump B", p.write(eb, &1u64.to_ne_bytes()), Ok(8));
        let mut buf = [0u8; 8];
        log.count("drain A: a stale entry", p.read(ea, &mut buf), Ok(8));
        if outer_looks {
            expect_events(p, log, "outer polls inner", outer, 0, &[(100, IN)]);
        }
        log.count("bump A again", p.write(ea, &1u64.to_ne_bytes()), Ok(8));
        let expected: &[(u64, netpoll::Events)] = if outer_looks {
            &[(2, IN), (1, IN)]
        } else {
            &[(1, IN), (2, IN)]
        };
        expect_events(p, log, "inner's order", inner, 0, expected);
        close_all(p, &[outer, inner, ea, eb]);
    }
}

crate::cases! {
    nested_inner_readable,
    nested_et_outer,
    nested_inner_et_consumed,
    nested_inner_oneshot,
    nested_three_levels,
    nested_epoll_fd_io,
    nested_add_ready_wakes_outer,
    nested_close_inner,
    nested_two_inners_order,
    nested_poll_prunes_stale_items,
}

//! `epoll_wait` timeouts, measured on the poller's own clock (`now()`).

use std::time::Duration;

use netpoll::sys::*;
use netpoll::Poller;

use crate::harness::*;

pub fn timeout_zero_returns_at_once<P: Poller>(p: &P, log: &mut Log) {
    let ep = epoll(p);
    let t0 = p.now();
    log.expect("empty epoll, 0", wait(p, ep, 4, 0), Ok(vec![]));
    log.check(
        "no time passes (< 100 ms)",
        p.now() - t0 < Duration::from_millis(100),
    );
    close_all(p, &[ep]);
}

pub fn timeout_positive_waits_at_least<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b IN", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    for ms in [1, 20, 50] {
        let t0 = p.now();
        log.expect("nothing ready", wait(p, ep, 4, ms), Ok(vec![]));
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
    close_all(p, &[ep, a, b]);
}

pub fn timeout_empty_epoll<P: Poller>(p: &P, log: &mut Log) {
    let ep = epoll(p);
    let t0 = p.now();
    log.expect("no registrations, 30 ms", wait(p, ep, 4, 30), Ok(vec![]));
    log.check("waited", p.now() - t0 >= Duration::from_millis(30));
    close_all(p, &[ep]);
}

pub fn timeout_ready_returns_at_once<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN, 1));
    let t0 = p.now();
    log.expect(
        "ready, timeout 10 s",
        wait(p, ep, 4, 10_000),
        Ok(vec![(1, IN)]),
    );
    log.check(
        "did not wait (< 1 s)",
        p.now() - t0 < Duration::from_secs(1),
    );
    let t0 = p.now();
    log.expect("ready, timeout -1", wait(p, ep, 4, -1), Ok(vec![(1, IN)]));
    log.check(
        "did not wait (< 1 s)",
        p.now() - t0 < Duration::from_secs(1),
    );
    close_all(p, &[ep, e]);
}

/// An ET registration whose edge was consumed does not cut the timeout short.
pub fn timeout_et_consumed_waits<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD ET", ctl(p, ep, EPOLL_CTL_ADD, e, IN | ET, 1));
    log.expect("edge", wait(p, ep, 4, 0), Ok(vec![(1, IN)]));
    let t0 = p.now();
    log.expect(
        "still readable, no edge: timeout",
        wait(p, ep, 4, 25),
        Ok(vec![]),
    );
    log.check("waited", p.now() - t0 >= Duration::from_millis(25));
    close_all(p, &[ep, e]);
}

/// Data arriving over TCP during a wait ends it before the timeout.
pub fn timeout_tcp_data_wakes_waiter<P: Poller>(p: &P, log: &mut Log) {
    let (l, c, s) = tcp_pair(p);
    let ep = epoll(p);
    log.ok("ADD s IN", ctl(p, ep, EPOLL_CTL_ADD, s, IN, 1));
    log.count("write", p.write(c, b"ping"), Ok(4));
    let t0 = p.now();
    log.expect(
        "woken by the data",
        wait(p, ep, 4, 10_000),
        Ok(vec![(1, IN)]),
    );
    log.check("before the timeout", p.now() - t0 < Duration::from_secs(10));
    close_all(p, &[ep, l, c, s]);
}

pub fn now_is_monotonic<P: Poller>(p: &P, log: &mut Log) {
    let ep = epoll(p);
    let mut last = p.now();
    let mut ok = true;
    for _ in 0..5 {
        let _ = wait(p, ep, 1, 2);
        let t = p.now();
        ok &= t >= last + Duration::from_millis(2);
        last = t;
    }
    log.check("each 2 ms wait moves now() by at least 2 ms", ok);
    close_all(p, &[ep]);
}

crate::cases! {
    timeout_zero_returns_at_once,
    timeout_positive_waits_at_least,
    timeout_empty_epoll,
    timeout_ready_returns_at_once,
    timeout_et_consumed_waits,
    timeout_tcp_data_wakes_waiter,
    now_is_monotonic,
}

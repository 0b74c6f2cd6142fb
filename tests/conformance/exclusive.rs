//! `EPOLLEXCLUSIVE`: ADD-only, a restricted set of flags, and (with nobody blocked in
//! `epoll_wait`) every exclusive instance still gets the event.

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::Poller;

use crate::harness::*;

pub fn exclusive_all_get_event_when_nobody_waits<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep1 = epoll(p);
    let ep2 = epoll(p);
    let ep3 = epoll(p);
    log.ok(
        "ADD ep1 IN|EXCLUSIVE",
        ctl(p, ep1, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 1),
    );
    log.ok(
        "ADD ep2 IN|EXCLUSIVE",
        ctl(p, ep2, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 2),
    );
    log.ok(
        "ADD ep3 IN (not exclusive)",
        ctl(p, ep3, EPOLL_CTL_ADD, b, IN, 3),
    );
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "ep1", ep1, 0, &[(1, IN)]);
    expect_events(p, log, "ep2", ep2, 0, &[(2, IN)]);
    expect_events(p, log, "ep3", ep3, 0, &[(3, IN)]);
    expect_events(p, log, "ep1 LT", ep1, 0, &[(1, IN)]);
    close_all(p, &[ep1, ep2, ep3, a, b]);
}

pub fn exclusive_et<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let ep1 = epoll(p);
    let ep2 = epoll(p);
    log.ok(
        "ADD ep1",
        ctl(p, ep1, EPOLL_CTL_ADD, e, IN | ET | EXCLUSIVE, 1),
    );
    log.ok(
        "ADD ep2",
        ctl(p, ep2, EPOLL_CTL_ADD, e, IN | ET | EXCLUSIVE, 2),
    );
    log.count("write", p.write(e, &1u64.to_ne_bytes()), Ok(8));
    expect_events(p, log, "ep1", ep1, 0, &[(1, IN)]);
    expect_events(p, log, "ep2", ep2, 0, &[(2, IN)]);
    expect_no_events(p, log, "ep1 once", ep1);
    close_all(p, &[ep1, ep2, e]);
}

pub fn exclusive_mod_einval<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD EXCLUSIVE",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 1),
    );
    log.err(
        "MOD without EXCLUSIVE",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN, 2),
        EINVAL,
    );
    log.err(
        "MOD with EXCLUSIVE",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN | EXCLUSIVE, 2),
        EINVAL,
    );
    log.err(
        "ADD again",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 2),
        EEXIST,
    );
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "data unchanged", ep, 0, &[(1, IN)]);
    log.ok("DEL", ctl(p, ep, EPOLL_CTL_DEL, b, NONE, 0));
    log.ok("ADD non-exclusive", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 3));
    log.err(
        "MOD to EXCLUSIVE",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN | EXCLUSIVE, 3),
        EINVAL,
    );
    log.ok("MOD plain", ctl(p, ep, EPOLL_CTL_MOD, b, IN, 4));
    expect_events(p, log, "new data", ep, 0, &[(4, IN)]);
    close_all(p, &[ep, a, b]);
}

pub fn exclusive_flag_rules<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let inner = epoll(p);
    let ep = epoll(p);
    log.err(
        "EXCLUSIVE|ONESHOT",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | EXCLUSIVE | ONESHOT, 0),
        EINVAL,
    );
    log.err(
        "EXCLUSIVE|RDHUP",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | EXCLUSIVE | RDHUP, 0),
        EINVAL,
    );
    log.err(
        "EXCLUSIVE|PRI",
        ctl(
            p,
            ep,
            EPOLL_CTL_ADD,
            b,
            IN | EXCLUSIVE | netpoll::Events::PRI,
            0,
        ),
        EINVAL,
    );
    log.err(
        "EXCLUSIVE on an epoll target",
        ctl(p, ep, EPOLL_CTL_ADD, inner, IN | EXCLUSIVE, 0),
        EINVAL,
    );
    log.ok(
        "EXCLUSIVE|IN|OUT|ERR|HUP|ET|WAKEUP",
        ctl(
            p,
            ep,
            EPOLL_CTL_ADD,
            b,
            IN | OUT | ERR | HUP | ET | EXCLUSIVE | netpoll::Events::WAKEUP,
            7,
        ),
    );
    expect_events(p, log, "OUT", ep, 0, &[(7, OUT)]);
    log.ok(
        "EXCLUSIVE alone (no IN/OUT)",
        ctl(p, ep, EPOLL_CTL_ADD, a, EXCLUSIVE, 8),
    );
    close_all(p, &[ep, inner, a, b]);
}

pub fn exclusive_hup_reaches_all<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep1 = epoll(p);
    let ep2 = epoll(p);
    log.ok("ADD ep1", ctl(p, ep1, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 1));
    log.ok("ADD ep2", ctl(p, ep2, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 2));
    log.ok("close a", p.close(a));
    expect_events(p, log, "ep1", ep1, 0, &[(1, IN | HUP)]);
    expect_events(p, log, "ep2", ep2, 0, &[(2, IN | HUP)]);
    close_all(p, &[ep1, ep2, b]);
}

crate::cases! {
    exclusive_all_get_event_when_nobody_waits,
    exclusive_et,
    exclusive_mod_einval,
    exclusive_flag_rules,
    exclusive_hup_reaches_all,
}

//! `EPOLLONESHOT`: one event, then disarmed (but still registered) until `EPOLL_CTL_MOD`.

use netpoll::sys::*;
use netpoll::Poller;

use crate::harness::*;

pub fn oneshot_fires_once<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD IN|ONESHOT",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | ONESHOT, 1),
    );
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "one event", ep, 0, &[(1, IN)]);
    expect_no_events(p, log, "disarmed though still readable", ep);
    log.count("write more", p.write(a, b"y"), Ok(1));
    expect_no_events(p, log, "disarmed: new data is no event", ep);
    log.err(
        "ADD again",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1),
        errno::EEXIST,
    );
    log.ok("DEL", ctl(p, ep, EPOLL_CTL_DEL, b, NONE, 0));
    close_all(p, &[ep, a, b]);
}

pub fn oneshot_rearm_by_mod_when_ready<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, b, IN | ONESHOT, 1));
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "event", ep, 0, &[(1, IN)]);
    expect_no_events(p, log, "disarmed", ep);
    log.ok(
        "MOD re-arm, new data",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN | ONESHOT, 2),
    );
    expect_events(p, log, "MOD re-checks: still readable", ep, 0, &[(2, IN)]);
    expect_no_events(p, log, "disarmed again", ep);
    close_all(p, &[ep, a, b]);
}

pub fn oneshot_rearm_by_mod_when_idle<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, b, IN | ONESHOT, 1));
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "event", ep, 0, &[(1, IN)]);
    log.expect("drain", drain(p, b), 1);
    log.ok("MOD re-arm", ctl(p, ep, EPOLL_CTL_MOD, b, IN | ONESHOT, 3));
    expect_no_events(p, log, "armed, nothing to read", ep);
    log.count("write", p.write(a, b"z"), Ok(1));
    expect_events(p, log, "armed: event", ep, 0, &[(3, IN)]);
    expect_no_events(p, log, "disarmed", ep);
    close_all(p, &[ep, a, b]);
}

pub fn oneshot_et<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD IN|ET|ONESHOT",
        ctl(p, ep, EPOLL_CTL_ADD, r, IN | ET | ONESHOT, 1),
    );
    log.count("write", p.write(w, b"x"), Ok(1));
    expect_events(p, log, "event", ep, 0, &[(1, IN)]);
    log.count("write (edge while disarmed)", p.write(w, b"y"), Ok(1));
    expect_no_events(p, log, "disarmed", ep);
    log.ok(
        "MOD IN|ET|ONESHOT",
        ctl(p, ep, EPOLL_CTL_MOD, r, IN | ET | ONESHOT, 1),
    );
    expect_events(
        p,
        log,
        "MOD re-checks readiness even for ET",
        ep,
        0,
        &[(1, IN)],
    );
    close_all(p, &[ep, r, w]);
}

pub fn oneshot_mod_to_other_interest<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD IN|ONESHOT",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | ONESHOT, 1),
    );
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "IN", ep, 0, &[(1, IN)]);
    log.ok(
        "MOD OUT|ONESHOT",
        ctl(p, ep, EPOLL_CTL_MOD, b, OUT | ONESHOT, 2),
    );
    expect_events(p, log, "OUT only", ep, 0, &[(2, OUT)]);
    log.ok(
        "MOD IN|OUT (LT, no oneshot)",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN | OUT, 4),
    );
    expect_events(p, log, "both", ep, 0, &[(4, IN | OUT)]);
    expect_events(p, log, "LT again", ep, 0, &[(4, IN | OUT)]);
    close_all(p, &[ep, a, b]);
}

/// A disarmed registration does not get `HUP` either: oneshot disarms everything.
pub fn oneshot_disarms_hup<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok(
        "ADD IN|ONESHOT",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | ONESHOT, 1),
    );
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "IN", ep, 0, &[(1, IN)]);
    log.ok("close peer", p.close(a));
    expect_no_events(p, log, "disarmed: no HUP", ep);
    log.ok("MOD re-arm", ctl(p, ep, EPOLL_CTL_MOD, b, IN | ONESHOT, 1));
    expect_events(
        p,
        log,
        "re-armed: IN|HUP (RDHUP not asked)",
        ep,
        0,
        &[(1, IN | HUP)],
    );
    close_all(p, &[ep, b]);
}

/// Two oneshot registrations in one wait: each disarmed independently.
pub fn oneshot_independent<P: Poller>(p: &P, log: &mut Log) {
    let e1 = log.ok("eventfd 1", p.eventfd(1, EFD_NONBLOCK));
    let e2 = log.ok("eventfd 2", p.eventfd(1, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD e1", ctl(p, ep, EPOLL_CTL_ADD, e1, IN | ONESHOT, 1));
    log.ok("ADD e2", ctl(p, ep, EPOLL_CTL_ADD, e2, IN | ONESHOT, 2));
    expect_events(p, log, "both", ep, 0, &[(1, IN), (2, IN)]);
    log.ok("MOD e2", ctl(p, ep, EPOLL_CTL_MOD, e2, IN | ONESHOT, 2));
    expect_events(p, log, "only e2 re-armed", ep, 0, &[(2, IN)]);
    close_all(p, &[ep, e1, e2]);
}

crate::cases! {
    oneshot_fires_once,
    oneshot_rearm_by_mod_when_ready,
    oneshot_rearm_by_mod_when_idle,
    oneshot_et,
    oneshot_mod_to_other_interest,
    oneshot_disarms_hup,
    oneshot_independent,
}

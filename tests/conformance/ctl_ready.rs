//! `EPOLL_CTL_ADD`/`MOD`/`DEL` on files that are already ready.

use netpoll::sys::*;
use netpoll::Poller;

use crate::harness::*;

pub fn add_already_ready_lt<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.count("write before ADD", p.write(a, b"x"), Ok(1));
    let ep = epoll(p);
    log.ok("ADD IN", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    expect_events(p, log, "ADD checks readiness", ep, 0, &[(1, IN)]);
    expect_events(p, log, "LT", ep, 0, &[(1, IN)]);
    close_all(p, &[ep, a, b]);
}

pub fn add_already_ready_et<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.count("write before ADD", p.write(w, b"x"), Ok(1));
    let ep = epoll(p);
    log.ok("ADD IN|ET", ctl(p, ep, EPOLL_CTL_ADD, r, IN | ET, 1));
    expect_events(p, log, "ADD of a ready file is an edge", ep, 0, &[(1, IN)]);
    expect_no_events(p, log, "once", ep);
    close_all(p, &[ep, r, w]);
}

pub fn mod_rearms_et<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD IN|ET", ctl(p, ep, EPOLL_CTL_ADD, b, IN | ET, 1));
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "edge", ep, 0, &[(1, IN)]);
    expect_no_events(p, log, "consumed", ep);
    log.ok(
        "MOD same interest",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN | ET, 5),
    );
    expect_events(
        p,
        log,
        "MOD of a ready file queues it again",
        ep,
        0,
        &[(5, IN)],
    );
    expect_no_events(p, log, "once", ep);
    close_all(p, &[ep, a, b]);
}

pub fn del_drops_queued_event<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD IN", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.count("write", p.write(a, b"x"), Ok(1));
    log.ok("DEL while queued", ctl(p, ep, EPOLL_CTL_DEL, b, NONE, 0));
    expect_no_events(p, log, "nothing after DEL", ep);
    log.err(
        "DEL twice",
        ctl(p, ep, EPOLL_CTL_DEL, b, NONE, 0),
        errno::ENOENT,
    );
    log.err(
        "MOD after DEL",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN, 0),
        errno::ENOENT,
    );
    log.ok("ADD again", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 2));
    expect_events(p, log, "re-added", ep, 0, &[(2, IN)]);
    close_all(p, &[ep, a, b]);
}

pub fn mod_narrows_interest<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD IN", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.count("write", p.write(a, b"x"), Ok(1));
    log.ok(
        "MOD OUT while IN queued",
        ctl(p, ep, EPOLL_CTL_MOD, b, OUT, 2),
    );
    expect_events(p, log, "only OUT, new data", ep, 0, &[(2, OUT)]);
    log.ok("MOD NONE", ctl(p, ep, EPOLL_CTL_MOD, b, NONE, 3));
    expect_no_events(p, log, "no interest", ep);
    log.ok("close peer", p.close(a));
    expect_events(p, log, "HUP without asking", ep, 0, &[(3, HUP)]);
    close_all(p, &[ep, b]);
}

pub fn mod_changes_data_only<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(1, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN, 10));
    expect_events(p, log, "data 10", ep, 0, &[(10, IN)]);
    log.ok("MOD data", ctl(p, ep, EPOLL_CTL_MOD, e, IN, u64::MAX));
    expect_events(p, log, "data u64::MAX", ep, 0, &[(u64::MAX, IN)]);
    close_all(p, &[ep, e]);
}

/// One file in two epoll instances: each has its own registration and interest.
pub fn two_epolls_one_file<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep1 = epoll(p);
    let ep2 = epoll(p);
    log.ok("ADD ep1 IN", ctl(p, ep1, EPOLL_CTL_ADD, b, IN, 1));
    log.ok("ADD ep2 IN|ET", ctl(p, ep2, EPOLL_CTL_ADD, b, IN | ET, 2));
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "ep1", ep1, 0, &[(1, IN)]);
    expect_events(p, log, "ep2", ep2, 0, &[(2, IN)]);
    expect_events(p, log, "ep1 LT", ep1, 0, &[(1, IN)]);
    expect_no_events(p, log, "ep2 ET", ep2);
    log.ok("DEL from ep1", ctl(p, ep1, EPOLL_CTL_DEL, b, NONE, 0));
    log.count("write", p.write(a, b"y"), Ok(1));
    expect_no_events(p, log, "ep1 empty", ep1);
    expect_events(p, log, "ep2 still", ep2, 0, &[(2, IN)]);
    close_all(p, &[ep1, ep2, a, b]);
}

/// An interest of `ET` alone (or `PRI`) still reports hang-ups, once per edge.
pub fn no_direction_interest<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b ET", ctl(p, ep, EPOLL_CTL_ADD, b, ET, 1));
    log.ok(
        "ADD a PRI|WAKEUP",
        ctl(
            p,
            ep,
            EPOLL_CTL_ADD,
            a,
            netpoll::Events::PRI | netpoll::Events::WAKEUP,
            2,
        ),
    );
    log.count("write", p.write(a, b"x"), Ok(1));
    expect_no_events(p, log, "nothing asked", ep);
    log.ok("shutdown a RDWR", p.shutdown(a, SHUT_RDWR));
    let got = wait(p, ep, 8, 0).map(|mut v| {
        v.sort();
        v
    });
    log.expect(
        "HUP for both, masked to what was asked",
        got,
        Ok(vec![(1, HUP), (2, HUP)]),
    );
    let got = wait(p, ep, 8, 0);
    log.expect("b is ET: once; a is LT", got, Ok(vec![(2, HUP)]));
    close_all(p, &[ep, a, b]);
}

/// `MOD` from LT to ET on a ready file: reported once more, then not again.
pub fn mod_lt_to_et<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD LT", ctl(p, ep, EPOLL_CTL_ADD, e, IN, 1));
    expect_events(p, log, "LT", ep, 0, &[(1, IN)]);
    log.ok("MOD ET", ctl(p, ep, EPOLL_CTL_MOD, e, IN | ET, 2));
    expect_events(p, log, "once", ep, 0, &[(2, IN)]);
    expect_no_events(p, log, "then not", ep);
    log.ok("MOD LT", ctl(p, ep, EPOLL_CTL_MOD, e, IN, 3));
    expect_events(p, log, "LT again", ep, 0, &[(3, IN)]);
    expect_events(p, log, "and again", ep, 0, &[(3, IN)]);
    close_all(p, &[ep, e]);
}

crate::cases! {
    add_already_ready_lt,
    add_already_ready_et,
    mod_rearms_et,
    del_drops_queued_event,
    mod_narrows_interest,
    mod_changes_data_only,
    two_epolls_one_file,
    no_direction_interest,
    mod_lt_to_et,
}

//! Report order (by readiness time), `maxevents` truncation and round-robin.

use netpoll::sys::*;
use netpoll::{Fd, Poller};

use crate::harness::*;

fn eventfds<P: Poller>(p: &P, log: &mut Log, n: usize) -> Vec<Fd> {
    (0..n)
        .map(|_| log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK)))
        .collect()
}

fn bump<P: Poller>(p: &P, log: &mut Log, e: Fd) {
    log.count("write 1", p.write(e, &1u64.to_ne_bytes()), Ok(8));
}

pub fn order_by_readiness<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 4);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN | ET, i as u64));
    }
    for i in [2, 0, 3, 1] {
        bump(p, log, es[i]);
    }
    expect_events(
        p,
        log,
        "in readiness order",
        ep,
        0,
        &[(2, IN), (0, IN), (3, IN), (1, IN)],
    );
    bump(p, log, es[1]);
    bump(p, log, es[2]);
    expect_events(p, log, "again", ep, 0, &[(1, IN), (2, IN)]);
    close_all(p, &es);
    close_all(p, &[ep]);
}

/// A second wakeup of an item already queued does not move it.
pub fn requeue_keeps_position<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 3);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN | ET, i as u64));
    }
    bump(p, log, es[0]);
    bump(p, log, es[1]);
    bump(p, log, es[0]);
    bump(p, log, es[2]);
    expect_events(
        p,
        log,
        "first readiness counts",
        ep,
        0,
        &[(0, IN), (1, IN), (2, IN)],
    );
    close_all(p, &es);
    close_all(p, &[ep]);
}

pub fn maxevents_truncates_lt_round_robin<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 5);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD LT", ctl(p, ep, EPOLL_CTL_ADD, e, IN, i as u64));
        bump(p, log, e);
    }
    log.expect("max 2", wait(p, ep, 2, 0), Ok(vec![(0, IN), (1, IN)]));
    log.expect(
        "max 2: the rest first",
        wait(p, ep, 2, 0),
        Ok(vec![(2, IN), (3, IN)]),
    );
    log.expect(
        "max 2: then the front again",
        wait(p, ep, 2, 0),
        Ok(vec![(4, IN), (0, IN)]),
    );
    log.expect("max 1", wait(p, ep, 1, 0), Ok(vec![(1, IN)]));
    log.expect(
        "all",
        wait(p, ep, 16, 0),
        Ok(vec![(2, IN), (3, IN), (4, IN), (0, IN), (1, IN)]),
    );
    close_all(p, &es);
    close_all(p, &[ep]);
}

pub fn maxevents_truncates_et<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 3);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD ET", ctl(p, ep, EPOLL_CTL_ADD, e, IN | ET, i as u64));
        bump(p, log, e);
    }
    log.expect("max 2", wait(p, ep, 2, 0), Ok(vec![(0, IN), (1, IN)]));
    log.expect(
        "ET: the one left over",
        wait(p, ep, 2, 0),
        Ok(vec![(2, IN)]),
    );
    log.expect("ET: none", wait(p, ep, 2, 0), Ok(vec![]));
    close_all(p, &es);
    close_all(p, &[ep]);
}

/// LT items reported go to the back; new readiness queues behind them.
pub fn lt_requeue_behind_new<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 3);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN, i as u64));
    }
    bump(p, log, es[1]);
    bump(p, log, es[0]);
    log.expect("first", wait(p, ep, 8, 0), Ok(vec![(1, IN), (0, IN)]));
    bump(p, log, es[2]);
    log.expect(
        "new behind the requeued",
        wait(p, ep, 8, 0),
        Ok(vec![(1, IN), (0, IN), (2, IN)]),
    );
    let mut buf = [0u8; 8];
    log.count("read e0", p.read(es[0], &mut buf), Ok(8));
    log.expect("e0 dropped", wait(p, ep, 8, 0), Ok(vec![(1, IN), (2, IN)]));
    close_all(p, &es);
    close_all(p, &[ep]);
}

/// ONESHOT mixed with LT under truncation: the oneshot one is reported once, in its turn.
pub fn maxevents_mixed_modes<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 3);
    let ep = epoll(p);
    log.ok("ADD 0 LT", ctl(p, ep, EPOLL_CTL_ADD, es[0], IN, 0));
    log.ok(
        "ADD 1 ONESHOT",
        ctl(p, ep, EPOLL_CTL_ADD, es[1], IN | ONESHOT, 1),
    );
    log.ok("ADD 2 ET", ctl(p, ep, EPOLL_CTL_ADD, es[2], IN | ET, 2));
    for &e in &es {
        bump(p, log, e);
    }
    log.expect("max 1", wait(p, ep, 1, 0), Ok(vec![(0, IN)]));
    log.expect("max 1", wait(p, ep, 1, 0), Ok(vec![(1, IN)]));
    log.expect("max 1", wait(p, ep, 1, 0), Ok(vec![(2, IN)]));
    log.expect(
        "only the LT one is left",
        wait(p, ep, 8, 0),
        Ok(vec![(0, IN)]),
    );
    close_all(p, &es);
    close_all(p, &[ep]);
}

/// `MOD` of a registration already queued leaves it where it is.
pub fn mod_keeps_queue_position<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 3);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN | ET, i as u64));
        bump(p, log, e);
    }
    log.ok(
        "MOD the first, new data",
        ctl(p, ep, EPOLL_CTL_MOD, es[0], IN | ET, 10),
    );
    expect_events(p, log, "order kept", ep, 0, &[(10, IN), (1, IN), (2, IN)]);
    close_all(p, &es);
    close_all(p, &[ep]);
}

/// `DEL` then `ADD` queues it again at the back.
pub fn del_add_moves_to_back<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 3);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN, i as u64));
        bump(p, log, e);
    }
    log.ok("DEL the first", ctl(p, ep, EPOLL_CTL_DEL, es[0], NONE, 0));
    log.ok("ADD it again", ctl(p, ep, EPOLL_CTL_ADD, es[0], IN, 0));
    expect_events(p, log, "at the back", ep, 0, &[(1, IN), (2, IN), (0, IN)]);
    close_all(p, &es);
    close_all(p, &[ep]);
}

/// Queued registrations that are no longer ready are dropped, not counted against `maxevents`.
pub fn stale_entries_do_not_count<P: Poller>(p: &P, log: &mut Log) {
    let es = eventfds(p, log, 3);
    let ep = epoll(p);
    for (i, &e) in es.iter().enumerate() {
        log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN, i as u64));
        bump(p, log, e);
    }
    let mut buf = [0u8; 8];
    log.count("drain the first", p.read(es[0], &mut buf), Ok(8));
    log.expect("max 1: the second", wait(p, ep, 1, 0), Ok(vec![(1, IN)]));
    log.ok(
        "MOD the third to OUT only... ",
        ctl(p, ep, EPOLL_CTL_MOD, es[2], OUT, 2),
    );
    log.expect("max 1", wait(p, ep, 1, 0), Ok(vec![(2, OUT)]));
    log.expect("all", wait(p, ep, 8, 0), Ok(vec![(1, IN), (2, OUT)]));
    close_all(p, &es);
    close_all(p, &[ep]);
}

crate::cases! {
    order_by_readiness,
    requeue_keeps_position,
    maxevents_truncates_lt_round_robin,
    maxevents_truncates_et,
    lt_requeue_behind_new,
    maxevents_mixed_modes,
    mod_keeps_queue_position,
    del_add_moves_to_back,
    stale_entries_do_not_count,
}

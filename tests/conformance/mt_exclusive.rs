//! `EPOLLEXCLUSIVE` with threads blocked in `epoll_wait`: several instances watch one file, each
//! with a waiter; a wakeup of the file goes to the non-exclusive instances and to the first
//! exclusive instance (in `ADD` order) that has a waiter. Instances before it that have no
//! waiter still queue the event; instances after it never hear of it, even though the file is
//! level-triggered and still ready.

use netpoll::sys::*;
use netpoll::Fd;

use crate::harness::*;
use crate::mt_harness::*;

/// A socketpair and `n` instances watching its `b` end with `IN | EXCLUSIVE | extra`, data
/// `1..=n`, in that `ADD` order.
fn exclusive_set<P: Threads>(
    p: &P,
    log: &mut Log,
    n: usize,
    extra: netpoll::Events,
) -> (Fd, Fd, Vec<Fd>) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let eps: Vec<Fd> = (1..=n)
        .map(|i| {
            let ep = epoll(p);
            log.ok(
                &format!("ADD ep{i} IN|EXCLUSIVE"),
                ctl(p, ep, EPOLL_CTL_ADD, b, IN | EXCLUSIVE | extra, i as u64),
            );
            ep
        })
        .collect();
    (a, b, eps)
}

pub fn mt_exclusive_wakes_first_instance_only<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, eps) = exclusive_set(p, log, 2, NONE);
    let w1 = bg_wait(p, "w1", eps[0], BLOCK_MS);
    let w2 = bg_wait(p, "w2", eps[1], BLOCK_MS);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("ep1's waiter returned", w1.done(), true);
    log.expect("ep2's waiter still blocked", w2.done(), false);
    log.expect("ep1's waiter got", w1.join(), Ok(vec![(1, IN)]));
    log.expect("ep2's waiter timed out", w2.join(), Ok(vec![]));
    expect_events(p, log, "ep1 (LT, still queued)", eps[0], 0, &[(1, IN)]);
    expect_no_events(p, log, "ep2 never heard of it", eps[1]);
    close_all(p, &[eps[0], eps[1], a, b]);
}

pub fn mt_exclusive_skips_instances_without_waiters<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, eps) = exclusive_set(p, log, 3, NONE);
    let w2 = bg_wait(p, "w2", eps[1], BLOCK_MS);
    let w3 = bg_wait(p, "w3", eps[2], BLOCK_MS);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("returned", (w2.done(), w3.done()), (true, false));
    log.expect("ep2's waiter got", w2.join(), Ok(vec![(2, IN)]));
    log.expect("ep3's waiter timed out", w3.join(), Ok(vec![]));
    expect_events(p, log, "ep1 (no waiter) queued it", eps[0], 0, &[(1, IN)]);
    expect_no_events(p, log, "ep3 never heard of it", eps[2]);
    close_all(p, &[eps[0], eps[1], eps[2], a, b]);
}

pub fn mt_exclusive_and_plain_instance<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let x1 = epoll(p);
    let x2 = epoll(p);
    let plain = epoll(p);
    log.ok("ADD x1", ctl(p, x1, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 1));
    log.ok("ADD x2", ctl(p, x2, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 2));
    log.ok(
        "ADD plain (after them)",
        ctl(p, plain, EPOLL_CTL_ADD, b, IN, 3),
    );
    let w1 = bg_wait(p, "w1", x1, BLOCK_MS);
    let w2 = bg_wait(p, "w2", x2, BLOCK_MS);
    let w3 = bg_wait(p, "w3", plain, BLOCK_MS);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect(
        "returned (x1, x2, plain)",
        (w1.done(), w2.done(), w3.done()),
        (true, false, true),
    );
    log.expect("x1", w1.join(), Ok(vec![(1, IN)]));
    log.expect("x2", w2.join(), Ok(vec![]));
    log.expect("plain", w3.join(), Ok(vec![(3, IN)]));
    close_all(p, &[x1, x2, plain, a, b]);
}

pub fn mt_exclusive_et_each_edge_to_the_next<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, eps) = exclusive_set(p, log, 2, ET);
    let w1 = bg_wait(p, "w1", eps[0], -1);
    let w2 = bg_wait(p, "w2", eps[1], -1);
    p.settle();
    log.count("write 1", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("returned (ep1, ep2)", (w1.done(), w2.done()), (true, false));
    log.count("write 2", p.write(a, b"y"), Ok(1));
    p.settle();
    log.expect("returned (ep1, ep2)", (w1.done(), w2.done()), (true, true));
    log.expect("ep1's waiter", w1.join(), Ok(vec![(1, IN)]));
    log.expect("ep2's waiter", w2.join(), Ok(vec![(2, IN)]));
    close_all(p, &[eps[0], eps[1], a, b]);
}

pub fn mt_exclusive_hangup_wakes_every_instance<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, eps) = exclusive_set(p, log, 2, NONE);
    let w1 = bg_wait(p, "w1", eps[0], -1);
    let w2 = bg_wait(p, "w2", eps[1], -1);
    p.settle();
    log.ok("close a", p.close(a));
    log.expect("ep1's waiter", w1.join(), Ok(vec![(1, IN | HUP)]));
    log.expect("ep2's waiter", w2.join(), Ok(vec![(2, IN | HUP)]));
    close_all(p, &[eps[0], eps[1], b]);
}

pub fn mt_exclusive_out_interest_ignores_in_wakeup<P: Threads>(p: &P, log: &mut Log) {
    // ep1 asks only for OUT: an IN wakeup does not count as waking it, so the walk goes on.
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep1 = epoll(p);
    let ep2 = epoll(p);
    log.ok(
        "ADD ep1 OUT|EXCLUSIVE|ET",
        ctl(p, ep1, EPOLL_CTL_ADD, b, OUT | EXCLUSIVE | ET, 1),
    );
    expect_events(p, log, "ep1 initial OUT edge", ep1, 0, &[(1, OUT)]);
    log.ok(
        "ADD ep2 IN|EXCLUSIVE",
        ctl(p, ep2, EPOLL_CTL_ADD, b, IN | EXCLUSIVE, 2),
    );
    let w1 = bg_wait(p, "w1", ep1, BLOCK_MS);
    let w2 = bg_wait(p, "w2", ep2, BLOCK_MS);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("ep2's waiter", w2.join(), Ok(vec![(2, IN)]));
    log.expect("ep1's waiter (no OUT edge)", w1.join(), Ok(vec![]));
    close_all(p, &[ep1, ep2, a, b]);
}

pub fn mt_exclusive_eventfd_wake_one_instance<P: Threads>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let ep1 = epoll(p);
    let ep2 = epoll(p);
    log.ok("ADD ep1", ctl(p, ep1, EPOLL_CTL_ADD, e, IN | EXCLUSIVE, 1));
    log.ok("ADD ep2", ctl(p, ep2, EPOLL_CTL_ADD, e, IN | EXCLUSIVE, 2));
    let w1 = bg_wait(p, "w1", ep1, BLOCK_MS);
    let w2 = bg_wait(p, "w2", ep2, BLOCK_MS);
    p.settle();
    log.count("write", p.write(e, &1u64.to_ne_bytes()), Ok(8));
    p.settle();
    log.expect("returned (ep1, ep2)", (w1.done(), w2.done()), (true, false));
    log.expect("ep1", w1.join(), Ok(vec![(1, IN)]));
    log.expect("ep2", w2.join(), Ok(vec![]));
    close_all(p, &[ep1, ep2, e]);
}

crate::mt_cases! {
    mt_exclusive_wakes_first_instance_only,
    mt_exclusive_skips_instances_without_waiters,
    mt_exclusive_and_plain_instance,
    mt_exclusive_et_each_edge_to_the_next,
    mt_exclusive_hangup_wakes_every_instance,
    mt_exclusive_out_interest_ignores_in_wakeup,
    mt_exclusive_eventfd_wake_one_instance,
}

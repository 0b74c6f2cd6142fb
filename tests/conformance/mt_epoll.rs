//! Several threads blocked in `epoll_wait` on one instance (Linux's `ep_poll`: waiters queue
//! exclusively on `ep->wq`, one wakeup wakes one of them, and a level-triggered item left on
//! the ready list after delivery wakes the next); waiters woken (or not) by another thread's
//! write, `close`, `shutdown` or `epoll_ctl`; nested instances with waiters at both levels;
//! timeouts racing with readiness.

use netpoll::sys::errno::*;
use netpoll::sys::*;

use crate::harness::*;
use crate::mt_harness::*;

/// A socketpair `[a, b]` (non-blocking) and an instance watching `b` for `events`, data 1.
fn pair_watched<P: Threads>(p: &P, log: &mut Log, events: netpoll::Events) -> (Fd, Fd, Fd) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, events, 1));
    (a, b, ep)
}

use netpoll::Fd;

pub fn mt_et_one_write_wakes_one_waiter<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN | ET);
    let w1 = bg_wait(p, "w1", ep, -1);
    let w2 = bg_wait(p, "w2", ep, -1);
    p.settle();
    log.expect("returned before the write", done_count(&[&w1, &w2]), 0);
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("returned after one edge", done_count(&[&w1, &w2]), 1);
    log.count("write again", p.write(a, b"y"), Ok(1));
    p.settle();
    log.expect("returned after two edges", done_count(&[&w1, &w2]), 2);
    log.expect("w1 got", w1.join(), Ok(vec![(1, IN)]));
    log.expect("w2 got", w2.join(), Ok(vec![(1, IN)]));
    close_all(p, &[ep, a, b]);
}

pub fn mt_lt_one_write_wakes_every_waiter<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let ws: Vec<_> = (0..3)
        .map(|i| bg_wait(p, &format!("w{i}"), ep, -1))
        .collect();
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect(
        "returned after one write (LT re-queue wakes the next)",
        done_count(&ws.iter().collect::<Vec<_>>()),
        3,
    );
    for (i, w) in ws.into_iter().enumerate() {
        log.expect(&format!("w{i} got"), w.join(), Ok(vec![(1, IN)]));
    }
    close_all(p, &[ep, a, b]);
}

pub fn mt_oneshot_wakes_one_until_rearmed<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN | ONESHOT);
    let w1 = bg_wait(p, "w1", ep, -1);
    let w2 = bg_wait(p, "w2", ep, -1);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("returned after the write", done_count(&[&w1, &w2]), 1);
    log.count("write again (disarmed)", p.write(a, b"y"), Ok(1));
    p.settle();
    log.expect(
        "returned after a write to a disarmed item",
        done_count(&[&w1, &w2]),
        1,
    );
    log.ok("MOD re-arms", ctl(p, ep, EPOLL_CTL_MOD, b, IN | ONESHOT, 2));
    p.settle();
    log.expect("returned after the re-arm", done_count(&[&w1, &w2]), 2);
    let mut got = vec![w1.join(), w2.join()];
    got.sort();
    log.expect(
        "what each got",
        got,
        vec![Ok(vec![(1, IN)]), Ok(vec![(2, IN)])],
    );
    close_all(p, &[ep, a, b]);
}

pub fn mt_et_two_items_two_waiters_one_each<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair 1", p.socketpair(SOCK_NONBLOCK));
    let [c, d] = log.ok("socketpair 2", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN | ET, 1));
    log.ok("ADD d", ctl(p, ep, EPOLL_CTL_ADD, d, IN | ET, 2));
    let ws: Vec<_> = (0..2)
        .map(|i| bg(p, &format!("w{i}"), move |p| wait(p, ep, 1, -1)))
        .collect();
    p.settle();
    log.count("write a", p.write(a, b"x"), Ok(1));
    log.count("write c", p.write(c, b"x"), Ok(1));
    p.settle();
    let mut got: Vec<_> = ws.into_iter().map(|w| w.join()).collect();
    got.sort();
    log.expect(
        "one item each",
        got,
        vec![Ok(vec![(1, IN)]), Ok(vec![(2, IN)])],
    );
    close_all(p, &[ep, a, b, c, d]);
}

pub fn mt_eventfd_et_write_wakes_one<P: Threads>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN | ET, 5));
    let w1 = bg_wait(p, "w1", ep, BLOCK_MS);
    let w2 = bg_wait(p, "w2", ep, BLOCK_MS);
    p.settle();
    log.count("write 1", p.write(e, &1u64.to_ne_bytes()), Ok(8));
    p.settle();
    log.expect("returned", done_count(&[&w1, &w2]), 1);
    let mut got = vec![w1.join(), w2.join()];
    got.sort();
    log.expect(
        "one got the edge, the other timed out",
        got,
        vec![Ok(vec![]), Ok(vec![(5, IN)])],
    );
    close_all(p, &[ep, e]);
}

pub fn mt_waiters_time_out_with_nothing<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let t0 = p.now();
    let w1 = bg_wait(p, "w1", ep, 50);
    let w2 = bg_wait(p, "w2", ep, 100);
    log.expect("w1", w1.join(), Ok(vec![]));
    log.expect("w2", w2.join(), Ok(vec![]));
    log.check(
        "at least 100 ms passed",
        p.now() - t0 >= std::time::Duration::from_millis(100),
    );
    close_all(p, &[ep, a, b]);
}

pub fn mt_readiness_before_timeout_wins<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let t0 = p.now();
    let w = bg_wait(p, "w", ep, 10_000);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect("the waiter got the event", w.join(), Ok(vec![(1, IN)]));
    log.check(
        "well before its timeout",
        p.now() - t0 < std::time::Duration::from_secs(5),
    );
    close_all(p, &[ep, a, b]);
}

pub fn mt_ctl_add_ready_et_wakes_one<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.count("write (b readable)", p.write(a, b"x"), Ok(1));
    let w1 = bg_wait(p, "w1", ep, BLOCK_MS);
    let w2 = bg_wait(p, "w2", ep, BLOCK_MS);
    p.settle();
    log.ok(
        "ADD a ready fd, ET",
        ctl(p, ep, EPOLL_CTL_ADD, b, IN | ET, 3),
    );
    p.settle();
    log.expect("returned", done_count(&[&w1, &w2]), 1);
    let mut got = vec![w1.join(), w2.join()];
    got.sort();
    log.expect("what each got", got, vec![Ok(vec![]), Ok(vec![(3, IN)])]);
    close_all(p, &[ep, a, b]);
}

pub fn mt_ctl_add_ready_lt_wakes_all<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.count("write (b readable)", p.write(a, b"x"), Ok(1));
    let w1 = bg_wait(p, "w1", ep, -1);
    let w2 = bg_wait(p, "w2", ep, -1);
    p.settle();
    log.ok("ADD a ready fd, LT", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 3));
    log.expect("w1", w1.join(), Ok(vec![(3, IN)]));
    log.expect("w2", w2.join(), Ok(vec![(3, IN)]));
    close_all(p, &[ep, a, b]);
}

pub fn mt_ctl_mod_to_out_wakes_waiter<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let w = bg_wait(p, "w", ep, -1);
    p.settle();
    log.expect("blocked (b not readable)", w.done(), false);
    log.ok("MOD to OUT", ctl(p, ep, EPOLL_CTL_MOD, b, OUT, 4));
    log.expect("woken by the MOD", w.join(), Ok(vec![(4, OUT)]));
    close_all(p, &[ep, a, b]);
}

pub fn mt_ctl_del_then_write_wakes_nobody<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let w = bg_wait(p, "w", ep, BLOCK_MS);
    p.settle();
    log.ok("DEL b", ctl(p, ep, EPOLL_CTL_DEL, b, NONE, 0));
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("still blocked", w.done(), false);
    log.expect("timed out", w.join(), Ok(vec![]));
    close_all(p, &[ep, a, b]);
}

pub fn mt_close_watched_fd_wakes_nobody<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let w = bg_wait(p, "w", ep, BLOCK_MS);
    p.settle();
    log.ok("close b (its last descriptor)", p.close(b));
    p.settle();
    log.expect("still blocked", w.done(), false);
    log.err("write to the closed peer", p.write(a, b"x"), EPIPE);
    log.expect("timed out", w.join(), Ok(vec![]));
    close_all(p, &[ep, a]);
}

pub fn mt_close_peer_wakes_every_lt_waiter<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let w1 = bg_wait(p, "w1", ep, -1);
    let w2 = bg_wait(p, "w2", ep, -1);
    p.settle();
    log.ok("close a", p.close(a));
    log.expect("w1", w1.join(), Ok(vec![(1, IN | HUP)]));
    log.expect("w2", w2.join(), Ok(vec![(1, IN | HUP)]));
    close_all(p, &[ep, b]);
}

pub fn mt_shutdown_wr_peer_wakes_rdhup<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN | RDHUP);
    let w = bg_wait(p, "w", ep, -1);
    p.settle();
    log.ok("shutdown(a, SHUT_WR)", p.shutdown(a, SHUT_WR));
    log.expect("woken", w.join(), Ok(vec![(1, IN | RDHUP)]));
    close_all(p, &[ep, a, b]);
}

pub fn mt_close_epfd_keeps_the_waiter<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let w = bg_wait(p, "w", ep, -1);
    p.settle();
    log.ok("close ep (the waiter holds the instance)", p.close(ep));
    p.settle();
    log.expect("still blocked", w.done(), false);
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect(
        "woken through the closed instance",
        w.join(),
        Ok(vec![(1, IN)]),
    );
    close_all(p, &[a, b]);
}

pub fn mt_nested_waiters_at_both_levels<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let inner = epoll(p);
    let outer = epoll(p);
    log.ok("ADD b to inner", ctl(p, inner, EPOLL_CTL_ADD, b, IN, 1));
    log.ok(
        "ADD inner to outer",
        ctl(p, outer, EPOLL_CTL_ADD, inner, IN, 2),
    );
    let wi = bg_wait(p, "inner waiter", inner, -1);
    let wo = bg_wait(p, "outer waiter", outer, -1);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect("inner waiter", wi.join(), Ok(vec![(1, IN)]));
    log.expect("outer waiter", wo.join(), Ok(vec![(2, IN)]));
    close_all(p, &[outer, inner, a, b]);
}

pub fn mt_nested_et_outer_wakes_one_outer_waiter<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let inner = epoll(p);
    let outer = epoll(p);
    log.ok(
        "ADD b to inner (LT)",
        ctl(p, inner, EPOLL_CTL_ADD, b, IN, 1),
    );
    log.ok(
        "ADD inner to outer (ET)",
        ctl(p, outer, EPOLL_CTL_ADD, inner, IN | ET, 2),
    );
    let w1 = bg_wait(p, "w1", outer, BLOCK_MS);
    let w2 = bg_wait(p, "w2", outer, BLOCK_MS);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("outer waiters returned", done_count(&[&w1, &w2]), 1);
    let mut got = vec![w1.join(), w2.join()];
    got.sort();
    log.expect("what each got", got, vec![Ok(vec![]), Ok(vec![(2, IN)])]);
    expect_events(p, log, "inner still ready", inner, 0, &[(1, IN)]);
    close_all(p, &[outer, inner, a, b]);
}

pub fn mt_nested_lt_two_outer_waiters_both<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let inner = epoll(p);
    let outer = epoll(p);
    log.ok("ADD b to inner", ctl(p, inner, EPOLL_CTL_ADD, b, IN, 1));
    log.ok(
        "ADD inner to outer",
        ctl(p, outer, EPOLL_CTL_ADD, inner, IN, 2),
    );
    let w1 = bg_wait(p, "w1", outer, -1);
    let w2 = bg_wait(p, "w2", outer, -1);
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect("w1", w1.join(), Ok(vec![(2, IN)]));
    log.expect("w2", w2.join(), Ok(vec![(2, IN)]));
    close_all(p, &[outer, inner, a, b]);
}

pub fn mt_lt_read_by_waiter_stops_the_chain<P: Threads>(p: &P, log: &mut Log) {
    // One waiter gets the event and drains the socket; a second waiter that blocks after the
    // drain finds nothing re-queued (the re-poll of the level-triggered item drops it).
    let (a, b, ep) = pair_watched(p, log, IN);
    let w1 = bg(p, "w1", move |p| {
        let got = wait(p, ep, 8, -1);
        let n = drain(p, b);
        (got, n)
    });
    p.settle();
    log.count("write", p.write(a, b"xyz"), Ok(3));
    log.expect("w1 got and drained", w1.join(), (Ok(vec![(1, IN)]), 3));
    let w2 = bg_wait(p, "w2", ep, BLOCK_MS);
    p.settle();
    log.expect("w2 blocked (drained)", w2.done(), false);
    log.expect("w2 timed out", w2.join(), Ok(vec![]));
    close_all(p, &[ep, a, b]);
}

pub fn mt_epoll_pwait2_waiters_et_one_each<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN | ET);
    let pw = |name: &str| {
        bg(p, name, move |p| {
            let mut buf = [netpoll::EpollEvent::EMPTY; 4];
            let t = netpoll::Timespec {
                sec: 0,
                nsec: 300_000_000,
            };
            val(&p.epoll_pwait2(ep, &mut buf, Some(t), Some(0))).map(|n| {
                buf[..n]
                    .iter()
                    .map(|e| (e.data, e.events))
                    .collect::<Vec<_>>()
            })
        })
    };
    let w1 = pw("w1");
    let w2 = pw("w2");
    p.settle();
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("returned", done_count(&[&w1, &w2]), 1);
    let mut got = vec![w1.join(), w2.join()];
    got.sort();
    log.expect(
        "one edge, one waiter",
        got,
        vec![Ok(vec![]), Ok(vec![(1, IN)])],
    );
    close_all(p, &[ep, a, b]);
}

pub fn mt_dup2_over_epfd_keeps_the_waiter<P: Threads>(p: &P, log: &mut Log) {
    let (a, b, ep) = pair_watched(p, log, IN);
    let w = bg(p, "w", move |p| {
        let mut buf = [netpoll::EpollEvent::EMPTY; 4];
        val(&p.epoll_pwait(ep, &mut buf, -1, None)).map(|n| (buf[0].data, n))
    });
    p.settle();
    log.check(
        "dup2(a, ep) replaces the instance's number",
        matches!(p.dup2(a, ep), Ok(n) if n == ep),
    );
    p.settle();
    log.expect("still blocked", w.done(), false);
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect("woken through the replaced instance", w.join(), Ok((1, 1)));
    close_all(p, &[ep, a, b]);
}

crate::mt_cases! {
    mt_epoll_pwait2_waiters_et_one_each,
    mt_dup2_over_epfd_keeps_the_waiter,
    mt_et_one_write_wakes_one_waiter,
    mt_lt_one_write_wakes_every_waiter,
    mt_oneshot_wakes_one_until_rearmed,
    mt_et_two_items_two_waiters_one_each,
    mt_eventfd_et_write_wakes_one,
    mt_waiters_time_out_with_nothing,
    mt_readiness_before_timeout_wins,
    mt_ctl_add_ready_et_wakes_one,
    mt_ctl_add_ready_lt_wakes_all,
    mt_ctl_mod_to_out_wakes_waiter,
    mt_ctl_del_then_write_wakes_nobody,
    mt_close_watched_fd_wakes_nobody,
    mt_close_peer_wakes_every_lt_waiter,
    mt_shutdown_wr_peer_wakes_rdhup,
    mt_close_epfd_keeps_the_waiter,
    mt_nested_waiters_at_both_levels,
    mt_nested_et_outer_wakes_one_outer_waiter,
    mt_nested_lt_two_outer_waiters_both,
    mt_lt_read_by_waiter_stops_the_chain,
}

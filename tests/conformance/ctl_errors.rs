//! The `epoll_ctl` / `epoll_wait` / constructors errno matrix.

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{EpollEvent, Fd, Poller};

use crate::harness::*;

/// A descriptor number that is never open (above the process's limit of open files).
pub const BAD_FD: Fd = 999_999;

pub fn ctl_eexist_enoent<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.err(
        "MOD unregistered",
        ctl(p, ep, EPOLL_CTL_MOD, a, IN, 0),
        ENOENT,
    );
    log.err(
        "DEL unregistered",
        ctl(p, ep, EPOLL_CTL_DEL, a, IN, 0),
        ENOENT,
    );
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, a, IN, 0));
    log.err("ADD again", ctl(p, ep, EPOLL_CTL_ADD, a, OUT, 0), EEXIST);
    log.ok("MOD", ctl(p, ep, EPOLL_CTL_MOD, a, OUT, 0));
    log.ok("DEL", ctl(p, ep, EPOLL_CTL_DEL, a, IN, 0));
    log.err("DEL again", ctl(p, ep, EPOLL_CTL_DEL, a, IN, 0), ENOENT);
    close_all(p, &[ep, a, b]);
}

pub fn ctl_ebadf<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.err("bad epfd", ctl(p, BAD_FD, EPOLL_CTL_ADD, a, IN, 0), EBADF);
    log.err("bad fd", ctl(p, ep, EPOLL_CTL_ADD, BAD_FD, IN, 0), EBADF);
    log.err(
        "bad both",
        ctl(p, BAD_FD, EPOLL_CTL_ADD, BAD_FD, IN, 0),
        EBADF,
    );
    log.err(
        "bad fd, DEL",
        ctl(p, ep, EPOLL_CTL_DEL, BAD_FD, IN, 0),
        EBADF,
    );
    log.err("negative fd", ctl(p, ep, EPOLL_CTL_ADD, -1, IN, 0), EBADF);
    log.err("bad fd, bad op", ctl(p, ep, 77, BAD_FD, IN, 0), EBADF);
    close_all(p, &[ep, a, b]);
}

pub fn ctl_einval_self_and_non_epoll<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let ep = epoll(p);
    log.err(
        "epoll watching itself",
        ctl(p, ep, EPOLL_CTL_ADD, ep, IN, 0),
        EINVAL,
    );
    log.err(
        "epfd is a socket",
        ctl(p, a, EPOLL_CTL_ADD, b, IN, 0),
        EINVAL,
    );
    log.err(
        "epfd is an eventfd",
        ctl(p, e, EPOLL_CTL_ADD, b, IN, 0),
        EINVAL,
    );
    log.err(
        "epfd is a socket, DEL",
        ctl(p, a, EPOLL_CTL_DEL, b, IN, 0),
        EINVAL,
    );
    log.err(
        "epfd == fd, a socket",
        ctl(p, a, EPOLL_CTL_ADD, a, IN, 0),
        EINVAL,
    );
    close_all(p, &[ep, e, a, b]);
}

pub fn ctl_einval_bad_op<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.err("op 0", ctl(p, ep, 0, a, IN, 0), EINVAL);
    log.err("op 4", ctl(p, ep, 4, a, IN, 0), EINVAL);
    log.err("op -1", ctl(p, ep, -1, a, IN, 0), EINVAL);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, a, IN, 0));
    log.err("op 4 on a registered fd", ctl(p, ep, 4, a, IN, 0), EINVAL);
    // An unknown op is not DEL, so Linux copies the event first: a null one faults.
    log.err("op 4 with no event", p.epoll_ctl(ep, 4, a, None), EFAULT);
    close_all(p, &[ep, a, b]);
}

pub fn ctl_efault_no_event<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.err("ADD None", p.epoll_ctl(ep, EPOLL_CTL_ADD, a, None), EFAULT);
    log.err(
        "MOD None (unregistered)",
        p.epoll_ctl(ep, EPOLL_CTL_MOD, a, None),
        EFAULT,
    );
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, a, IN, 0));
    log.err("MOD None", p.epoll_ctl(ep, EPOLL_CTL_MOD, a, None), EFAULT);
    log.ok("DEL None", p.epoll_ctl(ep, EPOLL_CTL_DEL, a, None));
    log.err(
        "DEL None again",
        p.epoll_ctl(ep, EPOLL_CTL_DEL, a, None),
        ENOENT,
    );
    close_all(p, &[ep, a, b]);
}

pub fn ctl_eloop_cycle<P: Poller>(p: &P, log: &mut Log) {
    let e1 = epoll(p);
    let e2 = epoll(p);
    let e3 = epoll(p);
    log.ok("e1 in e2", ctl(p, e2, EPOLL_CTL_ADD, e1, IN, 1));
    log.err(
        "e2 in e1: cycle",
        ctl(p, e1, EPOLL_CTL_ADD, e2, IN, 2),
        ELOOP,
    );
    log.ok("e2 in e3", ctl(p, e3, EPOLL_CTL_ADD, e2, IN, 3));
    log.err(
        "e3 in e1: longer cycle",
        ctl(p, e1, EPOLL_CTL_ADD, e3, IN, 4),
        ELOOP,
    );
    log.ok(
        "e1 in e3 too (a diamond, no cycle)",
        ctl(p, e3, EPOLL_CTL_ADD, e1, IN, 5),
    );
    close_all(p, &[e1, e2, e3]);
}

/// Builds a chain of epoll instances, `ep[i]` watched by `ep[i + 1]`, the innermost watching a
/// socket, and reports at which link Linux refuses with `ELOOP`: a chain holds at most 5 epoll
/// instances, whichever end it is built from; the refused link leaves two separate chains, and
/// the links after it succeed.
fn chain<P: Poller>(p: &P, log: &mut Log, top_down: bool) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let eps: Vec<Fd> = (0..8).map(|_| epoll(p)).collect();
    log.ok("socket in ep0", ctl(p, eps[0], EPOLL_CTL_ADD, b, IN, 0));
    let order: Vec<usize> = if top_down {
        (0..7).rev().collect()
    } else {
        (0..7).collect()
    };
    let mut results = Vec::new();
    for i in order {
        let r = ctl(p, eps[i + 1], EPOLL_CTL_ADD, eps[i], IN, i as u64);
        results.push((format!("ep{i} in ep{}", i + 1), res(&r).map_err(errno_name)));
    }
    let expected: Vec<_> = if top_down {
        (0..7)
            .rev()
            .map(|i| {
                let r = if i != 2 {
                    Ok(())
                } else {
                    Err(errno_name(ELOOP))
                };
                (format!("ep{i} in ep{}", i + 1), r)
            })
            .collect()
    } else {
        (0..7)
            .map(|i| {
                let r = if i != 4 {
                    Ok(())
                } else {
                    Err(errno_name(ELOOP))
                };
                (format!("ep{i} in ep{}", i + 1), r)
            })
            .collect()
    };
    log.expect("chain", results, expected);
    close_all(p, &eps);
    close_all(p, &[a, b]);
}

pub fn ctl_eloop_depth_bottom_up<P: Poller>(p: &P, log: &mut Log) {
    chain(p, log, false);
}

pub fn ctl_eloop_depth_top_down<P: Poller>(p: &P, log: &mut Log) {
    chain(p, log, true);
}

/// Flag checks come before the registration lookup: a bad `ADD` of a registered fd is `EINVAL`.
pub fn ctl_flag_check_before_eexist<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, a, IN, 0));
    log.err(
        "ADD again with EXCLUSIVE|ONESHOT",
        ctl(p, ep, EPOLL_CTL_ADD, a, IN | EXCLUSIVE | ONESHOT, 0),
        EINVAL,
    );
    log.err(
        "MOD unregistered with EXCLUSIVE",
        ctl(p, ep, EPOLL_CTL_MOD, b, IN | EXCLUSIVE, 0),
        EINVAL,
    );
    close_all(p, &[ep, a, b]);
}

pub fn wait_errors<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    let mut none: [EpollEvent; 0] = [];
    let mut one = [EpollEvent::EMPTY; 1];
    log.err("empty buffer", p.epoll_wait(ep, &mut none, 0), EINVAL);
    log.err("not an epoll fd", p.epoll_wait(a, &mut one, 0), EINVAL);
    log.err("bad fd", p.epoll_wait(BAD_FD, &mut one, 0), EBADF);
    // Not checked: `epoll_wait(bad fd, maxevents 0)` is EINVAL on older kernels (maxevents
    // checked first) and EBADF on 6.18 (the fd first): kernel-version dependent.
    log.expect(
        "empty epoll, timeout 0",
        val(&p.epoll_wait(ep, &mut one, 0)),
        Ok(0),
    );
    close_all(p, &[ep, a, b]);
}

pub fn constructor_bad_flags<P: Poller>(p: &P, log: &mut Log) {
    log.err("epoll_create1(1)", p.epoll_create1(1), EINVAL);
    log.err(
        "epoll_create1(O_NONBLOCK)",
        p.epoll_create1(O_NONBLOCK),
        EINVAL,
    );
    log.err("eventfd flags 2", p.eventfd(0, 2), EINVAL);
    log.err("pipe2 O_WRONLY", p.pipe2(1), EINVAL);
    let ep = log.ok(
        "epoll_create1(EPOLL_CLOEXEC)",
        p.epoll_create1(EPOLL_CLOEXEC),
    );
    let ep0 = log.ok("epoll_create1(0)", p.epoll_create1(0));
    let e = log.ok(
        "eventfd all flags",
        p.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC | EFD_SEMAPHORE),
    );
    let [a, b] = log.ok(
        "socketpair all flags",
        p.socketpair(SOCK_NONBLOCK | SOCK_CLOEXEC),
    );
    let [r, w] = log.ok("pipe2 all flags", p.pipe2(O_NONBLOCK | O_CLOEXEC));
    close_all(p, &[ep, ep0, e, a, b, r, w]);
}

/// Recent Linux (observed on 6.18) looks the descriptor up before checking `maxevents`: a bad fd
/// with an empty buffer is `EBADF`, an epoll fd with an empty buffer `EINVAL`.
pub fn wait_checks_fd_before_maxevents<P: Poller>(p: &P, log: &mut Log) {
    let ep = epoll(p);
    let mut none: [EpollEvent; 0] = [];
    log.err(
        "bad fd, empty buffer",
        p.epoll_wait(BAD_FD, &mut none, 0),
        EBADF,
    );
    log.err(
        "epoll fd, empty buffer",
        p.epoll_wait(ep, &mut none, 0),
        EINVAL,
    );
    close_all(p, &[ep]);
}

/// Interest bits Linux does not know are accepted, and never reported.
pub fn ctl_unknown_bits_accepted<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    let ep = epoll(p);
    let odd = netpoll::Events::from_bits(0x8000 | 0x0400_0000)
        | netpoll::Events::NVAL
        | netpoll::Events::MSG;
    log.ok(
        "ADD IN|unknown bits",
        ctl(p, ep, EPOLL_CTL_ADD, e, IN | odd, 1),
    );
    expect_events(p, log, "IN only", ep, 0, &[(1, IN)]);
    log.ok(
        "MOD OUT|unknown bits",
        ctl(p, ep, EPOLL_CTL_MOD, e, OUT | odd, 2),
    );
    expect_events(p, log, "OUT only", ep, 0, &[(2, OUT)]);
    close_all(p, &[ep, e]);
}

crate::cases! {
    ctl_eexist_enoent,
    ctl_ebadf,
    ctl_einval_self_and_non_epoll,
    ctl_einval_bad_op,
    ctl_efault_no_event,
    ctl_eloop_cycle,
    ctl_eloop_depth_bottom_up,
    ctl_eloop_depth_top_down,
    ctl_flag_check_before_eexist,
    wait_errors,
    constructor_bad_flags,
    wait_checks_fd_before_maxevents,
    ctl_unknown_bits_accepted,
}

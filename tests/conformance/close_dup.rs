//! `close`, `dup` and descriptor reuse: registrations are keyed by (open file, fd number) and die
//! with the open file's last descriptor.

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::Poller;

use crate::harness::*;

pub fn close_removes_registration<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let [c, d] = log.ok("socketpair 2", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.ok("ADD d", ctl(p, ep, EPOLL_CTL_ADD, d, IN, 2));
    log.count("write a", p.write(a, b"x"), Ok(1));
    log.count("write c", p.write(c, b"x"), Ok(1));
    log.ok("close b (queued)", p.close(b));
    expect_events(p, log, "only d", ep, 0, &[(2, IN)]);
    close_all(p, &[ep, a, c, d]);
}

pub fn dup_keeps_registration<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 7));
    let d = log.ok("dup b", p.dup(b));
    log.ok("close b", p.close(b));
    log.count("write a", p.write(a, b"x"), Ok(1));
    expect_events(p, log, "still registered, old data", ep, 0, &[(7, IN)]);
    log.err(
        "MOD via the dup",
        ctl(p, ep, EPOLL_CTL_MOD, d, IN, 9),
        ENOENT,
    );
    log.err(
        "DEL via the dup",
        ctl(p, ep, EPOLL_CTL_DEL, d, IN, 9),
        ENOENT,
    );
    log.ok("ADD the dup", ctl(p, ep, EPOLL_CTL_ADD, d, IN, 8));
    // 7 was requeued (LT) by the last wait, 8 queued by its ADD.
    expect_events(p, log, "both registrations", ep, 0, &[(7, IN), (8, IN)]);
    let mut buf = [0u8; 8];
    log.count("read via the dup", p.read(d, &mut buf), Ok(1));
    expect_no_events(p, log, "drained", ep);
    log.count("write a", p.write(a, b"y"), Ok(1));
    // One wakeup of a file runs its waiters newest registration first (Linux adds each
    // registration's wait-queue entry at the head), so 8 is queued before 7.
    expect_events(
        p,
        log,
        "both again, newest registration first",
        ep,
        0,
        &[(8, IN), (7, IN)],
    );
    log.ok("close the dup: last descriptor", p.close(d));
    expect_no_events(p, log, "both gone", ep);
    close_all(p, &[ep, a]);
}

pub fn dup_registered_twice<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd", p.eventfd(0, EFD_NONBLOCK));
    let d = log.ok("dup", p.dup(e));
    let ep = epoll(p);
    log.ok("ADD e IN", ctl(p, ep, EPOLL_CTL_ADD, e, IN, 1));
    log.ok("ADD dup IN|OUT", ctl(p, ep, EPOLL_CTL_ADD, d, IN | OUT, 2));
    expect_events(p, log, "dup writable", ep, 0, &[(2, OUT)]);
    log.count("write via e", p.write(e, &5u64.to_ne_bytes()), Ok(8));
    let got = wait(p, ep, 8, 0).map(|mut v| {
        v.sort();
        v
    });
    log.expect("both", got, Ok(vec![(1, IN), (2, IN | OUT)]));
    let mut buf = [0u8; 8];
    log.count("read via dup", p.read(d, &mut buf), Ok(8));
    log.expect("counter shared", u64::from_ne_bytes(buf), 5);
    log.ok("DEL e", ctl(p, ep, EPOLL_CTL_DEL, e, NONE, 0));
    expect_events(p, log, "only dup", ep, 0, &[(2, OUT)]);
    close_all(p, &[ep, e, d]);
}

pub fn closed_fd_ebadf<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.ok("close b", p.close(b));
    log.err(
        "DEL closed fd",
        ctl(p, ep, EPOLL_CTL_DEL, b, NONE, 0),
        EBADF,
    );
    log.err("MOD closed fd", ctl(p, ep, EPOLL_CTL_MOD, b, IN, 0), EBADF);
    log.err("ADD closed fd", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 0), EBADF);
    let mut buf = [0u8; 4];
    log.err("read closed", p.read(b, &mut buf), EBADF);
    log.err("write closed", p.write(b, b"x"), EBADF);
    log.err("dup closed", p.dup(b), EBADF);
    log.err("shutdown closed", p.shutdown(b, SHUT_RDWR), EBADF);
    log.err("close twice", p.close(b), EBADF);
    log.ok("close epoll", p.close(ep));
    let mut evs = [netpoll::EpollEvent::EMPTY; 4];
    log.err("wait on closed epoll", p.epoll_wait(ep, &mut evs, 0), EBADF);
    log.err(
        "ctl on closed epoll",
        ctl(p, ep, EPOLL_CTL_ADD, a, IN, 0),
        EBADF,
    );
    close_all(p, &[a]);
}

/// Descriptors are allocated lowest-free (compared relative to each other: the real process has
/// other descriptors open).
pub fn fd_reuse_lowest_free<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let [c, d] = log.ok("socketpair 2", p.socketpair(SOCK_NONBLOCK));
    log.check("socketpair numbers ascend", a < b && b < c && c < d);
    log.expect("consecutive", (b - a, c - b, d - c), (1, 1, 1));
    log.ok("close b", p.close(b));
    let e = log.ok("eventfd", p.eventfd(0, 0));
    log.expect("eventfd reuses b", e - a, b - a);
    log.ok("close a", p.close(a));
    log.ok("close c", p.close(c));
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.expect("pipe reuses a then c", (r - a, w - a), (0, c - a));
    let x = log.ok("dup d", p.dup(d));
    log.expect("dup takes the next number", x - d, 1);
    log.ok("close e", p.close(e));
    let y = log.ok("dup w", p.dup(w));
    log.expect("dup takes the lowest free, below its source", y - a, b - a);
    let ep = epoll(p);
    log.expect("epoll after dups", ep - x, 1);
    log.ok("close r", p.close(r));
    log.ok("close w", p.close(w));
    let [s1, s2] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.expect(
        "socketpair takes the two lowest free",
        (s1 - a, s2 - a),
        (0, c - a),
    );
    close_all(p, &[s1, s2, d, x, y, ep]);
}

pub fn reused_number_not_registered<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.count("write a", p.write(a, b"x"), Ok(1));
    log.ok("close b", p.close(b));
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    log.expect("same number", e - a, b - a);
    expect_no_events(p, log, "the new file is not registered", ep);
    log.err("MOD", ctl(p, ep, EPOLL_CTL_MOD, e, IN, 2), ENOENT);
    log.ok("ADD", ctl(p, ep, EPOLL_CTL_ADD, e, IN, 2));
    expect_events(p, log, "new registration", ep, 0, &[(2, IN)]);
    close_all(p, &[ep, a, e]);
}

/// A registration whose fd number was closed (the file kept alive by a dup) blocks nothing: the
/// number can be reused and registered again, and both registrations report.
pub fn stale_registration_and_reused_number<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    let d = log.ok("dup b", p.dup(b));
    log.ok("close b", p.close(b));
    let e = log.ok("eventfd(1)", p.eventfd(1, EFD_NONBLOCK));
    log.expect("eventfd takes b's number", e - a, b - a);
    log.ok(
        "ADD the eventfd under b's number",
        ctl(p, ep, EPOLL_CTL_ADD, e, IN, 2),
    );
    log.count("write a", p.write(a, b"x"), Ok(1));
    let got = wait(p, ep, 8, 0).map(|mut v| {
        v.sort();
        v
    });
    log.expect("both", got, Ok(vec![(1, IN), (2, IN)]));
    log.ok(
        "DEL by number: the eventfd's",
        ctl(p, ep, EPOLL_CTL_DEL, e, NONE, 0),
    );
    expect_events(p, log, "the stale one stays", ep, 0, &[(1, IN)]);
    close_all(p, &[ep, a, d, e]);
}

pub fn nonblock_shared_by_dup<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("blocking socketpair", p.socketpair(0));
    let d = log.ok("dup b", p.dup(b));
    log.ok("dup non-blocking", p.set_nonblocking(d, true));
    let mut buf = [0u8; 4];
    log.err(
        "read the original: O_NONBLOCK is shared",
        p.read(b, &mut buf),
        EAGAIN,
    );
    log.ok("original blocking again", p.set_nonblocking(b, false));
    log.count("write", p.write(a, b"x"), Ok(1));
    log.count("blocking read with data", p.read(d, &mut buf), Ok(1));
    close_all(p, &[a, b, d]);
}

pub fn close_epoll_keeps_files<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN, 1));
    log.ok("close epoll", p.close(ep));
    log.count("write", p.write(a, b"x"), Ok(1));
    let ep2 = epoll(p);
    log.ok("ADD b to a new epoll", ctl(p, ep2, EPOLL_CTL_ADD, b, IN, 2));
    expect_events(p, log, "new epoll", ep2, 0, &[(2, IN)]);
    close_all(p, &[ep2, a, b]);
}

/// The peer hears of a close only when the last descriptor of the file goes; `shutdown` acts on
/// the file, through any descriptor.
pub fn last_close_hangs_up<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD r", ctl(p, ep, EPOLL_CTL_ADD, r, IN, 1));
    log.ok("ADD b", ctl(p, ep, EPOLL_CTL_ADD, b, IN | RDHUP, 2));
    let w2 = log.ok("dup w", p.dup(w));
    let a2 = log.ok("dup a", p.dup(a));
    log.ok("close w", p.close(w));
    log.ok("close a", p.close(a));
    expect_no_events(p, log, "dups keep the files open", ep);
    log.ok("shutdown the dup of a (WR)", p.shutdown(a2, SHUT_WR));
    expect_events(
        p,
        log,
        "shutdown acts on the file",
        ep,
        0,
        &[(2, IN | RDHUP)],
    );
    log.ok("close the dup of w", p.close(w2));
    log.ok("close the dup of a", p.close(a2));
    let got = wait(p, ep, 8, 0).map(|mut v| {
        v.sort();
        v
    });
    log.expect(
        "now both hang up",
        got,
        Ok(vec![(1, HUP), (2, IN | HUP | RDHUP)]),
    );
    close_all(p, &[ep, r, b]);
}

crate::cases! {
    close_removes_registration,
    dup_keeps_registration,
    dup_registered_twice,
    nonblock_shared_by_dup,
    close_epoll_keeps_files,
    last_close_hangs_up,
}

crate::exclusive_cases! {
    closed_fd_ebadf,
    fd_reuse_lowest_free,
    reused_number_not_registered,
    stale_registration_and_reused_number,
}

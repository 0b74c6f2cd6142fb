//! Exact poll masks with every readiness bit asked for (`*NORM`, `*BAND`, `PRI` included), per
//! object type and state: what `epoll_wait` reports is the file's poll mask under the interest.

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::*;
use netpoll::{Events, Poller};

use crate::harness::*;

/// Every bit a file can report.
const EVERY: Events = Events::IN
    .union(Events::PRI)
    .union(Events::OUT)
    .union(Events::RDNORM)
    .union(Events::RDBAND)
    .union(Events::WRNORM)
    .union(Events::WRBAND)
    .union(Events::MSG)
    .union(Events::RDHUP);

const RDNORM: Events = Events::RDNORM;
const WRNORM: Events = Events::WRNORM;
const WRBAND: Events = Events::WRBAND;
const T: u64 = 10_000;

pub fn masks_socketpair<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.expect("idle", poll_now(p, b, EVERY), OUT | WRNORM | WRBAND);
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect(
        "readable",
        poll_now(p, b, EVERY),
        IN | RDNORM | OUT | WRNORM | WRBAND,
    );
    log.ok("a SHUT_WR", p.shutdown(a, SHUT_WR));
    log.expect(
        "peer shut down writing",
        poll_now(p, b, EVERY),
        IN | RDNORM | OUT | WRNORM | WRBAND | RDHUP,
    );
    log.expect("a itself", poll_now(p, a, EVERY), OUT | WRNORM | WRBAND);
    log.ok("close a", p.close(a));
    log.expect(
        "peer closed",
        poll_now(p, b, EVERY),
        IN | RDNORM | OUT | WRNORM | WRBAND | RDHUP | HUP,
    );
    close_all(p, &[b]);
}

pub fn masks_pipe<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.expect("read end, empty", poll_now(p, r, EVERY), NONE);
    log.expect("write end, empty", poll_now(p, w, EVERY), OUT | WRNORM);
    log.count("write", p.write(w, b"x"), Ok(1));
    log.expect("read end, data", poll_now(p, r, EVERY), IN | RDNORM);
    log.ok("close w", p.close(w));
    log.expect(
        "read end, data, no writer",
        poll_now(p, r, EVERY),
        IN | RDNORM | HUP,
    );
    let [r2, w2] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.ok("close r2", p.close(r2));
    log.expect(
        "write end, no reader",
        poll_now(p, w2, EVERY),
        OUT | WRNORM | ERR,
    );
    close_all(p, &[r, w2]);
}

pub fn masks_eventfd_and_epoll<P: Poller>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd(0)", p.eventfd(0, EFD_NONBLOCK));
    log.expect("eventfd 0", poll_now(p, e, EVERY), OUT);
    log.count("write", p.write(e, &1u64.to_ne_bytes()), Ok(8));
    log.expect("eventfd 1", poll_now(p, e, EVERY), IN | OUT);
    let ep = epoll(p);
    log.expect("empty epoll", poll_now(p, ep, EVERY), NONE);
    log.ok("ADD eventfd", ctl(p, ep, EPOLL_CTL_ADD, e, IN, 1));
    log.expect(
        "epoll with a ready item",
        poll_now(p, ep, EVERY),
        IN | RDNORM,
    );
    close_all(p, &[ep, e]);
}

pub fn masks_tcp<P: Poller>(p: &P, log: &mut Log) {
    let t = log.ok("fresh", p.tcp_socket(SOCK_NONBLOCK));
    log.expect("fresh socket", poll_now(p, t, EVERY), OUT | WRNORM | HUP);
    let l = tcp_listener(p);
    log.expect("idle listener", poll_now(p, l, EVERY), NONE);
    let addr = p.local_addr(l).unwrap();
    let c = log.ok("client", p.tcp_socket(SOCK_NONBLOCK));
    let _ = p.connect(c, addr);
    log.expect("listener, pending", wait_for(p, l, IN, T), IN);
    log.expect(
        "listener, pending, every bit",
        poll_now(p, l, EVERY),
        IN | RDNORM,
    );
    let (s, _) = log.ok("accept", p.accept4(l, SOCK_NONBLOCK));
    log.expect("client connected", wait_for(p, c, OUT, T), OUT);
    log.expect("connected, idle", poll_now(p, c, EVERY), OUT | WRNORM);
    log.count("write", p.write(c, b"x"), Ok(1));
    wait_for(p, s, IN, T);
    log.expect(
        "readable",
        poll_now(p, s, EVERY),
        IN | RDNORM | OUT | WRNORM,
    );
    log.ok("client SHUT_WR", p.shutdown(c, SHUT_WR));
    wait_for(p, s, RDHUP, T);
    log.expect(
        "FIN",
        poll_now(p, s, EVERY),
        IN | RDNORM | OUT | WRNORM | RDHUP,
    );
    log.expect("client after SHUT_WR", poll_now(p, c, EVERY), OUT | WRNORM);
    log.ok("SO_LINGER 0", p.set_linger(s, Some(0)));
    log.ok("server closes: RST", p.close(s));
    wait_for(p, c, ERR, T);
    log.expect(
        "reset",
        poll_now(p, c, EVERY),
        IN | RDNORM | OUT | WRNORM | RDHUP | HUP | ERR,
    );
    let hold = log.ok("placeholder", p.tcp_socket(SOCK_NONBLOCK));
    log.ok(
        "bind",
        p.bind(hold, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
    );
    log.expect(
        "bound, not listening",
        poll_now(p, hold, EVERY),
        OUT | WRNORM | HUP,
    );
    close_all(p, &[t, l, c, hold]);
}

crate::cases! {
    masks_socketpair,
    masks_pipe,
    masks_eventfd_and_epoll,
    masks_tcp,
}

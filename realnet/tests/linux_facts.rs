//! Probes of what Linux really does, in the corner cases the simulated kernel must copy.
//!
//! Each test asserts what was observed on the development machine (kernel 6.18, x86_64,
//! default sysctls: `net.core.wmem_default = 212992`, `tcp_wmem = 4096 16384 4194304`,
//! `tcp_rmem = 4096 131072 33554432`). `LINUX_FACTS.md` lists the facts with their tests.
//! Loopback only; no sleeps: waiting for TCP delivery is an `epoll_wait` with a timeout.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use netpoll::sys::{errno, *};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_realnet::RealNet;

const LOOPBACK: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
const NB: i32 = SOCK_NONBLOCK;
/// How long to wait for something that should happen (TCP delivery on loopback).
const SOON_MS: i32 = 2000;
/// How long to wait for something that should *not* happen, on TCP.
const NEVER_MS: i32 = 100;

const IN: Events = Events::IN;
const OUT: Events = Events::OUT;
const ERR: Events = Events::ERR;
const HUP: Events = Events::HUP;
const RDHUP: Events = Events::RDHUP;
const ET: Events = Events::ET;
const ALL: Events = Events::IN.union(Events::OUT).union(Events::RDHUP);

/// Tests here hold this lock for their whole run: some facts are about descriptor numbers
/// (lowest free, reuse after close), which threads running other tests would disturb.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error").raw_os_error().unwrap()
}

fn ev(events: Events, data: u64) -> Option<EpollEvent> {
    Some(EpollEvent::new(events, data))
}

/// All events one `epoll_wait(maxevents = 16)` returns.
fn wait(p: &RealNet, ep: Fd, timeout_ms: i32) -> Vec<EpollEvent> {
    let mut evs = [EpollEvent::EMPTY; 16];
    let n = p.epoll_wait(ep, &mut evs, timeout_ms).unwrap();
    evs[..n].to_vec()
}

/// What a fresh level-triggered registration of `fd` for `interest` reports within
/// `timeout_ms` (`NONE` if nothing).
fn wait_mask(p: &RealNet, fd: Fd, interest: Events, timeout_ms: i32) -> Events {
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev(interest, 0)).unwrap();
    let got = wait(p, ep, timeout_ms);
    p.close(ep).unwrap();
    got.first().map_or(Events::NONE, |e| e.events)
}

/// The readiness of `fd` right now, as a level-triggered registration for `interest` sees it.
fn mask(p: &RealNet, fd: Fd, interest: Events) -> Events {
    wait_mask(p, fd, interest, 0)
}

/// Writes `chunk`-byte writes into `fd` until `EAGAIN`; returns the bytes taken.
fn fill(p: &RealNet, fd: Fd, chunk: usize) -> usize {
    let buf = vec![0x55u8; chunk];
    let mut total = 0;
    loop {
        match p.write(fd, &buf) {
            Ok(n) => total += n,
            Err(e) if e.raw_os_error() == Some(errno::EAGAIN) => return total,
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Reads `fd` until `EAGAIN` or EOF; returns the bytes read.
fn drain(p: &RealNet, fd: Fd) -> usize {
    let mut buf = vec![0u8; 65536];
    let mut total = 0;
    loop {
        match p.read(fd, &mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.raw_os_error() == Some(errno::EAGAIN) => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn sockopt_int(fd: Fd, level: i32, name: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a live `c_int` and `len` is its size.
    let res = unsafe { libc::getsockopt(fd, level, name, (&raw mut v).cast(), &mut len) };
    assert_eq!(res, 0, "getsockopt");
    v
}

/// A connected loopback TCP pair `(client, server)`, both non-blocking, plus the listener.
fn tcp_pair(p: &RealNet) -> (Fd, Fd, Fd) {
    let l = p.tcp_socket(NB).unwrap();
    p.bind(l, LOOPBACK).unwrap();
    p.listen(l, 8).unwrap();
    let addr = p.local_addr(l).unwrap();
    let c = p.tcp_socket(NB).unwrap();
    let _ = p.connect(c, addr);
    assert!(
        wait_mask(p, l, IN, SOON_MS).contains(IN),
        "no connection queued"
    );
    let (s, _) = p.accept4(l, NB).unwrap();
    assert!(
        wait_mask(p, c, OUT, SOON_MS).contains(OUT),
        "client not connected"
    );
    (c, s, l)
}

// ---------------------------------------------------------------------------------------------
// 1. Edge-triggered: does every write wake, even with data unread?

/// Registers `rd` for `IN | ET`, writes twice into `wr` without reading: how many events?
fn et_events_per_write(p: &RealNet, rd: Fd, wr: Fd, msg: &[u8], timeout_ms: i32) -> [usize; 3] {
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, rd, ev(IN | ET, 1)).unwrap();
    let before = wait(p, ep, 0).len();
    p.write(wr, msg).unwrap();
    let first = wait(p, ep, SOON_MS).len();
    p.write(wr, msg).unwrap();
    let second = wait(p, ep, timeout_ms).len();
    // And with no new write, nothing more.
    assert_eq!(wait(p, ep, 0).len(), 0);
    p.close(ep).unwrap();
    [before, first, second]
}

#[test]
fn f1_et_every_write_wakes_socketpair() {
    let _serial = serial();
    let p = RealNet::new();
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(et_events_per_write(&p, b, a, b"x", 0), [0, 1, 1]);
}

#[test]
fn f1_et_every_write_wakes_pipe() {
    let _serial = serial();
    let p = RealNet::new();
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    assert_eq!(et_events_per_write(&p, r, w, b"x", 0), [0, 1, 1]);
}

#[test]
fn f1_et_every_write_wakes_eventfd() {
    let _serial = serial();
    let p = RealNet::new();
    let e = p.eventfd(0, EFD_NONBLOCK).unwrap();
    assert_eq!(
        et_events_per_write(&p, e, e, &1u64.to_ne_bytes(), 0),
        [0, 1, 1]
    );
}

#[test]
fn f1_et_every_write_wakes_tcp() {
    let _serial = serial();
    let p = RealNet::new();
    let (c, s, _l) = tcp_pair(&p);
    assert_eq!(et_events_per_write(&p, s, c, b"x", SOON_MS), [0, 1, 1]);
}

// ---------------------------------------------------------------------------------------------
// 2. Write space: capacities, and when EPOLLOUT comes back.

/// Fills `wr` with `chunk`-byte writes (registered `OUT | ET` first), then reads `rd` `step`
/// bytes at a time. Returns (bytes written, bytes read when the ET `OUT` event came, bytes read
/// when the level `OUT` mask came back).
fn out_threshold(p: &RealNet, wr: Fd, rd: Fd, chunk: usize, step: usize, tcp: bool) -> [usize; 3] {
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, wr, ev(OUT | ET, 1)).unwrap();
    assert_eq!(wait(p, ep, 0).len(), 1, "ADD reports a writable fd at once");
    let written = fill(p, wr, chunk);
    // On TCP loopback, more room may appear while segments move to the peer: refill.
    let mut written = written;
    if tcp {
        while !wait(p, ep, NEVER_MS).is_empty() {
            written += fill(p, wr, chunk);
        }
    }
    assert_eq!(wait(p, ep, 0).len(), 0, "no OUT while full");
    assert!(!mask(p, wr, OUT).contains(OUT));
    let mut buf = vec![0u8; step];
    let mut read = 0;
    let (mut et_at, mut lt_at) = (None, None);
    while read < written && (et_at.is_none() || lt_at.is_none()) {
        match p.read(rd, &mut buf) {
            Ok(n) => read += n,
            Err(e) if e.raw_os_error() == Some(errno::EAGAIN) => {
                assert!(tcp, "EAGAIN on a local socket with data");
                assert!(!wait_mask(p, rd, IN, SOON_MS).is_empty());
                continue;
            }
            Err(e) => panic!("{e}"),
        }
        if et_at.is_none() && !wait(p, ep, 0).is_empty() {
            et_at = Some(read);
        }
        if lt_at.is_none() && mask(p, wr, OUT).contains(OUT) {
            lt_at = Some(read);
        }
    }
    p.close(ep).unwrap();
    [
        written,
        et_at.unwrap_or(usize::MAX),
        lt_at.unwrap_or(usize::MAX),
    ]
}

#[test]
fn f2_socketpair_write_space() {
    let _serial = serial();
    let p = RealNet::new();
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(sockopt_int(a, libc::SOL_SOCKET, libc::SO_SNDBUF), 212_992);
    assert_eq!(sockopt_int(b, libc::SOL_SOCKET, libc::SO_RCVBUF), 212_992);
    // [written until EAGAIN, bytes read when ET OUT came, bytes read when LT OUT came back].
    // Big writes are cut into skbs of 36544 bytes: 6 fit. OUT returns when one is left.
    assert_eq!(
        out_threshold(&p, a, b, 1 << 20, 1, false),
        [219_264, 182_720, 182_720]
    );
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(
        out_threshold(&p, a, b, 1 << 20, 4096, false),
        [219_264, 184_320, 184_320]
    );
    // 1-byte writes: one skb each, charged 768 bytes: 278 fit; OUT when 69 are left.
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(out_threshold(&p, a, b, 1, 1, false), [278, 209, 209]);
    // 1000-byte writes: charged 2304 each: 93 fit; OUT when 23 are left.
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(
        out_threshold(&p, a, b, 1000, 1, false),
        [93_000, 70_000, 70_000]
    );
}

#[test]
fn f2_pipe_write_space() {
    let _serial = serial();
    let p = RealNet::new();
    for (chunk, expect) in [
        (1 << 20, [65_536, 4096, 4096]),
        (1, [65_536, 4096, 4096]),
        (100, [64_000, 4000, 4000]),
        (5000, [54_096, 4096, 4096]),
    ] {
        let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
        assert_eq!(
            out_threshold(&p, w, r, chunk, 1, false),
            expect,
            "chunk {chunk}"
        );
    }
}

#[test]
fn f2_tcp_write_space() {
    let _serial = serial();
    let p = RealNet::new();
    let (c, s, _l) = tcp_pair(&p);
    let sndbuf = sockopt_int(c, libc::SOL_SOCKET, libc::SO_SNDBUF);
    assert_eq!(sockopt_int(s, libc::SOL_SOCKET, libc::SO_RCVBUF), 131_072);
    let [written, et_at, lt_at] = out_threshold(&p, c, s, 1 << 20, 1024, true);
    let sndbuf2 = sockopt_int(c, libc::SOL_SOCKET, libc::SO_SNDBUF);
    eprintln!("tcp: SO_SNDBUF {sndbuf} -> {sndbuf2}; written {written}, OUT after {et_at}/{lt_at}");
    // Observed: SO_SNDBUF 3939840 -> 4194304, 3919467 written, OUT after reading 1148901.
    assert!(sndbuf > 1 << 20 && sndbuf2 <= 4_194_304);
    assert!(written > 3_000_000 && written < 5_000_000);
    assert_eq!(et_at, lt_at);
    assert!(et_at > written / 8 && et_at < written / 2);
}

/// After the first ET `OUT` event from a full writer, does each further freeing read wake again?
/// Returns the ET events seen after each of `reads` further reads of `step` bytes.
fn out_rewakes(p: &RealNet, wr: Fd, rd: Fd, chunk: usize, step: usize, reads: usize) -> Vec<usize> {
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, wr, ev(OUT | ET, 1)).unwrap();
    wait(p, ep, 0);
    fill(p, wr, chunk);
    let mut buf = vec![0u8; step];
    while wait(p, ep, 0).is_empty() {
        p.read(rd, &mut buf).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..reads {
        p.read(rd, &mut buf).unwrap();
        seen.push(wait(p, ep, 0).len());
    }
    p.close(ep).unwrap();
    seen
}

#[test]
fn f2_et_out_rewakes() {
    let _serial = serial();
    let p = RealNet::new();
    // Socketpair: every skb freed while writable wakes again.
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(out_rewakes(&p, a, b, 1, 1, 5), [1, 1, 1, 1, 1]);
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(
        out_rewakes(&p, a, b, 1 << 20, 4096, 9),
        [0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    // Pipe: only the full -> not full transition wakes.
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    assert_eq!(out_rewakes(&p, w, r, 1 << 20, 4096, 5), [0; 5]);
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    assert_eq!(out_rewakes(&p, w, r, 1 << 20, 1, 5), [0; 5]);
    // A write by the writer itself does not wake its OUT | ET; the peer consuming it does.
    let [a, b] = p.socketpair(NB).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, a, ev(OUT | ET, 1)).unwrap();
    let w0 = wait(&p, ep, 0).len();
    p.write(a, b"x").unwrap();
    let w1 = wait(&p, ep, 0).len();
    let mut one = [0u8; 1];
    p.read(b, &mut one).unwrap();
    let w2 = wait(&p, ep, 0).len();
    assert_eq!([w0, w1, w2], [1, 0, 1]);
}

// ---------------------------------------------------------------------------------------------
// 3. Event masks, registered level-triggered for IN | OUT | RDHUP.

#[test]
fn f3_masks_socketpair() {
    let _serial = serial();
    let p = RealNet::new();
    let [a, b] = p.socketpair(NB).unwrap();
    assert_eq!(mask(&p, b, ALL), OUT);
    p.write(a, b"x").unwrap();
    assert_eq!(mask(&p, b, ALL), IN | OUT);
    // Only the bits asked for (plus ERR | HUP) are reported: *NORM only when asked.
    let norm = Events::RDNORM | Events::WRNORM;
    assert_eq!(mask(&p, b, ALL | norm), IN | OUT | norm);
    p.shutdown(a, SHUT_WR).unwrap();
    assert_eq!(mask(&p, b, ALL), IN | OUT | RDHUP);
    assert_eq!(mask(&p, a, ALL), OUT, "the half-closed writer");
    p.close(a).unwrap();
    assert_eq!(mask(&p, b, ALL), IN | OUT | RDHUP | HUP);
    assert_eq!(mask(&p, b, Events::NONE), HUP);
    drain(&p, b);
    assert_eq!(
        mask(&p, b, ALL),
        IN | OUT | RDHUP | HUP,
        "EOF stays readable"
    );
    assert_eq!(errno_of(p.write(b, b"x")), errno::EPIPE);

    let [a, b] = p.socketpair(NB).unwrap();
    p.shutdown(b, SHUT_RDWR).unwrap();
    assert_eq!(mask(&p, b, ALL), IN | OUT | RDHUP | HUP);
    assert_eq!(mask(&p, a, ALL), IN | OUT | RDHUP | HUP, "and its peer");
    let [a, b] = p.socketpair(NB).unwrap();
    p.shutdown(b, SHUT_RD).unwrap();
    assert_eq!(mask(&p, b, ALL), IN | OUT | RDHUP);
    assert_eq!(mask(&p, a, ALL), OUT);
    let [a, b] = p.socketpair(NB).unwrap();
    p.shutdown(b, SHUT_WR).unwrap();
    assert_eq!(mask(&p, b, ALL), OUT);
    assert_eq!(mask(&p, a, ALL), IN | OUT | RDHUP);
}

#[test]
fn f3_masks_pipe() {
    let _serial = serial();
    let p = RealNet::new();
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    assert_eq!(mask(&p, r, ALL), Events::NONE);
    assert_eq!(mask(&p, w, ALL), OUT);
    p.write(w, b"x").unwrap();
    assert_eq!(mask(&p, r, ALL), IN);
    p.close(w).unwrap();
    assert_eq!(mask(&p, r, ALL), IN | HUP);
    drain(&p, r);
    assert_eq!(mask(&p, r, ALL), HUP, "EOF on a pipe is HUP without IN");
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    p.close(r).unwrap();
    assert_eq!(mask(&p, w, ALL), OUT | ERR);
    assert_eq!(mask(&p, w, Events::NONE), ERR);
    assert_eq!(errno_of(p.write(w, b"x")), errno::EPIPE);
}

fn res<T>(r: std::io::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.raw_os_error().unwrap())
}

#[test]
fn f3_masks_tcp() {
    let _serial = serial();
    let p = RealNet::new();
    let mut buf = [0u8; 16];
    // A fresh, unconnected TCP socket reports OUT | HUP; a listener with nothing queued, nothing.
    let fresh = p.tcp_socket(NB).unwrap();
    assert_eq!(mask(&p, fresh, ALL), OUT | HUP);
    let (c, s, l) = tcp_pair(&p);
    assert_eq!(mask(&p, l, ALL), Events::NONE);
    assert_eq!(mask(&p, s, ALL), OUT);
    p.write(c, b"x").unwrap();
    assert_eq!(wait_mask(&p, s, IN, SOON_MS), IN);
    assert_eq!(mask(&p, s, ALL), IN | OUT);
    drain(&p, s);
    // Local SHUT_WR: still just OUT; the peer sees IN | OUT | RDHUP.
    p.shutdown(s, SHUT_WR).unwrap();
    assert_eq!(mask(&p, s, ALL), OUT);
    assert_eq!(wait_mask(&p, c, RDHUP, SOON_MS), RDHUP);
    assert_eq!(mask(&p, c, ALL), IN | OUT | RDHUP);
    assert_eq!(p.read(c, &mut buf).unwrap(), 0);
    assert_eq!(errno_of(p.write(s, b"x")), errno::EPIPE);

    // Peer close (FIN): IN | OUT | RDHUP, no HUP. Writing then draws a RST from the closed peer:
    // ERR | HUP, and the pending error is EPIPE (a reset in CLOSE_WAIT), not ECONNRESET.
    let (c, s, _l) = tcp_pair(&p);
    p.close(c).unwrap();
    assert_eq!(wait_mask(&p, s, RDHUP, SOON_MS), RDHUP);
    assert_eq!(mask(&p, s, ALL), IN | OUT | RDHUP);
    assert_eq!(
        p.write(s, b"x").unwrap(),
        1,
        "the first write after FIN succeeds"
    );
    assert_eq!(wait_mask(&p, s, Events::NONE, SOON_MS), ERR | HUP);
    assert_eq!(mask(&p, s, ALL), IN | OUT | ERR | HUP | RDHUP);
    assert_eq!(res(p.write(s, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.read(s, &mut buf)), Ok(0));

    // Peer reset (SO_LINGER 0 + close): IN | OUT | ERR | HUP | RDHUP; read ECONNRESET once, then 0;
    // writes EPIPE after that.
    let (c, s, _l) = tcp_pair(&p);
    p.set_linger(c, Some(0)).unwrap();
    p.close(c).unwrap();
    assert_eq!(wait_mask(&p, s, Events::NONE, SOON_MS), ERR | HUP);
    assert_eq!(mask(&p, s, ALL), IN | OUT | ERR | HUP | RDHUP);
    assert_eq!(res(p.read(s, &mut buf)), Err(errno::ECONNRESET));
    assert_eq!(
        mask(&p, s, ALL),
        IN | OUT | HUP | RDHUP,
        "ERR goes with the error"
    );
    assert_eq!(res(p.read(s, &mut buf)), Ok(0));
    assert_eq!(res(p.write(s, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.write(s, b"x")), Err(errno::EPIPE));
    // The pending error goes to whichever call comes first: a write...
    let (c, s, _l) = tcp_pair(&p);
    p.set_linger(c, Some(0)).unwrap();
    p.close(c).unwrap();
    wait_mask(&p, s, Events::NONE, SOON_MS);
    assert_eq!(res(p.write(s, b"x")), Err(errno::ECONNRESET));
    assert_eq!(res(p.write(s, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.read(s, &mut buf)), Ok(0));
    // ... or SO_ERROR, after which reads see plain EOF. Data received before the reset stays
    // readable.
    let (c, s, _l) = tcp_pair(&p);
    p.write(c, b"unread").unwrap();
    assert_eq!(wait_mask(&p, s, IN, SOON_MS), IN);
    p.set_linger(c, Some(0)).unwrap();
    p.close(c).unwrap();
    wait_mask(&p, s, Events::NONE, SOON_MS);
    assert_eq!(p.take_socket_error(s).unwrap(), errno::ECONNRESET);
    assert_eq!(p.take_socket_error(s).unwrap(), 0);
    assert_eq!(mask(&p, s, ALL), IN | OUT | HUP | RDHUP);
    assert_eq!(
        res(p.read(s, &mut buf)),
        Ok(6),
        "unread data survives the reset"
    );
    assert_eq!(res(p.read(s, &mut buf)), Ok(0));
    // Without SO_ERROR: the data first, then ECONNRESET, then EOF.
    let (c, s, _l) = tcp_pair(&p);
    p.write(c, b"unread").unwrap();
    assert_eq!(wait_mask(&p, s, IN, SOON_MS), IN);
    p.set_linger(c, Some(0)).unwrap();
    p.close(c).unwrap();
    wait_mask(&p, s, Events::NONE, SOON_MS);
    assert_eq!(res(p.read(s, &mut buf)), Ok(6));
    assert_eq!(res(p.read(s, &mut buf)), Err(errno::ECONNRESET));
    assert_eq!(res(p.read(s, &mut buf)), Ok(0));

    // Own SHUT_RDWR and SHUT_RD.
    let (_c, s, _l) = tcp_pair(&p);
    p.shutdown(s, SHUT_RDWR).unwrap();
    assert_eq!(mask(&p, s, ALL), IN | OUT | HUP | RDHUP);
    let (_c, s, _l) = tcp_pair(&p);
    p.shutdown(s, SHUT_RD).unwrap();
    assert_eq!(mask(&p, s, ALL), IN | OUT | RDHUP);
}

// ---------------------------------------------------------------------------------------------
// 4. Non-blocking connect on loopback, refused connects, the accept backlog.

/// Loopback delivers in the caller's context: a non-blocking connect to a closed port returns
/// `EINPROGRESS`, yet the refusal is already pending when it returns (no wait needed), 100 times
/// in 100. (A connect to a listener is likewise complete at once.)
#[test]
fn f4_refusal_is_pending_when_connect_returns() {
    let _serial = serial();
    let p = RealNet::new();
    let closed = p.tcp_socket(NB).unwrap();
    p.bind(closed, LOOPBACK).unwrap();
    let caddr = p.local_addr(closed).unwrap();
    for _ in 0..100 {
        let c = p.tcp_socket(NB).unwrap();
        assert_eq!(res(p.connect(c, caddr)), Err(errno::EINPROGRESS));
        assert_eq!(mask(&p, c, ALL), IN | OUT | ERR | HUP | RDHUP);
        assert_eq!(p.take_socket_error(c).unwrap(), errno::ECONNREFUSED);
        p.close(c).unwrap();
    }
    let l = p.tcp_socket(NB).unwrap();
    p.bind(l, LOOPBACK).unwrap();
    p.listen(l, 8).unwrap();
    let c = p.tcp_socket(NB).unwrap();
    assert_eq!(
        res(p.connect(c, p.local_addr(l).unwrap())),
        Err(errno::EINPROGRESS)
    );
    eprintln!("connect to a listener, at once: {:?}", mask(&p, c, ALL));
    for fd in [c, l, closed] {
        p.close(fd).unwrap();
    }
}

#[test]
fn f4_connect_loopback() {
    let _serial = serial();
    let p = RealNet::new();
    let mut buf = [0u8; 4];
    let l = p.tcp_socket(NB).unwrap();
    p.bind(l, LOOPBACK).unwrap();
    p.listen(l, 8).unwrap();
    let addr = p.local_addr(l).unwrap();
    // EINPROGRESS even on loopback; connect again once done: Ok (once), then EISCONN.
    let c = p.tcp_socket(NB).unwrap();
    assert_eq!(res(p.connect(c, addr)), Err(errno::EINPROGRESS));
    assert_eq!(wait_mask(&p, c, OUT, SOON_MS), OUT);
    assert_eq!(res(p.connect(c, addr)), Ok(()));
    assert_eq!(res(p.connect(c, addr)), Err(errno::EISCONN));
    assert_eq!(p.take_socket_error(c).unwrap(), 0);

    // Refused (a port bound but not listening): EINPROGRESS, then ERR | HUP and SO_ERROR.
    let closed = p.tcp_socket(NB).unwrap();
    p.bind(closed, LOOPBACK).unwrap();
    let caddr = p.local_addr(closed).unwrap();
    let c = p.tcp_socket(NB).unwrap();
    assert_eq!(res(p.connect(c, caddr)), Err(errno::EINPROGRESS));
    assert_eq!(wait_mask(&p, c, Events::NONE, SOON_MS), ERR | HUP);
    assert_eq!(mask(&p, c, ALL), IN | OUT | ERR | HUP | RDHUP);
    assert_eq!(p.take_socket_error(c).unwrap(), errno::ECONNREFUSED);
    assert_eq!(mask(&p, c, ALL), IN | OUT | HUP | RDHUP);
    assert_eq!(
        res(p.connect(c, caddr)),
        Err(errno::ECONNABORTED),
        "connect after SO_ERROR"
    );
    // Connect again before taking SO_ERROR: the pending ECONNREFUSED.
    let c = p.tcp_socket(NB).unwrap();
    let _ = p.connect(c, caddr);
    wait_mask(&p, c, Events::NONE, SOON_MS);
    assert_eq!(res(p.connect(c, caddr)), Err(errno::ECONNREFUSED));
    assert_eq!(res(p.read(c, &mut buf)), Err(errno::ENOTCONN));
    // Blocking: ECONNREFUSED straight away.
    let c = p.tcp_socket(0).unwrap();
    assert_eq!(res(p.connect(c, caddr)), Err(errno::ECONNREFUSED));

    // An unconnected TCP socket: read ENOTCONN, write EPIPE (not ENOTCONN).
    let c = p.tcp_socket(NB).unwrap();
    assert_eq!(res(p.read(c, &mut buf)), Err(errno::ENOTCONN));
    assert_eq!(res(p.write(c, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.peer_addr(c)), Err(errno::ENOTCONN));
    assert_eq!(res(p.shutdown(c, SHUT_WR)), Err(errno::ENOTCONN));
    assert_eq!(
        res(p.accept4(c, 0)).map(drop),
        Err(errno::EINVAL),
        "accept, not listening"
    );
    // A listener: read ENOTCONN (not EINVAL), write EPIPE, connect EISCONN.
    assert_eq!(res(p.read(l, &mut buf)), Err(errno::ENOTCONN));
    assert_eq!(res(p.write(l, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.connect(l, addr)), Err(errno::EISCONN));
}

#[test]
fn f4_backlog() {
    let _serial = serial();
    let p = RealNet::new();
    for backlog in [0, 1, 2, 4] {
        let l = p.tcp_socket(NB).unwrap();
        p.bind(l, LOOPBACK).unwrap();
        p.listen(l, backlog).unwrap();
        let addr = p.local_addr(l).unwrap();
        let ep = p.epoll_create1(0).unwrap();
        let n = backlog as usize + 4;
        let mut clients = Vec::new();
        for i in 0..n {
            let c = p.tcp_socket(NB).unwrap();
            let _ = p.connect(c, addr);
            p.epoll_ctl(ep, EPOLL_CTL_ADD, c, ev(OUT | ET, i as u64))
                .unwrap();
            clients.push(c);
        }
        let mut done = std::collections::BTreeSet::new();
        loop {
            let got = wait(&p, ep, 300);
            if got.is_empty() {
                break;
            }
            done.extend(got.iter().map(|e| e.data));
        }
        let mut accepted = 0;
        while p.accept4(l, NB).is_ok() {
            accepted += 1;
        }
        // backlog + 1 connections complete, the first ones; the rest stay in SYN_SENT (mask
        // NONE: their SYN was dropped, the retry comes after 1 s).
        let expect: std::collections::BTreeSet<u64> = (0..=backlog as u64).collect();
        assert_eq!(done, expect, "backlog {backlog}");
        assert_eq!(accepted, backlog + 1);
        for (i, &c) in clients.iter().enumerate() {
            let want = if i <= backlog as usize {
                OUT
            } else {
                Events::NONE
            };
            assert_eq!(mask(&p, c, ALL), want, "backlog {backlog}, client {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Order of ready events, and maxevents truncation.

/// `n` socketpairs; returns the read ends.
fn readers(p: &RealNet, n: usize) -> Vec<(Fd, Fd)> {
    (0..n)
        .map(|_| {
            let [a, b] = p.socketpair(NB).unwrap();
            (a, b)
        })
        .collect()
}

fn wait_max(p: &RealNet, ep: Fd, max: usize) -> Vec<u64> {
    let mut evs = vec![EpollEvent::EMPTY; max];
    let n = p.epoll_wait(ep, &mut evs, 0).unwrap();
    evs[..n].iter().map(|e| e.data).collect()
}

#[test]
fn f5_order_and_truncation() {
    let _serial = serial();
    let p = RealNet::new();
    // A, B, C registered in that order (data 0, 1, 2), ready in order A, B, C.
    let pairs = readers(&p, 3);
    let ep = p.epoll_create1(0).unwrap();
    for (i, &(_, b)) in pairs.iter().enumerate() {
        p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN, i as u64)).unwrap();
    }
    for &(a, _) in &pairs {
        p.write(a, b"x").unwrap();
    }
    // Round robin: what was reported goes to the back, what did not fit stays in front.
    let calls: Vec<_> = (0..4).map(|_| wait_max(&p, ep, 2)).collect();
    assert_eq!(calls, [[0, 1], [2, 0], [1, 2], [0, 1]]);
    // Ready in order C, B, A.
    let pairs = readers(&p, 3);
    let ep = p.epoll_create1(0).unwrap();
    for (i, &(_, b)) in pairs.iter().enumerate() {
        p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN, i as u64)).unwrap();
    }
    for &(a, _) in pairs.iter().rev() {
        p.write(a, b"x").unwrap();
    }
    // Readiness order, not registration order.
    let calls: Vec<_> = (0..4).map(|_| wait_max(&p, ep, 2)).collect();
    assert_eq!(calls, [[2, 1], [0, 2], [1, 0], [2, 1]]);
    let full: Vec<_> = (0..2).map(|_| wait_max(&p, ep, 8)).collect();
    assert_eq!(
        full,
        [[0, 2, 1], [0, 2, 1]],
        "a full report keeps its order"
    );
    // Already ready when added: ADD order.
    let pairs = readers(&p, 3);
    for &(a, _) in pairs.iter().rev() {
        p.write(a, b"x").unwrap();
    }
    let ep = p.epoll_create1(0).unwrap();
    for (i, &(_, b)) in pairs.iter().enumerate() {
        p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN, i as u64)).unwrap();
    }
    let calls: Vec<_> = (0..3).map(|_| wait_max(&p, ep, 2)).collect();
    assert_eq!(
        calls,
        [[0, 1], [2, 0], [1, 2]],
        "ready at ADD: queued in ADD order"
    );
    // ET: same data twice into A while B, C wait.
    let pairs = readers(&p, 3);
    let ep = p.epoll_create1(0).unwrap();
    for (i, &(_, b)) in pairs.iter().enumerate() {
        p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN | ET, i as u64))
            .unwrap();
    }
    for &(a, _) in &pairs {
        p.write(a, b"x").unwrap();
    }
    let first = wait_max(&p, ep, 1);
    p.write(pairs[0].0, b"x").unwrap();
    let rest: Vec<_> = (0..3).map(|_| wait_max(&p, ep, 1)).collect();
    // A reported ET registration leaves the list; its next wakeup queues it at the back.
    assert_eq!(first, [0]);
    assert_eq!(rest, [[1], [2], [0]]);
    // Mixed: a reported LT fd that becomes ready again (new write) while others queued.
    let pairs = readers(&p, 3);
    let ep = p.epoll_create1(0).unwrap();
    for (i, &(_, b)) in pairs.iter().enumerate() {
        p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN, i as u64)).unwrap();
    }
    for &(a, _) in &pairs {
        p.write(a, b"x").unwrap();
    }
    let first = wait_max(&p, ep, 1);
    let mut buf = [0u8; 4];
    p.read(pairs[0].1, &mut buf).unwrap();
    let after_drain: Vec<_> = (0..3).map(|_| wait_max(&p, ep, 1)).collect();
    // A (re-queued at the back) is found not ready when its turn comes: dropped silently,
    // and the call goes on to the next one (B).
    assert_eq!(first, [0]);
    assert_eq!(after_drain, [[1], [2], [1]]);
}

// ---------------------------------------------------------------------------------------------
// 6. dup and close of a registered fd.

#[test]
fn f6_dup_close() {
    let _serial = serial();
    let p = RealNet::new();
    let [a, b] = p.socketpair(NB).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN, 5)).unwrap();
    let d = p.dup(b).unwrap();
    p.close(b).unwrap();
    p.write(a, b"x").unwrap();
    let got = wait(&p, ep, 0);
    let del_closed = res(p.epoll_ctl(ep, EPOLL_CTL_DEL, b, None));
    let del_dup = res(p.epoll_ctl(ep, EPOLL_CTL_DEL, d, None));
    let mod_dup = res(p.epoll_ctl(ep, EPOLL_CTL_MOD, d, ev(IN, 6)));
    let add_dup = res(p.epoll_ctl(ep, EPOLL_CTL_ADD, d, ev(IN, 7)));
    let both = wait(&p, ep, 0);
    // Events keep coming, with the old data; the closed number is EBADF, the dup is not
    // registered (the key is (file, fd number)): ENOENT, and ADD of the dup makes a second
    // registration of the same file, reported separately.
    assert_eq!(got, [EpollEvent::new(IN, 5)]);
    assert_eq!(del_closed, Err(errno::EBADF));
    assert_eq!(del_dup, Err(errno::ENOENT));
    assert_eq!(mod_dup, Err(errno::ENOENT));
    assert_eq!(add_dup, Ok(()));
    assert_eq!(both, [EpollEvent::new(IN, 5), EpollEvent::new(IN, 7)]);
    // The number b reused by a new file (lowest free): a new registration.
    let [x, y] = p.socketpair(NB).unwrap();
    assert_eq!(x, b, "lowest free number");
    let add_new = res(p.epoll_ctl(ep, EPOLL_CTL_ADD, x, ev(IN, 8)));
    p.write(y, b"x").unwrap();
    let evs = wait(&p, ep, 0);
    assert_eq!(
        add_new,
        Ok(()),
        "a new file under a number still registered (old file)"
    );
    let data: Vec<_> = evs.iter().map(|e| e.data).collect();
    assert_eq!(data, [5, 7, 8]);
    // Closing the last fd removes the registration.
    p.close(d).unwrap();
    let evs = wait(&p, ep, 0);
    assert_eq!(evs, [EpollEvent::new(IN, 8)]);
}

// ---------------------------------------------------------------------------------------------
// 7. epoll_ctl / epoll_wait errno matrix.

#[test]
fn f7_epoll_errno_matrix() {
    let _serial = serial();
    use Events as E;
    let p = RealNet::new();
    let ep = p.epoll_create1(0).unwrap();
    let [a, b] = p.socketpair(NB).unwrap();
    let ctl = |op, fd, e: Option<EpollEvent>| res(p.epoll_ctl(ep, op, fd, e));
    assert_eq!(ctl(EPOLL_CTL_ADD, a, ev(IN, 0)), Ok(()));
    assert_eq!(ctl(EPOLL_CTL_ADD, a, ev(IN, 0)), Err(errno::EEXIST));
    assert_eq!(ctl(EPOLL_CTL_MOD, b, ev(IN, 0)), Err(errno::ENOENT));
    assert_eq!(ctl(EPOLL_CTL_DEL, b, None), Err(errno::ENOENT));
    assert_eq!(
        res(p.epoll_ctl(b, EPOLL_CTL_ADD, a, ev(IN, 0))),
        Err(errno::EINVAL),
        "epfd not epoll"
    );
    assert_eq!(
        ctl(EPOLL_CTL_ADD, ep, ev(IN, 0)),
        Err(errno::EINVAL),
        "fd == epfd"
    );
    assert_eq!(ctl(7, b, ev(IN, 0)), Err(errno::EINVAL), "bad op");
    assert_eq!(ctl(0, b, ev(IN, 0)), Err(errno::EINVAL), "op 0");
    assert_eq!(
        res(p.epoll_ctl(-1, EPOLL_CTL_ADD, a, ev(IN, 0))),
        Err(errno::EBADF)
    );
    assert_eq!(ctl(EPOLL_CTL_ADD, 9999, ev(IN, 0)), Err(errno::EBADF));
    // EXCLUSIVE: ADD only, and only with IN/OUT/ERR/HUP/WAKEUP/ET.
    assert_eq!(
        ctl(EPOLL_CTL_MOD, a, ev(IN | E::EXCLUSIVE, 0)),
        Err(errno::EINVAL)
    );
    assert_eq!(
        ctl(EPOLL_CTL_ADD, b, ev(IN | E::EXCLUSIVE | E::ONESHOT, 0)),
        Err(errno::EINVAL)
    );
    assert_eq!(
        ctl(EPOLL_CTL_ADD, b, ev(IN | E::EXCLUSIVE | RDHUP, 0)),
        Err(errno::EINVAL)
    );
    let ok = IN | OUT | ERR | HUP | E::EXCLUSIVE | ET | E::WAKEUP;
    assert_eq!(ctl(EPOLL_CTL_ADD, b, ev(ok, 0)), Ok(()));
    assert_eq!(
        ctl(EPOLL_CTL_MOD, b, ev(IN, 0)),
        Err(errno::EINVAL),
        "MOD of an EXCLUSIVE one"
    );
    assert_eq!(ctl(EPOLL_CTL_DEL, b, None), Ok(()));
    // Files without poll support: EPERM.
    let null = File::open("/dev/null").unwrap();
    assert_eq!(
        ctl(EPOLL_CTL_ADD, null.as_raw_fd(), ev(IN, 0)),
        Err(errno::EPERM)
    );
    let path = std::env::temp_dir().join(format!("netpoll-facts-{}", std::process::id()));
    let tmp = File::create(&path).unwrap();
    let r = ctl(EPOLL_CTL_ADD, tmp.as_raw_fd(), ev(IN, 0));
    drop(tmp);
    let _ = std::fs::remove_file(&path);
    assert_eq!(r, Err(errno::EPERM), "regular file");
    // NULL event: EFAULT for ADD and MOD, fine for DEL.
    assert_eq!(ctl(EPOLL_CTL_ADD, b, None), Err(errno::EFAULT));
    assert_eq!(ctl(EPOLL_CTL_MOD, a, None), Err(errno::EFAULT));
    assert_eq!(ctl(EPOLL_CTL_DEL, a, None), Ok(()));
    // epoll_wait and epoll_create1.
    let one = &mut [EpollEvent::EMPTY];
    assert_eq!(
        res(p.epoll_wait(ep, &mut [], 0)),
        Err(errno::EINVAL),
        "maxevents 0"
    );
    assert_eq!(
        res(p.epoll_wait(a, one, 0)),
        Err(errno::EINVAL),
        "not epoll"
    );
    assert_eq!(res(p.epoll_wait(9999, one, 0)), Err(errno::EBADF));
    assert_eq!(res(p.epoll_create1(1)), Err(errno::EINVAL));
    // Nesting: a cycle is ELOOP; EXCLUSIVE on an epoll target is EINVAL.
    let e1 = p.epoll_create1(0).unwrap();
    let e2 = p.epoll_create1(0).unwrap();
    p.epoll_ctl(e1, EPOLL_CTL_ADD, e2, ev(IN, 0)).unwrap();
    assert_eq!(
        res(p.epoll_ctl(e2, EPOLL_CTL_ADD, e1, ev(IN, 0))),
        Err(errno::ELOOP)
    );
    assert_eq!(
        res(p.epoll_ctl(e2, EPOLL_CTL_ADD, ep, ev(IN | E::EXCLUSIVE, 0))),
        Err(errno::EINVAL)
    );
    // Depth: a chain of 5 epoll instances (4 epoll-in-epoll links) is allowed, a 6th is ELOOP,
    // whether it is added on top or under the bottom, and whatever the bottom one watches.
    for with_socket in [true, false] {
        let mut chain = vec![p.epoll_create1(0).unwrap()];
        if with_socket {
            p.epoll_ctl(chain[0], EPOLL_CTL_ADD, a, ev(IN, 0)).unwrap();
        }
        for _ in 0..4 {
            let outer = p.epoll_create1(0).unwrap();
            p.epoll_ctl(outer, EPOLL_CTL_ADD, *chain.last().unwrap(), ev(IN, 0))
                .unwrap();
            chain.push(outer);
        }
        let top = p.epoll_create1(0).unwrap();
        assert_eq!(
            res(p.epoll_ctl(top, EPOLL_CTL_ADD, chain[4], ev(IN, 0))),
            Err(errno::ELOOP)
        );
        let bottom = p.epoll_create1(0).unwrap();
        assert_eq!(
            res(p.epoll_ctl(chain[0], EPOLL_CTL_ADD, bottom, ev(IN, 0))),
            Err(errno::ELOOP)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 8. eventfd.

#[test]
fn f8_eventfd() {
    let _serial = serial();
    let p = RealNet::new();
    let e = p.eventfd(0, EFD_NONBLOCK).unwrap();
    let mut b8 = [0u8; 8];
    let mut b4 = [0u8; 4];
    assert_eq!(mask(&p, e, ALL), OUT);
    assert_eq!(res(p.read(e, &mut b8)), Err(errno::EAGAIN));
    assert_eq!(res(p.read(e, &mut b4)), Err(errno::EINVAL), "4-byte read");
    assert_eq!(
        res(p.write(e, &[1, 0, 0, 0])),
        Err(errno::EINVAL),
        "4-byte write"
    );
    assert_eq!(
        res(p.write(e, &[0u8; 16])),
        Err(errno::EINVAL),
        "16-byte write: exactly 8"
    );
    assert_eq!(res(p.write(e, &u64::MAX.to_ne_bytes())), Err(errno::EINVAL));
    assert_eq!(
        res(p.write(e, &0u64.to_ne_bytes())),
        Ok(8),
        "adding 0 is fine"
    );
    assert_eq!(mask(&p, e, ALL), OUT, "and does not make it readable");
    // The counter's maximum is u64::MAX - 1: there it is IN without OUT; more is EAGAIN.
    p.write(e, &(u64::MAX - 2).to_ne_bytes()).unwrap();
    assert_eq!(mask(&p, e, ALL), IN | OUT);
    assert_eq!(res(p.write(e, &1u64.to_ne_bytes())), Ok(8));
    assert_eq!(mask(&p, e, ALL), IN);
    assert_eq!(res(p.write(e, &1u64.to_ne_bytes())), Err(errno::EAGAIN));
    assert_eq!(res(p.write(e, &0u64.to_ne_bytes())), Ok(8));
    assert_eq!(
        res(p.read(e, &mut [0u8; 16])),
        Ok(8),
        "reads take 8 bytes or more"
    );
    assert_eq!(mask(&p, e, ALL), OUT);
    // Semaphore: each read takes 1.
    let s = p.eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK).unwrap();
    let got: Vec<_> = (0..4)
        .map(|_| res(p.read(s, &mut b8)).map(|_| u64::from_ne_bytes(b8)))
        .collect();
    assert_eq!(got, [Ok(1), Ok(1), Ok(1), Err(errno::EAGAIN)]);
    assert_eq!(res(p.eventfd(0, 0x10)), Err(errno::EINVAL));
    // ET IN | OUT: a read is a wakeup too (OUT, the counter went down).
    let e = p.eventfd(5, EFD_NONBLOCK).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, e, ev(IN | OUT | ET, 0))
        .unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(IN | OUT, 0)]);
    p.read(e, &mut b8).unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(OUT, 0)]);
    assert_eq!(wait(&p, ep, 0), []);
}

// ---------------------------------------------------------------------------------------------
// 10. Oneshot.

#[test]
fn f10_oneshot() {
    let _serial = serial();
    let p = RealNet::new();
    let [a, b] = p.socketpair(NB).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    let os = Events::ONESHOT;
    p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN | os, 1)).unwrap();
    assert_eq!(wait(&p, ep, 0), []);
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(IN, 1)]);
    // Disarmed: new data, no event.
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, ep, 0), []);
    // MOD re-arms and re-checks at once (new data word reported).
    p.epoll_ctl(ep, EPOLL_CTL_MOD, b, ev(IN | os, 2)).unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(IN, 2)]);
    assert_eq!(wait(&p, ep, 0), []);
    // Armed with nothing pending: the next change is reported.
    drain(&p, b);
    p.epoll_ctl(ep, EPOLL_CTL_MOD, b, ev(IN | os, 3)).unwrap();
    assert_eq!(wait(&p, ep, 0), []);
    p.close(a).unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(IN | HUP, 3)]);
    // A disarmed registration still exists: ADD is EEXIST. MOD with interest 0 still reports
    // HUP (always reported).
    assert_eq!(
        res(p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN, 4))),
        Err(errno::EEXIST)
    );
    p.epoll_ctl(ep, EPOLL_CTL_MOD, b, ev(Events::NONE, 5))
        .unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(HUP, 5)]);

    // ONESHOT | ET: the same, MOD re-arms and reports pending data at once.
    let [a, b] = p.socketpair(NB).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN | ET | os, 9))
        .unwrap();
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(IN, 9)]);
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, ep, 0), []);
    p.epoll_ctl(ep, EPOLL_CTL_MOD, b, ev(IN | ET | os, 9))
        .unwrap();
    assert_eq!(wait(&p, ep, 0), [EpollEvent::new(IN, 9)]);
    assert_eq!(wait(&p, ep, 0), []);
}

// ---------------------------------------------------------------------------------------------
// 9. Errors of read / write / shutdown and friends.

#[test]
fn f9_close_with_unread_data_resets() {
    let _serial = serial();
    let p = RealNet::new();
    let mut buf = [0u8; 8];
    // Socketpair, peer closed with data it never read: the survivor gets ERR, read ECONNRESET
    // once then 0; write EPIPE (and writes do not consume the error: SO_ERROR still says 104).
    let [a, b] = p.socketpair(NB).unwrap();
    p.write(a, b"unread").unwrap();
    p.close(b).unwrap();
    assert_eq!(mask(&p, a, ALL), IN | OUT | ERR | HUP | RDHUP);
    assert_eq!(res(p.read(a, &mut buf)), Err(errno::ECONNRESET));
    assert_eq!(res(p.read(a, &mut buf)), Ok(0));
    assert_eq!(res(p.write(a, b"x")), Err(errno::EPIPE));
    let [a, b] = p.socketpair(NB).unwrap();
    p.write(a, b"unread").unwrap();
    p.close(b).unwrap();
    assert_eq!(res(p.write(a, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.write(a, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.take_socket_error(a)), Ok(errno::ECONNRESET));
    // Clean close: read 0, write EPIPE (even of 0 bytes), no error pending.
    let [a, b] = p.socketpair(NB).unwrap();
    p.close(b).unwrap();
    assert_eq!(res(p.read(a, &mut buf)), Ok(0));
    assert_eq!(res(p.write(a, b"x")), Err(errno::EPIPE));
    assert_eq!(res(p.write(a, b"")), Err(errno::EPIPE));
    assert_eq!(res(p.take_socket_error(a)), Ok(0));
    // TCP: close with unread data sends a RST, not a FIN.
    let (c, s, _l) = tcp_pair(&p);
    p.write(c, b"unread").unwrap();
    assert_eq!(wait_mask(&p, s, IN, SOON_MS), IN);
    p.close(s).unwrap();
    assert_eq!(wait_mask(&p, c, Events::NONE, SOON_MS), ERR | HUP);
    assert_eq!(mask(&p, c, ALL), IN | OUT | ERR | HUP | RDHUP);
    assert_eq!(res(p.read(c, &mut buf)), Err(errno::ECONNRESET));
    assert_eq!(res(p.read(c, &mut buf)), Ok(0));
}

#[test]
fn f9_errno_misc() {
    let _serial = serial();
    let p = RealNet::new();
    let mut buf = [0u8; 8];
    let [a, b] = p.socketpair(NB).unwrap();
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    assert_eq!(
        res(p.read(a, &mut [])),
        Ok(0),
        "0-byte read, nothing buffered: 0, not EAGAIN"
    );
    assert_eq!(res(p.read(r, &mut [])), Ok(0));
    assert_eq!(res(p.write(a, b"")), Ok(0));
    assert_eq!(res(p.write(w, b"")), Ok(0));
    assert_eq!(res(p.write(r, b"x")), Err(errno::EBADF), "pipe read end");
    assert_eq!(
        res(p.read(w, &mut buf)),
        Err(errno::EBADF),
        "pipe write end"
    );
    assert_eq!(res(p.read(ep, &mut buf)), Err(errno::EINVAL));
    assert_eq!(res(p.write(ep, b"x")), Err(errno::EINVAL));
    assert_eq!(res(p.shutdown(r, SHUT_WR)), Err(errno::ENOTSOCK));
    assert_eq!(res(p.shutdown(a, 3)), Err(errno::EINVAL));
    assert_eq!(res(p.shutdown(b, SHUT_WR)), Ok(()));
    assert_eq!(res(p.shutdown(b, SHUT_WR)), Ok(()), "twice is fine");
    // Socket calls on a pipe: ENOTSOCK.
    assert_eq!(res(p.take_socket_error(r)), Err(errno::ENOTSOCK));
    assert_eq!(res(p.set_linger(r, None)), Err(errno::ENOTSOCK));
    assert_eq!(res(p.local_addr(r)), Err(errno::ENOTSOCK));
    assert_eq!(res(p.accept4(r, 0)).map(drop), Err(errno::ENOTSOCK));
    assert_eq!(res(p.listen(r, 1)), Err(errno::ENOTSOCK));
    assert_eq!(res(p.bind(r, LOOPBACK)), Err(errno::ENOTSOCK));
    assert_eq!(res(p.connect(r, LOOPBACK)), Err(errno::ENOTSOCK));
    // TCP calls on a unix socketpair end.
    assert_eq!(res(p.accept4(a, 0)).map(drop), Err(errno::EINVAL));
    assert_eq!(res(p.listen(a, 1)), Err(errno::EINVAL));
    assert_eq!(res(p.bind(a, LOOPBACK)), Err(errno::EINVAL));
    // Closed descriptors.
    p.close(w).unwrap();
    assert_eq!(res(p.close(w)), Err(errno::EBADF));
    assert_eq!(res(p.dup(w)), Err(errno::EBADF));
    assert_eq!(res(p.set_nonblocking(w, true)), Err(errno::EBADF));
    // bind / listen.
    let t = p.tcp_socket(NB).unwrap();
    assert_eq!(
        p.local_addr(t).unwrap(),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
    );
    p.bind(t, LOOPBACK).unwrap();
    let port = p.local_addr(t).unwrap();
    let t2 = p.tcp_socket(NB).unwrap();
    assert_eq!(res(p.bind(t, LOOPBACK)), Err(errno::EINVAL), "bound twice");
    assert_eq!(res(p.bind(t2, port)), Err(errno::EADDRINUSE));
    let far = SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 0);
    assert_eq!(res(p.bind(t2, far)), Err(errno::EADDRNOTAVAIL));
    let t3 = p.tcp_socket(NB).unwrap();
    assert_eq!(
        res(p.listen(t3, 1)),
        Ok(()),
        "listen binds an unbound socket"
    );
    let auto = p.local_addr(t3).unwrap();
    assert_eq!(*auto.ip(), Ipv4Addr::UNSPECIFIED);
    assert_ne!(auto.port(), 0);
    assert_eq!(
        res(p.accept4(t3, 1)).map(drop),
        Err(errno::EINVAL),
        "accept4 bad flags"
    );
    // Flags are OR-ed into the socket type: 1 | SOCK_STREAM is still SOCK_STREAM.
    assert!(p.socketpair(1).is_ok() && p.tcp_socket(1).is_ok());
    assert_eq!(res(p.socketpair(0x100)).map(drop), Err(errno::EINVAL));
    assert_eq!(res(p.tcp_socket(0x100)), Err(errno::EINVAL));
    // connect to 0.0.0.0:port means this host.
    let t4 = p.tcp_socket(NB).unwrap();
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, auto.port());
    assert_eq!(res(p.connect(t4, any)), Err(errno::EINPROGRESS));
    assert_eq!(wait_mask(&p, t4, OUT, SOON_MS), OUT);
    // O_NONBLOCK belongs to the open file: set through a dup, seen through the original.
    let [x, _y] = p.socketpair(0).unwrap();
    let d = p.dup(x).unwrap();
    p.set_nonblocking(d, true).unwrap();
    assert_eq!(res(p.read(x, &mut buf)), Err(errno::EAGAIN));
}

// ---------------------------------------------------------------------------------------------
// 11. Other things worth knowing.

#[test]
fn f11_nested_epoll() {
    let _serial = serial();
    let p = RealNet::new();
    let [a, b] = p.socketpair(NB).unwrap();
    let inner = p.epoll_create1(0).unwrap();
    p.epoll_ctl(inner, EPOLL_CTL_ADD, b, ev(IN, 1)).unwrap();
    let outer = p.epoll_create1(0).unwrap();
    p.epoll_ctl(outer, EPOLL_CTL_ADD, inner, ev(IN | OUT | ET, 2))
        .unwrap();
    assert_eq!(wait(&p, outer, 0), []);
    // An epoll fd is readable (IN, never OUT) while it has ready events; every wakeup of a
    // watched file wakes the outer ET registration again, even if the inner was not drained.
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, outer, 0), [EpollEvent::new(IN, 2)]);
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, outer, 0), [EpollEvent::new(IN, 2)]);
    assert_eq!(mask(&p, inner, ALL), IN);
    assert_eq!(wait(&p, inner, 0), [EpollEvent::new(IN, 1)]);
}

#[test]
fn f11_misc() {
    let _serial = serial();
    let p = RealNet::new();
    // Timeouts are at least what was asked (1 ms took ~1.07 ms, 10 ms ~10-15 ms).
    let ep = p.epoll_create1(0).unwrap();
    for ms in [1, 10] {
        let t0 = p.now();
        assert_eq!(wait(&p, ep, ms), []);
        let took = p.now() - t0;
        assert!(
            took >= std::time::Duration::from_millis(ms as u64),
            "{ms} ms took {took:?}"
        );
    }
    // Closing a registered, ready fd (its only descriptor) removes its pending event.
    let [a, b] = p.socketpair(NB).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN, 1)).unwrap();
    p.write(a, b"x").unwrap();
    p.close(b).unwrap();
    assert_eq!(wait(&p, ep, 0), []);
    // ET: MOD while still ready reports again (MOD re-checks).
    let [a, b] = p.socketpair(NB).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, b, ev(IN | ET, 1)).unwrap();
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, ep, 0).len(), 1);
    assert_eq!(wait(&p, ep, 0).len(), 0);
    p.epoll_ctl(ep, EPOLL_CTL_MOD, b, ev(IN | ET, 1)).unwrap();
    assert_eq!(wait(&p, ep, 0).len(), 1);
    // TCP half-close: after SHUT_WR the client still reads what the server sends.
    let (c, s, _l) = tcp_pair(&p);
    p.shutdown(c, SHUT_WR).unwrap();
    wait_mask(&p, s, RDHUP, SOON_MS);
    p.write(s, b"after").unwrap();
    assert_eq!(wait_mask(&p, c, IN, SOON_MS), IN);
    let mut buf = [0u8; 8];
    assert_eq!(res(p.read(c, &mut buf)), Ok(5));
    // accept4 without SOCK_NONBLOCK from a non-blocking listener: the new socket blocks (no
    // inheritance); the peer address is the client's local address.
    let l = p.tcp_socket(NB).unwrap();
    p.bind(l, LOOPBACK).unwrap();
    p.listen(l, 4).unwrap();
    let c = p.tcp_socket(NB).unwrap();
    let _ = p.connect(c, p.local_addr(l).unwrap());
    assert_eq!(wait_mask(&p, l, ALL, SOON_MS), IN);
    let (s, peer) = p.accept4(l, 0).unwrap();
    // SAFETY: fcntl(F_GETFL) on an integer touches no memory.
    let fl = unsafe { libc::fcntl(s, libc::F_GETFL) };
    assert_eq!(fl & libc::O_NONBLOCK, 0);
    assert_eq!(peer, p.local_addr(c).unwrap());
    assert_eq!(mask(&p, l, ALL), Events::NONE, "listener with empty queue");
}

#[test]
fn f11_et_connections_and_hangups() {
    let _serial = serial();
    let p = RealNet::new();
    // A listener registered IN | ET: one event per queued connection, even if none is accepted.
    let l = p.tcp_socket(NB).unwrap();
    p.bind(l, LOOPBACK).unwrap();
    p.listen(l, 8).unwrap();
    let addr = p.local_addr(l).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, l, ev(IN | ET, 1)).unwrap();
    let c1 = p.tcp_socket(NB).unwrap();
    let _ = p.connect(c1, addr);
    let first = wait(&p, ep, SOON_MS).len();
    let c2 = p.tcp_socket(NB).unwrap();
    let _ = p.connect(c2, addr);
    let second = wait(&p, ep, SOON_MS).len();
    assert_eq!([first, second], [1, 1], "one event per queued connection");
    // A connecting client registered OUT | ET: how many events by the time it is connected?
    let ep2 = p.epoll_create1(0).unwrap();
    let c3 = p.tcp_socket(NB).unwrap();
    p.epoll_ctl(ep2, EPOLL_CTL_ADD, c3, ev(IN | OUT | RDHUP | ET, 3))
        .unwrap();
    let before = wait(&p, ep2, 0);
    let _ = p.connect(c3, addr);
    let got = wait(&p, ep2, SOON_MS);
    let more = wait(&p, ep2, NEVER_MS);
    // Registering a socket before connect: ADD reports OUT | HUP (TCP_CLOSE) at once!
    assert_eq!(before, [EpollEvent::new(OUT | HUP, 3)]);
    assert_eq!(got, [EpollEvent::new(OUT, 3)]);
    assert_eq!(more, []);
    // Pipe ET: the writer's close is a wakeup (HUP), once.
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    let ep3 = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep3, EPOLL_CTL_ADD, r, ev(IN | ET, 4)).unwrap();
    p.write(w, b"x").unwrap();
    let a1 = wait(&p, ep3, 0);
    p.close(w).unwrap();
    let a2 = wait(&p, ep3, 0);
    let a3 = wait(&p, ep3, 0);
    // An ET event carries the whole current mask, not just what changed.
    assert_eq!(a1, [EpollEvent::new(IN, 4)]);
    assert_eq!(a2, [EpollEvent::new(IN | HUP, 4)]);
    assert_eq!(a3, []);
    // Socketpair ET with RDHUP: peer shutdown, then peer close.
    let [a, b] = p.socketpair(NB).unwrap();
    let ep4 = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep4, EPOLL_CTL_ADD, b, ev(IN | OUT | RDHUP | ET, 5))
        .unwrap();
    let s0 = wait(&p, ep4, 0);
    p.shutdown(a, SHUT_WR).unwrap();
    let s1 = wait(&p, ep4, 0);
    p.close(a).unwrap();
    let s2 = wait(&p, ep4, 0);
    let s3 = wait(&p, ep4, 0);
    assert_eq!(s0, [EpollEvent::new(OUT, 5)]);
    assert_eq!(s1, [EpollEvent::new(IN | OUT | RDHUP, 5)]);
    assert_eq!(s2, [EpollEvent::new(IN | OUT | HUP | RDHUP, 5)]);
    assert_eq!(s3, []);
}

//! Smoke tests of every [`RealNet`] method, on loopback, waiting on epoll (never sleeping).

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{errno, *};
use netpoll::{EpollEvent, Events, Poller};

use super::RealNet;

const LOOPBACK: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error").raw_os_error().unwrap()
}

/// Waits (up to 5 s) for one event on `ep`.
fn wait1(p: &RealNet, ep: i32) -> EpollEvent {
    let mut evs = [EpollEvent::EMPTY; 1];
    assert_eq!(
        p.epoll_wait(ep, &mut evs, 5000).unwrap(),
        1,
        "no event within 5 s"
    );
    evs[0]
}

#[test]
fn is_send_sync_and_named() {
    fn check<T: Send + Sync>() {}
    check::<RealNet>();
    assert_eq!(RealNet::new().name(), "real");
}

#[test]
fn socketpair_epoll_read_write() {
    let p = RealNet::new();
    let [a, b] = p.socketpair(SOCK_NONBLOCK | SOCK_CLOEXEC).unwrap();
    let ep = p.epoll_create1(EPOLL_CLOEXEC).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN, 42)))
        .unwrap();
    let mut evs = [EpollEvent::EMPTY; 4];
    assert_eq!(p.epoll_wait(ep, &mut evs, 0).unwrap(), 0);
    assert_eq!(p.write(a, b"hi").unwrap(), 2);
    assert_eq!(wait1(&p, ep), EpollEvent::new(Events::IN, 42));
    let mut buf = [0u8; 8];
    assert_eq!(p.read(b, &mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], b"hi");
    assert_eq!(errno_of(p.read(b, &mut buf)), errno::EAGAIN);
    p.epoll_ctl(ep, EPOLL_CTL_MOD, b, Some(EpollEvent::new(Events::OUT, 7)))
        .unwrap();
    assert_eq!(wait1(&p, ep), EpollEvent::new(Events::OUT, 7));
    p.epoll_ctl(ep, EPOLL_CTL_DEL, b, None).unwrap();
    assert_eq!(p.epoll_wait(ep, &mut evs, 0).unwrap(), 0);
    // Errors come from the kernel, untouched.
    assert_eq!(errno_of(p.epoll_wait(ep, &mut [], 0)), errno::EINVAL);
    assert_eq!(
        errno_of(p.epoll_ctl(ep, EPOLL_CTL_ADD, b, None)),
        errno::EFAULT
    );
    assert_eq!(errno_of(p.epoll_create1(1)), errno::EINVAL);
    for fd in [a, b, ep] {
        p.close(fd).unwrap();
    }
    assert_eq!(errno_of(p.close(a)), errno::EBADF);
    assert_eq!(p.open_count(), 0);
}

#[test]
fn pipe_and_nonblocking() {
    let p = RealNet::new();
    let [r, w] = p.pipe2(O_CLOEXEC).unwrap();
    p.set_nonblocking(r, true).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(errno_of(p.read(r, &mut buf)), errno::EAGAIN);
    // `write` on a pipe falls back from `send` (ENOTSOCK) to `write`.
    assert_eq!(p.write(w, b"abc").unwrap(), 3);
    assert_eq!(p.read(r, &mut buf).unwrap(), 3);
    p.set_nonblocking(r, false).unwrap();
    p.close(w).unwrap();
    assert_eq!(
        p.read(r, &mut buf).unwrap(),
        0,
        "EOF, not a hang: blocking read"
    );
    assert_eq!(errno_of(p.pipe2(1)), errno::EINVAL);
}

#[test]
fn eventfd_counts() {
    let p = RealNet::new();
    let e = p.eventfd(3, EFD_NONBLOCK).unwrap();
    p.write(e, &4u64.to_ne_bytes()).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(p.read(e, &mut buf).unwrap(), 8);
    assert_eq!(u64::from_ne_bytes(buf), 7);
    assert_eq!(errno_of(p.read(e, &mut buf)), errno::EAGAIN);
    let s = p.eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK).unwrap();
    p.read(s, &mut buf).unwrap();
    assert_eq!(u64::from_ne_bytes(buf), 1);
}

#[test]
fn tcp_loopback_round_trip() {
    let p = RealNet::new();
    let l = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(l, LOOPBACK).unwrap();
    p.listen(l, 16).unwrap();
    let laddr = p.local_addr(l).unwrap();
    assert_eq!(*laddr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(laddr.port(), 0);
    assert_eq!(errno_of(p.peer_addr(l)), errno::ENOTCONN);

    let c = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    match p.connect(c, laddr) {
        Ok(()) => {}
        Err(e) => assert_eq!(e.raw_os_error(), Some(errno::EINPROGRESS)),
    }
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, c, Some(EpollEvent::new(Events::OUT, 1)))
        .unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, l, Some(EpollEvent::new(Events::IN, 2)))
        .unwrap();
    let mut evs = [EpollEvent::EMPTY; 2];
    let mut got = 0;
    while got != 3 {
        let n = p.epoll_wait(ep, &mut evs, 5000).unwrap();
        assert!(n > 0);
        for e in &evs[..n] {
            got |= e.data;
        }
    }
    assert_eq!(p.take_socket_error(c).unwrap(), 0);
    let (s, peer) = p.accept4(l, SOCK_NONBLOCK | SOCK_CLOEXEC).unwrap();
    assert_eq!(peer, p.local_addr(c).unwrap());
    assert_eq!(p.peer_addr(c).unwrap(), laddr);
    assert_eq!(p.peer_addr(s).unwrap(), peer);
    assert_eq!(errno_of(p.accept4(l, 0)), errno::EAGAIN);

    p.epoll_ctl(ep, EPOLL_CTL_ADD, s, Some(EpollEvent::new(Events::IN, 3)))
        .unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_DEL, c, None).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_DEL, l, None).unwrap();
    assert_eq!(p.write(c, b"ping").unwrap(), 4);
    assert_eq!(wait1(&p, ep).data, 3);
    let mut buf = [0u8; 16];
    assert_eq!(p.read(s, &mut buf).unwrap(), 4);

    p.set_linger(c, Some(0)).unwrap();
    p.set_linger(c, None).unwrap();
    p.shutdown(c, SHUT_WR).unwrap();
    assert_eq!(wait1(&p, ep).data, 3);
    assert_eq!(p.read(s, &mut buf).unwrap(), 0);
    assert_eq!(errno_of(p.shutdown(c, 9)), errno::EINVAL);
    // Not a socket / not TCP.
    let [r, _w] = p.pipe2(0).unwrap();
    assert_eq!(errno_of(p.take_socket_error(r)), errno::ENOTSOCK);
    let [u, _v] = p.socketpair(0).unwrap();
    assert_eq!(errno_of(p.local_addr(u)), errno::EOPNOTSUPP);
}

#[test]
fn dup_close_and_drop_cleanup() {
    let p = RealNet::new();
    let [a, _b] = p.socketpair(0).unwrap();
    let d = p.dup(a).unwrap();
    p.close(a).unwrap();
    assert_eq!(p.write(d, b"x").unwrap(), 1);
    assert_eq!(p.open_count(), 2);
    assert_eq!(errno_of(p.dup(-1)), errno::EBADF);
    assert_eq!(errno_of(p.set_nonblocking(-1, true)), errno::EBADF);
    let before = inode(d).expect("open");
    drop(p);
    // Other tests run in parallel and may reuse the number: compare identities, not numbers.
    assert_ne!(inode(d), Some(before), "fd {d} still open after drop");
}

/// The (device, inode) of the file `fd` refers to, if it is open.
fn inode(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: `stat` is plain old data, for which all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable `stat`.
    let res = unsafe { libc::fstat(fd, &mut st) };
    (res == 0).then_some((st.st_dev, st.st_ino))
}

#[test]
fn now_is_monotonic() {
    let p = RealNet::new();
    let t0 = p.now();
    let ep = p.epoll_create1(0).unwrap();
    let mut evs = [EpollEvent::EMPTY; 1];
    assert_eq!(p.epoll_wait(ep, &mut evs, 20).unwrap(), 0);
    let t1 = p.now();
    assert!(
        t1 >= t0 + std::time::Duration::from_millis(20),
        "{t0:?} {t1:?}"
    );
}

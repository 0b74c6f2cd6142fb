//! Threads blocked in `read`, `accept4`, `write` and `poll`: who returns after one write or one
//! connection, and what another thread's `shutdown` or hangup does to them.

use std::net::SocketAddrV4;

use netpoll::sys::*;
use netpoll::{Events, PollFd};

use crate::harness::*;
use crate::mt_harness::*;

pub fn mt_two_blocking_readers_one_write<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair (blocking)", p.socketpair(0));
    let r1 = bg_read(p, "r1", b);
    let r2 = bg_read(p, "r2", b);
    p.settle();
    log.expect("returned before the write", done_count(&[&r1, &r2]), 0);
    log.count("write", p.write(a, b"x"), Ok(1));
    p.settle();
    log.expect("returned after one write", done_count(&[&r1, &r2]), 1);
    log.count("write again", p.write(a, b"y"), Ok(1));
    p.settle();
    log.expect("returned after two", done_count(&[&r1, &r2]), 2);
    let mut got = vec![r1.join(), r2.join()];
    got.sort();
    log.expect(
        "one byte each",
        got,
        vec![Ok(b"x".to_vec()), Ok(b"y".to_vec())],
    );
    close_all(p, &[a, b]);
}

pub fn mt_blocking_reader_woken_by_peer_close<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair (blocking)", p.socketpair(0));
    let r1 = bg_read(p, "r1", b);
    let r2 = bg_read(p, "r2", b);
    p.settle();
    log.ok("close a", p.close(a));
    log.expect("r1: end of file", r1.join(), Ok(vec![]));
    log.expect("r2: end of file", r2.join(), Ok(vec![]));
    close_all(p, &[b]);
}

pub fn mt_blocking_reader_woken_by_shutdown_wr<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair (blocking)", p.socketpair(0));
    let r = bg_read(p, "r", b);
    p.settle();
    log.ok("shutdown(a, SHUT_WR)", p.shutdown(a, SHUT_WR));
    log.expect("end of file", r.join(), Ok(vec![]));
    close_all(p, &[a, b]);
}

pub fn mt_blocking_reader_woken_by_own_shutdown_rd<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair (blocking)", p.socketpair(0));
    let r = bg_read(p, "r", b);
    p.settle();
    log.ok(
        "shutdown(b, SHUT_RD) from another thread",
        p.shutdown(b, SHUT_RD),
    );
    log.expect("the reader sees end of file", r.join(), Ok(vec![]));
    close_all(p, &[a, b]);
}

pub fn mt_pipe_readers_one_write<P: Threads>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2 (blocking)", p.pipe2(0));
    let r1 = bg_read(p, "r1", r);
    let r2 = bg_read(p, "r2", r);
    p.settle();
    log.count("write", p.write(w, b"ab"), Ok(2));
    p.settle();
    log.expect("returned after one write", done_count(&[&r1, &r2]), 1);
    log.ok("close the write end", p.close(w));
    let mut got = vec![r1.join(), r2.join()];
    got.sort();
    log.expect(
        "the bytes, then end of file",
        got,
        vec![Ok(vec![]), Ok(b"ab".to_vec())],
    );
    close_all(p, &[r]);
}

pub fn mt_eventfd_blocking_readers<P: Threads>(p: &P, log: &mut Log) {
    let e = log.ok("eventfd (blocking)", p.eventfd(0, 0));
    let r1 = bg_read(p, "r1", e);
    let r2 = bg_read(p, "r2", e);
    p.settle();
    log.count("write 5", p.write(e, &5u64.to_ne_bytes()), Ok(8));
    p.settle();
    log.expect("returned after one write", done_count(&[&r1, &r2]), 1);
    log.count("write 7", p.write(e, &7u64.to_ne_bytes()), Ok(8));
    p.settle();
    log.expect("returned after two", done_count(&[&r1, &r2]), 2);
    let mut got: Vec<u64> = [r1.join(), r2.join()]
        .into_iter()
        .map(|r| u64::from_ne_bytes(r.expect("read").try_into().expect("8 bytes")))
        .collect();
    got.sort();
    log.expect("each read takes the counter", got, vec![5, 7]);
    close_all(p, &[e]);
}

pub fn mt_blocking_writer_woken_by_reader<P: Threads>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2 (non-blocking to fill)", p.pipe2(O_NONBLOCK));
    fill(p, w);
    log.ok("blocking write end", p.set_nonblocking(w, false));
    let wr = bg(p, "writer", move |p| val(&p.write(w, b"z")));
    p.settle();
    log.expect("the writer blocks on a full pipe", wr.done(), false);
    let mut page = vec![0u8; 4096];
    log.count("read one page", p.read(r, &mut page), Ok(4096));
    log.expect("the writer got room", wr.join(), Ok(1));
    close_all(p, &[r, w]);
}

pub fn mt_two_blocking_acceptors_one_connection<P: Threads>(p: &P, log: &mut Log) {
    let l = log.ok("tcp_socket (blocking)", p.tcp_socket(0));
    log.ok(
        "bind",
        p.bind(l, SocketAddrV4::new([127, 0, 0, 1].into(), 0)),
    );
    log.ok("listen", p.listen(l, 16));
    let addr = log.ok("local_addr", p.local_addr(l));
    let acc = |name: &str| {
        bg(p, name, move |p| {
            let r = p.accept4(l, SOCK_NONBLOCK);
            r.map(|(fd, _)| {
                let _ = p.close(fd);
            })
            .map_err(|e| e.raw_os_error())
        })
    };
    let a1 = acc("a1");
    let a2 = acc("a2");
    p.settle();
    let c1 = p.tcp_socket(SOCK_NONBLOCK).expect("socket");
    let _ = p.connect(c1, addr);
    p.settle();
    log.expect(
        "acceptors returned after one connection",
        done_count(&[&a1, &a2]),
        1,
    );
    let c2 = p.tcp_socket(SOCK_NONBLOCK).expect("socket");
    let _ = p.connect(c2, addr);
    p.settle();
    log.expect("after two", done_count(&[&a1, &a2]), 2);
    log.expect("a1", a1.join(), Ok(()));
    log.expect("a2", a2.join(), Ok(()));
    close_all(p, &[c1, c2, l]);
}

pub fn mt_poll_woken_by_write<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let w = bg(p, "poller", move |p| {
        let mut fds = [PollFd::new(b, Events::IN)];
        let r = val(&p.poll(&mut fds, -1));
        (r, fds[0].revents)
    });
    p.settle();
    log.expect("blocked in poll", w.done(), false);
    log.count("write", p.write(a, b"x"), Ok(1));
    log.expect("poll", w.join(), (Ok(1), Events::IN));
    close_all(p, &[a, b]);
}

pub fn mt_close_does_not_wake_a_blocked_reader<P: Threads>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair (blocking)", p.socketpair(0));
    let r = bg_read(p, "reader", b);
    p.settle();
    log.ok("close b from another thread", p.close(b));
    p.settle();
    log.expect(
        "the reader is still blocked (it holds the file)",
        r.done(),
        false,
    );
    log.count("write a", p.write(a, b"hi"), Ok(2));
    log.expect(
        "the reader gets the data through the closed descriptor",
        r.join(),
        Ok(b"hi".to_vec()),
    );
    log.err(
        "now the file is gone: write a",
        p.write(a, b"x"),
        netpoll::sys::errno::EPIPE,
    );
    close_all(p, &[a]);
}

pub fn mt_close_does_not_wake_a_blocked_accept<P: Threads>(p: &P, log: &mut Log) {
    let l = log.ok("tcp_socket (blocking)", p.tcp_socket(0));
    log.ok(
        "bind",
        p.bind(l, SocketAddrV4::new([127, 0, 0, 1].into(), 0)),
    );
    log.ok("listen", p.listen(l, 16));
    let addr = log.ok("local_addr", p.local_addr(l));
    let acc = bg(p, "acceptor", move |p| {
        p.accept4(l, SOCK_NONBLOCK)
            .map(|(fd, _)| {
                let _ = p.close(fd);
            })
            .map_err(|e| e.raw_os_error())
    });
    p.settle();
    log.ok("close the listener from another thread", p.close(l));
    p.settle();
    log.expect("accept still blocked", acc.done(), false);
    let c = p.tcp_socket(SOCK_NONBLOCK).expect("socket");
    let _ = p.connect(c, addr);
    log.expect("the still-listening file accepts it", acc.join(), Ok(()));
    close_all(p, &[c]);
}

crate::mt_cases! {
    mt_close_does_not_wake_a_blocked_reader,
    mt_close_does_not_wake_a_blocked_accept,
    mt_two_blocking_readers_one_write,
    mt_blocking_reader_woken_by_peer_close,
    mt_blocking_reader_woken_by_shutdown_wr,
    mt_blocking_reader_woken_by_own_shutdown_rd,
    mt_pipe_readers_one_write,
    mt_eventfd_blocking_readers,
    mt_blocking_writer_woken_by_reader,
    mt_two_blocking_acceptors_one_connection,
    mt_poll_woken_by_write,
}

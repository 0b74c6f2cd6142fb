//! Full buffers and stream reads. Capacities differ between kernels: only behaviours are
//! compared (EAGAIN reached, OUT comes back after the reader drains), never byte counts of
//! capacity.

use netpoll::sys::errno::*;
use netpoll::sys::*;
use netpoll::{Fd, Poller};

use crate::harness::*;

fn out_after_full<P: Poller>(p: &P, log: &mut Log, w: Fd, r: Fd, et: bool) {
    let ep = epoll(p);
    let mode = if et { OUT | ET } else { OUT };
    log.ok("ADD writer OUT", ctl(p, ep, EPOLL_CTL_ADD, w, mode, 1));
    expect_events(p, log, "writable", ep, 0, &[(1, OUT)]);
    let n = fill(p, w);
    log.check("filled to EAGAIN", n > 0);
    log.err("write when full", p.write(w, b"x"), EAGAIN);
    expect_no_events(p, log, "full: no OUT", ep);
    log.check("reader drains all", drain(p, r) == n);
    expect_events(p, log, "OUT after the drain", ep, 0, &[(1, OUT)]);
    log.count("write", p.write(w, b"x"), Ok(1));
    close_all(p, &[ep]);
}

pub fn out_after_full_socketpair_lt<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    out_after_full(p, log, a, b, false);
    close_all(p, &[a, b]);
}

pub fn out_after_full_socketpair_et<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    out_after_full(p, log, a, b, true);
    close_all(p, &[a, b]);
}

pub fn out_after_full_pipe_lt<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    out_after_full(p, log, w, r, false);
    close_all(p, &[r, w]);
}

pub fn out_after_full_pipe_et<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    out_after_full(p, log, w, r, true);
    close_all(p, &[r, w]);
}

fn stream_reads<P: Poller>(p: &P, log: &mut Log, w: Fd, r: Fd) {
    let mut buf = [0u8; 64];
    log.count("write 10", p.write(w, b"0123456789"), Ok(10));
    log.count("short read", p.read(r, &mut buf[..4]), Ok(4));
    log.expect("bytes", &buf[..4], b"0123".as_slice());
    log.count("write 3", p.write(w, b"abc"), Ok(3));
    log.count("write 200", p.write(w, &[7u8; 200]), Ok(200));
    let mut big = [0u8; 1024];
    log.count(
        "one read takes all that is buffered",
        p.read(r, &mut big),
        Ok(209),
    );
    log.expect("in order", &big[..9], b"456789abc".as_slice());
    log.count("empty", p.read(r, &mut buf), Err(EAGAIN));
    log.count("write nothing", p.write(w, &[]), Ok(0));
    log.count("still empty", p.read(r, &mut buf), Err(EAGAIN));
}

pub fn stream_reads_socketpair<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    stream_reads(p, log, a, b);
    let mut buf = [0u8; 1];
    log.count(
        "zero-length read, nothing buffered",
        p.read(b, &mut buf[..0]),
        Ok(0),
    );
    close_all(p, &[a, b]);
}

pub fn stream_reads_pipe<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    stream_reads(p, log, w, r);
    let mut buf = [0u8; 1];
    log.count(
        "zero-length read, nothing buffered",
        p.read(r, &mut buf[..0]),
        Ok(0),
    );
    close_all(p, &[r, w]);
}

/// A write to a nearly full buffer is short, not EAGAIN (both arms: one short write happens).
pub fn partial_write_when_nearly_full<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let n = fill(p, w);
    let mut buf = vec![0u8; 4096];
    let got = p.read(r, &mut buf).unwrap_or(0);
    log.check("freed some room", got > 0 && got <= n);
    let big = vec![1u8; got + 65536];
    let wrote = p.write(w, &big);
    log.check(
        "a big write is short",
        matches!(wrote, Ok(k) if k > 0 && k < big.len()),
    );
    log.err("then EAGAIN", p.write(w, b"x"), EAGAIN);
    close_all(p, &[r, w]);
}

/// A pipe is writable when a page slot is free: reading one byte of a full pipe frees none.
pub fn pipe_out_needs_a_free_page<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD w OUT", ctl(p, ep, EPOLL_CTL_ADD, w, OUT, 1));
    let n = fill(p, w);
    log.check("filled", n >= 4096);
    let mut buf = vec![0u8; 4096];
    log.count("read 1 byte", p.read(r, &mut buf[..1]), Ok(1));
    expect_no_events(p, log, "no page freed: still full", ep);
    log.err("write 1 byte", p.write(w, b"x"), EAGAIN);
    log.count(
        "read the rest of the first page",
        p.read(r, &mut buf[..4095]),
        Ok(4095),
    );
    expect_events(p, log, "a page is free", ep, 0, &[(1, OUT)]);
    log.count("write 1 byte", p.write(w, b"x"), Ok(1));
    close_all(p, &[ep, r, w]);
}

/// A unix socket is writable again only when most of its send buffer is free (Linux: queued
/// bytes at most a quarter of `SO_SNDBUF`), not as soon as the reader takes a little.
pub fn socketpair_out_hysteresis<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    let ep = epoll(p);
    log.ok("ADD a OUT", ctl(p, ep, EPOLL_CTL_ADD, a, OUT, 1));
    let buf = [1u8; 4096];
    let mut n = 0;
    while let Ok(k) = p.write(a, &buf) {
        n += k;
    }
    log.check("filled with 4 KiB writes", n > 0);
    let mut rbuf = vec![0u8; n];
    log.count(
        "read one write's worth",
        p.read(b, &mut rbuf[..4096]),
        Ok(4096),
    );
    expect_no_events(p, log, "a little room is not OUT", ep);
    let half = (n / 2) / 4096 * 4096;
    let got = p.read(b, &mut rbuf[..half - 4096]).unwrap_or(0);
    log.check("read up to half", got == half - 4096);
    expect_no_events(p, log, "half free is not OUT", ep);
    log.check("read the rest", drain(p, b) == n - half);
    expect_events(p, log, "empty: OUT", ep, 0, &[(1, OUT)]);
    close_all(p, &[ep, a, b]);
}

/// A zero-length write checks the socket's state (EPIPE once shut down); a pipe's returns 0
/// before looking for readers.
pub fn zero_length_writes<P: Poller>(p: &P, log: &mut Log) {
    let [a, b] = log.ok("socketpair", p.socketpair(SOCK_NONBLOCK));
    log.count("socket, open", p.write(a, &[]), Ok(0));
    log.ok("shutdown a WR", p.shutdown(a, SHUT_WR));
    log.count("socket, after SHUT_WR", p.write(a, &[]), Err(EPIPE));
    log.ok("close a", p.close(a));
    log.count("socket, peer closed", p.write(b, &[]), Err(EPIPE));
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    log.ok("close the reader", p.close(r));
    log.count("pipe, no reader", p.write(w, &[]), Ok(0));
    log.count("pipe, no reader, 1 byte", p.write(w, b"x"), Err(EPIPE));
    let mut buf = [0u8; 1];
    log.count(
        "read a closed peer's socket, empty buffer",
        p.read(b, &mut buf[..0]),
        Ok(0),
    );
    close_all(p, &[b, w]);
}

/// A small write merges into the pipe's last, partly filled page even when no page is free;
/// writes of at most `PIPE_BUF` (4096) bytes go in whole or not at all.
pub fn pipe_merge_and_atomicity<P: Poller>(p: &P, log: &mut Log) {
    let [r, w] = log.ok("pipe2", p.pipe2(O_NONBLOCK));
    let chunk = [3u8; 4000];
    let mut pages = 0;
    while p.write(w, &chunk).is_ok() {
        pages += 1;
    }
    log.check("filled with 4000-byte writes (one page each)", pages > 0);
    log.count(
        "101 bytes do not fit in the last page's 96",
        p.write(w, &[4u8; 101]),
        Err(EAGAIN),
    );
    log.count(
        "96 bytes merge into the last page",
        p.write(w, &[5u8; 96]),
        Ok(96),
    );
    log.count("now nothing fits", p.write(w, b"x"), Err(EAGAIN));
    log.count(
        "a large write: nothing fits either",
        p.write(w, &[6u8; 5000]),
        Err(EAGAIN),
    );
    let mut buf = vec![0u8; 4000];
    log.count("read one page", p.read(r, &mut buf), Ok(4000));
    log.count(
        "a large write fills the free page: short",
        p.write(w, &[7u8; 5000]),
        Ok(4096),
    );
    log.count("full", p.write(w, b"x"), Err(EAGAIN));
    close_all(p, &[r, w]);
}

crate::cases! {
    out_after_full_socketpair_lt,
    out_after_full_socketpair_et,
    out_after_full_pipe_lt,
    out_after_full_pipe_et,
    stream_reads_socketpair,
    stream_reads_pipe,
    partial_write_when_nearly_full,
    pipe_out_needs_a_free_page,
    socketpair_out_hysteresis,
    zero_length_writes,
    pipe_merge_and_atomicity,
}

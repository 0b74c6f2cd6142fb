//! The machine-wide TCP memory account (`SimConfig::tcp_mem`, Linux's `net.ipv4.tcp_mem`): what
//! a writer and a reader see past its thresholds, and that the account comes back to zero.
//! The two-arm case against Linux is `tests/tcp_mem_conformance.rs` at the workspace root.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use netpoll::sys::{errno::*, SHUT_WR, SOCK_NONBLOCK};
use netpoll::{Events, Fd, Poller};
use netpoll_sim::{Sim, SimConfig, MAX_TCP_MEM_PAGES};

const MSS: usize = 65_483;

fn sim_with(tcp_mem: [u64; 3]) -> Sim {
    Sim::with_config(
        7,
        SimConfig {
            tcp_mem,
            ..SimConfig::default()
        },
    )
}

/// A listener, a connected non-blocking client and the accepted server end.
fn pair(p: &Sim) -> (Fd, Fd, Fd) {
    let l = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 16).unwrap();
    let addr = p.local_addr(l).unwrap();
    let c = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    assert_eq!(
        p.connect(c, addr).unwrap_err().raw_os_error(),
        Some(EINPROGRESS)
    );
    p.sleep(Duration::from_millis(1));
    let (s, _) = p.accept4(l, SOCK_NONBLOCK).unwrap();
    (l, c, s)
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

/// Numbered bytes, so that order is checked on the way out.
fn bytes(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

/// Reads everything `fd` has and checks it continues the numbering from `from`.
fn read_all(p: &Sim, fd: Fd, from: usize) -> usize {
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    loop {
        match p.read(fd, &mut buf) {
            Ok(0) => return got,
            Ok(n) => {
                assert_eq!(buf[..n], bytes(from + got, n)[..], "bytes out of order");
                got += n;
            }
            Err(e) if e.raw_os_error() == Some(EAGAIN) => return got,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn bad_thresholds_are_refused_by_name() {
    for bad in [[3, 2, 1], [1, 3, 2], [0, 0, MAX_TCP_MEM_PAGES + 1]] {
        let e = SimConfig {
            tcp_mem: bad,
            ..SimConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field(), "tcp_mem", "{e}");
    }
    assert!(Sim::new(1).set_tcp_mem([5, 4, 3]).is_err());
    let ok = SimConfig {
        tcp_mem: [0, 0, 0],
        ..SimConfig::default()
    };
    assert!(ok.validate().is_ok());
}

/// Past the hard limit (4 pages here, 16 KiB): the first write still gets one segment (the
/// socket had nothing queued), the next `EAGAIN`, and `poll` drops `OUT`. The receiver takes
/// that segment (its queue was empty); a second one, written once the first is acknowledged,
/// is dropped (the reader has unread bytes) and comes again 200 ms later, after the reader
/// drained, with the FIN written behind it; everything arrives in order and the account
/// empties.
#[test]
fn past_the_hard_limit_writers_wait_and_segments_are_retransmitted() {
    let p = sim_with([1, 2, 4]);
    let (l, c, s) = pair(&p);
    let big = bytes(0, 1 << 20);
    assert_eq!(p.write(c, &big).unwrap(), MSS, "one forced segment");
    assert_eq!(errno(p.write(c, &big[MSS..])), EAGAIN);
    assert!(!p.readiness(c).unwrap().contains(Events::OUT));
    assert!(p.tcp_memory().moderated_sends >= 1);
    assert!(p.tcp_memory().under_pressure);

    p.sleep(Duration::from_millis(1));
    assert_eq!(p.fionread(s).unwrap(), MSS, "taken: the queue was empty");
    assert!(
        p.readiness(c).unwrap().contains(Events::OUT),
        "acknowledged: the moderated buffer is empty again"
    );
    assert_eq!(p.write(c, &big[MSS..]).unwrap(), MSS);
    assert_eq!(errno(p.write(c, &big[2 * MSS..])), EAGAIN);
    p.shutdown(c, SHUT_WR).unwrap();
    p.sleep(Duration::from_millis(1));
    assert_eq!(p.tcp_memory().dropped_segments, 1);
    assert_eq!(
        p.fionread(s).unwrap(),
        MSS,
        "the second segment was dropped"
    );
    assert!(
        !p.readiness(s).unwrap().contains(Events::RDHUP),
        "the FIN waits too"
    );

    p.sleep(Duration::from_millis(100));
    assert_eq!(p.fionread(s).unwrap(), MSS, "nothing before the timeout");
    assert_eq!(read_all(&p, s, 0), MSS);
    p.sleep(Duration::from_millis(100));
    assert_eq!(
        read_all(&p, s, MSS),
        MSS,
        "retransmitted 200 ms after the loss"
    );
    assert_eq!(p.read(s, &mut [0u8; 8]).unwrap(), 0, "then the FIN");
    let m = p.tcp_memory();
    assert_eq!((m.allocated, m.under_pressure), (0, false));
    assert_eq!(m.peak, 2 * MSS as u64);
    for fd in [l, c, s] {
        p.close(fd).unwrap();
    }
}

/// Under pressure (past the second threshold, below the hard limit), a socket gets memory while
/// its pages times the number of TCP sockets stay below the hard limit: here 5 sockets and 1000
/// pages, so about 200 pages (800 KiB) of a 3.9 MB window, and then one more segment by force
/// (the socket is over its moderated buffer, which Linux cannot fail). Once the reader drains, the account
/// leaves pressure and the writer's buffer grows back.
#[test]
fn under_pressure_a_socket_gets_its_fair_share() {
    let p = sim_with([32, 48, 1000]);
    let (l, c, s) = pair(&p);
    let (_l2, c2, _s2) = pair(&p);
    p.close(c2).unwrap();
    p.sleep(Duration::from_millis(1));
    // Sockets now: two listeners, c, s, and the closed pair's server end: 5.
    let big = bytes(0, 4 << 20);
    let mut sent = 0;
    while let Ok(n) = p.write(c, &big[sent..]) {
        sent += n;
    }
    let share = 1000 / 5 * 4096;
    assert!(
        (share..=share + 2 * MSS).contains(&sent),
        "{sent} bytes, fair share {share}"
    );
    let m = p.tcp_memory();
    assert!(m.under_pressure && m.pressure_entries == 1, "{m:?}");
    assert!(!p.readiness(c).unwrap().contains(Events::OUT));

    let mut got = 0;
    while got < sent {
        p.sleep(Duration::from_millis(1));
        got += read_all(&p, s, got);
    }
    let m = p.tcp_memory();
    assert_eq!((m.allocated, m.under_pressure), (0, false), "{m:?}");
    assert!(p.readiness(c).unwrap().contains(Events::OUT));
    assert!(
        p.write(c, &big[sent..]).unwrap() > share / 2,
        "the buffer grew back"
    );
    for fd in [l, c, s] {
        p.close(fd).unwrap();
    }
}

/// Below the first threshold nothing changes: a writer fills its whole window, as before the
/// account existed.
#[test]
fn below_the_limits_the_window_alone_limits() {
    let p = Sim::new(3);
    let (_l, c, _s) = pair(&p);
    let big = bytes(0, 8 << 20);
    let mut sent = 0;
    while let Ok(n) = p.write(c, &big[sent..]) {
        sent += n;
    }
    assert_eq!(sent, SimConfig::default().tcp_window);
    let m = p.tcp_memory();
    assert_eq!(m.allocated, sent as u64);
    assert_eq!((m.moderated_sends, m.dropped_segments), (0, 0));
}

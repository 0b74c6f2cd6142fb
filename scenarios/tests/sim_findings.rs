//! What the scenarios found in the simulated kernel, as minimal two-arm cases: the same body on
//! real Linux (which passes) and on the simulated kernel. A sim arm that fails is `#[ignore]`d
//! with the finding, until the sim is fixed; run them with `--ignored`. (None is, now.)

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{errno::EAGAIN, Events, EPOLL_CLOEXEC, EPOLL_CTL_ADD, SOCK_NONBLOCK};
use netpoll::{EpollEvent, Poller};

/// A *short* write (some bytes taken, not all) sets `SOCK_NOSPACE` on Linux
/// (`tcp_sendmsg_locked` goes through `wait_for_space` and returns the bytes copied), so an
/// edge-triggered `EPOLLOUT` follows once the peer reads and room returns. tokio relies on it
/// (`poll_write` clears write readiness after a short write). The simulated kernel sets its
/// `nospace` flag only when a write returns `EAGAIN`, so after a short write no `EPOLLOUT`
/// edge ever comes: the loop that trusts the short write sleeps for ever with a writable
/// socket. Found by `netpoll-sim run raw-epoll --seed 1` and `run backpressure --seed 1` before
/// the example server was changed to write until `EAGAIN`.
fn short_write_then_out_edge<P: Poller>(p: &P) {
    let ln = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(ln, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(ln, 8).unwrap();
    let addr = p.local_addr(ln).unwrap();
    let client = p.tcp_socket(0).unwrap(); // blocking: connect and reads wait
    p.connect(client, addr).unwrap();
    let ep = p.epoll_create1(EPOLL_CLOEXEC).unwrap();
    let mut evs = [EpollEvent::EMPTY; 4];
    let server = loop {
        match p.accept4(ln, SOCK_NONBLOCK) {
            Ok((fd, _)) => break fd,
            Err(e) if e.raw_os_error() == Some(EAGAIN) => {
                p.epoll_ctl(ep, EPOLL_CTL_ADD, ln, Some(EpollEvent::new(Events::IN, 1)))
                    .ok();
                p.epoll_wait(ep, &mut evs, 1000).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    };
    let ev = EpollEvent::new(Events::OUT | Events::ET, 2);
    p.epoll_ctl(ep, EPOLL_CTL_ADD, server, Some(ev)).unwrap();
    // The initial edge: writable.
    let n = p.epoll_wait(ep, &mut evs, 1000).unwrap();
    assert!(evs[..n].iter().any(|e| e.data == 2));
    // One big write: short, not EAGAIN. Do not write again.
    let big = vec![7u8; 64 << 20];
    let taken = p.write(server, &big).unwrap();
    assert!(
        taken > 0 && taken < big.len(),
        "expected a short write, got {taken}"
    );
    // The peer reads everything that was taken: room returns.
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0;
    while read < taken {
        read += p.read(client, &mut buf).unwrap();
    }
    // An EPOLLOUT edge must be reported now.
    let n = p.epoll_wait(ep, &mut evs, 1000).unwrap();
    assert!(
        evs[..n]
            .iter()
            .any(|e| e.data == 2 && e.events.contains(Events::OUT)),
        "no EPOLLOUT edge after a short write and a full drain: {:?}",
        &evs[..n]
    );
}

#[test]
fn real_short_write_then_out_edge() {
    short_write_then_out_edge(&netpoll_realnet::RealNet::new());
}

#[test]
fn sim_short_write_then_out_edge() {
    short_write_then_out_edge(&netpoll_sim::Sim::new(1));
}

/// The same body on the simulated kernel under the `short_write` fault (every write cut
/// short, with room to spare): the fault is a buffer that filled and drained again, so the
/// `EPOLLOUT` edge Linux gives after a short write comes too. Before the fault model was fixed,
/// no edge came and tokio's echo parked for ever (FINDINGS T1).
#[test]
fn sim_short_write_fault_then_out_edge() {
    for seed in 0..5 {
        let cfg = netpoll_sim::SimConfig {
            faults: netpoll_sim::FaultPlan {
                short_write: 1.0,
                ..netpoll_sim::FaultPlan::none()
            },
            // Room for the whole write: the cut is the fault's, not the buffer's.
            tcp_window: 128 << 20,
            ..netpoll_sim::SimConfig::default()
        };
        let p = netpoll_sim::Sim::with_config(seed, cfg);
        short_write_then_out_edge(&p);
        assert!(p.fault_counts().short_writes > 0, "seed {seed}");
    }
}

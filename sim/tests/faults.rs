//! The fault plan: each knob fires, does what its documentation says, and replays by seed.

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{errno::*, *};
use netpoll::{EpollEvent, Events, Poller};
use netpoll_sim::{EdgePolicy, FaultPlan, Sim, SimConfig};

fn sim(seed: u64, faults: FaultPlan) -> Sim {
    Sim::with_config(
        seed,
        SimConfig {
            faults,
            ..SimConfig::default()
        },
    )
}

fn wait(p: &Sim, ep: i32, timeout: i32) -> std::io::Result<Vec<(u64, Events)>> {
    let mut evs = [EpollEvent::EMPTY; 16];
    let n = p.epoll_wait(ep, &mut evs, timeout)?;
    Ok(evs[..n].iter().map(|e| (e.data, e.events)).collect())
}

fn et_pair(p: &Sim) -> (i32, i32, i32) {
    let [a, b] = p.socketpair(SOCK_NONBLOCK).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(
        ep,
        EPOLL_CTL_ADD,
        b,
        Some(EpollEvent::new(Events::IN | Events::ET, 1)),
    )
    .unwrap();
    (a, b, ep)
}

#[test]
fn empty_to_non_empty_edges_drop_the_second_write_linux_keeps() {
    for (edge, second_edge) in [
        (EdgePolicy::Linux, true),
        (EdgePolicy::EmptyToNonEmpty, false),
    ] {
        let p = sim(
            1,
            FaultPlan {
                edge,
                ..FaultPlan::none()
            },
        );
        let (a, _b, ep) = et_pair(&p);
        p.write(a, b"1").unwrap();
        assert_eq!(wait(&p, ep, 0).unwrap().len(), 1, "{edge:?}: first write");
        p.write(a, b"2").unwrap();
        assert_eq!(
            wait(&p, ep, 0).unwrap().len() == 1,
            second_edge,
            "{edge:?}: second write"
        );
    }
}

#[test]
fn short_reads_return_less_than_is_buffered() {
    let p = sim(
        2,
        FaultPlan {
            short_read: 1.0,
            ..FaultPlan::none()
        },
    );
    let [a, b] = p.socketpair(SOCK_NONBLOCK).unwrap();
    p.write(a, b"abcdefgh").unwrap();
    let mut buf = [0u8; 8];
    let n = p.read(b, &mut buf).unwrap();
    assert!((1..8).contains(&n), "read {n}");
    assert_eq!(p.fault_counts().short_reads, 1);
    // The rest is still there, in order.
    let mut rest = buf[..n].to_vec();
    while rest.len() < 8 {
        let k = p.read(b, &mut buf).unwrap();
        rest.extend_from_slice(&buf[..k]);
    }
    assert_eq!(rest, b"abcdefgh");
}

/// A blocking write returns when all is written, whatever the short-write fault cut: it used
/// to sleep after a cut with room left, and with nothing in flight that was a false hang.
#[test]
fn a_blocking_write_cut_short_writes_the_rest_without_sleeping() {
    let faults = FaultPlan {
        short_write: 1.0,
        ..FaultPlan::default()
    };
    for seed in 0..20 {
        let p = sim(seed, faults.clone());
        let [a, b] = p.socketpair(0).unwrap();
        assert_eq!(p.write(a, &[7; 1000]).unwrap(), 1000, "seed {seed}");
        assert!(p.fault_counts().short_writes > 0, "seed {seed}");
        let mut buf = [0; 2000];
        let mut got = 0;
        while got < 1000 {
            got += p.read(b, &mut buf[got..]).unwrap();
        }
        assert!(p.violation().is_none(), "seed {seed}");
    }
}

#[test]
fn short_writes_take_less_than_there_is_room_for() {
    let p = sim(
        3,
        FaultPlan {
            short_write: 1.0,
            ..FaultPlan::none()
        },
    );
    let [a, _b] = p.socketpair(SOCK_NONBLOCK).unwrap();
    let n = p.write(a, &[7u8; 100]).unwrap();
    assert!((1..100).contains(&n));
    assert_eq!(p.fault_counts().short_writes, 1);
}

/// A write cut short is followed by an `EPOLLOUT` edge for an edge-triggered writer, with no
/// read by the peer: the fault is a buffer that filled and drained again at once. (On Linux a
/// short write means the buffer filled, and the edge comes when room returns; tokio waits for
/// it. `scenarios/tests/sim_findings.rs` checks the sequence with a drain on both kernels.)
#[test]
fn a_short_write_is_followed_by_an_out_edge() {
    for seed in 0..20 {
        let p = sim(
            seed,
            FaultPlan {
                short_write: 1.0,
                ..FaultPlan::none()
            },
        );
        let [a, _b] = p.socketpair(SOCK_NONBLOCK).unwrap();
        let ep = p.epoll_create1(0).unwrap();
        let ev = EpollEvent::new(Events::OUT | Events::ET, 1);
        p.epoll_ctl(ep, EPOLL_CTL_ADD, a, Some(ev)).unwrap();
        let mut evs = [EpollEvent::EMPTY; 4];
        assert_eq!(p.epoll_wait(ep, &mut evs, 0).unwrap(), 1, "the first edge");
        assert_eq!(p.epoll_wait(ep, &mut evs, 0).unwrap(), 0, "no second edge");
        let n = p.write(a, &[7u8; 100]).unwrap();
        assert!((1..100).contains(&n), "seed {seed}: {n}");
        let got = p.epoll_wait(ep, &mut evs, 0).unwrap();
        assert!(
            got == 1 && evs[0].events.contains(Events::OUT),
            "seed {seed}: no EPOLLOUT edge after a short write: {:?}",
            &evs[..got]
        );
    }
}

/// The mirror image: a read cut short is followed by an `EPOLLIN` edge for an edge-triggered
/// reader, with no new write by the peer (the fault is the rest arriving just after the read;
/// on Linux a short read means the queue ran dry). tokio clears its read readiness after a
/// short read and waits for that edge.
#[test]
fn a_short_read_is_followed_by_an_in_edge() {
    for seed in 0..20 {
        let p = sim(
            seed,
            FaultPlan {
                short_read: 1.0,
                ..FaultPlan::none()
            },
        );
        let [a, b] = p.socketpair(SOCK_NONBLOCK).unwrap();
        let ep = p.epoll_create1(0).unwrap();
        let ev = EpollEvent::new(Events::IN | Events::ET, 1);
        p.epoll_ctl(ep, EPOLL_CTL_ADD, a, Some(ev)).unwrap();
        p.write(b, &[7u8; 100]).unwrap();
        let mut evs = [EpollEvent::EMPTY; 4];
        assert_eq!(
            p.epoll_wait(ep, &mut evs, 0).unwrap(),
            1,
            "the write's edge"
        );
        let n = p.read(a, &mut [0u8; 1000]).unwrap();
        assert!((1..100).contains(&n), "seed {seed}: {n}");
        let got = p.epoll_wait(ep, &mut evs, 0).unwrap();
        assert!(
            got == 1 && evs[0].events.contains(Events::IN),
            "seed {seed}: no EPOLLIN edge after a short read: {:?}",
            &evs[..got]
        );
    }
}

#[test]
fn spurious_events_report_an_idle_fd_and_read_says_eagain() {
    let p = sim(
        4,
        FaultPlan {
            spurious: 1.0,
            ..FaultPlan::none()
        },
    );
    let (_a, b, ep) = et_pair(&p);
    assert_eq!(wait(&p, ep, 0).unwrap(), vec![(1, Events::IN)]);
    let mut buf = [0u8; 4];
    assert_eq!(
        p.read(b, &mut buf).unwrap_err().raw_os_error(),
        Some(EAGAIN)
    );
    assert!(p.fault_counts().spurious >= 1);
}

#[test]
fn eintr_only_when_the_wait_would_block() {
    let p = sim(
        5,
        FaultPlan {
            eintr: 1.0,
            ..FaultPlan::none()
        },
    );
    let (a, _b, ep) = et_pair(&p);
    assert_eq!(wait(&p, ep, 0).unwrap(), vec![]);
    assert_eq!(wait(&p, ep, 10).unwrap_err().raw_os_error(), Some(EINTR));
    p.write(a, b"x").unwrap();
    assert_eq!(wait(&p, ep, 10).unwrap().len(), 1);
}

fn tcp_pair(p: &Sim) -> (i32, i32, i32) {
    let l = p.tcp_socket(0).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 8).unwrap();
    let c = p.tcp_socket(0).unwrap();
    p.connect(c, p.local_addr(l).unwrap()).unwrap();
    let (s, _) = p.accept4(l, SOCK_NONBLOCK).unwrap();
    p.set_nonblocking(c, true).unwrap();
    (l, c, s)
}

#[test]
fn a_reset_fault_turns_a_segment_into_econnreset_on_both_ends() {
    let p = sim(
        6,
        FaultPlan {
            reset: 1.0,
            ..FaultPlan::none()
        },
    );
    let (_l, c, s) = tcp_pair(&p);
    p.write(c, b"hello").unwrap();
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, s, Some(EpollEvent::new(Events::IN, 0)))
        .unwrap();
    let evs = wait(&p, ep, 100).unwrap();
    assert!(evs[0].1.contains(Events::ERR | Events::HUP), "{evs:?}");
    let mut buf = [0u8; 8];
    assert_eq!(
        p.read(s, &mut buf).unwrap_err().raw_os_error(),
        Some(ECONNRESET)
    );
    // The reset server end stays ready (level-triggered); stop watching it so that the waits
    // below let time pass until the client's reset arrives.
    p.epoll_ctl(ep, EPOLL_CTL_DEL, s, None).unwrap();
    p.epoll_ctl(
        ep,
        EPOLL_CTL_ADD,
        c,
        Some(EpollEvent::new(Events::IN | Events::ET, 1)),
    )
    .unwrap();
    while p.pending() > 0 {
        wait(&p, ep, 100).unwrap();
    }
    assert_eq!(
        p.read(c, &mut buf).unwrap_err().raw_os_error(),
        Some(ECONNRESET)
    );
    assert_eq!(p.fault_counts().resets, 1);
}

#[test]
fn accept_abort_fails_with_econnaborted_and_resets_the_client() {
    let p = sim(
        7,
        FaultPlan {
            accept_abort: 1.0,
            ..FaultPlan::none()
        },
    );
    let l = p.tcp_socket(0).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 8).unwrap();
    let c = p.tcp_socket(0).unwrap();
    p.connect(c, p.local_addr(l).unwrap()).unwrap();
    let e = p.accept4(l, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(ECONNABORTED));
    let mut buf = [0u8; 4];
    assert_eq!(
        p.read(c, &mut buf).unwrap_err().raw_os_error(),
        Some(ECONNRESET)
    );
}

#[test]
fn a_timeout_and_a_delivery_on_the_same_instant_go_either_way() {
    let outcome = |timer_first: f64| {
        let p = sim(
            8,
            FaultPlan {
                timer_first,
                quantum_ns: 1_000_000,
                ..FaultPlan::none()
            },
        );
        let (_l, c, s) = tcp_pair(&p);
        let ep = p.epoll_create1(0).unwrap();
        p.epoll_ctl(ep, EPOLL_CTL_ADD, s, Some(EpollEvent::new(Events::IN, 0)))
            .unwrap();
        p.write(c, b"x").unwrap();
        // The segment lands on the next whole millisecond, which is the wait's deadline.
        let due = p.next_event_ns().unwrap();
        let ms = (due - p.now_ns()).div_ceil(1_000_000) as i32;
        assert_eq!(p.now_ns() + ms as u64 * 1_000_000, due);
        wait(&p, ep, ms).unwrap().len()
    };
    assert_eq!(outcome(0.0), 1, "readiness first");
    assert_eq!(outcome(1.0), 0, "timeout first");
}

#[test]
fn same_seed_same_faults_and_swarm_plans_vary_by_seed() {
    let run = |seed| {
        let p = sim(seed, FaultPlan::chaos());
        let (a, b, ep) = et_pair(&p);
        let mut got = Vec::new();
        for i in 0..50u8 {
            let _ = p.write(a, &[i; 7]);
            let _ = wait(&p, ep, 0);
            let mut buf = [0u8; 16];
            while let Ok(n) = p.read(b, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        (got, p.fault_counts(), p.fingerprint())
    };
    let (bytes, counts, fp) = run(9);
    assert_eq!(run(9), (bytes.clone(), counts, fp));
    assert!(
        counts.short_reads > 0 && counts.short_writes > 0,
        "{counts:?}"
    );
    let plans: Vec<_> = (0..16).map(FaultPlan::swarm).collect();
    assert_eq!(plans[3], FaultPlan::swarm(3));
    assert!(plans.iter().any(|p| p != &plans[0]));
    assert!(plans.iter().any(|p| p.edge == EdgePolicy::EmptyToNonEmpty));
}

//! The fault plan's newer knobs: the cost model, per-run families, injected errnos and the
//! dropped event. Each is off in `FaultPlan::none()`; each does what the table in `faults.rs`
//! says, and leaves kernel state as Linux would.

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{errno::*, *};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_sim::{CostModel, FaultPlan, Latency, Sim, SimConfig, Vary, Violation};

fn with(seed: u64, faults: FaultPlan) -> Sim {
    Sim::with_config(
        seed,
        SimConfig {
            faults,
            ..SimConfig::default()
        },
    )
}

/// A listener and `n` connected client sockets (blocking connects, so each handshake is done
/// on the client side).
fn listener_with_clients(p: &Sim, n: usize) -> (Fd, Vec<Fd>) {
    let l = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 64).unwrap();
    let addr = p.local_addr(l).unwrap();
    let clients = (0..n)
        .map(|_| {
            let c = p.tcp_socket(0).unwrap();
            p.connect(c, addr).unwrap();
            c
        })
        .collect();
    (l, clients)
}

/// The largest batch an `epoll_wait` returns while 8 clients each send 20 messages, one every
/// turn, to an edge-triggered reader loop.
fn largest_batch(faults: FaultPlan) -> usize {
    let p = with(1, faults);
    let (l, clients) = listener_with_clients(&p, 8);
    let ep = p.epoll_create1(0).unwrap();
    let mut conns = Vec::new();
    while conns.len() < clients.len() {
        match p.accept4(l, SOCK_NONBLOCK) {
            Ok((fd, _)) => {
                let ev = EpollEvent::new(Events::IN | Events::ET, fd as u64);
                p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(ev)).unwrap();
                conns.push(fd);
            }
            Err(_) => {
                p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], 1).unwrap();
            }
        }
    }
    let mut evs = [EpollEvent::EMPTY; 16];
    let mut largest = 0;
    for _ in 0..20 {
        for &c in &clients {
            p.write(c, b"ping").unwrap();
        }
        for _ in 0..clients.len() {
            let n = p.epoll_wait(ep, &mut evs, 5).unwrap();
            largest = largest.max(n);
            for ev in &evs[..n] {
                while p.read(ev.data as Fd, &mut [0; 64]).is_ok() {}
            }
        }
    }
    largest
}

#[test]
fn the_cost_model_makes_epoll_wait_return_batches() {
    let free = largest_batch(FaultPlan::none());
    let loaded = largest_batch(FaultPlan {
        cost: Some(Box::new(CostModel {
            call: Some(Latency::Uniform(2_000, 20_000)),
            turn: Some(Latency::Uniform(50_000, 100_000)),
        })),
        ..FaultPlan::none()
    });
    assert!(loaded > free, "batches: {free} free, {loaded} under load");
    assert!(loaded >= 4, "{loaded}");
}

#[test]
fn the_cost_model_moves_the_clock_and_counts_what_it_charged() {
    let p = with(
        3,
        FaultPlan {
            cost: Some(Box::new(CostModel {
                call: Some(Latency::Uniform(1_000, 1_000)),
                turn: None,
            })),
            ..FaultPlan::none()
        },
    );
    let [a, b] = p.socketpair(0).unwrap();
    p.write(a, b"x").unwrap();
    p.read(b, &mut [0; 1]).unwrap();
    assert_eq!(p.now_ns(), 3_000);
    assert_eq!(p.fault_counts().cost_ns, 3_000);
}

#[test]
fn a_plan_that_varies_all_families_runs_some_seeds_quiet() {
    let all = FaultPlan {
        vary: Vary::All,
        ..FaultPlan::chaos().under_load()
    };
    let quiet = (0..4000).filter(|&s| all.for_run(s).is_quiet()).count();
    assert!(quiet > 0, "no seed of 4000 ran the quiet plan");
    let full = (0..4000)
        .filter(|&s| all.for_run(s).short_read > 0.0)
        .count();
    assert!((1600..2400).contains(&full), "{full}");
    // A quiet plan varies into itself.
    assert_eq!(FaultPlan::none().for_run(9), FaultPlan::none());
}

/// `f` again while it fails with `EMFILE` (as a loop that waits for a descriptor to free).
fn retry<T>(mut f: impl FnMut() -> std::io::Result<T>) -> T {
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(EMFILE) => {}
            r => return r.unwrap(),
        }
    }
}

#[test]
fn emfile_on_accept_consumes_nothing() {
    let p = with(
        5,
        FaultPlan {
            emfile: 0.5,
            ..FaultPlan::none()
        },
    );
    let l = retry(|| p.tcp_socket(SOCK_NONBLOCK));
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 64).unwrap();
    let addr = p.local_addr(l).unwrap();
    let ep = retry(|| p.epoll_create1(0));
    for _ in 0..4 {
        let c = retry(|| p.tcp_socket(0));
        p.connect(c, addr).unwrap();
    }
    let before = p.fault_counts().emfile;
    let (mut accepted, mut emfile) = (0, 0);
    while accepted < 4 {
        match p.accept4(l, SOCK_NONBLOCK) {
            Ok(_) => accepted += 1,
            Err(e) if e.raw_os_error() == Some(EMFILE) => emfile += 1,
            Err(e) if e.raw_os_error() == Some(EAGAIN) => {
                p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], 1).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Every queued connection was still there after each EMFILE.
    assert!(emfile > 0);
    assert_eq!(p.fault_counts().emfile - before, emfile);
}

#[test]
fn emfile_on_pipe2_leaves_no_descriptor_behind() {
    let p = with(
        2,
        FaultPlan {
            emfile: 1.0,
            ..FaultPlan::none()
        },
    );
    let e = p.pipe2(0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EMFILE));
    assert_eq!(p.open_files(), 0);
    // Bad flags are EINVAL first, as on Linux: the fault never replaces another error.
    assert_eq!(p.pipe2(-1).unwrap_err().raw_os_error(), Some(EINVAL));
}

#[test]
fn enfile_fails_every_call_that_makes_a_file_but_never_dup() {
    let p = with(
        2,
        FaultPlan {
            enfile: 1.0,
            ..FaultPlan::none()
        },
    );
    let enfile = |r: std::io::Result<Fd>| r.unwrap_err().raw_os_error();
    assert_eq!(enfile(p.tcp_socket(0)), Some(ENFILE));
    assert_eq!(enfile(p.epoll_create1(0)), Some(ENFILE));
    assert_eq!(enfile(p.eventfd(0, 0)), Some(ENFILE));
    assert_eq!(p.pipe2(0).unwrap_err().raw_os_error(), Some(ENFILE));
    assert_eq!(p.socketpair(0).unwrap_err().raw_os_error(), Some(ENFILE));
    assert_eq!(p.open_files(), 0, "a failed call left a file behind");
    assert_eq!(p.fault_counts().enfile, 5);
    // Bad flags are EINVAL first, as on Linux: the fault never replaces another error.
    assert_eq!(p.pipe2(-1).unwrap_err().raw_os_error(), Some(EINVAL));

    // `dup` makes a descriptor but no file: Linux's dup(2) cannot fail with ENFILE.
    let q = with(
        4,
        FaultPlan {
            enfile: 0.5,
            ..FaultPlan::none()
        },
    );
    let ep = loop {
        match q.epoll_create1(0) {
            Err(e) if e.raw_os_error() == Some(ENFILE) => {}
            r => break r.unwrap(),
        }
    };
    for _ in 0..32 {
        q.dup(ep).unwrap();
    }
}

#[test]
fn enobufs_fails_tcp_socket_only_and_creates_nothing() {
    let p = with(
        3,
        FaultPlan {
            enobufs: 1.0,
            ..FaultPlan::none()
        },
    );
    assert_eq!(p.tcp_socket(0).unwrap_err().raw_os_error(), Some(ENOBUFS));
    assert_eq!(p.open_files(), 0);
    assert_eq!(p.fault_counts().enobufs, 1);
    // Not a socket() of AF_INET: untouched.
    let [a, b] = p.socketpair(0).unwrap();
    let [r, w] = p.pipe2(0).unwrap();
    p.write(a, b"x").unwrap();
    p.write(w, b"y").unwrap();
    let mut buf = [0; 1];
    assert_eq!(p.read(b, &mut buf).unwrap(), 1);
    assert_eq!(p.read(r, &mut buf).unwrap(), 1);
    assert_eq!(p.fault_counts().enobufs, 1);
}

#[test]
fn enomem_file_fails_the_calls_that_allocate_an_object_and_creates_nothing() {
    let p = with(
        3,
        FaultPlan {
            enomem_file: 1.0,
            ..FaultPlan::none()
        },
    );
    let enomem = Some(ENOMEM);
    assert_eq!(p.eventfd(0, 0).unwrap_err().raw_os_error(), enomem);
    assert_eq!(p.epoll_create1(0).unwrap_err().raw_os_error(), enomem);
    assert_eq!(p.socketpair(0).unwrap_err().raw_os_error(), enomem);
    assert_eq!(p.open_files(), 0, "a failed call left a file behind");
    assert_eq!(p.fault_counts().enomem_file, 3);
    // Linux gives pipe2 ENFILE and TCP socket ENOBUFS for the same shortage: not this fault.
    let [r, _w] = p.pipe2(0).unwrap();
    p.tcp_socket(0).unwrap();
    p.dup(r).unwrap();

    // accept4 fails before it takes the connection: it stays queued, its data intact.
    let p = with(
        11,
        FaultPlan {
            enomem_file: 0.5,
            ..FaultPlan::none()
        },
    );
    let (l, c) = listener_with_clients(&p, 1);
    p.set_nonblocking(l, false).unwrap();
    p.write(c[0], b"hi").unwrap();
    let mut failures = 0;
    let s = loop {
        match p.accept4(l, 0) {
            Ok((s, _)) => break s,
            Err(e) if e.raw_os_error() == enomem => failures += 1,
            Err(e) => panic!("{e}"),
        }
    };
    let mut buf = [0; 4];
    assert!(failures > 0, "seed 11 draws no ENOMEM: pick another seed");
    assert_eq!(p.read(s, &mut buf).unwrap(), 2, "after {failures} ENOMEM");
    assert_eq!(p.fault_counts().enomem_file, failures);
}

#[test]
fn enomem_on_epoll_ctl_add_registers_nothing() {
    let p = with(
        2,
        FaultPlan {
            enomem: 1.0,
            ..FaultPlan::none()
        },
    );
    let ep = p.epoll_create1(0).unwrap();
    let [a, _b] = p.socketpair(0).unwrap();
    let ev = Some(EpollEvent::new(Events::IN, 0));
    assert_eq!(
        p.epoll_ctl(ep, EPOLL_CTL_ADD, a, ev)
            .unwrap_err()
            .raw_os_error(),
        Some(ENOMEM)
    );
    assert_eq!(
        p.epoll_ctl(ep, EPOLL_CTL_MOD, a, ev)
            .unwrap_err()
            .raw_os_error(),
        Some(ENOENT),
        "nothing was registered"
    );
}

#[test]
fn eintr_io_interrupts_a_blocking_read_only_when_it_would_sleep() {
    let p = with(
        2,
        FaultPlan {
            eintr_io: 1.0,
            ..FaultPlan::none()
        },
    );
    let [a, b] = p.socketpair(0).unwrap();
    assert_eq!(
        p.read(a, &mut [0; 4]).unwrap_err().raw_os_error(),
        Some(EINTR)
    );
    p.write(b, b"hi").unwrap();
    assert_eq!(
        p.read(a, &mut [0; 4]).unwrap(),
        2,
        "data waiting: no sleep, no EINTR"
    );
    assert_eq!(p.fault_counts().eintr_io, 1);
}

/// An edge-triggered reader over one TCP connection; `n` messages sent one per turn.
fn et_reader(p: &Sim, n: usize) -> std::io::Result<usize> {
    let (l, clients) = listener_with_clients(p, 1);
    let ep = p.epoll_create1(0)?;
    let mut evs = [EpollEvent::EMPTY; 4];
    let s = loop {
        match p.accept4(l, SOCK_NONBLOCK) {
            Ok((s, _)) => break s,
            Err(_) => {
                p.epoll_wait(ep, &mut evs, 1)?;
            }
        }
    };
    let ev = EpollEvent::new(Events::IN | Events::ET, 7);
    p.epoll_ctl(ep, EPOLL_CTL_ADD, s, Some(ev))?;
    let mut got = 0;
    for _ in 0..n {
        p.write(clients[0], b"msg")?;
        p.epoll_wait(ep, &mut evs, 10)?;
        while let Ok(k) = p.read(s, &mut [0; 64]) {
            got += k;
        }
    }
    // Wait for the rest: a correct loop never sleeps with data it was told about unread.
    let _ = p.epoll_wait(ep, &mut evs, 10);
    Ok(got)
}

#[test]
fn a_dropped_event_is_a_lost_wakeup_the_oracle_sees() {
    let p = with(
        4,
        FaultPlan {
            drop_event: 1.0,
            drop_event_max: 1,
            ..FaultPlan::none()
        },
    );
    // The loop reads only after a reported event; the first one is dropped.
    let (l, clients) = listener_with_clients(&p, 1);
    let ep = p.epoll_create1(0).unwrap();
    let (s, _) = loop {
        if let Ok(x) = p.accept4(l, SOCK_NONBLOCK) {
            break x;
        }
        p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], 1).unwrap();
    };
    let ev = EpollEvent::new(Events::IN | Events::ET, 7);
    p.epoll_ctl(ep, EPOLL_CTL_ADD, s, Some(ev)).unwrap();
    p.write(clients[0], b"hello").unwrap();
    let mut evs = [EpollEvent::EMPTY; 4];
    // The event is dropped; the wait goes on, and the oracle finds the stranded connection.
    let e = p.epoll_wait(ep, &mut evs, -1).unwrap_err();
    assert!(e.to_string().contains("lost-wakeup"), "{e}");
    assert!(matches!(p.violation(), Some(Violation::LostWakeup { fd, .. }) if fd == s));
    assert_eq!(p.fault_counts().dropped_events, 1);

    // Without the fault the same loop is fine, and with it off nothing is dropped.
    let p = with(4, FaultPlan::none());
    assert_eq!(et_reader(&p, 5).unwrap(), 15);
    assert_eq!(p.fault_counts().dropped_events, 0);
}

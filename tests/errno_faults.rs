//! The simulated kernel's injected errnos (`FaultPlan::emfile`, `eintr`, `eintr_io`, `reset`)
//! and the ones it produces (`EAGAIN` on a full pipe or eventfd) against real Linux: in the
//! situation the fault stands for, the real call fails with the same errno and leaves the same
//! state behind. Descriptor exhaustion needs a lowered `RLIMIT_NOFILE`, which is process-wide:
//! the real arm runs in a child process (this test binary, re-run on one test). A signal
//! without `SA_RESTART` comes from `netpoll_realnet::process::interrupted`.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{errno::*, EPOLL_CTL_ADD, O_NONBLOCK, SOCK_NONBLOCK};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_realnet::{process, RealNet};
use netpoll_sim::{FaultPlan, Sim, SimConfig};

const CHILD: &str = "NETPOLL_ERRNO_FAULTS_CHILD";

/// A listener with one connection queued (the client has sent 5 bytes), and the client.
fn queued<P: Poller>(p: &P) -> (Fd, Fd) {
    let l = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 8).unwrap();
    let c = p.tcp_socket(0).unwrap();
    p.connect(c, p.local_addr(l).unwrap()).unwrap();
    p.write(c, b"hello").unwrap();
    (l, c)
}

/// After `accept4` failed with `EMFILE` (`fill` made every descriptor taken, `free` gives one
/// back), the connection is still queued, its data intact.
fn accept_after_emfile<P: Poller>(p: &P, l: Fd, free: impl FnOnce()) {
    let e = p.accept4(l, SOCK_NONBLOCK).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EMFILE), "{} accept4: {e}", p.name());
    free();
    // A blocking accept: on the sim the handshake's last ACK may still be in flight.
    p.set_nonblocking(l, false).unwrap();
    let (s, _) = p.accept4(l, 0).unwrap();
    let mut buf = [0; 8];
    assert_eq!(p.read(s, &mut buf).unwrap(), 5, "{}", p.name());
    assert_eq!(&buf[..5], b"hello");
}

#[test]
fn emfile_on_accept4_leaves_the_connection_queued() {
    if std::env::var_os(CHILD).is_some() {
        // The real arm, in the child: take every descriptor under a lowered limit.
        let p = RealNet::new();
        let (l, _c) = queued(&p);
        let top = p.dup(l).unwrap();
        netpoll_realnet::process::set_fd_limit(top as u64 + 1).unwrap();
        let mut spare = vec![top];
        while let Ok(fd) = p.dup(l) {
            spare.push(fd);
        }
        accept_after_emfile(&p, l, || p.close(spare.pop().unwrap()).unwrap());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "emfile_on_accept4_leaves_the_connection_queued",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the real arm failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The sim arm, twice: descriptors really exhausted (`max_fds`), and the injected fault,
    // which must leave the same state.
    let p = Sim::with_config(
        1,
        SimConfig {
            max_fds: 6,
            ..SimConfig::default()
        },
    );
    let (l, _c) = queued(&p);
    let spare = p.dup(l).unwrap();
    accept_after_emfile(&p, l, || p.close(spare).unwrap());

    for seed in 0..20 {
        let p = Sim::with_config(
            seed,
            SimConfig {
                faults: FaultPlan {
                    emfile: 0.5,
                    ..FaultPlan::none()
                },
                ..SimConfig::default()
            },
        );
        let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| queued(&p)));
        let Ok((l, _c)) = setup else {
            continue; // the fault hit the set-up's own socket calls
        };
        p.set_nonblocking(l, false).unwrap();
        let mut hits = 0;
        let s = loop {
            match p.accept4(l, 0) {
                Ok((s, _)) => break s,
                Err(e) if e.raw_os_error() == Some(EMFILE) => hits += 1,
                Err(e) => panic!("seed {seed}: {e}"),
            }
        };
        let mut buf = [0; 8];
        assert_eq!(
            p.read(s, &mut buf).unwrap(),
            5,
            "seed {seed} after {hits} EMFILE"
        );
    }
}

fn sim_with(seed: u64, faults: FaultPlan) -> Sim {
    Sim::with_config(
        seed,
        SimConfig {
            faults,
            ..SimConfig::default()
        },
    )
}

/// A call's outcome as the errno's number, or the count.
fn errno(r: io::Result<usize>) -> Result<usize, i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// An epoll instance with `fd` registered (level-triggered) for `events`, key 7.
fn watch<P: Poller>(p: &P, fd: Fd, events: Events) -> Fd {
    let ep = p.epoll_create1(0).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(EpollEvent::new(events, 7)))
        .unwrap();
    ep
}

/// After a blocking `epoll_wait` failed with `EINTR`: the registration is intact, and the next
/// write to `a` makes `b` (registered on `ep`) reported readable, with the byte there.
fn epoll_wait_after_eintr<P: Poller>(p: &P, e: io::Error, ep: Fd, a: Fd, b: Fd) {
    assert_eq!(e.raw_os_error(), Some(EINTR), "{}: {e}", p.name());
    assert_eq!(p.write(a, b"x").unwrap(), 1);
    let mut evs = [EpollEvent::EMPTY; 2];
    assert_eq!(p.epoll_wait(ep, &mut evs, -1).unwrap(), 1, "{}", p.name());
    assert_eq!(
        (evs[0].events, evs[0].data),
        (Events::IN, 7),
        "{}",
        p.name()
    );
    let mut buf = [0; 4];
    assert_eq!(p.read(b, &mut buf).unwrap(), 1);
}

#[test]
fn eintr_on_epoll_wait_loses_no_registration() {
    let real = RealNet::new();
    let [a, b] = real.socketpair(0).unwrap();
    let ep = watch(&real, b, Events::IN);
    let e = process::interrupted(|| real.epoll_wait(ep, &mut [EpollEvent::EMPTY; 2], -1));
    epoll_wait_after_eintr(&real, e.unwrap_err(), ep, a, b);

    // The sim's `eintr` fault, at every blocking epoll_wait.
    let sim = sim_with(
        1,
        FaultPlan {
            eintr: 1.0,
            ..FaultPlan::none()
        },
    );
    let [a, b] = sim.socketpair(0).unwrap();
    let ep = watch(&sim, b, Events::IN);
    let e = sim.epoll_wait(ep, &mut [EpollEvent::EMPTY; 2], -1);
    epoll_wait_after_eintr(&sim, e.unwrap_err(), ep, a, b);
    assert_eq!(sim.fault_counts().eintr, 1);
}

/// After a blocking read on `r` failed with `EINTR`: no byte was consumed, the next write to
/// `w` is read whole, and the file is still blocking.
fn read_after_eintr<P: Poller>(p: &P, e: io::Error, w: Fd, r: Fd) {
    assert_eq!(e.raw_os_error(), Some(EINTR), "{}: {e}", p.name());
    assert_eq!(p.write(w, b"after").unwrap(), 5);
    let mut buf = [0; 8];
    assert_eq!(p.read(r, &mut buf).unwrap(), 5, "{}", p.name());
    assert_eq!(&buf[..5], b"after");
}

#[test]
fn eintr_on_a_blocking_read_consumes_nothing() {
    // A socketpair and a pipe: `read` on each sleeps, and a signal without SA_RESTART ends the
    // sleep with EINTR.
    let real = RealNet::new();
    let [a, b] = real.socketpair(0).unwrap();
    let [r, w] = real.pipe2(0).unwrap();
    for (w, r) in [(a, b), (w, r)] {
        let e = process::interrupted(|| real.read(r, &mut [0; 8]));
        read_after_eintr(&real, e.unwrap_err(), w, r);
    }

    // The sim's `eintr_io` fault, at every read about to sleep.
    let sim = sim_with(
        1,
        FaultPlan {
            eintr_io: 1.0,
            ..FaultPlan::none()
        },
    );
    let [a, b] = sim.socketpair(0).unwrap();
    let [r, w] = sim.pipe2(0).unwrap();
    for (w, r) in [(a, b), (w, r)] {
        let e = sim.read(r, &mut [0; 8]);
        read_after_eintr(&sim, e.unwrap_err(), w, r);
    }
    assert_eq!(sim.fault_counts().eintr_io, 2);
}

/// After a blocking write into the full pipe `w` failed with `EINTR`: nothing was written (the
/// reader finds exactly the `full` bytes that were there), and the pipe takes writes again
/// once read.
fn write_after_eintr<P: Poller>(p: &P, e: io::Error, r: Fd, w: Fd, full: usize) {
    assert_eq!(e.raw_os_error(), Some(EINTR), "{}: {e}", p.name());
    p.set_nonblocking(r, true).unwrap();
    let mut buf = vec![0u8; full + 4096];
    assert_eq!(p.read(r, &mut buf).unwrap(), full, "{}", p.name());
    assert!(buf[..full].iter().all(|&b| b == 7));
    assert_eq!(p.write(w, b"more").unwrap(), 4);
}

/// After a blocking `accept4` on an empty queue failed with `EINTR`: the listener still
/// listens; a connection made then is accepted and carries data. (Each blocking call waits in
/// `epoll_wait` first, so that it does not sleep: on the sim the fault hits every call about to
/// sleep, an accept waiting for the handshake's last ACK included.)
fn accept_after_eintr<P: Poller>(p: &P, e: io::Error, l: Fd) {
    assert_eq!(e.raw_os_error(), Some(EINTR), "{}: {e}", p.name());
    let c = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    match p.connect(c, p.local_addr(l).unwrap()) {
        Err(e) if e.raw_os_error() != Some(EINPROGRESS) => panic!("{}: connect: {e}", p.name()),
        _ => {}
    }
    let ready = |fd: Fd| {
        let ep = watch(p, fd, Events::IN);
        let n = p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], 5000).unwrap();
        p.close(ep).unwrap();
        assert_eq!(n, 1, "{}: fd {fd} never became readable", p.name());
    };
    ready(l);
    let (s, _) = p.accept4(l, 0).unwrap();
    assert_eq!(p.write(c, b"ok").unwrap(), 2);
    ready(s);
    let mut buf = [0; 4];
    assert_eq!(p.read(s, &mut buf).unwrap(), 2, "{}", p.name());
}

fn blocking_listener<P: Poller>(p: &P) -> Fd {
    let l = p.tcp_socket(0).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 8).unwrap();
    l
}

#[test]
fn eintr_on_a_blocking_write_and_accept4_changes_nothing() {
    let real = RealNet::new();
    let [r, w] = real.pipe2(O_NONBLOCK).unwrap();
    let full = fill(&real, w);
    real.set_nonblocking(w, false).unwrap();
    let e = process::interrupted(|| real.write(w, b"x"));
    write_after_eintr(&real, e.unwrap_err(), r, w, full);
    let l = blocking_listener(&real);
    let e = process::interrupted(|| real.accept4(l, 0));
    accept_after_eintr(&real, e.unwrap_err(), l);

    let sim = sim_with(
        1,
        FaultPlan {
            eintr_io: 1.0,
            ..FaultPlan::none()
        },
    );
    let [r, w] = sim.pipe2(O_NONBLOCK).unwrap();
    let full = fill(&sim, w);
    sim.set_nonblocking(w, false).unwrap();
    let e = sim.write(w, b"x");
    write_after_eintr(&sim, e.unwrap_err(), r, w, full);
    let l = blocking_listener(&sim);
    let e = sim.accept4(l, 0);
    accept_after_eintr(&sim, e.unwrap_err(), l);
    assert_eq!(
        sim.fault_counts().eintr_io,
        2,
        "the write and the first accept4"
    );
}

/// An established TCP connection: (listener, client, accepted server end).
fn tcp_pair<P: Poller>(p: &P) -> (Fd, Fd, Fd) {
    let (l, c) = queued(p);
    p.set_nonblocking(l, false).unwrap();
    let (s, _) = p.accept4(l, SOCK_NONBLOCK).unwrap();
    let mut buf = [0; 8];
    let ep = watch(p, s, Events::IN);
    p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], 1000).unwrap();
    assert_eq!(p.read(s, &mut buf).unwrap(), 5, "{}", p.name());
    p.close(ep).unwrap();
    (l, c, s)
}

/// What a socket whose connection was reset shows, once the reset has arrived: its events,
/// then each call in turn.
fn after_reset<P: Poller>(p: &P, s: Fd) -> Vec<String> {
    // Wait on IN only (ERR comes regardless): a writable socket would end every wait at once,
    // and on the sim no time would pass for the reset to arrive.
    let waiter = watch(p, s, Events::IN);
    let mut evs = [EpollEvent::EMPTY; 1];
    let mut waits = 0;
    while !evs[0].events.contains(Events::ERR) {
        waits += 1;
        assert!(waits < 100, "{}: no reset arrived: {:?}", p.name(), evs[0]);
        p.epoll_wait(waiter, &mut evs, 100).unwrap();
    }
    p.close(waiter).unwrap();
    let ep = watch(p, s, Events::IN | Events::OUT | Events::RDHUP);
    assert_eq!(p.epoll_wait(ep, &mut evs, 0).unwrap(), 1);
    let mut buf = [0; 8];
    let out = vec![
        format!("events {:?}", evs[0].events),
        format!("read {:?}", errno(p.read(s, &mut buf))),
        format!("read again {:?}", errno(p.read(s, &mut buf))),
        format!("SO_ERROR {:?}", p.take_socket_error(s).unwrap()),
        format!("write {:?}", errno(p.write(s, b"x"))),
        format!(
            "peer_addr {:?}",
            p.peer_addr(s).map_err(|e| e.raw_os_error())
        ),
    ];
    let n = p.epoll_wait(ep, &mut evs, 0).unwrap();
    let mut out = out;
    out.push(format!("events after {n} {:?}", evs[0].events));
    p.close(ep).unwrap();
    out
}

#[test]
fn the_reset_fault_leaves_what_a_linger0_close_leaves() {
    // Linux: the peer closes with SO_LINGER 0, sending a reset. ECONNRESET on the read, then
    // end of file, SO_ERROR consumed, EPIPE on the write.
    let real = RealNet::new();
    let (_l, c, s) = tcp_pair(&real);
    real.set_linger(c, Some(0)).unwrap();
    real.close(c).unwrap();
    let linux = after_reset(&real, s);
    assert_eq!(linux[1], format!("read {:?}", Err::<usize, _>(ECONNRESET)));
    assert_eq!(linux[4], format!("write {:?}", Err::<usize, _>(EPIPE)));

    // The sim's `reset` fault: the client's first data segment arrives as a reset.
    for seed in 0..5 {
        let sim = sim_with(
            seed,
            FaultPlan {
                reset: 1.0,
                ..FaultPlan::none()
            },
        );
        let l = blocking_listener(&sim);
        let c = sim.tcp_socket(0).unwrap();
        sim.connect(c, sim.local_addr(l).unwrap()).unwrap();
        let (s, _) = sim.accept4(l, SOCK_NONBLOCK).unwrap();
        sim.write(c, b"hello").unwrap();
        assert_eq!(after_reset(&sim, s), linux, "seed {seed}");
        assert!(sim.fault_counts().resets > 0);
    }
}

/// Fills `w` (non-blocking) until `EAGAIN`; returns how many bytes it took.
fn fill<P: Poller>(p: &P, w: Fd) -> usize {
    let chunk = [7u8; 4096];
    let mut total = 0;
    loop {
        match p.write(w, &chunk) {
            Ok(n) => total += n,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(EAGAIN), "{}: {e}", p.name());
                return total;
            }
        }
    }
}

/// A full pipe: `EAGAIN`, not writable; reading one page (4096 bytes) makes it writable again
/// and the next write fits, nothing lost.
fn full_pipe<P: Poller>(p: &P) -> (usize, Vec<String>) {
    let [r, w] = p.pipe2(O_NONBLOCK).unwrap();
    let total = fill(p, w);
    let ep = watch(p, w, Events::OUT);
    let mut evs = [EpollEvent::EMPTY; 1];
    let mut out = vec![
        format!("write {:?}", errno(p.write(w, b"x"))),
        format!("writable {}", p.epoll_wait(ep, &mut evs, 0).unwrap()),
    ];
    let mut page = [0u8; 4096];
    out.push(format!("read {:?}", errno(p.read(r, &mut page))));
    out.push(format!(
        "writable {}",
        p.epoll_wait(ep, &mut evs, 0).unwrap()
    ));
    out.push(format!("write {:?}", errno(p.write(w, &page))));
    out.push(format!("write {:?}", errno(p.write(w, b"x"))));
    (total, out)
}

#[test]
fn eagain_on_a_full_pipe_as_on_linux() {
    let (real_total, linux) = full_pipe(&RealNet::new());
    let (sim_total, sim) = full_pipe(&Sim::new(1));
    assert_eq!(linux[0], format!("write {:?}", Err::<usize, _>(EAGAIN)));
    assert_eq!(sim, linux);
    assert_eq!(sim_total, real_total, "the pipe's capacity");
}

/// An eventfd at its maximum (2^64 - 2): a write of 1 is `EAGAIN` and changes nothing; reading
/// it empties it, and the write fits again.
fn eventfd_at_max<P: Poller>(p: &P) -> Vec<String> {
    let e = p.eventfd(0, netpoll::sys::EFD_NONBLOCK).unwrap();
    let ep = watch(p, e, Events::IN | Events::OUT);
    let mut evs = [EpollEvent::EMPTY; 1];
    let mut out = vec![format!(
        "write max {:?}",
        errno(p.write(e, &(u64::MAX - 1).to_ne_bytes()))
    )];
    out.push(format!(
        "write 1 {:?}",
        errno(p.write(e, &1u64.to_ne_bytes()))
    ));
    let n = p.epoll_wait(ep, &mut evs, 0).unwrap();
    out.push(format!("events {n} {:?}", evs[0].events));
    let mut v = [0u8; 8];
    out.push(format!("read {:?}", errno(p.read(e, &mut v))));
    out.push(format!("value {}", u64::from_ne_bytes(v)));
    out.push(format!(
        "write 1 {:?}",
        errno(p.write(e, &1u64.to_ne_bytes()))
    ));
    out
}

#[test]
fn eagain_on_an_eventfd_at_its_maximum_as_on_linux() {
    let linux = eventfd_at_max(&RealNet::new());
    assert_eq!(linux[1], format!("write 1 {:?}", Err::<usize, _>(EAGAIN)));
    assert_eq!(eventfd_at_max(&Sim::new(1)), linux);
}

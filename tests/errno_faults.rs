//! The simulated kernel's injected errnos (`FaultPlan::emfile`, ...) against real Linux: in the
//! situation the fault stands for, the real call fails with the same errno and leaves the same
//! state behind. Descriptor exhaustion needs a lowered `RLIMIT_NOFILE`, which is process-wide:
//! the real arm runs in a child process (this test binary, re-run on one test).

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{errno::*, SOCK_NONBLOCK};
use netpoll::{Fd, Poller};
use netpoll_realnet::RealNet;
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

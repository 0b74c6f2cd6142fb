//! The interposer's test binary. The override of libc's calls is process-wide, so these tests
//! live in a binary of their own; each runs an unmodified std, mio or tokio program on a
//! simulated kernel of its own (tests run on threads of their own, one run each), or on real
//! loopback through the same forwarding definitions.

use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use netpoll_interpose::{run, SIM_BASE};
use netpoll_sim::Sim;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn errno(r: i32) -> Option<i32> {
    (r == -1).then(|| io::Error::last_os_error().raw_os_error().unwrap())
}

#[test]
fn std_net_echo_runs_on_the_sim() {
    let sim = Sim::new(7);
    let got = run(&sim, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(l.as_raw_fd() >= SIM_BASE, "a simulated descriptor");
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        c.set_nodelay(true).unwrap();
        assert!(c.nodelay().unwrap());
        c.write_all(b"ping").unwrap();
        let mut buf = [0; 4];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    assert_eq!(&got, b"ping");
    assert!(sim.stats().syscalls >= 6, "the calls went to the sim");
    assert!(
        sim.now_ns() > 0,
        "the blocking read waited for the delivery in virtual time"
    );
}

#[test]
fn sleep_and_clock_are_virtual() {
    let sim = Sim::new(1);
    let (a, b) = run(&sim, || {
        let a = Instant::now();
        std::thread::sleep(Duration::from_secs(10));
        (a, Instant::now())
    });
    assert_eq!(b - a, Duration::from_secs(10));
    assert_eq!(sim.now_ns(), 10_000_000_000);
}

/// An echo with `conns` clients on a tokio `current_thread` runtime, as an unmodified program
/// would write it, after a `nap`; returns each client's echo length.
async fn tokio_echo(conns: usize, nap: Duration) -> Vec<usize> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    tokio::time::sleep(nap).await;
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            tokio::spawn(async move {
                let msg = vec![i as u8; 1000 + 37 * i];
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                c.write_all(&msg).await.unwrap();
                c.shutdown().await.unwrap();
                let mut back = Vec::new();
                tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back))
                    .await
                    .expect("the echo within 5 s")
                    .unwrap();
                assert_eq!(back, msg, "client {i}");
                back.len()
            })
        })
        .collect();
    let mut lens = Vec::new();
    for c in clients {
        lens.push(c.await.unwrap());
    }
    lens
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tokio_echo_on_sim(seed: u64, conns: usize) -> (Vec<usize>, (u64, u64), u64) {
    let sim = Sim::new(seed);
    let lens = run(&sim, || {
        current_thread().block_on(tokio_echo(conns, Duration::from_secs(10)))
    });
    (lens, sim.fingerprint(), sim.now_ns())
}

#[test]
fn tokio_echo_on_the_sim_is_deterministic_by_seed() {
    let (lens, fp, now) = tokio_echo_on_sim(7, 20);
    assert_eq!(lens.len(), 20);
    assert!(
        now >= 10_000_000_000,
        "the 10-second sleep passed virtually"
    );
    let again = tokio_echo_on_sim(7, 20);
    assert_eq!((lens.clone(), fp, now), again, "one seed, one run (seed 7)");
    let other = tokio_echo_on_sim(8, 20);
    assert_eq!(
        other.0, lens,
        "the same application-level results on another seed"
    );
    assert_ne!(
        other.1, fp,
        "another seed orders the deliveries differently (seed 8)"
    );
}

#[test]
fn tokio_echo_two_arms_give_the_same_results() {
    // The same program on real loopback (without the nap, which would take real seconds).
    let real = current_thread().block_on(tokio_echo(8, Duration::ZERO));
    let sim = Sim::new(3);
    let on_sim = run(&sim, || {
        current_thread().block_on(tokio_echo(8, Duration::ZERO))
    });
    assert_eq!(real, on_sim);
}

#[test]
fn mio_poll_and_waker_run_on_the_sim() {
    let sim = Sim::new(5);
    run(&sim, || {
        let mut poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(9)).unwrap();
        let mut events = mio::Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_millis(250)))
            .unwrap();
        assert!(events.is_empty());
        waker.wake().unwrap();
        poll.poll(&mut events, None).unwrap();
        let toks: Vec<_> = events.iter().map(|e| e.token()).collect();
        assert_eq!(toks, [mio::Token(9)]);
    });
    assert_eq!(
        sim.now_ns(),
        250_000_000,
        "the empty poll waited its timeout virtually"
    );
}

#[test]
fn a_spinning_yield_loop_lets_virtual_time_move() {
    let sim = Sim::new(2);
    let spins = run(&sim, || {
        current_thread().block_on(async {
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut spins = 0u64;
            while Instant::now() < deadline {
                tokio::task::yield_now().await;
                spins += 1;
            }
            spins
        })
    });
    assert!(sim.now_ns() >= 1_000_000_000);
    assert!(spins > 0);
}

#[test]
fn getrandom_and_hash_keys_follow_the_seed() {
    let draw = |seed| {
        std::thread::spawn(move || {
            let sim = Sim::new(seed);
            run(&sim, || {
                let mut b = [0u8; 16];
                // SAFETY: a 16-byte buffer.
                let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
                assert_eq!(n, 16);
                (b, RandomState::new().hash_one(42u64))
            })
        })
        .join()
        .unwrap()
    };
    let a = draw(11);
    assert_eq!(a, draw(11), "seed 11");
    assert_ne!(a.0, draw(12).0, "seed 12");
}

#[test]
fn a_hang_is_reported_not_hung() {
    let sim = Sim::new(4);
    let r = catch_unwind(AssertUnwindSafe(|| {
        run(&sim, || {
            current_thread().block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                l.accept().await // nobody connects
            })
        })
    }));
    assert!(r.is_err(), "tokio stops on the EDEADLK its epoll_wait got");
    assert!(
        !netpoll_interpose::on_sim(),
        "the thread is off the sim after the panic"
    );
}

#[test]
fn spawn_blocking_fails_with_a_clear_error() {
    let sim = Sim::new(4);
    let r = catch_unwind(AssertUnwindSafe(|| {
        run(&sim, || {
            current_thread().block_on(async { tokio::task::spawn_blocking(|| 1).await })
        })
    }));
    let msg = match r {
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
        Ok(v) => panic!("spawn_blocking ran on the sim: {v:?}"),
    };
    assert!(msg.contains("spawn"), "tokio names the failed spawn: {msg}");
}

#[test]
fn unsupported_use_fails_with_an_errno() {
    // Another thread, started before the run (a thread on a run cannot start one), tries a
    // read on the run's descriptor while the run is alive.
    let (to_other, fds) = std::sync::mpsc::channel::<i32>();
    let (to_run, answers) = std::sync::mpsc::channel();
    let other = std::thread::spawn(move || {
        let fd = fds.recv().unwrap();
        let mut b = [0u8; 1];
        // SAFETY: a read into a 1-byte buffer.
        let r = errno(unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) } as i32);
        to_run.send(r).unwrap();
    });
    let sim = Sim::new(6);
    let fd = run(&sim, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = l.as_raw_fd();
        // SAFETY: plain calls on a descriptor we own, with valid (or NULL) pointers.
        unsafe {
            assert_eq!(errno(libc::fcntl(fd, libc::F_GETLK)), Some(libc::EINVAL));
            let v: libc::c_int = 1 << 16;
            let p = (&v as *const libc::c_int).cast();
            assert_eq!(
                errno(libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    p,
                    4
                )),
                Some(libc::ENOPROTOOPT)
            );
            assert_eq!(
                errno(libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0)),
                Some(libc::EAFNOSUPPORT)
            );
            assert_eq!(
                errno(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)),
                Some(libc::EPROTONOSUPPORT)
            );
            let mut b = [0u8; 1];
            assert_eq!(
                errno(libc::recv(fd, b.as_mut_ptr().cast(), 1, libc::MSG_OOB) as i32),
                Some(libc::EOPNOTSUPP)
            );
            let flags = libc::fcntl(fd, libc::F_GETFL);
            assert_eq!(flags & libc::O_NONBLOCK, 0);
            assert_eq!(flags & libc::O_ACCMODE, libc::O_RDWR);
        }
        to_other.send(fd).unwrap();
        assert_eq!(
            answers.recv().unwrap(),
            Some(libc::EBADF),
            "another thread's read"
        );
        std::mem::forget(l);
        fd
    });
    // After the run: its descriptors are gone; closing one succeeds quietly.
    let mut b = [0u8; 1];
    // SAFETY: plain calls on a number, with a valid buffer.
    unsafe {
        assert_eq!(
            errno(libc::read(fd, b.as_mut_ptr().cast(), 1) as i32),
            Some(libc::EBADF)
        );
        assert_eq!(libc::fcntl(fd, libc::F_GETFD), 0);
        assert_eq!(libc::close(fd), 0);
    }
    other.join().unwrap();
}

#[test]
fn a_socket_outliving_its_run_drops_quietly() {
    let sim = Sim::new(9);
    let l = run(&sim, || TcpListener::bind("127.0.0.1:0").unwrap());
    drop(l); // std's debug build checks the descriptor with fcntl(F_GETFD) before closing it
}

#[test]
fn real_sockets_are_forwarded_off_the_sim() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(l.as_raw_fd() < SIM_BASE);
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    c.write_all(b"real").unwrap();
    let mut buf = [0; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"real");
}

/// Writes four bytes and reads them at once, without waiting, on a non-blocking socket.
fn read_right_after_write() -> io::Result<usize> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    c.write_all(b"now!").unwrap();
    s.read(&mut [0u8; 16])
}

#[test]
fn linux_loopback_timing_two_armed() {
    // Linux: loopback data is readable before `write` returns.
    let real = read_right_after_write().unwrap();
    let sim = Sim::with_config(1, netpoll_sim::SimConfig::linux_loopback());
    let loopback = run(&sim, read_right_after_write).unwrap();
    assert_eq!((real, loopback), (4, 4));
    // The latency model (the kernel's default) delivers after a network delay instead.
    let sim = Sim::new(1);
    let modelled = run(&sim, read_right_after_write);
    assert_eq!(modelled.unwrap_err().kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn std_peek_leaves_the_bytes_queued() {
    // std's `TcpStream::peek` is `recv(MSG_PEEK)`; `set_nonblocking` + `peek` is the usual way to
    // ask "is anything there" without consuming it.
    let sim = Sim::with_config(14, netpoll_sim::SimConfig::linux_loopback());
    run(&sim, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 8];
        let e = s.peek(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        c.write_all(b"peek").unwrap();
        s.set_nonblocking(false).unwrap();
        assert_eq!(
            s.peek(&mut b).unwrap(),
            4,
            "a blocking peek waits for the data"
        );
        assert_eq!(&b[..4], b"peek");
        assert_eq!(s.peek(&mut b[..2]).unwrap(), 2);
        let mut queued: libc::c_int = -1;
        // SAFETY: FIONREAD writes one int.
        let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut queued) };
        assert_eq!((r, queued), (0, 4), "FIONREAD counts the peeked bytes");
        // SAFETY: no pointers.
        let fl = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl, libc::O_RDWR, "blocking again");
        // SAFETY: no pointers.
        let r = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_SETFL, fl | libc::O_APPEND) };
        assert_eq!(
            (r, errno(r)),
            (-1, Some(libc::EINVAL)),
            "O_APPEND is refused with a message"
        );
        let mut all = [0u8; 8];
        assert_eq!(
            s.read(&mut all).unwrap(),
            4,
            "the peeked bytes are still there"
        );
        assert_eq!(&all[..4], b"peek");
        drop(c);
        assert_eq!(s.peek(&mut b).unwrap(), 0, "EOF through peek");
    });
}

#[test]
fn connect_timeout_polls_the_sim() {
    // std's `connect_timeout` connects non-blocking, then `poll`s for writability.
    let sim = Sim::new(12);
    run(&sim, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c =
            TcpStream::connect_timeout(&l.local_addr().unwrap(), Duration::from_secs(1)).unwrap();
        assert_eq!(c.peer_addr().unwrap(), l.local_addr().unwrap());
        // Nobody listens on this port: refused, through the same path.
        let free = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let e = TcpStream::connect_timeout(&free, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn linger_reads_back_what_was_set() {
    let sim = Sim::new(13);
    run(&sim, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let get = || {
            let mut v = libc::linger {
                l_onoff: 7,
                l_linger: 7,
            };
            let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
            // SAFETY: a `struct linger` and its length.
            let r = unsafe {
                libc::getsockopt(
                    c.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&mut v as *mut libc::linger).cast(),
                    &mut len,
                )
            };
            assert_eq!(r, 0);
            (v.l_onoff, v.l_linger)
        };
        assert_eq!(get(), (0, 0), "off by default");
        let on = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a `struct linger` and its length.
        let r = unsafe {
            libc::setsockopt(
                c.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&on as *const libc::linger).cast(),
                8,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(get(), (1, 0));
    });
}

#[test]
fn dup2_dup3_and_epoll_pwait2_route_to_the_sim() {
    let sim = Sim::new(9);
    run(&sim, || {
        let mut sv = [0i32; 2];
        assert_eq!(
            // SAFETY: `sv` has room for two descriptors.
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) },
            0
        );
        let [a, b] = sv;
        assert!(a >= SIM_BASE && b >= SIM_BASE);
        // SAFETY: plain descriptors.
        let c = unsafe { libc::dup(b) };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::dup2(a, c) }, c);
        // SAFETY: as above.
        assert_eq!(errno(unsafe { libc::dup3(a, a, 0) }), Some(libc::EINVAL));
        // SAFETY: as above: a real descriptor number cannot take a simulated file.
        assert_eq!(errno(unsafe { libc::dup2(a, 0) }), Some(libc::EBADF));
        // SAFETY: as above.
        let ep = unsafe { libc::epoll_create1(0) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 5,
        };
        assert_eq!(
            // SAFETY: `ev` is a live event.
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, b, &mut ev) },
            0
        );
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_500_000,
        };
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let before = sim.now_ns();
        // SAFETY: `out` has room for 4 events; `ts` is live; a null mask.
        let n = unsafe { libc::epoll_pwait2(ep, out.as_mut_ptr(), 4, &ts, std::ptr::null()) };
        assert_eq!(n, 0);
        assert_eq!(
            sim.now_ns() - before,
            2_500_000,
            "virtual time to the nanosecond"
        );
        // SAFETY: `c` is `a` now: a write on it reaches `b`.
        assert_eq!(unsafe { libc::write(c, b"x".as_ptr().cast(), 1) }, 1);
        // SAFETY: as above, no timeout.
        let n = unsafe {
            libc::epoll_pwait2(ep, out.as_mut_ptr(), 4, std::ptr::null(), std::ptr::null())
        };
        assert_eq!((n, { out[0].u64 }), (1, 5));
    });
}

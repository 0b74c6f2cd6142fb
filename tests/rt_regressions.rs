//! Regressions named after what they guard.
//!
//! `stale_event_for_reused_fd` (golang/go#59545): an event queued for a descriptor that was
//! closed, and whose number was reused by a new registration, must not reach the new poll
//! descriptor. The kernel never produces one on a single thread (close removes the registration
//! and its queued events), but a multi-threaded loop can hold one in a batch while another
//! thread closes and reopens the number; here a wrapping Poller replays an old event on purpose.

mod rt_util;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use netpoll::rt::{self, Runtime, UnixStream};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

/// The tests here that open real descriptors hold this lock for their whole run:
/// `stale_event_for_reused_fd_real` asserts that a closed number is reused by the next
/// socketpair (lowest free), which another test opening descriptors on its own thread would take.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Poller that remembers the last epoll user data seen for each fd number, and can replay
/// one as an extra event.
struct Replaying<P> {
    inner: P,
    seen: RefCell<BTreeMap<Fd, EpollEvent>>,
    replay: RefCell<Option<EpollEvent>>,
}

impl<P: Poller> Poller for Replaying<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn epoll_create1(&self, flags: i32) -> io::Result<Fd> {
        self.inner.epoll_create1(flags)
    }
    fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()> {
        self.inner.epoll_ctl(epfd, op, fd, event)
    }
    fn epoll_wait(&self, epfd: Fd, events: &mut [EpollEvent], timeout: i32) -> io::Result<usize> {
        if let Some(ev) = self.replay.borrow_mut().take() {
            events[0] = ev;
            return Ok(1);
        }
        let n = self.inner.epoll_wait(epfd, events, timeout)?;
        for ev in &events[..n] {
            if ev.data != u64::MAX {
                self.seen.borrow_mut().insert(ev.data as u32 as Fd, *ev);
            }
        }
        Ok(n)
    }
    fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.inner.socketpair(flags)
    }
    fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.inner.pipe2(flags)
    }
    fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd> {
        self.inner.eventfd(initval, flags)
    }
    fn tcp_socket(&self, flags: i32) -> io::Result<Fd> {
        self.inner.tcp_socket(flags)
    }
    fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        self.inner.bind(fd, addr)
    }
    fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()> {
        self.inner.listen(fd, backlog)
    }
    fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        self.inner.connect(fd, addr)
    }
    fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> {
        self.inner.accept4(fd, flags)
    }
    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.inner.local_addr(fd)
    }
    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.inner.peer_addr(fd)
    }
    fn take_socket_error(&self, fd: Fd) -> io::Result<i32> {
        self.inner.take_socket_error(fd)
    }
    fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()> {
        self.inner.set_linger(fd, linger_secs)
    }
    fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(fd, buf)
    }
    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(fd, buf)
    }
    fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()> {
        self.inner.shutdown(fd, how)
    }
    fn close(&self, fd: Fd) -> io::Result<()> {
        self.inner.close(fd)
    }
    fn dup(&self, fd: Fd) -> io::Result<Fd> {
        self.inner.dup(fd)
    }
    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(fd, nonblocking)
    }
    fn now(&self) -> Duration {
        self.inner.now()
    }
}

/// Counts how often the wrapped future is polled.
struct Counted<F>(F, Arc<AtomicUsize>);

impl<F: Future + Unpin> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.0).poll(cx)
    }
}

fn stale_event_for_reused_fd<P: Poller + 'static>(inner: P) {
    let poller = Arc::new(Replaying {
        inner,
        seen: RefCell::new(BTreeMap::new()),
        replay: RefCell::new(None),
    });
    // `Arc<Replaying<P>>` is a Poller too (forwarding impl); keep a handle for the test.
    let mut rt = Runtime::new(Arc::clone(&poller)).unwrap();
    let p2 = poller.clone();
    rt.block_on(async move {
        // An old descriptor that got an event, then closed.
        let (a, b) = UnixStream::<Arc<Replaying<P>>>::pair()?;
        let old_fd = a.as_raw_fd();
        b.write_all(b"x").await?;
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).await?, 1);
        rt::sleep(Duration::from_millis(1)).await; // a turn, so the event is seen
        let mut old = *p2
            .seen
            .borrow()
            .get(&old_fd)
            .expect("an event for the old fd");
        old.events = Events::IN | Events::OUT;
        drop((a, b));
        // A new descriptor with the same number, with a reader parked on it.
        let (c, d) = UnixStream::<Arc<Replaying<P>>>::pair()?;
        assert_eq!(
            c.as_raw_fd(),
            old_fd,
            "lowest-free allocation reuses the number"
        );
        let c = std::rc::Rc::new(c);
        let c2 = c.clone();
        let polls = Arc::new(AtomicUsize::new(0));
        let reader = rt::spawn_local(Counted(
            Box::pin(async move {
                let mut buf = [0u8; 8];
                c2.read(&mut buf).await
            }),
            polls.clone(),
        ));
        rt::sleep(Duration::from_millis(1)).await;
        assert_eq!(polls.load(Ordering::SeqCst), 1, "parked after one poll");
        // Replay the old registration's event: it must be dropped, not wake the new reader.
        *p2.replay.borrow_mut() = Some(old);
        rt::sleep(Duration::from_millis(1)).await;
        assert!(
            p2.replay.borrow().is_none(),
            "the replayed event was delivered"
        );
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "a stale event woke the new descriptor's reader"
        );
        d.write_all(b"yz").await?;
        assert_eq!(reader.await??, 2);
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        Ok::<_, io::Error>(())
    })
    .unwrap()
    .unwrap();
}

#[test]
fn stale_event_for_reused_fd_real() {
    let _serial = serial();
    stale_event_for_reused_fd(RealNet::new());
}

#[test]
fn stale_event_for_reused_fd_sim() {
    for seed in rt_util::seeds() {
        stale_event_for_reused_fd(Sim::new(seed));
    }
}

/// A stream dropped where no runtime runs (here: after `block_on` handed it back) cannot reach
/// the Poller; its runtime closes the fd at its next turn, so the peer sees end of file instead
/// of waiting for ever (it leaked before).
#[test]
fn a_stream_dropped_off_the_runtime_is_closed_by_its_next_turn() {
    fn case<P: Poller + 'static>(mut rt: Runtime<P>, name: &str) {
        let (a, b) = rt
            .block_on(async { UnixStream::<P>::pair() })
            .expect("runtime")
            .expect("socketpair");
        drop(a); // no runtime on this thread now
        let n = rt
            .block_on(async move {
                // A bound, so that a regression fails instead of hanging the real arm.
                b.set_read_deadline(Some(rt::now() + Duration::from_secs(10)))?;
                let mut buf = [0u8; 8];
                b.read(&mut buf).await
            })
            .unwrap_or_else(|e| panic!("{name}: the peer never saw the close: {e}"))
            .expect("read");
        assert_eq!(n, 0, "{name}");
    }
    for seed in rt_util::seeds() {
        let rt = Runtime::seeded(rt_util::sim(seed), seed).expect("runtime");
        case(
            rt,
            &format!("sim seed {seed} (replay: NETPOLL_SEED={seed})"),
        );
    }
    let _serial = serial();
    case(Runtime::new(RealNet::new()).expect("runtime"), "real");
}

/// On a single-threaded runtime a descriptor's sides move by plain stores on the runtime's
/// thread (`pd`, "On an exclusive driver"), so `close` called on another thread must not touch
/// them: it panics (as it always did, at the fd's close) before it does, and the stream stays
/// open and usable on its runtime.
#[test]
fn close_off_the_runtime_thread_panics_before_touching_the_descriptor() {
    // The panic opens real descriptors (with `RUST_BACKTRACE` set, the backtrace reads the
    // binary to name its frames), so it must not run beside a test that counts on which
    // numbers are free (`stale_event_for_reused_fd_real` failed CI that way).
    let _serial = serial();
    let mut rt = Runtime::seeded(rt_util::sim(7), 7).expect("runtime");
    let (a, b) = rt
        .block_on(async { UnixStream::<Sim>::pair() })
        .expect("runtime")
        .expect("socketpair");
    let a = Arc::new(a);
    let off = {
        let a = a.clone();
        std::thread::spawn(move || a.close())
    };
    assert!(off.join().is_err(), "close off the runtime's thread panics");
    let got = rt
        .block_on(async move {
            a.write_all(b"ping").await?;
            let mut buf = [0u8; 8];
            let n = b.read(&mut buf).await?;
            a.close()?;
            Ok::<_, io::Error>(buf[..n].to_vec())
        })
        .expect("runtime")
        .expect("the stream is still open");
    assert_eq!(got, b"ping");
}

/// `woken_op_consumes_its_edge` (found in `rt-echo`'s traces): an operation woken by an edge
/// left the side `READY` after its successful retry, so the next operation on that side that
/// met `EAGAIN` consumed that stale edge and made the same syscall again: two `read`s returning
/// `EAGAIN` per park instead of one (a sixth of all syscalls in `rt-echo`). Go's `netpollblock`
/// consumes the notification that woke it; so does the woken operation now.
#[test]
fn woken_op_consumes_its_edge() {
    use netpoll_sim::trace::Op as TraceOp;
    for seed in rt_util::seeds() {
        let sim = std::rc::Rc::new(Sim::new(seed));
        sim.set_trace(true);
        let mut rt = Runtime::seeded(sim.clone(), seed).expect("runtime");
        let fd = rt
            .block_on(async {
                let (a, b) = UnixStream::<std::rc::Rc<Sim>>::pair()?;
                let fd = a.as_raw_fd();
                let reader = rt::spawn_local(async move {
                    let mut buf = [0u8; 4];
                    for _ in 0..3 {
                        // Full reads (no short-read shortcut): each read tries the syscall,
                        // meets EAGAIN once, parks, and is woken by the writer's edge.
                        let mut got = 0;
                        while got < 4 {
                            got += a.read(&mut buf[got..]).await?;
                        }
                    }
                    io::Result::Ok(())
                });
                for _ in 0..3 {
                    rt::sleep(Duration::from_millis(1)).await;
                    b.write_all(b"abcd").await?;
                }
                reader.await??;
                io::Result::Ok(fd)
            })
            .expect("runtime")
            .expect("case");
        let eagain = sim
            .take_trace()
            .iter()
            .filter(|r| {
                r.op == TraceOp::Read && r.fd == fd && r.ret == Err(netpoll::sys::errno::EAGAIN)
            })
            .count();
        assert_eq!(
            eagain, 3,
            "seed {seed}: one EAGAIN per park (replay: NETPOLL_SEED={seed} cargo test --test rt_regressions woken_op)"
        );
    }
}

/// `short_read_then_eof_without_an_edge` (found with `woken_op_consumes_its_edge`'s change, by
/// `rt_net`'s `half_close`): data and the peer's half-close arrive in one edge; the woken read
/// consumes it and returns the data, short. The short-read shortcut then parked the next read
/// without a syscall, but the end of file behind the data gets no edge of its own: the read
/// waited for ever. (Before, the edge left `READY` by the woken read hid this on one thread;
/// on a `MultiRuntime` the same interleaving was reachable when the edge landed between a
/// read's `EAGAIN` and its park.) A descriptor that has seen `RDHUP` no longer takes the
/// shortcut.
#[test]
fn short_read_then_eof_without_an_edge() {
    for seed in rt_util::seeds() {
        let mut rt = Runtime::seeded(Sim::new(seed), seed).expect("runtime");
        let r = rt.block_on(async {
            let (a, b) = UnixStream::<Sim>::pair()?;
            let reader = rt::spawn_local(async move {
                let mut buf = [0u8; 64];
                let mut got = Vec::new();
                loop {
                    let n = a.read(&mut buf).await?;
                    if n == 0 {
                        return io::Result::Ok(got);
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            });
            rt::sleep(Duration::from_millis(1)).await; // the reader parks first
            b.write_all(b"abc").await?;
            b.shutdown(std::net::Shutdown::Write)?;
            reader.await?
        });
        match r {
            Ok(Ok(got)) => assert_eq!(got, b"abc"),
            other => panic!(
                "seed {seed}: {other:?} (replay: NETPOLL_SEED={seed} cargo test --test rt_regressions short_read)"
            ),
        }
    }
}

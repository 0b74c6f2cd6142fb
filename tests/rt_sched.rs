//! The executors: spawning and joining, seeded determinism, deadlock reports, remote wakeups,
//! and the multi-threaded runtime.

mod rt_util;

use std::future::Future;
use std::io::ErrorKind;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use netpoll::rt::{self, MultiRuntime, Runtime, TcpListener, TcpStream, UnixStream};
use netpoll::Poller;
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;
use rt_util::{any_port, expect_kind};

type R = std::io::Result<()>;

#[allow(clippy::extra_unused_type_parameters)] // the same body on both kernels
async fn spawn_and_join<P: Poller + 'static>() -> R {
    let hs: Vec<_> = (0..50u64)
        .map(|i| {
            rt::spawn(async move {
                for _ in 0..i % 5 {
                    rt::yield_now().await;
                }
                i * 2
            })
        })
        .collect();
    let mut sum = 0;
    for h in hs {
        sum += h.await?;
    }
    assert_eq!(sum, 2 * (0..50).sum::<u64>());
    // Nested spawns.
    let inner = rt::spawn(async { rt::spawn(async { 7 }).await.unwrap() + 1 });
    assert_eq!(inner.await?, 8);
    Ok(())
}

two_arms!(spawn_and_join);

/// A scenario with many runnable tasks and some I/O; returns the order of events.
async fn interleaving() -> std::io::Result<Vec<u32>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = UnixStream::<Sim>::pair()?;
    let mut hs = Vec::new();
    for id in 0..6u32 {
        let log = log.clone();
        hs.push(rt::spawn(async move {
            for step in 0..4 {
                log.lock().unwrap().push(id * 10 + step);
                rt::yield_now().await;
            }
        }));
    }
    let log2 = log.clone();
    let reader = rt::spawn(async move {
        let mut buf = [0u8; 4];
        let n = b.read(&mut buf).await?;
        log2.lock().unwrap().push(100 + n as u32);
        Ok::<_, std::io::Error>(())
    });
    a.write_all(b"abc").await?;
    for h in hs {
        h.await?;
    }
    reader.await??;
    let v = log.lock().unwrap().clone();
    Ok(v)
}

fn run_interleaving(seed: u64) -> Vec<u32> {
    let mut rt = Runtime::seeded(Sim::new(seed), seed).unwrap();
    rt.block_on(interleaving()).unwrap().unwrap()
}

#[test]
fn same_seed_same_run_different_seeds_differ() {
    let mut distinct = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let a = run_interleaving(seed);
        let b = run_interleaving(seed);
        assert_eq!(a, b, "seed {seed} is not deterministic");
        distinct.insert(a);
    }
    assert!(
        distinct.len() > 4,
        "seeds should explore interleavings, got {} distinct",
        distinct.len()
    );
}

thread_local! {
    static HINTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_hint(_p: *const u8) {
    HINTS.with(|h| h.set(h.get() + 1));
}

/// A prefetch hint (`netpoll::hint`) is given for each task woken on the runtime's thread (and
/// by the simulated kernel ahead of its deliveries and of the calls on reported events), and
/// the run is the same with it. (The only test of this binary that installs one; the others
/// may run with it installed, which changes nothing they see.)
#[test]
fn a_prefetch_hint_is_given_for_woken_tasks_and_changes_nothing() {
    // Tasks parked on reads, woken by the writes' events; 40 round trips over TCP, so that the
    // kernel's warming of the next deliveries runs too.
    type S = std::rc::Rc<Sim>;
    let run = || {
        let sim = std::rc::Rc::new(Sim::new(3));
        let mut rt = Runtime::seeded(sim.clone(), 3).unwrap();
        let echoed = rt
            .block_on(async {
                let (a, b) = UnixStream::<S>::pair()?;
                let reader = rt::spawn(async move {
                    let mut buf = [0u8; 8];
                    let n = b.read(&mut buf).await?;
                    Ok::<_, std::io::Error>(n as u32)
                });
                for _ in 0..3 {
                    rt::yield_now().await;
                }
                a.write_all(b"ping").await?;
                let mut total = reader.await??;
                let ln = TcpListener::<S>::bind(any_port())?;
                let addr = ln.local_addr()?;
                let server = rt::spawn(async move { rt_util::echo(ln.accept().await?.0).await });
                let c = TcpStream::<S>::connect(addr).await?;
                for i in 0..40u8 {
                    c.write_all(&[i; 16]).await?;
                    let mut got = 0;
                    let mut buf = [0u8; 16];
                    while got < 16 {
                        got += c.read(&mut buf[got..]).await?;
                    }
                    total += u32::from(buf[15]);
                }
                c.shutdown(Shutdown::Write)?;
                server.await??;
                Ok::<_, std::io::Error>(total)
            })
            .unwrap()
            .unwrap();
        drop(rt);
        (echoed, sim.fingerprint())
    };
    let without = run();
    assert!(!netpoll::hint::installed());
    let (announced, many_unhinted) = many_at_once();
    assert_eq!(announced, 0, "announced without a hint");
    netpoll::hint::set_prefetch(count_hint).unwrap();
    let before = HINTS.with(|h| h.get());
    let with = run();
    assert_eq!(with, without, "a hint changed the run");
    assert!(
        HINTS.with(|h| h.get()) > before,
        "no hint was given on the runtime's thread"
    );
    // With many connections at once, the driver takes the kernel's look-ahead
    // (`Poller::upcoming`) for its descriptors: nobody else here asks for it.
    let (announced, fingerprint) = many_at_once();
    assert!(announced > 0, "the driver never took the look-ahead");
    assert_eq!(fingerprint, many_unhinted, "the look-ahead changed the run");
}

/// `rt_util::thousands_of_connections` on the single-threaded runtime over the simulated
/// kernel: what the kernel announced to the loop, and the run's fingerprint.
fn many_at_once() -> (u64, (u64, u64)) {
    let sim = std::rc::Rc::new(Sim::new(5));
    let mut rt = Runtime::seeded(sim.clone(), 5).unwrap();
    rt.block_on(rt_util::thousands_of_connections::<std::rc::Rc<Sim>>())
        .unwrap()
        .unwrap();
    drop(rt);
    (sim.stats().announced, sim.fingerprint())
}

#[test]
fn runtime_spawn_before_block_on() {
    let mut rt = Runtime::seeded(Sim::new(9), 9).unwrap();
    let h = rt.spawn(async { 41 });
    assert_eq!(rt.block_on(async { h.await.unwrap() + 1 }).unwrap(), 42);
}

#[test]
fn deadlock_is_reported_with_the_parked_tasks() {
    let mut rt = Runtime::seeded(Sim::new(3), 3).unwrap();
    let r = rt.block_on(async {
        let (a, _b) = UnixStream::<Sim>::pair()?;
        let fd = a.as_raw_fd();
        let t = rt::spawn(async move {
            let mut buf = [0u8; 1];
            a.read(&mut buf).await
        });
        let _ = t.await?;
        Ok::<_, std::io::Error>(fd)
    });
    let e = r.expect_err("nothing can ever write to the pair: the runtime must report a hang");
    assert_eq!(e.kind(), ErrorKind::Deadlock);
    let msg = e.to_string();
    assert!(msg.contains("task 1 parked on read fd"), "{msg}");
    assert!(msg.contains("main parked (not on a descriptor)"), "{msg}");
    assert!(msg.contains("seed 3"), "{msg}");
}

/// A one-shot signal set from a plain thread.
#[derive(Default)]
struct Flag {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Flag {
    fn set(&self) {
        let w = {
            let mut s = self.state.lock().unwrap();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

struct WaitFlag(Arc<Flag>);

impl Future for WaitFlag {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.state.lock().unwrap();
        if s.0 {
            Poll::Ready(())
        } else {
            s.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[test]
fn remote_wake_interrupts_a_blocked_loop() {
    let mut rt = Runtime::new(RealNet::new()).unwrap();
    rt.enable_remote_wakeups();
    for _ in 0..20 {
        let flag = Arc::new(Flag::default());
        let f2 = flag.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            f2.set();
        });
        // With nothing else to do the loop blocks in epoll_wait(-1): only the eventfd ends it.
        rt.block_on(WaitFlag(flag)).unwrap();
        t.join().unwrap();
    }
}

/// A spawned task (not the main future) woken from another thread goes through the shared
/// queue, and the eventfd ends the loop's wait; tasks woken on the loop's thread meanwhile go
/// through its local queue. Both kinds run to the end. (Under a timeout: a lost wake fails the
/// test instead of hanging it.)
#[test]
fn tasks_woken_from_other_threads_and_from_the_loop_both_run() {
    let mut rt = Runtime::new(RealNet::new()).unwrap();
    rt.enable_remote_wakeups();
    let out = rt
        .block_on(rt::timeout(Duration::from_secs(20), async {
            let flags: Vec<Arc<Flag>> = (0..8).map(|_| Arc::new(Flag::default())).collect();
            let remote: Vec<_> = flags
                .iter()
                .map(|f| rt::spawn(WaitFlag(f.clone())))
                .collect();
            // Local wakes: tasks that yield wake themselves on the loop's thread.
            let local: Vec<_> = (0..8u32)
                .map(|i| {
                    rt::spawn(async move {
                        for _ in 0..i {
                            rt::yield_now().await;
                        }
                        i
                    })
                })
                .collect();
            let setter = std::thread::spawn(move || {
                for f in flags {
                    std::thread::sleep(Duration::from_millis(1));
                    f.set();
                }
            });
            let mut sum = 0;
            for h in local {
                sum += h.await.unwrap();
            }
            for h in remote {
                h.await.unwrap();
            }
            setter.join().unwrap();
            sum
        }))
        .unwrap()
        .expect("every task ran before the timeout: no wake was lost");
    assert_eq!(out, (0..8).sum::<u32>());
}

/// A waker called on the runtime's thread while no `block_on` runs (no runtime context) queues
/// its task for the next `block_on`, which runs it (under a timeout: a lost wake fails the test
/// instead of hanging it).
#[test]
fn a_wake_between_two_block_ons_runs_at_the_next() {
    let mut rt = Runtime::new(RealNet::new()).unwrap();
    let flag = Arc::new(Flag::default());
    let f2 = flag.clone();
    let h = rt.block_on(async move {
        let h = rt::spawn(WaitFlag(f2));
        rt::yield_now().await; // the task runs once and parks
        Some(h)
    });
    let h = h.unwrap().expect("the handle");
    flag.set(); // outside block_on: through the shared queue
    rt.block_on(rt::timeout(Duration::from_secs(20), h))
        .unwrap()
        .expect("the task woken between the two block_ons ran in the second")
        .unwrap();
}

async fn echo_many(conns: usize) -> R {
    let ln = TcpListener::<RealNet>::bind(any_port())?;
    let addr = ln.local_addr()?;
    let server = rt::spawn(async move {
        loop {
            let (c, _) = ln.accept().await?;
            rt::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    let n = c.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    c.write_all(&buf[..n]).await?;
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<_, std::io::Error>(())
    });
    let hs: Vec<_> = (0..conns)
        .map(|i| {
            rt::spawn(async move {
                let c = TcpStream::<RealNet>::connect(addr).await?;
                let mut buf = [0u8; 64];
                for r in 0..5u8 {
                    let msg = [(i as u8).wrapping_add(r); 64];
                    c.write_all(&msg).await?;
                    let mut got = 0;
                    while got < 64 {
                        let n = c.read(&mut buf[got..]).await?;
                        assert!(n > 0);
                        got += n;
                    }
                    assert_eq!(buf, msg);
                }
                c.shutdown(Shutdown::Write)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .collect();
    for h in hs {
        h.await??;
    }
    assert!(!server.is_finished());
    Ok(())
}

#[test]
fn multi_echo_2000_connections_4_workers() {
    rt_util::on_multi(4, || echo_many(2000));
}

#[test]
fn multi_echo_1_worker() {
    rt_util::on_multi(1, || echo_many(200));
}

#[test]
fn multi_deadline_and_close() {
    rt_util::on_multi(3, || async {
        let (a, b) = UnixStream::<RealNet>::pair()?;
        let a = Arc::new(a);
        // A deadline set on one worker interrupts a poller blocked on another.
        let start = rt::now();
        a.set_read_deadline(Some(start + Duration::from_millis(30)))?;
        let mut buf = [0u8; 4];
        expect_kind(a.read(&mut buf).await, ErrorKind::TimedOut);
        assert!(rt::now() >= start + Duration::from_millis(30));
        a.set_read_deadline(None)?;
        // Close from another task wakes the parked reader.
        let a2 = a.clone();
        let reader = rt::spawn(async move {
            let mut buf = [0u8; 4];
            a2.read(&mut buf).await
        });
        rt::sleep(Duration::from_millis(5)).await;
        a.close()?;
        expect_kind(reader.await?, ErrorKind::NotConnected);
        drop(b);
        Ok(())
    });
}

#[test]
fn multi_task_panic_comes_back_through_its_handle() {
    let rt = MultiRuntime::new(RealNet::new(), 2).unwrap();
    let (e, after) = rt
        .block_on(async {
            let e = rt::spawn(async { panic!("boom in a task") })
                .await
                .expect_err("the task panicked");
            // The runtime goes on: another task runs after the panic.
            let after = rt::spawn(async { 5 })
                .await
                .expect("a task after the panic");
            (e, after)
        })
        .unwrap();
    assert!(e.is_panic() && !e.is_cancelled(), "{e:?}");
    assert_eq!(e.panic_message(), Some("boom in a task"));
    assert_eq!(after, 5);
    // The main future's own panic is resumed by block_on, as on the calling thread.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { panic!("boom in main") })
    }));
    let p = r.expect_err("the main future's panic must reach block_on");
    assert_eq!(p.downcast_ref::<&str>(), Some(&"boom in main"));
}

/// On the single-threaded runtime: a panicking task is an error through its handle (its
/// message and payload kept), `block_on` and the other tasks go on, and the descriptors the
/// panicking task held are closed.
#[test]
fn task_panic_comes_back_through_its_handle() {
    let sim = std::rc::Rc::new(Sim::new(4));
    let mut rt = Runtime::new(sim.clone()).unwrap();
    let files_before = sim.open_files();
    let (e, echoed) = rt
        .block_on(async {
            let (a, b) = UnixStream::<std::rc::Rc<Sim>>::pair()?;
            let bad = rt::spawn(async move {
                let _held = a; // dropped by the unwinding
                panic!("task {} gave up", 1);
            });
            let good = rt::spawn(async move {
                rt::yield_now().await;
                Ok::<_, std::io::Error>(b)
            });
            let e = bad.await.expect_err("panicked");
            let b = good.await??;
            // The panicking task's end of the pair was closed as it unwound: end of file.
            let mut buf = [0u8; 1];
            let eof = b.read(&mut buf).await?;
            Ok::<_, std::io::Error>((e, eof))
        })
        .unwrap()
        .unwrap();
    assert!(e.is_panic(), "{e:?}");
    assert_eq!(e.panic_message(), Some("task 1 gave up"));
    assert_eq!(e.to_string(), "task 1 panicked: task 1 gave up");
    assert_eq!(echoed, 0, "the dropped end reads as end of file");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), ErrorKind::Other);
    // Only the runtime's own descriptors (epoll, wake eventfd) remain.
    assert_eq!(sim.open_files(), files_before);
    let payload = rt
        .block_on(async { rt::spawn(async { std::panic::panic_any(17u32) }).await })
        .unwrap()
        .unwrap_err()
        .into_panic();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&17));
}

/// A task still running when its runtime is dropped ends as cancelled.
#[test]
fn dropping_the_runtime_cancels_its_tasks() {
    let mut rt = Runtime::new(Sim::new(2)).unwrap();
    let h = rt.spawn(std::future::pending::<()>());
    rt.block_on(rt::yield_now()).unwrap();
    assert!(!h.is_finished());
    drop(rt);
    assert!(h.is_finished());
    let mut rt = Runtime::new(Sim::new(3)).unwrap();
    let e = rt.block_on(h).unwrap().expect_err("cancelled");
    assert!(e.is_cancelled() && !e.is_panic(), "{e:?}");
}

/// On the single-threaded runtime a task of `rt::spawn` keeps its join state in its cell: its
/// value (unit or not), its panic and its cancellation by the runtime's drop come back through
/// the handle as through a separate join state, `is_finished` follows it, and a detached task
/// runs to its end. The handle's auto traits are those of the separate join state's handle.
#[test]
fn a_spawned_tasks_join_state_in_its_cell() {
    fn traits<T: Send + Sync + Unpin + std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    traits::<rt::JoinHandle<()>>();
    traits::<rt::JoinHandle<String>>();
    let mut rt = Runtime::seeded(Sim::new(5), 5).unwrap();
    let ran = Arc::new(Mutex::new(0u32));
    let (unit, text, e, pending) = rt
        .block_on({
            let ran = ran.clone();
            async move {
                let unit = rt::spawn(async { rt::yield_now().await });
                assert!(!unit.is_finished());
                assert_eq!(format!("{unit:?}"), "JoinHandle { finished: false }");
                let text = rt::spawn(async { String::from("forty-two") });
                let bad = rt::spawn(async {
                    rt::yield_now().await;
                    std::panic::panic_any(String::from("cell"));
                });
                drop(rt::spawn(async move {
                    rt::yield_now().await;
                    *ran.lock().unwrap() += 1;
                }));
                let pending = rt::spawn(std::future::pending::<u64>());
                let unit = unit.await;
                rt::yield_now().await;
                rt::yield_now().await;
                assert!(text.is_finished());
                assert_eq!(format!("{text:?}"), "JoinHandle { finished: true }");
                let text = text.await;
                let e = bad.await.expect_err("panicked");
                (unit, text, e, pending)
            }
        })
        .unwrap();
    unit.unwrap();
    assert_eq!(text.unwrap(), "forty-two");
    assert!(e.is_panic() && !e.is_cancelled(), "{e:?}");
    assert_eq!(e.to_string(), "task 3 panicked: cell");
    assert_eq!(*e.into_panic().downcast::<String>().unwrap(), "cell");
    assert_eq!(*ran.lock().unwrap(), 1, "the detached task ran");
    assert!(!pending.is_finished());
    drop(rt);
    assert!(pending.is_finished());
    let mut rt = Runtime::new(Sim::new(6)).unwrap();
    let e = rt.block_on(pending).unwrap().expect_err("cancelled");
    assert!(e.is_cancelled() && !e.is_panic(), "{e:?}");
    assert_eq!(e.to_string(), "task 0 was dropped unfinished");
}

/// A runtime over a shared `Rc<Sim>` (the borrowed-poller case): the test inspects the kernel
/// while the runtime uses it, inside and between `block_on` calls.
#[test]
fn a_test_inspects_the_sim_while_the_runtime_uses_it() {
    let sim = std::rc::Rc::new(Sim::new(9));
    let mut rt = Runtime::new(std::rc::Rc::clone(&sim)).unwrap();
    let before = sim.stats();
    let in_flight = rt
        .block_on(async {
            let ln = TcpListener::<std::rc::Rc<Sim>>::bind(any_port())?;
            let addr = ln.local_addr()?;
            let c = TcpStream::<std::rc::Rc<Sim>>::connect(addr).await?;
            c.write_all(b"ping").await?;
            // Inside the runtime: the segment is in flight on the sim's network.
            let in_flight = sim.pending();
            let (s, _) = ln.accept().await?;
            let mut buf = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                got += s.read(&mut buf[got..]).await?;
            }
            assert_eq!(&buf, b"ping");
            Ok::<_, std::io::Error>(in_flight)
        })
        .unwrap()
        .unwrap();
    assert!(in_flight > 0);
    assert!(
        sim.stats() != before,
        "the runtime's calls show in the shared sim"
    );
    assert!(sim.now_ns() > 0, "virtual time passed");
}

#[test]
fn multi_wake_from_plain_thread() {
    let rt = MultiRuntime::new(RealNet::new(), 2).unwrap();
    for _ in 0..20 {
        let flag = Arc::new(Flag::default());
        let f2 = flag.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            f2.set();
        });
        rt.block_on(WaitFlag(flag)).unwrap();
        t.join().unwrap();
    }
}

//! Threads on the simulated kernel under the interposer: `pthread_create`, futex waits and
//! wakes and `sched_yield` as switch points of the netpoll-threads scheduler
//! ([`netpoll_interpose::run_threads`]), and timed waits that follow virtual time.
//!
//! The tests run at once, with no lock of their own: the threads runtime admits one run that
//! hosts unmodified code at a time per process, so each seed's schedule is its own
//! (`Runner::run`, "One run at a time"; `tests/one_run.rs` checks it).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use netpoll_interpose::{run, run_threads};
use netpoll_sim::Sim;
use netpoll_threads::{FailureKind, Policy, Runner};

#[test]
fn std_threads_share_the_run() {
    let out = run_threads(Runner::new(1), Sim::new(1), || {
        let (tx, rx) = mpsc::channel();
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let tx = tx.clone();
                std::thread::spawn(move || tx.send(i).unwrap())
            })
            .collect();
        drop(tx);
        let mut got: Vec<i32> = rx.iter().collect();
        for h in hs {
            h.join().unwrap();
        }
        got.sort_unstable();
        got
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.value, vec![0, 1, 2]);
}

/// A tokio multi-thread echo with `workers` workers, `conns` clients and a `spawn_blocking`
/// per connection; returns what the clients got back.
fn tokio_echo(workers: usize, conns: usize) -> Vec<(usize, usize)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).await.unwrap();
                    let back = tokio::task::spawn_blocking(move || {
                        buf.reverse();
                        buf
                    })
                    .await
                    .unwrap();
                    s.write_all(&back).await.unwrap();
                    s.shutdown().await.unwrap();
                });
            }
        });
        let clients: Vec<_> = (0..conns)
            .map(|i| {
                tokio::spawn(async move {
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let msg = vec![i as u8; 100 + i];
                    c.write_all(&msg).await.unwrap();
                    c.shutdown().await.unwrap();
                    let mut back = Vec::new();
                    c.read_to_end(&mut back).await.unwrap();
                    assert_eq!(back, msg);
                    (i, back.len())
                })
            })
            .collect();
        let mut got = Vec::new();
        for c in clients {
            got.push(c.await.unwrap());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        got
    });
    drop(rt);
    out
}

/// One seeded run of the tokio echo: its results, schedule hash and kernel fingerprint.
fn tokio_run(runner: Runner, seed: u64) -> (Vec<(usize, usize)>, u64, (u64, u64)) {
    let out =
        run_threads(runner, Sim::new(seed), || tokio_echo(4, 6)).unwrap_or_else(|f| panic!("{f}"));
    let fp = out.kernel.with_sim(Sim::fingerprint);
    (out.value, out.report.schedule_hash(), fp)
}

#[test]
fn tokio_multi_thread_runtime_runs_on_the_sim() {
    let out = run_threads(Runner::new(7), Sim::new(7), || tokio_echo(4, 10))
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.value, (0..10).map(|i| (i, 100 + i)).collect::<Vec<_>>());
    let names = out.report.thread_names();
    // The run's first thread, `main` (the closure), four workers and the blocking pool.
    assert_eq!(
        names.iter().filter(|n| n.contains("tokio")).count(),
        5,
        "{names:?}"
    );
    // The one-second sleep at the end passed virtually.
    assert!(out.report.now_ns() >= 1_000_000_000);
}

#[test]
fn tokio_multi_thread_is_deterministic_by_seed() {
    for policy in [
        Policy::Random,
        Policy::Pct {
            depth: 3,
            steps: 2000,
        },
    ] {
        let runner = |s| Runner::new(s).policy(policy);
        let a = tokio_run(runner(3), 3);
        let b = tokio_run(runner(3), 3);
        assert_eq!(
            a, b,
            "one seed, one schedule and one kernel trace ({policy:?})"
        );
        let hashes: BTreeSet<u64> = (0..8).map(|s| tokio_run(runner(s), s).1).collect();
        assert!(
            hashes.len() >= 6,
            "{policy:?}: 8 seeds gave {} schedules",
            hashes.len()
        );
    }
}

#[test]
fn a_contended_std_mutex_blocks_in_the_scheduler() {
    let out = run_threads(Runner::new(5), Sim::new(5), || {
        let m = Arc::new(Mutex::new(0u32));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let mut g = m.lock().unwrap();
                        // A switch point while holding the lock: others contend for it.
                        std::thread::yield_now();
                        *g += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let n = *m.lock().unwrap();
        n
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.value, 200);
    let waits = out
        .report
        .schedule()
        .iter()
        .filter(|s| s.call.op == "futex_wait")
        .count();
    assert!(
        waits > 0,
        "the lock was contended, so some thread waited on its futex"
    );
}

#[test]
fn sched_yield_is_a_switch_point() {
    // Without a switch point in the loop, a spinner that runs first would hold the token for
    // ever; with one, the seed lets the setter run.
    let spun = (0..10).filter(|&seed| {
        let out = run_threads(Runner::new(seed), Sim::new(seed), || {
            let flag = Arc::new(AtomicBool::new(false));
            let t = std::thread::spawn({
                let flag = flag.clone();
                move || flag.store(true, Ordering::SeqCst)
            });
            let mut spins = 0u32;
            while !flag.load(Ordering::SeqCst) {
                std::thread::yield_now();
                spins += 1;
            }
            t.join().unwrap();
            spins
        })
        .unwrap_or_else(|f| panic!("{f}"));
        let yields = out
            .report
            .schedule()
            .iter()
            .filter(|s| s.call.op == "yield")
            .count();
        assert_eq!(
            yields, out.value as usize,
            "seed {seed}: one switch point per yield"
        );
        out.value > 0
    });
    assert!(
        spun.count() > 0,
        "some seed runs the spinner before the setter"
    );
}

/// Issue 11, part 1: timed waits with nobody to end them early move virtual time to their
/// deadline instead of waiting (or spinning) in real time.
#[test]
fn timed_waits_follow_virtual_time_on_threads() {
    let out = run_threads(Runner::new(8), Sim::new(8), || {
        let t0 = Instant::now();
        let (tx, rx) = mpsc::channel::<()>();
        assert!(rx.recv_timeout(Duration::from_secs(3)).is_err());
        let t1 = Instant::now();
        let pair = (Mutex::new(false), Condvar::new());
        let g = pair.0.lock().unwrap();
        let (_g, r) = pair.1.wait_timeout(g, Duration::from_secs(5)).unwrap();
        assert!(r.timed_out());
        let t2 = Instant::now();
        std::thread::park_timeout(Duration::from_secs(7));
        let t3 = Instant::now();
        drop(tx);
        [t1 - t0, t2 - t1, t3 - t2]
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        out.value,
        [3, 5, 7].map(Duration::from_secs),
        "each wait took exactly its timeout of virtual time"
    );
    assert_eq!(out.report.now_ns(), 15_000_000_000);
}

#[test]
fn a_timed_wait_is_woken_early_by_another_thread() {
    let out = run_threads(Runner::new(9), Sim::new(9), || {
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            tx.send(42).unwrap();
        });
        let start = Instant::now();
        let v = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        t.join().unwrap();
        (v, start.elapsed())
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.value, (42, Duration::from_secs(2)));
}

#[test]
fn timed_waits_follow_virtual_time_on_one_thread() {
    let sim = Sim::new(4);
    let took = run(&sim, || {
        let start = Instant::now();
        let (_tx, rx) = mpsc::channel::<()>();
        assert!(rx.recv_timeout(Duration::from_secs(3)).is_err());
        let pair = (Mutex::new(()), Condvar::new());
        let g = pair.0.lock().unwrap();
        assert!(pair
            .1
            .wait_timeout(g, Duration::from_secs(4))
            .unwrap()
            .1
            .timed_out());
        std::thread::park_timeout(Duration::from_secs(5));
        start.elapsed()
    });
    assert_eq!(took, Duration::from_secs(12));
    assert_eq!(sim.now_ns(), 12_000_000_000);
}

#[test]
fn a_deadlock_between_threads_is_reported_not_hung() {
    let r = run_threads(Runner::new(1), Sim::new(1), || {
        let (tx_a, rx_a) = mpsc::channel::<()>();
        let (tx_b, rx_b) = mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("waiter".into())
            .spawn(move || {
                rx_b.recv().unwrap();
                tx_a.send(()).unwrap();
            })
            .unwrap();
        rx_a.recv().unwrap();
        tx_b.send(()).unwrap();
        t.join().unwrap();
    });
    let f = r.expect_err("both threads wait for each other");
    assert_eq!(f.kind, FailureKind::Deadlock);
    let text = f.to_string();
    assert!(text.contains("futex_wait"), "{text}");
    assert!(
        text.contains("waiter"),
        "the report names the thread: {text}"
    );
}

#[test]
fn a_panic_on_a_simulated_thread_fails_the_run_with_its_message() {
    let r = run_threads(Runner::new(1), Sim::new(1), || -> u32 {
        panic!("boom on the sim")
    });
    let f = r.expect_err("the closure panicked");
    assert_eq!(f.kind, FailureKind::Panic);
    assert!(f.to_string().contains("boom on the sim"), "{f}");
}

/// A thread the run did not create (here, one started before it) is not scheduled: its calls
/// on the run's descriptors fail with `EBADF` and a message, and its own work goes on.
#[test]
fn a_thread_outside_the_run_gets_ebadf_on_its_descriptors() {
    let (to_out, from_run) = mpsc::channel::<i32>();
    let (to_run, from_out) = mpsc::channel::<(i64, i32)>();
    let outside = std::thread::spawn(move || {
        let fd = from_run.recv().unwrap();
        let buf = [1u8];
        // SAFETY: a one-byte buffer; the descriptor is only a number here.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), 1) };
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        to_run.send((r as i64, e)).unwrap();
    });
    let out = run_threads(Runner::new(6), Sim::new(6), move || {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        to_out.send(l.as_raw_fd()).unwrap();
        // The outside thread's wake does not reach the scheduler: poll with a timeout.
        loop {
            match from_out.recv_timeout(Duration::from_millis(1)) {
                Ok(v) => break v,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .unwrap_or_else(|f| panic!("{f}"));
    outside.join().unwrap();
    assert_eq!(out.value, (-1, libc::EBADF));
}

/// Prints one seeded multi-thread run's fingerprint when run as a child of
/// `one_seed_gives_one_fingerprint_in_two_processes`; does nothing otherwise.
#[test]
fn child_fingerprint() {
    let Ok(seed) = std::env::var("NETPOLL_THREADS_CHILD_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("a seed");
    let (results, schedule, (calls, trace)) = tokio_run(Runner::new(seed), seed);
    println!("fingerprint {results:?} {schedule:016x} {calls} {trace:016x}");
}

#[test]
fn one_seed_gives_one_fingerprint_in_two_processes() {
    let child = |seed: u64| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_fingerprint",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("NETPOLL_THREADS_CHILD_SEED", seed.to_string())
            .output()
            .expect("the test binary runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.find("fingerprint ").map(|i| l[i..].to_owned()))
            .unwrap_or_else(|| panic!("no fingerprint line in {text}"))
    };
    assert_eq!(child(11), child(11));
    assert_ne!(child(11), child(12));
}

#[test]
fn socket_options_are_shared_by_the_threads_of_a_run() {
    let out = run_threads(Runner::new(2), Sim::new(2), || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.set_nodelay(true).unwrap();
        std::thread::spawn(move || c.nodelay().unwrap())
            .join()
            .unwrap()
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(
        out.value,
        "TCP_NODELAY set on one thread reads back on another"
    );
}

/// A simulated thread that spins without a switch point holds the token: the watchdog reports
/// it with its last call (here after 300 ms of wall-clock time), and the test goes on.
#[test]
fn a_thread_spinning_without_a_switch_point_is_reported() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let r = run_threads(
        Runner::new(1).watchdog(Duration::from_millis(300)),
        Sim::new(1),
        || {
            let _l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            while !STOP.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        },
    );
    STOP.store(true, Ordering::SeqCst);
    let f = r.expect_err("the thread never reached a switch point");
    assert_eq!(f.kind, FailureKind::Spin);
    let text = f.to_string();
    assert!(text.contains("`main`") && text.contains("listen"), "{text}");
}

/// A lost update between two std threads (load, a switch point, store) is found by sweeping
/// seeds, and its seed replays it.
#[test]
fn a_race_between_std_threads_is_found_by_seed_and_replayed() {
    use std::sync::atomic::AtomicU32;
    let count = |seed: u64| {
        run_threads(Runner::new(seed), Sim::new(seed), || {
            let n = Arc::new(AtomicU32::new(0));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let n = n.clone();
                    std::thread::spawn(move || {
                        let v = n.load(Ordering::SeqCst);
                        std::thread::yield_now();
                        n.store(v + 1, Ordering::SeqCst);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            n.load(Ordering::SeqCst)
        })
        .unwrap_or_else(|f| panic!("{f}"))
        .value
    };
    let lost = (0..100)
        .find(|&s| count(s) != 2)
        .expect("some seed loses an update");
    assert_eq!(count(lost), 1, "seed {lost} replays the lost update");
    assert_eq!(count(lost), 1);
    assert!((0..100).any(|s| count(s) == 2), "and some seed does not");
}

/// std's other futex-based primitives: scoped threads, `RwLock`, `Barrier`, `OnceLock`.
#[test]
fn std_scope_rwlock_barrier_and_oncelock_run_on_simulated_threads() {
    use std::sync::{Barrier, OnceLock, RwLock};
    for seed in 0..20 {
        let out = run_threads(Runner::new(seed), Sim::new(seed), || {
            let lock = RwLock::new(Vec::new());
            let barrier = Barrier::new(3);
            let once = OnceLock::new();
            std::thread::scope(|s| {
                for i in 0..3 {
                    let (lock, barrier, once) = (&lock, &barrier, &once);
                    s.spawn(move || {
                        let first = *once.get_or_init(|| {
                            std::thread::yield_now();
                            i
                        });
                        barrier.wait();
                        let seen = lock.read().unwrap().len();
                        std::thread::yield_now();
                        lock.write().unwrap().push((i, first, seen));
                    });
                }
            });
            lock.into_inner().unwrap()
        })
        .unwrap_or_else(|f| panic!("{f}"));
        let v = out.value;
        assert_eq!(v.len(), 3, "seed {seed}");
        assert!(
            v.iter().all(|e| e.1 == v[0].1),
            "seed {seed}: one initialiser: {v:?}"
        );
    }
}

/// FINDINGS.md T4: with `EdgePolicy::EmptyToNonEmpty` (a write into a non-empty buffer makes
/// no new edge, as on other kernels), tokio's multi-thread runtime hangs: mio's eventfd waker is
/// written on every wake and never read, so after the first wake the counter stays non-zero and
/// later wakes of the worker parked in `epoll_wait` make no edge. On Linux every eventfd write
/// wakes the waiters. Each seed's hang is reported as a deadlock and replays; the same seeds
/// pass with Linux's edges.
#[test]
fn finding_t4_tokio_multi_thread_loses_driver_wakes_under_empty_to_nonempty_edges() {
    use netpoll_sim::{EdgePolicy, FaultPlan, SimConfig};
    let coalescing = |seed| {
        let faults = FaultPlan {
            edge: EdgePolicy::EmptyToNonEmpty,
            ..FaultPlan::none()
        };
        Sim::with_config(
            seed,
            SimConfig {
                faults,
                ..SimConfig::default()
            },
        )
    };
    for seed in 0..5 {
        let hang = |sim| {
            run_threads(Runner::new(seed), sim, || tokio_echo(4, 6))
                .expect_err("the driver's wake is lost")
        };
        let (a, b) = (hang(coalescing(seed)), hang(coalescing(seed)));
        assert_eq!(a.kind, FailureKind::Deadlock, "{a}");
        assert!(a.to_string().contains("epoll_wait(fd 3, -1)"), "{a}");
        assert_eq!(
            a.to_string(),
            b.to_string(),
            "seed {seed} replays the same hang"
        );
        let linux = run_threads(Runner::new(seed), Sim::new(seed), || tokio_echo(4, 6));
        assert!(linux.is_ok(), "seed {seed} with Linux's edges");
    }
}

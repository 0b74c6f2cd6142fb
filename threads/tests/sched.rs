//! The scheduler: determinism by seed, blocking and virtual time, the failure reports, and a
//! race found by seed and replayed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use netpoll::sys::*;
use netpoll::{EpollEvent, Events, Poller};
use netpoll_sim::Sim;
use netpoll_threads::{
    current, park, spawn, yield_now, FailureKind, Outcome, Policy, Runner, ThreadedSim,
};

/// Three writers put their ids into one pipe, four bytes each; returns the bytes in pipe order.
fn writers(k: ThreadedSim) -> Vec<u8> {
    let [r, w] = k.pipe2(O_NONBLOCK).unwrap();
    let hs: Vec<_> = (0..3u8)
        .map(|i| {
            let k = k.clone();
            spawn(format!("w{i}"), move || {
                for _ in 0..4 {
                    k.write(w, &[b'a' + i]).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join();
    }
    let mut buf = [0u8; 64];
    let n = k.read(r, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn run_writers(seed: u64, policy: Policy) -> Outcome<Vec<u8>> {
    Runner::new(seed)
        .policy(policy)
        .run(Sim::new(seed), writers)
        .unwrap_or_else(|f| panic!("{f}"))
}

const PCT: Policy = Policy::Pct {
    depth: 3,
    steps: 40,
};

#[test]
fn same_seed_same_schedule_and_outcome() {
    for policy in [Policy::Random, PCT] {
        for seed in [0, 1, 77, u64::MAX] {
            let a = run_writers(seed, policy);
            let b = run_writers(seed, policy);
            assert_eq!(a.value, b.value, "seed {seed} {policy}");
            assert_eq!(
                a.report.schedule(),
                b.report.schedule(),
                "seed {seed} {policy}"
            );
            assert_eq!(a.report.schedule_hash(), b.report.schedule_hash());
            assert_eq!(
                a.kernel.with_sim(Sim::fingerprint),
                b.kernel.with_sim(Sim::fingerprint)
            );
            assert_eq!(a.value.len(), 12);
        }
    }
}

#[test]
fn different_seeds_different_schedules() {
    // 3 writers x 4 writes plus main: the interleavings number in the millions. The counts are
    // printed (`--nocapture`) for the record in BENCHMARKS.md.
    for policy in [Policy::Random, PCT] {
        let hashes: BTreeSet<u64> = (0..100)
            .map(|s| run_writers(s, policy).report.schedule_hash())
            .collect();
        let outcomes: BTreeSet<Vec<u8>> = (0..100).map(|s| run_writers(s, policy).value).collect();
        println!(
            "{policy}: {} distinct schedules, {} distinct outcomes over 100 seeds",
            hashes.len(),
            outcomes.len()
        );
        // PCT explores priority orders (4 threads: 24) times change points, by design far
        // fewer schedules than uniform choice (100 of 100 seeds distinct when written).
        let (min_schedules, min_outcomes) = match policy {
            Policy::Random => (90, 50),
            Policy::Pct { .. } => (20, 10),
        };
        assert!(
            hashes.len() >= min_schedules,
            "{policy}: only {} schedules",
            hashes.len()
        );
        assert!(
            outcomes.len() >= min_outcomes,
            "{policy}: only {} outcomes",
            outcomes.len()
        );
    }
}

#[test]
fn pct_depth_one_never_preempts() {
    // With depth 1 the highest-priority thread runs until it blocks or finishes: each writer's
    // four bytes are contiguous.
    for seed in 0..20 {
        let out = run_writers(
            seed,
            Policy::Pct {
                depth: 1,
                steps: 40,
            },
        );
        for chunk in out.value.chunks(4) {
            assert!(
                chunk.iter().all(|&b| b == chunk[0]),
                "seed {seed}: {:?}",
                out.value
            );
        }
    }
}

#[test]
fn epoll_wait_is_woken_by_another_threads_write_without_time_passing() {
    for seed in 0..30 {
        let out = Runner::new(seed)
            .run(Sim::new(seed), |k| {
                let [a, b] = k.socketpair(SOCK_NONBLOCK).unwrap();
                let ep = k.epoll_create1(0).unwrap();
                k.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN, 5)))
                    .unwrap();
                let t = spawn("writer", {
                    let k = k.clone();
                    move || k.write(a, b"ping").unwrap()
                });
                let mut evs = [EpollEvent::EMPTY; 2];
                let n = k.epoll_wait(ep, &mut evs, 1000).unwrap();
                t.join();
                (n, evs[0].data, k.now())
            })
            .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(out.value, (1, 5, Duration::ZERO), "seed {seed}");
    }
}

#[test]
fn time_moves_only_when_every_thread_is_blocked() {
    for seed in 0..20 {
        let out = Runner::new(seed)
            .run(Sim::new(seed), |k| {
                let ep = k.epoll_create1(0).unwrap();
                let busy = spawn("busy", {
                    let k = k.clone();
                    move || {
                        let [_r, w] = k.pipe2(O_NONBLOCK).unwrap();
                        for _ in 0..20 {
                            k.write(w, b"x").unwrap();
                        }
                        k.now()
                    }
                });
                let mut evs = [EpollEvent::EMPTY; 2];
                let n = k.epoll_wait(ep, &mut evs, 250).unwrap();
                let woke = k.now();
                (n, woke, busy.join())
            })
            .unwrap_or_else(|f| panic!("{f}"));
        let (n, woke, busy_done) = out.value;
        assert_eq!(n, 0);
        assert_eq!(woke, Duration::from_millis(250), "seed {seed}");
        assert_eq!(
            busy_done,
            Duration::ZERO,
            "seed {seed}: time moved while busy ran"
        );
    }
}

#[test]
fn blocking_read_waits_for_the_writer() {
    for seed in 0..20 {
        let out = Runner::new(seed)
            .run(Sim::new(seed), |k| {
                let [r, w] = k.pipe2(0).unwrap(); // blocking
                let t = spawn("writer", {
                    let k = k.clone();
                    move || {
                        k.write(w, b"hi").unwrap();
                        k.close(w).unwrap();
                    }
                });
                let mut buf = [0u8; 8];
                let mut got = Vec::new();
                loop {
                    let n = k.read(r, &mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                t.join();
                got
            })
            .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(out.value, b"hi", "seed {seed}");
    }
}

#[test]
fn blocking_peek_and_poll_wait_for_the_writer() {
    for seed in 0..20 {
        let out = Runner::new(seed)
            .run(Sim::new(seed), |k| {
                let [a, b] = k.socketpair(0).unwrap(); // blocking
                let t = spawn("writer", {
                    let k = k.clone();
                    move || {
                        k.write(a, b"ok").unwrap();
                        k.close(a).unwrap();
                    }
                });
                let mut fds = [netpoll::PollFd::new(b, Events::IN)];
                let n = k.poll(&mut fds, -1).unwrap();
                let mut buf = [0u8; 8];
                let peeked = k.recv(b, &mut buf, MSG_PEEK).unwrap();
                let queued = k.fionread(b).unwrap();
                let read = k.read(b, &mut buf).unwrap();
                t.join();
                (n, fds[0].revents.contains(Events::IN), peeked, queued, read)
            })
            .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(out.value, (1, true, 2, 2, 2), "seed {seed}");
    }
}

#[test]
fn tcp_across_threads_moves_virtual_time_to_deliveries() {
    let out = Runner::new(3)
        .run(Sim::new(3), |k| {
            let l = k.tcp_socket(0).unwrap();
            let addr = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 7000);
            k.bind(l, addr).unwrap();
            k.listen(l, 16).unwrap();
            let client = spawn("client", {
                let k = k.clone();
                move || {
                    let c = k.tcp_socket(0).unwrap();
                    k.connect(c, addr).unwrap();
                    k.write(c, b"hello").unwrap();
                    k.close(c).unwrap();
                }
            });
            let (s, _) = k.accept4(l, 0).unwrap(); // blocks until the SYN arrives
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            loop {
                match k.read(s, &mut buf).unwrap() {
                    0 => break,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
            client.join();
            got
        })
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.value, b"hello");
    assert!(out.report.now_ns() > 0, "deliveries take virtual time");
}

#[test]
fn deadlock_is_reported_with_each_threads_blocking_call() {
    let f = Runner::new(11)
        .run(Sim::new(11), |k| {
            let [r1, _w1] = k.pipe2(0).unwrap();
            let [r2, _w2] = k.pipe2(0).unwrap();
            let ep = k.epoll_create1(0).unwrap();
            let t = spawn("reader", {
                let k = k.clone();
                move || k.read(r2, &mut [0u8; 4]).map(|_| ())
            });
            let waiter = spawn("waiter", {
                let k = k.clone();
                move || {
                    k.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], -1)
                        .map(|_| ())
                }
            });
            let _ = k.read(r1, &mut [0u8; 4]);
            let _ = (t.join(), waiter.join());
        })
        .expect_err("every thread blocks for ever");
    assert_eq!(f.kind, FailureKind::Deadlock);
    let text = f.to_string();
    assert!(
        text.contains("t0 `main`: blocked in read(fd 3, 4)"),
        "{text}"
    );
    assert!(
        text.contains("`reader`: blocked in read(fd 5, 4)"),
        "{text}"
    );
    assert!(
        text.contains("`waiter`: blocked in epoll_wait(fd 7, -1)"),
        "{text}"
    );
    assert!(
        text.contains("replay: netpoll_threads::Runner::new(11).policy(\"random\""),
        "{text}"
    );
    // The report replays: same seed, same failure, same schedule.
    let again = Runner::new(11)
        .run(Sim::new(11), |k| {
            let [r1, _w1] = k.pipe2(0).unwrap();
            let [r2, _w2] = k.pipe2(0).unwrap();
            let ep = k.epoll_create1(0).unwrap();
            let t = spawn("reader", {
                let k = k.clone();
                move || k.read(r2, &mut [0u8; 4]).map(|_| ())
            });
            let waiter = spawn("waiter", {
                let k = k.clone();
                move || {
                    k.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], -1)
                        .map(|_| ())
                }
            });
            let _ = k.read(r1, &mut [0u8; 4]);
            let _ = (t.join(), waiter.join());
        })
        .expect_err("deadlocks again");
    assert_eq!(again.schedule_hash(), f.schedule_hash());
}

#[test]
fn a_join_cycle_is_a_deadlock() {
    let f = Runner::new(0)
        .run(Sim::new(0), |_k| {
            let me = current();
            let t = spawn("child", move || {
                let _ = me;
                park();
            });
            t.join();
        })
        .expect_err("main joins a child parked for ever");
    assert_eq!(f.kind, FailureKind::Deadlock);
    let text = f.to_string();
    assert!(text.contains("t0 `main`: blocked joining t1"), "{text}");
    assert!(
        text.contains("t1 `child`: parked in park(); last call park()"),
        "{text}"
    );
}

#[test]
fn a_panic_in_a_thread_fails_the_run_with_its_message() {
    let f = Runner::new(5)
        .run(Sim::new(5), |k| {
            let t = spawn("checker", {
                let k = k.clone();
                move || {
                    let [_a, _b] = k.socketpair(0).unwrap();
                    assert_eq!(1 + 1, 3, "the invariant the test checks");
                }
            });
            t.join();
        })
        .expect_err("the child panics");
    assert_eq!(f.kind, FailureKind::Panic);
    assert!(f.message.contains("`checker` panicked"), "{}", f.message);
    assert!(
        f.message.contains("the invariant the test checks"),
        "{}",
        f.message
    );
}

#[test]
fn busy_polling_is_a_livelock() {
    let f = Runner::new(2)
        .max_idle_steps(500)
        .run(Sim::new(2), |k| {
            let ep = k.epoll_create1(0).unwrap();
            let mut evs = [EpollEvent::EMPTY; 1];
            while k.epoll_wait(ep, &mut evs, 0).unwrap() == 0 {}
        })
        .expect_err("nothing ever becomes ready");
    assert_eq!(f.kind, FailureKind::Livelock);
    assert!(
        f.to_string()
            .contains("t0 `main`: running; last call epoll_wait(fd 3, 0)"),
        "{f}"
    );
}

#[test]
fn a_thread_that_spins_without_a_call_is_reported_not_hung() {
    let release = Arc::new(AtomicBool::new(false));
    let f = Runner::new(4)
        .watchdog(Duration::from_millis(200))
        .run(Sim::new(4), {
            let release = release.clone();
            move |k| {
                let t = spawn("spinner", {
                    let k = k.clone();
                    move || {
                        k.eventfd(0, 0).unwrap();
                        // Waits for a flag no simulated thread can set while it holds the token.
                        while !release.load(SeqCst) {
                            std::hint::spin_loop();
                            std::thread::yield_now();
                        }
                    }
                });
                t.join();
            }
        })
        .expect_err("the watchdog reports the spinner");
    release.store(true, SeqCst); // let the leaked OS thread end
    assert_eq!(f.kind, FailureKind::Spin);
    let text = f.to_string();
    assert!(
        text.contains("thread t1 `spinner` has held the token"),
        "{text}"
    );
    assert!(text.contains("its last call: eventfd()"), "{text}");
}

#[test]
fn a_thread_outside_the_scheduler_is_reported() {
    let f = Runner::new(8)
        .run(Sim::new(8), |k| {
            let stray = std::thread::Builder::new()
                .name("stray".into())
                .spawn({
                    let k = k.clone();
                    move || k.pipe2(0).map(|_| ())
                })
                .unwrap();
            let joined = stray.join();
            assert!(joined.is_err(), "the stray thread's call panics");
            k.eventfd(0, 0).unwrap(); // the next switch point ends this thread too
        })
        .expect_err("a stray thread touched the kernel");
    assert_eq!(f.kind, FailureKind::Outside);
    assert!(f.message.contains("OS thread `stray`"), "{}", f.message);
    assert!(f.message.contains("called pipe2()"), "{}", f.message);
}

#[test]
#[should_panic(expected = "netpoll_threads::spawn called from")]
fn spawn_outside_a_run_panics_with_a_message() {
    let _ = spawn("nope", || ());
}

#[test]
fn park_and_unpark_keep_the_token_contract() {
    for seed in 0..30 {
        let out = Runner::new(seed)
            .run(Sim::new(seed), |_k| {
                let count = Arc::new(AtomicU32::new(0));
                let main = current();
                let hs: Vec<_> = (0..3)
                    .map(|i| {
                        let count = count.clone();
                        let main = main.clone();
                        spawn(format!("t{i}"), move || {
                            yield_now();
                            count.fetch_add(1, SeqCst);
                            main.unpark();
                        })
                    })
                    .collect();
                while count.load(SeqCst) < 3 {
                    park();
                }
                hs.into_iter().for_each(|h| h.join());
                count.load(SeqCst)
            })
            .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(out.value, 3);
    }
}

/// A lost wakeup between two threads: the waiter checks `ready`, then (after a kernel call, a
/// switch point) announces that it sleeps; the notifier sets `ready` and writes the eventfd only
/// if the waiter sleeps. The fixed twin announces before it checks.
fn lost_wakeup(seed: u64, policy: Policy, fixed: bool) -> Result<(), netpoll_threads::Failure> {
    Runner::new(seed)
        .policy(policy)
        .run(Sim::new(seed), move |k| {
            let efd = k.eventfd(0, EFD_NONBLOCK).unwrap();
            let ep = k.epoll_create1(0).unwrap();
            let ready = Arc::new(AtomicBool::new(false));
            let sleeping = Arc::new(AtomicBool::new(false));
            let notifier = spawn("notifier", {
                let (k, ready, sleeping) = (k.clone(), ready.clone(), sleeping.clone());
                move || {
                    k.eventfd(0, 0).unwrap(); // some unrelated work first
                    ready.store(true, SeqCst);
                    if sleeping.load(SeqCst) {
                        k.write(efd, &1u64.to_ne_bytes()).unwrap();
                    }
                }
            });
            if fixed {
                sleeping.store(true, SeqCst);
            }
            if !ready.load(SeqCst) {
                k.epoll_ctl(ep, EPOLL_CTL_ADD, efd, Some(EpollEvent::new(Events::IN, 0)))
                    .unwrap();
                sleeping.store(true, SeqCst);
                if !fixed || !ready.load(SeqCst) {
                    k.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], -1).unwrap();
                }
            }
            notifier.join();
        })
        .map(|_| ())
}

#[test]
fn a_lost_wakeup_is_found_by_seed_and_replayed() {
    for policy in [
        Policy::Random,
        Policy::Pct {
            depth: 2,
            steps: 10,
        },
    ] {
        let (seed, f) = (0..1000)
            .find_map(|s| lost_wakeup(s, policy, false).err().map(|f| (s, f)))
            .unwrap_or_else(|| panic!("{policy}: the race is not found in 1000 seeds"));
        println!("{policy}: found at seed {seed}\n{f}");
        assert_eq!(f.kind, FailureKind::Deadlock);
        assert!(
            f.to_string().contains("t0 `main`: blocked in epoll_wait"),
            "{f}"
        );
        let again = lost_wakeup(seed, policy, false).expect_err("the seed replays the race");
        assert_eq!(again.schedule_hash(), f.schedule_hash());
        assert_eq!(again.to_string(), f.to_string());
    }
}

#[test]
fn the_fixed_twin_survives_1000_seeds() {
    for policy in [
        Policy::Random,
        Policy::Pct {
            depth: 2,
            steps: 10,
        },
    ] {
        for seed in 0..1000 {
            if let Err(f) = lost_wakeup(seed, policy, true) {
                panic!("{f}");
            }
        }
    }
}

#[test]
fn policies_parse_from_their_display() {
    for p in [Policy::Random, PCT] {
        assert_eq!(p.to_string().parse::<Policy>(), Ok(p));
    }
    for bad in ["", "pct", "pct:0:5", "pct:2", "pct:x:1", "fifo"] {
        let e = bad.parse::<Policy>().unwrap_err();
        assert!(
            e.contains("expected `random` or `pct:DEPTH:STEPS`"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn mutex_and_condvar_block_in_the_scheduler() {
    use netpoll_threads::sync::{Condvar, Mutex};
    // A bounded queue of 1 between a producer and two consumers: every item arrives once.
    for seed in 0..50 {
        let out = Runner::new(seed)
            .run(Sim::new(seed), |_k| {
                let q = Arc::new((Mutex::new((None::<u32>, 0u32)), Condvar::new()));
                let consumers: Vec<_> = (0..2)
                    .map(|i| {
                        let q = q.clone();
                        spawn(format!("c{i}"), move || {
                            let mut got = Vec::new();
                            let mut g = q.0.lock();
                            loop {
                                if let Some(v) = g.0.take() {
                                    got.push(v);
                                    q.1.notify_all();
                                } else if g.1 == 2 {
                                    return got;
                                } else {
                                    g = q.1.wait(g);
                                }
                            }
                        })
                    })
                    .collect();
                for v in 0..10 {
                    let mut g = q.0.lock();
                    while g.0.is_some() {
                        g = q.1.wait(g);
                    }
                    g.0 = Some(v);
                    q.1.notify_all();
                }
                let mut g = q.0.lock();
                while g.0.is_some() {
                    g = q.1.wait(g);
                }
                g.1 = 2;
                q.1.notify_all();
                drop(g);
                let mut all: Vec<u32> = consumers.into_iter().flat_map(|c| c.join()).collect();
                all.sort_unstable();
                all
            })
            .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(out.value, (0..10).collect::<Vec<_>>(), "seed {seed}");
    }
}

#[test]
fn a_lock_order_inversion_is_a_deadlock_found_by_seed() {
    use netpoll_threads::sync::Mutex;
    let run = |seed| {
        Runner::new(seed).run(Sim::new(seed), |_k| {
            let a = Arc::new(Mutex::new(()));
            let b = Arc::new(Mutex::new(()));
            let t = spawn("ba", {
                let (a, b) = (a.clone(), b.clone());
                move || {
                    let _gb = b.lock();
                    let _ga = a.lock();
                }
            });
            {
                let _ga = a.lock();
                let _gb = b.lock();
            }
            t.join();
        })
    };
    let (seed, f) = (0..200)
        .find_map(|s| run(s).err().map(|f| (s, f)))
        .expect("the inversion deadlocks within 200 seeds");
    assert_eq!(f.kind, FailureKind::Deadlock);
    let text = f.to_string();
    assert!(text.contains("`main`: parked in mutex_lock()"), "{text}");
    assert!(text.contains("`ba`: parked in mutex_lock()"), "{text}");
    assert_eq!(run(seed).unwrap_err().schedule_hash(), f.schedule_hash());
}

/// Go's netpoller wake, coalesced by a `notified` flag (as `netpollWakeSig`): a submitter
/// queues a task and writes the eventfd only if no wake is pending; the poller, woken, drains
/// the queue and runs what it took. The bug clears the flag *after* running the tasks, so a task
/// queued meanwhile finds the flag still set, writes nothing, and the poller sleeps for ever with
/// a task queued.
/// The fixed twin clears the flag after it reads the eventfd and before it drains the queue.
/// (Clearing it *before* the read is wrong too: a submitter's write then lands between the clear
/// and the read, the read consumes it, and the flag stays set with no write pending. This test's
/// first "fixed" twin did that; seed 253 found it.)
fn coalesced_wake(seed: u64, policy: Policy, fixed: bool) -> Result<u32, netpoll_threads::Failure> {
    use netpoll_threads::sync::Mutex;
    use std::collections::VecDeque;
    Runner::new(seed)
        .policy(policy)
        .run(Sim::new(seed), move |k| {
            let efd = k.eventfd(0, EFD_NONBLOCK).unwrap();
            let ep = k.epoll_create1(0).unwrap();
            k.epoll_ctl(ep, EPOLL_CTL_ADD, efd, Some(EpollEvent::new(Events::IN, 1)))
                .unwrap();
            let [_r, out] = k.pipe2(O_NONBLOCK).unwrap();
            let queue = Arc::new(Mutex::new(VecDeque::new()));
            let notified = Arc::new(AtomicBool::new(false));
            let submitter = spawn("submitter", {
                let (k, queue, notified) = (k.clone(), queue.clone(), notified.clone());
                move || {
                    for task in 0..3u32 {
                        queue.lock().push_back(task);
                        if !notified.swap(true, SeqCst) {
                            k.write(efd, &1u64.to_ne_bytes()).unwrap();
                        }
                    }
                }
            });
            let mut done = 0;
            let mut evs = [EpollEvent::EMPTY; 4];
            while done < 3 {
                k.epoll_wait(ep, &mut evs, -1).unwrap();
                let _ = k.read(efd, &mut [0u8; 8]); // consume the wake(s)
                if fixed {
                    // After the read: a submitter that sets the flag from here on writes again.
                    notified.store(false, SeqCst);
                }
                // Take the queued tasks, then run them (each makes a kernel call).
                let batch: Vec<u32> = queue.lock().drain(..).collect();
                for task in batch {
                    k.write(out, &[task as u8]).unwrap();
                    done += 1;
                }
                if !fixed {
                    notified.store(false, SeqCst);
                }
            }
            submitter.join();
            done
        })
        .map(|o| o.value)
}

#[test]
fn a_coalesced_wake_lost_between_threads_is_found_and_replayed() {
    for policy in [
        Policy::Random,
        Policy::Pct {
            depth: 3,
            steps: 30,
        },
    ] {
        let (seed, f) = (0..1000)
            .find_map(|s| coalesced_wake(s, policy, false).err().map(|f| (s, f)))
            .unwrap_or_else(|| panic!("{policy}: the lost wake is not found in 1000 seeds"));
        println!("{policy}: found at seed {seed}\n{f}");
        assert_eq!(f.kind, FailureKind::Deadlock);
        assert!(
            f.to_string()
                .contains("t0 `main`: blocked in epoll_wait(fd 4, -1)"),
            "{f}"
        );
        let again = coalesced_wake(seed, policy, false).expect_err("the seed replays");
        assert_eq!(again.to_string(), f.to_string());
    }
}

#[test]
fn the_coalesced_wake_fixed_twin_survives_1000_seeds() {
    for policy in [
        Policy::Random,
        Policy::Pct {
            depth: 3,
            steps: 30,
        },
    ] {
        for seed in 0..1000 {
            match coalesced_wake(seed, policy, true) {
                Ok(done) => assert_eq!(done, 3),
                Err(f) => panic!("{f}"),
            }
        }
    }
}

/// Two shared runs (`Runner::run`'s default admission) are alive at once: each main thread
/// waits (outside the scheduler) for the other's at a barrier. Were they admitted one at a
/// time, the first would wait alone until its watchdog reported it. (No test of this binary
/// starts an exclusive run, which, queued between the two, would hold the second back.)
#[test]
fn shared_runs_overlap() {
    let meet = Arc::new(Barrier::new(2));
    let hs: Vec<_> = (0..2u64)
        .map(|i| {
            let meet = meet.clone();
            std::thread::spawn(move || {
                Runner::new(i)
                    .watchdog(Duration::from_secs(5))
                    .run(Sim::new(i), move |_k| {
                        meet.wait();
                    })
                    .map(|_| ())
                    .map_err(|f| f.to_string())
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap().unwrap_or_else(|f| panic!("{f}"));
    }
}

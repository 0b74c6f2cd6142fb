//! One threaded run of unmodified code at a time per process, by construction: runs started at
//! once from several OS threads wait for each other (in wall-clock time) and each gives the
//! schedule a lone run of its seed gives; a run started on a simulated thread panics with the
//! invariant instead of hanging; a failed run lets the next one in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex};

use netpoll_interpose::run_threads;
use netpoll_sim::Sim;
use netpoll_threads::{FailureKind, Runner};

/// A process-wide word, as a `static` of the program or of a library it uses (a registry, a
/// logger, std's environment lock): every run's threads take it.
static GLOBAL: Mutex<u64> = Mutex::new(0);

/// A run that starts and ends many std threads (each takes std's process-wide thread
/// start/exit lock twice) handing a counter round under a std `Mutex` and `Condvar`, a
/// channel, and [`GLOBAL`] held across a switch point: what a run alive at the same time would
/// disturb (it would hold the same words at moments that depend on its own schedule). Its
/// schedule hash.
fn schedule_hash(seed: u64) -> u64 {
    let out = run_threads(Runner::new(seed), Sim::new(seed), || {
        let turn = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let (turn, tx) = (turn.clone(), tx.clone());
                std::thread::spawn(move || {
                    let (m, cv) = &*turn;
                    let mut g = m.lock().unwrap();
                    while *g != i {
                        g = cv.wait(g).unwrap();
                    }
                    *g += 1;
                    cv.notify_all();
                    drop(g);
                    let mut global = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
                    std::thread::yield_now();
                    *global += 1;
                    drop(global);
                    // A short-lived thread of its own: one more start and exit.
                    std::thread::spawn(move || tx.send(i).unwrap())
                        .join()
                        .unwrap();
                })
            })
            .collect();
        drop(tx);
        for h in hs {
            h.join().unwrap();
        }
        rx.iter().sum::<usize>()
    })
    .unwrap_or_else(|f| panic!("seed {seed}: {f}"));
    assert_eq!(out.value, 15);
    out.report.schedule_hash()
}

const SEEDS: std::ops::Range<u64> = 0..12;

/// The test asked for: two runs of the same seed started at once give the lone run's schedule
/// hash, seed after seed, with no lock in the test.
#[test]
fn two_runs_of_one_seed_at_once_give_the_lone_runs_schedule() {
    let alone: Vec<u64> = SEEDS.map(schedule_hash).collect();
    let start = Arc::new(Barrier::new(2));
    let both: Vec<_> = (0..2)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                SEEDS
                    .map(|seed| {
                        start.wait();
                        schedule_hash(seed)
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    for h in both {
        assert_eq!(h.join().unwrap(), alone);
    }
    let distinct: std::collections::BTreeSet<_> = alone.iter().collect();
    assert!(distinct.len() > 1, "the seeds give different schedules");
}

/// Runs started from four OS threads at once are never alive together: each closure counts the
/// runs alive when it starts.
#[test]
fn runs_started_at_once_are_alive_one_at_a_time() {
    static ALIVE: AtomicUsize = AtomicUsize::new(0);
    static MOST: AtomicUsize = AtomicUsize::new(0);
    let start = Arc::new(Barrier::new(4));
    let hs: Vec<_> = (0..4u64)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                for s in 0..10 {
                    start.wait();
                    run_threads(Runner::new(i * 10 + s), Sim::new(i), || {
                        let n = ALIVE.fetch_add(1, Ordering::SeqCst) + 1;
                        MOST.fetch_max(n, Ordering::SeqCst);
                        std::thread::spawn(std::thread::yield_now).join().unwrap();
                        ALIVE.fetch_sub(1, Ordering::SeqCst);
                    })
                    .unwrap_or_else(|f| panic!("{f}"));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(MOST.load(Ordering::SeqCst), 1);
}

/// A run started on a simulated thread of a live run would wait for ever for the run it is on:
/// it panics with the invariant, which fails the outer run with that message.
#[test]
fn a_run_started_inside_a_run_panics_with_the_invariant() {
    let f = run_threads(Runner::new(3), Sim::new(3), || {
        let inner = run_threads(Runner::new(4), Sim::new(4), || 1);
        inner.map(|o| o.value).unwrap_or(0)
    })
    .expect_err("a nested run is refused");
    assert_eq!(f.kind, FailureKind::Panic, "{f}");
    let msg = f.to_string();
    assert!(
        msg.contains("netpoll_interpose::run_threads called on simulated thread")
            && msg.contains("admitted alone in the process"),
        "{msg}"
    );
    // The same from a thread the run started, and for a plain `Runner::run`.
    let f = run_threads(Runner::new(5), Sim::new(5), || {
        std::thread::spawn(|| Runner::new(6).run(Sim::new(6), |_k| 1).is_ok())
            .join()
            .unwrap_or(false)
    });
    let out = f.unwrap_or_else(|f| panic!("{f}"));
    assert!(!out.value, "the inner run panicked on its simulated thread");
}

/// A run that fails (a deadlock report, a panic) gives its admission back: the next run of
/// the same seed starts and gives the lone schedule.
#[test]
fn a_failed_run_lets_the_next_one_in() {
    let before = schedule_hash(7);
    let f = run_threads(Runner::new(5), Sim::new(5), || {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let g = pair.0.lock().unwrap();
        drop(pair.1.wait(g).unwrap());
    })
    .expect_err("nobody notifies");
    assert_eq!(f.kind, FailureKind::Deadlock, "{f}");
    let f = run_threads(Runner::new(5), Sim::new(5), || -> u32 { panic!("boom") })
        .expect_err("the closure panics");
    assert_eq!(f.kind, FailureKind::Panic, "{f}");
    assert_eq!(schedule_hash(7), before);
}

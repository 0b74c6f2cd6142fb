//! Threaded runs started at once from several OS threads of one process, sharing futex words
//! with each other and with plain OS threads: std's process-wide locks (the thread start/exit
//! lock every std thread takes, a `static` mutex). The runs themselves are admitted one at a
//! time (`Runner::run`, "One run at a time"; `tests/one_run.rs`), but a plain OS thread still
//! shares the words with whichever run is alive: its wake reaches the run's waiters, and a run
//! whose threads all wait on such a word waits for that wake instead of reporting a deadlock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use netpoll_interpose::run_threads;
use netpoll_sim::Sim;
use netpoll_threads::{FailureKind, Runner};

/// A process-wide futex word that every run's threads (and a plain OS thread) take.
static SHARED: Mutex<u64> = Mutex::new(0);

/// One short run: threads start, take [`SHARED`] across a switch point, and exit.
fn one_run(seed: u64) -> Result<u64, String> {
    run_threads(Runner::new(seed), Sim::new(seed), || {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    let mut g = SHARED.lock().unwrap_or_else(|e| e.into_inner());
                    std::thread::yield_now();
                    *g += 1;
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        1
    })
    .map(|o| o.value)
    .map_err(|f| f.to_string())
}

/// Seeds per run loop: enough that the lost wake showed within a few seconds before the fix.
const SEEDS: u64 = 3_000;

#[test]
fn concurrent_runs_share_process_wide_futex_words() {
    let stop = Arc::new(AtomicBool::new(false));
    // A plain OS thread that takes the shared word too (and starts and ends threads, which
    // takes std's thread start/exit lock).
    let plain = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::spawn(|| {
                    *SHARED.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                })
                .join()
                .unwrap();
            }
        }
    });
    let loops: Vec<_> = (0..2u64)
        .map(|i| {
            std::thread::spawn(move || {
                for s in 0..SEEDS {
                    let seed = i * SEEDS + s;
                    if let Err(f) = one_run(seed) {
                        return Err(format!("seed {seed}: {f}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let results: Vec<_> = loops.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    plain.join().unwrap();
    for r in results {
        if let Err(e) = r {
            panic!("a run failed while another run was alive: {e}");
        }
    }
}

#[test]
fn a_deadlock_on_the_runs_own_word_is_still_reported() {
    let f = run_threads(Runner::new(5), Sim::new(5), || {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let g = pair.0.lock().unwrap();
        // Nobody notifies: the main thread waits for ever on a word only the run uses.
        drop(pair.1.wait(g).unwrap());
    })
    .expect_err("a wait nobody ends is a deadlock");
    assert_eq!(f.kind, FailureKind::Deadlock, "{f}");
    assert!(f.to_string().contains("futex_wait"), "{f}");
}

/// A process-wide lock held by a plain OS thread for ever: the run waits a bounded time for
/// an outside wake, then reports a deadlock that says so.
#[test]
fn a_process_wide_word_never_released_is_reported_after_the_bound() {
    static HELD: Mutex<()> = Mutex::new(());
    let (tx, rx) = std::sync::mpsc::channel();
    let release = Arc::new(AtomicBool::new(false));
    let holder = std::thread::spawn({
        let release = release.clone();
        move || {
            let _g = HELD.lock().unwrap();
            tx.send(()).unwrap();
            while !release.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    rx.recv().unwrap();
    let runner = Runner::new(6).watchdog(Duration::from_millis(300));
    let f = run_threads(runner, Sim::new(6), || {
        drop(HELD.lock().unwrap());
    })
    .expect_err("a lock never released is a deadlock");
    release.store(true, Ordering::Relaxed);
    holder.join().unwrap();
    assert_eq!(f.kind, FailureKind::Deadlock, "{f}");
    assert!(f.to_string().contains("outside this run"), "{f}");
}

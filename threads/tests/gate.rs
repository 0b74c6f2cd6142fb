//! The admission gate of `Runner::run`: exclusive runs are alone in the process, a run started
//! on a simulated thread panics with the invariant, and a failed run lets the next one in.
//! (That shared runs overlap is in `sched.rs`, a binary with no exclusive run: here one could
//! queue between the two.)

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use netpoll_sim::Sim;
use netpoll_threads::{spawn, yield_now, FailureKind, Runner};

/// Runs (of the tests below that count them) alive now, and the most seen at once by an
/// exclusive run.
static ALIVE: AtomicUsize = AtomicUsize::new(0);
static MOST_BESIDE_EXCLUSIVE: AtomicUsize = AtomicUsize::new(0);

/// A run of a few threads that yield, counting itself alive while its main thread runs.
fn counted(seed: u64, exclusive: bool) {
    Runner::new(seed)
        .exclusive(exclusive)
        .run(Sim::new(seed), move |_k| {
            let n = ALIVE.fetch_add(1, SeqCst) + 1;
            let hs: Vec<_> = (0..3).map(|i| spawn(format!("y{i}"), yield_now)).collect();
            for h in hs {
                h.join();
            }
            let m = ALIVE.load(SeqCst);
            if exclusive {
                MOST_BESIDE_EXCLUSIVE.fetch_max(n.max(m), SeqCst);
            }
            ALIVE.fetch_sub(1, SeqCst);
        })
        .unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn an_exclusive_run_is_alone_among_shared_ones() {
    let start = Arc::new(Barrier::new(4));
    let hs: Vec<_> = (0..4u64)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                for s in 0..30 {
                    start.wait();
                    // One exclusive run in four, the rest shared.
                    counted(i * 100 + s, (i + s) % 4 == 0);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(MOST_BESIDE_EXCLUSIVE.load(SeqCst), 1);
}

/// A run started on a simulated thread could not be admitted before the run it is on ends:
/// it panics, naming the invariant, which fails the outer run.
#[test]
fn a_run_inside_a_run_panics_with_the_invariant() {
    for exclusive in [false, true] {
        let f = Runner::new(1)
            .exclusive(exclusive)
            .run(Sim::new(1), |_k| {
                Runner::new(2).run(Sim::new(2), |_k| ()).is_ok()
            })
            .expect_err("the nested run is refused");
        assert_eq!(f.kind, FailureKind::Panic, "{f}");
        let msg = f.to_string();
        assert!(
            msg.contains("netpoll_threads::Runner::run called on simulated thread t0 `main`")
                && msg.contains("would wait for ever"),
            "{msg}"
        );
    }
}

/// A deadlocked exclusive run and a panicking one give their admission back.
#[test]
fn failed_exclusive_runs_let_the_next_in() {
    let f = Runner::new(3)
        .exclusive(true)
        .run(Sim::new(3), |_k| netpoll_threads::park())
        .expect_err("nobody unparks");
    assert_eq!(f.kind, FailureKind::Deadlock, "{f}");
    let f = Runner::new(3)
        .exclusive(true)
        .run(Sim::new(3), |_k| -> u32 { panic!("boom") })
        .expect_err("the closure panics");
    assert_eq!(f.kind, FailureKind::Panic, "{f}");
    let out = Runner::new(4)
        .exclusive(true)
        .run(Sim::new(4), |_k| 7)
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.value, 7);
}

//! The cost of a switch point (issue 9).
//!
//! Every run makes `CALLS` eventfd writes (non-blocking, counter never read), so each run has
//! `CALLS` switch points plus a few for spawn and join:
//!
//! - `switch/sim_direct`: the writes on a bare [`Sim`], no scheduler: the kernel's own cost.
//! - `switch/run_empty`: a [`Runner::run`] whose main thread returns at once: the fixed cost of
//!   a run (one OS thread started and joined, the supervisor).
//! - `switch/one_thread`: one simulated thread makes every write: the switch point's bookkeeping
//!   without a hand-off (the policy always picks the only runnable thread).
//! - `switch/two_threads`: two simulated threads make half the writes each, [`Policy::Random`]:
//!   about half the switch points hand the token to the other OS thread (a condvar wake and a
//!   context switch each).
//! - `switch/four_threads`: four threads, a quarter of the writes each: about three quarters of
//!   the switch points hand off; a hand-off wakes only the chosen thread.
//!
//! Cost per switch point = (run time - `run_empty`) / switch points.
//!
//! `cargo bench -p netpoll-threads --bench switch -- --test` runs each benchmark once.

use std::hint::black_box;

use criterion::Criterion;
use netpoll::sys::EFD_NONBLOCK;
use netpoll::Poller;
use netpoll_sim::Sim;
use netpoll_threads::{spawn, Policy, Runner};

const CALLS: usize = 1000;
const ONE: [u8; 8] = 1u64.to_ne_bytes();

fn writes(k: &impl Poller, fd: i32, n: usize) {
    for _ in 0..n {
        black_box(k.write(fd, &ONE).unwrap());
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("switch");
    g.sample_size(20);
    g.bench_function("sim_direct", |b| {
        b.iter(|| {
            let k = Sim::new(1);
            let fd = k.eventfd(0, EFD_NONBLOCK).unwrap();
            writes(&k, fd, CALLS);
        })
    });
    g.bench_function("run_empty", |b| {
        b.iter(|| Runner::new(1).run(Sim::new(1), |_k| ()).unwrap())
    });
    g.bench_function("one_thread", |b| {
        b.iter(|| {
            Runner::new(1)
                .run(Sim::new(1), |k| {
                    let fd = k.eventfd(0, EFD_NONBLOCK).unwrap();
                    writes(&k, fd, CALLS);
                })
                .unwrap()
        })
    });
    g.bench_function("two_threads", |b| {
        b.iter(|| {
            Runner::new(1)
                .policy(Policy::Random)
                .run(Sim::new(1), |k| {
                    let fd = k.eventfd(0, EFD_NONBLOCK).unwrap();
                    let t = spawn("other", {
                        let k = k.clone();
                        move || writes(&k, fd, CALLS / 2)
                    });
                    writes(&k, fd, CALLS / 2);
                    t.join();
                })
                .unwrap()
        })
    });
    g.bench_function("four_threads", |b| {
        b.iter(|| {
            Runner::new(1)
                .policy(Policy::Random)
                .run(Sim::new(1), |k| {
                    let fd = k.eventfd(0, EFD_NONBLOCK).unwrap();
                    let ts: Vec<_> = (0..3)
                        .map(|i| {
                            let k = k.clone();
                            spawn(format!("w{i}"), move || writes(&k, fd, CALLS / 4))
                        })
                        .collect();
                    writes(&k, fd, CALLS / 4);
                    ts.into_iter().for_each(|t| t.join());
                })
                .unwrap()
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}

//! Eight threads block in `epoll_wait` on one instance watching an eventfd; the main thread
//! writes 200 times, letting the woken ones run after each write. Prints the switch points per
//! run (mean over 20 seeds) for edge- and level-triggered interest: how much work the kernel's
//! wait queues save over waking every waiter.
//!
//! `cargo run --release -p netpoll-threads --example waiters`

use netpoll::sys::*;
use netpoll::{EpollEvent, Events, Poller};
use netpoll_sim::Sim;
use netpoll_threads::{settle, spawn, Runner};

fn main() {
    for (name, interest) in [("ET", Events::IN | Events::ET), ("LT", Events::IN)] {
        let mut total = 0;
        let t = std::time::Instant::now();
        for seed in 0..20 {
            let out = Runner::new(seed)
                .run(Sim::new(seed), move |k| {
                    let e = k.eventfd(0, EFD_NONBLOCK).unwrap();
                    let ep = k.epoll_create1(0).unwrap();
                    k.epoll_ctl(ep, EPOLL_CTL_ADD, e, Some(EpollEvent::new(interest, 1)))
                        .unwrap();
                    let ws: Vec<_> = (0..8)
                        .map(|i| {
                            let k = k.clone();
                            spawn(format!("w{i}"), move || {
                                let mut evs = [EpollEvent::EMPTY; 4];
                                for _ in 0..25 {
                                    k.epoll_wait(ep, &mut evs, -1).unwrap();
                                    let mut b = [0u8; 8];
                                    let _ = k.read(e, &mut b);
                                }
                            })
                        })
                        .collect();
                    for _ in 0..200 {
                        k.write(e, &1u64.to_ne_bytes()).unwrap();
                        settle();
                    }
                    for w in ws {
                        w.join();
                    }
                })
                .unwrap_or_else(|f| panic!("{f}"));
            total += out.report.steps();
        }
        println!(
            "{name}: {} switch points a run (mean of 20 seeds), {:.0?} for the 20 runs",
            total / 20,
            t.elapsed()
        );
    }
}

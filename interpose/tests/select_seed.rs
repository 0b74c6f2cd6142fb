//! tokio's `select!` branch order follows the check's seed, when tokio is built with
//! `--cfg tokio_unstable` (`CheckInterposed::run_tokio` then seeds the runtime's generator with
//! `Builder::rng_seed`). Without the cfg tokio seeds it from a process-wide counter and std's
//! `RandomState`, which no interposition can make follow the seed, so this file is empty then.
//! CI runs it in a target directory of its own:
//!
//! ```text
//! RUSTFLAGS="--cfg tokio_unstable" CARGO_TARGET_DIR=target/tokio-unstable \
//!     cargo test -p netpoll-interpose --test select_seed
//! ```
#![cfg(tokio_unstable)]

use std::cell::RefCell;

use netpoll_interpose::CheckInterposed;
use netpoll_scenarios::check::Check;

/// For each seed, the branches 32 `select!`s over four ready futures took.
fn orders(seeds: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    let out = RefCell::new(Vec::new());
    let out_ref = &out;
    Check::new()
        .env(|_| None)
        .seeds(seeds)
        .run_tokio(|| async move {
            let mut order = Vec::new();
            for _ in 0..32 {
                order.push(tokio::select! {
                    _ = std::future::ready(()) => 0,
                    _ = std::future::ready(()) => 1,
                    _ = std::future::ready(()) => 2,
                    _ = std::future::ready(()) => 3,
                });
            }
            out_ref.borrow_mut().push(order);
            Ok(())
        });
    out.into_inner()
}

#[test]
fn one_seed_one_branch_order_two_seeds_two() {
    let first = orders(0..8);
    // Other runtimes in between move tokio's process-wide counter: the order must not care.
    let _ = orders(100..110);
    let again = orders(0..8);
    assert_eq!(first, again, "one seed, one branch order");
    for (s, o) in first.iter().enumerate().skip(1) {
        assert_ne!(&first[0], o, "seeds 0 and {s} took the same 32 branches");
    }
    // And each seed's order is not a fixed one: all four branches are taken.
    assert!((0..4).all(|b| first[0].contains(&b)), "{:?}", first[0]);
}

//! The zoo's races between threads (`zoo-mt-*`, simulated threads interleaved by seed): each
//! is found within 1,000 seeds, reported as a hang with every thread's blocking call, and
//! replayed from its token; each fixed twin passes a sample of seeds here.
//!
//! The full bar, in a release build (each well under 10 s of CPU):
//! `netpoll-sim sweep zoo-mt-close-no-wake --seeds 0..1000` (finds it),
//! `netpoll-sim sweep zoo-mt-close-no-wake --fixed 1 --seeds 0..10000` (passes), and the same
//! for `zoo-mt-spin-no-recheck`. `NETPOLL_SEEDS=<n>` widens the fixed-twin sample here.

use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{execute, test_seeds, Report, Request};
use netpoll_scenarios::zoo::{FIXED, THREADED};

/// Seeds within which each race must be found.
const FIND_WITHIN_SEEDS: u64 = 1000;

fn request(name: &str, fixed: u64, seed: u64) -> Request {
    let s = Registry::builtin().find(name).expect("registered");
    let mut p = s.defaults();
    p.set(FIXED, fixed).unwrap();
    Request::sim(s, p, seed)
}

/// The first failing seed, its report, and how many of the seeds up to it failed.
fn first_failure(name: &str) -> (u64, Report) {
    (0..FIND_WITHIN_SEEDS)
        .find_map(|seed| {
            let r = execute(&request(name, 0, seed));
            r.failure.is_some().then_some((seed, r))
        })
        .unwrap_or_else(|| panic!("{name}: no failure in {FIND_WITHIN_SEEDS} seeds"))
}

fn assert_found_and_replayed(name: &str) {
    let (seed, r) = first_failure(name);
    assert_eq!(r.outcome(), "hang", "{name} seed {seed}:\n{r}");
    let text = r.to_string();
    // The scheduler's report: the deadlock, each thread's state, the schedule.
    assert!(text.contains("Deadlock"), "{text}");
    assert!(text.contains("parked in park()"), "{text}");
    let line = r.request.replay_line();
    assert!(
        text.contains(&line),
        "the report lacks its replay line:\n{text}"
    );
    let again = execute(&Registry::builtin().from_token(&r.request.token()).unwrap());
    assert_eq!(again.outcome(), r.outcome(), "{name}: the replay differs");
    assert_eq!(
        again.fingerprint, r.fingerprint,
        "{name}: the replay differs"
    );
    assert_eq!(
        again.failure.map(|f| f.to_string()),
        r.failure.map(|f| f.to_string()),
        "{name}: the replay's report differs"
    );
}

fn assert_fixed_passes(name: &str) {
    for seed in test_seeds(300) {
        let r = execute(&request(name, 1, seed));
        assert!(
            r.failure.is_none(),
            "{name} fixed, seed {seed}:\n{r}\nreplay: {}",
            r.request.replay_line()
        );
    }
}

#[test]
fn close_no_wake_is_found_and_replayed() {
    assert_found_and_replayed("zoo-mt-close-no-wake");
}

#[test]
fn spin_no_recheck_is_found_and_replayed() {
    assert_found_and_replayed("zoo-mt-spin-no-recheck");
}

#[test]
fn fixed_close_no_wake_passes() {
    assert_fixed_passes("zoo-mt-close-no-wake");
}

#[test]
fn fixed_spin_no_recheck_passes() {
    assert_fixed_passes("zoo-mt-spin-no-recheck");
}

/// Every threaded entry is registered as zoo, and one seed gives one schedule.
#[test]
fn threaded_entries_are_registered_and_deterministic() {
    for z in &THREADED {
        let w = Registry::builtin().find(z.name).expect("registered");
        assert_eq!(w.name(), z.name);
        for fixed in [0, 1] {
            let a = execute(&request(z.name, fixed, 5));
            let b = execute(&request(z.name, fixed, 5));
            assert_eq!(a.fingerprint, b.fingerprint, "{}", z.name);
            assert_eq!(a.outcome(), b.outcome(), "{}", z.name);
        }
    }
}

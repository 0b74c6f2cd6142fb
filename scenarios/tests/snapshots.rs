//! Small fixed-seed traces, pinned: any change in the simulated kernel's behaviour (or the
//! loops') shows up here in review as a diff of calls.

use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{self, Request};
use netpoll_scenarios::trace_out;

fn trace(name: &str, params: &[(&str, u64)], seed: u64) -> String {
    let s = Registry::builtin().find(name).unwrap();
    let mut p = s.defaults();
    for &(k, v) in params {
        p.set(k, v).unwrap();
    }
    let req = Request::sim(s, p, seed);
    let (records, report) = run::traced(&req);
    assert!(report.failure.is_none(), "{}", report.failure.unwrap());
    format!(
        "# {} seed {seed} ({})\n{}",
        name,
        req.params,
        trace_out::text(&records, &report.labels)
    )
}

#[test]
fn echo_two_connections_seed_1() {
    insta::assert_snapshot!(trace("echo", &[("conns", 2), ("msgs", 2), ("size", 16)], 1));
}

#[test]
fn half_close_two_connections_seed_1() {
    insta::assert_snapshot!(trace(
        "half-close",
        &[("conns", 2), ("msgs", 2), ("size", 100)],
        1
    ));
}

#[test]
fn slow_clients_stall_seed_1() {
    insta::assert_snapshot!(trace(
        "slow-clients",
        &[
            ("conns", 2),
            ("msgs", 2),
            ("size", 8),
            ("stall-pct", 50),
            ("deadline-ms", 5)
        ],
        1
    ));
}

#[test]
fn echo_two_connections_chaos_seed_1() {
    insta::assert_snapshot!(trace(
        "echo",
        &[("conns", 2), ("msgs", 2), ("size", 16), ("faults", 1)],
        1
    ));
}

/// The netpoller's own calls (one registration per fd, `EAGAIN` then park, a read deadline
/// armed per read) on top of the sim's: a change in `src/rt/` shows here too.
#[test]
fn rt_echo_two_connections_seed_1() {
    insta::assert_snapshot!(trace(
        "rt-echo",
        &[("conns", 2), ("msgs", 2), ("size", 16)],
        1
    ));
}

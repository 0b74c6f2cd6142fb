//! Every scenario over a default set of seeds, on the simulated kernel.
//!
//! `NETPOLL_SEED=<seed>` replays one seed; `NETPOLL_SEEDS=<n>` sweeps seeds 1..=n (default 3).
//! Each run prints its seed before it starts, and a failure prints the line that replays it.

use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{self, Backend, Request};
use netpoll_scenarios::workload::{Kind, Workload};

fn seeds() -> Vec<u64> {
    run::test_seeds(3)
}

fn check(name: &str) {
    let s = find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    for seed in seeds() {
        let req = Request::sim(s, s.test_defaults(), seed);
        eprintln!("{name}: seed {seed} ({})", req.params);
        let r = run::execute(&req);
        if let Some(f) = &r.failure {
            panic!(
                "{name} failed with seed {seed}:\n{f}\nreplay: {}\n    or: NETPOLL_SEED={seed} cargo test -p netpoll-scenarios --test scenarios {}",
                req.replay_line(),
                name.replace('-', "_")
            );
        }
        assert!(
            r.stats.bytes > 0 || name == "reset",
            "{name} seed {seed} moved no bytes"
        );
    }
}

#[test]
fn echo() {
    check("echo");
}

#[test]
fn raw_epoll() {
    check("raw-epoll");
}

#[test]
fn half_close() {
    check("half-close");
}

#[test]
fn reset() {
    check("reset");
}

#[test]
fn accept_storm() {
    check("accept-storm");
}

#[test]
fn backpressure() {
    check("backpressure");
}

#[test]
fn slow_clients() {
    check("slow-clients");
}

#[test]
fn timer_storm() {
    check("timer-storm");
}

#[test]
fn rt_echo() {
    check("rt-echo");
}

#[test]
fn every_registered_scenario_has_a_test_above() {
    let tested = [
        "echo",
        "raw-epoll",
        "half-close",
        "reset",
        "accept-storm",
        "backpressure",
        "slow-clients",
        "timer-storm",
        "rt-echo",
    ];
    let names: Vec<&str> = scenarios().map(|s| s.name()).collect();
    assert_eq!(names, tested);
}

/// The determinism self-check, call by call, for every scenario and two seeds.
#[test]
fn two_runs_of_a_seed_are_identical_call_by_call() {
    for s in scenarios() {
        for seed in [1, 0xfeed] {
            let req = Request::sim(s, s.test_defaults(), seed);
            if let Err(f) = run::compare_traced(&req) {
                panic!(
                    "{} seed {seed}: {f}\nreplay: {}",
                    s.name(),
                    req.replay_line()
                );
            }
        }
    }
}

/// The check itself finds a difference, and says where.
#[test]
fn first_divergence_reports_step_and_time() {
    let s = find("echo").unwrap();
    let (a, _) = run::traced(&Request::sim(s, s.test_defaults(), 1));
    let (b, _) = run::traced(&Request::sim(s, s.test_defaults(), 2));
    let f = run::first_divergence(&a, &b).unwrap_err();
    let text = f.to_string();
    assert!(text.contains("differ at call"), "{text}");
    assert!(run::first_divergence(&a, &a).is_ok());
    assert!(run::first_divergence(&a, &a[..a.len() - 1])
        .unwrap_err()
        .to_string()
        .contains("run ended"));
}

/// The canary's server stops reading before EAGAIN: the lost-wakeup oracle must catch it,
/// naming the fd, its history and the replay line.
#[test]
fn canary_is_caught_as_a_lost_wakeup() {
    for seed in [1, 2, 3] {
        let req = Request::sim(canary(), canary().defaults(), seed);
        let r = run::execute(&req);
        let f = r.failure.clone().expect("the canary must fail");
        assert_eq!(f.kind(), "lost-wakeup", "{f}");
        let text = f.to_string();
        assert!(
            text.contains("server connection") && text.contains("read(fd"),
            "{text}"
        );
        let summary = r.to_string();
        assert!(
            summary.contains("replay       netpoll-sim replay np1-"),
            "{summary}"
        );
        // The replay line replays it.
        let again = Registry::builtin().from_token(&req.token()).unwrap();
        assert_eq!(
            run::execute(&again).failure.map(|f| f.kind()),
            Some("lost-wakeup")
        );
    }
}

/// Under swarm faults the last packets may land inside a blocking `epoll_wait`, which then
/// finds nothing to report: the oracle must still name the stranded connection, not call it a
/// hang. Seeds 350, 1053 and 1514 were reported as hangs before the engine scanned on the sim's
/// deadlock too.
#[test]
fn canary_under_swarm_faults_is_a_lost_wakeup_not_a_hang() {
    let mut p = canary().defaults();
    p.set("faults", 2).unwrap();
    for seed in (0..200).chain([350, 1053, 1514]) {
        let req = Request::sim(canary(), p.clone(), seed);
        let f = run::execute(&req).failure.expect("the canary must fail");
        assert_eq!(f.kind(), "lost-wakeup", "seed {seed}: {f}");
    }
}

#[test]
fn determinism_check_on_request_passes() {
    let s = find("reset").unwrap();
    let mut req = Request::sim(s, s.test_defaults(), 7);
    req.check_determinism = true;
    assert!(run::execute(&req).failure.is_none());
}

/// The same workload on the real kernel (small: it runs in real time).
#[test]
fn echo_on_the_real_kernel() {
    for name in ["echo", "half-close", "reset", "slow-clients", "rt-echo"] {
        let s = find(name).unwrap();
        let mut p = s.test_defaults();
        p.set("conns", 10).unwrap();
        let req = Request {
            backend: Backend::Real,
            ..Request::sim(s, p, 1)
        };
        req.validate().unwrap();
        let r = run::execute(&req);
        assert!(
            r.failure.is_none(),
            "{name} on real: {}",
            r.failure.unwrap()
        );
    }
}

#[test]
fn too_many_conns_for_real_is_refused() {
    let s = find("echo").unwrap();
    let mut p = s.defaults();
    p.set("conns", 1_000_000).unwrap();
    let req = Request {
        backend: Backend::Real,
        ..Request::sim(s, p, 1)
    };
    let e = req.validate().unwrap_err().to_string();
    assert!(e.contains("too many for --backend real"), "{e}");
}

/// The hang oracle: clients wait for an end of file that a server without idle deadlines
/// never sends; nothing is in flight, so the loop would wait for ever.
#[test]
fn a_wait_for_ever_is_reported_as_a_hang() {
    use netpoll_scenarios::engine::{self, ClientMode, Spec};
    let spec = Spec {
        mode: ClientMode::Stall { pct: 100 },
        ..Spec::echo(3, 2, 10)
    };
    let sim = netpoll_sim::Sim::new(9);
    let r = engine::run(&sim, &spec, 9);
    let f = r.verdict.unwrap_err();
    assert_eq!(f.kind(), "hang", "{f}");
    let text = f.to_string();
    assert!(
        text.contains("3 of 3 clients not done") && text.contains("first unfinished: client 0"),
        "{text}"
    );
}

/// Each scenario takes the path it exists for (the positive space): a passing run that never
/// blocked a write, paused a reader, closed an idle connection or dropped a SYN proves little.
#[test]
fn each_scenario_exercises_its_path() {
    let run = |name: &str| {
        let s = find(name).unwrap();
        let r = run::execute(&Request::sim(s, s.test_defaults(), 1));
        assert!(r.failure.is_none(), "{name}: {}", r.failure.unwrap());
        r.stats
    };
    let b = run("backpressure");
    assert!(
        b.server_write_blocked > 0 && b.server_paused > 0,
        "backpressure: {b:?}"
    );
    let r = run("raw-epoll");
    assert!(r.server_write_blocked > 0, "raw-epoll: {r:?}");
    let s = run("slow-clients");
    assert!(
        s.closed_idle > 0 && s.max_late_ns <= 1_000_000,
        "slow-clients: {s:?}"
    );
    let x = run("reset");
    assert!(x.closed_reset > 0, "reset: {x:?}");
    let a = run("accept-storm");
    assert!(
        a.virtual_ns > 1_000_000_000,
        "accept-storm: no SYN was retransmitted: {a:?}"
    );
    let h = run("half-close");
    assert!(
        h.closed_eof == 20 && h.bytes == 20 * 5 * 3000,
        "half-close: {h:?}"
    );
    let t = run("timer-storm");
    assert!(
        t.timers_fired + t.timers_cancelled == 3000 && t.timers_cancelled > 0,
        "timer-storm: {t:?}"
    );
}

/// Every scenario under the simulated kernel's fault plans: `faults=1` (chaos: short reads and
/// writes, split segments, jittery latency, spurious events, EINTR, timer/readiness ties) and
/// `faults=2` (a swarm plan drawn from each seed).
#[test]
fn every_scenario_under_faults() {
    for s in scenarios() {
        for faults in [1, 2] {
            for seed in seeds().into_iter().take(2) {
                let mut p = s.test_defaults();
                p.set("faults", faults).unwrap();
                let req = Request::sim(s, p, seed);
                let r = run::execute(&req);
                if let Some(f) = &r.failure {
                    panic!(
                        "{} faults={faults} seed {seed}:\n{f}\nreplay: {}",
                        s.name(),
                        req.replay_line()
                    );
                }
            }
        }
    }
}

/// Regression: the end-of-run drain did not retry an `epoll_wait` that failed with `EINTR`
/// (found by `netpoll-sim sweep reset --seeds 1..41 --param faults=2`, seed 3).
#[test]
fn regression_drain_retries_eintr() {
    let s = find("reset").unwrap();
    let mut p = s.defaults();
    p.set("faults", 2).unwrap();
    let r = run::execute(&Request::sim(s, p, 3));
    assert!(r.failure.is_none(), "{}", r.failure.unwrap());
}

fn find(name: &str) -> Option<&'static dyn Workload> {
    Registry::builtin().find(name)
}

fn scenarios() -> impl Iterator<Item = &'static dyn Workload> {
    Registry::builtin()
        .of_kind(Kind::Scenario)
        .collect::<Vec<_>>()
        .into_iter()
}

fn canary() -> &'static dyn Workload {
    find("canary").expect("the canary is registered")
}

/// Runs `name` with its default parameters under `--faults swarm` with `seed`.
fn swarm_run(name: &str, seed: u64) -> (Request, run::Report) {
    let s = find(name).unwrap_or_else(|| panic!("no workload {name}"));
    let mut p = s.defaults();
    p.set("faults", 2).unwrap();
    let req = Request::sim(s, p, seed);
    let r = run::execute(&req);
    (req, r)
}

/// Regression (`swarmfp`): two correct scenarios failed under swarm on the client library's
/// account, not the server's. Each class's formerly failing seed now passes, and a zoo entry
/// run under the very same plan (the swarm plan is drawn from the seed) is still caught.
///
/// - `accept-storm` seed 4 (one of 120 in 0..500): every packet lands on a 1 ms tick, clients
///   refused together reconnected together and ran out of their 16 attempts
///   (`ECONNRESET` on read after 527 s); now they back off with jitter, for up to ten minutes.
/// - `reset` seed 47: a client due to reset at byte 0 took a spurious `EPOLLOUT` for its
///   connect's completion and closed in `SYN_SENT`, so the server never saw the connection
///   ("accepted 199 connections of 200"); now such a client confirms with `getpeername`.
#[test]
fn swarm_false_failures_stay_fixed_and_the_zoo_is_still_caught_under_the_same_plans() {
    for (name, seed, bug) in [
        ("accept-storm", 4, "zoo-et-accept-one"),
        ("reset", 47, "zoo-park-no-recheck"),
    ] {
        let (req, r) = swarm_run(name, seed);
        if let Some(f) = &r.failure {
            panic!("{name} seed {seed}: {f}\nreplay: {}", req.replay_line());
        }
        let (req, r) = swarm_run(bug, seed);
        let f = r.failure.unwrap_or_else(|| {
            panic!(
                "{bug} seed {seed} passed under swarm: {}",
                req.replay_line()
            )
        });
        assert_eq!(f.kind(), "lost-wakeup", "{bug} seed {seed}: {f}");
    }
}

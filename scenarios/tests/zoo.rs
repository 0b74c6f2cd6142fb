//! The bug zoo, fault plans in tokens, and shrinking: the framework finds each zoo bug within a
//! bounded number of seeds and reports it with its replay line; each fixed twin passes
//! thousands of seeds under swarm faults; a failure shrinks to a small one that fails the same
//! way.
//!
//! Larger sweeps (release build):
//! `netpoll-sim sweep zoo-park-no-recheck --seeds 0..100000 --faults swarm --param fixed=1`.

use netpoll_scenarios::params::SIZE;
use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{execute, Report, Request};
use netpoll_scenarios::shrink::shrink;
use netpoll_scenarios::swarm::{carried, FaultSpec, Phase};
use netpoll_scenarios::zoo::{FIXED, ZOO};
use netpoll_sim::FaultPlan;

/// Seeds within which each bug must be found.
const FIND_WITHIN_SEEDS: u64 = 200;
/// Seeds each fixed twin must pass (under swarm faults).
const FIXED_SEEDS: u64 = 2000;

fn request(name: &str, fixed: u64, faults: u64, seed: u64) -> Request {
    let s = Registry::builtin().find(name).expect("registered");
    let mut p = s.defaults();
    p.set(FIXED, fixed).unwrap();
    p.set("faults", faults).unwrap();
    Request::sim(s, p, seed)
}

/// The first failing seed in `0..FIND_WITHIN_SEEDS`, with its report.
fn first_failure(name: &str, faults: u64) -> Option<(u64, Report)> {
    (0..FIND_WITHIN_SEEDS).find_map(|seed| {
        let r = execute(&request(name, 0, faults, seed));
        r.failure.is_some().then_some((seed, r))
    })
}

/// Asserts that the bug is found as one of `kinds`, that the report carries its replay line,
/// and that replaying the token fails the same way.
fn assert_found(name: &str, kinds: &[&str]) -> u64 {
    let (seed, r) = first_failure(name, 2)
        .unwrap_or_else(|| panic!("{name}: no failure in {FIND_WITHIN_SEEDS} swarm seeds"));
    assert!(
        kinds.contains(&r.outcome()),
        "{name} seed {seed}: found as {}, expected one of {kinds:?}\n{r}",
        r.outcome()
    );
    let text = r.to_string();
    let line = r.request.replay_line();
    // Swarm's quiet phase fails with none's token (version 1); its faulted phase with a
    // version-2 token naming that run alone.
    let version = match r.phase {
        Phase::Quiet => "np1-",
        _ => "np2-",
    };
    assert!(
        line.starts_with(&format!("netpoll-sim replay {version}")),
        "{line}"
    );
    assert!(
        text.contains(&line),
        "the report lacks its replay line:\n{text}"
    );
    let again = execute(&Registry::builtin().from_token(&r.request.token()).unwrap());
    assert_eq!(again.outcome(), r.outcome(), "{name}: the replay differs");
    assert_eq!(
        again.faults, r.faults,
        "{name}: the replay injects other faults"
    );
    assert_eq!(again.fingerprint, r.fingerprint);
    seed
}

fn assert_fixed_passes(name: &str) {
    for seed in 0..FIXED_SEEDS {
        let r = execute(&request(name, 1, 2, seed));
        assert!(r.failure.is_none(), "{name} fixed, seed {seed}:\n{r}");
    }
}

#[test]
fn et_partial_read_is_found_when_a_message_outgrows_the_read() {
    assert_found("zoo-et-partial-read", &["lost-wakeup"]);
    // Found with no fault at all: a 6,000-byte message outgrows the 4,096-byte read.
    let (seed, r) = first_failure("zoo-et-partial-read", 0).expect("found under none");
    assert_eq!((seed, r.outcome()), (0, "lost-wakeup"), "{r}");
    // Messages that fit one read leave the bug latent, as on Linux: neither none nor chaos
    // (Linux's edges) finds it.
    for faults in [0, 1] {
        for seed in 0..50 {
            let mut req = request("zoo-et-partial-read", 0, faults, seed);
            req.params.set(SIZE, 64).unwrap();
            let r = execute(&req);
            assert!(
                r.failure.is_none(),
                "size 64, faults {faults}, seed {seed}:\n{r}"
            );
        }
    }
}

#[test]
fn et_accept_one_is_found() {
    assert_found("zoo-et-accept-one", &["lost-wakeup"]);
}

#[test]
fn oneshot_no_rearm_is_found() {
    assert_found("zoo-oneshot-no-rearm", &["lost-wakeup"]);
}

#[test]
fn park_no_recheck_is_found() {
    assert_found("zoo-park-no-recheck", &["lost-wakeup"]);
}

#[test]
fn timer_not_in_timeout_is_found() {
    assert_found("zoo-timer-not-in-timeout", &["hang", "deadline"]);
}

#[test]
fn fixed_et_partial_read_passes() {
    assert_fixed_passes("zoo-et-partial-read");
}

#[test]
fn fixed_et_accept_one_passes() {
    assert_fixed_passes("zoo-et-accept-one");
}

#[test]
fn fixed_oneshot_passes() {
    assert_fixed_passes("zoo-oneshot-no-rearm");
}

#[test]
fn fixed_park_passes() {
    assert_fixed_passes("zoo-park-no-recheck");
}

#[test]
fn fixed_timer_passes() {
    assert_fixed_passes("zoo-timer-not-in-timeout");
}

#[test]
fn every_zoo_scenario_is_listed_and_deterministic() {
    for z in &ZOO {
        let mut req = request(z.name, 0, 2, 3);
        req.check_determinism = true;
        let r = execute(&req);
        assert_ne!(r.outcome(), "nondeterminism", "{}", z.name);
    }
}

/// An explicit plan travels in a version-2 token and replays the same faults.
#[test]
fn explicit_fault_plan_round_trips_through_the_token() {
    let mut req = request("zoo-et-partial-read", 0, 0, 5);
    req.faults = FaultSpec::Plan(carried(&FaultPlan::swarm(11)));
    let token = req.token();
    assert!(token.starts_with("np2-"), "{token}");
    let back = Registry::builtin().from_token(&token).unwrap();
    assert_eq!(back.faults, req.faults);
    let (a, b) = (execute(&req), execute(&back));
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.fingerprint, b.fingerprint);
    // A plain request stays a version-1 token.
    assert!(request("zoo-et-partial-read", 0, 2, 5)
        .token()
        .starts_with("np1-"));
    // Corrupt version-2 tokens are refused, not panicked on.
    for end in 0..token.len() {
        assert!(Registry::builtin().from_token(&token[..end]).is_err());
    }
}

/// A zoo bug found with big parameters shrinks to small ones, and the shrunk token replays to
/// the same failure kind.
#[test]
fn a_big_failure_shrinks_to_a_small_one() {
    let s = Registry::builtin().find("zoo-et-partial-read").unwrap();
    let (req, r) = (0..100)
        .find_map(|seed| {
            let mut p = s.defaults();
            for (n, v) in [("conns", 40), ("msgs", 20), ("size", 300), ("faults", 2)] {
                p.set(n, v).unwrap();
            }
            let req = Request::sim(s, p, seed);
            let r = execute(&req);
            r.failure.is_some().then_some((req, r))
        })
        .expect("a failing seed with big parameters");
    let out = shrink(&req, 400).unwrap();
    assert_eq!(out.kind, r.outcome());
    let p = &out.request.params;
    assert!(p.get("conns") <= 4, "conns {}", p.get("conns"));
    assert!(p.get("msgs") <= 2, "msgs {}", p.get("msgs"));
    assert!(p.get("size") < 300, "size {}", p.get("size"));
    // The swarm plan became an explicit one, with fewer knobs on.
    let FaultSpec::Plan(plan) = &out.request.faults else {
        panic!("expected an explicit plan, got {}", out.request.faults);
    };
    assert!(plan.short_read > 0.0, "the bug needs short reads");
    let replayed = execute(
        &Registry::builtin()
            .from_token(&out.request.token())
            .unwrap(),
    );
    assert_eq!(replayed.outcome(), r.outcome());
    assert!(out.steps.iter().any(|s| s.kept));
}

#[test]
fn a_passing_run_does_not_shrink() {
    assert!(shrink(&request("zoo-et-partial-read", 1, 0, 1), 10).is_err());
}

#[test]
fn cli_shrink_prints_steps_and_a_token() {
    let (_, r) = first_failure("zoo-et-accept-one", 2).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netpoll-sim"))
        .args(["shrink", &r.request.token()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shrunk in"), "{text}");
    assert!(
        text.contains("replay       netpoll-sim replay np"),
        "{text}"
    );
    assert!(text.contains("outcome      FAIL: lost-wakeup"), "{text}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_netpoll-sim"))
        .args(["shrink", "np2-00"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn cli_run_with_swarm_faults_reports_the_plan_and_replays() {
    let (seed, _) = first_failure("zoo-et-accept-one", 2).unwrap();
    let bin = env!("CARGO_BIN_EXE_netpoll-sim");
    let out = std::process::Command::new(bin)
        .args(["run", "zoo-et-accept-one", "--faults", "swarm", "--seed"])
        .arg(seed.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fault plan"), "{text}");
    assert!(text.contains("outcome      FAIL: lost-wakeup"), "{text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("replay       netpoll-sim replay "))
        .expect("a replay line");
    let again = std::process::Command::new(bin)
        .args(["replay", line])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stdout).contains("FAIL: lost-wakeup"));
    let bad = std::process::Command::new(bin)
        .args(["run", "zoo-et-accept-one", "--faults", "storm"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Sim finding (not fixed here: `sim/` is not this crate's). The `short_read` fault is documented
/// as "a read returns fewer bytes than are buffered", but the kernel draws the cut from the
/// caller's buffer length (`fault_len(buf.len(), p)` in `sim/src/lib.rs`), not from the bytes
/// buffered: a read of 100 buffered bytes into a 64 KiB buffer is cut short with probability
/// `p x 99/65535`, i.e. almost never. Loops that read with large buffers therefore barely meet
/// the fault (`zoo-et-partial-read --conns 1 --msgs 1 --size 100 --faults chaos`: 0 of 200
/// seeds fail with `read-buf=4096`, 23 of 200 with `read-buf=128`).
#[test]
fn short_read_fault_cuts_reads_with_large_buffers() {
    use netpoll::Poller;
    let mut short = 0;
    for seed in 0..1000 {
        let cfg = netpoll_sim::SimConfig {
            faults: FaultPlan {
                short_read: 0.5,
                ..FaultPlan::none()
            },
            ..Default::default()
        };
        let sim = netpoll_sim::Sim::with_config(seed, cfg);
        let [a, b] = sim.socketpair(0).unwrap();
        sim.write(a, &[7; 100]).unwrap();
        let mut buf = vec![0; 65536];
        if sim.read(b, &mut buf).unwrap() < 100 {
            short += 1;
        }
    }
    assert!(
        short > 400,
        "{short} of 1000 reads were cut short, expected about 500"
    );
}

//! `rt-echo` (the echo workload as tasks on the netpoller) and its canary, on the simulated
//! kernel: a default set of seeds, the fault plans, determinism, and proof that the
//! netpoller-level lost-wakeup oracle fires.
//!
//! `NETPOLL_SEED=<seed>` replays one seed; `NETPOLL_SEEDS=<n>` sweeps seeds 1..=n (default 6).
//! A failure prints the `netpoll-sim replay` line and the `NETPOLL_SEED` line that reproduce it.

use netpoll_scenarios::oracle::Failure;
use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{self, Backend, Report, Request};
use netpoll_scenarios::workload::Workload;

fn seeds() -> Vec<u64> {
    run::test_seeds(6)
}

fn rt_echo() -> &'static dyn Workload {
    Registry::builtin()
        .find("rt-echo")
        .expect("rt-echo is registered")
}

fn canary() -> &'static dyn Workload {
    Registry::builtin()
        .find("rt-canary")
        .expect("rt-canary is registered")
}

fn must_pass(req: &Request, test: &str) -> Report {
    eprintln!("rt-echo: seed {} ({})", req.seed, req.params);
    let r = run::execute(req);
    if let Some(f) = &r.failure {
        panic!(
            "rt-echo failed with seed {}:\n{f}\nreplay: {}\n    or: NETPOLL_SEED={} cargo test -p netpoll-scenarios --test rt_echo {test}",
            req.seed,
            req.replay_line(),
            req.seed
        );
    }
    r
}

/// Every byte of every message comes back (the scenario checks each one; the totals here).
#[test]
fn rt_echo_over_seeds() {
    let s = rt_echo();
    for seed in seeds() {
        let req = Request::sim(s, s.test_defaults(), seed);
        let r = must_pass(&req, "rt_echo_over_seeds");
        let p = &req.params;
        let want = p.get("conns") * p.get("msgs") * p.get("size");
        assert_eq!((r.stats.bytes, r.stats.bytes_sent), (want, want));
        assert_eq!(r.stats.conns, p.get("conns"));
        assert_eq!(r.stats.closed_eof, p.get("conns"));
        assert!(r.stats.epoll_events > 0 && r.stats.virtual_ns > 0);
    }
}

/// Under the benign fault plans: chaos (every fault) and swarm (a plan drawn from each seed),
/// and with messages larger than the server's buffer (so reads and writes are cut short).
#[test]
fn rt_echo_under_faults() {
    let s = rt_echo();
    for faults in [1, 2] {
        for seed in seeds() {
            for size in [300, 40_000] {
                let mut p = s.test_defaults();
                p.set("faults", faults).unwrap();
                p.set("size", size).unwrap();
                if size > 1000 {
                    p.set("conns", 4).unwrap();
                    p.set("window", 2).unwrap();
                }
                let r = must_pass(&Request::sim(s, p, seed), "rt_echo_under_faults");
                let c = r.faults.expect("sim counts faults");
                assert!(
                    c.short_reads + c.short_writes + c.split_writes + c.spurious + c.eintr > 0,
                    "faults={faults} seed {seed}: no fault fired: {c:?}"
                );
            }
        }
    }
}

/// One seed, one run: the same seed twice gives the same fingerprint (every call and result);
/// the seed picks the interleaving, so different seeds differ; the determinism self-check passes.
#[test]
fn rt_echo_is_deterministic() {
    let s = rt_echo();
    let fp = |seed| {
        let r = must_pass(
            &Request::sim(s, s.test_defaults(), seed),
            "rt_echo_is_deterministic",
        );
        r.fingerprint.expect("sim fingerprint")
    };
    for seed in seeds().into_iter().take(3) {
        assert_eq!(fp(seed), fp(seed), "seed {seed}");
    }
    assert_ne!(fp(1), fp(2), "two seeds, one interleaving");
    let mut req = Request::sim(s, s.test_defaults(), 7);
    req.check_determinism = true;
    must_pass(&req, "rt_echo_is_deterministic");
    assert!(run::compare_traced(&Request::sim(s, s.test_defaults(), 3)).is_ok());
}

/// The canary: a kernel that loses one read event for a parked reader. The netpoller-level
/// oracle must report the lost wakeup (not a hang, not the read deadline's consequences),
/// naming the fd, the parked task and its side, the fd's recent calls, and the replay line;
/// and the replay token must reproduce it exactly. Without the oracle, the run ends when the
/// server's read deadline closes the starved connection: an integrity failure, not this.
#[test]
fn rt_canary_is_caught_as_a_lost_wakeup() {
    let c = canary();
    for seed in seeds().into_iter().take(4) {
        let req = Request::sim(c, c.test_defaults(), seed);
        let r = run::execute(&req);
        let f = r
            .failure
            .clone()
            .unwrap_or_else(|| panic!("seed {seed}: the canary must fail"));
        let Failure::LostWakeup {
            fd, wants, history, ..
        } = &f
        else {
            panic!("seed {seed}: expected a lost wakeup, got {}: {f}", f.kind());
        };
        assert!(wants.contains(netpoll::Events::IN), "{f}");
        let text = f.to_string();
        assert!(
            text.contains(&format!("fd {fd} ("))
                && text.contains("parked on its read side")
                && text.contains("task "),
            "seed {seed}: {text}"
        );
        assert!(
            !history.is_empty()
                && text.contains(&format!("read(fd {fd},"))
                && text.contains("EAGAIN"),
            "seed {seed}: the fd's recent calls: {text}"
        );
        let summary = r.to_string();
        assert!(
            summary.contains("outcome      FAIL: lost-wakeup")
                && summary.contains(&format!("seed         {seed}"))
                && summary.contains("replay       netpoll-sim replay np1-"),
            "{summary}"
        );
        // The token round-trips and replays the same failure.
        let again = Registry::builtin().from_token(&req.token()).unwrap();
        assert_eq!(again.scenario.name(), "rt-canary");
        let r2 = run::execute(&again);
        assert_eq!(r2.failure.as_ref(), Some(&f), "seed {seed}: replay differs");
        assert_eq!(r2.fingerprint, r.fingerprint);
    }
}

/// The oracle, not the hang detector or the deadline, is what reports the canary: with the
/// read deadline off, the run would otherwise end as a hang (the runtime's `Deadlock`).
#[test]
fn rt_canary_without_deadline_is_still_a_lost_wakeup() {
    let c = canary();
    let mut p = c.test_defaults();
    p.set("deadline-ms", 0).unwrap();
    let r = run::execute(&Request::sim(c, p, 5));
    assert_eq!(r.outcome(), "lost-wakeup", "{r}");
    assert!(r.stats.quiescence_checks >= 1, "{:?}", r.stats);
}

/// Replay tokens of `rt-echo` round-trip through the text form.
#[test]
fn rt_echo_token_round_trips() {
    let s = rt_echo();
    let mut p = s.test_defaults();
    p.set("window", 3).unwrap();
    p.set("faults", 2).unwrap();
    let req = Request::sim(s, p, 0xfeed);
    let back = Registry::builtin().from_token(&req.token()).unwrap();
    assert_eq!(back.scenario.name(), "rt-echo");
    assert_eq!(back.params.values(), req.params.values());
    assert_eq!(back.seed, 0xfeed);
    assert_eq!(
        run::execute(&back).fingerprint,
        run::execute(&req).fingerprint
    );
}

/// The same tasks on real epoll (small: real time). No lost-wakeup oracle there.
#[test]
fn rt_echo_on_the_real_kernel() {
    let s = rt_echo();
    let mut p = s.test_defaults();
    p.set("conns", 10).unwrap();
    let req = Request {
        backend: Backend::Real,
        ..Request::sim(s, p, 1)
    };
    req.validate().unwrap();
    let r = run::execute(&req);
    assert!(r.failure.is_none(), "{}", r.failure.unwrap());
    assert_eq!(r.stats.bytes, 10 * 4 * 300);
    assert!(r.fingerprint.is_none());
}

/// The canary is simulated-kernel only, and a bad parameter is a usage error, not a panic.
#[test]
fn bad_requests_are_refused() {
    let c = canary();
    let req = Request {
        backend: Backend::Real,
        ..Request::sim(c, c.test_defaults(), 1)
    };
    assert!(req
        .validate()
        .unwrap_err()
        .to_string()
        .contains("simulated kernel only"));
    let mut p = rt_echo().defaults();
    assert!(p.set("size", 65_537).is_err());
}

/// A plan that interrupts every wait, or reports only spurious events, never lets virtual time
/// pass: the replay of such a token ends (well within 10 s) with the runtime's livelock
/// verdict, a hang as `echo` reports the same plan, instead of spinning for ever.
#[test]
fn rt_echo_livelock_plans_end_with_a_livelock_verdict() {
    use netpoll_scenarios::swarm::FaultSpec;
    use netpoll_sim::FaultPlan;

    for plan in [
        FaultPlan {
            eintr: 1.0,
            ..FaultPlan::none()
        },
        FaultPlan {
            spurious: 1.0,
            ..FaultPlan::none()
        },
    ] {
        let s = rt_echo();
        let mut req = Request::sim(s, s.test_defaults(), 3);
        req.faults = FaultSpec::Plan(plan.clone());
        let token = req.token();
        eprintln!("{}", req.replay_line());
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let req = Registry::builtin()
                .from_token(&token)
                .expect("the token decodes");
            let _ = tx.send(run::execute(&req));
        });
        // A watchdog on wall time, not a sleep: the run is on virtual time.
        let r = match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "rt-echo with {plan:?} still runs after 10 s: replay {}",
                    req.replay_line()
                )
            }
            Err(_) => std::panic::resume_unwind(t.join().expect_err("the run panicked")),
        };
        assert_eq!(r.outcome(), "hang", "{r}");
        match &r.failure {
            Some(Failure::Hang { detail, .. }) => {
                assert!(detail.contains("livelock"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        // `echo` reports the same plan the same way.
        let e = Registry::builtin().find("echo").expect("echo");
        let mut ereq = Request::sim(e, e.test_defaults(), 3);
        ereq.faults = FaultSpec::Plan(plan);
        let er = run::execute(&ereq);
        assert_eq!(er.outcome(), "hang", "{er}");
    }
}

fn with_workers(workers: u64, conns: u64, msgs: u64, seed: u64) -> Request {
    let s = rt_echo();
    let mut p = s.defaults();
    p.set("workers", workers).unwrap();
    p.set("conns", conns).unwrap();
    p.set("msgs", msgs).unwrap();
    Request::sim(s, p, seed)
}

/// A `MultiRuntime` of 4 simulated workers on the simulated kernel: every byte comes back, on
/// every seed of the sample, and the same seed gives the same run (summary and fingerprint,
/// which includes the schedule).
#[test]
fn rt_echo_on_four_workers() {
    for seed in seeds() {
        let req = with_workers(4, 12, 3, seed);
        let r = must_pass(&req, "rt_echo_on_four_workers");
        assert_eq!(r.stats.bytes, 12 * 3 * 64);
        assert_eq!(r.stats.closed_eof, 12);
        let again = run::execute(&req);
        assert_eq!(again.fingerprint, r.fingerprint, "seed {seed}");
        assert_eq!(
            (
                again.stats.syscalls,
                again.stats.epoll_events,
                again.stats.virtual_ns
            ),
            (r.stats.syscalls, r.stats.epoll_events, r.stats.virtual_ns),
            "seed {seed}"
        );
    }
}

/// Different seeds interleave the workers differently: 100 seeds give (nearly) 100 distinct
/// schedules. The figure is printed (`--nocapture`).
#[test]
fn rt_echo_workers_seeds_give_distinct_schedules() {
    let prints: std::collections::BTreeSet<_> = (0..100)
        .map(|seed| {
            let r = must_pass(
                &with_workers(4, 4, 2, seed),
                "rt_echo_workers_seeds_give_distinct_schedules",
            );
            r.fingerprint.expect("a simulated run has a fingerprint")
        })
        .collect();
    eprintln!(
        "rt-echo workers=4 conns=4 msgs=2: {} distinct schedules in 100 seeds",
        prints.len()
    );
    assert!(
        prints.len() >= 95,
        "{} distinct schedules in 100 seeds",
        prints.len()
    );
}

/// The netpoller-level oracle works across threads: the canary's lost event, when it strands a
/// parked reader, is reported as a lost wakeup by the `MultiRuntime`'s quiescence hook. With
/// threads the dropped event is not always a parked reader's (the reader may be running and read
/// the data anyway: the run passes), and it may be the runtime's own wake eventfd's (every
/// thread then blocks: a hang naming each thread's blocking call). Nothing else may happen.
#[test]
fn rt_canary_on_workers_reports_the_lost_wakeup() {
    let c = canary();
    let mut p = c.defaults();
    p.set("workers", 3).unwrap();
    let mut lost = 0;
    let runs = 8;
    for seed in 0..runs {
        let r = run::execute(&Request::sim(c, p.clone(), seed));
        match &r.failure {
            Some(Failure::LostWakeup { owner, .. }) => {
                assert!(owner.contains("parked on its read side"), "{owner}");
                lost += 1;
            }
            None => {}
            Some(Failure::Hang { detail, .. }) => {
                assert!(
                    detail.contains("blocked in epoll_wait"),
                    "seed {seed}: {detail}"
                );
            }
            Some(f) => panic!(
                "seed {seed}: the canary on workers failed as {}:\n{r}",
                f.kind()
            ),
        }
    }
    assert!(
        lost * 2 >= runs,
        "{lost} lost wakeups reported in {runs} seeds"
    );
}

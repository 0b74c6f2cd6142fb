//! Running a workload: on a backend, with a seed, optionally twice for the determinism
//! self-check; the [`Report`] it produces and the one line that replays it.
//!
//! Every workload goes through the same two calls, [`execute`] and [`traced`], which call its
//! [`Workload::run`](crate::workload::Workload::run): nothing here knows a workload by name.

use netpoll_sim::trace::{Record, TraceSink};

use crate::oracle::Failure;
use crate::swarm::{FaultSpec, Phase};

pub use crate::workload::{
    fd_limit, peak_rss_kib, sim_config_for, sim_for, Backend, ReplayError, Report, Request, Tracing,
};

/// The seeds a test runs: `NETPOLL_SEED=<seed>` replays one, `NETPOLL_SEEDS=<n>` sweeps
/// `1..=n`, and otherwise `1..=default_n`.
///
/// # Panics
/// If either variable is not a number: a test has no other way to refuse its input.
pub fn test_seeds(default_n: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("NETPOLL_SEED") {
        let seed = s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("NETPOLL_SEED={s:?} is not a u64"));
        return vec![seed];
    }
    let n: u64 = match std::env::var("NETPOLL_SEEDS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("NETPOLL_SEEDS={s:?} is not a count")),
        Err(_) => default_n,
    };
    (1..=n).collect()
}

/// The runs `req` makes, in order, each as a request that makes that run alone: under `chaos`
/// or `swarm` (the `faults` parameter or [`Request::faults`]) on the simulated kernel, the quiet
/// phase (exactly the request with `faults` none, so its token is none's) and the faulted phase
/// ([`FaultSpec::ChaosOnly`] / [`FaultSpec::SwarmOnly`]); otherwise `req` itself. The expansion
/// is [`FaultSpec::phases`]'s.
pub fn phases(req: &Request) -> Vec<(Phase, Request)> {
    let spec = match (&req.faults, req.params.try_get("faults")) {
        (FaultSpec::None, Some(1)) => FaultSpec::Chaos,
        (FaultSpec::None, Some(2)) => FaultSpec::Swarm,
        (s, _) => s.clone(),
    };
    let runs = spec.phases();
    if req.backend != Backend::Sim || runs.len() == 1 {
        return vec![(Phase::Single, req.clone())];
    }
    runs.into_iter()
        .map(|(phase, spec)| {
            let mut r = req.clone();
            if phase == Phase::Quiet && r.params.try_get("faults").is_some() {
                r.params.set("faults", 0).expect("0 is in range");
            }
            r.faults = spec;
            (phase, r)
        })
        .collect()
}

/// Makes the run: each of its [`phases`] in turn, up to the first that fails. A failing phase's
/// report is returned as it is (its request replays that run alone, and
/// [`Report::phase`] says which it was); when all pass, the last phase's report stands for the
/// seed, with the original request and the CPU and wall time of all of them.
pub fn execute(req: &Request) -> Report {
    let mut runs = phases(req);
    if runs.len() == 1 {
        return execute_one(&runs.pop().expect("one run").1);
    }
    let (mut cpu, mut wall) = (0, 0);
    let mut last = None;
    for (phase, r) in runs {
        let mut report = execute_one(&r);
        report.phase = phase;
        if report.failure.is_some() {
            return report;
        }
        cpu += report.stats.cpu_ns;
        wall += report.stats.wall_ns;
        last = Some(report);
    }
    let mut report = last.expect("at least one phase");
    report.request = req.clone();
    report.stats.cpu_ns = cpu;
    report.stats.wall_ns = wall;
    report
}

/// One run (twice when the determinism check is asked for, on the simulated kernel, and only
/// when the first run passed: a failure is already reproducible by its token).
fn execute_one(req: &Request) -> Report {
    let mut report = req.scenario.run(req, Tracing::Off).report;
    if req.check_determinism && req.backend == Backend::Sim && report.failure.is_none() {
        let again = req.scenario.run(req, Tracing::Off).report;
        if again.fingerprint != report.fingerprint {
            // Locate the first difference: two traced runs, compared call by call.
            report.failure = Some(compare_traced(req).err().unwrap_or_else(|| {
                Failure::Invariant(format!(
                    "two runs of seed {} ended with different fingerprints ({:?} vs {:?}), but traced reruns agreed",
                    req.seed, report.fingerprint, again.fingerprint
                ))
            }));
        }
    }
    report
}

/// A traced simulated run: its records, and its report (with fd labels where the workload has
/// them).
pub fn traced(req: &Request) -> (Vec<Record>, Report) {
    traced_with(req, Tracing::Keep)
}

/// A simulated run whose every call goes to `sink` as it is made, so that the trace of a large
/// run never has to fit in memory; the report carries the labels that name the tracks.
pub fn trace_to(req: &Request, sink: TraceSink) -> Report {
    traced_with(req, Tracing::Sink(sink)).1
}

/// Traces one run: `req`'s only phase, or under `chaos`/`swarm` the first phase that fails (the
/// last when none does), found by untraced runs first.
fn traced_with(req: &Request, tracing: Tracing) -> (Vec<Record>, Report) {
    let mut req = req.clone();
    req.backend = Backend::Sim;
    let mut runs = phases(&req);
    let n = runs.len();
    let pick = if n == 1 {
        0
    } else {
        runs.iter()
            .position(|(_, r)| r.scenario.run(r, Tracing::Off).report.failure.is_some())
            .unwrap_or(n - 1)
    };
    let (phase, one) = runs.swap_remove(pick);
    let mut run = one.scenario.run(&one, tracing);
    run.report.phase = phase;
    (run.trace, run.report)
}

/// The determinism self-check, step by step: runs `req` twice with full traces and reports the
/// first call where they differ.
///
/// # Errors
/// [`Failure::Divergence`] with the step index and virtual time.
pub fn compare_traced(req: &Request) -> Result<(), Failure> {
    let (a, _) = traced(req);
    let (b, _) = traced(req);
    first_divergence(&a, &b)
}

/// The first index where two traces differ.
///
/// # Errors
/// [`Failure::Divergence`].
pub fn first_divergence(a: &[Record], b: &[Record]) -> Result<(), Failure> {
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            let at_ns = x.or(y).map_or(0, |r| r.at_ns);
            return Err(Failure::Divergence {
                step: i as u64,
                at_ns,
                first: x.copied(),
                second: y.copied(),
            });
        }
    }
    Ok(())
}

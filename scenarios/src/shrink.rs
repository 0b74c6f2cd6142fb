//! Shrinking: a failing run reduced to a minimal one that fails the same way.
//!
//! Given a failing [`Request`] (a replay token), [`shrink`] tries smaller variants, one change at
//! a time, and keeps a change when the run still fails with the **same oracle kind** (a lost
//! wakeup stays a lost wakeup; a change that turns it into a hang is refused). A smaller
//! parameter value is tried with the same seed first, then with up to [`OTHER_SEEDS`] others
//! (a smaller run is a different schedule anyway); fault changes keep the seed. In order, repeated until nothing more can be taken away or the run budget is spent:
//!
//! 1. a `chaos` or `swarm` fault plan (the `faults` parameter) becomes the explicit plan it stands for (probabilities in
//!    ppm, as a token carries them), so that single knobs can be turned;
//! 2. `conns`, `msgs`, `size`: each tried at its minimum, an eighth, a quarter, a half, then
//!    one less; once a smaller value has failed to reproduce, later tries bisect between it
//!    and the current value;
//! 3. the fault plan: each probability turned off; the latency distribution, the
//!    delivery quantum and a non-Linux edge policy dropped; a plan with nothing left becomes no
//!    plan at all (a version-1 token);
//! 4. once 2 and 3 change nothing more: the same again, with probabilities that cannot be
//!    turned off halved (down to 2%).
//!
//! Every step is recorded ([`Step`]) so `netpoll-sim shrink TOKEN` can print how it got there,
//! and the result's token is checked by construction: it is the last request that failed.
//!
//! Shrinking is greedy (it finds a local minimum, not the smallest reproducer there is), and a
//! smaller run is a different schedule: it keeps the failure's kind, not necessarily the very
//! same fd or instant.

use std::collections::BTreeMap;

use netpoll_sim::{EdgePolicy, FaultPlan};

use crate::params::{CONNS, MSGS, SIZE};
use crate::rng::mix;
use crate::run::{execute, sim_config_for, Report, Request};
use crate::swarm::{carried, knob_mut, quantize, FaultSpec, KNOBS};

/// One attempted change.
#[derive(Clone, Debug)]
pub struct Step {
    /// The change, in words (`conns 10 -> 1`).
    pub change: String,
    /// The outcome of the run with it (`"pass"` or a failure kind).
    pub outcome: &'static str,
    /// Whether it was kept (same failure kind).
    pub kept: bool,
}

/// The result of [`shrink`].
#[derive(Debug)]
pub struct Shrunk {
    /// The failure kind kept throughout.
    pub kind: &'static str,
    /// The smallest failing request found.
    pub request: Request,
    /// Its report.
    pub report: Report,
    /// Every change tried, in order.
    pub steps: Vec<Step>,
    /// Runs made (the original included).
    pub runs: u32,
}

/// Shrinks `req`, making at most `max_runs` runs.
///
/// # Errors
/// If `req` passes: there is nothing to shrink.
pub fn shrink(req: &Request, max_runs: u32) -> Result<Shrunk, String> {
    let mut req = req.clone();
    req.check_determinism = false;
    let first = execute(&req);
    let kind = first.outcome();
    if first.failure.is_none() {
        return Err(format!(
            "the run passes (seed {}): nothing to shrink",
            req.seed
        ));
    }
    // Under chaos or swarm, shrink the phase that failed: its request makes that run alone.
    let mut s = Shrinker {
        kind,
        cur: first.request.clone(),
        report: first,
        steps: Vec::new(),
        runs: 1,
        max_runs,
        floor: BTreeMap::new(),
    };
    let param = s.cur.params.try_get("faults").unwrap_or(0);
    let named = s.cur.faults.is_named();
    if param != 0 || named {
        let plan = sim_config_for(&s.cur).faults;
        let mut c = s.cur.clone();
        if param != 0 {
            c.params.set("faults", 0).expect("0 is in range");
        }
        // What a token carries (no cost model): kept only if it still fails the same way, so
        // the token printed at the end replays exactly the run that failed.
        c.faults = FaultSpec::Plan(carried(&plan));
        let was = if named {
            s.cur.faults.to_string()
        } else {
            ["none", "chaos", "swarm"][param.min(2) as usize].to_string()
        };
        s.attempt_request(c, format!("faults {was} -> explicit plan"));
    }
    // Sizes first, with faults only switched off; then lower probabilities too (a rarer
    // fault makes smaller runs fail less often, so it comes last).
    for halve in [false, true] {
        loop {
            let mut changed = false;
            for name in [CONNS, MSGS, SIZE] {
                changed |= s.shrink_param(name);
            }
            changed |= shrink_faults_pass(&mut s, halve);
            if !changed || s.runs >= s.max_runs {
                break;
            }
        }
    }
    Ok(Shrunk {
        kind,
        request: s.cur,
        report: s.report,
        steps: s.steps,
        runs: s.runs,
    })
}

/// Other seeds tried for each smaller parameter value before giving it up.
pub const OTHER_SEEDS: u64 = 16;

struct Shrinker {
    kind: &'static str,
    cur: Request,
    report: Report,
    steps: Vec<Step>,
    runs: u32,
    max_runs: u32,
    /// Per parameter: the largest smaller value that did not fail the same way.
    floor: BTreeMap<&'static str, u64>,
}

impl Shrinker {
    /// Runs `c`; keeps it if it fails the same way.
    fn attempt_request(&mut self, c: Request, change: String) -> bool {
        if self.runs >= self.max_runs || c.validate().is_err() {
            return false;
        }
        self.runs += 1;
        let r = execute(&c);
        let kept = r.outcome() == self.kind;
        self.steps.push(Step {
            change,
            outcome: r.outcome(),
            kept,
        });
        if kept {
            self.cur = c;
            self.report = r;
        }
        kept
    }

    /// [`attempt_request`](Self::attempt_request), then the same change with up to [`OTHER_SEEDS`] other
    /// seeds: a smaller run is a different schedule, and the bug may need another seed to show.
    fn attempt_seeds(&mut self, c: Request, change: String) -> bool {
        if self.attempt_request(c.clone(), change.clone()) {
            return true;
        }
        for j in 1..=OTHER_SEEDS {
            let mut d = c.clone();
            d.seed = mix(c.seed.wrapping_add(j)) % 1_000_000_000;
            if self.attempt_request(d.clone(), format!("{change}, seed {}", d.seed)) {
                return true;
            }
        }
        false
    }

    fn shrink_param(&mut self, name: &'static str) -> bool {
        let Some(v) = self.cur.params.try_get(name) else {
            return false;
        };
        let spec = self
            .cur
            .params
            .specs()
            .iter()
            .find(|s| s.name == name)
            .expect("declared");
        // Values at or below `floor` did not fail (with any seed tried): bisect above it.
        let floor = self.floor.get(name).copied();
        let mut cands = match floor {
            None => vec![spec.min, v / 8, v / 4, v / 2, v.saturating_sub(1)],
            Some(lo) => vec![lo + (v - lo) / 2, v.saturating_sub(1)],
        };
        cands.retain(|&x| x >= spec.min && x < v && floor.is_none_or(|lo| x > lo));
        cands.sort_unstable();
        cands.dedup();
        for x in cands {
            let mut c = self.cur.clone();
            if c.params.set(name, x).is_err() {
                continue;
            }
            if self.attempt_seeds(c, format!("{name} {v} -> {x}")) {
                return true;
            }
            if self.runs < self.max_runs {
                let lo = self.floor.entry(name).or_insert(x);
                *lo = (*lo).max(x);
            }
        }
        false
    }
}

impl FaultTrial for Shrinker {
    fn faults(&self) -> &FaultSpec {
        &self.cur.faults
    }

    fn attempt(&mut self, faults: FaultSpec, change: String) -> bool {
        let mut c = self.cur.clone();
        c.faults = faults;
        self.attempt_request(c, change)
    }

    fn exhausted(&self) -> bool {
        self.runs >= self.max_runs
    }
}

/// A failing case whose fault plan can be changed and run again: what [`shrink_faults`] needs.
/// The scenario shrinker above is one; [`crate::check`] is the other (a user's closure and
/// seed, with only the plan to shrink).
pub trait FaultTrial {
    /// The spec of the current (failing) case.
    fn faults(&self) -> &FaultSpec;
    /// Runs the current case with `faults` instead; keeps the change and returns `true` when it
    /// still fails the same way. `change` says what was changed, in words.
    fn attempt(&mut self, faults: FaultSpec, change: String) -> bool;
    /// Whether the run budget is spent.
    fn exhausted(&self) -> bool;
}

/// Shrinks the fault plan of a failing case `t` (steps 1, 3 and 4 of the [module](self) docs,
/// with the case's other inputs fixed): a named plan becomes the explicit one it stands for for
/// `seed`, then knobs are turned off, then halved, until nothing more can be taken away or the
/// budget is spent. The result is `t`'s final [`faults`](FaultTrial::faults).
pub fn shrink_faults(t: &mut impl FaultTrial, seed: u64) {
    if t.faults().is_named() {
        let was = t.faults().to_string();
        let plan = t.faults().plan(seed).expect("a named plan");
        t.attempt(
            FaultSpec::Plan(quantize(&plan)),
            format!("faults {was} -> explicit plan"),
        );
    }
    for halve in [false, true] {
        while shrink_faults_pass(t, halve) && !t.exhausted() {}
    }
}

fn with_plan(t: &mut impl FaultTrial, change: String, f: impl FnOnce(&mut FaultPlan)) -> bool {
    let FaultSpec::Plan(p) = t.faults() else {
        return false;
    };
    let mut p = p.clone();
    f(&mut p);
    t.attempt(FaultSpec::Plan(quantize(&p)), change)
}

/// One pass over the plan's knobs: each turned off (or, with `halve`, halved when it cannot be
/// turned off); whether anything changed.
fn shrink_faults_pass(t: &mut impl FaultTrial, halve: bool) -> bool {
    let FaultSpec::Plan(p) = t.faults().clone() else {
        return false;
    };
    let mut changed = false;
    for (i, name) in KNOBS.iter().enumerate() {
        let mut q = p.clone();
        let x = *knob_mut(&mut q, i);
        if x <= 0.0 {
            continue;
        }
        let off = with_plan(t, format!("fault {name} {x:.6} -> 0"), |p| {
            *knob_mut(p, i) = 0.0
        });
        let lower = !off
            && halve
            && x > 0.02
            && with_plan(t, format!("fault {name} {x:.6} -> {:.6}", x / 2.0), |p| {
                *knob_mut(p, i) = x / 2.0
            });
        changed |= off || lower;
    }
    if p.latency.is_some() {
        changed |= with_plan(
            t,
            format!("fault latency {:?} -> default", p.latency),
            |p| p.latency = None,
        );
    }
    if p.quantum_ns > 0 {
        changed |= with_plan(t, format!("fault quantum_ns {} -> 0", p.quantum_ns), |p| {
            p.quantum_ns = 0
        });
    }
    if p.edge != EdgePolicy::Linux {
        changed |= with_plan(t, format!("fault edge {:?} -> Linux", p.edge), |p| {
            p.edge = EdgePolicy::Linux
        });
    }
    if let FaultSpec::Plan(p) = t.faults() {
        if p.is_quiet() {
            changed |= t.attempt(FaultSpec::None, "faults: quiet plan -> none".into());
        }
    }
    changed
}

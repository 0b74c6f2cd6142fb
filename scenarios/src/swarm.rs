//! Fault plans for scenario runs: which of the simulated kernel's faults
//! ([`netpoll_sim::FaultPlan`]) a run injects, and how that choice travels in a replay token.
//!
//! Two layers:
//!
//! - **The `faults` parameter** every scenario declares (0 none, 1 [`FaultPlan::chaos`], 2
//!   [`FaultPlan::swarm`] of the run's seed: a random subset of faults with random weights, a
//!   different one per seed). `netpoll-sim run|sweep --faults none|chaos|swarm` sets it
//!   ([`FaultSpec::param_value`]); like any parameter it is carried in the version-1 token.
//! - **An explicit plan** ([`Request::faults`](crate::run::Request::faults), a [`FaultSpec`]),
//!   which overrides the parameter: what the shrinker writes when it turns single knobs off or
//!   lowers probabilities. It is carried in a version-2 token.
//!
//! A plan replaces the scenario's, except that a scenario's own `split-pct` is kept when the
//! plan splits less often. Every fault the kernel injects is drawn from the run's seed, so the
//! token (scenario, parameters, seed, fault spec) replays the faults exactly, and the report
//! lists the plan in force and the faults that fired (`Sim::fault_counts`).
//!
//! # Token encoding
//!
//! A token without an explicit plan is a version-1 token, byte for byte what earlier builds
//! wrote. A token with one is version 2: the version-1 body followed by the fault section (a
//! tag byte: 1 chaos, 2 swarm, 3 plan; a plan then carries eight probabilities in ppm as
//! varints, in [`KNOBS`] order, the quantum in ns, the edge policy byte, and a latency tag with
//! its numbers). Builds that read only version 1 refuse it cleanly ("format version 2 is not
//! supported").

use std::fmt;

use netpoll_sim::{EdgePolicy, FaultPlan, Latency, SimConfig};

/// Which faults a run injects.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FaultSpec {
    /// The scenario's own configuration.
    #[default]
    None,
    /// [`FaultPlan::chaos`].
    Chaos,
    /// [`FaultPlan::swarm`] of the run's seed.
    Swarm,
    /// An explicit plan (probabilities are kept in whole parts per million, see [`quantize`]).
    Plan(FaultPlan),
}

impl FaultSpec {
    /// The value of the scenarios' `faults` parameter for `--faults none|chaos|swarm`.
    ///
    /// # Errors
    /// Anything else, in words.
    pub fn param_value(s: &str) -> Result<u64, String> {
        match s {
            "none" => Ok(0),
            "chaos" => Ok(1),
            "swarm" => Ok(2),
            _ => Err(format!("--faults {s:?}: expected none, chaos or swarm")),
        }
    }

    /// The plan for a run with `seed` (`None`: keep the scenario's).
    pub fn plan(&self, seed: u64) -> Option<FaultPlan> {
        match self {
            FaultSpec::None => None,
            FaultSpec::Chaos => Some(FaultPlan::chaos()),
            FaultSpec::Swarm => Some(FaultPlan::swarm(seed)),
            FaultSpec::Plan(p) => Some(p.clone()),
        }
    }

    /// Puts this spec's plan into a scenario's kernel configuration.
    pub fn apply(&self, seed: u64, cfg: &mut SimConfig) {
        if let Some(mut plan) = self.plan(seed) {
            plan.split_write = plan.split_write.max(cfg.faults.split_write);
            cfg.faults = plan;
        }
    }

    /// Appends the token's fault section (nothing for `None`).
    pub fn encode(&self, out: &mut Vec<u8>, put_varint: fn(&mut Vec<u8>, u64)) {
        match self {
            FaultSpec::None => {}
            FaultSpec::Chaos => out.push(1),
            FaultSpec::Swarm => out.push(2),
            FaultSpec::Plan(p) => {
                out.push(3);
                for x in probs(p) {
                    put_varint(out, to_ppm(x));
                }
                put_varint(out, p.quantum_ns);
                out.push(match p.edge {
                    EdgePolicy::Linux => 0,
                    EdgePolicy::EmptyToNonEmpty => 1,
                });
                match p.latency {
                    None => out.push(0),
                    Some(Latency::Uniform(lo, hi)) => {
                        out.push(1);
                        put_varint(out, lo);
                        put_varint(out, hi);
                    }
                    Some(Latency::Exponential { base, mean_extra }) => {
                        out.push(2);
                        put_varint(out, base);
                        put_varint(out, mean_extra);
                    }
                    Some(Latency::Bimodal { fast, slow, p_slow }) => {
                        out.push(3);
                        put_varint(out, fast);
                        put_varint(out, slow);
                        put_varint(out, to_ppm(p_slow));
                    }
                }
            }
        }
    }

    /// Reads a fault section written by [`encode`](Self::encode); `byte` and `varint` read the
    /// token's next byte and number.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn decode<E>(
        byte: &mut dyn FnMut() -> Result<u8, E>,
        varint: &mut dyn FnMut() -> Result<u64, E>,
        bad: impl Fn(&'static str) -> E,
    ) -> Result<FaultSpec, E> {
        match byte()? {
            1 => Ok(FaultSpec::Chaos),
            2 => Ok(FaultSpec::Swarm),
            3 => {
                let mut ps = [0.0; 8];
                for p in &mut ps {
                    let v = varint()?;
                    if v > 1_000_000 {
                        return Err(bad("a fault probability is over 1"));
                    }
                    *p = v as f64 / 1e6;
                }
                let quantum_ns = varint()?;
                let edge = match byte()? {
                    0 => EdgePolicy::Linux,
                    1 => EdgePolicy::EmptyToNonEmpty,
                    _ => return Err(bad("unknown edge policy")),
                };
                let latency = match byte()? {
                    0 => None,
                    1 => Some(Latency::Uniform(varint()?, varint()?)),
                    2 => Some(Latency::Exponential {
                        base: varint()?,
                        mean_extra: varint()?,
                    }),
                    3 => {
                        let (fast, slow, p) = (varint()?, varint()?, varint()?);
                        if p > 1_000_000 {
                            return Err(bad("a fault probability is over 1"));
                        }
                        Some(Latency::Bimodal {
                            fast,
                            slow,
                            p_slow: p as f64 / 1e6,
                        })
                    }
                    _ => return Err(bad("unknown latency distribution")),
                };
                let [short_read, short_write, split_write, spurious, eintr, reset, accept_abort, timer_first] =
                    ps;
                Ok(FaultSpec::Plan(FaultPlan {
                    short_read,
                    short_write,
                    split_write,
                    latency,
                    spurious,
                    eintr,
                    reset,
                    accept_abort,
                    timer_first,
                    quantum_ns,
                    edge,
                    ..FaultPlan::default()
                }))
            }
            _ => Err(bad("unknown fault section")),
        }
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSpec::None => f.write_str("none"),
            FaultSpec::Chaos => f.write_str("chaos"),
            FaultSpec::Swarm => f.write_str("swarm"),
            FaultSpec::Plan(p) => f.write_str(&describe(p)),
        }
    }
}

fn to_ppm(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 1e6).round() as u64
}

fn probs(p: &FaultPlan) -> [f64; 8] {
    [
        p.short_read,
        p.short_write,
        p.split_write,
        p.spurious,
        p.eintr,
        p.reset,
        p.accept_abort,
        p.timer_first,
    ]
}

/// The names of [`probs`]'s knobs, in order.
pub const KNOBS: [&str; 8] = [
    "short_read",
    "short_write",
    "split_write",
    "spurious",
    "eintr",
    "reset",
    "accept_abort",
    "timer_first",
];

/// The probability knob `i` (in [`KNOBS`] order) of `p`.
pub fn knob_mut(p: &mut FaultPlan, i: usize) -> &mut f64 {
    match i {
        0 => &mut p.short_read,
        1 => &mut p.short_write,
        2 => &mut p.split_write,
        3 => &mut p.spurious,
        4 => &mut p.eintr,
        5 => &mut p.reset,
        6 => &mut p.accept_abort,
        _ => &mut p.timer_first,
    }
}

/// `p` with every probability rounded to whole parts per million, as a token carries it.
pub fn quantize(p: &FaultPlan) -> FaultPlan {
    let mut q = p.clone();
    for i in 0..KNOBS.len() {
        let k = knob_mut(&mut q, i);
        *k = to_ppm(*k) as f64 / 1e6;
    }
    if let Some(Latency::Bimodal { p_slow, .. }) = &mut q.latency {
        *p_slow = to_ppm(*p_slow) as f64 / 1e6;
    }
    q
}

/// The plan in one line: its non-zero knobs only (`quiet` when none is on).
pub fn describe(p: &FaultPlan) -> String {
    let mut parts: Vec<String> = KNOBS
        .iter()
        .zip(probs(p))
        .filter(|(_, x)| *x > 0.0)
        .map(|(n, x)| format!("{n}={x:.3}"))
        .collect();
    if let Some(l) = p.latency {
        parts.push(format!("latency={l:?}"));
    }
    if p.quantum_ns > 0 {
        parts.push(format!("quantum_ns={}", p.quantum_ns));
    }
    if p.edge != EdgePolicy::Linux {
        parts.push(format!("edge={:?}", p.edge));
    }
    if parts.is_empty() {
        "quiet".into()
    } else {
        parts.join(" ")
    }
}

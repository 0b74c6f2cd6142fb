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
//! **Two phases.** Under `chaos` or `swarm` (the parameter or the spec) a seed runs twice
//! ([`FaultSpec::phases`]): the quiet phase, exactly the run `none` makes, then the faulted
//! phase. The seed fails if either fails, so `chaos` and `swarm` find everything `none` finds
//! (a plan's lock-step timing can hide a loop's bug that the quiet timing shows) and everything
//! their plan alone finds, for at most twice the cost per seed. A failure's report says which
//! phase failed, and its token names that run alone (`none`, or `chaos-only` / `swarm-only`), so
//! the replay is exact.
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
//! tag byte: 1 chaos, 2 swarm, 3 plan, 4 chaos's faulted phase alone, 5 swarm's; a plan then carries eight probabilities in ppm as
//! varints, in [`KNOBS`] order, the quantum in ns, the edge policy byte, and a latency tag with
//! its numbers). Builds that read only version 1 refuse it cleanly ("format version 2 is not
//! supported").

use std::fmt;

use netpoll_sim::{CostModel, EdgePolicy, FaultPlan, Latency, SimConfig, Vary};

/// Which faults a run injects.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FaultSpec {
    /// The scenario's own configuration.
    #[default]
    None,
    /// [`FaultPlan::chaos`], and the quiet run too: each seed runs twice ([`FaultSpec::phases`]),
    /// first exactly as under `None`, then under the plan, and fails if either run fails.
    Chaos,
    /// [`FaultPlan::swarm`] of the run's seed, and the quiet run too, as for `Chaos`.
    Swarm,
    /// The faulted run of `Chaos` alone (what the replay of a failing faulted phase names).
    ChaosOnly,
    /// The faulted run of `Swarm` alone.
    SwarmOnly,
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

    /// The plan of a faulted run with `seed` (`None`: keep the scenario's). For `Chaos` and
    /// `Swarm` this is their faulted phase's plan; their quiet phase keeps the scenario's.
    pub fn plan(&self, seed: u64) -> Option<FaultPlan> {
        match self {
            FaultSpec::None => None,
            FaultSpec::Chaos | FaultSpec::ChaosOnly => Some(FaultPlan::chaos()),
            FaultSpec::Swarm | FaultSpec::SwarmOnly => Some(FaultPlan::swarm(seed)),
            FaultSpec::Plan(p) => Some(p.clone()),
        }
    }

    /// Whether this is a named plan (`chaos` or `swarm`, with or without their quiet phase).
    pub fn is_named(&self) -> bool {
        matches!(
            self,
            FaultSpec::Chaos | FaultSpec::Swarm | FaultSpec::ChaosOnly | FaultSpec::SwarmOnly
        )
    }

    /// The runs a seed makes under this spec, in order, each with the spec that makes that run
    /// alone: the one place where `chaos` and `swarm` expand into their two phases, used by
    /// [`Check`](crate::check::Check) (and so `#[netpoll::test]`) and by `run`, `sweep`,
    /// `replay`, `trace` and `shrink` ([`crate::run::phases`]).
    ///
    /// `Chaos` and `Swarm` run the quiet phase first (exactly the run `None` makes for that
    /// seed), then the faulted one (`ChaosOnly`, `SwarmOnly`): a seed fails if either fails, so
    /// they find every failure `none` finds and every one their plan alone finds, at up to twice
    /// the cost per seed. The failing phase's spec is what a replay names, so a replay reruns
    /// exactly the run that failed. Every other spec is one run.
    ///
    /// ```
    /// use netpoll_scenarios::swarm::{FaultSpec, Phase};
    /// assert_eq!(
    ///     FaultSpec::Chaos.phases(),
    ///     vec![(Phase::Quiet, FaultSpec::None), (Phase::Faulted, FaultSpec::ChaosOnly)]
    /// );
    /// assert_eq!(FaultSpec::SwarmOnly.phases(), vec![(Phase::Single, FaultSpec::SwarmOnly)]);
    /// ```
    pub fn phases(&self) -> Vec<(Phase, FaultSpec)> {
        match self {
            FaultSpec::Chaos => vec![
                (Phase::Quiet, FaultSpec::None),
                (Phase::Faulted, FaultSpec::ChaosOnly),
            ],
            FaultSpec::Swarm => vec![
                (Phase::Quiet, FaultSpec::None),
                (Phase::Faulted, FaultSpec::SwarmOnly),
            ],
            other => vec![(Phase::Single, other.clone())],
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
            FaultSpec::ChaosOnly => out.push(4),
            FaultSpec::SwarmOnly => out.push(5),
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
            4 => Ok(FaultSpec::ChaosOnly),
            5 => Ok(FaultSpec::SwarmOnly),
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
                let plan = FaultPlan {
                    latency,
                    quantum_ns,
                    edge,
                    ..probs_only(ps)
                };
                if plan.validate().is_err() {
                    return Err(bad(
                        "a fault plan delay is out of range (over an hour, or a latency range \
                         whose ends are out of order)",
                    ));
                }
                Ok(FaultSpec::Plan(plan))
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
            FaultSpec::ChaosOnly => f.write_str("chaos-only"),
            FaultSpec::SwarmOnly => f.write_str("swarm-only"),
            FaultSpec::Plan(p) => f.write_str(&describe(p)),
        }
    }
}

/// Which run of a seed a report is about ([`FaultSpec::phases`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// The one run of a spec that is not `chaos` or `swarm`.
    #[default]
    Single,
    /// The quiet run of `chaos` or `swarm`: exactly the run `none` makes.
    Quiet,
    /// The faulted run of `chaos` or `swarm`.
    Faulted,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Single => "the only run",
            Phase::Quiet => "the quiet phase (the run `none` makes)",
            Phase::Faulted => "the faulted phase",
        })
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

/// The names of the probability knobs, in the order [`knob_mut`] numbers them.
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

/// `p` as a version-2 token carries it: [`quantize`]d, without what the token format does not
/// hold (the cost model, [`Vary`], dropped events and the errno knobs). The scenario shrinker
/// turns a named plan into this one, so that the token it prints replays exactly the run it
/// made.
///
/// ```
/// use netpoll_scenarios::swarm::{carried, FaultSpec};
/// use netpoll_scenarios::token::Token;
/// use netpoll_sim::FaultPlan;
///
/// let plan = carried(&FaultPlan::chaos()); // chaos charges handler cost; a token cannot say so
/// assert!(plan.cost.is_none());
/// let t = Token { scenario: "echo".into(), values: vec![], seed: 1, faults: FaultSpec::Plan(plan) };
/// assert_eq!(Token::decode(&t.encode()).unwrap(), t);
/// ```
pub fn carried(p: &FaultPlan) -> FaultPlan {
    // What the token holds, named one by one: a knob added later is left out until the token
    // format carries it.
    let q = quantize(p);
    FaultPlan {
        latency: q.latency,
        quantum_ns: q.quantum_ns,
        edge: q.edge,
        ..probs_only(probs(&q))
    }
}

/// A plan with the [`KNOBS`] probabilities `ps` and nothing else on.
fn probs_only(ps: [f64; 8]) -> FaultPlan {
    let mut plan = FaultPlan::none();
    for (i, x) in ps.into_iter().enumerate() {
        *knob_mut(&mut plan, i) = x;
    }
    plan
}

/// The plan in one line: its non-zero knobs only (`quiet` when none is on), each exactly (the
/// shortest decimal that reads back as the same number), so that [`FaultSpec::parse`] reads it
/// back as the very same plan: `short_read=0.25 eintr=0.05 latency=exp:1000:40000
/// quantum_ns=1000000 edge=empty-to-non-empty`. A latency is `uniform:LO:HI`,
/// `exp:BASE:MEAN_EXTRA` or `bimodal:FAST:SLOW:P_SLOW` (nanoseconds); the cost model is
/// `cost_call=LATENCY` and `cost_turn=LATENCY`; `vary=timing|all`.
pub fn describe(p: &FaultPlan) -> String {
    let mut parts: Vec<String> = KNOBS
        .iter()
        .zip(probs(p))
        .chain(EXTRA_KNOBS.iter().zip(extra_probs(p)))
        .filter(|(_, x)| *x > 0.0)
        .map(|(n, x)| format!("{n}={x}"))
        .collect();
    if let Some(l) = p.latency {
        parts.push(format!("latency={}", latency_text(l)));
    }
    if p.quantum_ns > 0 {
        parts.push(format!("quantum_ns={}", p.quantum_ns));
    }
    if p.edge != EdgePolicy::Linux {
        parts.push("edge=empty-to-non-empty".into());
    }
    if p.drop_event_max > 0 {
        parts.push(format!("drop_event_max={}", p.drop_event_max));
    }
    if let Some(c) = &p.cost {
        if let Some(l) = c.call {
            parts.push(format!("cost_call={}", latency_text(l)));
        }
        if let Some(l) = c.turn {
            parts.push(format!("cost_turn={}", latency_text(l)));
        }
    }
    match p.vary {
        Vary::Off => {}
        Vary::Timing => parts.push("vary=timing".into()),
        Vary::All => parts.push("vary=all".into()),
    }
    if parts.is_empty() {
        "quiet".into()
    } else {
        parts.join(" ")
    }
}

/// The probability knobs the token format (version 2) does not carry; [`describe`] and
/// [`FaultSpec::parse`] do.
const EXTRA_KNOBS: [&str; 7] = [
    "drop_event",
    "eintr_io",
    "emfile",
    "enomem",
    "enfile",
    "enobufs",
    "enomem_file",
];

fn extra_probs(p: &FaultPlan) -> [f64; 7] {
    [
        p.drop_event,
        p.eintr_io,
        p.emfile,
        p.enomem,
        p.enfile,
        p.enobufs,
        p.enomem_file,
    ]
}

fn extra_knob_mut(p: &mut FaultPlan, i: usize) -> &mut f64 {
    match i {
        0 => &mut p.drop_event,
        1 => &mut p.eintr_io,
        2 => &mut p.emfile,
        3 => &mut p.enomem,
        4 => &mut p.enfile,
        5 => &mut p.enobufs,
        _ => &mut p.enomem_file,
    }
}

fn latency_text(l: Latency) -> String {
    match l {
        Latency::Uniform(lo, hi) => format!("uniform:{lo}:{hi}"),
        Latency::Exponential { base, mean_extra } => format!("exp:{base}:{mean_extra}"),
        Latency::Bimodal { fast, slow, p_slow } => format!("bimodal:{fast}:{slow}:{p_slow}"),
    }
}

/// The accepted forms of a fault spec, for error messages.
pub const FORMS: &str = "none, chaos, swarm, chaos-only, swarm-only, quiet, or an explicit plan: KNOB=VALUE pairs \
     separated by spaces or commas, as a failure report prints them (knobs: short_read, \
     short_write, split_write, spurious, eintr, reset, accept_abort, timer_first, drop_event, \
     eintr_io, emfile, enomem, enfile, enobufs, enomem_file (probabilities 0..=1), latency, cost_call, cost_turn \
     (uniform:LO:HI|exp:BASE:MEAN|bimodal:FAST:SLOW:P, in ns), quantum_ns=N, drop_event_max=N, \
     edge=linux|empty-to-non-empty, vary=off|timing|all)";

impl FaultSpec {
    /// Reads a spec: `none`, `chaos`, `swarm`, `chaos-only`, `swarm-only`, or an explicit plan as [`describe`] writes it
    /// (`quiet` is the explicit plan with nothing on). Pairs may be separated by spaces or
    /// commas.
    ///
    /// # Errors
    /// What is wrong with `s`, and the accepted forms ([`FORMS`]).
    ///
    /// ```
    /// use netpoll_scenarios::swarm::{describe, FaultSpec};
    /// use netpoll_sim::FaultPlan;
    ///
    /// assert_eq!(FaultSpec::parse("swarm"), Ok(FaultSpec::Swarm));
    /// let plan = FaultPlan::swarm(7);
    /// assert_eq!(FaultSpec::parse(&describe(&plan)), Ok(FaultSpec::Plan(plan)));
    /// // Every knob, the cost model and the per-run families included:
    /// let mut all = FaultPlan::chaos().under_load();
    /// (all.drop_event, all.drop_event_max, all.eintr_io, all.emfile, all.enomem) =
    ///     (0.5, 3, 0.125, 0.01, 0.02);
    /// (all.enfile, all.enobufs, all.enomem_file) = (0.03, 0.04, 0.05);
    /// all.vary = netpoll_sim::Vary::All;
    /// let text = describe(&all);
    /// assert_eq!(FaultSpec::parse(&text), Ok(FaultSpec::Plan(all)), "{text}");
    /// assert!(FaultSpec::parse("sometimes").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<FaultSpec, String> {
        let s = s.trim();
        match s {
            "none" => return Ok(FaultSpec::None),
            "chaos" => return Ok(FaultSpec::Chaos),
            "swarm" => return Ok(FaultSpec::Swarm),
            "chaos-only" => return Ok(FaultSpec::ChaosOnly),
            "swarm-only" => return Ok(FaultSpec::SwarmOnly),
            "quiet" => return Ok(FaultSpec::Plan(FaultPlan::none())),
            "" => return Err(format!("an empty fault spec; expected {FORMS}")),
            _ => {}
        }
        let mut plan = FaultPlan::none();
        for pair in s.split([' ', ',']).filter(|p| !p.is_empty()) {
            let bad = |why: &str| format!("{pair:?} in fault spec {s:?}: {why}; expected {FORMS}");
            let Some((k, v)) = pair.split_once('=') else {
                return Err(bad("not a KNOB=VALUE pair"));
            };
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad("not a whole number"));
            let prob = |v: &str| match v.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
                _ => Err(bad("not a probability between 0 and 1")),
            };
            if let Some(i) = KNOBS.iter().position(|n| *n == k) {
                *knob_mut(&mut plan, i) = prob(v)?;
                continue;
            }
            if let Some(i) = EXTRA_KNOBS.iter().position(|n| *n == k) {
                *extra_knob_mut(&mut plan, i) = prob(v)?;
                continue;
            }
            let latency = |v: &str| -> Result<Latency, String> {
                let f: Vec<&str> = v.split(':').collect();
                Ok(match f[..] {
                    ["uniform", lo, hi] => {
                        let (lo, hi) = (num(lo)?, num(hi)?);
                        if lo > hi {
                            return Err(bad("uniform latency with LO above HI"));
                        }
                        Latency::Uniform(lo, hi)
                    }
                    ["exp", base, mean] => Latency::Exponential {
                        base: num(base)?,
                        mean_extra: num(mean)?,
                    },
                    ["bimodal", fast, slow, p] => Latency::Bimodal {
                        fast: num(fast)?,
                        slow: num(slow)?,
                        p_slow: prob(p)?,
                    },
                    _ => return Err(bad("unknown latency form")),
                })
            };
            match k {
                "quantum_ns" => plan.quantum_ns = num(v)?,
                "drop_event_max" => {
                    plan.drop_event_max = u32::try_from(num(v)?).map_err(|_| bad("not a u32"))?
                }
                "cost_call" | "cost_turn" => {
                    let c = plan.cost.get_or_insert_with(|| {
                        Box::new(CostModel {
                            call: None,
                            turn: None,
                        })
                    });
                    let l = Some(latency(v)?);
                    if k == "cost_call" {
                        c.call = l;
                    } else {
                        c.turn = l;
                    }
                }
                "vary" => {
                    plan.vary = match v {
                        "off" => Vary::Off,
                        "timing" => Vary::Timing,
                        "all" => Vary::All,
                        _ => return Err(bad("unknown vary")),
                    }
                }
                "edge" => {
                    plan.edge = match v {
                        "linux" => EdgePolicy::Linux,
                        "empty-to-non-empty" => EdgePolicy::EmptyToNonEmpty,
                        _ => return Err(bad("unknown edge policy")),
                    }
                }
                "latency" => plan.latency = Some(latency(v)?),
                _ => return Err(bad("unknown knob")),
            }
        }
        Ok(FaultSpec::Plan(plan))
    }
}

impl std::str::FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        FaultSpec::parse(s)
    }
}

//! Running a scenario: on a backend, with a seed, optionally twice for the determinism
//! self-check; the [`Report`] it produces and the one line that replays it.

use std::fmt;

use netpoll_realnet::RealNet;
use netpoll_sim::trace::{Record, TraceSink};
use netpoll_sim::{FaultCounts, Sim};
use serde::Serialize;

use crate::engine::{self, FdLabel, RunStats, Spec};
use crate::oracle::Failure;
use crate::params::{ParamError, Params, CONNS, MSGS, SIZE, TOTAL_BYTES_MAX};
use crate::scenario::{self, Scenario};
use crate::swarm::{self, FaultSpec};
use crate::token::{Token, TokenError};

/// Which kernel a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The simulated kernel: deterministic, replayable, with every oracle.
    Sim,
    /// Real Linux epoll on loopback: no replay, no kernel-level lost-wakeup oracle.
    Real,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sim => "sim",
            Backend::Real => "real",
        })
    }
}

/// One run to make.
#[derive(Clone, Debug)]
pub struct Request {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// Its parameters.
    pub params: Params,
    /// The seed.
    pub seed: u64,
    /// The kernel.
    pub backend: Backend,
    /// Run twice and compare (simulated kernel only).
    pub check_determinism: bool,
    /// An explicit fault plan that overrides the `faults` parameter ([`crate::swarm`]).
    pub faults: FaultSpec,
}

impl Request {
    /// A simulated run of `scenario` with `params` and `seed`.
    pub fn sim(scenario: &'static Scenario, params: Params, seed: u64) -> Request {
        Request {
            scenario,
            params,
            seed,
            backend: Backend::Sim,
            check_determinism: false,
            faults: FaultSpec::None,
        }
    }

    /// The request a replay token describes.
    ///
    /// # Errors
    /// A corrupt or foreign token, an unknown scenario, or parameters that do not fit it.
    pub fn from_token(text: &str) -> Result<Request, ReplayError> {
        let t = Token::decode(text).map_err(ReplayError::Token)?;
        let scenario = scenario::find_any(&t.scenario)
            .ok_or_else(|| ReplayError::Scenario(t.scenario.clone()))?;
        let params = Params::from_values(scenario.params, t.values).map_err(ReplayError::Params)?;
        let mut req = Request::sim(scenario, params, t.seed);
        req.faults = t.faults;
        Ok(req)
    }

    /// The replay token for this run (a simulated run of the same scenario, parameters, seed).
    pub fn token(&self) -> String {
        Token {
            scenario: self.scenario.name.to_string(),
            values: self.params.values().to_vec(),
            seed: self.seed,
            faults: self.faults.clone(),
        }
        .encode()
    }

    /// The one line that reproduces this run.
    pub fn replay_line(&self) -> String {
        match self.backend {
            Backend::Sim => format!("netpoll-sim replay {}", self.token()),
            Backend::Real => {
                let mut s = format!("netpoll-sim run {} --backend real", self.scenario.name);
                for (n, v) in self.params.iter() {
                    match n {
                        CONNS | MSGS | SIZE => s.push_str(&format!(" --{n} {v}")),
                        _ => s.push_str(&format!(" --param {n}={v}")),
                    }
                }
                s
            }
        }
    }

    /// Checks the whole request: parameter combinations and what the backend can hold.
    ///
    /// # Errors
    /// A usage error, in words.
    pub fn validate(&self) -> Result<(), ParamError> {
        let p = &self.params;
        let factor = p.try_get("factor").unwrap_or(1);
        let total = u128::from(p.get(CONNS))
            * u128::from(p.get(MSGS))
            * u128::from(p.get(SIZE))
            * u128::from(factor);
        if total > u128::from(TOTAL_BYTES_MAX) {
            return Err(ParamError(format!(
                "conns x msgs x size{} = {total} bytes is more than this tool moves in one run ({TOTAL_BYTES_MAX})",
                if factor > 1 { " x factor" } else { "" }
            )));
        }
        if self.backend == Backend::Real {
            if !self.scenario.real_ok {
                return Err(ParamError(format!(
                    "scenario {} runs on the simulated kernel only",
                    self.scenario.name
                )));
            }
            let limit = fd_limit();
            // Two descriptors per connection (both ends live in this process), plus the
            // listener, the epoll instance, stdio and a margin.
            let max = limit.saturating_sub(16) / 2;
            if p.get(CONNS) > max {
                return Err(ParamError(format!(
                    "--conns {} is too many for --backend real: each connection needs two descriptors \
                     and this process may open {limit} (RLIMIT_NOFILE), so at most {max}",
                    p.get(CONNS)
                )));
            }
        }
        if self.check_determinism && self.backend == Backend::Real {
            return Err(ParamError("--check-determinism needs --backend sim".into()));
        }
        Ok(())
    }
}

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

/// Raises the soft descriptor limit to the hard one; returns the limit in force.
pub fn fd_limit() -> u64 {
    netpoll_realnet::process::raise_fd_limit()
}

/// Why a token cannot be replayed: all usage errors (exit status 2).
#[derive(Debug)]
pub enum ReplayError {
    /// The token itself.
    Token(TokenError),
    /// It names a scenario this build does not have.
    Scenario(String),
    /// Its parameters do not fit the scenario.
    Params(ParamError),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Token(e) => e.fmt(f),
            ReplayError::Scenario(s) => write!(
                f,
                "the replay token names scenario {s:?}, which this build does not have"
            ),
            ReplayError::Params(e) => write!(f, "the replay token's parameters do not fit: {e}"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// What a run did and how it ended.
#[derive(Debug)]
pub struct Report {
    /// The request.
    pub request: Request,
    /// Counters.
    pub stats: RunStats,
    /// `None` when every oracle passed.
    pub failure: Option<Failure>,
    /// Fd ownership (when labels were asked for).
    pub labels: Vec<FdLabel>,
    /// The simulated kernel's fingerprint `(calls, hash)`.
    pub fingerprint: Option<(u64, u64)>,
    /// The faults the simulated kernel injected.
    pub faults: Option<FaultCounts>,
}

impl Report {
    /// `"pass"` or the failed oracle's kind.
    pub fn outcome(&self) -> &'static str {
        match &self.failure {
            None => "pass",
            Some(f) => f.kind(),
        }
    }

    /// The report as the JSON object `run --json` prints.
    pub fn json(&self) -> serde_json::Value {
        let r = &self.request;
        let s = &self.stats;
        let params: serde_json::Map<String, serde_json::Value> = r
            .params
            .iter()
            .map(|(n, v)| (n.to_string(), v.into()))
            .collect();
        serde_json::json!({
            "scenario": r.scenario.name,
            "seed": r.seed,
            "backend": r.backend,
            "conns": s.conns.max(r.params.get(CONNS)),
            "msgs": r.params.get(MSGS),
            "bytes": s.bytes,
            "events": s.events,
            "virtual_ns": s.virtual_ns,
            "wall_ns": s.wall_ns,
            "cpu_ns": s.cpu_ns,
            "outcome": self.outcome(),
            "replay": r.replay_line(),
            "token": (r.backend == Backend::Sim).then(|| r.token()),
            "determinism": self.determinism(),
            "size": r.params.get(SIZE),
            "params": params,
            "syscalls": s.syscalls,
            "deliveries": s.deliveries,
            "epoll_events": s.epoll_events,
            "events_per_sec": self.events_per_sec(),
            "max_deadline_late_ns": s.max_late_ns,
            "connect_retries": s.connect_retries,
            "server_write_blocked": s.server_write_blocked,
            "server_paused": s.server_paused,
            "closed_idle": s.closed_idle,
            "closed_reset": s.closed_reset,
            "closed_eof": s.closed_eof,
            "failure": self.failure.as_ref().map(|f| f.to_string()),
            "peak_rss_kib": peak_rss_kib(),
            "fault_counts": self.faults.map(|c| serde_json::json!({
                "short_reads": c.short_reads,
                "short_writes": c.short_writes,
                "split_writes": c.split_writes,
                "spurious": c.spurious,
                "eintr": c.eintr,
                "resets": c.resets,
                "accept_aborts": c.accept_aborts,
                "timer_first": c.timer_first,
            })),
        })
    }

    /// What the determinism self-check found: `None` when it was not asked for, else
    /// `"checked"` (a second run made the same calls), `"diverged"`, or `"skipped"` (the first
    /// run failed, so there was nothing to compare).
    pub fn determinism(&self) -> Option<&'static str> {
        if !self.request.check_determinism || self.request.backend != Backend::Sim {
            return None;
        }
        Some(match &self.failure {
            None => "checked",
            Some(Failure::Divergence { .. }) => "diverged",
            Some(_) => "skipped",
        })
    }

    /// Simulated events per wall-clock second.
    pub fn events_per_sec(&self) -> u64 {
        let w = self.stats.wall_ns.max(1) as u128;
        (u128::from(self.stats.events) * 1_000_000_000 / w) as u64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        let s = &self.stats;
        writeln!(f, "scenario     {} ({})", r.scenario.name, r.params)?;
        writeln!(f, "backend      {}", r.backend)?;
        writeln!(f, "seed         {}", r.seed)?;
        if let Some(p) = r
            .backend
            .eq(&Backend::Sim)
            .then(|| sim_config_for(r).faults)
        {
            if !p.is_quiet() {
                writeln!(f, "fault plan   {}", swarm::describe(&p))?;
            }
        }
        writeln!(f, "connections  {}", r.params.get(CONNS))?;
        writeln!(f, "bytes        {} echoed, {} sent", s.bytes, s.bytes_sent)?;
        match r.backend {
            Backend::Sim => writeln!(
                f,
                "events       {} ({} syscalls + {} deliveries; {} epoll events), {:.2} M/s wall, {} M/s cpu",
                s.events,
                s.syscalls,
                s.deliveries,
                s.epoll_events,
                self.events_per_sec() as f64 / 1e6,
                if s.cpu_ns >= 10_000_000 {
                    format!("{:.2}", s.events as f64 * 1e3 / s.cpu_ns as f64)
                } else {
                    "-".to_string()
                }
            )?,
            Backend::Real => writeln!(f, "events       {} epoll events", s.events)?,
        }
        let label = if r.backend == Backend::Sim {
            "virtual time"
        } else {
            "kernel time "
        };
        writeln!(f, "{label} {:.6} s", s.virtual_ns as f64 / 1e9)?;
        writeln!(
            f,
            "wall time    {:.3} s (cpu {:.3} s)",
            s.wall_ns as f64 / 1e9,
            s.cpu_ns as f64 / 1e9
        )?;
        if let Some(kib) = peak_rss_kib() {
            writeln!(f, "peak RSS     {:.1} MiB", kib as f64 / 1024.0)?;
        }
        if let Some(c) = self.faults.filter(|c| *c != FaultCounts::default()) {
            writeln!(
                f,
                "faults       {} short reads, {} short writes, {} split writes, {} spurious events, \
                 {} EINTR, {} resets, {} accept aborts, {} timeouts first",
                c.short_reads,
                c.short_writes,
                c.split_writes,
                c.spurious,
                c.eintr,
                c.resets,
                c.accept_aborts,
                c.timer_first
            )?;
        }
        if s.connect_retries > 0 {
            writeln!(
                f,
                "connects     {} made again (timed out, or reset before any answer)",
                s.connect_retries
            )?;
        }
        if s.max_late_ns > 0 || s.closed_idle > 0 || s.timers_fired > 0 {
            writeln!(
                f,
                "deadlines    {} idle closes, {} timers fired, {} cancelled, max lateness {} ns",
                s.closed_idle, s.timers_fired, s.timers_cancelled, s.max_late_ns
            )?;
        }
        match (self.determinism(), self.fingerprint) {
            (Some("checked"), Some((calls, hash))) => writeln!(
                f,
                "determinism  checked: a second run made the same {calls} calls (fingerprint {hash:016x})"
            )?,
            (Some("skipped"), _) => {
                writeln!(f, "determinism  not checked: the first run failed")?;
            }
            _ => {}
        }
        match &self.failure {
            None => writeln!(f, "outcome      pass")?,
            Some(e) => {
                writeln!(f, "outcome      FAIL: {}", e.kind())?;
                for line in e.to_string().lines() {
                    writeln!(f, "  {line}")?;
                }
            }
        }
        if self.failure.is_some() && r.backend == Backend::Sim {
            writeln!(
                f,
                "trace        netpoll-sim trace {} --out trace.json",
                r.token()
            )?;
        }
        write!(f, "replay       {}", r.replay_line())
    }
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The workload for `req`, adjusted to what its kernel promises.
pub fn spec_for(req: &Request) -> Spec {
    let mut spec = (req.scenario.spec)(&req.params);
    if req.backend == Backend::Sim {
        let cfg = sim_config_for(req);
        spec.short_read_drains = cfg.faults.short_read == 0.0;
    }
    spec
}

/// A simulated kernel for `req`.
pub fn sim_for(req: &Request) -> Sim {
    Sim::with_config(req.seed, sim_config_for(req))
}

/// The simulated kernel's configuration for `req`: the scenario's, with an explicit fault plan
/// ([`Request::faults`]) in place of the one its `faults` parameter names.
pub fn sim_config_for(req: &Request) -> netpoll_sim::SimConfig {
    let mut cfg = scenario::sim_config(&req.params, req.seed);
    req.faults.apply(req.seed, &mut cfg);
    cfg
}

/// Makes the run (twice when the determinism check is asked for).
pub fn execute(req: &Request) -> Report {
    if let Some(z) = crate::zoo::find(req.scenario.name) {
        return crate::zoo::execute(z, req);
    }
    if crate::rt_echo::handles(req.scenario.name) {
        return crate::rt_echo::execute(req);
    }
    let spec = spec_for(req);
    let mut report = match req.backend {
        Backend::Real => {
            fd_limit();
            let k = RealNet::new();
            let r = engine::run(&k, &spec, req.seed);
            Report {
                request: req.clone(),
                stats: r.stats,
                failure: r.verdict.err(),
                labels: r.labels,
                fingerprint: None,
                faults: None,
            }
        }
        Backend::Sim => {
            let k = sim_for(req);
            let r = engine::run(&k, &spec, req.seed);
            Report {
                request: req.clone(),
                stats: r.stats,
                failure: r.verdict.err(),
                labels: r.labels,
                fingerprint: Some(k.fingerprint()),
                faults: Some(k.fault_counts()),
            }
        }
    };
    if req.check_determinism && req.backend == Backend::Sim && report.failure.is_none() {
        let k = sim_for(req);
        let _ = engine::run(&k, &spec, req.seed);
        if Some(k.fingerprint()) != report.fingerprint {
            // Locate the first difference: two traced runs, compared call by call.
            report.failure = Some(compare_traced(req).err().unwrap_or_else(|| {
                Failure::Invariant(format!(
                    "two runs of seed {} ended with different fingerprints ({:?} vs {:?}), but traced reruns agreed",
                    req.seed,
                    report.fingerprint,
                    k.fingerprint()
                ))
            }));
        }
    }
    report
}

/// How a run records its calls.
pub enum Tracing {
    /// Not at all (beyond the kernel's short history).
    Off,
    /// Every call, kept in memory and returned.
    Keep,
    /// Every call, handed to a sink as it is made (nothing kept).
    Sink(TraceSink),
}

impl fmt::Debug for Tracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tracing::Off => "Off",
            Tracing::Keep => "Keep",
            Tracing::Sink(_) => "Sink",
        })
    }
}

impl Tracing {
    /// Sets `k` up to record; whether anything is recorded (and descriptors should be
    /// labelled for the trace's tracks).
    pub(crate) fn install(self, k: &Sim) -> bool {
        match self {
            Tracing::Off => false,
            Tracing::Keep => {
                k.set_trace(true);
                true
            }
            Tracing::Sink(sink) => {
                k.set_trace_sink(Some(sink));
                true
            }
        }
    }
}

/// A traced simulated run: its records, labels and report.
pub fn traced(req: &Request) -> (Vec<Record>, Report) {
    traced_with(req, Tracing::Keep)
}

/// A simulated run whose every call goes to `sink` as it is made, so that the trace of a large
/// run never has to fit in memory; the report carries the labels that name the tracks.
pub fn trace_to(req: &Request, sink: TraceSink) -> Report {
    traced_with(req, Tracing::Sink(sink)).1
}

fn traced_with(req: &Request, tracing: Tracing) -> (Vec<Record>, Report) {
    if let Some(z) = crate::zoo::find(req.scenario.name) {
        return crate::zoo::traced(z, req, tracing);
    }
    if crate::rt_echo::handles(req.scenario.name) {
        return crate::rt_echo::traced(req, tracing);
    }
    let mut spec = spec_for(req);
    spec.label_fds = true;
    let k = sim_for(req);
    tracing.install(&k);
    let r = engine::run(&k, &spec, req.seed);
    let records = k.take_trace();
    let report = Report {
        request: req.clone(),
        stats: r.stats,
        failure: r.verdict.err(),
        labels: r.labels,
        fingerprint: Some(k.fingerprint()),
        faults: Some(k.fault_counts()),
    };
    (records, report)
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

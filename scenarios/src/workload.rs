//! The one interface every runnable thing implements: a [`Workload`] (the echo engine's
//! scenarios, the bug zoo, `rt-echo`, the canaries, and a user's own loops), the [`Request`]
//! that names one run of it, and the [`Report`] a run hands back.
//!
//! A workload declares its name, a line about it, typed parameters with defaults (and smaller
//! ones for `cargo test`), and whether it runs on the real kernel; [`Workload::run`] makes one
//! run on the backend the request names and returns the report (and, when asked, the simulated
//! kernel's trace). Everything else (`sweep`, the determinism self-check, replay tokens, `trace`,
//! `shrink`) is built on that one call by [`crate::run`] and [`crate::registry`], so a user's
//! workload gets all of it by being added to a [`crate::registry::Registry`].
//!
//! [`simulate`] is the plumbing most workloads need: a simulated kernel made from the request
//! (seed, fault plan, kernel knobs), tracing when asked, and the counters, fingerprint and fault
//! counts filled in afterwards.
//!
//! ```
//! use netpoll::Poller;
//! use netpoll_scenarios::params::{ParamSpec, FAULTS};
//! use netpoll_scenarios::registry::Registry;
//! use netpoll_scenarios::run;
//! use netpoll_scenarios::workload::{simulate, Request, Run, Tracing, Workload};
//!
//! /// Opens a pipe, writes to it, reads it back.
//! struct PipeEcho;
//!
//! static PARAMS: &[ParamSpec] = &[ParamSpec::new("bytes", 5, 1, 4096, "bytes written"), FAULTS];
//!
//! impl Workload for PipeEcho {
//!     fn name(&self) -> &str {
//!         "pipe-echo"
//!     }
//!     fn about(&self) -> &str {
//!         "writes to a pipe and reads it back"
//!     }
//!     fn params(&self) -> &'static [ParamSpec] {
//!         PARAMS
//!     }
//!     fn run(&self, req: &Request, tracing: Tracing) -> Run {
//!         simulate(req, tracing, |sim, stats| {
//!             let [r, w] = sim.pipe2(0).map_err(|e| netpoll_scenarios::oracle::io_fail("pipe2", e))?;
//!             let n = req.params.get("bytes") as usize;
//!             sim.write(w, &vec![7; n]).map_err(|e| netpoll_scenarios::oracle::io_fail("write", e))?;
//!             let mut buf = vec![0; n];
//!             stats.bytes = sim.read(r, &mut buf).map_err(|e| netpoll_scenarios::oracle::io_fail("read", e))? as u64;
//!             let _ = (sim.close(r), sim.close(w));
//!             Ok(())
//!         })
//!     }
//! }
//!
//! let mut registry = Registry::builtin();
//! registry.add(PipeEcho).unwrap();
//! let w = registry.find("pipe-echo").unwrap();
//! let report = run::execute(&Request::sim(w, w.defaults(), 7));
//! assert_eq!(report.outcome(), "pass");
//! // Its replay token names it, and this registry reads it back.
//! let again = registry.from_token(&report.request.token()).unwrap();
//! assert_eq!(again.scenario.name(), "pipe-echo");
//! ```

use std::fmt;
use std::time::Instant;

use netpoll_sim::trace::{Record, TraceSink};
use netpoll_sim::{FaultCounts, FaultPlan, Sim, SimConfig};
use serde::Serialize;

use crate::oracle::Failure;
use crate::params::{ParamError, ParamSpec, Params, CONNS, MSGS, SIZE, TOTAL_BYTES_MAX};
use crate::swarm::{FaultSpec, Phase};
use crate::token::{Token, TokenError};
use crate::trace_out::{FdLabel, Schedule};

/// Where a workload appears in `netpoll-sim list` (and whether sweeps of the registry take it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An ordinary scenario: listed first, run by the tests' sweeps of the registry.
    Scenario,
    /// Fails on purpose, to prove an oracle fires: listed apart, never in sweeps.
    Canary,
    /// A bug-zoo loop with its fixed twin behind `--param fixed=1`.
    Zoo,
}

/// Something `netpoll-sim` can run: a name, typed parameters, and one run on a backend.
///
/// Implement it for your own loop (server and clients), add it to a
/// [`Registry`](crate::registry::Registry), and `run`, `sweep`, `replay`, `trace`, `shrink` and
/// the determinism self-check all take it; see the [module docs](self) for a complete example.
pub trait Workload: Send + Sync {
    /// The registry name (`netpoll-sim run NAME`); carried in replay tokens.
    fn name(&self) -> &str;
    /// One line: what it exercises.
    fn about(&self) -> &str;
    /// What it checks beyond the oracles every run gets.
    fn invariants(&self) -> &str {
        ""
    }
    /// Its parameters, with defaults and bounds (the order is the replay token's).
    fn params(&self) -> &'static [ParamSpec];
    /// Parameters for `cargo test` (small, so a run over several seeds is quick).
    fn test_params(&self) -> &[(&'static str, u64)] {
        &[]
    }
    /// Whether it runs on the real kernel (`--backend real`): false unless the workload says so
    /// (a workload built on [`simulate`] runs on the simulated kernel only).
    fn real_ok(&self) -> bool {
        false
    }
    /// Where `list` shows it.
    fn kind(&self) -> Kind {
        Kind::Scenario
    }
    /// One run of `req` (whose `scenario` is this workload) on `req.backend`. Unless `tracing`
    /// is [`Tracing::Off`], the simulated kernel's call records come back in [`Run::trace`]
    /// (or go to the sink) and the report carries fd labels when the workload has them. The
    /// determinism self-check is [`crate::run`]'s, not this method's.
    fn run(&self, req: &Request, tracing: Tracing) -> Run;

    /// Parameters at their defaults.
    fn defaults(&self) -> Params {
        Params::defaults(self.params())
    }

    /// Parameters as `cargo test` uses them.
    ///
    /// # Panics
    /// If a test parameter is undeclared or out of range: a bug in the workload.
    fn test_defaults(&self) -> Params {
        let mut p = self.defaults();
        for &(n, v) in self.test_params() {
            if let Err(e) = p.set(n, v) {
                panic!(
                    "{}: test parameters must be declared and in range: {e}",
                    self.name()
                );
            }
        }
        p
    }
}

impl fmt::Debug for dyn Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Workload({:?})", self.name())
    }
}

/// How a run records its calls ([`Workload::run`]).
pub enum Tracing {
    /// Not at all (beyond the kernel's short history).
    Off,
    /// Every call, kept in memory and returned in [`Run::trace`].
    Keep,
    /// Every call, handed to a sink as it is made (nothing kept), so that the trace of a large
    /// run never has to fit in memory.
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
    pub fn install(self, k: &Sim) -> bool {
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

/// What [`Workload::run`] hands back.
#[derive(Debug)]
pub struct Run {
    /// The verdict and counters.
    pub report: Report,
    /// The simulated kernel's records, with [`Tracing::Keep`] (empty otherwise).
    pub trace: Vec<Record>,
}

/// Runs `body` on a simulated kernel made for `req` (its seed, fault plan and kernel knobs),
/// recording its calls as `tracing` says, and fills in everything a [`Report`] needs that the body does not
/// count itself: syscalls, deliveries, events, virtual, wall and CPU time, the fingerprint and
/// the injected faults. The body's `Err` is the run's failure.
pub fn simulate(
    req: &Request,
    tracing: Tracing,
    body: impl FnOnce(&Sim, &mut RunStats) -> Result<(), Failure>,
) -> Run {
    simulate_on(sim_for(req), req, tracing, body)
}

/// [`simulate`] on a kernel the caller made (for example with [`sim_judged_by_loop`]).
pub fn simulate_on(
    k: Sim,
    req: &Request,
    tracing: Tracing,
    body: impl FnOnce(&Sim, &mut RunStats) -> Result<(), Failure>,
) -> Run {
    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    let trace = tracing.install(&k);
    let mut stats = RunStats::default();
    let verdict = crate::oracle::with_kernel_verdict(&k, body(&k, &mut stats));
    if stats.conns == 0 {
        stats.conns = req.params.try_get(CONNS).unwrap_or(0);
    }
    stats.count_kernel(&k);
    stats.virtual_ns = k.now_ns();
    stats.wall_ns = wall.elapsed().as_nanos() as u64;
    stats.cpu_ns = thread_cpu_ns().saturating_sub(cpu);
    let records = if trace { k.take_trace() } else { Vec::new() };
    Run {
        report: Report {
            request: req.clone(),
            stats,
            failure: verdict.err(),
            labels: Vec::new(),
            schedule: None,
            fingerprint: Some(k.fingerprint()),
            faults: Some(k.fault_counts()),
            phase: Phase::Single,
        },
        trace: records,
    }
}

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
    /// The workload (a registry entry; the field keeps the CLI's word for it).
    pub scenario: &'static dyn Workload,
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
    pub fn sim(scenario: &'static dyn Workload, params: Params, seed: u64) -> Request {
        Request {
            scenario,
            params,
            seed,
            backend: Backend::Sim,
            check_determinism: false,
            faults: FaultSpec::None,
        }
    }

    /// The replay token for this run (a simulated run of the same scenario, parameters, seed).
    pub fn token(&self) -> String {
        Token {
            scenario: self.scenario.name().to_string(),
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
                let mut s = format!("netpoll-sim run {} --backend real", self.scenario.name());
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
        let total = u128::from(p.try_get(CONNS).unwrap_or(1))
            * u128::from(p.try_get(MSGS).unwrap_or(1))
            * u128::from(p.try_get(SIZE).unwrap_or(1))
            * u128::from(factor);
        if total > u128::from(TOTAL_BYTES_MAX) {
            return Err(ParamError(format!(
                "conns x msgs x size{} = {total} bytes is more than this tool moves in one run ({TOTAL_BYTES_MAX})",
                if factor > 1 { " x factor" } else { "" }
            )));
        }
        if self.backend == Backend::Real {
            if !self.scenario.real_ok() {
                return Err(ParamError(format!(
                    "scenario {} runs on the simulated kernel only",
                    self.scenario.name()
                )));
            }
            let limit = fd_limit();
            // Two descriptors per connection (both ends live in this process), plus the
            // listener, the epoll instance, stdio and a margin.
            let max = limit.saturating_sub(16) / 2;
            if p.try_get(CONNS).unwrap_or(0) > max {
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
    /// A traced run on simulated threads: its schedule, which the trace lays out one track per
    /// thread ([`crate::trace_out::write_chrome_threads`]); `None` otherwise.
    pub schedule: Option<Schedule>,
    /// The simulated kernel's fingerprint `(calls, hash)`.
    pub fingerprint: Option<(u64, u64)>,
    /// The faults the simulated kernel injected.
    pub faults: Option<FaultCounts>,
    /// Which run of the seed this is: under `chaos` or `swarm` a seed runs a quiet phase and a
    /// faulted one ([`FaultSpec::phases`]), and a failure's report is its failing phase's, whose
    /// [`request`](Self::request) replays that run alone.
    pub phase: Phase,
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
            "scenario": r.scenario.name(),
            "seed": r.seed,
            "backend": r.backend,
            "conns": s.conns.max(r.params.try_get(CONNS).unwrap_or(0)),
            "msgs": r.params.try_get(MSGS).unwrap_or(0),
            "bytes": s.bytes,
            "events": s.events,
            "virtual_ns": s.virtual_ns,
            "wall_ns": s.wall_ns,
            "cpu_ns": s.cpu_ns,
            "outcome": self.outcome(),
            "phase": match self.phase {
                Phase::Single => None,
                Phase::Quiet => Some("quiet"),
                Phase::Faulted => Some("faulted"),
            },
            "replay": r.replay_line(),
            "token": (r.backend == Backend::Sim).then(|| r.token()),
            "determinism": self.determinism(),
            "size": r.params.try_get(SIZE).unwrap_or(0),
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
            "fault_counts": self.faults.map(fault_counts_json),
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

/// The injected-fault counters as `run --json` prints them (a function of its own: one
/// `json!` literal of every field would pass the macro's recursion limit).
fn fault_counts_json(c: FaultCounts) -> serde_json::Value {
    serde_json::json!({
        "short_reads": c.short_reads,
        "short_writes": c.short_writes,
        "split_writes": c.split_writes,
        "spurious": c.spurious,
        "eintr": c.eintr,
        "resets": c.resets,
        "accept_aborts": c.accept_aborts,
        "timer_first": c.timer_first,
        "cost_ns": c.cost_ns,
        "dropped_events": c.dropped_events,
        "eintr_io": c.eintr_io,
        "emfile": c.emfile,
        "enfile": c.enfile,
        "enobufs": c.enobufs,
        "enomem": c.enomem + c.enomem_file,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        let s = &self.stats;
        writeln!(f, "scenario     {} ({})", r.scenario.name(), r.params)?;
        writeln!(f, "backend      {}", r.backend)?;
        writeln!(f, "seed         {}", r.seed)?;
        match (self.phase, &self.failure) {
            (Phase::Single, _) => {}
            (phase, Some(_)) => writeln!(
                f,
                "phase        {phase} of chaos/swarm failed; the replay below reruns that run alone"
            )?,
            (_, None) => writeln!(
                f,
                "phase        the quiet phase and the faulted phase of chaos/swarm passed (counts \
                 below: the faulted run; wall and cpu time: both)"
            )?,
        }
        if let Some(p) = r
            .backend
            .eq(&Backend::Sim)
            .then(|| sim_config_for(r).faults)
        {
            if !p.is_quiet() {
                writeln!(f, "fault plan   {}", crate::swarm::describe(&p))?;
            }
        }
        writeln!(
            f,
            "connections  {}",
            r.params.try_get(CONNS).unwrap_or(s.conns)
        )?;
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
        if s.switch_points > 0 {
            writeln!(
                f,
                "threads      {} switch points (simulated threads, interleaved by the seed)",
                s.switch_points
            )?;
        }
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
            // The pressure faults, only when a plan turned them on (quiet runs print as before).
            let pressure = [
                ("dropped events", c.dropped_events),
                ("EINTR on blocking I/O", c.eintr_io),
                ("EMFILE", c.emfile),
                ("ENFILE", c.enfile),
                ("ENOBUFS", c.enobufs),
                ("ENOMEM", c.enomem + c.enomem_file),
            ];
            if pressure.iter().any(|p| p.1 > 0) || c.cost_ns > 0 {
                let words: Vec<String> = pressure.iter().map(|(n, v)| format!("{v} {n}")).collect();
                writeln!(
                    f,
                    "pressure     {}, {} ns of handler cost",
                    words.join(", "),
                    c.cost_ns
                )?;
            }
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

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Connections made.
    pub conns: u64,
    /// Response bytes the clients read and checked.
    pub bytes: u64,
    /// Request bytes the clients wrote.
    pub bytes_sent: u64,
    /// Events: on the simulated kernel, syscalls plus deliveries; on the real one, epoll events
    /// the loop received.
    pub events: u64,
    /// Epoll events the loop received.
    pub epoll_events: u64,
    /// Syscalls (simulated kernel only).
    pub syscalls: u64,
    /// Packet deliveries (simulated kernel only).
    pub deliveries: u64,
    /// Time on the poller's clock from start to finish.
    pub virtual_ns: u64,
    /// Wall-clock time.
    pub wall_ns: u64,
    /// CPU time of the running thread (user + system): on a shared machine, the figure that
    /// does not depend on the neighbours.
    pub cpu_ns: u64,
    /// Connections the server closed for idleness, by reset, by end of file.
    pub closed_idle: u64,
    /// Connections the server closed after a reset.
    pub closed_reset: u64,
    /// Connections the server closed after end of file.
    pub closed_eof: u64,
    /// Timer-storm timers fired, and cancelled.
    pub timers_fired: u64,
    /// Timer-storm timers cancelled before they were due.
    pub timers_cancelled: u64,
    /// Largest lateness of any deadline.
    pub max_late_ns: u64,
    /// Lost-wakeup scans made at quiescence.
    pub quiescence_checks: u64,
    /// Write `EAGAIN`s on the server (the EPOLLOUT path).
    pub server_write_blocked: u64,
    /// Connections made again after `ETIMEDOUT` or a reset before any answer.
    pub connect_retries: u64,
    /// Times the server stopped reading a connection at its high-water mark.
    pub server_paused: u64,
    /// Switch points of the simulated threads' scheduler (0: one thread).
    pub switch_points: u64,
}

impl RunStats {
    /// Takes the simulated kernel's own counts: its syscalls, its deliveries, and their sum as
    /// the run's events.
    pub fn count_kernel(&mut self, sim: &Sim) {
        let st = sim.stats();
        self.syscalls = st.syscalls;
        self.deliveries = st.deliveries;
        self.events = st.syscalls + st.deliveries;
    }
}

/// CPU time (user + system) the calling thread has used, in ns.
pub fn thread_cpu_ns() -> u64 {
    netpoll_realnet::process::thread_cpu_ns()
}

/// A simulated kernel for `req`.
pub fn sim_for(req: &Request) -> Sim {
    Sim::with_config(req.seed, sim_config_for(req))
}

/// A simulated kernel for `req` whose lost-wakeup scan runs only when the loop asks for it
/// ([`crate::oracle::lost_wakeup`], at the moments the loop chooses, with its own judgement of
/// what it waits for), not on its own at every quiescent `epoll_wait` with
/// [`netpoll_sim::default_wants`]: for loops that pause reading on purpose (slow readers,
/// backpressure), whose wants the kernel cannot guess. The other oracles stay on.
pub fn sim_judged_by_loop(req: &Request) -> Sim {
    let mut cfg = sim_config_for(req);
    cfg.oracles.lost_wakeup = false;
    Sim::with_config(req.seed, cfg)
}

/// The simulated kernel's configuration for `req`: the scenario's, with an explicit fault plan
/// ([`Request::faults`]) in place of the one its `faults` parameter names.
pub fn sim_config_for(req: &Request) -> netpoll_sim::SimConfig {
    let mut cfg = sim_config(&req.params, req.seed);
    req.faults.apply(req.seed, &mut cfg);
    cfg
}

/// The simulated kernel's configuration for a run: Linux-like, with the parameters that are
/// kernel knobs (`split-pct`, `tcp-window`, `faults`) applied. `seed` draws the swarm plan.
pub fn sim_config(p: &Params, seed: u64) -> SimConfig {
    let mut c = SimConfig::default();
    match p.try_get("faults") {
        Some(1) => c.faults = FaultPlan::chaos(),
        Some(2) => c.faults = FaultPlan::swarm(seed),
        _ => {}
    }
    if let Some(s) = p.try_get("split-pct").filter(|&s| s > 0) {
        c.faults.split_write = s as f64 / 100.0;
    }
    if let Some(w) = p.try_get("tcp-window") {
        c.tcp_window = w as usize;
    }
    // One process holds both ends of every connection: past half a million at once it needs
    // a descriptor limit above Linux's default ceiling (`fs.nr_open`, 1,048,576), as a real
    // test process would after `sysctl fs.nr_open` and `ulimit -n`.
    if let Some(n) = p.try_get(CONNS) {
        c.max_fds = c.max_fds.max(2 * n as usize + 64);
        // The kernel's tables sized from the run's connections, not grown while it runs.
        c.expected_conns = (n as usize).min(c.max_fds);
    }
    c
}

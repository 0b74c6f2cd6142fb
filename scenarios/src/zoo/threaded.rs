//! The zoo's races between threads: small Go-style runtimes on simulated threads
//! ([`netpoll_threads`]) sharing one simulated kernel, each with one real race of a
//! multi-threaded netpoller, or (`--param fixed=1`) its corrected twin. The run's seed picks
//! the interleaving (`netpoll_threads::Policy::Random`) at every kernel call and every lock, park and yield.
//!
//! | scenario | the bug | found as |
//! |---|---|---|
//! | `zoo-mt-close-no-wake` | closing a descriptor marks its poll descriptor closed but does not wake the task parked on it, trusting the poller to report the close (Linux removes a closed fd from every epoll set without an event) | hang: the reader parked for ever, reported with each thread's blocking call |
//! | `zoo-mt-spin-no-recheck` | an idle worker stops "spinning" (looking for work) after its last look at the run queue, so a submitter that saw it spinning skips the wake (Go's `findrunnable` drops `nmspinning` before its last re-check for this reason) | hang: a task queued, every worker parked |
//!
//! Both are found within 1,000 seeds and replay by token; their twins pass 10,000 seeds
//! (`scenarios/tests/zoo.rs`).

use std::time::Instant;

use netpoll_realnet::process::process_cpu_ns;
use netpoll_threads::ThreadedSim;

use crate::oracle::Failure;
use crate::params::{ParamSpec, CONNS, MSGS};
use crate::swarm::Phase;
use crate::threaded::run_threads;
use crate::workload::{
    sim_judged_by_loop, Kind, Report, Request, Run, RunStats, Tracing, Workload,
};

use super::FIXED;

/// A zoo race between simulated threads: its registry entry and its body.
#[derive(Debug)]
pub struct ThreadedZoo {
    /// The registry name.
    pub name: &'static str,
    /// One line: the bug.
    pub about: &'static str,
    /// Its parameters (`fixed` among them).
    pub params: &'static [ParamSpec],
    /// The program: runs on the simulated threads, `fixed` selects the twin; returns the bytes
    /// (or units of work) it moved, or what its own checks found wrong.
    pub body: fn(ThreadedSim, Cfg) -> Result<u64, Failure>,
}

/// The parameters of one run.
#[derive(Clone, Copy, Debug)]
pub struct Cfg {
    /// The corrected twin.
    pub fixed: bool,
    /// Connections, or tasks, or workers, as the entry's params say.
    pub conns: u64,
    /// Messages per connection, or tasks per submitter.
    pub msgs: u64,
    /// Worker threads.
    pub workers: u64,
}

const P_FIXED: ParamSpec = ParamSpec::new(FIXED, 0, 0, 1, "1: run the corrected twin");

/// The parameters both threaded entries take.
pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new(CONNS, 3, 1, 64, "connections (close) or submitters (spin)"),
    ParamSpec::new(
        MSGS,
        4,
        1,
        10_000,
        "messages per connection, or tasks per submitter",
    ),
    ParamSpec::new("workers", 2, 1, 16, "worker threads"),
    P_FIXED,
];

impl Workload for ThreadedZoo {
    fn name(&self) -> &str {
        self.name
    }
    fn about(&self) -> &str {
        self.about
    }
    fn invariants(&self) -> &str {
        "with fixed=0 the race must be caught (a hang with every thread's blocking call); with fixed=1 every run ends with all the work done"
    }
    fn params(&self) -> &'static [ParamSpec] {
        self.params
    }
    fn kind(&self) -> Kind {
        Kind::Zoo
    }
    fn run(&self, req: &Request, tracing: Tracing) -> Run {
        let p = &req.params;
        let cfg = Cfg {
            fixed: p.get(FIXED) == 1,
            conns: p.get(CONNS),
            msgs: p.get(MSGS),
            workers: p.get("workers"),
        };
        let body = self.body;
        let wall = Instant::now();
        let cpu = process_cpu_ns();
        let sim = sim_judged_by_loop(req);
        let trace = tracing.install(&sim);
        let run = run_threads(sim, req.seed, move |k| body(k, cfg));
        let verdict = run.value.and_then(|v| v);
        let (k, steps) = (run.kernel, run.switch_points);
        let schedule = trace.then_some(run.trace_schedule);
        let mut stats = RunStats {
            conns: cfg.conns,
            bytes: *verdict.as_ref().unwrap_or(&0),
            switch_points: steps,
            ..RunStats::default()
        };
        let mut records = Vec::new();
        let mut fingerprint = None;
        let mut faults = None;
        if let Some(k) = k {
            k.with_sim(|s| {
                stats.count_kernel(s);
                stats.virtual_ns = s.now_ns();
                fingerprint = Some(s.fingerprint());
                faults = Some(s.fault_counts());
                if trace {
                    records = s.take_trace();
                }
            });
        }
        stats.wall_ns = wall.elapsed().as_nanos() as u64;
        stats.cpu_ns = process_cpu_ns().saturating_sub(cpu);
        Run {
            report: Report {
                request: req.clone(),
                stats,
                failure: verdict.err(),
                labels: Vec::new(),
                schedule,
                fingerprint,
                faults,
                phase: Phase::Single,
            },
            trace: records,
        }
    }
}

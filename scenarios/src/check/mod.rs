//! # The one-call check: your own event loop, on the simulated kernel, over many seeds
//!
//! [`Check`] runs a closure written against [`netpoll::Poller`] (a hand-written epoll loop,
//! [`netpoll::rt`] tasks, or both) once per seed, each time on a fresh simulated kernel
//! ([`Sim`]), under the fault plan you choose, and fails with a report that names the seed,
//! the oracle that fired and its diagnosis, the one line that reruns that very case, a trace
//! file, and (when faults played a part) the smallest fault plan that still fails:
//!
//! ```
//! use netpoll::sys::SOCK_NONBLOCK;
//! use netpoll::Poller;
//! use netpoll_scenarios::check::{Check, Faults};
//! use netpoll_sim::Sim;
//!
//! Check::new()
//!     .seeds(0..100)
//!     .faults(Faults::Swarm)
//!     .run(|sim: &Sim| {
//!         let [a, b] = sim.socketpair(SOCK_NONBLOCK)?;
//!         let sent = sim.write(a, b"ping")?; // faults may cut a write short...
//!         let mut got = Vec::new();
//!         while got.len() < sent {
//!             let mut buf = [0u8; 4];
//!             let n = sim.read(b, &mut buf)?; // ...and a read
//!             got.extend_from_slice(&buf[..n]);
//!         }
//!         assert_eq!(got, b"ping"[..sent]); // a panic is a failure too
//!         sim.close(a)?;
//!         sim.close(b)
//!     });
//! ```
//!
//! `#[netpoll::test]` (the `netpoll-macros` crate, re-exported as `netpoll::test` and
//! [`crate::test`]) writes the `#[test]` around a `Check` for you.
//!
//! ## What fails a seed
//!
//! In the order they are judged:
//!
//! 1. **The kernel's oracles** (`netpoll_sim::oracle`), all on by default
//!    ([`Check::oracles`]): a *lost wakeup* (a blocking wait at quiescence while a registration
//!    of the waiting epoll instance is ready for what the loop wants on it and nothing is queued
//!    to report it; `Sim::set_wants` refines "wants"), a *hang* (a blocking call that nothing
//!    could ever wake), a *livelock* (a budget of calls in a row without progress), a *leak*
//!    (a descriptor still open when the closure returns that nobody declared with
//!    [`Check::expect_open`] or `Sim::expect_open`), and the *invariants* added with
//!    [`Check::invariant`] (judged at each quiescence and at the end). Once one fires, every
//!    blocking call fails at once, so the loop ends whatever it does with the error; the
//!    report names the oracle, not the error.
//! 2. **A panic** in the closure (an `assert!` of your own, an `unwrap` of an error).
//! 3. **An `Err`** returned by the closure.
//! 4. With the determinism check on ([`Check::check_determinism`],
//!    `NETPOLL_CHECK_DETERMINISM=1`): two runs of one seed that make different calls or get
//!    different results (the first difference is printed).
//!
//! The check stops at the first failing seed.
//!
//! ## Two phases under `chaos` and `swarm`
//!
//! A fault plan's timing can hide a bug that the quiet timing shows (chaos moves client and
//! server in lock-step), so under [`Faults::Chaos`] and [`Faults::Swarm`] each seed runs twice:
//! first the quiet phase, exactly the run [`Faults::None`] makes, then the faulted phase. The
//! seed fails if either fails, so `chaos` and `swarm` find every failure `none` finds; the cost
//! is at most twice `none`'s per seed. The report says which phase failed ([`Failure::phase`]),
//! and its replay line names that run alone (`NETPOLL_FAULTS=none`, or `chaos-only` /
//! `swarm-only`), so it reruns exactly the failing run. [`crate::swarm::FaultSpec::phases`] is
//! the one place that expands a spec into its runs.
//!
//! ## The environment
//!
//! | variable | effect |
//! |---|---|
//! | `NETPOLL_SEED=N` | run only seed `N` (what a replay line sets) |
//! | `NETPOLL_SEEDS=A..B` | run seeds `A..B` (also `A..=B`, or a count `N` from the check's first seed) |
//! | `NETPOLL_FAULTS=F` | `none`, `chaos`, `swarm`, `chaos-only`, `swarm-only`, or an explicit plan as a report prints it (`short_read=0.25 eintr=0.05`) |
//! | `NETPOLL_CHECK_DETERMINISM=1` | run each seed twice and compare every call and result (and, threaded, the schedule) |
//! | `NETPOLL_SCHEDULE=P` | threaded checks: `random` or `pct:DEPTH:STEPS` (see [`Check::schedule`]) |
//!
//! A bad value fails the check with a message naming the variable and the accepted forms
//! ([`Check::try_run`] returns it as [`CheckError::Config`]).
//!
//! ## Tasks on the netpoller
//!
//! [`runtime`] gives a seeded [`netpoll::rt::Runtime`] on the check's kernel (its poller type
//! is [`SimRc`]), so the closure can `block_on` tasks. It also tells the kernel's lost-wakeup
//! oracle what the runtime waits for: the sides its parked tasks are parked on
//! ([`judge_by_parked_tasks`]), since a netpoller keeps edges for tasks that have not asked yet.
//!
//! ## Threads
//!
//! [`Check::run_threads`] runs the closure as simulated threads ([`netpoll_threads`]): it gets
//! the seed's kernel as a [`netpoll_threads::ThreadedSim`] and starts threads with
//! [`netpoll_threads::spawn`] (or runs a [`netpoll::rt::MultiRuntime`] from
//! [`multi_runtime`]). Exactly one thread runs at a time; at every kernel call, lock, park,
//! spawn and join the seed picks who runs next, uniformly or by PCT priorities
//! ([`Check::schedule`], `NETPOLL_SCHEDULE`), so one seed is one interleaving. Seeds, both
//! phases, the oracles, shrinking and the trace file are the one-thread check's; on top:
//!
//! - every thread blocked with nothing in flight fails the seed as a `deadlock` with each
//!   thread's blocking call and the last switch points, one column per thread; when a thread
//!   waits in an epoll instance that has a ready registration nothing will report, the kernel's
//!   lost-wakeup oracle names it (`lost-wakeup`);
//! - a thread that panics (`panic`, naming the thread), a livelock of idle switch points, a
//!   thread spinning without a call (`spin`, by a wall-clock watchdog that only reports);
//! - the replay line adds `NETPOLL_SCHEDULE`, the report the schedule's hash
//!   ([`Failure::schedule_hash`]), and [`Passed::schedules`] lists each run's;
//! - the trace file has one track per simulated thread (`t1 poller`, named as the report
//!   names the threads), each call on the track of the thread that made it, with the switch
//!   points, `running` and `blocked in` slices, as `netpoll-sim trace` writes a threaded run
//!   ([`crate::trace_out::write_chrome_threads`]).
//!
//! `#[netpoll::test(threads, schedule = "pct:3:1000")]` on a function of
//! `k: ThreadedSim` writes the test.
//!
//! ## Map
//!
//! | file | what it holds |
//! |---|---|
//! | `check/mod.rs` | [`Check`]: the builder, the loop over seeds, the determinism check, shrinking the fault plan, [`runtime`] |
//! | `check/env.rs` | the environment overrides and their errors |
//! | `check/judge.rs` | the one place that asks the simulated kernel's oracles for a verdict |
//! | `check/report.rs` | [`Failure`]: the report, its replay line, the trace file under the target directory |
//! | `check/rt.rs` | [`runtime`], [`shared`], [`judge_by_parked_tasks`]: `netpoll::rt` tasks inside a check |
//! | `check/threads.rs` | [`Check::run_threads`]: one seed on simulated threads, the scheduler's failures as findings; [`multi_runtime`] |
//!
//! Shrinking reuses [`crate::shrink::shrink_faults`], the fault-plan half of the scenario
//! shrinker, and fault specs are [`crate::swarm::FaultSpec`] (re-exported here as [`Faults`]).
//!
//! ## Speed
//!
//! Per seed, a check makes one kernel and runs the closure; nothing is traced unless a seed
//! fails (the failing seed is then run again with the trace on). A sweep of a 10-connection
//! echo runs at several thousand seeds per CPU-second in release builds: see BENCHMARKS.md for
//! the figure and the command.

mod env;
mod judge;
mod report;
mod rt;
mod threads;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::ops::{Bound, Range, RangeBounds};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;

use netpoll::Fd;
use netpoll_sim::trace::Record;
use netpoll_sim::{Oracles, Sim, SimConfig};
use netpoll_threads::Policy;

use crate::shrink::{shrink_faults, FaultTrial};
pub use crate::swarm::Phase;
use env::Settings;
pub use env::{SCHEDULE_FORMS, SEEDS_FORMS};
use judge::{Ended, Finding, Invariant};
pub use report::Failure;
use report::Target;
pub use rt::{judge_by_parked_tasks, runtime, shared, SimRc};
pub use threads::multi_runtime;
#[doc(hidden)]
pub use threads::{Launch, ThreadedBody};

/// Which faults the simulated kernel injects: `None`, `Chaos` (every benign fault),
/// `Swarm` (a subset with weights drawn from each seed: the best default for hunting), or an
/// explicit `Plan`.
pub use crate::swarm::FaultSpec as Faults;

/// Where a check reads its overrides.
type EnvFn = dyn Fn(&str) -> Option<String>;

/// Runs a closure on the simulated kernel over a range of seeds: see the [module docs](self).
pub struct Check {
    seeds: Range<u64>,
    faults: Faults,
    check_determinism: bool,
    config: SimConfig,
    invariants: Vec<Invariant>,
    expect_open: Vec<Fd>,
    shrink_runs: u32,
    env: Rc<EnvFn>,
    test_name: Option<String>,
    /// Who runs next in a threaded check.
    schedule: Policy,
    /// Builder input that was bad (a fault spec that did not parse, an unbounded seed range):
    /// reported by `try_run`.
    bad_input: Option<String>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("seeds", &self.seeds)
            .field("faults", &self.faults)
            .field("check_determinism", &self.check_determinism)
            .field(
                "invariants",
                &self.invariants.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("expect_open", &self.expect_open)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl Default for Check {
    fn default() -> Self {
        Check::new()
    }
}

/// Why [`Check::try_run`] did not pass.
#[derive(Debug)]
pub enum CheckError {
    /// Bad input: an empty seed range, or an environment variable with a bad value. The
    /// message names it and the accepted forms.
    Config(String),
    /// A seed failed.
    Failed(Box<Failure>),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Config(e) => write!(f, "netpoll check: {e}"),
            CheckError::Failed(x) => x.fmt(f),
        }
    }
}

impl std::error::Error for CheckError {}

/// What a passing [`Check::try_run`] ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Passed {
    /// The seeds run (after the environment overrides).
    pub seeds: Range<u64>,
    /// The fault spec.
    pub faults: Faults,
    /// Whether each seed was run twice and compared.
    pub determinism_checked: bool,
    /// For a threaded check ([`Check::run_threads`]): each run's seed and the hash of its
    /// schedule (which thread made which call, in order), in the order they ran (under `chaos`
    /// and `swarm`, two per seed: the quiet phase, then the faulted one). Empty otherwise.
    pub schedules: Vec<(u64, u64)>,
}

impl Check {
    /// A check of seeds `0..1000`, no faults, no determinism check, the kernel's default
    /// (Linux-like) configuration, overridable from the environment.
    pub fn new() -> Check {
        Check {
            seeds: 0..1000,
            faults: Faults::None,
            check_determinism: false,
            config: SimConfig::default(),
            invariants: Vec::new(),
            expect_open: Vec::new(),
            shrink_runs: 64,
            env: Rc::new(|k| std::env::var(k).ok()),
            test_name: None,
            schedule: Policy::Random,
            bad_input: None,
        }
    }

    /// The seeds to run: `0..1000`, `5..=9`, `..100` (`NETPOLL_SEED` / `NETPOLL_SEEDS` override
    /// them). A range without an end, or an empty one, fails the check as bad input.
    pub fn seeds(mut self, seeds: impl RangeBounds<u64>) -> Check {
        let start = match seeds.start_bound() {
            Bound::Included(&a) => Some(a),
            Bound::Excluded(&a) => a.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match seeds.end_bound() {
            Bound::Included(&b) => b.checked_add(1),
            Bound::Excluded(&b) => Some(b),
            Bound::Unbounded => None,
        };
        match (start, end) {
            (Some(a), Some(b)) => self.seeds = a..b,
            _ => {
                self.bad_input = Some(
                    "the check's seed range has no end (or ends past u64::MAX - 1): give it a \
                     last seed"
                        .into(),
                )
            }
        }
        self
    }

    /// The fault spec (`NETPOLL_FAULTS` overrides it).
    pub fn faults(mut self, faults: Faults) -> Check {
        self.faults = faults;
        self
    }

    /// The fault spec as text (`"none"`, `"chaos"`, `"swarm"`, or an explicit plan as a
    /// report prints it): what `#[netpoll::test(faults = "...")]` calls. Text that does not
    /// parse fails the check with the accepted forms.
    pub fn faults_str(mut self, spec: &str) -> Check {
        match Faults::parse(spec) {
            Ok(f) => self.faults = f,
            Err(e) => self.bad_input = Some(format!("faults = {spec:?}: {e}")),
        }
        self
    }

    /// Runs each seed twice and compares every call and result (`NETPOLL_CHECK_DETERMINISM`
    /// overrides it). A closure that reads the wall clock, OS randomness or iterates a
    /// randomly seeded hash map fails this.
    pub fn check_determinism(mut self, on: bool) -> Check {
        self.check_determinism = on;
        self
    }

    /// The kernel's configuration (buffer sizes, latency, limits); its `faults` are replaced
    /// by the check's fault spec, except that a `split_write` set here is kept when the spec
    /// splits less often.
    pub fn config(mut self, config: SimConfig) -> Check {
        self.config = config;
        self
    }

    /// Which of the kernel's oracles are on (all by default; see `netpoll_sim::Oracles`): for
    /// example a longer livelock budget, or no leak check for a closure that leaves its
    /// listener open on purpose.
    pub fn oracles(mut self, oracles: Oracles) -> Check {
        self.config.oracles = oracles;
        self
    }

    /// A user invariant, judged at each quiescence and at the end of each run; an `Err` fails
    /// the seed with the oracle `invariant`, its name and the message.
    pub fn invariant(
        mut self,
        name: &str,
        f: impl Fn(&Sim) -> Result<(), String> + Send + Sync + 'static,
    ) -> Check {
        self.invariants
            .push((name.to_string(), std::sync::Arc::new(f)));
        self
    }

    /// Declares an fd that may legitimately stay open at the end of every run (the leak oracle
    /// skips it). Inside the closure, `Sim::expect_open` does the same for one run.
    pub fn expect_open(mut self, fd: Fd) -> Check {
        self.expect_open.push(fd);
        self
    }

    /// At most `runs` extra runs to shrink a failing seed's fault plan (default 64; 0: do not
    /// shrink).
    pub fn shrink_runs(mut self, runs: u32) -> Check {
        self.shrink_runs = runs;
        self
    }

    /// Where the overrides come from: `std::env::var` by default. `|_| None` ignores the
    /// environment.
    pub fn env(mut self, var: impl Fn(&str) -> Option<String> + 'static) -> Check {
        self.env = Rc::new(var);
        self
    }

    /// How a threaded check ([`Check::run_threads`]) picks who runs at each switch point:
    /// [`Policy::Random`] (the default; uniform choice) or [`Policy::Pct`] (priority schedules
    /// with `depth - 1` preemptions, as shuttle's PCT). `NETPOLL_SCHEDULE` overrides it. A
    /// check of one thread ignores it.
    pub fn schedule(mut self, policy: Policy) -> Check {
        self.schedule = policy;
        self
    }

    /// [`schedule`](Self::schedule) as text: `"random"` or `"pct:DEPTH:STEPS"` (what
    /// `#[netpoll::test(threads, schedule = "...")]` calls). Text that does not parse fails the
    /// check with the accepted forms.
    pub fn schedule_str(mut self, policy: &str) -> Check {
        match env::parse_schedule(policy) {
            Ok(p) => self.schedule = p,
            Err(e) => self.bad_input = Some(format!("schedule = {policy:?}: {e}")),
        }
        self
    }

    /// The test's path as libtest names it (`module::test_fn`), for the replay line;
    /// `#[netpoll::test]` sets it. Without it, the test thread's name is used.
    pub fn test_name(mut self, name: &str) -> Check {
        self.test_name = Some(name.to_string());
        self
    }

    /// Runs the check; a failure (or bad input) panics with the full report, as a failing test
    /// should.
    ///
    /// # Panics
    /// When a seed fails or the input is bad: the message is the report.
    #[track_caller]
    pub fn run(self, f: impl FnMut(&Sim) -> io::Result<()>) {
        if let Err(e) = self.try_run(f) {
            panic!("{e}");
        }
    }

    /// Runs the check and returns what happened.
    ///
    /// # Errors
    /// [`CheckError::Config`] for bad input, [`CheckError::Failed`] with the report of the
    /// first failing seed.
    #[track_caller]
    pub fn try_run(self, f: impl FnMut(&Sim) -> io::Result<()>) -> Result<Passed, CheckError> {
        let caller = Location::caller();
        self.check_body(&mut OneThread(f), caller)
    }

    /// The loop over seeds and phases, whichever way `body` runs a seed. First installs the
    /// CPU's prefetch as the process's cache hint (`netpoll::hint`), unless the test binary
    /// installed one: only the time depends on it.
    fn check_body(
        self,
        body: &mut impl Body,
        caller: &'static Location<'static>,
    ) -> Result<Passed, CheckError> {
        let _ = netpoll_realnet::cache::install();
        if let Some(e) = &self.bad_input {
            return Err(CheckError::Config(e.clone()));
        }
        let base = Settings {
            seeds: self.seeds.clone(),
            faults: self.faults.clone(),
            check_determinism: self.check_determinism,
            schedule: self.schedule,
        };
        let env = Rc::clone(&self.env);
        let s = env::resolve(base, |k| env(k)).map_err(CheckError::Config)?;
        // Under chaos or swarm each seed runs the quiet phase, then the faulted one.
        let phases = s.faults.phases();
        let mut schedules = Vec::new();
        for (passed, seed) in s.seeds.clone().enumerate() {
            for (phase, spec) in &phases {
                let first = body.run_seed(&self, &s, seed, spec, false);
                if let Some(h) = first.schedule {
                    schedules.push((seed, h));
                }
                let finding = match first.finding {
                    Some(x) => Some(x),
                    None if s.check_determinism => {
                        let second = body.run_seed(&self, &s, seed, spec, false);
                        (second.fingerprint != first.fingerprint
                            || second.schedule != first.schedule)
                            .then(|| self.divergence(&s, seed, spec, body))
                    }
                    None => None,
                };
                if let Some(finding) = finding {
                    let target = Target::detect(caller, self.test_name.as_deref());
                    let run = FailedRun {
                        seed,
                        phase: *phase,
                        spec,
                        passed: passed as u64,
                    };
                    return Err(CheckError::Failed(Box::new(
                        self.report(run, &s, finding, &target, body),
                    )));
                }
            }
        }
        Ok(Passed {
            seeds: s.seeds,
            faults: s.faults,
            determinism_checked: s.check_determinism,
            schedules,
        })
    }

    /// The kernel of one run of `seed` under `faults`: the check's configuration with the
    /// fault plan applied, tracing on when `trace`, the oracles armed.
    fn kernel(&self, seed: u64, faults: &Faults, trace: bool) -> Sim {
        let mut cfg = self.config.clone();
        faults.apply(seed, &mut cfg);
        let sim = Sim::with_config(seed, cfg);
        if trace {
            sim.set_trace(true);
        }
        judge::arm(&sim, &self.invariants, &self.expect_open);
        sim
    }

    /// One run of `seed` on the calling thread.
    fn run_seed(
        &self,
        seed: u64,
        faults: &Faults,
        trace: bool,
        f: &mut impl FnMut(&Sim) -> io::Result<()>,
    ) -> Run {
        let sim = Rc::new(self.kernel(seed, faults, trace));
        let ended = {
            let _current = Current::enter(&sim);
            let _quiet = QuietPanics::enter();
            match catch_unwind(AssertUnwindSafe(|| f(&sim))) {
                Ok(r) => Ended::Returned(r),
                Err(payload) => Ended::Panicked(
                    LAST_PANIC
                        .with(|l| l.borrow_mut().take())
                        .unwrap_or_else(|| panic_message(payload.as_ref())),
                ),
            }
        };
        let finding = judge::judge(&sim, ended);
        Run {
            finding,
            fingerprint: sim.fingerprint(),
            schedule: None,
            records: if trace { sim.take_trace() } else { Vec::new() },
            threads: None,
        }
    }

    /// Two traced runs of a seed whose fingerprints (or schedules) differed: the first call
    /// that differs.
    fn divergence(
        &self,
        s: &Settings,
        seed: u64,
        faults: &Faults,
        body: &mut impl Body,
    ) -> Finding {
        let a = body.run_seed(self, s, seed, faults, true);
        let b = body.run_seed(self, s, seed, faults, true);
        let (ra, rb) = (&a.records, &b.records);
        let step = ra.iter().zip(rb).take_while(|(x, y)| x == y).count();
        let show = |r: Option<&Record>| match r {
            Some(r) => r.to_string(),
            None => "(run ended)".into(),
        };
        let what = if ra == rb {
            format!(
                "two runs of seed {seed} made the same calls with the same results, but their \
                 schedules differ (hash {:#018x} vs {:#018x})",
                a.schedule.unwrap_or(0),
                b.schedule.unwrap_or(0)
            )
        } else {
            format!(
                "two runs of seed {seed} differ at call {step}:\n  first:  {}\n  second: {}",
                show(ra.get(step)),
                show(rb.get(step)),
            )
        };
        Finding {
            violation: None,
            kind: "nondeterminism",
            diagnosis: format!(
                "{what}\n(the closure depends on something besides the seed: the wall clock, \
                 OS randomness, a HashMap's order, a thread the check did not start)"
            ),
        }
    }

    /// The report of a failing seed: replay line, trace file, shrunk fault plan, all of the
    /// phase that failed (its spec makes that run alone).
    fn report(
        &self,
        run: FailedRun<'_>,
        s: &Settings,
        finding: Finding,
        target: &Target,
        body: &mut impl Body,
    ) -> Failure {
        let FailedRun {
            seed,
            phase,
            spec,
            passed,
        } = run;
        let nondet = finding.kind == "nondeterminism";
        let schedule = body.threaded().then_some(s.schedule);
        let replay = report::replay_line(target, seed, spec, nondet, schedule);
        let traced = body.run_seed(self, s, seed, spec, true);
        let title = format!("{} seed {seed}", target.test.as_deref().unwrap_or("check"));
        let trace = report::write_trace(
            &traced.records,
            traced.threads.as_ref(),
            target,
            seed,
            &title,
        );
        let mut diagnosis = finding.diagnosis;
        if !nondet && traced.finding.as_ref().map(|x| x.kind) != Some(finding.kind) {
            diagnosis.push_str(
                "\n(the traced rerun of this seed did not fail the same way: the closure \
                 depends on something besides the seed; NETPOLL_CHECK_DETERMINISM=1 shows where)",
            );
        }
        let shrunk = (!nondet && *spec != Faults::None && self.shrink_runs > 0).then(|| {
            let mut t = Trial {
                check: self,
                settings: s,
                body,
                seed,
                kind: finding.kind,
                cur: spec.clone(),
                runs: 0,
            };
            shrink_faults(&mut t, seed);
            let spec = t.cur;
            let line = report::replay_line(target, seed, &spec, false, schedule);
            (spec, line)
        });
        Failure {
            seed,
            faults: s.faults.clone(),
            phase,
            oracle: finding.kind,
            diagnosis,
            violation: finding.violation,
            replay,
            trace,
            shrunk,
            passed,
            schedule,
            schedule_hash: traced.schedule,
        }
    }
}

/// How a check runs its closure for one seed: on the calling thread ([`Check::try_run`]), or
/// as simulated threads ([`Check::try_run_threads`], `threads.rs`).
trait Body {
    /// One run of `seed` under `faults` (traced when `trace`).
    fn run_seed(
        &mut self,
        check: &Check,
        s: &Settings,
        seed: u64,
        faults: &Faults,
        trace: bool,
    ) -> Run;

    /// Whether the runs are threaded (their replay line names the schedule policy).
    fn threaded(&self) -> bool;
}

/// A closure run on the calling thread.
struct OneThread<F>(F);

impl<F: FnMut(&Sim) -> io::Result<()>> Body for OneThread<F> {
    fn run_seed(
        &mut self,
        check: &Check,
        _s: &Settings,
        seed: u64,
        faults: &Faults,
        trace: bool,
    ) -> Run {
        check.run_seed(seed, faults, trace, &mut self.0)
    }

    fn threaded(&self) -> bool {
        false
    }
}

/// Which run of which seed failed, for [`Check::report`].
struct FailedRun<'a> {
    seed: u64,
    phase: Phase,
    /// The spec that makes that run alone.
    spec: &'a Faults,
    /// Seeds that passed before this one.
    passed: u64,
}

/// One run's outcome.
struct Run {
    finding: Option<Finding>,
    fingerprint: (u64, u64),
    /// A threaded run's schedule hash.
    schedule: Option<u64>,
    /// The calls, when traced.
    records: Vec<Record>,
    /// A traced threaded run's thread marks and schedule, for its trace file.
    threads: Option<report::ThreadTrace>,
}

/// A failing seed whose fault plan is being shrunk.
struct Trial<'a, B> {
    check: &'a Check,
    settings: &'a Settings,
    body: &'a mut B,
    seed: u64,
    kind: &'static str,
    cur: Faults,
    runs: u32,
}

impl<B: Body> FaultTrial for Trial<'_, B> {
    fn faults(&self) -> &Faults {
        &self.cur
    }

    fn attempt(&mut self, faults: Faults, _change: String) -> bool {
        if self.exhausted() {
            return false;
        }
        self.runs += 1;
        let r = self
            .body
            .run_seed(self.check, self.settings, self.seed, &faults, false);
        let same = r.finding.is_some_and(|x| x.kind == self.kind);
        if same {
            self.cur = faults;
        }
        same
    }

    fn exhausted(&self) -> bool {
        self.runs >= self.check.shrink_runs
    }
}

/// The test's path as libtest names it, from `module_path!()` and the function's name (the
/// crate's name is not part of it). For `#[netpoll::test]`'s expansion.
#[doc(hidden)]
pub fn __test_path(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_, rest)) => format!("{rest}::{name}"),
        None => name.to_string(),
    }
}

thread_local! {
    /// Whether a check's closure is running on this thread (its panics are reported, not
    /// printed).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The last panic caught while [`QUIET`]: its message and where it was raised.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// While alive, panics on this thread are recorded for the report instead of printed: a failing
/// seed is run again for its trace and for shrinking, and each rerun would print the panic
/// anew. Other threads' panics print as before (the hook is installed once and passes them on).
struct QuietPanics(bool);

impl QuietPanics {
    fn enter() -> QuietPanics {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if QUIET.with(|q| q.get()) {
                    let at = info
                        .location()
                        .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                        .unwrap_or_default();
                    let msg = panic_message(info.payload());
                    LAST_PANIC.with(|l| *l.borrow_mut() = Some(format!("{msg}{at}")));
                } else {
                    previous(info);
                }
            }));
        });
        LAST_PANIC.with(|l| l.borrow_mut().take());
        QuietPanics(QUIET.with(|q| q.replace(true)))
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(self.0));
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic payload that is not a string)".into())
}

thread_local! {
    /// The kernel of the run in progress on this thread, for [`shared`] and [`runtime`].
    pub(crate)
    static CURRENT: RefCell<Option<Rc<Sim>>> = const { RefCell::new(None) };
}

/// Sets [`CURRENT`] for the closure's run; restores the previous one when dropped (checks may
/// nest).
struct Current(Option<Rc<Sim>>);

impl Current {
    fn enter(sim: &Rc<Sim>) -> Current {
        Current(CURRENT.with(|c| c.replace(Some(Rc::clone(sim)))))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = self.0.take());
    }
}

//! `netpoll-sim`: run, sweep, replay and trace netpoll scenarios.
//!
//! Exit status: 0 when every run passes, 1 when an oracle fails, 2 on bad usage (including a
//! corrupt or foreign replay token).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};

use netpoll_scenarios::params::{ParamError, Params, CONNS, MSGS, SIZE};
use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{self, Backend, Report, Request};
use netpoll_scenarios::swarm::FaultSpec;
use netpoll_scenarios::workload::{Kind, Workload};
use netpoll_scenarios::{shrink, trace_out};

#[derive(Parser, Debug)]
#[command(
    name = "netpoll-sim",
    version,
    about = "Run event-loop scenarios on netpoll's simulated kernel (or the real one), replay failures by token."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the scenarios and their parameters.
    List,
    /// Run one scenario once.
    Run {
        /// The scenario (see `list`).
        scenario: String,
        /// The seed (default: drawn from the clock, and printed).
        #[arg(long)]
        seed: Option<u64>,
        /// The kernel.
        #[arg(long, value_enum, default_value_t = BackendArg::Sim)]
        backend: BackendArg,
        #[command(flatten)]
        params: ParamArgs,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// Run twice and compare the runs call by call.
        #[arg(long)]
        check_determinism: bool,
        #[command(flatten)]
        faults: FaultArg,
    },
    /// Run one scenario over a range of seeds.
    Sweep {
        /// The scenario (see `list`).
        scenario: String,
        /// Seeds, `A..B` (B excluded) or `A..=B`.
        #[arg(long)]
        seeds: String,
        /// Run only shard K of N (1-based): the seeds whose position in the range is K-1 mod N.
        #[arg(long)]
        shard: Option<String>,
        #[command(flatten)]
        params: ParamArgs,
        /// Also check determinism for every seed (runs each twice).
        #[arg(long)]
        check_determinism: bool,
        /// Runs at once (threads; each has its own simulated kernel).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[command(flatten)]
        faults: FaultArg,
    },
    /// Shrink a failing run to a minimal one that fails the same way; print the steps and the
    /// shrunk replay token.
    Shrink {
        /// The failing run's token (`np1-...` or `np2-...`).
        token: String,
        /// Runs to make at most.
        #[arg(long, default_value_t = 500)]
        max_runs: u32,
    },
    /// Re-run the run a replay token describes.
    Replay {
        /// The token (`np1-...`).
        token: String,
        /// Print one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// Run twice and compare the runs call by call.
        #[arg(long)]
        check_determinism: bool,
    },
    /// Write a trace of the run a replay token describes.
    Trace {
        /// The token (`np1-...`).
        token: String,
        /// Output file: Chrome/Perfetto trace-event JSON.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Write the compact text trace instead of JSON.
        #[arg(long)]
        text: bool,
    },
}

#[derive(Args, Debug)]
struct FaultArg {
    /// Faults the simulated kernel injects: none, chaos, or swarm (a random subset with random
    /// weights, drawn from each seed). Sets the `faults` parameter; carried in the replay token.
    #[arg(long = "faults", value_parser = FaultSpec::param_value)]
    faults: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    Sim,
    Real,
}

#[derive(Args, Debug)]
struct ParamArgs {
    /// Connections.
    #[arg(long)]
    conns: Option<u64>,
    /// Messages per connection.
    #[arg(long)]
    msgs: Option<u64>,
    /// Bytes per message.
    #[arg(long)]
    size: Option<u64>,
    /// A scenario-specific parameter, `NAME=VALUE` (repeatable; see `list`).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    extra: Vec<String>,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn scenario_named(registry: &Registry, name: &str) -> Result<&'static dyn Workload, ParamError> {
    registry.find(name).ok_or_else(|| {
        let names: Vec<&str> = registry.of_kind(Kind::Scenario).map(|s| s.name()).collect();
        ParamError(format!(
            "unknown scenario {name:?}; known: {}",
            names.join(", ")
        ))
    })
}

fn build_params(s: &'static dyn Workload, a: &ParamArgs) -> Result<Params, ParamError> {
    let mut p = s.defaults();
    for (name, v) in [(CONNS, a.conns), (MSGS, a.msgs), (SIZE, a.size)] {
        if let Some(v) = v {
            p.set(name, v)?;
        }
    }
    for kv in &a.extra {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(ParamError(format!("--param {kv:?}: expected NAME=VALUE")));
        };
        let v: u64 = v.trim().parse().map_err(|_| {
            ParamError(format!(
                "--param {kv:?}: {v:?} is not a non-negative integer"
            ))
        })?;
        p.set(k.trim(), v)?;
    }
    Ok(p)
}

fn clock_seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    netpoll_scenarios::rng::mix(t as u64) % 1_000_000_000
}

fn print_report(r: &Report, json: bool) -> ExitCode {
    if json {
        println!("{}", r.json());
    } else {
        println!("{r}");
    }
    if r.failure.is_some() {
        if json {
            // Keep the one replay line visible on stderr too.
            eprintln!("replay: {}", r.request.replay_line());
        }
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let registry = Registry::builtin();
    match cli.cmd {
        Cmd::List => {
            for kind in [Kind::Scenario, Kind::Canary, Kind::Zoo] {
                for s in registry.of_kind(kind) {
                    match kind {
                        Kind::Scenario => {
                            println!("{:<14} {}", s.name(), s.about());
                            println!("{:<14} checks: {}", "", s.invariants());
                        }
                        Kind::Canary => {
                            println!(
                                "{:<14} {} (not in sweeps of the registry)",
                                s.name(),
                                s.about()
                            );
                            continue;
                        }
                        Kind::Zoo => println!(
                            "{:<14} {} (bug zoo; --param fixed=1 runs the corrected loop)",
                            s.name(),
                            s.about()
                        ),
                    }
                    for p in s.params() {
                        println!(
                            "{:<16}--{:<14} default {:<8} ({}..={}) {}",
                            "", p.name, p.default, p.min, p.max, p.help
                        );
                    }
                    if kind == Kind::Scenario && !s.real_ok() {
                        println!("{:<16}(simulated kernel only)", "");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Cmd::Run {
            scenario,
            seed,
            backend,
            params,
            json,
            check_determinism,
            faults,
        } => {
            let s = match scenario_named(&registry, &scenario) {
                Ok(s) => s,
                Err(e) => return usage(e),
            };
            let mut p = match build_params(s, &params) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            if let Some(v) = faults.faults {
                if let Err(e) = p.set("faults", v) {
                    return usage(e);
                }
            }
            let backend = match backend {
                BackendArg::Sim => Backend::Sim,
                BackendArg::Real => Backend::Real,
            };
            let req = Request {
                scenario: s,
                params: p,
                seed: seed.unwrap_or_else(clock_seed),
                backend,
                check_determinism,
                faults: FaultSpec::None,
            };
            if let Err(e) = req.validate() {
                return usage(e);
            }
            if !json {
                eprintln!("running {} with seed {} on {}", s.name(), req.seed, backend);
            }
            print_report(&run::execute(&req), json)
        }
        Cmd::Replay {
            token,
            json,
            check_determinism,
        } => {
            let mut req = match registry.from_token(&token) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            req.check_determinism = check_determinism;
            if let Err(e) = req.validate() {
                return usage(e);
            }
            print_report(&run::execute(&req), json)
        }
        Cmd::Shrink { token, max_runs } => {
            let req = match registry.from_token(&token) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            if let Err(e) = req.validate() {
                return usage(e);
            }
            eprintln!(
                "shrinking {} ({}, seed {}, faults {})",
                req.scenario.name(),
                req.params,
                req.seed,
                req.faults
            );
            let out = match shrink::shrink(&req, max_runs) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::SUCCESS;
                }
            };
            for st in &out.steps {
                println!(
                    "{} {:<48} -> {}",
                    if st.kept { "kept " } else { "tried" },
                    st.change,
                    st.outcome
                );
            }
            println!(
                "shrunk in {} runs, keeping the failure kind {}: {} ({}, faults {})",
                out.runs,
                out.kind,
                out.request.scenario.name(),
                out.request.params,
                out.request.faults
            );
            println!("{}", out.report);
            println!("token        {}", out.request.token());
            ExitCode::from(1)
        }
        Cmd::Trace { token, out, text } => {
            let req = match registry.from_token(&token) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            if let Err(e) = req.validate() {
                return usage(e);
            }
            let (records, report) = run::traced(&req);
            let body = if text {
                trace_out::text(&records, &report.labels)
            } else {
                let title = format!("{} seed {} ({})", req.scenario.name(), req.seed, req.params);
                trace_out::chrome(&records, &report.labels, &title).to_string()
            };
            if let Err(e) = std::fs::write(&out, body) {
                eprintln!("error: writing {}: {e}", out.display());
                return ExitCode::from(2);
            }
            eprintln!(
                "wrote {} calls to {} ({})",
                records.len(),
                out.display(),
                report.outcome()
            );
            if let Some(f) = &report.failure {
                eprintln!("{f}");
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Sweep {
            scenario,
            seeds,
            shard,
            params,
            check_determinism,
            jobs,
            faults,
        } => {
            let s = match scenario_named(&registry, &scenario) {
                Ok(s) => s,
                Err(e) => return usage(e),
            };
            let mut p = match build_params(s, &params) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            if let Some(v) = faults.faults {
                if let Err(e) = p.set("faults", v) {
                    return usage(e);
                }
            }
            let range = match parse_seeds(&seeds) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            let (k, n) = match shard.as_deref().map(parse_shard).transpose() {
                Ok(sh) => sh.unwrap_or((1, 1)),
                Err(e) => return usage(e),
            };
            let mine: Vec<u64> = range
                .clone()
                .enumerate()
                .filter(|(i, _)| (*i as u64) % n == k - 1)
                .map(|(_, seed)| seed)
                .collect();
            let probe = Request {
                scenario: s,
                params: p.clone(),
                seed: 0,
                backend: Backend::Sim,
                check_determinism,
                faults: FaultSpec::None,
            };
            if let Err(e) = probe.validate() {
                return usage(e);
            }
            if jobs == 0 || jobs > 256 {
                return usage(format!("--jobs {jobs}: expected 1..=256"));
            }
            sweep(
                &probe,
                &mine,
                jobs,
                &format!("{}..={} shard {k}/{n}", range.start(), range.end()),
            )
        }
    }
}

fn parse_seeds(s: &str) -> Result<std::ops::RangeInclusive<u64>, ParamError> {
    let bad = || ParamError(format!("--seeds {s:?}: expected A..B or A..=B with A < B"));
    let (a, b, incl) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        return Err(bad());
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if incl {
        b
    } else {
        b.checked_sub(1).ok_or_else(bad)?
    };
    if end < a {
        return Err(bad());
    }
    if end - a >= 100_000_000 {
        return Err(ParamError(format!(
            "--seeds {s:?}: more than 100,000,000 seeds; shard it"
        )));
    }
    Ok(a..=end)
}

fn parse_shard(s: &str) -> Result<(u64, u64), ParamError> {
    let bad = || ParamError(format!("--shard {s:?}: expected K/N with 1 <= K <= N"));
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let k: u64 = k.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise.
struct Progress {
    total: usize,
    done: usize,
    failed: usize,
    tty: bool,
    last_tenth: usize,
    start: Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            failed: 0,
            tty: std::io::stderr().is_terminal(),
            last_tenth: 0,
            start: Instant::now(),
        }
    }

    fn tick(&mut self, failed: bool) {
        self.done += 1;
        self.failed += usize::from(failed);
        let secs = self.start.elapsed().as_secs_f64();
        if self.tty {
            let width = 40;
            let filled = self.done * width / self.total.max(1);
            let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
            eprint!(
                "\r[{bar}] {}/{} seeds, {} failed, {secs:.1}s",
                self.done, self.total, self.failed
            );
            if self.done == self.total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        } else {
            let tenth = self.done * 10 / self.total.max(1);
            if tenth > self.last_tenth || self.done == self.total {
                self.last_tenth = tenth;
                eprintln!(
                    "progress: {}/{} seeds, {} failed, {secs:.1}s",
                    self.done, self.total, self.failed
                );
            }
        }
    }
}

fn sweep(probe: &Request, seeds: &[u64], jobs: usize, what: &str) -> ExitCode {
    type Outcome = (u64, Option<(&'static str, String)>);
    let mut bar = Progress::new(seeds.len());
    let mut failures = Vec::new();
    let mut events = 0u64;
    let start = Instant::now();
    // Workers take seeds in order from a shared counter and send back (index, outcome).
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
    let mut results: Vec<Option<Outcome>> = vec![None; seeds.len()];
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(seeds.len()).max(1) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { return };
                let req = Request {
                    seed,
                    ..probe.clone()
                };
                let r = run::execute(&req);
                let fail = r.failure.as_ref().map(|f| (f.kind(), req.replay_line()));
                if tx.send((i, (r.stats.events, fail))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for (i, outcome) in rx {
            bar.tick(outcome.1.is_some());
            results[i] = Some(outcome);
        }
    });
    for (i, r) in results.into_iter().enumerate() {
        let (ev, fail) = r.expect("every seed ran");
        events += ev;
        if let Some((kind, line)) = fail {
            failures.push((seeds[i], kind, line));
        }
    }
    println!(
        "sweep {} seeds {what}: {} runs, {} passed, {} failed, {events} events, {:.2} s",
        probe.scenario.name(),
        seeds.len(),
        seeds.len() - failures.len(),
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    for (seed, kind, line) in &failures {
        println!("FAIL seed {seed} ({kind}): {line}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

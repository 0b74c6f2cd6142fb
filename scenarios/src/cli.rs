//! The `netpoll-sim` command line, over any [`Registry`] of workloads: run, sweep, replay,
//! trace and shrink them, and merge the outputs of sharded sweeps. `netpoll-sim` itself is
//! `cli::main(Registry::builtin())`; a user's binary adds its own workloads first:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use netpoll_scenarios::registry::Registry;
//!
//! fn main() -> ExitCode {
//!     let registry = Registry::builtin();
//!     // registry.add(MyWorkload)?; ... (see `netpoll_scenarios::workload` for a complete one)
//!     netpoll_scenarios::cli::main(registry)
//! }
//! ```
//!
//! Exit status: 0 when every run passes, 1 when an oracle fails, 2 on bad usage (including a
//! corrupt or foreign replay token, or shard outputs that do not merge). A standard output
//! closed early (`netpoll-sim list | head -1`) ends the program quietly with status 141, the
//! status of a process killed by `SIGPIPE`, as `cat` or `yes` would have.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal, Read, Write};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Arg, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::oracle::Failure;
use crate::params::{ParamError, Params, CONNS, MSGS, SIZE};
use crate::registry::Registry;
use crate::run::{self, Backend, Report, Request};
use crate::shard::{self, FailureLine, Line, Seeds, Shard, Summary};
use crate::swarm::{FaultSpec, Phase};
use crate::workload::{Kind, Workload};
use crate::{shrink, trace_file};

/// The workloads this command line serves, set once by [`main`].
static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY
        .get()
        .expect("cli::main sets the registry before anything reads it")
}

/// Prints a line on standard output; a closed pipe ends the program quietly ([`stdout_failed`]).
macro_rules! out {
    ($($t:tt)*) => { emit(format_args!($($t)*)) };
}

/// Prints a line on standard error; a closed standard error is ignored (nobody is reading).
macro_rules! note {
    ($($t:tt)*) => {{ let _ = writeln!(std::io::stderr(), $($t)*); }};
}

fn emit(args: fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.write_all(b"\n")) {
        stdout_failed(&e);
    }
}

/// Standard output cannot be written: a closed pipe (the reader has what it wanted) ends the
/// program quietly with 141, any other error with a message and 2.
fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    note!("error: writing to standard output: {e}");
    std::process::exit(2);
}

#[derive(Parser, Debug)]
#[command(
    name = "netpoll-sim",
    version,
    about = "Run event-loop scenarios on netpoll's simulated kernel (or the real one), replay failures by token.",
    after_help = "Exit status: 0 every run passed, 1 an oracle failed, 2 bad usage. \
                  Each scenario's parameters (`list`) are flags of `run` and `sweep`: \
                  `--window 5`, or `--param window=5`."
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
        #[arg(long, value_parser = u64_value, allow_negative_numbers = true)]
        seed: Option<u64>,
        /// The kernel.
        #[arg(long, value_enum, default_value_t = BackendArg::Sim)]
        backend: BackendArg,
        #[command(flatten)]
        params: ParamArgs,
        /// Print one JSON object instead of the summary (its `token` field is what `replay`
        /// takes).
        #[arg(long)]
        json: bool,
        /// Run twice and compare the runs call by call.
        #[arg(long)]
        check_determinism: bool,
        #[command(flatten)]
        faults: FaultArg,
    },
    /// Run one scenario over a range of seeds (or one shard of it).
    Sweep {
        /// The scenario (see `list`).
        scenario: String,
        /// Seeds, `A..B` (B excluded) or `A..=B`.
        #[arg(long, allow_hyphen_values = true)]
        seeds: String,
        /// Run only shard K of N (1-based): the seeds whose position in the range is K-1 mod N.
        /// Give every shard the same --seeds and N; `merge` combines their `--json` outputs.
        #[arg(long, value_parser = Shard::parse, allow_hyphen_values = true)]
        shard: Option<Shard>,
        #[command(flatten)]
        params: ParamArgs,
        /// Also check determinism for every seed (runs each twice).
        #[arg(long)]
        check_determinism: bool,
        /// Runs at once (threads; each has its own simulated kernel).
        #[arg(long, default_value_t = 1, value_parser = u64_value, allow_negative_numbers = true)]
        jobs: u64,
        /// Failing seeds to print (the rest are counted, by oracle).
        #[arg(long, default_value_t = 10, value_parser = u64_value, allow_negative_numbers = true)]
        max_failures: u64,
        /// JSON lines for `merge`: one line per failing seed, in seed order (with its replay
        /// token; every failure, whatever --max-failures says), then one summary line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        faults: FaultArg,
    },
    /// Combine the `sweep --json` outputs of the shards of one sweep into one report, with
    /// every failure's replay token.
    Merge {
        /// The shards' outputs (`-` reads standard input; a file may hold several shards).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the merged sweep as `sweep --json` would have (failure lines, then a summary).
        #[arg(long)]
        json: bool,
        /// Merge what is there when shards are missing (they are named in the report).
        #[arg(long)]
        allow_missing: bool,
    },
    /// Shrink a failing run to a minimal one that fails the same way; print the steps and the
    /// shrunk replay token.
    Shrink {
        /// The failing run's token (`np1-...` or `np2-...`).
        token: String,
        /// Runs to make at most.
        #[arg(long, default_value_t = 500, value_parser = u32_value, allow_negative_numbers = true)]
        max_runs: u32,
    },
    /// Re-run the run a replay token describes.
    Replay {
        /// The token (`np1-...` or `np2-...`).
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
        /// The token (`np1-...` or `np2-...`).
        token: String,
        /// Output file: Chrome/Perfetto trace-event JSON (checked for writing before the run).
        #[arg(long)]
        out: PathBuf,
        /// Write the compact text trace instead of JSON.
        #[arg(long)]
        text: bool,
    },
}

#[derive(Args, Debug)]
struct FaultArg {
    /// Faults the simulated kernel injects: none, chaos, or swarm (a random subset with random
    /// weights, drawn from each seed); or 0, 1, 2. Sets the `faults` parameter; carried in the
    /// replay token.
    #[arg(long = "faults", value_parser = faults_value)]
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
    #[arg(long, value_parser = u64_value, allow_negative_numbers = true)]
    conns: Option<u64>,
    /// Messages per connection.
    #[arg(long, value_parser = u64_value, allow_negative_numbers = true)]
    msgs: Option<u64>,
    /// Bytes per message.
    #[arg(long, value_parser = u64_value, allow_negative_numbers = true)]
    size: Option<u64>,
    /// A scenario's parameter, `NAME=VALUE` (repeatable; the same as `--NAME VALUE`; see `list`).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    extra: Vec<String>,
    /// The scenario parameters given as their own flags (`--window 5`), filled in by
    /// [`parse_cli`].
    #[arg(skip)]
    named: Vec<(&'static str, u64)>,
}

/// A non-negative integer argument, with a message that says so (clap's own suggests `-- -1`
/// for a negative number, which is no use here).
fn u64_value(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{t} is negative: expected a non-negative integer"));
        }
    }
    t.parse()
        .map_err(|e: std::num::ParseIntError| match e.kind() {
            std::num::IntErrorKind::PosOverflow => {
                format!("{t} is too large: at most {}", u64::MAX)
            }
            _ => format!("{t:?} is not a non-negative integer"),
        })
}

fn u32_value(s: &str) -> Result<u32, String> {
    let v = u64_value(s)?;
    u32::try_from(v).map_err(|_| format!("{v} is too large: at most {}", u32::MAX))
}

/// `--faults`: a name, or the number `list` shows.
fn faults_value(s: &str) -> Result<u64, String> {
    match s.trim() {
        "0" => Ok(0),
        "1" => Ok(1),
        "2" => Ok(2),
        other => FaultSpec::param_value(other)
            .map_err(|_| format!("{other:?}: expected none, chaos or swarm (or 0, 1, 2)")),
    }
}

/// Every scenario the command line accepts, in `list` order: the registry, the canaries, the
/// bug zoo.
fn all_scenarios() -> Vec<&'static dyn Workload> {
    [Kind::Scenario, Kind::Canary, Kind::Zoo]
        .into_iter()
        .flat_map(|k| registry().of_kind(k))
        .collect()
}

/// Parameters with a flag of their own in every scenario's declaration (the rest become
/// flags through [`parse_cli`]).
const FIXED_FLAGS: [&str; 4] = [CONNS, MSGS, SIZE, "faults"];

/// Each scenario parameter that is not one of [`FIXED_FLAGS`], with its help: the first
/// declaration's words and the scenarios that take it.
fn param_flags() -> Vec<(&'static str, String)> {
    let mut by_name: BTreeMap<&'static str, (&'static str, Vec<&'static str>)> = BTreeMap::new();
    for s in all_scenarios() {
        for p in s.params() {
            if FIXED_FLAGS.contains(&p.name) {
                continue;
            }
            by_name
                .entry(p.name)
                .or_insert((p.help, Vec::new()))
                .1
                .push(s.name());
        }
    }
    by_name
        .into_iter()
        .map(|(name, (help, takers))| {
            let who = if takers.len() > 4 {
                format!("{} scenarios", takers.len())
            } else {
                takers.join(", ")
            };
            (name, format!("{help} [{who}]"))
        })
        .collect()
}

/// Parses the command line: the derived flags plus one flag per scenario parameter, for `run`
/// and `sweep`. A usage error exits 2 with clap's message.
fn parse_cli() -> Cli {
    let flags = param_flags();
    let mut cmd = Cli::command();
    for sub in ["run", "sweep"] {
        cmd = cmd.mut_subcommand(sub, |mut c| {
            for (name, help) in &flags {
                c = c.arg(
                    Arg::new(*name)
                        .long(*name)
                        .value_name("N")
                        .value_parser(u64_value)
                        .allow_negative_numbers(true)
                        .help(help.clone())
                        .help_heading("Scenario parameters (see `list`; also --param NAME=N)"),
                );
            }
            c
        });
    }
    let matches = cmd.get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Some((_, sub)), Cmd::Run { params, .. } | Cmd::Sweep { params, .. }) =
        (matches.subcommand(), &mut cli.cmd)
    {
        params.named = flags
            .iter()
            .filter_map(|(n, _)| sub.get_one::<u64>(n).map(|v| (*n, *v)))
            .collect();
    }
    cli
}

fn usage(msg: impl fmt::Display) -> ExitCode {
    note!("error: {msg}");
    ExitCode::from(2)
}

fn scenario_named(name: &str) -> Result<&'static dyn Workload, ParamError> {
    registry().find(name).ok_or_else(|| {
        let names: Vec<&str> = all_scenarios().iter().map(|s| s.name()).collect();
        ParamError(format!(
            "unknown scenario {name:?}; known: {}",
            names.join(", ")
        ))
    })
}

fn build_params(
    s: &'static dyn Workload,
    a: &ParamArgs,
    faults: &FaultArg,
) -> Result<Params, ParamError> {
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |p: &mut Params, name: &str, v: u64, how: String| {
        if let Some(prev) = given.insert(name.to_string(), how.clone()) {
            return Err(ParamError(format!(
                "{how}: parameter {name} is already given ({prev})"
            )));
        }
        p.set(name, v)
    };
    let mut p = s.defaults();
    for (name, v) in [(CONNS, a.conns), (MSGS, a.msgs), (SIZE, a.size)] {
        if let Some(v) = v {
            set(&mut p, name, v, format!("--{name} {v}"))?;
        }
    }
    if let Some(v) = faults.faults {
        set(&mut p, "faults", v, format!("--faults {v}"))?;
    }
    for &(name, v) in &a.named {
        set(&mut p, name, v, format!("--{name} {v}"))?;
    }
    for kv in &a.extra {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(ParamError(format!("--param {kv:?}: expected NAME=VALUE")));
        };
        let v = u64_value(v).map_err(|e| ParamError(format!("--param {kv:?}: {e}")))?;
        set(&mut p, k.trim(), v, format!("--param {kv}"))?;
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
        out!("{}", r.json());
    } else {
        out!("{r}");
    }
    if r.failure.is_some() {
        if json {
            // Keep the one replay line visible on stderr too.
            note!("replay: {}", r.request.replay_line());
        }
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn list() -> ExitCode {
    let params = |s: &dyn Workload| {
        for p in s.params() {
            if p.name == "faults" {
                out!(
                    "{:<16}--{:<14} default {:<8} (none|chaos|swarm, or 0..=2) {}",
                    "",
                    p.name,
                    ["none", "chaos", "swarm"][p.default.min(2) as usize],
                    p.help
                );
            } else {
                out!(
                    "{:<16}--{:<14} default {:<8} ({}..={}) {}",
                    "",
                    p.name,
                    p.default,
                    p.min,
                    p.max,
                    p.help
                );
            }
        }
    };
    for kind in [Kind::Scenario, Kind::Canary, Kind::Zoo] {
        for s in registry().of_kind(kind) {
            match kind {
                Kind::Scenario => {
                    out!("{:<14} {}", s.name(), s.about());
                    out!("{:<14} checks: {}", "", s.invariants());
                }
                Kind::Canary => out!(
                    "{:<14} {} (not in sweeps of the registry)",
                    s.name(),
                    s.about()
                ),
                Kind::Zoo => out!(
                    "{:<14} {} (bug zoo; --fixed 1 runs the corrected loop)",
                    s.name(),
                    s.about()
                ),
            }
            params(s);
            if kind != Kind::Zoo && !s.real_ok() {
                out!("{:<16}(simulated kernel only)", "");
            }
        }
    }
    out!("\nEach parameter is a flag of `run` and `sweep` (`--window 5`), or `--param window=5`.");
    ExitCode::SUCCESS
}

/// The whole `netpoll-sim` command line over `registry`: a user's own binary gets `list`, `run`,
/// `sweep`, `replay` (tokens included), `trace`, `shrink` and `merge` for its own workloads
/// with `fn main() -> ExitCode { netpoll_scenarios::cli::main(registry) }`.
///
/// # Panics
/// If called twice in one process (the command line is the process's).
pub fn main(workloads: Registry) -> ExitCode {
    if REGISTRY.set(workloads).is_err() {
        panic!("netpoll_scenarios::cli::main runs once per process");
    }
    // The CPU's prefetch as the cache hint of the runtime and the simulated kernel
    // (`netpoll::hint`): only the time depends on it. Kept if the binary installed its own.
    let _ = netpoll_realnet::cache::install();
    let code = match parse_cli().cmd {
        Cmd::List => list(),
        Cmd::Run {
            scenario,
            seed,
            backend,
            params,
            json,
            check_determinism,
            faults,
        } => {
            let s = match scenario_named(&scenario) {
                Ok(s) => s,
                Err(e) => return usage(e),
            };
            let p = match build_params(s, &params, &faults) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
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
                note!("running {} with seed {} on {}", s.name(), req.seed, backend);
            }
            print_report(&run::execute(&req), json)
        }
        Cmd::Replay {
            token,
            json,
            check_determinism,
        } => {
            let mut req = match registry().from_token(&token) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            req.check_determinism = check_determinism;
            if let Err(e) = req.validate() {
                return usage(e);
            }
            print_report(&run::execute(&req), json)
        }
        Cmd::Shrink { token, max_runs } => shrink_cmd(&token, max_runs),
        Cmd::Trace { token, out, text } => trace_cmd(&token, &out, text),
        Cmd::Sweep {
            scenario,
            seeds,
            shard,
            params,
            check_determinism,
            jobs,
            max_failures,
            json,
            faults,
        } => {
            let s = match scenario_named(&scenario) {
                Ok(s) => s,
                Err(e) => return usage(e),
            };
            let p = match build_params(s, &params, &faults) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            let range = match parse_seeds(&seeds) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            let shard = shard.unwrap_or(Shard::ALL);
            let count = shard.count(&range);
            if count > shard::SEEDS_PER_PROCESS_MAX {
                let n = u128::from(shard.n)
                    * u128::from(count).div_ceil(u128::from(shard::SEEDS_PER_PROCESS_MAX));
                let what = if shard == Shard::ALL {
                    format!("--seeds {seeds}")
                } else {
                    format!("shard {shard} of --seeds {seeds}")
                };
                return usage(format!(
                    "{what} holds {count} seeds, more than one process sweeps ({}): split the \
                     range across processes or machines with --shard K/N (N at least {n}), and \
                     combine their --json outputs with `netpoll-sim merge`",
                    shard::SEEDS_PER_PROCESS_MAX
                ));
            }
            let probe = Request {
                scenario: s,
                params: p,
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
            sweep(&SweepPlan {
                probe,
                range,
                shard,
                jobs,
                json,
                max_failures,
            })
        }
        Cmd::Merge {
            files,
            json,
            allow_missing,
        } => merge_cmd(&files, json, allow_missing),
    };
    if let Err(e) = std::io::stdout().flush() {
        stdout_failed(&e);
    }
    code
}

/// What a shrink header and result say about faults: an explicit plan, or the `faults`
/// parameter's plan by name.
fn faults_label(req: &Request) -> String {
    match (&req.faults, req.params.try_get("faults")) {
        (FaultSpec::None, Some(v @ 1..=2)) => ["none", "chaos", "swarm"][v as usize].to_string(),
        (spec, _) => spec.to_string(),
    }
}

fn shrink_cmd(token: &str, max_runs: u32) -> ExitCode {
    let req = match registry().from_token(token) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    if let Err(e) = req.validate() {
        return usage(e);
    }
    note!(
        "shrinking {} ({}, seed {}, faults {})",
        req.scenario.name(),
        req.params,
        req.seed,
        faults_label(&req)
    );
    let out = match shrink::shrink(&req, max_runs) {
        Ok(o) => o,
        Err(e) => {
            note!("{e}");
            return ExitCode::SUCCESS;
        }
    };
    for st in &out.steps {
        out!(
            "{} {:<48} -> {}",
            if st.kept { "kept " } else { "tried" },
            st.change,
            st.outcome
        );
    }
    out!(
        "shrunk in {} runs, keeping the failure kind {}: {} ({}, faults {})",
        out.runs,
        out.kind,
        out.request.scenario.name(),
        out.request.params,
        faults_label(&out.request)
    );
    out!("{}", out.report);
    out!("token        {}", out.request.token());
    ExitCode::from(1)
}

fn trace_cmd(token: &str, path: &std::path::Path, text: bool) -> ExitCode {
    let req = match registry().from_token(token) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    if let Err(e) = req.validate() {
        return usage(e);
    }
    // Open the output before the run, which may take long: a path that cannot be written is a
    // usage error now, not after it.
    if let Err(e) = std::fs::File::create(path) {
        return usage(format!("--out {}: {e}", path.display()));
    }
    let form = if text {
        trace_file::Form::Text
    } else {
        trace_file::Form::Chrome
    };
    let (calls, report) = match trace_file::write(&req, path, form) {
        Ok(r) => r,
        Err(e) => {
            note!("error: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    note!(
        "wrote {calls} calls to {} ({})",
        path.display(),
        report.outcome()
    );
    if let Some(f) = &report.failure {
        note!("{f}");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_seeds(s: &str) -> Result<RangeInclusive<u64>, ParamError> {
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
    Ok(a..=end)
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise.
struct Progress {
    total: u64,
    done: u64,
    failed: u64,
    tty: bool,
    last_tenth: u64,
    start: Instant,
}

impl Progress {
    fn new(total: u64) -> Progress {
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
        self.failed += u64::from(failed);
        let secs = self.start.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 40;
            let filled = (self.done * width / self.total.max(1)) as usize;
            let bar: String = "#".repeat(filled) + &".".repeat(width as usize - filled);
            let _ = write!(
                err,
                "\r[{bar}] {}/{} seeds, {} failed, {secs:.1}s",
                self.done, self.total, self.failed
            );
            if self.done == self.total {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        } else {
            let tenth = self.done * 10 / self.total.max(1);
            if tenth > self.last_tenth || self.done == self.total {
                self.last_tenth = tenth;
                let _ = writeln!(
                    err,
                    "progress: {}/{} seeds, {} failed, {secs:.1}s",
                    self.done, self.total, self.failed
                );
            }
        }
    }
}

/// One sweep to make.
struct SweepPlan {
    /// The run of every seed but its seed.
    probe: Request,
    range: RangeInclusive<u64>,
    shard: Shard,
    jobs: u64,
    json: bool,
    max_failures: u64,
}

fn sweep(plan: &SweepPlan) -> ExitCode {
    let SweepPlan {
        probe,
        range,
        shard,
        ..
    } = plan;
    let count = shard.count(range);
    let mut bar = Progress::new(count);
    let start = Instant::now();
    let mut summary = Summary {
        format: shard::FORMAT,
        scenario: probe.scenario.name().to_string(),
        params: probe
            .params
            .iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        seeds: Seeds {
            start: *range.start(),
            end: *range.end(),
        },
        shard: *shard,
        check_determinism: probe.check_determinism,
        runs: count,
        passed: 0,
        failed: 0,
        by_oracle: BTreeMap::new(),
        events: 0,
        wall_s: 0.0,
    };
    let mut shown: Vec<FailureLine> = Vec::new();
    // Workers take positions in order from a shared counter and send back (position, events,
    // failure); results are taken in position order (a reorder buffer), so the output does not
    // depend on --jobs.
    let next = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<(u64, u64, Option<FailureLine>)>();
    let mut waiting: BTreeMap<u64, (u64, Option<FailureLine>)> = BTreeMap::new();
    let mut taken = 0u64;
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.min(count).max(1) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let req = Request {
                    seed: shard.nth(range, i),
                    ..probe.clone()
                };
                let r = run::execute(&req);
                // The failing phase's request: its token replays the run that failed.
                let fail = r.failure.as_ref().map(|f| failure_line(&r, f));
                if tx.send((i, r.stats.events, fail)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for (i, events, fail) in rx {
            bar.tick(fail.is_some());
            waiting.insert(i, (events, fail));
            while let Some((events, fail)) = waiting.remove(&taken) {
                taken += 1;
                summary.events = summary.events.saturating_add(events);
                let Some(f) = fail else { continue };
                summary.failed += 1;
                *summary.by_oracle.entry(f.oracle.clone()).or_default() += 1;
                if plan.json {
                    out!("{}", Line::Failure(f).to_json());
                } else if (shown.len() as u64) < plan.max_failures {
                    shown.push(f);
                }
            }
        }
    });
    summary.passed = summary.runs - summary.failed;
    summary.wall_s = start.elapsed().as_secs_f64();
    if plan.json {
        out!("{}", Line::Summary(summary.clone()).to_json());
    } else {
        print_sweep_text(&summary, &shown, "--max-failures N shows more");
    }
    if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn failure_line(r: &Report, f: &Failure) -> FailureLine {
    let req = &r.request;
    let message = match r.phase {
        Phase::Single => f.to_string(),
        phase => format!("in {phase}: {f}"),
    };
    FailureLine {
        scenario: req.scenario.name().to_string(),
        seed: req.seed,
        oracle: f.kind().to_string(),
        token: req.token(),
        message,
    }
}

/// The human-readable sweep report: the headline, failures by oracle, the failure lines shown,
/// and how many were not.
fn print_sweep_text(s: &Summary, shown: &[FailureLine], more_hint: &str) {
    out!("{}", s.headline());
    if s.check_determinism {
        out!("determinism checked for every passing seed (each run twice, compared call by call)");
    }
    if let Some(line) = s.by_oracle_line() {
        out!("{line}");
    }
    for f in shown {
        out!(
            "FAIL seed {} ({}): netpoll-sim replay {}",
            f.seed,
            f.oracle,
            f.token
        );
    }
    let hidden = s.failed - shown.len() as u64;
    if hidden > 0 {
        out!("... and {hidden} more failing seeds ({more_hint}; --json writes every one)");
    }
}

fn merge_cmd(files: &[PathBuf], json: bool, allow_missing: bool) -> ExitCode {
    let mut inputs = Vec::new();
    for f in files {
        let text = if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s)
        } else {
            std::fs::read_to_string(f)
        };
        match text {
            Ok(t) => inputs.push((f.display().to_string(), t)),
            Err(e) => return usage(format!("{}: {e}", f.display())),
        }
    }
    let m = match shard::merge(&inputs, allow_missing) {
        Ok(m) => m,
        Err(e) => return usage(e),
    };
    if json && !m.missing.is_empty() {
        // A summary line stands for whole shards; a partial merge is not one.
        return usage(format!(
            "--json needs every shard, and {} are missing (without --json, --allow-missing \
             reports what is there)",
            m.missing.len()
        ));
    }
    let n = (m.shards.len() + m.missing.len()) as u64;
    if json {
        for f in &m.failures {
            out!("{}", Line::Failure(f.clone()).to_json());
        }
        out!("{}", Line::Summary(m.summary.clone()).to_json());
    } else {
        out!("merged {} of {n} shards", m.shards.len());
        if !m.missing.is_empty() {
            let list: Vec<String> = m.missing.iter().map(|k| format!("{k}/{n}")).collect();
            out!(
                "MISSING shards {}: their seeds were not run and are not counted",
                list.join(", ")
            );
        }
        print_sweep_text(&m.summary, &m.failures, "");
    }
    if !m.missing.is_empty() {
        note!("warning: {} shard(s) missing", m.missing.len());
    }
    if m.summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        // clap's own consistency checks, with the scenario parameters added.
        let _ = REGISTRY.set(Registry::builtin());
        let flags = param_flags();
        let mut cmd = Cli::command();
        for sub in ["run", "sweep"] {
            cmd = cmd.mut_subcommand(sub, |mut c| {
                for (name, _) in &flags {
                    c = c.arg(Arg::new(*name).long(*name));
                }
                c
            });
        }
        cmd.debug_assert();
        let names: std::collections::BTreeSet<&str> = flags.iter().map(|(n, _)| *n).collect();
        assert!(names.contains("window") && names.contains("tcp-window"));
    }
}

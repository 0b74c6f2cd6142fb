//! What a failed [`Check`](super::Check) hands back: the [`Failure`] report, its replay line,
//! and the trace file.

use std::fmt;
use std::panic::Location;
use std::path::{Path, PathBuf};

use netpoll_sim::trace::Record;
use netpoll_sim::Violation;
use netpoll_threads::Policy;

use crate::swarm::{FaultSpec, Phase};
use crate::trace_out::{self, Mark, Schedule};

/// What a traced run on simulated threads adds to its calls for the trace file: the thread
/// that made each call (in call order, one per record), and the run's schedule.
pub(crate) struct ThreadTrace {
    /// Each call's [`Mark`], taken by the trace sink as the call was made.
    pub marks: Vec<Option<Mark>>,
    /// The schedule: the threads' names and the switch points.
    pub schedule: Schedule,
}

/// A seed that failed, with everything needed to understand and replay it. Its `Display` is the
/// report [`Check::run`](super::Check::run) fails the test with.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The failing seed.
    pub seed: u64,
    /// The check's fault spec.
    pub faults: FaultSpec,
    /// Which of the seed's runs failed: under `chaos` or `swarm`, the quiet phase (the run
    /// `none` makes) or the faulted one; the [`replay`](Self::replay) line reruns that run alone.
    pub phase: Phase,
    /// Which oracle fired: `lost-wakeup`, `hang`, `livelock`, `leak`, `invariant` (the kernel's
    /// oracles), `panic` or `error` (the closure panicked or returned `Err`), or
    /// `nondeterminism` (the determinism check).
    pub oracle: &'static str,
    /// The oracle's readable diagnosis (for a lost wakeup: the fd, what it was ready for, what
    /// the loop waited for, and its recent calls).
    pub diagnosis: String,
    /// The kernel's violation, when one of its oracles fired (to match on: the fd of a lost
    /// wakeup, the descriptors of a leak).
    pub violation: Option<Violation>,
    /// The shell line that reruns exactly this case.
    pub replay: String,
    /// The Chrome/Perfetto trace of the failing run (open it in `ui.perfetto.dev`), when it
    /// could be written: one track per descriptor, or for a threaded check one per simulated
    /// thread.
    pub trace: Result<PathBuf, String>,
    /// When faults played a part: the smallest fault spec found that fails the same way, and
    /// its replay line.
    pub shrunk: Option<(FaultSpec, String)>,
    /// Seeds that passed before this one.
    pub passed: u64,
    /// For a threaded check ([`Check::run_threads`](super::Check::run_threads)): the schedule
    /// policy the failing run used (its replay line sets it with `NETPOLL_SCHEDULE`).
    pub schedule: Option<Policy>,
    /// For a threaded check: the hash of the failing run's schedule (which thread made which
    /// call, in order), equal for every rerun of the replay line.
    pub schedule_hash: Option<u64>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "netpoll check failed: seed {} (faults {}), after {} passing seed{}",
            self.seed,
            self.faults,
            self.passed,
            if self.passed == 1 { "" } else { "s" }
        )?;
        if self.phase != Phase::Single {
            writeln!(
                f,
                "phase:  {} failed (each seed runs the quiet phase, then the faulted one)",
                self.phase
            )?;
        }
        if let Some(p) = self.schedule {
            write!(f, "threads: simulated, schedule {p}")?;
            match self.schedule_hash {
                Some(h) => writeln!(f, ", schedule hash {h:#018x}")?,
                None => writeln!(f)?,
            }
        }
        writeln!(f, "oracle: {}", self.oracle)?;
        for line in self.diagnosis.trim_end().lines() {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "replay: {}", self.replay)?;
        match &self.trace {
            Ok(p) => writeln!(f, "trace:  {} (open in ui.perfetto.dev)", p.display())?,
            Err(e) => writeln!(f, "trace:  not written: {e}")?,
        }
        match &self.shrunk {
            None => {}
            Some((FaultSpec::None, line)) => {
                writeln!(f, "shrunk: it fails the same way with no faults at all")?;
                writeln!(f, "replay: {line}")?;
            }
            Some((spec, line)) => {
                writeln!(f, "shrunk fault plan: {spec}")?;
                writeln!(f, "replay: {line}")?;
            }
        }
        Ok(())
    }
}

/// How to name the failing test on a `cargo test` line.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The package (`CARGO_PKG_NAME` at run time).
    pub package: Option<String>,
    /// `--test check`, `--lib`, `--example x`, `--bench x`, `--doc`.
    pub selector: Option<String>,
    /// The test's path as libtest names it (`tests::found`).
    pub test: Option<String>,
}

impl Target {
    /// The target of the test that called the check from `caller`, named `test` (the macro
    /// knows it; otherwise libtest's thread name).
    pub(crate) fn detect(caller: &Location<'_>, test: Option<&str>) -> Target {
        let thread = std::thread::current();
        let test = test
            .map(str::to_string)
            .or_else(|| thread.name().filter(|n| *n != "main").map(str::to_string));
        let exe = std::env::current_exe().ok();
        Target {
            package: std::env::var("CARGO_PKG_NAME").ok(),
            selector: selector(Path::new(caller.file()), exe.as_deref()),
            test,
        }
    }
}

/// `--test NAME` and the like, from the caller's source file and the test executable.
fn selector(file: &Path, exe: Option<&Path>) -> Option<String> {
    let parts: Vec<&str> = file.iter().filter_map(|c| c.to_str()).collect();
    // The executable's name without cargo's `-<hash>`: the target's real name.
    let exe_name = exe
        .and_then(|e| e.file_stem())
        .and_then(|s| s.to_str())
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash))
                if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                name.to_string()
            }
            _ => s.to_string(),
        });
    let dir_pos = |d: &str| parts.iter().rposition(|p| *p == d);
    let stem = |i: usize| {
        // tests/foo.rs -> foo; tests/foo/main.rs -> foo
        if parts.len() > i + 2 {
            Some(parts[i + 1].to_string())
        } else {
            parts.last()?.strip_suffix(".rs").map(str::to_string)
        }
    };
    if let Some(i) = dir_pos("tests") {
        return Some(format!("--test {}", exe_name.or_else(|| stem(i))?));
    }
    if let Some(i) = dir_pos("examples") {
        return Some(format!("--example {}", stem(i)?));
    }
    if let Some(i) = dir_pos("benches") {
        return Some(format!("--bench {}", stem(i)?));
    }
    if dir_pos("src").is_some() {
        if exe_name
            .as_deref()
            .is_some_and(|n| n.starts_with("rust_out"))
        {
            return Some("--doc".into());
        }
        return Some("--lib".into());
    }
    None
}

/// Quotes `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:=/+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The line that reruns `seed` with `faults` (and the determinism check when `determinism`; the
/// schedule policy of a threaded check when `schedule`).
pub(crate) fn replay_line(
    t: &Target,
    seed: u64,
    faults: &FaultSpec,
    determinism: bool,
    schedule: Option<Policy>,
) -> String {
    let mut line = format!(
        "NETPOLL_SEED={seed} NETPOLL_FAULTS={}",
        shell_quote(&faults.to_string())
    );
    if let Some(p) = schedule {
        line.push_str(&format!(" NETPOLL_SCHEDULE={p}"));
    }
    if determinism {
        line.push_str(" NETPOLL_CHECK_DETERMINISM=1");
    }
    line.push_str(" cargo test");
    if let Some(p) = &t.package {
        line.push_str(&format!(" -p {p}"));
    }
    if let Some(s) = &t.selector {
        line.push_str(&format!(" {s}"));
    }
    match &t.test {
        Some(name) => line.push_str(&format!(" -- --exact {name}")),
        None => line.push_str(" (add the test's name: its thread had none)"),
    }
    line
}

/// The target directory: `CARGO_TARGET_DIR`, else the nearest ancestor of the test executable
/// that cargo marked with `CACHEDIR.TAG`, else the nearest `target/` (so marked) above the
/// working directory (doc tests run from a temporary executable), else the system's temporary
/// directory.
pub(crate) fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let marked = |d: &Path| d.join("CACHEDIR.TAG").is_file();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.ancestors().find(|a| marked(a)) {
            return d.to_path_buf();
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd
            .ancestors()
            .map(|a| a.join("target"))
            .find(|t| marked(t))
        {
            return d;
        }
    }
    std::env::temp_dir()
}

/// Writes `records` as Chrome trace JSON to `<target>/netpoll-check/<name>-seed<seed>.json`:
/// by descriptor ([`trace_out::chrome`]), or, for a run on simulated threads (`threads`), one
/// track per thread ([`trace_out::write_chrome_threads`], as `netpoll-sim trace` writes it).
pub(crate) fn write_trace(
    records: &[Record],
    threads: Option<&ThreadTrace>,
    t: &Target,
    seed: u64,
    title: &str,
) -> Result<PathBuf, String> {
    let dir = target_dir().join("netpoll-check");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name: String = t
        .test
        .as_deref()
        .unwrap_or("check")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{name}-seed{seed}.json"));
    let json = match threads {
        None => trace_out::chrome(records, &[], title)
            .to_string()
            .into_bytes(),
        Some(th) => {
            let calls = records.iter().copied().zip(th.marks.iter().copied());
            let title = format!("{title}, by simulated thread; time axis: schedule order");
            let mut out = Vec::new();
            trace_out::write_chrome_threads(calls, &[], &th.schedule, &title, &mut out)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            out
        }
    };
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let exe = Path::new("/w/target/debug/deps/check-0123456789abcdef");
        assert_eq!(
            selector(Path::new("scenarios/tests/check.rs"), Some(exe)).as_deref(),
            Some("--test check")
        );
        assert_eq!(
            selector(Path::new("tests/conformance/main.rs"), None).as_deref(),
            Some("--test conformance")
        );
        assert_eq!(
            selector(Path::new("scenarios/src/check/mod.rs"), Some(exe)).as_deref(),
            Some("--lib")
        );
        assert_eq!(
            selector(Path::new("examples/echo.rs"), None).as_deref(),
            Some("--example echo")
        );
    }

    #[test]
    fn replay_lines_quote_plans() {
        let t = Target {
            package: Some("p".into()),
            selector: Some("--test t".into()),
            test: Some("a::b".into()),
        };
        assert_eq!(
            replay_line(&t, 7, &FaultSpec::Swarm, false, None),
            "NETPOLL_SEED=7 NETPOLL_FAULTS=swarm cargo test -p p --test t -- --exact a::b"
        );
        let plan = FaultSpec::parse("short_read=0.5 eintr=0.25").unwrap();
        assert_eq!(
            replay_line(&t, 7, &plan, true, None),
            "NETPOLL_SEED=7 NETPOLL_FAULTS='short_read=0.5 eintr=0.25' NETPOLL_CHECK_DETERMINISM=1 cargo test -p p --test t -- --exact a::b"
        );
        let pct = Policy::Pct {
            depth: 3,
            steps: 200,
        };
        assert_eq!(
            replay_line(&t, 9, &FaultSpec::None, false, Some(pct)),
            "NETPOLL_SEED=9 NETPOLL_FAULTS=none NETPOLL_SCHEDULE=pct:3:200 cargo test -p p --test t -- --exact a::b"
        );
    }
}

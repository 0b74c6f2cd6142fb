//! What a run leaves behind: the schedule (one track per thread), and on failure a report that
//! names every thread, what it was doing, and how to replay the run.

use std::fmt;
use std::fmt::Write as _;

use crate::policy::Policy;
use crate::sched::{Call, Tid};

/// One entry of the schedule: at switch point `step`, thread `tid` made `call` (or, if
/// `blocked`, found that `call` would block and gave the token away).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The switch point's number (the PCT clock); several entries may share one when a thread
    /// blocks.
    pub step: u64,
    /// The thread.
    pub tid: Tid,
    /// Its call.
    pub call: Call,
    /// Whether the thread blocked in the call instead of making it.
    pub blocked: bool,
}

/// Renders `schedule` as a table with one column (track) per thread, one row per entry.
fn tracks(names: &[String], schedule: &[Step], out: &mut String) {
    const W: usize = 26;
    let _ = write!(out, "{:>7} ", "step");
    for (i, n) in names.iter().enumerate() {
        let head = format!("t{i} {n}");
        let _ = write!(out, "| {head:<W$.W$}");
    }
    out.push('\n');
    for s in schedule {
        let _ = write!(out, "{:>7} ", s.step);
        for i in 0..names.len() {
            if i == s.tid.0 as usize {
                let cell = if s.blocked {
                    format!("{} ..blocks", s.call)
                } else {
                    s.call.to_string()
                };
                let _ = write!(out, "| {cell:<W$.W$}");
            } else {
                let _ = write!(out, "| {:<W$}", "");
            }
        }
        out.push('\n');
    }
}

/// FNV-1a over the schedule's (thread, call) sequence: equal for equal schedules.
fn hash(schedule: &[Step]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for s in schedule {
        eat(u64::from(s.tid.0));
        eat(u64::from(s.blocked));
        for b in s.call.op.bytes() {
            eat(u64::from(b));
        }
        eat(s.call.fd.map_or(u64::MAX, |f| f as u64));
        eat(s.call.arg.map_or(u64::MAX, |a| a as u64));
    }
    h
}

/// A finished run: its schedule and where the kernel ended.
///
/// # Examples
///
/// ```
/// use netpoll::Poller;
/// use netpoll_sim::Sim;
/// use netpoll_threads::Runner;
///
/// let out = Runner::new(1).run(Sim::new(1), |k| {
///     let t = netpoll_threads::spawn("writer", {
///         let k = k.clone();
///         move || k.pipe2(0).map(|_| ())
///     });
///     t.join().unwrap();
/// }).unwrap();
/// assert!(out.report.steps() >= 2);
/// println!("{}", out.report.tracks());
/// ```
#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) seed: u64,
    pub(crate) policy: Policy,
    pub(crate) names: Vec<String>,
    pub(crate) schedule: Vec<Step>,
    pub(crate) steps: u64,
    pub(crate) now_ns: u64,
}

impl Report {
    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The run's policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// How many switch points the run made (a good `steps` for [`Policy::Pct`]).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Virtual time at the end of the run, in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Each thread's name, by id.
    pub fn thread_names(&self) -> &[String] {
        &self.names
    }

    /// The schedule, in the order things happened.
    pub fn schedule(&self) -> &[Step] {
        &self.schedule
    }

    /// A hash of the schedule: two runs interleaved their calls the same way iff (barring
    /// collisions) their hashes are equal. For counting distinct schedules over seeds.
    pub fn schedule_hash(&self) -> u64 {
        hash(&self.schedule)
    }

    /// The schedule as a table, one column (track) per thread.
    pub fn tracks(&self) -> String {
        let mut s = String::new();
        tracks(&self.names, &self.schedule, &mut s);
        s
    }
}

/// Why a run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Every thread blocked, nothing in flight, no deadline: the program would hang.
    Deadlock,
    /// A simulated thread panicked (an assertion in the test, usually).
    Panic,
    /// Too many switch points in a row without any change to the kernel (see
    /// [`Runner::max_idle_steps`](crate::Runner::max_idle_steps)).
    Livelock,
    /// A thread held the token for longer than the watchdog allows (wall clock) without
    /// reaching a switch point: it spins without making a call, or blocks on something the
    /// scheduler does not see (a `std` lock, a sleep, a channel).
    Spin,
    /// A thread that is not a simulated thread of this run called the scheduled kernel.
    Outside,
}

/// One thread's state when the run failed.
#[derive(Debug, Clone)]
pub struct ThreadReport {
    /// Its id.
    pub tid: Tid,
    /// Its name.
    pub name: String,
    /// `running`, `runnable`, `blocked in epoll_wait(fd 3, -1)`, `parked`, `finished`, ...
    pub state: String,
    /// The last call it made or tried.
    pub last_call: Option<Call>,
}

/// A failed run: what went wrong, every thread's state, the schedule up to the failure, and the
/// line that replays it. Its [`Display`](fmt::Display) is the whole report.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong.
    pub kind: FailureKind,
    /// The details, in a sentence.
    pub message: String,
    /// The run's seed.
    pub seed: u64,
    /// The run's policy.
    pub policy: Policy,
    /// Every thread, by id.
    pub threads: Vec<ThreadReport>,
    /// The schedule up to the failure.
    pub schedule: Vec<Step>,
}

impl Failure {
    /// The code that replays this run.
    pub fn replay_line(&self) -> String {
        format!(
            "replay: netpoll_threads::Runner::new({}).policy(\"{}\".parse().unwrap())",
            self.seed, self.policy
        )
    }

    /// The schedule up to the failure, one column per thread.
    pub fn tracks(&self) -> String {
        let names: Vec<String> = self.threads.iter().map(|t| t.name.clone()).collect();
        let mut s = String::new();
        tracks(&names, &self.schedule, &mut s);
        s
    }

    /// A hash of the schedule up to the failure (see [`Report::schedule_hash`]).
    pub fn schedule_hash(&self) -> u64 {
        hash(&self.schedule)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulated threads: {:?} (seed {}, policy {}): {}",
            self.kind, self.seed, self.policy, self.message
        )?;
        for t in &self.threads {
            write!(f, "  {} `{}`: {}", t.tid, t.name, t.state)?;
            match t.last_call {
                Some(c) => writeln!(f, "; last call {c}")?,
                None => writeln!(f, "; no call yet")?,
            }
        }
        const TAIL: usize = 40;
        if self.schedule.len() > TAIL {
            writeln!(
                f,
                "last {TAIL} of {} schedule entries:",
                self.schedule.len()
            )?;
        } else {
            writeln!(f, "schedule:")?;
        }
        let names: Vec<String> = self.threads.iter().map(|t| t.name.clone()).collect();
        let mut s = String::new();
        tracks(
            &names,
            &self.schedule[self.schedule.len().saturating_sub(TAIL)..],
            &mut s,
        );
        f.write_str(&s)?;
        write!(f, "{}", self.replay_line())
    }
}

impl std::error::Error for Failure {}

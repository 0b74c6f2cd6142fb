//! What a run can be found guilty of, and how each verdict is reported.
//!
//! | oracle | checked | failure |
//! |---|---|---|
//! | lost wakeup | before every sleep at quiescence (nothing in flight, no timer due; amortised over the work done) and at the end | [`Failure::LostWakeup`]: the fd, its token, what it is ready for, what the loop waits for, its recent history |
//! | hang | whenever the loop would wait for ever, or exceeds its virtual-time or step budget | [`Failure::Hang`]: what was left undone |
//! | data integrity | every byte a client reads, against the connection's deterministic stream; totals at the end | [`Failure::Integrity`] |
//! | deadline accuracy | every deadline that fires: never early, at most one tick late | [`Failure::Deadline`] |
//! | determinism | on request: two runs of one seed, compared call by call | [`Failure::Divergence`] |
//! | leaks and totals | at the end: no open connection, no descriptor left, every count as planned | [`Failure::Invariant`] |
//!
//! In `rt-echo` ([`crate::rt_echo`]) the loop is the netpoller's, so the lost-wakeup check is
//! made at its level: before the runtime blocks at quiescence, a task parked on a descriptor that
//! is ready for its side with no event queued. The report is the same [`Failure::LostWakeup`];
//! its `owner` names the descriptor's owner, the parked task and the side, and `wants` is what
//! wakes that side.
//!
//! A syscall failing with an errno no peer behaviour explains is [`Failure::Io`].

use std::fmt;

use netpoll::{Events, Fd};
use netpoll_sim::trace::Record;
use netpoll_sim::{Sim, Stranded, Violation};

/// A failed oracle.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The loop was about to sleep while a registered fd was ready for what it waits for.
    LostWakeup {
        /// The descriptor.
        fd: Fd,
        /// Its registration's token.
        data: u64,
        /// Who owns it, in words (`"server conn slot 3"`, `"client 17"`).
        owner: String,
        /// The registration's interest and mode bits.
        interest: Events,
        /// What the file is ready for (within the interest).
        ready: Events,
        /// What the loop is waiting for on it.
        wants: Events,
        /// A oneshot registration that fired and was never re-armed.
        disarmed: bool,
        /// Virtual time.
        at_ns: u64,
        /// The fd's recent calls, oldest first.
        history: Vec<Record>,
    },
    /// The goal is not met and nothing can make progress.
    Hang {
        /// What is left undone, and why the run stopped.
        detail: String,
        /// Virtual time.
        at_ns: u64,
    },
    /// A byte was lost, duplicated or reordered.
    Integrity {
        /// Connection index.
        conn: usize,
        /// Offset in the connection's response stream.
        offset: u64,
        /// What was expected and what came, in words.
        detail: String,
    },
    /// A deadline fired early or more than one tick late.
    Deadline {
        /// What the deadline was for.
        what: String,
        /// When it was due.
        deadline_ns: u64,
        /// When it fired.
        fired_ns: u64,
        /// Allowed lateness.
        tolerance_ns: u64,
    },
    /// Two runs of one seed differ.
    Divergence {
        /// Index of the first differing call.
        step: u64,
        /// Virtual time of that call (first run).
        at_ns: u64,
        /// The call in each run (`None`: that run had ended).
        first: Option<Record>,
        /// The call in the second run.
        second: Option<Record>,
    },
    /// An end-of-run invariant does not hold (a leak, a count off).
    Invariant(String),
    /// A syscall failed with an errno no peer behaviour explains.
    Io {
        /// What the loop was doing.
        context: String,
        /// The error.
        error: String,
    },
}

impl Failure {
    /// A short name for the kind of failure (the `outcome` of a report).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::LostWakeup { .. } => "lost-wakeup",
            Failure::Hang { .. } => "hang",
            Failure::Integrity { .. } => "integrity",
            Failure::Deadline { .. } => "deadline",
            Failure::Divergence { .. } => "nondeterminism",
            Failure::Invariant(_) => "invariant",
            Failure::Io { .. } => "io-error",
        }
    }
}

/// One trace record as a line of text: `at_ns call(fd, arg) -> result` (the kernel's
/// [`Record`] `Display`).
pub fn render_record(r: &Record) -> String {
    r.to_string()
}

pub use crate::trace_out::errno_name;

/// The lost-wakeup oracle as the harnesses run it, at a moment they choose (their loop is about
/// to sleep with nothing in flight): the simulated kernel's scan of `epfd`
/// ([`Sim::check_lost_wakeups`]), with the loop's own judgement of what it waits for on each
/// stranded registration (`wants`, [`Sim::set_wants`]), reported as a [`Failure::LostWakeup`]
/// whose `owner` is `owner(data)`. There is no other scan: the kernel finds the stranded
/// registrations, judges them by `wants`, and records the violation.
///
/// # Errors
/// The lost wakeup; an [`Failure::Io`] if `epfd` is not an epoll instance.
pub fn lost_wakeup(
    sim: &Sim,
    epfd: Fd,
    wants: impl Fn(&Stranded) -> Events,
    owner: impl Fn(&Stranded) -> String,
) -> Result<(), Failure> {
    // The loop's judgement of what is stranded now: `set_wants` takes a closure that outlives
    // this call, so it gets the answers, not the loop's state.
    let stranded = sim.stranded(epfd).map_err(|e| io_fail("stranded()", e))?;
    let table: Vec<(Fd, u64, Events)> = stranded
        .iter()
        .map(|s| (s.fd, s.data, wants(s)))
        .filter(|j| !j.2.is_empty())
        .collect();
    if table.is_empty() {
        return Ok(());
    }
    sim.set_wants(move |s| {
        table
            .iter()
            .find(|j| j.0 == s.fd && j.1 == s.data)
            .map_or(Events::NONE, |j| j.2)
    });
    match sim.check_lost_wakeups(epfd) {
        Ok(()) => Ok(()),
        Err(v) => Err(failure_of(v, |fd, data| {
            let s = stranded
                .iter()
                .find(|s| s.fd == fd && s.data == data)
                .expect("the kernel reports a registration it listed as stranded");
            owner(s)
        })),
    }
}

/// The kernel's [`Violation`] as the harness's [`Failure`]: a lost wakeup keeps every field
/// (its owner named by `owner(fd, data)`), a hang or livelock is a [`Failure::Hang`], the rest
/// an [`Failure::Invariant`].
fn failure_of(v: Violation, owner: impl FnOnce(Fd, u64) -> String) -> Failure {
    match v {
        Violation::Hang { at_ns, .. } | Violation::Livelock { at_ns, .. } => Failure::Hang {
            detail: v.to_string(),
            at_ns,
        },
        Violation::LostWakeup {
            fd,
            data,
            ready,
            wanted,
            interest,
            disarmed,
            at_ns,
            history,
            ..
        } => Failure::LostWakeup {
            fd,
            data,
            owner: owner(fd, data),
            interest,
            ready,
            wants: wanted,
            disarmed,
            at_ns,
            history,
        },
        other => Failure::Invariant(other.to_string()),
    }
}

/// The run's verdict with the kernel's first [`Violation`] taken into account: once an oracle
/// of the kernel fired, every later call fails, so an I/O error the loop reports after it is
/// its consequence, and the kernel's diagnosis is the verdict. A verdict the loop reached by
/// itself (a hang it diagnosed, a byte out of order, its own lost-wakeup scan) stands.
///
/// # Errors
/// The verdict, or the kernel's violation in its place.
pub fn with_kernel_verdict(sim: &Sim, verdict: Result<(), Failure>) -> Result<(), Failure> {
    match verdict {
        Ok(()) | Err(Failure::Io { .. }) => {}
        Err(f) => return Err(f),
    }
    let Some(v) = sim.violation() else {
        return verdict;
    };
    Err(failure_of(v, |_, data| {
        format!("registration data {data:#x}")
    }))
}

/// A syscall's unexpected error as a [`Failure::Io`], with what the loop was doing.
pub fn io_fail(context: impl Into<String>, e: std::io::Error) -> Failure {
    Failure::Io {
        context: context.into(),
        error: e.to_string(),
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::LostWakeup {
                fd,
                data,
                owner,
                interest,
                ready,
                wants,
                disarmed,
                at_ns,
                history,
            } => {
                writeln!(
                    f,
                    "lost wakeup at {at_ns} ns: fd {fd} ({owner}, data {data:#x}) is ready for \
                     {ready:?} and the loop waits for {wants:?}, but no event is queued \
                     (interest {interest:?}{})",
                    if *disarmed { ", oneshot disarmed" } else { "" }
                )?;
                if history.is_empty() {
                    writeln!(
                        f,
                        "no call on fd {fd} among the kernel's last {} (the trace command shows all)",
                        netpoll_sim::trace::HISTORY_LEN
                    )?;
                    return Ok(());
                }
                writeln!(f, "recent calls on fd {fd} (oldest first):")?;
                let skip = history.len().saturating_sub(16);
                for r in &history[skip..] {
                    writeln!(f, "  {}", render_record(r))?;
                }
                Ok(())
            }
            Failure::Hang { detail, at_ns } => write!(f, "hang at {at_ns} ns: {detail}"),
            Failure::Integrity {
                conn,
                offset,
                detail,
            } => {
                write!(
                    f,
                    "data integrity: connection {conn}, response byte {offset}: {detail}"
                )
            }
            Failure::Deadline {
                what,
                deadline_ns,
                fired_ns,
                tolerance_ns,
            } => write!(
                f,
                "deadline accuracy: {what} was due at {deadline_ns} ns and fired at {fired_ns} ns \
                 ({} ns off; allowed 0..={tolerance_ns} ns late)",
                *fired_ns as i128 - *deadline_ns as i128
            ),
            Failure::Divergence {
                step,
                at_ns,
                first,
                second,
            } => {
                let show = |r: &Option<Record>| match r {
                    Some(r) => render_record(r),
                    None => "(run ended)".into(),
                };
                write!(
                    f,
                    "nondeterminism: the two runs differ at call {step} (virtual time {at_ns} ns):\n  \
                     first:  {}\n  second: {}",
                    show(first),
                    show(second)
                )
            }
            Failure::Invariant(s) => write!(f, "invariant: {s}"),
            Failure::Io { context, error } => {
                write!(f, "unexpected error while {context}: {error}")
            }
        }
    }
}

/// How late a loop's deadline may fire when handler code costs virtual time
/// ([`netpoll_sim::CostModel`]): the deadline oracles of the echo engine and the zoo add
/// [`allowance`](Self::allowance) to their tick of rounding. A loop sleeps past a deadline by at
/// most the rounding of its millisecond timeout; every other instant after the deadline is the
/// loop's own work, which the cost model charges. Without a cost model the allowance is 0, so
/// the oracles stay as sharp as before.
#[derive(Debug, Default)]
pub struct Lateness {
    /// `(turn start, cost charged by then)`, one entry per new total.
    marks: Vec<(u64, u64)>,
}

impl Lateness {
    /// Notes, at the start of a loop turn (before its timeout is computed), the cost `sim`
    /// charged so far.
    pub fn mark_turn(&mut self, sim: &Sim) {
        let cost = sim.fault_counts().cost_ns;
        if self.marks.last().is_none_or(|&(_, c)| c != cost) {
            self.marks.push((sim.now_ns(), cost));
        }
    }

    /// The handler cost charged between the last turn that began by `deadline_ns` and the
    /// first that began after `fired_ns` (or now, on `sim`): what a deadline due at
    /// `deadline_ns` and fired at `fired_ns` may be late beyond the rounding.
    pub fn allowance(&self, sim: &Sim, deadline_ns: u64, fired_ns: u64) -> u64 {
        let before = self.marks.partition_point(|&(at, _)| at <= deadline_ns);
        let from = before.checked_sub(1).map_or(0, |j| self.marks[j].1);
        let after = self.marks.partition_point(|&(at, _)| at <= fired_ns);
        let to = self
            .marks
            .get(after)
            .map_or_else(|| sim.fault_counts().cost_ns, |&(_, c)| c);
        to.saturating_sub(from)
    }
}

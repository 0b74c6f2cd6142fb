//! The threaded mode of a [`Check`]: the closure runs as simulated threads
//! ([`netpoll_threads`]) sharing the seed's kernel, and the seed also picks the interleaving.
//!
//! Everything else is the one-thread check's: seeds, both phases of `chaos` and `swarm`, the
//! determinism check (which compares the schedules too), the replay line (which adds
//! `NETPOLL_SCHEDULE`), the trace file (one track per thread: the traced rerun's sink marks
//! each call with its thread) and the shrunk fault plan. This file only runs one seed on the
//! scheduler and turns what it reports into a verdict:
//!
//! | the scheduler reports | the check's oracle |
//! |---|---|
//! | every thread blocked, nothing in flight, no deadline | `lost-wakeup` if the kernel's scan finds a registration of an instance a thread waits in that is ready for what the loop wants with nothing queued; else `deadlock`; either way with each thread's blocking call |
//! | a thread panicked | `panic` |
//! | switch points without progress ([`netpoll_threads::Runner::max_idle_steps`]) | `livelock` |
//! | a thread held the token without a switch point (the wall-clock watchdog) | `spin` |
//! | a call on the kernel from a thread the run did not start | `misuse` |
//!
//! A run that ends is judged as on one thread ([`judge::judge`]): the kernel's violations (its
//! livelock budget, an invariant), then the closure's `Err`, then the invariants at the end and
//! the leak check.

use std::io;
use std::panic::Location;
use std::sync::{Arc, Mutex, TryLockError};

use netpoll::rt::MultiRuntime;
use netpoll_sim::trace::Record;
use netpoll_sim::Sim;
use netpoll_threads::{
    Failure as SchedFailure, FailureKind, Outcome, Runner, SimThreads, ThreadedSim,
};

use super::env::Settings;
use super::judge::{self, Ended, Finding};
use super::report::ThreadTrace;
use super::{Body, Check, CheckError, Faults, Passed, Run};
use crate::trace_out::{Mark, Schedule};

/// The closure of a threaded check, shared by every seed's run.
pub type ThreadedBody = Arc<dyn Fn(ThreadedSim) -> io::Result<()> + Send + Sync>;

/// How a threaded check starts one run: [`Runner::run`] by default; `netpoll-interpose` passes
/// its `run_threads`, which hosts unmodified code (std threads, tokio's workers) on the run.
/// The closure must run on a simulated thread of the run, with that run's kernel.
pub type Launch = Arc<
    dyn Fn(
            Runner,
            Sim,
            Box<dyn FnOnce(ThreadedSim) -> io::Result<()> + Send>,
        ) -> Result<Outcome<io::Result<()>>, SchedFailure>
        + Send
        + Sync,
>;

impl Check {
    /// Runs the check with `f` as simulated threads: for each seed, `f` is the main thread
    /// (`t0`) on that seed's kernel, shared by the threads it starts with
    /// [`netpoll_threads::spawn`] (or a [`multi_runtime`]'s workers), one running at a time,
    /// the seed choosing who runs at every call on the kernel, lock, park and join
    /// ([`Check::schedule`]: uniform or PCT). A failure panics with the report, as
    /// [`Check::run`] does; it names the seed, the oracle (a deadlock lists each thread's
    /// blocking call and the last switch points, one column per thread), and a replay line
    /// that reruns that very interleaving.
    ///
    /// A seed's schedule is the same whatever else the process runs: checks may run at once
    /// (the tests of a suite) with no lock of their own. Each run is admitted by the threads
    /// runtime's process-wide gate ([`Runner::run`], "One run at a time"): runs of this check
    /// overlap each other (their threads block only in the scheduler, on the run's own objects)
    /// but never a run that hosts unmodified code (`netpoll-interpose`'s threaded checks), which
    /// is admitted alone. Do not start a check from a simulated thread: that panics.
    ///
    /// ```
    /// use netpoll::sys::*;
    /// use netpoll::{EpollEvent, Events, Poller};
    /// use netpoll_scenarios::check::Check;
    ///
    /// // A thread waits in epoll_wait while another writes: every interleaving must deliver.
    /// Check::new().seeds(0..50).run_threads(|k| {
    ///     let [a, b] = k.socketpair(SOCK_NONBLOCK)?;
    ///     let ep = k.epoll_create1(0)?;
    ///     k.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN, 1)))?;
    ///     let writer = netpoll_threads::spawn("writer", {
    ///         let k = k.clone();
    ///         move || k.write(a, b"x").map(|_| ())
    ///     });
    ///     let mut evs = [EpollEvent::EMPTY; 4];
    ///     assert_eq!(k.epoll_wait(ep, &mut evs, -1)?, 1);
    ///     writer.join()?;
    ///     for fd in [a, b, ep] {
    ///         k.close(fd)?;
    ///     }
    ///     Ok(())
    /// });
    /// ```
    ///
    /// # Panics
    /// When a seed fails or the input is bad: the message is the report.
    #[track_caller]
    pub fn run_threads(self, f: impl Fn(ThreadedSim) -> io::Result<()> + Send + Sync + 'static) {
        if let Err(e) = self.try_run_threads(f) {
            panic!("{e}");
        }
    }

    /// As [`run_threads`](Self::run_threads), returning the outcome ([`Passed::schedules`]
    /// has each run's schedule hash).
    ///
    /// # Errors
    /// As [`Check::try_run`].
    #[track_caller]
    pub fn try_run_threads(
        self,
        f: impl Fn(ThreadedSim) -> io::Result<()> + Send + Sync + 'static,
    ) -> Result<Passed, CheckError> {
        let caller = Location::caller();
        let launch: Launch = Arc::new(|runner: Runner, sim, body| runner.run(sim, body));
        self.check_body(
            &mut Threaded {
                body: Arc::new(f),
                launch,
            },
            caller,
        )
    }

    /// A threaded check whose runs `launch` starts (`netpoll-interpose`'s threaded checks).
    #[doc(hidden)]
    pub fn __try_run_threads_with(
        self,
        launch: Launch,
        body: ThreadedBody,
        caller: &'static Location<'static>,
    ) -> Result<Passed, CheckError> {
        self.check_body(&mut Threaded { body, launch }, caller)
    }
}

/// A [`MultiRuntime`] on a threaded check's kernel, its `workers` started, parked and woken as
/// simulated threads ([`SimThreads`]), so that the seed interleaves them at every kernel call
/// and at each of the runtime's synchronisation points.
///
/// ```
/// use netpoll::rt::{self, UnixStream};
/// use netpoll_scenarios::check::{self, Check};
/// use netpoll_threads::ThreadedSim;
///
/// Check::new().seeds(0..20).run_threads(|k| {
///     let rt = check::multi_runtime(&k, 2)?;
///     rt.block_on(async {
///         let (a, b) = UnixStream::<ThreadedSim>::pair()?;
///         let reader = rt::spawn(async move {
///             let mut buf = [0u8; 8];
///             b.read(&mut buf).await
///         });
///         a.write_all(b"hi").await?;
///         assert_eq!(reader.await??, 2);
///         std::io::Result::Ok(())
///     })?
/// });
/// ```
///
/// # Errors
/// Creating the runtime's epoll instance or wake eventfd failed.
pub fn multi_runtime(k: &ThreadedSim, workers: usize) -> io::Result<MultiRuntime<ThreadedSim>> {
    MultiRuntime::with_threads(k.clone(), workers, Arc::new(SimThreads))
}

/// A traced run's calls, each with the mark of the thread that made it.
type Calls = Vec<(Record, Option<Mark>)>;

/// The closure of a threaded check and how each run starts.
struct Threaded {
    body: ThreadedBody,
    launch: Launch,
}

impl Body for Threaded {
    fn run_seed(
        &mut self,
        check: &Check,
        s: &Settings,
        seed: u64,
        faults: &Faults,
        trace: bool,
    ) -> Run {
        // Traced, each call goes with the mark of the thread that made it, taken by a sink
        // (attached for that rerun only: an untraced run has neither sink nor full trace).
        let sim = check.kernel(seed, faults, false);
        let calls = trace.then(|| {
            let calls: Arc<Mutex<Calls>> = Arc::default();
            let sink = Arc::clone(&calls);
            sim.set_trace_sink(Some(Box::new(move |r: &Record| {
                let mark = Mark::here();
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((*r, mark));
            })));
            calls
        });
        // The kernel, kept for the verdict when the run fails (the scheduler keeps it then).
        let slot: Arc<Mutex<Option<ThreadedSim>>> = Arc::default();
        let keep = Arc::clone(&slot);
        let body = Arc::clone(&self.body);
        let runner = Runner::new(seed).policy(s.schedule);
        let r = (self.launch)(
            runner,
            sim,
            Box::new(move |k: ThreadedSim| {
                *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(k.clone());
                body(k)
            }),
        );
        let kernel = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (records, threads) = match calls {
            None => (Vec::new(), None),
            Some(calls) => {
                let schedule = match &r {
                    Ok(o) => Schedule::from(&o.report),
                    Err(f) => Schedule::from(f),
                };
                // A thread that spins may still be in a call, holding the sink's lock: then
                // the trace has no calls.
                let taken = match calls.try_lock() {
                    Ok(mut c) => std::mem::take(&mut *c),
                    Err(TryLockError::Poisoned(p)) => std::mem::take(&mut *p.into_inner()),
                    Err(TryLockError::WouldBlock) => Vec::new(),
                };
                let (records, marks) = taken.into_iter().unzip();
                (records, Some(ThreadTrace { marks, schedule }))
            }
        };
        let (kernel, verdict, schedule) = match r {
            Ok(o) => {
                let h = o.report.schedule_hash();
                (Some(o.kernel), Ok(o.value), h)
            }
            Err(f) => {
                let h = f.schedule_hash();
                // A spinning thread may hold the kernel for ever: do not touch it then.
                let k = kernel.filter(|_| f.kind != FailureKind::Spin);
                (k, Err(f), h)
            }
        };
        let Some(k) = kernel else {
            let f = verdict.err();
            return Run {
                finding: Some(f.as_ref().map_or_else(
                    || Finding {
                        kind: "panic",
                        diagnosis: "the run ended before its main thread started".into(),
                        violation: None,
                    },
                    |f| scheduler_finding(f, None, false),
                )),
                fingerprint: (0, 0),
                schedule: Some(schedule),
                records,
                threads,
            };
        };
        let scan = check.config.oracles.lost_wakeup;
        k.with_sim(|sim| {
            let finding = match verdict {
                Ok(value) => judge::judge(sim, Ended::Returned(value)),
                Err(f) => Some(scheduler_finding(&f, Some(sim), scan)),
            };
            Run {
                finding,
                fingerprint: sim.fingerprint(),
                schedule: Some(schedule),
                records,
                threads,
            }
        })
    }

    fn threaded(&self) -> bool {
        true
    }
}

/// The verdict on a run the scheduler failed: the kernel's own violation first (the thread's
/// panic or hang that followed is its consequence); at a deadlock, the kernel's lost-wakeup
/// scan of every epoll instance a thread waits in; else what the scheduler saw. Each comes with
/// every thread's state and the last switch points.
fn scheduler_finding(f: &SchedFailure, sim: Option<&Sim>, scan: bool) -> Finding {
    let threads = threads_report(f);
    if let Some(sim) = sim {
        let found = sim.violation().or_else(|| {
            if f.kind != FailureKind::Deadlock || !scan {
                return None;
            }
            waited_instances(f)
                .into_iter()
                .find_map(|ep| sim.check_lost_wakeups(ep).err())
        });
        if let Some(v) = found {
            let mut x = Finding::from(v);
            x.diagnosis = format!(
                "{}\nthe threads ({:?}: {}):\n{threads}",
                x.diagnosis, f.kind, f.message
            );
            return x;
        }
    }
    let kind = match f.kind {
        FailureKind::Deadlock => "deadlock",
        FailureKind::Panic => "panic",
        FailureKind::Livelock => "livelock",
        FailureKind::Spin => "spin",
        FailureKind::Outside => "misuse",
    };
    Finding {
        kind,
        diagnosis: format!("{}\n{threads}", f.message),
        violation: None,
    }
}

/// The epoll instances that threads were blocked in when the run failed, in thread order.
fn waited_instances(f: &SchedFailure) -> Vec<netpoll::Fd> {
    let mut eps = Vec::new();
    for t in &f.threads {
        let Some(c) = t.last_call else { continue };
        let waits = matches!(c.op, "epoll_wait" | "epoll_pwait" | "epoll_pwait2");
        if waits && t.state.starts_with("blocked in") {
            if let Some(fd) = c.fd {
                if !eps.contains(&fd) {
                    eps.push(fd);
                }
            }
        }
    }
    eps
}

/// Each thread's state and last call, then the last switch points, one column per thread.
fn threads_report(f: &SchedFailure) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for t in &f.threads {
        let _ = write!(out, "  {} `{}`: {}", t.tid, t.name, t.state);
        let _ = match t.last_call {
            Some(c) => writeln!(out, "; last call {c}"),
            None => writeln!(out, "; no call yet"),
        };
    }
    const TAIL: usize = 24;
    let table = f.tracks();
    let mut lines: Vec<&str> = table.lines().collect();
    if lines.len() > TAIL + 1 {
        let head = lines[0];
        let n = lines.len() - 1;
        lines = std::iter::once(head)
            .chain(lines[lines.len() - TAIL..].iter().copied())
            .collect();
        let _ = writeln!(out, "the last {TAIL} of {n} switch points:");
    } else {
        let _ = writeln!(out, "the schedule:");
    }
    for l in lines {
        let _ = writeln!(out, "  {}", l.trim_end());
    }
    out
}

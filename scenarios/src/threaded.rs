//! Running a workload on simulated threads ([`netpoll_threads`]): one place that starts the
//! run, keeps the kernel for the report, and turns the scheduler's failures (every thread
//! blocked with nothing in flight, a panic, a livelock, a thread spinning without a call) into
//! the crate's [`Failure`]s.

use std::sync::{Arc, Mutex};

use netpoll_sim::Sim;
use netpoll_threads::{FailureKind, Policy, Runner, ThreadedSim};

use crate::oracle::Failure;
use crate::rng::mix;
use crate::trace_out::Schedule;

/// What a run on simulated threads gave.
#[derive(Debug)]
pub struct ThreadedRun<T> {
    /// The main thread's value, or the scheduler's failure.
    pub value: Result<T, Failure>,
    /// The kernel, for the report; `None` when a thread spins holding it.
    pub kernel: Option<ThreadedSim>,
    /// Switch points made (0 after a failure).
    pub switch_points: u64,
    /// A hash of the schedule: which thread made which call, in order (0 after a failure).
    pub schedule: u64,
    /// The schedule itself, up to the failure if the run failed: for the trace
    /// ([`Report::schedule`](crate::workload::Report::schedule)).
    pub trace_schedule: Schedule,
}

/// Runs `body` as the main simulated thread on `sim`, interleaved by `seed`
/// ([`Policy::Random`]).
pub fn run_threads<T: Send + 'static>(
    sim: Sim,
    seed: u64,
    body: impl FnOnce(ThreadedSim) -> T + Send + 'static,
) -> ThreadedRun<T> {
    let slot: Arc<Mutex<Option<ThreadedSim>>> = Arc::default();
    let keep = slot.clone();
    let r = Runner::new(seed).policy(Policy::Random).run(sim, move |k| {
        *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(k.clone());
        body(k)
    });
    let k = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    match r {
        Ok(o) => {
            let schedule = o.report.schedule().iter().fold(0u64, |h, st| {
                let op = st.call.op.bytes().fold(0u64, |h, b| mix(h ^ u64::from(b)));
                mix(h ^ (u64::from(st.tid.0) << 32) ^ op ^ u64::from(st.blocked))
            });
            let trace_schedule = Schedule::from(&o.report);
            ThreadedRun {
                value: Ok(o.value),
                kernel: k,
                switch_points: o.report.steps(),
                schedule,
                trace_schedule,
            }
        }
        Err(f) => {
            // A spinning thread may hold the kernel for ever: do not touch it then.
            let k = k.filter(|_| f.kind != FailureKind::Spin);
            let at_ns = k.as_ref().map_or(0, |k| k.with_sim(Sim::now_ns));
            let trace_schedule = Schedule::from(&f);
            let failure = match f.kind {
                FailureKind::Panic => Failure::Invariant(format!("a thread panicked: {f}")),
                _ => Failure::Hang {
                    detail: f.to_string(),
                    at_ns,
                },
            };
            ThreadedRun {
                value: Err(failure),
                kernel: k,
                switch_points: 0,
                schedule: 0,
                trace_schedule,
            }
        }
    }
}

//! Who runs next: the scheduling policies, each drawing only from the scheduler's own stream.
//!
//! A policy sees the runnable threads (in thread-id order) at each switch point and picks one.
//! It never sees the wall clock or the OS scheduler, so one seed gives one schedule.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::Tid;

/// How the seed chooses which runnable thread runs at each switch point.
///
/// # Examples
///
/// ```
/// use netpoll_threads::{Policy, Runner};
///
/// let random = Runner::new(7); // Policy::Random is the default
/// let pct = Runner::new(7).policy(Policy::Pct { depth: 3, steps: 1_000 });
/// # let _ = (random, pct);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Uniform choice among the runnable threads at every switch point. Good at shaking out
    /// races that need many small interleavings; poor at ones that need one thread to stall for
    /// a long stretch.
    #[default]
    Random,
    /// Probabilistic Concurrency Testing (Burckhardt et al., ASPLOS 2010; as shuttle's
    /// `PctScheduler`). Each thread gets a random priority when it is spawned and the highest
    /// priority runnable thread always runs; at `depth - 1` switch points drawn uniformly from
    /// `1..=steps`, the running thread drops below every other. A bug that needs `d` ordering
    /// constraints is found with probability at least `1 / (n * steps^(d-1))` per seed, for `n`
    /// threads. `steps` should be about the number of switch points a run makes (see
    /// [`Report::steps`](crate::Report::steps)); `depth` 1 means no preemption at all.
    Pct {
        /// Bug depth: one more than the number of priority change points.
        depth: u32,
        /// The range the change points are drawn from.
        steps: u64,
    },
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Random => write!(f, "random"),
            Policy::Pct { depth, steps } => write!(f, "pct:{depth}:{steps}"),
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    /// `random`, or `pct:DEPTH:STEPS` (the form [`Display`](std::fmt::Display) writes, so a
    /// replay line can be pasted back).
    fn from_str(s: &str) -> Result<Policy, String> {
        let bad = || {
            format!("bad policy `{s}`: expected `random` or `pct:DEPTH:STEPS` (e.g. pct:3:1000)")
        };
        match s.split(':').collect::<Vec<_>>().as_slice() {
            ["random"] => Ok(Policy::Random),
            ["pct", d, n] => {
                let depth: u32 = d.parse().map_err(|_| bad())?;
                let steps: u64 = n.parse().map_err(|_| bad())?;
                if depth == 0 || steps == 0 {
                    return Err(bad());
                }
                Ok(Policy::Pct { depth, steps })
            }
            _ => Err(bad()),
        }
    }
}

/// A policy's running state.
#[derive(Debug)]
pub(crate) enum Chooser {
    Random,
    Pct {
        /// Priority of each thread by id; higher runs first. Initial priorities are above
        /// `depth`; the `i`th change point lowers the running thread to `i`.
        priority: Vec<u64>,
        /// The switch points (step numbers) at which the running thread is demoted, ascending.
        change_points: Vec<u64>,
        /// How many change points have fired.
        fired: usize,
        depth: u32,
    },
}

impl Chooser {
    pub(crate) fn new(policy: Policy, rng: &mut ChaCha8Rng) -> Chooser {
        match policy {
            Policy::Random => Chooser::Random,
            Policy::Pct { depth, steps } => {
                let mut change_points: Vec<u64> = (1..depth.max(1))
                    .map(|_| rng.random_range(1..=steps.max(1)))
                    .collect();
                change_points.sort_unstable();
                Chooser::Pct {
                    priority: Vec::new(),
                    change_points,
                    fired: 0,
                    depth,
                }
            }
        }
    }

    /// A thread was spawned: PCT gives it a random priority above every change-point priority.
    pub(crate) fn on_spawn(&mut self, tid: Tid, rng: &mut ChaCha8Rng) {
        if let Chooser::Pct {
            priority, depth, ..
        } = self
        {
            debug_assert_eq!(
                priority.len(),
                tid.0 as usize,
                "threads are spawned in id order"
            );
            priority.push(u64::from(*depth) + 1 + rng.random_range(0..u64::from(u32::MAX)));
        }
    }

    /// Picks one of `runnable` (non-empty, ascending ids) at switch point `step`; `running` is
    /// the thread that reached the switch point (if it is still runnable or blocked).
    pub(crate) fn pick(
        &mut self,
        runnable: &[Tid],
        running: Option<Tid>,
        step: u64,
        rng: &mut ChaCha8Rng,
    ) -> Tid {
        assert!(
            !runnable.is_empty(),
            "pick: no runnable thread (the scheduler must not ask)"
        );
        match self {
            Chooser::Random => {
                if runnable.len() == 1 {
                    runnable[0]
                } else {
                    runnable[rng.random_range(0..runnable.len())]
                }
            }
            Chooser::Pct {
                priority,
                change_points,
                fired,
                ..
            } => {
                while *fired < change_points.len() && change_points[*fired] <= step {
                    *fired += 1;
                    if let Some(r) = running {
                        priority[r.0 as usize] = *fired as u64;
                    }
                }
                *runnable
                    .iter()
                    .max_by_key(|t| priority[t.0 as usize])
                    .expect("runnable is not empty")
            }
        }
    }
}

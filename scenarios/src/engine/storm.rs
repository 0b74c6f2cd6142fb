//! The timer storm: many deadlines, each firing cancelling or moving another, checked for
//! accuracy and order as they fire.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::oracle::Failure;
use crate::rng::Rng;

/// The storm's timers: (deadline, id); cancelled ids are skipped when they come up.
#[derive(Debug, Default)]
pub(super) struct Storm {
    pub(super) heap: BinaryHeap<Reverse<(u64, u32)>>,
    /// Per timer: its current deadline, or `None` once cancelled or fired.
    pub(super) due: Vec<Option<u64>>,
    pub(super) fired: u64,
    pub(super) cancelled: u64,
    last_fired_ns: u64,
    rng: Option<Rng>,
}

impl Storm {
    /// `timers` deadlines spread over `span_ns` from `start_ns`, drawn from stream 2 of `seed`.
    pub(super) fn new(seed: u64, timers: usize, span_ns: u64, start_ns: u64) -> Storm {
        let mut storm = Storm::default();
        if timers > 0 {
            let mut trng = Rng::new(seed, 2);
            storm.due = Vec::with_capacity(timers);
            for id in 0..timers {
                let d = start_ns + trng.range(1, span_ns.max(1));
                storm.due.push(Some(d));
                storm.heap.push(Reverse((d, id as u32)));
            }
            storm.rng = Some(trng);
        }
        storm
    }

    /// The earliest pending deadline.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|r| r.0 .0)
    }

    /// Fires the timers due at `now` (each firing cancels or moves another), checking that none
    /// fires early, more than `tolerance(deadline)` late, or out of deadline order. Returns the
    /// largest lateness seen.
    pub(super) fn fire(
        &mut self,
        now: u64,
        tolerance: impl Fn(u64) -> u64,
        span_ns: u64,
    ) -> Result<u64, Failure> {
        let mut max_late = 0;
        while let Some(&Reverse((d, id))) = self.heap.peek() {
            if d > now {
                break;
            }
            self.heap.pop();
            let slot = &mut self.due[id as usize];
            if *slot != Some(d) {
                continue; // cancelled or moved
            }
            *slot = None;
            let tolerance = tolerance(d);
            if now < d || now - d > tolerance {
                return Err(Failure::Deadline {
                    what: format!("storm timer {id}"),
                    deadline_ns: d,
                    fired_ns: now,
                    tolerance_ns: tolerance,
                });
            }
            if d < self.last_fired_ns {
                return Err(Failure::Invariant(format!(
                    "storm timer {id} (due {d} ns) fired after a timer due at {} ns",
                    self.last_fired_ns
                )));
            }
            self.last_fired_ns = d;
            max_late = max_late.max(now - d);
            self.fired += 1;
            // Each firing cancels or moves another pending timer, as handlers do.
            let n = self.due.len() as u64;
            let rng = self.rng.as_mut().expect("storm rng");
            let other = rng.range(0, n - 1) as usize;
            let action = rng.range(0, 3);
            let delay = rng.range(1, span_ns.max(1) / 4 + 1);
            if let Some(old) = self.due[other] {
                match action {
                    0 => {
                        self.due[other] = None;
                        self.cancelled += 1;
                    }
                    1 => {
                        let _ = old;
                        let new = now + delay;
                        self.due[other] = Some(new);
                        self.heap.push(Reverse((new, other as u32)));
                    }
                    _ => {}
                }
            }
        }
        // A timer that must fire must still be in the heap: checked at the end by count.
        Ok(max_late)
    }
}

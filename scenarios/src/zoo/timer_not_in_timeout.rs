//! `zoo-timer-not-in-timeout`: the loop's `epoll_wait` timeout and the idle deadlines. The bug
//! leaves the deadlines out of the timeout (`-1`); the twin sleeps to the earliest one.

use std::cmp::Reverse;

use super::{Bug, Zoo};
use crate::oracle::Failure;
use crate::raw_epoll::{timeout_ms, TICK_NS};

impl Zoo<'_> {
    /// The `epoll_wait` timeout at `now`.
    pub(super) fn wait_timeout(&self, now: u64) -> i32 {
        match self.deadlines.peek() {
            // The bug: the loop's timeout was written before idle deadlines existed.
            Some(_) if self.bug(Bug::TimerNotInTimeout) => -1,
            Some(&Reverse((d, _))) => timeout_ms(d, now),
            None => -1,
        }
    }

    pub(super) fn on_time(&mut self) -> Result<(), Failure> {
        let now = self.now_ns();
        while let Some(&Reverse((d, slot))) = self.deadlines.peek() {
            if d > now {
                break;
            }
            self.deadlines.pop();
            let Some(c) = self.conn(slot) else {
                continue;
            };
            if c.deadline_ns > now {
                let d = c.deadline_ns;
                self.deadlines.push(Reverse((d, slot)));
                continue;
            }
            let d = c.deadline_ns;
            // A tick of rounding, plus the handler cost charged after the deadline.
            let tolerance = TICK_NS + self.lateness.allowance(self.k, d, now);
            if now - d > tolerance {
                return Err(Failure::Deadline {
                    what: format!("the idle deadline of server connection {slot}"),
                    deadline_ns: d,
                    fired_ns: now,
                    tolerance_ns: tolerance,
                });
            }
            self.max_late_ns = self.max_late_ns.max(now - d);
            self.closed_idle += 1;
            self.close(slot)?;
        }
        Ok(())
    }
}

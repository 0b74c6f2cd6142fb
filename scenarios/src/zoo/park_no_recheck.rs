//! `zoo-park-no-recheck`: a Go-style poll descriptor and the tasks that block on it. The bug's
//! `park` overwrites a pending notification; the twin consumes it and reads again.

use super::{Bug, Read, Zoo};
use crate::oracle::Failure;

/// A poll descriptor's read semaphore (see the module docs for its transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rg {
    /// No notification pending, nobody waiting.
    Idle,
    /// A notification came while nobody waited.
    Ready,
    /// The connection's task is parked on it.
    Waiting,
}

impl Zoo<'_> {
    /// The netpoller saw `slot` readable.
    pub(super) fn notify(&mut self, slot: usize) {
        let c = self.conns[slot].as_mut().expect("live");
        match c.rg {
            Rg::Waiting => {
                c.rg = Rg::Idle;
                self.runq.push_back(slot);
            }
            Rg::Idle | Rg::Ready => c.rg = Rg::Ready,
        }
    }

    /// The task would block: returns whether it parked (`false`: read again).
    pub(super) fn park(&mut self, slot: usize) -> bool {
        let buggy = self.bug(Bug::ParkNoRecheck);
        let c = self.conns[slot].as_mut().expect("live");
        match c.rg {
            Rg::Waiting => panic!("double wait on the poll descriptor of connection {slot}"),
            Rg::Ready if !buggy => {
                c.rg = Rg::Idle; // consume the notification, read again
                false
            }
            // Idle, or (the bug) Ready overwritten without a look.
            _ => {
                c.rg = Rg::Waiting;
                true
            }
        }
    }

    /// Runs connection `slot`'s task until it parks or ends.
    pub(super) fn task(&mut self, slot: usize) -> Result<(), Failure> {
        loop {
            match self.read_once(slot, self.buf.len())? {
                Read::Data => continue,
                Read::Closed => return Ok(()),
                Read::Again => {
                    if self.conn(slot).is_some_and(|c| c.eof) {
                        return Ok(()); // closes once the output is flushed
                    }
                    if self.rng.chance(self.cfg.preempt_pct, 100) {
                        // Descheduled between the failed read and the park: the netpoller
                        // runs (other threads, 1 ms) and may notify this very descriptor.
                        self.netpoll(1)?;
                        if self.conn(slot).is_none() {
                            return Ok(());
                        }
                    }
                    if self.park(slot) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

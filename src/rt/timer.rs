//! Timers on the Poller's clock: a binary heap of deadlines, fired by the poll loop.
//!
//! Two kinds of timer exist: a [`Sleep`](super::Sleep) (wake a task) and a descriptor deadline
//! (expire one side of a poll descriptor, see [`Side::expire`](super::pd::Side::expire)). Both
//! are lazily cancelled: a deadline timer carries the side's deadline generation and is a no-op
//! once the deadline changed; a sleep carries a shared `cancelled` flag set when its future is
//! dropped. Cancelled entries are counted, and the heap is compacted when they outnumber the
//! live ones, so a loop of short `timeout`s cannot grow it without bound.
//!
//! Entries with the same instant fire in the order they were armed (`seq` breaks ties).

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;
use std::time::Duration;

use super::pd::{Dir, PollDesc};

/// A sleeping task's half of a timer.
#[derive(Debug, Default)]
pub(crate) struct SleepShared {
    pub(crate) fired: AtomicBool,
    pub(crate) cancelled: AtomicBool,
    pub(crate) waker: Mutex<Option<Waker>>,
}

pub(crate) enum Action {
    Wake(Arc<SleepShared>),
    Deadline {
        pd: Weak<PollDesc>,
        dir: Dir,
        gen: u32,
    },
}

pub(crate) struct Entry {
    pub(crate) at: Duration,
    seq: u64,
    pub(crate) action: Action,
}

impl Entry {
    fn is_cancelled(&self) -> bool {
        match &self.action {
            Action::Wake(s) => s.cancelled.load(Ordering::Relaxed),
            Action::Deadline { pd, dir, gen } => pd
                .upgrade()
                .is_none_or(|pd| pd.side(*dir).generation() != *gen),
        }
    }

    /// Runs the timer's action.
    pub(crate) fn fire(self) {
        match self.action {
            Action::Wake(s) => {
                s.fired.store(true, Ordering::Release);
                let w = s.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(w) = w {
                    w.wake();
                }
            }
            Action::Deadline { pd, dir, gen } => {
                if let Some(pd) = pd.upgrade() {
                    pd.side(dir).expire(gen);
                }
            }
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Entry) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The heap. Not thread-safe by itself: the driver keeps it under a mutex.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("len", &self.heap.len())
            .finish()
    }
}

impl Timers {
    /// Arms a timer; returns whether it is now the earliest.
    pub(crate) fn push(&mut self, at: Duration, action: Action) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let earliest = self.heap.peek().is_none_or(|e| at < e.at);
        self.heap.push(Entry { at, seq, action });
        if self.heap.len() >= 64 && self.heap.len().is_power_of_two() {
            self.compact();
        }
        earliest
    }

    /// Drops cancelled entries if they are the majority.
    fn compact(&mut self) {
        let dead = self.heap.iter().filter(|e| e.is_cancelled()).count();
        if dead * 2 > self.heap.len() {
            let live: Vec<Entry> = std::mem::take(&mut self.heap)
                .into_vec()
                .into_iter()
                .filter(|e| !e.is_cancelled())
                .collect();
            self.heap = BinaryHeap::from(live);
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next(&mut self) -> Option<Duration> {
        while let Some(e) = self.heap.peek() {
            if e.is_cancelled() {
                self.heap.pop();
            } else {
                return Some(e.at);
            }
        }
        None
    }

    /// Pops every entry due at `now`, earliest first.
    pub(crate) fn due(&mut self, now: Duration, out: &mut Vec<Entry>) {
        while self.heap.peek().is_some_and(|e| e.at <= now) {
            let e = self.heap.pop().expect("peeked");
            if !e.is_cancelled() {
                out.push(e);
            }
        }
    }

    /// How many sleeps are armed and live (for deadlock reports).
    pub(crate) fn live_sleeps(&self) -> usize {
        self.heap
            .iter()
            .filter(|e| matches!(e.action, Action::Wake(_)) && !e.is_cancelled())
            .count()
    }
}

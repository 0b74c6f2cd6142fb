//! Timers on the Poller's clock: a binary heap and an ordered run of deadlines (see [`Timers`]), fired by the poll loop.
//!
//! Two kinds of timer exist: a [`Sleep`](super::Sleep) (wake a task) and a descriptor deadline
//! (expire one side of a poll descriptor, see [`Side::expire`](super::pd::Side::expire)).
//!
//! A sleep is lazily cancelled: it carries a shared `cancelled` flag set when its future is
//! dropped, and a cancelled entry stays in the heap until it reaches the top or the heap is
//! compacted (when cancelled entries outnumber live ones, so a loop of short `timeout`s cannot
//! grow it without bound).
//!
//! A deadline is re-armed in place, as Go's `modtimer` and tokio's timer entries are: a server
//! that sets a read deadline before every read re-arms it for every message, always later. Each
//! side has at most one heap entry, its *carrier* ([`DeadlineSlot`]), whose instant is at or
//! before the side's current deadline. A later deadline only records itself in the slot; when
//! the carrier reaches the top of the heap it is moved to the current deadline (or dropped if
//! the deadline was cleared), and it fires only when its key is the current deadline's. A
//! deadline earlier than the carrier pushes a new carrier (the old entry is then stale), and so
//! does one that comes after every entry of the run ([`Timers`]): appending it costs less than
//! moving the old carrier through the heap later. Either way a re-arm costs no heap operation.
//!
//! Entries with the same instant fire in the order they were armed (`seq` breaks ties; a moved
//! carrier takes the seq of the arming it stands for), exactly the order a heap of every arming
//! would give: moving carriers is invisible to the program.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;
use std::time::Duration;

use super::pd::{Dir, PollDesc};

/// "None" in a [`DeadlineSlot`] word.
const NONE: u64 = u64::MAX;

/// One side's deadline timer (see the [module docs](self)), in its [`PollDesc`].
/// Read and written only under the driver's timer lock, so the atomics are `Relaxed` (they
/// are atomics only so that a `PollDesc` stays `Sync`).
#[derive(Debug)]
pub(crate) struct DeadlineSlot {
    /// The current deadline (ns on the Poller's clock), or [`NONE`].
    want_at: AtomicU64,
    /// The seq of the arming that set it.
    want_seq: AtomicU64,
    /// The key of the side's entry in the heap (`carrier_seq` is [`NONE`] when it has none).
    carrier_at: AtomicU64,
    carrier_seq: AtomicU64,
}

impl Default for DeadlineSlot {
    fn default() -> DeadlineSlot {
        DeadlineSlot {
            want_at: AtomicU64::new(NONE),
            want_seq: AtomicU64::new(NONE),
            carrier_at: AtomicU64::new(NONE),
            carrier_seq: AtomicU64::new(NONE),
        }
    }
}

impl DeadlineSlot {
    fn get(w: &AtomicU64) -> u64 {
        w.load(Ordering::Relaxed)
    }
    fn set(w: &AtomicU64, v: u64) {
        w.store(v, Ordering::Relaxed);
    }
    fn set_carrier(&self, at: u64, seq: u64) {
        DeadlineSlot::set(&self.carrier_at, at);
        DeadlineSlot::set(&self.carrier_seq, seq);
    }
    fn clear_carrier(&self) {
        self.set_carrier(NONE, NONE);
    }
}

/// Nanoseconds of a deadline, saturated below [`NONE`].
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(NONE - 1)
        .min(NONE - 1)
}

/// What a deadline entry at the top of the heap stands for.
enum Fate {
    /// Nothing: its descriptor is gone, or it is not its side's carrier any more.
    Stale,
    /// Its side's carrier, but the side has no deadline now.
    Unarmed,
    /// The side's current deadline: it fires at its instant.
    Live,
    /// The side's carrier, standing for a later deadline: move it there.
    Moved { at: u64, seq: u64 },
}

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
    /// A cancelled sleep, or a deadline entry that is not its side's carrier (see [`Fate`]).
    /// A carrier whose side has no deadline now is kept: it is one entry a side, and it may be
    /// re-used by the next deadline.
    fn is_cancelled(&self) -> bool {
        match &self.action {
            Action::Wake(s) => s.cancelled.load(Ordering::Relaxed),
            Action::Deadline { .. } => matches!(self.fate(), Fate::Stale),
        }
    }

    fn fate(&self) -> Fate {
        let Action::Deadline { pd, dir, .. } = &self.action else {
            unreachable!("netpoll: the fate of a deadline entry was asked of a sleep");
        };
        let Some(pd) = pd.upgrade() else {
            return Fate::Stale;
        };
        let slot = pd.timer(*dir);
        if DeadlineSlot::get(&slot.carrier_seq) != self.seq {
            return Fate::Stale;
        }
        let at = DeadlineSlot::get(&slot.want_at);
        let seq = DeadlineSlot::get(&slot.want_seq);
        if at == NONE {
            Fate::Unarmed
        } else if (at, seq) == (ns(self.at), self.seq) {
            Fate::Live
        } else {
            Fate::Moved { at, seq }
        }
    }

    /// The deadline side's slot (a deadline entry whose descriptor lives).
    fn with_slot(&self, f: impl FnOnce(&DeadlineSlot, &PollDesc, Dir)) {
        if let Action::Deadline { pd, dir, .. } = &self.action {
            if let Some(pd) = pd.upgrade() {
                f(pd.timer(*dir), &pd, *dir);
            }
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

/// The timers: a binary heap, and beside it a run of entries in key order. Most timers are
/// "now + a fixed timeout" (a read deadline re-armed before every read), so they are armed in
/// the order they come due: such an entry is appended to the run in O(1) and popped from its
/// front in O(1), where the heap would pay a sift through a level per cache miss with 100,000
/// deadlines armed. Any entry not after the run's last goes to the heap; the earliest of the
/// two fronts is the next timer. Not thread-safe by itself: the driver keeps it under a mutex.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    run: VecDeque<Entry>,
    next_seq: u64,
}

/// Where the earliest entry is.
#[derive(Clone, Copy)]
enum Front {
    Heap,
    Run,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("len", &(self.heap.len() + self.run.len()))
            .finish()
    }
}

impl Timers {
    /// Arms a sleep; returns whether it is now the earliest.
    pub(crate) fn push(&mut self, at: Duration, action: Action) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(Entry { at, seq, action })
    }

    fn insert(&mut self, e: Entry) -> bool {
        let earliest = self.peek().is_none_or(|top| e.at < top.at);
        if self
            .run
            .back()
            .is_none_or(|last| (last.at, last.seq) <= (e.at, e.seq))
        {
            self.run.push_back(e);
        } else {
            self.heap.push(e);
        }
        let len = self.heap.len() + self.run.len();
        if len >= 64 && len.is_power_of_two() {
            self.compact();
        }
        earliest
    }

    /// Which front holds the earliest entry.
    fn front(&self) -> Option<Front> {
        match (self.heap.peek(), self.run.front()) {
            (None, None) => None,
            (Some(_), None) => Some(Front::Heap),
            (None, Some(_)) => Some(Front::Run),
            (Some(h), Some(r)) => Some(if (h.at, h.seq) < (r.at, r.seq) {
                Front::Heap
            } else {
                Front::Run
            }),
        }
    }

    /// The earliest entry.
    fn peek(&self) -> Option<&Entry> {
        match self.front()? {
            Front::Heap => self.heap.peek(),
            Front::Run => self.run.front(),
        }
    }

    /// Removes the earliest entry.
    fn pop(&mut self) -> Option<Entry> {
        match self.front()? {
            Front::Heap => self.heap.pop(),
            Front::Run => self.run.pop_front(),
        }
    }

    /// Sets (`Some`) or clears the deadline of `pd`'s `dir` side (its generation was just
    /// bumped, under the same lock); returns whether a new entry is now the earliest. Re-arming
    /// costs no heap operation: an append to the run, or nothing (see the [module docs](self)).
    pub(crate) fn set_deadline(
        &mut self,
        pd: &Arc<PollDesc>,
        dir: Dir,
        at: Option<Duration>,
    ) -> bool {
        let slot = pd.timer(dir);
        let Some(at) = at else {
            DeadlineSlot::set(&slot.want_at, NONE);
            DeadlineSlot::set(&slot.want_seq, NONE);
            return false;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        DeadlineSlot::set(&slot.want_at, ns(at));
        DeadlineSlot::set(&slot.want_seq, seq);
        let carrier = DeadlineSlot::get(&slot.carrier_seq) != NONE;
        // In deadline order (the usual "now + timeout"), a new carrier costs an append and the
        // old one is popped from the run's front in O(1) when it comes first; out of order, the
        // old carrier is moved here when it comes due (a heap operation then, not now).
        let in_order = self
            .run
            .back()
            .is_none_or(|last| (last.at, last.seq) <= (at, seq));
        if carrier && DeadlineSlot::get(&slot.carrier_at) <= ns(at) && !in_order {
            return false;
        }
        slot.set_carrier(ns(at), seq);
        self.insert(Entry {
            at,
            seq,
            action: Action::Deadline {
                pd: Arc::downgrade(pd),
                dir,
                gen: 0, // set when it fires
            },
        })
    }

    /// Pops the top entry, which is a deadline's, and settles it: dropped (stale or unarmed),
    /// moved to its side's current deadline, or returned (live, with the generation it fires
    /// with, which is the side's: deadline and generation change together under the lock).
    fn settle_top(&mut self) -> Option<Entry> {
        let e = self.pop().expect("settle_top with no timer");
        match e.fate() {
            Fate::Stale => None,
            Fate::Unarmed => {
                e.with_slot(|slot, _, _| slot.clear_carrier());
                None
            }
            Fate::Moved { at, seq } => {
                e.with_slot(|slot, _, _| slot.set_carrier(at, seq));
                self.insert(Entry {
                    at: Duration::from_nanos(at),
                    seq,
                    action: e.action,
                });
                None
            }
            Fate::Live => {
                let mut gen = 0;
                e.with_slot(|slot, pd, dir| {
                    slot.clear_carrier();
                    DeadlineSlot::set(&slot.want_at, NONE);
                    DeadlineSlot::set(&slot.want_seq, NONE);
                    gen = pd.side(dir).generation();
                });
                let Action::Deadline { pd, dir, .. } = e.action else {
                    unreachable!("settle_top is called on deadline entries");
                };
                Some(Entry {
                    at: e.at,
                    seq: e.seq,
                    action: Action::Deadline { pd, dir, gen },
                })
            }
        }
    }

    /// Drops cancelled entries if they are the majority.
    fn compact(&mut self) {
        let all = self.heap.iter().chain(self.run.iter());
        let dead = all.filter(|e| e.is_cancelled()).count();
        if dead * 2 > self.heap.len() + self.run.len() {
            let live: Vec<Entry> = std::mem::take(&mut self.heap)
                .into_vec()
                .into_iter()
                .filter(|e| !e.is_cancelled())
                .collect();
            self.heap = BinaryHeap::from(live);
            self.run.retain(|e| !e.is_cancelled());
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next(&mut self) -> Option<Duration> {
        while let Some(e) = self.peek() {
            match &e.action {
                Action::Wake(s) if s.cancelled.load(Ordering::Relaxed) => {
                    self.pop();
                }
                Action::Wake(_) => return Some(e.at),
                Action::Deadline { .. } => {
                    if matches!(e.fate(), Fate::Live) {
                        return Some(e.at);
                    }
                    let settled = self.settle_top();
                    debug_assert!(settled.is_none(), "a live deadline was settled by next()");
                }
            }
        }
        None
    }

    /// Pops every entry due at `now`, earliest first.
    pub(crate) fn due(&mut self, now: Duration, out: &mut Vec<Entry>) {
        while let Some(e) = self.peek().filter(|e| e.at <= now) {
            match &e.action {
                Action::Wake(_) => {
                    let e = self.pop().expect("peeked");
                    if !e.is_cancelled() {
                        out.push(e);
                    }
                }
                Action::Deadline { .. } => out.extend(self.settle_top()),
            }
        }
    }

    /// How many sleeps are armed and live (for deadlock reports).
    pub(crate) fn live_sleeps(&self) -> usize {
        self.heap
            .iter()
            .chain(self.run.iter())
            .filter(|e| matches!(e.action, Action::Wake(_)) && !e.is_cancelled())
            .count()
    }
}

#[cfg(test)]
mod tests {
    //! Moving carriers must be invisible: the same sleeps and deadlines fire, in the same
    //! order, as from a heap of every arming with generation checks (the scheme before
    //! carriers), over seeded random sequences of arming, clearing, expiring, sleeping,
    //! cancelling, dropping descriptors and advancing time.

    use super::*;
    use crate::rt::rng::Rng;

    /// The old scheme: every arming is an entry; a deadline entry is live while its
    /// generation is the side's.
    #[derive(Default)]
    struct Reference {
        heap: BinaryHeap<Entry>,
        next_seq: u64,
    }

    impl Reference {
        fn push(&mut self, at: Duration, action: Action) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.heap.push(Entry { at, seq, action });
        }
        fn live(e: &Entry) -> bool {
            match &e.action {
                Action::Wake(s) => !s.cancelled.load(Ordering::Relaxed),
                Action::Deadline { pd, dir, gen } => pd
                    .upgrade()
                    .is_some_and(|pd| pd.side(*dir).generation() == *gen),
            }
        }
        fn next(&mut self) -> Option<Duration> {
            while let Some(e) = self.heap.peek() {
                if Reference::live(e) {
                    return Some(e.at);
                }
                self.heap.pop();
            }
            None
        }
        fn due(&mut self, now: Duration) -> Vec<(Duration, u64)> {
            let mut out = Vec::new();
            while self.heap.peek().is_some_and(|e| e.at <= now) {
                let e = self.heap.pop().expect("peeked");
                if Reference::live(&e) {
                    out.push((e.at, e.seq));
                }
            }
            out
        }
    }

    fn run(seed: u64) {
        let mut rng = Rng::new(seed);
        let mut new = Timers::default();
        let mut old = Reference::default();
        let mut pds: Vec<Option<Arc<PollDesc>>> =
            (0..8).map(|i| Some(PollDesc::new(i, 0))).collect();
        let mut sleeps: Vec<Arc<SleepShared>> = Vec::new();
        let mut now = Duration::ZERO;
        let mut fired = 0;
        for step in 0..2_000 {
            let ctx = format!("seed {seed} step {step}");
            let i = rng.below(pds.len());
            let dir = if rng.coin() { Dir::Read } else { Dir::Write };
            let later = now + Duration::from_nanos(rng.below(50) as u64);
            match rng.below(10) {
                0..=3 => {
                    let Some(pd) = pds[i].clone() else { continue };
                    // As Driver::set_deadline: clear, expire now, or arm.
                    let at = match rng.below(8) {
                        0 => None,
                        1 => Some(now),
                        _ => Some(later),
                    };
                    let expired = at.is_some_and(|at| at <= now);
                    let gen = pd.side(dir).reset_deadline(expired);
                    let armed = at.filter(|_| !expired);
                    new.set_deadline(&pd, dir, armed);
                    if let Some(at) = armed {
                        let (pd, gen) = (Arc::downgrade(&pd), gen);
                        old.push(at, Action::Deadline { pd, dir, gen });
                    }
                }
                4 => {
                    let s = Arc::new(SleepShared::default());
                    new.push(later, Action::Wake(s.clone()));
                    old.push(later, Action::Wake(s.clone()));
                    sleeps.push(s);
                }
                5 if !sleeps.is_empty() => {
                    let j = rng.below(sleeps.len());
                    sleeps
                        .swap_remove(j)
                        .cancelled
                        .store(true, Ordering::Relaxed);
                }
                6 => {
                    // A descriptor closes (its number is then used again).
                    pds[i] = rng.coin().then(|| PollDesc::new(i as i32, step));
                }
                _ => {
                    assert_eq!(new.next(), old.next(), "next(), {ctx}");
                    now += Duration::from_nanos(rng.below(30) as u64);
                    let mut got = Vec::new();
                    new.due(now, &mut got);
                    let got: Vec<(Duration, u64)> = got
                        .into_iter()
                        .map(|e| {
                            let key = (e.at, e.seq);
                            e.fire();
                            key
                        })
                        .collect();
                    assert_eq!(got, old.due(now), "due({now:?}), {ctx}");
                    fired += got.len();
                }
            }
            assert_eq!(new.next_seq, old.next_seq, "seq counters, {ctx}");
        }
        assert!(fired > 100, "seed {seed}: only {fired} timers fired");
    }

    #[test]
    fn carriers_fire_as_a_heap_of_every_arming() {
        for seed in 0..200 {
            run(seed);
        }
    }

    #[test]
    fn rearming_in_deadline_order_never_touches_the_heap() {
        let mut t = Timers::default();
        let pd = PollDesc::new(3, 0);
        for k in 1..=10_000u64 {
            pd.read.reset_deadline(false);
            t.set_deadline(&pd, Dir::Read, Some(Duration::from_nanos(k)));
        }
        assert!(
            t.heap.is_empty(),
            "in deadline order, re-arming never touches the heap"
        );
        assert_eq!(t.next(), Some(Duration::from_nanos(10_000)));
        assert_eq!(
            t.run.len(),
            1,
            "next() dropped the stale carriers in front of the live one"
        );
        let mut out = Vec::new();
        t.due(Duration::from_nanos(20_000), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seq, 9_999, "the last arming fires");
        assert_eq!(out[0].clone_gen(), pd.read.generation());
        // An earlier deadline pushes a new carrier at once.
        pd.read.reset_deadline(false);
        t.set_deadline(&pd, Dir::Read, Some(Duration::from_nanos(30_000)));
        pd.read.reset_deadline(false);
        t.set_deadline(&pd, Dir::Read, Some(Duration::from_nanos(25_000)));
        assert_eq!(t.heap.len() + t.run.len(), 2);
        assert_eq!(t.next(), Some(Duration::from_nanos(25_000)));
    }

    #[test]
    fn a_carrier_out_of_order_moves_when_it_comes_first() {
        let mut t = Timers::default();
        let (a, b) = (PollDesc::new(3, 0), PollDesc::new(4, 0));
        let ms = Duration::from_millis;
        for (pd, at) in [(&a, 100), (&b, 200), (&a, 150)] {
            pd.read.reset_deadline(false);
            t.set_deadline(pd, Dir::Read, Some(ms(at)));
        }
        assert_eq!(
            t.heap.len() + t.run.len(),
            2,
            "a's re-arm before b's deadline pushed nothing"
        );
        assert_eq!(t.next(), Some(ms(150)), "a's carrier moved from 100 to 150");
        assert_eq!(
            t.heap.len(),
            1,
            "into the heap: it is before the run's last entry"
        );
        let mut out = Vec::new();
        t.due(ms(200), &mut out);
        let seqs: Vec<u64> = out.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 1], "a (armed third) at 150, then b at 200");
        assert_eq!(t.next(), None);
    }

    impl Entry {
        fn clone_gen(&self) -> u32 {
            match &self.action {
                Action::Deadline { gen, .. } => *gen,
                Action::Wake(_) => panic!("a sleep has no generation"),
            }
        }
    }
}

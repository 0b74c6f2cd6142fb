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
//! side has at most one live heap entry, its *carrier* ([`Carrier`]), whose instant is at or
//! before the side's current deadline. A later deadline only records itself ([`Want`]);
//! when the carrier reaches the top of the heap it is moved to the current deadline (or dropped
//! if the deadline was cleared), and it fires only when its key is the current deadline's. A
//! deadline earlier than the carrier pushes a new carrier (the old entry is then stale), and so
//! does one that comes after every entry of the run ([`Timers`]): appending it costs less than
//! moving the old carrier through the heap later. Either way a re-arm costs no heap operation.
//!
//! Why a re-arm in deadline order appends instead of recording itself, as Go's
//! `timerModifiedLater` would (a later deadline keeps the queued entry; the entry is moved when
//! it reaches the front): the poll loop's `epoll_wait` timeout is the earliest *live* deadline
//! ([`Timers::next`]), so every front that stands for a later deadline must be settled before
//! each blocking wait, not only when it comes due. Re-armed per read, nearly every carrier
//! stands for a later deadline, and moving one puts it behind the run's last entry only by
//! luck: it goes through the heap. Measured on `rt-echo`, 20,000 connections re-arming a 60 s
//! read deadline per read (no deadline ever fires): 3.5% more instructions and 8% more
//! simulated cache misses than the append, whose stale entry costs one row read when it
//! reaches the front and is popped in O(1). (Go sleeps until the stale front instead, and
//! wakes early: a different `epoll_wait` timeout, which this runtime must not change.)
//!
//! Entries with the same instant fire in the order they were armed (`seq` breaks ties; a moved
//! carrier takes the seq of the arming it stands for), exactly the order a heap of every arming
//! would give: moving carriers is invisible to the program.
//!
//! **The rows live in the timers, not in the descriptor.** A side's deadline state is a row
//! of dense tables owned by [`Timers`]; the descriptor keeps only the row's index
//! ([`PollDesc::timer_slot`]), and an entry names the row. Judging an entry reads its row's
//! [`Carrier`] (16 bytes: the carrier's key, and whether the side's deadline is that key or is
//! in its [`Want`]), never the descriptor: with 100,000 connections a descriptor is a cache
//! miss, and a server that re-arms a read deadline per read leaves one stale entry per read to
//! judge. The descriptor is reached only when its carrier comes to the top (to see that it
//! still lives, and to fire). A row is taken when a side with no carrier arms a deadline and
//! given back when that carrier leaves (fired, dropped because the deadline was cleared, or its
//! descriptor gone), so a row exists exactly while its side has a carrier. A row given back and
//! taken again cannot be mistaken by an old entry: an entry is its side's carrier only if its
//! seq is the row's carrier seq, and seqs are never reused.
//!
//! The timers count their stale deadline entries and their sleep entries, so that compaction
//! reads nothing when the dead cannot be the majority, and counts nothing when the stale
//! deadlines alone are.
//!
//! **What a re-arm costs**, measured on `rt-echo` (a 60 s read deadline set before every read;
//! `BENCHMARKS.md`, "Stop 21"): about 715 instructions more than the same run without
//! deadlines, counting the call itself, its stale entry's judging and pop, and its 40 bytes of
//! run; at 20,000 connections about 2 simulated L2 read misses and 1.4 write misses (the row
//! when the entry is judged, the row's store, the run), and at 100,000 about 15% of the run's
//! CPU time. It is paid whether or not a deadline ever fires: a server that needs an idle
//! timeout, not a per-read one, is cheaper setting it less often.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;
use std::time::Duration;

use super::pd::{Dir, PollDesc};

/// "None" in a [`Carrier`] or [`Want`] word.
const NONE: u64 = u64::MAX;

/// In a [`Carrier`]'s `seq`: the side's current deadline is not the carrier's key but its
/// [`Want`] (a later deadline armed out of order, or none). Seqs never reach this bit.
const ELSEWHERE: u64 = 1 << 63;

/// "No row" in a descriptor's [`PollDesc::timer_slot`].
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// One side's carrier, in the dense array judging an entry reads (16 bytes a side).
#[derive(Clone, Copy, Debug)]
struct Carrier {
    /// The carrier entry's instant (ns on the Poller's clock).
    at: u64,
    /// The carrier entry's seq, with [`ELSEWHERE`] when the side's deadline is in its
    /// [`Want`]; [`NONE`] in a free row.
    seq: u64,
}

impl Carrier {
    const FREE: Carrier = Carrier {
        at: NONE,
        seq: NONE,
    };
}

/// One side's current deadline when it is not its carrier's key (read only when the carrier
/// comes to the top): `(ns, seq of the arming)`, or [`NONE`]s when it has none.
#[derive(Clone, Copy, Debug)]
struct Want {
    at: u64,
    seq: u64,
}

/// Whose row it is: read only when the side's carrier comes to the top.
struct Owner {
    pd: Weak<PollDesc>,
    dir: Dir,
}

/// Nanoseconds of a deadline, saturated below [`NONE`].
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(NONE - 1)
        .min(NONE - 1)
}

/// What a deadline entry stands for.
enum Fate {
    /// Nothing: it is not its side's carrier any more.
    Stale,
    /// Its side's carrier, but the descriptor is gone.
    Gone,
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
    /// A deadline entry in the heap or the run: the row of its side.
    Deadline(u32),
    /// A deadline that came due (only in what [`Timers::due`] returns): expire `dir` of `pd`
    /// if its generation is still `gen`.
    Expire {
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
            Action::Expire { pd, dir, gen } => {
                if let Some(pd) = pd.upgrade() {
                    pd.side(dir).expire(gen);
                }
            }
            Action::Deadline(_) => {
                unreachable!("netpoll: a deadline entry fired without being settled")
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
/// two fronts is the next timer. Beside them, the deadline rows (see the
/// [module docs](self)). Not thread-safe by itself: the driver keeps it under a mutex.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    run: VecDeque<Entry>,
    next_seq: u64,
    /// The sides' carriers, by row ([`PollDesc::timer_slot`]).
    carriers: Vec<Carrier>,
    /// Their deadlines, where a carrier is marked [`ELSEWHERE`].
    wants: Vec<Want>,
    /// Whose each row is (`None`: free).
    owners: Vec<Option<Owner>>,
    /// Free rows.
    free: Vec<u32>,
    /// Deadline entries in the heap or the run that are not their side's carrier (exact).
    stale: usize,
    /// Sleep entries in the heap or the run, cancelled or not.
    sleeps: usize,
    /// The earliest entry may have changed since [`take_head_change`](Timers::take_head_change)
    /// last said.
    head_moved: bool,
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
            .field("rows", &(self.carriers.len() - self.free.len()))
            .finish()
    }
}

impl Timers {
    /// Arms a sleep; returns whether it is now the earliest.
    pub(crate) fn push(&mut self, at: Duration, action: Action) -> bool {
        debug_assert!(matches!(action, Action::Wake(_)), "push arms sleeps");
        self.sleeps += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(Entry { at, seq, action })
    }

    fn insert(&mut self, e: Entry) -> bool {
        let in_order = self
            .run
            .back()
            .is_none_or(|last| (last.at, last.seq) <= (e.at, e.seq));
        // Behind a run that is not empty, the entry is at or after the run's front: not the
        // earliest (the usual case, a deadline re-armed in order: no look at the fronts).
        let earliest = if in_order && !self.run.is_empty() {
            false
        } else {
            self.peek().is_none_or(|top| e.at < top.at)
        };
        if in_order {
            self.run.push_back(e);
        } else {
            self.heap.push(e);
        }
        // An entry at the same instant as the front, after it, moves nothing; one before it does.
        self.head_moved |= earliest;
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

    /// When the earliest entry is due, in nanoseconds (`u64::MAX` when there is none): no
    /// entry is due before it, live or not (see [`Driver`](super::driver::Driver)'s
    /// `timer_head`).
    pub(crate) fn head_ns(&self) -> u64 {
        self.peek().map_or(u64::MAX, |e| {
            u64::try_from(e.at.as_nanos()).unwrap_or(u64::MAX)
        })
    }

    /// The new [`head_ns`](Self::head_ns) if the earliest entry may have changed since the last
    /// call (an entry popped, an earlier one armed, the timers compacted), for the driver to
    /// publish; `None` if it is the same.
    pub(crate) fn take_head_change(&mut self) -> Option<u64> {
        std::mem::take(&mut self.head_moved).then(|| self.head_ns())
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
        self.head_moved = true;
        match self.front()? {
            Front::Heap => self.heap.pop(),
            Front::Run => self.run.pop_front(),
        }
    }

    /// What deadline entry `(at, seq)` of row `row` stands for, from the row alone (one
    /// read of [`Carrier`]s when stale); with `owner`, a carrier whose descriptor is gone is
    /// [`Fate::Gone`] (that reads the descriptor's reference count: only for the top).
    fn fate(&self, at: Duration, seq: u64, row: u32, owner: bool) -> Fate {
        let c = self.carriers[row as usize];
        if c.seq & !ELSEWHERE != seq {
            return Fate::Stale;
        }
        if owner
            && self.owners[row as usize]
                .as_ref()
                .is_none_or(|o| o.pd.strong_count() == 0)
        {
            return Fate::Gone;
        }
        if c.seq & ELSEWHERE == 0 {
            // The carrier's key is the deadline.
            return Fate::Live;
        }
        let want = self.wants[row as usize];
        if want.at == NONE {
            Fate::Unarmed
        } else if (want.at, want.seq) == (ns(at), seq) {
            Fate::Live
        } else {
            Fate::Moved {
                at: want.at,
                seq: want.seq,
            }
        }
    }

    /// A cancelled sleep, or a deadline entry that is not its side's carrier. A carrier is
    /// kept, even one whose side has no deadline now or whose descriptor is gone: it is one
    /// entry a side, and it is settled when it reaches the top.
    fn is_cancelled(&self, e: &Entry) -> bool {
        match &e.action {
            Action::Wake(s) => s.cancelled.load(Ordering::Relaxed),
            Action::Deadline(row) => matches!(self.fate(e.at, e.seq, *row, false), Fate::Stale),
            Action::Expire { .. } => false,
        }
    }

    /// Takes a free row for side `dir` of `pd` (which has none).
    fn take_row(&mut self, pd: &Arc<PollDesc>, dir: Dir) -> u32 {
        let owner = Some(Owner {
            pd: Arc::downgrade(pd),
            dir,
        });
        let row = if let Some(row) = self.free.pop() {
            self.owners[row as usize] = owner;
            row
        } else {
            let row = u32::try_from(self.carriers.len())
                .ok()
                .filter(|&r| r != NO_SLOT)
                .expect("netpoll: more than 2^32 - 1 deadlines armed at once");
            self.carriers.push(Carrier::FREE);
            self.wants.push(Want {
                at: NONE,
                seq: NONE,
            });
            self.owners.push(owner);
            row
        };
        pd.timer_slot(dir).store(row, Ordering::Relaxed);
        row
    }

    /// Gives row `row` back (its carrier is leaving); returns its owner.
    fn give_row(&mut self, row: u32) -> Option<Owner> {
        self.carriers[row as usize] = Carrier::FREE;
        let owner = self.owners[row as usize].take();
        if let Some(o) = &owner {
            if let Some(pd) = o.pd.upgrade() {
                pd.timer_slot(o.dir).store(NO_SLOT, Ordering::Relaxed);
            }
        }
        self.free.push(row);
        owner
    }

    /// Sets (`Some`) or clears the deadline of `pd`'s `dir` side (its generation was just
    /// bumped, under the same lock); returns whether a new entry is now the earliest. Re-arming
    /// costs no heap operation: an append to the run, or nothing (see the [module docs](self)).
    /// It touches the descriptor only to read its row's index.
    pub(crate) fn set_deadline(
        &mut self,
        pd: &Arc<PollDesc>,
        dir: Dir,
        at: Option<Duration>,
    ) -> bool {
        let row = pd.timer_slot(dir).load(Ordering::Relaxed);
        let Some(at) = at else {
            // A side with no row has no carrier and no deadline.
            if row != NO_SLOT {
                self.wants[row as usize] = Want {
                    at: NONE,
                    seq: NONE,
                };
                self.carriers[row as usize].seq |= ELSEWHERE;
            }
            return false;
        };
        // A side has a row exactly while it has a carrier.
        let carrier = row != NO_SLOT;
        let row = if carrier { row } else { self.take_row(pd, dir) };
        let seq = self.next_seq;
        self.next_seq += 1;
        // In deadline order (the usual "now + timeout"), a new carrier costs an append and the
        // old one is popped from the run's front in O(1) when it comes first; out of order, the
        // old carrier is moved here when it comes due (a heap operation then, not now). In
        // order, the row is only written (a store, which does not wait for its line).
        let in_order = self
            .run
            .back()
            .is_none_or(|last| (last.at, last.seq) <= (at, seq));
        if carrier && !in_order && self.carriers[row as usize].at <= ns(at) {
            self.wants[row as usize] = Want { at: ns(at), seq };
            self.carriers[row as usize].seq |= ELSEWHERE;
            return false;
        }
        if carrier {
            self.stale += 1;
        }
        self.carriers[row as usize] = Carrier { at: ns(at), seq };
        self.insert(Entry {
            at,
            seq,
            action: Action::Deadline(row),
        })
    }

    /// Pops the top entry, which is a deadline's, and settles it: dropped (stale, unarmed or
    /// its descriptor gone), moved to its side's current deadline, or returned as an
    /// [`Action::Expire`] (live, with the generation it fires with, which is the side's:
    /// deadline and generation change together under the lock). A carrier that leaves gives
    /// its row back.
    fn settle_top(&mut self) -> Option<Entry> {
        let e = self.pop().expect("settle_top with no timer");
        let Action::Deadline(row) = e.action else {
            unreachable!("settle_top is called on deadline entries");
        };
        match self.fate(e.at, e.seq, row, true) {
            Fate::Stale => {
                self.stale -= 1;
                None
            }
            Fate::Gone | Fate::Unarmed => {
                self.give_row(row);
                None
            }
            Fate::Moved { at, seq } => {
                self.carriers[row as usize] = Carrier { at, seq };
                self.insert(Entry {
                    at: Duration::from_nanos(at),
                    seq,
                    action: e.action,
                });
                None
            }
            Fate::Live => {
                let Owner { pd, dir } = self.give_row(row)?;
                let gen = pd.upgrade()?.side(dir).generation();
                Some(Entry {
                    at: e.at,
                    seq: e.seq,
                    action: Action::Expire { pd, dir, gen },
                })
            }
        }
    }

    /// Drops cancelled entries if they are the majority. The counts say when they cannot be
    /// (then nothing is read) and when stale deadlines alone are (then nothing is counted).
    fn compact(&mut self) {
        let len = self.heap.len() + self.run.len();
        if (self.stale + self.sleeps) * 2 <= len {
            return;
        }
        if self.stale * 2 <= len {
            let all = self.heap.iter().chain(self.run.iter());
            let dead = all.filter(|e| self.is_cancelled(e)).count();
            if dead * 2 <= len {
                return;
            }
        }
        let heap = std::mem::take(&mut self.heap);
        let live: Vec<Entry> = heap
            .into_vec()
            .into_iter()
            .filter(|e| !self.is_cancelled(e))
            .collect();
        self.heap = BinaryHeap::from(live);
        self.head_moved = true;
        let mut run = std::mem::take(&mut self.run);
        run.retain(|e| !self.is_cancelled(e));
        self.run = run;
        self.stale = 0;
        self.sleeps = self
            .heap
            .iter()
            .chain(self.run.iter())
            .filter(|e| matches!(e.action, Action::Wake(_)))
            .count();
    }

    /// The earliest live deadline.
    pub(crate) fn next(&mut self) -> Option<Duration> {
        while let Some(e) = self.peek() {
            match &e.action {
                Action::Wake(s) if s.cancelled.load(Ordering::Relaxed) => {
                    self.pop();
                    self.sleeps -= 1;
                }
                Action::Wake(_) | Action::Expire { .. } => return Some(e.at),
                Action::Deadline(row) => match self.fate(e.at, e.seq, *row, true) {
                    Fate::Live => return Some(e.at),
                    // What `settle_top` would do, without judging the entry again.
                    Fate::Stale => {
                        self.pop();
                        self.stale -= 1;
                    }
                    _ => {
                        let settled = self.settle_top();
                        debug_assert!(settled.is_none(), "a live deadline was settled by next()");
                    }
                },
            }
        }
        None
    }

    /// Pops every entry due at `now`, earliest first.
    pub(crate) fn due(&mut self, now: Duration, out: &mut Vec<Entry>) {
        while let Some(e) = self.peek().filter(|e| e.at <= now) {
            match &e.action {
                Action::Deadline(_) => out.extend(self.settle_top()),
                Action::Wake(_) | Action::Expire { .. } => {
                    let e = self.pop().expect("peeked");
                    self.sleeps -= 1;
                    if !self.is_cancelled(&e) {
                        out.push(e);
                    }
                }
            }
        }
    }

    /// How many sleeps are armed and live (for deadlock reports).
    pub(crate) fn live_sleeps(&self) -> usize {
        self.heap
            .iter()
            .chain(self.run.iter())
            .filter(|e| matches!(e.action, Action::Wake(_)) && !self.is_cancelled(e))
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
                Action::Expire { pd, dir, gen } => pd
                    .upgrade()
                    .is_some_and(|pd| pd.side(*dir).generation() == *gen),
                Action::Deadline(_) => unreachable!("the reference arms no rows"),
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
        // What the driver would have published as the head (see `take_head_change`).
        let mut published = u64::MAX;
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
                        old.push(at, Action::Expire { pd, dir, gen });
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
            if let Some(head) = new.take_head_change() {
                published = head;
            }
            assert_eq!(published, new.head_ns(), "the published head, {ctx}");
            assert_eq!(new.next_seq, old.next_seq, "seq counters, {ctx}");
            let all = || new.heap.iter().chain(new.run.iter());
            let stale = all()
                .filter(|e| matches!(e.action, Action::Deadline(_)) && new.is_cancelled(e))
                .count();
            let sleeps = all()
                .filter(|e| matches!(e.action, Action::Wake(_)))
                .count();
            assert_eq!((new.stale, new.sleeps), (stale, sleeps), "counts, {ctx}");
            let rows = all()
                .filter(|e| matches!(e.action, Action::Deadline(_)) && !new.is_cancelled(e))
                .count();
            assert_eq!(
                rows,
                new.carriers.len() - new.free.len(),
                "one row a carrier, {ctx}"
            );
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
                Action::Expire { gen, .. } => *gen,
                _ => panic!("only a fired deadline has a generation"),
            }
        }
    }
}

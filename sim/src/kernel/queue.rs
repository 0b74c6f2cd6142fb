//! The event queue: a calendar queue of payloads under `u128` keys whose high 64 bits are a
//! virtual instant.
//!
//! A single binary heap of every event in flight costs a cache miss per level on each pop once
//! it outgrows the cache: with 100,000 connections open at once it holds a few hundred thousand
//! packets, and its sift-downs were a fifth of the run. Packets land 5 to 50 µs ahead (the
//! simulated latency), so the queue splits time into buckets of 1,024 ns:
//!
//! - `run`: every key of the current bucket, sorted once when the bucket opens, taken from the
//!   back. Pops read it in sequence, so it costs no cache miss however large the bucket grows
//!   (with a million connections open at once a bucket holds about 100,000 packets: as a heap,
//!   every pop missed the cache on each of its 17 levels, the one term of the run that grew
//!   faster than the connections). It also lets the kernel look at the next events before it
//!   runs them ([`EventQueue::ahead_range`]) and bring their state into the cache early.
//! - `late`: a small heap for keys that land in the current bucket (or earlier) after it
//!   opened (a zero latency drawn by a fault plan). A pop takes the smaller of the two heads.
//! - `ring`: the next [`RING`] buckets, each an unsorted vector (a push is an append). When
//!   `run` and `late` are empty, the next pop sorts the next non-empty bucket into `run`.
//! - `far`: a heap for anything further ahead (SYN retransmissions after a second, long
//!   latencies drawn by a fault plan); its keys move into the ring as the current bucket
//!   catches up.
//!
//! Payloads travel with their keys: kept apart in a slab, each pop missed the cache on a slot
//! written tens of thousands of events earlier.
//!
//! The current bucket moves on only when a pop needs it to, never when a push lands in an empty
//! queue or a bucket runs dry: a kernel pushes at "now plus a latency", and "now" may be well
//! before the next queued key. (Moving on early once put every SYN of a 100,000-connection burst
//! behind the first one drawn, in the small heap meant for stragglers.)
//!
//! Keys come out in exactly the order one heap would give (every key is unique: its low bits
//! are an insertion sequence), so the change is invisible to a run.

use std::cell::Cell;
use std::collections::BinaryHeap;

/// log2 of a bucket's width in nanoseconds.
const SHIFT: u32 = 10;
/// Buckets in the ring (65 µs at 1,024 ns a bucket, beyond the default 50 µs latency).
const RING: u64 = 64;

fn bucket(key: u128) -> u64 {
    ((key >> 64) as u64) >> SHIFT
}

/// A key and its payload, ordered by the key alone, smallest first out of a `BinaryHeap`.
#[derive(Debug)]
struct Ev<T>(u128, T);

impl<T> PartialEq for Ev<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T> Eq for Ev<T> {}

impl<T> PartialOrd for Ev<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Ev<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.cmp(&self.0)
    }
}

#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    /// The current bucket's keys as it opened, sorted largest first (the next pop is last).
    /// Payloads are `Some` until the bucket's sort takes them (see [`sort_bucket`]).
    run: Vec<Ev<Option<T>>>,
    /// [`sort_bucket`]'s scratch: each place's event, and the events as they were queued.
    order: Vec<u32>,
    keys: Vec<u32>,
    unsorted: Vec<Ev<Option<T>>>,
    /// Keys placed in the current bucket, or earlier, after it opened.
    late: BinaryHeap<Ev<T>>,
    /// Bucket `b` in `cur + 1 ..= cur + RING` lives at `ring[b % RING]`.
    ring: Vec<Vec<Ev<Option<T>>>>,
    in_ring: usize,
    /// Every key whose bucket is beyond `cur + RING`.
    far: BinaryHeap<Ev<T>>,
    /// The current bucket.
    cur: u64,
    /// The smallest key in `ring` and `far`, once `peek` has looked for it (`None`: not known).
    next: Cell<Option<u128>>,
}

/// The counting sort's fixed cost (clearing and summing 1,024 counters) beats a comparison sort
/// from about this many events; below it (nearly every bucket of a windowed run or a small
/// one) the comparison sort is cheaper.
const COUNT_FROM: usize = 256;

/// A small bucket's events are sorted as `u32` keys, the instant within the bucket above the
/// event's place in the bucket (below `1 << PLACE_BITS`).
const PLACE_BITS: u32 = 32 - SHIFT;

/// The bits of the instant a pass of the small buckets' radix sort takes (two passes).
const RADIX: u32 = SHIFT / 2;

/// Sorts bucket `b`'s events largest key first, as `run` wants them. Keys are unique, so there
/// is one such order, whatever the method.
///
/// A bucket is appended to in insertion order, and a key's low 64 bits are its insertion
/// sequence, so the bucket is nearly always in sequence order already. Then the order by key
/// is the order by the instant within the bucket (1,024 values), ties in place order, and one
/// pass that checks this also finds each event's instant:
///
/// - a small bucket ([`COUNT_FROM`]) sorts one `u32` an event, the instant above the place,
///   by a radix sort of two five-bit passes ([`radix_order`]), then one pass moves each event
///   into its place (the comparison sort of the events themselves, their 128-bit keys
///   compared, was about 120 instructions an event at 2,000 connections);
/// - a large one takes a counting sort on the instant, whose second pass moves each event
///   straight to its place ([`counting_sort`]).
///
/// The events move from `run` into `unsorted`'s allocation (the two then trade places).
/// Events moved in from the far heap arrive out of sequence; such a bucket, or one whose
/// instants span more than a bucket (never, but not worth an assumption), takes the
/// comparison sort of the events themselves.
///
/// (Moving the events along the permutation's cycles in place, each swap two 48-byte moves, was
/// about 100 instructions an event at 20,000 connections all at once; this is under half.)
fn sort_bucket<T>(
    run: &mut Vec<Ev<Option<T>>>,
    b: u64,
    order: &mut Vec<u32>,
    keys: &mut Vec<u32>,
    unsorted: &mut Vec<Ev<Option<T>>>,
) {
    let base = b << SHIFT;
    if run.len() < COUNT_FROM {
        if radix_order(run, base, order, keys) {
            std::mem::swap(run, unsorted);
            run.clear();
            run.extend(order.iter().map(|&i| {
                let e = &mut unsorted[i as usize];
                Ev(e.0, e.1.take())
            }));
            // Only emptied slots are left.
            unsorted.clear();
            return;
        }
    } else if counting_sort(run, base, unsorted) {
        return;
    }
    run.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
}

/// The instant of `e` within the bucket that starts at `base` (1 << SHIFT or more: not in it).
#[inline(always)]
fn instant_in<T>(e: &Ev<T>, base: u64) -> u64 {
    ((e.0 >> 64) as u64).wrapping_sub(base)
}

/// [`sort_bucket`] of a small bucket: fills `order` with the places of `run`'s events, largest
/// key first, by a radix sort of `u32` keys (the instant above the place) in two stable passes
/// of five bits. `false`: the bucket is out of sequence or spills over (`order` is garbage).
fn radix_order<T>(
    run: &[Ev<Option<T>>],
    base: u64,
    order: &mut Vec<u32>,
    keys: &mut Vec<u32>,
) -> bool {
    let n = run.len();
    // One pass: in sequence, within the bucket, and each event's key.
    keys.clear();
    let mut ok = true;
    let mut prev_seq = None;
    for (i, e) in run.iter().enumerate() {
        let seq = e.0 as u64;
        let at = instant_in(e, base);
        ok &= at < 1 << SHIFT && prev_seq.is_none_or(|p| p < seq);
        prev_seq = Some(seq);
        keys.push(((at as u32) << PLACE_BITS) | i as u32);
    }
    if !ok {
        return false;
    }
    let digit =
        |k: u32, pass: u32| ((k >> (PLACE_BITS + pass * RADIX)) & ((1 << RADIX) - 1)) as usize;
    let (mut lo, mut hi) = ([0u32; 1 << RADIX], [0u32; 1 << RADIX]);
    for &k in keys.iter() {
        lo[digit(k, 0)] += 1;
        hi[digit(k, 1)] += 1;
    }
    // Each pass places largest digit first (its counts summed from the largest digit down) and
    // keeps equal digits in the order it reads them: the first reads the keys largest place
    // first, the second reads the first's result in order.
    let (mut sum_lo, mut sum_hi) = (0, 0);
    for (l, h) in lo.iter_mut().zip(hi.iter_mut()).rev() {
        (*l, sum_lo) = (sum_lo, sum_lo + *l);
        (*h, sum_hi) = (sum_hi, sum_hi + *h);
    }
    order.clear();
    order.resize(n, 0);
    for &k in keys.iter().rev() {
        let at = &mut lo[digit(k, 0)];
        order[*at as usize] = k;
        *at += 1;
    }
    for &k in order.iter() {
        let at = &mut hi[digit(k, 1)];
        keys[*at as usize] = k & ((1 << PLACE_BITS) - 1);
        *at += 1;
    }
    std::mem::swap(order, keys);
    true
}

/// [`sort_bucket`] of a large bucket: sorts `run` largest key first by a counting sort on the
/// instant, each event moved once, straight to its place in `unsorted`'s allocation (the two
/// then trade places). `false` as [`radix_order`] (`run` is left as it was).
fn counting_sort<T>(
    run: &mut Vec<Ev<Option<T>>>,
    base: u64,
    unsorted: &mut Vec<Ev<Option<T>>>,
) -> bool {
    let n = run.len();
    if u32::try_from(n).is_err() {
        return false;
    }
    // next_at[t]: the next place for an event at instant `base + t`, counting from the front;
    // first, how many events fall there (in the pass that checks the bucket), then how many
    // at later instants.
    let mut next_at = [0u32; 1 << SHIFT];
    let mut ok = true;
    let mut prev_seq = None;
    for e in run.iter() {
        let seq = e.0 as u64;
        let at = instant_in(e, base);
        ok &= at < 1 << SHIFT && prev_seq.is_none_or(|p| p < seq);
        prev_seq = Some(seq);
        next_at[at as usize & ((1 << SHIFT) - 1)] += 1;
    }
    if !ok {
        return false;
    }
    let mut later = 0u32;
    for c in next_at.iter_mut().rev() {
        let here = *c;
        *c = later;
        later += here;
    }
    unsorted.clear();
    unsorted.resize_with(n, || Ev(0, None));
    // Latest sequence first, so that at one instant the larger key takes the earlier place.
    for e in run.iter_mut().rev() {
        let at = &mut next_at[instant_in(e, base) as usize & ((1 << SHIFT) - 1)];
        unsorted[*at as usize] = Ev(e.0, e.1.take());
        *at += 1;
    }
    std::mem::swap(run, unsorted);
    // Only emptied slots are left.
    unsorted.clear();
    true
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue {
            run: Vec::new(),
            order: Vec::new(),
            keys: Vec::new(),
            unsorted: Vec::new(),
            late: BinaryHeap::new(),
            ring: (0..RING).map(|_| Vec::new()).collect(),
            in_ring: 0,
            far: BinaryHeap::new(),
            cur: 0,
            next: Cell::new(None),
        }
    }
}

impl<T> EventQueue<T> {
    pub(crate) fn len(&self) -> usize {
        self.run.len() + self.late.len() + self.in_ring + self.far.len()
    }

    /// The key of the run's next event.
    #[inline]
    fn run_next(&self) -> Option<u128> {
        self.run.last().map(|e| e.0)
    }

    /// The smallest key.
    #[inline]
    pub(crate) fn peek(&self) -> Option<u128> {
        match (self.run_next(), self.late.peek()) {
            (Some(a), None) => Some(a),
            (Some(a), Some(b)) => Some(a.min(b.0)),
            (None, None) => self.peek_beyond(),
            (None, Some(b)) => Some(b.0),
        }
    }

    /// Removes and returns the payload of the smallest key if that key's instant is `now` or
    /// earlier: [`EventQueue::peek`] and [`EventQueue::pop`] in one call. The common case (the
    /// next key is the sorted run's, nothing came late) is one comparison, inline.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<T> {
        if self.late.is_empty() {
            if let Some(e) = self.run.last() {
                if (e.0 >> 64) as u64 > now {
                    return None;
                }
                return self.run.pop().and_then(|e| e.1);
            }
        }
        self.pop_due_slow(now)
    }

    #[inline(never)]
    fn pop_due_slow(&mut self, now: u64) -> Option<T> {
        let key = self.peek()?;
        if (key >> 64) as u64 > now {
            return None;
        }
        self.pop().map(|(_, v)| v)
    }

    /// The smallest key beyond the current bucket (in the ring or far), remembered until the
    /// queue changes.
    fn peek_beyond(&self) -> Option<u128> {
        if let Some(k) = self.next.get() {
            return Some(k);
        }
        let k = if self.in_ring > 0 {
            let mut b = self.cur + 1;
            while self.ring[(b % RING) as usize].is_empty() {
                b += 1;
            }
            self.ring[(b % RING) as usize].iter().map(|e| e.0).min()
        } else {
            self.far.peek().map(|e| e.0)
        };
        self.next.set(k);
        k
    }

    /// The payload `n` places behind the next one in the current bucket's sorted run (0: the
    /// one after the next), if the run is that long. A hint for bringing state into the cache:
    /// it ignores keys that arrived late in the bucket, so it is not always the `n+1`th pop.
    #[inline]
    pub(crate) fn ahead(&self, n: usize) -> Option<&T> {
        let i = self.run.len().checked_sub(n + 2)?;
        self.run[i].1.as_ref()
    }

    /// [`EventQueue::ahead`] of `from`, `from + 1`, ... up to `to` (excluded), in that order,
    /// as far as the run goes: one slice, not a bounds check a look.
    #[inline]
    pub(crate) fn ahead_range(&self, from: usize, to: usize) -> impl Iterator<Item = &T> {
        let len = self.run.len();
        let hi = len.saturating_sub(from + 1);
        let lo = len.saturating_sub(to + 1).min(hi);
        self.run[lo..hi].iter().rev().filter_map(|e| e.1.as_ref())
    }

    #[inline]
    pub(crate) fn push(&mut self, key: u128, val: T) {
        self.place(Ev(key, val));
    }

    /// Removes and returns the smallest key and its payload.
    pub(crate) fn pop(&mut self) -> Option<(u128, T)> {
        if self.run.is_empty() && self.late.is_empty() {
            self.refill();
        }
        let from_run = match (self.run_next(), self.late.peek()) {
            (Some(a), Some(b)) => a < b.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        if from_run {
            let Ev(k, v) = self.run.pop().expect("peeked");
            Some((k, v.expect("a sorted bucket's events are all there")))
        } else {
            let Ev(k, v) = self.late.pop().expect("peeked");
            Some((k, v))
        }
    }

    #[inline]
    fn place(&mut self, e: Ev<T>) {
        let b = bucket(e.0);
        if b <= self.cur {
            self.late.push(e);
            return;
        }
        if let Some(k) = self.next.get() {
            self.next.set(Some(k.min(e.0)));
        }
        if b - self.cur <= RING {
            self.ring[(b % RING) as usize].push(Ev(e.0, Some(e.1)));
            self.in_ring += 1;
        } else {
            self.far.push(e);
        }
    }

    /// `run` and `late` ran dry: make the next non-empty bucket current.
    fn refill(&mut self) {
        self.next.set(None);
        let next = if self.in_ring > 0 {
            let mut b = self.cur + 1;
            while self.ring[(b % RING) as usize].is_empty() {
                b += 1;
            }
            b
        } else if let Some(e) = self.far.peek() {
            bucket(e.0)
        } else {
            return;
        };
        self.cur = next;
        // The bucket's slot first: a key `RING` buckets ahead maps to the same slot.
        let slot = (next % RING) as usize;
        if !self.ring[slot].is_empty() {
            self.in_ring -= self.ring[slot].len();
            // The empty run's allocation becomes the slot's, so neither is allocated again.
            std::mem::swap(&mut self.run, &mut self.ring[slot]);
            sort_bucket(
                &mut self.run,
                next,
                &mut self.order,
                &mut self.keys,
                &mut self.unsorted,
            );
        }
        while let Some(e) = self.far.peek() {
            if bucket(e.0) - self.cur > RING {
                break;
            }
            let e = self.far.pop().expect("peeked");
            self.place(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{sort_bucket, Ev, EventQueue, RING, SHIFT};
    use rand::{Rng, SeedableRng};
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// A bucket sorts largest key first, by counting in sequence order and by comparison
    /// otherwise, with equal instants and instants at both edges of the bucket.
    #[test]
    fn a_bucket_sorts_largest_first_either_way() {
        for seed in 0..50u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let b = rng.random_range(1..1_000_000u64);
            // Half of them small (the radix sort), half mostly large (the counting sort).
            let n = rng.random_range(0..if seed % 2 == 0 { 300 } else { 3_000 });
            let mut seq = rng.random_range(0..1_000u64);
            let mut run: Vec<Ev<Option<u128>>> = (0..n)
                .map(|_| {
                    seq += rng.random_range(1..3);
                    let at = (b << SHIFT)
                        + match rng.random_range(0..4) {
                            0 => 0,
                            1 => (1 << SHIFT) - 1,
                            _ => rng.random_range(0..1 << SHIFT),
                        };
                    let key = (u128::from(at) << 64) | u128::from(seq);
                    Ev(key, Some(!key))
                })
                .collect();
            if seed % 3 == 0 && n > 1 {
                // Out of sequence, as after a move from the far heap.
                let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
                run.swap(i, j);
            }
            let mut want: Vec<u128> = run.iter().map(|e| e.0).collect();
            want.sort_unstable_by(|a, b| b.cmp(a));
            let (mut order, mut keys, mut unsorted) = (vec![7; 3], vec![9; 5], Vec::new());
            sort_bucket(&mut run, b, &mut order, &mut keys, &mut unsorted);
            let got: Vec<u128> = run.iter().map(|e| e.0).collect();
            assert_eq!(got, want, "seed {seed}");
            assert!(run.iter().all(|e| e.1 == Some(!e.0)), "seed {seed}");
        }
    }

    /// The calendar queue pops the same keys in the same order as one binary heap, across
    /// pushes near, in the ring, far ahead and at the current instant, interleaved with pops.
    #[test]
    fn pops_in_the_order_one_heap_would() {
        for seed in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut q = EventQueue::<u128>::default();
            let mut h = BinaryHeap::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            for step in 0..20_000 {
                if rng.random_bool(0.55) {
                    let ahead = match rng.random_range(0..10) {
                        0 => 0,
                        1 => rng.random_range(0..1u64 << SHIFT),
                        2 => rng.random_range(0..(RING + 4) << SHIFT) * 3,
                        3 => 1_000_000_000 << rng.random_range(0..4),
                        _ => rng.random_range(5_000..50_000),
                    };
                    seq += 1;
                    let key = (u128::from(now + ahead) << 64) | u128::from(seq);
                    q.push(key, !key);
                    h.push(Reverse(key));
                } else if rng.random_bool(0.5) {
                    let want = h.pop().map(|k| (k.0, !k.0));
                    assert_eq!(q.pop(), want, "seed {seed} step {step}");
                    if let Some((k, _)) = want {
                        now = (k >> 64) as u64;
                    }
                } else {
                    // What is due at an instant a little ahead, as the kernel's `run_due` takes it.
                    let at = now + rng.random_range(0..3_000u64);
                    loop {
                        let due = h.peek().is_some_and(|k| (k.0 >> 64) as u64 <= at);
                        let want = if due { h.pop().map(|k| !k.0) } else { None };
                        assert_eq!(q.pop_due(at), want, "seed {seed} step {step}");
                        if want.is_none() {
                            break;
                        }
                    }
                    now = now.max(at);
                }
                assert_eq!(q.peek(), h.peek().map(|k| k.0), "seed {seed} step {step}");
                // A look ahead names queued keys after the next, in order.
                let ahead: Vec<u128> = (0..4).map_while(|n| q.ahead(n).map(|v| !v)).collect();
                for (from, to) in [(0, 4), (1, 3), (2, 2), (3, 9)] {
                    let want: Vec<u128> = (from..to).map_while(|n| q.ahead(n).copied()).collect();
                    let got: Vec<u128> = q.ahead_range(from, to).copied().collect();
                    assert_eq!(got, want, "seed {seed} step {step}");
                }
                assert!(
                    ahead.windows(2).all(|w| w[0] < w[1]),
                    "seed {seed} step {step}"
                );
                assert!(
                    ahead.iter().all(|&k| Some(k) > q.peek()),
                    "seed {seed} step {step}"
                );
                assert_eq!(q.len(), h.len());
            }
            while let Some(k) = h.pop() {
                assert_eq!(q.pop(), Some((k.0, !k.0)), "seed {seed} draining");
            }
            assert_eq!(q.pop(), None);
        }
    }
}

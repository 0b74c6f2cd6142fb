//! A FIFO of bytes with `memcpy` at both ends, stored in three parts so that its owner can lay
//! them out for the cache: its bookkeeping ([`QueueState`], 8 bytes: the length and where the
//! bytes are), up to [`INLINE`] bytes inline (a TCP direction keeps both in its connection, the
//! bookkeeping beside the direction's state, the bytes in a cache line of their own), and, for
//! larger contents, a ring in a table of rings ([`Rings`]). [`ByteQueue`] joins the three for
//! one operation.
//!
//! With 100,000 connections open at once, a separately allocated buffer per direction cost a
//! cache miss on every write and every read (14% of the run in `memmove`). Inline bytes always
//! start at the front of their line, so a 64-byte message is one cache line. Larger contents
//! move to a ring ([`ring_size`]: a power of two up to 64 KiB, then in eighths): a write is
//! copied in once and a read out once, in at most two pieces each, nothing is ever slid down.
//! A ring at least doubles when it grows (so growing copies little), and a large one that falls
//! to a quarter full shrinks to twice what it holds: its memory follows the bytes queued (which
//! the TCP windows and the `tcp_mem` account bound), not the most the queue ever held.
//! `VecDeque<u8>` would do, but its `extend` copies byte by byte.

use std::num::NonZeroU32;

use crate::slab::Slab;

/// Bytes held without a heap allocation.
pub(crate) const INLINE: usize = 64;

/// A ring that empties and is larger than this goes back inline (a burst is over: idle
/// sockets stay small); a larger ring that falls to a quarter full is halved (at least), down to
/// this size: a ring is never more than four times what it holds beyond this, so memory
/// follows the bytes queued (which the TCP memory account bounds), not the most a queue
/// once held.
const KEEP: usize = 64 * 1024;

/// The bytes of a queue too large to be inline: live bytes are the queue's length from `head`,
/// wrapping at the end of `buf` (see [`ring_size`] for its length).
#[derive(Debug)]
pub(crate) struct Ring {
    buf: Box<[u8]>,
    head: usize,
}

/// The rings of a set of queues.
pub(crate) type Rings = Slab<Ring>;

/// A queue's bookkeeping: how many bytes it holds, and the ring that holds them (its index in
/// [`Rings`] plus one), if they are not inline (where they are `inline[..len]`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QueueState {
    len: u32,
    ring: Option<NonZeroU32>,
}

const _: () = assert!(std::mem::size_of::<QueueState>() == 8);

impl QueueState {
    /// The bytes queued. At most `u32::MAX`: a TCP direction holds at most its window.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the queue's bytes are in its inline line: it holds some and has no ring.
    #[inline]
    pub(crate) fn holds_inline(&self) -> bool {
        self.len != 0 && self.ring.is_none()
    }

    /// Whether the queue holds nothing and has no ring: its next bytes go inline, to whichever
    /// line its owner hands it then.
    #[inline]
    pub(crate) fn empty_inline(&self) -> bool {
        self.len == 0 && self.ring.is_none()
    }
}

/// One queue: its bookkeeping, its inline bytes, and the rings.
pub(crate) struct ByteQueue<'a> {
    pub(crate) st: &'a mut QueueState,
    pub(crate) inline: &'a mut [u8; INLINE],
    pub(crate) rings: &'a mut Rings,
}

/// The length of a ring for `n` bytes: the next power of two up to [`KEEP`], above it the next
/// eighth of a power of two (at most 12.5% more than asked, where a power of two could be
/// twice: a single 2.1 MB write takes a 2.36 MB ring, not 4 MiB).
fn ring_size(n: usize) -> usize {
    if n <= KEEP {
        return n.next_power_of_two();
    }
    let step = n.next_power_of_two() / 8;
    n.div_ceil(step) * step
}

/// `i` (below twice the ring's length) brought into the ring.
#[inline]
fn wrap(i: usize, cap: usize) -> usize {
    if i >= cap {
        i - cap
    } else {
        i
    }
}

/// `dst.copy_from_slice(src)` for at most [`INLINE`] bytes, as fixed-size moves: 16 to 64
/// bytes are two overlapping copies of the largest power of two not above the length (what
/// `memcpy` does, without its call and its dispatch on the length: every segment of a small
/// message is copied in and out of a line like this twice).
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    debug_assert!(n <= INLINE && dst.len() == n);
    if n >= 32 {
        copy_two::<32>(dst, src);
    } else if n >= 16 {
        copy_two::<16>(dst, src);
    } else {
        dst.copy_from_slice(src);
    }
}

/// `src` (`W` to `2 * W` bytes) into `dst` as two overlapping copies of `W` bytes: its first
/// and its last `W`, both read before either is written.
#[inline(always)]
fn copy_two<const W: usize>(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    let a: [u8; W] = src[..W].try_into().expect("W bytes");
    let b: [u8; W] = src[n - W..].try_into().expect("W bytes");
    dst[..W].copy_from_slice(&a);
    dst[n - W..].copy_from_slice(&b);
}

/// Copies `src` into `ring` starting at `at`, wrapping at its end.
fn copy_in(ring: &mut [u8], at: usize, src: &[u8]) {
    let first = src.len().min(ring.len() - at);
    ring[at..at + first].copy_from_slice(&src[..first]);
    ring[..src.len() - first].copy_from_slice(&src[first..]);
}

/// Fills `dst` from `ring` starting at `at`, wrapping at its end.
fn copy_out(ring: &[u8], at: usize, dst: &mut [u8]) {
    let first = dst.len().min(ring.len() - at);
    let n = dst.len();
    dst[..first].copy_from_slice(&ring[at..at + first]);
    dst[first..].copy_from_slice(&ring[..n - first]);
}

impl Ring {
    /// A ring of at least `cap` bytes holding `live` (its first byte at the start).
    fn with(cap: usize, live: &[u8]) -> Ring {
        let mut buf = vec![0u8; ring_size(cap)].into_boxed_slice();
        buf[..live.len()].copy_from_slice(live);
        Ring { buf, head: 0 }
    }

    /// A ring of at least `cap` bytes holding this one's first `len` bytes (copied straight
    /// across: no bytes are staged between the two rings).
    fn moved(&self, cap: usize, len: usize) -> Ring {
        let mut buf = vec![0u8; ring_size(cap)].into_boxed_slice();
        copy_out(&self.buf, self.head, &mut buf[..len]);
        Ring { buf, head: 0 }
    }
}

impl ByteQueue<'_> {
    pub(crate) fn len(&self) -> usize {
        self.st.len()
    }

    fn ring_id(&self) -> Option<u32> {
        self.st.ring.map(|r| r.get() - 1)
    }

    /// Puts the bytes in `ring` (they were inline, or in another ring).
    fn set_ring(&mut self, ring: Ring) {
        match self.ring_id() {
            Some(id) => self.rings[id] = ring,
            None => {
                let id = self.rings.insert(ring);
                self.st.ring = NonZeroU32::new(id + 1);
            }
        }
    }

    /// The bytes go back inline (there are none): the ring is freed.
    fn drop_ring(&mut self) {
        if let Some(id) = self.ring_id() {
            self.rings.remove(id);
            self.st.ring = None;
        }
    }

    /// Appends `bytes` at the back. Inline up to the common case, bytes that fit inline.
    #[inline]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let l = self.len();
        let want = l + bytes.len();
        if want <= INLINE && self.ring_id().is_none() {
            copy_small(&mut self.inline[l..want], bytes);
            self.st.len = want as u32;
            return;
        }
        self.push_slow(bytes);
    }

    /// [`ByteQueue::push`] into a ring, or bytes that make one.
    #[inline(never)]
    fn push_slow(&mut self, bytes: &[u8]) {
        let l = self.len();
        let want = l + bytes.len();
        match self.ring_id() {
            None if want <= INLINE => {
                self.inline[l..want].copy_from_slice(bytes);
            }
            None => {
                let ring = Ring::with(want, &self.inline[..l]);
                self.set_ring(ring);
                return self.push(bytes);
            }
            Some(id) => {
                let ring = &mut self.rings[id];
                if want > ring.buf.len() {
                    // Doubling (an eighth at a time made a window's worth of growing copy
                    // eight times the bytes, and the 200 x 16 MiB echo twice as slow).
                    let new = ring.moved(want.max(2 * ring.buf.len()), l);
                    self.rings[id] = new;
                    return self.push(bytes);
                }
                let at = wrap(ring.head + l, ring.buf.len());
                copy_in(&mut ring.buf, at, bytes);
            }
        }
        self.st.len = want as u32;
    }

    /// Copies the first `dst.len()` bytes out and removes them. `dst` must not be longer than
    /// the queue.
    pub(crate) fn pop_into(&mut self, dst: &mut [u8]) {
        let n = dst.len();
        let l = self.len();
        assert!(n <= l, "ByteQueue: popping more than it holds");
        match self.ring_id() {
            None => {
                copy_small(dst, &self.inline[..n]);
                if n < l {
                    self.inline.copy_within(n..l, 0);
                }
                self.st.len = (l - n) as u32;
            }
            Some(id) => {
                let ring = &mut self.rings[id];
                copy_out(&ring.buf, ring.head, dst);
                ring.head = wrap(ring.head + n, ring.buf.len());
                if l == n {
                    ring.head = 0;
                }
                self.st.len = (l - n) as u32;
                self.shrink();
            }
        }
    }

    /// Gives back a large ring that is mostly empty (see [`KEEP`]).
    fn shrink(&mut self) {
        let Some(id) = self.ring_id() else {
            return;
        };
        let len = self.len();
        let ring = &self.rings[id];
        if ring.buf.len() <= KEEP || len > ring.buf.len() / 4 {
            return;
        }
        if len == 0 {
            self.drop_ring();
            return;
        }
        let new = ring.moved((2 * len).max(KEEP), len);
        self.rings[id] = new;
    }

    /// Copies the first `dst.len()` bytes out and leaves them queued (`MSG_PEEK`). `dst` must
    /// not be longer than the queue.
    pub(crate) fn peek_into(&self, dst: &mut [u8]) {
        let n = dst.len();
        assert!(n <= self.len(), "ByteQueue: peeking more than it holds");
        match self.ring_id() {
            None => dst.copy_from_slice(&self.inline[..n]),
            Some(id) => {
                let ring = &self.rings[id];
                copy_out(&ring.buf, ring.head, dst);
            }
        }
    }

    /// Removes `n` bytes starting `at` bytes from the front.
    pub(crate) fn remove(&mut self, at: usize, n: usize) {
        let l = self.len();
        assert!(at + n <= l, "ByteQueue: removing past the end");
        match self.ring_id() {
            None => self.inline.copy_within(at + n..l, at),
            Some(id) => {
                // The bytes after the gap move down over it (rare: a segment that was not
                // delivered), through a copy of that tail.
                let ring = &mut self.rings[id];
                let cap = ring.buf.len();
                let mut tail = vec![0u8; l - at - n];
                copy_out(&ring.buf, wrap(ring.head + at + n, cap), &mut tail);
                copy_in(&mut ring.buf, wrap(ring.head + at, cap), &tail);
                if l == n {
                    ring.head = 0;
                }
            }
        }
        self.st.len = (l - n) as u32;
    }

    /// Removes the first `n` bytes.
    pub(crate) fn discard_front(&mut self, n: usize) {
        let l = self.len();
        match self.ring_id() {
            Some(id) => {
                assert!(n <= l, "ByteQueue: discarding more than it holds");
                let ring = &mut self.rings[id];
                ring.head = wrap(ring.head + n, ring.buf.len());
                if l == n {
                    ring.head = 0;
                }
                self.st.len = (l - n) as u32;
                self.shrink();
            }
            None => self.remove(0, n),
        }
    }

    /// Frees the queue's ring, if it has one (its owner is going away).
    pub(crate) fn free(mut self) {
        self.drop_ring();
        self.st.len = 0;
    }

    /// Bytes of memory the queue holds beyond itself (for tests of the bound).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.ring_id().map_or(0, |id| self.rings[id].buf.len())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_small_copies_every_length_up_to_a_line() {
        for n in 0..=super::INLINE {
            let src: Vec<u8> = (0..n as u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(11))
                .collect();
            let mut dst = vec![0xaa; n];
            super::copy_small(&mut dst, &src);
            assert_eq!(dst, src, "{n} bytes");
        }
    }

    use super::{ByteQueue, QueueState, Rings, INLINE};
    use std::collections::VecDeque;

    /// A queue with its three parts of its own.
    struct Owned {
        st: QueueState,
        inline: [u8; INLINE],
        rings: Rings,
    }

    impl Owned {
        fn q(&mut self) -> ByteQueue<'_> {
            ByteQueue {
                st: &mut self.st,
                inline: &mut self.inline,
                rings: &mut self.rings,
            }
        }
        fn len(&self) -> usize {
            self.st.len()
        }
        fn push(&mut self, b: &[u8]) {
            self.q().push(b)
        }
        fn pop_into(&mut self, b: &mut [u8]) {
            self.q().pop_into(b)
        }
        fn remove(&mut self, at: usize, n: usize) {
            self.q().remove(at, n)
        }
        fn discard_front(&mut self, n: usize) {
            self.q().discard_front(n)
        }
        fn heap_bytes(&mut self) -> usize {
            self.q().heap_bytes()
        }
    }

    fn new_queue() -> Owned {
        Owned {
            st: QueueState::default(),
            inline: [0; INLINE],
            rings: Rings::default(),
        }
    }

    /// Pushes `size(round)` numbered bytes and pops `take(round)` each round; every `every`
    /// rounds removes `len` bytes `at` bytes in (if there are enough) and drops up to `front`
    /// from the front; checks everything against a `VecDeque`.
    fn against_a_deque(
        rounds: usize,
        size: impl Fn(usize) -> usize,
        take: impl Fn(usize) -> usize,
        (every, at, len, front): (usize, usize, usize, usize),
    ) {
        let mut q = new_queue();
        let mut expect: VecDeque<u8> = VecDeque::new();
        let mut next = 0u8;
        for round in 0..rounds {
            let chunk: Vec<u8> = (0..size(round))
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            q.push(&chunk);
            expect.extend(&chunk);
            let n = take(round).min(q.len());
            let mut out = vec![0u8; n];
            q.pop_into(&mut out);
            let want: Vec<u8> = expect.drain(..n).collect();
            assert_eq!(out, want, "round {round}");
            if round % every == 0 && q.len() > at + len {
                q.remove(at, len);
                expect.drain(at..at + len);
            }
            if round % every == 0 {
                let n = q.len().min(front);
                q.discard_front(n);
                expect.drain(..n);
            }
            assert_eq!(q.len(), expect.len(), "round {round}");
        }
    }

    #[test]
    fn bytes_come_out_in_order_across_pushes_pops_and_removals() {
        against_a_deque(2000, |r| (r * 7) % 300, |r| (r * 13) % 257, (97, 3, 5, 0));
    }

    /// A writer that keeps up to `window` bytes queued while a reader takes them in uneven
    /// pieces: the memory held stays within twice the window, however many bytes go through.
    #[test]
    fn memory_stays_within_twice_what_is_held() {
        let window = 100_000;
        let mut q = new_queue();
        let mut next = 0u8;
        let mut want = 0u8;
        for round in 0..5_000usize {
            let room = window - q.len();
            let chunk: Vec<u8> = (0..room.min(1 + (round * 7919) % 40_000))
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            q.push(&chunk);
            assert!(q.len() <= window);
            assert!(
                q.heap_bytes() <= 2 * window,
                "round {round}: {}",
                q.heap_bytes()
            );
            let mut out = vec![0u8; q.len().min(1 + (round * 104_729) % 30_000)];
            q.pop_into(&mut out);
            for b in out {
                want = want.wrapping_add(1);
                assert_eq!(b, want, "round {round}");
            }
        }
    }

    /// A queue that held a lot and now holds little gives the memory back: at most four times
    /// what it holds (or the smallest kept ring), and the bytes still come out in order.
    #[test]
    fn a_ring_shrinks_with_what_it_holds() {
        let mut q = new_queue();
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        q.push(&data);
        assert_eq!(q.heap_bytes(), 4 << 20);
        let mut at = 0;
        for step in [1_000_000, 2_000_000, 900_000, 99_000, 999] {
            let mut out = vec![0u8; step];
            q.pop_into(&mut out);
            assert_eq!(out, data[at..at + step], "after {at}");
            at += step;
            assert!(
                q.heap_bytes() <= (4 * q.len()).max(super::KEEP),
                "{} bytes held in {}",
                q.len(),
                q.heap_bytes()
            );
        }
        assert_eq!(q.len(), 1);
        q.discard_front(1);
        assert!(
            q.heap_bytes() <= super::KEEP,
            "empty: at most the kept ring"
        );
    }

    /// Large pushes and pops, through rings whose length is not a power of two.
    #[test]
    fn large_contents_stay_in_order_in_rings_of_any_length() {
        against_a_deque(
            400,
            |r| (r * 7919) % 150_000,
            |r| (r * 104_729) % 140_000,
            (7, 1000, 5000, 300),
        );
    }

    /// Small pushes and pops that stay inline, cross into the heap and come back.
    #[test]
    fn small_contents_stay_in_order_inline_and_across_the_switch() {
        let sizes = [0, 1, 7, 16, 30, 63, 64, 65, 100];
        against_a_deque(5000, |r| sizes[r % 9], |r| (r * 29) % 97, (13, 2, 3, 5));
    }
}

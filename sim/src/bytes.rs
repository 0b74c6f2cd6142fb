//! A FIFO of bytes with `memcpy` at both ends. Up to [`INLINE`] bytes live inside the queue
//! itself (a TCP direction holds one in its connection, which every delivery touches anyway):
//! with 100,000 connections open at once, a separately allocated buffer per direction cost a
//! cache miss on every write and every read (14% of the run in `memmove`). Larger contents
//! move to a ring ([`ring_size`]: a power of two up to 64 KiB, then in eighths): a write is
//! copied in once and a read out once, in at most two pieces each, nothing is ever slid down.
//! A ring at least doubles when it grows (so growing copies little), and a large one that falls
//! to a quarter full shrinks to twice what it holds: its memory follows the bytes queued (which the TCP windows and the
//! `tcp_mem` account bound), not the most the queue ever held. `VecDeque<u8>` would do, but its
//! `extend` copies byte by byte.

/// Bytes held without a heap allocation.
pub(crate) const INLINE: usize = 64;

/// A ring that empties and is larger than this goes back inline (a burst is over: idle
/// sockets stay small); a larger ring that falls to a quarter full is halved (at least), down to
/// this size: a ring is never more than four times what it holds beyond this, so memory
/// follows the bytes queued (which the TCP memory account bounds), not the most a queue
/// once held.
const KEEP: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) enum ByteQueue {
    /// Live bytes are `buf[head..head + len]`.
    Inline {
        head: u8,
        len: u8,
        buf: [u8; INLINE],
    },
    /// Live bytes are the `len` bytes from `head`, wrapping at the end of `ring` (see
    /// [`ring_size`] for its length).
    Ring {
        ring: Box<[u8]>,
        head: usize,
        len: usize,
    },
}

impl Default for ByteQueue {
    fn default() -> Self {
        ByteQueue::Inline {
            head: 0,
            len: 0,
            buf: [0; INLINE],
        }
    }
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

impl ByteQueue {
    pub(crate) fn len(&self) -> usize {
        match self {
            ByteQueue::Inline { len, .. } => usize::from(*len),
            ByteQueue::Ring { len, .. } => *len,
        }
    }

    /// A ring of at least `cap` bytes holding `live` (its first byte at the start).
    fn ring_with(cap: usize, live: &[u8]) -> ByteQueue {
        let mut ring = vec![0u8; ring_size(cap)].into_boxed_slice();
        ring[..live.len()].copy_from_slice(live);
        ByteQueue::Ring {
            ring,
            head: 0,
            len: live.len(),
        }
    }

    /// A ring of at least `cap` bytes holding the `len` bytes of `ring` from `head` (copied
    /// straight across: no bytes are staged between the two rings).
    fn moved(cap: usize, ring: &[u8], head: usize, len: usize) -> ByteQueue {
        let mut new = vec![0u8; ring_size(cap)].into_boxed_slice();
        copy_out(ring, head, &mut new[..len]);
        ByteQueue::Ring {
            ring: new,
            head: 0,
            len,
        }
    }

    /// Appends `bytes` at the back.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        match self {
            ByteQueue::Inline { head, len, buf } => {
                let (h, l) = (usize::from(*head), usize::from(*len));
                if l + bytes.len() <= INLINE {
                    if h + l + bytes.len() > INLINE {
                        // Slide the live bytes to the front to make room at the back.
                        buf.copy_within(h..h + l, 0);
                        *head = 0;
                    }
                    let at = usize::from(*head) + l;
                    buf[at..at + bytes.len()].copy_from_slice(bytes);
                    *len = (l + bytes.len()) as u8;
                } else {
                    let live = buf[h..h + l].to_vec();
                    *self = ByteQueue::ring_with(l + bytes.len(), &live);
                    self.push(bytes);
                }
            }
            ByteQueue::Ring { ring, head, len } => {
                let want = *len + bytes.len();
                if want > ring.len() {
                    // Doubling (an eighth at a time made a window's worth of growing copy
                    // eight times the bytes, and the 200 x 16 MiB echo twice as slow).
                    *self = ByteQueue::moved(want.max(2 * ring.len()), ring, *head, *len);
                    return self.push(bytes);
                }
                copy_in(ring, wrap(*head + *len, ring.len()), bytes);
                *len = want;
            }
        }
    }

    /// Copies the first `dst.len()` bytes out and removes them. `dst` must not be longer than
    /// the queue.
    pub(crate) fn pop_into(&mut self, dst: &mut [u8]) {
        let n = dst.len();
        match self {
            ByteQueue::Inline { head, len, buf } => {
                let h = usize::from(*head);
                dst.copy_from_slice(&buf[h..h + n]);
                *len -= n as u8;
                *head = if *len == 0 { 0 } else { (h + n) as u8 };
            }
            ByteQueue::Ring { ring, head, len } => {
                assert!(n <= *len, "ByteQueue: popping more than it holds");
                copy_out(ring, *head, dst);
                *head = wrap(*head + n, ring.len());
                *len -= n;
                if *len == 0 {
                    *head = 0;
                }
                self.shrink();
            }
        }
    }

    /// Gives back a large ring that is mostly empty (see [`KEEP`]).
    fn shrink(&mut self) {
        let ByteQueue::Ring { ring, head, len } = self else {
            return;
        };
        if ring.len() <= KEEP || *len > ring.len() / 4 {
            return;
        }
        if *len == 0 {
            *self = ByteQueue::default();
            return;
        }
        *self = ByteQueue::moved((2 * *len).max(KEEP), ring, *head, *len);
    }

    /// Copies the first `dst.len()` bytes out and leaves them queued (`MSG_PEEK`). `dst` must
    /// not be longer than the queue.
    pub(crate) fn peek_into(&self, dst: &mut [u8]) {
        let n = dst.len();
        match self {
            ByteQueue::Inline { head, buf, .. } => {
                let h = usize::from(*head);
                dst.copy_from_slice(&buf[h..h + n]);
            }
            ByteQueue::Ring { ring, head, len } => {
                assert!(n <= *len, "ByteQueue: peeking more than it holds");
                copy_out(ring, *head, dst);
            }
        }
    }

    /// Removes `len` bytes starting `at` bytes from the front.
    pub(crate) fn remove(&mut self, at: usize, n: usize) {
        match self {
            ByteQueue::Inline { head, len, buf } => {
                let from = usize::from(*head) + at;
                let end = usize::from(*head) + usize::from(*len);
                buf.copy_within(from + n..end, from);
                *len -= n as u8;
            }
            ByteQueue::Ring { ring, head, len } => {
                assert!(at + n <= *len, "ByteQueue: removing past the end");
                // The bytes after the gap move down over it (rare: a segment that was not
                // delivered), through a copy of that tail.
                let cap = ring.len();
                let mut tail = vec![0u8; *len - at - n];
                copy_out(ring, wrap(*head + at + n, cap), &mut tail);
                copy_in(ring, wrap(*head + at, cap), &tail);
                *len -= n;
                if *len == 0 {
                    *head = 0;
                }
            }
        }
    }

    /// Removes the first `n` bytes.
    pub(crate) fn discard_front(&mut self, n: usize) {
        match self {
            ByteQueue::Ring { ring, head, len } => {
                assert!(n <= *len, "ByteQueue: discarding more than it holds");
                *head = wrap(*head + n, ring.len());
                *len -= n;
                if *len == 0 {
                    *head = 0;
                }
                self.shrink();
            }
            ByteQueue::Inline { .. } => self.remove(0, n),
        }
    }

    /// Bytes of memory the queue holds beyond itself (for tests of the bound).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        match self {
            ByteQueue::Inline { .. } => 0,
            ByteQueue::Ring { ring, .. } => ring.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteQueue;
    use std::collections::VecDeque;

    /// Pushes `size(round)` numbered bytes and pops `take(round)` each round; every `every`
    /// rounds removes `len` bytes `at` bytes in (if there are enough) and drops up to `front`
    /// from the front; checks everything against a `VecDeque`.
    fn against_a_deque(
        rounds: usize,
        size: impl Fn(usize) -> usize,
        take: impl Fn(usize) -> usize,
        (every, at, len, front): (usize, usize, usize, usize),
    ) {
        let mut q = ByteQueue::default();
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
        let mut q = ByteQueue::default();
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
        let mut q = ByteQueue::default();
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

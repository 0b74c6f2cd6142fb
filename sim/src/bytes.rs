//! A FIFO of bytes with `memcpy` at both ends: a `Vec` and the offset of its first live byte.
//! Cheaper than `VecDeque<u8>` for the sim's pattern (append a write, take a read), whose
//! `extend` copies byte by byte.

#[derive(Debug, Default)]
pub(crate) struct ByteQueue {
    data: Vec<u8>,
    head: usize,
}

impl ByteQueue {
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.head
    }

    /// Appends `bytes` at the back.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.head > 0 && self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
        } else if self.head > 4096 && self.head * 2 > self.data.len() {
            // More dead than live bytes at the front: slide the live ones down.
            self.data.drain(..self.head);
            self.head = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    /// Copies the first `dst.len()` bytes out and removes them. `dst` must not be longer than
    /// the queue.
    pub(crate) fn pop_into(&mut self, dst: &mut [u8]) {
        let n = dst.len();
        dst.copy_from_slice(&self.data[self.head..self.head + n]);
        self.head += n;
        if self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
            if self.data.capacity() > 64 * 1024 {
                // A burst is over: give its memory back (idle sockets stay small).
                self.data = Vec::new();
            }
        }
    }

    /// Removes `len` bytes starting `at` bytes from the front.
    pub(crate) fn remove(&mut self, at: usize, len: usize) {
        let from = self.head + at;
        self.data.drain(from..from + len);
    }

    /// Removes the first `n` bytes.
    pub(crate) fn discard_front(&mut self, n: usize) {
        self.remove(0, n);
    }
}

#[cfg(test)]
mod tests {
    use super::ByteQueue;

    #[test]
    fn bytes_come_out_in_order_across_pushes_pops_and_removals() {
        let mut q = ByteQueue::default();
        let mut expect: std::collections::VecDeque<u8> = Default::default();
        let mut next = 0u8;
        for round in 0..2000usize {
            let k = (round * 7) % 300;
            let chunk: Vec<u8> = (0..k)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            q.push(&chunk);
            expect.extend(&chunk);
            let take = (round * 13) % 257;
            let take = take.min(q.len());
            let mut out = vec![0u8; take];
            q.pop_into(&mut out);
            let want: Vec<u8> = expect.drain(..take).collect();
            assert_eq!(out, want, "round {round}");
            if round % 97 == 0 && q.len() > 10 {
                q.remove(3, 5);
                expect.drain(3..8);
            }
            assert_eq!(q.len(), expect.len());
        }
    }
}

//! The data words of events the kernel expects to report soon: a look-ahead for the event
//! loop's own cache hints ([`crate::Sim::upcoming`]).
//!
//! With 100,000 connections open at once, each event an `epoll_wait` returns names state of the
//! loop's own (a connection's slot, a client's state) that was last touched thousands of events
//! earlier, so the handler's first look at it waits for memory. The loop cannot prefetch it
//! sooner: `epoll_wait` returns about one event at a time, and the event is the first it hears
//! of the connection. The kernel knows earlier: its warming reaches each delivery's epoll item
//! several deliveries before the delivery runs. Once a loop has asked for them, the warming
//! keeps the items' data words here, for the loop to take after its next wait.
//!
//! Nothing here changes what the kernel does: the words are read from items the warming
//! already brought into the cache, and a loop may only use them for hints.

/// How many words are kept; older ones are overwritten (a loop that stops asking loses
/// nothing but hints).
const KEEP: usize = 64;

/// A ring of the newest [`KEEP`] words, and whether anyone asked for them.
#[derive(Debug)]
pub(crate) struct Soon {
    wanted: bool,
    words: [u64; KEEP],
    /// Words written so far; the ring holds the last `min(written - read, KEEP)` of them.
    written: u64,
    read: u64,
}

impl Default for Soon {
    fn default() -> Soon {
        Soon {
            wanted: false,
            words: [0; KEEP],
            written: 0,
            read: 0,
        }
    }
}

impl Soon {
    /// Whether a loop has asked for the words (until then, the warming does not collect them).
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.wanted
    }

    #[inline]
    pub(crate) fn push(&mut self, word: u64) {
        self.words[(self.written % KEEP as u64) as usize] = word;
        self.written += 1;
    }

    /// Moves the words not yet taken into `out`, oldest (soonest) first, as many as fit, and
    /// says how many; from now on, the warming collects them.
    pub(crate) fn take(&mut self, out: &mut [u64]) -> usize {
        self.wanted = true;
        let from = self.read.max(self.written.saturating_sub(KEEP as u64));
        let n = ((self.written - from) as usize).min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.words[((from + i as u64) % KEEP as u64) as usize];
        }
        self.read = from + n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_come_out_once_oldest_first_and_the_ring_keeps_the_newest() {
        let mut s = Soon::default();
        assert!(!s.wanted());
        let mut out = [0u64; 8];
        assert_eq!(s.take(&mut out), 0);
        assert!(s.wanted());
        for w in 1..=3 {
            s.push(w);
        }
        assert_eq!(s.take(&mut out[..2]), 2);
        assert_eq!(out[..2], [1, 2]);
        assert_eq!(s.take(&mut out), 1);
        assert_eq!(out[0], 3);
        assert_eq!(s.take(&mut out), 0);
        // Past the ring's size, the oldest words are gone.
        for w in 0..(KEEP as u64 + 5) {
            s.push(100 + w);
        }
        let mut all = vec![0u64; 2 * KEEP];
        assert_eq!(s.take(&mut all), KEEP);
        assert_eq!(all[0], 105);
        assert_eq!(all[KEEP - 1], 100 + KEEP as u64 + 4);
    }
}

//! A set of small non-negative integers (free descriptor numbers) with O(1) insert and remove
//! and a cheap smallest element: a bitmap with a summary bit per word. It replaces a
//! `BTreeSet<Fd>` whose nodes were scattered over the heap; the answers are the same.

#[derive(Debug, Default)]
pub(crate) struct FdSet {
    /// Bit `n % 64` of word `n / 64` is set when `n` is in the set.
    words: Vec<u64>,
    /// Bit `w % 64` of `summary[w / 64]` is set when `words[w]` is not zero.
    summary: Vec<u64>,
    /// No summary word below this one has a bit set.
    first: usize,
    len: usize,
}

impl FdSet {
    /// Adds `n`; returns whether it was absent.
    pub(crate) fn insert(&mut self, n: u32) -> bool {
        let (w, b) = (n as usize / 64, n % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
            self.summary.resize(w / 64 + 1, 0);
        }
        if self.words[w] & (1 << b) != 0 {
            return false;
        }
        self.words[w] |= 1 << b;
        self.summary[w / 64] |= 1 << (w % 64);
        self.first = self.first.min(w / 64);
        self.len += 1;
        true
    }

    /// Removes `n`; returns whether it was present.
    pub(crate) fn remove(&mut self, n: u32) -> bool {
        let (w, b) = (n as usize / 64, n % 64);
        match self.words.get_mut(w) {
            Some(word) if *word & (1 << b) != 0 => {
                *word &= !(1 << b);
                if *word == 0 {
                    self.summary[w / 64] &= !(1 << (w % 64));
                }
                self.len -= 1;
                true
            }
            _ => false,
        }
    }

    /// Removes and returns the smallest element.
    pub(crate) fn pop_first(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        while self.summary[self.first] == 0 {
            self.first += 1;
        }
        let s = self.first;
        let w = s * 64 + self.summary[s].trailing_zeros() as usize;
        let n = (w * 64) as u32 + self.words[w].trailing_zeros();
        self.remove(n);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::FdSet;
    use std::collections::BTreeSet;

    #[test]
    fn answers_like_a_btreeset() {
        let mut a = FdSet::default();
        let mut b = BTreeSet::new();
        let mut x: u64 = 12345;
        for step in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = ((x >> 33) % 20_000) as u32;
            match (x >> 20) % 4 {
                0 | 1 => assert_eq!(a.insert(n), b.insert(n), "step {step}"),
                2 => assert_eq!(a.remove(n), b.remove(&n), "step {step}"),
                _ => assert_eq!(a.pop_first(), b.pop_first(), "step {step}"),
            }
        }
        while let Some(n) = b.pop_first() {
            assert_eq!(a.pop_first(), Some(n));
        }
        assert_eq!(a.pop_first(), None);
    }
}

//! A slab: `Vec<Option<T>>` with a LIFO free list. Indices are stable while an entry lives, and
//! reuse is deterministic (the most recently freed slot first), unlike anything hashed.

#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// An empty slab with room for `n` entries before its table grows (and copies or moves).
    pub(crate) fn with_capacity(n: usize) -> Self {
        Slab {
            entries: Vec::with_capacity(n),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> u32 {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            self.entries[i as usize] = Some(value);
            i
        } else {
            self.entries.push(Some(value));
            (self.entries.len() - 1) as u32
        }
    }

    pub(crate) fn remove(&mut self, i: u32) -> T {
        let v = self.entries[i as usize]
            .take()
            .expect("slab: removing a free slot (a stale id outlived its entry)");
        self.free.push(i);
        self.len -= 1;
        v
    }

    /// Removes entry `i` where it lies, after `last` has had a look at it: no copy of the value
    /// is made on the way out (for a large entry, a copy reads every line of it).
    pub(crate) fn remove_with(&mut self, i: u32, last: impl FnOnce(&mut T)) {
        let slot = &mut self.entries[i as usize];
        last(
            slot.as_mut()
                .expect("slab: removing a free slot (a stale id outlived its entry)"),
        );
        *slot = None;
        self.free.push(i);
        self.len -= 1;
    }

    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        self.entries.get(i as usize).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.entries.get_mut(i as usize).and_then(Option::as_mut)
    }

    /// Hints that entry `i` will be read soon (`netpoll::hint`), without reading it: its slot
    /// is not looked at, so a slot that is not in the cache does not hold the caller up.
    #[inline]
    pub(crate) fn prefetch(&self, i: u32) {
        if let Some(slot) = self.entries.get(i as usize) {
            netpoll::hint::prefetch(slot, 1);
        }
    }

    /// One past the highest index ever used.
    pub(crate) fn high_water(&self) -> u32 {
        self.entries.len() as u32
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<T> std::ops::Index<u32> for Slab<T> {
    type Output = T;
    fn index(&self, i: u32) -> &T {
        self.get(i).expect("slab: stale id (entry already freed)")
    }
}

impl<T> std::ops::IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, i: u32) -> &mut T {
        self.get_mut(i)
            .expect("slab: stale id (entry already freed)")
    }
}

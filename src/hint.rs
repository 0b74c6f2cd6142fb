//! A cache hint: "this memory will be needed soon". The runtime gives it, and so does the
//! simulated kernel, where what they touch next is known before it is touched.
//!
//! With 100,000 connections open at once, nearly every piece of per-connection state is a cache
//! miss when its turn comes. A task woken by an event is polled a few tasks later: its future's
//! first touch since its last poll was 15% of `rt-echo`'s time (`BENCHMARKS.md`, "Stop 21").
//! A plain read cannot bring such memory in ahead: it waits for its line, and safe Rust cannot
//! read the bytes of a future of unknown type at all. A prefetch instruction can, and it never
//! faults: it takes any address, valid or not, and changes nothing a program can observe.
//!
//! This crate holds no `unsafe`, so it cannot issue the instruction itself: a binary installs
//! one with [`set_prefetch`], once, first thing (`netpoll-sim` installs
//! `netpoll_realnet::cache::prefetch`, whose one `unsafe` block is on the system boundary, with
//! the allocator). Until then, and in a binary that never installs one, [`prefetch`] does
//! nothing (one atomic load and a branch). Results never depend on it: only the time does.
//!
//! ```
//! fn my_hint(_p: *const u8) {} // a real one issues a prefetch instruction
//!
//! assert!(netpoll::hint::set_prefetch(my_hint).is_ok());
//! assert!(netpoll::hint::set_prefetch(my_hint).is_err(), "installed once, for good");
//! let state = [0u64; 16];
//! netpoll::hint::prefetch(&state, 128);
//! ```

use std::fmt;
use std::sync::OnceLock;

/// A prefetch: bring the cache line holding this address in, without waiting for it. It must
/// accept any address (a dangling or null one included) and have no effect a program can see.
pub type Prefetch = fn(*const u8);

static PREFETCH: OnceLock<Prefetch> = OnceLock::new();

/// [`set_prefetch`] was called before: the first hint stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadySet;

impl fmt::Display for AlreadySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a prefetch hint is already installed")
    }
}

impl std::error::Error for AlreadySet {}

/// Installs the process's prefetch hint (see the [module docs](self)).
///
/// # Errors
/// [`AlreadySet`] if one was installed before (it stays).
pub fn set_prefetch(f: Prefetch) -> Result<(), AlreadySet> {
    PREFETCH.set(f).map_err(|_| AlreadySet)
}

/// Whether a prefetch hint is installed.
pub fn installed() -> bool {
    PREFETCH.get().is_some()
}

/// Hints that the first `bytes` bytes of `value` (at most its size; at least its first byte)
/// will be read soon: one prefetch per cache line they touch. Nothing without an installed
/// hint.
#[inline]
pub fn prefetch<T: ?Sized>(value: &T, bytes: usize) {
    if let Some(f) = PREFETCH.get() {
        let p = (value as *const T).cast::<u8>();
        let len = bytes.min(std::mem::size_of_val(value)).max(1);
        // From the start of the first line to the line of the last byte: a value need not
        // start on a line (malloc aligns to 16), and its last line counts too.
        let first = p.wrapping_sub(p as usize % LINE);
        let mut off = 0;
        while off < p as usize % LINE + len {
            f(first.wrapping_add(off));
            off += LINE;
        }
    }
}

/// Hints that the line holding `p` will be read soon; `p` may be any address (a waker's data
/// pointer, say). Nothing without an installed hint.
#[inline]
pub fn prefetch_addr(p: *const u8) {
    if let Some(f) = PREFETCH.get() {
        f(p);
    }
}

/// The cache line's size on the machines this runs on (x86_64, aarch64 servers).
const LINE: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        // Per thread: other tests of this binary may prefetch (the runtime does) meanwhile.
        static CALLS: Cell<usize> = const { Cell::new(0) };
    }

    fn count(_p: *const u8) {
        CALLS.with(|c| c.set(c.get() + 1));
    }

    #[test]
    fn one_call_a_line_up_to_the_value_and_the_first_hint_stays() {
        // The only test in this binary that installs a hint.
        assert_eq!(set_prefetch(count), Ok(()));
        assert_eq!(set_prefetch(|_| {}), Err(AlreadySet));
        assert!(installed());
        let v = [0u8; 300];
        // The lines bytes `0..n` of `v` touch.
        let lines = |n: usize| {
            let start = v.as_ptr() as usize;
            (start + n - 1) / LINE - start / LINE + 1
        };
        let before = CALLS.with(Cell::get);
        prefetch(&v, 1000); // capped at 300 bytes: 5 or 6 lines, by where `v` starts
        prefetch(&v[..0], 64); // an empty value: its first byte's line
        prefetch(&v, 64);
        assert_eq!(CALLS.with(Cell::get) - before, lines(300) + 1 + lines(64));
        assert!((5..=6).contains(&lines(300)) && (1..=2).contains(&lines(64)));
        // 64 bytes from one byte into a line touch two lines.
        #[repr(align(64))]
        struct Lined([u8; 128]);
        let l = Lined([0; 128]);
        let before = CALLS.with(Cell::get);
        prefetch(&l.0[1..65], 64);
        assert_eq!(CALLS.with(Cell::get) - before, 2);
    }
}

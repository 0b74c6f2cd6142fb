//! [`HugePages`]: a global allocator that asks Linux for transparent huge pages for large blocks.
//!
//! A simulation with a million connections open at once touches a random connection's state
//! (connection, socket, epoll item, descriptor slot, engine client) on every event, among
//! hundreds of MiB of slabs and tables. With 4 KiB pages nearly every such access also misses the
//! TLB and walks the page tables. With 2 MiB pages the same tables need 512 times fewer TLB
//! entries.
//!
//! [`HugePages`] forwards every allocation below [`THRESHOLD`] (2 MiB) to the system allocator
//! (`malloc`). A block of [`THRESHOLD`] or more is a private anonymous mapping of its own, aligned
//! to 2 MiB, so that each whole 2 MiB of it can be one huge page. The mapping ends where the block
//! ends (to the next small page): a block of 3 MiB is one huge page and 256 small ones.
//!
//! Which of its pages are huge depends on how the block was made:
//!
//! - **A new block** (`Vec::with_capacity`, `vec![0; n]`, a hash table) is marked whole with
//!   `madvise(MADV_HUGEPAGE)`, so that the kernel backs it with huge pages as it is touched, even
//!   when THP is in `madvise` mode (`/sys/kernel/mm/transparent_hugepage/enabled`). Fresh
//!   mappings are zero, so `vec![0; n]` writes nothing.
//! - **A block that grows** (`realloc`: a `Vec` that doubles) moves its page tables with `mremap`
//!   to a new 2 MiB-aligned place instead of copying its bytes. Its old part, full, is turned into
//!   huge pages at once (`madvise(MADV_COLLAPSE)`); its new part, which the `Vec` fills from the
//!   start, stays in small pages until the block grows again, so no huge page is resident for a
//!   few bytes at the end. A block that grows to [`FULL_ADVICE`] (64 MiB) or more is marked whole,
//!   like a new one: there one huge page filled in part is little against the rest. (A block
//!   marked when new stays marked as it grows.)
//!
//! Nothing is prefaulted (no `MAP_POPULATE`): a `Vec` that doubled holds up to twice what it uses,
//! and prefaulting would make all of it resident at once.
//!
//! The cost: a huge page is resident whole, so a process may hold up to 2 MiB more per new or
//! 64 MiB-plus block than the small pages it touched, and collapsing copies a grown block's old
//! part once into huge pages.
//!
//! ## Opting out
//!
//! [`HugePages::disable`] makes it forward everything to the system allocator, as if it were not
//! installed; [`HugePages::configure_from_env`] does so when `NETPOLL_HUGE_PAGES=0`. Either must
//! run before the first large allocation (the first thing in `main`): a block must be freed by the
//! allocator that made it, so the choice is fixed from the first large block on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};

/// The size of a transparent huge page on x86_64 (a PMD entry): 2 MiB.
pub const HUGE_PAGE: usize = 2 << 20;

/// Blocks of this size or more get a mapping of their own with huge pages: 2 MiB.
pub const THRESHOLD: usize = HUGE_PAGE;

/// A block that grows by `realloc` to this size or more is marked for huge pages whole: 64 MiB.
/// A smaller one gets huge pages only for the part it had filled when it last grew (see the
/// [module docs](self)).
pub const FULL_ADVICE: usize = 64 << 20;

/// The environment variable [`HugePages::configure_from_env`] reads: `0` turns huge pages off,
/// `1` (or unset, or empty) leaves them on.
pub const ENV_VAR: &str = "NETPOLL_HUGE_PAGES";

/// No large block yet, and not disabled.
const UNDECIDED: u8 = 0;
/// Large blocks are ours (mapped here); fixed once the first one is made.
const ON: u8 = 1;
/// Everything goes to the system allocator; fixed.
const OFF: u8 = 2;

/// A global allocator: the system allocator for small blocks, 2 MiB-aligned mappings marked
/// `MADV_HUGEPAGE` for blocks of [`THRESHOLD`] or more (see the [module docs](self)).
///
/// Install it in a binary with `#[global_allocator]`:
///
/// ```
/// use netpoll_realnet::alloc::{HugePages, HUGE_PAGE};
///
/// #[global_allocator]
/// static ALLOC: HugePages = HugePages::new();
///
/// fn main() {
///     // NETPOLL_HUGE_PAGES=0 turns it off; a bad value is an error to report.
///     if let Err(e) = ALLOC.configure_from_env() {
///         eprintln!("error: {e}");
///         std::process::exit(2);
///     }
///     let table = vec![0u64; 1 << 20]; // 8 MiB: a mapping of its own
///     if ALLOC.is_enabled() {
///         assert_eq!(table.as_ptr() as usize % HUGE_PAGE, 0);
///         assert_eq!(ALLOC.stats().blocks_mapped, 1);
///     }
///     let small = vec![1u8; 100]; // the system allocator's
///     assert_eq!(small.len(), 100);
/// }
/// ```
#[derive(Debug)]
pub struct HugePages {
    state: AtomicU8,
    blocks_mapped: AtomicU64,
    blocks_moved: AtomicU64,
    advice_refused: AtomicU64,
    last_refusal_errno: AtomicI32,
    collapse_refused: AtomicU64,
}

/// What a [`HugePages`] allocator has done so far (see [`HugePages::stats`]).
///
/// ```
/// let alloc = netpoll_realnet::alloc::HugePages::new();
/// let s = alloc.stats();
/// assert_eq!((s.blocks_mapped, s.blocks_moved, s.advice_refused), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Large blocks mapped (a grown block counts once more).
    pub blocks_mapped: u64,
    /// Large blocks grown by moving their pages with `mremap`, without copying.
    pub blocks_moved: u64,
    /// `madvise(MADV_HUGEPAGE)` calls the kernel refused (the block still works, with small
    /// pages). Linux refuses with `EINVAL` when it is built without transparent huge pages.
    pub advice_refused: u64,
    /// The errno of the last refusal (0 if none).
    pub last_refusal_errno: i32,
    /// `madvise(MADV_COLLAPSE)` calls that did not turn all of a grown block's old part into
    /// huge pages (a kernel before 6.1 has no such call; one short of huge pages gives up).
    pub collapse_refused: u64,
}

/// [`HugePages::disable`] came after the first large block was made: the blocks already made are
/// mappings that only this allocator can free, so it stays on.
///
/// ```
/// use netpoll_realnet::alloc::{AlreadyServing, HugePages};
/// use std::alloc::{GlobalAlloc, Layout};
///
/// let alloc = HugePages::new();
/// let layout = Layout::from_size_align(4 << 20, 8).unwrap();
/// // SAFETY: the layout has a non-zero size; the block is freed with the same layout.
/// unsafe {
///     let p = alloc.alloc(layout);
///     assert!(!p.is_null());
///     assert_eq!(alloc.disable(), Err(AlreadyServing));
///     alloc.dealloc(p, layout);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyServing;

impl fmt::Display for AlreadyServing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "huge pages cannot be turned off after the first large allocation; \
             turn them off first thing in main",
        )
    }
}

impl std::error::Error for AlreadyServing {}

/// `NETPOLL_HUGE_PAGES` holds something other than `0` or `1`, or came too late
/// ([`HugePages::configure_from_env`]).
///
/// ```
/// use netpoll_realnet::alloc::{parse_setting, SettingError};
///
/// assert_eq!(parse_setting("1"), Ok(true));
/// let e = parse_setting("yes").unwrap_err();
/// assert_eq!(e, SettingError::BadValue("yes".into()));
/// assert!(e.to_string().contains("NETPOLL_HUGE_PAGES"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingError {
    /// The value, neither `0` nor `1`.
    BadValue(String),
    /// The value is `0` but large blocks were already made.
    TooLate(AlreadyServing),
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingError::BadValue(v) => write!(
                f,
                "{ENV_VAR} must be 0 (huge pages off) or 1 (on, the default), not {v:?}"
            ),
            SettingError::TooLate(e) => write!(f, "{ENV_VAR}=0: {e}"),
        }
    }
}

impl std::error::Error for SettingError {}

/// Reads a `NETPOLL_HUGE_PAGES` value: `0` is off, `1` or empty is on (surrounding blanks are
/// ignored); anything else is a [`SettingError::BadValue`].
///
/// ```
/// use netpoll_realnet::alloc::parse_setting;
///
/// assert_eq!(parse_setting("0"), Ok(false));
/// assert_eq!(parse_setting(" 1 "), Ok(true));
/// assert_eq!(parse_setting(""), Ok(true));
/// assert!(parse_setting("off").is_err());
/// ```
pub fn parse_setting(value: &str) -> Result<bool, SettingError> {
    match value.trim() {
        "0" => Ok(false),
        "1" | "" => Ok(true),
        _ => Err(SettingError::BadValue(value.to_string())),
    }
}

impl Default for HugePages {
    fn default() -> Self {
        HugePages::new()
    }
}

impl HugePages {
    /// An allocator with huge pages on, usable in a `static`.
    pub const fn new() -> HugePages {
        HugePages {
            state: AtomicU8::new(UNDECIDED),
            blocks_mapped: AtomicU64::new(0),
            blocks_moved: AtomicU64::new(0),
            advice_refused: AtomicU64::new(0),
            last_refusal_errno: AtomicI32::new(0),
            collapse_refused: AtomicU64::new(0),
        }
    }

    /// Turns huge pages off for good: from now on every allocation goes to the system allocator.
    ///
    /// # Errors
    /// [`AlreadyServing`] if a large block was already made (it stays on then).
    pub fn disable(&self) -> Result<(), AlreadyServing> {
        match self
            .state
            .compare_exchange(UNDECIDED, OFF, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(OFF) => Ok(()),
            Err(_) => Err(AlreadyServing),
        }
    }

    /// Applies `NETPOLL_HUGE_PAGES` ([`ENV_VAR`]): `0` calls [`disable`](Self::disable), `1`,
    /// empty or unset change nothing. Returns whether huge pages are on.
    ///
    /// # Errors
    /// [`SettingError::BadValue`] for any other value (or one that is not UTF-8), and
    /// [`SettingError::TooLate`] if `0` comes after the first large block.
    pub fn configure_from_env(&self) -> Result<bool, SettingError> {
        let on = match std::env::var_os(ENV_VAR) {
            None => true,
            Some(v) => match v.to_str() {
                Some(s) => parse_setting(s)?,
                None => return Err(SettingError::BadValue(v.to_string_lossy().into_owned())),
            },
        };
        if !on {
            self.disable().map_err(SettingError::TooLate)?;
        }
        Ok(self.is_enabled())
    }

    /// Whether large blocks get huge pages (true unless [`disable`](Self::disable)d).
    pub fn is_enabled(&self) -> bool {
        self.state.load(Ordering::Acquire) != OFF
    }

    /// What this allocator has done so far.
    pub fn stats(&self) -> Stats {
        Stats {
            blocks_mapped: self.blocks_mapped.load(Ordering::Relaxed),
            blocks_moved: self.blocks_moved.load(Ordering::Relaxed),
            advice_refused: self.advice_refused.load(Ordering::Relaxed),
            last_refusal_errno: self.last_refusal_errno.load(Ordering::Relaxed),
            collapse_refused: self.collapse_refused.load(Ordering::Relaxed),
        }
    }

    /// Whether a block of `layout` already made is one of ours. Stable for the block's life: a
    /// large block exists only after the state left `UNDECIDED`, and it never changes again.
    fn owns(&self, layout: Layout) -> bool {
        large(layout) && self.state.load(Ordering::Acquire) == ON
    }

    /// Whether a new block of `layout` is to be one of ours; fixes the state at `ON` on the
    /// first large block.
    fn takes(&self, layout: Layout) -> bool {
        if !large(layout) {
            return false;
        }
        match self.state.load(Ordering::Acquire) {
            ON => true,
            OFF => false,
            _ => match self.state.compare_exchange(
                UNDECIDED,
                ON,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => true,
                Err(now) => now == ON,
            },
        }
    }

    /// Marks `[start, start + len)` (2 MiB-aligned) for huge pages.
    fn advise(&self, start: usize, len: usize) {
        // SAFETY: `[start, start + len)` is a mapping this allocator made and owns; madvise with
        // MADV_HUGEPAGE changes only how the kernel backs it, never its contents.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        if rc != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            self.advice_refused.fetch_add(1, Ordering::Relaxed);
            self.last_refusal_errno.store(errno, Ordering::Relaxed);
        }
    }

    /// Maps `len` bytes (a multiple of the page size) at a 2 MiB-aligned address, readable and
    /// writable (zero-filled) when `rw`, else an inaccessible reservation; null if the kernel
    /// refuses.
    fn map_aligned(len: usize, rw: bool) -> *mut u8 {
        let Some(total) = len.checked_add(HUGE_PAGE) else {
            return std::ptr::null_mut();
        };
        let (prot, extra) = if rw {
            (libc::PROT_READ | libc::PROT_WRITE, 0)
        } else {
            (libc::PROT_NONE, libc::MAP_NORESERVE)
        };
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks touches no
        // existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let start = p as usize;
        let aligned = round_up(start, HUGE_PAGE).expect("a mapping ends below usize::MAX");
        let head = aligned - start;
        let tail = total - head - len;
        // Both trims are page-aligned: `start`, `aligned` and `len` are multiples of the page.
        if head > 0 {
            // SAFETY: `[start, aligned)` is the unaligned head of the mapping just made, which
            // nobody else knows of.
            unsafe { libc::munmap(p, head) };
        }
        if tail > 0 {
            // SAFETY: `[aligned + len, start + total)` is the tail of the mapping just made.
            unsafe { libc::munmap((aligned + len) as *mut libc::c_void, tail) };
        }
        aligned as *mut u8
    }

    /// Asks the kernel to turn the small pages of `[start, start + len)` (2 MiB-aligned, whole
    /// huge pages, all in use) into huge pages now (`MADV_COLLAPSE`, Linux 6.1), without marking
    /// the rest of the block. A kernel without it, or short of huge pages, leaves the small pages:
    /// the block works either way.
    fn collapse(&self, start: usize, len: usize) {
        /// `MADV_COLLAPSE` from `<linux/mman.h>` (the `libc` crate has it for glibc only).
        const MADV_COLLAPSE: libc::c_int = 25;
        if len == 0 {
            return;
        }
        // SAFETY: `[start, start + len)` is a mapping this allocator owns; MADV_COLLAPSE copies
        // its pages into huge pages and keeps every byte.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, MADV_COLLAPSE) };
        if rc != 0 {
            self.collapse_refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A new large block of `size` bytes: zero-filled, 2 MiB-aligned, marked for huge pages if
    /// `advise`.
    fn map(&self, size: usize, advise: bool) -> *mut u8 {
        let Some(len) = round_up(size, page_size()) else {
            return std::ptr::null_mut();
        };
        let p = Self::map_aligned(len, true);
        if !p.is_null() {
            self.blocks_mapped.fetch_add(1, Ordering::Relaxed);
            if advise {
                self.advise(p as usize, len);
            }
        }
        p
    }

    /// Frees a large block of `size` bytes made by [`map`](Self::map) or [`remap`](Self::remap).
    ///
    /// # Safety
    /// `p` must be such a block, of that size, not freed yet.
    unsafe fn unmap(p: *mut u8, size: usize) {
        let len = round_up(size, page_size()).expect("the block was mapped with this size");
        // SAFETY: the caller guarantees `[p, p + len)` is a live block of ours.
        unsafe { libc::munmap(p.cast(), len) };
    }

    /// Resizes a large block of `old` bytes to `new` bytes (both at least [`THRESHOLD`]): in
    /// place when it needs no more pages, otherwise by moving its pages to a
    /// new 2 MiB-aligned place with `mremap` (no copy). Null (and the old block intact) if the
    /// kernel refuses.
    ///
    /// # Safety
    /// `p` must be a live block of ours of `old` bytes.
    unsafe fn remap(&self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        let old_len = round_up(old, page_size()).expect("the block was mapped with this size");
        let Some(new_len) = round_up(new, page_size()) else {
            return std::ptr::null_mut();
        };
        if new_len <= old_len {
            if new_len < old_len {
                // SAFETY: the caller guarantees `[p, p + old_len)` is ours; its tail beyond
                // `new_len` holds nothing the shrunk block keeps.
                unsafe { libc::munmap(p.add(new_len).cast(), old_len - new_len) };
            }
            return p;
        }
        let dest = Self::map_aligned(new_len, false);
        if dest.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: `[p, p + old_len)` is ours (the caller's guarantee) and `[dest, dest + new_len)`
        // is a reservation just made, not overlapping it; MREMAP_FIXED replaces the reservation
        // with the moved block, whose added part is zero-filled.
        let q = unsafe {
            libc::mremap(
                p.cast(),
                old_len,
                new_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dest.cast::<libc::c_void>(),
            )
        };
        if q == libc::MAP_FAILED {
            // SAFETY: `dest` is the reservation made above, still ours since mremap failed.
            unsafe { libc::munmap(dest.cast(), new_len) };
            return std::ptr::null_mut();
        }
        self.blocks_mapped.fetch_add(1, Ordering::Relaxed);
        self.blocks_moved.fetch_add(1, Ordering::Relaxed);
        // The moved mapping keeps its flags. The old bytes were all in use (a `Vec` grows when
        // full): their whole 2 MiB stretches become huge pages now. The grown part, which the
        // block fills from its start, gets huge pages on first touch only in a block of
        // FULL_ADVICE or more, where the one huge page it may fill in part matters little.
        if new_len >= FULL_ADVICE {
            self.advise(q as usize, new_len);
        }
        self.collapse(q as usize, round_down(old, HUGE_PAGE));
        q.cast()
    }
}

/// Frees a System block whose contents just moved into a mapping of ours (a `Vec` that grew past
/// [`THRESHOLD`]), leaving `malloc` as it would be had the block grown in place.
///
/// glibc serves blocks above its mmap threshold (128 KiB at first) with a mapping each, and when
/// `free` releases such a mapping it raises the threshold to the block's size, so that later
/// blocks up to that size come from the heap instead, which then grows and keeps its peak.
/// Without this allocator such a block would have grown by `realloc` (an `mremap`, no `free`),
/// and the threshold would not have moved. So the block is first shrunk with `realloc` to as many
/// bytes as its alignment (the least for which Rust's `System` calls `realloc` itself rather than
/// allocating, copying and freeing) and only then freed: `realloc` of a mapped block that small
/// copies it to the heap and unmaps it without touching the threshold, and a block that small
/// moves no threshold when freed. Any other `malloc` just frees a few bytes.
///
/// # Safety
/// `ptr` must be a live block System allocated with `layout`.
unsafe fn system_free_grown(ptr: *mut u8, layout: Layout) {
    let small = layout.align();
    // SAFETY: the caller's guarantees; `small` (a power of two) is a non-zero size.
    let shrunk = unsafe { System.realloc(ptr, layout, small) };
    if shrunk.is_null() {
        // SAFETY: a failed realloc leaves the block as it was.
        unsafe { System.dealloc(ptr, layout) }
    } else {
        // SAFETY: `shrunk` is the live block realloc returned, of `small` bytes and the same
        // alignment; `Layout::from_size_align(small, small)` is valid (a power of two).
        unsafe { System.dealloc(shrunk, Layout::from_size_align_unchecked(small, small)) }
    }
}

/// Whether a block of `layout` is large enough for a mapping of its own (and its alignment is
/// one a 2 MiB-aligned mapping satisfies).
fn large(layout: Layout) -> bool {
    layout.size() >= THRESHOLD && layout.align() <= HUGE_PAGE
}

/// The size of a small page (4 KiB on x86_64).
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the process; it touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// `n` rounded down to a multiple of `to` (a power of two).
fn round_down(n: usize, to: usize) -> usize {
    n & !(to - 1)
}

/// `n` rounded up to a multiple of `to` (a power of two); `None` on overflow.
fn round_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? & !(to - 1))
}

// SAFETY: every block is either the system allocator's (small blocks, or everything when off)
// and handled by it alone, or a mapping of ours: 2 MiB-aligned (so it satisfies any alignment up
// to 2 MiB, the only ones `large` admits), at least `size` bytes, and freed only by `munmap` with
// the length it was mapped with. Which of the two a block is depends on its layout's size and
// alignment and on a state that is fixed before the first large block (see `owns`), so every
// block is freed by the allocator that made it.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.takes(layout) {
            self.map(layout.size(), true)
        } else {
            // SAFETY: the caller's guarantees on `layout` are System's.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.takes(layout) {
            self.map(layout.size(), true) // fresh anonymous memory is zero
        } else {
            // SAFETY: the caller's guarantees on `layout` are System's.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(layout) {
            // SAFETY: a large block made while the state was ON is a mapping of ours of this size.
            unsafe { Self::unmap(ptr, layout.size()) }
        } else {
            // SAFETY: a block that is not ours came from System with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (self.owns(layout), self.takes(new_layout)) {
            // SAFETY: the block is System's and stays System's; the caller's guarantees are its.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                // SAFETY: the block is a live mapping of ours of `layout.size()` bytes.
                let q = unsafe { self.remap(ptr, layout.size(), new_size) };
                if !q.is_null() {
                    return q;
                }
                // mremap refused (a block whose mapping the kernel split): map, copy, unmap.
                let new = self.map(new_size, new_size >= FULL_ADVICE);
                if !new.is_null() {
                    // SAFETY: both blocks are live, distinct, and at least this long; the old
                    // one is a mapping of ours of `layout.size()` bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        Self::unmap(ptr, layout.size());
                    }
                }
                new
            }
            (old_ours, _) => {
                // From one allocator to the other: allocate, copy, free. A System block that
                // grows past THRESHOLD is a `Vec` growing: its new mapping fills from the start
                // like any grown part (see `remap`), so it is marked only if FULL_ADVICE or more.
                let new = if old_ours {
                    // SAFETY: `new_layout` has the caller's non-zero size and a valid alignment.
                    unsafe { System.alloc(new_layout) }
                } else {
                    self.map(new_size, new_size >= FULL_ADVICE)
                };
                if !new.is_null() {
                    // SAFETY: both blocks are live, distinct, and at least this long.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    }
                    if old_ours {
                        // SAFETY: the old block is a live mapping of ours of this size.
                        unsafe { Self::unmap(ptr, layout.size()) }
                    } else {
                        // SAFETY: the old block came from System with this layout.
                        unsafe { system_free_grown(ptr, layout) }
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 3 << 20; // 3 MiB: two huge pages

    #[test]
    fn round_up_rounds_to_whole_huge_pages() {
        assert_eq!(round_up(1, HUGE_PAGE), Some(HUGE_PAGE));
        assert_eq!(round_up(HUGE_PAGE, HUGE_PAGE), Some(HUGE_PAGE));
        assert_eq!(round_up(HUGE_PAGE + 1, HUGE_PAGE), Some(2 * HUGE_PAGE));
        assert_eq!(round_up(usize::MAX - 5, HUGE_PAGE), None);
    }

    #[test]
    fn disabled_before_any_large_block_forwards_everything() {
        let a = HugePages::new();
        assert_eq!(a.disable(), Ok(()));
        assert_eq!(a.disable(), Ok(()), "disabling twice is fine");
        assert!(!a.is_enabled());
        let layout = Layout::from_size_align(BIG, 8).unwrap();
        // SAFETY: non-zero size; freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(7, BIG);
            let q = a.realloc(p, layout, 2 * BIG);
            assert!(!q.is_null());
            assert_eq!(*q.add(BIG - 1), 7);
            a.dealloc(q, Layout::from_size_align(2 * BIG, 8).unwrap());
        }
        assert_eq!(
            a.stats().blocks_mapped,
            0,
            "nothing was mapped by the allocator"
        );
    }

    #[test]
    fn the_first_large_block_fixes_it_on() {
        let a = HugePages::new();
        let small = Layout::from_size_align(1000, 8).unwrap();
        let big = Layout::from_size_align(BIG, 8).unwrap();
        // SAFETY: non-zero sizes; each block freed once with its layout.
        unsafe {
            let s = a.alloc(small);
            a.dealloc(s, small);
            assert_eq!(a.stats().blocks_mapped, 0);
            let p = a.alloc(big);
            assert_eq!(p as usize % HUGE_PAGE, 0);
            assert_eq!(a.stats().blocks_mapped, 1);
            assert_eq!(a.disable(), Err(AlreadyServing));
            assert!(a.is_enabled());
            a.dealloc(p, big);
        }
    }

    #[test]
    fn alignment_beyond_a_huge_page_goes_to_the_system_allocator() {
        let a = HugePages::new();
        let layout = Layout::from_size_align(BIG, 4 * HUGE_PAGE).unwrap();
        // SAFETY: non-zero size; freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % (4 * HUGE_PAGE), 0);
            a.dealloc(p, layout);
        }
        assert_eq!(a.stats().blocks_mapped, 0);
    }

    #[test]
    fn realloc_across_the_threshold_both_ways_keeps_the_bytes() {
        let a = HugePages::new();
        let small = Layout::from_size_align(4096, 8).unwrap();
        // SAFETY: non-zero sizes; each block used within its size and freed once.
        unsafe {
            let p = a.alloc(small);
            for i in 0..4096 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, small, BIG);
            assert_eq!(
                q as usize % HUGE_PAGE,
                0,
                "grown past the threshold: a mapping"
            );
            assert!((0..4096).all(|i| *q.add(i) == i as u8));
            assert!(
                (4096..BIG).all(|i| *q.add(i) == 0),
                "a mapping starts zeroed"
            );
            let r = a.realloc(q, Layout::from_size_align(BIG, 8).unwrap(), 100);
            assert!((0..100).all(|i| *r.add(i) == i as u8));
            a.dealloc(r, Layout::from_size_align(100, 8).unwrap());
        }
        assert_eq!(a.stats().blocks_mapped, 1);
    }

    #[test]
    fn growing_a_mapping_moves_its_pages_and_shrinking_keeps_its_place() {
        let a = HugePages::new();
        let l1 = Layout::from_size_align(BIG, 8).unwrap();
        // SAFETY: non-zero sizes; each block used within its size and freed once.
        unsafe {
            let p = a.alloc(l1);
            for i in (0..BIG).step_by(4096) {
                *p.add(i) = (i / 4096) as u8;
            }
            let q = a.realloc(p, l1, 5 * BIG);
            assert_eq!(q as usize % HUGE_PAGE, 0);
            assert_eq!(a.stats().blocks_moved, 1);
            assert!((0..BIG)
                .step_by(4096)
                .all(|i| *q.add(i) == (i / 4096) as u8));
            assert_eq!(*q.add(5 * BIG - 1), 0, "the grown part is zero");
            // Shrinking unmaps the tail and never moves the block.
            let r = a.realloc(q, Layout::from_size_align(5 * BIG, 8).unwrap(), BIG + 1);
            assert_eq!(r, q, "shrinking stays in place");
            assert_eq!(*r.add(4096), 1);
            a.dealloc(r, Layout::from_size_align(BIG + 1, 8).unwrap());
        }
    }
}

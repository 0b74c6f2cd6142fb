//! Which thread is on which simulated kernel, and how a descriptor number says whose it is.
//!
//! A simulated kernel's descriptor `n` is shown to the program as `SIM_BASE + (slot << 20) + n`,
//! where `slot` names the [`run`](crate::run) that owns the kernel. Real descriptors are far
//! below `SIM_BASE` (a process may hold at most 20,000 here, and `RLIMIT_NOFILE` caps it on
//! Linux), so routing a call depends only on the number: below `SIM_BASE` it goes to glibc,
//! above it to the kernel of the calling thread's run, if the slot is that run's.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use netpoll::{EpollEvent, Fd};
use netpoll_sim::rng::{stream, Stream};
use netpoll_sim::Sim;
use rand_chacha::ChaCha8Rng;

use crate::kernel::Kernel;
use crate::waits::Waits;

/// The first number of a simulated descriptor: 2^30.
pub const SIM_BASE: i32 = 1 << 30;
/// Bits of a simulated descriptor number that hold the kernel's own descriptor.
const FD_BITS: u32 = 20;
/// How many runs can be alive at once in one process.
pub(crate) const SLOTS: usize = 1 << 10;

/// Which slots belong to a live run (on any thread).
static LIVE: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

/// How many zero-timeout waits and `sched_yield`s in a row a run tolerates before it lets
/// virtual time move on to the next thing that can happen.
pub(crate) const IDLE_SPINS: u32 = 32;

/// The calling thread's run.
pub(crate) struct Current<'a> {
    pub sim: Kernel<'a>,
    pub slot: u32,
    /// `getrandom`'s stream.
    pub rng: RefCell<ChaCha8Rng>,
    /// Zero-timeout waits and yields since time last moved.
    pub idle: Cell<u32>,
    /// Socket options the kernel does not model but that programs set and read back:
    /// (fd, level, name) -> value. Shared by the threads of a threaded run.
    pub opts: Opts,
    /// `epoll_wait`'s result buffer, kept between calls.
    pub events: RefCell<Vec<EpollEvent>>,
    /// What the program waits for on each descriptor: the async lost-wakeup oracle's input.
    pub waits: Waits,
    /// The last unsupported feature the program ran into (`calls/limits.rs`).
    pub limit: RefCell<Option<String>>,
}

impl<'a> Current<'a> {
    /// The run of `sim` in `slot`, with `getrandom` drawing from `seed`'s stream; the kernel's
    /// lost-wakeup scan judges by the run's [`Waits`].
    pub(crate) fn new(sim: &'a Sim, slot: u32, seed: u64) -> Current<'a> {
        let waits = Waits::default();
        waits.install(sim);
        Current {
            sim: Kernel::Single(sim),
            slot,
            rng: RefCell::new(stream(seed, Stream::Getrandom)),
            idle: Cell::new(0),
            opts: Opts::default(),
            events: RefCell::new(Vec::new()),
            waits,
            limit: RefCell::new(None),
        }
    }
}

/// A run's remembered socket options, shared by its threads (only one runs at a time, so the
/// lock is never contended).
#[derive(Clone, Default)]
pub(crate) struct Opts(Arc<Mutex<OptMap>>);

/// (fd, level, name) -> value.
type OptMap = BTreeMap<(Fd, i32, i32), i32>;

impl Opts {
    pub(crate) fn borrow(&self) -> MutexGuard<'_, OptMap> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn borrow_mut(&self) -> MutexGuard<'_, OptMap> {
        self.borrow()
    }
}

thread_local! {
    // A const initialiser and no destructor: reading it never allocates or registers anything,
    // so it is safe from inside any interposed call, even during thread start-up and exit.
    static CURRENT: Cell<*const Current<'static>> = const { Cell::new(ptr::null()) };
    /// How many interposed calls are under way on this thread. A call made from inside one (by
    /// the interposer, the simulated kernel or the thread scheduler: their own locks) is
    /// forwarded to glibc.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Whether this thread is off every run for now (it supervises a threaded run: its own
    /// waits are real, and it gets no `NETPOLL_SIM` kernel meanwhile).
    static OFF: Cell<bool> = const { Cell::new(false) };
}

/// Takes the calling thread off every run until the guard drops.
pub(crate) fn off() -> Off {
    Off(OFF.with(|o| o.replace(true)))
}

pub(crate) struct Off(bool);

impl Drop for Off {
    fn drop(&mut self) {
        OFF.with(|o| o.set(self.0));
    }
}

/// Whether the calling thread is off every run for now (a supervisor of a threaded run).
pub(crate) fn is_off() -> bool {
    OFF.with(Cell::get)
}

/// Whether the calling thread is inside an interposed call.
pub(crate) fn nested() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// Counts the calling thread as inside an interposed call until the guard drops.
pub(crate) fn inside() -> Inside {
    DEPTH.with(|d| d.set(d.get() + 1));
    Inside(())
}

pub(crate) struct Inside(());

impl Drop for Inside {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// The calling thread's run, if it is on one.
pub(crate) fn current() -> Option<&'static Current<'static>> {
    if OFF.with(Cell::get) {
        return None;
    }
    let p = CURRENT.with(Cell::get);
    if p.is_null() && crate::auto::eligible() {
        return crate::auto::start();
    }
    // SAFETY: the pointer is set by `enter` to a `Current` on the stack frame of `run`, and
    // reset by the guard `enter` returns before that frame goes (or, for a `NETPOLL_SIM`
    // thread, to a leaked one that `auto::finish` frees after taking it off the thread); it is only read on the same
    // thread, from inside calls that `run`'s closure makes, while the frame is alive. The
    // `'static` is never let out of the interposed call that asked.
    unsafe { p.as_ref() }
}

/// The calling thread's run if it already has one (never makes a `NETPOLL_SIM` kernel).
pub(crate) fn existing() -> Option<&'static Current<'static>> {
    if OFF.with(Cell::get) {
        return None;
    }
    let p = CURRENT.with(Cell::get);
    // SAFETY: as in `current`.
    unsafe { p.as_ref() }
}

/// Takes this thread off its run, returning it.
pub(crate) fn take_current() -> Option<&'static Current<'static>> {
    let p = CURRENT.with(|c| c.replace(ptr::null()));
    // SAFETY: as in `current`; the caller frees what it owns.
    unsafe { p.as_ref() }
}

/// Puts this thread on `cur` until the guard drops (also when unwinding).
pub(crate) fn enter(cur: &Current<'_>) -> Entered {
    let prev = CURRENT.with(|c| c.replace((cur as *const Current<'_>).cast()));
    Entered { prev }
}

pub(crate) struct Entered {
    prev: *const Current<'static>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

/// Claims the lowest free slot. Lowest-free keeps descriptor numbers the same from one process
/// to the next when one run is alive at a time.
pub(crate) fn claim_slot() -> Option<u32> {
    (0..SLOTS).find_map(|i| {
        LIVE[i]
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| i as u32)
    })
}

pub(crate) fn release_slot(slot: u32) {
    LIVE[slot as usize].store(false, Ordering::Release);
}

/// Where a call on descriptor `fd` goes.
pub(crate) enum Route {
    /// A real descriptor (or a negative number): glibc.
    Real,
    /// The calling thread's kernel, as its descriptor `fd`.
    Sim(&'static Current<'static>, Fd),
    /// A simulated descriptor of a run that is alive but not this thread's.
    Foreign,
    /// A simulated descriptor of a run that has ended.
    Stale,
}

pub(crate) fn route(fd: i32) -> Route {
    if fd < SIM_BASE {
        return Route::Real;
    }
    let rel = (fd - SIM_BASE) as u32;
    let slot = rel >> FD_BITS;
    let n = (rel & ((1 << FD_BITS) - 1)) as Fd;
    match current() {
        Some(cur) if cur.slot == slot => Route::Sim(cur, n),
        _ if LIVE[slot as usize].load(Ordering::Acquire) => Route::Foreign,
        _ => Route::Stale,
    }
}

/// The number the program sees for kernel descriptor `n` of the run in `slot`, or `None` if
/// `n` does not fit (a kernel configured with more than 2^20 descriptors).
pub(crate) fn host_fd(slot: u32, n: Fd) -> Option<i32> {
    if !(0..1 << FD_BITS).contains(&n) {
        return None;
    }
    Some(SIM_BASE + ((slot << FD_BITS) as i32) + n)
}

/// The kernel's own number for a descriptor the program sees, if it is a simulated one.
pub fn sim_fd(host: i32) -> Option<Fd> {
    (host >= SIM_BASE).then(|| ((host - SIM_BASE) as u32 & ((1 << FD_BITS) - 1)) as Fd)
}

//! The driver: one epoll instance, the poll descriptor table, the timers and the wake eventfd,
//! and `Driver::turn`, one iteration of the poll loop (Go's `netpoll(delay)`).
//!
//! The driver is shared by every thread of a runtime (behind an `Arc`) and is thread-safe; on
//! the simulated kernel it is used from one thread and its locks are never contended. A
//! single-threaded runtime's driver is *exclusive* (`Driver::new_exclusive`): its table and
//! timers share the turn's lock, and its descriptors' sides move by plain stores.
//!
//! # One turn
//!
//! 1. Compute the wait: `0` if the caller has runnable work, else the next timer's deadline in
//!    milliseconds, **rounded up** (a timer never fires early, and a sub-millisecond wait never
//!    busy-loops), or `-1` with no timer.
//! 2. `epoll_wait`. `EINTR` counts as an empty result: the caller's loop recomputes the wait.
//! 3. Dispatch. Each event's user data is `seq << 32 | fd` (see [`PollDesc::data`]): the event
//!    reaches the descriptor only if the table's descriptor for `fd` has that `seq`, so an event
//!    queued for a descriptor that was closed, and whose number was then reused, is dropped.
//!    The wake eventfd's event (user data [`WAKE_DATA`]) drains it. The single-threaded
//!    runtime's turn (`Wakes::AfterDispatch`) reaches the descriptors by reference under the
//!    table lock and wakes the tasks they hand back after releasing it, in the same order;
//!    the multi-threaded runtime's (`Wakes::AsDispatched`) takes a reference to each first and wakes
//!    as it goes (its wakers are switch points on simulated threads).
//! 4. Fire the timers due at `now()` (after the wait, so a timer the wait slept for is due).
//!
//! **Order at the same instant.** Readiness and timers returned by one turn are applied
//! readiness first, then timers, unless the caller asks otherwise (`timers_first`): the seeded
//! runtime flips a seeded coin each turn, so different seeds see both orders. Either way the
//! outcome for one operation is the same: an operation checks its deadline before retrying its
//! syscall, so once a deadline has fired the operation fails with `TimedOut` even if an edge
//! arrived at the same instant (Go's rule). What the order changes is which woken task enters
//! the run queue first.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use super::pd::{Dir, PollDesc};
use super::timer::{Action, Entry, Timers};
use super::wake::WakeSignal;
use crate::sys::{errno, EFD_CLOEXEC, EFD_NONBLOCK, EPOLL_CLOEXEC, EPOLL_CTL_ADD};
use crate::{EpollEvent, Events, Fd, Poller};

/// The epoll user data of the wake eventfd.
pub const WAKE_DATA: u64 = u64::MAX;

/// How many of the kernel's look-ahead words a turn takes ([`Poller::upcoming`]).
const SOON_MAX: usize = 64;

/// How many events one `epoll_wait` may return (Go uses 128).
const EVENTS_MAX: usize = 128;

static NEXT_DRIVER_ID: AtomicU64 = AtomicU64::new(1);

/// What one turn of the poll loop saw.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Turn {
    /// Descriptor events dispatched (not counting the wake eventfd's).
    pub(crate) events: usize,
    /// Timers that fired.
    pub(crate) timers: usize,
    /// `epoll_wait` failed with `EINTR`.
    pub(crate) interrupted: bool,
    /// Another thread woke the loop through the wake eventfd.
    pub(crate) remote_wake: bool,
}

impl Turn {
    /// The kernel returned only an interruption or descriptor events (nothing from a timer or
    /// another thread): the turn is fruitless if the tasks it woke then end no operation.
    pub(crate) fn only_kernel_noise(&self) -> bool {
        (self.interrupted || self.events > 0) && self.timers == 0 && !self.remote_wake
    }
}

/// Poll descriptors by fd number.
type Table = Vec<Option<Arc<PollDesc>>>;

/// The buffers of the thread that owns the poll loop for a turn, and an exclusive driver's
/// table and timers.
struct Scratch {
    events: Vec<EpollEvent>,
    ready: Vec<(Arc<PollDesc>, Events)>,
    due: Vec<Entry>,
    /// The wakers taken by a by-reference dispatch ([`Wakes::AfterDispatch`]), woken in event
    /// order once every descriptor has been dispatched.
    wakers: Vec<Waker>,
    /// The kernel's look-ahead ([`Poller::upcoming`]), with a cache hint installed: the data
    /// words it gave this turn (their descriptors' table slots are prefetched) and last turn
    /// (their slots are read by now, and the descriptors they hold are prefetched).
    soon: Vec<u64>,
    soon_before: Vec<u64>,
    /// An exclusive driver's descriptor table and timers: under the turn's lock, so that a
    /// turn takes one lock (two locked instructions) where a shared driver's takes three (see
    /// [`Driver::new_exclusive`]). Empty on a shared driver, whose table and timers have
    /// locks of their own (a registration or a timer must not wait for a turn blocked in
    /// `epoll_wait`).
    table: Table,
    timers: Timers,
}

/// The table or the timers, locked: under their own mutex (a shared driver), or under the
/// turn's (an exclusive driver; see [`Scratch::table`]).
enum Locked<'a, T> {
    Own(std::sync::MutexGuard<'a, T>),
    InScratch(std::sync::MutexGuard<'a, Scratch>),
}

/// Where an exclusive driver keeps `Self` in its [`Scratch`].
trait InScratch {
    fn get(s: &Scratch) -> &Self;
    fn get_mut(s: &mut Scratch) -> &mut Self;
}

impl InScratch for Table {
    fn get(s: &Scratch) -> &Table {
        &s.table
    }
    fn get_mut(s: &mut Scratch) -> &mut Table {
        &mut s.table
    }
}

impl InScratch for Timers {
    fn get(s: &Scratch) -> &Timers {
        &s.timers
    }
    fn get_mut(s: &mut Scratch) -> &mut Timers {
        &mut s.timers
    }
}

impl<T: InScratch> std::ops::Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Locked::Own(g) => g,
            Locked::InScratch(g) => T::get(g),
        }
    }
}

impl<T: InScratch> std::ops::DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match self {
            Locked::Own(g) => g,
            Locked::InScratch(g) => T::get_mut(g),
        }
    }
}

/// Descriptors whose last owner was dropped on a thread that cannot reach the Poller (outside
/// the runtime): the driver closes them at its next turn, or when it is dropped. Go leaves this
/// to finalizers; here it is an explicit queue, empty (one relaxed load per turn) in programs
/// that drop their values where they use them.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    any: AtomicBool,
    queue: Mutex<Vec<Arc<PollDesc>>>,
}

impl Orphans {
    /// Queues `pd` for closing by its driver.
    pub(crate) fn push(&self, pd: Arc<PollDesc>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pd);
        self.any.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<Arc<PollDesc>> {
        // A plain load first: nearly every turn finds nothing, and the swap is a locked
        // instruction. A push this load misses is taken at a later turn, or by the driver's drop
        // ([`Orphans::take_all`]).
        if !self.any.load(Ordering::Relaxed) || !self.any.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Everything queued, whatever `any` says (the driver's drop).
    fn take_all(&self) -> Vec<Arc<PollDesc>> {
        self.any.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Adds `n` to `a` with a load and a store, not a locked add: only for a counter one thread
/// writes at a time (an exclusive driver's progress; the dispatch count, written under the
/// turn's lock). Concurrent writers would lose counts.
#[inline]
fn add_unshared(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The timers, locked; on unlock their head goes to the driver's `timer_head` (when it may have
/// moved: [`Timers::take_head_change`]), so that a turn reads it without the lock. It is
/// written under the lock only: a turn that misses a later one (another thread armed an earlier
/// timer) is a turn that had not seen that timer yet, and the arming thread wakes the loop (see
/// [`DriverApi::add_timer`]).
struct TimersGuard<'a> {
    timers: Locked<'a, Timers>,
    head: &'a AtomicU64,
}

impl std::ops::Deref for TimersGuard<'_> {
    type Target = Timers;
    fn deref(&self) -> &Timers {
        &self.timers
    }
}

impl std::ops::DerefMut for TimersGuard<'_> {
    fn deref_mut(&mut self) -> &mut Timers {
        &mut self.timers
    }
}

impl Drop for TimersGuard<'_> {
    fn drop(&mut self) {
        if let Some(head) = self.timers.take_head_change() {
            self.head.store(head, Ordering::Release);
        }
    }
}

/// One epoll instance and what hangs off it. See the [module docs](self).
pub struct Driver<P: Poller> {
    id: u64,
    poller: P,
    epfd: Fd,
    wake_fd: Fd,
    pub(crate) signal: WakeSignal,
    /// Poll descriptors by fd number (a shared driver's; an exclusive driver's are in
    /// [`Scratch::table`]).
    table: Mutex<Table>,
    next_seq: AtomicU32,
    /// The timers (a shared driver's; an exclusive driver's are in [`Scratch::timers`]).
    timers: Mutex<Timers>,
    /// [`Timers::head_ns`] as of the last unlock of `timers` (see [`TimersGuard`]): a turn in
    /// which nothing can be due (`now` before it) skips the timer lock, two locked
    /// instructions, nearly every turn.
    timer_head: AtomicU64,
    /// Held by the thread running a turn: only one thread polls at a time. On an exclusive
    /// driver, also the lock of its table and timers.
    scratch: Mutex<Scratch>,
    orphans: Arc<Orphans>,
    /// Whether one thread makes every syscall and every close on this driver's descriptors (a
    /// [`Runtime`](super::Runtime)'s driver; see [`Driver::exclusive`]).
    exclusive: bool,
    /// Epoll events and timers dispatched so far (one relaxed add per turn).
    dispatched: AtomicU64,
    /// Operations that ended (a syscall that did not return `EAGAIN`, an error, an awaited
    /// edge) and timers that fired: the executors' measure of progress for the livelock bound
    /// ([`super::executor::LIVELOCK_TURNS`]).
    progress: AtomicU64,
}

/// The live descriptor an event's user data names: `None` for the wake eventfd's, and for a
/// stale one (its descriptor was closed, and its number maybe reused: the `seq` differs).
fn target(table: &[Option<Arc<PollDesc>>], data: u64) -> Option<&Arc<PollDesc>> {
    let (fd, seq) = PollDesc::split_data(data);
    table.get(fd as usize)?.as_ref().filter(|pd| pd.seq == seq)
}

/// Removes `pd` from `table` (if it is still the descriptor for its fd).
fn forget_in(table: &mut Table, pd: &PollDesc) {
    if let Some(slot) = table.get_mut(pd.fd as usize) {
        if slot.as_ref().is_some_and(|p| p.seq == pd.seq) {
            *slot = None;
        }
    }
}

/// When a turn runs the wakers of the tasks its events wake. Either way every side moves and
/// every task is woken in event order; what differs is whether a waker runs between two
/// descriptors' transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wakes {
    /// As each descriptor is dispatched, with no lock held: each is reached through a clone of
    /// its `Arc`, taken under the table lock. For the multi-threaded runtime, whose wakers are
    /// switch points on simulated threads (running one under the lock, or all of them after
    /// every transition, would change the interleaving).
    AsDispatched,
    /// Once every descriptor has been dispatched by reference under the table lock: no `Arc`
    /// clone per event (a locked increment and decrement on the descriptor's first line). For
    /// the single-threaded [`Runtime`](super::Runtime), whose wake only queues a task.
    AfterDispatch,
}

/// A task parked on one side of a poll descriptor (see [`Driver::parked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parked {
    /// The task's number (1, 2, ... in spawn order; 0 is the main future).
    pub task: u64,
    /// The descriptor.
    pub fd: Fd,
    /// The side it waits on.
    pub dir: Dir,
}

impl<P: Poller> fmt::Debug for Driver<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.id)
            .field("epfd", &self.epfd)
            .field("wake_fd", &self.wake_fd)
            .finish()
    }
}

/// What the rest of the runtime needs from a driver without knowing its Poller type.
pub(crate) trait DriverApi {
    fn now(&self) -> Duration;
    fn add_timer(&self, at: Duration, action: Action);
    fn as_any(&self) -> &dyn Any;
}

impl<P: Poller + 'static> DriverApi for Driver<P> {
    fn now(&self) -> Duration {
        self.poller.now()
    }
    fn add_timer(&self, at: Duration, action: Action) {
        let earliest = self.lock_timers().push(at, action);
        if earliest {
            // A loop blocked in epoll_wait sleeps until the previous earliest timer.
            self.wake_loop();
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn timeout_ms(now: Duration, at: Duration) -> i32 {
    let ns = at.saturating_sub(now).as_nanos();
    let ms = ns.div_ceil(1_000_000);
    i32::try_from(ms).unwrap_or(i32::MAX)
}

impl<P: Poller> Driver<P> {
    /// A new epoll instance with the wake eventfd registered.
    ///
    /// # Errors
    /// Whatever `epoll_create1`, `eventfd` or `epoll_ctl` return.
    pub fn new(poller: P) -> io::Result<Driver<P>> {
        let epfd = poller.epoll_create1(EPOLL_CLOEXEC)?;
        let wake_fd = match poller.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = poller.close(epfd);
                return Err(e);
            }
        };
        if let Err(e) = poller.epoll_ctl(
            epfd,
            EPOLL_CTL_ADD,
            wake_fd,
            Some(EpollEvent::new(Events::IN | Events::ET, WAKE_DATA)),
        ) {
            let _ = poller.close(wake_fd);
            let _ = poller.close(epfd);
            return Err(e);
        }
        Ok(Driver {
            id: NEXT_DRIVER_ID.fetch_add(1, Ordering::Relaxed),
            poller,
            epfd,
            wake_fd,
            signal: WakeSignal::new(),
            table: Mutex::new(Vec::new()),
            next_seq: AtomicU32::new(1),
            timers: Mutex::new(Timers::default()),
            timer_head: AtomicU64::new(u64::MAX),
            scratch: Mutex::new(Scratch {
                events: vec![EpollEvent::EMPTY; EVENTS_MAX],
                ready: Vec::with_capacity(EVENTS_MAX),
                due: Vec::new(),
                wakers: Vec::with_capacity(EVENTS_MAX),
                soon: Vec::with_capacity(SOON_MAX),
                soon_before: Vec::with_capacity(SOON_MAX),
                table: Table::new(),
                timers: Timers::default(),
            }),
            orphans: Arc::default(),
            exclusive: false,
            dispatched: AtomicU64::new(0),
            progress: AtomicU64::new(0),
        })
    }

    /// [`Driver::new`], for a single-threaded runtime: every syscall and every close of its
    /// descriptors is made on the runtime's thread (the net types reach their driver through
    /// that thread's context, and a descriptor dropped on another thread is queued for the
    /// driver to close), so none can close a descriptor under another's syscall, and no other
    /// thread moves a descriptor's sides (the argument is in [`super::pd`], "On an exclusive
    /// driver").
    ///
    /// Its table and timers are kept under the turn's lock ([`Scratch::table`]): a turn takes
    /// one lock where a shared driver's takes three (the scratch buffers, the timers for the
    /// wait's timeout, the table for the dispatch), and nothing waits for it, since the one
    /// thread that registers descriptors and arms timers is the one that turns. So nothing a
    /// turn runs may reach them: the turn closes orphans and fires timers through the lock it
    /// holds, and the wakers it runs (the runtime's) only queue tasks.
    pub(crate) fn new_exclusive(poller: P) -> io::Result<Driver<P>> {
        let mut d = Driver::new(poller)?;
        d.exclusive = true;
        Ok(d)
    }

    /// Whether this driver was made by [`Driver::new_exclusive`]: the net types then take no
    /// reference on a descriptor around a syscall, count tokens and progress and move the
    /// descriptors' sides with plain loads and stores, and a turn takes one lock. Each of those
    /// is otherwise a locked instruction (about 13 cycles, and a fence behind every cache miss
    /// in flight): 31 of them in a message through `rt-echo`.
    pub(crate) fn exclusive(&self) -> bool {
        self.exclusive
    }

    /// The poller.
    pub fn poller(&self) -> &P {
        &self.poller
    }

    /// Whether a short read from a stream means its queue was empty: the poller says so
    /// ([`Poller::short_read_drains`]): Linux, and the
    /// simulated kernel unless its fault plan injects short reads, so that the sim exercises the
    /// same read path as the real kernel.
    pub fn short_read_drains(&self) -> bool {
        self.poller.short_read_drains()
    }

    /// The driver's id (unique in the process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The epoll instance every descriptor is registered with (for oracles that ask the
    /// kernel about it, such as `netpoll_sim::Sim::stranded`; calling `epoll_wait` on it behind
    /// the driver's back steals events from the runtime).
    pub fn epfd(&self) -> Fd {
        self.epfd
    }

    /// The eventfd that wakes a blocked poll loop (registered with [`WAKE_DATA`]).
    pub fn wake_fd(&self) -> Fd {
        self.wake_fd
    }

    /// The earliest armed timer (sleep or deadline), on the Poller's clock. Timers that were
    /// cancelled or made stale still count until they come due.
    pub fn next_timer(&self) -> Option<Duration> {
        self.lock_timers().next()
    }

    /// Epoll events (other than the wake eventfd's) and timers dispatched since the driver was
    /// made.
    pub fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed)
    }

    /// Registers `fd` (already non-blocking) once, edge-triggered for both directions, with a
    /// fresh sequence tag.
    ///
    /// # Errors
    /// Whatever `epoll_ctl` returns.
    pub(crate) fn register(&self, fd: Fd) -> io::Result<Arc<PollDesc>> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let pd = PollDesc::new(fd, seq);
        let idx = usize::try_from(fd).map_err(|_| crate::sys::err(errno::EBADF))?;
        {
            let mut t = self.lock_table();
            if t.len() <= idx {
                t.resize(idx + 1, None);
            }
            t[idx] = Some(pd.clone());
        }
        let ev = EpollEvent::new(
            Events::IN | Events::OUT | Events::RDHUP | Events::ET,
            pd.data(),
        );
        if let Err(e) = self
            .poller
            .epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, Some(ev))
        {
            self.forget(&pd);
            return Err(e);
        }
        Ok(pd)
    }

    /// Removes `pd` from the table (if it is still the descriptor for its fd).
    fn forget(&self, pd: &PollDesc) {
        forget_in(&mut self.lock_table(), pd);
    }

    /// Locks the descriptor table (see [`Scratch::table`]).
    fn lock_table(&self) -> Locked<'_, Table> {
        if self.exclusive {
            Locked::InScratch(self.scratch.lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            Locked::Own(self.table.lock().unwrap_or_else(|e| e.into_inner()))
        }
    }

    /// Runs `f` on the table during a turn, which holds `scratch`: an exclusive driver's is
    /// `held` (its own, under the same lock), a shared driver's is locked for `f`.
    fn turn_table<R>(&self, held: &mut Table, f: impl FnOnce(&Table) -> R) -> R {
        if self.exclusive {
            f(held)
        } else {
            f(&self.lock_table())
        }
    }

    /// [`turn_table`](Self::turn_table) for the timers; publishes their head as a
    /// [`TimersGuard`] does.
    fn turn_timers<R>(&self, held: &mut Timers, f: impl FnOnce(&mut Timers) -> R) -> R {
        if self.exclusive {
            let r = f(held);
            if let Some(head) = held.take_head_change() {
                self.timer_head.store(head, Ordering::Release);
            }
            r
        } else {
            f(&mut self.lock_timers())
        }
    }

    /// The last reference to a closing descriptor is gone: forget it, then close the fd (in that
    /// order, so the number is not reused while the table still names it). Closing the last
    /// descriptor of the open file also removes its epoll registration.
    pub fn close_fd(&self, pd: &PollDesc) {
        self.forget(pd);
        let _ = self.poller.close(pd.fd);
    }

    /// The queue through which descriptors dropped off the runtime's threads reach it.
    pub(crate) fn orphans(&self) -> Arc<Orphans> {
        self.orphans.clone()
    }

    /// Closes the descriptors dropped off the runtime's threads since the last call (`held`:
    /// see [`turn_table`](Self::turn_table)).
    fn close_orphans(&self, held: &mut Table) {
        for pd in self.orphans.take() {
            // On an exclusive driver the dropping thread left the descriptor alone (see
            // `pd`, "On an exclusive driver"); elsewhere it is closing already (a no-op).
            let _ = pd.close();
            if self.exclusive {
                forget_in(held, &pd);
            } else {
                self.forget(&pd);
            }
            let _ = self.poller.close(pd.fd);
        }
    }

    /// Whether a turn is about to block, or blocks, in `epoll_wait` (its last dispatch done).
    pub(crate) fn polling(&self) -> bool {
        self.signal.is_polling()
    }

    /// Wakes the loop if it is blocked in `epoll_wait` (coalesced; see [`super::wake`]).
    pub fn wake_loop(&self) {
        if self.signal.notify() {
            let _ = self.poller.write(self.wake_fd, &1u64.to_ne_bytes());
        }
    }

    /// Arms a deadline for one side of `pd`: bumps its generation and either expires it now
    /// (`at <= now`) or arms a timer. `None` clears the deadline.
    pub(crate) fn set_deadline(&self, pd: &Arc<PollDesc>, dir: Dir, at: Option<Duration>)
    where
        P: 'static,
    {
        let now = self.poller.now();
        let expired = at.is_some_and(|at| at <= now);
        // The generation and the timer change together under the timer lock, so that the
        // heap fires a deadline with the generation it was armed with.
        let earliest = {
            let mut timers = self.lock_timers();
            if self.exclusive {
                pd.side(dir).reset_deadline_exclusive(expired);
            } else {
                pd.side(dir).reset_deadline(expired);
            }
            timers.set_deadline(pd, dir, at.filter(|_| !expired))
        };
        if earliest {
            // A loop blocked in epoll_wait sleeps until the previous earliest timer.
            self.wake_loop();
        }
    }

    /// Locks the timers; the guard publishes their new head when dropped.
    fn lock_timers(&self) -> TimersGuard<'_> {
        let timers = if self.exclusive {
            Locked::InScratch(self.scratch.lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            Locked::Own(self.timers.lock().unwrap_or_else(|e| e.into_inner()))
        };
        TimersGuard {
            timers,
            head: &self.timer_head,
        }
    }

    /// Counts one unit of progress (see the `progress` field).
    pub(crate) fn note_progress(&self) {
        self.add_progress(1);
    }

    /// Counts `n` units of progress: on an exclusive driver one thread counts them, with a
    /// load and a store.
    fn add_progress(&self, n: u64) {
        if self.exclusive {
            add_unshared(&self.progress, n);
        } else {
            self.progress.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Operations ended and timers fired so far: a task that makes progress moves it.
    pub(crate) fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// One turn of the poll loop (see the [module docs](self)); returns what the kernel
    /// reported and how much was dispatched.
    ///
    /// `block`: whether to wait at all; `has_work` is called after the loop announced that it
    /// is about to block, and a `true` turns the wait into a poll (see [`super::wake`]).
    /// `wakes`: when the parked tasks' wakers run (see [`Wakes`]).
    ///
    /// # Errors
    /// `epoll_wait`'s errors other than `EINTR`; on the simulated kernel, `Deadlock` when the
    /// wait could never end.
    pub(crate) fn turn(
        &self,
        block: bool,
        timers_first: bool,
        wakes: Wakes,
        has_work: impl Fn() -> bool,
    ) -> io::Result<Turn> {
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = &mut *guard;
        let by_ref = wakes == Wakes::AfterDispatch;
        self.close_orphans(&mut scratch.table);
        let timeout = if block {
            self.signal.begin_poll();
            if has_work() {
                0
            } else {
                let next = self.turn_timers(&mut scratch.timers, |t| t.next());
                match next {
                    None => -1,
                    Some(at) => timeout_ms(self.poller.now(), at),
                }
            }
        } else {
            0
        };
        let r = self
            .poller
            .epoll_wait(self.epfd, &mut scratch.events, timeout);
        if block {
            self.signal.end_poll();
        }
        let mut turn = Turn::default();
        let n = match r {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(errno::EINTR) => {
                turn.interrupted = true;
                0
            }
            Err(e) => return Err(e),
        };
        let woken = scratch.events[..n].iter().any(|ev| ev.data == WAKE_DATA);
        if !by_ref {
            // A reference to each descriptor now: its wakers run as it is dispatched, with no
            // lock held.
            self.turn_table(&mut scratch.table, |t| {
                for ev in &scratch.events[..n] {
                    if let Some(pd) = target(t, ev.data) {
                        scratch.ready.push((pd.clone(), ev.events));
                    }
                }
            });
        }
        // The eventfd is read with no lock held: on simulated threads a Poller call is a switch
        // point, and another thread may need the table meanwhile.
        if woken {
            let mut buf = [0u8; 8];
            // A spurious event on the eventfd reads nothing: not a wake.
            turn.remote_wake |= self.poller.read(self.wake_fd, &mut buf).is_ok();
            self.signal.drained();
        }
        {
            let now = self.poller.now();
            if u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
                >= self.timer_head.load(Ordering::Acquire)
            {
                let due = &mut scratch.due;
                self.turn_timers(&mut scratch.timers, |t| t.due(now, due));
            }
        }
        turn.timers = scratch.due.len();
        if !by_ref {
            turn.events = scratch.ready.len();
            self.account(&turn);
        }
        if timers_first {
            for e in scratch.due.drain(..) {
                e.fire();
            }
        }
        if by_ref {
            let hinted = crate::hint::installed();
            if hinted {
                std::mem::swap(&mut scratch.soon, &mut scratch.soon_before);
                scratch.soon.resize(SOON_MAX, 0);
                let k = self.poller.upcoming(&mut scratch.soon);
                scratch.soon.truncate(k);
            }
            let (events, wakers) = (&scratch.events[..n], &mut scratch.wakers);
            let (soon, before) = (&scratch.soon, &scratch.soon_before);
            self.turn_table(&mut scratch.table, |t| {
                if hinted {
                    // Two stages a turn apart: a descriptor's slot, then the descriptor.
                    for &data in before {
                        if let Some(pd) = target(t, data) {
                            crate::hint::prefetch(&**pd, 64);
                        }
                    }
                    for &data in soon {
                        if let Some(slot) = t.get(PollDesc::split_data(data).0 as usize) {
                            crate::hint::prefetch(slot, 1);
                        }
                    }
                }
                for ev in events {
                    if let Some(pd) = target(t, ev.data) {
                        turn.events += 1;
                        if self.exclusive {
                            pd.on_event_exclusive_with(ev.events, |w| wakers.push(w));
                        } else {
                            pd.on_event_with(ev.events, |w| wakers.push(w));
                        }
                    }
                }
            });
            self.account(&turn);
            if hinted {
                // Each waker's target first (a task's cell, for this runtime's own wakers):
                // with many connections each is a miss, and a wake's first act is a locked
                // instruction on it, which would make each wait for its own in turn.
                for w in &scratch.wakers {
                    crate::hint::prefetch_addr(w.data().cast());
                }
            }
            for w in scratch.wakers.drain(..) {
                w.wake();
            }
        } else {
            for (pd, ev) in scratch.ready.drain(..) {
                pd.on_event(ev);
            }
        }
        for e in scratch.due.drain(..) {
            e.fire();
        }
        Ok(turn)
    }

    /// Adds a turn's events and timers to the counters (timers are progress).
    fn account(&self, turn: &Turn) {
        // Written only by the thread running a turn, under `scratch`: a load and a store, not
        // a locked add.
        add_unshared(&self.dispatched, (turn.events + turn.timers) as u64);
        if turn.timers > 0 {
            self.add_progress(turn.timers as u64);
        }
    }

    /// Every task parked on a descriptor, by fd number then side (read first). One pass over
    /// the descriptor table: for deadlock reports and for oracles run at quiescence (see
    /// [`Runtime::set_quiescence_hook`](super::Runtime::set_quiescence_hook)).
    pub fn parked(&self) -> Vec<Parked> {
        let t = self.lock_table();
        let mut out = Vec::new();
        for pd in t.iter().flatten() {
            for dir in [Dir::Read, Dir::Write] {
                if let Some(task) = pd.side(dir).parked_task() {
                    out.push(Parked {
                        task,
                        fd: pd.fd,
                        dir,
                    });
                }
            }
        }
        out
    }

    /// How many sleeps are armed.
    pub(crate) fn sleeping(&self) -> usize {
        self.lock_timers().live_sleeps()
    }
}

impl<P: Poller> Drop for Driver<P> {
    fn drop(&mut self) {
        for pd in self.orphans.take_all() {
            let _ = self.poller.close(pd.fd);
        }
        let _ = self.poller.close(self.wake_fd);
        let _ = self.poller.close(self.epfd);
    }
}

//! The poll descriptor: one per registered fd, with a read [`Side`] and a write [`Side`].
//!
//! This is Go's `pollDesc` (`runtime/netpoll.go`). An fd is registered once, with
//! `EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`, and never modified: the kernel reports each edge
//! once, and the side it concerns remembers it until a task consumes it.
//!
//! # A side's state
//!
//! Each side is one 64-bit word, [`Side::state`], plus a waiter slot (a mutex around the parked
//! task's [`Waker`]). The word packs:
//!
//! | bits | field | meaning |
//! |---|---|---|
//! | 0..2 | kind | [`NIL`], [`READY`] or [`WAIT`] (Go's `pdNil`, `pdReady`, `pdWait`/`G`) |
//! | 2 | [`CLOSED`] | the descriptor is closing: every wait fails, for ever |
//! | 3 | [`EXPIRED`] | the side's deadline has passed: every wait fails until the deadline is reset |
//! | 4..32 | deadline generation | bumped by every deadline change, so stale timers are no-ops |
//! | 32..64 | waiter token | which operation is parked, when kind is [`WAIT`] |
//!
//! The kinds:
//!
//! - **[`NIL`]**: no edge has arrived since the last one was consumed, and nobody waits.
//! - **[`READY`]**: an edge arrived and nobody has consumed it. The next wait returns at once
//!   (and moves the side back to `NIL`); the operation then retries its syscall.
//! - **[`WAIT`]**: an operation got `EAGAIN` and parked; the slot holds its waker and the word
//!   holds its token.
//!
//! Who moves it where (every transition is in this file, nowhere else):
//!
//! | from | to | by | how |
//! |---|---|---|---|
//! | `NIL` | `READY` | the poll loop, on an event ([`Side::notify`]) | CAS, no lock |
//! | `READY` | `NIL` | the operation, consuming the edge ([`Side::poll_wait`]; [`Side::take_ready`] when it was woken from its park and is about to retry) | CAS, no lock |
//! | `NIL` | `WAIT` | the operation, parking ([`Side::poll_wait`]) | CAS under the slot lock |
//! | `WAIT` | `READY` | the poll loop, on an event ([`Side::notify`]) | CAS under the slot lock, takes the waker |
//! | `WAIT` | `NIL` | a dropped operation ([`Side::cancel`]); an expiring deadline ([`Side::expire`], [`Side::reset_deadline`]); close ([`Side::close`]) | CAS under the slot lock, takes the waker |
//!
//! **Invariant**, true whenever the slot lock is free: the kind is `WAIT` if and only if the slot
//! holds a waiter, and that waiter is the operation whose token the word holds (the slot does
//! not repeat the token). Both halves of that pair only change under the lock; the two
//! lock-free transitions (`NIL`↔`READY`) never touch a `WAIT` word.
//!
//! **Why no notification is lost** between an operation's `EAGAIN` and its park: the operation
//! parks with a CAS from `NIL`. If an edge arrived after the syscall, the word is `READY` (the
//! notifier's CAS from `NIL` came first), the park's CAS fails, the operation consumes the edge
//! and retries the syscall. If the park's CAS came first, the notifier's CAS from `NIL` fails; it
//! re-reads `WAIT`, takes the slot lock (which the parker holds until its waker is stored) and
//! wakes that waker. Either way the edge reaches the operation. `tests/loom_pd.rs` checks this
//! and the other races below under every interleaving loom can produce.
//!
//! **A second waiter** on a side (a different token while the word is `WAIT`) is refused with
//! [`WaitError::DoubleWait`]: the first waiter's waker is not overwritten. The *same* operation
//! polled again (its task was woken by something else) keeps its place and refreshes its waker.
//!
//! **Closing** sets `CLOSED` and wakes the waiter; `CLOSED` is never cleared. **Deadlines**: a
//! timer carries the generation it was armed with; [`Side::expire`] sets `EXPIRED` (and wakes the
//! waiter) only if the generation still matches, in the same CAS, so a timer that fires after the
//! deadline was extended or cleared does nothing. [`Side::reset_deadline`] bumps the generation
//! and sets or clears `EXPIRED` in one step.
//!
//! The error flags are checked before the kind: an operation whose deadline has passed fails
//! with `TimedOut` even if an edge is pending, as in Go (`netpollcheckerr` before the read).
//!
//! # On an exclusive driver
//!
//! A single-threaded [`Runtime`](super::Runtime)'s driver is *exclusive*
//! (`Driver::new_exclusive`): the transitions that the table above does by CAS are there a
//! load and a plain store (`Side::notify_take_exclusive`, `Side::poll_wait_exclusive`,
//! `Side::take_ready_exclusive`, `Side::reset_deadline_exclusive`, and the `READ_CLOSED`
//! flag and the token in the descriptor's `refs` word), each a locked instruction fewer,
//! seven in a message through `rt-echo`. The slot lock is kept: every transition to or from
//! `WAIT` still holds it (a lock-free waker slot needs `unsafe`). A plain store loses no
//! update because nothing else writes these words while the runtime's thread may:
//!
//! - **Who calls the exclusive variants**: the driver's turn (dispatch; it runs inside
//!   `Runtime::block_on`, on its thread), and the net types' operations and deadlines, which
//!   reach the driver through the calling thread's runtime context and assert that it is the
//!   descriptor's driver (`IoFd::with`) before they touch the descriptor; `connect`'s wait
//!   too. The driver methods that do it (`register`, `set_deadline`) are crate-private, so no
//!   descriptor outside the net types is in an exclusive driver's table.
//! - **Closing** ([`PollDesc::close`], which moves both sides and the `refs` word): a net
//!   value's `close` asserts the runtime's thread first (it always panicked elsewhere, when
//!   it came to close the fd, but after moving the sides); a value dropped off that thread
//!   leaves its descriptor alone and queues it, and the driver's next turn closes it on its
//!   thread (`Orphans`).
//! - **Timers**: a deadline's expiry ([`Side::expire`]) is fired by the turn, on the thread;
//!   a [`Sleep`](super::Sleep) fires a task's waker, not a side.
//! - **Wakers and join handles** called or polled on other threads touch a task's cell and
//!   join state, never a descriptor.
//! - **A parked operation dropped on another thread** ([`Side::cancel`]): it writes only a
//!   `WAIT` word, under the slot lock; the plain stores write only words that are not `WAIT`
//!   (a parked side moves under the lock, as above), and a side becomes `WAIT` only by a park,
//!   on the runtime's thread. So the two never write the same word at once.
//! - **Everything else** (`Runtime::driver`, the quiescence hook's `&Driver`) happens while
//!   `block_on` is not running (it takes the runtime by `&mut`), or on its thread (the hook),
//!   ordered with it by whatever moved the runtime between threads.
//!
//! The multi-threaded runtime's driver is not exclusive and keeps the CAS transitions above,
//! which `tests/loom_pd.rs` model-checks.

use std::fmt;
use std::sync::Arc;
use std::task::{Poll, Waker};

use super::sync::{lock, AtomicU64, Mutex, Ordering};
use crate::Fd;

/// Kind: nothing pending, nobody waiting.
pub const NIL: u64 = 0;
/// Kind: an edge arrived and was not consumed yet.
pub const READY: u64 = 1;
/// Kind: an operation is parked; its token is in the high 32 bits.
pub const WAIT: u64 = 2;
const KIND_MASK: u64 = 0b11;
/// Flag: the descriptor is closing.
pub const CLOSED: u64 = 1 << 2;
/// Flag: the deadline has passed.
pub const EXPIRED: u64 = 1 << 3;
const GEN_SHIFT: u32 = 4;
const GEN_MASK: u64 = ((1 << 28) - 1) << GEN_SHIFT;
const TOKEN_SHIFT: u32 = 32;

fn kind(s: u64) -> u64 {
    s & KIND_MASK
}

fn token_of(s: u64) -> u32 {
    (s >> TOKEN_SHIFT) as u32
}

/// The deadline generation in a state word (28 bits, wrapping).
fn gen_of(s: u64) -> u32 {
    ((s & GEN_MASK) >> GEN_SHIFT) as u32
}

/// `s` with kind `k` and token `t` (the token is meaningful only with [`WAIT`]).
fn with_kind(s: u64, k: u64, t: u32) -> u64 {
    (s & (CLOSED | EXPIRED | GEN_MASK)) | k | (u64::from(t) << TOKEN_SHIFT)
}

/// The word [`Side::reset_deadline`] moves `cur` to, and the new generation: the generation
/// bumped (28 bits, wrapping), `EXPIRED` set if the new deadline has already passed (a parked
/// waiter then leaves: `WAIT → NIL`, its waker to be woken) and cleared otherwise.
fn deadline_word(cur: u64, expired_now: bool) -> (u64, u32) {
    let gen = (gen_of(cur).wrapping_add(1)) & ((1 << 28) - 1);
    let base = if expired_now && kind(cur) == WAIT {
        with_kind(cur, NIL, 0)
    } else {
        cur
    };
    let mut next = (base & !(GEN_MASK | EXPIRED)) | (u64::from(gen) << GEN_SHIFT);
    if expired_now {
        next |= EXPIRED;
    }
    (next, gen)
}

/// Why a wait failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    /// The descriptor was closed (before or during the wait).
    Closed,
    /// The side's deadline passed.
    TimedOut,
    /// Another operation is already parked on this side.
    DoubleWait,
}

impl WaitError {
    /// The error an operation returns to its caller.
    pub fn into_io(self, side: &'static str) -> std::io::Error {
        use std::io::{Error, ErrorKind};
        match self {
            WaitError::Closed => closed_error(),
            WaitError::TimedOut => Error::new(ErrorKind::TimedOut, "netpoll: i/o deadline passed"),
            WaitError::DoubleWait => Error::new(
                ErrorKind::ResourceBusy,
                format!("netpoll: a second operation waits on the {side} side of one descriptor"),
            ),
        }
    }
}

/// The error of any operation on a closed descriptor (Go's `net.ErrClosed`).
pub fn closed_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "netpoll: use of closed descriptor",
    )
}

/// The parked operation: how to wake it, and who it is. Its token is the state word's (the
/// word holds it while the kind is [`WAIT`], which is exactly while the slot holds a waiter).
struct Waiter {
    waker: Waker,
    /// The runtime's id for the parked task, for deadlock reports.
    task: u64,
}

/// One direction (read or write) of a poll descriptor: the state machine described in the
/// [module docs](self).
///
/// `repr(C)`, state word first: [`PollDesc`] relies on where it lies (see there). 40 bytes:
/// the word and the slot (a mutex of 8 around a waiter of 24).
#[repr(C)]
pub struct Side {
    state: AtomicU64,
    slot: Mutex<Option<Waiter>>,
}

impl Default for Side {
    fn default() -> Side {
        Side::new()
    }
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        f.debug_struct("Side")
            .field("kind", &["NIL", "READY", "WAIT", "?"][kind(s) as usize % 4])
            .field("closed", &(s & CLOSED != 0))
            .field("expired", &(s & EXPIRED != 0))
            .field("gen", &gen_of(s))
            .field("token", &token_of(s))
            .finish()
    }
}

impl Side {
    /// A side in state `NIL`, generation 0, no flags.
    pub fn new() -> Side {
        Side {
            state: AtomicU64::new(NIL),
            slot: Mutex::new(None),
        }
    }

    /// The raw state word (for tests and reports).
    pub fn state(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    /// The current deadline generation.
    pub fn generation(&self) -> u32 {
        gen_of(self.state.load(Ordering::Acquire))
    }

    /// The error flags, checked by an operation before each syscall attempt.
    pub fn check(&self) -> Result<(), WaitError> {
        let s = self.state.load(Ordering::Acquire);
        if s & CLOSED != 0 {
            Err(WaitError::Closed)
        } else if s & EXPIRED != 0 {
            Err(WaitError::TimedOut)
        } else {
            Ok(())
        }
    }

    /// The poll loop saw an edge for this side: `NIL → READY`, or `WAIT → READY` and wake the
    /// waiter. `READY` stays `READY` (edges do not count).
    pub fn notify(&self) {
        if let Some(w) = self.notify_take() {
            w.wake();
        }
    }

    /// [`notify`](Self::notify), but the parked waiter's waker (if one was parked) is handed
    /// back to the caller, to wake later, instead of woken here. The side's transition is the
    /// same.
    pub fn notify_take(&self) -> Option<Waker> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            match kind(cur) {
                READY => return None,
                NIL => match self.state.compare_exchange_weak(
                    cur,
                    with_kind(cur, READY, 0),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return None,
                    Err(now) => cur = now,
                },
                _ => {
                    // WAIT: the waiter's waker is in the slot; take both under the lock.
                    let waiter = {
                        let mut slot = lock(&self.slot);
                        let now = self.state.load(Ordering::Acquire);
                        if kind(now) != WAIT {
                            cur = now;
                            continue;
                        }
                        self.state
                            .store(with_kind(now, READY, 0), Ordering::Release);
                        slot.take()
                    };
                    let w = waiter.expect("pd invariant: WAIT without a waiter in the slot");
                    return Some(w.waker);
                }
            }
        }
    }

    /// An operation got `EAGAIN`: consume a pending edge (`Ready(Ok)`: retry the syscall), or
    /// park as `token` (`Pending`), or fail (closed, deadline passed, another waiter).
    ///
    /// `task` names the parked task in deadlock reports.
    pub fn poll_wait(&self, waker: &Waker, token: u32, task: u64) -> Poll<Result<(), WaitError>> {
        // Fast path, no lock: consume a pending edge.
        let cur = self.state.load(Ordering::Acquire);
        if cur & (CLOSED | EXPIRED) == 0 && self.consume_ready(cur) {
            return Poll::Ready(Ok(()));
        }
        let mut slot = lock(&self.slot);
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & CLOSED != 0 {
                return Poll::Ready(Err(WaitError::Closed));
            }
            if cur & EXPIRED != 0 {
                return Poll::Ready(Err(WaitError::TimedOut));
            }
            match kind(cur) {
                READY => match self.state.compare_exchange(
                    cur,
                    with_kind(cur, NIL, 0),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Poll::Ready(Ok(())),
                    Err(now) => cur = now,
                },
                NIL => match self.state.compare_exchange(
                    cur,
                    with_kind(cur, WAIT, token),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        debug_assert!(slot.is_none(), "pd invariant: NIL with a waiter");
                        *slot = Some(Waiter {
                            waker: waker.clone(),
                            task,
                        });
                        return Poll::Pending;
                    }
                    Err(now) => cur = now,
                },
                _ if token_of(cur) == token => {
                    // The same operation, polled again: refresh its waker.
                    let w = slot
                        .as_mut()
                        .expect("pd invariant: WAIT without a waiter in the slot");
                    if !w.waker.will_wake(waker) {
                        w.waker = waker.clone();
                    }
                    w.task = task;
                    return Poll::Pending;
                }
                _ => return Poll::Ready(Err(WaitError::DoubleWait)),
            }
        }
    }

    /// An operation woken from its park is about to retry its syscall: consume the edge that
    /// woke it (`READY → NIL`) if it is still there, so that the next operation on this side
    /// does not retry once more after `EAGAIN` for an edge this retry has already seen. Returns
    /// whether it consumed one. Like the fast path of [`poll_wait`](Self::poll_wait), a
    /// lock-free CAS that never touches a `WAIT` word.
    pub fn take_ready(&self) -> bool {
        self.consume_ready(self.state.load(Ordering::Acquire))
    }

    /// `READY → NIL` by one CAS from the word `cur`: whether it won (`false` if `cur` is not
    /// `READY` or the word has moved on).
    fn consume_ready(&self, cur: u64) -> bool {
        kind(cur) == READY
            && self
                .state
                .compare_exchange(
                    cur,
                    with_kind(cur, NIL, 0),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// The operation `token` is gone (its future was dropped): if it is parked, unpark it
    /// (`WAIT → NIL`) without waking anyone. A pending edge is kept.
    pub fn cancel(&self, token: u32) {
        let cur = self.state.load(Ordering::Acquire);
        if kind(cur) != WAIT || token_of(cur) != token {
            return;
        }
        let mut slot = lock(&self.slot);
        let now = self.state.load(Ordering::Acquire);
        if kind(now) == WAIT && token_of(now) == token {
            self.state.store(with_kind(now, NIL, 0), Ordering::Release);
            let w = slot.take();
            drop(slot);
            drop(w);
        }
    }

    /// Sets `flags` (and, if `gen` is given, only while the generation is `gen`). A parked
    /// waiter is moved to `NIL` and woken: it will see the flag. Returns whether the flags were
    /// set.
    fn fail(&self, flags: u64, gen: Option<u32>) -> bool {
        let waiter = {
            let mut slot = lock(&self.slot);
            let cur = self.state.load(Ordering::Acquire);
            if let Some(g) = gen {
                if gen_of(cur) != g {
                    return false;
                }
            }
            let next = if kind(cur) == WAIT {
                with_kind(cur, NIL, 0)
            } else {
                cur
            };
            // Under the lock the word can still move NIL ↔ READY (lock-free); CAS against it.
            let mut cur = cur;
            let mut next = next | flags;
            loop {
                match self
                    .state
                    .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break,
                    Err(now) => {
                        cur = now;
                        next = now | flags;
                    }
                }
            }
            if kind(cur) == WAIT {
                slot.take()
            } else {
                None
            }
        };
        if let Some(w) = waiter {
            w.waker.wake();
        }
        true
    }

    /// Close: set `CLOSED` for ever and wake the waiter, if any.
    pub fn close(&self) {
        self.fail(CLOSED, None);
    }

    /// A deadline timer armed with generation `gen` fired: set `EXPIRED` and wake the waiter,
    /// unless the deadline changed since (then this is a stale timer and nothing happens).
    /// Returns whether it took effect.
    pub fn expire(&self, gen: u32) -> bool {
        self.fail(EXPIRED, Some(gen))
    }

    /// A new deadline: bump the generation (so every armed timer is stale) and set `EXPIRED` if
    /// the new deadline has already passed, clear it otherwise. Returns the new generation, for
    /// the timer that will expire it.
    pub fn reset_deadline(&self, expired_now: bool) -> u32 {
        let waiter = {
            let mut slot = lock(&self.slot);
            let mut cur = self.state.load(Ordering::Acquire);
            loop {
                let (next, gen) = deadline_word(cur, expired_now);
                match self
                    .state
                    .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        let w = if expired_now && kind(cur) == WAIT {
                            slot.take()
                        } else {
                            None
                        };
                        break (gen, w);
                    }
                    Err(now) => cur = now,
                }
            }
        };
        let (gen, w) = waiter;
        if let Some(w) = w {
            w.waker.wake();
        }
        gen
    }

    /// [`notify_take`](Self::notify_take) on a descriptor of an exclusive driver (see
    /// [module docs](self#on-an-exclusive-driver)): `NIL → READY` is a plain store; `WAIT → READY`
    /// takes the slot lock, as on any driver.
    pub(crate) fn notify_take_exclusive(&self) -> Option<Waker> {
        let cur = self.state.load(Ordering::Acquire);
        match kind(cur) {
            READY => None,
            NIL => {
                self.state
                    .store(with_kind(cur, READY, 0), Ordering::Release);
                None
            }
            _ => self.notify_take(),
        }
    }

    /// [`poll_wait`](Self::poll_wait) on a descriptor of an exclusive driver: consuming an
    /// edge is a plain store, and so is parking (`NIL → WAIT`, under the slot lock: every
    /// transition to or from `WAIT` holds it, on any driver). An error flag or a `WAIT` word
    /// (the same operation polled again, or a second waiter) takes the shared path.
    pub(crate) fn poll_wait_exclusive(
        &self,
        waker: &Waker,
        token: u32,
        task: u64,
    ) -> Poll<Result<(), WaitError>> {
        let cur = self.state.load(Ordering::Acquire);
        if cur & (CLOSED | EXPIRED) == 0 {
            match kind(cur) {
                READY => {
                    self.state.store(with_kind(cur, NIL, 0), Ordering::Release);
                    return Poll::Ready(Ok(()));
                }
                NIL => {
                    let mut slot = lock(&self.slot);
                    debug_assert_eq!(
                        self.state.load(Ordering::Acquire),
                        cur,
                        "pd invariant: an exclusive side moved under its thread"
                    );
                    debug_assert!(slot.is_none(), "pd invariant: NIL with a waiter");
                    self.state
                        .store(with_kind(cur, WAIT, token), Ordering::Release);
                    *slot = Some(Waiter {
                        waker: waker.clone(),
                        task,
                    });
                    return Poll::Pending;
                }
                _ => {}
            }
        }
        self.poll_wait(waker, token, task)
    }

    /// [`take_ready`](Self::take_ready) on a descriptor of an exclusive driver: a plain store.
    pub(crate) fn take_ready_exclusive(&self) -> bool {
        let cur = self.state.load(Ordering::Acquire);
        if kind(cur) != READY {
            return false;
        }
        self.state.store(with_kind(cur, NIL, 0), Ordering::Release);
        true
    }

    /// [`reset_deadline`](Self::reset_deadline) on a descriptor of an exclusive driver: with
    /// nobody parked, a plain store and no lock (the slot is not touched); a `WAIT` word takes
    /// the shared path, under the lock.
    pub(crate) fn reset_deadline_exclusive(&self, expired_now: bool) -> u32 {
        let cur = self.state.load(Ordering::Acquire);
        if kind(cur) == WAIT {
            return self.reset_deadline(expired_now);
        }
        let (next, gen) = deadline_word(cur, expired_now);
        self.state.store(next, Ordering::Release);
        gen
    }

    /// The task parked on this side, if any (for deadlock reports).
    pub fn parked_task(&self) -> Option<u64> {
        lock(&self.slot).as_ref().map(|w| w.task)
    }
}

/// Which side of a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Reading (and accepting, for a listener).
    Read,
    /// Writing (and connecting).
    Write,
}

impl Dir {
    /// `"read"` or `"write"`.
    pub fn name(self) -> &'static str {
        match self {
            Dir::Read => "read",
            Dir::Write => "write",
        }
    }
}

/// The descriptor's first word, [`PollDesc::refs`], packs the reference count that keeps an
/// fd number alive while a syscall on it is in flight (a small version of Go's `fdMutex`: the
/// number is closed by whoever drops the last reference after [`PollDesc::close`], so a
/// concurrent `read` never reaches an fd that was closed and reused under it), two flags, and
/// the token source of the parked operations:
///
/// | bits | field |
/// |---|---|
/// | 0 | [`REF_CLOSING`]: [`PollDesc::close`] was called |
/// | 1 | [`READ_CLOSED`]: see [`PollDesc::read_closed`] |
/// | 2..32 | syscalls in flight (× [`REF_ONE`]) |
/// | 32..64 | the next token ([`PollDesc::next_token`]; × [`TOKEN_ONE`], wrapping) |
///
/// One word, so that a syscall, an event's flag and a park's token touch nothing outside the
/// descriptor's hot 64 bytes (see [`PollDesc`]).
///
/// On a single-threaded [`Runtime`](super::Runtime) no other thread can close a descriptor
/// under a syscall: its driver is exclusive (`Driver::exclusive`), and there a syscall takes
/// no reference (it checks [`REF_CLOSING`] with a load) and a token is drawn with a load and a
/// store, sparing the locked instructions.
const REF_CLOSING: u64 = 1;
const READ_CLOSED: u64 = 1 << 1;
const REF_ONE: u64 = 1 << 2;
/// The reference count and the closing bit: what [`PollDesc::release`] and
/// [`PollDesc::close`] judge.
const REF_MASK: u64 = (TOKEN_ONE - 1) & !READ_CLOSED;
const TOKEN_ONE: u64 = 1 << 32;

/// A poll descriptor: an fd, the registration's sequence tag, and the two sides.
///
/// With many live descriptors each is a cache miss, so everything an event and the operations
/// it wakes touch is in the first 64 bytes (`repr(C)`, the fields in order of use): one cache
/// line when the allocation puts them on one, two otherwise (malloc aligns to 16; the previous
/// 128-byte layout spread them over 88 bytes, two or three lines):
///
/// | offset | field | touched by |
/// |---:|---|---|
/// | 0 | `refs` (count, flags, tokens; 8) | every syscall; an event with `RDHUP`/`HUP`/`ERR`; a park |
/// | 8 | `seq` (4) | every event (the tag check) |
/// | 12 | the read side's deadline row (4) | a read deadline's re-arm (a server's, every read) |
/// | 16 | `read` (40: state word, slot) | every event, every read, a park |
/// | 56 | `write`'s state word (8) | every event with `OUT`, every write |
/// | 64 | `write`'s slot (32) | a write that parks (rare) |
/// | 96 | `fd` (4) | registering and closing (an operation's syscall takes its own copy) |
/// | 100 | the write side's deadline row (4) | a write deadline's re-arm |
///
/// 104 bytes; with the `Arc`'s counts (16) before it, malloc's chunk is 128. Not aligned to a
/// line (`repr(align(64))`): that would put the 64 hot bytes on one line always, but `Arc`
/// then takes 192 bytes and allocates through `posix_memalign`, which splits and frees a
/// larger chunk each time; measured at 100,000 connections it cost 26 MB of peak RSS and was
/// no faster (`BENCHMARKS.md`, "rtpd").
#[repr(C)]
pub struct PollDesc {
    /// In-flight syscalls, flags and the token source (see [`REF_CLOSING`]'s table).
    refs: AtomicU64,
    /// The tag in the registration's epoll user data (see [`PollDesc::data`]).
    pub seq: u32,
    /// The read side's row in the driver's deadline table; see `write_row`.
    read_row: std::sync::atomic::AtomicU32,
    /// The read side.
    pub read: Side,
    /// The write side (its state word ends the hot 64 bytes; its slot is past them).
    pub write: Side,
    /// The descriptor number.
    pub fd: Fd,
    /// The write side's row in the driver's deadline table ([`super::timer`]), or `NO_SLOT`:
    /// like `read_row`, read and written only under the driver's timer lock, so `Relaxed`
    /// (atomics only so that a `PollDesc` stays `Sync`; std's, not loom's: no model races on
    /// them).
    write_row: std::sync::atomic::AtomicU32,
}

// The layout the table above describes (std's `Mutex` here; loom's differs).
#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Side>() == 40);
    assert!(offset_of!(PollDesc, read) == 16);
    assert!(offset_of!(PollDesc, write) + offset_of!(Side, state) + 8 == 64);
    assert!(size_of::<PollDesc>() == 104 && align_of::<PollDesc>() == 8);
};

impl fmt::Debug for PollDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollDesc")
            .field("fd", &self.fd)
            .field("seq", &self.seq)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish()
    }
}

/// What [`PollDesc::release`] and [`PollDesc::close`] tell the caller to do.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Release {
    /// Nothing more.
    Keep,
    /// This was the last reference of a closing descriptor: close the fd now.
    CloseFd,
}

impl PollDesc {
    /// A poll descriptor for `fd`, tagged `seq`.
    pub fn new(fd: Fd, seq: u32) -> Arc<PollDesc> {
        Arc::new(PollDesc {
            fd,
            seq,
            read: Side::new(),
            write: Side::new(),
            read_row: std::sync::atomic::AtomicU32::new(super::timer::NO_SLOT),
            write_row: std::sync::atomic::AtomicU32::new(super::timer::NO_SLOT),
            refs: AtomicU64::new(TOKEN_ONE),
        })
    }

    /// The epoll user data of this registration: `seq` in the high half, the fd in the low half.
    /// Events whose `seq` is not the current registration's are dropped (golang/go#59545).
    pub fn data(&self) -> u64 {
        (u64::from(self.seq) << 32) | u64::from(self.fd as u32)
    }

    /// Splits epoll user data into (fd, seq).
    pub fn split_data(data: u64) -> (Fd, u32) {
        (data as u32 as Fd, (data >> 32) as u32)
    }

    /// One side.
    pub fn side(&self, dir: Dir) -> &Side {
        match dir {
            Dir::Read => &self.read,
            Dir::Write => &self.write,
        }
    }

    /// One side's row in the driver's deadline table (see [`super::timer`]).
    pub(crate) fn timer_slot(&self, dir: Dir) -> &std::sync::atomic::AtomicU32 {
        match dir {
            Dir::Read => &self.read_row,
            Dir::Write => &self.write_row,
        }
    }

    /// A fresh token for one operation's waits.
    pub fn next_token(&self) -> u32 {
        (self.refs.fetch_add(TOKEN_ONE, Ordering::Relaxed) >> 32) as u32
    }

    /// [`next_token`](Self::next_token) for a descriptor of an exclusive driver (one thread
    /// touches its word): a load and a store.
    pub(crate) fn next_token_exclusive(&self) -> u32 {
        let cur = self.refs.load(Ordering::Relaxed);
        self.refs
            .store(cur.wrapping_add(TOKEN_ONE), Ordering::Relaxed);
        (cur >> 32) as u32
    }

    /// An epoll event arrived: route its bits to the sides, as Go's `netpollready` does
    /// (`IN | RDHUP | HUP | ERR` wake readers, `OUT | HUP | ERR` wake writers).
    pub fn on_event(&self, ev: crate::Events) {
        self.on_event_with(ev, Waker::wake);
    }

    /// [`on_event`](Self::on_event), with the parked waiters' wakers handed to `wake` (read
    /// side first) instead of woken here: a dispatch that holds a lock no waker may run under
    /// collects them, to wake once it is released.
    pub fn on_event_with(&self, ev: crate::Events, wake: impl FnMut(Waker)) {
        self.on_event_as::<false>(ev, wake);
    }

    /// [`on_event_with`](Self::on_event_with) for a descriptor of an exclusive driver (see
    /// [module docs](self#on-an-exclusive-driver)): the flag and the `NIL → READY` transitions are plain stores.
    pub(crate) fn on_event_exclusive_with(&self, ev: crate::Events, wake: impl FnMut(Waker)) {
        self.on_event_as::<true>(ev, wake);
    }

    /// The event's transitions, by read-modify-writes or (`EXCLUSIVE`) by plain stores.
    #[inline(always)]
    fn on_event_as<const EXCLUSIVE: bool>(&self, ev: crate::Events, mut wake: impl FnMut(Waker)) {
        use crate::Events as E;
        if ev.intersects(E::RDHUP | E::HUP | E::ERR) {
            // Before the notification, so that a reader that sees the edge sees this too.
            if EXCLUSIVE {
                let cur = self.refs.load(Ordering::Relaxed);
                self.refs.store(cur | READ_CLOSED, Ordering::Release);
            } else {
                self.refs.fetch_or(READ_CLOSED, Ordering::Release);
            }
        }
        let notify = |side: &Side| {
            if EXCLUSIVE {
                side.notify_take_exclusive()
            } else {
                side.notify_take()
            }
        };
        if ev.intersects(E::IN | E::RDHUP | E::HUP | E::ERR) {
            if let Some(w) = notify(&self.read) {
                wake(w);
            }
        }
        if ev.intersects(E::OUT | E::HUP | E::ERR) {
            if let Some(w) = notify(&self.write) {
                wake(w);
            }
        }
    }

    /// Whether an event said the peer has shut down its writing half, hung up, or failed
    /// (`RDHUP`, `HUP`, `ERR`): from then on a short read does not mean the receive queue is
    /// empty, because the end of file (or error) behind the data will get no edge of its own.
    pub fn read_closed(&self) -> bool {
        self.refs.load(Ordering::Acquire) & READ_CLOSED != 0
    }

    /// Takes a reference for one syscall; fails once the descriptor is closing.
    pub fn acquire(&self) -> Result<(), WaitError> {
        let mut cur = self.refs.load(Ordering::Acquire);
        loop {
            if cur & REF_CLOSING != 0 {
                return Err(WaitError::Closed);
            }
            match self.refs.compare_exchange_weak(
                cur,
                cur + REF_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Drops a reference taken by [`acquire`](Self::acquire).
    pub fn release(&self) -> Release {
        let prev = self.refs.fetch_sub(REF_ONE, Ordering::AcqRel);
        if prev & REF_MASK == REF_ONE | REF_CLOSING {
            Release::CloseFd
        } else {
            Release::Keep
        }
    }

    /// Starts closing: both sides fail from now on and their waiters are woken. The fd itself is
    /// to be closed by the caller if this returns [`Release::CloseFd`] (no syscall in flight), or
    /// else by the last [`release`](Self::release). Closing twice is a no-op.
    pub fn close(&self) -> Release {
        let prev = self.refs.fetch_or(REF_CLOSING, Ordering::AcqRel);
        if prev & REF_CLOSING != 0 {
            return Release::Keep;
        }
        self.read.close();
        self.write.close();
        if prev & REF_MASK == 0 {
            Release::CloseFd
        } else {
            Release::Keep
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.refs.load(Ordering::Acquire) & REF_CLOSING != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Events;

    /// The exclusive driver's plain-store transitions move a side exactly as the shared CAS
    /// ones do: a seeded mix of events, waits, consumed edges, deadline resets, expiries,
    /// cancels and a close, run on two sides, gives the same words, results and wakes.
    #[test]
    fn exclusive_transitions_match_the_shared_ones() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let counter = || Arc::new(Count(AtomicUsize::new(0)));
        for seed in 0..200u64 {
            let (shared, excl) = (Side::new(), Side::new());
            // Per token (1, 2): the waker parked on each side, and how often each was woken.
            let counts = [[counter(), counter()], [counter(), counter()]];
            let wakers = counts.clone().map(|c| c.map(Waker::from));
            let mut rng = crate::rt::rng::Rng::new(seed);
            for step in 0..60 {
                let x = rng.next_u64();
                let token = (x >> 8) as u32 % 2 + 1;
                let t = token as usize - 1;
                let ctx = format!("seed {seed} step {step} op {}", x % 8);
                match x % 8 {
                    0 | 1 => {
                        let a = shared.notify_take();
                        let b = excl.notify_take_exclusive();
                        assert_eq!(a.is_some(), b.is_some(), "{ctx}");
                        a.into_iter().chain(b).for_each(Waker::wake);
                    }
                    2 | 3 => {
                        let a = shared.poll_wait(&wakers[0][t], token, 1);
                        let b = excl.poll_wait_exclusive(&wakers[1][t], token, 1);
                        assert_eq!(a, b, "{ctx}");
                    }
                    4 => assert_eq!(shared.take_ready(), excl.take_ready_exclusive(), "{ctx}"),
                    5 => {
                        let now = x & (1 << 20) != 0;
                        let a = shared.reset_deadline(now);
                        assert_eq!(a, excl.reset_deadline_exclusive(now), "{ctx}");
                    }
                    6 => {
                        let gen = shared.generation().wrapping_sub((x >> 20) as u32 % 2);
                        assert_eq!(shared.expire(gen), excl.expire(gen), "{ctx}");
                    }
                    _ if x & (1 << 30) != 0 && step > 40 => {
                        shared.close();
                        excl.close();
                    }
                    _ => {
                        shared.cancel(token);
                        excl.cancel(token);
                    }
                }
                assert_eq!(shared.state(), excl.state(), "{ctx}");
                assert_eq!(shared.parked_task(), excl.parked_task(), "{ctx}");
                for (t, (a, b)) in counts[0].iter().zip(&counts[1]).enumerate() {
                    assert_eq!(
                        a.0.load(Ordering::Relaxed),
                        b.0.load(Ordering::Relaxed),
                        "{ctx}: wakes of token {}",
                        t + 1
                    );
                }
            }
        }
    }

    /// The word shared by the syscall count, the flags and the token source: none of them
    /// disturbs the others.
    #[test]
    fn refs_word_fields_are_independent() {
        let pd = PollDesc::new(5, 9);
        assert_eq!((pd.next_token(), pd.next_token()), (1, 2));
        assert!(!pd.read_closed());
        pd.acquire().unwrap();
        pd.acquire().unwrap();
        pd.on_event(Events::IN | Events::RDHUP);
        assert!(pd.read_closed());
        assert_eq!(pd.next_token(), 3);
        assert_eq!(pd.release(), Release::Keep);
        assert_eq!(pd.close(), Release::Keep, "a syscall is still in flight");
        assert!(pd.is_closing());
        assert_eq!(pd.acquire(), Err(WaitError::Closed));
        assert_eq!(pd.close(), Release::Keep, "closing twice is a no-op");
        assert_eq!(pd.next_token(), 4);
        assert_eq!(
            pd.release(),
            Release::CloseFd,
            "the last syscall closes the fd"
        );
        assert!(pd.read_closed());

        // No syscall in flight: close itself says to close the fd, read_closed or not.
        let pd = PollDesc::new(6, 10);
        pd.on_event(Events::HUP);
        assert_eq!(pd.close(), Release::CloseFd);
        // Tokens wrap within their 32 bits, leaving the count and the flags alone.
        let pd = PollDesc::new(7, 11);
        pd.refs
            .fetch_add(u64::from(u32::MAX - 1) * TOKEN_ONE, Ordering::Relaxed);
        assert_eq!(pd.next_token(), u32::MAX);
        assert_eq!(pd.next_token(), 0);
        assert!(!pd.read_closed() && !pd.is_closing());
        assert_eq!(pd.close(), Release::CloseFd);
    }
}

//! The simulated kernel: one process's descriptor table, its open files, their wait queues,
//! and the clock and event queue that move everything forward.
//!
//! # The objects, as Linux has them
//!
//! - A **descriptor** ([`Fd`]) is an index into the table; it names an **open file** ([`File`],
//!   Linux's `struct file`). `dup` makes two descriptors for one file; the file goes when the last
//!   descriptor does. `O_NONBLOCK` belongs to the file.
//! - Each file has a **wait queue** ([`File::watchers`]): the epoll items that registered on it.
//!   When the file's state changes it calls [`Kernel::wake`] with a key (the kind of change:
//!   `IN` for data, `OUT` for room, none for a state change that concerns everyone), and each
//!   item's callback ([`Kernel::ep_poll_callback`], in `epoll.rs`) queues the item on its epoll
//!   instance's ready list. Non-exclusive items wake newest first, exclusive ones after them in
//!   the order they were added, as `add_wait_queue`/`add_wait_queue_exclusive` order them.
//! - The **event queue** holds what happens later on its own: packets crossing the simulated
//!   loopback network, SYN retransmissions. Only a blocking call (`epoll_wait` with a timeout, a
//!   blocking `read`) moves the virtual clock, and only to the next queued event or its deadline.
//!
//! Files are kept in a [`Slab`]; their ids are not descriptor numbers and are never seen by
//! callers. Everything iterates in a fixed order (vectors, slabs, `BTreeMap`), so one seed is one
//! run.

pub mod epoll;
pub(crate) mod eventfd;
pub(crate) mod pipe;
mod queue;
pub(crate) mod soon;
pub(crate) mod tcp;
pub(crate) mod unix;

use std::io;
use std::num::NonZeroU32;

use netpoll::sys::{
    err, errno::*, Events, O_APPEND, O_ASYNC, O_CLOEXEC, O_DIRECT, O_NOATIME, O_NONBLOCK, O_RDONLY,
    O_RDWR, O_WRONLY,
};
use netpoll::Fd;

use crate::config::SimConfig;
use crate::fdset::FdSet;
use crate::rng::{Rngs, Stream};
use crate::slab::Slab;

pub(crate) type FileId = u32;
pub(crate) type ItemId = u32;

/// An open file description.
#[derive(Debug)]
pub(crate) struct File {
    /// Descriptors referring to this file. A file with no descriptor is alive only while
    /// something else holds it (a connection waiting in a listener's accept queue).
    pub(crate) refs: u32,
    /// `O_NONBLOCK`.
    pub(crate) nonblock: bool,
    /// The wait queue, in wake order: the epoll items registered on this file.
    pub(crate) watchers: WaitQueue,
    /// What kind of file, and its state.
    pub(crate) kind: Kind,
    /// A read returned end-of-file or a reset (for the lost-wakeup oracle's default judgement:
    /// the loop has finished reading).
    pub(crate) eof_read: bool,
}

// Two epoll items to a cache line (a large slab is 2 MiB-aligned).
const _: () = assert!(std::mem::size_of::<Option<epoll::EpItem>>() == 32);

// One whole cache line: a large slab of files is 2 MiB-aligned (the huge-page allocator's), so
// everything a delivery, an epoll report or a call reads of a file (its references, its wait
// queue, a TCP socket's state and connection) is one line, not two.
const _: () = assert!(std::mem::size_of::<Option<File>>() == 64);
const _: () = assert!(std::mem::size_of::<Kind>() == 40);

/// The kinds of open file. Every variant fits in a TCP socket's 40 bytes: the few large ones
/// (an epoll instance, a Unix socket end) are boxed.
#[derive(Debug)]
pub(crate) enum Kind {
    Epoll(Box<epoll::Epoll>),
    Unix(Box<unix::UnixEnd>),
    PipeRead(u32),
    PipeWrite(u32),
    EventFd(eventfd::EventFd),
    Tcp(tcp::TcpSock),
}

/// A file's wait queue: epoll item ids in wake order. Nearly every file has one or two
/// watchers, so up to three live inline in the file (no allocation, no pointer to chase on a
/// wakeup); a longer queue moves to the heap for good.
#[derive(Debug, Clone)]
pub(crate) enum WaitQueue {
    Inline(u8, [ItemId; 3]),
    /// Boxed (a thin pointer): the queue is 16 bytes, not 24, and a file one cache line.
    #[allow(clippy::box_collection)]
    Heap(Box<Vec<ItemId>>),
}

const _: () = assert!(std::mem::size_of::<WaitQueue>() == 16);

impl Default for WaitQueue {
    fn default() -> Self {
        WaitQueue::Inline(0, [0; 3])
    }
}

impl WaitQueue {
    pub(crate) fn as_slice(&self) -> &[ItemId] {
        match self {
            WaitQueue::Inline(n, ids) => &ids[..usize::from(*n)],
            WaitQueue::Heap(v) => v,
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            WaitQueue::Inline(n, _) => *n == 0,
            WaitQueue::Heap(v) => v.is_empty(),
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<ItemId> {
        self.as_slice().get(i).copied()
    }

    /// Inserts `it` at `at` (0: the head of the queue; `len`: the tail).
    fn insert(&mut self, at: usize, it: ItemId) {
        match self {
            WaitQueue::Inline(n, ids) if usize::from(*n) < ids.len() => {
                let len = usize::from(*n);
                ids.copy_within(at..len, at + 1);
                ids[at] = it;
                *n += 1;
            }
            WaitQueue::Inline(n, ids) => {
                let mut v = ids[..usize::from(*n)].to_vec();
                v.insert(at, it);
                *self = WaitQueue::Heap(Box::new(v));
            }
            WaitQueue::Heap(v) => v.insert(at, it),
        }
    }

    pub(crate) fn push_front(&mut self, it: ItemId) {
        self.insert(0, it);
    }

    pub(crate) fn push_back(&mut self, it: ItemId) {
        let len = self.as_slice().len();
        self.insert(len, it);
    }

    /// Removes every occurrence of `it`.
    pub(crate) fn remove(&mut self, it: ItemId) {
        match self {
            WaitQueue::Inline(n, ids) => {
                let mut kept = [0; 3];
                let mut k = 0;
                for &w in &ids[..usize::from(*n)] {
                    if w != it {
                        kept[k] = w;
                        k += 1;
                    }
                }
                *ids = kept;
                *n = k as u8;
            }
            WaitQueue::Heap(v) => v.retain(|&w| w != it),
        }
    }
}

/// Something the kernel does at a later virtual instant.
#[derive(Debug)]
pub(crate) enum Later {
    Net(tcp::Packet),
}

// With its 128-bit key, an event is 32 bytes in the queue: two to a cache line.
const _: () = assert!(std::mem::size_of::<Later>() == 16);

/// Counters a harness can read: how much the kernel did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// System calls made.
    pub syscalls: u64,
    /// Events delivered from the event queue (packets, retransmissions).
    pub deliveries: u64,
    /// Epoll events reported by `epoll_wait`.
    pub epoll_events: u64,
    /// Wakeup callbacks run (an item considered for a ready list).
    pub wakeups: u64,
    /// Data words handed to the loop by [`Poller::upcoming`](netpoll::Poller::upcoming): the
    /// kernel's look-ahead, for cache hints (none without a hint installed).
    pub announced: u64,
}

/// The whole simulated kernel. [`crate::Sim`] wraps it in a `RefCell` and implements `Poller`.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub(crate) cfg: SimConfig,
    pub(crate) seed: u64,
    pub(crate) now_ns: u64,
    pub(crate) rng: Rngs,
    /// The descriptor table: `fds[n]` is the file descriptor `n` refers to, plus one (4 bytes a
    /// descriptor: the table is read on every call).
    fds: Vec<Option<NonZeroU32>>,
    /// Free descriptor numbers below `fds.len()`, for lowest-free allocation.
    free_fds: FdSet,
    open_fds: usize,
    pub(crate) files: Slab<File>,
    pub(crate) items: Slab<epoll::EpItem>,
    /// Each epoll item's interest as the last `ADD`/`MOD` set it (kept when a oneshot item is
    /// disarmed), by item id: only the lost-wakeup oracle reads it, so it is kept out of the
    /// item, which is then 32 bytes, two to a cache line.
    pub(crate) interests: Vec<Events>,
    pub(crate) pipes: Slab<pipe::Pipe>,
    pub(crate) net: tcp::Net,
    /// The event queue: keys are `when << 64 | sequence`, compared as one integer (the
    /// sequence orders events at one instant as they were queued); payloads travel with them.
    queue: queue::EventQueue<Later>,
    queue_seq: u64,
    /// The epoll instance whose `epoll_wait` is blocked right now (for `EPOLLEXCLUSIVE`).
    pub(crate) blocked_in: Option<FileId>,
    /// Waiters of a multi-threaded scheduler woken from epoll wait queues, not yet told to it.
    pub(crate) woken: Vec<u64>,
    pub(crate) stats: Stats,
    pub(crate) faults: crate::faults::FaultCounts,
    /// The oracles' state (see `crate::oracle`): the run's first violation,
    pub(crate) violation: Option<crate::oracle::Violation>,
    /// calls in a row without progress,
    pub(crate) idle_calls: u64,
    /// and the syscall count at the last lost-wakeup scan (for amortising it),
    pub(crate) scan_credit: u64,
    /// and whether the caller judges lost wakeups itself (it called `Sim::stranded`).
    pub(crate) own_judge: bool,
    /// The fault plan has a cost model.
    pub(crate) costly: bool,
    /// The fault plan may bend an `epoll_wait` (`spurious`, `drop_event`, `eintr`,
    /// `timer_first`): without, a wait skips those four draws (each of which would say no).
    pub(crate) wait_faults: bool,
    /// Events dropped so far (for `drop_event_max`).
    pub(crate) dropped: u32,
    /// The first epoll instance was made (and sized from `SimConfig::expected_conns`).
    pub(crate) epoll_hinted: bool,
    /// The data words of events expected soon, for the loop's cache hints.
    pub(crate) soon: soon::Soon,
}

impl Kernel {
    pub(crate) fn new(seed: u64, mut cfg: SimConfig) -> Kernel {
        let first = cfg.first_fd.max(0) as usize;
        cfg.faults = cfg.faults.for_run(seed);
        let costly = cfg.faults.cost.is_some();
        let f = &cfg.faults;
        let wait_faults = [f.spurious, f.drop_event, f.eintr, f.timer_first]
            .into_iter()
            .any(crate::rng::draws);
        // The capacity hint (`SimConfig::expected_conns`): two sockets, two descriptors and (in
        // an event loop that registers both ends) two epoll items a connection, plus a few.
        // No hint: nothing reserved at all (not even the few), as before there were hints.
        let n = cfg.reserved_conns();
        let room = |per_conn: usize| if n == 0 { 0 } else { per_conn * n + 8 };
        let mut fds = Vec::with_capacity(first + room(2));
        fds.resize(first, None);
        Kernel {
            seed,
            now_ns: 0,
            rng: Rngs::new(seed),
            fds,
            free_fds: FdSet::default(),
            open_fds: first,
            files: Slab::with_capacity(room(2)),
            items: Slab::with_capacity(room(2)),
            interests: Vec::with_capacity(room(2)),
            pipes: Slab::default(),
            net: tcp::Net::with_capacity(n),
            queue: queue::EventQueue::default(),
            queue_seq: 0,
            blocked_in: None,
            woken: Vec::new(),
            stats: Stats::default(),
            faults: crate::faults::FaultCounts::default(),
            violation: None,
            idle_calls: 0,
            scan_credit: 0,
            own_judge: false,
            costly,
            wait_faults,
            dropped: 0,
            epoll_hinted: false,
            soon: soon::Soon::default(),
            cfg,
        }
    }

    // ----- descriptor table -----

    /// The file descriptor `fd` refers to, or `EBADF`.
    pub(crate) fn file_of(&self, fd: Fd) -> io::Result<FileId> {
        if fd < 0 {
            return Err(err(EBADF));
        }
        self.fds
            .get(fd as usize)
            .copied()
            .flatten()
            .map(|n| n.get() - 1)
            .ok_or_else(|| err(EBADF))
    }

    /// Reads what the event loop's next call on a reported event touches (the descriptor's
    /// slot in the table; a TCP socket's connection state and the line of bytes its `read`
    /// copies), so that it finds them in the cache: with 100,000 connections open at once, the
    /// descriptor lookup alone missed on nearly every `read`, a tenth of the run. Prefetches
    /// with a cache hint installed (`netpoll::hint`), reads without one; nothing else.
    #[inline]
    pub(crate) fn warm_for_call(&self, fd: Fd, file: FileId) {
        match self.fds.get(fd as usize) {
            Some(slot) if netpoll::hint::installed() => netpoll::hint::prefetch(slot, 1),
            slot => {
                std::hint::black_box(slot.copied().flatten());
            }
        }
        if let Some(File {
            kind: Kind::Tcp(s), ..
        }) = self.files.get(file)
        {
            self.tcp_warm_buffers(s);
        }
    }

    /// Records the interest `ADD` or `MOD` gave item `it` (see [`Kernel::interests`]).
    pub(crate) fn set_interest(&mut self, it: ItemId, events: Events) {
        let i = it as usize;
        if self.interests.len() <= i {
            self.interests.resize(i + 1, Events::NONE);
        }
        self.interests[i] = events;
    }

    /// Whether a new descriptor can be allocated.
    pub(crate) fn fd_room(&self, n: usize) -> io::Result<()> {
        if self.open_fds + n > self.cfg.max_fds {
            Err(err(EMFILE))
        } else {
            Ok(())
        }
    }

    /// Allocates the lowest free descriptor for `file` (whose `refs` this increments).
    pub(crate) fn install(&mut self, file: FileId) -> io::Result<Fd> {
        self.fd_room(1)?;
        let fd = match self.free_fds.pop_first() {
            Some(fd) => fd as Fd,
            None => {
                self.fds.push(None);
                (self.fds.len() - 1) as Fd
            }
        };
        self.fds[fd as usize] = file.checked_add(1).and_then(NonZeroU32::new);
        self.open_fds += 1;
        self.files[file].refs += 1;
        Ok(fd)
    }

    /// A new file of `kind`, installed at the lowest free descriptor.
    pub(crate) fn new_file(&mut self, kind: Kind, nonblock: bool) -> io::Result<(FileId, Fd)> {
        self.fd_room(1)?;
        let id = self.files.insert(File {
            refs: 0,
            nonblock,
            watchers: WaitQueue::default(),
            kind,
            eof_read: false,
        });
        let fd = self.install(id)?;
        Ok((id, fd))
    }

    pub(crate) fn close(&mut self, fd: Fd) -> io::Result<()> {
        let f = self.file_of(fd)?;
        self.fds[fd as usize] = None;
        self.open_fds -= 1;
        // Keep the table short when the top descriptors go, so it does not grow without bound.
        if fd as usize + 1 == self.fds.len() {
            self.fds.pop();
            while let Some(None) = self.fds.last() {
                if self.fds.len() <= self.cfg.first_fd.max(0) as usize {
                    break;
                }
                self.fds.pop();
                self.free_fds.remove(self.fds.len() as u32);
            }
        } else {
            self.free_fds.insert(fd as u32);
        }
        self.put_file(f);
        Ok(())
    }

    pub(crate) fn dup(&mut self, fd: Fd) -> io::Result<Fd> {
        let f = self.file_of(fd)?;
        self.descriptor_fault(false)?; // dup makes no file: no ENFILE
        self.install(f)
    }

    /// `dup3(old, new, flags)`, in Linux's order of checks (`ksys_dup3`).
    pub(crate) fn dup3(&mut self, old: Fd, new: Fd, flags: i32) -> io::Result<Fd> {
        if flags & !O_CLOEXEC != 0 || old == new {
            return Err(err(EINVAL));
        }
        if new < 0 || new as usize >= self.cfg.max_fds {
            return Err(err(EBADF));
        }
        let f = self.file_of(old)?;
        self.install_at(f, new);
        Ok(new)
    }

    /// `dup2(old, new)`: as `dup3` with no flags, except that equal descriptors only check that
    /// `old` is open.
    pub(crate) fn dup2(&mut self, old: Fd, new: Fd) -> io::Result<Fd> {
        if old == new {
            self.file_of(old)?;
            return Ok(new);
        }
        self.dup3(old, new, 0)
    }

    /// Makes descriptor `fd` (below the limit) refer to `file`, closing what it referred to.
    fn install_at(&mut self, file: FileId, fd: Fd) {
        let n = fd as usize;
        self.files[file].refs += 1;
        let slot = file.checked_add(1).and_then(NonZeroU32::new);
        if let Ok(replaced) = self.file_of(fd) {
            self.fds[n] = slot;
            self.put_file(replaced);
            return;
        }
        if n >= self.fds.len() {
            for free in self.fds.len()..n {
                self.free_fds.insert(free as u32);
            }
            self.fds.resize(n + 1, None);
        } else if !self.free_fds.remove(n as u32) {
            // A number below `first_fd` (standard streams, not modelled): counted as open
            // already.
            self.fds[n] = slot;
            return;
        }
        self.fds[n] = slot;
        self.open_fds += 1;
    }

    /// Drops one descriptor's reference to `f`; the last one releases the file.
    pub(crate) fn put_file(&mut self, f: FileId) {
        let file = &mut self.files[f];
        file.refs -= 1;
        if file.refs == 0 {
            self.release(f);
        }
    }

    /// The file's last reference is gone: unregister it from every epoll instance (Linux's
    /// `eventpoll_release`), then let its kind tear down (hang up a peer, free a pipe end).
    pub(crate) fn release(&mut self, f: FileId) {
        let watchers = std::mem::take(&mut self.files[f].watchers);
        for &it in watchers.as_slice() {
            self.ep_remove_item(it, false);
        }
        let file = self.files.remove(f);
        match file.kind {
            Kind::Epoll(ep) => self.ep_free(*ep),
            Kind::Unix(end) => self.unix_release(*end),
            Kind::PipeRead(p) => self.pipe_release(p, true),
            Kind::PipeWrite(p) => self.pipe_release(p, false),
            Kind::EventFd(_) => {}
            Kind::Tcp(sock) => self.tcp_release(f, sock),
        }
    }

    pub(crate) fn set_nonblocking(&mut self, fd: Fd, on: bool) -> io::Result<()> {
        let f = self.file_of(fd)?;
        self.files[f].nonblock = on;
        Ok(())
    }

    /// `fcntl(fd, F_GETFL)`: the access mode and `O_NONBLOCK`.
    pub(crate) fn status_flags(&self, fd: Fd) -> io::Result<i32> {
        let f = self.file_of(fd)?;
        let mode = match self.files[f].kind {
            Kind::PipeRead(_) => O_RDONLY,
            Kind::PipeWrite(_) => O_WRONLY,
            _ => O_RDWR,
        };
        Ok(mode
            | if self.files[f].nonblock {
                O_NONBLOCK
            } else {
                0
            })
    }

    /// `fcntl(fd, F_SETFL, flags)`: `O_NONBLOCK` only; the other settable flags are refused.
    pub(crate) fn set_status_flags(&mut self, fd: Fd, flags: i32) -> io::Result<()> {
        let f = self.file_of(fd)?;
        if flags & (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME) != 0 {
            return Err(err(EINVAL));
        }
        self.files[f].nonblock = flags & O_NONBLOCK != 0;
        Ok(())
    }

    /// `ioctl(fd, FIONREAD)`.
    pub(crate) fn fionread(&self, fd: Fd) -> io::Result<usize> {
        let f = self.file_of(fd)?;
        match &self.files[f].kind {
            Kind::Unix(u) => Ok(u.readable()),
            Kind::PipeRead(p) | Kind::PipeWrite(p) => Ok(self.pipes[*p].readable()),
            Kind::Tcp(_) => self.tcp_inq(f),
            Kind::EventFd(_) => Err(err(ENOTTY)),
            // Linux 6.9+ has an epoll ioctl (`EPIOCSPARAMS`), which answers EINVAL to others.
            Kind::Epoll(_) => Err(err(EINVAL)),
        }
    }

    /// Checks `flags` against the allowed ones; returns `O_NONBLOCK`'s presence.
    pub(crate) fn check_flags(flags: i32, allowed: i32) -> io::Result<bool> {
        if flags & !allowed != 0 {
            Err(err(EINVAL))
        } else {
            Ok(flags & O_NONBLOCK != 0)
        }
    }

    pub(crate) const OPEN_FLAGS: i32 = O_NONBLOCK | O_CLOEXEC;

    // ----- wait queues -----

    /// Wakes `f`'s wait queue with `key` (empty: a state change every waiter must see). Runs each
    /// item's callback in wake order; the first exclusive item that woke a blocked waiter ends the
    /// walk, as `__wake_up_common` does with `nr_exclusive == 1`.
    ///
    /// Inline up to the test for an empty queue: most files woken have at most one watcher,
    /// and an epoll instance (woken by each of its items' callbacks) usually has none.
    #[inline]
    pub(crate) fn wake(&mut self, f: FileId, key: Events) {
        if let Some(file) = self.files.get(f) {
            if !file.watchers.is_empty() {
                self.wake_queue(f, key);
            }
        }
    }

    /// [`Kernel::wake`] of a queue with at least one watcher.
    ///
    /// The callbacks change no wait queue, so a queue that lives inline is copied out once and
    /// walked from the copy (the common case: one or two watchers).
    #[inline(never)]
    pub(crate) fn wake_queue(&mut self, f: FileId, key: Events) {
        // A wakeup without a key is a state change (`sock_def_wakeup`, a pipe's release):
        // Linux wakes the whole queue then (`wake_up_interruptible_all`), exclusive or not.
        if let Some(File {
            watchers: WaitQueue::Inline(n, ids),
            ..
        }) = self.files.get(f)
        {
            let (n, ids) = (*n, *ids);
            for &it in &ids[..usize::from(n)] {
                if self.ep_poll_callback(it, key) && !key.is_empty() {
                    return;
                }
            }
            return;
        }
        let mut i = 0;
        loop {
            let Some(file) = self.files.get(f) else {
                return;
            };
            let Some(it) = file.watchers.get(i) else {
                return;
            };
            i += 1;
            if self.ep_poll_callback(it, key) && !key.is_empty() {
                return;
            }
        }
    }

    /// The file's current readiness, as its `poll` would say (all bits, not only the asked ones).
    #[inline]
    pub(crate) fn poll_file(&mut self, f: FileId, depth: u32) -> Events {
        match &self.files[f].kind {
            Kind::Epoll(_) => self.ep_eventpoll_poll(f, depth),
            Kind::Unix(end) => end.poll(&self.cfg),
            Kind::PipeRead(p) => self.pipes[*p].poll(true),
            Kind::PipeWrite(p) => self.pipes[*p].poll(false),
            Kind::EventFd(e) => e.poll(),
            Kind::Tcp(s) => self.tcp_poll(s),
        }
    }

    // ----- time and the event queue -----

    /// Queues `what` to happen at `at_ns`. Events at the same instant happen in the order queued.
    /// Inline: a call of its own (saving and restoring registers around a few instructions)
    /// was a tenth of every packet's cost in the queue.
    #[inline]
    pub(crate) fn schedule(&mut self, at_ns: u64, what: Later) {
        self.queue_seq += 1;
        self.queue
            .push((u128::from(at_ns) << 64) | u128::from(self.queue_seq), what);
    }

    /// When the next queued event happens, if any.
    pub(crate) fn next_event_ns(&self) -> Option<u64> {
        self.queue.peek().map(|k| (k >> 64) as u64)
    }

    /// How many events are queued (packets in flight, retransmission timers).
    pub(crate) fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Runs every event due at `self.now_ns` or earlier.
    pub(crate) fn run_due(&mut self) {
        while let Some(what) = self.queue.pop_due(self.now_ns) {
            self.stats.deliveries += 1;
            self.warm_ahead();
            match what {
                Later::Net(pkt) => self.deliver(pkt),
            }
        }
    }

    /// Advances the clock to the next queued event (no further than `limit_ns`) and runs what is
    /// due. Returns `false` when nothing is queued before the limit (the clock then moves to the
    /// limit, if there is one).
    pub(crate) fn advance(&mut self, limit_ns: Option<u64>) -> bool {
        match (self.next_event_ns(), limit_ns) {
            (Some(t), lim) if lim.is_none_or(|l| t <= l) => {
                self.now_ns = self.now_ns.max(t);
                self.run_due();
                true
            }
            (_, Some(l)) => {
                self.now_ns = self.now_ns.max(l);
                false
            }
            (_, None) => false,
        }
    }

    /// A blocking call on a blocking descriptor cannot go on: let time pass until something
    /// happens. If nothing ever can, the real kernel would hang for ever; we say so.
    /// Once an oracle has stopped the run, the call fails at once instead; the `eintr_io`
    /// fault fails it with `EINTR` (a signal arrived while it slept).
    pub(crate) fn block(&mut self, what: &str, fd: Fd) -> io::Result<()> {
        if let Some(v) = &self.violation {
            return Err(v.stop_error(""));
        }
        if self.rng.chance(Stream::Errno, self.cfg.faults.eintr_io) {
            self.faults.eintr_io += 1;
            return Err(err(EINTR));
        }
        if self.advance(None) {
            Ok(())
        } else {
            let msg = format!(
                "{what} on blocking fd {fd} would wait for ever: nothing is in flight (seed {})",
                self.seed
            );
            Err(self.hang(format!("{what}(fd {fd})"), msg))
        }
    }

    /// A blocking call would sleep for ever: the hang oracle's verdict (recorded if it is on and
    /// first), and the `Deadlock` error the call returns.
    pub(crate) fn hang(&mut self, call: String, msg: String) -> io::Error {
        if self.cfg.oracles.hang {
            let v = crate::oracle::Violation::Hang {
                call,
                at_ns: self.now_ns,
            };
            self.note(v);
            if let Some(first) = &self.violation {
                return first.stop_error(&msg);
            }
        }
        deadlock(msg)
    }

    /// The error a call stopped by the run's first violation returns.
    pub(crate) fn stop_error(&self) -> io::Error {
        match &self.violation {
            Some(v) => v.stop_error(""),
            None => unreachable!("a call was stopped with no violation recorded"),
        }
    }

    /// After a livelock every call is stopped (a spinning loop may never block).
    #[inline]
    pub(crate) fn livelocked(&self) -> bool {
        matches!(
            self.violation,
            Some(crate::oracle::Violation::Livelock { .. })
        )
    }

    /// One call for the livelock budget: `progress` resets it.
    #[inline]
    pub(crate) fn turn(&mut self, progress: bool) {
        if progress {
            self.idle_calls = 0;
            return;
        }
        self.idle_calls += 1;
        let turns = self.cfg.oracles.livelock_turns;
        if self.idle_calls >= turns {
            self.note(crate::oracle::Violation::Livelock {
                turns,
                at_ns: self.now_ns,
            });
        }
    }

    /// Records `v` if it is the run's first violation.
    pub(crate) fn note(&mut self, v: crate::oracle::Violation) {
        if self.violation.is_none() {
            self.violation = Some(v);
        }
    }

    /// Whether the lost-wakeup scan of `epfd` is due: always when `forced` or for a small
    /// instance, else once the calls since the last scan pay for a pass.
    pub(crate) fn scan_due(&mut self, epfd: Fd, forced: bool) -> bool {
        if self.own_judge {
            return false;
        }
        let regs = self.ep_registrations(epfd);
        let due = forced
            || regs <= crate::oracle::SCAN_FREE_REGISTRATIONS
            || self.stats.syscalls >= self.scan_credit + regs as u64;
        if due {
            self.scan_credit = self.stats.syscalls;
        }
        due
    }

    /// Every open descriptor and its file's kind, in descriptor order.
    pub(crate) fn open_fd_kinds(&self) -> Vec<(Fd, &'static str)> {
        self.fds
            .iter()
            .enumerate()
            .filter_map(|(fd, f)| {
                let f = f.map(|n| n.get() - 1)?;
                let kind = match self.files[f].kind {
                    Kind::Epoll(_) => "epoll",
                    Kind::Unix(_) => "unix",
                    Kind::PipeRead(_) | Kind::PipeWrite(_) => "pipe",
                    Kind::EventFd(_) => "eventfd",
                    Kind::Tcp(_) => "tcp",
                };
                Some((fd as Fd, kind))
            })
            .collect()
    }

    /// The file's readiness without side effects (polling a nested epoll file for real prunes
    /// its ready list): what an oracle may look at without perturbing the run.
    pub(crate) fn peek_file(&self, f: FileId, depth: u32) -> Events {
        match &self.files[f].kind {
            Kind::Epoll(_) => self.ep_peek(f, depth),
            Kind::Unix(end) => end.poll(&self.cfg),
            Kind::PipeRead(p) => self.pipes[*p].poll(true),
            Kind::PipeWrite(p) => self.pipes[*p].poll(false),
            Kind::EventFd(e) => e.poll(),
            Kind::Tcp(s) => self.tcp_poll(s),
        }
    }
}

impl Kernel {
    /// A length to use instead of `len` for one read or write: `len`, or with probability `p`
    /// (drawn from the fault stream) a shorter one, at least 1.
    pub(crate) fn fault_len(&mut self, len: usize, p: f64) -> usize {
        if len > 1 && self.rng.chance(crate::rng::Stream::Faults, p) {
            self.rng
                .range(crate::rng::Stream::Faults, 1, len as u64 - 1) as usize
        } else {
            len
        }
    }

    /// The descriptor faults, called by a call about to allocate a descriptor (after its own
    /// argument checks, before it changes anything): `emfile` fails it with `EMFILE`
    /// (`get_unused_fd_flags`); then, for calls that also make a file (`new_file`: all but
    /// `dup`), `enfile` fails it with `ENFILE` (`alloc_file` over `fs.file-max`).
    pub(crate) fn descriptor_fault(&mut self, new_file: bool) -> io::Result<()> {
        if self.rng.chance(Stream::Errno, self.cfg.faults.emfile) {
            self.faults.emfile += 1;
            return Err(err(EMFILE));
        }
        if new_file && self.rng.chance(Stream::Errno, self.cfg.faults.enfile) {
            self.faults.enfile += 1;
            return Err(err(ENFILE));
        }
        Ok(())
    }

    /// The `enomem_file` fault, for calls whose new file or object Linux may fail to allocate
    /// with `ENOMEM` (`eventfd`, `epoll_create1`, `socketpair`, `accept4`); called after
    /// [`Kernel::descriptor_fault`], before the call changes anything.
    pub(crate) fn enomem_file_fault(&mut self) -> io::Result<()> {
        if self.rng.chance(Stream::Errno, self.cfg.faults.enomem_file) {
            self.faults.enomem_file += 1;
            return Err(err(ENOMEM));
        }
        Ok(())
    }

    /// The cost model: the loop's work before a call (and, for `epoll_wait`, before a turn)
    /// takes virtual time, during which what is due happens.
    pub(crate) fn charge_cost(&mut self, turn: bool) {
        let Some(cost) = self.cfg.faults.cost.as_deref().copied() else {
            return;
        };
        let mut ns = 0;
        if let Some(c) = cost.call {
            ns += c.draw(self.rng.get(Stream::Cost));
        }
        if let (true, Some(c)) = (turn, cost.turn) {
            ns += c.draw(self.rng.get(Stream::Cost));
        }
        if ns > 0 {
            self.faults.cost_ns += ns;
            self.now_ns += ns;
            self.run_due();
        }
    }

    /// One past the highest file id in use so far.
    pub(crate) fn files_high_water(&self) -> FileId {
        self.files.high_water()
    }

    /// A fault with probability `p` fires (drawn from the fault stream).
    #[inline]
    pub(crate) fn fault(&mut self, p: f64) -> bool {
        self.rng.chance(crate::rng::Stream::Faults, p)
    }

    /// Whether a data arrival should wake readers, given whether the buffer was empty before.
    pub(crate) fn edge_wakes(&self, was_empty: bool) -> bool {
        was_empty || self.cfg.faults.edge == crate::faults::EdgePolicy::Linux
    }
}

/// The error a simulated call returns instead of hanging for ever.
pub(crate) fn deadlock(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::Deadlock, msg)
}

#[cfg(test)]
mod tests {
    use super::WaitQueue;

    #[test]
    fn wait_queue_keeps_the_order_a_vec_would() {
        let mut q = WaitQueue::default();
        let mut v: Vec<u32> = Vec::new();
        for step in 0..400u32 {
            let it = step % 7;
            match (step * 31) % 5 {
                0 | 1 => {
                    q.push_front(it);
                    v.insert(0, it);
                }
                2 | 3 => {
                    q.push_back(it);
                    v.push(it);
                }
                _ => {
                    q.remove(it);
                    v.retain(|&w| w != it);
                }
            }
            assert_eq!(q.as_slice(), &v[..], "step {step}");
            assert_eq!(q.get(0), v.first().copied());
            if step % 50 == 0 {
                q = WaitQueue::default();
                v.clear();
            }
        }
    }
}

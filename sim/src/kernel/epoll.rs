//! Epoll, as `fs/eventpoll.c` does it.
//!
//! # Model
//!
//! - An **epoll instance** ([`Epoll`]) holds its items in a map keyed by (open file, fd number)
//!   (Linux's red-black tree, keyed the same way) and a **ready list**.
//! - An **item** ([`EpItem`]) sits on its file's wait queue. When the file wakes the queue with a
//!   key, [`Kernel::ep_poll_callback`] runs: an item whose interest does not meet the key, or a
//!   oneshot item that already fired, is left alone; otherwise the item goes to the tail of the
//!   ready list (once: an item already on it stays where it is), and instances that have this
//!   epoll fd registered in turn are woken with `EPOLLIN`.
//! - **`epoll_wait`** ([`Kernel::ep_send_events`]) takes the ready list, and for each item in
//!   order *re-polls the file*: an item that is no longer ready is dropped silently (this is why
//!   a wakeup that came and went reports nothing). A reported item is dropped from the list if
//!   edge-triggered, disarmed if oneshot (its interest cleared, registration kept), and put back
//!   at the tail if level-triggered. Items that did not fit in `maxevents` go back to the front.
//! - **`EPOLL_CTL_ADD` and `MOD`** poll the file at once and queue the item if it is ready: the
//!   only way a oneshot item comes back, and why `MOD` on an undrained socket reports it again.
//! - **Nesting**: an epoll fd polls readable when one of its ready items really is ready (and
//!   polling it prunes the items that are not). Adding an epoll fd checks for cycles and for a
//!   chain of more than 5 instances (`EP_MAX_NESTS` + 1): `ELOOP`.
//! - **Waiters** (`ep->wq`): a thread of a multi-threaded scheduler blocked in `epoll_wait` is
//!   a waiter id on its instance's queue, added at the head (`__add_wait_queue_exclusive`). Every
//!   wakeup of the instance (`ep_poll_callback`, `ADD`/`MOD` of a ready file, and `ep_done_scan`
//!   finding items left on the ready list after a delivery) wakes one waiter, the head, which
//!   leaves the queue; the scheduler learns who through `take_woken`. So one edge wakes one
//!   thread, and a level-triggered item, re-queued after each delivery, wakes the waiters one
//!   after the other.
//! - **`EPOLLEXCLUSIVE`**: exclusive items wake after the others; the first one whose instance
//!   had a blocked waiter (the single-threaded `epoll_wait` in progress, or a queued waiter) and
//!   whose interest matches the key stops the wakeup; a wakeup without a key (a state change:
//!   hangup, shutdown) reaches every item. In a single-threaded program nobody is blocked when
//!   another syscall wakes a file, so every instance hears of it.
//!
//! # Not modelled
//!
//! `EPOLLWAKEUP` (accepted, no effect), `max_user_watches`, the wakeup-path limits of
//! `reverse_path_check`, busy polling, and the overflow list (nothing can wake a file while this
//! single-threaded kernel is scanning a ready list).

use std::collections::VecDeque;
use std::io;

use netpoll::sys::{
    err, errno::*, Events, EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD,
};
use netpoll::{EpollEvent, Fd};

use super::{FileId, ItemId, Kernel, Kind};

/// The bits that are modes, not interest: kept when a oneshot item is disarmed.
const EP_PRIVATE_BITS: Events = Events::WAKEUP
    .union(Events::ONESHOT)
    .union(Events::ET)
    .union(Events::EXCLUSIVE);

/// What `EPOLLEXCLUSIVE` may be combined with.
const EXCLUSIVE_OK_BITS: Events = Events::IN
    .union(Events::OUT)
    .union(Events::ERR)
    .union(Events::HUP)
    .union(Events::WAKEUP)
    .union(Events::ET)
    .union(Events::EXCLUSIVE);

/// Linux's `EP_MAX_NESTS`.
const EP_MAX_NESTS: u32 = 4;

/// An epoll instance.
#[derive(Debug, Default)]
pub(crate) struct Epoll {
    /// The ready list, oldest first. Entries carry the ticket the item had when queued; an entry
    /// whose ticket no longer matches was removed (by `DEL` or a prune) and is skipped.
    ready: ReadyList,
    /// Registrations by (open file, fd number).
    items: Registrations,
    /// Linux's `ep->wq`: the threads blocked in `epoll_wait` on this instance (waiter ids of a
    /// multi-threaded scheduler), head first. `ep_poll` adds itself at the head, exclusively, so
    /// one wakeup wakes one waiter, the one that blocked last.
    wq: VecDeque<u64>,
}

/// An instance's registrations, in (open file, fd number) order: a table indexed by file id
/// (file ids are dense slab indices), each slot holding the fds that file is registered under,
/// nearly always one. A lookup is an index instead of a search of an ordered map of 100,000s of
/// entries, and walking the table in index order visits the registrations in the same order as
/// an ordered map of (file, fd) would.
/// An epoll instance's ready list: a vector and the index of its front. Taking from the front
/// moves the index; the vector is emptied when the index reaches its end (every `epoll_wait`
/// that reports all it holds), and its taken front is dropped once it is half the vector (a
/// list that never runs dry: level-triggered re-queues). A push is a vector's push, a take
/// one read: a `VecDeque`'s wrapping of both indices was a tenth of a wakeup and of a report.
#[derive(Debug, Default)]
struct ReadyList {
    v: Vec<(ItemId, u32)>,
    head: usize,
}

impl ReadyList {
    #[inline]
    fn len(&self) -> usize {
        self.v.len() - self.head
    }

    #[inline]
    fn push_back(&mut self, e: (ItemId, u32)) {
        self.v.push(e);
    }

    #[inline]
    fn front(&self) -> Option<&(ItemId, u32)> {
        self.v.get(self.head)
    }

    #[inline]
    fn pop_front(&mut self) -> Option<(ItemId, u32)> {
        let e = *self.v.get(self.head)?;
        self.head += 1;
        if self.head == self.v.len() {
            self.v.clear();
            self.head = 0;
        } else if self.head >= 1024 && self.head * 2 >= self.v.len() {
            self.v.drain(..self.head);
            self.head = 0;
        }
        Some(e)
    }

    fn iter(&self) -> std::slice::Iter<'_, (ItemId, u32)> {
        self.v[self.head..].iter()
    }

    fn retain(&mut self, f: impl FnMut(&(ItemId, u32)) -> bool) {
        self.v.drain(..self.head);
        self.head = 0;
        self.v.retain(f);
    }
}

#[derive(Debug, Default)]
struct Registrations {
    by_file: Vec<RegSlot>,
    /// How many registrations there are.
    len: usize,
}

#[derive(Debug, Default)]
enum RegSlot {
    #[default]
    Empty,
    One((Fd, ItemId)),
    /// Two or more, sorted by fd.
    Many(Box<[(Fd, ItemId)]>),
}

impl RegSlot {
    fn as_slice(&self) -> &[(Fd, ItemId)] {
        match self {
            RegSlot::Empty => &[],
            RegSlot::One(pair) => std::slice::from_ref(pair),
            RegSlot::Many(v) => v,
        }
    }
}

impl Registrations {
    fn get(&self, file: FileId, fd: Fd) -> Option<ItemId> {
        let slot = self.by_file.get(file as usize)?;
        slot.as_slice().iter().find(|e| e.0 == fd).map(|e| e.1)
    }

    /// Adds (file, fd); it must not be there.
    fn insert(&mut self, file: FileId, fd: Fd, it: ItemId) {
        debug_assert!(fd >= 0);
        let i = file as usize;
        if self.by_file.len() <= i {
            self.by_file.resize_with(i + 1, RegSlot::default);
        }
        self.len += 1;
        let slot = &mut self.by_file[i];
        *slot = match std::mem::take(slot) {
            RegSlot::Empty => RegSlot::One((fd, it)),
            RegSlot::One(e) => {
                let mut v = vec![e, (fd, it)];
                v.sort_unstable();
                RegSlot::Many(v.into_boxed_slice())
            }
            RegSlot::Many(v) => {
                let mut v = v.into_vec();
                let at = v.partition_point(|e| e.0 < fd);
                v.insert(at, (fd, it));
                RegSlot::Many(v.into_boxed_slice())
            }
        };
    }

    fn remove(&mut self, file: FileId, fd: Fd) {
        let Some(slot) = self.by_file.get_mut(file as usize) else {
            return;
        };
        *slot = match std::mem::take(slot) {
            RegSlot::One(e) if e.0 == fd => {
                self.len -= 1;
                RegSlot::Empty
            }
            RegSlot::Many(v) => {
                let mut v = v.into_vec();
                let before = v.len();
                v.retain(|e| e.0 != fd);
                self.len -= before - v.len();
                match v.len() {
                    0 => RegSlot::Empty,
                    1 => RegSlot::One(v[0]),
                    _ => RegSlot::Many(v.into_boxed_slice()),
                }
            }
            other => other,
        };
    }

    /// Every registration as (file, item), in (file, fd) order.
    fn iter(&self) -> impl Iterator<Item = (FileId, ItemId)> + '_ {
        self.by_file
            .iter()
            .enumerate()
            .flat_map(|(f, slot)| slot.as_slice().iter().map(move |e| (f as FileId, e.1)))
    }

    /// The first registration at or after file `from`, or else the first of all.
    fn first_from(&self, from: FileId) -> Option<ItemId> {
        let from = (from as usize).min(self.by_file.len());
        self.by_file[from..]
            .iter()
            .chain(&self.by_file[..from])
            .find_map(|slot| slot.as_slice().first().map(|e| e.1))
    }
}

/// One registration: Linux's `struct epitem`.
#[derive(Debug)]
pub(crate) struct EpItem {
    /// The epoll instance's file.
    pub(crate) ep: FileId,
    /// The watched file, and the fd number it was registered under.
    pub(crate) file: FileId,
    pub(crate) fd: Fd,
    /// Interest (always with `ERR | HUP`) and mode bits; only mode bits once a oneshot fired.
    pub(crate) events: Events,
    pub(crate) data: u64,
    /// On the ready list.
    linked: bool,
    ticket: u32,
}

impl EpItem {
    pub(crate) fn exclusive(&self) -> bool {
        self.events.contains(Events::EXCLUSIVE)
    }

    fn armed(&self) -> bool {
        !self.events.without(EP_PRIVATE_BITS).is_empty()
    }
}

/// A registration whose file is ready for its interest while nothing is queued to report it:
/// at quiescence, a wakeup the event loop will never see (if it waits for it: see
/// [`crate::oracle::default_wants`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stranded {
    /// The fd number the registration was made under.
    pub fd: Fd,
    /// The registration's user data.
    pub data: u64,
    /// The interest and mode bits of the last `ADD`/`MOD`.
    pub interest: Events,
    /// What the file is ready for, within that interest.
    pub ready: Events,
    /// A oneshot registration that fired and was never re-armed.
    pub disarmed: bool,
    /// A read on the file has returned end-of-file or a reset: the loop has seen the end.
    pub eof_read: bool,
}

impl Kernel {
    /// The registrations of `epfd` that are [`Stranded`]. Changes nothing (a nested epoll file
    /// is peeked at, not polled).
    pub(crate) fn stranded(&mut self, epfd: Fd) -> io::Result<Vec<Stranded>> {
        let ep = self.file_of(epfd)?;
        let Kind::Epoll(e) = &self.files[ep].kind else {
            return Err(err(EINVAL));
        };
        let mut out = Vec::new();
        for (_, it) in e.items.iter() {
            let i = &self.items[it];
            let armed = i.armed();
            if i.linked && armed {
                continue;
            }
            let interest = self.interests[it as usize];
            let ready = self.peek_file(i.file, 1) & interest.readiness();
            if !ready.is_empty() {
                out.push(Stranded {
                    fd: i.fd,
                    data: i.data,
                    interest,
                    ready,
                    disarmed: !armed,
                    eof_read: self.files[i.file].eof_read,
                });
            }
        }
        Ok(out)
    }

    /// How many registrations `epfd` has (0 if it is not an epoll instance).
    pub(crate) fn ep_registrations(&self, epfd: Fd) -> usize {
        match self.file_of(epfd).map(|f| &self.files[f].kind) {
            Ok(Kind::Epoll(e)) => e.items.len,
            _ => 0,
        }
    }

    /// [`ep_eventpoll_poll`](Kernel::ep_eventpoll_poll) without the pruning.
    pub(crate) fn ep_peek(&self, ep: FileId, depth: u32) -> Events {
        if depth > EP_MAX_NESTS + 1 {
            return Events::NONE;
        }
        let Kind::Epoll(e) = &self.files[ep].kind else {
            return Events::NONE;
        };
        for &(it, ticket) in e.ready.iter() {
            let Some(i) = self.items.get(it) else {
                continue;
            };
            if !(i.linked && i.ticket == ticket && i.ep == ep) {
                continue;
            }
            if !(self.peek_file(i.file, depth + 1) & i.events.readiness()).is_empty() {
                return Events::IN | Events::RDNORM;
            }
        }
        Events::NONE
    }

    fn epoll_mut(&mut self, ep: FileId) -> &mut Epoll {
        match &mut self.files[ep].kind {
            Kind::Epoll(e) => e,
            _ => unreachable!("epoll item {ep} points at a file that is not an epoll instance"),
        }
    }

    fn is_epoll(&self, f: FileId) -> bool {
        matches!(self.files[f].kind, Kind::Epoll(_))
    }

    pub(crate) fn epoll_create1(&mut self, flags: i32) -> io::Result<Fd> {
        if flags & !EPOLL_CLOEXEC != 0 {
            return Err(err(EINVAL));
        }
        self.descriptor_fault(true)?;
        self.enomem_file_fault()?;
        let mut ep = Epoll::default();
        if !self.epoll_hinted {
            // The process's first instance is its event loop's: its registration table is sized
            // from the capacity hint (`SimConfig::expected_conns`), like the kernel's own tables.
            self.epoll_hinted = true;
            let n = self.cfg.reserved_conns();
            ep.items.by_file.reserve(if n == 0 { 0 } else { 2 * n + 8 });
        }
        Ok(self.new_file(Kind::Epoll(Box::new(ep)), false)?.1)
    }

    /// Queues `it` at the tail of its instance's ready list, if not already there.
    fn link(&mut self, it: ItemId) -> bool {
        let item = &mut self.items[it];
        if item.linked {
            return false;
        }
        item.linked = true;
        item.ticket = item.ticket.wrapping_add(1);
        let (ep, ticket) = (item.ep, item.ticket);
        self.epoll_mut(ep).ready.push_back((it, ticket));
        true
    }

    fn unlink(&mut self, it: ItemId) {
        // The stale list entry is skipped later by its ticket.
        let item = &mut self.items[it];
        item.linked = false;
        item.ticket = item.ticket.wrapping_add(1);
    }

    /// Linux's `ep_poll_callback`: the watched file woke its queue with `key`. Returns whether
    /// the item is exclusive and its wakeup counts as having woken someone (which ends an
    /// exclusive wakeup's walk of the queue).
    /// Inline into [`Kernel::wake_queue`], its one caller.
    #[inline(always)]
    pub(crate) fn ep_poll_callback(&mut self, it: ItemId, key: Events) -> bool {
        self.stats.wakeups += 1;
        let item = &mut self.items[it];
        if !item.armed() {
            return false;
        }
        if !key.is_empty() && !key.intersects(item.events) {
            return false;
        }
        let (ep, exclusive, interest) = (item.ep, item.exclusive(), item.events);
        // `link`, Linux's `waitqueue_active(&ep->wq)` (a thread is blocked in `epoll_wait` on
        // `ep`) and the test in `wake`, with one lookup of the instance for its ready list, its
        // waiters and its own wait queue.
        let queued = (!item.linked).then(|| {
            item.linked = true;
            item.ticket = item.ticket.wrapping_add(1);
            item.ticket
        });
        let blocked = self.blocked_in == Some(ep);
        let file = &mut self.files[ep];
        let watched = !file.watchers.is_empty();
        let Kind::Epoll(e) = &mut file.kind else {
            unreachable!("epoll item {it} points at a file that is not an epoll instance")
        };
        if let Some(ticket) = queued {
            e.ready.push_back((it, ticket));
        }
        let mut ewake = false;
        if blocked || !e.wq.is_empty() {
            self.ep_wake_one(ep);
            ewake = if exclusive {
                match (key.intersects(Events::IN), key.intersects(Events::OUT)) {
                    (true, false) => interest.contains(Events::IN),
                    (false, true) => interest.contains(Events::OUT),
                    _ => true,
                }
            } else {
                true
            };
        }
        // Instances that have this one registered hear of it (`ep_poll_safewake`).
        if watched {
            self.wake_queue(ep, Events::IN);
        }
        exclusive && ewake
    }

    /// The item's readiness: the file's poll, masked by the item's interest.
    fn ep_item_poll(&mut self, it: ItemId, depth: u32) -> Events {
        let (file, events) = {
            let i = &self.items[it];
            (i.file, i.events)
        };
        self.poll_file(file, depth) & events.readiness()
    }

    /// Polling an epoll file (`__ep_eventpoll_poll`): readable when a ready item really is ready.
    /// Items found not ready are pruned from the front of the list on the way.
    pub(crate) fn ep_eventpoll_poll(&mut self, ep: FileId, depth: u32) -> Events {
        if depth > EP_MAX_NESTS + 1 {
            return Events::NONE;
        }
        loop {
            let front = self.epoll_mut(ep).ready.front().copied();
            let Some((it, ticket)) = front else {
                return Events::NONE;
            };
            let valid = self
                .items
                .get(it)
                .is_some_and(|i| i.linked && i.ticket == ticket && i.ep == ep);
            if !valid {
                self.epoll_mut(ep).ready.pop_front();
                continue;
            }
            if !self.ep_item_poll(it, depth + 1).is_empty() {
                return Events::IN | Events::RDNORM;
            }
            self.epoll_mut(ep).ready.pop_front();
            self.unlink(it);
        }
    }

    pub(crate) fn epoll_ctl(
        &mut self,
        epfd: Fd,
        op: i32,
        fd: Fd,
        event: Option<EpollEvent>,
    ) -> io::Result<()> {
        let has_event = op != EPOLL_CTL_DEL;
        let ev = match (has_event, event) {
            (true, None) => return Err(err(EFAULT)),
            (true, Some(e)) => e,
            (false, _) => EpollEvent::EMPTY,
        };
        let epf = self.file_of(epfd)?;
        let tf = self.file_of(fd)?;
        // Every simulated file supports polling, so EPERM never arises here.
        if epf == tf || !self.is_epoll(epf) {
            return Err(err(EINVAL));
        }
        let target_is_epoll = self.is_epoll(tf);
        if has_event && ev.events.contains(Events::EXCLUSIVE) {
            if op == EPOLL_CTL_MOD {
                return Err(err(EINVAL));
            }
            if op == EPOLL_CTL_ADD
                && (target_is_epoll || !ev.events.without(EXCLUSIVE_OK_BITS).is_empty())
            {
                return Err(err(EINVAL));
            }
        }
        if op == EPOLL_CTL_ADD && target_is_epoll && !self.ep_loop_ok(epf, tf) {
            return Err(err(ELOOP));
        }
        let existing = match &self.files[epf].kind {
            Kind::Epoll(e) => e.items.get(tf, fd),
            _ => unreachable!(),
        };
        let events = ev.events | Events::ERR | Events::HUP;
        match (op, existing) {
            (EPOLL_CTL_ADD, None) => {
                if self
                    .rng
                    .chance(crate::rng::Stream::Errno, self.cfg.faults.enomem)
                {
                    // `ep_insert` could not allocate the item: nothing changes.
                    self.faults.enomem += 1;
                    return Err(err(ENOMEM));
                }
                self.ep_insert(epf, tf, fd, events, ev.data);
                Ok(())
            }
            (EPOLL_CTL_ADD, Some(_)) => Err(err(EEXIST)),
            (EPOLL_CTL_DEL, Some(it)) => {
                self.ep_remove_item(it, true);
                Ok(())
            }
            (EPOLL_CTL_MOD, Some(it)) => {
                if self.items[it].exclusive() {
                    return Err(err(EINVAL));
                }
                self.ep_modify(it, events, ev.data);
                Ok(())
            }
            (EPOLL_CTL_DEL | EPOLL_CTL_MOD, None) => Err(err(ENOENT)),
            _ => Err(err(EINVAL)),
        }
    }

    fn ep_insert(&mut self, ep: FileId, file: FileId, fd: Fd, events: Events, data: u64) {
        let it = self.items.insert(EpItem {
            ep,
            file,
            fd,
            events,
            data,
            linked: false,
            ticket: 0,
        });
        self.set_interest(it, events);
        self.epoll_mut(ep).items.insert(file, fd, it);
        let watchers = &mut self.files[file].watchers;
        if events.contains(Events::EXCLUSIVE) {
            watchers.push_back(it);
        } else {
            watchers.push_front(it);
        }
        if !self.ep_item_poll(it, 1).is_empty() && self.link(it) {
            self.ep_wake_one(ep);
            self.wake(ep, Events::IN);
        }
    }

    fn ep_modify(&mut self, it: ItemId, events: Events, data: u64) {
        self.set_interest(it, events);
        let item = &mut self.items[it];
        item.events = events;
        item.data = data;
        let ep = item.ep;
        if !self.ep_item_poll(it, 1).is_empty() && self.link(it) {
            self.ep_wake_one(ep);
            self.wake(ep, Events::IN);
        }
    }

    /// Removes an item from its instance and, if `from_queue`, from its file's wait queue (the
    /// caller has already emptied the queue when the file itself is going).
    pub(crate) fn ep_remove_item(&mut self, it: ItemId, from_queue: bool) {
        let item = self.items.remove(it);
        if from_queue {
            if let Some(f) = self.files.get_mut(item.file) {
                f.watchers.remove(it);
            }
        }
        if let Some(Kind::Epoll(e)) = self.files.get_mut(item.ep).map(|f| &mut f.kind) {
            e.items.remove(item.file, item.fd);
            if item.linked {
                e.ready.retain(|&(i, _)| i != it);
            }
        }
    }

    /// The epoll file is gone: every item it held leaves its file's wait queue.
    pub(crate) fn ep_free(&mut self, ep: Epoll) {
        for (_, it) in ep.items.iter() {
            let item = self.items.remove(it);
            if let Some(f) = self.files.get_mut(item.file) {
                f.watchers.remove(it);
            }
        }
    }

    /// Instances registered (directly) in `ep`.
    fn ep_children(&self, ep: FileId) -> Vec<FileId> {
        match &self.files[ep].kind {
            Kind::Epoll(e) => e
                .items
                .iter()
                .map(|(f, _)| f)
                .filter(|&f| self.is_epoll(f))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Instances that have `ep` registered.
    fn ep_parents(&self, ep: FileId) -> Vec<FileId> {
        self.files[ep]
            .watchers
            .as_slice()
            .iter()
            .map(|&it| self.items[it].ep)
            .collect()
    }

    /// Longest chain of instances below `to` (0: none), or `None` if `from` is reachable.
    fn ep_depth_below(&self, to: FileId, from: FileId, budget: u32) -> Option<u32> {
        if to == from {
            return None;
        }
        if budget == 0 {
            return Some(EP_MAX_NESTS + 1);
        }
        let mut depth = 0;
        for child in self.ep_children(to) {
            let d = self.ep_depth_below(child, from, budget - 1)?;
            depth = depth.max(d + 1);
        }
        Some(depth)
    }

    fn ep_depth_above(&self, ep: FileId, budget: u32) -> u32 {
        if budget == 0 {
            return EP_MAX_NESTS + 1;
        }
        self.ep_parents(ep)
            .into_iter()
            .map(|p| self.ep_depth_above(p, budget - 1) + 1)
            .max()
            .unwrap_or(0)
    }

    /// Linux's `ep_loop_check`: may `to` be added to `ep`?
    fn ep_loop_ok(&self, ep: FileId, to: FileId) -> bool {
        let Some(below) = self.ep_depth_below(to, ep, EP_MAX_NESTS + 2) else {
            return false;
        };
        if below > EP_MAX_NESTS {
            return false;
        }
        below + 1 + self.ep_depth_above(ep, EP_MAX_NESTS + 2) <= EP_MAX_NESTS
    }

    /// Linux's `ep_send_events`: fills `out` from the ready list; returns how many.
    ///
    /// Linux splices the ready list onto a private list, walks it, and splices what did not
    /// fit back in front of the level-triggered re-queues. Walking the entries that were queued
    /// at the start in place gives the same order without moving the list: re-queues go to the
    /// tail, behind every entry that was there before, and what was not reached stays in front.
    pub(crate) fn ep_send_events(&mut self, ep: FileId, out: &mut [EpollEvent]) -> usize {
        let mut todo = self.epoll_mut(ep).ready.len();
        if todo == 0 {
            // Nothing to report, and nothing left on the list to pass on to another waiter.
            return 0;
        }
        let mut n = 0;
        while n < out.len() && todo > 0 {
            todo -= 1;
            let Some((it, ticket)) = self.epoll_mut(ep).ready.pop_front() else {
                break;
            };
            // One look-up of the item for what the report needs (not one per use).
            let Some(item) = self
                .items
                .get_mut(it)
                .filter(|i| i.linked && i.ticket == ticket)
            else {
                continue;
            };
            item.linked = false;
            let (file, fd, events) = (item.file, item.fd, item.events);
            // `ep_item_poll` (a socket's poll inline: nearly every item watches one; calling
            // `poll_file` for every kind here is +0.6% instructions on `echo` 2k x 110).
            let ready = match &self.files[file].kind {
                Kind::Tcp(s) => self.tcp_poll(s),
                _ => self.poll_file(file, 1),
            };
            let revents = ready & events.readiness();
            if revents.is_empty() {
                continue;
            }
            self.warm_for_call(fd, file);
            let item = &mut self.items[it];
            out[n] = EpollEvent::new(revents, item.data);
            n += 1;
            if item.events.contains(Events::ONESHOT) {
                item.events &= EP_PRIVATE_BITS;
            } else if !item.events.contains(Events::ET) {
                // Level-triggered: back to the tail, to be re-checked next time.
                item.linked = true;
                let t = item.ticket;
                self.epoll_mut(ep).ready.push_back((it, t));
            }
        }
        self.stats.epoll_events += n as u64;
        // `ep_done_scan`: items left on the ready list (level-triggered re-queues, what did not
        // fit) wake the next waiter, which is how one level-triggered event reaches every thread
        // blocked on the instance, one after the other.
        if !self.epoll_mut(ep).wq.is_empty() && self.ep_has_ready(ep) {
            self.ep_wake_one(ep);
        }
        n
    }

    /// Whether `ep`'s ready list holds a live entry (stale ones are skipped, not pruned).
    fn ep_has_ready(&self, ep: FileId) -> bool {
        let Kind::Epoll(e) = &self.files[ep].kind else {
            return false;
        };
        e.ready.iter().any(|&(it, ticket)| {
            self.items
                .get(it)
                .is_some_and(|i| i.linked && i.ticket == ticket && i.ep == ep)
        })
    }

    /// `wake_up(&ep->wq)`: every waiter is exclusive, so this wakes the one at the head, which
    /// leaves the queue (`ep_autoremove_wake_function`) and is told to the scheduler through
    /// [`Kernel::take_woken`].
    fn ep_wake_one(&mut self, ep: FileId) {
        if let Some(w) = self.epoll_mut(ep).wq.pop_front() {
            self.woken.push(w);
        }
    }

    /// A thread of a multi-threaded scheduler blocks in `epoll_wait` on `ep` as `waiter`:
    /// added at the head of `ep->wq` (`__add_wait_queue_exclusive`).
    pub(crate) fn ep_wait_enqueue(&mut self, ep: FileId, waiter: u64) {
        let wq = &mut self.epoll_mut(ep).wq;
        if !wq.contains(&waiter) {
            wq.push_front(waiter);
        }
    }

    /// `waiter` stops waiting on `ep` (it timed out, or returns): off the queue if still on it.
    pub(crate) fn ep_wait_dequeue(&mut self, ep: FileId, waiter: u64) {
        if let Some(Kind::Epoll(e)) = self.files.get_mut(ep).map(|f| &mut f.kind) {
            e.wq.retain(|&w| w != waiter);
        }
    }

    /// The waiters woken since the last call, in wake order.
    pub(crate) fn take_woken(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.woken)
    }

    /// A spurious event: a random armed registration of `ep` that is not queued, reported with
    /// its interest's `IN`/`OUT` bits whether or not the file is ready. A oneshot registration
    /// is disarmed by it, as by any reported event.
    fn ep_spurious(&mut self, ep: FileId) -> Option<EpollEvent> {
        let max = self.files_high_water();
        let pick = self
            .rng
            .range(crate::rng::Stream::Faults, 0, u64::from(max)) as FileId;
        let Kind::Epoll(e) = &self.files[ep].kind else {
            return None;
        };
        let it = e.items.first_from(pick)?;
        let item = &mut self.items[it];
        let revents = item.events & (Events::IN | Events::OUT);
        if item.linked || !item.armed() || revents.is_empty() {
            return None;
        }
        let ev = EpollEvent::new(revents, item.data);
        if item.events.contains(Events::ONESHOT) {
            item.events &= EP_PRIVATE_BITS;
        }
        Some(ev)
    }

    /// The checks `epoll_wait` makes before it waits: the instance, and the deadline.
    /// The `drop_event` fault: maybe drops the first reported readable event of a connection
    /// (not a listener's: a later connection would announce it again) from `out`; returns how
    /// many are left. The event is consumed as if reported: an edge is gone, a oneshot disarmed.
    fn drop_event(&mut self, ep: FileId, out: &mut [EpollEvent]) -> usize {
        let n = out.len();
        let max = self.cfg.faults.drop_event_max;
        if max > 0 && self.dropped >= max {
            return n;
        }
        let victim = out.iter().position(|ev| {
            ev.events.intersects(Events::IN) && !self.ep_data_is_listener(ep, ev.data)
        });
        let Some(v) = victim else {
            return n;
        };
        if !self
            .rng
            .chance(crate::rng::Stream::Drop, self.cfg.faults.drop_event)
        {
            return n;
        }
        self.dropped += 1;
        self.faults.dropped_events += 1;
        out.copy_within(v + 1..n, v);
        n - 1
    }

    /// Whether a registration of `ep` with user data `data` watches a listening socket.
    fn ep_data_is_listener(&self, ep: FileId, data: u64) -> bool {
        let Kind::Epoll(e) = &self.files[ep].kind else {
            return false;
        };
        e.items
            .iter()
            .any(|(f, it)| self.items[it].data == data && self.tcp_is_listener(f))
    }

    pub(crate) fn epoll_wait_start(
        &mut self,
        epfd: Fd,
        maxevents: usize,
        timeout_ns: Option<u64>,
    ) -> io::Result<(FileId, Option<u64>)> {
        // Linux 6.18 looks the descriptor up before it checks `maxevents`.
        let ep = self.file_of(epfd)?;
        if maxevents == 0 || !self.is_epoll(ep) {
            return Err(err(EINVAL));
        }
        let deadline = timeout_ns.map(|t| self.now_ns.saturating_add(t));
        Ok((ep, deadline))
    }

    /// The body of `epoll_wait` on instance `ep` (after [`epoll_wait_start`]): report what is
    /// ready, or let time pass until something is or the deadline comes. With `stop_at_quiet`,
    /// returns [`WaitStep::Quiet`] when it is about to sleep with nothing in flight, for the
    /// oracles; the caller then calls again with `resume` to go on sleeping.
    ///
    /// [`epoll_wait_start`]: Kernel::epoll_wait_start
    pub(crate) fn epoll_wait_turn(
        &mut self,
        ep: FileId,
        epfd: Fd,
        out: &mut [EpollEvent],
        deadline: Option<u64>,
        stop_at_quiet: bool,
        mut resume: bool,
    ) -> WaitStep {
        loop {
            if !resume {
                let mut n = self.ep_send_events(ep, out);
                // Without `wait_faults` every fault test below says no and draws nothing.
                let faulty = self.wait_faults;
                if faulty && n < out.len() && self.fault(self.cfg.faults.spurious) {
                    if let Some(ev) = self.ep_spurious(ep) {
                        out[n] = ev;
                        n += 1;
                        self.faults.spurious += 1;
                    }
                }
                if faulty && n > 0 && crate::rng::draws(self.cfg.faults.drop_event) {
                    n = self.drop_event(ep, &mut out[..n]);
                }
                if n > 0 || deadline.is_some_and(|d| self.now_ns >= d) {
                    return WaitStep::Done(Ok(n));
                }
                if faulty && self.fault(self.cfg.faults.eintr) {
                    self.faults.eintr += 1;
                    return WaitStep::Done(Err(err(EINTR)));
                }
                if let (true, Some(d), Some(t)) = (faulty, deadline, self.next_event_ns()) {
                    if t == d && self.fault(self.cfg.faults.timer_first) {
                        // The timeout and a delivery fall on the same instant: the timeout wins.
                        self.faults.timer_first += 1;
                        self.now_ns = d;
                        return WaitStep::Done(Ok(0));
                    }
                }
                if stop_at_quiet && self.pending() == 0 {
                    return WaitStep::Quiet;
                }
            }
            resume = false;
            self.blocked_in = Some(ep);
            let moved = self.advance(deadline);
            self.blocked_in = None;
            if !moved && deadline.is_none() {
                let msg = format!(
                    "epoll_wait(epfd {epfd}, timeout -1) would wait for ever: nothing is in \
                     flight and no registered file is ready (seed {})",
                    self.seed
                );
                let call = format!("epoll_wait(fd {epfd}, timeout -1)");
                return WaitStep::Done(Err(self.hang(call, msg)));
            }
        }
    }
}

/// How a stretch of `epoll_wait` ended.
pub(crate) enum WaitStep {
    /// The call's result.
    Done(io::Result<usize>),
    /// About to sleep with nothing in flight: the oracles' turn.
    Quiet,
}

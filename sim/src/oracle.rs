//! The oracles the kernel runs on its own: lost wakeups, hangs, livelocks, leaks, and the user's
//! invariants. A harness (or a user's test) reads the verdict with [`Sim::violation`] or
//! [`Sim::finish`]; nobody pastes a scan into an event loop any more.
//!
//! # What is checked, and when
//!
//! | oracle | when | fires when |
//! |---|---|---|
//! | `lost-wakeup` | at quiescence (below) | a registration of the waiting epoll instance is ready for what the loop wants on it ([`Sim::set_wants`]; default: [`default_wants`]) and nothing is queued to report it: the loop would sleep through a wakeup it already lost |
//! | `hang` | when a blocking call would sleep | nothing is in flight, no deadline is set and no file is ready: the call would sleep for ever |
//! | `livelock` | every [`Poller`](netpoll::Poller) call | [`Oracles::livelock_turns`] calls in a row without progress (below) |
//! | `leak` | [`Sim::finish`] | a descriptor is still open that nobody declared with [`Sim::expect_open`] |
//! | `invariant` | at quiescence and in [`Sim::finish`] | a closure given to [`Sim::add_invariant`] returns `Err` |
//!
//! **Quiescence** is a blocking call that is about to sleep with nothing in flight (no packet
//! queued in the network, no retransmission pending): `epoll_wait` with a timeout other than 0,
//! on entry and again whenever it would put the caller to sleep. State can then change only by
//! the loop's own action or a timeout, so a ready registration that nothing will report is a
//! wakeup lost for good. The scan on entry is amortised for instances with more than
//! [`SCAN_FREE_REGISTRATIONS`] registrations (one pass per that many calls since the last
//! pass); the scan before a sleep with no deadline is never skipped. A blocking `read`, `write`,
//! `accept4` or `connect` with nothing in flight can only hang: it is judged by the hang oracle.
//!
//! **Progress**, for the livelock budget: a byte moved between user space and a socket, pipe or
//! eventfd; a descriptor created or closed; a connection started, shut down or torn down; a
//! packet delivered; or virtual time passing (a loop that sleeps is not spinning). A **turn** is
//! one `Poller` call. The default budget, [`LIVELOCK_TURNS`], is far above what any loop spends
//! between two of those: 100,000 calls is 5 registrations of every descriptor a process may
//! hold here.
//!
//! # What happens on a violation
//!
//! The kernel keeps the first violation of a run ([`Sim::violation`]). From then on every
//! blocking call fails at once, so that any loop ends: `epoll_wait` with a timeout other than 0,
//! and `read`, `write`, `accept4` and `connect` on a blocking descriptor when they would sleep.
//! The error's kind is [`ErrorKind::Deadlock`](std::io::ErrorKind::Deadlock), whatever the
//! oracle (a hang was reported that way before oracles existed, and a harness that runs its own
//! diagnosis on a `Deadlock` keeps working); its message starts with
//! `netpoll-sim: run stopped: <oracle>`. After a livelock *every* call
//! fails that way, since a spinning loop may never block. Callers judge the run by
//! [`Sim::violation`] or [`Sim::finish`], not by the error.
//!
//! # Contract with the users of this module (`api8`, `reg8`)
//!
//! The shape agreed in `notes/oracle-contract.md`, with these refinements:
//! - [`Oracles`] also has [`Oracles::off`] (kernel conformance tests and the fuzz harnesses
//!   that exercise raw epoll semantics use it);
//! - [`Stranded`] gained `eof_read` (a read on the file returned end-of-file or a reset), which
//!   [`default_wants`] uses to skip connections the loop has finished reading;
//! - [`Sim::check_lost_wakeups`] runs the same scan on demand (for a harness that decides itself
//!   when its loop is about to block);
//! - progress for the livelock budget includes virtual time passing;
//! - every stopped call fails with `ErrorKind::Deadlock` (the contract had `Other` for all but
//!   a hang): harnesses that predate the oracles treat it as "would block for ever" and run
//!   their own diagnosis, instead of failing with an unexpected I/O error;
//! - a harness that calls [`Sim::stranded`] judges lost wakeups itself: from that call on the
//!   kernel's scan stands aside (the engine, zoo and rt-echo harnesses until they move to
//!   [`Sim::set_wants`]).
//!
//! # Example: an edge-triggered handler that reads once per edge
//!
//! ```
//! use netpoll::sys::{Events, EPOLL_CTL_ADD, O_NONBLOCK};
//! use netpoll::{EpollEvent, Poller};
//! use netpoll_sim::{Sim, Violation};
//!
//! let sim = Sim::new(7);
//! let ep = sim.epoll_create1(0).unwrap();
//! let [a, b] = sim.socketpair(O_NONBLOCK).unwrap();
//! sim.epoll_ctl(ep, EPOLL_CTL_ADD, a, Some(EpollEvent::new(Events::IN | Events::ET, 1))).unwrap();
//! sim.write(b, &[7; 100]).unwrap();
//! let mut evs = [EpollEvent::EMPTY; 8];
//! assert_eq!(sim.epoll_wait(ep, &mut evs, -1).unwrap(), 1);
//! sim.read(a, &mut [0; 10]).unwrap(); // the bug: 90 bytes stay, and no new edge will come
//! let e = sim.epoll_wait(ep, &mut evs, -1).unwrap_err();
//! assert!(e.to_string().starts_with("netpoll-sim: run stopped: lost-wakeup"));
//! let v = sim.violation().unwrap();
//! assert_eq!(v.oracle(), "lost-wakeup");
//! assert!(matches!(v, Violation::LostWakeup { fd, .. } if fd == a));
//! println!("{v}"); // the fd, what was ready, what was wanted, its recent calls
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::rc::Rc;

use netpoll::sys::Events;
use netpoll::Fd;

use crate::kernel::epoll::Stranded;
use crate::trace::{fmt_history, Record};
use crate::Sim;

/// The default livelock budget: calls in a row without progress.
pub const LIVELOCK_TURNS: u64 = 100_000;

/// Instances with at most this many registrations are scanned at every quiescent `epoll_wait`;
/// bigger ones once per that many calls (and always before a sleep with no deadline).
pub const SCAN_FREE_REGISTRATIONS: usize = 64;

/// What the kernel checks on its own; the `oracles` field of [`SimConfig`](crate::SimConfig).
/// Every oracle is on by default.
///
/// ```
/// let cfg = netpoll_sim::SimConfig {
///     oracles: netpoll_sim::Oracles { livelock_turns: 0, ..Default::default() },
///     ..Default::default()
/// };
/// let sim = netpoll_sim::Sim::with_config(1, cfg);
/// assert!(sim.finish().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oracles {
    /// The lost-wakeup scan at quiescence.
    pub lost_wakeup: bool,
    /// A blocking call that would sleep for ever is a violation (it fails with `Deadlock`
    /// either way: the simulated kernel cannot hang).
    pub hang: bool,
    /// Calls in a row without progress before a livelock is declared; 0 turns it off.
    pub livelock_turns: u64,
    /// [`Sim::finish`] reports descriptors left open.
    pub leaks: bool,
}

impl Default for Oracles {
    fn default() -> Self {
        Oracles {
            lost_wakeup: true,
            hang: true,
            livelock_turns: LIVELOCK_TURNS,
            leaks: true,
        }
    }
}

impl Oracles {
    /// No oracle: the kernel only models Linux (a blocking call that would sleep for ever still
    /// fails with `Deadlock`, as it must). For tests of the kernel's own semantics, which leave
    /// edge-triggered data unread on purpose.
    pub fn off() -> Oracles {
        Oracles {
            lost_wakeup: false,
            hang: false,
            livelock_turns: 0,
            leaks: false,
        }
    }
}

/// The first broken rule of a run. `Display` is the readable, multi-line diagnosis.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Violation {
    /// The loop was about to sleep while a registration was ready for what it wants, with
    /// nothing queued to report it.
    LostWakeup {
        /// The epoll instance the loop was waiting on.
        epfd: Fd,
        /// The registered descriptor.
        fd: Fd,
        /// The registration's user data.
        data: u64,
        /// What the file is ready for, within the registration's interest.
        ready: Events,
        /// What the loop wants on it ([`Sim::set_wants`]).
        wanted: Events,
        /// The registration's interest and mode bits (of the last `ADD`/`MOD`).
        interest: Events,
        /// A oneshot registration that fired and was never re-armed.
        disarmed: bool,
        /// Virtual time.
        at_ns: u64,
        /// The fd's recent calls, oldest first.
        history: Vec<Record>,
    },
    /// A blocking call would have slept for ever.
    Hang {
        /// The call, e.g. `epoll_wait(fd 3, timeout -1)`.
        call: String,
        /// Virtual time.
        at_ns: u64,
    },
    /// Too many calls in a row without progress.
    Livelock {
        /// The budget that ran out.
        turns: u64,
        /// Virtual time.
        at_ns: u64,
    },
    /// Descriptors open at the end that nobody declared.
    Leak {
        /// Each descriptor and its kind (`"tcp"`, `"epoll"`, `"pipe"`, `"unix"`, `"eventfd"`).
        fds: Vec<(Fd, String)>,
    },
    /// A user invariant failed.
    Invariant {
        /// The name it was added under.
        name: String,
        /// What it said.
        message: String,
        /// Checked by [`Sim::finish`] (else at a quiescence).
        at_end: bool,
        /// Virtual time.
        at_ns: u64,
    },
}

impl Violation {
    /// Which oracle fired: `"lost-wakeup"`, `"hang"`, `"livelock"`, `"leak"` or `"invariant"`.
    pub fn oracle(&self) -> &'static str {
        match self {
            Violation::LostWakeup { .. } => "lost-wakeup",
            Violation::Hang { .. } => "hang",
            Violation::Livelock { .. } => "livelock",
            Violation::Leak { .. } => "leak",
            Violation::Invariant { .. } => "invariant",
        }
    }

    /// Virtual time when it was found (`None` for a leak, found after the run).
    pub fn at_ns(&self) -> Option<u64> {
        match *self {
            Violation::LostWakeup { at_ns, .. }
            | Violation::Hang { at_ns, .. }
            | Violation::Livelock { at_ns, .. }
            | Violation::Invariant { at_ns, .. } => Some(at_ns),
            Violation::Leak { .. } => None,
        }
    }

    /// The error every stopped call returns.
    pub(crate) fn stop_error(&self, detail: &str) -> io::Error {
        // Every stop is a `Deadlock`: the loop may not sleep, and harnesses written before the
        // oracles (which run their own diagnosis on a `Deadlock`) end cleanly.
        let kind = io::ErrorKind::Deadlock;
        let msg = if detail.is_empty() {
            format!("netpoll-sim: run stopped: {}", self.oracle())
        } else {
            format!("netpoll-sim: run stopped: {}: {detail}", self.oracle())
        };
        io::Error::new(kind, msg)
    }
}

/// How many recent calls of the fd a lost-wakeup diagnosis prints.
const HISTORY_SHOWN: usize = 16;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LostWakeup {
                epfd,
                fd,
                data,
                ready,
                wanted,
                interest,
                disarmed,
                at_ns,
                history,
            } => {
                writeln!(
                    f,
                    "lost wakeup at {at_ns} ns: fd {fd} (data {data:#x}) is ready for {ready:?} \
                     and the loop wants {wanted:?}, but nothing is queued to report it on epoll \
                     fd {epfd} (interest {interest:?}{})",
                    if *disarmed {
                        "; a ONESHOT registration that fired and was never re-armed"
                    } else {
                        ""
                    }
                )?;
                fmt_history(f, *fd, history, HISTORY_SHOWN)
            }
            Violation::Hang { call, at_ns } => writeln!(
                f,
                "hang at {at_ns} ns: {call} would sleep for ever: nothing is in flight, no \
                 deadline is set and no registered file is ready"
            ),
            Violation::Livelock { turns, at_ns } => writeln!(
                f,
                "livelock at {at_ns} ns: {turns} calls in a row moved no byte, made or closed \
                 no descriptor, delivered no packet and let no virtual time pass"
            ),
            Violation::Leak { fds } => {
                let list: Vec<String> = fds.iter().map(|(fd, k)| format!("{fd} ({k})")).collect();
                writeln!(
                    f,
                    "leak: {} descriptor(s) open at the end that were not declared with \
                     expect_open: {}",
                    fds.len(),
                    list.join(", ")
                )
            }
            Violation::Invariant {
                name,
                message,
                at_end,
                at_ns,
            } => writeln!(
                f,
                "invariant {name:?} failed {} at {at_ns} ns: {message}",
                if *at_end {
                    "at the end"
                } else {
                    "at quiescence"
                }
            ),
        }
    }
}

/// What the loop is taken to wait for on a registration when nobody said
/// ([`Sim::set_wants`]): its interest (for a disarmed ONESHOT, the interest it had when armed),
/// where `OUT` counts only if the registration asks for `OUT` without `IN` (an edge-triggered
/// `IN | OUT` registration, the norm in mio and tokio, is writable nearly always and waits for
/// `OUT` only after a short write), and nothing of the read side (`IN`, `RDHUP`, `HUP`, `ERR`)
/// once a read on the file has returned end-of-file or a reset: the loop has finished reading.
///
/// ```
/// use netpoll::sys::{Events, EPOLL_CTL_ADD, O_NONBLOCK};
/// use netpoll::{EpollEvent, Poller};
/// let sim = netpoll_sim::Sim::new(1);
/// let ep = sim.epoll_create1(0).unwrap();
/// let [a, _b] = sim.socketpair(O_NONBLOCK).unwrap();
/// let ev = EpollEvent::new(Events::IN | Events::OUT | Events::ET, 0);
/// sim.epoll_ctl(ep, EPOLL_CTL_ADD, a, Some(ev)).unwrap();
/// let mut evs = [EpollEvent::EMPTY; 4];
/// assert_eq!(sim.epoll_wait(ep, &mut evs, 0).unwrap(), 1); // the OUT edge, taken
/// // Writable with no event queued: not a lost wakeup for an IN | OUT registration.
/// assert!(sim.check_lost_wakeups(ep).is_ok());
/// ```
pub fn default_wants(s: &Stranded) -> Events {
    let mut w = s.interest.readiness();
    if w.contains(Events::IN) {
        w = w.without(Events::OUT);
    }
    if s.eof_read {
        w = w.without(Events::IN | Events::RDHUP | Events::HUP | Events::ERR);
    }
    w
}

type Wants = Rc<dyn Fn(&Stranded) -> Events>;
type Check = Box<dyn FnMut(&Sim) -> Result<(), String>>;

/// The user's side of the oracles, kept outside the kernel so that its closures may call the
/// `Sim` back.
#[derive(Default)]
pub(crate) struct Hooks {
    wants: Option<Wants>,
    invariants: Vec<(String, Check)>,
    expected: BTreeSet<Fd>,
}

impl Hooks {
    pub(crate) fn has_invariants(&self) -> bool {
        !self.invariants.is_empty()
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("wants", &self.wants.is_some())
            .field(
                "invariants",
                &self.invariants.iter().map(|i| &i.0).collect::<Vec<_>>(),
            )
            .field("expected", &self.expected)
            .finish()
    }
}

impl Sim {
    /// The first violation recorded so far (the kernel keeps only the first).
    pub fn violation(&self) -> Option<Violation> {
        self.k.borrow().violation.clone()
    }

    /// What the loop waits for on a registration, when [`default_wants`] is wrong for it (a
    /// runtime that caches readiness, a connection the loop is not reading for now). Called at
    /// each scan for each registration that is ready with nothing queued; `Events::NONE` means
    /// "not waited for". The closure may call the `Sim` back.
    ///
    /// ```
    /// use netpoll::sys::Events;
    /// let sim = netpoll_sim::Sim::new(1);
    /// // This loop only ever waits on registrations whose data is below 100.
    /// sim.set_wants(|s| if s.data < 100 { netpoll_sim::default_wants(s) } else { Events::NONE });
    /// ```
    pub fn set_wants(&self, f: impl Fn(&Stranded) -> Events + 'static) {
        self.hooks.borrow_mut().wants = Some(Rc::new(f));
    }

    /// A user invariant, run at each quiescence and by [`finish`](Sim::finish); an `Err` is a
    /// [`Violation::Invariant`] under `name`.
    ///
    /// ```
    /// let sim = netpoll_sim::Sim::new(1);
    /// sim.add_invariant("no more than 2 files", |s| {
    ///     if s.open_files() <= 2 { Ok(()) } else { Err(format!("{} open", s.open_files())) }
    /// });
    /// assert!(sim.finish().is_ok());
    /// ```
    pub fn add_invariant(&self, name: &str, f: impl FnMut(&Sim) -> Result<(), String> + 'static) {
        self.hooks
            .borrow_mut()
            .invariants
            .push((name.to_string(), Box::new(f)));
    }

    /// Declares a descriptor that may legitimately stay open at the end: the leak oracle skips
    /// it (a listener, the loop's epoll fd).
    pub fn expect_open(&self, fd: Fd) {
        self.hooks.borrow_mut().expected.insert(fd);
    }

    /// The end of the run: the invariants at the end, then the leak check (descriptors open
    /// that were not declared with [`expect_open`](Sim::expect_open)). Returns the first
    /// violation of the whole run.
    ///
    /// # Errors
    /// The first [`Violation`] recorded.
    ///
    /// ```
    /// use netpoll::Poller;
    /// let sim = netpoll_sim::Sim::new(1);
    /// let ep = sim.epoll_create1(0).unwrap();
    /// let [a, b] = sim.pipe2(0).unwrap();
    /// sim.expect_open(ep);
    /// sim.close(a).unwrap();
    /// let v = sim.finish().unwrap_err(); // b is still open
    /// assert_eq!(v.oracle(), "leak");
    /// assert!(v.to_string().contains(&format!("{b} (pipe)")));
    /// ```
    pub fn finish(&self) -> Result<(), Violation> {
        if self.k.borrow().violation.is_none() {
            self.run_invariants(true);
        }
        let leaks = {
            let k = self.k.borrow();
            (k.violation.is_none() && k.cfg.oracles.leaks).then(|| k.open_fd_kinds())
        };
        if let Some(open) = leaks {
            let fds: Vec<(Fd, String)> = {
                let hooks = self.hooks.borrow();
                open.into_iter()
                    .filter(|(fd, _)| !hooks.expected.contains(fd))
                    .map(|(fd, kind)| (fd, kind.to_string()))
                    .collect()
            };
            if !fds.is_empty() {
                self.k.borrow_mut().note(Violation::Leak { fds });
            }
        }
        match self.violation() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// The lost-wakeup scan of `epfd`, now, whatever is in flight: `Err` (and the violation
    /// recorded, if it is the run's first) if a registration is ready for what the loop wants
    /// ([`set_wants`](Sim::set_wants)) with nothing queued to report it. For a harness that
    /// knows better than the kernel when its loop is about to block; the kernel runs the same
    /// scan at each quiescence.
    ///
    /// # Errors
    /// The [`Violation::LostWakeup`] found; or, for a bad `epfd`, a `Hang`-free
    /// [`Violation::Invariant`] named `check_lost_wakeups` saying so.
    pub fn check_lost_wakeups(&self, epfd: Fd) -> Result<(), Violation> {
        let stranded = self.k.borrow_mut().stranded(epfd);
        let stranded = match stranded {
            Ok(s) => s,
            Err(e) => {
                return Err(Violation::Invariant {
                    name: "check_lost_wakeups".into(),
                    message: format!("fd {epfd} is not an epoll instance: {e}"),
                    at_end: false,
                    at_ns: self.now_ns(),
                })
            }
        };
        if stranded.is_empty() {
            return Ok(());
        }
        let wants = self.hooks.borrow().wants.clone();
        for s in stranded {
            let wanted = match &wants {
                Some(w) => w(&s),
                None => default_wants(&s),
            };
            if (s.ready & wanted).is_empty() {
                continue;
            }
            let v = Violation::LostWakeup {
                epfd,
                fd: s.fd,
                data: s.data,
                ready: s.ready,
                wanted,
                interest: s.interest,
                disarmed: s.disarmed,
                at_ns: self.now_ns(),
                history: self.history(s.fd),
            };
            self.k.borrow_mut().note(v.clone());
            return Err(v);
        }
        Ok(())
    }

    /// Quiescence at a blocking `epoll_wait` on `epfd`: the lost-wakeup scan (unless amortised
    /// away; never when `forced`) and the invariants. `Ok(scanned)`; `Err`: the run is stopped.
    pub(crate) fn quiescence(&self, epfd: Fd, forced: bool) -> io::Result<bool> {
        let scan = {
            let mut k = self.k.borrow_mut();
            k.cfg.oracles.lost_wakeup && k.scan_due(epfd, forced)
        };
        if scan && self.check_lost_wakeups(epfd).is_err() {
            return Err(self.k.borrow().stop_error());
        }
        if !self.run_invariants(false) {
            return Err(self.k.borrow().stop_error());
        }
        Ok(scan)
    }

    /// Quiescence reached inside a wait, after deliveries the loop has not seen. A harness that
    /// did not say what its loop waits for ([`Sim::set_wants`]) may be one that judges lost
    /// wakeups itself before each wait: before a timed sleep the kernel leaves it the verdict
    /// (it gets control back at the timeout); before a sleep for ever it scans, since the loop
    /// would otherwise hang.
    pub(crate) fn quiescence_in_wait(&self, epfd: Fd, forever: bool) -> io::Result<bool> {
        if !forever && self.hooks.borrow().wants.is_none() {
            if !self.run_invariants(false) {
                return Err(self.k.borrow().stop_error());
            }
            return Ok(false);
        }
        self.quiescence(epfd, true)
    }

    /// Runs every invariant; `false` if one failed (and was recorded).
    fn run_invariants(&self, at_end: bool) -> bool {
        let mut checks = std::mem::take(&mut self.hooks.borrow_mut().invariants);
        if checks.is_empty() {
            return true;
        }
        let mut failed = None;
        for (name, check) in &mut checks {
            if let Err(message) = check(self) {
                failed = Some(Violation::Invariant {
                    name: name.clone(),
                    message,
                    at_end,
                    at_ns: self.now_ns(),
                });
                break;
            }
        }
        // Invariants added by an invariant go after the others.
        let mut hooks = self.hooks.borrow_mut();
        checks.append(&mut hooks.invariants);
        hooks.invariants = checks;
        drop(hooks);
        match failed {
            Some(v) => {
                self.k.borrow_mut().note(v);
                false
            }
            None => true,
        }
    }
}

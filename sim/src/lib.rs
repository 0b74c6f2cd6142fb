//! # netpoll-sim: a seeded, simulated Linux kernel
//!
//! [`Sim`] implements [`netpoll::Poller`] the way Linux does, in one thread, with a virtual
//! clock: the same seed gives the same run, event for event, on every machine. It exists so that
//! event loops can be tested for lost wakeups under schedules the real kernel produces once a
//! month, and replayed from a seed when they fail.
//!
//! ## Map
//!
//! | module | what it models |
//! |---|---|
//! | `kernel/mod.rs` | the descriptor table, open files and their wait queues, the clock and event queue (start here) |
//! | `kernel/epoll.rs` | epoll instances, items, the ready list, LT/ET/ONESHOT/EXCLUSIVE, nesting |
//! | `kernel/unix.rs` | AF_UNIX stream socketpairs |
//! | `kernel/pipe.rs` | pipes |
//! | `kernel/eventfd.rs` | eventfd |
//! | `kernel/tcp/mod.rs` | TCP sockets: the socket calls and their states |
//! | `kernel/tcp/net.rs` | the simulated loopback network: connections, packets in flight, delivery |
//! | `kernel/tcp/ports.rs` | the bind table and ephemeral ports |
//! | `kernel/soon.rs` | not a model: the data words of events expected soon, for a loop's cache hints ([`Poller::upcoming`]) |
//! | [`oracle`] | what the kernel checks on its own: lost wakeups at quiescence, hangs, livelocks, leaks, user invariants ([`Violation`]) |
//! | [`faults`] | the fault plan: rare-but-legal behaviours, the cost model, injected errnos |
//! | [`trace`] | the call history, full traces, fingerprints, and their readable form |
//! | [`config`] | buffer sizes, latency, limits |
//! | [`rng`] | one seeded random stream per subsystem |
//!
//! ## What is faithful, and how we know
//!
//! Every behaviour modelled here is exercised by the two-arm conformance suite in the
//! repository's `tests/`, which runs each case on this kernel and on real Linux epoll and
//! compares every return value, errno, event mask and event order. Where the two disagree, the
//! simulation is wrong.
//!
//! ## Time
//!
//! Virtual time starts at 0 and moves only inside blocking calls: `epoll_wait` with a timeout
//! jumps to the earliest of its deadline and the next packet delivery; a blocking `read`,
//! `write`, `accept4` or `connect` jumps to the next delivery. Nothing sleeps for real. A blocking
//! call that could only end by another thread's action fails with [`std::io::ErrorKind::Deadlock`]
//! instead of hanging.
//!
//! ## Not modelled
//!
//! Signals (no `EINTR` unless injected), other threads and processes, `exec` (so `O_CLOEXEC`
//! has no effect), regular files (every fd here can be polled, so `EPERM` from `epoll_ctl`
//! cannot arise), IPv6, UDP, packet loss and retransmission of data, and the memory-pressure
//! paths of the network stack. Each kernel module lists its own omissions.

mod bytes;
pub mod config;
pub mod faults;
mod fdset;
mod kernel;
pub mod netpoller;
pub mod oracle;
pub mod rng;
mod slab;
pub mod trace;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;

use netpoll::sys::{err, errno::*, Events, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK};
use netpoll::{EpollEvent, Fd, PollFd, Poller};

pub use config::{
    ConfigError, SimConfig, DEFAULT_FREE_BUFFER_PAGES, MAX_DELAY_NS, MAX_EXPECTED_CONNS,
    MAX_TCP_MEM_PAGES, MAX_TCP_WINDOW, MIN_EXPECTED_CONNS,
};
pub use faults::{CostModel, EdgePolicy, FaultCounts, FaultPlan, Latency, Vary};
pub use kernel::epoll::Stranded;
pub use kernel::tcp::TcpMemory;
pub use kernel::Stats;
use kernel::{Kernel, Kind};
pub use oracle::{default_wants, Oracles, Violation};
use trace::{Op, Record, Tracer};

/// The simulated kernel. Single-threaded (`!Sync`); cheap to create.
///
/// # Examples
///
/// A socketpair watched edge-triggered, on virtual time: the same seed gives the same run, and
/// a wait for nothing returns at once with the clock moved on.
///
/// ```
/// use netpoll::sys::{EPOLL_CTL_ADD, SOCK_NONBLOCK};
/// use netpoll::{EpollEvent, Events, Poller};
/// use netpoll_sim::Sim;
///
/// let sim = Sim::new(42);
/// let [a, b] = sim.socketpair(SOCK_NONBLOCK)?;
/// let ep = sim.epoll_create1(0)?;
/// sim.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN | Events::ET, 7)))?;
/// let mut evs = [EpollEvent::EMPTY; 4];
/// assert_eq!(sim.epoll_wait(ep, &mut evs, 0)?, 0);
/// sim.write(a, b"hi")?;
/// assert_eq!(sim.epoll_wait(ep, &mut evs, 0)?, 1);
/// assert_eq!((evs[0].data, evs[0].events), (7, Events::IN));
/// // Edge-triggered: the loop drains to EAGAIN before it sleeps (sleeping on unread bytes is
/// // a lost wakeup, which the kernel's oracle would stop the run for).
/// let mut buf = [0u8; 16];
/// assert_eq!(sim.read(b, &mut buf)?, 2);
/// assert_eq!(sim.read(b, &mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
/// // No new edge, no event: ten virtual seconds pass in no real time.
/// assert_eq!(sim.epoll_wait(ep, &mut evs, 10_000)?, 0);
/// assert_eq!(sim.now_ns(), 10_000_000_000);
/// assert!(sim.readiness(b)?.contains(Events::OUT));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Sim {
    k: RefCell<Kernel>,
    trace: RefCell<Tracer>,
    hooks: RefCell<oracle::Hooks>,
}

/// A simulated thread blocked (or about to block) in `epoll_wait`: see
/// [`Sim::epoll_wait_begin`]. It holds a reference to the epoll instance until
/// [`Sim::epoll_wait_end`].
#[derive(Debug)]
pub struct EpollWaiter {
    ep: u32,
    epfd: Fd,
    waiter: u64,
}

/// An open file held by a blocked simulated thread: see [`Sim::hold_file`].
#[derive(Debug)]
pub struct FileHold {
    file: u32,
}

impl EpollWaiter {
    /// The waiter id given to [`Sim::epoll_wait_begin`].
    pub fn waiter(&self) -> u64 {
        self.waiter
    }
}

impl Sim {
    /// A kernel with the default (Linux-like) configuration.
    pub fn new(seed: u64) -> Sim {
        Sim::with_config(seed, SimConfig::default())
    }

    /// A kernel with `cfg`.
    ///
    /// # Panics
    /// If `cfg` is not valid ([`SimConfig::validate`]); the message names the field, its value
    /// and the rule. [`Sim::try_with_config`] returns the error instead.
    pub fn with_config(seed: u64, cfg: SimConfig) -> Sim {
        Sim::try_with_config(seed, cfg)
            .unwrap_or_else(|e| panic!("netpoll-sim: invalid SimConfig: {e}"))
    }

    /// A kernel with `cfg`, or what is wrong with `cfg`.
    ///
    /// # Errors
    /// The first field of `cfg` that breaks a rule of [`SimConfig::validate`].
    ///
    /// # Examples
    /// ```
    /// use netpoll_sim::{FaultPlan, Latency, Sim, SimConfig};
    ///
    /// let cfg = SimConfig {
    ///     faults: FaultPlan {
    ///         latency: Some(Latency::Exponential { base: u64::MAX, mean_extra: 10 }),
    ///         ..FaultPlan::none()
    ///     },
    ///     ..SimConfig::default()
    /// };
    /// let e = Sim::try_with_config(1, cfg).unwrap_err();
    /// assert_eq!(e.field(), "faults.latency.base");
    /// ```
    pub fn try_with_config(seed: u64, cfg: SimConfig) -> Result<Sim, ConfigError> {
        cfg.validate()?;
        Ok(Sim {
            k: RefCell::new(Kernel::new(seed, cfg)),
            trace: RefCell::new(Tracer::default()),
            hooks: RefCell::new(oracle::Hooks::default()),
        })
    }

    /// The seed this kernel was made with.
    pub fn seed(&self) -> u64 {
        self.k.borrow().seed
    }

    /// Counters of what the kernel did so far.
    pub fn stats(&self) -> Stats {
        self.k.borrow().stats
    }

    /// The machine-wide TCP memory account: bytes queued in TCP connections, the most ever
    /// queued, whether it is under memory pressure, and what the `tcp_mem` limits did
    /// ([`SimConfig::tcp_mem`]).
    pub fn tcp_memory(&self) -> TcpMemory {
        self.k.borrow().tcp_memory()
    }

    /// Writes `net.ipv4.tcp_mem` (in pages) while the kernel runs, as root can on Linux: the
    /// new thresholds judge the next charge.
    ///
    /// # Errors
    /// `InvalidInput` (naming the rule) if the thresholds decrease or exceed
    /// [`MAX_TCP_MEM_PAGES`].
    ///
    /// # Examples
    /// ```
    /// use netpoll_sim::Sim;
    ///
    /// let sim = Sim::new(1);
    /// sim.set_tcp_mem([1, 1, 1])?;
    /// assert!(sim.set_tcp_mem([3, 2, 1]).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_tcp_mem(&self, tcp_mem: [u64; 3]) -> io::Result<()> {
        let mut k = self.k.borrow_mut();
        let cfg = SimConfig {
            tcp_mem,
            ..k.cfg.clone()
        };
        cfg.validate()?;
        k.cfg.tcp_mem = tcp_mem;
        Ok(())
    }

    /// Virtual nanoseconds since the kernel was made.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.k.borrow().now_ns
    }

    /// What `fd`'s file would report to `poll` right now (all bits, not masked by an interest).
    /// For oracles: "the loop sleeps while this fd is ready".
    ///
    /// # Errors
    /// `EBADF`.
    pub fn readiness(&self, fd: Fd) -> io::Result<Events> {
        let mut k = self.k.borrow_mut();
        let f = k.file_of(fd)?;
        Ok(k.poll_file(f, 0))
    }

    /// Lets `d` of virtual time pass, delivering whatever falls due on the way: what a
    /// `nanosleep` costs a program on this kernel. Recorded in the trace as `sleep`.
    pub fn sleep(&self, d: Duration) {
        let mut k = self.k.borrow_mut();
        let until = k
            .now_ns
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        while k.now_ns < until {
            k.advance(Some(until));
        }
        let at_ns = k.now_ns;
        drop(k);
        self.trace.borrow_mut().record(Record {
            at_ns,
            op: Op::Sleep,
            fd: -1,
            arg: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            ret: Ok(0),
        });
    }

    /// Delivers every queued event that is due at the current instant, without letting time
    /// pass. With a zero latency ([`SimConfig::linux_loopback`]) this is what Linux's loopback
    /// does before the sending call returns: the peer can read the data at once.
    pub fn settle(&self) {
        self.k.borrow_mut().run_due();
    }

    /// `fcntl(fd, F_GETFL)`: the open file's access mode (`O_RDONLY` for a pipe's read end,
    /// `O_WRONLY` for its write end, `O_RDWR` otherwise) and `O_NONBLOCK` if set.
    ///
    /// # Errors
    /// `EBADF`.
    pub fn status_flags(&self, fd: Fd) -> io::Result<i32> {
        self.k.borrow().status_flags(fd)
    }

    /// Events still queued to happen (packets in flight, retransmission timers).
    #[inline]
    pub fn pending(&self) -> usize {
        self.k.borrow().pending()
    }

    /// When the next queued event happens, in virtual nanoseconds.
    pub fn next_event_ns(&self) -> Option<u64> {
        self.k.borrow().next_event_ns()
    }

    /// How many faults of each kind fired so far.
    #[inline]
    pub fn fault_counts(&self) -> FaultCounts {
        self.k.borrow().faults
    }

    /// Lets virtual time pass without a blocking call: the clock moves to the next queued event
    /// (no further than `limit_ns`, in virtual nanoseconds since the kernel was made) and runs
    /// everything due then. Returns `false` when nothing was queued before the limit; the clock
    /// then moves to the limit, if there is one, and stays put if there is none.
    ///
    /// For schedulers that run several simulated threads on one kernel (`netpoll-threads`): they
    /// let time pass only when every thread is blocked, instead of inside one thread's call.
    pub fn advance(&self, limit_ns: Option<u64>) -> bool {
        self.k.borrow_mut().advance(limit_ns)
    }

    /// A simulated thread begins `epoll_wait(epfd, .., maxevents, ..)` as `waiter` (an id of
    /// the caller's choosing, unique among the threads of one run), for schedulers that run
    /// several threads on one kernel (`netpoll-threads`). The checks are `epoll_wait`'s
    /// (`EBADF`, `EINVAL`); the returned [`EpollWaiter`] holds a reference to the instance, as
    /// Linux's `epoll_wait` holds the file, so another thread's `close(epfd)` neither wakes the
    /// waiter nor frees the instance under it.
    ///
    /// The protocol: [`epoll_wait_try`](Sim::epoll_wait_try); if it reports nothing and the
    /// caller is to block, [`epoll_wait_sleep`](Sim::epoll_wait_sleep) puts the waiter on the
    /// instance's wait queue and the caller blocks until [`take_woken`](Sim::take_woken) names
    /// it or its deadline passes, then tries again; [`epoll_wait_end`](Sim::epoll_wait_end) when
    /// it returns. Like Linux's `ep_poll`, a waiter goes to the head of the queue and one
    /// wakeup of the instance wakes one waiter.
    ///
    /// # Errors
    /// `EBADF`, `EINVAL`.
    ///
    /// # Examples
    ///
    /// ```
    /// use netpoll::{sys::*, EpollEvent, Events, Poller};
    /// use netpoll_sim::Sim;
    ///
    /// let sim = Sim::new(1);
    /// let [a, b] = sim.socketpair(SOCK_NONBLOCK)?;
    /// let ep = sim.epoll_create1(0)?;
    /// sim.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN | Events::ET, 7)))?;
    /// let mut evs = [EpollEvent::EMPTY; 4];
    /// let (w1, w2) = (sim.epoll_wait_begin(ep, 4, 1)?, sim.epoll_wait_begin(ep, 4, 2)?);
    /// assert_eq!(sim.epoll_wait_try(&w1, &mut evs)?, 0);
    /// sim.epoll_wait_sleep(&w1);
    /// assert_eq!(sim.epoll_wait_try(&w2, &mut evs)?, 0);
    /// sim.epoll_wait_sleep(&w2);
    /// sim.write(a, b"x")?;
    /// assert_eq!(sim.take_woken(), [2]); // one edge wakes one waiter: the last to block
    /// assert_eq!(sim.epoll_wait_try(&w2, &mut evs)?, 1);
    /// sim.epoll_wait_end(w2);
    /// sim.epoll_wait_end(w1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn epoll_wait_begin(
        &self,
        epfd: Fd,
        maxevents: usize,
        waiter: u64,
    ) -> io::Result<EpollWaiter> {
        let mut k = self.k.borrow_mut();
        let (ep, _) = k.epoll_wait_start(epfd, maxevents, Some(0))?;
        k.files[ep].refs += 1;
        Ok(EpollWaiter { ep, epfd, waiter })
    }

    /// One try of a waiter's `epoll_wait`: what `epoll_wait` with timeout 0 reports on the
    /// waiter's instance (even if `epfd` was closed meanwhile). Recorded in the trace as an
    /// `epoll_wait` with timeout 0. Never blocks.
    pub fn epoll_wait_try(&self, w: &EpollWaiter, out: &mut [EpollEvent]) -> io::Result<usize> {
        self.call(
            Op::EpollWait,
            w.epfd,
            0,
            |k| {
                if out.is_empty() {
                    return Err(err(EINVAL));
                }
                let now = k.now_ns;
                match k.epoll_wait_turn(w.ep, w.epfd, out, Some(now), false, false) {
                    kernel::epoll::WaitStep::Done(r) => r,
                    kernel::epoll::WaitStep::Quiet => unreachable!("a try never stops at quiet"),
                }
            },
            count,
        )
    }

    /// The waiter blocks: onto the head of its instance's wait queue.
    pub fn epoll_wait_sleep(&self, w: &EpollWaiter) {
        self.k.borrow_mut().ep_wait_enqueue(w.ep, w.waiter);
    }

    /// The waiter returns from `epoll_wait`: off the wait queue (if a timeout, not a wakeup,
    /// ended its sleep), and its reference to the instance is dropped.
    pub fn epoll_wait_end(&self, w: EpollWaiter) {
        let mut k = self.k.borrow_mut();
        k.ep_wait_dequeue(w.ep, w.waiter);
        k.put_file(w.ep);
    }

    /// Holds `fd`'s open file for a simulated thread blocked in a call on it, as Linux's
    /// `fdget` does for the whole system call: another thread's `close(fd)` then leaves the
    /// file open under the blocked call (see [`Sim::on_held`]). Give it back with
    /// [`Sim::release_file`].
    ///
    /// # Errors
    /// `EBADF`.
    pub fn hold_file(&self, fd: Fd) -> io::Result<FileHold> {
        let mut k = self.k.borrow_mut();
        let file = k.file_of(fd)?;
        k.files[file].refs += 1;
        Ok(FileHold { file })
    }

    /// Gives back a held file: the last reference releases it, as a `close` would.
    pub fn release_file(&self, h: FileHold) {
        self.k.borrow_mut().put_file(h.file);
    }

    /// Runs `f` with a descriptor for the held file: `fd` if it still refers to it, else (it was
    /// closed, or `dup2`'d over, by another thread) a temporary descriptor installed for the
    /// length of `f` and removed after, leaving the descriptor table as it was. If no descriptor
    /// can be installed (the table is full), `f` gets `fd`.
    ///
    /// # Examples
    ///
    /// ```
    /// use netpoll::{sys::*, Poller};
    /// use netpoll_sim::Sim;
    ///
    /// let sim = Sim::new(1);
    /// let [a, b] = sim.socketpair(SOCK_NONBLOCK)?;
    /// let held = sim.hold_file(b)?;
    /// sim.close(b)?; // another thread's close: the file stays open
    /// sim.write(a, b"hi")?;
    /// let mut buf = [0u8; 4];
    /// assert_eq!(sim.on_held(b, &held, |fd| sim.read(fd, &mut buf))?, 2);
    /// sim.release_file(held);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn on_held<R>(&self, fd: Fd, h: &FileHold, f: impl FnOnce(Fd) -> R) -> R {
        let temp = {
            let mut k = self.k.borrow_mut();
            if k.file_of(fd).ok() == Some(h.file) {
                None
            } else {
                k.install(h.file).ok()
            }
        };
        match temp {
            None => f(fd),
            Some(t) => {
                let r = f(t);
                let _ = self.k.borrow_mut().close(t);
                r
            }
        }
    }

    /// The waiters that wakeups took off epoll wait queues since the last call, in wake order.
    pub fn take_woken(&self) -> Vec<u64> {
        self.k.borrow_mut().take_woken()
    }

    /// Whether `fd`'s open file is in non-blocking mode (`O_NONBLOCK`, shared by `dup`s).
    ///
    /// # Errors
    /// `EBADF`.
    pub fn is_nonblocking(&self, fd: Fd) -> io::Result<bool> {
        let k = self.k.borrow();
        let f = k.file_of(fd)?;
        Ok(k.files[f].nonblock)
    }

    /// Open files (not descriptors: `dup`s share one).
    pub fn open_files(&self) -> usize {
        self.k.borrow().files.len()
    }

    /// The registrations of epoll instance `epfd` that are ready for their interest while
    /// nothing is queued to report them: the lost-wakeup condition, meaningful when the event
    /// loop is about to sleep. The raw listing, for a harness that judges lost wakeups itself:
    /// calling it hands the verdict to the caller, and the kernel's own scan
    /// ([`crate::oracle`]) stands aside for the rest of the run, so that two judges with
    /// different views of what the loop waits for cannot disagree. Most harnesses want
    /// [`Sim::set_wants`] and the kernel's scan instead.
    ///
    /// # Errors
    /// `EBADF`, or `EINVAL` if `epfd` is not an epoll instance.
    pub fn stranded(&self, epfd: Fd) -> io::Result<Vec<Stranded>> {
        let mut k = self.k.borrow_mut();
        k.own_judge = true;
        k.stranded(epfd)
    }

    /// Starts (or stops, discarding it) recording every call in full.
    pub fn set_trace(&self, on: bool) {
        self.trace.borrow_mut().set_full(on);
    }

    /// The full trace recorded since [`set_trace`](Sim::set_trace), emptied.
    pub fn take_trace(&self) -> Vec<Record> {
        self.trace.borrow_mut().take_full()
    }

    /// Streams the full trace: `sink` gets every call's record as the call returns, in order,
    /// so that a trace of millions of calls need not be held in memory (`netpoll-sim trace`
    /// writes it to a file as it comes). `None` stops it. Independent of
    /// [`set_trace`](Sim::set_trace); the sink must not call back into this `Sim`. It is `Send`
    /// so that a `Sim` stays `Send`.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use netpoll::{Poller, sys::*};
    /// use netpoll_sim::{trace::Op, Sim};
    ///
    /// let p = Sim::new(1);
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let s = seen.clone();
    /// p.set_trace_sink(Some(Box::new(move |r| s.lock().unwrap().push(r.op))));
    /// let [a, _b] = p.socketpair(SOCK_NONBLOCK).unwrap();
    /// p.write(a, b"hi").unwrap();
    /// p.set_trace_sink(None);
    /// assert_eq!(*seen.lock().unwrap(), [Op::Socketpair, Op::Write]);
    /// ```
    pub fn set_trace_sink(&self, sink: Option<trace::TraceSink>) {
        self.trace.borrow_mut().set_sink(sink);
    }

    /// The most recent calls (up to [`trace::HISTORY_LEN`]) that concern `fd` (as the fd or,
    /// for `epoll_ctl`, as its target), oldest first.
    pub fn history(&self, fd: Fd) -> Vec<Record> {
        self.trace
            .borrow()
            .recent()
            .filter(|r| {
                r.fd == fd || (r.op == Op::EpollCtl && r.arg & 0xffff_ffff == i64::from(fd))
            })
            .collect()
    }

    /// (calls made, a hash of every call and result so far): equal for two runs of one seed.
    pub fn fingerprint(&self) -> (u64, u64) {
        self.trace.borrow().fingerprint()
    }

    /// Runs `f` on the kernel and records the call: [`Sim::call_with`] for calls that need
    /// only the kernel, with one borrow of it for the whole call instead of three.
    #[inline]
    fn call<T>(
        &self,
        op: Op,
        fd: Fd,
        arg: i64,
        f: impl FnOnce(&mut Kernel) -> io::Result<T>,
        val: impl FnOnce(&T) -> i64,
    ) -> io::Result<T> {
        let mut k = self.k.borrow_mut();
        let before = call_enter(&mut k, op);
        let r = if before.1 {
            Err(k.stop_error())
        } else {
            f(&mut k)
        };
        let ret = call_ret(&r, val);
        let at_ns = call_leave(&mut k, op, before, ret);
        drop(k);
        self.record_call(at_ns, op, fd, arg, ret);
        r
    }

    /// Runs `f` (which borrows the kernel as it needs, so that the oracles it runs may call the
    /// `Sim` back), counts the call for the livelock budget, and records it.
    fn call_with<T>(
        &self,
        op: Op,
        fd: Fd,
        arg: i64,
        f: impl FnOnce(&Sim) -> io::Result<T>,
        val: impl FnOnce(&T) -> i64,
    ) -> io::Result<T> {
        let before = call_enter(&mut self.k.borrow_mut(), op);
        let r = if before.1 {
            Err(self.k.borrow().stop_error())
        } else {
            f(self)
        };
        let ret = call_ret(&r, val);
        let at_ns = call_leave(&mut self.k.borrow_mut(), op, before, ret);
        self.record_call(at_ns, op, fd, arg, ret);
        r
    }

    /// Records one finished call in the trace (the history ring, and the full trace or sink
    /// when one is on).
    #[inline(always)]
    fn record_call(&self, at_ns: u64, op: Op, fd: Fd, arg: i64, ret: Result<i64, i32>) {
        self.trace.borrow_mut().record(Record {
            at_ns,
            op,
            fd,
            arg,
            ret,
        });
    }

    /// `epoll_wait`, with the oracles' turn at each quiescence.
    fn epoll_wait_oracled(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ns: Option<u64>,
    ) -> io::Result<usize> {
        let (ep, deadline, stop) = {
            let mut k = self.k.borrow_mut();
            let (ep, deadline) = k.epoll_wait_start(epfd, events.len(), timeout_ns)?;
            if timeout_ns != Some(0) && k.violation.is_some() {
                return Err(k.stop_error());
            }
            let stop = timeout_ns != Some(0)
                && (k.cfg.oracles.lost_wakeup || self.hooks.borrow().has_invariants());
            (ep, deadline, stop)
        };
        // On entry: the loop decided to block while nothing is in flight.
        let mut scanned = false;
        if stop && self.k.borrow().pending() == 0 {
            scanned = self.quiescence(epfd, timeout_ns.is_none())?;
        }
        let mut resume = false;
        let mut first = true;
        loop {
            let step = self
                .k
                .borrow_mut()
                .epoll_wait_turn(ep, epfd, events, deadline, stop, resume);
            match step {
                kernel::epoll::WaitStep::Done(r) => return r,
                kernel::epoll::WaitStep::Quiet => {
                    // Nothing changed since the scan on entry if this is the first stretch.
                    if !(first && scanned) {
                        self.quiescence_in_wait(epfd, deadline.is_none())?;
                    }
                    resume = true;
                }
            }
            first = false;
        }
    }
}

/// A call's entry: the cost model's charge, the call counted; what the livelock budget
/// compares on the way out (see [`progress_mark`]) and whether a livelock stops the call.
#[inline(always)]
fn call_enter(k: &mut Kernel, op: Op) -> (u64, bool) {
    if k.costly {
        k.charge_cost(op == Op::EpollWait);
    }
    k.stats.syscalls += 1;
    (progress_mark(k), k.livelocked())
}

/// Deliveries and the clock in one number: both only ever grow, so their sum changes exactly
/// when either does (one comparison on the way out of every call, not two).
#[inline(always)]
fn progress_mark(k: &Kernel) -> u64 {
    k.stats.deliveries.wrapping_add(k.now_ns)
}

/// The result as the trace records it: the value, or the errno.
#[inline(always)]
fn call_ret<T>(r: &io::Result<T>, val: impl FnOnce(&T) -> i64) -> Result<i64, i32> {
    match r {
        Ok(v) => Ok(val(v)),
        Err(e) => Err(e.raw_os_error().unwrap_or(0)),
    }
}

/// A call's exit: the livelock budget's turn; returns the instant to record.
#[inline(always)]
fn call_leave(k: &mut Kernel, op: Op, before: (u64, bool), ret: Result<i64, i32>) -> u64 {
    if k.cfg.oracles.livelock_turns > 0 {
        let progress = progress_mark(k) != before.0
            || match (op, ret) {
                (Op::Read | Op::Recv | Op::Write, Ok(n)) => n > 0,
                (
                    Op::EpollCreate
                    | Op::Socketpair
                    | Op::Pipe
                    | Op::EventFd
                    | Op::Socket
                    | Op::Accept
                    | Op::Dup
                    | Op::Close
                    | Op::Shutdown
                    | Op::Connect,
                    Ok(_),
                ) => true,
                (Op::Connect, Err(e)) => e == EINPROGRESS,
                _ => false,
            };
        k.turn(progress);
    }
    k.now_ns
}

/// An `epoll_wait` timeout in milliseconds (negative: for ever) in nanoseconds.
fn ms_to_ns(timeout_ms: i32) -> Option<u64> {
    u64::try_from(timeout_ms).ok().map(|t| t * 1_000_000)
}

fn unit(_: &()) -> i64 {
    0
}

fn count(n: &usize) -> i64 {
    *n as i64
}

fn new_fd(fd: &Fd) -> i64 {
    i64::from(*fd)
}

fn pair(fds: &[Fd; 2]) -> i64 {
    (i64::from(fds[0]) << 32) | i64::from(fds[1])
}

fn is_eagain(r: &io::Result<usize>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(EAGAIN))
}

impl Kernel {
    #[inline]
    fn read_once(&mut self, f: u32, buf: &mut [u8]) -> io::Result<usize> {
        if !crate::rng::draws(self.cfg.faults.short_read) {
            return self.read_raw(f, buf);
        }
        let waiting = match &self.files[f].kind {
            Kind::Unix(u) => u.readable(),
            Kind::PipeRead(p) => self.pipes[*p].readable(),
            Kind::Tcp(_) => self.tcp_readable(f),
            _ => 0,
        };
        // The cut is drawn from what a whole read would return, so that it bites whatever the
        // caller's buffer size.
        let whole = buf.len().min(waiting);
        if whole > 1 {
            let len = self.fault_len(whole, self.cfg.faults.short_read);
            if len < whole {
                let r = self.read_raw(f, &mut buf[..len]);
                if matches!(r, Ok(n) if n == len) {
                    self.faults.short_reads += 1;
                    // On Linux a read returns less than the buffer only when the queue ran dry,
                    // and bytes queued later come with an `EPOLLIN` edge; tokio clears its read
                    // readiness after a short read and waits for that edge. The fault is the
                    // rest arriving just after the read: with Linux's edges, the edge follows
                    // it. Under `EmptyToNonEmpty` the rest lands in a buffer that is not empty,
                    // which wakes nobody: the data stays with no edge, as on those kernels.
                    if self.cfg.faults.edge == EdgePolicy::Linux {
                        self.wake(f, Events::IN | Events::RDNORM);
                    }
                }
                return r;
            }
        }
        self.read_raw(f, buf)
    }

    #[inline]
    fn read_raw(&mut self, f: u32, buf: &mut [u8]) -> io::Result<usize> {
        match self.files[f].kind {
            Kind::Unix(_) => self.unix_read(f, buf, false),
            Kind::PipeRead(p) => self.pipe_read(p, buf),
            Kind::PipeWrite(_) => Err(err(EBADF)),
            Kind::EventFd(_) => self.eventfd_read(f, buf),
            Kind::Tcp(_) => self.tcp_read(f, buf, false),
            Kind::Epoll(_) => Err(err(EINVAL)),
        }
    }

    /// `recv` with `MSG_PEEK`: the bytes stay queued. No fault applies (a peek consumes
    /// nothing, so a short one would only make the program peek again).
    /// `read` and `recv`: one read (or peek), sleeping on `fd` while it would block unless the
    /// file is non-blocking or `dontwait`; end of file or a reset marks the file as read to its
    /// end (the lost-wakeup oracle stops expecting input there).
    #[inline]
    fn read_until_ready(
        &mut self,
        f: u32,
        fd: Fd,
        buf: &mut [u8],
        peek: bool,
        dontwait: bool,
        call: &'static str,
    ) -> io::Result<usize> {
        loop {
            let r = if peek {
                self.peek(f, buf)
            } else {
                self.read_once(f, buf)
            };
            let end = match &r {
                Ok(0) => !buf.is_empty(),
                Ok(_) => false,
                Err(e) => e.raw_os_error() == Some(ECONNRESET),
            };
            if end {
                self.files[f].eof_read = true;
            }
            if !is_eagain(&r) || self.files[f].nonblock || dontwait {
                return r;
            }
            self.block(call, fd)?;
        }
    }

    fn peek(&mut self, f: u32, buf: &mut [u8]) -> io::Result<usize> {
        match self.files[f].kind {
            Kind::Unix(_) => self.unix_read(f, buf, true),
            Kind::Tcp(_) => self.tcp_read(f, buf, true),
            _ => Err(err(ENOTSOCK)),
        }
    }

    /// One pass of `poll` over `fds`: fills every `revents`, returns how many are non-empty.
    fn poll_scan(&mut self, fds: &mut [PollFd]) -> usize {
        let mut ready = 0;
        for p in fds.iter_mut() {
            p.revents = if p.fd < 0 {
                Events::NONE
            } else {
                match self.file_of(p.fd) {
                    // Linux: `mask & (demangle_poll(events) | EPOLLERR | EPOLLHUP)`.
                    Ok(f) => self.poll_file(f, 0) & (p.events | Events::ERR | Events::HUP),
                    Err(_) => Events::NVAL,
                }
            };
            if !p.revents.is_empty() {
                ready += 1;
            }
        }
        ready
    }

    #[inline]
    fn write_once(&mut self, f: u32, buf: &[u8]) -> io::Result<usize> {
        // No `short_write` fault: no draw below, whatever the file.
        if !crate::rng::draws(self.cfg.faults.short_write) {
            return self.write_raw(f, buf);
        }
        if matches!(
            self.files[f].kind,
            Kind::Unix(_) | Kind::PipeWrite(_) | Kind::Tcp(_)
        ) {
            let len = self.fault_len(buf.len(), self.cfg.faults.short_write);
            if len < buf.len() {
                let r = self.write_raw(f, &buf[..len]);
                if matches!(r, Ok(n) if n == len) {
                    self.faults.short_writes += 1;
                    // On Linux a write stops short only when the buffer is full, and the
                    // writer then gets an `EPOLLOUT` edge when room returns (`SOCK_NOSPACE`,
                    // `sk_write_space`); tokio clears its write readiness after a short write
                    // and waits for that edge. The fault is a buffer that filled and drained
                    // again at once: the edge follows the write.
                    self.wake(f, Events::OUT | Events::WRNORM);
                }
                return r;
            }
        }
        self.write_raw(f, buf)
    }

    #[inline]
    fn write_raw(&mut self, f: u32, buf: &[u8]) -> io::Result<usize> {
        match self.files[f].kind {
            Kind::Unix(_) => self.unix_write(f, buf),
            Kind::PipeWrite(p) => self.pipe_write(p, buf),
            Kind::PipeRead(_) => Err(err(EBADF)),
            Kind::EventFd(_) => self.eventfd_write(f, buf),
            Kind::Tcp(_) => self.tcp_write(f, buf),
            Kind::Epoll(_) => Err(err(EINVAL)),
        }
    }
}

impl Poller for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn epoll_create1(&self, flags: i32) -> io::Result<Fd> {
        self.call(
            Op::EpollCreate,
            -1,
            flags.into(),
            |k| k.epoll_create1(flags),
            new_fd,
        )
    }

    fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()> {
        let arg = (i64::from(op) << 32) | i64::from(fd as u32);
        self.call(
            Op::EpollCtl,
            epfd,
            arg,
            |k| k.epoll_ctl(epfd, op, fd, event),
            unit,
        )
    }

    fn epoll_wait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
    ) -> io::Result<usize> {
        let arg = timeout_ms.into();
        self.call_with(
            Op::EpollWait,
            epfd,
            arg,
            |s| s.epoll_wait_oracled(epfd, events, ms_to_ns(timeout_ms)),
            count,
        )
    }

    /// The mask is accepted and ignored: the simulated kernel delivers no signals.
    fn epoll_pwait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
        _sigmask: Option<u64>,
    ) -> io::Result<usize> {
        self.epoll_wait(epfd, events, timeout_ms)
    }

    /// The timeout is virtual time to the nanosecond; the mask is accepted and ignored. Traced
    /// as an `epoll_wait` whose timeout is rounded up to whole milliseconds.
    fn epoll_pwait2(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout: Option<netpoll::Timespec>,
        _sigmask: Option<u64>,
    ) -> io::Result<usize> {
        let timeout_ns = match timeout.map(|t| t.as_nanos()) {
            Some(None) => Some(Err(err(EINVAL))),
            Some(Some(ns)) => Some(Ok(ns)),
            None => None,
        };
        let arg = match timeout_ns {
            Some(Ok(ns)) => i64::try_from(ns.div_ceil(1_000_000)).unwrap_or(i64::MAX),
            _ => -1,
        };
        self.call_with(
            Op::EpollWait,
            epfd,
            arg,
            |s| match timeout_ns {
                Some(Err(e)) => Err(e),
                Some(Ok(ns)) => s.epoll_wait_oracled(epfd, events, Some(ns)),
                None => s.epoll_wait_oracled(epfd, events, None),
            },
            count,
        )
    }

    fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.call(
            Op::Socketpair,
            -1,
            flags.into(),
            |k| k.socketpair(flags),
            pair,
        )
    }

    fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.call(Op::Pipe, -1, flags.into(), |k| k.pipe2(flags), pair)
    }

    fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd> {
        self.call(
            Op::EventFd,
            -1,
            initval.into(),
            |k| k.eventfd(initval, flags),
            new_fd,
        )
    }

    fn tcp_socket(&self, flags: i32) -> io::Result<Fd> {
        self.call(
            Op::Socket,
            -1,
            flags.into(),
            |k| k.tcp_socket(flags),
            new_fd,
        )
    }

    fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        let arg = addr.port().into();
        self.call(Op::Bind, fd, arg, |k| k.bind(fd, addr), unit)
    }

    fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()> {
        self.call(
            Op::Listen,
            fd,
            backlog.into(),
            |k| k.listen(fd, backlog),
            unit,
        )
    }

    fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        let arg = addr.port().into();
        self.call(Op::Connect, fd, arg, |k| k.connect(fd, addr), unit)
    }

    fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> {
        self.call(
            Op::Accept,
            fd,
            flags.into(),
            |k| k.accept4(fd, flags),
            |r| r.0.into(),
        )
    }

    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.call(
            Op::LocalAddr,
            fd,
            0,
            |k| k.local_addr(fd),
            |a| a.port().into(),
        )
    }

    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.call(
            Op::PeerAddr,
            fd,
            0,
            |k| k.peer_addr(fd),
            |a| a.port().into(),
        )
    }

    fn take_socket_error(&self, fd: Fd) -> io::Result<i32> {
        let f = |k: &mut Kernel| {
            let f = k.file_of(fd)?;
            match &mut k.files[f].kind {
                Kind::Unix(u) => Ok(u.take_error()),
                Kind::Tcp(_) => Ok(k.tcp_take_error(f)),
                _ => Err(err(ENOTSOCK)),
            }
        };
        self.call(Op::TakeError, fd, 0, f, |e| (*e).into())
    }

    fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()> {
        let f = |k: &mut Kernel| {
            let f = k.file_of(fd)?;
            match &k.files[f].kind {
                Kind::Unix(_) => Ok(()),
                Kind::Tcp(_) => {
                    k.tcp_set_linger(f, linger_secs);
                    Ok(())
                }
                _ => Err(err(ENOTSOCK)),
            }
        };
        let arg = linger_secs.map_or(-1, i64::from);
        self.call(Op::SetLinger, fd, arg, f, unit)
    }

    fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len() as i64;
        let f = |k: &mut Kernel| {
            let f = k.file_of(fd)?;
            k.read_until_ready(f, fd, buf, false, false, "read")
        };
        self.call(Op::Read, fd, len, f, count)
    }

    fn recv(&self, fd: Fd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
        let arg = (i64::from(flags) << 32) | buf.len() as i64;
        let f = |k: &mut Kernel| {
            let f = k.file_of(fd)?;
            if !matches!(k.files[f].kind, Kind::Unix(_) | Kind::Tcp(_)) {
                return Err(err(ENOTSOCK));
            }
            if flags & !(MSG_PEEK | MSG_DONTWAIT | MSG_NOSIGNAL) != 0 {
                return Err(err(EOPNOTSUPP));
            }
            let (peek, dontwait) = (flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0);
            k.read_until_ready(f, fd, buf, peek, dontwait, "recv")
        };
        self.call(Op::Recv, fd, arg, f, count)
    }

    fn poll(&self, fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
        let f = |k: &mut Kernel| {
            // Linux: `nfds > RLIMIT_NOFILE` is EINVAL (the sim's limit is `max_fds`).
            if fds.len() > k.cfg.max_fds {
                return Err(err(EINVAL));
            }
            let deadline = u64::try_from(timeout_ms)
                .ok()
                .map(|t| k.now_ns + t * 1_000_000);
            loop {
                let n = k.poll_scan(fds);
                if n > 0 || deadline.is_some_and(|d| k.now_ns >= d) {
                    return Ok(n);
                }
                if let Some(v) = &k.violation {
                    return Err(v.stop_error(""));
                }
                // Sleep to the next delivery, or to the deadline if none comes before it (the
                // next pass then returns 0).
                if !k.advance(deadline) && deadline.is_none() {
                    let msg = format!(
                        "poll(timeout -1) on {} fds would wait for ever: nothing is in flight \
                         (seed {})",
                        fds.len(),
                        k.seed
                    );
                    return Err(k.hang("poll".to_string(), msg));
                }
            }
        };
        self.call(Op::Poll, -1, timeout_ms.into(), f, count)
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let f = |k: &mut Kernel| {
            let f = k.file_of(fd)?;
            let mut done = 0;
            loop {
                let r = k.write_once(f, &buf[done..]);
                match r {
                    Ok(n) => {
                        done += n;
                        // A blocking write returns when all is written (the common case first:
                        // the file is looked at only when it is not); an eventfd write is whole.
                        if done >= buf.len()
                            || k.files[f].nonblock
                            || matches!(k.files[f].kind, Kind::EventFd(_))
                        {
                            return Ok(done);
                        }
                        if n > 0 {
                            // Short (a fault, or the buffer just filled): try the rest before
                            // sleeping; only EAGAIN means there is no room. Sleeping here with
                            // room left was a false hang under `short_write`.
                            continue;
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(EAGAIN) && !k.files[f].nonblock => {}
                    Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
                }
                k.block("write", fd)?;
            }
        };
        self.call(Op::Write, fd, buf.len() as i64, f, count)
    }

    fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()> {
        let f = |k: &mut Kernel| {
            let f = k.file_of(fd)?;
            match k.files[f].kind {
                Kind::Unix(_) => k.unix_shutdown(f, how),
                Kind::Tcp(_) => k.tcp_shutdown(f, how),
                _ => Err(err(ENOTSOCK)),
            }
        };
        self.call(Op::Shutdown, fd, how.into(), f, unit)
    }

    fn close(&self, fd: Fd) -> io::Result<()> {
        self.call(Op::Close, fd, 0, |k| k.close(fd), unit)
    }

    fn dup(&self, fd: Fd) -> io::Result<Fd> {
        self.call(Op::Dup, fd, 0, |k| k.dup(fd), new_fd)
    }

    fn dup2(&self, oldfd: Fd, newfd: Fd) -> io::Result<Fd> {
        let arg = newfd.into();
        self.call(Op::Dup, oldfd, arg, |k| k.dup2(oldfd, newfd), new_fd)
    }

    fn dup3(&self, oldfd: Fd, newfd: Fd, flags: i32) -> io::Result<Fd> {
        let arg = newfd.into();
        self.call(Op::Dup, oldfd, arg, |k| k.dup3(oldfd, newfd, flags), new_fd)
    }

    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()> {
        let arg = nonblocking.into();
        self.call(
            Op::SetNonblocking,
            fd,
            arg,
            |k| k.set_nonblocking(fd, nonblocking),
            unit,
        )
    }

    fn fionread(&self, fd: Fd) -> io::Result<usize> {
        self.call(Op::FionRead, fd, 0, |k| k.fionread(fd), count)
    }

    fn get_status_flags(&self, fd: Fd) -> io::Result<i32> {
        self.call(
            Op::GetStatusFlags,
            fd,
            0,
            |k| k.status_flags(fd),
            |v| (*v).into(),
        )
    }

    fn set_status_flags(&self, fd: Fd, flags: i32) -> io::Result<()> {
        self.call(
            Op::SetStatusFlags,
            fd,
            flags.into(),
            |k| k.set_status_flags(fd, flags),
            unit,
        )
    }

    #[inline]
    fn now(&self) -> Duration {
        Duration::from_nanos(self.k.borrow().now_ns)
    }

    /// As on Linux, unless the fault plan cuts reads short.
    fn short_read_drains(&self) -> bool {
        !crate::rng::draws(self.k.borrow().cfg.faults.short_read)
    }

    /// The data words of the epoll items the kernel's next deliveries will wake, as its warming
    /// reaches them (see [`Poller::upcoming`]). Collected only while a cache hint is installed
    /// (`netpoll::hint`): without one, a loop's prefetches would do nothing.
    fn upcoming(&self, out: &mut [u64]) -> usize {
        let mut k = self.k.borrow_mut();
        let n = k.soon.take(out);
        k.stats.announced += n as u64;
        n
    }
}

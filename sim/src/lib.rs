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
pub mod rng;
mod slab;
pub mod trace;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;

use netpoll::sys::{err, errno::*, Events};
use netpoll::{EpollEvent, Fd, Poller};

pub use config::SimConfig;
pub use faults::{EdgePolicy, FaultCounts, FaultPlan, Latency};
pub use kernel::epoll::Stranded;
pub use kernel::Stats;
use kernel::{Kernel, Kind};
use trace::{Op, Record, Tracer};

/// The simulated kernel. Single-threaded (`!Sync`); cheap to create.
#[derive(Debug)]
pub struct Sim {
    k: RefCell<Kernel>,
    trace: RefCell<Tracer>,
}

impl Sim {
    /// A kernel with the default (Linux-like) configuration.
    pub fn new(seed: u64) -> Sim {
        Sim::with_config(seed, SimConfig::default())
    }

    /// A kernel with `cfg`.
    pub fn with_config(seed: u64, cfg: SimConfig) -> Sim {
        Sim {
            k: RefCell::new(Kernel::new(seed, cfg)),
            trace: RefCell::new(Tracer::default()),
        }
    }

    /// The seed this kernel was made with.
    pub fn seed(&self) -> u64 {
        self.k.borrow().seed
    }

    /// Counters of what the kernel did so far.
    pub fn stats(&self) -> Stats {
        self.k.borrow().stats
    }

    /// Virtual nanoseconds since the kernel was made.
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

    /// Events still queued to happen (packets in flight, retransmission timers).
    pub fn pending(&self) -> usize {
        self.k.borrow().pending()
    }

    /// When the next queued event happens, in virtual nanoseconds.
    pub fn next_event_ns(&self) -> Option<u64> {
        self.k.borrow().next_event_ns()
    }

    /// How many faults of each kind fired so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.k.borrow().faults
    }

    /// Open files (not descriptors: `dup`s share one).
    pub fn open_files(&self) -> usize {
        self.k.borrow().files.len()
    }

    /// The registrations of epoll instance `epfd` that are ready for their interest while
    /// nothing is queued to report them: the lost-wakeup condition, meaningful when the event
    /// loop is about to sleep.
    ///
    /// # Errors
    /// `EBADF`, or `EINVAL` if `epfd` is not an epoll instance.
    pub fn stranded(&self, epfd: Fd) -> io::Result<Vec<Stranded>> {
        self.k.borrow_mut().stranded(epfd)
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
    /// [`set_trace`](Sim::set_trace); the sink must not call back into this `Sim`.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use netpoll::{Poller, sys::*};
    /// use netpoll_sim::{trace::Op, Sim};
    ///
    /// let p = Sim::new(1);
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// p.set_trace_sink(Some(Box::new(move |r| s.borrow_mut().push(r.op))));
    /// let [a, _b] = p.socketpair(SOCK_NONBLOCK).unwrap();
    /// p.write(a, b"hi").unwrap();
    /// p.set_trace_sink(None);
    /// assert_eq!(*seen.borrow(), [Op::Socketpair, Op::Write]);
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
            .copied()
            .collect()
    }

    /// (calls made, a hash of every call and result so far): equal for two runs of one seed.
    pub fn fingerprint(&self) -> (u64, u64) {
        self.trace.borrow().fingerprint()
    }

    /// Runs `f` on the kernel and records the call.
    fn call<T>(
        &self,
        op: Op,
        fd: Fd,
        arg: i64,
        f: impl FnOnce(&mut Kernel) -> io::Result<T>,
        val: impl FnOnce(&T) -> i64,
    ) -> io::Result<T> {
        let mut k = self.k.borrow_mut();
        k.stats.syscalls += 1;
        let r = f(&mut k);
        let at_ns = k.now_ns;
        drop(k);
        let ret = match &r {
            Ok(v) => Ok(val(v)),
            Err(e) => Err(e.raw_os_error().unwrap_or(0)),
        };
        self.trace.borrow_mut().record(Record {
            at_ns,
            op,
            fd,
            arg,
            ret,
        });
        r
    }
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
    fn read_once(&mut self, f: u32, buf: &mut [u8]) -> io::Result<usize> {
        if self.cfg.faults.short_read <= 0.0 {
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
                }
                return r;
            }
        }
        self.read_raw(f, buf)
    }

    fn read_raw(&mut self, f: u32, buf: &mut [u8]) -> io::Result<usize> {
        match self.files[f].kind {
            Kind::Unix(_) => self.unix_read(f, buf),
            Kind::PipeRead(p) => self.pipe_read(p, buf),
            Kind::PipeWrite(_) => Err(err(EBADF)),
            Kind::EventFd(_) => self.eventfd_read(f, buf),
            Kind::Tcp(_) => self.tcp_read(f, buf),
            Kind::Epoll(_) => Err(err(EINVAL)),
        }
    }

    fn write_once(&mut self, f: u32, buf: &[u8]) -> io::Result<usize> {
        if matches!(
            self.files[f].kind,
            Kind::Unix(_) | Kind::PipeWrite(_) | Kind::Tcp(_)
        ) {
            let len = self.fault_len(buf.len(), self.cfg.faults.short_write);
            if len < buf.len() {
                let r = self.write_raw(f, &buf[..len]);
                if matches!(r, Ok(n) if n == len) {
                    self.faults.short_writes += 1;
                }
                return r;
            }
        }
        self.write_raw(f, buf)
    }

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
        self.call(
            Op::EpollWait,
            epfd,
            arg,
            |k| k.epoll_wait(epfd, events, timeout_ms),
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
            loop {
                let r = k.read_once(f, buf);
                if !is_eagain(&r) || k.files[f].nonblock {
                    return r;
                }
                k.block("read", fd)?;
            }
        };
        self.call(Op::Read, fd, len, f, count)
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let f = |k: &mut Kernel| {
            let f = k.file_of(fd)?;
            let mut done = 0;
            loop {
                let r = k.write_once(f, &buf[done..]);
                let nonblock = k.files[f].nonblock;
                match r {
                    Ok(n) => {
                        done += n;
                        // A blocking write returns when all is written; an eventfd write is whole.
                        let whole = matches!(k.files[f].kind, Kind::EventFd(_));
                        if nonblock || done >= buf.len() || whole {
                            return Ok(done);
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(EAGAIN) && !nonblock => {}
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

    fn now(&self) -> Duration {
        Duration::from_nanos(self.k.borrow().now_ns)
    }

    /// As on Linux, unless the fault plan cuts reads short.
    fn short_read_drains(&self) -> bool {
        self.k.borrow().cfg.faults.short_read <= 0.0
    }
}

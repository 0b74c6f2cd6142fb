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
//! | `kernel/tcp.rs` | TCP sockets and the simulated loopback network |
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

pub mod config;
mod kernel;
pub mod rng;
mod slab;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;

use netpoll::sys::{err, errno::*, Events};
use netpoll::{EpollEvent, Fd, Poller};

pub use config::SimConfig;
pub use kernel::Stats;
use kernel::{Kernel, Kind};

/// The simulated kernel. Single-threaded (`!Sync`); cheap to create.
#[derive(Debug)]
pub struct Sim {
    k: RefCell<Kernel>,
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

    /// Open files (not descriptors: `dup`s share one).
    pub fn open_files(&self) -> usize {
        self.k.borrow().files.len()
    }

    fn call(&self) -> std::cell::RefMut<'_, Kernel> {
        let mut k = self.k.borrow_mut();
        k.stats.syscalls += 1;
        k
    }
}

fn is_eagain(r: &io::Result<usize>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(EAGAIN))
}

impl Kernel {
    fn read_once(&mut self, f: u32, buf: &mut [u8]) -> io::Result<usize> {
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
        self.call().epoll_create1(flags)
    }

    fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()> {
        self.call().epoll_ctl(epfd, op, fd, event)
    }

    fn epoll_wait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
    ) -> io::Result<usize> {
        self.call().epoll_wait(epfd, events, timeout_ms)
    }

    fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.call().socketpair(flags)
    }

    fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.call().pipe2(flags)
    }

    fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd> {
        self.call().eventfd(initval, flags)
    }

    fn tcp_socket(&self, flags: i32) -> io::Result<Fd> {
        self.call().tcp_socket(flags)
    }

    fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        self.call().bind(fd, addr)
    }

    fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()> {
        self.call().listen(fd, backlog)
    }

    fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        self.call().connect(fd, addr)
    }

    fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> {
        self.call().accept4(fd, flags)
    }

    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.call().local_addr(fd)
    }

    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.call().peer_addr(fd)
    }

    fn take_socket_error(&self, fd: Fd) -> io::Result<i32> {
        let mut k = self.call();
        let f = k.file_of(fd)?;
        match &mut k.files[f].kind {
            Kind::Unix(u) => Ok(u.take_error()),
            Kind::Tcp(_) => Ok(k.tcp_take_error(f)),
            _ => Err(err(ENOTSOCK)),
        }
    }

    fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()> {
        let mut k = self.call();
        let f = k.file_of(fd)?;
        match &k.files[f].kind {
            Kind::Unix(_) => Ok(()),
            Kind::Tcp(_) => {
                k.tcp_set_linger(f, linger_secs);
                Ok(())
            }
            _ => Err(err(ENOTSOCK)),
        }
    }

    fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let mut k = self.call();
        let f = k.file_of(fd)?;
        loop {
            let r = k.read_once(f, buf);
            if !is_eagain(&r) || k.files[f].nonblock {
                return r;
            }
            k.block("read", fd)?;
        }
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let mut k = self.call();
        let f = k.file_of(fd)?;
        let mut done = 0;
        loop {
            let r = k.write_once(f, &buf[done..]);
            let nonblock = k.files[f].nonblock;
            match r {
                Ok(n) => {
                    done += n;
                    // A blocking write returns when all is written; an eventfd write is whole.
                    if nonblock || done >= buf.len() || matches!(k.files[f].kind, Kind::EventFd(_))
                    {
                        return Ok(done);
                    }
                }
                Err(e) if e.raw_os_error() == Some(EAGAIN) && !nonblock => {}
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            }
            k.block("write", fd)?;
        }
    }

    fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()> {
        let mut k = self.call();
        let f = k.file_of(fd)?;
        match k.files[f].kind {
            Kind::Unix(_) => k.unix_shutdown(f, how),
            Kind::Tcp(_) => k.tcp_shutdown(f, how),
            _ => Err(err(ENOTSOCK)),
        }
    }

    fn close(&self, fd: Fd) -> io::Result<()> {
        self.call().close(fd)
    }

    fn dup(&self, fd: Fd) -> io::Result<Fd> {
        self.call().dup(fd)
    }

    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()> {
        self.call().set_nonblocking(fd, nonblocking)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.k.borrow().now_ns)
    }
}

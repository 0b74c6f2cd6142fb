//! The [`Poller`] trait: the kernel surface an event loop is written against.

use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;

use crate::sys::Events;

/// A file descriptor: a small non-negative integer, as on Linux.
pub type Fd = i32;

/// One entry of `epoll_ctl`'s argument and of `epoll_wait`'s result: `struct epoll_event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EpollEvent {
    /// For `epoll_ctl`: the interest and mode flags. From `epoll_wait`: what is ready.
    pub events: Events,
    /// The caller's 64 bits, returned unchanged with each event.
    pub data: u64,
}

impl EpollEvent {
    /// An event with `events` and `data`.
    pub const fn new(events: Events, data: u64) -> EpollEvent {
        EpollEvent { events, data }
    }

    /// An empty event, for filling a result buffer.
    pub const EMPTY: EpollEvent = EpollEvent {
        events: Events::NONE,
        data: 0,
    };
}

/// One entry of `poll`'s array: `struct pollfd`.
///
/// `events` and `revents` use the `EPOLL*` bit values ([`Events`]), which are `poll`'s
/// `POLL*` values (`POLLIN` = [`Events::IN`], `POLLNVAL` = [`Events::NVAL`], ...).
///
/// ```
/// use netpoll::poller::PollFd;
/// use netpoll::Events;
///
/// let p = PollFd::new(3, Events::IN);
/// assert_eq!((p.fd, p.events, p.revents), (3, Events::IN, Events::NONE));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PollFd {
    /// The descriptor; a negative one is skipped (its `revents` is set to nothing).
    pub fd: Fd,
    /// What the caller waits for. `ERR`, `HUP` and `NVAL` are reported whether asked or not.
    pub events: Events,
    /// Filled by `poll`: what is ready, masked by `events | ERR | HUP | NVAL`.
    pub revents: Events,
}

impl PollFd {
    /// An entry for `fd` waiting for `events`, with `revents` empty.
    pub const fn new(fd: Fd, events: Events) -> PollFd {
        PollFd {
            fd,
            events,
            revents: Events::NONE,
        }
    }
}

/// `struct timespec`: the timeout of [`Poller::epoll_pwait2`], to the nanosecond.
///
/// Kept as the two signed fields the kernel reads, so that an invalid one (a negative field, or
/// `nsec` of a second or more) can be passed and fail with `EINVAL` as on Linux.
///
/// ```
/// use netpoll::poller::Timespec;
/// use std::time::Duration;
///
/// let t = Timespec::from(Duration::from_micros(1_500));
/// assert_eq!((t.sec, t.nsec), (0, 1_500_000));
/// assert!(t.is_valid());
/// assert_eq!(t.as_nanos(), Some(1_500_000));
/// assert!(!Timespec { sec: 0, nsec: 1_000_000_000 }.is_valid());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Timespec {
    /// Seconds (`tv_sec`).
    pub sec: i64,
    /// Nanoseconds (`tv_nsec`), below one second.
    pub nsec: i64,
}

impl Timespec {
    /// Linux's `timespec64_valid`: both fields non-negative and `nsec` under a second.
    pub const fn is_valid(&self) -> bool {
        self.sec >= 0 && self.nsec >= 0 && self.nsec < 1_000_000_000
    }

    /// The duration in nanoseconds (saturating), or `None` if not [valid](Self::is_valid).
    pub fn as_nanos(&self) -> Option<u64> {
        self.is_valid().then(|| {
            (self.sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(self.nsec as u64)
        })
    }
}

impl From<Duration> for Timespec {
    fn from(d: Duration) -> Timespec {
        Timespec {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: i64::from(d.subsec_nanos()),
        }
    }
}

/// The kernel surface an event loop is written against: epoll, sockets, pipes, eventfd, a clock.
///
/// Every method is shaped like the Linux system call it names: descriptors are [`Fd`] integers,
/// flags and event bits have Linux's values ([`crate::sys`]), and every error is an
/// [`io::Error`] whose [`raw_os_error`](io::Error::raw_os_error) is the errno Linux returns for
/// the same call in the same state. Two implementations exist: `netpoll_realnet::RealNet` (the
/// real kernel, through `libc`) and `netpoll_sim::Sim` (a seeded, simulated kernel). Code written
/// against this trait behaves the same on both; the conformance suite in `tests/` checks it,
/// case by case, and where they differ Linux is right.
///
/// # What is guaranteed
///
/// - **Descriptors** are allocated lowest-free, so a closed number is reused by the next call
///   that allocates one. `O_NONBLOCK` belongs to the open file (shared by `dup`s); `O_CLOEXEC`
///   is accepted and has no observable effect (nothing here execs).
/// - **An epoll registration** is keyed by the pair (open file, fd number). It lives until it is
///   deleted or until the *last* descriptor referring to the open file is closed: closing one of
///   two `dup`s keeps it alive, and its events keep arriving with the old `data`.
/// - **`EPOLLERR` and `EPOLLHUP`** are reported whether or not they were asked for.
/// - **Level-triggered** registrations are reported by every `epoll_wait` while the file is ready
///   for their interest. **Edge-triggered** (`EPOLLET`) registrations are reported once per
///   wakeup of the file: a wakeup is a state change the file signals (data arrives, room frees, a
///   peer hangs up, a connection is queued). On Linux *every* write into a socket, pipe or
///   eventfd is a wakeup, even if earlier data is still unread; code must not rely on that, and
///   must read until `EAGAIN` before waiting again. **`EPOLLONESHOT`** disarms the registration
///   after one reported event; `EPOLL_CTL_MOD` re-arms it and re-checks readiness at once.
/// - **Order**: `epoll_wait` reports ready registrations in the order they became ready;
///   level-triggered ones that are still ready go to the back, and those that did not fit in
///   `maxevents` stay at the front for the next call (round-robin).
/// - **Time**: [`now`](Poller::now) is monotonic. A timeout of `n` ms means *at least* `n` ms
///   (Linux rounds up to its clock's granularity); `-1` waits for ever; `0` never waits.
///
/// # What is allowed
///
/// - **Spurious events.** An event may be reported for a file that then turns out to have
///   nothing to read (another reader was faster, or the simulated kernel's fault plan injected
///   one). Event loops must treat `EAGAIN` after an event as normal.
/// - **`EINTR`.** A blocking `epoll_wait` may fail with `EINTR` when a signal arrives (the real
///   kernel) or when a fault plan injects it (the simulated one). It is returned to the caller,
///   never retried inside: the caller recomputes its timeout and calls again. No other call
///   returns `EINTR` here.
/// - **Short reads and writes.** `read` may return fewer bytes than are buffered and `write` may
///   accept fewer bytes than offered; a stream's bytes still arrive in order.
/// - **Segmentation.** What one `write` sent to a TCP peer may arrive in several pieces, each a
///   separate wakeup.
///
/// # Blocking descriptors
///
/// A call on a blocking descriptor waits for as long as Linux would. On the simulated kernel,
/// which runs one thread, that means advancing virtual time to the next thing that can happen; if
/// nothing ever can, the call returns an error of kind [`io::ErrorKind::Deadlock`] (the real
/// kernel would hang for ever) so that the harness can report the hang.
///
/// # Errors
///
/// Each method's errors are the errno values its Linux man page lists for the situation; the
/// common ones: `EBADF` (not an open descriptor), `EINVAL` (bad flags, or the wrong kind of
/// file), `EAGAIN` (a non-blocking call would block), `ENOTSOCK`, `ENOTCONN`, `EPIPE`,
/// `ECONNRESET`, `EMFILE` (the descriptor table is full).
///
/// # Examples
///
/// An edge-triggered read loop, the same on both kernels:
///
/// ```
/// use netpoll::{Poller, EpollEvent, Events, sys::*};
///
/// fn drain<P: Poller>(p: &P) -> std::io::Result<Vec<u8>> {
///     let [a, b] = p.socketpair(SOCK_NONBLOCK)?;
///     let ep = p.epoll_create1(EPOLL_CLOEXEC)?;
///     p.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN | Events::ET, 7)))?;
///     p.write(a, b"hello")?;
///     let mut evs = [EpollEvent::EMPTY; 8];
///     let n = p.epoll_wait(ep, &mut evs, 1000)?;
///     assert_eq!((n, evs[0].data), (1, 7));
///     let mut out = Vec::new();
///     let mut buf = [0u8; 2];
///     loop {
///         match p.read(b, &mut buf) {
///             Ok(0) => break,
///             Ok(k) => out.extend_from_slice(&buf[..k]),
///             Err(e) if e.raw_os_error() == Some(errno::EAGAIN) => break,
///             Err(e) => return Err(e),
///         }
///     }
///     Ok(out)
/// }
/// # let _ = drain::<netpoll::NoKernel>;
/// ```
pub trait Poller {
    /// A short name for reports: `"real"` or `"sim"`.
    fn name(&self) -> &'static str;

    /// `epoll_create1(flags)`: a new epoll instance.
    ///
    /// # Errors
    /// `EINVAL` if `flags` has bits other than `EPOLL_CLOEXEC`; `EMFILE`.
    fn epoll_create1(&self, flags: i32) -> io::Result<Fd>;

    /// `epoll_ctl(epfd, op, fd, event)`: add, modify or delete the registration of `fd` in `epfd`.
    ///
    /// `EPOLLERR | EPOLLHUP` are added to every interest. `ADD` and `MOD` re-check the file at
    /// once: if it is ready for the new interest it is queued as ready (this is how `MOD` re-arms
    /// a oneshot registration). `event` is ignored for `DEL`.
    ///
    /// # Errors
    /// `EBADF` (`epfd` or `fd` not open), `EINVAL` (`epfd` not an epoll fd, `fd == epfd`, unknown
    /// `op`, `EPOLLEXCLUSIVE` with `MOD` or with flags other than IN/OUT/ERR/HUP/WAKEUP/ET, or on
    /// an epoll target), `EEXIST` (`ADD` of a registered fd), `ENOENT` (`MOD`/`DEL` of an
    /// unregistered one), `EPERM` (the file does not support polling), `ELOOP` (nesting would
    /// make a cycle, or a chain of more than 5 epoll instances), `EFAULT` (`ADD`/`MOD` with
    /// `event: None`).
    fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()>;

    /// `epoll_wait(epfd, events, events.len(), timeout_ms)`: the ready registrations.
    ///
    /// Returns how many entries of `events` were filled, at most `events.len()`. Waits up to
    /// `timeout_ms` milliseconds (`-1`: for ever, `0`: not at all) for at least one; returns `0`
    /// when the timeout passes with none.
    ///
    /// # Errors
    /// `EBADF`, `EINVAL` (`epfd` not an epoll fd, or `events` empty), `EINTR` (see the trait docs).
    fn epoll_wait(&self, epfd: Fd, events: &mut [EpollEvent], timeout_ms: i32)
        -> io::Result<usize>;

    /// `socketpair(AF_UNIX, SOCK_STREAM | flags, 0)`: two connected stream sockets.
    ///
    /// # Errors
    /// `EINVAL` (flags other than `SOCK_NONBLOCK | SOCK_CLOEXEC`), `EMFILE`.
    fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]>;

    /// `pipe2(flags)`: `[read end, write end]`.
    ///
    /// # Errors
    /// `EINVAL` (flags other than `O_NONBLOCK | O_CLOEXEC`), `EMFILE`.
    fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]>;

    /// `eventfd(initval, flags)`: a 64-bit counter. `write` adds an 8-byte native-endian value
    /// (the buffer must be exactly 8 bytes), `read` takes the whole counter (or 1 with
    /// `EFD_SEMAPHORE`) into a buffer of at least 8 bytes. The counter tops out at `u64::MAX - 1`.
    ///
    /// # Errors
    /// `EINVAL` (unknown flags), `EMFILE`.
    fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd>;

    /// `socket(AF_INET, SOCK_STREAM | flags, 0)`: a TCP socket, not yet bound or connected.
    ///
    /// # Errors
    /// `EINVAL` (flags other than `SOCK_NONBLOCK | SOCK_CLOEXEC`), `EMFILE`.
    fn tcp_socket(&self, flags: i32) -> io::Result<Fd>;

    /// `bind(fd, addr)`. Port 0 picks a free ephemeral port. Only loopback addresses are
    /// supported by the simulated kernel (`EADDRNOTAVAIL` otherwise).
    ///
    /// # Errors
    /// `EBADF`, `ENOTSOCK`, `EINVAL` (already bound), `EADDRINUSE`, `EADDRNOTAVAIL`.
    fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()>;

    /// `listen(fd, backlog)`: the accept queue holds up to `backlog + 1` finished connections
    /// (Linux's rule); further connection attempts are dropped and retried by the client.
    ///
    /// # Errors
    /// `EBADF`, `ENOTSOCK`, `EINVAL` (connected), `EOPNOTSUPP` (not a TCP socket).
    fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()>;

    /// `connect(fd, addr)`. A non-blocking socket returns `EINPROGRESS` while the handshake is
    /// under way (Linux 6.18 did so on loopback every time we looked; portable code also accepts
    /// `Ok`); the socket then turns writable and
    /// [`take_socket_error`](Poller::take_socket_error) gives the outcome. Calling `connect`
    /// again returns `Ok` once the handshake is done (then `EISCONN`), `EALREADY` while it is
    /// not, and the error (then `ECONNABORTED`) if it failed. `0.0.0.0` means this host.
    ///
    /// # Errors
    /// `EINPROGRESS`, `EALREADY` (a connect is under way), `EISCONN`, `ECONNREFUSED` (blocking
    /// socket, no listener), `EBADF`, `ENOTSOCK`.
    fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()>;

    /// `accept4(fd, NULL, NULL, flags)` plus the peer's address: the oldest queued connection.
    ///
    /// # Errors
    /// `EAGAIN` (none queued, non-blocking), `EINVAL` (not listening, or bad flags), `EBADF`,
    /// `ENOTSOCK`, `EMFILE`.
    fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)>;

    /// `getsockname(fd)` for a TCP socket.
    ///
    /// # Errors
    /// `EBADF`, `ENOTSOCK`, `EOPNOTSUPP` (not a TCP socket).
    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4>;

    /// `getpeername(fd)` for a TCP socket.
    ///
    /// # Errors
    /// `ENOTCONN`, `EBADF`, `ENOTSOCK`, `EOPNOTSUPP` (not a TCP socket).
    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4>;

    /// `getsockopt(fd, SOL_SOCKET, SO_ERROR)`: the pending socket error as an errno (0 if none),
    /// cleared by reading it.
    ///
    /// # Errors
    /// `EBADF`, `ENOTSOCK`.
    fn take_socket_error(&self, fd: Fd) -> io::Result<i32>;

    /// `setsockopt(fd, SOL_SOCKET, SO_LINGER)`. `Some(0)` makes `close` abort the connection with
    /// a reset (`ECONNRESET` for the peer); `None` restores the normal close.
    ///
    /// # Errors
    /// `EBADF`, `ENOTSOCK`.
    fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()>;

    /// `read(fd, buf)`. `Ok(0)` is end of file (or `buf` is empty).
    ///
    /// # Errors
    /// `EAGAIN` (non-blocking and nothing to read), `ECONNRESET`, `ENOTCONN` (a TCP socket never
    /// connected, or a listener), `EINVAL` (eventfd with a buffer under 8 bytes; an epoll fd),
    /// `EBADF` (the write end of a pipe).
    fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize>;

    /// `recv(fd, buf, flags)` on a stream socket (TCP or unix), with `flags` from
    /// [`MSG_PEEK`](crate::sys::MSG_PEEK), [`MSG_DONTWAIT`](crate::sys::MSG_DONTWAIT) and
    /// [`MSG_NOSIGNAL`](crate::sys::MSG_NOSIGNAL). Without flags it is [`read`](Poller::read).
    ///
    /// - `MSG_PEEK` copies up to `buf.len()` queued bytes and leaves them queued: the next read
    ///   returns them again, readiness does not change and the peer's room is not returned. At
    ///   end of stream it returns `Ok(0)`, like a read. A pending socket error is still taken
    ///   (Linux's `sock_error` clears it on a peek too).
    /// - `MSG_DONTWAIT` makes this one call non-blocking (`EAGAIN` instead of waiting) without
    ///   touching the open file's `O_NONBLOCK`.
    ///
    /// The simulated kernel models these three flags only; any other flag fails with
    /// `EOPNOTSUPP` there (Linux accepts more: `MSG_WAITALL`, `MSG_TRUNC`, `MSG_OOB`, ...).
    /// Kernels that do not implement `recv` keep this default, which fails with `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `ENOTSOCK` (a pipe, eventfd or epoll fd), `EAGAIN` (nothing queued and non-blocking, by
    /// the file's mode or `MSG_DONTWAIT`), `ENOTCONN` (a TCP socket never connected, or a
    /// listener), `ECONNRESET`, `EBADF`.
    fn recv(&self, fd: Fd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
        let _ = (fd, buf, flags);
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `write(fd, buf)`: how many bytes were taken. Writing to a socket or pipe whose peer is gone
    /// fails with `EPIPE` (Rust programs ignore `SIGPIPE`, and `RealNet` sends with
    /// `MSG_NOSIGNAL`).
    ///
    /// # Errors
    /// `EAGAIN` (non-blocking and no room), `EPIPE` (also: a TCP socket never connected, or a
    /// listener), `ECONNRESET`, `EINVAL` (eventfd with a buffer other than 8 bytes, or the value
    /// `u64::MAX`; an epoll fd), `EBADF` (the read end of a pipe).
    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize>;

    /// `shutdown(fd, how)` with `SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`, for sockets.
    ///
    /// # Errors
    /// `ENOTCONN`, `ENOTSOCK`, `EINVAL` (bad `how`), `EBADF`.
    fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()>;

    /// `close(fd)`. The open file goes (and with it its epoll registrations, and a socket's
    /// connection) only when its last descriptor is closed.
    ///
    /// # Errors
    /// `EBADF`.
    fn close(&self, fd: Fd) -> io::Result<()>;

    /// `dup(fd)`: a new descriptor (lowest free) for the same open file.
    ///
    /// # Errors
    /// `EBADF`, `EMFILE`.
    fn dup(&self, fd: Fd) -> io::Result<Fd>;

    /// `dup2(oldfd, newfd)`: makes `newfd` refer to `oldfd`'s open file, closing what `newfd`
    /// referred to first (silently, and atomically with the switch: no other thread can get the
    /// number in between). Returns `newfd`. When the two are equal it only checks that `oldfd`
    /// is open. Closing the replaced file removes its epoll registrations only if that was its
    /// last descriptor, as `close` does. Kernels that do not implement it keep this default,
    /// which fails with `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `EBADF` (`oldfd` not open, or `newfd` negative or not below the descriptor limit).
    fn dup2(&self, oldfd: Fd, newfd: Fd) -> io::Result<Fd> {
        let _ = (oldfd, newfd);
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `dup3(oldfd, newfd, flags)`: [`dup2`](Poller::dup2) with `flags` (`O_CLOEXEC` or 0),
    /// and `EINVAL` instead of a no-op when the two descriptors are equal. Kernels that do not
    /// implement it keep this default, which fails with `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `EINVAL` (flags other than `O_CLOEXEC`, checked first; `oldfd == newfd`), `EBADF` (as
    /// `dup2`).
    fn dup3(&self, oldfd: Fd, newfd: Fd, flags: i32) -> io::Result<Fd> {
        let _ = (oldfd, newfd, flags);
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `epoll_pwait(epfd, events, events.len(), timeout_ms, sigmask)`: [`epoll_wait`] with the
    /// thread's signal mask replaced by `sigmask` for the duration of the wait. `sigmask` is the
    /// kernel's 64-bit signal set (bit `n - 1` for signal `n`); `None` passes a null mask, which
    /// makes the call exactly `epoll_wait`. The simulated kernel delivers no signals, so it
    /// accepts any mask and ignores it (its injected `EINTR` fault is not masked). This default
    /// serves `None` by calling `epoll_wait` and fails with `EOPNOTSUPP` otherwise.
    ///
    /// # Errors
    /// As [`epoll_wait`].
    ///
    /// [`epoll_wait`]: Poller::epoll_wait
    fn epoll_pwait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
        sigmask: Option<u64>,
    ) -> io::Result<usize> {
        match sigmask {
            None => self.epoll_wait(epfd, events, timeout_ms),
            Some(_) => Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP)),
        }
    }

    /// `epoll_pwait2(epfd, events, events.len(), timeout, sigmask)`: [`epoll_pwait`] with a
    /// nanosecond timeout: `None` waits for ever, a zero [`Timespec`] not at all. On the
    /// simulated kernel the timeout is virtual time, to the nanosecond. Kernels that do not
    /// implement it keep this default, which fails with `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `EINVAL` (an invalid `timeout`, checked before the descriptor), and as [`epoll_wait`].
    ///
    /// [`epoll_pwait`]: Poller::epoll_pwait
    /// [`epoll_wait`]: Poller::epoll_wait
    fn epoll_pwait2(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout: Option<Timespec>,
        sigmask: Option<u64>,
    ) -> io::Result<usize> {
        let _ = (epfd, events, timeout, sigmask);
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `fcntl(fd, F_SETFL, O_NONBLOCK or 0)`: the open file's blocking mode.
    ///
    /// # Errors
    /// `EBADF`.
    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()>;

    /// `poll(fds, timeout_ms)`: fills each entry's `revents` and returns how many entries have
    /// a non-empty one. Waits up to `timeout_ms` milliseconds (`-1`: for ever, `0`: not at all)
    /// for at least one; returns `0` when the timeout passes with none. On the simulated kernel
    /// the wait is virtual time. A negative `fd` is skipped (`revents` empty); a number that is
    /// not an open descriptor reports [`Events::NVAL`](crate::Events::NVAL), which counts as
    /// ready (Linux does not fail the call). `ERR` and `HUP` are reported whether asked for or
    /// not. Kernels that do not implement `poll` keep this default, which fails with
    /// `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `EINVAL` (more entries than the descriptor limit), `EINTR` (real kernel: a signal).
    fn poll(&self, fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
        let _ = (fds, timeout_ms);
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `ioctl(fd, FIONREAD)`: how many bytes a read would find queued now. For a TCP socket,
    /// the in-order data not yet read (a received FIN is not counted; 0 before the connection
    /// is established); for a unix stream socket, the unread bytes; for a pipe, the bytes in
    /// it (asked of either end). Kernels that do not implement it keep this default, which
    /// fails with `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `EINVAL` (a TCP listener; an epoll instance, whose `ioctl` knows only its busy-poll
    /// commands), `ENOTTY` (an eventfd, which has no `ioctl`), `EBADF`.
    fn fionread(&self, fd: Fd) -> io::Result<usize> {
        let _ = fd;
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `fcntl(fd, F_GETFL)`: the open file's access mode ([`O_RDONLY`](crate::sys::O_RDONLY)
    /// for a pipe's read end, [`O_WRONLY`](crate::sys::O_WRONLY) for its write end,
    /// [`O_RDWR`](crate::sys::O_RDWR) for the rest) and its status flags
    /// ([`O_NONBLOCK`](crate::sys::O_NONBLOCK)). Shared by `dup`s. Kernels that do not
    /// implement it keep this default, which fails with `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `EBADF`.
    fn get_status_flags(&self, fd: Fd) -> io::Result<i32> {
        let _ = fd;
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `fcntl(fd, F_SETFL, flags)`: sets the open file's status flags. As on Linux, the access
    /// mode and creation flags in `flags` are ignored, so `F_SETFL(F_GETFL() | O_NONBLOCK)`
    /// works. The simulated kernel models `O_NONBLOCK` only: it fails with `EINVAL` when
    /// `flags` asks for `O_APPEND`, `O_ASYNC`, `O_DIRECT` or `O_NOATIME`, which Linux would
    /// set. Kernels that do not implement it keep this default, which fails with `EOPNOTSUPP`.
    ///
    /// # Errors
    /// `EBADF`; `EINVAL` (see above).
    fn set_status_flags(&self, fd: Fd, flags: i32) -> io::Result<()> {
        let _ = (fd, flags);
        Err(crate::sys::err(crate::sys::errno::EOPNOTSUPP))
    }

    /// `clock_gettime(CLOCK_MONOTONIC)`: time since an arbitrary fixed point. On the simulated
    /// kernel this is virtual time, moved only by waiting.
    fn now(&self) -> Duration;

    /// Whether a `read` of a stream socket or pipe that returns fewer bytes than asked means the
    /// buffer is now empty, so that the caller may wait for the next readiness event without
    /// the `read` that would return `EAGAIN` (tokio's shortcut). Linux guarantees it for the
    /// objects here; the trait in general does not (short reads are allowed), so the default is
    /// `false`. The simulated kernel says `true` unless its fault plan injects short reads.
    fn short_read_drains(&self) -> bool {
        false
    }

    /// A look-ahead for cache hints, never for logic: fills `out` with the `data` words of epoll
    /// registrations whose events the kernel expects to report soon, soonest first, and says
    /// how many it wrote. Each word is given once; none may ever be reported (a registration
    /// can change or go before its event comes), and events can come that were never
    /// announced.
    ///
    /// With many connections open at once, the state an event names (a connection's slot) was
    /// last touched thousands of events earlier, and the handler's first look at it waits for
    /// memory. A loop that prefetches the state of the words it gets here (with
    /// [`crate::hint::prefetch`]) finds it in the cache when the event comes. A real kernel
    /// cannot know what comes next: the default writes nothing. The simulated kernel knows its
    /// next deliveries, and starts collecting words at the first call.
    ///
    /// ```
    /// use netpoll::sys::{EPOLL_CTL_ADD, SOCK_NONBLOCK};
    /// use netpoll::{EpollEvent, Events, Poller};
    /// use netpoll_sim::Sim;
    ///
    /// #[derive(Default)]
    /// struct Conn {
    ///     events: u64,
    /// }
    /// let sim = Sim::new(1);
    /// let ep = sim.epoll_create1(0)?;
    /// let [a, b] = sim.socketpair(SOCK_NONBLOCK)?;
    /// sim.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN, 0)))?;
    /// let mut conns: Vec<Conn> = (0..1).map(|_| Conn::default()).collect();
    /// sim.write(a, b"hi")?;
    /// let (mut events, mut soon) = ([EpollEvent::EMPTY; 64], [0u64; 64]);
    /// // Before each wait: ask the cache for the state of the events to come.
    /// let k = sim.upcoming(&mut soon);
    /// for &data in &soon[..k] {
    ///     if let Some(c) = conns.get(data as usize) {
    ///         netpoll::hint::prefetch(c, std::mem::size_of::<Conn>());
    ///     }
    /// }
    /// let n = sim.epoll_wait(ep, &mut events, -1)?;
    /// for ev in &events[..n] {
    ///     conns[ev.data as usize].events += 1;
    /// }
    /// assert_eq!(conns[0].events, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn upcoming(&self, out: &mut [u64]) -> usize {
        let _ = out;
        0
    }
}

/// A [`Poller`] with no kernel behind it: every call fails with `ENOSYS`-like `EINVAL`.
///
/// Useful in doc examples and for type-checking generic code; never for running it.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoKernel;

macro_rules! no_kernel {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty;)*) => {
        $(fn $name(&self, $($arg: $ty),*) -> $ret {
            let _ = ($($arg,)*);
            Err(crate::sys::err(crate::sys::errno::EINVAL))
        })*
    };
}

impl Poller for NoKernel {
    fn name(&self) -> &'static str {
        "none"
    }
    no_kernel! {
        epoll_create1(flags: i32) -> io::Result<Fd>;
        epoll_ctl(epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()>;
        epoll_wait(epfd: Fd, events: &mut [EpollEvent], timeout_ms: i32) -> io::Result<usize>;
        socketpair(flags: i32) -> io::Result<[Fd; 2]>;
        pipe2(flags: i32) -> io::Result<[Fd; 2]>;
        eventfd(initval: u32, flags: i32) -> io::Result<Fd>;
        tcp_socket(flags: i32) -> io::Result<Fd>;
        bind(fd: Fd, addr: SocketAddrV4) -> io::Result<()>;
        listen(fd: Fd, backlog: i32) -> io::Result<()>;
        connect(fd: Fd, addr: SocketAddrV4) -> io::Result<()>;
        accept4(fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)>;
        local_addr(fd: Fd) -> io::Result<SocketAddrV4>;
        peer_addr(fd: Fd) -> io::Result<SocketAddrV4>;
        take_socket_error(fd: Fd) -> io::Result<i32>;
        set_linger(fd: Fd, linger_secs: Option<u32>) -> io::Result<()>;
        read(fd: Fd, buf: &mut [u8]) -> io::Result<usize>;
        write(fd: Fd, buf: &[u8]) -> io::Result<usize>;
        shutdown(fd: Fd, how: i32) -> io::Result<()>;
        close(fd: Fd) -> io::Result<()>;
        dup(fd: Fd) -> io::Result<Fd>;
        set_nonblocking(fd: Fd, nonblocking: bool) -> io::Result<()>;
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// Forwarding, so that `&P`, `Rc<P>` and `Arc<P>` are pollers too.
macro_rules! forward {
    ($($t:ty),*) => {$(
        impl<P: Poller + ?Sized> Poller for $t {
            fn name(&self) -> &'static str { (**self).name() }
            fn epoll_create1(&self, flags: i32) -> io::Result<Fd> { (**self).epoll_create1(flags) }
            fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()> {
                (**self).epoll_ctl(epfd, op, fd, event)
            }
            fn epoll_wait(&self, epfd: Fd, events: &mut [EpollEvent], timeout_ms: i32) -> io::Result<usize> {
                (**self).epoll_wait(epfd, events, timeout_ms)
            }
            fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]> { (**self).socketpair(flags) }
            fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]> { (**self).pipe2(flags) }
            fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd> { (**self).eventfd(initval, flags) }
            fn tcp_socket(&self, flags: i32) -> io::Result<Fd> { (**self).tcp_socket(flags) }
            fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> { (**self).bind(fd, addr) }
            fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()> { (**self).listen(fd, backlog) }
            fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> { (**self).connect(fd, addr) }
            fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> { (**self).accept4(fd, flags) }
            fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> { (**self).local_addr(fd) }
            fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> { (**self).peer_addr(fd) }
            fn take_socket_error(&self, fd: Fd) -> io::Result<i32> { (**self).take_socket_error(fd) }
            fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()> { (**self).set_linger(fd, linger_secs) }
            fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> { (**self).read(fd, buf) }
            fn recv(&self, fd: Fd, buf: &mut [u8], flags: i32) -> io::Result<usize> { (**self).recv(fd, buf, flags) }
            fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> { (**self).write(fd, buf) }
            fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()> { (**self).shutdown(fd, how) }
            fn close(&self, fd: Fd) -> io::Result<()> { (**self).close(fd) }
            fn dup(&self, fd: Fd) -> io::Result<Fd> { (**self).dup(fd) }
            fn dup2(&self, oldfd: Fd, newfd: Fd) -> io::Result<Fd> { (**self).dup2(oldfd, newfd) }
            fn dup3(&self, oldfd: Fd, newfd: Fd, flags: i32) -> io::Result<Fd> { (**self).dup3(oldfd, newfd, flags) }
            fn epoll_pwait(&self, epfd: Fd, events: &mut [EpollEvent], timeout_ms: i32, sigmask: Option<u64>) -> io::Result<usize> {
                (**self).epoll_pwait(epfd, events, timeout_ms, sigmask)
            }
            fn epoll_pwait2(&self, epfd: Fd, events: &mut [EpollEvent], timeout: Option<Timespec>, sigmask: Option<u64>) -> io::Result<usize> {
                (**self).epoll_pwait2(epfd, events, timeout, sigmask)
            }
            fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()> { (**self).set_nonblocking(fd, nonblocking) }
            fn poll(&self, fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> { (**self).poll(fds, timeout_ms) }
            fn fionread(&self, fd: Fd) -> io::Result<usize> { (**self).fionread(fd) }
            fn upcoming(&self, out: &mut [u64]) -> usize { (**self).upcoming(out) }
            fn get_status_flags(&self, fd: Fd) -> io::Result<i32> { (**self).get_status_flags(fd) }
            fn set_status_flags(&self, fd: Fd, flags: i32) -> io::Result<()> { (**self).set_status_flags(fd, flags) }
            fn now(&self) -> Duration { (**self).now() }
            fn short_read_drains(&self) -> bool { (**self).short_read_drains() }
        }
    )*};
}

forward!(&P, std::rc::Rc<P>, std::sync::Arc<P>, Box<P>);

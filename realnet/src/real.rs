//! [`RealNet`]: the [`Poller`] trait on real Linux system calls.
//!
//! Each method is one system call (two for `write` on a non-socket, which falls back from
//! `send` to `write`), with no checks of its own: the kernel decides every errno.

use std::collections::BTreeSet;
use std::io;
use std::mem;
use std::net::SocketAddrV4;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use netpoll::{EpollEvent, Events, Fd, PollFd, Poller};

use crate::addr::{from_sockaddr_in, to_sockaddr_in};
use crate::syscall::syscall;

/// The real Linux kernel behind the [`Poller`] trait.
///
/// `RealNet` does not own the descriptors it hands out (they are plain integers, closed with
/// [`Poller::close`]), but it remembers those it created and closes the ones still open when it
/// is dropped. It is `Send + Sync`: a multi-threaded event loop may share one.
///
/// # Examples
///
/// A loopback connection and an epoll instance, on the real kernel (the same calls run on
/// `netpoll_sim::Sim`):
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddrV4};
///
/// use netpoll::sys::{errno::EINPROGRESS, EPOLL_CTL_ADD, SOCK_NONBLOCK};
/// use netpoll::{EpollEvent, Events, Poller};
/// use netpoll_realnet::RealNet;
///
/// let net = RealNet::new();
/// let l = net.tcp_socket(SOCK_NONBLOCK)?;
/// net.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
/// net.listen(l, 8)?;
/// let ep = net.epoll_create1(0)?;
/// net.epoll_ctl(ep, EPOLL_CTL_ADD, l, Some(EpollEvent::new(Events::IN, 1)))?;
/// let c = net.tcp_socket(SOCK_NONBLOCK)?;
/// match net.connect(c, net.local_addr(l)?) {
///     Ok(()) => {}
///     Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
///     Err(e) => return Err(e),
/// }
/// let mut evs = [EpollEvent::EMPTY; 4];
/// assert_eq!(net.epoll_wait(ep, &mut evs, 5_000)?, 1);
/// let (s, peer) = net.accept4(l, SOCK_NONBLOCK)?;
/// assert_eq!(peer, net.local_addr(c)?);
/// for fd in [s, c, ep, l] {
///     net.close(fd)?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct RealNet {
    /// Descriptors created through this `RealNet` and not yet closed through it.
    created: Mutex<BTreeSet<Fd>>,
}

impl RealNet {
    /// A `RealNet` that has created no descriptors yet.
    pub fn new() -> RealNet {
        RealNet::default()
    }

    /// How many descriptors created through this `RealNet` have not been closed through it.
    pub fn open_count(&self) -> usize {
        self.created().len()
    }

    fn created(&self) -> MutexGuard<'_, BTreeSet<Fd>> {
        self.created.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `fd` as created here; passes it through.
    fn track(&self, fd: Fd) -> Fd {
        self.created().insert(fd);
        fd
    }

    fn sockopt<T>(&self, fd: Fd, level: i32, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` is a live `T` and the length passed is exactly its size.
        syscall!(setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(value).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        ))
        .map(drop)
    }

    /// `getsockname` or `getpeername`, for IPv4 sockets only (`EOPNOTSUPP` otherwise).
    fn name_of(&self, fd: Fd, peer: bool) -> io::Result<SocketAddrV4> {
        // SAFETY: `sockaddr_storage` is plain old data, for which all zeroes is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let sa = ptr::from_mut(&mut storage).cast::<libc::sockaddr>();
        if peer {
            // SAFETY: `sa` points to `len` writable bytes, and `len` is a live `socklen_t`.
            syscall!(getpeername(fd, sa, &mut len))?;
        } else {
            // SAFETY: as for `getpeername` above.
            syscall!(getsockname(fd, sa, &mut len))?;
        }
        storage_to_v4(&storage).ok_or_else(|| netpoll::sys::err(libc::EOPNOTSUPP))
    }
}

/// The IPv4 address in `storage`, if it holds one.
fn storage_to_v4(storage: &libc::sockaddr_storage) -> Option<SocketAddrV4> {
    if i32::from(storage.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says the storage holds a `sockaddr_in`; `sockaddr_storage` is larger
    // and at least as aligned, and `read` copies it out by value.
    let sin = unsafe { ptr::from_ref(storage).cast::<libc::sockaddr_in>().read() };
    Some(from_sockaddr_in(&sin))
}

impl Drop for RealNet {
    fn drop(&mut self) {
        let fds = mem::take(
            self.created
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for fd in fds {
            // SAFETY: `fd` was created by this `RealNet` and not closed through it, so (unless
            // the caller closed it behind our back, which the trait does not allow) it is open
            // and nothing else will close it: we may own it now. Dropping closes it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl Poller for RealNet {
    fn name(&self) -> &'static str {
        "real"
    }

    /// Linux's stream sockets and pipes copy until the buffer is empty or the caller's is full.
    fn short_read_drains(&self) -> bool {
        true
    }

    fn epoll_create1(&self, flags: i32) -> io::Result<Fd> {
        // SAFETY: no pointers.
        syscall!(epoll_create1(flags)).map(|fd| self.track(fd))
    }

    fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()> {
        let mut ev = event.map(|e| libc::epoll_event {
            events: e.events.bits(),
            u64: e.data,
        });
        let p = ev
            .as_mut()
            .map_or(ptr::null_mut(), ptr::from_mut::<libc::epoll_event>);
        // SAFETY: `p` is null (the kernel answers EFAULT for ADD/MOD, ignores it for DEL) or
        // points to a live `epoll_event`.
        syscall!(epoll_ctl(epfd, op, fd, p)).map(drop)
    }

    fn epoll_wait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
    ) -> io::Result<usize> {
        with_raw_events(events, |raw, max| {
            // SAFETY: `raw` has room for `max` entries.
            syscall!(epoll_wait(epfd, raw, max, timeout_ms))
        })
    }

    fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]> {
        let mut fds = [-1; 2];
        // SAFETY: `fds` has room for the two descriptors.
        syscall!(socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | flags,
            0,
            fds.as_mut_ptr()
        ))?;
        Ok(fds.map(|fd| self.track(fd)))
    }

    fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]> {
        let mut fds = [-1; 2];
        // SAFETY: `fds` has room for the two descriptors.
        syscall!(pipe2(fds.as_mut_ptr(), flags))?;
        Ok(fds.map(|fd| self.track(fd)))
    }

    fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd> {
        // SAFETY: no pointers.
        syscall!(eventfd(initval, flags)).map(|fd| self.track(fd))
    }

    fn tcp_socket(&self, flags: i32) -> io::Result<Fd> {
        // SAFETY: no pointers.
        syscall!(socket(libc::AF_INET, libc::SOCK_STREAM | flags, 0)).map(|fd| self.track(fd))
    }

    fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        let sin = to_sockaddr_in(addr);
        // SAFETY: `sin` is a live `sockaddr_in` and the length is its size.
        syscall!(bind(
            fd,
            ptr::from_ref(&sin).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))
        .map(drop)
    }

    fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()> {
        // SAFETY: no pointers.
        syscall!(listen(fd, backlog)).map(drop)
    }

    fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        let sin = to_sockaddr_in(addr);
        // SAFETY: `sin` is a live `sockaddr_in` and the length is its size.
        syscall!(connect(
            fd,
            ptr::from_ref(&sin).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))
        .map(drop)
    }

    fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> {
        // SAFETY: `sockaddr_storage` is plain old data, for which all zeroes is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let sa = ptr::from_mut(&mut storage).cast::<libc::sockaddr>();
        // SAFETY: `sa` points to `len` writable bytes, and `len` is a live `socklen_t`.
        let new = self.track(syscall!(accept4(fd, sa, &mut len, flags))?);
        let peer = storage_to_v4(&storage)
            .unwrap_or_else(|| SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));
        Ok((new, peer))
    }

    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.name_of(fd, false)
    }

    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.name_of(fd, true)
    }

    fn take_socket_error(&self, fd: Fd) -> io::Result<i32> {
        let mut value: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` is a live `c_int` and `len` its size.
        syscall!(getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            ptr::from_mut(&mut value).cast(),
            &mut len,
        ))?;
        Ok(value)
    }

    fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()> {
        let l = libc::linger {
            l_onoff: i32::from(linger_secs.is_some()),
            l_linger: linger_secs.map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
        };
        self.sockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &l)
    }

    fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is `buf.len()` writable bytes.
        let n = syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len()))?;
        Ok(n.unsigned_abs())
    }

    fn recv(&self, fd: Fd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
        // SAFETY: `buf` is `buf.len()` writable bytes.
        let n = syscall!(recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags))?;
        Ok(n.unsigned_abs())
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is `buf.len()` readable bytes.
        match syscall!(send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)) {
            Ok(n) => Ok(n.unsigned_abs()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                // SAFETY: as for `send` above.
                let n = syscall!(write(fd, buf.as_ptr().cast(), buf.len()))?;
                Ok(n.unsigned_abs())
            }
            Err(e) => Err(e),
        }
    }

    fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()> {
        // SAFETY: no pointers.
        syscall!(shutdown(fd, how)).map(drop)
    }

    fn close(&self, fd: Fd) -> io::Result<()> {
        // Forget it first: once closed, the number may be handed out again at once (by another
        // thread, maybe through this very `RealNet`), and must not be closed twice on drop.
        self.created().remove(&fd);
        // SAFETY: no pointers. The descriptor is not owned by anything in Rust (the trait hands
        // out raw numbers), so closing it invalidates no `OwnedFd`.
        syscall!(close(fd)).map(drop)
    }

    fn dup(&self, fd: Fd) -> io::Result<Fd> {
        // SAFETY: no pointers.
        syscall!(dup(fd)).map(|fd| self.track(fd))
    }

    fn dup2(&self, oldfd: Fd, newfd: Fd) -> io::Result<Fd> {
        // SAFETY: no pointers. A descriptor `newfd` referred to is closed by the kernel; if this
        // `RealNet` made it, it stays tracked under the same number, now the duplicate.
        syscall!(dup2(oldfd, newfd)).map(|fd| self.track(fd))
    }

    fn dup3(&self, oldfd: Fd, newfd: Fd, flags: i32) -> io::Result<Fd> {
        // SAFETY: no pointers (as `dup2`).
        syscall!(dup3(oldfd, newfd, flags)).map(|fd| self.track(fd))
    }

    fn epoll_pwait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
        sigmask: Option<u64>,
    ) -> io::Result<usize> {
        let set = sigmask.map(sigset);
        let mask = set
            .as_ref()
            .map_or(ptr::null(), |s| s as *const libc::sigset_t);
        with_raw_events(events, |raw, max| {
            // SAFETY: `raw` has room for `max` entries; `mask` is null or points at a live
            // `sigset_t`.
            syscall!(epoll_pwait(epfd, raw, max, timeout_ms, mask))
        })
    }

    fn epoll_pwait2(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout: Option<netpoll::Timespec>,
        sigmask: Option<u64>,
    ) -> io::Result<usize> {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.sec as libc::time_t,
            tv_nsec: t.nsec as _,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(ptr::null(), |t| t as *const libc::timespec);
        // The raw system call takes the kernel's signal set: 64 bits.
        let mask_ptr = sigmask.as_ref().map_or(ptr::null(), |m| m as *const u64);
        with_raw_events(events, |raw, max| {
            // SAFETY: `raw` has room for `max` entries; `ts_ptr` and `mask_ptr` are null or
            // point at live values of the kernel's layout (`struct __kernel_timespec` is
            // `timespec` on 64-bit targets; the set is 8 bytes, the size passed).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    epfd,
                    raw,
                    max,
                    ts_ptr,
                    mask_ptr,
                    std::mem::size_of::<u64>(),
                )
            };
            if r == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as i32)
            }
        })
    }

    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()> {
        // SAFETY: no pointers.
        let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
        let flags = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: no pointers.
        syscall!(fcntl(fd, libc::F_SETFL, flags)).map(drop)
    }

    fn poll(&self, fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
        let mut raw: Vec<libc::pollfd> = fds
            .iter()
            .map(|p| libc::pollfd {
                fd: p.fd,
                // `POLL*` values fit in 16 bits (the epoll-only flags are above them).
                events: p.events.bits() as u16 as i16,
                revents: 0,
            })
            .collect();
        // SAFETY: `raw` holds `raw.len()` live `pollfd`s.
        let n = syscall!(poll(
            raw.as_mut_ptr(),
            raw.len() as libc::nfds_t,
            timeout_ms
        ))?;
        for (p, r) in fds.iter_mut().zip(&raw) {
            p.revents = Events::from_bits(u32::from(r.revents as u16));
        }
        Ok(n.unsigned_abs() as usize)
    }

    fn fionread(&self, fd: Fd) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one `int` through the pointer, and `n` is a live `c_int`.
        syscall!(ioctl(fd, libc::FIONREAD, ptr::from_mut(&mut n)))?;
        Ok(n.unsigned_abs() as usize)
    }

    fn get_status_flags(&self, fd: Fd) -> io::Result<i32> {
        // SAFETY: no pointers.
        syscall!(fcntl(fd, libc::F_GETFL))
    }

    fn set_status_flags(&self, fd: Fd, flags: i32) -> io::Result<()> {
        // SAFETY: no pointers.
        syscall!(fcntl(fd, libc::F_SETFL, flags)).map(drop)
    }

    fn now(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a live `timespec`. CLOCK_MONOTONIC always exists on Linux.
        let res = syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ts));
        res.expect("clock_gettime(CLOCK_MONOTONIC) cannot fail");
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests;

/// Runs one call of the `epoll_wait` family on a buffer of the kernel's packed `epoll_event`s
/// with room for `events.len()` entries (reused from call to call so that a wait does not
/// allocate), then copies what it reported into `events`.
fn with_raw_events(
    events: &mut [EpollEvent],
    call: impl FnOnce(*mut libc::epoll_event, i32) -> io::Result<i32>,
) -> io::Result<usize> {
    thread_local! {
        static RAW: std::cell::RefCell<Vec<libc::epoll_event>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    RAW.with(|raw| {
        let mut raw = raw.borrow_mut();
        if raw.len() < events.len() {
            raw.resize(events.len(), libc::epoll_event { events: 0, u64: 0 });
        }
        // An empty slice passes 0, for which the kernel answers EINVAL.
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        let n = call(raw.as_mut_ptr(), max)?;
        let n = usize::try_from(n).unwrap_or(0);
        for (out, r) in events.iter_mut().zip(&raw[..n]) {
            // `epoll_event` is packed on x86_64: copy the fields out by value, no references.
            let (bits, data) = (r.events, r.u64);
            *out = EpollEvent::new(Events::from_bits(bits), data);
        }
        Ok(n)
    })
}

/// The C library's `sigset_t` holding the signals of a 64-bit kernel set (bit `n - 1`: signal
/// `n`).
fn sigset(mask: u64) -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; `sigemptyset` initialises it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid, writable `sigset_t`.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in 1..=64 {
        if mask & (1 << (sig - 1)) != 0 {
            // SAFETY: as above; an out-of-range signal number only fails with EINVAL.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    set
}

//! A temporary stand-in for `netpoll_realnet::RealNet`, used only until the real crate lands.
//! Real Linux through `libc`; it tracks its descriptors and closes them on drop.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netpoll::{EpollEvent, Events, Fd, Poller};

#[derive(Debug)]
pub struct StandIn {
    fds: Mutex<HashSet<Fd>>,
    start: Instant,
}

impl Default for StandIn {
    fn default() -> Self {
        Self::new()
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_sz(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = a.port().to_be();
    sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    sa
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )
}

impl StandIn {
    pub fn new() -> StandIn {
        StandIn {
            fds: Mutex::new(HashSet::new()),
            start: Instant::now(),
        }
    }
    fn track(&self, fd: Fd) -> Fd {
        self.fds.lock().unwrap().insert(fd);
        fd
    }
    fn owned(&self, fd: Fd) -> io::Result<()> {
        if self.fds.lock().unwrap().contains(&fd) {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    }
    fn name_of(
        &self,
        fd: Fd,
        f: unsafe extern "C" fn(
            libc::c_int,
            *mut libc::sockaddr,
            *mut libc::socklen_t,
        ) -> libc::c_int,
    ) -> io::Result<SocketAddrV4> {
        self.owned(fd)?;
        // SAFETY: zeroed sockaddr_in is valid.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: sa and len are valid for the call.
        cvt(unsafe { f(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut len) })?;
        Ok(from_sockaddr(&sa))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        for fd in self.fds.lock().unwrap().drain() {
            // SAFETY: closing a descriptor this value opened.
            unsafe { libc::close(fd) };
        }
    }
}

impl Poller for StandIn {
    fn name(&self) -> &'static str {
        "real"
    }
    fn epoll_create1(&self, flags: i32) -> io::Result<Fd> {
        // SAFETY: plain syscall.
        cvt(unsafe { libc::epoll_create1(flags) }).map(|fd| self.track(fd))
    }
    fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()> {
        self.owned(epfd)?;
        self.owned(fd)?;
        let mut ev = event.map(|e| libc::epoll_event {
            events: e.events.bits(),
            u64: e.data,
        });
        let p = match ev.as_mut() {
            Some(e) => e as *mut libc::epoll_event,
            None => std::ptr::null_mut(),
        };
        // SAFETY: p is null or valid.
        cvt(unsafe { libc::epoll_ctl(epfd, op, fd, p) }).map(|_| ())
    }
    fn epoll_wait(&self, epfd: Fd, events: &mut [EpollEvent], timeout_ms: i32) -> io::Result<usize> {
        if !events.is_empty() {
            self.owned(epfd)?;
        }
        let mut raw = vec![libc::epoll_event { events: 0, u64: 0 }; events.len().max(1)];
        // SAFETY: raw holds events.len() entries.
        let n = cvt(unsafe {
            libc::epoll_wait(epfd, raw.as_mut_ptr(), events.len() as i32, timeout_ms)
        })? as usize;
        for i in 0..n {
            events[i] = EpollEvent::new(Events::from_bits(raw[i].events), raw[i].u64);
        }
        Ok(n)
    }
    fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two.
        cvt(unsafe {
            libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | flags, 0, fds.as_mut_ptr())
        })?;
        self.track(fds[0]);
        self.track(fds[1]);
        Ok(fds)
    }
    fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
        self.track(fds[0]);
        self.track(fds[1]);
        Ok(fds)
    }
    fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd> {
        // SAFETY: plain syscall.
        cvt(unsafe { libc::eventfd(initval, flags) }).map(|fd| self.track(fd))
    }
    fn tcp_socket(&self, flags: i32) -> io::Result<Fd> {
        // SAFETY: plain syscall.
        cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | flags, 0) })
            .map(|fd| self.track(fd))
    }
    fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        self.owned(fd)?;
        let sa = to_sockaddr(addr);
        // SAFETY: sa is valid.
        cvt(unsafe {
            libc::bind(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        })
        .map(|_| ())
    }
    fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()> {
        self.owned(fd)?;
        // SAFETY: plain syscall.
        cvt(unsafe { libc::listen(fd, backlog) }).map(|_| ())
    }
    fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        self.owned(fd)?;
        let sa = to_sockaddr(addr);
        // SAFETY: sa is valid.
        cvt(unsafe {
            libc::connect(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        })
        .map(|_| ())
    }
    fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> {
        self.owned(fd)?;
        // SAFETY: zeroed sockaddr_in is valid.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: sa and len valid.
        let nfd = cvt(unsafe {
            libc::accept4(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut len, flags)
        })?;
        Ok((self.track(nfd), from_sockaddr(&sa)))
    }
    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.name_of(fd, libc::getsockname)
    }
    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.name_of(fd, libc::getpeername)
    }
    fn take_socket_error(&self, fd: Fd) -> io::Result<i32> {
        self.owned(fd)?;
        let mut v: libc::c_int = 0;
        let mut len = 4 as libc::socklen_t;
        // SAFETY: v and len valid.
        cvt(unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut v as *mut _ as *mut libc::c_void,
                &mut len,
            )
        })?;
        Ok(v)
    }
    fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()> {
        self.owned(fd)?;
        let l = libc::linger {
            l_onoff: linger_secs.is_some() as i32,
            l_linger: linger_secs.unwrap_or(0) as i32,
        };
        // SAFETY: l valid.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &l as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as u32,
            )
        })
        .map(|_| ())
    }
    fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        self.owned(fd)?;
        // SAFETY: buf valid.
        cvt_sz(unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) })
    }
    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        self.owned(fd)?;
        // SAFETY: buf valid.
        cvt_sz(unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) })
    }
    fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()> {
        self.owned(fd)?;
        // SAFETY: plain syscall.
        cvt(unsafe { libc::shutdown(fd, how) }).map(|_| ())
    }
    fn close(&self, fd: Fd) -> io::Result<()> {
        if !self.fds.lock().unwrap().remove(&fd) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        // SAFETY: closing an owned fd.
        cvt(unsafe { libc::close(fd) }).map(|_| ())
    }
    fn dup(&self, fd: Fd) -> io::Result<Fd> {
        self.owned(fd)?;
        // SAFETY: plain syscall.
        cvt(unsafe { libc::dup(fd) }).map(|fd| self.track(fd))
    }
    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()> {
        self.owned(fd)?;
        // SAFETY: plain syscalls.
        let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
        let fl = if nonblocking {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        // SAFETY: plain syscall.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl) }).map(|_| ())
    }
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

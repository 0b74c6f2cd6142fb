//! The interposed C functions. Each one routes by descriptor number (see `state.rs`): a real
//! descriptor goes to glibc unchanged, a descriptor of the calling thread's simulated kernel
//! goes to the kernel, and a simulated descriptor of another thread's run, or of a run that
//! has ended, fails with `EBADF` (closing one of an ended run succeeds quietly). Calls that
//! create descriptors go to the kernel when the thread is on a run.
//!
//! A panic never leaves these functions: it is caught, reported and the process aborts
//! (unwinding into C is undefined behaviour).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use libc::{c_int, c_uint, c_ulong, c_void, size_t, sockaddr, socklen_t, ssize_t};
use netpoll::sys::{errno, Events, O_CLOEXEC, O_NONBLOCK};
use netpoll::{EpollEvent, Fd, PollFd};
use rand::RngCore;

use crate::real;
use crate::state::{current, host_fd, route, Current, Route, IDLE_SPINS};

/// Where `clock_gettime(CLOCK_MONOTONIC)` starts on a run: as if the machine had been up an
/// hour, so that programs that subtract a few minutes from "now" do not underflow.
pub const MONOTONIC_START: Duration = Duration::from_secs(3600);
/// Where `clock_gettime(CLOCK_REALTIME)` starts on a run: 2026-01-01T00:00:00Z.
pub const REALTIME_START: Duration = Duration::from_secs(1_767_225_600);

type Cur = &'static Current<'static>;

fn set_errno(e: i32) {
    // SAFETY: `__errno_location` returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// Says on stderr why a call failed that a program on Linux would not see fail, and returns
/// the errno.
fn unsupported(e: i32, what: std::fmt::Arguments<'_>) -> i32 {
    eprintln!("netpoll-interpose: {what} (errno {e})");
    e
}

/// The errno of a kernel error. The simulated kernel's hang report has none: it is printed
/// and becomes `EDEADLK`, so the program's own error path (usually a panic) takes over.
fn errno_of(e: &io::Error) -> i32 {
    match e.raw_os_error() {
        Some(n) => n,
        None if e.kind() == io::ErrorKind::Deadlock => {
            eprintln!("netpoll-interpose: the program would hang for ever: {e}");
            errno::EDEADLK
        }
        None => unsupported(libc::EIO, format_args!("{e}")),
    }
}

fn ret_int(r: io::Result<c_int>) -> c_int {
    match r {
        Ok(v) => v,
        Err(e) => {
            set_errno(errno_of(&e));
            -1
        }
    }
}

fn ret_size(r: io::Result<usize>) -> ssize_t {
    match r {
        Ok(v) => v as ssize_t,
        Err(e) => {
            set_errno(errno_of(&e));
            -1
        }
    }
}

fn fail<T: From<i8>>(e: i32) -> T {
    set_errno(e);
    T::from(-1)
}

fn os(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// The descriptor the program sees for a new kernel descriptor; `EMFILE` if it does not fit.
fn new_fd(cur: Cur, r: io::Result<Fd>) -> io::Result<c_int> {
    let n = r?;
    host_fd(cur.slot, n).ok_or_else(|| {
        let _ = cur.sim.close(n);
        os(libc::EMFILE)
    })
}

/// Runs an interposed call's body: a panic is reported and aborts.
///
/// On a run, whatever the call made due at this instant is delivered before it returns
/// (`Sim::settle`): with zero latency, Linux's loopback timing.
pub(crate) fn guard<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let _inside = crate::state::inside();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let v = f();
        if let Some(cur) = crate::state::existing() {
            cur.sim.settle();
        }
        v
    }));
    match r {
        Ok(v) => v,
        Err(_) => {
            eprintln!(
                "netpoll-interpose: a panic inside the interposed `{name}` (a broken invariant \
                 of the interposer or the simulated kernel; message above); aborting, since it \
                 cannot unwind into C"
            );
            std::process::abort()
        }
    }
}

/// The error for a simulated descriptor the calling thread may not use.
fn misuse<T: From<i8>>(r: Route, call: &str, fd: c_int) -> T {
    match r {
        Route::Foreign => fail(unsupported(
            libc::EBADF,
            format_args!(
                "{call}(fd {fd}): a simulated descriptor used outside the thread of its run \
                 (each simulated kernel is driven by one thread)"
            ),
        )),
        _ => fail(libc::EBADF),
    }
}

/// `f` on the kernel with `fd` made non-blocking for the one call (`MSG_DONTWAIT`).
fn dontwait<T>(cur: Cur, fd: Fd, on: bool, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    if !on || cur.sim.status_flags(fd)? & O_NONBLOCK != 0 {
        return f();
    }
    cur.sim.set_nonblocking(fd, true)?;
    let r = f();
    cur.sim.set_nonblocking(fd, false)?;
    r
}

/// A zero-timeout wait found nothing, or the program yielded: after a run of these, let virtual
/// time move to the next thing that can happen, as real time would under a spinning loop.
fn idle_tick(cur: Cur) {
    let n = cur.idle.get() + 1;
    if n < IDLE_SPINS {
        cur.idle.set(n);
        return;
    }
    cur.idle.set(0);
    let now = cur.sim.now_ns();
    let step = cur
        .sim
        .next_event_ns()
        .map_or(1_000_000, |t| t.saturating_sub(now).max(1));
    cur.sim.sleep(Duration::from_nanos(step));
}

/// The program's buffer as a slice (`len` 0 allows any pointer).
///
/// # Safety
/// `buf` points to `len` writable bytes, or `len` is 0.
unsafe fn out_buf<'a>(buf: *mut c_void, len: size_t) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if buf.is_null() {
        return None;
    }
    // SAFETY: as the caller promises.
    Some(unsafe { std::slice::from_raw_parts_mut(buf.cast(), len) })
}

/// # Safety
/// `buf` points to `len` readable bytes, or `len` is 0.
unsafe fn in_buf<'a>(buf: *const c_void, len: size_t) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if buf.is_null() {
        return None;
    }
    // SAFETY: as the caller promises.
    Some(unsafe { std::slice::from_raw_parts(buf.cast(), len) })
}

/// Reads a `sockaddr_in`.
///
/// # Safety
/// `addr` points to `len` readable bytes, or is NULL.
unsafe fn read_addr(
    call: &str,
    addr: *const sockaddr,
    len: socklen_t,
) -> Result<SocketAddrV4, i32> {
    if addr.is_null() {
        return Err(libc::EFAULT);
    }
    if (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: at least the family field is readable.
    let family = unsafe { addr.cast::<libc::sa_family_t>().read_unaligned() };
    if i32::from(family) != libc::AF_INET {
        return Err(unsupported(
            libc::EAFNOSUPPORT,
            format_args!("{call}: address family {family} (the simulated kernel models IPv4 only)"),
        ));
    }
    if (len as usize) < std::mem::size_of::<libc::sockaddr_in>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: `len` covers a whole `sockaddr_in`.
    let sin = unsafe { addr.cast::<libc::sockaddr_in>().read_unaligned() };
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    ))
}

/// Writes `a` as a `sockaddr_in` into the program's buffer, truncated to `*len`, and sets
/// `*len` to the full size, as the kernel does. NULL `addr` writes nothing.
///
/// # Safety
/// `addr` points to `*len` writable bytes, or is NULL; `len` is valid if `addr` is not NULL.
unsafe fn write_addr(a: SocketAddrV4, addr: *mut sockaddr, len: *mut socklen_t) -> Result<(), i32> {
    if addr.is_null() {
        return Ok(());
    }
    if len.is_null() {
        return Err(libc::EFAULT);
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let full = std::mem::size_of::<libc::sockaddr_in>();
    // SAFETY: `len` is valid (checked non-NULL, the caller's promise).
    let room = unsafe { *len } as usize;
    // SAFETY: `addr` has `room` writable bytes; we copy at most that many from `sin`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&sin as *const libc::sockaddr_in).cast::<u8>(),
            addr.cast::<u8>(),
            room.min(full),
        );
        *len = full as socklen_t;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// epoll and eventfd

/// `epoll_create1(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    guard("epoll_create1", || match current() {
        // SAFETY: forwarded unchanged.
        None => unsafe { real::epoll_create1(flags) },
        Some(cur) => ret_int(new_fd(cur, cur.sim.epoll_create1(flags))),
    })
}

/// `epoll_create(2)`: `size` must be positive and is otherwise ignored, as on Linux.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    if size <= 0 {
        return fail(libc::EINVAL);
    }
    // SAFETY: the same call with no flags.
    unsafe { epoll_create1(0) }
}

/// `epoll_ctl(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut libc::epoll_event,
) -> c_int {
    guard("epoll_ctl", || match (route(epfd), route(fd)) {
        // SAFETY: forwarded unchanged.
        (Route::Real, Route::Real) => unsafe { real::epoll_ctl(epfd, op, fd, ev) },
        (Route::Sim(cur, ep), Route::Sim(_, n)) => {
            let event = (!ev.is_null()).then(|| {
                // SAFETY: a non-NULL `ev` points to the program's `epoll_event`.
                let e = unsafe { ev.read_unaligned() };
                EpollEvent::new(Events::from_bits(e.events), e.u64)
            });
            ret_int(cur.sim.epoll_ctl(ep, op, n, event).map(|()| 0))
        }
        (Route::Sim(..), Route::Real) => fail(unsupported(
            libc::EPERM,
            format_args!("epoll_ctl: a simulated epoll instance cannot watch real fd {fd}"),
        )),
        (Route::Real, Route::Sim(..)) => fail(unsupported(
            libc::EBADF,
            format_args!("epoll_ctl: real epoll fd {epfd} cannot watch simulated fd {fd}"),
        )),
        (Route::Sim(..), r) | (r, _) => misuse(r, "epoll_ctl", fd.max(epfd)),
    })
}

/// The shared body of the `epoll_wait` family on the kernel.
///
/// # Safety
/// `out` has room for `max` events.
unsafe fn sim_epoll_wait(
    cur: Cur,
    ep: Fd,
    out: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    if max <= 0 || max > (i32::MAX / 16) {
        return fail(libc::EINVAL);
    }
    if out.is_null() {
        return fail(libc::EFAULT);
    }
    let mut buf = cur.events.borrow_mut();
    buf.clear();
    buf.resize(max as usize, EpollEvent::EMPTY);
    let r = cur.sim.epoll_wait(ep, &mut buf, timeout);
    if let Ok(n) = r {
        for (i, e) in buf[..n].iter().enumerate() {
            let ev = libc::epoll_event {
                events: e.events.bits(),
                u64: e.data,
            };
            // SAFETY: `i < n <= max`, and `out` has room for `max` events.
            unsafe { out.add(i).write_unaligned(ev) };
        }
        if n == 0 && timeout == 0 {
            idle_tick(cur);
        } else {
            cur.idle.set(0);
        }
    }
    ret_size(r) as c_int
}

/// `epoll_wait(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    guard("epoll_wait", || match route(epfd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::epoll_wait(epfd, ev, max, timeout) },
        // SAFETY: the program's buffer of `max` events.
        Route::Sim(cur, ep) => unsafe { sim_epoll_wait(cur, ep, ev, max, timeout) },
        r => misuse(r, "epoll_wait", epfd),
    })
}

/// `epoll_pwait(2)`. The signal mask is ignored on the simulated kernel (it has no signals).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const libc::sigset_t,
) -> c_int {
    guard("epoll_pwait", || match route(epfd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::epoll_pwait(epfd, ev, max, timeout, mask) },
        // SAFETY: the program's buffer of `max` events.
        Route::Sim(cur, ep) => unsafe { sim_epoll_wait(cur, ep, ev, max, timeout) },
        r => misuse(r, "epoll_pwait", epfd),
    })
}

/// `eventfd(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn eventfd(init: c_uint, flags: c_int) -> c_int {
    guard("eventfd", || match current() {
        // SAFETY: forwarded unchanged.
        None => unsafe { real::eventfd(init, flags) },
        Some(cur) => ret_int(new_fd(cur, cur.sim.eventfd(init, flags))),
    })
}

// ---------------------------------------------------------------------------------------------
// sockets

/// `socket(2)`: on a run, `AF_INET` stream sockets only.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    guard("socket", || {
        let Some(cur) = current() else {
            // SAFETY: forwarded unchanged.
            return unsafe { real::socket(domain, ty, proto) };
        };
        let flags = ty & (O_NONBLOCK | O_CLOEXEC);
        let kind = ty & !(O_NONBLOCK | O_CLOEXEC);
        if domain != libc::AF_INET {
            return fail(unsupported(
                libc::EAFNOSUPPORT,
                format_args!("socket: domain {domain} (the simulated kernel models AF_INET only)"),
            ));
        }
        if kind != libc::SOCK_STREAM || !(proto == 0 || proto == libc::IPPROTO_TCP) {
            return fail(unsupported(
                libc::EPROTONOSUPPORT,
                format_args!(
                    "socket: type {kind}, protocol {proto} (the simulated kernel models TCP only)"
                ),
            ));
        }
        ret_int(new_fd(cur, cur.sim.tcp_socket(flags)))
    })
}

/// `socketpair(2)`: on a run, `AF_UNIX` stream pairs only.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    ty: c_int,
    proto: c_int,
    sv: *mut c_int,
) -> c_int {
    guard("socketpair", || {
        let Some(cur) = current() else {
            // SAFETY: forwarded unchanged.
            return unsafe { real::socketpair(domain, ty, proto, sv) };
        };
        let kind = ty & !(O_NONBLOCK | O_CLOEXEC);
        if domain != libc::AF_UNIX || kind != libc::SOCK_STREAM || proto != 0 {
            return fail(unsupported(
                libc::EOPNOTSUPP,
                format_args!("socketpair: domain {domain}, type {kind} (the simulated kernel models AF_UNIX streams only)"),
            ));
        }
        if sv.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: `sv` points to two ints.
        ret_int(pair(
            cur,
            cur.sim.socketpair(ty & (O_NONBLOCK | O_CLOEXEC)),
            unsafe { &mut *sv.cast::<[c_int; 2]>() },
        ))
    })
}

fn pair(cur: Cur, r: io::Result<[Fd; 2]>, out: &mut [c_int; 2]) -> io::Result<c_int> {
    let [a, b] = r?;
    match (host_fd(cur.slot, a), host_fd(cur.slot, b)) {
        (Some(x), Some(y)) => {
            *out = [x, y];
            Ok(0)
        }
        _ => {
            let _ = cur.sim.close(a);
            let _ = cur.sim.close(b);
            Err(os(libc::EMFILE))
        }
    }
}

/// `bind(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    guard("bind", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::bind(fd, addr, len) },
        // SAFETY: the program's address of `len` bytes.
        Route::Sim(cur, n) => match unsafe { read_addr("bind", addr, len) } {
            Ok(a) => ret_int(cur.sim.bind(n, a).map(|()| 0)),
            Err(e) => fail(e),
        },
        r => misuse(r, "bind", fd),
    })
}

/// `listen(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    guard("listen", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::listen(fd, backlog) },
        Route::Sim(cur, n) => ret_int(cur.sim.listen(n, backlog).map(|()| 0)),
        r => misuse(r, "listen", fd),
    })
}

/// `accept4(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    guard("accept4", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::accept4(fd, addr, len, flags) },
        Route::Sim(cur, n) => {
            let r = cur.sim.accept4(n, flags).and_then(|(c, peer)| {
                let h = new_fd(cur, Ok(c))?;
                // SAFETY: the program's address buffer of `*len` bytes, or NULL.
                match unsafe { write_addr(peer, addr, len) } {
                    Ok(()) => Ok(h),
                    Err(e) => {
                        let _ = cur.sim.close(c);
                        Err(os(e))
                    }
                }
            });
            ret_int(r)
        }
        r => misuse(r, "accept4", fd),
    })
}

/// `accept(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => guard("accept", || unsafe { real::accept(fd, addr, len) }),
        // SAFETY: the same call with no flags.
        _ => unsafe { accept4(fd, addr, len, 0) },
    }
}

/// `connect(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    guard("connect", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::connect(fd, addr, len) },
        // SAFETY: the program's address of `len` bytes.
        Route::Sim(cur, n) => match unsafe { read_addr("connect", addr, len) } {
            Ok(a) => ret_int(cur.sim.connect(n, a).map(|()| 0)),
            Err(e) => fail(e),
        },
        r => misuse(r, "connect", fd),
    })
}

/// `getsockname(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    guard("getsockname", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::getsockname(fd, addr, len) },
        Route::Sim(cur, n) => match cur.sim.local_addr(n) {
            // SAFETY: the program's address buffer.
            Ok(a) => match unsafe { write_addr(a, addr, len) } {
                Ok(()) => 0,
                Err(e) => fail(e),
            },
            Err(e) => ret_int(Err(e)),
        },
        r => misuse(r, "getsockname", fd),
    })
}

/// `getpeername(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    guard("getpeername", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::getpeername(fd, addr, len) },
        Route::Sim(cur, n) => match cur.sim.peer_addr(n) {
            // SAFETY: the program's address buffer.
            Ok(a) => match unsafe { write_addr(a, addr, len) } {
                Ok(()) => 0,
                Err(e) => fail(e),
            },
            Err(e) => ret_int(Err(e)),
        },
        r => misuse(r, "getpeername", fd),
    })
}

/// Options a program may set that the kernel accepts and remembers but does not model:
/// `SO_REUSEADDR` (the kernel has no `TIME_WAIT` to reuse), `SO_REUSEPORT`, `SO_KEEPALIVE`
/// (connections here never go idle long enough), `TCP_NODELAY` (no Nagle delay is modelled).
fn remembered(level: c_int, name: c_int) -> bool {
    matches!(
        (level, name),
        (
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR | libc::SO_REUSEPORT | libc::SO_KEEPALIVE
        ) | (libc::IPPROTO_TCP, libc::TCP_NODELAY)
    )
}

/// `getsockopt(2)`: `SO_ERROR`, `SO_TYPE`, `SO_LINGER`, and the options [`setsockopt`]
/// remembers.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    guard("getsockopt", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::getsockopt(fd, level, name, val, len) },
        Route::Sim(cur, n) => {
            if (level, name) == (libc::SOL_SOCKET, libc::SO_LINGER) {
                let r = cur.sim.status_flags(n).map(|_| {
                    let v = cur
                        .opts
                        .borrow()
                        .get(&(n, level, name))
                        .copied()
                        .unwrap_or(-1);
                    libc::linger {
                        l_onoff: i32::from(v >= 0),
                        l_linger: v.max(0),
                    }
                });
                return match r {
                    Ok(l) => {
                        if val.is_null() || len.is_null() {
                            return fail(libc::EFAULT);
                        }
                        let full = std::mem::size_of::<libc::linger>();
                        // SAFETY: `len` and `val` are the program's; we write at most `*len` bytes.
                        unsafe {
                            let room = (*len as usize).min(full);
                            let src = (&l as *const libc::linger).cast::<u8>();
                            std::ptr::copy_nonoverlapping(src, val.cast::<u8>(), room);
                            *len = room as socklen_t;
                        }
                        0
                    }
                    Err(e) => ret_int(Err(e)),
                };
            }
            let v = match (level, name) {
                (libc::SOL_SOCKET, libc::SO_ERROR) => cur.sim.take_socket_error(n),
                (libc::SOL_SOCKET, libc::SO_TYPE) => cur.sim.status_flags(n).map(|_| libc::SOCK_STREAM),
                _ if remembered(level, name) => cur
                    .sim
                    .status_flags(n)
                    .map(|_| cur.opts.borrow().get(&(n, level, name)).copied().unwrap_or(0)),
                _ => Err(os(unsupported(
                    libc::ENOPROTOOPT,
                    format_args!("getsockopt(fd {fd}, level {level}, option {name}): not modelled by the simulated kernel"),
                ))),
            };
            match v {
                Ok(v) => {
                    if val.is_null() || len.is_null() {
                        return fail(libc::EFAULT);
                    }
                    // SAFETY: `len` and `val` are the program's; we write at most `*len` bytes.
                    unsafe {
                        let room = (*len as usize).min(4);
                        std::ptr::copy_nonoverlapping(
                            (&v as *const c_int).cast::<u8>(),
                            val.cast::<u8>(),
                            room,
                        );
                        *len = room as socklen_t;
                    }
                    0
                }
                Err(e) => ret_int(Err(e)),
            }
        }
        r => misuse(r, "getsockopt", fd),
    })
}

/// `setsockopt(2)`: `SO_LINGER`, and the options the kernel remembers without modelling
/// (`SO_REUSEADDR`, `SO_REUSEPORT`, `SO_KEEPALIVE`, `TCP_NODELAY`). Any other option fails with
/// `ENOPROTOOPT` and a message.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    guard("setsockopt", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::setsockopt(fd, level, name, val, len) },
        Route::Sim(cur, n) => {
            if val.is_null() {
                return fail(libc::EFAULT);
            }
            if (level, name) == (libc::SOL_SOCKET, libc::SO_LINGER) {
                if (len as usize) < std::mem::size_of::<libc::linger>() {
                    return fail(libc::EINVAL);
                }
                // SAFETY: `len` covers a `struct linger`.
                let l = unsafe { val.cast::<libc::linger>().read_unaligned() };
                let secs = (l.l_onoff != 0).then_some(l.l_linger.max(0) as u32);
                return ret_int(cur.sim.set_linger(n, secs).map(|()| {
                    let v = secs.map_or(-1, |s| s.min(i32::MAX as u32) as i32);
                    cur.opts.borrow_mut().insert((n, level, name), v);
                    0
                }));
            }
            if !remembered(level, name) {
                return fail(unsupported(
                    libc::ENOPROTOOPT,
                    format_args!("setsockopt(fd {fd}, level {level}, option {name}): not modelled by the simulated kernel"),
                ));
            }
            if (len as usize) < std::mem::size_of::<c_int>() {
                return fail(libc::EINVAL);
            }
            // SAFETY: `len` covers an int.
            let v = unsafe { val.cast::<c_int>().read_unaligned() };
            ret_int(cur.sim.status_flags(n).map(|_| {
                cur.opts
                    .borrow_mut()
                    .insert((n, level, name), i32::from(v != 0));
                0
            }))
        }
        r => misuse(r, "setsockopt", fd),
    })
}

// ---------------------------------------------------------------------------------------------
// data

/// Flags `recv`/`send` accept on the kernel.
const DATA_FLAGS: c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

fn check_flags(call: &str, fd: c_int, flags: c_int) -> Result<bool, i32> {
    if flags & !DATA_FLAGS != 0 {
        return Err(unsupported(
            libc::EOPNOTSUPP,
            format_args!(
                "{call}(fd {fd}, flags {flags:#x}): only MSG_DONTWAIT and MSG_NOSIGNAL are modelled"
            ),
        ));
    }
    Ok(flags & libc::MSG_DONTWAIT != 0)
}

/// Flags `recv`, `recvfrom` and `recvmsg` accept on the kernel.
const RECV_FLAGS: c_int = DATA_FLAGS | libc::MSG_PEEK;

/// `readv` (flags 0) reads, so that it works on pipes; the socket calls go to
/// [`Poller::recv`], which answers `ENOTSOCK` for a pipe as Linux does, and peeks and honours
/// `MSG_DONTWAIT` without touching the file's `O_NONBLOCK`.
fn sim_recv(cur: Cur, call: &str, fd: c_int, n: Fd, buf: &mut [u8], flags: c_int) -> ssize_t {
    if call == "readv" {
        return ret_size(cur.sim.read(n, buf));
    }
    if flags & !RECV_FLAGS != 0 {
        return fail(unsupported(
            libc::EOPNOTSUPP,
            format_args!(
                "{call}(fd {fd}, flags {flags:#x}): only MSG_PEEK, MSG_DONTWAIT and MSG_NOSIGNAL \
                 are modelled"
            ),
        ));
    }
    ret_size(cur.sim.recv(n, buf, flags))
}

fn sim_send(cur: Cur, call: &str, fd: c_int, n: Fd, buf: &[u8], flags: c_int) -> ssize_t {
    match check_flags(call, fd, flags) {
        Ok(dw) => ret_size(dontwait(cur, n, dw, || cur.sim.write(n, buf))),
        Err(e) => fail(e),
    }
}

/// `read(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    guard("read", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::read(fd, buf, len) },
        // SAFETY: the program's buffer of `len` bytes.
        Route::Sim(cur, n) => match unsafe { out_buf(buf, len) } {
            Some(b) => ret_size(cur.sim.read(n, b)),
            None => fail(libc::EFAULT),
        },
        r => misuse(r, "read", fd),
    })
}

/// `write(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    guard("write", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::write(fd, buf, len) },
        // SAFETY: the program's buffer of `len` bytes.
        Route::Sim(cur, n) => match unsafe { in_buf(buf, len) } {
            Some(b) => ret_size(cur.sim.write(n, b)),
            None => fail(libc::EFAULT),
        },
        r => misuse(r, "write", fd),
    })
}

/// `recv(2)`: `MSG_DONTWAIT` and `MSG_NOSIGNAL` on the kernel.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    guard("recv", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::recv(fd, buf, len, flags) },
        // SAFETY: the program's buffer of `len` bytes.
        Route::Sim(cur, n) => match unsafe { out_buf(buf, len) } {
            Some(b) => sim_recv(cur, "recv", fd, n, b, flags),
            None => fail(libc::EFAULT),
        },
        r => misuse(r, "recv", fd),
    })
}

/// `recvfrom(2)`: as [`recv`]; a connected stream socket reports no source address.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    guard("recvfrom", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::recvfrom(fd, buf, len, flags, addr, alen) },
        // SAFETY: the program's buffer of `len` bytes.
        Route::Sim(cur, n) => match unsafe { out_buf(buf, len) } {
            Some(b) => {
                let r = sim_recv(cur, "recvfrom", fd, n, b, flags);
                if r >= 0 && !addr.is_null() && !alen.is_null() {
                    // SAFETY: the program's length word.
                    unsafe { *alen = 0 };
                }
                r
            }
            None => fail(libc::EFAULT),
        },
        r => misuse(r, "recvfrom", fd),
    })
}

/// `send(2)`: `MSG_DONTWAIT` and `MSG_NOSIGNAL` on the kernel (which raises no `SIGPIPE`).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    guard("send", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::send(fd, buf, len, flags) },
        // SAFETY: the program's buffer of `len` bytes.
        Route::Sim(cur, n) => match unsafe { in_buf(buf, len) } {
            Some(b) => sim_send(cur, "send", fd, n, b, flags),
            None => fail(libc::EFAULT),
        },
        r => misuse(r, "send", fd),
    })
}

/// `sendto(2)`: as [`send`]; the address is ignored, as Linux does for a connected TCP socket.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    guard("sendto", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::sendto(fd, buf, len, flags, addr, alen) },
        // SAFETY: the program's buffer of `len` bytes.
        Route::Sim(cur, n) => match unsafe { in_buf(buf, len) } {
            Some(b) => sim_send(cur, "sendto", fd, n, b, flags),
            None => fail(libc::EFAULT),
        },
        r => misuse(r, "sendto", fd),
    })
}

/// The total length of an `iovec` array, or `EINVAL`.
///
/// # Safety
/// `iov` points to `cnt` entries.
unsafe fn iov_slice<'a>(iov: *const libc::iovec, cnt: c_int) -> Result<&'a [libc::iovec], i32> {
    if !(0..=libc::UIO_MAXIOV).contains(&cnt) {
        return Err(libc::EINVAL);
    }
    if cnt == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: as the caller promises.
    Ok(unsafe { std::slice::from_raw_parts(iov, cnt as usize) })
}

/// Reads once into a scratch buffer as long as all of `iov`, then scatters.
fn sim_readv(cur: Cur, call: &str, fd: c_int, n: Fd, iov: &[libc::iovec], flags: c_int) -> ssize_t {
    let total: usize = iov.iter().map(|v| v.iov_len).sum();
    let mut tmp = vec![0u8; total];
    let r = sim_recv(cur, call, fd, n, &mut tmp, flags);
    if r > 0 {
        let mut rest = &tmp[..r as usize];
        for v in iov {
            if rest.is_empty() {
                break;
            }
            let k = v.iov_len.min(rest.len());
            // SAFETY: each `iovec` names `iov_len` writable bytes of the program's.
            unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), v.iov_base.cast::<u8>(), k) };
            rest = &rest[k..];
        }
    }
    r
}

/// Gathers `iov` into one buffer and writes it once.
fn sim_writev(
    cur: Cur,
    call: &str,
    fd: c_int,
    n: Fd,
    iov: &[libc::iovec],
    flags: c_int,
) -> ssize_t {
    let mut tmp = Vec::with_capacity(iov.iter().map(|v| v.iov_len).sum());
    for v in iov {
        // SAFETY: each `iovec` names `iov_len` readable bytes of the program's.
        if let Some(b) = unsafe { in_buf(v.iov_base, v.iov_len) } {
            tmp.extend_from_slice(b);
        }
    }
    sim_send(cur, call, fd, n, &tmp, flags)
}

/// `readv(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> ssize_t {
    guard("readv", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::readv(fd, iov, cnt) },
        // SAFETY: the program's array of `cnt` iovecs.
        Route::Sim(cur, n) => match unsafe { iov_slice(iov, cnt) } {
            Ok(v) => sim_readv(cur, "readv", fd, n, v, 0),
            Err(e) => fail(e),
        },
        r => misuse(r, "readv", fd),
    })
}

/// `writev(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> ssize_t {
    guard("writev", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::writev(fd, iov, cnt) },
        // SAFETY: the program's array of `cnt` iovecs.
        Route::Sim(cur, n) => match unsafe { iov_slice(iov, cnt) } {
            Ok(v) => sim_writev(cur, "writev", fd, n, v, 0),
            Err(e) => fail(e),
        },
        r => misuse(r, "writev", fd),
    })
}

/// `recvmsg(2)`: the data part only; no address and no control messages are returned.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    guard("recvmsg", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::recvmsg(fd, msg, flags) },
        Route::Sim(cur, n) => {
            if msg.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: the program's `msghdr`.
            let m = unsafe { &mut *msg };
            // SAFETY: the program's array of `msg_iovlen` iovecs.
            match unsafe { iov_slice(m.msg_iov, m.msg_iovlen as c_int) } {
                Ok(v) => {
                    let r = sim_readv(cur, "recvmsg", fd, n, v, flags);
                    if r >= 0 {
                        m.msg_namelen = 0;
                        m.msg_controllen = 0;
                        m.msg_flags = 0;
                    }
                    r
                }
                Err(e) => fail(e),
            }
        }
        r => misuse(r, "recvmsg", fd),
    })
}

/// `sendmsg(2)`: the data part only; control messages fail with `EOPNOTSUPP`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
    guard("sendmsg", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::sendmsg(fd, msg, flags) },
        Route::Sim(cur, n) => {
            if msg.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: the program's `msghdr`.
            let m = unsafe { &*msg };
            if m.msg_controllen != 0 {
                return fail(unsupported(
                    libc::EOPNOTSUPP,
                    format_args!("sendmsg(fd {fd}): control messages are not modelled"),
                ));
            }
            // SAFETY: the program's array of `msg_iovlen` iovecs.
            match unsafe { iov_slice(m.msg_iov, m.msg_iovlen as c_int) } {
                Ok(v) => sim_writev(cur, "sendmsg", fd, n, v, flags),
                Err(e) => fail(e),
            }
        }
        r => misuse(r, "sendmsg", fd),
    })
}

// ---------------------------------------------------------------------------------------------
// descriptors

/// `shutdown(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    guard("shutdown", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::shutdown(fd, how) },
        Route::Sim(cur, n) => ret_int(cur.sim.shutdown(n, how).map(|()| 0)),
        r => misuse(r, "shutdown", fd),
    })
}

/// `close(2)`. Closing a descriptor of a run that has ended succeeds quietly: its kernel, and
/// every open file in it, went with the run (std's debug check of owned descriptors relies on
/// this when a socket outlives its run).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    guard("close", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::close(fd) },
        Route::Sim(cur, n) => {
            let r = cur.sim.close(n);
            if r.is_ok() {
                cur.opts.borrow_mut().retain(|k, _| k.0 != n);
            }
            ret_int(r.map(|()| 0))
        }
        Route::Stale => 0,
        r => misuse(r, "close", fd),
    })
}

/// `dup(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    guard("dup", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::dup(fd) },
        Route::Sim(cur, n) => ret_int(new_fd(cur, cur.sim.dup(n))),
        r => misuse(r, "dup", fd),
    })
}

/// `pipe2(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    guard("pipe2", || match current() {
        // SAFETY: forwarded unchanged.
        None => unsafe { real::pipe2(fds, flags) },
        Some(cur) => {
            if fds.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: `fds` points to two ints.
            ret_int(pair(cur, cur.sim.pipe2(flags), unsafe {
                &mut *fds.cast::<[c_int; 2]>()
            }))
        }
    })
}

/// `pipe(2)`.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn pipe(fds: *mut c_int) -> c_int {
    match current() {
        // SAFETY: forwarded unchanged.
        None => guard("pipe", || unsafe { real::pipe(fds) }),
        // SAFETY: the same call with no flags.
        Some(_) => unsafe { pipe2(fds, 0) },
    }
}

/// `fcntl(2)`: `F_GETFD`, `F_SETFD`, `F_GETFL`, `F_SETFL` (`O_NONBLOCK`), `F_DUPFD` and
/// `F_DUPFD_CLOEXEC` (the lowest free descriptor; the minimum is not honoured) on the kernel.
/// `F_GETFD` on a descriptor of an ended run succeeds, as `close` does.
///
/// Declared with a fixed third argument: every command here takes at most one integer or
/// pointer, and on x86-64 and AArch64 Linux a variadic callee finds it where a fixed one does.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    guard("fcntl", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::fcntl(fd, cmd, arg) },
        Route::Sim(cur, n) => {
            let sim = &cur.sim;
            let r = match cmd {
                libc::F_GETFD => sim.status_flags(n).map(|_| libc::FD_CLOEXEC),
                libc::F_SETFD => sim.status_flags(n).map(|_| 0),
                libc::F_GETFL => sim.get_status_flags(n),
                libc::F_SETFL => {
                    let flags = arg as c_int;
                    let unmodelled =
                        libc::O_APPEND | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;
                    if flags & unmodelled != 0 && sim.status_flags(n).is_ok() {
                        return fail(unsupported(
                            libc::EINVAL,
                            format_args!(
                                "fcntl(fd {fd}, F_SETFL, {flags:#o}): the simulated kernel models \
                                 O_NONBLOCK only"
                            ),
                        ));
                    }
                    sim.set_status_flags(n, flags).map(|()| 0)
                }
                libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => new_fd(cur, sim.dup(n)),
                _ => Err(os(unsupported(
                    libc::EINVAL,
                    format_args!("fcntl(fd {fd}, cmd {cmd}): not modelled by the simulated kernel"),
                ))),
            };
            ret_int(r)
        }
        Route::Stale if cmd == libc::F_GETFD => 0,
        r => misuse(r, "fcntl", fd),
    })
}

/// `ioctl(2)`: `FIONBIO`, `FIONREAD`, `FIOCLEX` and `FIONCLEX` on the kernel. (Same declaration note as
/// [`fcntl`].)
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: *mut c_void) -> c_int {
    guard("ioctl", || match route(fd) {
        // SAFETY: forwarded unchanged.
        Route::Real => unsafe { real::ioctl(fd, req, arg) },
        Route::Sim(cur, n) => {
            let r = match req {
                libc::FIONBIO => {
                    if arg.is_null() {
                        return fail(libc::EFAULT);
                    }
                    // SAFETY: FIONBIO's argument is a pointer to an int.
                    let on = unsafe { arg.cast::<c_int>().read_unaligned() } != 0;
                    cur.sim.set_nonblocking(n, on).map(|()| 0)
                }
                libc::FIOCLEX | libc::FIONCLEX => cur.sim.status_flags(n).map(|_| 0),
                libc::FIONREAD => {
                    if arg.is_null() {
                        return fail(libc::EFAULT);
                    }
                    cur.sim.fionread(n).map(|k| {
                        let k = c_int::try_from(k).unwrap_or(c_int::MAX);
                        // SAFETY: FIONREAD's argument is a pointer to an int.
                        unsafe { arg.cast::<c_int>().write_unaligned(k) };
                        0
                    })
                }
                _ => Err(os(unsupported(
                    libc::ENOTTY,
                    format_args!(
                        "ioctl(fd {fd}, request {req:#x}): not modelled by the simulated kernel"
                    ),
                ))),
            };
            ret_int(r)
        }
        r => misuse(r, "ioctl", fd),
    })
}

/// `poll(2)`. On the kernel: simulated descriptors only (a mix with real ones fails with
/// `EINVAL` and a message); waiting lets virtual time pass to the next delivery or the timeout.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int {
    guard("poll", || {
        let list: &mut [libc::pollfd] = if nfds == 0 {
            &mut []
        } else if fds.is_null() {
            return fail(libc::EFAULT);
        } else {
            // SAFETY: the program's array of `nfds` entries.
            unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) }
        };
        let Some(cur) = current().filter(|_| list.iter().any(|p| p.fd >= crate::state::SIM_BASE))
        else {
            // SAFETY: forwarded unchanged.
            return unsafe { real::poll(fds, nfds, timeout) };
        };
        if list
            .iter()
            .any(|p| (0..crate::state::SIM_BASE).contains(&p.fd))
        {
            return fail(unsupported(
                libc::EINVAL,
                format_args!("poll: real and simulated descriptors in one call"),
            ));
        }
        sim_poll(cur, list, timeout)
    })
}

/// `poll` on the kernel ([`Poller::poll`]): virtual time passes while it waits. A zero-timeout
/// poll that finds nothing counts towards the idle spin that lets time move.
fn sim_poll(cur: Cur, list: &mut [libc::pollfd], timeout: c_int) -> c_int {
    let mut fds: Vec<PollFd> = list
        .iter()
        .map(|p| {
            let fd = match route(p.fd) {
                _ if p.fd < 0 => -1,
                Route::Sim(_, n) => n,
                // Not one of this run's descriptors: a number the kernel never hands out, so
                // that it reports `POLLNVAL` as Linux does for a closed one.
                _ => Fd::MAX,
            };
            PollFd::new(fd, Events::from_bits(u32::from(p.events as u16)))
        })
        .collect();
    let r = cur.sim.poll(&mut fds, timeout);
    for (p, f) in list.iter_mut().zip(&fds) {
        p.revents = f.revents.bits() as u16 as i16;
    }
    match r {
        Ok(0) if timeout == 0 => {
            idle_tick(cur);
            0
        }
        Ok(n) => {
            if n > 0 {
                cur.idle.set(0);
            }
            n as c_int
        }
        Err(e) => fail(errno_of(&e)),
    }
}

// ---------------------------------------------------------------------------------------------
// time and randomness

/// `clock_gettime(2)`: on a run, the monotonic clocks read virtual time (from
/// [`MONOTONIC_START`]) and the real-time clocks read [`REALTIME_START`] plus virtual time.
/// CPU-time clocks are forwarded.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> c_int {
    guard("clock_gettime", || {
        let Some(cur) = current() else {
            // SAFETY: forwarded unchanged.
            return unsafe { real::clock_gettime(clock, tp) };
        };
        let start = match clock {
            libc::CLOCK_MONOTONIC
            | libc::CLOCK_MONOTONIC_RAW
            | libc::CLOCK_MONOTONIC_COARSE
            | libc::CLOCK_BOOTTIME => MONOTONIC_START,
            libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_TAI => REALTIME_START,
            // SAFETY: forwarded unchanged.
            _ => return unsafe { real::clock_gettime(clock, tp) },
        };
        if tp.is_null() {
            return fail(libc::EFAULT);
        }
        let t = start + cur.sim.now();
        // SAFETY: the program's timespec.
        unsafe {
            (*tp).tv_sec = t.as_secs() as libc::time_t;
            (*tp).tv_nsec = t.subsec_nanos() as libc::c_long;
        }
        0
    })
}

fn duration_of(ts: &libc::timespec) -> Option<Duration> {
    (ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec))
        .then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// `nanosleep(2)`: on a run, lets the time pass virtually (this is `std::thread::sleep`).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    guard("nanosleep", || {
        let Some(cur) = current() else {
            // SAFETY: forwarded unchanged.
            return unsafe { real::nanosleep(req, rem) };
        };
        if req.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: the program's timespec.
        match duration_of(unsafe { &*req }) {
            Some(d) => {
                cur.sim.sleep(d);
                0
            }
            None => fail(libc::EINVAL),
        }
    })
}

/// `clock_nanosleep(2)`: on a run, relative or absolute (`TIMER_ABSTIME`) sleeps on the
/// monotonic and real-time clocks pass virtually. Returns the error number, as the C function.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    guard("clock_nanosleep", || {
        let Some(cur) = current() else {
            // SAFETY: forwarded unchanged.
            return unsafe { real::clock_nanosleep(clock, flags, req, rem) };
        };
        let start = match clock {
            libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME => MONOTONIC_START,
            libc::CLOCK_REALTIME | libc::CLOCK_TAI => REALTIME_START,
            _ => {
                return unsupported(
                    libc::ENOTSUP,
                    format_args!("clock_nanosleep(clock {clock}) on the simulated kernel"),
                )
            }
        };
        if req.is_null() {
            return libc::EFAULT;
        }
        // SAFETY: the program's timespec.
        let Some(d) = duration_of(unsafe { &*req }) else {
            return libc::EINVAL;
        };
        let d = if flags & libc::TIMER_ABSTIME != 0 {
            d.saturating_sub(start + cur.sim.now())
        } else {
            d
        };
        cur.sim.sleep(d);
        0
    })
}

/// `sched_yield(2)`: on a run, a spin of yields lets virtual time move (see `idle_tick`).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn sched_yield() -> c_int {
    guard("sched_yield", || match current() {
        // SAFETY: forwarded unchanged.
        None => unsafe { real::sched_yield() },
        Some(cur) => {
            crate::threads::yield_now(cur);
            idle_tick(cur);
            0
        }
    })
}

/// `getrandom(2)`: on a run, bytes from the run's own ChaCha stream
/// (`netpoll_sim::rng::Stream::Getrandom`), so that std's hash-map keys and tokio's seeds
/// created on the run follow its seed.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut c_void, len: size_t, flags: c_uint) -> ssize_t {
    guard("getrandom", || match current() {
        // SAFETY: forwarded unchanged.
        None => unsafe { real::getrandom(buf, len, flags) },
        // SAFETY: the program's buffer of `len` bytes.
        Some(cur) => match unsafe { out_buf(buf, len) } {
            Some(b) => {
                cur.rng.borrow_mut().fill_bytes(b);
                len as ssize_t
            }
            None => fail(libc::EFAULT),
        },
    })
}

/// `pthread_create(3)`: a thread of a threaded run ([`crate::run_threads`]) starts another
/// simulated thread on the same kernel (`threads.rs`). A thread on a one-thread run cannot
/// start another (its kernel is driven by one thread): `EAGAIN` and a message. This is what
/// tokio's `spawn_blocking`, its name resolution and its multi-thread runtime run into there.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    t: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
) -> c_int {
    guard("pthread_create", || match current() {
        None if crate::auto::base_seed().is_some() => {
            let s = Box::into_raw(Box::new(crate::auto::Start { start, arg }));
            // SAFETY: the trampoline takes back `s` and calls `start(arg)` on the new thread.
            let r = unsafe { real::pthread_create(t, attr, crate::auto::trampoline, s.cast()) };
            if r != 0 {
                // SAFETY: the thread was not created; `s` is still ours.
                drop(unsafe { Box::from_raw(s) });
            }
            r
        }
        // SAFETY: forwarded unchanged.
        None => unsafe { real::pthread_create(t, attr, start, arg) },
        // SAFETY: as for this function.
        Some(cur) if cur.sim.is_threaded() => unsafe {
            crate::threads::create(cur, t, attr, start, arg)
        },
        Some(_) => unsupported(
            libc::EAGAIN,
            format_args!(
                "a thread on a one-thread run of the simulated kernel (netpoll_interpose::run) \
                 cannot spawn threads (tokio's spawn_blocking, name resolution, file I/O and \
                 the multi-thread runtime need them): run the program under \
                 netpoll_interpose::run_threads"
            ),
        ),
    })
}

/// `getaddrinfo(3)`: on a run, numeric IPv4 hosts only; names fail with `EAI_FAIL` and a
/// message (the simulated kernel has no resolver).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const libc::c_char,
    service: *const libc::c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    guard("getaddrinfo", || {
        let numeric = node.is_null()
            // SAFETY: a non-NULL `node` is a NUL-terminated string.
            || unsafe { std::ffi::CStr::from_ptr(node) }
                .to_str()
                .is_ok_and(|s| s.parse::<Ipv4Addr>().is_ok());
        if current().is_some() && !numeric {
            // SAFETY: as above.
            let name = unsafe { std::ffi::CStr::from_ptr(node) }.to_string_lossy();
            eprintln!(
                "netpoll-interpose: getaddrinfo({name:?}): the simulated kernel has no name \
                 resolution; use a numeric IPv4 address"
            );
            return libc::EAI_FAIL;
        }
        // SAFETY: forwarded unchanged.
        unsafe { real::getaddrinfo(node, service, hints, res) }
    })
}

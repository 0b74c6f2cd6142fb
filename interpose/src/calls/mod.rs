//! The interposed C functions. Each one routes by descriptor number (see `state.rs`): a real
//! descriptor goes to glibc unchanged, a descriptor of the calling thread's simulated kernel
//! goes to the kernel, and a simulated descriptor of another thread's run, or of a run that
//! has ended, fails with `EBADF` (closing one of an ended run succeeds quietly). Calls that
//! create descriptors go to the kernel when the thread is on a run.
//!
//! A panic never leaves these functions: it is caught, reported and the process aborts
//! (unwinding into C is undefined behaviour).

mod data;
mod epoll;
mod fd;
mod limits;
mod socket;
mod thread;
mod time;

pub use data::*;
pub use epoll::*;
pub use fd::*;
use limits::{refuse, Limit};
use socket::pair;
pub use socket::*;
pub use thread::*;
pub use time::*;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use libc::{c_int, c_uint, c_ulong, c_void, size_t, sockaddr, socklen_t, ssize_t};
use netpoll::sys::{errno, Events, O_CLOEXEC, O_NONBLOCK};
#[allow(unused_imports)] // Named by doc links; the calls reach it through `Kernel`'s `Deref`.
use netpoll::Poller;
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

/// The errno of a kernel error. A run the kernel's oracles stopped (a hang, a lost wakeup, a
/// livelock) has none: the reason is printed and becomes `EDEADLK`, so the program's own error
/// path (usually a panic) takes over.
fn errno_of(e: &io::Error) -> i32 {
    match e.raw_os_error() {
        Some(n) => n,
        None if e.kind() == io::ErrorKind::Deadlock => {
            eprintln!("netpoll-interpose: the simulated kernel stopped the program: {e}");
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

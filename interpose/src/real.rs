//! The real calls: glibc's definitions, found once with `dlsym(RTLD_NEXT)` and cached, with a
//! raw `syscall` in their place where the lookup fails (a static build) or would recurse.
//!
//! Nothing in this crate may call `libc::read` and the like directly: in a binary that links
//! the interposer those names are the interposer's own definitions.

use std::cell::Cell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_long, c_uint, c_ulong, c_void, size_t, sockaddr, socklen_t, ssize_t};

/// Not looked up yet.
const UNRESOLVED: usize = 0;
/// Looked up, and not found.
const MISSING: usize = 1;

thread_local! {
    static RESOLVING: Cell<bool> = const { Cell::new(false) };
}

/// The address of the next definition of `name` after this object, cached in `slot`; `None`
/// if there is none or if a lookup is already under way on this thread (`dlsym` may itself
/// call something interposed).
fn resolve(slot: &AtomicUsize, name: &CStr) -> Option<usize> {
    let a = slot.load(Ordering::Relaxed);
    if a != UNRESOLVED {
        return (a != MISSING).then_some(a);
    }
    if RESOLVING.with(|r| r.replace(true)) {
        return None;
    }
    // SAFETY: `name` is a NUL-terminated string; `RTLD_NEXT` is valid from a shared object or
    // an executable, and `dlsym` only reads its arguments.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    RESOLVING.with(|r| r.set(false));
    let a = if p == 0 { MISSING } else { p };
    slot.store(a, Ordering::Relaxed);
    (a != MISSING).then_some(a)
}

macro_rules! forward {
    ($( $name:ident ( $($a:ident : $t:ty),* ) -> $r:ty = $fallback:expr; )*) => {$(
        /// glibc's
        #[doc = concat!("`", stringify!($name), "`")]
        /// (or the raw system call).
        ///
        /// # Safety
        /// As for the C function.
        #[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
        pub(crate) unsafe fn $name($($a: $t),*) -> $r {
            static SLOT: AtomicUsize = AtomicUsize::new(UNRESOLVED);
            let name = concat!(stringify!($name), "\0");
            let name = CStr::from_bytes_with_nul(name.as_bytes()).expect("a NUL-terminated name");
            match resolve(&SLOT, name) {
                Some(p) => {
                    // SAFETY: `p` is glibc's definition of this very function, whose C
                    // signature is the one written here.
                    let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute(p) };
                    // SAFETY: the caller upholds the C function's contract.
                    unsafe { f($($a),*) }
                }
                // SAFETY: the raw system call takes the same arguments as the C function.
                #[allow(unused_unsafe)]
                None => unsafe { $fallback },
            }
        }
    )*};
}

use libc::syscall as sys;

forward! {
    epoll_create1(flags: c_int) -> c_int = sys(libc::SYS_epoll_create1, flags) as c_int;
    epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut libc::epoll_event) -> c_int =
        sys(libc::SYS_epoll_ctl, epfd, op, fd, ev) as c_int;
    epoll_wait(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int =
        sys(libc::SYS_epoll_pwait, epfd, ev, max, timeout, 0usize, 8usize) as c_int;
    epoll_pwait(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int,
        mask: *const libc::sigset_t) -> c_int =
        sys(libc::SYS_epoll_pwait, epfd, ev, max, timeout, mask, 8usize) as c_int;
    eventfd(init: c_uint, flags: c_int) -> c_int = sys(libc::SYS_eventfd2, init, flags) as c_int;
    socket(domain: c_int, ty: c_int, proto: c_int) -> c_int =
        sys(libc::SYS_socket, domain, ty, proto) as c_int;
    socketpair(domain: c_int, ty: c_int, proto: c_int, sv: *mut c_int) -> c_int =
        sys(libc::SYS_socketpair, domain, ty, proto, sv) as c_int;
    bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int =
        sys(libc::SYS_bind, fd, addr, len) as c_int;
    listen(fd: c_int, backlog: c_int) -> c_int = sys(libc::SYS_listen, fd, backlog) as c_int;
    accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int =
        sys(libc::SYS_accept4, fd, addr, len, 0) as c_int;
    accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int =
        sys(libc::SYS_accept4, fd, addr, len, flags) as c_int;
    connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int =
        sys(libc::SYS_connect, fd, addr, len) as c_int;
    getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int =
        sys(libc::SYS_getsockname, fd, addr, len) as c_int;
    getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int =
        sys(libc::SYS_getpeername, fd, addr, len) as c_int;
    getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t)
        -> c_int = sys(libc::SYS_getsockopt, fd, level, name, val, len) as c_int;
    setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t)
        -> c_int = sys(libc::SYS_setsockopt, fd, level, name, val, len) as c_int;
    recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t =
        sys(libc::SYS_recvfrom, fd, buf, len, flags, 0usize, 0usize) as ssize_t;
    recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr,
        alen: *mut socklen_t) -> ssize_t =
        sys(libc::SYS_recvfrom, fd, buf, len, flags, addr, alen) as ssize_t;
    send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t =
        sys(libc::SYS_sendto, fd, buf, len, flags, 0usize, 0usize) as ssize_t;
    sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr,
        alen: socklen_t) -> ssize_t = sys(libc::SYS_sendto, fd, buf, len, flags, addr, alen) as ssize_t;
    recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t =
        sys(libc::SYS_recvmsg, fd, msg, flags) as ssize_t;
    sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t =
        sys(libc::SYS_sendmsg, fd, msg, flags) as ssize_t;
    read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t =
        sys(libc::SYS_read, fd, buf, len) as ssize_t;
    write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t =
        sys(libc::SYS_write, fd, buf, len) as ssize_t;
    readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t =
        sys(libc::SYS_readv, fd, iov, n) as ssize_t;
    writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t =
        sys(libc::SYS_writev, fd, iov, n) as ssize_t;
    shutdown(fd: c_int, how: c_int) -> c_int = sys(libc::SYS_shutdown, fd, how) as c_int;
    close(fd: c_int) -> c_int = sys(libc::SYS_close, fd) as c_int;
    dup(fd: c_int) -> c_int = sys(libc::SYS_dup, fd) as c_int;
    // Without glibc's, `dup2(fd, fd)` fails with EINVAL here instead of returning `fd`.
    dup2(old: c_int, new: c_int) -> c_int = sys(libc::SYS_dup3, old, new, 0) as c_int;
    dup3(old: c_int, new: c_int, flags: c_int) -> c_int =
        sys(libc::SYS_dup3, old, new, flags) as c_int;
    epoll_pwait2(epfd: c_int, ev: *mut libc::epoll_event, max: c_int,
        timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int =
        sys(libc::SYS_epoll_pwait2, epfd, ev, max, timeout, mask, 8usize) as c_int;
    pipe(fds: *mut c_int) -> c_int = sys(libc::SYS_pipe2, fds, 0) as c_int;
    pipe2(fds: *mut c_int, flags: c_int) -> c_int = sys(libc::SYS_pipe2, fds, flags) as c_int;
    fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int = sys(libc::SYS_fcntl, fd, cmd, arg) as c_int;
    ioctl(fd: c_int, req: c_ulong, arg: *mut c_void) -> c_int =
        sys(libc::SYS_ioctl, fd, req, arg) as c_int;
    poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int =
        poll_fallback(fds, n, timeout);
    clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> c_int =
        sys(libc::SYS_clock_gettime, clock, tp) as c_int;
    nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int =
        sys(libc::SYS_clock_nanosleep, libc::CLOCK_MONOTONIC, 0, req, rem) as c_int;
    clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const libc::timespec,
        rem: *mut libc::timespec) -> c_int = errno_of(sys(libc::SYS_clock_nanosleep, clock, flags, req, rem));
    sched_yield() -> c_int = sys(libc::SYS_sched_yield) as c_int;
    getrandom(buf: *mut c_void, len: size_t, flags: c_uint) -> ssize_t =
        sys(libc::SYS_getrandom, buf, len, flags) as ssize_t;
    pthread_create(t: *mut libc::pthread_t, attr: *const libc::pthread_attr_t,
        start: extern "C" fn(*mut c_void) -> *mut c_void, arg: *mut c_void) -> c_int = libc::EAGAIN;
    getaddrinfo(node: *const libc::c_char, service: *const libc::c_char,
        hints: *const libc::addrinfo, res: *mut *mut libc::addrinfo) -> c_int = libc::EAI_SYSTEM;
    pthread_join(t: libc::pthread_t, ret: *mut *mut c_void) -> c_int = libc::ESRCH;
    pthread_setname_np(t: libc::pthread_t, name: *const libc::c_char) -> c_int = 0;
    syscall(num: c_long, a1: c_long, a2: c_long, a3: c_long, a4: c_long, a5: c_long, a6: c_long)
        -> c_long = crate::futex::raw_syscall(num, [a1, a2, a3, a4, a5, a6]);
}

/// `clock_nanosleep` returns the error number rather than setting `errno`.
fn errno_of(r: c_long) -> c_int {
    if r == 0 {
        0
    } else {
        // SAFETY: `__errno_location` returns this thread's errno, always valid.
        unsafe { *libc::__errno_location() }
    }
}

/// `poll` as `ppoll` with a relative timeout.
///
/// # Safety
/// As for `poll`.
unsafe fn poll_fallback(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let ts = libc::timespec {
        tv_sec: (timeout / 1000) as libc::time_t,
        tv_nsec: ((timeout % 1000) * 1_000_000) as libc::c_long,
    };
    let tsp = if timeout < 0 {
        std::ptr::null()
    } else {
        &ts as *const libc::timespec
    };
    // SAFETY: the caller's `fds` array of `n` entries, a valid timespec or NULL, no mask.
    unsafe { sys(libc::SYS_ppoll, fds, n, tsp, 0usize, 8usize) as c_int }
}

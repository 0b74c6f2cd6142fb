//! epoll and eventfd: `epoll_create1`, `epoll_create`, `epoll_ctl`, the `epoll_wait` family, `eventfd`.

use super::*;

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

//! Sockets: `socket`, `socketpair`, `bind`, `listen`, `accept`/`accept4`, `connect`, the name calls and the socket options.

use super::*;

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

pub(super) fn pair(cur: Cur, r: io::Result<[Fd; 2]>, out: &mut [c_int; 2]) -> io::Result<c_int> {
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
            let r = cur.sim.accept4(n, flags);
            cur.waits.after_accept(n, &r);
            let r = r.and_then(|(c, peer)| {
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
            Ok(a) => {
                let r = cur.sim.connect(n, a);
                cur.waits.after_connect(n, &r);
                ret_int(r.map(|()| 0))
            }
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
                (libc::SOL_SOCKET, libc::SO_ERROR) => {
                    cur.waits.after_take_error(n);
                    cur.sim.take_socket_error(n)
                }
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

//! Descriptors: `shutdown`, `close`, `dup`, `pipe`/`pipe2`, `fcntl`, `ioctl` and `poll`.

use super::*;

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
                cur.waits.closed(n);
            }
            ret_int(r.map(|()| 0))
        }
        Route::Stale => 0,
        r => misuse(r, "close", fd),
    })
}

/// `dup2(2)`: both descriptors real, or both of the calling thread's simulated kernel (which
/// cannot lend its files to the real one, nor the reverse: `EBADF`).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    guard("dup2", || match (route(old), route(new)) {
        // SAFETY: forwarded unchanged.
        (Route::Real, Route::Real) => unsafe { real::dup2(old, new) },
        (Route::Sim(cur, o), Route::Sim(_, n)) => ret_int(new_fd(cur, cur.sim.dup2(o, n))),
        (Route::Sim(..), Route::Real) | (Route::Real, Route::Sim(..)) => fail(libc::EBADF),
        (Route::Sim(..), r) | (r, _) => misuse(r, "dup2", old.max(new)),
    })
}

/// `dup3(2)`: as [`dup2`].
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    guard("dup3", || match (route(old), route(new)) {
        // SAFETY: forwarded unchanged.
        (Route::Real, Route::Real) => unsafe { real::dup3(old, new, flags) },
        (Route::Sim(cur, o), Route::Sim(_, n)) => ret_int(new_fd(cur, cur.sim.dup3(o, n, flags))),
        (Route::Sim(..), Route::Real) | (Route::Real, Route::Sim(..)) => fail(libc::EBADF),
        (Route::Sim(..), r) | (r, _) => misuse(r, "dup3", old.max(new)),
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
        Route::Stale if matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) => fail(refuse(
            format_args!("fcntl(fd {fd}, F_DUPFD)"),
            Limit::EndedRun,
            libc::EBADF,
        )),
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

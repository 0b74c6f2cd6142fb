//! Data: `read`/`write`, `recv`/`send` and their `from`/`to` forms, `readv`/`writev`, `recvmsg`/`sendmsg`.

use super::*;

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
        let r = cur.sim.read(n, buf);
        cur.waits.after_read(n, buf.len(), &r);
        return ret_size(r);
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
    let r = cur.sim.recv(n, buf, flags);
    cur.waits.after_read(n, buf.len(), &r);
    ret_size(r)
}

fn sim_send(cur: Cur, call: &str, fd: c_int, n: Fd, buf: &[u8], flags: c_int) -> ssize_t {
    match check_flags(call, fd, flags) {
        Ok(dw) => {
            let r = dontwait(cur, n, dw, || cur.sim.write(n, buf));
            cur.waits.after_write(n, buf.len(), &r);
            ret_size(r)
        }
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
            Some(b) => {
                let r = cur.sim.read(n, b);
                cur.waits.after_read(n, b.len(), &r);
                ret_size(r)
            }
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
            Some(b) => {
                let r = cur.sim.write(n, b);
                cur.waits.after_write(n, b.len(), &r);
                ret_size(r)
            }
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

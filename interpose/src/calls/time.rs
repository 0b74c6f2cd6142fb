//! Time and randomness: the clocks, the sleeps, `sched_yield` and `getrandom`.

use super::*;

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

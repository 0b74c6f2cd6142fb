//! `syscall(SYS_futex, ...)`: the waits and wakes under std's `Mutex`, `Condvar`,
//! `thread::park` and channels (and so under tokio's parker), on a run.
//!
//! - On a threaded run ([`crate::run_threads`]), every `FUTEX_WAIT`/`FUTEX_WAKE` (with or without
//!   `_PRIVATE`, `_BITSET` and `FUTEX_CLOCK_REALTIME`) is a switch point of the scheduler: a
//!   waiter blocks there until a wake on its word chooses it or virtual time reaches its
//!   deadline ([`netpoll_threads::futex_wait`]). Other futex commands fail with `ENOSYS` and a
//!   message.
//! - On a one-thread run ([`crate::run`]), nothing on the run can wake the thread: a timed wait
//!   whose word still holds the expected value lets virtual time pass to its deadline and
//!   returns `ETIMEDOUT` (so `recv_timeout`, `Condvar::wait_timeout` and `park_timeout` follow
//!   virtual time instead of spinning against a clock that does not move); an untimed wait, and
//!   every other command, goes to Linux.
//! - Everywhere else (threads not on a run, and the interposer's and the scheduler's own locks,
//!   which run inside an interposed call) the call goes to Linux unchanged.
//!
//! Every other system number is forwarded to glibc's `syscall`.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use libc::{c_int, c_long};
use netpoll_threads::FutexWait;

use crate::calls::{guard, MONOTONIC_START, REALTIME_START};
use crate::real;
use crate::state::{existing, nested, Current};

const FUTEX_WAIT: c_int = 0;
const FUTEX_WAKE: c_int = 1;
const FUTEX_WAIT_BITSET: c_int = 9;
const FUTEX_WAKE_BITSET: c_int = 10;
const FUTEX_PRIVATE_FLAG: c_int = 128;
const FUTEX_CLOCK_REALTIME: c_int = 256;

/// `syscall(2)`. Declared with six fixed arguments after the number: on x86-64 and AArch64
/// Linux a variadic callee finds its integer arguments where a fixed one does, and arguments
/// the caller did not pass are only forwarded, never read.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    num: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    if num == libc::SYS_futex && !nested() {
        if let Some(cur) = existing() {
            if let Some(r) = guard("syscall(SYS_futex)", || {
                // SAFETY: the program's futex arguments, as for the system call.
                unsafe { futex(cur, a1, a2 as c_int, a3 as u32, a4, a6 as u32) }
            }) {
                return r;
            }
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::syscall(num, a1, a2, a3, a4, a5, a6) }
}

/// A futex call on a run; `None` to forward it to Linux.
///
/// # Safety
/// `uaddr` and `timeout` are what the program passed to `futex(2)`.
unsafe fn futex(
    cur: &Current<'_>,
    uaddr: c_long,
    op: c_int,
    val: u32,
    timeout: c_long,
    bitset: u32,
) -> Option<c_long> {
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let threaded = cur.sim.is_threaded();
    let (wait, bitset) = match cmd {
        FUTEX_WAIT => (true, u32::MAX),
        FUTEX_WAIT_BITSET => (true, bitset),
        FUTEX_WAKE => (false, u32::MAX),
        FUTEX_WAKE_BITSET => (false, bitset),
        _ if threaded => {
            eprintln!(
                "netpoll-interpose: futex command {cmd} on a simulated thread: only FUTEX_WAIT, \
                 FUTEX_WAKE and their _BITSET forms are modelled (errno ENOSYS)"
            );
            return Some(err(libc::ENOSYS));
        }
        _ => return None,
    };
    if bitset == 0 {
        return Some(err(libc::EINVAL));
    }
    let p = uaddr as usize;
    if p == 0 {
        return Some(err(libc::EFAULT));
    }
    if p % 4 != 0 {
        return Some(err(libc::EINVAL));
    }
    // SAFETY: the program's futex word, an aligned `u32` as `futex(2)` requires; it outlives
    // the call, as the kernel also assumes.
    let word = unsafe { &*(p as *const AtomicU32) };
    if !wait {
        if !threaded {
            return None;
        }
        let n = netpoll_threads::futex_wake(word, val, bitset);
        if n >= val {
            return Some(c_long::from(n));
        }
        // A waiter outside the scheduler (a thread not on the run) is woken by Linux.
        let rest = c_long::from(val - n);
        // SAFETY: the program's own futex arguments, with the count of those left to wake.
        let real = unsafe {
            real::syscall(
                libc::SYS_futex,
                uaddr,
                c_long::from(op),
                rest,
                0,
                0,
                c_long::from(bitset),
            )
        };
        return Some(c_long::from(n) + real.max(0));
    }
    let deadline = if timeout == 0 {
        None
    } else {
        // SAFETY: a non-NULL timeout is the program's timespec.
        let ts = unsafe { &*(timeout as *const libc::timespec) };
        if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
            return Some(err(libc::EINVAL));
        }
        let d = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        let now = cur.sim.now_ns();
        Some(if cmd == FUTEX_WAIT {
            // Relative, on the monotonic clock.
            now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        } else {
            // Absolute, on the clock the flag names.
            let start = if op & FUTEX_CLOCK_REALTIME != 0 {
                REALTIME_START
            } else {
                MONOTONIC_START
            };
            u64::try_from(d.saturating_sub(start).as_nanos()).unwrap_or(u64::MAX)
        })
    };
    if !threaded {
        let deadline = deadline?;
        if word.load(std::sync::atomic::Ordering::SeqCst) != val {
            return Some(err(libc::EAGAIN));
        }
        let now = cur.sim.now_ns();
        cur.sim
            .sleep(Duration::from_nanos(deadline.saturating_sub(now)));
        return Some(err(libc::ETIMEDOUT));
    }
    Some(
        match netpoll_threads::futex_wait(word, val, bitset, deadline) {
            FutexWait::Woken => 0,
            FutexWait::Mismatch => err(libc::EAGAIN),
            FutexWait::TimedOut => err(libc::ETIMEDOUT),
        },
    )
}

fn err(e: c_int) -> c_long {
    // SAFETY: `__errno_location` returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
    -1
}

/// The system call itself, for a build where glibc's `syscall` cannot be found.
///
/// # Safety
/// As for the system call `num`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn raw_syscall(num: c_long, a: [c_long; 6]) -> c_long {
    let ret: c_long;
    // SAFETY: the Linux x86-64 system call convention; the caller upholds the call's contract.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") num => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        err(-ret as c_int)
    } else {
        ret
    }
}

/// The system call itself, for a build where glibc's `syscall` cannot be found: not written
/// for this architecture.
///
/// # Safety
/// None needed: it only fails.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn raw_syscall(_num: c_long, _a: [c_long; 6]) -> c_long {
    err(libc::ENOSYS)
}

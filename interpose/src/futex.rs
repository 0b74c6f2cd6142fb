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
//!   which run inside an interposed call) the call goes to Linux unchanged; except that a wake
//!   from a thread on no threaded run first reaches the simulated waiters of the live threaded
//!   runs on the same word ([`netpoll_threads::host::futex_wake_outside`]), and Linux wakes
//!   the rest.
//!
//! A word may be shared between a threaded run and code outside it (another run in the
//! process, a plain OS thread): std's process-wide locks, such as the one every std thread
//! takes when it starts and exits. A simulated waiter's word is given to the scheduler with a
//! way to re-read it, and marked process-wide when it lies in the writable memory of a loaded
//! object (a `static`), so that the run waits for a wake from outside rather than reporting a
//! deadlock ([`netpoll_threads::host::futex_wait_shared`]).
//!
//! Every other system number is forwarded to glibc's `syscall`.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use libc::{c_int, c_long};
use netpoll_threads::host::Share;
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
        if let Some(r) = guard("syscall(SYS_futex)", || {
            wake_from_outside(a1, a2 as c_int, a3 as u32, a6 as u32)
        }) {
            return r;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::syscall(num, a1, a2, a3, a4, a5, a6) }
}

/// A `FUTEX_WAKE` (or `_BITSET`) from a thread on no threaded run: the simulated waiters of the
/// live threaded runs on that word first, then Linux for the rest. `None` (forward unchanged)
/// for every other command, or if no simulated thread waits on the word.
fn wake_from_outside(uaddr: c_long, op: c_int, val: u32, bitset: u32) -> Option<c_long> {
    let bitset = match op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) {
        FUTEX_WAKE => u32::MAX,
        FUTEX_WAKE_BITSET if bitset != 0 => bitset,
        _ => return None,
    };
    let n = netpoll_threads::host::futex_wake_outside(uaddr as usize, val, bitset);
    if n == 0 {
        return None;
    }
    if n >= val {
        return Some(c_long::from(n));
    }
    // SAFETY: the program's own futex arguments, with the count of those left to wake.
    let real = unsafe {
        real::syscall(
            libc::SYS_futex,
            uaddr,
            c_long::from(op),
            c_long::from(val - n),
            0,
            0,
            c_long::from(bitset),
        )
    };
    Some(c_long::from(n) + real.max(0))
}

/// Reads the futex word at `addr` for the scheduler, while a simulated thread waits on it.
fn read_word(addr: usize) -> u32 {
    // SAFETY: the scheduler reads only the words its blocked futex waiters wait on, which are
    // valid aligned `u32`s for the whole wait, as `futex(2)` requires of the program (the
    // kernel reads them at any time too).
    unsafe { (*(addr as *const AtomicU32)).load(std::sync::atomic::Ordering::SeqCst) }
}

/// Whether `addr` lies in the writable memory of a loaded object (a `static` of the program or
/// of a library): a word that any thread of the process, on a run or not, may use.
fn process_wide(addr: usize) -> bool {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `dl_phdr_info` whose `dlpi_phdr` has
        // `dlpi_phnum` entries, and our `data`, a `(usize, bool)`.
        unsafe {
            let info = &*info;
            let found = &mut *(data as *mut (usize, bool));
            if info.dlpi_phdr.is_null() {
                return 0;
            }
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
            for ph in phdrs {
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 {
                    let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                    if (start..start + ph.p_memsz as usize).contains(&found.0) {
                        found.1 = true;
                        return 1;
                    }
                }
            }
        }
        0
    }
    let mut found = (addr, false);
    // SAFETY: `visit` matches the callback's contract and `found` outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), std::ptr::from_mut(&mut found).cast());
    }
    found.1
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
        match netpoll_threads::host::futex_wait_shared(
            word,
            val,
            bitset,
            deadline,
            Share {
                read: read_word,
                process_wide: process_wide(p),
            },
        ) {
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

//! `NETPOLL_SIM=<seed>`: every thread started while it is set runs on a simulated kernel of its
//! own, so that an existing test binary that links the interposer runs its tests on the sim
//! without an edit (libtest runs each test on a thread of its own).
//!
//! The kernel is made on the thread's first call that needs one (so the thread's name, the
//! test's name under libtest, is known by then), seeded with the variable's seed mixed with a
//! hash of that name: each test gets the same kernel whatever the order or the parallelism. A
//! panic on such a thread prints the seed and the replay line. The kernel goes when the
//! thread's start routine returns.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Once;

use libc::c_void;
use netpoll_sim::Sim;

use crate::replay;
use crate::state::{self, Current};

/// The environment variable.
pub const VAR: &str = "NETPOLL_SIM";

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
static BASE: AtomicU64 = AtomicU64::new(0);

/// This thread: not started by the interposer (0), started and without a kernel yet (1), on
/// its kernel (2).
const NOT_AUTO: u8 = 0;
const ELIGIBLE: u8 = 1;
const ACTIVE: u8 = 2;

thread_local! {
    static AUTO: Cell<u8> = const { Cell::new(NOT_AUTO) };
    static SEED: Cell<u64> = const { Cell::new(0) };
}

/// The base seed, if `NETPOLL_SIM` is set. A value that is not a number is bad user input:
/// a message and exit status 2.
pub(crate) fn base_seed() -> Option<u64> {
    match MODE.load(Ordering::Acquire) {
        OFF => return None,
        ON => return Some(BASE.load(Ordering::Acquire)),
        _ => {}
    }
    let v = std::env::var_os(VAR);
    let seed = match v.as_ref().map(|s| s.to_str().map(str::parse::<u64>)) {
        None => None,
        Some(Some(Ok(n))) => Some(n),
        Some(_) => {
            let v = v.unwrap_or_default();
            eprintln!(
                "error: {VAR}={:?}: expected a seed, a non-negative integer",
                v.to_string_lossy()
            );
            std::process::exit(2)
        }
    };
    BASE.store(seed.unwrap_or(0), Ordering::Release);
    MODE.store(if seed.is_some() { ON } else { OFF }, Ordering::Release);
    seed
}

/// Whether this thread should get a kernel on its first call that needs one.
pub(crate) fn eligible() -> bool {
    AUTO.with(Cell::get) == ELIGIBLE
}

/// FNV-1a of `s`.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Puts this (eligible) thread on a kernel of its own, for the rest of its life.
pub(crate) fn start() -> Option<&'static Current<'static>> {
    let base = base_seed()?;
    let slot = state::claim_slot()?;
    AUTO.with(|a| a.set(ACTIVE));
    let name = std::thread::current().name().unwrap_or("").to_owned();
    let seed = base ^ fnv(&name);
    SEED.with(|s| s.set(seed));
    install_hook();
    let sim: &'static Sim = Box::leak(Box::new(Sim::with_config(
        seed,
        netpoll_sim::SimConfig::linux_loopback(),
    )));
    let cur: &'static Current<'static> = Box::leak(Box::new(Current::new(sim, slot, seed)));
    std::mem::forget(state::enter(cur));
    Some(cur)
}

/// Takes this thread off its kernel and frees it, if it has one.
fn finish() {
    if AUTO.with(|a| a.replace(NOT_AUTO)) != ACTIVE {
        return;
    }
    let Some(cur) = state::take_current() else {
        return;
    };
    state::release_slot(cur.slot);
    let crate::kernel::Kernel::Single(sim) = cur.sim else {
        unreachable!("a NETPOLL_SIM thread's kernel is its own");
    };
    let sim: *const Sim = sim;
    // SAFETY: both were leaked from boxes in `start`, on this thread, and nothing refers to
    // them any more: the thread is off the kernel and its start routine has returned.
    unsafe {
        drop(Box::from_raw((cur as *const Current<'static>).cast_mut()));
        drop(Box::from_raw(sim.cast_mut()));
    }
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // Once, before any panic: the binary's target does not change.
        let target = replay::this_target();
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            prev(info);
            if AUTO.with(Cell::get) == ACTIVE {
                // libtest names the thread with the test's full path, what `--exact` matches.
                let name = std::thread::current().name().unwrap_or("").to_owned();
                let line = replay::line(VAR, BASE.load(Ordering::Acquire), &target, &name);
                eprintln!(
                    "netpoll-interpose: `{name}` ran on the simulated kernel, seed {}; replay: \
                     {line}",
                    SEED.with(Cell::get),
                );
            }
        }));
    });
}

/// What `pthread_create` passes to [`trampoline`].
pub(crate) struct Start {
    pub start: extern "C" fn(*mut c_void) -> *mut c_void,
    pub arg: *mut c_void,
}

/// The start routine of a thread created while `NETPOLL_SIM` is set.
pub(crate) extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Box<Start>` that `pthread_create` leaked for this thread alone.
    let s = unsafe { Box::from_raw(p.cast::<Start>()) };
    AUTO.with(|a| a.set(ELIGIBLE));
    let r = (s.start)(s.arg);
    finish();
    r
}

//! `NETPOLL_SIM=<seed>`: every thread started while it is set runs on a simulated kernel of its
//! own, so that an existing test binary that links the interposer runs its tests on the sim
//! without an edit (libtest runs each test on a thread of its own).
//!
//! The kernel is made on the thread's first call that needs one (so the thread's name, the
//! test's name under libtest, is known by then), seeded with the variable's seed mixed with a
//! hash of that name: each test gets the same kernel whatever the order or the parallelism. A
//! panic on such a thread prints the seed and the replay line. The kernel goes when the
//! thread's start routine returns.
//!
//! `NETPOLL_SIM=threads:<seed>` runs each test as simulated threads instead
//! ([`crate::run_threads`]): the thread libtest starts for a test becomes a threaded run whose
//! first simulated thread starts libtest's start routine, so the test and every thread it starts
//! (tokio's `multi_thread` workers, `spawn_blocking`, `std::thread::spawn`) share one kernel
//! and are interleaved by the seed (`NETPOLL_SCHEDULE` picks the policy, as for a threaded
//! check). The run's seed is the variable's own: the test's name is not known before its
//! thread starts. A panicking test prints its seed and replay line as above; a run the
//! scheduler fails (a deadlock, with each thread's blocking call; a livelock; a thread that
//! spins) prints the scheduler's report and the replay line, then ends the test process with
//! status 101, since the test's threads cannot be unwound and libtest would wait for them for
//! ever.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once};

use libc::c_void;
use netpoll_sim::Sim;
use netpoll_threads::{Policy, Runner};

use crate::replay;
use crate::state::{self, Current};

/// The environment variable.
pub const VAR: &str = "NETPOLL_SIM";

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
static BASE: AtomicU64 = AtomicU64::new(0);
/// `NETPOLL_SIM=threads:<seed>`.
static THREADS: AtomicBool = AtomicBool::new(false);

/// This thread: not started by the interposer (0), started and without a kernel yet (1), on
/// its kernel (2).
const NOT_AUTO: u8 = 0;
const ELIGIBLE: u8 = 1;
const ACTIVE: u8 = 2;

thread_local! {
    static AUTO: Cell<u8> = const { Cell::new(NOT_AUTO) };
    static SEED: Cell<u64> = const { Cell::new(0) };
    /// On the simulated thread that runs a `NETPOLL_SIM=threads` test: where its name goes
    /// once std has set it (for the report of a run the scheduler fails).
    static TEST: RefCell<Option<Arc<Mutex<Option<String>>>>> = const { RefCell::new(None) };
}

/// What `NETPOLL_SIM` may hold.
const FORMS: &str = "expected a seed (a non-negative integer: each test on a simulated kernel \
     of its own), or threads:SEED (each test and the threads it starts as simulated threads)";

/// Reads a value of `NETPOLL_SIM`: the seed, and whether tests run as simulated threads.
fn parse(v: &str) -> Result<(u64, bool), String> {
    let (body, threads) = match v.trim().strip_prefix("threads:") {
        Some(rest) => (rest, true),
        None => (v.trim(), false),
    };
    body.trim()
        .parse::<u64>()
        .map(|n| (n, threads))
        .map_err(|_| format!("{VAR}={v:?}: {FORMS}"))
}

/// The base seed, if `NETPOLL_SIM` is set. A value that is not a seed or `threads:<seed>` is
/// bad user input: a message and exit status 2.
pub(crate) fn base_seed() -> Option<u64> {
    match MODE.load(Ordering::Acquire) {
        OFF => return None,
        ON => return Some(BASE.load(Ordering::Acquire)),
        _ => {}
    }
    let v = std::env::var_os(VAR);
    let seed = match v.as_ref().map(|s| s.to_str().map(parse)) {
        None => None,
        Some(Some(Ok((n, threads)))) => {
            THREADS.store(threads, Ordering::Release);
            Some(n)
        }
        Some(Some(Err(e))) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
        Some(None) => {
            eprintln!("error: {VAR} is not UTF-8: {FORMS}");
            std::process::exit(2)
        }
    };
    BASE.store(seed.unwrap_or(0), Ordering::Release);
    MODE.store(if seed.is_some() { ON } else { OFF }, Ordering::Release);
    seed
}

/// Whether `NETPOLL_SIM=threads:<seed>` is set.
pub(crate) fn threaded() -> bool {
    base_seed().is_some() && THREADS.load(Ordering::Acquire)
}

/// The schedule policy of `NETPOLL_SIM=threads` runs: `NETPOLL_SCHEDULE`, `random` by default.
/// A bad value is bad user input: a message and exit status 2.
fn schedule() -> Policy {
    match std::env::var("NETPOLL_SCHEDULE") {
        Err(std::env::VarError::NotPresent) => Policy::Random,
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!(
                "error: NETPOLL_SCHEDULE={v:?}: expected random, or pct:DEPTH:STEPS with both \
                 at least 1 (e.g. pct:3:1000)"
            );
            std::process::exit(2)
        }),
        Err(_) => {
            eprintln!("error: NETPOLL_SCHEDULE is not UTF-8: expected random or pct:DEPTH:STEPS");
            std::process::exit(2)
        }
    }
}

/// The value a replay line sets `NETPOLL_SIM` (and `NETPOLL_SCHEDULE`) to.
fn replay_value(threads: bool) -> String {
    let base = BASE.load(Ordering::Acquire);
    if !threads {
        return base.to_string();
    }
    match schedule() {
        Policy::Random => format!("threads:{base}"),
        p => format!("threads:{base} NETPOLL_SCHEDULE={p}"),
    }
}

/// Called by the interposed `pthread_setname_np` on a simulated thread: on the thread of a
/// `NETPOLL_SIM=threads` test, std has set the thread's handle by then, with the test's full
/// name (the OS name is cut to 15 bytes).
pub(crate) fn named() {
    TEST.with(|t| {
        if let Some(slot) = &*t.borrow() {
            let name = std::thread::current().name().map(str::to_owned);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = name;
        }
    });
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
                let line = replay::line(VAR, &replay_value(false), &target, &name);
                eprintln!(
                    "netpoll-interpose: `{name}` ran on the simulated kernel, seed {}; replay: \
                     {line}",
                    SEED.with(Cell::get),
                );
            } else if TEST.with(|t| t.borrow().is_some()) {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                let line = replay::line(VAR, &replay_value(true), &target, &name);
                eprintln!(
                    "netpoll-interpose: `{name}` ran on simulated threads, seed {}, schedule \
                     {}; replay: {line}",
                    BASE.load(Ordering::Acquire),
                    schedule(),
                );
            }
        }));
    });
}

/// What `pthread_create` passes to [`trampoline`].
pub(crate) struct Start {
    pub start: extern "C" fn(*mut c_void) -> *mut c_void,
    pub arg: *mut c_void,
    /// Run it as a threaded run (`NETPOLL_SIM=threads:<seed>`).
    pub threaded: bool,
    /// The stack size the creator asked for (0: the default).
    pub stack: usize,
}

/// The start routine of a thread created while `NETPOLL_SIM` is set.
pub(crate) extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Box<Start>` that `pthread_create` leaked for this thread alone.
    let s = unsafe { Box::from_raw(p.cast::<Start>()) };
    if s.threaded {
        return threaded_test(*s);
    }
    AUTO.with(|a| a.set(ELIGIBLE));
    let r = (s.start)(s.arg);
    finish();
    r
}

/// The program's start routine and its argument, moved to the run's first simulated thread.
struct Routine {
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
    stack: usize,
    name: Arc<Mutex<Option<String>>>,
}

// SAFETY: `arg` is what the program handed `pthread_create` for a new thread: it is made to be
// used on another thread, and only the one thread that calls `start` uses it.
unsafe impl Send for Routine {}

/// A `NETPOLL_SIM=threads` test: this thread (libtest's, for one test) supervises a threaded
/// run whose first thread starts the test's start routine on a simulated thread of its own.
fn threaded_test(s: Start) -> *mut c_void {
    let base = BASE.load(Ordering::Acquire);
    let policy = schedule();
    install_hook();
    let name: Arc<Mutex<Option<String>>> = Arc::default();
    let routine = Routine {
        start: s.start,
        arg: s.arg,
        stack: s.stack,
        name: Arc::clone(&name),
    };
    let sim = Sim::with_config(base, netpoll_sim::SimConfig::linux_loopback());
    let run = catch_unwind(AssertUnwindSafe(|| {
        crate::threads::run_hosted(Runner::new(base).policy(policy), sim, move || {
            start_routine(routine)
        })
    }));
    match run {
        Ok(Ok(_)) => std::ptr::null_mut(),
        Ok(Err(f)) => {
            let name = name
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "(the test thread had no name yet)".to_owned());
            let line = replay::line(VAR, &replay_value(true), &replay::this_target(), &name);
            eprintln!(
                "{f}\nnetpoll-interpose: `{name}` ran on simulated threads, seed {base}, \
                 schedule {policy}, and failed ({:?}); replay: {line}\nnetpoll-interpose: the \
                 test's threads cannot be unwound and libtest would wait for them for ever: \
                 the test process ends here (status 101)",
                f.kind
            );
            std::process::exit(101)
        }
        Err(_) => {
            eprintln!(
                "netpoll-interpose: a panic while running `NETPOLL_SIM=threads` test threads \
                 (message above); aborting, since it cannot unwind into C"
            );
            std::process::abort()
        }
    }
}

/// On the run's first thread: starts the test's routine on a new simulated thread (through the
/// interposed `pthread_create`, so it joins the run) and waits for it.
fn start_routine(r: Routine) {
    let stack = r.stack;
    let p = Box::into_raw(Box::new(r));
    // SAFETY: plain libc calls on an attribute object of our own, initialised before use and
    // destroyed after; `inner` takes back `p` on the new thread; the thread id is written by
    // a successful `pthread_create` before `pthread_join` reads it.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        if stack > 0 {
            libc::pthread_attr_setstacksize(&mut attr, stack);
        }
        let mut t: libc::pthread_t = 0;
        let r = crate::calls::pthread_create(&mut t, &attr, inner, p.cast());
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            drop(Box::from_raw(p));
            panic!("netpoll-interpose: the test's thread could not be started (error {r})");
        }
        crate::threads::pthread_join(t, std::ptr::null_mut());
    }
}

/// The start routine of a `NETPOLL_SIM=threads` test's simulated thread.
extern "C" fn inner(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Box<Routine>` that `start_routine` leaked for this thread alone.
    let r = unsafe { Box::from_raw(p.cast::<Routine>()) };
    TEST.with(|t| *t.borrow_mut() = Some(Arc::clone(&r.name)));
    (r.start)(r.arg)
}

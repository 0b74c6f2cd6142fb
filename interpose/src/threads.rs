//! Threads on the simulated kernel: [`run_threads`], and `pthread_create`, `pthread_join` and
//! `sched_yield` on its threads.
//!
//! A threaded run is a [`netpoll_threads::Runner`] run whose threads are all hosted by the
//! interposer: every thread that one of them creates with `pthread_create` (so
//! `std::thread::spawn`, tokio's workers and its blocking pool) joins the scheduler and shares
//! the run's [`ThreadedSim`], its descriptors and its clock. Exactly one runs at a time; the
//! switch points are every interposed call on the kernel, every futex wait and wake
//! (`futex.rs`), `sched_yield`, thread creation and `pthread_join`.
//!
//! A thread's life on the run, for a `pthread_create` from a simulated thread:
//! 1. the creator reserves the next thread id (ids follow creation order, not the OS), makes
//!    the OS thread with [`trampoline`] as its start routine, and reaches a switch point;
//! 2. the new thread first waits for its turn, then goes on the run and calls the program's
//!    start routine;
//! 3. it leaves the scheduler in the last thread-local destructor that runs on it (`Exit`),
//!    after the program's own (tokio's per-thread context, std's thread handle), so that
//!    whatever those do is still simulated.
//!
//! Threads that no simulated thread created (the test harness, glibc's and std's helpers,
//! threads started before the run) are not affected: their calls go to Linux.

use std::collections::BTreeMap;
use std::sync::Mutex;

use libc::{c_int, c_void};
use netpoll_sim::rng::{stream, Stream};
use netpoll_sim::Sim;
use netpoll_threads::host::{self, Reserved};
use netpoll_threads::{Failure, Outcome, Runner, ThreadedSim, Tid};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::calls::guard;
use crate::kernel::Kernel;
use crate::real;
use crate::state::{self, existing, nested, Current, Opts};

/// Runs `f` on `sim` as the first of a set of simulated threads under `runner`'s seeded
/// scheduler, with the threads it starts (`std::thread::spawn`, tokio's multi-thread runtime
/// and `spawn_blocking`): every socket, epoll and clock call of each goes to `sim`, one thread
/// runs at a time, and the seed picks who runs at each switch point (every call on the kernel,
/// every futex wait and wake under std's locks, `sched_yield`, thread start and join). A run
/// replays by seed; a different seed gives a different interleaving.
///
/// Virtual time moves when no thread can run: to the kernel's next event, or to the earliest
/// deadline of a thread in a timed wait (`epoll_wait`, `Condvar::wait_timeout`,
/// `recv_timeout`, `park_timeout`, `sleep`).
///
/// `f` runs on a thread named `main` created on the run, so that its thread-local destructors
/// (tokio's runtime context) still run on the simulated kernel.
///
/// One run at a time: the run is admitted alone in the process
/// ([`Runner::exclusive`](netpoll_threads::Runner::exclusive), whatever `runner` says), since
/// its threads block on std's process-wide futex words (the lock every std thread takes when it
/// starts and exits, `static` mutexes) and a run alive beside it would change its schedule. A
/// call made while another run is alive waits for it (in wall-clock time), then runs exactly as
/// a lone run of its seed: the same schedule. Tests that start runs need no lock of their own.
///
/// # Errors
/// The scheduler's [`Failure`]: a deadlock (every thread blocked, with what each waits for), a
/// panic in `f` (a panic in another thread is std's to report: its `join` returns it), a
/// livelock, a thread that spins without a switch point or blocks where the scheduler cannot
/// see (the watchdog). Its `Display` has the schedule, one column per thread, and the replay line. Threads
/// still blocked when the run fails are left waiting (they cannot unwind through C frames);
/// the test goes on.
///
/// # Panics
/// If called from a simulated thread (of any live run): it could not be admitted before that
/// run ends.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use netpoll_sim::Sim;
/// use netpoll_threads::Runner;
///
/// let out = netpoll_interpose::run_threads(Runner::new(3), Sim::new(3), || {
///     let (tx, rx) = mpsc::channel();
///     let t = std::thread::spawn(move || {
///         std::thread::sleep(Duration::from_secs(2));
///         tx.send(7).unwrap();
///     });
///     // Nobody sends within one virtual second: this times out without a real wait.
///     assert!(rx.recv_timeout(Duration::from_secs(1)).is_err());
///     let v = rx.recv().unwrap();
///     t.join().unwrap();
///     v
/// })
/// .unwrap();
/// assert_eq!(out.value, 7);
/// assert_eq!(out.report.now_ns(), 2_000_000_000);
/// ```
pub fn run_threads<T, F>(runner: Runner, sim: Sim, f: F) -> Result<Outcome<T>, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    run_hosted(runner, sim, move || {
        let main = std::thread::Builder::new()
            .name("main".to_owned())
            .spawn(f)
            .expect("netpoll-interpose: the run's main thread could not be started");
        match main.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// A threaded run whose first simulated thread (hosted, on the run) runs `first`, which starts
/// the program's threads itself: [`run_threads`] starts the closure on a std thread, a
/// `NETPOLL_SIM=threads:<seed>` test (`auto.rs`) libtest's start routine on a raw one.
pub(crate) fn run_hosted<T, F>(runner: Runner, sim: Sim, first: F) -> Result<Outcome<T>, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    host::refuse_nested("netpoll_interpose::run_threads");
    crate::keep_symbols();
    crate::quiet_lost_wakeup_scan(&sim);
    let slot = state::claim_slot().expect("at most 1,024 netpoll_interpose runs alive at once");
    let seed = sim.seed();
    let opts = Opts::default();
    // This thread only supervises: its own waits are real, whatever run it is on.
    let off = state::off();
    // Alone in the process: the run's threads block on std's process-wide futex words.
    let r = runner.exclusive(true).run(sim, move |k| {
        host::hosted();
        let cur = current(k, slot, seed, Tid(0), opts);
        let _entered = state::enter(&cur);
        first()
    });
    drop(off);
    state::release_slot(slot);
    r
}

/// The per-thread state of simulated thread `tid` of a threaded run.
fn current(k: ThreadedSim, slot: u32, seed: u64, tid: Tid, opts: Opts) -> Current<'static> {
    let rng = if tid.0 == 0 {
        stream(seed, Stream::Getrandom)
    } else {
        let mut r =
            ChaCha8Rng::seed_from_u64(seed ^ u64::from(tid.0).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.set_stream(Stream::Getrandom as u64);
        r
    };
    Current {
        sim: Kernel::Threaded(k),
        slot,
        rng: std::cell::RefCell::new(rng),
        idle: std::cell::Cell::new(0),
        opts,
        events: std::cell::RefCell::new(Vec::new()),
        // The async lost-wakeup oracle judges one thread's waits; on a threaded run the
        // kernel's scan stays quiet (`run_threads`), and this one is not installed.
        waits: crate::waits::Waits::default(),
        limit: std::cell::RefCell::new(None),
    }
}

/// The simulated threads of live threaded runs, by `pthread_t`, for `pthread_join`.
static THREADS: Mutex<BTreeMap<libc::pthread_t, Tid>> = Mutex::new(BTreeMap::new());

fn threads() -> std::sync::MutexGuard<'static, BTreeMap<libc::pthread_t, Tid>> {
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `pthread_create` hands to [`trampoline`].
struct Start {
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
    reserved: Reserved,
    slot: u32,
    seed: u64,
    opts: Opts,
}

/// `pthread_create` on a simulated thread of a threaded run: the new thread joins the run.
///
/// # Safety
/// As for the C function; called inside the interposed `pthread_create`.
pub(crate) unsafe fn create(
    cur: &Current<'_>,
    t: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
) -> c_int {
    let reserved = host::reserve("pthread");
    let tid = reserved.tid();
    let seed = cur.sim.seed();
    let s = Box::into_raw(Box::new(Start {
        start,
        arg,
        reserved: reserved.clone(),
        slot: cur.slot,
        seed,
        opts: cur.opts.clone(),
    }));
    // SAFETY: the trampoline takes back `s` on the new thread and calls `start(arg)` there.
    let r = unsafe { real::pthread_create(t, attr, trampoline, s.cast()) };
    if r != 0 {
        // SAFETY: the thread was not created; `s` is still ours.
        drop(unsafe { Box::from_raw(s) });
        reserved.abandon();
        return r;
    }
    // SAFETY: `pthread_create` succeeded and wrote the new thread's id.
    threads().insert(unsafe { *t }, tid);
    reserved.started();
    0
}

/// The start routine of a thread created on a threaded run.
extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Box<Start>` that `create` leaked for this thread alone.
    let s = unsafe { Box::from_raw(p.cast::<Start>()) };
    // Thread-local destructors run last-registered first: the scheduler's own thread-local
    // first, then `EXIT`, so that `EXIT` runs after every destructor the program registers and
    // before the scheduler's goes.
    let _ = host::current_tid();
    EXIT.with(|_| {});
    s.reserved.attach();
    let k = host::current_kernel().expect("an attached thread is a simulated thread");
    let cur: &'static Current<'static> = Box::leak(Box::new(current(
        k,
        s.slot,
        s.seed,
        s.reserved.tid(),
        s.opts.clone(),
    )));
    std::mem::forget(state::enter(cur));
    (s.start)(s.arg)
}

/// Takes a hosted thread off its run when the thread's last thread-local destructor runs.
struct Exit;

impl Drop for Exit {
    fn drop(&mut self) {
        if let Some(cur) = state::take_current() {
            // SAFETY: leaked from a box by `trampoline` on this thread; the thread is off the
            // run now, so nothing refers to it any more.
            drop(unsafe { Box::from_raw(std::ptr::from_ref(cur).cast_mut()) });
        }
        host::detach();
    }
}

thread_local! {
    static EXIT: Exit = const { Exit };
}

/// `pthread_join(3)`: on a simulated thread, joining another of the run's threads is a switch
/// point that blocks in the scheduler until that thread has left the run; the rest of the join
/// (the OS thread's last steps) is Linux's.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn pthread_join(t: libc::pthread_t, ret: *mut *mut c_void) -> c_int {
    if !nested() && existing().is_some_and(|c| c.sim.is_threaded()) {
        guard("pthread_join", || {
            let tid = threads().remove(&t);
            if let Some(tid) = tid {
                host::join(tid);
            }
        });
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::pthread_join(t, ret) }
}

/// `pthread_setname_np(3)`: a simulated thread naming itself (as std does for a named thread)
/// takes the name in the schedule and in failure reports too.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn pthread_setname_np(
    t: libc::pthread_t,
    name: *const libc::c_char,
) -> c_int {
    // SAFETY: `pthread_self` has no preconditions.
    let me = unsafe { libc::pthread_self() };
    if !nested() && !name.is_null() && t == me && existing().is_some_and(|c| c.sim.is_threaded()) {
        guard("pthread_setname_np", || {
            // SAFETY: a non-NULL name is a NUL-terminated string, as the C function requires.
            let n = unsafe { std::ffi::CStr::from_ptr(name) };
            host::set_name(n.to_string_lossy());
            crate::auto::named();
        });
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::pthread_setname_np(t, name) }
}

/// `sched_yield` on a threaded run: a switch point. `true` if it was handled.
pub(crate) fn yield_now(cur: &Current<'_>) -> bool {
    if !cur.sim.is_threaded() {
        return false;
    }
    netpoll_threads::yield_now();
    true
}

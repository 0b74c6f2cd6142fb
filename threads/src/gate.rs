//! Admission of runs: a run that hosts unmodified code is alone in the process while it runs.
//!
//! A run's schedule must depend on its seed alone. The simulated threads of a run that hosts
//! unmodified code (`netpoll-interpose`'s `run_threads`, `NETPOLL_SIM=threads:<seed>`) block on
//! std's futex words, and some of those words are process-wide: the lock every std thread takes
//! when it starts and exits, `static` mutexes. A thread of another run that holds such a word at
//! the wrong moment makes a simulated thread wait where it would not have waited alone, which
//! moves every later switch point: the same seed gives another schedule. So such a run is
//! admitted **exclusive**: it waits (in wall-clock time, outside every simulation) until no
//! other run is alive, and no other run starts until it is over.
//!
//! A run of [`Runner::run`](crate::Runner::run) that hosts nothing is admitted **shared**: its
//! threads block only in the scheduler's own waits, on the run's own objects, so another run
//! cannot change its schedule, and shared runs overlap freely (a `--jobs` sweep of threaded
//! scenarios keeps its parallelism). Its OS threads still take std's process-wide locks when
//! they start and exit, so a shared run waits while an exclusive one is alive, and does not
//! start while one waits (no exclusive run waits for ever behind a stream of shared ones).
//!
//! A run is over for the gate when [`Runner::run`](crate::Runner::run) returns, on every path
//! (success, failure, a panic in the supervisor): by then every simulated thread has left the
//! scheduler and the OS threads the run started are joined. Threads left behind by a failed run
//! (one that spins; a hosted thread blocked when the run failed) are not waited for: they wait
//! for ever or spin outside every run.
//!
//! A run started from a simulated thread of a live run would wait for its own run: that is a
//! panic ([`refuse_nested`]), not a hang. Shared runs that wait for each other outside the
//! scheduler (a barrier between their threads) can be held apart by an exclusive run queued
//! between their starts; the first one's watchdog then reports it as spinning.

use std::sync::{Condvar, Mutex, MutexGuard};

/// The runs alive in the process.
struct Admitted {
    /// An exclusive run is alive.
    exclusive: bool,
    /// How many shared runs are alive.
    shared: usize,
    /// How many exclusive runs wait for admission.
    waiting: usize,
    /// How many runs (of either kind) wait on [`OPENED`]: a run that ends with none waiting
    /// makes no wake (no system call per run in a sweep of shared runs).
    sleepers: usize,
}

static GATE: Mutex<Admitted> = Mutex::new(Admitted {
    exclusive: false,
    shared: 0,
    waiting: 0,
    sleepers: 0,
});
static OPENED: Condvar = Condvar::new();

fn gate() -> MutexGuard<'static, Admitted> {
    GATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A run's admission; dropping it lets the next run in.
#[derive(Debug)]
pub(crate) struct Admission {
    exclusive: bool,
}

/// Waits on [`OPENED`] once.
fn sleep(mut g: MutexGuard<'static, Admitted>) -> MutexGuard<'static, Admitted> {
    g.sleepers += 1;
    let mut g = OPENED.wait(g).unwrap_or_else(|e| e.into_inner());
    g.sleepers -= 1;
    g
}

/// Waits (in wall-clock time) until the run may start, and admits it.
pub(crate) fn admit(exclusive: bool) -> Admission {
    let mut g = gate();
    if exclusive {
        g.waiting += 1;
        while g.exclusive || g.shared > 0 {
            g = sleep(g);
        }
        g.waiting -= 1;
        g.exclusive = true;
    } else {
        while g.exclusive || g.waiting > 0 {
            g = sleep(g);
        }
        g.shared += 1;
    }
    Admission { exclusive }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut g = gate();
        if self.exclusive {
            g.exclusive = false;
        } else {
            g.shared -= 1;
        }
        let wake = g.sleepers > 0;
        drop(g);
        if wake {
            OPENED.notify_all();
        }
    }
}

/// Panics if the calling thread is a simulated thread: a run started there would wait for
/// ever for the run it is on (`what` names the call).
pub(crate) fn refuse_nested(what: &str) {
    if let Some((s, t)) = crate::sched::current() {
        let name = crate::sched::lock(&s.state).threads[t.0 as usize]
            .name
            .clone();
        panic!(
            "{what} called on simulated thread {t} `{name}` of a run that is still alive: a run \
             that hosts unmodified code is admitted alone in the process and every other run \
             waits for it to end, so a run started inside another would wait for ever (or, \
             alive at once, change its schedule); start it before or after the outer run, from \
             a thread that is not simulated"
        );
    }
}

//! What a program on a run cannot do yet, and the one place that says so. Each refusal prints
//! a line naming the limitation and what in tokio needs it, returns the errno the call fails
//! with, and is kept on the run ([`crate::take_limitation`]) so that the check's report can
//! name it next to the program's own error (tokio's "OS can't spawn worker thread: Resource
//! temporarily unavailable" does not say why).
//!
//! Threads are issue 9's (`netpoll-threads`): when `pthread_create` runs under its scheduler,
//! [`Limit::Threads`] goes, and `thread.rs` stops calling [`refuse`] for it.

use super::*;

/// A feature a run does not support.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Limit {
    /// A second thread: `pthread_create` on a run's thread.
    Threads,
    /// `getaddrinfo` of a name.
    NameResolution,
    /// A descriptor of a run that has ended, used on a later one (a process-wide object).
    EndedRun,
}

impl Limit {
    fn says(self) -> &'static str {
        match self {
            Limit::Threads => {
                "a thread on a one-thread run of the simulated kernel (netpoll_interpose::run, \
                 NETPOLL_SIM) cannot start threads, so tokio's spawn_blocking, its file I/O, its \
                 name resolution (lookup_host, connecting to a host name) and the multi-thread \
                 runtime do not run on it; run the program under netpoll_interpose::run_threads, \
                 or use the current_thread runtime and numeric addresses"
            }
            Limit::NameResolution => {
                "the simulated kernel has no name resolution; use a numeric IPv4 address"
            }
            Limit::EndedRun => {
                "the descriptor belongs to a run that has ended: an object made once per process \
                 on an earlier run cannot be used on a later one (tokio's signal driver keeps one \
                 socket pair for the whole process: build tokio without the `signal` and \
                 `process` features for programs on the simulated kernel)"
            }
        }
    }
}

/// Refuses `call` for `limit` on the calling thread's run (if any): prints why, remembers it on
/// the run, and returns `e`.
pub(crate) fn refuse(call: std::fmt::Arguments<'_>, limit: Limit, e: i32) -> i32 {
    let msg = format!("{call}: {}", limit.says());
    if let Some(cur) = crate::state::existing() {
        *cur.limit.borrow_mut() = Some(msg.clone());
    }
    unsupported(e, format_args!("{msg}"))
}

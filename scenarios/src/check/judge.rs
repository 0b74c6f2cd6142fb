//! The one place where a [`Check`](super::Check) asks the simulated kernel for its verdict.
//!
//! Every oracle lives in the kernel (`netpoll_sim::oracle`): the lost-wakeup scan at
//! quiescence, hangs, livelocks, leaks and the user's invariants. This file only arms them for
//! a run (the check's invariants, its declared open fds) and turns the kernel's first
//! [`Violation`], or how the user's closure ended, into a [`Finding`].

use std::io;
use std::sync::Arc;

use netpoll::Fd;
use netpoll_sim::{Sim, Violation};

/// A user invariant: run by the kernel at each quiescence and at the end.
/// `Send + Sync` as the kernel's hooks are (a `Sim` stays `Send`).
pub(crate) type Invariant = (
    String,
    Arc<dyn Fn(&Sim) -> Result<(), String> + Send + Sync>,
);

/// Why a seed failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    /// The oracle: `lost-wakeup`, `hang`, `livelock`, `leak`, `invariant` (the kernel's),
    /// `panic`, `error` or `nondeterminism` (the check's).
    pub kind: &'static str,
    /// The readable, multi-line diagnosis.
    pub diagnosis: String,
    /// The kernel's violation, when one fired.
    pub violation: Option<Violation>,
}

impl From<Violation> for Finding {
    fn from(v: Violation) -> Finding {
        Finding {
            kind: v.oracle(),
            diagnosis: v.to_string(),
            violation: Some(v),
        }
    }
}

/// How the user's closure ended.
pub(crate) enum Ended {
    Returned(io::Result<()>),
    Panicked(String),
}

/// Arms the kernel's oracles for one run.
pub(crate) fn arm(sim: &Sim, invariants: &[Invariant], expect_open: &[Fd]) {
    for (name, f) in invariants {
        let f = Arc::clone(f);
        sim.add_invariant(name, move |s| f(s));
    }
    for &fd in expect_open {
        sim.expect_open(fd);
    }
}

/// The verdict on a run that ended as `ended`: the kernel's first violation (the error or
/// panic that followed it is its consequence: every blocking call fails once one fired), else
/// the panic, else the error, else what the kernel finds at the end (invariants, leaks).
pub(crate) fn judge(sim: &Sim, ended: Ended) -> Option<Finding> {
    if let Some(v) = sim.violation() {
        return Some(v.into());
    }
    match ended {
        Ended::Panicked(msg) => Some(Finding {
            kind: "panic",
            diagnosis: format!("the checked closure panicked: {msg}"),
            violation: None,
        }),
        Ended::Returned(Err(e)) => Some(Finding {
            kind: "error",
            diagnosis: format!("the checked closure returned an error: {e}"),
            violation: None,
        }),
        Ended::Returned(Ok(())) => sim.finish().err().map(Finding::from),
    }
}

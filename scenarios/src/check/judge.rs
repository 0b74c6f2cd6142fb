//! The one place where a [`Check`](super::Check) asks the simulated kernel for its verdict.
//!
//! Everything the oracles decide lives in the kernel (`netpoll_sim`); this file only arms them
//! for a run (user invariants, declared open fds) and turns what they report, or how the
//! user's closure ended, into a [`Finding`].

use std::io;
use std::rc::Rc;

use netpoll::Fd;
use netpoll_sim::Sim;

/// A user invariant: run at each quiescence and at the end.
pub(crate) type Invariant = (String, Rc<dyn Fn(&Sim) -> Result<(), String>>);

/// Why a seed failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    /// `lost-wakeup`, `hang`, `livelock`, `leak`, `invariant`, `panic`, `error` or
    /// `nondeterminism`.
    pub kind: &'static str,
    /// The readable, multi-line diagnosis.
    pub diagnosis: String,
}

/// How the user's closure ended.
pub(crate) enum Ended {
    Returned(io::Result<()>),
    Panicked(String),
}

/// Arms the kernel's oracles for one run.
pub(crate) fn arm(_sim: &Sim, _invariants: &[Invariant], _expect_open: &[Fd]) {}

/// The verdict on a run that ended as `ended`.
pub(crate) fn judge(sim: &Sim, ended: Ended, invariants: &[Invariant]) -> Option<Finding> {
    match ended {
        Ended::Panicked(msg) => Some(Finding {
            kind: "panic",
            diagnosis: format!("the checked closure panicked: {msg}"),
        }),
        Ended::Returned(Err(e)) if e.kind() == io::ErrorKind::Deadlock => {
            Some(stranded(sim).unwrap_or_else(|| Finding {
                kind: "hang",
                diagnosis: format!(
                    "hang at {} ns: a blocking call would sleep for ever ({e})",
                    sim.now_ns()
                ),
            }))
        }
        Ended::Returned(Err(e)) => Some(Finding {
            kind: "error",
            diagnosis: format!("the checked closure returned an error: {e}"),
        }),
        Ended::Returned(Ok(())) => invariants.iter().find_map(|(name, f)| {
            f(sim).err().map(|m| Finding {
                kind: "invariant",
                diagnosis: format!("invariant {name:?} broken at the end: {m}"),
            })
        }),
    }
}

/// The first registration, of any epoll instance, that is ready for what it asks while nothing
/// is queued to report it (an `OUT` counts only for a registration without `IN`).
fn stranded(sim: &Sim) -> Option<Finding> {
    use netpoll::Events;
    if sim.pending() > 0 {
        return None;
    }
    for ep in 0..4096 {
        let Ok(list) = sim.stranded(ep) else { continue };
        for s in list {
            let mut wants = s.interest & (Events::IN | Events::RDHUP | Events::PRI);
            if !s.interest.contains(Events::IN) {
                wants |= s.interest & Events::OUT;
            }
            let wants = wants | Events::HUP | Events::ERR;
            if !s.ready.intersects(wants) {
                continue;
            }
            let mut d = format!(
                "lost wakeup at {} ns: fd {} (epoll fd {ep}, data {:#x}) is ready for {:?} and \
                 the loop waits for {:?}, but no event is queued (interest {:?}{})\n",
                sim.now_ns(),
                s.fd,
                s.data,
                s.ready,
                wants & s.ready,
                s.interest,
                if s.disarmed { ", oneshot disarmed" } else { "" }
            );
            let h = sim.history(s.fd);
            d.push_str(&format!("recent calls on fd {} (oldest first):\n", s.fd));
            for r in &h[h.len().saturating_sub(16)..] {
                d.push_str(&format!(
                    "  {:>12} {}\n",
                    r.at_ns,
                    crate::trace_out::call_text(r)
                ));
            }
            return Some(Finding {
                kind: "lost-wakeup",
                diagnosis: d,
            });
        }
    }
    None
}

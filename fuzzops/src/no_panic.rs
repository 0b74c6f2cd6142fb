//! The `sim_no_panic` harness: any call sequence, on a sim with any seed and (valid)
//! configuration, must not panic; and since one seed is one run, two runs of the same input
//! must observe exactly the same (a determinism self-check, STYLE point 13).
//!
//! After the ops, every query a harness may make is made on every descriptor (`readiness`,
//! `stranded`, `history`, `pending`, ...), so those cannot panic either.

use netpoll::Poller;
use netpoll_sim::Sim;

use crate::interp::{Interp, Mode, Obs};
use crate::ops::NoPanicInput;
use crate::report::{announce, tolerating_known_panics};
use crate::MAX_OPS;

/// Everything one run observed, for the determinism check.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    /// Each op's observation.
    pub obs: Vec<Obs>,
    /// What the queries said at the end, one line each.
    pub probes: Vec<String>,
    /// `Sim::fingerprint` at the end.
    pub fingerprint: (u64, u64),
}

impl Run {
    /// A run cut short by a known sim panic.
    fn known(id: &str) -> Run {
        Run {
            obs: Vec::new(),
            probes: vec![format!("stopped by a known sim panic: {id}")],
            fingerprint: (0, 0),
        }
    }
}

fn once(input: &NoPanicInput, strict: bool) -> Run {
    let cfg = if input.custom {
        input.knobs.config()
    } else {
        // Random ops leave edge-triggered data unread and call on after a hang on purpose:
        // the kernel's oracles would stop them.
        netpoll_sim::SimConfig {
            oracles: netpoll_sim::Oracles::off(),
            ..Default::default()
        }
    };
    let sim = Sim::with_config(input.seed, cfg);
    let mut it = if strict {
        Interp::new(sim, Mode::Sim)
    } else {
        Interp::with_hang_guard(sim, Mode::Sim, Sim::pending)
    };
    let obs = input
        .ops
        .iter()
        .take(MAX_OPS)
        .map(|op| it.apply(op))
        .collect();
    let sim = &it.p;
    let mut probes = vec![format!(
        "guard_skipped={} now={:?} pending={} next={:?} files={} stats={:?}",
        it.guard_skipped(),
        sim.now(),
        sim.pending(),
        sim.next_event_ns(),
        sim.open_files(),
        sim.stats()
    )];
    let mut fds: Vec<i32> = it.made().to_vec();
    fds.extend([-1, 0, 1_000_000]);
    for fd in fds {
        probes.push(format!(
            "fd {fd}: readiness={:?} stranded={:?} history={}",
            sim.readiness(fd).map_err(|e| e.raw_os_error()),
            sim.stranded(fd).map_err(|e| e.raw_os_error()),
            sim.history(fd).len()
        ));
    }
    Run {
        obs,
        probes,
        fingerprint: sim.fingerprint(),
    }
}

/// A one-line summary of `input`.
pub fn summary(input: &NoPanicInput) -> String {
    format!(
        "target=sim_no_panic seed={:#x} custom={} knobs={:?} ops={}",
        input.seed,
        input.custom,
        input.knobs,
        input.ops.len().min(MAX_OPS)
    )
}

/// Runs `input` twice (with the hang guard unless `NETPOLL_FUZZ_STRICT=1`); panics (with the
/// input's summary printed first) on a sim panic or if the two runs differ.
pub fn run(input: &NoPanicInput) -> Run {
    run_with(input, crate::strict_from_env())
}

/// [`run`], `strict` saying whether to run without the hang guard and without stepping over
/// the known sim panics ([`crate::report::KNOWN_PANICS`]).
pub fn run_with(input: &NoPanicInput, strict: bool) -> Run {
    announce(summary(input));
    let a = match tolerating_known_panics(strict, || once(input, strict)) {
        Ok(a) => a,
        Err(known) => return Run::known(known),
    };
    let b = once(input, strict);
    if a != b {
        let step = a.obs.iter().zip(&b.obs).position(|(x, y)| x != y);
        panic!(
            "nondeterminism: two runs of one input differ (first differing op: {step:?})\n\
             first: {a:?}\nsecond: {b:?}"
        );
    }
    a
}

/// The fuzz target's body.
pub fn run_bytes(data: &[u8]) {
    if let Some(input) = crate::decode::<NoPanicInput>(data) {
        run(&input);
    }
}

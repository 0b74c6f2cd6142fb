//! The `differential` harness: the same call sequence on the sim and on real Linux, compared
//! step by step. Where they differ, Linux is right and the sim has a bug.
//!
//! What is compared is [`Obs`]: return values, errnos, bytes read, event bits and data in order,
//! and new descriptors as creation indices. The ops are first bounded ([`crate::interp::bound`]):
//! every descriptor non-blocking and every wait `timeout == 0` (the real kernel must never
//! block), no `connect` (timing), binds to port 0 only (no clash with the machine), raw
//! descriptor numbers far outside both tables, and writes small and few enough that no buffer
//! fills. At the end a snapshot compares every descriptor's readiness through a fresh epoll
//! instance.
//!
//! Real descriptors are closed at the end of every input (`RealNet`'s drop), and runs are
//! serialised by a process-wide lock: creation indices only map one to one while nothing else
//! in the process opens descriptors.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

use crate::interp::{diff_step, Bounds, FileKind, Interp, Mode, Obs};
use crate::ops::{CtlOp, DiffInput, FdRef, Flags, Op};
use crate::report::announce;
use crate::MAX_DIFF_OPS;

/// The first step where the kernels disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The sim's seed.
    pub seed: u64,
    /// The ops run, bounded, with the observation both kernels agreed on; the last one is the
    /// diverging op, with the sim's observation.
    pub steps: Vec<(Op, Obs)>,
    /// What the sim returned for the last op.
    pub sim: Obs,
    /// What Linux returned for it.
    pub linux: Obs,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sim and Linux diverge (sim seed {:#x}):", self.seed)?;
        let last = self.steps.len().saturating_sub(1);
        for (i, (op, obs)) in self.steps.iter().enumerate() {
            if i == last {
                writeln!(
                    f,
                    "  {i:>3}: {op:?}\n       sim:   {:?}\n       linux: {:?}",
                    self.sim, self.linux
                )?;
            } else {
                writeln!(f, "  {i:>3}: {op:?} -> {obs:?}")?;
            }
        }
        Ok(())
    }
}

/// A divergence already reported (a sim bug awaiting its fix), tolerated so that fuzzing finds
/// the next one. Only errno disagreements of *failed* calls are listed: a failed call changes
/// no state, so both kernels remain comparable after it. Each has a regression test in
/// `tests/fuzz_twins.rs` (ignored until the sim is fixed). `NETPOLL_FUZZ_STRICT=1` turns the
/// allowances off.
#[derive(Debug)]
pub struct Known {
    /// A short name, also the regression test's.
    pub id: &'static str,
    /// Linux's behaviour against the sim's.
    pub what: &'static str,
    /// The op (bounded), the kind of file it named (if tracked), the sim's and Linux's results.
    matches: fn(&Op, Option<FileKind>, &Obs, &Obs) -> bool,
}

/// The known divergences.
/// (None at the moment: every divergence fuzzing found is fixed, and its regression test runs.)
pub const KNOWN: &[Known] = &[];

/// Known divergences that change state, and so cannot be stepped over: ops that would show
/// them are not run (unless strict). None at the moment (the two there were, `shutdown` of an
/// unconnected TCP socket and eventfd writes of more than 8 bytes, are fixed); the hook stays
/// for the next one.
fn skip_known(strict: bool, op: &Op, kind: Option<FileKind>) -> bool {
    let _ = (strict, op, kind);
    false
}

/// The known divergence `(op, sim, linux)` is, if any.
pub fn known(op: &Op, kind: Option<FileKind>, sim: &Obs, linux: &Obs) -> Option<&'static Known> {
    KNOWN.iter().find(|k| (k.matches)(op, kind, sim, linux))
}

static REAL_FDS: Mutex<()> = Mutex::new(());

/// The lock a differential run holds: take it in any test of the same process that opens real
/// descriptors, so that the run's creation indices keep mapping one to one.
pub fn real_fds_lock() -> MutexGuard<'static, ()> {
    REAL_FDS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ignore_sigpipe() {
    netpoll_realnet::process::ignore_sigpipe();
}

/// The ops that end a run: a fresh epoll instance, every descriptor added level-triggered for
/// every readiness, then enough waits to see each (round-robin, 8 at a time).
fn snapshot(made: usize) -> Vec<Op> {
    let mut ops = vec![Op::EpollCreate {
        flags: Flags {
            nonblock: false,
            cloexec: true,
            bogus: false,
            semaphore: false,
        },
    }];
    let ep_idx = made as u8;
    for i in 0..made.min(255) {
        ops.push(Op::EpollCtl {
            ep: FdRef::Slot(ep_idx),
            op: CtlOp::Add,
            fd: FdRef::Slot(i as u8),
            interest: 0b1111, // IN | OUT | RDHUP | PRI
            raw: 0,
            data: i as u8,
            null: false,
        });
    }
    for _ in 0..made.div_ceil(8) + 1 {
        ops.push(Op::EpollWait {
            ep: FdRef::Slot(ep_idx),
            max: 8,
            timeout: 0,
        });
    }
    ops
}

/// A one-line summary of `input`.
pub fn summary(input: &DiffInput) -> String {
    format!(
        "target=differential seed={:#x} ops={}",
        input.seed,
        input.ops.len().min(MAX_DIFF_OPS)
    )
}

/// Runs `input` on both kernels, allowing the [`KNOWN`] divergences unless
/// `NETPOLL_FUZZ_STRICT=1`. `Err` at the first step where they disagree.
///
/// # Errors
/// The [`Divergence`].
pub fn run(input: &DiffInput) -> Result<usize, Box<Divergence>> {
    run_with(input, crate::strict_from_env())
}

/// Runs `input` on both kernels; `strict`: no allowance for the [`KNOWN`] divergences.
///
/// # Errors
/// The [`Divergence`].
pub fn run_with(input: &DiffInput, strict: bool) -> Result<usize, Box<Divergence>> {
    announce(summary(input));
    ignore_sigpipe();
    let _serial = real_fds_lock();
    // Linux has no oracles: the sim arm runs without them.
    let cfg = netpoll_sim::SimConfig {
        oracles: netpoll_sim::Oracles::off(),
        ..Default::default()
    };
    let mut sim = Interp::new(Sim::with_config(input.seed, cfg), Mode::Differential);
    let mut real = Interp::new(RealNet::new(), Mode::Differential);
    let mut bounds = Bounds::default();
    let mut steps = Vec::new();
    let mut run_ops = |ops: &mut dyn Iterator<Item = Op>,
                       sim: &mut Interp<Sim>,
                       real: &mut Interp<RealNet>|
     -> Result<(), Box<Divergence>> {
        for op in ops {
            let (op, kind, os, or) = diff_step(&mut bounds, sim, real, &op, &|o, k| {
                skip_known(strict, o, k)
            });
            let same = os == or || (!strict && known(&op, kind, &os, &or).is_some());
            steps.push((op, os.clone()));
            if !same {
                return Err(Box::new(Divergence {
                    seed: input.seed,
                    steps: std::mem::take(&mut steps),
                    sim: os,
                    linux: or,
                }));
            }
        }
        Ok(())
    };
    run_ops(
        &mut input.ops.iter().take(MAX_DIFF_OPS).cloned(),
        &mut sim,
        &mut real,
    )?;
    let made = sim.made().len();
    run_ops(&mut snapshot(made).into_iter(), &mut sim, &mut real)?;
    Ok(steps.len())
}

/// The fuzz target's body: panics on a divergence.
pub fn run_bytes(data: &[u8]) {
    if let Some(input) = crate::decode::<DiffInput>(data) {
        if let Err(d) = run(&input) {
            panic!("{d}");
        }
    }
}

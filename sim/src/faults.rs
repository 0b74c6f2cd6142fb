//! The fault plan: what the simulated kernel may do that Linux allows but rarely does.
//!
//! Every knob is a probability (or a distribution) and every decision is drawn from the run's
//! `Faults` random stream, so an injected fault replays from the seed like everything else. Each
//! fault that fires is counted in [`FaultCounts`] (see `Sim::fault_counts`), so a report can say
//! which faults a failing run actually saw.
//!
//! | knob | what it does | why an event loop must cope |
//! |---|---|---|
//! | `short_read` | a read returns fewer bytes than are buffered, as if the rest arrived just after it: with `Linux` edges an `EPOLLIN` edge follows (on Linux a short read means the queue ran dry, and later bytes come with an edge); under `EmptyToNonEmpty` none does (the rest landed in a non-empty buffer) | `read` promises at least 1 byte |
//! | `short_write` | a write takes fewer bytes than there is room for, as if the buffer had filled and drained again at once: an `EPOLLOUT` edge follows (on Linux a short write means a full buffer, and the edge comes when room returns) | `write` promises at least 1 byte |
//! | `split_write` | a TCP write travels as several segments (each a wakeup) | segmentation is the network's choice |
//! | `latency` | per-packet latency distribution; different draws reorder packets *between* connections, never within one | delivery order across connections is not defined |
//! | `spurious` | `epoll_wait` reports a registration whose file is not ready | the contract allows spurious events |
//! | `eintr` | a blocking `epoll_wait` fails with `EINTR` | signals |
//! | `reset` | a TCP segment arrives as a reset instead: both ends see `ECONNRESET` | peers and middleboxes abort |
//! | `accept_abort` | `accept4` finds the first queued connection reset: `ECONNABORTED` | Linux returns it |
//! | `timer_first` | when a timeout expires at the same virtual instant as a delivery, the timeout wins | neither order is promised |
//! | `edge` | `Linux` edges (every write wakes) or `EmptyToNonEmpty` (only a write into an empty buffer wakes, as on other kernels and older Linux pipes) | portability |
//! | `cost` ([`CostModel`]) | each `Poller` call first costs virtual time (`call`: the loop's own work before it), each `epoll_wait` more on top (`turn`); packets due meanwhile arrive | handler code is not free: under load readiness piles up and `epoll_wait` returns batches |
//! | `vary` | per run, which fault families the plan keeps, drawn from the run's seed: `Timing` (latency; tick quantum and tie order: each kept with probability 1/2) or `All` (every family) | a faulty plan must still produce the schedules the quiet one does |
//! | `drop_event` | `epoll_wait` drops one reported readable event of a connection (not a listener) at most `drop_event_max` times a run | a broken kernel or wrapper: the canary that the oracles catch lost wakeups |
//! | `eintr_io` | a blocking `read`, `write`, `accept4` or `connect` about to sleep fails with `EINTR` instead | signals without `SA_RESTART` |
//! | `emfile` | a call that makes a descriptor (`socket`, `accept4`, `pipe2`, `socketpair`, `eventfd`, `epoll_create1`, `dup`) fails with `EMFILE`; a failed `accept4` leaves the connection queued, as Linux does | `RLIMIT_NOFILE` reached (the listener stays readable: a classic busy loop) |
//! | `enfile` | the same calls but `dup` (which makes no new file) fail with `ENFILE`, leaving the same state as `EMFILE` | the system-wide `fs.file-max` reached |
//! | `enobufs` | TCP `socket` fails with `ENOBUFS`, creating nothing | `inet_create` cannot allocate the sock (`sk_alloc`) |
//! | `enomem` | `epoll_ctl(ADD)` fails with `ENOMEM`, changing nothing | `ep_insert` cannot allocate its item |
//! | `enomem_file` | `eventfd`, `epoll_create1`, `socketpair` and `accept4` fail with `ENOMEM`, creating nothing (a failed `accept4` leaves the connection queued) | the kernel cannot allocate the new file's object (`eventfd_ctx`, `eventpoll`, the unix `sk_alloc`, `sock_alloc_file`) |
//!
//! `FaultPlan::none()` leaves every one of these off, and a knob that is off draws nothing, so
//! quiet runs are the same call for call as before the knobs existed. Each family draws from its
//! own stream (`rng::Stream`): turning one on never shifts another's draws.
//!
//! [`FaultPlan::swarm`] draws a random subset of faults with random weights from a seed, for
//! swarm testing: each seed explores a different corner.

use rand::Rng;

use crate::rng::{stream, Stream};

/// Which writes wake an edge-triggered reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EdgePolicy {
    /// Linux 6.x: every write into a socket, pipe or eventfd is a wakeup, even into an undrained
    /// buffer.
    #[default]
    Linux,
    /// Only a write that makes an empty buffer non-empty is a wakeup (BSD kqueue-like, and Linux
    /// pipes between 5.5 and 5.14). Code that relies on Linux's extra edges loses wakeups here.
    EmptyToNonEmpty,
}

/// How long a packet takes to cross the simulated loopback network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Uniform in `lo..=hi` nanoseconds.
    Uniform(u64, u64),
    /// `base` plus an exponential tail with mean `mean_extra` (nanoseconds), capped at 100×.
    Exponential {
        /// The floor.
        base: u64,
        /// The tail's mean.
        mean_extra: u64,
    },
    /// `fast` most of the time, `slow` with probability `p_slow`: a bimodal network.
    Bimodal {
        /// The usual latency.
        fast: u64,
        /// The occasional one.
        slow: u64,
        /// How often the slow one is drawn.
        p_slow: f64,
    },
}

impl Latency {
    pub(crate) fn draw(&self, r: &mut impl Rng) -> u64 {
        match *self {
            Latency::Uniform(lo, hi) if lo >= hi => lo,
            Latency::Uniform(lo, hi) => r.random_range(lo..=hi),
            Latency::Exponential { base, mean_extra } => {
                let u: f64 = r.random_range(f64::EPSILON..1.0);
                let extra = (-u.ln() * mean_extra as f64).min(mean_extra as f64 * 100.0);
                // No overflow: `FaultPlan::validate` bounds `base + 100 x mean_extra`.
                base.saturating_add(extra as u64)
            }
            Latency::Bimodal { fast, slow, p_slow } => {
                if r.random_bool(p_slow.clamp(0.0, 1.0)) {
                    slow
                } else {
                    fast
                }
            }
        }
    }
}

/// The fault plan. `Default` injects nothing: the kernel behaves like an idle Linux box.
///
/// Checked when a kernel is built ([`FaultPlan::validate`], called by `Sim::try_with_config`).
///
/// # Examples
///
/// Every `epoll_wait` that would block fails with `EINTR` instead; each fault is counted, and
/// replays from the seed like everything else.
///
/// ```
/// use netpoll::sys::errno::EINTR;
/// use netpoll::{EpollEvent, Poller};
/// use netpoll_sim::{FaultPlan, Sim, SimConfig};
///
/// let plan = FaultPlan { eintr: 1.0, ..FaultPlan::none() };
/// let sim = Sim::try_with_config(1, SimConfig { faults: plan, ..SimConfig::default() })?;
/// let ep = sim.epoll_create1(0)?;
/// let e = sim.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], 100).unwrap_err();
/// assert_eq!(e.raw_os_error(), Some(EINTR));
/// assert_eq!(sim.fault_counts().eintr, 1);
/// // Ready-made plans: every benign fault, or a random subset drawn from a seed.
/// assert!(FaultPlan::chaos().validate().is_ok());
/// assert_eq!(FaultPlan::swarm(7), FaultPlan::swarm(7));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Probability that a read is cut short (when more than one byte could be read).
    pub short_read: f64,
    /// Probability that a write is cut short (when more than one byte could be written).
    pub short_write: f64,
    /// Probability that a TCP write is cut into two segments at a random point.
    pub split_write: f64,
    /// Per-packet latency; `None` keeps the configuration's uniform range.
    pub latency: Option<Latency>,
    /// Probability, per `epoll_wait` that reports, of adding one spurious event.
    pub spurious: f64,
    /// Probability that an `epoll_wait` about to block fails with `EINTR` instead.
    pub eintr: f64,
    /// Probability that an arriving TCP data segment resets the connection instead.
    pub reset: f64,
    /// Probability that `accept4` with a connection queued fails with `ECONNABORTED`.
    pub accept_abort: f64,
    /// Probability that a timeout expiring at the same instant as a delivery is reported first.
    pub timer_first: f64,
    /// Round every delivery time up to a multiple of this (0: off), so deliveries land on the
    /// same instants as millisecond timeouts and the tie-break above matters.
    pub quantum_ns: u64,
    /// Which writes are edges.
    pub edge: EdgePolicy,

    // ----- pressure, per-run families, dropped events, errnos (see the table above) -----
    /// The cost model; `None`: calls and turns take no virtual time.
    pub cost: Option<Box<CostModel>>,
    /// Which families this plan keeps for a run, drawn from the run's seed.
    pub vary: Vary,
    /// Probability, per `epoll_wait` that reports a connection readable, of dropping that event.
    pub drop_event: f64,
    /// The most events dropped in a run (0: no limit).
    pub drop_event_max: u32,
    /// Probability that a blocking `read`, `write`, `accept4` or `connect` about to sleep fails
    /// with `EINTR`.
    pub eintr_io: f64,
    /// Probability that a call making a descriptor fails with `EMFILE`.
    pub emfile: f64,
    /// Probability that a call making a descriptor and a file (all but `dup`) fails with
    /// `ENFILE`.
    pub enfile: f64,
    /// Probability that a TCP `socket` fails with `ENOBUFS`.
    pub enobufs: f64,
    /// Probability that `eventfd`, `epoll_create1`, `socketpair` or `accept4` fails with
    /// `ENOMEM`.
    pub enomem_file: f64,
    /// Probability that `epoll_ctl(ADD)` fails with `ENOMEM`.
    pub enomem: f64,
}

/// Virtual time the loop's own work takes ([`FaultPlan::cost`]), each draw from the run's
/// `Cost` stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// What each `Poller` call costs before it runs; `None`: nothing.
    pub call: Option<Latency>,
    /// What each `epoll_wait` (a turn of the loop) costs on top; `None`: nothing.
    pub turn: Option<Latency>,
}

/// Which of its fault families a plan keeps for one run ([`FaultPlan::for_run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Vary {
    /// All of them, every run.
    #[default]
    Off,
    /// The timing families (latency; the tick quantum with its tie order) each with
    /// probability 1/2; the others, the cost model included, always.
    Timing,
    /// Every family with probability 1/2 (all off in some runs).
    All,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            short_read: 0.0,
            short_write: 0.0,
            split_write: 0.0,
            latency: None,
            spurious: 0.0,
            eintr: 0.0,
            reset: 0.0,
            accept_abort: 0.0,
            timer_first: 0.0,
            quantum_ns: 0,
            edge: EdgePolicy::Linux,
            cost: None,
            vary: Vary::Off,
            drop_event: 0.0,
            drop_event_max: 0,
            eintr_io: 0.0,
            emfile: 0.0,
            enfile: 0.0,
            enobufs: 0.0,
            enomem_file: 0.0,
            enomem: 0.0,
        }
    }
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Every benign fault on at a moderate rate (no resets or aborts, which change what a
    /// correct program observes): short I/O, split writes, jittery latency, spurious events,
    /// `EINTR`, timer/readiness ties in both orders, and the loop's own work taking virtual
    /// time ([`LOAD_COST`]), so that readiness piles up and `epoll_wait` returns batches.
    ///
    /// Its lock-step timing can hide a bug the quiet plan shows: the scenarios' and `Check`'s
    /// `chaos` therefore run each seed twice, quiet and with this plan
    /// (`netpoll_scenarios::swarm::FaultSpec::phases`).
    pub fn chaos() -> FaultPlan {
        FaultPlan {
            short_read: 0.2,
            short_write: 0.2,
            split_write: 0.3,
            latency: Some(Latency::Exponential {
                base: 2_000,
                mean_extra: 40_000,
            }),
            spurious: 0.05,
            eintr: 0.05,
            reset: 0.0,
            accept_abort: 0.0,
            timer_first: 0.5,
            quantum_ns: 1_000_000,
            edge: EdgePolicy::Linux,
            cost: Some(Box::new(LOAD_COST)),
            ..FaultPlan::default()
        }
    }

    /// Swarm testing: a random subset of the benign faults, each with a random weight, drawn
    /// from `seed` alone (its own stream, so the run's other draws are untouched): short I/O,
    /// split writes, spurious events, `EINTR` on waits, ties, a latency distribution, the tick
    /// quantum, the edge policy; then, from a second stream (so those stay as they were), a
    /// turn cost (the cost model, in half the seeds) and `EINTR` on blocking I/O.
    ///
    /// Resets and aborts are left to scenarios that expect them, and so are the errnos that
    /// change what a correct program observes (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: a
    /// connection refused or dropped), and dropped events (a broken kernel).
    pub fn swarm(seed: u64) -> FaultPlan {
        let mut r = stream(seed, Stream::Swarm);
        fn knob(r: &mut impl Rng, max: f64) -> f64 {
            if r.random_bool(0.5) {
                r.random_range(0.0..max)
            } else {
                0.0
            }
        }
        let mut plan = FaultPlan {
            short_read: knob(&mut r, 0.5),
            short_write: knob(&mut r, 0.5),
            split_write: knob(&mut r, 0.5),
            spurious: knob(&mut r, 0.2),
            eintr: knob(&mut r, 0.2),
            timer_first: knob(&mut r, 1.0),
            ..FaultPlan::default()
        };
        if r.random_bool(0.5) {
            plan.latency = Some(match r.random_range(0..3) {
                0 => Latency::Uniform(1_000, r.random_range(2_000..200_000)),
                1 => Latency::Exponential {
                    base: 1_000,
                    mean_extra: r.random_range(1_000..100_000),
                },
                _ => Latency::Bimodal {
                    fast: 5_000,
                    slow: r.random_range(100_000..5_000_000),
                    p_slow: r.random_range(0.01..0.2),
                },
            });
        }
        if r.random_bool(0.3) {
            plan.quantum_ns = 1_000_000;
        }
        if r.random_bool(0.2) {
            plan.edge = EdgePolicy::EmptyToNonEmpty;
        }
        // Knobs added later come from a stream of their own, so a seed's earlier knobs stay as
        // they were. The loop's own work takes virtual time in half the seeds: a turn costs 1 µs plus an
        // exponential tail whose mean is drawn (calls themselves stay free: charging each call
        // lowered park-no-recheck's detection, BENCHMARKS.md).
        let mut r = stream(seed, Stream::SwarmLater);
        if r.random_bool(0.5) {
            plan.cost = Some(Box::new(CostModel {
                call: None,
                turn: Some(Latency::Exponential {
                    base: 1_000,
                    mean_extra: r.random_range(1_000..100_000),
                }),
            }));
        }
        // Blocking I/O interrupted by signals (nonblocking loops never see it).
        plan.eintr_io = knob(&mut r, 0.2);
        plan
    }

    /// Whether any fault can fire.
    pub fn is_quiet(&self) -> bool {
        *self == FaultPlan::default()
    }
}

/// [`FaultPlan::under_load`]'s cost of a call: 200 ns plus an exponential tail of mean 1 µs.
pub const LOAD_CALL_COST: Latency = Latency::Exponential {
    base: 200,
    mean_extra: 1_000,
};
/// [`FaultPlan::under_load`]'s cost of a loop turn: 1 µs plus an exponential tail of mean 50 µs.
pub const LOAD_TURN_COST: Latency = Latency::Exponential {
    base: 1_000,
    mean_extra: 50_000,
};
/// The cost model of [`FaultPlan::under_load`] and [`FaultPlan::chaos`]: [`LOAD_CALL_COST`]
/// per call, [`LOAD_TURN_COST`] more per loop turn.
pub const LOAD_COST: CostModel = CostModel {
    call: Some(LOAD_CALL_COST),
    turn: Some(LOAD_TURN_COST),
};

impl FaultPlan {
    /// This plan with the cost model on ([`LOAD_CALL_COST`], [`LOAD_TURN_COST`]) and its timing
    /// families varied per run ([`Vary::Timing`], unless it varies already): readiness piles up
    /// and `epoll_wait` returns batches as under load, and some runs keep the quiet plan's
    /// delivery times. `FaultPlan::chaos().under_load()` finds more of the zoo's bugs than
    /// `chaos` (BENCHMARKS.md), and `FaultPlan::none().under_load()` is the quiet plan with
    /// handler time only.
    ///
    /// ```
    /// use netpoll_sim::{FaultPlan, Vary};
    /// let p = FaultPlan::chaos().under_load();
    /// assert!(p.cost.is_some() && p.vary == Vary::Timing);
    /// // Some seeds run chaos without its tick quantum: deliveries as a quiet plan has them.
    /// assert!((0..64).any(|seed| p.for_run(seed).quantum_ns == 0));
    /// assert!((0..64).any(|seed| p.for_run(seed).quantum_ns > 0));
    /// ```
    pub fn under_load(mut self) -> FaultPlan {
        self.cost = Some(Box::new(CostModel {
            call: Some(LOAD_CALL_COST),
            turn: Some(LOAD_TURN_COST),
        }));
        if self.vary == Vary::Off {
            self.vary = Vary::Timing;
        }
        self
    }

    /// The plan a run seeded with `seed` uses: this one, less the families [`Vary`] drops for
    /// that seed (drawn on their own stream, so the run's other draws are untouched).
    ///
    /// ```
    /// use netpoll_sim::{FaultPlan, Vary};
    /// let all = FaultPlan { vary: Vary::All, ..FaultPlan::chaos() };
    /// // Some seeds run with every family off: the quiet plan's schedules.
    /// assert!((0..2000).any(|seed| all.for_run(seed).is_quiet()));
    /// assert_eq!(FaultPlan::none().for_run(3), FaultPlan::none());
    /// ```
    pub fn for_run(&self, seed: u64) -> FaultPlan {
        let mut p = self.clone();
        if p.vary == Vary::Off {
            return p;
        }
        let mut r = stream(seed, Stream::Vary);
        let mut keep = || r.random_bool(0.5);
        if p.vary == Vary::All {
            for k in [
                &mut p.short_read,
                &mut p.short_write,
                &mut p.split_write,
                &mut p.spurious,
                &mut p.eintr,
                &mut p.reset,
                &mut p.accept_abort,
                &mut p.drop_event,
                &mut p.eintr_io,
                &mut p.emfile,
                &mut p.enfile,
                &mut p.enobufs,
                &mut p.enomem_file,
                &mut p.enomem,
            ] {
                if !keep() {
                    *k = 0.0;
                }
            }
            if !keep() {
                p.edge = EdgePolicy::Linux;
            }
        }
        if !keep() {
            p.latency = None;
        }
        if !keep() {
            p.quantum_ns = 0;
            p.timer_first = 0.0;
        }
        if p.vary == Vary::All && !keep() {
            p.cost = None;
        }
        p.vary = Vary::Off;
        p
    }
}

/// How many faults of each kind fired in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct FaultCounts {
    pub short_reads: u64,
    pub short_writes: u64,
    pub split_writes: u64,
    pub spurious: u64,
    pub eintr: u64,
    pub resets: u64,
    pub accept_aborts: u64,
    pub timer_first: u64,
    /// Virtual nanoseconds the cost model charged.
    pub cost_ns: u64,
    pub dropped_events: u64,
    pub eintr_io: u64,
    pub emfile: u64,
    pub enfile: u64,
    pub enobufs: u64,
    pub enomem_file: u64,
    pub enomem: u64,
}

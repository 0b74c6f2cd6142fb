//! Seeded randomness: one ChaCha stream per subsystem, all derived from the run's seed.
//!
//! Each subsystem draws from its own stream (`ChaCha8Rng::set_stream`), so adding a draw in one
//! place never shifts the draws of another: a change to port selection does not change network
//! latencies for the same seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The subsystems that draw random numbers, each with its own stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Network latency and segmentation.
    Net = 1,
    /// Ephemeral port selection.
    Ports = 2,
    /// Fault injection decisions.
    Faults = 3,
    /// Drawing a swarm-testing fault plan.
    Swarm = 4,
    /// `getrandom` for a program running on the kernel through `netpoll-interpose` (drawn by
    /// the interposer, never by the kernel).
    Getrandom = 5,
    /// Which fault families a plan with `vary` keeps for one run.
    Vary = 6,
    /// Injected errnos (`EINTR` on blocking calls, `EMFILE`, `ENOMEM`).
    Errno = 7,
    /// Dropped epoll events.
    Drop = 8,
    /// The cost model: virtual time each call and each loop turn takes.
    Cost = 9,
    /// Drawing the knobs a swarm plan gained later (its cost model, `EINTR` on blocking I/O),
    /// apart from [`Stream::Swarm`] so that a seed's earlier knobs stay as they were.
    SwarmLater = 10,
}

/// The kernel's random streams.
#[derive(Debug, Clone)]
pub struct Rngs {
    net: ChaCha8Rng,
    ports: ChaCha8Rng,
    faults: ChaCha8Rng,
    cost: ChaCha8Rng,
    errno: ChaCha8Rng,
    drop: ChaCha8Rng,
}

impl Rngs {
    /// All streams for `seed`.
    pub fn new(seed: u64) -> Rngs {
        Rngs {
            net: stream(seed, Stream::Net),
            ports: stream(seed, Stream::Ports),
            faults: stream(seed, Stream::Faults),
            cost: stream(seed, Stream::Cost),
            errno: stream(seed, Stream::Errno),
            drop: stream(seed, Stream::Drop),
        }
    }

    /// The generator for one subsystem.
    pub fn get(&mut self, s: Stream) -> &mut ChaCha8Rng {
        match s {
            Stream::Net => &mut self.net,
            Stream::Ports => &mut self.ports,
            Stream::Faults
            | Stream::Swarm
            | Stream::SwarmLater
            | Stream::Vary
            | Stream::Getrandom => &mut self.faults,
            Stream::Cost => &mut self.cost,
            Stream::Errno => &mut self.errno,
            Stream::Drop => &mut self.drop,
        }
    }

    /// A uniform draw in `lo..=hi` from stream `s`.
    pub fn range(&mut self, s: Stream, lo: u64, hi: u64) -> u64 {
        if lo >= hi {
            lo
        } else {
            self.get(s).random_range(lo..=hi)
        }
    }

    /// `true` with probability `p` (clamped to 0..=1), from stream `s`. Draws nothing when `p`
    /// is 0 or 1, so a disabled knob costs no randomness.
    #[inline]
    pub fn chance(&mut self, s: Stream, p: f64) -> bool {
        // Disabled knobs are the common case, checked on hot paths: keep that test inline.
        if draws(p) {
            self.chance_draw(s, p)
        } else {
            false
        }
    }

    #[inline(never)]
    fn chance_draw(&mut self, s: Stream, p: f64) -> bool {
        if p >= 1.0 {
            true
        } else {
            self.get(s).random_bool(p)
        }
    }
}

/// Whether a knob of probability `p` is on: [`Rngs::chance`] draws for it (and may say yes).
/// Off, a path may skip what only that draw could change.
#[inline(always)]
pub fn draws(p: f64) -> bool {
    // Not `p <= 0.0`: a NaN draws (and `chance_draw` judges it).
    p > 0.0 || p.is_nan()
}

/// The generator for subsystem `s` of the run seeded with `seed`.
pub fn stream(seed: u64, s: Stream) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(s as u64);
    r
}

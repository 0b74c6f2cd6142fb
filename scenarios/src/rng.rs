//! The harness's own seeded choices (which client stalls, when a timer is due), kept apart from
//! the simulated kernel's random streams so that a scenario's decisions never shift the
//! kernel's and vice versa. The generator is the workspace's one SplitMix64,
//! [`netpoll::rt::rng::Rng`]: tiny, fast, and the same on every platform.

pub use netpoll::rt::rng::mix;

/// A seeded stream of the harness's choices.
#[derive(Clone, Debug)]
pub struct Rng(netpoll::rt::rng::Rng);

impl Rng {
    /// A generator for `seed`, on a stream named by `stream` (different streams of one seed
    /// are independent).
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(netpoll::rt::rng::Rng::new(mix(
            seed ^ mix(stream.wrapping_add(0x6e65_7470_6f6c_6c00))
        )))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }

    /// `true` with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }
}

//! A small deterministic generator (SplitMix64) for the seeded executor's choices: no
//! dependency, the same stream on every platform, cheap enough to call once per scheduled task.
//! The one copy of it in the workspace: `netpoll-scenarios` draws its own streams from it too.

/// SplitMix64 (Steele, Lea, Flood 2014): the state advances by a fixed odd step and each output
/// is the state passed through [`mix`].
///
/// ```
/// use netpoll::rt::rng::{mix, Rng};
///
/// let mut r = Rng::new(41);
/// assert_eq!(r.next_u64(), mix(41u64.wrapping_add(0x9E37_79B9_7F4A_7C15)));
/// ```
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    pub(crate) fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

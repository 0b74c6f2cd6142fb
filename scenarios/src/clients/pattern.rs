//! The byte pattern: each connection's request stream is a keyed arithmetic sequence, generated
//! and checked a buffer at a time, so no message is ever held whole (a 16 MiB message costs a
//! client the 64 KiB buffer it writes from, no more).

/// The byte at `offset` of connection `conn`'s request stream: a keyed arithmetic sequence, so
/// a lost, duplicated or reordered byte (or one from another connection) shows.
#[inline]
pub fn pattern(key: u64, offset: u64) -> u8 {
    (key.wrapping_add(offset.wrapping_mul(PATTERN_STEP)) >> 56) as u8
}

const PATTERN_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Fills `buf` with the stream `key` from `offset` on (the same bytes as [`pattern`], one
/// addition per byte).
pub fn fill_pattern(buf: &mut [u8], key: u64, offset: u64) {
    let mut x = key.wrapping_add(offset.wrapping_mul(PATTERN_STEP));
    for b in buf {
        *b = (x >> 56) as u8;
        x = x.wrapping_add(PATTERN_STEP);
    }
}

/// The index of the first byte of `got` that is not the stream `key` from `offset` on.
pub fn check_pattern(got: &[u8], key: u64, offset: u64) -> Option<usize> {
    let mut x = key.wrapping_add(offset.wrapping_mul(PATTERN_STEP));
    let mut bad = false;
    for &b in got {
        bad |= b != (x >> 56) as u8;
        x = x.wrapping_add(PATTERN_STEP);
    }
    if !bad {
        return None;
    }
    (0..got.len()).find(|&j| got[j] != pattern(key, offset + j as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::mix;

    #[test]
    fn fast_pattern_is_the_pattern() {
        let key = mix(42);
        let mut buf = [0u8; 300];
        fill_pattern(&mut buf, key, 1000);
        for (j, &b) in buf.iter().enumerate() {
            assert_eq!(b, pattern(key, 1000 + j as u64));
        }
        assert_eq!(check_pattern(&buf, key, 1000), None);
        buf[123] ^= 1;
        assert_eq!(check_pattern(&buf, key, 1000), Some(123));
        // A shifted stream (one byte lost) is caught at once.
        fill_pattern(&mut buf, key, 1001);
        assert_eq!(check_pattern(&buf, key, 1000), Some(0));
    }
}

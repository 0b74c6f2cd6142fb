//! Replay tokens: one short string that names a scenario, its parameters and its seed.
//!
//! A token reads `np1-<hex>`. The prefix names the format version; the hex is, in order: the
//! magic bytes `NP`, the version byte, the scenario name (a length byte and its bytes), the
//! parameter values (a count byte and one LEB128 varint each, in the scenario's declaration
//! order), the seed (a varint), and a 32-bit FNV-1a checksum of everything before it. Decoding
//! checks all of it and answers a corrupt, truncated or foreign token with a [`TokenError`],
//! never a panic.

use std::fmt;

use crate::swarm::FaultSpec;

/// The format version this build writes for a run without faults (and reads).
pub const VERSION: u8 = 1;
/// The version of a token that carries a fault plan: version 1 plus a fault section before the
/// checksum (see [`crate::swarm`]).
pub const VERSION_FAULTS: u8 = 2;
const MAGIC: [u8; 2] = *b"NP";
const PREFIX: &str = "np";

/// What a token carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// The scenario's registry name.
    pub scenario: String,
    /// Parameter values in the scenario's declaration order.
    pub values: Vec<u64>,
    /// The seed.
    pub seed: u64,
    /// The faults the run injects (`None`: a version-1 token).
    pub faults: FaultSpec,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not shaped like a netpoll token at all.
    Foreign(String),
    /// A netpoll token of a format version this build does not read.
    Version(u64),
    /// Shaped right, but the bytes do not check out.
    Corrupt(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Foreign(why) => write!(
                f,
                "not a netpoll replay token ({why}); tokens look like np{VERSION}-4e5001..."
            ),
            TokenError::Version(v) => write!(
                f,
                "replay token format version {v} is not supported by this build (it reads versions {VERSION} and {VERSION_FAULTS})"
            ),
            TokenError::Corrupt(why) => write!(f, "corrupt replay token: {why}"),
        }
    }
}

impl std::error::Error for TokenError {}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, TokenError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(TokenError::Corrupt("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], TokenError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(TokenError::Corrupt("truncated"))?;
        let s = self
            .bytes
            .get(self.at..end)
            .ok_or(TokenError::Corrupt("truncated"))?;
        self.at = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, TokenError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(TokenError::Corrupt("a number overflows 64 bits"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(TokenError::Corrupt("a number overflows 64 bits"))
    }
}

impl Token {
    /// The token's text.
    ///
    /// # Panics
    /// If the scenario name is longer than 255 bytes or there are more than 255 parameters
    /// (the registry never has such scenarios).
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&MAGIC);
        let version = if self.faults == FaultSpec::None {
            VERSION
        } else {
            VERSION_FAULTS
        };
        b.push(version);
        let name = self.scenario.as_bytes();
        b.push(u8::try_from(name.len()).expect("scenario name under 256 bytes"));
        b.extend_from_slice(name);
        b.push(u8::try_from(self.values.len()).expect("under 256 parameters"));
        for &v in &self.values {
            put_varint(&mut b, v);
        }
        put_varint(&mut b, self.seed);
        self.faults.encode(&mut b, put_varint);
        let sum = fnv1a32(&b);
        b.extend_from_slice(&sum.to_be_bytes());
        let mut s = format!("{PREFIX}{version}-");
        for byte in b {
            s.push_str(&format!("{byte:02x}"));
        }
        s
    }

    /// Reads a token.
    ///
    /// # Errors
    /// [`TokenError`] for anything that is not a whole, intact token of this version.
    pub fn decode(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Err(TokenError::Foreign("it does not start with \"np\"".into()));
        };
        let Some((ver, hex)) = rest.split_once('-') else {
            return Err(TokenError::Foreign("no '-' after the version".into()));
        };
        let ver: u64 = ver
            .parse()
            .map_err(|_| TokenError::Foreign(format!("version {ver:?} is not a number")))?;
        if ver != u64::from(VERSION) && ver != u64::from(VERSION_FAULTS) {
            return Err(TokenError::Version(ver));
        }
        if hex.len() % 2 != 0 {
            return Err(TokenError::Corrupt("odd number of hex digits"));
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks(2) {
            let digit = |c: u8| {
                (c as char)
                    .to_digit(16)
                    .ok_or(TokenError::Corrupt("not hex"))
            };
            bytes.push((digit(pair[0])? * 16 + digit(pair[1])?) as u8);
        }
        if bytes.len() < MAGIC.len() + 1 + 4 {
            return Err(TokenError::Corrupt("truncated"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 4);
        let want = u32::from_be_bytes(sum.try_into().expect("4 bytes"));
        if body[..2] != MAGIC {
            return Err(TokenError::Foreign("wrong magic bytes".into()));
        }
        if u64::from(body[2]) != ver {
            // The prefix and the body disagree: an edited or spliced token, whichever is right.
            return Err(TokenError::Corrupt(
                "the version in the prefix differs from the version inside the token",
            ));
        }
        if fnv1a32(body) != want {
            return Err(TokenError::Corrupt("checksum mismatch"));
        }
        let mut r = Reader { bytes: body, at: 3 };
        let n = usize::from(r.byte()?);
        let scenario = std::str::from_utf8(r.take(n)?)
            .map_err(|_| TokenError::Corrupt("scenario name is not UTF-8"))?
            .to_string();
        let count = r.byte()?;
        let mut values = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            values.push(r.varint()?);
        }
        let seed = r.varint()?;
        let faults = if ver == u64::from(VERSION_FAULTS) {
            let r = std::cell::RefCell::new(&mut r);
            FaultSpec::decode(
                &mut || r.borrow_mut().byte(),
                &mut || r.borrow_mut().varint(),
                TokenError::Corrupt,
            )?
        } else {
            FaultSpec::None
        };
        if r.at != body.len() {
            return Err(TokenError::Corrupt("trailing bytes"));
        }
        Ok(Token {
            scenario,
            values,
            seed,
            faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Token {
        Token {
            scenario: "echo".into(),
            values: vec![100_000, 10, 64, 0, u64::MAX],
            seed: 0xdead_beef,
            faults: FaultSpec::None,
        }
    }

    #[test]
    fn round_trip() {
        for t in [
            sample(),
            Token {
                scenario: String::new(),
                values: vec![],
                seed: 0,
                faults: FaultSpec::Swarm,
            },
            Token {
                scenario: "x".into(),
                values: vec![1 << 63],
                seed: u64::MAX,
                faults: FaultSpec::Plan(crate::swarm::quantize(&netpoll_sim::FaultPlan::swarm(7))),
            },
            Token {
                scenario: "y".into(),
                values: vec![3],
                seed: 9,
                faults: FaultSpec::Chaos,
            },
        ] {
            let s = t.encode();
            let v = if t.faults == FaultSpec::None {
                "np1-"
            } else {
                "np2-"
            };
            assert!(s.starts_with(v), "{s}");
            assert_eq!(Token::decode(&s), Ok(t));
        }
    }

    #[test]
    fn every_single_digit_change_is_refused() {
        let s = sample().encode();
        for i in 4..s.len() {
            let mut b = s.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(b).unwrap();
            assert!(
                Token::decode(&t).is_err(),
                "changed digit {i} accepted: {t}"
            );
        }
    }

    #[test]
    fn truncations_are_refused() {
        let s = sample().encode();
        for end in 0..s.len() {
            assert!(
                Token::decode(&s[..end]).is_err(),
                "prefix of {end} chars accepted"
            );
        }
    }

    /// Random text, random hex after a valid prefix, and random byte flips of a valid token:
    /// every one is answered, none panics.
    #[test]
    fn random_input_never_panics() {
        let mut rng = crate::rng::Rng::new(1, 99);
        let good = sample().encode();
        let alphabet = b"np0123456789abcdefxyz-=\x00\xff ";
        for _ in 0..20_000 {
            let len = rng.range(0, 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[rng.range(0, alphabet.len() as u64 - 1) as usize] as char)
                .collect();
            let _ = Token::decode(&text);
            let hex: String = (0..rng.range(0, 60))
                .map(|_| format!("{:x}", rng.range(0, 15)))
                .collect();
            let _ = Token::decode(&format!("np1-4e5001{hex}"));
            let mut b = good.clone().into_bytes();
            let i = rng.range(4, b.len() as u64 - 1) as usize;
            b[i] = b"0123456789abcdef"[rng.range(0, 15) as usize];
            if let Ok(t) = Token::decode(std::str::from_utf8(&b).unwrap()) {
                assert_eq!(t, sample(), "a changed token decoded to something else");
            }
        }
    }

    #[test]
    fn foreign_and_future_tokens() {
        assert!(matches!(
            Token::decode("hello"),
            Err(TokenError::Foreign(_))
        ));
        assert!(matches!(Token::decode(""), Err(TokenError::Foreign(_))));
        assert!(matches!(Token::decode("np1"), Err(TokenError::Foreign(_))));
        assert!(matches!(
            Token::decode("npx-00"),
            Err(TokenError::Foreign(_))
        ));
        assert_eq!(Token::decode("np3-4e5003"), Err(TokenError::Version(3)));
        assert!(matches!(
            Token::decode("np1-zz"),
            Err(TokenError::Corrupt(_))
        ));
        assert!(matches!(
            Token::decode("np1-é"),
            Err(TokenError::Corrupt(_))
        ));
        assert!(matches!(
            Token::decode("np1-4e50020000000000"),
            Err(TokenError::Corrupt(_))
        ));
        // A version-1 token under a version-2 prefix is an edited token, not an unsupported
        // version (this build reads both).
        let relabelled = format!("np2{}", &sample().encode()[3..]);
        let msg = Token::decode(&relabelled).unwrap_err().to_string();
        assert!(
            msg.contains("corrupt")
                && msg.contains("prefix differs")
                && !msg.contains("not supported"),
            "{msg}"
        );
        let msg = TokenError::Version(3).to_string();
        assert!(msg.contains("reads versions 1 and 2"), "{msg}");
        // A fault section with an unknown tag, with a valid checksum around it.
        let mut b = b"NP\x02\x00\x00\x05\x09".to_vec();
        let sum = fnv1a32(&b);
        b.extend_from_slice(&sum.to_be_bytes());
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert!(matches!(
            Token::decode(&format!("np2-{hex}")),
            Err(TokenError::Corrupt(_))
        ));
        // A varint that never ends, with a valid checksum around it.
        let mut b = b"NP\x01\x00\x01".to_vec();
        b.extend_from_slice(&[0xff; 12]);
        let sum = fnv1a32(&b);
        b.extend_from_slice(&sum.to_be_bytes());
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert!(matches!(
            Token::decode(&format!("np1-{hex}")),
            Err(TokenError::Corrupt(_))
        ));
        let msg = Token::decode("garbage").unwrap_err().to_string();
        assert!(msg.contains("not a netpoll replay token"), "{msg}");
    }
}

//! Proptest, seeded like everything else in netpoll.
//!
//! Out of the box proptest draws its seed from the OS, so a red `cargo test` may not come back
//! on the next run. Every proptest in netpoll takes its configuration from [`config`] instead:
//! the seed is [`DEFAULT_SEED`] unless `PROPTEST_RNG_SEED` names another, the case count is the
//! test's own unless `PROPTEST_CASES` names another, and a failure prints [`replay_line`], the
//! command that runs the same cases again.
//!
//! To explore beyond the committed seed, vary it:
//! `for s in $(seq 1 50); do PROPTEST_RNG_SEED=$s cargo test --test fuzz_twins || break; done`.

use proptest::test_runner::{Config, RngAlgorithm, RngSeed};

/// The seed a plain `cargo test` uses ("netpoll" in ASCII).
pub const DEFAULT_SEED: u64 = 0x006e_6574_706f_6c6c;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        // A test cannot exit with a usage message; this is the nearest thing.
        Err(_) => panic!("{name}={v:?}: expected a non-negative integer"),
    }
}

/// The seed of this run: `PROPTEST_RNG_SEED`, or [`DEFAULT_SEED`].
pub fn seed() -> u64 {
    env_u64("PROPTEST_RNG_SEED").unwrap_or(DEFAULT_SEED)
}

/// The case count of this run: `PROPTEST_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    env_u64("PROPTEST_CASES").map_or(default, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A proptest configuration with a fixed seed (ChaCha, so every platform draws the same cases),
/// `cases(default_cases)` cases, and no failure files written into the tree.
pub fn config(default_cases: u32) -> Config {
    Config {
        cases: cases(default_cases),
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: None,
        ..Config::default()
    }
}

/// The command that reruns the failing proptest `test` of the integration test file `file`
/// (in package `package`) on the same cases.
pub fn replay_line(package: &str, file: &str, test: &str) -> String {
    let cases = std::env::var("PROPTEST_CASES")
        .map(|c| format!("PROPTEST_CASES={c} "))
        .unwrap_or_default();
    format!(
        "replay: PROPTEST_RNG_SEED={} {cases}cargo test -p {package} --test {file} -- --exact {test}",
        seed()
    )
}

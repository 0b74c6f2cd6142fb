//! # netpoll-fuzzops: what netpoll's fuzz targets and their proptest twins share
//!
//! Three harnesses, each a function from an input to "passed" or a panic / failure value, used
//! both by the cargo-fuzz targets in `fuzz/` (inputs decoded from bytes with `arbitrary`) and by
//! the stable proptest twins in `tests/fuzz_twins.rs` (inputs generated and shrunk by proptest):
//!
//! | harness | input | oracle (the crash condition) |
//! |---|---|---|
//! | [`no_panic::run`] | [`NoPanicInput`]: any call sequence, seed and knobs, on the sim | no panic; two runs of one input observe the same |
//! | [`differential::run`] | [`DiffInput`]: calls on socketpairs, pipes, eventfds, epoll, unconnected TCP | the sim and real Linux observe the same, step by step |
//! | [`et::run`] | [`et::EtInput`]: TCP traffic against an edge-triggered echo server on the sim | at quiescence the kernel's lost-wakeup oracle ([`netpoll_sim::oracle`]) finds nothing the server waits for stranded, and every byte came back in order |
//!
//! Each harness module's `run_bytes` is its fuzz target's body (bytes decoded with
//! [`decode`]); the committed corpora under `fuzz/corpus/<target>/` replay through them in
//! `cargo test`. `examples/decode.rs` shows what an input file means and replays it.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`ops`] | the vocabulary: [`Op`] and the inputs, deriving both `arbitrary` and proptest |
//! | [`interp`] | applies ops to any `Poller`; normalised observations ([`interp::Obs`]) |
//! | [`no_panic`], [`differential`], [`et`] | the three harnesses and their oracles |
//! | [`report`] | the input summary announced before each run and printed on a panic |
//! | [`seeded`] | proptest configurations with a fixed seed, and the replay line of a failure |
//!
//! ## Limitations
//!
//! The differential harness leaves out what depends on the real kernel's timing (TCP
//! connections, timed waits) or on exact buffer capacities (writes are bounded so no buffer
//! fills); the sim-only harnesses cover those.

pub mod differential;
pub mod et;
pub mod interp;
pub mod no_panic;
pub mod ops;
pub mod report;
pub mod seeded;

pub use ops::{DiffInput, NoPanicInput, Op};

/// The most ops one `sim_no_panic` input runs.
pub const MAX_OPS: usize = 256;
/// The most ops one `differential` input runs.
pub const MAX_DIFF_OPS: usize = 64;

/// Whether the harnesses allow nothing for known sim bugs (FINDINGS.md): the default, since
/// every one found is fixed. `NETPOLL_FUZZ_STRICT=0` is for fuzzing past a bug whose fix is
/// pending: the differential target then accepts the divergences in
/// [`differential::KNOWN`], the no-panic and ET targets step over [`report::KNOWN_PANICS`], and
/// the no-panic target runs with its hang guard ([`interp::Interp::with_hang_guard`]).
pub fn strict_from_env() -> bool {
    static S: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *S.get_or_init(|| std::env::var_os("NETPOLL_FUZZ_STRICT").is_none_or(|v| v != "0"))
}

/// Decodes an input from fuzzer bytes (`None`: not enough bytes for one).
pub fn decode<'a, T: arbitrary::Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    let u = arbitrary::Unstructured::new(data);
    T::arbitrary_take_rest(u).ok()
}

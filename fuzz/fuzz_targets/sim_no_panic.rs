//! Any call sequence on the simulated kernel, with any seed and configuration knobs: the sim
//! must not panic, and two runs of one input must observe the same.
//! The input summary (seed first) is announced before the run and printed on a crash.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_fuzzops::no_panic::run_bytes(data));

//! The same call sequence on the simulated kernel and on real Linux epoll, compared step by
//! step: a crash is the first step where they disagree (Linux is right).
//! The input summary (seed first) is announced before the run and printed on a crash.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_fuzzops::differential::run_bytes(data));

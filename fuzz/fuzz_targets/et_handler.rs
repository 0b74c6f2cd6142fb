//! An edge-triggered echo server on the simulated kernel under arbitrary traffic and network
//! knobs; a crash is a lost-wakeup oracle failing (a stranded registration when the loop is
//! about to block with nothing in flight, or bytes not echoed back in order).
//! The input summary (seed first) is announced before the run and printed on a crash.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_fuzzops::et::run_bytes(data));

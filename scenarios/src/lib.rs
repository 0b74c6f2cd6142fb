//! # netpoll-scenarios: workloads, oracles, replay
//!
//! The main job of netpoll: run a workload on the simulated kernel and either show it correct or
//! hand back one line that replays the failure. This crate holds the workloads, the oracles that
//! judge them, the replay tokens, and the `netpoll-sim` command line.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`raw_epoll`] | **start here**: the example echo server written straight on the `Poller` trait (LT listener, ET connections, read until `EAGAIN`, backpressure, idle deadlines) |
//! | [`engine`] | the event loop that drives that server and a population of client state machines, and checks the oracles as it goes |
//! | [`scenario`] | the registry: each scenario's parameters, defaults and workload |
//! | [`oracle`] | the failures a run can be found guilty of, and how each is reported |
//! | [`run`] | one run on a backend, the determinism self-check, the [`run::Report`] and its replay line |
//! | [`token`] | replay tokens (`np1-...`): encoding, checking, decoding |
//! | [`params`] | typed, bounded parameters |
//! | [`trace_out`] | Chrome/Perfetto trace JSON and the compact text trace the snapshots pin |
//! | [`rng`] | the harness's own seeded choices |
//!
//! ## What is checked on every run
//!
//! Lost wakeups at quiescence (simulated kernel), hangs, data integrity of every byte, deadline
//! accuracy, and end-of-run leaks and totals: see [`oracle`]. The determinism self-check runs on
//! request (`--check-determinism`) and for a few seeds in the tests.
//!
//! ## Not done
//!
//! - The scenarios drive the hand-written loop of [`raw_epoll`]; variants on the Go-style
//!   netpoller runtime (`netpoll::rt`) wait for it to land on main. The deadlines and timers of
//!   `slow-clients` and `timer-storm` are therefore the loop's own timer heaps.
//! - On the real kernel there is no lost-wakeup oracle (it cannot be asked what is stranded),
//!   no replay (the real kernel is not deterministic), and deadlines get 50 ms of slack.

pub mod engine;
pub mod oracle;
pub mod params;
pub mod raw_epoll;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod token;
pub mod trace_out;

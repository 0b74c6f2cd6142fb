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
//! | [`clients`] | **the client library**: a population of TCP clients ([`clients::ClientMix`], [`clients::Clients`]) to test any server on the `Poller` with: connect with retries, pipelined requests, byte-exact checks, half-close, reset, stalls, slow readers, idle clients; payloads generated and checked incrementally |
//! | [`workload`] | the one interface every runnable thing implements ([`workload::Workload`]), the [`workload::Request`] naming one run, the [`workload::Report`] it gives, and [`workload::simulate`], the plumbing of a simulated run |
//! | [`registry`] | the workloads by name, built-in and user-added: what `list`, `run`, `sweep`, `replay`, `trace`, `shrink` and replay tokens look workloads up in |
//! | [`scenario`] | the echo engine's scenarios: each one's parameters, defaults and [`engine::Spec`] |
//! | [`engine`] | the event loop that drives [`raw_epoll`]'s server and a [`clients`] population, and checks the oracles as it goes (`kernel.rs` the kernel adapter, `storm.rs` the timer storm) |
//! | [`rt_echo`] | `rt-echo`: the echo workload as tasks on the netpoller (`netpoll::rt`), on one thread or (`--workers N`) a `MultiRuntime` of simulated threads, with the lost-wakeup oracle at the netpoller's level (a task parked on a ready descriptor), and its canary |
//! | [`check`] | **test your own loop**: [`check::Check`] runs a closure on the simulated kernel over many seeds and fault plans, and reports the first failure with a replay line, a trace file and a shrunk fault plan |
//! | [`zoo`] | the bug zoo: small event loops with a real lost-wakeup bug each (one file per bug, with its fixed twin), run as `zoo-*` workloads; `zoo-mt-*` are races between simulated threads |
//! | [`threaded`] | running a workload on simulated threads (`netpoll-threads`): the kernel kept for the report, the scheduler's failures as the crate's (used by `rt-echo --workers` and the `zoo-mt-*` races) |
//! | [`oracle`] | the failures a run can be found guilty of, and how each is reported |
//! | [`run`] | one run of any workload ([`run::execute`], [`run::traced`]), the determinism self-check, the seeds a test runs |
//! | [`token`] | replay tokens (`np1-...`): encoding, checking, decoding |
//! | [`params`] | typed, bounded parameters |
//! | [`trace_out`] | Chrome/Perfetto trace JSON and the compact text trace the snapshots pin; runs on simulated threads traced one track per thread (their schedule, who ran when) |
//! | [`trace_file`] | `netpoll-sim trace`: the trace streamed to a file (spilled during the run, written after) |
//! | [`rng`] | the harness's own seeded choices |
//! | [`swarm`] | explicit fault plans (what the shrinker writes) and their version-2 replay tokens; `--faults none\|chaos\|swarm` sets every scenario's `faults` parameter |
//! | [`shrink`] | reduces a failing run to a minimal one that fails the same way (`netpoll-sim shrink TOKEN`) |
//! | [`cli`] | the `netpoll-sim` command line over any [`registry::Registry`]: `cli::main(registry)` serves a user's own workloads, replay tokens included |
//! | [`shard`] | sweeps beyond one machine: `--shard K/N` seed sets, the `sweep --json` lines, and `netpoll-sim merge` |
//!
//! Arrows point down the table's layers: `params`, `rng`, `trace_out`, `oracle`, `swarm`, `token`
//! at the bottom; `workload` and `threaded` on them; `clients` and `engine` on those; the workloads (`scenario`,
//! `rt_echo`, `zoo`) above; `registry` and `run` on top, and the CLI (`main.rs`) over all. No two
//! modules import each other.
//!
//! ## Testing your own event loop
//!
//! Write the loop against [`netpoll::Poller`] (as [`raw_epoll::EchoServer`] is) and hand it to
//! [`check::Check`] (or write `#[netpoll::test]` on a function of `sim: &Sim`): one call runs it
//! over many seeds and fault plans on the simulated kernel, whose oracles judge every blocking
//! wait, and a failure prints the seed, the diagnosis, a replay line, a trace file and the
//! shrunk fault plan. The repository's README has a complete example; [`check`] has the rest.
//!
//! Underneath, a [`netpoll_sim::Sim`] made from a seed judges any loop run on it by itself (lost
//! wakeups at quiescence, hangs, livelocks, leaks; see [`netpoll_sim::oracle`]). For clients, take a
//! [`clients::ClientMix`]; to get `sweep`, replay tokens, `trace`, `shrink` and the
//! determinism self-check for it, implement [`workload::Workload`] (its `run` is a few lines on
//! [`workload::simulate`]) and add it to a [`registry::Registry`]:
//!
//! ```
//! use netpoll::sys::{Events, EPOLL_CTL_ADD, O_NONBLOCK};
//! use netpoll::{EpollEvent, Poller};
//! use netpoll_sim::Sim;
//!
//! let sim = Sim::new(7);
//! let ep = sim.epoll_create1(0).unwrap();
//! let [a, b] = sim.socketpair(O_NONBLOCK).unwrap();
//! let ev = EpollEvent::new(Events::IN | Events::ET, 1);
//! sim.epoll_ctl(ep, EPOLL_CTL_ADD, a, Some(ev)).unwrap();
//! sim.write(b, &[7; 100]).unwrap();
//! let mut evs = [EpollEvent::EMPTY; 8];
//! sim.epoll_wait(ep, &mut evs, -1).unwrap();
//! sim.read(a, &mut [0; 10]).unwrap(); // the bug: read once per edge, 90 bytes stay
//! assert!(sim.epoll_wait(ep, &mut evs, -1).is_err()); // the run is stopped...
//! assert_eq!(sim.violation().unwrap().oracle(), "lost-wakeup"); // ...and says why
//! ```
//!
//! ## What is checked on every run
//!
//! Lost wakeups at quiescence (simulated kernel; for `rt-echo`, a task parked on a descriptor
//! that is ready for its side), hangs, data integrity of every byte, deadline
//! accuracy, and end-of-run leaks and totals: see [`oracle`]. The determinism self-check runs on
//! request (`--check-determinism`) and for a few seeds in the tests.
//!
//! ## Not done
//!
//! - Every scenario but [`rt_echo`] drives the hand-written loop of [`raw_epoll`]; `rt-echo` is
//!   the one workload written as tasks on the Go-style netpoller (`netpoll::rt`), and its
//!   oracle looks at the netpoller's parked tasks through
//!   `netpoll::rt::Runtime::set_quiescence_hook`. The deadlines and timers of `slow-clients` and
//!   `timer-storm` are the hand-written loop's own timer heaps.
//! - On the real kernel there is no lost-wakeup oracle (it cannot be asked what is stranded),
//!   no replay (the real kernel is not deterministic), and deadlines get 250 ms of slack (the scheduler of a loaded machine).

// `#[netpoll_scenarios::test]` names `::netpoll_scenarios`, in this crate's own tests too.
extern crate self as netpoll_scenarios;

/// `#[netpoll_scenarios::test]` (also `#[netpoll::test]`): a `#[test]` that runs its body
/// through a [`check::Check`]; see the `netpoll-macros` crate for its arguments.
pub use netpoll_macros::test;

pub mod check;
pub mod cli;
pub mod clients;
pub mod engine;
pub mod oracle;
pub mod params;
pub mod raw_epoll;
pub mod registry;
pub mod rng;
pub mod rt_echo;
pub mod run;
pub mod scenario;
pub mod shard;
pub mod shrink;
pub mod swarm;
pub mod threaded;
pub mod token;
pub mod trace_file;
pub mod trace_out;
pub mod workload;
pub mod zoo;

/// The repository's README, so that its examples (the one-call check) are doc-tested.
#[doc = include_str!("../../README.md")]
#[doc(hidden)]
pub mod readme {}

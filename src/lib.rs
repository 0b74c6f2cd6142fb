//! # netpoll
//!
//! A deterministic simulation and test framework for event loops.
//!
//! Event loops lose wakeups: an edge-triggered handler stops before `EAGAIN`, a oneshot fd is
//! never re-armed, a deadline fires in the same instant as readiness. This crate is the seam that
//! makes such bugs findable by seed: event loops are written against the [`Poller`] trait, which
//! has two implementations in the same build:
//!
//! - `netpoll-realnet`: real Linux epoll and sockets, through `libc`;
//! - `netpoll-sim`: a seeded simulated kernel with a virtual clock, identical on every run.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`poller`] | the [`Poller`] trait (start here: its doc comment is the contract) and [`EpollEvent`] |
//! | [`sys`] | Linux's numbers: [`Events`] bits, flags, errno values |
//! | [`rt`] | the netpoller: a Go-style runtime (tasks, net types, deadlines) over any [`Poller`] |
//! | [`hint`] | a cache hint (prefetch) a binary may install, which the runtime and the simulated kernel give ahead of use; results never depend on it |
//!
//! See `ARCHITECTURE.md` at the repository root for how the crates fit together.
//!
//! ## Not modelled
//!
//! This crate holds no kernel: what each implementation models, and what it leaves out, is
//! written in its own crate docs.

pub mod hint;
pub mod poller;
pub mod rt;
pub mod sys;

pub use poller::{EpollEvent, Fd, NoKernel, PollFd, Poller, Timespec};

/// `#[netpoll::test]`: a `#[test]` whose body (`fn name(sim: &Sim) -> io::Result<()>`) runs on
/// the simulated kernel once per seed, with the arguments `seeds = 0..1000`,
/// `faults = "swarm"`, `check_determinism = true`; a failure prints the seed, the oracle's
/// diagnosis, a replay line, a trace file and the shrunk fault plan. It expands to a
/// `netpoll_scenarios::check::Check`, so the crate using it needs `netpoll-scenarios` (and
/// `netpoll-sim`, for `Sim`) as dev-dependencies: see that module for the whole story.
pub use netpoll_macros::test;
pub use sys::Events;

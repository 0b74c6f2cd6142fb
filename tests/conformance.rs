//! The two-arm conformance suite: every case runs on real Linux epoll (`RealNet`) and on the
//! simulated kernel (`Sim`), and both must make the same observations, which must also be the
//! values Linux is known to give.
//!
//! # How a case works
//!
//! A case is one generic function `fn name<P: Poller>(p: &P, log: &mut Log)` (see
//! `conformance/harness.rs`). It performs operations and records every observation in the `Log`:
//! return values, errno names, event lists `(data, Events)` in order. Where Linux's value is well
//! defined the case states it (`log.expect`, `expect_events`, ...), so that the two arms cannot
//! agree on a wrong answer. `cases! { name, ... }` turns each into a test `name::real_vs_sim`,
//! which runs the real arm, then the sim arm, and fails if either misses an expectation or the
//! two logs differ; the report shows the first difference, both logs, the sim seed and the
//! command that replays it.
//!
//! Rules the cases follow: descriptor numbers and buffer capacities differ between the arms, so
//! they are compared only relative to each other (and cases that look at numbers hold the real
//! process's descriptor table alone: `exclusive_cases!`); real TCP is asynchronous, so TCP cases
//! wait for each state in `epoll_wait` (`wait_for`, never a sleep) and normalise `connect`'s
//! immediate result. Results that differ between Linux versions are left out or noted.
//!
//! Run one case: `cargo test --test conformance <name>`; replay the sim arm with another seed:
//! `NETPOLL_SEED=<n> cargo test --test conformance <name>` (decimal or `0x` hex).
//!
//! | module | what it covers |
//! |---|---|
//! | `epoll_lt_et` | LT vs ET on socketpairs, pipes, eventfd, TCP; every write is an edge; ET `OUT` |
//! | `oneshot` | `EPOLLONESHOT`, re-arming by `MOD` |
//! | `ctl_ready` | `ADD`/`MOD`/`DEL` on files already ready; interest changes |
//! | `ctl_errors` | the errno matrix of `epoll_ctl`, `epoll_wait` and the constructors; `ELOOP` |
//! | `close_dup` | `close`, `dup`, lowest-free numbering, registrations keyed by (file, fd) |
//! | `maxevents_order` | report order, `maxevents` truncation, round-robin |
//! | `timeouts` | `epoll_wait` timeouts on the poller's clock |
//! | `hangups` | `shutdown`/`close` on unix sockets and pipes: masks and errnos |
//! | `tcp` | listeners, accept order, non-blocking connect, refused, FIN, RST, backlog |
//! | `eventfd` | the counter, semaphore mode, sizes, overflow, edges |
//! | `nested` | epoll instances watching epoll instances |
//! | `exclusive` | `EPOLLEXCLUSIVE` |
//! | `buffers` | full buffers, `EPOLLOUT` coming back, stream reads, pipe pages |
//! | `masks` | exact masks with every readiness bit asked for |
//! | `dup_pwait` | `dup2`, `dup3`, `epoll_pwait` (signal masks), `epoll_pwait2` (nanosecond timeouts) |
//! | `mt_epoll` | threads blocked in `epoll_wait` on one instance: LT/ET/ONESHOT wakeups, `epoll_ctl`, `close`, `shutdown` from another thread, nesting, timeouts (see `mt_harness`) |
//! | `mt_exclusive` | `EPOLLEXCLUSIVE` with waiters: wake-one across instances |
//! | `mt_blocking` | threads blocked in `read`, `write`, `accept4`, `poll` |

/// The two kernels under test.
mod arms {
    /// The real kernel.
    pub type Real = netpoll_realnet::RealNet;
    /// The simulated kernel.
    pub type Sim = netpoll_sim::Sim;

    pub fn new_real() -> Real {
        netpoll_realnet::RealNet::new()
    }

    /// The kernel alone: the cases leave edge-triggered data unread on purpose, which the
    /// lost-wakeup oracle would rightly stop.
    pub fn new_sim(seed: u64) -> Sim {
        let cfg = netpoll_sim::SimConfig {
            oracles: netpoll_sim::Oracles::off(),
            ..Default::default()
        };
        netpoll_sim::Sim::with_config(seed, cfg)
    }
}

#[macro_use]
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/buffers.rs"]
mod buffers;
#[path = "conformance/close_dup.rs"]
mod close_dup;
#[path = "conformance/ctl_errors.rs"]
mod ctl_errors;
#[path = "conformance/ctl_ready.rs"]
mod ctl_ready;
#[path = "conformance/dup_pwait.rs"]
mod dup_pwait;
#[path = "conformance/epoll_lt_et.rs"]
mod epoll_lt_et;
#[path = "conformance/eventfd.rs"]
mod eventfd;
#[path = "conformance/exclusive.rs"]
mod exclusive;
#[path = "conformance/fionread_flags.rs"]
mod fionread_flags;
#[path = "conformance/hangups.rs"]
mod hangups;
#[path = "conformance/masks.rs"]
mod masks;
#[path = "conformance/maxevents_order.rs"]
mod maxevents_order;
#[path = "conformance/mt_blocking.rs"]
mod mt_blocking;
#[path = "conformance/mt_epoll.rs"]
mod mt_epoll;
#[path = "conformance/mt_exclusive.rs"]
mod mt_exclusive;
#[path = "conformance/mt_harness.rs"]
mod mt_harness;
#[path = "conformance/nested.rs"]
mod nested;
#[path = "conformance/oneshot.rs"]
mod oneshot;
#[path = "conformance/peek_poll.rs"]
mod peek_poll;
#[path = "conformance/tcp.rs"]
mod tcp;
#[path = "conformance/timeouts.rs"]
mod timeouts;

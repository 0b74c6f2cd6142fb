//! # netpoll-realnet
//!
//! [`RealNet`]: netpoll's [`Poller`](netpoll::Poller) trait on the real Linux kernel, through
//! `libc`. It is the reference the simulated kernel (`netpoll-sim`) is checked against: every
//! call is the system call it names, and every error is the errno the kernel gave. `RealNet`
//! rejects nothing itself, so it is Linux by definition.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`real`] | [`RealNet`], the `Poller` implementation, and its fd bookkeeping |
//! | [`alloc`] | [`alloc::HugePages`], a global allocator that gives blocks of 2 MiB or more 2 MiB-aligned mappings of their own with transparent huge pages (`madvise(MADV_HUGEPAGE)`); `netpoll-sim` runs under it |
//! | [`cache`] | [`cache::prefetch`], the CPU's prefetch instruction, installed by `netpoll-sim` as `netpoll::hint`'s cache hint (the netpoller and the simulated kernel hint at what they touch next) |
//! | [`process`] | process-wide helpers for harnesses: thread CPU time, the fd limit, `SIGPIPE`, interrupting a blocking call with a signal (`EINTR`) |
//! | `syscall` (private) | the `syscall!` macro, turning `-1` into `io::Error::last_os_error()` |
//! | `addr` (private) | `SocketAddrV4` <-> `sockaddr_in` (network byte order) |
//! | `consts` (private) | compile-time checks that every number in [`netpoll::sys`] equals `libc`'s |
//!
//! `LINUX_FACTS.md` (next to this crate's `Cargo.toml`) lists what the kernel was observed to do
//! in the corner cases the simulated kernel must copy, each fact with the test in
//! `tests/linux_facts.rs` that shows it.
//!
//! ## What it models, and what not
//!
//! - **Linux only.** It calls `epoll`, `eventfd`, `pipe2`, `accept4`, ... directly.
//! - **IPv4 TCP** (`AF_INET`, `SOCK_STREAM`) and `AF_UNIX` stream socketpairs, pipes, eventfds
//!   and epoll instances. No UDP, no IPv6, no unix listeners. Tests use loopback only.
//! - **Descriptors are not owned.** The trait passes raw integers and `close` is a trait method,
//!   so a descriptor lives until [`Poller::close`](netpoll::Poller::close) is called. But
//!   `RealNet` remembers every descriptor it created (and not yet closed through it) and closes
//!   those still open when it is dropped, so that tests do not leak descriptors (the process
//!   limit here is 20,000).
//! - **Blocking calls block** the calling thread for as long as Linux would; `RealNet` is `Send +
//!   Sync`, so several threads may share it.
//! - `EINTR` from `epoll_wait` is returned, never retried.

mod addr;
pub mod alloc;
pub mod cache;
mod consts;
pub mod process;
pub mod real;
mod syscall;

pub use real::RealNet;

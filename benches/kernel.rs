//! Kernel benchmarks (issue 2): the simulated kernel beside real Linux epoll.
//!
//! - `epoll_wait_5_ready/{sim,real}/{10,100000}`: one `epoll_wait` (64-entry buffer, timeout 0)
//!   on an instance with 10 or 100,000 registered eventfds, 5 of them ready (level-triggered,
//!   counter 1, never read), so every call returns exactly those 5. Epoll should cost O(ready),
//!   not O(registered): the two sizes should take the same time.
//! - `socketpair_round_trip/{sim,real}`: write 64 bytes on end A, `epoll_wait` on B's
//!   (edge-triggered) instance returns 1 event, read the 64 bytes on B.
//!
//! # 100,000 real registrations with at most 20,000 descriptors a process
//!
//! An epoll registration lives as long as the registered *open file* does, in whichever process
//! holds it. So the parent creates the epoll instance without `EPOLL_CLOEXEC` and starts
//! [`REGISTRARS`] copies of this very binary (the [`REGISTRAR_ENV`] variable tells them the epoll
//! fd number and how many to register). Each child inherits the epoll fd, registers its share of
//! idle eventfds into it, prints `ready N`, and holds them open until its stdin reaches EOF. The
//! parent's own 5 ready eventfds complete the 100,000, which it checks in
//! `/proc/self/fdinfo/<epfd>` (one `tfd:` line per registration) before measuring.
//!
//! `cargo bench --bench kernel -- --test` (or `cargo test --benches`) runs each benchmark once.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{Bencher, BenchmarkId, Criterion, Throughput};
use netpoll::sys::{
    EFD_CLOEXEC, EFD_NONBLOCK, EPOLL_CLOEXEC, EPOLL_CTL_ADD, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

/// Set in a registrar child: `"<epoll fd> <count> <child index>"`.
const REGISTRAR_ENV: &str = "NETPOLL_BENCH_REGISTRAR";
/// Child processes that hold the real kernel's idle registrations.
const REGISTRARS: usize = 6;
/// Ready registrations: every `epoll_wait` returns exactly these.
const READY: usize = 5;
/// The two registered counts compared.
const SIZES: [usize; 2] = [10, 100_000];
/// `maxevents` (the result buffer's length).
const MAXEVENTS: usize = 64;
/// Message size of the round trip.
const MSG: usize = 64;
/// The simulated kernel's seed (the benchmarks draw no randomness, but a seed is a seed).
const SEED: u64 = 2;

fn main() {
    // A registrar child must not get as far as criterion's argument parsing.
    if let Ok(spec) = std::env::var(REGISTRAR_ENV) {
        registrar(&spec);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50)
        .without_plots()
        .configure_from_args();
    bench_epoll_wait(&mut c);
    bench_round_trip(&mut c);
    c.final_summary();
}

// ----- registrations -----

/// The user data of registration `i` made by `owner` (0: the parent, 1..: registrar children).
fn tag(owner: u64, i: u64) -> u64 {
    (owner << 32) | i
}

/// Creates `n` non-blocking eventfds and registers each in `ep` for `IN`, level-triggered; the
/// first `ready` start with a count of 1 (and are never read, so stay ready).
fn register_eventfds<P: Poller>(p: &P, ep: Fd, n: usize, ready: usize, owner: u64) -> Vec<Fd> {
    (0..n)
        .map(|i| {
            let init = u32::from(i < ready);
            let fd = p
                .eventfd(init, EFD_NONBLOCK | EFD_CLOEXEC)
                .expect("eventfd");
            let ev = EpollEvent::new(Events::IN, tag(owner, i as u64));
            p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(ev))
                .expect("epoll_ctl ADD");
            fd
        })
        .collect()
}

/// Registrar child: registers its share of idle eventfds into the inherited epoll fd, says
/// `ready N`, and keeps them (and so the registrations) alive until stdin reaches EOF.
fn registrar(spec: &str) {
    let nums: Vec<u64> = spec
        .split_whitespace()
        .map(|s| s.parse().expect("registrar spec: numbers"))
        .collect();
    let [ep, count, index] = nums[..] else {
        panic!("{REGISTRAR_ENV}={spec:?}: want \"<epfd> <count> <index>\"");
    };
    let ep = Fd::try_from(ep).expect("epoll fd number");
    let net = RealNet::new();
    let fds = register_eventfds(&net, ep, count as usize, 0, index + 1);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", fds.len()).expect("stdout");
    out.flush().expect("stdout");
    drop(out);
    let mut sink = Vec::new();
    // EOF (or an error: the parent is gone) ends the child; dropping `net` closes the fds.
    let _ = std::io::stdin().read_to_end(&mut sink);
}

/// The registrar children; dropping closes their stdin and waits for them.
struct Registrars {
    children: Vec<Child>,
}

impl Registrars {
    /// Starts `REGISTRARS` children that together register `total` idle eventfds into `ep` (which
    /// must not be close-on-exec). Returns once every child has reported its count.
    fn spawn(ep: Fd, total: usize) -> Registrars {
        let exe = std::env::current_exe().expect("current_exe");
        let mut r = Registrars {
            children: Vec::new(),
        };
        for index in 0..REGISTRARS {
            let count = total / REGISTRARS + usize::from(index < total % REGISTRARS);
            let child = Command::new(&exe)
                .env(REGISTRAR_ENV, format!("{ep} {count} {index}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn registrar");
            r.children.push(child);
        }
        let mut registered = 0;
        for child in &mut r.children {
            let mut line = String::new();
            let stdout = child.stdout.take().expect("piped stdout");
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("registrar stdout");
            let n: usize = line
                .strip_prefix("ready ")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("registrar said {line:?}, not \"ready N\""));
            registered += n;
        }
        assert_eq!(registered, total, "registrars' reported registrations");
        r
    }
}

impl Drop for Registrars {
    fn drop(&mut self) {
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// How many registrations the kernel lists for this process's epoll fd `ep`.
fn fdinfo_registrations(ep: Fd) -> usize {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{ep}")).expect("fdinfo");
    info.lines().filter(|l| l.starts_with("tfd:")).count()
}

/// One `epoll_wait`, checked to return the parent's 5 ready registrations.
fn check_ready<P: Poller>(p: &P, ep: Fd) {
    let mut evs = [EpollEvent::EMPTY; MAXEVENTS];
    let n = p.epoll_wait(ep, &mut evs, 0).expect("epoll_wait");
    let mut got: Vec<u64> = evs[..n].iter().map(|e| e.data).collect();
    got.sort_unstable();
    let want: Vec<u64> = (0..READY as u64).map(|i| tag(0, i)).collect();
    assert_eq!(
        got,
        want,
        "{}: epoll_wait must return the 5 ready",
        p.name()
    );
    assert!(evs[..n].iter().all(|e| e.events == Events::IN));
}

// ----- epoll_wait: O(ready), not O(registered) -----

/// A `Sim` epoll instance with `n` registered eventfds, 5 ready.
fn sim_instance(n: usize) -> (Sim, Fd) {
    let sim = Sim::new(SEED);
    let ep = sim.epoll_create1(EPOLL_CLOEXEC).expect("epoll_create1");
    let fds = register_eventfds(&sim, ep, n, READY, 0);
    assert_eq!(fds.len(), n);
    assert_eq!(sim.open_files(), n + 1, "sim: eventfds plus the epoll fd");
    check_ready(&sim, ep);
    (sim, ep)
}

/// Real epoll with `n` registrations, 5 ready (held by this process), the rest idle in registrar
/// children when `n` is past what one process may hold.
fn real_instance(net: &RealNet, n: usize) -> (Fd, Option<Registrars>) {
    let children = n > 1000;
    // Inherited by the registrar children; close-on-exec otherwise.
    let flags = if children { 0 } else { EPOLL_CLOEXEC };
    let ep = net.epoll_create1(flags).expect("epoll_create1");
    let own = if children { READY } else { n };
    register_eventfds(net, ep, own, READY, 0);
    let registrars = children.then(|| Registrars::spawn(ep, n - own));
    assert_eq!(fdinfo_registrations(ep), n, "real: registrations in fdinfo");
    check_ready(net, ep);
    (ep, registrars)
}

fn wait_5<P: Poller>(b: &mut Bencher<'_>, p: &P, ep: Fd) {
    let mut evs = [EpollEvent::EMPTY; MAXEVENTS];
    b.iter(|| {
        let n = p.epoll_wait(ep, &mut evs, 0).expect("epoll_wait");
        assert_eq!(n, READY);
        black_box(&evs);
    });
}

fn bench_epoll_wait(c: &mut Criterion) {
    let mut g = c.benchmark_group("epoll_wait_5_ready");
    for n in SIZES {
        let (sim, ep) = sim_instance(n);
        g.bench_with_input(BenchmarkId::new("sim", n), &ep, |b, &ep| {
            wait_5(b, &sim, ep)
        });
    }
    let net = RealNet::new();
    for n in SIZES {
        let (ep, registrars) = real_instance(&net, n);
        g.bench_with_input(BenchmarkId::new("real", n), &ep, |b, &ep| {
            wait_5(b, &net, ep)
        });
        drop(registrars);
    }
    g.finish();
}

// ----- write -> epoll_wait -> read on a socketpair -----

fn round_trip<P: Poller>(b: &mut Bencher<'_>, p: &P) {
    let [a, r] = p
        .socketpair(SOCK_NONBLOCK | SOCK_CLOEXEC)
        .expect("socketpair");
    let ep = p.epoll_create1(EPOLL_CLOEXEC).expect("epoll_create1");
    let ev = EpollEvent::new(Events::IN | Events::ET, 7);
    p.epoll_ctl(ep, EPOLL_CTL_ADD, r, Some(ev))
        .expect("epoll_ctl ADD");
    let msg = [0x5au8; MSG];
    let mut buf = [0u8; MSG];
    let mut evs = [EpollEvent::EMPTY; MAXEVENTS];
    b.iter(|| {
        assert_eq!(p.write(a, black_box(&msg)).expect("write"), MSG);
        let n = p.epoll_wait(ep, &mut evs, 1000).expect("epoll_wait");
        assert!(n == 1 && evs[0].data == 7, "{}: one event for B", p.name());
        assert_eq!(p.read(r, &mut buf).expect("read"), MSG);
        black_box(&buf);
    });
    for fd in [ep, a, r] {
        p.close(fd).expect("close");
    }
}

fn bench_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketpair_round_trip");
    g.throughput(Throughput::Bytes(MSG as u64));
    let sim = Sim::new(SEED);
    g.bench_function("sim", |b| round_trip(b, &sim));
    let net = RealNet::new();
    g.bench_function("real", |b| round_trip(b, &net));
    g.finish();
}

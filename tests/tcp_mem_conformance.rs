//! Two arms, one case: Linux's machine-wide TCP memory limit (`net.ipv4.tcp_mem`) against the
//! simulated kernel's (`SimConfig::tcp_mem`, `Sim::set_tcp_mem`).
//!
//! # Why a test binary of its own, with one test
//!
//! No per-socket limit shows what `tcp_mem` does: it is one account for the whole machine, so
//! the real arm has to lower the machine-wide sysctl. That needs root, and while it is lowered
//! every TCP socket on the machine (other tests included) is over the hard limit: their writers
//! are moderated and their segments dropped and retransmitted, which delays them but breaks
//! nothing that does not time itself. So the real arm:
//!
//! - runs only as root and only where `/proc/sys/net/ipv4/tcp_mem` can be written, and
//!   otherwise skips with a printed reason (the sim arm still runs and must meet Linux's
//!   values);
//! - lowers the limit for the shortest time the case allows (about half a second of real time)
//!   and puts the old values back on every path, panics included (a guard's `Drop`);
//! - is the only test in this binary, so no other test of this process runs meanwhile.
//!
//! Each CPU keeps up to `net.core.mem_pcpu_rsv` (256 pages, 1 MiB; it cannot be lowered) of
//! charges out of the global count Linux compares with the limit, so a few pages of our own
//! could go unseen. The case therefore first fills two other connections (several MiB unread,
//! in both arms), which puts the global count far over `1 1 1` whatever the CPUs hold.
//!
//! # The case
//!
//! With `tcp_mem` at `1 1 1` (pages: far below what is queued), on a connected loopback pair:
//!
//! 1. a large write queues one segment and is short (`tcp_sendmsg` charges a socket's first
//!    buffer by force, then finds its moderated send buffer full);
//! 2. the receiver takes that segment: its queue was empty (`tcp_data_queue` charges by force);
//!    once it is acknowledged the writer polls `OUT` again (its queue is empty);
//! 3. a second write is one segment too; this one is dropped at the receiver, whose queue is
//!    not empty, and stays queued at the writer: 300 ms later the next write says `EAGAIN`, the
//!    writer does not poll `OUT`, and the receiver still has only the first;
//! 4. the limit goes back; the reader drains the first segment, and the second arrives, sent
//!    again by the retransmission timer.
//!
//! Segment sizes differ (Linux bounds a segment by half the peer's largest window, 32741 bytes
//! here; the sim sends its MSS, 65483): the case compares them with a bound, never across arms.
//! Linux acknowledges a loopback segment within the `write` that sends it; the sim a few
//! microseconds later: the case waits for each state in `epoll_wait` before looking.
//!
//! Run: `cargo test --test tcp_mem_conformance` (as root for the real arm).

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::errno::*;
use netpoll::sys::{EPOLL_CLOEXEC, EPOLL_CTL_ADD, SOCK_NONBLOCK};
use netpoll::{EpollEvent, Events, Fd, Poller};

const TCP_MEM: &str = "/proc/sys/net/ipv4/tcp_mem";
/// Twice the loopback MSS: one segment (Linux's `size_goal` on `lo`, the sim's `tcp_mss`).
const SEGMENT_MAX: usize = 2 * 65_536;

/// Puts the sysctls back when dropped, panics included.
struct Restore(Vec<(&'static str, String)>);

impl Drop for Restore {
    fn drop(&mut self) {
        for (path, value) in self.0.drain(..) {
            if let Err(e) = fs::write(path, &value) {
                eprintln!("tcp_mem_conformance: could not restore {path} to {value:?}: {e}");
            }
        }
    }
}

/// Lowers the real limits; the guard restores them.
fn lower_real() -> Restore {
    let old = fs::read_to_string(TCP_MEM).expect("tcp_mem readable");
    let guard = Restore(vec![(TCP_MEM, old.trim().to_string())]);
    fs::write(TCP_MEM, "1 1 1").unwrap_or_else(|e| panic!("writing {TCP_MEM}: {e}"));
    guard
}

/// Why the real arm cannot run here, if it cannot.
fn real_arm_unavailable() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("not root: net.ipv4.tcp_mem cannot be lowered".into());
    }
    let old = match fs::read_to_string(TCP_MEM) {
        Ok(v) => v,
        Err(e) => return Some(format!("{TCP_MEM} unreadable: {e}")),
    };
    // Writing the value it holds tells whether it can be written at all (read-only in most
    // containers), and changes nothing.
    if let Err(e) = fs::write(TCP_MEM, old.trim()) {
        return Some(format!("{TCP_MEM} not writable: {e}"));
    }
    None
}

/// Observations, and the expectations Linux is known to meet.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Log {
    fn expect<T: std::fmt::Debug + PartialEq>(&mut self, what: &str, got: T, want: T) {
        self.lines.push(format!("{what}: {got:?}"));
        if got != want {
            self.failures
                .push(format!("{what}: got {got:?}, Linux gives {want:?}"));
        }
    }
}

fn errno<T>(r: std::io::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Waits (in `epoll_wait`, on the poller's clock) until `fd` reports `mask`, up to `ms`.
fn wait_for<P: Poller>(p: &P, fd: Fd, mask: Events, ms: i32) -> bool {
    let ep = p.epoll_create1(EPOLL_CLOEXEC).unwrap();
    p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(EpollEvent::new(mask, 0)))
        .unwrap();
    let mut evs = [EpollEvent::EMPTY; 1];
    let n = loop {
        match errno(p.epoll_wait(ep, &mut evs, ms)) {
            Err(EINTR) => continue,
            r => break r.unwrap(),
        }
    };
    p.close(ep).unwrap();
    n == 1
}

/// Lets `ms` of the poller's time pass (an `epoll_wait` on an empty instance).
fn pass<P: Poller>(p: &P, ms: i32) {
    let ep = p.epoll_create1(EPOLL_CLOEXEC).unwrap();
    let deadline = p.now() + std::time::Duration::from_millis(ms as u64);
    while p.now() < deadline {
        let _ = p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], ms);
    }
    p.close(ep).unwrap();
}

fn drain<P: Poller>(p: &P, fd: Fd) -> usize {
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while let Ok(n) = p.read(fd, &mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    got
}

/// A connected pair on listener `l`: (client, server end).
fn pair<P: Poller>(p: &P, l: Fd) -> (Fd, Fd) {
    let c = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    let _ = p.connect(c, p.local_addr(l).unwrap());
    assert!(wait_for(p, l, Events::IN, 5_000), "no connection");
    let (s, _) = p.accept4(l, SOCK_NONBLOCK).unwrap();
    assert!(wait_for(p, c, Events::OUT, 5_000), "not connected");
    (c, s)
}

/// The case; `limit(true)` lowers `tcp_mem` to `1 1 1`, `limit(false)` restores it.
fn case<P: Poller>(p: &P, limit: &mut dyn FnMut(bool), log: &mut Log) {
    let l = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 8).unwrap();
    let big = vec![0x5au8; 1 << 20];
    // Ballast: two connections' worth of unread bytes (see the module docs).
    let mut ballast = Vec::new();
    for _ in 0..2 {
        let (bc, bs) = pair(p, l);
        let mut queued = 0;
        while let Ok(n) = p.write(bc, &big) {
            queued += n;
        }
        assert!(queued >= 1 << 20, "ballast of {queued} bytes");
        ballast.extend([bc, bs]);
    }
    let (c, s) = pair(p, l);

    limit(true);
    let n1 = errno(p.write(c, &big));
    log.expect(
        "1. first write is one segment",
        n1.is_ok_and(|n| n > 0 && n <= SEGMENT_MAX),
        true,
    );
    let n1 = n1.unwrap_or(0);
    log.expect(
        "2. receiver readable",
        wait_for(p, s, Events::IN, 5_000),
        true,
    );
    // Loopback delivers a segment whole: the reader has all of it or none.
    log.expect(
        "2. receiver has the first write",
        errno(p.fionread(s)) == Ok(n1),
        true,
    );
    log.expect(
        "2. writer polls OUT once acknowledged",
        wait_for(p, c, Events::OUT, 5_000),
        true,
    );
    let n2 = errno(p.write(c, &big));
    log.expect(
        "3. second write is one segment",
        n2.is_ok_and(|n| n > 0 && n <= SEGMENT_MAX),
        true,
    );
    let n2 = n2.unwrap_or(0);
    pass(p, 300);
    log.expect("3. next write", errno(p.write(c, &big)).err(), Some(EAGAIN));
    log.expect("3. writer polls OUT", wait_for(p, c, Events::OUT, 0), false);
    log.expect(
        "3. after 300 ms the receiver still has only the first",
        errno(p.fionread(s)) == Ok(n1),
        true,
    );
    limit(false);
    log.expect("4. reader drains the first", drain(p, s) == n1, true);
    log.expect(
        "4. the second arrives, retransmitted",
        wait_for(p, s, Events::IN, 10_000),
        true,
    );
    log.expect("4. all of it", drain(p, s) == n2, true);
    eprintln!("  segments written: {n1} then {n2} bytes");
    for fd in [c, s, l].into_iter().chain(ballast) {
        p.close(fd).unwrap();
    }
}

#[test]
fn tcp_mem_hard_limit_real_vs_sim() {
    let mut real_log = None;
    match real_arm_unavailable() {
        Some(why) => eprintln!("tcp_mem_conformance: real arm skipped: {why}"),
        None => {
            eprintln!("real arm:");
            let real = netpoll_realnet::RealNet::new();
            let mut guard = None;
            let mut log = Log::default();
            case(
                &real,
                &mut |low| {
                    // Dropping the old guard restores; a new one lowers again.
                    guard = None;
                    if low {
                        guard = Some(lower_real());
                    }
                },
                &mut log,
            );
            drop(guard);
            real_log = Some(log);
        }
    }
    eprintln!("sim arm:");
    let cfg = netpoll_sim::SimConfig {
        oracles: netpoll_sim::Oracles::off(),
        ..Default::default()
    };
    let sim = netpoll_sim::Sim::with_config(0x5EED_0001, cfg);
    let default = sim_default_tcp_mem();
    let mut sim_log = Log::default();
    case(
        &sim,
        &mut |low| {
            sim.set_tcp_mem(if low { [1, 1, 1] } else { default })
                .unwrap()
        },
        &mut sim_log,
    );
    assert!(
        sim.tcp_memory().dropped_segments >= 1,
        "{:?}",
        sim.tcp_memory()
    );
    if let Some(real) = &real_log {
        assert!(
            real.failures.is_empty(),
            "Linux did not do what the case expects (the case is wrong):\n{}",
            real.failures.join("\n")
        );
        assert_eq!(real.lines, sim_log.lines, "the arms differ");
    }
    assert!(
        sim_log.failures.is_empty(),
        "the sim differs from Linux:\n{}",
        sim_log.failures.join("\n")
    );
}

fn sim_default_tcp_mem() -> [u64; 3] {
    netpoll_sim::SimConfig::default().tcp_mem
}

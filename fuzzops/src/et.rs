//! The `et_handler` harness: an edge-triggered TCP echo server on the sim, under arbitrary
//! traffic (connections, message sizes, write chunking, half-closes, aborts) and arbitrary
//! network knobs (segment size, window, split writes, latency), with the lost-wakeup oracles as
//! the crash condition:
//!
//! 1. whenever the server loop is about to block and nothing is in flight, the kernel's
//!    lost-wakeup oracle ([`netpoll_sim::oracle`]) finds no registration of its epoll instance
//!    ready for what the server waits for on it (the server's table given to
//!    [`Sim::set_wants`]) with nothing queued to say so;
//! 2. at quiescence every client that neither aborted nor failed got back exactly the bytes it
//!    sent, in order;
//! 3. no [`ROUNDS_MAX`] loop turns in a row pass without a client moving a byte (a loop that
//!    spins on events it never handles; a slow but moving transfer, through a 256-byte window
//!    say, is not a livelock).
//!
//! The server ([`Handler::Correct`]) does what the `Poller` contract asks of edge-triggered
//! code: it accepts and reads until `EAGAIN`, writes until `EAGAIN`, and asks for `EPOLLOUT`
//! (with `EPOLL_CTL_MOD`) only while it holds unsent output. [`Handler::StopsBeforeEagain`] is
//! the canary: it reads once per event, and the oracles must catch it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use netpoll::sys::{errno::*, errno_of, EPOLL_CTL_ADD, EPOLL_CTL_MOD, SHUT_WR, SOCK_NONBLOCK};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_sim::{Sim, SimConfig, Violation};
use proptest::collection::vec;
use proptest::prelude::any;

use crate::report::announce;

/// The most client connections one input opens.
pub const CLIENTS_MAX: usize = 8;
/// The most traffic steps one input runs.
pub const TRAFFIC_MAX: usize = 64;
/// The most loop turns in a row, in the drain phase, in which no client moves a byte before
/// the run counts as a livelock.
pub const ROUNDS_MAX: usize = 20_000;
/// The largest message one [`Traffic::Send`] queues.
pub const MESSAGE_BYTES_MAX: usize = 4 * 1024;

/// One thing the clients do, followed by one turn of the server loop.
#[derive(Clone, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub enum Traffic {
    /// A new client connects (non-blocking).
    Connect,
    /// Client `conn % clients` queues `len % (MESSAGE_BYTES_MAX + 1)` bytes, written in chunks
    /// of `1 + chunk % 4096`.
    Send { conn: u8, len: u16, chunk: u16 },
    /// Client `conn` shuts down its sending side once its queue is written.
    ShutWr { conn: u8 },
    /// Client `conn` closes with `SO_LINGER` 0: a reset.
    Abort { conn: u8 },
    /// Client `conn` closes normally (a FIN, or a reset if echoed bytes are unread).
    Close { conn: u8 },
    /// The server loop waits up to `ms % 50` ms (virtual).
    Run { ms: u8 },
}

/// The network knobs an input turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub struct NetKnobs {
    /// `tcp_mss`: 64 bytes to 8 KiB.
    pub mss: u16,
    /// `tcp_window`: 256 bytes to 64 KiB.
    pub window: u16,
    /// The fault plan's `split_write`: `n / 255`.
    pub split: u8,
    /// Latency range ends, in microseconds.
    pub latency_us: (u8, u8),
    /// The listener's backlog: `n % 4`.
    pub backlog: u8,
}

impl NetKnobs {
    /// The sim configuration.
    pub fn config(&self) -> SimConfig {
        let (a, b) = self.latency_us;
        SimConfig {
            tcp_mss: 64 + usize::from(self.mss % 8129),
            tcp_window: 256 + usize::from(self.window),
            faults: netpoll_sim::FaultPlan {
                split_write: f64::from(self.split) / 255.0,
                ..netpoll_sim::FaultPlan::default()
            },
            latency_ns: (
                u64::from(a.min(b)) * 1000,
                u64::from(a.max(b)) * 1000 + 1000,
            ),
            ..SimConfig::default()
        }
    }
}

/// Input of the `et_handler` target.
#[derive(Clone, Debug, arbitrary::Arbitrary, proptest_derive::Arbitrary)]
pub struct EtInput {
    /// The sim's seed.
    pub seed: u64,
    /// The network.
    pub net: NetKnobs,
    /// The clients' actions.
    #[proptest(strategy = "vec(any::<Traffic>(), 0..24)")]
    pub traffic: Vec<Traffic>,
}

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Reads and accepts until `EAGAIN`.
    Correct,
    /// The canary: one read of 64 bytes per event, then back to `epoll_wait`.
    StopsBeforeEagain,
}

/// What the oracles caught.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The kernel's lost-wakeup oracle fired: a registration ready for what the server waits
    /// for, with nothing queued, while the loop was about to block.
    Stranded(Box<Violation>),
    /// A client did not get back what it sent.
    Undelivered {
        /// Client index.
        client: usize,
        /// Bytes it sent.
        sent: usize,
        /// Bytes it got back.
        received: usize,
        /// The first offset where they differ (or the shorter length).
        first_difference: usize,
    },
    /// [`ROUNDS_MAX`] turns in a row without progress.
    Livelock,
    /// A call failed in a way the server does not expect.
    Unexpected(String),
}

/// A failure and the input's replay information.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The sim's seed.
    pub seed: u64,
    /// What failed.
    pub failure: Failure,
    /// The sim's call count and hash at the failure.
    pub fingerprint: (u64, u64),
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "et_handler oracle failed (sim seed {:#x}, fingerprint {:?}): ",
            self.seed, self.fingerprint
        )?;
        match &self.failure {
            Failure::Stranded(v) => write!(f, "{v}"),
            other => write!(f, "{other:?}"),
        }
    }
}

const LISTENER: u64 = 0;
const BASE: Events = Events::IN.union(Events::RDHUP).union(Events::ET);

#[derive(Debug)]
struct ServerConn {
    fd: Fd,
    out: VecDeque<u8>,
    wants_out: bool,
    eof: bool,
}

/// What the server waits for on each registration, by token: the lost-wakeup oracle's measure
/// (readiness nobody waits for is not lost), shared with the kernel through [`Sim::set_wants`].
type WantsTable = Arc<Mutex<BTreeMap<u64, Events>>>;

/// The table, locked (never contended: the kernel and the loop run on one thread).
fn lock(t: &WantsTable) -> std::sync::MutexGuard<'_, BTreeMap<u64, Events>> {
    t.lock()
        .expect("the wants table is never poisoned: nothing panics while holding it")
}

/// The edge-triggered echo server.
#[derive(Debug)]
struct Server {
    wants: WantsTable,
    ep: Fd,
    listener: Fd,
    conns: BTreeMap<u64, ServerConn>,
    next_token: u64,
    handler: Handler,
}

fn unexpected(what: &str, e: &io::Error) -> Failure {
    Failure::Unexpected(format!("{what}: {e}"))
}

impl Server {
    fn new(p: &Sim, backlog: i32, handler: Handler) -> Result<(Server, SocketAddrV4), Failure> {
        let setup = || -> io::Result<(Server, SocketAddrV4)> {
            let l = p.tcp_socket(SOCK_NONBLOCK)?;
            p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
            p.listen(l, backlog)?;
            let addr = p.local_addr(l)?;
            let ep = p.epoll_create1(0)?;
            let ev = EpollEvent::new(Events::IN | Events::ET, LISTENER);
            p.epoll_ctl(ep, EPOLL_CTL_ADD, l, Some(ev))?;
            let wants = WantsTable::default();
            lock(&wants).insert(LISTENER, Events::IN);
            let table = Arc::clone(&wants);
            p.set_wants(move |s| lock(&table).get(&s.data).copied().unwrap_or(Events::NONE));
            let s = Server {
                wants,
                ep,
                listener: l,
                conns: BTreeMap::new(),
                next_token: 1,
                handler,
            };
            Ok((s, addr))
        };
        setup().map_err(|e| unexpected("server setup", &e))
    }

    /// One turn of the loop: wait up to `timeout_ms`, handle what came. Returns the event count.
    fn turn(&mut self, p: &Sim, timeout_ms: i32) -> Result<usize, Failure> {
        let mut evs = [EpollEvent::EMPTY; 16];
        let n = p
            .epoll_wait(self.ep, &mut evs, timeout_ms)
            .map_err(|e| match p.violation() {
                Some(v @ Violation::LostWakeup { .. }) => Failure::Stranded(Box::new(v)),
                _ => unexpected("epoll_wait", &e),
            })?;
        for ev in &evs[..n] {
            if ev.data == LISTENER {
                self.accept_all(p)?;
            } else {
                self.on_event(p, ev.data)?;
            }
        }
        Ok(n)
    }

    fn accept_all(&mut self, p: &Sim) -> Result<(), Failure> {
        loop {
            match p.accept4(self.listener, SOCK_NONBLOCK) {
                Ok((fd, _)) => {
                    let token = self.next_token;
                    self.next_token += 1;
                    p.epoll_ctl(
                        self.ep,
                        EPOLL_CTL_ADD,
                        fd,
                        Some(EpollEvent::new(BASE, token)),
                    )
                    .map_err(|e| unexpected("epoll_ctl ADD", &e))?;
                    self.conns.insert(
                        token,
                        ServerConn {
                            fd,
                            out: VecDeque::new(),
                            wants_out: false,
                            eof: false,
                        },
                    );
                    self.note_wants(token);
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                Err(e) if errno_of(&e) == Some(ECONNABORTED) => {}
                Err(e) => return Err(unexpected("accept4", &e)),
            }
        }
    }

    /// Records in the wants table what the loop waits for on the registration `token`.
    fn note_wants(&self, token: u64) {
        let mut table = lock(&self.wants);
        let Some(c) = self.conns.get(&token) else {
            table.remove(&token);
            return;
        };
        let mut w = Events::ERR | Events::HUP;
        if !c.eof {
            w |= Events::IN | Events::RDHUP;
        }
        if !c.out.is_empty() {
            w |= Events::OUT;
        }
        table.insert(token, w);
    }

    fn on_event(&mut self, p: &Sim, token: u64) -> Result<(), Failure> {
        let r = self.serve(p, token);
        self.note_wants(token);
        r
    }

    fn serve(&mut self, p: &Sim, token: u64) -> Result<(), Failure> {
        let handler = self.handler;
        let Some(c) = self.conns.get_mut(&token) else {
            return Ok(()); // closed earlier in this batch
        };
        let mut broken = false;
        // Read: until EAGAIN (or, for the canary, once).
        let mut buf = [0u8; 1024];
        let cap = match handler {
            Handler::Correct => buf.len(),
            Handler::StopsBeforeEagain => 64,
        };
        while !c.eof {
            match p.read(c.fd, &mut buf[..cap]) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    c.out.extend(&buf[..n]);
                    if handler == Handler::StopsBeforeEagain {
                        break;
                    }
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) if matches!(errno_of(&e), Some(ECONNRESET | EPIPE)) => {
                    broken = true;
                    break;
                }
                Err(e) => return Err(unexpected("read", &e)),
            }
        }
        // Write: until done or EAGAIN.
        while !broken && !c.out.is_empty() {
            let chunk = c.out.as_slices().0;
            let chunk = &chunk[..chunk.len().min(4096)];
            match p.write(c.fd, chunk) {
                Ok(n) => drop(c.out.drain(..n)),
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) if matches!(errno_of(&e), Some(ECONNRESET | EPIPE)) => broken = true,
                Err(e) => return Err(unexpected("write", &e)),
            }
        }
        if broken || (c.eof && c.out.is_empty()) {
            let fd = c.fd;
            self.conns.remove(&token);
            return p.close(fd).map_err(|e| unexpected("close", &e));
        }
        // Ask for EPOLLOUT only while output waits (MOD re-checks readiness at once).
        let wants = !c.out.is_empty();
        if wants != c.wants_out {
            c.wants_out = wants;
            let ev = if wants { BASE | Events::OUT } else { BASE };
            p.epoll_ctl(
                self.ep,
                EPOLL_CTL_MOD,
                c.fd,
                Some(EpollEvent::new(ev, token)),
            )
            .map_err(|e| unexpected("epoll_ctl MOD", &e))?;
        }
        Ok(())
    }
}

/// A client, driven directly by the harness (not through epoll).
#[derive(Debug)]
struct Client {
    id: usize,
    fd: Fd,
    queued: VecDeque<u8>,
    produced: usize,
    chunk: usize,
    sent: Vec<u8>,
    received: Vec<u8>,
    shut_wanted: bool,
    shut_done: bool,
    /// Closed (aborted or not): its delivery is no longer checked.
    aborted: bool,
    failed: bool,
}

impl Client {
    fn byte(&self, off: usize) -> u8 {
        (off as u8).wrapping_mul(7) ^ ((off >> 8) as u8) ^ (self.id as u8).wrapping_mul(37)
    }

    fn queue(&mut self, len: usize, chunk: usize) {
        for _ in 0..len {
            let b = self.byte(self.produced);
            self.queued.push_back(b);
            self.produced += 1;
        }
        self.chunk = chunk;
    }

    /// Writes what it can, shuts down if asked and done, reads what arrived. Returns whether
    /// anything moved.
    fn pump(&mut self, p: &Sim) -> bool {
        if self.aborted || self.failed {
            return false;
        }
        let mut moved = false;
        while !self.queued.is_empty() {
            let k = self.chunk.min(self.queued.len());
            let data: Vec<u8> = self.queued.iter().take(k).copied().collect();
            match p.write(self.fd, &data) {
                Ok(n) => {
                    self.sent.extend(self.queued.drain(..n));
                    moved = true;
                }
                Err(e) if matches!(errno_of(&e), Some(EAGAIN | ENOTCONN)) => break,
                Err(_) => {
                    self.failed = true;
                    return true;
                }
            }
        }
        if self.queued.is_empty() && self.shut_wanted && !self.shut_done {
            match p.shutdown(self.fd, SHUT_WR) {
                Ok(()) => {
                    self.shut_done = true;
                    moved = true;
                }
                Err(e) if errno_of(&e) == Some(ENOTCONN) => {}
                Err(_) => self.failed = true,
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match p.read(self.fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(_) => {
                    self.failed = true;
                    return true;
                }
            }
        }
        moved
    }
}

struct World<'a> {
    p: &'a Sim,
    server: Server,
    addr: SocketAddrV4,
    clients: Vec<Client>,
}

impl World<'_> {
    fn pick(&mut self, conn: u8) -> Option<&mut Client> {
        let n = self.clients.len();
        (n > 0).then(|| &mut self.clients[usize::from(conn) % n])
    }

    fn apply(&mut self, t: &Traffic) -> Result<(), Failure> {
        let p = self.p;
        match *t {
            Traffic::Connect if self.clients.len() < CLIENTS_MAX => {
                let fd = p
                    .tcp_socket(SOCK_NONBLOCK)
                    .map_err(|e| unexpected("client socket", &e))?;
                let failed = match p.connect(fd, self.addr) {
                    Ok(()) => false,
                    Err(e) => errno_of(&e) != Some(EINPROGRESS),
                };
                self.clients.push(Client {
                    id: self.clients.len(),
                    fd,
                    queued: VecDeque::new(),
                    produced: 0,
                    chunk: 1,
                    sent: Vec::new(),
                    received: Vec::new(),
                    shut_wanted: false,
                    shut_done: false,
                    aborted: false,
                    failed,
                });
            }
            Traffic::Connect => {}
            Traffic::Send { conn, len, chunk } => {
                if let Some(c) = self.pick(conn) {
                    let len = usize::from(len) % (MESSAGE_BYTES_MAX + 1);
                    c.queue(len, 1 + usize::from(chunk) % 4096);
                }
            }
            Traffic::ShutWr { conn } => {
                if let Some(c) = self.pick(conn) {
                    c.shut_wanted = true;
                }
            }
            Traffic::Abort { conn } | Traffic::Close { conn } => {
                if let Some(c) = self.pick(conn) {
                    if !c.aborted {
                        c.aborted = true;
                        if matches!(t, Traffic::Abort { .. }) {
                            let _ = p.set_linger(c.fd, Some(0));
                        }
                        p.close(c.fd).map_err(|e| unexpected("client close", &e))?;
                    }
                }
            }
            Traffic::Run { .. } => {}
        }
        Ok(())
    }

    fn pump_clients(&mut self) -> bool {
        let p = self.p;
        let mut moved = false;
        for c in &mut self.clients {
            moved |= c.pump(p);
        }
        moved
    }

    /// A blocking turn of the server loop: the kernel checks for lost wakeups on entry when
    /// nothing is in flight.
    fn blocking_turn(&mut self, timeout_ms: i32) -> Result<usize, Failure> {
        self.server.turn(self.p, timeout_ms)
    }

    fn run(&mut self, traffic: &[Traffic]) -> Result<(), Failure> {
        for t in traffic.iter().take(TRAFFIC_MAX) {
            self.apply(t)?;
            self.pump_clients();
            match *t {
                Traffic::Run { ms } if ms % 50 > 0 => self.blocking_turn(i32::from(ms % 50))?,
                _ => self.server.turn(self.p, 0)?,
            };
        }
        // Drain: run everyone until nothing moves and nothing is in flight.
        // Every turn that is not idle moves a byte, and the bytes are finite: this ends.
        let mut idle = 0;
        while idle < ROUNDS_MAX {
            let moved = self.pump_clients();
            idle = if moved { 0 } else { idle + 1 };
            let n = self.server.turn(self.p, 0)?;
            if moved || n > 0 {
                continue;
            }
            let Some(next_ns) = self.p.next_event_ns() else {
                // Quiescence: the loop would block for ever; the kernel's scan, asked directly.
                self.p
                    .check_lost_wakeups(self.server.ep)
                    .map_err(|v| Failure::Stranded(Box::new(v)))?;
                return self.check_delivered();
            };
            let wait_ms = next_ns.saturating_sub(self.p.now_ns()) / 1_000_000 + 1;
            self.blocking_turn(i32::try_from(wait_ms).unwrap_or(i32::MAX))?;
        }
        Err(Failure::Livelock)
    }

    fn check_delivered(&self) -> Result<(), Failure> {
        for c in &self.clients {
            if c.aborted || c.failed {
                continue;
            }
            if c.received != c.sent {
                let first_difference = c
                    .received
                    .iter()
                    .zip(&c.sent)
                    .position(|(a, b)| a != b)
                    .unwrap_or(c.received.len().min(c.sent.len()));
                return Err(Failure::Undelivered {
                    client: c.id,
                    sent: c.sent.len(),
                    received: c.received.len(),
                    first_difference,
                });
            }
        }
        Ok(())
    }
}

/// A one-line summary of `input`.
pub fn summary(input: &EtInput) -> String {
    format!(
        "target=et_handler seed={:#x} net={:?} traffic={}",
        input.seed,
        input.net,
        input.traffic.len().min(TRAFFIC_MAX)
    )
}

/// Runs `input` against `handler`. `Err` if an oracle fails.
///
/// # Errors
/// The [`Report`] of what failed.
pub fn run_with(input: &EtInput, handler: Handler) -> Result<(), Box<Report>> {
    announce(summary(input));
    let p = Sim::with_config(input.seed, input.net.config());
    let strict = crate::strict_from_env();
    // A known sim panic (FINDINGS.md) is the sim's bug, not the handler's: step over it.
    crate::report::tolerating_known_panics(strict, || run_on(&p, input, handler)).unwrap_or(Ok(()))
}

/// [`run_with`] on a sim made by the caller (with `input.net.config()` and `input.seed`), for
/// example one recording a trace ([`Sim::set_trace`]).
///
/// # Errors
/// The [`Report`] of what failed.
pub fn run_on(p: &Sim, input: &EtInput, handler: Handler) -> Result<(), Box<Report>> {
    let result =
        Server::new(p, i32::from(input.net.backlog % 4), handler).and_then(|(server, addr)| {
            let mut w = World {
                p,
                server,
                addr,
                clients: Vec::new(),
            };
            w.run(&input.traffic)
        });
    result.map_err(|failure| {
        Box::new(Report {
            seed: input.seed,
            failure,
            fingerprint: p.fingerprint(),
        })
    })
}

/// Runs `input` against the correct server.
///
/// # Errors
/// The [`Report`] of what failed.
pub fn run(input: &EtInput) -> Result<(), Box<Report>> {
    run_with(input, Handler::Correct)
}

/// The fuzz target's body: panics when an oracle fails.
pub fn run_bytes(data: &[u8]) {
    if let Some(input) = crate::decode::<EtInput>(data) {
        if let Err(r) = run(&input) {
            panic!("{r}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic() -> Vec<Traffic> {
        vec![
            Traffic::Connect,
            Traffic::Run { ms: 1 },
            Traffic::Send {
                conn: 0,
                len: 3000,
                chunk: 3000,
            },
            Traffic::Run { ms: 5 },
        ]
    }

    fn input(seed: u64) -> EtInput {
        EtInput {
            seed,
            net: NetKnobs {
                mss: 1000,
                window: 20000,
                split: 0,
                latency_us: (5, 50),
                backlog: 3,
            },
            traffic: traffic(),
        }
    }

    #[test]
    fn correct_handler_passes() {
        for seed in 0..50 {
            run(&input(seed)).unwrap_or_else(|r| panic!("{r}"));
        }
    }

    /// TigerBeetle's canary: a handler that stops reading before `EAGAIN` must be caught, as
    /// a stranded registration, for every seed.
    #[test]
    fn canary_handler_that_stops_before_eagain_is_caught() {
        for seed in 0..50 {
            let r = run_with(&input(seed), Handler::StopsBeforeEagain)
                .expect_err("the oracle must catch a handler that stops before EAGAIN");
            assert!(
                matches!(r.failure, Failure::Stranded(ref v) if v.oracle() == "lost-wakeup"),
                "{r}"
            );
        }
    }
}

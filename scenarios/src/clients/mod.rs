//! A population of TCP clients to test a server with: the clients the echo engine drives, made
//! reusable against any server written on the [`Poller`] trait.
//!
//! Testing a server then means: write the server, pick a client mix ([`ClientMix`]), and run
//! one loop that hands each event to whichever side owns its token. The clients
//!
//! - **connect** at most [`ClientMix::connect_window`] at a time, and, when the server has no
//!   room (the attempt times out, or is reset before any answer), make a new connection after a
//!   jittered exponential backoff, for as long as [`ClientMix::reconnect`]'s budget of virtual
//!   time allows ([`Reconnect`]);
//! - send their connection's deterministic byte stream ([`pattern()`]), one message at a time or
//!   [`ClientMix::pipeline`] messages ahead, and **check every byte** of the answer as they
//!   read it (lost, duplicated, reordered or foreign bytes are a [`Failure::Integrity`] naming
//!   the connection and the offset);
//! - **generate and check incrementally**: a client holds no message, only the one shared
//!   64 KiB buffer it writes from and reads into, so memory is bounded by what is in flight,
//!   not by message sizes;
//! - behave as their [`ClientMode`] says: request/response, pipeline then **half-close**,
//!   **reset** (`SO_LINGER` 0) at a seeded point, **stall** mid-message, **read slowly**, or
//!   connect and stay **idle**.
//!
//! The simulated kernel judges lost wakeups by itself, taking a registration's interest for
//! what the loop waits for ([`netpoll_sim::default_wants`]). A slow reader out of budget (and a
//! server that pauses reading under backpressure) leaves readable data unread on purpose; a loop
//! with such clients makes its kernel with `oracles.lost_wakeup` off
//! ([`crate::workload::sim_judged_by_loop`]) and, before each sleep with nothing in flight,
//! runs [`crate::oracle::lost_wakeup`] with [`Clients::wants`] (and its server's wants).
//!
//! Every client socket is registered edge-triggered on the loop's epoll instance with a token
//! that has the top two bits set ([`TOKEN`]); a server sharing the instance must keep those
//! bits of its own tokens different (as [`crate::raw_epoll::tag`] does).
//!
//! ```
//! use std::net::{Ipv4Addr, SocketAddrV4};
//!
//! use netpoll::sys::EPOLL_CLOEXEC;
//! use netpoll::{EpollEvent, Poller};
//! use netpoll_scenarios::clients::{ClientMix, ClientMode, Clients};
//! use netpoll_scenarios::raw_epoll::{EchoServer, ServerConfig};
//! use netpoll_sim::Sim;
//!
//! let sim = Sim::new(7);
//! let ep = sim.epoll_create1(EPOLL_CLOEXEC).unwrap();
//! let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
//! // The server under test: here the crate's example echo server.
//! let mut server = EchoServer::bind(&sim, ep, any, ServerConfig::default()).unwrap();
//! let addr = server.local_addr().unwrap();
//! // Twenty clients: ten pipeline 3 messages of 100 kB each then half-close, ten reset.
//! let mix = ClientMix::new(20, 3, 100_000)
//!     .group(10, ClientMode::HalfClose)
//!     .group(10, ClientMode::Reset);
//! let mut clients = Clients::new(&sim, ep, addr, mix, 7);
//! let mut events = vec![EpollEvent::EMPTY; 64];
//! while !(clients.done() && server.open_conns() == 0) {
//!     clients.start(server.open_conns()).unwrap();
//!     let n = sim.epoll_wait(ep, &mut events, server.timeout_ms()).unwrap();
//!     for ev in &events[..n] {
//!         if Clients::<Sim>::owns(ev.data) {
//!             clients.handle(*ev).unwrap();
//!         } else {
//!             server.handle(*ev).unwrap();
//!         }
//!     }
//!     server.on_time().unwrap();
//! }
//! // Every half-closing client read its 300 kB back, byte for byte; resets end early.
//! assert!(clients.done());
//! assert!(clients.stats().bytes >= 10 * 300_000);
//! ```

mod machine;
pub mod pattern;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddrV4;

use netpoll::{Events, Fd, Poller};

use crate::oracle::Failure;
use crate::rng::{mix, Rng};
use crate::trace_out::FdLabel;

pub use pattern::{check_pattern, fill_pattern, pattern};

/// The tag (top two bits) of every client registration's token: `TOKEN | client index`.
pub const TOKEN: u64 = 3 << 62;
const TOKEN_MASK: u64 = 3 << 62;
/// Marks a timer entry as a reconnect (not a slow reader's tick).
const RECONNECT_TICK: u32 = 1 << 31;

/// What a client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    /// Send a message, read its echo, repeat ([`ClientMix::pipeline`] messages ahead); then
    /// hold the connection until every client is done (so all connections are open at once),
    /// then close.
    Echo,
    /// Send every message at once, `shutdown(SHUT_WR)`, read every echo, expect end of file.
    HalfClose,
    /// Each client resets (`SO_LINGER` 0, `close`) after a seeded number of whole messages plus
    /// a seeded part of the next.
    Reset,
    /// `pct`% of the clients stop sending in the middle of a seeded message and wait for the
    /// server to close them; the others echo normally and close as soon as their last answer is
    /// in (unlike [`ClientMode::Echo`], they do not hold the connection). With `pct` 0 no client
    /// stalls: request/response clients that each close when done (the bug zoo's clients).
    ///
    /// ```
    /// use netpoll_scenarios::clients::{ClientMix, ClientMode};
    ///
    /// // Ten clients, all connecting at once, a fifth of them stalling mid-message.
    /// let mix = ClientMix {
    ///     connect_window: 10,
    ///     ..ClientMix::new(10, 10, 64)
    /// }
    /// .mode(ClientMode::Stall { pct: 20 });
    /// assert_eq!(mix.groups, vec![(10, ClientMode::Stall { pct: 20 })]);
    /// ```
    Stall {
        /// Percentage of clients that stall.
        pct: u64,
    },
    /// Request/response, but the answer is read `chunk` bytes per `interval_ns`.
    SlowReader {
        /// Bytes read per tick.
        chunk: usize,
        /// Time between ticks.
        interval_ns: u64,
    },
    /// Connect, send nothing, and hold the connection until every client is done; the server
    /// may close it first (an idle deadline), which is no failure.
    Idle,
}

/// Which clients there are and how they behave.
#[derive(Clone, Debug)]
pub struct ClientMix {
    /// Connections, one client each.
    pub conns: usize,
    /// Messages per connection.
    pub msgs: u64,
    /// Bytes per message.
    pub size: u64,
    /// `(count, mode)` groups, in client order; clients beyond their sum are [`ClientMode::Echo`].
    pub groups: Vec<(usize, ClientMode)>,
    /// Clients connecting at once, at most.
    pub connect_window: usize,
    /// Whether and how a client makes a new connection after `connect` timed out (`ETIMEDOUT`:
    /// every SYN was dropped by a full accept queue) or the connection was reset or timed out
    /// before any answer (the server gave up a handshake it had no queue room for). `None`:
    /// either fails the run.
    pub reconnect: Option<Reconnect>,
    /// Messages a client sends ahead of the answers it has read (1: request/response).
    pub pipeline: u64,
    /// Answer bytes per request byte: the server repeats each byte this many times.
    pub reply_factor: u32,
    /// Whether a short read means the receive queue was empty: true on Linux (and on the
    /// simulated kernel without `short_read` faults), where the clients then skip the read
    /// that would only say `EAGAIN`. The `Poller` contract does not promise it, so under
    /// injected short reads it must be false.
    pub short_read_drains: bool,
    /// Record which fd belongs to which client (for trace files).
    pub label_fds: bool,
}

impl ClientMix {
    /// `conns` request/response clients of `msgs` messages of `size` bytes, 512 connecting at
    /// once, no reconnects, one message in flight, a plain echo.
    pub fn new(conns: usize, msgs: u64, size: u64) -> ClientMix {
        ClientMix {
            conns,
            msgs,
            size,
            groups: Vec::new(),
            connect_window: 512,
            reconnect: None,
            pipeline: 1,
            reply_factor: 1,
            short_read_drains: false,
            label_fds: false,
        }
    }

    /// Adds a group of `count` clients in `mode` after the groups so far.
    #[must_use]
    pub fn group(mut self, count: usize, mode: ClientMode) -> ClientMix {
        self.groups.push((count, mode));
        self
    }

    /// Every client in `mode`.
    #[must_use]
    pub fn mode(mut self, mode: ClientMode) -> ClientMix {
        self.groups = vec![(self.conns, mode)];
        self
    }

    fn mode_of(&self, i: usize) -> ClientMode {
        let mut end = 0;
        for &(n, m) in &self.groups {
            end += n;
            if i < end {
                return m;
            }
        }
        ClientMode::Echo
    }
}

/// When and for how long a client connects again after the server had no room for it.
///
/// A server under a connection storm legitimately refuses many attempts: Linux drops a SYN
/// when the accept queue is full (the client's `connect` fails with `ETIMEDOUT` after its SYN
/// retransmissions), and resets a handshake it completed but never had queue room for (the
/// client's first read or write fails with `ECONNRESET`). A client library then tries again,
/// as real ones do (gRPC's connection backoff, the AWS SDKs' retry policy): after a backoff
/// that doubles with each failure, up to a cap, with random jitter so that clients refused
/// together do not come back together (without it every refused client returns at the same
/// instant, and under a fault plan that lands every packet on the same millisecond tick the
/// queue takes only `backlog + 1` of them each time, so a correct server looks as if it never
/// serves the rest).
///
/// The budget is virtual time, not a number of attempts: how many attempts a legitimately
/// slow run needs depends on the schedule (the fault plan, the latency, the tick quantum),
/// while the time a user is willing to wait for a connection does not. A client that is still
/// refused once `give_up_after_ns` have passed since its first `connect` fails the run, with
/// the number of connections it made and how long it tried, so the report says "the server
/// accepted too slowly", not a bare `ECONNRESET`.
///
/// The n-th new connection waits a delay drawn uniformly from `[b/2, b]`, where `b` is
/// `backoff_ns * 2^(n-1)` capped at `max_backoff_ns` ("equal jitter"), from the clients' own
/// seeded stream (the kernel's streams are untouched). A loop whose clients may reconnect must
/// call [`Clients::on_time`] when [`Clients::next_deadline_ns`] is due, as it does for slow
/// readers.
///
/// ```
/// use netpoll_scenarios::clients::{ClientMix, Reconnect};
///
/// let mut mix = ClientMix::new(2000, 1, 32);
/// mix.reconnect = Some(Reconnect::default());
/// let r = mix.reconnect.unwrap();
/// assert_eq!(r.delay_range_ns(1), (50_000_000, 100_000_000)); // 50..=100 ms
/// assert_eq!(r.delay_range_ns(3), (200_000_000, 400_000_000));
/// assert_eq!(r.delay_range_ns(30), (5_000_000_000, 10_000_000_000)); // capped at 10 s
/// assert_eq!(r.give_up_after_ns, 600_000_000_000); // ten minutes
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconnect {
    /// The first backoff's upper end (ns); each later one doubles.
    pub backoff_ns: u64,
    /// The largest backoff (ns).
    pub max_backoff_ns: u64,
    /// How long after its first `connect` a client stops trying (ns of virtual time).
    pub give_up_after_ns: u64,
}

impl Default for Reconnect {
    /// 100 ms doubling to 10 s, for ten minutes.
    fn default() -> Self {
        Reconnect {
            backoff_ns: 100_000_000,
            max_backoff_ns: 10_000_000_000,
            give_up_after_ns: 600_000_000_000,
        }
    }
}

impl Reconnect {
    /// The range (inclusive, ns) the backoff before a client's `n`-th new connection is drawn
    /// from (`n` from 1).
    pub fn delay_range_ns(&self, n: u32) -> (u64, u64) {
        let shift = n.saturating_sub(1).min(63);
        let b = self
            .backoff_ns
            .saturating_mul(1u64 << shift)
            .min(self.max_backoff_ns);
        (b / 2, b)
    }
}

/// What the clients did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Answer bytes read and checked.
    pub bytes: u64,
    /// Request bytes written.
    pub bytes_sent: u64,
    /// Connections made again after `ETIMEDOUT` or a reset before any answer.
    pub connect_retries: u64,
}

/// Where a client is in its life.
///
/// ```text
/// Idle --start--> Connecting --(OUT, SO_ERROR 0)--> Active
///                 Connecting --(SO_ERROR ETIMEDOUT, budget left)--> Backoff
/// Active --(ECONNRESET/ETIMEDOUT before any answer, budget left)--> Backoff
/// Backoff --(its delay passed: on_time)--> Connecting (new socket)
/// Active --(all answers in; echo, idle)--> Holding --(every client finished)--> Done
/// Active --(all answers in; other modes) | (reset point) | (expected EOF)--> Done
/// ```
///
/// Anything else (an EOF nobody expected, a connect error) ends the run with a failure. Events
/// for a `Done` client are ignored: its fd is closed (its registration went with it; the event
/// was already collected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// `connect` under way.
    Connecting,
    /// The server had no room for the last attempt: waiting out a backoff before connecting
    /// again (no socket open; see [`Reconnect`]).
    Backoff,
    /// Sending and reading.
    Active,
    /// Done, connection held open until every client is done.
    Holding,
    /// Closed; nothing more to do.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Finishes all messages.
    Complete,
    /// Resets the connection once `send_total` bytes are written.
    Reset,
    /// Stops sending at `send_total` and waits for the server to close.
    Stall,
}

/// A client's hot state: what every event of its connection reads and writes, in half a cache
/// line (32 bytes, aligned), so that with 100,000 connections live an event costs one line of
/// the table (it was 104 bytes, two or three lines). The stream key is recomputed from the seed
/// ([`Clients::key`]); what only reconnecting clients and slow readers need is in [`Cold`].
#[derive(Clone, Copy, Debug)]
#[repr(align(32))]
struct Client {
    /// Request bytes written.
    sent: u64,
    /// Response bytes read and checked.
    recv: u64,
    /// Request bytes this client will send in all (a stall or reset stops early).
    send_total: u64,
    fd: Fd,
    phase: Phase,
    /// What happens at `send_total`.
    stop: Stop,
    shut_wr: bool,
    /// The client's mode: an index into [`Clients::modes`], or [`MODE_BY_GROUP`] (a mix with
    /// more distinct modes than fit: [`ClientMix::mode_of`] says).
    mode: u8,
}

const _: () = assert!(std::mem::size_of::<Client>() == 32);

/// [`Client::mode`] of a client whose mode is looked up in the mix's groups.
const MODE_BY_GROUP: u8 = u8::MAX;

/// A client's cold state, kept only when the mix reconnects or has slow readers.
#[derive(Clone, Copy, Debug, Default)]
struct Cold {
    /// When the client first called `connect`.
    first_connect_ns: u64,
    /// Slow reader: bytes it may still read before its next tick.
    budget: usize,
    /// Connects that timed out and were made again.
    retries: u32,
    /// Slow reader: a tick is queued.
    tick_armed: bool,
}

/// The clients: create with [`Clients::new`], then in every turn of the loop call
/// [`Clients::start`], hand each event whose token [`Clients::owns`] to [`Clients::handle`],
/// and call [`Clients::on_time`] (slow readers' ticks; [`Clients::next_deadline_ns`] says
/// when). [`Clients::done`] says when every client finished as planned and closed.
#[derive(Debug)]
pub struct Clients<'k, P: Poller + ?Sized> {
    k: &'k P,
    ep: Fd,
    addr: SocketAddrV4,
    mix: ClientMix,
    /// The seed the stream keys come from.
    seed: u64,
    clients: Vec<Client>,
    /// The distinct modes of the mix, indexed by [`Client::mode`].
    modes: Vec<ClientMode>,
    /// Per client, with reconnects or slow readers; empty otherwise.
    cold: Vec<Cold>,
    next_client: usize,
    connecting: usize,
    /// Clients that reached `Holding`, those of them closed, and the next index to look at.
    holding: usize,
    held_closed: usize,
    next_to_close: usize,
    finished: usize,
    closed: usize,
    buf: Vec<u8>,
    /// Slow readers' ticks and reconnects after a backoff: (when, client).
    ticks: BinaryHeap<Reverse<(u64, u32)>>,
    /// Backoff draws (a stream of its own: turning reconnects on shifts no other choice).
    backoff_rng: Rng,
    stats: ClientStats,
    labels: Vec<FdLabel>,
    ports: BTreeMap<SocketAddrV4, usize>,
}

impl<'k, P: Poller + ?Sized> Clients<'k, P> {
    /// The clients of `mix`, to connect to `server` and register on `ep`. `seed` draws the
    /// per-client choices (where a client resets or stalls) and each connection's byte stream.
    /// Nothing is opened until [`Clients::start`].
    pub fn new(k: &'k P, ep: Fd, server: SocketAddrV4, mix: ClientMix, seed: u64) -> Self {
        let mut rng = Rng::new(seed, 1);
        let per_conn = mix.msgs * mix.size;
        let mut modes: Vec<ClientMode> = Vec::new();
        let clients = (0..mix.conns)
            .map(|i| {
                let mode = mix.mode_of(i);
                let (send_total, stop) = match mode {
                    ClientMode::Reset => {
                        let at = rng.range(0, per_conn.saturating_sub(1));
                        (at, Stop::Reset)
                    }
                    ClientMode::Stall { pct } if rng.chance(pct, 100) => {
                        // Stop inside a message, never at its boundary.
                        let msg = rng.range(0, mix.msgs - 1);
                        let part = rng.range(1, mix.size.max(2) - 1).min(mix.size);
                        (msg * mix.size + part, Stop::Stall)
                    }
                    ClientMode::Idle => (0, Stop::Complete),
                    _ => (per_conn, Stop::Complete),
                };
                let mode = match modes.iter().position(|&m| m == mode) {
                    Some(m) => m as u8,
                    None if modes.len() < usize::from(MODE_BY_GROUP) => {
                        modes.push(mode);
                        (modes.len() - 1) as u8
                    }
                    None => MODE_BY_GROUP,
                };
                Client {
                    sent: 0,
                    recv: 0,
                    send_total,
                    fd: -1,
                    phase: Phase::Idle,
                    stop,
                    shut_wr: false,
                    mode,
                }
            })
            .collect();
        let slow = mix
            .groups
            .iter()
            .any(|(_, m)| matches!(m, ClientMode::SlowReader { .. }));
        let cold = if slow || mix.reconnect.is_some() {
            vec![Cold::default(); mix.conns]
        } else {
            Vec::new()
        };
        Clients {
            k,
            ep,
            addr: server,
            mix,
            seed,
            clients,
            modes,
            cold,
            next_client: 0,
            connecting: 0,
            holding: 0,
            held_closed: 0,
            next_to_close: 0,
            finished: 0,
            closed: 0,
            buf: vec![0; 64 * 1024],
            ticks: BinaryHeap::new(),
            backoff_rng: Rng::new(seed, 3),
            stats: ClientStats::default(),
            labels: Vec::new(),
            ports: BTreeMap::new(),
        }
    }

    /// Client `i`'s mode.
    #[inline]
    fn mode(&self, i: usize) -> ClientMode {
        match self.modes.get(usize::from(self.clients[i].mode)) {
            Some(&m) => m,
            None => self.mix.mode_of(i),
        }
    }

    /// Client `i`'s stream key.
    #[inline]
    fn key(&self, i: usize) -> u64 {
        mix_key(self.seed, i)
    }

    /// Whether an event's token is a client's.
    pub fn owns(data: u64) -> bool {
        data & TOKEN_MASK == TOKEN
    }

    /// Connects clients up to the window; once every client has finished, closes the held
    /// connections, at most a window's worth whose end of file the server has not yet seen at a
    /// time. `server_open`: connections the server holds open (0 if unknown: held connections
    /// are then closed all at once).
    ///
    /// # Errors
    /// A failed `socket`, `bind`, `epoll_ctl`, `connect` or `close`.
    #[inline]
    pub fn start(&mut self, server_open: usize) -> Result<(), Failure> {
        // Once a turn of the loop: nothing to do until every client has started (none may
        // start now) and until every client has finished (none held to close).
        if self.finished < self.mix.conns
            && (self.next_client >= self.mix.conns
                || self.connecting >= self.mix.connect_window.max(1))
        {
            return Ok(());
        }
        self.start_more(server_open)
    }

    /// [`Clients::start`] with a client to start or held connections to close.
    #[inline(never)]
    fn start_more(&mut self, server_open: usize) -> Result<(), Failure> {
        self.close_held(server_open)?;
        while self.next_client < self.mix.conns && self.connecting < self.mix.connect_window.max(1)
        {
            let i = self.next_client;
            self.next_client += 1;
            self.connect(i)?;
        }
        Ok(())
    }

    /// Every client finished as planned and closed its connection.
    pub fn done(&self) -> bool {
        self.closed == self.mix.conns
    }

    /// Handles an event whose token [`Clients::owns`]: reads and writes until `EAGAIN`
    /// (edge-triggered), checking every byte read.
    ///
    /// # Errors
    /// The first broken promise: a byte out of place, an end of file too early, an error no peer
    /// behaviour explains.
    pub fn handle(&mut self, ev: netpoll::EpollEvent) -> Result<(), Failure> {
        let i = (ev.data & 0xffff_ffff) as usize;
        if i >= self.clients.len() {
            return Err(Failure::Invariant(format!(
                "event with client token {:#x}, but there are {} clients",
                ev.data,
                self.clients.len()
            )));
        }
        self.drive(i, ev.events)
    }

    /// Reads the client state a client event's token `data` names, so that handling a batch of
    /// events after a pass that warms them all finds it in the cache (see `EchoServer::warm`).
    /// Only reads.
    #[inline]
    pub(crate) fn warm(&self, data: u64) {
        let i = (data & 0xffff_ffff) as usize;
        std::hint::black_box(self.clients.get(i).map(|c| c.phase));
    }

    /// Asks the cache for the client state a client token `data` names, without waiting for it
    /// (see `EchoServer::hint`).
    #[inline]
    pub(crate) fn hint(&self, data: u64) {
        if let Some(c) = self.clients.get((data & 0xffff_ffff) as usize) {
            netpoll::hint::prefetch(c, 1);
        }
    }

    /// The earliest slow-reader tick, in virtual (poller) ns.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.ticks.peek().map(|r| r.0 .0)
    }

    /// Runs the slow readers' ticks and the reconnects ([`Reconnect`]) due at `now_ns`.
    ///
    /// # Errors
    /// As [`Clients::handle`], and a failed `socket`, `epoll_ctl` or `connect` of a reconnect.
    #[inline]
    pub fn on_time(&mut self, now_ns: u64) -> Result<(), Failure> {
        if self.ticks.is_empty() {
            return Ok(()); // the common case, once per turn of the loop: no tick queued
        }
        self.run_ticks(now_ns)
    }

    /// [`Clients::on_time`] with ticks queued.
    fn run_ticks(&mut self, now_ns: u64) -> Result<(), Failure> {
        while let Some(&Reverse((at, entry))) = self.ticks.peek() {
            if at > now_ns {
                break;
            }
            self.ticks.pop();
            let i = (entry & !RECONNECT_TICK) as usize;
            if entry & RECONNECT_TICK != 0 {
                if self.clients[i].phase == Phase::Backoff {
                    self.stats.connect_retries += 1;
                    self.open_socket(i)?;
                }
                continue;
            }
            self.cold[i].tick_armed = false;
            if let ClientMode::SlowReader { chunk, .. } = self.mode(i) {
                if self.clients[i].phase == Phase::Active {
                    self.cold[i].budget = chunk;
                    self.step(i, None)?;
                }
            }
        }
        Ok(())
    }

    /// What the client with token `data` waits for now (the lost-wakeup oracle judges a ready
    /// registration by it).
    pub fn wants(&self, data: u64) -> Events {
        let i = (data & 0xffff_ffff) as usize;
        let Some(c) = self.clients.get(i) else {
            return Events::NONE;
        };
        match c.phase {
            Phase::Connecting => Events::OUT | Events::ERR | Events::HUP,
            Phase::Active => {
                let mut w = Events::ERR | Events::HUP;
                let slow = matches!(self.mode(i), ClientMode::SlowReader { .. });
                if !slow || self.cold[i].budget > 0 {
                    w |= Events::IN | Events::RDHUP;
                }
                if c.sent < self.send_target(i) && !c.shut_wr {
                    w |= Events::OUT;
                }
                w
            }
            // A held connection watches for the server misbehaving (data, FIN, reset).
            Phase::Holding => Events::IN | Events::RDHUP | Events::HUP | Events::ERR,
            _ => Events::NONE,
        }
    }

    /// The client a token names, in words.
    pub fn owner(&self, data: u64) -> String {
        format!("client {}", data & 0xffff_ffff)
    }

    /// Clients started and not closed for good: those with a connection (registered on the
    /// epoll instance), and those waiting out a [`Reconnect`] backoff, which have none.
    pub fn open(&self) -> usize {
        self.next_client - self.closed
    }

    /// Clients whose connection is closed for good.
    pub fn closed(&self) -> usize {
        self.closed
    }

    /// Clients not done yet.
    pub fn waiting(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.phase != Phase::Done)
            .count()
    }

    /// The first client not done, in words (for a hang's report).
    pub fn first_unfinished(&self) -> Option<String> {
        let (i, c) = self
            .clients
            .iter()
            .enumerate()
            .find(|(_, c)| c.phase != Phase::Done)?;
        Some(format!(
            "client {i} (fd {}, {:?}, sent {}/{} bytes, read {} bytes)",
            c.fd, c.phase, c.sent, c.send_total, c.recv
        ))
    }

    /// Clients that stall on purpose (the server must close them for idleness).
    pub fn stalled(&self) -> u64 {
        self.clients
            .iter()
            .filter(|c| c.stop == Stop::Stall)
            .count() as u64
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Which fd was which client's (with [`ClientMix::label_fds`]).
    pub fn take_labels(&mut self) -> Vec<FdLabel> {
        std::mem::take(&mut self.labels)
    }

    /// The client whose socket has local address `addr` (with [`ClientMix::label_fds`]): how a
    /// server's accepted connection is matched to its client.
    pub fn client_at(&self, addr: SocketAddrV4) -> Option<usize> {
        self.ports.get(&addr).copied()
    }

    /// The mix.
    pub fn mix(&self) -> &ClientMix {
        &self.mix
    }
}

/// Connection `i`'s stream key.
fn mix_key(seed: u64, i: usize) -> u64 {
    mix(seed ^ mix(i as u64 + 1))
}

//! A raw epoll echo server, written straight on the [`Poller`] trait: the example to copy when
//! testing your own event loop on the simulated kernel.
//!
//! # The pattern
//!
//! - The **listener is level-triggered**: while connections wait in its accept queue every
//!   `epoll_wait` reports it again, so accepting a bounded batch per event loses nothing.
//! - **Connections are edge-triggered** (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`), registered
//!   once and never modified. An edge is reported once per wakeup, so every handler **reads
//!   until `EAGAIN`** (or end of file) and **writes until `EAGAIN`** (or nothing is left): stopping
//!   early strands the bytes, and the loop then sleeps while the socket is readable, the lost
//!   wakeup this crate's oracles exist to catch.
//! - **Backpressure**: when a slow reader lets a connection's output queue reach
//!   [`HIGH_WATER_BYTES`], the server stops reading that connection *without* having seen
//!   `EAGAIN`. No new edge will come for the bytes already buffered, so when the queue drains
//!   (on an `EPOLLOUT` edge) the write handler calls the read handler itself.
//! - **Tokens carry a generation** (the `data` of each registration is tag, generation and
//!   slot): a slot freed by `close` and reused by a later connection gets a new generation, so
//!   an event for the old connection that was already collected in the same `epoll_wait` batch
//!   is recognised as stale and dropped.
//! - **Idle deadlines** (optional): each read pushes the connection's deadline back; a min-heap
//!   holds (deadline, slot, generation) entries and is checked lazily, so a read costs no heap
//!   operation. The event loop passes `epoll_wait` a timeout rounded *up* to the next
//!   millisecond, so a deadline fires at most one millisecond (one tick) late and never early.
//!
//! The server does not own the loop: it registers on an epoll instance it is given and handles
//! the events whose tokens it owns, so one loop can drive it together with simulated clients (as
//! the scenarios do) or alone:
//!
//! ```
//! use netpoll::{EpollEvent, Poller, sys::*};
//! use netpoll_scenarios::raw_epoll::{EchoServer, ServerConfig};
//! use std::net::{Ipv4Addr, SocketAddrV4};
//!
//! /// One turn of the loop: wait (at most `max_ms`), handle what came, act on due deadlines.
//! fn turn<P: Poller>(p: &P, ep: i32, server: &mut EchoServer<'_, P>, max_ms: i32)
//!     -> std::io::Result<()>
//! {
//!     let mut events = [EpollEvent::EMPTY; 256];
//!     let timeout = match server.timeout_ms() {
//!         -1 => max_ms,
//!         t => t.min(max_ms),
//!     };
//!     let n = p.epoll_wait(ep, &mut events, timeout)?;
//!     for ev in &events[..n] {
//!         server.handle(*ev)?;
//!     }
//!     server.on_time()
//! }
//!
//! let sim = netpoll_sim::Sim::new(1);
//! let ep = sim.epoll_create1(EPOLL_CLOEXEC)?;
//! let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
//! let mut server = EchoServer::bind(&sim, ep, any, ServerConfig::default())?;
//! // A blocking client on the same kernel: its connect lets virtual time pass.
//! let c = sim.tcp_socket(0)?;
//! sim.connect(c, server.local_addr()?)?;
//! sim.write(c, b"hello")?;
//! while server.stats().bytes_out < 5 {
//!     turn(&sim, ep, &mut server, 10)?;
//! }
//! let mut buf = [0u8; 5];
//! assert_eq!(sim.read(c, &mut buf)?, 5);
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddrV4;

use netpoll::sys::{
    errno::*, errno_of, Events, EPOLL_CTL_ADD, EPOLL_CTL_MOD, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Fd, Poller};

/// The top two bits of a registration's `data`: whose event it is.
pub mod tag {
    /// The listener.
    pub const LISTENER: u64 = 1 << 62;
    /// A server-side connection: `SERVER | generation << 32 | slot`.
    pub const SERVER: u64 = 2 << 62;
    /// A simulated client (the scenarios' driver): `CLIENT | index`.
    pub const CLIENT: u64 = 3 << 62;
    /// The mask selecting the tag.
    pub const MASK: u64 = 3 << 62;
}

/// Output queued for one connection beyond which the server stops reading it.
pub const HIGH_WATER_BYTES: usize = 256 * 1024;

/// One timer tick: `epoll_wait` timeouts are whole milliseconds.
pub const TICK_NS: u64 = 1_000_000;

const READ_BUF_BYTES: usize = 64 * 1024;

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `listen` backlog.
    pub backlog: i32,
    /// Each byte read is answered with this many copies of it (1: a plain echo).
    pub reply_factor: u32,
    /// Close a connection after this long without reading a byte from it.
    pub idle_timeout_ns: Option<u64>,
    /// Connections accepted per listener event at most (the rest wait in the queue: the
    /// listener is level-triggered, so it is reported again).
    pub accept_batch: usize,
    /// After each batch, stop listening for this long (`EPOLL_CTL_MOD` to no interest, then
    /// back): a server that accepts at most `accept_batch` connections per pause, which makes
    /// the accept queue overflow under a storm.
    pub accept_pause_ns: u64,
    /// **A deliberate bug**, for the canary scenario that proves the oracles catch one: read
    /// at most this many bytes, once per event, instead of reading until `EAGAIN`.
    pub canary_read_once: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            backlog: 1024,
            reply_factor: 1,
            idle_timeout_ns: None,
            accept_batch: 256,
            accept_pause_ns: 0,
            canary_read_once: None,
        }
    }
}

/// What the server did, for oracles and summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed after the peer's end of file.
    pub closed_eof: u64,
    /// Connections closed because the peer reset them (`ECONNRESET`, `EPIPE`).
    pub closed_reset: u64,
    /// Connections closed by their idle deadline.
    pub closed_idle: u64,
    /// Bytes read and written.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Times a connection was paused at [`HIGH_WATER_BYTES`].
    pub paused: u64,
    /// `EAGAIN` from `write`: the `EPOLLOUT` path was taken.
    pub write_blocked: u64,
    /// Events dropped because their generation was stale.
    pub stale_events: u64,
    /// Idle deadlines that fired, with (deadline, when the connection was closed), in ns.
    pub idle_closes: Vec<(u64, u64)>,
}

/// One accepted connection: 24 bytes, so that its slot ([`Slot`]) is half a cache line and an
/// event reads one line of the table (with 100,000 connections open, each line is a miss).
#[derive(Debug)]
struct Conn {
    fd: Fd,
    /// The peer sent its FIN (read returned 0).
    eof: bool,
    /// Reading stopped at the high-water mark, before `EAGAIN`.
    paused: bool,
    /// When the idle deadline expires (0: no deadline).
    deadline_ns: u64,
    /// Output `write` did not take yet (rare: only under backpressure), boxed so that the
    /// common connection, which has none, carries a pointer and no buffer.
    out: Option<Box<Out>>,
}

/// Output not yet taken by `write`: `buf[at..]`.
#[derive(Debug, Default)]
struct Out {
    buf: Vec<u8>,
    at: usize,
}

impl Conn {
    fn queued(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.buf.len() - o.at)
    }
}

/// A connection slot: 32 bytes, aligned so that it never straddles two cache lines.
#[derive(Debug)]
#[repr(align(32))]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

/// The echo server. See the module docs for the pattern it shows.
#[derive(Debug)]
pub struct EchoServer<'p, P: Poller> {
    p: &'p P,
    ep: Fd,
    listener: Fd,
    cfg: ServerConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    open: usize,
    buf: Vec<u8>,
    reply: Vec<u8>,
    /// (deadline, slot, generation), earliest first; entries of closed or pushed-back
    /// connections are skipped or re-queued when they come up.
    deadlines: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// The listener is muted (an accept pause) until this instant; 0 when listening.
    muted_until_ns: u64,
    stats: ServerStats,
    /// (when, fd, peer) of every accept, if asked for.
    accept_log: Option<Vec<(u64, Fd, SocketAddrV4)>>,
}

impl<'p, P: Poller> EchoServer<'p, P> {
    /// A listening server on `addr`, registered on epoll instance `ep`.
    ///
    /// # Errors
    /// What `socket`, `bind`, `listen` or `epoll_ctl` return.
    pub fn bind(p: &'p P, ep: Fd, addr: SocketAddrV4, cfg: ServerConfig) -> io::Result<Self> {
        let listener = p.tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC)?;
        p.bind(listener, addr)?;
        p.listen(listener, cfg.backlog)?;
        // Level-triggered: reported by every epoll_wait while a connection waits.
        p.epoll_ctl(
            ep,
            EPOLL_CTL_ADD,
            listener,
            Some(EpollEvent::new(Events::IN, tag::LISTENER)),
        )?;
        Ok(EchoServer {
            p,
            ep,
            listener,
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            buf: vec![0; READ_BUF_BYTES],
            reply: Vec::new(),
            deadlines: BinaryHeap::new(),
            muted_until_ns: 0,
            stats: ServerStats::default(),
            accept_log: None,
        })
    }

    /// The address clients connect to.
    ///
    /// # Errors
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        self.p.local_addr(self.listener)
    }

    /// The listening socket.
    pub fn listener(&self) -> Fd {
        self.listener
    }

    /// Makes room for `conns` connections open at once before the run starts, so that the
    /// connection table never grows (and copies itself) while it runs. A hint: more still fit.
    pub fn reserve(&mut self, conns: usize) {
        self.slots.reserve(conns.saturating_sub(self.slots.len()));
    }

    /// Connections open now.
    pub fn open_conns(&self) -> usize {
        self.open
    }

    /// What the server did so far.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Starts recording every accepted connection's fd and peer (for trace files).
    pub fn log_accepts(&mut self) {
        self.accept_log.get_or_insert_with(Vec::new);
    }

    /// (virtual ns, fd, peer address) of each accept since [`log_accepts`](Self::log_accepts).
    pub fn accept_log(&self) -> &[(u64, Fd, SocketAddrV4)] {
        self.accept_log.as_deref().unwrap_or(&[])
    }

    /// Whether an event's `data` is one of this server's tokens.
    pub fn owns(data: u64) -> bool {
        matches!(data & tag::MASK, tag::LISTENER | tag::SERVER)
    }

    fn token(slot: u32, generation: u32) -> u64 {
        tag::SERVER | u64::from(generation & 0x3fff_ffff) << 32 | u64::from(slot)
    }

    /// The connection a token names, if it is still the one the token was made for.
    fn live(&self, data: u64) -> Option<u32> {
        let slot = (data & 0xffff_ffff) as u32;
        let generation = ((data >> 32) & 0x3fff_ffff) as u32;
        let s = self.slots.get(slot as usize)?;
        (s.conn.is_some() && s.generation & 0x3fff_ffff == generation).then_some(slot)
    }

    /// Reads the slot a server event's token `data` names, so that handling a batch of events
    /// one after another, after a pass that warms them all, finds them in the cache: with
    /// 100,000 connections open at once, each event otherwise waited for its own slot in turn.
    /// Only reads.
    #[inline]
    pub(crate) fn warm(&self, data: u64) {
        if data & tag::MASK == tag::SERVER {
            let slot = (data & 0xffff_ffff) as usize;
            std::hint::black_box(self.slots.get(slot).map(|s| s.generation));
        }
    }

    /// Asks the cache for the slot a server token `data` names, without waiting for it (see
    /// [`Poller::upcoming`]): a token the kernel announced, whose event comes a few events later.
    #[inline]
    pub(crate) fn hint(&self, data: u64) {
        if data & tag::MASK == tag::SERVER {
            if let Some(s) = self.slots.get((data & 0xffff_ffff) as usize) {
                netpoll::hint::prefetch(s, 1);
            }
        }
    }

    /// Handles one event from `epoll_wait`.
    ///
    /// # Errors
    /// A syscall failing in a way no peer behaviour explains (not `EAGAIN`, `ECONNRESET`,
    /// `EPIPE`): a bug in the loop or in the kernel.
    ///
    /// # Panics
    /// If the event's token is not this server's.
    pub fn handle(&mut self, ev: EpollEvent) -> io::Result<()> {
        match ev.data & tag::MASK {
            tag::LISTENER => self.accept_batch(),
            tag::SERVER => {
                let Some(slot) = self.live(ev.data) else {
                    self.stats.stale_events += 1;
                    return Ok(());
                };
                if ev.events.contains(Events::OUT) {
                    self.on_writable(slot)?;
                }
                let r = Events::IN | Events::RDHUP | Events::HUP | Events::ERR;
                if ev.events.intersects(r) && self.slots[slot as usize].conn.is_some() {
                    self.on_readable(slot)?;
                }
                Ok(())
            }
            _ => panic!("event {ev:?} is not the server's"),
        }
    }

    fn accept_batch(&mut self) -> io::Result<()> {
        if self.muted_until_ns != 0 {
            return Ok(()); // an event collected before the mute; the listener is paused
        }
        let mut accepted = 0;
        for _ in 0..self.cfg.accept_batch.max(1) {
            let fd = match self.p.accept4(self.listener, SOCK_NONBLOCK | SOCK_CLOEXEC) {
                Ok((fd, peer)) => {
                    let p = self.p;
                    if let Some(log) = &mut self.accept_log {
                        log.push((p.now().as_nanos() as u64, fd, peer));
                    }
                    fd
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) if errno_of(&e) == Some(ECONNABORTED) => continue,
                Err(e) => return Err(e),
            };
            self.register(fd)?;
            accepted += 1;
        }
        if self.cfg.accept_pause_ns > 0 && accepted > 0 {
            // Overloaded: at most one batch per pause. Stop listening for a while; the
            // connections left in the queue, and any that arrive meanwhile, are reported when
            // MOD re-arms the interest (and those the full queue refuses are retried by TCP).
            let ev = EpollEvent::new(Events::NONE, tag::LISTENER);
            self.p
                .epoll_ctl(self.ep, EPOLL_CTL_MOD, self.listener, Some(ev))?;
            self.muted_until_ns = self.now_ns() + self.cfg.accept_pause_ns;
        }
        Ok(())
    }

    /// Registers an accepted connection; returns its token.
    fn register(&mut self, fd: Fd) -> io::Result<u64> {
        let deadline_ns = match self.cfg.idle_timeout_ns {
            Some(t) => self.now_ns() + t,
            None => 0,
        };
        let conn = Conn {
            fd,
            eof: false,
            paused: false,
            deadline_ns,
            out: None,
        };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        assert!(
            s.conn.is_none(),
            "slot {slot} on the free list holds a connection"
        );
        s.conn = Some(conn);
        let token = Self::token(slot, s.generation);
        if deadline_ns != 0 {
            self.deadlines
                .push(Reverse((deadline_ns, slot, s.generation)));
        }
        self.open += 1;
        self.stats.accepted += 1;
        let interest = Events::IN | Events::OUT | Events::RDHUP | Events::ET;
        self.p.epoll_ctl(
            self.ep,
            EPOLL_CTL_ADD,
            fd,
            Some(EpollEvent::new(interest, token)),
        )?;
        Ok(token)
    }

    fn conn(&mut self, slot: u32) -> &mut Conn {
        self.slots[slot as usize].conn.as_mut().expect("live slot")
    }

    /// Reads until `EAGAIN`, end of file, or the high-water mark; answers what it read.
    fn on_readable(&mut self, slot: u32) -> io::Result<()> {
        let factor = self.cfg.reply_factor.max(1) as usize;
        loop {
            let c = self.conn(slot);
            if c.eof {
                break;
            }
            if c.queued() >= HIGH_WATER_BYTES {
                if !c.paused {
                    c.paused = true;
                    self.stats.paused += 1;
                }
                return Ok(());
            }
            let fd = c.fd;
            let limit = self
                .cfg
                .canary_read_once
                .unwrap_or(READ_BUF_BYTES)
                .min(READ_BUF_BYTES);
            let n = match self.p.read(fd, &mut self.buf[..limit]) {
                Ok(0) => {
                    self.conn(slot).eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                Err(e) if matches!(errno_of(&e), Some(ECONNRESET | EPIPE)) => {
                    return self.close(slot, Close::Reset)
                }
                Err(e) => return Err(e),
            };
            self.stats.bytes_in += n as u64;
            if let Some(t) = self.cfg.idle_timeout_ns {
                let now = self.now_ns();
                self.conn(slot).deadline_ns = now + t;
            }
            if factor == 1 {
                let bytes = std::mem::take(&mut self.buf);
                let r = self.send(slot, &bytes[..n]);
                self.buf = bytes;
                r?;
            } else {
                let mut reply = std::mem::take(&mut self.reply);
                reply.clear();
                for &b in &self.buf[..n] {
                    reply.extend(std::iter::repeat_n(b, factor));
                }
                let r = self.send(slot, &reply);
                self.reply = reply;
                r?;
            }
            if self.slots[slot as usize].conn.is_none() {
                return Ok(()); // closed by a reset while answering
            }
            if self.cfg.canary_read_once.is_some() {
                return Ok(()); // the canary's bug: stop before EAGAIN
            }
        }
        // End of file: finish sending what is queued, then close.
        if self.conn(slot).queued() == 0 {
            self.close(slot, Close::Eof)?;
        }
        Ok(())
    }

    /// Writes `bytes` after whatever is already queued.
    fn send(&mut self, slot: u32, bytes: &[u8]) -> io::Result<()> {
        let c = self.conn(slot);
        let mut at = 0;
        if c.queued() == 0 {
            let fd = c.fd;
            // Until everything is taken or EAGAIN: a short write alone is not proof that an
            // EPOLLOUT edge will follow (it is on Linux; portable loops do not rely on it).
            while at < bytes.len() {
                match self.p.write(fd, &bytes[at..]) {
                    Ok(n) => at += n,
                    Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                    Err(e) if matches!(errno_of(&e), Some(ECONNRESET | EPIPE)) => {
                        return self.close(slot, Close::Reset)
                    }
                    Err(e) => return Err(e),
                }
            }
            self.stats.bytes_out += at as u64;
        }
        if at < bytes.len() {
            self.stats.write_blocked += 1;
            let o = self.conn(slot).out.get_or_insert_with(Box::default);
            if o.at == o.buf.len() {
                o.buf.clear();
                o.at = 0;
            }
            o.buf.extend_from_slice(&bytes[at..]);
        }
        Ok(())
    }

    /// Writes queued output until `EAGAIN`; resumes reading a paused connection.
    fn on_writable(&mut self, slot: u32) -> io::Result<()> {
        let p = self.p;
        loop {
            let c = self.conn(slot);
            let fd = c.fd;
            let Some(o) = c.out.as_deref().filter(|o| o.at < o.buf.len()) else {
                break;
            };
            let r = p.write(fd, &o.buf[o.at..]);
            match r {
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    if let Some(o) = self.conn(slot).out.as_deref_mut() {
                        o.at += n;
                    }
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                Err(e) if matches!(errno_of(&e), Some(ECONNRESET | EPIPE)) => {
                    return self.close(slot, Close::Reset)
                }
                Err(e) => return Err(e),
            }
        }
        let c = self.conn(slot);
        c.out = None;
        if c.paused {
            // No edge will come for bytes that were already there when we paused: read now.
            c.paused = false;
            return self.on_readable(slot);
        }
        if c.eof {
            return self.close(slot, Close::Eof);
        }
        Ok(())
    }

    fn close(&mut self, slot: u32, why: Close) -> io::Result<()> {
        let s = &mut self.slots[slot as usize];
        let c = s.conn.take().expect("closing a live slot");
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        self.open -= 1;
        match why {
            Close::Eof => self.stats.closed_eof += 1,
            Close::Reset => self.stats.closed_reset += 1,
            Close::Idle => {
                self.stats.closed_idle += 1;
                let now = self.now_ns();
                self.stats.idle_closes.push((c.deadline_ns, now));
            }
        }
        // Closing the last descriptor removes the epoll registration too.
        self.p.close(c.fd)
    }

    fn now_ns(&self) -> u64 {
        self.p.now().as_nanos() as u64
    }

    /// The earliest instant the server must act without an event (an idle deadline, the end of
    /// an accept pause), in the poller's clock.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let d = self.deadlines.peek().map(|r| r.0 .0);
        let m = (self.muted_until_ns != 0).then_some(self.muted_until_ns);
        match (d, m) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The `epoll_wait` timeout this server needs: `-1` without deadlines, else the
    /// milliseconds to the earliest, rounded up.
    pub fn timeout_ms(&self) -> i32 {
        match self.next_deadline_ns() {
            None => -1,
            Some(d) => timeout_ms(d, self.now_ns()),
        }
    }

    /// Acts on every deadline that has passed: closes idle connections, ends an accept pause.
    ///
    /// # Errors
    /// What `close` or `epoll_ctl` return.
    pub fn on_time(&mut self) -> io::Result<()> {
        if self.muted_until_ns == 0 && self.deadlines.is_empty() {
            return Ok(()); // nothing is timed: no need to read the clock
        }
        let now = self.now_ns();
        if self.muted_until_ns != 0 && self.muted_until_ns <= now {
            self.muted_until_ns = 0;
            // MOD re-checks readiness at once: connections queued meanwhile are reported.
            let ev = EpollEvent::new(Events::IN, tag::LISTENER);
            self.p
                .epoll_ctl(self.ep, EPOLL_CTL_MOD, self.listener, Some(ev))?;
        }
        while let Some(&Reverse((d, slot, generation))) = self.deadlines.peek() {
            if d > now {
                break;
            }
            self.deadlines.pop();
            let s = &self.slots[slot as usize];
            let Some(c) = s.conn.as_ref().filter(|_| s.generation == generation) else {
                continue; // closed since
            };
            if c.deadline_ns > now {
                self.deadlines
                    .push(Reverse((c.deadline_ns, slot, generation)));
                continue; // pushed back by a read
            }
            self.close(slot, Close::Idle)?;
        }
        Ok(())
    }

    /// What the server is waiting for on the registration with `data`: the readiness that, if
    /// present while the loop sleeps, is a lost wakeup.
    pub fn wants(&self, data: u64) -> Events {
        match data & tag::MASK {
            tag::LISTENER if self.muted_until_ns == 0 => Events::IN,
            tag::SERVER => match self.live(data) {
                Some(slot) => {
                    let c = self.slots[slot as usize].conn.as_ref().expect("live");
                    let mut w = Events::NONE;
                    if !c.eof && !c.paused {
                        w |= Events::IN | Events::RDHUP | Events::HUP | Events::ERR;
                    }
                    if c.queued() > 0 {
                        w |= Events::OUT | Events::ERR | Events::HUP;
                    }
                    w
                }
                None => Events::NONE,
            },
            _ => Events::NONE,
        }
    }

    /// Closes the listener (connections stay open).
    ///
    /// # Errors
    /// What `close` returns.
    pub fn close_listener(&mut self) -> io::Result<()> {
        self.p.close(self.listener)
    }
}

enum Close {
    Eof,
    Reset,
    Idle,
}

/// `epoll_wait`'s timeout for a deadline: the milliseconds from `now_ns` to `deadline_ns`,
/// rounded up (0 if it has passed; capped at `i32::MAX`).
pub fn timeout_ms(deadline_ns: u64, now_ns: u64) -> i32 {
    let ms = deadline_ns.saturating_sub(now_ns).div_ceil(TICK_NS);
    i32::try_from(ms).unwrap_or(i32::MAX)
}

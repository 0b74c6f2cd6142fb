//! The simulated loopback network: connections, their two directions of bytes, and the
//! packets that cross between them (`tcp_input.c`, `tcp_output.c`, `tcp_minisocks.c`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;

use netpoll::sys::{errno::*, Events};

use super::super::unix::{RCV_SHUTDOWN, SEND_SHUTDOWN};
use super::super::{FileId, Kernel, Kind, Later};
use super::mem::{self, TcpMem};
use super::ports::PortTable;
use super::{sock, sock_ref, State, TcpSock};
use crate::bytes::{ByteQueue, QueueState, Rings, INLINE};
use crate::rng::Stream;
use crate::slab::Slab;

/// One direction of a connection, the bytes flowing *to* one end: its state and its buffer's
/// bookkeeping (the bytes themselves are in [`Conn::inline`], or a ring in [`Net::rings`]: see
/// [`Conn::buf`]).
///
/// The direction's buffer holds the bytes the receiver has not read (the first `rx_len`)
/// followed by the bytes still crossing the network, in order. Delivering a segment only moves
/// the boundary: no byte is copied between a `write` and the `read` that takes it.
#[derive(Debug, Default)]
pub(super) struct Dir {
    /// When the last packet of this direction arrives: later packets never overtake it.
    pub(super) last_ns: u64,
    /// 32 bits: a direction holds at most `tcp_window` bytes, at most
    /// [`crate::config::MAX_TCP_WINDOW`].
    pub(super) rx_len: u32,
    /// The receiving end got the FIN (Linux's `SOCK_DONE`).
    pub(super) fin: bool,
    /// The sending end's write found no room: wake it (`OUT`) when room returns (Linux's
    /// `SOCK_NOSPACE` on the sending socket; kept here, where the reader that returns the room
    /// looks, so that a read touches the writer's socket only when it must).
    pub(super) nospace: bool,
    /// Memory state ([`super::mem`]): [`LOST`] while a segment dropped for want of memory
    /// waits for its retransmission (everything behind it is held), [`FIN_HELD`] if a FIN is
    /// held with it, and in the low bits the losses in a row (the timeout's backoff).
    pub(super) mem: u8,
    /// The connection's choice of inline lines (see [`Conn::line`]): in direction 0, which
    /// line direction 0 uses (direction 1 uses the other); in direction 1, the line last used
    /// (the one likely in the cache).
    pub(super) line: u8,
    /// The buffer: its length (bytes unread plus bytes in flight) and where its bytes are.
    pub(super) q: QueueState,
}

/// See [`Dir::mem`].
const LOST: u8 = 0x80;
const FIN_HELD: u8 = 0x40;
const LOSSES: u8 = 0x3f;

impl Dir {
    /// A segment of this direction was dropped for want of memory and is not yet retransmitted.
    #[inline]
    pub(super) fn lost(&self) -> bool {
        self.mem & LOST != 0
    }
}

/// A connection between two sockets.
///
/// Laid out for the cache (`repr(C)`, in this order), in three lines: everything a delivery,
/// an epoll report (`tcp_poll`) or the bookkeeping of a `read` or `write` reads or writes (the
/// ends, the packet count, both directions' state and their buffers' lengths: 64 bytes) is the
/// first; each direction's inline bytes (up to 64) are a line of their own, so a 64-byte message
/// is copied in and out of one line (which line is a direction's changes: see [`Conn::buf`]).
/// A large slab is a block of 2 MiB or more, which the huge-page allocator `netpoll-sim`
/// installs places on a 2 MiB boundary, so its 192-byte slots start on a line (not `align(64)`:
/// a slab that still grows through `malloc` copies itself on every doubling, and over-aligning
/// measured no faster).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Conn {
    /// The two sockets, each as its id plus one (4 bytes, not 8: see [`Conn::end`]).
    ends: [Option<NonZeroU32>; 2],
    /// Packets on their way: the connection outlives its sockets until they are delivered.
    pub(super) packets: u32,
    /// The listener the connection was made through (for the handshake's ACK).
    listener: FileId,
    pub(super) dir: [Dir; 2],
    /// The bytes of each direction while they fit inline, one line each (which is whose:
    /// [`Conn::buf`]).
    inline: [[u8; INLINE]; 2],
}

impl Conn {
    /// A connection through `listener`, with no ends yet and nothing queued.
    fn new(listener: FileId) -> Conn {
        Conn {
            ends: [None, None],
            packets: 0,
            listener,
            dir: [Dir::default(), Dir::default()],
            inline: [[0; INLINE]; 2],
        }
    }

    /// The socket at end `i` (0: the connecting side, 1: the accepted side), while it is open.
    #[inline]
    pub(super) fn end(&self, i: usize) -> Option<FileId> {
        self.ends[i].map(|n| n.get() - 1)
    }

    pub(super) fn set_end(&mut self, i: usize, f: Option<FileId>) {
        self.ends[i] = f.map(|f| NonZeroU32::new(f + 1).expect("file ids are below u32::MAX"));
    }

    /// The bytes queued in direction `i` (to end `i`).
    #[inline]
    pub(super) fn buf_len(&self, i: usize) -> usize {
        self.dir[i].q.len()
    }

    /// Which of the two inline lines holds direction `i`'s bytes (the other direction's are in
    /// the other line).
    #[inline]
    fn line(&self, i: usize) -> usize {
        (usize::from(self.dir[0].line) ^ i) & 1
    }

    /// The buffer of direction `i`, with `rings` (the network's) for bytes that do not fit inline.
    ///
    /// The two inline lines are not tied to a direction: a direction that holds nothing takes
    /// the line last used, unless the other direction's bytes are in it. An echo's reply is
    /// then written into the line its request was just read from (in the cache), not into a
    /// line no one touched since the last reply: with 100,000 connections open at once, that
    /// store missed on nearly every `write`. Where the bytes are is invisible to the run.
    #[inline(always)]
    pub(super) fn buf<'a>(&'a mut self, i: usize, rings: &'a mut Rings) -> ByteQueue<'a> {
        if self.dir[i].q.empty_inline() && !self.dir[1 - i].q.holds_inline() {
            // Direction `i` takes the line last used: `line(i)` becomes `dir[1].line`.
            self.dir[0].line = self.dir[1].line ^ i as u8;
        }
        let line = self.line(i);
        self.dir[1].line = line as u8;
        ByteQueue {
            st: &mut self.dir[i].q,
            inline: &mut self.inline[line],
            rings,
        }
    }

    /// Frees both directions' rings (the connection is going away): each direction with its
    /// own line, as [`Conn::buf`] pairs them, but without choosing a line.
    pub(super) fn free_rings(&mut self, rings: &mut Rings) {
        for i in 0..2 {
            let line = self.line(i);
            ByteQueue {
                st: &mut self.dir[i].q,
                inline: &mut self.inline[line],
                rings,
            }
            .free();
        }
    }

    /// Reads the inline line of direction `i` (see [`Kernel::warm_for_call`]).
    #[inline]
    pub(super) fn warm_bytes(&self, i: usize) -> u8 {
        self.warm_line(i)[0]
    }

    /// The line of bytes a read of direction `i` copies from (for a cache hint).
    pub(super) fn warm_line(&self, i: usize) -> &[u8; INLINE] {
        &self.inline[self.line(i)]
    }
}

// Every delivery's state in one cache line, each direction's inline bytes in a line of its own.
const _: () = assert!(std::mem::size_of::<Dir>() == 24);
const _: () = assert!(std::mem::offset_of!(Conn, inline) == 64);
const _: () = assert!(std::mem::size_of::<Conn>() == 192);
const _: () = assert!(std::mem::size_of::<Option<Conn>>() == std::mem::size_of::<Conn>());

/// A packet on the wire, or a retransmission timer.
///
/// 16 bytes, so that an event in the queue (a 128-bit key and this) is 32, two to a cache line:
/// directions are a byte, lengths 32 bits (a segment is at most the MSS), connect attempts 32
/// bits (a run makes far fewer than 2^32 connects), a SYN's destination is the connecting
/// socket's peer address and an ACK's listener is in its connection.
#[derive(Debug)]
pub(crate) enum Packet {
    Syn {
        client: FileId,
        attempt: u32,
    },
    SynRetry {
        client: FileId,
        attempt: u32,
    },
    Refused {
        client: FileId,
        attempt: u32,
    },
    SynAck {
        client: FileId,
        attempt: u32,
        conn: u32,
    },
    Ack {
        conn: u32,
        /// SYN-ACK retransmissions so far (the ACK comes back with each one).
        retries: u32,
    },
    /// `len` bytes of the direction's `buf` arrive (they follow its unread bytes).
    Data {
        conn: u32,
        to: u8,
        len: u32,
    },
    Fin {
        conn: u32,
        to: u8,
    },
    Rst {
        conn: u32,
        to: u8,
    },
    /// The retransmission timer of direction `to`, after a segment was dropped for want of
    /// memory: everything not yet delivered is sent again, in order.
    Retransmit {
        conn: u32,
        to: u8,
    },
}

const _: () = assert!(std::mem::size_of::<Packet>() == 16);

/// How many deliveries [`Kernel::warm_ahead`] prepares at a time.
const WARM: usize = 16;

/// The connection and direction a queued packet travels, for the warming.
#[inline]
fn conn_of(later: &Later) -> Option<(u32, usize)> {
    match later {
        Later::Net(
            Packet::Data { conn, to, .. } | Packet::Fin { conn, to } | Packet::Rst { conn, to },
        ) => Some((*conn, usize::from(*to))),
        _ => None,
    }
}

/// With a cache hint, what a queued packet touches first: its connection, or (a handshake
/// packet) the connecting socket, or both.
#[inline]
fn first_touch(later: &Later) -> (Option<u32>, Option<FileId>) {
    match *later {
        Later::Net(Packet::SynAck { client, conn, .. }) => (Some(conn), Some(client)),
        Later::Net(
            Packet::Syn { client, .. }
            | Packet::SynRetry { client, .. }
            | Packet::Refused { client, .. },
        ) => (None, Some(client)),
        Later::Net(Packet::Ack { conn, .. }) => (Some(conn), None),
        _ => (conn_of(later).map(|(c, _)| c), None),
    }
}

/// With a cache hint, how many deliveries apart [`Kernel::hint_ahead`]'s stages run.
const HINT_STEP: usize = 48;
/// With a cache hint, how many deliveries ahead the kernel reads an epoll item's data word for
/// the loop ([`crate::Sim::upcoming`]).
const HINT_DATA: usize = 16;

/// The network: connections, bound ports, listeners.
#[derive(Debug, Default)]
pub(crate) struct Net {
    pub(super) conns: Slab<Conn>,
    /// Bound (ip, port) pairs and the socket holding each.
    pub(super) bound: PortTable,
    pub(super) next_attempt: u32,
    /// Where the next ephemeral port search starts (an offset into the range).
    pub(super) port_hint: Option<u64>,
    /// The machine-wide TCP memory account (`tcp_memory_allocated`).
    pub(super) mem: TcpMem,
    /// Each TCP socket's addresses, by file id (entries of other files unused): kept out of
    /// the socket so that a socket and its file fit one cache line.
    pub(super) addrs: Vec<super::Addrs>,
    /// The connections' buffers that do not fit inline.
    pub(super) rings: Rings,
}

impl Net {
    /// A network whose connection table has room for `n` connections before it grows.
    pub(crate) fn with_capacity(n: usize) -> Net {
        Net {
            conns: Slab::with_capacity(n),
            // Two sockets a connection, as the kernel's file table (see `Kernel::new`).
            addrs: Vec::with_capacity(if n == 0 { 0 } else { 2 * n + 8 }),
            ..Net::default()
        }
    }
}

impl Kernel {
    pub(super) fn latency(&mut self) -> u64 {
        let lat = match self.cfg.faults.latency {
            Some(l) => l.draw(self.rng.get(Stream::Net)),
            None => {
                let (lo, hi) = self.cfg.latency_ns;
                self.rng.range(Stream::Net, lo, hi)
            }
        };
        let q = self.cfg.faults.quantum_ns;
        if q > 0 {
            (self.now_ns + lat).div_ceil(q) * q - self.now_ns
        } else {
            lat
        }
    }

    /// Sends `pkt` after a fresh latency draw; `order` (connection, direction) keeps packets of
    /// one direction in order.
    pub(super) fn send(&mut self, pkt: Packet, order: Option<(u32, usize)>) {
        let mut at = self.now_ns + self.latency();
        if let Some((c, d)) = order {
            let conn = &mut self.net.conns[c];
            at = at.max(conn.dir[d].last_ns);
            conn.dir[d].last_ns = at;
            conn.packets += 1;
        }
        self.schedule(at, Later::Net(pkt));
    }

    /// Sends a FIN in direction `to`, or holds it behind a segment lost for want of memory.
    pub(super) fn send_fin(&mut self, c: u32, to: usize) {
        let d = &mut self.net.conns[c].dir[to];
        if d.lost() {
            d.mem |= FIN_HELD;
        } else {
            self.send(
                Packet::Fin {
                    conn: c,
                    to: to as u8,
                },
                Some((c, to)),
            );
        }
    }

    /// `n` queued bytes are gone (read, discarded, or dropped with their connection).
    #[inline]
    pub(super) fn tcp_uncharge(&mut self, n: usize) {
        let lim = mem::Limits::of(self.cfg.tcp_mem);
        self.net.mem.uncharge(n as u64, &lim);
    }

    /// Whether the segment of `len` bytes arriving at `f` (end `to` of `conn`) is dropped for
    /// want of memory (`tcp_try_rmem_schedule`): behind an earlier loss, or refused by the
    /// account. A first loss starts the retransmission timer.
    fn tcp_rcv_drops(&mut self, conn: u32, to: usize, len: usize) -> bool {
        if self.net.conns[conn].dir[to].lost() {
            self.net.mem.recv_dropped += 1;
            return true;
        }
        let lim = mem::Limits::of(self.cfg.tcp_mem);
        // The bytes are charged already (from the write); the receiver's charge comes on top
        // until the acknowledgement frees the sender's.
        if self.net.mem.free_below_low(len as u64, &lim) {
            return false;
        }
        let own = self.tcp_usage(conn, to);
        if own.rmem == 0 || self.net.mem.judge(mem::Kind::Recv, len as u64, own, &lim) {
            // Even a refused segment is taken, charged by force, when nothing is waiting to be
            // read (`tcp_data_queue`): a reader with an empty queue always makes progress.
            return false;
        }
        self.net.mem.recv_dropped += 1;
        let now = self.now_ns;
        let cn = &mut self.net.conns[conn];
        let d = &mut cn.dir[to];
        let losses = ((d.mem & LOSSES) + 1).min(LOSSES);
        d.mem = LOST | losses;
        // After every packet already on its way in this direction, so that the retransmission
        // finds them all dropped (and nothing else sent meanwhile: writes are held).
        let at = (now + mem::rto_ns(losses)).max(d.last_ns);
        d.last_ns = at;
        cn.packets += 1;
        self.schedule(at, Later::Net(Packet::Retransmit { conn, to: to as u8 }));
        true
    }

    /// The retransmission timer of direction `to` fires: the bytes not delivered go again.
    fn tcp_retransmit(&mut self, conn: u32, to: usize) {
        let cn = &mut self.net.conns[conn];
        cn.packets -= 1;
        let d = &mut cn.dir[to];
        let fin = d.mem & FIN_HELD != 0;
        d.mem &= LOSSES;
        let rx = d.rx_len as usize;
        let pending = cn.buf_len(to) - rx;
        if cn.end(0).is_none() && cn.end(1).is_none() {
            cn.buf(to, &mut self.net.rings).remove(rx, pending);
            self.tcp_uncharge(pending);
            self.conn_maybe_free(conn);
            return;
        }
        let mss = self.cfg.tcp_mss.max(1);
        let mut off = 0;
        while off < pending {
            let k = (pending - off).min(mss);
            let pkt = Packet::Data {
                conn,
                to: to as u8,
                len: k as u32,
            };
            self.send(pkt, Some((conn, to)));
            off += k;
        }
        if fin {
            self.send(Packet::Fin { conn, to: to as u8 }, Some((conn, to)));
        }
    }

    /// Frees the connection once both sockets are gone and no packet refers to it. Callers may
    /// call it after a release that already freed it.
    pub(super) fn conn_maybe_free(&mut self, c: u32) {
        let Some(conn) = self.net.conns.get(c) else {
            return;
        };
        if conn.end(0).is_none() && conn.end(1).is_none() && conn.packets == 0 {
            let rings = &mut self.net.rings;
            self.net.conns.remove_with(c, |conn| conn.free_rings(rings));
        }
    }

    /// Ends the connection at `f` because of a reset or a refused/timed-out connect.
    pub(super) fn tcp_abort(&mut self, f: FileId, errno: i32) {
        let s = sock(self, f);
        s.state = State::Closed;
        s.err = errno;
        s.shutdown = RCV_SHUTDOWN | SEND_SHUTDOWN;
        self.wake(f, Events::NONE);
    }

    /// Brings into the cache what the next deliveries will touch, in three stages, each
    /// reading what the one before brought in: the connection (which names the receiving
    /// socket), the socket's file (which names its epoll items), the first item. With 100,000
    /// connections open at once, nearly every delivery missed the cache on each of them in
    /// turn: that wait was most of the run. What the run does is unchanged either way.
    ///
    /// - With a cache hint installed (`netpoll::hint`, as `netpoll-sim` does), on every
    ///   delivery: one delivery a stage, the stages [`HINT_STEP`] deliveries apart, each line
    ///   prefetched by its slab index without a look at it (a look would wait for the line).
    ///   Handshake packets name the connecting socket itself, whose file and addresses the
    ///   first stage prefetches too; an ACK's socket is the accepted one, with its addresses
    ///   (`accept4` comes next). Spreading the requests this way measured 0.95 of the time of a
    ///   burst of 48 every 16 deliveries. The delivery [`HINT_DATA`] ahead also gives its item's
    ///   data word to the loop, once the loop has asked ([`crate::Sim::upcoming`]).
    /// - Without one, once every [`WARM`] deliveries, for the next [`WARM`]: plain reads, whose
    ///   misses overlap one another (they do not depend on each other) but each of which must
    ///   arrive before it retires.
    #[inline]
    pub(crate) fn warm_ahead(&mut self) {
        if netpoll::hint::installed() {
            return self.hint_ahead();
        }
        if self.stats.deliveries % WARM as u64 != 0 {
            return;
        }
        for later in self.queue.ahead_range(2 * WARM, 3 * WARM) {
            if let Some((c, to)) = conn_of(later) {
                if let Some(cn) = self.net.conns.get(c) {
                    std::hint::black_box((cn.packets, cn.dir[to].rx_len));
                }
            }
        }
        for later in self.queue.ahead_range(WARM, 2 * WARM) {
            if let Some(file) = self.end_of(later).and_then(|f| self.files.get(f)) {
                std::hint::black_box(file.refs);
            }
        }
        for later in self.queue.ahead_range(0, WARM) {
            let it = self.first_item_of(later);
            std::hint::black_box(it.and_then(|it| self.items.get(it)).map(|i| i.ep));
        }
    }

    /// [`Kernel::warm_ahead`] with a cache hint.
    #[inline]
    fn hint_ahead(&mut self) {
        if let Some(later) = self.queue.ahead(3 * HINT_STEP) {
            let (conn, sock) = first_touch(later);
            if let Some(c) = conn {
                self.net.conns.prefetch(c);
            }
            if let Some(f) = sock {
                self.files.prefetch(f);
                if let Some(a) = self.net.addrs.get(f as usize) {
                    netpoll::hint::prefetch(a, 1);
                }
            }
        }
        if let Some(later) = self.queue.ahead(2 * HINT_STEP) {
            if let Some(f) = self.end_of(later) {
                self.files.prefetch(f);
                if let Later::Net(Packet::Ack { .. }) = later {
                    // `accept4` reads the accepted socket's peer address.
                    if let Some(a) = self.net.addrs.get(f as usize) {
                        netpoll::hint::prefetch(a, 1);
                    }
                }
            }
        }
        if let Some(it) = self
            .queue
            .ahead(HINT_STEP)
            .and_then(|l| self.first_item_of(l))
        {
            self.items.prefetch(it);
        }
        if self.soon.wanted() {
            let data = (self.queue.ahead(HINT_DATA))
                .and_then(|l| self.first_item_of(l))
                .and_then(|it| self.items.get(it))
                .map(|i| i.data);
            if let Some(d) = data {
                self.soon.push(d);
            }
        }
    }

    /// The socket a queued packet is for, if it is still there (the connecting socket, for a
    /// handshake packet that names it).
    #[inline]
    fn end_of(&self, later: &Later) -> Option<FileId> {
        match *later {
            Later::Net(Packet::SynAck { client, .. }) => Some(client),
            // The accepted side: `accept4` comes next.
            Later::Net(Packet::Ack { conn, .. }) => self.net.conns.get(conn)?.end(1),
            _ => {
                let (c, to) = conn_of(later)?;
                self.net.conns.get(c)?.end(to)
            }
        }
    }

    /// The first epoll item on the wait queue of the socket a queued packet is for.
    #[inline]
    fn first_item_of(&self, later: &Later) -> Option<u32> {
        self.files.get(self.end_of(later)?)?.watchers.get(0)
    }

    /// A packet or timer arrives.
    pub(crate) fn deliver(&mut self, pkt: Packet) {
        match pkt {
            Packet::Syn { client, attempt } => self.on_syn(client, attempt),
            Packet::SynRetry { client, attempt } => {
                if !self.attempt_live(client, attempt) {
                    return;
                }
                let s = sock(self, client);
                s.syns += 1;
                if s.syns > self.cfg.syn_retries + 1 {
                    self.tcp_abort(client, ETIMEDOUT);
                    return;
                }
                self.send(Packet::Syn { client, attempt }, None);
            }
            Packet::Refused { client, attempt } => {
                if self.attempt_live(client, attempt) {
                    self.give_back_port(client);
                    self.tcp_abort(client, ECONNREFUSED);
                }
            }
            Packet::SynAck {
                client,
                attempt,
                conn,
            } => {
                self.net.conns[conn].packets -= 1;
                if self.attempt_live(client, attempt) {
                    let s = sock(self, client);
                    s.state = State::Established;
                    s.set_conn(Some((conn, 0)));
                    self.net.conns[conn].set_end(0, Some(client));
                    self.wake(client, Events::NONE);
                    self.send(Packet::Ack { conn, retries: 0 }, Some((conn, 1)));
                } else {
                    // The client went away: the half-open child is dropped.
                    if let Some(child) = self.net.conns[conn].end(1) {
                        self.release(child);
                    }
                    self.conn_maybe_free(conn);
                }
            }
            Packet::Ack { conn, retries } => {
                let cn = &mut self.net.conns[conn];
                cn.packets -= 1;
                let listener = cn.listener;
                self.on_ack(conn, listener, retries);
            }
            Packet::Data { conn, to, len } => {
                let (to, len) = (usize::from(to), len as usize);
                let cn = &mut self.net.conns[conn];
                cn.packets -= 1;
                let receiver = cn.end(to);
                let sender_alive = cn.end(1 - to).is_some();
                // The receiver's state, read once: established, and shut down both ways. A
                // socket that sent its FIN and shut its receiving side, and has not had the
                // peer's FIN (`FIN_WAIT1/2` with `RCV_SHUTDOWN`), resets a connection whose data
                // still arrives.
                let (established, shut_both) = match receiver {
                    Some(f) => {
                        let s = sock(self, f);
                        (
                            s.state == State::Established,
                            s.shutdown == RCV_SHUTDOWN | SEND_SHUTDOWN,
                        )
                    }
                    None => (false, false),
                };
                let mut held = false;
                let delivered = match receiver {
                    // A socket that was reset is no longer in the connection table: a reset
                    // answers the segment.
                    Some(_) if !established => false,
                    Some(f) if self.fault(self.cfg.faults.reset) => {
                        // The segment arrives as a reset; the receiver answers in kind.
                        self.faults.resets += 1;
                        self.tcp_abort(f, ECONNRESET);
                        false
                    }
                    Some(f) if shut_both && !self.net.conns[conn].dir[to].fin => {
                        // RFC 1122: data after our FIN and SHUT_RD is answered with a reset.
                        self.tcp_abort(f, ECONNRESET);
                        false
                    }
                    Some(f) if self.tcp_rcv_drops(conn, to, len) => {
                        // Dropped for want of memory: the bytes stay queued for the
                        // retransmission. Linux still calls `sk_data_ready` (a wakeup, and an
                        // edge for edge-triggered watchers).
                        held = true;
                        if self.edge_wakes(false) {
                            let key = Events::IN | Events::PRI | Events::RDNORM | Events::RDBAND;
                            self.wake(f, key);
                        }
                        false
                    }
                    Some(f) => {
                        let d = &mut self.net.conns[conn].dir[to];
                        let was_empty = d.rx_len == 0;
                        d.rx_len += len as u32;
                        d.mem = 0;
                        if self.net.mem.moderated_socks > 0 {
                            // The acknowledgement frees the sender's share: its moderated
                            // buffer may grow back and its writer wake (`tcp_check_space`).
                            self.tcp_space_returned(conn, 1 - to);
                        }
                        if self.edge_wakes(was_empty) {
                            let key = Events::IN | Events::PRI | Events::RDNORM | Events::RDBAND;
                            self.wake(f, key);
                        }
                        true
                    }
                    // Data for a closed socket: a reset answers it.
                    None => false,
                };
                if !delivered && !held {
                    let cn = &mut self.net.conns[conn];
                    let rx = cn.dir[to].rx_len as usize;
                    cn.buf(to, &mut self.net.rings).remove(rx, len);
                    self.tcp_uncharge(len);
                    if sender_alive {
                        let rst = Packet::Rst {
                            conn,
                            to: (1 - to) as u8,
                        };
                        self.send(rst, Some((conn, 1 - to)));
                    }
                }
                self.conn_maybe_free(conn);
            }
            Packet::Fin { conn, to } => {
                let to = usize::from(to);
                let cn = &mut self.net.conns[conn];
                cn.packets -= 1;
                if cn.dir[to].lost() {
                    // Behind a lost segment: it comes again with the retransmission.
                    cn.dir[to].mem |= FIN_HELD;
                } else if let Some(f) = cn.end(to) {
                    cn.dir[to].fin = true;
                    sock(self, f).shutdown |= RCV_SHUTDOWN;
                    self.wake(f, Events::NONE);
                }
                self.conn_maybe_free(conn);
            }
            Packet::Rst { conn, to } => {
                let to = usize::from(to);
                let cn = &mut self.net.conns[conn];
                cn.packets -= 1;
                let fin = cn.dir[to].fin;
                if let Some(f) = cn.end(to) {
                    if sock(self, f).state == State::Established {
                        self.tcp_abort(f, if fin { EPIPE } else { ECONNRESET });
                    }
                }
                self.conn_maybe_free(conn);
            }
            Packet::Retransmit { conn, to } => self.tcp_retransmit(conn, usize::from(to)),
        }
    }

    pub(super) fn attempt_live(&self, client: FileId, attempt: u32) -> bool {
        sock_ref(self, client).is_some_and(|s| s.state == State::SynSent && s.attempt == attempt)
    }

    pub(super) fn find_listener(&self, to: SocketAddrV4) -> Option<FileId> {
        let exact = self.net.bound.get(*to.ip(), to.port());
        let any = self.net.bound.get(Ipv4Addr::UNSPECIFIED, to.port());
        [exact, any]
            .into_iter()
            .flatten()
            .find(|&f| sock_ref(self, f).is_some_and(|s| s.state == State::Listen))
    }

    pub(super) fn on_syn(&mut self, client: FileId, attempt: u32) {
        if !self.attempt_live(client, attempt) {
            return;
        }
        // The destination: the connecting socket's peer, set by the `connect` of this attempt.
        let to = self
            .addrs(client)
            .peer
            .expect("a connecting socket has a peer");
        let Some(l) = self.find_listener(to) else {
            self.send(Packet::Refused { client, attempt }, None);
            return;
        };
        let full = {
            let ls = sock_ref(self, l).and_then(|s| s.listen.as_ref());
            ls.is_some_and(|q| q.queue.len() > q.backlog)
        };
        if full {
            // Dropped; the client retransmits after its timeout, doubling each time.
            let syns = sock_ref(self, client).map_or(1, |s| s.syns);
            let rto = self.cfg.syn_rto_ns << (syns - 1).min(16);
            self.schedule(
                self.now_ns + rto,
                Later::Net(Packet::SynRetry { client, attempt }),
            );
            return;
        }
        let client_addr = self
            .addrs(client)
            .local
            .expect("a connecting socket is bound");
        let conn = self.net.conns.insert(Conn::new(l));
        let child = self.files.insert(super::super::File {
            refs: 0,
            nonblock: false,
            watchers: super::super::WaitQueue::default(),
            eof_read: false,
            kind: Kind::Tcp(TcpSock {
                state: State::Established,
                // It shares the listener's port (the listener's entry in the bind table).
                holds_port: true,
                addr_locked: true,
                conn: NonZeroU32::new(conn + 1),
                end: 1,
                ..TcpSock::fresh()
            }),
        });
        *self.addrs_mut(child) = super::Addrs {
            local: Some(to),
            peer: Some(client_addr),
        };
        self.net.conns[conn].set_end(1, Some(child));
        self.net.mem.sockets += 1;
        self.send(
            Packet::SynAck {
                client,
                attempt,
                conn,
            },
            Some((conn, 0)),
        );
    }

    pub(super) fn on_ack(&mut self, conn: u32, listener: FileId, retries: u32) {
        let Some(child) = self.net.conns[conn].end(1) else {
            self.conn_maybe_free(conn);
            return;
        };
        let live = sock_ref(self, listener).is_some_and(|s| s.state == State::Listen);
        let full = sock_ref(self, listener)
            .and_then(|s| s.listen.as_ref())
            .is_some_and(|q| q.queue.len() > q.backlog);
        if !live || (full && retries >= self.cfg.synack_retries) {
            // The listener is gone, or gave up on a handshake it had no room for: the request
            // is dropped and the client, which believes it is connected, is reset.
            let client_alive = self.net.conns[conn].end(0).is_some();
            if client_alive {
                self.send(Packet::Rst { conn, to: 0 }, Some((conn, 0)));
            }
            // Detach the half-open child first, so that its release sends nothing more.
            self.net.conns[conn].set_end(1, None);
            sock(self, child).set_conn(None);
            self.release(child);
            self.conn_maybe_free(conn);
            return;
        }
        if full {
            // No room: the server retransmits its SYN-ACK after a timeout that doubles each
            // time, and the client's ACK comes again.
            let at = self.now_ns + (self.cfg.syn_rto_ns << retries.min(16));
            self.net.conns[conn].packets += 1;
            self.schedule(
                at,
                Later::Net(Packet::Ack {
                    conn,
                    retries: retries + 1,
                }),
            );
            return;
        }
        let q = sock(self, listener).listen.as_mut().expect("listener");
        q.queue.push_back(child);
        self.wake(
            listener,
            Events::IN | Events::PRI | Events::RDNORM | Events::RDBAND,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Conn;
    use crate::bytes::Rings;
    use std::collections::VecDeque;

    /// The two directions share the two inline lines (see [`Conn::buf`]): whatever the order of
    /// writes and reads in either direction, at any size, each direction gives back its own
    /// bytes in order.
    #[test]
    fn directions_keep_their_bytes_whichever_line_they_use() {
        let mut conn = Conn::new(0);
        let mut rings = Rings::default();
        let mut model = [VecDeque::new(), VecDeque::new()];
        let mut x = 7u64;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let mut byte = 0u8;
        for _ in 0..20_000 {
            let i = next(2) as usize;
            if next(2) == 0 {
                let n = [1, 17, 64, 65, 300][next(5) as usize].min(next(100) as usize + 1);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        byte = byte.wrapping_add(1);
                        byte
                    })
                    .collect();
                conn.buf(i, &mut rings).push(&bytes);
                model[i].extend(&bytes);
            } else {
                let n = (next(80) as usize).min(model[i].len());
                let mut got = vec![0; n];
                conn.buf(i, &mut rings).pop_into(&mut got);
                let want: Vec<u8> = model[i].drain(..n).collect();
                assert_eq!(got, want);
            }
            assert_eq!(conn.buf_len(i), model[i].len());
        }
        conn.free_rings(&mut rings);
        assert_eq!(rings.len(), 0);
    }

    /// An echo's reply goes into the line its request was read from.
    #[test]
    fn a_reply_takes_the_line_its_request_left() {
        let mut conn = Conn::new(0);
        let mut rings = Rings::default();
        let mut buf = [0u8; 64];
        for round in 0..4 {
            let to = round % 2;
            conn.buf(to, &mut rings).push(&[round as u8; 64]);
            let line = conn.line(to);
            conn.buf(to, &mut rings).pop_into(&mut buf);
            assert_eq!(buf, [round as u8; 64]);
            conn.buf(1 - to, &mut rings).push(&[9; 64]);
            assert_eq!(conn.line(1 - to), line);
            conn.buf(1 - to, &mut rings).pop_into(&mut buf);
        }
        assert_eq!(rings.len(), 0);
    }
}

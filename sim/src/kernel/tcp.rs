//! TCP over a simulated loopback network (`net/ipv4/tcp*.c`, `af_inet.c`).
//!
//! # Model
//!
//! A connection ([`Conn`]) has two ends (0: the connecting side, 1: the accepted side) and two
//! directions; each direction keeps the bytes in flight and the bytes the receiver has not read.
//! Every packet crosses the network after a latency drawn from the run's seed, but never before
//! an earlier packet of the same direction: bytes and FINs of one connection arrive in order,
//! while different connections interleave differently under different seeds.
//!
//! - **Handshake**: `connect` sends a SYN (`EINPROGRESS`). At the listener, a full accept queue
//!   (more than `backlog` waiting, Linux's rule) drops the SYN and the client retransmits after
//!   1 s, 2 s, 4 s... (`ETIMEDOUT` after `syn_retries`); no listener answers with a reset
//!   (`ECONNREFUSED`). Otherwise a SYN-ACK makes the client writable, and its ACK puts the new
//!   connection on the accept queue and wakes the listener. An ACK that finds the queue full is
//!   retried later, as the server's SYN-ACK retransmission would.
//! - **Flow control**: a direction holds `tcp_window` bytes, in flight plus unread; `write` is
//!   short or `EAGAIN` beyond it. Poll says `OUT` while the free part is at least half the used
//!   part (`sk_stream_is_writeable`); a writer that saw `EAGAIN` is woken (`OUT`) when a read
//!   brings the space back.
//! - **Segments**: a write larger than the MSS travels as several segments; the fault knob
//!   `split_write` fault cuts writes at random points too. Each arriving segment wakes the reader.
//! - **Closing**: `shutdown(SHUT_WR)` and `close` send a FIN after the data (`RDHUP`, then EOF at
//!   the peer). `close` with unread data, or with `SO_LINGER` 0, sends a reset instead; so does
//!   data arriving at a closed socket. A reset gives the peer `ECONNRESET` (or `EPIPE` if it had
//!   already received a FIN), `ERR | HUP`, and ends the connection.
//!
//! Poll bits follow `tcp_poll`: `HUP` when both directions are shut or the socket is closed
//! (so a fresh, unconnected socket polls `OUT | HUP`), `IN | RDHUP` once a FIN arrived or after
//! `SHUT_RD`, `ERR` while an error is pending.
//!
//! # Not modelled
//!
//! Packet loss and retransmission of data, congestion control, Nagle, delayed ACKs, TIME_WAIT
//! (ports are free again at once), urgent data, IPv6, addresses outside 127.0.0.0/8, socket
//! options besides `SO_LINGER` and `SO_ERROR`, window updates taking a round trip (space returns
//! to the writer the instant the reader reads).

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{err, errno::*, Events, SHUT_RDWR, SOCK_CLOEXEC, SOCK_NONBLOCK};
use netpoll::Fd;

use super::unix::{RCV_SHUTDOWN, SEND_SHUTDOWN};
use super::{FileId, Kernel, Kind, Later};
use crate::bytes::ByteQueue;
use crate::rng::Stream;
use crate::slab::Slab;

const EPHEMERAL: (u16, u16) = (32768, 60999);

/// Where a TCP socket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Not connected: new, bound, refused, reset or timed out.
    Closed,
    /// Listening.
    Listen,
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// Connected (either side; half-closes are in `shutdown` and the connection's FIN flags).
    Established,
}

/// The socket layer's view of `connect` (`sock->state`), which decides `EALREADY`/`EISCONN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SockState {
    Unconnected,
    Connecting,
    Connected,
}

#[derive(Debug, Default)]
struct Listen {
    backlog: usize,
    queue: VecDeque<FileId>,
}

/// A TCP socket.
#[derive(Debug)]
pub(crate) struct TcpSock {
    state: State,
    sock_state: SockState,
    /// What `getsockname` reports. It outlives the port: a socket that gives its port back
    /// keeps reporting it (Linux clears `inet_num`, not `inet_sport`).
    local: Option<SocketAddrV4>,
    /// The socket owns its port (`inet_num != 0`): `bind` says `EINVAL`, and `listen` or
    /// `connect` do not bind again.
    holds_port: bool,
    /// `bind` named an address (`SOCK_BINDADDR_LOCK`): it survives a disconnect.
    addr_locked: bool,
    peer: Option<SocketAddrV4>,
    conn: Option<(u32, usize)>,
    err: i32,
    shutdown: u8,
    linger0: bool,
    /// The port was picked by the kernel (`bind` to port 0, or `connect` or `listen` on an
    /// unbound socket), not named by the user (`SOCK_BINDPORT_LOCK`): it is given back when a
    /// disconnect returns the socket to the closed state.
    autobound: bool,
    /// Boxed: few sockets listen, and every socket lives inline in its file.
    listen: Option<Box<Listen>>,
    /// The connect attempt in progress (unique in the kernel), and SYNs sent for it.
    attempt: u64,
    syns: u32,
}

/// One direction of a connection: the bytes flowing *to* one end.
///
/// `buf` holds the bytes the receiver has not read (the first `rx_len`) followed by the bytes
/// still crossing the network, in order. Delivering a segment only moves the boundary: no byte
/// is copied between a `write` and the `read` that takes it.
#[derive(Debug, Default)]
struct Dir {
    buf: ByteQueue,
    rx_len: usize,
    /// The receiving end got the FIN (Linux's `SOCK_DONE`).
    fin: bool,
    /// The sending end's write found no room: wake it (`OUT`) when room returns (Linux's
    /// `SOCK_NOSPACE` on the sending socket; kept here, where the reader that returns the room
    /// looks, so that a read touches the writer's socket only when it must).
    nospace: bool,
    /// When the last packet of this direction arrives: later packets never overtake it.
    last_ns: u64,
}

/// A connection between two sockets.
#[derive(Debug)]
pub(crate) struct Conn {
    end: [Option<FileId>; 2],
    dir: [Dir; 2],
    /// Packets on their way: the connection outlives its sockets until they are delivered.
    packets: u32,
}

/// A packet on the wire, or a retransmission timer.
#[derive(Debug)]
pub(crate) enum Packet {
    Syn {
        client: FileId,
        attempt: u64,
        to: SocketAddrV4,
    },
    SynRetry {
        client: FileId,
        attempt: u64,
        to: SocketAddrV4,
    },
    Refused {
        client: FileId,
        attempt: u64,
    },
    SynAck {
        client: FileId,
        attempt: u64,
        conn: u32,
        listener: FileId,
    },
    Ack {
        conn: u32,
        listener: FileId,
        /// SYN-ACK retransmissions so far (the ACK comes back with each one).
        retries: u32,
    },
    /// `len` bytes of the direction's `buf` arrive (they follow its unread bytes).
    Data {
        conn: u32,
        to: usize,
        len: usize,
    },
    Fin {
        conn: u32,
        to: usize,
    },
    Rst {
        conn: u32,
        to: usize,
    },
}

/// The network: connections, bound ports, listeners.
#[derive(Debug, Default)]
pub(crate) struct Net {
    conns: Slab<Conn>,
    /// Bound (ip, port) pairs and the socket holding each.
    bound: PortTable,
    next_attempt: u64,
    /// Where the next ephemeral port search starts (an offset into the range).
    port_hint: Option<u64>,
}

/// The bind table: for each port, the addresses bound on it and the socket holding each. A flat
/// table indexed by port (a short list a port, up to four inline) instead of an ordered map of
/// (ip, port): a lookup is an index and a scan of the few addresses sharing a port, and "is any
/// address bound on this port" (a wildcard bind's test) is whether the port's list is empty.
/// Nothing iterates over it, so the order inside a port's list is never observed.
///
/// The table is paged (256 ports a page, a page allocated on its first bind): a short run binds
/// a handful of ports and must not pay for all 65,536 (a flat table cost a 10-connection sweep
/// most of its time in allocating and dropping 2.4 MB a seed).
#[derive(Debug, Default)]
struct PortTable {
    pages: Vec<Option<Box<PortPage>>>,
}

const PORTS_PER_PAGE: usize = 256;
type PortPage = [PortSlot; PORTS_PER_PAGE];

/// The addresses bound on one port: inline while there are at most four (the main job puts
/// 100,000 clients on 28,232 ephemeral ports of four addresses), so that binding and unbinding
/// touch only the table, which ephemeral ports walk in order.
#[derive(Debug, Clone)]
enum PortSlot {
    Inline(u8, [(Ipv4Addr, FileId); 4]),
    Heap(Vec<(Ipv4Addr, FileId)>),
}

impl Default for PortSlot {
    fn default() -> Self {
        PortSlot::Inline(0, [(Ipv4Addr::UNSPECIFIED, 0); 4])
    }
}

impl PortSlot {
    fn as_slice(&self) -> &[(Ipv4Addr, FileId)] {
        match self {
            PortSlot::Inline(n, e) => &e[..usize::from(*n)],
            PortSlot::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(Ipv4Addr, FileId)] {
        match self {
            PortSlot::Inline(n, e) => &mut e[..usize::from(*n)],
            PortSlot::Heap(v) => v,
        }
    }

    fn push(&mut self, x: (Ipv4Addr, FileId)) {
        match self {
            PortSlot::Inline(n, e) if usize::from(*n) < e.len() => {
                e[usize::from(*n)] = x;
                *n += 1;
            }
            PortSlot::Inline(n, e) => {
                let mut v = e[..usize::from(*n)].to_vec();
                v.push(x);
                *self = PortSlot::Heap(v);
            }
            PortSlot::Heap(v) => v.push(x),
        }
    }

    /// Removes entry `j` (the last one takes its place).
    fn swap_remove(&mut self, j: usize) {
        match self {
            PortSlot::Inline(n, e) => {
                let last = usize::from(*n) - 1;
                e[j] = e[last];
                *n -= 1;
            }
            PortSlot::Heap(v) => {
                v.swap_remove(j);
            }
        }
    }
}

impl PortTable {
    fn slot(&self, port: u16) -> Option<&PortSlot> {
        let p = usize::from(port);
        let page = self.pages.get(p / PORTS_PER_PAGE)?.as_ref()?;
        Some(&page[p % PORTS_PER_PAGE])
    }

    fn slot_mut(&mut self, port: u16) -> Option<&mut PortSlot> {
        let p = usize::from(port);
        let page = self.pages.get_mut(p / PORTS_PER_PAGE)?.as_mut()?;
        Some(&mut page[p % PORTS_PER_PAGE])
    }

    fn on(&self, port: u16) -> &[(Ipv4Addr, FileId)] {
        self.slot(port).map_or(&[], PortSlot::as_slice)
    }

    /// The socket bound on exactly (ip, port).
    fn get(&self, ip: Ipv4Addr, port: u16) -> Option<FileId> {
        self.on(port).iter().find(|e| e.0 == ip).map(|e| e.1)
    }

    fn contains(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.get(ip, port).is_some()
    }

    /// Whether any address is bound on `port`.
    fn port_used(&self, port: u16) -> bool {
        !self.on(port).is_empty()
    }

    /// Binds (ip, port) to `f`, replacing any previous holder.
    fn insert(&mut self, ip: Ipv4Addr, port: u16, f: FileId) {
        let p = usize::from(port);
        let i = p / PORTS_PER_PAGE;
        if self.pages.len() <= i {
            self.pages.resize_with(i + 1, || None);
        }
        let page = self.pages[i]
            .get_or_insert_with(|| Box::new(std::array::from_fn(|_| PortSlot::default())));
        let v = &mut page[p % PORTS_PER_PAGE];
        match v.as_mut_slice().iter_mut().find(|e| e.0 == ip) {
            Some(e) => e.1 = f,
            None => v.push((ip, f)),
        }
    }

    /// Unbinds (ip, port) if `f` holds it.
    fn remove_if_held(&mut self, ip: Ipv4Addr, port: u16, f: FileId) {
        if let Some(v) = self.slot_mut(port) {
            if let Some(j) = v.as_slice().iter().position(|e| *e == (ip, f)) {
                v.swap_remove(j);
            }
        }
    }
}

impl Kernel {
    /// Whether file `f` is a listening TCP socket.
    pub(crate) fn tcp_is_listener(&self, f: FileId) -> bool {
        matches!(&self.files[f].kind, Kind::Tcp(s) if s.listen.is_some())
    }
}

fn sock(k: &mut Kernel, f: FileId) -> &mut TcpSock {
    match &mut k.files[f].kind {
        Kind::Tcp(s) => s,
        _ => unreachable!("tcp op on a file of another kind"),
    }
}

fn sock_ref(k: &Kernel, f: FileId) -> Option<&TcpSock> {
    match &k.files.get(f)?.kind {
        Kind::Tcp(s) => Some(s),
        _ => None,
    }
}

fn is_loopback(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

impl Kernel {
    pub(crate) fn tcp_socket(&mut self, flags: i32) -> io::Result<Fd> {
        // The flags are or-ed into `SOCK_STREAM` (1): a stray 1 still names a stream socket.
        let nonblock = Kernel::check_flags(flags, SOCK_NONBLOCK | SOCK_CLOEXEC | 1)?;
        let s = TcpSock {
            state: State::Closed,
            sock_state: SockState::Unconnected,
            local: None,
            holds_port: false,
            addr_locked: false,
            peer: None,
            conn: None,
            err: 0,
            shutdown: 0,
            linger0: false,
            autobound: false,
            listen: None,
            attempt: 0,
            syns: 0,
        };
        self.emfile_fault()?;
        Ok(self.new_file(Kind::Tcp(s), nonblock)?.1)
    }

    /// The TCP socket behind `fd`: `ENOTSOCK` for files that are not sockets, `other` for
    /// sockets of another family.
    pub(crate) fn tcp_of(&self, fd: Fd, other: i32) -> io::Result<FileId> {
        let f = self.file_of(fd)?;
        match &self.files[f].kind {
            Kind::Tcp(_) => Ok(f),
            Kind::Unix(_) => Err(err(other)),
            _ => Err(err(ENOTSOCK)),
        }
    }

    fn port_free(&self, ip: Ipv4Addr, port: u16) -> bool {
        if self.net.bound.contains(ip, port) || self.net.bound.contains(Ipv4Addr::UNSPECIFIED, port)
        {
            return false;
        }
        if ip.is_unspecified() {
            // A wildcard bind conflicts with any address on the port.
            return !self.net.bound.port_used(port);
        }
        true
    }

    /// An ephemeral port free on `ip`: the search starts where the last one ended (from a
    /// seeded first offset), so allocation is O(1) while the range is not full.
    fn ephemeral_port(&mut self, ip: Ipv4Addr) -> io::Result<u16> {
        let (lo, hi) = EPHEMERAL;
        let span = u64::from(hi - lo) + 1;
        let start = match self.net.port_hint {
            Some(h) => h,
            None => self.rng.range(Stream::Ports, 0, span - 1),
        };
        for i in 0..span {
            let off = (start + i) % span;
            let port = lo + off as u16;
            if self.port_free(ip, port) {
                self.net.port_hint = Some((off + 1) % span);
                return Ok(port);
            }
        }
        Err(err(EADDRNOTAVAIL))
    }

    fn bind_to(&mut self, f: FileId, addr: SocketAddrV4) -> io::Result<SocketAddrV4> {
        let ip = *addr.ip();
        if !is_loopback(ip) {
            return Err(err(EADDRNOTAVAIL));
        }
        let port = match addr.port() {
            0 => self.ephemeral_port(ip)?,
            p if self.port_free(ip, p) => p,
            _ => return Err(err(EADDRINUSE)),
        };
        let local = SocketAddrV4::new(ip, port);
        self.net.bound.insert(ip, port, f);
        let s = sock(self, f);
        s.local = Some(local);
        s.holds_port = true;
        s.autobound = addr.port() == 0;
        Ok(local)
    }

    fn unbind(&mut self, f: FileId, s: &TcpSock) {
        if let (true, Some(a)) = (s.holds_port, s.local) {
            self.net.bound.remove_if_held(*a.ip(), a.port(), f);
        }
    }

    pub(crate) fn bind(&mut self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        let f = self.tcp_of(fd, EINVAL)?;
        if sock(self, f).holds_port {
            return Err(err(EINVAL));
        }
        self.bind_to(f, addr)?;
        sock(self, f).addr_locked = !addr.ip().is_unspecified();
        Ok(())
    }

    pub(crate) fn listen(&mut self, fd: Fd, backlog: i32) -> io::Result<()> {
        let f = self.tcp_of(fd, EINVAL)?;
        let somax = self.cfg.somaxconn;
        let backlog = if backlog < 0 || backlog as usize > somax {
            somax
        } else {
            backlog as usize
        };
        let s = sock(self, f);
        match s.state {
            State::Listen => {
                s.listen
                    .as_mut()
                    .expect("listening socket has a queue")
                    .backlog = backlog;
                return Ok(());
            }
            State::Closed if s.sock_state == SockState::Unconnected => {}
            _ => return Err(err(EINVAL)),
        }
        if !s.holds_port {
            let ip = match s.local {
                Some(a) if s.addr_locked => *a.ip(),
                _ => Ipv4Addr::UNSPECIFIED,
            };
            self.bind_to(f, SocketAddrV4::new(ip, 0))?;
        }
        let s = sock(self, f);
        s.state = State::Listen;
        s.listen = Some(Box::new(Listen {
            backlog,
            queue: VecDeque::new(),
        }));
        Ok(())
    }

    fn latency(&mut self) -> u64 {
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
    fn send(&mut self, pkt: Packet, order: Option<(u32, usize)>) {
        let mut at = self.now_ns + self.latency();
        if let Some((c, d)) = order {
            let conn = &mut self.net.conns[c];
            at = at.max(conn.dir[d].last_ns);
            conn.dir[d].last_ns = at;
            conn.packets += 1;
        }
        self.schedule(at, Later::Net(pkt));
    }

    pub(crate) fn connect(&mut self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        let f = self.tcp_of(fd, EINVAL)?;
        let nonblock = self.files[f].nonblock;
        let s = sock(self, f);
        match s.sock_state {
            SockState::Connected => return Err(err(EISCONN)),
            SockState::Connecting => {
                return match s.state {
                    State::SynSent => Err(err(EALREADY)),
                    State::Established => {
                        s.sock_state = SockState::Connected;
                        Ok(())
                    }
                    _ => {
                        let e = self.tcp_disconnect(f);
                        Err(err(if e != 0 { e } else { ECONNABORTED }))
                    }
                };
            }
            SockState::Unconnected if s.state != State::Closed => return Err(err(EISCONN)),
            SockState::Unconnected => {}
        }
        // `0.0.0.0` means this host, as on Linux.
        let addr = if addr.ip().is_unspecified() {
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port())
        } else {
            addr
        };
        if !addr.ip().is_loopback() {
            return Err(err(ENETUNREACH));
        }
        if !s.holds_port {
            let ip = match s.local {
                Some(a) if s.addr_locked => *a.ip(),
                _ => Ipv4Addr::LOCALHOST,
            };
            self.bind_to(f, SocketAddrV4::new(ip, 0))?;
        }
        self.net.next_attempt += 1;
        let attempt = self.net.next_attempt;
        let s = sock(self, f);
        s.state = State::SynSent;
        s.sock_state = SockState::Connecting;
        s.attempt = attempt;
        s.syns = 1;
        s.peer = Some(addr);
        s.err = 0;
        s.shutdown = 0;
        self.send(
            Packet::Syn {
                client: f,
                attempt,
                to: addr,
            },
            None,
        );
        if nonblock {
            return Err(err(EINPROGRESS));
        }
        while sock(self, f).state == State::SynSent {
            self.block("connect", fd)?;
        }
        let s = sock(self, f);
        if s.state == State::Established {
            s.sock_state = SockState::Connected;
            Ok(())
        } else {
            let e = self.tcp_disconnect(f);
            Err(err(if e != 0 { e } else { ECONNABORTED }))
        }
    }

    /// A failed connect is reported: the socket becomes a fresh, unconnected one again (Linux's
    /// `tcp_disconnect`), giving back an automatically chosen port. Returns the pending error.
    fn tcp_disconnect(&mut self, f: FileId) -> i32 {
        let s = sock(self, f);
        s.sock_state = SockState::Unconnected;
        s.state = State::Closed;
        s.shutdown = 0;
        s.peer = None;
        s.conn = None;
        let e = std::mem::take(&mut s.err);
        self.give_back_port(f);
        e
    }

    /// Unbinds `f` if its port was chosen automatically.
    /// `tcp_set_state(TCP_CLOSE)` after a disconnect: a port the kernel picked goes back
    /// (`inet_put_port`); `getsockname` keeps reporting it, with the address cleared unless
    /// `bind` named one (`inet_reset_saddr`).
    fn give_back_port(&mut self, f: FileId) {
        let s = sock(self, f);
        if !(s.autobound && s.holds_port) {
            return;
        }
        s.holds_port = false;
        let Some(a) = s.local else { return };
        if !s.addr_locked {
            s.local = Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, a.port()));
        }
        self.net.bound.remove_if_held(*a.ip(), a.port(), f);
    }

    pub(crate) fn accept4(&mut self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> {
        // Linux looks the descriptor up (EBADF), then checks the flags (EINVAL), then the kind of
        // file (ENOTSOCK).
        self.file_of(fd)?;
        let nonblock = Kernel::check_flags(flags, SOCK_NONBLOCK | SOCK_CLOEXEC)?;
        let f = self.tcp_of(fd, EINVAL)?;
        // Linux allocates the new descriptor first (`get_unused_fd_flags` before `do_accept`):
        // `EMFILE` comes before `EAGAIN` or sleeping, and consumes nothing from the queue.
        self.emfile_fault()?;
        self.fd_room(1)?;
        loop {
            let s = sock(self, f);
            let Some(l) = s.listen.as_mut() else {
                return Err(err(EINVAL));
            };
            if l.queue.is_empty() {
                if self.files[f].nonblock {
                    return Err(err(EAGAIN));
                }
                self.block("accept4", fd)?;
                continue;
            }
            self.fd_room(1)?;
            let child = sock(self, f)
                .listen
                .as_mut()
                .and_then(|l| l.queue.pop_front())
                .expect("queue checked non-empty");
            if self.fault(self.cfg.faults.accept_abort) {
                // The connection was reset while it waited in the queue.
                self.faults.accept_aborts += 1;
                sock(self, child).linger0 = true;
                self.release(child);
                return Err(err(ECONNABORTED));
            }
            self.files[child].nonblock = nonblock;
            let newfd = self.install(child)?;
            let peer = sock(self, child)
                .peer
                .expect("an accepted connection has a peer");
            sock(self, child).sock_state = SockState::Connected;
            return Ok((newfd, peer));
        }
    }

    pub(crate) fn local_addr(&mut self, fd: Fd) -> io::Result<SocketAddrV4> {
        let f = self.tcp_of(fd, EOPNOTSUPP)?;
        Ok(sock(self, f)
            .local
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))
    }

    pub(crate) fn peer_addr(&mut self, fd: Fd) -> io::Result<SocketAddrV4> {
        let f = self.tcp_of(fd, EOPNOTSUPP)?;
        let s = sock(self, f);
        match (s.state, s.peer) {
            (State::Established, Some(p)) => Ok(p),
            _ => Err(err(ENOTCONN)),
        }
    }

    /// Bytes waiting to be read on `f`.
    pub(crate) fn tcp_readable(&self, f: FileId) -> usize {
        match sock_ref(self, f) {
            Some(s) if s.state != State::SynSent => {
                s.conn.map_or(0, |(c, e)| self.net.conns[c].dir[e].rx_len)
            }
            _ => 0,
        }
    }

    pub(crate) fn tcp_take_error(&mut self, f: FileId) -> i32 {
        std::mem::take(&mut sock(self, f).err)
    }

    pub(crate) fn tcp_set_linger(&mut self, f: FileId, linger: Option<u32>) {
        sock(self, f).linger0 = linger == Some(0);
    }

    pub(crate) fn tcp_poll(&self, s: &TcpSock) -> Events {
        if s.state == State::Listen {
            let ready = s.listen.as_ref().is_some_and(|l| !l.queue.is_empty());
            return if ready {
                Events::IN | Events::RDNORM
            } else {
                Events::NONE
            };
        }
        let mut m = Events::NONE;
        if s.shutdown == RCV_SHUTDOWN | SEND_SHUTDOWN || s.state == State::Closed {
            m |= Events::HUP;
        }
        if s.shutdown & RCV_SHUTDOWN != 0 {
            m |= Events::IN | Events::RDNORM | Events::RDHUP;
        }
        if s.state != State::SynSent {
            if let Some((c, e)) = s.conn {
                if self.net.conns[c].dir[e].rx_len > 0 {
                    m |= Events::IN | Events::RDNORM;
                }
            }
            if s.shutdown & SEND_SHUTDOWN != 0 || self.tcp_writable(s) {
                m |= Events::OUT | Events::WRNORM;
            }
        }
        if s.err != 0 {
            m |= Events::ERR;
        }
        m
    }

    fn tcp_room(&self, s: &TcpSock) -> (usize, usize) {
        let Some((c, e)) = s.conn else {
            return (self.cfg.tcp_window, 0);
        };
        let d = &self.net.conns[c].dir[1 - e];
        let used = d.buf.len();
        (self.cfg.tcp_window.saturating_sub(used), used)
    }

    fn tcp_writable(&self, s: &TcpSock) -> bool {
        let (free, used) = self.tcp_room(s);
        free > 0 && free >= used / 2
    }

    pub(crate) fn tcp_read(&mut self, f: FileId, buf: &mut [u8]) -> io::Result<usize> {
        // `sock_read_iter` answers an empty read before the protocol is asked.
        if buf.is_empty() {
            return Ok(0);
        }
        let s = sock(self, f);
        if s.state == State::Listen {
            return Err(err(ENOTCONN));
        }
        let conn = s.conn;
        if let Some((c, e)) = conn {
            if s.state != State::SynSent {
                let d = &mut self.net.conns[c].dir[e];
                if d.rx_len > 0 {
                    let n = d.rx_len.min(buf.len());
                    d.buf.pop_into(&mut buf[..n]);
                    d.rx_len -= n;
                    self.tcp_space_returned(c, 1 - e);
                    return Ok(n);
                }
                if d.fin {
                    return Ok(0);
                }
            }
        }
        let s = sock(self, f);
        if s.err != 0 {
            return Err(err(std::mem::take(&mut s.err)));
        }
        if s.shutdown & RCV_SHUTDOWN != 0 {
            return Ok(0);
        }
        if s.state == State::Closed {
            return Err(err(ENOTCONN));
        }
        Err(err(EAGAIN))
    }

    /// The reader at the far end of direction `1 - writer` freed room: wake the writer if it ran
    /// out of room earlier and is writable again.
    fn tcp_space_returned(&mut self, c: u32, writer: usize) {
        let conn = &self.net.conns[c];
        let Some(w) = conn.end[writer] else {
            return;
        };
        if !conn.dir[1 - writer].nospace {
            return;
        }
        let s = sock_ref(self, w).expect("connection end is a tcp socket");
        if self.tcp_writable(s) {
            self.net.conns[c].dir[1 - writer].nospace = false;
            self.wake(w, Events::OUT | Events::WRNORM | Events::WRBAND);
        }
    }

    pub(crate) fn tcp_write(&mut self, f: FileId, buf: &[u8]) -> io::Result<usize> {
        let s = sock(self, f);
        match s.state {
            State::Established => {}
            State::SynSent => {
                if s.err != 0 {
                    return Err(err(std::mem::take(&mut s.err)));
                }
                return Err(err(EAGAIN));
            }
            State::Closed | State::Listen => {
                let e = std::mem::take(&mut s.err);
                return Err(err(if e != 0 { e } else { EPIPE }));
            }
        }
        if s.err != 0 {
            return Err(err(std::mem::take(&mut s.err)));
        }
        if s.shutdown & SEND_SHUTDOWN != 0 {
            return Err(err(EPIPE));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let (c, e) = s.conn.expect("an established socket has a connection");
        let (free, _) = self.tcp_room(sock_ref(self, f).expect("tcp"));
        if free == 0 {
            self.net.conns[c].dir[1 - e].nospace = true;
            return Err(err(EAGAIN));
        }
        let n = free.min(buf.len());
        if n < buf.len() {
            // A short write ran out of room too (`tcp_sendmsg` sets `SOCK_NOSPACE`): the writer
            // gets an `OUT` edge when room returns, as after `EAGAIN`.
            self.net.conns[c].dir[1 - e].nospace = true;
        }
        self.net.conns[c].dir[1 - e].buf.push(&buf[..n]);
        let mss = self.cfg.tcp_mss.max(1);
        let mut off = 0;
        while off < n {
            let mut k = (n - off).min(mss);
            if k > 1 && self.fault(self.cfg.faults.split_write) {
                k = self.rng.range(Stream::Faults, 1, k as u64 - 1) as usize;
                self.faults.split_writes += 1;
            }
            self.send(
                Packet::Data {
                    conn: c,
                    to: 1 - e,
                    len: k,
                },
                Some((c, 1 - e)),
            );
            off += k;
        }
        Ok(n)
    }

    pub(crate) fn tcp_shutdown(&mut self, f: FileId, how: i32) -> io::Result<()> {
        if !(0..=SHUT_RDWR).contains(&how) {
            return Err(err(EINVAL));
        }
        let mode = (how + 1) as u8;
        let s = sock(self, f);
        if s.sock_state == SockState::Connecting && s.state == State::Established {
            // `inet_shutdown` settles a finished non-blocking connect: `connect` now says EISCONN.
            s.sock_state = SockState::Connected;
        }
        match s.state {
            State::Closed => {
                // Linux records the shutdown anyway, and reports ENOTCONN.
                s.shutdown |= mode;
                self.wake(f, Events::NONE);
                return Err(err(ENOTCONN));
            }
            State::Listen if mode & RCV_SHUTDOWN == 0 => return Ok(()),
            State::Listen => {
                // Stops listening: queued connections are reset, the socket is closed.
                let l = s.listen.take().expect("a listener has a queue");
                s.state = State::Closed;
                // `tcp_disconnect` forgets earlier shutdowns.
                s.shutdown = 0;
                for child in l.queue {
                    sock(self, child).linger0 = true;
                    self.release(child);
                }
                self.give_back_port(f);
                self.wake(f, Events::NONE);
                return Ok(());
            }
            State::SynSent => {
                // The connect is aborted (`tcp_disconnect`): ECONNRESET, and a fresh socket.
                s.state = State::Closed;
                s.sock_state = SockState::Unconnected;
                s.shutdown = 0;
                s.err = ECONNRESET;
                s.attempt = 0;
                self.give_back_port(f);
                self.wake(f, Events::NONE);
                return Ok(());
            }
            State::Established => {}
        }
        let newly_send = mode & SEND_SHUTDOWN != 0 && s.shutdown & SEND_SHUTDOWN == 0;
        s.shutdown |= mode;
        let conn = s.conn;
        if newly_send {
            if let Some((c, e)) = conn {
                self.send(Packet::Fin { conn: c, to: 1 - e }, Some((c, 1 - e)));
            }
        }
        self.wake(f, Events::NONE);
        Ok(())
    }

    /// The socket's file is gone (or a queued child is dropped with its listener).
    pub(crate) fn tcp_release(&mut self, f: FileId, s: TcpSock) {
        self.unbind(f, &s);
        if let Some(l) = s.listen {
            // Connections nobody accepted are reset (`inet_csk_listen_stop`).
            for child in l.queue {
                sock(self, child).linger0 = true;
                self.release(child);
            }
        }
        let Some((c, e)) = s.conn else { return };
        if s.state == State::Established {
            let conn = &self.net.conns[c];
            let unread = conn.dir[e].rx_len > 0;
            let peer_alive = conn.end[1 - e].is_some();
            if peer_alive && (s.linger0 || unread) {
                self.send(Packet::Rst { conn: c, to: 1 - e }, Some((c, 1 - e)));
            } else if peer_alive && s.shutdown & SEND_SHUTDOWN == 0 {
                self.send(Packet::Fin { conn: c, to: 1 - e }, Some((c, 1 - e)));
            }
        }
        let conn = &mut self.net.conns[c];
        conn.end[e] = None;
        // Unread bytes go; bytes still in flight stay until their segments arrive and are
        // discarded.
        let d = &mut conn.dir[e];
        d.buf.discard_front(d.rx_len);
        d.rx_len = 0;
        self.conn_maybe_free(c);
    }

    /// Frees the connection once both sockets are gone and no packet refers to it. Callers may
    /// call it after a release that already freed it.
    fn conn_maybe_free(&mut self, c: u32) {
        let Some(conn) = self.net.conns.get(c) else {
            return;
        };
        if conn.end == [None, None] && conn.packets == 0 {
            self.net.conns.remove(c);
        }
    }

    /// Ends the connection at `f` because of a reset or a refused/timed-out connect.
    fn tcp_abort(&mut self, f: FileId, errno: i32) {
        let s = sock(self, f);
        s.state = State::Closed;
        s.err = errno;
        s.shutdown = RCV_SHUTDOWN | SEND_SHUTDOWN;
        self.wake(f, Events::NONE);
    }

    /// A packet or timer arrives.
    pub(crate) fn deliver(&mut self, pkt: Packet) {
        match pkt {
            Packet::Syn {
                client,
                attempt,
                to,
            } => self.on_syn(client, attempt, to),
            Packet::SynRetry {
                client,
                attempt,
                to,
            } => {
                if !self.attempt_live(client, attempt) {
                    return;
                }
                let s = sock(self, client);
                s.syns += 1;
                if s.syns > self.cfg.syn_retries + 1 {
                    self.tcp_abort(client, ETIMEDOUT);
                    return;
                }
                self.send(
                    Packet::Syn {
                        client,
                        attempt,
                        to,
                    },
                    None,
                );
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
                listener,
            } => {
                self.net.conns[conn].packets -= 1;
                if self.attempt_live(client, attempt) {
                    let s = sock(self, client);
                    s.state = State::Established;
                    s.conn = Some((conn, 0));
                    self.net.conns[conn].end[0] = Some(client);
                    self.wake(client, Events::NONE);
                    self.send(
                        Packet::Ack {
                            conn,
                            listener,
                            retries: 0,
                        },
                        Some((conn, 1)),
                    );
                } else {
                    // The client went away: the half-open child is dropped.
                    if let Some(child) = self.net.conns[conn].end[1] {
                        self.release(child);
                    }
                    self.conn_maybe_free(conn);
                }
            }
            Packet::Ack {
                conn,
                listener,
                retries,
            } => {
                self.net.conns[conn].packets -= 1;
                self.on_ack(conn, listener, retries);
            }
            Packet::Data { conn, to, len } => {
                let cn = &mut self.net.conns[conn];
                cn.packets -= 1;
                let receiver = cn.end[to];
                let sender_alive = cn.end[1 - to].is_some();
                let established =
                    receiver.is_some_and(|f| sock(self, f).state == State::Established);
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
                    Some(f) if self.rejects_data(f, conn, to) => {
                        // RFC 1122: data after our FIN and SHUT_RD is answered with a reset.
                        self.tcp_abort(f, ECONNRESET);
                        false
                    }
                    Some(f) => {
                        let d = &mut self.net.conns[conn].dir[to];
                        let was_empty = d.rx_len == 0;
                        d.rx_len += len;
                        if self.edge_wakes(was_empty) {
                            let key = Events::IN | Events::PRI | Events::RDNORM | Events::RDBAND;
                            self.wake(f, key);
                        }
                        true
                    }
                    // Data for a closed socket: a reset answers it.
                    None => false,
                };
                if !delivered {
                    let d = &mut self.net.conns[conn].dir[to];
                    d.buf.remove(d.rx_len, len);
                    if sender_alive {
                        self.send(Packet::Rst { conn, to: 1 - to }, Some((conn, 1 - to)));
                    }
                }
                self.conn_maybe_free(conn);
            }
            Packet::Fin { conn, to } => {
                let cn = &mut self.net.conns[conn];
                cn.packets -= 1;
                if let Some(f) = cn.end[to] {
                    cn.dir[to].fin = true;
                    sock(self, f).shutdown |= RCV_SHUTDOWN;
                    self.wake(f, Events::NONE);
                }
                self.conn_maybe_free(conn);
            }
            Packet::Rst { conn, to } => {
                let cn = &mut self.net.conns[conn];
                cn.packets -= 1;
                let fin = cn.dir[to].fin;
                if let Some(f) = cn.end[to] {
                    if sock(self, f).state == State::Established {
                        self.tcp_abort(f, if fin { EPIPE } else { ECONNRESET });
                    }
                }
                self.conn_maybe_free(conn);
            }
        }
    }

    /// A socket that sent its FIN and shut its receiving side, and has not had the peer's FIN
    /// (`FIN_WAIT1/2` with `RCV_SHUTDOWN`), resets a connection whose data still arrives.
    fn rejects_data(&self, f: FileId, conn: u32, to: usize) -> bool {
        let s = sock_ref(self, f).expect("connection end is a tcp socket");
        s.state == State::Established
            && s.shutdown == RCV_SHUTDOWN | SEND_SHUTDOWN
            && !self.net.conns[conn].dir[to].fin
    }

    fn attempt_live(&self, client: FileId, attempt: u64) -> bool {
        sock_ref(self, client).is_some_and(|s| s.state == State::SynSent && s.attempt == attempt)
    }

    fn find_listener(&self, to: SocketAddrV4) -> Option<FileId> {
        let exact = self.net.bound.get(*to.ip(), to.port());
        let any = self.net.bound.get(Ipv4Addr::UNSPECIFIED, to.port());
        [exact, any]
            .into_iter()
            .flatten()
            .find(|&f| sock_ref(self, f).is_some_and(|s| s.state == State::Listen))
    }

    fn on_syn(&mut self, client: FileId, attempt: u64, to: SocketAddrV4) {
        if !self.attempt_live(client, attempt) {
            return;
        }
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
                Later::Net(Packet::SynRetry {
                    client,
                    attempt,
                    to,
                }),
            );
            return;
        }
        let client_addr = sock_ref(self, client)
            .and_then(|s| s.local)
            .expect("a connecting socket is bound");
        let conn = self.net.conns.insert(Conn {
            end: [None, None],
            dir: [Dir::default(), Dir::default()],
            packets: 0,
        });
        let child = self.files.insert(super::File {
            refs: 0,
            nonblock: false,
            watchers: super::WaitQueue::default(),
            eof_read: false,
            kind: Kind::Tcp(TcpSock {
                state: State::Established,
                sock_state: SockState::Unconnected,
                local: Some(to),
                // It shares the listener's port (the listener's entry in the bind table).
                holds_port: true,
                addr_locked: true,
                peer: Some(client_addr),
                conn: Some((conn, 1)),
                err: 0,
                shutdown: 0,
                linger0: false,
                autobound: false,
                listen: None,
                attempt: 0,
                syns: 0,
            }),
        });
        self.net.conns[conn].end[1] = Some(child);
        self.send(
            Packet::SynAck {
                client,
                attempt,
                conn,
                listener: l,
            },
            Some((conn, 0)),
        );
    }

    fn on_ack(&mut self, conn: u32, listener: FileId, retries: u32) {
        let Some(child) = self.net.conns[conn].end[1] else {
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
            let client_alive = self.net.conns[conn].end[0].is_some();
            if client_alive {
                self.send(Packet::Rst { conn, to: 0 }, Some((conn, 0)));
            }
            // Detach the half-open child first, so that its release sends nothing more.
            self.net.conns[conn].end[1] = None;
            sock(self, child).conn = None;
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
                    listener,
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

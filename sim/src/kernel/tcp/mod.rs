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
//!   (`ECONNREFUSED`), pending before `connect` returns as on Linux's loopback (a listener that
//!   closes while the SYN is in flight resets it on arrival). Otherwise a SYN-ACK makes the
//!   client writable, and its ACK puts the new
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
//! - **Memory**: every queued byte is charged to a machine-wide account with Linux's three
//!   `tcp_mem` thresholds ([`mem`]): past them a writer's send buffer is moderated (short
//!   writes, `EAGAIN`, no `OUT` until its queue drains) and arriving segments are dropped and
//!   retransmitted 200 ms later.
//!
//! Poll bits follow `tcp_poll`: `HUP` when both directions are shut or the socket is closed
//! (so a fresh, unconnected socket polls `OUT | HUP`), `IN | RDHUP` once a FIN arrived or after
//! `SHUT_RD`, `ERR` while an error is pending.
//!
//! # Not modelled
//!
//! Packet loss and retransmission of data (except for want of memory), congestion control, Nagle, delayed ACKs, TIME_WAIT
//! (ports are free again at once), urgent data, IPv6, addresses outside 127.0.0.0/8, socket
//! options besides `SO_LINGER` and `SO_ERROR`, window updates taking a round trip (space returns
//! to the writer the instant the reader reads).

mod mem;
mod net;
mod ports;

pub use mem::TcpMemory;
pub(crate) use net::{Net, Packet};

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;

use netpoll::sys::{err, errno::*, Events, SHUT_RDWR, SOCK_CLOEXEC, SOCK_NONBLOCK};
use netpoll::Fd;

use super::unix::{RCV_SHUTDOWN, SEND_SHUTDOWN};
use super::{FileId, Kernel, Kind};
use crate::rng::Stream;

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

/// A TCP socket. It lives inline in its open file, and the two together fit one cache line:
/// the addresses, which only the calls that bind, connect, accept or name a socket read, are in
/// [`Net::addrs`], a table by file id.
#[derive(Debug)]
pub(crate) struct TcpSock {
    state: State,
    sock_state: SockState,
    /// The socket owns its port (`inet_num != 0`): `bind` says `EINVAL`, and `listen` or
    /// `connect` do not bind again.
    holds_port: bool,
    /// `bind` named an address (`SOCK_BINDADDR_LOCK`): it survives a disconnect.
    addr_locked: bool,
    /// The connection, as its id plus one (see [`TcpSock::conn`]), and which end of it this
    /// socket is.
    conn: Option<NonZeroU32>,
    end: u8,
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
    attempt: u32,
    syns: u32,
    /// The send buffer as moderated under memory pressure (`sk_stream_moderate_sndbuf`): the
    /// bytes this socket may have in flight; 0 while not moderated (the window alone limits).
    sndbuf: u32,
}

const _: () = assert!(std::mem::size_of::<TcpSock>() == 40);

/// A socket's addresses (see [`Net::addrs`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Addrs {
    /// What `getsockname` reports. It outlives the port: a socket that gives its port back
    /// keeps reporting it (Linux clears `inet_num`, not `inet_sport`).
    local: Option<SocketAddrV4>,
    peer: Option<SocketAddrV4>,
}

impl TcpSock {
    /// A new socket, as `socket()` makes it: closed, unbound, unconnected.
    fn fresh() -> TcpSock {
        TcpSock {
            state: State::Closed,
            sock_state: SockState::Unconnected,
            holds_port: false,
            addr_locked: false,
            conn: None,
            end: 0,
            err: 0,
            shutdown: 0,
            linger0: false,
            autobound: false,
            listen: None,
            attempt: 0,
            syns: 0,
            sndbuf: 0,
        }
    }

    /// The connection and this socket's end of it (0: the connecting side, 1: the accepted
    /// side).
    #[inline]
    fn conn(&self) -> Option<(u32, usize)> {
        self.conn.map(|c| (c.get() - 1, usize::from(self.end)))
    }

    fn set_conn(&mut self, conn: Option<(u32, usize)>) {
        self.conn =
            conn.map(|(c, _)| NonZeroU32::new(c + 1).expect("connection ids are below u32::MAX"));
        self.end = conn.map_or(0, |(_, e)| e as u8);
    }
}

impl Kernel {
    /// The addresses of socket `f`.
    fn addrs(&self, f: FileId) -> Addrs {
        self.net.addrs.get(f as usize).copied().unwrap_or_default()
    }

    /// The addresses of socket `f`, to change.
    fn addrs_mut(&mut self, f: FileId) -> &mut Addrs {
        let i = f as usize;
        if self.net.addrs.len() <= i {
            self.net.addrs.resize(i + 1, Addrs::default());
        }
        &mut self.net.addrs[i]
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
        let s = TcpSock::fresh();
        self.descriptor_fault(true)?;
        // `inet_create` cannot allocate the sock (`sk_alloc`): ENOBUFS.
        if self.rng.chance(Stream::Errno, self.cfg.faults.enobufs) {
            self.faults.enobufs += 1;
            return Err(err(ENOBUFS));
        }
        let (f, fd) = self.new_file(Kind::Tcp(s), nonblock)?;
        // The id may be a closed socket's: its addresses go.
        *self.addrs_mut(f) = Addrs::default();
        self.net.mem.sockets += 1;
        Ok(fd)
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
        self.addrs_mut(f).local = Some(local);
        let s = sock(self, f);
        s.holds_port = true;
        s.autobound = addr.port() == 0;
        Ok(local)
    }

    fn unbind(&mut self, f: FileId, s: &TcpSock) {
        if let (true, Some(a)) = (s.holds_port, self.addrs(f).local) {
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
            let locked = s.addr_locked;
            let ip = match self.addrs(f).local {
                Some(a) if locked => *a.ip(),
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
            let locked = s.addr_locked;
            let ip = match self.addrs(f).local {
                Some(a) if locked => *a.ip(),
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
        s.err = 0;
        s.shutdown = 0;
        self.addrs_mut(f).peer = Some(addr);
        if self.find_listener(addr).is_none() {
            // Loopback delivers in the caller's context on Linux: the SYN meets the reset before
            // `connect` returns, so `ECONNREFUSED` is pending at once (a non-blocking connect
            // still says `EINPROGRESS`). LINUX_FACTS.md section 4.
            self.give_back_port(f);
            self.tcp_abort(f, ECONNREFUSED);
        } else {
            self.send(Packet::Syn { client: f, attempt }, None);
        }
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
        s.set_conn(None);
        let e = std::mem::take(&mut s.err);
        self.addrs_mut(f).peer = None;
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
        let locked = s.addr_locked;
        let addrs = self.addrs_mut(f);
        let Some(a) = addrs.local else { return };
        if !locked {
            addrs.local = Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, a.port()));
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
        // `EMFILE` comes before `EAGAIN` or sleeping, and consumes nothing from the queue; so
        // do `ENFILE` and `ENOMEM` from making the new socket's file (`sock_alloc_file`).
        self.descriptor_fault(true)?;
        self.enomem_file_fault()?;
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
            let peer = self
                .addrs(child)
                .peer
                .expect("an accepted connection has a peer");
            sock(self, child).sock_state = SockState::Connected;
            return Ok((newfd, peer));
        }
    }

    pub(crate) fn local_addr(&mut self, fd: Fd) -> io::Result<SocketAddrV4> {
        let f = self.tcp_of(fd, EOPNOTSUPP)?;
        Ok(self
            .addrs(f)
            .local
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))
    }

    pub(crate) fn peer_addr(&mut self, fd: Fd) -> io::Result<SocketAddrV4> {
        let f = self.tcp_of(fd, EOPNOTSUPP)?;
        match (sock(self, f).state, self.addrs(f).peer) {
            (State::Established, Some(p)) => Ok(p),
            _ => Err(err(ENOTCONN)),
        }
    }

    /// Bytes waiting to be read on `f`.
    pub(crate) fn tcp_readable(&self, f: FileId) -> usize {
        match sock_ref(self, f) {
            Some(s) if s.state != State::SynSent => s
                .conn()
                .map_or(0, |(c, e)| self.net.conns[c].dir[e].rx_len as usize),
            _ => 0,
        }
    }

    /// `FIONREAD` (`SIOCINQ`): `EINVAL` on a listener, else the bytes waiting.
    pub(crate) fn tcp_inq(&self, f: FileId) -> io::Result<usize> {
        match sock_ref(self, f) {
            Some(s) if s.state == State::Listen => Err(err(EINVAL)),
            _ => Ok(self.tcp_readable(f)),
        }
    }

    pub(crate) fn tcp_take_error(&mut self, f: FileId) -> i32 {
        std::mem::take(&mut sock(self, f).err)
    }

    pub(crate) fn tcp_set_linger(&mut self, f: FileId, linger: Option<u32>) {
        sock(self, f).linger0 = linger == Some(0);
    }

    /// Inline: an epoll report polls a socket for every event it reports.
    #[inline]
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
            if let Some((c, e)) = s.conn() {
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

    /// Room to write in the window, and the bytes it holds. (A moderated send buffer gates
    /// each segment in [`Kernel::tcp_mem_grant`], as `sk_stream_memory_free` gates each new
    /// buffer in `tcp_sendmsg`, not the bytes.)
    fn tcp_room(&self, s: &TcpSock) -> (usize, usize) {
        let Some((c, e)) = s.conn() else {
            return (self.cfg.tcp_window, 0);
        };
        let used = self.net.conns[c].buf_len(1 - e);
        (self.cfg.tcp_window.saturating_sub(used), used)
    }

    /// The memory figures of the socket at end `e` of connection `c`: its bytes in flight and
    /// its unread ones.
    fn tcp_usage(&self, c: u32, e: usize) -> mem::Usage {
        let cn = &self.net.conns[c];
        let out = &cn.dir[1 - e];
        mem::Usage {
            wmem: (cn.buf_len(1 - e) - out.rx_len as usize) as u64,
            rmem: u64::from(cn.dir[e].rx_len),
        }
    }

    /// How many of `want` bytes the socket `f` (end `e` of `c`) may queue, segment by segment,
    /// under the memory account; charges them (see [`mem`]).
    ///
    /// Inline up to the path every default run takes (a socket whose buffer was never
    /// moderated, memory below `low`: the whole charge granted); the rest is
    /// [`Kernel::tcp_mem_grant_judged`].
    #[inline]
    fn tcp_mem_grant(&mut self, f: FileId, c: u32, e: usize, want: usize) -> usize {
        let lim = mem::Limits::of(self.cfg.tcp_mem);
        if sock(self, f).sndbuf == 0 && self.net.mem.free_below_low(want as u64, &lim) {
            self.net.mem.charge(want as u64);
            return want;
        }
        self.tcp_mem_grant_judged(f, c, e, want)
    }

    /// [`Kernel::tcp_mem_grant`] past the low threshold or with a moderated buffer.
    #[inline(never)]
    fn tcp_mem_grant_judged(&mut self, f: FileId, c: u32, e: usize, want: usize) -> usize {
        let lim = mem::Limits::of(self.cfg.tcp_mem);
        // Past the low threshold, or with a moderated buffer (which gates each new segment
        // even when memory is plentiful again, until an acknowledgement lets it grow back).
        let mss = self.cfg.tcp_mss.max(1);
        let own = self.tcp_usage(c, e);
        let mut granted = 0;
        while granted < want {
            let k = (want - granted).min(mss);
            let wmem = own.wmem + granted as u64;
            let sndbuf = u64::from(sock(self, f).sndbuf);
            if sndbuf != 0 && wmem >= sndbuf {
                // `sk_stream_memory_free`: the moderated buffer is full.
                break;
            }
            let usage = mem::Usage {
                wmem,
                rmem: own.rmem,
            };
            if self.net.mem.judge(mem::Kind::Send, k as u64, usage, &lim) {
                self.net.mem.charge(k as u64);
                granted += k;
                continue;
            }
            // `sk_stream_moderate_sndbuf`: half of what is queued, at least SOCK_MIN_SNDBUF.
            self.net.mem.send_moderated += 1;
            let window = self.cfg.tcp_window as u64;
            let s = sock(self, f);
            let old = if s.sndbuf == 0 {
                window
            } else {
                u64::from(s.sndbuf)
            };
            let new = old.min(wmem / 2).max(u64::from(mem::SOCK_MIN_SNDBUF));
            let first = s.sndbuf == 0;
            s.sndbuf = new as u32;
            if first {
                self.net.mem.moderated_socks += 1;
            }
            if wmem == 0 || wmem + k as u64 >= new {
                // Nothing queued (`sk_forced_mem_schedule` of the first buffer, so that a
                // socket never stalls with an empty queue), or at or over its buffer (which
                // Linux cannot fail any other way): charged anyway; the next segment finds the
                // buffer full.
                self.net.mem.charge(k as u64);
                granted += k;
            }
            break;
        }
        granted
    }

    /// `tcp_new_space`: a moderated send buffer grows back once memory allows.
    fn tcp_unmoderate(&mut self, f: FileId) {
        let lim = mem::Limits::of(self.cfg.tcp_mem);
        if self.net.mem.may_expand(&lim) {
            let s = sock(self, f);
            if s.sndbuf != 0 {
                s.sndbuf = 0;
                self.net.mem.moderated_socks -= 1;
            }
        }
    }

    /// What the machine-wide TCP memory account shows.
    pub(crate) fn tcp_memory(&self) -> TcpMemory {
        self.net.mem.view()
    }

    /// Reads the socket's connection state and the line of the bytes it would read (see
    /// [`Kernel::warm_for_call`]).
    pub(crate) fn tcp_warm_buffers(&self, s: &TcpSock) {
        if let Some((cn, e)) = s
            .conn()
            .and_then(|(c, e)| Some((self.net.conns.get(c)?, e)))
        {
            if netpoll::hint::installed() {
                netpoll::hint::prefetch(cn.warm_line(e), 1);
            } else {
                std::hint::black_box((cn.packets, cn.warm_bytes(e)));
            }
        }
    }

    #[inline]
    fn tcp_writable(&self, s: &TcpSock) -> bool {
        let (free, used) = self.tcp_room(s);
        if let (true, Some((c, e))) = (s.sndbuf != 0, s.conn()) {
            // `sk_stream_wspace >= sk_stream_min_wspace` on the moderated buffer too.
            let wmem = self.tcp_usage(c, e).wmem as usize;
            let wspace = (s.sndbuf as usize).saturating_sub(wmem);
            if wspace == 0 || wspace < wmem / 2 {
                return false;
            }
        }
        free > 0 && free >= used / 2
    }

    pub(crate) fn tcp_read(&mut self, f: FileId, buf: &mut [u8], peek: bool) -> io::Result<usize> {
        // `sock_read_iter` answers an empty read before the protocol is asked.
        if buf.is_empty() {
            return Ok(0);
        }
        let s = sock(self, f);
        if s.state == State::Listen {
            return Err(err(ENOTCONN));
        }
        let conn = s.conn();
        if let Some((c, e)) = conn {
            if s.state != State::SynSent {
                let cn = &mut self.net.conns[c];
                let rx = cn.dir[e].rx_len;
                if rx > 0 {
                    let n = (rx as usize).min(buf.len());
                    let mut q = cn.buf(e, &mut self.net.rings);
                    if peek {
                        // `MSG_PEEK`: the bytes stay queued and no room is returned.
                        q.peek_into(&mut buf[..n]);
                        return Ok(n);
                    }
                    q.pop_into(&mut buf[..n]);
                    cn.dir[e].rx_len -= n as u32;
                    self.tcp_uncharge(n);
                    self.tcp_space_returned(c, 1 - e);
                    return Ok(n);
                }
                if cn.dir[e].fin {
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
    ///
    /// Inline up to the common case: no moderated buffer anywhere and a writer that never ran
    /// out of room (then neither step below does anything).
    #[inline]
    fn tcp_space_returned(&mut self, c: u32, writer: usize) {
        if self.net.mem.moderated_socks == 0 && !self.net.conns[c].dir[1 - writer].nospace {
            return;
        }
        self.tcp_space_returned_slow(c, writer);
    }

    /// [`Kernel::tcp_space_returned`] with a moderated buffer somewhere or a writer out of room.
    #[inline(never)]
    fn tcp_space_returned_slow(&mut self, c: u32, writer: usize) {
        let conn = &self.net.conns[c];
        let Some(w) = conn.end(writer) else {
            return;
        };
        if self.net.mem.moderated_socks > 0 {
            self.tcp_unmoderate(w);
        }
        let conn = &self.net.conns[c];
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
        let (c, e) = s.conn().expect("an established socket has a connection");
        let (free, _) = self.tcp_room(sock_ref(self, f).expect("tcp"));
        if free == 0 {
            self.net.conns[c].dir[1 - e].nospace = true;
            return Err(err(EAGAIN));
        }
        let n = self.tcp_mem_grant(f, c, e, free.min(buf.len()));
        if n == 0 {
            self.net.conns[c].dir[1 - e].nospace = true;
            return Err(err(EAGAIN));
        }
        if n < buf.len() {
            // A short write ran out of room too (`tcp_sendmsg` sets `SOCK_NOSPACE`): the writer
            // gets an `OUT` edge when room returns, as after `EAGAIN`.
            self.net.conns[c].dir[1 - e].nospace = true;
        }
        let net = &mut self.net;
        net.conns[c].buf(1 - e, &mut net.rings).push(&buf[..n]);
        if self.net.conns[c].dir[1 - e].lost() {
            // Behind a segment dropped for want of memory: the retransmission sends these too.
            return Ok(n);
        }
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
                    to: (1 - e) as u8,
                    len: k as u32,
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
        let conn = s.conn();
        if newly_send {
            if let Some((c, e)) = conn {
                self.send_fin(c, 1 - e);
            }
        }
        self.wake(f, Events::NONE);
        Ok(())
    }

    /// The socket's file is gone (or a queued child is dropped with its listener).
    pub(crate) fn tcp_release(&mut self, f: FileId, mut s: TcpSock) {
        self.unbind(f, &s);
        self.net.mem.sockets -= 1;
        if s.sndbuf != 0 {
            self.net.mem.moderated_socks -= 1;
        }
        if let Some(l) = s.listen.take() {
            // Connections nobody accepted are reset (`inet_csk_listen_stop`).
            for child in l.queue {
                sock(self, child).linger0 = true;
                self.release(child);
            }
        }
        let Some((c, e)) = s.conn() else { return };
        if s.state == State::Established {
            let conn = &self.net.conns[c];
            let unread = conn.dir[e].rx_len > 0;
            let peer_alive = conn.end(1 - e).is_some();
            if peer_alive && (s.linger0 || unread) {
                let rst = Packet::Rst {
                    conn: c,
                    to: (1 - e) as u8,
                };
                self.send(rst, Some((c, 1 - e)));
            } else if peer_alive && s.shutdown & SEND_SHUTDOWN == 0 {
                self.send_fin(c, 1 - e);
            }
        }
        let conn = &mut self.net.conns[c];
        conn.set_end(e, None);
        // Unread bytes go; bytes still in flight stay until their segments arrive and are
        // discarded.
        let unread = conn.dir[e].rx_len as usize;
        conn.buf(e, &mut self.net.rings).discard_front(unread);
        conn.dir[e].rx_len = 0;
        self.tcp_uncharge(unread);
        self.conn_maybe_free(c);
    }
}

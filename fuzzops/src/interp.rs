//! The interpreter: applies [`Op`]s to any [`Poller`] and records what each call returned, in a
//! form two kernels can be compared in ([`Obs`]).
//!
//! Descriptor numbers never appear in an observation: a new descriptor is recorded as its
//! *creation index* (the how-many-th successful creating call made it), and ops name
//! descriptors the same way ([`FdRef::Slot`]). The real kernel's numbers differ from the sim's
//! (the test process has other descriptors open) but, both allocating lowest-free, they map one
//! to one as long as nothing else in the process opens or closes descriptors meanwhile; the
//! differential runner holds a lock for that ([`crate::differential`]).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{
    EFD_SEMAPHORE, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, O_CLOEXEC, O_NONBLOCK,
};
use netpoll::{EpollEvent, Events, Fd, Poller};

use crate::ops::{CtlOp, FdRef, Flags, Ip, Op, Port};

/// The interest bits an [`Op::EpollCtl`]'s `interest` chooses from, bit `i` of `interest`
/// choosing entry `i`.
pub const INTEREST_BITS: [Events; 12] = [
    Events::IN,
    Events::OUT,
    Events::RDHUP,
    Events::PRI,
    Events::ET,
    Events::ONESHOT,
    Events::EXCLUSIVE,
    Events::WAKEUP,
    Events::ERR,
    Events::HUP,
    Events::RDNORM,
    Events::WRNORM,
];

/// The largest `read` buffer, and the largest `write` on the sim-only targets.
pub const IO_BYTES_MAX: usize = 4096;

/// What a call returned, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Obs {
    /// `Ok(())`.
    Done,
    /// The op was not run (out of this target's scope, or bounded away).
    Skipped,
    /// A new descriptor: its creation index.
    New(usize),
    /// Two new descriptors.
    NewPair(usize, usize),
    /// A byte count (`write`) or event count.
    Count(usize),
    /// The bytes `read` returned.
    Read(Vec<u8>),
    /// `epoll_wait`'s events, in order: (event bits, data).
    Events(Vec<(u32, u64)>),
    /// An IPv4 address; the port only where both kernels agree on it (not in differential runs).
    Addr(Ipv4Addr, Option<u16>),
    /// `SO_ERROR`.
    SockErr(i32),
    /// The errno.
    Errno(i32),
    /// The sim's "this would block for ever" ([`io::ErrorKind::Deadlock`]).
    Hang,
}

impl Obs {
    fn err(e: &io::Error) -> Obs {
        match e.raw_os_error() {
            Some(n) => Obs::Errno(n),
            None if e.kind() == io::ErrorKind::Deadlock => Obs::Hang,
            None => panic!("an error with neither an errno nor a Deadlock kind: {e}"),
        }
    }
}

/// How ops are bounded before they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Sim only: every op as given (sizes bounded to [`IO_BYTES_MAX`]).
    Sim,
    /// Both kernels: nothing may block, nothing may depend on timing or on buffer capacity,
    /// no raw descriptor may name one the test process owns. See [`Bounds`].
    Differential,
}

/// The largest `write` in the differential target.
pub const DIFF_WRITE_BYTES_MAX: usize = 512;
/// Writes allowed per open file in the differential target: 12 writes of 512 bytes stay far
/// below every buffer's capacity (a pipe's 16 pages, a unix socket's quarter of `SO_SNDBUF`
/// counted with per-write overhead), so no result depends on capacity.
pub const DIFF_WRITES_PER_FILE: u32 = 12;

/// The bookkeeping that bounds a differential run: which open file each descriptor names (so
/// that writes can be counted per file, `dup`s sharing), updated from the agreed results.
#[derive(Debug, Default)]
pub struct Bounds {
    files: std::collections::BTreeMap<usize, u32>,
    next_file: u32,
    writes: std::collections::BTreeMap<u32, u32>,
    kinds: std::collections::BTreeMap<u32, FileKind>,
}

/// What kind of file a creation made, as far as the differential bounds care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `socket(AF_INET, SOCK_STREAM)`.
    Tcp,
    /// `eventfd`.
    EventFd,
    /// Either end of a pipe.
    Pipe,
}

/// One kernel and the descriptors the run made on it.
#[derive(Debug)]
pub struct Interp<P> {
    /// The kernel.
    pub p: P,
    mode: Mode,
    /// Creation index -> descriptor number.
    made: Vec<Fd>,
    /// See [`Interp::with_hang_guard`].
    guard: Option<HangGuard<P>>,
}

/// The state [`Interp::with_hang_guard`] keeps: which open file each descriptor number names,
/// and each file's `O_NONBLOCK`, so that it can tell which ops may block.
#[derive(Debug)]
struct HangGuard<P> {
    pending: fn(&P) -> usize,
    files: std::collections::BTreeMap<Fd, u32>,
    nonblock: std::collections::BTreeMap<u32, bool>,
    next_file: u32,
    /// Ops not run because they could have hung.
    skipped: usize,
}

/// How long the hang guard lets virtual time run before a blocking op, in ms.
pub const GUARD_DRAIN_MS: i32 = 300_000;

fn flags_bits(f: Flags, nonblock_forced: bool, semaphore_ok: bool) -> i32 {
    let mut b = 0;
    if f.nonblock || nonblock_forced {
        b |= O_NONBLOCK;
    }
    if f.cloexec {
        b |= O_CLOEXEC;
    }
    if f.bogus {
        b |= 0x100;
    }
    if f.semaphore && semaphore_ok {
        b |= EFD_SEMAPHORE;
    }
    b
}

/// The interest an [`Op::EpollCtl`] describes.
pub fn interest(bits: u16, raw: u32) -> Events {
    let mut e = Events::from_bits(raw);
    for (i, b) in INTEREST_BITS.iter().enumerate() {
        if bits & (1 << i) != 0 {
            e |= *b;
        }
    }
    e
}

fn ip(i: Ip) -> Ipv4Addr {
    match i {
        Ip::Localhost => Ipv4Addr::LOCALHOST,
        Ip::Loopback2 => Ipv4Addr::new(127, 0, 0, 2),
        Ip::Any => Ipv4Addr::UNSPECIFIED,
        Ip::Foreign => Ipv4Addr::new(10, 1, 2, 3),
    }
}

/// The bytes an [`Op::Write`] writes.
pub fn pattern(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// `op` bounded for `mode`: the op that will actually run on every kernel.
pub fn bound(op: &Op, mode: Mode) -> Op {
    if mode == Mode::Sim {
        return op.clone();
    }
    let fdr = |r: FdRef| match r {
        // Certainly closed in both kernels: negative, or above the real process's fd limit.
        FdRef::Raw(x) if x >= 0 => FdRef::Raw(1_000_000 + x % 1000),
        other => other,
    };
    let nb = |f: Flags| Flags {
        nonblock: true,
        ..f
    };
    match op.clone() {
        Op::EpollCreate { flags } => Op::EpollCreate { flags },
        Op::EpollCtl {
            ep,
            op,
            fd,
            interest,
            data,
            null,
            ..
        } => Op::EpollCtl {
            ep: fdr(ep),
            op,
            fd: fdr(fd),
            interest,
            raw: 0,
            data,
            null,
        },
        Op::EpollWait { ep, max, .. } => Op::EpollWait {
            ep: fdr(ep),
            max,
            timeout: 0,
        },
        Op::Socketpair { flags } => Op::Socketpair { flags: nb(flags) },
        Op::Pipe { flags } => Op::Pipe { flags: nb(flags) },
        Op::EventFd { init, flags } => Op::EventFd {
            init,
            flags: nb(flags),
        },
        Op::TcpSocket { flags } => Op::TcpSocket { flags: nb(flags) },
        Op::TcpListener { backlog, .. } => Op::TcpListener {
            backlog,
            nonblock: true,
        },
        Op::Bind { fd, ip, .. } => Op::Bind {
            fd: fdr(fd),
            ip: if ip == Ip::Foreign { Ip::Localhost } else { ip },
            port: Port::Zero,
        },
        Op::Listen { fd, backlog } => Op::Listen {
            fd: fdr(fd),
            backlog,
        },
        // Loopback handshakes finish when the real kernel's softirq runs: timing, not semantics.
        Op::Connect { .. }
        | Op::TcpConnectTo { .. }
        | Op::WaitReadable { .. }
        | Op::Sleep { .. } => Op::Sleep { ms: 0 },
        Op::Accept { fd, flags } => Op::Accept {
            fd: fdr(fd),
            flags: nb(flags),
        },
        Op::LocalAddr { fd } => Op::LocalAddr { fd: fdr(fd) },
        Op::PeerAddr { fd } => Op::PeerAddr { fd: fdr(fd) },
        Op::TakeError { fd } => Op::TakeError { fd: fdr(fd) },
        Op::SetLinger { fd, secs } => Op::SetLinger { fd: fdr(fd), secs },
        Op::Read { fd, len } => Op::Read { fd: fdr(fd), len },
        Op::Write { fd, len, fill } => Op::Write {
            fd: fdr(fd),
            len: len % (DIFF_WRITE_BYTES_MAX as u16 + 1),
            fill,
        },
        Op::WriteCounter { fd, value } => Op::WriteCounter { fd: fdr(fd), value },
        Op::Shutdown { fd, how } => Op::Shutdown { fd: fdr(fd), how },
        Op::Close { fd } => Op::Close { fd: fdr(fd) },
        Op::Dup { fd } => Op::Dup { fd: fdr(fd) },
        Op::SetNonblocking { fd, .. } => Op::SetNonblocking {
            fd: fdr(fd),
            on: true,
        },
    }
}

impl Bounds {
    /// Whether a write through creation index `idx` is still allowed (and counts it).
    fn allow_write(&mut self, idx: Option<usize>) -> bool {
        let Some(file) = idx.and_then(|i| self.files.get(&i).copied()) else {
            return true;
        };
        let n = self.writes.entry(file).or_insert(0);
        *n += 1;
        *n <= DIFF_WRITES_PER_FILE
    }

    fn new_file(&mut self, idx: usize) {
        self.next_file += 1;
        self.files.insert(idx, self.next_file);
    }

    /// The kind of file creation index `idx` names, if open and of a kind listed.
    pub fn kind(&self, idx: Option<usize>) -> Option<FileKind> {
        idx.and_then(|i| self.files.get(&i))
            .and_then(|f| self.kinds.get(f).copied())
    }

    /// Records what `op` did (its agreed observation) and the descriptor `fd_idx` it named.
    fn after(&mut self, op: &Op, obs: &Obs, fd_idx: Option<usize>, closed: &[usize]) {
        match (op, obs) {
            (Op::Dup { .. }, Obs::New(n)) => {
                if let Some(f) = fd_idx.and_then(|i| self.files.get(&i).copied()) {
                    self.files.insert(*n, f);
                }
            }
            (Op::TcpSocket { .. } | Op::TcpListener { .. }, Obs::New(n)) => {
                self.new_file(*n);
                self.kinds.insert(self.next_file, FileKind::Tcp);
            }
            (Op::EventFd { .. }, Obs::New(n)) => {
                self.new_file(*n);
                self.kinds.insert(self.next_file, FileKind::EventFd);
            }
            (_, Obs::New(n)) => self.new_file(*n),
            (Op::Pipe { .. }, Obs::NewPair(a, b)) => {
                self.new_file(*a);
                self.kinds.insert(self.next_file, FileKind::Pipe);
                self.new_file(*b);
                self.kinds.insert(self.next_file, FileKind::Pipe);
            }
            (_, Obs::NewPair(a, b)) => {
                self.new_file(*a);
                self.new_file(*b);
            }
            (Op::Close { .. }, Obs::Done) => {
                for i in closed {
                    self.files.remove(i);
                }
            }
            _ => {}
        }
    }
}

impl Op {
    /// The descriptor the op acts on (for `epoll_ctl`, the target; none for creations).
    pub fn fd(&self) -> Option<FdRef> {
        match *self {
            Op::EpollCtl { fd, .. }
            | Op::Bind { fd, .. }
            | Op::Listen { fd, .. }
            | Op::Connect { fd, .. }
            | Op::Accept { fd, .. }
            | Op::LocalAddr { fd }
            | Op::PeerAddr { fd }
            | Op::TakeError { fd }
            | Op::SetLinger { fd, .. }
            | Op::Read { fd, .. }
            | Op::Write { fd, .. }
            | Op::WriteCounter { fd, .. }
            | Op::Shutdown { fd, .. }
            | Op::Close { fd }
            | Op::Dup { fd }
            | Op::SetNonblocking { fd, .. } => Some(fd),
            Op::EpollWait { ep, .. } => Some(ep),
            Op::EpollCreate { .. }
            | Op::Socketpair { .. }
            | Op::Pipe { .. }
            | Op::EventFd { .. }
            | Op::TcpSocket { .. }
            | Op::TcpListener { .. }
            | Op::TcpConnectTo { .. }
            | Op::WaitReadable { .. }
            | Op::Sleep { .. } => None,
        }
    }
}

impl<P: Poller> Interp<P> {
    /// An interpreter for `p`.
    pub fn new(p: P, mode: Mode) -> Self {
        Interp {
            p,
            mode,
            made: Vec::new(),
            guard: None,
        }
    }

    /// An interpreter that steps around the sim's known hang (FINDINGS.md, H1: an ACK retried
    /// for ever keeps `pending() > 0`, so a blocking call waiting for anything else never
    /// returns). Before an op that may block (a call on a blocking descriptor, a blocking
    /// connect, `epoll_wait` with a negative timeout) while something is in flight, it lets
    /// [`GUARD_DRAIN_MS`] of virtual time pass on a private epoll instance; if something is
    /// still in flight then, the op is skipped (a wait gets that finite timeout instead). With
    /// nothing in flight a blocking call ends at once or with `Deadlock`: it cannot hang.
    pub fn with_hang_guard(p: P, mode: Mode, pending: fn(&P) -> usize) -> Self {
        let mut it = Interp::new(p, mode);
        it.guard = Some(HangGuard {
            pending,
            files: std::collections::BTreeMap::new(),
            nonblock: std::collections::BTreeMap::new(),
            next_file: 0,
            skipped: 0,
        });
        it
    }

    /// How many ops the hang guard skipped.
    pub fn guard_skipped(&self) -> usize {
        self.guard.as_ref().map_or(0, |g| g.skipped)
    }

    /// Whether `op` might block for ever; `Some(op')` to run instead (`None`: skip it).
    fn guarded(&mut self, op: &Op) -> Option<Op> {
        let Some(g) = &self.guard else {
            return Some(op.clone());
        };
        let blocking_fd = |r: FdRef| {
            let fd = self.fd(r);
            g.files
                .get(&fd)
                .is_some_and(|f| !g.nonblock.get(f).copied().unwrap_or(false))
        };
        let may_block = match *op {
            Op::Read { fd, .. }
            | Op::Write { fd, .. }
            | Op::WriteCounter { fd, .. }
            | Op::Accept { fd, .. }
            | Op::Connect { fd, .. } => blocking_fd(fd),
            Op::TcpConnectTo { nonblock, .. } => !nonblock,
            Op::EpollWait { timeout, .. } => timeout < 0,
            _ => false,
        };
        if !may_block || (g.pending)(&self.p) == 0 {
            return Some(op.clone());
        }
        if let Ok(ep) = self.p.epoll_create1(0) {
            let mut evs = [EpollEvent::EMPTY; 1];
            let _ = self.p.epoll_wait(ep, &mut evs, GUARD_DRAIN_MS);
            let _ = self.p.close(ep);
        }
        let g = self.guard.as_mut().expect("checked above");
        if (g.pending)(&self.p) == 0 {
            return Some(op.clone());
        }
        g.skipped += 1;
        match *op {
            Op::EpollWait { ep, max, .. } => Some(Op::EpollWait {
                ep,
                max,
                timeout: GUARD_DRAIN_MS,
            }),
            _ => None,
        }
    }

    /// Updates the hang guard's file model after `op` returned `obs`.
    fn guard_after(&mut self, op: &Op, obs: &Obs, target: Fd) {
        let made = &self.made;
        let Some(g) = &mut self.guard else { return };
        let mut new_file = |fd: Fd, nb: bool| {
            g.next_file += 1;
            g.files.insert(fd, g.next_file);
            g.nonblock.insert(g.next_file, nb);
        };
        match (op, obs) {
            (Op::Dup { .. }, Obs::New(i)) => {
                if let Some(&f) = g.files.get(&target) {
                    g.files.insert(made[*i], f);
                }
            }
            (Op::Accept { flags, .. }, Obs::New(i)) => new_file(made[*i], flags.nonblock),
            (Op::TcpListener { nonblock, .. } | Op::TcpConnectTo { nonblock, .. }, Obs::New(i)) => {
                new_file(made[*i], *nonblock);
            }
            (Op::EpollCreate { .. }, Obs::New(i)) => new_file(made[*i], false),
            (Op::Socketpair { flags } | Op::Pipe { flags }, Obs::NewPair(a, b)) => {
                new_file(made[*a], flags.nonblock);
                new_file(made[*b], flags.nonblock);
            }
            (Op::EventFd { flags, .. } | Op::TcpSocket { flags }, Obs::New(i)) => {
                new_file(made[*i], flags.nonblock);
            }
            (Op::Close { .. }, Obs::Done) => {
                g.files.remove(&target);
            }
            (Op::SetNonblocking { on, .. }, Obs::Done) => {
                if let Some(&f) = g.files.get(&target) {
                    g.nonblock.insert(f, *on);
                }
            }
            _ => {}
        }
    }

    /// The descriptors made so far, by creation index (closed ones included).
    pub fn made(&self) -> &[Fd] {
        &self.made
    }

    /// The creation index `r` names, if it names one.
    pub fn index(&self, r: FdRef) -> Option<usize> {
        match r {
            FdRef::Slot(n) if !self.made.is_empty() => Some(usize::from(n) % self.made.len()),
            FdRef::Latest if !self.made.is_empty() => Some(self.made.len() - 1),
            _ => None,
        }
    }

    /// The descriptor number `r` names.
    pub fn fd(&self, r: FdRef) -> Fd {
        match (r, self.index(r)) {
            (FdRef::Raw(x), _) => x,
            (_, Some(i)) => self.made[i],
            (_, None) => -1,
        }
    }

    /// Every creation index whose descriptor number is `fd` (one open, others stale).
    fn indices_of(&self, fd: Fd) -> Vec<usize> {
        (0..self.made.len())
            .filter(|&i| self.made[i] == fd)
            .collect()
    }

    fn made_one(&mut self, r: io::Result<Fd>) -> Obs {
        match r {
            Ok(fd) => {
                self.made.push(fd);
                Obs::New(self.made.len() - 1)
            }
            Err(e) => Obs::err(&e),
        }
    }

    fn made_two(&mut self, r: io::Result<[Fd; 2]>) -> Obs {
        match r {
            Ok([a, b]) => {
                self.made.push(a);
                self.made.push(b);
                Obs::NewPair(self.made.len() - 2, self.made.len() - 1)
            }
            Err(e) => Obs::err(&e),
        }
    }

    fn unit(r: io::Result<()>) -> Obs {
        match r {
            Ok(()) => Obs::Done,
            Err(e) => Obs::err(&e),
        }
    }

    fn addr(&self, r: io::Result<SocketAddrV4>) -> Obs {
        match r {
            Ok(a) if self.mode == Mode::Sim => Obs::Addr(*a.ip(), Some(a.port())),
            Ok(a) => Obs::Addr(*a.ip(), None),
            Err(e) => Obs::err(&e),
        }
    }

    fn port(&self, p: Port) -> u16 {
        match p {
            Port::Zero => 0,
            Port::Fixed(n) => 20000 + u16::from(n),
            Port::Of(r) => self.p.local_addr(self.fd(r)).map_or(1, |a| a.port()),
        }
    }

    /// Runs `op` (already bounded for this interpreter's mode) and says what it returned.
    pub fn apply(&mut self, op: &Op) -> Obs {
        if self.guard.is_none() {
            return self.apply_unguarded(op);
        }
        let Some(run) = self.guarded(op) else {
            return Obs::Skipped;
        };
        let target = op.fd().map_or(-1, |r| self.fd(r));
        let made_before = self.made.len();
        let obs = self.apply_unguarded(&run);
        // TcpListener / TcpConnectTo may have made a socket and still failed.
        let obs_for_model = match (&run, &obs) {
            (Op::TcpListener { .. } | Op::TcpConnectTo { .. }, Obs::Errno(_))
                if self.made.len() > made_before =>
            {
                Obs::New(self.made.len() - 1)
            }
            _ => obs.clone(),
        };
        self.guard_after(&run, &obs_for_model, target);
        obs
    }

    fn apply_unguarded(&mut self, op: &Op) -> Obs {
        let p = &self.p;
        let diff = self.mode == Mode::Differential;
        match *op {
            Op::EpollCreate { flags } => {
                let r = p.epoll_create1(flags_bits(flags, false, false));
                self.made_one(r)
            }
            Op::EpollCtl {
                ep,
                op,
                fd,
                interest: bits,
                raw,
                data,
                null,
            } => {
                let op = match op {
                    CtlOp::Add => EPOLL_CTL_ADD,
                    CtlOp::Mod => EPOLL_CTL_MOD,
                    CtlOp::Del => EPOLL_CTL_DEL,
                    CtlOp::Raw(n) => n,
                };
                let ev = (!null).then(|| EpollEvent::new(interest(bits, raw), u64::from(data)));
                Self::unit(p.epoll_ctl(self.fd(ep), op, self.fd(fd), ev))
            }
            Op::EpollWait { ep, max, timeout } => {
                let mut evs = vec![EpollEvent::EMPTY; usize::from(max % 9)];
                match p.epoll_wait(self.fd(ep), &mut evs, timeout) {
                    Ok(n) => {
                        Obs::Events(evs[..n].iter().map(|e| (e.events.bits(), e.data)).collect())
                    }
                    Err(e) => Obs::err(&e),
                }
            }
            Op::Socketpair { flags } => {
                let r = p.socketpair(flags_bits(flags, false, false));
                self.made_two(r)
            }
            Op::Pipe { flags } => {
                let r = p.pipe2(flags_bits(flags, false, false));
                self.made_two(r)
            }
            Op::EventFd { init, flags } => {
                let r = p.eventfd(init, flags_bits(flags, false, true));
                self.made_one(r)
            }
            Op::TcpSocket { flags } => {
                let r = p.tcp_socket(flags_bits(flags, false, false));
                self.made_one(r)
            }
            Op::Bind { fd, ip: i, port } => {
                let a = SocketAddrV4::new(ip(i), self.port(port));
                Self::unit(p.bind(self.fd(fd), a))
            }
            Op::Listen { fd, backlog } => Self::unit(p.listen(self.fd(fd), backlog.into())),
            Op::Connect { fd, ip: i, port } => {
                let a = SocketAddrV4::new(ip(i), self.port(port));
                Self::unit(p.connect(self.fd(fd), a))
            }
            Op::Accept { fd, flags } => {
                let r = p.accept4(self.fd(fd), flags_bits(flags, false, false));
                self.made_one(r.map(|(fd, _)| fd))
            }
            Op::LocalAddr { fd } => self.addr(p.local_addr(self.fd(fd))),
            Op::PeerAddr { fd } => self.addr(p.peer_addr(self.fd(fd))),
            Op::TakeError { fd } => match p.take_socket_error(self.fd(fd)) {
                Ok(e) => Obs::SockErr(e),
                Err(e) => Obs::err(&e),
            },
            Op::SetLinger { fd, secs } => {
                Self::unit(p.set_linger(self.fd(fd), secs.map(u32::from)))
            }
            Op::Read { fd, len } => {
                let mut buf = vec![0; usize::from(len) % (IO_BYTES_MAX + 1)];
                match p.read(self.fd(fd), &mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        Obs::Read(buf)
                    }
                    Err(e) => Obs::err(&e),
                }
            }
            Op::Write { fd, len, fill } => {
                let len = usize::from(len) % (IO_BYTES_MAX + 1);
                match p.write(self.fd(fd), &pattern(len, fill)) {
                    Ok(n) => Obs::Count(n),
                    Err(e) => Obs::err(&e),
                }
            }
            Op::WriteCounter { fd, value } => match p.write(self.fd(fd), &value.to_ne_bytes()) {
                Ok(n) => Obs::Count(n),
                Err(e) => Obs::err(&e),
            },
            Op::Shutdown { fd, how } => Self::unit(p.shutdown(self.fd(fd), how.into())),
            Op::Close { fd } => Self::unit(p.close(self.fd(fd))),
            Op::Dup { fd } => {
                let r = p.dup(self.fd(fd));
                self.made_one(r)
            }
            Op::SetNonblocking { fd, on } => Self::unit(p.set_nonblocking(self.fd(fd), on)),
            Op::TcpListener { backlog, nonblock } => {
                let flags = if nonblock { O_NONBLOCK } else { 0 };
                let r = self.p.tcp_socket(flags);
                let obs = self.made_one(r);
                if let Obs::New(i) = obs {
                    let fd = self.made[i];
                    let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
                    let p = &self.p;
                    if let Err(e) = p.bind(fd, a).and_then(|()| p.listen(fd, backlog.into())) {
                        return Obs::err(&e);
                    }
                }
                obs
            }
            Op::TcpConnectTo { listener, nonblock } => {
                let port = self.port(Port::Of(listener));
                let flags = if nonblock { O_NONBLOCK } else { 0 };
                let r = self.p.tcp_socket(flags);
                let obs = self.made_one(r);
                if let Obs::New(i) = obs {
                    let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
                    if let Err(e) = self.p.connect(self.made[i], a) {
                        return Obs::err(&e);
                    }
                }
                obs
            }
            Op::WaitReadable { ms } if !diff => private_wait(p, &self.made, ms),
            // Nothing registered: the wait only lets virtual time pass.
            Op::Sleep { ms } if !diff => private_wait(p, &[], ms),
            Op::Sleep { .. } | Op::WaitReadable { .. } => Obs::Skipped,
        }
    }
}

/// A differential step: `op` bounded, then (if a write over its file's budget) skipped.
pub(crate) fn diff_step<A: Poller, B: Poller>(
    bounds: &mut Bounds,
    a: &mut Interp<A>,
    b: &mut Interp<B>,
    op: &Op,
    skip: &dyn Fn(&Op, Option<FileKind>) -> bool,
) -> (Op, Option<FileKind>, Obs, Obs) {
    let op = bound(op, Mode::Differential);
    // The creation index that owns the named number now (a stale index names whatever file
    // got its number since).
    let live = |r: FdRef| {
        a.indices_of(a.fd(r))
            .into_iter()
            .rev()
            .find(|i| bounds.files.contains_key(i))
    };
    let kind = bounds.kind(op.fd().and_then(live));
    if skip(&op, kind) {
        return (op, kind, Obs::Skipped, Obs::Skipped);
    }
    let target = match op {
        Op::Write { fd, .. } | Op::WriteCounter { fd, .. } => Some(live(fd)),
        _ => None,
    };
    let named = match op {
        Op::Dup { fd } | Op::Close { fd } => live(fd),
        _ => None,
    };
    if let Some(idx) = target {
        if !bounds.allow_write(idx) {
            return (op, kind, Obs::Skipped, Obs::Skipped);
        }
    }
    // A close ends every creation index that shares the closed number.
    let closed = match op {
        Op::Close { fd } => a.indices_of(a.fd(fd)),
        _ => Vec::new(),
    };
    let oa = a.apply(&op);
    let ob = b.apply(&op);
    if oa == ob {
        bounds.after(&op, &oa, named, &closed);
    }
    (op, kind, oa, ob)
}

/// Waits up to `ms` on a private epoll instance watching `fds` for `IN` (user data: the index),
/// room for 4 events; the instance is closed again, so the fd table is as before.
fn private_wait<P: Poller>(p: &P, fds: &[Fd], ms: u8) -> Obs {
    let ep = match p.epoll_create1(0) {
        Ok(ep) => ep,
        Err(e) => return Obs::err(&e),
    };
    for (i, &fd) in fds.iter().enumerate() {
        let ev = EpollEvent::new(Events::IN, i as u64);
        let _ = p.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(ev));
    }
    let mut evs = [EpollEvent::EMPTY; 4];
    let r = p.epoll_wait(ep, &mut evs, i32::from(ms));
    let _ = p.close(ep);
    match r {
        Ok(n) => Obs::Count(n),
        Err(e) => Obs::err(&e),
    }
}

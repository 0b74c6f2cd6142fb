//! Linux's numbers: event bits, flags and errno values, spelled out.
//!
//! These are the values of x86_64/aarch64 Linux, written here rather than taken from `libc` so
//! that the simulated kernel speaks Linux even when it is built elsewhere. `netpoll-realnet`
//! checks at compile time that each one equals the `libc` constant it stands for.

use std::fmt;
use std::io;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// A set of epoll event bits (`EPOLLIN`, `EPOLLET`, ...), converting 1:1 to Linux's `u32`.
///
/// Its `Debug` form names the bits (`IN | OUT | ET`), which keeps test failures readable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Events(u32);

impl Events {
    /// No bits.
    pub const NONE: Events = Events(0);
    /// `EPOLLIN`: readable, or a connection to accept, or (for an epoll fd) events ready.
    pub const IN: Events = Events(0x001);
    /// `EPOLLPRI`: urgent data; never produced by the objects modelled here.
    pub const PRI: Events = Events(0x002);
    /// `EPOLLOUT`: writable.
    pub const OUT: Events = Events(0x004);
    /// `EPOLLERR`: an error is pending (`SO_ERROR`), or a pipe's reader is gone. Always reported.
    pub const ERR: Events = Events(0x008);
    /// `EPOLLHUP`: hung up. Always reported.
    pub const HUP: Events = Events(0x010);
    /// `EPOLLNVAL`: never produced by epoll; here for completeness.
    pub const NVAL: Events = Events(0x020);
    /// `EPOLLRDNORM`.
    pub const RDNORM: Events = Events(0x040);
    /// `EPOLLRDBAND`.
    pub const RDBAND: Events = Events(0x080);
    /// `EPOLLWRNORM`.
    pub const WRNORM: Events = Events(0x100);
    /// `EPOLLWRBAND`.
    pub const WRBAND: Events = Events(0x200);
    /// `EPOLLMSG`: unused by Linux.
    pub const MSG: Events = Events(0x400);
    /// `EPOLLRDHUP`: the peer shut down its writing half (stream sockets only).
    pub const RDHUP: Events = Events(0x2000);
    /// `EPOLLEXCLUSIVE`: wake one of several epoll instances waiting on the same file (ADD only).
    pub const EXCLUSIVE: Events = Events(1 << 28);
    /// `EPOLLWAKEUP`: a suspend-blocking hint; accepted and ignored.
    pub const WAKEUP: Events = Events(1 << 29);
    /// `EPOLLONESHOT`: disarm the registration after one reported event; `EPOLL_CTL_MOD` re-arms.
    pub const ONESHOT: Events = Events(1 << 30);
    /// `EPOLLET`: edge-triggered.
    pub const ET: Events = Events(1 << 31);

    const NAMES: [(Events, &'static str); 17] = [
        (Events::IN, "IN"),
        (Events::PRI, "PRI"),
        (Events::OUT, "OUT"),
        (Events::ERR, "ERR"),
        (Events::HUP, "HUP"),
        (Events::NVAL, "NVAL"),
        (Events::RDNORM, "RDNORM"),
        (Events::RDBAND, "RDBAND"),
        (Events::WRNORM, "WRNORM"),
        (Events::WRBAND, "WRBAND"),
        (Events::MSG, "MSG"),
        (Events::RDHUP, "RDHUP"),
        (Events::EXCLUSIVE, "EXCLUSIVE"),
        (Events::WAKEUP, "WAKEUP"),
        (Events::ONESHOT, "ONESHOT"),
        (Events::ET, "ET"),
        (Events::NONE, ""),
    ];

    /// Wraps Linux's bits, unchanged.
    pub const fn from_bits(bits: u32) -> Events {
        Events(bits)
    }

    /// Linux's bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Events) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of two sets.
    pub const fn union(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }

    /// `self` without the bits of `other`.
    pub const fn without(self, other: Events) -> Events {
        Events(self.0 & !other.0)
    }

    /// Only the bits that say what is ready (`IN`, `OUT`, `ERR`, `HUP`, `RDHUP`, the `*NORM`/
    /// `*BAND` bits), without the mode flags `ET`, `ONESHOT`, `EXCLUSIVE` and `WAKEUP`.
    pub const fn readiness(self) -> Events {
        Events(
            self.0 & !(Events::ET.0 | Events::ONESHOT.0 | Events::EXCLUSIVE.0 | Events::WAKEUP.0),
        )
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("NONE");
        }
        let mut rest = self.0;
        let mut first = true;
        for (bit, name) in Events::NAMES {
            if bit.0 != 0 && rest & bit.0 != 0 {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !bit.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

impl BitOr for Events {
    type Output = Events;
    fn bitor(self, rhs: Events) -> Events {
        Events(self.0 | rhs.0)
    }
}

impl BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Events) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Events {
    type Output = Events;
    fn bitand(self, rhs: Events) -> Events {
        Events(self.0 & rhs.0)
    }
}

impl BitAndAssign for Events {
    fn bitand_assign(&mut self, rhs: Events) {
        self.0 &= rhs.0;
    }
}

impl Not for Events {
    type Output = Events;
    fn not(self) -> Events {
        Events(!self.0)
    }
}

/// `epoll_ctl` operations.
pub const EPOLL_CTL_ADD: i32 = 1;
/// `epoll_ctl` operations.
pub const EPOLL_CTL_DEL: i32 = 2;
/// `epoll_ctl` operations.
pub const EPOLL_CTL_MOD: i32 = 3;

/// `O_NONBLOCK` (also `SOCK_NONBLOCK`, `EFD_NONBLOCK`).
pub const O_NONBLOCK: i32 = 0o4000;
/// `O_CLOEXEC` (also `SOCK_CLOEXEC`, `EFD_CLOEXEC`, `EPOLL_CLOEXEC`).
pub const O_CLOEXEC: i32 = 0o2000000;
/// `O_RDONLY`: `F_GETFL`'s access mode for a pipe's read end.
pub const O_RDONLY: i32 = 0;
/// `O_WRONLY`: `F_GETFL`'s access mode for a pipe's write end.
pub const O_WRONLY: i32 = 1;
/// `O_RDWR`: `F_GETFL`'s access mode for sockets, eventfds and epoll instances.
pub const O_RDWR: i32 = 2;
/// `O_ACCMODE`: the access-mode bits of `F_GETFL`.
pub const O_ACCMODE: i32 = 3;
/// `O_APPEND` (settable with `F_SETFL` on Linux; not modelled by the simulated kernel).
pub const O_APPEND: i32 = 0o2000;
/// `O_ASYNC` (`FASYNC`: settable with `F_SETFL` on Linux; not modelled by the simulated kernel).
pub const O_ASYNC: i32 = 0o20000;
/// `O_DIRECT` (settable with `F_SETFL` on Linux; not modelled by the simulated kernel).
pub const O_DIRECT: i32 = 0o40000;
/// `O_NOATIME` (settable with `F_SETFL` on Linux; not modelled by the simulated kernel).
pub const O_NOATIME: i32 = 0o1000000;
/// `SOCK_NONBLOCK`.
pub const SOCK_NONBLOCK: i32 = O_NONBLOCK;
/// `SOCK_CLOEXEC`.
pub const SOCK_CLOEXEC: i32 = O_CLOEXEC;
/// `EPOLL_CLOEXEC`.
pub const EPOLL_CLOEXEC: i32 = O_CLOEXEC;
/// `EFD_SEMAPHORE`: each read takes 1 from the counter instead of all of it.
pub const EFD_SEMAPHORE: i32 = 1;
/// `EFD_NONBLOCK`.
pub const EFD_NONBLOCK: i32 = O_NONBLOCK;
/// `EFD_CLOEXEC`.
pub const EFD_CLOEXEC: i32 = O_CLOEXEC;

/// `shutdown` how: stop reading.
pub const SHUT_RD: i32 = 0;
/// `shutdown` how: stop writing (the peer reads EOF).
pub const SHUT_WR: i32 = 1;
/// `shutdown` how: both.
pub const SHUT_RDWR: i32 = 2;

/// `recv` flag: copy the data out but leave it queued (the next read returns it again).
pub const MSG_PEEK: i32 = 0x02;
/// `recv` flag: do not block, as if the file were in non-blocking mode for this one call.
pub const MSG_DONTWAIT: i32 = 0x40;
/// `send`/`recv` flag: no `SIGPIPE` (no effect on `recv`; accepted for code that passes it).
pub const MSG_NOSIGNAL: i32 = 0x4000;

/// Linux errno values used at the kernel surface.
pub mod errno {
    #![allow(missing_docs)]
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EINTR: i32 = 4;
    pub const EBADF: i32 = 9;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EFAULT: i32 = 14;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOTTY: i32 = 25;
    pub const ENOSPC: i32 = 28;
    pub const EPIPE: i32 = 32;
    pub const EDEADLK: i32 = 35;
    pub const ELOOP: i32 = 40;
    pub const ENOTSOCK: i32 = 88;
    pub const EDESTADDRREQ: i32 = 89;
    pub const EOPNOTSUPP: i32 = 95;
    pub const EAFNOSUPPORT: i32 = 97;
    pub const EADDRINUSE: i32 = 98;
    pub const EADDRNOTAVAIL: i32 = 99;
    pub const ENETUNREACH: i32 = 101;
    pub const ECONNABORTED: i32 = 103;
    pub const ECONNRESET: i32 = 104;
    pub const ENOBUFS: i32 = 105;
    pub const EISCONN: i32 = 106;
    pub const ENOTCONN: i32 = 107;
    pub const ETIMEDOUT: i32 = 110;
    pub const ECONNREFUSED: i32 = 111;
    pub const EALREADY: i32 = 114;
    pub const EINPROGRESS: i32 = 115;
}

/// An `io::Error` carrying Linux errno `code`, as `raw_os_error()` will return it.
pub fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The Linux errno an error carries, if any.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

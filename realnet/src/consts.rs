//! Compile-time proof that every number in [`netpoll::sys`] is Linux's, as `libc` spells it.
//! If one differs, this crate does not build.

use netpoll::sys::{self, errno, Events};

macro_rules! same {
    ($($ours:expr => $libc:expr),* $(,)?) => {
        $(const _: () = assert!($ours as i64 == $libc as i64, stringify!($ours));)*
    };
}

same! {
    Events::IN.bits() => libc::EPOLLIN,
    Events::PRI.bits() => libc::EPOLLPRI,
    Events::OUT.bits() => libc::EPOLLOUT,
    Events::ERR.bits() => libc::EPOLLERR,
    Events::HUP.bits() => libc::EPOLLHUP,
    Events::NVAL.bits() => libc::POLLNVAL, // libc has no EPOLLNVAL; epoll uses the poll value
    Events::RDNORM.bits() => libc::EPOLLRDNORM,
    Events::RDBAND.bits() => libc::EPOLLRDBAND,
    Events::WRNORM.bits() => libc::EPOLLWRNORM,
    Events::WRBAND.bits() => libc::EPOLLWRBAND,
    Events::MSG.bits() => libc::EPOLLMSG,
    Events::RDHUP.bits() => libc::EPOLLRDHUP,
    Events::EXCLUSIVE.bits() => libc::EPOLLEXCLUSIVE,
    Events::WAKEUP.bits() => libc::EPOLLWAKEUP,
    Events::ONESHOT.bits() => libc::EPOLLONESHOT,
    Events::ET.bits() => libc::EPOLLET as u32,
    sys::EPOLL_CTL_ADD => libc::EPOLL_CTL_ADD,
    sys::EPOLL_CTL_DEL => libc::EPOLL_CTL_DEL,
    sys::EPOLL_CTL_MOD => libc::EPOLL_CTL_MOD,
    sys::O_NONBLOCK => libc::O_NONBLOCK,
    sys::O_CLOEXEC => libc::O_CLOEXEC,
    sys::SOCK_NONBLOCK => libc::SOCK_NONBLOCK,
    sys::SOCK_CLOEXEC => libc::SOCK_CLOEXEC,
    sys::EPOLL_CLOEXEC => libc::EPOLL_CLOEXEC,
    sys::EFD_SEMAPHORE => libc::EFD_SEMAPHORE,
    sys::EFD_NONBLOCK => libc::EFD_NONBLOCK,
    sys::EFD_CLOEXEC => libc::EFD_CLOEXEC,
    sys::SHUT_RD => libc::SHUT_RD,
    sys::SHUT_WR => libc::SHUT_WR,
    sys::SHUT_RDWR => libc::SHUT_RDWR,
    errno::EPERM => libc::EPERM,
    errno::ENOENT => libc::ENOENT,
    errno::EINTR => libc::EINTR,
    errno::EBADF => libc::EBADF,
    errno::EAGAIN => libc::EAGAIN,
    errno::ENOMEM => libc::ENOMEM,
    errno::EFAULT => libc::EFAULT,
    errno::EEXIST => libc::EEXIST,
    errno::EINVAL => libc::EINVAL,
    errno::EMFILE => libc::EMFILE,
    errno::ENOSPC => libc::ENOSPC,
    errno::EPIPE => libc::EPIPE,
    errno::EDEADLK => libc::EDEADLK,
    errno::ELOOP => libc::ELOOP,
    errno::ENOTSOCK => libc::ENOTSOCK,
    errno::EDESTADDRREQ => libc::EDESTADDRREQ,
    errno::EOPNOTSUPP => libc::EOPNOTSUPP,
    errno::EAFNOSUPPORT => libc::EAFNOSUPPORT,
    errno::EADDRINUSE => libc::EADDRINUSE,
    errno::EADDRNOTAVAIL => libc::EADDRNOTAVAIL,
    errno::ENETUNREACH => libc::ENETUNREACH,
    errno::ECONNABORTED => libc::ECONNABORTED,
    errno::ECONNRESET => libc::ECONNRESET,
    errno::EISCONN => libc::EISCONN,
    errno::ENOTCONN => libc::ENOTCONN,
    errno::ETIMEDOUT => libc::ETIMEDOUT,
    errno::ECONNREFUSED => libc::ECONNREFUSED,
    errno::EALREADY => libc::EALREADY,
    errno::EINPROGRESS => libc::EINPROGRESS,
}

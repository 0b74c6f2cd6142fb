//! Net types over the Poller: [`TcpListener`], [`TcpStream`], [`UnixStream`] (socketpairs), and
//! pipes ([`PipeReader`], [`PipeWriter`]).
//!
//! Every operation is Go's `fd.Read` shape: check the side's error flags (closed, deadline
//! passed), try the syscall on the non-blocking fd, and on `EAGAIN` park on the side until the
//! poll loop reports an edge, then retry. Operations take `&self`, so a stream can be shared
//! (in an `Arc` or `Rc`) between a reader task and a writer task, or closed by a third task
//! while the other two are parked: [`close`](TcpStream::close) wakes them with an error.
//!
//! One read and one write may wait at the same time; a second waiter on the same side fails
//! with `ResourceBusy` instead of silently replacing the first.
//!
//! **Deadlines** are absolute instants on the Poller's clock ([`super::now`]), as Go's are on the
//! wall clock: once one passes, the pending operation on that side and every later one fail with
//! `TimedOut`, until the deadline is moved (extended while an operation is parked, that
//! operation keeps waiting) or cleared with `None`.

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::driver::{Driver, Orphans};
use super::pd::{closed_error, Dir, PollDesc, Release, WaitError};
use super::{current_task, try_with_driver, with_driver};
use crate::sys::{
    errno, O_CLOEXEC, O_NONBLOCK, SHUT_RD, SHUT_RDWR, SHUT_WR, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use crate::{Fd, Poller};

/// How many connections a listener queues (Linux's `SOMAXCONN`).
const BACKLOG: i32 = 4096;

fn is_eagain(e: &io::Error) -> bool {
    e.raw_os_error() == Some(errno::EAGAIN)
}

/// A registered, non-blocking fd: the part every net type shares.
struct IoFd<P: Poller + 'static> {
    pd: Arc<PollDesc>,
    /// The descriptor's number (the descriptor's own copy is off its first line; this one is
    /// on the future's, which a syscall reads anyway).
    fd: Fd,
    driver_id: u64,
    /// Where the fd goes if the last owner is dropped off the runtime's threads.
    orphans: Arc<Orphans>,
    /// Whether a short read means the receive queue was empty (see [`IoFd::read`]).
    short_read_drains: bool,
    /// The last read was short: the next one parks before trying the syscall.
    read_drained: AtomicBool,
    /// The driver is exclusive (`Driver::exclusive`): `read_drained` is consumed with a load
    /// and a store, not a swap.
    exclusive: bool,
    _poller: PhantomData<fn() -> P>,
}

impl<P: Poller + 'static> fmt::Debug for IoFd<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoFd")
            .field("fd", &self.fd)
            .field("seq", &self.pd.seq)
            .finish()
    }
}

fn driver<P: Poller + 'static, R>(id: Option<u64>, f: impl FnOnce(&Driver<P>) -> R) -> R {
    with_driver(|d: &Driver<P>| {
        if let Some(id) = id {
            assert_eq!(
                d.id(),
                id,
                "netpoll: a descriptor was used on a runtime other than the one that opened it"
            );
        }
        f(d)
    })
}

impl<P: Poller + 'static> IoFd<P> {
    /// Registers `fd` with the current runtime; closes it if that fails.
    fn new(fd: Fd) -> io::Result<IoFd<P>> {
        driver(None, |d: &Driver<P>| match d.register(fd) {
            Ok(pd) => Ok(IoFd {
                fd,
                pd,
                driver_id: d.id(),
                orphans: d.orphans(),
                short_read_drains: d.short_read_drains(),
                read_drained: AtomicBool::new(false),
                exclusive: d.exclusive(),
                _poller: PhantomData,
            }),
            Err(e) => {
                let _ = d.poller().close(fd);
                Err(e)
            }
        })
    }

    /// Consumes the short-read mark.
    fn take_read_drained(&self) -> bool {
        if !self.exclusive {
            return self.read_drained.swap(false, Ordering::Relaxed);
        }
        let drained = self.read_drained.load(Ordering::Relaxed);
        if drained {
            self.read_drained.store(false, Ordering::Relaxed);
        }
        drained
    }

    fn with<R>(&self, f: impl FnOnce(&Driver<P>) -> R) -> R {
        driver(Some(self.driver_id), f)
    }

    /// Runs one syscall with the fd kept alive (see [`PollDesc::acquire`]).
    fn syscall<R>(&self, d: &Driver<P>, f: impl FnOnce(&P, Fd) -> io::Result<R>) -> io::Result<R> {
        if d.exclusive() {
            // No other thread can close the fd under this syscall (see `Driver::exclusive`).
            if self.pd.is_closing() {
                return Err(WaitError::Closed.into_io("any"));
            }
            return f(d.poller(), self.fd);
        }
        self.pd.acquire().map_err(|e| e.into_io("any"))?;
        let r = f(d.poller(), self.fd);
        if self.pd.release() == Release::CloseFd {
            d.close_fd(&self.pd);
        }
        r
    }

    /// A plain syscall, not waiting.
    fn call<R>(&self, f: impl FnOnce(&P, Fd) -> io::Result<R>) -> io::Result<R> {
        self.with(|d| self.syscall(d, f))
    }

    /// The operation loop: check, try, park on `EAGAIN`, retry on an edge.
    fn poll_op<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Dir,
        st: &mut OpState<'_, P>,
        op: &mut impl FnMut(&P, Fd) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        debug_assert_eq!(
            dir, st.dir,
            "rt invariant: an operation polled on another side"
        );
        let side = self.pd.side(dir);
        self.with(|d| loop {
            if let Err(e) = side.check() {
                d.note_progress();
                return Poll::Ready(Err(e.into_io(dir.name())));
            }
            if std::mem::take(&mut st.parked) {
                // Polled again after parking: consume the edge that woke us, if it is still
                // there (the notifier left the side READY), before the retry, as Go's
                // netpollblock does. Left READY, it would make the next operation on this side
                // retry its syscall a second time after EAGAIN, for nothing. Consuming an edge
                // right before the syscall loses nothing: the syscall sees what it announced.
                if self.exclusive {
                    side.take_ready_exclusive();
                } else {
                    side.take_ready();
                }
            }
            if std::mem::take(&mut st.skip_syscall) {
                // Known to be drained: wait for the next edge (or consume one already there).
            } else {
                match self.syscall(d, &mut *op) {
                    Err(e) if is_eagain(&e) => {}
                    r => {
                        d.note_progress();
                        return Poll::Ready(r);
                    }
                }
            }
            match self.park(dir, &mut st.token, cx.waker()) {
                Poll::Pending => {
                    st.parked = true;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => {
                    d.note_progress();
                    return Poll::Ready(Err(e.into_io(dir.name())));
                }
            }
        })
    }

    /// Parks on `dir`'s side with the operation's token (drawn at its first park), or consumes
    /// the edge already there: by plain stores on an exclusive driver (the caller is on the
    /// runtime's thread: [`IoFd::with`] asserted it).
    fn park(
        &self,
        dir: Dir,
        token: &mut Option<u32>,
        waker: &Waker,
    ) -> Poll<Result<(), WaitError>> {
        let side = self.pd.side(dir);
        if self.exclusive {
            let t = *token.get_or_insert_with(|| self.pd.next_token_exclusive());
            side.poll_wait_exclusive(waker, t, current_task())
        } else {
            let t = *token.get_or_insert_with(|| self.pd.next_token());
            side.poll_wait(waker, t, current_task())
        }
    }

    fn op<R, F: FnMut(&P, Fd) -> io::Result<R>>(&self, dir: Dir, f: F) -> Op<'_, P, F> {
        Op {
            st: OpState::new(self, dir),
            f,
        }
    }

    /// A read. On the real kernel a short read from a stream (`0 < n < len`) means its queue
    /// was empty at that instant, so the next read goes straight to the wait instead of making
    /// a syscall that would return `EAGAIN` (tokio does the same). This loses no wakeup: data
    /// arriving after the short read is a new edge, which either wakes the parked read or is
    /// left as `READY` for the wait to consume. The exception is the end of file: once an
    /// event carried `RDHUP`/`HUP`/`ERR` ([`PollDesc::read_closed`]), a short read may leave it
    /// queued with no edge to come, so every read tries the syscall. Other pollers may return
    /// short reads with data left (the trait allows it), so there every read tries the syscall
    /// first.
    ///
    /// A future of its own ([`Read`]), not an `async fn` around an [`Op`]: what a read's poll
    /// touches is one small struct inside the task's state.
    fn read<'a>(&'a self, buf: &'a mut [u8]) -> Read<'a, P> {
        Read {
            st: OpState::new(self, Dir::Read),
            buf,
            started: false,
        }
    }

    /// Waits for one edge on `dir` (or an error), without a syscall.
    fn wait(&self, dir: Dir) -> Wait<'_, P> {
        Wait {
            st: OpState::new(self, dir),
        }
    }

    fn set_deadline(&self, dir: Option<Dir>, at: Option<Duration>) -> io::Result<()> {
        if self.pd.is_closing() {
            return Err(closed_error());
        }
        self.with(|d| {
            for dir in dir.map_or(&[Dir::Read, Dir::Write][..], |d| match d {
                Dir::Read => &[Dir::Read][..],
                Dir::Write => &[Dir::Write][..],
            }) {
                d.set_deadline(&self.pd, *dir, at);
            }
        });
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        if self.pd.is_closing() {
            return Err(closed_error());
        }
        if self.exclusive {
            // On the runtime's thread only (`with` panics elsewhere), before the descriptor is
            // touched: its sides move by plain stores there (see `pd`, "On an exclusive
            // driver"). Off that thread this always panicked, at the fd's close.
            return self.with(|d| {
                if self.pd.close() == Release::CloseFd {
                    d.close_fd(&self.pd);
                }
                Ok(())
            });
        }
        if self.pd.close() == Release::CloseFd {
            self.with(|d| d.close_fd(&self.pd));
        }
        Ok(())
    }

    /// Writes all of `buf`: a future of its own ([`WriteAll`]), as [`IoFd::read`].
    fn write_all<'a>(&'a self, buf: &'a [u8]) -> WriteAll<'a, P> {
        WriteAll {
            st: OpState::new(self, Dir::Write),
            buf,
        }
    }
}

impl<P: Poller + 'static> Drop for IoFd<P> {
    fn drop(&mut self) {
        if self.exclusive {
            // The descriptor is closed on the runtime's thread only (see `pd`, "On an exclusive
            // driver"): here if this is it, else by the driver's next turn, which finds it
            // among the orphans. No operation can be in flight (each borrows this value), and
            // no syscall holds a reference.
            let here = try_with_driver(|d: &Driver<P>| {
                let here = d.id() == self.driver_id;
                if here && self.pd.close() == Release::CloseFd {
                    d.close_fd(&self.pd);
                }
                here
            });
            if here != Some(true) && !self.pd.is_closing() {
                self.orphans.push(self.pd.clone());
            }
            return;
        }
        if self.pd.close() == Release::CloseFd {
            // Outside the runtime's threads the Poller is unreachable: the driver closes the fd
            // at its next turn (or when it is dropped).
            let closed = try_with_driver(|d: &Driver<P>| {
                let here = d.id() == self.driver_id;
                if here {
                    d.close_fd(&self.pd);
                }
                here
            });
            if closed != Some(true) {
                self.orphans.push(self.pd.clone());
            }
        }
    }
}

/// One operation's place on a side of its descriptor: the token it parks under (taken at its
/// first park), and what its next poll must do first. The one owner of a parked waiter: dropping
/// it, or [`end`](Self::end) when the operation completes, unparks it ([`Side::cancel`]).
///
/// [`Side::cancel`]: super::pd::Side::cancel
struct OpState<'a, P: Poller + 'static> {
    io: &'a IoFd<P>,
    dir: Dir,
    token: Option<u32>,
    /// Known to be drained: wait for an edge before the syscall (the short-read shortcut).
    skip_syscall: bool,
    /// It returned `Pending` from a park: the next poll first consumes the waking edge.
    parked: bool,
}

impl<'a, P: Poller + 'static> OpState<'a, P> {
    fn new(io: &'a IoFd<P>, dir: Dir) -> OpState<'a, P> {
        OpState {
            io,
            dir,
            token: None,
            skip_syscall: false,
            parked: false,
        }
    }

    /// The operation loop ([`IoFd::poll_op`]) for this operation, on side `dir` (its own,
    /// passed as a constant so that the loop is compiled for that side), and once the operation
    /// completes, [`end`](Self::end) it (as an [`Op`] dropped when its await completes).
    #[inline(always)]
    fn poll_to_end<R>(
        &mut self,
        cx: &mut Context<'_>,
        dir: Dir,
        op: &mut impl FnMut(&P, Fd) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let io = self.io;
        let r = io.poll_op(cx, dir, self, op);
        if r.is_ready() {
            self.end();
        }
        r
    }

    /// The operation completed: unpark it, and let the next one on this side start afresh.
    fn end(&mut self) {
        self.cancel();
        self.skip_syscall = false;
        self.parked = false;
    }

    fn cancel(&mut self) {
        if let Some(t) = self.token.take() {
            self.io.pd.side(self.dir).cancel(t);
        }
    }
}

impl<P: Poller + 'static> Drop for OpState<'_, P> {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// One operation: `f` retried until it does not return `EAGAIN`. Dropping it unparks it.
struct Op<'a, P: Poller + 'static, F> {
    st: OpState<'a, P>,
    f: F,
}

impl<P: Poller + 'static, R, F: FnMut(&P, Fd) -> io::Result<R> + Unpin> Future for Op<'_, P, F> {
    type Output = io::Result<R>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let this = self.get_mut();
        let (io, dir) = (this.st.io, this.st.dir);
        io.poll_op(cx, dir, &mut this.st, &mut this.f)
    }
}

/// A read ([`IoFd::read`]): an [`Op`] whose syscall is `read` into `buf`, with the short-read
/// shortcut's bookkeeping, written out by hand so that a read nests no `async fn` state around
/// it. It behaves as `async { skip = ...; let n = op.await?; note a short read; Ok(n) }`: the
/// shortcut is decided at the first poll, and the operation's waiter is cancelled when it
/// completes.
struct Read<'a, P: Poller + 'static> {
    st: OpState<'a, P>,
    buf: &'a mut [u8],
    /// Polled once already (the shortcut is decided).
    started: bool,
}

impl<P: Poller + 'static> Future for Read<'_, P> {
    type Output = io::Result<usize>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let io = this.st.io;
        if !this.started {
            this.started = true;
            // Not once the peer has half-closed: a short read may leave the end of file behind
            // it, and the event that announced it has already been consumed.
            this.st.skip_syscall =
                io.short_read_drains && io.take_read_drained() && !io.pd.read_closed();
        }
        let len = this.buf.len();
        let buf = &mut *this.buf;
        let read = &mut |p: &P, fd| p.read(fd, buf);
        let Poll::Ready(r) = this.st.poll_to_end(cx, Dir::Read, read) else {
            return Poll::Pending;
        };
        let n = r?;
        if io.short_read_drains && n > 0 && n < len {
            io.read_drained.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(n))
    }
}

/// [`IoFd::write_all`], written out by hand as [`Read`] is. It behaves as
/// `async { while !buf.is_empty() { let n = op(write buf).await?; if n == 0 { WriteZero }
/// buf = &buf[n..] } }`: each write is a fresh operation, whose waiter is cancelled when it
/// completes.
struct WriteAll<'a, P: Poller + 'static> {
    /// The current write's operation state (as in [`Op`]).
    st: OpState<'a, P>,
    /// What is left to write.
    buf: &'a [u8],
}

impl<P: Poller + 'static> Future for WriteAll<'_, P> {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while !this.buf.is_empty() {
            let buf = this.buf;
            // Each write is an operation of its own: the next one starts afresh.
            let write = &mut |p: &P, fd| p.write(fd, buf);
            let Poll::Ready(r) = this.st.poll_to_end(cx, Dir::Write, write) else {
                return Poll::Pending;
            };
            let n = r?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.buf = &buf[n..];
        }
        Poll::Ready(Ok(()))
    }
}

/// Waits for one edge.
struct Wait<'a, P: Poller + 'static> {
    /// Only its token is used: a wait makes no syscall.
    st: OpState<'a, P>,
}

impl<P: Poller + 'static> Future for Wait<'_, P> {
    type Output = io::Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let st = &mut self.get_mut().st;
        let (io, dir, token) = (st.io, st.dir, &mut st.token);
        let r = if io.exclusive {
            // On the runtime's thread only (`with` asserts it, before the descriptor is
            // touched), as every operation.
            io.with(|_| io.park(dir, token, cx.waker()))
        } else {
            io.park(dir, token, cx.waker())
        }
        .map_err(|e| e.into_io(dir.name()));
        if let Poll::Ready(Err(_)) = r {
            // An edge alone is not progress (it may be spurious): its user decides.
            st.io.with(|d| d.note_progress());
        }
        r
    }
}

fn how(h: Shutdown) -> i32 {
    match h {
        Shutdown::Read => SHUT_RD,
        Shutdown::Write => SHUT_WR,
        Shutdown::Both => SHUT_RDWR,
    }
}

/// The methods every net type has: the fd, deadlines, close.
macro_rules! common {
    ($t:ident) => {
        impl<P: Poller + 'static> $t<P> {
            /// The descriptor number.
            pub fn as_raw_fd(&self) -> Fd {
                self.io.fd
            }

            /// Sets both deadlines (`None` clears them). See the [module docs](self).
            ///
            /// # Errors
            /// The descriptor is closed.
            pub fn set_deadline(&self, at: Option<Duration>) -> io::Result<()> {
                self.io.set_deadline(None, at)
            }

            /// Sets the read (and accept) deadline.
            ///
            /// # Errors
            /// The descriptor is closed.
            pub fn set_read_deadline(&self, at: Option<Duration>) -> io::Result<()> {
                self.io.set_deadline(Some(Dir::Read), at)
            }

            /// Sets the write (and connect) deadline.
            ///
            /// # Errors
            /// The descriptor is closed.
            pub fn set_write_deadline(&self, at: Option<Duration>) -> io::Result<()> {
                self.io.set_deadline(Some(Dir::Write), at)
            }

            /// Closes the descriptor: every parked and later operation fails (kind
            /// `NotConnected`, "use of closed descriptor"). The fd number is released once no
            /// syscall on it is in flight. Dropping closes too; a value dropped outside its
            /// runtime's threads has its fd closed by the runtime's next turn.
            ///
            /// # Errors
            /// Already closed.
            pub fn close(&self) -> io::Result<()> {
                self.io.close()
            }
        }
    };
}

/// The methods of byte streams: read, write, write_all.
macro_rules! stream {
    ($t:ident) => {
        impl<P: Poller + 'static> $t<P> {
            /// Reads into `buf`, waiting until something is there; `Ok(0)` is end of file.
            ///
            /// # Errors
            /// The syscall's error (`ECONNRESET`, ...), `TimedOut` (deadline), `NotConnected`
            /// (closed), `ResourceBusy` (another read is parked).
            pub fn read<'a>(
                &'a self,
                buf: &'a mut [u8],
            ) -> impl Future<Output = io::Result<usize>> + 'a {
                self.io.read(buf)
            }
        }
    };
    (write $t:ident) => {
        impl<P: Poller + 'static> $t<P> {
            /// Writes some of `buf`, waiting for room; returns how much was taken.
            ///
            /// # Errors
            /// The syscall's error (`EPIPE`, `ECONNRESET`, ...), `TimedOut` (deadline),
            /// `NotConnected` (closed), `ResourceBusy` (another write is parked).
            pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
                self.io.op(Dir::Write, |p, fd| p.write(fd, buf)).await
            }

            /// Writes all of `buf`.
            ///
            /// # Errors
            /// As [`write`](Self::write); `WriteZero` if a write took nothing.
            pub fn write_all<'a>(
                &'a self,
                buf: &'a [u8],
            ) -> impl Future<Output = io::Result<()>> + 'a {
                self.io.write_all(buf)
            }
        }
    };
}

/// A TCP listening socket.
pub struct TcpListener<P: Poller + 'static> {
    io: IoFd<P>,
}

/// A TCP connection.
///
/// Reads and writes park the task until the descriptor is ready (no thread blocks); deadlines
/// bound them. The same code runs on real epoll and on the simulated kernel.
///
/// # Examples
///
/// A read deadline on the simulated kernel: nobody writes, and the read gives up after one
/// second of virtual time (no real time passes).
///
/// ```
/// use std::io::ErrorKind;
/// use std::time::Duration;
///
/// use netpoll::rt::{self, Runtime, TcpListener, TcpStream};
/// use netpoll_sim::Sim;
///
/// let mut rt = Runtime::new(Sim::new(3))?;
/// let err = rt.block_on(async {
///     let ln = TcpListener::<Sim>::bind("127.0.0.1:0".parse().unwrap())?;
///     let conn = TcpStream::<Sim>::connect(ln.local_addr()?).await?;
///     let (_server_side, _) = ln.accept().await?;
///     conn.set_read_deadline(Some(rt::now() + Duration::from_secs(1)))?;
///     let mut buf = [0u8; 8];
///     Ok::<_, std::io::Error>(conn.read(&mut buf).await.unwrap_err())
/// })??;
/// assert_eq!(err.kind(), ErrorKind::TimedOut);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpStream<P: Poller + 'static> {
    io: IoFd<P>,
}

/// One end of a Unix stream socketpair.
pub struct UnixStream<P: Poller + 'static> {
    io: IoFd<P>,
}

/// The read end of a pipe.
pub struct PipeReader<P: Poller + 'static> {
    io: IoFd<P>,
}

/// The write end of a pipe.
pub struct PipeWriter<P: Poller + 'static> {
    io: IoFd<P>,
}

macro_rules! debug {
    ($($t:ident),*) => {$(
        impl<P: Poller + 'static> fmt::Debug for $t<P> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).field("fd", &self.io.fd).finish()
            }
        }
    )*};
}

debug!(TcpListener, TcpStream, UnixStream, PipeReader, PipeWriter);
common!(TcpListener);
common!(TcpStream);
common!(UnixStream);
common!(PipeReader);
common!(PipeWriter);
stream!(TcpStream);
stream!(write TcpStream);
stream!(UnixStream);
stream!(write UnixStream);
stream!(PipeReader);
stream!(write PipeWriter);

impl<P: Poller + 'static> TcpListener<P> {
    /// `socket`, `bind`, `listen`: a listener on `addr` (port 0 picks a free one).
    ///
    /// # Errors
    /// `EADDRINUSE`, `EADDRNOTAVAIL`, `EMFILE`, ...
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn bind(addr: SocketAddrV4) -> io::Result<TcpListener<P>> {
        let fd = with_driver(|d: &Driver<P>| d.poller().tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC))?;
        let io: IoFd<P> = IoFd::new(fd)?;
        io.call(|p, fd| p.bind(fd, addr))?;
        io.call(|p, fd| p.listen(fd, BACKLOG))?;
        Ok(TcpListener { io })
    }

    /// The bound address.
    ///
    /// # Errors
    /// `getsockname`'s.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        self.io.call(|p, fd| p.local_addr(fd))
    }

    /// Waits for a connection.
    ///
    /// # Errors
    /// `accept4`'s, `TimedOut` (read deadline), `NotConnected` (closed).
    pub async fn accept(&self) -> io::Result<(TcpStream<P>, SocketAddrV4)> {
        let (fd, peer) = self
            .io
            .op(Dir::Read, |p, fd| {
                p.accept4(fd, SOCK_NONBLOCK | SOCK_CLOEXEC)
            })
            .await?;
        Ok((TcpStream { io: IoFd::new(fd)? }, peer))
    }
}

impl<P: Poller + 'static> TcpStream<P> {
    /// Connects to `addr`, waiting for the handshake (as Go's `connect`: park on the write
    /// side, then ask `SO_ERROR`, then confirm with `getpeername`).
    ///
    /// # Errors
    /// `ECONNREFUSED`, ...; wrap in [`super::timeout`] to bound the wait.
    ///
    /// # Panics
    /// Outside a runtime.
    pub async fn connect(addr: SocketAddrV4) -> io::Result<TcpStream<P>> {
        Self::connect_inner(None, addr).await
    }

    /// Connects to `addr` from `local` (`bind`, then `connect`): port 0 lets the kernel pick
    /// the port on `local`'s address. Each loopback address has its own 28,232 ephemeral
    /// ports, so a client opening more connections than that at once spreads them over
    /// `127.0.0.1`, `127.0.0.2`, ... (tokio's `TcpSocket::bind` then `connect`).
    ///
    /// ```no_run
    /// use std::net::{Ipv4Addr, SocketAddrV4};
    /// use netpoll::rt::TcpStream;
    /// use netpoll::Poller;
    ///
    /// async fn client<P: Poller + 'static>(i: u32, server: SocketAddrV4) -> std::io::Result<()> {
    ///     let ip = Ipv4Addr::new(127, 0, 0, 1 + (i / 20_000) as u8);
    ///     let conn = TcpStream::<P>::connect_from(SocketAddrV4::new(ip, 0), server).await?;
    ///     conn.write_all(b"ping").await
    /// }
    /// # let _ = client::<netpoll::NoKernel>;
    /// ```
    ///
    /// # Errors
    /// `bind`'s (`EADDRINUSE`, `EADDRNOTAVAIL` when `local`'s ports are all taken), then
    /// [`TcpStream::connect`]'s.
    ///
    /// # Panics
    /// Outside a runtime.
    pub async fn connect_from(local: SocketAddrV4, addr: SocketAddrV4) -> io::Result<TcpStream<P>> {
        Self::connect_inner(Some(local), addr).await
    }

    async fn connect_inner(
        local: Option<SocketAddrV4>,
        addr: SocketAddrV4,
    ) -> io::Result<TcpStream<P>> {
        let fd = with_driver(|d: &Driver<P>| d.poller().tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC))?;
        let s: TcpStream<P> = TcpStream { io: IoFd::new(fd)? };
        if let Some(local) = local {
            s.io.call(|p, fd| p.bind(fd, local))?;
        }
        match s.io.call(|p, fd| p.connect(fd, addr)) {
            Ok(()) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(errno::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        loop {
            s.io.wait(Dir::Write).await?;
            let err = s.io.call(|p, fd| p.take_socket_error(fd))?;
            let r = if err != 0 {
                Err(io::Error::from_raw_os_error(err))
            } else {
                match s.io.call(|p, fd| p.peer_addr(fd)) {
                    Ok(_) => Ok(()),
                    // A spurious edge: still connecting.
                    Err(e) if e.raw_os_error() == Some(errno::ENOTCONN) => continue,
                    Err(e) => Err(e),
                }
            };
            s.io.with(|d| d.note_progress());
            return r.map(|()| s);
        }
    }

    /// `shutdown(how)`: `Write` sends end of file to the peer (half-close).
    ///
    /// # Errors
    /// `ENOTCONN`, closed.
    pub fn shutdown(&self, h: Shutdown) -> io::Result<()> {
        self.io.call(|p, fd| p.shutdown(fd, how(h)))
    }

    /// `SO_LINGER`: `Some(0)` makes close reset the connection.
    ///
    /// # Errors
    /// Closed.
    pub fn set_linger(&self, secs: Option<u32>) -> io::Result<()> {
        self.io.call(|p, fd| p.set_linger(fd, secs))
    }

    /// The local address.
    ///
    /// # Errors
    /// `getsockname`'s.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        self.io.call(|p, fd| p.local_addr(fd))
    }

    /// The peer's address.
    ///
    /// # Errors
    /// `getpeername`'s.
    pub fn peer_addr(&self) -> io::Result<SocketAddrV4> {
        self.io.call(|p, fd| p.peer_addr(fd))
    }
}

impl<P: Poller + 'static> UnixStream<P> {
    /// A connected pair (`socketpair(AF_UNIX, SOCK_STREAM)`).
    ///
    /// # Errors
    /// `EMFILE`.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn pair() -> io::Result<(UnixStream<P>, UnixStream<P>)> {
        let [a, b] =
            with_driver(|d: &Driver<P>| d.poller().socketpair(SOCK_NONBLOCK | SOCK_CLOEXEC))?;
        let a = match IoFd::new(a) {
            Ok(a) => a,
            Err(e) => {
                with_driver(|d: &Driver<P>| d.poller().close(b))?;
                return Err(e);
            }
        };
        Ok((UnixStream { io: a }, UnixStream { io: IoFd::new(b)? }))
    }

    /// `shutdown(how)`.
    ///
    /// # Errors
    /// Closed.
    pub fn shutdown(&self, h: Shutdown) -> io::Result<()> {
        self.io.call(|p, fd| p.shutdown(fd, how(h)))
    }
}

/// A pipe: (read end, write end).
///
/// # Errors
/// `EMFILE`.
///
/// # Panics
/// Outside a runtime.
pub fn pipe<P: Poller + 'static>() -> io::Result<(PipeReader<P>, PipeWriter<P>)> {
    let [r, w] = with_driver(|d: &Driver<P>| d.poller().pipe2(O_NONBLOCK | O_CLOEXEC))?;
    let r = match IoFd::new(r) {
        Ok(r) => r,
        Err(e) => {
            with_driver(|d: &Driver<P>| d.poller().close(w))?;
            return Err(e);
        }
    };
    Ok((PipeReader { io: r }, PipeWriter { io: IoFd::new(w)? }))
}

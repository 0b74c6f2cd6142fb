//! [`ThreadedSim`]: the simulated kernel shared by the simulated threads, each call a switch
//! point.

use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use netpoll::sys::MSG_DONTWAIT;
use netpoll::{EpollEvent, Events, Fd, PollFd, Poller, Timespec};
use netpoll_sim::Sim;

use crate::report::FailureKind;
use crate::sched::{self, lock, Call, Shared, Tid, Wait};

/// The simulated kernel of one [`Runner::run`](crate::Runner::run), shared by its simulated
/// threads: a [`Poller`] whose every call is a switch point.
///
/// Clone it into each thread (clones share one kernel). Calls behave as on
/// [`Sim`], except that a call that would block does not move virtual time by itself: the
/// thread blocks in the scheduler and retries when it is woken (see the table), or when every
/// thread is blocked and time moves to the kernel's next event or the earliest deadline.
///
/// | call | blocks when | woken by |
/// |---|---|---|
/// | `epoll_wait`, `epoll_pwait`, `epoll_pwait2` with a timeout other than 0 | no event is ready (until the timeout) | the kernel, one waiter per wakeup of the instance (Linux's `ep->wq`) |
/// | `read`, `recv`, `write`, `accept4` on a blocking descriptor, `poll` | see below | any change another thread makes |
///
/// | call | blocks when |
/// |---|---|
/// | `read` on a blocking descriptor | it is not readable (`EPOLLIN`, `EPOLLHUP`, `EPOLLERR`, `EPOLLRDHUP`) |
/// | `write` on a blocking descriptor | it is not writable (`EPOLLOUT`, `EPOLLHUP`, `EPOLLERR`) |
/// | `accept4` on a blocking listener | no connection is queued |
///
/// Calling it from a thread that is not one of the run's simulated threads fails the run
/// ([`FailureKind::Outside`]) and panics in the caller.
///
/// # Examples
///
/// A thread blocked in `epoll_wait` is woken by another thread's write:
///
/// ```
/// use netpoll::{sys::*, EpollEvent, Events, Poller};
/// use netpoll_sim::Sim;
/// use netpoll_threads::Runner;
///
/// let out = Runner::new(3).run(Sim::new(3), |k| {
///     let [a, b] = k.socketpair(SOCK_NONBLOCK).unwrap();
///     let ep = k.epoll_create1(0).unwrap();
///     k.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN, 9))).unwrap();
///     let writer = netpoll_threads::spawn("writer", {
///         let k = k.clone();
///         move || k.write(a, b"x").unwrap()
///     });
///     let mut evs = [EpollEvent::EMPTY; 4];
///     let n = k.epoll_wait(ep, &mut evs, -1).unwrap();
///     assert_eq!((n, evs[0].data), (1, 9));
///     writer.join()
/// }).unwrap();
/// assert_eq!(out.value, 1);
/// ```
#[derive(Debug, Clone)]
pub struct ThreadedSim {
    pub(crate) shared: Arc<Shared>,
}

/// Whether a call's result may have changed the kernel's state (so blocked threads retry).
/// Conservative: a needless retry costs time, a missed one would be a false deadlock.
fn changed<T>(r: &io::Result<T>) -> bool {
    r.is_ok()
}

impl ThreadedSim {
    /// Runs `f` on the kernel without a switch point: for oracles (stranded registrations,
    /// readiness, statistics) and for inspecting the kernel after the run. It must not make
    /// calls that change the kernel (they would not wake blocked threads).
    pub fn with_sim<R>(&self, f: impl FnOnce(&Sim) -> R) -> R {
        f(&lock(&self.shared.sim))
    }

    /// The switch point before `call`: checks that the caller is one of this run's threads.
    fn enter(&self, call: Call) -> Tid {
        match sched::current() {
            Some((s, t)) if Arc::ptr_eq(&s, &self.shared) => {
                self.shared.switch(t, call);
                t
            }
            other => self.outside(call, other.is_some()),
        }
    }

    #[cold]
    fn outside(&self, call: Call, other_run: bool) -> ! {
        let who = sched::os_thread_name();
        let whose = if other_run {
            "a simulated thread of another run"
        } else {
            "a thread not started by netpoll_threads::spawn"
        };
        let msg = format!(
            "{who}, {whose}, called {call} on this run's kernel: only the run's simulated \
             threads may call it (start threads with netpoll_threads::spawn)"
        );
        {
            let mut st = lock(&self.shared.state);
            if !st.over {
                self.shared.fail(&mut st, FailureKind::Outside, msg.clone());
            }
        }
        panic!("{msg}");
    }

    /// A call that never blocks in the scheduler.
    fn call<T>(&self, call: Call, f: impl FnOnce(&Sim) -> io::Result<T>) -> io::Result<T> {
        self.enter(call);
        let r = f(&lock(&self.shared.sim));
        self.shared.after_call(changed(&r));
        r
    }

    /// A call on `fd` that blocks while `fd` is a blocking descriptor and not ready for `want`.
    /// Once blocked, the thread holds the open file (as Linux's `fdget` does for the whole
    /// call): if another thread closes `fd`, the call goes on on the file.
    fn blocking<T>(
        &self,
        call: Call,
        fd: Fd,
        want: Events,
        f: impl Fn(&Sim, Fd) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut hold = None;
        loop {
            let me = self.enter(call);
            let r = {
                let sim = lock(&self.shared.sim);
                let attempt = |fd: Fd| {
                    let would_block = sim.is_nonblocking(fd).is_ok_and(|nb| !nb)
                        && sim.readiness(fd).is_ok_and(|r| !r.intersects(want));
                    if would_block {
                        None
                    } else {
                        Some(f(&sim, fd))
                    }
                };
                let r = match &hold {
                    Some(h) => sim.on_held(fd, h, attempt),
                    None => attempt(fd),
                };
                if r.is_some() {
                    if let Some(h) = hold.take() {
                        sim.release_file(h);
                    }
                } else if hold.is_none() {
                    hold = sim.hold_file(fd).ok();
                }
                r
            };
            match r {
                Some(r) => {
                    self.shared.after_call(changed(&r));
                    return r;
                }
                None => self.shared.block(
                    me,
                    call,
                    Wait::Kernel {
                        deadline_ns: None,
                        queued: false,
                    },
                ),
            }
        }
    }
}

impl ThreadedSim {
    /// The body of `epoll_wait`, `epoll_pwait` and `epoll_pwait2`: `timeout_ns` `None` waits
    /// for ever.
    fn ep_poll(
        &self,
        call: Call,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ns: Option<u64>,
    ) -> io::Result<usize> {
        let me = self.enter(call);
        let (w, deadline_ns) = {
            let sim = lock(&self.shared.sim);
            let w = sim.epoll_wait_begin(epfd, events.len(), u64::from(me.0));
            (w, timeout_ns.map(|t| sim.now_ns().saturating_add(t)))
        };
        let w = match w {
            Ok(w) => w,
            Err(e) => {
                self.shared.after_call(false);
                return Err(e);
            }
        };
        let mut first = true;
        loop {
            if !first {
                self.enter(call);
            }
            first = false;
            let (r, now_ns) = {
                let sim = lock(&self.shared.sim);
                (sim.epoll_wait_try(&w, events), sim.now_ns())
            };
            match r {
                Ok(0) if timeout_ns != Some(0) && deadline_ns.is_none_or(|d| now_ns < d) => {
                    lock(&self.shared.sim).epoll_wait_sleep(&w);
                    // A try can wake another waiter (a level-triggered item re-queued).
                    self.shared.after_call(false);
                    self.shared.block(
                        me,
                        call,
                        Wait::Kernel {
                            deadline_ns,
                            queued: true,
                        },
                    );
                }
                r => {
                    lock(&self.shared.sim).epoll_wait_end(w);
                    self.shared.after_call(matches!(r, Ok(n) if n > 0));
                    return r;
                }
            }
        }
    }
}

impl Poller for ThreadedSim {
    fn name(&self) -> &'static str {
        "sim-threads"
    }

    fn epoll_create1(&self, flags: i32) -> io::Result<Fd> {
        self.call(Call::bare("epoll_create1"), |s| s.epoll_create1(flags))
    }

    fn epoll_ctl(&self, epfd: Fd, op: i32, fd: Fd, event: Option<EpollEvent>) -> io::Result<()> {
        self.call(Call::on("epoll_ctl", epfd, i64::from(op)), |s| {
            s.epoll_ctl(epfd, op, fd, event)
        })
    }

    /// Linux's `ep_poll` with the scheduler: tries with timeout 0 at each switch point; while
    /// nothing is ready and the timeout has not passed, the thread goes on the instance's wait
    /// queue (at the head) and blocks until a wakeup of the instance takes it off (one wakeup,
    /// one waiter) or the timeout passes. The deadline is taken at the first try; the thread
    /// holds the instance for the whole call, so another thread's `close(epfd)` does not end it.
    fn epoll_wait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
    ) -> io::Result<usize> {
        let timeout_ns = u64::try_from(timeout_ms).ok().map(|t| t * 1_000_000);
        self.ep_poll(
            Call::on("epoll_wait", epfd, i64::from(timeout_ms)),
            epfd,
            events,
            timeout_ns,
        )
    }

    /// As `epoll_wait`; the mask is accepted and ignored (no signals on the simulated kernel).
    fn epoll_pwait(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout_ms: i32,
        _sigmask: Option<u64>,
    ) -> io::Result<usize> {
        let timeout_ns = u64::try_from(timeout_ms).ok().map(|t| t * 1_000_000);
        self.ep_poll(
            Call::on("epoll_pwait", epfd, i64::from(timeout_ms)),
            epfd,
            events,
            timeout_ns,
        )
    }

    /// As `epoll_wait`, with the deadline to the nanosecond of virtual time.
    fn epoll_pwait2(
        &self,
        epfd: Fd,
        events: &mut [EpollEvent],
        timeout: Option<Timespec>,
        _sigmask: Option<u64>,
    ) -> io::Result<usize> {
        let arg = timeout
            .and_then(|t| t.as_nanos())
            .map_or(-1, |ns| i64::try_from(ns).unwrap_or(i64::MAX));
        let call = Call::on("epoll_pwait2", epfd, arg);
        let timeout_ns = match timeout.map(|t| t.as_nanos()) {
            Some(None) => {
                self.enter(call);
                return Err(netpoll::sys::err(netpoll::sys::errno::EINVAL));
            }
            Some(Some(ns)) => Some(ns),
            None => None,
        };
        self.ep_poll(call, epfd, events, timeout_ns)
    }

    fn socketpair(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.call(Call::bare("socketpair"), |s| s.socketpair(flags))
    }

    fn pipe2(&self, flags: i32) -> io::Result<[Fd; 2]> {
        self.call(Call::bare("pipe2"), |s| s.pipe2(flags))
    }

    fn eventfd(&self, initval: u32, flags: i32) -> io::Result<Fd> {
        self.call(Call::bare("eventfd"), |s| s.eventfd(initval, flags))
    }

    fn tcp_socket(&self, flags: i32) -> io::Result<Fd> {
        self.call(Call::bare("tcp_socket"), |s| s.tcp_socket(flags))
    }

    fn bind(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        self.call(Call::on("bind", fd, i64::from(addr.port())), |s| {
            s.bind(fd, addr)
        })
    }

    fn listen(&self, fd: Fd, backlog: i32) -> io::Result<()> {
        self.call(Call::on("listen", fd, i64::from(backlog)), |s| {
            s.listen(fd, backlog)
        })
    }

    /// A blocking `connect` lets virtual time pass inside the call, as on one thread (see the
    /// crate's "Not modelled").
    fn connect(&self, fd: Fd, addr: SocketAddrV4) -> io::Result<()> {
        let call = Call::on("connect", fd, i64::from(addr.port()));
        self.enter(call);
        let r = lock(&self.shared.sim).connect(fd, addr);
        // EINPROGRESS starts a handshake: the kernel changed even though the call "failed".
        self.shared.after_call(true);
        r
    }

    fn accept4(&self, fd: Fd, flags: i32) -> io::Result<(Fd, SocketAddrV4)> {
        self.blocking(
            Call::on("accept4", fd, i64::from(flags)),
            fd,
            Events::IN,
            |s, fd| s.accept4(fd, flags),
        )
    }

    fn local_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.enter(Call::on("local_addr", fd, 0));
        lock(&self.shared.sim).local_addr(fd)
    }

    fn peer_addr(&self, fd: Fd) -> io::Result<SocketAddrV4> {
        self.enter(Call::on("peer_addr", fd, 0));
        lock(&self.shared.sim).peer_addr(fd)
    }

    fn take_socket_error(&self, fd: Fd) -> io::Result<i32> {
        self.call(Call::on("take_socket_error", fd, 0), |s| {
            s.take_socket_error(fd)
        })
    }

    fn set_linger(&self, fd: Fd, linger_secs: Option<u32>) -> io::Result<()> {
        let arg = linger_secs.map_or(-1, i64::from);
        self.call(Call::on("set_linger", fd, arg), |s| {
            s.set_linger(fd, linger_secs)
        })
    }

    fn read(&self, fd: Fd, buf: &mut [u8]) -> io::Result<usize> {
        let call = Call::on("read", fd, buf.len() as i64);
        let want = Events::IN | Events::HUP | Events::ERR | Events::RDHUP;
        // `blocking` takes `Fn`; the buffer is borrowed mutably by exactly one successful try.
        let buf = std::cell::RefCell::new(buf);
        self.blocking(call, fd, want, |s, fd| s.read(fd, &mut buf.borrow_mut()))
    }

    fn recv(&self, fd: Fd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
        let call = Call::on("recv", fd, buf.len() as i64);
        let buf = std::cell::RefCell::new(buf);
        if flags & MSG_DONTWAIT != 0 {
            return self.call(call, |s| s.recv(fd, &mut buf.borrow_mut(), flags));
        }
        let want = Events::IN | Events::HUP | Events::ERR | Events::RDHUP;
        self.blocking(call, fd, want, |s, fd| {
            s.recv(fd, &mut buf.borrow_mut(), flags)
        })
    }

    /// As `epoll_wait`: polls with timeout 0 at each switch point and blocks in the scheduler
    /// while nothing is ready and the timeout has not passed.
    fn poll(&self, fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
        let call = Call::bare("poll");
        let mut deadline_ns = None;
        loop {
            let me = self.enter(call);
            let (r, now_ns) = {
                let sim = lock(&self.shared.sim);
                (sim.poll(fds, 0), sim.now_ns())
            };
            let d = *deadline_ns.get_or_insert_with(|| {
                u64::try_from(timeout_ms)
                    .ok()
                    .map(|t| now_ns + t * 1_000_000)
            });
            match r {
                Ok(0) if timeout_ms != 0 && d.is_none_or(|d| now_ns < d) => {
                    self.shared.block(
                        me,
                        call,
                        Wait::Kernel {
                            deadline_ns: d,
                            queued: false,
                        },
                    );
                }
                r => return r,
            }
        }
    }

    fn fionread(&self, fd: Fd) -> io::Result<usize> {
        self.call(Call::on("FIONREAD", fd, 0), |s| s.fionread(fd))
    }

    fn get_status_flags(&self, fd: Fd) -> io::Result<i32> {
        self.call(Call::on("F_GETFL", fd, 0), |s| s.get_status_flags(fd))
    }

    fn set_status_flags(&self, fd: Fd, flags: i32) -> io::Result<()> {
        self.call(Call::on("F_SETFL", fd, i64::from(flags)), |s| {
            s.set_status_flags(fd, flags)
        })
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> io::Result<usize> {
        let call = Call::on("write", fd, buf.len() as i64);
        let want = Events::OUT | Events::HUP | Events::ERR;
        self.blocking(call, fd, want, |s, fd| s.write(fd, buf))
    }

    fn shutdown(&self, fd: Fd, how: i32) -> io::Result<()> {
        self.call(Call::on("shutdown", fd, i64::from(how)), |s| {
            s.shutdown(fd, how)
        })
    }

    fn close(&self, fd: Fd) -> io::Result<()> {
        self.call(Call::on("close", fd, 0), |s| s.close(fd))
    }

    fn dup(&self, fd: Fd) -> io::Result<Fd> {
        self.call(Call::on("dup", fd, 0), |s| s.dup(fd))
    }

    fn dup2(&self, oldfd: Fd, newfd: Fd) -> io::Result<Fd> {
        self.call(Call::on("dup2", oldfd, i64::from(newfd)), |s| {
            s.dup2(oldfd, newfd)
        })
    }

    fn dup3(&self, oldfd: Fd, newfd: Fd, flags: i32) -> io::Result<Fd> {
        self.call(Call::on("dup3", oldfd, i64::from(newfd)), |s| {
            s.dup3(oldfd, newfd, flags)
        })
    }

    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> io::Result<()> {
        self.call(
            Call::on("set_nonblocking", fd, i64::from(nonblocking)),
            |s| s.set_nonblocking(fd, nonblocking),
        )
    }

    /// Not a switch point: reading the clock changes nothing another thread could see.
    fn now(&self) -> Duration {
        lock(&self.shared.sim).now()
    }

    fn short_read_drains(&self) -> bool {
        lock(&self.shared.sim).short_read_drains()
    }

    /// The simulated kernel's look-ahead, as one thread's loop would get it alone: a hint that
    /// changes nothing, so not a switch point.
    fn upcoming(&self, out: &mut [u64]) -> usize {
        lock(&self.shared.sim).upcoming(out)
    }
}

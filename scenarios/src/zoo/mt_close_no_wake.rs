//! `zoo-mt-close-no-wake`: a Go-style netpoller on simulated threads (a poller thread blocked
//! in `epoll_wait(-1)`, a reader per connection parked on its poll descriptor) and a close
//! racing with a parked reader. Closing a connection marks its poll descriptor closed and
//! removes it from the epoll set (the registration a `close` would drop: Linux reports nothing
//! for a descriptor that leaves the set). The bug: the closer does not wake the reader parked on
//! the descriptor, trusting the poller to report the close, which it never will; the reader
//! sleeps for ever. It only shows when the close lands while the reader is parked: a reader
//! between its failed read and its park sees the closed flag under the descriptor's lock. The
//! fixed twin wakes the parked reader (Go's `poll_runtime_pollUnblock` → `netpollunblock`).
//!
//! Threads: the poller, one reader per connection (`conns`), and the main thread, which writes
//! `msgs` messages into each connection's peer, then closes the connections, joins the readers
//! and stops the poller through its eventfd. A lost wake leaves the reader parked and the main
//! thread in `join`: the scheduler reports the deadlock with each thread's blocking call.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use netpoll::sys::{
    errno::EAGAIN, errno_of, Events, EFD_CLOEXEC, EFD_NONBLOCK, EPOLL_CLOEXEC, EPOLL_CTL_ADD,
    EPOLL_CTL_DEL, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Fd, Poller};
use netpoll_threads::sync::Mutex;
use netpoll_threads::{current, park, spawn, Thread, ThreadedSim};

use super::threaded::Cfg;
use crate::oracle::{io_fail, Failure};

/// The token of the poller's wake eventfd.
const WAKE: u64 = u64::MAX;

#[derive(Default)]
struct PdState {
    /// An edge came while nobody was parked.
    ready: bool,
    closed: bool,
    waiter: Option<Thread>,
}

/// A connection's poll descriptor.
#[derive(Default)]
struct Pd {
    st: Mutex<PdState>,
}

impl Pd {
    /// The poller saw the descriptor readable.
    fn notify(&self) {
        let w = {
            let mut st = self.st.lock();
            let w = st.waiter.take();
            if w.is_none() {
                st.ready = true;
            }
            w
        };
        if let Some(w) = w {
            w.unpark();
        }
    }

    /// The reader met `EAGAIN`: parks until an edge or the close. `false`: closed.
    fn park(&self) -> bool {
        {
            let mut st = self.st.lock();
            if st.closed {
                return false;
            }
            if std::mem::take(&mut st.ready) {
                return true;
            }
            st.waiter = Some(current());
        }
        park();
        !self.st.lock().closed
    }

    /// The connection is closed by another thread.
    fn close(&self, fixed: bool) {
        let w = {
            let mut st = self.st.lock();
            st.closed = true;
            st.waiter.take()
        };
        if fixed {
            if let Some(w) = w {
                w.unpark();
            }
        }
        // THE BUG (fixed=0): the parked reader is left asleep, for a poller event that the
        // removal from the epoll set guarantees will never come.
    }
}

/// The program: see the module docs.
pub(super) fn body(k: ThreadedSim, cfg: Cfg) -> Result<u64, Failure> {
    let epfd = k
        .epoll_create1(EPOLL_CLOEXEC)
        .map_err(|e| io_fail("epoll_create1", e))?;
    let wake = k
        .eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        .map_err(|e| io_fail("eventfd", e))?;
    k.epoll_ctl(
        epfd,
        EPOLL_CTL_ADD,
        wake,
        Some(EpollEvent::new(Events::IN | Events::ET, WAKE)),
    )
    .map_err(|e| io_fail("registering the eventfd", e))?;
    let mut conns = Vec::new();
    for i in 0..cfg.conns {
        let [a, b] = k
            .socketpair(SOCK_NONBLOCK | SOCK_CLOEXEC)
            .map_err(|e| io_fail("socketpair", e))?;
        k.epoll_ctl(
            epfd,
            EPOLL_CTL_ADD,
            a,
            Some(EpollEvent::new(Events::IN | Events::RDHUP | Events::ET, i)),
        )
        .map_err(|e| io_fail("registering a connection", e))?;
        conns.push((a, b, Arc::new(Pd::default())));
    }
    let pds: Arc<Vec<Arc<Pd>>> = Arc::new(conns.iter().map(|c| c.2.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (k, pds, stop) = (k.clone(), pds.clone(), stop.clone());
        spawn("poller", move || -> Result<(), Failure> {
            let mut evs = [EpollEvent::default(); 16];
            loop {
                let n = k
                    .epoll_wait(epfd, &mut evs, -1)
                    .map_err(|e| io_fail("epoll_wait", e))?;
                for ev in &evs[..n] {
                    if ev.data == WAKE {
                        let mut buf = [0u8; 8];
                        let _ = k.read(wake, &mut buf);
                        if stop.load(SeqCst) {
                            return Ok(());
                        }
                    } else {
                        pds[ev.data as usize].notify();
                    }
                }
            }
        })
    };
    let readers: Vec<_> = conns
        .iter()
        .enumerate()
        .map(|(i, &(fd, _, ref pd))| {
            let (k, pd) = (k.clone(), pd.clone());
            spawn(format!("reader-{i}"), move || {
                read_until_closed(&k, fd, &pd)
            })
        })
        .collect();
    let msg = [7u8; 16];
    for _ in 0..cfg.msgs {
        for &(_, peer, _) in &conns {
            k.write(peer, &msg)
                .map_err(|e| io_fail("writing a message", e))?;
        }
    }
    // Close every connection: off the epoll set, then its poll descriptor (Go's close order).
    for &(fd, _, ref pd) in &conns {
        k.epoll_ctl(epfd, EPOLL_CTL_DEL, fd, None)
            .map_err(|e| io_fail("removing a connection", e))?;
        pd.close(cfg.fixed);
    }
    let mut total = 0;
    for r in readers {
        total += r.join()?;
    }
    stop.store(true, SeqCst);
    k.write(wake, &1u64.to_ne_bytes())
        .map_err(|e| io_fail("waking the poller", e))?;
    poller.join()?;
    for (a, b, _) in conns {
        let _ = k.close(a);
        let _ = k.close(b);
    }
    let _ = k.close(wake);
    let _ = k.close(epfd);
    Ok(total)
}

/// A reader: reads until its descriptor is closed; returns the bytes it read.
fn read_until_closed(k: &ThreadedSim, fd: Fd, pd: &Pd) -> Result<u64, Failure> {
    let mut buf = [0u8; 64];
    let mut total = 0;
    loop {
        match k.read(fd, &mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if errno_of(&e) == Some(EAGAIN) => {
                if !pd.park() {
                    return Ok(total);
                }
            }
            Err(e) => return Err(io_fail(format!("reading fd {fd}"), e)),
        }
    }
}

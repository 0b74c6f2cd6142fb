//! The zoo's clients: each sends its connection's byte stream and checks the echo (a staller
//! stops mid-message and waits for the server to close it).

use std::io;

use netpoll::sys::{
    errno::{EAGAIN, EINPROGRESS},
    errno_of, Events, EPOLL_CTL_ADD, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Poller};

use super::{Client, Phase, Zoo, CLIENT};
use crate::clients::pattern;
use crate::oracle::{io_fail, Failure};

impl Zoo<'_> {
    pub(super) fn connect(&mut self, i: usize) -> Result<(), Failure> {
        let k = self.k;
        let fd = k
            .tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC)
            .map_err(|e| io_fail("client socket", e))?;
        self.clients[i].fd = fd;
        let interest = Events::IN | Events::OUT | Events::RDHUP | Events::ET;
        k.epoll_ctl(
            self.ep,
            EPOLL_CTL_ADD,
            fd,
            Some(EpollEvent::new(interest, CLIENT | i as u64)),
        )
        .map_err(|e| io_fail("epoll_ctl ADD client", e))?;
        match k.connect(fd, self.addr) {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(EINPROGRESS) => Ok(()),
            Err(e) => Err(io_fail(format!("connect client {i}"), e)),
        }
    }

    /// The request bytes client `c` may have written by now: one message at a time.
    pub(super) fn send_target(&self, c: &Client) -> u64 {
        ((c.recv / self.cfg.size + 1) * self.cfg.size).min(c.send_total)
    }

    pub(super) fn client_event(&mut self, i: usize, ev: Events) -> Result<(), Failure> {
        match self.clients[i].phase {
            Phase::Done => Ok(()),
            Phase::Connecting => {
                let fd = self.clients[i].fd;
                let err = self
                    .k
                    .take_socket_error(fd)
                    .map_err(|e| io_fail("SO_ERROR", e))?;
                if err != 0 {
                    return Err(io_fail(
                        format!("connecting client {i}"),
                        io::Error::from_raw_os_error(err),
                    ));
                }
                if !ev.contains(Events::OUT) {
                    return Ok(()); // spurious
                }
                self.clients[i].phase = Phase::Active;
                self.client_step(i)
            }
            Phase::Active | Phase::Stalled => self.client_step(i),
        }
    }

    /// Reads and writes until `EAGAIN`.
    pub(super) fn client_step(&mut self, i: usize) -> Result<(), Failure> {
        let fd = self.clients[i].fd;
        loop {
            let n = match self.k.read(fd, &mut self.buf) {
                Ok(0) => return self.client_eof(i),
                Ok(n) => n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) => return Err(io_fail(format!("client {i} read"), e)),
            };
            let c = &mut self.clients[i];
            if c.recv + n as u64 > c.sent {
                return Err(Failure::Integrity {
                    conn: i,
                    offset: c.recv,
                    detail: format!("{n} bytes arrived; only {} are owed", c.sent - c.recv),
                });
            }
            if let Some(j) = (0..n).find(|&j| self.buf[j] != pattern(c.key, c.recv + j as u64)) {
                return Err(Failure::Integrity {
                    conn: i,
                    offset: c.recv + j as u64,
                    detail: "a byte differs from the request (lost or reordered bytes)".into(),
                });
            }
            c.recv += n as u64;
            self.bytes += n as u64;
        }
        loop {
            let c = &self.clients[i];
            let target = self.send_target(c);
            if c.sent >= target {
                break;
            }
            let len = ((target - c.sent) as usize).min(self.buf.len());
            let (key, sent) = (c.key, c.sent);
            for (j, b) in self.buf[..len].iter_mut().enumerate() {
                *b = pattern(key, sent + j as u64);
            }
            match self.k.write(fd, &self.buf[..len]) {
                Ok(n) => {
                    self.clients[i].sent += n as u64;
                    self.bytes_sent += n as u64;
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) => return Err(io_fail(format!("client {i} write"), e)),
            }
        }
        let per_conn = self.cfg.msgs * self.cfg.size;
        let c = &mut self.clients[i];
        if c.send_total < per_conn && c.sent == c.send_total {
            c.phase = Phase::Stalled;
        }
        if c.recv == per_conn {
            self.client_close(i)?;
        }
        Ok(())
    }

    pub(super) fn client_eof(&mut self, i: usize) -> Result<(), Failure> {
        let c = &self.clients[i];
        if c.phase != Phase::Stalled || c.recv != c.sent {
            return Err(Failure::Integrity {
                conn: i,
                offset: c.recv,
                detail: format!(
                    "the server closed early (sent {} of {} bytes, {} echoed)",
                    c.sent, c.send_total, c.recv
                ),
            });
        }
        self.client_close(i)
    }

    pub(super) fn client_close(&mut self, i: usize) -> Result<(), Failure> {
        let c = &mut self.clients[i];
        c.phase = Phase::Done;
        let fd = std::mem::replace(&mut c.fd, -1);
        self.done += 1;
        self.k
            .close(fd)
            .map_err(|e| io_fail(format!("closing client {i}"), e))
    }
}

//! The client state machines: connect (and connect again), write the request stream, read and
//! check the answer, half-close, reset, stall, read slowly, hold, close. See [`super::Phase`].

use std::cmp::Reverse;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{
    errno::*, errno_of, Events, EPOLL_CTL_ADD, SHUT_WR, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Poller};

use super::pattern::{check_pattern, fill_pattern, pattern};
use super::{ClientMode, Clients, Phase, Stop, RECONNECT_TICK, TOKEN};
use crate::oracle::{io_fail, Failure};

impl<P: Poller + ?Sized> Clients<'_, P> {
    fn now_ns(&self) -> u64 {
        self.k.now().as_nanos() as u64
    }

    /// Client `i` starts: it takes a place in the connect window and makes its first connection.
    pub(super) fn connect(&mut self, i: usize) -> Result<(), Failure> {
        self.connecting += 1;
        if let Some(c) = self.cold.get_mut(i) {
            c.first_connect_ns = self.k.now().as_nanos() as u64;
        }
        self.open_socket(i)
    }

    /// Opens client `i`'s socket, registers it and starts `connect` (its first connection, or a
    /// new one after a [`Reconnect`](super::Reconnect) backoff).
    pub(super) fn open_socket(&mut self, i: usize) -> Result<(), Failure> {
        let k = self.k;
        let fd = k
            .tcp_socket(SOCK_NONBLOCK | SOCK_CLOEXEC)
            .map_err(|e| io_fail(format!("socket for client {i}"), e))?;
        if self.mix.conns > 20_000 {
            // 28,232 ephemeral ports per address: spread clients over 127.0.0.1, .2, ...,
            // 10,000 each, so that finding a free port stays cheap.
            let ip = Ipv4Addr::new(127, 0, 0, 1 + (i / 10_000) as u8);
            k.bind(fd, SocketAddrV4::new(ip, 0))
                .map_err(|e| io_fail(format!("bind for client {i}"), e))?;
        }
        let c = &mut self.clients[i];
        c.fd = fd;
        c.phase = Phase::Connecting;
        let interest = Events::IN | Events::OUT | Events::RDHUP | Events::ET;
        let token = TOKEN | i as u64;
        k.epoll_ctl(
            self.ep,
            EPOLL_CTL_ADD,
            fd,
            Some(EpollEvent::new(interest, token)),
        )
        .map_err(|e| io_fail(format!("epoll_ctl ADD client {i}"), e))?;
        match k.connect(fd, self.addr) {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(EINPROGRESS) => {}
            Err(e) => return Err(io_fail(format!("connect for client {i}"), e)),
        }
        if self.mix.label_fds {
            let at = self.now_ns();
            self.labels.push((at, fd, i, false));
            if let Ok(a) = k.local_addr(fd) {
                self.ports.insert(a, i);
            }
        }
        Ok(())
    }

    /// The request bytes a client may have written by now.
    pub(super) fn send_target(&self, i: usize) -> u64 {
        let factor = u64::from(self.mix.reply_factor.max(1));
        let c = &self.clients[i];
        let limit = match self.mode(i) {
            ClientMode::HalfClose => c.send_total,
            // `pipeline` messages ahead (1: the next once the previous one's answer is in).
            _ => (c.recv / (self.mix.size * factor) + self.mix.pipeline.max(1)) * self.mix.size,
        };
        limit.min(c.send_total)
    }

    /// Runs client `i`'s state machine after an event (edge-triggered: read and write until
    /// `EAGAIN`).
    pub(super) fn drive(&mut self, i: usize, ready: Events) -> Result<(), Failure> {
        let c = &self.clients[i];
        match c.phase {
            Phase::Connecting => {
                let fd = c.fd;
                let err = self
                    .k
                    .take_socket_error(fd)
                    .map_err(|e| io_fail("SO_ERROR", e))?;
                if err == 0 && !ready.contains(Events::OUT) {
                    return Ok(()); // a spurious event: still connecting
                }
                if err == ETIMEDOUT && self.may_reconnect(i) {
                    // The server was too busy for every SYN retransmission.
                    return self.reconnect(i);
                }
                if err != 0 {
                    return Err(self.connect_failed(i, "connecting", err));
                }
                if self.clients[i].send_total == 0 && !self.established(fd)? {
                    // A spurious `OUT` (epoll may report one): the handshake is still under
                    // way. A client that writes proves its connection by its first write (one
                    // tried too early says EAGAIN, and the real edge follows); one that will
                    // write nothing (a reset at byte 0, an idle client) would close or hold a
                    // connection the server never saw, so it asks.
                    return Ok(());
                }
                self.connecting -= 1;
                self.clients[i].phase = Phase::Active;
                if let ClientMode::SlowReader { chunk, .. } = self.mode(i) {
                    self.cold[i].budget = chunk;
                }
                self.step(i, Some(ready))
            }
            Phase::Active => self.step(i, Some(ready)),
            Phase::Holding => self.check_held(i),
            // Done: the fd is closed; the event was collected before.
            _ => Ok(()),
        }
    }

    /// Reads and writes until `EAGAIN`, then moves the client on if it is finished.
    ///
    /// `ready` is the event that brought us here (`None`: a timer). Two shortcuts save a
    /// syscall each without breaking the edge-triggered rule: an event that does not report
    /// `IN` (nor `RDHUP`, `HUP`, `ERR`) means nothing is buffered yet, and its edge is still to
    /// come; a read that returns less than it asked for emptied the receive queue, so unless
    /// the event reported a FIN (`RDHUP`: the end of file may sit behind the data) the next
    /// read would only say `EAGAIN`. Both hold on Linux and on the simulated kernel, where
    /// every arriving segment is a wakeup. The server ([`EchoServer`]) does not take them: it
    /// reads until `EAGAIN`, the plain rule, as the example to copy.
    pub(super) fn step(&mut self, i: usize, ready: Option<Events>) -> Result<(), Failure> {
        let factor = u64::from(self.mix.reply_factor.max(1));
        let fd = self.clients[i].fd;
        let (key, mode) = (self.key(i), self.mode(i));
        let slow = matches!(mode, ClientMode::SlowReader { .. });
        let readable = Events::IN | Events::RDHUP | Events::HUP | Events::ERR;
        let skip_read = ready.is_some_and(|r| !r.intersects(readable));
        let short_read_drains = self.mix.short_read_drains
            && ready.is_some_and(|r| !r.intersects(Events::RDHUP | Events::HUP | Events::ERR));
        // Read everything there is (a slow reader: up to its budget).
        loop {
            if skip_read {
                break;
            }
            if self.clients[i].phase != Phase::Active {
                return Ok(());
            }
            let want = if slow {
                self.cold[i].budget.min(self.buf.len())
            } else {
                self.buf.len()
            };
            if want == 0 {
                break;
            }
            let n = match self.k.read(fd, &mut self.buf[..want]) {
                Ok(0) => return self.on_eof(i),
                Ok(n) => n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e)
                    if matches!(errno_of(&e), Some(ECONNRESET | EPIPE))
                        && self.clients[i].stop == Stop::Stall =>
                {
                    return self.on_eof(i);
                }
                Err(e)
                    if matches!(errno_of(&e), Some(ECONNRESET | EPIPE | ETIMEDOUT))
                        && self.may_reconnect(i) =>
                {
                    // Reset, or timed out: the handshake completed on this side, but the full
                    // accept queue never took it and the server gave up on it.
                    return self.reconnect(i);
                }
                Err(e) => return Err(self.io_failed(i, "read", e)),
            };
            let c = &mut self.clients[i];
            let expected_total = c.sent * factor;
            let base = c.recv;
            if base + n as u64 > expected_total {
                return Err(Failure::Integrity {
                    conn: i,
                    offset: base,
                    detail: format!(
                        "read {n} bytes but only {} of the answer are owed (duplicated bytes?)",
                        expected_total - base
                    ),
                });
            }
            let bad = if factor == 1 {
                check_pattern(&self.buf[..n], key, base)
            } else {
                (0..n).find(|&j| self.buf[j] != pattern(key, (base + j as u64) / factor))
            };
            if let Some(j) = bad {
                let off = base + j as u64;
                let (want, got) = (pattern(key, off / factor), self.buf[j]);
                return Err(Failure::Integrity {
                    conn: i,
                    offset: off,
                    detail: format!(
                        "expected {want:#04x}, got {got:#04x} (lost or reordered bytes)"
                    ),
                });
            }
            c.recv += n as u64;
            if slow {
                self.cold[i].budget -= n;
            }
            self.stats.bytes += n as u64;
            if n < want && short_read_drains {
                break;
            }
        }
        // Write what may be written now (the target depends on what was read, not on what
        // this loop writes).
        let target = self.send_target(i);
        loop {
            let c = &self.clients[i];
            if c.sent >= target || c.shut_wr {
                break;
            }
            let len = ((target - c.sent) as usize).min(self.buf.len());
            let sent = c.sent;
            fill_pattern(&mut self.buf[..len], key, sent);
            match self.k.write(fd, &self.buf[..len]) {
                Ok(n) => {
                    self.clients[i].sent += n as u64;
                    self.stats.bytes_sent += n as u64;
                }
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e)
                    if matches!(errno_of(&e), Some(ECONNRESET | EPIPE | ETIMEDOUT))
                        && self.may_reconnect(i) =>
                {
                    // Reset, or timed out: the handshake completed on this side, but the full
                    // accept queue never took it and the server gave up on it.
                    return self.reconnect(i);
                }
                Err(e) => return Err(self.io_failed(i, "write", e)),
            }
        }
        let c = &self.clients[i];
        let all_sent = c.sent == c.send_total;
        match c.stop {
            Stop::Reset if all_sent => {
                self.k
                    .set_linger(fd, Some(0))
                    .map_err(|e| io_fail("SO_LINGER", e))?;
                self.close_client(i)?;
                return self.client_finished(i, false);
            }
            Stop::Complete if all_sent && mode == ClientMode::HalfClose && !c.shut_wr => {
                self.k
                    .shutdown(fd, SHUT_WR)
                    .map_err(|e| io_fail("shutdown(SHUT_WR)", e))?;
                self.clients[i].shut_wr = true;
            }
            Stop::Complete if c.recv == c.send_total * factor && mode != ClientMode::HalfClose => {
                let hold = matches!(mode, ClientMode::Echo | ClientMode::Idle);
                if !hold {
                    self.close_client(i)?;
                }
                return self.client_finished(i, hold);
            }
            _ => {}
        }
        if let ClientMode::SlowReader { interval_ns, .. } = mode {
            let cold = &self.cold[i];
            if cold.budget == 0 && self.clients[i].phase == Phase::Active && !cold.tick_armed {
                // Out of budget: sleep until the next tick (reading nothing meanwhile).
                let at = self.now_ns() + interval_ns;
                self.ticks.push(Reverse((at, i as u32)));
                self.cold[i].tick_armed = true;
            }
        }
        Ok(())
    }

    /// Whether client `i` may give up its connection and make a new one: only where the
    /// workload allows it ([`ClientMix::reconnect`](super::ClientMix::reconnect)), only before
    /// any answer came back, and only inside the reconnect budget of virtual time.
    fn may_reconnect(&self, i: usize) -> bool {
        let c = &self.clients[i];
        let Some(r) = self.mix.reconnect else {
            return false;
        };
        let first_connect_ns = self.cold[i].first_connect_ns;
        c.recv == 0 && self.now_ns().saturating_sub(first_connect_ns) < r.give_up_after_ns
    }

    /// Whether `fd`'s handshake is complete (`getpeername`: `ENOTCONN` while it is not).
    fn established(&self, fd: netpoll::Fd) -> Result<bool, Failure> {
        match self.k.peer_addr(fd) {
            Ok(_) => Ok(true),
            Err(e) if errno_of(&e) == Some(ENOTCONN) => Ok(false),
            Err(e) => Err(io_fail("getpeername", e)),
        }
    }

    /// The failure for a connect that failed with `errno` where no reconnect is allowed.
    fn connect_failed(&self, i: usize, what: &str, errno: i32) -> Failure {
        self.io_failed(i, what, io::Error::from_raw_os_error(errno))
    }

    /// The failure for client `i`'s `what` failing with `e`. A client that still had no answer
    /// when its reconnect budget ran out says so: the server did not serve it in time (a slow
    /// server, or one that never accepts), which is what a user needs to read first.
    fn io_failed(&self, i: usize, what: &str, e: io::Error) -> Failure {
        let c = &self.clients[i];
        let refused = matches!(errno_of(&e), Some(ECONNRESET | EPIPE | ETIMEDOUT));
        match self.mix.reconnect {
            Some(r) if refused && c.recv == 0 => {
                let cold = self.cold[i];
                let tried_s = self.now_ns().saturating_sub(cold.first_connect_ns) as f64 / 1e9;
                io_fail(
                    format!(
                        "client {i} {what}: no answer from the server after {} connections in \
                         {tried_s:.3} s of virtual time (the reconnect budget is {} s)",
                        cold.retries + 1,
                        r.give_up_after_ns as f64 / 1e9
                    ),
                    e,
                )
            }
            _ => io_fail(format!("client {i} {what}"), e),
        }
    }

    /// Client `i`'s connection timed out or was reset before it was ever served (Linux resets a
    /// handshake the full accept queue never took): close it and, after a jittered backoff
    /// ([`Reconnect`](super::Reconnect)), start over with a new socket, as a client library
    /// would. The request stream starts again from its first byte.
    fn reconnect(&mut self, i: usize) -> Result<(), Failure> {
        let r = self.mix.reconnect.expect("may_reconnect checked");
        let now = self.now_ns();
        let c = &mut self.clients[i];
        if c.phase == Phase::Active {
            // Back among the clients still connecting (the window counts them).
            self.connecting += 1;
        }
        c.sent = 0;
        c.shut_wr = false;
        c.phase = Phase::Backoff;
        let fd = std::mem::replace(&mut c.fd, -1);
        let cold = &mut self.cold[i];
        cold.retries += 1;
        let (lo, hi) = r.delay_range_ns(cold.retries);
        let at = now + self.backoff_rng.range(lo, hi);
        self.ticks.push(Reverse((at, i as u32 | RECONNECT_TICK)));
        self.k
            .close(fd)
            .map_err(|e| io_fail("closing a failed connection", e))
    }

    /// A held connection had an event: the server must neither send nor close now (an idle
    /// client's server may close it).
    fn check_held(&mut self, i: usize) -> Result<(), Failure> {
        let c = &self.clients[i];
        let (fd, recv, idle) = (c.fd, c.recv, self.mode(i) == ClientMode::Idle);
        let detail = match self.k.read(fd, &mut self.buf) {
            Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()), // spurious
            Ok(0) if idle => {
                self.holding -= 1;
                return self.close_client(i);
            }
            Err(e) if idle && matches!(errno_of(&e), Some(ECONNRESET | EPIPE)) => {
                self.holding -= 1;
                return self.close_client(i);
            }
            Ok(0) => "the server closed the connection while the client held it open".to_string(),
            Ok(n) => format!("{n} bytes arrived that nobody asked for"),
            Err(e) => format!("the held connection failed: {e}"),
        };
        Err(Failure::Integrity {
            conn: i,
            offset: recv,
            detail,
        })
    }

    fn on_eof(&mut self, i: usize) -> Result<(), Failure> {
        let factor = u64::from(self.mix.reply_factor.max(1));
        let half_close = self.mode(i) == ClientMode::HalfClose;
        let c = &self.clients[i];
        let owed = c.sent * factor;
        let expected = match c.stop {
            // Only once it has stalled: a client closed while still sending was cut off.
            Stop::Stall => c.sent == c.send_total,
            Stop::Complete => half_close && c.shut_wr,
            Stop::Reset => false,
        };
        if !expected {
            return Err(Failure::Integrity {
                conn: i,
                offset: c.recv,
                detail: format!(
                    "the server closed the connection early (sent {} of {} bytes)",
                    c.sent, c.send_total
                ),
            });
        }
        if c.recv != owed {
            return Err(Failure::Integrity {
                conn: i,
                offset: c.recv,
                detail: format!(
                    "end of file after {} of {owed} owed bytes (lost bytes)",
                    c.recv
                ),
            });
        }
        self.close_client(i)?;
        self.client_finished(i, false)
    }

    fn close_client(&mut self, i: usize) -> Result<(), Failure> {
        let c = &mut self.clients[i];
        c.phase = Phase::Done;
        let fd = std::mem::replace(&mut c.fd, -1);
        self.closed += 1;
        self.k
            .close(fd)
            .map_err(|e| io_fail(format!("closing client {i}"), e))
    }

    /// Client `i` reached its end. `hold`: keep the connection until everyone is done.
    fn client_finished(&mut self, i: usize, hold: bool) -> Result<(), Failure> {
        self.finished += 1;
        if hold {
            self.clients[i].phase = Phase::Holding;
            self.holding += 1;
        }
        Ok(())
    }

    /// Once everyone is done, closes the held connections, at most a window's worth whose
    /// end of file the server has not yet seen at a time (a hundred thousand FINs at once
    /// would only make the simulated network's event queue big).
    pub(super) fn close_held(&mut self, server_open: usize) -> Result<(), Failure> {
        if self.finished < self.mix.conns {
            return Ok(());
        }
        let window = self.mix.connect_window.max(1);
        while self.next_to_close < self.clients.len() {
            // Server connections whose client is closed and whose EOF is not yet handled.
            let held_left = self.holding - self.held_closed;
            let in_flight = server_open.saturating_sub(held_left);
            if in_flight >= window {
                break;
            }
            let j = self.next_to_close;
            self.next_to_close += 1;
            if self.clients[j].phase == Phase::Holding {
                self.held_closed += 1;
                self.close_client(j)?;
            }
        }
        Ok(())
    }
}

//! `zoo-et-partial-read`: the edge-triggered read handler. The bug reads once per event (a
//! buffer's worth) instead of until `EAGAIN`; the twin reads until `EAGAIN`.
//!
//! On Linux the bug loses data only when more bytes arrive in one edge than one read takes
//! (every arrival brings its own edge, and a read takes all that is buffered up to its
//! length). So the entry's messages (6,000 bytes by default) outgrow its read buffer (4,096):
//! a request larger than the handler's buffer, the classic form of this bug. Its detection
//! before issue 11's fix came from a `short_read` fault that cut a read and sent no edge
//! after, which Linux never does (FINDINGS.md, T1b).

use netpoll::sys::{errno::EAGAIN, errno_of};

use netpoll::Poller;

use super::{Bug, Read, Zoo};
use crate::oracle::{io_fail, Failure};

impl Zoo<'_> {
    /// Reads until `EAGAIN` (the partial-read bug: once), answering each read.
    pub(super) fn read_all(&mut self, slot: usize) -> Result<(), Failure> {
        let limit = if self.cfg.kind == Bug::EtPartialRead {
            self.cfg.read_buf.min(self.buf.len())
        } else {
            self.buf.len()
        };
        loop {
            match self.read_once(slot, limit)? {
                Read::Data => {
                    if self.bug(Bug::EtPartialRead) {
                        return Ok(()); // the bug: one read per edge
                    }
                }
                Read::Again | Read::Closed => return Ok(()),
            }
        }
    }

    /// One read on a server connection and its answer.
    pub(super) fn read_once(&mut self, slot: usize, limit: usize) -> Result<Read, Failure> {
        let Some(c) = self.conn(slot) else {
            return Ok(Read::Closed);
        };
        if c.eof {
            return Ok(Read::Again);
        }
        let fd = c.fd;
        let n = match self.k.read(fd, &mut self.buf[..limit]) {
            Ok(0) => {
                let c = self.conn(slot).expect("live");
                c.eof = true;
                if c.out.is_empty() {
                    self.close(slot)?;
                    return Ok(Read::Closed);
                }
                return Ok(Read::Again);
            }
            Ok(n) => n,
            Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(Read::Again),
            Err(e) => return Err(io_fail(format!("server read on connection {slot}"), e)),
        };
        if let Some(t) = self.cfg.deadline_ns {
            let now = self.now_ns();
            self.conn(slot).expect("live").deadline_ns = now + t;
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.send(slot, &buf[..n]);
        self.buf = buf;
        r?;
        Ok(Read::Data)
    }
}

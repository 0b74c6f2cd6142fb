//! `zoo-oneshot-no-rearm`: re-arming oneshot registrations and flushing queued output. The bug
//! returns from the flush on `EPOLLOUT` without re-arming; the twin re-arms.

use netpoll::sys::{errno::EAGAIN, errno_of, Events, EPOLL_CTL_MOD};
use netpoll::{EpollEvent, Poller};

use super::{Zoo, SERVER};
use crate::oracle::{io_fail, Failure};

impl Zoo<'_> {
    pub(super) fn rearm(&mut self, slot: usize) -> Result<(), Failure> {
        let Some(c) = self.conn(slot) else {
            return Ok(());
        };
        let mut interest = Events::IN | Events::RDHUP | Events::ONESHOT;
        if !c.out.is_empty() {
            interest |= Events::OUT;
        }
        let fd = c.fd;
        self.k
            .epoll_ctl(
                self.ep,
                EPOLL_CTL_MOD,
                fd,
                Some(EpollEvent::new(interest, SERVER | slot as u64)),
            )
            .map_err(|e| io_fail("epoll_ctl MOD (re-arm)", e))
    }

    pub(super) fn flush(&mut self, slot: usize) -> Result<(), Failure> {
        let c = self.conns[slot].as_mut().expect("live");
        let mut at = 0;
        while at < c.out.len() {
            match self.k.write(c.fd, &c.out[at..]) {
                Ok(n) => at += n,
                Err(e) if errno_of(&e) == Some(EAGAIN) => break,
                Err(e) => return Err(io_fail(format!("server flush on {slot}"), e)),
            }
        }
        c.out.drain(..at);
        if c.out.is_empty() && c.eof {
            self.close(slot)?;
        }
        Ok(())
    }
}

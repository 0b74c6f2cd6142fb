//! `zoo-et-accept-one`: the accept handler. The bug accepts one connection per edge of an
//! edge-triggered listener; the twin accepts until `EAGAIN`.

use std::cmp::Reverse;

use netpoll::sys::{
    errno::{EAGAIN, ECONNABORTED},
    errno_of, Events, EPOLL_CTL_ADD, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use netpoll::{EpollEvent, Poller};

use super::{Bug, Rg, SConn, Zoo, SERVER};
use crate::oracle::{io_fail, Failure};

impl Zoo<'_> {
    pub(super) fn accept(&mut self) -> Result<(), Failure> {
        loop {
            let fd = match self.k.accept4(self.listener, SOCK_NONBLOCK | SOCK_CLOEXEC) {
                Ok((fd, _)) => fd,
                Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
                Err(e) if errno_of(&e) == Some(ECONNABORTED) => continue,
                Err(e) => return Err(io_fail("accept4", e)),
            };
            let slot = self.conns.len();
            let deadline_ns = match self.cfg.deadline_ns {
                Some(t) => {
                    let d = self.now_ns() + t;
                    self.deadlines.push(Reverse((d, slot)));
                    d
                }
                None => 0,
            };
            self.conns.push(Some(SConn {
                fd,
                out: Vec::new(),
                eof: false,
                deadline_ns,
                rg: Rg::Idle,
            }));
            self.open += 1;
            let interest = match self.cfg.kind {
                Bug::OneshotNoRearm => Events::IN | Events::RDHUP | Events::ONESHOT,
                _ => Events::IN | Events::OUT | Events::RDHUP | Events::ET,
            };
            self.k
                .epoll_ctl(
                    self.ep,
                    EPOLL_CTL_ADD,
                    fd,
                    Some(EpollEvent::new(interest, SERVER | slot as u64)),
                )
                .map_err(|e| io_fail("epoll_ctl ADD conn", e))?;
            if self.cfg.kind == Bug::ParkNoRecheck {
                self.runq.push_back(slot); // the connection's task starts by reading
            }
            if self.bug(Bug::EtAcceptOne) {
                return Ok(()); // the bug: one accept per edge
            }
        }
    }
}

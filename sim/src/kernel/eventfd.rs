//! eventfd: a 64-bit counter (`fs/eventfd.c`).
//!
//! Modelled: the counter, `EFD_SEMAPHORE`, the 8-byte rules (a read needs at least 8 bytes, a
//! write exactly 8), overflow (`EAGAIN` when the sum
//! would reach `u64::MAX`, `EINVAL` for writing `u64::MAX` itself), poll bits (`IN` when
//! non-zero, `OUT` while below `u64::MAX - 1`, `ERR` at `u64::MAX`, no `*NORM` bits), and the
//! wakeups: every write wakes readers (`IN`), every read wakes writers (`OUT`), even a write of 0.

use std::io;

use netpoll::sys::{err, errno::*, Events, EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE};
use netpoll::Fd;

use super::{FileId, Kernel, Kind};

#[derive(Debug)]
pub(crate) struct EventFd {
    count: u64,
    semaphore: bool,
}

impl EventFd {
    pub(crate) fn poll(&self) -> Events {
        let mut m = Events::NONE;
        if self.count > 0 {
            m |= Events::IN;
        }
        if self.count == u64::MAX {
            m |= Events::ERR;
        }
        if self.count < u64::MAX - 1 {
            m |= Events::OUT;
        }
        m
    }
}

fn efd(k: &mut Kernel, f: FileId) -> &mut EventFd {
    match &mut k.files[f].kind {
        Kind::EventFd(e) => e,
        _ => unreachable!("eventfd op on a file of another kind"),
    }
}

impl Kernel {
    pub(crate) fn eventfd(&mut self, initval: u32, flags: i32) -> io::Result<Fd> {
        let nonblock = Kernel::check_flags(flags, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE)?;
        self.descriptor_fault(true)?;
        self.enomem_file_fault()?;
        let e = EventFd {
            count: u64::from(initval),
            semaphore: flags & EFD_SEMAPHORE != 0,
        };
        Ok(self.new_file(Kind::EventFd(e), nonblock)?.1)
    }

    /// One attempt; `EAGAIN` is turned into blocking by the caller.
    pub(crate) fn eventfd_read(&mut self, f: FileId, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() < 8 {
            return Err(err(EINVAL));
        }
        let e = efd(self, f);
        if e.count == 0 {
            return Err(err(EAGAIN));
        }
        let v = if e.semaphore { 1 } else { e.count };
        e.count -= v;
        buf[..8].copy_from_slice(&v.to_ne_bytes());
        self.wake(f, Events::OUT);
        Ok(8)
    }

    pub(crate) fn eventfd_write(&mut self, f: FileId, buf: &[u8]) -> io::Result<usize> {
        if buf.len() != 8 {
            return Err(err(EINVAL));
        }
        let v = u64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
        if v == u64::MAX {
            return Err(err(EINVAL));
        }
        let e = efd(self, f);
        if u64::MAX - e.count <= v {
            return Err(err(EAGAIN));
        }
        let was_empty = e.count == 0;
        e.count += v;
        if self.edge_wakes(was_empty) {
            self.wake(f, Events::IN);
        }
        Ok(8)
    }
}

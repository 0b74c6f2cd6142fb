//! AF_UNIX stream socketpairs (`net/unix/af_unix.c`).
//!
//! Modelled: each write becomes one or more skbs (at most 36544 bytes each) queued on the peer,
//! charged to the *writer* (the skb's true size, see [`truesize`]) until the reader consumes the whole skb; `write` goes on while
//! the writer's charge is below its send buffer (so a write may be short), and poll says `OUT`
//! only while the charge is at most a quarter of it. Each write wakes the peer (`IN`), and each
//! consumed skb wakes the writer (`OUT`) while it is writable: both are new edges for `EPOLLET`.
//! Shutdown mirrors onto the peer (`SHUT_WR` here is `SHUT_RD` there) and wakes both with no
//! key; closing hangs the peer up (`HUP | RDHUP`), with `ECONNRESET` if data was left unread.
//!
//! Not modelled: datagram and seqpacket sockets, named sockets, fd passing, `MSG_OOB`.

use std::collections::VecDeque;
use std::io;

use netpoll::sys::{err, errno::*, Events, SHUT_RDWR};
use netpoll::Fd;

use super::{FileId, Kernel, Kind};

pub(crate) const RCV_SHUTDOWN: u8 = 1;
pub(crate) const SEND_SHUTDOWN: u8 = 2;
const SHUTDOWN_MASK: u8 = 3;

/// The largest linear part of an skb (`SKB_MAX_HEAD(0)`: a page less `skb_shared_info`).
const SKB_MAX_HEAD: usize = 4096 - SHINFO;
/// Largest skb a stream write makes: a linear head plus 32 KiB of page fragments (36544 bytes).
const SKB_MAX: usize = SKB_MAX_HEAD + 32 * 1024;
/// `sizeof(struct skb_shared_info)` and `sizeof(struct sk_buff)`, cache-aligned, on x86_64.
const SHINFO: usize = 320;
const SKB_STRUCT: usize = 256;

/// What an skb of `len` bytes costs its sender (`skb->truesize`): the kmalloc size class of the
/// linear part plus `skb_shared_info`, the `sk_buff` itself, and whole pages for the rest.
/// Checked against Linux 6.18: a 1-byte write costs 768, a 1000-byte one 2304, a 36544-byte one
/// 37120 (`realnet/LINUX_FACTS.md`).
pub(crate) fn truesize(len: usize) -> usize {
    let paged = if len > SKB_MAX_HEAD {
        (len - SKB_MAX_HEAD).div_ceil(4096) * 4096
    } else {
        0
    }
    .min(len);
    let head = len - paged + SHINFO;
    let class = [32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192]
        .into_iter()
        .find(|&c| c >= head)
        .unwrap_or(head.next_power_of_two());
    class + SKB_STRUCT + paged
}

#[derive(Debug)]
struct Skb {
    data: Vec<u8>,
    off: usize,
    charge: usize,
}

/// One end of a socketpair.
#[derive(Debug)]
pub(crate) struct UnixEnd {
    peer: Option<FileId>,
    /// What the peer wrote, unread.
    rx: VecDeque<Skb>,
    /// Bytes charged to this end for skbs queued at the peer.
    wmem: usize,
    shutdown: u8,
    err: i32,
}

impl UnixEnd {
    pub(crate) fn poll(&self, cfg: &crate::SimConfig) -> Events {
        let mut m = Events::NONE;
        if self.err != 0 {
            m |= Events::ERR;
        }
        if self.shutdown == SHUTDOWN_MASK {
            m |= Events::HUP;
        }
        if self.shutdown & RCV_SHUTDOWN != 0 {
            m |= Events::IN | Events::RDNORM | Events::RDHUP;
        }
        if !self.rx.is_empty() {
            m |= Events::IN | Events::RDNORM;
        }
        if self.writable(cfg) {
            m |= Events::OUT | Events::WRNORM | Events::WRBAND;
        }
        m
    }

    fn writable(&self, cfg: &crate::SimConfig) -> bool {
        self.wmem * 4 <= cfg.unix_sndbuf
    }

    /// Bytes waiting to be read.
    pub(crate) fn readable(&self) -> usize {
        self.rx.iter().map(|s| s.data.len() - s.off).sum()
    }

    pub(crate) fn take_error(&mut self) -> i32 {
        std::mem::take(&mut self.err)
    }
}

pub(crate) fn end(k: &mut Kernel, f: FileId) -> &mut UnixEnd {
    match &mut k.files[f].kind {
        Kind::Unix(u) => u,
        _ => unreachable!("unix socket op on a file of another kind"),
    }
}

impl Kernel {
    pub(crate) fn socketpair(&mut self, flags: i32) -> io::Result<[Fd; 2]> {
        // The flags are or-ed into `SOCK_STREAM` (1): a stray 1 still names a stream socket.
        let nonblock = Kernel::check_flags(flags, Kernel::OPEN_FLAGS | 1)?;
        self.descriptor_fault(true)?;
        self.enomem_file_fault()?;
        self.fd_room(2)?;
        let mk = || {
            Kind::Unix(Box::new(UnixEnd {
                peer: None,
                rx: VecDeque::new(),
                wmem: 0,
                shutdown: 0,
                err: 0,
            }))
        };
        let (fa, a) = self.new_file(mk(), nonblock)?;
        let (fb, b) = self.new_file(mk(), nonblock)?;
        end(self, fa).peer = Some(fb);
        end(self, fb).peer = Some(fa);
        Ok([a, b])
    }

    pub(crate) fn unix_read(&mut self, f: FileId, buf: &mut [u8], peek: bool) -> io::Result<usize> {
        let u = end(self, f);
        if u.rx.is_empty() {
            if buf.is_empty() {
                return Ok(0);
            }
            if u.err != 0 {
                return Err(err(u.take_error()));
            }
            if u.shutdown & RCV_SHUTDOWN != 0 {
                return Ok(0);
            }
            return Err(err(EAGAIN));
        }
        if peek {
            // `MSG_PEEK` copies across queued skbs as a read would (unix_stream_read_generic
            // walks on to the next one) and leaves them all queued: no room is returned.
            let mut n = 0;
            for skb in &u.rx {
                if n == buf.len() {
                    break;
                }
                let k = (skb.data.len() - skb.off).min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&skb.data[skb.off..skb.off + k]);
                n += k;
            }
            return Ok(n);
        }
        let mut n = 0;
        let mut freed = 0;
        while n < buf.len() {
            let Some(skb) = u.rx.front_mut() else { break };
            let k = (skb.data.len() - skb.off).min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&skb.data[skb.off..skb.off + k]);
            skb.off += k;
            n += k;
            if skb.off == skb.data.len() {
                freed += skb.charge;
                u.rx.pop_front();
            }
        }
        let peer = u.peer;
        if freed > 0 {
            if let Some(p) = peer {
                if self.files.get(p).is_some() {
                    let sndbuf = self.cfg.unix_sndbuf;
                    let pe = end(self, p);
                    pe.wmem -= freed;
                    if pe.wmem * 4 <= sndbuf {
                        self.wake(p, Events::OUT | Events::WRNORM | Events::WRBAND);
                    }
                }
            }
        }
        Ok(n)
    }

    pub(crate) fn unix_write(&mut self, f: FileId, buf: &[u8]) -> io::Result<usize> {
        let sndbuf = self.cfg.unix_sndbuf;
        let u = end(self, f);
        if u.shutdown & SEND_SHUTDOWN != 0 {
            return Err(err(EPIPE));
        }
        let Some(peer) = u.peer.filter(|&p| self.files.get(p).is_some()) else {
            return Err(err(EPIPE));
        };
        if end(self, peer).shutdown & RCV_SHUTDOWN != 0 {
            return Err(err(EPIPE));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let max_skb = (sndbuf / 2).saturating_sub(64).clamp(1, SKB_MAX);
        let was_empty = end(self, peer).rx.is_empty();
        let mut n = 0;
        while n < buf.len() {
            if end(self, f).wmem >= sndbuf {
                break;
            }
            let k = (buf.len() - n).min(max_skb);
            let charge = truesize(k);
            end(self, f).wmem += charge;
            end(self, peer).rx.push_back(Skb {
                data: buf[n..n + k].to_vec(),
                off: 0,
                charge,
            });
            n += k;
        }
        if n == 0 {
            return Err(err(EAGAIN));
        }
        if self.edge_wakes(was_empty) {
            self.wake(
                peer,
                Events::IN | Events::PRI | Events::RDNORM | Events::RDBAND,
            );
        }
        Ok(n)
    }

    pub(crate) fn unix_shutdown(&mut self, f: FileId, how: i32) -> io::Result<()> {
        if !(0..=SHUT_RDWR).contains(&how) {
            return Err(err(EINVAL));
        }
        let mode = (how + 1) as u8;
        let u = end(self, f);
        u.shutdown |= mode;
        let peer = u.peer.filter(|&p| self.files.get(p).is_some());
        self.wake(f, Events::NONE);
        if let Some(p) = peer {
            let mut peer_mode = 0;
            if mode & RCV_SHUTDOWN != 0 {
                peer_mode |= SEND_SHUTDOWN;
            }
            if mode & SEND_SHUTDOWN != 0 {
                peer_mode |= RCV_SHUTDOWN;
            }
            end(self, p).shutdown |= peer_mode;
            self.wake(p, Events::NONE);
        }
        Ok(())
    }

    /// The end's file is gone: the peer is hung up, and learns of unread data by `ECONNRESET`.
    pub(crate) fn unix_release(&mut self, u: UnixEnd) {
        let Some(p) = u.peer.filter(|&p| self.files.get(p).is_some()) else {
            return;
        };
        let unread: usize = u.rx.iter().map(|s| s.charge).sum();
        let pe = end(self, p);
        pe.shutdown = SHUTDOWN_MASK;
        pe.peer = None;
        if !u.rx.is_empty() {
            pe.err = ECONNRESET;
        }
        // The peer's skbs that this end never read are freed: the peer's charge returns.
        pe.wmem -= unread;
        self.wake(p, Events::NONE);
    }
}

//! Pipes (`fs/pipe.c`): a ring of page-sized buffers shared by a read end and a write end.
//!
//! Modelled: capacity in pages (16 by default), the merge of a small write into the last
//! page, `PIPE_BUF` atomicity (a write of at most 4096 bytes goes in whole or not at all), short
//! writes for larger ones, `EPIPE` with no reader, end of file with no writer; poll bits (read end
//! `IN` when not empty and `HUP` with no writer; write end `OUT` while a page is free and `ERR`
//! with no reader); wakeups: every write wakes the read end (Linux does so once a pipe has been
//! polled, which every registered pipe has), a read wakes the write end only if the pipe was full
//! when the read began, and closing either end wakes both with no key.
//!
//! Not modelled: `F_SETPIPE_SZ`, `O_DIRECT` packet pipes, splice.

use std::collections::VecDeque;
use std::io;

use netpoll::sys::{err, errno::*, Events};
use netpoll::Fd;

use super::{FileId, Kernel, Kind};

const PAGE: usize = 4096;

#[derive(Debug)]
struct Page {
    data: Vec<u8>,
    off: usize,
}

#[derive(Debug)]
pub(crate) struct Pipe {
    pages: VecDeque<Page>,
    readers: bool,
    writers: bool,
    files: [Option<FileId>; 2],
    capacity: usize,
}

impl Pipe {
    pub(crate) fn poll(&self, read_end: bool) -> Events {
        let mut m = Events::NONE;
        if read_end {
            if !self.pages.is_empty() {
                m |= Events::IN | Events::RDNORM;
            }
            if !self.writers {
                m |= Events::HUP;
            }
        } else {
            if self.pages.len() < self.capacity {
                m |= Events::OUT | Events::WRNORM;
            }
            if !self.readers {
                m |= Events::ERR;
            }
        }
        m
    }

    /// Bytes waiting to be read.
    pub(crate) fn readable(&self) -> usize {
        self.pages.iter().map(|p| p.data.len() - p.off).sum()
    }

    fn full(&self) -> bool {
        self.pages.len() >= self.capacity
    }
}

impl Kernel {
    pub(crate) fn pipe2(&mut self, flags: i32) -> io::Result<[Fd; 2]> {
        let nonblock = Kernel::check_flags(flags, Kernel::OPEN_FLAGS)?;
        self.descriptor_fault(true)?;
        self.fd_room(2)?;
        let p = self.pipes.insert(Pipe {
            pages: VecDeque::new(),
            readers: true,
            writers: true,
            files: [None, None],
            capacity: self.cfg.pipe_pages.max(1),
        });
        let (rf, r) = self.new_file(Kind::PipeRead(p), nonblock)?;
        let (wf, w) = self.new_file(Kind::PipeWrite(p), nonblock)?;
        self.pipes[p].files = [Some(rf), Some(wf)];
        Ok([r, w])
    }

    pub(crate) fn pipe_read(&mut self, p: u32, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let pipe = &mut self.pipes[p];
        if pipe.pages.is_empty() {
            return if pipe.writers {
                Err(err(EAGAIN))
            } else {
                Ok(0)
            };
        }
        let was_full = pipe.full();
        let mut n = 0;
        while n < buf.len() {
            let Some(page) = pipe.pages.front_mut() else {
                break;
            };
            let k = (page.data.len() - page.off).min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&page.data[page.off..page.off + k]);
            page.off += k;
            n += k;
            if page.off == page.data.len() {
                pipe.pages.pop_front();
            }
        }
        let freed = was_full && !pipe.full();
        let wf = pipe.files[1];
        if freed {
            if let Some(wf) = wf {
                self.wake(wf, Events::OUT | Events::WRNORM);
            }
        }
        Ok(n)
    }

    pub(crate) fn pipe_write(&mut self, p: u32, buf: &[u8]) -> io::Result<usize> {
        let pipe = &mut self.pipes[p];
        if buf.is_empty() {
            return Ok(0);
        }
        if !pipe.readers {
            return Err(err(EPIPE));
        }
        let was_empty = pipe.pages.is_empty();
        let mut n = 0;
        // A write's tail shorter than a page may join the last page, if it fits whole there.
        let chars = buf.len() % PAGE;
        if chars != 0 {
            if let Some(last) = pipe.pages.back_mut() {
                if last.data.len() + chars <= PAGE {
                    last.data.extend_from_slice(&buf[..chars]);
                    n = chars;
                }
            }
        }
        while n < buf.len() {
            if pipe.full() {
                break;
            }
            let k = (buf.len() - n).min(PAGE);
            pipe.pages.push_back(Page {
                data: buf[n..n + k].to_vec(),
                off: 0,
            });
            n += k;
        }
        if n == 0 {
            return Err(err(EAGAIN));
        }
        let rf = pipe.files[0];
        if let Some(rf) = rf.filter(|_| self.edge_wakes(was_empty)) {
            self.wake(rf, Events::IN | Events::RDNORM);
        }
        Ok(n)
    }

    /// A pipe end's file is gone.
    pub(crate) fn pipe_release(&mut self, p: u32, read_end: bool) {
        let pipe = &mut self.pipes[p];
        if read_end {
            pipe.readers = false;
            pipe.files[0] = None;
        } else {
            pipe.writers = false;
            pipe.files[1] = None;
        }
        let other = pipe.files[usize::from(read_end)];
        match other {
            Some(f) => self.wake(f, Events::NONE),
            None => {
                self.pipes.remove(p);
            }
        }
    }
}

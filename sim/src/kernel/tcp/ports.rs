//! The bind table and ephemeral port choice (`inet_hashtables.c`, `inet_connection_sock.c`).

use std::io;
use std::net::Ipv4Addr;

use netpoll::sys::{err, errno::*};

use super::super::{FileId, Kernel};
use crate::rng::Stream;

const EPHEMERAL: (u16, u16) = (32768, 60999);

/// The bind table: for each port, the addresses bound on it and the socket holding each. A flat
/// table indexed by port (a short list a port, up to four inline) instead of an ordered map of
/// (ip, port): a lookup is an index and a scan of the few addresses sharing a port, and "is any
/// address bound on this port" (a wildcard bind's test) is whether the port's list is empty.
/// Nothing iterates over it, so the order inside a port's list is never observed.
///
/// The table is paged (256 ports a page, a page allocated on its first bind): a short run binds
/// a handful of ports and must not pay for all 65,536 (a flat table cost a 10-connection sweep
/// most of its time in allocating and dropping 2.4 MB a seed).
#[derive(Debug, Default)]
pub(super) struct PortTable {
    pub(super) pages: Vec<Option<Box<PortPage>>>,
}

const PORTS_PER_PAGE: usize = 256;
type PortPage = [PortSlot; PORTS_PER_PAGE];

/// The addresses bound on one port: inline while there are at most four (the main job puts
/// 100,000 clients on 28,232 ephemeral ports of four addresses), so that binding and unbinding
/// touch only the table, which ephemeral ports walk in order.
#[derive(Debug, Clone)]
pub(super) enum PortSlot {
    Inline(u8, [(Ipv4Addr, FileId); 4]),
    Heap(Vec<(Ipv4Addr, FileId)>),
}

impl Default for PortSlot {
    fn default() -> Self {
        PortSlot::Inline(0, [(Ipv4Addr::UNSPECIFIED, 0); 4])
    }
}

impl PortSlot {
    pub(super) fn as_slice(&self) -> &[(Ipv4Addr, FileId)] {
        match self {
            PortSlot::Inline(n, e) => &e[..usize::from(*n)],
            PortSlot::Heap(v) => v,
        }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [(Ipv4Addr, FileId)] {
        match self {
            PortSlot::Inline(n, e) => &mut e[..usize::from(*n)],
            PortSlot::Heap(v) => v,
        }
    }

    pub(super) fn push(&mut self, x: (Ipv4Addr, FileId)) {
        match self {
            PortSlot::Inline(n, e) if usize::from(*n) < e.len() => {
                e[usize::from(*n)] = x;
                *n += 1;
            }
            PortSlot::Inline(n, e) => {
                let mut v = e[..usize::from(*n)].to_vec();
                v.push(x);
                *self = PortSlot::Heap(v);
            }
            PortSlot::Heap(v) => v.push(x),
        }
    }

    /// Removes entry `j` (the last one takes its place).
    pub(super) fn swap_remove(&mut self, j: usize) {
        match self {
            PortSlot::Inline(n, e) => {
                let last = usize::from(*n) - 1;
                e[j] = e[last];
                *n -= 1;
            }
            PortSlot::Heap(v) => {
                v.swap_remove(j);
            }
        }
    }
}

impl PortTable {
    pub(super) fn slot(&self, port: u16) -> Option<&PortSlot> {
        let p = usize::from(port);
        let page = self.pages.get(p / PORTS_PER_PAGE)?.as_ref()?;
        Some(&page[p % PORTS_PER_PAGE])
    }

    pub(super) fn slot_mut(&mut self, port: u16) -> Option<&mut PortSlot> {
        let p = usize::from(port);
        let page = self.pages.get_mut(p / PORTS_PER_PAGE)?.as_mut()?;
        Some(&mut page[p % PORTS_PER_PAGE])
    }

    pub(super) fn on(&self, port: u16) -> &[(Ipv4Addr, FileId)] {
        self.slot(port).map_or(&[], PortSlot::as_slice)
    }

    /// The socket bound on exactly (ip, port).
    pub(super) fn get(&self, ip: Ipv4Addr, port: u16) -> Option<FileId> {
        self.on(port).iter().find(|e| e.0 == ip).map(|e| e.1)
    }

    pub(super) fn contains(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.get(ip, port).is_some()
    }

    /// Whether any address is bound on `port`.
    pub(super) fn port_used(&self, port: u16) -> bool {
        !self.on(port).is_empty()
    }

    /// Binds (ip, port) to `f`, replacing any previous holder.
    pub(super) fn insert(&mut self, ip: Ipv4Addr, port: u16, f: FileId) {
        let p = usize::from(port);
        let i = p / PORTS_PER_PAGE;
        if self.pages.len() <= i {
            self.pages.resize_with(i + 1, || None);
        }
        let page = self.pages[i]
            .get_or_insert_with(|| Box::new(std::array::from_fn(|_| PortSlot::default())));
        let v = &mut page[p % PORTS_PER_PAGE];
        match v.as_mut_slice().iter_mut().find(|e| e.0 == ip) {
            Some(e) => e.1 = f,
            None => v.push((ip, f)),
        }
    }

    /// Unbinds (ip, port) if `f` holds it.
    pub(super) fn remove_if_held(&mut self, ip: Ipv4Addr, port: u16, f: FileId) {
        if let Some(v) = self.slot_mut(port) {
            if let Some(j) = v.as_slice().iter().position(|e| *e == (ip, f)) {
                v.swap_remove(j);
            }
        }
    }
}
impl Kernel {
    pub(super) fn port_free(&self, ip: Ipv4Addr, port: u16) -> bool {
        if self.net.bound.contains(ip, port) || self.net.bound.contains(Ipv4Addr::UNSPECIFIED, port)
        {
            return false;
        }
        if ip.is_unspecified() {
            // A wildcard bind conflicts with any address on the port.
            return !self.net.bound.port_used(port);
        }
        true
    }

    /// An ephemeral port free on `ip`: the search starts where the last one ended (from a
    /// seeded first offset), so allocation is O(1) while the range is not full.
    pub(super) fn ephemeral_port(&mut self, ip: Ipv4Addr) -> io::Result<u16> {
        let (lo, hi) = EPHEMERAL;
        let span = u64::from(hi - lo) + 1;
        let start = match self.net.port_hint {
            Some(h) => h,
            None => self.rng.range(Stream::Ports, 0, span - 1),
        };
        for i in 0..span {
            let off = (start + i) % span;
            let port = lo + off as u16;
            if self.port_free(ip, port) {
                self.net.port_hint = Some((off + 1) % span);
                return Ok(port);
            }
        }
        Err(err(EADDRNOTAVAIL))
    }
}

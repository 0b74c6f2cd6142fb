//! `netpoll::rt` tasks inside a [`Check`](super::Check): a runtime on the check's kernel, and
//! the lost-wakeup judgement that fits a netpoller.

use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use netpoll::rt::pd::Dir;
use netpoll::rt::Runtime;
use netpoll::sys::Events;
use netpoll::{Fd, Poller};
use netpoll_sim::Sim;

use super::CURRENT;

/// The poller type of `netpoll::rt` tasks inside a check (what [`runtime`] runs on):
/// `TcpListener::<SimRc>::bind(addr)`.
pub type SimRc = Rc<Sim>;

/// The check's kernel as a shared, `'static` handle (what [`netpoll::rt`] needs), for a `sim`
/// handed to a [`Check`](super::Check) closure.
///
/// # Errors
/// `sim` is not the kernel of a check running on this thread.
pub fn shared(sim: &Sim) -> io::Result<SimRc> {
    CURRENT
        .with(|c| c.borrow().clone())
        .filter(|rc| std::ptr::eq(&**rc, sim))
        .ok_or_else(|| {
            io::Error::other(
                "netpoll check: this Sim is not the kernel of a Check running on this thread \
                 (call check::shared / check::runtime with the closure's own `sim`)",
            )
        })
}

/// A [`Runtime`] on the check's kernel, seeded from the run's seed (the order of tasks and of
/// events at one instant is drawn from it), so that `netpoll::rt` tasks run inside a check:
///
/// ```
/// use netpoll::rt;
/// use netpoll_scenarios::check::{self, Check, Faults};
///
/// Check::new().seeds(0..20).faults(Faults::Chaos).run(|sim| {
///     let mut rt = check::runtime(sim)?;
///     rt.block_on(async {
///         let (a, b) = rt::UnixStream::<check::SimRc>::pair()?;
///         let reader = rt::spawn(async move {
///             let (mut got, mut buf) = (Vec::new(), [0u8; 16]);
///             loop {
///                 match b.read(&mut buf).await? {
///                     0 => return std::io::Result::Ok(got), // end of file
///                     n => got.extend_from_slice(&buf[..n]), // reads may be short
///                 }
///             }
///         });
///         a.write_all(b"hello").await?;
///         drop(a); // closes it
///         assert_eq!(reader.await??, b"hello"); // the task's join, then its own result
///         std::io::Result::Ok(())
///     })?
/// });
/// ```
///
/// # Errors
/// As [`shared`], and as [`Runtime::seeded`].
pub fn runtime(sim: &Sim) -> io::Result<Runtime<SimRc>> {
    let mut rt = Runtime::seeded(shared(sim)?, sim.seed())?;
    judge_by_parked_tasks(&mut rt);
    Ok(rt)
}

/// The events that wake a side's waiter (as the poll descriptor routes them).
fn side_events(dir: Dir) -> Events {
    match dir {
        Dir::Read => Events::IN | Events::RDHUP | Events::HUP | Events::ERR,
        Dir::Write => Events::OUT | Events::HUP | Events::ERR,
    }
}

/// Arms the kernel's lost-wakeup oracle for a netpoller: at each quiescence the runtime waits
/// for what its parked tasks wait for, as the runtime's quiescence hook saw them just before it
/// blocked. A registration nobody is parked on may stay ready with no event queued (the
/// runtime cached the edge for a task that has not asked yet), so the kernel's default
/// judgement (the registration's interest) would be a false alarm there. [`runtime`] does this
/// for you; it replaces the runtime's quiescence hook.
///
/// Listing the parked tasks costs a pass over every descriptor, so the hook does it only when
/// the kernel will scan (nothing in flight).
pub fn judge_by_parked_tasks<P: Poller + std::borrow::Borrow<Sim> + 'static>(rt: &mut Runtime<P>) {
    // Shared with the kernel's hook, which is `Send` (uncontended: one thread runs both).
    let parked: Arc<Mutex<BTreeMap<Fd, Events>>> = Arc::default();
    let seen = Arc::clone(&parked);
    let sim: &Sim = std::borrow::Borrow::borrow(rt.driver().poller());
    sim.set_wants(move |s| {
        let seen = seen.lock().expect("the parked table is never poisoned");
        seen.get(&s.fd).copied().unwrap_or(Events::NONE)
    });
    rt.set_quiescence_hook(move |d| {
        let mut parked = parked.lock().expect("the parked table is never poisoned");
        parked.clear();
        let sim: &Sim = std::borrow::Borrow::borrow(d.poller());
        if sim.pending() > 0 {
            return Ok(());
        }
        for p in d.parked() {
            *parked.entry(p.fd).or_insert(Events::NONE) |= side_events(p.dir);
        }
        Ok(())
    });
}

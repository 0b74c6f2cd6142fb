//! The kernel's lost-wakeup oracle for [`netpoll::rt`] tasks on the simulated kernel.
//!
//! A netpoller keeps the edges it was given for tasks that have not asked for them yet, so a
//! registration nobody is parked on may stay ready with no event queued: judged by its interest
//! (the kernel's default, [`crate::default_wants`]) that is a false alarm. A runtime waits for
//! what its parked tasks wait for, and [`judge_by_parked_tasks`] tells the oracle just that.
//! This is the one copy: `netpoll_scenarios::check::runtime` and the root crate's runtime tests
//! both arm it.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use netpoll::rt::pd::Dir;
use netpoll::rt::Runtime;
use netpoll::sys::Events;
use netpoll::{Fd, Poller};

use crate::Sim;

/// The events that wake a side's waiter (as the poll descriptor routes them).
fn side_events(dir: Dir) -> Events {
    match dir {
        Dir::Read => Events::IN | Events::RDHUP | Events::HUP | Events::ERR,
        Dir::Write => Events::OUT | Events::HUP | Events::ERR,
    }
}

/// Arms the kernel's lost-wakeup oracle for a netpoller: at each quiescence the runtime waits
/// for what its parked tasks wait for, as the runtime's quiescence hook saw them just before it
/// blocked. It replaces the runtime's quiescence hook and the kernel's wants
/// ([`Sim::set_wants`]).
///
/// Listing the parked tasks costs a pass over every descriptor, so the hook does it only when
/// the kernel will scan on entry (nothing in flight); a scan later in the same wait, after
/// deliveries, then judges nothing, and a loop stuck there is reported as a hang.
///
/// ```
/// use netpoll::rt::{self, Runtime};
/// use netpoll_sim::{netpoller::judge_by_parked_tasks, Sim};
///
/// let mut rt = Runtime::seeded(Sim::new(7), 7)?;
/// judge_by_parked_tasks(&mut rt);
/// rt.block_on(async {
///     let (a, b) = rt::UnixStream::<Sim>::pair()?;
///     let reader = rt::spawn(async move {
///         let mut buf = [0u8; 8];
///         b.read(&mut buf).await // parks: the oracle judges fd b by this read
///     });
///     a.write_all(b"hi").await?;
///     assert_eq!(reader.await??, 2);
///     std::io::Result::Ok(())
/// })??;
/// assert!(rt.driver().poller().violation().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn judge_by_parked_tasks<P: Poller + Borrow<Sim> + 'static>(rt: &mut Runtime<P>) {
    // Shared with the kernel's hook, which is `Send` (uncontended: one thread runs both).
    let parked: Arc<Mutex<BTreeMap<Fd, Events>>> = Arc::default();
    let seen = Arc::clone(&parked);
    let sim: &Sim = rt.driver().poller().borrow();
    sim.set_wants(move |s| {
        let seen = seen.lock().expect("the parked table is never poisoned");
        seen.get(&s.fd).copied().unwrap_or(Events::NONE)
    });
    rt.set_quiescence_hook(move |d| {
        let mut parked = parked.lock().expect("the parked table is never poisoned");
        parked.clear();
        let sim: &Sim = d.poller().borrow();
        if sim.pending() > 0 {
            return Ok(());
        }
        for p in d.parked() {
            *parked.entry(p.fd).or_insert(Events::NONE) |= side_events(p.dir);
        }
        Ok(())
    });
}

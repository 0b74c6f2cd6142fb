//! `netpoll::rt` tasks inside a [`Check`](super::Check): a runtime on the check's kernel, and
//! the lost-wakeup judgement that fits a netpoller.

use std::io;
use std::rc::Rc;

use netpoll::rt::Runtime;
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

/// The kernel's lost-wakeup judgement for a netpoller (one copy, in the simulated kernel's
/// crate; re-exported here): [`runtime`] arms it for you.
pub use netpoll_sim::netpoller::judge_by_parked_tasks;

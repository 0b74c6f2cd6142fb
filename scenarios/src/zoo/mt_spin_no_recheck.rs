//! `zoo-mt-spin-no-recheck`: Go's scheduler shape on simulated threads. Idle workers "spin"
//! (look for work) before they park; a submitter that queues a task wakes a parked worker only
//! if nobody spins (`wakep`: a spinner will find the task). The bug: a spinner that found
//! nothing parks after dropping its spinning count, without looking at the queue again, so a
//! task queued between its last look and the drop is seen by nobody: the submitter saw a
//! spinner, the spinner saw an empty queue. Go's `findrunnable` drops `nmspinning` *before* its
//! final re-check of every queue for exactly this reason; the fixed twin does the same.
//!
//! Threads: `workers` workers, `conns` submitters queueing `msgs` tasks each, and the main
//! thread waiting for every task, then queueing one stop task per worker. A task writes to an eventfd (its effect on the kernel). The
//! queue and the idle list are [`netpoll_threads::sync::Mutex`]es (their `lock` is a switch
//! point), and every read or write of the spinning count is a switch point too. A lost task
//! leaves every worker parked and the main thread waiting: the scheduler reports the deadlock
//! with each thread's blocking call.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use netpoll::sys::{EFD_CLOEXEC, EFD_NONBLOCK};
use netpoll::{Fd, Poller};
use netpoll_threads::sync::Mutex;
use netpoll_threads::{current, park, spawn, yield_now, Thread, ThreadedSim};

use super::threaded::Cfg;
use crate::oracle::{io_fail, Failure};

struct Sched {
    /// Tasks; `None` tells the worker that takes it to exit (one per worker at the end).
    queue: Mutex<VecDeque<Option<u64>>>,
    /// Parked workers.
    idle: Mutex<Vec<(usize, Thread)>>,
    /// Workers looking for work (Go's `nmspinning`), including one woken to spin.
    spinning: AtomicUsize,
    done: AtomicU64,
    total: u64,
    main: Thread,
    efd: Fd,
    fixed: bool,
}

impl Sched {
    /// A task was queued: make sure somebody will look (Go's `wakep`).
    fn wakep(&self) {
        yield_now(); // reads the spinning count
        if self
            .spinning
            .compare_exchange(0, 1, SeqCst, SeqCst)
            .is_err()
        {
            return; // a spinner will find it
        }
        let t = self.idle.lock().pop();
        match t {
            // It wakes as a spinner: the count already has it.
            Some((_, t)) => t.unpark(),
            None => {
                // Every worker is running a task and will come back to the queue.
                self.spinning.fetch_sub(1, SeqCst);
            }
        }
    }

    fn run_task(&self, k: &ThreadedSim) -> Result<(), Failure> {
        k.write(self.efd, &1u64.to_ne_bytes())
            .map_err(|e| io_fail("a task writing the eventfd", e))?;
        if self.done.fetch_add(1, SeqCst) + 1 == self.total {
            self.main.unpark();
        }
        Ok(())
    }

    fn worker(&self, k: &ThreadedSim, id: usize) -> Result<(), Failure> {
        let me = current();
        // Started as a spinner, counted by `new`.
        let mut spinning = true;
        loop {
            let task = self.queue.lock().pop_front();
            if let Some(task) = task {
                if spinning {
                    spinning = false;
                    yield_now();
                    if self.spinning.fetch_sub(1, SeqCst) == 1 {
                        // The last spinner found work: start another for what may follow.
                        self.wakep();
                    }
                }
                if task.is_none() {
                    return Ok(());
                }
                self.run_task(k)?;
                continue;
            }
            if !spinning {
                spinning = true;
                yield_now();
                self.spinning.fetch_add(1, SeqCst);
                continue; // look again, as a spinner
            }
            // Nothing found while spinning: park.
            self.idle.lock().push((id, me.clone()));
            yield_now();
            self.spinning.fetch_sub(1, SeqCst);
            if self.fixed && !self.queue.lock().is_empty() {
                // A submitter that saw this worker spinning skipped its wake: take the task.
                let mut idle = self.idle.lock();
                let was_idle = idle.iter().position(|(i, _)| *i == id);
                if let Some(at) = was_idle {
                    idle.remove(at);
                    drop(idle);
                    yield_now();
                    self.spinning.fetch_add(1, SeqCst);
                } else {
                    // A `wakep` took it off the list and counted it: consume that unpark.
                    drop(idle);
                    park();
                }
                spinning = true;
                continue;
            }
            // THE BUG (fixed=0): the last look at the queue came before the spinning count was
            // dropped.
            park();
            // Woken by `wakep`, which counted this worker as spinning.
            spinning = true;
        }
    }
}

/// The program: see the module docs.
pub(super) fn body(k: ThreadedSim, cfg: Cfg) -> Result<u64, Failure> {
    let efd = k
        .eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        .map_err(|e| io_fail("eventfd", e))?;
    let s = Arc::new(Sched {
        queue: Mutex::new(VecDeque::new()),
        idle: Mutex::new(Vec::new()),
        spinning: AtomicUsize::new(cfg.workers as usize),
        done: AtomicU64::new(0),
        total: cfg.conns * cfg.msgs,
        main: current(),
        efd,
        fixed: cfg.fixed,
    });
    let workers: Vec<_> = (0..cfg.workers as usize)
        .map(|id| {
            let (s, k) = (s.clone(), k.clone());
            spawn(format!("worker-{id}"), move || s.worker(&k, id))
        })
        .collect();
    let submitters: Vec<_> = (0..cfg.conns)
        .map(|i| {
            let s = s.clone();
            spawn(format!("submit-{i}"), move || {
                for t in 0..cfg.msgs {
                    s.queue.lock().push_back(Some(i * cfg.msgs + t));
                    s.wakep();
                }
            })
        })
        .collect();
    for t in submitters {
        t.join();
    }
    while s.done.load(SeqCst) < s.total {
        park();
    }
    // Stop the workers the way tasks reach them (a lost one is the same bug).
    for _ in 0..cfg.workers {
        s.queue.lock().push_back(None);
        s.wakep();
    }
    for w in workers {
        w.join()?;
    }
    let mut buf = [0u8; 8];
    k.read(efd, &mut buf)
        .map_err(|e| io_fail("reading the eventfd", e))?;
    let _ = k.close(efd);
    let n = u64::from_ne_bytes(buf);
    if n != s.total {
        return Err(Failure::Invariant(format!(
            "{n} tasks ran, {} were queued",
            s.total
        )));
    }
    Ok(n)
}

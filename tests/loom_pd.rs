//! Model checks of the poll descriptor's side state machine and of the wake coalescing, under
//! every interleaving loom explores: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_pd`.
//!
//! Each "operation" below is the shape of `net.rs`'s loop: check the flags, try the syscall
//! (here: an atomic `data` flag), and on "EAGAIN" ask the side to park; a parked thread blocks on
//! a loom `Notify` that its waker signals. A lost wakeup leaves that thread blocked for ever,
//! which loom reports as a deadlock.
#![cfg(loom)]

use std::sync::Arc as StdArc;
use std::task::{Poll, Wake, Waker};

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Condvar, Mutex, Notify};
use loom::thread;
use netpoll::rt::pd::{Side, WaitError};
use netpoll::rt::wake::WakeSignal;
use std::sync::atomic::Ordering::SeqCst;

/// `loom::model` with a preemption bound (3, or `LOOM_MAX_PREEMPTIONS`), which keeps the
/// three-thread models to seconds while still covering every interleaving with up to that many
/// forced switches (loom's documented way to bound the search).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

struct NotifyWaker(Arc<Notify>);

impl Wake for NotifyWaker {
    fn wake(self: StdArc<Self>) {
        self.0.notify();
    }
    fn wake_by_ref(self: &StdArc<Self>) {
        self.0.notify();
    }
}

/// One operation on `side` as token `token`: returns when `data` is seen or the side fails.
fn operation(side: &Side, data: &AtomicBool, token: u32) -> Result<(), WaitError> {
    let notify = Arc::new(Notify::new());
    let waker = Waker::from(StdArc::new(NotifyWaker(notify.clone())));
    loop {
        side.check()?;
        if data.load(SeqCst) {
            return Ok(());
        }
        match side.poll_wait(&waker, token, u64::from(token)) {
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => notify.wait(),
        }
    }
}

#[test]
fn park_against_ready() {
    model(|| {
        let side = Arc::new(Side::new());
        let data = Arc::new(AtomicBool::new(false));
        let (s2, d2) = (side.clone(), data.clone());
        let t = thread::spawn(move || {
            d2.store(true, SeqCst);
            s2.notify();
        });
        assert_eq!(operation(&side, &data, 1), Ok(()));
        t.join().unwrap();
    });
}

#[test]
fn park_against_deadline() {
    model(|| {
        let side = Arc::new(Side::new());
        let gen = side.reset_deadline(false);
        let data = Arc::new(AtomicBool::new(false));
        let s2 = side.clone();
        let t = thread::spawn(move || {
            assert!(s2.expire(gen));
        });
        assert_eq!(operation(&side, &data, 1), Err(WaitError::TimedOut));
        t.join().unwrap();
    });
}

#[test]
fn stale_timer_against_extension() {
    model(|| {
        let side = Arc::new(Side::new());
        let old = side.reset_deadline(false);
        let data = Arc::new(AtomicBool::new(false));
        let (s2, s3) = (side.clone(), side.clone());
        // The old timer fires while the deadline is being extended.
        let timer = thread::spawn(move || s2.expire(old));
        let extend = thread::spawn(move || s3.reset_deadline(false));
        let fired = timer.join().unwrap();
        let new = extend.join().unwrap();
        assert_ne!(old, new);
        // Whatever the order, the extended deadline is not expired by the old timer.
        assert_eq!(side.check(), Ok(()), "fired before the extension: {fired}");
        // And the side still works.
        let (s4, d4) = (side.clone(), data.clone());
        let t = thread::spawn(move || {
            d4.store(true, SeqCst);
            s4.notify();
        });
        assert_eq!(operation(&side, &data, 1), Ok(()));
        t.join().unwrap();
    });
}

#[test]
fn ready_against_close() {
    model(|| {
        let side = Arc::new(Side::new());
        let data = Arc::new(AtomicBool::new(false));
        let (s2, s3) = (side.clone(), side.clone());
        let notifier = thread::spawn(move || s2.notify());
        let closer = thread::spawn(move || s3.close());
        // No data ever arrives: the operation must end with Closed, whatever the order.
        assert_eq!(operation(&side, &data, 1), Err(WaitError::Closed));
        notifier.join().unwrap();
        closer.join().unwrap();
    });
}

/// Like [`operation`], but the "syscall" consumes one item of `items`, as a read consumes data.
fn consuming_operation(side: &Side, items: &AtomicUsize, token: u32) -> Result<(), WaitError> {
    let notify = Arc::new(Notify::new());
    let waker = Waker::from(StdArc::new(NotifyWaker(notify.clone())));
    loop {
        side.check()?;
        let n = items.load(SeqCst);
        if n > 0 && items.compare_exchange(n, n - 1, SeqCst, SeqCst).is_ok() {
            return Ok(());
        }
        match side.poll_wait(&waker, token, u64::from(token)) {
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => notify.wait(),
        }
    }
}

#[test]
fn two_waiters() {
    model(|| {
        let side = Arc::new(Side::new());
        let items = Arc::new(AtomicUsize::new(0));
        let ops: Vec<_> = [1, 2]
            .into_iter()
            .map(|token| {
                let (s, i) = (side.clone(), items.clone());
                thread::spawn(move || consuming_operation(&s, &i, token))
            })
            .collect();
        // One item arrives, then the descriptor is closed.
        items.fetch_add(1, SeqCst);
        side.notify();
        side.close();
        // Both operations end: one may take the item; the other is refused as a second waiter or
        // woken by close. If the second waiter had overwritten the first one's waker, close would
        // wake the wrong one and loom would report the first blocked for ever.
        let rs: Vec<_> = ops.into_iter().map(|t| t.join().unwrap()).collect();
        for r in &rs {
            assert!(
                matches!(r, Ok(()) | Err(WaitError::DoubleWait | WaitError::Closed)),
                "{r:?}"
            );
        }
        assert!(rs.iter().filter(|r| r.is_ok()).count() <= 1);
    });
}

/// The poll loop's eventfd: a counter, and a condvar for `epoll_wait` blocking on it.
struct EventFd {
    count: Mutex<u64>,
    cv: Condvar,
}

#[test]
fn wake_coalescing_loses_no_wake() {
    model(|| {
        let signal = Arc::new(WakeSignal::new());
        let work = Arc::new(AtomicUsize::new(0));
        let efd = Arc::new(EventFd {
            count: Mutex::new(0),
            cv: Condvar::new(),
        });
        let notifiers: Vec<_> = (0..2)
            .map(|_| {
                let (signal, work, efd) = (signal.clone(), work.clone(), efd.clone());
                thread::spawn(move || {
                    work.fetch_add(1, SeqCst);
                    if signal.notify() {
                        *efd.count.lock().unwrap() += 1;
                        efd.cv.notify_one();
                    }
                })
            })
            .collect();
        // The poll loop: announce, re-check, block on the eventfd, drain, repeat.
        loop {
            signal.begin_poll();
            if work.load(SeqCst) == 2 {
                signal.end_poll();
                break;
            }
            let mut c = efd.count.lock().unwrap();
            while *c == 0 {
                c = efd.cv.wait(c).unwrap();
            }
            signal.end_poll();
            *c = 0;
            drop(c);
            signal.drained();
        }
        for t in notifiers {
            t.join().unwrap();
        }
    });
}

//! The runtime's quiescence hook ([`Runtime::set_quiescence_hook`]) and what it can see of the
//! driver ([`Driver::parked`], [`Driver::epfd`], [`Driver::next_timer`]): the surface the
//! netpoller-level lost-wakeup oracle (`netpoll-scenarios`' `rt-echo`) is built on. Each case
//! runs on the real kernel and on the simulated one.

mod rt_util;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use netpoll::rt::driver::Parked;
use netpoll::rt::pd::Dir;
use netpoll::rt::{self, Runtime, UnixStream};
use netpoll::Poller;
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

/// What the hook saw at one call: the parked tasks, and whether a timer was armed.
type Seen = (Vec<Parked>, bool);

/// A reader parks on its socket; the hook runs before the runtime blocks and sees exactly that
/// waiter (task 1, the fd, the read side), and the sleep's timer; once the byte arrives the
/// reader is gone from the list.
fn hook_sees_the_parked_reader<P: Poller + 'static>(poller: P, seed: u64) {
    let mut rt = Runtime::seeded(poller, seed).expect("runtime");
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let s2 = seen.clone();
    rt.set_quiescence_hook(move |d| {
        assert!(d.epfd() >= 0 && d.wake_fd() != d.epfd());
        s2.borrow_mut().push((d.parked(), d.next_timer().is_some()));
        Ok(())
    });
    let fds = rt
        .block_on(async {
            let (a, b) = UnixStream::<P>::pair()?;
            let fd = a.as_raw_fd();
            let reader = rt::spawn(async move {
                let mut buf = [0u8; 1];
                let n = a.read(&mut buf).await?;
                io::Result::Ok((n, buf[0]))
            });
            // The main future sleeps: nothing is runnable, the reader is parked.
            rt::sleep(Duration::from_millis(5)).await;
            b.write_all(b"x").await?;
            assert_eq!(reader.await??, (1, b'x'));
            io::Result::Ok(fd)
        })
        .expect("runtime")
        .expect("case");
    let seen = seen.borrow();
    let first = seen
        .iter()
        .find(|(p, _)| !p.is_empty())
        .unwrap_or_else(|| panic!("the hook never saw the parked reader: {seen:?}"));
    assert_eq!(
        first.0,
        vec![Parked {
            task: 1,
            fd: fds,
            dir: Dir::Read
        }]
    );
    assert!(first.1, "the sleep's timer is armed: {seen:?}");
}

#[test]
fn hook_sees_the_parked_reader_sim() {
    for seed in rt_util::seeds() {
        hook_sees_the_parked_reader(rt_util::sim(seed), seed);
    }
}

#[test]
fn hook_sees_the_parked_reader_real() {
    hook_sees_the_parked_reader(RealNet::new(), 1);
}

/// An error from the hook ends `block_on` with that error, with the tasks left parked; without
/// the hook the same program deadlocks (on the sim) instead.
#[test]
fn hook_error_ends_block_on() {
    let mut rt = Runtime::seeded(Sim::new(3), 3).expect("runtime");
    let calls = Rc::new(RefCell::new(0));
    let c2 = calls.clone();
    rt.set_quiescence_hook(move |d| {
        *c2.borrow_mut() += 1;
        if d.parked().is_empty() {
            Ok(())
        } else {
            Err(io::Error::other("stop: someone is parked"))
        }
    });
    let e = rt
        .block_on(async {
            let (a, _b) = UnixStream::<Sim>::pair()?;
            let mut buf = [0u8; 1];
            a.read(&mut buf).await
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "stop: someone is parked");
    assert_eq!(*calls.borrow(), 1);

    let mut rt = Runtime::seeded(Sim::new(3), 3).expect("runtime");
    rt.set_quiescence_hook(|_| Err(io::Error::other("never")));
    rt.clear_quiescence_hook();
    let e = rt
        .block_on(async {
            let (a, _b) = UnixStream::<Sim>::pair()?;
            let mut buf = [0u8; 1];
            a.read(&mut buf).await
        })
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Deadlock, "{e}");
}

/// `dispatched` counts the events and timers the poll loop handed out.
#[test]
fn dispatched_counts_events_and_timers() {
    let mut rt = Runtime::seeded(Sim::new(5), 5).expect("runtime");
    assert_eq!(rt.driver().dispatched(), 0);
    rt.block_on(async {
        let (a, b) = UnixStream::<Sim>::pair().unwrap();
        rt::sleep(Duration::from_millis(1)).await;
        b.write_all(b"y").await.unwrap();
        let mut buf = [0u8; 1];
        a.read(&mut buf).await.unwrap();
    })
    .unwrap();
    assert!(rt.driver().dispatched() >= 1);
}

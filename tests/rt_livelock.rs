//! The runtime's livelock bound: a kernel that interrupts every wait or reports only spurious
//! events ends `block_on` with a `Livelock` error instead of spinning for ever, and a program
//! that makes progress under heavy (but not total) fault rates never sees it.
//!
//! The cases that must end run on a thread watched for 10 s of wall time (a watchdog, not a
//! sleep: the runs are on the simulated kernel, whose time is virtual).

use std::io;
use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::Duration;

use netpoll::rt::executor::{Livelock, LIVELOCK_TURNS};
use netpoll::rt::{self, Runtime, TcpListener, TcpStream, UnixStream};
use netpoll_sim::{FaultPlan, Sim, SimConfig};

fn sim(seed: u64, faults: FaultPlan) -> Sim {
    Sim::with_config(
        seed,
        SimConfig {
            faults,
            ..SimConfig::default()
        },
    )
}

/// Runs `f` on its own thread; panics if it is still running after 10 s of wall time.
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(v) => {
            t.join().expect("the run's thread");
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().expect_err("the run's thread panicked"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still spinning after 10 s"),
    }
}

/// An echo exchange: a server task echoes `rounds` messages of a client.
async fn echo(rounds: usize) -> io::Result<()> {
    let ln = TcpListener::<Sim>::bind(SocketAddrV4::new([127, 0, 0, 1].into(), 0))?;
    let addr = ln.local_addr()?;
    rt::spawn(async move {
        let (c, _) = ln.accept().await?;
        let mut buf = [0u8; 64];
        loop {
            let n = c.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, io::Error>(());
            }
            c.write_all(&buf[..n]).await?;
        }
    });
    let c = TcpStream::<Sim>::connect(addr).await?;
    for i in 0..rounds {
        let msg = [i as u8; 16];
        c.write_all(&msg).await?;
        let mut got = 0;
        let mut buf = [0u8; 16];
        while got < 16 {
            let n = c.read(&mut buf[got..]).await?;
            assert!(n > 0, "early end of file");
            got += n;
        }
        assert_eq!(buf, msg);
    }
    Ok(())
}

fn expect_livelock(plan: FaultPlan, what: &'static str) -> String {
    let msg = within_10s(what, move || {
        let mut rt = Runtime::seeded(sim(3, plan), 3).expect("runtime");
        let e = rt.block_on(echo(3)).expect_err("a livelock, not a result");
        assert!(Livelock::is_livelock(&e), "{what}: {e}");
        e.to_string()
    });
    assert!(
        msg.contains(&format!("livelock: {LIVELOCK_TURNS} turns")),
        "{msg}"
    );
    assert!(msg.contains("seed 3"), "{msg}");
    msg
}

#[test]
fn every_wait_interrupted_is_a_livelock() {
    let msg = expect_livelock(
        FaultPlan {
            eintr: 1.0,
            ..FaultPlan::none()
        },
        "eintr 1.0",
    );
    assert!(
        msg.contains(&format!(
            "({LIVELOCK_TURNS} waits interrupted by EINTR, 0 returning"
        )),
        "{msg}"
    );
    // It names the tasks and where they are parked.
    assert!(msg.contains("task 1 parked on read fd"), "{msg}");
}

#[test]
fn only_spurious_events_are_a_livelock() {
    let msg = expect_livelock(
        FaultPlan {
            spurious: 1.0,
            ..FaultPlan::none()
        },
        "spurious 1.0",
    );
    assert!(
        msg.contains(&format!(
            "(0 waits interrupted by EINTR, {LIVELOCK_TURNS} returning"
        )),
        "{msg}"
    );
}

#[test]
fn heavy_but_finite_faults_still_finish() {
    for seed in 0..8 {
        let plan = FaultPlan {
            eintr: 0.9,
            spurious: 0.9,
            short_read: 0.5,
            short_write: 0.5,
            ..FaultPlan::none()
        };
        let mut rt = Runtime::seeded(sim(seed, plan), seed).expect("runtime");
        rt.block_on(echo(50))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// Many more blocking turns than the bound, all at one virtual instant (a socketpair has no
/// latency), each one useful: no livelock.
#[test]
fn a_long_exchange_at_one_instant_is_not_a_livelock() {
    let mut rt = Runtime::new(Sim::new(1)).expect("runtime");
    let rounds = LIVELOCK_TURNS as usize + 2_000;
    rt.block_on(async move {
        let (a, b) = UnixStream::<Sim>::pair()?;
        rt::spawn(async move {
            let mut buf = [0u8; 1];
            while b.read(&mut buf).await? == 1 {
                b.write_all(&buf).await?;
            }
            Ok::<_, io::Error>(())
        });
        let mut buf = [0u8; 1];
        for i in 0..rounds {
            a.write_all(&[i as u8]).await?;
            assert_eq!(a.read(&mut buf).await?, 1);
        }
        Ok::<_, io::Error>(())
    })
    .expect("no livelock")
    .expect("the exchange");
}

#[test]
fn the_bound_can_be_changed() {
    let mut rt = Runtime::new(sim(
        5,
        FaultPlan {
            eintr: 1.0,
            ..FaultPlan::none()
        },
    ))
    .expect("runtime");
    rt.set_livelock_turns(Some(7));
    let e = rt.block_on(echo(1)).expect_err("livelock");
    assert!(e.to_string().contains("livelock: 7 turns"), "{e}");
    assert_eq!(
        e.get_ref()
            .and_then(|i| i.downcast_ref::<Livelock>())
            .map(|l| l.turns),
        Some(7)
    );
}

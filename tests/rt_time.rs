//! Deadlines, sleeps and timeouts on the Poller's clock, on both kernels.
//!
//! On the simulated kernel the clock is virtual (these tests take no real time there); on the
//! real one they sleep for tens of milliseconds. Assertions on elapsed time are lower bounds
//! (a timer never fires early) plus generous upper bounds for the real kernel.

mod rt_util;

use std::io::ErrorKind;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use netpoll::rt::{self, TcpListener, TcpStream, UnixStream};
use netpoll::Poller;
use rt_util::{any_port, expect_kind};

type R = std::io::Result<()>;

const MS: Duration = Duration::from_millis(1);

async fn read_deadline_fires<P: Poller + 'static>() -> R {
    let (a, b) = UnixStream::<P>::pair()?;
    let start = rt::now();
    a.set_read_deadline(Some(start + 50 * MS))?;
    let mut buf = [0u8; 8];
    expect_kind(a.read(&mut buf).await, ErrorKind::TimedOut);
    let took = rt::now() - start;
    assert!(took >= 50 * MS, "fired early: {took:?}");
    assert!(took < 2000 * MS, "fired late: {took:?}");
    // Later reads fail too, even with data there; the write side is not affected.
    b.write_all(b"x").await?;
    expect_kind(a.read(&mut buf).await, ErrorKind::TimedOut);
    a.write_all(b"still writable").await?;
    // Clearing the deadline makes the side usable again.
    a.set_read_deadline(None)?;
    assert_eq!(a.read(&mut buf).await?, 1);
    Ok(())
}

async fn deadline_in_the_past<P: Poller + 'static>() -> R {
    let (a, b) = UnixStream::<P>::pair()?;
    b.write_all(b"data").await?;
    a.set_deadline(Some(rt::now()))?;
    let mut buf = [0u8; 8];
    // The deadline wins over ready data (Go's rule).
    expect_kind(a.read(&mut buf).await, ErrorKind::TimedOut);
    expect_kind(a.write(b"x").await, ErrorKind::TimedOut);
    Ok(())
}

async fn deadline_extended_while_parked<P: Poller + 'static>() -> R {
    let (a, b) = UnixStream::<P>::pair()?;
    let a = Arc::new(a);
    let start = rt::now();
    a.set_read_deadline(Some(start + 50 * MS))?;
    let a2 = a.clone();
    let reader = rt::spawn(async move {
        let mut buf = [0u8; 8];
        let n = a2.read(&mut buf).await?;
        Ok::<_, std::io::Error>((buf[..n].to_vec(), rt::now()))
    });
    rt::sleep(20 * MS).await;
    // Extend while the reader is parked: the timer armed for 50 ms is now stale.
    a.set_read_deadline(Some(start + 150 * MS))?;
    rt::sleep_until(start + 80 * MS).await;
    assert!(
        !reader.is_finished(),
        "the stale 50 ms timer must not fail the read"
    );
    b.write_all(b"late").await?;
    let (got, at) = reader.await??;
    // A prefix: reads may be short (the sim's fault plan on even seeds).
    assert!(!got.is_empty() && b"late".starts_with(&got), "{got:?}");
    assert!(at >= start + 80 * MS && at < start + 150 * MS, "{at:?}");
    Ok(())
}

async fn deadline_shortened_while_parked<P: Poller + 'static>() -> R {
    let (a, _b) = UnixStream::<P>::pair()?;
    let a = Arc::new(a);
    let start = rt::now();
    a.set_read_deadline(Some(start + 10_000 * MS))?;
    let a2 = a.clone();
    let reader = rt::spawn(async move {
        let mut buf = [0u8; 8];
        let r = a2.read(&mut buf).await;
        (r, rt::now())
    });
    rt::sleep(10 * MS).await;
    a.set_read_deadline(Some(rt::now() + 10 * MS))?;
    let (r, at) = reader.await?;
    expect_kind(r, ErrorKind::TimedOut);
    assert!(at >= start + 20 * MS && at < start + 5_000 * MS, "{at:?}");
    Ok(())
}

async fn deadline_cleared_while_parked<P: Poller + 'static>() -> R {
    let (a, b) = UnixStream::<P>::pair()?;
    let a = Arc::new(a);
    let start = rt::now();
    a.set_read_deadline(Some(start + 20 * MS))?;
    let a2 = a.clone();
    let reader = rt::spawn(async move {
        let mut buf = [0u8; 8];
        let n = a2.read(&mut buf).await?;
        Ok::<_, std::io::Error>(n)
    });
    rt::sleep(5 * MS).await;
    a.set_read_deadline(None)?;
    rt::sleep_until(start + 60 * MS).await;
    assert!(!reader.is_finished());
    b.write_all(b"ok").await?;
    assert!((1..=2).contains(&reader.await??));
    Ok(())
}

async fn write_deadline_fires<P: Poller + 'static>() -> R {
    let (a, _b) = UnixStream::<P>::pair()?;
    a.set_write_deadline(Some(rt::now() + 30 * MS))?;
    let chunk = vec![1u8; 64 * 1024];
    let r = async {
        loop {
            a.write(&chunk).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    }
    .await;
    expect_kind(r, ErrorKind::TimedOut);
    Ok(())
}

async fn accept_deadline<P: Poller + 'static>() -> R {
    let ln = TcpListener::<P>::bind(any_port())?;
    ln.set_read_deadline(Some(rt::now() + 15 * MS))?;
    expect_kind(ln.accept().await.map(|_| ()), ErrorKind::TimedOut);
    // Cleared: a connection is accepted.
    ln.set_read_deadline(None)?;
    let addr = ln.local_addr()?;
    let c = rt::spawn(async move { TcpStream::<P>::connect(addr).await.map(|_| ()) });
    ln.accept().await?;
    c.await?
}

#[allow(clippy::extra_unused_type_parameters)] // the same body on both kernels
async fn sleeps_in_order<P: Poller + 'static>() -> R {
    let start = rt::now();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for ms in [30u32, 10, 20] {
        let log = log.clone();
        hs.push(rt::spawn(async move {
            rt::sleep(ms * MS).await;
            log.lock().unwrap().push(ms);
            assert!(rt::now() >= start + ms * MS);
        }));
    }
    for h in hs {
        h.await?;
    }
    assert_eq!(*log.lock().unwrap(), [10, 20, 30]);
    Ok(())
}

async fn timeout_and_cancelled_read<P: Poller + 'static>() -> R {
    let (a, b) = UnixStream::<P>::pair()?;
    let mut buf = [0u8; 8];
    // The read is parked when the timeout drops it; the side must be free again afterwards.
    expect_kind(
        rt::timeout(10 * MS, a.read(&mut buf)).await,
        ErrorKind::TimedOut,
    );
    b.write_all(b"z").await?;
    let n = rt::timeout(1000 * MS, a.read(&mut buf)).await??;
    assert_eq!(&buf[..n], b"z");
    b.shutdown(Shutdown::Both)?;
    Ok(())
}

two_arms!(
    read_deadline_fires,
    deadline_in_the_past,
    deadline_extended_while_parked,
    deadline_shortened_while_parked,
    deadline_cleared_while_parked,
    write_deadline_fires,
    accept_deadline,
    sleeps_in_order,
    timeout_and_cancelled_read,
);

//! The runtime's net types, each case on the real kernel and on the simulated one.

mod rt_util;

use std::io::ErrorKind;
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use netpoll::rt::{self, pipe, TcpListener, TcpStream, UnixStream};
use netpoll::sys::errno;
use netpoll::Poller;
use rt_util::{any_port, echo, expect_errno, expect_kind, read_exact, thousands_of_connections};

type R = std::io::Result<()>;

async fn tcp_echo_and_eof<P: Poller + 'static>() -> R {
    let ln = TcpListener::<P>::bind(any_port())?;
    let addr = ln.local_addr()?;
    let server = rt::spawn(async move {
        let (c, peer) = ln.accept().await?;
        assert_eq!(peer.ip(), &std::net::Ipv4Addr::LOCALHOST);
        echo(c).await
    });
    let c = TcpStream::<P>::connect(addr).await?;
    assert_eq!(c.peer_addr()?, addr);
    assert_eq!(c.local_addr()?.ip(), &std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(c.local_addr()?.port(), addr.port());
    for round in 0..10u8 {
        let msg = [round; 100];
        c.write_all(&msg).await?;
        assert_eq!(read_exact(&c, 100).await?, msg);
    }
    c.shutdown(Shutdown::Write)?;
    let mut buf = [0u8; 8];
    assert_eq!(
        c.read(&mut buf).await?,
        0,
        "EOF after the server's echo loop ends"
    );
    server.await?
}

async fn large_transfer_parks_writer<P: Poller + 'static>() -> R {
    // 8 MiB through a socketpair: the writer hits EAGAIN and parks on its write side many times.
    let (a, b) = UnixStream::<P>::pair()?;
    const TOTAL: usize = 8 << 20;
    let writer = rt::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            sent += a.write(&chunk[..chunk.len().min(TOTAL - sent)]).await?;
        }
        a.shutdown(Shutdown::Write)?;
        Ok::<_, std::io::Error>(sent)
    });
    let mut got = 0;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = b.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&x| x == 7));
        got += n;
    }
    assert_eq!(writer.await??, TOTAL);
    assert_eq!(got, TOTAL);
    Ok(())
}

async fn half_close<P: Poller + 'static>() -> R {
    let ln = TcpListener::<P>::bind(any_port())?;
    let addr = ln.local_addr()?;
    let server = rt::spawn(async move {
        let (c, _) = ln.accept().await?;
        // Read the whole request (until the client's half-close), then answer.
        let mut req = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = c.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        c.write_all(&req).await?;
        c.write_all(b"!").await?;
        Ok::<_, std::io::Error>(())
    });
    let c = TcpStream::<P>::connect(addr).await?;
    c.write_all(b"question").await?;
    c.shutdown(Shutdown::Write)?;
    // Writing after our half-close fails; reading still works.
    expect_errno(c.write(b"x").await, errno::EPIPE);
    let mut resp = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = c.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
    }
    assert_eq!(resp, b"question!");
    server.await?
}

async fn reset<P: Poller + 'static>() -> R {
    let ln = TcpListener::<P>::bind(any_port())?;
    let addr = ln.local_addr()?;
    let server = rt::spawn(async move {
        let (c, _) = ln.accept().await?;
        // The bytes may come in pieces (split segments on the sim).
        assert_eq!(read_exact(&c, 3).await?, b"bye");
        c.set_linger(Some(0))?;
        c.close()?;
        Ok::<_, std::io::Error>(())
    });
    let c = TcpStream::<P>::connect(addr).await?;
    c.write_all(b"bye").await?;
    server.await??;
    let mut buf = [0u8; 8];
    // The reader was parked (or parks now) and is woken by the RST.
    expect_errno(c.read(&mut buf).await, errno::ECONNRESET);
    Ok(())
}

async fn connect_refused<P: Poller + 'static>() -> R {
    // A port nobody listens on: bind a listener, note its port, close it.
    let port = {
        let ln = TcpListener::<P>::bind(any_port())?;
        let a = ln.local_addr()?;
        ln.close()?;
        a
    };
    expect_errno(
        TcpStream::<P>::connect(port).await.map(|_| ()),
        errno::ECONNREFUSED,
    );
    Ok(())
}

async fn close_wakes_parked_reader<P: Poller + 'static>() -> R {
    let (a, _b) = UnixStream::<P>::pair()?;
    let a = Arc::new(a);
    let a2 = a.clone();
    let reader = rt::spawn(async move {
        let mut buf = [0u8; 8];
        a2.read(&mut buf).await
    });
    // Let the reader park, then close under it.
    rt::sleep(Duration::from_millis(5)).await;
    assert!(!reader.is_finished());
    a.close()?;
    expect_kind(reader.await?, ErrorKind::NotConnected);
    // Later operations fail the same way, and a second close is an error.
    let mut buf = [0u8; 1];
    expect_kind(a.read(&mut buf).await, ErrorKind::NotConnected);
    expect_kind(a.close(), ErrorKind::NotConnected);
    Ok(())
}

async fn close_wakes_parked_writer<P: Poller + 'static>() -> R {
    let (a, _b) = UnixStream::<P>::pair()?;
    let a = Arc::new(a);
    let a2 = a.clone();
    let writer = rt::spawn(async move {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            a2.write(&chunk).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    rt::sleep(Duration::from_millis(5)).await;
    a.close()?;
    expect_kind(writer.await?, ErrorKind::NotConnected);
    Ok(())
}

async fn second_waiter_is_an_error<P: Poller + 'static>() -> R {
    let (a, b) = UnixStream::<P>::pair()?;
    let a = Rc::new(a);
    let a2 = a.clone();
    let first = rt::spawn_local(async move {
        let mut buf = [0u8; 8];
        let n = a2.read(&mut buf).await?;
        Ok::<_, std::io::Error>(buf[..n].to_vec())
    });
    rt::sleep(Duration::from_millis(5)).await;
    let mut buf = [0u8; 8];
    expect_kind(a.read(&mut buf).await, ErrorKind::ResourceBusy);
    // The first waiter was not displaced: it still gets the data.
    b.write_all(b"hi").await?;
    let got = first.await??;
    assert!(!got.is_empty() && b"hi".starts_with(&got), "{got:?}");
    Ok(())
}

async fn unix_pair_echo<P: Poller + 'static>() -> R {
    let (a, b) = UnixStream::<P>::pair()?;
    let t = rt::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            let n = b.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            b.write_all(&buf[..n]).await?;
        }
    });
    for i in 0..20u8 {
        a.write_all(&[i; 10]).await?;
        let mut got = [0u8; 10];
        let mut n = 0;
        while n < 10 {
            n += a.read(&mut got[n..]).await?;
        }
        assert_eq!(got, [i; 10]);
    }
    a.shutdown(Shutdown::Write)?;
    t.await?
}

async fn pipe_eof_and_epipe<P: Poller + 'static>() -> R {
    let (r, w) = pipe::<P>()?;
    let t = rt::spawn(async move {
        for _ in 0..3 {
            w.write_all(b"abc").await?;
            rt::sleep(Duration::from_millis(1)).await;
        }
        drop(w);
        Ok::<_, std::io::Error>(())
    });
    let mut all = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    assert_eq!(all, b"abcabcabc");
    t.await??;
    // Reader gone: the writer gets EPIPE.
    let (r, w) = pipe::<P>()?;
    r.close()?;
    expect_errno(w.write(b"x").await, errno::EPIPE);
    Ok(())
}

two_arms!(
    tcp_echo_and_eof,
    large_transfer_parks_writer,
    half_close,
    reset,
    connect_refused,
    close_wakes_parked_reader,
    close_wakes_parked_writer,
    second_waiter_is_an_error,
    unix_pair_echo,
    pipe_eof_and_epipe,
    thousands_of_connections,
);

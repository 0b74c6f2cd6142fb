//! An echo server written once against the `Poller` trait, run on real epoll or on the
//! simulated kernel.
//!
//! ```text
//! cargo run --release --example echo -- 127.0.0.1:7000            # single-threaded, real epoll
//! cargo run --release --example echo -- 127.0.0.1:7000 --threads 4
//! nc 127.0.0.1 7000                                               # type a line, get it back
//! cargo run --release --example echo -- --sim 42                  # the same handler on the sim
//! ```
//!
//! `handle` and `serve` below are the whole server; nothing in them knows which kernel it runs on.

use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};

use netpoll::rt::{self, MultiRuntime, Runtime, TcpListener, TcpStream};
use netpoll::Poller;
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

/// One connection: echo until the client half-closes.
pub async fn handle<P: Poller + 'static>(conn: TcpStream<P>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        conn.write_all(&buf[..n]).await?;
    }
    Ok(())
}

/// The accept loop: one task per connection.
pub async fn serve<P: Poller + 'static>(ln: TcpListener<P>) -> io::Result<()> {
    loop {
        let (conn, _peer) = ln.accept().await?;
        rt::spawn(async move {
            let _ = handle(conn).await;
        });
    }
}

/// Serves on the real kernel at `addr` with `threads` workers (1: the single-threaded
/// runtime); `ready` gets the bound address. Runs until the listener fails.
pub fn run_real(
    addr: SocketAddrV4,
    threads: usize,
    ready: impl FnOnce(SocketAddrV4) + Send + 'static,
) -> io::Result<()> {
    let main = async move {
        let ln = TcpListener::<RealNet>::bind(addr)?;
        ready(ln.local_addr()?);
        serve(ln).await
    };
    if threads <= 1 {
        Runtime::new(RealNet::new())?.block_on(main)?
    } else {
        MultiRuntime::new(RealNet::new(), threads)?.block_on(main)?
    }
}

/// The same server on the simulated kernel, with `clients` simulated clients each sending
/// `rounds` messages; returns the virtual time it took.
pub fn run_sim(seed: u64, clients: usize, rounds: usize) -> io::Result<std::time::Duration> {
    let mut rt = Runtime::seeded(Sim::new(seed), seed)?;
    rt.block_on(async move {
        let ln = TcpListener::<Sim>::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000))?;
        let addr = ln.local_addr()?;
        rt::spawn(serve(ln));
        let start = rt::now();
        let hs: Vec<_> = (0..clients)
            .map(|i| {
                rt::spawn(async move {
                    let c = TcpStream::<Sim>::connect(addr).await?;
                    let mut buf = [0u8; 64];
                    for r in 0..rounds {
                        let msg = [(i + r) as u8; 64];
                        c.write_all(&msg).await?;
                        let mut got = 0;
                        while got < msg.len() {
                            let n = c.read(&mut buf[got..]).await?;
                            if n == 0 {
                                return Err(io::ErrorKind::UnexpectedEof.into());
                            }
                            got += n;
                        }
                        assert_eq!(buf, msg, "echoed bytes differ");
                    }
                    c.shutdown(Shutdown::Write)?;
                    Ok::<_, io::Error>(())
                })
            })
            .collect();
        for h in hs {
            h.await??;
        }
        Ok(rt::now() - start)
    })?
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--sim") {
        let seed = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1);
        let took = run_sim(seed, 100, 10)?;
        println!(
            "sim seed {seed}: 100 clients x 10 round trips echoed in {took:?} of virtual time"
        );
        return Ok(());
    }
    let addr = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("ADDR is ip:port"))
        .unwrap_or(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000));
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .map_or(1, |t| t.parse().expect("--threads N"));
    run_real(addr, threads, move |a| {
        eprintln!("echo: listening on {a} ({threads} thread(s))");
    })
}

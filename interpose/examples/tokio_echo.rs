//! An unmodified tokio echo server with N clients, on the simulated kernel or on real loopback.
//!
//! ```text
//! cargo run --release -p netpoll-interpose --example tokio_echo -- --sim 7 --conns 10000
//! cargo run --release -p netpoll-interpose --example tokio_echo -- --real --conns 10000
//! ```
//!
//! Each client connects, sends its message, half-closes, and reads the echo to the end; the
//! server echoes each connection in a task of its own (`tokio::io::copy`). Clients run in
//! waves of at most 500 connections (under the listen backlog), so the real arm stays under 20,000 descriptors. Both
//! arms print the same `results` digest; `fingerprint` on the sim also covers the kernel's call
//! sequence, the same in every process for one seed.

mod common;

use std::time::Duration;

use common::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WAVE: usize = 500;

async fn echo(conns: usize) -> Digest {
    // `TcpListener::bind` listens with a backlog of 128: too few for a wave of clients on real
    // Linux, which then resets the connections whose handshake found the accept queue full.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = socket.listen(1024).expect("listen");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.expect("accept");
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await.expect("copy");
                w.shutdown().await.expect("shutdown");
            });
        }
    });
    // A timer on the way: ten virtual seconds on the sim.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut results = Vec::with_capacity(conns);
    for start in (0..conns).step_by(WAVE) {
        let wave: Vec<_> = (start..conns.min(start + WAVE))
            .map(|i| {
                tokio::spawn(async move {
                    let msg = common::message(i);
                    let mut c = TcpStream::connect(addr).await.expect("connect");
                    c.set_nodelay(true).expect("nodelay");
                    c.write_all(&msg).await.expect("write");
                    c.shutdown().await.expect("shutdown");
                    let mut back = Vec::new();
                    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut back))
                        .await
                        .expect("echo within 30 s")
                        .expect("read");
                    (i, back == msg, back.len())
                })
            })
            .collect();
        for t in wave {
            results.push(t.await.expect("client task"));
        }
    }
    let mut d = Digest::default();
    for (i, ok, len) in results {
        assert!(ok, "client {i}: the echo differs from what it sent");
        d.add_u64(i as u64);
        d.add_u64(len as u64);
    }
    d
}

fn main() {
    let args = common::args();
    let go = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(echo(args.conns))
    };
    match args.sim() {
        None => common::report(go(), None),
        Some(sim) => {
            let d = netpoll_interpose::run(&sim, go);
            common::report(d, Some(&sim));
        }
    }
}

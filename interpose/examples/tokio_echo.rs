//! An unmodified tokio echo server with N clients, on the simulated kernel or on real loopback.
//!
//! ```text
//! cargo run --release -p netpoll-interpose --example tokio_echo -- --sim 7 --conns 10000
//! cargo run --release -p netpoll-interpose --example tokio_echo -- --real --conns 10000
//! cargo run --release -p netpoll-interpose --example tokio_echo -- --sim 7 --workers 4
//! ```
//!
//! With `--workers N` the server runs on tokio's multi-thread runtime; on the sim, under
//! `netpoll_interpose::run_threads`, each of its threads is a simulated thread and the seed
//! picks the interleaving (the same seed gives the same `fingerprint` in every process).
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

/// `--workers N`: the multi-thread runtime; on the sim every thread it starts (workers, the
/// blocking pool) is a simulated thread, interleaved by the seed.
fn multi_thread(args: common::Args) {
    let go = move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(echo(args.conns))
    };
    let Some(sim) = args.sim() else {
        return common::report(go(), None);
    };
    let seed = sim.seed();
    match netpoll_interpose::run_threads(netpoll_threads::Runner::new(seed), sim, go) {
        Ok(out) => {
            let s = out.report.schedule();
            let handoffs = s.windows(2).filter(|w| w[0].tid != w[1].tid).count();
            eprintln!(
                "threads: {}, switch points: {}, hand-offs: {handoffs}, schedule {:016x}",
                out.report.thread_names().len(),
                out.report.steps(),
                out.report.schedule_hash()
            );
            out.kernel
                .with_sim(|sim| common::report(out.value, Some(sim)));
        }
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let args = common::args();
    if args.workers > 0 {
        return multi_thread(args);
    }
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

//! madsim 0.2.34 echo, every connection open at once: one server node, client nodes of
//! `--per-node` connections each (default 1,000), each connection a task on its node.
//! Build with `RUSTFLAGS="--cfg madsim"`.

#[cfg(not(madsim))]
fn main() {
    eprintln!("error: build with RUSTFLAGS=\"--cfg madsim\" (madsim is plain tokio without it)");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    use madsim::net::{TcpListener, TcpStream};
    use madsim::runtime::{Handle, Runtime};
    use netpoll_compare::{fill, finish, serve, Shape};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = Shape::from_args();
    let started = Instant::now();
    let echoed = Arc::new(AtomicU64::new(0));
    let mut rt = Runtime::with_seed_and_config(s.seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(24 * 3600));
    let e2 = echoed.clone();
    rt.block_on(async move {
        let h = Handle::current();
        let server_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let addr = SocketAddr::new(server_ip, 7000);
        let server = h.create_node().name("server").ip(server_ip).build();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        server.spawn(async move {
            let ln = TcpListener::bind(addr).await.expect("bind");
            ready_tx.send(()).ok();
            loop {
                let (c, _) = ln.accept().await.expect("accept");
                madsim::task::spawn(serve(c, s));
            }
        });
        ready_rx.await.expect("server up");
        let mut joins = Vec::new();
        for n in 0..s.nodes() {
            let ip = IpAddr::V4(Ipv4Addr::new(
                10,
                1 + (n >> 16) as u8,
                (n >> 8) as u8,
                n as u8 + 1,
            ));
            let node = h.create_node().name(format!("client{n}")).ip(ip).build();
            for c in s.conns_of(n) {
                let echoed = e2.clone();
                joins.push(node.spawn(async move {
                    let mut st = TcpStream::connect(addr).await.expect("connect");
                    let mut out = vec![0u8; s.size as usize];
                    let mut inb = vec![0u8; s.size as usize];
                    for m in 0..s.msgs {
                        fill(&mut out, c, m * s.size);
                        st.write_all(&out).await.expect("client write");
                        st.flush().await.expect("client flush");
                        st.read_exact(&mut inb).await.expect("client read");
                        assert_eq!(inb, out, "connection {c} message {m}: echo differs");
                        echoed.fetch_add(s.size, Relaxed);
                    }
                    st.shutdown().await.ok();
                }));
            }
        }
        for j in joins {
            j.await.expect("client task");
        }
    });
    finish("madsim", s, echoed.load(Relaxed), started);
}

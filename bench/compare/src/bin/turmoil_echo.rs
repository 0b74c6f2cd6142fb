//! turmoil 0.7.2 echo, every connection open at once: one server host, client hosts of
//! `--per-node` connections each (default 1,000; a host has 16,384 ephemeral ports), each
//! connection a task on its host. The listener's queue (`tcp_capacity`, default 64) is raised
//! to `--conns` so that no connection is refused.

use netpoll_compare::{fill, finish, serve, Shape};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

fn main() {
    let s = Shape::from_args();
    let started = Instant::now();
    let mut sim = turmoil::Builder::new()
        .rng_seed(s.seed)
        .simulation_duration(Duration::from_secs(24 * 3600))
        .tcp_capacity(s.conns.max(64) as usize)
        .build();
    sim.host("server", move || async move {
        let ln = TcpListener::bind(("0.0.0.0", 7000)).await?;
        loop {
            let (c, _) = ln.accept().await?;
            tokio::spawn(serve(c, s));
        }
    });
    let echoed = Rc::new(Cell::new(0u64));
    for n in 0..s.nodes() {
        let echoed = echoed.clone();
        sim.client(format!("client{n}"), async move {
            let mut tasks = tokio::task::JoinSet::new();
            for c in s.conns_of(n) {
                tasks.spawn(async move {
                    let mut st = TcpStream::connect(("server", 7000)).await?;
                    let mut out = vec![0u8; s.size as usize];
                    let mut inb = vec![0u8; s.size as usize];
                    for m in 0..s.msgs {
                        fill(&mut out, c, m * s.size);
                        st.write_all(&out).await?;
                        st.read_exact(&mut inb).await?;
                        assert_eq!(inb, out, "connection {c} message {m}: echo differs");
                    }
                    st.shutdown().await?;
                    Ok::<u64, std::io::Error>(s.msgs * s.size)
                });
            }
            while let Some(r) = tasks.join_next().await {
                echoed.set(echoed.get() + r.expect("client task")?);
            }
            Ok(())
        });
    }
    sim.run().expect("turmoil run");
    finish("turmoil", s, echoed.get(), started);
}

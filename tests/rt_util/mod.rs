//! Shared vocabulary of the runtime tests (`tests/rt_*.rs`): run one async case on the real
//! kernel and on the simulated one with several seeds, and print how to replay a failing seed.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use std::net::Shutdown;

use netpoll::rt::{self, MultiRuntime, Runtime, TcpListener, TcpStream};
use netpoll::Poller;
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;

/// The seeds each sim arm runs: `NETPOLL_SEED=n` replays one.
pub fn seeds() -> Vec<u64> {
    match std::env::var("NETPOLL_SEED") {
        Ok(s) => vec![s.parse().expect("NETPOLL_SEED is a number")],
        Err(_) => (1..=6).collect(),
    }
}

/// Port 0 on loopback.
pub fn any_port() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)
}

/// Runs `case` on the single-threaded runtime over the real kernel.
pub fn on_real<Fut: Future<Output = io::Result<()>>>(case: impl FnOnce() -> Fut) {
    let mut rt = Runtime::new(RealNet::new()).expect("runtime");
    match rt.block_on(case()) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("real: case failed: {e}"),
        Err(e) => panic!("real: runtime failed: {e}"),
    }
}

/// Runs `case` on the multi-threaded runtime (`workers` threads) over the real kernel.
pub fn on_multi<Fut>(workers: usize, case: impl FnOnce() -> Fut)
where
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let rt = MultiRuntime::new(RealNet::new(), workers).expect("runtime");
    match rt.block_on(case()) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("multi({workers}): case failed: {e}"),
        Err(e) => panic!("multi({workers}): runtime failed: {e}"),
    }
}

/// The simulated kernel for `seed`: even seeds run with the sim's benign fault plan
/// (`FaultPlan::chaos`: short reads and writes, split segments, spurious events, `EINTR`,
/// timer/readiness ties in both orders), odd seeds without faults.
pub fn sim(seed: u64) -> Sim {
    let cfg = netpoll_sim::SimConfig {
        faults: if seed % 2 == 0 {
            netpoll_sim::FaultPlan::chaos()
        } else {
            netpoll_sim::FaultPlan::none()
        },
        ..netpoll_sim::SimConfig::default()
    };
    Sim::with_config(seed, cfg)
}

/// The kernel's lost-wakeup judgement for the runtime (the one copy, in the sim's crate).
pub use netpoll_sim::netpoller::judge_by_parked_tasks;

/// Runs `case` on the seeded runtime over the simulated kernel, once per seed, with the
/// kernel's oracles judging it ([`judge_by_parked_tasks`]).
pub fn on_sim<Fut: Future<Output = io::Result<()>>>(case: impl Fn() -> Fut) {
    for seed in seeds() {
        let mut rt = Runtime::seeded(sim(seed), seed).expect("runtime");
        judge_by_parked_tasks(&mut rt);
        let r = rt.block_on(case());
        let verdict = match rt.driver().poller().violation() {
            Some(v) => format!("\n{v}"),
            None => String::new(),
        };
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                panic!("sim seed {seed}: case failed: {e}{verdict}\nreplay: NETPOLL_SEED={seed}")
            }
            Err(e) => {
                panic!("sim seed {seed}: runtime failed: {e}{verdict}\nreplay: NETPOLL_SEED={seed}")
            }
        }
    }
}

/// `#[test]`s running the generic case `$case::<P>()` on the real kernel and on the sim.
#[macro_export]
macro_rules! two_arms {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn real() {
                $crate::rt_util::on_real(super::$case::<netpoll_realnet::RealNet>);
            }
            #[test]
            fn sim() {
                $crate::rt_util::on_sim(super::$case::<netpoll_sim::Sim>);
            }
        }
    )*};
}

/// Asserts that `r` failed with `kind`.
pub fn expect_kind<T: std::fmt::Debug>(r: io::Result<T>, kind: io::ErrorKind) {
    match r {
        Err(e) if e.kind() == kind => {}
        other => panic!("expected an error of kind {kind:?}, got {other:?}"),
    }
}

/// Asserts that `r` failed with Linux errno `code`.
pub fn expect_errno<T: std::fmt::Debug>(r: io::Result<T>, code: i32) {
    match r {
        Err(e) if e.raw_os_error() == Some(code) => {}
        other => panic!("expected errno {code}, got {other:?}"),
    }
}

/// A bound on a virtual or real duration, for assertions.
pub fn poller_name<P: Poller>(p: &P) -> &'static str {
    p.name()
}

/// The handler every test server uses: echo until EOF.
pub async fn echo<P: Poller + 'static>(conn: TcpStream<P>) -> io::Result<()> {
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

/// Reads exactly `n` bytes (`UnexpectedEof` if the stream ends first).
pub async fn read_exact<P: Poller + 'static>(c: &TcpStream<P>, n: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = c.read(&mut out[got..]).await?;
        if k == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += k;
    }
    Ok(out)
}

/// 2,000 connections open at once, three 64-byte round trips each, echoed by one task per
/// connection.
pub async fn thousands_of_connections<P: Poller + 'static>() -> io::Result<()> {
    const CONNS: usize = 2000;
    let ln = TcpListener::<P>::bind(any_port())?;
    let addr = ln.local_addr()?;
    let server = rt::spawn(async move {
        let mut handlers = Vec::new();
        for _ in 0..CONNS {
            let (c, _) = ln.accept().await?;
            handlers.push(rt::spawn(echo(c)));
        }
        for h in handlers {
            h.await??;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut clients = Vec::new();
    for i in 0..CONNS {
        clients.push(rt::spawn(async move {
            let c = TcpStream::<P>::connect(addr).await?;
            for round in 0..3u8 {
                let msg = [(i as u8) ^ round; 64];
                c.write_all(&msg).await?;
                assert_eq!(read_exact(&c, 64).await?, msg);
            }
            c.shutdown(Shutdown::Write)?;
            Ok::<_, std::io::Error>(())
        }));
    }
    for c in clients {
        c.await??;
    }
    server.await?
}

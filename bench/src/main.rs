//! `echo_bench`: netpoll's echo server (`examples/echo.rs`, on real epoll) against a tokio
//! current-thread echo server, driven by one load generator, on the same machine in the same
//! run.
//!
//! ```text
//! cargo run --release -p netpoll-bench -- [--conns 1000,10000] [--rounds 10] [--size 64]
//!                                         [--threads 1,2] [--reps 5]
//! ```
//!
//! Each server runs in a child process (this binary, `server ...`), so that 10,000 connections
//! cost 10,000 descriptors in each process rather than 20,000 in one. The load generator (a tokio
//! current-thread runtime in this process, the same for every server) first opens all
//! connections, then starts the clock: every connection does `rounds` round trips of `size`
//! bytes (write, then read the echo back), all connections at once. Throughput is round trips
//! per second over that phase; latency is per round trip; server CPU is the server process's
//! user + system time over that phase (from `/proc/PID/stat`) divided by the round trips.

#[path = "../../examples/echo.rs"]
#[allow(dead_code)]
mod echo;

use std::io::{BufRead, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tokio_server() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let ln = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(match ln.local_addr()? {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        });
        loop {
            let (mut s, _) = ln.accept().await?;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

fn announce(a: SocketAddrV4) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "PORT {}", a.port()).unwrap();
    out.flush().unwrap();
}

fn start(kind: &str, threads: usize) -> (Child, SocketAddrV4) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["server", kind, &threads.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server said {line:?}"));
    (child, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

struct Result {
    elapsed: Duration,
    trips: usize,
    lat_us: Vec<u32>,
    /// The server process's CPU time (user + system) during the measured phase.
    server_cpu: Duration,
}

/// A process's CPU time so far (user + system), from `/proc/PID/stat` (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Duration::from_millis(10 * f.iter().sum::<u64>())
}

fn load(addr: SocketAddrV4, pid: u32, conns: usize, rounds: usize, size: usize) -> Result {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Connect in batches, so that the accept queue never overflows (not measured).
        let mut streams = Vec::with_capacity(conns);
        while streams.len() < conns {
            let batch = (conns - streams.len()).min(256);
            let hs: Vec<_> = (0..batch)
                .map(|_| {
                    tokio::spawn(async move {
                        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        s
                    })
                })
                .collect();
            for h in hs {
                streams.push(h.await.unwrap());
            }
        }
        let cpu0 = cpu_time(pid);
        let start = Instant::now();
        let hs: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                tokio::spawn(async move {
                    let msg = vec![i as u8; size];
                    let mut buf = vec![0u8; size];
                    let mut lat = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let t = Instant::now();
                        s.write_all(&msg).await.unwrap();
                        s.read_exact(&mut buf).await.unwrap();
                        lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                        assert_eq!(buf, msg);
                    }
                    lat
                })
            })
            .collect();
        let mut lat_us = Vec::with_capacity(conns * rounds);
        for h in hs {
            lat_us.extend(h.await.unwrap());
        }
        let elapsed = start.elapsed();
        Result {
            elapsed,
            trips: conns * rounds,
            lat_us,
            server_cpu: cpu_time(pid) - cpu0,
        }
    })
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// netpoll's echo server against tokio's, on real epoll (see the crate docs).
#[derive(Parser, Debug)]
#[command(name = "netpoll-bench", about)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000], value_parser = clap::value_parser!(u32).range(1..=20_000))]
    conns: Vec<u32>,
    /// Round trips per connection.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Bytes per message.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    size: u32,
    /// Worker counts of the netpoll servers, comma-separated (1: the single-threaded runtime).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2], value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: Vec<u32>,
    /// Repetitions of every configuration (the median by throughput is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Only a server (what the benchmark starts in a child process); prints its port.
    Server {
        /// `tokio` or `netpoll`.
        #[arg(value_parser = ["tokio", "netpoll"])]
        kind: String,
        /// netpoll's worker threads.
        #[arg(default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
    },
    /// Only the load generator, against a server started by hand (for profiling one server,
    /// e.g. under `strace -c` or `perf`): 10 round trips of 64 bytes per connection.
    Client {
        /// The server's port on 127.0.0.1.
        port: u16,
        /// Connections.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=20_000))]
        conns: u32,
    },
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    match cli.role {
        Some(Role::Server { kind, threads }) => {
            return if kind == "tokio" {
                tokio_server()
            } else {
                let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
                echo::run_real(addr, threads as usize, announce)
            };
        }
        Some(Role::Client { port, conns }) => {
            let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
            let mut r = load(addr, std::process::id(), conns as usize, 10, 64);
            r.lat_us.sort_unstable();
            println!(
                "{} round trips/s, p99 {} µs",
                (r.trips as f64 / r.elapsed.as_secs_f64()) as u64,
                pct(&r.lat_us, 0.99)
            );
            return Ok(());
        }
        None => {}
    }
    let conns: Vec<usize> = cli.conns.iter().map(|&n| n as usize).collect();
    let (rounds, size, reps) = (cli.rounds as usize, cli.size as usize, cli.reps as usize);
    let threads: Vec<usize> = cli.threads.iter().map(|&t| t as usize).collect();
    let mut servers = vec![("tokio current-thread".to_string(), "tokio", 1)];
    for &t in &threads {
        let name = if t == 1 {
            "netpoll single-threaded".to_string()
        } else {
            format!("netpoll {t} workers")
        };
        servers.push((name, "netpoll", t));
    }
    println!(
        "| server | conns | round trips | throughput (round trips/s) | p50 latency | p99 latency | server CPU per round trip |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &n in &conns {
        // `reps` rounds, each running every server once against a fresh server process, so
        // that drift in the machine's speed hits every server alike; the median by throughput
        // is reported.
        let mut runs: Vec<Vec<Result>> = servers.iter().map(|_| Vec::new()).collect();
        for _ in 0..reps {
            for (i, (_, kind, t)) in servers.iter().enumerate() {
                let (mut child, addr) = start(kind, *t);
                let r = load(addr, child.id(), n, rounds, size);
                child.kill()?;
                child.wait()?;
                runs[i].push(r);
            }
        }
        for ((name, _, _), mut rs) in servers.iter().zip(runs) {
            rs.sort_by_key(|a| a.elapsed);
            let r = &mut rs[reps / 2];
            r.lat_us.sort_unstable();
            println!(
                "| {name} | {n} | {} | {:.0} | {} µs | {} µs | {:.1} µs |",
                r.trips,
                r.trips as f64 / r.elapsed.as_secs_f64(),
                pct(&r.lat_us, 0.50),
                pct(&r.lat_us, 0.99),
                r.server_cpu.as_secs_f64() * 1e6 / r.trips as f64,
            );
        }
    }
    Ok(())
}

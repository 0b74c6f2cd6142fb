//! The one-call check for tokio programs (`CheckInterposed::run_tokio`, `#[netpoll::test(tokio)]`)
//! and the async lost-wakeup oracle, on a custom `AsyncRead` with a lost-wakeup bug and its
//! fixed twin.
//!
//! The fixed twin's long sweep (10,000 seeds) is a command, not a test:
//!
//! ```text
//! NETPOLL_SEEDS=0..10000 cargo test -p netpoll-interpose --test check_tokio fixed_twin
//! ```
//!
//! and so is the buggy twin's detection rate (how many of 1,000 seeds find it):
//!
//! ```text
//! cargo test -p netpoll-interpose --test check_tokio detection_rate -- --ignored --nocapture
//! ```

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use netpoll_interpose::CheckInterposed;
use netpoll_scenarios::check::{Check, CheckError, Failure, Faults};
use netpoll_sim::Violation;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Hands out one line per read, from a stream read 64 bytes at a time.
///
/// The bug (`buggy`): when a read from the stream brought part of a line, it returns `Pending`
/// to wait for the rest, without polling the stream again. The stream's last poll returned
/// `Ready`, so no waker is registered: nothing will ever wake the task. tokio's read took fewer
/// bytes than asked and cleared the socket's readiness; the rest of the line arrives as an edge
/// that the runtime caches and that wakes nobody. The twin loops and polls the stream again.
struct Lines<R> {
    inner: R,
    pending: Vec<u8>,
    eof: bool,
    buggy: bool,
}

impl<R> Lines<R> {
    fn new(inner: R, buggy: bool) -> Lines<R> {
        Lines {
            inner,
            pending: Vec::new(),
            eof: false,
            buggy,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Lines<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let end = match self.pending.iter().position(|b| *b == b'\n') {
                Some(i) => Some(i + 1),
                None if self.eof => Some(self.pending.len()),
                None => None,
            };
            if let Some(end) = end {
                let n = end.min(out.remaining());
                out.put_slice(&self.pending[..n]);
                self.pending.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 64];
            let mut rb = ReadBuf::new(&mut chunk);
            let this = &mut *self;
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.pending.extend_from_slice(rb.filled());
            if this.buggy && !this.pending.contains(&b'\n') {
                // The bug: "wait for the rest of the line" without registering for it.
                return Poll::Pending;
            }
        }
    }
}

/// An echo of lines: the server reads through [`Lines`] and writes each line back; the client
/// sends each line in two writes (so that part of a line can arrive alone) and checks the
/// echo.
async fn line_echo(buggy: bool) -> io::Result<()> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await?;
        let (r, mut w) = s.into_split();
        let mut lines = Lines::new(r, buggy);
        let mut buf = [0u8; 256];
        loop {
            let n = lines.read(&mut buf).await?;
            if n == 0 {
                return io::Result::Ok(());
            }
            w.write_all(&buf[..n]).await?;
        }
    });
    let mut c = TcpStream::connect(addr).await?;
    let mut sent = Vec::new();
    for i in 0..8u8 {
        let line: Vec<u8> = (0..20 + 7 * usize::from(i))
            .map(|k| b'a' + ((k + usize::from(i)) % 26) as u8)
            .chain(std::iter::once(b'\n'))
            .collect();
        let half = line.len() / 2;
        c.write_all(&line[..half]).await?;
        tokio::task::yield_now().await;
        c.write_all(&line[half..]).await?;
        sent.extend_from_slice(&line);
    }
    c.shutdown().await?;
    let mut got = Vec::new();
    c.read_to_end(&mut got).await?;
    assert_eq!(got, sent, "the echo differs");
    server.await?
}

#[test]
fn the_buggy_async_read_is_found_as_a_lost_wakeup_and_replays() {
    let check = || Check::new().env(|_| None).seeds(0..1000).shrink_runs(0);
    let e = check()
        .try_run_tokio(|| line_echo(true))
        .expect_err("the lost wakeup is found within 1,000 seeds");
    let CheckError::Failed(f) = e else {
        panic!("not a failure: {e}")
    };
    assert_eq!(f.oracle, "lost-wakeup", "{f}");
    assert!(f.seed < 1000);
    assert!(
        f.replay.contains(&format!("NETPOLL_SEED={}", f.seed)),
        "{f}"
    );
    let text = f.to_string();
    assert!(
        text.contains("the loop wants IN"),
        "the diagnosis names what the task waited for: {text}"
    );
    // The replay: that seed alone fails the same way.
    let again = check()
        .seeds(f.seed..=f.seed)
        .try_run_tokio(|| line_echo(true))
        .expect_err("the seed replays");
    let CheckError::Failed(g) = again else {
        panic!("not a failure: {again}")
    };
    assert_eq!((g.seed, g.oracle), (f.seed, "lost-wakeup"));
    // The same descriptor at the same virtual instant (the registration's data is tokio's
    // heap address, which differs).
    let at = |f: &Failure| match &f.violation {
        Some(Violation::LostWakeup { fd, at_ns, .. }) => (*fd, *at_ns),
        other => panic!("not a lost wakeup: {other:?}"),
    };
    assert_eq!(at(&g), at(&f));
}

/// A measurement, not a check (run with `--ignored`): of seeds 0..1000, how many find the bug,
/// with no faults and under chaos.
#[test]
#[ignore]
fn detection_rate() {
    for faults in [Faults::None, Faults::Chaos] {
        let mut by = std::collections::BTreeMap::new();
        for s in 0..1000 {
            let r = Check::new()
                .env(|_| None)
                .seeds(s..=s)
                .faults(faults.clone())
                .shrink_runs(0)
                .try_run_tokio(|| line_echo(true));
            if let Err(CheckError::Failed(f)) = r {
                *by.entry(f.oracle).or_insert(0) += 1;
            }
        }
        println!("buggy Lines, faults {faults:?}: failing seeds of 1000 by oracle: {by:?}");
        assert!(by.contains_key("lost-wakeup"));
    }
}

/// The fixed twin: no false alarm (more seeds: see the module docs).
#[test]
fn fixed_twin_passes() {
    Check::new().seeds(0..300).run_tokio(|| line_echo(false));
}

#[test]
fn fixed_twin_passes_under_chaos() {
    Check::new()
        .seeds(0..200)
        .faults(Faults::Chaos)
        .run_tokio(|| line_echo(false));
}

#[test]
fn a_failing_tokio_test_reports_seed_and_replay_and_shrinks_the_plan() {
    // A program bug that only faults reveal: it trusts one read to bring the whole reply.
    let e = Check::new()
        .env(|_| None)
        .seeds(0..200)
        .faults(Faults::Chaos)
        .try_run_tokio(|| async {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            let addr = l.local_addr()?;
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await?;
                s.write_all(&[7u8; 1000]).await?;
                io::Result::Ok(())
            });
            let mut c = TcpStream::connect(addr).await?;
            let mut buf = [0u8; 1000];
            let n = c.read(&mut buf).await?;
            assert_eq!(n, 1000, "one read brought {n} bytes");
            server.await?
        })
        .expect_err("short reads and split writes break the single read");
    let CheckError::Failed(f) = e else {
        panic!("not a failure: {e}")
    };
    assert_eq!(f.oracle, "panic", "{f}");
    assert!(f.diagnosis.contains("one read brought"), "{f}");
    let (plan, line) = f.shrunk.as_ref().expect("a chaos failure is shrunk");
    assert!(line.contains("NETPOLL_FAULTS="), "{line}");
    assert_ne!(*plan, Faults::Chaos, "the plan got smaller");
}

#[test]
fn run_interposed_runs_std_code_per_seed() {
    use std::io::{Read, Write};
    let mut runs = 0;
    Check::new().seeds(0..50).run_interposed(|| {
        runs += 1;
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut c = std::net::TcpStream::connect(l.local_addr()?)?;
        let (mut s, _) = l.accept()?;
        c.write_all(b"ping")?;
        let mut buf = [0; 4];
        s.read_exact(&mut buf)?;
        assert_eq!(&buf, b"ping");
        Ok(())
    });
    assert_eq!(runs, 50);
}

#[netpoll::test(tokio, seeds = 0..100, faults = "chaos")]
async fn the_attribute_runs_an_async_tokio_test() -> io::Result<()> {
    line_echo(false).await
}

#[netpoll::test(tokio, seeds = 0..20)]
async fn the_attribute_takes_a_test_without_a_result() {
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
}

#[netpoll::test(interposed, seeds = 0..20)]
fn the_attribute_runs_std_code() -> io::Result<()> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let _c = std::net::TcpStream::connect(l.local_addr()?)?;
    l.accept().map(drop)
}

type BoxedTest = Pin<Box<dyn std::future::Future<Output = io::Result<()>>>>;

/// The unsupported features fail with an error that names the limitation, next to tokio's own.
#[test]
fn unsupported_tokio_features_fail_naming_the_limitation() {
    let report = |f: fn() -> BoxedTest| match Check::new()
        .env(|_| None)
        .seeds(0..1)
        .try_run_tokio(f)
        .expect_err("unsupported")
    {
        CheckError::Failed(f) => f.diagnosis,
        e => panic!("{e}"),
    };
    let blocking = report(|| {
        Box::pin(async {
            tokio::task::spawn_blocking(|| 1).await?;
            Ok(())
        })
    });
    assert!(
        blocking.contains("spawn") && blocking.contains("cannot start threads"),
        "{blocking}"
    );
    let multi = report(|| {
        Box::pin(async {
            tokio::runtime::Builder::new_multi_thread().build()?;
            Ok(())
        })
    });
    assert!(multi.contains("multi-thread runtime"), "{multi}");
    let dns = report(|| {
        Box::pin(async {
            TcpStream::connect("localhost:80").await?;
            Ok(())
        })
    });
    // tokio resolves names on a blocking thread: the refusal names both.
    assert!(dns.contains("name resolution"), "{dns}");
}

//! A small suite written for real loopback, with no mention of the simulated kernel, and a
//! driver that runs it again with `NETPOLL_SIM` set: each `suite_` test then runs on a kernel
//! of its own, unchanged.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn on_sim_iff_asked() {
    let asked = std::env::var_os(netpoll_interpose::SEED_VAR).is_some();
    // Make a socket first: a NETPOLL_SIM thread gets its kernel on its first call that needs one.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    drop(l);
    assert_eq!(netpoll_interpose::on_sim(), asked);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn suite_std_echo() {
    on_sim_iff_asked();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    c.write_all(b"hello").unwrap();
    let mut buf = [0; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}

#[test]
fn suite_tokio_echo() {
    on_sim_iff_asked();
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let (mut r, mut w) = s.split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"echo me").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).await.unwrap();
        assert_eq!(back, "echo me");
    });
}

#[test]
fn suite_tokio_timeout_fires() {
    on_sim_iff_asked();
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(30), l.accept()).await;
        assert!(r.is_err(), "nobody connects: the timeout fires");
    });
}

#[test]
fn driver_runs_them_on_the_sim() {
    if std::env::var_os(netpoll_interpose::SEED_VAR).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["suite_", "--test-threads", "3"])
        .env(netpoll_interpose::SEED_VAR, "5")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("3 passed"),
        "the suite under NETPOLL_SIM=5:\n{stdout}\n{stderr}"
    );
}

/// Fails on the sim when run as a child of `a_failure_prints_its_exact_replay_line`; passes
/// otherwise. In a module, so that its full path is not its name.
mod replay {
    #[test]
    fn fails_when_asked() {
        super::on_sim_iff_asked();
        if std::env::var_os("NETPOLL_UNCHANGED_FAIL").is_some() {
            panic!("asked to fail");
        }
    }
}

#[test]
fn a_failure_prints_its_exact_replay_line() {
    if std::env::var_os(netpoll_interpose::SEED_VAR).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "replay::fails_when_asked"])
        .env(netpoll_interpose::SEED_VAR, "5")
        .env("NETPOLL_UNCHANGED_FAIL", "1")
        .output()
        .unwrap();
    // libtest prints a failed test's captured output (the panic hook's too) on stdout.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the test fails:\n{all}");
    // This file is `tests/unchanged.rs`: the line names its target and the test's full path.
    assert!(
        all.contains(
            "replay: NETPOLL_SIM=5 cargo test --test unchanged -- --exact replay::fails_when_asked\n"
        ),
        "{all}"
    );
}

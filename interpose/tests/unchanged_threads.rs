//! A small suite of multi-thread tests written for the real kernel, with no mention of the
//! simulated one, and drivers that run it again with `NETPOLL_SIM=threads:<seed>`: each `suite_`
//! test then runs, unchanged, as simulated threads on a kernel of its own (tokio's
//! `multi_thread` workers, `spawn_blocking` and `std::thread::spawn` included), interleaved by
//! the seed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether this process runs the suite under `NETPOLL_SIM` (a child of a driver).
fn under_sim() -> bool {
    std::env::var_os(netpoll_interpose::SEED_VAR).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_tokio_multi_thread_echo() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        for _ in 0..3 {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.unwrap();
                let back = tokio::task::spawn_blocking(move || {
                    buf.reverse();
                    buf
                })
                .await
                .unwrap();
                s.write_all(&back).await.unwrap();
            });
        }
    });
    for i in 0..3u8 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(&[i, 1, 2]).await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, [2, 1, i]);
    }
    server.await.unwrap();
    // On a simulated thread, a thread's calls go to the simulated kernel.
    assert_eq!(netpoll_interpose::on_sim(), under_sim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_tokio_timeout_fires() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(30), l.accept()).await;
    assert!(r.is_err(), "nobody connects: the timeout fires");
}

#[test]
fn suite_std_threads_echo() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"hello").unwrap();
    let mut buf = [0; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    server.join().unwrap();
}

/// Runs this test binary with `args` and `vars`; its stdout and stderr together.
fn child(args: &[&str], vars: &[(&str, &str)]) -> (Output, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, all)
}

#[test]
fn driver_runs_the_tests_as_simulated_threads() {
    if under_sim() {
        return;
    }
    for (sim, schedule) in [
        ("threads:5", None),
        ("threads:6", None),
        ("threads:5", Some("pct:3:500")),
    ] {
        let mut vars = vec![(netpoll_interpose::SEED_VAR, sim)];
        if let Some(p) = schedule {
            vars.push(("NETPOLL_SCHEDULE", p));
        }
        // libtest's default parallelism: each test is a threaded run, and the threads runtime
        // admits them one at a time (`Runner::run`, "One run at a time").
        let (out, all) = child(&["suite_"], &vars);
        assert!(
            out.status.success() && all.contains("4 passed"),
            "the suite under NETPOLL_SIM={sim} NETPOLL_SCHEDULE={schedule:?}:\n{all}"
        );
    }
}

/// A lost notification (the flag checked, a switch point, then a wait without the predicate):
/// under `NETPOLL_SIM=threads` some seeds hang it for ever. Only run as a child of
/// `a_deadlock_is_reported_with_its_replay_line`.
mod replay {
    #[test]
    fn lost_notification_when_asked() {
        if std::env::var_os("NETPOLL_UNCHANGED_DEADLOCK").is_none() {
            return;
        }
        let pair = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let setter = std::thread::spawn({
            let pair = pair.clone();
            move || {
                *pair.0.lock().unwrap() = true;
                pair.1.notify_one();
            }
        });
        if !*pair.0.lock().unwrap() {
            std::thread::yield_now();
            let g = pair.0.lock().unwrap();
            drop(pair.1.wait(g).unwrap());
        }
        setter.join().unwrap();
    }

    /// Fails when run as a child of `a_panic_prints_its_replay_line`.
    #[test]
    fn panics_when_asked() {
        if std::env::var_os("NETPOLL_UNCHANGED_PANIC").is_some() {
            let t = std::thread::spawn(|| 2);
            assert_eq!(t.join().unwrap(), 3, "asked to fail");
        }
    }
}

#[test]
fn a_deadlock_is_reported_with_its_replay_line() {
    if under_sim() {
        return;
    }
    let run = |seed: u64| {
        let sim = format!("threads:{seed}");
        child(
            &["--exact", "replay::lost_notification_when_asked"],
            &[
                (netpoll_interpose::SEED_VAR, sim.as_str()),
                ("NETPOLL_UNCHANGED_DEADLOCK", "1"),
            ],
        )
    };
    let (seed, (out, all)) = (0..40)
        .map(|s| (s, run(s)))
        .find(|(_, (o, _))| !o.status.success())
        .expect("some seed of 40 loses the notification");
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(all.contains("Deadlock"), "{all}");
    assert!(all.contains("waiting in futex_wait"), "{all}");
    let line = format!(
        "replay: NETPOLL_SIM=threads:{seed} cargo test --test unchanged_threads -- --exact \
         replay::lost_notification_when_asked\n"
    );
    assert!(all.contains(&line), "{all}");
    // The replay line reproduces it: the same report.
    let (again, all_again) = run(seed);
    assert_eq!(again.status.code(), Some(101));
    let report = |s: &str| s[s.find("simulated threads:").unwrap()..].to_owned();
    assert_eq!(report(&all), report(&all_again));
}

#[test]
fn a_panic_prints_its_replay_line() {
    if under_sim() {
        return;
    }
    let (out, all) = child(
        &["--exact", "replay::panics_when_asked"],
        &[
            (netpoll_interpose::SEED_VAR, "threads:3"),
            ("NETPOLL_SCHEDULE", "pct:2:100"),
            ("NETPOLL_UNCHANGED_PANIC", "1"),
        ],
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains(
            "replay: NETPOLL_SIM=threads:3 NETPOLL_SCHEDULE=pct:2:100 cargo test --test \
             unchanged_threads -- --exact replay::panics_when_asked\n"
        ),
        "{all}"
    );
}

#[test]
fn bad_values_are_named() {
    if under_sim() {
        return;
    }
    for (var, value, want) in [
        (netpoll_interpose::SEED_VAR, "threads:x", "threads:SEED"),
        (netpoll_interpose::SEED_VAR, "thread:5", "expected a seed"),
        ("NETPOLL_SCHEDULE", "fair", "NETPOLL_SCHEDULE=\"fair\""),
    ] {
        let mut vars = vec![(var, value)];
        if var != netpoll_interpose::SEED_VAR {
            vars.push((netpoll_interpose::SEED_VAR, "threads:1"));
        }
        let (out, all) = child(&["suite_std"], &vars);
        assert_eq!(out.status.code(), Some(2), "{var}={value}:\n{all}");
        assert!(all.contains(want), "{var}={value}:\n{all}");
    }
}

/// Keeps `Arc`, `Condvar` and `Mutex` in use in this file's own code.
#[test]
fn suite_condvar_handoff() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let t = std::thread::spawn({
        let pair = pair.clone();
        move || {
            *pair.0.lock().unwrap() += 1;
            pair.1.notify_all();
        }
    });
    let g = pair
        .1
        .wait_while(pair.0.lock().unwrap(), |n| *n == 0)
        .unwrap();
    assert_eq!(*g, 1);
    drop(g);
    t.join().unwrap();
}

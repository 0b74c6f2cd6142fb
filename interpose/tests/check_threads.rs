//! The one-call check for unmodified threaded programs (`CheckInterposed::run_tokio_threads`,
//! `run_threads_interposed`, `#[netpoll::test(tokio, threads)]`): tokio's multi-thread runtime
//! and std threads on the simulated kernel, interleaved by seed; a lost notification between
//! threads found by seed and replayed by its report's line; its fixed twin passing.
//!
//! The tests run at once, with no lock of their own, and compare a failure's schedule hash with
//! its replay's: the threads runtime admits one run that hosts unmodified code at a time per
//! process (`Runner::run`, "One run at a time"), so a seed's schedule does not depend on the
//! other tests' runs. Each fixed twin passes 10,000 seeds:
//!
//! ```text
//! NETPOLL_SEEDS=0..10000 cargo test -p netpoll-interpose --test check_threads -- fixed
//! ```

use std::io;
use std::sync::{Arc, Condvar, Mutex};

use netpoll_interpose::CheckInterposed;
use netpoll_scenarios::check::Check;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../scenarios/tests/support/check_env.rs"]
mod check_env;
#[path = "../../scenarios/tests/support/chrome.rs"]
mod chrome;
use check_env::{check, failure, replay_env, shown_and_trace};

/// A tokio echo with a `spawn_blocking` per connection and `conns` clients.
async fn echo(conns: usize) -> io::Result<()> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let server = tokio::spawn(async move {
        for _ in 0..conns {
            let (mut s, _) = l.accept().await?;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await?;
                let back = tokio::task::spawn_blocking(move || {
                    buf.reverse();
                    buf
                })
                .await?;
                s.write_all(&back).await?;
                s.shutdown().await
            });
        }
        io::Result::Ok(())
    });
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = tokio::net::TcpStream::connect(addr).await?;
                let msg = vec![i as u8; 100 + i];
                c.write_all(&msg).await?;
                c.shutdown().await?;
                let mut back = Vec::new();
                c.read_to_end(&mut back).await?;
                assert_eq!(back, msg);
                io::Result::Ok(())
            })
        })
        .collect();
    for c in clients {
        c.await??;
    }
    server.await?
}

#[test]
fn tokio_multi_thread_runs_in_the_check() {
    let p = check(&[])
        .seeds(0..8)
        .check_determinism(true)
        .try_run_tokio_threads(2, || echo(4))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.schedules.len(), 8);
    let distinct: std::collections::BTreeSet<u64> = p.schedules.iter().map(|s| s.1).collect();
    assert!(distinct.len() >= 6, "{} schedules", distinct.len());
}

#[netpoll_scenarios::test(tokio, threads, workers = 2, seeds = 0..5)]
async fn tokio_multi_thread_under_the_attribute() -> io::Result<()> {
    echo(3).await
}

/// A waiter that checks a flag, lets another thread run (`yield_now`, a switch point), and
/// then waits on the condition variable without checking the flag again: a notification sent
/// in between is lost. The twin waits with the predicate (`wait_while`).
fn condvar_wait(fixed: bool) -> io::Result<()> {
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let setter = std::thread::spawn({
        let pair = pair.clone();
        move || {
            *pair.0.lock().unwrap() = true;
            pair.1.notify_one();
        }
    });
    let ready = *pair.0.lock().unwrap();
    if !ready {
        std::thread::yield_now();
        let g = pair.0.lock().unwrap();
        let _g = if fixed {
            pair.1.wait_while(g, |ready| !*ready).unwrap()
        } else {
            pair.1.wait(g).unwrap()
        };
    }
    setter.join().unwrap();
    Ok(())
}

#[test]
fn a_lost_notification_between_std_threads_is_found_and_replayed() {
    let f = failure(
        check(&[])
            .seeds(0..200)
            .try_run_threads_interposed(|| condvar_wait(false)),
    );
    eprintln!("{f}");
    assert_eq!(f.oracle, "deadlock", "{f}");
    assert!(f.diagnosis.contains("waiting in futex_wait"), "{f}");
    assert!(f.replay.contains("NETPOLL_SCHEDULE=random"), "{}", f.replay);
    assert!(
        f.replay.contains("--test check_threads")
            && f.replay.ends_with(
                "-- --exact a_lost_notification_between_std_threads_is_found_and_replayed"
            ),
        "{}",
        f.replay
    );
    let env = replay_env(&f.replay);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let again = failure(check(&vars).try_run_threads_interposed(|| condvar_wait(false)));
    assert_eq!(
        (again.seed, again.oracle, again.schedule_hash),
        (f.seed, "deadlock", f.schedule_hash)
    );
}

#[test]
fn fixed_condvar_wait_passes() {
    // Reads the environment: `NETPOLL_SEEDS=0..10000` sweeps further.
    Check::new()
        .seeds(0..200)
        .run_threads_interposed(|| condvar_wait(true));
}

/// tokio's `Notify::notify_waiters` wakes only the tasks already waiting; a task spawned on
/// another worker that has not reached `notified()` yet misses it and waits for ever, with the
/// runtime asleep: a deadlock, found by seed. The twin uses `notify_one`, which stores a permit.
async fn notify(fixed: bool) -> io::Result<()> {
    let n = Arc::new(tokio::sync::Notify::new());
    let waiter = tokio::spawn({
        let n = n.clone();
        async move { n.notified().await }
    });
    tokio::task::yield_now().await;
    if fixed {
        n.notify_one();
    } else {
        n.notify_waiters();
    }
    waiter.await?;
    Ok(())
}

#[test]
fn a_notification_lost_between_tokio_workers_is_found_and_replayed() {
    let f = failure(
        check(&[])
            .seeds(0..200)
            .try_run_tokio_threads(2, || notify(false)),
    );
    eprintln!("{f}");
    assert_eq!(f.oracle, "deadlock", "{f}");
    let env = replay_env(&f.replay);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let again = failure(check(&vars).try_run_tokio_threads(2, || notify(false)));
    assert_eq!(
        (again.seed, again.oracle, again.schedule_hash),
        (f.seed, "deadlock", f.schedule_hash)
    );
}

/// The failing seed's trace file has one track per thread of the report, named as it names
/// them, with each kernel call on the track of the thread that made it: the runtime's
/// `epoll_create1` on the check's thread (`t1 main`, which builds it; `t0` runs it), the waits
/// in `epoll_wait` on the workers.
#[test]
fn a_failing_tokio_threads_check_traces_each_thread_on_its_own_track() {
    let f = failure(
        check(&[])
            .seeds(0..200)
            .try_run_tokio_threads(2, || notify(false)),
    );
    let (shown, json) = shown_and_trace(&f);
    let calls = chrome::calls_by_thread(&json, &shown);
    let has = |t: &str, op: &str| calls.get(t).is_some_and(|c| c.iter().any(|(o, _)| o == op));
    assert!(
        has("t1 main", "epoll_create1") && !calls.contains_key("t0 main"),
        "{calls:?}\n{shown}"
    );
    let waits: Vec<&String> = calls.keys().filter(|t| has(t, "epoll_wait")).collect();
    assert!(
        !waits.is_empty() && waits.iter().all(|t| t.ends_with(" tokio-rt-worker")),
        "{calls:?}\n{shown}"
    );
}

#[test]
fn fixed_notify_passes() {
    Check::new()
        .seeds(0..100)
        .run_tokio_threads(2, || notify(true));
}

/// How many of 200 seeds find each bug (a figure for the docs, not a test):
/// `cargo test -p netpoll-interpose --test check_threads detection_rates -- --ignored --nocapture`.
#[test]
#[ignore]
fn detection_rates() {
    let rate = |one: &dyn Fn(u64) -> bool| (0..200).filter(|&s| one(s)).count();
    let condvar = rate(&|s| {
        check(&[])
            .seeds(s..s + 1)
            .shrink_runs(0)
            .try_run_threads_interposed(|| condvar_wait(false))
            .is_err()
    });
    let notify = rate(&|s| {
        check(&[])
            .seeds(s..s + 1)
            .shrink_runs(0)
            .try_run_tokio_threads(2, || notify(false))
            .is_err()
    });
    println!("condvar_wait: {condvar} of 200 seeds; notify_waiters: {notify} of 200 seeds");
}

#[netpoll_scenarios::test(interposed, threads, seeds = 0..5)]
fn std_threads_under_the_attribute() -> io::Result<()> {
    condvar_wait(true)
}

#[netpoll_scenarios::test(interposed, threads, seeds = 0..5, schedule = "pct:2:30")]
fn std_threads_under_the_attribute_returning_nothing() {
    condvar_wait(true).unwrap();
}

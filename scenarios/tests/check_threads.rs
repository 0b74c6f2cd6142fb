//! The one-call check in its threaded mode (`Check::run_threads`): two-thread raw epoll
//! programs with a race each, found by seed and replayed by their report's line, their fixed
//! twins passing, one schedule per seed, and bad input named.
//!
//! The longer sweeps of the fixed twins (`cargo test` runs 300 seeds each):
//!
//! ```text
//! NETPOLL_SEEDS=0..10000 cargo test --release -p netpoll-scenarios --test check_threads -- fixed
//! ```

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use netpoll::sys::errno::{EAGAIN, EINTR};
use netpoll::sys::{errno_of, EFD_NONBLOCK, EPOLL_CTL_ADD, EPOLL_CTL_MOD};
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_scenarios::check::{self, Check, CheckError, Failure, Faults};
use netpoll_threads::{spawn, Policy, ThreadedSim};

#[path = "support/check_env.rs"]
mod check_env;
#[path = "support/chrome.rs"]
mod chrome;
use check_env::{check, failure, replay_env, shown_and_trace};

// ---------------------------------------------------------------------------------------------
// Program 1: a poller thread and a stopper, raw epoll. The poller serves one connection (an
// echo) and re-arms it (ONESHOT) at the top of each turn; the main thread sends a message,
// reads the echo, then stops the poller: it sets `stop` and writes the poller's eventfd.
// THE BUG (`fixed = false`): the stopper writes the eventfd only if the poller says it is
// `sleeping`; the poller checks `stop`, re-arms (a call: another thread may run), and only then
// says it sleeps. A stop that lands in that window is never seen: the poller sleeps in
// `epoll_wait(-1)` for ever and the main thread waits in `join`.

const CONN: u64 = 1;
const WAKE: u64 = 2;

fn stop_race(k: ThreadedSim, fixed: bool) -> io::Result<()> {
    let ep = k.epoll_create1(0)?;
    let wake = k.eventfd(0, EFD_NONBLOCK)?;
    let [a, b] = k.socketpair(0)?; // `b` blocking: the main thread waits for its echo
    k.set_nonblocking(a, true)?;
    k.epoll_ctl(
        ep,
        EPOLL_CTL_ADD,
        wake,
        Some(EpollEvent::new(Events::IN, WAKE)),
    )?;
    let oneshot = Events::IN | Events::ONESHOT;
    k.epoll_ctl(ep, EPOLL_CTL_ADD, a, Some(EpollEvent::new(oneshot, CONN)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let sleeping = Arc::new(AtomicBool::new(false));
    let poller = spawn("poller", {
        let (k, stop, sleeping) = (k.clone(), stop.clone(), sleeping.clone());
        move || -> io::Result<()> {
            let mut evs = [EpollEvent::EMPTY; 4];
            loop {
                if stop.load(SeqCst) {
                    return Ok(());
                }
                k.epoll_ctl(ep, EPOLL_CTL_MOD, a, Some(EpollEvent::new(oneshot, CONN)))?;
                sleeping.store(true, SeqCst);
                let n = k.epoll_wait(ep, &mut evs, -1)?;
                sleeping.store(false, SeqCst);
                for ev in &evs[..n] {
                    if ev.data == CONN {
                        echo_until_eagain(&k, a)?;
                    } else {
                        let _ = k.read(wake, &mut [0u8; 8]);
                    }
                }
            }
        }
    });
    write_all(&k, b, b"ping")?;
    assert_eq!(read_exact(&k, b, 4)?, b"ping");
    stop.store(true, SeqCst);
    if fixed || sleeping.load(SeqCst) {
        k.write(wake, &1u64.to_ne_bytes())?;
    }
    poller.join()?;
    for fd in [a, b, wake, ep] {
        k.close(fd)?;
    }
    Ok(())
}

/// Echoes what `fd` holds until `EAGAIN`.
fn echo_until_eagain(k: &ThreadedSim, fd: Fd) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        match k.read(fd, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => write_all(k, fd, &buf[..n])?,
            Err(e) if errno_of(&e) == Some(EAGAIN) => return Ok(()),
            Err(e) if errno_of(&e) == Some(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `buf`, through short writes and `EINTR` (faults the check injects).
fn write_all(k: &ThreadedSim, fd: Fd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match k.write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if errno_of(&e) == Some(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `n` bytes from the blocking `fd`, through short reads and `EINTR`.
fn read_exact(k: &ThreadedSim, fd: Fd, n: usize) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        let mut buf = [0u8; 8];
        match k.read(fd, &mut buf[..(n - got.len()).min(8)]) {
            Ok(0) => return Err(io::Error::other("end of file before the echo")),
            Ok(m) => got.extend_from_slice(&buf[..m]),
            Err(e) if errno_of(&e) == Some(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

// ---------------------------------------------------------------------------------------------
// Program 2: an edge-triggered echo on a poller thread, fed by the main thread in two writes.
// THE BUG (`fixed = false`): the poller reads once per edge (4 bytes). When both writes land
// before it collects the edge, they make one event, and the second half stays unread: the
// poller sleeps in `epoll_wait(-1)` on a ready registration, the main thread waits for the rest
// of its echo. The kernel's lost-wakeup scan names the registration.

fn et_read_once(k: ThreadedSim, fixed: bool) -> io::Result<()> {
    let ep = k.epoll_create1(0)?;
    let wake = k.eventfd(0, EFD_NONBLOCK)?;
    let [a, b] = k.socketpair(0)?;
    k.set_nonblocking(a, true)?;
    k.epoll_ctl(
        ep,
        EPOLL_CTL_ADD,
        wake,
        Some(EpollEvent::new(Events::IN, WAKE)),
    )?;
    k.epoll_ctl(
        ep,
        EPOLL_CTL_ADD,
        a,
        Some(EpollEvent::new(Events::IN | Events::ET, CONN)),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = spawn("poller", {
        let (k, stop) = (k.clone(), stop.clone());
        move || -> io::Result<()> {
            let mut evs = [EpollEvent::EMPTY; 4];
            loop {
                let n = k.epoll_wait(ep, &mut evs, -1)?;
                for ev in &evs[..n] {
                    if ev.data == WAKE {
                        let _ = k.read(wake, &mut [0u8; 8]);
                        if stop.load(SeqCst) {
                            return Ok(());
                        }
                    } else if fixed {
                        echo_until_eagain(&k, a)?;
                    } else {
                        let mut buf = [0u8; 4];
                        match k.read(a, &mut buf) {
                            Ok(n) => write_all(&k, a, &buf[..n])?,
                            Err(e) if errno_of(&e) == Some(EAGAIN) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    });
    write_all(&k, b, b"abcd")?;
    write_all(&k, b, b"efgh")?;
    assert_eq!(read_exact(&k, b, 8)?, b"abcdefgh");
    stop.store(true, SeqCst);
    k.write(wake, &1u64.to_ne_bytes())?;
    poller.join()?;
    for fd in [a, b, wake, ep] {
        k.close(fd)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Runs the check the way its replay line does: the line's variables, nothing else.
fn replay(line: &str, body: fn(ThreadedSim, bool) -> io::Result<()>) -> Failure {
    let env = replay_env(line);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    failure(check(&vars).try_run_threads(move |k| body(k, false)))
}

#[test]
fn a_stop_lost_between_threads_is_found_and_replayed() {
    let f = failure(
        check(&[])
            .seeds(0..500)
            .try_run_threads(|k| stop_race(k, false)),
    );
    eprintln!("{f}");
    assert_eq!(f.oracle, "deadlock", "{f}");
    // Each thread's blocking call.
    assert!(
        f.diagnosis.contains("`poller`: blocked in epoll_wait"),
        "{f}"
    );
    assert!(f.diagnosis.contains("`main`: blocked joining t1"), "{f}");
    assert_eq!(f.schedule, Some(Policy::Random));
    let h = f
        .schedule_hash
        .expect("a threaded failure has a schedule hash");
    assert!(
        f.replay.starts_with(&format!(
            "NETPOLL_SEED={} NETPOLL_FAULTS=none NETPOLL_SCHEDULE=random cargo test",
            f.seed
        )),
        "{}",
        f.replay
    );
    assert!(
        f.replay.contains("--test check_threads")
            && f.replay
                .ends_with("-- --exact a_stop_lost_between_threads_is_found_and_replayed"),
        "{}",
        f.replay
    );
    let shown = f.to_string();
    assert!(
        shown.contains("threads: simulated, schedule random"),
        "{shown}"
    );
    assert!(shown.contains(&format!("replay: {}", f.replay)), "{shown}");
    let trace = f.trace.as_ref().expect("a trace file");
    assert!(trace.is_file(), "{}", trace.display());
    // The replay line reproduces that very failure: seed, oracle, schedule.
    let again = replay(&f.replay, stop_race);
    assert_eq!(
        (again.seed, again.oracle, again.schedule_hash),
        (f.seed, "deadlock", Some(h))
    );
    assert_eq!(again.diagnosis, f.diagnosis);
}

/// Two threads, each writing on a socket of its own, then both stuck: `writer` reads a socket
/// nobody writes, `main` joins it. The fds go to `fds` first: `[writer's, main's, the one
/// the writer reads]`.
fn two_writers_stuck(k: &ThreadedSim, fds: &std::sync::Mutex<Option<[Fd; 3]>>) -> io::Result<()> {
    let [a, _a2] = k.socketpair(0)?;
    let [b, _b2] = k.socketpair(0)?;
    let [c, _c2] = k.socketpair(0)?; // blocking, never written
    *fds.lock().unwrap() = Some([a, b, c]);
    let writer = spawn("writer", {
        let k = k.clone();
        move || -> io::Result<()> {
            k.write(a, b"w")?;
            k.read(c, &mut [0; 1])?;
            Ok(())
        }
    });
    k.write(b, b"m")?;
    writer.join()
}

/// A failing threaded check's trace file has one track per thread, named as the report names
/// them, and each call on the track of the thread that made it.
#[test]
fn a_failing_threaded_check_traces_each_thread_on_its_own_track() {
    let fds = Arc::new(std::sync::Mutex::new(None));
    let seen = fds.clone();
    let f = failure(
        check(&[])
            .seeds(3..4)
            .try_run_threads(move |k| two_writers_stuck(&k, &seen)),
    );
    assert_eq!(f.oracle, "deadlock", "{f}");
    let [w, m, c] = fds
        .lock()
        .unwrap()
        .expect("the fds, written before the deadlock");
    let (shown, json) = shown_and_trace(&f);
    let calls = chrome::calls_by_thread(&json, &shown);
    assert_eq!(
        calls.keys().collect::<Vec<_>>(),
        ["t0 main", "t1 writer"],
        "{calls:?}"
    );
    let on = |t: &str, op: &str, fd: Fd| calls[t].contains(&(op.to_owned(), i64::from(fd)));
    assert!(
        on("t1 writer", "write", w) && !on("t0 main", "write", w),
        "{calls:?}"
    );
    assert!(
        on("t0 main", "write", m) && !on("t1 writer", "write", m),
        "{calls:?}"
    );
    assert!(
        calls["t0 main"]
            .iter()
            .filter(|(op, _)| op == "socketpair")
            .count()
            == 3
            && calls["t1 writer"].iter().all(|(op, _)| op != "socketpair"),
        "{calls:?}"
    );
    // The writer's blocking read never returns: its track shows it blocked in it.
    let blocked: Vec<(u64, String)> = chrome::events(&json)
        .iter()
        .filter(|e| e["cat"] == "blocked")
        .map(|e| (e["tid"].as_u64().unwrap(), e["name"].to_string()))
        .collect();
    assert!(
        blocked
            .iter()
            .any(|(tid, n)| *tid == 2 && n.contains(&format!("blocked in read(fd {c}"))),
        "{blocked:?}"
    );
}

/// A one-thread check's trace file keeps the per-descriptor layout: no thread tracks.
#[test]
fn a_one_thread_checks_trace_has_no_thread_tracks() {
    let f = failure(check(&[]).seeds(0..1).try_run(|sim| {
        let [a, _b] = sim.socketpair(0)?;
        sim.write(a, b"x")?;
        Err(io::Error::other("fails on purpose"))
    }));
    let json = std::fs::read_to_string(f.trace.as_ref().expect("a trace file")).unwrap();
    let ev = chrome::events(&json);
    let names: Vec<String> = chrome::track_names(&ev).into_values().collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| !n.starts_with("t0")),
        "{names:?}"
    );
    assert!(ev.iter().all(|e| e["cat"] != "call"), "{json}");
}

#[test]
fn a_lost_edge_between_threads_is_a_lost_wakeup() {
    let f = failure(
        check(&[])
            .seeds(0..500)
            .try_run_threads(|k| et_read_once(k, false)),
    );
    eprintln!("{f}");
    assert_eq!(f.oracle, "lost-wakeup", "{f}");
    assert!(
        matches!(
            f.violation,
            Some(netpoll_sim::Violation::LostWakeup { data: CONN, .. })
        ),
        "{f}"
    );
    // The threads' states come with the kernel's diagnosis.
    assert!(
        f.diagnosis.contains("`poller`: blocked in epoll_wait"),
        "{f}"
    );
    assert!(f.diagnosis.contains("`main`: blocked in read"), "{f}");
    let again = replay(&f.replay, et_read_once);
    assert_eq!(
        (again.seed, again.oracle, again.schedule_hash),
        (f.seed, "lost-wakeup", f.schedule_hash)
    );
}

#[test]
fn pct_finds_the_lost_stop_too() {
    let pct = Policy::Pct {
        depth: 2,
        steps: 40,
    };
    let f = failure(
        check(&[])
            .seeds(0..500)
            .schedule(pct)
            .try_run_threads(|k| stop_race(k, false)),
    );
    assert_eq!((f.oracle, f.schedule), ("deadlock", Some(pct)), "{f}");
    assert!(
        f.replay.contains("NETPOLL_SCHEDULE=pct:2:40"),
        "{}",
        f.replay
    );
    let again = replay(&f.replay, stop_race);
    assert_eq!((again.seed, again.schedule_hash), (f.seed, f.schedule_hash));
}

#[test]
fn fixed_stop_passes() {
    Check::new()
        .seeds(0..300)
        .run_threads(|k| stop_race(k, true));
}

#[test]
fn fixed_et_echo_passes_under_swarm() {
    Check::new()
        .seeds(0..300)
        .faults(Faults::Swarm)
        .run_threads(|k| et_read_once(k, true));
}

#[test]
fn one_seed_one_schedule_and_seeds_differ() {
    let run = || {
        check(&[])
            .seeds(0..40)
            .check_determinism(true)
            .try_run_threads(|k| stop_race(k, true))
            .unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.schedules.len(), 40);
    assert_eq!(a.schedules, b.schedules);
    let distinct: std::collections::BTreeSet<u64> = a.schedules.iter().map(|s| s.1).collect();
    assert!(distinct.len() > 5, "{} distinct schedules", distinct.len());
}

#[test]
fn a_panicking_thread_fails_the_seed_with_its_name() {
    let f = failure(check(&[]).seeds(0..3).try_run_threads(|_k| {
        spawn("worker", || panic!("the worker's own assertion")).join();
        Ok(())
    }));
    assert_eq!(f.oracle, "panic", "{f}");
    assert!(
        f.diagnosis
            .contains("`worker` panicked: the worker's own assertion"),
        "{f}"
    );
}

#[test]
fn a_leak_on_threads_is_the_kernels_leak() {
    let f = failure(check(&[]).seeds(0..3).try_run_threads(|k| {
        let t = spawn("opener", {
            let k = k.clone();
            move || k.pipe2(0)
        });
        let [r, _w] = t.join()?;
        k.close(r)
    }));
    assert_eq!(f.oracle, "leak", "{f}");
}

#[test]
fn multi_runtime_tasks_run_in_a_threaded_check() {
    use netpoll::rt::{self, UnixStream};
    let p = check(&[])
        .seeds(0..30)
        .faults(Faults::Chaos)
        .try_run_threads(|k| {
            let rt = check::multi_runtime(&k, 2)?;
            rt.block_on(async {
                let (a, b) = UnixStream::<ThreadedSim>::pair()?;
                let reader = rt::spawn(async move {
                    let (mut got, mut buf) = (Vec::new(), [0u8; 16]);
                    loop {
                        match b.read(&mut buf).await? {
                            0 => return io::Result::Ok(got),
                            n => got.extend_from_slice(&buf[..n]),
                        }
                    }
                });
                a.write_all(b"hello, threads").await?;
                drop(a);
                assert_eq!(reader.await??, b"hello, threads");
                io::Result::Ok(())
            })?
        })
        .unwrap();
    assert_eq!(p.schedules.len(), 60, "two phases per seed under chaos");
}

#[test]
fn bad_schedules_are_named() {
    for (vars, schedule, want) in [
        (
            &[("NETPOLL_SCHEDULE", "fair")][..],
            None,
            "NETPOLL_SCHEDULE=\"fair\"",
        ),
        (
            &[("NETPOLL_SCHEDULE", "pct:0:10")][..],
            None,
            "pct:DEPTH:STEPS",
        ),
        (&[][..], Some("pct:3"), "schedule = \"pct:3\""),
    ] {
        let mut c = check(vars).seeds(0..2);
        if let Some(s) = schedule {
            c = c.schedule_str(s);
        }
        match c.try_run_threads(|_k| Ok(())) {
            Err(CheckError::Config(e)) => assert!(e.contains(want), "{e}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}

#[netpoll_scenarios::test(threads, seeds = 0..100, schedule = "pct:3:60")]
fn fixed_stop_under_the_attribute(k: ThreadedSim) -> io::Result<()> {
    stop_race(k, true)
}

/// How many of 1,000 seeds find each bug, per schedule policy (a figure for the docs, not a
/// test): `cargo test --release -p netpoll-scenarios --test check_threads detection_rates --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn detection_rates() {
    for policy in [
        Policy::Random,
        Policy::Pct {
            depth: 2,
            steps: 40,
        },
        Policy::Pct {
            depth: 3,
            steps: 40,
        },
    ] {
        for (name, body) in [
            (
                "stop_race",
                stop_race as fn(ThreadedSim, bool) -> io::Result<()>,
            ),
            ("et_read_once", et_read_once),
        ] {
            let found = (0..1000)
                .filter(|&s| {
                    check(&[])
                        .seeds(s..s + 1)
                        .schedule(policy)
                        .shrink_runs(0)
                        .try_run_threads(move |k| body(k, false))
                        .is_err()
                })
                .count();
            println!("{name} under {policy}: {found} of 1000 seeds");
        }
    }
}

#[netpoll_scenarios::test(threads, seeds = 0..20)]
fn fixed_et_echo_under_the_attribute_returning_nothing(k: ThreadedSim) {
    et_read_once(k, true).unwrap();
}

//! The trace of an interposed tokio multi-thread run, one track per simulated thread: each
//! thread named as it named itself (`pthread_setname_np`, as std does for tokio's workers), and
//! each kernel call on the track of the thread that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netpoll_interpose::run_threads;
use netpoll_scenarios::trace_out::{self, Mark, Schedule};
use netpoll_sim::trace::Record;
use netpoll_sim::Sim;
use netpoll_threads::Runner;
use serde_json::Value;

/// The calls a trace sink saw, each with its thread's mark.
type Calls = Vec<(Record, Option<Mark>)>;

/// A tokio echo of `conns` clients on two workers; returns the bytes echoed.
fn tokio_echo(conns: usize) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).await.unwrap();
                    s.write_all(&buf).await.unwrap();
                    s.shutdown().await.unwrap();
                });
            }
        });
        let mut n = 0;
        for i in 0..conns {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(&[i as u8; 50]).await.unwrap();
            c.shutdown().await.unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.unwrap();
            n += back.len();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        n
    });
    drop(rt);
    n
}

/// One traced run: the Chrome trace (compact JSON) and the calls' marks.
fn traced(seed: u64) -> (String, Vec<Option<Mark>>, Schedule) {
    let sim = Sim::new(seed);
    let seen: Arc<Mutex<Calls>> = Arc::default();
    let sink = seen.clone();
    sim.set_trace_sink(Some(Box::new(move |r: &Record| {
        sink.lock().unwrap().push((*r, Mark::here()));
    })));
    let out =
        run_threads(Runner::new(seed), sim, || tokio_echo(3)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.value, 150);
    out.kernel.with_sim(|s| s.set_trace_sink(None));
    let schedule = Schedule::from(&out.report);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let marks = seen.iter().map(|&(_, m)| m).collect();
    let mut json = Vec::new();
    trace_out::write_chrome_threads(seen, &[], &schedule, "tokio echo", &mut json).unwrap();
    (String::from_utf8(json).unwrap(), marks, schedule)
}

#[test]
fn an_interposed_tokio_run_traces_one_track_per_named_thread() {
    let (json, marks, schedule) = traced(5);
    let v: Value = serde_json::from_str(&json).unwrap();
    let ev = v["traceEvents"].as_array().unwrap();
    let tracks: BTreeMap<u64, String> = ev
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| {
            let name = e["args"]["name"].as_str().unwrap().to_owned();
            (e["tid"].as_u64().unwrap(), name)
        })
        .collect();
    // One track per simulated thread, named as the scheduler knows it: tokio's workers named
    // themselves through pthread_setname_np (`tokio-rt-worker` here).
    let want: BTreeMap<u64, String> = (0..schedule.names.len() as u32)
        .map(|t| (u64::from(t) + 1, schedule.track_name(t)))
        .collect();
    assert_eq!(tracks, want);
    let workers = tracks
        .values()
        .filter(|n| n.ends_with(" tokio-rt-worker"))
        .count();
    assert!(workers >= 2, "{tracks:?}");
    // Every call of the run was made by a simulated thread, and several threads made calls.
    assert!(marks.iter().all(Option::is_some));
    let callers: BTreeSet<u32> = marks.iter().flatten().map(|m| m.tid).collect();
    assert!(callers.len() >= 2, "calls by {callers:?}");
    // The calls land on their makers' tracks.
    let on: Vec<u64> = ev
        .iter()
        .filter(|e| e["cat"] == "call")
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = marks
        .iter()
        .flatten()
        .map(|m| u64::from(m.tid) + 1)
        .collect();
    assert_eq!(on, want);
    // One seed, one trace.
    assert!(traced(5).0 == json, "seed 5 gave two traces");
}

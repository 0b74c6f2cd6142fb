//! The trace of a run on simulated threads (issue 9: "the schedule appears in the trace, one
//! track per thread"): `netpoll-sim trace` of `rt-echo --workers N` and of the `zoo-mt-*`
//! races writes one track per simulated thread, each call on the track of the thread that made
//! it, in the schedule's order; one seed gives one trace.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{self, Request};
use netpoll_scenarios::trace_file::{self, Form};
use netpoll_scenarios::trace_out::Mark;
use netpoll_sim::trace::Record;
use serde_json::Value;

#[path = "support/chrome.rs"]
mod chrome;
use chrome::{events, slices, track_names};

/// The calls a trace sink saw, each with its thread's mark.
type Calls = Vec<(Record, Option<Mark>)>;

fn request(name: &str, params: &[(&str, u64)], seed: u64) -> Request {
    let s = Registry::builtin().find(name).unwrap();
    let mut p = s.defaults();
    for &(k, v) in params {
        p.set(k, v).unwrap();
    }
    Request::sim(s, p, seed)
}

fn rt_echo(workers: u64, seed: u64) -> Request {
    request(
        "rt-echo",
        &[
            ("conns", 3),
            ("msgs", 2),
            ("size", 16),
            ("workers", workers),
        ],
        seed,
    )
}

/// `netpoll-sim trace`'s file for `req`, in `form`, and the run's report.
fn trace(req: &Request, form: Form) -> (String, netpoll_scenarios::workload::Report) {
    let path = std::env::temp_dir().join(format!(
        "netpoll-thread-tracks-{}-{}-{}-{form:?}",
        std::process::id(),
        req.scenario.name(),
        req.seed
    ));
    let (_, report) = trace_file::write(req, &path, form).unwrap();
    let got = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    (got, report)
}

#[test]
fn a_threaded_rt_echo_trace_has_one_named_track_per_thread() {
    let req = rt_echo(4, 1);
    let (json, report) = trace(&req, Form::Chrome);
    assert!(report.failure.is_none(), "{}", req.replay_line());
    let ev = events(&json);
    let names: Vec<String> = track_names(&ev).into_values().collect();
    assert_eq!(
        names,
        [
            "t0 main",
            "t1 netpoll-worker-0",
            "t2 netpoll-worker-1",
            "t3 netpoll-worker-2",
            "t4 netpoll-worker-3"
        ]
    );
    // Every call is on a thread's track, inside one of that thread's running spans, and the
    // spans of different threads never overlap: one thread runs at a time.
    let running = slices(&ev, "running");
    let mut by_tick = BTreeMap::new();
    for &(tid, from, to) in &running {
        assert!(to > from, "an empty span on tid {tid} at {from}");
        for t in from..to {
            assert_eq!(by_tick.insert(t, tid), None, "two threads run at tick {t}");
        }
    }
    let calls: Vec<&Value> = ev.iter().filter(|e| e["cat"] == "call").collect();
    assert_eq!(calls.len() as u64, report.fingerprint.unwrap().0);
    let mut on = BTreeMap::new();
    for c in &calls {
        let (tid, ts) = (c["tid"].as_u64().unwrap(), c["ts"].as_u64().unwrap());
        assert_eq!(
            by_tick.get(&ts),
            Some(&tid),
            "call {c} outside its thread's span"
        );
        *on.entry(tid).or_insert(0) += 1;
    }
    // The workers, not only main, make calls (the netpoller's poll role moves between them).
    assert!(on.len() >= 3, "calls by thread: {on:?}");
    // Switch points and blocking calls are there too, each a thread's.
    assert!(ev
        .iter()
        .any(|e| e["cat"] == "switch" && e["name"] == "spawn(1)"));
    assert!(!slices(&ev, "blocked in epoll_wait(fd 3, -1)").is_empty());
}

/// The mark the trace sink takes for each call names the thread the scheduler itself shows
/// making that call: the schedule entry just before the call is the thread's switch point for
/// it.
#[test]
fn every_call_is_marked_with_the_thread_the_schedule_shows_making_it() {
    for req in [
        rt_echo(4, 3),
        rt_echo(2, 8),
        request("zoo-mt-close-no-wake", &[("fixed", 1)], 2),
        request("zoo-mt-spin-no-recheck", &[("fixed", 1)], 2),
    ] {
        let seen: Arc<Mutex<Calls>> = Arc::default();
        let sink = seen.clone();
        let report = run::trace_to(
            &req,
            Box::new(move |r: &Record| sink.lock().unwrap().push((*r, Mark::here()))),
        );
        assert!(report.failure.is_none(), "{}", req.replay_line());
        let schedule = report.schedule.expect("a threaded run's schedule");
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty());
        let mut after = 0;
        for (r, mark) in seen.iter() {
            let m = mark.unwrap_or_else(|| panic!("{r} made by no simulated thread"));
            assert!(m.after >= after, "marks go backwards at {r}");
            after = m.after;
            let entry = schedule.entries[m.after as usize - 1];
            assert_eq!(entry.tid.0, m.tid, "{r}: {entry:?}");
            assert!(!entry.blocked, "{r} after a blocking entry: {entry:?}");
            let same_name = [
                "epoll_create1",
                "epoll_ctl",
                "epoll_wait",
                "eventfd",
                "read",
                "write",
                "accept4",
                "connect",
                "close",
                "shutdown",
                "pipe2",
                "socketpair",
            ];
            if same_name.contains(&r.op.name()) {
                assert_eq!(entry.call.op, r.op.name(), "{r}: {entry:?}");
            }
        }
    }
}

#[test]
fn the_text_trace_names_the_thread_on_every_line() {
    let req = rt_echo(4, 1);
    let (text, report) = trace(&req, Form::Text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, report.fingerprint.unwrap().0);
    let names = [
        "t0 main",
        "t1 netpoll-worker-0",
        "t2 netpoll-worker-1",
        "t3 netpoll-worker-2",
        "t4 netpoll-worker-3",
    ];
    for l in &lines {
        let thread = l[10..30].trim_end();
        assert!(names.contains(&thread), "{l}");
    }
    // The Chrome trace puts the same calls on the same threads, in the same order.
    let (json, _) = trace(&req, Form::Chrome);
    let ev = events(&json);
    let tracks = track_names(&ev);
    let chrome: Vec<&str> = ev
        .iter()
        .filter(|e| e["cat"] == "call")
        .map(|e| tracks[&e["tid"].as_u64().unwrap()].as_str())
        .collect();
    let text: Vec<&str> = lines.iter().map(|l| l[10..30].trim_end()).collect();
    assert_eq!(chrome, text);
}

#[test]
fn one_seed_gives_one_threaded_trace_and_another_seed_another() {
    for form in [Form::Chrome, Form::Text] {
        let (a, _) = trace(&rt_echo(4, 5), form);
        let (b, _) = trace(&rt_echo(4, 5), form);
        assert!(a == b, "seed 5 gave two {form:?} traces");
        let (c, _) = trace(&rt_echo(4, 6), form);
        assert!(a != c, "seeds 5 and 6 gave one {form:?} trace");
    }
}

/// A failing seed of each threaded zoo race, found as `sweep` finds it: its trace shows every
/// thread of the failure report on its own track, and the threads the deadlock left blocked
/// as blocked up to the end of the trace.
#[test]
fn a_failing_zoo_race_traces_its_threads_and_the_deadlock() {
    for name in ["zoo-mt-close-no-wake", "zoo-mt-spin-no-recheck"] {
        let (req, report) = (0..200)
            .map(|seed| request(name, &[], seed))
            .map(|req| {
                let report = run::execute(&req);
                (req, report)
            })
            .find(|(_, r)| r.failure.is_some())
            .unwrap_or_else(|| panic!("{name}: no failing seed in 0..200"));
        let failure = report.failure.unwrap().to_string();
        let (json, traced) = trace(&req, Form::Chrome);
        assert_eq!(
            traced.failure.map(|f| f.to_string()),
            Some(failure.clone()),
            "the trace replays the failure"
        );
        let ev = events(&json);
        let tracks = track_names(&ev);
        let schedule = traced.schedule.unwrap();
        for (i, n) in schedule.names.iter().enumerate() {
            let want = format!("t{i} {n}");
            assert_eq!(tracks.get(&(i as u64 + 1)), Some(&want), "{name}");
            assert!(failure.contains(&format!("t{i} `{n}`")), "{failure}");
        }
        // The threads the report shows blocked or parked at the end have a blocked slice
        // that reaches the last tick.
        let end = ev
            .iter()
            .filter_map(|e| {
                let ts = e["ts"].as_u64()?;
                Some(ts + e["dur"].as_u64().unwrap_or(1))
            })
            .max()
            .unwrap();
        let stuck: Vec<u64> = ev
            .iter()
            .filter(|e| {
                e["cat"] == "blocked"
                    && e["ts"].as_u64().unwrap() + e["dur"].as_u64().unwrap() == end
            })
            .map(|e| e["tid"].as_u64().unwrap() - 1)
            .collect();
        let blocked_in_report = failure
            .lines()
            .filter(|l| l.contains("`: blocked") || l.contains("`: parked"))
            .count();
        assert_eq!(stuck.len(), blocked_in_report, "{name}: {failure}");
    }
}

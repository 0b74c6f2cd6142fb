//! Reading a Chrome trace of a run on simulated threads, for the tests that check one: its
//! events, its track names, its slices, and which track each call is on.
#![allow(dead_code)] // each test file uses its share

use std::collections::BTreeMap;

use serde_json::Value;

/// The trace's events.
pub fn events(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).unwrap();
    v["traceEvents"].as_array().unwrap().clone()
}

/// The Chrome trace's track names by `tid`.
pub fn track_names(events: &[Value]) -> BTreeMap<u64, String> {
    events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `(tid, from, to)` of every slice named `name`.
pub fn slices(events: &[Value], name: &str) -> Vec<(u64, u64, u64)> {
    events
        .iter()
        .filter(|e| e["ph"] == "X" && e["name"] == name)
        .map(|e| {
            let ts = e["ts"].as_u64().unwrap();
            (
                e["tid"].as_u64().unwrap(),
                ts,
                ts + e["dur"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The threads a threaded check's failure report lists (`  t1 \`poller\`: blocked in ...`),
/// as trace tracks name them: `t1 poller`.
pub fn reported_threads(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (tid, rest) = l.split_once(" `")?;
            let (name, _) = rest.split_once("`: ")?;
            let n = tid.strip_prefix('t')?;
            n.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| format!("{tid} {name}"))
        })
        .collect()
}

/// Checks a threaded trace against the failure `report` it came with: one track per thread the
/// report lists, named as it names them, and nothing else; each call on the track of a thread,
/// inside one of that thread's `running` spans (one thread runs at a time). Returns each
/// thread's calls, `(name, fd)` in order, by track name.
pub fn calls_by_thread(json: &str, report: &str) -> BTreeMap<String, Vec<(String, i64)>> {
    let ev = events(json);
    let tracks = track_names(&ev);
    let want = reported_threads(report);
    assert!(!want.is_empty(), "no threads in the report:\n{report}");
    let got: Vec<&String> = tracks.values().collect();
    assert_eq!(got, want.iter().collect::<Vec<_>>(), "{report}");
    let mut by_tick = BTreeMap::new();
    for (tid, from, to) in slices(&ev, "running") {
        for t in from..to {
            assert_eq!(by_tick.insert(t, tid), None, "two threads run at tick {t}");
        }
    }
    let mut calls: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for c in ev.iter().filter(|e| e["cat"] == "call") {
        let (tid, ts) = (c["tid"].as_u64().unwrap(), c["ts"].as_u64().unwrap());
        assert_eq!(
            by_tick.get(&ts),
            Some(&tid),
            "{c} outside its thread's span"
        );
        let name = c["name"].as_str().unwrap().to_owned();
        calls
            .entry(tracks[&tid].clone())
            .or_default()
            .push((name, c["args"]["fd"].as_i64().unwrap()));
    }
    calls
}

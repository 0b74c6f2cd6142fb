//! The `netpoll-sim` binary: exit codes, JSON fields, tokens.

use std::process::{Command, Output};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpoll-sim"))
        .args(args)
        .output()
        .expect("run netpoll-sim")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SMALL: &[&str] = &["--conns", "8", "--msgs", "3", "--size", "32"];

fn run_json(extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["run", "echo", "--seed", "5", "--json"];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    let o = bin(&args);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}\n{}", stdout(&o), stderr(&o)));
    (code(&o), v)
}

#[test]
fn list_names_every_scenario() {
    let o = bin(&["list"]);
    assert_eq!(code(&o), 0);
    for name in [
        "echo",
        "raw-epoll",
        "half-close",
        "reset",
        "accept-storm",
        "backpressure",
        "slow-clients",
        "timer-storm",
        "rt-echo",
        "rt-canary",
    ] {
        assert!(stdout(&o).contains(name), "{name} missing from list");
    }
}

#[test]
fn run_json_has_the_fields() {
    let (c, v) = run_json(&[]);
    assert_eq!(c, 0, "{v}");
    for f in [
        "scenario",
        "seed",
        "backend",
        "conns",
        "msgs",
        "bytes",
        "events",
        "virtual_ns",
        "wall_ns",
        "outcome",
        "replay",
    ] {
        assert!(v.get(f).is_some(), "field {f} missing: {v}");
    }
    assert_eq!(v["scenario"], "echo");
    assert_eq!(v["seed"], 5);
    assert_eq!(v["backend"], "sim");
    assert_eq!(v["conns"], 8);
    assert_eq!(v["msgs"], 3);
    assert_eq!(v["bytes"], 8 * 3 * 32);
    assert_eq!(v["outcome"], "pass");
    assert!(v["events"].as_u64().unwrap() > 0);
    assert!(v["virtual_ns"].as_u64().unwrap() > 0);
    let replay = v["replay"].as_str().unwrap();
    assert!(replay.starts_with("netpoll-sim replay np1-"), "{replay}");

    // The replay line reproduces the run exactly (same events, same virtual time).
    let token = replay.split_whitespace().nth(2).unwrap();
    let o = bin(&["replay", token, "--json"]);
    assert_eq!(code(&o), 0);
    let w: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (w["events"].clone(), w["virtual_ns"].clone()),
        (v["events"].clone(), v["virtual_ns"].clone())
    );
}

#[test]
fn run_summary_and_determinism_check() {
    let mut args = vec!["run", "reset", "--seed", "3", "--check-determinism"];
    args.extend_from_slice(SMALL);
    let o = bin(&args);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    for line in [
        "connections",
        "bytes",
        "events",
        "virtual time",
        "wall time",
        "outcome      pass",
        "seed         3",
        "replay       netpoll-sim replay np1-",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
}

#[test]
fn real_backend_runs_and_refuses_too_many() {
    let o = bin(&[
        "run",
        "echo",
        "--backend",
        "real",
        "--conns",
        "5",
        "--msgs",
        "2",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["backend"], "real");
    let o = bin(&["run", "echo", "--backend", "real", "--conns", "1000000"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("too many for --backend real"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_oracle_failure_exits_1_with_one_replay_line() {
    let o = bin(&["run", "canary", "--seed", "1"]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(out.contains("FAIL: lost-wakeup"), "{out}");
    let replays: Vec<&str> = out.lines().filter(|l| l.starts_with("replay")).collect();
    assert_eq!(replays.len(), 1, "{out}");
    let token = replays[0].split_whitespace().last().unwrap();
    let o = bin(&["replay", token]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("FAIL: lost-wakeup"));
}

/// `rt-echo` through the command line: run, sweep, and its canary's replay line replays.
#[test]
fn rt_echo_runs_sweeps_and_replays() {
    let o = bin(&[
        "run", "rt-echo", "--seed", "3", "--conns", "6", "--msgs", "2", "--faults", "chaos",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("outcome      pass"), "{}", stdout(&o));
    let o = bin(&[
        "sweep", "rt-echo", "--seeds", "1..=4", "--conns", "4", "--msgs", "2",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("4 passed, 0 failed"), "{}", stdout(&o));
    let o = bin(&[
        "run",
        "rt-canary",
        "--seed",
        "2",
        "--conns",
        "4",
        "--msgs",
        "3",
    ]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(
        out.contains("FAIL: lost-wakeup") && out.contains("parked on its read side"),
        "{out}"
    );
    let replays: Vec<&str> = out.lines().filter(|l| l.starts_with("replay")).collect();
    assert_eq!(replays.len(), 1, "{out}");
    let token = replays[0].split_whitespace().last().unwrap();
    let o = bin(&["replay", token]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("FAIL: lost-wakeup"));
    for bad in [
        &["run", "rt-echo", "--size", "65537"][..],
        &["run", "rt-canary", "--backend", "real"][..],
        &["run", "rt-echo", "--param", "deadline-ms=x"][..],
    ] {
        let o = bin(bad);
        assert_eq!(code(&o), 2, "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{bad:?}: {}", stderr(&o));
    }
}

#[test]
fn bad_usage_exits_2() {
    let cases: &[&[&str]] = &[
        &["run", "echo", "--conns", "0"],
        &["run", "echo", "--conns", "99999999999"],
        &["run", "echo", "--size", "0"],
        &[
            "run", "echo", "--conns", "1000000", "--msgs", "1000000", "--size", "1000000",
        ],
        &["run", "nope"],
        &["run", "echo", "--param", "bogus=1"],
        &["run", "echo", "--param", "window"],
        &["run", "echo", "--param", "window=-1"],
        &["run", "echo", "--backend", "quantum"],
        &["run", "echo", "--conns", "abc"],
        &[
            "run",
            "echo",
            "--backend",
            "real",
            "--check-determinism",
            "--conns",
            "2",
        ],
        &["frobnicate"],
        &["sweep", "echo", "--seeds", "5..5"],
        &["sweep", "echo", "--seeds", "x"],
        &["sweep", "echo", "--seeds", "1..3", "--shard", "0/2"],
        &["sweep", "echo", "--seeds", "1..3", "--shard", "3/2"],
        &["sweep", "echo", "--seeds", "1..3", "--jobs", "0"],
    ];
    for args in cases {
        let o = bin(args);
        assert_eq!(code(&o), 2, "{args:?}: {}{}", stdout(&o), stderr(&o));
        assert!(
            !stderr(&o).contains("panicked"),
            "{args:?} panicked: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).is_empty(), "{args:?}: no message");
    }
}

#[test]
fn bad_tokens_exit_2_with_a_clear_message() {
    let good = {
        let (_, v) = run_json(&[]);
        v["replay"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("hello".into(), "not a netpoll replay token"),
        ("".into(), "not a netpoll replay token"),
        (format!("np9{}", &good[3..]), "version 9 is not supported"),
        (flipped, "corrupt replay token"),
        (good[..good.len() - 6].to_string(), "corrupt replay token"),
        (format!("{good}00"), "corrupt replay token"),
        ("np1-zzzz".into(), "corrupt replay token"),
    ];
    for (t, want) in cases {
        for cmd in ["replay", "trace"] {
            let mut args = vec![cmd, t.as_str()];
            if cmd == "trace" {
                args.extend_from_slice(&["--out", "/dev/null"]);
            }
            let o = bin(&args);
            assert_eq!(code(&o), 2, "{cmd} {t:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(want), "{cmd} {t:?}: {}", stderr(&o));
            assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        }
    }
}

#[test]
fn sweep_shards_partition_the_seeds() {
    let mut seen = Vec::new();
    for shard in ["1/2", "2/2"] {
        let o = bin(&[
            "sweep", "echo", "--seeds", "10..14", "--shard", shard, "--conns", "4", "--msgs", "2",
        ]);
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        let out = stdout(&o);
        let runs: u64 = out
            .split(": ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        seen.push(runs);
        assert!(
            stderr(&o).contains("progress:"),
            "no progress lines: {}",
            stderr(&o)
        );
    }
    assert_eq!(seen, [2, 2]);
    let o = bin(&["sweep", "canary", "--seeds", "1..=3", "--jobs", "2"]);
    assert_eq!(code(&o), 1);
    let fails = stdout(&o)
        .lines()
        .filter(|l| l.starts_with("FAIL seed"))
        .count();
    assert_eq!(fails, 3, "{}", stdout(&o));
    assert!(stdout(&o).contains("netpoll-sim replay np1-"));
}

#[test]
fn trace_writes_chrome_json_with_tracks() {
    let (_, v) = run_json(&[]);
    let token = v["replay"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let path = std::env::temp_dir().join(format!("netpoll-trace-{}.json", std::process::id()));
    let o = bin(&["trace", &token, "--out", path.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    let events = t["traceEvents"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"poller"), "{names:?}");
    for c in 0..8 {
        assert!(
            names.contains(&format!("conn {c}").as_str()),
            "conn {c} missing: {names:?}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["name"] == "client write" && e["ph"] == "i"));
    assert!(events.iter().any(|e| e["name"] == "server read"));
    assert!(events
        .iter()
        .any(|e| e["name"] == "epoll_wait" && e["ph"] == "X"));
}

#[test]
fn run_without_a_seed_prints_the_seed_it_drew() {
    let o = bin(&["run", "echo", "--conns", "3", "--msgs", "1"]);
    assert_eq!(code(&o), 0);
    let err = stderr(&o);
    let seed: u64 = err
        .split("with seed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seed announced: {err}"));
    assert!(
        stdout(&o).contains(&format!("seed         {seed}")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn trace_text_form() {
    let (_, v) = run_json(&[]);
    let token = v["replay"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let path = std::env::temp_dir().join(format!("netpoll-trace-{}.txt", std::process::id()));
    let o = bin(&["trace", &token, "--out", path.to_str().unwrap(), "--text"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        text.contains("poller") && text.contains("conn 7 server") && text.contains("EAGAIN"),
        "{text}"
    );
}

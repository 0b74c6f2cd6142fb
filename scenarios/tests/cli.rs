//! The `netpoll-sim` binary: exit codes, JSON fields, tokens.

use std::io::Write;
use std::process::{Command, Output};

use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::token::Token;

/// The binary under test: this build's, or `NETPOLL_SIM_EXE` (to run these tests against an
/// installed or older `netpoll-sim`).
fn exe() -> String {
    std::env::var("NETPOLL_SIM_EXE").unwrap_or_else(|_| env!("CARGO_BIN_EXE_netpoll-sim").into())
}

fn bin(args: &[&str]) -> Output {
    Command::new(exe())
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
        "determinism  checked: a second run made the same",
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
        &["sweep", "echo", "--seeds", "-5..3"],
        &["sweep", "echo", "--seeds", "1..3", "--shard", "-1/2"],
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
        assert!(
            !stderr(&o).contains("-- -"),
            "{args:?} suggests `--`: {}",
            stderr(&o)
        );
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

/// Asserts a usage error (exit status 2) whose message says `want`.
fn assert_refused(o: &Output, want: &str) {
    assert_eq!(code(o), 2, "{}", stderr(o));
    assert!(stderr(o).contains(want), "{want:?} missing: {}", stderr(o));
}

/// Runs `args` with standard output on a pipe whose reading end is already closed: every write
/// to it fails with `EPIPE`, as when `| head -1` has read its line and gone.
fn closed_stdout(args: &[&str]) -> Output {
    // The writing end of a pipe whose only reader, `true`, has exited.
    let mut sink = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run true");
    let writer = sink.stdin.take().expect("a pipe");
    sink.wait().expect("true exits");
    Command::new(exe())
        .args(args)
        .stdout(writer)
        .output()
        .expect("run netpoll-sim")
}

/// A token of a failing run (the canary), from `run --json`.
fn canary_token(extra: &[&str]) -> String {
    let mut args = vec!["run", "canary", "--seed", "1", "--json"];
    args.extend_from_slice(extra);
    let o = bin(&args);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    v["token"].as_str().expect("a token field").to_string()
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("netpoll-cli-{}-{name}", std::process::id()))
}

#[test]
fn a_closed_stdout_ends_every_subcommand_quietly() {
    let token = canary_token(&[]);
    let shard = temp_path("closed-stdout.jsonl");
    let o = bin(&["sweep", "canary", "--seeds", "0..3", "--json"]);
    std::fs::write(&shard, &o.stdout).unwrap();
    let shard_path = shard.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["list"],
        &["run", "echo", "--seed", "1", "--conns", "4", "--msgs", "2"],
        &[
            "run", "echo", "--seed", "1", "--conns", "4", "--msgs", "2", "--json",
        ],
        &[
            "sweep", "echo", "--seeds", "0..100", "--conns", "2", "--msgs", "1",
        ],
        &["sweep", "canary", "--seeds", "0..20", "--json"],
        &["replay", &token],
        &["replay", &token, "--json"],
        &["shrink", &token, "--max-runs", "3"],
        &["merge", shard_path],
        &["merge", shard_path, "--json"],
        &["--help"],
        &["run", "--help"],
    ];
    for args in cases {
        let o = closed_stdout(args);
        let c = o.status.code();
        assert!(
            c == Some(0) || c == Some(141),
            "{args:?} exited {:?}: {}",
            o.status,
            stderr(&o)
        );
        assert!(
            !stderr(&o).contains("panicked") && !stderr(&o).contains("Broken pipe"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let _ = std::fs::remove_file(&shard);
}

/// Every parameter `list` shows is accepted in the form it shows it, `--NAME N`, and means the
/// same as `--param NAME=N`: each is given one more than its maximum, and both forms must
/// reach the scenario's bounds check (not clap's "unexpected argument").
#[test]
fn every_parameter_list_shows_is_a_flag() {
    let o = bin(&["list"]);
    assert_eq!(code(&o), 0);
    let mut scenario = String::new();
    let mut checked = 0;
    let mut with_params = std::collections::BTreeSet::new();
    for line in stdout(&o).lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            scenario = line.split_whitespace().next().unwrap().to_string();
            continue;
        }
        let Some(rest) = line.trim_start().strip_prefix("--") else {
            continue;
        };
        let name = rest.split_whitespace().next().unwrap();
        with_params.insert(scenario.clone());
        if name == "faults" {
            assert!(line.contains("none|chaos|swarm"), "{line}");
            continue;
        }
        let range = line.split('(').nth(1).unwrap().split(')').next().unwrap();
        let max: u64 = range.split("..=").nth(1).unwrap().parse().unwrap();
        let over = (max + 1).to_string();
        let flag = format!("--{name}");
        let param = format!("{name}={over}");
        for args in [
            vec!["run", scenario.as_str(), flag.as_str(), over.as_str()],
            vec!["run", scenario.as_str(), "--param", param.as_str()],
            vec![
                "sweep",
                scenario.as_str(),
                "--seeds",
                "0..2",
                flag.as_str(),
                over.as_str(),
            ],
        ] {
            let o = bin(&args);
            assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains(&format!("--{name} {over} is out of range")),
                "{args:?}: {}",
                stderr(&o)
            );
        }
        checked += 1;
    }
    assert!(checked > 40, "only {checked} parameters found in list");
    // The canaries show their parameters too, and a flag works on them.
    for c in ["canary", "rt-canary"] {
        assert!(with_params.contains(c), "list shows no parameters for {c}");
    }
    let o = bin(&["run", "canary", "--seed", "1", "--window", "2", "--json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["params"]["window"], 2);
    // A parameter given twice is refused, whichever the forms.
    let o = bin(&["run", "echo", "--window", "2", "--param", "window=3"]);
    assert_refused(&o, "already given");
    // A flag the scenario does not take names the ones it does.
    let o = bin(&["run", "echo", "--backlog", "3"]);
    assert_refused(&o, "this scenario takes");
    // --faults takes what list shows (0..=2) as well as the names.
    let o = bin(&[
        "run", "echo", "--seed", "1", "--conns", "2", "--faults", "2", "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["params"]["faults"], 2);
}

#[test]
fn the_unknown_scenario_message_names_every_scenario_list_shows() {
    let o = bin(&["list"]);
    let names: Vec<String> = stdout(&o)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty() && !l.starts_with("Each"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(names.len() >= 16, "{names:?}");
    let o = bin(&["run", "nope"]);
    assert_eq!(code(&o), 2);
    for n in &names {
        assert!(
            stderr(&o).contains(&format!(" {n},")) || stderr(&o).trim_end().ends_with(n.as_str()),
            "{n} missing: {}",
            stderr(&o)
        );
    }
}

#[test]
fn negative_numbers_get_a_message_that_fits() {
    for args in [
        &["run", "echo", "--conns", "-1"][..],
        &["run", "echo", "--seed", "-5"][..],
        &["run", "echo", "--window", "-1"][..],
        &["sweep", "echo", "--seeds", "0..2", "--jobs", "-2"][..],
        &["shrink", "np1-00", "--max-runs", "-1"][..],
    ] {
        let o = bin(args);
        assert_eq!(code(&o), 2, "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("is negative: expected a non-negative integer"),
            "{args:?}: {e}"
        );
        assert!(!e.contains("-- -"), "{args:?} suggests `--`: {e}");
    }
}

#[test]
fn run_json_token_replays_and_a_relabelled_token_is_corrupt() {
    let (c, v) = run_json(&["--faults", "chaos"]);
    assert_eq!(c, 0, "{v}");
    let token = v["token"].as_str().expect("token field");
    assert!(v["replay"].as_str().unwrap().ends_with(token), "{v}");
    let o = bin(&["replay", token, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let w: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((&w["events"], &w["token"]), (&v["events"], &v["token"]));
    // The real kernel has no token (nothing to replay).
    let o = bin(&[
        "run",
        "echo",
        "--backend",
        "real",
        "--conns",
        "2",
        "--msgs",
        "1",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(r["token"].is_null(), "{r}");
    // A version-1 token under an `np2-` prefix is corrupt, not of an unsupported version.
    let o = bin(&["replay", &format!("np2{}", &token[3..])]);
    assert_refused(&o, "corrupt replay token");
    assert!(!stderr(&o).contains("not supported"), "{}", stderr(&o));
}

#[test]
fn check_determinism_says_what_it_did() {
    let (c, v) = run_json(&["--check-determinism"]);
    assert_eq!(c, 0);
    assert_eq!(v["determinism"], "checked");
    let (_, v) = run_json(&[]);
    assert!(v["determinism"].is_null());
    let o = bin(&["run", "canary", "--seed", "1", "--check-determinism"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("determinism  not checked: the first run failed"),
        "{}",
        stdout(&o)
    );
    let o = bin(&[
        "sweep",
        "echo",
        "--seeds",
        "0..3",
        "--conns",
        "2",
        "--check-determinism",
    ]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("determinism checked for every passing seed"));
}

#[test]
fn sweep_prints_a_few_failures_and_counts_them_by_oracle() {
    let o = bin(&["sweep", "canary", "--seeds", "0..30", "--jobs", "2"]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let fails = out.lines().filter(|l| l.starts_with("FAIL seed")).count();
    assert_eq!(fails, 10, "{out}");
    assert!(out.contains("failures by oracle: lost-wakeup 30"), "{out}");
    assert!(out.contains("... and 20 more failing seeds"), "{out}");
    // In seed order, whatever --jobs is.
    let seeds: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL seed "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seeds, (0..10).collect::<Vec<_>>());
    let o = bin(&["sweep", "canary", "--seeds", "0..30", "--max-failures", "0"]);
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("FAIL")).count(),
        0
    );
    let o = bin(&[
        "sweep",
        "canary",
        "--seeds",
        "0..30",
        "--max-failures",
        "100",
    ]);
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("FAIL")).count(),
        30
    );
    assert!(!stdout(&o).contains("more failing seeds"));
}

#[test]
fn a_seed_range_too_large_for_one_process_advises_a_shard_count_that_works() {
    let o = bin(&["sweep", "echo", "--seeds", "0..200000000"]);
    assert_eq!(code(&o), 2);
    let e = stderr(&o);
    assert!(e.contains("--shard K/N (N at least 2)"), "{e}");
    // After sharding, the limit counts the shard's seeds: one that is still too big is refused
    // with a count that fits.
    let o = bin(&["sweep", "echo", "--seeds", "0..200000002", "--shard", "1/2"]);
    assert_refused(&o, "N at least 4");
}

#[test]
fn shrink_names_the_fault_plan_of_the_faults_parameter_and_shrinks_the_phase_that_failed() {
    // The canary drops events with or without faults: under swarm its quiet phase (the run
    // `none` makes) fails first, and the failure's token is none's.
    let o = bin(&[
        "run", "canary", "--seed", "1", "--json", "--faults", "swarm",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["phase"], "quiet", "{v}");
    let quiet = v["token"].as_str().unwrap().to_string();
    assert_eq!(
        quiet,
        canary_token(&[]),
        "the quiet phase's token is none's"
    );
    // A token naming swarm through the `faults` parameter (as earlier builds wrote them):
    // the header names swarm, the result the phase that failed.
    let mut t = Token::decode(&quiet).unwrap();
    let at = Registry::builtin()
        .find("canary")
        .unwrap()
        .params()
        .iter()
        .position(|p| p.name == "faults")
        .unwrap();
    t.values[at] = 2;
    let o = bin(&["shrink", &t.encode(), "--max-runs", "1"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("faults swarm)"), "{}", stderr(&o));
    assert!(stdout(&o).contains("faults none)"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("phase        the quiet phase"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn trace_refuses_an_unwritable_path_before_running() {
    let token = canary_token(&[]);
    let o = bin(&[
        "trace",
        &token,
        "--out",
        "/nonexistent-dir/netpoll/trace.json",
    ]);
    assert_eq!(code(&o), 2);
    let e = stderr(&o);
    assert!(
        e.starts_with("error: --out /nonexistent-dir/netpoll/trace.json"),
        "{e}"
    );
    // Nothing ran: no "wrote", no failure report of the canary.
    assert!(!e.contains("wrote") && !e.contains("lost wakeup"), "{e}");
}

/// The acceptance check of sharded sweeps: the failing seeds of `--shard 1/2` and `--shard 2/2`,
/// merged, are those of the unsharded sweep, each with the same replay token; the text report
/// lists every one.
#[test]
fn merged_shards_fail_the_seeds_the_whole_sweep_fails() {
    let sweep = &[
        "sweep",
        "zoo-oneshot-no-rearm",
        "--seeds",
        "0..60",
        "--faults",
        "swarm",
        "--conns",
        "4",
        "--json",
    ];
    let failing = |text: &str| -> Vec<(u64, String)> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["type"] == "failure")
            .map(|v| {
                (
                    v["seed"].as_u64().unwrap(),
                    v["token"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let whole = bin(sweep);
    assert_eq!(code(&whole), 1, "{}", stderr(&whole));
    let want = failing(&stdout(&whole));
    assert!(
        want.len() > 10 && want.len() < 60,
        "{} failures: pick a mixed sweep",
        want.len()
    );
    let mut files = Vec::new();
    for k in ["1/2", "2/2"] {
        let mut args = sweep.to_vec();
        args.extend_from_slice(&["--shard", k, "--jobs", "2"]);
        let o = bin(&args);
        assert!(code(&o) <= 1, "{}", stderr(&o));
        let path = temp_path(&format!("shard-{}.jsonl", &k[..1]));
        std::fs::write(&path, &o.stdout).unwrap();
        files.push(path);
    }
    let f: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let o = bin(&["merge", f[1], f[0], "--json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(failing(&stdout(&o)), want);
    let last: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["runs"].as_u64(), last["failed"].as_u64()),
        (Some(60), Some(want.len() as u64))
    );
    assert_eq!(last["shard"]["n"], 1);
    // The text report: every failure with its replay line.
    let o = bin(&["merge", f[0], f[1]]);
    assert_eq!(code(&o), 1);
    let text = stdout(&o);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("FAIL seed"))
        .collect();
    assert_eq!(lines.len(), want.len(), "{}", stdout(&o));
    for (line, (seed, token)) in lines.iter().zip(&want) {
        assert!(line.starts_with(&format!("FAIL seed {seed} ")) && line.ends_with(token.as_str()));
    }
    // Both shards in one stream on standard input (`cat shard-*.jsonl | netpoll-sim merge -`).
    let mut both = std::fs::read(&files[0]).unwrap();
    both.extend(std::fs::read(&files[1]).unwrap());
    let mut child = Command::new(exe())
        .args(["merge", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&both).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1);
    assert_eq!(failing(&stdout(&o)), want);
    // One shard alone is refused, or merged as partial on request.
    let o = bin(&["merge", f[0]]);
    assert_refused(&o, "2/2 of the sweep are missing");
    let o = bin(&["merge", f[0], "--allow-missing"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("MISSING shards 2/2"), "{}", stdout(&o));
    let o = bin(&["merge", f[0], "--allow-missing", "--json"]);
    assert_refused(&o, "--json needs every shard");
    // A shard of another sweep does not merge.
    let o = bin(&[
        "sweep", "canary", "--seeds", "0..60", "--shard", "2/2", "--json",
    ]);
    let other = temp_path("other.jsonl");
    std::fs::write(&other, &o.stdout).unwrap();
    let o = bin(&["merge", f[0], other.to_str().unwrap()]);
    assert_refused(&o, "different sweeps");
    for p in files.iter().chain([&other]) {
        let _ = std::fs::remove_file(p);
    }
}

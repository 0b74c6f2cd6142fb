//! Helpers shared by the tests of the one-call check (scenarios' `check.rs` and
//! `check_threads.rs`, netpoll-interpose's `check_threads.rs`, through `#[path]`): a check
//! that reads only the variables it is given, the failure a check must report, and the
//! variables at the head of a replay line.
#![allow(dead_code)] // each test file uses its share

use std::collections::BTreeMap;

use netpoll_scenarios::check::{Check, CheckError, Failure, Passed};

/// A check that reads only `vars`, not the process's environment.
pub fn check(vars: &[(&str, &str)]) -> Check {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Check::new().env(move |k| vars.get(k).cloned())
}

/// The failure of a check that must fail.
pub fn failure(r: Result<Passed, CheckError>) -> Failure {
    match r {
        Err(CheckError::Failed(f)) => *f,
        Err(e) => panic!("expected a failing seed, got {e}"),
        Ok(p) => panic!("expected a failing seed, all passed: {p:?}"),
    }
}

/// The `NETPOLL_*=value` settings at the head of a replay line (a value may be single-quoted,
/// with spaces inside).
pub fn replay_env(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some((k, tail)) = rest.split_once('=') {
        if k.contains(' ') || !k.starts_with("NETPOLL_") {
            break;
        }
        let (v, tail) = match tail.strip_prefix('\'') {
            Some(q) => q.split_once("' ").expect("a closing quote"),
            None => tail.split_once(' ').expect("more after the value"),
        };
        out.push((k.to_string(), v.to_string()));
        rest = tail;
    }
    out
}

/// The failure's report as shown, and its trace file's text. The report must name the file.
pub fn shown_and_trace(f: &Failure) -> (String, String) {
    let shown = f.to_string();
    let path = f.trace.as_ref().expect("a failure with a trace file");
    assert!(
        shown.contains(&format!("trace:  {}", path.display())),
        "the report names its trace file\n{shown}"
    );
    let json = std::fs::read_to_string(path).expect("the trace file can be read");
    (shown, json)
}

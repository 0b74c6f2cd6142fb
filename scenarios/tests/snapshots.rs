//! Small fixed-seed traces, pinned: any change in the simulated kernel's behaviour (or the
//! loops') shows up here in review as a diff of calls.

use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run::{self, Request};
use netpoll_scenarios::trace_out;

fn trace(name: &str, params: &[(&str, u64)], seed: u64) -> String {
    let s = Registry::builtin().find(name).unwrap();
    let mut p = s.defaults();
    for &(k, v) in params {
        p.set(k, v).unwrap();
    }
    let req = Request::sim(s, p, seed);
    let (records, report) = run::traced(&req);
    assert!(report.failure.is_none(), "{}", report.failure.unwrap());
    format!(
        "# {} seed {seed} ({})\n{}",
        name,
        req.params,
        trace_out::text(&records, &report.labels)
    )
}

#[test]
fn echo_two_connections_seed_1() {
    insta::assert_snapshot!(trace("echo", &[("conns", 2), ("msgs", 2), ("size", 16)], 1));
}

#[test]
fn half_close_two_connections_seed_1() {
    insta::assert_snapshot!(trace(
        "half-close",
        &[("conns", 2), ("msgs", 2), ("size", 100)],
        1
    ));
}

#[test]
fn slow_clients_stall_seed_1() {
    insta::assert_snapshot!(trace(
        "slow-clients",
        &[
            ("conns", 2),
            ("msgs", 2),
            ("size", 8),
            ("stall-pct", 50),
            ("deadline-ms", 5)
        ],
        1
    ));
}

#[test]
fn echo_two_connections_chaos_seed_1() {
    insta::assert_snapshot!(trace(
        "echo",
        &[("conns", 2), ("msgs", 2), ("size", 16), ("faults", 1)],
        1
    ));
}

/// The netpoller's own calls (one registration per fd, `EAGAIN` then park, a read deadline
/// armed per read) on top of the sim's: a change in `src/rt/` shows here too.
#[test]
fn rt_echo_two_connections_seed_1() {
    insta::assert_snapshot!(trace(
        "rt-echo",
        &[("conns", 2), ("msgs", 2), ("size", 16)],
        1
    ));
}

/// `netpoll-sim trace` streams (spills the calls during the run, writes the trace after): its
/// files hold exactly the bytes the in-memory trace gives, in both forms, for the engine, the
/// netpoller and the zoo.
#[test]
fn streamed_trace_files_match_the_in_memory_trace() {
    use netpoll_scenarios::trace_file::{self, Form};
    let dir = std::env::temp_dir();
    for (name, faults) in [("echo", 1), ("rt-echo", 0), ("zoo-et-partial-read", 1)] {
        let s = Registry::builtin().find(name).unwrap();
        let mut p = s.defaults();
        for (k, v) in [("conns", 3), ("msgs", 2), ("size", 16), ("faults", faults)] {
            p.set(k, v).unwrap();
        }
        let req = Request::sim(s, p, 5);
        let (records, report) = run::traced(&req);
        let title = format!("{} seed {} ({})", name, req.seed, req.params);
        let want_text = trace_out::text(&records, &report.labels);
        let want_json = trace_out::chrome(&records, &report.labels, &title).to_string();
        let path = dir.join(format!("netpoll-stream-{}-{name}", std::process::id()));
        for (form, want) in [(Form::Text, &want_text), (Form::Chrome, &want_json)] {
            let (n, r) = trace_file::write(&req, &path, form).unwrap();
            let got = std::fs::read_to_string(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(
                n,
                records.len() as u64,
                "{name} {form:?}: {}",
                req.replay_line()
            );
            assert_eq!(r.fingerprint, report.fingerprint, "{}", req.replay_line());
            assert!(
                got == *want,
                "{name} {form:?} differs: {}",
                req.replay_line()
            );
        }
        let mut spill = path.into_os_string();
        spill.push(".calls");
        assert!(
            !std::path::Path::new(&spill).exists(),
            "the spill file is removed"
        );
    }
}

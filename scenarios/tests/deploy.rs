//! The sweep recipes we ship for other engines, run here: the GitHub Actions workflow
//! (`.github/workflows/sweep.yml`) and the Kubernetes Indexed Job (`deploy/k8s/*.yaml`).
//!
//! Each test takes the shell scripts those files contain, as written (every `run: |` or `- |`
//! block that calls `netpoll-sim`), runs them for 2 shards on this machine with the environment
//! the file declares (and nothing else: unset variables are errors), moves the shard files as
//! the engine would (artifacts, a shared volume), runs the merge script, and checks that the
//! merged report fails exactly the seeds an unsharded sweep fails, each with its replay token.
//! A change to a recipe that breaks it breaks these tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The literal blocks (`key: |` or `- |`) of a YAML file, dedented.
fn blocks(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.trim_end().ends_with('|') || l.trim_start().starts_with('#') {
            continue;
        }
        let base = indent(l);
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|b| b.trim().is_empty() || indent(b) > base)
            .copied()
            .collect();
        let cut = body
            .iter()
            .filter(|b| !b.trim().is_empty())
            .map(|b| indent(b))
            .min()
            .unwrap_or(0);
        let text: Vec<&str> = body.iter().map(|b| b.get(cut..).unwrap_or("")).collect();
        out.push(text.join("\n") + "\n");
    }
    out
}

/// The one block that contains `needle`.
fn block_with(yaml: &str, needle: &str) -> String {
    let found: Vec<String> = blocks(yaml)
        .into_iter()
        .filter(|b| b.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "blocks containing {needle:?}: {found:?}");
    found.into_iter().next().unwrap()
}

/// Every `NAME: value` with an upper-case NAME (the env maps and the ConfigMap's data).
fn env_keys(yaml: &str) -> BTreeMap<String, String> {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .map(|(k, v)| (k.to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// The sweep both tests run: small, with failing and passing seeds.
const SWEEP: [(&str, &str); 4] = [
    ("SCENARIO", "zoo-oneshot-no-rearm"),
    ("SEEDS", "0..60"),
    ("FAULTS", "swarm"),
    ("SWEEP_ARGS", "--conns 4"),
];

/// Runs `script` with `shell` in `dir` with exactly `env` (and a PATH that finds this build's
/// `netpoll-sim` first).
fn run_script(shell: &[&str], script: &str, dir: &Path, env: &BTreeMap<String, String>) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_netpoll-sim"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::fs::create_dir_all(dir).unwrap();
    Command::new(shell[0])
        .args(&shell[1..])
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .envs(env)
        .output()
        .expect("run the script")
}

/// Failing `(seed, token)` pairs of `sweep --json` or `merge --json` output.
fn failing(jsonl: &str) -> Vec<(u64, String)> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .filter(|v| v["type"] == "failure")
        .map(|v| {
            (
                v["seed"].as_u64().unwrap(),
                v["token"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The unsharded sweep's failures, straight from the binary.
fn unsharded() -> Vec<(u64, String)> {
    let env: BTreeMap<&str, &str> = SWEEP.into_iter().collect();
    let mut args = vec![
        "sweep",
        env["SCENARIO"],
        "--seeds",
        env["SEEDS"],
        "--faults",
        env["FAULTS"],
        "--json",
    ];
    args.extend(env["SWEEP_ARGS"].split_whitespace());
    let o = Command::new(env!("CARGO_BIN_EXE_netpoll-sim"))
        .args(&args)
        .output()
        .unwrap();
    let f = failing(&String::from_utf8_lossy(&o.stdout));
    assert!(
        f.len() > 10 && f.len() < 60,
        "{} failures: pick a mixed sweep",
        f.len()
    );
    f
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netpoll-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ok(o: &Output, codes: &[i32], what: &str) {
    let c = o.status.code().unwrap_or(-1);
    assert!(
        codes.contains(&c),
        "{what} exited {c}:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Checks a merged report: the JSON lines fail the unsharded sweep's seeds with its tokens, and
/// the text report lists each one's replay line.
fn check_merged(merged_jsonl: &str, report: &str, want: &[(u64, String)]) {
    assert_eq!(failing(merged_jsonl), want);
    let summary: serde_json::Value =
        serde_json::from_str(merged_jsonl.lines().last().unwrap()).unwrap();
    assert_eq!(summary["runs"], 60);
    assert_eq!(summary["shard"]["n"], 1);
    assert!(report.starts_with("merged 2 of 2 shards"), "{report}");
    for (seed, token) in want {
        assert!(
            report.contains(&format!("FAIL seed {seed} ")) && report.contains(token.as_str()),
            "seed {seed} missing:\n{report}"
        );
    }
}

#[test]
fn the_github_workflow_sweeps_two_shards_and_merges_them() {
    let yml = read(".github/workflows/sweep.yml");
    let declared = env_keys(&yml);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &declared {
        let v = match (k.as_str(), SWEEP.iter().find(|(n, _)| n == k)) {
            (_, Some((_, ours))) => ours.to_string(),
            ("SHARDS", _) => "2".into(),
            ("SHARD", _) => String::new(), // set per shard below
            (_, None) if v.contains("${{") => panic!("{k} = {v}: give this test a value for it"),
            _ => v.clone(),
        };
        env.insert(k.clone(), v);
    }
    for k in SWEEP.map(|(k, _)| k).iter().chain(&["SHARDS", "SHARD"]) {
        assert!(declared.contains_key(*k), "the workflow does not set {k}");
    }
    let d = scratch("gh");

    // The plan job: the matrix of shards.
    let out = d.join("github_output");
    let mut e = env.clone();
    e.insert("GITHUB_OUTPUT".into(), out.display().to_string());
    let plan = block_with(&yml, "GITHUB_OUTPUT");
    let o = run_script(&["bash", "-euo", "pipefail", "-c"], &plan, &d, &e);
    ok(&o, &[0], "plan");
    let line = std::fs::read_to_string(&out).unwrap();
    assert_eq!(line.trim(), "shards=[1,2]");
    let shards: Vec<u64> =
        serde_json::from_str(line.trim().strip_prefix("shards=").unwrap()).unwrap();

    // The matrix: each shard job sweeps in its own directory; its artifact is the file the
    // upload step names, and the merge job downloads every one into shards/.
    let sweep = block_with(&yml, "netpoll-sim sweep");
    assert!(
        yml.contains("path: shard-${{ matrix.shard }}.jsonl"),
        "upload path changed"
    );
    let merge_dir = d.join("merge");
    std::fs::create_dir_all(merge_dir.join("shards")).unwrap();
    for k in shards {
        let mut e = env.clone();
        e.insert("SHARD".into(), k.to_string());
        let job = d.join(format!("shard-{k}"));
        let o = run_script(&["bash", "-euo", "pipefail", "-c"], &sweep, &job, &e);
        ok(&o, &[0], &format!("shard {k}"));
        let artifact = format!("shard-{k}.jsonl");
        std::fs::copy(
            job.join(&artifact),
            merge_dir.join("shards").join(&artifact),
        )
        .unwrap();
    }

    // The merge job: fails (status 1) because seeds failed, after writing its report.
    let merge = block_with(&yml, "netpoll-sim merge");
    let summary = d.join("step_summary");
    let mut e = env.clone();
    e.insert("GITHUB_STEP_SUMMARY".into(), summary.display().to_string());
    let o = run_script(&["bash", "-euo", "pipefail", "-c"], &merge, &merge_dir, &e);
    ok(&o, &[1], "merge");
    let report = std::fs::read_to_string(merge_dir.join("report.txt")).unwrap();
    let merged = std::fs::read_to_string(merge_dir.join("merged.jsonl")).unwrap();
    check_merged(&merged, &report, &unsharded());
    assert!(std::fs::read_to_string(&summary).unwrap().contains(&report));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_kubernetes_indexed_job_sweeps_two_shards_and_merges_them() {
    let job = read("deploy/k8s/sweep-job.yaml");
    let merge_yaml = read("deploy/k8s/merge-job.yaml");
    assert!(job.contains("completionMode: Indexed"));
    let field = |name: &str| -> String {
        job.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .to_string()
    };
    let config = env_keys(&job);
    assert_eq!(
        config["SHARDS"],
        field("completions"),
        "the ConfigMap's SHARDS must equal the Job's completions"
    );
    assert_eq!(field("parallelism"), field("completions"));
    assert!(
        merge_yaml.contains("name: netpoll-sweep\n"),
        "merge reads another ConfigMap"
    );

    let d = scratch("k8s");
    let results = d.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let mut env: BTreeMap<String, String> = config.clone();
    for (k, v) in SWEEP {
        assert!(config.contains_key(k), "the ConfigMap does not set {k}");
        env.insert(k.into(), v.into());
    }
    env.insert("SHARDS".into(), "2".into());
    env.insert("RESULTS".into(), results.display().to_string());

    // The Indexed Job: pods with completion indexes 0 and 1, all writing to the shared volume.
    let sweep = block_with(&job, "netpoll-sim sweep");
    for index in 0..2 {
        let mut e = env.clone();
        e.insert("JOB_COMPLETION_INDEX".into(), index.to_string());
        let o = run_script(&["sh", "-c"], &sweep, &d.join(format!("pod-{index}")), &e);
        ok(&o, &[0], &format!("pod {index}"));
    }
    let mut files: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["shard-1.jsonl", "shard-2.jsonl"]);

    // The merge Job.
    let merge = block_with(&merge_yaml, "netpoll-sim merge");
    let o = run_script(&["sh", "-c"], &merge, &d.join("merge-pod"), &env);
    ok(&o, &[1], "merge");
    let report = std::fs::read_to_string(results.join("report.txt")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        report,
        "the log is the report"
    );
    let merged = std::fs::read_to_string(results.join("merged.jsonl")).unwrap();
    check_merged(&merged, &report, &unsharded());
    let _ = std::fs::remove_dir_all(&d);
}

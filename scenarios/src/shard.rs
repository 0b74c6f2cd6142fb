//! Sweeps beyond one machine: seed ranges cut into shards, the JSON lines a shard writes, and
//! the merge of the shards' outputs into one report.
//!
//! `netpoll-sim sweep SCENARIO --seeds A..B --shard K/N --json` runs the seeds whose position in
//! the range is `K-1` modulo `N` and writes one [`FailureLine`] per failing seed (in seed order),
//! then one [`Summary`] line. `netpoll-sim merge FILE...` reads those lines from any number of
//! files ([`merge`]), checks that they are the shards of one sweep (same scenario, parameters,
//! range and shard count; no shard twice; none missing unless allowed; each shard's failure
//! count matching its summary), and reports every failure's replay token. The merged output of
//! all `N` shards holds the same failing seeds as the unsharded sweep.
//!
//! ```
//! use netpoll_scenarios::shard::{merge, Shard};
//!
//! let s = Shard::parse("2/3").unwrap();
//! let seeds: Vec<u64> = s.seeds(10..=19).collect();
//! assert_eq!(seeds, [11, 14, 17]);
//!
//! // Two shards' outputs (as `sweep --json` writes them), merged.
//! let one = r#"{"type":"summary","format":1,"scenario":"echo","params":{"conns":4},"seeds":{"start":0,"end":3},"shard":{"k":1,"n":2},"check_determinism":false,"runs":2,"passed":2,"failed":0,"by_oracle":{},"events":10,"wall_s":0.1}"#;
//! let two = r#"{"type":"summary","format":1,"scenario":"echo","params":{"conns":4},"seeds":{"start":0,"end":3},"shard":{"k":2,"n":2},"check_determinism":false,"runs":2,"passed":2,"failed":0,"by_oracle":{},"events":12,"wall_s":0.1}"#;
//! let m = merge(&[("a.jsonl".into(), one.into()), ("b.jsonl".into(), two.into())], false).unwrap();
//! assert_eq!((m.summary.runs, m.summary.failed, m.summary.events), (4, 0, 22));
//! assert!(m.missing.is_empty());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::token::Token;

/// The version of the JSON line format ([`Summary::format`]).
pub const FORMAT: u32 = 1;

/// The most seeds one `sweep` process runs (after sharding): beyond it, split the range with
/// `--shard K/N` across processes or machines.
pub const SEEDS_PER_PROCESS_MAX: u64 = 100_000_000;

/// Shard `k` of `n` (1-based): the seeds whose position in the range is `k - 1` modulo `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, `1..=n`.
    pub k: u64,
    /// How many shards.
    pub n: u64,
}

impl Shard {
    /// The whole range: shard 1 of 1.
    pub const ALL: Shard = Shard { k: 1, n: 1 };

    /// Reads `K/N`.
    ///
    /// # Errors
    /// Anything but two integers with `1 <= K <= N`, in words.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?}: expected K/N with 1 <= K <= N, e.g. 1/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: u64 = k.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }

    /// How many of `range`'s seeds are this shard's.
    pub fn count(&self, range: &RangeInclusive<u64>) -> u64 {
        let len = u128::from(*range.end()) - u128::from(*range.start()) + 1;
        let skip = u128::from(self.k - 1);
        if len <= skip {
            return 0;
        }
        // At most 2^64 / n + 1, which fits unless n == 1 and the range is all of u64.
        u64::try_from((len - skip).div_ceil(u128::from(self.n))).unwrap_or(u64::MAX)
    }

    /// The `i`th seed of this shard in `range` (`i < self.count(range)`).
    pub fn nth(&self, range: &RangeInclusive<u64>, i: u64) -> u64 {
        range.start() + (self.k - 1) + i * self.n
    }

    /// Whether `seed` is one of this shard's seeds in `range`.
    pub fn owns(&self, range: &RangeInclusive<u64>, seed: u64) -> bool {
        range.contains(&seed) && (seed - range.start()) % self.n == self.k - 1
    }

    /// This shard's seeds in `range`, in order.
    pub fn seeds(self, range: RangeInclusive<u64>) -> impl Iterator<Item = u64> {
        let n = self.count(&range);
        (0..n).map(move |i| self.nth(&range, i))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// A seed range as the JSON lines carry it (both ends included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeds {
    /// The first seed.
    pub start: u64,
    /// The last seed (included).
    pub end: u64,
}

impl Seeds {
    /// As a range.
    pub fn range(&self) -> RangeInclusive<u64> {
        self.start..=self.end
    }
}

impl fmt::Display for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

/// One failing seed: a line of `sweep --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureLine {
    /// The scenario.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The failed oracle's kind (`lost-wakeup`, `hang`, ...).
    pub oracle: String,
    /// The replay token (`netpoll-sim replay TOKEN` reruns it).
    pub token: String,
    /// The failure, in words (may span lines).
    pub message: String,
}

/// The last line of a shard's `sweep --json` output: what was swept and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`FORMAT`].
    pub format: u32,
    /// The scenario.
    pub scenario: String,
    /// Every parameter's value (the `faults` parameter included).
    pub params: BTreeMap<String, u64>,
    /// The whole range swept (by all shards together).
    pub seeds: Seeds,
    /// Which shard this is.
    pub shard: Shard,
    /// Whether each seed was also checked for determinism.
    pub check_determinism: bool,
    /// Runs made (this shard's seeds).
    pub runs: u64,
    /// Runs that passed every oracle.
    pub passed: u64,
    /// Runs that failed one.
    pub failed: u64,
    /// Failures counted by oracle kind.
    pub by_oracle: BTreeMap<String, u64>,
    /// Simulated events, summed over the runs.
    pub events: u64,
    /// Wall-clock seconds the shard took (summed over shards when merged).
    pub wall_s: f64,
}

impl Summary {
    /// The one-line headline (`sweep echo seeds 0..=99 shard 1/2: 50 runs, ...`; no shard for
    /// the whole range).
    pub fn headline(&self) -> String {
        let shard = if self.shard == Shard::ALL {
            String::new()
        } else {
            format!(" shard {}", self.shard)
        };
        format!(
            "sweep {} seeds {}{shard}: {} runs, {} passed, {} failed, {} events, {:.2} s",
            self.scenario,
            self.seeds,
            self.runs,
            self.passed,
            self.failed,
            self.events,
            self.wall_s
        )
    }

    /// `failures by oracle: lost-wakeup 3, hang 1` (most frequent first), or `None` without
    /// failures.
    pub fn by_oracle_line(&self) -> Option<String> {
        if self.by_oracle.is_empty() {
            return None;
        }
        let mut v: Vec<(&String, &u64)> = self.by_oracle.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = v.iter().map(|(k, n)| format!("{k} {n}")).collect();
        Some(format!("failures by oracle: {}", parts.join(", ")))
    }
}

/// A line of `sweep --json` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    /// A failing seed.
    Failure(FailureLine),
    /// The shard's summary (its last line).
    Summary(Summary),
}

impl Line {
    /// The line as JSON text (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a sweep line serializes")
    }
}

/// The shards' outputs merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The whole sweep: shard 1/1 when every shard was there; totals summed.
    pub summary: Summary,
    /// Every failure, in seed order.
    pub failures: Vec<FailureLine>,
    /// The shards present, in order.
    pub shards: Vec<u64>,
    /// The shards missing (only with `allow_missing`).
    pub missing: Vec<u64>,
}

/// Why shard outputs could not be merged: a usage error (exit status 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeError(pub String);

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MergeError {}

/// Merges the `sweep --json` outputs in `inputs` (`(name, text)` pairs; a text may hold several
/// shards one after another, as `cat shard-*.jsonl` gives).
///
/// # Errors
/// A line that is not one of ours, a shard whose output ends before its summary, failure lines
/// that do not agree with their summary, shards of different sweeps, a shard twice, or (unless
/// `allow_missing`) a missing shard.
pub fn merge(inputs: &[(String, String)], allow_missing: bool) -> Result<Merged, MergeError> {
    let err = |s: String| Err(MergeError(s));
    let mut shards: Vec<(String, Summary, Vec<FailureLine>)> = Vec::new();
    for (name, text) in inputs {
        let mut pending = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let at = format!("{name}:{}", i + 1);
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = match serde_json::from_str(raw) {
                Ok(l) => l,
                Err(e) => {
                    return err(format!(
                        "{at}: not a line of `netpoll-sim sweep --json` output ({e})"
                    ))
                }
            };
            match line {
                Line::Failure(f) => {
                    match Token::decode(&f.token) {
                        Ok(t) if t.seed == f.seed && t.scenario == f.scenario => {}
                        Ok(_) => {
                            return err(format!(
                                "{at}: the token does not replay seed {} of {}",
                                f.seed, f.scenario
                            ))
                        }
                        Err(e) => return err(format!("{at}: {e}")),
                    }
                    pending.push(f);
                }
                Line::Summary(s) => {
                    if s.format != FORMAT {
                        return err(format!(
                            "{at}: format {} (this build reads format {FORMAT})",
                            s.format
                        ));
                    }
                    let fails = std::mem::take(&mut pending);
                    check_shard(&at, &s, &fails)?;
                    shards.push((at, s, fails));
                }
            }
        }
        if !pending.is_empty() {
            return err(format!(
                "{name}: {} failure line(s) after the last summary line: a shard's output was cut \
                 short (did its sweep finish?)",
                pending.len()
            ));
        }
    }
    let Some((first_at, first, _)) = shards.first() else {
        return err("no summary line in the input: nothing to merge \
                    (give the files `netpoll-sim sweep --json` wrote)"
            .into());
    };
    let (first_at, first) = (first_at.clone(), first.clone());
    let mut by_k: BTreeMap<u64, String> = BTreeMap::new();
    for (at, s, _) in &shards {
        let same = s.scenario == first.scenario
            && s.params == first.params
            && s.seeds == first.seeds
            && s.shard.n == first.shard.n
            && s.check_determinism == first.check_determinism;
        if !same {
            return err(format!(
                "{at} and {first_at} are shards of different sweeps ({} {} params {:?} shard {} vs {} {} params {:?} shard {})",
                s.scenario, s.seeds, s.params, s.shard, first.scenario, first.seeds, first.params, first.shard
            ));
        }
        if let Some(prev) = by_k.insert(s.shard.k, at.clone()) {
            return err(format!("shard {} appears twice ({prev} and {at})", s.shard));
        }
    }
    let n = first.shard.n;
    let missing: Vec<u64> = (1..=n).filter(|k| !by_k.contains_key(k)).collect();
    if !missing.is_empty() && !allow_missing {
        let list: Vec<String> = missing.iter().map(|k| format!("{k}/{n}")).collect();
        return err(format!(
            "shard(s) {} of the sweep are missing (--allow-missing merges the rest)",
            list.join(", ")
        ));
    }
    let mut total = Summary {
        shard: if missing.is_empty() {
            Shard::ALL
        } else {
            first.shard
        },
        runs: 0,
        passed: 0,
        failed: 0,
        by_oracle: BTreeMap::new(),
        events: 0,
        wall_s: 0.0,
        ..first
    };
    let mut failures = Vec::new();
    for (_, s, f) in shards {
        total.runs += s.runs;
        total.passed += s.passed;
        total.failed += s.failed;
        total.events = total.events.saturating_add(s.events);
        total.wall_s += s.wall_s;
        for (k, v) in s.by_oracle {
            *total.by_oracle.entry(k).or_default() += v;
        }
        failures.extend(f);
    }
    failures.sort_by_key(|f| f.seed);
    Ok(Merged {
        summary: total,
        failures,
        shards: by_k.into_keys().collect(),
        missing,
    })
}

/// One shard's summary against its failure lines.
fn check_shard(at: &str, s: &Summary, fails: &[FailureLine]) -> Result<(), MergeError> {
    let err = |m: String| Err(MergeError(format!("{at}: {m}")));
    if s.shard.k == 0 || s.shard.k > s.shard.n || s.seeds.start > s.seeds.end {
        return err(format!(
            "shard {} of seeds {} is impossible",
            s.shard, s.seeds
        ));
    }
    if s.runs != s.shard.count(&s.seeds.range()) || s.passed + s.failed != s.runs {
        return err(format!(
            "shard {} of seeds {} has {} seeds, but the summary counts {} runs, {} passed, {} failed",
            s.shard,
            s.seeds,
            s.shard.count(&s.seeds.range()),
            s.runs,
            s.passed,
            s.failed
        ));
    }
    if fails.len() as u64 != s.failed {
        return err(format!(
            "the summary counts {} failures but {} failure lines precede it",
            s.failed,
            fails.len()
        ));
    }
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for f in fails {
        if f.scenario != s.scenario || !s.shard.owns(&s.seeds.range(), f.seed) {
            return err(format!(
                "failure line for {} seed {} does not belong to shard {} of {} seeds {}",
                f.scenario, f.seed, s.shard, s.scenario, s.seeds
            ));
        }
        *counted.entry(f.oracle.clone()).or_default() += 1;
    }
    if counted != s.by_oracle {
        return err(format!(
            "failures by oracle {:?} do not match the summary's {:?}",
            counted, s.by_oracle
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_a_range() {
        for (a, b) in [(0u64, 0u64), (0, 9), (5, 17), (u64::MAX - 6, u64::MAX)] {
            for n in 1..=5 {
                let mut all: Vec<u64> = (1..=n).flat_map(|k| Shard { k, n }.seeds(a..=b)).collect();
                all.sort_unstable();
                assert_eq!(all, (a..=b).collect::<Vec<_>>(), "{a}..={b} in {n}");
                for k in 1..=n {
                    let s = Shard { k, n };
                    assert_eq!(s.count(&(a..=b)), s.seeds(a..=b).count() as u64);
                    assert!(s.seeds(a..=b).all(|x| s.owns(&(a..=b), x)));
                }
            }
        }
        assert_eq!(Shard::ALL.count(&(0..=u64::MAX)), u64::MAX);
    }

    #[test]
    fn shard_parse_refuses_nonsense() {
        assert_eq!(Shard::parse("1/2"), Ok(Shard { k: 1, n: 2 }));
        for bad in ["0/2", "3/2", "1/0", "x", "1/", "/2", "-1/2", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    fn summary(k: u64, n: u64, fails: &[(u64, &str)]) -> (Summary, Vec<FailureLine>) {
        let seeds = Seeds { start: 0, end: 9 };
        let shard = Shard { k, n };
        let failures: Vec<FailureLine> = fails
            .iter()
            .map(|&(seed, oracle)| FailureLine {
                scenario: "canary".into(),
                seed,
                oracle: oracle.into(),
                token: Token {
                    scenario: "canary".into(),
                    values: vec![1],
                    seed,
                    faults: crate::swarm::FaultSpec::None,
                }
                .encode(),
                message: "m".into(),
            })
            .collect();
        let mut by_oracle = BTreeMap::new();
        for f in &failures {
            *by_oracle.entry(f.oracle.clone()).or_default() += 1;
        }
        let runs = shard.count(&seeds.range());
        let s = Summary {
            format: FORMAT,
            scenario: "canary".into(),
            params: BTreeMap::from([("conns".into(), 1)]),
            seeds,
            shard,
            check_determinism: false,
            runs,
            passed: runs - failures.len() as u64,
            failed: failures.len() as u64,
            by_oracle,
            events: 5,
            wall_s: 1.0,
        };
        (s, failures)
    }

    fn text(parts: &[&(Summary, Vec<FailureLine>)]) -> String {
        let mut t = String::new();
        for (s, f) in parts {
            for f in f {
                t += &Line::Failure(f.clone()).to_json();
                t.push('\n');
            }
            t += &Line::Summary(s.clone()).to_json();
            t.push('\n');
        }
        t
    }

    #[test]
    fn merge_sums_and_sorts_and_checks() {
        let a = summary(1, 2, &[(0, "hang"), (4, "lost-wakeup")]);
        let b = summary(2, 2, &[(1, "lost-wakeup")]);
        let m = merge(
            &[("b".into(), text(&[&b])), ("a".into(), text(&[&a]))],
            false,
        )
        .unwrap();
        assert_eq!(m.summary.shard, Shard::ALL);
        assert_eq!(
            (m.summary.runs, m.summary.failed, m.summary.passed),
            (10, 3, 7)
        );
        assert_eq!(m.summary.by_oracle["lost-wakeup"], 2);
        let seeds: Vec<u64> = m.failures.iter().map(|f| f.seed).collect();
        assert_eq!(seeds, [0, 1, 4]);
        // Both shards in one stream (`cat`) merge the same.
        let one = merge(&[("-".into(), text(&[&a, &b]))], false).unwrap();
        assert_eq!(one, m);

        let fails = |inputs: &[(String, String)], allow: bool, want: &str| {
            let e = merge(inputs, allow).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        };
        fails(
            &[("a".into(), text(&[&a]))],
            false,
            "2/2 of the sweep are missing",
        );
        let partial = merge(&[("a".into(), text(&[&a]))], true).unwrap();
        assert_eq!(partial.missing, [2]);
        fails(&[("a".into(), text(&[&a, &a]))], false, "appears twice");
        let mut other = b.clone();
        other.0.params.insert("conns".into(), 2);
        fails(
            &[("a".into(), text(&[&a, &other]))],
            false,
            "different sweeps",
        );
        // Cut short: the failure lines without their summary.
        let cut: String = text(&[&a]).lines().next().unwrap().to_string();
        fails(&[("a".into(), cut)], false, "cut short");
        let mut lying = a.clone();
        lying.1.pop();
        fails(
            &[("a".into(), text(&[&lying]))],
            false,
            "failure lines precede",
        );
        let mut stray = a.clone();
        stray.1[0].seed = 1; // shard 2's seed
        fails(
            &[("a".into(), text(&[&stray]))],
            false,
            "token does not replay",
        );
        fails(
            &[("a".into(), "{\"type\":\"x\"}".into())],
            false,
            "a:1: not a line",
        );
        fails(&[("a".into(), "hello".into())], false, "not a line");
        fails(&[("a".into(), String::new())], false, "nothing to merge");
    }
}

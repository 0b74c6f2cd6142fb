//! The environment overrides of a [`Check`](super::Check): `NETPOLL_SEED`, `NETPOLL_SEEDS`,
//! `NETPOLL_FAULTS`, `NETPOLL_CHECK_DETERMINISM`, and for threaded checks `NETPOLL_SCHEDULE`.
//! Each bad value is an error that names the variable, the value and the accepted forms.

use std::ops::Range;

use netpoll_threads::Policy;

use crate::swarm::{FaultSpec, FORMS};

/// What a check runs, after the environment had its say.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    pub seeds: Range<u64>,
    pub faults: FaultSpec,
    pub check_determinism: bool,
    /// Who runs next at each switch point of a threaded check.
    pub schedule: Policy,
}

/// The accepted forms of `NETPOLL_SCHEDULE`.
pub const SCHEDULE_FORMS: &str =
    "random (uniform choice at every switch point) or pct:DEPTH:STEPS \
     (PCT priorities with DEPTH - 1 preemptions drawn from the first STEPS switch points, e.g. \
     pct:3:1000)";

/// Reads a schedule policy as `NETPOLL_SCHEDULE` or `schedule = "..."` gives it.
///
/// # Errors
/// Anything but `random` or `pct:DEPTH:STEPS` with both at least 1, in words.
pub(crate) fn parse_schedule(s: &str) -> Result<Policy, String> {
    s.trim()
        .parse::<Policy>()
        .map_err(|_| format!("{s:?} is not a schedule: expected {SCHEDULE_FORMS}"))
}

/// The accepted forms of `NETPOLL_SEEDS`.
pub const SEEDS_FORMS: &str = "A..B (seeds A to B-1), A..=B, or a count N (N seeds from the \
     check's first)";

/// Reads a seed range: `a..b`, `a..=b`, or a count `n` (from `first`).
///
/// # Errors
/// A malformed or empty range, in words.
pub(crate) fn parse_seeds(s: &str, first: u64) -> Result<Range<u64>, String> {
    let s = s.trim();
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| format!("{x:?} is not a seed (a u64)"))
    };
    let r = if let Some((a, b)) = s.split_once("..=") {
        let (a, b) = (num(a)?, num(b)?);
        let end = b.checked_add(1).ok_or("the range ends past u64::MAX")?;
        a..end
    } else if let Some((a, b)) = s.split_once("..") {
        num(a)?..num(b)?
    } else {
        let n = num(s)?;
        first..first.checked_add(n).ok_or("the range ends past u64::MAX")?
    };
    if r.is_empty() {
        return Err(format!("{s:?} is an empty range"));
    }
    Ok(r)
}

/// A boolean variable: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// `base` with the overrides that `var` returns applied (`var` is `std::env::var` in a run,
/// a table in the tests).
pub(crate) fn resolve(
    base: Settings,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Settings, String> {
    let mut s = base;
    if s.seeds.is_empty() {
        return Err(format!(
            "the check's seed range {:?} is empty: give it at least one seed",
            s.seeds
        ));
    }
    match (var("NETPOLL_SEED"), var("NETPOLL_SEEDS")) {
        (Some(a), Some(b)) => {
            return Err(format!(
                "NETPOLL_SEED={a:?} and NETPOLL_SEEDS={b:?} are both set: set one (a seed, or a \
                 range {SEEDS_FORMS})"
            ))
        }
        (Some(v), None) => {
            let seed = v.trim().parse::<u64>().map_err(|_| {
                format!("NETPOLL_SEED={v:?}: expected one seed, a u64 (for a range, NETPOLL_SEEDS={SEEDS_FORMS})")
            })?;
            s.seeds = seed..seed
                .checked_add(1)
                .ok_or("NETPOLL_SEED=u64::MAX: the last seed is u64::MAX - 1")?;
        }
        (None, Some(v)) => {
            s.seeds = parse_seeds(&v, s.seeds.start)
                .map_err(|e| format!("NETPOLL_SEEDS={v:?}: {e}; expected {SEEDS_FORMS}"))?;
        }
        (None, None) => {}
    }
    if let Some(v) = var("NETPOLL_FAULTS") {
        s.faults = FaultSpec::parse(&v).map_err(|e| {
            if e.contains("expected") {
                format!("NETPOLL_FAULTS={v:?}: {e}")
            } else {
                format!("NETPOLL_FAULTS={v:?}: {e}; expected {FORMS}")
            }
        })?;
    }
    if let Some(v) = var("NETPOLL_SCHEDULE") {
        s.schedule = parse_schedule(&v).map_err(|e| format!("NETPOLL_SCHEDULE={v:?}: {e}"))?;
    }
    if let Some(v) = var("NETPOLL_CHECK_DETERMINISM") {
        s.check_determinism = parse_bool(&v).ok_or_else(|| {
            format!(
                "NETPOLL_CHECK_DETERMINISM={v:?}: expected 1, true, yes, on, 0, false, no or off"
            )
        })?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            seeds: 0..100,
            faults: FaultSpec::None,
            check_determinism: false,
            schedule: Policy::Random,
        }
    }

    fn with(vars: &[(&str, &str)]) -> Result<Settings, String> {
        resolve(base(), |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn overrides() {
        assert_eq!(with(&[]).unwrap(), base());
        assert_eq!(with(&[("NETPOLL_SEED", "42")]).unwrap().seeds, 42..43);
        assert_eq!(with(&[("NETPOLL_SEEDS", "5..9")]).unwrap().seeds, 5..9);
        assert_eq!(with(&[("NETPOLL_SEEDS", "5..=9")]).unwrap().seeds, 5..10);
        assert_eq!(with(&[("NETPOLL_SEEDS", "10")]).unwrap().seeds, 0..10);
        assert_eq!(
            with(&[("NETPOLL_FAULTS", "chaos")]).unwrap().faults,
            FaultSpec::Chaos
        );
        assert!(
            with(&[("NETPOLL_CHECK_DETERMINISM", "1")])
                .unwrap()
                .check_determinism
        );
        assert_eq!(
            with(&[("NETPOLL_SCHEDULE", "pct:3:500")]).unwrap().schedule,
            Policy::Pct {
                depth: 3,
                steps: 500
            }
        );
        assert_eq!(
            with(&[("NETPOLL_SCHEDULE", " random ")]).unwrap().schedule,
            Policy::Random
        );
        assert!(
            !with(&[("NETPOLL_CHECK_DETERMINISM", "0")])
                .unwrap()
                .check_determinism
        );
    }

    #[test]
    fn bad_input_names_the_variable_and_the_forms() {
        for (k, v, want) in [
            ("NETPOLL_SEEDS", "9..3", "empty range"),
            ("NETPOLL_SEEDS", "3..3", "empty range"),
            ("NETPOLL_SEEDS", "a..b", "not a seed"),
            ("NETPOLL_SEEDS", "1-5", "A..B"),
            ("NETPOLL_SEEDS", "0", "empty range"),
            ("NETPOLL_SEED", "x", "expected one seed"),
            ("NETPOLL_SEED", "18446744073709551615", "u64::MAX"),
            ("NETPOLL_FAULTS", "sometimes", "expected none, chaos, swarm"),
            ("NETPOLL_FAULTS", "short_read=2", "probability"),
            ("NETPOLL_FAULTS", "", "empty fault spec"),
            ("NETPOLL_CHECK_DETERMINISM", "maybe", "expected 1, true"),
            ("NETPOLL_SCHEDULE", "fair", "expected random (uniform"),
            ("NETPOLL_SCHEDULE", "pct:0:100", "pct:DEPTH:STEPS"),
            ("NETPOLL_SCHEDULE", "pct:3", "pct:DEPTH:STEPS"),
            ("NETPOLL_SCHEDULE", "pct:3:x", "pct:DEPTH:STEPS"),
            ("NETPOLL_SCHEDULE", "", "not a schedule"),
        ] {
            let e = with(&[(k, v)]).unwrap_err();
            assert!(e.contains(k), "{k}={v}: {e}");
            assert!(e.contains(want), "{k}={v}: {e}");
        }
        let both = with(&[("NETPOLL_SEED", "1"), ("NETPOLL_SEEDS", "1..2")]).unwrap_err();
        assert!(both.contains("both set"), "{both}");
        let empty = resolve(
            Settings {
                seeds: 3..3,
                ..base()
            },
            |_| None,
        )
        .unwrap_err();
        assert!(empty.contains("empty"), "{empty}");
    }
}

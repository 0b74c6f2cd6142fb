//! Typed scenario parameters: every parameter is a bounded unsigned integer with a default, a
//! name the command line and the replay token use, and a line of help.

use std::fmt;

/// The declaration of one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// The name on the command line (`--param NAME=V`, or `--conns` for the common three).
    pub name: &'static str,
    /// The value when none is given.
    pub default: u64,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
    /// One line of help.
    pub help: &'static str,
}

impl ParamSpec {
    /// A parameter declaration.
    pub const fn new(
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
        help: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            default,
            min,
            max,
            help,
        }
    }
}

/// Connections: every scenario has it.
pub const CONNS: &str = "conns";
/// Messages per connection.
pub const MSGS: &str = "msgs";
/// Bytes per message.
pub const SIZE: &str = "size";

/// The largest total payload a run may move (`conns x msgs x size`, after any scenario
/// multiplier): beyond it a run is refused as absurd rather than left to exhaust memory.
pub const TOTAL_BYTES_MAX: u64 = 1 << 36;

/// A parameter value that breaks its declaration: a usage error (exit status 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError(pub String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamError {}

/// The values of one scenario's parameters, in the order of its declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    specs: &'static [ParamSpec],
    values: Vec<u64>,
}

impl Params {
    /// Every parameter at its default.
    pub fn defaults(specs: &'static [ParamSpec]) -> Params {
        Params {
            specs,
            values: specs.iter().map(|s| s.default).collect(),
        }
    }

    /// Values in declaration order (as a replay token carries them), checked.
    ///
    /// # Errors
    /// A wrong count or a value out of bounds.
    pub fn from_values(
        specs: &'static [ParamSpec],
        values: Vec<u64>,
    ) -> Result<Params, ParamError> {
        if values.len() != specs.len() {
            return Err(ParamError(format!(
                "expected {} parameter values, got {}",
                specs.len(),
                values.len()
            )));
        }
        let mut p = Params {
            specs,
            values: Vec::with_capacity(specs.len()),
        };
        for (s, v) in specs.iter().zip(values) {
            p.check(s, v)?;
            p.values.push(v);
        }
        Ok(p)
    }

    fn check(&self, s: &ParamSpec, v: u64) -> Result<(), ParamError> {
        if v < s.min || v > s.max {
            return Err(ParamError(format!(
                "--{} {v} is out of range: {} takes {}..={} ({})",
                s.name, s.name, s.min, s.max, s.help
            )));
        }
        Ok(())
    }

    /// Sets `name` to `value`.
    ///
    /// # Errors
    /// An unknown name, or a value out of bounds.
    pub fn set(&mut self, name: &str, value: u64) -> Result<(), ParamError> {
        let Some(i) = self.specs.iter().position(|s| s.name == name) else {
            let names: Vec<&str> = self.specs.iter().map(|s| s.name).collect();
            return Err(ParamError(format!(
                "unknown parameter {name:?}; this scenario takes: {}",
                names.join(", ")
            )));
        };
        self.check(&self.specs[i], value)?;
        self.values[i] = value;
        Ok(())
    }

    /// The value of `name`.
    ///
    /// # Panics
    /// If the scenario did not declare `name`: a bug in the scenario.
    pub fn get(&self, name: &str) -> u64 {
        match self.specs.iter().position(|s| s.name == name) {
            Some(i) => self.values[i],
            None => panic!("parameter {name:?} is not declared by this scenario"),
        }
    }

    /// The value of `name` if declared.
    pub fn try_get(&self, name: &str) -> Option<u64> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map(|i| self.values[i])
    }

    /// The values, in declaration order.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// The declarations.
    pub fn specs(&self) -> &'static [ParamSpec] {
        self.specs
    }

    /// `(name, value)` pairs in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.specs
            .iter()
            .map(|s| s.name)
            .zip(self.values.iter().copied())
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{n}={v}")?;
        }
        Ok(())
    }
}

/// The fault plan: 0 none (Linux as it behaves when idle), 1 [`netpoll_sim::FaultPlan::chaos`] (every
/// benign fault), 2 [`netpoll_sim::FaultPlan::swarm`] (a subset with weights drawn from the seed).
pub const FAULTS: ParamSpec = ParamSpec::new(
    "faults",
    0,
    0,
    2,
    "fault plan: 0 none, 1 chaos (every benign fault), 2 swarm (drawn from the seed)",
);

#[cfg(test)]
mod tests {
    use super::*;

    static SPECS: &[ParamSpec] = &[
        ParamSpec::new(CONNS, 10, 1, 100, "connections"),
        ParamSpec::new("window", 4, 1, 8, "window"),
    ];

    #[test]
    fn defaults_set_and_bounds() {
        let mut p = Params::defaults(SPECS);
        assert_eq!(p.values(), [10, 4]);
        p.set("window", 8).unwrap();
        assert_eq!(p.get("window"), 8);
        assert!(p
            .set("window", 9)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(p.set(CONNS, 0).is_err());
        assert!(p
            .set("nope", 1)
            .unwrap_err()
            .to_string()
            .contains("this scenario takes: conns, window"));
        assert_eq!(p.to_string(), "conns=10 window=8");
        assert_eq!(p.try_get("nope"), None);
    }

    #[test]
    fn from_values_checks_count_and_bounds() {
        assert!(Params::from_values(SPECS, vec![1, 2]).is_ok());
        assert!(Params::from_values(SPECS, vec![1]).is_err());
        assert!(Params::from_values(SPECS, vec![1, 2, 3]).is_err());
        assert!(Params::from_values(SPECS, vec![1000, 2]).is_err());
    }
}

//! The registry of workloads: the built-in ones (the echo engine's scenarios, `rt-echo`, the
//! canaries, the bug zoo) and any a user adds. `list`, `run`, `sweep`, `replay`, `trace`,
//! `shrink` and replay tokens all find workloads here, by name, and nowhere else.
//!
//! ```
//! use netpoll_scenarios::registry::Registry;
//! use netpoll_scenarios::run::{self, Request};
//! use netpoll_scenarios::workload::Kind;
//!
//! let registry = Registry::builtin();
//! let echo = registry.find("echo").unwrap();
//! let report = run::execute(&Request::sim(echo, echo.test_defaults(), 1));
//! assert_eq!(report.outcome(), "pass");
//!
//! // A failing run's token names its workload; the same registry reads it back.
//! let canary = registry.find("canary").unwrap();
//! assert_eq!(canary.kind(), Kind::Canary);
//! let failed = run::execute(&Request::sim(canary, canary.defaults(), 1));
//! let again = registry.from_token(&failed.request.token()).unwrap();
//! assert_eq!(run::execute(&again).outcome(), failed.outcome());
//! ```

use std::fmt;

use crate::params::Params;
use crate::token::Token;
use crate::workload::{Kind, ReplayError, Request, Workload};

/// Workloads by name, in `list` order.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: Vec<&'static dyn Workload>,
}

/// Why a workload cannot be added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError(pub String);

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RegistryError {}

impl Registry {
    /// A registry with nothing in it.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Every built-in workload: the engine's scenarios and `rt-echo`, then the canaries, then
    /// the bug zoo.
    pub fn builtin() -> Registry {
        let mut entries: Vec<&'static dyn Workload> = Vec::with_capacity(20);
        entries.extend(
            crate::scenario::REGISTRY
                .iter()
                .map(|s| s as &'static dyn Workload),
        );
        entries.push(&crate::rt_echo::RT_ECHO);
        entries.push(&crate::scenario::CANARY_SCENARIO);
        entries.push(&crate::rt_echo::RT_CANARY);
        entries.extend(crate::zoo::ZOO.iter().map(|z| z as &'static dyn Workload));
        entries.extend(
            crate::zoo::THREADED
                .iter()
                .map(|z| z as &'static dyn Workload),
        );
        Registry { entries }
    }

    /// Adds `w`, which lives as long as the process (registries are made once, at start-up).
    ///
    /// # Errors
    /// A name that is empty, longer than a replay token holds (255 bytes), has whitespace, or
    /// is taken; parameters whose defaults or test values do not fit their bounds.
    pub fn add(&mut self, w: impl Workload + 'static) -> Result<&mut Registry, RegistryError> {
        self.check(&w)?;
        self.entries.push(Box::leak(Box::new(w)));
        Ok(self)
    }

    /// Adds a workload that is already `'static` (a `static` item).
    ///
    /// # Errors
    /// As [`Registry::add`].
    pub fn add_static(&mut self, w: &'static dyn Workload) -> Result<&mut Registry, RegistryError> {
        self.check(w)?;
        self.entries.push(w);
        Ok(self)
    }

    fn check(&self, w: &dyn Workload) -> Result<(), RegistryError> {
        let name = w.name();
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_whitespace) {
            return Err(RegistryError(format!(
                "workload name {name:?}: a name is 1 to 255 bytes without whitespace"
            )));
        }
        if self.find(name).is_some() {
            return Err(RegistryError(format!(
                "a workload named {name:?} is already registered"
            )));
        }
        let mut seen = Vec::new();
        for s in w.params() {
            if seen.contains(&s.name) {
                return Err(RegistryError(format!(
                    "workload {name:?} declares parameter {:?} twice",
                    s.name
                )));
            }
            seen.push(s.name);
            if s.min > s.max || s.default < s.min || s.default > s.max {
                return Err(RegistryError(format!(
                    "workload {name:?}: parameter {:?} has default {} outside {}..={}",
                    s.name, s.default, s.min, s.max
                )));
            }
        }
        if w.params().len() > 255 {
            return Err(RegistryError(format!(
                "workload {name:?} has more than 255 parameters (a replay token holds 255)"
            )));
        }
        let mut p = Params::defaults(w.params());
        for &(n, v) in w.test_params() {
            p.set(n, v)
                .map_err(|e| RegistryError(format!("workload {name:?}: test parameters: {e}")))?;
        }
        Ok(())
    }

    /// The workload named `name`.
    pub fn find(&self, name: &str) -> Option<&'static dyn Workload> {
        self.entries.iter().copied().find(|w| w.name() == name)
    }

    /// Every workload, in `list` order.
    pub fn iter(&self) -> impl Iterator<Item = &'static dyn Workload> + '_ {
        self.entries.iter().copied()
    }

    /// The workloads of one kind, in `list` order (sweeps of the registry take
    /// [`Kind::Scenario`]).
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &'static dyn Workload> + '_ {
        self.iter().filter(move |w| w.kind() == kind)
    }

    /// The request a replay token describes.
    ///
    /// # Errors
    /// A corrupt or foreign token, a workload this registry does not have, or parameters that
    /// do not fit it.
    pub fn from_token(&self, text: &str) -> Result<Request, ReplayError> {
        let t = Token::decode(text).map_err(ReplayError::Token)?;
        let w = self
            .find(&t.scenario)
            .ok_or_else(|| ReplayError::Scenario(t.scenario.clone()))?;
        let params = Params::from_values(w.params(), t.values).map_err(ReplayError::Params)?;
        let mut req = Request::sim(w, params, t.seed);
        req.faults = t.faults;
        Ok(req)
    }
}

//! The echo engine's scenarios: each [`Scenario`] has a name, typed parameters with defaults,
//! a body (a [`Spec`] for the workload engine; the simulated kernel's configuration comes from
//! the same parameters, [`crate::workload::sim_config`]) and the invariants it is checked
//! against (every run: all the oracles of [`crate::oracle`]; the scenario picks which client
//! behaviour and which server features they meet). Each is a [`Workload`]; the
//! [`crate::registry`] holds them with the zoo's, `rt-echo` and the canaries.

use netpoll_realnet::RealNet;

use crate::engine::{self, ClientMode, Reconnect, Spec};
use crate::params::{ParamSpec, Params, CONNS, MSGS, SIZE};
use crate::raw_epoll::ServerConfig;
use crate::workload::{
    sim_config_for, sim_judged_by_loop, Backend, Kind, Report, Request, Run, Tracing, Workload,
};

// Where they were before the registry: the kernel configuration a scenario's parameters make,
// and the `faults` parameter.
pub use crate::params::FAULTS;
pub use crate::workload::sim_config;

/// A registered scenario.
#[derive(Debug)]
pub struct Scenario {
    /// The registry name (`netpoll-sim run NAME`).
    pub name: &'static str,
    /// One line: what it exercises.
    pub about: &'static str,
    /// What it checks beyond the oracles every run gets.
    pub invariants: &'static str,
    /// Its parameters; the first three are always `conns`, `msgs`, `size`.
    pub params: &'static [ParamSpec],
    /// Parameters for `cargo test` (small, so every scenario runs over several seeds quickly).
    pub test_params: &'static [(&'static str, u64)],
    /// Whether it makes sense on the real kernel. `accept-storm` does not: when Linux's accept
    /// queue overflows it drops the client's final ACK, the client believes it is connected,
    /// and the connection waits out minutes of SYN-ACK and data retransmissions (observed: a
    /// 2,000-client storm stalled for over a minute), which only measures Linux's timers.
    /// The simulated kernel's knobs (`split-pct`, `tcp-window`) are ignored on the real one.
    pub real_ok: bool,
    /// The workload for these parameters.
    pub spec: fn(&Params) -> Spec,
}

impl Workload for Scenario {
    fn name(&self) -> &str {
        self.name
    }
    fn about(&self) -> &str {
        self.about
    }
    fn invariants(&self) -> &str {
        self.invariants
    }
    fn params(&self) -> &'static [ParamSpec] {
        self.params
    }
    fn test_params(&self) -> &[(&'static str, u64)] {
        self.test_params
    }
    fn real_ok(&self) -> bool {
        self.real_ok
    }
    fn kind(&self) -> Kind {
        if self.name == CANARY_SCENARIO.name {
            Kind::Canary
        } else {
            Kind::Scenario
        }
    }
    fn run(&self, req: &Request, tracing: Tracing) -> Run {
        let mut spec = spec_for(self, req);
        spec.label_fds = !matches!(tracing, Tracing::Off);
        let (r, fingerprint, faults, records) = match req.backend {
            Backend::Real => {
                crate::workload::fd_limit();
                let k = RealNet::new();
                (engine::run(&k, &spec, req.seed), None, None, Vec::new())
            }
            Backend::Sim => {
                let k = sim_judged_by_loop(req);
                let trace = tracing.install(&k);
                let mut r = engine::run(&k, &spec, req.seed);
                r.verdict = crate::oracle::with_kernel_verdict(&k, r.verdict);
                let records = if trace { k.take_trace() } else { Vec::new() };
                (r, Some(k.fingerprint()), Some(k.fault_counts()), records)
            }
        };
        Run {
            report: Report {
                request: req.clone(),
                stats: r.stats,
                failure: r.verdict.err(),
                labels: r.labels,
                schedule: None,
                fingerprint,
                faults,
                phase: crate::swarm::Phase::Single,
            },
            trace: records,
        }
    }
}

/// The engine's workload for `req`, adjusted to what its kernel promises.
pub fn spec_for(s: &Scenario, req: &Request) -> Spec {
    let mut spec = (s.spec)(&req.params);
    if req.backend == Backend::Sim {
        let cfg = sim_config_for(req);
        spec.short_read_drains = cfg.faults.short_read == 0.0;
    }
    spec
}

const fn conns(d: u64) -> ParamSpec {
    ParamSpec::new(CONNS, d, 1, 1_000_000, "connections")
}
const fn msgs(d: u64) -> ParamSpec {
    ParamSpec::new(MSGS, d, 1, 1_000_000, "messages per connection")
}
const fn size(d: u64) -> ParamSpec {
    ParamSpec::new(SIZE, d, 1, 16 << 20, "bytes per message")
}
const WINDOW: ParamSpec = ParamSpec::new("window", 512, 1, 1_000_000, "clients connecting at once");
const SPLIT: ParamSpec = ParamSpec::new(
    "split-pct",
    0,
    0,
    100,
    "chance (%) that the network cuts a write in two segments",
);

/// The engine's echo workload for `p` (the registry's `spec` of scenarios that do not use the
/// engine is this too, unused).
pub fn base(p: &Params) -> Spec {
    let mut s = Spec::echo(p.get(CONNS) as usize, p.get(MSGS), p.get(SIZE));
    if let Some(w) = p.try_get("window") {
        s.connect_window = w as usize;
    }
    s
}

/// Echo's connect window is small by default: every connection stays open until all are done
/// either way, and a small window keeps the conversations in flight (and so the simulated
/// kernel's working set) small, which is what makes 100,000 connections fast.
static ECHO: &[ParamSpec] = &[
    conns(1000),
    msgs(10),
    size(64),
    ParamSpec::new("window", 16, 1, 1_000_000, "clients connecting at once"),
    SPLIT,
    FAULTS,
];

static RAW: &[ParamSpec] = &[
    conns(32),
    msgs(8),
    size(10_000),
    WINDOW,
    ParamSpec::new(
        "split-pct",
        30,
        0,
        100,
        "chance (%) that the network cuts a write in two segments",
    ),
    ParamSpec::new(
        "tcp-window",
        8192,
        1,
        1 << 30,
        "bytes one direction holds: small makes writes short",
    ),
    FAULTS,
];

const TCP_WINDOW: ParamSpec = ParamSpec::new(
    "tcp-window",
    2_621_440,
    1,
    1 << 30,
    "bytes one direction holds (simulated kernel)",
);

static HALF: &[ParamSpec] = &[
    conns(100),
    msgs(10),
    size(1000),
    WINDOW,
    SPLIT,
    TCP_WINDOW,
    FAULTS,
];

static RESET: &[ParamSpec] = &[
    conns(200),
    msgs(10),
    size(256),
    WINDOW,
    SPLIT,
    TCP_WINDOW,
    FAULTS,
];

static STORM: &[ParamSpec] = &[
    conns(2000),
    msgs(1),
    size(32),
    ParamSpec::new(
        "backlog",
        16,
        0,
        4096,
        "listen backlog (the queue holds backlog + 1)",
    ),
    ParamSpec::new(
        "batch",
        8,
        1,
        1_000_000,
        "connections the server accepts per turn",
    ),
    ParamSpec::new(
        "pause-us",
        200,
        0,
        1_000_000,
        "the server stops accepting this long after each batch",
    ),
    FAULTS,
];

static BACKPRESSURE: &[ParamSpec] = &[
    conns(8),
    msgs(4),
    size(4096),
    WINDOW,
    ParamSpec::new("factor", 256, 1, 4096, "answer bytes per request byte"),
    ParamSpec::new(
        "chunk",
        65536,
        1,
        1 << 20,
        "bytes a slow reader reads per tick",
    ),
    ParamSpec::new(
        "interval-us",
        1000,
        1,
        1_000_000,
        "time between a slow reader's ticks",
    ),
    ParamSpec::new(
        "tcp-window",
        262_144,
        1,
        1 << 30,
        "bytes one direction holds",
    ),
    FAULTS,
];

static SLOW: &[ParamSpec] = &[
    conns(100),
    msgs(5),
    size(100),
    WINDOW,
    ParamSpec::new(
        "stall-pct",
        30,
        0,
        100,
        "share of clients (%) that stop sending mid-message",
    ),
    ParamSpec::new(
        "deadline-ms",
        50,
        1,
        3_600_000,
        "the server's idle deadline",
    ),
    FAULTS,
];

static TIMERS: &[ParamSpec] = &[
    conns(10),
    msgs(10),
    size(64),
    WINDOW,
    ParamSpec::new("timers", 100_000, 1, 10_000_000, "deadlines armed"),
    ParamSpec::new(
        "span-ms",
        1000,
        1,
        3_600_000,
        "deadlines are spread over this much time",
    ),
    FAULTS,
];

/// The engine's scenarios, in `list` order (the [`crate::registry`] puts `rt-echo` after
/// them).
pub static REGISTRY: &[Scenario] = &[
    Scenario {
        name: "echo",
        about: "N connections x M request/response messages of S bytes, all connections open at once",
        invariants: "every byte echoed once and in order; all connections closed cleanly",
        params: ECHO,
        test_params: &[(CONNS, 50), (MSGS, 4), (SIZE, 64)],
        real_ok: true,
        spec: base,
    },
    Scenario {
        name: "raw-epoll",
        about: "the example raw epoll server (LT listener, ET connections, read until EAGAIN) under short writes and split segments",
        invariants: "no lost wakeup with partial reads and writes on both sides; every byte in order",
        params: RAW,
        test_params: &[(CONNS, 8), (MSGS, 4)],
        real_ok: true,
        spec: base,
    },
    Scenario {
        name: "half-close",
        about: "clients pipeline every message, shut down their writing half, and read the echo to end of file",
        invariants: "the server answers everything after the client's FIN, then closes; the client sees EOF only after the last byte",
        params: HALF,
        test_params: &[(CONNS, 20), (MSGS, 5), (SIZE, 3000)],
        real_ok: true,
        spec: |p| Spec { mode: ClientMode::HalfClose, ..base(p) },
    },
    Scenario {
        name: "reset",
        about: "each client resets its connection (SO_LINGER 0) at a seeded point, often mid-message",
        invariants: "the server notices every reset and closes the connection; no fd leaks; the prefix echoed was intact",
        params: RESET,
        test_params: &[(CONNS, 40), (MSGS, 4)],
        real_ok: true,
        spec: |p| Spec { mode: ClientMode::Reset, ..base(p) },
    },
    Scenario {
        name: "accept-storm",
        about: "every client connects at once, far beyond the listen backlog, to a server that accepts in paced batches",
        invariants: "dropped SYNs are retransmitted (and a connection that timed out or was reset unserved is made again after a jittered backoff, for up to ten minutes of virtual time) until every connection is accepted and served; the muted listener is re-armed by EPOLL_CTL_MOD",
        params: STORM,
        test_params: &[(CONNS, 200)],
        real_ok: false,
        spec: |p| {
            let mut s = base(p);
            s.connect_window = s.conns;
            s.reconnect = Some(Reconnect::default());
            s.server = ServerConfig {
                backlog: p.get("backlog") as i32,
                accept_batch: p.get("batch") as usize,
                accept_pause_ns: p.get("pause-us") * 1000,
                ..ServerConfig::default()
            };
            s
        },
    },
    Scenario {
        name: "backpressure",
        about: "large answers to slow readers: the server's writes hit EAGAIN, it queues, pauses reading, and resumes on EPOLLOUT",
        invariants: "every answer byte arrives in order; a paused connection is resumed without a new read edge",
        params: BACKPRESSURE,
        test_params: &[(CONNS, 3), (MSGS, 2), (SIZE, 1024), ("factor", 512), ("chunk", 32768)],
        real_ok: true,
        spec: |p| Spec {
            mode: ClientMode::SlowReader {
                chunk: p.get("chunk") as usize,
                interval_ns: p.get("interval-us") * 1000,
            },
            server: ServerConfig { reply_factor: p.get("factor") as u32, ..ServerConfig::default() },
            ..base(p)
        },
    },
    Scenario {
        name: "slow-clients",
        about: "some clients stop sending mid-message; the server's idle deadline closes them",
        invariants: "each stalled connection is closed at its deadline, at most one tick (1 ms) late and never early; active clients are never cut off",
        params: SLOW,
        test_params: &[(CONNS, 30)],
        real_ok: true,
        spec: |p| Spec {
            mode: ClientMode::Stall { pct: p.get("stall-pct") },
            server: ServerConfig {
                idle_timeout_ns: Some(p.get("deadline-ms") * 1_000_000),
                ..ServerConfig::default()
            },
            ..base(p)
        },
    },
    Scenario {
        name: "timer-storm",
        about: "100,000 deadlines (each firing cancels or moves another) while connections echo",
        invariants: "every timer fires once, in deadline order, at most one tick late and never early; cancelled ones never fire",
        params: TIMERS,
        test_params: &[(CONNS, 5), ("timers", 3000), ("span-ms", 200)],
        real_ok: true,
        spec: |p| Spec {
            timers: p.get("timers") as usize,
            timer_span_ns: p.get("span-ms") * 1_000_000,
            ..base(p)
        },
    },
];

static CANARY: &[ParamSpec] = &[conns(4), msgs(3), size(64), WINDOW, SPLIT, FAULTS];

/// A scenario that must fail: its server stops reading before `EAGAIN`. It proves that the
/// harness reports a lost wakeup, with a replay line (`cargo test` and the CLI tests run it).
pub static CANARY_SCENARIO: Scenario = Scenario {
    name: "canary",
    about: "FAILS ON PURPOSE: a server that reads 16 bytes per edge instead of until EAGAIN",
    invariants: "the lost-wakeup oracle must report the stranded connection",
    params: CANARY,
    test_params: &[],
    real_ok: false,
    spec: |p| Spec {
        server: ServerConfig {
            canary_read_once: Some(16),
            ..ServerConfig::default()
        },
        ..base(p)
    },
};

//! What the two echo examples share: their arguments, the message each client sends, and the
//! digests they print.

use std::process::exit;

/// Which kernel to run on.
#[derive(Clone, Copy, Debug)]
pub enum Arm {
    /// The simulated kernel, with this seed.
    Sim(u64),
    /// Real loopback.
    Real,
}

/// The parsed command line.
#[derive(Clone, Copy, Debug)]
pub struct Args {
    pub arm: Arm,
    pub conns: usize,
    /// The sim's fault plan.
    pub faults: Faults,
    /// `--workers N`: tokio's multi-thread runtime with N workers (on the sim, under
    /// `netpoll_interpose::run_threads`); 0 is the `current_thread` runtime.
    pub workers: usize,
}

/// `--faults`: which fault plan the simulated kernel runs under.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Faults {
    None,
    Chaos,
    Swarm,
    /// Linux's loopback timing (zero latency), no faults.
    Loopback,
    /// One knob of the chaos plan alone, at its chaos rate.
    Only(&'static str),
}

/// The chaos plan's knobs that `--faults <knob>` turns on alone, and two more: `edge`
/// (coalesced edges: only a write into an empty buffer wakes, `EdgePolicy::EmptyToNonEmpty`)
/// and `eintr_io` (blocking calls about to sleep fail with `EINTR`, at 0.2).
const KNOBS: [&str; 8] = [
    "short_read",
    "short_write",
    "split_write",
    "spurious",
    "eintr",
    "timer_first",
    "edge",
    "eintr_io",
];

impl Args {
    /// The simulated kernel these arguments ask for, if any.
    pub fn sim(&self) -> Option<netpoll_sim::Sim> {
        use netpoll_sim::{FaultPlan, SimConfig};
        let Arm::Sim(seed) = self.arm else {
            return None;
        };
        let cfg = match self.faults {
            Faults::None => SimConfig::default(),
            Faults::Loopback => SimConfig::linux_loopback(),
            Faults::Chaos => SimConfig {
                faults: FaultPlan::chaos(),
                ..SimConfig::default()
            },
            Faults::Swarm => SimConfig {
                faults: FaultPlan::swarm(seed),
                ..SimConfig::default()
            },
            Faults::Only(knob) => {
                let c = FaultPlan::chaos();
                let mut f = FaultPlan::none();
                match knob {
                    "short_read" => f.short_read = c.short_read,
                    "short_write" => f.short_write = c.short_write,
                    "split_write" => f.split_write = c.split_write,
                    "spurious" => f.spurious = c.spurious,
                    "eintr" => f.eintr = c.eintr,
                    "edge" => f.edge = netpoll_sim::EdgePolicy::EmptyToNonEmpty,
                    "eintr_io" => f.eintr_io = 0.2,
                    _ => {
                        f.timer_first = c.timer_first;
                        f.quantum_ns = c.quantum_ns;
                    }
                }
                SimConfig {
                    faults: f,
                    ..SimConfig::default()
                }
            }
        };
        Some(netpoll_sim::Sim::with_config(seed, cfg))
    }
}

const USAGE: &str = "usage: [--sim SEED | --real] [--conns N] [--faults PLAN] [--workers N]\n\
                     PLAN: none, chaos, swarm, loopback, or one chaos knob alone: short_read,\n\
                     short_write, split_write, spurious, eintr, timer_first, edge, eintr_io\n\
                     --workers N: tokio's multi-thread runtime (tokio_echo only)\n\
                     (default: --sim 1 --conns 10 --faults none, current_thread)";

/// Parses `std::env::args`; bad input prints a message and the usage, and exits with 2.
pub fn args() -> Args {
    let mut a = Args {
        arm: Arm::Sim(1),
        conns: 10,
        faults: Faults::None,
        workers: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--real" => a.arm = Arm::Real,
            "--sim" => a.arm = Arm::Sim(number(&flag, it.next())),
            "--conns" => a.conns = number(&flag, it.next()) as usize,
            "--workers" => {
                a.workers = number(&flag, it.next()) as usize;
                if a.workers == 0 || a.workers > 64 {
                    usage("--workers must be between 1 and 64");
                }
            }
            "--faults" => {
                a.faults = match it.next().as_deref() {
                    Some("none") => Faults::None,
                    Some("chaos") => Faults::Chaos,
                    Some("swarm") => Faults::Swarm,
                    Some("loopback") => Faults::Loopback,
                    Some(k) if KNOBS.contains(&k) => {
                        Faults::Only(KNOBS.into_iter().find(|n| *n == k).unwrap_or("eintr"))
                    }
                    Some(other) => usage(&format!("--faults: unknown plan {other:?}")),
                    None => usage("--faults needs a plan"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if a.conns == 0 {
        usage("--conns must be at least 1");
    }
    a
}

fn number(flag: &str, v: Option<String>) -> u64 {
    match v.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) => n,
        Some(Err(e)) => usage(&format!("{flag}: {e}")),
        None => usage(&format!("{flag} needs a number")),
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("error: {msg}\n{USAGE}");
    exit(2)
}

/// What client `i` sends: a few hundred bytes to a few kilobytes, different for each client.
pub fn message(i: usize) -> Vec<u8> {
    let len = 100 + (i * 7919) % 4000;
    (0..len).map(|k| (i.wrapping_mul(31) + k) as u8).collect()
}

/// FNV-1a, 64 bits: a digest that is the same on every machine and every run.
#[derive(Clone, Copy, Debug)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    pub fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn add_u64(&mut self, v: u64) {
        self.add(&v.to_le_bytes());
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

/// Prints the two closing lines: `results <hex>`, the digest of the application-level results
/// (the same on both arms), and `fingerprint <hex>`, which on the sim also covers the kernel's
/// whole call sequence (the same for two processes with one seed).
pub fn report(results: Digest, sim: Option<&netpoll_sim::Sim>) {
    let mut f = results;
    if let Some(sim) = sim {
        let (calls, hash) = sim.fingerprint();
        f.add_u64(calls);
        f.add_u64(hash);
        eprintln!(
            "sim: {calls} calls, {} virtual us, seed {}",
            sim.now_ns() / 1000,
            sim.seed()
        );
    }
    println!("results {:016x}", results.value());
    println!("fingerprint {:016x}", f.value());
}

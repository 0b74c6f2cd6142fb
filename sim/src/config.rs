//! The simulated kernel's knobs: buffer sizes, network latency, limits.
//!
//! Defaults follow a stock Linux 6.x on loopback where a number is observable (pipe capacity,
//! the unix socket send buffer and its per-write overhead, the accept queue rule); latency is
//! a seeded uniform draw so that different seeds order deliveries differently.

use std::fmt;

use crate::faults::{FaultPlan, Latency};

/// Configuration of a [`crate::Sim`] kernel. `Default` is the faithful Linux-like setting.
///
/// Checked when a kernel is built ([`SimConfig::validate`]).
///
/// # Examples
///
/// A process limited to five descriptors (0, 1 and 2 are taken, as in a real process), on a
/// network where every packet takes exactly 1 ms:
///
/// ```
/// use netpoll::sys::{errno::EMFILE, O_NONBLOCK};
/// use netpoll::Poller;
/// use netpoll_sim::{Sim, SimConfig};
///
/// let cfg = SimConfig {
///     max_fds: 5,
///     latency_ns: (1_000_000, 1_000_000),
///     ..SimConfig::default()
/// };
/// let sim = Sim::try_with_config(1, cfg)?;
/// let [r, w] = sim.pipe2(O_NONBLOCK)?;
/// assert_eq!((r, w), (3, 4));
/// assert_eq!(sim.eventfd(0, 0).unwrap_err().raw_os_error(), Some(EMFILE));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Largest number of open descriptors (`RLIMIT_NOFILE`); beyond it calls fail with `EMFILE`.
    pub max_fds: usize,
    /// Lowest descriptor number handed out. A real process has 0, 1 and 2 open; so does this one.
    pub first_fd: i32,
    /// `SO_SNDBUF` of a unix stream socket (Linux: `net.core.wmem_default`, 212992).
    pub unix_sndbuf: usize,
    /// Pipe capacity in 4096-byte pages (Linux: 16, i.e. 65536 bytes).
    pub pipe_pages: usize,
    /// Bytes one direction of a TCP connection holds (in flight plus unread) before `write`
    /// returns `EAGAIN` (Linux on loopback: about 3.9 MB, the grown send buffer plus the peer's
    /// receive buffer; it varies from run to run there). At most [`MAX_TCP_WINDOW`].
    pub tcp_window: usize,
    /// TCP maximum segment size on loopback: larger writes travel as several segments.
    pub tcp_mss: usize,
    /// `net.ipv4.tcp_mem`: the machine-wide TCP memory thresholds, in 4096-byte pages, over the
    /// bytes queued in every TCP socket: below the first, no limit; above the second, memory
    /// pressure (a socket above its fair share gets no more until the total falls below the
    /// first); above the third, the hard limit (sends are moderated, arriving segments beyond
    /// a minimum per socket are dropped and retransmitted). Linux derives them from the
    /// machine's memory ([`SimConfig::tcp_mem_for`]); the default is the figure of a 24 GiB
    /// machine, `287892 383858 575784` (2.36 GB hard). See `kernel/tcp/mem.rs`.
    pub tcp_mem: [u64; 3],
    /// One-way network latency, drawn uniformly from this range for each packet (ns).
    pub latency_ns: (u64, u64),
    /// Initial SYN retransmission timeout when a listener's accept queue is full (Linux: 1 s).
    pub syn_rto_ns: u64,
    /// SYN retransmissions before `connect` fails with `ETIMEDOUT` (Linux: `tcp_syn_retries`, 6).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions for a handshake the accept queue has no room for, before the
    /// request is dropped and the client reset (Linux: `tcp_synack_retries`, 5).
    pub synack_retries: u32,
    /// Largest listen backlog (`net.core.somaxconn`, 4096).
    pub somaxconn: usize,
    /// Faults to inject (none by default).
    pub faults: FaultPlan,
    /// What the kernel checks on its own (all on by default; see [`crate::oracle`]).
    pub oracles: crate::oracle::Oracles,
    /// A capacity hint, not a limit: about how many TCP connections the run will have open at
    /// once (0, the default: no hint). The kernel sizes its per-connection tables (descriptors,
    /// open files, epoll items, connections) for that many before the run starts, so that they
    /// never grow by copying while it runs; memory reserved and never touched costs no resident
    /// memory. It changes nothing a run does or reports. At most [`SimConfig::max_fds`] and
    /// [`MAX_EXPECTED_CONNS`]; a hint below [`MIN_EXPECTED_CONNS`] is ignored.
    ///
    /// ```
    /// use netpoll_sim::{Sim, SimConfig};
    ///
    /// let cfg = SimConfig { expected_conns: 10_000, ..SimConfig::default() };
    /// let sim = Sim::try_with_config(1, cfg)?;
    /// # drop(sim);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub expected_conns: usize,
}

/// The smallest [`SimConfig::expected_conns`] the kernel acts on: 1,024 connections. Smaller
/// tables cost next to nothing to grow, and sizing them ahead only moves blocks around in
/// `malloc`'s heap: in a sweep of 10-connection runs, one per seed on a worker thread, that made
/// the thread's heap shrink and grow back at the end of every run (measured 20% slower).
pub const MIN_EXPECTED_CONNS: usize = 1024;

/// The largest [`SimConfig::expected_conns`]: 4,194,304 connections (about 2.5 GiB of address
/// space reserved, none of it resident until used), so that a mistaken hint is a configuration
/// error rather than a failed allocation.
pub const MAX_EXPECTED_CONNS: usize = 1 << 22;

impl SimConfig {
    /// The connections to size the kernel's tables for: [`SimConfig::expected_conns`], or 0
    /// below [`MIN_EXPECTED_CONNS`].
    pub(crate) fn reserved_conns(&self) -> usize {
        if self.expected_conns >= MIN_EXPECTED_CONNS {
            self.expected_conns
        } else {
            0
        }
    }

    /// Linux's loopback timing: packets cross the network in zero time, so that, with
    /// [`crate::Sim::settle`] called after each call (as `netpoll-interpose` does), data is
    /// readable at the peer before `write` returns and a loopback `connect` has completed
    /// before it returns `EINPROGRESS`, as on Linux. Programs and tests written against real
    /// loopback assume this. The seed still drives ports and faults, but no longer reorders
    /// deliveries: the default latency model (or a fault plan's `latency`) is the way to explore
    /// those schedules.
    pub fn linux_loopback() -> SimConfig {
        SimConfig {
            latency_ns: (0, 0),
            ..SimConfig::default()
        }
    }
}

/// The free buffer pages (`nr_free_buffer_pages()`) of the 24 GiB machine the project's figures
/// are taken on: [`SimConfig::tcp_mem_for`] of it gives that machine's `tcp_mem`, `287892 383858
/// 575784`. A fixed number, not the host's: a run must not depend on where it runs.
pub const DEFAULT_FREE_BUFFER_PAGES: u64 = 6_141_728;

/// The largest `tcp_mem` threshold accepted, in pages (2^40 pages: 4 EiB of bytes, so that the
/// limits in bytes fit 64 bits).
pub const MAX_TCP_MEM_PAGES: u64 = 1 << 40;

impl SimConfig {
    /// `net.ipv4.tcp_mem` as Linux sets it at boot (`tcp_init_mem`) on a machine with
    /// `free_buffer_pages` pages of free low memory: a sixteenth of them (at least 128 pages) is
    /// the pressure threshold, three quarters of that the low one, twice the low one the hard
    /// limit.
    ///
    /// # Examples
    /// ```
    /// use netpoll_sim::{SimConfig, DEFAULT_FREE_BUFFER_PAGES};
    ///
    /// // What `cat /proc/sys/net/ipv4/tcp_mem` shows on a 24 GiB machine.
    /// assert_eq!(SimConfig::tcp_mem_for(DEFAULT_FREE_BUFFER_PAGES), [287_892, 383_858, 575_784]);
    /// assert_eq!(SimConfig::default().tcp_mem, [287_892, 383_858, 575_784]);
    /// // A tiny machine still gets 128 pages.
    /// assert_eq!(SimConfig::tcp_mem_for(0), [96, 128, 192]);
    /// ```
    pub const fn tcp_mem_for(free_buffer_pages: u64) -> [u64; 3] {
        let limit = if free_buffer_pages / 16 > 128 {
            free_buffer_pages / 16
        } else {
            128
        };
        let low = limit / 4 * 3;
        [low, limit, low * 2]
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            max_fds: 1 << 20,
            first_fd: 3,
            unix_sndbuf: 212_992,
            pipe_pages: 16,
            tcp_window: 3_932_160,
            tcp_mss: 65_483,
            tcp_mem: SimConfig::tcp_mem_for(DEFAULT_FREE_BUFFER_PAGES),
            latency_ns: (5_000, 50_000),
            faults: FaultPlan::default(),
            syn_rto_ns: 1_000_000_000,
            syn_retries: 6,
            synack_retries: 5,
            somaxconn: 4096,
            oracles: crate::oracle::Oracles::default(),
            expected_conns: 0,
        }
    }
}

/// The longest delay any knob may ask for (one hour of virtual time, in nanoseconds): a packet's
/// latency, a latency tail, the delivery quantum, the SYN retransmission timeout. Far beyond
/// anything a loopback network does, and small enough that no sum of them overflows the clock.
pub const MAX_DELAY_NS: u64 = 3_600 * 1_000_000_000;

/// What is wrong with a [`SimConfig`], a [`FaultPlan`] or a [`Latency`]: the field (as a path,
/// e.g. `faults.latency.p_slow`), the value it holds, and the rule it breaks.
///
/// Returned by [`SimConfig::validate`], [`FaultPlan::validate`], [`Latency::validate`] and
/// [`crate::Sim::try_with_config`]; it converts into an [`std::io::Error`] of kind
/// `InvalidInput`.
///
/// ```
/// use netpoll_sim::{FaultPlan, Latency, SimConfig};
///
/// let cfg = SimConfig {
///     faults: FaultPlan {
///         latency: Some(Latency::Bimodal { fast: 1_000, slow: 9_000, p_slow: f64::NAN }),
///         ..FaultPlan::none()
///     },
///     ..SimConfig::default()
/// };
/// let e = cfg.validate().unwrap_err();
/// assert_eq!(e.field(), "faults.latency.p_slow");
/// assert!(e.to_string().contains("a probability must be a number from 0 to 1"), "{e}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    value: String,
    rule: &'static str,
}

impl ConfigError {
    fn new(field: impl Into<String>, value: impl fmt::Debug, rule: &'static str) -> ConfigError {
        ConfigError {
            field: field.into(),
            value: format!("{value:?}"),
            rule,
        }
    }

    fn within(mut self, parent: &str) -> ConfigError {
        self.field = format!("{parent}.{}", self.field);
        self
    }

    /// The offending field, as a path from the value validated (`first_fd`,
    /// `faults.eintr`, `faults.latency.base`, ...).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the field breaks.
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.rule)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for std::io::Error {
    fn from(e: ConfigError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

const PROBABILITY: &str = "a probability must be a number from 0 to 1";
const DELAY: &str = "a delay must be at most MAX_DELAY_NS (one hour)";

fn probability(field: &str, p: f64) -> Result<(), ConfigError> {
    // NaN fails both comparisons; infinities fail one.
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(ConfigError::new(field, p, PROBABILITY))
    }
}

fn delay(field: &str, ns: u64) -> Result<(), ConfigError> {
    if ns <= MAX_DELAY_NS {
        Ok(())
    } else {
        Err(ConfigError::new(field, ns, DELAY))
    }
}

/// The largest `tcp_window` (1 GiB): a direction's byte counts fit in 32 bits.
pub const MAX_TCP_WINDOW: usize = 1 << 30;

fn at_least_one(field: &str, n: usize) -> Result<(), ConfigError> {
    if n >= 1 {
        Ok(())
    } else {
        Err(ConfigError::new(field, n, "must be at least 1"))
    }
}

impl Latency {
    /// Checks the distribution: every delay (for `Exponential`, `base` plus its capped tail of
    /// 100 × `mean_extra`) at most [`MAX_DELAY_NS`], `Uniform`'s ends in order, `p_slow` a
    /// probability.
    ///
    /// # Errors
    /// The first field that breaks a rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Latency::Uniform(lo, hi) => {
                delay("Uniform.1", hi)?;
                if lo > hi {
                    return Err(ConfigError::new(
                        "Uniform",
                        (lo, hi),
                        "the range's low end must not exceed its high end",
                    ));
                }
                Ok(())
            }
            Latency::Exponential { base, mean_extra } => {
                delay("base", base)?;
                let worst = mean_extra
                    .checked_mul(100)
                    .and_then(|tail| tail.checked_add(base));
                match worst {
                    Some(w) if w <= MAX_DELAY_NS => Ok(()),
                    _ => Err(ConfigError::new(
                        "mean_extra",
                        mean_extra,
                        "base + 100 x mean_extra (the tail's cap) must be at most MAX_DELAY_NS \
                         (one hour)",
                    )),
                }
            }
            Latency::Bimodal { fast, slow, p_slow } => {
                delay("fast", fast)?;
                delay("slow", slow)?;
                probability("p_slow", p_slow)
            }
        }
    }
}

impl FaultPlan {
    /// Checks the plan: every probability a number from 0 to 1 (not NaN, not infinite), the
    /// latency distribution ([`Latency::validate`]) and `quantum_ns` at most [`MAX_DELAY_NS`].
    ///
    /// # Errors
    /// The first field that breaks a rule.
    ///
    /// # Examples
    /// ```
    /// use netpoll_sim::FaultPlan;
    ///
    /// assert!(FaultPlan::chaos().validate().is_ok());
    /// let e = FaultPlan { eintr: 1.5, ..FaultPlan::none() }.validate().unwrap_err();
    /// assert_eq!(e.to_string(), "eintr = 1.5: a probability must be a number from 0 to 1");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let FaultPlan {
            short_read,
            short_write,
            split_write,
            latency,
            spurious,
            eintr,
            reset,
            accept_abort,
            timer_first,
            quantum_ns,
            edge: _,
            cost,
            vary: _,
            drop_event,
            drop_event_max: _,
            eintr_io,
            emfile,
            enfile,
            enobufs,
            enomem_file,
            enomem,
        } = self;
        for (field, p) in [
            ("short_read", short_read),
            ("short_write", short_write),
            ("split_write", split_write),
            ("spurious", spurious),
            ("eintr", eintr),
            ("reset", reset),
            ("accept_abort", accept_abort),
            ("timer_first", timer_first),
            ("drop_event", drop_event),
            ("eintr_io", eintr_io),
            ("emfile", emfile),
            ("enfile", enfile),
            ("enobufs", enobufs),
            ("enomem_file", enomem_file),
            ("enomem", enomem),
        ] {
            probability(field, *p)?;
        }
        if let Some(l) = latency {
            l.validate().map_err(|e| e.within("latency"))?;
        }
        if let Some(c) = cost {
            if let Some(l) = &c.call {
                l.validate().map_err(|e| e.within("cost.call"))?;
            }
            if let Some(l) = &c.turn {
                l.validate().map_err(|e| e.within("cost.turn"))?;
            }
        }
        delay("quantum_ns", *quantum_ns)
    }
}

impl SimConfig {
    /// Checks the configuration: `first_fd` not negative and at most `max_fds`, `max_fds` a
    /// descriptor number (at most `i32::MAX`), buffer sizes, the MSS and the pipe capacity at
    /// least 1 (and the pipe's bytes within `usize`), `tcp_mem`'s thresholds in order and at most
    /// [`MAX_TCP_MEM_PAGES`], the latency range in order and every delay at most [`MAX_DELAY_NS`], and the fault plan ([`FaultPlan::validate`]).
    /// [`crate::Sim::try_with_config`] calls it; [`crate::Sim::with_config`] panics with its
    /// message.
    ///
    /// # Errors
    /// The first field that breaks a rule.
    ///
    /// # Examples
    /// ```
    /// use netpoll_sim::SimConfig;
    ///
    /// assert!(SimConfig::default().validate().is_ok());
    /// let e = SimConfig { first_fd: -5, ..SimConfig::default() }.validate().unwrap_err();
    /// assert_eq!(e.field(), "first_fd");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.first_fd < 0 {
            return Err(ConfigError::new(
                "first_fd",
                self.first_fd,
                "descriptor numbers are not negative",
            ));
        }
        if self.max_fds > i32::MAX as usize {
            return Err(ConfigError::new(
                "max_fds",
                self.max_fds,
                "descriptor numbers must fit an i32 (at most 2147483647)",
            ));
        }
        if self.first_fd as usize > self.max_fds {
            return Err(ConfigError::new(
                "first_fd",
                self.first_fd,
                "the lowest descriptor number must not exceed max_fds",
            ));
        }
        if self.expected_conns > self.max_fds.min(MAX_EXPECTED_CONNS) {
            return Err(ConfigError::new(
                "expected_conns",
                self.expected_conns,
                "the capacity hint must not exceed max_fds (each connection needs a descriptor) \
                 nor MAX_EXPECTED_CONNS (4194304)",
            ));
        }
        at_least_one("unix_sndbuf", self.unix_sndbuf)?;
        at_least_one("pipe_pages", self.pipe_pages)?;
        if self.pipe_pages.checked_mul(4096).is_none() {
            return Err(ConfigError::new(
                "pipe_pages",
                self.pipe_pages,
                "the pipe's capacity in bytes (pages x 4096) must fit a usize",
            ));
        }
        at_least_one("tcp_window", self.tcp_window)?;
        if self.tcp_window > MAX_TCP_WINDOW {
            return Err(ConfigError::new(
                "tcp_window",
                self.tcp_window,
                "must be at most 1 GiB (1073741824), as Linux's largest socket buffer",
            ));
        }
        at_least_one("tcp_mss", self.tcp_mss)?;
        let [low, pressure, high] = self.tcp_mem;
        if high > MAX_TCP_MEM_PAGES {
            return Err(ConfigError::new(
                "tcp_mem",
                self.tcp_mem,
                "thresholds are pages and must be at most MAX_TCP_MEM_PAGES (2^40)",
            ));
        }
        if !(low <= pressure && pressure <= high) {
            return Err(ConfigError::new(
                "tcp_mem",
                self.tcp_mem,
                "the three thresholds (low, pressure, hard limit) must not decrease",
            ));
        }
        let (lo, hi) = self.latency_ns;
        delay("latency_ns.1", hi)?;
        if lo > hi {
            return Err(ConfigError::new(
                "latency_ns",
                self.latency_ns,
                "the range's low end must not exceed its high end",
            ));
        }
        delay("syn_rto_ns", self.syn_rto_ns)?;
        self.faults.validate().map_err(|e| e.within("faults"))
    }
}

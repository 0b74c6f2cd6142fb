//! Differential property test: random sequences of operations on socketpairs, pipes, eventfds
//! and epoll instances, applied step by step to real Linux (`RealNet`) and to the simulated
//! kernel (`Sim`); every result must be the same. Proptest shrinks a mismatch to a minimal
//! sequence.
//!
//! Descriptors are named by their index in the list of descriptors each arm has open (so numbering
//! differences do not matter); results carry no descriptor numbers. Writes are small (at most
//! 300 bytes, at most ~40 of them), so buffers never fill and read counts must agree exactly.
//! No TCP: its timing on the real kernel is not deterministic.
//!
//! `PROPTEST_CASES` sets the number of cases (default 256), `PROPTEST_RNG_SEED` the seed that
//! draws them (default fixed: `netpoll_fuzzops::seeded`); `NETPOLL_SEED` the sim's seed. A failure
//! prints the command that replays it.

use std::fmt::Write as _;

use netpoll::sys::*;
use netpoll::{EpollEvent, Events, Fd, Poller};
use netpoll_fuzzops::seeded;
use netpoll_realnet::RealNet;
use netpoll_sim::Sim;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sock,
    PipeR,
    PipeW,
    Efd,
    Epoll,
}

#[derive(Clone, Debug)]
enum Op {
    Socketpair,
    Pipe,
    Eventfd {
        init: u32,
        semaphore: bool,
    },
    Epoll,
    /// `epoll_ctl` on the `ep`-th open epoll instance, for the `fd`-th open descriptor.
    Ctl {
        ep: usize,
        op: i32,
        fd: usize,
        events: Events,
        data: u64,
    },
    /// Writes `len` bytes (8 bytes holding `len` itself to an eventfd).
    Write {
        fd: usize,
        len: usize,
    },
    Read {
        fd: usize,
        len: usize,
    },
    Shutdown {
        fd: usize,
        how: i32,
    },
    Close {
        fd: usize,
    },
    Dup {
        fd: usize,
    },
    /// `epoll_wait(timeout 0)` on the `ep`-th epoll instance with `max` entries.
    Wait {
        ep: usize,
        max: usize,
    },
}

fn interest() -> impl Strategy<Value = Events> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0..16u8,
    )
        .prop_map(|(i, o, r, et, os, x)| {
            let mut e = Events::NONE;
            if i {
                e |= Events::IN;
            }
            if o {
                e |= Events::OUT;
            }
            if r {
                e |= Events::RDHUP;
            }
            if et {
                e |= Events::ET;
            }
            if os {
                e |= Events::ONESHOT;
            }
            if x == 0 {
                e |= Events::EXCLUSIVE;
            }
            e
        })
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..12usize;
    prop_oneof![
        2 => Just(Op::Socketpair),
        2 => Just(Op::Pipe),
        1 => (0..3u32, any::<bool>()).prop_map(|(init, semaphore)| Op::Eventfd { init, semaphore }),
        2 => Just(Op::Epoll),
        6 => (idx.clone(), prop_oneof![4 => Just(EPOLL_CTL_ADD), 2 => Just(EPOLL_CTL_MOD), 1 => Just(EPOLL_CTL_DEL)],
              idx.clone(), interest(), 0..8u64)
            .prop_map(|(ep, op, fd, events, data)| Op::Ctl { ep, op, fd, events, data }),
        4 => (idx.clone(), 1..300usize).prop_map(|(fd, len)| Op::Write { fd, len }),
        3 => (idx.clone(), 1..512usize).prop_map(|(fd, len)| Op::Read { fd, len }),
        1 => (idx.clone(), 0..3i32).prop_map(|(fd, how)| Op::Shutdown { fd, how }),
        1 => idx.clone().prop_map(|fd| Op::Close { fd }),
        1 => idx.clone().prop_map(|fd| Op::Dup { fd }),
        5 => (idx, 1..5usize).prop_map(|(ep, max)| Op::Wait { ep, max }),
    ]
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => netpoll_sim::trace::errno_name(n),
        None => e.to_string(),
    }
}

/// One arm's state: the descriptors it has open, in creation order, with their kinds.
struct Arm<P> {
    p: P,
    open: Vec<(Fd, Kind)>,
}

impl<P: Poller> Arm<P> {
    fn pick(&self, i: usize) -> Option<(usize, Fd, Kind)> {
        if self.open.is_empty() {
            return None;
        }
        let i = i % self.open.len();
        Some((i, self.open[i].0, self.open[i].1))
    }

    fn pick_epoll(&self, i: usize) -> Option<Fd> {
        let eps: Vec<Fd> = self
            .open
            .iter()
            .filter(|e| e.1 == Kind::Epoll)
            .map(|e| e.0)
            .collect();
        (!eps.is_empty()).then(|| eps[i % eps.len()])
    }

    fn created(&mut self, r: std::io::Result<Vec<Fd>>, kinds: &[Kind]) -> String {
        match r {
            Ok(fds) => {
                let first = self.open.len();
                for (fd, &k) in fds.iter().zip(kinds) {
                    self.open.push((*fd, k));
                }
                format!("Ok(new #{first}..#{})", self.open.len() - 1)
            }
            Err(e) => format!("Err({})", errno_name(&e)),
        }
    }

    /// Applies `op`; returns its normalised result.
    fn apply(&mut self, op: &Op, step: usize) -> String {
        let p = &self.p;
        match *op {
            Op::Socketpair => {
                let r = p.socketpair(SOCK_NONBLOCK).map(|x| x.to_vec());
                self.created(r, &[Kind::Sock, Kind::Sock])
            }
            Op::Pipe => {
                let r = p.pipe2(O_NONBLOCK).map(|x| x.to_vec());
                self.created(r, &[Kind::PipeR, Kind::PipeW])
            }
            Op::Eventfd { init, semaphore } => {
                let flags = EFD_NONBLOCK | if semaphore { EFD_SEMAPHORE } else { 0 };
                let r = p.eventfd(init, flags).map(|x| vec![x]);
                self.created(r, &[Kind::Efd])
            }
            Op::Epoll => {
                let r = p.epoll_create1(EPOLL_CLOEXEC).map(|x| vec![x]);
                self.created(r, &[Kind::Epoll])
            }
            Op::Ctl {
                ep,
                op,
                fd,
                events,
                data,
            } => {
                let (Some(ep), Some((_, fd, _))) = (self.pick_epoll(ep), self.pick(fd)) else {
                    return "skip".into();
                };
                let ev = EpollEvent::new(events, data);
                match p.epoll_ctl(ep, op, fd, Some(ev)) {
                    Ok(()) => "Ok".into(),
                    Err(e) => format!("Err({})", errno_name(&e)),
                }
            }
            Op::Write { fd, len } => {
                let Some((_, fd, kind)) = self.pick(fd) else {
                    return "skip".into();
                };
                let buf: Vec<u8> = if kind == Kind::Efd {
                    (len as u64).to_ne_bytes().to_vec()
                } else {
                    vec![step as u8; len]
                };
                match p.write(fd, &buf) {
                    Ok(n) => format!("Ok({n})"),
                    Err(e) => format!("Err({})", errno_name(&e)),
                }
            }
            Op::Read { fd, len } => {
                let Some((_, fd, kind)) = self.pick(fd) else {
                    return "skip".into();
                };
                let len = if kind == Kind::Efd { len.max(8) } else { len };
                let mut buf = vec![0u8; len];
                match p.read(fd, &mut buf) {
                    Ok(n) => {
                        let mut s = format!("Ok({n}: ");
                        // Run-length summary of the bytes: which writes they came from.
                        let mut i = 0;
                        while i < n {
                            let b = buf[i];
                            let mut j = i;
                            while j < n && buf[j] == b {
                                j += 1;
                            }
                            let _ = write!(s, "{b}x{} ", j - i);
                            i = j;
                        }
                        s.push(')');
                        s
                    }
                    Err(e) => format!("Err({})", errno_name(&e)),
                }
            }
            Op::Shutdown { fd, how } => {
                let Some((_, fd, _)) = self.pick(fd) else {
                    return "skip".into();
                };
                match p.shutdown(fd, how) {
                    Ok(()) => "Ok".into(),
                    Err(e) => format!("Err({})", errno_name(&e)),
                }
            }
            Op::Close { fd } => {
                let Some((i, fd, _)) = self.pick(fd) else {
                    return "skip".into();
                };
                let r = p.close(fd);
                self.open.remove(i);
                match r {
                    Ok(()) => "Ok".into(),
                    Err(e) => format!("Err({})", errno_name(&e)),
                }
            }
            Op::Dup { fd } => {
                let Some((_, fd, kind)) = self.pick(fd) else {
                    return "skip".into();
                };
                let r = p.dup(fd).map(|x| vec![x]);
                self.created(r, &[kind])
            }
            Op::Wait { ep, max } => {
                let Some(ep) = self.pick_epoll(ep) else {
                    return "skip".into();
                };
                let mut evs = vec![EpollEvent::EMPTY; max];
                match p.epoll_wait(ep, &mut evs, 0) {
                    Ok(n) => {
                        let v: Vec<(u64, Events)> =
                            evs[..n].iter().map(|e| (e.data, e.events)).collect();
                        format!("Ok({v:?})")
                    }
                    Err(e) => format!("Err({})", errno_name(&e)),
                }
            }
        }
    }
}

/// `NETPOLL_SEED` (decimal or `0x` hex), or the conformance suite's default.
fn seed() -> u64 {
    let Ok(s) = std::env::var("NETPOLL_SEED") else {
        return 0x5EED_0001;
    };
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .unwrap_or_else(|_| panic!("NETPOLL_SEED={s:?} is not a u64"))
}

/// Every random sequence starts with these, so that few ops are skipped for want of a target.
const PRELUDE: [Op; 5] = [
    Op::Epoll,
    Op::Socketpair,
    Op::Pipe,
    Op::Eventfd {
        init: 1,
        semaphore: false,
    },
    Op::Epoll,
];

/// Runs `ops` on both kernels; `Err` describes the first mismatch.
fn run(ops: &[Op]) -> Result<(), String> {
    let mut real = Arm {
        p: RealNet::new(),
        open: Vec::new(),
    };
    let seed = seed();
    // Linux has no oracles: the sim arm runs without them.
    let cfg = netpoll_sim::SimConfig {
        oracles: netpoll_sim::Oracles::off(),
        ..Default::default()
    };
    let mut sim = Arm {
        p: Sim::with_config(seed, cfg),
        open: Vec::new(),
    };
    let mut history = String::new();
    for (i, op) in ops.iter().enumerate() {
        let r = real.apply(op, i);
        let s = sim.apply(op, i);
        let _ = writeln!(history, "  #{i:2} {op:?} -> {r}");
        if r != s {
            return Err(format!(
                "kernels differ at op #{i} {op:?} (sim seed {seed}; random sequences start with a fixed 5-op prelude):\n  real: {r}\n  sim:  {s}\nsequence and real results:\n{history}"
            ));
        }
    }
    if std::env::var_os("DIFFERENTIAL_SHOW").is_some() {
        println!("sequence:\n{history}");
    }
    Ok(())
}

#[test]
fn real_and_sim_agree_on_random_sequences() {
    let mut runner = TestRunner::new(seeded::config(256));
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let all: Vec<Op> = PRELUDE.iter().cloned().chain(ops).collect();
        run(&all).map_err(proptest::test_runner::TestCaseError::fail)
    });
    if let Err(e) = result {
        let replay = seeded::replay_line(
            "netpoll",
            "differential",
            "real_and_sim_agree_on_random_sequences",
        );
        panic!("{e}\n{replay}");
    }
}

/// A fixed sequence that exercises every kind of op, so the test checks something even with
/// `PROPTEST_CASES=0`.
#[test]
fn fixed_sequence_agrees() {
    let ops = vec![
        Op::Socketpair,
        Op::Pipe,
        Op::Eventfd {
            init: 1,
            semaphore: true,
        },
        Op::Epoll,
        Op::Ctl {
            ep: 0,
            op: EPOLL_CTL_ADD,
            fd: 1,
            events: Events::IN | Events::RDHUP,
            data: 1,
        },
        Op::Ctl {
            ep: 0,
            op: EPOLL_CTL_ADD,
            fd: 2,
            events: Events::IN | Events::ET,
            data: 2,
        },
        Op::Ctl {
            ep: 0,
            op: EPOLL_CTL_ADD,
            fd: 4,
            events: Events::IN | Events::ONESHOT,
            data: 4,
        },
        Op::Write { fd: 0, len: 10 },
        Op::Write { fd: 3, len: 5 },
        Op::Wait { ep: 0, max: 4 },
        Op::Wait { ep: 0, max: 1 },
        Op::Read { fd: 1, len: 4 },
        Op::Dup { fd: 1 },
        Op::Close { fd: 1 },
        Op::Write { fd: 0, len: 3 },
        Op::Wait { ep: 0, max: 4 },
        Op::Shutdown {
            fd: 0,
            how: SHUT_WR,
        },
        Op::Wait { ep: 0, max: 4 },
        Op::Read { fd: 5, len: 100 },
        Op::Read { fd: 3, len: 8 },
        Op::Close { fd: 2 },
        Op::Wait { ep: 0, max: 4 },
    ];
    if let Err(e) = run(&ops) {
        panic!("{e}");
    }
}

//! `SimConfig`, `FaultPlan` and `Latency` validation: odd values are refused when the kernel is
//! built, with an error naming the field, and every value that is accepted runs without a panic.
//!
//! The property test draws whole configurations from a fixed seed (`netpoll_fuzzops::seeded`),
//! mixing ordinary values with NaN, infinities, negative zero, values just outside the ranges
//! and the integer extremes.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::panic::{catch_unwind, AssertUnwindSafe};

use netpoll::sys::{errno::*, *};
use netpoll::{EpollEvent, Events, Poller};
use netpoll_fuzzops::seeded;
use netpoll_sim::{
    CostModel, EdgePolicy, FaultPlan, Latency, Sim, SimConfig, MAX_DELAY_NS, MAX_TCP_WINDOW,
};
use proptest::prelude::*;

fn replay(test: &str) -> String {
    seeded::replay_line("netpoll", "sim_config", test)
}

/// A probability knob: mostly ordinary, often odd.
fn prob() -> impl Strategy<Value = f64> {
    prop_oneof![
        29 => 0.0..=1.0f64,
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(1.0),
            Just(1.0 + f64::EPSILON),
            Just(-f64::MIN_POSITIVE),
            Just(f64::MAX),
        ],
    ]
}

/// A delay in nanoseconds: ordinary, at the bound, just beyond it, or the extremes.
fn delay() -> impl Strategy<Value = u64> {
    prop_oneof![
        19 => 0..200_000u64,
        1 => prop_oneof![
            Just(0),
            Just(MAX_DELAY_NS),
            Just(MAX_DELAY_NS + 1),
            Just(u64::MAX / 100),
            Just(u64::MAX),
        ],
    ]
}

/// A range of delays: mostly in order, sometimes reversed.
fn range() -> impl Strategy<Value = (u64, u64)> {
    (delay(), delay(), 0..10u8).prop_map(|(a, b, k)| {
        if k == 0 {
            (a.max(b), a.min(b))
        } else {
            (a.min(b), a.max(b))
        }
    })
}

fn latency() -> impl Strategy<Value = Option<Latency>> {
    prop_oneof![
        Just(None),
        range().prop_map(|(lo, hi)| Some(Latency::Uniform(lo, hi))),
        (delay(), delay())
            .prop_map(|(base, mean_extra)| Some(Latency::Exponential { base, mean_extra })),
        (delay(), delay(), prob()).prop_map(|(fast, slow, p_slow)| Some(Latency::Bimodal {
            fast,
            slow,
            p_slow
        })),
    ]
}

/// Boxed: the value tree of this many knobs is too large for a test thread's stack unboxed.
fn plan() -> BoxedStrategy<FaultPlan> {
    (
        [
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
            prob(),
        ],
        latency(),
        prop_oneof![3 => Just(0u64), 1 => delay()],
        any::<bool>(),
        prop_oneof![
            3 => Just(None),
            1 => (latency(), latency())
                .prop_map(|(call, turn)| Some(Box::new(CostModel { call, turn })))
                .boxed(),
        ],
    )
        .prop_map(|(p, latency, quantum_ns, e2ne, cost)| FaultPlan {
            short_read: p[0],
            short_write: p[1],
            split_write: p[2],
            latency,
            spurious: p[3],
            eintr: p[4],
            reset: p[5],
            accept_abort: p[6],
            timer_first: p[7],
            quantum_ns,
            edge: if e2ne {
                EdgePolicy::EmptyToNonEmpty
            } else {
                EdgePolicy::Linux
            },
            cost,
            drop_event: p[8],
            drop_event_max: 0,
            eintr_io: p[9],
            emfile: p[10],
            enomem: p[11],
            enfile: p[12],
            enobufs: p[13],
            enomem_file: p[14],
            ..FaultPlan::none()
        })
        .boxed()
}

fn config() -> impl Strategy<Value = SimConfig> {
    (
        prop_oneof![19 => 0..8i32, 1 => prop_oneof![Just(-5), Just(-1), Just(i32::MIN), Just(i32::MAX)]],
        prop_oneof![19 => 8..64usize, 1 => prop_oneof![Just(0), Just(2), Just(i32::MAX as usize), Just(usize::MAX)]],
        prop_oneof![19 => 1..300_000usize, 1 => Just(0)],
        prop_oneof![19 => 1..32usize, 1 => prop_oneof![Just(0), Just(usize::MAX)]],
        prop_oneof![19 => 1..100_000usize, 1 => Just(0)],
        prop_oneof![19 => 1..70_000usize, 1 => Just(0)],
        range(),
        prop_oneof![3 => Just(1_000_000_000u64), 1 => delay()],
        plan(),
    )
        .prop_map(
            |(first_fd, max_fds, unix_sndbuf, pipe_pages, tcp_window, tcp_mss, lat, rto, faults)| {
                SimConfig {
                    max_fds,
                    first_fd,
                    unix_sndbuf,
                    pipe_pages,
                    tcp_window,
                    tcp_mss,
                    latency_ns: lat,
                    syn_rto_ns: rto,
                    faults,
                    ..SimConfig::default()
                }
            },
        )
}

/// Rules the validation must enforce, written independently of it.
fn obviously_invalid(c: &SimConfig) -> Option<&'static str> {
    let f = &c.faults;
    let probs = [
        f.short_read,
        f.short_write,
        f.split_write,
        f.spurious,
        f.eintr,
        f.reset,
        f.accept_abort,
        f.timer_first,
        f.drop_event,
        f.eintr_io,
        f.emfile,
        f.enomem,
        f.enfile,
        f.enobufs,
        f.enomem_file,
    ];
    if probs.iter().any(|p| p.is_nan() || *p < 0.0 || *p > 1.0) {
        return Some("probability");
    }
    if let Some(Latency::Bimodal { p_slow, .. }) = f.latency {
        if !(0.0..=1.0).contains(&p_slow) {
            return Some("p_slow");
        }
    }
    if let Some(Latency::Exponential { base, .. }) = f.latency {
        if base > MAX_DELAY_NS {
            return Some("exponential base");
        }
    }
    if c.first_fd < 0 {
        return Some("first_fd");
    }
    if c.latency_ns.1 > MAX_DELAY_NS || c.latency_ns.0 > c.latency_ns.1 {
        return Some("latency_ns");
    }
    None
}

/// A small workload that touches every knob: pipes, socketpairs, TCP with a refused and two
/// accepted connects, blocking and timed waits. Bounded: every loop has a step limit.
fn workload(p: &Sim, first_fd: i32) {
    let check_fd = |fd: i32| assert!(fd >= first_fd, "fd {fd} below first_fd {first_fd}");
    let Ok(ep) = p.epoll_create1(0) else { return };
    check_fd(ep);
    if let Ok([r, w]) = p.pipe2(O_NONBLOCK) {
        check_fd(r);
        let _ = p.epoll_ctl(
            ep,
            EPOLL_CTL_ADD,
            r,
            Some(EpollEvent::new(Events::IN | Events::ET, 1)),
        );
        let _ = p.write(w, &[7u8; 10_000]);
        let _ = p.read(r, &mut [0u8; 3000]);
    }
    if let Ok([a, b]) = p.socketpair(SOCK_NONBLOCK) {
        let _ = p.write(a, &[1u8; 5000]);
        let _ = p.read(b, &mut [0u8; 100]);
    }
    let Ok(l) = p.tcp_socket(SOCK_NONBLOCK) else {
        return;
    };
    let _ = p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    let _ = p.listen(l, 4);
    let _ = p.epoll_ctl(ep, EPOLL_CTL_ADD, l, Some(EpollEvent::new(Events::IN, 2)));
    let Ok(addr) = p.local_addr(l) else { return };
    let mut conns = Vec::new();
    for _ in 0..2 {
        if let Ok(c) = p.tcp_socket(SOCK_NONBLOCK) {
            check_fd(c);
            let _ = p.connect(c, addr);
            let _ = p.epoll_ctl(
                ep,
                EPOLL_CTL_ADD,
                c,
                Some(EpollEvent::new(Events::OUT | Events::IN, 3)),
            );
            conns.push(c);
        }
    }
    if let Ok(refused) = p.tcp_socket(SOCK_NONBLOCK) {
        let _ = p.connect(refused, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1));
    }
    let mut evs = [EpollEvent::EMPTY; 8];
    for step in 0..40 {
        match p.epoll_wait(ep, &mut evs, if step % 2 == 0 { 5 } else { 0 }) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(EINTR) => {}
            // This loop reads part of an edge-triggered pipe and never drains it: when the
            // descriptor faults leave nothing else in flight, the kernel's lost-wakeup oracle
            // rightly stops it. A verdict, not a panic.
            Err(_) if p.violation().is_some() => return,
            Err(e) => panic!("epoll_wait: {e}"),
        }
        if let Ok((s, _)) = p.accept4(l, SOCK_NONBLOCK) {
            check_fd(s);
            let _ = p.write(s, b"hello");
        }
        for &c in &conns {
            let _ = p.write(c, &[9u8; 2000]);
            let _ = p.read(c, &mut [0u8; 64]);
        }
    }
    assert!(
        p.now_ns() < u64::MAX / 2,
        "the clock ran away: {}",
        p.now_ns()
    );
}

proptest! {
    #![proptest_config(seeded::config(256))]

    /// Every configuration either is refused when the kernel is built (`try_with_config` says
    /// which field; `with_config` panics saying the same) or runs a workload without a panic.
    #[test]
    fn odd_configs_are_refused_or_run(cfg in config(), seed in any::<u64>()) {
        let test = "odd_configs_are_refused_or_run";
        let verdict = cfg.validate();
        match Sim::try_with_config(seed, cfg.clone()) {
            Ok(sim) => {
                prop_assert!(verdict.is_ok());
                if let Some(rule) = obviously_invalid(&cfg) {
                    prop_assert!(false, "accepted, breaking {rule}: {cfg:?}\n{}", replay(test));
                }
                let first_fd = cfg.first_fd;
                let run = catch_unwind(AssertUnwindSafe(|| workload(&sim, first_fd)));
                prop_assert!(run.is_ok(), "a valid config panicked: {cfg:?}\n{}", replay(test));
            }
            Err(e) => {
                prop_assert_eq!(Some(&e), verdict.as_ref().err());
                let msg = catch_unwind(|| Sim::with_config(seed, cfg.clone()))
                    .expect_err("with_config must refuse what try_with_config refuses");
                let msg = msg
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default();
                prop_assert!(
                    msg.contains(e.field()) && msg.contains(&e.to_string()),
                    "panic message {msg:?} must say {e}\n{}", replay(test)
                );
            }
        }
    }
}

/// The three configurations the issue reported, each refused with its field named.
#[test]
fn the_reported_configs_are_refused_by_name() {
    let with_faults = |faults| SimConfig {
        faults,
        ..SimConfig::default()
    };
    let cases = [
        (
            with_faults(FaultPlan {
                latency: Some(Latency::Exponential {
                    base: u64::MAX,
                    mean_extra: 1,
                }),
                ..FaultPlan::none()
            }),
            "faults.latency.base",
        ),
        (
            with_faults(FaultPlan {
                latency: Some(Latency::Bimodal {
                    fast: 1,
                    slow: 2,
                    p_slow: f64::NAN,
                }),
                ..FaultPlan::none()
            }),
            "faults.latency.p_slow",
        ),
        (
            SimConfig {
                first_fd: -5,
                ..SimConfig::default()
            },
            "first_fd",
        ),
        (
            with_faults(FaultPlan {
                eintr: f64::INFINITY,
                ..FaultPlan::none()
            }),
            "faults.eintr",
        ),
        (
            SimConfig {
                tcp_window: MAX_TCP_WINDOW + 1,
                ..SimConfig::default()
            },
            "tcp_window",
        ),
    ];
    // The largest window itself is fine.
    let largest = SimConfig {
        tcp_window: MAX_TCP_WINDOW,
        ..SimConfig::default()
    };
    assert!(Sim::try_with_config(1, largest).is_ok());
    for (cfg, field) in cases {
        let e = Sim::try_with_config(1, cfg).expect_err(field);
        assert_eq!(e.field(), field, "{e}");
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    }
}

/// A valid extreme: the longest delays the rules allow run, and the clock does not overflow.
#[test]
fn the_longest_allowed_delays_run() {
    let cfg = SimConfig {
        latency_ns: (MAX_DELAY_NS, MAX_DELAY_NS),
        syn_rto_ns: MAX_DELAY_NS,
        faults: FaultPlan {
            latency: Some(Latency::Exponential {
                base: MAX_DELAY_NS / 2,
                mean_extra: MAX_DELAY_NS / 200,
            }),
            quantum_ns: MAX_DELAY_NS,
            ..FaultPlan::none()
        },
        ..SimConfig::default()
    };
    let sim = Sim::try_with_config(3, cfg).expect("valid");
    workload(&sim, 3);
}

/// The property test's cases reach both sides: many configurations accepted (and run), many
/// refused.
#[test]
fn the_generated_configs_reach_both_sides() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::new(seeded::config(256));
    let strategy = config();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..256 {
        let cfg = strategy.new_tree(&mut runner).expect("a case").current();
        match cfg.validate() {
            Ok(()) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        ok >= 25 && refused >= 25,
        "accepted {ok}, refused {refused}"
    );
    eprintln!("accepted {ok}, refused {refused} of 256");
}

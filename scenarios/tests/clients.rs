//! The client library against servers other than the engine's loop, and user workloads in a
//! registry: idle and pipelining clients, a server that corrupts one byte (caught, with the
//! connection and offset), and a user workload that replays through its token.

use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{
    errno::{EAGAIN, EINTR},
    errno_of, Events, EPOLL_CLOEXEC, EPOLL_CTL_ADD,
};
use netpoll::{EpollEvent, Fd, Poller};
use netpoll_scenarios::clients::{ClientMix, ClientMode, ClientStats, Clients, Reconnect};
use netpoll_scenarios::oracle::{io_fail, lost_wakeup, Failure};
use netpoll_scenarios::params::{ParamSpec, CONNS, FAULTS};
use netpoll_scenarios::raw_epoll::{timeout_ms, EchoServer, ServerConfig};
use netpoll_scenarios::registry::Registry;
use netpoll_scenarios::run;
use netpoll_scenarios::workload::{
    sim_judged_by_loop, simulate_on, Request, Run, Tracing, Workload,
};
use netpoll_sim::{FaultPlan, Sim, SimConfig};

/// Drives `server` (the crate's example) and `clients` until both are done.
fn drive(
    sim: &Sim,
    ep: Fd,
    mut server: EchoServer<'_, Sim>,
    mix: ClientMix,
) -> Result<u64, Failure> {
    let addr = server.local_addr().map_err(|e| io_fail("getsockname", e))?;
    let mut clients = Clients::new(sim, ep, addr, mix, sim.seed());
    let mut events = vec![EpollEvent::EMPTY; 64];
    while !(clients.done() && server.open_conns() == 0) {
        clients.start(server.open_conns())?;
        let timeout = match (server.next_deadline_ns(), clients.next_deadline_ns()) {
            (None, None) => -1,
            _ => 1,
        };
        if sim.pending() == 0 {
            // About to sleep with nothing in flight: the kernel's scan, judged by what the
            // server and the clients wait for (a slow reader out of budget waits for nothing).
            lost_wakeup(
                sim,
                ep,
                |s| match Clients::<Sim>::owns(s.data) {
                    true => clients.wants(s.data),
                    false => server.wants(s.data),
                },
                |s| format!("token {:#x}", s.data),
            )?;
        }
        let n = match sim.epoll_wait(ep, &mut events, timeout) {
            Ok(n) => n,
            Err(e) if errno_of(&e) == Some(EINTR) => continue,
            Err(e) => return Err(io_fail("epoll_wait", e)),
        };
        for ev in &events[..n] {
            if Clients::<Sim>::owns(ev.data) {
                clients.handle(*ev)?;
            } else {
                server.handle(*ev).map_err(|e| io_fail("serving", e))?;
            }
        }
        server.on_time().map_err(|e| io_fail("server timers", e))?;
        clients.on_time(sim.now_ns())?;
    }
    Ok(clients.stats().bytes)
}

#[test]
fn pipelined_slow_and_idle_clients_against_the_example_server() {
    for seed in 1..=5 {
        let mut cfg = SimConfig::default();
        cfg.oracles.lost_wakeup = false; // judged by the loop below, which knows its wants
        let sim = Sim::with_config(seed, cfg);
        let ep = sim.epoll_create1(EPOLL_CLOEXEC).unwrap();
        let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let server = EchoServer::bind(&sim, ep, any, ServerConfig::default()).unwrap();
        let mut mix = ClientMix::new(12, 6, 5000)
            .group(4, ClientMode::Echo)
            .group(
                4,
                ClientMode::SlowReader {
                    chunk: 1000,
                    interval_ns: 100_000,
                },
            )
            .group(4, ClientMode::Idle);
        mix.pipeline = 3;
        let bytes = drive(&sim, ep, server, mix).unwrap_or_else(|f| panic!("seed {seed}: {f}"));
        // The eight talking clients got every byte back; the idle ones sent nothing and held
        // their connections to the end.
        assert_eq!(bytes, 8 * 6 * 5000, "seed {seed}");
    }
}

/// An echo server (level-triggered, one read per event) that flips the byte at offset 1000 of
/// every connection: the clients must name the connection and the offset.
/// Runs `mix` (streams from `seed`) against a hand-written server on `sim`: a listener
/// (token 1) whose connections (token `2 + n`, level-triggered `IN`) are served by
/// `serve(fd, n)` on each readable event, until every client is done or fails.
fn against_handler(
    sim: &Sim,
    mix: ClientMix,
    seed: u64,
    mut serve: impl FnMut(Fd, usize),
) -> Result<(), Failure> {
    let ep = sim.epoll_create1(EPOLL_CLOEXEC).unwrap();
    let listener = sim.tcp_socket(netpoll::sys::SOCK_NONBLOCK).unwrap();
    sim.bind(listener, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    sim.listen(listener, 16).unwrap();
    let ev = EpollEvent::new(Events::IN, 1);
    sim.epoll_ctl(ep, EPOLL_CTL_ADD, listener, Some(ev))
        .unwrap();
    let addr = sim.local_addr(listener).unwrap();
    let mut clients = Clients::new(sim, ep, addr, mix, seed);
    let mut conns: Vec<Fd> = Vec::new();
    let mut events = vec![EpollEvent::EMPTY; 16];
    while !clients.done() {
        clients.start(0)?;
        let n = sim.epoll_wait(ep, &mut events, -1).unwrap();
        for ev in events[..n].iter().copied() {
            if Clients::<Sim>::owns(ev.data) {
                clients.handle(ev)?;
            } else if ev.data == 1 {
                while let Ok((fd, _)) = sim.accept4(listener, 0) {
                    let reg = EpollEvent::new(Events::IN, 2 + conns.len() as u64);
                    sim.epoll_ctl(ep, EPOLL_CTL_ADD, fd, Some(reg)).unwrap();
                    conns.push(fd);
                }
            } else {
                let n = (ev.data - 2) as usize;
                serve(conns[n], n);
            }
        }
    }
    Ok(())
}

#[test]
fn a_flipped_byte_is_reported_with_its_connection_and_offset() {
    let sim = Sim::new(3);
    // An echo server that flips a bit of each connection's byte 1000.
    let mut offsets = [0u64; 2];
    let mut buf = vec![0u8; 4096];
    let verdict = against_handler(&sim, ClientMix::new(2, 1, 4000), 3, |fd, n| {
        match sim.read(fd, &mut buf) {
            Ok(0) => {}
            Ok(len) => {
                let off = &mut offsets[n];
                for (j, b) in buf[..len].iter_mut().enumerate() {
                    if *off + j as u64 == 1000 {
                        *b ^= 0x40;
                    }
                }
                *off += len as u64;
                sim.write(fd, &buf[..len]).unwrap();
            }
            Err(e) => assert_eq!(errno_of(&e), Some(EAGAIN)),
        }
    });
    match verdict {
        Err(Failure::Integrity { conn, offset, .. }) => {
            assert!(conn < 2, "connection {conn}");
            assert_eq!(offset, 1000);
        }
        other => panic!("expected an integrity failure at byte 1000, got {other:?}"),
    }
}

/// A server that answers each connection's first read and then closes it, long before the
/// idle deadline a stalling client waits for: a staller cut off before its stall point (its
/// echo and the server's FIN read in one go) is a failure, one closed after it is not.
#[test]
fn a_staller_closed_before_it_stalled_is_reported() {
    let sim = Sim::new(5);
    // Every client stalls, most of them after the first of their ten messages.
    let mix = ClientMix::new(8, 10, 100).mode(ClientMode::Stall { pct: 100 });
    let mut buf = vec![0u8; 4096];
    let verdict = against_handler(&sim, mix, 5, |fd, _| {
        if let Ok(n @ 1..) = sim.read(fd, &mut buf) {
            sim.write(fd, &buf[..n]).unwrap();
            sim.close(fd).unwrap();
        }
    });
    match verdict {
        Err(Failure::Integrity { detail, .. }) => {
            assert!(detail.contains("closed the connection early"), "{detail}");
        }
        other => panic!("expected a staller cut off early, got {other:?}"),
    }
}

/// A user's workload: the example server and a client mix, in a few lines.
struct MixedEcho;

static MIXED: &[ParamSpec] = &[ParamSpec::new(CONNS, 6, 1, 100, "connections"), FAULTS];

impl Workload for MixedEcho {
    fn name(&self) -> &str {
        "user-mixed-echo"
    }
    fn about(&self) -> &str {
        "the example server against half-closing and resetting clients"
    }
    fn params(&self) -> &'static [ParamSpec] {
        MIXED
    }
    fn run(&self, req: &Request, tracing: Tracing) -> Run {
        simulate_on(sim_judged_by_loop(req), req, tracing, |sim, stats| {
            let ep = sim
                .epoll_create1(EPOLL_CLOEXEC)
                .map_err(|e| io_fail("epoll", e))?;
            let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
            let server = EchoServer::bind(sim, ep, any, ServerConfig::default())
                .map_err(|e| io_fail("bind", e))?;
            let conns = req.params.get(CONNS) as usize;
            let mix = ClientMix::new(conns, 3, 2000)
                .group(conns / 2, ClientMode::HalfClose)
                .group(conns - conns / 2, ClientMode::Reset);
            stats.bytes = drive(sim, ep, server, mix)?;
            Ok(())
        })
    }
}

#[test]
fn a_user_workload_runs_sweeps_and_replays_through_the_registry() {
    let mut registry = Registry::builtin();
    registry.add(MixedEcho).unwrap();
    assert!(
        registry.add(MixedEcho).is_err(),
        "a name is registered once"
    );
    let w = registry.find("user-mixed-echo").unwrap();
    for faults in [0, 1, 2] {
        for seed in 1..=4 {
            let mut p = w.defaults();
            p.set("faults", faults).unwrap();
            let mut req = Request::sim(w, p, seed);
            req.check_determinism = true;
            let r = run::execute(&req);
            assert_eq!(r.outcome(), "pass", "{}", r);
            let again = registry.from_token(&req.token()).unwrap();
            assert_eq!(again.scenario.name(), "user-mixed-echo");
            assert_eq!(run::execute(&again).fingerprint, r.fingerprint);
        }
    }
    // The built-in registry alone does not know it, and says so.
    let req = Request::sim(w, w.defaults(), 1);
    let e = Registry::builtin().from_token(&req.token()).unwrap_err();
    assert!(e.to_string().contains("user-mixed-echo"), "{e}");
}

/// Drives `server` and `clients` until both are done, sleeping to the earliest deadline (the
/// server's accept pauses, the clients' reconnects) with the kernel judging lost wakeups.
/// Returns the clients' counters and the virtual time the run took.
fn drive_storm(
    sim: &Sim,
    ep: Fd,
    mut server: EchoServer<'_, Sim>,
    mix: ClientMix,
) -> Result<(ClientStats, u64), Failure> {
    let addr = server.local_addr().map_err(|e| io_fail("getsockname", e))?;
    let mut clients = Clients::new(sim, ep, addr, mix, sim.seed());
    let mut events = vec![EpollEvent::EMPTY; 256];
    while !(clients.done() && server.open_conns() == 0) {
        clients.start(server.open_conns())?;
        let next = [server.next_deadline_ns(), clients.next_deadline_ns()]
            .into_iter()
            .flatten()
            .min();
        let timeout = next.map_or(-1, |d| timeout_ms(d, sim.now_ns()));
        let n = match sim.epoll_wait(ep, &mut events, timeout) {
            Ok(n) => n,
            Err(e) if errno_of(&e) == Some(EINTR) => continue,
            Err(e) => return Err(io_fail("epoll_wait", e)),
        };
        for ev in &events[..n] {
            if Clients::<Sim>::owns(ev.data) {
                clients.handle(*ev)?;
            } else {
                server.handle(*ev).map_err(|e| io_fail("serving", e))?;
            }
        }
        server.on_time().map_err(|e| io_fail("server timers", e))?;
        clients.on_time(sim.now_ns())?;
    }
    Ok((clients.stats(), sim.now_ns()))
}

/// A storm of 300 clients at a server with a backlog of 1 that accepts one connection per
/// 200 µs, under the swarm plan of seed 4 (every packet lands on a 1 ms tick, so refused
/// clients come back together). `accept_pause_ns` of an hour is a server that mutes its
/// listener and, in effect, never re-arms it.
fn storm(accept_pause_ns: u64) -> Result<(ClientStats, u64), Failure> {
    let cfg = SimConfig {
        faults: FaultPlan::swarm(4),
        ..SimConfig::default()
    };
    assert_eq!(
        cfg.faults.quantum_ns, 1_000_000,
        "the plan this test is about"
    );
    let sim = Sim::with_config(4, cfg);
    let ep = sim.epoll_create1(EPOLL_CLOEXEC).unwrap();
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let server_cfg = ServerConfig {
        backlog: 1,
        accept_batch: 1,
        accept_pause_ns,
        ..ServerConfig::default()
    };
    let server = EchoServer::bind(&sim, ep, any, server_cfg).unwrap();
    let mut mix = ClientMix::new(300, 1, 32);
    mix.connect_window = 300;
    mix.reconnect = Some(Reconnect::default());
    drive_storm(&sim, ep, server, mix)
}

/// Regression (`netpoll-sim sweep accept-storm --faults swarm`, 120 of 500 seeds): clients
/// that reconnected at once, up to 16 times, exhausted their attempts against a correct server
/// under the swarm plan's 1 ms tick (each wave of refused clients came back on one tick, where
/// the queue takes `backlog + 1`). With jittered backoff bounded by virtual time the same
/// storm is served; and a server that stops accepting is still reported, by the client that
/// gave up, with how long it tried.
#[test]
fn reconnect_backoff_serves_a_storm_and_still_reports_a_server_that_stops_accepting() {
    let (stats, took_ns) = storm(200_000).unwrap_or_else(|f| panic!("a correct server: {f}"));
    assert_eq!(stats.bytes, 300 * 32);
    assert!(
        stats.connect_retries > 0,
        "no client was refused: {stats:?}"
    );
    let budget = Reconnect::default().give_up_after_ns;
    assert!(took_ns < budget, "took {took_ns} ns");

    let f = storm(3_600_000_000_000).expect_err("a server that never accepts again");
    let text = f.to_string();
    assert_eq!(f.kind(), "io-error", "{text}");
    assert!(
        text.contains("no answer from the server after")
            && text.contains("reconnect budget is 600 s"),
        "{text}"
    );
}

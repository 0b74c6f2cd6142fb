//! `Sim::upcoming`: the simulated kernel's look-ahead for a loop's cache hints. It announces
//! the data words of events it is about to report, only once a cache hint is installed, and it
//! changes nothing the run does.
//!
//! One test function: the cache hint is process-wide and can be installed only once, so the run
//! without it must come first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use netpoll::sys::{errno::*, *};
use netpoll::{EpollEvent, Events, Poller};
use netpoll_sim::Sim;

const CONNS: u64 = 3000;
const LISTENER: u64 = u64::MAX;
const SERVER: u64 = 1 << 32;

/// What one run saw: every reported event, the kernel's fingerprint, the words announced, and
/// how many reported events had been announced (since the last event with that word) before
/// they came.
struct Seen {
    events: Vec<(u64, Events)>,
    fingerprint: (u64, u64),
    announced: BTreeSet<u64>,
    foretold: usize,
    /// Words given, and what `Stats::announced` says.
    given: u64,
    counted: u64,
}

/// `CONNS` clients connect at once, each writes 32 bytes and reads the echo, four times over.
/// With `ask`, the loop takes the kernel's look-ahead before every wait.
fn echo(ask: bool) -> Seen {
    let p = Sim::new(11);
    let l = p.tcp_socket(SOCK_NONBLOCK).unwrap();
    p.bind(l, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    p.listen(l, 4096).unwrap();
    let addr = p.local_addr(l).unwrap();
    let ep = p.epoll_create1(0).unwrap();
    let ev = |events, data| Some(EpollEvent::new(events, data));
    p.epoll_ctl(ep, EPOLL_CTL_ADD, l, ev(Events::IN, LISTENER))
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..CONNS {
        let c = p.tcp_socket(SOCK_NONBLOCK).unwrap();
        assert_eq!(
            p.connect(c, addr).unwrap_err().raw_os_error(),
            Some(EINPROGRESS)
        );
        p.epoll_ctl(
            ep,
            EPOLL_CTL_ADD,
            c,
            ev(Events::IN | Events::OUT | Events::ET, i),
        )
        .unwrap();
        clients.push((c, 0u32, false));
    }
    let mut servers = Vec::new();
    let mut seen = Seen {
        events: Vec::new(),
        fingerprint: (0, 0),
        announced: BTreeSet::new(),
        foretold: 0,
        given: 0,
        counted: 0,
    };
    let (mut done, mut buf, mut soon) = (0, [0u8; 256], [0u64; 64]);
    let mut evs = [EpollEvent::EMPTY; 256];
    let mut pending = BTreeMap::<u64, u32>::new();
    while done < CONNS {
        if ask {
            let n = p.upcoming(&mut soon);
            seen.announced.extend(&soon[..n]);
            seen.given += n as u64;
            for &d in &soon[..n] {
                *pending.entry(d).or_default() += 1;
            }
        }
        let n = p.epoll_wait(ep, &mut evs, -1).unwrap();
        for e in &evs[..n] {
            seen.events.push((e.data, e.events));
            if pending.remove(&e.data).is_some() && e.data != LISTENER {
                seen.foretold += 1;
            }
            if e.data == LISTENER {
                while let Ok((s, _)) = p.accept4(l, SOCK_NONBLOCK) {
                    let data = SERVER | servers.len() as u64;
                    p.epoll_ctl(ep, EPOLL_CTL_ADD, s, ev(Events::IN | Events::ET, data))
                        .unwrap();
                    servers.push(s);
                }
            } else if e.data & SERVER != 0 {
                let s = servers[(e.data & !SERVER) as usize];
                while let Ok(k) = p.read(s, &mut buf) {
                    if k == 0 {
                        break;
                    }
                    assert_eq!(p.write(s, &buf[..k]).unwrap(), k);
                }
            } else {
                let (c, rounds, writing) = &mut clients[e.data as usize];
                if e.events.contains(Events::OUT) && !*writing && *rounds == 0 {
                    *writing = true;
                    assert_eq!(p.write(*c, &[7; 32]).unwrap(), 32);
                }
                let mut got = 0;
                while let Ok(k) = p.read(*c, &mut buf) {
                    got += k;
                }
                if got > 0 {
                    *rounds += 1;
                    if *rounds < 4 {
                        assert_eq!(p.write(*c, &[7; 32]).unwrap(), 32);
                    } else {
                        done += 1;
                    }
                }
            }
        }
    }
    seen.fingerprint = p.fingerprint();
    seen.counted = p.stats().announced;
    seen
}

fn count_hint(_: *const u8) {}

#[test]
fn the_look_ahead_foretells_events_only_with_a_hint_and_changes_nothing() {
    // Without a cache hint, the kernel collects nothing: a loop's prefetches would do nothing.
    let plain = echo(false);
    let asked = echo(true);
    assert!(asked.announced.is_empty(), "words announced without a hint");
    assert_eq!(asked.events, plain.events);
    assert_eq!(asked.fingerprint, plain.fingerprint);

    netpoll::hint::set_prefetch(count_hint).unwrap();
    let hinted = echo(true);
    assert_eq!(
        hinted.events, plain.events,
        "the look-ahead changed the run"
    );
    assert_eq!(hinted.fingerprint, plain.fingerprint);
    assert_eq!(
        hinted.counted, hinted.given,
        "Stats::announced counts the words given"
    );
    // Every announced word is one the loop registered, and most data events were announced
    // before they came.
    let registered = |d: u64| d < CONNS || (d & SERVER != 0 && (d & !SERVER) < CONNS);
    assert!(hinted.announced.iter().all(|&d| registered(d)));
    let data_events = plain.events.iter().filter(|e| e.0 != LISTENER).count();
    assert!(
        hinted.foretold * 2 > data_events,
        "{} of {data_events} events foretold",
        hinted.foretold
    );
}

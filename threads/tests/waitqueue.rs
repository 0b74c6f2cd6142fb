//! How many threads a wakeup wakes: the kernel's epoll wait queues decide, not a retry of every
//! blocked thread. The two-arm cases (`tests/conformance/mt_*.rs`) check what each thread gets
//! against Linux; these check what only the simulation can see, the number of wakeups.

use netpoll::sys::*;
use netpoll::{EpollEvent, Events, Poller};
use netpoll_sim::Sim;
use netpoll_threads::{settle, spawn, Policy, Runner, Step, Tid};

/// Three threads block in `epoll_wait` on one instance watching an eventfd with `interest`;
/// the main thread writes once (after all three blocked), then releases whoever is left.
/// Returns the schedule after the write up to the main thread's first `join` (what the write
/// woke, run to quiescence by `settle`), and the order in which the waiters blocked.
fn one_write(seed: u64, policy: Policy, interest: Events) -> (Vec<Step>, Vec<Tid>) {
    let out = Runner::new(seed)
        .policy(policy)
        .run(Sim::new(seed), move |k| {
            let e = k.eventfd(0, EFD_NONBLOCK).unwrap();
            let ep = k.epoll_create1(0).unwrap();
            k.epoll_ctl(ep, EPOLL_CTL_ADD, e, Some(EpollEvent::new(interest, 1)))
                .unwrap();
            let ws: Vec<_> = (0..3)
                .map(|i| {
                    let k = k.clone();
                    spawn(format!("w{i}"), move || {
                        let mut evs = [EpollEvent::EMPTY; 4];
                        k.epoll_wait(ep, &mut evs, 1_000).unwrap()
                    })
                })
                .collect();
            settle();
            k.write(e, &1u64.to_ne_bytes()).unwrap();
            settle();
            for w in ws {
                w.join();
            }
        })
        .unwrap();
    let s = out.report.schedule();
    let write = s
        .iter()
        .position(|st| st.call.op == "write")
        .expect("the write");
    let after: Vec<Step> = s[write + 1..]
        .iter()
        .take_while(|st| st.call.op != "join")
        .copied()
        .collect();
    let blocked_order = s[..write]
        .iter()
        .filter(|st| st.call.op == "epoll_wait" && st.blocked)
        .map(|st| st.tid)
        .collect();
    (after, blocked_order)
}

#[test]
fn one_edge_wakes_exactly_one_waiter_the_last_to_block() {
    for seed in 0..40 {
        for policy in [
            Policy::Random,
            Policy::Pct {
                depth: 3,
                steps: 200,
            },
        ] {
            let (after, blocked) = one_write(seed, policy, Events::IN | Events::ET);
            let tries: Vec<Tid> = after
                .iter()
                .filter(|st| st.call.op == "epoll_wait")
                .map(|st| st.tid)
                .collect();
            assert_eq!(
                tries.len(),
                1,
                "seed {seed} {policy:?}: one edge must wake one waiter, got tries {tries:?}"
            );
            assert_eq!(
                Some(&tries[0]),
                blocked.last(),
                "seed {seed} {policy:?}: ep_poll queues waiters at the head: the last to block \
                 is woken first (blocked in order {blocked:?})"
            );
        }
    }
}

#[test]
fn a_level_triggered_event_wakes_the_waiters_one_after_another() {
    for seed in 0..40 {
        let (after, _) = one_write(seed, Policy::Random, Events::IN);
        let tries: Vec<(Tid, bool)> = after
            .iter()
            .filter(|st| st.call.op == "epoll_wait")
            .map(|st| (st.tid, st.blocked))
            .collect();
        assert_eq!(tries.len(), 3, "seed {seed}: {tries:?}");
        assert!(
            tries.iter().all(|&(_, blocked)| !blocked),
            "seed {seed}: every woken waiter finds the event, none sleeps again: {tries:?}"
        );
    }
}

#[test]
fn a_timeout_ends_only_its_own_wait() {
    let out = Runner::new(3)
        .run(Sim::new(3), |k| {
            let [_a, b] = k.socketpair(SOCK_NONBLOCK).unwrap();
            let ep = k.epoll_create1(0).unwrap();
            k.epoll_ctl(ep, EPOLL_CTL_ADD, b, Some(EpollEvent::new(Events::IN, 1)))
                .unwrap();
            let short = spawn("short", {
                let k = k.clone();
                move || {
                    let mut evs = [EpollEvent::EMPTY; 4];
                    let n = k.epoll_wait(ep, &mut evs, 10).unwrap();
                    (n, k.now())
                }
            });
            let long = spawn("long", {
                let k = k.clone();
                move || {
                    let mut evs = [EpollEvent::EMPTY; 4];
                    let n = k.epoll_wait(ep, &mut evs, 50).unwrap();
                    (n, k.now())
                }
            });
            (short.join(), long.join())
        })
        .unwrap();
    let ((n1, t1), (n2, t2)) = out.value;
    assert_eq!((n1, n2), (0, 0));
    assert_eq!(t1.as_millis(), 10);
    assert_eq!(t2.as_millis(), 50);
}

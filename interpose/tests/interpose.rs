//! The interposer's test binary: the override is process-wide, so these tests live in a
//! binary of their own. Each runs programs written against std, mio or tokio, unchanged, on a
//! simulated kernel.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netpoll_interpose::run;
use netpoll_sim::Sim;

#[test]
fn std_net_echo_runs_on_the_sim() {
    let sim = Sim::new(7);
    let got = run(&sim, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        c.write_all(b"ping").unwrap();
        let mut buf = [0; 4];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    assert_eq!(&got, b"ping");
    assert!(sim.stats().syscalls >= 6, "the calls went to the sim");
    assert!(
        sim.now_ns() > 0,
        "the blocking read waited for the delivery in virtual time"
    );
}

#[test]
fn sleep_and_clock_are_virtual() {
    let sim = Sim::new(1);
    let wall = Instant::now();
    let (a, b) = run(&sim, || {
        let a = Instant::now();
        std::thread::sleep(Duration::from_secs(10));
        (a, Instant::now())
    });
    assert_eq!(b - a, Duration::from_secs(10));
    assert_eq!(sim.now_ns(), 10_000_000_000);
    assert!(wall.elapsed() < Duration::from_secs(5));
}

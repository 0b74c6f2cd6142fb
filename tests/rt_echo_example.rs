//! `examples/echo.rs`: real clients (`std::net::TcpStream`) against the server on real epoll,
//! and the identical handler on the simulated kernel.

#[path = "../examples/echo.rs"]
#[allow(dead_code)]
mod echo;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::sync::mpsc;

fn start_server(threads: usize) -> SocketAddrV4 {
    let (tx, rx) = mpsc::channel();
    // The server runs until the test process exits.
    std::thread::spawn(move || {
        echo::run_real(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            threads,
            move |a| {
                tx.send(a).unwrap();
            },
        )
    });
    rx.recv().expect("the server reports its address")
}

fn std_clients(addr: SocketAddrV4, clients: usize) {
    let ts: Vec<_> = (0..clients)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                for r in 0..10u8 {
                    let msg = format!("client {i} round {r}\n");
                    s.write_all(msg.as_bytes()).unwrap();
                    let mut got = vec![0u8; msg.len()];
                    s.read_exact(&mut got).unwrap();
                    assert_eq!(got, msg.as_bytes());
                }
                s.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty(), "the server closes after our EOF");
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
}

#[test]
fn std_clients_against_single_threaded_server() {
    std_clients(start_server(1), 16);
}

#[test]
fn std_clients_against_multi_threaded_server() {
    std_clients(start_server(3), 16);
}

#[test]
fn the_same_handler_on_the_sim() {
    for seed in [1, 2, 3] {
        let took = echo::run_sim(seed, 50, 5).unwrap();
        assert!(took > std::time::Duration::ZERO);
        // Deterministic: the same seed takes the same virtual time.
        assert_eq!(echo::run_sim(seed, 50, 5).unwrap(), took, "seed {seed}");
    }
}

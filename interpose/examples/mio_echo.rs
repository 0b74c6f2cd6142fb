//! An unmodified mio echo server and N clients in one event loop, on the simulated kernel or on
//! real loopback.
//!
//! ```text
//! cargo run --release -p netpoll-interpose --example mio_echo -- --sim 7 --conns 1000
//! cargo run --release -p netpoll-interpose --example mio_echo -- --real --conns 1000
//! ```
//!
//! Each client connects, sends its message, half-closes and reads the echo to the end of file;
//! the server echoes each connection and half-closes when its client has. Edge-triggered, as
//! mio is: every handler reads and writes until `WouldBlock`. Clients run in waves of at most
//! 100 connections: mio listens with a backlog of 128, and real Linux resets connections whose
//! handshake finds the accept queue full. Both arms print the same `results`; `fingerprint` on the sim also covers
//! the kernel's call sequence.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use common::Digest;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
const WAVE: usize = 100;

struct Conn {
    stream: TcpStream,
    /// `Some(i)` for client `i`; `None` for the server's side.
    client: Option<usize>,
    connected: bool,
    /// What is still to be written, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// What was read (the client's echo).
    got: Vec<u8>,
    read_eof: bool,
    write_shut: bool,
}

enum Step {
    Going,
    /// The connection is done; a client's echo with it.
    Done(Option<(usize, Vec<u8>)>),
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Reads and writes `c` until it would block; says whether it is done.
fn drive(c: &mut Conn) -> io::Result<Step> {
    if !c.connected {
        match c.stream.peer_addr() {
            Ok(_) => c.connected = true,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                return match c.stream.take_error()? {
                    Some(e) => Err(e),
                    None => Ok(Step::Going),
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut buf = [0u8; 16 * 1024];
    while !c.read_eof {
        match c.stream.read(&mut buf) {
            Ok(0) => c.read_eof = true,
            Ok(n) if c.client.is_some() => c.got.extend_from_slice(&buf[..n]),
            Ok(n) => c.out.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(n) => c.sent += n,
            Err(e) if would_block(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // A client half-closes once its message is out; the server once its client has and the
    // echo is out.
    let all_out = c.sent == c.out.len();
    if !c.write_shut && all_out && (c.client.is_some() || c.read_eof) {
        c.stream.shutdown(Shutdown::Write)?;
        c.write_shut = true;
    }
    if c.read_eof && c.write_shut {
        return Ok(Step::Done(
            c.client.map(|i| (i, std::mem::take(&mut c.got))),
        ));
    }
    Ok(Step::Going)
}

/// Registers `c` under the lowest free slot of `slab`.
fn insert(
    slab: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    poll: &Poll,
    mut c: Conn,
) -> io::Result<()> {
    let k = free.pop().unwrap_or_else(|| {
        slab.push(None);
        slab.len() - 1
    });
    let both = Interest::READABLE | Interest::WRITABLE;
    poll.registry().register(&mut c.stream, Token(k), both)?;
    slab[k] = Some(c);
    Ok(())
}

fn echo(conns: usize) -> io::Result<Digest> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
    let addr: SocketAddr = listener.local_addr()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut slab: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut results = vec![None; conns];
    for start in (0..conns).step_by(WAVE) {
        let end = conns.min(start + WAVE);
        for i in start..end {
            let c = Conn {
                stream: TcpStream::connect(addr)?,
                client: Some(i),
                connected: false,
                out: common::message(i),
                sent: 0,
                got: Vec::new(),
                read_eof: false,
                write_shut: false,
            };
            insert(&mut slab, &mut free, &poll, c)?;
        }
        while results[start..end].iter().any(Option::is_none) {
            match poll.poll(&mut events, None) {
                Ok(()) => {}
                // mio passes epoll_wait's EINTR on; the caller polls again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    loop {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let c = Conn {
                                    stream,
                                    client: None,
                                    connected: true,
                                    out: Vec::new(),
                                    sent: 0,
                                    got: Vec::new(),
                                    read_eof: false,
                                    write_shut: false,
                                };
                                insert(&mut slab, &mut free, &poll, c)?;
                            }
                            Err(e) if would_block(&e) => break,
                            Err(e) => return Err(e),
                        }
                    }
                    continue;
                }
                let k = ev.token().0;
                let Some(c) = slab[k].as_mut() else { continue };
                if let Step::Done(r) = drive(c)? {
                    let mut c = slab[k].take().expect("a live connection");
                    poll.registry().deregister(&mut c.stream)?;
                    free.push(k);
                    if let Some((i, got)) = r {
                        results[i] = Some(got);
                    }
                }
            }
        }
    }
    let mut d = Digest::default();
    for (i, got) in results.into_iter().enumerate() {
        let got = got.expect("every client finished");
        assert!(
            got == common::message(i),
            "client {i}: the echo differs from what it sent"
        );
        d.add_u64(i as u64);
        d.add_u64(got.len() as u64);
    }
    Ok(d)
}

fn main() {
    let args = common::args();
    if args.workers > 0 {
        eprintln!("error: --workers: mio_echo is single-threaded (tokio_echo takes --workers)");
        std::process::exit(2);
    }
    match args.sim() {
        None => common::report(echo(args.conns).expect("echo"), None),
        Some(sim) => {
            let d = netpoll_interpose::run(&sim, || echo(args.conns)).expect("echo");
            common::report(d, Some(&sim));
        }
    }
}

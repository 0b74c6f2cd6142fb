//! The echo shape both programs share with `netpoll-sim run echo`: `conns` connections, each
//! writing `msgs` messages of `size` bytes and reading each echo back (checked byte for byte)
//! before the next, then half-closing; the server echoes until end of file. Every connection
//! is opened at once (no window).

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The run's shape, from `--conns N --msgs M --size B --per-node K --seed S`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub conns: u64,
    pub msgs: u64,
    pub size: u64,
    /// Connections per client node (host).
    pub per_node: u64,
    pub seed: u64,
}

impl Shape {
    /// Parses the command line; exits with a message on a bad flag.
    pub fn from_args() -> Shape {
        let mut s = Shape {
            conns: 100_000,
            msgs: 10,
            size: 64,
            per_node: 1_000,
            seed: 7,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let v = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
            let slot = match args[i].as_str() {
                "--conns" => &mut s.conns,
                "--msgs" => &mut s.msgs,
                "--size" => &mut s.size,
                "--per-node" => &mut s.per_node,
                "--seed" => &mut s.seed,
                other => usage(&format!("unknown flag {other}")),
            };
            *slot = v.unwrap_or_else(|| usage(&format!("{} needs a number", args[i])));
            i += 2;
        }
        if s.conns == 0 || s.per_node == 0 || s.size == 0 {
            usage("--conns, --per-node and --size must be at least 1");
        }
        s
    }

    /// Client nodes needed.
    pub fn nodes(&self) -> u64 {
        self.conns.div_ceil(self.per_node)
    }

    /// The connections client node `n` opens.
    pub fn conns_of(&self, n: u64) -> std::ops::Range<u64> {
        n * self.per_node..((n + 1) * self.per_node).min(self.conns)
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("error: {msg}\nusage: --conns N --msgs M --size B --per-node K --seed S");
    std::process::exit(2)
}

/// Byte `off` of connection `c`'s stream.
pub fn byte(c: u64, off: u64) -> u8 {
    let x = (c.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ off).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 56) as u8
}

/// Fills `buf` with connection `c`'s bytes from `off`.
pub fn fill(buf: &mut [u8], c: u64, off: u64) {
    for (j, b) in buf.iter_mut().enumerate() {
        *b = byte(c, off + j as u64);
    }
}

/// Prints the result line; exits 1 unless every byte came back.
pub fn finish(name: &str, s: Shape, echoed: u64, started: Instant) {
    let want = s.conns * s.msgs * s.size;
    println!(
        "{name}: conns={} msgs={} size={} per_node={} seed={} echoed={echoed}/{want} wall={:.2}s",
        s.conns,
        s.msgs,
        s.size,
        s.per_node,
        s.seed,
        started.elapsed().as_secs_f64()
    );
    if echoed != want {
        eprintln!("FAIL: {echoed} bytes echoed, expected {want}");
        std::process::exit(1);
    }
}

/// The server's side of one connection: read into a buffer twice the message size and write
/// back what came, until end of file. The flush matters to madsim, whose streams buffer
/// writes until flushed; it costs turmoil nothing.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut c: S, s: Shape) {
    let mut buf = vec![0u8; 2 * s.size as usize];
    loop {
        let n = c.read(&mut buf).await.expect("server read");
        if n == 0 {
            break;
        }
        c.write_all(&buf[..n]).await.expect("server write");
        c.flush().await.expect("server flush");
    }
}

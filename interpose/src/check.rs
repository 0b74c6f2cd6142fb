//! The one-call check for unmodified programs: [`CheckInterposed`] adds `run_interposed` and
//! `run_tokio` to `netpoll_scenarios::check::Check`, so that a std, mio or tokio program runs
//! once per seed on a fresh simulated kernel under the check's fault plan and oracles, and a
//! failing seed is reported with its replay line, trace file and shrunk fault plan, as for a
//! closure written against `Poller`.
//!
//! It lives here, not in `netpoll-scenarios`, so that the interposer is linked only into
//! binaries that ask for it: a crate that uses `Check` alone never gets the interposed symbols.

use std::future::Future;
use std::io;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::sync::Arc;

use netpoll_scenarios::check::{Check, CheckError, Launch, Passed};
use netpoll_sim::Sim;
use netpoll_threads::{host, Runner, ThreadedSim};

/// `Check` for unmodified programs: each seed runs the closure inside [`crate::run`] on that
/// seed's kernel.
///
/// ```
/// use netpoll_interpose::CheckInterposed;
/// use netpoll_scenarios::check::{Check, Faults};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// Check::new()
///     .seeds(0..20)
///     .faults(Faults::Chaos)
///     .run_tokio(|| async {
///         let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
///         let addr = l.local_addr()?;
///         let client = tokio::spawn(async move {
///             let mut c = tokio::net::TcpStream::connect(addr).await?;
///             c.write_all(b"ping").await?;
///             let mut buf = [0; 4];
///             c.read_exact(&mut buf).await?;
///             assert_eq!(&buf, b"ping");
///             std::io::Result::Ok(())
///         });
///         let (mut s, _) = l.accept().await?;
///         let mut buf = [0; 4];
///         s.read_exact(&mut buf).await?;
///         s.write_all(&buf).await?;
///         client.await?
///     });
/// ```
pub trait CheckInterposed: Sized {
    /// Runs `f` inside [`crate::run`] once per seed: std::net and mio code, unmodified. A
    /// failure panics with the report, as [`Check::run`] does.
    #[track_caller]
    fn run_interposed(self, f: impl FnMut() -> io::Result<()>) {
        if let Err(e) = self.try_run_interposed(f) {
            panic!("{e}");
        }
    }

    /// As [`run_interposed`](Self::run_interposed), returning the outcome.
    ///
    /// # Errors
    /// As [`Check::try_run`].
    #[track_caller]
    fn try_run_interposed(self, f: impl FnMut() -> io::Result<()>) -> Result<Passed, CheckError>;

    /// Runs the future `f` makes on a tokio `current_thread` runtime with every driver on
    /// ([`tokio_runtime`]), built inside [`crate::run`] once per seed, as `#[madsim::test]`
    /// does: a task that panics or an `Err` fails the seed, and so does every oracle of the
    /// kernel, the lost-wakeup one included (see `waits.rs` in this crate: a task that got
    /// `EAGAIN` is taken to wait for the next edge). The runtime is dropped inside the run, so
    /// its own descriptors are closed before the leak oracle looks.
    ///
    /// tokio's `select!` (without `biased;`) draws its branch order from the runtime's
    /// generator. That follows the seed only when tokio is built with `--cfg tokio_unstable`
    /// (`RUSTFLAGS="--cfg tokio_unstable"`): [`tokio_runtime`] then seeds it with
    /// `Builder::rng_seed`. Otherwise tokio seeds it from a process-wide counter and std's
    /// `RandomState`, so the order depends on what ran before in the process and a replay of
    /// one seed may take other branches; use `biased;` or the cfg.
    #[track_caller]
    fn run_tokio<F, Fut>(self, f: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = io::Result<()>>,
    {
        if let Err(e) = self.try_run_tokio(f) {
            panic!("{e}");
        }
    }

    /// As [`run_tokio`](Self::run_tokio), returning the outcome.
    ///
    /// # Errors
    /// As [`Check::try_run`].
    #[track_caller]
    fn try_run_tokio<F, Fut>(self, f: F) -> Result<Passed, CheckError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = io::Result<()>>;

    /// Runs `f` inside [`crate::run_threads`] once per seed: std::net and mio code with the
    /// threads it starts (`std::thread::spawn`, scoped threads, std's locks and channels), as
    /// simulated threads that the seed interleaves (the check's `schedule`, `NETPOLL_SCHEDULE`).
    /// A deadlock between them fails the seed with each thread's blocking call; the replay line
    /// reruns that interleaving. See `Check::run_threads` for the rest.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use netpoll_interpose::CheckInterposed;
    /// use netpoll_scenarios::check::Check;
    ///
    /// Check::new().seeds(0..20).run_threads_interposed(|| {
    ///     let total = Arc::new(Mutex::new(0));
    ///     let hs: Vec<_> = (1..=3)
    ///         .map(|i| {
    ///             let total = total.clone();
    ///             std::thread::spawn(move || *total.lock().unwrap() += i)
    ///         })
    ///         .collect();
    ///     for h in hs {
    ///         h.join().unwrap();
    ///     }
    ///     assert_eq!(*total.lock().unwrap(), 6);
    ///     Ok(())
    /// });
    /// ```
    #[track_caller]
    fn run_threads_interposed(self, f: impl Fn() -> io::Result<()> + Send + Sync + 'static) {
        if let Err(e) = self.try_run_threads_interposed(f) {
            panic!("{e}");
        }
    }

    /// As [`run_threads_interposed`](Self::run_threads_interposed), returning the outcome.
    ///
    /// # Errors
    /// As [`Check::try_run`].
    #[track_caller]
    fn try_run_threads_interposed(
        self,
        f: impl Fn() -> io::Result<()> + Send + Sync + 'static,
    ) -> Result<Passed, CheckError>;

    /// Runs the future `f` makes on a tokio `multi_thread` runtime of `workers` worker threads
    /// with every driver on ([`tokio_runtime_threads`]), built inside [`crate::run_threads`]
    /// once per seed: what `#[tokio::test(flavor = "multi_thread", worker_threads = N)]` runs,
    /// on the simulated kernel, with the workers and the blocking pool (`spawn_blocking`) as
    /// simulated threads interleaved by the seed. A task that panics or an `Err` fails the
    /// seed, and so does a deadlock (each thread's blocking call is reported) and every oracle
    /// of the kernel but the async lost-wakeup one, which judges one thread's waits (see
    /// [`crate::run_threads`]). The runtime is dropped inside the run.
    ///
    /// ```
    /// use netpoll_interpose::CheckInterposed;
    /// use netpoll_scenarios::check::Check;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// Check::new().seeds(0..10).run_tokio_threads(2, || async {
    ///     let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let addr = l.local_addr()?;
    ///     let server = tokio::spawn(async move {
    ///         let (mut s, _) = l.accept().await?;
    ///         let mut buf = [0; 4];
    ///         s.read_exact(&mut buf).await?;
    ///         // The blocking pool is simulated threads too.
    ///         let up = tokio::task::spawn_blocking(move || buf.to_ascii_uppercase()).await?;
    ///         s.write_all(&up).await
    ///     });
    ///     let mut c = tokio::net::TcpStream::connect(addr).await?;
    ///     c.write_all(b"ping").await?;
    ///     let mut buf = [0; 4];
    ///     c.read_exact(&mut buf).await?;
    ///     assert_eq!(&buf, b"PING");
    ///     server.await?
    /// });
    /// ```
    #[track_caller]
    fn run_tokio_threads<F, Fut>(self, workers: usize, f: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<()>>,
    {
        if let Err(e) = self.try_run_tokio_threads(workers, f) {
            panic!("{e}");
        }
    }

    /// As [`run_tokio_threads`](Self::run_tokio_threads), returning the outcome.
    ///
    /// # Errors
    /// As [`Check::try_run`].
    #[track_caller]
    fn try_run_tokio_threads<F, Fut>(self, workers: usize, f: F) -> Result<Passed, CheckError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<()>>;
}

/// How an interposed threaded check starts each run: [`crate::run_threads`], which hosts the
/// threads the program starts; the check's closure runs on the run's `main` thread.
fn launch() -> Launch {
    Arc::new(|runner: Runner, sim: Sim, body| {
        crate::run_threads(runner, sim, move || {
            let k: ThreadedSim =
                host::current_kernel().expect("run_threads runs its closure on a simulated thread");
            body(k)
        })
    })
}

impl CheckInterposed for Check {
    #[track_caller]
    fn try_run_interposed(
        self,
        mut f: impl FnMut() -> io::Result<()>,
    ) -> Result<Passed, CheckError> {
        self.try_run(|sim: &Sim| crate::run(sim, || naming_limits(&mut f)))
    }

    #[track_caller]
    fn try_run_tokio<F, Fut>(self, mut f: F) -> Result<Passed, CheckError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = io::Result<()>>,
    {
        self.try_run(|sim: &Sim| {
            crate::run(sim, || {
                naming_limits(|| {
                    let rt = tokio_runtime(sim.seed())?;
                    rt.block_on(f())
                })
            })
        })
    }

    #[track_caller]
    fn try_run_threads_interposed(
        self,
        f: impl Fn() -> io::Result<()> + Send + Sync + 'static,
    ) -> Result<Passed, CheckError> {
        let caller = Location::caller();
        let body = Arc::new(move |_k: ThreadedSim| naming_limits(&f));
        self.__try_run_threads_with(launch(), body, caller)
    }

    #[track_caller]
    fn try_run_tokio_threads<F, Fut>(self, workers: usize, f: F) -> Result<Passed, CheckError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<()>>,
    {
        let caller = Location::caller();
        let body = Arc::new(move |k: ThreadedSim| {
            naming_limits(|| {
                let rt = tokio_runtime_threads(k.with_sim(Sim::seed), workers)?;
                let r = rt.block_on(f());
                drop(rt);
                r
            })
        });
        self.__try_run_threads_with(launch(), body, caller)
    }
}

/// Runs `f` on a run; if it fails (an `Err` or a panic) after the program ran into something
/// the simulated kernel does not support ([`crate::take_limitation`]), the error or the panic
/// message says so, next to the program's own words.
fn naming_limits<T>(f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let note = |msg: &dyn std::fmt::Display| {
        crate::take_limitation().map(|why| format!("{msg}\n(netpoll-interpose: {why})"))
    };
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Err(e)) => Err(match note(&e) {
            Some(m) => io::Error::new(e.kind(), m),
            None => e,
        }),
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned());
            match msg.and_then(|m| note(&m)) {
                Some(m) => std::panic::panic_any(m),
                None => resume_unwind(p),
            }
        }
    }
}

/// The runtime [`CheckInterposed::run_tokio_threads`] builds for each seed: `multi_thread`
/// with `workers` worker threads (at least 1), every driver the program's tokio features have,
/// and, with `--cfg tokio_unstable`, its random generator seeded with `seed` (as
/// [`tokio_runtime`]). Call it inside [`crate::run_threads`].
///
/// # Errors
/// What `Builder::build` returns.
pub fn tokio_runtime_threads(seed: u64, workers: usize) -> io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(workers.max(1)).enable_all();
    #[cfg(tokio_unstable)]
    b.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = seed;
    b.build()
}

/// The runtime [`CheckInterposed::run_tokio`] builds for each seed: `current_thread`, every
/// driver the program's tokio features have (`enable_all`), and, when tokio is built with
/// `--cfg tokio_unstable`, its random generator (`select!`'s branch order) seeded with `seed`.
/// Call it inside [`crate::run`].
///
/// # Errors
/// What `Builder::build` returns: the signal driver fails on a simulated kernel (see the
/// crate's "Not supported").
pub fn tokio_runtime(seed: u64) -> io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_all();
    #[cfg(tokio_unstable)]
    b.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = seed;
    b.build()
}

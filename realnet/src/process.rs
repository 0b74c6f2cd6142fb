//! Process-wide facts and settings a harness on the real kernel needs, as safe functions: this
//! crate is the only place in the project allowed `unsafe`.

/// CPU time (user + system) the calling thread has used, in nanoseconds (0 if unknown).
pub fn thread_cpu_ns() -> u64 {
    cpu_ns(libc::RUSAGE_THREAD)
}

/// CPU time (user + system) the whole process has used, every thread, in nanoseconds (0 if
/// unknown).
pub fn process_cpu_ns() -> u64 {
    cpu_ns(libc::RUSAGE_SELF)
}

fn cpu_ns(who: libc::c_int) -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value for getrusage to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Raises the soft descriptor limit (`RLIMIT_NOFILE`) to the hard one; returns the limit in
/// force (1024 if it cannot be read).
pub fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit; raising the soft limit to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            r.rlim_cur = r.rlim_max;
        }
    }
    r.rlim_cur
}

/// Sets the soft descriptor limit (`RLIMIT_NOFILE`) to `soft` (the hard limit stays): for a
/// child process that checks what Linux does when descriptors run out (`EMFILE`).
///
/// # Errors
/// `setrlimit`'s, as an `io::Error` with its errno.
pub fn set_fd_limit(soft: u64) -> std::io::Result<()> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    r.rlim_cur = soft.min(r.rlim_max);
    // SAFETY: `r` is a valid rlimit whose soft limit does not exceed its hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Ignores `SIGPIPE` for the whole process, so that writing to a pipe whose reader is gone
/// fails with `EPIPE` instead of killing it. Rust's runtime does this before `main`; a process
/// whose `main` is not Rust's (libFuzzer's) must call it.
pub fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting SIGPIPE's disposition to "ignore" touches no memory of ours.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    });
}

/// The signal [`interrupted`] sends: its handler does nothing and is installed without
/// `SA_RESTART`.
pub const INTERRUPT_SIGNAL: i32 = libc::SIGUSR2;

/// Runs `f` on a thread of its own and keeps sending that thread [`INTERRUPT_SIGNAL`] (every
/// millisecond) until `f` returns; returns what `f` returned. The signal's handler does nothing
/// and is installed (once, for the whole process) without `SA_RESTART`, so a blocking call in
/// `f` — `epoll_wait`, a `read` on an empty socket or pipe — fails with `EINTR` as it would in
/// a program with such a handler. `f` must make a call that blocks until interrupted; a signal
/// that lands before the call sleeps runs the empty handler and changes nothing.
///
/// ```
/// use netpoll::{EpollEvent, Poller};
/// use netpoll_realnet::{process, RealNet};
///
/// let p = RealNet::new();
/// let ep = p.epoll_create1(0).unwrap();
/// let r = process::interrupted(|| p.epoll_wait(ep, &mut [EpollEvent::EMPTY; 1], -1));
/// assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINTR));
/// ```
pub fn interrupted<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    extern "C" fn nothing(_: libc::c_int) {}
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags) to fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0; // no SA_RESTART: interrupted calls fail with EINTR
                         // SAFETY: `sa` is a valid sigaction whose handler is async-signal-safe (it does nothing);
                         // a null old-action pointer is allowed.
        let rc = unsafe { libc::sigaction(INTERRUPT_SIGNAL, &sa, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "sigaction({INTERRUPT_SIGNAL}) failed: a broken libc");
    });

    let done = AtomicBool::new(false);
    let (tid_tx, tid_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    let done = &done;
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
            let out = f();
            done.store(true, Ordering::SeqCst);
            // Stay alive until no more signals can come: pthread_kill needs a live thread.
            let _ = exit_rx.recv();
            out
        });
        let tid = tid_rx
            .recv()
            .expect("the worker thread died before it started");
        while !done.load(Ordering::SeqCst) {
            // SAFETY: `tid` names the worker, which cannot exit before `exit_tx` is sent below;
            // the signal's handler was installed above.
            unsafe {
                libc::pthread_kill(tid, INTERRUPT_SIGNAL);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = exit_tx.send(());
        match worker.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The CPU the calling thread is running on now (`sched_getcpu`), or `None` if unknown.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and only reads the calling thread's state.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Pins the calling thread to `cpu` (`sched_setaffinity`); `false` if that failed (the thread
/// then runs where it did). Threads that take turns, one running at a time (simulated threads),
/// hand over far cheaper on one CPU: no cross-CPU wakeups.
pub fn pin_thread_to_cpu(cpu: usize) -> bool {
    // SAFETY: an all-zero `cpu_set_t` is the empty set, a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return false;
    }
    // SAFETY: `set` is a valid cpu_set_t and `cpu` is within its size (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_pinned_to_a_cpu_stays_there() {
        std::thread::spawn(|| {
            let cpu = super::current_cpu().expect("sched_getcpu works on Linux");
            assert!(super::pin_thread_to_cpu(cpu));
            for _ in 0..100 {
                std::thread::yield_now();
                assert_eq!(super::current_cpu(), Some(cpu));
            }
            assert!(
                !super::pin_thread_to_cpu(usize::MAX),
                "a CPU beyond the set is refused"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_fd_limit_is_known_and_cpu_time_moves() {
        assert!(super::raise_fd_limit() >= 1024);
        let t0 = super::thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(super::thread_cpu_ns() >= t0);
        super::ignore_sigpipe();
    }

    #[test]
    fn a_blocking_read_is_interrupted() {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid, writable array of two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let r = super::interrupted(|| {
            let mut b = [0u8; 1];
            // SAFETY: `b` is a valid, writable 1-byte buffer; fds[0] is our pipe's read end.
            let n = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
            // errno is per thread: read it on the thread that made the call.
            (n, std::io::Error::last_os_error().raw_os_error())
        });
        assert_eq!(r, (-1, Some(libc::EINTR)));
        // SAFETY: both descriptors are ours and open.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}

//! Process-wide facts and settings a harness on the real kernel needs, as safe functions: this
//! crate is the only place in the project allowed `unsafe`.

/// CPU time (user + system) the calling thread has used, in nanoseconds (0 if unknown).
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value for getrusage to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
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

#[cfg(test)]
mod tests {
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
}

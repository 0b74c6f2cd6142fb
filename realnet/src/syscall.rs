//! The `syscall!` macro: call a `libc` function and turn its `-1` into the thread's errno.

/// `syscall!(name(args...))` calls `libc::name(args...)` and returns
/// `io::Result<return type>`: `Err(io::Error::last_os_error())` when the call returned `-1`.
///
/// The expansion contains an `unsafe` block; the caller's `// SAFETY:` comment must sit right
/// above the `syscall!` invocation and justify the arguments.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: a `libc` call is sound when its arguments are; every `syscall!` use carries
        // its own `// SAFETY:` comment saying why its pointers and lengths are valid.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub(crate) use syscall;

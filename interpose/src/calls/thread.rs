//! Threads and name resolution: `pthread_create` and `getaddrinfo`.

use super::*;

/// `pthread_create(3)`: a thread of a threaded run ([`crate::run_threads`]) starts another
/// simulated thread on the same kernel (`threads.rs`). A thread on a one-thread run cannot
/// start another (its kernel is driven by one thread): `EAGAIN` and a message. This is what
/// tokio's `spawn_blocking`, its name resolution and its multi-thread runtime run into there.
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    t: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
) -> c_int {
    guard("pthread_create", || match current() {
        None if crate::auto::base_seed().is_some() => {
            let mut stack = 0;
            if !attr.is_null() {
                // SAFETY: a non-NULL `attr` is an initialised attribute object, as
                // `pthread_create` requires; `stack` is a valid place for the size.
                unsafe { libc::pthread_attr_getstacksize(attr, &mut stack) };
            }
            let s = Box::into_raw(Box::new(crate::auto::Start {
                start,
                arg,
                // A thread that a supervisor of a threaded run starts is that run's first
                // thread, not a test.
                threaded: crate::auto::threaded() && !crate::state::is_off(),
                stack,
            }));
            // SAFETY: the trampoline takes back `s` and calls `start(arg)` on the new thread.
            let r = unsafe { real::pthread_create(t, attr, crate::auto::trampoline, s.cast()) };
            if r != 0 {
                // SAFETY: the thread was not created; `s` is still ours.
                drop(unsafe { Box::from_raw(s) });
            }
            r
        }
        // SAFETY: forwarded unchanged.
        None => unsafe { real::pthread_create(t, attr, start, arg) },
        // SAFETY: as for this function.
        Some(cur) if cur.sim.is_threaded() => unsafe {
            crate::threads::create(cur, t, attr, start, arg)
        },
        Some(_) => refuse(format_args!("pthread_create"), Limit::Threads, libc::EAGAIN),
    })
}

/// `getaddrinfo(3)`: on a run, numeric IPv4 hosts only; names fail with `EAI_FAIL` and a
/// message (the simulated kernel has no resolver).
///
/// # Safety
/// As for the C function.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const libc::c_char,
    service: *const libc::c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    guard("getaddrinfo", || {
        let numeric = node.is_null()
            // SAFETY: a non-NULL `node` is a NUL-terminated string.
            || unsafe { std::ffi::CStr::from_ptr(node) }
                .to_str()
                .is_ok_and(|s| s.parse::<Ipv4Addr>().is_ok());
        if current().is_some() && !numeric {
            // SAFETY: as above.
            let name = unsafe { std::ffi::CStr::from_ptr(node) }.to_string_lossy();
            refuse(
                format_args!("getaddrinfo({name:?})"),
                Limit::NameResolution,
                libc::EAI_FAIL,
            );
            return libc::EAI_FAIL;
        }
        // SAFETY: forwarded unchanged.
        unsafe { real::getaddrinfo(node, service, hints, res) }
    })
}

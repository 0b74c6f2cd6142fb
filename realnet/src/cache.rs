//! [`prefetch`]: the CPU's prefetch instruction, for [`netpoll::hint::set_prefetch`].
//!
//! `netpoll` holds no `unsafe`, so the instruction lives here, on the system boundary beside the
//! allocator: the one `unsafe` block below. A binary installs it first thing (`netpoll-sim`
//! does; see [`install`]), and the netpoller and the simulated kernel then hint at what they
//! will touch next (`netpoll::hint`).
//!
//! ```
//! // In a test binary of your own, before the first runtime:
//! let _ = netpoll_realnet::cache::install(); // Err if something installed a hint already
//! assert!(netpoll::hint::installed());
//! let state = vec![0u8; 256];
//! netpoll::hint::prefetch(&state[..], 256); // four hints; nothing else happens
//! ```

/// Brings the cache line holding `p` into the caches (`prefetcht0` on x86_64), without waiting
/// for it; nothing on other architectures. Any address is fine, null or dangling included: a
/// prefetch never faults and changes nothing a program can observe.
#[inline]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is `unsafe` only because it is an SSE intrinsic (a
    // `#[target_feature]` function), and SSE is part of the x86_64 baseline: every x86_64 CPU
    // has it. The instruction reads nothing the program can see and never faults, whatever the
    // address (Intel SDM, PREFETCHh: "does not affect program behavior"; an invalid address
    // is ignored), so no pointer validity is required of `p`.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Installs [`prefetch`] as the process's hint ([`netpoll::hint::set_prefetch`]).
///
/// # Errors
/// [`netpoll::hint::AlreadySet`] if a hint was installed before.
pub fn install() -> Result<(), netpoll::hint::AlreadySet> {
    netpoll::hint::set_prefetch(prefetch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_is_fine() {
        let v = [7u8; 64];
        prefetch(v.as_ptr());
        prefetch(std::ptr::null());
        prefetch(usize::MAX as *const u8);
        let gone = Box::new(1u64);
        let p = (&*gone as *const u64).cast::<u8>();
        drop(gone);
        prefetch(p);
        assert_eq!(v[63], 7);
    }
}

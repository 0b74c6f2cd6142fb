//! Every failure says how to replay it (STYLE point 12): each run announces a one-line summary
//! of its input (target, seed, sizes) *before* it runs, and a panic hook prints the summary of
//! the input that was running when the panic happened.
//!
//! Set `NETPOLL_FUZZ_LOG=1` to print every summary as it is announced (slow under libFuzzer).
//!
//! The hook also lets a harness step over a *known* sim panic ([`KNOWN_PANICS`], reported in
//! FINDINGS.md) so that fuzzing goes on finding new ones: inside [`tolerating_known_panics`],
//! such a panic unwinds quietly to the harness instead of reaching libFuzzer's hook (which
//! aborts). `NETPOLL_FUZZ_STRICT=1` turns that off.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

thread_local! {
    static CURRENT: RefCell<String> = const { RefCell::new(String::new()) };
    static TOLERATING: Cell<bool> = const { Cell::new(false) };
    static KNOWN_HIT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// A sim panic already reported, recognised by where it happens and what it says.
#[derive(Debug)]
pub struct KnownPanic {
    /// The FINDINGS.md entry.
    pub id: &'static str,
    /// The end of the panicking file's path.
    pub file_suffix: &'static str,
    /// A part of the panic message.
    pub message: &'static str,
}

/// The known sim panics whose fix is pending: none (P1, the SYN-ACK double free, is fixed and
/// has its regression test). List one here, with `NETPOLL_FUZZ_STRICT=0`, to fuzz past it.
pub const KNOWN_PANICS: &[KnownPanic] = &[];

fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("NETPOLL_FUZZ_LOG").is_some_and(|v| v != "0"))
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if TOLERATING.with(Cell::get) {
                let file = info.location().map_or("", |l| l.file());
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let known = KNOWN_PANICS
                    .iter()
                    .find(|k| file.ends_with(k.file_suffix) && msg.contains(k.message));
                if let Some(k) = known {
                    KNOWN_HIT.with(|h| h.set(Some(k.id)));
                    return;
                }
            }
            CURRENT.with(|c| {
                if let Ok(s) = c.try_borrow() {
                    if !s.is_empty() {
                        eprintln!("netpoll-fuzz: failing input: {s}");
                    }
                }
            });
            prev(info);
        }));
    });
}

/// Records `summary` as the input now running (and prints it if `NETPOLL_FUZZ_LOG` is set).
pub fn announce(summary: String) {
    install_hook();
    if verbose() {
        eprintln!("netpoll-fuzz: {summary}");
    }
    CURRENT.with(|c| *c.borrow_mut() = summary);
}

/// Runs `f`; a [known](KNOWN_PANICS) sim panic inside it becomes `Err(id)` (unless `strict`),
/// any other panic goes on unwinding.
///
/// # Errors
/// The known panic's id.
pub fn tolerating_known_panics<T>(strict: bool, f: impl FnOnce() -> T) -> Result<T, &'static str> {
    if strict {
        return Ok(f());
    }
    install_hook();
    TOLERATING.with(|t| t.set(true));
    KNOWN_HIT.with(|h| h.set(None));
    let r = catch_unwind(AssertUnwindSafe(f));
    TOLERATING.with(|t| t.set(false));
    match r {
        Ok(v) => Ok(v),
        Err(payload) => match KNOWN_HIT.with(Cell::take) {
            Some(id) => Err(id),
            None => std::panic::resume_unwind(payload),
        },
    }
}

//! # netpoll-macros: `#[netpoll::test]`
//!
//! A `#[test]` whose body runs on the simulated kernel once per seed, through
//! `netpoll_scenarios::check::Check` (see that module for what fails a seed and what a failure
//! prints). Re-exported as `netpoll::test` and `netpoll_scenarios::test`; the expansion names
//! `::netpoll_scenarios`, so the crate using it needs `netpoll-scenarios` as a
//! (dev-)dependency.
//!
//! ```ignore
//! #[netpoll::test(seeds = 0..1000, faults = "swarm", check_determinism = true)]
//! fn echo_survives_faults(sim: &netpoll_sim::Sim) -> std::io::Result<()> {
//!     // ... a server and its clients on `sim` ...
//!     Ok(())
//! }
//! ```
//!
//! Arguments, all optional: `seeds` (a range of `u64`, default `0..1000`), `faults` (`"none"`,
//! `"chaos"`, `"swarm"` (each seed runs twice: the quiet phase, exactly `"none"`'s run, then
//! the faulted one), `"chaos-only"`, `"swarm-only"` or an explicit plan as a failure report
//! prints it; default `"none"`),
//! `check_determinism` (default `false`), `shrink_runs` (default 64). The function takes one
//! argument, the kernel (`&Sim`), and returns `std::io::Result<()>` or nothing.
//!
//! Unmodified programs (the crate needs `netpoll-interpose` as a dev-dependency too, which links
//! the interposer into that test binary only):
//!
//! ```ignore
//! // An async tokio test, as #[madsim::test] or #[tokio::test]: each seed runs it on a fresh
//! // current_thread runtime on a fresh simulated kernel (`CheckInterposed::run_tokio`).
//! #[netpoll::test(tokio, seeds = 0..200, faults = "chaos")]
//! async fn echo() -> std::io::Result<()> {
//!     let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     // ...
//!     Ok(())
//! }
//!
//! // std::net or mio code: `CheckInterposed::run_interposed`.
//! #[netpoll::test(interposed, seeds = 0..100)]
//! fn std_echo() -> std::io::Result<()> { Ok(()) }
//! ```
//!
//! Simulated threads (`Check::run_threads`): the function takes the threads' shared kernel,
//! `k: netpoll_threads::ThreadedSim`, and starts threads with `netpoll_threads::spawn`; the seed
//! also picks the interleaving. `schedule` is `"random"` (the default) or `"pct:DEPTH:STEPS"`.
//! With `tokio` or `interposed`, `threads` runs the unmodified program with the threads it
//! starts (`netpoll-interpose`'s threaded checks); `workers = N` (default 2) sizes a tokio
//! `multi_thread` runtime.
//!
//! ```ignore
//! #[netpoll::test(threads, seeds = 0..500, schedule = "pct:3:200")]
//! fn two_threads(k: netpoll_threads::ThreadedSim) -> std::io::Result<()> {
//!     // ... netpoll_threads::spawn(...) ...
//!     Ok(())
//! }
//!
//! // #[tokio::test(flavor = "multi_thread", worker_threads = 2)], on the sim:
//! #[netpoll::test(tokio, threads, workers = 2, seeds = 0..50)]
//! async fn echo_mt() -> std::io::Result<()> { Ok(()) }
//! ```
//!
//! Other attributes (`#[should_panic]`, `#[ignore]`) are kept. `NETPOLL_SEED`, `NETPOLL_SEEDS`,
//! `NETPOLL_FAULTS`, `NETPOLL_CHECK_DETERMINISM` and (threads) `NETPOLL_SCHEDULE` override the
//! arguments at run time.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, ReturnType, Token};

/// `#[netpoll::test(seeds = A..B, faults = "swarm", check_determinism = true)]`, and
/// `#[netpoll::test(tokio, ...)]` on an `async fn` of nothing: see the [crate docs](crate).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let args = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut f: ItemFn = syn::parse2(item)?;
    let mut calls = Vec::new();
    let mut mode = Mode::Poller;
    let mut threads = false;
    let mut workers = None;
    for a in &args {
        let a = match a {
            Meta::Path(p) if p.is_ident("threads") => {
                threads = true;
                continue;
            }
            Meta::Path(p) if p.is_ident("tokio") => {
                mode = Mode::Tokio;
                continue;
            }
            Meta::Path(p) if p.is_ident("interposed") => {
                mode = Mode::Interposed;
                continue;
            }
            Meta::NameValue(a) => a,
            other => return Err(syn::Error::new(other.span(), UNKNOWN)),
        };
        let name = a
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let v = &a.value;
        calls.push(match name.as_str() {
            "seeds" => quote_spanned! {v.span()=> .seeds(#v) },
            "faults" => {
                let Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) = v
                else {
                    return Err(syn::Error::new(
                        v.span(),
                        "faults = \"none\" | \"chaos\" | \"swarm\" | \"<explicit plan>\"",
                    ));
                };
                quote_spanned! {v.span()=> .faults_str(#s) }
            }
            "check_determinism" => quote_spanned! {v.span()=> .check_determinism(#v) },
            "shrink_runs" => quote_spanned! {v.span()=> .shrink_runs(#v) },
            "schedule" => {
                let Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) = v
                else {
                    return Err(syn::Error::new(
                        v.span(),
                        "schedule = \"random\" | \"pct:DEPTH:STEPS\"",
                    ));
                };
                quote_spanned! {v.span()=> .schedule_str(#s) }
            }
            "workers" => {
                workers = Some(v.clone());
                continue;
            }
            _ => return Err(syn::Error::new(a.path.span(), UNKNOWN)),
        });
    }
    if let Some(w) = &workers {
        if !(threads && matches!(mode, Mode::Tokio)) {
            return Err(syn::Error::new(
                w.span(),
                "workers = N sizes the tokio runtime of #[netpoll::test(tokio, threads)]",
            ));
        }
    }
    let arity = match mode {
        Mode::Poller => 1,
        Mode::Tokio | Mode::Interposed => 0,
    };
    if f.sig.inputs.len() != arity {
        return Err(syn::Error::new(
            f.sig.inputs.span(),
            match mode {
                Mode::Poller if threads => {
                    "a #[netpoll::test(threads)] function takes one argument, the threads' \
                     shared kernel: `k: netpoll_threads::ThreadedSim`"
                }
                Mode::Poller => {
                    "a #[netpoll::test] function takes one argument, the simulated kernel: \
                     `sim: &Sim`"
                }
                _ => {
                    "a #[netpoll::test(tokio)] or #[netpoll::test(interposed)] function takes no \
                     argument: its sockets are on the simulated kernel already"
                }
            },
        ));
    }
    match (mode, f.sig.asyncness.is_some()) {
        (Mode::Tokio, false) => {
            return Err(syn::Error::new(
                f.sig.fn_token.span(),
                "a #[netpoll::test(tokio)] function is async",
            ))
        }
        (Mode::Poller, true) => {
            return Err(syn::Error::new(
                f.sig.asyncness.span(),
                "a #[netpoll::test] function is not async: run tasks with \
                 netpoll_scenarios::check::runtime(sim)?.block_on(...), or write \
                 #[netpoll::test(tokio)] for a tokio test",
            ))
        }
        (Mode::Interposed, true) => {
            return Err(syn::Error::new(
                f.sig.asyncness.span(),
                "a #[netpoll::test(interposed)] function is not async: write \
                 #[netpoll::test(tokio)] for a tokio test",
            ))
        }
        _ => {}
    }
    let name = f.sig.ident.clone();
    let returns = !matches!(f.sig.output, ReturnType::Default);
    let attrs = std::mem::take(&mut f.attrs);
    let vis = f.vis.clone();
    f.sig.ident = syn::Ident::new("__netpoll_test_body", name.span());
    f.vis = syn::Visibility::Inherited;
    let run = match (mode, returns) {
        (Mode::Poller, false) if threads => quote! {
            .run_threads(|k| { __netpoll_test_body(k); ::std::io::Result::Ok(()) })
        },
        (Mode::Poller, true) if threads => quote! { .run_threads(__netpoll_test_body) },
        (Mode::Interposed, false) if threads => quote! {
            .run_threads_interposed(|| { __netpoll_test_body(); ::std::io::Result::Ok(()) })
        },
        (Mode::Interposed, true) if threads => {
            quote! { .run_threads_interposed(__netpoll_test_body) }
        }
        (Mode::Tokio, returns) if threads => {
            let w = match &workers {
                Some(w) => quote! { #w },
                None => quote! { 2 },
            };
            if returns {
                quote! { .run_tokio_threads(#w, __netpoll_test_body) }
            } else {
                quote! {
                    .run_tokio_threads(#w, || async {
                        __netpoll_test_body().await;
                        ::std::io::Result::Ok(())
                    })
                }
            }
        }
        (Mode::Poller, false) => {
            quote! { .run(|sim| { __netpoll_test_body(sim); ::std::io::Result::Ok(()) }) }
        }
        (Mode::Poller, true) => quote! { .run(|sim| __netpoll_test_body(sim)) },
        (Mode::Interposed, false) => quote! {
            .run_interposed(|| { __netpoll_test_body(); ::std::io::Result::Ok(()) })
        },
        (Mode::Interposed, true) => quote! { .run_interposed(__netpoll_test_body) },
        (Mode::Tokio, false) => quote! {
            .run_tokio(|| async { __netpoll_test_body().await; ::std::io::Result::Ok(()) })
        },
        (Mode::Tokio, true) => quote! { .run_tokio(__netpoll_test_body) },
    };
    let import = match mode {
        Mode::Poller => quote! {},
        _ => quote! { use ::netpoll_interpose::CheckInterposed as _; },
    };
    Ok(quote! {
        #(#attrs)*
        #[test]
        #vis fn #name() {
            #f
            #import
            ::netpoll_scenarios::check::Check::new()
                #(#calls)*
                .test_name(&::netpoll_scenarios::check::__test_path(
                    ::std::module_path!(),
                    ::std::stringify!(#name),
                ))
                #run;
        }
    })
}

/// The error for an argument the attribute does not know.
const UNKNOWN: &str = "unknown argument: expected tokio, interposed, threads, seeds = A..B, \
     faults = \"swarm\", check_determinism = true, shrink_runs = N, schedule = \"pct:3:1000\" \
     or workers = N";

/// What the test's body is.
#[derive(Clone, Copy)]
enum Mode {
    /// A function of the kernel, `fn(sim: &Sim)`: `Check::run`.
    Poller,
    /// An async function of nothing, run on tokio on the kernel: `run_tokio`.
    Tokio,
    /// A function of nothing whose std or mio calls go to the kernel: `run_interposed`.
    Interposed,
}

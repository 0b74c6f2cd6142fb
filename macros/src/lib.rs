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
//! argument, the kernel (`&Sim`), and returns `std::io::Result<()>` or nothing. Other
//! attributes (`#[should_panic]`, `#[ignore]`) are kept. `NETPOLL_SEED`, `NETPOLL_SEEDS`,
//! `NETPOLL_FAULTS` and `NETPOLL_CHECK_DETERMINISM` override the arguments at run time.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, MetaNameValue, ReturnType, Token};

/// `#[netpoll::test(seeds = A..B, faults = "swarm", check_determinism = true)]`: see the
/// [crate docs](crate).
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
    let args = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args)?;
    let mut f: ItemFn = syn::parse2(item)?;
    let mut calls = Vec::new();
    for a in &args {
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
            _ => {
                return Err(syn::Error::new(
                    a.path.span(),
                    "unknown argument: expected seeds = A..B, faults = \"swarm\", \
                     check_determinism = true or shrink_runs = N",
                ))
            }
        });
    }
    if f.sig.inputs.len() != 1 {
        return Err(syn::Error::new(
            f.sig.inputs.span(),
            "a #[netpoll::test] function takes one argument, the simulated kernel: `sim: &Sim`",
        ));
    }
    if f.sig.asyncness.is_some() {
        return Err(syn::Error::new(
            f.sig.asyncness.span(),
            "a #[netpoll::test] function is not async: run tasks with \
             netpoll_scenarios::check::runtime(sim)?.block_on(...)",
        ));
    }
    let name = f.sig.ident.clone();
    let call = match &f.sig.output {
        ReturnType::Default => quote! { { __netpoll_test_body(sim); ::std::io::Result::Ok(()) } },
        ReturnType::Type(..) => quote! { __netpoll_test_body(sim) },
    };
    let attrs = std::mem::take(&mut f.attrs);
    let vis = f.vis.clone();
    f.sig.ident = syn::Ident::new("__netpoll_test_body", name.span());
    f.vis = syn::Visibility::Inherited;
    Ok(quote! {
        #(#attrs)*
        #[test]
        #vis fn #name() {
            #f
            ::netpoll_scenarios::check::Check::new()
                #(#calls)*
                .test_name(&::netpoll_scenarios::check::__test_path(
                    ::std::module_path!(),
                    ::std::stringify!(#name),
                ))
                .run(|sim| #call);
        }
    })
}

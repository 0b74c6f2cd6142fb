//! Shows what a fuzz input file means, and replays it step by step.
//!
//! ```text
//! cargo run -p netpoll-fuzzops --example decode -- <sim_no_panic|differential|et_handler> FILE
//! ```
//!
//! Prints the decoded input; for `sim_no_panic` it then runs the ops one at a time, printing
//! each op and what it returned before running the next (so a hang or panic shows its op); the
//! other targets run whole and print their verdict.

use netpoll_fuzzops::et::{self, EtInput};
use netpoll_fuzzops::interp::{Interp, Mode};
use netpoll_fuzzops::{decode, differential, DiffInput, NoPanicInput};
use netpoll_sim::Sim;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, file] = &args[..] else {
        eprintln!("usage: decode <sim_no_panic|differential|et_handler> FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(file).expect("readable input file");
    match target.as_str() {
        "sim_no_panic" => {
            let Some(input) = decode::<NoPanicInput>(&data) else {
                return println!("too short to decode: the target does nothing with it");
            };
            println!(
                "seed {:#x} custom {} {:?}",
                input.seed, input.custom, input.knobs
            );
            let cfg = if input.custom {
                input.knobs.config()
            } else {
                netpoll_sim::SimConfig::default()
            };
            let sim = Sim::with_config(input.seed, cfg);
            let mut it = if netpoll_fuzzops::strict_from_env() {
                Interp::new(sim, Mode::Sim)
            } else {
                Interp::with_hang_guard(sim, Mode::Sim, Sim::pending)
            };
            for (i, op) in input.ops.iter().take(netpoll_fuzzops::MAX_OPS).enumerate() {
                println!("{i:>3}: {op:?}");
                let obs = it.apply(op);
                println!(
                    "     -> {obs:?}   (made {:?}, now {:?})",
                    it.made(),
                    it.p.now_ns()
                );
            }
        }
        "differential" => {
            let Some(input) = decode::<DiffInput>(&data) else {
                return println!("too short to decode: the target does nothing with it");
            };
            println!("{input:#?}");
            match differential::run(&input) {
                Ok(n) => println!("agree on all {n} steps"),
                Err(d) => println!("{d}"),
            }
        }
        "et_handler" => {
            let Some(input) = decode::<EtInput>(&data) else {
                return println!("too short to decode: the target does nothing with it");
            };
            println!("{input:#?}");
            match et::run(&input) {
                Ok(()) => println!("oracles hold"),
                Err(r) => println!("{r}"),
            }
        }
        other => {
            eprintln!("unknown target {other}");
            std::process::exit(2);
        }
    }
}

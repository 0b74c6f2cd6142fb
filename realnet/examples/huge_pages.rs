//! A 256 MiB table under `HugePages`, touched at random like a simulation's connection table:
//! prints where it lives and how much of the process is backed by huge pages.
//!
//! ```text
//! cargo run --release -p netpoll-realnet --example huge_pages
//! NETPOLL_HUGE_PAGES=0 cargo run --release -p netpoll-realnet --example huge_pages
//! ```

use netpoll_realnet::alloc::{HugePages, HUGE_PAGE};

#[global_allocator]
static ALLOC: HugePages = HugePages::new();

/// `AnonHugePages` of the whole process, in KiB.
fn anon_huge_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let on = match ALLOC.configure_from_env() {
        Ok(on) => on,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let before = anon_huge_kib();
    let mut table: Vec<u64> = Vec::new();
    for i in 0..(32u64 << 20) {
        table.push(i); // grows by doubling: 2 MiB ... 256 MiB
    }
    // A fixed pseudo-random walk (an LCG), so every run touches the same slots.
    let (mut x, mut sum) = (1u64, 0u64);
    for _ in 0..10_000_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        sum = sum.wrapping_add(table[(x >> 33) as usize % table.len()]);
    }
    println!("huge pages on: {on}");
    println!(
        "table: {} MiB at {:p} (2 MiB-aligned: {})",
        (table.len() * 8) >> 20,
        table.as_ptr(),
        table.as_ptr() as usize % HUGE_PAGE == 0
    );
    println!("{:?}", ALLOC.stats());
    println!(
        "AnonHugePages: {} kB -> {} kB (checksum {sum})",
        before,
        anon_huge_kib()
    );
}

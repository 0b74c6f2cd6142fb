//! `HugePages` as this test binary's global allocator, on the real kernel: large blocks are
//! 2 MiB-aligned mappings marked `MADV_HUGEPAGE` (the `hg` flag in `/proc/self/smaps`), grow
//! without losing bytes or alignment, and are backed by huge pages once touched, unless the
//! kernel says it could not (THP unavailable, or a fallback it counts in `/proc/vmstat`).

use netpoll_realnet::alloc::{HugePages, HUGE_PAGE};

#[global_allocator]
static ALLOC: HugePages = HugePages::new();

fn aligned<T>(v: &[T]) -> bool {
    v.as_ptr() as usize % HUGE_PAGE == 0
}

/// The `/proc/self/smaps` entry of the mapping holding `addr`: (`AnonHugePages` in KiB,
/// `VmFlags`).
fn smaps_of(addr: usize) -> (u64, String) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    let mut huge_kib = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if !inside {
            continue;
        }
        if let Some(v) = line.strip_prefix("AnonHugePages:") {
            huge_kib = Some(v.trim().trim_end_matches("kB").trim().parse().unwrap());
        }
        if let Some(v) = line.strip_prefix("VmFlags:") {
            return (huge_kib.unwrap(), v.trim().to_string());
        }
    }
    panic!("no mapping holds {addr:#x}");
}

/// A counter of `/proc/vmstat` (0 if absent).
fn vmstat(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/vmstat").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_large_vec_is_2mib_aligned_and_a_small_one_is_mallocs() {
    let big: Vec<u64> = Vec::with_capacity(1 << 20);
    assert!(aligned(&big));
    let small = vec![1u8; 4000];
    assert_eq!(small.iter().map(|&b| b as u32).sum::<u32>(), 4000);
    assert!(ALLOC.stats().blocks_mapped >= 1);
}

#[test]
fn a_vec_growing_by_doubling_keeps_its_bytes_and_alignment() {
    let mut v: Vec<u64> = Vec::new();
    let mut caps = 0;
    for i in 0..3_000_000u64 {
        if v.len() == v.capacity() {
            caps += 1;
        }
        v.push(i * 7);
        if v.capacity() * 8 >= HUGE_PAGE {
            assert!(aligned(&v), "len {}: not 2 MiB-aligned", v.len());
        }
    }
    assert!(caps > 10);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 7));
    assert!(
        ALLOC.stats().blocks_moved >= 1,
        "growth past 2 MiB moved pages"
    );
    v.truncate(300_000);
    v.shrink_to_fit(); // 2.4 MiB: stays a mapping
    assert!(aligned(&v));
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 7));
    v.truncate(1000);
    v.shrink_to_fit(); // back to malloc
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 7));
}

#[test]
fn a_zeroed_large_vec_is_zero() {
    for _ in 0..3 {
        let mut v = vec![0u32; 3 << 20];
        assert!(aligned(&v));
        assert!(v.iter().all(|&x| x == 0));
        v.iter_mut().for_each(|x| *x = 0xdead_beef); // dirty it before it is freed and remade
    }
}

/// The real-kernel fact: after touching a 16 MiB block, its mapping is flagged `hg`
/// (`MADV_HUGEPAGE`) and holds huge pages, unless the kernel refused the advice (`EINVAL`: no
/// THP), THP is off (`never`), or it counted a fault that fell back to small pages.
#[test]
fn a_touched_large_block_gets_huge_pages() {
    let fallbacks_before = vmstat("thp_fault_fallback");
    let mut v = vec![0u8; 16 << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    let addr = v.as_ptr() as usize;
    assert_eq!(addr % HUGE_PAGE, 0);
    let (huge_kib, flags) = smaps_of(addr);
    let stats = ALLOC.stats();
    if stats.advice_refused > 0 {
        assert_eq!(stats.last_refusal_errno, libc::EINVAL, "{stats:?}");
        assert!(!flags.split(' ').any(|f| f == "hg"), "{flags}");
        return;
    }
    assert!(
        flags.split(' ').any(|f| f == "hg"),
        "no MADV_HUGEPAGE: {flags}"
    );
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if thp.contains("[never]") {
        return;
    }
    assert!(
        huge_kib > 0 || vmstat("thp_fault_fallback") > fallbacks_before,
        "no huge page and no fallback counted: AnonHugePages {huge_kib} kB, THP {thp:?}"
    );
    assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 4096);
}

/// The real-kernel fact for a growing block: a `Vec` that doubled past 2 MiB, below
/// `FULL_ADVICE`, is not flagged `hg` (its grown part keeps small pages), but the part it had
/// filled was collapsed into huge pages by `MADV_COLLAPSE`, unless the kernel refused (before
/// Linux 6.1, or short of huge pages) or THP is off.
#[test]
fn a_grown_vec_has_its_old_part_in_huge_pages_and_its_new_part_in_small_ones() {
    let mut v: Vec<u64> = Vec::new();
    let before = ALLOC.stats().collapse_refused;
    while v.len() < (5 << 20) / 8 {
        v.push(v.len() as u64); // 1 MiB ... 8 MiB: the last growth went from 4 MiB to 8 MiB
    }
    assert_eq!(v.capacity() * 8, 8 << 20);
    let (huge_kib, flags) = smaps_of(v.as_ptr() as usize);
    assert!(!flags.split(' ').any(|f| f == "hg"), "{flags}");
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if ALLOC.stats().collapse_refused == before && !thp.contains("[never]") {
        assert!(
            huge_kib >= 4096,
            "AnonHugePages {huge_kib} kB, {:?}",
            ALLOC.stats()
        );
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
}

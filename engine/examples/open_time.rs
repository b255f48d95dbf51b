//! Open time against the log's size (issue 14): grows a log with `WalConfig` defaults and, at each
//! size, times `Wal::open` (reads records from the newest segment the manifest lists as holding
//! data, header-checks older ones) and, in the same run, an open of the same directory without its
//! manifest (the full scan every open did before: fsync and read every segment), and `read_log`
//! (what `tradewal verify` reads).
//! `cargo run --release -p tradewal --example open_time -- DIR [MAX_SEGMENTS]`
mod common;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tradewal::*;

fn grow(wal: &Wal, rotations: u64, from: &mut u64) {
    let it = common::probe_intent();
    let mut q: VecDeque<Ticket> = VecDeque::with_capacity(4096);
    let target = wal.stats().rotations + rotations;
    while wal.stats().rotations < target {
        for _ in 0..4096 {
            if q.len() >= 4096 {
                let l = q.pop_front().unwrap().wait().unwrap();
                drop(wal.mark_executed(l).unwrap());
            }
            let mut x = it;
            x.ts_ns = *from as i64;
            *from += 1;
            q.push_back(wal.append(&x).unwrap());
        }
    }
    for t in q {
        let l = t.wait().unwrap();
        drop(wal.mark_executed(l).unwrap());
    }
}

fn timed_open(dir: &std::path::Path) -> (Duration, Option<u64>, usize) {
    let t = Instant::now();
    let wal = Wal::open(WalConfig::new(dir)).unwrap();
    let el = t.elapsed();
    let r = (el, wal.recovered().scanned_from_segment, wal.recovered().segments.len());
    wal.close().unwrap();
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("./open-time-probe", |s| s));
    let max: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(24);
    let _ = std::fs::remove_dir_all(&dir);
    println!("kept_segs  allocated_MiB  open_ms(manifest)  read_from  open_ms(no manifest: full scan)  read_log_ms");
    // Baseline: a new, empty log (the first segment and its spare zero-filled, nothing to read).
    let (fresh, _, _) = timed_open(&dir);
    println!("{:>9}  {:>13}  {:>17.1}  {:>9}  {:>31}  {:>11}", 0, 0, fresh.as_secs_f64() * 1e3, "-", "-", "-");
    let mut from = 0;
    let mut size = 0u64;
    for step in [1u64, 2, 4, 8, 16, 24, 32].into_iter().filter(|&s| s <= max) {
        let wal = Wal::open(WalConfig::new(&dir)).unwrap();
        grow(&wal, step - size, &mut from);
        size = step;
        wal.close().unwrap();
        let (a, from_seg, segs) = timed_open(&dir);
        let (b, _, _) = timed_open(&dir);
        let with = a.min(b);
        std::fs::remove_file(dir.join(tradewal::manifest::MANIFEST_FILE)).expect("the log has a manifest");
        let (full, full_from, _) = timed_open(&dir);
        let t = Instant::now();
        read_log(&dir, |_, _| {}).unwrap();
        let rl = t.elapsed();
        let mib: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum::<u64>() >> 20;
        println!(
            "{segs:>9}  {mib:>13}  {:>17.1}  {:>9}  {:>31.1}  {:>11.1}",
            with.as_secs_f64() * 1e3,
            from_seg.map_or("-".into(), |n| n.to_string()),
            full.as_secs_f64() * 1e3,
            rl.as_secs_f64() * 1e3
        );
        assert!(full_from.is_none_or(|n| n <= from_seg.unwrap_or(n)), "without a manifest open reads from the first segment");
    }
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Quick QD1 probe: append → wait durable, one at a time; prints p50/p99/p99.9. The device floor
//! beside it: the bench's QD1 section (`cargo run --release -p tradewal-bench -- --only qd1`).
//! `cargo run --release -p tradewal --example qd1 -- DIR [N] [spin|park] [delete]`
//! (`delete`: `Retention::Delete`, under which rotations recycle retired segment files instead of
//! zero-filling new spares; the line also counts rotations and recycled spares.) Environment:
//! `TW_TRACE` prints the slowest appends with their index, `TW_UNPIN` runs the writer unpinned,
//! `TW_NOMANIFEST` updates the manifest once a minute.
mod common;
use std::time::Instant;
use tradewal::*;

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("./qd1-probe", |s| s));
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let spin = args.iter().skip(3).any(|s| s == "spin");
    let delete = args.iter().skip(3).any(|s| s == "delete");
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = WalConfig::new(&dir);
    if delete {
        cfg = cfg.retention(Retention::Delete);
    }
    if std::env::var_os("TW_UNPIN").is_some() {
        cfg = cfg.unpinned_writer();
    }
    if std::env::var_os("TW_NOMANIFEST").is_some() {
        cfg = cfg.manifest_interval(std::time::Duration::from_secs(60));
    }
    let wal = Wal::open(cfg).unwrap();
    let it = common::probe_intent();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let tk = wal.append(&it).unwrap();
        if spin {
            tk.wait_spin().unwrap();
        } else {
            tk.wait().unwrap();
        }
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let st = wal.stats();
    eprintln!("over 500 µs: {}", lat.iter().filter(|&&l| l > 500_000).count());
    if std::env::var_os("TW_TRACE").is_some() {
        let mut idx: Vec<usize> = (0..lat.len()).collect();
        idx.sort_by_key(|&i| std::cmp::Reverse(lat[i]));
        for &i in idx.iter().take(12) {
            eprintln!("slow: append #{i} took {:.1} µs", lat[i] as f64 / 1e3);
        }
    }
    wal.close().unwrap();
    println!(
        "tradewal QD1 ({}{}) p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs | batches {} rotations {} recycled {}",
        if spin { "wait_spin" } else { "wait" },
        if delete { ", Retention::Delete" } else { "" },
        pct(&mut lat, 0.5) as f64 / 1e3,
        pct(&mut lat, 0.99) as f64 / 1e3,
        pct(&mut lat, 0.999) as f64 / 1e3,
        st.batches,
        st.rotations,
        st.segments_recycled
    );
    let _ = std::fs::remove_dir_all(&dir);
}

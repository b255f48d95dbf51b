//! Quick QD1 probe: append → wait durable, one at a time; prints p50/p99 beside the device floor.
//! `cargo run --release -p tradewal --example qd1 -- DIR [N] [spin|park] [delete]`
//! (`delete`: `Retention::Delete`, under which rotations recycle retired segment files instead of
//! zero-filling new spares; the line then also counts rotations and recycled spares.)
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
    let cfg = if delete { WalConfig::new(&dir).retention(Retention::Delete) } else { WalConfig::new(&dir) };
    let wal = Wal::open(cfg).unwrap();
    while wal.stats().spares_prepared == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
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
    wal.close().unwrap();
    let floor = tradewal::io::uring::measure_floor(&dir, n).unwrap();
    let mut f: Vec<u64> = floor.iter().map(|d| d.as_nanos() as u64).collect();
    println!(
        "tradewal QD1 ({}{}) p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs | floor p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} | batches {} rotations {} recycled {}",
        if spin { "wait_spin" } else { "wait" },
        if delete { ", Retention::Delete" } else { "" },
        pct(&mut lat, 0.5) as f64 / 1e3,
        pct(&mut lat, 0.99) as f64 / 1e3,
        pct(&mut lat, 0.999) as f64 / 1e3,
        pct(&mut f, 0.5) as f64 / 1e3,
        pct(&mut f, 0.99) as f64 / 1e3,
        pct(&mut f, 0.999) as f64 / 1e3,
        st.batches,
        st.rotations,
        st.segments_recycled
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Pipelined throughput probe: one producer keeps `window` appends outstanding and marks each
//! intent executed once it is durable (intent + outcome records per intent).
//! `cargo run --release -p tradewal --example pipelined -- DIR [N] [WINDOW]` (WalConfig defaults)
mod common;
use std::collections::VecDeque;
use std::time::Instant;
use tradewal::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("./pipe-probe", |s| s));
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let window: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16_384);
    let _ = std::fs::remove_dir_all(&dir);
    // WalConfig defaults, timed from right after open (no warm-up pause).
    let wal = Wal::open(WalConfig::new(&dir)).unwrap();
    let it = common::probe_intent();
    let mut q = VecDeque::with_capacity(window);
    let t = Instant::now();
    let mut last = 0;
    for i in 0..n {
        if q.len() >= window {
            let tk: Ticket = q.pop_front().unwrap();
            last = tk.wait().unwrap();
            // Resolve it (the outcome's ticket is dropped: it completes on its own).
            drop(wal.mark_executed(last).unwrap());
        }
        let mut x = it;
        x.ts_ns = i as i64;
        q.push_back(wal.append(&x).unwrap());
    }
    for tk in q {
        last = tk.wait().unwrap();
    }
    let el = t.elapsed();
    let st = wal.stats();
    println!(
        "{} appends in {:?}: {:.2} M/s durable; {} batches, {:.0} records/batch, {:.1} MB/s; last lsn {last}",
        n,
        el,
        n as f64 / el.as_secs_f64() / 1e6,
        st.batches,
        st.records as f64 / st.batches as f64,
        st.bytes as f64 / el.as_secs_f64() / 1e6
    );
    wal.close().unwrap();
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

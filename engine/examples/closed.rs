//! Closed-loop probe: P producer threads, each appends an intent, waits until it is durable, and
//! appends the next, for a fixed time, with `WalConfig` defaults, timed from right after
//! `Wal::open`. Prints ops/s, p50/p99/p99.9 and intents per batch.
//! `cargo run --release -p tradewal --example closed -- DIR [PRODUCERS] [SECONDS]`
mod common;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tradewal::*;

fn pct(v: &[u64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p) as usize] as f64 / 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("./closed-probe", |s| s));
    let producers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = WalConfig::new(&dir);
    if let Some(n) = std::env::var("TW_PBMIN").ok().and_then(|s| s.parse().ok()) {
        cfg = cfg.parallel_batch_min_records(n);
    }
    if let Some(k) = std::env::var("TW_K").ok().and_then(|s| s.parse().ok()) {
        cfg = cfg.in_flight_batches(k);
    }
    let wal = Wal::open(cfg).unwrap();
    let stop = AtomicBool::new(false);
    let t = Instant::now();
    let mut lat: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..producers)
            .map(|p| {
                let (wal, stop) = (&wal, &stop);
                s.spawn(move || {
                    let mut it = common::probe_intent();
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        it.ts_ns = (p as i64) << 40 | i;
                        i += 1;
                        let t0 = Instant::now();
                        let lsn = wal.append(&it).unwrap().wait().unwrap();
                        lat.push(t0.elapsed().as_nanos() as u64);
                        // Resolve it without waiting: its outcome shares a later batch.
                        drop(wal.mark_executed(lsn).unwrap());
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let el = t.elapsed().as_secs_f64();
    lat.sort_unstable();
    let st = wal.stats();
    println!(
        "{producers} producers: {:.1}k intents/s, p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs; {} batches, {:.2} records/batch",
        lat.len() as f64 / el / 1e3,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        st.batches,
        st.records as f64 / st.batches.max(1) as f64
    );
    wal.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

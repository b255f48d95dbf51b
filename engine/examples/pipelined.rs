//! Pipelined throughput probe: P producers (default 1) together keep `window` appends outstanding
//! and each marks its intents executed once durable (intent + outcome records per intent).
//! `cargo run --release -p tradewal --example pipelined -- DIR [N] [WINDOW] [PRODUCERS]`
//! (WalConfig defaults, timed from right after `Wal::open`).
mod common;
use std::collections::VecDeque;
use std::time::Instant;
use tradewal::*;

fn produce(wal: &Wal, first: u64, n: u64, window: usize) -> Lsn {
    let it = common::probe_intent();
    let mut q = VecDeque::with_capacity(window);
    let mut last = 0;
    for i in first..first + n {
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
        last = last.max(tk.wait().unwrap());
    }
    last
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("./pipe-probe", |s| s));
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let window: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16_384);
    let producers: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let _ = std::fs::remove_dir_all(&dir);
    let wal = Wal::open(WalConfig::new(&dir)).unwrap();
    let t = Instant::now();
    let per = n / producers;
    let last = std::thread::scope(|s| {
        let hs: Vec<_> = (0..producers)
            .map(|p| {
                let wal = &wal;
                s.spawn(move || produce(wal, p * per, per, window / producers as usize))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).max().unwrap_or(0)
    });
    let el = t.elapsed();
    let st = wal.stats();
    println!(
        "{} appends by {producers} producer(s) in {:?}: {:.2} M/s durable; {} batches, {:.0} records/batch, {:.1} MB/s; last lsn {last}",
        per * producers,
        el,
        (per * producers) as f64 / el.as_secs_f64() / 1e6,
        st.batches,
        st.records as f64 / st.batches as f64,
        st.bytes as f64 / el.as_secs_f64() / 1e6
    );
    wal.close().unwrap();
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

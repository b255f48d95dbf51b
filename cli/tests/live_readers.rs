//! The read-only commands against a live writer whose retention deletes segments while they read
//! (issue 10): `verify`, `export`, `export --raw`, `recover`, `inspect` and `inspect --json` run in
//! a loop while a producer appends and marks intents executed on 1 MiB segments with
//! `Retention::Delete`. Every run must exit 0: a segment that retention removed while a command was
//! reading is older than the log's start, not corruption; the writer's newest batches are not
//! corruption either. `LIVE_READER_RUNS` sets the number of runs (default 300).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tradewal::{Retention, Side, Symbol, TradeIntent, Wal, WalConfig};

fn intent(i: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_700_000_000_000_000_000 + i as i64,
        symbol: Symbol::new(["BTCUSDT", "ETHUSDT"][(i % 2) as usize]).unwrap(),
        side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
        price: 100.0 + i as f64 / 7.0,
        qty: 1.5,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("live-readers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn read_only_commands_never_fail_on_a_live_log_under_retention() {
    let runs: usize = std::env::var("LIVE_READER_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let dir = dir();
    let cfg = WalConfig::new(&dir)
        .segment_bytes(1 << 20)
        .max_in_doubt(1024)
        .max_batch_bytes(64 << 10)
        .retention(Retention::Delete)
        .unpinned_writer();
    let wal = Wal::open(cfg).unwrap_or_else(|e| panic!("cannot open a log in {}: {e}", dir.display()));
    let stop = AtomicBool::new(false);
    let commands: [&[&str]; 6] = [&["verify"], &["export"], &["export", "--raw"], &["recover"], &["inspect"], &["inspect", "--json"]];
    let started = Instant::now();
    let (failures, appended, deleted_during) = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Small pipelined groups, each intent then marked executed: segments fill and
                // rotate every few hundred milliseconds, and retention deletes the old ones.
                let ts: Vec<_> = (0..256).map(|k| wal.append(&intent(i + k)).unwrap()).collect();
                let ls: Vec<_> = ts.into_iter().map(|t| t.wait().unwrap()).collect();
                let os: Vec<_> = ls.into_iter().map(|l| wal.mark_executed(l).unwrap()).collect();
                for o in os {
                    o.wait().unwrap();
                }
                i += 256;
            }
            i
        });
        // Let the log rotate a few times first, so retention is already deleting.
        while wal.stats().rotations < 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let first_rotations = wal.stats().rotations;
        let mut failures = Vec::new();
        for run in 0..runs {
            let args = commands[run % commands.len()];
            let o = Command::new(env!("CARGO_BIN_EXE_tradewal")).args(args).arg(&dir).output().unwrap();
            if o.status.code() != Some(0) {
                failures.push(format!(
                    "run {run} `tradewal {}`: exit {:?}: {}",
                    args.join(" "),
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
        let rotations = wal.stats().rotations - first_rotations;
        stop.store(true, Ordering::Relaxed);
        (failures, producer.join().unwrap(), rotations)
    });
    wal.close().unwrap();
    println!(
        "live readers: {runs} runs of verify/export/export --raw/recover/inspect/inspect --json against a live writer \
         ({appended} intents appended, {deleted_during} rotations with Retention::Delete during the runs): {} failed, {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(deleted_during >= 3, "the writer must rotate (and retention delete) while the commands run: {deleted_during} rotations");
    assert!(failures.is_empty(), "{} of {runs} runs failed:\n{}", failures.len(), failures.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

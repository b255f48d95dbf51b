#![allow(dead_code)]
use std::path::{Path, PathBuf};
use tradewal::{Side, Symbol, TradeIntent, WalConfig};

/// A temporary directory on the real disk (not tmpfs: O_DIRECT), removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new().prefix("tw-").tempdir_in(base).unwrap()
}

pub fn intent(n: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_767_955_680_000_000_000 + n as i64,
        symbol: Symbol::new(["BTCUSDT", "ETHUSDT", "SOL-PERP"][(n % 3) as usize]).unwrap(),
        side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
        price: 43_250.5 + n as f64 * 0.25,
        qty: 0.001 * (1 + n % 100) as f64,
        stop_loss: if n % 5 == 0 { 0.0 } else { 42_800.0 },
        take_profit: 44_100.125,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

/// Small, fast configuration for tests.
pub fn small(dir: &Path) -> WalConfig {
    WalConfig::new(dir).segment_bytes(1 << 20).max_in_doubt(1024).max_batch_bytes(64 << 10).queue_capacity(4096).unpinned_writer()
}

pub fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("wal_") && n.ends_with(".log"))
        .collect();
    v.sort_by_key(|n| n.rsplit('_').next().unwrap().to_string());
    v
}

/// Keeps a temporary directory alive.
pub struct TempDirs(pub tempfile::TempDir);

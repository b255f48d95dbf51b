//! The kill -9 workload shared by the child binary (`tw-crash-child`) and the parent suite
//! (`tests/tests/kill9.rs`, which includes this file with `#[path]`): the log configuration and a
//! deterministic intent generator, so the parent can tell an appended intent from a phantom by its
//! content alone (the id is carried in `ts_ns`).

#![allow(dead_code)] // each includer uses a different part

use std::path::Path;
use tradewal::{OutcomeKind, Retention, Side, Symbol, TradeIntent, WalConfig};

/// Segment size of the crash log: small, so sessions rotate within a round.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// In-doubt limit of the crash log (keeps checkpoints small enough for 1 MiB segments: a full
/// checkpoint of format 2's larger entries, up to 184 bytes each, must fit with one 256 KiB batch,
/// `WalConfig::min_segment_bytes`).
pub const MAX_IN_DOUBT: usize = 2048;

/// The crash log's configuration; retired segments move to `archive` so the parent can check
/// every record exactly once without the live log growing.
pub fn config(dir: &Path, archive: &Path) -> WalConfig {
    WalConfig::new(dir)
        .segment_bytes(SEGMENT_BYTES)
        .max_batch_bytes(256 << 10)
        .in_flight_batches(2)
        .queue_capacity(1024)
        .max_in_doubt(MAX_IN_DOUBT)
        .unpinned_writer()
        .retention(Retention::ArchiveTo(archive.to_path_buf()))
}

/// splitmix64: a seeded, dependency-free mixer.
pub use tradewal_testkit::rng::splitmix64 as mix;

/// Intent id: round (bits 32..), producer thread (bits 24..32), counter (bits 0..24).
pub fn intent_id(round: u64, thread: u64, counter: u64) -> u64 {
    assert!(thread < 256 && counter < 1 << 24, "id fields in range");
    (round << 32) | (thread << 24) | counter
}

/// The intent with this id: every field is a function of the id.
pub fn intent(id: u64) -> TradeIntent {
    const SYMS: [&str; 5] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "A~!z"];
    let h = mix(id);
    let price = 1.0 + (h >> 16 & 0xF_FFFF) as f64 / 64.0;
    TradeIntent {
        ts_ns: id as i64,
        symbol: Symbol::new(SYMS[(h % 5) as usize]).expect("static symbol"),
        side: if h >> 8 & 1 == 0 { Side::Buy } else { Side::Sell },
        price,
        qty: 0.001 + (h >> 36 & 0xFFF) as f64 / 1000.0,
        stop_loss: if h >> 48 & 1 == 0 { 0.0 } else { price * 0.9 },
        take_profit: if h >> 49 & 1 == 0 { 0.0 } else { price / 0.9 },
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

/// The outcome an intent gets when the workload resolves it.
pub fn outcome_of(id: u64) -> OutcomeKind {
    if mix(id ^ 0xA5A5) % 4 == 0 {
        OutcomeKind::Aborted
    } else {
        OutcomeKind::Executed
    }
}

/// Intents the producers leave unresolved within their session (about 1 in 32).
pub fn left_in_doubt(id: u64) -> bool {
    mix(id ^ 0x5A5A) % 32 == 0
}

/// Outcome kind as printed: `E` or `A`.
pub fn kind_char(k: OutcomeKind) -> char {
    match k {
        OutcomeKind::Executed => 'E',
        OutcomeKind::Aborted => 'A',
    }
}

//! What the systems' data costs on disk: the framed size of one intent, a directory's bytes.

use crate::systems::sample_intent;
use std::path::Path;

/// Bytes one intent takes in the log, from the codec's own encoder (a batch of 1000).
pub fn intent_bytes_on_disk() -> f64 {
    use tradewal_codec::build::{Item, SegmentBuilder};
    use tradewal_codec::SegmentHeader;
    let header = SegmentHeader {
        k: 2,
        log_id: 1,
        session_id: 1,
        session_start_unix_s: 0,
        segment_no: 0,
        epoch: 1,
        base_lsn: 1,
        segment_bytes: 4 << 20,
        created_unix_ns: 0,
    };
    let mut b = SegmentBuilder::new(header);
    let start = b.end_offset();
    let items: Vec<Item> = (0..1000).map(|i| Item::Intent(sample_intent(i))).collect();
    match b.batch(&items) {
        Ok(_) => (b.end_offset() - start) as f64 / 1000.0,
        Err(_) => f64::NAN,
    }
}

/// Sum of file sizes in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

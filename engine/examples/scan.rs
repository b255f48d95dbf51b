//! Scan-rate probe: `cargo run --release -p tradewal --example scan -- DIR` reads the whole log
//! with `read_log` (O_DIRECT reads, checksums, decode, continuity) and prints bytes/s and records/s.
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("DIR");
    let t = Instant::now();
    let mut records = 0u64;
    let r = tradewal::read_log(std::path::Path::new(&dir), |_, _| records += 1).unwrap();
    let el = t.elapsed().as_secs_f64();
    let bytes: u64 = r.files.iter().map(|(_, f)| std::fs::metadata(std::path::Path::new(&dir).join(f)).unwrap().len()).sum();
    let used: u64 = r
        .state
        .segments
        .iter()
        .map(|s| match s.end {
            tradewal_codec::SegmentEnd::Clean { end_offset, .. } => end_offset,
            _ => 0,
        })
        .sum();
    println!("{} segments, {:.0} MB files ({:.0} MB written), {records} records in {el:.3} s: {:.2} GB/s of files, {:.2} GB/s of written data, {:.1} M records/s",
        r.files.len(), bytes as f64 / 1e6, used as f64 / 1e6, bytes as f64 / el / 1e9, used as f64 / el / 1e9, records as f64 / el / 1e6);
}

//! `tradewal export --raw DIR` and `tradewal export DIR` against an export written from
//! docs/jsonl.md alone (tests/src/spec_export.rs) over the records the spec reader
//! (tests/src/spec_reader.rs, written from docs/design.md alone) reads: byte for byte, on
//! engine-written format 2 logs of 20 000 and 100 000 intents (1 MiB segments that rotate, two
//! sessions, multi-part checkpoints, groups, every outcome status, client and venue order ids and
//! symbols holding `"` and `\`, awkward floats).
//!
//! Run: `cargo test --release -p tradewal-tests --test spec_export -- --nocapture`.

use std::path::{Path, PathBuf};
use std::time::Instant;
use tradewal::{OrderId, Outcome, Side, Status, TradeIntent, Wal, WalConfig};
use tradewal_tests::spec_export::{intent_export, raw_export};
use tradewal_tests::spec_reader::{classify_dir, read_dir, SpecVerdict};

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("spec-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const AWKWARD: [f64; 10] = [0.1, 1e-300, 5e-324, 1.7976931348623157e308, 123456789.12345679, 1e16, 1e15, 0.00001, 1.5e-6, 2.5e17];
const SYMS: [&str; 6] = ["BTCUSDT", "A\"B\\C/", "\\", "\"q\"", "ETH-PERP", "x~!{}"];

fn price(i: u64) -> f64 {
    if i % 7 == 3 {
        AWKWARD[(i / 7 % AWKWARD.len() as u64) as usize]
    } else {
        1.0 + (i as f64) / 3.0
    }
}

fn intent(i: u64) -> TradeIntent {
    let qty = if i % 11 == 5 { AWKWARD[(i / 11 % AWKWARD.len() as u64) as usize] } else { 0.5 + (i % 9) as f64 };
    TradeIntent {
        ts_ns: 1_767_225_600_000_000_000 + (i as i64) * 917 - if i % 13 == 0 { 3_000_000_000_000_000_000 } else { 0 },
        symbol: SYMS[(i % SYMS.len() as u64) as usize].parse().unwrap(),
        side: if i % 3 == 0 { Side::Sell } else { Side::Buy },
        price: price(i),
        qty,
        stop_loss: if i % 5 == 0 { 0.0 } else { price(i + 1) },
        take_profit: if i % 4 == 0 { 0.0 } else { price(i + 2) / 2.0 },
        cl_ord_id: (i % 4 == 1).then(|| OrderId::new(&format!("C\"{i}\\x")).unwrap()),
        tag: (i % 5 == 2).then_some((i % 3) as u32),
        group: None,
    }
}

/// What the venue says of intent `i` at `lsn` (pipelined: tickets are returned, not waited for).
/// With `keep_in_doubt`, at most a partial fill (the intent stays in doubt).
fn outcomes(w: &Wal, i: u64, lsn: u64, keep_in_doubt: bool, tickets: &mut Vec<tradewal::Ticket>) {
    let qty = intent(i).qty;
    let venue = (i % 3 != 0).then(|| OrderId::new(&format!("V\\{lsn}\"")).unwrap());
    let ts = if i % 4 == 0 { 0 } else { 1_767_225_700_000_000_000 + lsn as i64 };
    let mut rep = |status| tickets.push(w.report(&Outcome { intent_lsn: lsn, status, venue_order_id: venue, ts_ns: ts }).unwrap());
    if keep_in_doubt {
        if i % 2 == 0 {
            rep(Status::PartiallyFilled { qty: qty / 2.0, avg_price: if i % 4 == 0 { 0.0 } else { price(i + 3) } });
        }
        return;
    }
    match i % 10 {
        0 | 1 => tickets.push(w.mark_executed(lsn).unwrap()),
        2 => tickets.push(w.mark_aborted(lsn).unwrap()),
        3 => {
            rep(Status::PartiallyFilled { qty: qty / 4.0, avg_price: 0.0 });
            rep(Status::Filled { qty, avg_price: price(i + 4) });
        }
        4 => rep(Status::Rejected { reason: (i % 3) as u32 * 17 }),
        5 => {
            rep(Status::PartiallyFilled { qty: qty / 3.0, avg_price: 11.0 });
            rep(Status::Cancelled { filled_qty: qty / 3.0 });
        }
        6 => rep(Status::Cancelled { filled_qty: 0.0 }),
        7 => rep(Status::Aborted),
        8 => rep(Status::Filled { qty, avg_price: 0.0 }),
        _ => tickets.push(w.mark_executed(lsn).unwrap()),
    }
}

/// Writes a log of `n` intents in two sessions; about 300 stay in doubt (150 when the second
/// session starts: a checkpoint of two parts at least), some of them partly filled.
fn write_log(dir: &Path, n: u64) {
    let cfg = || WalConfig::new(dir).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer();
    let mut i = 0u64;
    for session in 0..2 {
        let w = Wal::open(cfg()).unwrap();
        let end = if session == 0 { n / 2 } else { n };
        while i < end {
            let chunk = 256.min(end - i);
            let mut appended = Vec::with_capacity(chunk as usize);
            let mut j = 0;
            while j < chunk {
                let k = i + j;
                if k % 97 == 50 && j + 3 <= chunk {
                    // A group of two or three legs, one batch, one ticket.
                    let legs = 2 + k % 2;
                    let g: Vec<TradeIntent> = (0..legs).map(|l| intent(k + l)).collect();
                    appended.push((k, legs, w.append_group(&g).unwrap()));
                    j += legs;
                } else {
                    appended.push((k, 1, w.append(&intent(k)).unwrap()));
                    j += 1;
                }
            }
            let mut tickets = Vec::new();
            for (k, legs, t) in appended {
                let first = t.wait().unwrap();
                for l in 0..legs {
                    let idx = k + l;
                    outcomes(&w, idx, first + l, idx % ((n / 300) | 1) == 7, &mut tickets);
                }
            }
            for t in tickets {
                t.wait().unwrap();
            }
            i += chunk;
        }
        w.close().unwrap();
    }
}

fn tradewal(args: &[&str], dir: &Path) -> Vec<u8> {
    let o = std::process::Command::new(tradewal_tests::tradewal_bin()).args(args).arg(dir).output().expect("run tradewal");
    assert_eq!(o.status.code(), Some(0), "tradewal {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// The first line where two exports differ, for the failure message.
fn first_difference(what: &str, want: &str, got: &str) -> String {
    for (no, (a, b)) in want.lines().zip(got.lines()).enumerate() {
        if a != b {
            return format!("{what}: line {} differs\n spec:     {a}\n tradewal: {b}", no + 1);
        }
    }
    format!("{what}: {} lines by the spec, {} by tradewal (one is a prefix of the other)", want.lines().count(), got.lines().count())
}

fn compare(n: u64) {
    let d = scratch(&n.to_string());
    let t = Instant::now();
    write_log(&d, n);
    let wrote = t.elapsed();
    println!("{n}: wrote the log in {wrote:.1?}");
    let t = Instant::now();
    let spec = read_dir(&d).unwrap_or_else(|e| panic!("{n}: the spec reader refuses the log: {e}"));
    assert_eq!(classify_dir(&d), SpecVerdict::Clean, "{n}: the spec's damage rules read the log as clean");
    let (raw, lines) = (raw_export(&spec), intent_export(&spec));
    let spec_took = t.elapsed();
    let t = Instant::now();
    let got_raw = String::from_utf8(tradewal(&["export", "--raw"], &d)).unwrap();
    let got_lines = String::from_utf8(tradewal(&["export"], &d)).unwrap();
    let cli_took = t.elapsed();
    assert!(raw == got_raw, "{}", first_difference("export --raw", &raw, &got_raw));
    assert!(lines == got_lines, "{}", first_difference("export", &lines, &got_lines));
    // The workload reached what it meant to: rotation, multi-part checkpoints, groups, fills.
    assert!(spec.data_segments >= 3, "{n}: {} data segments", spec.data_segments);
    assert!(raw.contains("\"part\":1,\"parts\":"), "{n}: multi-part checkpoints");
    assert!(raw.contains("\"prev_range\":{"), "{n}: recorded time ranges");
    for needle in [
        "\"leg\":2,\"legs\":3",
        "\"status\":\"partially_filled\"",
        "\"outcome\":\"cancelled\",\"filled_qty\":0.0",
        "\"reason\":0",
        "e+308",
        "5e-324",
        "\"sym\":\"A\\\"B\\\\C/\"",
        "\"aborted\":true",
    ] {
        assert!(raw.contains(needle) || lines.contains(needle), "{n}: the export holds {needle}");
    }
    println!(
        "spec export, {n} intents: {} raw lines ({} bytes) and {} intent lines ({} bytes) equal to tradewal's, \
         {} data segments, {} in doubt; write {wrote:.1?}, spec read+export {spec_took:.1?}, tradewal export x2 {cli_took:.1?}",
        raw.lines().count(),
        raw.len(),
        lines.lines().count(),
        lines.len(),
        spec.data_segments,
        spec.in_doubt.len()
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn spec_export_equals_tradewal_export_on_20_000_intents() {
    compare(20_000);
}

#[test]
fn spec_export_equals_tradewal_export_on_100_000_intents() {
    compare(100_000);
}

//! Recovery and the codec's scanner checked against an independent reader written from
//! docs/design.md alone (tests/src/spec_reader.rs): every record, every intent's fields, the
//! in-doubt set and the next LSN must agree, on the v1 fixture and on engine-written logs with
//! rotation, retention and several sessions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tradewal::{read_log, Retention, Side, TradeIntent, Wal, WalConfig};
use tradewal::{OrderId, Outcome, Status};
use tradewal_codec::{Fill, Record};
use tradewal_tests::spec_reader::{read_dir, SpecFill, SpecIntent, SpecLog, SpecRecord};

fn same_intent(i: &TradeIntent, s: &SpecIntent, what: &str) {
    assert_eq!(i.ts_ns, s.ts_ns, "{what}");
    assert_eq!(i.symbol.as_str(), s.symbol, "{what}");
    assert_eq!(matches!(i.side, Side::Sell) as u32, s.side, "{what}");
    let f = [i.price, i.qty, i.stop_loss, i.take_profit];
    assert_eq!(f.map(f64::to_bits), s.fields.map(f64::to_bits), "{what}");
    assert_eq!(i.tag, s.tag, "{what}: tag");
    assert_eq!(i.cl_ord_id.map(|c| c.to_string()), s.cl_ord_id, "{what}: cl_ord_id");
    let g = i.group.map_or((0, 0), |g| (g.index, g.size));
    assert_eq!(g, (s.group_leg, s.group_size), "{what}: group leg");
}

fn same_fill(f: Option<&Fill>, s: Option<&SpecFill>, what: &str) {
    let f = f.map(|f| (f.qty.to_bits(), f.avg_price.to_bits(), f.venue_order_id.map(|v| v.to_string()).unwrap_or_default(), f.ts_ns));
    let s = s.map(|s| (s.qty.to_bits(), s.avg_price.to_bits(), s.venue_order_id.clone(), s.ts_ns));
    assert_eq!(f, s, "{what}: fill");
}

/// The codec's decoded record and the spec reader's agree field by field.
fn same_record(r: &Record, s: &SpecRecord, at: &str) {
    match (r, s) {
        (Record::Intent(i), SpecRecord::Intent { .. }) => same_intent(i, &s.intent().expect("an intent"), at),
        (Record::Outcome(o), SpecRecord::Outcome { intent_lsn, status, qty, avg_price, reason, venue_order_id, ts_ns }) => {
            assert_eq!(o.intent_lsn, *intent_lsn, "{at}");
            assert_eq!(o.status.code(), *status, "{at}: status");
            assert_eq!(o.status.filled_qty().to_bits(), qty.to_bits(), "{at}: qty");
            assert_eq!(o.status.avg_price().to_bits(), avg_price.to_bits(), "{at}: avg price");
            assert_eq!(if let Status::Rejected { reason } = o.status { reason } else { 0 }, *reason, "{at}: reason");
            assert_eq!(o.venue_order_id.map(|v| v.to_string()).unwrap_or_default(), *venue_order_id, "{at}: venue order id");
            assert_eq!(o.ts_ns, *ts_ns, "{at}: ts");
        }
        (Record::Checkpoint(c), SpecRecord::CheckpointPart { part, parts, entries, prev_range, .. }) => {
            assert_eq!((c.part, c.parts), (*part, *parts), "{at}");
            assert_eq!(c.entries.len(), entries.len(), "{at}: entries");
            for (e, se) in c.entries.iter().zip(entries) {
                assert_eq!(e.lsn, se.lsn, "{at}");
                same_intent(&e.intent, &se.intent, at);
                same_fill(e.fill.as_ref(), se.fill.as_ref(), at);
            }
            let r = c.prev_range.map(|r| (r.intents, r.min_ts, r.max_ts));
            assert_eq!(r, prev_range.as_ref().map(|r| (r.intents, r.min_ts, r.max_ts)), "{at}: recorded range");
        }
        (a, b) => panic!("{at}: engine {a:?}, spec {b:?}"),
    }
}

fn same(spec: &SpecLog, dir: &Path, what: &str) {
    let mut got: BTreeMap<u64, Record> = BTreeMap::new();
    let report = read_log(dir, |f, r| {
        got.insert(f.lsn, r.clone());
    })
    .unwrap_or_else(|e| panic!("{what}: read_log: {e}"));
    assert_eq!(got.keys().collect::<Vec<_>>(), spec.records.keys().collect::<Vec<_>>(), "{what}: LSNs");
    for (lsn, r) in &got {
        let s = &spec.records[lsn];
        same_record(r, s, &format!("{what}: {lsn}"));
    }
    let engine_doubt: Vec<u64> = report.state.in_doubt.iter().map(|d| d.lsn).collect();
    assert_eq!(engine_doubt, spec.in_doubt, "{what}: in-doubt set (read_log)");
    for (d, s) in report.state.in_doubt.iter().zip(&spec.in_doubt_entries) {
        same_fill(d.fill.as_ref(), s.fill.as_ref(), &format!("{what}: in doubt {}", d.lsn));
    }
    assert_eq!(report.state.next_lsn, spec.next_lsn, "{what}: next LSN (read_log)");
    // Each data segment's intents by time, as the scan and the spec reader compute them.
    let engine_ranges: Vec<(u64, u64, i64, i64)> = report
        .state
        .segments
        .iter()
        .filter(|s| s.first_lsn.is_some())
        .map(|s| (s.segment_no, s.ts_range.intents, s.ts_range.min_ts, s.ts_range.max_ts))
        .collect();
    let spec_ranges: Vec<(u64, u64, i64, i64)> =
        spec.segments.iter().map(|s| (s.number, s.range.intents, s.range.min_ts, s.range.max_ts)).collect();
    assert_eq!(engine_ranges, spec_ranges, "{what}: per-segment time ranges");
}

fn recovered_matches(spec: &SpecLog, dir: &Path, cfg: WalConfig, what: &str) {
    let w = Wal::open(cfg).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    let r = w.recovered();
    assert_eq!(r.in_doubt.iter().map(|d| d.lsn).collect::<Vec<_>>(), spec.in_doubt, "{what}: in-doubt set (Wal::open)");
    assert!(r.next_lsn >= spec.next_lsn, "{what}: next LSN {} below the spec's {}", r.next_lsn, spec.next_lsn);
    for (d, s) in r.in_doubt.iter().zip(&spec.in_doubt_entries) {
        same_intent(&d.intent, &s.intent, &format!("{what}: in-doubt {}", d.lsn));
        same_fill(d.fill.as_ref(), s.fill.as_ref(), &format!("{what}: in-doubt {}", d.lsn));
    }
    w.close().unwrap();
    let _ = dir;
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("spec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn the_v1_fixture_reads_the_same_by_the_spec() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/log");
    let spec = read_dir(&fixture).expect("the v1 fixture follows the spec");
    assert_eq!(spec.records.len(), 624);
    same(&spec, &fixture, "v1 fixture");
    let d = scratch("v1");
    tradewal_tests::copy_dir(&fixture, &d);
    recovered_matches(
        &spec,
        &d,
        WalConfig::new(&d).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer(),
        "v1 fixture",
    );
}

fn intent(i: u64) -> TradeIntent {
    const SYMS: [&str; 4] = ["BTCUSDT", "ETH-PERP", "A~!z", "SOL/USDC"];
    TradeIntent {
        ts_ns: 1_700_000_000_000_000_000 + i as i64 * 7_919,
        symbol: SYMS[(i % 4) as usize].parse().unwrap(),
        side: if i % 3 == 0 { Side::Sell } else { Side::Buy },
        price: 10.0 + (i as f64) * 0.125,
        qty: 1.0 + (i % 11) as f64,
        stop_loss: if i % 5 == 0 { 0.0 } else { 9.0 },
        take_profit: if i % 7 == 0 { 0.0 } else { 1e6 },
        cl_ord_id: (i % 4 == 1).then(|| OrderId::new(&format!("C-{i}")).unwrap()),
        tag: (i % 5 == 2).then_some(i as u32 % 3),
        group: None,
    }
}

/// What the venue said of intent `i` (index in the workload) at `lsn`: fills in steps, rejects,
/// cancels, or nothing (it stays in doubt, maybe with a partial fill).
fn report_on(w: &Wal, i: u64, lsn: u64) {
    let qty = intent(i).qty;
    let venue = OrderId::new(&format!("V{lsn}")).ok();
    let rep = |status| w.report(&Outcome { intent_lsn: lsn, status, venue_order_id: venue, ts_ns: 1_800_000_000_000_000_000 + lsn as i64 });
    match i % 6 {
        0 => drop(rep(Status::PartiallyFilled { qty: qty / 2.0, avg_price: 10.5 }).unwrap().wait().unwrap()),
        1 => {
            rep(Status::PartiallyFilled { qty: qty / 4.0, avg_price: 0.0 }).unwrap().wait().unwrap();
            rep(Status::Filled { qty, avg_price: 10.25 }).unwrap().wait().unwrap();
        }
        2 => drop(rep(Status::Rejected { reason: 99 }).unwrap().wait().unwrap()),
        3 => {
            rep(Status::PartiallyFilled { qty: qty / 3.0, avg_price: 11.0 }).unwrap().wait().unwrap();
            rep(Status::Cancelled { filled_qty: qty / 3.0 }).unwrap().wait().unwrap();
        }
        _ => {}
    }
}

#[test]
fn engine_logs_read_the_same_by_the_spec() {
    for (name, retention) in [("keep", Retention::KeepAll), ("delete", Retention::Delete)] {
        let d = scratch(name);
        let cfg = || {
            WalConfig::new(&d)
                .segment_bytes(1 << 20)
                .max_batch_bytes(64 << 10)
                .max_in_doubt(1024)
                .retention(retention.clone())
                .unpinned_writer()
        };
        let mut n = 0u64;
        for session in 0..3 {
            let w = Wal::open(cfg()).unwrap();
            // Pipelined bursts and QD1 appends; some intents stay in doubt across sessions.
            for round in 0..12 {
                let tickets: Vec<_> = (0..40).map(|j| (n + j, w.append(&intent(n + j)).unwrap())).collect();
                n += 40;
                for (i, t) in tickets {
                    let lsn = t.wait().unwrap();
                    match i % 3 {
                        0 => w.mark_executed(lsn).unwrap().wait().map(drop).unwrap(),
                        1 if round % 2 == 0 => w.mark_aborted(lsn).unwrap().wait().map(drop).unwrap(),
                        _ => {}
                    }
                }
                for _ in 0..30 {
                    let lsn = w.append(&intent(n)).unwrap().wait().unwrap();
                    if n % 10 == 3 {
                        report_on(&w, n, lsn);
                    } else if n % 10 != 0 {
                        w.mark_executed(lsn).unwrap().wait().unwrap();
                    }
                    n += 1;
                }
                // A two-leg and a three-leg group; one leg of the first is filled.
                for legs in [2u64, 3] {
                    let g: Vec<TradeIntent> = (0..legs).map(|j| intent(n + j)).collect();
                    let first = w.append_group(&g).unwrap().wait().unwrap();
                    if legs == 2 {
                        w.mark_executed(first + 1).unwrap().wait().unwrap();
                    }
                    n += legs;
                }
            }
            if session < 2 {
                w.close().unwrap();
            } else {
                drop(w); // a crash: the next open recovers it
            }
        }
        let spec = read_dir(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
        match retention {
            Retention::KeepAll => assert!(spec.data_segments >= 2, "{name}: rotated ({} data segments)", spec.data_segments),
            // Retention removed the older segments: the first kept one's checkpoint seeded the set.
            _ => assert!(*spec.records.keys().next().unwrap() > 1, "{name}: the log starts after retention"),
        }
        same(&spec, &d, name);
        recovered_matches(&spec, &d, cfg(), name);
        println!(
            "spec reader, {name}: {} records in {} data segments, {} in doubt: same as read_log and Wal::open",
            spec.records.len(),
            spec.data_segments,
            spec.in_doubt.len()
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// The oracle itself can fail: one flipped bit anywhere in a batch of the fixture is rejected.
#[test]
fn the_spec_reader_rejects_a_flipped_bit() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/log");
    let d = scratch("flip");
    tradewal_tests::copy_dir(&fixture, &d);
    let seg = d.join("wal_20261203_084914_000002.log");
    let orig = std::fs::read(&seg).unwrap();
    let mut rejected = 0;
    for off in [0usize, 40, 88, 4096, 4096 + 20, 4096 + 64, 4096 + 64 + 30, 8192 + 70] {
        let mut b = orig.clone();
        b[off] ^= 0x10;
        std::fs::write(&seg, &b).unwrap();
        assert!(read_dir(&d).is_err(), "a flip at offset {off} was not noticed");
        rejected += 1;
    }
    std::fs::write(&seg, &orig).unwrap();
    assert!(read_dir(&d).is_ok());
    assert_eq!(rejected, 8);
    let _ = std::fs::remove_dir_all(&d);
}

/// The codec's hand-written body decoder against the spec reader's (written from design.md alone)
/// on format-2 bodies of every kind, intact and damaged (a flipped bit, a cut, an extra byte, a
/// byte overwritten): both accept with the same content, or both refuse.
#[test]
fn codec_and_spec_decoders_agree_on_damaged_bodies() {
    use tradewal_codec::body::{encode_checkpoint, encode_intent, encode_outcome};
    use tradewal_codec::{GroupLeg, InDoubt, TsRange};
    let mut rng = tradewal_testkit::rng::Rng::new(0x0005_EC12);
    let (mut agreed_ok, mut agreed_err) = (0u32, 0u32);
    let id = |rng: &mut tradewal_testkit::rng::Rng| {
        rng.chance(500)
            .then(|| OrderId::new(&format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())[..1 + rng.below(32) as usize]).unwrap())
    };
    for round in 0..30_000u64 {
        let mut i = intent(round);
        i.cl_ord_id = id(&mut rng);
        i.tag = rng.chance(500).then(|| rng.next_u64() as u32);
        if rng.chance(300) {
            let size = 1 + rng.below(32) as u16;
            i.group = Some(GroupLeg { index: rng.below(size as u64) as u16, size });
        }
        let qty = i.qty;
        let status = match rng.below(5) {
            0 => Status::Filled { qty, avg_price: 10.5 },
            1 => Status::PartiallyFilled { qty: qty / 2.0, avg_price: 0.0 },
            2 => Status::Rejected { reason: rng.next_u64() as u32 },
            3 => Status::Cancelled { filled_qty: 0.0 },
            _ => Status::Aborted,
        };
        let o = Outcome { intent_lsn: 1 + rng.below(1 << 40), status, venue_order_id: id(&mut rng), ts_ns: rng.next_u64() as i64 };
        let mut buf = vec![0u8; 32 << 10];
        let (kind, n) = match round % 3 {
            0 => (1u8, encode_intent(&i, &mut buf).unwrap()),
            1 => (2, encode_outcome(&o, &mut buf).unwrap()),
            _ => {
                let e: Vec<InDoubt> = (0..rng.below(4))
                    .map(|k| InDoubt {
                        lsn: 1 + k * 3,
                        intent: i,
                        fill: rng.chance(500).then_some(tradewal_codec::Fill {
                            qty: qty / 4.0,
                            avg_price: 1.0,
                            venue_order_id: id(&mut rng),
                            ts_ns: 5,
                        }),
                    })
                    .collect();
                let range = rng.chance(500).then_some(TsRange { intents: 3, min_ts: -5, max_ts: 7 });
                (3, encode_checkpoint(0, 1, &e, range, &mut buf).unwrap())
            }
        };
        let mut body = buf[..n].to_vec();
        match rng.below(5) {
            0 => {} // intact
            1 => {
                let at = rng.below(n as u64) as usize;
                body[at] ^= 1 << rng.below(8);
            }
            2 => body.truncate(rng.below(n as u64) as usize),
            3 => body.push(rng.next_u64() as u8),
            _ => {
                let at = rng.below(n as u64) as usize;
                body[at] = rng.next_u64() as u8;
            }
        }
        let kind_c = tradewal_codec::RecordKind::from_u8(kind).unwrap();
        match (tradewal_codec::record::decode_body(2, kind_c, &body), tradewal_tests::spec_reader::decode_body(2, kind, &body)) {
            (Ok(r), Ok(sr)) => {
                same_record(&r, &sr, &format!("round {round}: {body:?}"));
                agreed_ok += 1;
            }
            (Err(_), Err(_)) => agreed_err += 1,
            (a, b) => panic!("round {round}: the decoders disagree on {body:?}: codec {a:?}, spec {b:?}"),
        }
    }
    println!("decoders agree: {agreed_ok} accepted, {agreed_err} refused");
    assert!(agreed_ok > 5_000 && agreed_err > 5_000, "both outcomes exercised: {agreed_ok} / {agreed_err}");
}

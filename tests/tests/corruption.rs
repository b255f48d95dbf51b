//! Corruption matrix on real segment files of a stopped log (built with the engine at QD1, so its
//! layout is fixed: K = 2, 1 MiB segments, four segments of 255/40/253/40 batches, 591 records; the
//! case counts of every family are asserted exactly: 396 cases). Each case damages a copy of the directory and checks that the
//! read-only scan (`tradewal::read_log`, what `tradewal verify` runs) and `Wal::open` classify it
//! exactly as docs/design.md says:
//!
//! - a provable torn tail: `Wal::open` truncates it, reports it in `recovered().torn_tail`, keeps
//!   every record before it bit for bit, changes nothing else (the torn file is zeroed from the torn
//!   offset on; other files are byte-identical), a partly done repair is judged the same, and a second
//!   open finds nothing to repair (I5);
//! - anything else: `WalError::Corrupt { segment, file, offset, expected_lsn, .. }` with the right
//!   place, from both the scan and `Wal::open`, with no file changed.
//!
//! The damage place decides the expectation (design, "Reading a segment"): damage to batch `e`
//! (the header block counts as batch 0) is corruption when a valid batch `>= e + K` follows in the
//! segment, otherwise a torn tail if the segment is the log's last, otherwise corruption
//! (`TornBeforeLaterData`). Known limit (design, "Assumptions"): damage within the last K batches of
//! the log is truncated as a torn tail, so those acknowledged records are dropped; the cases below
//! assert exactly that.
//!
//! The real `tradewal verify` runs on every case too (exit 0 on clean/torn, exit 1 naming the file
//! and offset on corruption): the binary beside this test's (`target/<profile>/tradewal`, built
//! with `cargo build -p tradewal-cli` of the same profile when it is missing), or `TRADEWAL_BIN`.
//! Run: `cargo test --release -p tradewal-tests --test corruption -- --nocapture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use tradewal::{read_log, Lsn, Side, Symbol, TradeIntent, Wal, WalConfig, WalError};
use tradewal_codec::format::BatchHeader;
use tradewal_codec::{Record, SegmentName, BLOCK_BYTES, SECTOR_BYTES};

const K: u64 = 2;
const SEGMENT_BYTES: u64 = 1 << 20;

fn config(dir: &Path) -> WalConfig {
    WalConfig::new(dir)
        .segment_bytes(SEGMENT_BYTES)
        .in_flight_batches(K as u32)
        .max_batch_bytes(64 << 10)
        .max_in_doubt(1024)
        .unpinned_writer()
}

fn intent(i: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_700_000_000_000_000_000 + i as i64,
        symbol: Symbol::new(["BTCUSDT", "ETHUSDT", "SOLUSDT"][(i % 3) as usize]).expect("symbol"),
        side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
        price: 100.0 + i as f64 / 7.0,
        qty: 0.5 + (i % 11) as f64,
        stop_loss: if i % 4 == 0 { 0.0 } else { 90.0 },
        take_profit: if i % 5 == 0 { 0.0 } else { 110.0 + i as f64 },
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

#[derive(Debug, Clone)]
struct Batch {
    offset: u64,
    padded: u64,
    first_lsn: Lsn,
}

#[derive(Debug, Clone)]
struct Seg {
    no: u64,
    name: String,
    base_lsn: Lsn,
    batches: Vec<Batch>,
    end_offset: u64,
    next_lsn: Lsn,
}

struct Pristine {
    dir: PathBuf,
    segs: Vec<Seg>,
    records: Vec<(Lsn, Record)>,
    next_lsn: Lsn,
}

fn case_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("corruption-{}", std::process::id()))
        .join(format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create case dir");
    d
}

/// Builds the log once, deterministically: every append and every outcome waits for its ticket
/// before the next one (QD1), so each batch holds exactly one record, except the checkpoint each
/// segment starts with, which the writer writes alone; two thirds of the intents stay in doubt, so
/// the checkpoints span several blocks. The same code therefore gives the same layout (segments,
/// batches, offsets) on every run and machine, and each family's case counts are asserted exactly.
/// `None` where O_DIRECT is unavailable (the test then fails unless allowed to skip).
fn pristine() -> Option<&'static Pristine> {
    static P: OnceLock<Option<Pristine>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = case_dir("pristine");
        // Two sessions: the first ends (closed) partway into its second segment, which so keeps a
        // zero tail before a later segment; the second rotates once more and stops 40 batches in.
        let mut i = 0u64;
        for _session in 0..2 {
            let wal = open_or_cannot_run(config(&dir))?;
            // The opening checkpoint first, alone in its batch (an append queued before the writer
            // took it would share the batch, and the layout would depend on timing).
            wal.wait_durable(wal.recovered().next_lsn).expect("opening checkpoint durable");
            let rotations = wal.stats().rotations;
            let mut extra = 0;
            while extra < 40 {
                let lsn = wal.append(&intent(i)).unwrap().wait().unwrap();
                if wal.stats().rotations > rotations {
                    extra += 1;
                }
                if i % 3 == 2 {
                    let t = if i % 4 == 0 { wal.mark_aborted(lsn) } else { wal.mark_executed(lsn) };
                    t.unwrap().wait().unwrap();
                    if wal.stats().rotations > rotations {
                        extra += 1;
                    }
                }
                i += 1;
            }
            wal.close().unwrap();
        }
        let mut records = Vec::new();
        let report = read_log(&dir, |f, r| records.push((f.lsn, r.clone()))).expect("pristine log reads");
        assert!(report.state.torn_tail.is_none());
        let segs: Vec<Seg> = report.files.iter().map(|(no, name)| layout(&dir, *no, name)).collect();
        // The fixed layout every count below depends on (QD1: one record per batch).
        assert_eq!(segs.iter().map(|s| s.batches.len()).collect::<Vec<_>>(), [255, 40, 252, 40], "batches per segment");
        assert_eq!(segs.iter().map(|s| s.batches[0].padded).collect::<Vec<_>>(), [4096, 16384, 16384, 28672], "checkpoint bytes");
        assert_eq!(records.len(), 592, "records");
        assert!(segs.last().unwrap().batches.len() as u64 > K + 1, "last segment needs more than K+1 batches");
        let last = segs.last().unwrap().batches.last().unwrap();
        println!(
            "pristine log: {} segments, batches per segment {:?}, checkpoint bytes {:?}, {} records, last batch {} bytes",
            segs.len(),
            segs.iter().map(|s| s.batches.len()).collect::<Vec<_>>(),
            segs.iter().map(|s| s.batches[0].padded).collect::<Vec<_>>(),
            records.len(),
            last.padded
        );
        Some(Pristine { dir, segs, records, next_lsn: report.state.next_lsn })
    })
    .as_ref()
}

/// Batch layout of one segment, walked with the documented header fields.
fn layout(dir: &Path, no: u64, name: &str) -> Seg {
    let bytes = std::fs::read(dir.join(name)).unwrap();
    let mut pos = BLOCK_BYTES;
    let mut batches = Vec::new();
    let base_lsn = u64::from_le_bytes(bytes[56..64].try_into().unwrap());
    let epoch = u64::from_le_bytes(bytes[48..56].try_into().unwrap());
    // Epoch bit 0: a recycled file, whose data ends at the first batch of another life.
    let recycled = epoch & tradewal_codec::format::EPOCH_RECYCLED != 0;
    let mut next = base_lsn;
    while pos + 64 <= bytes.len() {
        let Some(h) = BatchHeader::decode(&bytes[pos..]) else {
            break;
        };
        if h.segment_no != no || h.epoch != epoch {
            assert!(recycled, "a stale batch in a file zero-filled for its life");
            break;
        }
        assert_eq!(h.first_lsn, next);
        batches.push(Batch { offset: pos as u64, padded: h.padded_len() as u64, first_lsn: h.first_lsn });
        next += h.record_count as u64;
        pos += h.padded_len();
    }
    assert!(recycled || bytes[pos..].iter().all(|&b| b == 0), "zeros after the last batch");
    Seg { no, name: name.to_string(), base_lsn, batches, end_offset: pos as u64, next_lsn: next }
}

fn copy_of(p: &Pristine, name: &str) -> PathBuf {
    let d = case_dir(name);
    for s in &p.segs {
        std::fs::copy(p.dir.join(&s.name), d.join(&s.name)).unwrap();
    }
    d
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Records `first..next` recovered, no torn tail.
    Clean { first: Lsn, next: Lsn },
    /// Torn tail at (segment, offset); records before `lsn` recovered.
    Torn { seg: usize, at: u64, lsn: Lsn },
    /// Refused: the error names this place.
    Corrupt { segment: u64, file: String, offset: u64, expected_lsn: Lsn, reason: &'static str },
}

#[derive(Debug, Clone, Copy)]
enum Place {
    Header,
    Batch(usize),
    Tail,
}

fn place_of(s: &Seg, offset: u64) -> Place {
    if offset < BLOCK_BYTES as u64 {
        return Place::Header;
    }
    match s.batches.iter().position(|b| offset >= b.offset && offset < b.offset + b.padded) {
        Some(e) => Place::Batch(e),
        None => {
            assert!(offset >= s.end_offset);
            Place::Tail
        }
    }
}

/// The design's rule for damage at `place` of segment `si`.
fn expect_damage(p: &Pristine, si: usize, place: Place) -> Expect {
    let s = &p.segs[si];
    let n = s.batches.len() as u64;
    let (e, at_corrupt, at_torn, lsn) = match place {
        Place::Header => (0, 0, 0, s.base_lsn),
        Place::Batch(0) => (0, s.batches[0].offset, 0, s.base_lsn),
        Place::Batch(e) => (e as u64, s.batches[e].offset, s.batches[e].offset, s.batches[e].first_lsn),
        Place::Tail => (n, s.end_offset, s.end_offset, s.next_lsn),
    };
    if n > e + K {
        // An unreadable header of the log's first segment leaves its base LSN unknown: reported as 0.
        let expected_lsn = if si == 0 && matches!(place, Place::Header) { 0 } else { lsn };
        Expect::Corrupt {
            segment: s.no,
            file: s.name.clone(),
            offset: at_corrupt,
            expected_lsn,
            reason: "proves this batch was acknowledged",
        }
    } else if si + 1 == p.segs.len() {
        Expect::Torn { seg: si, at: at_torn, lsn }
    } else {
        Expect::Corrupt { segment: s.no, file: s.name.clone(), offset: at_torn, expected_lsn: lsn, reason: "holds later data" }
    }
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .filter(|(n, _)| n != "LOCK")
        .collect()
}

fn in_doubt_upto(p: &Pristine, next: Lsn) -> Vec<Lsn> {
    let mut open = std::collections::BTreeSet::new();
    for (lsn, r) in p.records.iter().filter(|(l, _)| *l < next) {
        match r {
            Record::Intent(_) => {
                open.insert(*lsn);
            }
            Record::Outcome(o) => {
                open.remove(&o.intent_lsn);
            }
            // Equal to the set at its place; in a log whose older segments retention removed, the
            // first checkpoint seeds it.
            Record::Checkpoint(c) => open.extend(c.entries.iter().map(|e| e.lsn)),
        }
    }
    open.into_iter().collect()
}

fn check_records(p: &Pristine, got: &[(Lsn, Record)], first: Lsn, next: Lsn, what: &str) {
    let want: Vec<&(Lsn, Record)> = p.records.iter().filter(|(l, _)| *l >= first && *l < next).collect();
    assert_eq!(got.len(), want.len(), "{what}: records recovered");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}: record {} differs", w.0);
    }
}

struct Stats {
    cases: u32,
    torn: u32,
    corrupt: u32,
    clean: u32,
    cli: u32,
}

/// Runs one damaged directory through the scan, the CLI (optional) and `Wal::open`.
fn check(p: &Pristine, dir: &Path, expect: &Expect, what: &str, st: &mut Stats) {
    st.cases += 1;
    let before = snapshot(dir);
    let mut got = Vec::new();
    let scanned = read_log(dir, |f, r| got.push((f.lsn, r.clone())));
    {
        let o = std::process::Command::new(tradewal_tests::tradewal_bin()).arg("verify").arg(dir).output().expect("run tradewal verify");
        let err = String::from_utf8_lossy(&o.stderr);
        match expect {
            Expect::Corrupt { file, offset, .. } => {
                assert_eq!(o.status.code(), Some(1), "{what}: verify exit code; stderr {err}");
                assert!(err.contains(&format!("offset {offset}")) && err.contains(file.as_str()), "{what}: verify names the place: {err}");
            }
            _ => assert_eq!(o.status.code(), Some(0), "{what}: verify exit code; stderr {err}"),
        }
        st.cli += 1;
    }
    match expect {
        Expect::Corrupt { segment, file, offset, expected_lsn, reason } => {
            st.corrupt += 1;
            let want = (*segment, file.clone(), *offset, *expected_lsn);
            for (who, r) in [("read_log", scanned.map(|_| ())), ("Wal::open", Wal::open(config(dir)).map(drop))] {
                match r {
                    Err(WalError::Corrupt { segment, file, offset, expected_lsn, reason: why }) => {
                        assert_eq!((segment, file, offset, expected_lsn), want.clone(), "{what}: {who} place ({why})");
                        assert!(why.to_string().contains(reason), "{what}: {who} reason {why:?} lacks {reason:?}");
                    }
                    other => panic!("{what}: {who} gave {other:?}, expected corruption {want:?}"),
                }
            }
            assert!(snapshot(dir) == before, "{what}: a refused open changed files");
        }
        Expect::Clean { next, .. } | Expect::Torn { lsn: next, .. } => {
            let first = if let Expect::Clean { first, .. } = expect { *first } else { p.records.first().map_or(1, |r| r.0) };
            let report = scanned.unwrap_or_else(|e| panic!("{what}: read_log: {e}"));
            check_records(p, &got, first, *next, &format!("{what}: read_log"));
            let torn = report.state.torn_tail.as_ref().map(|t| (t.segment, t.at, t.lsn));
            let want_torn = match expect {
                Expect::Torn { seg, at, lsn } => Some((p.segs[*seg].no, *at, *lsn)),
                _ => None,
            };
            assert_eq!(torn, want_torn, "{what}: torn tail from the scan");
            if let Expect::Torn { seg, at, .. } = expect {
                st.torn += 1;
                // A repair interrupted midway (every other sector from the torn offset zeroed) is judged the same (I5).
                let partial = case_dir("partial");
                for (n, b) in &before {
                    let mut b = b.clone();
                    if *n == p.segs[*seg].name {
                        let mut o = *at as usize;
                        while o + SECTOR_BYTES <= b.len().min(*at as usize + 8 * BLOCK_BYTES) {
                            b[o..o + SECTOR_BYTES].fill(0);
                            o += 2 * SECTOR_BYTES;
                        }
                    }
                    std::fs::write(partial.join(n), b).unwrap();
                }
                // Same decision: the same torn tail, or (when every non-zero byte of it was zeroed) a
                // clean end at the same LSN.
                let r = read_log(&partial, |_, _| {}).unwrap_or_else(|e| panic!("{what}: partial repair: {e}"));
                let t = r.state.torn_tail.map(|t| (t.segment, t.at, t.lsn));
                assert!(t.is_none() || t == want_torn, "{what}: partial repair judged differently: {t:?}");
                assert_eq!(r.state.next_lsn, *next, "{what}: partial repair keeps other records");
                let _ = std::fs::remove_dir_all(&partial);
            } else {
                st.clean += 1;
            }
            let wal = Wal::open(config(dir)).unwrap_or_else(|e| panic!("{what}: Wal::open: {e}"));
            let rec = wal.recovered().clone();
            let new_segment = wal.first_segment().to_string();
            wal.close().unwrap();
            assert_eq!(rec.next_lsn, *next, "{what}: recovered next LSN");
            assert_eq!(rec.torn_tail.as_ref().map(|t| (t.segment, t.offset, t.lsn)), want_torn, "{what}: recovered torn tail");
            if let Some(t) = &rec.torn_tail {
                assert_eq!(
                    t.file,
                    p.segs[match expect {
                        Expect::Torn { seg, .. } => *seg,
                        _ => unreachable!(),
                    }]
                    .name
                );
            }
            assert_eq!(rec.in_doubt.iter().map(|d| d.lsn).collect::<Vec<_>>(), in_doubt_upto(p, *next), "{what}: in doubt");
            // Nothing else changed: old files identical, the torn file zeroed from the torn offset.
            let after = snapshot(dir);
            for (n, b) in &before {
                match (after.get(n), expect) {
                    (None, _) => assert!(rec.removed.contains(n), "{what}: {n} vanished without being reported"),
                    // Removed (an empty trailing segment), and the new session's first segment took
                    // the same number within the same second.
                    (Some(_), _) if rec.removed.contains(n) => {
                        assert_eq!(*n, new_segment, "{what}: {n} removed yet present")
                    }
                    (Some(a), Expect::Torn { seg, at, .. }) if *n == p.segs[*seg].name => {
                        assert_eq!(a.len() as u64, SEGMENT_BYTES, "{what}: repaired file length");
                        assert!(a[..*at as usize] == b[..*at as usize], "{what}: repair changed bytes before the torn offset");
                        assert!(a[*at as usize..].iter().all(|&x| x == 0), "{what}: repair left bytes after the torn offset");
                    }
                    (Some(a), _) => assert!(a == b, "{what}: {n} changed"),
                }
            }
            for n in after
                .keys()
                .filter(|n| !before.contains_key(*n) || rec.removed.contains(*n))
                .filter(|n| n.as_str() != tradewal::manifest::MANIFEST_FILE)
                .filter(|n| n.as_str() != tradewal::io::fs::WATERMARK_FILE)
            {
                assert_eq!(*n, new_segment, "{what}: unexpected new file");
            }
            // Second open: nothing to repair, same records and in-doubt set.
            let wal = Wal::open(config(dir)).unwrap_or_else(|e| panic!("{what}: second Wal::open: {e}"));
            let rec2 = wal.recovered().clone();
            wal.close().unwrap();
            assert!(rec2.torn_tail.is_none(), "{what}: second open repaired again: {:?}", rec2.torn_tail);
            assert_eq!(rec2.in_doubt, rec.in_doubt, "{what}: second open in doubt");
            let mut again = Vec::new();
            read_log(dir, |f, r| again.push((f.lsn, r.clone()))).unwrap();
            let kept: Vec<_> = again.iter().filter(|(l, _)| *l < *next).cloned().collect();
            check_records(p, &kept, first, *next, &format!("{what}: after repair"));
            assert!(again[kept.len()..].iter().all(|(_, r)| matches!(r, Record::Checkpoint(_))), "{what}: only checkpoints were added");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn stats() -> Stats {
    Stats { cases: 0, torn: 0, corrupt: 0, clean: 0, cli: 0 }
}

/// Prints and checks one family's counts: every case classified, `tradewal verify` run on each, and
/// the totals `[cases, corrupt, torn, clean]` exactly as docs/reliability.md lists them (the
/// pristine log's layout is fixed, see [`pristine`], so they never move).
fn report(family: &str, st: &Stats, expect: [u32; 4]) {
    println!(
        "corruption matrix, {family}: {} cases ({} corrupt, {} torn tail, {} clean); tradewal verify checked on {}",
        st.cases, st.corrupt, st.torn, st.clean, st.cli
    );
    assert_eq!(st.cli, st.cases, "{family}: tradewal verify ran on every case");
    assert!(st.cases > 0 && st.cases == st.corrupt + st.torn + st.clean, "{family}: {} cases classified", st.cases);
    assert_eq!([st.cases, st.corrupt, st.torn, st.clean], expect, "{family}: [cases, corrupt, torn, clean]");
}

/// Offsets to damage in segment `s`: header fields and padding, then for the first batch, a middle
/// batch and the last K+1 batches their header, first frame, body and last padding byte, then the
/// zero tail.
fn sample_offsets(s: &Seg) -> Vec<u64> {
    let mut v = vec![0, 8, 12, 40, 48, 56, 64, 88, 95, 96, 2000, 4095];
    let n = s.batches.len();
    let mut picks = vec![0, n / 2];
    picks.extend(n.saturating_sub(K as usize + 1)..n);
    picks.dedup();
    for e in picks {
        let b = &s.batches[e];
        for rel in [0, 8, 16, 28, 40, 56, 64, 72, 76, 80, 88, 100, 140] {
            if rel < b.padded {
                v.push(b.offset + rel);
            }
        }
        v.push(b.offset + b.padded - 1);
    }
    for o in [s.end_offset, s.end_offset + 100, s.end_offset + BLOCK_BYTES as u64 + 7, SEGMENT_BYTES - 1] {
        if o < SEGMENT_BYTES {
            v.push(o);
        }
    }
    v
}

#[test]
fn single_bit_flips_in_every_region() {
    let Some(p) = pristine() else { return };
    let mut st = stats();
    for (si, s) in p.segs.iter().enumerate() {
        for (k, off) in sample_offsets(s).into_iter().enumerate() {
            let d = copy_of(p, "flip");
            let f = d.join(&s.name);
            let mut b = std::fs::read(&f).unwrap();
            b[off as usize] ^= 1 << (k % 8);
            std::fs::write(&f, &b).unwrap();
            let e = expect_damage(p, si, place_of(s, off));
            check(p, &d, &e, &format!("bit {} flipped at {}:{off} ({:?})", k % 8, s.name, place_of(s, off)), &mut st);
        }
    }
    report("single bit flips", &st, [338, 306, 32, 0]);
}

#[test]
fn zeroed_sectors() {
    let Some(p) = pristine() else { return };
    let mut st = stats();
    for (si, s) in p.segs.iter().enumerate() {
        let n = s.batches.len();
        let mut sectors = vec![0u64];
        for e in [0, n / 2, n - 2, n - 1] {
            let b = &s.batches[e];
            sectors.extend((0..b.padded / SECTOR_BYTES as u64).map(|k| b.offset + k * SECTOR_BYTES as u64).take(3));
        }
        sectors.dedup();
        for at in sectors {
            let d = copy_of(p, "sector");
            let f = d.join(&s.name);
            let mut b = std::fs::read(&f).unwrap();
            let orig = b.clone();
            b[at as usize..at as usize + SECTOR_BYTES].fill(0);
            let Some(first_changed) = (0..b.len()).find(|&i| b[i] != orig[i]) else {
                let _ = std::fs::remove_dir_all(&d);
                continue; // the sector held only zeros (batch padding)
            };
            std::fs::write(&f, &b).unwrap();
            let place = place_of(s, first_changed as u64);
            let e = match place {
                // The sector held all the batch's data and nothing follows it: the batch reads as never
                // written. The segment ends clean there; before a later segment that is an LSN gap.
                Place::Batch(e) if b[s.batches[e].offset as usize..].iter().all(|&x| x == 0) => {
                    let lsn = s.batches[e].first_lsn;
                    match p.segs.get(si + 1) {
                        None => Expect::Clean { first: 1, next: lsn },
                        Some(n) => Expect::Corrupt { segment: n.no, file: n.name.clone(), offset: 0, expected_lsn: lsn, reason: "LSN gap" },
                    }
                }
                _ => expect_damage(p, si, place),
            };
            check(p, &d, &e, &format!("sector zeroed at {}:{at}", s.name), &mut st);
        }
    }
    report("zeroed 512-byte sectors", &st, [26, 24, 1, 1]);
}

/// A segment file shorter than its preallocated size cannot come from a crash (segments are
/// created at full size before use and never shrink): what was cut off cannot be proven
/// unacknowledged (I4), so every truncation is refused — including within the last batch, which the
/// decoder alone (reading missing bytes as never written) would call a torn tail (codec tests).
#[test]
fn truncation_at_every_sector_of_the_last_batch() {
    let Some(p) = pristine() else { return };
    let mut st = stats();
    let si = p.segs.len() - 1;
    let s = &p.segs[si];
    let last = s.batches.last().unwrap().clone();
    let mut lens: Vec<u64> = vec![0, SECTOR_BYTES as u64, BLOCK_BYTES as u64, last.offset];
    for k in 1..last.padded / SECTOR_BYTES as u64 {
        lens.push(last.offset + k * SECTOR_BYTES as u64);
    }
    // At the end of the last batch: only the zero tail is missing.
    lens.push(s.end_offset);
    for len in lens {
        let d = copy_of(p, "trunc");
        std::fs::OpenOptions::new().write(true).open(d.join(&s.name)).unwrap().set_len(len).unwrap();
        let e = Expect::Corrupt {
            segment: s.no,
            file: s.name.clone(),
            offset: len,
            expected_lsn: s.base_lsn,
            reason: "a crash cannot shorten",
        };
        check(p, &d, &e, &format!("{} truncated to {len}", s.name), &mut st);
    }
    report("truncation", &st, [12, 12, 0, 0]);
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(data, offset).unwrap();
}

fn garbage(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8 | 1
        })
        .collect()
}

#[test]
fn garbage_after_the_last_batch() {
    let Some(p) = pristine() else { return };
    let mut st = stats();
    let si = p.segs.len() - 1;
    let s = &p.segs[si];
    let torn_end = Expect::Torn { seg: si, at: s.end_offset, lsn: p.next_lsn };
    for (what, off, data) in [
        ("garbage right after the last batch", s.end_offset, garbage(1000, 1)),
        ("garbage one block further", s.end_offset + BLOCK_BYTES as u64, garbage(3000, 2)),
        ("garbage at the segment's end", SEGMENT_BYTES - 10, garbage(10, 3)),
        ("a whole garbage block", s.end_offset, garbage(BLOCK_BYTES, 4)),
    ] {
        let d = copy_of(p, "garbage");
        write_at(&d.join(&s.name), off, &data);
        check(p, &d, &torn_end, what, &mut st);
    }
    // An earlier valid batch of the same segment written again after the end (a misdirected write).
    let d = copy_of(p, "misdirected");
    let b = std::fs::read(d.join(&s.name)).unwrap();
    let old = &s.batches[s.batches.len() - 3];
    let copy = b[old.offset as usize..(old.offset + old.padded) as usize].to_vec();
    write_at(&d.join(&s.name), s.end_offset, &copy);
    check(p, &d, &torn_end, "an earlier batch copied after the end", &mut st);
    // Garbage after the last batch of an earlier segment: a later segment holds data.
    match p.segs[..p.segs.len() - 1].iter().find(|e| e.end_offset < SEGMENT_BYTES) {
        Some(e) => {
            let d = copy_of(p, "garbage-mid");
            let n = (SEGMENT_BYTES - e.end_offset).min(700) as usize;
            write_at(&d.join(&e.name), e.end_offset, &garbage(n, 5));
            check(
                p,
                &d,
                &Expect::Corrupt {
                    segment: e.no,
                    file: e.name.clone(),
                    offset: e.end_offset,
                    expected_lsn: e.next_lsn,
                    reason: "holds later data",
                },
                "garbage after the last batch of an earlier segment",
                &mut st,
            );
        }
        None => println!("garbage tails: every earlier segment is exactly full; no zero tail to damage there"),
    }
    report("garbage tails", &st, [6, 1, 5, 0]);
}

fn stamp_name(no: u64, session_start_unix_s: i64) -> String {
    SegmentName { session_start_unix_s, segment_no: no }.file_name()
}

#[test]
fn whole_file_cases() {
    let Some(p) = pristine() else { return };
    let mut st = stats();
    let (s1, s2, s3) = (&p.segs[0], &p.segs[1], &p.segs[2]);
    let last = p.segs.last().unwrap();
    let corrupt = |s: &Seg, file: &str, offset: u64, expected_lsn: Lsn, reason| Expect::Corrupt {
        segment: s.no,
        file: file.to_string(),
        offset,
        expected_lsn,
        reason,
    };

    // A deleted middle segment: a hole, not the end of the log (I3).
    let d = copy_of(p, "deleted-middle");
    std::fs::remove_file(d.join(&s2.name)).unwrap();
    check(p, &d, &corrupt(s2, "", 0, s2.base_lsn, "is missing"), "deleted middle segment", &mut st);

    // The first segment deleted is what retention does: its successor's checkpoint seeds the set.
    let d = copy_of(p, "deleted-first");
    std::fs::remove_file(d.join(&s1.name)).unwrap();
    check(p, &d, &Expect::Clean { first: s2.base_lsn, next: p.next_lsn }, "deleted first segment (retention)", &mut st);

    // Two segments' contents swapped, names kept.
    let d = copy_of(p, "swapped");
    std::fs::rename(d.join(&s2.name), d.join("x")).unwrap();
    std::fs::rename(d.join(&s3.name), d.join(&s2.name)).unwrap();
    std::fs::rename(d.join("x"), d.join(&s3.name)).unwrap();
    check(p, &d, &corrupt(s2, &s2.name, 0, s2.base_lsn, "header names segment"), "segments 2 and 3 swapped", &mut st);

    // A stale copy of segment 2 (as it was when it held half its batches) put back.
    let d = copy_of(p, "stale-copy");
    let m = s2.batches[s2.batches.len() / 2].clone();
    let f = d.join(&s2.name);
    let mut b = std::fs::read(&f).unwrap();
    b[m.offset as usize..].fill(0);
    std::fs::write(&f, &b).unwrap();
    check(p, &d, &corrupt(s3, &s3.name, 0, m.first_lsn, "LSN gap"), "stale copy of segment 2", &mut st);

    // A segment of an earlier session placed again under a new number after the end.
    let d = copy_of(p, "stale-replaced");
    let name = stamp_name(last.no + 1, 1_600_000_000);
    std::fs::copy(p.dir.join(&s1.name), d.join(&name)).unwrap();
    let ghost = Seg { no: last.no + 1, ..s1.clone() };
    check(p, &d, &corrupt(&ghost, &name, 0, p.next_lsn, "header names segment"), "segment 1 placed again as a new last segment", &mut st);

    // A second file claiming segment 3's number.
    let d = copy_of(p, "duplicate");
    let dup = stamp_name(s3.no, 1_600_000_000);
    std::fs::copy(p.dir.join(&s3.name), d.join(&dup)).unwrap();
    let second = if dup < s3.name { s3.name.clone() } else { dup.clone() };
    check(p, &d, &corrupt(s3, &second, 0, 0, "two files claim segment"), "two files claim segment 3", &mut st);

    // A segment of another log with the same number (a directory reused without clearing it).
    let other = case_dir("foreign");
    loop {
        let w = Wal::open(config(&other)).unwrap();
        let no = SegmentName::parse(w.first_segment()).unwrap().segment_no;
        w.close().unwrap();
        if no >= s2.no {
            break;
        }
    }
    let foreign = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| SegmentName::parse(n).is_some_and(|s| s.segment_no == s2.no))
        .expect("foreign segment with the same number");
    let d = copy_of(p, "foreign");
    std::fs::copy(other.join(&foreign), d.join(&s2.name)).unwrap();
    check(p, &d, &corrupt(s2, &s2.name, 0, s2.base_lsn, "another log"), "segment 2 from another log", &mut st);

    // Segment headers destroyed (a middle segment and the last one).
    for s in [s2, last] {
        let d = copy_of(p, "header");
        write_at(&d.join(&s.name), 0, &garbage(96, 9));
        check(p, &d, &corrupt(s, &s.name, 0, s.base_lsn, "proves this batch was acknowledged"), "segment header destroyed", &mut st);
    }

    // A middle segment zeroed entirely: an LSN gap at the next one.
    let d = copy_of(p, "zeroed-middle");
    std::fs::write(d.join(&s2.name), vec![0u8; SEGMENT_BYTES as usize]).unwrap();
    check(p, &d, &corrupt(s3, &s3.name, 0, s2.base_lsn, "LSN gap"), "middle segment all zeros", &mut st);
    // Emptied to length 0: shorter than its session's segment size, refused at that file.
    let d = copy_of(p, "emptied-middle");
    std::fs::write(d.join(&s2.name), b"").unwrap();
    check(p, &d, &corrupt(s2, &s2.name, 0, s2.base_lsn, "shorter than its segment size"), "middle segment emptied", &mut st);

    // A file longer than its segment size: no crash makes that.
    let d = copy_of(p, "too-long");
    write_at(&d.join(&s2.name), SEGMENT_BYTES, &[0u8; BLOCK_BYTES]);
    check(p, &d, &corrupt(s2, &s2.name, SEGMENT_BYTES, s2.base_lsn, "longer than its segment size"), "segment file too long", &mut st);

    // A spare (all zeros) left at the end: skipped by the scan, removed by recovery.
    let d = copy_of(p, "spare");
    let spare = stamp_name(last.no + 1, 1_900_000_000);
    std::fs::write(d.join(&spare), vec![0u8; SEGMENT_BYTES as usize]).unwrap();
    check(p, &d, &Expect::Clean { first: 1, next: p.next_lsn }, "spare left at the end", &mut st);

    // A leftover *.tmp from an interrupted spare creation: ignored by the scan, removed by recovery.
    let d = copy_of(p, "tmp");
    let tmp = format!("{}.tmp", stamp_name(last.no + 1, 1_900_000_000));
    std::fs::write(d.join(&tmp), garbage(5000, 11)).unwrap();
    let r = read_log(&d, |_, _| {}).unwrap();
    assert_eq!(r.tmp_files, vec![tmp.clone()]);
    check(p, &d, &Expect::Clean { first: 1, next: p.next_lsn }, "leftover .tmp", &mut st);

    let _ = std::fs::remove_dir_all(&other);
    report("whole files (deleted, swapped, stale, foreign, duplicate, header, zeroed, too long, spare, tmp)", &st, [14, 11, 0, 3]);
}

/// The matrix above runs on the segment files alone (a log from before the manifest: what the
/// scan can prove by itself). With the log's MANIFEST in place, file losses the scan cannot see
/// are refused too, by `Wal::open` and by `tradewal verify`'s scan, and the refused open changes
/// nothing.
#[test]
fn whole_file_losses_with_the_manifest() {
    let Some(p) = pristine() else { return };
    let manifest = std::fs::read(p.dir.join(tradewal::manifest::MANIFEST_FILE)).expect("the pristine log has a MANIFEST");
    let with_manifest = |name: &str| {
        let d = copy_of(p, name);
        std::fs::write(d.join(tradewal::manifest::MANIFEST_FILE), &manifest).unwrap();
        d
    };
    let data: Vec<&Seg> = p.segs.iter().filter(|s| !s.batches.is_empty()).collect();
    let (first, newest) = (data[0], *data.last().unwrap());
    let mut cases = 0;
    let mut refused = |d: &Path, what: &str, needle: &str| {
        let before = snapshot(d);
        match read_log(d, |_, _| {}) {
            Err(WalError::Corrupt { reason, .. }) => assert!(reason.to_string().contains(needle), "{what}: read_log: {reason}"),
            other => panic!("{what}: read_log answered {:?}", other.map(|r| r.state.next_lsn)),
        }
        match Wal::open(config(d)) {
            Err(WalError::Corrupt { reason, .. }) => {
                assert!(reason.to_string().contains(needle), "{what}: {reason}");
                assert!(reason.to_string().contains("MANIFEST"), "{what}: names the manifest: {reason}");
            }
            Ok(w) => panic!("{what}: opened (next LSN {})", w.recovered().next_lsn),
            Err(e) => panic!("{what}: {e}"),
        }
        assert_eq!(snapshot(d), before, "{what}: a refused open changed the directory");
        cases += 1;
    };
    // Control: the intact log with its manifest opens.
    let d = with_manifest("manifest-intact");
    Wal::open(config(&d)).expect("the intact log with its manifest").close().unwrap();

    let d = with_manifest("manifest-deleted-newest");
    std::fs::remove_file(d.join(&newest.name)).unwrap();
    refused(&d, "newest segment deleted", "lost or deleted");

    let d = with_manifest("manifest-zeroed-newest");
    let len = std::fs::metadata(d.join(&newest.name)).unwrap().len();
    std::fs::write(d.join(&newest.name), vec![0u8; len as usize]).unwrap();
    refused(&d, "newest segment zeroed", "reads as all zeros");

    let d = with_manifest("manifest-deleted-first");
    std::fs::remove_file(d.join(&first.name)).unwrap();
    refused(&d, "first segment deleted by hand (not by retention)", "lost or deleted");

    let d = with_manifest("manifest-all-deleted");
    for s in &p.segs {
        std::fs::remove_file(d.join(&s.name)).unwrap();
    }
    refused(&d, "every segment deleted", "lost or deleted");
    assert_eq!(cases, 4);
}

/// A log written under `Retention::Delete` until its spares were recycled: one session, QD1, that
/// rotates three times and stops 40 batches into its fourth segment, which is a recycled file (its
/// first life was the log's first segment, full). Retention left that one segment (the others were
/// retired; one of them waits as a recyclable `.free` file, whose bytes serve below as what an
/// earlier life left at any offset).
struct Recycled {
    p: Pristine,
    /// A retired segment's image (the `.free` file): stale batches at every offset.
    old: Vec<u8>,
    recycled: u64,
}

/// Opens the log of a pristine image; `None` (after `cannot_run` says why, failing unless the
/// capability may be skipped) where the directory refuses O_DIRECT.
fn open_or_cannot_run(cfg: WalConfig) -> Option<Wal> {
    let dir = cfg.dir().to_path_buf();
    match Wal::open(cfg) {
        Ok(w) => Some(w),
        Err(WalError::Config(m)) => {
            tradewal_testkit::cannot_run("corruption matrix", "odirect", format!("cannot open a log in {}: {m}", dir.display()));
            None
        }
        Err(e) => panic!("open: {e}"),
    }
}

fn pristine_recycled() -> Option<&'static Recycled> {
    static P: OnceLock<Option<Recycled>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = case_dir("pristine-recycled");
        let cfg = config(&dir).retention(tradewal::Retention::Delete);
        let wal = open_or_cannot_run(cfg)?;
        wal.wait_durable(wal.recovered().next_lsn).expect("opening checkpoint durable");
        let (mut i, mut extra) = (0u64, 0);
        while extra < 40 {
            let lsn = wal.append(&intent(i)).unwrap().wait().unwrap();
            extra += (wal.stats().rotations >= 3) as u32;
            if i % 3 == 2 {
                let t = if i % 4 == 0 { wal.mark_aborted(lsn) } else { wal.mark_executed(lsn) };
                t.unwrap().wait().unwrap();
                extra += (wal.stats().rotations >= 3) as u32;
            }
            i += 1;
        }
        // The spare for segment 5 (prepared after the third rotation) may still be on its way on
        // a busy machine: wait for it before counting recycled spares.
        let t = std::time::Instant::now();
        while wal.stats().spares_prepared < wal.stats().rotations + 1 && t.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let recycled = wal.stats().segments_recycled;
        wal.close().unwrap();
        let mut records = Vec::new();
        let report = read_log(&dir, |f, r| records.push((f.lsn, r.clone()))).expect("recycled log reads");
        assert!(report.state.torn_tail.is_none());
        let segs: Vec<Seg> = report.files.iter().map(|(no, name)| layout(&dir, *no, name)).collect();
        let free: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".free"))
            .collect();
        println!(
            "recycled log: segments {:?}, batches {:?}, {} records, {recycled} spares recycled, recyclable files {free:?}",
            report.files.iter().map(|f| f.0).collect::<Vec<_>>(),
            segs.iter().map(|s| s.batches.len()).collect::<Vec<_>>(),
            records.len()
        );
        assert_eq!(segs.len(), 1, "retention left the newest segment only");
        assert_eq!(segs[0].no, 4);
        assert!(recycled >= 2, "segments 4 and 5 were recycled files");
        let img = std::fs::read(dir.join(&segs[0].name)).unwrap();
        let h = tradewal_codec::SegmentHeader::decode(&img[..BLOCK_BYTES]).unwrap();
        assert!(h.recycled(), "the segment in service is a recycled file");
        assert!(img[segs[0].end_offset as usize..].iter().any(|&b| b != 0), "stale bytes after the end of the data");
        assert_eq!(free.len(), 1, "one retired segment waits for recycling");
        let old = std::fs::read(dir.join(&free[0])).unwrap();
        Some(Recycled { p: Pristine { dir, segs, records, next_lsn: report.state.next_lsn }, old, recycled })
    })
    .as_ref()
}

/// The rule for damage at `off` of the recycled segment (docs/design.md, "Reading a segment"):
/// the K-window as everywhere; in the stale tail nothing of this life, so the clean end; a
/// damaged batch header of the last batch leaves no trace of this life after the end either.
fn expect_recycled(p: &Pristine, off: u64) -> Expect {
    let s = &p.segs[0];
    let first = p.records[0].0;
    let n = s.batches.len();
    match place_of(s, off) {
        Place::Tail => Expect::Clean { first, next: p.next_lsn },
        Place::Batch(e) if e + 1 == n && off < s.batches[e].offset + 64 => Expect::Clean { first, next: s.batches[e].first_lsn },
        place => expect_damage(p, 0, place),
    }
}

#[test]
fn recycled_segment_matrix() {
    let Some(r) = pristine_recycled() else { return };
    let p = &r.p;
    let s = &p.segs[0];
    let first = p.records[0].0;
    let n = s.batches.len();
    let img = std::fs::read(p.dir.join(&s.name)).unwrap();
    let end = s.end_offset as usize;
    let mut st = stats();
    assert!(r.recycled >= 2);
    // As written: clean, every record, the stale bytes after the end never read as records.
    check(p, &copy_of(p, "recycled"), &Expect::Clean { first, next: p.next_lsn }, "recycled segment as written", &mut st);
    for e in 1..n {
        let b = &s.batches[e];
        let (at, hdr_end, b_end) = (b.offset as usize, b.offset as usize + SECTOR_BYTES, (b.offset + b.padded) as usize);
        // The log ended before batch e: batches e.. never written, the old life's bytes there.
        let d = copy_of(p, "recycled-end");
        write_at(&d.join(&s.name), at as u64, &r.old[at..end]);
        check(p, &d, &Expect::Clean { first, next: b.first_lsn }, &format!("recycled: the log ends before batch {e}"), &mut st);
        // The last write (batch e) torn: only its header sector landed. Its padding then holds old
        // bytes: a torn tail (this life's header is there), unless the old bytes there are zeros
        // like the padding (then batch e is whole).
        let d = copy_of(p, "recycled-torn");
        let mut t = img.clone();
        t[hdr_end..end].copy_from_slice(&r.old[hdr_end..end]);
        std::fs::write(d.join(&s.name), &t).unwrap();
        let whole = t[at..b_end] == img[at..b_end];
        let want = if whole {
            Expect::Clean { first, next: s.batches.get(e + 1).map_or(p.next_lsn, |x| x.first_lsn) }
        } else {
            Expect::Torn { seg: 0, at: at as u64, lsn: b.first_lsn }
        };
        check(p, &d, &want, &format!("recycled: last write (batch {e}) torn, header sector landed"), &mut st);
        // The reverse: every sector of batch e but its header sector: nothing of this life at
        // batch e, the clean end there.
        let d = copy_of(p, "recycled-headless");
        let mut t = img.clone();
        t[at..hdr_end].copy_from_slice(&r.old[at..hdr_end]);
        t[b_end..end].copy_from_slice(&r.old[b_end..end]);
        std::fs::write(d.join(&s.name), &t).unwrap();
        check(
            p,
            &d,
            &Expect::Clean { first, next: b.first_lsn },
            &format!("recycled: last write (batch {e}) lost its header sector"),
            &mut st,
        );
    }
    // Bit flips: the usual places, and the stale region at block starts (stale batch headers or
    // the middle of stale batches) and inside blocks.
    let mut offs = sample_offsets(s);
    offs.extend((s.end_offset..SEGMENT_BYTES).step_by(37 * BLOCK_BYTES).flat_map(|o| [o, o + 40, o + 700]));
    for (k, off) in offs.into_iter().enumerate() {
        let d = copy_of(p, "recycled-flip");
        let f = d.join(&s.name);
        let mut b = img.clone();
        b[off as usize] ^= 1 << (k % 8);
        std::fs::write(&f, &b).unwrap();
        check(p, &d, &expect_recycled(p, off), &format!("recycled: bit {} flipped at {off} ({:?})", k % 8, place_of(s, off)), &mut st);
    }
    report("recycled segment", &st, [225, 54, 22, 149]);
}

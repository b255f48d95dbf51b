//! Pins the reading rules of docs/design.md "Reading rules, settled" and docs/jsonl.md "Exit
//! status" (issue 12) at the level of the `tradewal` binary: short files, the session stamp, the
//! 16 GiB limit of the engine's readers, and what export, verify, recover and inspect write and
//! exit with on damage. Logs are segment images built with the codec and written under
//! CARGO_TARGET_TMPDIR (a disk file system: the readers use O_DIRECT).
//!
//! Only two places build the types the format v2 work is changing: [`intent`] (the one
//! `TradeIntent` literal) and [`header`] (the one `SegmentHeader` literal).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::format::SegmentName;
use tradewal_codec::{InDoubt, Lsn, OutcomeKind, SegmentHeader, Side, Symbol, TradeIntent, BLOCK_BYTES};

const BLOCK: usize = BLOCK_BYTES;
const SEGMENT_BYTES: u64 = 16 * BLOCK as u64;
/// 2026-01-01 00:00:00 UTC: the session stamp of every file name here.
const STAMP: i64 = 1_767_225_600;

/// The one place a `TradeIntent` is built in this file.
fn intent(n: i64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_767_225_600_000_000_000 + n,
        symbol: Symbol::new("BTCUSDT").unwrap(),
        side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
        price: 100.0 + n as f64,
        qty: 0.25,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

/// The one place a `SegmentHeader` is built in this file.
fn header(seg: u64, base: Lsn, segment_bytes: u64, session_start_unix_s: i64) -> SegmentHeader {
    SegmentHeader {
        k: 2,
        log_id: 0x05E7_71ED,
        session_id: 9,
        session_start_unix_s,
        segment_no: seg,
        epoch: 0x100 + 2 * seg,
        base_lsn: base,
        segment_bytes,
        created_unix_ns: 1,
    }
}

fn tmpdir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-settled").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn name(seg: u64) -> String {
    SegmentName { session_start_unix_s: STAMP, segment_no: seg }.file_name()
}

/// Segment 1 (LSN 1..=4: checkpoint, intent 2, intent 3, outcome of 2) and segment 2 (LSN
/// 5..=10: a checkpoint naming 3, then intents 6..=10, one per batch: batches 0..=4 at
/// `(j + 1) * 4096`). K = 2. `session_start` goes into segment 2's header.
fn log(session_start: i64) -> (Vec<u8>, Vec<u8>) {
    let mut s1 = SegmentBuilder::new(header(1, 1, SEGMENT_BYTES, STAMP));
    s1.batch(&[Item::Checkpoint(Vec::new(), None), Item::Intent(intent(0))]).unwrap();
    s1.batch(&[Item::Intent(intent(1)), Item::Outcome(2, OutcomeKind::Executed)]).unwrap();
    let mut s2 = SegmentBuilder::new(header(2, 5, SEGMENT_BYTES, session_start));
    s2.batch(&[Item::Checkpoint(vec![InDoubt { lsn: 3, intent: intent(1), fill: None }], None), Item::Intent(intent(2))]).unwrap();
    for n in 3..7 {
        s2.batch(&[Item::Intent(intent(n))]).unwrap();
    }
    assert_eq!(s2.next_lsn(), 11);
    (s1.into_bytes(), s2.into_bytes())
}

fn write_log(dir: &Path, s1: &[u8], s2: &[u8]) {
    std::fs::write(dir.join(name(1)), s1).unwrap();
    std::fs::write(dir.join(name(2)), s2).unwrap();
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradewal")).args(args).arg(dir).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn lsns(o: &Output) -> Vec<u64> {
    stdout(o).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"].as_u64().unwrap()).collect()
}

/// Damages batch `j` of a segment image (a record checksum then fails).
fn damage(img: &mut [u8], j: usize) {
    img[(j + 1) * BLOCK + 64 + 30] ^= 0x10;
}

#[test]
fn exit_status_on_corruption_raw_export_streams_what_came_before() {
    let dir = tmpdir("corrupt");
    let (s1, mut s2) = log(STAMP);
    damage(&mut s2, 2); // batch 2 (LSN 8); batch 4 is valid: acknowledged, so corruption
    write_log(&dir, &s1, &s2);

    let v = run(&["verify"], &dir);
    assert_eq!(v.status.code(), Some(1), "{}", stderr(&v));
    assert!(v.stdout.is_empty());
    assert!(stderr(&v).contains("proves this batch was acknowledged"), "{}", stderr(&v));

    // --raw: every record before the damaged batch, then exit 2 with one line on stderr.
    let raw = run(&["export", "--raw"], &dir);
    assert_eq!(raw.status.code(), Some(2), "{}", stderr(&raw));
    assert_eq!(lsns(&raw), (1..=7).collect::<Vec<_>>());
    assert_eq!(stderr(&raw).lines().count(), 1, "{}", stderr(&raw));

    // Intent lines: the first pass (outcomes) meets the damage before any line is written.
    let e = run(&["export"], &dir);
    assert_eq!(e.status.code(), Some(2), "{}", stderr(&e));
    assert!(e.stdout.is_empty(), "{}", stdout(&e));

    for cmd in ["recover", "inspect"] {
        let o = run(&[cmd], &dir);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{cmd}");
    }
}

#[test]
fn exit_status_on_a_torn_tail_is_success() {
    let dir = tmpdir("torn");
    let (s1, mut s2) = log(STAMP);
    damage(&mut s2, 4); // the last batch: nothing later proves it was acknowledged
    write_log(&dir, &s1, &s2);
    let v = run(&["verify"], &dir);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    assert!(stdout(&v).contains("torn tail (not corruption)"), "{}", stdout(&v));
    let raw = run(&["export", "--raw"], &dir);
    assert_eq!(raw.status.code(), Some(0), "{}", stderr(&raw));
    assert_eq!(lsns(&raw), (1..=9).collect::<Vec<_>>());
    let e = run(&["export"], &dir);
    assert_eq!(e.status.code(), Some(0));
    assert_eq!(lsns(&e), vec![2, 3, 6, 7, 8, 9]);
    let r = run(&["recover"], &dir);
    assert_eq!(r.status.code(), Some(0));
    assert_eq!(lsns(&r), vec![3, 6, 7, 8, 9]);
}

#[test]
fn short_segment_files_are_corruption_for_the_read_only_tools() {
    let dir = tmpdir("short");
    let (s1, s2) = log(STAMP);
    // Segment 2 cut after its last batch: the decoder alone would read the rest as zeros.
    write_log(&dir, &s1, &s2[..6 * BLOCK]);
    let v = run(&["verify"], &dir);
    assert_eq!(v.status.code(), Some(1), "{}", stderr(&v));
    assert!(stderr(&v).contains("shorter than its segment size 65536"), "{}", stderr(&v));
    let raw = run(&["export", "--raw"], &dir);
    assert_eq!(raw.status.code(), Some(2));
    assert_eq!(lsns(&raw), vec![1, 2, 3, 4], "segment 1 streamed, segment 2 refused before its records");
    for cmd in ["export", "recover", "inspect"] {
        let o = run(&[cmd], &dir);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(o.stdout.is_empty(), "{cmd}");
    }

    // No valid header: the size of its session (the same name stamp) from an earlier valid header.
    let mut s2b = s2.clone();
    s2b[..BLOCK].fill(0xFF);
    std::fs::write(dir.join(name(2)), &s2b[..8 * BLOCK]).unwrap();
    let v = run(&["verify"], &dir);
    assert_eq!(v.status.code(), Some(1));
    assert!(stderr(&v).contains("shorter than its segment size 65536"), "{}", stderr(&v));

    // No valid header and no session known: at least 1 MiB (the engine's smallest segment).
    let lone = tmpdir("short-lone");
    std::fs::write(lone.join(name(1)), b"").unwrap();
    let v = run(&["verify"], &lone);
    assert_eq!(v.status.code(), Some(1));
    assert!(stderr(&v).contains("shorter than any segment (1048576 at least)"), "{}", stderr(&v));
}

#[test]
fn the_session_stamp_of_the_name_is_not_compared_with_the_header() {
    let dir = tmpdir("stamp");
    let (s1, s2) = log(STAMP + 86_400 + 3_600); // segment 2's header: a day and an hour later
    write_log(&dir, &s1, &s2);
    let v = run(&["verify"], &dir);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let raw = run(&["export", "--raw"], &dir);
    assert_eq!(lsns(&raw), (1..=10).collect::<Vec<_>>());
}

#[test]
fn segments_over_16_gib_are_refused_by_the_engine_readers() {
    // A header naming 32 GiB (valid to the codec, which allows 1 TiB) in a 64 KiB file: short.
    let dir = tmpdir("big-header");
    let h = header(1, 1, 32 << 30, STAMP);
    let mut img = vec![0u8; SEGMENT_BYTES as usize];
    h.encode(&mut img[..BLOCK]);
    std::fs::write(dir.join(name(1)), &img).unwrap();
    let v = run(&["verify"], &dir);
    assert_eq!(v.status.code(), Some(1));
    assert!(stderr(&v).contains("shorter than its segment size 34359738368"), "{}", stderr(&v));

    // A (sparse) file over 16 GiB: refused by its length, before it is read.
    let dir = tmpdir("big-file");
    let f = std::fs::File::create(dir.join(name(1))).unwrap();
    f.set_len((16 << 30) + BLOCK as u64).unwrap();
    drop(f);
    let v = run(&["verify"], &dir);
    assert_eq!(v.status.code(), Some(1), "{}", stderr(&v));
    assert!(stderr(&v).contains("larger than any segment"), "{}", stderr(&v));
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The v1 fixture (tests/fixtures/v1, written by the engine before format v2): today's tools read
//! it exactly as the v1 tools did, today's engine recovers it and appends to it, and the mixed log
//! reads back in LSN order.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tradewal::{read_log, Side, Symbol, TradeIntent, Wal, WalConfig, WalError};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v1")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A fresh copy of the fixture log (opening a log writes to it; the checked-in copy stays as is).
fn copy_log(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("v1-fixture").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(fixture().join("log")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        n += 1;
    }
    assert_eq!(n, 4, "the fixture holds four segment files");
    d
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradewal")).args(args).arg(dir).output().expect("run tradewal")
}

fn ok_stdout(args: &[&str], dir: &Path) -> String {
    let o = run(args, dir);
    assert!(o.status.success(), "tradewal {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Every key the v1 output had is in the new output with the same value (new keys may be added).
fn assert_superset(old: &Value, new: &Value, path: &str) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let nv = b.get(k).unwrap_or_else(|| panic!("{path}.{k} missing in the new output"));
                assert_superset(v, nv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: array length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_superset(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(old, new, "{path}"),
    }
}

fn config(dir: &Path) -> WalConfig {
    WalConfig::new(dir).segment_bytes(1 << 20).max_in_doubt(200).max_batch_bytes(32 << 10).unpinned_writer()
}

fn open(dir: &Path) -> Wal {
    match Wal::open(config(dir)) {
        Ok(w) => w,
        Err(e @ WalError::Config(_)) if std::env::var("TRADEWAL_ALLOW_SKIP").is_ok_and(|v| v.split(',').any(|n| n == "v1_fixture")) => {
            eprintln!("skipped (TRADEWAL_ALLOW_SKIP=v1_fixture): {e}");
            std::process::exit(0);
        }
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

#[test]
fn v1_fixture_reads_exactly_as_v1_did() {
    let dir = copy_log("read");
    assert!(run(&["verify"], &dir).status.success(), "verify: {}", String::from_utf8_lossy(&run(&["verify"], &dir).stderr));
    assert_eq!(ok_stdout(&["export"], &dir), read("export.jsonl"), "intent export");
    assert_eq!(ok_stdout(&["export", "--raw"], &dir), read("export-raw.jsonl"), "raw export");
    assert_eq!(ok_stdout(&["recover"], &dir), read("recover.jsonl"), "recover");
    let mut old: Value = serde_json::from_str(&read("inspect.json")).unwrap();
    old.as_object_mut().unwrap().remove("dir");
    let new: Value = serde_json::from_str(&ok_stdout(&["inspect", "--json"], &dir)).unwrap();
    assert_superset(&old, &new, "inspect");
    let state = read_log(&dir, |_, _| {}).unwrap().state;
    assert_eq!((state.counts.intents, state.counts.executed, state.counts.aborted, state.counts.checkpoints), (340, 240, 40, 4));
    assert_eq!((state.next_lsn, state.in_doubt.len()), (625, 60));
}

fn intent(i: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_800_000_000_000_000_000 + i as i64,
        symbol: Symbol::new("NEW").unwrap(),
        side: Side::Buy,
        price: 10.5 + i as f64,
        qty: 2.0,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

#[test]
fn v1_fixture_recovers_and_takes_appends() {
    let dir = copy_log("append");
    let recover_lines = read("recover.jsonl");
    let wal = open(&dir);
    let r = wal.recovered();
    assert_eq!(r.next_lsn, 625);
    assert!(r.torn_tail.is_none());
    let want: Vec<u64> = recover_lines.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["lsn"].as_u64().unwrap()).collect();
    assert_eq!(r.in_doubt.iter().map(|d| d.lsn).collect::<Vec<_>>(), want, "in-doubt set of the v1 log");
    // Resolve a v1 in-doubt intent and append new ones, enough to rotate into a further segment.
    let first_doubt = want[0];
    let resolved_at = wal.mark_executed(first_doubt).unwrap().wait().unwrap();
    assert_eq!(resolved_at, 626, "the new session's checkpoint is LSN 625");
    let mut new = Vec::new();
    for i in 0..200 {
        let lsn = wal.append(&intent(i)).unwrap().wait().unwrap();
        if i % 2 == 0 {
            wal.mark_executed(lsn).unwrap().wait().unwrap();
        }
        new.push(lsn);
    }
    wal.close().unwrap();
    assert!(wal_segments(&dir) >= 6, "the appends rotated into a sixth segment");

    // The whole mixed log: verify is clean; the v1 part of the export is unchanged except the
    // intent resolved in the new session; new intents follow in LSN order.
    assert!(run(&["verify"], &dir).status.success());
    let export = ok_stdout(&["export"], &dir);
    let lines: Vec<&str> = export.lines().collect();
    let old: Vec<&str> = read("export.jsonl").leak().lines().collect();
    assert_eq!(lines.len(), old.len() + 200);
    for (a, b) in lines.iter().zip(&old) {
        let lsn = serde_json::from_str::<Value>(b).unwrap()["lsn"].as_u64().unwrap();
        if lsn == first_doubt {
            // The v1 line with `exec` true and the format-2 fill keys of mark_executed (the whole qty).
            let mut want: Value = serde_json::from_str(&b.replace("\"exec\":false", "\"exec\":true")).unwrap();
            let qty = want["qty"].clone();
            want["status"] = "filled".into();
            want["filled_qty"] = qty;
            assert_eq!(serde_json::from_str::<Value>(a).unwrap(), want, "resolved in the new session");
        } else {
            assert_eq!(a, b);
        }
    }
    let lsns: Vec<u64> = lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["lsn"].as_u64().unwrap()).collect();
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "LSN order across v1 and new segments");
    assert_eq!(&lsns[old.len()..], &new[..]);
    let raw = ok_stdout(&["export", "--raw"], &dir);
    assert!(raw.starts_with(&read("export-raw.jsonl")), "the raw export of the v1 records is unchanged");

    // And it opens again (recovery over v1 and new segments together).
    let st = read_log(&dir, |_, _| {}).unwrap().state;
    assert_eq!((st.counts.intents, st.counts.executed, st.counts.aborted), (340 + 200, 240 + 1 + 100, 40));
    // Records after LSN 626: the 300 appends and marks, and the new segment's checkpoint (159 in
    // doubt at its rotation at most: 1 or 2 parts of 128).
    let rotation_parts = st.counts.checkpoints - 4 - 1;
    assert!((1..=2).contains(&rotation_parts), "{rotation_parts}");
    assert_eq!(st.next_lsn, 626 + 300 + rotation_parts + 1);
    let wal = open(&dir);
    assert_eq!(wal.recovered().in_doubt.len(), 60 - 1 + 100);
    assert_eq!(wal.recovered().next_lsn, st.next_lsn);
    // The v2 segments record the time range of the segment before each (format 1 included).
    let ranges = st.segments.iter().filter(|s| s.version == 2).filter_map(|s| s.prev_range).count();
    assert_eq!(ranges, st.segments.iter().filter(|s| s.version == 2).count(), "every v2 segment records its predecessor's range");
    wal.close().unwrap();
}

fn wal_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log")).count()
}

//! Tests of the bench crate: report formats, the CO-corrected recorder, the peer adapters, and a
//! tiny smoke run of `run()`. No timing thresholds anywhere.

use std::path::PathBuf;
use tradewal_bench::hgrm;
use tradewal_bench::recorder::{new_histogram, record, OpenLoopRecorder, Schedule};
use tradewal_bench::systems::{sample_intent, JsonlSketch, Kind, Okaywal, SqliteWal, System, WalEntry};

/// Temp dirs on the data disk (O_DIRECT and fsync must mean something; /tmp may be tmpfs).
fn temp_dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-test-data");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

#[test]
fn hgrm_parses_back_monotone_with_full_count() {
    let mut h = new_histogram();
    // A skewed distribution: 10k values 80..120 us plus a tail up to 40 ms.
    for i in 0..10_000u64 {
        record(&mut h, 80_000 + (i * 7919) % 40_000);
    }
    for i in 1..=25u64 {
        record(&mut h, i * 1_600_000);
    }
    let text = hgrm::render(&h, 1e3);
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "header: {text:.80}");
    let rows = hgrm::parse(&text).unwrap();
    assert!(rows.len() > 10);
    for w in rows.windows(2) {
        assert!(w[1].percentile >= w[0].percentile, "percentiles monotone: {w:?}");
        assert!(w[1].value >= w[0].value, "values monotone: {w:?}");
        assert!(w[1].total_count >= w[0].total_count, "counts monotone: {w:?}");
    }
    let last = rows.last().unwrap();
    assert_eq!(last.total_count, h.len());
    assert_eq!(last.percentile, 1.0);
    assert!(last.inverse.is_none(), "last row has no 1/(1-p)");
    assert!(rows[..rows.len() - 1].iter().all(|r| r.inverse.is_some()));
    // Values are in microseconds: the max row is the 40 ms sample.
    assert!((last.value - 40_000.0).abs() / 40_000.0 < 0.01, "max {} us", last.value);
    assert!(text.contains(&format!("Total count    = {:>12}", h.len())));
    // The 1/(1-p) column matches the percentile column.
    for r in &rows[..rows.len() - 1] {
        let inv = r.inverse.unwrap();
        assert!((inv - 1.0 / (1.0 - r.percentile)).abs() <= 0.01 * inv.max(1.0), "{r:?}");
    }
}

#[test]
fn hgrm_parse_rejects_garbage() {
    assert!(hgrm::parse("  1.0 0.5\n").is_err());
    assert!(hgrm::parse("  x 0.5 3 2.0\n").is_err());
}

#[test]
fn open_loop_recorder_charges_a_stall_to_queued_ops() {
    // 10 ops intended every 100 us. The system serves each in 10 us, except that op 2 stalls
    // for 1 ms; ops 3.. are issued only when the generator gets control back.
    let sched = Schedule::new(0, 10_000.0);
    assert_eq!(sched.intended_ns(0), 0);
    assert_eq!(sched.intended_ns(3), 300_000);
    let mut rec = OpenLoopRecorder::new();
    let mut free_at = 0u64;
    let mut expected = Vec::new();
    for i in 0..10u64 {
        let intended = sched.intended_ns(i);
        let issued = intended.max(free_at);
        let service = if i == 2 { 1_000_000 } else { 10_000 };
        let done = issued + service;
        free_at = done;
        rec.record(intended, issued, done);
        expected.push(done - intended);
    }
    // Op 2 (intended 0.2 ms) ends at 1.2 ms; op 3 (intended 0.3 ms) is issued then and ends at
    // 1.21 ms: 910 us corrected, 10 us uncorrected; op 4 ends at 1.22 ms: 820 us.
    assert_eq!(expected[1], 10_000);
    assert_eq!(expected[2], 1_000_000);
    assert_eq!(expected[3], 910_000);
    assert_eq!(expected[4], 820_000);
    assert_eq!(rec.len(), 10);
    let mut want = new_histogram();
    for e in &expected {
        record(&mut want, *e);
    }
    assert_eq!(rec.corrected, want, "corrected samples are completion - intended");
    // Uncorrected: every op but the stalled one took 10 us.
    assert_eq!(rec.uncorrected.count_between(9_000, 11_000), 9);
    assert_eq!(rec.max_issue_lag_ns, 1_200_000 - 300_000);
    assert!(rec.corrected.value_at_quantile(0.5) > 100 * rec.uncorrected.value_at_quantile(0.5) / 10);
}

#[test]
fn jsonl_sketch_lines_parse_back() {
    let d = temp_dir();
    let s = JsonlSketch::open(d.path()).unwrap();
    for i in 0..5 {
        s.append_durable(&sample_intent(i)).unwrap();
    }
    let path = s.path().to_path_buf();
    drop(s);
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<WalEntry> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    for (i, e) in lines.iter().enumerate() {
        assert_eq!(*e, WalEntry::from(&sample_intent(i as u64)));
    }
}

#[test]
fn sqlite_rows_exist_after_reopen() {
    let d = temp_dir();
    {
        let s = SqliteWal::open(d.path()).unwrap();
        for i in 0..7 {
            s.append_durable(&sample_intent(i)).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(d.path().join(SqliteWal::FILE)).unwrap();
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM wal", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 7);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let ts: i64 = conn.query_row("SELECT ts FROM wal ORDER BY id LIMIT 1 OFFSET 3", [], |r| r.get(0)).unwrap();
    assert_eq!(ts, sample_intent(3).ts_ns);
}

#[test]
fn okaywal_entries_readable_after_reopen() {
    let d = temp_dir();
    let s = Okaywal::open(d.path()).unwrap();
    for i in 0..6 {
        s.append_durable(&sample_intent(i)).unwrap();
    }
    s.shutdown().unwrap();
    let collect = tradewal_bench::systems::CollectEntries::default();
    let entries = collect.entries.clone();
    let wal = okaywal::WriteAheadLog::recover(d.path(), collect).unwrap();
    wal.shutdown().unwrap();
    let got: Vec<WalEntry> = entries.lock().unwrap().iter().map(|c| serde_json::from_slice(c).unwrap()).collect();
    assert_eq!(got.len(), 6);
    assert_eq!(got[5], WalEntry::from(&sample_intent(5)));
}

#[test]
fn tradewal_adapter_appends_durably() {
    let d = temp_dir();
    {
        let s = tradewal_bench::tw::open_system(Kind::TradewalDsync, d.path()).unwrap();
        for i in 0..5 {
            s.append_durable(&sample_intent(i)).unwrap();
        }
        assert_eq!(s.name(), "tradewal-dsync");
    }
    let segs =
        std::fs::read_dir(d.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".log")).count();
    assert!(segs >= 1, "a segment file exists");
}

#[test]
fn smoke_run_writes_every_report() {
    let d = temp_dir();
    let mut opts = tradewal_bench::BenchOptions::smoke();
    opts.dir = d.path().join("data");
    opts.out = Some(d.path().join("out"));
    opts.command = "test".into();
    let report = tradewal_bench::run(opts).unwrap();
    let text = report.to_string();
    assert!(text.lines().nth(1).unwrap().starts_with("machine: "), "machine on top: {text:.200}");
    for id in ["fsync", "qd1", "closed1", "closed4", "export"] {
        assert!(report.workloads.iter().any(|w| w.id == id), "workload {id} present");
    }
    for k in [Kind::Jsonl, Kind::Sqlite, Kind::Okaywal] {
        let r = report.row("qd1", k.label()).unwrap_or_else(|| panic!("{} in qd1", k.label()));
        assert!(r.ops > 0);
    }
    let out = d.path().join("out");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(out.join("qd1.svg").exists());
    let h = std::fs::read_to_string(out.join("qd1_okaywal_us.hgrm")).unwrap();
    let rows = hgrm::parse(&h).unwrap();
    assert_eq!(rows.last().unwrap().total_count, report.row("qd1", "okaywal").unwrap().hist.len());
    // The run directory is removed afterwards.
    assert_eq!(std::fs::read_dir(d.path().join("data")).unwrap().count(), 0);
}

#[test]
fn floor_column_only_where_comparable() {
    use tradewal_bench::{Row, Workload};
    let mut h = new_histogram();
    record(&mut h, 90_000);
    let w = |id: &str| Workload {
        id: id.into(),
        title: id.into(),
        rows: vec![Row { system: "x".into(), hist: h.clone(), ops: 1, secs: 1.0, note: None }],
        notes: vec![],
    };
    for (id, want) in [("qd1", true), ("fsync", true), ("closed16", false), ("open", false), ("pipelined", false)] {
        let wl = w(id);
        assert_eq!(wl.floor_comparable(), want, "{id}");
        let text = wl.render(Some(80.0).filter(|_| wl.floor_comparable()));
        assert_eq!(text.contains("x floor"), want, "{id}: {text}");
    }
}

//! Every public entry point with hostile input: invalid intents and outcomes, invalid
//! configurations, directories that are files or unusable, a full disk, a second writer from
//! another process, stray files in the log directory; and the file modes. In each case the error is
//! typed, nothing is written that should not be, and nothing acknowledged is lost.
//! Run: `cargo test --release -p tradewal-tests --test hostile -- --nocapture`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tradewal::{read_log, Lsn, Retention, Side, Symbol, TradeIntent, Wal, WalConfig, WalError};
use tradewal_codec::{Record, SegmentName};

/// Hang guard for one ticket (not a performance figure).
const TICKET_DEADLINE: Duration = Duration::from_secs(60);

fn tmpdir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostile-{}", std::process::id()))
        .join(format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

fn config(dir: &Path) -> WalConfig {
    WalConfig::new(dir).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer()
}

fn open(dir: &Path) -> Option<Wal> {
    match Wal::open(config(dir)) {
        Ok(w) => Some(w),
        Err(WalError::Config(m)) => {
            tradewal_testkit::cannot_run("hostile", "odirect", format!("cannot open a log in {}: {m}", dir.display()));
            None
        }
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn good() -> TradeIntent {
    TradeIntent {
        ts_ns: 1,
        symbol: Symbol::new("BTCUSDT").unwrap(),
        side: Side::Buy,
        price: 43250.5,
        qty: 0.25,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn records(dir: &Path) -> Vec<(Lsn, Record)> {
    let mut v = Vec::new();
    read_log(dir, |f, r| v.push((f.lsn, r.clone()))).expect("read_log");
    v
}

use tradewal_testkit::is_root;

#[test]
fn invalid_intents_and_outcomes_write_nothing() {
    let dir = tmpdir("intents");
    let Some(wal) = open(&dir) else { return };
    let mut bad = Vec::new();
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, -1.0, f64::MIN] {
        bad.push(TradeIntent { price: v, ..good() });
        bad.push(TradeIntent { qty: v, ..good() });
    }
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, -1.0, -f64::MIN_POSITIVE] {
        bad.push(TradeIntent { stop_loss: v, ..good() });
        bad.push(TradeIntent { take_profit: v, ..good() });
    }
    let before = wal.durable_lsn();
    for i in &bad {
        assert!(matches!(wal.append(i), Err(WalError::InvalidIntent(_))), "append accepted {i:?}");
        assert!(matches!(wal.try_append(i), Err(WalError::InvalidIntent(_))), "try_append accepted {i:?}");
    }
    // Symbols cannot even be built invalid.
    for s in ["", "ABCDEFGHIJKLMNOPQ", "BTC USD", "BTC\nUSD", "é", "\u{7f}", "A\0"] {
        assert!(Symbol::new(s).is_err(), "symbol {s:?} accepted");
    }
    // Extreme but valid values are accepted.
    let extreme =
        TradeIntent { ts_ns: i64::MIN, price: f64::MIN_POSITIVE, qty: f64::MAX, stop_loss: f64::MAX, take_profit: 5e-324, ..good() };
    wal.append(&extreme).unwrap().wait_timeout(TICKET_DEADLINE).expect("ticket resolves").unwrap();
    let lsn = {
        let mut t = wal.append(&good()).unwrap();
        t.wait_timeout(TICKET_DEADLINE).expect("ticket resolves").unwrap()
    };
    // Outcomes that name no in-doubt intent: refused at the call or by the ticket, nothing written.
    let not_in_doubt = |r: Result<tradewal::Ticket, WalError>, what: &str| match r {
        Err(WalError::NotInDoubt { .. }) => {}
        Ok(mut t) => match t.wait_timeout(TICKET_DEADLINE).expect("ticket resolves") {
            Err(WalError::NotInDoubt { .. }) => {}
            other => panic!("{what}: {other:?}"),
        },
        Err(e) => panic!("{what}: {e}"),
    };
    not_in_doubt(wal.mark_executed(0), "LSN 0");
    not_in_doubt(wal.mark_aborted(u64::MAX), "LSN u64::MAX");
    not_in_doubt(wal.mark_executed(lsn + 1_000_000), "a future LSN");
    not_in_doubt(wal.mark_executed(1), "the checkpoint at LSN 1");
    let out = {
        let mut t = wal.mark_executed(lsn).unwrap();
        t.wait_timeout(TICKET_DEADLINE).expect("ticket resolves").unwrap()
    };
    not_in_doubt(wal.mark_aborted(lsn), "an intent already executed");
    not_in_doubt(wal.mark_executed(out), "an outcome record");
    assert!(wal.durable_lsn() >= before);
    wal.close().unwrap();
    let recs = records(&dir);
    let intents = recs.iter().filter(|(_, r)| matches!(r, Record::Intent(_))).count();
    let outcomes = recs.iter().filter(|(_, r)| matches!(r, Record::Outcome(_))).count();
    assert_eq!((intents, outcomes), (2, 1), "only the valid intents and the one valid outcome were written");
    let got = recs.iter().find_map(|(_, r)| match r {
        Record::Intent(i) if i.ts_ns == i64::MIN => Some(*i),
        _ => None,
    });
    assert_eq!(
        got.map(|i| (i.price.to_bits(), i.qty.to_bits(), i.take_profit.to_bits())),
        Some((extreme.price.to_bits(), extreme.qty.to_bits(), extreme.take_profit.to_bits()))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_configs_are_typed_and_create_nothing() {
    let base = tmpdir("configs");
    let dir = base.join("log");
    let cases: Vec<(&str, WalConfig)> = vec![
        ("segment not a multiple of 4096", config(&dir).segment_bytes((1 << 20) + 1)),
        ("segment below 1 MiB", config(&dir).segment_bytes(1 << 19)),
        ("segment zero", config(&dir).segment_bytes(0)),
        ("segment over 1 TiB", config(&dir).segment_bytes((1 << 40) + 4096)),
        ("K = 0", config(&dir).in_flight_batches(0)),
        ("K = 65", config(&dir).in_flight_batches(65)),
        ("batch not a multiple of 4096", config(&dir).max_batch_bytes((64 << 10) + 1)),
        ("batch below 32 KiB", config(&dir).max_batch_bytes(16 << 10)),
        ("batch over 64 MiB", config(&dir).segment_bytes(1 << 30).max_batch_bytes(128 << 20)),
        ("queue 0", config(&dir).queue_capacity(0)),
        ("queue over 2^31", config(&dir).queue_capacity(usize::MAX)),
        ("in doubt 0", config(&dir).max_in_doubt(0)),
        ("in doubt over 2^28", config(&dir).max_in_doubt(usize::MAX)),
        ("segment cannot hold a full checkpoint", config(&dir).max_in_doubt(1 << 20)),
        ("archive = log dir", config(&dir).retention(Retention::ArchiveTo(dir.clone()))),
        ("archive empty path", config(&dir).retention(Retention::ArchiveTo(PathBuf::new()))),
        ("empty dir path", config(Path::new(""))),
    ];
    // Each refusal names the setting at fault (one generic error would not pass).
    let names_the_setting = |what: &str| -> &'static str {
        match what {
            w if w.starts_with("segment cannot") => "cannot hold a full checkpoint",
            w if w.starts_with("segment over") => "is over 16 GiB",
            w if w.starts_with("segment") => "segment_bytes",
            w if w.starts_with("K =") => "in_flight_batches",
            w if w.starts_with("batch") => "max_batch_bytes",
            w if w.starts_with("queue") => "queue_capacity",
            w if w.starts_with("in doubt") => "max_in_doubt",
            w if w.starts_with("archive") => "archive directory must differ",
            w if w.starts_with("empty dir") => "empty directory path",
            w => panic!("no expected reason for {w}"),
        }
    };
    assert_eq!(cases.len(), 17, "docs/reliability.md lists 17 invalid configurations");
    for (what, c) in cases {
        match Wal::open(c) {
            Err(WalError::Config(m)) => {
                let needle = names_the_setting(what);
                assert!(m.contains(needle), "{what}: {m:?} does not say {needle:?}");
            }
            other => panic!("{what}: expected WalError::Config, got {other:?}"),
        }
        assert!(!dir.exists(), "{what}: the directory was created");
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_file_where_the_directory_should_be() {
    let base = tmpdir("file-as-dir");
    let file = base.join("not-a-dir");
    std::fs::write(&file, b"precious").unwrap();
    for p in [file.clone(), file.join("sub")] {
        match Wal::open(config(&p)) {
            Err(WalError::Io { context, .. }) => assert!(!context.is_empty()),
            other => panic!("{}: expected an I/O error, got {other:?}", p.display()),
        }
        assert!(read_log(&p, |_, _| {}).is_err(), "read_log on {} succeeded", p.display());
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"precious", "the file was changed");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn unusable_directories() {
    let dir = tmpdir("unusable");
    let Some(wal) = open(&dir) else { return };
    let lsn = wal.append(&good()).unwrap().wait().unwrap();
    wal.close().unwrap();
    let before = records(&dir);
    if is_root() {
        println!("unusable_directories: running as root, which bypasses chmod 000; testing a LOCK that cannot be opened instead");
    } else {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
        let r = Wal::open(config(&dir));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(r, Err(WalError::Io { .. })), "chmod 000 directory: {r:?}");
    }
    // A directory where the LOCK file must go: the writer lock cannot be taken.
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    std::fs::create_dir(dir.join("LOCK")).unwrap();
    let r = Wal::open(config(&dir));
    assert!(matches!(r, Err(WalError::Io { .. })), "LOCK is a directory: {r:?}");
    std::fs::remove_dir(dir.join("LOCK")).unwrap();
    // Stray entries: a directory and a symlink named like segments, a non-UTF-8 name, junk files.
    let stamp = |no| SegmentName { session_start_unix_s: 1_600_000_000, segment_no: no }.file_name();
    std::fs::create_dir(dir.join(stamp(90))).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join(stamp(91))).unwrap();
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"wal_\xff\xfe.log")), b"junk").unwrap();
    std::fs::write(dir.join("notes.txt"), b"junk").unwrap();
    std::fs::write(dir.join("wal_20260231_000000_000092.log"), b"not a valid date: ignored").unwrap();
    assert_eq!(records(&dir), before, "stray entries changed what the scan sees");
    let wal = Wal::open(config(&dir)).expect("stray entries are ignored");
    assert!(wal.recovered().torn_tail.is_none());
    assert!(wal.recovered().removed.is_empty(), "removed {:?}", wal.recovered().removed);
    wal.close().unwrap();
    assert!(records(&dir).iter().any(|(l, r)| *l == lsn && matches!(r, Record::Intent(_))));
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"junk", "a foreign file was touched");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_files_named_like_segments_are_refused_without_panic() {
    for (what, bytes) in [
        ("empty file", vec![]),
        ("10 bytes", b"TRADEWAL\x01\x00".to_vec()),
        ("5000 random bytes", (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
        ("a header magic then zeros", [b"TRADEWAL".to_vec(), vec![0; 8192]].concat()),
    ] {
        let dir = tmpdir("garbage-segment");
        let name = SegmentName { session_start_unix_s: 1_600_000_000, segment_no: 1 }.file_name();
        std::fs::write(dir.join(&name), &bytes).unwrap();
        let scan = read_log(&dir, |_, _| {});
        // A garbage-only first segment is either a torn first write or corruption, never records.
        match &scan {
            Ok(r) => assert_eq!(r.state.counts.total(), 0, "{what}: records from garbage"),
            Err(WalError::Corrupt { file, .. }) => assert_eq!(*file, name, "{what}"),
            Err(e) => panic!("{what}: {e}"),
        }
        match Wal::open(config(&dir)) {
            Ok(w) => {
                assert!(scan.is_ok(), "{what}: open succeeded where the scan refused");
                assert_eq!(w.recovered().next_lsn, 1, "{what}");
                w.close().unwrap();
            }
            Err(WalError::Corrupt { .. }) => {
                assert!(scan.is_err(), "{what}: open refused where the scan did not")
            }
            Err(WalError::Config(m)) => tradewal_testkit::cannot_run(what, "odirect", m),
            Err(e) => panic!("{what}: {e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn child() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tw-crash-child"))
}

#[test]
fn second_writer_from_another_process_is_locked() {
    let dir = tmpdir("lock");
    let Some(w) = open(&dir) else { return };
    w.close().unwrap();
    // The child holds the log: this process gets Locked, and reading still works.
    let mut holder = child().arg("hold").arg(&dir).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "holder said {line:?}");
    // The live holder's maintenance thread may write its MANIFEST at any moment: only the files a
    // second opener could touch (segments, LOCK, quarantine) are compared.
    let not_manifest = |n: &std::ffi::OsString| !n.to_string_lossy().starts_with("MANIFEST");
    let mut files_before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).filter(not_manifest).collect();
    files_before.sort();
    // Default lock_timeout (5 s): the second writer waits it out, then names the holder.
    let t0 = std::time::Instant::now();
    match Wal::open(config(&dir)) {
        Err(WalError::Locked { dir: d, pid }) => {
            assert_eq!(d, dir);
            assert_eq!(pid, Some(holder.id()), "Locked names the live holder's pid");
        }
        other => panic!("second writer: {other:?}"),
    }
    assert!(t0.elapsed() >= tradewal::config::LOCK_TIMEOUT_DEFAULT, "Locked before the default timeout: {:?}", t0.elapsed());
    let mut files_after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).filter(not_manifest).collect();
    files_after.sort();
    assert_eq!(files_before, files_after, "a refused open created or removed files");
    read_log(&dir, |_, _| {}).expect("read-only scan while a writer is live");
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    // This process holds it: the child gets Locked.
    let wal = Wal::open(config(&dir)).unwrap();
    let o = child().arg("try").arg(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "LOCKED");
    wal.close().unwrap();
    let o = child().arg("try").arg(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "OK", "after close the lock is free");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_are_0600_and_directories_0700() {
    let base = tmpdir("modes");
    let (dir, archive) = (base.join("log"), base.join("archive"));
    let c = config(&dir).retention(Retention::ArchiveTo(archive.clone()));
    let wal = match Wal::open(c.clone()) {
        Ok(w) => w,
        Err(WalError::Config(m)) => return tradewal_testkit::cannot_run("files_are_0600", "odirect", m),
        Err(e) => panic!("{e}"),
    };
    // Enough one-record batches to rotate twice (so retention archives a segment).
    while wal.stats().rotations < 2 {
        wal.append(&good()).unwrap().wait().unwrap();
    }
    wal.close().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "log directory");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    if archive.exists() {
        assert_eq!(mode(&archive), 0o700, "archive directory");
        for e in std::fs::read_dir(&archive).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    } else {
        println!("files_are_0600: retention had not archived a segment yet; archive modes not checked");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Unmounts on drop, also when the test fails.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_a_typed_error_and_loses_no_ack() {
    if !is_root() {
        return tradewal_testkit::cannot_run("full_disk", "root", "mounting a small tmpfs needs root");
    }
    let mnt = tmpdir("fulldisk");
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"]).arg(&mnt).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        return tradewal_testkit::cannot_run("full_disk", "fulldisk", "mount -t tmpfs is not permitted here");
    }
    let _guard = Mount(mnt.clone());
    let dir = mnt.join("log");
    let c = config(&dir).allow_buffered_io(true);
    let wal = match Wal::open(c.clone()) {
        Ok(w) => w,
        Err(e) => panic!("open on a 4 MiB tmpfs: {e}"),
    };
    println!("full_disk: backend {}", wal.backend());
    // 4 MiB holds the first segment, its spare and little more: keep appending until it fails.
    let mut acked: Vec<(Lsn, i64)> = Vec::new();
    let mut failure = None;
    for i in 0..200_000i64 {
        let intent = TradeIntent { ts_ns: i, ..good() };
        let r = wal.append(&intent).and_then(|mut t| t.wait_timeout(TICKET_DEADLINE).expect("ticket resolves (hang guard)"));
        match r {
            Ok(lsn) => acked.push((lsn, i)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 4 MiB filesystem filled up");
    println!("full_disk: {} acknowledged, then: {failure}", acked.len());
    assert!(matches!(failure, WalError::Poisoned { .. } | WalError::Io { .. }), "untyped failure: {failure:?}");
    // Later calls fail too (fail-stop), without panicking.
    assert!(wal.append(&good()).and_then(|mut t| t.wait_timeout(TICKET_DEADLINE).expect("resolves")).is_err());
    let _ = wal.close();
    // Every acknowledged intent is on the (full) filesystem.
    let mut got = std::collections::BTreeMap::new();
    read_log(&dir, |f, r| {
        if let Record::Intent(i) = r {
            got.insert(f.lsn, i.ts_ns);
        }
    })
    .expect("read the full log");
    for (lsn, ts) in &acked {
        assert_eq!(got.get(lsn), Some(ts), "acknowledged LSN {lsn} lost");
    }
    // Reopening on the full filesystem: typed error or success, never a panic; if it opens, the
    // acknowledged records are still there.
    match Wal::open(c) {
        Ok(w) => {
            println!("full_disk: reopened (recovery found room)");
            w.close().ok();
        }
        Err(e) => {
            println!("full_disk: reopen refused: {e}");
            assert!(matches!(e, WalError::Io { .. }), "reopen: {e:?}");
        }
    }
    let mut again = std::collections::BTreeMap::new();
    read_log(&dir, |f, r| {
        if let Record::Intent(i) = r {
            again.insert(f.lsn, i.ts_ns);
        }
    })
    .expect("read after reopen");
    for (lsn, ts) in &acked {
        assert_eq!(again.get(lsn), Some(ts), "acknowledged LSN {lsn} lost after reopen");
    }
    let _ = std::io::stdout().flush();
}

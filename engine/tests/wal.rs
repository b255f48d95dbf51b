//! Engine tests on the real io_uring path (issue: "Tests that must exist").
mod common;
use common::*;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tradewal::*;
use tradewal::{Durability, IoFault};
use tradewal_codec::{Record, RecordKind};

/// Every record in the directory, read back without the lock: LSN → record.
fn read_all(dir: &std::path::Path) -> (BTreeMap<Lsn, Record>, LogReport) {
    let mut m = BTreeMap::new();
    let r = read_log(dir, |f, rec| {
        assert!(m.insert(f.lsn, rec.clone()).is_none(), "LSN {} twice", f.lsn);
    })
    .unwrap();
    (m, r)
}

fn assert_contiguous(m: &BTreeMap<Lsn, Record>) {
    let keys: Vec<_> = m.keys().copied().collect();
    for w in keys.windows(2) {
        assert_eq!(w[1], w[0] + 1, "LSN gap after {}", w[0]);
    }
}

fn io_uring_available() -> bool {
    let d = tempdir();
    match Wal::open(small(d.path())) {
        Ok(w) => {
            let ok = w.backend().contains("io_uring");
            if !ok {
                tradewal_testkit::cannot_run("io_uring tests", "io_uring", format!("the log got {}", w.backend()));
            }
            w.close().unwrap();
            ok
        }
        Err(e) => panic!("cannot open a log: {e}"),
    }
}

#[test]
fn one_thread_append_outcomes_reopen() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    assert!(wal.recovered().in_doubt.is_empty());
    let mut appended = BTreeMap::new();
    for i in 0..300 {
        let lsn = wal.append(&intent(i)).unwrap().wait().unwrap();
        assert!(wal.durable_lsn() >= lsn, "ticket resolved before the watermark covered it");
        appended.insert(lsn, intent(i));
    }
    let lsns: Vec<Lsn> = appended.keys().copied().collect();
    let mut executed = vec![];
    let mut aborted = vec![];
    for (j, &l) in lsns.iter().enumerate() {
        match j % 10 {
            0..=6 => {
                wal.mark_executed(l).unwrap().wait().unwrap();
                executed.push(l);
            }
            7 => {
                wal.mark_aborted(l).unwrap().wait().unwrap();
                aborted.push(l);
            }
            _ => {}
        }
    }
    // An outcome twice, or for an LSN that is not an intent: refused, nothing written.
    let before = wal.durable_lsn();
    assert!(matches!(wal.mark_executed(executed[0]).unwrap().wait(), Err(WalError::NotInDoubt { .. })));
    assert!(matches!(wal.mark_aborted(1).unwrap().wait(), Err(WalError::NotInDoubt { lsn: 1 })), "LSN 1 is the checkpoint");
    assert!(matches!(wal.mark_executed(0), Err(WalError::NotInDoubt { lsn: 0 })));
    assert_eq!(wal.durable_lsn(), before);
    wal.close().unwrap();

    let (records, _) = read_all(d.path());
    assert_contiguous(&records);
    for (l, i) in &appended {
        assert_eq!(records.get(l), Some(&Record::Intent(*i)), "acknowledged intent {l} missing or changed");
    }
    let wal = Wal::open(small(d.path())).unwrap();
    let want: Vec<Lsn> = lsns.iter().copied().filter(|l| !executed.contains(l) && !aborted.contains(l)).collect();
    let got: Vec<Lsn> = wal.recovered().in_doubt.iter().map(|d| d.lsn).collect();
    assert_eq!(got, want, "in-doubt set must be exact");
    for d in &wal.recovered().in_doubt {
        assert_eq!(d.intent, appended[&d.lsn]);
    }
    assert!(wal.recovered().torn_tail.is_none());
    // LSNs keep rising across sessions.
    let next = wal.append(&intent(999)).unwrap().wait().unwrap();
    assert!(next > *records.keys().last().unwrap());
    wal.close().unwrap();
}

#[test]
fn eight_threads_close_reopen() {
    let d = tempdir();
    let wal = Wal::open(small(d.path()).max_in_doubt(20_000).segment_bytes(8 << 20)).unwrap();
    let per = 1500u64;
    let results: Vec<Vec<(Lsn, TradeIntent, bool)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8u64)
            .map(|t| {
                let wal = &wal;
                s.spawn(move || {
                    let mut out = vec![];
                    for i in 0..per {
                        let it = intent(t * 1_000_000 + i);
                        let lsn = wal.append(&it).unwrap().wait().unwrap();
                        let exec = i % 3 == 0;
                        if exec {
                            wal.mark_executed(lsn).unwrap().wait().unwrap();
                        }
                        out.push((lsn, it, exec));
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = wal.stats();
    eprintln!("8 threads: {} batches for {} records", stats.batches, stats.records);
    wal.close().unwrap();
    let (records, _) = read_all(d.path());
    assert_contiguous(&records);
    let all: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(all.len(), 8 * per as usize);
    for (l, it, _) in &all {
        assert_eq!(records.get(l), Some(&Record::Intent(*it)));
    }
    let wal = Wal::open(small(d.path()).max_in_doubt(20_000).segment_bytes(8 << 20)).unwrap();
    let mut want: Vec<Lsn> = all.iter().filter(|(_, _, e)| !e).map(|(l, _, _)| *l).collect();
    want.sort();
    let got: Vec<Lsn> = wal.recovered().in_doubt.iter().map(|d| d.lsn).collect();
    assert_eq!(got, want);
    wal.close().unwrap();
}

/// Appends `n` intents with at most `window` tickets outstanding; returns (lsn, intent).
fn pipelined(wal: &Wal, from: u64, n: u64, window: usize) -> Vec<(Lsn, TradeIntent)> {
    let mut q: VecDeque<(Ticket, TradeIntent)> = VecDeque::new();
    let mut out = vec![];
    for i in from..from + n {
        if q.len() >= window {
            let (t, it) = q.pop_front().unwrap();
            out.push((t.wait().unwrap(), it));
        }
        let it = intent(i);
        q.push_back((wal.append(&it).unwrap(), it));
    }
    for (t, it) in q {
        out.push((t.wait().unwrap(), it));
    }
    out
}

/// Appends `n` intents with at most `window` outstanding, marking each executed once durable.
fn pipelined_executed(wal: &Wal, from: u64, n: u64, window: usize) -> u64 {
    let mut q: VecDeque<Ticket> = VecDeque::new();
    let mut outcomes: VecDeque<Ticket> = VecDeque::new();
    let mut done = 0;
    for i in from..from + n {
        if q.len() >= window {
            let l = q.pop_front().unwrap().wait().unwrap();
            outcomes.push_back(wal.mark_executed(l).unwrap());
            if outcomes.len() >= window {
                outcomes.pop_front().unwrap().wait().unwrap();
            }
            done += 1;
        }
        q.push_back(wal.append(&intent(i)).unwrap());
    }
    for t in q {
        outcomes.push_back(wal.mark_executed(t.wait().unwrap()).unwrap());
    }
    for t in outcomes {
        t.wait().unwrap();
    }
    done
}

fn rotation_run(retention: Retention) -> (common::TempDirs, Vec<(Lsn, TradeIntent)>, Vec<Lsn>) {
    let d = tempdir();
    let cfg = small(d.path()).max_in_doubt(1024).retention(retention.clone());
    let wal = Wal::open(cfg.clone()).unwrap();
    // 200 intents stay in doubt across every rotation; the rest are executed.
    let keep = pipelined(&wal, 0, 200, 64);
    pipelined_executed(&wal, 1000, 20_000, 256);
    let st = wal.stats();
    assert!(st.rotations >= 2, "expected rotations, got {st:?}");
    wal.close().unwrap();
    let keep_lsns = keep.iter().map(|(l, _)| *l).collect();
    (common::TempDirs(d), keep, keep_lsns)
}

#[test]
fn rotation_keep_all_in_doubt_survives() {
    let (d, keep, keep_lsns) = rotation_run(Retention::KeepAll);
    let files = segment_files(d.0.path());
    assert!(files.len() >= 3, "at least 3 segments: {files:?}");
    let (records, report) = read_all(d.0.path());
    assert_contiguous(&records);
    assert_eq!(report.state.in_doubt.iter().map(|x| x.lsn).collect::<Vec<_>>(), keep_lsns);
    // Every segment starts with a checkpoint carrying exactly the in-doubt set at that point.
    for s in &report.state.segments {
        let first = s.first_lsn.unwrap();
        assert!(matches!(records[&first], Record::Checkpoint(_)), "segment {} starts with {:?}", s.segment_no, records[&first].kind());
    }
    let wal = Wal::open(small(d.0.path()).max_in_doubt(1024)).unwrap();
    let got: Vec<_> = wal.recovered().in_doubt.iter().map(|x| (x.lsn, x.intent)).collect();
    assert_eq!(got, keep);
    wal.close().unwrap();
}

/// Issue 14, open time: with a manifest, `Wal::open` reads records only from the newest segment
/// it lists as holding data (that segment's checkpoint is the in-doubt set); older segments get a
/// header check. Rot inside an older segment is therefore not seen at open (the in-doubt set is
/// unchanged) but the whole-log read (`read_log`, what `tradewal verify` runs) refuses it; a
/// damaged header or a missing older segment is still refused at open.
#[test]
fn open_reads_records_from_the_newest_data_segment_only() {
    let (d, keep, keep_lsns) = rotation_run(Retention::KeepAll);
    let dir = d.0.path();
    let files = segment_files(dir);
    let mut frames: Vec<(Lsn, u64, RecordKind)> = vec![];
    let report = read_log(dir, |f, _| frames.push((f.lsn, f.offset, f.kind))).unwrap();
    let data: Vec<_> = report.state.segments.iter().filter(|s| s.first_lsn.is_some()).collect();
    assert!(data.len() >= 3, "at least 3 data segments: {files:?}");
    let newest = data.last().unwrap();
    let cfg = || small(dir).max_in_doubt(1024);

    let wal = Wal::open(cfg()).unwrap();
    let rec = wal.recovered().clone();
    wal.close().unwrap();
    assert_eq!(rec.scanned_from_segment, Some(newest.segment_no), "{rec:?}");
    assert_eq!(rec.in_doubt.iter().map(|x| (x.lsn, x.intent)).collect::<Vec<_>>(), keep);
    // Only the newest segment's records were read (and the clean close's own checkpoint).
    assert!(rec.counts.intents < report.state.counts.intents, "{:?} vs {:?}", rec.counts, report.state.counts);

    // Rot in an acknowledged intent of the first data segment.
    let first = data[0];
    let (lsn, offset, _) = *frames
        .iter()
        .filter(|(l, _, k)| *k == RecordKind::Intent && *l > first.first_lsn.unwrap() + 10 && *l < first.last_lsn.unwrap() - 10)
        .nth(5)
        .expect("an intent inside the first segment");
    let first_file = dir.join(&files[0]);
    let mut bytes = std::fs::read(&first_file).unwrap();
    let original = bytes.clone();
    bytes[offset as usize + 12] ^= 0x10;
    std::fs::write(&first_file, &bytes).unwrap();
    let verify = read_log(dir, |_, _| {});
    assert!(
        matches!(verify, Err(WalError::Corrupt { segment, .. }) if segment == first.segment_no),
        "read_log saw rot at LSN {lsn}: {verify:?}"
    );
    let wal = Wal::open(cfg()).expect("open does not read records before its start segment");
    assert_eq!(wal.recovered().in_doubt.iter().map(|x| x.lsn).collect::<Vec<_>>(), keep_lsns);
    let parts = keep_lsns.len().div_ceil(tradewal_codec::format::CHECKPOINT_ENTRIES_PER_RECORD).max(1) as u64;
    assert_eq!(wal.recovered().next_lsn, rec.next_lsn + parts, "one checkpoint per clean close");
    wal.close().unwrap();
    std::fs::write(&first_file, &original).unwrap();

    // A damaged header in an older segment is refused at open, the directory left as it was.
    let mut bytes = original.clone();
    bytes[40] ^= 0x01;
    std::fs::write(&first_file, &bytes).unwrap();
    let listing = segment_files(dir);
    let e = Wal::open(cfg()).expect_err("a damaged header in an older segment is refused");
    assert!(matches!(&e, WalError::Corrupt { segment, .. } if *segment == first.segment_no), "{e}");
    assert_eq!(segment_files(dir), listing);
    std::fs::write(&first_file, &original).unwrap();

    // A missing segment before the start is refused.
    let second = dir.join(&files[1]);
    let kept = std::fs::read(&second).unwrap();
    std::fs::remove_file(&second).unwrap();
    let e = Wal::open(cfg()).expect_err("a missing older segment is refused");
    assert!(matches!(&e, WalError::Corrupt { .. }), "{e}");
    std::fs::write(&second, &kept).unwrap();
    Wal::open(cfg()).unwrap().close().unwrap();
}

/// `read_log` on a live log (issue 10): it reads at least everything acknowledged when it began
/// (it stops after the segment that reaches the writer's watermark), and a real hole, a middle
/// segment deleted with both neighbours present, is still corruption.
#[test]
fn read_log_on_a_live_log_covers_the_watermark_and_refuses_a_missing_middle_segment() {
    let d = tempdir();
    let wal = Wal::open(small(d.path()).max_in_doubt(1024)).unwrap();
    pipelined_executed(&wal, 0, 40_000, 256);
    assert!(wal.stats().rotations >= 3, "{:?}", wal.stats());
    let acked = wal.durable_lsn();
    let (records, report) = read_all(d.path());
    assert_contiguous(&records);
    assert!(report.state.next_lsn > acked, "read_log ended at {} below the watermark {acked}", report.state.next_lsn);
    let files = segment_files(d.path());
    std::fs::remove_file(d.path().join(&files[1])).unwrap();
    match read_log(d.path(), |_, _| {}) {
        Err(WalError::Corrupt { segment, reason, .. }) => {
            assert!(segment >= 2 && matches!(reason, tradewal::CorruptReason::MissingSegment { .. }), "segment {segment}: {reason}")
        }
        other => panic!("a missing middle segment of a live log must be corruption: {other:?}"),
    }
    drop(wal);
}

#[test]
fn rotation_delete_keeps_only_what_the_checkpoint_needs() {
    let (d, keep, _) = rotation_run(Retention::Delete);
    let files = segment_files(d.0.path());
    assert!(files.len() <= 2, "old segments deleted: {files:?}");
    // Reopen: the first kept segment's checkpoint seeds the in-doubt set.
    let wal = Wal::open(small(d.0.path()).max_in_doubt(1024).retention(Retention::Delete)).unwrap();
    let got: Vec<_> = wal.recovered().in_doubt.iter().map(|x| (x.lsn, x.intent)).collect();
    assert_eq!(got, keep);
    let l = wal.mark_executed(keep[0].0).unwrap().wait().unwrap();
    assert!(l > keep[0].0);
    wal.close().unwrap();
    let (records, report) = read_all(d.0.path());
    assert_contiguous(&records);
    assert!(report.state.first_lsn.unwrap() > 1, "prefix removed by retention");
    assert_eq!(report.state.in_doubt.len(), keep.len() - 1);
}

#[test]
fn rotation_archive_moves_segments() {
    let arch = tempdir();
    let (d, keep, _) = rotation_run(Retention::ArchiveTo(arch.path().join("old")));
    let live = segment_files(d.0.path());
    let archived = segment_files(&arch.path().join("old"));
    assert!(live.len() <= 2 && archived.len() >= 2, "live {live:?} archived {archived:?}");
    for f in &archived {
        assert!(!live.contains(f));
    }
    let wal = Wal::open(small(d.0.path()).max_in_doubt(1024)).unwrap();
    assert_eq!(wal.recovered().in_doubt.len(), keep.len());
    wal.close().unwrap();
}

#[test]
fn second_open_is_locked_in_process() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    let timeout = std::time::Duration::from_millis(300);
    let t0 = std::time::Instant::now();
    match Wal::open(small(d.path()).lock_timeout(timeout)) {
        Err(WalError::Locked { dir, pid }) => {
            assert_eq!(dir, d.path());
            assert_eq!(pid, Some(std::process::id()), "the holder's pid, from the LOCK file");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(t0.elapsed() >= timeout, "Locked before the timeout: {:?}", t0.elapsed());
    match Wal::open(small(d.path()).lock_timeout(std::time::Duration::ZERO)) {
        Err(WalError::Locked { .. }) => {}
        other => panic!("expected Locked at once, got {other:?}"),
    }
    wal.close().unwrap();
    Wal::open(small(d.path())).unwrap().close().unwrap();
}

#[test]
fn open_waits_for_a_writer_that_closes_within_the_timeout() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    let lsn = wal.append(&intent(1)).unwrap().wait().unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        wal.close().unwrap();
    });
    let t0 = std::time::Instant::now();
    // Default lock_timeout (5 s): the open waits instead of failing with Locked.
    let wal2 = Wal::open(small(d.path())).expect("open waits for the holder");
    let waited = t0.elapsed();
    closer.join().unwrap();
    assert!(waited >= std::time::Duration::from_millis(250), "open did not wait: {waited:?}");
    assert_eq!(wal2.recovered().next_lsn, lsn + 1);
    wal2.close().unwrap();
}

#[test]
fn watermark_file_is_never_ahead_of_durable() {
    use tradewal::io::Storage as _;
    let d = tempdir();
    let wal = Arc::new(Wal::open(small(d.path())).unwrap());
    let storage = tradewal::io::fs::FsStorage::new(d.path());
    let cell = storage.watermark(false).unwrap().expect("the writer created the watermark file");
    assert!(cell.load() <= wal.durable_lsn());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (w, st) = (wal.clone(), stop.clone());
    let producer = std::thread::spawn(move || {
        let mut n = 0u64;
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            let t: Vec<_> = (0..64).map(|i| w.append(&intent(n + i)).unwrap()).collect();
            n += 64;
            let lsns: Vec<_> = t.into_iter().map(|t| t.wait().unwrap()).collect();
            for l in lsns {
                w.mark_executed(l).unwrap().wait().unwrap();
            }
        }
        n
    });
    let (mut checks, mut rises, mut last) = (0u64, 0u64, 0u64);
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_millis(700) {
        let seen = cell.load();
        // Read the durable watermark after the hint: the hint was published after durable rose.
        let durable = wal.durable_lsn();
        assert!(seen <= durable, "watermark file {seen} ahead of durable {durable}");
        assert!(seen >= last, "watermark file fell: {last} then {seen}");
        rises += u64::from(seen > last);
        last = seen;
        checks += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = producer.join().unwrap();
    assert!(appended > 0);
    assert!(rises > 10, "the watermark file rose only {rises} times in {checks} checks");
    let n = wal.durable_lsn();
    assert_eq!(cell.load(), n, "after every ticket resolved the file names the last durable LSN");
    Arc::try_unwrap(wal).unwrap().close().unwrap();
    assert_eq!(cell.load(), n);
    // Recovery never reads it: a wrong value in it changes nothing.
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new().write(true).open(d.path().join("watermark")).unwrap();
        f.write_all_at(&[0xffu8; 4096], 0).unwrap(); // never shortened while mapped
    }
    let wal = Wal::open(small(d.path())).unwrap();
    assert_eq!(wal.recovered().next_lsn, n + 1);
    let seen = cell.load();
    assert!(seen >= n && seen <= wal.durable_lsn(), "the next writer republishes recovery's end: {seen}, {n}");
    wal.close().unwrap();
}

/// Runs in a child process (re-executed test binary) when TW_LOCK_CHILD_DIR is set.
#[test]
fn lock_child_process_probe() {
    let Ok(dir) = std::env::var("TW_LOCK_CHILD_DIR") else { return };
    match Wal::open(small(std::path::Path::new(&dir))) {
        Err(WalError::Locked { .. }) => println!("CHILD:LOCKED"),
        Ok(w) => {
            println!("CHILD:OPENED");
            w.close().unwrap();
        }
        Err(e) => println!("CHILD:ERROR {e}"),
    }
}

#[test]
fn second_open_is_locked_across_processes() {
    let d = tempdir();
    let child = |d: &std::path::Path| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lock_child_process_probe", "--nocapture", "--test-threads=1"])
            .env("TW_LOCK_CHILD_DIR", d)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let wal = Wal::open(small(d.path())).unwrap();
    assert!(child(d.path()).contains("CHILD:LOCKED"));
    wal.close().unwrap();
    assert!(child(d.path()).contains("CHILD:OPENED"), "lock released on close");
}

fn fail_stop(durability: Durability) {
    let d = tempdir();
    // Session batch 0 is the checkpoint, 1..=3 the first appends at QD1; batch 4 is misaligned.
    let wal = Wal::open(small(d.path()).durability(durability).inject_misaligned_write(4)).unwrap();
    checkpoint_durable(&wal);
    let backend_is_uring = wal.backend().contains("io_uring");
    if !backend_is_uring {
        // The fail-stop path under test is the io_uring one; the fallback is tested only when the
        // environment explicitly allows io_uring to be missing.
        tradewal_testkit::cannot_run("fail_stop", "io_uring", format!("the log got {}", wal.backend()));
    }
    let mut acked = vec![];
    for i in 0..3 {
        acked.push((wal.append(&intent(i)).unwrap().wait().unwrap(), intent(i)));
    }
    let r = wal.append(&intent(3)).unwrap().wait();
    let cause = match r {
        Err(WalError::Poisoned { cause }) => cause,
        other => panic!("expected Poisoned, got {other:?}"),
    };
    eprintln!("{durability:?}: {cause}");
    match (&cause.fault, durability) {
        (IoFault::Errno { errno, op }, Durability::LinkedFdatasync) => {
            assert_eq!(*errno, libc_einval());
            if backend_is_uring {
                assert!(op.contains("ECANCELED"), "the linked fdatasync must be reported cancelled: {op}");
            }
        }
        (IoFault::Errno { errno, .. }, _) => assert_eq!(*errno, libc_einval()),
        (IoFault::Canceled, Durability::LinkedFdatasync) => {}
        (f, _) => panic!("unexpected fault {f:?}"),
    }
    // Every later call errors; nothing is retried.
    assert!(matches!(wal.append(&intent(4)), Err(WalError::Poisoned { .. })));
    assert!(matches!(wal.try_append(&intent(4)), Err(WalError::Poisoned { .. })));
    assert!(matches!(wal.mark_executed(acked[0].0), Err(WalError::Poisoned { .. })));
    let durable = wal.durable_lsn();
    assert!(matches!(wal.close(), Err(WalError::Poisoned { .. })));
    // Reopen: consistent, every acknowledged intent there, nothing after the fault acked.
    let wal = Wal::open(small(d.path())).unwrap();
    let got: Vec<_> = wal.recovered().in_doubt.iter().map(|x| (x.lsn, x.intent)).collect();
    assert_eq!(got, acked);
    assert_eq!(wal.recovered().next_lsn, durable + 1);
    wal.close().unwrap();
}

/// Waits until the session's first batch (its checkpoint) is durable, so batch numbers in this
/// session are deterministic for fault injection.
fn checkpoint_durable(wal: &Wal) {
    let t0 = std::time::Instant::now();
    while wal.durable_lsn() < wal.recovered().next_lsn {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "checkpoint never became durable");
        std::thread::yield_now();
    }
}

fn libc_einval() -> i32 {
    22
}

#[test]
fn fail_stop_dsync() {
    fail_stop(Durability::Dsync);
}

#[test]
fn fail_stop_linked_fdatasync() {
    if !io_uring_available() {
        return;
    }
    fail_stop(Durability::LinkedFdatasync);
}

#[test]
fn fail_stop_wakes_every_waiting_ticket() {
    let d = tempdir();
    let wal = Wal::open(small(d.path()).inject_misaligned_write(1)).unwrap();
    checkpoint_durable(&wal);
    let mut ts = vec![];
    let mut refused = 0;
    for i in 0..500 {
        match wal.append(&intent(i)) {
            Ok(t) => ts.push(t),
            // Once the fault is known, appends are refused at once.
            Err(WalError::Poisoned { .. }) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let mut poisoned = 0;
    for t in ts {
        match t.wait() {
            Err(WalError::Poisoned { .. }) => poisoned += 1,
            Ok(l) => panic!("ack {l} after the fault"),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(poisoned + refused, 500);
    assert!(poisoned >= 1, "the failed batch's own ticket errors");
    assert!(wal.close().is_err());
}

#[test]
fn invalid_intents_rejected_nothing_written() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    let good = wal.append(&intent(1)).unwrap().wait().unwrap();
    let durable = wal.durable_lsn();
    let mut bad = vec![];
    for f in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut i = intent(2);
        i.price = f;
        bad.push(i);
        let mut i = intent(2);
        i.qty = f;
        bad.push(i);
    }
    for f in [-0.5, f64::NAN, f64::NEG_INFINITY] {
        let mut i = intent(2);
        i.stop_loss = f;
        bad.push(i);
        let mut i = intent(2);
        i.take_profit = f;
        bad.push(i);
    }
    for b in &bad {
        assert!(matches!(wal.append(b), Err(WalError::InvalidIntent(_))), "{b:?}");
        assert!(matches!(wal.try_append(b), Err(WalError::InvalidIntent(_))));
    }
    assert!(Symbol::new("").is_err() && Symbol::new("TOO-LONG-SYMBOL-XX").is_err() && Symbol::new("A B").is_err());
    assert_eq!(wal.durable_lsn(), durable);
    wal.close().unwrap();
    let (records, _) = read_all(d.path());
    let intents = records.values().filter(|r| r.kind() == RecordKind::Intent).count();
    assert_eq!(intents, 1);
    assert!(records.contains_key(&good));
}

/// The smallest segment the defaults accept is what `WalConfig::min_segment_bytes` (and its doc)
/// says, validation agrees at the boundary, and the error for a smaller one names the figure.
#[test]
fn min_segment_bytes_is_the_boundary_validation_uses() {
    let d = tempdir();
    let min = WalConfig::new(d.path()).min_segment_bytes();
    assert_eq!(min, 13_635_584, "the documented minimum for the defaults");
    let below = d.path().join("below");
    match Wal::open(WalConfig::new(&below).segment_bytes(min - 4096).unpinned_writer()) {
        Err(WalError::Config(m)) => assert!(m.contains(&min.to_string()) && m.contains("min_segment_bytes"), "{m}"),
        other => panic!("a segment below the minimum must be refused: {other:?}"),
    }
    assert!(!below.exists(), "nothing created");
    Wal::open(WalConfig::new(d.path().join("at")).segment_bytes(min).unpinned_writer()).expect("the minimum itself").close().unwrap();
    // 1 MiB, the format's floor, with the smaller settings the doc names.
    let small = WalConfig::new(d.path().join("small")).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024);
    assert!(small.min_segment_bytes() <= 1 << 20);
    Wal::open(small.unpinned_writer()).expect("1 MiB segments with the documented settings").close().unwrap();
}

#[test]
fn invalid_configs_rejected_nothing_created() {
    let base = tempdir();
    let dir = base.path().join("never");
    let c = || WalConfig::new(&dir).unpinned_writer();
    let cases: Vec<(&str, WalConfig)> = vec![
        ("segment not multiple of 4096", c().segment_bytes((1 << 20) + 1)),
        ("segment under 1 MiB", c().segment_bytes(512 << 10)),
        ("K = 0", c().in_flight_batches(0)),
        ("K = 65", c().in_flight_batches(65)),
        ("batch not multiple", c().max_batch_bytes(40_000)),
        ("batch too small", c().max_batch_bytes(4096)),
        ("batch too large", c().max_batch_bytes(128 << 20)),
        ("queue 0", c().queue_capacity(0)),
        ("in doubt 0", c().max_in_doubt(0)),
        ("checkpoint cannot fit", c().segment_bytes(1 << 20).max_in_doubt(1 << 20)),
        ("archive = dir", c().retention(Retention::ArchiveTo(dir.clone()))),
        ("empty dir", WalConfig::new("")),
    ];
    assert_eq!(cases.len(), 12, "docs/reliability.md lists 12 invalid configurations");
    // Each refusal names the setting at fault (one generic error would not pass).
    let needle = |what: &str| -> &'static str {
        match what {
            "checkpoint cannot fit" => "cannot hold a full checkpoint",
            w if w.starts_with("segment") => "segment_bytes",
            w if w.starts_with("K =") => "in_flight_batches",
            w if w.starts_with("batch") => "max_batch_bytes",
            w if w.starts_with("queue") => "queue_capacity",
            w if w.starts_with("in doubt") => "max_in_doubt",
            w if w.starts_with("archive") => "archive directory must differ",
            "empty dir" => "empty directory path",
            w => panic!("no expected reason for {w}"),
        }
    };
    for (what, cfg) in cases {
        match Wal::open(cfg) {
            Err(WalError::Config(m)) => assert!(m.contains(needle(what)), "{what}: {m:?} does not say {:?}", needle(what)),
            other => panic!("{what}: expected Config error, got {other:?}"),
        }
        assert!(!dir.exists(), "{what}: nothing may be created");
    }
}

#[test]
fn ticket_future_spin_and_full() {
    let d = tempdir();
    let wal = Wal::open(small(d.path()).queue_capacity(4)).unwrap();
    // Future under a minimal executor.
    let lsn = block_on(wal.append(&intent(1)).unwrap()).unwrap();
    assert!(lsn >= 2);
    let l2 = wal.append(&intent(2)).unwrap().wait_spin().unwrap();
    assert_eq!(l2, lsn + 1);
    // try_append says Full once 4 appends are not yet durable (a flush takes ~100 µs, an
    // append well under 1 µs, so a burst fills the queue); a refused append writes nothing.
    let mut held = Vec::new();
    let mut full = 0;
    for i in 0..100_000u64 {
        match wal.try_append(&intent(10 + i)) {
            Ok(t) => held.push(t),
            Err(WalError::Full) => {
                full += 1;
                if full == 3 {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(full, 3, "a burst never found the queue full");
    // Kept tickets hold nothing: appends go on while they live, and each resolves in order.
    let n = held.len() as u64;
    assert!(wal.append(&intent(99)).unwrap().wait().is_ok());
    let lsns: Vec<_> = held.into_iter().map(|t| t.wait().unwrap()).collect();
    assert_eq!(lsns, (l2 + 1..l2 + 1 + n).collect::<Vec<_>>());
    // wait_durable: for callers that keep only LSNs.
    wal.wait_durable(l2 + n).unwrap();
    assert!(wal.durable_lsn() > l2 + n);
    wal.close().unwrap();
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn in_doubt_limit() {
    let d = tempdir();
    let wal = Wal::open(small(d.path()).max_in_doubt(8)).unwrap();
    let lsns: Vec<_> = (0..8).map(|i| wal.append(&intent(i)).unwrap().wait().unwrap()).collect();
    assert!(matches!(wal.append(&intent(9)), Err(WalError::InDoubtLimit { limit: 8 })));
    wal.mark_aborted(lsns[0]).unwrap().wait().unwrap();
    wal.append(&intent(9)).unwrap().wait().unwrap();
    wal.close().unwrap();
}

#[test]
fn drop_without_close_is_a_crash_and_recovers() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    let acked: Vec<_> = (0..50).map(|i| (wal.append(&intent(i)).unwrap().wait().unwrap(), intent(i))).collect();
    let unacked: Vec<_> = (50..1000).map(|i| wal.append(&intent(i)).unwrap()).collect();
    drop(wal);
    let (mut durable, mut closed) = (Vec::new(), 0);
    for (i, t) in (50..).zip(unacked) {
        // Each either made it (durable) or was abandoned with Closed (never written); never
        // anything else, and never "Closed" for a record that is on the device.
        match t.wait() {
            Ok(l) => durable.push((l, intent(i))),
            Err(WalError::Closed) => closed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let wal = Wal::open(small(d.path())).unwrap();
    let rec: BTreeMap<_, _> = wal.recovered().in_doubt.iter().map(|x| (x.lsn, x.intent)).collect();
    for (l, i) in acked.iter().chain(&durable) {
        assert_eq!(rec.get(l), Some(i));
    }
    assert_eq!(rec.len(), 50 + durable.len(), "{closed} tickets said Closed: none of them may be on the device");
    wal.close().unwrap();
}

#[test]
fn fallback_backend_without_io_uring() {
    let d = tempdir();
    let wal = Wal::open(small(d.path()).disable_io_uring(true)).unwrap();
    assert!(!wal.backend().contains("io_uring"), "{}", wal.backend());
    let lsns: Vec<_> = (0..100).map(|i| wal.append(&intent(i)).unwrap().wait().unwrap()).collect();
    wal.close().unwrap();
    let wal = Wal::open(small(d.path())).unwrap();
    assert_eq!(wal.recovered().in_doubt.iter().map(|x| x.lsn).collect::<Vec<_>>(), lsns);
    wal.close().unwrap();
}

#[test]
fn files_and_directory_modes() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempdir();
    let dir = base.path().join("wal");
    let wal = Wal::open(small(&dir)).unwrap();
    wal.append(&intent(1)).unwrap().wait().unwrap();
    wal.close().unwrap();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for f in segment_files(&dir) {
        assert_eq!(std::fs::metadata(dir.join(&f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
}

#[test]
fn open_returns_with_the_next_spare_ready() {
    // No zero-fill may run behind the first appends: the spare exists, full size, when open returns.
    for _ in 0..3 {
        let d = tempdir();
        let wal = Wal::open(small(d.path())).unwrap();
        assert_eq!(wal.stats().spares_prepared, 1, "open returned before the spare was ready");
        let files = segment_files(d.path());
        assert_eq!(files.len(), 2, "{files:?}");
        for f in &files {
            assert_eq!(std::fs::metadata(d.path().join(f)).unwrap().len(), 1 << 20, "{f}");
        }
        wal.close().unwrap();
    }
}

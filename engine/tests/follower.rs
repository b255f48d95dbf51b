//! `tradewal::Follower` and named cursors: order, exactly once, never past the acknowledged
//! watermark, every start boundary, retention with named and unnamed readers.
mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tradewal::*;
use tradewal_codec::Record;

/// Every record as read_log sees it: (LSN, encoded body, record).
fn full(dir: &std::path::Path) -> Vec<(Lsn, Vec<u8>, Record)> {
    let mut v = Vec::new();
    read_log(dir, |f, r| v.push((f.lsn, f.body.to_vec(), r.clone()))).unwrap();
    v
}

/// Drains a follower until a poll finds nothing new.
fn drain(f: &mut Follower) -> Vec<(Lsn, Vec<u8>, Record)> {
    let mut v = Vec::new();
    while let Some(r) = f.next_timeout(Duration::from_millis(20)).unwrap() {
        v.push((r.lsn, r.body, r.record));
    }
    v
}

/// Appends `n` intents (all but the first marked executed: checkpoints carry some in doubt) and waits for them.
fn write(wal: &Wal, from: u64, n: u64) {
    for c in (from..from + n).step_by(500) {
        let t: Vec<_> = (c..(c + 500).min(from + n)).map(|i| wal.append(&intent(i)).unwrap()).collect();
        let lsns: Vec<_> = t.into_iter().map(|t| t.wait().unwrap()).collect();
        let marks: Vec<_> = lsns.iter().skip(usize::from(c == from)).map(|l| wal.mark_executed(*l).unwrap()).collect();
        for m in marks {
            m.wait().unwrap();
        }
    }
}

#[test]
fn follower_from_every_boundary_yields_the_same_tail_as_a_full_read() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    for round in 0..6 {
        write(&wal, round * 3000, 3000);
    }
    wal.close().unwrap();
    let all = full(d.path());
    assert!(segment_files(d.path()).len() >= 3, "the log spans several segments");
    // Boundaries: every checkpoint record (each segment starts with one), its neighbours, the
    // first and the last record, and one past the end.
    let mut starts: Vec<Lsn> = vec![1, all.last().unwrap().0, all.last().unwrap().0 + 1];
    for (lsn, _, r) in &all {
        if matches!(r, Record::Checkpoint(_)) {
            starts.extend([*lsn, lsn + 1, lsn.saturating_sub(1).max(1)]);
        }
    }
    starts.sort();
    starts.dedup();
    assert!(starts.len() > 6, "checkpoints found: {starts:?}");
    for s in &starts {
        let mut f = Follower::open(d.path(), *s).unwrap();
        let got = drain(&mut f);
        let want: Vec<_> = all.iter().filter(|(l, _, _)| l >= s).cloned().collect();
        assert_eq!(got.len(), want.len(), "from LSN {s}");
        assert!(got == want, "from LSN {s}: the follower's tail differs from the full read");
    }
    println!("follower: {} start LSNs checked against a full read of {} records", starts.len(), all.len());
}

#[test]
fn live_follower_never_passes_the_acknowledged_watermark() {
    let d = tempdir();
    let wal = Arc::new(Wal::open(small(d.path())).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let (w, st) = (wal.clone(), stop.clone());
    let producer = std::thread::spawn(move || {
        let mut n = 0;
        while !st.load(Ordering::Relaxed) && n < 40_000 {
            write(&w, n, 200);
            n += 200;
        }
    });
    let mut f = Follower::open(d.path(), 1).unwrap();
    let mut got = Vec::new();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        if let Some(r) = f.next_timeout(Duration::from_millis(10)).unwrap() {
            // Read after the yield: the durable watermark only rises.
            let durable = wal.durable_lsn();
            assert!(r.lsn <= durable, "yielded LSN {} beyond the durable watermark {durable}", r.lsn);
            got.push((r.lsn, r.body, r.record));
        }
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    Arc::try_unwrap(wal).ok().unwrap().close().unwrap();
    got.extend(drain(&mut f)); // the writer is gone: the rest, as recovery sees it
    let all = full(d.path());
    assert!(got.len() > 1000, "followed only {} records", got.len());
    assert_eq!(got.len(), all.len(), "no duplicate, no gap");
    assert!(got == all, "followed records equal the full read");
}

#[test]
fn follower_survives_writer_restarts() {
    let d = tempdir();
    let mut f = Follower::open(d.path(), 1).unwrap();
    assert!(f.next_timeout(Duration::ZERO).unwrap().is_none(), "empty directory: nothing yet");
    let mut got = Vec::new();
    for s in 0..4 {
        let wal = Wal::open(small(d.path())).unwrap();
        write(&wal, s * 1000, 1000);
        got.extend(drain(&mut f));
        drop(wal); // like a crash: no close
    }
    got.extend(drain(&mut f));
    assert!(got == full(d.path()), "records across four sessions, each once, in order");
}

#[test]
fn named_cursor_commits_resumes_and_keeps_segments_from_retention() {
    let d = tempdir();
    let cfg = || small(d.path()).retention(Retention::Delete);
    let wal = Wal::open(cfg()).unwrap();
    let mut slow = Follower::named(d.path(), "slow", 1).unwrap();
    let first = slow.next().unwrap();
    assert_eq!(first.lsn, 1);
    slow.commit(1).unwrap();
    assert!(matches!(slow.commit(5), Err(FollowError::BadCommit { .. })), "cannot commit what was not yielded");
    assert!(matches!(Follower::named(d.path(), "../x", 1), Err(FollowError::BadName(_))));
    write(&wal, 0, 20_000); // many 1 MiB segments
    let mut unnamed = Follower::open(d.path(), 2).unwrap();
    // The named reader keeps LSN 2 in the directory, so an unnamed reader from 2 also works.
    assert_eq!(unnamed.next().unwrap().lsn, 2);
    drop(slow);
    let mut slow = Follower::named(d.path(), "slow", 1).unwrap();
    assert_eq!(slow.next_lsn(), 2, "resumes after the committed LSN");
    assert_eq!(list_readers(d.path()).unwrap(), vec![ReaderCursor { name: "slow".into(), committed: 1, dropped: false }]);
    // Catch up and commit: retention may now delete what the reader no longer needs.
    let mut last = 0;
    while let Some(r) = slow.next_timeout(Duration::from_millis(20)).unwrap() {
        last = r.lsn;
    }
    slow.commit(last).unwrap();
    write(&wal, 20_000, 20_000);
    std::thread::sleep(Duration::from_millis(200)); // retention runs on the maintenance thread
    let mut behind = Follower::open(d.path(), 2).unwrap();
    match behind.next_timeout(Duration::from_millis(200)) {
        Err(FollowError::Gap { wanted: 2, oldest_available }) => assert!(oldest_available > 2),
        other => panic!("an unnamed reader behind a deleted segment must get Gap, got {other:?}"),
    }
    assert!(drop_reader(d.path(), "slow").unwrap());
    assert!(list_readers(d.path()).unwrap().is_empty());
    wal.close().unwrap();
}

#[test]
fn a_named_reader_past_max_reader_lag_bytes_is_dropped_and_gets_gap() {
    let d = tempdir();
    let wal = Wal::open(small(d.path()).retention(Retention::Delete).max_reader_lag_bytes(3 << 20)).unwrap();
    let f = Follower::named(d.path(), "laggard", 1).unwrap();
    drop(f);
    write(&wal, 0, 40_000);
    std::thread::sleep(Duration::from_millis(200));
    let c = list_readers(d.path()).unwrap();
    assert!(c[0].dropped, "retention marked the reader dropped: {c:?}");
    let mut f = Follower::named(d.path(), "laggard", 1).unwrap();
    match f.next_timeout(Duration::from_millis(200)) {
        Err(FollowError::Gap { wanted: 1, .. }) => {}
        other => panic!("a dropped reader gets Gap, got {other:?}"),
    }
    wal.close().unwrap();
}

#[test]
fn a_follower_of_a_closed_log_reads_past_the_first_mib_of_a_large_segment() {
    // One default-sized segment holding several MiB: a follower starting deep inside it (and a
    // named one resuming there) must read to the end. It used to take its first 1 MiB read for
    // the end of the data and yield nothing, ever, while no writer ran.
    let d = tempdir();
    let wal = Wal::open(WalConfig::new(d.path()).unpinned_writer()).unwrap();
    write(&wal, 0, 60_000);
    wal.close().unwrap();
    let all = full(d.path());
    assert_eq!(segment_files(d.path()).len(), 1, "one segment holds it all");
    for from in [all.len() as Lsn / 2, all.len() as Lsn - 10] {
        let mut f = Follower::open(d.path(), from).unwrap();
        assert!(!f.caught_up(), "nothing polled yet");
        let got = drain(&mut f);
        assert_eq!(got.len(), all.len() - from as usize + 1, "from LSN {from}");
        assert!(got == all[from as usize - 1..], "from LSN {from}");
        assert!(f.caught_up(), "drained to the end");
    }
    let mut named = Follower::named(d.path(), "deep", 1).unwrap();
    let first = named.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(first.lsn, 1);
    for _ in 1..100_000 {
        named.next_timeout(Duration::from_secs(5)).unwrap().unwrap();
    }
    named.commit(100_000).unwrap();
    drop(named);
    let mut again = Follower::named(d.path(), "deep", 1).unwrap();
    let rest = drain(&mut again);
    assert_eq!(rest.first().map(|r| r.0), Some(100_001));
    assert_eq!(rest.len(), all.len() - 100_000);
}

#[test]
fn rewind_yields_again_from_an_earlier_lsn_and_never_moves_the_cursor_back() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    write(&wal, 0, 30_000); // several 1 MiB segments
    wal.close().unwrap();
    let segments =
        std::fs::read_dir(d.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("wal_")).count();
    assert!(segments >= 3, "{segments} segments");
    let all = full(d.path());
    let mut f = Follower::named(d.path(), "r", 1).unwrap();
    let first = drain(&mut f);
    assert_eq!(first, all);
    let last = all.last().unwrap().0;
    f.commit(last).unwrap();
    for from in [1, 2, last / 2, last] {
        f.rewind(from).unwrap();
        assert_eq!(f.next_lsn(), from);
        let again = drain(&mut f);
        assert_eq!(again, all[(from - 1) as usize..], "rewound to {from}");
    }
    // A rewind mid-way through pending records drops them and reads from the new position.
    f.rewind(10).unwrap();
    assert_eq!(f.next().unwrap().lsn, 10);
    assert_eq!(f.next().unwrap().lsn, 11);
    f.rewind(5).unwrap();
    assert_eq!(f.next().unwrap().lsn, 5);
    assert!(matches!(f.rewind(0), Err(FollowError::BadRewind { from: 0, .. })));
    assert!(matches!(f.rewind(7), Err(FollowError::BadRewind { from: 7, next: 6 })), "never skips forward");
    assert!(matches!(f.commit(5), Err(FollowError::BadCommit { .. })), "the cursor does not move back");
    assert_eq!(list_readers(d.path()).unwrap()[0].committed, last);
}

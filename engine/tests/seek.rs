//! Seek by time (`tradewal::seek`, `Follower::since_time`): on logs written by the engine with
//! rotation, timestamps not monotonic in LSN, outcomes in later segments, partial fills, groups,
//! several sessions, KeepAll and Delete retention, a time-range read yields exactly what a full
//! read filtered by time yields, and reads fewer segments when the window is small.
mod common;
mod seek_gen;

use common::tempdir;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tradewal::{index_log, read_log, read_time_range, Follower, Lsn, Outcome, Retention, TimeSeek, TradeIntent};
use tradewal_codec::Record;
use tradewal_testkit::rng::Rng;

/// Intents with `since <= ts <= until` and their latest outcome, from `visit`-style reads.
type Window = BTreeMap<Lsn, (TradeIntent, Option<Outcome>)>;

fn collect(seek: TimeSeek, mut read: impl FnMut(&mut dyn FnMut(Lsn, &Record))) -> Window {
    let mut w = Window::new();
    read(&mut |lsn, r| match r {
        Record::Intent(i) if seek.contains(i.ts_ns) => {
            w.insert(lsn, (*i, None));
        }
        Record::Outcome(o) => {
            if let Some(e) = w.get_mut(&o.intent_lsn) {
                e.1 = Some(*o);
            }
        }
        _ => {}
    });
    w
}

fn full_window(dir: &Path, seek: TimeSeek) -> Window {
    collect(seek, |f| {
        read_log(dir, |fr, r| f(fr.lsn, r)).unwrap();
    })
}

fn seek_window(dir: &Path, seek: TimeSeek) -> (Window, Vec<u64>, usize) {
    let mut report = None;
    let w = collect(seek, |f| {
        report = Some(read_time_range(dir, seek, |fr, r| f(fr.lsn, r)).unwrap());
    });
    let r = report.unwrap();
    (w, r.read, r.segments)
}

/// Every intent timestamp of the log, by LSN.
fn all_ts(dir: &Path) -> Vec<(Lsn, i64)> {
    let mut v = Vec::new();
    read_log(dir, |f, r| {
        if let Record::Intent(i) = r {
            v.push((f.lsn, i.ts_ns));
        }
    })
    .unwrap();
    v
}

/// Random windows (some around single intents, some wide, some open-ended) compared with the full
/// read; returns how many windows read fewer segments than the log has.
fn check_windows(dir: &Path, seed: u64, windows: usize) -> usize {
    let ts = all_ts(dir);
    assert!(!ts.is_empty());
    let (lo, hi) = (ts.iter().map(|t| t.1).min().unwrap(), ts.iter().map(|t| t.1).max().unwrap());
    let mut rng = Rng::new(seed);
    let mut fewer = 0;
    for k in 0..windows {
        let a = ts[rng.below(ts.len() as u64) as usize].1;
        let (since, until) = match k % 5 {
            0 => (a, a),
            1 => (a, a + rng.below(50_000_000_000) as i64),
            2 => (i64::MIN, a),
            3 => (a, i64::MAX),
            _ => {
                let b = lo + rng.below((hi - lo) as u64 + 1) as i64;
                (a.min(b), a.max(b))
            }
        };
        let seek = TimeSeek::new(since, until);
        let want = full_window(dir, seek);
        let (got, read, segments) = seek_window(dir, seek);
        assert_eq!(got.len(), want.len(), "window {since}..={until}: intent count (read {read:?} of {segments})");
        assert!(got == want, "window {since}..={until}: intents or statuses differ (read {read:?} of {segments})");
        if read.len() < segments {
            fewer += 1;
        }
    }
    fewer
}

/// A window that only one early segment can hold (by the recorded ranges): the read skips most.
fn check_early_segment_window(dir: &Path) {
    let index = index_log(dir).unwrap();
    let segs = &index.segments;
    assert!(segs.len() >= 6, "the log rotated: {} segments", segs.len());
    let mut best: Option<(usize, i64)> = None;
    let mut ts_by_lsn = all_ts(dir);
    // Intents of segment 1 or 2 (by base LSN).
    for s in 1..3 {
        let (b, e) = (segs[s].header.unwrap().base_lsn, segs[s + 1].header.unwrap().base_lsn);
        for &(_, t) in ts_by_lsn.iter().filter(|(l, _)| *l >= b && *l < e).step_by(97) {
            let holders = segs.iter().filter(|h| h.can_hold(t, t)).count();
            if best.is_none_or(|(n, _)| holders < n) {
                best = Some((holders, t));
            }
        }
    }
    let (holders, t) = best.unwrap();
    ts_by_lsn.clear();
    let seek = TimeSeek::new(t, t);
    let (got, read, segments) = seek_window(dir, seek);
    assert_eq!(got, full_window(dir, seek));
    assert!(!got.is_empty());
    assert!(read.len() < segments && read.len() <= holders + 3, "a window held by {holders} segments read {read:?} of {segments} segments");
}

#[test]
fn time_range_reads_equal_a_full_read_filtered_keep_all() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    if seek_gen::build("seek_keep_all", &dir, Retention::KeepAll, 12, 3, 22_000).is_none() {
        return;
    }
    let index = index_log(&dir).unwrap();
    assert!(index.segments.len() >= 6, "rotation: {} segments", index.segments.len());
    // Every segment but the last has a recorded range, equal to what a full scan finds.
    let full = read_log(&dir, |_, _| {}).unwrap();
    for (h, s) in index.segments.iter().zip(&full.state.segments) {
        assert_eq!(h.segment_no, s.segment_no);
        if h.segment_no != index.segments.last().unwrap().segment_no {
            assert_eq!(h.range, Some(s.ts_range), "segment {}", h.segment_no);
        } else {
            assert_eq!(h.range, None);
        }
    }
    // Some segment holds timestamps out of LSN order with another one (ranges overlap).
    let ranges: Vec<_> = index.segments.iter().filter_map(|h| h.range).collect();
    assert!(
        ranges.windows(2).any(|w| w[1].min_ts < w[0].max_ts),
        "the workload wrote non-monotonic timestamps across segments: {ranges:?}"
    );
    let fewer = check_windows(&dir, 7, 60);
    assert!(fewer > 20, "only {fewer} of 60 windows skipped a segment");
    check_early_segment_window(&dir);
    // Whole range: everything.
    let (all, read, segments) = seek_window(&dir, TimeSeek::new(i64::MIN, i64::MAX));
    assert_eq!(read.len(), segments);
    assert_eq!(all.len() as u64, full.state.counts.intents);
}

#[test]
fn time_range_reads_equal_a_full_read_filtered_under_delete_retention() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let Some(mut w) = seek_gen::build("seek_delete", &dir, Retention::Delete, 13, 3, 15_000) else { return };
    // A short last session, so the kept segments hold intents (a rotation just before the end
    // could leave only outcomes).
    let wal = seek_gen::open("seek_delete", seek_gen::config(&dir, Retention::Delete)).unwrap();
    w.run(&wal, 2_500);
    wal.close().unwrap();
    let full = read_log(&dir, |_, _| {}).unwrap();
    assert!(full.state.segments.first().unwrap().segment_no > 1, "retention removed segments");
    check_windows(&dir, 8, 40);
}

#[test]
fn follower_since_time_starts_at_the_first_segment_that_can_hold_the_time() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    if seek_gen::build("seek_follower", &dir, Retention::KeepAll, 14, 2, 25_000).is_none() {
        return;
    }
    let index = index_log(&dir).unwrap();
    let ts = all_ts(&dir);
    let mut rng = Rng::new(3);
    let mut skipped = 0;
    for _ in 0..25 {
        let t = ts[rng.below(ts.len() as u64) as usize].1;
        let mut f = Follower::since_time(&dir, t).unwrap();
        let start = f.next_lsn();
        assert_eq!(start, index.start_lsn_since(t));
        // The start is a segment's base LSN, and no intent at or after t lies before it.
        assert!(index.segments.iter().any(|s| s.header.is_some_and(|h| h.base_lsn == start)), "start {start}");
        assert!(ts.iter().filter(|(l, _)| *l < start).all(|(_, x)| *x < t), "an intent at or after {t} lies before {start}");
        // The segment it starts in can hold t (or it is the first that can).
        let seg = index.segments.iter().position(|s| s.header.is_some_and(|h| h.base_lsn == start)).unwrap();
        assert!(index.segments[..seg].iter().all(|s| !s.can_hold(t, i64::MAX)));
        // It yields every record from there, in order.
        let first = f.next_timeout(Duration::from_secs(5)).unwrap().expect("a record");
        assert_eq!(first.lsn, start);
        let mut n = 1u64;
        let mut last = first.lsn;
        while let Some(r) = f.next_timeout(Duration::from_millis(20)).unwrap() {
            assert_eq!(r.lsn, last + 1);
            last = r.lsn;
            n += 1;
        }
        let end = read_log(&dir, |_, _| {}).unwrap().state.next_lsn;
        assert_eq!(last + 1, end);
        assert_eq!(n, end - start);
        if start > 1 {
            skipped += 1;
        }
    }
    assert!(skipped > 5, "only {skipped} of 25 starts skipped a segment");
    // A time before everything starts at the log's first LSN; after everything, at the last
    // segment (which has no recorded range).
    assert_eq!(Follower::since_time(&dir, i64::MIN).unwrap().next_lsn(), 1);
    // (A session that ended without close() leaves its spare: the last file may have no header.)
    let last_base = index.segments.iter().rev().find_map(|s| s.header).unwrap().base_lsn;
    assert_eq!(Follower::since_time(&dir, i64::MAX).unwrap().next_lsn(), last_base);
}

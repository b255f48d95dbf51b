//! A `tradewal::Follower` reading the simulated disk while the writer appends, then a power cut
//! (issue 10): nothing the follower yielded before the cut may be missing or different in the
//! log recovery keeps afterwards. A cut loses only writes that were never acknowledged, and the
//! follower yields only records at or below the writer's acknowledged watermark, so this holds
//! exactly when the follower keeps that promise (a follower that read past the watermark, i.e.
//! everything the decoder validates, fails here at seed 0: the simulated disk is set to let reads
//! see batch writes still in flight, as a real device may; see docs/reliability.md, "Followers").
//!
//! Seeds: `FOLLOW_SIM_SEEDS` (default 300), three sessions each, every one ended by a power cut at
//! a seeded batch I/O event with one of four crash policies.

use std::collections::BTreeMap;
use std::time::Duration;
use tradewal::{Durability, Follower, Lsn, Wal, WalConfig};
use tradewal_codec::Record;
use tradewal_tests::model::{intent, scan};
use tradewal_tests::sim::{CrashPolicy, Rng, SimDisk, TearShape};

fn policy(choice: u64) -> CrashPolicy {
    match choice {
        0 => CrashPolicy::default(),
        1 => CrashPolicy::tear_all(),
        2 => CrashPolicy::lose_all(),
        _ => CrashPolicy { tear: TearShape::Prefix, ..CrashPolicy::default() },
    }
}

/// Everything yielded is in the recovered log, unchanged.
fn check(disk: &SimDisk, yielded: &BTreeMap<Lsn, Record>, what: &str) {
    let s = scan(disk).unwrap_or_else(|c| panic!("{what}: the recovered log does not scan: {c}"));
    for (lsn, r) in yielded {
        let kept = s.records.get(lsn);
        assert!(
            kept == Some(r),
            "{what}: LSN {lsn} ({:?}) was yielded by the follower and then {} by a power cut",
            r.kind(),
            if kept.is_some() { "changed" } else { "lost" }
        );
    }
}

/// Takes what the follower yields now; false once the cut made its storage stale.
fn poll(f: &mut Follower, yielded: &mut BTreeMap<Lsn, Record>, total: &mut u64, what: &str) -> bool {
    loop {
        match f.next_timeout(Duration::ZERO) {
            Ok(Some(r)) => {
                let expect = yielded.keys().next_back().map_or(1, |l| l + 1);
                assert!(r.lsn == expect || yielded.is_empty(), "{what}: yielded LSN {} after {}", r.lsn, expect - 1);
                yielded.insert(r.lsn, r.record);
                *total += 1;
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn nothing_a_follower_yielded_is_lost_by_a_power_cut() {
    let seeds: u64 = std::env::var("FOLLOW_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let (mut cuts, mut yielded_total) = (0u64, 0u64);
    for seed in 0..seeds {
        let disk = SimDisk::new(seed);
        disk.reads_see_in_flight(true);
        let mut rng = Rng::new(seed ^ 0xF011_0111);
        let cfg = WalConfig::new("/sim")
            .segment_bytes(1 << 20)
            .max_batch_bytes(64 << 10)
            .in_flight_batches(rng.range(1, 4) as u32)
            // Both write paths; with write + linked fdatasync a batch is readable before it is
            // durable, which is where a follower that ignored the watermark would be caught.
            .durability(if seed % 2 == 0 { Durability::LinkedFdatasync } else { Durability::Dsync })
            .max_in_doubt(2048)
            .parallel_batch_min_records(1)
            .unpinned_writer();
        let mut yielded: BTreeMap<Lsn, Record> = BTreeMap::new();
        let mut id = 0u64;
        for session in 0..3 {
            let what = format!("seed {seed} session {session}");
            let wal = Wal::open_on(disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("{what}: open after a cut: {e}"));
            // The recovered log still holds everything yielded before the last cut.
            check(&disk, &yielded, &what);
            let mut f = Follower::open_on(disk.storage(), yielded.keys().next_back().map_or(1, |l| l + 1));
            let at = disk.stats().io_events + rng.range(2, 120);
            disk.power_cut_at_io_event(at, rng.next_u64(), policy(rng.below(4)));
            'work: for _ in 0..400 {
                let n = rng.range(1, 33);
                let mut ts = Vec::new();
                for _ in 0..n {
                    id += 1;
                    match wal.append(&intent(id, &mut rng)) {
                        Ok(t) => ts.push(t),
                        Err(_) => break 'work,
                    }
                }
                // Poll while the group's batches are in flight too (submitted, not yet durable):
                // a follower must not yield them yet.
                std::thread::sleep(Duration::from_micros(rng.below(300)));
                if !poll(&mut f, &mut yielded, &mut yielded_total, &what) {
                    break 'work;
                }
                for t in ts {
                    match t.wait() {
                        Ok(l) => {
                            if rng.chance(500) && wal.mark_executed(l).is_err() {
                                break 'work;
                            }
                        }
                        Err(_) => break 'work,
                    }
                }
                if !poll(&mut f, &mut yielded, &mut yielded_total, &what) {
                    break 'work;
                }
                if !disk.power_cut_armed() {
                    break;
                }
            }
            if disk.power_cut_armed() {
                // The workload ended before the seeded event: cut now.
                disk.crash_with(&policy(rng.below(4)), rng.next_u64());
            }
            cuts += 1;
            drop(f);
            drop(wal);
        }
        let wal = Wal::open_on(disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("seed {seed}: final open: {e}"));
        check(&disk, &yielded, &format!("seed {seed} final"));
        wal.close().unwrap();
    }
    println!("follow sim: {seeds} seeds, {cuts} power cuts, {yielded_total} records yielded before cuts, none lost or changed afterwards");
    assert_eq!(cuts, seeds * 3, "every session ends by a power cut");
    assert!(yielded_total > seeds * 10, "the follower yielded too little to prove anything: {yielded_total}");
}

/// Following is cheap (issue 10): a caught-up follower's poll reads only the segment being
/// written, never the older ones again, and a follower started at an LSN near the end reads the
/// segment that holds it, not the whole log. Counted in the simulated disk's read operations.
#[test]
fn polls_read_only_the_segment_being_written() {
    let disk = SimDisk::new(99);
    let cfg = WalConfig::new("/sim").segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(2048).unpinned_writer();
    let wal = Wal::open_on(disk.storage(), cfg).expect("open");
    let mut rng = Rng::new(99);
    let mut id = 0;
    while wal.stats().rotations < 8 {
        let ts: Vec<_> = (0..64)
            .map(|_| {
                id += 1;
                wal.append(&intent(id, &mut rng)).unwrap()
            })
            .collect();
        for t in ts {
            let l = t.wait().unwrap();
            wal.mark_executed(l).unwrap().wait().unwrap();
        }
    }
    let segments = disk.live_names().into_iter().filter(|n| n.ends_with(".log")).count() as u64;
    assert!(segments >= 9, "{segments} segments");
    let last = wal.durable_lsn();
    // Catch up from LSN 1, then poll idle.
    let mut f = Follower::open_on(disk.storage(), 1);
    let mut n = 0u64;
    while let Some(r) = f.next_timeout(Duration::ZERO).unwrap() {
        n += 1;
        if r.lsn == last {
            break;
        }
    }
    assert_eq!(n, last, "caught up");
    let before = disk.stats().reads;
    for _ in 0..100 {
        assert!(f.next_timeout(Duration::ZERO).unwrap().is_none());
    }
    let idle_reads = disk.stats().reads - before;
    // At most one read of the current segment per poll; a rescan would cost `segments` per poll.
    assert!(idle_reads <= 100, "100 idle polls cost {idle_reads} reads ({segments} segments in the log)");
    // Starting near the end: the first record comes without reading every segment's records.
    let before = disk.stats().reads;
    let mut g = Follower::open_on(disk.storage(), last);
    assert_eq!(g.next_timeout(Duration::ZERO).unwrap().map(|r| r.lsn), Some(last));
    let seek_reads = disk.stats().reads - before;
    println!("follow polls: {segments} segments; 100 idle polls: {idle_reads} reads; seek to the last LSN: {seek_reads} reads");
    assert!(seek_reads < segments, "seeking read {seek_reads} times for {segments} segments: not every segment");
    wal.close().unwrap();
}

/// A follower of a live log under `Retention::Delete` (design.md, "Recycled segment files"):
/// the segments in service are recycled files whose bytes after the writer's last batch are the
/// batches of an earlier life. Reads see batch writes still in flight. The follower polls after
/// every group (while its batches are in flight) and after they are durable: it must yield
/// acknowledged records in LSN order, exactly as appended, and never a stale record (a stale
/// record has an LSN of its earlier life, far below: the order check would catch it; its content
/// would differ too). An unnamed follower gets `Gap` when retention retires a segment it has not
/// finished (documented; retention keeps only for named readers): it then starts again at the
/// oldest LSN still there, and the count of such restarts is printed.
#[test]
fn a_follower_of_recycled_segments_yields_this_lifes_records_only() {
    let disk = SimDisk::new(1234);
    disk.reads_see_in_flight(true);
    let cfg = WalConfig::new("/sim")
        .segment_bytes(1 << 20)
        .max_batch_bytes(64 << 10)
        .in_flight_batches(2)
        .parallel_batch_min_records(1)
        .retention(tradewal::Retention::Delete)
        .max_in_doubt(2048)
        .unpinned_writer();
    let wal = Wal::open_on(disk.storage(), cfg).expect("open");
    let mut rng = Rng::new(1234);
    let mut r = Reader { f: Follower::open_on(disk.storage(), 1), yielded: BTreeMap::new(), restarts: 0 };
    let mut appended: BTreeMap<Lsn, Record> = BTreeMap::new();
    let mut id = 0u64;
    while wal.stats().segments_recycled < 3 {
        let n = rng.range(1, 24);
        let mut ts = Vec::new();
        for _ in 0..n {
            id += 1;
            let it = intent(id, &mut rng);
            ts.push((it, wal.append(&it).expect("append")));
        }
        r.follow(&disk);
        for (it, t) in ts {
            let lsn = t.wait().expect("durable");
            appended.insert(lsn, Record::Intent(it));
            if rng.chance(700) {
                wal.mark_executed(lsn).expect("mark").wait().expect("outcome durable");
            }
        }
        r.follow(&disk);
    }
    let last = wal.durable_lsn();
    while r.yielded.keys().next_back().is_none_or(|l| *l < last) {
        r.follow(&disk);
    }
    let mut checked = 0;
    for (lsn, rec) in &r.yielded {
        if let Some(a) = appended.get(lsn) {
            assert_eq!(rec, a, "LSN {lsn}: the follower yielded another record than the one appended");
            checked += 1;
        }
    }
    println!(
        "recycled follow: {} records yielded ({checked} intents compared), {} restarts after retention, {} recycled spares",
        r.yielded.len(),
        r.restarts,
        wal.stats().segments_recycled
    );
    assert!(checked > 1000, "{checked} intents compared");
    wal.close().unwrap();
}

struct Reader {
    f: Follower,
    yielded: BTreeMap<Lsn, Record>,
    restarts: u64,
}

impl Reader {
    /// Takes what the follower yields now: LSNs strictly in order (contiguous except across a
    /// restart after `Gap`, which must start at the oldest LSN still there).
    fn follow(&mut self, disk: &SimDisk) {
        let mut next = self.yielded.keys().next_back().map_or(1, |l| l + 1);
        loop {
            match self.f.next_timeout(Duration::ZERO) {
                Ok(Some(r)) => {
                    assert_eq!(r.lsn, next, "LSNs in order, never a stale record");
                    self.yielded.insert(r.lsn, r.record);
                    next += 1;
                }
                Ok(None) => return,
                Err(tradewal::FollowError::Gap { wanted, oldest_available }) => {
                    assert!(wanted == next && oldest_available > next, "gap at {wanted}, oldest {oldest_available}");
                    self.restarts += 1;
                    self.f = Follower::open_on(disk.storage(), oldest_available);
                    next = oldest_available;
                }
                Err(e) => panic!("follower failed after LSN {}: {e}", next - 1),
            }
        }
    }
}

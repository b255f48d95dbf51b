//! Randomised crash simulation of the whole engine on the simulated disk.
//!
//! Each seed builds a configuration (K, durability mode, retention), then runs one to three
//! sessions: several producer threads append intents (some pipelined, so batches hold several
//! records) and mark outcomes; the session ends with a power cut at a seeded batch I/O event,
//! an injected I/O fault (fail-stop), a process crash (the `Wal` dropped without close), or a
//! clean close. The log is then reopened on the same disk and checked against a model:
//! - **I1**: every acknowledged intent, group and outcome is present with exact content (every
//!   field: client order ids, tags, group legs, statuses with their quantities, prices, reasons,
//!   venue order ids and times); producers append groups of 2..=4 legs (`append_group`) and report
//!   partial fills, then Filled, Cancelled, Rejected or Aborted (`Wal::report` and the shorthands);
//! - **groups whole or absent**: every group in the log is legs 0..n of n at consecutive LSNs, never
//!   cut short, and an acknowledged group is all there;
//! - **the in-doubt set** is exactly the intents without a terminal outcome, each with its latest
//!   partial fill: every acknowledged outcome applied, plus at most the one asked after them (a
//!   producer asks an intent's next outcome only once the previous one was acknowledged), never a
//!   fill that was not asked; the outcomes kept in the log are those same ones, in order;
//! - **I2**: every recovered record was appended in this run (by a unique id), at most once;
//! - **I3**: recovered LSNs are contiguous;
//! - **I4**: after a bit flipped in an acknowledged record, recovery refuses with
//!   `WalError::Corrupt` when the damage is provably not a torn tail (a valid batch at least K
//!   later in the segment, or a later segment with data); inside the last K batches the
//!   K-window proof cannot tell rot from a torn write, and the test then demands that recovery
//!   reports the loss as a torn tail at or before the damaged LSN (never silently). Rot in a
//!   segment before recovery's scan start (`Recovered::scanned_from_segment`, the manifest's newest
//!   data segment) is not read at open: recovery must open with the in-doubt set, next LSN and torn
//!   tail of the log before the flip, and the whole-log scan (what `tradewal verify` runs) must
//!   refuse it;
//! - recovery that starts at that segment agrees with the whole-log scan on every reopen
//!   (in-doubt set, next LSN, torn tail), counted as `checkpoint_starts`.
//!
//! Seeds: `SIM_SEEDS` (default 10 000 in release builds, 300 in debug), from `SIM_SEED_BASE`
//! (default 0). A failing seed prints a one-line replay command:
//! `SIM_SEED=<n> cargo test --release -p tradewal-tests --test simulation`.
//! The sim's decisions are a function of the seed and the engine's call sequence; the engine's
//! producer/writer thread timing can still vary batch composition between runs, so a replay
//! reproduces the workload, the cut point (in batch I/O events) and every fault exactly, and the
//! interleaving only as far as the scheduler allows (`SIM_REPEAT=<n>` replays a seed n times).
//!
//! The driver and the model live in `tradewal_tests::model` (shared with the fuzz targets).

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tradewal::{Durability, Lsn, TradeIntent, Wal, WalConfig};
use tradewal_codec::Record;
use tradewal_tests::model::{intent, run_seed, scan, Stats, MAX_BATCH_BYTES, MAX_IN_DOUBT, SEGMENT_BYTES};
use tradewal_tests::sim::{CrashPolicy, Rng, SimDisk};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[test]
fn random_workloads_survive_power_cuts_and_faults() {
    let (base, count) = match env_u64("SIM_SEED") {
        Some(s) => (s, 1),
        None => (env_u64("SIM_SEED_BASE").unwrap_or(0), env_u64("SIM_SEEDS").unwrap_or(if cfg!(debug_assertions) { 300 } else { 10_000 })),
    };
    let repeat = env_u64("SIM_REPEAT").unwrap_or(1);
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in base..base + count {
        for _ in 0..repeat {
            let r = panic::catch_unwind(AssertUnwindSafe(|| run_seed(seed)));
            match r {
                Ok(s) => {
                    total.seeds += s.seeds;
                    total.sessions += s.sessions;
                    total.power_cuts += s.power_cuts;
                    total.faults += s.faults;
                    total.faults_unfired += s.faults_unfired;
                    total.process_crashes += s.process_crashes;
                    total.closes += s.closes;
                    total.torn_tails += s.torn_tails;
                    total.rotations_seen += s.rotations_seen;
                    total.acked_intents += s.acked_intents;
                    total.acked_groups += s.acked_groups;
                    total.acked_fills += s.acked_fills;
                    total.in_doubt_fills += s.in_doubt_fills;
                    total.rot_provable += s.rot_provable;
                    total.rot_unprovable += s.rot_unprovable;
                    total.rot_before_scan_start += s.rot_before_scan_start;
                    total.checkpoint_starts += s.checkpoint_starts;
                    total.segments_recycled += s.segments_recycled;
                }
                Err(e) => {
                    eprintln!(
                        "simulation failed at seed {seed}; replay with:\n  SIM_SEED={seed} cargo test --release -p tradewal-tests --test simulation"
                    );
                    panic::resume_unwind(e);
                }
            }
        }
    }
    eprintln!("simulation: {total:?} in {:.1?}", started.elapsed());
    assert_eq!(total.seeds, count * repeat);
    if count >= 100 {
        // The suite must exercise what it claims to.
        assert!(total.power_cuts > 0 && total.faults > 0 && total.process_crashes > 0 && total.closes > 0);
        assert!(total.torn_tails > 0, "no crash produced a torn tail");
        // Groups and partial fills were acknowledged, and reopens recovered fills in doubt.
        assert!(total.acked_groups > 0 && total.acked_fills > 0 && total.in_doubt_fills > 0, "no group, fill or recovered fill");
        assert!(total.rot_provable > 0, "no provable rot case");
        // Recovery that starts at the manifest's newest data segment agreed with the whole-log
        // scan (in-doubt set, next LSN, torn tail) on reopens that skipped older segments.
        assert!(total.checkpoint_starts > 0, "no reopen started after the first segment");
        assert!(total.rot_before_scan_start > 0, "no rot case landed before the scan start");
        assert!(total.rot_unprovable > 0, "no unprovable rot case");
        // Retention::Delete seeds recycle retired segment files (docs/design.md, "Recycled
        // segment files"): the reopens above judged logs whose spares were recycled.
        assert!(total.segments_recycled > 0, "no spare was recycled");
    }
    if (base, count, repeat) == (0, 10_000, 1) {
        // What the seeds fix (the session plan and how each session ends), exactly as
        // docs/reliability.md lists it; the rest depends on how threads batched and is bounded above.
        assert_eq!(
            [total.sessions, total.power_cuts, total.process_crashes, total.closes, total.faults + total.faults_unfired],
            [19_975, 10_001, 3_951, 3_992, 2_031],
            "[sessions, power cuts, process crashes, clean closes, planned faults] of seeds 0..10 000"
        );
    }
}

/// CrashMonkey-style: from real engine runs, take the disk at moments when two or three batches
/// were in flight, and check recovery on every post-crash state of those writes (every subset
/// persisted, plus every sector-level tear of one of them; `EnumTear::Prefix` tears when that
/// would exceed the bound). Every state must open (a crash is not corruption, I4), keep every
/// record durable at that moment (I1), hold only appended records (I2) contiguously (I3), and
/// open again after a process crash right after recovery with the same in-doubt set.
#[test]
fn exhaustive_crash_states_of_up_to_three_batches_in_flight() {
    use tradewal_tests::sim::{EnumTear, Enumeration};
    let mut checked_states = 0u64;
    let mut snapshots_used = 0;
    let mut prefix_fallbacks = 0;
    for (durability, seed) in [(Durability::Dsync, 7u64), (Durability::LinkedFdatasync, 8)] {
        let disk = SimDisk::new(seed);
        let cfg = k3_config(durability)
            .queue_capacity(256)
            .writer_spin(Duration::from_micros(200))
            // A second batch goes in flight whenever anything is queued (the engine's default
            // waits for 256 records, which these trickling producers never queue).
            .parallel_batch_min_records(1)
            .unpinned_writer();
        let wal = Wal::open_on(disk.storage(), cfg.clone()).expect("open");
        disk.record_snapshots(true);
        let ids = AtomicU64::new(1);
        let appended = trickle(&wal, &ids, seed);
        disk.record_snapshots(false);
        wal.close().expect("close");
        let by_id: HashMap<i64, TradeIntent> = appended.iter().map(|i| (i.ts_ns, *i)).collect();
        let mut snaps = disk.take_snapshots();
        assert!(!snaps.is_empty(), "no moment with two or more batches in flight");
        // The moments with the most writes in flight, at most two per mode.
        snaps.sort_by_key(|s| std::cmp::Reverse(s.pending_writes().len()));
        for snap in snaps.into_iter().take(2) {
            snapshots_used += 1;
            let pending = snap.pending_writes();
            assert!((2..=3).contains(&pending.len()), "K = 3 bounds the writes in flight: {pending:?}");
            let lost = snap.fork();
            lost.crash_with(&CrashPolicy::lose_all(), 0);
            let base = scan(&lost).expect("durable state scans").records;
            // Debug builds (the quick local run) tear by prefixes only; release (CI) takes every
            // single-write sector subset.
            let tear = if cfg!(debug_assertions) { EnumTear::Prefix } else { EnumTear::SingleTorn };
            let mut e = Enumeration { tear, dir: true, max_states: 20_000 };
            if snap.for_each_crash_state(&e, |_| {}).is_err() {
                // Too many single-write tears for the bound: prefix tears, said and counted.
                eprintln!("exhaustive: snapshot {snapshots_used} has more than 20 000 SingleTorn states; enumerating prefix tears");
                e.tear = EnumTear::Prefix;
                prefix_fallbacks += 1;
            }
            // What the enumeration must produce, computed here from the pending writes alone
            // (the formula of `Enumeration`'s doc, independent of the enumerator's loops).
            let expected = expected_states(&snap, &e);
            let n = snap
                .for_each_crash_state(&e, |cs| {
                    let ctx = format!("{durability:?} crash state {:?}", cs.report);
                    let s = scan(&cs.disk).unwrap_or_else(|c| panic!("a crash produced corruption ({c}); {ctx}"));
                    for (lsn, r) in &base {
                        assert_eq!(s.records.get(lsn), Some(r), "I1: durable record {lsn} lost; {ctx}");
                    }
                    let first = s.state.first_lsn.unwrap_or(1);
                    assert_eq!(s.records.keys().copied().collect::<Vec<_>>(), (first..s.state.next_lsn).collect::<Vec<_>>(), "I3; {ctx}");
                    for r in s.records.values() {
                        if let Record::Intent(it) = r {
                            assert_eq!(by_id.get(&it.ts_ns), Some(it), "I2: phantom {it:?}; {ctx}");
                        }
                    }
                    let w = Wal::open_on(cs.disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("recovery failed: {e}; {ctx}"));
                    let first_rec = w.recovered().clone();
                    assert_eq!(first_rec.in_doubt, s.state.in_doubt, "{ctx}");
                    assert_eq!(first_rec.next_lsn, s.state.next_lsn, "{ctx}");
                    drop(w); // a process crash right after recovery (its checkpoint may be written)
                    let w = Wal::open_on(cs.disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("second recovery failed: {e}; {ctx}"));
                    assert_eq!(w.recovered().in_doubt, first_rec.in_doubt, "recovery after recovery changed the in-doubt set; {ctx}");
                    assert!(w.recovered().next_lsn >= first_rec.next_lsn, "{ctx}");
                    assert!(w.recovered().torn_tail.is_none(), "the repaired log tore again; {ctx}");
                    w.close().expect("close");
                    checked_states += 1;
                })
                .expect("bounded enumeration");
            assert_eq!(n, expected, "{durability:?} snapshot {snapshots_used}: states enumerated (and each one judged)");
        }
    }
    eprintln!(
        "exhaustive: {checked_states} crash states from {snapshots_used} snapshots ({prefix_fallbacks} enumerated with prefix tears only)"
    );
    assert!(checked_states >= 16);
    if !cfg!(debug_assertions) {
        assert!(prefix_fallbacks < snapshots_used, "every snapshot fell back to prefix tears: SingleTorn never ran");
    }
}

/// The number of crash states `e` must enumerate on `disk`'s pending writes and unsynced directory
/// entries: subsets of whole writes, plus (SingleTorn) every proper sector tear of one write times
/// every subset of the others, or (Prefix) every prefix of each write; times 2^d directory fates.
fn expected_states(disk: &SimDisk, e: &tradewal_tests::sim::Enumeration) -> u64 {
    use tradewal_tests::sim::EnumTear;
    let sectors: Vec<u64> = disk.pending_writes().iter().map(|w| w.sectors() as u64).collect();
    let n = sectors.len() as u32;
    let writes = match e.tear {
        EnumTear::None => 1u64 << n,
        EnumTear::SingleTorn => (1u64 << n) + sectors.iter().map(|&s| ((1u64 << s) - 2) << (n - 1)).sum::<u64>(),
        EnumTear::Prefix => sectors.iter().map(|&s| s + 1).product(),
        EnumTear::AllSubsets => sectors.iter().map(|&s| 1u64 << s).product(),
    };
    let d = if e.dir { disk.unsynced_dir_entries().len() as u32 } else { 0 };
    writes << d
}

/// A fixed layout, so the count never moves: a log written at QD1 on the simulated disk (one
/// record per batch, so the same code gives the same batches on every run), whose last three
/// batches are then staged again as three unsynced 4 KiB writes over zeros: the state of a crash
/// with K = 3 batches in flight, none acknowledged (the manifest, which covered them once they
/// were acknowledged, is removed: a log without a manifest opens as before). Every SingleTorn
/// state (2^3 + 3 * (2^8 - 2) * 2^2 = 3 056 per mode) must open, keep every record before the
/// three, recover a prefix of the three batches' records in LSN order and nothing else, and open
/// again after a crash right after recovery.
#[test]
fn crash_states_of_three_staged_batches_have_a_fixed_count() {
    use tradewal_codec::format::BatchHeader;
    use tradewal_tests::sim::{EnumTear, Enumeration};
    let mut total = 0;
    for (durability, seed) in [(Durability::Dsync, 17u64), (Durability::LinkedFdatasync, 18)] {
        let disk = SimDisk::new(seed);
        let cfg = k3_config(durability);
        let wal = Wal::open_on(disk.storage(), cfg.clone()).expect("open");
        // The session's opening checkpoint first, alone in its batch (an append queued before the
        // writer took it would share the batch, and the layout would depend on timing).
        wal.wait_durable(wal.recovered().next_lsn).expect("opening checkpoint durable");
        let mut rng = Rng::new(seed);
        for i in 0..40u64 {
            let lsn = wal.append(&intent(i + 1, &mut rng)).expect("append").wait().expect("durable");
            if i % 4 == 1 {
                wal.mark_executed(lsn).expect("mark").wait().expect("outcome durable");
            }
        }
        wal.close().expect("close");
        let segs: Vec<String> = disk.live_names().into_iter().filter(|n| n.starts_with("wal_") && n.ends_with(".log")).collect();
        assert_eq!(segs.len(), 1, "one segment (close removes the unused spare): {segs:?}");
        let seg = segs[0].clone();
        let image = disk.durable_image(&seg).expect("segment image");
        let mut batches = Vec::new();
        let mut pos = tradewal_codec::BLOCK_BYTES;
        while let Some(h) = BatchHeader::decode(&image[pos..]) {
            batches.push((pos, h.padded_len(), h.first_lsn, h.record_count));
            pos += h.padded_len();
        }
        // 1 opening checkpoint + 40 intents + 10 outcomes, one record and one block each.
        assert_eq!(batches.len(), 51, "QD1 gives one batch per record");
        assert!(batches.iter().all(|b| b.1 == 4096 && b.3 == 1), "{batches:?}");
        let staged = &batches[batches.len() - 3..];
        let mut zeroed = image.clone();
        for &(at, len, _, _) in staged {
            zeroed[at..at + len].fill(0);
        }
        disk.put_file(&seg, zeroed);
        let st = disk.storage();
        st.remove(tradewal::manifest::MANIFEST_FILE).expect("remove the manifest");
        st.sync_dir().expect("sync the directory");
        for &(at, len, _, _) in staged {
            disk.write_unsynced(&seg, at as u64, &image[at..at + len]).expect("stage a write");
        }
        let kept_below = staged[0].2;
        let full = scan(&disk).expect("the staged log scans").records;
        let e = Enumeration { tear: EnumTear::SingleTorn, dir: true, max_states: 20_000 };
        assert_eq!(expected_states(&disk, &e), 3_056);
        let n = disk
            .for_each_crash_state(&e, |cs| {
                let ctx = format!("{durability:?} crash state {:?}", cs.report);
                let w = Wal::open_on(cs.disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("recovery failed: {e}; {ctx}"));
                let rec = w.recovered().clone();
                assert!(rec.next_lsn >= kept_below, "I1: records before the staged batches lost; {ctx}");
                assert!(rec.next_lsn <= kept_below + 3, "I2: records after the staged batches; {ctx}");
                if cs.report.writes.iter().all(|w| w.fate == tradewal_tests::sim::Fate::Persisted) {
                    assert_eq!(rec.next_lsn, kept_below + 3, "all three landed whole: all recovered; {ctx}");
                }
                drop(w);
                let s = scan(&cs.disk).unwrap_or_else(|c| panic!("recovered log does not scan ({c}); {ctx}"));
                for (lsn, r) in &full {
                    if *lsn < rec.next_lsn {
                        assert_eq!(s.records.get(lsn), Some(r), "I1/I2: record {lsn} is not the one written; {ctx}");
                    }
                }
                let w = Wal::open_on(cs.disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("second recovery failed: {e}; {ctx}"));
                assert_eq!(w.recovered().in_doubt, rec.in_doubt, "recovery after recovery changed the in-doubt set; {ctx}");
                w.close().expect("close");
            })
            .expect("bounded enumeration");
        assert_eq!(n, 3_056, "{durability:?}: states enumerated");
        total += n;
    }
    eprintln!("staged crash states: {total} (3 056 per durability mode, each opened twice)");
    assert_eq!(total, 6_112);
}

/// The simulated log of the crash-state tests: K = 3, the model's segment, batch and in-doubt sizes.
fn k3_config(durability: Durability) -> WalConfig {
    WalConfig::new("/sim")
        .segment_bytes(SEGMENT_BYTES)
        .max_batch_bytes(MAX_BATCH_BYTES)
        .in_flight_batches(3)
        .durability(durability)
        .max_in_doubt(MAX_IN_DOUBT)
        .unpinned_writer()
}

/// Appends `n` intents at QD1 (each waits for its ticket), marking all but one in sixteen executed
/// (the in-doubt set stays small).
/// Three producers, each twice: 24 appends trickling in (4 at a time, 50 µs apart) while batches
/// are in flight, so the writer submits more than one; then the first of them marked executed.
/// Returns every intent appended.
fn trickle(wal: &Wal, ids: &AtomicU64, seed: u64) -> Vec<TradeIntent> {
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3u64)
            .map(|p| {
                sc.spawn(move || {
                    let mut rng = Rng::new(seed * 10 + p);
                    let mut out = Vec::new();
                    for _ in 0..2 {
                        let mut ts = Vec::new();
                        for _ in 0..6 {
                            for _ in 0..4 {
                                let it = intent(ids.fetch_add(1, Ordering::Relaxed), &mut rng);
                                out.push(it);
                                ts.push(wal.append(&it).expect("append"));
                            }
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        let lsns: Vec<Lsn> = ts.into_iter().map(|t| t.wait().expect("durable")).collect();
                        wal.mark_executed(lsns[0]).expect("mark").wait().expect("outcome durable");
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("producer")).collect()
    })
}

fn qd1(wal: &Wal, ids: &AtomicU64, n: u64, rng: &mut Rng) -> Vec<TradeIntent> {
    let mut out = Vec::new();
    for _ in 0..n {
        let it = intent(ids.fetch_add(1, Ordering::Relaxed), rng);
        let lsn = wal.append(&it).expect("append").wait().expect("durable");
        if lsn % 16 != 0 {
            wal.mark_executed(lsn).expect("mark").wait().expect("outcome durable");
        }
        out.push(it);
    }
    out
}

/// True when the segment file `name` on `disk` is in service in a recycled life (its header's
/// epoch has `EPOCH_RECYCLED`) and holds stale bytes of an earlier life after its data.
fn in_recycled_life(disk: &SimDisk, name: &str) -> bool {
    let Some(img) = disk.live_image(name) else { return false };
    let Ok(h) = tradewal_codec::SegmentHeader::decode(&img[..tradewal_codec::BLOCK_BYTES]) else { return false };
    let end = match tradewal_codec::SegmentDecoder::new(&img, Some(h.segment_no)).finish() {
        tradewal_codec::SegmentEnd::Clean { end_offset, .. } | tradewal_codec::SegmentEnd::TornTail { at: end_offset, .. } => end_offset,
        _ => return false,
    };
    h.recycled() && img[end as usize..].iter().any(|&b| b != 0)
}

/// The crash-state enumeration of `exhaustive_crash_states_of_up_to_three_batches_in_flight`, in
/// a recycled segment: under `Retention::Delete` the log first rotates until the segment in
/// service is a recycled file (block 0 zeroed, stale batches of its first life after the data),
/// then trickling producers keep two or three batches in flight while the disk records snapshots.
/// Every post-crash state of those writes (every subset persisted, every sector tear of one) must
/// scan without corruption (stale batches never read as records nor as damage of acknowledged
/// data), keep every record durable at that moment, hold only appended records contiguously, and
/// open twice.
#[test]
fn exhaustive_crash_states_in_a_recycled_segment() {
    use tradewal_tests::sim::{EnumTear, Enumeration};
    let mut checked_states = 0u64;
    let mut snapshots_used = 0;
    for (durability, seed) in [(Durability::Dsync, 27u64), (Durability::LinkedFdatasync, 28)] {
        let disk = SimDisk::new(seed);
        let cfg = k3_config(durability)
            .retention(tradewal::Retention::Delete)
            .queue_capacity(256)
            .writer_spin(Duration::from_micros(200))
            .parallel_batch_min_records(1);
        let wal = Wal::open_on(disk.storage(), cfg.clone()).expect("open");
        let ids = AtomicU64::new(1);
        let mut rng = Rng::new(seed);
        let mut appended = Vec::new();
        // QD1: one block per batch, 255 batches per 1 MiB segment; three rotations put the
        // recycled first segment in service (docs/design.md, "Recycled segment files").
        while wal.stats().rotations < 3 {
            appended.extend(qd1(&wal, &ids, 50, &mut rng));
        }
        appended.extend(qd1(&wal, &ids, 30, &mut rng));
        assert!(wal.stats().segments_recycled >= 1, "a spare was recycled: {:?}", wal.stats());
        disk.record_snapshots(true);
        let more = trickle(&wal, &ids, seed);
        appended.extend(more);
        disk.record_snapshots(false);
        wal.close().expect("close");
        let by_id: HashMap<i64, TradeIntent> = appended.iter().map(|i| (i.ts_ns, *i)).collect();
        let mut snaps: Vec<SimDisk> =
            disk.take_snapshots().into_iter().filter(|s| s.pending_writes().iter().all(|w| in_recycled_life(s, &w.file))).collect();
        assert!(!snaps.is_empty(), "no moment with two or more batches in flight in the recycled segment");
        snaps.sort_by_key(|s| std::cmp::Reverse(s.pending_writes().len()));
        for snap in snaps.into_iter().take(2) {
            snapshots_used += 1;
            let lost = snap.fork();
            lost.crash_with(&CrashPolicy::lose_all(), 0);
            let base = scan(&lost).expect("durable state scans").records;
            let tear = if cfg!(debug_assertions) { EnumTear::Prefix } else { EnumTear::SingleTorn };
            let mut e = Enumeration { tear, dir: true, max_states: 20_000 };
            if snap.for_each_crash_state(&e, |_| {}).is_err() {
                e.tear = EnumTear::Prefix;
            }
            let expected = expected_states(&snap, &e);
            let n = snap
                .for_each_crash_state(&e, |cs| {
                    let ctx = format!("{durability:?} recycled-segment crash state {:?}", cs.report);
                    let s = scan(&cs.disk).unwrap_or_else(|c| panic!("a crash produced corruption ({c}); {ctx}"));
                    for (lsn, r) in &base {
                        assert_eq!(s.records.get(lsn), Some(r), "I1: durable record {lsn} lost; {ctx}");
                    }
                    let first = s.state.first_lsn.unwrap_or(1);
                    assert_eq!(s.records.keys().copied().collect::<Vec<_>>(), (first..s.state.next_lsn).collect::<Vec<_>>(), "I3; {ctx}");
                    for r in s.records.values() {
                        if let Record::Intent(it) = r {
                            assert_eq!(by_id.get(&it.ts_ns), Some(it), "I2: phantom {it:?}; {ctx}");
                        }
                    }
                    let w = Wal::open_on(cs.disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("recovery failed: {e}; {ctx}"));
                    let first_rec = w.recovered().clone();
                    assert_eq!(first_rec.in_doubt, s.state.in_doubt, "{ctx}");
                    assert_eq!(first_rec.next_lsn, s.state.next_lsn, "{ctx}");
                    drop(w);
                    let w = Wal::open_on(cs.disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("second recovery failed: {e}; {ctx}"));
                    assert_eq!(w.recovered().in_doubt, first_rec.in_doubt, "recovery after recovery changed the in-doubt set; {ctx}");
                    assert!(w.recovered().torn_tail.is_none(), "the repaired log tore again; {ctx}");
                    w.close().expect("close");
                    checked_states += 1;
                })
                .expect("bounded enumeration");
            assert_eq!(n, expected, "{durability:?} snapshot {snapshots_used}: states enumerated");
        }
    }
    eprintln!("exhaustive (recycled segment): {checked_states} crash states from {snapshots_used} snapshots");
    assert!(checked_states >= 16);
}

/// A power cut at every storage operation from the open of a session that recycles (a
/// recyclable `.free` file left by the previous session becomes the spare: block 0 zeroed and
/// flushed, renamed, directory fsynced) through its first appends, under three crash policies
/// (lose, persist, tear every unsynced write and directory change). Every cut must reopen with
/// every acknowledged record (I1), nothing else (I2), contiguously (I3), and no corruption: the
/// crash cases of docs/design.md "Recycled segment files" before and after the block-0 zeroing and
/// before and after the rename's directory fsync.
#[test]
fn power_cuts_at_every_operation_of_a_session_that_recycles() {
    let base = SimDisk::new(41);
    let cfg = k3_config(Durability::Dsync).retention(tradewal::Retention::Delete);
    let ids = AtomicU64::new(1);
    let mut rng = Rng::new(41);
    {
        let wal = Wal::open_on(base.storage(), cfg.clone()).expect("open");
        while wal.stats().rotations < 2 {
            qd1(&wal, &ids, 50, &mut rng);
        }
        wal.close().expect("close");
    }
    assert!(base.live_names().iter().any(|n| n.ends_with(".free")), "a recyclable file for the next session: {:?}", base.live_names());
    let known_scan = scan(&base).expect("scans");
    let (known, known_next, known_in_doubt) = (known_scan.records, known_scan.state.next_lsn, known_scan.state.in_doubt);
    let (mut cuts, mut recycle_cuts, mut fired) = (0u64, 0u64, 0u64);
    for policy in [CrashPolicy::lose_all(), CrashPolicy::persist_all(), CrashPolicy::tear_all()] {
        for n in 1..=80u64 {
            let disk = base.fork();
            let start = disk.stats();
            disk.power_cut_at_op(start.ops + n, n, policy.clone());
            let mut mine: Vec<(Lsn, TradeIntent)> = Vec::new();
            if let Ok(wal) = Wal::open_on(disk.storage(), cfg.clone()) {
                for _ in 0..12 {
                    let it = intent(ids.fetch_add(1, Ordering::Relaxed), &mut rng);
                    match wal.append(&it).and_then(|t| t.wait()) {
                        Ok(lsn) => mine.push((lsn, it)),
                        Err(_) => break,
                    }
                }
                drop(wal);
            }
            if !disk.power_cut_armed() {
                fired += 1;
            }
            // Not reached: the session ended by the drop (a process crash) instead.
            disk.power_cut_at_op(u64::MAX, 0, CrashPolicy::default());
            let after = disk.stats();
            if after.recycles > start.recycles {
                recycle_cuts += 1;
            }
            let ctx = format!("power cut at op +{n} ({policy:?})");
            // The crash state, as recovery will read it.
            let s = scan(&disk).unwrap_or_else(|c| panic!("corruption after the cut ({c}); {ctx}"));
            // Retention may have removed older segments (their records are covered by the
            // newest checkpoint); what is left is exactly what was written, nothing is lost.
            let first = s.state.first_lsn.unwrap_or(1);
            assert!(s.state.next_lsn >= known_next, "I1: the log ends at {} below {known_next}; {ctx}", s.state.next_lsn);
            for (lsn, r) in known.range(first..) {
                assert_eq!(s.records.get(lsn), Some(r), "I1: record {lsn} of the earlier session lost; {ctx}");
            }
            for (lsn, it) in &mine {
                assert_eq!(s.records.get(lsn), Some(&Record::Intent(*it)), "I1: acknowledged {lsn} lost; {ctx}");
            }
            assert_eq!(s.records.keys().copied().collect::<Vec<_>>(), (first..s.state.next_lsn).collect::<Vec<_>>(), "I3; {ctx}");
            let w = Wal::open_on(disk.storage(), cfg.clone()).unwrap_or_else(|e| panic!("reopen failed: {e}; {ctx}"));
            let rec = w.recovered().clone();
            drop(w);
            assert_eq!((rec.next_lsn, &rec.in_doubt), (s.state.next_lsn, &s.state.in_doubt), "recovery agrees with the scan; {ctx}");
            for d in &known_in_doubt {
                assert!(rec.in_doubt.contains(d), "I1: in-doubt intent {} lost; {ctx}", d.lsn);
            }
            for (lsn, _) in &mine {
                assert!(rec.in_doubt.iter().any(|d| d.lsn == *lsn), "I1: acknowledged intent {lsn} not in doubt; {ctx}");
            }
            cuts += 1;
        }
    }
    eprintln!("power cuts around a recycle: {cuts} cuts, {fired} fired, {recycle_cuts} after a recycle began");
    assert!(fired > 100 && recycle_cuts > 0, "the cuts reached the recycle: {fired} fired, {recycle_cuts} after it began");
}

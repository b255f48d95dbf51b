//! The workload driver and reference model of the crash simulation, shared by
//! `tests/tests/simulation.rs` (seeded random runs), the cargo-fuzz targets `model` and
//! `recover_dir` (fuzz/fuzz_targets/) and their stable-toolchain smoke test
//! (`tests/tests/fuzz_smoke.rs`), so every suite checks the engine with one copy of the model.
//!
//! - [`Run`], [`Model`], [`producer`], [`run_seed`]: the simulation (see `simulation.rs` for what
//!   a seed does and which invariants are checked).
//! - [`fuzz_model`]: fuzz bytes decide a sequence of operations on one log (appends from one or two
//!   threads, outcomes, an I/O-error countdown on write/flush/create, close, process crash, power
//!   cut), reopening and checking the model after every session end.
//! - [`fuzz_recover_dir`]: fuzz bytes build a damaged directory of 1–4 segment files and open it:
//!   never a panic; a typed error or an open log that obeys I3 and gives the same answer again (I5).

use crate::sim::{CrashPolicy, Fault, Rng, SimDisk, TearShape, SECTOR_BYTES};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tradewal::{
    Durability, Fill, GroupLeg, Lsn, OrderId, Outcome, OutcomeKind, Retention, Side, Status, Symbol, TradeIntent, Wal, WalConfig, WalError,
};
use tradewal_codec::format::BatchHeader;
use tradewal_codec::{LogScanner, LogState, Record, SegmentName, BLOCK_BYTES};

// ---------------------------------------------------------------------------------------------
// The simulation's model and driver (moved from tests/tests/simulation.rs unchanged but for `pub`).

/// Liveness guard only (an engine hang must fail the run instead of blocking CI forever); never a
/// performance bound.
pub const HANG: Duration = Duration::from_secs(120);
/// Segment size of the simulated logs (the engine's minimum).
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// Largest batch of the simulated logs (the engine's minimum).
pub const MAX_BATCH_BYTES: usize = 32 << 10;
/// In-doubt limit of the simulated logs.
pub const MAX_IN_DOUBT: usize = 256;

/// A valid intent with id `id` (its `ts_ns`, unique in a run) and seeded fields.
pub fn intent(id: u64, rng: &mut Rng) -> TradeIntent {
    const SYMS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ES.FUT"];
    TradeIntent {
        ts_ns: id as i64,
        symbol: Symbol::new(SYMS[rng.below(4) as usize]).expect("valid symbol"),
        side: if rng.chance(500) { Side::Buy } else { Side::Sell },
        price: 1.0 + rng.below(1_000_000) as f64 / 100.0,
        qty: 0.001 * (1 + rng.below(10_000)) as f64,
        stop_loss: if rng.chance(500) { 0.0 } else { 0.5 },
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

/// What producers observed.
#[derive(Debug)]
pub enum Event {
    /// `append` (or `append_group`, one event per leg) accepted the intent; a group leg as the
    /// log must hold it (with its `group`).
    Appended(TradeIntent),
    /// Its ticket resolved to this LSN (a group: one event per leg, leg `j` at the first LSN + j).
    Acked(Lsn, TradeIntent),
    /// An outcome was asked (through `report` or a shorthand).
    OutcomeAsked(Outcome),
    /// The outcome's ticket resolved to this LSN.
    OutcomeAcked(Outcome, Lsn),
    /// A group's ticket resolved (its legs are in `Acked` events).
    GroupAcked,
}

/// An intent in doubt: the intent and its latest partial fill.
pub type Doubt = (TradeIntent, Option<Fill>);

/// The reference model across sessions.
#[derive(Debug, Default)]
pub struct Model {
    /// Records recovered and verified in earlier sessions: they must stay.
    pub known: BTreeMap<Lsn, Record>,
    /// The next LSN at the last recovery: records from it on were written this session.
    pub prev_next: Lsn,
    /// In-doubt set (with fills) verified at the last recovery.
    pub prev_in_doubt: BTreeMap<Lsn, Doubt>,
    /// Intents appended this session, by id (group legs with their leg).
    pub appended: HashMap<i64, TradeIntent>,
    /// Intents acknowledged this session.
    pub acked: BTreeMap<Lsn, TradeIntent>,
    /// Outcomes asked this session, per intent LSN, in the order asked (each one only after the
    /// previous one of its intent was acknowledged), acknowledged or not.
    pub outcome_asked: BTreeMap<Lsn, Vec<Outcome>>,
    /// Outcomes acknowledged this session, per intent LSN: (outcome LSN, outcome), a prefix of
    /// what was asked.
    pub outcome_acked: BTreeMap<Lsn, Vec<(Lsn, Outcome)>>,
    /// Groups acknowledged this session.
    pub groups_acked: u64,
}

impl Model {
    /// Records one observation.
    pub fn apply(&mut self, e: Event) {
        match e {
            Event::Appended(i) => assert!(self.appended.insert(i.ts_ns, i).is_none(), "intent ids are unique"),
            Event::Acked(lsn, i) => assert!(self.acked.insert(lsn, i).is_none(), "LSN {lsn} acknowledged twice"),
            Event::OutcomeAsked(o) => {
                let asked = self.outcome_asked.entry(o.intent_lsn).or_default();
                assert!(asked.last().is_none_or(|p| !p.status.is_terminal()), "nothing is asked after a terminal outcome");
                asked.push(o);
            }
            Event::OutcomeAcked(o, olsn) => {
                let acked = self.outcome_acked.entry(o.intent_lsn).or_default();
                assert_eq!(self.outcome_asked[&o.intent_lsn].get(acked.len()), Some(&o), "outcomes are acknowledged in the order asked");
                acked.push((olsn, o));
            }
            Event::GroupAcked => self.groups_acked += 1,
        }
    }

    /// True when a terminal outcome was asked for the intent at `lsn` this session.
    pub fn terminal_asked(&self, lsn: Lsn) -> bool {
        self.outcome_asked.get(&lsn).is_some_and(|v| v.last().is_some_and(|o| o.status.is_terminal()))
    }

    /// The latest partial fill of the intent at `lsn` as asked so far (this session's outcomes on
    /// the recovered fill).
    pub fn fill_of(&self, lsn: Lsn) -> Option<Fill> {
        let start = self.prev_in_doubt.get(&lsn).and_then(|d| d.1);
        self.outcome_asked.get(&lsn).and_then(|v| v.iter().rev().find_map(Fill::of)).or(start)
    }
}

/// The state an in-doubt intent (`start`: its fill) is in after `outcomes`: `None` once one is
/// terminal, else `Some(latest fill)`.
fn state_after(start: Option<Fill>, outcomes: &[Outcome]) -> Option<Option<Fill>> {
    let mut fill = start;
    for o in outcomes {
        if o.status.is_terminal() {
            return None;
        }
        fill = Fill::of(o);
    }
    Some(fill)
}

/// A whole-log scan of what recovery will read.
pub struct Scan {
    /// The scanner's result.
    pub state: LogState,
    /// Every record kept, by LSN.
    pub records: BTreeMap<Lsn, Record>,
    /// LSN → (file, frame offset, frame length).
    pub frames: BTreeMap<Lsn, (String, u64, usize)>,
    /// Segment files in number order.
    pub files: Vec<(u64, String)>,
}

/// Scans the segment files of `disk` as recovery will read them (O_DIRECT view).
pub fn scan(disk: &SimDisk) -> Result<Scan, tradewal_codec::Corruption> {
    let mut files: Vec<(u64, String)> =
        disk.live_names().into_iter().filter_map(|n| SegmentName::parse(&n).map(|s| (s.segment_no, n))).collect();
    files.sort();
    let mut scanner = LogScanner::new();
    let mut records = BTreeMap::new();
    let mut frames = BTreeMap::new();
    for (no, name) in &files {
        let img = disk.direct_image(name).expect("listed file");
        scanner.push_segment(*no, &img, |f, r| {
            records.insert(f.lsn, r.clone());
            frames.insert(f.lsn, (name.clone(), f.offset, 24 + f.body.len()));
        })?;
    }
    Ok(Scan { state: scanner.finish(), records, frames, files })
}

/// Batches of a segment image: (batch number, offset, padded length).
pub fn batches(img: &[u8]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut pos = BLOCK_BYTES;
    while pos + BLOCK_BYTES <= img.len() {
        match BatchHeader::decode(&img[pos..]) {
            Some(h) if h.batch_no == out.len() as u64 => {
                out.push((h.batch_no, pos as u64, h.padded_len() as u64));
                pos += h.padded_len();
            }
            _ => break,
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// How a session ends.
pub enum End {
    /// Power cut at a seeded batch I/O event.
    PowerCut,
    /// An injected I/O fault (fail-stop), then maybe a power cut.
    Fault,
    /// The `Wal` dropped without close, then maybe a power cut.
    ProcessCrash,
    /// A clean close.
    Close,
}

/// One simulated log: its disk, configuration, model and the seeded choices.
pub struct Run {
    /// Drives every choice of the run.
    pub rng: Rng,
    /// The disk.
    pub disk: SimDisk,
    /// The configuration every session opens with.
    pub cfg: WalConfig,
    /// Batches in flight (the K-window).
    pub k: u32,
    /// The reference model.
    pub model: Model,
    /// Next intent id.
    pub next_id: u64,
    /// Coverage counters.
    pub stats: Stats,
}

/// What the runs covered (printed at the end, so a reader can see the suite is not vacuous).
#[derive(Debug, Default)]
pub struct Stats {
    /// Seeds run.
    pub seeds: u64,
    /// Sessions run.
    pub sessions: u64,
    /// Sessions ended by a power cut.
    pub power_cuts: u64,
    /// Sessions ended by an injected I/O fault that fired (the disk consumed it).
    pub faults: u64,
    /// Sessions planned to end by a fault whose write or flush never came (they ended like a
    /// process crash instead).
    pub faults_unfired: u64,
    /// Sessions ended by a process crash.
    pub process_crashes: u64,
    /// Sessions ended by a clean close.
    pub closes: u64,
    /// Reopens that truncated a torn tail.
    pub torn_tails: u64,
    /// Reopens that found more than one segment.
    pub rotations_seen: u64,
    /// Intents acknowledged.
    pub acked_intents: u64,
    /// Groups (`append_group`, 2..=4 legs) acknowledged.
    pub acked_groups: u64,
    /// Partial fills acknowledged.
    pub acked_fills: u64,
    /// Recovered in-doubt intents that carried a partial fill (summed over reopens).
    pub in_doubt_fills: u64,
    /// Bit rot provably not a torn tail (recovery must refuse).
    pub rot_provable: u64,
    /// Bit rot inside the last K batches (recovery must report a torn tail at or before it).
    pub rot_unprovable: u64,
    /// Provable bit rot in a segment before recovery's scan start (the manifest's newest data
    /// segment): recovery checked only its header and opened with what the log held before the flip,
    /// and the whole-log scan (what `tradewal verify` runs) refused it.
    pub rot_before_scan_start: u64,
    /// Reopens whose recovery started reading after the first segment (a checkpoint start) and
    /// agreed with the whole-log scan on the in-doubt set, next LSN and torn tail.
    pub checkpoint_starts: u64,
    /// Spares made by recycling a retired segment file (`Retention::Delete`), counted by the
    /// simulated disk (`SimStats::recycles`).
    pub segments_recycled: u64,
}

/// A bit flipped by [`Run::rot`] in an acknowledged record.
#[derive(Debug, Clone)]
pub struct Rot {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The damage is provably not a torn tail (a valid batch at least K later in its segment, or
    /// a later segment holding data).
    pub provable: bool,
    /// The segment the record is in.
    pub segment_no: u64,
    /// What a whole-log scan found before the flip: in-doubt set, next LSN, torn tail.
    pub before: (Vec<tradewal::InDoubt>, Lsn, bool),
}

impl Run {
    /// The run of `seed`: a fresh disk and a seeded configuration.
    pub fn new(seed: u64) -> Run {
        let mut rng = Rng::new(seed);
        let disk = SimDisk::new(rng.fork());
        let k = rng.range(1, 3) as u32;
        let durability = if rng.chance(500) { Durability::Dsync } else { Durability::LinkedFdatasync };
        let retention = retention_of(rng.below(3));
        let cfg = sim_config(k, durability, retention);
        // The engine starts a second batch in flight only when `parallel_batch_min_records` are
        // queued (default 256, more than these small workloads queue): even seeds set it to 1 so
        // their sessions keep up to K batches in flight (the K-window), odd seeds keep the default.
        // Derived from the seed without a draw, so every seed's workload is unchanged.
        let cfg = if seed % 2 == 0 { cfg.parallel_batch_min_records(1) } else { cfg };
        Run { rng, disk, cfg, k, model: Model::default(), next_id: 1, stats: Stats::default() }
    }

    /// Reopens the log and checks it against the model. `rot`: an acknowledged record whose frame
    /// had a bit flipped. Returns the open log, or None when recovery (rightly) refused or the rot
    /// case was judged.
    pub fn reopen(&mut self, rot: Option<Rot>) -> Option<Wal> {
        let scanned = scan(&self.disk);
        let opened = Wal::open_on(self.disk.storage(), self.cfg.clone());
        self.judge(rot, scanned, opened)
    }

    /// The checks of [`Run::reopen`] on a scan taken right before an open and that open's result.
    pub fn judge(
        &mut self,
        rot: Option<Rot>,
        scanned: Result<Scan, tradewal_codec::Corruption>,
        opened: Result<Wal, WalError>,
    ) -> Option<Wal> {
        if let Some(r) = &rot {
            let start = opened.as_ref().ok().and_then(|w| w.recovered().scanned_from_segment);
            if let (Ok(w), Some(start)) = (&opened, start) {
                if r.segment_no < start {
                    // Recovery read only the header of the rotted segment (the manifest's newest
                    // data segment's checkpoint carries the in-doubt set): it opens with what the
                    // log held before the flip, and the whole-log scan (read_log, `tradewal
                    // verify`) refuses the damage.
                    let rec = w.recovered();
                    assert!(r.provable, "rot in segment {} before the scan start {start} has later data", r.segment_no);
                    assert_eq!(rec.in_doubt, r.before.0, "rot before the scan start changed the in-doubt set");
                    assert_eq!(rec.next_lsn, r.before.1, "rot before the scan start changed the next LSN");
                    assert_eq!(rec.torn_tail.is_some(), r.before.2, "rot before the scan start changed the torn tail");
                    assert!(scanned.is_err(), "rot at LSN {} in segment {} passed the whole-log scan", r.lsn, r.segment_no);
                    self.stats.rot_before_scan_start += 1;
                    return None;
                }
            }
        }
        if let Some(Rot { lsn, provable, .. }) = rot {
            match (&opened, provable) {
                (Err(WalError::Corrupt { reason, .. }), _) => {
                    // The codec scan alone refuses, or the manifest (which the codec scan does not
                    // read) shows the rot destroyed acknowledged records even within the last K
                    // batches.
                    assert!(scanned.is_err() || reason.to_string().contains(tradewal::manifest::MANIFEST_FILE), "refused for {reason}");
                    return None;
                }
                (Err(e), _) => panic!("recovery after rot at LSN {lsn} failed with {e} instead of Corrupt"),
                (Ok(_), true) => panic!(
                    "I4: rot in acknowledged LSN {lsn}, provably not a torn tail, but recovery opened: {:?}",
                    opened.as_ref().map(|w| w.recovered().torn_tail.clone())
                ),
                (Ok(w), false) => {
                    // Within the last K batches: indistinguishable from a torn write. Recovery
                    // must at least report the loss.
                    let t = w
                        .recovered()
                        .torn_tail
                        .as_ref()
                        .unwrap_or_else(|| panic!("rot at acknowledged LSN {lsn} vanished without a torn-tail report"));
                    assert!(t.lsn <= lsn, "torn tail at LSN {} does not cover the damaged LSN {lsn}", t.lsn);
                    return None;
                }
            }
        }
        let s = match scanned {
            Ok(s) => s,
            Err(c) => panic!("crash state is corrupt for the codec ({c}); engine said {:?}", opened.as_ref().err()),
        };
        let wal = opened.unwrap_or_else(|e| panic!("reopen after a crash failed: {e}"));
        let rec = wal.recovered().clone();
        // The engine's recovery agrees with a scan of what it read.
        assert_eq!(rec.in_doubt, s.state.in_doubt, "recovered in-doubt set differs from the scan");
        assert_eq!(rec.next_lsn, s.state.next_lsn);
        assert_eq!(rec.torn_tail.is_some(), s.state.torn_tail.is_some());
        if rec.torn_tail.is_some() {
            self.stats.torn_tails += 1;
        }
        if s.files.len() > 1 {
            self.stats.rotations_seen += 1;
        }
        if rec.scanned_from_segment.is_some_and(|n| s.files.first().is_some_and(|f| n > f.0)) {
            self.stats.checkpoint_starts += 1;
        }
        self.check(&s, &rec.in_doubt);
        self.stats.in_doubt_fills += rec.in_doubt.iter().filter(|d| d.fill.is_some()).count() as u64;
        // Everything recovered is now durable history.
        self.model.known = s.records;
        self.model.prev_in_doubt = rec.in_doubt.iter().map(|d| (d.lsn, (d.intent, d.fill))).collect();
        self.model.prev_next = rec.next_lsn;
        self.model.appended.clear();
        self.model.acked.clear();
        self.model.outcome_asked.clear();
        self.model.outcome_acked.clear();
        self.model.groups_acked = 0;
        Some(wal)
    }

    /// Checks a scan of the reopened log and its in-doubt set against the model (I1, I2, I3, groups
    /// whole or absent, outcomes and fills as asked and acknowledged).
    pub fn check(&self, s: &Scan, in_doubt: &[tradewal::InDoubt]) {
        let m = &self.model;
        let first = s.state.first_lsn.unwrap_or(s.state.next_lsn);
        // I3: contiguous.
        let lsns: Vec<Lsn> = s.records.keys().copied().collect();
        assert_eq!(lsns, (first..s.state.next_lsn).collect::<Vec<_>>(), "I3: recovered LSNs not contiguous");
        // Groups are whole or absent: leg 0 is followed at once by legs 1..n of n, and the log
        // does not end inside a group (a group never straddles a segment, so the first kept
        // segment does not start inside one either).
        let mut open: Option<(Lsn, GroupLeg)> = None;
        for (&lsn, r) in &s.records {
            let leg = match r {
                Record::Intent(it) => it.group,
                _ => None,
            };
            match (open, leg) {
                (Some((g0, g)), Some(l)) if l.size == g.size && u64::from(l.index) == lsn - g0 => {
                    open = (l.index + 1 < l.size).then_some((g0, l));
                }
                (Some((g0, g)), _) => panic!("group at {g0} of {} legs broken at {lsn} by {r:?}", g.size),
                (None, Some(l)) if l.index == 0 => open = (l.size > 1).then_some((lsn, l)),
                (None, Some(l)) => panic!("leg {} of {} at {lsn} without the legs before it", l.index, l.size),
                (None, None) => {}
            }
        }
        if let Some((g0, g)) = open {
            panic!("group at {g0} of {} legs cut short: the log ends at {}", g.size, s.state.next_lsn - 1);
        }
        let in_doubt_map: BTreeMap<Lsn, Doubt> = in_doubt.iter().map(|d| (d.lsn, (d.intent, d.fill))).collect();
        assert_eq!(in_doubt_map.len(), in_doubt.len());
        assert!(in_doubt.windows(2).all(|w| w[0].lsn < w[1].lsn), "in-doubt set in LSN order");
        // Earlier sessions' records stay (I1 across sessions).
        for (lsn, r) in m.known.range(first..) {
            assert_eq!(s.records.get(lsn), Some(r), "I1: record {lsn} recovered earlier is gone or changed");
        }
        // I1: acknowledged intents (group legs included) and outcomes, exact.
        for (&lsn, it) in &m.acked {
            if lsn >= first {
                assert_eq!(s.records.get(&lsn), Some(&Record::Intent(*it)), "I1: acknowledged intent {lsn} lost or changed");
            }
        }
        for (&ilsn, acked) in &m.outcome_acked {
            for (olsn, o) in acked {
                if *olsn >= first {
                    assert_eq!(
                        s.records.get(olsn),
                        Some(&Record::Outcome(*o)),
                        "I1: acknowledged outcome {olsn} of {ilsn} lost or changed"
                    );
                }
            }
        }
        // I2: every new record was appended (once, by its id: a group leg as leg j of its group)
        // or asked for; this session's outcomes of each intent, as far as kept, are the last ones
        // asked up to the written count (checked below).
        let mut ids = BTreeSet::new();
        let mut outcomes: BTreeMap<Lsn, Vec<Outcome>> = BTreeMap::new();
        for (&lsn, r) in s.records.range(first..) {
            if m.known.contains_key(&lsn) {
                continue;
            }
            match r {
                Record::Intent(it) => {
                    assert_eq!(m.appended.get(&it.ts_ns), Some(it), "I2: phantom intent at LSN {lsn}: {it:?}");
                    assert!(ids.insert(it.ts_ns), "I2: intent id {} recovered twice", it.ts_ns);
                    if let Some((&other, _)) = m.acked.iter().find(|(_, a)| a.ts_ns == it.ts_ns) {
                        assert_eq!(other, lsn, "I2: intent acknowledged at {other} recovered at {lsn}");
                    }
                }
                Record::Outcome(o) => {
                    assert!(m.outcome_asked.contains_key(&o.intent_lsn), "I2: phantom outcome at LSN {lsn}: {o:?}");
                    outcomes.entry(o.intent_lsn).or_default().push(*o);
                }
                Record::Checkpoint(_) => {} // checked by the scan against the in-doubt set
            }
        }
        // The in-doubt set: every intent without a terminal outcome, each with its latest fill,
        // as this session's outcomes leave it: all acknowledged ones written, and at most the one
        // asked after them (a producer asks the next outcome of an intent only once the previous
        // one was acknowledged), never one that was not asked.
        let whole_session = first <= m.prev_next;
        let mut subjects: BTreeSet<Lsn> = m.prev_in_doubt.keys().chain(m.acked.keys()).chain(in_doubt_map.keys()).copied().collect();
        subjects.extend(s.records.range(m.prev_next.max(first)..).filter(|(_, r)| matches!(r, Record::Intent(_))).map(|(l, _)| *l));
        for lsn in subjects {
            let got = in_doubt_map.get(&lsn);
            let start = match m.prev_in_doubt.get(&lsn) {
                Some(d) => {
                    assert!(got.is_none_or(|g| g.0 == d.0), "in-doubt entry {lsn} changed its intent: {got:?} after {d:?}");
                    d.1
                }
                None => {
                    assert!(lsn >= m.prev_next, "intent {lsn}, resolved before the last recovery, is in doubt again: {got:?}");
                    let it = m.acked.get(&lsn).or(got.map(|g| &g.0)).or(match s.records.get(&lsn) {
                        Some(Record::Intent(it)) => Some(it),
                        _ => None,
                    });
                    let it = it.unwrap_or_else(|| panic!("new intent {lsn} is nowhere"));
                    assert_eq!(m.appended.get(&it.ts_ns), Some(it), "in-doubt entry {lsn} {it:?} was not appended");
                    if let Some(g) = got {
                        assert_eq!(&g.0, it, "in-doubt entry {lsn} is not the intent at {lsn}");
                    }
                    None
                }
            };
            let asked = m.outcome_asked.get(&lsn).map_or(&[][..], Vec::as_slice);
            let acked = m.outcome_acked.get(&lsn).map_or(0, Vec::len);
            let seen = outcomes.get(&lsn).map_or(&[][..], Vec::as_slice);
            // Written counts w that agree with the kept outcome records: they are asked[w - k..w]
            // (all w of them when nothing written this session was removed by retention).
            let ok = (acked..=(acked + 1).min(asked.len())).any(|w| {
                let consistent =
                    if whole_session || lsn >= first { seen == &asked[..w] } else { seen.len() <= w && seen == &asked[w - seen.len()..w] };
                consistent && state_after(start, &asked[..w]) == got.map(|g| g.1)
            });
            assert!(
                ok,
                "intent {lsn}: in doubt as {got:?}, with outcomes {seen:?} in the log; from {start:?}, asked {asked:?}, {acked} acknowledged"
            );
        }
    }

    /// Runs one session's workload on `wal` and ends it (the log is closed or dropped).
    pub fn session(&mut self, wal: Wal) -> End {
        self.stats.sessions += 1;
        let end = match self.rng.below(10) {
            0..=4 => End::PowerCut,
            5 => End::Fault,
            6 | 7 => End::ProcessCrash,
            _ => End::Close,
        };
        if std::env::var_os("SIM_VERBOSE").is_some() {
            eprintln!("session {}: end {end:?}, k {}, disk {:?}", self.stats.sessions, self.k, self.disk);
        }
        let producers = self.rng.range(1, 3) as usize;
        let plans: Vec<(u64, u64)> = (0..producers).map(|_| (self.rng.fork(), self.rng.range(5, 80))).collect();
        let planned_ops: u64 = plans.iter().map(|p| p.1).sum();
        let policy = match self.rng.below(4) {
            0 => CrashPolicy::default(),
            1 => CrashPolicy::tear_all(),
            2 => CrashPolicy { tear: TearShape::Prefix, ..CrashPolicy::default() },
            _ => CrashPolicy { garbage_per_mille: 500, ..CrashPolicy::tear_all() },
        };
        let cut_seed = self.rng.fork();
        match end {
            End::PowerCut => {
                let at = self.disk.stats().io_events + self.rng.range(1, 2 * planned_ops + 4);
                self.disk.power_cut_at_io_event(at, cut_seed, policy.clone());
            }
            End::Fault => {
                let st = self.disk.stats();
                let nth = st.writes + self.rng.range(1, planned_ops / 2 + 2);
                let f = match self.rng.below(4) {
                    0 => Fault::WriteError { nth, errno: libc::EIO },
                    1 => Fault::WriteError { nth, errno: libc::ENOSPC },
                    2 => Fault::FlushError { nth: st.flushes + (nth - st.writes), errno: libc::EIO },
                    _ => Fault::ShortWrite { nth, written: 0 },
                };
                self.disk.inject(f);
            }
            _ => {}
        }
        let in_doubt: Vec<Open> = self.model.prev_in_doubt.iter().map(|(l, d)| Open::of(*l, &d.0, d.1)).collect();
        let id_base = AtomicU64::new(self.next_id);
        let events: Vec<Vec<Event>> = std::thread::scope(|sc| {
            let handles: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(p, &(seed, ops))| {
                    let mine: Vec<Open> = in_doubt.iter().copied().filter(|o| o.lsn as usize % producers == p).collect();
                    let (wal, id_base) = (&wal, &id_base);
                    sc.spawn(move || producer(wal, seed, ops, mine, id_base))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("producer panicked")).collect()
        });
        self.next_id = id_base.load(Ordering::Relaxed);
        for e in events.into_iter().flatten() {
            self.model.apply(e);
        }
        self.stats.acked_intents += self.model.acked.len() as u64;
        self.stats.acked_groups += self.model.groups_acked;
        self.stats.acked_fills +=
            self.model.outcome_acked.values().flatten().filter(|(_, o)| matches!(o.status, Status::PartiallyFilled { .. })).count() as u64;
        let unfired = self.disk.armed_faults().len();
        self.disk.clear_faults();
        match end {
            End::PowerCut => {
                self.stats.power_cuts += 1;
                if self.disk.power_cut_armed() {
                    self.disk.power_cut_at_io_event(u64::MAX, 0, CrashPolicy::default());
                    self.disk.crash_with(&policy, cut_seed);
                }
                drop(wal);
            }
            End::Fault => {
                if unfired == 0 {
                    self.stats.faults += 1;
                } else {
                    self.stats.faults_unfired += 1;
                }
                drop(wal);
                if self.rng.chance(500) {
                    self.disk.crash_with(&policy, cut_seed);
                }
            }
            End::ProcessCrash => {
                self.stats.process_crashes += 1;
                drop(wal);
                if self.rng.chance(300) {
                    self.disk.crash_with(&policy, cut_seed);
                }
            }
            End::Close => {
                self.stats.closes += 1;
                wal.close().unwrap_or_else(|e| panic!("clean close failed: {e}"));
            }
        }
        // Disarm a cut that never fired.
        if self.disk.power_cut_armed() {
            self.disk.power_cut_at_io_event(u64::MAX, 0, CrashPolicy::default());
        }
        end
    }

    /// Flips a bit in an acknowledged intent's frame; returns where, whether the damage is provably
    /// not a torn tail, and what the log held before.
    pub fn rot(&mut self) -> Option<Rot> {
        let s = scan(&self.disk).ok()?;
        // Acknowledged: recovered by an earlier session, or acknowledged in this one.
        let acked: BTreeSet<Lsn> = self
            .model
            .known
            .keys()
            .chain(self.model.acked.keys())
            .copied()
            .chain(self.model.outcome_acked.values().flatten().map(|v| v.0))
            .collect();
        let candidates: Vec<Lsn> = s.frames.keys().copied().filter(|l| acked.contains(l)).collect();
        if candidates.is_empty() {
            return None;
        }
        let lsn = candidates[self.rng.below(candidates.len() as u64) as usize];
        let (file, offset, len) = s.frames[&lsn].clone();
        let img = self.disk.direct_image(&file).expect("file");
        let bs = batches(&img);
        let (bno, _, _) = *bs.iter().find(|(_, at, plen)| offset >= *at && offset < at + plen).expect("frame inside a batch");
        let seg_no = SegmentName::parse(&file).expect("segment name").segment_no;
        let later_data = s.state.segments.iter().any(|g| g.segment_no > seg_no && !matches!(g.end, tradewal_codec::SegmentEnd::Empty));
        let provable = later_data || bs.iter().any(|(n, _, _)| *n >= bno + self.k as u64);
        let byte = offset + self.rng.below(len as u64);
        assert!(self.disk.rot(&file, byte, self.rng.below(8) as u8));
        let before = (s.state.in_doubt.clone(), s.state.next_lsn, s.state.torn_tail.is_some());
        Some(Rot { lsn, provable, segment_no: seg_no, before })
    }
}

/// An intent a producer may report on: its LSN, quantity and latest cumulative fill.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// The intent's LSN.
    pub lsn: Lsn,
    /// The intent's quantity.
    pub qty: f64,
    /// Its latest partial fill's cumulative quantity (None: no fill yet).
    pub filled: Option<f64>,
}

impl Open {
    /// An in-doubt intent with its fill.
    pub fn of(lsn: Lsn, it: &TradeIntent, fill: Option<Fill>) -> Open {
        Open { lsn, qty: it.qty, filled: fill.map(|f| f.qty) }
    }
}

/// The next outcome a producer reports for `o`: a partial fill (cumulative, up by 1/8..7/8 of
/// what is left) two times in five, else a terminal status the rules allow (Rejected and Aborted
/// only before any fill); with a venue order id and a time half the time each.
fn next_outcome(rng: &mut Rng, o: &Open) -> Outcome {
    let filled = o.filled.unwrap_or(0.0);
    let status = if rng.chance(400) {
        Status::PartiallyFilled { qty: filled + (o.qty - filled) * rng.range(1, 7) as f64 / 8.0, avg_price: rng.below(3) as f64 * 0.25 }
    } else {
        match (rng.below(8), o.filled) {
            (0..=2, _) => Status::Filled { qty: o.qty, avg_price: if rng.chance(500) { 0.0 } else { 1.5 } },
            (3, _) => Status::Cancelled { filled_qty: filled },
            (4, None) => Status::Rejected { reason: rng.below(1 << 20) as u32 },
            (5, None) => Status::Aborted,
            (_, Some(_)) => Status::Cancelled { filled_qty: filled + (o.qty - filled) / 2.0 },
            _ => return Outcome::shorthand(o.lsn, if rng.chance(500) { OutcomeKind::Executed } else { OutcomeKind::Aborted }, o.qty),
        }
    };
    let venue_order_id = rng.chance(500).then(|| OrderId::new(&format!("V{}-{}", o.lsn, rng.below(1000))).expect("printable"));
    let ts_ns = if rng.chance(500) { 0 } else { 1 + rng.below(1 << 62) as i64 };
    Outcome { intent_lsn: o.lsn, status, venue_order_id, ts_ns }
}

/// Reports `o` through the shorthand it is (`mark_executed`, `mark_aborted`) or `Wal::report`.
fn ask(wal: &Wal, o: &Outcome, qty: f64) -> Result<tradewal::Ticket, WalError> {
    if *o == Outcome::shorthand(o.intent_lsn, OutcomeKind::Executed, qty) {
        wal.mark_executed(o.intent_lsn)
    } else if *o == Outcome::shorthand(o.intent_lsn, OutcomeKind::Aborted, qty) {
        wal.mark_aborted(o.intent_lsn)
    } else {
        wal.report(o)
    }
}

/// One producer thread: `ops` seeded operations (pipelined appends, groups of 2..=4 legs through
/// `append_group`, outcomes of its own acknowledged intents and of `to_resolve`: partial fills,
/// then a terminal status); stops at the first `Poisoned`/`Closed`. Some intents carry a client
/// order id and a tag. Returns what it observed, in order.
pub fn producer(wal: &Wal, seed: u64, ops: u64, mut to_resolve: Vec<Open>, ids: &AtomicU64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let mut ev = Vec::new();
    let mut mine: Vec<Open> = Vec::new();
    let wait = |t: tradewal::Ticket| -> Result<Lsn, WalError> {
        let mut t = t;
        match t.wait_timeout(HANG) {
            Some(r) => r,
            None => panic!("a ticket did not resolve within {HANG:?}: the engine hangs"),
        }
    };
    let mut op = 0;
    while op < ops {
        op += 1;
        let resolve = !(mine.is_empty() && to_resolve.is_empty()) && rng.chance(400);
        if resolve {
            let from_recovered = !to_resolve.is_empty() && (mine.is_empty() || rng.chance(500));
            let list = if from_recovered { &mut to_resolve } else { &mut mine };
            let i = rng.below(list.len() as u64) as usize;
            let o = next_outcome(&mut rng, &list[i]);
            ev.push(Event::OutcomeAsked(o));
            match ask(wal, &o, list[i].qty).and_then(wait) {
                Ok(olsn) => ev.push(Event::OutcomeAcked(o, olsn)),
                Err(WalError::Poisoned { .. } | WalError::Closed) => return ev,
                Err(e) => panic!("outcome {o:?} failed: {e}"),
            }
            if o.status.is_terminal() {
                list.swap_remove(i);
            } else {
                list[i].filled = Some(o.status.filled_qty());
            }
            continue;
        }
        let fresh = |rng: &mut Rng| {
            let mut it = intent(ids.fetch_add(1, Ordering::Relaxed), rng);
            if rng.chance(300) {
                it.cl_ord_id = Some(OrderId::new(&format!("C{}/{}", it.ts_ns, rng.below(1 << 40))).expect("printable"));
            }
            if rng.chance(300) {
                it.tag = Some(rng.below(1 << 32) as u32);
            }
            it
        };
        if rng.chance(250) {
            // A group of 2..=4 legs: one ticket for all.
            let legs: Vec<TradeIntent> = (0..rng.range(2, 4)).map(|_| fresh(&mut rng)).collect();
            let size = legs.len() as u16;
            let recorded: Vec<TradeIntent> =
                legs.iter().enumerate().map(|(j, l)| TradeIntent { group: Some(GroupLeg { index: j as u16, size }), ..*l }).collect();
            match wal.append_group(&legs) {
                Ok(t) => {
                    ev.extend(recorded.iter().map(|l| Event::Appended(*l)));
                    match wait(t) {
                        Ok(lsn) => {
                            for (j, l) in recorded.iter().enumerate() {
                                ev.push(Event::Acked(lsn + j as u64, *l));
                                mine.push(Open::of(lsn + j as u64, l, None));
                            }
                            ev.push(Event::GroupAcked);
                        }
                        Err(WalError::Poisoned { .. } | WalError::Closed) => return ev,
                        Err(e) => panic!("group ticket failed: {e}"),
                    }
                }
                Err(WalError::InDoubtLimit { .. }) => {}
                Err(WalError::Poisoned { .. } | WalError::Closed) => return ev,
                Err(e) => panic!("append_group failed: {e}"),
            }
            continue;
        }
        // Appends, pipelined.
        let group = if rng.chance(300) { rng.range(2, 8) } else { 1 };
        let mut tickets = Vec::new();
        let mut stop = false;
        for _ in 0..group {
            let it = fresh(&mut rng);
            match wal.append(&it) {
                Ok(t) => {
                    ev.push(Event::Appended(it));
                    tickets.push((t, it));
                }
                Err(WalError::InDoubtLimit { .. }) => break,
                Err(WalError::Poisoned { .. } | WalError::Closed) => {
                    stop = true;
                    break;
                }
                Err(e) => panic!("append failed: {e}"),
            }
        }
        for (t, it) in tickets {
            match wait(t) {
                Ok(lsn) => {
                    ev.push(Event::Acked(lsn, it));
                    mine.push(Open::of(lsn, &it, None));
                }
                Err(WalError::Poisoned { .. } | WalError::Closed) => stop = true,
                Err(e) => panic!("append ticket failed: {e}"),
            }
        }
        if stop {
            return ev;
        }
    }
    ev
}

/// One seed of the randomised simulation (panics on a violated invariant).
pub fn run_seed(seed: u64) -> Stats {
    let mut run = Run::new(seed);
    let sessions = run.rng.range(1, 3);
    let mut wal = run.reopen(None).expect("a fresh log opens");
    for s in 0..sessions {
        let last = s + 1 == sessions;
        let end = run.session(wal);
        let rot = if last && end != End::Close && run.rng.chance(250) { run.rot() } else { None };
        match rot {
            Some(r) => {
                if r.provable {
                    run.stats.rot_provable += 1;
                } else {
                    run.stats.rot_unprovable += 1;
                }
                assert!(run.reopen(Some(r)).is_none());
                run.stats.seeds += 1;
                run.stats.segments_recycled = run.disk.stats().recycles;
                return run.stats;
            }
            None => wal = run.reopen(None).expect("reopen"),
        }
    }
    wal.close().unwrap_or_else(|e| panic!("final close failed: {e}"));
    // The final session's checkpoint and everything before it scan clean.
    let s = scan(&run.disk).unwrap_or_else(|c| panic!("log corrupt after a clean close: {c}"));
    assert!(s.state.torn_tail.is_none(), "torn tail after a clean close");
    assert_eq!(s.state.in_doubt.iter().map(|d| (d.lsn, (d.intent, d.fill))).collect::<BTreeMap<_, _>>(), run.model.prev_in_doubt);
    run.stats.seeds += 1;
    run.stats.segments_recycled = run.disk.stats().recycles;
    run.stats
}

// ---------------------------------------------------------------------------------------------
// Fuzz input

/// A cursor over fuzz bytes. Every read succeeds: once the input is used up it reads zeros, so
/// any byte string is a valid program.
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    /// True once every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A value in `0..n` (`n > 0`) from one byte (`n <= 256`) or two.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        if n <= 256 {
            self.u8() as u64 % n
        } else {
            self.u16() as u64 % n
        }
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One bit's worth of choice.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
}

fn crash_policy(choice: u8) -> CrashPolicy {
    match choice % 4 {
        0 => CrashPolicy::default(),
        1 => CrashPolicy::tear_all(),
        2 => CrashPolicy { tear: TearShape::Prefix, ..CrashPolicy::default() },
        _ => CrashPolicy { garbage_per_mille: 500, ..CrashPolicy::tear_all() },
    }
}

// ---------------------------------------------------------------------------------------------
// Model-based fuzzing

/// Most operations one [`fuzz_model`] input runs.
pub const FUZZ_MODEL_OPS_MAX: usize = 48;
/// Most intents one [`fuzz_model`] input appends (bounds the time per input).
pub const FUZZ_MODEL_APPENDS_MAX: u64 = 1500;

/// What one [`fuzz_model`] input exercised (summed by the smoke test to show it is not vacuous).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ModelReport {
    /// Operations decoded.
    pub ops: u64,
    /// Reopens checked against the model.
    pub reopens: u64,
    /// Intents acknowledged.
    pub acked_intents: u64,
    /// Outcomes acknowledged.
    pub acked_outcomes: u64,
    /// `mark_*` of an LSN not in doubt, refused as it must be.
    pub not_in_doubt: u64,
    /// Injected faults (error countdowns) that fired.
    pub faults_fired: u64,
    /// Power cuts (armed ones that fired, and immediate ones).
    pub power_cuts: u64,
    /// Process crashes (the `Wal` dropped without close).
    pub process_crashes: u64,
    /// Clean closes that succeeded.
    pub closes: u64,
    /// Closes that reported the poisoned log.
    pub poisoned_closes: u64,
    /// Opens that failed with `WalError::Io` because an injected fault or a cut hit them, then
    /// succeeded when retried.
    pub open_retries: u64,
    /// Reopens that truncated a torn tail.
    pub torn_tails: u64,
    /// Reopens that found more than one segment.
    pub multi_segment: u64,
}

/// How the fuzz driver ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FuzzEnd {
    Close,
    Crash,
    PowerCut { live: bool, policy: u8, seed: u16 },
}

struct FuzzRun {
    run: Run,
    rep: ModelReport,
    appends: u64,
    cut_armed: bool,
}

impl FuzzRun {
    /// In-doubt intents (recovered or acknowledged) with no terminal outcome asked yet, with
    /// their latest fill.
    fn resolvable(&self) -> Vec<Open> {
        let m = &self.run.model;
        let mut v: Vec<Lsn> = m.prev_in_doubt.keys().chain(m.acked.keys()).copied().filter(|l| !m.terminal_asked(*l)).collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter()
            .map(|l| {
                let it = m.acked.get(&l).or(m.prev_in_doubt.get(&l).map(|d| &d.0)).expect("recovered or acknowledged");
                Open::of(l, it, m.fill_of(l))
            })
            .collect()
    }

    fn faults_armed(&self) -> usize {
        self.run.disk.armed_faults().len()
    }

    fn disarm_cut(&mut self) {
        if self.cut_armed {
            // Replaces the arming with one that never fires.
            self.run.disk.power_cut_at_io_event(u64::MAX, 0, CrashPolicy::default());
            self.cut_armed = false;
        }
    }

    /// Opens the log and checks it against the model. An open that fails with `WalError::Io`
    /// because an injected fault or an armed cut hit it is retried (faults cleared).
    fn reopen(&mut self) -> Wal {
        for attempt in 0..3 {
            let (faults, cuts) = (self.faults_armed(), self.run.disk.stats().power_cuts);
            let scanned = scan(&self.run.disk);
            let opened = Wal::open_on(self.run.disk.storage(), self.run.cfg.clone());
            let hit = self.faults_armed() < faults || self.run.disk.stats().power_cuts > cuts;
            if let Err(WalError::Io { .. }) = &opened {
                if hit && attempt < 2 {
                    self.rep.faults_fired += (faults - self.faults_armed()) as u64;
                    self.rep.open_retries += 1;
                    self.run.disk.clear_faults();
                    self.disarm_cut();
                    continue;
                }
            }
            let torn = self.run.stats.torn_tails;
            self.rep.acked_intents += self.run.model.acked.len() as u64;
            self.rep.acked_outcomes += self.run.model.outcome_acked.values().map(|v| v.len() as u64).sum::<u64>();
            let wal = self.run.judge(None, scanned, opened).expect("without rot, judge returns the open log");
            self.rep.reopens += 1;
            self.rep.torn_tails += self.run.stats.torn_tails - torn;
            if wal.recovered().segments.len() > 1 {
                self.rep.multi_segment += 1;
            }
            return wal;
        }
        unreachable!("the loop returns or retries at most twice")
    }

    /// Ends the session as `how`, then reopens and checks.
    fn end_session(&mut self, wal: Wal, how: FuzzEnd) -> Wal {
        let (faults, cuts) = (self.faults_armed(), self.run.disk.stats().power_cuts);
        match how {
            FuzzEnd::Close => match wal.close() {
                Ok(()) => self.rep.closes += 1,
                Err(WalError::Poisoned { .. }) => self.rep.poisoned_closes += 1,
                Err(e) => panic!("close failed with {e} (only Poisoned is allowed)"),
            },
            FuzzEnd::Crash => {
                self.rep.process_crashes += 1;
                drop(wal);
            }
            FuzzEnd::PowerCut { live, policy, seed } => {
                let policy = crash_policy(policy);
                self.disarm_cut();
                if live {
                    // The cut hits a running engine: writes in flight are pending at the cut.
                    self.run.disk.crash_with(&policy, seed as u64);
                    drop(wal);
                } else {
                    drop(wal);
                    self.run.disk.crash_with(&policy, seed as u64);
                }
            }
        }
        self.rep.faults_fired += faults.saturating_sub(self.faults_armed()) as u64;
        self.rep.power_cuts += self.run.disk.stats().power_cuts - cuts;
        self.disarm_cut();
        self.reopen()
    }

    /// Appends `n` intents from this thread, pipelined or one at a time.
    fn append(&mut self, wal: &Wal, n: u64, pipelined: bool, rng: &mut Rng) {
        let mut pending = Vec::new();
        for _ in 0..n {
            if self.appends >= FUZZ_MODEL_APPENDS_MAX {
                break;
            }
            self.appends += 1;
            let it = intent(self.run.next_id, rng);
            self.run.next_id += 1;
            match wal.append(&it) {
                Ok(t) => {
                    self.run.model.apply(Event::Appended(it));
                    pending.push((t, it));
                }
                Err(WalError::InDoubtLimit { .. } | WalError::Poisoned { .. } | WalError::Closed) => break,
                Err(e) => panic!("append failed with {e}"),
            }
            if !pipelined {
                self.settle(&mut pending);
            }
        }
        self.settle(&mut pending);
    }

    fn settle(&mut self, pending: &mut Vec<(tradewal::Ticket, TradeIntent)>) {
        for (mut t, it) in pending.drain(..) {
            match t.wait_timeout(HANG).unwrap_or_else(|| panic!("a ticket did not resolve within {HANG:?}: the engine hangs")) {
                Ok(lsn) => self.run.model.apply(Event::Acked(lsn, it)),
                Err(WalError::Poisoned { .. } | WalError::Closed) => {}
                Err(e) => panic!("append ticket failed with {e}"),
            }
        }
    }

    /// Resolves one in-doubt intent, or (`invalid`) asks for an outcome of an intent that has one.
    fn outcome(&mut self, wal: &Wal, pick: u64, executed: bool, invalid: bool) {
        let kind = if executed { OutcomeKind::Executed } else { OutcomeKind::Aborted };
        let wait = |r: Result<tradewal::Ticket, WalError>| {
            r.and_then(|mut t| t.wait_timeout(HANG).unwrap_or_else(|| panic!("an outcome ticket did not resolve within {HANG:?}")))
        };
        if invalid {
            let done: Vec<Lsn> = self.run.model.outcome_acked.keys().copied().filter(|l| self.run.model.terminal_asked(*l)).collect();
            let lsn = if done.is_empty() { 0 } else { done[pick as usize % done.len()] };
            match wait(wal.mark_aborted(lsn)) {
                Err(WalError::NotInDoubt { lsn: l }) => {
                    assert_eq!(l, lsn);
                    self.rep.not_in_doubt += 1;
                }
                Err(WalError::Poisoned { .. } | WalError::Closed) => {}
                other => panic!("mark_aborted({lsn}) of an intent not in doubt gave {other:?}"),
            }
            return;
        }
        let cands = self.resolvable();
        if cands.is_empty() {
            return;
        }
        let c = cands[pick as usize % cands.len()];
        // Aborted (never sent) is refused after a fill: such an intent gets Executed.
        let kind = if c.filled.is_some() { OutcomeKind::Executed } else { kind };
        let o = Outcome::shorthand(c.lsn, kind, c.qty);
        let lsn = c.lsn;
        self.run.model.apply(Event::OutcomeAsked(o));
        let r = match kind {
            OutcomeKind::Executed => wal.mark_executed(lsn),
            OutcomeKind::Aborted => wal.mark_aborted(lsn),
        };
        match wait(r) {
            Ok(olsn) => self.run.model.apply(Event::OutcomeAcked(o, olsn)),
            Err(WalError::Poisoned { .. } | WalError::Closed) => {}
            Err(e) => panic!("mark({lsn}) of an in-doubt intent failed with {e}"),
        }
    }

    /// One or two producer threads (the simulation's [`producer`]).
    fn threads(&mut self, wal: &Wal, producers: usize, ops: u64, seed: u64) {
        let to_resolve = self.resolvable();
        let id_base = AtomicU64::new(self.run.next_id);
        let events: Vec<Vec<Event>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..producers)
                .map(|p| {
                    let mine: Vec<Open> = to_resolve.iter().copied().filter(|o| o.lsn as usize % producers == p).collect();
                    let (wal, id_base) = (wal, &id_base);
                    sc.spawn(move || producer(wal, seed.wrapping_add(p as u64), ops, mine, id_base))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("producer panicked")).collect()
        });
        let next = id_base.load(Ordering::Relaxed);
        self.appends += next - self.run.next_id;
        self.run.next_id = next;
        for e in events.into_iter().flatten() {
            self.run.model.apply(e);
        }
    }
}

/// Retention policy number `n % 3`: keep all, delete, archive.
fn retention_of(n: u64) -> Retention {
    match n % 3 {
        0 => Retention::KeepAll,
        1 => Retention::Delete,
        _ => Retention::ArchiveTo(PathBuf::from("/sim-archive")),
    }
}

/// The configuration every simulated session uses (small segments and queues, no spinning).
fn sim_config(k: u32, durability: Durability, retention: Retention) -> WalConfig {
    WalConfig::new("/sim")
        .segment_bytes(SEGMENT_BYTES)
        .max_batch_bytes(MAX_BATCH_BYTES)
        .in_flight_batches(k)
        .durability(durability)
        .retention(retention)
        .queue_capacity(64)
        .max_in_doubt(MAX_IN_DOUBT)
        .writer_spin(Duration::ZERO)
        .unpinned_writer()
}

/// The model-based fuzz target: the bytes choose a configuration and then up to
/// [`FUZZ_MODEL_OPS_MAX`] operations on one log on a [`SimDisk`] (appends from this thread,
/// pipelined or not; one or two producer threads; outcomes, and outcomes of intents not in doubt;
/// an I/O-error countdown on batch writes, flushes or segment creation; a power cut armed a few
/// batch I/O events ahead; clean close, process crash, immediate power cut). After every session
/// end the log is reopened and checked against the model (I1 exact, I2, I3, the in-doubt set);
/// at the end it is closed cleanly, reopened, closed, and must scan clean. Panics on a violation.
pub fn fuzz_model(data: &[u8]) -> ModelReport {
    let mut b = Bytes::new(data);
    let c = b.u8();
    let k = 1 + (c % 3) as u32;
    let durability = if c & 4 == 0 { Durability::Dsync } else { Durability::LinkedFdatasync };
    let retention = retention_of(((c >> 3) % 3) as u64);
    let seed = b.u16() as u64;
    let cfg = sim_config(k, durability, retention);
    let run = Run { rng: Rng::new(seed), disk: SimDisk::new(seed), cfg, k, model: Model::default(), next_id: 1, stats: Stats::default() };
    let mut f = FuzzRun { run, rep: ModelReport::default(), appends: 0, cut_armed: false };
    let mut wal = f.reopen();
    let mut rng = Rng::new(seed ^ 0x1D);
    for _ in 0..FUZZ_MODEL_OPS_MAX {
        if b.is_empty() {
            break;
        }
        f.rep.ops += 1;
        match b.u8() % 12 {
            0..=2 => {
                let (n, pipelined) = (b.range(1, 16), b.bool());
                f.append(&wal, n, pipelined, &mut rng);
            }
            3 => {
                let (producers, ops, seed) = (b.range(1, 2) as usize, b.range(1, 40), b.u16() as u64);
                if f.appends < FUZZ_MODEL_APPENDS_MAX {
                    f.threads(&wal, producers, ops, seed);
                }
            }
            4 | 5 => {
                let (pick, executed, invalid) = (b.u16() as u64, b.bool(), b.u8() % 8 == 0);
                f.outcome(&wal, pick, executed, invalid);
            }
            6 => {
                // An I/O-error countdown: the Nth next write / flush / create fails.
                let (kind, n) = (b.u8() % 6, b.range(1, 16));
                let st = f.run.disk.stats();
                f.run.disk.inject(match kind {
                    0 => Fault::WriteError { nth: st.writes + n, errno: libc::EIO },
                    1 => Fault::WriteError { nth: st.writes + n, errno: libc::ENOSPC },
                    2 => Fault::FlushError { nth: st.flushes + n, errno: libc::EIO },
                    3 => Fault::ShortWrite { nth: st.writes + n, written: [0, 512, 2048][n as usize % 3] },
                    _ => Fault::CreateError { nth: st.creates + n, errno: libc::ENOSPC },
                });
            }
            7 => {
                let (n, policy, seed) = (b.range(1, 64), b.u8(), b.u16() as u64);
                let at = f.run.disk.stats().io_events + n;
                f.run.disk.power_cut_at_io_event(at, seed, crash_policy(policy));
                f.cut_armed = true;
            }
            8 => wal = f.end_session(wal, FuzzEnd::Close),
            9 | 10 => wal = f.end_session(wal, FuzzEnd::Crash),
            _ => {
                let how = FuzzEnd::PowerCut { live: b.bool(), policy: b.u8(), seed: b.u16() };
                wal = f.end_session(wal, how);
            }
        }
    }
    // Final: no more faults; a clean close, a reopen, a close; the log then scans clean.
    f.run.disk.clear_faults();
    f.disarm_cut();
    let wal = f.end_session(wal, FuzzEnd::Close);
    wal.close().unwrap_or_else(|e| panic!("final close failed: {e}"));
    let s = scan(&f.run.disk).unwrap_or_else(|c| panic!("log corrupt after a clean close: {c}"));
    assert!(s.state.torn_tail.is_none(), "torn tail after a clean close");
    let in_doubt: BTreeMap<Lsn, Doubt> = s.state.in_doubt.iter().map(|d| (d.lsn, (d.intent, d.fill))).collect();
    assert_eq!(in_doubt, f.run.model.prev_in_doubt, "in-doubt set changed across a clean close");
    f.rep
}

// ---------------------------------------------------------------------------------------------
// Directory recovery fuzzing

/// A directory image: (file name, contents).
pub type DirImage = Vec<(String, Vec<u8>)>;

fn dir_cfg() -> WalConfig {
    WalConfig::new("/sim")
        .segment_bytes(SEGMENT_BYTES)
        .max_batch_bytes(MAX_BATCH_BYTES)
        .in_flight_batches(2)
        .durability(Durability::Dsync)
        .max_in_doubt(2048)
        .parallel_batch_min_records(1)
        .writer_spin(Duration::ZERO)
        .unpinned_writer()
}

/// Template directories the recover_dir fuzzing starts from: `[0]` written by the engine on a
/// [`SimDisk`] (K = 2, 1 MiB segments: a first session of 270 one-record batches and outcomes
/// that rotates, closed; a second session crashed with records in it; so a full segment, a
/// partial one, the crashed session's segment and the spare prepared for it), `[1]` built with
/// the codec's `SegmentBuilder` (K = 2, three 1 MiB segments, a checkpoint opening the second,
/// the third an all-zero spare).
pub fn dir_templates() -> &'static [DirImage; 2] {
    static T: std::sync::OnceLock<[DirImage; 2]> = std::sync::OnceLock::new();
    T.get_or_init(|| [engine_template(), codec_template()])
}

fn engine_template() -> DirImage {
    let disk = SimDisk::new(0x7E3A);
    let mut rng = Rng::new(1);
    let wal = Wal::open_on(disk.storage(), dir_cfg()).expect("open a fresh simulated log");
    let mut id = 1;
    for i in 0..270u64 {
        let lsn = wal.append(&intent(id, &mut rng)).and_then(|t| t.wait()).expect("append");
        id += 1;
        if i % 3 != 0 {
            wal.mark_executed(lsn).and_then(|t| t.wait()).expect("mark");
        }
    }
    wal.close().expect("close");
    let wal = Wal::open_on(disk.storage(), dir_cfg()).expect("reopen");
    // One record per batch (each append waited for), so the images do not depend on thread timing.
    let lsns: Vec<Lsn> = (0..6)
        .map(|_| {
            let lsn = wal.append(&intent(id, &mut rng)).and_then(|t| t.wait()).expect("append");
            id += 1;
            lsn
        })
        .collect();
    wal.mark_aborted(lsns[0]).and_then(|t| t.wait()).expect("mark");
    // Wait (bounded) for the maintenance thread's spare, so the crash leaves one.
    for _ in 0..2000 {
        if wal.stats().spares_prepared > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(wal); // process crash
    let mut files: DirImage = disk
        .live_names()
        .into_iter()
        .filter(|n| SegmentName::parse(n).is_some())
        .map(|n| {
            let img = disk.direct_image(&n).expect("listed");
            (n, img)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "engine template has a rotated session and a crashed one: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    files.truncate(4);
    files
}

fn codec_template() -> DirImage {
    use tradewal_codec::build::{Item, SegmentBuilder};
    use tradewal_codec::{InDoubt, SegmentHeader};
    const SEG: u64 = SEGMENT_BYTES;
    const START: i64 = 1_767_225_600;
    let header = |segment_no: u64, base_lsn: Lsn| SegmentHeader {
        k: 2,
        log_id: 0xD1_2EC7,
        session_id: 3,
        session_start_unix_s: START,
        segment_no,
        epoch: 0xE0 + segment_no,
        base_lsn,
        segment_bytes: SEG,
        created_unix_ns: 1,
    };
    let mut rng = Rng::new(2);
    let mut it = |id: u64| intent(id, &mut rng);
    let (i1, i2, i3, i4, i5, i6) = (it(1), it(2), it(3), it(4), it(5), it(6));
    let mut s1 = SegmentBuilder::new(header(1, 1));
    // LSN 1 checkpoint (empty), 2 and 3 intents; 4 outcome of 2, 5 intent; 6, 7 intents.
    s1.batch(&[Item::Checkpoint(vec![], None), Item::Intent(i1), Item::Intent(i2)]).expect("fits");
    s1.batch(&[Item::Outcome(2, OutcomeKind::Executed), Item::Intent(i3)]).expect("fits");
    s1.batch(&[Item::Intent(i4), Item::Intent(i5)]).expect("fits");
    let in_doubt = vec![
        InDoubt { lsn: 3, intent: i2, fill: None },
        InDoubt { lsn: 5, intent: i3, fill: None },
        InDoubt { lsn: 6, intent: i4, fill: None },
        InDoubt { lsn: 7, intent: i5, fill: None },
    ];
    let mut s2 = SegmentBuilder::new(header(2, s1.next_lsn()));
    s2.batch(&[Item::Checkpoint(in_doubt, None), Item::Outcome(3, OutcomeKind::Aborted)]).expect("fits");
    s2.batch(&[Item::Intent(i6)]).expect("fits");
    s2.batch(&[Item::Outcome(5, OutcomeKind::Executed)]).expect("fits");
    let name = |no: u64| SegmentName { session_start_unix_s: START, segment_no: no }.file_name();
    vec![(name(1), s1.into_bytes()), (name(2), s2.into_bytes()), (name(3), vec![0u8; SEG as usize])]
}

/// What one [`fuzz_recover_dir`] input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DirReport {
    /// Edits applied.
    pub edits: u64,
    /// The directory opened.
    pub opened: bool,
    /// It opened after truncating a torn tail.
    pub torn_tail: bool,
    /// Recovery refused with `WalError::Corrupt`.
    pub corrupt: bool,
    /// A power cut hit a first recovery; the second recovery agreed with an uninterrupted one.
    pub cut_during_recovery: bool,
}

/// Where a segment file's data ends (past its last non-zero byte, rounded up to a block).
fn used_len(img: &[u8]) -> usize {
    img.iter().rposition(|&b| b != 0).map_or(0, |p| (p / BLOCK_BYTES + 1) * BLOCK_BYTES).min(img.len())
}

/// An offset in `img`: three times in four inside its data, else anywhere.
fn pick_offset(b: &mut Bytes<'_>, img: &[u8]) -> usize {
    if img.is_empty() {
        return 0;
    }
    let used = used_len(img).max(1);
    let at = if b.u8() % 4 != 0 { b.u32() as usize % used } else { b.u32() as usize % img.len() };
    at.min(img.len() - 1)
}

/// Applies one edit chosen by the bytes to `files`.
fn edit_dir(b: &mut Bytes<'_>, files: &mut DirImage) {
    let op = b.u8() % 14;
    if files.is_empty() {
        return;
    }
    let i = b.below(files.len() as u64) as usize;
    let j = b.below(files.len() as u64) as usize;
    match op {
        0 | 1 => {
            let at = pick_offset(b, &files[i].1);
            let bit = b.u8() % 8;
            if let Some(x) = files[i].1.get_mut(at) {
                *x ^= 1 << bit;
            }
        }
        2 => {
            let at = pick_offset(b, &files[i].1);
            let (n, v) = (b.range(1, 8) as usize, b.u8());
            let img = &mut files[i].1;
            let end = (at + n).min(img.len());
            img[at..end].fill(v);
        }
        3 => {
            // Zero (or fill) an aligned sector or block.
            let at = pick_offset(b, &files[i].1);
            let unit = if b.bool() { SECTOR_BYTES } else { BLOCK_BYTES };
            let v = if b.u8() % 4 == 0 { 0xA5 } else { 0 };
            let img = &mut files[i].1;
            let lo = at / unit * unit;
            let hi = (lo + unit).min(img.len());
            img[lo..hi].fill(v);
        }
        4 => {
            // Truncate: at a sector, a block, or any byte.
            let at = pick_offset(b, &files[i].1);
            let at = match b.u8() % 3 {
                0 => at / SECTOR_BYTES * SECTOR_BYTES,
                1 => at / BLOCK_BYTES * BLOCK_BYTES,
                _ => at,
            };
            files[i].1.truncate(at);
        }
        5 => {
            // Splice a sector or block of file j (or of i itself) over file i.
            let unit = if b.bool() { SECTOR_BYTES } else { BLOCK_BYTES };
            let from = pick_offset(b, &files[j].1) / unit * unit;
            let to = pick_offset(b, &files[i].1) / unit * unit;
            let src: Vec<u8> = files[j].1.get(from..(from + unit).min(files[j].1.len())).unwrap_or(&[]).to_vec();
            let dst = &mut files[i].1;
            let n = src.len().min(dst.len().saturating_sub(to));
            dst[to..to + n].copy_from_slice(&src[..n]);
        }
        6 => {
            files.remove(i);
        }
        7 => {
            // Swap two files' contents (names stay).
            if i != j {
                let (a, c) = (files[i].1.clone(), files[j].1.clone());
                files[i].1 = c;
                files[j].1 = a;
            }
        }
        8 => {
            // Rename to another segment number, maybe another session start.
            let Some(mut n) = SegmentName::parse(&files[i].0) else { return };
            n.segment_no = b.below(7);
            if b.u8() % 4 == 0 {
                n.session_start_unix_s += 1;
            }
            files[i].0 = n.file_name();
        }
        9 => {
            // A leftover of an interrupted spare creation.
            let name = format!("{}.tmp", files[i].0);
            let img = if b.bool() { files[j].1.clone() } else { vec![0u8; used_len(&files[j].1)] };
            files.push((name, img));
        }
        10 => {
            const JUNK: [&str; 6] =
                ["LOCK", "junk", "x.tmp", "wal_.log", "wal_20261301_000000_000001.log", "WAL_20260101_000000_000001.log"];
            let name = JUNK[b.below(JUNK.len() as u64) as usize].to_string();
            let n = b.below(64) as usize;
            files.retain(|f| f.0 != name);
            files.push((name, (0..n).map(|_| b.u8()).collect()));
        }
        11 => {
            // A copy of a file under another number (a stale or duplicated segment).
            let Some(mut n) = SegmentName::parse(&files[i].0) else { return };
            n.segment_no = b.below(7);
            let img = files[j].1.clone();
            let name = n.file_name();
            files.retain(|f| f.0 != name);
            files.push((name, img));
        }
        12 => {
            // Extend with zeros or garbage.
            let n = b.range(1, 8) as usize * SECTOR_BYTES;
            let v = if b.bool() { 0 } else { b.u8() };
            files[i].1.extend(std::iter::repeat_n(v, n));
        }
        _ => {
            // Drop a trailing file (the log's newest segment vanishes).
            files.pop();
        }
    }
}

/// What recovery must answer for the directory on `disk`: the scan, or the corruption
/// (segment, offset) it must refuse with.
fn dir_oracle(disk: &SimDisk) -> Result<Scan, (u64, u64)> {
    let mut nos: Vec<u64> = disk.live_names().iter().filter_map(|n| SegmentName::parse(n)).map(|s| s.segment_no).collect();
    nos.sort_unstable();
    if let Some(w) = nos.windows(2).find(|w| w[0] == w[1]) {
        return Err((w[1], 0));
    }
    scan(disk).map_err(|c| (c.segment, c.offset))
}

/// Checks an open log's recovery against the oracle's scan (same in-doubt set, next LSN, torn
/// tail; every in-doubt intent still present is that intent; I3 on the records).
fn check_recovered(w: &Wal, s: &Scan, ctx: &str) {
    let rec = w.recovered();
    assert_eq!(rec.in_doubt, s.state.in_doubt, "in-doubt set differs from the scan; {ctx}");
    assert_eq!(rec.next_lsn, s.state.next_lsn, "next LSN differs from the scan; {ctx}");
    assert_eq!(rec.torn_tail.is_some(), s.state.torn_tail.is_some(), "torn tail differs from the scan; {ctx}");
    let first = s.state.first_lsn.unwrap_or(s.state.next_lsn);
    assert!(s.records.keys().copied().eq(first..s.state.next_lsn), "I3: recovered LSNs not contiguous; {ctx}");
    assert!(rec.in_doubt.windows(2).all(|p| p[0].lsn < p[1].lsn), "in-doubt set in LSN order; {ctx}");
    for d in &rec.in_doubt {
        assert!(d.lsn < rec.next_lsn, "in-doubt LSN {} not below the next LSN; {ctx}", d.lsn);
        if d.lsn >= first {
            assert_eq!(s.records.get(&d.lsn), Some(&Record::Intent(d.intent)), "in-doubt entry {} is not that intent; {ctx}", d.lsn);
        }
    }
}

/// After a first recovery that answered `first` (`Ok`: the in-doubt set and next LSN, and the
/// records it kept; `Err`: the corruption), a second open of `disk` must give the same answer
/// (I5): the same in-doubt set, every kept record unchanged, no torn tail (`interrupted`: a power
/// cut may have stopped the first repair or the new session's first write, so a torn tail at or
/// after the first answer's next LSN may be found again); or the same refusal.
/// A first recovery's answer: (in-doubt set, next LSN, records) or the refusal's (segment, offset).
type FirstAnswer = Result<(Vec<tradewal::InDoubt>, Lsn, BTreeMap<Lsn, Record>), (u64, u64)>;

fn check_again(disk: &SimDisk, first: &FirstAnswer, interrupted: bool, ctx: &str) {
    let s2 = dir_oracle(disk);
    let w2 = Wal::open_on(disk.storage(), dir_cfg());
    match (first, w2, s2) {
        (Ok((in_doubt, next, records)), Ok(w2), Ok(s2)) => {
            check_recovered(&w2, &s2, ctx);
            let r2 = w2.recovered();
            assert_eq!(&r2.in_doubt, in_doubt, "I5: a second recovery changed the in-doubt set; {ctx}");
            assert!(r2.next_lsn >= *next, "I5: a second recovery lost records (next LSN {} after {next}): {r2:?}; {ctx}", r2.next_lsn);
            match &r2.torn_tail {
                None => {}
                // A torn first write (offset 0) has no known LSN (0).
                Some(t) if interrupted => assert!(
                    t.lsn >= *next || (t.offset == 0 && t.lsn == 0),
                    "I5: torn tail {t:?} before the first recovery's next LSN {next}; {ctx}"
                ),
                Some(t) => panic!("I5: the repaired log tore again ({t:?}); {ctx}"),
            }
            for (lsn, r) in records.range(s2.state.first_lsn.unwrap_or(1)..) {
                assert_eq!(s2.records.get(lsn), Some(r), "I5: record {lsn} changed by a second recovery; {ctx}");
            }
            w2.close().unwrap_or_else(|e| panic!("close after a second recovery: {e}; {ctx}"));
        }
        (Err((seg, off)), Err(WalError::Corrupt { segment, offset, .. }), _) => {
            assert_eq!((segment, offset), (*seg, *off), "I5: a second recovery refused elsewhere; {ctx}");
        }
        (first, w2, _) => panic!("I5: a second recovery answered {:?} after {first:?}; {ctx}", w2.map(|w| w.recovered().clone())),
    }
}

/// The recover_dir fuzz target: the bytes pick a template directory ([`dir_templates`]) and up to
/// 16 edits (bit flips, byte writes, zeroed or filled sectors and blocks, truncations, spliced
/// sectors, dropped, swapped, renamed and duplicated files, `*.tmp` leftovers, junk names,
/// extensions), put the result on a [`SimDisk`] and open it with `Wal::open_on`. Recovery must
/// not panic and must answer what the codec's scan of the same files says: an open log (same
/// in-doubt set and next LSN, LSNs contiguous, I3) or `WalError::Corrupt` at the scan's segment
/// and offset. A second open after a process crash right after the first gives the same answer,
/// and so does an open after a power cut at a chosen operation inside the first recovery (I5).
pub fn fuzz_recover_dir(data: &[u8]) -> DirReport {
    let mut b = Bytes::new(data);
    let t = &dir_templates()[b.u8() as usize % 2];
    let mut files = t.clone();
    let mut rep = DirReport::default();
    let edits = b.range(0, 16);
    for _ in 0..edits {
        if b.is_empty() {
            break;
        }
        edit_dir(&mut b, &mut files);
        rep.edits += 1;
    }
    let seed = b.u16() as u64;
    let disk = SimDisk::new(seed);
    for (n, img) in &files {
        disk.put_file(n, img.clone());
    }
    let names: Vec<&String> = files.iter().map(|f| &f.0).collect();
    let ctx = format!("files {names:?}, {} edits", rep.edits);
    let cut_disk = disk.fork();
    let expected = dir_oracle(&disk);
    let opened = Wal::open_on(disk.storage(), dir_cfg());
    let first = match (&expected, opened) {
        (Ok(s), Ok(w)) => {
            check_recovered(&w, s, &ctx);
            rep.opened = true;
            rep.torn_tail = w.recovered().torn_tail.is_some();
            if std::env::var_os("FUZZ_VERBOSE").is_some() {
                eprintln!("first recovery: {:?}; scan: {:?}", w.recovered(), s.state);
            }
            let r = w.recovered();
            let ans = (r.in_doubt.clone(), r.next_lsn, s.records.clone());
            drop(w); // a process crash right after recovery
            Ok(ans)
        }
        // Recovery also refuses a segment file whose length is not a segment's (a file changed
        // outside tradewal), which the codec's scan alone does not judge.
        (_, Err(WalError::Corrupt { segment, offset, file, reason, .. }))
            if matches!(&reason, tradewal::CorruptReason::Log(r) if r.starts_with("file is ")
                && disk.live_image(&file).is_some_and(|img| r.starts_with(&format!("file is {} bytes", img.len())))) =>
        {
            rep.corrupt = true;
            Err((segment, offset))
        }
        (Err((seg, off)), Err(WalError::Corrupt { segment, offset, file, reason, .. })) => {
            assert_eq!((segment, offset), (*seg, *off), "Corrupt (segment, offset) differs from the scan's; {file} {reason}; {ctx}");
            assert!(file.is_empty() || disk.live_names().contains(&file), "Corrupt names a file not in the directory: {file}; {ctx}");
            rep.corrupt = true;
            Err((*seg, *off))
        }
        (e, o) => {
            panic!("recovery answered {:?} where the scan says {:?}; {ctx}", o.map(|w| w.recovered().clone()), e.as_ref().map(|s| &s.state))
        }
    };
    check_again(&disk, &first, false, &ctx);
    // A power cut inside a first recovery, then recovery again: the same answer (I5).
    let at = cut_disk.stats().ops + b.range(1, 24);
    cut_disk.power_cut_at_op(at, seed, crash_policy(b.u8()));
    let interrupted = Wal::open_on(cut_disk.storage(), dir_cfg());
    drop(interrupted); // Ok (the cut may come later, in the writer) or an error: either way
    let fired = cut_disk.stats().power_cuts > 0;
    if !fired {
        cut_disk.power_cut_at_op(u64::MAX, 0, CrashPolicy::default());
        cut_disk.crash(seed);
    }
    cut_disk.power_cut_at_op(u64::MAX, 0, CrashPolicy::default());
    check_again(&cut_disk, &first, true, &format!("after a power cut at op {at} of a first recovery; {ctx}"));
    rep.cut_during_recovery = fired;
    rep
}

//! Whole-log scan: feeds segments in number order, checks continuity across them (I3), applies the
//! torn-tail rule across segment boundaries (I4), checks checkpoints and computes the in-doubt set.
//! Pure: the engine does the I/O (fsync, O_DIRECT reads) and hands the bytes in.
//!
//! Decision table, per segment, given what came before (`torn` = an earlier segment ended torn):
//!
//! | segment ends | earlier torn? | decision |
//! |---|---|---|
//! | Empty | any | a preallocated spare: skip |
//! | Clean / TornTail / Corrupt | yes | corrupt at the earlier torn place: a later segment holds data |
//! | Corrupt | no | corrupt |
//! | Clean | no | keep all records |
//! | TornTail | no | keep records before it; remember it (it must be the log's end) |
//!
//! plus: segment numbers contiguous (a gap is a missing segment), one log id, each data segment's
//! base LSN equal to the LSN after the previous data segment, a checkpoint at the start of every
//! data segment equal to the in-doubt set at that point (or seeding it when older segments were
//! removed by retention), and every outcome naming an in-doubt intent.

use crate::decode::{CorruptReason, Corruption, Fault, Frame, SegmentDecoder, SegmentEnd};
use crate::format::{Lsn, SegmentHeader};
use crate::intent::TradeIntent;
use crate::record::{Checkpoint, Fill, InDoubt, Outcome, Record, Status, TsRange};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Counts of records by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Intent records.
    pub intents: u64,
    /// Outcome records marking an intent executed (Filled).
    pub executed: u64,
    /// Outcome records marking an intent aborted (never sent).
    pub aborted: u64,
    /// Checkpoint records (parts).
    pub checkpoints: u64,
    /// Outcome records reporting a partial fill.
    pub partially_filled: u64,
    /// Outcome records reporting a rejection.
    pub rejected: u64,
    /// Outcome records reporting a cancel.
    pub cancelled: u64,
}

impl RecordCounts {
    /// All records.
    pub fn total(&self) -> u64 {
        self.intents + self.outcomes() + self.checkpoints
    }

    /// All outcome records.
    pub fn outcomes(&self) -> u64 {
        self.executed + self.aborted + self.partially_filled + self.rejected + self.cancelled
    }

    fn add(&mut self, o: &RecordCounts) {
        self.intents += o.intents;
        self.executed += o.executed;
        self.aborted += o.aborted;
        self.checkpoints += o.checkpoints;
        self.partially_filled += o.partially_filled;
        self.rejected += o.rejected;
        self.cancelled += o.cancelled;
    }

    fn count_outcome(&mut self, s: &Status) {
        *match s {
            Status::Filled { .. } => &mut self.executed,
            Status::PartiallyFilled { .. } => &mut self.partially_filled,
            Status::Rejected { .. } => &mut self.rejected,
            Status::Cancelled { .. } => &mut self.cancelled,
            Status::Aborted => &mut self.aborted,
        } += 1;
    }
}

/// What the scan found in one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSummary {
    /// Segment number (from the file name).
    pub segment_no: u64,
    /// The header, when valid.
    pub header: Option<SegmentHeader>,
    /// LSN of the first record kept from this segment.
    pub first_lsn: Option<Lsn>,
    /// LSN of the last record kept from this segment.
    pub last_lsn: Option<Lsn>,
    /// Records kept, by kind.
    pub counts: RecordCounts,
    /// How the segment ends (never `Corrupt`: corruption stops the scan).
    pub end: SegmentEnd,
    /// Format version of the segment (from its header; the codec's own for a spare).
    pub version: u32,
    /// The intents kept from this segment by time (computed by the scan).
    pub ts_range: TsRange,
    /// The previous segment's time range as recorded in this segment's checkpoint (format 2),
    /// checked against the scan's own when that segment was scanned.
    pub prev_range: Option<TsRange>,
}

/// A torn tail found at the end of the log: everything from `at` on in `segment` was never
/// acknowledged and may be truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Segment number.
    pub segment: u64,
    /// Offset of the torn region (0: the segment's first write, header included).
    pub at: u64,
    /// First LSN that was not recovered.
    pub lsn: Lsn,
    /// What was found there.
    pub fault: Fault,
}

/// The result of a successful scan.
#[derive(Debug, Clone, PartialEq)]
pub struct LogState {
    /// Every segment fed, in order.
    pub segments: Vec<SegmentSummary>,
    /// LSN of the first record kept (None for an empty log).
    pub first_lsn: Option<Lsn>,
    /// LSN the next record will get.
    pub next_lsn: Lsn,
    /// Number for the next new segment (above every number seen).
    pub next_segment_no: u64,
    /// The log's id, when any data segment exists.
    pub log_id: Option<u64>,
    /// Intents with no outcome, in LSN order.
    pub in_doubt: Vec<InDoubt>,
    /// The torn tail, if the log ended in one.
    pub torn_tail: Option<TornTail>,
    /// Records kept, by kind.
    pub counts: RecordCounts,
}

#[derive(Debug)]
enum CkptPhase {
    /// Expecting part `next` of `parts` (`parts == 0`: expecting part 0 of any count).
    Expect {
        next: u32,
        parts: u32,
        cursor: Lsn,
        matched: usize,
    },
    Done,
}

/// Hasher for LSN keys: they are distinct integers, mostly sequential; a multiplicative mix is
/// enough and much cheaper than SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub struct LsnHasher(u64);

impl Hasher for LsnHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What one segment's records add up to, while it is scanned.
#[derive(Debug, Default)]
struct SegmentRecords {
    counts: RecordCounts,
    first: Option<Lsn>,
    last: Option<Lsn>,
    ts_range: TsRange,
    prev_range: Option<TsRange>,
    /// A group being read: (LSN of leg 0, size, legs seen, batch of leg 0).
    open_group: Option<(Lsn, u16, u16, u64)>,
}

impl SegmentRecords {
    /// Groups: legs `0..size` of one size on consecutive records of one batch, nothing in between.
    fn track_group(&mut self, lsn: Lsn, batch: u64, i: &TradeIntent) -> Result<(), String> {
        match (self.open_group, i.group) {
            (None, None) => Ok(()),
            (None, Some(g)) if g.index == 0 => {
                self.open_group = (g.size > 1).then_some((lsn, g.size, 1, batch));
                Ok(())
            }
            (Some((first, size, seen, b)), Some(g))
                if g.size == size && g.index == seen && lsn == first + u64::from(seen) && batch == b =>
            {
                self.open_group = (seen + 1 < size).then_some((first, size, seen + 1, b));
                Ok(())
            }
            (Some((first, size, seen, _)), _) => {
                Err(format!("group at LSN {first} cut short after {seen} of {size} legs (a group is one batch)"))
            }
            (None, Some(g)) => Err(format!("group leg {} of {} without its earlier legs", g.index, g.size)),
        }
    }
}

/// Feeds segments one at a time (so a long log never has to sit in memory at once).
#[derive(Debug, Default)]
pub struct LogScanner {
    segments: Vec<SegmentSummary>,
    prev_segment: Option<u64>,
    log_id: Option<u64>,
    next_lsn: Option<Lsn>,
    first_lsn: Option<Lsn>,
    in_doubt: HashMap<Lsn, (TradeIntent, Option<Fill>), BuildHasherDefault<LsnHasher>>,
    seeded: bool,
    /// The last data segment scanned and its intents by time (to check the next checkpoint's record of it).
    last_range: Option<(u64, TsRange)>,
    /// Format version of the last data segment.
    version: Option<u32>,
    torn: Option<TornTail>,
    counts: RecordCounts,
}

impl LogScanner {
    /// A scanner for an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans one segment image. `segment_no` comes from the file name; segments must be fed in
    /// increasing number. `visit` sees every record kept, in LSN order. The steps follow the
    /// module's decision table: order, spare, earlier tear, header, records, end.
    pub fn push_segment(
        &mut self,
        segment_no: u64,
        bytes: &[u8],
        mut visit: impl FnMut(&Frame<'_>, &Record),
    ) -> Result<&SegmentSummary, Corruption> {
        self.check_order(segment_no)?;
        let mut dec = SegmentDecoder::new(bytes, Some(segment_no));
        if matches!(dec.end(), Some(SegmentEnd::Empty)) {
            let summary = SegmentSummary {
                segment_no,
                header: None,
                first_lsn: None,
                last_lsn: None,
                counts: RecordCounts::default(),
                end: SegmentEnd::Empty,
                version: dec.version(),
                ts_range: TsRange::default(),
                prev_range: None,
            };
            return Ok(self.push_summary(summary));
        }
        self.check_no_earlier_tear(segment_no)?;
        self.check_header(segment_no, dec.header(), dec.version())?;
        let mut seg = SegmentRecords::default();
        self.apply_records(segment_no, &mut dec, &mut visit, &mut seg)?;
        let SegmentRecords { counts, first, last, ts_range, prev_range, .. } = seg;
        if first.is_some() {
            // Seeding from the first checkpoint kept happens once, even if it was torn midway.
            self.seeded = true;
        }
        let end = dec.end().cloned().expect("iteration ended");
        self.settle_end(segment_no, &end)?;
        if let (Some(f), Some(h)) = (first, dec.header()) {
            debug_assert_eq!(f, h.base_lsn);
        }
        self.counts.add(&counts);
        if first.is_some() {
            self.last_range = Some((segment_no, ts_range));
        }
        let version = dec.version();
        Ok(self.push_summary(SegmentSummary {
            segment_no,
            header: dec.header().copied(),
            first_lsn: first,
            last_lsn: last,
            counts,
            end,
            version,
            ts_range,
            prev_range,
        }))
    }

    fn push_summary(&mut self, summary: SegmentSummary) -> &SegmentSummary {
        self.segments.push(summary);
        self.segments.last().expect("pushed")
    }

    fn corruption(&self, segment: u64, offset: u64, reason: CorruptReason) -> Corruption {
        Corruption { segment, offset, expected_lsn: self.next_lsn.unwrap_or(0), reason }
    }

    /// Order: segment numbers strictly increasing and contiguous (a gap is a missing segment).
    fn check_order(&mut self, segment_no: u64) -> Result<(), Corruption> {
        if let Some(prev) = self.prev_segment {
            if segment_no <= prev {
                return Err(self.corruption(segment_no, 0, CorruptReason::DuplicateSegment));
            }
            if segment_no != prev + 1 {
                return Err(self.corruption(prev + 1, 0, CorruptReason::MissingSegment { expected: prev + 1 }));
            }
        }
        self.prev_segment = Some(segment_no);
        Ok(())
    }

    /// Earlier tear: a torn segment must be the log's end, so data after it is corruption there.
    fn check_no_earlier_tear(&self, segment_no: u64) -> Result<(), Corruption> {
        match &self.torn {
            Some(t) => Err(Corruption {
                segment: t.segment,
                offset: t.at,
                expected_lsn: t.lsn,
                reason: CorruptReason::TornBeforeLaterData { fault: t.fault.clone(), later_segment: segment_no },
            }),
            None => Ok(()),
        }
    }

    /// Header: one log id, a base LSN equal to the LSN after the previous data segment, and a
    /// format version that never goes back (a log is format 1 segments, then format 2 ones).
    fn check_header(&mut self, segment_no: u64, header: Option<&SegmentHeader>, version: u32) -> Result<(), Corruption> {
        let Some(h) = header else { return Ok(()) };
        if version < *self.version.get_or_insert(version) {
            return Err(self.corruption(
                segment_no,
                0,
                CorruptReason::Log(format!("a format {version} segment after a format {} one", self.version.unwrap_or(0))),
            ));
        }
        self.version = Some(version);
        if *self.log_id.get_or_insert(h.log_id) != h.log_id {
            return Err(self.corruption(segment_no, 0, CorruptReason::ForeignLog));
        }
        match self.next_lsn {
            Some(n) if n != h.base_lsn => return Err(self.corruption(segment_no, 0, CorruptReason::LsnGap { found: h.base_lsn })),
            _ => {}
        }
        self.next_lsn = Some(h.base_lsn);
        Ok(())
    }

    /// Records: a complete checkpoint first, then intents (groups whole) and outcomes, each
    /// applied to the in-doubt set under the log's rules. Fills `seg` with the segment's counts,
    /// first and last LSN and time ranges.
    fn apply_records(
        &mut self,
        segment_no: u64,
        dec: &mut SegmentDecoder<'_>,
        visit: &mut impl FnMut(&Frame<'_>, &Record),
        seg: &mut SegmentRecords,
    ) -> Result<(), Corruption> {
        let mut phase = CkptPhase::Expect { next: 0, parts: 0, cursor: 0, matched: 0 };
        let seeding = !self.seeded;
        let mut last_offset = 0;
        while let Some((frame, record)) = dec.next_record() {
            let sem = |msg: String| Corruption {
                segment: segment_no,
                offset: frame.offset,
                expected_lsn: frame.lsn,
                reason: CorruptReason::Semantics(msg),
            };
            last_offset = frame.offset;
            if let Some(g) = seg.open_group.filter(|_| !matches!(record, Record::Intent(_))) {
                return Err(sem(format!("group at LSN {} cut short after {} of {} legs (a group is one batch)", g.0, g.2, g.1)));
            }
            match (&record, &phase) {
                (Record::Checkpoint(c), CkptPhase::Expect { .. }) => {
                    if c.part == 0 {
                        seg.prev_range = c.prev_range;
                        self.check_prev_range(segment_no, c).map_err(sem)?;
                    }
                    self.apply_checkpoint_part(c, frame.lsn, seeding, frame.version, &mut phase).map_err(sem)?;
                    seg.counts.checkpoints += 1;
                }
                (Record::Checkpoint(_), CkptPhase::Done) => return Err(sem("checkpoint after the start of a segment".into())),
                (_, CkptPhase::Expect { .. }) => return Err(sem("segment does not start with a complete checkpoint".into())),
                (Record::Intent(i), CkptPhase::Done) => {
                    seg.track_group(frame.lsn, frame.batch, i).map_err(sem)?;
                    self.in_doubt.insert(frame.lsn, (*i, None));
                    seg.counts.intents += 1;
                    seg.ts_range.add(i.ts_ns);
                }
                (Record::Outcome(o), CkptPhase::Done) => {
                    self.apply_outcome(o, frame.lsn, frame.version == 1).map_err(sem)?;
                    seg.counts.count_outcome(&o.status);
                }
            }
            seg.first.get_or_insert(frame.lsn);
            seg.last = Some(frame.lsn);
            self.first_lsn.get_or_insert(frame.lsn);
            self.next_lsn = Some(frame.lsn + 1);
            visit(&frame, &record);
        }
        if let Some(g) = seg.open_group {
            // A group is written in one batch: a segment (or a log) cannot end inside one.
            return Err(Corruption {
                segment: segment_no,
                offset: last_offset,
                expected_lsn: self.next_lsn.unwrap_or(0),
                reason: CorruptReason::Semantics(format!(
                    "group at LSN {} cut short after {} of {} legs (a group is one batch)",
                    g.0, g.2, g.1
                )),
            });
        }
        Ok(())
    }

    /// An outcome at `lsn`: it names an intent in doubt (below it), and meets the rules against
    /// that intent's state; a terminal status takes the intent out of the set, a partial fill
    /// updates it.
    fn apply_outcome(&mut self, o: &Outcome, lsn: Lsn, legacy: bool) -> Result<(), String> {
        let entry = (o.intent_lsn < lsn).then(|| self.in_doubt.get_mut(&o.intent_lsn)).flatten();
        let Some((intent, fill)) = entry else {
            return Err(format!("outcome for LSN {} which is not in doubt", o.intent_lsn));
        };
        o.check_against(intent, fill.as_ref(), legacy).map_err(|e| e.to_string())?;
        if o.status.is_terminal() {
            self.in_doubt.remove(&o.intent_lsn);
        } else {
            *fill = Fill::of(o);
        }
        Ok(())
    }

    /// Part 0 of a checkpoint may record the previous segment's intents by time: when this scan
    /// read that segment, the record must match what it found there.
    fn check_prev_range(&self, segment_no: u64, c: &Checkpoint) -> Result<(), String> {
        if segment_no == 1 && c.prev_range.is_some() {
            return Err("segment 1 records a time range of a segment before it".into());
        }
        match (c.prev_range, self.last_range) {
            (Some(recorded), Some((prev, found))) if prev + 1 == segment_no && recorded != found => {
                Err(format!("checkpoint records {recorded:?} for segment {prev}, which holds {found:?}"))
            }
            _ => Ok(()),
        }
    }

    /// One checkpoint part at `lsn`: parts in order, entries in LSN order, and each entry equal
    /// to the in-doubt set (or, `seeding`, seeding it); the last part must cover the whole set.
    fn apply_checkpoint_part(
        &mut self,
        c: &Checkpoint,
        lsn: Lsn,
        seeding: bool,
        version: u32,
        phase: &mut CkptPhase,
    ) -> Result<(), String> {
        let CkptPhase::Expect { next, parts, cursor, matched } = phase else { unreachable!("called while expecting a checkpoint") };
        if c.part != *next || (*parts != 0 && c.parts != *parts) {
            return Err(format!("checkpoint part {} of {} out of order", c.part, c.parts));
        }
        *parts = c.parts;
        // Parts are filled in order: every part but the last holds the full count.
        let per = crate::format::checkpoint_entries_per_record(version);
        if c.part + 1 < c.parts && c.entries.len() != per {
            return Err(format!("checkpoint part {} of {} holds {} entries, not {per}", c.part, c.parts, c.entries.len()));
        }
        for e in &c.entries {
            if e.lsn <= *cursor {
                return Err(format!("checkpoint entry {} not in LSN order", e.lsn));
            }
            if seeding {
                if e.lsn >= lsn {
                    return Err(format!("checkpoint names future LSN {}", e.lsn));
                }
                self.in_doubt.insert(e.lsn, (e.intent, e.fill));
            } else if self.in_doubt.get(&e.lsn) != Some(&(e.intent, e.fill)) {
                return Err(format!("checkpoint entry {} disagrees with the log", e.lsn));
            }
            *cursor = e.lsn;
            *matched += 1;
        }
        *next += 1;
        if *next == c.parts {
            // Entries are distinct (strictly increasing) and each is in the set: equal sizes
            // make the checkpoint exactly the in-doubt set.
            if !seeding && *matched != self.in_doubt.len() {
                return Err("checkpoint misses in-doubt intents".into());
            }
            *phase = CkptPhase::Done;
        }
        Ok(())
    }

    /// End: corruption stops the scan; a torn tail is remembered (it must be the log's end).
    fn settle_end(&mut self, segment_no: u64, end: &SegmentEnd) -> Result<(), Corruption> {
        match end {
            SegmentEnd::Corrupt(c) => {
                let mut c = c.clone();
                if c.expected_lsn == 0 {
                    c.expected_lsn = self.next_lsn.unwrap_or(0);
                }
                Err(c)
            }
            SegmentEnd::TornTail { at, lsn, fault, .. } => {
                let lsn = if *lsn == 0 { self.next_lsn.unwrap_or(0) } else { *lsn };
                self.torn = Some(TornTail { segment: segment_no, at: *at, lsn, fault: fault.clone() });
                Ok(())
            }
            SegmentEnd::Clean { .. } | SegmentEnd::Empty => Ok(()),
        }
    }

    /// LSN the next segment must start with (None before any data segment).
    pub fn expected_lsn(&self) -> Option<Lsn> {
        self.next_lsn
    }

    /// Ends the scan.
    pub fn finish(self) -> LogState {
        LogState {
            next_segment_no: self.prev_segment.map_or(1, |p| p + 1),
            first_lsn: self.first_lsn,
            next_lsn: self.next_lsn.unwrap_or(1),
            log_id: self.log_id,
            in_doubt: {
                let mut v: Vec<InDoubt> = self.in_doubt.into_iter().map(|(lsn, (intent, fill))| InDoubt { lsn, intent, fill }).collect();
                v.sort_unstable_by_key(|d| d.lsn);
                v
            },
            torn_tail: self.torn,
            counts: self.counts,
            segments: self.segments,
        }
    }
}

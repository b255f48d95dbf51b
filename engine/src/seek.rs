//! Seek by time: read only the segments of a log that can hold intents of a time window
//! (docs/design.md, "Seek by time").
//!
//! Segment `s`'s intents by time (count, smallest and largest `ts_ns`) are recorded in part 0 of
//! the checkpoint that starts segment `s + 1` ([`TsRange`]). [`index_log`] reads only the head of
//! every segment (its header and its opening checkpoint, usually the first batch) and so learns
//! every segment's recorded range but the last one's; [`read_time_range`] then reads through only
//! the segments whose range overlaps the window, plus the later segments that can still change the
//! status of an intent of the window. Every segment it reads goes through the same checks as
//! [`read_log`](crate::read_log) (the codec's `LogScanner`: checksums, K-window, LSN continuity,
//! checkpoints, outcome rules); a run of consecutive segments that starts after the log's first
//! segment is seeded from its opening checkpoint, exactly like a log whose older segments
//! retention removed. Segments it skips are checked by their head only (header, number, log id,
//! base LSN, the opening checkpoint's checksums): `tradewal verify` reads everything.

use crate::io::fs::FsStorage;
use crate::io::Storage;
use crate::manifest::Manifest;
use crate::recovery;
use crate::WalError;
use std::collections::HashMap;
use std::path::Path;
use tradewal_codec::{
    CorruptReason, Corruption, Fill, Frame, InDoubt, LogScanner, Lsn, Record, SegmentDecoder, SegmentHeader, TornTail, TsRange, BLOCK_BYTES,
};

/// What [`index_log`] learned about one segment file from its head alone.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SegmentHead {
    /// Segment number (from the file name).
    pub segment_no: u64,
    /// The file name.
    pub file: String,
    /// The segment header, when block 0 is valid.
    pub header: Option<SegmentHeader>,
    /// The entries of the checkpoint that starts the segment (the intents in doubt at its start,
    /// with their latest partial fills), when every part of it was found valid in its head.
    pub checkpoint: Option<Vec<InDoubt>>,
    /// The previous segment's intents by time, as part 0 of this segment's checkpoint records them
    /// (format 2; None in format 1 or when the head did not decode).
    pub prev_range: Option<TsRange>,
    /// This segment's intents by time, as recorded by the next segment's checkpoint. None: not
    /// recorded (the last segment, a segment followed by a format-1 segment, or a next segment whose
    /// head does not decode): the segment can hold any time.
    pub range: Option<TsRange>,
}

impl SegmentHead {
    /// True when the segment can hold an intent with `since <= ts_ns <= until`: its recorded range
    /// overlaps the window, or it has no recorded range.
    pub fn can_hold(&self, since: i64, until: i64) -> bool {
        self.range.is_none_or(|r| r.overlaps(since, until))
    }
}

/// The segments of a log directory with their recorded time ranges ([`index_log`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LogIndex {
    /// Every segment file, in number order.
    pub segments: Vec<SegmentHead>,
    /// True when the directory holds a segment, a LOCK file or a manifest.
    pub is_log_dir: bool,
    /// The live writer's acknowledged watermark, taken after the listing (None: no writer live).
    /// Segments whose base LSN is above it hold only records added after the listing; readers
    /// stop after the first segment whose records reach it (as [`read_log`](crate::read_log)).
    pub watermark: Option<Lsn>,
    /// The manifest, when the directory has one.
    pub manifest: Option<Manifest>,
}

impl LogIndex {
    /// How many of [`segments`](LogIndex::segments) a read considers: all of them, or with a live
    /// writer those up to the last one whose base LSN is at or below the watermark.
    pub fn considered(&self) -> usize {
        match self.watermark {
            None => self.segments.len(),
            Some(w) => self.segments.iter().position(|s| s.header.is_some_and(|h| h.base_lsn > w)).unwrap_or(self.segments.len()),
        }
    }

    /// The LSN a reader of intents with `ts_ns >= ts` can start at: the base LSN of the first
    /// segment that can hold such intents (a lower bound: that segment may begin with earlier
    /// ones). A segment without a recorded range can hold any time; when that segment's header does
    /// not validate, the base LSN of the nearest earlier segment with a valid header (or 1). When no
    /// segment can hold one, the LSN after the last segment with a valid header.
    pub fn start_lsn_since(&self, ts: i64) -> Lsn {
        let base_at_or_before = |i: usize| self.segments[..=i].iter().rev().find_map(|s| s.header.map(|h| h.base_lsn)).unwrap_or(1);
        match self.segments.iter().position(|s| s.can_hold(ts, i64::MAX)) {
            Some(i) => base_at_or_before(i),
            // Every segment has a recorded range (so each has a successor but the last listed one,
            // which always can hold): unreachable in practice; start after everything listed.
            None => self.segments.last().and_then(|s| s.header).map_or(1, |h| h.base_lsn),
        }
    }
}

/// Listings [`index_log`] tries when retention removes a segment while it reads the heads.
const READ_ATTEMPTS: usize = 5;
/// The first read of a segment's head; doubled while its checkpoint runs past it.
const HEAD_BYTES: usize = 64 << 10;

/// Lists a log directory and reads the head of every segment (header and opening checkpoint; no
/// lock, nothing written, safe while a writer is live), so that every segment but the last gets
/// its recorded time range. Refuses (as corruption) a hole in the segment numbers, two log ids
/// among valid headers, and base LSNs that do not rise.
pub fn index_log(dir: &Path) -> Result<LogIndex, WalError> {
    index_on(&FsStorage::new(dir))
}

fn index_on(storage: &FsStorage) -> Result<LogIndex, WalError> {
    'attempt: for _ in 0..READ_ATTEMPTS {
        let live = recovery::seek_writer_live(storage)?;
        let (files, is_log_dir, manifest) = recovery::seek_listing(storage)?;
        let watermark = if live { Some(recovery::seek_watermark(storage)?) } else { None };
        let mut segments: Vec<SegmentHead> = Vec::with_capacity(files.len());
        for (no, f) in &files {
            match read_head(storage, *no, f) {
                Ok(h) => segments.push(h),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'attempt,
                Err(e) => return Err(WalError::io(format!("reading {f}"), e)),
            }
        }
        check_index(&segments, &files)?;
        for i in 1..segments.len() {
            segments[i - 1].range = segments[i].prev_range;
        }
        return Ok(LogIndex { segments, is_log_dir, watermark, manifest });
    }
    Err(WalError::io(
        format!("reading {}", storage.path().display()),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("retention removed a segment {READ_ATTEMPTS} times in a row while listing"),
        ),
    ))
}

/// The cheap checks of an index: contiguous numbers, one log id, rising base LSNs.
fn check_index(segments: &[SegmentHead], files: &[(u64, String)]) -> Result<(), WalError> {
    let corrupt =
        |segment: u64, reason: CorruptReason| recovery::seek_corrupt(Corruption { segment, offset: 0, expected_lsn: 0, reason }, files);
    if let Some(w) = segments.windows(2).find(|w| w[1].segment_no != w[0].segment_no + 1) {
        let expected = w[0].segment_no + 1;
        return Err(corrupt(expected, CorruptReason::MissingSegment { expected }));
    }
    let mut prev: Option<(u64, SegmentHeader)> = None;
    for s in segments {
        let Some(h) = s.header else { continue };
        if let Some((p, ph)) = prev {
            if ph.log_id != h.log_id {
                return Err(corrupt(s.segment_no, CorruptReason::ForeignLog));
            }
            if h.base_lsn <= ph.base_lsn {
                return Err(corrupt(
                    s.segment_no,
                    CorruptReason::Log(format!(
                        "base LSN {} does not rise above segment {p}'s {}: LSNs never restart",
                        h.base_lsn, ph.base_lsn
                    )),
                ));
            }
        }
        prev = Some((s.segment_no, h));
    }
    Ok(())
}

/// Reads the head of segment `no`: block 0 and the batches that hold its opening checkpoint
/// (64 KiB first, doubled while the checkpoint runs past what was read, up to the whole file).
fn read_head(storage: &dyn Storage, no: u64, f: &str) -> std::io::Result<SegmentHead> {
    let len = storage.file_len(f)? as usize;
    let mut size = HEAD_BYTES.min(len);
    loop {
        let mut buf = vec![0u8; size];
        let n = if size >= BLOCK_BYTES { storage.read_range(f, 0, &mut buf)? } else { 0 };
        buf.truncate(n);
        let (head, complete) = decode_head(no, f, &buf);
        if complete || head.header.is_none() || size >= len {
            return Ok(head);
        }
        size = (size * 2).min(len);
    }
}

/// Decodes a head image; returns it and whether the opening checkpoint was found whole.
fn decode_head(no: u64, f: &str, bytes: &[u8]) -> (SegmentHead, bool) {
    let mut dec = SegmentDecoder::new(bytes, Some(no));
    let header = dec.header().copied();
    let mut head = SegmentHead { segment_no: no, file: f.to_string(), header, checkpoint: None, prev_range: None, range: None };
    let mut entries: Vec<InDoubt> = Vec::new();
    let mut next_part = 0;
    while let Some((_, record)) = dec.next_record() {
        let Record::Checkpoint(c) = record else { break };
        if c.part != next_part {
            break;
        }
        if c.part == 0 {
            head.prev_range = c.prev_range;
        }
        entries.extend(c.entries);
        next_part += 1;
        if next_part == c.parts {
            if entries.windows(2).all(|w| w[0].lsn < w[1].lsn) {
                head.checkpoint = Some(entries);
            }
            return (head, true);
        }
    }
    (head, false)
}

/// What [`read_time_range`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSeek {
    /// Earliest intent time of the window, inclusive (Unix nanoseconds).
    pub since: i64,
    /// Latest intent time of the window, inclusive (Unix nanoseconds).
    pub until: i64,
    /// Also read the later segments that can change the status of an intent of the window (its
    /// outcomes). False: only the segments that can hold intents of the window.
    pub outcomes: bool,
}

impl TimeSeek {
    /// The window `since..=until`, with outcomes.
    pub fn new(since: i64, until: i64) -> Self {
        TimeSeek { since, until, outcomes: true }
    }

    /// True when `ts` lies in the window.
    pub fn contains(&self, ts: i64) -> bool {
        self.since <= ts && ts <= self.until
    }
}

/// What [`read_time_range`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SeekReport {
    /// Segments the read considered (listed, and with a live writer up to the watermark's).
    pub segments: usize,
    /// The segments read through, in order.
    pub read: Vec<u64>,
    /// The LSN after the last record handed to `visit` (1 when none): the snapshot of the read.
    pub next_lsn: Lsn,
    /// A torn tail at the end of the last segment read, when that is the end of the log.
    pub torn_tail: Option<TornTail>,
    /// True when the directory holds a segment, a LOCK file or a manifest.
    pub is_log_dir: bool,
}

/// Reads the records of the segments of `dir` that can hold intents with `since <= ts_ns <=
/// until` (their recorded range overlaps the window, or they have none: the last segment and
/// format-1 segments), and, with `seek.outcomes`, the later segments that can change the status of
/// such an intent: a segment is read while an intent of the window is open (no terminal outcome
/// yet), unless the checkpoint that starts the next segment shows every open one unchanged (still
/// in doubt with the same latest fill). `visit` sees every record of every segment read, in LSN
/// order; filtering intents by time is the caller's job. Read-only, lock-free, safe while a
/// writer is live (like [`read_log`](crate::read_log): the read stops after the first segment
/// reaching the watermark). Corruption in a segment read is refused exactly as `read_log` refuses
/// it; see the module docs for what is checked of the segments skipped.
pub fn read_time_range(dir: &Path, seek: TimeSeek, mut visit: impl FnMut(&Frame<'_>, &Record)) -> Result<SeekReport, WalError> {
    let storage = FsStorage::new(dir);
    for _ in 0..READ_ATTEMPTS {
        let index = index_on(&storage)?;
        if let Some(report) = read_index(&storage, &index, seek, &mut visit)? {
            return Ok(report);
        }
    }
    Err(WalError::io(
        format!("reading {}", dir.display()),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("retention removed a segment {READ_ATTEMPTS} times in a row while it was read"),
        ),
    ))
}

/// True when the checkpoint that starts `next` shows every open intent still in doubt with the
/// fill state the reader knows: the segment before it changed none of them.
fn unchanged_across(open: &HashMap<Lsn, Option<Fill>>, next: Option<&SegmentHead>) -> bool {
    let Some(entries) = next.and_then(|n| n.checkpoint.as_ref()) else { return false };
    open.iter().all(|(lsn, fill)| entries.binary_search_by_key(lsn, |e| e.lsn).is_ok_and(|k| entries[k].fill == *fill))
}

/// One read over an index. `Ok(None)`: a segment was gone before any record was handed out (list
/// again).
fn read_index(
    storage: &FsStorage,
    index: &LogIndex,
    seek: TimeSeek,
    visit: &mut impl FnMut(&Frame<'_>, &Record),
) -> Result<Option<SeekReport>, WalError> {
    let segs = &index.segments[..index.considered()];
    let all_files: Vec<(u64, String)> = index.segments.iter().map(|s| (s.segment_no, s.file.clone())).collect();
    // Intents of the window with no terminal outcome yet, with their latest partial fill.
    let mut open: HashMap<Lsn, Option<Fill>> = HashMap::new();
    let mut session_bytes: Vec<(i64, u64)> = Vec::new();
    let mut buf = Vec::new();
    let mut read = Vec::new();
    let mut next_lsn: Option<Lsn> = None;
    // The scanner of the current run of consecutive segments read; the state of the last run.
    let mut run: Option<LogScanner> = None;
    let mut last_state = None;
    let mut ended_torn: Option<TornTail> = None;
    for (i, s) in segs.iter().enumerate() {
        let want = s.can_hold(seek.since, seek.until) || (seek.outcomes && !open.is_empty() && !unchanged_across(&open, segs.get(i + 1)));
        if !want {
            if let Some(sc) = run.take() {
                let st = sc.finish();
                ended_torn = st.torn_tail.clone();
                last_state = Some(st);
            }
            recovery::seek_learn_session(&s.file, s.header.as_ref(), &mut session_bytes);
            continue;
        }
        if let (None, Some(t)) = (&run, ended_torn.take()) {
            // A torn segment must be the log's end; a later run of segments holds data.
            let reason = CorruptReason::TornBeforeLaterData { fault: t.fault.clone(), later_segment: s.segment_no };
            return Err(recovery::seek_corrupt(Corruption { segment: t.segment, offset: t.at, expected_lsn: t.lsn, reason }, &all_files));
        }
        let scanner = run.get_or_insert_with(LogScanner::new);
        let mut hand = |f: &Frame<'_>, r: &Record| {
            match r {
                Record::Intent(it) if seek.contains(it.ts_ns) => {
                    open.insert(f.lsn, None);
                }
                Record::Outcome(o) => {
                    if let Some(fill) = open.get_mut(&o.intent_lsn) {
                        if o.status.is_terminal() {
                            open.remove(&o.intent_lsn);
                        } else {
                            *fill = Fill::of(o);
                        }
                    }
                }
                _ => {}
            }
            next_lsn = Some(f.lsn + 1);
            visit(f, r)
        };
        let got =
            recovery::seek_read_segment(storage, s.segment_no, &s.file, &all_files, &mut session_bytes, scanner, &mut buf, &mut hand)?;
        let Some(last) = got else {
            if next_lsn.is_none() {
                return Ok(None);
            }
            return Err(WalError::io(
                format!("reading {}", storage.path().display()),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "retention removed segment {} before this reader got to it (the reader fell behind a live writer); read again",
                        s.segment_no
                    ),
                ),
            ));
        };
        read.push(s.segment_no);
        if let (Some(w), Some(l)) = (index.watermark, last) {
            if l >= w {
                break; // everything acknowledged when the read began is covered
            }
        }
    }
    let reached_end = read.last().is_some_and(|&r| segs.last().is_some_and(|s| s.segment_no == r));
    if let Some(sc) = run.take() {
        last_state = Some(sc.finish());
    }
    let torn_tail = last_state.as_ref().filter(|_| reached_end).and_then(|st| st.torn_tail.clone());
    if let (Some(m), Some(st), true) = (&index.manifest, &last_state, reached_end) {
        // The last run reached the end of what was considered: the log must not end below the
        // manifest's acknowledged LSN (capped at the watermark for a live log, as read_log does).
        let mut seen = m.clone();
        if let Some(w) = index.watermark {
            let last_read = read.last().copied();
            seen.used = m.used.and_then(|(lo, hi)| last_read.map(|r| (lo, hi.min(r)))).filter(|(lo, hi)| lo <= hi);
            seen.acked_lsn = m.acked_lsn.min(w);
        }
        recovery::seek_check_manifest(&seen, st, &all_files)?;
    }
    Ok(Some(SeekReport { segments: segs.len(), read, next_lsn: next_lsn.unwrap_or(1), torn_tail, is_log_dir: index.is_log_dir }))
}

/// The LSN to follow from for intents with `ts_ns >= ts`: [`LogIndex::start_lsn_since`] of the
/// directory's index (1 for a directory with no segment).
pub fn start_lsn_since(dir: &Path, ts: i64) -> Result<Lsn, WalError> {
    Ok(index_log(dir)?.start_lsn_since(ts))
}

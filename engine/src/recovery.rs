//! Recovery: decide from what reached the device, then repair (I5).
//!
//! 1. Choose where to start: with a manifest, at the newest segment it lists as holding
//!    acknowledged data (its opening checkpoint is the in-doubt set at that point); without one, at
//!    the first segment. Segments before the start get a header check only (exists, its length, a
//!    valid header naming this log and its number; no fsync, no record checksums: `tradewal verify`
//!    reads them); 2. fsync the segments from the start on and the directory, so nothing that only
//!    sat in the page cache of a crashed process is trusted; 3. read them through O_DIRECT in number
//!    order and feed them to the codec's [`LogScanner`] (checksums, epochs, LSN continuity,
//!    K-window, checkpoints); 4. on corruption refuse with [`WalError::Corrupt`] naming file, offset
//!    and expected LSN; 5. only then repair: zero a torn tail (or remove a segment whose first write
//!    was torn), remove trailing never-used spares and `*.tmp` leftovers, fsync the directory. Every
//!    step is idempotent: a crash during recovery and a second recovery give the same answer.

use crate::config::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
use crate::io::Storage;
use crate::manifest::{self, Manifest};
use crate::WalError;
use std::path::Path;
use std::sync::Arc;
use tradewal_codec::{
    CorruptReason, Corruption, Frame, InDoubt, LogScanner, LogState, Lsn, Record, RecordCounts, SegmentEnd, SegmentHeader, SegmentName,
    BLOCK_BYTES,
};

/// A torn tail found and removed by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornTailReport {
    /// Segment file.
    pub file: String,
    /// Segment number.
    pub segment: u64,
    /// Offset where the torn region began (0: the segment's first write was torn; the file was removed).
    pub offset: u64,
    /// First LSN not recovered: nothing at or after it had been acknowledged.
    pub lsn: Lsn,
    /// What was found there.
    pub detail: String,
}

/// What [`Wal::open`](crate::Wal::open) recovered.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Recovered {
    /// Intents with no outcome, in LSN order: they may or may not have reached the venue.
    /// Reconcile each by its LSN, then mark it executed or aborted.
    pub in_doubt: Vec<InDoubt>,
    /// The torn tail truncated, if the previous session ended in one.
    pub torn_tail: Option<TornTailReport>,
    /// LSN of the first record of the new session.
    pub next_lsn: Lsn,
    /// Segment files kept from earlier sessions, in order.
    pub segments: Vec<String>,
    /// Records in the segments recovery read through, by kind (from segment
    /// [`scanned_from_segment`](Recovered::scanned_from_segment) on; older segments were checked by
    /// header only and their records are not counted).
    pub counts: RecordCounts,
    /// The first segment recovery read through (None: the log had no segment file). With a
    /// manifest this is the newest segment it lists as holding data, whose checkpoint carries the
    /// in-doubt set; every older segment got only a header check (exists, its length, a valid
    /// header naming this log and its number), so damage inside one is not refused at open:
    /// `tradewal verify` (`read_log`) reads every segment and refuses it.
    pub scanned_from_segment: Option<u64>,
    /// Files recovery removed (this log's own torn first segment and unused spares, as the
    /// manifest accounts for them; `*.tmp` leftovers).
    pub removed: Vec<String>,
    /// Segment-named files that did not validate and that the manifest does not account for:
    /// moved into the `quarantine/` subdirectory (paths there), not deleted.
    pub quarantined: Vec<String>,
    /// The acknowledged LSN the manifest recorded before this open (None: the log had no
    /// manifest; it gets one now). The log was checked not to end below it.
    pub manifest_lsn: Option<Lsn>,
}

/// A read-only view of a log directory.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LogReport {
    /// The scan's result (segments, LSN range, in-doubt set, torn tail, counts).
    pub state: LogState,
    /// Segment files in number order.
    pub files: Vec<(u64, String)>,
    /// Leftover `*.tmp` files (an interrupted spare creation).
    pub tmp_files: Vec<String>,
    /// True when the directory holds a segment, a LOCK file or a manifest.
    pub is_log_dir: bool,
    /// The manifest, when the directory has one (the scan was checked against it).
    pub manifest: Option<Manifest>,
    /// The first segment read through (None: no segment file). [`read_log`] reads every segment;
    /// recovery with a manifest starts at the newest segment the manifest lists as holding data.
    pub scanned_from_segment: Option<u64>,
    /// Segments before `scanned_from_segment` whose header block alone was checked, with the
    /// header (None: the block reads as zeros, an unused segment not listed as holding data).
    /// Empty for [`read_log`].
    pub header_only: Vec<(u64, Option<SegmentHeader>)>,
}

pub(crate) fn corrupt_error(c: Corruption, files: &[(u64, String)]) -> WalError {
    let file = files.iter().find(|(n, _)| *n == c.segment).map(|(_, f)| f.clone()).unwrap_or_default();
    WalError::Corrupt { segment: c.segment, file, offset: c.offset, expected_lsn: c.expected_lsn, reason: c.reason }
}

/// What a directory listing holds (before anything is read).
struct Listing {
    files: Vec<(u64, String)>,
    tmp_files: Vec<String>,
    is_log_dir: bool,
    manifest: Option<Manifest>,
}

/// Lists the directory, loads the manifest, refuses two files with one segment number.
fn list_dir(storage: &dyn Storage) -> Result<Listing, WalError> {
    let dir = storage.path().display().to_string();
    let names = storage.list().map_err(|e| WalError::io(format!("listing {dir}"), e))?;
    let mut files: Vec<(u64, String)> = Vec::new();
    let mut tmp_files = Vec::new();
    let mut is_log_dir = false;
    for n in names {
        if let Some(s) = SegmentName::parse(&n) {
            files.push((s.segment_no, n));
            is_log_dir = true;
        } else if n.strip_suffix(".tmp").and_then(SegmentName::parse).is_some() {
            tmp_files.push(n);
        } else if n == "LOCK" || n == manifest::MANIFEST_FILE {
            is_log_dir = true;
        }
    }
    let manifest = manifest::load_on(storage)?;
    files.sort();
    if let Some(w) = files.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(WalError::Corrupt {
            segment: w[1].0,
            file: w[1].1.clone(),
            offset: 0,
            expected_lsn: 0,
            reason: CorruptReason::Log(format!("two files claim segment {}: {} and {}", w[0].0, w[0].1, w[1].1)),
        });
    }
    Ok(Listing { files, tmp_files, is_log_dir, manifest })
}

/// fsyncs `files` and the directory (I5: only what reached the device is trusted).
fn sync_all(storage: &dyn Storage, files: &[(u64, String)]) -> Result<(), WalError> {
    for (_, f) in files {
        storage.sync_file(f).map_err(|e| WalError::io(format!("fsync {f}"), e))?;
    }
    let dir = storage.path().display().to_string();
    storage.sync_dir().map_err(|e| WalError::io(format!("fsync {dir}"), e))
}

/// The segment length rules of a scan: a segment file has exactly the size its header (or another
/// header of its session) names; none is over [`SEGMENT_BYTES_MAX`] or under [`SEGMENT_BYTES_MIN`].
/// `header`: the file's valid header, if any.
fn check_len(
    len: u64,
    header: Option<&SegmentHeader>,
    session_bytes: Option<u64>,
    refuse: impl Fn(u64, String) -> WalError,
) -> Result<(), WalError> {
    // Segments are created at full size (zero-filled, fsynced, then renamed into place) and
    // never shrink or grow, so a file of another length was changed outside tradewal: what
    // is missing cannot be proven unacknowledged (I4), whatever the decoder would say.
    match header.map(|h| h.segment_bytes).or(session_bytes) {
        Some(e) if len < e => Err(refuse(
            len,
            format!("file is {len} bytes, shorter than its segment size {e}: a crash cannot shorten a preallocated segment"),
        )),
        Some(e) if len > e => Err(refuse(e, format!("file is {len} bytes, longer than its segment size {e}"))),
        None if len < SEGMENT_BYTES_MIN => {
            Err(refuse(len, format!("file is {len} bytes, shorter than any segment ({SEGMENT_BYTES_MIN} at least)")))
        }
        _ => Ok(()),
    }
}

/// What the read-ahead thread hands over for one segment file.
enum ReadAhead {
    Bytes(u64, Vec<u8>),
    TooLarge(u64),
    /// The file is gone (a live log's retention removed it after the listing).
    Gone,
}

/// Read ahead: reads `files` in order (O_DIRECT, whole) into the buffers `back` returns, and
/// sends each result on `tx`; stops after an error, a gone file, or when the receiver leaves.
fn read_ahead(
    storage: &dyn Storage,
    files: &[(u64, String)],
    tx: crossbeam_channel::Sender<Result<ReadAhead, WalError>>,
    back: crossbeam_channel::Receiver<Vec<u8>>,
) {
    for (_, f) in files {
        let Ok(mut bytes) = back.recv() else { break };
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let r = match storage.file_len(f) {
            Err(e) if gone(&e) => Ok(ReadAhead::Gone),
            Err(e) => Err(WalError::io(format!("reading {f}"), e)),
            Ok(len) if len > SEGMENT_BYTES_MAX => Ok(ReadAhead::TooLarge(len)),
            Ok(_) => match storage.read_file_into(f, &mut bytes) {
                Err(e) if gone(&e) => Ok(ReadAhead::Gone),
                Err(e) => Err(WalError::io(format!("reading {f}"), e)),
                Ok(()) => Ok(ReadAhead::Bytes(bytes.len() as u64, bytes)),
            },
        };
        let stop = !matches!(r, Ok(ReadAhead::Bytes(..)) | Ok(ReadAhead::TooLarge(_)));
        if tx.send(r).is_err() || stop {
            break;
        }
    }
}

/// A segment file that disappeared while it was read: the end of a live read (retention removed
/// it), an error otherwise.
fn segment_gone(live: Option<&mut LiveRead>, no: u64, f: &str) -> Result<(), WalError> {
    match live {
        Some(l) => {
            l.gone = Some(no);
            Ok(())
        }
        None => Err(WalError::io(
            format!("reading {f}"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "the segment file disappeared while the log was read"),
        )),
    }
}

/// Length check: the file's length against its header, or against its session's segment size
/// (`session_bytes`, which learns the size of each session from its first valid header).
fn check_file_len(
    no: u64,
    f: &str,
    len: u64,
    bytes: &[u8],
    session_bytes: &mut Vec<(i64, u64)>,
    scanner: &LogScanner,
) -> Result<(), WalError> {
    let session = SegmentName::parse(f).expect("parsed above").session_start_unix_s;
    let header = (bytes.len() >= BLOCK_BYTES).then(|| SegmentHeader::decode(&bytes[..BLOCK_BYTES]).ok()).flatten();
    let known = session_bytes.iter().find(|(s, _)| *s == session).map(|(_, b)| *b);
    check_len(len, header.as_ref(), known, |at, why| refuse(no, f, at, why, scanner))?;
    if let (Some(h), None) = (header, known) {
        session_bytes.push((session, h.segment_bytes));
    }
    Ok(())
}

/// The refusal of segment `no` (file `f`) at `offset`.
fn refuse(no: u64, f: &str, offset: u64, reason: String, scanner: &LogScanner) -> WalError {
    WalError::Corrupt {
        segment: no,
        file: f.to_string(),
        offset,
        expected_lsn: scanner.expected_lsn().unwrap_or(0),
        reason: CorruptReason::Log(reason),
    }
}

/// Scan: one segment's bytes through the scanner. Returns its last LSN kept, and (when it kept
/// records) whether its checkpoint (its first records) was seen whole.
fn scan_segment(
    scanner: &mut LogScanner,
    no: u64,
    bytes: &[u8],
    all_files: &[(u64, String)],
    visit: &mut impl FnMut(&Frame<'_>, &Record),
) -> Result<(Option<Lsn>, Option<bool>), WalError> {
    let mut checkpoint_complete = false;
    let summary = scanner
        .push_segment(no, bytes, |fr, r| {
            if let Record::Checkpoint(c) = r {
                checkpoint_complete = c.part + 1 == c.parts;
            }
            visit(fr, r)
        })
        .map_err(|c| corrupt_error(c, all_files))?;
    Ok((summary.last_lsn, summary.first_lsn.map(|_| checkpoint_complete)))
}

/// Reads `files` (O_DIRECT, whole) in number order into `scanner`. `session_bytes`: the segment
/// size of each session from valid headers seen before `files` (a file without a valid header must
/// have its session's size). Returns whether the first
/// segment that held records started with a complete checkpoint (None: no segment held records).
fn read_segments(
    storage: &dyn Storage,
    files: &[(u64, String)],
    all_files: &[(u64, String)],
    mut session_bytes: Vec<(i64, u64)>,
    scanner: &mut LogScanner,
    mut live: Option<&mut LiveRead>,
    mut visit: impl FnMut(&Frame<'_>, &Record),
) -> Result<Option<bool>, WalError> {
    let mut first_checkpoint_complete = None;
    // A reader thread reads segment i+1 (O_DIRECT) while this thread decodes segment i.
    std::thread::scope(|scope| -> Result<(), WalError> {
        let (tx, rx) = crossbeam_channel::bounded::<Result<ReadAhead, WalError>>(1);
        // Two read buffers go back and forth, so each is allocated (and faulted in) once.
        let (back_tx, back_rx) = crossbeam_channel::bounded::<Vec<u8>>(2);
        for _ in 0..2 {
            back_tx.send(Vec::new()).expect("room for two buffers");
        }
        scope.spawn(move || read_ahead(storage, files, tx, back_rx));
        for (no, f) in files {
            let (len, bytes) = match rx.recv().expect("the reader sends one result per file until an error")? {
                ReadAhead::TooLarge(len) => {
                    return Err(refuse(*no, f, SEGMENT_BYTES_MAX, format!("file is {len} bytes, larger than any segment"), scanner))
                }
                ReadAhead::Bytes(len, bytes) => (len, bytes),
                ReadAhead::Gone => return segment_gone(live.as_deref_mut(), *no, f),
            };
            check_file_len(*no, f, len, &bytes, &mut session_bytes, scanner)?;
            let (last_lsn, checkpoint_complete) = scan_segment(scanner, *no, &bytes, all_files, &mut visit)?;
            if first_checkpoint_complete.is_none() {
                first_checkpoint_complete = checkpoint_complete;
            }
            if let Some(l) = live.as_deref_mut() {
                l.last_read = Some(*no);
                // Everything acknowledged when the read began is covered: later segments hold
                // only what the writer added since (they may be mid-rotation), so stop here.
                if last_lsn.is_some_and(|last| last >= l.watermark) {
                    return Ok(());
                }
            }
            let _ = back_tx.send(bytes);
        }
        Ok(())
    })?;
    Ok(first_checkpoint_complete)
}

/// Lists and scans a whole log directory (every segment read through). With `sync`, fsyncs every
/// segment and the directory first.
pub(crate) fn scan(storage: &dyn Storage, sync: bool, visit: impl FnMut(&Frame<'_>, &Record)) -> Result<LogReport, WalError> {
    let Listing { files, tmp_files, is_log_dir, manifest } = list_dir(storage)?;
    if sync {
        sync_all(storage, &files)?;
    }
    let mut scanner = LogScanner::new();
    read_segments(storage, &files, &files, Vec::new(), &mut scanner, None, visit)?;
    let state = scanner.finish();
    if let Some(m) = &manifest {
        manifest::check(m, &state, &files)?;
    }
    let scanned_from_segment = files.first().map(|(n, _)| *n);
    Ok(LogReport { state, files, tmp_files, is_log_dir, manifest, scanned_from_segment, header_only: Vec::new() })
}

/// The index in `files` recovery starts reading at: the newest segment the manifest lists as
/// holding acknowledged data (its checkpoint, written at rotation, holds the in-doubt set at its
/// start, so nothing older is needed). None: read every segment (no manifest, nothing listed, the
/// listed segment is missing — the full scan then refuses — or it is the first file anyway).
fn checkpoint_start(manifest: Option<&Manifest>, files: &[(u64, String)]) -> Option<usize> {
    let (_, hi) = manifest?.used?;
    files.iter().position(|(n, _)| *n == hi).filter(|&i| i > 0)
}

/// The cheap check of the segments before the scan start (their numbers were checked contiguous):
/// each has its segment's length, and its first block is a valid header naming this log (the manifest's id),
/// its own number and a base LSN above the previous one's — or, for a segment the manifest does not
/// list as holding data, reads as zeros (an unused segment an old crash left in the middle). No
/// fsync (everything before the newest segment the manifest lists was durable before that
/// segment's first acknowledgement), and no checksums of the records: that is `tradewal verify`'s
/// job. Returns each segment's header (None: the block reads as zeros) and the segment size of each
/// session seen.
fn check_headers(storage: &dyn Storage, m: &Manifest, old: &[(u64, String)]) -> Result<HeaderCheck, WalError> {
    let mut out: Vec<(u64, Option<SegmentHeader>)> = Vec::with_capacity(old.len());
    let mut session_bytes: Vec<(i64, u64)> = Vec::new();
    let mut prev: Option<(u64, Lsn)> = None;
    let mut block = vec![0u8; BLOCK_BYTES];
    for (no, f) in old {
        let refuse = |offset: u64, reason: String| WalError::Corrupt {
            segment: *no,
            file: f.clone(),
            offset,
            expected_lsn: 0,
            reason: CorruptReason::Log(reason),
        };
        let len = storage.file_len(f).map_err(|e| WalError::io(format!("reading {f}"), e))?;
        if len > SEGMENT_BYTES_MAX {
            return Err(refuse(SEGMENT_BYTES_MAX, format!("file is {len} bytes, larger than any segment")));
        }
        let n = if len >= BLOCK_BYTES as u64 {
            storage.read_range(f, 0, &mut block).map_err(|e| WalError::io(format!("reading {f}"), e))?
        } else {
            0
        };
        let session = SegmentName::parse(f).expect("parsed above").session_start_unix_s;
        let known = session_bytes.iter().find(|(s, _)| *s == session).map(|(_, b)| *b);
        let header = if n < BLOCK_BYTES {
            None
        } else if block.iter().all(|&b| b == 0) {
            if m.lists_used(*no) {
                return Err(manifest::never_written_error(m, *no, f, "has a header block that reads as all zeros"));
            }
            None
        } else {
            let h = SegmentHeader::decode(&block).map_err(|e| {
                if m.lists_used(*no) {
                    manifest::never_written_error(m, *no, f, &format!("has no valid header ({e})"))
                } else {
                    refuse(0, format!("segment header does not validate ({e}) in a segment before the scan start"))
                }
            })?;
            if h.segment_no != *no {
                return Err(refuse(0, format!("header names segment {}, the file name {no}", h.segment_no)));
            }
            if h.log_id != m.log_id {
                return Err(refuse(
                    0,
                    format!("the segment belongs to log {:016x} but {} names log {:016x}", h.log_id, manifest::MANIFEST_FILE, m.log_id),
                ));
            }
            if let Some((p, base)) = prev {
                if h.base_lsn <= base {
                    return Err(refuse(0, format!("base LSN {} does not rise above segment {p}'s {base}: LSNs never restart", h.base_lsn)));
                }
            }
            Some(h)
        };
        check_len(len, header.as_ref(), known, refuse)?;
        if let Some(h) = &header {
            if known.is_none() {
                session_bytes.push((session, h.segment_bytes));
            }
            prev = Some((*no, h.base_lsn));
        }
        out.push((*no, header));
    }
    Ok((out, session_bytes))
}

/// What [`check_headers`] returns: each older segment's header (None: all zeros) and the segment
/// size of each session seen.
type HeaderCheck = (Vec<(u64, Option<SegmentHeader>)>, Vec<(i64, u64)>);

/// Lists and scans the directory for recovery: with a manifest, only the segments from the newest
/// one it lists as holding data are fsynced and read through; the older ones get
/// [`check_headers`]. Without one (or when that segment's checkpoint is incomplete: a crash during
/// a checkpoint that spans batches), every segment is fsynced and read.
fn scan_for_recovery(storage: &dyn Storage) -> Result<LogReport, WalError> {
    let listing = list_dir(storage)?;
    let Some(i) = checkpoint_start(listing.manifest.as_ref(), &listing.files) else {
        return scan(storage, true, |_, _| {});
    };
    let Listing { files, tmp_files, is_log_dir, manifest } = listing;
    let m = manifest.as_ref().expect("a checkpoint start comes from the manifest");
    // Numbers contiguous up to the start (the scanner checks them from there on).
    if let Some(w) = files[..=i].windows(2).find(|w| w[1].0 != w[0].0 + 1) {
        let c =
            Corruption { segment: w[0].0 + 1, offset: 0, expected_lsn: 0, reason: CorruptReason::MissingSegment { expected: w[0].0 + 1 } };
        return Err(corrupt_error(c, &files));
    }
    let (header_only, session_bytes) = check_headers(storage, m, &files[..i])?;
    sync_all(storage, &files[i..])?;
    let mut scanner = LogScanner::new();
    if read_segments(storage, &files[i..], &files, session_bytes, &mut scanner, None, |_, _| {})? == Some(false) {
        tracing::info!(segment = files[i].0, "tradewal: the newest listed segment's checkpoint is incomplete: reading every segment");
        return scan(storage, true, |_, _| {});
    }
    let state = scanner.finish();
    if let (Some((no, Some(h))), Some(first)) = (header_only.iter().rev().find(|(_, h)| h.is_some()), state.first_lsn) {
        if h.base_lsn >= first {
            return Err(WalError::Corrupt {
                segment: files[i].0,
                file: files[i].1.clone(),
                offset: 0,
                expected_lsn: 0,
                reason: CorruptReason::Log(format!(
                    "segment starts at LSN {first}, not above segment {no}'s base LSN {}: LSNs never restart",
                    h.base_lsn
                )),
            });
        }
    }
    manifest::check(m, &state, &files)?;
    let scanned_from_segment = Some(files[i].0);
    Ok(LogReport { state, files, tmp_files, is_log_dir, manifest, scanned_from_segment, header_only })
}

/// Reads a log directory without locking it or changing anything (for inspect, verify, export
/// and recover commands; safe while a writer is live — its newest batch may then show as a torn
/// tail). `visit` sees every record kept, in LSN order.
pub fn read_log(dir: &Path, mut visit: impl FnMut(&Frame<'_>, &Record)) -> Result<LogReport, WalError> {
    let storage = crate::io::fs::FsStorage::new(dir);
    let mut visited = false;
    for _ in 0..READ_ATTEMPTS {
        let Some(mut live) = live_read(&storage)? else {
            return scan(&storage, false, visit);
        };
        let Listing { files, tmp_files, is_log_dir, manifest } = list_dir(&storage)?;
        // The watermark after the listing and the manifest: it covers the manifest's
        // acknowledged LSN, and every segment holding records up to it was listed.
        live.watermark = live_watermark(&storage)?.unwrap_or(Lsn::MAX);
        let mut scanner = LogScanner::new();
        read_segments(&storage, &files, &files, Vec::new(), &mut scanner, Some(&mut live), |f, r| {
            visited = true;
            visit(f, r)
        })?;
        if let Some(no) = live.gone {
            if visited {
                return Err(WalError::io(
                    format!("reading {}", dir.display()),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("retention removed segment {no} before this reader got to it (the reader fell behind a live writer); read again"),
                    ),
                ));
            }
            continue; // removed before anything was read: the log now starts later; list again
        }
        let state = scanner.finish();
        if let Some(m) = &manifest {
            // Only the segments read are judged: later ones were created or filled after the
            // listing (the next read sees them).
            let mut seen = m.clone();
            seen.used = m.used.and_then(|(lo, hi)| live.last_read.map(|r| (lo, hi.min(r)))).filter(|(lo, hi)| lo <= hi);
            seen.acked_lsn = m.acked_lsn.min(live.watermark);
            manifest::check(&seen, &state, &files)?;
        }
        let scanned_from_segment = files.first().map(|(n, _)| *n);
        return Ok(LogReport { state, files, tmp_files, is_log_dir, manifest, scanned_from_segment, header_only: Vec::new() });
    }
    Err(WalError::io(
        format!("reading {}", dir.display()),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("retention removed the oldest segment {READ_ATTEMPTS} times in a row while listing"),
        ),
    ))
}

/// Listings [`read_log`] tries when retention removes the oldest segment before it is read.
const READ_ATTEMPTS: usize = 5;

/// A read of a log whose writer is live (see [`read_log`]).
struct LiveRead {
    /// The writer's acknowledged watermark, taken after the listing: the read stops after the
    /// first segment that reaches it.
    watermark: Lsn,
    /// The last segment read through.
    last_read: Option<u64>,
    /// A listed segment that was gone when its turn came.
    gone: Option<u64>,
}

/// `Some` when a writer holds the log's lock and publishes a watermark; `None` when no writer is
/// live (or none ever ran, or it publishes no watermark: then the files are read as they are).
fn live_read(storage: &crate::io::fs::FsStorage) -> Result<Option<LiveRead>, WalError> {
    if !storage.path().join("LOCK").exists() {
        return Ok(None);
    }
    let dir = storage.path().display().to_string();
    match storage.lock_shared() {
        Ok(Some(_guard)) => Ok(None), // no writer: released at once, the read does not block one
        Ok(None) => Ok(live_watermark(storage)?.map(|watermark| LiveRead { watermark, last_read: None, gone: None })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io(format!("taking a reader's lock in {dir}"), e)),
    }
}

/// The live writer's acknowledged watermark (None: no watermark file, or it holds nothing yet).
fn live_watermark(storage: &crate::io::fs::FsStorage) -> Result<Option<Lsn>, WalError> {
    let dir = storage.path().display().to_string();
    let w = storage.watermark(false).map_err(|e| WalError::io(format!("mapping the watermark in {dir}"), e))?;
    Ok(w.map(|w| w.load()).filter(|&v| v > 0))
}

/// Recovers the directory for a new session: scan with fsync, then repair.
pub(crate) fn recover(storage: &Arc<dyn Storage>) -> Result<(Recovered, LogReport), WalError> {
    let report = scan_for_recovery(storage.as_ref())?;
    let st = &report.state;
    // Decided; now repair. Files to remove: a segment whose first write was torn, and the
    // never-used spares after the last data segment. They go from the highest number down, each
    // removal made durable before the next, so a crash midway leaves a prefix of the segments (never
    // a hole that a later recovery would call a missing segment) and recovery again decides the same.
    let mut doomed: Vec<(u64, &'static str)> = Vec::new();
    let torn_report = repair_torn_tail(storage.as_ref(), &report, &mut doomed)?;
    doom_unused_spares(&report, &mut doomed);
    let Removal { mut removed, quarantined, gone } = remove_doomed(storage.as_ref(), &report, doomed)?;
    for t in &report.tmp_files {
        storage.remove(t).map_err(|e| WalError::io(format!("removing {t}"), e))?;
        removed.push(t.clone());
    }
    if !removed.is_empty() {
        storage.sync_dir().map_err(|e| WalError::io("fsync directory after repair", e))?;
    }
    let manifest_lsn = report.manifest.as_ref().map(|m| m.acked_lsn);
    // Records retired by retention and a torn only segment removed can leave no record at all:
    // the manifest still knows how far LSNs went, so they never restart.
    let next_lsn = st.next_lsn.max(manifest_lsn.map_or(1, |l| l + 1));
    let recovered = Recovered {
        in_doubt: st.in_doubt.clone(),
        torn_tail: torn_report,
        next_lsn,
        segments: report.files.iter().filter(|(n, _)| !gone.contains(n)).map(|(_, f)| f.clone()).collect(),
        counts: st.counts,
        scanned_from_segment: report.scanned_from_segment,
        removed,
        quarantined,
        manifest_lsn,
    };
    Ok((recovered, report))
}

/// The file name of scanned segment `no`.
fn file_of(report: &LogReport, no: u64) -> String {
    report.files.iter().find(|(n, _)| *n == no).map(|(_, f)| f.clone()).expect("scanned file")
}

/// Repair, torn tail: zeroes it to the segment's end, or dooms the segment when its first write
/// was torn. Returns what [`Recovered::torn_tail`] reports.
fn repair_torn_tail(
    storage: &dyn Storage,
    report: &LogReport,
    doomed: &mut Vec<(u64, &'static str)>,
) -> Result<Option<TornTailReport>, WalError> {
    let st = &report.state;
    let Some(t) = &st.torn_tail else { return Ok(None) };
    let file = file_of(report, t.segment);
    if t.at == 0 {
        doomed.push((t.segment, "torn first write"));
    } else {
        let len = st
            .segments
            .iter()
            .find(|s| s.segment_no == t.segment)
            .and_then(|s| s.header)
            .map(|h| h.segment_bytes)
            .expect("torn segment past batch 0 has a header");
        storage.zero_range(&file, t.at, len).map_err(|e| WalError::io(format!("zeroing torn tail of {file}"), e))?;
    }
    tracing::warn!(file = %file, offset = t.at, lsn = t.lsn, fault = %t.fault, "tradewal: torn tail truncated");
    Ok(Some(TornTailReport { file, segment: t.segment, offset: t.at, lsn: t.lsn, detail: t.fault.to_string() }))
}

/// Repair, spares: dooms the never-used spares after the last data segment (a segment doomed
/// for a torn first write holds no data).
fn doom_unused_spares(report: &LogReport, doomed: &mut Vec<(u64, &'static str)>) {
    let st = &report.state;
    let torn_at_0 = doomed.first().map(|(n, _)| *n);
    let last_data =
        st.segments.iter().filter(|s| !matches!(s.end, SegmentEnd::Empty) && Some(s.segment_no) != torn_at_0).map(|s| s.segment_no).max();
    for s in &st.segments {
        if matches!(s.end, SegmentEnd::Empty) && last_data.is_none_or(|l| s.segment_no > l) {
            doomed.push((s.segment_no, "unused spare"));
        }
    }
}

/// What [`remove_doomed`] did.
struct Removal {
    /// Files removed.
    removed: Vec<String>,
    /// Where files that were not provably this log's own went.
    quarantined: Vec<String>,
    /// Segment numbers no longer in the directory.
    gone: Vec<u64>,
}

/// Repair, removal: the doomed files from the highest number down, each removal durable before
/// the next.
fn remove_doomed(storage: &dyn Storage, report: &LogReport, mut doomed: Vec<(u64, &'static str)>) -> Result<Removal, WalError> {
    doomed.sort_by_key(|d| std::cmp::Reverse(d.0));
    let (mut removed, mut quarantined, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    for (no, why) in doomed {
        let file = file_of(report, no);
        // Deleted only when provably this log's own: a file the manifest lists as created and not
        // yet holding data (`manifest::check` refused any it lists as used), or, for a log
        // without a manifest, an all-zero spare (zeros hold nothing). Anything else that does not
        // validate is moved aside and reported.
        let own = match &report.manifest {
            Some(m) => m.lists_created(&file),
            None => why == "unused spare",
        };
        if own {
            storage.remove(&file).map_err(|e| WalError::io(format!("removing {why} {file}"), e))?;
            removed.push(file);
        } else {
            let dest = storage.quarantine(&file).map_err(|e| WalError::io(format!("quarantining {file}"), e))?;
            tracing::warn!(file = %file, to = %dest.display(), reason = why, "tradewal: segment-named file does not validate and is not this log's own: quarantined, not deleted");
            quarantined.push(dest.display().to_string());
        }
        storage.sync_dir().map_err(|e| WalError::io("fsync directory after removing a segment", e))?;
        gone.push(no);
    }
    Ok(Removal { removed, quarantined, gone })
}

/// Number for the new session's first segment: after the last segment kept.
/// The time range of the last data segment the scan kept, when the new session's first segment
/// (`first_no`) follows it directly: the checkpoint that starts `first_no` records it.
pub(crate) fn last_range(report: &LogReport, first_no: u64) -> Option<tradewal_codec::TsRange> {
    let last = report.state.segments.iter().rev().find(|s| s.first_lsn.is_some())?;
    (last.segment_no + 1 == first_no).then_some(last.ts_range)
}

pub(crate) fn next_segment_no(report: &LogReport, recovered: &Recovered) -> u64 {
    report
        .files
        .iter()
        .filter(|(_, f)| recovered.segments.contains(f))
        .map(|(n, _)| n + 1)
        .max()
        .unwrap_or_else(|| report.files.first().map_or(1, |(n, _)| *n))
}

// ---- Used by time seek (`crate::seek`): the same listing, live-writer detection and per-segment
// checks as `read_log`, one segment at a time, so a seek can read a chosen subset of segments. ----

/// Segment files in number order, whether the directory is a log, its manifest.
pub(crate) type SeekListing = (Vec<(u64, String)>, bool, Option<Manifest>);

/// A listing of `storage` for [`crate::seek`]: segment files in number order (two files with one
/// number refused), whether the directory is a log, and its manifest.
pub(crate) fn seek_listing(storage: &dyn Storage) -> Result<SeekListing, WalError> {
    let Listing { files, is_log_dir, manifest, .. } = list_dir(storage)?;
    Ok((files, is_log_dir, manifest))
}

/// True when a writer holds the log's lock and publishes a watermark (the rule of [`read_log`]).
pub(crate) fn seek_writer_live(storage: &crate::io::fs::FsStorage) -> Result<bool, WalError> {
    Ok(live_read(storage)?.is_some())
}

/// The live writer's acknowledged watermark, [`Lsn::MAX`] when it publishes none (yet).
pub(crate) fn seek_watermark(storage: &crate::io::fs::FsStorage) -> Result<Lsn, WalError> {
    Ok(live_watermark(storage)?.unwrap_or(Lsn::MAX))
}

/// Checks a scan of the end of a log against its manifest (see `manifest::check`).
pub(crate) fn seek_check_manifest(m: &Manifest, state: &LogState, files: &[(u64, String)]) -> Result<(), WalError> {
    manifest::check(m, state, files)
}

/// Reads segment `no` (file `f`) whole and feeds it to `scanner`, with the length rules of
/// [`read_log`] (`session_bytes` learns each session's segment size from valid headers, in
/// number order). `Ok(None)`: the file is gone (retention removed it after the listing);
/// `Ok(Some(last))`: the segment's last LSN kept (None: it kept no record).
#[allow(clippy::too_many_arguments)]
pub(crate) fn seek_read_segment(
    storage: &dyn Storage,
    no: u64,
    f: &str,
    all_files: &[(u64, String)],
    session_bytes: &mut Vec<(i64, u64)>,
    scanner: &mut LogScanner,
    buf: &mut Vec<u8>,
    visit: &mut impl FnMut(&Frame<'_>, &Record),
) -> Result<Option<Option<Lsn>>, WalError> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let len = match storage.file_len(f) {
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(WalError::io(format!("reading {f}"), e)),
        Ok(len) => len,
    };
    if len > SEGMENT_BYTES_MAX {
        return Err(refuse(no, f, SEGMENT_BYTES_MAX, format!("file is {len} bytes, larger than any segment"), scanner));
    }
    match storage.read_file_into(f, buf) {
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(WalError::io(format!("reading {f}"), e)),
        Ok(()) => {}
    }
    check_file_len(no, f, buf.len() as u64, buf, session_bytes, scanner)?;
    let (last, _) = scan_segment(scanner, no, buf, all_files, visit)?;
    Ok(Some(last))
}

/// Learns the segment size of `f`'s session from `header` when it is not known yet (for a
/// segment a seek does not read: the length rule of later files of the session needs it).
pub(crate) fn seek_learn_session(f: &str, header: Option<&SegmentHeader>, session_bytes: &mut Vec<(i64, u64)>) {
    let Some(h) = header else { return };
    let Some(name) = SegmentName::parse(f) else { return };
    if !session_bytes.iter().any(|(s, _)| *s == name.session_start_unix_s) {
        session_bytes.push((name.session_start_unix_s, h.segment_bytes));
    }
}

/// The error of a corruption found by a seek in segment `c.segment`.
pub(crate) fn seek_corrupt(c: Corruption, files: &[(u64, String)]) -> WalError {
    corrupt_error(c, files)
}

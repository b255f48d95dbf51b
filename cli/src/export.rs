//! `export`: JSONL of a log, optionally followed like `tail -f`.
//!
//! The initial export is two read-only passes over the log: the first collects the outcomes of
//! the intents in range (and fixes the snapshot: the LSN after the last record it saw), the
//! second writes intent lines with `exec`/`aborted` set, up to that snapshot. `--raw` is one pass.
//!
//! `--follow` then tails the log: it re-reads the segment being written (O_DIRECT, from the end
//! of the last complete batch it decoded) every [`POLL`], emits only records the decoder
//! validated, and moves to the next segment once that one holds data (the writer rotates only
//! with nothing in flight, so the earlier segment is final by then).

use crate::scan::{is_broken_pipe, progress, scan_dir};
use crate::{CmdResult, Failure};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tradewal::io::sys::{open_direct_read, AlignedBuf};
use tradewal_codec::format::BatchHeader;
use tradewal_codec::{
    write_intent_line, write_raw_line, IntentStatus, Lsn, OutcomeKind, Record, SegmentDecoder, SegmentEnd, SegmentName,
    BLOCK_BYTES,
};

/// How often `--follow` looks for new records.
pub const POLL: Duration = Duration::from_millis(100);
/// Polls in a row that must see the same corruption before `--follow` gives up (a read racing
/// the writer can see a half-written region once).
const CORRUPT_POLLS: u32 = 3;
/// Smallest read of a followed segment.
const READ_CHUNK: usize = 1 << 20;

/// What `export` does.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Log directory.
    pub dir: PathBuf,
    /// Every record with its kind.
    pub raw: bool,
    /// First LSN (inclusive).
    pub from_lsn: Lsn,
    /// Last LSN (inclusive).
    pub to_lsn: Lsn,
    /// Output file (stdout when None).
    pub output: Option<PathBuf>,
    /// Keep streaming new records.
    pub follow: bool,
}

/// Output that remembers the first write error instead of failing inside a scan callback.
struct Sink {
    out: Box<dyn Write>,
    error: Option<io::Error>,
    lines: u64,
}

impl Sink {
    fn put(&mut self, f: impl FnOnce(&mut Box<dyn Write>) -> io::Result<()>) {
        if self.error.is_none() {
            match f(&mut self.out) {
                Ok(()) => self.lines += 1,
                Err(e) => self.error = Some(e),
            }
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }

    /// Ok(true): keep going; Ok(false): the reader closed the pipe (stop quietly).
    fn check(&mut self) -> Result<bool, Failure> {
        match self.error.take() {
            None => Ok(true),
            Some(e) if is_broken_pipe(&e) => Ok(false),
            Some(e) => Err(Failure::usage(format!("writing output: {e}"))),
        }
    }
}

/// What [`export_to`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Exported {
    /// Lines written.
    pub lines: u64,
    /// LSN after the last record of the snapshot exported.
    pub next_lsn: Lsn,
    /// The last segment holding data in the snapshot (where following starts).
    pub last_segment: Option<u64>,
}

/// Writes the export of `dir` to `out`.
/// Used by `export` and by `demo`. `Ok(None)`: the reader closed the pipe.
pub fn export_to(dir: &Path, raw: bool, from: Lsn, to: Lsn, out: Box<dyn Write>, show_progress: bool) -> Result<Option<Exported>, Failure> {
    let mut sink = Sink { out, error: None, lines: 0 };
    let in_range = |lsn: Lsn| lsn >= from && lsn <= to;
    let snapshot_next;
    let last_segment;
    if raw {
        let pb = progress(None, "exporting").with_finish(indicatif::ProgressFinish::AndClear);
        if !show_progress {
            pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let report = scan_dir(dir, 2, |frame, record| {
            if in_range(frame.lsn) {
                sink.put(|w| write_raw_line(w, frame.lsn, record));
                pb.inc(1);
            }
        })?;
        pb.finish_and_clear();
        snapshot_next = report.state.next_lsn;
        last_segment = last_data_segment(&report);
    } else {
        // Pass 1: outcomes of the intents in range, and the snapshot.
        let mut status: HashMap<Lsn, OutcomeKind> = HashMap::new();
        let report = scan_dir(dir, 2, |_, record| {
            if let Record::Outcome(o) = record {
                if in_range(o.intent_lsn) {
                    status.insert(o.intent_lsn, o.kind);
                }
            }
        })?;
        snapshot_next = report.state.next_lsn;
        last_segment = last_data_segment(&report);
        let intents = report.state.counts.intents;
        let pb = progress(Some(intents), "exporting");
        if !show_progress {
            pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        // Pass 2: intent lines up to the snapshot (a live writer may have added more since).
        scan_dir(dir, 2, |frame, record| {
            if let Record::Intent(i) = record {
                if frame.lsn < snapshot_next {
                    pb.inc(1);
                    if in_range(frame.lsn) {
                        let st = status.get(&frame.lsn).map_or(IntentStatus::Pending, |k| (*k).into());
                        sink.put(|w| write_intent_line(w, frame.lsn, i, st));
                    }
                }
            }
        })?;
        pb.finish_and_clear();
    }
    sink.flush();
    if !sink.check()? {
        return Ok(None);
    }
    Ok(Some(Exported { lines: sink.lines, next_lsn: snapshot_next, last_segment }))
}

fn last_data_segment(report: &tradewal::LogReport) -> Option<u64> {
    report.state.segments.iter().rev().find(|s| !matches!(s.end, SegmentEnd::Empty)).map(|s| s.segment_no)
}

/// `tradewal export`.
pub fn run(o: &ExportOptions) -> CmdResult {
    if o.from_lsn > o.to_lsn {
        return Err(Failure::usage(format!("--from-lsn {} is above --to-lsn {}", o.from_lsn, o.to_lsn)));
    }
    let out: Box<dyn Write> = match &o.output {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(p).map_err(|e| Failure::usage(format!("creating {}: {e}", p.display())))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
    };
    if !o.follow {
        export_to(&o.dir, o.raw, o.from_lsn, o.to_lsn, out, true)?;
        return Ok(());
    }
    // Follow: the initial export, then the tail.
    let out = SharedOut::new(out);
    let Some(done) = export_to(&o.dir, o.raw, o.from_lsn, o.to_lsn, Box::new(out.clone()), true)? else {
        return Ok(());
    };
    follow(o, out, done.next_lsn, done.last_segment)
}

/// A writer shared between the initial export and the follow loop.
#[derive(Clone)]
struct SharedOut(std::rc::Rc<std::cell::RefCell<Box<dyn Write>>>);

impl SharedOut {
    fn new(w: Box<dyn Write>) -> Self {
        SharedOut(std::rc::Rc::new(std::cell::RefCell::new(w)))
    }
}

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// Segment files of `dir` by number.
fn list_segments(dir: &Path) -> Result<Vec<(u64, String)>, Failure> {
    let rd = std::fs::read_dir(dir).map_err(|e| Failure::usage(format!("listing {}: {e}", dir.display())))?;
    let mut v = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Failure::usage(format!("listing {}: {e}", dir.display())))?;
        if let Some(name) = entry.file_name().to_str() {
            if let Some(s) = SegmentName::parse(name) {
                v.push((s.segment_no, name.to_string()));
            }
        }
    }
    v.sort();
    Ok(v)
}

/// Reads `len` bytes of `path` at aligned `offset` (O_DIRECT where the filesystem allows it,
/// so only what reached the device is seen); short at end of file.
fn read_at(path: &Path, offset: u64, len: usize, buf: &mut AlignedBuf) -> io::Result<Vec<u8>> {
    assert!(offset % BLOCK_BYTES as u64 == 0 && len % BLOCK_BYTES == 0, "aligned follow read");
    if buf.capacity() < len {
        *buf = AlignedBuf::new(len);
    }
    let mut out = Vec::with_capacity(len);
    match open_direct_read(path) {
        Ok(f) => {
            let mut done = 0;
            while done < len {
                let n = f.read_at(&mut buf.as_mut_capacity()[..len - done], offset + done as u64)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf.as_mut_capacity()[..n]);
                done += n;
                if n % BLOCK_BYTES != 0 {
                    break; // end of file
                }
            }
        }
        Err(e) if e.raw_os_error() == Some(22) => {
            // EINVAL: no O_DIRECT on this filesystem (tmpfs); the page cache is all there is.
            let f = File::open(path)?;
            out.resize(len, 0);
            let mut done = 0;
            while done < len {
                let n = f.read_at(&mut out[done..], offset + done as u64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            out.truncate(done);
        }
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// The segment being tailed: its bytes up to the end of the last complete batch decoded.
struct Tail {
    segment_no: u64,
    image: Vec<u8>,
}

/// True when segment file `name` has a non-zero first block (its first write landed).
fn has_data(dir: &Path, name: &str, buf: &mut AlignedBuf) -> bool {
    read_at(&dir.join(name), 0, BLOCK_BYTES, buf).is_ok_and(|b| b.iter().any(|&x| x != 0))
}

/// Decodes the tailed image: pushes records from `next_emit` on (advancing it) and returns
/// where the last complete batch ends and how far the next batch (if its header is readable)
/// reaches.
fn decode_tail(tail: &Tail, name: &str, next_emit: &mut Lsn, new: &mut Vec<(Lsn, Record)>) -> Result<(usize, usize), String> {
    let mut dec = SegmentDecoder::new(&tail.image, Some(tail.segment_no));
    for frame in dec.by_ref() {
        if frame.lsn >= *next_emit {
            let r = frame.decode().map_err(|e| format!("{name}: record {}: {e}", frame.lsn))?;
            new.push((frame.lsn, r));
            *next_emit = frame.lsn + 1;
        }
    }
    match dec.end() {
        Some(SegmentEnd::Clean { end_offset, .. }) => Ok((*end_offset as usize, *end_offset as usize + READ_CHUNK)),
        Some(SegmentEnd::TornTail { at, .. }) => {
            let at = *at as usize;
            // The batch there (batch 0 follows the header block): how far it reaches.
            let batch_at = if at == 0 { BLOCK_BYTES } else { at };
            let reach = tail
                .image
                .get(batch_at..)
                .and_then(BatchHeader::decode)
                .map_or(batch_at + READ_CHUNK, |h| batch_at + h.padded_len());
            Ok((at, reach))
        }
        Some(SegmentEnd::Corrupt(c)) => Err(format!("{name}: {c}")),
        Some(SegmentEnd::Empty) | None => Ok((0, BLOCK_BYTES + READ_CHUNK)),
    }
}

/// Reads what the writer added to the tailed segment and pushes the new records. Bytes after
/// the last complete batch are dropped (they may still change) and read again next time.
fn drain(dir: &Path, name: &str, tail: &mut Tail, next_emit: &mut Lsn, buf: &mut AlignedBuf, new: &mut Vec<(Lsn, Record)>) -> Result<(), String> {
    let path = dir.join(name);
    let file_len = match std::fs::metadata(&path) {
        Ok(m) => m.len() as usize,
        Err(_) => return Ok(()), // gone (retention); the caller moves on when a later segment has data
    };
    let mut prev_good = None;
    loop {
        let (good_end, need) = decode_tail(tail, name, next_emit, new)?;
        let len = tail.image.len();
        let stalled = prev_good == Some(good_end) && len >= need.min(file_len);
        tail.image.truncate(good_end.min(len));
        if stalled || good_end >= file_len {
            return Ok(());
        }
        prev_good = Some(good_end);
        let from = tail.image.len();
        let chunk = need.saturating_sub(from).max(READ_CHUNK).max(from).min(file_len - from);
        let chunk = chunk.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let more = read_at(&path, from as u64, chunk, buf).map_err(|e| format!("reading {name}: {e}"))?;
        if more.iter().all(|&b| b == 0) {
            return Ok(()); // nothing written there yet (or end of file)
        }
        tail.image.extend_from_slice(&more);
    }
}

fn follow(o: &ExportOptions, out: SharedOut, mut next_emit: Lsn, start_segment: Option<u64>) -> CmdResult {
    let mut sink = Sink { out: Box::new(out), error: None, lines: 0 };
    let mut buf = AlignedBuf::new(READ_CHUNK);
    let mut tail: Option<Tail> = start_segment.map(|n| Tail { segment_no: n, image: Vec::new() });
    let mut corrupt_polls = 0u32;
    loop {
        if next_emit > o.to_lsn {
            return Ok(());
        }
        let files = list_segments(&o.dir)?;
        let mut new: Vec<(Lsn, Record)> = Vec::new();
        let mut emit_from = next_emit;
        if tail.is_none() {
            // A log with no data yet: start at its first segment.
            let start = files.first();
            tail = start.map(|(n, _)| Tail { segment_no: *n, image: Vec::new() });
        }
        let mut poll_error = None;
        while let Some(t) = tail.as_mut() {
            let name = files.iter().find(|(n, _)| *n == t.segment_no).map(|(_, f)| f.clone());
            let next = files.iter().find(|(n, _)| *n > t.segment_no).cloned();
            // Check the next segment first: if it holds data, this one is final after this drain.
            let next_ready = next.as_ref().is_some_and(|(_, f)| has_data(&o.dir, f, &mut buf));
            if let Some(name) = &name {
                if let Err(e) = drain(&o.dir, name, t, &mut emit_from, &mut buf, &mut new) {
                    // Perhaps a read that raced the writer: read this segment afresh next time.
                    t.image.clear();
                    poll_error = Some(e);
                    break;
                }
            }
            match (next_ready, next) {
                (true, Some((n, _))) => *t = Tail { segment_no: n, image: Vec::new() },
                _ => break,
            }
        }
        match poll_error {
            Some(e) => {
                corrupt_polls += 1;
                if corrupt_polls >= CORRUPT_POLLS {
                    return Err(Failure::usage(format!("corruption while following: {e}")));
                }
            }
            None => corrupt_polls = 0,
        }
        if !new.is_empty() {
            emit(&mut sink, o, &new);
            next_emit = emit_from;
            sink.flush();
            if !sink.check()? {
                return Ok(());
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Writes the records of one poll: raw lines, or intent lines (status from outcomes in the same
/// poll) plus raw outcome lines for intents emitted earlier.
fn emit(sink: &mut Sink, o: &ExportOptions, new: &[(Lsn, Record)]) {
    let in_range = |lsn: Lsn| lsn >= o.from_lsn && lsn <= o.to_lsn;
    if o.raw {
        for (lsn, r) in new.iter().filter(|(l, _)| in_range(*l)) {
            sink.put(|w| write_raw_line(w, *lsn, r));
        }
        return;
    }
    let mut here: HashMap<Lsn, OutcomeKind> = HashMap::new();
    for (_, r) in new {
        if let Record::Outcome(oc) = r {
            here.insert(oc.intent_lsn, oc.kind);
        }
    }
    let first = new.first().map_or(0, |(l, _)| *l);
    for (lsn, r) in new.iter().filter(|(l, _)| in_range(*l)) {
        match r {
            Record::Intent(i) => {
                let st = here.get(lsn).map_or(IntentStatus::Pending, |k| (*k).into());
                sink.put(|w| write_intent_line(w, *lsn, i, st));
            }
            // Its intent was emitted in an earlier poll (or the initial export): say what happened.
            Record::Outcome(oc) if oc.intent_lsn < first => sink.put(|w| write_raw_line(w, *lsn, r)),
            _ => {}
        }
    }
}

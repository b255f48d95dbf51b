//! `export`: JSONL of a log, optionally followed like `tail -f`.
//!
//! The initial export is two read-only passes over the log: the first collects the outcomes of
//! the intents in range (and fixes the snapshot: the LSN after the last record it saw), the
//! second writes intent lines with `exec`/`aborted` set, up to that snapshot. `--raw` is one pass.
//!
//! `--since/--until` (a time window) reads only the segments [`tradewal::read_time_range`] chooses,
//! in the same two passes ([`export_window`]); the lines are those of the full export in the window.
//!
//! `--follow` is a thin wrapper over [`tradewal::Follower`]: it streams every acknowledged record
//! from `--from-lsn` (or after the cursor of `--name`) in LSN order, each once, and exits 3 with
//! one line on stderr when retention removed the next LSN (a gap).

use crate::scan::{is_broken_pipe, progress, scan_dir, seek_dir};
use crate::{CmdResult, Failure};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tradewal_codec::{write_intent_line, write_raw_line, IntentStatus, Lsn, Outcome, Record};

/// How often `--follow` looks for new records.
pub const POLL: Duration = Duration::from_millis(100);

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
    /// Named reader (`--name`): resume from and commit to its cursor.
    pub name: Option<String>,
    /// `--since`: only intents with `ts_ns` at or after it.
    pub since: Option<i64>,
    /// `--until`: only intents with `ts_ns` at or before it.
    pub until: Option<i64>,
    /// `--stats`: one line on stderr with the segments read.
    pub stats: bool,
}

impl ExportOptions {
    /// True when `--since` or `--until` was given.
    fn seeks(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }
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
    /// Segments in the log and segments read through (the first pass's).
    pub segments: (usize, usize),
}

/// Writes the export of `dir` to `out`.
/// Used by `export` and by `demo`. `Ok(None)`: the reader closed the pipe.
pub fn export_to(dir: &Path, raw: bool, from: Lsn, to: Lsn, out: Box<dyn Write>, show_progress: bool) -> Result<Option<Exported>, Failure> {
    let mut sink = Sink { out, error: None, lines: 0 };
    let in_range = |lsn: Lsn| lsn >= from && lsn <= to;
    let segments;
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
        segments = (report.files.len(), report.state.segments.len());
        pb.finish_and_clear();
    } else {
        // Pass 1: outcomes of the intents in range, and the snapshot.
        let mut status: HashMap<Lsn, Outcome> = HashMap::new();
        let report = scan_dir(dir, 2, |_, record| {
            if let Record::Outcome(o) = record {
                if in_range(o.intent_lsn) {
                    status.insert(o.intent_lsn, *o);
                }
            }
        })?;
        let snapshot_next = report.state.next_lsn;
        segments = (report.files.len(), report.state.segments.len());
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
                        let st = status.get(&frame.lsn).map_or(IntentStatus::Pending, IntentStatus::of);
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
    Ok(Some(Exported { lines: sink.lines, segments }))
}

/// What [`export_window`] wrote, and the segments each pass read.
type Windowed = (Exported, Vec<u64>, Vec<u64>);

/// Writes the intent lines of `dir` with `since <= ts <= until` and `from <= lsn <= to` to `out`:
/// exactly the lines of [`export_to`] (intent lines) that pass the filter, same bytes and order,
/// reading only the segments [`tradewal::read_time_range`] chooses (docs/design.md, "Seek by
/// time"). Two passes like `export_to`: the first collects the statuses of the intents of the
/// window (and fixes the snapshot), the second writes their lines; corruption met in either
/// refuses the export, and in the first before any line is written.
pub fn export_window(dir: &Path, seek: tradewal::TimeSeek, from: Lsn, to: Lsn, out: Box<dyn Write>) -> Result<Option<Windowed>, Failure> {
    let mut sink = Sink { out, error: None, lines: 0 };
    let wanted = |lsn: Lsn, i: &tradewal::TradeIntent| lsn >= from && lsn <= to && seek.contains(i.ts_ns);
    // Pass 1: the intents of the window and their latest outcomes.
    let mut open: HashSet<Lsn> = HashSet::new();
    let mut status: HashMap<Lsn, Outcome> = HashMap::new();
    let first = seek_dir(dir, seek, |frame, record| match record {
        Record::Intent(i) if wanted(frame.lsn, i) => {
            open.insert(frame.lsn);
        }
        Record::Outcome(o) if open.contains(&o.intent_lsn) => {
            status.insert(o.intent_lsn, *o);
        }
        _ => {}
    })?;
    drop(open);
    let snapshot_next = first.next_lsn;
    // Pass 2: their lines, up to the snapshot (a live writer may have added more since).
    let second = seek_dir(dir, tradewal::TimeSeek { outcomes: false, ..seek }, |frame, record| {
        if let Record::Intent(i) = record {
            if frame.lsn < snapshot_next && wanted(frame.lsn, i) {
                let st = status.get(&frame.lsn).map_or(IntentStatus::Pending, IntentStatus::of);
                sink.put(|w| write_intent_line(w, frame.lsn, i, st));
            }
        }
    })?;
    sink.flush();
    if !sink.check()? {
        return Ok(None);
    }
    let exported = Exported { lines: sink.lines, segments: (first.segments, first.read.len()) };
    Ok(Some((exported, first.read, second.read)))
}

/// Segment numbers as ranges: `1-3, 7`.
fn ranges(nos: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < nos.len() {
        let mut j = i;
        while j + 1 < nos.len() && nos[j + 1] == nos[j] + 1 {
            j += 1;
        }
        out.push(if i == j { nos[i].to_string() } else { format!("{}-{}", nos[i], nos[j]) });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// `tradewal export`.
pub fn run(o: &ExportOptions) -> CmdResult {
    if o.from_lsn > o.to_lsn {
        return Err(Failure::usage(format!("--from-lsn {} is above --to-lsn {}", o.from_lsn, o.to_lsn)));
    }
    if o.name.is_some() && !o.follow {
        return Err(Failure::usage("--name needs --follow"));
    }
    if let (Some(s), Some(u)) = (o.since, o.until) {
        if s > u {
            return Err(Failure::usage(format!("--since {s} is after --until {u} (nanoseconds since the Unix epoch)")));
        }
    }
    if o.seeks() && o.raw {
        return Err(Failure::usage(
            "--since/--until select intent lines by their time; they do not apply to --raw (use --from-lsn/--to-lsn)",
        ));
    }
    if o.follow && o.until.is_some() {
        return Err(Failure::usage("--until does not apply to --follow (it never ends by time); use --since, or --to-lsn"));
    }
    if o.follow && o.since.is_some() && o.name.is_some() {
        return Err(Failure::usage("--since does not apply to --follow --name: a named reader resumes after its cursor"));
    }
    if o.follow && o.stats {
        return Err(Failure::usage("--stats does not apply to --follow"));
    }
    if let Some(p) = &o.output {
        refuse_output_in_log(&o.dir, p)?;
    }
    let out: Box<dyn Write> = match &o.output {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(p).map_err(|e| Failure::usage(format!("creating {}: {e}", p.display())))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
    };
    if !o.follow && o.seeks() {
        let seek = tradewal::TimeSeek::new(o.since.unwrap_or(i64::MIN), o.until.unwrap_or(i64::MAX));
        if let Some((e, first, second)) = export_window(&o.dir, seek, o.from_lsn, o.to_lsn, out)? {
            if o.stats {
                eprintln!(
                    "export: {} lines; segments: {} in the log, {} read ({}); {} read again for the lines ({})",
                    e.lines,
                    e.segments.0,
                    e.segments.1,
                    ranges(&first),
                    second.len(),
                    ranges(&second)
                );
            }
        }
        return Ok(());
    }
    if !o.follow {
        if let Some(e) = export_to(&o.dir, o.raw, o.from_lsn, o.to_lsn, out, true)? {
            if o.stats {
                eprintln!("export: {} lines; segments: {} in the log, {} read", e.lines, e.segments.0, e.segments.1);
            }
        }
        return Ok(());
    }
    follow(o, out)
}

/// Records gathered per poll at most (their lines are written, flushed and committed together).
const CHUNK_RECORDS: usize = 65_536;

/// `--follow`: a thin loop over [`tradewal::Follower`]. Each poll takes what is acknowledged now
/// (up to [`CHUNK_RECORDS`]), writes its lines, flushes them and, with `--name`, commits the last
/// LSN to the reader's cursor; then waits up to [`POLL`] for more. A `Gap` ends it with exit 3.
fn follow(o: &ExportOptions, out: Box<dyn Write>) -> CmdResult {
    let from = o.from_lsn.max(1);
    let mut f = match (&o.name, o.since) {
        (Some(n), _) => tradewal::Follower::named(&o.dir, n, from),
        // From the first segment that can hold intents of --since on (or --from-lsn, if later).
        (None, Some(since)) => tradewal::Follower::since_time(&o.dir, since).and_then(|f| {
            if f.next_lsn() < from {
                tradewal::Follower::open(&o.dir, from)
            } else {
                Ok(f)
            }
        }),
        (None, None) => tradewal::Follower::open(&o.dir, from),
    }
    .map_err(follow_failure)?;
    let mut sink = Sink { out, error: None, lines: 0 };
    // With --since: the intents written whose status may still change (their outcome lines follow).
    let mut written_open: HashSet<Lsn> = HashSet::new();
    let mut new: Vec<(Lsn, Record)> = Vec::new();
    loop {
        if f.next_lsn() > o.to_lsn {
            return Ok(());
        }
        new.clear();
        let mut wait = POLL;
        while new.len() < CHUNK_RECORDS {
            match f.next_timeout(wait).map_err(follow_failure)? {
                Some(r) if r.lsn <= o.to_lsn => new.push((r.lsn, r.record)),
                Some(_) => break,
                None => break,
            }
            wait = Duration::ZERO;
        }
        let Some(&(last, _)) = new.last() else { continue };
        emit(&mut sink, o, &new, &mut written_open);
        sink.flush();
        if !sink.check()? {
            return Ok(());
        }
        if o.name.is_some() {
            f.commit(last).map_err(follow_failure)?;
        }
    }
}

/// A follower error as the CLI reports it: exit 3 and one line for a gap, 2 otherwise.
fn follow_failure(e: tradewal::FollowError) -> Failure {
    match e {
        tradewal::FollowError::Gap { .. } => Failure { code: 3, message: format!("follow: {e}") },
        e => Failure::usage(format!("follow: {e}")),
    }
}

/// Refuses an output path inside the log directory (writing there could truncate a segment).
fn refuse_output_in_log(dir: &Path, output: &Path) -> CmdResult {
    let canon_dir = std::fs::canonicalize(dir).map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let canon_parent = std::fs::canonicalize(&parent).unwrap_or(parent);
    if canon_parent.starts_with(&canon_dir) {
        return Err(Failure::usage(format!(
            "-o {} is inside the log directory {}; refusing to write there",
            output.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Writes the records of one poll: raw lines, or intent lines (status from outcomes in the same
/// poll) plus raw outcome lines for intents emitted earlier. With `--since`, only intents with
/// `ts >= since`, and outcome lines only for intents written (`written_open`: those written whose
/// status may still change).
fn emit(sink: &mut Sink, o: &ExportOptions, new: &[(Lsn, Record)], written_open: &mut HashSet<Lsn>) {
    let in_range = |lsn: Lsn| lsn >= o.from_lsn && lsn <= o.to_lsn;
    if o.raw {
        for (lsn, r) in new.iter().filter(|(l, _)| in_range(*l)) {
            sink.put(|w| write_raw_line(w, *lsn, r));
        }
        return;
    }
    let mut here: HashMap<Lsn, Outcome> = HashMap::new();
    for (_, r) in new {
        if let Record::Outcome(oc) = r {
            here.insert(oc.intent_lsn, *oc);
        }
    }
    let first = new.first().map_or(0, |(l, _)| *l);
    for (lsn, r) in new.iter().filter(|(l, _)| in_range(*l)) {
        match r {
            Record::Intent(i) if o.since.is_some_and(|since| i.ts_ns < since) => {}
            Record::Intent(i) => {
                let out = here.get(lsn);
                if o.since.is_some() && out.is_none_or(|oc| !oc.status.is_terminal()) {
                    written_open.insert(*lsn);
                }
                let st = out.map_or(IntentStatus::Pending, IntentStatus::of);
                sink.put(|w| write_intent_line(w, *lsn, i, st));
            }
            Record::Outcome(oc) if o.since.is_some() => {
                // Only outcomes of intents written by an earlier poll (same-poll ones are in the line).
                if oc.intent_lsn < first && written_open.contains(&oc.intent_lsn) {
                    sink.put(|w| write_raw_line(w, *lsn, r));
                }
                if oc.status.is_terminal() {
                    written_open.remove(&oc.intent_lsn);
                }
            }
            // Its intent was emitted in an earlier poll (or the initial export): say what happened.
            Record::Outcome(oc) if oc.intent_lsn < first => sink.put(|w| write_raw_line(w, *lsn, r)),
            _ => {}
        }
    }
}

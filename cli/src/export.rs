//! `export`: JSONL of a log, optionally followed like `tail -f`.
//!
//! The initial export is two read-only passes over the log: the first collects the outcomes of
//! the intents in range (and fixes the snapshot: the LSN after the last record it saw), the
//! second writes intent lines with `exec`/`aborted` set, up to that snapshot. `--raw` is one pass.
//!
//! `--follow` is a thin wrapper over [`tradewal::Follower`]: it streams every acknowledged record
//! from `--from-lsn` (or after the cursor of `--name`) in LSN order, each once, and exits 3 with
//! one line on stderr when retention removed the next LSN (a gap).

use crate::scan::{is_broken_pipe, progress, scan_dir};
use crate::{CmdResult, Failure};
use std::collections::HashMap;
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
}

/// Writes the export of `dir` to `out`.
/// Used by `export` and by `demo`. `Ok(None)`: the reader closed the pipe.
pub fn export_to(dir: &Path, raw: bool, from: Lsn, to: Lsn, out: Box<dyn Write>, show_progress: bool) -> Result<Option<Exported>, Failure> {
    let mut sink = Sink { out, error: None, lines: 0 };
    let in_range = |lsn: Lsn| lsn >= from && lsn <= to;
    if raw {
        let pb = progress(None, "exporting").with_finish(indicatif::ProgressFinish::AndClear);
        if !show_progress {
            pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        scan_dir(dir, 2, |frame, record| {
            if in_range(frame.lsn) {
                sink.put(|w| write_raw_line(w, frame.lsn, record));
                pb.inc(1);
            }
        })?;
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
    Ok(Some(Exported { lines: sink.lines }))
}

/// `tradewal export`.
pub fn run(o: &ExportOptions) -> CmdResult {
    if o.from_lsn > o.to_lsn {
        return Err(Failure::usage(format!("--from-lsn {} is above --to-lsn {}", o.from_lsn, o.to_lsn)));
    }
    if o.name.is_some() && !o.follow {
        return Err(Failure::usage("--name needs --follow"));
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
    if !o.follow {
        export_to(&o.dir, o.raw, o.from_lsn, o.to_lsn, out, true)?;
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
    let mut f = match &o.name {
        Some(n) => tradewal::Follower::named(&o.dir, n, from),
        None => tradewal::Follower::open(&o.dir, from),
    }
    .map_err(follow_failure)?;
    let mut sink = Sink { out, error: None, lines: 0 };
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
        emit(&mut sink, o, &new);
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
/// poll) plus raw outcome lines for intents emitted earlier.
fn emit(sink: &mut Sink, o: &ExportOptions, new: &[(Lsn, Record)]) {
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
            Record::Intent(i) => {
                let st = here.get(lsn).map_or(IntentStatus::Pending, IntentStatus::of);
                sink.put(|w| write_intent_line(w, *lsn, i, st));
            }
            // Its intent was emitted in an earlier poll (or the initial export): say what happened.
            Record::Outcome(oc) if oc.intent_lsn < first => sink.put(|w| write_raw_line(w, *lsn, r)),
            _ => {}
        }
    }
}

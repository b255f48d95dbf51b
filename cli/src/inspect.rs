//! `inspect`, `verify` and `recover`: read-only views of a log directory.

use crate::scan::{is_broken_pipe, progress, scan_dir, utc};
use crate::{CmdResult, Failure};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use tradewal::LogReport;
use tradewal_codec::{write_in_doubt_line, RecordCounts, SegmentEnd, SegmentName};

fn counts_json(c: &RecordCounts) -> Value {
    json!({"intents": c.intents, "executed": c.executed, "aborted": c.aborted, "partially_filled": c.partially_filled,
        "rejected": c.rejected, "cancelled": c.cancelled, "checkpoints": c.checkpoints, "total": c.total()})
}

fn counts_text(c: &RecordCounts) -> String {
    format!(
        "{} intents, {} executed, {} aborted, {} partial fills, {} rejected, {} cancelled, {} checkpoints ({} records)",
        c.intents,
        c.executed,
        c.aborted,
        c.partially_filled,
        c.rejected,
        c.cancelled,
        c.checkpoints,
        c.total()
    )
}

fn end_text(e: &SegmentEnd) -> (String, String) {
    match e {
        SegmentEnd::Empty => ("empty".into(), "empty (preallocated, never written)".into()),
        SegmentEnd::Clean { end_offset, batches, .. } => {
            ("clean".into(), format!("clean ({batches} batches, data ends at offset {end_offset})"))
        }
        SegmentEnd::TornTail { at, fault, .. } => ("torn".into(), format!("torn at offset {at}: {fault}")),
        // A scan that succeeded never reports corruption per segment; keep the arm total anyway.
        SegmentEnd::Corrupt(c) => ("corrupt".into(), format!("corrupt: {c}")),
    }
}

fn file_of(report: &LogReport, no: u64) -> String {
    report.files.iter().find(|(n, _)| *n == no).map(|(_, f)| f.clone()).unwrap_or_default()
}

/// One session: segments sharing a session start (and session id when the header is readable).
struct Session {
    start_unix_s: i64,
    session_id: Option<u64>,
    segments: Vec<usize>,
}

fn sessions(report: &LogReport) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    for (i, s) in report.state.segments.iter().enumerate() {
        let name = file_of(report, s.segment_no);
        let start =
            s.header.map(|h| h.session_start_unix_s).or_else(|| SegmentName::parse(&name).map(|n| n.session_start_unix_s)).unwrap_or(0);
        let sid = s.header.map(|h| h.session_id);
        match out.last_mut() {
            Some(last) if last.start_unix_s == start && (sid.is_none() || last.session_id.is_none() || last.session_id == sid) => {
                last.session_id = last.session_id.or(sid);
                last.segments.push(i);
            }
            _ => out.push(Session { start_unix_s: start, session_id: sid, segments: vec![i] }),
        }
    }
    out
}

fn lsn_range(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("{a}..={b}"),
        _ => "-".into(),
    }
}

/// `tradewal inspect DIR [--json]`.
pub fn inspect(dir: &Path, as_json: bool) -> CmdResult {
    let report = scan_dir(dir, 2, |_, _| {})?;
    let st = &report.state;
    let last_lsn = (st.next_lsn > 1 && st.first_lsn.is_some()).then(|| st.next_lsn - 1);
    let torn = st.torn_tail.as_ref().map(|t| (file_of(&report, t.segment), t));
    let sessions = sessions(&report);
    // The manifest's acknowledged LSN (a damaged manifest shows as its error), and what the
    // storage-stack table picks for this directory with default settings.
    let manifest = tradewal::manifest::load(dir);
    let manifest_lsn = manifest.as_ref().ok().and_then(|m| m.as_ref().map(|m| m.acked_lsn));
    let manifest_err = manifest.as_ref().err().map(|e| e.to_string());
    // Where the next `Wal::open` starts reading records: the newest segment the manifest lists as
    // holding data (older ones get a header check at open; this command reads them all).
    let open_reads_from = manifest.as_ref().ok().and_then(|m| m.as_ref().and_then(|m| m.used.map(|(_, hi)| hi)));
    let stack = tradewal::StorageStack::probe(dir, false);
    let out = if as_json {
        let segs = |idx: &[usize]| -> Vec<Value> {
            idx.iter()
                .map(|&i| {
                    let s = &st.segments[i];
                    let (end, detail) = end_text(&s.end);
                    json!({
                        "file": file_of(&report, s.segment_no),
                        "segment": s.segment_no,
                        "first_lsn": s.first_lsn,
                        "last_lsn": s.last_lsn,
                        "counts": counts_json(&s.counts),
                        "end": end,
                        "end_detail": detail,
                        "epoch": s.header.map(|h| format!("{:016x}", h.epoch)),
                        "k": s.header.map(|h| h.k),
                        "segment_bytes": s.header.map(|h| h.segment_bytes),
                        "format_version": s.header.map(|_| s.version),
                        "ts_range": (s.first_lsn.is_some()).then(|| json!({"intents": s.ts_range.intents, "min_ts": s.ts_range.min_ts, "max_ts": s.ts_range.max_ts})),
                    })
                })
                .collect()
        };
        let v = json!({
            "dir": dir.display().to_string(),
            "log_id": st.log_id.map(|id| format!("{id:016x}")),
            "first_lsn": st.first_lsn,
            "last_lsn": last_lsn,
            "next_lsn": st.next_lsn,
            "counts": counts_json(&st.counts),
            "in_doubt": st.in_doubt.len(),
            "torn_tail": torn.as_ref().map(|(f, t)| json!({"file": f, "segment": t.segment, "offset": t.at, "lsn": t.lsn, "detail": t.fault.to_string()})),
            "tmp_files": report.tmp_files,
            "manifest_lsn": manifest_lsn,
            "manifest_error": manifest_err,
            "open_reads_from_segment": open_reads_from,
            "storage": match &stack {
                Ok(s) => json!({
                    "fs": s.facts.fs_name(),
                    "fs_magic": format!("{:#x}", s.facts.fs_magic),
                    "mount_point": s.facts.mount_point.display().to_string(),
                    "device": s.facts.device,
                    "write_cache": s.facts.write_cache,
                    "fua": s.facts.fua,
                    "write_path": s.write_path.to_string(),
                    "verified": s.verified,
                    "reason": s.reason,
                    "warning": s.warning,
                }),
                Err(e) => json!({ "error": e.to_string() }),
            },
            "sessions": sessions.iter().map(|s| json!({
                "start_unix_s": s.start_unix_s,
                "start": utc(s.start_unix_s),
                "session_id": s.session_id.map(|id| format!("{id:016x}")),
                "segments": segs(&s.segments),
            })).collect::<Vec<_>>(),
        });
        format!("{v}\n")
    } else {
        let mut o = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(o, "log directory  {}", dir.display());
        let _ = writeln!(o, "log id         {}", st.log_id.map_or("-".into(), |id| format!("{id:016x}")));
        let _ = writeln!(o, "LSN range      {} (next LSN {})", lsn_range(st.first_lsn, last_lsn), st.next_lsn);
        let _ = writeln!(o, "records        {}", counts_text(&st.counts));
        let _ = writeln!(o, "in doubt       {}", st.in_doubt.len());
        match &torn {
            Some((f, t)) => {
                let _ = writeln!(o, "torn tail      {f} at offset {} (LSN {} on never acknowledged): {}", t.at, t.lsn, t.fault);
            }
            None => {
                let _ = writeln!(o, "torn tail      none");
            }
        }
        match (&manifest_err, manifest_lsn) {
            (Some(e), _) => {
                let _ = writeln!(o, "manifest       unreadable: {e}");
            }
            (None, Some(l)) => {
                let _ = writeln!(o, "manifest       acknowledged through LSN {l}");
                if let Some(n) = open_reads_from {
                    let _ = writeln!(o, "open reads     from segment {n} (older segments: header check at open; verify reads all)");
                }
            }
            (None, None) => {
                let _ = writeln!(o, "manifest       none");
            }
        }
        match &stack {
            Ok(s) => {
                let _ = writeln!(o, "storage        {s}");
                if let Some(w) = &s.warning {
                    let _ = writeln!(o, "               warning: {w}");
                }
            }
            Err(e) => {
                let _ = writeln!(o, "storage        unknown: {e}");
            }
        }
        if !report.tmp_files.is_empty() {
            let _ = writeln!(o, "leftover tmp   {}", report.tmp_files.join(", "));
        }
        let _ = writeln!(o, "sessions       {}", sessions.len());
        for s in &sessions {
            let _ = writeln!(
                o,
                "  session started {}{}",
                utc(s.start_unix_s),
                s.session_id.map_or(String::new(), |id| format!(" (id {id:016x})"))
            );
            for &i in &s.segments {
                let seg = &st.segments[i];
                let (_, detail) = end_text(&seg.end);
                let _ = writeln!(
                    o,
                    "    #{:<6} {}  LSN {}  {}  {}",
                    seg.segment_no,
                    file_of(&report, seg.segment_no),
                    lsn_range(seg.first_lsn, seg.last_lsn),
                    counts_text(&seg.counts),
                    detail
                );
            }
        }
        o
    };
    write_stdout(out.as_bytes())
}

pub(crate) fn write_stdout(bytes: &[u8]) -> CmdResult {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(Failure::usage(format!("writing stdout: {e}"))),
    }
}

/// `tradewal verify DIR`.
pub fn verify(dir: &Path) -> CmdResult {
    // A record counter on stderr while a large log is checked (hidden when stderr is not a terminal).
    let pb = progress(None, "verifying").with_finish(indicatif::ProgressFinish::AndClear);
    let report = scan_dir(dir, 1, |_, _| pb.inc(1));
    pb.finish_and_clear();
    let report = report?;
    let st = &report.state;
    let data_segments = st.segments.iter().filter(|s| !matches!(s.end, SegmentEnd::Empty)).count();
    let last_lsn = (st.first_lsn.is_some()).then(|| st.next_lsn - 1);
    let mut o = format!(
        "ok: {} segment files ({} with data), LSN {}, {}, {} in doubt\n",
        st.segments.len(),
        data_segments,
        lsn_range(st.first_lsn, last_lsn),
        counts_text(&st.counts),
        st.in_doubt.len()
    );
    if let Some(t) = &st.torn_tail {
        o.push_str(&format!(
            "torn tail (not corruption): {} at offset {}, LSN {} on never acknowledged: {}; the next open truncates it\n",
            file_of(&report, t.segment),
            t.at,
            t.lsn,
            t.fault
        ));
    }
    write_stdout(o.as_bytes())
}

/// `tradewal recover DIR`: the in-doubt intents as JSONL intent lines, LSN order.
pub fn recover(dir: &Path) -> CmdResult {
    let report = scan_dir(dir, 2, |_, _| {})?;
    let mut buf = Vec::with_capacity(report.state.in_doubt.len() * 128);
    let mut by_lsn: BTreeMap<u64, _> = BTreeMap::new();
    for d in &report.state.in_doubt {
        by_lsn.insert(d.lsn, d);
    }
    for d in by_lsn.values() {
        write_in_doubt_line(&mut buf, d).map_err(|e| Failure::usage(e.to_string()))?;
    }
    write_stdout(&buf)
}

//! Read-only access to a log directory shared by the commands: a scan that never locks and
//! never writes, with errors turned into one-line failures, plus output helpers.

use crate::Failure;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, IsTerminal};
use std::path::Path;
use tradewal::{read_log, LogReport, WalError};
use tradewal_codec::{Frame, Record};

/// Scans `dir` read-only ([`read_log`]: no lock, no writes). Corruption gets exit code
/// `corrupt_code`; any other error, and a directory that is not a tradewal log, exit code 2.
pub fn scan_dir(dir: &Path, corrupt_code: u8, visit: impl FnMut(&Frame<'_>, &Record)) -> Result<LogReport, Failure> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Failure::usage(format!("{} is not a directory", dir.display()))),
        Err(e) => return Err(Failure::usage(format!("{}: {e}", dir.display()))),
    }
    match read_log(dir, visit) {
        Ok(r) if !r.is_log_dir => {
            Err(Failure::usage(format!("{} is not a tradewal log directory (no segment files, no LOCK)", dir.display())))
        }
        Ok(r) => Ok(r),
        Err(e @ WalError::Corrupt { .. }) => Err(Failure { code: corrupt_code, message: e.to_string() }),
        Err(e) => Err(Failure::usage(format!("{}: {e}", dir.display()))),
    }
}

/// Reads the segments of `dir` that a time seek needs ([`tradewal::read_time_range`]), read-only,
/// with the errors of [`scan_dir`] (corruption and everything else exit 2).
pub fn seek_dir(dir: &Path, seek: tradewal::TimeSeek, visit: impl FnMut(&Frame<'_>, &Record)) -> Result<tradewal::SeekReport, Failure> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Failure::usage(format!("{} is not a directory", dir.display()))),
        Err(e) => return Err(Failure::usage(format!("{}: {e}", dir.display()))),
    }
    match tradewal::read_time_range(dir, seek, visit) {
        Ok(r) if !r.is_log_dir => {
            Err(Failure::usage(format!("{} is not a tradewal log directory (no segment files, no LOCK)", dir.display())))
        }
        Ok(r) => Ok(r),
        Err(e @ WalError::Corrupt { .. }) => Err(Failure { code: 2, message: e.to_string() }),
        Err(e) => Err(Failure::usage(format!("{}: {e}", dir.display()))),
    }
}

/// True when `e` (or its cause) is a closed pipe: the reader went away, which ends output quietly.
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// A progress bar on stderr, hidden when stderr is not a terminal. `len` None: a counter.
pub fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    if !io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if len.is_some() {
        format!("{what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)")
    } else {
        format!("{what} {{spinner}} {{pos}} ({{per_sec}})")
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// UTC `YYYY-MM-DD HH:MM:SS` of Unix seconds.
pub fn utc(unix_s: i64) -> String {
    let (y, mo, d, h, mi, s) = tradewal_codec::format::civil_from_unix(unix_s);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

//! Errors of the engine.

use crate::io::IoFault;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use tradewal_codec::{CorruptReason, IntentError, Lsn};

/// Why the log was poisoned (I6): the first I/O fault, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonCause {
    /// The fault.
    pub fault: IoFault,
    /// Segment file the failed write or flush targeted (empty when not file-specific).
    pub file: String,
    /// Byte offset of the failed write.
    pub offset: u64,
}

impl fmt::Display for PoisonCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} at offset {})", self.fault, self.file, self.offset)
    }
}

/// Everything that can go wrong in tradewal. Every variant says what happened; none is retried
/// silently.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// The intent is invalid; nothing was written.
    #[error("invalid intent: {0}")]
    InvalidIntent(#[from] IntentError),
    /// The queue is full; nothing was written. Only [`Wal::try_append`](crate::Wal::try_append)
    /// returns this; `append` waits for room instead.
    #[error("append queue full")]
    Full,
    /// Too many intents are in doubt (no outcome yet); resolve some first. Nothing was written.
    #[error("{limit} intents already in doubt (WalConfig::max_in_doubt)")]
    InDoubtLimit {
        /// The configured limit.
        limit: usize,
    },
    /// `mark_executed`/`mark_aborted` named an LSN that is not an in-doubt intent. Nothing was written.
    #[error("LSN {lsn} is not an in-doubt intent")]
    NotInDoubt {
        /// The LSN given.
        lsn: Lsn,
    },
    /// An outcome that breaks the log's rules for its intent (a quantity that falls or exceeds
    /// the intent's, an abort after a fill, fields out of range). Nothing was written.
    #[error("outcome refused: {0}")]
    OutcomeRule(tradewal_codec::OutcomeError),
    /// `append_group` with no intents, or more than `max` (`GROUP_MAX_LEGS`, 32, or the
    /// queue capacity if that is smaller). Nothing was written.
    #[error("a group holds 1..={max} intents, not {legs}")]
    GroupSize {
        /// The number of intents given.
        legs: usize,
        /// The most a group may hold with this configuration.
        max: usize,
    },
    /// Another writer (in this or another process) held the directory for all of
    /// [`WalConfig::lock_timeout`](crate::WalConfig::lock_timeout).
    #[error("{} is locked by another writer{}", dir.display(), pid.map_or(String::new(), |p| format!(" (pid {p})")))]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id, as it recorded it in the `LOCK` file (None when unknown).
        pid: Option<u32>,
    },
    /// Acknowledged data is damaged; the log refuses to open (I1, I4).
    #[error("corruption in {} at offset {offset}, expected LSN {expected_lsn}: {reason}", if file.is_empty() { format!("segment {segment} (no file)") } else { format!("{file} (segment {segment})") })]
    Corrupt {
        /// Segment number.
        segment: u64,
        /// Segment file name (may be empty when the segment is missing).
        file: String,
        /// Byte offset in the file.
        offset: u64,
        /// LSN expected there.
        expected_lsn: Lsn,
        /// What is wrong: the codec's structured reason, or [`CorruptReason::Log`] for what the
        /// engine checks around the bytes (file lengths, segment numbers, the manifest).
        reason: CorruptReason,
    },
    /// A write or flush failed earlier; the log accepts nothing more until it is reopened (I6).
    #[error("log poisoned by an earlier I/O failure: {cause}")]
    Poisoned {
        /// The first fault.
        cause: Arc<PoisonCause>,
    },
    /// The log was closed (or dropped) before this record was written: it is not on the device.
    #[error("log closed")]
    Closed,
    /// The writer thread stopped without learning whether this record reached the device (it
    /// died). Treat the record as in doubt: reopen the log, and recovery says whether it is there.
    #[error("outcome unknown (the writer stopped before it knew): treat the record as in doubt")]
    OutcomeUnknown,
    /// An I/O error outside the write path (open, recovery, rotation). Its message includes the
    /// cause, so it has no [`source`](std::error::Error::source): a chain printer (anyhow's
    /// `{:#}`) shows the cause once.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The error (its errno: [`std::io::Error::raw_os_error`]).
        cause: Arc<std::io::Error>,
    },
    /// Invalid configuration, or an environment the configuration does not allow (e.g. no O_DIRECT).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl WalError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        WalError::Io { context: context.into(), cause: Arc::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_names_the_file_or_says_there_is_none() {
        let e = |file: &str| WalError::Corrupt {
            segment: 3,
            file: file.into(),
            offset: 0,
            expected_lsn: 9,
            reason: CorruptReason::Log("r".into()),
        };
        assert_eq!(e("wal_x.log").to_string(), "corruption in wal_x.log (segment 3) at offset 0, expected LSN 9: r");
        assert_eq!(e("").to_string(), "corruption in segment 3 (no file) at offset 0, expected LSN 9: r");
    }

    #[test]
    fn io_prints_its_cause_once() {
        use std::error::Error as _;
        let e = WalError::io("reading wal_x.log", std::io::Error::from_raw_os_error(libc::EIO));
        let text = e.to_string();
        assert!(text.starts_with("reading wal_x.log: ") && text.contains("Input/output error"), "{text}");
        assert!(e.source().is_none(), "the cause is in the message, not also a source");
        assert!(format!("{:#}", anyhow_like(&e)).matches("Input/output error").count() == 1);
    }

    /// What a chain printer shows: the message, then each source.
    fn anyhow_like(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push_str(&format!(": {s}"));
            cur = s.source();
        }
        out
    }
}

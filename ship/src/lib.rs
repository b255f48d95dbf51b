//! Ships a tradewal log into NATS JetStream and reads it back (docs/design.md, "Beyond one
//! machine").
//!
//! [`ship`] follows a log directory with a named [`tradewal::Follower`] (so only acknowledged
//! records leave the host, and retention keeps what the shipper has not shipped yet) and publishes
//! every intent and outcome (checkpoints are not shipped) as one JetStream message:
//!
//! - subject `PREFIX.<log_id>` (16 hex digits; default prefix `tradewal`),
//! - body: the record's raw JSONL line of docs/jsonl.md (with `kind` and `lsn`), without the newline,
//! - header `Nats-Msg-Id: <log_id>:<lsn>`, so the stream's duplicate window drops a resend,
//! - header `Tradewal-Prev-Lsn: <lsn>`: the LSN of the message shipped before it for this log
//!   (0 for the first), so a reader can check that nothing is missing between two messages,
//! - header `Nats-Expected-Last-Sequence`: the stream sequence of the message before it, so the
//!   server stores a message right after its predecessor or not at all (one log per stream).
//!
//! Publishes are pipelined (up to [`ShipConfig::max_in_flight`] awaiting their JetStream ack); the
//! named cursor is committed only up to the highest LSN below which every record was acknowledged
//! by the stream. A start (and every restart after a stall) resumes after the cursor, or after the
//! last message the stream holds for this log when that is later, or from that last message when
//! the stream lost messages it had acknowledged (docs/design.md, "What the stream promises"). [`read_stream`] and [`in_doubt`] give back what a stream holds
//! for one log, checked for order and gaps: what `tradewal recover --nats` prints.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod read;
mod run;

pub use read::{in_doubt, read_stream, ShippedRecord};
pub use run::ship;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tradewal::{FollowError, Lsn};

/// The default subject prefix: messages of log `L` go to `tradewal.<L as 16 hex digits>`.
pub const DEFAULT_PREFIX: &str = "tradewal";

/// The header naming the LSN shipped before a message for the same log (0: none).
pub const PREV_LSN_HEADER: &str = "Tradewal-Prev-Lsn";

/// The subject of log `log_id`'s messages under `prefix`.
pub fn subject(prefix: &str, log_id: u64) -> String {
    format!("{prefix}.{log_id:016x}")
}

/// The `Nats-Msg-Id` of record `lsn` of log `log_id`.
pub fn message_id(log_id: u64, lsn: Lsn) -> String {
    format!("{log_id:016x}:{lsn}")
}

/// Parses a `Nats-Msg-Id` written by [`message_id`].
pub fn parse_message_id(id: &str) -> Option<(u64, Lsn)> {
    let (log, lsn) = id.split_once(':')?;
    if log.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(log, 16).ok()?, lsn.parse().ok()?))
}

/// What [`ship`] does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShipConfig {
    /// The log directory.
    pub dir: PathBuf,
    /// NATS server URLs (`nats://host:port`; several for a cluster).
    pub urls: Vec<String>,
    /// The JetStream stream (created when missing, checked when present).
    pub stream: String,
    /// Subject prefix ([`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// The named cursor in the log directory (`readers/NAME.cursor`).
    pub cursor: String,
    /// Replicas of a stream this creates (1 when `None`); when the stream exists and this is
    /// `Some`, its replica count must match.
    pub replicas: Option<usize>,
    /// Publishes awaiting their JetStream ack at most.
    pub max_in_flight: usize,
    /// Ship what is acknowledged now, then return (instead of following forever).
    pub once: bool,
    /// How long a publish may wait for its JetStream ack before the shipper stalls and resends.
    pub ack_timeout: Duration,
}

impl ShipConfig {
    /// Defaults: prefix [`DEFAULT_PREFIX`], cursor `ship-STREAM`, 1 replica for a new stream,
    /// 4 096 publishes in flight, follow forever, 5 s ack timeout. `urls` is comma-separated.
    pub fn new(dir: impl Into<PathBuf>, urls: &str, stream: &str) -> Self {
        ShipConfig {
            dir: dir.into(),
            urls: urls.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect(),
            stream: stream.to_string(),
            prefix: DEFAULT_PREFIX.to_string(),
            cursor: format!("ship-{stream}"),
            replicas: None,
            max_in_flight: 4096,
            once: false,
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// Live counters of a running [`ship`], readable from another thread.
#[derive(Debug, Default)]
pub struct ShipProgress {
    shipped: AtomicU64,
    acknowledged: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    stalls: AtomicU64,
    log_id: AtomicU64,
}

impl ShipProgress {
    /// Every record up to this LSN is in the stream (or is a checkpoint, which is not shipped).
    pub fn shipped(&self) -> Lsn {
        self.shipped.load(Ordering::Acquire)
    }

    /// The writer's durable watermark when last looked at (0: no live writer seen).
    pub fn acknowledged(&self) -> Lsn {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Records behind the writer: [`acknowledged`](Self::acknowledged) minus [`shipped`](Self::shipped).
    pub fn lag(&self) -> u64 {
        self.acknowledged().saturating_sub(self.shipped())
    }

    /// Messages the stream acknowledged in this run (duplicates included).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Message body bytes the stream acknowledged in this run.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Stalls (a publish failed or timed out and everything unacknowledged was resent).
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }

    /// The log's id, once known (0 before).
    pub fn log_id(&self) -> u64 {
        self.log_id.load(Ordering::Relaxed)
    }
}

/// Something a running [`ship`] reports (the CLI prints each as one line on stderr).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ShipEvent {
    /// Shipping starts: after `from - 1`, the later of the cursor and the stream's last message.
    Started {
        /// The log's id.
        log_id: u64,
        /// The subject.
        subject: String,
        /// The first LSN that may be published.
        from: Lsn,
        /// The cursor's committed LSN.
        cursor: Lsn,
        /// The last LSN the stream held for this log (0: none).
        stream_last: Lsn,
    },
    /// The connection to the server dropped (the client reconnects by itself).
    Disconnected,
    /// The client is connected again.
    Reconnected,
    /// A publish failed or was not acknowledged in time, or the connection dropped: after
    /// `retry_in` the shipper starts again, on a new connection, after the last message the
    /// stream holds for the log.
    Stalled {
        /// The first LSN not acknowledged by the stream.
        at: Lsn,
        /// What went wrong.
        error: String,
        /// The pause before the resend.
        retry_in: Duration,
    },
    /// Publishing goes on after a stall (on a new connection, from what the stream holds).
    Resumed {
        /// The first LSN published again.
        at: Lsn,
    },
    /// The stream no longer holds records up to `through` that it acknowledged earlier (the
    /// cursor says so): a single server killed before it wrote them to disk, or a purge. They
    /// are shipped again from `from`.
    Reshipping {
        /// The first LSN shipped again.
        from: Lsn,
        /// The cursor's LSN.
        through: Lsn,
    },
}

/// Why [`ship`], [`read_stream`] or [`in_doubt`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    /// A URL does not parse, or no URL was given.
    #[error("bad NATS URL {0:?}")]
    BadUrl(String),
    /// The first connection failed (the server is unreachable or refused us).
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The URLs tried.
        url: String,
        /// The client's reason.
        reason: String,
    },
    /// The stream is missing, does not take the log's subject, or does not match the options.
    #[error("stream {stream}: {reason}")]
    Stream {
        /// The stream.
        stream: String,
        /// What is wrong.
        reason: String,
    },
    /// The stream's messages for this subject are not this log's, or not in order, or some are
    /// missing.
    #[error("stream {stream}, subject {subject}: {reason}")]
    Foreign {
        /// The stream.
        stream: String,
        /// The subject.
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// The server refused a publish (a stream limit, a bad message): shipping stops; the cursor
    /// stays below `lsn`.
    #[error("the server refused LSN {lsn}: {reason}")]
    Refused {
        /// The LSN refused.
        lsn: Lsn,
        /// The server's reason.
        reason: String,
    },
    /// The log directory holds no segment (not a tradewal log, or nothing written yet).
    #[error("{0}: no tradewal segment in this directory")]
    NoLog(PathBuf),
    /// Reading the log failed (includes a gap: retention removed a segment not yet shipped).
    #[error(transparent)]
    Follow(#[from] FollowError),
    /// A request to the server failed.
    #[error("{what}: {reason}")]
    Request {
        /// What was asked.
        what: String,
        /// The client's reason.
        reason: String,
    },
}

/// Parses comma-separated or listed URLs for the client.
fn server_addrs(urls: &[String]) -> Result<Vec<async_nats::ServerAddr>, ShipError> {
    if urls.is_empty() {
        return Err(ShipError::BadUrl(String::new()));
    }
    urls.iter().map(|u| u.parse::<async_nats::ServerAddr>().map_err(|_| ShipError::BadUrl(u.clone()))).collect()
}

/// Connects (no retry on the first connection: an unreachable server is an error at once).
async fn connect(
    urls: &[String],
    events: Option<tokio::sync::mpsc::UnboundedSender<async_nats::Event>>,
) -> Result<async_nats::Client, ShipError> {
    let addrs = server_addrs(urls)?;
    let mut opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(3));
    if let Some(tx) = events {
        opts = opts.event_callback(move |ev| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(ev);
            }
        });
    }
    opts.connect(addrs).await.map_err(|e| ShipError::Connect { url: urls.join(","), reason: e.to_string() })
}

/// True when NATS subject pattern `pattern` (with `*` and `>` wildcards) matches `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_and_reject_other_shapes() {
        let id = message_id(0x5f1e_2d3c_4b5a_6978, 42);
        assert_eq!(id, "5f1e2d3c4b5a6978:42");
        assert_eq!(parse_message_id(&id), Some((0x5f1e_2d3c_4b5a_6978, 42)));
        for bad in ["", "abc", "5f1e2d3c4b5a6978", "5f1e2d3c4b5a697:1", "5f1e2d3c4b5a6978:x", "zz1e2d3c4b5a6978:1"] {
            assert_eq!(parse_message_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn subject_patterns_match_like_nats() {
        assert!(subject_matches("tradewal.*", "tradewal.00000000000000ff"));
        assert!(subject_matches("tradewal.>", "tradewal.00000000000000ff"));
        assert!(subject_matches(">", "tradewal.x"));
        assert!(subject_matches("tradewal.00000000000000ff", "tradewal.00000000000000ff"));
        assert!(!subject_matches("tradewal.*", "tradewal.a.b"));
        assert!(!subject_matches("other.*", "tradewal.a"));
        assert!(!subject_matches("tradewal", "tradewal.a"));
        assert!(!subject_matches("tradewal.a.b", "tradewal.a"));
    }

    #[test]
    fn config_defaults_and_url_lists() {
        let c = ShipConfig::new("/tmp/x", "nats://127.0.0.1:4222, nats://127.0.0.1:4223", "TW");
        assert_eq!(c.urls, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
        assert_eq!(c.cursor, "ship-TW");
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert!(server_addrs(&c.urls).is_ok());
        assert!(matches!(server_addrs(&[]), Err(ShipError::BadUrl(_))));
        assert!(matches!(server_addrs(&["nats://a b:1".to_string()]), Err(ShipError::BadUrl(_))));
    }
}

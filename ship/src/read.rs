//! Reading one log's messages back from a stream, checked, and the in-doubt intents they imply.

use crate::run::{last_in_stream, not_reachable};
use crate::{connect, parse_message_id, subject, ShipConfig, ShipError, PREV_LSN_HEADER};
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::collections::BTreeMap;
use std::time::Duration;
use tradewal::Lsn;
use tradewal_codec::{Fill, InDoubt, RawLine, Record};

/// One message of a log in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedRecord {
    /// The record's LSN (from `Nats-Msg-Id`).
    pub lsn: Lsn,
    /// The LSN of the message shipped before it for this log (`Tradewal-Prev-Lsn`; 0: none).
    pub prev: Lsn,
    /// The message's sequence in the stream.
    pub stream_seq: u64,
    /// The body: the record's raw JSONL line (docs/jsonl.md), without a newline.
    pub payload: Bytes,
}

/// Every message the stream `stream` holds for log `log_id` under `prefix`, in stream order,
/// checked: each carries this log's message id, LSNs strictly increase, each message's
/// `Tradewal-Prev-Lsn` names the message before it (the first names 0, so nothing is missing at
/// the start). Errors: server unreachable, stream missing, no message for the log, any check
/// failing (with the stream sequence).
pub fn read_stream(urls: &str, stream: &str, prefix: &str, log_id: u64) -> Result<Vec<ShippedRecord>, ShipError> {
    let cfg = ShipConfig { prefix: prefix.to_string(), ..ShipConfig::new("", urls, stream) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ShipError::Request { what: "starting the async runtime".into(), reason: e.to_string() })?;
    rt.block_on(read(&cfg, log_id))
}

async fn read(cfg: &ShipConfig, log_id: u64) -> Result<Vec<ShippedRecord>, ShipError> {
    let client = connect(&cfg.urls, None).await?;
    let js = jetstream::new(client);
    let subject = subject(&cfg.prefix, log_id);
    let stream = match js.get_stream(&cfg.stream).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {
            return Err(ShipError::Stream { stream: cfg.stream.clone(), reason: "does not exist".into() })
        }
        Err(e) => return Err(not_reachable(cfg, &e.to_string())),
    };
    let foreign = |reason: String| ShipError::Foreign { stream: cfg.stream.clone(), subject: subject.clone(), reason };
    // The last message's stream sequence: read up to it (later ones may arrive while we read).
    let Some(last) = last_in_stream(&stream, cfg, &subject, log_id).await? else {
        return Err(foreign(format!("holds no message of log {log_id:016x}")));
    };
    let last_seq = last.seq;
    let consumer = stream
        .create_consumer(OrderedConfig { filter_subject: subject.clone(), deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .map_err(|e| not_reachable(cfg, &format!("creating a consumer on {subject}: {e}")))?;
    let mut messages = consumer.messages().await.map_err(|e| not_reachable(cfg, &format!("reading {subject}: {e}")))?;
    let mut out: Vec<ShippedRecord> = Vec::new();
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(not_reachable(cfg, &format!("reading {subject}: {e}"))),
            Ok(None) | Err(_) => {
                return Err(not_reachable(cfg, &format!("reading {subject}: no message for 10 s before sequence {last_seq}")))
            }
        };
        let seq = m.info().map_err(|e| not_reachable(cfg, &format!("message metadata: {e}")))?.stream_sequence;
        let r = checked(&m.message, seq, log_id, out.last()).map_err(foreign)?;
        out.push(r);
        if seq >= last_seq {
            return Ok(out);
        }
    }
}

/// Checks one message against the one before it.
fn checked(m: &async_nats::Message, seq: u64, log_id: u64, before: Option<&ShippedRecord>) -> Result<ShippedRecord, String> {
    let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
    let id = header(async_nats::header::NATS_MESSAGE_ID.as_ref());
    let lsn = match id.as_deref().and_then(parse_message_id) {
        Some((id, lsn)) if id == log_id => lsn,
        Some((id, _)) => return Err(format!("stream sequence {seq} belongs to log {id:016x}, not {log_id:016x}")),
        None => return Err(format!("stream sequence {seq} has no tradewal message id ({id:?})")),
    };
    let prev = header(PREV_LSN_HEADER)
        .and_then(|p| p.parse::<Lsn>().ok())
        .ok_or_else(|| format!("stream sequence {seq} (LSN {lsn}) has no {PREV_LSN_HEADER} header"))?;
    let expected = before.map_or(0, |b| b.lsn);
    if before.is_some_and(|b| lsn <= b.lsn) {
        return Err(format!("LSN {lsn} at stream sequence {seq} comes after LSN {expected}: out of order or duplicated"));
    }
    if prev != expected {
        return Err(format!(
            "LSN {lsn} at stream sequence {seq} follows LSN {prev} but the stream holds LSN {expected} before it: records are missing"
        ));
    }
    Ok(ShippedRecord { lsn, prev, stream_seq: seq, payload: m.payload.clone() })
}

/// The intents in doubt by the records of a log (intents with no terminal outcome, each with
/// its latest partial fill), in LSN order: what `tradewal recover DIR` lists for the same log.
/// Errors on a body that is not a raw JSONL line, or whose `lsn` differs from its message id.
pub fn in_doubt(records: &[ShippedRecord]) -> Result<Vec<InDoubt>, ShipError> {
    let mut open: BTreeMap<Lsn, InDoubt> = BTreeMap::new();
    for r in records {
        let bad = |reason: String| ShipError::Foreign { stream: String::new(), subject: String::new(), reason };
        let line: RawLine = serde_json::from_slice(&r.payload).map_err(|e| bad(format!("LSN {}: not a raw JSONL line: {e}", r.lsn)))?;
        let lsn = match line {
            RawLine::Intent { lsn, .. } | RawLine::Outcome { lsn, .. } => lsn,
            RawLine::Checkpoint { .. } => return Err(bad(format!("LSN {}: a checkpoint (the shipper never sends one)", r.lsn))),
        };
        if lsn != r.lsn {
            return Err(bad(format!("message id says LSN {} but the body says otherwise", r.lsn)));
        }
        match line.record() {
            Some(Record::Intent(intent)) => {
                open.insert(lsn, InDoubt { lsn, intent, fill: None });
            }
            Some(Record::Outcome(o)) => match Fill::of(&o) {
                Some(f) => {
                    if let Some(d) = open.get_mut(&o.intent_lsn) {
                        d.fill = Some(f);
                    }
                }
                None => {
                    open.remove(&o.intent_lsn);
                }
            },
            _ => unreachable!("intent and outcome lines give records"),
        }
    }
    Ok(open.into_values().collect())
}

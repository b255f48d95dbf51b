//! Record kinds and their decoded forms. The byte layouts are in [`body`](crate::body) (format
//! version 2, written by hand) and, for logs written before it, in [`v1`] (read only).

use crate::format::{Lsn, RECORD_BODY_MAX_BYTES};
use crate::intent::{OrderId, TradeIntent};
use serde::{Deserialize, Serialize};

/// Kind byte of a record frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A [`TradeIntent`].
    Intent = 1,
    /// An [`Outcome`] of an earlier intent.
    Outcome = 2,
    /// One part of a [`Checkpoint`].
    Checkpoint = 3,
}

impl RecordKind {
    /// Parses a kind byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Intent),
            2 => Some(RecordKind::Outcome),
            3 => Some(RecordKind::Checkpoint),
            _ => None,
        }
    }

    /// Lower-case name used in JSONL raw mode.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Intent => "intent",
            RecordKind::Outcome => "outcome",
            RecordKind::Checkpoint => "checkpoint",
        }
    }
}

/// The two outcomes of the shorthands `mark_executed` / `mark_aborted` (and of format 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutcomeKind {
    /// Fully filled ([`Status::Filled`]; JSONL `"exec":true`).
    Executed,
    /// Never sent ([`Status::Aborted`]; JSONL `"aborted":true`).
    Aborted,
}

/// What the venue (or the strategy) says became of an intent. Quantities are cumulative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Status {
    /// Fully filled (terminal). `qty` is the cumulative filled quantity (0 only in format 1
    /// logs: "not recorded"); `avg_price` 0 means not reported.
    Filled {
        /// Cumulative filled quantity.
        qty: f64,
        /// Average fill price, 0 = not reported.
        avg_price: f64,
    },
    /// Partly filled so far (not terminal: the intent stays in doubt).
    PartiallyFilled {
        /// Cumulative filled quantity, > 0.
        qty: f64,
        /// Average fill price, 0 = not reported.
        avg_price: f64,
    },
    /// Rejected by the venue (terminal).
    Rejected {
        /// The venue's reason code.
        reason: u32,
    },
    /// Cancelled (terminal), after `filled_qty` was filled.
    Cancelled {
        /// Cumulative quantity filled before the cancel (may be 0).
        filled_qty: f64,
    },
    /// Never sent (terminal).
    Aborted,
}

impl Status {
    /// Wire code: 1 Filled, 2 PartiallyFilled, 3 Rejected, 4 Cancelled, 5 Aborted.
    pub fn code(&self) -> u8 {
        match self {
            Status::Filled { .. } => 1,
            Status::PartiallyFilled { .. } => 2,
            Status::Rejected { .. } => 3,
            Status::Cancelled { .. } => 4,
            Status::Aborted => 5,
        }
    }

    /// True for every status but [`Status::PartiallyFilled`]: nothing may follow it.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Status::PartiallyFilled { .. })
    }

    /// The cumulative filled quantity it reports (0 for Rejected and Aborted).
    pub fn filled_qty(&self) -> f64 {
        match *self {
            Status::Filled { qty, .. } | Status::PartiallyFilled { qty, .. } => qty,
            Status::Cancelled { filled_qty } => filled_qty,
            Status::Rejected { .. } | Status::Aborted => 0.0,
        }
    }

    /// The average price it reports (0 = none or not reported).
    pub fn avg_price(&self) -> f64 {
        match *self {
            Status::Filled { avg_price, .. } | Status::PartiallyFilled { avg_price, .. } => avg_price,
            _ => 0.0,
        }
    }

    /// Snake-case name used in JSONL: `filled`, `partially_filled`, `rejected`, `cancelled`,
    /// `aborted`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Filled { .. } => "filled",
            Status::PartiallyFilled { .. } => "partially_filled",
            Status::Rejected { .. } => "rejected",
            Status::Cancelled { .. } => "cancelled",
            Status::Aborted => "aborted",
        }
    }

    /// Checks the status's own fields (finite, non-negative, > 0 where required), as the format
    /// requires. `legacy` allows the format-1 Filled with quantity 0 ("not recorded").
    pub fn validate(&self, legacy: bool) -> Result<(), OutcomeError> {
        let nonneg = |v: f64| v.is_finite() && v >= 0.0 && !v.is_sign_negative();
        let ok = match *self {
            Status::Filled { qty, avg_price } => nonneg(qty) && (qty > 0.0 || legacy) && nonneg(avg_price),
            Status::PartiallyFilled { qty, avg_price } => nonneg(qty) && qty > 0.0 && nonneg(avg_price),
            Status::Cancelled { filled_qty } => nonneg(filled_qty),
            Status::Rejected { .. } | Status::Aborted => true,
        };
        if ok {
            Ok(())
        } else {
            Err(OutcomeError::BadQuantity { status: self.as_str(), qty: self.filled_qty(), avg_price: self.avg_price() })
        }
    }
}

/// Why an outcome was refused. Nothing is written for a refused outcome.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OutcomeError {
    /// A quantity or price that is negative, not finite, or 0 where a fill needs more.
    #[error("{status}: quantity {qty} / average price {avg_price} out of range (finite, >= 0; a fill's quantity > 0)")]
    BadQuantity {
        /// The status's name.
        status: &'static str,
        /// The quantity given.
        qty: f64,
        /// The average price given.
        avg_price: f64,
    },
    /// The intent is not in doubt: unknown, or it already has a terminal outcome.
    #[error("LSN {lsn} is not an intent in doubt (unknown, or it already has a terminal outcome)")]
    NotInDoubt {
        /// The LSN named.
        lsn: Lsn,
    },
    /// A cumulative quantity below the intent's last reported one.
    #[error("LSN {lsn}: cumulative quantity {qty} is below the {previous} already reported")]
    QtyDecreased {
        /// The intent.
        lsn: Lsn,
        /// The quantity given.
        qty: f64,
        /// The last cumulative quantity.
        previous: f64,
    },
    /// A cumulative quantity above the intent's quantity.
    #[error("LSN {lsn}: cumulative quantity {qty} exceeds the intent's quantity {intent_qty}")]
    QtyExceedsIntent {
        /// The intent.
        lsn: Lsn,
        /// The quantity given.
        qty: f64,
        /// The intent's quantity.
        intent_qty: f64,
    },
    /// Aborted (never sent) after a fill was reported.
    #[error("LSN {lsn}: aborted (never sent) after a fill was reported")]
    AbortAfterFill {
        /// The intent.
        lsn: Lsn,
    },
}

/// The outcome of an intent, naming the intent's LSN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// LSN of the intent this reports on.
    pub intent_lsn: Lsn,
    /// What happened.
    pub status: Status,
    /// The venue's order id, when known.
    pub venue_order_id: Option<OrderId>,
    /// When the venue reported it, Unix nanoseconds; 0 = not recorded.
    pub ts_ns: i64,
}

impl Outcome {
    /// An outcome with only a status (no venue order id, no timestamp).
    pub fn new(intent_lsn: Lsn, status: Status) -> Self {
        Outcome { intent_lsn, status, venue_order_id: None, ts_ns: 0 }
    }

    /// The shorthand outcome of kind `kind` for an intent of quantity `intent_qty`: Executed is
    /// Filled with the whole quantity (average price not reported), Aborted is Aborted.
    pub fn shorthand(intent_lsn: Lsn, kind: OutcomeKind, intent_qty: f64) -> Self {
        let status = match kind {
            OutcomeKind::Executed => Status::Filled { qty: intent_qty, avg_price: 0.0 },
            OutcomeKind::Aborted => Status::Aborted,
        };
        Outcome::new(intent_lsn, status)
    }

    /// Checks this outcome against the state of its intent (`intent`, and `fill`, its latest
    /// partial fill): the log's rules of docs/design.md ("Record bodies"). The intent must be in
    /// doubt, which the caller checks (it holds the set).
    pub fn check_against(&self, intent: &TradeIntent, fill: Option<&Fill>, legacy: bool) -> Result<(), OutcomeError> {
        let lsn = self.intent_lsn;
        self.status.validate(legacy)?;
        if self.status == Status::Aborted {
            return if fill.is_some() { Err(OutcomeError::AbortAfterFill { lsn }) } else { Ok(()) };
        }
        if legacy && self.status.filled_qty() == 0.0 {
            // Format 1's Executed: the quantity was not recorded.
            return Ok(());
        }
        // Every status reports the cumulative quantity (Rejected: 0, so never after a fill).
        let qty = self.status.filled_qty();
        let previous = fill.map_or(0.0, |f| f.qty);
        if qty < previous {
            return Err(OutcomeError::QtyDecreased { lsn, qty, previous });
        }
        if qty > intent.qty {
            return Err(OutcomeError::QtyExceedsIntent { lsn, qty, intent_qty: intent.qty });
        }
        Ok(())
    }

    /// The shorthand kind this outcome amounts to, for counting: Filled is Executed, Aborted is
    /// Aborted, the rest `None`.
    pub fn kind(&self) -> Option<OutcomeKind> {
        match self.status {
            Status::Filled { .. } => Some(OutcomeKind::Executed),
            Status::Aborted => Some(OutcomeKind::Aborted),
            _ => None,
        }
    }
}

/// The latest partial fill of an intent still in doubt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fill {
    /// Cumulative filled quantity, > 0.
    pub qty: f64,
    /// Average price, 0 = not reported.
    pub avg_price: f64,
    /// The venue's order id, when reported.
    pub venue_order_id: Option<OrderId>,
    /// When it was reported, Unix ns; 0 = not recorded.
    pub ts_ns: i64,
}

impl Fill {
    /// The fill state a PartiallyFilled outcome leaves (None for any other status).
    pub fn of(o: &Outcome) -> Option<Fill> {
        match o.status {
            Status::PartiallyFilled { qty, avg_price } => Some(Fill { qty, avg_price, venue_order_id: o.venue_order_id, ts_ns: o.ts_ns }),
            _ => None,
        }
    }
}

/// An intent with no terminal outcome yet, carried by checkpoints and reported by recovery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InDoubt {
    /// LSN of the intent: a stable id to reconcile with the venue.
    pub lsn: Lsn,
    /// The intent as appended (with its group leg, if any).
    pub intent: TradeIntent,
    /// Its latest partial fill, if any was reported.
    pub fill: Option<Fill>,
}

/// The intents of one segment by time: how many, and their smallest and largest `ts_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TsRange {
    /// Intent records in the segment.
    pub intents: u64,
    /// Smallest `ts_ns` (0 when `intents` is 0).
    pub min_ts: i64,
    /// Largest `ts_ns` (0 when `intents` is 0).
    pub max_ts: i64,
}

impl TsRange {
    /// Adds an intent's timestamp.
    pub fn add(&mut self, ts: i64) {
        if self.intents == 0 {
            (self.min_ts, self.max_ts) = (ts, ts);
        } else {
            self.min_ts = self.min_ts.min(ts);
            self.max_ts = self.max_ts.max(ts);
        }
        self.intents += 1;
    }

    /// True when some intent of the range may lie in `[since, until]`.
    pub fn overlaps(&self, since: i64, until: i64) -> bool {
        self.intents > 0 && self.min_ts <= until && self.max_ts >= since
    }
}

/// Upper bound of one encoded [`InDoubt`] (entry header 40, intent 108, venue id 36).
pub const IN_DOUBT_ENTRY_MAX_BYTES: usize = 40 + INTENT_BODY_MAX_BYTES + crate::intent::ORDER_ID_MAX_BYTES;
/// Upper bound of an encoded intent body (56 fixed, symbol 16, client order id 36).
pub const INTENT_BODY_MAX_BYTES: usize = 56 + crate::intent::SYMBOL_MAX_BYTES + crate::intent::ORDER_ID_MAX_BYTES;
/// Upper bound of an encoded outcome body (40 fixed, venue order id 36).
pub const OUTCOME_BODY_MAX_BYTES: usize = 40 + crate::intent::ORDER_ID_MAX_BYTES;

/// One part of the in-doubt set, written at the start of every segment. A checkpoint is
/// `parts` records numbered `0..parts`, each with up to
/// [`CHECKPOINT_ENTRIES_PER_RECORD`](crate::format::CHECKPOINT_ENTRIES_PER_RECORD) entries in LSN order.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Index of this part.
    pub part: u32,
    /// Number of parts in this checkpoint (>= 1; an empty set is one empty part).
    pub parts: u32,
    /// The in-doubt intents of this part.
    pub entries: Vec<InDoubt>,
    /// Part 0 only: the intents of the previous segment by time, when the writer knew them.
    pub prev_range: Option<TsRange>,
}

/// A decoded record body.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A trade intent.
    Intent(TradeIntent),
    /// An outcome.
    Outcome(Outcome),
    /// A part of a checkpoint.
    Checkpoint(Checkpoint),
}

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Intent(_) => RecordKind::Intent,
            Record::Outcome(_) => RecordKind::Outcome,
            Record::Checkpoint(_) => RecordKind::Checkpoint,
        }
    }
}

/// Why a record body did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The bytes do not have the body's layout.
    #[error("body does not decode: {0}")]
    Decode(String),
    /// Bytes left over after the body.
    #[error("{0} trailing bytes after the body")]
    Trailing(usize),
    /// Decoded, but the content breaks a rule (invalid intent, bad checkpoint numbering).
    #[error("invalid body: {0}")]
    Invalid(String),
    /// A segment header names a format version this codec does not read.
    #[error("format version {0} is not read by this codec")]
    Version(u32),
}

/// Decodes and checks a record body of the given kind, laid out as format `version` (1 or 2).
/// Bounded: never allocates more than the body's own length allows.
pub fn decode_body(version: u32, kind: RecordKind, body: &[u8]) -> Result<Record, BodyError> {
    if body.len() > RECORD_BODY_MAX_BYTES {
        return Err(BodyError::Invalid(format!("body of {} bytes over the limit", body.len())));
    }
    let record = match version {
        1 => v1::decode(kind, body)?,
        2 => crate::body::decode(kind, body)?,
        v => return Err(BodyError::Version(v)),
    };
    check_record(&record, version)?;
    Ok(record)
}

/// The rules every decoded body must meet, whatever its version.
fn check_record(record: &Record, version: u32) -> Result<(), BodyError> {
    let invalid = |s: String| Err(BodyError::Invalid(s));
    match record {
        Record::Intent(i) => i.validate().map_err(|e| BodyError::Invalid(e.to_string())),
        Record::Outcome(o) => {
            if o.intent_lsn == 0 {
                return invalid("outcome names LSN 0".into());
            }
            o.status.validate(version == 1).map_err(|e| BodyError::Invalid(e.to_string()))
        }
        Record::Checkpoint(c) => {
            if c.parts == 0 || c.part >= c.parts {
                return invalid(format!("checkpoint part {} of {}", c.part, c.parts));
            }
            if c.entries.len() > crate::format::checkpoint_entries_per_record(version) {
                return invalid("too many checkpoint entries in one record".into());
            }
            if c.part != 0 && c.prev_range.is_some() {
                return invalid("a time range in a checkpoint part other than 0".into());
            }
            for w in c.entries.windows(2) {
                if w[0].lsn >= w[1].lsn {
                    return invalid("checkpoint entries not in LSN order".into());
                }
            }
            for e in &c.entries {
                if e.lsn == 0 {
                    return invalid("checkpoint entry with LSN 0".into());
                }
                e.intent.validate().map_err(|err| BodyError::Invalid(err.to_string()))?;
                if let Some(f) = e.fill {
                    let o = Outcome {
                        intent_lsn: e.lsn,
                        status: Status::PartiallyFilled { qty: f.qty, avg_price: f.avg_price },
                        venue_order_id: None,
                        ts_ns: 0,
                    };
                    o.check_against(&e.intent, None, false).map_err(|err| BodyError::Invalid(err.to_string()))?;
                }
            }
            Ok(())
        }
    }
}

/// Format 1 bodies: bincode 2 through serde (fixed-width little-endian integers), read only.
pub mod v1 {
    use super::*;
    use crate::intent::{Side, Symbol};

    pub(crate) fn bincode_config() -> impl bincode::config::Config {
        bincode::config::standard().with_little_endian().with_fixed_int_encoding().with_limit::<RECORD_BODY_MAX_BYTES>()
    }

    /// The format-1 intent layout (the seed's fields).
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    pub struct V1Intent {
        /// `ts_ns`.
        pub ts_ns: i64,
        /// `symbol`.
        pub symbol: Symbol,
        /// `side`.
        pub side: Side,
        /// `price`.
        pub price: f64,
        /// `qty`.
        pub qty: f64,
        /// `stop_loss`.
        pub stop_loss: f64,
        /// `take_profit`.
        pub take_profit: f64,
    }

    impl From<V1Intent> for TradeIntent {
        fn from(i: V1Intent) -> TradeIntent {
            TradeIntent {
                ts_ns: i.ts_ns,
                symbol: i.symbol,
                side: i.side,
                price: i.price,
                qty: i.qty,
                stop_loss: i.stop_loss,
                take_profit: i.take_profit,
                cl_ord_id: None,
                tag: None,
                group: None,
            }
        }
    }

    #[derive(Serialize, Deserialize)]
    struct V1Outcome {
        intent_lsn: Lsn,
        kind: OutcomeKind,
    }

    #[derive(Serialize, Deserialize)]
    struct V1InDoubt {
        lsn: Lsn,
        intent: V1Intent,
    }

    #[derive(Serialize, Deserialize)]
    struct V1Checkpoint {
        part: u32,
        parts: u32,
        entries: Vec<V1InDoubt>,
    }

    fn decode_exact<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, BodyError> {
        let (v, used) =
            bincode::serde::borrow_decode_from_slice::<T, _>(body, bincode_config()).map_err(|e| BodyError::Decode(e.to_string()))?;
        if used != body.len() {
            return Err(BodyError::Trailing(body.len() - used));
        }
        Ok(v)
    }

    /// Decodes a format-1 body (no rule checks beyond the layout; `decode_body` adds them).
    pub fn decode(kind: RecordKind, body: &[u8]) -> Result<Record, BodyError> {
        Ok(match kind {
            RecordKind::Intent => Record::Intent(decode_exact::<V1Intent>(body)?.into()),
            RecordKind::Outcome => {
                let o: V1Outcome = decode_exact(body)?;
                Record::Outcome(Outcome::new(
                    o.intent_lsn,
                    match o.kind {
                        // Format 1 did not record the quantity: 0 = "not recorded".
                        OutcomeKind::Executed => Status::Filled { qty: 0.0, avg_price: 0.0 },
                        OutcomeKind::Aborted => Status::Aborted,
                    },
                ))
            }
            RecordKind::Checkpoint => {
                let c: V1Checkpoint = decode_exact(body)?;
                Record::Checkpoint(Checkpoint {
                    part: c.part,
                    parts: c.parts,
                    entries: c.entries.into_iter().map(|e| InDoubt { lsn: e.lsn, intent: e.intent.into(), fill: None }).collect(),
                    prev_range: None,
                })
            }
        })
    }

    /// Encodes a format-1 intent body (tests and fixtures only: the engine writes format 2).
    pub fn encode_intent(i: &V1Intent, out: &mut [u8]) -> Option<usize> {
        bincode::serde::encode_into_slice(i, out, bincode_config()).ok()
    }
}

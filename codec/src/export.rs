//! JSONL export in the seed's schema (docs/jsonl.md).
//!
//! Intent lines, one per trade intent in LSN order:
//! `{"lsn":1,"ts":…,"sym":"BTCUSDT","side":"BUY","price":43250.5,"qty":0.25,"sl":42800.0,"tp":44100.0,"exec":false}`
//! with `"aborted":true` added for aborted intents. Raw lines carry every record with its `kind`.
//! Floats are printed in the shortest form that parses back to the same `f64`.

use crate::format::Lsn;
use crate::intent::{Side, Symbol, TradeIntent};
use crate::record::{InDoubt, OutcomeKind, Record};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// What became of an intent, as far as the exported range knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntentStatus {
    /// No outcome (yet): `"exec":false`.
    #[default]
    Pending,
    /// Executed: `"exec":true`.
    Executed,
    /// Aborted: `"exec":false,"aborted":true`.
    Aborted,
}

impl From<OutcomeKind> for IntentStatus {
    fn from(k: OutcomeKind) -> Self {
        match k {
            OutcomeKind::Executed => IntentStatus::Executed,
            OutcomeKind::Aborted => IntentStatus::Aborted,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One intent line of the export (also what consumers parse back).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntentLine {
    /// LSN of the intent.
    pub lsn: Lsn,
    /// Timestamp, nanoseconds (integer).
    pub ts: i64,
    /// Symbol.
    pub sym: Symbol,
    /// `"BUY"` or `"SELL"`.
    pub side: Side,
    /// Entry price.
    pub price: f64,
    /// Quantity.
    pub qty: f64,
    /// Stop loss (0 = not set).
    pub sl: f64,
    /// Take profit (0 = not set).
    pub tp: f64,
    /// True when an `Executed` outcome exists.
    pub exec: bool,
    /// True when an `Aborted` outcome exists (omitted otherwise).
    #[serde(default, skip_serializing_if = "is_false")]
    pub aborted: bool,
}

impl IntentLine {
    /// The line for `intent` at `lsn` with `status`.
    pub fn new(lsn: Lsn, intent: &TradeIntent, status: IntentStatus) -> Self {
        IntentLine {
            lsn,
            ts: intent.ts_ns,
            sym: intent.symbol,
            side: intent.side,
            price: intent.price,
            qty: intent.qty,
            sl: intent.stop_loss,
            tp: intent.take_profit,
            exec: status == IntentStatus::Executed,
            aborted: status == IntentStatus::Aborted,
        }
    }

    /// The intent this line describes.
    pub fn intent(&self) -> TradeIntent {
        TradeIntent {
            ts_ns: self.ts,
            symbol: self.sym,
            side: self.side,
            price: self.price,
            qty: self.qty,
            stop_loss: self.sl,
            take_profit: self.tp,
        }
    }

    /// The status this line describes.
    pub fn status(&self) -> IntentStatus {
        match (self.exec, self.aborted) {
            (true, _) => IntentStatus::Executed,
            (false, true) => IntentStatus::Aborted,
            _ => IntentStatus::Pending,
        }
    }
}

/// One line of the raw export: every record with its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RawLine {
    /// An intent record (no `exec`: outcomes are their own lines).
    Intent {
        /// LSN.
        lsn: Lsn,
        /// Timestamp, ns.
        ts: i64,
        /// Symbol.
        sym: Symbol,
        /// Side.
        side: Side,
        /// Price.
        price: f64,
        /// Quantity.
        qty: f64,
        /// Stop loss.
        sl: f64,
        /// Take profit.
        tp: f64,
    },
    /// An outcome record.
    Outcome {
        /// LSN of the outcome record.
        lsn: Lsn,
        /// LSN of the intent it resolves.
        intent_lsn: Lsn,
        /// `"executed"` or `"aborted"`.
        outcome: RawOutcome,
    },
    /// A checkpoint part.
    Checkpoint {
        /// LSN of the checkpoint record.
        lsn: Lsn,
        /// Part index.
        part: u32,
        /// Number of parts.
        parts: u32,
        /// In-doubt intents in this part.
        in_doubt: Vec<IntentLine>,
    },
}

/// Outcome spelling in raw lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawOutcome {
    /// Executed.
    Executed,
    /// Aborted.
    Aborted,
}

impl RawLine {
    /// The raw line of `record` at `lsn`.
    pub fn new(lsn: Lsn, record: &Record) -> Self {
        match record {
            Record::Intent(i) => RawLine::Intent {
                lsn,
                ts: i.ts_ns,
                sym: i.symbol,
                side: i.side,
                price: i.price,
                qty: i.qty,
                sl: i.stop_loss,
                tp: i.take_profit,
            },
            Record::Outcome(o) => RawLine::Outcome {
                lsn,
                intent_lsn: o.intent_lsn,
                outcome: match o.kind {
                    OutcomeKind::Executed => RawOutcome::Executed,
                    OutcomeKind::Aborted => RawOutcome::Aborted,
                },
            },
            Record::Checkpoint(c) => {
                RawLine::Checkpoint { lsn, part: c.part, parts: c.parts, in_doubt: c.entries.iter().map(in_doubt_line).collect() }
            }
        }
    }
}

fn in_doubt_line(d: &InDoubt) -> IntentLine {
    IntentLine::new(d.lsn, &d.intent, IntentStatus::Pending)
}

/// Writes one intent line (with a trailing newline).
pub fn write_intent_line<W: Write>(w: &mut W, lsn: Lsn, intent: &TradeIntent, status: IntentStatus) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &IntentLine::new(lsn, intent, status))?;
    w.write_all(b"\n")
}

/// Writes one raw line (with a trailing newline).
pub fn write_raw_line<W: Write>(w: &mut W, lsn: Lsn, record: &Record) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &RawLine::new(lsn, record))?;
    w.write_all(b"\n")
}

//! JSONL export in the seed's schema (docs/jsonl.md).
//!
//! Intent lines, one per trade intent in LSN order:
//! `{"lsn":1,"ts":…,"sym":"BTCUSDT","side":"BUY","price":43250.5,"qty":0.25,"sl":42800.0,"tp":44100.0,"exec":false}`
//! with `"aborted":true` added for aborted intents, then the format-2 keys when they have a value
//! (`cl_ord_id`, `tag`, `group`, `status`, `filled_qty`, `avg_price`, `reason`, `venue_order_id`).
//! Raw lines carry every record with its `kind`. Floats are printed in the shortest form that
//! parses back to the same `f64`.

use crate::format::Lsn;
use crate::intent::{OrderId, Side, Symbol, TradeIntent};
use crate::record::{InDoubt, Outcome, Record, Status, TsRange};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// What became of an intent, as far as the exported range knows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum IntentStatus {
    /// No outcome (yet): `"exec":false`.
    #[default]
    Pending,
    /// Filled, with nothing more known (the shorthand of format 1): `"exec":true`.
    Executed,
    /// Never sent, with nothing more known: `"exec":false,"aborted":true`.
    Aborted,
    /// The latest outcome, with its data (its `ts_ns` is in raw lines only).
    Reported(Outcome),
}

impl IntentStatus {
    /// The status an intent's latest outcome `o` gives it: [`Executed`](IntentStatus::Executed)
    /// or [`Aborted`](IntentStatus::Aborted) when the outcome carries no data beyond that,
    /// [`Reported`](IntentStatus::Reported) otherwise.
    pub fn of(o: &Outcome) -> Self {
        let bare = o.venue_order_id.is_none();
        match o.status {
            Status::Filled { qty, avg_price } if bare && qty == 0.0 && avg_price == 0.0 => IntentStatus::Executed,
            Status::Aborted if bare => IntentStatus::Aborted,
            _ => IntentStatus::Reported(Outcome { ts_ns: 0, ..*o }),
        }
    }

    /// The status of an intent in doubt with its latest partial fill.
    pub fn in_doubt(d: &InDoubt) -> Self {
        match d.fill {
            None => IntentStatus::Pending,
            Some(f) => IntentStatus::Reported(Outcome {
                intent_lsn: d.lsn,
                status: Status::PartiallyFilled { qty: f.qty, avg_price: f.avg_price },
                venue_order_id: f.venue_order_id,
                ts_ns: 0,
            }),
        }
    }

    fn outcome(&self) -> Option<&Outcome> {
        match self {
            IntentStatus::Reported(o) => Some(o),
            _ => None,
        }
    }
}

/// `status` values beyond what `exec` / `aborted` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// Filled (with data: `filled_qty`, `avg_price`, `venue_order_id`).
    Filled,
    /// Partly filled so far; still in doubt.
    PartiallyFilled,
    /// Rejected by the venue (`reason`).
    Rejected,
    /// Cancelled (`filled_qty` before the cancel).
    Cancelled,
    /// Never sent (with a venue order id).
    Aborted,
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
    /// True when the intent was fully filled (a Filled outcome exists).
    pub exec: bool,
    /// True when an Aborted outcome exists (omitted otherwise).
    #[serde(default, skip_serializing_if = "is_false")]
    pub aborted: bool,
    /// Client order id, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cl_ord_id: Option<OrderId>,
    /// Strategy/account tag, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u32>,
    /// The group's id (LSN of its leg 0) for an intent appended in a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Lsn>,
    /// The latest outcome's status when it carries data (see docs/jsonl.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LineStatus>,
    /// Cumulative filled quantity, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filled_qty: Option<f64>,
    /// Average fill price, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_price: Option<f64>,
    /// The venue's reject reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<u32>,
    /// The venue's order id, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_order_id: Option<OrderId>,
}

/// The data keys of an outcome (shared by intent lines and raw outcome lines).
fn outcome_keys(o: &Outcome) -> (Option<f64>, Option<f64>, Option<u32>, Option<OrderId>) {
    let filled = match o.status {
        Status::Cancelled { filled_qty } => Some(filled_qty),
        Status::Filled { qty, .. } | Status::PartiallyFilled { qty, .. } => (qty > 0.0).then_some(qty),
        _ => None,
    };
    let avg = Some(o.status.avg_price()).filter(|p| *p > 0.0);
    let reason = if let Status::Rejected { reason } = o.status { Some(reason) } else { None };
    (filled, avg, reason, o.venue_order_id)
}

fn line_status(s: &Status) -> LineStatus {
    match s {
        Status::Filled { .. } => LineStatus::Filled,
        Status::PartiallyFilled { .. } => LineStatus::PartiallyFilled,
        Status::Rejected { .. } => LineStatus::Rejected,
        Status::Cancelled { .. } => LineStatus::Cancelled,
        Status::Aborted => LineStatus::Aborted,
    }
}

impl IntentLine {
    /// The line for `intent` at `lsn` with `status`.
    pub fn new(lsn: Lsn, intent: &TradeIntent, status: IntentStatus) -> Self {
        let o = status.outcome();
        let (filled_qty, avg_price, reason, venue_order_id) = o.map_or((None, None, None, None), outcome_keys);
        let exec = matches!(status, IntentStatus::Executed) || o.is_some_and(|o| matches!(o.status, Status::Filled { .. }));
        let aborted = matches!(status, IntentStatus::Aborted) || o.is_some_and(|o| o.status == Status::Aborted);
        IntentLine {
            lsn,
            ts: intent.ts_ns,
            sym: intent.symbol,
            side: intent.side,
            price: intent.price,
            qty: intent.qty,
            sl: intent.stop_loss,
            tp: intent.take_profit,
            exec,
            aborted,
            cl_ord_id: intent.cl_ord_id,
            tag: intent.tag,
            group: intent.group.map(|g| g.group_lsn(lsn)),
            status: o.map(|o| line_status(&o.status)),
            filled_qty,
            avg_price,
            reason,
            venue_order_id,
        }
    }

    /// The intent this line describes (its group leg is not in the line: `group` is `None`).
    pub fn intent(&self) -> TradeIntent {
        TradeIntent {
            ts_ns: self.ts,
            symbol: self.sym,
            side: self.side,
            price: self.price,
            qty: self.qty,
            stop_loss: self.sl,
            take_profit: self.tp,
            cl_ord_id: self.cl_ord_id,
            tag: self.tag,
            group: None,
        }
    }

    /// The status this line describes.
    pub fn status(&self) -> IntentStatus {
        let status = match self.status {
            None if self.exec => return IntentStatus::Executed,
            None if self.aborted => return IntentStatus::Aborted,
            None => return IntentStatus::Pending,
            Some(LineStatus::Filled) => Status::Filled { qty: self.filled_qty.unwrap_or(0.0), avg_price: self.avg_price.unwrap_or(0.0) },
            Some(LineStatus::PartiallyFilled) => {
                Status::PartiallyFilled { qty: self.filled_qty.unwrap_or(0.0), avg_price: self.avg_price.unwrap_or(0.0) }
            }
            Some(LineStatus::Rejected) => Status::Rejected { reason: self.reason.unwrap_or(0) },
            Some(LineStatus::Cancelled) => Status::Cancelled { filled_qty: self.filled_qty.unwrap_or(0.0) },
            Some(LineStatus::Aborted) => Status::Aborted,
        };
        IntentStatus::Reported(Outcome { intent_lsn: self.lsn, status, venue_order_id: self.venue_order_id, ts_ns: 0 })
    }
}

/// A segment's intents by time, in raw checkpoint lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeLine {
    /// Intents in the previous segment.
    pub intents: u64,
    /// Smallest `ts`.
    pub min_ts: i64,
    /// Largest `ts`.
    pub max_ts: i64,
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
        /// Client order id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<OrderId>,
        /// Tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<u32>,
        /// Group id (LSN of leg 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<Lsn>,
        /// Leg index within the group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leg: Option<u16>,
        /// Legs in the group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        legs: Option<u16>,
    },
    /// An outcome record.
    Outcome {
        /// LSN of the outcome record.
        lsn: Lsn,
        /// LSN of the intent it reports on.
        intent_lsn: Lsn,
        /// `"executed"`, `"partially_filled"`, `"rejected"`, `"cancelled"` or `"aborted"`.
        outcome: RawOutcome,
        /// Cumulative filled quantity, when reported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filled_qty: Option<f64>,
        /// Average price, when reported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avg_price: Option<f64>,
        /// Reject reason code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<u32>,
        /// Venue order id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        venue_order_id: Option<OrderId>,
        /// When the venue reported it, ns (omitted when not recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<i64>,
    },
    /// A checkpoint part.
    Checkpoint {
        /// LSN of the checkpoint record.
        lsn: Lsn,
        /// Part index.
        part: u32,
        /// Number of parts.
        parts: u32,
        /// In-doubt intents in this part, with their latest partial fill.
        in_doubt: Vec<IntentLine>,
        /// Part 0 (format 2): the previous segment's intents by time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_range: Option<RangeLine>,
    },
}

/// Outcome spelling in raw lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOutcome {
    /// Filled.
    Executed,
    /// Never sent.
    Aborted,
    /// Partly filled.
    PartiallyFilled,
    /// Rejected.
    Rejected,
    /// Cancelled.
    Cancelled,
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
                cl_ord_id: i.cl_ord_id,
                tag: i.tag,
                group: i.group.map(|g| g.group_lsn(lsn)),
                leg: i.group.map(|g| g.index),
                legs: i.group.map(|g| g.size),
            },
            Record::Outcome(o) => {
                let (filled_qty, avg_price, reason, venue_order_id) = outcome_keys(o);
                RawLine::Outcome {
                    lsn,
                    intent_lsn: o.intent_lsn,
                    outcome: match o.status {
                        Status::Filled { .. } => RawOutcome::Executed,
                        Status::Aborted => RawOutcome::Aborted,
                        Status::PartiallyFilled { .. } => RawOutcome::PartiallyFilled,
                        Status::Rejected { .. } => RawOutcome::Rejected,
                        Status::Cancelled { .. } => RawOutcome::Cancelled,
                    },
                    filled_qty,
                    avg_price,
                    reason,
                    venue_order_id,
                    ts: (o.ts_ns != 0).then_some(o.ts_ns),
                }
            }
            Record::Checkpoint(c) => RawLine::Checkpoint {
                lsn,
                part: c.part,
                parts: c.parts,
                in_doubt: c.entries.iter().map(in_doubt_line).collect(),
                prev_range: c.prev_range.map(|r: TsRange| RangeLine { intents: r.intents, min_ts: r.min_ts, max_ts: r.max_ts }),
            },
        }
    }
}

impl RawLine {
    /// The record a raw intent or outcome line describes, as it was logged (`None` for a
    /// checkpoint line): what a consumer of shipped raw lines rebuilds the log's state from.
    pub fn record(&self) -> Option<Record> {
        match *self {
            RawLine::Intent { ts, sym, side, price, qty, sl, tp, cl_ord_id, tag, leg, legs, .. } => Some(Record::Intent(TradeIntent {
                ts_ns: ts,
                symbol: sym,
                side,
                price,
                qty,
                stop_loss: sl,
                take_profit: tp,
                cl_ord_id,
                tag,
                group: legs.map(|size| crate::intent::GroupLeg { index: leg.unwrap_or(0), size }),
            })),
            RawLine::Outcome { intent_lsn, outcome, filled_qty, avg_price, reason, venue_order_id, ts, .. } => {
                let (q, p) = (filled_qty.unwrap_or(0.0), avg_price.unwrap_or(0.0));
                let status = match outcome {
                    RawOutcome::Executed => Status::Filled { qty: q, avg_price: p },
                    RawOutcome::PartiallyFilled => Status::PartiallyFilled { qty: q, avg_price: p },
                    RawOutcome::Rejected => Status::Rejected { reason: reason.unwrap_or(0) },
                    RawOutcome::Cancelled => Status::Cancelled { filled_qty: q },
                    RawOutcome::Aborted => Status::Aborted,
                };
                Some(Record::Outcome(Outcome { intent_lsn, status, venue_order_id, ts_ns: ts.unwrap_or(0) }))
            }
            RawLine::Checkpoint { .. } => None,
        }
    }
}

/// The intent line of an in-doubt entry (its latest partial fill as its status).
pub fn in_doubt_line(d: &InDoubt) -> IntentLine {
    IntentLine::new(d.lsn, &d.intent, IntentStatus::in_doubt(d))
}

/// Writes one intent line (with a trailing newline).
pub fn write_intent_line<W: Write>(w: &mut W, lsn: Lsn, intent: &TradeIntent, status: IntentStatus) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &IntentLine::new(lsn, intent, status))?;
    w.write_all(b"\n")
}

/// Writes the intent line of an intent in doubt (its latest partial fill as its status), with a
/// trailing newline: what `tradewal recover` prints.
pub fn write_in_doubt_line<W: Write>(w: &mut W, d: &InDoubt) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &in_doubt_line(d))?;
    w.write_all(b"\n")
}

/// Writes one raw line (with a trailing newline).
pub fn write_raw_line<W: Write>(w: &mut W, lsn: Lsn, record: &Record) -> io::Result<()> {
    serde_json::to_writer(&mut *w, &RawLine::new(lsn, record))?;
    w.write_all(b"\n")
}

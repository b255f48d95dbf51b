//! Format 2 record bodies, laid out by hand (docs/design.md, "Record bodies (format version 2)").
//! Nothing here depends on the layout of a Rust type: each field is put at its offset.
//!
//! Encoders write into a caller's slice and return the length, or `None` when it does not fit;
//! they never allocate. Decoders check every layout rule (exact length, zero reserved bytes and
//! unused fields, flags, ASCII); `record::decode_body` adds the value rules.

use crate::format::{get_u32, get_u64, put_u32, put_u64};
use crate::intent::{GroupLeg, OrderId, Side, Symbol, TradeIntent};
use crate::record::{BodyError, Checkpoint, Fill, InDoubt, Outcome, Record, RecordKind, Status, TsRange};

/// Fixed part of an intent body.
pub const INTENT_FIXED_BYTES: usize = 56;
/// Fixed part of an outcome body.
pub const OUTCOME_FIXED_BYTES: usize = 40;
/// Fixed part of a checkpoint part body.
pub const CHECKPOINT_FIXED_BYTES: usize = 40;
/// Fixed part of a checkpoint entry (before its intent body).
pub const ENTRY_FIXED_BYTES: usize = 40;

const FLAG_CL_ORD_ID: u8 = 1;
const FLAG_TAG: u8 = 2;
const FLAG_RANGE: u32 = 1;

fn f64_at(b: &[u8], at: usize) -> f64 {
    f64::from_bits(get_u64(b, at))
}

fn err<T>(s: &str) -> Result<T, BodyError> {
    Err(BodyError::Decode(s.to_string()))
}

/// Encoded length of `i`'s body.
pub fn intent_len(i: &TradeIntent) -> usize {
    INTENT_FIXED_BYTES + i.symbol.as_str().len() + i.cl_ord_id.map_or(0, |c| c.as_bytes().len())
}

/// Writes an intent body; `None` if `out` is too short.
pub fn encode_intent(i: &TradeIntent, out: &mut [u8]) -> Option<usize> {
    let len = intent_len(i);
    let b = out.get_mut(..len)?;
    b[..INTENT_FIXED_BYTES].fill(0);
    put_u64(b, 0, i.ts_ns as u64);
    put_u64(b, 8, i.price.to_bits());
    put_u64(b, 16, i.qty.to_bits());
    put_u64(b, 24, i.stop_loss.to_bits());
    put_u64(b, 32, i.take_profit.to_bits());
    put_u32(b, 40, i.tag.unwrap_or(0));
    let g = i.group.unwrap_or(GroupLeg { index: 0, size: 0 });
    b[44..46].copy_from_slice(&g.index.to_le_bytes());
    b[46..48].copy_from_slice(&g.size.to_le_bytes());
    b[48] = match i.side {
        Side::Buy => 0,
        Side::Sell => 1,
    };
    b[49] = if i.cl_ord_id.is_some() { FLAG_CL_ORD_ID } else { 0 } | if i.tag.is_some() { FLAG_TAG } else { 0 };
    let sym = i.symbol.as_str().as_bytes();
    b[50] = sym.len() as u8;
    let id = i.cl_ord_id.as_ref().map_or(&[][..], |c| c.as_bytes());
    b[51] = id.len() as u8;
    b[56..56 + sym.len()].copy_from_slice(sym);
    b[56 + sym.len()..len].copy_from_slice(id);
    Some(len)
}

/// Reads the intent body at the start of `b`; returns it and its length (the rest of `b` is the
/// caller's: a checkpoint entry continues after it).
pub fn decode_intent_prefix(b: &[u8]) -> Result<(TradeIntent, usize), BodyError> {
    if b.len() < INTENT_FIXED_BYTES {
        return err("intent body too short");
    }
    let (flags, n, m) = (b[49], b[50] as usize, b[51] as usize);
    if flags & !(FLAG_CL_ORD_ID | FLAG_TAG) != 0 || get_u32(b, 52) != 0 {
        return err("intent flags or reserved bytes not zero");
    }
    if (flags & FLAG_CL_ORD_ID != 0) != (m > 0) {
        return err("client order id length disagrees with its flag");
    }
    let len = INTENT_FIXED_BYTES + n + m;
    if b.len() < len {
        return err("intent body shorter than its symbol and order id");
    }
    let tag = get_u32(b, 40);
    if flags & FLAG_TAG == 0 && tag != 0 {
        return err("tag set without its flag");
    }
    let index = u16::from_le_bytes([b[44], b[45]]);
    let size = u16::from_le_bytes([b[46], b[47]]);
    if size == 0 && index != 0 {
        return err("group leg without a group");
    }
    let side = match b[48] {
        0 => Side::Buy,
        1 => Side::Sell,
        v => return Err(BodyError::Decode(format!("unknown side {v}"))),
    };
    let symbol = Symbol::from_ascii(&b[56..56 + n]).map_err(|e| BodyError::Invalid(e.to_string()))?;
    let cl_ord_id = if m > 0 { Some(OrderId::from_ascii(&b[56 + n..len]).map_err(|e| BodyError::Invalid(e.to_string()))?) } else { None };
    let intent = TradeIntent {
        ts_ns: get_u64(b, 0) as i64,
        symbol,
        side,
        price: f64_at(b, 8),
        qty: f64_at(b, 16),
        stop_loss: f64_at(b, 24),
        take_profit: f64_at(b, 32),
        cl_ord_id,
        tag: (flags & FLAG_TAG != 0).then_some(tag),
        group: (size != 0).then_some(GroupLeg { index, size }),
    };
    Ok((intent, len))
}

/// Encoded length of `o`'s body.
pub fn outcome_len(o: &Outcome) -> usize {
    OUTCOME_FIXED_BYTES + o.venue_order_id.map_or(0, |v| v.as_bytes().len())
}

/// Writes an outcome body; `None` if `out` is too short.
pub fn encode_outcome(o: &Outcome, out: &mut [u8]) -> Option<usize> {
    let len = outcome_len(o);
    let b = out.get_mut(..len)?;
    b[..OUTCOME_FIXED_BYTES].fill(0);
    put_u64(b, 0, o.intent_lsn);
    put_u64(b, 8, o.ts_ns as u64);
    put_u64(b, 16, o.status.filled_qty().to_bits());
    put_u64(b, 24, o.status.avg_price().to_bits());
    put_u32(b, 32, if let Status::Rejected { reason } = o.status { reason } else { 0 });
    b[36] = o.status.code();
    let v = o.venue_order_id.as_ref().map_or(&[][..], |v| v.as_bytes());
    b[37] = v.len() as u8;
    b[OUTCOME_FIXED_BYTES..len].copy_from_slice(v);
    Some(len)
}

fn decode_outcome(b: &[u8]) -> Result<Outcome, BodyError> {
    if b.len() < OUTCOME_FIXED_BYTES {
        return err("outcome body too short");
    }
    let v = b[37] as usize;
    if b.len() != OUTCOME_FIXED_BYTES + v {
        return Err(BodyError::Trailing(b.len().abs_diff(OUTCOME_FIXED_BYTES + v)));
    }
    if b[38..40] != [0, 0] {
        return err("outcome reserved bytes not zero");
    }
    let (qty, avg_price, reason) = (f64_at(b, 16), f64_at(b, 24), get_u32(b, 32));
    let zero = |x: f64| x.to_bits() == 0;
    let status = match b[36] {
        1 if reason == 0 => Status::Filled { qty, avg_price },
        2 if reason == 0 => Status::PartiallyFilled { qty, avg_price },
        3 if zero(qty) && zero(avg_price) => Status::Rejected { reason },
        4 if reason == 0 && zero(avg_price) => Status::Cancelled { filled_qty: qty },
        5 if reason == 0 && zero(qty) && zero(avg_price) => Status::Aborted,
        1..=5 => return err("outcome field set that its status does not use"),
        s => return Err(BodyError::Decode(format!("unknown outcome status {s}"))),
    };
    let venue_order_id =
        if v > 0 { Some(OrderId::from_ascii(&b[OUTCOME_FIXED_BYTES..]).map_err(|e| BodyError::Invalid(e.to_string()))?) } else { None };
    Ok(Outcome { intent_lsn: get_u64(b, 0), status, venue_order_id, ts_ns: get_u64(b, 8) as i64 })
}

/// Writes a checkpoint part body holding `entries`; `None` if `out` is too short.
pub fn encode_checkpoint(part: u32, parts: u32, entries: &[InDoubt], range: Option<TsRange>, out: &mut [u8]) -> Option<usize> {
    let head = out.get_mut(..CHECKPOINT_FIXED_BYTES)?;
    head.fill(0);
    put_u32(head, 0, part);
    put_u32(head, 4, parts);
    put_u32(head, 8, entries.len() as u32);
    if let Some(r) = range {
        put_u32(head, 12, FLAG_RANGE);
        put_u64(head, 16, r.intents);
        put_u64(head, 24, r.min_ts as u64);
        put_u64(head, 32, r.max_ts as u64);
    }
    let mut pos = CHECKPOINT_FIXED_BYTES;
    for e in entries {
        let fixed = out.get_mut(pos..pos + ENTRY_FIXED_BYTES)?;
        fixed.fill(0);
        put_u64(fixed, 0, e.lsn);
        let f = e.fill.unwrap_or(Fill { qty: 0.0, avg_price: 0.0, venue_order_id: None, ts_ns: 0 });
        put_u64(fixed, 8, f.qty.to_bits());
        put_u64(fixed, 16, f.avg_price.to_bits());
        put_u64(fixed, 24, f.ts_ns as u64);
        let v = f.venue_order_id.as_ref().map_or(&[][..], |v| v.as_bytes());
        fixed[32] = v.len() as u8;
        pos += ENTRY_FIXED_BYTES;
        pos += encode_intent(&e.intent, out.get_mut(pos..)?)?;
        out.get_mut(pos..pos + v.len())?.copy_from_slice(v);
        pos += v.len();
    }
    Some(pos)
}

fn decode_checkpoint(b: &[u8]) -> Result<Checkpoint, BodyError> {
    if b.len() < CHECKPOINT_FIXED_BYTES {
        return err("checkpoint body too short");
    }
    let (part, parts, count, flags) = (get_u32(b, 0), get_u32(b, 4), get_u32(b, 8) as usize, get_u32(b, 12));
    if flags & !FLAG_RANGE != 0 {
        return err("checkpoint flags not zero");
    }
    let range = TsRange { intents: get_u64(b, 16), min_ts: get_u64(b, 24) as i64, max_ts: get_u64(b, 32) as i64 };
    let prev_range = if flags & FLAG_RANGE != 0 {
        if range.intents == 0 && (range.min_ts != 0 || range.max_ts != 0) || range.min_ts > range.max_ts {
            return err("checkpoint time range out of order");
        }
        Some(range)
    } else if range != TsRange::default() {
        return err("checkpoint time range set without its flag");
    } else {
        None
    };
    // Each entry takes at least ENTRY_FIXED + INTENT_FIXED + 1 bytes: bound the allocation by the body.
    if count > b.len() / (ENTRY_FIXED_BYTES + INTENT_FIXED_BYTES + 1) {
        return err("checkpoint entry count larger than its body");
    }
    let mut entries = Vec::with_capacity(count);
    let mut pos = CHECKPOINT_FIXED_BYTES;
    for _ in 0..count {
        let fixed = b.get(pos..pos + ENTRY_FIXED_BYTES).ok_or_else(|| BodyError::Decode("checkpoint entry cut short".into()))?;
        if fixed[33..40] != [0; 7] {
            return err("checkpoint entry reserved bytes not zero");
        }
        let (lsn, qty, avg_price, ts_ns, v) =
            (get_u64(fixed, 0), f64_at(fixed, 8), f64_at(fixed, 16), get_u64(fixed, 24) as i64, fixed[32] as usize);
        pos += ENTRY_FIXED_BYTES;
        let (intent, n) = decode_intent_prefix(&b[pos..])?;
        pos += n;
        let venue = b.get(pos..pos + v).ok_or_else(|| BodyError::Decode("checkpoint entry cut short".into()))?;
        pos += v;
        let venue_order_id = if v > 0 { Some(OrderId::from_ascii(venue).map_err(|e| BodyError::Invalid(e.to_string()))?) } else { None };
        let fill = if qty.to_bits() == 0 {
            if avg_price.to_bits() != 0 || ts_ns != 0 || v != 0 {
                return err("checkpoint entry with fill data but no filled quantity");
            }
            None
        } else {
            Some(Fill { qty, avg_price, venue_order_id, ts_ns })
        };
        entries.push(InDoubt { lsn, intent, fill });
    }
    if pos != b.len() {
        return Err(BodyError::Trailing(b.len() - pos));
    }
    Ok(Checkpoint { part, parts, entries, prev_range })
}

/// Decodes a format-2 body of `kind` (layout rules only).
pub fn decode(kind: RecordKind, body: &[u8]) -> Result<Record, BodyError> {
    match kind {
        RecordKind::Intent => {
            let (i, len) = decode_intent_prefix(body)?;
            if len != body.len() {
                return Err(BodyError::Trailing(body.len() - len));
            }
            Ok(Record::Intent(i))
        }
        RecordKind::Outcome => decode_outcome(body).map(Record::Outcome),
        RecordKind::Checkpoint => decode_checkpoint(body).map(Record::Checkpoint),
    }
}

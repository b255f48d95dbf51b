//! The JSONL export, written for the tests from docs/jsonl.md alone ("Intent lines", "Raw lines",
//! "Numbers", "Strings"), not from the codec: turns the records the spec reader
//! ([`crate::spec_reader`]) found into the bytes `tradewal export --raw DIR` and `tradewal export
//! DIR` write, so the two can be compared byte for byte.
//!
//! The shortest round-trip digits of an f64 come from the standard library (`{:e}` of an `f64`
//! prints the shortest digits that parse back to the same value, with its decimal exponent); the
//! layout around them (positional or exponential, `.0`, the exponent's sign) is the doc's
//! ("Numbers"), in [`push_f64`].
//!
//! Where the doc is silent or ambiguous the writer takes the most plausible reading, marked
//! `DOC-GAP` below.

use crate::spec_reader::{SpecEntry, SpecFill, SpecIntent, SpecLog, SpecRecord};
use crate::spec_reader::{STATUS_ABORTED, STATUS_CANCELLED, STATUS_FILLED, STATUS_PARTIALLY_FILLED, STATUS_REJECTED};
use std::collections::BTreeMap;

/// The shortest decimal digits `d1 d2 ... dn` (no trailing zeros) and the exponent `E` with value
/// `d1.d2...dn × 10^E` of a finite, non-negative `v` (zero is the digit `0` with `E = 0`).
pub fn shortest_digits(v: f64) -> (String, i32) {
    let s = format!("{:e}", v.abs());
    let (mant, exp) = s.split_once('e').expect("{:e} of a finite f64 has an exponent");
    let mut digits: String = mant.chars().filter(|c| *c != '.').collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp.parse().expect("decimal exponent"))
}

/// Appends `v` as docs/jsonl.md "Numbers" says: positional when `-5 <= E <= 15` (with `.0` for an
/// integral value), otherwise `d1[.d2...dn]e±|E|`.
pub fn push_f64(out: &mut String, v: f64) {
    assert!(v.is_finite(), "the export never holds {v}");
    if v.is_sign_negative() {
        // DOC-GAP: "negative values never appear"; a sign would come first, as in any JSON number.
        out.push('-');
    }
    let (d, e) = shortest_digits(v);
    let n = d.len() as i32;
    if (-5..=15).contains(&e) {
        if n <= e + 1 {
            out.push_str(&d);
            out.extend(std::iter::repeat_n('0', (e + 1 - n) as usize));
            out.push_str(".0");
        } else if e >= 0 {
            out.push_str(&d[..(e + 1) as usize]);
            out.push('.');
            out.push_str(&d[(e + 1) as usize..]);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-e - 1) as usize));
            out.push_str(&d);
        }
    } else {
        out.push_str(&d[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&e.unsigned_abs().to_string());
    }
}

/// `v` as [`push_f64`] writes it.
pub fn f64_text(v: f64) -> String {
    let mut s = String::new();
    push_f64(&mut s, v);
    s
}

/// Appends a JSON string as docs/jsonl.md "Strings" says: every byte as itself but `"` (`\"`) and
/// `\` (`\\`).
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn key(out: &mut String, k: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(k);
    out.push_str("\":");
}

fn key_u(out: &mut String, k: &str, v: impl std::fmt::Display) {
    key(out, k);
    out.push_str(&v.to_string());
}

fn key_f(out: &mut String, k: &str, v: f64) {
    key(out, k);
    push_f64(out, v);
}

fn key_s(out: &mut String, k: &str, v: &str) {
    key(out, k);
    push_str(out, v);
}

/// The seed's intent keys `lsn`, `ts`, `sym`, `side`, `price`, `qty`, `sl`, `tp` (into an open
/// object).
fn seed_keys(out: &mut String, lsn: u64, i: &SpecIntent) {
    key_u(out, "lsn", lsn);
    key_u(out, "ts", i.ts_ns);
    key_s(out, "sym", &i.symbol);
    key_s(out, "side", if i.side == 0 { "BUY" } else { "SELL" });
    for (k, v) in ["price", "qty", "sl", "tp"].into_iter().zip(i.fields) {
        key_f(out, k, v);
    }
}

/// The latest outcome of an intent, as the intent line shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    /// `STATUS_*`.
    pub status: u8,
    /// Cumulative filled qty (0 = not recorded for a fill; what was filled for a cancel).
    pub qty: f64,
    /// Average price (0 = not reported).
    pub avg_price: f64,
    /// Reject reason.
    pub reason: u32,
    /// Venue order id ("" = none).
    pub venue_order_id: String,
    /// When the venue reported it (0 = not recorded).
    pub ts_ns: i64,
}

impl From<&SpecFill> for Latest {
    fn from(f: &SpecFill) -> Self {
        Latest {
            status: STATUS_PARTIALLY_FILLED,
            qty: f.qty,
            avg_price: f.avg_price,
            reason: 0,
            venue_order_id: f.venue_order_id.clone(),
            ts_ns: f.ts_ns,
        }
    }
}

fn status_word(status: u8) -> &'static str {
    match status {
        STATUS_FILLED => "filled",
        STATUS_PARTIALLY_FILLED => "partially_filled",
        STATUS_REJECTED => "rejected",
        STATUS_CANCELLED => "cancelled",
        STATUS_ABORTED => "aborted",
        s => panic!("status {s}"),
    }
}

/// `filled_qty`, `avg_price`, `reason`, `venue_order_id`, each only when it has a value (intent
/// lines' "present when" column; raw outcome lines: "when they have a value ... (as in intent
/// lines)").
fn outcome_data_keys(out: &mut String, o: &Latest) {
    let fill = o.status == STATUS_FILLED || o.status == STATUS_PARTIALLY_FILLED;
    // "a fill or partial fill with a recorded quantity, and every cancel": a format 1 Executed
    // reads with qty 0, "not recorded".
    if (fill && o.qty != 0.0) || o.status == STATUS_CANCELLED {
        key_f(out, "filled_qty", o.qty);
    }
    // "a fill or partial fill reported an average price (> 0)".
    if fill && o.avg_price > 0.0 {
        key_f(out, "avg_price", o.avg_price);
    }
    // DOC-GAP: "`reason` ... present when `status` is "rejected"": written for every Rejected,
    // reason 0 included (0 is a code the venue may send; the body table allows "any value").
    if o.status == STATUS_REJECTED {
        key_u(out, "reason", o.reason);
    }
    if !o.venue_order_id.is_empty() {
        key_s(out, "venue_order_id", &o.venue_order_id);
    }
}

/// Whether the latest outcome "carries data" (intent lines' `status` key): "any format 2 outcome
/// but a bare abort".
// DOC-GAP: the intent-line view has no format version. A format 1 `Executed` reads (design.md)
// as Filled with qty 0, avg 0, no venue order id, ts 0, which no format 2 Filled can be (its qty
// is > 0); a format 1 `Aborted` reads as an Aborted with nothing. "A bare abort" is not defined:
// it is an Aborted with no venue order id, whatever its timestamp (an Aborted with only a `ts`
// has no `status`: the first reading, "no venue order id and ts 0", disagreed with tradewal on
// engine-written logs; the outcome's ts is in raw lines only, so only the venue order id counts).
fn carries_data(o: &Latest) -> bool {
    match o.status {
        STATUS_FILLED => o.qty != 0.0 || !o.venue_order_id.is_empty() || o.ts_ns != 0,
        STATUS_ABORTED => !o.venue_order_id.is_empty(),
        _ => true,
    }
}

/// One intent-line object (no newline): the seed's keys, `exec`, `aborted` when the latest
/// outcome is Aborted, then `cl_ord_id`, `tag`, `group`, and the latest outcome's data keys.
pub fn intent_object(out: &mut String, lsn: u64, i: &SpecIntent, latest: Option<&Latest>) {
    out.push('{');
    seed_keys(out, lsn, i);
    key(out, "exec");
    out.push_str(if latest.is_some_and(|o| o.status == STATUS_FILLED) { "true" } else { "false" });
    if latest.is_some_and(|o| o.status == STATUS_ABORTED) {
        key(out, "aborted");
        out.push_str("true");
    }
    if let Some(c) = &i.cl_ord_id {
        key_s(out, "cl_ord_id", c);
    }
    if let Some(t) = i.tag {
        key_u(out, "tag", t);
    }
    if i.group_size > 0 {
        key_u(out, "group", lsn - i.group_leg as u64);
    }
    if let Some(o) = latest.filter(|o| carries_data(o)) {
        key_s(out, "status", status_word(o.status));
        outcome_data_keys(out, o);
    }
    out.push('}');
}

fn entry_object(out: &mut String, e: &SpecEntry) {
    // "each with its latest partial fill as its status keys (`"exec":false` without a fill)".
    // DOC-GAP: the parenthesis could be read as "exec appears only without a fill"; read as: exec
    // is a seed key, on every intent-line object, and is false (a partial fill is not a fill).
    intent_object(out, e.lsn, &e.intent, e.fill.as_ref().map(Latest::from).as_ref());
}

/// One raw line (no newline) of record `lsn`.
pub fn raw_line(out: &mut String, lsn: u64, r: &SpecRecord) {
    out.push('{');
    match r {
        SpecRecord::Intent { .. } => {
            let i = r.intent().expect("an intent");
            key_s(out, "kind", "intent");
            seed_keys(out, lsn, &i);
            if let Some(c) = &i.cl_ord_id {
                key_s(out, "cl_ord_id", c);
            }
            if let Some(t) = i.tag {
                key_u(out, "tag", t);
            }
            if i.group_size > 0 {
                key_u(out, "group", lsn - i.group_leg as u64);
                key_u(out, "leg", i.group_leg);
                key_u(out, "legs", i.group_size);
            }
        }
        SpecRecord::Outcome { intent_lsn, status, qty, avg_price, reason, venue_order_id, ts_ns } => {
            key_s(out, "kind", "outcome");
            key_u(out, "lsn", lsn);
            key_u(out, "intent_lsn", intent_lsn);
            let word = if *status == STATUS_FILLED { "executed" } else { status_word(*status) };
            key_s(out, "outcome", word);
            let o = Latest {
                status: *status,
                qty: *qty,
                avg_price: *avg_price,
                reason: *reason,
                venue_order_id: venue_order_id.clone(),
                ts_ns: *ts_ns,
            };
            outcome_data_keys(out, &o);
            if *ts_ns != 0 {
                key_u(out, "ts", ts_ns);
            }
        }
        SpecRecord::CheckpointPart { part, parts, entries, prev_range, .. } => {
            key_s(out, "kind", "checkpoint");
            key_u(out, "lsn", lsn);
            key_u(out, "part", part);
            key_u(out, "parts", parts);
            key(out, "in_doubt");
            out.push('[');
            for (j, e) in entries.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                entry_object(out, e);
            }
            out.push(']');
            // DOC-GAP: "part 0 of a format 2 checkpoint adds `prev_range`" does not say where;
            // after `in_doubt`, as in the doc's example line.
            if let Some(p) = prev_range {
                key(out, "prev_range");
                out.push('{');
                key_u(out, "intents", p.intents);
                key_u(out, "min_ts", p.min_ts);
                key_u(out, "max_ts", p.max_ts);
                out.push('}');
            }
        }
    }
    out.push('}');
}

/// `tradewal export --raw DIR`: one raw line per record, in LSN order, each followed by `\n`.
pub fn raw_export(log: &SpecLog) -> String {
    let mut out = String::with_capacity(log.records.len() * 160);
    for (lsn, r) in &log.records {
        raw_line(&mut out, *lsn, r);
        out.push('\n');
    }
    out
}

/// `tradewal export DIR`: one intent line per intent record, in LSN order, with its latest outcome
/// among the records ("as far as the exported range knows it").
// DOC-GAP: intents known only from a seeding checkpoint (retention removed their records) are not
// intent records of the range; read as: not exported, and outcomes naming them are ignored.
pub fn intent_export(log: &SpecLog) -> String {
    let mut latest: BTreeMap<u64, Latest> = BTreeMap::new();
    for r in log.records.values() {
        if let SpecRecord::Outcome { intent_lsn, status, qty, avg_price, reason, venue_order_id, ts_ns } = r {
            latest.insert(
                *intent_lsn,
                Latest {
                    status: *status,
                    qty: *qty,
                    avg_price: *avg_price,
                    reason: *reason,
                    venue_order_id: venue_order_id.clone(),
                    ts_ns: *ts_ns,
                },
            );
        }
    }
    let mut out = String::with_capacity(log.records.len() * 160);
    for (lsn, r) in &log.records {
        if let Some(i) = r.intent() {
            intent_object(&mut out, *lsn, &i, latest.get(lsn));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doc_examples_of_numbers() {
        let cases: [(f64, &str); 20] = [
            (42800.0, "42800.0"),
            (3.0, "3.0"),
            (0.0, "0.0"),
            (1e15, "1000000000000000.0"),
            (123456789.12345679, "123456789.12345679"),
            (0.1, "0.1"),
            (0.00001, "0.00001"),
            (0.000012345, "0.000012345"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (1e-6, "1e-6"),
            (1.5e-6, "1.5e-6"),
            (1e-300, "1e-300"),
            (5e-324, "5e-324"),
            (43250.5, "43250.5"),
            (0.25, "0.25"),
            (2310.25, "2310.25"),
            (1e-5, "0.00001"),
            (9999999999999998.0, "9999999999999998.0"),
        ];
        for (v, want) in cases {
            assert_eq!(f64_text(v), want, "{v:?}");
            assert_eq!(f64_text(v).parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn the_doc_example_of_a_string() {
        let mut s = String::new();
        push_str(&mut s, "A\"B\\C/");
        assert_eq!(s, r#""A\"B\\C/""#);
    }
}

//! An independent reader of tradewal logs, written for the tests from docs/design.md alone (the
//! tables "Segment header (block 0)", "Batch header", "Record frame", "Record bodies (format
//! version 2)", "Record bodies (format version 1: read, never written)", "Checkpoints", "Limits and
//! constants", and the end-of-data rule of "Recycled segment files"), not from the codec: the
//! oracle that recovery and the codec's scanner are compared against.
//!
//! It reads clean logs only (no torn-tail or corruption classification: that is what it checks the
//! engine's answer against on logs where the answer is "clean"): it walks every segment file in
//! number order, checks every checksum and binding the spec names, decodes every body by the byte
//! tables of the segment's format version (a log may hold version 1 segments followed by version 2
//! ones), checks every rule the doc states for bodies and for the log (outcomes, fills, groups,
//! checkpoints, time ranges), and computes the in-doubt set itself with each intent's latest partial
//! fill (seeded by the first segment's checkpoint when earlier segments were removed by retention).
//!
//! Where the doc is silent or ambiguous the reader takes the most plausible reading, marked
//! `DOC-GAP` below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Outcome status 1: Filled (terminal). Version 1 `Executed` reads as Filled with qty 0.
pub const STATUS_FILLED: u8 = 1;
/// Outcome status 2: PartiallyFilled (not terminal).
pub const STATUS_PARTIALLY_FILLED: u8 = 2;
/// Outcome status 3: Rejected (terminal).
pub const STATUS_REJECTED: u8 = 3;
/// Outcome status 4: Cancelled (terminal).
pub const STATUS_CANCELLED: u8 = 4;
/// Outcome status 5: Aborted, never sent (terminal).
pub const STATUS_ABORTED: u8 = 5;

/// `CHECKPOINT_ENTRIES_PER_RECORD` of format version 2.
pub const CHECKPOINT_ENTRIES_V2: usize = 128;
/// `CHECKPOINT_ENTRIES_PER_RECORD` of format version 1.
pub const CHECKPOINT_ENTRIES_V1: usize = 256;
/// `GROUP_MAX_LEGS`.
pub const GROUP_MAX_LEGS: u16 = 32;
/// `ORDER_ID_MAX_BYTES` (client and venue order ids).
pub const ORDER_ID_MAX_BYTES: usize = 36;
/// `RECORD_BODY_MAX_BYTES`.
pub const RECORD_BODY_MAX_BYTES: usize = 32768;

/// An intent's content as the spec describes it (the body of a kind 1 record, or the intent of a
/// checkpoint entry). A version 1 intent reads with no tag, no client order id and no group.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecIntent {
    /// `ts_ns`.
    pub ts_ns: i64,
    /// `symbol`.
    pub symbol: String,
    /// `side`: 0 Buy, 1 Sell.
    pub side: u32,
    /// `price`, `qty`, `stop_loss`, `take_profit`.
    pub fields: [f64; 4],
    /// `tag`, when flag bit 1 is set.
    pub tag: Option<u32>,
    /// `cl_ord_id`, when flag bit 0 is set.
    pub cl_ord_id: Option<String>,
    /// Index of this intent in its group (0 when not in a group).
    pub group_leg: u16,
    /// Legs of its group, 0 = not in a group.
    pub group_size: u16,
}

/// The latest PartiallyFilled outcome of an intent still in doubt (its fill state).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecFill {
    /// Cumulative filled qty (> 0).
    pub qty: f64,
    /// Average price (0 = not reported).
    pub avg_price: f64,
    /// Venue order id ("" = none).
    pub venue_order_id: String,
    /// When the venue reported it (0 = not recorded).
    pub ts_ns: i64,
}

/// One in-doubt intent: as listed by a checkpoint part, and as the reader's computed set.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecEntry {
    /// The intent's LSN.
    pub lsn: u64,
    /// The intent.
    pub intent: SpecIntent,
    /// Its latest partial fill; `None` when it has none (always `None` in version 1).
    pub fill: Option<SpecFill>,
}

/// The time range of the intent records of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecTimeRange {
    /// Intent records in the segment.
    pub intents: u64,
    /// Smallest `ts_ns` (0 when none).
    pub min_ts: i64,
    /// Largest `ts_ns` (0 when none).
    pub max_ts: i64,
}

/// What the reader found about one data segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecSegment {
    /// Segment number.
    pub number: u64,
    /// Format version of its header (1 or 2).
    pub version: u32,
    /// Base LSN.
    pub base_lsn: u64,
    /// Records in it (checkpoint parts included).
    pub records: u64,
    /// Its life began in a recycled file (epoch bit 0).
    pub recycled: bool,
    /// The time range of its intent records, as the reader computed it.
    pub range: SpecTimeRange,
    /// The range its checkpoint part 0 records for the previous segment (flag bit 0), if any.
    pub prev_range_recorded: Option<SpecTimeRange>,
}

/// A record as the spec describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecRecord {
    /// Kind 1.
    Intent {
        /// `ts_ns`.
        ts_ns: i64,
        /// `symbol`.
        symbol: String,
        /// `side`: 0 Buy, 1 Sell.
        side: u32,
        /// `price`, `qty`, `stop_loss`, `take_profit`.
        fields: [f64; 4],
        /// `tag` (flag bit 1); `None` in version 1.
        tag: Option<u32>,
        /// `cl_ord_id` (flag bit 0); `None` in version 1.
        cl_ord_id: Option<String>,
        /// Group leg (0 when not in a group).
        group_leg: u16,
        /// Group size (0 = not in a group).
        group_size: u16,
    },
    /// Kind 2. A version 1 `Executed` reads as Filled with qty 0, avg price 0, no venue order id,
    /// ts 0; a version 1 `Aborted` as Aborted.
    Outcome {
        /// The intent it resolves.
        intent_lsn: u64,
        /// `STATUS_*`: 1 Filled, 2 PartiallyFilled, 3 Rejected, 4 Cancelled, 5 Aborted.
        status: u8,
        /// Cumulative filled qty.
        qty: f64,
        /// Average price.
        avg_price: f64,
        /// Rejected: the venue's reason code; others 0.
        reason: u32,
        /// Venue order id ("" = none).
        venue_order_id: String,
        /// When the venue reported it (0 = not recorded).
        ts_ns: i64,
    },
    /// Kind 3: one part of a checkpoint.
    CheckpointPart {
        /// Part number.
        part: u32,
        /// Number of parts.
        parts: u32,
        /// LSNs of the in-doubt intents listed (the entries' LSNs).
        lsns: Vec<u64>,
        /// The entries, with intent and fill state.
        entries: Vec<SpecEntry>,
        /// The previous segment's time range (flag bit 0, part 0 only, version 2 only).
        prev_range: Option<SpecTimeRange>,
    },
}

impl SpecRecord {
    /// The intent of a kind 1 record.
    pub fn intent(&self) -> Option<SpecIntent> {
        match self {
            SpecRecord::Intent { ts_ns, symbol, side, fields, tag, cl_ord_id, group_leg, group_size } => Some(SpecIntent {
                ts_ns: *ts_ns,
                symbol: symbol.clone(),
                side: *side,
                fields: *fields,
                tag: *tag,
                cl_ord_id: cl_ord_id.clone(),
                group_leg: *group_leg,
                group_size: *group_size,
            }),
            _ => None,
        }
    }
}

impl From<SpecIntent> for SpecRecord {
    fn from(i: SpecIntent) -> Self {
        SpecRecord::Intent {
            ts_ns: i.ts_ns,
            symbol: i.symbol,
            side: i.side,
            fields: i.fields,
            tag: i.tag,
            cl_ord_id: i.cl_ord_id,
            group_leg: i.group_leg,
            group_size: i.group_size,
        }
    }
}

/// What the spec reader found in a log directory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecLog {
    /// Every record, by LSN.
    pub records: BTreeMap<u64, SpecRecord>,
    /// LSNs of the intents in doubt (no terminal outcome), in order.
    pub in_doubt: Vec<u64>,
    /// The in-doubt set with each intent's content and latest partial fill, in LSN order.
    pub in_doubt_entries: Vec<SpecEntry>,
    /// The LSN after the last record (1 for an empty log).
    pub next_lsn: u64,
    /// Segment files read (data segments; spares never put in service are skipped).
    pub data_segments: usize,
    /// Data segments whose life began in a recycled file (epoch bit 0 set).
    pub recycled_segments: usize,
    /// Every data segment, in number order.
    pub segments: Vec<SpecSegment>,
    /// Groups of intents: group id (LSN of leg 0) to its size.
    pub groups: BTreeMap<u64, u16>,
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn f64le(b: &[u8], at: usize) -> f64 {
    f64::from_bits(u64le(b, at))
}

/// Printable ASCII 0x21..=0x7e (no spaces).
fn ascii(b: &[u8], what: &str) -> Result<String, String> {
    if !b.iter().all(|c| (0x21..=0x7e).contains(c)) {
        return Err(format!("{what} not printable ASCII"));
    }
    Ok(String::from_utf8(b.to_vec()).unwrap())
}

/// Finite and > 0.
fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Finite and >= 0, not -0.0.
// DOC-GAP: the doc says "not -0.0" only for stop_loss / take_profit; for the outcome's qty
// ("Cancelled: finite, >= 0"), avg price and the entry's fill fields it is silent. -0.0 is read as
// invalid everywhere (an encoder writes 0 as +0.0; a -0.0 is not a value any writer means).
fn non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0 && v.to_bits() != (-0.0f64).to_bits()
}

/// A field whose rule is "0": the bits of +0.0.
// DOC-GAP: "Rejected, Aborted: 0", "others 0" for f64 fields: read as the bits of +0.0 (-0.0 is
// not 0 here), like reserved bytes.
fn zero(v: f64) -> bool {
    v.to_bits() == 0
}

struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("body too short".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32le(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64le(self.take(8)?, 0))
    }
    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A version 1 intent body (bincode, fixed-width integers), validated.
    fn intent_v1(&mut self) -> Result<SpecIntent, String> {
        let ts_ns = self.u64()? as i64;
        let n = self.u64()?;
        if !(1..=16).contains(&n) {
            return Err(format!("symbol length {n}"));
        }
        let symbol = ascii(self.take(n as usize)?, "symbol")?;
        let side = self.u32()?;
        if side > 1 {
            return Err(format!("side {side}"));
        }
        let fields = [self.f64()?, self.f64()?, self.f64()?, self.f64()?];
        check_prices(&fields)?;
        Ok(SpecIntent { ts_ns, symbol, side, fields, tag: None, cl_ord_id: None, group_leg: 0, group_size: 0 })
    }
    /// A version 2 intent body, its length given by its own n and m.
    fn intent_v2(&mut self) -> Result<SpecIntent, String> {
        if self.0.len() < 56 {
            return Err("intent body shorter than 56 bytes".into());
        }
        let len = 56 + self.0[50] as usize + self.0[51] as usize;
        intent_v2(self.take(len)?)
    }
}

fn check_prices(fields: &[f64; 4]) -> Result<(), String> {
    if !(positive(fields[0]) && positive(fields[1])) {
        return Err(format!("intent price/qty {} {} not finite and > 0", fields[0], fields[1]));
    }
    if !(non_negative(fields[2]) && non_negative(fields[3])) {
        return Err(format!("intent stop_loss/take_profit {} {} not finite, >= 0, not -0.0", fields[2], fields[3]));
    }
    Ok(())
}

/// A version 2 intent body ("Intent (kind 1)"), exactly `b`.
fn intent_v2(b: &[u8]) -> Result<SpecIntent, String> {
    if b.len() < 56 {
        return Err(format!("intent body of {} bytes, under 56", b.len()));
    }
    let (n, m) = (b[50] as usize, b[51] as usize);
    if b.len() != 56 + n + m {
        return Err(format!("intent body of {} bytes, its fields give {}", b.len(), 56 + n + m));
    }
    let fields = [f64le(b, 8), f64le(b, 16), f64le(b, 24), f64le(b, 32)];
    check_prices(&fields)?;
    let (tag, leg, size, side, flags) = (u32le(b, 40), u16le(b, 44), u16le(b, 46), b[48], b[49]);
    if flags & !0b11 != 0 {
        return Err(format!("intent flags {flags:#04x}: bits 2..7 set"));
    }
    // DOC-GAP: "tag: 0 when flag bit 1 is clear" does not say whether a tag of 0 with bit 1 set
    // is valid; the reader accepts it and keeps it apart from "no tag" (`Some(0)` vs `None`).
    if flags & 0b10 == 0 && tag != 0 {
        return Err(format!("intent tag {tag} with flag bit 1 clear"));
    }
    if size > GROUP_MAX_LEGS || (size == 0 && leg != 0) || (size > 0 && leg >= size) {
        return Err(format!("intent group leg {leg} of size {size}"));
    }
    if side > 1 {
        return Err(format!("intent side {side}"));
    }
    if !(1..=16).contains(&n) {
        return Err(format!("intent symbol length {n}"));
    }
    let has_cl = flags & 1 == 1;
    if (has_cl && !(1..=ORDER_ID_MAX_BYTES).contains(&m)) || (!has_cl && m != 0) {
        return Err(format!("intent client order id length {m} with flag bit 0 {}", flags & 1));
    }
    if b[52..56] != [0; 4] {
        return Err("intent reserved bytes 52..56 not zero".into());
    }
    let symbol = ascii(&b[56..56 + n], "intent symbol")?;
    let cl_ord_id = if has_cl { Some(ascii(&b[56 + n..], "intent client order id")?) } else { None };
    Ok(SpecIntent {
        ts_ns: u64le(b, 0) as i64,
        symbol,
        side: side as u32,
        fields,
        tag: (flags & 0b10 != 0).then_some(tag),
        cl_ord_id,
        group_leg: leg,
        group_size: size,
    })
}

/// A version 2 outcome body ("Outcome (kind 2)"), exactly `b`.
fn outcome_v2(b: &[u8]) -> Result<SpecRecord, String> {
    if b.len() < 40 {
        return Err(format!("outcome body of {} bytes, under 40", b.len()));
    }
    let v = b[37] as usize;
    if b.len() != 40 + v {
        return Err(format!("outcome body of {} bytes, its fields give {}", b.len(), 40 + v));
    }
    let (intent_lsn, ts_ns, qty, avg_price, reason, status) =
        (u64le(b, 0), u64le(b, 8) as i64, f64le(b, 16), f64le(b, 24), u32le(b, 32), b[36]);
    if intent_lsn == 0 {
        return Err("outcome intent LSN 0".into());
    }
    let fill = status == STATUS_FILLED || status == STATUS_PARTIALLY_FILLED;
    let qty_ok = match status {
        STATUS_FILLED | STATUS_PARTIALLY_FILLED => positive(qty),
        STATUS_CANCELLED => non_negative(qty),
        STATUS_REJECTED | STATUS_ABORTED => zero(qty),
        s => return Err(format!("outcome status {s}")),
    };
    if !qty_ok {
        return Err(format!("outcome qty {qty} not allowed with status {status}"));
    }
    if !(if fill { non_negative(avg_price) } else { zero(avg_price) }) {
        return Err(format!("outcome avg price {avg_price} not allowed with status {status}"));
    }
    if status != STATUS_REJECTED && reason != 0 {
        return Err(format!("outcome reason {reason} with status {status} (only Rejected has one)"));
    }
    if v > ORDER_ID_MAX_BYTES {
        return Err(format!("outcome venue order id length {v}"));
    }
    if b[38..40] != [0; 2] {
        return Err("outcome reserved bytes 38..40 not zero".into());
    }
    let venue_order_id = ascii(&b[40..], "outcome venue order id")?;
    // DOC-GAP: a venue order id is allowed with every status (the table gives no status rule for
    // it), and ts_ns may be any value with every status ("0 = not recorded").
    Ok(SpecRecord::Outcome { intent_lsn, status, qty, avg_price, reason, venue_order_id, ts_ns })
}

/// A version 2 checkpoint part ("Checkpoint part (kind 3)"), exactly `b`.
fn checkpoint_v2(b: &[u8]) -> Result<SpecRecord, String> {
    if b.len() < 40 {
        return Err(format!("checkpoint body of {} bytes, under 40", b.len()));
    }
    let (part, parts, count, flags) = (u32le(b, 0), u32le(b, 4), u32le(b, 8) as usize, u32le(b, 12));
    if parts == 0 || part >= parts || count > CHECKPOINT_ENTRIES_V2 {
        return Err(format!("checkpoint part {part} of {parts} with {count} entries"));
    }
    if flags & !1 != 0 {
        return Err(format!("checkpoint flags {flags:#x}: bits other than 0 set"));
    }
    let (intents, min_ts, max_ts) = (u64le(b, 16), u64le(b, 24) as i64, u64le(b, 32) as i64);
    let prev_range = if flags & 1 == 1 {
        if part != 0 {
            return Err(format!("checkpoint flag bit 0 (time range) on part {part}, not part 0"));
        }
        if intents == 0 && (min_ts != 0 || max_ts != 0) {
            return Err("checkpoint time range with no intents but min/max ts not 0".into());
        }
        if min_ts > max_ts {
            return Err(format!("checkpoint time range min ts {min_ts} > max ts {max_ts}"));
        }
        Some(SpecTimeRange { intents, min_ts, max_ts })
    } else {
        if intents != 0 || min_ts != 0 || max_ts != 0 {
            return Err("checkpoint time range fields not 0 without flag bit 0".into());
        }
        None
    };
    let mut body = Body(&b[40..]);
    let mut entries: Vec<SpecEntry> = Vec::with_capacity(count);
    for _ in 0..count {
        let head = body.take(40).map_err(|_| "checkpoint entry runs past the body".to_string())?;
        let (lsn, fqty, favg, fts, v) = (u64le(head, 0), f64le(head, 8), f64le(head, 16), u64le(head, 24) as i64, head[32] as usize);
        if head[33..40] != [0; 7] {
            return Err("checkpoint entry reserved bytes 33..40 not zero".into());
        }
        if v > ORDER_ID_MAX_BYTES {
            return Err(format!("checkpoint entry venue order id length {v}"));
        }
        let intent = body.intent_v2().map_err(|e| format!("checkpoint entry intent: {e}"))?;
        let venue = ascii(body.take(v)?, "checkpoint entry venue order id")?;
        if lsn == 0 || entries.last().is_some_and(|p| p.lsn >= lsn) {
            return Err("checkpoint entries not in strictly increasing non-zero LSN order".into());
        }
        // DOC-GAP: the entry's fill state when the intent has no PartiallyFilled outcome is "0"
        // for filled qty, avg price and outcome ts; the doc does not say v must be 0 then. Read as:
        // filled qty +0.0 means no fill, and then all four fields are zero. A fill's qty must be
        // > 0 (a PartiallyFilled qty is) and at most the intent's qty (the log rule).
        let fill = if zero(fqty) {
            if !zero(favg) || fts != 0 || v != 0 {
                return Err(format!("checkpoint entry {lsn}: no fill (qty 0) but avg price, ts or venue order id set"));
            }
            None
        } else {
            if !positive(fqty) || !non_negative(favg) {
                return Err(format!("checkpoint entry {lsn}: fill qty {fqty} / avg price {favg}"));
            }
            if fqty > intent.fields[1] {
                return Err(format!("checkpoint entry {lsn}: filled qty {fqty} exceeds the intent's qty {}", intent.fields[1]));
            }
            Some(SpecFill { qty: fqty, avg_price: favg, venue_order_id: venue, ts_ns: fts })
        };
        entries.push(SpecEntry { lsn, intent, fill });
    }
    if !body.0.is_empty() {
        return Err("checkpoint body not consumed exactly".into());
    }
    Ok(SpecRecord::CheckpointPart { part, parts, lsns: entries.iter().map(|e| e.lsn).collect(), entries, prev_range })
}

/// One body by the tables of format `version`.
/// Decodes one record body of format `version` and `kind` by the doc's tables, with every body
/// rule the doc states (the log's rules across records are checked by [`read_dir`]). Public so the
/// codec's own decoder can be cross-checked against it on damaged bodies.
pub fn decode_body(version: u32, kind: u8, body: &[u8]) -> Result<SpecRecord, String> {
    if version == 2 {
        return match kind {
            1 => intent_v2(body).map(SpecRecord::from),
            2 => outcome_v2(body),
            3 => checkpoint_v2(body),
            k => Err(format!("kind {k}")),
        };
    }
    let mut b = Body(body);
    let r = match kind {
        1 => b.intent_v1()?.into(),
        2 => {
            let intent_lsn = b.u64()?;
            let kind = b.u32()?;
            if intent_lsn == 0 || kind > 1 {
                return Err("v1 outcome fields".into());
            }
            let status = if kind == 0 { STATUS_FILLED } else { STATUS_ABORTED };
            SpecRecord::Outcome { intent_lsn, status, qty: 0.0, avg_price: 0.0, reason: 0, venue_order_id: String::new(), ts_ns: 0 }
        }
        3 => {
            let part = b.u32()?;
            let parts = b.u32()?;
            let n = b.u64()?;
            if parts == 0 || part >= parts || n > CHECKPOINT_ENTRIES_V1 as u64 {
                return Err("v1 checkpoint part fields".into());
            }
            let mut entries: Vec<SpecEntry> = Vec::new();
            for _ in 0..n {
                let lsn = b.u64()?;
                let intent = b.intent_v1()?;
                if lsn == 0 || entries.last().is_some_and(|p| p.lsn >= lsn) {
                    return Err("checkpoint entries not in strictly increasing non-zero LSN order".into());
                }
                entries.push(SpecEntry { lsn, intent, fill: None });
            }
            SpecRecord::CheckpointPart { part, parts, lsns: entries.iter().map(|e| e.lsn).collect(), entries, prev_range: None }
        }
        k => return Err(format!("kind {k}")),
    };
    if !b.0.is_empty() {
        return Err("body not consumed exactly".into());
    }
    Ok(r)
}

/// Segment-file names of the directory (`wal_YYYYMMDD_HHMMSS_NNNNNN.log`) by number.
fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix("wal_").and_then(|s| s.strip_suffix(".log")) else { continue };
        let parts: Vec<&str> = stem.split('_').collect();
        if parts.len() == 3 && parts[0].len() == 8 && parts[1].len() == 6 {
            if let Ok(n) = parts[2].parse::<u64>() {
                v.push((n, p));
            }
        }
    }
    v.sort();
    v
}

/// An intent in doubt, as the reader tracks it.
struct Doubt {
    intent: SpecIntent,
    fill: Option<SpecFill>,
}

/// The checkpoint being assembled at the start of a segment.
struct Checkpoint {
    /// Parts seen so far.
    seen: u32,
    /// `parts` of part 0.
    parts: u32,
    entries: Vec<SpecEntry>,
}

/// An open group: the LSN of leg 0, its size, the next leg expected.
struct OpenGroup {
    id: u64,
    size: u16,
    next_leg: u16,
}

/// Reads a clean log directory by the spec. Any deviation from the spec (a bad checksum, a broken
/// binding, a gap, non-zero padding, a body that does not decode, a broken log rule) is an `Err`
/// naming the place.
pub fn read_dir(dir: &Path) -> Result<SpecLog, String> {
    let mut log = SpecLog { next_lsn: 1, ..SpecLog::default() };
    let mut doubt: BTreeMap<u64, Doubt> = BTreeMap::new();
    let mut log_id = None;
    let mut prev_no: Option<u64> = None;
    let mut prev_version = 0u32;
    for (no, path) in segment_files(dir) {
        let f = std::fs::read(&path).map_err(|e| e.to_string())?;
        let at = |what: &str, off: usize| format!("{}: {what} at offset {off}", path.display());
        if f.iter().all(|&b| b == 0) {
            continue; // a spare never put in service
        }
        if f.len() >= 4096 + 64 && f[..4096].iter().all(|&b| b == 0) {
            // A recycled spare never put in service: block 0 zero, block 1 a stale batch header
            // (valid in itself) of another segment, and no batch header of this segment.
            let stale = &f[4096..4096 + 64];
            let valid = |h: &[u8]| &h[0..4] == b"TWB1" && xxh3_64(&h[0..56]) == u64le(h, 56) && u64le(h, 48) == 0;
            let ours = (4096..f.len() - 63).step_by(4096).any(|q| valid(&f[q..q + 64]) && u64le(&f, q + 32) == no);
            if valid(stale) && u64le(stale, 32) != no && !ours {
                continue;
            }
        }
        // Segment header (block 0).
        if f.len() < 4096 || &f[0..8] != b"TRADEWAL" || xxh3_64(&f[0..88]) != u64le(&f, 88) {
            return Err(at("bad segment header magic/checksum", 0));
        }
        let version = u32le(&f, 8);
        let k = u32le(&f, 12);
        let id = u64le(&f, 16);
        let seg_no = u64le(&f, 40);
        let epoch = u64le(&f, 48);
        let base = u64le(&f, 56);
        let seg_bytes = u64le(&f, 64);
        if !(1..=2).contains(&version) || !(1..=64).contains(&k) || u64le(&f, 80) != 0 || f[96..4096].iter().any(|&b| b != 0) {
            return Err(at("segment header fields (version, K, reserved, padding)", 0));
        }
        if seg_bytes % 4096 != 0 || !(8 << 10..=1 << 40).contains(&seg_bytes) {
            return Err(at(&format!("segment size {seg_bytes}"), 0));
        }
        if seg_no != no || seg_bytes != f.len() as u64 || base == 0 {
            return Err(at("segment header binding (number, size, base LSN)", 0));
        }
        // DOC-GAP: "a log may mix both, in LSN order" and version 1 is "never written": read as
        // every version 1 segment coming before every version 2 one; a version 1 segment after a
        // version 2 one is refused.
        if version < prev_version {
            return Err(at(&format!("a version {version} segment after a version {prev_version} segment"), 0));
        }
        prev_version = version;
        if *log_id.get_or_insert(id) != id {
            return Err(at("another log's segment", 0));
        }
        if let Some(p) = prev_no {
            if no != p + 1 {
                return Err(at("segment numbers not contiguous", 0));
            }
        }
        let first_data_segment = prev_no.is_none();
        prev_no = Some(no);
        if !first_data_segment && base != log.next_lsn {
            return Err(at(&format!("base LSN {base} after next LSN {}", log.next_lsn), 0));
        }
        log.next_lsn = base;
        log.data_segments += 1;
        // Epoch bit 0: this life began in a recycled file; its data ends at the first block that
        // is not a batch header bound to this segment and epoch (stale bytes may follow).
        let recycled = epoch & 1 == 1;
        log.recycled_segments += recycled as usize;
        let mut seg = SpecSegment {
            number: no,
            version,
            base_lsn: base,
            records: 0,
            recycled,
            range: SpecTimeRange::default(),
            prev_range_recorded: None,
        };
        let per_part = if version == 2 { CHECKPOINT_ENTRIES_V2 } else { CHECKPOINT_ENTRIES_V1 };
        let bound_header =
            |h: &[u8]| &h[0..4] == b"TWB1" && xxh3_64(&h[0..56]) == u64le(h, 56) && u64le(h, 32) == seg_no && u64le(h, 40) == epoch;
        let seed = {
            let mut s = [0u8; 16];
            s[..8].copy_from_slice(&seg_no.to_le_bytes());
            s[8..].copy_from_slice(&epoch.to_le_bytes());
            xxh3_64(&s)
        };
        // Batches.
        let mut pos = 4096usize;
        let mut batch_no = 0u64;
        let mut checkpoint = Some(Checkpoint { seen: 0, parts: 0, entries: Vec::new() });
        while pos + 64 <= f.len() && f[pos..pos + 64].iter().any(|&b| b != 0) && (!recycled || bound_header(&f[pos..pos + 64])) {
            let h = &f[pos..pos + 64];
            if &h[0..4] != b"TWB1" || xxh3_64(&h[0..56]) != u64le(h, 56) {
                return Err(at("bad batch header", pos));
            }
            // DOC-GAP: the batch header and frame tables carry no version; the reader takes them
            // (magic `TWB1`, kinds 1..=3) as the same in format 1 and 2.
            let (first, count, payload) = (u64le(h, 16), u32le(h, 24), u32le(h, 28) as usize);
            if u32le(h, 4) != k || u64le(h, 8) != batch_no || first != log.next_lsn || count == 0 {
                return Err(at("batch header fields (K, number, first LSN, count)", pos));
            }
            if u64le(h, 32) != seg_no || u64le(h, 40) != epoch || u64le(h, 48) != 0 {
                return Err(at("batch binding (segment, epoch, reserved)", pos));
            }
            let padded = (64 + payload).div_ceil(4096) * 4096;
            if pos + padded > f.len() {
                return Err(at("batch runs past the segment", pos));
            }
            let mut group: Option<OpenGroup> = None;
            let mut fp = pos + 64;
            for i in 0..count as u64 {
                if fp + 24 > pos + 64 + payload {
                    return Err(at("frame header runs past the payload", fp));
                }
                let len = u32le(&f, fp + 8) as usize;
                if len > RECORD_BODY_MAX_BYTES || fp + 24 + len > pos + 64 + payload {
                    return Err(at("frame length", fp));
                }
                if xxh3_64_with_seed(&f[fp + 8..fp + 24 + len], seed) != u64le(&f, fp) {
                    return Err(at("frame checksum", fp));
                }
                let kind = f[fp + 12];
                let lsn = u64le(&f, fp + 16);
                if f[fp + 13..fp + 16] != [0, 0, 0] || lsn != first + i {
                    return Err(at("frame reserved bytes / LSN", fp));
                }
                let r = decode_body(version, kind, &f[fp + 24..fp + 24 + len]).map_err(|e| at(&format!("record {lsn}: {e}"), fp))?;
                let fail = |e: String| at(&format!("record {lsn}: {e}"), fp);
                // Groups: legs 0..s with consecutive LSNs, all of size s, in one batch.
                if let Some(g) = group.as_mut() {
                    match &r {
                        SpecRecord::Intent { group_leg, group_size, .. } if *group_size == g.size && *group_leg == g.next_leg => {
                            g.next_leg += 1;
                        }
                        _ => return Err(fail(format!("group {} of {} legs: leg {} out of place", g.id, g.size, g.next_leg))),
                    }
                } else if let SpecRecord::Intent { group_leg, group_size, .. } = &r {
                    if *group_size > 0 {
                        if *group_leg != 0 {
                            return Err(fail(format!("group leg {group_leg} of size {group_size} without legs 0..{group_leg} before it")));
                        }
                        log.groups.insert(lsn, *group_size);
                        group = Some(OpenGroup { id: lsn, size: *group_size, next_leg: 1 });
                    }
                }
                if group.as_ref().is_some_and(|g| g.next_leg == g.size) {
                    group = None;
                }
                // The checkpoint: the first records of each segment.
                match (&r, checkpoint.as_mut()) {
                    (SpecRecord::CheckpointPart { part, parts, entries, prev_range, .. }, Some(cp)) if *part == cp.seen => {
                        if *part == 0 {
                            cp.parts = *parts;
                            // DOC-GAP: the doc does not say when flag bit 0 must be set: "the
                            // last segment of a log, and segments written in format 1, have no
                            // recorded range" leaves open whether the checkpoint a new session
                            // writes records the range of the previous session's last segment, and
                            // whether a v2 segment records the range of a v1 segment before it. The
                            // reader takes the range as optional everywhere and, when it is there
                            // and the previous segment was read, requires it to equal the range
                            // computed from that segment's intent records (tests compare
                            // `prev_range_recorded` with the previous segment's `range`).
                            if let Some(rec) = prev_range {
                                seg.prev_range_recorded = Some(*rec);
                                // DOC-GAP: segment numbers start at 1 (R1), so segment 1 has no
                                // previous segment: flag bit 0 there is refused.
                                if no == 1 {
                                    return Err(fail("segment 1 records a time range for segment 0".into()));
                                }
                                // The previous segment was read: its range must be what we computed.
                                // (When retention removed it, the recorded range is only reported.)
                                if let Some(p) = log.segments.last() {
                                    if p.range != *rec {
                                        return Err(fail(format!(
                                            "checkpoint time range {rec:?} of segment {} differs from its intents {:?}",
                                            p.number, p.range
                                        )));
                                    }
                                }
                            }
                        } else if *parts != cp.parts {
                            return Err(fail(format!("checkpoint part {part} says {parts} parts, part 0 said {}", cp.parts)));
                        }
                        // Parts are filled in order: every part but the last holds exactly E entries.
                        let last = *part + 1 == *parts;
                        let ok = if last { !entries.is_empty() || *parts == 1 } else { entries.len() == per_part };
                        if !ok {
                            return Err(fail(format!(
                                "checkpoint part {part} of {parts} holds {} entries (parts are filled by {per_part}, in order)",
                                entries.len()
                            )));
                        }
                        if let (Some(a), Some(b)) = (cp.entries.last(), entries.first()) {
                            if a.lsn >= b.lsn {
                                return Err(fail("checkpoint entries not in LSN order across parts".into()));
                            }
                        }
                        if let Some(e) = entries.iter().find(|e| e.lsn >= lsn) {
                            return Err(fail(format!("checkpoint names LSN {} >= its own", e.lsn)));
                        }
                        cp.entries.extend(entries.iter().cloned());
                        cp.seen += 1;
                        if cp.seen == cp.parts {
                            let listed = std::mem::take(&mut cp.entries);
                            if first_data_segment {
                                // Retention may have removed what came before: the checkpoint seeds
                                // the set (its entries lie below this segment).
                                if let Some(e) = listed.iter().find(|e| e.lsn >= base) {
                                    return Err(fail(format!("seeding checkpoint names LSN {} >= base {base}", e.lsn)));
                                }
                                doubt = listed.into_iter().map(|e| (e.lsn, Doubt { intent: e.intent, fill: e.fill })).collect();
                            } else {
                                let have = entries_of(&doubt);
                                if listed != have {
                                    return Err(fail(checkpoint_difference(&listed, &have)));
                                }
                            }
                            checkpoint = None;
                        }
                    }
                    (_, Some(_)) => return Err(fail("segment does not start with a complete checkpoint (parts in order)".into())),
                    (SpecRecord::CheckpointPart { .. }, None) => return Err(fail("checkpoint part after the checkpoint".into())),
                    (SpecRecord::Intent { .. }, None) => {
                        let intent = r.intent().unwrap();
                        let range = &mut seg.range;
                        if range.intents == 0 {
                            (range.min_ts, range.max_ts) = (intent.ts_ns, intent.ts_ns);
                        } else {
                            range.min_ts = range.min_ts.min(intent.ts_ns);
                            range.max_ts = range.max_ts.max(intent.ts_ns);
                        }
                        range.intents += 1;
                        doubt.insert(lsn, Doubt { intent, fill: None });
                    }
                    (SpecRecord::Outcome { intent_lsn, status, qty, avg_price, venue_order_id, ts_ns, .. }, None) => {
                        if *intent_lsn >= lsn {
                            return Err(fail(format!("outcome names LSN {intent_lsn}, not below its own")));
                        }
                        // Names an intent with no terminal outcome yet (this also refuses anything
                        // after a terminal status, and an outcome of a non-intent record).
                        let Some(d) = doubt.get_mut(intent_lsn) else {
                            return Err(fail(format!("outcome of {intent_lsn}, not an intent in doubt")));
                        };
                        // DOC-GAP: "its qty is at least the intent's last cumulative qty" is applied
                        // to every status, so a Rejected (qty 0) after a partial fill is refused,
                        // and so is a Cancelled whose qty is below the filled qty. A version 1
                        // Executed (qty 0, "not recorded") meets it: version 1 has no fills.
                        if *status == STATUS_ABORTED && d.fill.is_some() {
                            return Err(fail(format!("Aborted for {intent_lsn}, which has an earlier outcome")));
                        }
                        let last = d.fill.as_ref().map_or(0.0, |f| f.qty);
                        if *qty < last {
                            return Err(fail(format!("cumulative qty of {intent_lsn} decreases from {last} to {qty}")));
                        }
                        if *qty > d.intent.fields[1] {
                            return Err(fail(format!(
                                "cumulative qty {qty} exceeds the qty {} of intent {intent_lsn}",
                                d.intent.fields[1]
                            )));
                        }
                        if *status == STATUS_PARTIALLY_FILLED {
                            d.fill =
                                Some(SpecFill { qty: *qty, avg_price: *avg_price, venue_order_id: venue_order_id.clone(), ts_ns: *ts_ns });
                        } else {
                            doubt.remove(intent_lsn);
                        }
                    }
                }
                log.records.insert(lsn, r);
                seg.records += 1;
                fp += 24 + len;
            }
            // DOC-GAP: the doc says a group is "written in one batch" and that a reader refuses "a
            // group cut short by the end of a segment"; it does not say whether a reader refuses a
            // group split across two batches of one segment. This reader does (the stricter one).
            if let Some(g) = group {
                return Err(at(
                    &format!("group {} of {} legs cut short after leg {} by the end of its batch", g.id, g.size, g.next_leg - 1),
                    pos,
                ));
            }
            if fp != pos + 64 + payload || f[fp..pos + padded].iter().any(|&b| b != 0) {
                return Err(at("payload length / padding", pos));
            }
            log.next_lsn = first + count as u64;
            pos += padded;
            batch_no += 1;
        }
        if checkpoint.is_some() {
            return Err(at("segment ends before its checkpoint is complete", pos));
        }
        if recycled {
            // Stale bytes may follow, but nothing of this life (that would be a torn write).
            if let Some(q) = (pos..f.len().saturating_sub(63)).step_by(4096).find(|&q| bound_header(&f[q..q + 64])) {
                return Err(at("a batch of this segment and epoch after the end of its data", q));
            }
        } else if f[pos..].iter().any(|&b| b != 0) {
            return Err(at("bytes after the last batch", pos));
        }
        log.segments.push(seg);
    }
    log.in_doubt_entries = entries_of(&doubt);
    log.in_doubt = doubt.into_keys().collect();
    Ok(log)
}

fn entries_of(doubt: &BTreeMap<u64, Doubt>) -> Vec<SpecEntry> {
    doubt.iter().map(|(l, d)| SpecEntry { lsn: *l, intent: d.intent.clone(), fill: d.fill.clone() }).collect()
}

/// Says where a checkpoint first differs from the computed in-doubt set.
fn checkpoint_difference(listed: &[SpecEntry], have: &[SpecEntry]) -> String {
    for (a, b) in listed.iter().zip(have) {
        if a != b {
            return format!("checkpoint differs from the in-doubt set: listed {a:?}, computed {b:?}");
        }
    }
    format!("checkpoint differs from the in-doubt set: {} entries listed, {} in doubt", listed.len(), have.len())
}

/// Segment images built by hand from the doc's tables (a little encoder of their own, not the
/// codec's), read back by the reader: every record kind, every rule refused, version 1 then 2.
#[cfg(test)]
mod tests {
    use super::*;

    const LOG_ID: u64 = 0x1234_5678_9abc_def0;
    const SEG_BYTES: usize = 64 << 10;
    const K: u32 = 4;

    type Rec = (u8, Vec<u8>);

    fn intent(ts_ns: i64, symbol: &str, qty: f64) -> SpecIntent {
        SpecIntent {
            ts_ns,
            symbol: symbol.into(),
            side: 0,
            fields: [100.5, qty, 0.0, 0.0],
            tag: None,
            cl_ord_id: None,
            group_leg: 0,
            group_size: 0,
        }
    }

    fn leg(ts_ns: i64, leg: u16, size: u16) -> SpecIntent {
        SpecIntent { group_leg: leg, group_size: size, ..intent(ts_ns, "LEG", 3.0) }
    }

    /// "Intent (kind 1)", version 2.
    fn enc_intent_v2(i: &SpecIntent) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(i.ts_ns.to_le_bytes());
        for f in i.fields {
            b.extend(f.to_bits().to_le_bytes());
        }
        b.extend(i.tag.unwrap_or(0).to_le_bytes());
        b.extend(i.group_leg.to_le_bytes());
        b.extend(i.group_size.to_le_bytes());
        b.push(i.side as u8);
        b.push(i.cl_ord_id.is_some() as u8 | (i.tag.is_some() as u8) << 1);
        b.push(i.symbol.len() as u8);
        b.push(i.cl_ord_id.as_ref().map_or(0, |c| c.len() as u8));
        b.extend([0; 4]);
        b.extend(i.symbol.as_bytes());
        b.extend(i.cl_ord_id.as_deref().unwrap_or("").as_bytes());
        b
    }

    /// "Intent (kind 1)", version 1 (bincode, fixed-width integers).
    fn enc_intent_v1(i: &SpecIntent) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(i.ts_ns.to_le_bytes());
        b.extend((i.symbol.len() as u64).to_le_bytes());
        b.extend(i.symbol.as_bytes());
        b.extend(i.side.to_le_bytes());
        for f in i.fields {
            b.extend(f.to_bits().to_le_bytes());
        }
        b
    }

    /// "Outcome (kind 2)", version 2.
    fn enc_outcome_v2(intent_lsn: u64, status: u8, qty: f64, avg: f64, reason: u32, venue: &str, ts: i64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(intent_lsn.to_le_bytes());
        b.extend(ts.to_le_bytes());
        b.extend(qty.to_bits().to_le_bytes());
        b.extend(avg.to_bits().to_le_bytes());
        b.extend(reason.to_le_bytes());
        b.push(status);
        b.push(venue.len() as u8);
        b.extend([0; 2]);
        b.extend(venue.as_bytes());
        b
    }

    /// "Checkpoint part (kind 3)", version 2, with its entries.
    fn enc_checkpoint_v2(part: u32, parts: u32, range: Option<SpecTimeRange>, entries: &[SpecEntry]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(part.to_le_bytes());
        b.extend(parts.to_le_bytes());
        b.extend((entries.len() as u32).to_le_bytes());
        b.extend((range.is_some() as u32).to_le_bytes());
        let r = range.unwrap_or_default();
        b.extend(r.intents.to_le_bytes());
        b.extend(r.min_ts.to_le_bytes());
        b.extend(r.max_ts.to_le_bytes());
        for e in entries {
            b.extend(e.lsn.to_le_bytes());
            let f = e.fill.clone().unwrap_or(SpecFill { qty: 0.0, avg_price: 0.0, venue_order_id: String::new(), ts_ns: 0 });
            b.extend(f.qty.to_bits().to_le_bytes());
            b.extend(f.avg_price.to_bits().to_le_bytes());
            b.extend(f.ts_ns.to_le_bytes());
            b.push(f.venue_order_id.len() as u8);
            b.extend([0; 7]);
            b.extend(enc_intent_v2(&e.intent));
            b.extend(f.venue_order_id.as_bytes());
        }
        b
    }

    /// "Checkpoint part (kind 3)", version 1.
    fn enc_checkpoint_v1(part: u32, parts: u32, entries: &[SpecEntry]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(part.to_le_bytes());
        b.extend(parts.to_le_bytes());
        b.extend((entries.len() as u64).to_le_bytes());
        for e in entries {
            b.extend(e.lsn.to_le_bytes());
            b.extend(enc_intent_v1(&e.intent));
        }
        b
    }

    fn i2(i: &SpecIntent) -> Rec {
        (1, enc_intent_v2(i))
    }
    fn o2(intent_lsn: u64, status: u8, qty: f64) -> Rec {
        (2, enc_outcome_v2(intent_lsn, status, qty, 0.0, 0, "", 0))
    }
    fn cp2(part: u32, parts: u32, range: Option<SpecTimeRange>, entries: &[SpecEntry]) -> Rec {
        (3, enc_checkpoint_v2(part, parts, range, entries))
    }
    fn empty_cp2() -> Rec {
        cp2(0, 1, None, &[])
    }
    fn entry(lsn: u64, intent: &SpecIntent, fill: Option<SpecFill>) -> SpecEntry {
        SpecEntry { lsn, intent: intent.clone(), fill }
    }
    fn fill(qty: f64, avg_price: f64, venue: &str, ts_ns: i64) -> Option<SpecFill> {
        Some(SpecFill { qty, avg_price, venue_order_id: venue.into(), ts_ns })
    }

    struct Seg {
        version: u32,
        number: u64,
        epoch: u64,
        base: u64,
        batches: Vec<Vec<Rec>>,
    }

    /// One segment file: header (block 0), batches with seeded frame checksums, zeros.
    fn image(s: &Seg) -> Vec<u8> {
        let mut f = vec![0u8; SEG_BYTES];
        let mut h = Vec::new();
        h.extend(b"TRADEWAL");
        h.extend(s.version.to_le_bytes());
        h.extend(K.to_le_bytes());
        h.extend(LOG_ID.to_le_bytes());
        h.extend(77u64.to_le_bytes()); // session id
        h.extend(1_767_225_600i64.to_le_bytes()); // session start
        h.extend(s.number.to_le_bytes());
        h.extend(s.epoch.to_le_bytes());
        h.extend(s.base.to_le_bytes());
        h.extend((SEG_BYTES as u64).to_le_bytes());
        h.extend(1_767_225_600_000_000_000i64.to_le_bytes()); // created
        h.extend([0; 8]);
        let c = xxh3_64(&h);
        h.extend(c.to_le_bytes());
        f[..96].copy_from_slice(&h);
        let mut seed_in = s.number.to_le_bytes().to_vec();
        seed_in.extend(s.epoch.to_le_bytes());
        let seed = xxh3_64(&seed_in);
        let (mut pos, mut lsn) = (4096, s.base);
        for (j, batch) in s.batches.iter().enumerate() {
            let first = lsn;
            let mut payload = Vec::new();
            for (kind, body) in batch {
                let mut fr = vec![0u8; 8];
                fr.extend((body.len() as u32).to_le_bytes());
                fr.push(*kind);
                fr.extend([0; 3]);
                fr.extend(lsn.to_le_bytes());
                fr.extend(body);
                let c = xxh3_64_with_seed(&fr[8..], seed);
                fr[..8].copy_from_slice(&c.to_le_bytes());
                payload.extend(fr);
                lsn += 1;
            }
            let mut bh = Vec::new();
            bh.extend(b"TWB1");
            bh.extend(K.to_le_bytes());
            bh.extend((j as u64).to_le_bytes());
            bh.extend(first.to_le_bytes());
            bh.extend((batch.len() as u32).to_le_bytes());
            bh.extend((payload.len() as u32).to_le_bytes());
            bh.extend(s.number.to_le_bytes());
            bh.extend(s.epoch.to_le_bytes());
            bh.extend([0; 8]);
            let c = xxh3_64(&bh);
            bh.extend(c.to_le_bytes());
            f[pos..pos + 64].copy_from_slice(&bh);
            f[pos + 64..pos + 64 + payload.len()].copy_from_slice(&payload);
            pos += (64 + payload.len()).div_ceil(4096) * 4096;
        }
        f
    }

    /// A log built segment by segment, batch by batch.
    struct Log {
        segs: Vec<Seg>,
        next_lsn: u64,
        next_no: u64,
    }

    impl Log {
        fn new() -> Self {
            Log { segs: Vec::new(), next_lsn: 1, next_no: 1 }
        }
        /// A log whose earlier segments were removed: it starts at segment `no`, LSN `lsn`.
        fn starting_at(no: u64, lsn: u64) -> Self {
            Log { segs: Vec::new(), next_lsn: lsn, next_no: no }
        }
        fn seg(&mut self, version: u32) -> &mut Self {
            let number = self.next_no;
            self.next_no += 1;
            self.segs.push(Seg { version, number, epoch: number << 8, base: self.next_lsn, batches: Vec::new() });
            self
        }
        fn batch(&mut self, recs: Vec<Rec>) -> &mut Self {
            self.next_lsn += recs.len() as u64;
            self.segs.last_mut().unwrap().batches.push(recs);
            self
        }
        fn read(&self, name: &str) -> Result<SpecLog, String> {
            let d = std::env::temp_dir().join(format!("tw-spec-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            for s in &self.segs {
                std::fs::write(d.join(format!("wal_20260101_000000_{:06}.log", s.number)), image(s)).unwrap();
            }
            let r = read_dir(&d);
            std::fs::remove_dir_all(&d).unwrap();
            r
        }
    }

    fn refused(log: &Log, name: &str, want: &str) {
        match log.read(name) {
            Ok(l) => panic!("{name}: read as valid ({} records), expected an error naming {want:?}", l.records.len()),
            Err(e) => assert!(e.contains(want), "{name}: error {e:?} does not name {want:?}"),
        }
    }

    #[test]
    fn every_v2_record_kind_round_trips() {
        let a = SpecIntent {
            cl_ord_id: Some("ORD-1/a~".into()),
            tag: Some(7),
            side: 1,
            fields: [101.25, 5.0, 90.0, 120.0],
            ..intent(1_000, "BTCUSDT", 5.0)
        };
        let b = SpecIntent { cl_ord_id: Some("x".repeat(36)), ..leg(900, 0, 2) };
        let c = leg(1_100, 1, 2);
        let d = SpecIntent { tag: Some(0), ..intent(-5, "ABCDEFGHIJKLMNOP", 2.0) };
        let e = intent(2_000, "E", 4.0);
        let f = SpecIntent { tag: Some(u32::MAX), ..intent(3_000, "F", 1.0) };
        let mut log = Log::new();
        log.seg(2).batch(vec![empty_cp2()]); // LSN 1
        log.batch(vec![i2(&a), i2(&b), i2(&c), i2(&d), i2(&e)]); // 2..=6
        log.batch(vec![
            (2, enc_outcome_v2(2, STATUS_PARTIALLY_FILLED, 1.0, 10.5, 0, "V-1", 5)), // 7
            (2, enc_outcome_v2(5, STATUS_REJECTED, 0.0, 0.0, 42, "V-5", 7)),         // 8
            (2, enc_outcome_v2(3, STATUS_CANCELLED, 0.0, 0.0, 0, "", 0)),            // 9
            (2, enc_outcome_v2(6, STATUS_FILLED, 4.0, 11.0, 0, "", 9)),              // 10
        ]);
        let range1 = SpecTimeRange { intents: 5, min_ts: -5, max_ts: 2_000 };
        let cp = vec![entry(2, &a, fill(1.0, 10.5, "V-1", 5)), entry(4, &c, None)];
        log.seg(2).batch(vec![cp2(0, 1, Some(range1), &cp)]); // 11
        log.batch(vec![
            (2, enc_outcome_v2(2, STATUS_PARTIALLY_FILLED, 2.5, 10.75, 0, "V-1b", 12)), // 12
            (2, enc_outcome_v2(4, STATUS_ABORTED, 0.0, 0.0, 0, "", 0)),                 // 13
        ]);
        log.batch(vec![i2(&f)]); // 14
        let got = log.read("roundtrip").unwrap();

        assert_eq!(got.next_lsn, 15);
        assert_eq!(got.records.len(), 14);
        for (lsn, i) in [(2, &a), (3, &b), (4, &c), (5, &d), (6, &e), (14, &f)] {
            assert_eq!(got.records[&lsn], SpecRecord::from(i.clone()), "intent {lsn}");
            assert_eq!(got.records[&lsn].intent().as_ref(), Some(i));
        }
        let out = |intent_lsn, status, qty, avg_price, reason, venue: &str, ts_ns| SpecRecord::Outcome {
            intent_lsn,
            status,
            qty,
            avg_price,
            reason,
            venue_order_id: venue.into(),
            ts_ns,
        };
        assert_eq!(got.records[&7], out(2, STATUS_PARTIALLY_FILLED, 1.0, 10.5, 0, "V-1", 5));
        assert_eq!(got.records[&8], out(5, STATUS_REJECTED, 0.0, 0.0, 42, "V-5", 7));
        assert_eq!(got.records[&9], out(3, STATUS_CANCELLED, 0.0, 0.0, 0, "", 0));
        assert_eq!(got.records[&10], out(6, STATUS_FILLED, 4.0, 11.0, 0, "", 9));
        assert_eq!(got.records[&12], out(2, STATUS_PARTIALLY_FILLED, 2.5, 10.75, 0, "V-1b", 12));
        assert_eq!(got.records[&13], out(4, STATUS_ABORTED, 0.0, 0.0, 0, "", 0));
        assert_eq!(got.records[&1], SpecRecord::CheckpointPart { part: 0, parts: 1, lsns: vec![], entries: vec![], prev_range: None });
        assert_eq!(
            got.records[&11],
            SpecRecord::CheckpointPart { part: 0, parts: 1, lsns: vec![2, 4], entries: cp, prev_range: Some(range1) }
        );

        assert_eq!(got.in_doubt, vec![2, 14]);
        assert_eq!(got.in_doubt_entries, vec![entry(2, &a, fill(2.5, 10.75, "V-1b", 12)), entry(14, &f, None)]);
        assert_eq!(got.groups, BTreeMap::from([(3, 2)]));
        assert_eq!(got.data_segments, 2);
        let s = &got.segments;
        assert_eq!(
            (s[0].number, s[0].version, s[0].base_lsn, s[0].records, s[0].range, s[0].prev_range_recorded),
            (1, 2, 1, 10, range1, None)
        );
        let range2 = SpecTimeRange { intents: 1, min_ts: 3_000, max_ts: 3_000 };
        assert_eq!((s[1].number, s[1].base_lsn, s[1].records, s[1].range, s[1].prev_range_recorded), (2, 11, 4, range2, Some(range1)));
    }

    /// A segment whose intents are all resolved records an empty range (0, 0, 0).
    #[test]
    fn an_empty_range_and_an_omitted_range_read() {
        let a = intent(50, "A", 1.0);
        let mut log = Log::new();
        log.seg(2).batch(vec![empty_cp2(), i2(&a), o2(2, STATUS_FILLED, 1.0)]);
        log.seg(2).batch(vec![cp2(0, 1, Some(SpecTimeRange { intents: 1, min_ts: 50, max_ts: 50 }), &[])]);
        log.seg(2).batch(vec![cp2(0, 1, Some(SpecTimeRange::default()), &[])]);
        log.seg(2).batch(vec![empty_cp2()]); // no recorded range: allowed
        let got = log.read("ranges").unwrap();
        let recorded: Vec<_> = got.segments.iter().map(|s| s.prev_range_recorded).collect();
        assert_eq!(recorded, vec![None, Some(SpecTimeRange { intents: 1, min_ts: 50, max_ts: 50 }), Some(SpecTimeRange::default()), None]);
        assert!(got.in_doubt.is_empty());
    }

    #[test]
    fn checkpoint_parts_are_filled_by_128_in_order() {
        let intents: Vec<SpecIntent> = (0..130).map(|i| intent(i, "S", 1.0)).collect();
        let entries: Vec<SpecEntry> = intents.iter().enumerate().map(|(i, x)| entry(i as u64 + 2, x, None)).collect();
        let base = || {
            let mut log = Log::new();
            log.seg(2).batch(vec![empty_cp2()]).batch(intents.iter().map(i2).collect());
            log
        };
        let mut ok = base();
        ok.seg(2).batch(vec![cp2(0, 2, None, &entries[..128])]).batch(vec![cp2(1, 2, None, &entries[128..])]);
        let got = ok.read("parts-ok").unwrap();
        assert_eq!(got.in_doubt.len(), 130);
        assert_eq!(got.next_lsn, 134);

        let mut even = base();
        even.seg(2).batch(vec![cp2(0, 2, None, &entries[..65]), cp2(1, 2, None, &entries[65..])]);
        refused(&even, "parts-even", "filled by 128");
        let mut one = base();
        one.seg(2).batch(vec![cp2(0, 1, None, &entries)]);
        refused(&one, "parts-one", "with 130 entries");
        let mut three = base();
        three.seg(2).batch(vec![cp2(0, 3, None, &entries[..128]), cp2(1, 3, None, &entries[128..129]), cp2(2, 3, None, &entries[129..])]);
        refused(&three, "parts-three", "filled by 128");
        let mut empty_last = base();
        empty_last.seg(2).batch(vec![cp2(0, 3, None, &entries[..128]), cp2(1, 3, None, &entries[128..]), cp2(2, 3, None, &[])]);
        refused(&empty_last, "parts-empty-last", "filled by 128");
        let mut swapped = base();
        swapped.seg(2).batch(vec![cp2(1, 2, None, &entries[128..]), cp2(0, 2, None, &entries[..128])]);
        refused(&swapped, "parts-swapped", "complete checkpoint");
        let mut short = base();
        short.seg(2).batch(vec![cp2(0, 2, None, &entries[..128]), i2(&intent(1, "Z", 1.0))]);
        refused(&short, "parts-short", "complete checkpoint");
        let mut disagree = base();
        disagree.seg(2).batch(vec![cp2(0, 2, None, &entries[..128]), cp2(1, 3, None, &entries[128..])]);
        refused(&disagree, "parts-count", "part 0 said 2");
    }

    /// A segment 1 of two intents X (LSN 2, qty 10) and Y (LSN 3), then `recs` in one batch.
    fn with_batch(recs: Vec<Rec>) -> Log {
        let mut log = Log::new();
        log.seg(2).batch(vec![empty_cp2(), i2(&intent(10, "X", 10.0)), i2(&intent(20, "Y", 10.0))]).batch(recs);
        log
    }

    #[test]
    fn outcome_rules_are_refused() {
        let cases: Vec<(&str, Vec<Rec>, &str)> = vec![
            ("unknown", vec![o2(1, STATUS_FILLED, 1.0)], "not an intent in doubt"),
            ("future", vec![o2(9, STATUS_FILLED, 1.0)], "not below its own"),
            ("self", vec![o2(4, STATUS_FILLED, 1.0)], "not below its own"),
            ("after-filled", vec![o2(2, STATUS_FILLED, 10.0), o2(2, STATUS_PARTIALLY_FILLED, 10.0)], "not an intent in doubt"),
            ("after-rejected", vec![o2(2, STATUS_REJECTED, 0.0), o2(2, STATUS_CANCELLED, 0.0)], "not an intent in doubt"),
            ("after-cancelled", vec![o2(2, STATUS_CANCELLED, 1.0), o2(2, STATUS_FILLED, 10.0)], "not an intent in doubt"),
            ("after-aborted", vec![o2(2, STATUS_ABORTED, 0.0), o2(2, STATUS_ABORTED, 0.0)], "not an intent in doubt"),
            ("decreases", vec![o2(2, STATUS_PARTIALLY_FILLED, 5.0), o2(2, STATUS_PARTIALLY_FILLED, 4.0)], "decreases"),
            ("filled-below", vec![o2(2, STATUS_PARTIALLY_FILLED, 5.0), o2(2, STATUS_FILLED, 4.0)], "decreases"),
            ("cancel-below", vec![o2(2, STATUS_PARTIALLY_FILLED, 5.0), o2(2, STATUS_CANCELLED, 3.0)], "decreases"),
            ("reject-after-fill", vec![o2(2, STATUS_PARTIALLY_FILLED, 5.0), o2(2, STATUS_REJECTED, 0.0)], "decreases"),
            ("exceeds", vec![o2(2, STATUS_PARTIALLY_FILLED, 10.5)], "exceeds"),
            ("filled-exceeds", vec![o2(2, STATUS_FILLED, 11.0)], "exceeds"),
            ("cancel-exceeds", vec![o2(2, STATUS_CANCELLED, 11.0)], "exceeds"),
            ("aborted-after-fill", vec![o2(2, STATUS_PARTIALLY_FILLED, 1.0), o2(2, STATUS_ABORTED, 0.0)], "Aborted for 2"),
        ];
        for (name, recs, want) in cases {
            refused(&with_batch(recs), name, want);
        }
        // And what the rules allow: equal cumulative qty, a full partial, a Cancelled at the fill.
        let ok = with_batch(vec![
            o2(2, STATUS_PARTIALLY_FILLED, 5.0),
            o2(2, STATUS_PARTIALLY_FILLED, 5.0),
            o2(2, STATUS_CANCELLED, 5.0),
            o2(3, STATUS_PARTIALLY_FILLED, 10.0),
        ]);
        let got = ok.read("outcomes-ok").unwrap();
        assert_eq!(got.in_doubt, vec![3]);
        assert_eq!(got.in_doubt_entries[0].fill, fill(10.0, 0.0, "", 0));
    }

    #[test]
    fn group_rules_are_refused() {
        let cases: Vec<(&str, Vec<Vec<Rec>>, &str)> = vec![
            ("interrupted-by-intent", vec![vec![i2(&leg(1, 0, 3)), i2(&leg(2, 1, 3)), i2(&intent(3, "P", 1.0))]], "out of place"),
            ("interrupted-by-outcome", vec![vec![i2(&leg(1, 0, 2)), o2(2, STATUS_ABORTED, 0.0), i2(&leg(2, 1, 2))]], "out of place"),
            ("size-changes", vec![vec![i2(&leg(1, 0, 2)), i2(&leg(2, 1, 3))]], "out of place"),
            ("leg-skipped", vec![vec![i2(&leg(1, 0, 3)), i2(&leg(2, 2, 3))]], "out of place"),
            ("leg-repeated", vec![vec![i2(&leg(1, 0, 2)), i2(&leg(2, 0, 2))]], "out of place"),
            ("no-leg-0", vec![vec![i2(&leg(1, 1, 2))]], "without legs"),
            ("extra-leg", vec![vec![i2(&leg(1, 0, 2)), i2(&leg(2, 1, 2)), i2(&leg(3, 1, 2))]], "without legs"),
            ("across-batches", vec![vec![i2(&leg(1, 0, 2))], vec![i2(&leg(2, 1, 2))]], "cut short"),
            ("at-segment-end", vec![vec![i2(&leg(1, 0, 2))]], "cut short"),
        ];
        for (name, batches, want) in cases {
            let mut log = Log::new();
            log.seg(2).batch(vec![empty_cp2()]);
            for b in batches {
                log.batch(b);
            }
            refused(&log, name, want);
        }
        // Groups of 1 and 32 legs, back to back, and one after a checkpoint in the next segment.
        let mut log = Log::new();
        let mut b = vec![empty_cp2(), i2(&leg(1, 0, 1))];
        b.extend((0..32).map(|l| i2(&leg(2, l, 32))));
        log.seg(2).batch(b);
        log.seg(2).batch(vec![
            cp2(
                0,
                1,
                None,
                &(2..35)
                    .map(|l| {
                        entry(l, &leg(if l == 2 { 1 } else { 2 }, if l == 2 { 0 } else { l as u16 - 3 }, if l == 2 { 1 } else { 32 }), None)
                    })
                    .collect::<Vec<_>>(),
            ),
            i2(&leg(3, 0, 2)),
            i2(&leg(3, 1, 2)),
        ]);
        let got = log.read("groups-ok").unwrap();
        assert_eq!(got.groups, BTreeMap::from([(2, 1), (3, 32), (36, 2)]));
        assert_eq!(got.in_doubt.len(), 35);
    }

    #[test]
    fn checkpoint_content_and_seeding_rules_are_refused() {
        let x = intent(10, "X", 10.0);
        let y = intent(20, "Y", 10.0);
        let seg1 = || {
            let mut log = Log::new();
            log.seg(2).batch(vec![empty_cp2(), i2(&x), i2(&y), (2, enc_outcome_v2(2, STATUS_PARTIALLY_FILLED, 3.0, 9.5, 0, "VX", 44))]);
            log
        };
        let range = Some(SpecTimeRange { intents: 2, min_ts: 10, max_ts: 20 });
        let good = vec![entry(2, &x, fill(3.0, 9.5, "VX", 44)), entry(3, &y, None)];
        let mut ok = seg1();
        ok.seg(2).batch(vec![cp2(0, 1, range, &good)]);
        assert_eq!(ok.read("cp-ok").unwrap().in_doubt, vec![2, 3]);

        let variants: Vec<(&str, Vec<SpecEntry>, Option<SpecTimeRange>, &str)> = vec![
            ("missing", vec![good[0].clone()], range, "1 entries listed, 2 in doubt"),
            ("extra", vec![good[0].clone(), good[1].clone(), entry(4, &y, None)], range, "3 entries listed, 2 in doubt"),
            ("not-below-own", vec![good[0].clone(), good[1].clone(), entry(5, &y, None)], range, "names LSN 5 >= its own"),
            ("resolved", vec![good[1].clone()], range, "listed SpecEntry { lsn: 3"),
            ("no-fill", vec![entry(2, &x, None), good[1].clone()], range, "differs"),
            ("fill-qty", vec![entry(2, &x, fill(2.0, 9.5, "VX", 44)), good[1].clone()], range, "differs"),
            ("fill-venue", vec![entry(2, &x, fill(3.0, 9.5, "VY", 44)), good[1].clone()], range, "differs"),
            ("fill-ts", vec![entry(2, &x, fill(3.0, 9.5, "VX", 45)), good[1].clone()], range, "differs"),
            (
                "intent-price",
                vec![good[0].clone(), entry(3, &SpecIntent { fields: [100.25, 10.0, 0.0, 0.0], ..y.clone() }, None)],
                range,
                "differs",
            ),
            ("intent-tag", vec![good[0].clone(), entry(3, &SpecIntent { tag: Some(0), ..y.clone() }, None)], range, "differs"),
            ("range-count", good.clone(), Some(SpecTimeRange { intents: 3, min_ts: 10, max_ts: 20 }), "time range"),
            ("range-min", good.clone(), Some(SpecTimeRange { intents: 2, min_ts: 11, max_ts: 20 }), "time range"),
            ("range-max", good.clone(), Some(SpecTimeRange { intents: 2, min_ts: 10, max_ts: 21 }), "time range"),
        ];
        for (name, entries, r, want) in variants {
            let mut log = seg1();
            log.seg(2).batch(vec![cp2(0, 1, r, &entries)]);
            refused(&log, name, want);
        }
        // Segment 1 has no previous segment.
        let mut log = Log::new();
        log.seg(2).batch(vec![cp2(0, 1, Some(SpecTimeRange::default()), &[])]);
        refused(&log, "range-on-1", "segment 1 records");
        // Every segment starts with its checkpoint, and holds no other.
        let mut log = Log::new();
        log.seg(2).batch(vec![i2(&x)]);
        refused(&log, "no-checkpoint", "complete checkpoint");
        let mut log = Log::new();
        log.seg(2).batch(vec![empty_cp2(), i2(&x), empty_cp2()]);
        refused(&log, "late-checkpoint", "after the checkpoint");

        // Seeding: segments 1..=4 removed; segment 5 starts at LSN 100 and its checkpoint seeds the
        // set, fills included.
        let mut seeded = Log::starting_at(5, 100);
        seeded.seg(2).batch(vec![cp2(
            0,
            1,
            Some(SpecTimeRange { intents: 9, min_ts: 1, max_ts: 2 }),
            &[entry(10, &x, fill(4.0, 1.0, "S", 3)), entry(99, &y, None)],
        )]);
        seeded.batch(vec![(2, enc_outcome_v2(10, STATUS_PARTIALLY_FILLED, 6.0, 1.5, 0, "S", 4)), o2(99, STATUS_FILLED, 10.0)]);
        let got = seeded.read("seeded").unwrap();
        assert_eq!(got.in_doubt_entries, vec![entry(10, &x, fill(6.0, 1.5, "S", 4))]);
        assert_eq!(got.segments[0].prev_range_recorded, Some(SpecTimeRange { intents: 9, min_ts: 1, max_ts: 2 }));
        assert_eq!(*got.records.keys().next().unwrap(), 100);
        // A seeded fill still bounds what follows.
        let mut seeded = Log::starting_at(5, 100);
        seeded.seg(2).batch(vec![cp2(0, 1, None, &[entry(10, &x, fill(4.0, 1.0, "S", 3))])]);
        seeded.batch(vec![o2(10, STATUS_PARTIALLY_FILLED, 3.0)]);
        refused(&seeded, "seeded-decreases", "decreases");
        let mut bad = Log::starting_at(5, 1000);
        bad.seg(2).batch(vec![
            cp2(0, 2, None, &(0..128).map(|i| entry(i + 1, &x, None)).collect::<Vec<_>>()),
            cp2(1, 2, None, &[entry(1000, &y, None)]),
        ]);
        refused(&bad, "seeding-above-base", "seeding checkpoint names LSN 1000 >= base 1000");
    }

    /// Every body rule of the version 2 tables, one mutation of a valid body at a time.
    #[test]
    fn body_rules_are_refused() {
        let a = SpecIntent { cl_ord_id: Some("C1".into()), tag: Some(3), group_leg: 1, group_size: 2, ..intent(1, "SYM", 2.0) };
        let ib = enc_intent_v2(&a);
        assert_eq!(decode_body(2, 1, &ib), Ok(SpecRecord::from(a.clone())));
        let set = |b: &[u8], at: usize, v: &[u8]| {
            let mut b = b.to_vec();
            b[at..at + v.len()].copy_from_slice(v);
            b
        };
        let f = |v: f64| v.to_bits().to_le_bytes();
        let intent_cases: Vec<(&str, Vec<u8>)> = vec![
            ("longer", [ib.clone(), vec![b'x']].concat()),
            ("shorter", ib[..ib.len() - 1].to_vec()),
            ("under-56", ib[..55].to_vec()),
            ("price-0", set(&ib, 8, &f(0.0))),
            ("price-nan", set(&ib, 8, &f(f64::NAN))),
            ("qty-inf", set(&ib, 16, &f(f64::INFINITY))),
            ("qty-negative", set(&ib, 16, &f(-1.0))),
            ("stop-minus-0", set(&ib, 24, &f(-0.0))),
            ("take-negative", set(&ib, 32, &f(-2.0))),
            ("leg-ge-size", set(&ib, 44, &2u16.to_le_bytes())),
            ("size-33", set(&set(&ib, 46, &33u16.to_le_bytes()), 44, &0u16.to_le_bytes())),
            ("leg-without-group", set(&set(&ib, 46, &0u16.to_le_bytes()), 44, &1u16.to_le_bytes())),
            ("side-2", set(&ib, 48, &[2])),
            ("flag-bit-2", set(&ib, 49, &[0b111])),
            ("tag-without-flag", set(&ib, 49, &[0b01])),
            ("cl-without-flag", set(&ib, 49, &[0b10])),
            ("symbol-0", set(&ib, 50, &[0])),
            ("reserved-52", set(&ib, 52, &[1])),
            ("reserved-55", set(&ib, 55, &[1])),
            ("symbol-space", set(&ib, 57, b" ")),
            ("symbol-del", set(&ib, 56, &[0x7f])),
            ("cl-nonprintable", set(&ib, 59, &[0x80])),
            ("symbol-17", enc_intent_v2(&intent(1, "ABCDEFGHIJKLMNOPQ", 1.0))),
            ("cl-37", enc_intent_v2(&SpecIntent { cl_ord_id: Some("c".repeat(37)), ..a.clone() })),
            ("cl-empty-with-flag", enc_intent_v2(&SpecIntent { cl_ord_id: Some(String::new()), ..a.clone() })),
        ];
        for (name, b) in intent_cases {
            assert!(decode_body(2, 1, &b).is_err(), "intent {name}: accepted");
        }

        let ob = enc_outcome_v2(5, STATUS_PARTIALLY_FILLED, 1.0, 2.0, 0, "VEN", 9);
        assert!(decode_body(2, 2, &ob).is_ok());
        let rej = enc_outcome_v2(5, STATUS_REJECTED, 0.0, 0.0, 9, "", 0);
        assert!(decode_body(2, 2, &rej).is_ok());
        let outcome_cases: Vec<(&str, Vec<u8>)> = vec![
            ("longer", [ob.clone(), vec![b'x']].concat()),
            ("shorter", ob[..ob.len() - 1].to_vec()),
            ("lsn-0", set(&ob, 0, &0u64.to_le_bytes())),
            ("status-0", set(&ob, 36, &[0])),
            ("status-6", set(&ob, 36, &[6])),
            ("partial-qty-0", set(&ob, 16, &f(0.0))),
            ("partial-qty-nan", set(&ob, 16, &f(f64::NAN))),
            ("partial-avg-negative", set(&ob, 24, &f(-1.0))),
            ("partial-avg-inf", set(&ob, 24, &f(f64::INFINITY))),
            ("partial-reason", set(&ob, 32, &1u32.to_le_bytes())),
            ("filled-qty-0", enc_outcome_v2(5, STATUS_FILLED, 0.0, 0.0, 0, "", 0)),
            ("rejected-qty", enc_outcome_v2(5, STATUS_REJECTED, 1.0, 0.0, 0, "", 0)),
            ("rejected-avg", enc_outcome_v2(5, STATUS_REJECTED, 0.0, 1.0, 0, "", 0)),
            ("aborted-minus-0", enc_outcome_v2(5, STATUS_ABORTED, -0.0, 0.0, 0, "", 0)),
            ("aborted-reason", enc_outcome_v2(5, STATUS_ABORTED, 0.0, 0.0, 1, "", 0)),
            ("cancelled-negative", enc_outcome_v2(5, STATUS_CANCELLED, -1.0, 0.0, 0, "", 0)),
            ("cancelled-avg", enc_outcome_v2(5, STATUS_CANCELLED, 1.0, 3.0, 0, "", 0)),
            ("reserved-38", set(&ob, 38, &[1])),
            ("reserved-39", set(&ob, 39, &[1])),
            ("venue-space", set(&ob, 41, b" ")),
            ("venue-37", enc_outcome_v2(5, STATUS_FILLED, 1.0, 0.0, 0, &"v".repeat(37), 0)),
        ];
        for (name, b) in outcome_cases {
            assert!(decode_body(2, 2, &b).is_err(), "outcome {name}: accepted");
        }

        let e = vec![entry(3, &a, fill(1.0, 2.0, "V", 4)), entry(9, &intent(2, "Q", 1.0), None)];
        let cb = enc_checkpoint_v2(0, 1, Some(SpecTimeRange { intents: 2, min_ts: -1, max_ts: 1 }), &e);
        assert!(decode_body(2, 3, &cb).is_ok());
        let e0 = 40; // the first entry
        let e1 = 40 + 40 + ib.len() + 1; // the second entry
        let many: Vec<SpecEntry> = (1..=129).map(|l| entry(l, &intent(1, "M", 1.0), None)).collect();
        let checkpoint_cases: Vec<(&str, Vec<u8>)> = vec![
            ("longer", [cb.clone(), vec![0]].concat()),
            ("shorter", cb[..cb.len() - 1].to_vec()),
            ("part-ge-parts", set(&cb, 0, &1u32.to_le_bytes())),
            ("parts-0", set(&set(&cb, 4, &0u32.to_le_bytes()), 0, &0u32.to_le_bytes())),
            ("count-129", enc_checkpoint_v2(0, 1, None, &many)),
            ("count-more", set(&cb, 8, &3u32.to_le_bytes())),
            ("count-less", set(&cb, 8, &1u32.to_le_bytes())),
            ("flag-bit-1", set(&cb, 12, &3u32.to_le_bytes())),
            ("range-without-flag", set(&cb, 12, &0u32.to_le_bytes())),
            ("range-on-part-1", enc_checkpoint_v2(1, 2, Some(SpecTimeRange::default()), &[])),
            ("min-above-max", set(&cb, 24, &5i64.to_le_bytes())),
            ("no-intents-with-ts", enc_checkpoint_v2(0, 1, Some(SpecTimeRange { intents: 0, min_ts: 0, max_ts: 1 }), &[])),
            ("entry-lsn-0", set(&cb, e0, &0u64.to_le_bytes())),
            ("entry-order", set(&cb, e1, &3u64.to_le_bytes())),
            ("entry-reserved", set(&cb, e0 + 39, &[1])),
            ("entry-v-37", enc_checkpoint_v2(0, 1, None, &[entry(3, &a, fill(1.0, 2.0, &"v".repeat(37), 4))])),
            ("entry-venue-space", set(&cb, e1 - 1, b" ")),
            ("entry-no-fill-with-avg", set(&cb, e1 + 16, &f(1.0))),
            ("entry-no-fill-with-ts", set(&cb, e1 + 24, &1i64.to_le_bytes())),
            ("entry-fill-negative", set(&cb, e0 + 8, &f(-1.0))),
            ("entry-fill-minus-0", set(&cb, e0 + 8, &f(-0.0))),
            ("entry-fill-above-qty", set(&cb, e0 + 8, &f(2.5))),
            ("entry-avg-nan", set(&cb, e0 + 16, &f(f64::NAN))),
            ("entry-intent-reserved", set(&cb, e0 + 40 + 52, &[1])),
            ("entry-intent-price", set(&cb, e1 + 40 + 8, &f(-3.0))),
        ];
        for (name, b) in checkpoint_cases {
            assert!(decode_body(2, 3, &b).is_err(), "checkpoint {name}: accepted");
        }
        assert!(decode_body(2, 4, &ob).is_err(), "kind 4");
        assert!(decode_body(2, 0, &ob).is_err(), "kind 0");
        // A version 1 body is not a version 2 body, and the other way round.
        let a1 = intent(1, "SYM", 2.0);
        assert_eq!(decode_body(1, 1, &enc_intent_v1(&a1)), Ok(SpecRecord::from(a1.clone())));
        assert!(decode_body(2, 1, &enc_intent_v1(&a1)).is_err());
        assert!(decode_body(1, 1, &enc_intent_v2(&a1)).is_err());
    }

    fn v1_outcome(intent_lsn: u64, kind: u32) -> Rec {
        let mut b = intent_lsn.to_le_bytes().to_vec();
        b.extend(kind.to_le_bytes());
        (2, b)
    }

    #[test]
    fn a_v1_log_continued_in_v2_reads_in_lsn_order() {
        let (a, b, c) = (intent(30, "A", 2.0), intent(10, "B", 3.0), intent(20, "C", 4.0));
        let d = SpecIntent { cl_ord_id: Some("D-1".into()), ..intent(40, "D", 5.0) };
        let mut log = Log::new();
        log.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 1, &[]))]).batch(vec![(1, enc_intent_v1(&a)), (1, enc_intent_v1(&b))]); // 1..=3
        log.batch(vec![(1, enc_intent_v1(&c)), v1_outcome(2, 0)]); // 4, 5
        log.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 1, &[entry(3, &b, None), entry(4, &c, None)])), v1_outcome(3, 1)]); // 6, 7
                                                                                                                           // The first v2 segment: its checkpoint carries the v1 intents as v2 bodies; the range of a
                                                                                                                           // version 1 segment may be recorded (here: segment 2 holds no intent).
        log.seg(2).batch(vec![cp2(0, 1, Some(SpecTimeRange::default()), &[entry(4, &c, None)])]); // 8
        log.batch(vec![(2, enc_outcome_v2(4, STATUS_PARTIALLY_FILLED, 1.0, 7.0, 0, "Q", 1)), i2(&d)]); // 9, 10
        let got = log.read("v1-v2").unwrap();
        assert_eq!(got.records.keys().copied().collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        assert_eq!(got.segments.iter().map(|s| (s.version, s.base_lsn)).collect::<Vec<_>>(), vec![(1, 1), (1, 6), (2, 8)]);
        assert_eq!(got.segments[0].range, SpecTimeRange { intents: 3, min_ts: 10, max_ts: 30 });
        assert_eq!(
            got.records[&5],
            SpecRecord::Outcome {
                intent_lsn: 2,
                status: STATUS_FILLED,
                qty: 0.0,
                avg_price: 0.0,
                reason: 0,
                venue_order_id: String::new(),
                ts_ns: 0
            }
        );
        assert!(matches!(got.records[&7], SpecRecord::Outcome { intent_lsn: 3, status: STATUS_ABORTED, .. }));
        assert_eq!(got.records[&2], SpecRecord::from(a.clone()));
        assert_eq!(got.in_doubt_entries, vec![entry(4, &c, fill(1.0, 7.0, "Q", 1)), entry(10, &d, None)]);
        assert_eq!(got.next_lsn, 11);

        // A version 1 checkpoint is checked by content too, and a v1 segment after a v2 one is refused.
        let mut wrong = Log::new();
        wrong.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 1, &[])), (1, enc_intent_v1(&a))]);
        wrong.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 1, &[entry(2, &b, None)]))]);
        refused(&wrong, "v1-content", "differs");
        let mut back = Log::new();
        back.seg(2).batch(vec![empty_cp2()]);
        back.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 1, &[]))]);
        refused(&back, "v1-after-v2", "a version 1 segment after a version 2 segment");
        // Version 1 parts are filled by 256.
        let many: Vec<SpecIntent> = (0..257).map(|i| intent(i, "M", 1.0)).collect();
        let entries: Vec<SpecEntry> = many.iter().enumerate().map(|(i, x)| entry(i as u64 + 2, x, None)).collect();
        let mut v1parts = Log::new();
        v1parts.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 1, &[]))]).batch(many.iter().map(|x| (1, enc_intent_v1(x))).collect());
        v1parts.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 2, &entries[..256])), (3, enc_checkpoint_v1(1, 2, &entries[256..]))]);
        assert_eq!(v1parts.read("v1-parts").unwrap().in_doubt.len(), 257);
        let mut v1even = Log::new();
        v1even.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 1, &[]))]).batch(many.iter().map(|x| (1, enc_intent_v1(x))).collect());
        v1even.seg(1).batch(vec![(3, enc_checkpoint_v1(0, 2, &entries[..128])), (3, enc_checkpoint_v1(1, 2, &entries[128..]))]);
        refused(&v1even, "v1-even", "filled by 256");
    }

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/log")
    }

    #[test]
    fn the_v1_fixture_reads_and_continues_in_v2() {
        let spec = read_dir(&fixture()).expect("the v1 fixture follows the spec");
        assert_eq!((spec.records.len(), spec.in_doubt.len(), spec.next_lsn), (624, 60, 625));
        assert_eq!(spec.segments.iter().map(|s| (s.number, s.version)).collect::<Vec<_>>(), vec![(1, 1), (2, 1), (3, 1), (4, 1)]);
        assert!(spec.segments.iter().all(|s| s.prev_range_recorded.is_none()));
        assert!(spec.in_doubt_entries.iter().all(|e| e.fill.is_none() && e.intent.cl_ord_id.is_none() && e.intent.tag.is_none()));
        let intents = spec.records.values().filter(|r| matches!(r, SpecRecord::Intent { .. })).count() as u64;
        assert_eq!(intents, 340);
        assert_eq!(spec.segments.iter().map(|s| s.range.intents).sum::<u64>(), 340);

        // Segment 5, version 2, hand-built: its checkpoint lists the 60 v1 intents in doubt (one
        // part: 60 <= 128) and the range of segment 4.
        let d = std::env::temp_dir().join(format!("tw-spec-unit-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(fixture()).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
        let seg4 = std::fs::read(d.join("wal_20261203_084914_000004.log")).unwrap();
        let log_id = u64le(&seg4, 16);
        let first = &spec.in_doubt_entries[0];
        let write5 = |entries: &[SpecEntry], range: SpecTimeRange| {
            let s = Seg {
                version: 2,
                number: 5,
                epoch: 0xfeed_0000,
                base: 625,
                batches: vec![
                    vec![cp2(0, 1, Some(range), entries)],
                    vec![
                        (2, enc_outcome_v2(first.lsn, STATUS_PARTIALLY_FILLED, first.intent.fields[1], 3.0, 0, "F", 8)),
                        i2(&intent(77, "NEW", 1.0)),
                    ],
                ],
            };
            let mut img = image(&s);
            img[16..24].copy_from_slice(&log_id.to_le_bytes());
            let c = xxh3_64(&img[..88]);
            img[88..96].copy_from_slice(&c.to_le_bytes());
            std::fs::write(d.join("wal_20270101_000000_000005.log"), img).unwrap();
        };
        let range4 = spec.segments[3].range;
        write5(&spec.in_doubt_entries, range4);
        let got = read_dir(&d).unwrap();
        assert_eq!((got.records.len(), got.in_doubt.len(), got.next_lsn), (627, 61, 628));
        assert_eq!(got.segments[4].version, 2);
        assert_eq!(got.segments[4].prev_range_recorded, Some(range4));
        assert_eq!(got.in_doubt_entries[0].fill, fill(first.intent.fields[1], 3.0, "F", 8));
        assert_eq!(got.records.keys().copied().collect::<Vec<_>>(), (1..=627).collect::<Vec<_>>());
        // Missing one of the v1 intents, or a wrong range, is refused.
        write5(&spec.in_doubt_entries[1..], range4);
        assert!(read_dir(&d).unwrap_err().contains("differs"));
        write5(&spec.in_doubt_entries, SpecTimeRange { intents: range4.intents + 1, ..range4 });
        assert!(read_dir(&d).unwrap_err().contains("time range"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

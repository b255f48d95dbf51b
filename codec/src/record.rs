//! Record kinds and their bodies (bincode 2 through serde, fixed-width little-endian integers).

use crate::format::{Lsn, RECORD_BODY_MAX_BYTES};
use crate::intent::TradeIntent;
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

/// How an intent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutcomeKind {
    /// The trade was executed (JSONL `"exec":true`).
    Executed,
    /// The trade was not sent or was rejected (JSONL `"aborted":true`).
    Aborted,
}

/// The outcome of an intent, naming the intent's LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// LSN of the intent this resolves.
    pub intent_lsn: Lsn,
    /// Executed or aborted.
    pub kind: OutcomeKind,
}

/// An intent with no outcome yet, carried by checkpoints and reported by recovery.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InDoubt {
    /// LSN of the intent: a stable id to reconcile with the venue.
    pub lsn: Lsn,
    /// The intent as appended.
    pub intent: TradeIntent,
}

/// Upper bound of one encoded [`InDoubt`] (lsn 8, ts 8, symbol 8+16, side 4, four f64 32).
pub const IN_DOUBT_ENTRY_MAX_BYTES: usize = 8 + 8 + 8 + 16 + 4 + 32;
/// Upper bound of an encoded intent body.
pub const INTENT_BODY_MAX_BYTES: usize = IN_DOUBT_ENTRY_MAX_BYTES - 8;
/// Upper bound of an encoded outcome body.
pub const OUTCOME_BODY_MAX_BYTES: usize = 12;

/// One part of the in-doubt set, written at the start of every segment. A checkpoint is
/// `parts` records numbered `0..parts`, each with up to
/// [`CHECKPOINT_ENTRIES_PER_RECORD`](crate::format::CHECKPOINT_ENTRIES_PER_RECORD) entries in LSN order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Index of this part.
    pub part: u32,
    /// Number of parts in this checkpoint (>= 1; an empty set is one empty part).
    pub parts: u32,
    /// The in-doubt intents of this part.
    pub entries: Vec<InDoubt>,
}

/// Borrowed form of [`Checkpoint`] for encoding without allocation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CheckpointRef<'a> {
    /// Index of this part.
    pub part: u32,
    /// Number of parts.
    pub parts: u32,
    /// The in-doubt intents of this part.
    pub entries: &'a [InDoubt],
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
    /// bincode rejected the bytes.
    #[error("body does not decode: {0}")]
    Decode(String),
    /// Bytes left over after the body.
    #[error("{0} trailing bytes after the body")]
    Trailing(usize),
    /// Decoded, but the content breaks a rule (invalid intent, bad checkpoint numbering).
    #[error("invalid body: {0}")]
    Invalid(String),
}

pub(crate) fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding().with_limit::<RECORD_BODY_MAX_BYTES>()
}

/// Encodes a serde value as a record body into `out`; `None` if it does not fit.
pub(crate) fn encode_body<T: Serialize>(value: &T, out: &mut [u8]) -> Option<usize> {
    bincode::serde::encode_into_slice(value, out, bincode_config()).ok()
}

fn decode_exact<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, BodyError> {
    let (v, used) =
        bincode::serde::borrow_decode_from_slice::<T, _>(body, bincode_config()).map_err(|e| BodyError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(BodyError::Trailing(body.len() - used));
    }
    Ok(v)
}

/// Decodes an intent body without going through serde: the bincode layout of [`TradeIntent`] with
/// this codec's configuration (fixed-width little-endian integers) is
/// `ts i64 | symbol length u64 | symbol bytes | side u32 (0 Buy, 1 Sell) | price, qty, sl, tp f64`.
/// It is the hot path of every scan; `record_tests` check it against bincode on random bodies.
pub(crate) fn decode_intent(body: &[u8]) -> Result<TradeIntent, BodyError> {
    let short = || BodyError::Decode("intent body too short".into());
    let u64_at = |at: usize| -> Result<u64, BodyError> {
        body.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).ok_or_else(short)
    };
    let ts_ns = u64_at(0)? as i64;
    let sym_len = u64_at(8)?;
    if sym_len > crate::intent::SYMBOL_MAX_BYTES as u64 {
        return Err(BodyError::Invalid(format!("symbol of {sym_len} bytes")));
    }
    let sym_end = 16 + sym_len as usize;
    let symbol =
        crate::intent::Symbol::from_ascii(body.get(16..sym_end).ok_or_else(short)?).map_err(|e| BodyError::Invalid(e.to_string()))?;
    let side = match body.get(sym_end..sym_end + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))) {
        Some(0) => crate::intent::Side::Buy,
        Some(1) => crate::intent::Side::Sell,
        Some(v) => return Err(BodyError::Decode(format!("unknown side variant {v}"))),
        None => return Err(short()),
    };
    let f = |k: usize| u64_at(sym_end + 4 + 8 * k).map(f64::from_bits);
    let intent = TradeIntent { ts_ns, symbol, side, price: f(0)?, qty: f(1)?, stop_loss: f(2)?, take_profit: f(3)? };
    let used = sym_end + 4 + 32;
    if body.len() != used {
        return Err(BodyError::Trailing(body.len() - used));
    }
    Ok(intent)
}

/// Decodes and checks a record body of the given kind. Bounded: never allocates more than the
/// body's own length allows.
pub fn decode_body(kind: RecordKind, body: &[u8]) -> Result<Record, BodyError> {
    if body.len() > RECORD_BODY_MAX_BYTES {
        return Err(BodyError::Invalid(format!("body of {} bytes over the limit", body.len())));
    }
    match kind {
        RecordKind::Intent => {
            let i = decode_intent(body)?;
            i.validate().map_err(|e| BodyError::Invalid(e.to_string()))?;
            Ok(Record::Intent(i))
        }
        RecordKind::Outcome => {
            let o: Outcome = decode_exact(body)?;
            if o.intent_lsn == 0 {
                return Err(BodyError::Invalid("outcome names LSN 0".into()));
            }
            Ok(Record::Outcome(o))
        }
        RecordKind::Checkpoint => {
            let c: Checkpoint = decode_exact(body)?;
            if c.parts == 0 || c.part >= c.parts {
                return Err(BodyError::Invalid(format!("checkpoint part {} of {}", c.part, c.parts)));
            }
            if c.entries.len() > crate::format::CHECKPOINT_ENTRIES_PER_RECORD {
                return Err(BodyError::Invalid("too many checkpoint entries in one record".into()));
            }
            for w in c.entries.windows(2) {
                if w[0].lsn >= w[1].lsn {
                    return Err(BodyError::Invalid("checkpoint entries not in LSN order".into()));
                }
            }
            for e in &c.entries {
                if e.lsn == 0 {
                    return Err(BodyError::Invalid("checkpoint entry with LSN 0".into()));
                }
                e.intent.validate().map_err(|err| BodyError::Invalid(err.to_string()))?;
            }
            Ok(Record::Checkpoint(c))
        }
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::intent::{Side, Symbol};

    fn serde_decode(body: &[u8]) -> Result<TradeIntent, BodyError> {
        decode_exact(body)
    }

    /// The hand-written intent decoder agrees with bincode on encoded intents and on damaged or
    /// arbitrary bodies (same value, or both refuse).
    #[test]
    fn fast_intent_decoder_matches_bincode() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let syms = ["B", "BTCUSDT", "ETH-PERP", "ABCDEFGHIJKLMNOP"];
        let mut buf = [0u8; 128];
        for round in 0..20_000u64 {
            let i = TradeIntent {
                ts_ns: next() as i64,
                symbol: Symbol::new(syms[(round % 4) as usize]).unwrap(),
                side: if next() % 2 == 0 { Side::Buy } else { Side::Sell },
                price: f64::from_bits(next()),
                qty: f64::from_bits(next()),
                stop_loss: f64::from_bits(next()),
                take_profit: f64::from_bits(next()),
            };
            let n = encode_body(&i, &mut buf).unwrap();
            let body = &mut buf[..n];
            let fast = decode_intent(body).unwrap();
            assert_eq!(fast.ts_ns, i.ts_ns);
            assert_eq!((fast.symbol, fast.side), (i.symbol, i.side));
            for (a, b) in [(fast.price, i.price), (fast.qty, i.qty), (fast.stop_loss, i.stop_loss), (fast.take_profit, i.take_profit)] {
                assert_eq!(a.to_bits(), b.to_bits());
            }
            // Damage: flip a byte, or cut or extend the body; both decoders agree on Ok/Err and value.
            let mut damaged = body.to_vec();
            match next() % 3 {
                0 => {
                    let at = (next() as usize) % damaged.len();
                    damaged[at] ^= 1 << (next() % 8);
                }
                1 => damaged.truncate((next() as usize) % damaged.len()),
                _ => damaged.push(next() as u8),
            }
            match (decode_intent(&damaged), serde_decode(&damaged)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!((a.ts_ns, a.symbol, a.side), (b.ts_ns, b.symbol, b.side));
                    for (x, y) in [(a.price, b.price), (a.qty, b.qty), (a.stop_loss, b.stop_loss), (a.take_profit, b.take_profit)] {
                        assert_eq!(x.to_bits(), y.to_bits(), "decoders disagree on a damaged body's field");
                    }
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("decoders disagree on {damaged:?}: fast {a:?}, bincode {b:?}"),
            }
        }
    }
}

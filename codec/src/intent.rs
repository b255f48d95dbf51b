//! Trade intents: the seed's `WALEntry`, typed and validated.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Longest symbol accepted, in bytes.
pub const SYMBOL_MAX_BYTES: usize = 16;
/// Longest client or venue order id accepted, in bytes (FIX ClOrdID-like).
pub const ORDER_ID_MAX_BYTES: usize = 36;
/// Most intents in one group ([`GroupLeg::size`]).
pub const GROUP_MAX_LEGS: u16 = 32;

/// Why an intent (or a symbol) was rejected. Nothing invalid is ever encoded.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IntentError {
    /// The symbol is empty.
    #[error("symbol is empty")]
    EmptySymbol,
    /// The symbol is longer than [`SYMBOL_MAX_BYTES`].
    #[error("symbol is {len} bytes, longer than the {max}-byte limit", max = SYMBOL_MAX_BYTES)]
    SymbolTooLong {
        /// Length of the rejected symbol in bytes.
        len: usize,
    },
    /// The symbol holds a byte that is not printable ASCII (0x21..=0x7e).
    #[error("symbol byte {byte:#04x} at index {index} is not printable ASCII")]
    SymbolNotPrintable {
        /// Index of the offending byte.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A field that must be finite and strictly positive is not.
    #[error("{field} must be finite and > 0, got {value}")]
    NotPositive {
        /// Field name in the JSONL schema (`price`, `qty`).
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A field that must be finite and non-negative (0 = not set) is not.
    #[error("{field} must be finite and >= 0 (0 means not set), got {value}")]
    Negative {
        /// Field name in the JSONL schema (`sl`, `tp`).
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// An order id is empty.
    #[error("order id is empty")]
    EmptyOrderId,
    /// An order id is longer than [`ORDER_ID_MAX_BYTES`].
    #[error("order id is {len} bytes, longer than the {max}-byte limit", max = ORDER_ID_MAX_BYTES)]
    OrderIdTooLong {
        /// Length of the rejected id in bytes.
        len: usize,
    },
    /// An order id holds a byte that is not printable ASCII (0x21..=0x7e).
    #[error("order id byte {byte:#04x} at index {index} is not printable ASCII")]
    OrderIdNotPrintable {
        /// Index of the offending byte.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A group leg out of range (size 1..=[`GROUP_MAX_LEGS`], index below size).
    #[error("group leg {index} of {size} out of range (at most {max} legs)", max = GROUP_MAX_LEGS)]
    BadGroupLeg {
        /// Leg index.
        index: u16,
        /// Group size.
        size: u16,
    },
    /// [`TradeIntent::group`] is set on an intent given to `append`: the log assigns group legs
    /// (`append_group`), the caller does not.
    #[error("group is set by the log (append_group), not by the caller")]
    GroupSetByCaller,
}

fn check_ascii(
    b: &[u8],
    max: usize,
    empty: IntentError,
    too_long: fn(usize) -> IntentError,
    bad: fn(usize, u8) -> IntentError,
) -> Result<(), IntentError> {
    if b.is_empty() {
        return Err(empty);
    }
    if b.len() > max {
        return Err(too_long(b.len()));
    }
    if let Some((index, &byte)) = b.iter().enumerate().find(|(_, c)| !(0x21..=0x7e).contains(*c)) {
        return Err(bad(index, byte));
    }
    Ok(())
}

/// A client or venue order id: 1..=36 bytes of printable ASCII (0x21..=0x7e), stored inline (no
/// heap), like a FIX ClOrdID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId {
    len: u8,
    bytes: [u8; ORDER_ID_MAX_BYTES],
}

impl OrderId {
    /// Builds an order id, rejecting empty, over-long or non-printable input.
    pub fn new(s: &str) -> Result<Self, IntentError> {
        Self::from_ascii(s.as_bytes())
    }

    /// Builds an order id from bytes, with the rules of [`OrderId::new`].
    pub fn from_ascii(b: &[u8]) -> Result<Self, IntentError> {
        check_ascii(
            b,
            ORDER_ID_MAX_BYTES,
            IntentError::EmptyOrderId,
            |len| IntentError::OrderIdTooLong { len },
            |index, byte| IntentError::OrderIdNotPrintable { index, byte },
        )?;
        let mut bytes = [0u8; ORDER_ID_MAX_BYTES];
        bytes[..b.len()].copy_from_slice(b);
        Ok(OrderId { len: b.len() as u8, bytes })
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored (checked in `from_ascii`).
        std::str::from_utf8(self.as_bytes()).expect("order id is ASCII")
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// A venue-unique client order id derived from the log's id and an intent's LSN, for callers
    /// that do not supply one: `<log id, 16 hex digits>-<lsn, hex>` (at most 33 bytes).
    /// Unique across every log (log ids are random 64-bit) and every intent of a log (LSNs never
    /// repeat, across sessions and crashes). The id is known once the intent's ticket resolves.
    pub fn derived(log_id: u64, lsn: u64) -> OrderId {
        let mut buf = [0u8; ORDER_ID_MAX_BYTES];
        let mut w = &mut buf[..];
        use std::io::Write;
        write!(w, "{log_id:016x}-{lsn:x}").expect("16 + 1 + 16 hex digits fit in 36 bytes");
        let len = ORDER_ID_MAX_BYTES - w.len();
        OrderId::from_ascii(&buf[..len]).expect("hex, '-' and digits are printable")
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrderId {
    type Err = IntentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderId::new(s)
    }
}

impl TryFrom<&str> for OrderId {
    type Error = IntentError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        OrderId::new(s)
    }
}

impl Serialize for OrderId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = OrderId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("1..=36 bytes of printable ASCII")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OrderId, E> {
                OrderId::new(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Membership of an intent in a group appended with `append_group`: leg `index` of `size` legs.
/// The group's legs have consecutive LSNs; the group's id is the LSN of leg 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupLeg {
    /// Index of this leg, `0..size`.
    pub index: u16,
    /// Number of legs, 1..=[`GROUP_MAX_LEGS`].
    pub size: u16,
}

impl GroupLeg {
    /// The group's id (the LSN of leg 0) for the leg at `lsn`.
    pub fn group_lsn(&self, lsn: u64) -> u64 {
        // A valid log never has a leg below its index (legs follow leg 0); saturate rather than
        // panic on a damaged or hand-built one.
        lsn.saturating_sub(u64::from(self.index))
    }
}

/// An instrument symbol: 1..=16 bytes of printable ASCII, stored inline (no heap).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    len: u8,
    bytes: [u8; SYMBOL_MAX_BYTES],
}

impl Symbol {
    /// Builds a symbol, rejecting empty, over-long or non-printable input.
    pub fn new(s: &str) -> Result<Self, IntentError> {
        Self::from_ascii(s.as_bytes())
    }

    /// Builds a symbol from bytes, with the same rules as [`Symbol::new`] (printable ASCII is
    /// valid UTF-8, so no separate UTF-8 check is needed).
    pub fn from_ascii(b: &[u8]) -> Result<Self, IntentError> {
        check_ascii(
            b,
            SYMBOL_MAX_BYTES,
            IntentError::EmptySymbol,
            |len| IntentError::SymbolTooLong { len },
            |index, byte| IntentError::SymbolNotPrintable { index, byte },
        )?;
        let mut bytes = [0u8; SYMBOL_MAX_BYTES];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Symbol { len: b.len() as u8, bytes })
    }

    /// The symbol as a string slice.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored (checked in `new`), so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("symbol is ASCII")
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for Symbol {
    type Error = IntentError;
    /// Same as [`Symbol::new`]: `"BTCUSDT".try_into()`.
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Symbol::new(s)
    }
}

impl AsRef<str> for Symbol {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::str::FromStr for Symbol {
    type Err = IntentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::new(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Symbol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("1..=16 bytes of printable ASCII")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Symbol, E> {
                Symbol::new(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Side of a trade. One spelling everywhere: serde, JSONL, `Display` and `FromStr` all say
/// `"BUY"` / `"SELL"`. The on-disk encoding (bincode) stores the variant index, not the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    /// Buy (`"BUY"`).
    Buy,
    /// Sell (`"SELL"`).
    Sell,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A side that is neither `"BUY"` nor `"SELL"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSideError(String);

impl fmt::Display for ParseSideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "side {:?} is neither BUY nor SELL", self.0)
    }
}

impl std::error::Error for ParseSideError {}

impl std::str::FromStr for Side {
    type Err = ParseSideError;

    /// `"BUY"` or `"SELL"`, in any case.
    fn from_str(s: &str) -> Result<Side, ParseSideError> {
        if s.eq_ignore_ascii_case("BUY") {
            Ok(Side::Buy)
        } else if s.eq_ignore_ascii_case("SELL") {
            Ok(Side::Sell)
        } else {
            Err(ParseSideError(s.to_string()))
        }
    }
}

impl Side {
    /// The JSONL spelling: `"BUY"` or `"SELL"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

/// A trade intent: what a strategy is about to do. The seed's `WALEntry` fields, with `exec`
/// kept separately as an outcome record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TradeIntent {
    /// Strategy timestamp, nanoseconds since the Unix epoch (JSONL `ts`).
    pub ts_ns: i64,
    /// Instrument (JSONL `sym`).
    pub symbol: Symbol,
    /// Buy or sell (JSONL `side`).
    pub side: Side,
    /// Entry price, finite and > 0 (JSONL `price`).
    pub price: f64,
    /// Quantity, finite and > 0 (JSONL `qty`).
    pub qty: f64,
    /// Stop loss, finite and >= 0; 0 means not set (JSONL `sl`).
    pub stop_loss: f64,
    /// Take profit, finite and >= 0; 0 means not set (JSONL `tp`).
    pub take_profit: f64,
    /// Client order id to send to the venue (JSONL `cl_ord_id`), or `None`. To derive a
    /// venue-unique one from the log instead, see [`OrderId::derived`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cl_ord_id: Option<OrderId>,
    /// Strategy or account tag (JSONL `tag`), or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u32>,
    /// Group membership (JSONL `group`): set by the log for intents appended together with
    /// `append_group`, reported by recovery and export. Leave it `None` when appending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupLeg>,
}

impl TradeIntent {
    /// Checks every field; the symbol is valid by construction of [`Symbol`].
    pub fn validate(&self) -> Result<(), IntentError> {
        for (field, value) in [("price", self.price), ("qty", self.qty)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(IntentError::NotPositive { field, value });
            }
        }
        for (field, value) in [("sl", self.stop_loss), ("tp", self.take_profit)] {
            // `-0.0 >= 0.0` holds; reject it too so the sign bit never surprises an exporter.
            if !(value.is_finite() && value >= 0.0) || value.is_sign_negative() {
                return Err(IntentError::Negative { field, value });
            }
        }
        if let Some(g) = self.group {
            if g.size == 0 || g.size > GROUP_MAX_LEGS || g.index >= g.size {
                return Err(IntentError::BadGroupLeg { index: g.index, size: g.size });
            }
        }
        // The symbol and order id are valid by construction: every way to build a `Symbol` or an
        // `OrderId` (`new`, `from_ascii`, `Deserialize`) checks it.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> TradeIntent {
        TradeIntent {
            ts_ns: 1,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Buy,
            price: 43250.5,
            qty: 0.25,
            stop_loss: 42800.0,
            take_profit: 44100.0,
            cl_ord_id: None,
            tag: None,
            group: None,
        }
    }

    #[test]
    fn symbols() {
        assert_eq!(Symbol::new(""), Err(IntentError::EmptySymbol));
        assert_eq!(Symbol::new("ABCDEFGHIJKLMNOPQ"), Err(IntentError::SymbolTooLong { len: 17 }));
        assert!(Symbol::new("ABCDEFGHIJKLMNOP").is_ok());
        assert_eq!(Symbol::new("BTC USD"), Err(IntentError::SymbolNotPrintable { index: 3, byte: b' ' }));
        assert!(matches!(Symbol::new("BTCé"), Err(IntentError::SymbolNotPrintable { index: 3, .. })));
        assert_eq!(Symbol::new("ETH-PERP").unwrap().as_str(), "ETH-PERP");
        let s: Symbol = "BTCUSDT".try_into().unwrap();
        assert_eq!(s.as_ref(), "BTCUSDT");
        assert_eq!(Symbol::try_from(""), Err(IntentError::EmptySymbol));
    }

    #[test]
    fn validation() {
        assert!(ok().validate().is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut i = ok();
            i.price = bad;
            assert!(matches!(i.validate(), Err(IntentError::NotPositive { field: "price", .. })));
            let mut i = ok();
            i.qty = bad;
            assert!(matches!(i.validate(), Err(IntentError::NotPositive { field: "qty", .. })));
        }
        for bad in [-1.0, -0.0, f64::NAN, f64::NEG_INFINITY, f64::INFINITY] {
            let mut i = ok();
            i.stop_loss = bad;
            assert!(matches!(i.validate(), Err(IntentError::Negative { field: "sl", .. })));
            let mut i = ok();
            i.take_profit = bad;
            assert!(matches!(i.validate(), Err(IntentError::Negative { field: "tp", .. })));
        }
        let mut i = ok();
        i.stop_loss = 0.0;
        i.take_profit = 0.0;
        assert!(i.validate().is_ok(), "0 means not set");
        for (index, size, valid) in [(0, 1, true), (31, 32, true), (1, 1, false), (0, 0, false), (0, 33, false)] {
            let mut i = ok();
            i.group = Some(GroupLeg { index, size });
            assert_eq!(i.validate().is_ok(), valid, "leg {index} of {size}");
        }
    }

    #[test]
    fn order_ids() {
        assert_eq!(OrderId::new(""), Err(IntentError::EmptyOrderId));
        assert_eq!(OrderId::new(&"A".repeat(37)), Err(IntentError::OrderIdTooLong { len: 37 }));
        assert_eq!(OrderId::new(&"A".repeat(36)).unwrap().as_str().len(), 36);
        assert_eq!(OrderId::new("a b"), Err(IntentError::OrderIdNotPrintable { index: 1, byte: b' ' }));
        assert_eq!(OrderId::derived(0xb5bd_4d95_60b5_f2f6, 625).as_str(), "b5bd4d9560b5f2f6-271");
        assert_eq!(OrderId::derived(u64::MAX, u64::MAX).as_str().len(), 16 + 1 + 16, "the longest derived id fits");
    }
}

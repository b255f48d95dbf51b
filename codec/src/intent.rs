//! Trade intents: the seed's `WALEntry`, typed and validated.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Longest symbol accepted, in bytes.
pub const SYMBOL_MAX_BYTES: usize = 16;

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
        if b.is_empty() {
            return Err(IntentError::EmptySymbol);
        }
        if b.len() > SYMBOL_MAX_BYTES {
            return Err(IntentError::SymbolTooLong { len: b.len() });
        }
        if let Some((index, &byte)) = b.iter().enumerate().find(|(_, c)| !(0x21..=0x7e).contains(*c)) {
            return Err(IntentError::SymbolNotPrintable { index, byte });
        }
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
        // The symbol is valid by construction: every way to build a `Symbol` (`new`, `from_ascii`,
        // `Deserialize`) checks it.
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
    }
}

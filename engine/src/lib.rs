//! # tradewal
//!
//! A write-ahead log for trade intents. See the crate README and docs/design.md.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod error;
pub mod io;
mod ticket;

pub use error::{PoisonCause, WalError};
pub use tradewal_codec::{Lsn, Side, Symbol, TradeIntent};

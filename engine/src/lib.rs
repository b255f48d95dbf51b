//! # tradewal
//!
//! A write-ahead log for trade intents on Linux: a strategy appends an intent, tradewal makes it
//! durable on the device (io_uring, O_DIRECT, group commit) and only then resolves its
//! [`Ticket`]; the trade is executed and marked executed. After any crash, [`Wal::open`] recovers
//! and lists the intents still in doubt; an acknowledged intent is never lost.
//!
//! ```
//! use tradewal::{Wal, WalConfig, TradeIntent, Side, Symbol};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A directory on the workspace's disk (O_DIRECT; /tmp may be tmpfs), removed at the end.
//! # let tmp = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR"))?;
//! # let dir = tmp.path().join("wal");
//! let wal = Wal::open(WalConfig::new(&dir))?;
//! for d in &wal.recovered().in_doubt { /* d.lsn, d.intent: reconcile with the venue */ }
//! let intent = TradeIntent { ts_ns: 1, symbol: Symbol::new("BTCUSDT")?, side: Side::Buy,
//!     price: 43250.5, qty: 0.25, stop_loss: 0.0, take_profit: 0.0, cl_ord_id: None, tag: None, group: None };
//! let lsn = wal.append(&intent)?.wait()?;   // durable now
//! wal.mark_executed(lsn)?.wait()?;
//! wal.close()?;
//! # Ok(()) }
//! ```
//!
//! The durability contract is in docs/design.md (invariants I1–I7).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// unsafe_code is allowed only in io::uring and io::sys (each block with a SAFETY line).
#![deny(unsafe_code)]

pub mod config;
pub mod error;
pub mod follower;
mod indoubt;
// The I/O seam (`Storage`, `BatchIo`, the real backends) is crate-private; the `sim` feature
// exports it for the simulated disk of the tests crate and the engine's own backend tests.
#[cfg(feature = "sim")]
pub mod io;
#[cfg(not(feature = "sim"))]
pub(crate) mod io;
pub mod manifest;
pub mod recovery;
pub mod seek;
mod ticket;
mod wal;
mod writer;

pub use config::{Retention, WalConfig};
pub use error::{PoisonCause, WalError};
pub use follower::{drop_reader, list_readers, FollowError, Followed, Follower, ReaderCursor};
pub use io::stack::{StackFacts, StorageStack, WritePath};
pub use io::{Durability, IoFault};
pub use manifest::Manifest;
pub use recovery::{read_log, LogReport, Recovered, TornTailReport};
pub use seek::{index_log, read_time_range, LogIndex, SeekReport, SegmentHead, TimeSeek};
pub use ticket::Ticket;
pub use tradewal_codec::{
    CorruptReason, Fill, GroupLeg, InDoubt, IntentError, Lsn, OrderId, Outcome, OutcomeError, OutcomeKind, Side, Status, Symbol,
    TradeIntent, TsRange,
};
pub use wal::{Wal, WalStats};

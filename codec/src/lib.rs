//! # tradewal-codec
//!
//! The on-disk format of tradewal, with no I/O and no unsafe_code: trade intents and their
//! validation, the segment/batch/record byte layouts ([`format`](mod@format)), a batch encoder that writes
//! into a caller's aligned buffer without allocating ([`encode`]), a segment decoder that tells
//! a clean end from a torn tail from corruption ([`decode`]), a whole-log scan that checks
//! continuity and computes the in-doubt set ([`scan`]), and JSONL export ([`export`]).
//!
//! docs/design.md describes the format byte by byte; docs/jsonl.md the export schema.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod body;
pub mod build;
pub mod decode;
pub mod encode;
pub mod export;
pub mod format;
pub mod intent;
pub mod record;
pub mod scan;

pub use decode::{CorruptReason, Corruption, Fault, Frame, SegmentDecoder, SegmentEnd};
pub use encode::{BatchEncoder, EncodeError, SegmentContext};
pub use export::{write_in_doubt_line, write_intent_line, write_raw_line, IntentLine, IntentStatus, RawLine};
pub use format::{Lsn, SegmentHeader, SegmentName, BLOCK_BYTES, SECTOR_BYTES};
pub use intent::{GroupLeg, IntentError, OrderId, ParseSideError, Side, Symbol, TradeIntent};
pub use record::{Checkpoint, Fill, InDoubt, Outcome, OutcomeError, OutcomeKind, Record, RecordKind, Status, TsRange};
pub use scan::{LogScanner, LogState, RecordCounts, SegmentSummary, TornTail};

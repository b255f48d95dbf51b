//! Batch encoder: writes one group-commit batch into a caller-provided, block-aligned buffer.
//! No allocation per record.

use crate::format::{
    align_up, frame_checksum, put_u32, put_u64, BatchHeader, Lsn, SegmentHeader, BATCH_HEADER_BYTES, BLOCK_BYTES,
    CHECKPOINT_ENTRIES_PER_RECORD, FRAME_HEADER_BYTES, RECORD_BODY_MAX_BYTES,
};
use crate::intent::{GroupLeg, IntentError, TradeIntent, GROUP_MAX_LEGS};
use crate::record::{InDoubt, Outcome, OutcomeError, RecordKind, TsRange};

/// Why a record could not be added to a batch.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The batch has no room for this record; finish it and start another.
    #[error("batch full")]
    Full,
    /// The intent is invalid; nothing was written.
    #[error("invalid intent: {0}")]
    InvalidIntent(#[from] IntentError),
    /// A checkpoint part with more than the allowed entries or an out-of-range part number.
    #[error("invalid checkpoint part")]
    InvalidCheckpoint,
    /// An outcome naming LSN 0, or with fields out of range.
    #[error("invalid outcome")]
    InvalidOutcome,
    /// An outcome that breaks a rule of its own fields.
    #[error("invalid outcome: {0}")]
    Outcome(#[from] OutcomeError),
    /// A group of no intents or more than [`GROUP_MAX_LEGS`].
    #[error("a group holds 1..={GROUP_MAX_LEGS} intents, not {0}")]
    GroupSize(usize),
}

/// What a segment's batches are bound to: number, epoch, K and the checksum seed (I2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentContext {
    /// Segment number.
    pub segment_no: u64,
    /// Segment epoch.
    pub epoch: u64,
    /// In-flight batch limit K.
    pub k: u32,
    seed: u64,
}

impl SegmentContext {
    /// Context of the segment described by `h`.
    pub fn from_header(h: &SegmentHeader) -> Self {
        SegmentContext { segment_no: h.segment_no, epoch: h.epoch, k: h.k, seed: h.seed() }
    }

    /// The record checksum seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Fills one batch. Lay out: `[batch header][frame]*[zero padding to BLOCK_BYTES]`.
///
/// A frame is `[checksum u64][body_len u32][kind u8][0u8;3][lsn u64][body]`; the checksum is xxh3-64
/// of everything after it (length field to end of body) seeded with the segment's
/// [`record_seed`](crate::format::record_seed).
#[derive(Debug)]
pub struct BatchEncoder<'a> {
    buf: &'a mut [u8],
    ctx: SegmentContext,
    batch_no: u64,
    first_lsn: Lsn,
    count: u32,
    pos: usize,
}

impl<'a> BatchEncoder<'a> {
    /// Starts a batch in `buf`, whose length (a non-zero multiple of [`BLOCK_BYTES`]) is the most
    /// this batch may occupy on disk.
    pub fn new(buf: &'a mut [u8], ctx: SegmentContext, batch_no: u64, first_lsn: Lsn) -> Self {
        assert!(!buf.is_empty() && buf.len() % BLOCK_BYTES == 0, "batch buffer must be whole blocks");
        assert!(first_lsn > 0, "LSN 0 is reserved");
        assert!(buf.len() - BATCH_HEADER_BYTES <= u32::MAX as usize);
        BatchEncoder { buf, ctx, batch_no, first_lsn, count: 0, pos: BATCH_HEADER_BYTES }
    }

    /// Records in the batch so far.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.first_lsn + self.count as u64
    }

    /// Bytes used so far, header included, before padding.
    pub fn used_bytes(&self) -> usize {
        self.pos
    }

    /// Appends an intent (its `group` as given: normally `None`); returns its LSN.
    pub fn push_intent(&mut self, intent: &TradeIntent) -> Result<Lsn, EncodeError> {
        intent.validate()?;
        self.push(RecordKind::Intent, |out| crate::body::encode_intent(intent, out))
    }

    /// Appends `intents` as one group (legs `0..n` of `n`, whatever their `group` field says),
    /// all or none: on [`EncodeError::Full`] the batch is as it was. Returns the LSN of leg 0.
    pub fn push_group(&mut self, intents: &[TradeIntent]) -> Result<Lsn, EncodeError> {
        if intents.is_empty() || intents.len() > GROUP_MAX_LEGS as usize {
            return Err(EncodeError::GroupSize(intents.len()));
        }
        let size = intents.len() as u16;
        for (index, i) in intents.iter().enumerate() {
            TradeIntent { group: Some(GroupLeg { index: index as u16, size }), ..*i }.validate()?;
        }
        let (pos, count) = (self.pos, self.count);
        let first = self.next_lsn();
        for (index, i) in intents.iter().enumerate() {
            let leg = TradeIntent { group: Some(GroupLeg { index: index as u16, size }), ..*i };
            if let Err(e) = self.push(RecordKind::Intent, |out| crate::body::encode_intent(&leg, out)) {
                (self.pos, self.count) = (pos, count);
                return Err(e);
            }
        }
        Ok(first)
    }

    /// Appends an outcome; returns the outcome record's LSN. Checks the outcome's own fields;
    /// the log's rules (the intent is in doubt, quantities) are the caller's, who holds the set.
    pub fn push_outcome(&mut self, outcome: &Outcome) -> Result<Lsn, EncodeError> {
        if outcome.intent_lsn == 0 {
            return Err(EncodeError::InvalidOutcome);
        }
        outcome.status.validate(false)?;
        self.push(RecordKind::Outcome, |out| crate::body::encode_outcome(outcome, out))
    }

    /// Appends checkpoint part `part` of `parts` holding `entries` (LSN order, at most
    /// [`CHECKPOINT_ENTRIES_PER_RECORD`]); part 0 may carry the previous segment's time range.
    pub fn push_checkpoint(&mut self, part: u32, parts: u32, entries: &[InDoubt], range: Option<TsRange>) -> Result<Lsn, EncodeError> {
        if parts == 0 || part >= parts || entries.len() > CHECKPOINT_ENTRIES_PER_RECORD || (part != 0 && range.is_some()) {
            return Err(EncodeError::InvalidCheckpoint);
        }
        self.push(RecordKind::Checkpoint, |out| crate::body::encode_checkpoint(part, parts, entries, range, out))
    }

    fn push(&mut self, kind: RecordKind, encode: impl FnOnce(&mut [u8]) -> Option<usize>) -> Result<Lsn, EncodeError> {
        let body_at = self.pos + FRAME_HEADER_BYTES;
        if body_at >= self.buf.len() {
            return Err(EncodeError::Full);
        }
        let room = (self.buf.len() - body_at).min(RECORD_BODY_MAX_BYTES);
        let body_len = encode(&mut self.buf[body_at..body_at + room]).ok_or(EncodeError::Full)?;
        let lsn = self.next_lsn();
        let f = &mut self.buf[self.pos..body_at + body_len];
        put_u32(f, 8, body_len as u32);
        f[12] = kind as u8;
        f[13..16].fill(0);
        put_u64(f, 16, lsn);
        let sum = frame_checksum(self.ctx.seed, &f[8..]);
        put_u64(f, 0, sum);
        self.pos = body_at + body_len;
        self.count += 1;
        Ok(lsn)
    }

    /// Writes the batch header and zero padding; returns the padded length to write
    /// (a multiple of [`BLOCK_BYTES`]). Panics on an empty batch: an empty batch is never written.
    pub fn finish(self) -> usize {
        assert!(self.count > 0, "empty batch");
        let padded = align_up(self.pos);
        assert!(padded <= self.buf.len());
        self.buf[self.pos..padded].fill(0);
        let h = BatchHeader {
            k: self.ctx.k,
            batch_no: self.batch_no,
            first_lsn: self.first_lsn,
            record_count: self.count,
            payload_bytes: (self.pos - BATCH_HEADER_BYTES) as u32,
            segment_no: self.ctx.segment_no,
            epoch: self.ctx.epoch,
        };
        h.encode(self.buf);
        padded
    }
}

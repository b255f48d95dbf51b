//! Builds whole segment images in memory, for tests, fuzz seeds and tools. The engine's writer
//! uses [`BatchEncoder`] directly on its aligned buffers; this is the same encoder on a `Vec`.

use crate::encode::{BatchEncoder, EncodeError, SegmentContext};
use crate::format::CHECKPOINT_ENTRIES_PER_RECORD;
use crate::format::{Lsn, SegmentHeader, BLOCK_BYTES};
use crate::intent::TradeIntent;
use crate::record::{InDoubt, OutcomeKind};

/// A record to put in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An intent.
    Intent(TradeIntent),
    /// An outcome of the intent at the LSN.
    Outcome(Lsn, OutcomeKind),
    /// A whole checkpoint (split into parts as the writer does).
    Checkpoint(Vec<InDoubt>),
}

/// Builds one segment image batch by batch.
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    header: SegmentHeader,
    ctx: SegmentContext,
    image: Vec<u8>,
    pos: usize,
    batch_no: u64,
    next_lsn: Lsn,
    batch_offsets: Vec<usize>,
}

impl SegmentBuilder {
    /// An all-zero image of `header.segment_bytes`; the header is written with batch 0.
    pub fn new(header: SegmentHeader) -> Self {
        SegmentBuilder {
            ctx: SegmentContext::from_header(&header),
            image: vec![0u8; header.segment_bytes as usize],
            pos: BLOCK_BYTES,
            batch_no: 0,
            next_lsn: header.base_lsn,
            batch_offsets: Vec::new(),
            header,
        }
    }

    /// Appends one batch holding `items`; returns the LSNs of its records. A checkpoint item
    /// becomes as many records as it needs.
    pub fn batch(&mut self, items: &[Item]) -> Result<Vec<Lsn>, EncodeError> {
        let at = self.pos;
        let mut enc = BatchEncoder::new(&mut self.image[at..], self.ctx, self.batch_no, self.next_lsn);
        let mut lsns = Vec::new();
        for item in items {
            match item {
                Item::Intent(i) => lsns.push(enc.push_intent(i)?),
                Item::Outcome(l, k) => lsns.push(enc.push_outcome(*l, *k)?),
                Item::Checkpoint(entries) => {
                    let parts = entries.len().div_ceil(CHECKPOINT_ENTRIES_PER_RECORD).max(1) as u32;
                    for part in 0..parts {
                        let lo = part as usize * CHECKPOINT_ENTRIES_PER_RECORD;
                        let hi = (lo + CHECKPOINT_ENTRIES_PER_RECORD).min(entries.len());
                        lsns.push(enc.push_checkpoint(part, parts, &entries[lo..hi])?);
                    }
                }
            }
        }
        if enc.is_empty() {
            return Ok(lsns);
        }
        let next = enc.next_lsn();
        let len = enc.finish();
        if self.batch_no == 0 {
            self.header.encode(&mut self.image[..BLOCK_BYTES]);
        }
        self.batch_offsets.push(at);
        self.pos += len;
        self.batch_no += 1;
        self.next_lsn = next;
        Ok(lsns)
    }

    /// Offsets of the batches written so far.
    pub fn batch_offsets(&self) -> &[usize] {
        &self.batch_offsets
    }

    /// Offset where the next batch would start.
    pub fn end_offset(&self) -> usize {
        self.pos
    }

    /// LSN the next record would get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The image.
    pub fn bytes(&self) -> &[u8] {
        &self.image
    }

    /// The image, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.image
    }
}

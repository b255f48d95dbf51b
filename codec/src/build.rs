//! Builds whole segment images in memory, for tests, fuzz seeds and tools. The engine's writer
//! uses [`BatchEncoder`] directly on its aligned buffers; this is the same encoder on a `Vec`.

use crate::encode::{BatchEncoder, EncodeError, SegmentContext};
use crate::format::CHECKPOINT_ENTRIES_PER_RECORD;
use crate::format::{Lsn, SegmentHeader, BLOCK_BYTES};
use crate::intent::TradeIntent;
use crate::record::{InDoubt, Outcome, OutcomeKind, Status, TsRange};

/// A record to put in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An intent.
    Intent(TradeIntent),
    /// Intents appended as one group.
    Group(Vec<TradeIntent>),
    /// The shorthand outcome of the intent at the LSN: Executed is Filled with the intent's whole
    /// quantity (known to the builder from this segment's intents and checkpoint; 1.0 for an
    /// LSN it has not seen), Aborted is Aborted.
    Outcome(Lsn, OutcomeKind),
    /// A full outcome.
    Report(Outcome),
    /// A whole checkpoint (split into parts as the writer does), with the previous segment's
    /// time range.
    Checkpoint(Vec<InDoubt>, Option<TsRange>),
}

impl Item {
    /// A status of the intent at `lsn`, with no venue order id or timestamp.
    pub fn status(lsn: Lsn, status: Status) -> Item {
        Item::Report(Outcome::new(lsn, status))
    }
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
    /// Quantities of the intents this builder has seen (for shorthand outcomes).
    qty: std::collections::HashMap<Lsn, f64>,
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
            qty: Default::default(),
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
                Item::Intent(i) => {
                    let lsn = enc.push_intent(i)?;
                    self.qty.insert(lsn, i.qty);
                    lsns.push(lsn);
                }
                Item::Group(g) => {
                    let first = enc.push_group(g)?;
                    for (k, i) in g.iter().enumerate() {
                        self.qty.insert(first + k as u64, i.qty);
                        lsns.push(first + k as u64);
                    }
                }
                Item::Outcome(l, k) => {
                    let qty = self.qty.get(l).copied().unwrap_or(1.0);
                    lsns.push(enc.push_outcome(&Outcome::shorthand(*l, *k, qty))?);
                }
                Item::Report(o) => lsns.push(enc.push_outcome(o)?),
                Item::Checkpoint(entries, range) => {
                    self.qty.extend(entries.iter().map(|e| (e.lsn, e.intent.qty)));
                    let parts = entries.len().div_ceil(CHECKPOINT_ENTRIES_PER_RECORD).max(1) as u32;
                    for part in 0..parts {
                        let lo = part as usize * CHECKPOINT_ENTRIES_PER_RECORD;
                        let hi = (lo + CHECKPOINT_ENTRIES_PER_RECORD).min(entries.len());
                        let r = if part == 0 { *range } else { None };
                        lsns.push(enc.push_checkpoint(part, parts, &entries[lo..hi], r)?);
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

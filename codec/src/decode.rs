//! Segment decoder: iterates the records of one segment image and classifies how it ends:
//! [`SegmentEnd::Empty`], [`SegmentEnd::Clean`], [`SegmentEnd::TornTail`] or
//! [`SegmentEnd::Corrupt`]. Never panics and never allocates more than a record body's length,
//! whatever the input.
//!
//! Torn tail or corruption (I4): the writer submits batch `j` of a segment only when batches
//! `0..=j-K` have completed, so a valid batch header numbered `j` proves every batch `<= j-K`
//! was durable (and acknowledged). An invalid batch `e` is therefore corruption when a valid batch
//! `>= e+K` exists later in the segment, and a torn tail otherwise. The header block is written in
//! the same write as batch 0, so damage there is judged as damage to batch 0.
//!
//! Recycled files (the header's epoch has [`EPOCH_RECYCLED`](crate::format::EPOCH_RECYCLED) set):
//! the bytes after this life's last batch may be stale batches of earlier lives, which never
//! validate for this segment and epoch (I2). The first batch `e > 0` that does not validate is
//! then the end of the data: **Clean** at it, unless this life left a trace at or after it (a
//! valid batch header bound to this segment and epoch: a write of this life that was torn, a
//! **TornTail**), and **Corrupt** only by the K-window rule above. A file whose block 0 is zero
//! and whose block 1 holds a valid batch header of another segment, with no batch header of this
//! segment anywhere, is a recycled spare never put in service: **Empty**.

use crate::format::{
    frame_checksum, get_u32, get_u64, is_zero, BatchHeader, HeaderError, Lsn, SegmentHeader, BATCH_HEADER_BYTES, BATCH_MAGIC, BLOCK_BYTES,
    FRAME_HEADER_BYTES, RECORD_BODY_MAX_BYTES,
};
use crate::record::{decode_body, BodyError, Record, RecordKind};
use std::fmt;

/// What was wrong with the first invalid batch (or header) of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The segment header block is invalid.
    Header(HeaderError),
    /// The header is valid but names another segment number than expected (swapped or misnamed file).
    SegmentMismatch {
        /// Segment number in the header.
        found: u64,
    },
    /// The file is longer than the header's segment size.
    FileTooLong {
        /// Actual length.
        len: u64,
    },
    /// A zero batch header, but non-zero bytes at this offset further on.
    DataAfterEnd {
        /// Offset of the first non-zero byte.
        offset: u64,
    },
    /// Batch header magic or checksum wrong.
    BatchHeader,
    /// Batch header valid but bound to another segment or epoch (stale or misdirected, I2).
    BatchBinding,
    /// Batch number out of sequence.
    BatchNumber {
        /// Number found.
        found: u64,
    },
    /// First LSN of the batch out of sequence (I3).
    BatchLsn {
        /// LSN found.
        found: Lsn,
    },
    /// Batch K differs from the segment's K.
    BatchK,
    /// Batch length or record count out of range.
    BatchLength,
    /// A record frame's length field is out of range.
    FrameLength {
        /// Offset of the frame.
        offset: u64,
    },
    /// A record frame's checksum does not match.
    FrameChecksum {
        /// Offset of the frame.
        offset: u64,
    },
    /// A record frame has an unknown kind or non-zero reserved bytes.
    FrameKind {
        /// Offset of the frame.
        offset: u64,
    },
    /// A record frame's LSN is out of sequence.
    FrameLsn {
        /// Offset of the frame.
        offset: u64,
        /// LSN found.
        found: Lsn,
    },
    /// A record body does not decode or breaks a rule.
    Body {
        /// Offset of the frame.
        offset: u64,
        /// The decoder's complaint.
        error: BodyError,
    },
    /// Frames do not fill the batch's payload exactly.
    PayloadMismatch,
    /// Padding after the last frame of a batch is not zero.
    Padding,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Header(e) => write!(f, "segment header invalid ({e})"),
            Fault::SegmentMismatch { found } => write!(f, "header names segment {found}"),
            Fault::FileTooLong { len } => write!(f, "file is {len} bytes, longer than its segment size"),
            Fault::DataAfterEnd { offset } => write!(f, "non-zero bytes at offset {offset} after the last batch"),
            Fault::BatchHeader => write!(f, "batch header magic or checksum mismatch"),
            Fault::BatchBinding => write!(f, "batch belongs to another segment or epoch"),
            Fault::BatchNumber { found } => write!(f, "batch number {found} out of sequence"),
            Fault::BatchLsn { found } => write!(f, "batch first LSN {found} out of sequence"),
            Fault::BatchK => write!(f, "batch K differs from the segment's"),
            Fault::BatchLength => write!(f, "batch length or record count out of range"),
            Fault::FrameLength { offset } => write!(f, "record length out of range at offset {offset}"),
            Fault::FrameChecksum { offset } => write!(f, "record checksum mismatch at offset {offset}"),
            Fault::FrameKind { offset } => write!(f, "unknown record kind at offset {offset}"),
            Fault::FrameLsn { offset, found } => write!(f, "record LSN {found} out of sequence at offset {offset}"),
            Fault::Body { offset, error } => write!(f, "record body at offset {offset}: {error}"),
            Fault::PayloadMismatch => write!(f, "records do not fill the batch payload"),
            Fault::Padding => write!(f, "batch padding not zero"),
        }
    }
}

/// Corruption of acknowledged data: where, and why it cannot be a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Segment number (from the file name when the header is unreadable).
    pub segment: u64,
    /// Byte offset in the segment file of the damaged batch (or header).
    pub offset: u64,
    /// LSN the log expected at that place (0 when unknown).
    pub expected_lsn: Lsn,
    /// What is wrong.
    pub reason: CorruptReason,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} offset {} expected LSN {}: {}", self.segment, self.offset, self.expected_lsn, self.reason)
    }
}

impl std::error::Error for Corruption {}

/// Why damage is corruption rather than a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptReason {
    /// Damage followed by a valid batch at least K batches later, which proves the damaged batch
    /// had been acknowledged (I4).
    AcknowledgedBatch {
        /// What is wrong with the damaged batch.
        fault: Fault,
        /// The later batch's number.
        later_batch: u64,
        /// The later batch's offset.
        later_offset: u64,
    },
    /// Damage that no crash can produce (wrong segment number, file too long, ...).
    Impossible(Fault),
    /// A segment is missing from the sequence (I3).
    MissingSegment {
        /// The segment number that should be there.
        expected: u64,
    },
    /// Two files claim the same segment number, or segments are out of order.
    DuplicateSegment,
    /// LSNs do not continue from the previous segment (I3).
    LsnGap {
        /// LSN found.
        found: Lsn,
    },
    /// A segment belongs to another log.
    ForeignLog,
    /// A torn tail in a segment followed by a later segment holding data.
    TornBeforeLaterData {
        /// What is wrong at the torn place.
        fault: Fault,
        /// The later segment holding data.
        later_segment: u64,
    },
    /// Records violate the log's rules (checkpoint placement, outcome of an unknown intent, ...).
    Semantics(String),
    /// The log's files break a rule the engine checks around the bytes (file lengths, segment
    /// numbers, the manifest).
    Log(String),
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptReason::AcknowledgedBatch { fault, later_batch, later_offset } => {
                write!(f, "{fault}; a valid later batch {later_batch} at offset {later_offset} proves this batch was acknowledged")
            }
            CorruptReason::Impossible(fault) => write!(f, "{fault}"),
            CorruptReason::MissingSegment { expected } => write!(f, "segment {expected} is missing"),
            CorruptReason::DuplicateSegment => write!(f, "duplicate or out-of-order segment number"),
            CorruptReason::LsnGap { found } => write!(f, "LSN gap: segment starts at LSN {found}"),
            CorruptReason::ForeignLog => write!(f, "segment belongs to another log"),
            CorruptReason::TornBeforeLaterData { fault, later_segment } => {
                write!(f, "{fault}; segment {later_segment} holds later data, so this is not a torn tail")
            }
            CorruptReason::Semantics(s) | CorruptReason::Log(s) => f.write_str(s),
        }
    }
}

/// How a segment image ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// A segment never put in service: all zeros (a zero-filled spare), or a recycled spare
    /// (block 0 zero, block 1 a stale batch header of another segment, no batch of this segment).
    Empty,
    /// Every batch valid, then zeros after the last one; in a recycled file, data of no batch
    /// of this segment and epoch (stale bytes of earlier lives).
    Clean {
        /// LSN after the last record.
        next_lsn: Lsn,
        /// Offset after the last batch (where the next batch would go).
        end_offset: u64,
        /// Number of batches.
        batches: u64,
    },
    /// Damage that provably lies beyond the last acknowledged record (I4): may be truncated at `at`.
    TornTail {
        /// Offset of the first damaged byte range (0: the whole segment, its first write was torn).
        at: u64,
        /// LSN expected at `at` (0 when the header is unreadable).
        lsn: Lsn,
        /// Valid batches before `at`.
        batches: u64,
        /// What is wrong at `at`.
        fault: Fault,
    },
    /// Corruption of acknowledged data.
    Corrupt(Corruption),
}

/// One record frame of a validated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The record's kind.
    pub kind: RecordKind,
    /// Offset of the frame in the segment file.
    pub offset: u64,
    /// The encoded body.
    pub body: &'a [u8],
    /// The segment's format version (how the body is laid out).
    pub version: u32,
    /// Number of the batch holding the frame, within its segment.
    pub batch: u64,
}

impl Frame<'_> {
    /// Decodes the body. Cannot fail for frames yielded by [`SegmentDecoder`] (it decoded them
    /// before yielding), but stays fallible rather than panic.
    pub fn decode(&self) -> Result<Record, BodyError> {
        decode_body(self.version, self.kind, self.body)
    }
}

#[derive(Debug, Clone, Copy)]
struct Cursor {
    pos: usize,
    remaining: u32,
}

/// Iterates the records of one segment image; see the module docs.
#[derive(Debug)]
pub struct SegmentDecoder<'a> {
    bytes: &'a [u8],
    header: Option<SegmentHeader>,
    version: u32,
    segment_no: u64,
    seg_len: usize,
    pos: usize,
    batch_no: u64,
    next_lsn: Lsn,
    cur: Option<Cursor>,
    end: Option<SegmentEnd>,
}

impl<'a> SegmentDecoder<'a> {
    /// Starts decoding `bytes`, the whole segment file. `expected_segment` is the number from the
    /// file name; a header naming another number is corruption. Missing bytes past the end of a
    /// short image read as zeros, except that a batch running past the end is judged lost (a torn
    /// batch) even if its records are all there. (The engine's recovery refuses a short segment
    /// file before decoding it: a crash cannot shorten a preallocated segment.)
    pub fn new(bytes: &'a [u8], expected_segment: Option<u64>) -> Self {
        let mut d = SegmentDecoder {
            bytes,
            header: None,
            version: crate::format::FORMAT_VERSION,
            segment_no: expected_segment.unwrap_or(0),
            seg_len: bytes.len(),
            pos: BLOCK_BYTES,
            batch_no: 0,
            next_lsn: 0,
            cur: None,
            end: None,
        };
        let head = &bytes[..bytes.len().min(BLOCK_BYTES)];
        if is_zero(head) {
            d.end = Some(if is_zero(bytes) || d.recycled_spare() {
                SegmentEnd::Empty
            } else {
                let off = first_nonzero(bytes, 0);
                d.classify(0, Fault::DataAfterEnd { offset: off as u64 })
            });
            return d;
        }
        let mut block = [0u8; BLOCK_BYTES];
        block[..head.len()].copy_from_slice(head);
        match SegmentHeader::decode_versioned(&block) {
            Err(e) => d.end = Some(d.classify(0, Fault::Header(e))),
            Ok((h, version)) => {
                d.version = version;
                if let Some(n) = expected_segment.filter(|&n| n != h.segment_no) {
                    d.segment_no = n;
                    d.end = Some(d.corrupt(0, CorruptReason::Impossible(Fault::SegmentMismatch { found: h.segment_no })));
                    return d;
                }
                d.segment_no = h.segment_no;
                d.header = Some(h);
                d.next_lsn = h.base_lsn;
                if bytes.len() as u64 > h.segment_bytes {
                    let len = bytes.len() as u64;
                    d.end = Some(d.corrupt(h.segment_bytes, CorruptReason::Impossible(Fault::FileTooLong { len })));
                    return d;
                }
                d.seg_len = h.segment_bytes as usize;
            }
        }
        d
    }

    /// Resumes decoding a segment whose `header` was validated earlier, at the batch numbered
    /// `batch_no` that starts at `offset` with first LSN `next_lsn` (where an earlier decode of
    /// the same file ended or paused). Only `bytes[offset..]` is read: the image may be a window
    /// of the file laid at its offset in a buffer of any content before it. Used by readers that
    /// follow a live segment a piece at a time; ends exactly like [`new`](SegmentDecoder::new)
    /// would at that place. `version` is the header's format version
    /// ([`SegmentHeader::decode_versioned`]).
    pub fn resume(bytes: &'a [u8], header: SegmentHeader, version: u32, offset: u64, batch_no: u64, next_lsn: Lsn) -> Self {
        assert!(offset >= BLOCK_BYTES as u64 && offset % BLOCK_BYTES as u64 == 0, "resume at a batch boundary");
        SegmentDecoder {
            bytes,
            header: Some(header),
            version,
            segment_no: header.segment_no,
            seg_len: header.segment_bytes as usize,
            pos: offset as usize,
            batch_no,
            next_lsn,
            cur: None,
            end: None,
        }
    }

    /// Offset of the batch being decoded (or of the next one), batch number and its first LSN:
    /// where [`resume`](SegmentDecoder::resume) would continue. Between batches (after the last
    /// record of a batch was yielded) it names the next batch.
    pub fn position(&self) -> (u64, u64, Lsn) {
        match self.cur {
            Some(Cursor { remaining: 0, .. }) => {
                let raw: [u8; BATCH_HEADER_BYTES] = self.read_padded(self.pos);
                let h = BatchHeader::decode(&raw).expect("validated batch");
                ((self.pos + h.padded_len()) as u64, self.batch_no + 1, self.next_lsn)
            }
            Some(_) => {
                let raw: [u8; BATCH_HEADER_BYTES] = self.read_padded(self.pos);
                let h = BatchHeader::decode(&raw).expect("validated batch");
                (self.pos as u64, self.batch_no, h.first_lsn)
            }
            None => (self.pos as u64, self.batch_no, self.next_lsn),
        }
    }

    /// The segment header, when valid.
    pub fn header(&self) -> Option<&SegmentHeader> {
        self.header.as_ref()
    }

    /// The segment's format version (meaningful with a valid header).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// How the segment ends; `Some` once iteration has returned `None`.
    pub fn end(&self) -> Option<&SegmentEnd> {
        self.end.as_ref()
    }

    /// Runs to the end, discarding records, and returns how the segment ends.
    pub fn finish(mut self) -> SegmentEnd {
        while self.next().is_some() {}
        self.end.take().expect("iteration ended")
    }

    fn corrupt(&self, offset: u64, reason: CorruptReason) -> SegmentEnd {
        SegmentEnd::Corrupt(Corruption { segment: self.segment_no, offset, expected_lsn: self.next_lsn, reason })
    }

    /// Reads `n` bytes at `at`; bytes past the image read as zeros (the image may be short).
    fn read_padded<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if at < self.bytes.len() {
            let n = N.min(self.bytes.len() - at);
            out[..n].copy_from_slice(&self.bytes[at..at + n]);
        }
        out
    }

    /// Block 0 is zero: true when the image is a recycled spare never put in service: block 1
    /// holds a valid batch header of another segment number (batch 0 of an earlier life: every
    /// recycled file held data) and no block holds a batch header naming this segment. A torn
    /// first write of this life whose batch header landed is not one (it names this segment).
    fn recycled_spare(&self) -> bool {
        let stale_first = (self.bytes.len() >= BLOCK_BYTES + BATCH_HEADER_BYTES)
            .then(|| BatchHeader::decode(&self.bytes[BLOCK_BYTES..]))
            .flatten()
            .is_some_and(|b| b.segment_no != self.segment_no);
        stale_first && self.bound_headers(BLOCK_BYTES).next().is_none()
    }

    /// Valid batch headers bound to this segment (and, with a header, to its epoch and K) at the
    /// block boundaries from `from` on: `(offset, batch number, K)`. (Without a segment header,
    /// K is the batch's own.)
    fn bound_headers(&self, from: usize) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        let end = self.bytes.len().min(self.seg_len);
        (from..end.saturating_sub(BATCH_HEADER_BYTES - 1)).step_by(BLOCK_BYTES).filter_map(move |q| {
            if self.bytes[q..q + 4] != BATCH_MAGIC {
                return None;
            }
            let b = BatchHeader::decode(&self.bytes[q..])?;
            let bound = b.segment_no == self.segment_no && self.header.is_none_or(|h| h.epoch == b.epoch && h.k == b.k);
            (bound && b.k > 0).then_some((q, b.batch_no, b.k as u64))
        })
    }

    /// Damage at `at` (batch `self.batch_no`): corruption if a valid batch numbered at least
    /// `batch_no + K` lies further on (I4); in a recycled life past batch 0, the clean end of the
    /// data if no batch header of this life lies at or after `at` (what follows is stale); a torn
    /// tail otherwise.
    fn classify(&self, at: usize, fault: Fault) -> SegmentEnd {
        let mut trace = false;
        for (q, batch_no, k) in self.bound_headers(at) {
            trace = true;
            if q > at && batch_no >= self.batch_no.saturating_add(k) {
                return self.corrupt(at as u64, CorruptReason::AcknowledgedBatch { fault, later_batch: batch_no, later_offset: q as u64 });
            }
        }
        if !trace && self.batch_no > 0 && self.header.is_some_and(|h| h.recycled()) {
            // Nothing of this life from `at` on: stale bytes of an earlier life (or the part of
            // a write of this life that landed without its batch header: never acknowledged).
            return self.clean_at(at);
        }
        // The first write of a segment carries the header and batch 0: damage in either drops both.
        let at = if self.batch_no == 0 { 0 } else { at };
        let lsn = if at == 0 { self.header.map_or(0, |h| h.base_lsn) } else { self.next_lsn };
        SegmentEnd::TornTail { at: at as u64, lsn, batches: self.batch_no, fault }
    }

    /// Validates the batch at `self.pos` entirely (framing, checksums, kinds, LSNs, padding:
    /// all-or-nothing); returns its header. Bodies are decoded when yielded.
    fn check_batch(&self) -> Result<BatchHeader, Fault> {
        let pos = self.pos;
        let raw: [u8; BATCH_HEADER_BYTES] = self.read_padded(pos);
        let h = BatchHeader::decode(&raw).ok_or(Fault::BatchHeader)?;
        let seg = self.header.expect("header checked before batches");
        if h.segment_no != seg.segment_no || h.epoch != seg.epoch {
            return Err(Fault::BatchBinding);
        }
        if h.k != seg.k {
            return Err(Fault::BatchK);
        }
        if h.batch_no != self.batch_no {
            return Err(Fault::BatchNumber { found: h.batch_no });
        }
        if h.first_lsn != self.next_lsn {
            return Err(Fault::BatchLsn { found: h.first_lsn });
        }
        let padded = h.padded_len();
        let min_frame = FRAME_HEADER_BYTES as u64;
        if h.record_count == 0 || pos + padded > self.seg_len || (h.record_count as u64) * min_frame > h.payload_bytes as u64 {
            return Err(Fault::BatchLength);
        }
        if pos + padded > self.bytes.len() {
            // The batch runs past the end of a short image: treat the missing part as lost.
            return Err(Fault::BatchLength);
        }
        let seed = seg.seed();
        let end = pos + BATCH_HEADER_BYTES + h.payload_bytes as usize;
        let mut f = pos + BATCH_HEADER_BYTES;
        for i in 0..h.record_count as u64 {
            let offset = f as u64;
            if f + FRAME_HEADER_BYTES > end {
                return Err(Fault::FrameLength { offset });
            }
            let len = get_u32(self.bytes, f + 8) as usize;
            if len > RECORD_BODY_MAX_BYTES || f + FRAME_HEADER_BYTES + len > end {
                return Err(Fault::FrameLength { offset });
            }
            let frame = &self.bytes[f..f + FRAME_HEADER_BYTES + len];
            if get_u64(frame, 0) != frame_checksum(seed, &frame[8..]) {
                return Err(Fault::FrameChecksum { offset });
            }
            let kind = RecordKind::from_u8(frame[12]).filter(|_| frame[13..16] == [0, 0, 0]);
            kind.ok_or(Fault::FrameKind { offset })?;
            let lsn = get_u64(frame, 16);
            if lsn != h.first_lsn + i {
                return Err(Fault::FrameLsn { offset, found: lsn });
            }
            f += FRAME_HEADER_BYTES + len;
        }
        if f != end {
            return Err(Fault::PayloadMismatch);
        }
        if !is_zero(&self.bytes[end..pos + padded]) {
            return Err(Fault::Padding);
        }
        Ok(h)
    }

    /// Moves to the next batch, or sets `end`.
    fn next_batch(&mut self) {
        debug_assert!(self.end.is_none() && self.cur.is_none());
        if self.pos >= self.seg_len {
            self.end = Some(self.clean());
            return;
        }
        let head: [u8; BATCH_HEADER_BYTES] = self.read_padded(self.pos);
        if is_zero(&head) {
            let tail = &self.bytes[self.pos.min(self.bytes.len())..];
            self.end = Some(if is_zero(tail) {
                if self.batch_no == 0 {
                    // A header with no batch 0: the segment's first write was torn.
                    self.classify(self.pos, Fault::BatchHeader)
                } else {
                    self.clean()
                }
            } else {
                let off = first_nonzero(self.bytes, self.pos);
                self.classify(self.pos, Fault::DataAfterEnd { offset: off as u64 })
            });
            return;
        }
        match self.check_batch() {
            Ok(h) => self.cur = Some(Cursor { pos: self.pos + BATCH_HEADER_BYTES, remaining: h.record_count }),
            Err(fault) => self.end = Some(self.classify(self.pos, fault)),
        }
    }

    fn clean(&self) -> SegmentEnd {
        self.clean_at(self.pos)
    }

    fn clean_at(&self, at: usize) -> SegmentEnd {
        SegmentEnd::Clean { next_lsn: self.next_lsn, end_offset: at as u64, batches: self.batch_no }
    }
}

fn first_nonzero(b: &[u8], from: usize) -> usize {
    b[from..].iter().position(|&x| x != 0).map_or(b.len(), |p| from + p)
}

impl<'a> SegmentDecoder<'a> {
    /// The next record with its decoded body: what a scan wants (each body is decoded once).
    /// A frame whose checksum is valid but whose body does not decode cannot come from a crash or
    /// from rot (the checksum would not match), so it ends the segment as
    /// [`CorruptReason::Impossible`] wherever it is.
    pub fn next_record(&mut self) -> Option<(Frame<'a>, Record)> {
        let frame = self.next_frame()?;
        match frame.decode() {
            Ok(r) => Some((frame, r)),
            Err(error) => {
                let offset = frame.offset;
                self.next_lsn = frame.lsn;
                self.end = Some(self.corrupt(offset, CorruptReason::Impossible(Fault::Body { offset, error })));
                self.cur = None;
                None
            }
        }
    }

    fn next_frame(&mut self) -> Option<Frame<'a>> {
        loop {
            if self.end.is_some() {
                return None;
            }
            match self.cur {
                None => self.next_batch(),
                Some(Cursor { remaining: 0, .. }) => {
                    // Batch done: step to the next block boundary.
                    let raw: [u8; BATCH_HEADER_BYTES] = self.read_padded(self.pos);
                    let h = BatchHeader::decode(&raw).expect("validated batch");
                    self.pos += h.padded_len();
                    self.batch_no += 1;
                    self.cur = None;
                }
                Some(Cursor { pos, remaining }) => {
                    // The batch's framing and checksums were validated as a whole in `check_batch`.
                    let len = get_u32(self.bytes, pos + 8) as usize;
                    let frame = &self.bytes[pos..pos + FRAME_HEADER_BYTES + len];
                    let kind = RecordKind::from_u8(frame[12]).expect("validated kind");
                    let lsn = get_u64(frame, 16);
                    assert_eq!(lsn, self.next_lsn, "validated LSN sequence");
                    self.next_lsn += 1;
                    self.cur = Some(Cursor { pos: pos + FRAME_HEADER_BYTES + len, remaining: remaining - 1 });
                    return Some(Frame {
                        lsn,
                        kind,
                        offset: pos as u64,
                        body: &frame[FRAME_HEADER_BYTES..],
                        version: self.version,
                        batch: self.batch_no,
                    });
                }
            }
        }
    }
}

/// Yields every record whose body decodes (see [`SegmentDecoder::next_record`]).
impl<'a> Iterator for SegmentDecoder<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        self.next_record().map(|(f, _)| f)
    }
}

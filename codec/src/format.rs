//! Byte layouts of the on-disk format (see docs/design.md, which mirrors this file).
//!
//! All integers are little-endian. A segment file is `segment_bytes` long (a multiple of
//! [`BLOCK_BYTES`]); block 0 holds the [`SegmentHeader`], and batch 0 starts at [`BLOCK_BYTES`].
//! The header is written in the same write as batch 0, so a segment that was never put in
//! service is all zeros, or, when recycled, has a zero block 0 over stale batches of an earlier
//! life (see [`EPOCH_RECYCLED`]).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Log sequence number. The first record of a log has LSN 1; 0 means "none".
pub type Lsn = u64;

/// Alignment and padding unit of every write (O_DIRECT on 4 KiB physical sectors).
pub const BLOCK_BYTES: usize = 4096;
/// Smallest unit the disk may tear a write into (logical sector).
pub const SECTOR_BYTES: usize = 512;
/// Smallest segment the codec accepts: a header block and one batch block.
pub const SEGMENT_MIN_BYTES: u64 = 2 * BLOCK_BYTES as u64;
/// Largest segment the codec accepts (1 TiB).
pub const SEGMENT_MAX_BYTES: u64 = 1 << 40;
/// Largest in-flight batch limit K a header may carry.
pub const K_MAX: u32 = 64;
/// Largest record body, in bytes.
pub const RECORD_BODY_MAX_BYTES: usize = 32 * 1024;
/// Most in-doubt entries in one checkpoint record (a checkpoint spans several records).
pub const CHECKPOINT_ENTRIES_PER_RECORD: usize = 128;

/// Most in-doubt entries in one checkpoint record of format `version` (256 in format 1).
pub fn checkpoint_entries_per_record(version: u32) -> usize {
    if version == 1 {
        256
    } else {
        CHECKPOINT_ENTRIES_PER_RECORD
    }
}

/// Segment header magic (block 0, offset 0).
pub const SEGMENT_MAGIC: [u8; 8] = *b"TRADEWAL";
/// On-disk format version this codec writes. It also reads format 1 (logs written before the
/// bodies were laid out by hand): `FORMAT_VERSIONS_READ`.
pub const FORMAT_VERSION: u32 = 2;
/// Format versions this codec reads.
pub const FORMAT_VERSIONS_READ: std::ops::RangeInclusive<u32> = 1..=2;
/// Encoded size of the segment header fields, checksum included.
pub const SEGMENT_HEADER_BYTES: usize = 96;

/// Bit 0 of a segment's epoch: set when the segment's life began in a recycled file (a retired
/// segment renamed to a new segment number, its block 0 zeroed, its old batches left in place).
/// A file created and zero-filled for this life has it clear, so for such a file every byte after
/// the last batch must be zero (the stricter rule). Logs written before recycling existed carry
/// random epochs: half of them read with the recycled rule, which is never wrong, only less
/// strict about stray bytes after the end of the data (docs/design.md).
pub const EPOCH_RECYCLED: u64 = 1;

/// An epoch for a new life of a segment file from `random` bits: [`EPOCH_RECYCLED`] set when
/// the life begins in a recycled file, clear when the file was created zero-filled for it.
pub fn life_epoch(random: u64, recycled: bool) -> u64 {
    if recycled {
        random | EPOCH_RECYCLED
    } else {
        random & !EPOCH_RECYCLED
    }
}

/// Batch header magic (`TWB1`).
pub const BATCH_MAGIC: [u8; 4] = *b"TWB1";
/// Encoded size of a batch header.
pub const BATCH_HEADER_BYTES: usize = 64;
/// Encoded size of a record frame header (checksum, length, kind, LSN).
pub const FRAME_HEADER_BYTES: usize = 24;

const _: () = assert!(BLOCK_BYTES % SECTOR_BYTES == 0);
const _: () = assert!(BLOCK_BYTES.is_power_of_two());
const _: () = assert!(SEGMENT_HEADER_BYTES <= BLOCK_BYTES);
const _: () = assert!(BATCH_HEADER_BYTES + FRAME_HEADER_BYTES + RECORD_BODY_MAX_BYTES < u32::MAX as usize);
const _: () = assert!(
    crate::body::CHECKPOINT_FIXED_BYTES + CHECKPOINT_ENTRIES_PER_RECORD * crate::record::IN_DOUBT_ENTRY_MAX_BYTES <= RECORD_BODY_MAX_BYTES
);

/// Rounds `n` up to the next multiple of [`BLOCK_BYTES`].
pub const fn align_up(n: usize) -> usize {
    (n + BLOCK_BYTES - 1) & !(BLOCK_BYTES - 1)
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// True when every byte of `b` is zero.
pub fn is_zero(b: &[u8]) -> bool {
    let (chunks, rest) = b.split_at(b.len() - b.len() % 8);
    chunks.chunks_exact(8).all(|c| u64::from_ne_bytes(c.try_into().expect("8")) == 0) && rest.iter().all(|&x| x == 0)
}

/// Seed of every record checksum in a segment: binds records to segment number and epoch (I2).
pub fn record_seed(segment_no: u64, epoch: u64) -> u64 {
    let mut b = [0u8; 16];
    put_u64(&mut b, 0, segment_no);
    put_u64(&mut b, 8, epoch);
    xxh3_64(&b)
}

/// Checksum of a record frame: `frame` starts at the frame header's length field (offset 8)
/// and runs to the end of the body.
pub fn frame_checksum(seed: u64, frame_from_len: &[u8]) -> u64 {
    xxh3_64_with_seed(frame_from_len, seed)
}

/// Block 0 of a segment file.
///
/// | off | size | field |
/// |----:|----:|---|
/// | 0 | 8 | magic `TRADEWAL` |
/// | 8 | 4 | format version (2; 1 is read) |
/// | 12 | 4 | K, in-flight batch limit |
/// | 16 | 8 | log id (random, same in every segment of a log) |
/// | 24 | 8 | session id (random per session) |
/// | 32 | 8 | session start, Unix seconds (UTC) |
/// | 40 | 8 | segment number |
/// | 48 | 8 | epoch (random per life of the file; bit 0: the life began in a recycled file, see [`EPOCH_RECYCLED`]) |
/// | 56 | 8 | base LSN (LSN of the first record of batch 0) |
/// | 64 | 8 | segment size in bytes |
/// | 72 | 8 | created, Unix nanoseconds |
/// | 80 | 8 | reserved, zero |
/// | 88 | 8 | xxh3-64 of bytes 0..88 |
///
/// The rest of block 0 is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// In-flight batch limit K the writer used in this segment.
    pub k: u32,
    /// Random id shared by every segment of one log directory.
    pub log_id: u64,
    /// Random id of the writing session.
    pub session_id: u64,
    /// Session start, Unix seconds UTC (the name's `YYYYMMDD_HHMMSS`).
    pub session_start_unix_s: i64,
    /// Segment number, contiguous across the whole log.
    pub segment_no: u64,
    /// Random per life of the file (a new file, or a recycled one put in service again), so a
    /// stale or misplaced record is recognisable (I2). Bit 0 ([`EPOCH_RECYCLED`]) is set when
    /// this life began in a recycled file: bytes after this life's data may be stale batches
    /// of earlier lives (docs/design.md, "Reading a segment").
    pub epoch: u64,
    /// LSN of the first record in this segment.
    pub base_lsn: Lsn,
    /// Segment size in bytes (multiple of [`BLOCK_BYTES`]).
    pub segment_bytes: u64,
    /// Creation time, Unix nanoseconds.
    pub created_unix_ns: i64,
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The block is too short.
    #[error("header block shorter than {BLOCK_BYTES} bytes")]
    Short,
    /// Magic bytes missing.
    #[error("bad magic")]
    Magic,
    /// Checksum mismatch.
    #[error("header checksum mismatch")]
    Checksum,
    /// Unknown format version.
    #[error("unsupported format version {0}")]
    Version(u32),
    /// A field is out of range.
    #[error("header field out of range: {0}")]
    Field(&'static str),
}

impl SegmentHeader {
    /// Writes the header into `block` (at least [`BLOCK_BYTES`] long), zeroing the rest of the block.
    pub fn encode(&self, block: &mut [u8]) {
        assert!(block.len() >= BLOCK_BYTES, "header block too small");
        assert!(self.validate_fields().is_ok(), "encoding an invalid header: {self:?}");
        let b = &mut block[..BLOCK_BYTES];
        b.fill(0);
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        put_u32(b, 8, FORMAT_VERSION);
        put_u32(b, 12, self.k);
        put_u64(b, 16, self.log_id);
        put_u64(b, 24, self.session_id);
        put_u64(b, 32, self.session_start_unix_s as u64);
        put_u64(b, 40, self.segment_no);
        put_u64(b, 48, self.epoch);
        put_u64(b, 56, self.base_lsn);
        put_u64(b, 64, self.segment_bytes);
        put_u64(b, 72, self.created_unix_ns as u64);
        let sum = xxh3_64(&b[..88]);
        put_u64(b, 88, sum);
    }

    /// Parses and verifies block 0.
    pub fn decode(block: &[u8]) -> Result<Self, HeaderError> {
        Self::decode_versioned(block).map(|(h, _)| h)
    }

    /// Parses and verifies block 0; returns the header and its format version (1 or 2), which
    /// says how the segment's record bodies are laid out.
    pub fn decode_versioned(block: &[u8]) -> Result<(Self, u32), HeaderError> {
        if block.len() < BLOCK_BYTES {
            return Err(HeaderError::Short);
        }
        let b = &block[..BLOCK_BYTES];
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Magic);
        }
        if get_u64(b, 88) != xxh3_64(&b[..88]) {
            return Err(HeaderError::Checksum);
        }
        let version = get_u32(b, 8);
        if !FORMAT_VERSIONS_READ.contains(&version) {
            return Err(HeaderError::Version(version));
        }
        if get_u64(b, 80) != 0 || !is_zero(&b[SEGMENT_HEADER_BYTES..]) {
            return Err(HeaderError::Field("reserved bytes not zero"));
        }
        let h = SegmentHeader {
            k: get_u32(b, 12),
            log_id: get_u64(b, 16),
            session_id: get_u64(b, 24),
            session_start_unix_s: get_u64(b, 32) as i64,
            segment_no: get_u64(b, 40),
            epoch: get_u64(b, 48),
            base_lsn: get_u64(b, 56),
            segment_bytes: get_u64(b, 64),
            created_unix_ns: get_u64(b, 72) as i64,
        };
        h.validate_fields()?;
        Ok((h, version))
    }

    fn validate_fields(&self) -> Result<(), HeaderError> {
        if self.k == 0 || self.k > K_MAX {
            return Err(HeaderError::Field("k"));
        }
        if self.segment_bytes < SEGMENT_MIN_BYTES || self.segment_bytes > SEGMENT_MAX_BYTES || self.segment_bytes % BLOCK_BYTES as u64 != 0
        {
            return Err(HeaderError::Field("segment_bytes"));
        }
        if self.base_lsn == 0 {
            return Err(HeaderError::Field("base_lsn"));
        }
        Ok(())
    }

    /// True when this life of the file began in a recycled file ([`EPOCH_RECYCLED`] set in the
    /// epoch): what follows this life's last batch may be stale data of an earlier life, so the
    /// decoder reads it as the end of the data unless this life left a trace there.
    pub fn recycled(&self) -> bool {
        self.epoch & EPOCH_RECYCLED != 0
    }

    /// The record checksum seed of this segment.
    pub fn seed(&self) -> u64 {
        record_seed(self.segment_no, self.epoch)
    }
}

/// Header of one batch (one group commit). Starts on a [`BLOCK_BYTES`] boundary.
///
/// | off | size | field |
/// |----:|----:|---|
/// | 0 | 4 | magic `TWB1` |
/// | 4 | 4 | K |
/// | 8 | 8 | batch number within the segment (batch 0 follows the header block) |
/// | 16 | 8 | first LSN |
/// | 24 | 4 | record count (>= 1) |
/// | 28 | 4 | payload bytes (record frames after this header) |
/// | 32 | 8 | segment number |
/// | 40 | 8 | segment epoch |
/// | 48 | 8 | reserved, zero |
/// | 56 | 8 | xxh3-64 of bytes 0..56 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// In-flight batch limit K.
    pub k: u32,
    /// Batch number within the segment, from 0.
    pub batch_no: u64,
    /// LSN of the first record.
    pub first_lsn: Lsn,
    /// Number of records (at least one).
    pub record_count: u32,
    /// Bytes of record frames after the header.
    pub payload_bytes: u32,
    /// Segment number (binds the batch to its file, I2).
    pub segment_no: u64,
    /// Segment epoch (binds the batch to this creation of the file, I2).
    pub epoch: u64,
}

impl BatchHeader {
    /// Bytes the batch occupies on disk, padding included.
    pub fn padded_len(&self) -> usize {
        align_up(BATCH_HEADER_BYTES + self.payload_bytes as usize)
    }

    /// Writes the header into the first [`BATCH_HEADER_BYTES`] of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        let b = &mut b[..BATCH_HEADER_BYTES];
        b[0..4].copy_from_slice(&BATCH_MAGIC);
        put_u32(b, 4, self.k);
        put_u64(b, 8, self.batch_no);
        put_u64(b, 16, self.first_lsn);
        put_u32(b, 24, self.record_count);
        put_u32(b, 28, self.payload_bytes);
        put_u64(b, 32, self.segment_no);
        put_u64(b, 40, self.epoch);
        put_u64(b, 48, 0);
        let sum = xxh3_64(&b[..56]);
        put_u64(b, 56, sum);
    }

    /// Parses a batch header and checks its magic and checksum (not its place in the log).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < BATCH_HEADER_BYTES || b[0..4] != BATCH_MAGIC {
            return None;
        }
        if get_u64(b, 56) != xxh3_64(&b[..56]) || get_u64(b, 48) != 0 {
            return None;
        }
        Some(BatchHeader {
            k: get_u32(b, 4),
            batch_no: get_u64(b, 8),
            first_lsn: get_u64(b, 16),
            record_count: get_u32(b, 24),
            payload_bytes: get_u32(b, 28),
            segment_no: get_u64(b, 32),
            epoch: get_u64(b, 40),
        })
    }
}

/// A parsed segment file name `wal_<YYYYMMDD>_<HHMMSS>_<segment:06>.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// Session start, Unix seconds UTC.
    pub session_start_unix_s: i64,
    /// Segment number.
    pub segment_no: u64,
}

impl SegmentName {
    /// Formats the file name.
    pub fn file_name(&self) -> String {
        let (y, mo, d, h, mi, s) = civil_from_unix(self.session_start_unix_s);
        format!("wal_{y:04}{mo:02}{d:02}_{h:02}{mi:02}{s:02}_{:06}.log", self.segment_no)
    }

    /// Parses a file name; `None` if it is not a segment name.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("wal_")?.strip_suffix(".log")?;
        let mut parts = rest.split('_');
        let (date, time, seg) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || date.len() != 8 || time.len() != 6 || seg.len() < 6 {
            return None;
        }
        let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        if !all_digits(date) || !all_digits(time) || !all_digits(seg) {
            return None;
        }
        let num = |s: &str| s.parse::<i64>().ok();
        let (y, mo, d) = (num(&date[..4])?, num(&date[4..6])?, num(&date[6..])?);
        let (h, mi, s) = (num(&time[..2])?, num(&time[2..4])?, num(&time[4..])?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        let t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
        let segment_no = seg.parse::<u64>().ok()?;
        let n = SegmentName { session_start_unix_s: t, segment_no };
        // Reject names that do not format back to themselves (e.g. 20260231).
        (n.file_name() == name).then_some(n)
    }
}

/// Unix seconds to (year, month, day, hour, minute, second), UTC.
pub fn civil_from_unix(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = SegmentName { session_start_unix_s: 1_767_955_680, segment_no: 7 };
        assert_eq!(n.file_name(), "wal_20260109_104800_000007.log");
        assert_eq!(SegmentName::parse("wal_20260109_104800_000007.log"), Some(n));
        let big = SegmentName { session_start_unix_s: 0, segment_no: 12_345_678 };
        assert_eq!(SegmentName::parse(&big.file_name()), Some(big));
        for bad in [
            "wal_20260231_104800_000007.log",
            "wal_20260109_104800_7.log",
            "x.log",
            "wal_20260109_104800_000007.log.tmp",
            "wal_2026010a_104800_000007.log",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = SegmentHeader {
            k: 2,
            log_id: 9,
            session_id: 8,
            session_start_unix_s: 1,
            segment_no: 3,
            epoch: 77,
            base_lsn: 1,
            segment_bytes: 1 << 20,
            created_unix_ns: 5,
        };
        let mut b = vec![0u8; BLOCK_BYTES];
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[100] = 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }
}

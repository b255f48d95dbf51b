//! An independent reader of tradewal logs, written for the tests from docs/design.md alone (the
//! tables "Segment header", "Batch header", "Record frame", "Record bodies", "Checkpoints", and the
//! end-of-data rule of "Recycled segment files"), not
//! from the codec: the oracle that recovery and the codec's scanner are compared against.
//!
//! It reads clean logs only (no torn-tail or corruption classification: that is what it checks the
//! engine's answer against on logs where the answer is "clean"): it walks every segment file in
//! number order, checks every checksum and binding the spec names, decodes every body by the byte
//! tables, and computes the in-doubt set itself (intents minus outcomes, seeded by the first
//! segment's checkpoint when earlier segments were removed by retention).

use std::collections::BTreeMap;
use std::path::Path;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// A record as the spec describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecRecord {
    /// Kind 1.
    Intent {
        /// `ts_ns`.
        ts_ns: i64,
        /// `symbol`.
        symbol: String,
        /// `side`: 0 Buy, 1 Sell.
        side: u32,
        /// `price`, `qty`, `stop_loss`, `take_profit`.
        fields: [f64; 4],
    },
    /// Kind 2.
    Outcome {
        /// The intent it resolves.
        intent_lsn: u64,
        /// 0 Executed, 1 Aborted.
        kind: u32,
    },
    /// Kind 3: one part of a checkpoint, its entries' LSNs.
    CheckpointPart {
        /// Part number.
        part: u32,
        /// Number of parts.
        parts: u32,
        /// LSNs of the in-doubt intents listed.
        lsns: Vec<u64>,
    },
}

/// What the spec reader found in a log directory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecLog {
    /// Every record, by LSN.
    pub records: BTreeMap<u64, SpecRecord>,
    /// LSNs of the intents in doubt (no outcome), in order.
    pub in_doubt: Vec<u64>,
    /// The LSN after the last record (1 for an empty log).
    pub next_lsn: u64,
    /// Segment files read (data segments; spares never put in service are skipped).
    pub data_segments: usize,
    /// Data segments whose life began in a recycled file (epoch bit 0 set).
    pub recycled_segments: usize,
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("body too short".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32le(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64le(self.take(8)?, 0))
    }
    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// An intent body (the "Intent" table), validated.
    fn intent(&mut self) -> Result<SpecRecord, String> {
        let ts_ns = self.u64()? as i64;
        let n = self.u64()? as usize;
        if !(1..=16).contains(&n) {
            return Err(format!("symbol length {n}"));
        }
        let sym = self.take(n)?;
        if !sym.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err("symbol not printable".into());
        }
        let symbol = String::from_utf8(sym.to_vec()).unwrap();
        let side = self.u32()?;
        if side > 1 {
            return Err(format!("side {side}"));
        }
        let fields = [self.f64()?, self.f64()?, self.f64()?, self.f64()?];
        if !(fields[0].is_finite() && fields[0] > 0.0 && fields[1].is_finite() && fields[1] > 0.0) {
            return Err("price/qty".into());
        }
        for f in &fields[2..] {
            if !(f.is_finite() && *f >= 0.0 && f.to_bits() != (-0.0f64).to_bits()) {
                return Err("stop_loss/take_profit".into());
            }
        }
        Ok(SpecRecord::Intent { ts_ns, symbol, side, fields })
    }
}

fn decode_body(kind: u8, body: &[u8]) -> Result<SpecRecord, String> {
    let mut b = Body(body);
    let r = match kind {
        1 => b.intent()?,
        2 => {
            let intent_lsn = b.u64()?;
            let kind = b.u32()?;
            if intent_lsn == 0 || kind > 1 {
                return Err("outcome fields".into());
            }
            SpecRecord::Outcome { intent_lsn, kind }
        }
        3 => {
            let part = b.u32()?;
            let parts = b.u32()?;
            let n = b.u64()?;
            if parts == 0 || part >= parts || n > 256 {
                return Err("checkpoint part fields".into());
            }
            let mut lsns = Vec::new();
            for _ in 0..n {
                let l = b.u64()?;
                b.intent()?;
                if l == 0 || lsns.last().is_some_and(|p| *p >= l) {
                    return Err("checkpoint entries out of order".into());
                }
                lsns.push(l);
            }
            SpecRecord::CheckpointPart { part, parts, lsns }
        }
        k => return Err(format!("kind {k}")),
    };
    if !b.0.is_empty() {
        return Err("body not consumed exactly".into());
    }
    Ok(r)
}

/// Segment-file names of the directory (`wal_YYYYMMDD_HHMMSS_NNNNNN.log`) by number.
fn segment_files(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix("wal_").and_then(|s| s.strip_suffix(".log")) else { continue };
        let parts: Vec<&str> = stem.split('_').collect();
        if parts.len() == 3 && parts[0].len() == 8 && parts[1].len() == 6 {
            if let Ok(n) = parts[2].parse::<u64>() {
                v.push((n, p));
            }
        }
    }
    v.sort();
    v
}

/// Reads a clean log directory by the spec. Any deviation from the spec (a bad checksum, a broken
/// binding, a gap, non-zero padding, a body that does not decode) is an `Err` naming the place.
pub fn read_dir(dir: &Path) -> Result<SpecLog, String> {
    let mut log = SpecLog { next_lsn: 1, ..SpecLog::default() };
    let mut doubt: BTreeMap<u64, ()> = BTreeMap::new();
    let mut log_id = None;
    let mut prev_no: Option<u64> = None;
    for (no, path) in segment_files(dir) {
        let f = std::fs::read(&path).map_err(|e| e.to_string())?;
        let at = |what: &str, off: usize| format!("{}: {what} at offset {off}", path.display());
        if f.iter().all(|&b| b == 0) {
            continue; // a spare never put in service
        }
        if f.len() >= 4096 + 64 && f[..4096].iter().all(|&b| b == 0) {
            // A recycled spare never put in service: block 0 zero, block 1 a stale batch header
            // (valid in itself) of another segment, and no batch header of this segment.
            let stale = &f[4096..4096 + 64];
            let valid = |h: &[u8]| &h[0..4] == b"TWB1" && xxh3_64(&h[0..56]) == u64le(h, 56) && u64le(h, 48) == 0;
            let ours = (4096..f.len() - 63).step_by(4096).any(|q| valid(&f[q..q + 64]) && u64le(&f, q + 32) == no);
            if valid(stale) && u64le(stale, 32) != no && !ours {
                continue;
            }
        }
        // Segment header (block 0).
        if &f[0..8] != b"TRADEWAL" || xxh3_64(&f[0..88]) != u64le(&f, 88) {
            return Err(at("bad segment header magic/checksum", 0));
        }
        let version = u32le(&f, 8);
        let k = u32le(&f, 12);
        let id = u64le(&f, 16);
        let seg_no = u64le(&f, 40);
        let epoch = u64le(&f, 48);
        let base = u64le(&f, 56);
        let seg_bytes = u64le(&f, 64);
        if version != 1 || !(1..=64).contains(&k) || u64le(&f, 80) != 0 || f[96..4096].iter().any(|&b| b != 0) {
            return Err(at("segment header fields", 0));
        }
        if seg_no != no || seg_bytes != f.len() as u64 || base == 0 {
            return Err(at("segment header binding (number, size, base LSN)", 0));
        }
        if *log_id.get_or_insert(id) != id {
            return Err(at("another log's segment", 0));
        }
        if let Some(p) = prev_no {
            if no != p + 1 {
                return Err(at("segment numbers not contiguous", 0));
            }
        }
        let first_data_segment = prev_no.is_none();
        prev_no = Some(no);
        if !first_data_segment && base != log.next_lsn {
            return Err(at(&format!("base LSN {base} after next LSN {}", log.next_lsn), 0));
        }
        log.next_lsn = base;
        log.data_segments += 1;
        // Epoch bit 0: this life began in a recycled file; its data ends at the first block that
        // is not a batch header bound to this segment and epoch (stale bytes may follow).
        let recycled = epoch & 1 == 1;
        log.recycled_segments += recycled as usize;
        let bound_header =
            |h: &[u8]| &h[0..4] == b"TWB1" && xxh3_64(&h[0..56]) == u64le(h, 56) && u64le(h, 32) == seg_no && u64le(h, 40) == epoch;
        let seed = {
            let mut s = [0u8; 16];
            s[..8].copy_from_slice(&seg_no.to_le_bytes());
            s[8..].copy_from_slice(&epoch.to_le_bytes());
            xxh3_64(&s)
        };
        // Batches.
        let mut pos = 4096usize;
        let mut batch_no = 0u64;
        let mut checkpoint: Option<(u32, Vec<u64>)> = Some((0, Vec::new())); // parts seen, entries
        while pos + 64 <= f.len() && f[pos..pos + 64].iter().any(|&b| b != 0) && (!recycled || bound_header(&f[pos..pos + 64])) {
            let h = &f[pos..pos + 64];
            if &h[0..4] != b"TWB1" || xxh3_64(&h[0..56]) != u64le(h, 56) {
                return Err(at("bad batch header", pos));
            }
            let (first, count, payload) = (u64le(h, 16), u32le(h, 24), u32le(h, 28) as usize);
            if u32le(h, 4) != k || u64le(h, 8) != batch_no || first != log.next_lsn || count == 0 {
                return Err(at("batch header fields (K, number, first LSN, count)", pos));
            }
            if u64le(h, 32) != seg_no || u64le(h, 40) != epoch || u64le(h, 48) != 0 {
                return Err(at("batch binding (segment, epoch, reserved)", pos));
            }
            let padded = (64 + payload).div_ceil(4096) * 4096;
            if pos + padded > f.len() {
                return Err(at("batch runs past the segment", pos));
            }
            let mut fp = pos + 64;
            for i in 0..count as u64 {
                let len = u32le(&f, fp + 8) as usize;
                if len > 32768 || fp + 24 + len > pos + 64 + payload {
                    return Err(at("frame length", fp));
                }
                if xxh3_64_with_seed(&f[fp + 8..fp + 24 + len], seed) != u64le(&f, fp) {
                    return Err(at("frame checksum", fp));
                }
                let kind = f[fp + 12];
                let lsn = u64le(&f, fp + 16);
                if f[fp + 13..fp + 16] != [0, 0, 0] || lsn != first + i {
                    return Err(at("frame reserved bytes / LSN", fp));
                }
                let r = decode_body(kind, &f[fp + 24..fp + 24 + len]).map_err(|e| at(&e, fp))?;
                // The checkpoint: the first records of each segment.
                match (&r, checkpoint.as_mut()) {
                    (SpecRecord::CheckpointPart { part, parts, lsns }, Some((seen, entries))) if *part == *seen => {
                        entries.extend(lsns);
                        *seen += 1;
                        if *seen == *parts {
                            let listed: Vec<u64> = std::mem::take(entries);
                            if first_data_segment {
                                // Retention may have removed what came before: the checkpoint seeds
                                // the set (its entries lie below this segment).
                                if let Some(l) = listed.iter().find(|l| **l >= base) {
                                    return Err(at(&format!("seeding checkpoint names LSN {l} >= base {base}"), fp));
                                }
                                doubt = listed.iter().map(|l| (*l, ())).collect();
                            } else if listed != doubt.keys().copied().collect::<Vec<_>>() {
                                return Err(at("checkpoint differs from the in-doubt set", fp));
                            }
                            checkpoint = None;
                        }
                    }
                    (_, Some(_)) => return Err(at("segment does not start with a complete checkpoint", fp)),
                    (SpecRecord::CheckpointPart { .. }, None) => return Err(at("checkpoint part after the checkpoint", fp)),
                    (SpecRecord::Intent { .. }, None) => {
                        doubt.insert(lsn, ());
                    }
                    (SpecRecord::Outcome { intent_lsn, .. }, None) => {
                        if doubt.remove(intent_lsn).is_none() {
                            return Err(at(&format!("outcome of {intent_lsn}, not in doubt"), fp));
                        }
                    }
                }
                log.records.insert(lsn, r);
                fp += 24 + len;
            }
            if fp != pos + 64 + payload || f[fp..pos + padded].iter().any(|&b| b != 0) {
                return Err(at("payload length / padding", pos));
            }
            log.next_lsn = first + count as u64;
            pos += padded;
            batch_no += 1;
        }
        if recycled {
            // Stale bytes may follow, but nothing of this life (that would be a torn write).
            if let Some(q) = (pos..f.len().saturating_sub(63)).step_by(4096).find(|&q| bound_header(&f[q..q + 64])) {
                return Err(at("a batch of this segment and epoch after the end of its data", q));
            }
        } else if f[pos..].iter().any(|&b| b != 0) {
            return Err(at("bytes after the last batch", pos));
        }
    }
    log.in_doubt = doubt.into_keys().collect();
    Ok(log)
}

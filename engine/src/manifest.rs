//! The manifest: a small durable high-water mark of the log, kept in `MANIFEST` in the log
//! directory, that recovery checks the segments against (docs/design.md, "Manifest").
//!
//! It records the log id, a recent acknowledged LSN (every record at or below it had been
//! acknowledged when the manifest was written), the range of segment numbers that held
//! acknowledged data and are still kept, and the names of the segment files tradewal created that
//! are not yet known to hold data (the segment in service before its first acknowledgement, and the
//! spare). It is replaced atomically (write `MANIFEST.tmp`, fsync it, rename it over `MANIFEST`,
//! fsync the directory), so after any crash the directory holds the old or the new manifest, never
//! neither. The maintenance thread writes it (at open, before each spare is created, when the
//! first batch of a segment is acknowledged, and at least once a second while acknowledgements
//! flow), never the writer thread.
//!
//! Recovery refuses ([`WalError::Corrupt`]) when the log it reads ends below the manifest's LSN,
//! when a segment the manifest lists as holding data is missing or reads as never written, or when
//! the segments belong to another log; and it deletes only segment files the manifest accounts for
//! (its own unused spares and torn first writes). Anything else that does not validate goes to the
//! `quarantine/` subdirectory.
//!
//! Text format (one item a line, the last line an xxh3-64 of everything before it):
//! ```text
//! tradewal-manifest 1
//! log_id 5f1e2d3c4b5a6978
//! acked_lsn 123456
//! used 3 7
//! created wal_20260101_000000_000008.log
//! xxh3 0123456789abcdef
//! ```
//! `used none` when no kept segment is known to hold data.

use crate::io::Storage;
use crate::WalError;
use std::io;
use tradewal_codec::{LogState, Lsn, SegmentEnd};

/// File name of the manifest inside a log directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Temporary name the next manifest is written under before the rename.
pub const MANIFEST_TMP: &str = "MANIFEST.tmp";
/// Subdirectory of the log directory that recovery moves unaccountable segment-named files into.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Most `created` names a manifest holds (the segment in service and a spare, with room to spare);
/// the oldest are dropped beyond it.
const CREATED_MAX: usize = 8;
const MAGIC: &str = "tradewal-manifest 1";

/// The decoded contents of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The log's id (the `log_id` of every segment header).
    pub log_id: u64,
    /// Every record at or below this LSN had been acknowledged when the manifest was written
    /// (0: none).
    pub acked_lsn: Lsn,
    /// Segment numbers `lo..=hi` that held acknowledged data and are still kept (None: none).
    pub used: Option<(u64, u64)>,
    /// Segment files created by this log not yet known to hold data (newest last).
    pub created: Vec<String>,
}

impl Manifest {
    /// Encodes to the text format, checksum line included.
    pub fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\nlog_id {:016x}\nacked_lsn {}\n", self.log_id, self.acked_lsn);
        match self.used {
            Some((lo, hi)) => s.push_str(&format!("used {lo} {hi}\n")),
            None => s.push_str("used none\n"),
        }
        for c in &self.created {
            s.push_str(&format!("created {c}\n"));
        }
        let sum = xxhash_rust::xxh3::xxh3_64(s.as_bytes());
        s.push_str(&format!("xxh3 {sum:016x}\n"));
        s
    }

    /// Decodes the text format; `Err` names what is wrong (a damaged or foreign file).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let body_end = text.trim_end_matches('\n').rfind('\n').map(|i| i + 1).ok_or("too short")?;
        let (body, sum_line) = text.split_at(body_end);
        let sum = sum_line.trim_end().strip_prefix("xxh3 ").ok_or("no checksum line")?;
        let sum = u64::from_str_radix(sum, 16).map_err(|_| "bad checksum line".to_string())?;
        if xxhash_rust::xxh3::xxh3_64(body.as_bytes()) != sum {
            return Err("checksum mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("first line is not {MAGIC:?}"));
        }
        let mut field = |key: &str| -> Result<String, String> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| format!("missing {key} line"))
        };
        let log_id = u64::from_str_radix(&field("log_id")?, 16).map_err(|_| "bad log_id".to_string())?;
        let acked_lsn = field("acked_lsn")?.parse().map_err(|_| "bad acked_lsn".to_string())?;
        let used = match field("used")?.as_str() {
            "none" => None,
            r => {
                let (lo, hi) = r.split_once(' ').ok_or("bad used line")?;
                let lo: u64 = lo.parse().map_err(|_| "bad used line".to_string())?;
                let hi: u64 = hi.parse().map_err(|_| "bad used line".to_string())?;
                if lo > hi {
                    return Err(format!("used range {lo}..={hi} is empty"));
                }
                Some((lo, hi))
            }
        };
        let mut created = Vec::new();
        for l in lines {
            let name = l.strip_prefix("created ").ok_or_else(|| format!("unexpected line {l:?}"))?;
            created.push(name.to_string());
        }
        let m = Manifest { log_id, acked_lsn, used, created };
        // Canonical form only (no stray whitespace, case or leading zeros).
        if m.encode().as_bytes() != bytes {
            return Err("not in canonical form".into());
        }
        Ok(m)
    }

    /// Segment number `no` is in the `used` range.
    pub fn lists_used(&self, no: u64) -> bool {
        self.used.is_some_and(|(lo, hi)| (lo..=hi).contains(&no))
    }

    /// `name` is a segment file this log created and had not yet written acknowledged data to.
    pub fn lists_created(&self, name: &str) -> bool {
        self.created.iter().any(|c| c == name)
    }

    /// Notes that `name` is about to be created.
    pub(crate) fn note_created(&mut self, name: &str) {
        if !self.lists_created(name) {
            self.created.push(name.to_string());
        }
        if self.created.len() > CREATED_MAX {
            self.created.remove(0);
        }
    }

    /// Notes that segment `no` (file `name`) holds acknowledged data.
    pub(crate) fn note_used(&mut self, no: u64, name: Option<&str>) {
        self.used = Some(match self.used {
            Some((lo, hi)) => (lo.min(no), hi.max(no)),
            None => (no, no),
        });
        if let Some(n) = name {
            self.created.retain(|c| c != n);
        }
    }

    /// Notes that segments numbered below `below` are being removed (retention).
    pub(crate) fn retire_below(&mut self, below: u64) {
        if let Some((lo, hi)) = self.used {
            if below > hi {
                self.used = None;
            } else if below > lo {
                self.used = Some((below, hi));
            }
        }
    }
}

fn corrupt(reason: String, segment: u64, file: &str, expected_lsn: Lsn) -> WalError {
    WalError::Corrupt { segment, file: file.to_string(), offset: 0, expected_lsn, reason: tradewal_codec::CorruptReason::Log(reason) }
}

/// Reads the manifest of the log directory `dir`, if there is one. A manifest that does not decode
/// is corruption (it is only ever replaced whole), refused with [`WalError::Corrupt`].
pub fn load(dir: &std::path::Path) -> Result<Option<Manifest>, WalError> {
    load_on(&crate::io::fs::FsStorage::new(dir))
}

/// Like [`load`], on any [`Storage`].
pub(crate) fn load_on(storage: &dyn Storage) -> Result<Option<Manifest>, WalError> {
    let names = storage.list().map_err(|e| WalError::io(format!("listing {}", storage.path().display()), e))?;
    if !names.iter().any(|n| n == MANIFEST_FILE) {
        return Ok(None);
    }
    let bytes = storage.read_file(MANIFEST_FILE).map_err(|e| WalError::io(format!("reading {MANIFEST_FILE}"), e))?;
    Manifest::decode(&bytes)
        .map(Some)
        .map_err(|why| corrupt(format!("{MANIFEST_FILE} is damaged ({why}); it is replaced whole, never in place"), 0, MANIFEST_FILE, 0))
}

/// Replaces the manifest atomically: write the temporary file, fsync it, rename it into place,
/// fsync the directory. A crash at any step leaves the old or the new manifest.
pub(crate) fn store(storage: &dyn Storage, m: &Manifest) -> io::Result<()> {
    storage.write_file(MANIFEST_TMP, m.encode().as_bytes())?;
    storage.sync_file(MANIFEST_TMP)?;
    storage.rename(MANIFEST_TMP, MANIFEST_FILE)?;
    storage.sync_dir()
}

/// The refusal for a segment the manifest lists as holding acknowledged data that reads as never
/// written (`how`: what was found).
pub(crate) fn never_written_error(m: &Manifest, no: u64, file: &str, how: &str) -> WalError {
    corrupt(
        format!(
            "{MANIFEST_FILE} (acknowledged LSN {}) lists segment {no} as holding acknowledged data, \
             but it {how}: the storage lost acknowledged writes",
            m.acked_lsn
        ),
        no,
        file,
        0,
    )
}

/// Checks a scanned log against its manifest (before anything is repaired): the segments belong
/// to the manifest's log, every segment the manifest lists as used exists and holds data, and the
/// log does not end below the manifest's acknowledged LSN. Segments before the scan start are not
/// in `state` (recovery checked their headers instead); their files must still exist.
pub(crate) fn check(m: &Manifest, state: &LogState, files: &[(u64, String)]) -> Result<(), WalError> {
    let acked = m.acked_lsn;
    if let Some(id) = state.log_id {
        if id != m.log_id {
            return Err(corrupt(
                format!("the segments belong to log {id:016x} but {MANIFEST_FILE} names log {:016x}", m.log_id),
                state.segments.first().map_or(0, |s| s.segment_no),
                "",
                0,
            ));
        }
    }
    if let Some((lo, hi)) = m.used {
        for no in lo..=hi {
            let Some((_, file)) = files.iter().find(|(n, _)| *n == no) else {
                return Err(corrupt(
                    format!(
                        "{MANIFEST_FILE} (acknowledged LSN {acked}) lists segment {no} as holding acknowledged data, \
                         but no segment file has that number: a segment was lost or deleted"
                    ),
                    no,
                    "",
                    0,
                ));
            };
            let summary = state.segments.iter().find(|s| s.segment_no == no);
            let never_written = match summary.map(|s| &s.end) {
                Some(SegmentEnd::Empty) => Some("reads as all zeros or as a recycled spare: never put in service"),
                Some(SegmentEnd::TornTail { at: 0, .. }) => Some("has no valid first write"),
                _ => None,
            };
            if let Some(how) = never_written {
                return Err(never_written_error(m, no, file, how));
            }
        }
    }
    let found_last = state.first_lsn.map(|_| state.next_lsn - 1);
    let nothing_expected = m.used.is_none() && found_last.is_none();
    if !nothing_expected && found_last.unwrap_or(0) < acked {
        let found = match found_last {
            Some(l) => format!("the log ends at LSN {l}"),
            None => "the log holds no record".to_string(),
        };
        let seg = state.segments.iter().rev().find(|s| s.last_lsn.is_some()).map_or(0, |s| s.segment_no);
        let file = files.iter().find(|(n, _)| *n == seg).map_or("", |(_, f)| f.as_str());
        return Err(corrupt(
            format!(
                "{found}, below the acknowledged LSN {acked} recorded in {MANIFEST_FILE}: acknowledged records are \
                 missing (storage that lost writes, or a deleted segment)"
            ),
            seg,
            file,
            found_last.map_or(1, |l| l + 1),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            log_id: 0x5f1e_2d3c_4b5a_6978,
            acked_lsn: 123_456,
            used: Some((3, 7)),
            created: vec!["wal_20260101_000000_000008.log".into()],
        }
    }

    #[test]
    fn roundtrip_and_every_flip_is_caught() {
        for m in [sample(), Manifest { log_id: 1, acked_lsn: 0, used: None, created: vec![] }] {
            let text = m.encode();
            assert_eq!(Manifest::decode(text.as_bytes()), Ok(m.clone()));
            let bytes = text.as_bytes();
            for i in 0..bytes.len() {
                let mut b = bytes.to_vec();
                b[i] ^= 0x01;
                assert!(Manifest::decode(&b).is_err(), "flip at byte {i} accepted");
            }
            assert!(Manifest::decode(&bytes[..bytes.len() / 2]).is_err());
            assert!(Manifest::decode(b"").is_err());
        }
    }

    #[test]
    fn bookkeeping() {
        let mut m = Manifest { log_id: 1, acked_lsn: 0, used: None, created: vec![] };
        m.note_created("a");
        m.note_created("b");
        m.note_used(4, Some("a"));
        assert_eq!((m.used, m.created.clone()), (Some((4, 4)), vec!["b".to_string()]));
        m.note_used(5, Some("b"));
        assert_eq!(m.used, Some((4, 5)));
        m.retire_below(5);
        assert_eq!(m.used, Some((5, 5)));
        m.retire_below(9);
        assert_eq!(m.used, None);
        for i in 0..20 {
            m.note_created(&format!("s{i}"));
        }
        assert_eq!(m.created.len(), CREATED_MAX);
        assert_eq!(m.created.last().map(String::as_str), Some("s19"));
    }
}

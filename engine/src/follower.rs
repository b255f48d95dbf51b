//! Reading a live log: [`Follower`] and named cursors (docs/design.md, "Readers of a live log").
//!
//! A follower yields the records of a log directory in LSN order, each once, and only records the
//! log has acknowledged: at or below the live writer's watermark (the `watermark` file), or, when no
//! writer is live, what the segments hold as valid batches (what recovery would keep). It never
//! skips: when the next LSN is no longer in the directory (retention removed it) it returns
//! [`FollowError::Gap`].
//!
//! A named follower keeps its position in `readers/NAME.cursor` when the consumer calls
//! [`Follower::commit`]; retention keeps the segments a named cursor still needs, up to
//! [`WalConfig::max_reader_lag_bytes`](crate::WalConfig::max_reader_lag_bytes).

use crate::io::fs::FsStorage;
/// File names a reader of a log directory meets besides segments and the manifest.
pub use crate::io::fs::{LOCK_FILE, READERS_DIR, WATERMARK_FILE};
use crate::io::{Storage, WatermarkCell};
use crate::WalError;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tradewal_codec::{Lsn, Record, RecordKind, SegmentDecoder, SegmentHeader, SegmentName, BLOCK_BYTES};

/// One record a [`Follower`] yields: its LSN, kind, encoded body (byte for byte what the segment
/// holds) and the decoded record (the codec's record type, whatever its version).
#[derive(Debug, Clone, PartialEq)]
pub struct Followed {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The record's kind.
    pub kind: RecordKind,
    /// The encoded body as stored in the segment.
    pub body: Vec<u8>,
    /// The decoded record.
    pub record: Record,
}

/// Why a [`Follower`] cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The next LSN is no longer in the log directory: retention removed (or moved) the segment
    /// that held it. The log now starts at `oldest_available`.
    #[error("LSN {wanted} is gone from the log (retention); the log now starts at LSN {oldest_available}")]
    Gap {
        /// The LSN the follower needed next.
        wanted: Lsn,
        /// The first LSN still in the directory.
        oldest_available: Lsn,
    },
    /// A reader name is not usable as a cursor file name.
    #[error("bad reader name {0:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . - (not starting with '.')")]
    BadName(String),
    /// A cursor file is damaged.
    #[error("cursor file {}: {reason}", path.display())]
    BadCursor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// [`Follower::commit`] of an LSN the follower has not yielded, or below the committed one.
    #[error("cannot commit LSN {lsn}: {reason}")]
    BadCommit {
        /// The LSN given.
        lsn: Lsn,
        /// Why.
        reason: String,
    },
    /// [`Follower::rewind`] to LSN 0 or past the next record (a follower never skips records).
    #[error("cannot rewind to LSN {from}: the next record is LSN {next}")]
    BadRewind {
        /// The LSN given.
        from: Lsn,
        /// The follower's next LSN.
        next: Lsn,
    },
    /// Reading the directory failed.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// A named reader's durable position (a file `readers/NAME.cursor` in the log directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderCursor {
    /// The reader's name.
    pub name: String,
    /// The last LSN the reader committed (0: none yet).
    pub committed: Lsn,
    /// True once retention stopped keeping segments for it (it lagged more than
    /// `max_reader_lag_bytes`); it gets [`FollowError::Gap`] once its next LSN is gone.
    pub dropped: bool,
}

const CURSOR_SUFFIX: &str = ".cursor";
const CURSOR_MAGIC: &str = "tradewal-cursor 1";

/// Checks a reader name (it becomes a file name).
pub fn check_reader_name(name: &str) -> Result<(), FollowError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FollowError::BadName(name.to_string()))
    }
}

fn cursor_path(readers: &Path, name: &str) -> PathBuf {
    readers.join(format!("{name}{CURSOR_SUFFIX}"))
}

fn parse_cursor(path: &Path, name: &str, text: &str) -> Result<ReaderCursor, FollowError> {
    let bad = |reason: &str| FollowError::BadCursor { path: path.to_path_buf(), reason: reason.to_string() };
    let mut lines = text.lines();
    if lines.next() != Some(CURSOR_MAGIC) {
        return Err(bad("not a tradewal cursor file"));
    }
    let committed = lines
        .next()
        .and_then(|l| l.strip_prefix("committed "))
        .and_then(|n| n.parse::<Lsn>().ok())
        .ok_or_else(|| bad("no committed LSN"))?;
    let dropped = match lines.next() {
        None => false,
        Some("dropped") => true,
        Some(_) => return Err(bad("unknown line")),
    };
    if lines.next().is_some() {
        return Err(bad("trailing lines"));
    }
    Ok(ReaderCursor { name: name.to_string(), committed, dropped })
}

/// Reads one named cursor (`Ok(None)` when there is none).
fn read_cursor(readers: &Path, name: &str) -> Result<Option<ReaderCursor>, FollowError> {
    let path = cursor_path(readers, name);
    match fs::read_to_string(&path) {
        Ok(t) => parse_cursor(&path, name, &t).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io(format!("reading {}", path.display()), e).into()),
    }
}

/// Writes a cursor atomically: a temporary file, fsync, rename over the cursor, fsync of `readers/`.
fn write_cursor(readers: &Path, c: &ReaderCursor) -> Result<(), WalError> {
    let io_err = |what: &str, e| WalError::io(format!("{what} in {}", readers.display()), e);
    fs::create_dir_all(readers).map_err(|e| io_err("creating the readers directory", e))?;
    let path = cursor_path(readers, &c.name);
    let tmp = readers.join(format!(".{}{CURSOR_SUFFIX}.tmp", c.name));
    let mut text = format!("{CURSOR_MAGIC}\ncommitted {}\n", c.committed);
    if c.dropped {
        text.push_str("dropped\n");
    }
    let mut f = fs::File::create(&tmp).map_err(|e| io_err("creating a cursor", e))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| io_err("writing a cursor", e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err("renaming a cursor", e))?;
    fs::File::open(readers).and_then(|d| d.sync_all()).map_err(|e| io_err("fsync", e))
}

/// The named readers of the log in `dir` (their cursor files), sorted by name.
pub fn list_readers(dir: &Path) -> Result<Vec<ReaderCursor>, FollowError> {
    read_readers(&dir.join(READERS_DIR))
}

/// The cursors in a `readers/` directory.
pub(crate) fn read_readers(readers: &Path) -> Result<Vec<ReaderCursor>, FollowError> {
    let readers = readers.to_path_buf();
    let mut out = Vec::new();
    let entries = match fs::read_dir(&readers) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(WalError::io(format!("listing {}", readers.display()), e).into()),
    };
    for e in entries {
        let e = e.map_err(|e| WalError::io(format!("listing {}", readers.display()), e))?;
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(CURSOR_SUFFIX) else { continue };
        if check_reader_name(name).is_err() {
            continue;
        }
        if let Some(c) = read_cursor(&readers, name)? {
            out.push(c);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the named reader's cursor (retention stops keeping segments for it). `Ok(false)` when
/// there was none.
pub fn drop_reader(dir: &Path, name: &str) -> Result<bool, FollowError> {
    check_reader_name(name)?;
    let readers = dir.join(READERS_DIR);
    let path = cursor_path(&readers, name);
    match fs::remove_file(&path) {
        Ok(()) => {
            fs::File::open(&readers).and_then(|d| d.sync_all()).map_err(|e| WalError::io(format!("fsync {}", readers.display()), e))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(WalError::io(format!("removing {}", path.display()), e).into()),
    }
}

/// Marks a named reader dropped (retention, past `max_reader_lag_bytes`): called by the writer's
/// maintenance thread.
pub(crate) fn mark_dropped(readers: &Path, name: &str) -> Result<(), WalError> {
    match read_cursor(readers, name) {
        Ok(Some(mut c)) if !c.dropped => {
            c.dropped = true;
            write_cursor(readers, &c)
        }
        _ => Ok(()),
    }
}

/// Where the follower is inside a segment: the start of a batch.
#[derive(Debug, Clone)]
struct SegPos {
    name: String,
    header: SegmentHeader,
    /// The header's format version.
    version: u32,
    /// Offset of the next batch to decode.
    offset: u64,
    batch_no: u64,
    /// First LSN of the batch at `offset`.
    lsn: Lsn,
    /// Bytes to read from `offset` (grows when a batch did not fit).
    chunk: usize,
}

const CHUNK_BYTES_MIN: usize = 1 << 20;
const POLL_MIN: Duration = Duration::from_micros(100);
const POLL_MAX: Duration = Duration::from_millis(5);

/// Follows a log directory (live or not) from an LSN: see the module docs and docs/jsonl.md for
/// the promise. Polling is cheap: while nothing new is acknowledged a poll is one load of the
/// shared watermark; reading resumes where the last one ended, and seeking to an LSN reads only
/// segment headers, newest first, down to the segment that holds it.
#[derive(Debug)]
pub struct Follower {
    storage: Arc<dyn Storage>,
    next: Lsn,
    seg: Option<SegPos>,
    buf: Vec<u8>,
    pending: VecDeque<Followed>,
    watermark: Option<Arc<dyn WatermarkCell>>,
    /// Watermark value and "no writer" state when the follower last found nothing new with no
    /// writer live: nothing changes until a writer runs again.
    idle_at: Option<u64>,
    /// The last fill reached what is acknowledged (see [`Follower::caught_up`]).
    caught_up: bool,
    name: Option<String>,
    readers: Option<PathBuf>,
    committed: Lsn,
}

impl Follower {
    /// Follows the log in `dir` from LSN `from` (the first record yielded has LSN `from`, or
    /// [`FollowError::Gap`] if retention removed it).
    pub fn open(dir: impl AsRef<Path>, from: Lsn) -> Result<Follower, FollowError> {
        Ok(Follower::open_storage(Arc::new(FsStorage::new(dir.as_ref())), from))
    }

    /// Like [`open`](Follower::open) on any [`Storage`] (a simulated disk in tests; `sim` feature).
    #[cfg(feature = "sim")]
    pub fn open_on(storage: Arc<dyn Storage>, from: Lsn) -> Follower {
        Follower::open_storage(storage, from)
    }

    /// Like [`open`](Follower::open) on any [`Storage`].
    pub(crate) fn open_storage(storage: Arc<dyn Storage>, from: Lsn) -> Follower {
        Follower {
            storage,
            next: from.max(1),
            seg: None,
            buf: Vec::new(),
            pending: VecDeque::new(),
            watermark: None,
            idle_at: None,
            caught_up: false,
            name: None,
            readers: None,
            committed: 0,
        }
    }

    /// A named follower: resumes after the LSN committed in `readers/NAME.cursor`, or starts at
    /// `from_if_new` (and creates the cursor, committed 0) when there is none. Retention keeps the
    /// segments it still needs (docs/design.md, "Named cursors").
    pub fn named(dir: impl AsRef<Path>, name: &str, from_if_new: Lsn) -> Result<Follower, FollowError> {
        check_reader_name(name)?;
        let dir = dir.as_ref();
        let readers = dir.join(READERS_DIR);
        let cursor = match read_cursor(&readers, name)? {
            Some(c) => c,
            None => {
                // Registered at once, so retention keeps `from_if_new` from now on.
                let c = ReaderCursor { name: name.to_string(), committed: from_if_new.max(1) - 1, dropped: false };
                write_cursor(&readers, &c)?;
                c
            }
        };
        let mut f = Follower::open_storage(Arc::new(FsStorage::new(dir)), cursor.committed + 1);
        f.name = Some(name.to_string());
        f.readers = Some(readers);
        f.committed = cursor.committed;
        Ok(f)
    }

    /// Follows the log in `dir` from a time: from the base LSN of the first segment that can hold
    /// intents with `ts_ns >= ts` by the time ranges the log records (docs/design.md, "Seek by
    /// time"; [`LogIndex::start_lsn_since`](crate::LogIndex::start_lsn_since)). A segment without a
    /// recorded range (the newest one, format-1 segments) counts as able to hold them.
    ///
    /// The start is a **lower bound**: every record from that LSN on is yielded, including intents
    /// with `ts_ns < ts` in that segment and later ones (timestamps need not rise with LSNs) and
    /// outcomes of any intent. A reader that wants only intents from `ts` on filters by `ts_ns`
    /// (what `tradewal export --follow --since` does). What is guaranteed is that no intent with
    /// `ts_ns >= ts` lies before the start.
    pub fn since_time(dir: impl AsRef<Path>, ts: i64) -> Result<Follower, FollowError> {
        let dir = dir.as_ref();
        let from = crate::seek::start_lsn_since(dir, ts)?;
        Follower::open(dir, from)
    }

    /// The LSN of the next record to be yielded.
    pub fn next_lsn(&self) -> Lsn {
        self.pending.front().map_or(self.next, |r| r.lsn)
    }

    /// Yields again from `from` (1 ≤ `from` ≤ [`next_lsn`](Follower::next_lsn)): for a consumer
    /// whose downstream lost records it had already taken (a stream that acknowledged messages it
    /// then lost in a crash). The committed LSN does not move back: a commit below it is still
    /// refused, so retention may already have removed records below the cursor
    /// ([`FollowError::Gap`] then). Errors with [`FollowError::BadRewind`] for 0 or a `from` past
    /// `next_lsn` (a follower never skips records).
    pub fn rewind(&mut self, from: Lsn) -> Result<(), FollowError> {
        if from == 0 || from > self.next_lsn() {
            return Err(FollowError::BadRewind { from, next: self.next_lsn() });
        }
        self.next = from;
        self.seg = None;
        self.pending.clear();
        self.idle_at = None;
        self.caught_up = false;
        Ok(())
    }

    /// The reader's name (a named follower).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The last LSN committed (named follower), 0 for none.
    pub fn committed(&self) -> Lsn {
        self.committed
    }

    /// The log's id (the `log_id` of its segment headers, [`Wal::log_id`](crate::Wal::log_id)),
    /// read from the newest segment with a valid header; `None` while the directory holds no
    /// segment yet.
    pub fn log_id(&mut self) -> Result<Option<u64>, FollowError> {
        if let Some(pos) = &self.seg {
            return Ok(Some(pos.header.log_id));
        }
        for (no, name) in self.segments()?.iter().rev() {
            if let Some(h) = self.header_of(name, *no) {
                return Ok(Some(h.0.log_id));
            }
        }
        Ok(None)
    }

    /// The live writer's durable watermark (the highest LSN it acknowledged), `None` when no
    /// writer has published one in this directory. A consumer's lag is this minus what it
    /// processed.
    pub fn acknowledged(&mut self) -> Option<Lsn> {
        if self.watermark.is_none() {
            self.watermark = self.storage.watermark(false).ok().flatten();
        }
        self.watermark.as_ref().map(|w| w.load()).filter(|&l| l > 0)
    }

    /// The next record, waiting as long as it takes.
    // Not `Iterator::next`: it blocks until the writer appends and never ends by itself.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Followed, FollowError> {
        loop {
            if let Some(r) = self.next_timeout(Duration::from_secs(3600))? {
                return Ok(r);
            }
        }
    }

    /// The next record, or `Ok(None)` if none was acknowledged within `timeout` (`Duration::ZERO`:
    /// one poll).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Followed>, FollowError> {
        let deadline = Instant::now() + timeout;
        let mut pause = POLL_MIN;
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(r));
            }
            self.fill()?;
            if !self.pending.is_empty() {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Records durably (named follower) that every record up to `lsn` was processed: a restart
    /// resumes after it, and retention may drop segments below it. `lsn` must have been yielded.
    /// The cursor file is replaced atomically (write, fsync, rename, fsync of `readers/`).
    pub fn commit(&mut self, lsn: Lsn) -> Result<(), FollowError> {
        let (Some(name), Some(readers)) = (&self.name, &self.readers) else {
            return Err(FollowError::BadCommit { lsn, reason: "the follower has no name".into() });
        };
        if lsn >= self.next_lsn() {
            return Err(FollowError::BadCommit { lsn, reason: format!("not yielded yet (next is {})", self.next_lsn()) });
        }
        if lsn < self.committed {
            return Err(FollowError::BadCommit { lsn, reason: format!("below the committed LSN {}", self.committed) });
        }
        // Keep a "dropped" mark retention set: the reader stays dropped until `readers --drop`.
        let dropped = read_cursor(readers, name)?.is_some_and(|c| c.dropped);
        write_cursor(readers, &ReaderCursor { name: name.clone(), committed: lsn, dropped })?;
        self.committed = lsn;
        Ok(())
    }

    fn io(&self, what: String, e: io::Error) -> FollowError {
        WalError::io(format!("{what} in {}", self.storage.path().display()), e).into()
    }

    /// The highest LSN the follower may yield now, and a guard that keeps writers out while it
    /// reads (when none is live).
    fn limit(&mut self) -> Result<(Lsn, Option<Box<dyn crate::io::LockGuard>>), FollowError> {
        if self.watermark.is_none() {
            self.watermark = self.storage.watermark(false).map_err(|e| self.io("mapping the watermark".into(), e))?;
        }
        match self.storage.lock_shared() {
            Ok(Some(g)) => Ok((Lsn::MAX, Some(g))),
            Ok(None) => Ok((self.watermark.as_ref().map_or(0, |w| w.load()), None)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((0, None)),
            Err(e) => Err(self.io("taking a reader's lock".into(), e)),
        }
    }

    /// Reads what can be yielded now into `pending`.
    fn fill(&mut self) -> Result<(), FollowError> {
        self.caught_up = false;
        let (limit, guard) = self.limit()?;
        if self.next > limit {
            self.caught_up = true;
            return Ok(());
        }
        let wm = self.watermark.as_ref().map_or(0, |w| w.load());
        if guard.is_some() && self.idle_at == Some(wm) {
            self.caught_up = true;
            return Ok(()); // no writer ran since the last look found the end
        }
        self.idle_at = None;
        // Each round yields (and returns), moves the position forward (records below `next`
        // skipped), moves to the next segment, or doubles the read: bounded, and it ends at the
        // end of the data only once a read covered the rest of the segment. (It used to stop
        // after one read: a follower of a closed log positioned past the first MiB of a segment
        // then took that for the end and never read further.)
        for _ in 0..64 {
            if self.seg.is_none() && !self.locate()? {
                self.caught_up = true;
                break;
            }
            let before = self.seg.clone().expect("positioned");
            if self.read_segment(limit)? {
                return Ok(());
            }
            if self.seg.as_ref().is_some_and(|p| p.offset != before.offset) {
                continue;
            }
            if self.advance_segment()? {
                continue;
            }
            if self.seg.is_some() && before.offset as usize + before.chunk < before.header.segment_bytes as usize {
                continue; // the read did not reach the segment's end: read more (the chunk doubled)
            }
            self.caught_up = true;
            break;
        }
        if guard.is_some() && self.caught_up {
            self.idle_at = Some(wm);
        }
        Ok(())
    }

    /// True when the last poll found nothing more to yield: everything acknowledged at that
    /// moment was yielded (with a live writer: up to its watermark; with none: to the end of the
    /// valid data). False while the follower is still reading towards it.
    pub fn caught_up(&self) -> bool {
        self.caught_up && self.pending.is_empty()
    }

    /// The valid header of segment `no` (file `name`) and its format version, if any.
    fn header_of(&mut self, name: &str, no: u64) -> Option<(SegmentHeader, u32)> {
        let mut block = vec![0u8; BLOCK_BYTES];
        let n = self.storage.read_range(name, 0, &mut block).ok()?;
        let d = SegmentDecoder::new(&block[..n], Some(no));
        d.header().copied().filter(|h| h.segment_no == no).map(|h| (h, d.version()))
    }

    fn segments(&self) -> Result<Vec<(u64, String)>, FollowError> {
        let names = self.storage.list().map_err(|e| self.io("listing".into(), e))?;
        let mut v: Vec<(u64, String)> = names.into_iter().filter_map(|n| SegmentName::parse(&n).map(|s| (s.segment_no, n))).collect();
        v.sort();
        Ok(v)
    }

    /// Finds the segment holding `next` (the highest one whose first LSN is at most `next`).
    /// `Ok(false)`: nothing to read yet; `Gap` when every segment starts after `next`.
    fn locate(&mut self) -> Result<bool, FollowError> {
        let segs = self.segments()?;
        let mut oldest = None;
        for (no, name) in segs.iter().rev() {
            let Some((h, version)) = self.header_of(name, *no) else { continue };
            if h.base_lsn <= self.next {
                self.seg = Some(SegPos {
                    name: name.clone(),
                    header: h,
                    version,
                    offset: BLOCK_BYTES as u64,
                    batch_no: 0,
                    lsn: h.base_lsn,
                    chunk: CHUNK_BYTES_MIN,
                });
                return Ok(true);
            }
            oldest = Some(h.base_lsn);
        }
        match oldest {
            Some(o) => Err(FollowError::Gap { wanted: self.next, oldest_available: o }),
            None => Ok(false),
        }
    }

    /// After the current segment yielded nothing: moves to the next segment when it starts at
    /// `next`. `Ok(false)`: stay (the writer has not written more yet).
    fn advance_segment(&mut self) -> Result<bool, FollowError> {
        let Some(cur) = self.seg.clone() else { return Ok(true) };
        for (no, name) in self.segments()? {
            if no <= cur.header.segment_no {
                continue;
            }
            if let Some((h, version)) = self.header_of(&name, no) {
                if h.base_lsn == self.next {
                    self.seg = Some(SegPos {
                        name,
                        header: h,
                        version,
                        offset: BLOCK_BYTES as u64,
                        batch_no: 0,
                        lsn: h.base_lsn,
                        chunk: CHUNK_BYTES_MIN,
                    });
                    return Ok(true);
                }
                if h.base_lsn > self.next {
                    break;
                }
            }
        }
        Ok(false)
    }

    /// Decodes the current segment from its position, yielding records in `next..=limit`.
    /// `Ok(true)` when it yielded any.
    fn read_segment(&mut self, limit: Lsn) -> Result<bool, FollowError> {
        let mut pos = self.seg.clone().expect("positioned");
        let seg_len = pos.header.segment_bytes as usize;
        if self.buf.len() < seg_len {
            self.buf.resize(seg_len, 0);
        }
        let off = pos.offset as usize;
        let want = pos.chunk.min(seg_len - off.min(seg_len));
        let n = match self.storage.read_range(&pos.name, pos.offset, &mut self.buf[off..off + want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Retention removed or moved it while we read: find where `next` is now.
                self.seg = None;
                return Ok(false);
            }
            Err(e) => return Err(self.io(format!("reading {}", pos.name), e)),
        };
        let mut d = SegmentDecoder::resume(&self.buf[..off + n], pos.header, pos.version, pos.offset, pos.batch_no, pos.lsn);
        let mut got = false;
        while let Some((frame, record)) = d.next_record() {
            if frame.lsn < self.next {
                continue;
            }
            if frame.lsn > limit {
                break;
            }
            assert_eq!(frame.lsn, self.next, "follower yields LSNs in order");
            self.pending.push_back(Followed { lsn: frame.lsn, kind: frame.kind, body: frame.body.to_vec(), record });
            self.next += 1;
            got = true;
            if frame.lsn == limit {
                break;
            }
        }
        let (offset, batch_no, lsn) = d.position();
        // A re-read of the same place that yields nothing needs a longer read (a batch larger than
        // the chunk); a read that yielded starts small again.
        let chunk = if got { CHUNK_BYTES_MIN } else { (pos.chunk * 2).min(seg_len) };
        pos = SegPos { offset, batch_no, lsn, chunk, ..pos };
        self.seg = Some(pos);
        Ok(got)
    }
}

//! Configuration of a [`Wal`](crate::Wal), validated at open.

use crate::io::Durability;
use crate::WalError;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tradewal_codec::format::{align_up, BATCH_HEADER_BYTES, BLOCK_BYTES, CHECKPOINT_ENTRIES_PER_RECORD, FRAME_HEADER_BYTES, K_MAX};
use tradewal_codec::record::IN_DOUBT_ENTRY_MAX_BYTES;

/// What happens to segments once a newer checkpoint covers them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Retention {
    /// Keep every segment (an audit trail). The default.
    #[default]
    KeepAll,
    /// Delete segments older than the newest durable checkpoint (the first batch of the current
    /// segment): the checkpoint carries every intent still in doubt.
    Delete,
    /// Move such segments into this directory (created 0700 if missing).
    ArchiveTo(PathBuf),
}

/// Settings of a log. Build with [`WalConfig::new`] and the setters; checked by
/// [`Wal::open`](crate::Wal::open), which returns [`WalError::Config`] for anything out of range.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub(crate) dir: PathBuf,
    pub(crate) segment_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) in_flight_batches: u32,
    pub(crate) max_batch_bytes: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) max_in_doubt: usize,
    pub(crate) writer_cpu: Option<usize>,
    pub(crate) pin_writer: bool,
    pub(crate) retention: Retention,
    pub(crate) allow_buffered_io: bool,
    pub(crate) disable_io_uring: bool,
    pub(crate) writer_spin: Duration,
    pub(crate) parallel_batch_min_records: usize,
    pub(crate) misaligned_write_at_batch: Option<u64>,
    pub(crate) manifest_interval: Duration,
    pub(crate) trust_storage: bool,
    pub(crate) lock_timeout: Duration,
    pub(crate) max_reader_lag_bytes: u64,
}

/// Smallest segment size the engine accepts.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
/// Largest segment size the engine accepts (16 GiB); recovery refuses larger files.
pub const SEGMENT_BYTES_MAX: u64 = 16 << 30;
/// Default segment size (64 MiB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest batch size the engine accepts (a checkpoint record must fit one batch).
pub const MAX_BATCH_BYTES_MIN: usize = 32 << 10;
/// Largest batch size the engine accepts.
pub const MAX_BATCH_BYTES_MAX: usize = 64 << 20;
/// Default of [`WalConfig::lock_timeout`] (5 s).
pub const LOCK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default of [`WalConfig::max_reader_lag_bytes`] (4 GiB).
pub const MAX_READER_LAG_BYTES_DEFAULT: u64 = 4 << 30;

impl WalConfig {
    /// Defaults for a log in `dir`: 64 MiB segments, [`Durability::Dsync`] (the faster mode on the
    /// machine we measured, see docs/durability.md), K = 2 batches in flight, 1 MiB batches, a
    /// queue of 65 536 appends, up to 65 536 intents in doubt, the writer pinned to the last CPU,
    /// [`Retention::KeepAll`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            durability: Durability::Dsync,
            in_flight_batches: 2,
            max_batch_bytes: 1 << 20,
            queue_capacity: 1 << 16,
            max_in_doubt: 1 << 16,
            writer_cpu: None,
            pin_writer: true,
            retention: Retention::KeepAll,
            allow_buffered_io: false,
            disable_io_uring: false,
            writer_spin: Duration::from_micros(200),
            parallel_batch_min_records: 256,
            misaligned_write_at_batch: None,
            manifest_interval: Duration::from_secs(1),
            trust_storage: false,
            lock_timeout: LOCK_TIMEOUT_DEFAULT,
            max_reader_lag_bytes: MAX_READER_LAG_BYTES_DEFAULT,
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segment file size: a multiple of 4096, at least [`min_segment_bytes`](WalConfig::min_segment_bytes)
    /// for the other settings (13 MiB with the defaults; 1 MiB is the format's floor), at most 16 GiB.
    /// Default 64 MiB. Rotation happens when the next batch does not fit.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// How batch writes are made durable.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// K: batches in flight at once (1..=64). Also bounds what recovery may call a torn tail.
    pub fn in_flight_batches(mut self, k: u32) -> Self {
        self.in_flight_batches = k;
        self
    }

    /// Largest batch in bytes (a multiple of 4096, 32 KiB..=64 MiB).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// Appends that may be outstanding (queued or unresolved tickets) at once; `append` waits and
    /// `try_append` fails with [`WalError::Full`] beyond it.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Most intents that may be in doubt (appended, no outcome) at once; beyond it `append`
    /// fails with [`WalError::InDoubtLimit`]. Every segment starts with a checkpoint of them.
    pub fn max_in_doubt(mut self, n: usize) -> Self {
        self.max_in_doubt = n;
        self
    }

    /// CPU to pin the writer thread to (default: the last CPU). If pinning fails, a warning is
    /// logged and the writer runs unpinned.
    pub fn writer_cpu(mut self, cpu: usize) -> Self {
        self.writer_cpu = Some(cpu);
        self.pin_writer = true;
        self
    }

    /// Do not pin the writer thread.
    pub fn unpinned_writer(mut self) -> Self {
        self.pin_writer = false;
        self
    }

    /// Retention policy for old segments.
    pub fn retention(mut self, r: Retention) -> Self {
        self.retention = r;
        self
    }

    /// Allow buffered writes + fdatasync where O_DIRECT is unsupported (tmpfs). Off by default:
    /// then such a directory is refused with [`WalError::Config`].
    pub fn allow_buffered_io(mut self, allow: bool) -> Self {
        self.allow_buffered_io = allow;
        self
    }

    /// Use the io_uring write path on any storage stack, without consulting the table of stacks on
    /// which it was verified (see [`StorageStack::probe`](crate::StorageStack::probe) and docs/durability.md). Off by
    /// default: then FUSE and unverified file systems get the synchronous `pwritev2`/`fdatasync`
    /// path, which forwards every flush, and NFS is refused. Turn it on only for a stack you have
    /// verified yourself (a power-cut test, not a kill -9 test): on FUSE it loses acknowledged
    /// records.
    pub fn trust_storage(mut self, trust: bool) -> Self {
        self.trust_storage = trust;
        self
    }

    /// Do not use io_uring; use the `pwritev2(RWF_DSYNC)` fallback (for testing it).
    pub fn disable_io_uring(mut self, disable: bool) -> Self {
        self.disable_io_uring = disable;
        self
    }

    /// How long the writer spins for new work or completions before blocking (default 200 µs:
    /// longer than a typical durable write, because waking a blocked thread on an idle virtual CPU
    /// costs tens of microseconds).
    pub fn writer_spin(mut self, d: Duration) -> Self {
        self.writer_spin = d;
        self
    }

    /// While a batch is in flight, start another only when at least this many appends/outcomes
    /// are queued (default 256, about 20 KiB). Fewer wait for the in-flight batch and join the
    /// next one: on a device where each durable write costs a cache flush, a tiny second batch only
    /// adds a flush, while a large one overlaps its transfer with the flush. 1 starts a new batch
    /// whenever anything is queued and fewer than K are in flight.
    pub fn parallel_batch_min_records(mut self, n: usize) -> Self {
        self.parallel_batch_min_records = n.max(1);
        self
    }

    /// How long [`Wal::open`](crate::Wal::open) waits while another writer holds the directory
    /// (default 5 s) before it returns [`WalError::Locked`] with the holder's pid. A writer that
    /// was just killed keeps the lock until the kernel has completed its last in-flight write
    /// (docs/design.md), so a supervisor restarting it at once waits here instead of failing.
    /// The wait sleeps (no spinning) and logs once. `Duration::ZERO` fails at once.
    pub fn lock_timeout(mut self, d: Duration) -> Self {
        self.lock_timeout = d;
        self
    }

    /// How many bytes of segments retention keeps for one named reader
    /// ([`Follower::named`](crate::Follower::named)) beyond what it would keep anyway (default
    /// 4 GiB). A reader lagging further is dropped with a warning (its cursor is marked dropped,
    /// retention deletes or archives as usual) and gets [`FollowError::Gap`](crate::FollowError::Gap)
    /// once its next LSN is gone.
    pub fn max_reader_lag_bytes(mut self, bytes: u64) -> Self {
        self.max_reader_lag_bytes = bytes;
        self
    }

    /// Fault injection for tests of the fail-stop path: the writer issues the write of this
    /// batch (counted from 0 in this session) at a misaligned offset, which O_DIRECT rejects
    /// with EINVAL (and a linked fdatasync completes with -ECANCELED). Never set it in production.
    #[doc(hidden)]
    pub fn inject_misaligned_write(mut self, batch_in_session: u64) -> Self {
        self.misaligned_write_at_batch = Some(batch_in_session);
        self
    }

    /// Longest time between two updates of the manifest's acknowledged LSN while appends are
    /// acknowledged (default 1 s; 1 ms ..= 60 s). The manifest is written by the maintenance
    /// thread, never on the append path; records acknowledged after its last update are what
    /// recovery cannot cross-check (docs/durability.md, "Manifest").
    pub fn manifest_interval(mut self, d: Duration) -> Self {
        self.manifest_interval = d;
        self
    }

    /// The smallest [`segment_bytes`](WalConfig::segment_bytes) these settings accept: the
    /// header block, a checkpoint of `max_in_doubt` entries and one batch of `max_batch_bytes`
    /// must fit in every segment. With the defaults (`max_in_doubt` 65 536, `max_batch_bytes`
    /// 1 MiB) that is 13 MiB (13 635 584 bytes: a checkpoint entry is up to 184 bytes with order ids); 1 MiB segments need, for example, `max_batch_bytes(64 << 10)` and
    /// `max_in_doubt(1024)`. A smaller `segment_bytes` is refused with this figure in the error.
    pub fn min_segment_bytes(&self) -> u64 {
        let need = BLOCK_BYTES as u64 + self.checkpoint_bytes_max() + self.max_batch_bytes as u64;
        (align_up(need as usize) as u64).max(SEGMENT_BYTES_MIN)
    }

    /// Bytes the largest checkpoint (max_in_doubt entries) can take, batches rounded up.
    pub(crate) fn checkpoint_bytes_max(&self) -> u64 {
        let record =
            FRAME_HEADER_BYTES + tradewal_codec::body::CHECKPOINT_FIXED_BYTES + CHECKPOINT_ENTRIES_PER_RECORD * IN_DOUBT_ENTRY_MAX_BYTES;
        let records = self.max_in_doubt.div_ceil(CHECKPOINT_ENTRIES_PER_RECORD).max(1);
        let per_batch = ((self.max_batch_bytes - BATCH_HEADER_BYTES) / record).max(1);
        (records.div_ceil(per_batch) * self.max_batch_bytes) as u64
    }

    /// Checks every setting; nothing is touched on disk before this passes.
    pub(crate) fn validate(&self) -> Result<(), WalError> {
        let bad = |m: String| Err(WalError::Config(m));
        if self.segment_bytes % BLOCK_BYTES as u64 != 0 || self.segment_bytes < SEGMENT_BYTES_MIN {
            return bad(format!("segment_bytes {} must be a multiple of 4096 and at least 1 MiB", self.segment_bytes));
        }
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return bad(format!("segment_bytes {} is over 16 GiB", self.segment_bytes));
        }
        if self.in_flight_batches == 0 || self.in_flight_batches > K_MAX {
            return bad(format!("in_flight_batches {} must be 1..={K_MAX}", self.in_flight_batches));
        }
        if self.max_batch_bytes % BLOCK_BYTES != 0 || !(MAX_BATCH_BYTES_MIN..=MAX_BATCH_BYTES_MAX).contains(&self.max_batch_bytes) {
            return bad(format!(
                "max_batch_bytes {} must be a multiple of 4096 in {MAX_BATCH_BYTES_MIN}..={MAX_BATCH_BYTES_MAX}",
                self.max_batch_bytes
            ));
        }
        if self.queue_capacity == 0 || self.queue_capacity > u32::MAX as usize / 2 {
            return bad(format!("queue_capacity {} must be 1..=2^31", self.queue_capacity));
        }
        if self.max_in_doubt == 0 || self.max_in_doubt > 1 << 28 {
            return bad(format!("max_in_doubt {} must be 1..=2^28", self.max_in_doubt));
        }
        let need = BLOCK_BYTES as u64 + self.checkpoint_bytes_max() + self.max_batch_bytes as u64;
        if self.segment_bytes < need {
            return bad(format!(
                "segment_bytes {} cannot hold a full checkpoint of max_in_doubt {} plus one batch of max_batch_bytes {}: \
                 the smallest segment for these settings is {} (WalConfig::min_segment_bytes); raise segment_bytes or lower \
                 max_in_doubt / max_batch_bytes",
                self.segment_bytes,
                self.max_in_doubt,
                self.max_batch_bytes,
                self.min_segment_bytes()
            ));
        }
        if let Retention::ArchiveTo(a) = &self.retention {
            if a.as_os_str().is_empty() || a == &self.dir {
                return bad("archive directory must differ from the log directory".into());
            }
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.manifest_interval) {
            return bad(format!("manifest_interval {:?} must be 1 ms..=60 s", self.manifest_interval));
        }
        if self.dir.as_os_str().is_empty() {
            return bad("empty directory path".into());
        }
        Ok(())
    }
}

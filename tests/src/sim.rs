//! A deterministic simulated disk implementing the engine's I/O seam ([`Storage`], [`BatchIo`]).
//!
//! # Model
//! A [`SimDisk`] is one log directory held in memory, plus an "archive" of files moved out of it.
//! Files are inodes; the directory maps names to inodes twice:
//! - the **live** listing, what the running process sees (`list`, `read_file`, ...);
//! - the **durable** listing, what survives a power cut. `sync_dir` copies live to durable.
//!   Until then a created or renamed file may vanish and a removed file may come back, per name
//!   (like RocksDB's `FaultInjectionTestFS`). The engine only renames inside `create_zeroed`,
//!   which syncs the directory, so per-name independence never splits a rename in half in practice.
//!
//! Each inode has a **durable image** and a list of **volatile writes** (offset, bytes) laid over
//! it for reads by the live process (read-your-writes, as an `O_DIRECT` read after a buffered write
//! sees it on Linux). `sync_file` makes the volatile writes durable.
//!
//! Batch writes ([`BatchIo`]) are **in flight** from `submit` until their completion is delivered by
//! `reap`, in an order drawn from the seed (several in flight may complete out of order, as on
//! io_uring). A write becomes durable at the moment its completion is delivered with `Ok`: in
//! [`Durability::Dsync`] mode that write alone; in [`Durability::LinkedFdatasync`] mode the write and
//! then a flush of the whole file (as `fdatasync` does: earlier volatile writes become durable too).
//!
//! # Power cut
//! [`SimDisk::crash`] / [`SimDisk::crash_with`] turn the disk into its post-crash state: every write
//! that is not durable (in flight, or volatile) is, per a seeded [`CrashPolicy`], fully persisted,
//! lost, or torn at [`SECTOR_BYTES`] granularity (any subset of its sectors, aligned to absolute
//! file offsets, persisted; optionally some replaced with garbage), applied in submission order.
//! Unsynced directory changes may be undone. Every handle from before the cut ([`Storage`],
//! [`BatchIo`], lock guards) then fails with an error, and a fresh [`SimDisk::storage`] sees only
//! the durable state. [`SimDisk::for_each_crash_state`] enumerates every post-crash state of a small
//! case instead (see [`Enumeration`] for the bound).
//!
//! A process crash without power loss ([`SimDisk::kill_process`], or dropping a [`BatchIo`] with
//! writes in flight) keeps volatile writes in the "page cache"; in-flight writes each land
//! (volatile), are lost, or land torn.
//!
//! # Faults
//! [`SimDisk::inject`] arms a one-shot [`Fault`] on the Nth operation of a kind (EIO/ENOSPC on a
//! write or flush, a short write, a misdirected write, ENOSPC on `create_zeroed`, a failing
//! `read_file`, a failing `sync_dir`); [`SimDisk::rot`] flips a bit of a durable image;
//! [`SimDisk::power_cut_at_op`] cuts power deterministically when the Nth operation starts.
//!
//! Everything is a function of the seed and the sequence of calls: the same calls on
//! `SimDisk::new(seed)` give the same images. `Debug` prints the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tradewal::io::{BatchIo, Completion, Durability, FileSlot, IoConfig, IoFault, LockGuard, Storage};
use tradewal_codec::BLOCK_BYTES;

/// Granularity at which the simulated disk tears a write.
pub const SECTOR_BYTES: usize = 512;
/// O_DIRECT alignment the simulated batch backend enforces (offset and length).
pub const DIRECT_ALIGN_BYTES: u64 = 4096;

const EINVAL: i32 = libc::EINVAL;

// ---------------------------------------------------------------------------------------------
// PRNG

pub use tradewal_testkit::rng::{splitmix64, Rng};

// ---------------------------------------------------------------------------------------------
// Public descriptions

/// A one-shot fault armed with [`SimDisk::inject`]. `nth` counts from 1 among operations of that
/// kind since the disk was made (see [`SimStats`] for the counters; `stats().writes + 1` is the
/// next write). Each fault fires once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The Nth batch write completes with `Errno { op: "write", errno }` (e.g. EIO, ENOSPC); a
    /// seeded subset of its sectors lands (volatile, never durable by itself).
    WriteError {
        /// Which batch write (counter `writes`).
        nth: u64,
        /// Positive errno.
        errno: i32,
    },
    /// The Nth flush fails: a batch write's flush (Dsync: the write reports `op: "write"`;
    /// linked: `op: "fdatasync"`) or a `sync_file` call (returns the errno). For a batch write
    /// (O_DIRECT, no page cache) the bytes sit in the device's volatile cache: not durable, seen
    /// by reads, made durable by a later flush or decided by a power cut. For `sync_file` the
    /// file's buffered writes stay in the page cache marked clean (fsyncgate): a later sync does
    /// not make them durable and O_DIRECT reads do not see them; a power cut may still persist,
    /// lose or tear them.
    FlushError {
        /// Which flush (counter `flushes`).
        nth: u64,
        /// Positive errno.
        errno: i32,
    },
    /// The Nth batch write transfers only `written` bytes (`IoFault::Short`; linked mode: the
    /// flush is cancelled). Those bytes land volatile.
    ShortWrite {
        /// Which batch write.
        nth: u64,
        /// Bytes reported written (less than the length asked).
        written: usize,
    },
    /// The Nth batch write lands somewhere else and reports success; the intended place keeps
    /// its old bytes.
    Misdirect {
        /// Which batch write.
        nth: u64,
        /// Where it lands.
        to: MisdirectTo,
    },
    /// The Nth `create_zeroed` fails with `errno` (e.g. ENOSPC) and creates nothing.
    CreateError {
        /// Which create (counter `creates`).
        nth: u64,
        /// Positive errno.
        errno: i32,
    },
    /// The Nth `read_file` fails with `errno`.
    ReadError {
        /// Which read (counter `reads`).
        nth: u64,
        /// Positive errno.
        errno: i32,
    },
    /// The Nth `sync_dir` fails with `errno` and syncs nothing.
    SyncDirError {
        /// Which directory sync (counter `dir_syncs`).
        nth: u64,
        /// Positive errno.
        errno: i32,
    },
}

/// Where a misdirected write lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MisdirectTo {
    /// Another offset of the same file.
    Offset(u64),
    /// Another file (live name at delivery; lost when missing), at an offset.
    File {
        /// File name.
        name: String,
        /// Offset.
        offset: u64,
    },
}

/// How a torn write chooses its surviving sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TearShape {
    /// Any subset of sectors (no ordering promised by the device).
    AnySubset,
    /// A prefix of sectors (an in-order device).
    Prefix,
}

/// How [`SimDisk::crash_with`] treats each non-durable write and directory change. Probabilities
/// are per mille; a write is persisted with `persist_per_mille`, lost with `lose_per_mille`, torn
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashPolicy {
    /// Chance a pending write reaches the disk whole.
    pub persist_per_mille: u32,
    /// Chance a pending write is lost whole.
    pub lose_per_mille: u32,
    /// For a torn write, chance that each sector not persisted becomes garbage instead of old bytes.
    pub garbage_per_mille: u32,
    /// Which sectors of a torn write survive.
    pub tear: TearShape,
    /// Chance an unsynced directory change (per name) is undone.
    pub undo_dir_per_mille: u32,
}

impl Default for CrashPolicy {
    /// A third each of persisted, lost and torn; 10% garbage in torn sectors; half of unsynced
    /// directory changes undone.
    fn default() -> Self {
        CrashPolicy {
            persist_per_mille: 333,
            lose_per_mille: 333,
            garbage_per_mille: 100,
            tear: TearShape::AnySubset,
            undo_dir_per_mille: 500,
        }
    }
}

impl CrashPolicy {
    /// Every pending write lost, every unsynced directory change undone.
    pub fn lose_all() -> Self {
        CrashPolicy {
            persist_per_mille: 0,
            lose_per_mille: 1000,
            garbage_per_mille: 0,
            tear: TearShape::AnySubset,
            undo_dir_per_mille: 1000,
        }
    }
    /// Every pending write persisted, every unsynced directory change kept.
    pub fn persist_all() -> Self {
        CrashPolicy { persist_per_mille: 1000, lose_per_mille: 0, garbage_per_mille: 0, tear: TearShape::AnySubset, undo_dir_per_mille: 0 }
    }
    /// Every pending write torn (any sector subset, no garbage); directory changes kept.
    pub fn tear_all() -> Self {
        CrashPolicy { persist_per_mille: 0, lose_per_mille: 0, garbage_per_mille: 0, tear: TearShape::AnySubset, undo_dir_per_mille: 0 }
    }
}

/// What happened to one sector of a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectorFate {
    /// The old bytes stayed.
    Old,
    /// The new bytes landed.
    New,
    /// Garbage landed.
    Garbage,
}

/// What a power cut did to one pending write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Reached the disk whole.
    Persisted,
    /// Lost whole.
    Lost,
    /// Torn: one entry per sector piece of the write (pieces split at absolute multiples of
    /// [`SECTOR_BYTES`]; the first and last may be partial for an unaligned write).
    Torn(Vec<SectorFate>),
}

/// One write that was not durable at a power cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite {
    /// File name when the write was made.
    pub file: String,
    /// Offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: usize,
    /// True for a batch write in flight (not yet delivered), false for a volatile write.
    pub in_flight: bool,
}

impl PendingWrite {
    /// Number of sector pieces a tear splits it into.
    pub fn sectors(&self) -> usize {
        sector_pieces(self.offset, self.len).len()
    }
}

/// The fate of one pending write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFate {
    /// The write.
    pub write: PendingWrite,
    /// What happened.
    pub fate: Fate,
}

/// The fate of one unsynced directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFate {
    /// File name.
    pub name: String,
    /// True when the live (unsynced) state survived; false when it was undone.
    pub kept: bool,
}

/// What a power cut did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrashReport {
    /// Seed of the random policy (0 for an enumerated state).
    pub seed: u64,
    /// Pending writes in submission order, with their fates.
    pub writes: Vec<WriteFate>,
    /// Unsynced directory entries (by name order), with their fates.
    pub dir: Vec<DirFate>,
}

/// Which post-crash states [`SimDisk::for_each_crash_state`] enumerates. With `n` pending writes
/// of `s_i` sector pieces each and `d` unsynced directory entries (when `dir`), the count is:
/// - [`EnumTear::None`]: `2^n` (every subset of whole writes persisted);
/// - [`EnumTear::SingleTorn`]: `2^n + sum_i (2^s_i - 2) * 2^(n-1)` (every subset, plus every
///   proper tear of one write with every subset of the others): 3 056 for three 4 KiB writes;
/// - [`EnumTear::Prefix`]: `prod_i (s_i + 1)`;
/// - [`EnumTear::AllSubsets`]: `prod_i 2^s_i` (every sector of every write independently);
///
/// times `2^d`. More than `max_states` is refused with [`EnumerationTooLarge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enumeration {
    /// How writes tear.
    pub tear: EnumTear,
    /// Also enumerate keeping/undoing each unsynced directory entry.
    pub dir: bool,
    /// Refuse above this many states.
    pub max_states: u64,
}

impl Default for Enumeration {
    /// `SingleTorn`, directory included, at most 100 000 states.
    fn default() -> Self {
        Enumeration { tear: EnumTear::SingleTorn, dir: true, max_states: 100_000 }
    }
}

/// Tear shapes of an [`Enumeration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumTear {
    /// Whole writes only.
    None,
    /// At most one write torn (any proper sector subset), the others whole or lost.
    SingleTorn,
    /// Each write: any prefix of its sectors.
    Prefix,
    /// Each write: any subset of its sectors.
    AllSubsets,
}

/// An enumeration was refused: it has more states than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumerationTooLarge {
    /// Number of states (saturated at `u64::MAX`).
    pub states: u64,
    /// The limit.
    pub max_states: u64,
}

impl fmt::Display for EnumerationTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} crash states, more than the limit {}", self.states, self.max_states)
    }
}

impl std::error::Error for EnumerationTooLarge {}

/// One enumerated post-crash state.
#[derive(Debug, Clone)]
pub struct CrashState {
    /// An independent disk in that state.
    pub disk: SimDisk,
    /// How it was reached.
    pub report: CrashReport,
}

/// Operation counters (what [`Fault`] `nth` values count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimStats {
    /// Every operation (each `Storage` call, each batch submit, each delivered completion):
    /// what [`SimDisk::power_cut_at_op`] counts.
    pub ops: u64,
    /// Batch writes submitted.
    pub writes: u64,
    /// Flushes: one per batch write, one per `sync_file`.
    pub flushes: u64,
    /// `create_zeroed` calls.
    pub creates: u64,
    /// `recycle` calls that started (each is four operations: the O_DIRECT zero write over block
    /// 0, its fdatasync, the rename, the directory fsync; a power cut can fall between any two).
    pub recycles: u64,
    /// `read_file` calls.
    pub reads: u64,
    /// `sync_dir` calls.
    pub dir_syncs: u64,
    /// Batch submits plus delivered completions: what [`SimDisk::power_cut_at_io_event`] counts
    /// (the writer thread's durability events only, so other threads' timing does not move it).
    pub io_events: u64,
    /// Completions delivered with `Ok`.
    pub completed_ok: u64,
    /// Most batch writes in flight at once.
    pub in_flight_max: u64,
    /// Power cuts so far.
    pub power_cuts: u64,
}

// ---------------------------------------------------------------------------------------------
// Internal state

type InodeId = u64;

#[derive(Debug, Clone)]
struct Volatile {
    seq: u64,
    offset: u64,
    data: Vec<u8>,
    /// A failed flush covered it: visible to reads, never made durable by a sync.
    doomed: bool,
    /// Bytes of an O_DIRECT batch write: they sit in the device's cache, not in the page cache,
    /// so a failed `sync_file` (fsyncgate: page-cache pages marked clean) does not doom them; a
    /// later flush still makes them durable and O_DIRECT reads still see them.
    device: bool,
    file: String,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    durable: Arc<Vec<u8>>,
    volatile: Vec<Volatile>,
}

impl Inode {
    fn live_len(&self) -> u64 {
        self.volatile.iter().map(|v| v.offset + v.data.len() as u64).fold(self.durable.len() as u64, u64::max)
    }

    /// The page-cache view: durable image plus every volatile write.
    fn view(&self) -> Vec<u8> {
        let mut out = self.durable.as_ref().clone();
        for v in &self.volatile {
            write_into(&mut out, v.offset, &v.data);
        }
        out
    }

    /// What an O_DIRECT read returns: dirty pages are written back first, but pages a failed
    /// flush marked clean (doomed) are not, so the device's bytes show there.
    fn direct_view(&self) -> Vec<u8> {
        let mut out = self.durable.as_ref().clone();
        for v in self.volatile.iter().filter(|v| !v.doomed) {
            write_into(&mut out, v.offset, &v.data);
        }
        out
    }

    /// Makes every non-doomed volatile write durable, in order.
    fn sync(&mut self) {
        if self.volatile.iter().all(|v| v.doomed) {
            return;
        }
        let img = Arc::make_mut(&mut self.durable);
        self.volatile.retain(|v| {
            if v.doomed {
                true
            } else {
                write_into(img, v.offset, &v.data);
                false
            }
        });
    }

    fn write_durable(&mut self, offset: u64, data: &[u8]) {
        write_into(Arc::make_mut(&mut self.durable), offset, data);
    }
}

fn write_into(img: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if img.len() < end {
        img.resize(end, 0);
    }
    img[offset as usize..end].copy_from_slice(data);
}

/// Sector pieces of `[offset, offset+len)`: (offset within the write, length).
fn sector_pieces(offset: u64, len: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < len {
        let abs = offset as usize + at;
        let to_boundary = SECTOR_BYTES - abs % SECTOR_BYTES;
        let n = to_boundary.min(len - at);
        out.push((at, n));
        at += n;
    }
    out
}

/// What an in-flight write does when delivered.
#[derive(Debug, Clone)]
enum Plan {
    Ok,
    /// Misaligned: fails with EINVAL, nothing lands.
    Einval,
    /// Fails with `fault`; `land` bytes of data (by sector piece mask) land volatile, doomed when
    /// the flush failed.
    Fail {
        fault: IoFault,
        land: Vec<bool>,
        doomed: bool,
    },
    /// Short: the first `written` bytes land volatile.
    Short {
        written: usize,
    },
    /// Lands durably elsewhere, reports Ok.
    Misdirect(MisdirectTo),
}

#[derive(Debug, Clone)]
struct InFlight {
    io_id: u64,
    seq: u64,
    tag: u64,
    buf: usize,
    inode: InodeId,
    file: String,
    offset: u64,
    data: Vec<u8>,
    durability: Durability,
    plan: Plan,
    /// Delivery order among writes completing in the same `reap` (lowest first).
    prio: u64,
    /// Complete (visible to a non-waiting `reap`) once this many batch writes were submitted.
    ready_at_writes: u64,
}

/// When an armed power cut fires.
#[derive(Debug, Clone, Copy)]
enum CutAt {
    Op(u64),
    IoEvent(u64),
}

#[derive(Debug, Clone)]
struct State {
    seed: u64,
    rng: Rng,
    generation: u64,
    path: PathBuf,
    next_inode: InodeId,
    next_seq: u64,
    next_io_id: u64,
    next_lock_token: u64,
    inodes: BTreeMap<InodeId, Inode>,
    live_dir: BTreeMap<String, InodeId>,
    durable_dir: BTreeMap<String, InodeId>,
    archive: BTreeMap<PathBuf, Arc<Vec<u8>>>,
    in_flight: Vec<InFlight>,
    lock: Option<u64>,
    /// The `watermark` file a writer publishes (a hint in memory, like the real mmap'd page).
    watermark: Option<Arc<SimWatermark>>,
    /// Reads also see batch writes still in flight (a real device may return new data for a
    /// region being written before the write, let alone its flush, completed).
    reads_see_in_flight: bool,
    faults: Vec<Fault>,
    stats: SimStats,
    armed_cut: Option<(CutAt, u64, CrashPolicy)>,
    last_crash: Option<CrashReport>,
    /// When recording: copies of the state taken at batch I/O events with 2+ writes in flight.
    snapshots: Vec<State>,
    recording: bool,
}

fn stale() -> io::Error {
    io::Error::other("simulated disk: handle from before a power cut or process kill")
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("simulated disk: no file {name:?}"))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

enum FaultKind {
    Write,
    Flush,
    Create,
    Read,
    SyncDir,
}

impl State {
    fn new(seed: u64) -> Self {
        State {
            seed,
            rng: Rng::new(seed),
            generation: 0,
            path: PathBuf::from(format!("/sim/disk-{seed}")),
            next_inode: 1,
            next_seq: 1,
            next_io_id: 1,
            next_lock_token: 1,
            watermark: None,
            reads_see_in_flight: false,
            inodes: BTreeMap::new(),
            live_dir: BTreeMap::new(),
            durable_dir: BTreeMap::new(),
            archive: BTreeMap::new(),
            in_flight: Vec::new(),
            lock: None,
            faults: Vec::new(),
            stats: SimStats::default(),
            armed_cut: None,
            last_crash: None,
            snapshots: Vec::new(),
            recording: false,
        }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Checks a handle's generation and counts one operation (a power cut armed for this
    /// operation happens now and the operation fails).
    fn enter(&mut self, generation: u64, io_event: bool) -> io::Result<()> {
        if generation != self.generation {
            return Err(stale());
        }
        self.stats.ops += 1;
        if io_event {
            self.stats.io_events += 1;
        }
        if let Some((at, seed, _)) = &self.armed_cut {
            let fire = match *at {
                CutAt::Op(n) => self.stats.ops >= n,
                CutAt::IoEvent(n) => io_event && self.stats.io_events >= n,
            };
            if fire {
                let seed = *seed;
                let (_, _, policy) = self.armed_cut.take().expect("armed");
                self.power_cut_random(&policy, seed);
                return Err(stale());
            }
        }
        Ok(())
    }

    fn take_fault(&mut self, kind: FaultKind) -> Option<Fault> {
        let n = match kind {
            FaultKind::Write => self.stats.writes,
            FaultKind::Flush => self.stats.flushes,
            FaultKind::Create => self.stats.creates,
            FaultKind::Read => self.stats.reads,
            FaultKind::SyncDir => self.stats.dir_syncs,
        };
        let pos = self.faults.iter().position(|f| match (&kind, f) {
            (FaultKind::Write, Fault::WriteError { nth, .. } | Fault::ShortWrite { nth, .. } | Fault::Misdirect { nth, .. }) => *nth == n,
            (FaultKind::Flush, Fault::FlushError { nth, .. }) => *nth == n,
            (FaultKind::Create, Fault::CreateError { nth, .. }) => *nth == n,
            (FaultKind::Read, Fault::ReadError { nth, .. }) => *nth == n,
            (FaultKind::SyncDir, Fault::SyncDirError { nth, .. }) => *nth == n,
            _ => false,
        })?;
        Some(self.faults.remove(pos))
    }

    fn live_inode(&self, name: &str) -> io::Result<InodeId> {
        self.live_dir.get(name).copied().ok_or_else(|| not_found(name))
    }

    fn new_inode(&mut self, bytes: Vec<u8>) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, Inode { durable: Arc::new(bytes), volatile: Vec::new() });
        id
    }

    fn push_volatile(&mut self, inode: InodeId, file: String, offset: u64, data: Vec<u8>, doomed: bool) {
        self.push_volatile_from(inode, file, offset, data, doomed, true);
    }

    fn push_volatile_from(&mut self, inode: InodeId, file: String, offset: u64, data: Vec<u8>, doomed: bool, device: bool) {
        let seq = self.seq();
        if let Some(i) = self.inodes.get_mut(&inode) {
            i.volatile.push(Volatile { seq, offset, data, doomed, device, file });
        }
    }

    /// Pending (non-durable) writes in submission order, with what would land: (seq, inode,
    /// offset, data, description).
    fn pending(&self) -> Vec<(u64, InodeId, u64, Vec<u8>, PendingWrite)> {
        let mut out = Vec::new();
        for (&id, inode) in &self.inodes {
            for v in &inode.volatile {
                let d = PendingWrite { file: v.file.clone(), offset: v.offset, len: v.data.len(), in_flight: false };
                out.push((v.seq, id, v.offset, v.data.clone(), d));
            }
        }
        for w in &self.in_flight {
            let landing = match &w.plan {
                Plan::Ok => Some((w.inode, w.offset, w.data.clone())),
                Plan::Einval => None,
                Plan::Fail { .. } => Some((w.inode, w.offset, w.data.clone())),
                Plan::Short { written } => Some((w.inode, w.offset, w.data[..*written].to_vec())),
                Plan::Misdirect(MisdirectTo::Offset(o)) => Some((w.inode, *o, w.data.clone())),
                Plan::Misdirect(MisdirectTo::File { name, offset }) => self.live_dir.get(name).map(|&i| (i, *offset, w.data.clone())),
            };
            if let Some((inode, offset, data)) = landing {
                let d = PendingWrite { file: w.file.clone(), offset, len: data.len(), in_flight: true };
                out.push((w.seq, inode, offset, data, d));
            }
        }
        out.sort_by_key(|p| p.0);
        out
    }

    /// Names whose live and durable entries differ.
    fn dir_diffs(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self.live_dir.keys().chain(self.durable_dir.keys()).collect();
        names.into_iter().filter(|n| self.live_dir.get(*n) != self.durable_dir.get(*n)).cloned().collect()
    }

    /// Applies a power cut with the given fates (one per `pending()` entry, one per `dir_diffs()`).
    fn apply_crash(&mut self, fates: &[Fate], dir_keep: &[bool], rng: &mut Rng, seed: u64) -> CrashReport {
        let pending = self.pending();
        let diffs = self.dir_diffs();
        assert_eq!(pending.len(), fates.len());
        assert_eq!(diffs.len(), dir_keep.len());
        let mut report = CrashReport { seed, ..Default::default() };
        for ((_, inode, offset, data, desc), fate) in pending.into_iter().zip(fates) {
            if let Some(node) = self.inodes.get_mut(&inode) {
                match fate {
                    Fate::Persisted => node.write_durable(offset, &data),
                    Fate::Lost => {}
                    Fate::Torn(sectors) => {
                        let pieces = sector_pieces(offset, data.len());
                        assert_eq!(pieces.len(), sectors.len(), "one fate per sector piece");
                        for (&(at, n), s) in pieces.iter().zip(sectors) {
                            match s {
                                SectorFate::Old => {}
                                SectorFate::New => node.write_durable(offset + at as u64, &data[at..at + n]),
                                SectorFate::Garbage => {
                                    let mut g = vec![0u8; n];
                                    rng.fill(&mut g);
                                    node.write_durable(offset + at as u64, &g);
                                }
                            }
                        }
                    }
                }
            }
            report.writes.push(WriteFate { write: desc, fate: fate.clone() });
        }
        let mut dir = self.durable_dir.clone();
        for (name, &keep) in diffs.iter().zip(dir_keep) {
            if keep {
                match self.live_dir.get(name) {
                    Some(&i) => dir.insert(name.clone(), i),
                    None => dir.remove(name),
                };
            }
            report.dir.push(DirFate { name: name.clone(), kept: keep });
        }
        self.durable_dir = dir;
        self.live_dir = self.durable_dir.clone();
        for inode in self.inodes.values_mut() {
            inode.volatile.clear();
        }
        let live: BTreeSet<InodeId> = self.durable_dir.values().copied().collect();
        self.inodes.retain(|id, _| live.contains(id));
        self.in_flight.clear();
        self.lock = None;
        self.generation += 1;
        self.stats.power_cuts += 1;
        self.last_crash = Some(report.clone());
        report
    }

    fn power_cut_random(&mut self, policy: &CrashPolicy, seed: u64) -> CrashReport {
        let mut rng = Rng::new(seed);
        let pending = self.pending();
        let fates: Vec<Fate> = pending.iter().map(|p| random_fate(&mut rng, policy, p.4.sectors())).collect();
        let dir_keep: Vec<bool> = self.dir_diffs().iter().map(|_| !rng.chance(policy.undo_dir_per_mille)).collect();
        self.apply_crash(&fates, &dir_keep, &mut rng, seed)
    }

    /// A process dies: in-flight writes of `io` (all when None) land volatile, torn or not at all.
    fn abandon_in_flight(&mut self, io: Option<u64>) {
        let (gone, keep): (Vec<InFlight>, Vec<InFlight>) =
            std::mem::take(&mut self.in_flight).into_iter().partition(|w| io.is_none_or(|id| w.io_id == id));
        self.in_flight = keep;
        for w in gone {
            let (inode, offset, data) = match &w.plan {
                Plan::Einval => continue,
                Plan::Short { written } => (w.inode, w.offset, w.data[..*written].to_vec()),
                Plan::Misdirect(MisdirectTo::Offset(o)) => (w.inode, *o, w.data),
                Plan::Misdirect(MisdirectTo::File { name, offset }) => match self.live_dir.get(name) {
                    Some(&i) => (i, *offset, w.data),
                    None => continue,
                },
                Plan::Ok | Plan::Fail { .. } => (w.inode, w.offset, w.data),
            };
            match self.rng.below(4) {
                0 => {}
                1 => {
                    for (at, n) in sector_pieces(offset, data.len()) {
                        if self.rng.chance(500) {
                            let f = w.file.clone();
                            self.push_volatile(inode, f, offset + at as u64, data[at..at + n].to_vec(), false);
                        }
                    }
                }
                _ => self.push_volatile(inode, w.file.clone(), offset, data, false),
            }
        }
    }

    /// Delivers one in-flight write: makes it durable (or applies its fault) and returns its
    /// completion.
    fn deliver(&mut self, idx: usize) -> Completion {
        let w = self.in_flight.remove(idx);
        let result = match w.plan {
            Plan::Ok => {
                if let Some(node) = self.inodes.get_mut(&w.inode) {
                    match w.durability {
                        Durability::LinkedFdatasync => {
                            node.write_durable(w.offset, &w.data);
                            node.sync();
                        }
                        _ => node.write_durable(w.offset, &w.data),
                    }
                }
                self.stats.completed_ok += 1;
                Ok(())
            }
            Plan::Einval => Err(IoFault::Errno { op: "write", errno: EINVAL }),
            Plan::Fail { fault, land, doomed } if land.iter().all(|&l| l) => {
                self.push_volatile(w.inode, w.file.clone(), w.offset, w.data.clone(), doomed);
                Err(fault)
            }
            Plan::Fail { fault, land, doomed } => {
                for ((at, n), l) in sector_pieces(w.offset, w.data.len()).into_iter().zip(land) {
                    if l {
                        self.push_volatile(w.inode, w.file.clone(), w.offset + at as u64, w.data[at..at + n].to_vec(), doomed);
                    }
                }
                if doomed {
                    if let Some(node) = self.inodes.get_mut(&w.inode) {
                        for v in &mut node.volatile {
                            v.doomed = true;
                        }
                    }
                }
                Err(fault)
            }
            Plan::Short { written } => {
                self.push_volatile(w.inode, w.file.clone(), w.offset, w.data[..written].to_vec(), false);
                Err(IoFault::Short { written, expected: w.data.len() })
            }
            Plan::Misdirect(to) => {
                let target = match to {
                    MisdirectTo::Offset(o) => Some((w.inode, o)),
                    MisdirectTo::File { name, offset } => self.live_dir.get(&name).map(|&i| (i, offset)),
                };
                if let Some((inode, offset)) = target {
                    if let Some(node) = self.inodes.get_mut(&inode) {
                        node.write_durable(offset, &w.data);
                        if w.durability == Durability::LinkedFdatasync {
                            // The flush goes to the file the write was aimed at.
                            if let Some(n) = self.inodes.get_mut(&w.inode) {
                                n.sync();
                            }
                        }
                    }
                }
                self.stats.completed_ok += 1;
                Ok(())
            }
        };
        Completion { tag: w.tag, result }
    }
}

fn random_fate(rng: &mut Rng, policy: &CrashPolicy, sectors: usize) -> Fate {
    let r = rng.below(1000) as u32;
    if r < policy.persist_per_mille {
        return Fate::Persisted;
    }
    if r < policy.persist_per_mille.saturating_add(policy.lose_per_mille) {
        return Fate::Lost;
    }
    let mut out = Vec::with_capacity(sectors);
    let prefix = rng.below(sectors as u64 + 1) as usize;
    for i in 0..sectors {
        let new = match policy.tear {
            TearShape::AnySubset => rng.chance(500),
            TearShape::Prefix => i < prefix,
        };
        out.push(if new {
            SectorFate::New
        } else if rng.chance(policy.garbage_per_mille) {
            SectorFate::Garbage
        } else {
            SectorFate::Old
        });
    }
    Fate::Torn(out)
}

fn mask_fate(mask: u64, sectors: usize) -> Fate {
    let full = if sectors >= 64 { u64::MAX } else { (1u64 << sectors) - 1 };
    if mask == 0 {
        Fate::Lost
    } else if mask == full {
        Fate::Persisted
    } else {
        Fate::Torn((0..sectors).map(|i| if mask >> i & 1 == 1 { SectorFate::New } else { SectorFate::Old }).collect())
    }
}

fn prefix_fate(k: usize, sectors: usize) -> Fate {
    if k == 0 {
        Fate::Lost
    } else if k == sectors {
        Fate::Persisted
    } else {
        Fate::Torn((0..sectors).map(|i| if i < k { SectorFate::New } else { SectorFate::Old }).collect())
    }
}

fn pow2(e: usize) -> u64 {
    if e >= 64 {
        u64::MAX
    } else {
        1u64 << e
    }
}

// ---------------------------------------------------------------------------------------------
// SimDisk

/// A simulated disk (see the module docs). Cheap to clone: clones share the disk.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<State>>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state();
        f.debug_struct("SimDisk")
            .field("seed", &st.seed)
            .field("generation", &st.generation)
            .field("files", &st.live_dir.keys().collect::<Vec<_>>())
            .field("in_flight", &st.in_flight.len())
            .field("stats", &st.stats)
            .finish()
    }
}

impl SimDisk {
    /// An empty disk whose every random choice derives from `seed`.
    pub fn new(seed: u64) -> Self {
        SimDisk { inner: Arc::new(Mutex::new(State::new(seed))) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (an assertion in a test) must not hide the state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.state().seed
    }

    /// Power cuts so far (handles from an older generation fail).
    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    /// A fresh storage handle on the current state (valid until the next power cut or kill).
    pub fn storage(&self) -> Arc<dyn Storage> {
        let st = self.state();
        Arc::new(SimStorage { disk: self.clone(), generation: st.generation, path: st.path.clone() })
    }

    /// Operation counters.
    pub fn stats(&self) -> SimStats {
        self.state().stats
    }

    /// Arms a one-shot fault.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Faults armed and not yet fired.
    pub fn armed_faults(&self) -> Vec<Fault> {
        self.state().faults.clone()
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Cuts power (with `policy` and `seed`) when operation number `op` (see [`SimStats::ops`])
    /// starts; that operation fails. Replaces an earlier arming.
    pub fn power_cut_at_op(&self, op: u64, seed: u64, policy: CrashPolicy) {
        self.state().armed_cut = Some((CutAt::Op(op), seed, policy));
    }

    /// With `on`, reads (`read_file`, `read_range`) also return the data of batch writes still in
    /// flight, as a real device may for a region being written: what a reader sees is then not
    /// necessarily durable (tests of readers that must wait for the acknowledged watermark).
    pub fn reads_see_in_flight(&self, on: bool) {
        self.state().reads_see_in_flight = on;
    }

    /// Cuts power (with `policy` and `seed`) when batch I/O event number `n` (see
    /// [`SimStats::io_events`]: a submit or a delivered completion) starts; that operation fails.
    /// Replaces an earlier arming.
    pub fn power_cut_at_io_event(&self, n: u64, seed: u64, policy: CrashPolicy) {
        self.state().armed_cut = Some((CutAt::IoEvent(n), seed, policy));
    }

    /// True while a power cut armed with [`SimDisk::power_cut_at_op`] has not happened.
    pub fn power_cut_armed(&self) -> bool {
        self.state().armed_cut.is_some()
    }

    /// Starts (or stops) recording a copy of the disk after every batch submit that leaves two
    /// or more writes in flight: the states from which [`SimDisk::for_each_crash_state`]
    /// enumerates crashes of a real engine run.
    pub fn record_snapshots(&self, on: bool) {
        self.state().recording = on;
    }

    /// Takes the recorded snapshots (independent disks, faults and armed cuts cleared).
    pub fn take_snapshots(&self) -> Vec<SimDisk> {
        let mut st = self.state();
        let v = std::mem::take(&mut st.snapshots);
        v.into_iter().map(|s| SimDisk { inner: Arc::new(Mutex::new(s)) }).collect()
    }

    /// Report of the last power cut.
    pub fn last_crash(&self) -> Option<CrashReport> {
        self.state().last_crash.clone()
    }

    /// Power cut with the default [`CrashPolicy`].
    pub fn crash(&self, seed: u64) -> CrashReport {
        self.crash_with(&CrashPolicy::default(), seed)
    }

    /// Power cut: see the module docs.
    pub fn crash_with(&self, policy: &CrashPolicy, seed: u64) -> CrashReport {
        self.state().power_cut_random(policy, seed)
    }

    /// Power cut with explicit fates: one per [`SimDisk::pending_writes`] entry and one per
    /// [`SimDisk::unsynced_dir_entries`] entry (true: keep the unsynced state). Garbage sectors
    /// are drawn from `seed`.
    pub fn crash_exact(&self, fates: &[Fate], dir_keep: &[bool], seed: u64) -> CrashReport {
        let mut rng = Rng::new(seed);
        self.state().apply_crash(fates, dir_keep, &mut rng, seed)
    }

    /// The process dies (no power loss): every handle fails from now on, the lock is released,
    /// volatile writes stay in the page cache, and writes in flight each land volatile, land
    /// torn or are lost (seeded).
    pub fn kill_process(&self) {
        let mut st = self.state();
        st.abandon_in_flight(None);
        st.lock = None;
        st.generation += 1;
    }

    /// Writes that are not durable yet, in submission order (the order of crash fates).
    pub fn pending_writes(&self) -> Vec<PendingWrite> {
        self.state().pending().into_iter().map(|p| p.4).collect()
    }

    /// Names whose directory entry is not durable (created, replaced or removed since the last
    /// directory sync), in name order.
    pub fn unsynced_dir_entries(&self) -> Vec<String> {
        self.state().dir_diffs()
    }

    /// Files in the live listing.
    pub fn live_names(&self) -> Vec<String> {
        self.state().live_dir.keys().cloned().collect()
    }

    /// Files in the durable listing.
    pub fn durable_names(&self) -> Vec<String> {
        self.state().durable_dir.keys().cloned().collect()
    }

    /// What the live process reads from `name`.
    pub fn live_image(&self, name: &str) -> Option<Vec<u8>> {
        let st = self.state();
        st.live_dir.get(name).and_then(|i| st.inodes.get(i)).map(Inode::view)
    }

    /// What an O_DIRECT `read_file` of `name` returns now (the page-cache view minus pages a
    /// failed flush left clean): what recovery reads after it has fsynced the file.
    pub fn direct_image(&self, name: &str) -> Option<Vec<u8>> {
        let st = self.state();
        st.live_dir.get(name).and_then(|i| st.inodes.get(i)).map(Inode::direct_view)
    }

    /// What survives a power cut that loses every pending write: the durable image of the
    /// durable entry `name`.
    pub fn durable_image(&self, name: &str) -> Option<Vec<u8>> {
        let st = self.state();
        st.durable_dir.get(name).and_then(|i| st.inodes.get(i)).map(|n| n.durable.as_ref().clone())
    }

    /// Archived files (by destination path).
    pub fn archived(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        self.state().archive.iter().map(|(p, b)| (p.clone(), b.as_ref().clone())).collect()
    }

    /// Creates (or replaces) `name` with `bytes`, durable with its directory entry (e.g. a
    /// segment image built with `tradewal_codec::build::SegmentBuilder`).
    pub fn put_file(&self, name: &str, bytes: Vec<u8>) {
        let mut st = self.state();
        let id = st.new_inode(bytes);
        st.live_dir.insert(name.to_string(), id);
        st.durable_dir.insert(name.to_string(), id);
    }

    /// Creates (or replaces) `name` with durable contents but an unsynced directory entry (a file
    /// written and fsynced whose directory was not).
    pub fn create_file_unsynced_dir(&self, name: &str, bytes: Vec<u8>) {
        let mut st = self.state();
        let id = st.new_inode(bytes);
        st.live_dir.insert(name.to_string(), id);
    }

    /// A buffered write with no sync (visible to reads, not durable).
    pub fn write_unsynced(&self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.state();
        let id = st.live_inode(name)?;
        st.push_volatile_from(id, name.to_string(), offset, bytes.to_vec(), false, false);
        Ok(())
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` in the durable image of `name` (bit rot),
    /// and in any volatile write covering it. Returns false when there is no such byte.
    pub fn rot(&self, name: &str, offset: u64, bit: u8) -> bool {
        assert!(bit < 8, "bit index 0..8");
        let mut st = self.state();
        let Some(&id) = st.durable_dir.get(name).or_else(|| st.live_dir.get(name)) else { return false };
        let node = st.inodes.get_mut(&id).expect("inode of a directory entry");
        let mut hit = false;
        if (offset as usize) < node.durable.len() {
            Arc::make_mut(&mut node.durable)[offset as usize] ^= 1 << bit;
            hit = true;
        }
        for v in &mut node.volatile {
            if offset >= v.offset && offset < v.offset + v.data.len() as u64 {
                v.data[(offset - v.offset) as usize] ^= 1 << bit;
                hit = true;
            }
        }
        hit
    }

    /// Every post-crash state of the current pending writes and unsynced directory entries, as
    /// bounded by `e`; `visit` sees each as an independent disk. Returns the number of states.
    /// This disk is not changed.
    pub fn for_each_crash_state(&self, e: &Enumeration, mut visit: impl FnMut(CrashState)) -> Result<u64, EnumerationTooLarge> {
        let base = self.state().clone();
        let sectors: Vec<usize> = base.pending().iter().map(|p| p.4.sectors()).collect();
        let d = if e.dir { base.dir_diffs().len() } else { 0 };
        let n = sectors.len();
        let write_states: u64 = match e.tear {
            EnumTear::None => pow2(n),
            EnumTear::SingleTorn => {
                let mut t = pow2(n);
                for &s in &sectors {
                    t = t.saturating_add(pow2(s).saturating_sub(2).saturating_mul(pow2(n - 1)));
                }
                t
            }
            EnumTear::Prefix => sectors.iter().fold(1u64, |a, &s| a.saturating_mul(s as u64 + 1)),
            EnumTear::AllSubsets => sectors.iter().fold(1u64, |a, &s| a.saturating_mul(pow2(s))),
        };
        let states = write_states.saturating_mul(pow2(d));
        if states > e.max_states {
            return Err(EnumerationTooLarge { states, max_states: e.max_states });
        }
        // Write fate combinations.
        let mut combos: Vec<Vec<Fate>> = Vec::new();
        let whole = |mask: u64| -> Vec<Fate> { (0..n).map(|i| if mask >> i & 1 == 1 { Fate::Persisted } else { Fate::Lost }).collect() };
        match e.tear {
            EnumTear::None => combos.extend((0..pow2(n)).map(whole)),
            EnumTear::SingleTorn => {
                combos.extend((0..pow2(n)).map(whole));
                for (i, &s) in sectors.iter().enumerate() {
                    for m in 1..pow2(s) - 1 {
                        for others in 0..pow2(n - 1) {
                            let mut f = Vec::with_capacity(n);
                            let mut bit = 0;
                            for j in 0..n {
                                if j == i {
                                    f.push(mask_fate(m, s));
                                } else {
                                    f.push(if others >> bit & 1 == 1 { Fate::Persisted } else { Fate::Lost });
                                    bit += 1;
                                }
                            }
                            combos.push(f);
                        }
                    }
                }
            }
            EnumTear::Prefix | EnumTear::AllSubsets => {
                let radix: Vec<u64> = sectors.iter().map(|&s| if e.tear == EnumTear::Prefix { s as u64 + 1 } else { pow2(s) }).collect();
                let mut idx = vec![0u64; n];
                loop {
                    combos.push(
                        idx.iter()
                            .zip(&sectors)
                            .map(|(&k, &s)| if e.tear == EnumTear::Prefix { prefix_fate(k as usize, s) } else { mask_fate(k, s) })
                            .collect(),
                    );
                    let mut j = 0;
                    while j < n {
                        idx[j] += 1;
                        if idx[j] < radix[j] {
                            break;
                        }
                        idx[j] = 0;
                        j += 1;
                    }
                    if j == n {
                        break;
                    }
                }
            }
        }
        let all_diffs = base.dir_diffs().len();
        let mut count = 0;
        for fates in &combos {
            for dmask in 0..pow2(d) {
                let dir_keep: Vec<bool> = if e.dir { (0..all_diffs).map(|k| dmask >> k & 1 == 1).collect() } else { vec![true; all_diffs] };
                let mut st = base.clone();
                st.faults.clear();
                st.armed_cut = None;
                let mut rng = Rng::new(0);
                let report = st.apply_crash(fates, &dir_keep, &mut rng, 0);
                count += 1;
                visit(CrashState { disk: SimDisk { inner: Arc::new(Mutex::new(st)) }, report });
            }
        }
        debug_assert_eq!(count, states);
        Ok(count)
    }

    /// [`SimDisk::for_each_crash_state`], collected.
    pub fn enumerate_crash_states(&self, e: &Enumeration) -> Result<Vec<CrashState>, EnumerationTooLarge> {
        let mut out = Vec::new();
        self.for_each_crash_state(e, |s| out.push(s))?;
        Ok(out)
    }

    /// A deep copy (an independent disk in the same state, same seed and random stream).
    pub fn fork(&self) -> SimDisk {
        SimDisk { inner: Arc::new(Mutex::new(self.state().clone())) }
    }
}

// ---------------------------------------------------------------------------------------------
// Storage

#[derive(Debug)]
struct SimStorage {
    disk: SimDisk,
    generation: u64,
    path: PathBuf,
}

impl SimStorage {
    fn enter(&self) -> io::Result<MutexGuard<'_, State>> {
        let mut st = self.disk.state();
        st.enter(self.generation, false)?;
        Ok(st)
    }
}

struct SimLockGuard {
    disk: SimDisk,
    token: u64,
}

impl fmt::Debug for SimLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimLockGuard({})", self.token)
    }
}

impl LockGuard for SimLockGuard {}

impl Drop for SimLockGuard {
    fn drop(&mut self) {
        let mut st = self.disk.state();
        if st.lock == Some(self.token) {
            st.lock = None;
        }
    }
}

/// The simulated disk's watermark cell ([`Storage::watermark`]).
#[derive(Debug, Default)]
pub struct SimWatermark(std::sync::atomic::AtomicU64);

impl tradewal::io::WatermarkCell for SimWatermark {
    fn load(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
    fn store(&self, lsn: u64) {
        self.0.store(lsn, std::sync::atomic::Ordering::Release);
    }
}

impl Storage for SimStorage {
    fn path(&self) -> &Path {
        &self.path
    }

    fn watermark(&self, writer: bool) -> io::Result<Option<Arc<dyn tradewal::io::WatermarkCell>>> {
        // Not an operation of the disk (a mapping, like the real page): it does not count in
        // `stats().ops`, so the seeded cut points of every suite stay where they were.
        let mut st = self.disk.state();
        if st.generation != self.generation {
            return Err(stale());
        }
        if writer && st.watermark.is_none() {
            st.watermark = Some(Arc::new(SimWatermark::default()));
        }
        Ok(st.watermark.clone().map(|w| w as Arc<dyn tradewal::io::WatermarkCell>))
    }

    fn create_dir(&self) -> io::Result<()> {
        self.enter().map(drop)
    }

    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        let mut st = self.enter()?;
        if st.lock.is_some() {
            return Ok(None);
        }
        let token = st.next_lock_token;
        st.next_lock_token += 1;
        st.lock = Some(token);
        Ok(Some(Box::new(SimLockGuard { disk: self.disk.clone(), token })))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let st = self.enter()?;
        Ok(st.live_dir.keys().cloned().collect())
    }

    fn file_len(&self, name: &str) -> io::Result<u64> {
        let st = self.enter()?;
        let id = st.live_inode(name)?;
        Ok(st.inodes[&id].live_len())
    }

    fn read_file(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut st = self.enter()?;
        st.stats.reads += 1;
        let id = st.live_inode(name)?;
        if let Some(Fault::ReadError { errno: e, .. }) = st.take_fault(FaultKind::Read) {
            return Err(errno(e));
        }
        let mut view = st.inodes[&id].direct_view();
        if st.reads_see_in_flight {
            for w in st.in_flight.iter().filter(|w| w.inode == id) {
                let end = w.offset as usize + w.data.len();
                if view.len() < end {
                    view.resize(end, 0);
                }
                view[w.offset as usize..end].copy_from_slice(&w.data);
            }
        }
        Ok(view)
    }

    fn sync_file(&self, name: &str) -> io::Result<()> {
        let mut st = self.enter()?;
        let id = st.live_inode(name)?;
        st.stats.flushes += 1;
        if let Some(Fault::FlushError { errno: e, .. }) = st.take_fault(FaultKind::Flush) {
            // fsyncgate: page-cache pages are marked clean. Bytes an O_DIRECT write left in the
            // device's cache are not page-cache pages: they stay pending (and visible).
            for v in st.inodes.get_mut(&id).expect("inode").volatile.iter_mut().filter(|v| !v.device) {
                v.doomed = true;
            }
            return Err(errno(e));
        }
        st.inodes.get_mut(&id).expect("inode").sync();
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut st = self.enter()?;
        st.stats.dir_syncs += 1;
        if let Some(Fault::SyncDirError { errno: e, .. }) = st.take_fault(FaultKind::SyncDir) {
            return Err(errno(e));
        }
        st.durable_dir = st.live_dir.clone();
        Ok(())
    }

    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<()> {
        let mut st = self.enter()?;
        st.stats.creates += 1;
        if let Some(Fault::CreateError { errno: e, .. }) = st.take_fault(FaultKind::Create) {
            return Err(errno(e));
        }
        if len % DIRECT_ALIGN_BYTES != 0 {
            return Err(invalid(format!("create_zeroed: length {len} not a multiple of {DIRECT_ALIGN_BYTES}")));
        }
        let id = st.new_inode(vec![0u8; len as usize]);
        st.live_dir.insert(name.to_string(), id);
        // Contract: the file and its directory are synced before this returns.
        st.durable_dir = st.live_dir.clone();
        Ok(())
    }

    fn recycle(&self, from: &str, to: &str) -> io::Result<()> {
        // Four operations, as the real file system does them (a power cut may fall between any
        // two): the zeros over block 0 sit in the device cache until the flush; the rename is
        // live at once and durable only with the directory fsync.
        {
            let mut st = self.enter()?;
            let id = st.live_inode(from)?;
            if st.live_dir.contains_key(to) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("simulated disk: {to:?} exists")));
            }
            if st.inodes[&id].live_len() < BLOCK_BYTES as u64 {
                return Err(invalid(format!("recycle: {from:?} is shorter than a block")));
            }
            st.stats.recycles += 1;
            st.push_volatile(id, from.to_string(), 0, vec![0u8; BLOCK_BYTES], false);
        }
        self.sync_file(from)?;
        self.rename(from, to)?;
        self.sync_dir()
    }

    fn zero_range(&self, name: &str, offset: u64, len: u64) -> io::Result<()> {
        let mut st = self.enter()?;
        let id = st.live_inode(name)?;
        if offset > len {
            return Err(invalid(format!("zero_range: offset {offset} beyond length {len}")));
        }
        st.stats.flushes += 1;
        let node = st.inodes.get_mut(&id).expect("inode");
        node.sync();
        // Writes the failed flush doomed are superseded where the zeros go.
        node.volatile.retain(|v| v.offset + v.data.len() as u64 <= offset);
        let img = Arc::make_mut(&mut node.durable);
        img.resize(len as usize, 0);
        img[offset as usize..].fill(0);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut st = self.enter()?;
        st.live_dir.remove(name).ok_or_else(|| not_found(name))?;
        Ok(())
    }

    fn archive(&self, name: &str, dest_dir: &Path) -> io::Result<()> {
        let mut st = self.enter()?;
        let id = st.live_inode(name)?;
        let bytes = Arc::new(st.inodes[&id].view());
        st.archive.insert(dest_dir.join(name), bytes);
        st.live_dir.remove(name);
        Ok(())
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.enter()?;
        // Not counted in `stats.writes` (that counts batch writes, which write faults name).
        // A new file: its bytes sit in the page cache (not durable) until `sync_file`, its
        // directory entry until `sync_dir`.
        let id = st.new_inode(Vec::new());
        st.push_volatile_from(id, name.to_string(), 0, bytes.to_vec(), false, false);
        st.live_dir.insert(name.to_string(), id);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut st = self.enter()?;
        let id = st.live_dir.remove(from).ok_or_else(|| not_found(from))?;
        st.live_dir.insert(to.to_string(), id);
        Ok(())
    }

    fn quarantine(&self, name: &str) -> io::Result<PathBuf> {
        let mut st = self.enter()?;
        let id = st.live_inode(name)?;
        let bytes = Arc::new(st.inodes[&id].view());
        let qdir = self.path.join(tradewal::manifest::QUARANTINE_DIR);
        let dest = (0u32..)
            .map(|i| qdir.join(if i == 0 { name.to_string() } else { format!("{name}.{i}") }))
            .find(|p| !st.archive.contains_key(p))
            .expect("a free name");
        st.archive.insert(dest.clone(), bytes);
        st.live_dir.remove(name);
        Ok(dest)
    }

    fn batch_io(&self, cfg: &IoConfig) -> io::Result<Box<dyn BatchIo>> {
        let mut st = self.enter()?;
        if cfg.buffers == 0 || cfg.buffer_bytes == 0 || cfg.buffer_bytes as u64 % DIRECT_ALIGN_BYTES != 0 {
            return Err(invalid(format!(
                "batch_io: {} buffers of {} bytes (need >= 1 buffer, a non-zero multiple of {DIRECT_ALIGN_BYTES})",
                cfg.buffers, cfg.buffer_bytes
            )));
        }
        let io_id = st.next_io_id;
        st.next_io_id += 1;
        Ok(Box::new(SimBatchIo {
            disk: self.disk.clone(),
            generation: self.generation,
            io_id,
            seed: st.seed,
            durability: cfg.durability,
            buffers: vec![vec![0u8; cfg.buffer_bytes]; cfg.buffers],
            busy: vec![false; cfg.buffers],
            slots: Vec::new(),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// BatchIo

struct SimBatchIo {
    disk: SimDisk,
    generation: u64,
    io_id: u64,
    seed: u64,
    durability: Durability,
    buffers: Vec<Vec<u8>>,
    busy: Vec<bool>,
    /// Open segments: (inode, name); None once closed.
    slots: Vec<Option<(InodeId, String)>>,
}

impl Drop for SimBatchIo {
    fn drop(&mut self) {
        let mut st = self.disk.state();
        if st.generation == self.generation {
            st.abandon_in_flight(Some(self.io_id));
        }
    }
}

impl SimBatchIo {
    /// After a power cut or kill nothing is in flight any more: the buffers are free.
    fn forget_if_stale(&mut self) {
        if self.disk.state().generation != self.generation {
            self.busy.fill(false);
        }
    }
}

impl BatchIo for SimBatchIo {
    fn describe(&self) -> String {
        let mode = match self.durability {
            Durability::LinkedFdatasync => "write + linked fdatasync",
            _ => "RWF_DSYNC",
        };
        format!("simulated disk (seed {}), {mode}", self.seed)
    }

    fn buffer_count(&self) -> usize {
        self.buffers.len()
    }

    fn buffer(&mut self, idx: usize) -> &mut [u8] {
        self.forget_if_stale();
        assert!(!self.busy[idx], "buffer {idx} touched while its write is in flight");
        &mut self.buffers[idx]
    }

    fn open_segment(&mut self, name: &str) -> io::Result<FileSlot> {
        let mut st = self.disk.state();
        st.enter(self.generation, false)?;
        let id = st.live_inode(name)?;
        self.slots.push(Some((id, name.to_string())));
        Ok((self.slots.len() - 1) as FileSlot)
    }

    fn close_segment(&mut self, slot: FileSlot) {
        let st = self.disk.state();
        let busy = st.in_flight.iter().any(|w| w.io_id == self.io_id && self.slots[slot as usize].as_ref().is_some_and(|s| s.0 == w.inode));
        assert!(!busy || st.generation != self.generation, "close_segment({slot}) with writes in flight");
        self.slots[slot as usize] = None;
    }

    fn submit(&mut self, slot: FileSlot, offset: u64, buf: usize, len: usize, tag: u64) -> io::Result<()> {
        assert!(buf < self.buffers.len(), "submit: buffer {buf} out of range");
        self.forget_if_stale();
        assert!(!self.busy[buf], "submit: buffer {buf} is already in flight");
        let mut st = self.disk.state();
        st.enter(self.generation, true)?;
        let Some(Some((inode, file))) = self.slots.get(slot as usize).cloned() else {
            return Err(errno(libc::EBADF));
        };
        if len == 0 || len > self.buffers[buf].len() {
            return Err(invalid(format!("submit: length {len} (buffer is {} bytes)", self.buffers[buf].len())));
        }
        st.stats.writes += 1;
        st.stats.flushes += 1;
        let data = self.buffers[buf][..len].to_vec();
        let pieces = sector_pieces(offset, len).len();
        let linked = self.durability == Durability::LinkedFdatasync;
        let plan = if offset % DIRECT_ALIGN_BYTES != 0 || len as u64 % DIRECT_ALIGN_BYTES != 0 {
            Plan::Einval
        } else {
            let write_fault = st.take_fault(FaultKind::Write);
            let flush_fault = st.take_fault(FaultKind::Flush);
            match (write_fault, flush_fault) {
                (Some(Fault::WriteError { errno: e, .. }), _) => {
                    let land = (0..pieces).map(|_| st.rng.chance(500)).collect();
                    Plan::Fail { fault: IoFault::Errno { op: "write", errno: e }, land, doomed: false }
                }
                (Some(Fault::ShortWrite { written, .. }), _) => {
                    assert!(written < len, "ShortWrite: written {written} must be less than the length {len}");
                    Plan::Short { written }
                }
                (Some(Fault::Misdirect { to, .. }), _) => Plan::Misdirect(to),
                (_, Some(Fault::FlushError { errno: e, .. })) => {
                    // An O_DIRECT write has no page-cache copy: its bytes reached the device's
                    // volatile cache and the flush failed, so they sit there until a later flush
                    // or a power cut decides (not fsyncgate's clean pages: that is `sync_file`).
                    let op = if linked { "fdatasync" } else { "write" };
                    Plan::Fail { fault: IoFault::Errno { op, errno: e }, land: vec![true; pieces], doomed: false }
                }
                _ => Plan::Ok,
            }
        };
        let seq = st.seq();
        let prio = st.rng.next_u64();
        let ready_at_writes = st.stats.writes + st.rng.below(3);
        st.in_flight.push(InFlight {
            io_id: self.io_id,
            seq,
            tag,
            buf,
            inode,
            file,
            offset,
            data,
            durability: self.durability,
            plan,
            prio,
            ready_at_writes,
        });
        self.busy[buf] = true;
        st.stats.in_flight_max = st.stats.in_flight_max.max(st.in_flight.len() as u64);
        if st.recording && st.in_flight.len() >= 2 {
            let mut copy = st.clone();
            copy.snapshots = Vec::new();
            copy.recording = false;
            copy.armed_cut = None;
            copy.faults.clear();
            st.snapshots.push(copy);
        }
        Ok(())
    }

    fn in_flight(&self) -> usize {
        // After a power cut or kill the disk forgot every write in flight, but the caller has not
        // been told: it still counts them, so that its next reap gets the stale-handle error
        // (a power cut fired by another thread's operation must not leave the writer waiting for
        // a completion that never comes). Buffers are freed for reuse (`forget_if_stale`).
        self.busy.iter().filter(|&&b| b).count()
    }

    fn reap(&mut self, wait: bool, out: &mut dyn FnMut(Completion)) -> io::Result<usize> {
        let mut done = Vec::new();
        let mut failed = None;
        {
            let mut st = self.disk.state();
            if st.generation != self.generation {
                return Err(stale());
            }
            let st = &mut *st;
            // Which complete now, and in which order: fixed at submit from the seed (a write is
            // complete once `ready_at_writes` writes were submitted; a waiting reap takes the
            // lowest-priority one if none is), so how often the caller polls changes nothing.
            let mut mine: Vec<(u64, u64, bool)> = st
                .in_flight
                .iter()
                .filter(|w| w.io_id == self.io_id)
                .map(|w| (w.prio, w.seq, st.stats.writes >= w.ready_at_writes))
                .collect();
            if mine.is_empty() {
                return Ok(0);
            }
            mine.sort();
            let mut pick: Vec<u64> = mine.iter().filter(|m| m.2).map(|m| m.1).collect();
            if pick.is_empty() && wait {
                pick.push(mine[0].1);
            }
            for seq in pick {
                if let Err(e) = st.enter(self.generation, true) {
                    failed = Some(e);
                    break;
                }
                let idx = st.in_flight.iter().position(|w| w.seq == seq).expect("picked write in flight");
                let buf = st.in_flight[idx].buf;
                let c = st.deliver(idx);
                assert!(self.busy[buf], "completion for a buffer not in flight");
                self.busy[buf] = false;
                done.push(c);
            }
        }
        let n = done.len();
        for c in done {
            out(c);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

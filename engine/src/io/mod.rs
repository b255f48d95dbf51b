//! The I/O seam of the engine: every byte the engine reads or writes goes through [`Storage`]
//! (directory and file operations) and [`BatchIo`] (the writer's durable batch writes). The real
//! implementation is [`fs::FsStorage`] with an io_uring backend ([`uring`]); a simulated disk
//! (tests crate) implements the same traits to inject crashes, tears and errors.
//!
//! All unsafe_code of the engine lives in this module's `uring` and `sys` files.
//!
//! Crate-private; the `sim` feature exports it (the tests crate's simulated disk, the engine's
//! backend tests). Users never need it: what they see of it is re-exported at the crate root.

pub mod buffers;
pub mod fs;
pub mod stack;
pub mod sync;
#[allow(unsafe_code)]
pub mod sys;
#[allow(unsafe_code)]
pub mod uring;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a batch write is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Each batch write carries `RWF_DSYNC` (on this machine: write + one device cache flush).
    Dsync,
    /// A plain write linked (`IOSQE_IO_LINK`) to an `fdatasync` (the design card's shape).
    LinkedFdatasync,
}

/// Settings the batch backend is built from.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// Durability mode.
    pub durability: Durability,
    /// Number of batch buffers (K in flight plus the one being filled).
    pub buffers: usize,
    /// Size of each buffer in bytes (a multiple of 4096): the largest single write.
    pub buffer_bytes: usize,
    /// Refuse io_uring and use the `pwritev2(RWF_DSYNC)` fallback (tests of the fallback).
    pub disable_io_uring: bool,
    /// Allow buffered writes + `fdatasync` where O_DIRECT is unsupported (tmpfs).
    pub allow_buffered_io: bool,
    /// Use io_uring whatever the storage stack (see [`stack::route`]); off by default.
    pub trust_storage: bool,
}

/// What went wrong with a durable write. Any fault poisons the log (I6).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoFault {
    /// The operation failed with an errno.
    Errno {
        /// Which operation (`"write"`, `"fdatasync"`, ...).
        op: &'static str,
        /// The positive errno.
        errno: i32,
    },
    /// The write transferred fewer bytes than asked.
    Short {
        /// Bytes written.
        written: usize,
        /// Bytes asked.
        expected: usize,
    },
    /// The linked flush was cancelled because its write failed or was short (`-ECANCELED`).
    Canceled,
}

impl fmt::Display for IoFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoFault::Errno { op, errno } => {
                write!(f, "{op} failed: {}", io::Error::from_raw_os_error(*errno))
            }
            IoFault::Short { written, expected } => write!(f, "short write: {written} of {expected} bytes"),
            IoFault::Canceled => write!(f, "linked fdatasync cancelled (-ECANCELED): its write failed"),
        }
    }
}

/// The completion of one submitted batch write (for `LinkedFdatasync`: of the write and its flush).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The tag given to [`BatchIo::submit`].
    pub tag: u64,
    /// Ok when the bytes are durable on the device.
    pub result: Result<(), IoFault>,
}

/// Handle of a segment file opened for batch writes.
pub type FileSlot = u32;

/// The writer thread's durable write path. Buffers are owned by the backend so that they can be
/// aligned (O_DIRECT) and, for io_uring, stay valid while the kernel holds them.
///
/// Rule: buffer `i` is not touched by the caller between `submit(.., i, ..)` and the reaping of
/// that submission's completion. Backends assert it.
pub trait BatchIo: Send {
    /// Short description, e.g. `"io_uring, RWF_DSYNC"`.
    fn describe(&self) -> String;
    /// Number of buffers.
    fn buffer_count(&self) -> usize;
    /// Buffer `idx`, `buffer_bytes` long and 4096-aligned. Panics if it is in flight.
    fn buffer(&mut self, idx: usize) -> &mut [u8];
    /// Opens an existing, zero-filled segment file (by name, in the storage directory) for writes.
    fn open_segment(&mut self, name: &str) -> io::Result<FileSlot>;
    /// Closes a segment file; nothing may be in flight on it.
    fn close_segment(&mut self, slot: FileSlot);
    /// Submits a durable write of `buffer(buf)[..len]` at `offset`. `offset` and `len` must be
    /// multiples of 4096 for O_DIRECT backends (a misaligned one fails at completion, not here,
    /// on io_uring). An `Err` here means the submission itself failed: the log is poisoned.
    fn submit(&mut self, slot: FileSlot, offset: u64, buf: usize, len: usize, tag: u64) -> io::Result<()>;
    /// Number of submissions not yet reaped.
    fn in_flight(&self) -> usize;
    /// Hands every available completion to `out`. With `wait`, first blocks until at least one
    /// is available (only when something is in flight). Returns how many were handed out.
    fn reap(&mut self, wait: bool, out: &mut dyn FnMut(Completion)) -> io::Result<usize>;
}

/// An I/O error with what was being done and to which path; keeps the original error (and its
/// errno) as its source.
#[derive(Debug)]
pub struct ContextError {
    /// What was being done, with the path.
    pub what: String,
    /// The original error.
    pub source: io::Error,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The errno behind an I/O error, looking through [`ContextError`]; EIO when there is none.
pub fn errno_of(e: &io::Error) -> i32 {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    if let Some(c) = e.get_ref().and_then(|inner| inner.downcast_ref::<ContextError>()) {
        return errno_of(&c.source);
    }
    match e.kind() {
        io::ErrorKind::StorageFull => libc::ENOSPC,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::NotFound => libc::ENOENT,
        _ => libc::EIO,
    }
}

/// Guard of the one-writer-per-directory lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The cell through which the writer publishes its acknowledged watermark to readers (in other
/// processes too): the last LSN whose ticket resolved Ok. A hint for readers, never ahead of
/// what is durable, never read by recovery (docs/design.md, "Watermark file").
pub trait WatermarkCell: Send + Sync + fmt::Debug {
    /// The last LSN published (0: none yet, or no valid cell).
    fn load(&self) -> u64;
    /// Publishes `lsn` (only a writer's cell accepts stores).
    fn store(&self, lsn: u64);
}

/// Takes the directory's writer lock, waiting up to `timeout` (sleeping, never spinning) while
/// another holder has it; logs once that it waits. A killed writer's io_uring keeps the lock until
/// its last in-flight write completed, so an immediate restart waits here for a moment. This is
/// what [`Wal::open`](crate::Wal::open) does with [`WalConfig::lock_timeout`](crate::WalConfig::lock_timeout);
/// a tool that must hold the directory without opening a writer (a test inspecting a crashed log)
/// calls it directly. After `timeout` it returns [`WalError::Locked`](crate::WalError::Locked)
/// with the pid the holder recorded.
pub fn wait_for_lock(storage: &dyn Storage, timeout: std::time::Duration) -> Result<Box<dyn LockGuard>, crate::WalError> {
    use crate::WalError;
    let dir = storage.path().display().to_string();
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(200);
    let mut logged = false;
    loop {
        if let Some(g) = storage.lock().map_err(|e| WalError::io(format!("locking {dir}"), e))? {
            if logged {
                tracing::info!(dir = %dir, waited_ms = started.elapsed().as_millis() as u64, "tradewal: previous writer released the log");
            }
            return Ok(g);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(WalError::Locked { dir: storage.path().to_path_buf(), pid: storage.lock_holder() });
        }
        if !logged {
            logged = true;
            let pid = storage.lock_holder().map_or("unknown".to_string(), |p| p.to_string());
            tracing::warn!(dir = %dir, pid = %pid, timeout_ms = timeout.as_millis() as u64, "tradewal: waiting for the previous writer to release the log");
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

/// Directory and file operations of a log directory.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The directory (for messages).
    fn path(&self) -> &Path;
    /// Creates the directory (mode 0700) if missing.
    fn create_dir(&self) -> io::Result<()>;
    /// Takes the exclusive writer lock; `Ok(None)` when another holder (any process) has it.
    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>>;
    /// File names in the directory (not sub-directories).
    fn list(&self) -> io::Result<Vec<String>>;
    /// Length of a file.
    fn file_len(&self, name: &str) -> io::Result<u64>;
    /// Reads a whole file, bypassing the page cache where possible (O_DIRECT), so only what
    /// reached the device is trusted (I5).
    fn read_file(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Like [`read_file`](Storage::read_file), into `buf` (replacing its contents), so that a caller
    /// reading many files reuses one allocation.
    fn read_file_into(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        *buf = self.read_file(name)?;
        Ok(())
    }
    /// fsyncs a file.
    fn sync_file(&self, name: &str) -> io::Result<()>;
    /// fsyncs the directory.
    fn sync_dir(&self) -> io::Result<()>;
    /// Creates `name` (mode 0600) of `len` bytes, all zeros written for real (no unwritten
    /// extents), fsynced, under a temporary name renamed into place, then fsyncs the directory.
    /// After it returns the file is durable and later writes into it are pure overwrites.
    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<()>;
    /// [`create_zeroed`](Storage::create_zeroed) that calls `pace(bytes_zeroed)` between the
    /// chunks of its zero-fill, so the caller can spread the zeros out in time (a spare prepared
    /// while the log is written: docs/design.md "Spares"). The default ignores `pace`.
    fn create_zeroed_paced(&self, name: &str, len: u64, pace: &mut dyn FnMut(u64)) -> io::Result<()> {
        let _ = pace;
        self.create_zeroed(name, len)
    }
    /// Puts the recyclable file `from` (a retired segment, docs/design.md "Recycled segment
    /// files") in service as the spare `to`: overwrites its block 0 (the old segment header) with
    /// zeros through O_DIRECT and makes that durable (fdatasync) before anything else, then
    /// renames `from` to `to` and fsyncs the directory. The rest of the file keeps its old bytes,
    /// stale batches that never validate for the new segment and epoch (I2); the file was written
    /// in full before, so later batch writes are pure overwrites, as in a zero-filled spare.
    /// Fails with `AlreadyExists` when `to` exists. After it returns, `to` is durable under its
    /// name and can never show the old header (which names another segment number).
    fn recycle(&self, from: &str, to: &str) -> io::Result<()>;
    /// Writes zeros over `[offset, len)` of `name`, sets its length to `len`, and fsyncs it
    /// (torn-tail repair).
    fn zero_range(&self, name: &str, offset: u64, len: u64) -> io::Result<()>;
    /// Removes a file (the caller syncs the directory).
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Moves a file into `dest_dir` (created 0700 if missing), durably: the copy is synced in
    /// `dest_dir` before the original is removed. The caller syncs this directory.
    fn archive(&self, name: &str, dest_dir: &Path) -> io::Result<()>;
    /// Builds the writer's batch backend.
    fn batch_io(&self, cfg: &IoConfig) -> io::Result<Box<dyn BatchIo>>;
    /// The storage stack found and the write path chosen by the last
    /// [`batch_io`](Storage::batch_io); `None` for storage that has no such facts (a simulated disk).
    fn stack(&self) -> Option<stack::StorageStack> {
        None
    }
    /// Creates (or truncates) `name` (mode 0600) holding `bytes`; not synced (call
    /// [`sync_file`](Storage::sync_file)). For small metadata files such as the manifest.
    fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Renames `from` to `to` in the directory, atomically replacing `to` (the caller syncs the
    /// directory).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Moves `name` into the `quarantine` subdirectory (created 0700 if missing) without
    /// replacing anything already there (a numeric suffix is added instead), durably in the
    /// subdirectory; returns the destination path. The caller syncs this directory.
    fn quarantine(&self, name: &str) -> io::Result<std::path::PathBuf>;
    /// Reads up to `out.len()` bytes of `name` at `offset` (both multiples of 4096), bypassing the
    /// page cache where possible, like [`read_file`](Storage::read_file). Returns the bytes read
    /// (short at the end of the file). The default reads the whole file.
    fn read_range(&self, name: &str, offset: u64, out: &mut [u8]) -> io::Result<usize> {
        let all = self.read_file(name)?;
        let from = (offset as usize).min(all.len());
        let n = out.len().min(all.len() - from);
        out[..n].copy_from_slice(&all[from..from + n]);
        Ok(n)
    }
    /// The shared acknowledged-watermark cell of this directory: the writer's (`writer`: created
    /// if missing, writable) or a reader's view (`Ok(None)` when there is none yet). The default
    /// has none.
    fn watermark(&self, writer: bool) -> io::Result<Option<Arc<dyn WatermarkCell>>> {
        let _ = writer;
        Ok(None)
    }
    /// A reader's shared hold on the writer lock: `Ok(None)` when a writer holds the directory;
    /// while the guard lives no writer can start. The default takes the exclusive lock.
    fn lock_shared(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.lock()
    }
    /// The process id the current (or last) lock holder recorded, if known.
    fn lock_holder(&self) -> Option<u32> {
        None
    }
    /// Directory of the named readers' cursor files (`readers/` in the log directory), where the
    /// storage supports named cursors.
    fn cursor_dir(&self) -> Option<PathBuf> {
        None
    }
}

#[cfg(feature = "sim")]
impl crate::Wal {
    /// Like [`Wal::open`](crate::Wal::open), on any [`Storage`] (the simulated disk of the tests
    /// crate). `config.dir()` is only used in messages.
    pub fn open_on(storage: Arc<dyn Storage>, config: crate::WalConfig) -> Result<crate::Wal, crate::WalError> {
        crate::Wal::open_storage(storage, config)
    }
}

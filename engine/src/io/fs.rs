//! Real filesystem storage: [`FsStorage`] implements [`Storage`] on a directory, with the
//! io_uring batch backend and its fallbacks ([`super::uring`]).

use super::buffers::validate_config;
use super::sync::{BufferedIo, PwriteIo};
use super::sys;
use super::uring::UringIo;
use super::{BatchIo, IoConfig, LockGuard, Storage};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name of the writer-lock file inside a log directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the shared watermark file inside a log directory (docs/design.md, "Watermark file").
pub const WATERMARK_FILE: &str = "watermark";
/// Subdirectory holding the named readers' cursor files.
pub const READERS_DIR: &str = "readers";
/// Magic of the watermark file (word 0).
pub const WATERMARK_MAGIC: u64 = u64::from_le_bytes(*b"TWWMARK1");
/// Byte offset of the acknowledged LSN in the watermark file.
pub const WATERMARK_LSN_OFFSET: usize = 8;
/// Byte offset of the publishing writer's pid in the watermark file.
pub const WATERMARK_PID_OFFSET: usize = 16;

/// Zero-fill chunk size.
const ZERO_CHUNK: usize = 1 << 20;
/// Chunk of a paced zero-fill (a spare prepared while the log runs): a log flush that has to push
/// the last chunk out of the device's write-back cache pays ~50 µs for it here, not ~0.4 ms.
const PACED_ZERO_CHUNK: usize = 128 << 10;

/// A log directory on a real filesystem.
#[derive(Debug, Clone)]
pub struct FsStorage {
    dir: PathBuf,
    /// The writer lock's file, while held: the io_uring backend registers it (see
    /// [`UringIo::hold_file`]).
    held_lock: std::sync::Arc<std::sync::Mutex<std::sync::Weak<File>>>,
    /// O_DIRECT read buffer reused by `read_file_into`.
    read_buf: std::sync::Arc<std::sync::Mutex<sys::AlignedBuf>>,
    /// What [`batch_io`](Storage::batch_io) found and chose.
    stack: std::sync::Arc<std::sync::Mutex<Option<super::stack::StorageStack>>>,
}

impl FsStorage {
    /// [`Storage::create_zeroed`] with zeros written `chunk` bytes at a time, `pace` called after
    /// each chunk (direct I/O only; the buffered fallback writes without pacing).
    fn create_zeroed_with(&self, name: &str, len: u64, chunk: usize, pace: &mut dyn FnMut(u64)) -> io::Result<()> {
        let path = self.file(name)?;
        let tmp = self.file(&format!("{name}.tmp"))?;
        if fs::symlink_metadata(&path).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", path.display())));
        }
        // Zero-fill through O_DIRECT where the filesystem allows it: the zeros do not pass through
        // (and pollute) the page cache, and no later writeback storm competes with the log's
        // flushes. Real writes either way, so no unwritten extents remain (durability.md).
        let direct = len % sys::ALIGN as u64 == 0;
        let f = if direct { sys::create_direct(&tmp).ok() } else { None };
        let f = match f {
            Some(f) => {
                write_zeros_direct(&f, len, chunk, pace).map_err(|e| ctx(e, "zero-fill", &tmp))?;
                f
            }
            None => {
                let mut f = create_truncated(&tmp)?;
                write_zeros(&mut f, len).map_err(|e| ctx(e, "zero-fill", &tmp))?;
                f
            }
        };
        f.sync_all().map_err(|e| ctx(e, "fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| ctx(e, "rename into place", &path))?;
        self.sync_dir()
    }

    /// Storage for `dir` (nothing is touched until a method is called).
    pub fn new(dir: impl Into<PathBuf>) -> FsStorage {
        FsStorage {
            dir: dir.into(),
            held_lock: Default::default(),
            read_buf: std::sync::Arc::new(std::sync::Mutex::new(sys::AlignedBuf::new(0))),
            stack: Default::default(),
        }
    }

    fn file(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid file name {name:?}")));
        }
        Ok(self.dir.join(name))
    }
}

/// Adds the path and the operation to an error, keeping its kind and errno text.
fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), super::ContextError { what: format!("{what} {}", path.display()), source: e })
}

/// The held writer lock: an open file description of `LOCK` with an exclusive `flock`; closing
/// it (drop) releases the lock.
#[derive(Debug)]
struct FsLock {
    _file: std::sync::Arc<File>,
}

impl LockGuard for FsLock {}

/// The watermark file mapped shared: the writer's (writable) or a reader's (read-only) view.
#[derive(Debug)]
struct FsWatermark {
    page: sys::SharedPage,
}

impl super::WatermarkCell for FsWatermark {
    fn load(&self) -> u64 {
        if self.page.load(0) != WATERMARK_MAGIC {
            return 0;
        }
        self.page.load(WATERMARK_LSN_OFFSET)
    }

    fn store(&self, lsn: u64) {
        self.page.store(WATERMARK_LSN_OFFSET, lsn);
    }
}

/// Writes `len` zero bytes from the file's current position, in 1 MiB chunks.
fn write_zeros(f: &mut File, mut len: u64) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    while len > 0 {
        let n = len.min(ZERO_CHUNK as u64) as usize;
        f.write_all(&zeros[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// Writes `len` zero bytes from offset 0 of an O_DIRECT file (`len` a multiple of 4096).
fn write_zeros_direct(f: &File, len: u64, chunk: usize, pace: &mut dyn FnMut(u64)) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let zeros = sys::AlignedBuf::new(chunk);
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(chunk as u64) as usize;
        f.write_all_at(&zeros.as_slice()[..n], off)?;
        off += n as u64;
        pace(off);
    }
    Ok(())
}

/// Creates (or truncates) `path` for writing, mode 0600, close-on-exec.
fn create_truncated(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ctx(e, "create", path))
}

fn sync_dir_path(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ctx(e, "fsync directory", dir))
}

/// Which kind of batch backend the directory supports, from the O_DIRECT probe result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectSupport {
    /// O_DIRECT works: io_uring or the pwritev2 fallback.
    Direct,
    /// O_DIRECT refused, buffered writes allowed by the configuration.
    Buffered,
}

/// Decides from the O_DIRECT probe result: EINVAL (tmpfs-like filesystems) is `Unsupported`
/// unless `allow_buffered_io`; other probe errors are returned with context.
pub fn decide_direct(dir: &Path, probe: io::Result<()>, allow_buffered_io: bool) -> io::Result<DirectSupport> {
    match probe {
        Ok(()) => Ok(DirectSupport::Direct),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            if allow_buffered_io {
                Ok(DirectSupport::Buffered)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{}: the filesystem refuses O_DIRECT ({e}); tradewal needs O_DIRECT to trust \
                         only what reached the device. Put the log on a disk filesystem (ext4, xfs), \
                         or set IoConfig::allow_buffered_io to use buffered writes + fdatasync",
                        dir.display()
                    ),
                ))
            }
        }
        Err(e) => Err(ctx(e, "probing O_DIRECT in", dir)),
    }
}

/// Opens a scratch file in `dir` with O_DIRECT and writes one aligned block to it, then removes
/// it. `Err(EINVAL)` means the filesystem does not support O_DIRECT.
pub fn probe_direct(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(".tradewal-odirect-probe-{}", std::process::id()));
    let res = (|| {
        let f = sys::create_direct(&path)?;
        let buf = sys::AlignedBuf::new(sys::ALIGN);
        use std::os::fd::AsRawFd;
        let n = sys::pwrite_once(f.as_raw_fd(), buf.as_slice(), 0)?;
        if n != sys::ALIGN {
            return Err(io::Error::other(format!("O_DIRECT probe write was short: {n} bytes")));
        }
        Ok(())
    })();
    let _ = fs::remove_file(&path);
    res
}

impl Storage for FsStorage {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn create_dir(&self) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(|e| ctx(e, "create directory", &self.dir))
    }

    fn lock(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| ctx(e, "open lock file", &path))?;
        if sys::flock_exclusive_nonblock(&file).map_err(|e| ctx(e, "flock", &path))? {
            // Record the holder's pid for a writer that finds the lock taken (a hint: the lock
            // itself is the flock). Not synced: after a crash the next holder rewrites it.
            use std::os::unix::fs::FileExt as _;
            let pid = format!("{}\n", std::process::id());
            file.set_len(0).and_then(|()| file.write_all_at(pid.as_bytes(), 0)).map_err(|e| ctx(e, "record pid in", &path))?;
            let file = std::sync::Arc::new(file);
            *self.held_lock.lock().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::downgrade(&file);
            Ok(Some(Box::new(FsLock { _file: file })))
        } else {
            Ok(None)
        }
    }

    fn lock_shared(&self) -> io::Result<Option<Box<dyn LockGuard>>> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .or_else(|_| OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&path))
            .map_err(|e| ctx(e, "open lock file", &path))?;
        if sys::flock_shared_nonblock(&file).map_err(|e| ctx(e, "flock", &path))? {
            Ok(Some(Box::new(FsLock { _file: std::sync::Arc::new(file) })))
        } else {
            Ok(None)
        }
    }

    fn lock_holder(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join(LOCK_FILE)).ok()?.trim().parse().ok()
    }

    fn cursor_dir(&self) -> Option<PathBuf> {
        Some(self.dir.join(READERS_DIR))
    }

    fn read_range(&self, name: &str, offset: u64, out: &mut [u8]) -> io::Result<usize> {
        let path = self.file(name)?;
        let mut scratch = self.read_buf.lock().unwrap_or_else(|p| p.into_inner());
        sys::read_range_direct(&path, offset, out, &mut scratch).map_err(|e| ctx(e, "read", &path))
    }

    fn watermark(&self, writer: bool) -> io::Result<Option<std::sync::Arc<dyn super::WatermarkCell>>> {
        let path = self.dir.join(WATERMARK_FILE);
        let mut opts = OpenOptions::new();
        opts.read(true).custom_flags(libc::O_CLOEXEC);
        if writer {
            opts.write(true).create(true).truncate(false).mode(0o600);
        }
        let file = match opts.open(&path) {
            Ok(f) => f,
            Err(e) if !writer && e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ctx(e, "open", &path)),
        };
        let len = file.metadata().map_err(|e| ctx(e, "stat", &path))?.len();
        if len < sys::SHARED_PAGE_BYTES as u64 {
            if !writer {
                return Ok(None); // being created
            }
            // Only ever extended, never shortened: a reader's mapping stays valid.
            file.set_len(sys::SHARED_PAGE_BYTES as u64).map_err(|e| ctx(e, "extend", &path))?;
        }
        let page = sys::SharedPage::map(&file, writer).map_err(|e| ctx(e, "mmap", &path))?;
        if writer {
            page.store(WATERMARK_PID_OFFSET, std::process::id() as u64);
            if page.load(0) != WATERMARK_MAGIC {
                page.store(WATERMARK_LSN_OFFSET, 0);
                page.store(0, WATERMARK_MAGIC);
            }
        }
        Ok(Some(std::sync::Arc::new(FsWatermark { page })))
    }

    /// File names (UTF-8 ones; others are skipped) of regular files, `LOCK` included.
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| ctx(e, "list", &self.dir))? {
            let entry = entry.map_err(|e| ctx(e, "list", &self.dir))?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn file_len(&self, name: &str) -> io::Result<u64> {
        let path = self.file(name)?;
        fs::metadata(&path).map(|m| m.len()).map_err(|e| ctx(e, "stat", &path))
    }

    fn read_file_into(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        let path = self.file(name)?;
        let mut direct = self.read_buf.lock().unwrap_or_else(|p| p.into_inner());
        match sys::read_direct_into(&path, &mut direct) {
            Ok(()) => {
                buf.clear();
                buf.extend_from_slice(direct.as_slice());
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                *buf = fs::read(&path).map_err(|e| ctx(e, "read", &path))?;
                Ok(())
            }
            Err(e) => Err(ctx(e, "read (O_DIRECT)", &path)),
        }
    }

    fn read_file(&self, name: &str) -> io::Result<Vec<u8>> {
        let path = self.file(name)?;
        match sys::read_direct(&path) {
            Ok(buf) => Ok(buf.as_slice().to_vec()),
            // O_DIRECT refused (tmpfs on older kernels): nothing but the page cache exists there.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => fs::read(&path).map_err(|e| ctx(e, "read", &path)),
            Err(e) => Err(ctx(e, "read (O_DIRECT)", &path)),
        }
    }

    fn sync_file(&self, name: &str) -> io::Result<()> {
        let path = self.file(name)?;
        File::open(&path).and_then(|f| f.sync_all()).map_err(|e| ctx(e, "fsync", &path))
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_dir_path(&self.dir)
    }

    /// Refuses (`AlreadyExists`) to replace an existing `name`: that could destroy acknowledged
    /// records. A leftover `<name>.tmp` from a crash is overwritten.
    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<()> {
        self.create_zeroed_with(name, len, ZERO_CHUNK, &mut |_| {})
    }

    /// Paced: small chunks, so that the zeros a log flush may have to push out of the device's
    /// write-back cache stay small (docs/design.md "Spares").
    fn create_zeroed_paced(&self, name: &str, len: u64, pace: &mut dyn FnMut(u64)) -> io::Result<()> {
        self.create_zeroed_with(name, len, PACED_ZERO_CHUNK, pace)
    }

    fn recycle(&self, from: &str, to: &str) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let src = self.file(from)?;
        let dest = self.file(to)?;
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", dest.display())));
        }
        // Block 0 zeroed through O_DIRECT (no page-cache copy to write back later) and flushed
        // before the rename: a torn first write of the new life can then show zeros in block 0,
        // never the old header.
        let zeros = sys::AlignedBuf::new(sys::ALIGN);
        let f = match sys::open_direct_write(&src) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(&src).map_err(|e| ctx(e, "open", &src))?
            }
            Err(e) => return Err(ctx(e, "open", &src)),
        };
        f.write_all_at(&zeros.as_slice()[..sys::ALIGN], 0).map_err(|e| ctx(e, "zero block 0 of", &src))?;
        f.sync_data().map_err(|e| ctx(e, "fdatasync", &src))?;
        drop(f);
        fs::rename(&src, &dest).map_err(|e| ctx(e, "rename into place", &dest))?;
        self.sync_dir()
    }

    fn zero_range(&self, name: &str, offset: u64, len: u64) -> io::Result<()> {
        let path = self.file(name)?;
        if offset > len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("zero_range: offset {offset} > len {len}")));
        }
        let mut f = OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(&path).map_err(|e| ctx(e, "open", &path))?;
        use std::io::Seek as _;
        f.seek(io::SeekFrom::Start(offset))?;
        write_zeros(&mut f, len - offset).map_err(|e| ctx(e, "zero", &path))?;
        f.set_len(len).map_err(|e| ctx(e, "truncate", &path))?;
        f.sync_all().map_err(|e| ctx(e, "fsync", &path))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let path = self.file(name)?;
        fs::remove_file(&path).map_err(|e| ctx(e, "remove", &path))
    }

    fn archive(&self, name: &str, dest_dir: &Path) -> io::Result<()> {
        let src = self.file(name)?;
        DirBuilder::new().recursive(true).mode(0o700).create(dest_dir).map_err(|e| ctx(e, "create directory", dest_dir))?;
        let dest = dest_dir.join(name);
        match fs::rename(&src, &dest) {
            Ok(()) => return sync_dir_path(dest_dir),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
            Err(e) => return Err(ctx(e, "rename to archive", &dest)),
        }
        // Another filesystem: copy under a temporary name, sync it, rename, sync the directory,
        // and only then remove the original.
        let tmp = dest_dir.join(format!("{name}.tmp"));
        fs::copy(&src, &tmp).map_err(|e| ctx(e, "copy to archive", &tmp))?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| ctx(e, "fsync", &tmp))?;
        fs::rename(&tmp, &dest).map_err(|e| ctx(e, "rename into place", &dest))?;
        sync_dir_path(dest_dir)?;
        fs::remove_file(&src).map_err(|e| ctx(e, "remove archived", &src))
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.file(name)?;
        let mut f = create_truncated(&path)?;
        f.write_all(bytes).map_err(|e| ctx(e, "write", &path))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (src, dest) = (self.file(from)?, self.file(to)?);
        fs::rename(&src, &dest).map_err(|e| ctx(e, "rename to", &dest))
    }

    fn quarantine(&self, name: &str) -> io::Result<PathBuf> {
        let src = self.file(name)?;
        let qdir = self.dir.join(crate::manifest::QUARANTINE_DIR);
        DirBuilder::new().recursive(true).mode(0o700).create(&qdir).map_err(|e| ctx(e, "create directory", &qdir))?;
        // The writer lock is held, so no other tradewal moves files in meanwhile.
        let dest = (0u32..)
            .map(|i| qdir.join(if i == 0 { name.to_string() } else { format!("{name}.{i}") }))
            .find(|p| fs::symlink_metadata(p).is_err())
            .expect("a free name");
        fs::rename(&src, &dest).map_err(|e| ctx(e, "rename to quarantine", &dest))?;
        sync_dir_path(&qdir)?;
        Ok(dest)
    }

    fn stack(&self) -> Option<super::stack::StorageStack> {
        self.stack.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn batch_io(&self, cfg: &IoConfig) -> io::Result<Box<dyn BatchIo>> {
        validate_config(cfg)?;
        let facts = super::stack::probe(&self.dir).map_err(|e| ctx(e, "identifying the storage stack of", &self.dir))?;
        let routed = super::stack::route(&facts, cfg.trust_storage);
        let write_path = routed.write_path;
        let reason = routed.reason.clone();
        *self.stack.lock().unwrap_or_else(|p| p.into_inner()) = Some(routed);
        if write_path == super::stack::WritePath::Refused {
            return Err(io::Error::new(io::ErrorKind::Unsupported, reason));
        }
        match decide_direct(&self.dir, probe_direct(&self.dir), cfg.allow_buffered_io)? {
            DirectSupport::Buffered => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "O_DIRECT unsupported here; using buffered writes + fdatasync (allow_buffered_io)"
                );
                return Ok(Box::new(BufferedIo::new(&self.dir, cfg)?));
            }
            DirectSupport::Direct => {}
        }
        if !cfg.disable_io_uring && write_path == super::stack::WritePath::IoUring {
            match UringIo::new(&self.dir, cfg) {
                Ok(mut u) => {
                    let held = self.held_lock.lock().unwrap_or_else(|p| p.into_inner()).upgrade();
                    if let Some(lock) = held {
                        use std::os::fd::AsRawFd as _;
                        u.hold_file(lock.as_raw_fd()).map_err(|e| ctx(e, "registering the lock file with io_uring", &self.dir))?;
                    }
                    return Ok(Box::new(u));
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    tracing::warn!(error = %e, "falling back to synchronous pwritev2(RWF_DSYNC) writes");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Box::new(PwriteIo::new(&self.dir, cfg)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn einval_probe_is_unsupported_unless_buffered_allowed() {
        let d = Path::new("/nowhere");
        let einval = || Err(io::Error::from_raw_os_error(libc::EINVAL));
        let e = decide_direct(d, einval(), false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("allow_buffered_io"), "{e}");
        assert_eq!(decide_direct(d, einval(), true).unwrap(), DirectSupport::Buffered);
        assert_eq!(decide_direct(d, Ok(()), false).unwrap(), DirectSupport::Direct);
        let eacces = decide_direct(d, Err(io::Error::from_raw_os_error(libc::EACCES)), true).unwrap_err();
        assert_eq!(eacces.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn bad_names_are_rejected() {
        let s = FsStorage::new("/tmp");
        for n in ["", ".", "..", "a/b", "../x"] {
            assert_eq!(s.file_len(n).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{n:?}");
        }
    }
}

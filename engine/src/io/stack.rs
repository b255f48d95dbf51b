//! What the log directory sits on, and which write path is trusted there.
//!
//! The engine's default write path (io_uring, O_DIRECT, `RWF_DSYNC`) was verified to make a
//! write durable only on the file systems listed in [`route`]. On FUSE, an in-place O_DIRECT
//! overwrite submitted through io_uring completes without the DSYNC ever reaching the file
//! system as an fsync (reproduced under LazyFS and under the tests crate's FUSE file system), so
//! every acknowledged record can vanish on a power cut. [`probe`] identifies the stack (statfs
//! magic, the mount table, the block device's cache and FUA in sysfs) and [`route`] decides, from
//! a table whose every row docs/durability.md explains, which path the writer uses.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// statfs magic numbers (linux/magic.h) of the file systems the table names.
pub mod magic {
    /// ext2, ext3 and ext4 share one magic.
    pub const EXT4: u64 = 0xEF53;
    /// XFS ("XFSB").
    pub const XFS: u64 = 0x5846_5342;
    /// btrfs.
    pub const BTRFS: u64 = 0x9123_683E;
    /// tmpfs.
    pub const TMPFS: u64 = 0x0102_1994;
    /// ramfs.
    pub const RAMFS: u64 = 0x8584_58F6;
    /// Any FUSE file system (fuse.lazyfs, sshfs, ...).
    pub const FUSE: u64 = 0x6573_5546;
    /// NFS (v2, v3, v4).
    pub const NFS: u64 = 0x6969;
    /// overlayfs (containers).
    pub const OVERLAY: u64 = 0x794C_7630;
}

/// The write path the writer uses for its batch writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WritePath {
    /// io_uring submissions of O_DIRECT writes, made durable as
    /// [`Durability`](crate::Durability) says (the default on verified stacks).
    IoUring,
    /// Synchronous `pwritev2` with `RWF_DSYNC` (or `pwrite` + `fdatasync` for
    /// [`Durability::LinkedFdatasync`](crate::Durability::LinkedFdatasync)): the flush goes through
    /// the VFS sync path, which forwards it to the file system (FUSE sends an `fsync`).
    SyncSyscalls,
    /// The log directory is refused: [`Wal::open`](crate::Wal::open) returns
    /// [`WalError::Config`](crate::WalError::Config) naming the opt-in.
    Refused,
}

impl fmt::Display for WritePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WritePath::IoUring => "io_uring",
            WritePath::SyncSyscalls => "synchronous pwritev2/fdatasync",
            WritePath::Refused => "refused",
        })
    }
}

/// The facts [`StorageStack::probe`] gathered about a log directory's storage stack.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackFacts {
    /// statfs `f_type` of the directory.
    pub fs_magic: u64,
    /// File system type from the mount table (`ext4`, `fuse.lazyfs`, ...), empty if unknown.
    pub fs_type: String,
    /// Mount point holding the directory (empty if the mount table could not be read).
    pub mount_point: PathBuf,
    /// Block device name in sysfs (`vda`, `loop3`); `None` for file systems without one (FUSE,
    /// tmpfs, NFS).
    pub device: Option<String>,
    /// The device's `queue/write_cache` (`write back` or `write through`), if it has one.
    pub write_cache: Option<String>,
    /// The device's `queue/fua`: whether it honours Force Unit Access (without it each durable
    /// write costs a separate cache flush).
    pub fua: Option<bool>,
}

/// What the table decided for a stack: the facts, the chosen path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageStack {
    /// What was found.
    pub facts: StackFacts,
    /// The path the writer uses (before fallbacks for a missing io_uring or O_DIRECT, which
    /// [`Wal::stats`](crate::Wal::stats)' `backend` reports).
    pub write_path: WritePath,
    /// Whether the table lists this stack as verified for the chosen path.
    pub verified: bool,
    /// One sentence: why this path (printed at open and by `tradewal inspect`).
    pub reason: String,
    /// A warning to log at open, if any (slow or unverified stack).
    pub warning: Option<String>,
}

impl StackFacts {
    /// A short name of the file system: the mount table's type, else the magic in hex.
    pub fn fs_name(&self) -> String {
        if self.fs_type.is_empty() {
            format!("magic {:#x}", self.fs_magic)
        } else {
            self.fs_type.clone()
        }
    }
}

/// The routing table. `trust` is [`WalConfig::trust_storage`](crate::WalConfig::trust_storage):
/// with it the table is not consulted and io_uring is used everywhere (only for stacks the user
/// verified themselves).
///
/// | file system | path | why |
/// |---|---|---|
/// | ext4, xfs | io_uring | verified here: kill -9 + power-cut rounds, the durability probes |
/// | btrfs | io_uring, with a warning | verified on a loop mount; much slower (COW + checksums) |
/// | FUSE | synchronous syscalls | io_uring O_DIRECT overwrites skip the DSYNC on FUSE (lost every acknowledged record under LazyFS) |
/// | tmpfs, ramfs | synchronous syscalls | memory only; O_DIRECT is refused unless `allow_buffered_io` |
/// | overlayfs | synchronous syscalls, with a warning | not verified; the syscall path forwards the flush to the upper file system |
/// | NFS | refused | not verified: the lock and the flush semantics depend on the server |
/// | anything else | synchronous syscalls, with a warning | not verified |
pub fn route(facts: &StackFacts, trust: bool) -> StorageStack {
    let name = facts.fs_name();
    let decide = |write_path, verified, reason: String, warning: Option<String>| StorageStack {
        facts: facts.clone(),
        write_path,
        verified,
        reason,
        warning,
    };
    if trust {
        return decide(
            WritePath::IoUring,
            false,
            format!("{name}: WalConfig::trust_storage(true): io_uring without consulting the table"),
            Some(format!(
                "{name}: the storage-stack table was overridden (trust_storage); acknowledged records \
                 are only as durable as this stack's handling of io_uring O_DIRECT RWF_DSYNC writes"
            )),
        );
    }
    match facts.fs_magic {
        magic::EXT4 | magic::XFS => {
            decide(WritePath::IoUring, true, format!("{name}: verified for io_uring O_DIRECT durable writes"), None)
        }
        magic::BTRFS => decide(
            WritePath::IoUring,
            true,
            format!("{name}: verified for io_uring O_DIRECT durable writes"),
            Some(format!(
                "{name}: durable writes are several times slower than on ext4 or xfs (copy-on-write \
                 and data checksums on every flush); see docs/durability.md"
            )),
        ),
        magic::FUSE => decide(
            WritePath::SyncSyscalls,
            true,
            format!(
                "{name}: FUSE does not forward RWF_DSYNC of io_uring O_DIRECT overwrites as an fsync; \
                 using synchronous pwritev2/fdatasync, which does"
            ),
            None,
        ),
        magic::TMPFS | magic::RAMFS => decide(
            WritePath::SyncSyscalls,
            true,
            format!("{name}: a memory file system; synchronous writes (nothing survives power loss)"),
            None,
        ),
        magic::NFS => decide(
            WritePath::Refused,
            false,
            format!(
                "{name}: NFS is not verified (locking and flush semantics depend on the server); \
                 set WalConfig::trust_storage(true) to use it anyway"
            ),
            None,
        ),
        magic::OVERLAY => decide(
            WritePath::SyncSyscalls,
            false,
            format!("{name}: overlayfs is not verified; using synchronous pwritev2/fdatasync"),
            Some(format!(
                "{name}: overlayfs is not a verified stack for the log; put the log on a volume \
                 (ext4 or xfs) for the io_uring path"
            )),
        ),
        _ => decide(
            WritePath::SyncSyscalls,
            false,
            format!("{name}: not a verified stack; using synchronous pwritev2/fdatasync"),
            Some(format!(
                "{name} is not a storage stack tradewal was verified on; using the synchronous write \
                 path (see docs/durability.md)"
            )),
        ),
    }
}

/// The mount (point, fstype, source) of `path` in a `/proc/self/mountinfo` text: the longest mount point
/// that is a path prefix of `path`, the later line on ties.
fn mountinfo_for(text: &str, path: &Path) -> Option<(PathBuf, String, String)> {
    let mut best: Option<(PathBuf, String, String)> = None;
    for line in text.lines() {
        // id parent maj:min root point opts [optional fields] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let Some(point) = left.split_whitespace().nth(4) else { continue };
        let mut r = right.split_whitespace();
        let Some(fstype) = r.next() else { continue };
        let source = super::sys::unescape_mount_field(r.next().unwrap_or(""));
        let point = PathBuf::from(super::sys::unescape_mount_field(point));
        if !path.starts_with(&point) {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _, _)| point.as_os_str().len() >= b.as_os_str().len()) {
            best = Some((point, fstype.to_string(), source));
        }
    }
    best
}

/// The sysfs directory of the block device `major:minor`, resolved to the whole disk for a
/// partition (partitions have no `queue/`).
fn sysfs_disk(major: u32, minor: u32) -> Option<PathBuf> {
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let dev = std::fs::canonicalize(&link).ok()?;
    if dev.join("queue").is_dir() {
        return Some(dev);
    }
    let parent = dev.parent()?.to_path_buf();
    parent.join("queue").is_dir().then_some(parent)
}

/// Identifies the storage stack of `dir` (which must exist).
pub fn probe(dir: &Path) -> io::Result<StackFacts> {
    use std::os::unix::fs::MetadataExt as _;
    let abs = std::fs::canonicalize(dir)?;
    let fs_magic = super::sys::fs_magic(&abs)?;
    let (mount_point, fs_type, source) =
        std::fs::read_to_string("/proc/self/mountinfo").ok().and_then(|t| mountinfo_for(&t, &abs)).unwrap_or_default();
    let (mut major, mut minor) = dev_major_minor(std::fs::metadata(&abs)?.dev());
    if major == 0 && source.starts_with("/dev/") {
        // btrfs (and other multi-device file systems) report an anonymous st_dev: the device is
        // the mount's source.
        use std::os::unix::fs::FileTypeExt as _;
        if let Ok(m) = std::fs::metadata(&source) {
            if m.file_type().is_block_device() {
                (major, minor) = dev_major_minor(m.rdev());
            }
        }
    }
    let disk = if major == 0 { None } else { sysfs_disk(major, minor) };
    let read = |p: PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let device = disk.as_ref().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
    let write_cache = disk.as_ref().and_then(|d| read(d.join("queue/write_cache")));
    let fua = disk.as_ref().and_then(|d| read(d.join("queue/fua"))).map(|s| s == "1");
    Ok(StackFacts { fs_magic, fs_type, mount_point, device, write_cache, fua })
}

/// Splits a Linux `dev_t` into (major, minor) (glibc's encoding).
pub fn dev_major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

impl StorageStack {
    /// Identifies the storage stack of `dir` (which must exist) and the write path
    /// [`Wal::open`](crate::Wal::open) would pick there (`trust`:
    /// [`WalConfig::trust_storage`](crate::WalConfig::trust_storage)).
    pub fn probe(dir: &Path, trust: bool) -> io::Result<StorageStack> {
        probe(dir).map(|f| route(&f, trust))
    }
}

impl fmt::Display for StorageStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.facts;
        write!(f, "{} at {}", s.fs_name(), s.mount_point.display())?;
        match &s.device {
            Some(d) => write!(
                f,
                ", device {d} (write cache: {}, FUA: {})",
                s.write_cache.as_deref().unwrap_or("unknown"),
                match s.fua {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "unknown",
                }
            )?,
            None => f.write_str(", no block device")?,
        }
        write!(f, "; write path: {} ({})", self.write_path, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(m: u64, t: &str) -> StackFacts {
        StackFacts { fs_magic: m, fs_type: t.into(), mount_point: "/x".into(), device: None, write_cache: None, fua: None }
    }

    #[test]
    fn every_table_row() {
        let rows: [(u64, &str, WritePath, bool, bool); 9] = [
            (magic::EXT4, "ext4", WritePath::IoUring, true, false),
            (magic::XFS, "xfs", WritePath::IoUring, true, false),
            (magic::BTRFS, "btrfs", WritePath::IoUring, true, true),
            (magic::FUSE, "fuse.lazyfs", WritePath::SyncSyscalls, true, false),
            (magic::TMPFS, "tmpfs", WritePath::SyncSyscalls, true, false),
            (magic::RAMFS, "ramfs", WritePath::SyncSyscalls, true, false),
            (magic::NFS, "nfs4", WritePath::Refused, false, false),
            (magic::OVERLAY, "overlay", WritePath::SyncSyscalls, false, true),
            (0x1234_5678, "zfs", WritePath::SyncSyscalls, false, true),
        ];
        for (m, t, path, verified, warns) in rows {
            let r = route(&facts(m, t), false);
            assert_eq!(r.write_path, path, "{t}");
            assert_eq!(r.verified, verified, "{t}");
            assert_eq!(r.warning.is_some(), warns, "{t}: {:?}", r.warning);
            assert!(r.reason.starts_with(t), "{t}: {}", r.reason);
        }
    }

    #[test]
    fn trust_overrides_every_row_and_warns() {
        for m in [magic::FUSE, magic::NFS, 0x42] {
            let r = route(&facts(m, "x"), true);
            assert_eq!(r.write_path, WritePath::IoUring);
            assert!(!r.verified);
            assert!(r.warning.as_deref().unwrap().contains("trust_storage"));
        }
    }

    #[test]
    fn mountinfo_longest_prefix_and_fuse_type() {
        let t = "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                 30 22 0:40 / /mnt/lazy rw,nosuid - fuse.lazyfs lazyfs rw,user_id=0\n\
                 31 22 0:41 / /mnt/with\\040space rw shared:5 - xfs /dev/loop0 rw\n";
        assert_eq!(mountinfo_for(t, Path::new("/work/a")).unwrap(), ("/".into(), "ext4".into(), "/dev/vda".into()));
        assert_eq!(mountinfo_for(t, Path::new("/mnt/lazy/log")).unwrap(), ("/mnt/lazy".into(), "fuse.lazyfs".into(), "lazyfs".into()));
        assert_eq!(
            mountinfo_for(t, Path::new("/mnt/with space/l")).unwrap(),
            ("/mnt/with space".into(), "xfs".into(), "/dev/loop0".into())
        );
        assert_eq!(mountinfo_for(t, Path::new("/mnt/lazyx")).unwrap().1, "ext4");
    }

    #[test]
    fn dev_split_matches_glibc() {
        // makedev(254, 0), makedev(7, 3), makedev(259, 65537)
        assert_eq!(dev_major_minor(0xfe00), (254, 0));
        assert_eq!(dev_major_minor(0x0703), (7, 3));
        // glibc's makedev(259, 65537), spelled out.
        let (major, minor) = (std::hint::black_box(259u64), std::hint::black_box(65537u64));
        let dev = ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(dev_major_minor(dev), (259, 65537));
    }
}

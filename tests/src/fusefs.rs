//! A FUSE file system that forgets: the crash file system of the storage-stack tests.
//!
//! It keeps every file in memory. Names (create, mkdir, rename, unlink) are durable at once; a
//! file's *data and length* become durable only when that file is `fsync`ed or `fdatasync`ed
//! through the file system (a FUSE `FSYNC` request). [`CrashFs::power_cut`] drops every write
//! and length change that no such request covered, as a machine losing power would drop a
//! volatile cache (the behaviour of LazyFS, which found the io_uring bug this guards against).
//!
//! Implementation: each file keeps an undo log of what unsynced writes overwrote; an fsync
//! clears it, a power cut replays it backwards. Pages are not cached by the kernel across a cut:
//! files are opened without `FOPEN_KEEP_CACHE`, so every open after the cut reads from here.
//!
//! Needs `/dev/fuse` and `fusermount3` (Debian package `fuse3`, which `./test` installs).

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// No attribute or entry caching in the kernel: another process's writes and a power cut must be
/// visible at once.
const TTL: Duration = Duration::ZERO;

enum Undo {
    /// `old` was at `offset` before an unsynced write.
    Bytes { offset: u64, old: Vec<u8> },
    /// The file was this long before an unsynced write or truncation.
    Len(u64),
}

enum Body {
    Dir(BTreeMap<OsString, u64>),
    File { data: Vec<u8>, undo: Vec<Undo> },
}

struct Inode {
    parent: u64,
    perm: u16,
    body: Body,
}

/// What the file system saw, for tests that must show which path was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsCounters {
    /// WRITE requests.
    pub writes: u64,
    /// FSYNC requests on files (fsync and fdatasync).
    pub fsyncs: u64,
    /// Power cuts so far.
    pub cuts: u64,
    /// Unsynced writes/truncations the cuts dropped.
    pub dropped_changes: u64,
}

struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    counters: FsCounters,
}

impl State {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.inodes.get(&ino)?;
        let (kind, size, nlink) = match &n.body {
            Body::Dir(_) => (FileType::Directory, 0, 2),
            Body::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
        };
        let (uid, gid) = owner();
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm: n.perm,
            nlink,
            uid,
            gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        })
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        match &self.inodes.get(&parent)?.body {
            Body::Dir(c) => c.get(name).copied(),
            Body::File { .. } => None,
        }
    }

    fn children_mut(&mut self, parent: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get_mut(&parent).map(|n| &mut n.body) {
            Some(Body::Dir(c)) => Ok(c),
            Some(Body::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn add(&mut self, parent: u64, name: &OsStr, perm: u16, body: Body) -> Result<u64, Errno> {
        if self.child(parent, name).is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.children_mut(parent)?.insert(name.to_owned(), ino);
        self.inodes.insert(ino, Inode { parent, perm, body });
        Ok(ino)
    }

    /// Removes `ino` and everything under it.
    fn drop_inode(&mut self, ino: u64) {
        if let Some(Inode { body: Body::Dir(c), .. }) = self.inodes.remove(&ino) {
            for (_, i) in c {
                self.drop_inode(i);
            }
        }
    }

    fn file(&mut self, ino: u64) -> Result<(&mut Vec<u8>, &mut Vec<Undo>), Errno> {
        match self.inodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::File { data, undo }) => Ok((data, undo)),
            Some(Body::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        let (data, undo) = self.file(ino)?;
        if len as usize == data.len() {
            return Ok(());
        }
        undo.push(Undo::Len(data.len() as u64));
        if (len as usize) < data.len() {
            undo.push(Undo::Bytes { offset: len, old: data[len as usize..].to_vec() });
        }
        data.resize(len as usize, 0);
        Ok(())
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let (data, undo) = self.file(ino)?;
        let (off, end) = (offset as usize, offset as usize + bytes.len());
        if end > data.len() {
            undo.push(Undo::Len(data.len() as u64));
            data.resize(end, 0);
        }
        undo.push(Undo::Bytes { offset, old: data[off..end].to_vec() });
        data[off..end].copy_from_slice(bytes);
        Ok(())
    }
}

/// Every file belongs to whoever runs the tests (the owner of `/proc/self`).
fn owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map(|m| (m.uid(), m.gid())).unwrap_or((0, 0))
}

struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn st(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filesystem for Fs {
    /// Asks for what libfuse-based file systems (LazyFS among them) get by default: asynchronous
    /// direct I/O (`FUSE_ASYNC_DIO`), under which the kernel runs an O_DIRECT write submitted
    /// through io_uring asynchronously.
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> io::Result<()> {
        if let Err(missing) = config.add_capabilities(fuser::InitFlags::FUSE_ASYNC_DIO) {
            return Err(io::Error::other(format!("the kernel's FUSE lacks {missing:?}")));
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let st = self.st();
        match st.child(parent.0, name).and_then(|i| st.attr(i)) {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.st().attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.st();
        if let Some(len) = size {
            if let Err(e) = st.set_len(ino.0, len) {
                return reply.error(e);
            }
            st.counters.writes += 1;
        }
        if let Some(m) = mode {
            match st.inodes.get_mut(&ino.0) {
                Some(n) => n.perm = (m & 0o7777) as u16,
                None => return reply.error(Errno::ENOENT),
            }
        }
        match st.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut st = self.st();
        let perm = (mode & !umask & 0o7777) as u16;
        match st.add(parent.0, name, perm, Body::Dir(BTreeMap::new())) {
            Ok(i) => reply.entry(&TTL, &st.attr(i).expect("just added"), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let Some(ino) = st.child(parent.0, name) else { return reply.error(Errno::ENOENT) };
        if matches!(st.inodes[&ino].body, Body::Dir(_)) {
            return reply.error(Errno::EISDIR);
        }
        st.children_mut(parent.0).expect("a dir").remove(name);
        st.drop_inode(ino);
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let Some(ino) = st.child(parent.0, name) else { return reply.error(Errno::ENOENT) };
        match &st.inodes[&ino].body {
            Body::Dir(c) if c.is_empty() => {}
            Body::Dir(_) => return reply.error(Errno::ENOTEMPTY),
            Body::File { .. } => return reply.error(Errno::ENOTDIR),
        }
        st.children_mut(parent.0).expect("a dir").remove(name);
        st.drop_inode(ino);
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut st = self.st();
        let Some(ino) = st.child(parent.0, name) else { return reply.error(Errno::ENOENT) };
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        if let Some(old) = st.child(newparent.0, newname) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return reply.error(Errno::EEXIST);
            }
            if old == ino {
                return reply.ok();
            }
            if let Body::Dir(c) = &st.inodes[&old].body {
                if !c.is_empty() {
                    return reply.error(Errno::ENOTEMPTY);
                }
            }
            st.drop_inode(old);
        }
        st.children_mut(parent.0).expect("a dir").remove(name);
        match st.children_mut(newparent.0) {
            Ok(c) => {
                c.insert(newname.to_owned(), ino);
            }
            Err(e) => return reply.error(e),
        }
        st.inodes.get_mut(&ino).expect("exists").parent = newparent.0;
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut st = self.st();
        if flags.0 & libc::O_TRUNC != 0 {
            if let Err(e) = st.set_len(ino.0, 0) {
                return reply.error(e);
            }
        }
        match st.inodes.get(&ino.0) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn create(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let mut st = self.st();
        let ino = match st.child(parent.0, name) {
            Some(_) if flags & libc::O_EXCL != 0 => return reply.error(Errno::EEXIST),
            Some(i) => {
                if flags & libc::O_TRUNC != 0 {
                    if let Err(e) = st.set_len(i, 0) {
                        return reply.error(e);
                    }
                }
                i
            }
            None => {
                let perm = (mode & !umask & 0o7777) as u16;
                match st.add(parent.0, name, perm, Body::File { data: Vec::new(), undo: Vec::new() }) {
                    Ok(i) => i,
                    Err(e) => return reply.error(e),
                }
            }
        };
        let a = st.attr(ino).expect("exists");
        reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut st = self.st();
        match st.file(ino.0) {
            Ok((data, _)) => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.st();
        st.counters.writes += 1;
        match st.write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut st = self.st();
        st.counters.fsyncs += 1;
        match st.file(ino.0) {
            Ok((_, undo)) => {
                undo.clear();
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let st = self.st();
        let Some(n) = st.inodes.get(&ino.0) else { return reply.error(Errno::ENOENT) };
        let Body::Dir(c) = &n.body else { return reply.error(Errno::ENOTDIR) };
        let mut all: Vec<(u64, FileType, OsString)> =
            vec![(ino.0, FileType::Directory, ".".into()), (n.parent, FileType::Directory, "..".into())];
        for (name, &i) in c {
            let kind = match st.inodes[&i].body {
                Body::Dir(_) => FileType::Directory,
                Body::File { .. } => FileType::RegularFile,
            };
            all.push((i, kind, name.clone()));
        }
        for (k, (i, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), (k + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Names are durable at once.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 64 GiB of 4 KiB blocks, nearly all free.
        reply.statfs(16 << 20, 15 << 20, 15 << 20, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut st = self.st();
        let cur = match st.file(ino.0) {
            Ok((d, _)) => d.len() as u64,
            Err(e) => return reply.error(e),
        };
        let end = offset + length;
        if end > cur {
            if let Err(e) = st.set_len(ino.0, end) {
                return reply.error(e);
            }
        }
        reply.ok();
    }
}

/// A mounted [`CrashFs`]; unmounted when dropped.
pub struct CrashFs {
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    mount_point: PathBuf,
}

impl CrashFs {
    /// Mounts an empty crash file system on `mount_point` (an existing empty directory). Fails
    /// with the reason when the kernel has no FUSE or `fusermount3` is missing.
    pub fn mount(mount_point: &Path) -> io::Result<CrashFs> {
        if !Path::new("/dev/fuse").exists() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "/dev/fuse is missing: this kernel has no FUSE"));
        }
        let root = Inode { parent: 1, perm: 0o755, body: Body::Dir(BTreeMap::new()) };
        let state = Arc::new(Mutex::new(State { inodes: HashMap::from([(1, root)]), next_ino: 2, counters: FsCounters::default() }));
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![MountOption::FSName("tw-crashfs".into()), MountOption::Subtype("crashfs".into())];
        let session = fuser::spawn_mount(Fs(state.clone()), mount_point, &cfg).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("mounting the FUSE crash file system on {} (needs fusermount3 from Debian's fuse3): {e}", mount_point.display()),
            )
        })?;
        Ok(CrashFs { state, session: Some(session), mount_point: mount_point.to_path_buf() })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every write and length change that no fsync of its file covered. Call it when no
    /// process has files open here (a killed writer's io_uring may still be finishing writes:
    /// wait until its lock is free).
    pub fn power_cut(&self) -> u64 {
        let mut st = self.st();
        let mut dropped = 0;
        for n in st.inodes.values_mut() {
            if let Body::File { data, undo } = &mut n.body {
                dropped += undo.len() as u64;
                while let Some(u) = undo.pop() {
                    match u {
                        Undo::Len(l) => data.resize(l as usize, 0),
                        Undo::Bytes { offset, old } => {
                            let off = offset as usize;
                            if data.len() < off + old.len() {
                                data.resize(off + old.len(), 0);
                            }
                            data[off..off + old.len()].copy_from_slice(&old);
                        }
                    }
                }
            }
        }
        st.counters.cuts += 1;
        st.counters.dropped_changes += dropped;
        dropped
    }

    /// What the file system has seen so far.
    pub fn counters(&self) -> FsCounters {
        self.st().counters.clone()
    }
}

impl Drop for CrashFs {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if let Err(e) = s.umount_and_join() {
                eprintln!("unmounting {}: {e}", self.mount_point.display());
            }
        }
    }
}

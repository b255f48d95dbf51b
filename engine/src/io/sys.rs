//! Thin syscall wrappers: 4 KiB-aligned buffers, `pwritev2(RWF_DSYNC)`, O_DIRECT opens and
//! reads, `flock`, and the mount-option check for `nobarrier`.
//!
//! Every `unsafe` block here carries a `// SAFETY:` line naming what makes it sound.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// Alignment (and size granularity) of O_DIRECT I/O in this engine.
pub const ALIGN: usize = 4096;

const _: () = assert!(ALIGN.is_power_of_two());

/// Rounds `n` up to a multiple of [`ALIGN`] (`None` on overflow).
pub fn round_up(n: usize) -> Option<usize> {
    n.checked_add(ALIGN - 1).map(|v| v & !(ALIGN - 1))
}

/// A zeroed heap buffer aligned to [`ALIGN`] bytes, as O_DIRECT needs. Its capacity is its
/// length rounded up to a multiple of [`ALIGN`] (at least one block), so an O_DIRECT transfer of
/// the whole capacity is always legal.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like a Box<[u8]>); nothing else aliases it.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`, which is Sync.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes aligned to [`ALIGN`]. Panics if the size overflows; aborts
    /// (like `Vec`) if the allocator fails.
    pub fn new(len: usize) -> AlignedBuf {
        let cap = round_up(len).expect("AlignedBuf size overflows").max(ALIGN);
        let layout = Layout::from_size_align(cap, ALIGN).expect("AlignedBuf layout");
        // SAFETY: `layout` has a non-zero size (cap >= ALIGN) as alloc_zeroed requires.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        AlignedBuf { ptr, len, layout }
    }

    /// Logical length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the logical length is 0.
    // Beside `len` (clippy::len_without_is_empty; the `sim` feature exports the type).
    #[allow(dead_code)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Allocated bytes (a multiple of [`ALIGN`], >= `len`).
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Sets the logical length to `min(len, self.len())`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Sets the logical length to `len` (at most the capacity: every byte of the capacity is
    /// initialised, zeroed at allocation or written since).
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "AlignedBuf::set_len {len} over capacity {}", self.capacity());
        self.len = len;
    }

    /// The first `len` bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for `capacity() >= len` initialised (zeroed) bytes owned by self,
        // and the shared borrow of self prevents mutation for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The first `len` bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; the unique borrow of self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The whole capacity, mutable (for O_DIRECT reads of a rounded-up length).
    pub fn as_mut_capacity(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for `capacity()` initialised bytes; unique borrow of self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }

    /// Raw pointer to the start (for submissions the kernel reads from).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with exactly self.layout and is freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("capacity", &self.capacity()).finish()
    }
}

fn pwritev2_flags(fd: RawFd, buf: &[u8], offset: u64, flags: libc::c_int) -> io::Result<usize> {
    let off = libc::off_t::try_from(offset).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset does not fit off_t"))?;
    let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    loop {
        // SAFETY: `iov` points at `buf`, which is borrowed (alive, not mutated) for the whole
        // call; the kernel only reads from it and does not keep the pointer after returning.
        let n = unsafe { libc::pwritev2(fd, &iov, 1, off, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        // EINTR before any byte was transferred: nothing was written, repeating is exact.
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// One `pwritev2(fd, [buf], offset, RWF_DSYNC)`: the bytes are durable when it returns Ok(n)
/// with `n == buf.len()`. A short count is returned as is (the caller treats it as fatal, I6).
pub fn pwritev2_dsync(fd: RawFd, buf: &[u8], offset: u64) -> io::Result<usize> {
    pwritev2_flags(fd, buf, offset, libc::RWF_DSYNC)
}

/// One plain `pwritev2(fd, [buf], offset, 0)` (not durable by itself). Short counts returned as is.
pub fn pwrite_once(fd: RawFd, buf: &[u8], offset: u64) -> io::Result<usize> {
    pwritev2_flags(fd, buf, offset, 0)
}

/// Opens an existing file for O_DIRECT writes.
pub fn open_direct_write(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).open(path)
}

/// Opens a file for O_DIRECT reads.
pub fn open_direct_read(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).open(path)
}

/// Creates (or truncates) a file, mode 0600, opened for O_DIRECT read and write.
pub fn create_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(path)
}

/// Reads a whole file through O_DIRECT into an [`AlignedBuf`] whose `len()` is the file length.
///
/// Reads are issued in aligned chunks into a rounded-up buffer (an O_DIRECT read that reaches
/// EOF returns the partial block). If a read ever comes back short of an aligned boundary before
/// EOF, the rest is read through a second, buffered descriptor. An `EINVAL` from the O_DIRECT
/// open or the first read (filesystem without O_DIRECT) is returned as is for the caller to
/// decide on a fallback.
pub fn read_direct(path: &Path) -> io::Result<AlignedBuf> {
    let mut buf = AlignedBuf::new(0);
    read_direct_into(path, &mut buf)?;
    Ok(buf)
}

/// Like [`read_direct`], into `buf`, reusing its allocation when it is large enough (so reading
/// many segment files faults in one buffer once, not one per file).
pub fn read_direct_into(path: &Path, buf: &mut AlignedBuf) -> io::Result<()> {
    let file = open_direct_read(path)?;
    let size =
        usize::try_from(file.metadata()?.len()).map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file does not fit in memory"))?;
    if buf.capacity() < size {
        *buf = AlignedBuf::new(size);
    }
    buf.set_len(size);
    let cap = buf.capacity();
    let mut done = 0usize;
    const CHUNK: usize = 1 << 20;
    while done < size {
        assert!(done % ALIGN == 0, "O_DIRECT read offset must stay aligned");
        let end = (done + CHUNK).min(cap);
        let n = file.read_at(&mut buf.as_mut_capacity()[done..end], done as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being read ({done} of {size} bytes)", path.display()),
            ));
        }
        done += n;
        if done < size && done % ALIGN != 0 {
            // Unaligned short read before EOF: finish without O_DIRECT.
            let plain = File::open(path)?;
            plain.read_exact_at(&mut buf.as_mut_capacity()[done..size], done as u64)?;
            done = size;
        }
    }
    buf.truncate(size);
    Ok(())
}

/// The statfs `f_type` (file system magic) of the file system holding `path`.
pub fn fs_magic(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct (integers only).
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `c` is a NUL-terminated path alive for the call; `st` is a valid, writable
        // `statfs` the kernel fills; no pointer is kept after the call.
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        if rc == 0 {
            #[allow(clippy::unnecessary_cast)]
            return Ok(st.f_type as u64);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(true)` when taken, `Ok(false)` when another open file
/// description (this process or another) holds it.
pub fn flock_exclusive_nonblock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock takes a valid open descriptor (borrowed from `file`) and no pointers.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// `flock(fd, LOCK_SH | LOCK_NB)`: `Ok(true)` when a shared lock was taken, `Ok(false)` when an
/// exclusive holder (a live writer) has the file locked.
pub fn flock_shared_nonblock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock takes a valid open descriptor (borrowed from `file`) and no pointers.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Bytes of a [`SharedPage`] mapping.
pub const SHARED_PAGE_BYTES: usize = 4096;

/// The first 4096 bytes of a file mapped `MAP_SHARED`, seen as 64-bit atomics: how the writer
/// publishes its acknowledged watermark to readers in other processes without a syscall per
/// check (docs/design.md, "Watermark file"). The file must be at least [`SHARED_PAGE_BYTES`]
/// long and is never shortened while mapped (a shorter file would fault on access); the writer
/// only ever extends it, readers refuse to map a shorter one.
pub struct SharedPage {
    ptr: NonNull<u8>,
    writable: bool,
}

// SAFETY: the mapping is only accessed through `AtomicU64`s (Sync); the pointer stays valid until drop.
unsafe impl Send for SharedPage {}
// SAFETY: as above: every access is an atomic operation.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Maps the first page of `file` (`writable`: read-write, else read-only). Fails with
    /// `InvalidData` if the file is shorter than a page.
    pub fn map(file: &File, writable: bool) -> io::Result<SharedPage> {
        if file.metadata()?.len() < SHARED_PAGE_BYTES as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "watermark file shorter than a page"));
        }
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh mapping (addr NULL) of a valid descriptor; the kernel chooses the address;
        // no Rust reference to that memory exists before mmap returns.
        let raw = unsafe { libc::mmap(std::ptr::null_mut(), SHARED_PAGE_BYTES, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(SharedPage { ptr, writable })
    }

    /// The 64-bit word at byte `offset` (a multiple of 8 below [`SHARED_PAGE_BYTES`]).
    pub fn word(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= SHARED_PAGE_BYTES, "SharedPage word {offset} out of range");
        // SAFETY: the mapping is SHARED_PAGE_BYTES long, page-aligned (so `offset` multiple of 8 is
        // 8-aligned) and lives as long as `self`; other processes touch it only with atomic
        // operations too, so a shared `AtomicU64` over it is sound. A read-only mapping is only
        // loaded from (`store` asserts `writable`), which AtomicU64 allows on read-only memory.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<std::sync::atomic::AtomicU64>() }
    }

    /// Stores `v` at `offset` with release ordering. Panics on a read-only mapping.
    pub fn store(&self, offset: usize, v: u64) {
        assert!(self.writable, "store into a read-only SharedPage");
        self.word(offset).store(v, std::sync::atomic::Ordering::Release);
    }

    /// Loads the word at `offset` with acquire ordering.
    pub fn load(&self, offset: usize) -> u64 {
        self.word(offset).load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), SHARED_PAGE_BYTES);
        }
    }
}

impl std::fmt::Debug for SharedPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPage").field("writable", &self.writable).finish()
    }
}

/// Reads `out.len()` bytes of `path` at `offset` (both multiples of [`ALIGN`]) through O_DIRECT
/// into an aligned scratch buffer, falling back to a buffered read where the filesystem refuses
/// O_DIRECT. Returns how many bytes were read (short at end of file).
pub fn read_range_direct(path: &Path, offset: u64, out: &mut [u8], scratch: &mut AlignedBuf) -> io::Result<usize> {
    let file = match open_direct_read(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let f = File::open(path)?;
            return read_full_at(&f, out, offset);
        }
        Err(e) => return Err(e),
    };
    let len = round_up(out.len()).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "read too large"))?;
    if offset % ALIGN as u64 != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "unaligned O_DIRECT read offset"));
    }
    if scratch.capacity() < len {
        *scratch = AlignedBuf::new(len);
    }
    let mut done = 0usize;
    while done < out.len() {
        let n = file.read_at(&mut scratch.as_mut_capacity()[done..len], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
        if done % ALIGN != 0 {
            break; // end of file
        }
    }
    let done = done.min(out.len());
    out[..done].copy_from_slice(&scratch.as_mut_capacity()[..done]);
    Ok(done)
}

fn read_full_at(f: &File, out: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < out.len() {
        let n = f.read_at(&mut out[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Decodes the octal escapes (`\040` for a space, ...) of a `/proc/self/mounts` field.
pub(crate) fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64 + (oct[1] - b'0') as u32 * 8 + (oct[2] - b'0') as u32;
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount (point, fstype, options) holding `path` in a `/proc/self/mounts` text: the longest
/// mount point that is a path prefix of `path`; on ties the later line (it is mounted on top).
pub fn mount_for<'a>(mounts: &'a str, path: &Path) -> Option<(PathBuf, &'a str, &'a str)> {
    let mut best: Option<(PathBuf, &str, &str)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(point), Some(fstype), Some(opts)) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let point = PathBuf::from(unescape_mount_field(point));
        if !path.starts_with(&point) {
            continue;
        }
        let longer = match &best {
            None => true,
            Some((b, _, _)) => point.as_os_str().len() >= b.as_os_str().len(),
        };
        if longer {
            best = Some((point, fstype, opts));
        }
    }
    best
}

/// Warnings about the mount in `mounts` (a `/proc/self/mounts` text) holding `path`
/// (already absolute): `nobarrier`/`barrier=0` (fsync does not flush the device cache) and
/// memory filesystems (nothing survives power loss).
pub fn mount_warnings_from(mounts: &str, path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Some((point, fstype, opts)) = mount_for(mounts, path) else {
        return out;
    };
    for opt in opts.split(',') {
        if opt == "nobarrier" || opt == "barrier=0" {
            out.push(format!(
                "{} is on {} ({fstype}) mounted with {opt}: fsync/RWF_DSYNC do not flush the device \
                 write cache, so acknowledged records can be lost on power failure",
                path.display(),
                point.display()
            ));
        }
    }
    if fstype == "tmpfs" || fstype == "ramfs" {
        out.push(format!(
            "{} is on {} ({fstype}), a memory filesystem: nothing survives a reboot or power loss",
            path.display(),
            point.display()
        ));
    }
    out
}

/// Warnings about the filesystem holding `dir` (see [`mount_warnings_from`]), read from
/// `/proc/self/mounts`. Returns an empty list when that file cannot be read.
pub fn mount_warnings(dir: &Path) -> Vec<String> {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| {
        if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().map(|c| c.join(dir)).unwrap_or_else(|_| dir.to_path_buf())
        }
    });
    match std::fs::read_to_string("/proc/self/mounts") {
        Ok(text) => mount_warnings_from(&text, &abs),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_is_aligned_zeroed_and_rounded() {
        for len in [0usize, 1, 4095, 4096, 4097, 1 << 20] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.len(), len);
            assert!(b.capacity() >= len.max(1) && b.capacity() % ALIGN == 0);
            assert!(b.as_slice().iter().all(|&x| x == 0));
            b.as_mut_slice().fill(7);
            assert!(b.as_slice().iter().all(|&x| x == 7));
        }
    }

    #[test]
    fn round_up_works() {
        assert_eq!(round_up(0), Some(0));
        assert_eq!(round_up(1), Some(4096));
        assert_eq!(round_up(4096), Some(4096));
        assert_eq!(round_up(4097), Some(8192));
        assert_eq!(round_up(usize::MAX), None);
    }

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,relatime 0 0
/dev/vdb /data ext4 rw,nobarrier 0 0
/dev/vdc /data/wal xfs rw,barrier=0 0 0
/dev/vdd /mnt/with\\040space ext4 rw,barrier=0 0 0
/dev/vde /datax ext4 rw 0 0
";

    #[test]
    fn mount_prefix_is_by_component_and_longest() {
        let (p, t, _) = mount_for(MOUNTS, Path::new("/data/wal/seg")).unwrap();
        assert_eq!((p.as_path(), t), (Path::new("/data/wal"), "xfs"));
        let (p, _, _) = mount_for(MOUNTS, Path::new("/datax/log")).unwrap();
        assert_eq!(p, Path::new("/datax"));
        let (p, _, _) = mount_for(MOUNTS, Path::new("/work/x")).unwrap();
        assert_eq!(p, Path::new("/"));
        let (p, _, _) = mount_for(MOUNTS, Path::new("/mnt/with space/a")).unwrap();
        assert_eq!(p, Path::new("/mnt/with space"));
    }

    #[test]
    fn warns_on_nobarrier_and_tmpfs_only() {
        assert!(mount_warnings_from(MOUNTS, Path::new("/work/x")).is_empty());
        assert!(mount_warnings_from(MOUNTS, Path::new("/datax/x")).is_empty());
        let w = mount_warnings_from(MOUNTS, Path::new("/data/x"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("nobarrier"), "{w:?}");
        let w = mount_warnings_from(MOUNTS, Path::new("/data/wal/x"));
        assert!(w.len() == 1 && w[0].contains("barrier=0"), "{w:?}");
        let w = mount_warnings_from(MOUNTS, Path::new("/dev/shm/x"));
        assert!(w.len() == 1 && w[0].contains("memory filesystem"), "{w:?}");
    }

    #[test]
    fn real_mount_table_is_readable() {
        // The directory of this test lives on some mount; the lookup must find one.
        let text = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let here = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
        assert!(mount_for(&text, &here).is_some());
    }
}

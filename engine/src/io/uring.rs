//! The io_uring batch write backend [`UringIo`] (O_DIRECT; `RWF_DSYNC` or write + linked
//! `fdatasync`): the ring, its submissions and completions, and all of their `unsafe`. The
//! buffers it writes from are [`buffers`](super::buffers)'s; the fallbacks without io_uring are
//! in [`sync`](super::sync); the device probes are the bench's (bench/src/uring_probe.rs).
//!
//! `unsafe` appears only around `SubmissionQueue::push`, where the kernel starts to hold a pointer
//! into one of our buffers. The rule that makes every push sound: a buffer is owned by the backend,
//! is marked in flight from its push until *all* of its completions (write, and fsync when linked)
//! have been reaped, is never handed out or freed while in flight (`buffer()` asserts, `Drop`
//! drains the ring first), and the ring never sees a pointer to anything else.

use super::buffers::{other, validate_config, write_fault, Common};
use super::sys::ALIGN;
use super::{BatchIo, Completion, Durability, FileSlot, IoConfig, IoFault};
use io_uring::{opcode, squeue, types, IoUring, Probe};
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

const _: () = assert!(ALIGN == 4096);

/// user_data of a CQE: `(buffer index << 1) | is_fsync`.
fn user_data(buf: usize, fsync: bool) -> u64 {
    ((buf as u64) << 1) | fsync as u64
}

/// A write CQE result as bytes or positive errno.
fn cqe_bytes(res: i32) -> Result<usize, i32> {
    if res < 0 {
        Err(-res)
    } else {
        Ok(res as usize)
    }
}

/// The outcome of a linked write + fdatasync pair from both CQE results. The write's own error
/// (or shortness) is reported first; `Canceled` only when the write looked fine.
fn linked_result(write_res: i32, fsync_res: i32, expected: usize) -> Result<(), IoFault> {
    if let Err(fault) = write_fault(cqe_bytes(write_res), expected) {
        // Say that the linked flush was cancelled too (the fail-stop path the notes describe).
        return Err(match (fault, fsync_res == -libc::ECANCELED) {
            (IoFault::Errno { errno, .. }, true) => IoFault::Errno { op: "write (linked fdatasync -ECANCELED)", errno },
            (f, _) => f,
        });
    }
    match fsync_res {
        f if f == -libc::ECANCELED => Err(IoFault::Canceled),
        f if f < 0 => Err(IoFault::Errno { op: "fdatasync", errno: -f }),
        _ => Ok(()),
    }
}

/// One submission in flight on the ring (indexed by buffer: a buffer is in flight at most once).
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    tag: u64,
    slot: FileSlot,
    len: usize,
    write_res: Option<i32>,
    fsync_res: Option<i32>,
}

/// The io_uring backend: O_DIRECT segment files, one `Write` per batch, made durable either by
/// `RWF_DSYNC` on the write or by a linked `Fsync(DATASYNC)`. No SQPOLL (it costs ~4 ms a write
/// here, durability.md).
pub struct UringIo {
    ring: IoUring,
    common: Common,
    /// Fixed at construction, one per buffer: no allocation per submit or reap.
    pending: Vec<Pending>,
    durability: Durability,
    /// A file registered with the ring to keep it open as long as the ring lives (the lock file).
    holds_file: bool,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("durability", &self.durability)
            .field("buffers", &self.common.bufs.len())
            .field("in_flight", &self.common.in_flight)
            .finish()
    }
}

/// Why io_uring cannot be used here, as an `io::ErrorKind::Unsupported` error (callers fall back
/// to [`PwriteIo`](super::sync::PwriteIo) on that kind).
fn unavailable(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("io_uring unavailable: {why}"))
}

/// Builds a ring of at least `entries` entries and checks that the kernel has `Write` and `Fsync`.
/// Every reason io_uring cannot be used (sysctl `kernel.io_uring_disabled`, setup refused with
/// ENOSYS/EPERM/EACCES, opcodes missing) is an `io::ErrorKind::Unsupported` error.
pub fn new_ring(entries: u32) -> io::Result<IoUring> {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        let v = s.trim();
        if v != "0" {
            return Err(unavailable(format!("/proc/sys/kernel/io_uring_disabled = {v}")));
        }
    }
    let ring = IoUring::new(entries).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES) => unavailable(format!("io_uring_setup failed: {e}")),
        _ => io::Error::new(e.kind(), format!("io_uring_setup({entries}) failed: {e}")),
    })?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| unavailable(format!("IORING_REGISTER_PROBE failed: {e}")))?;
    for (code, name) in [(opcode::Write::CODE, "IORING_OP_WRITE"), (opcode::Fsync::CODE, "IORING_OP_FSYNC")] {
        if !probe.is_supported(code) {
            return Err(unavailable(format!("the kernel lacks {name}")));
        }
    }
    Ok(ring)
}

impl UringIo {
    /// Builds the backend for segment files in `dir`: a ring of `2 * buffers` entries (probed for
    /// Write and Fsync) and `buffers` aligned buffers of `buffer_bytes`. Errors of kind
    /// `Unsupported` mean io_uring is not usable here (the caller may fall back to [`PwriteIo`](super::sync::PwriteIo)).
    pub fn new(dir: &Path, cfg: &IoConfig) -> io::Result<UringIo> {
        validate_config(cfg)?;
        let entries = u32::try_from(2 * cfg.buffers).map_err(|_| other("too many buffers"))?.max(4);
        let ring = new_ring(entries)?;
        assert!(ring.params().sq_entries() as usize >= 2 * cfg.buffers);
        let common = Common::new(dir, cfg, true)?;
        Ok(UringIo { ring, common, pending: vec![Pending::default(); cfg.buffers], durability: cfg.durability, holds_file: false })
    }

    fn linked(&self) -> bool {
        self.durability == Durability::LinkedFdatasync
    }

    /// Hands the unconsumed SQEs to the kernel. A linked write+fsync pair split across two
    /// enters would leave the fsync unordered against its write: that is reported as a failure.
    fn flush_sq(&mut self) -> io::Result<()> {
        loop {
            let before = self.ring.submission().len();
            if before == 0 {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(0) => return Err(other(format!("io_uring_enter consumed none of {before} submissions"))),
                Ok(_) => {
                    let after = self.ring.submission().len();
                    if self.linked() && after % 2 == 1 {
                        return Err(other("io_uring_enter split a linked write+fdatasync pair"));
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring_enter (submit) failed: {e}"))),
            }
        }
    }

    /// Moves every CQE in the completion ring into `pending`, handing finished submissions to
    /// `out`. Returns how many completions were handed out.
    fn drain(&mut self, out: &mut dyn FnMut(Completion)) -> usize {
        let linked = self.linked();
        let UringIo { ring, common, pending, .. } = self;
        let mut n = 0;
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            let buf = (ud >> 1) as usize;
            let is_fsync = ud & 1 == 1;
            assert!(buf < pending.len() && common.busy[buf], "CQE for buffer {buf} which is not in flight (user_data {ud:#x})");
            let p = &mut pending[buf];
            if is_fsync {
                assert!(linked && p.fsync_res.is_none(), "unexpected fsync CQE for buffer {buf}");
                p.fsync_res = Some(cqe.result());
            } else {
                assert!(p.write_res.is_none(), "second write CQE for buffer {buf}");
                p.write_res = Some(cqe.result());
            }
            let Some(w) = p.write_res else { continue };
            let result = if linked {
                let Some(f) = p.fsync_res else { continue };
                linked_result(w, f, p.len)
            } else {
                write_fault(cqe_bytes(w), p.len)
            };
            let (tag, slot) = (p.tag, p.slot);
            *p = Pending::default();
            common.unmark(slot, buf);
            n += 1;
            out(Completion { tag, result });
        }
        n
    }
}

impl BatchIo for UringIo {
    fn describe(&self) -> String {
        match self.durability {
            Durability::Dsync => "io_uring, O_DIRECT, RWF_DSYNC write".into(),
            Durability::LinkedFdatasync => "io_uring, O_DIRECT, write + linked fdatasync".into(),
        }
    }

    fn buffer_count(&self) -> usize {
        self.common.bufs.len()
    }

    fn buffer(&mut self, idx: usize) -> &mut [u8] {
        self.common.buffer(idx)
    }

    fn open_segment(&mut self, name: &str) -> io::Result<FileSlot> {
        self.common.open_segment(name)
    }

    fn close_segment(&mut self, slot: FileSlot) {
        self.common.close_segment(slot)
    }

    fn submit(&mut self, slot: FileSlot, offset: u64, buf: usize, len: usize, tag: u64) -> io::Result<()> {
        let fd = self.common.check(slot, buf, len)?;
        let ptr = self.common.bufs[buf].as_ptr();
        let linked = self.linked();
        let write = opcode::Write::new(types::Fd(fd), ptr, len as u32)
            .offset(offset)
            .rw_flags(if linked { 0 } else { libc::RWF_DSYNC })
            .build()
            .user_data(user_data(buf, false));
        {
            let mut sq = self.ring.submission();
            let need = if linked { 2 } else { 1 };
            if sq.capacity() - sq.len() < need {
                return Err(other(format!("io_uring submission queue full ({} of {})", sq.len(), sq.capacity())));
            }
            let pushed = if linked {
                let fsync = opcode::Fsync::new(types::Fd(fd)).flags(types::FsyncFlags::DATASYNC).build().user_data(user_data(buf, true));
                let pair = [write.flags(squeue::Flags::IO_LINK), fsync];
                // SAFETY: the write points at bufs[buf] (len <= its length, checked), which is
                // not in flight (checked) and is marked in flight right below until both CQEs are
                // reaped; Drop drains the ring before freeing buffers. The fd stays open: a
                // segment with writes in flight cannot be closed (close_segment asserts).
                unsafe { sq.push_multiple(&pair) }
            } else {
                // SAFETY: as above, for the single RWF_DSYNC write.
                unsafe { sq.push(&write) }
            };
            pushed.map_err(|_| other("io_uring submission queue full"))?;
        }
        self.pending[buf] = Pending { tag, slot, len, write_res: None, fsync_res: None };
        self.common.mark(slot, buf);
        self.flush_sq()
    }

    fn in_flight(&self) -> usize {
        self.common.in_flight
    }

    fn reap(&mut self, wait: bool, out: &mut dyn FnMut(Completion)) -> io::Result<usize> {
        let mut n = self.drain(out);
        while wait && n == 0 && self.common.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // EINTR: a signal; EBUSY: completions overflowed, draining below makes room.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring_enter (wait) failed: {e}"))),
            }
            n += self.drain(out);
        }
        Ok(n)
    }
}

impl UringIo {
    /// Registers `fd` with the ring, so that the kernel keeps its open file description alive as
    /// long as the ring, and the ring lives until its last write has completed, even when the
    /// process is killed. Registering the writer lock's descriptor thus keeps the directory locked
    /// until no write of a killed writer can still land (a new writer's recovery must not decide
    /// while an old write is in flight: kill -9 suite). Unregistered in `drop`, after the drain.
    pub fn hold_file(&mut self, fd: RawFd) -> io::Result<()> {
        self.ring.submitter().register_files(&[fd])?;
        self.holds_file = true;
        Ok(())
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        // The kernel may still read from buffers in flight: wait for every completion before the
        // buffers are freed. If the ring fails, leak the buffers rather than free them under it.
        let mut failures = 0;
        while self.common.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => failures = 0,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(_) => failures += 1,
            }
            self.drain(&mut |_| {});
            if failures >= 3 {
                std::mem::forget(std::mem::take(&mut self.common.bufs));
                return;
            }
        }
        if self.holds_file {
            // Synchronous, so the lock is released when `close`/drop of the log returns.
            let _ = self.ring.submitter().unregister_files();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sys::{self, AlignedBuf};
    use std::fs::OpenOptions;
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::path::PathBuf;

    /// A zero-filled, fsynced scratch file removed on drop.
    struct Scratch {
        path: PathBuf,
    }

    impl Scratch {
        fn create(dir: &Path, bytes: u64) -> io::Result<Scratch> {
            let name = format!(".tradewal-uring-test-{}.tmp", std::process::id());
            let path = dir.join(name);
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
            f.write_all(&vec![0u8; bytes as usize])?;
            f.sync_all()?;
            Ok(Scratch { path })
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Waits for `n` CQEs on `ring`; returns their (user_data, result) in arrival order.
    fn wait_cqes(ring: &mut IoUring, n: usize, out: &mut [(u64, i32); 2]) -> io::Result<()> {
        let mut got = 0;
        while got < n {
            for cqe in ring.completion() {
                out[got] = (cqe.user_data(), cqe.result());
                got += 1;
            }
            if got < n {
                match ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    #[test]
    fn linked_results_prefer_the_write_error() {
        let einval = IoFault::Errno { op: "write (linked fdatasync -ECANCELED)", errno: libc::EINVAL };
        assert_eq!(linked_result(-libc::EINVAL, -libc::ECANCELED, 4096), Err(einval));
        assert_eq!(linked_result(512, -libc::ECANCELED, 4096), Err(IoFault::Short { written: 512, expected: 4096 }));
        assert_eq!(linked_result(4096, -libc::ECANCELED, 4096), Err(IoFault::Canceled));
        assert_eq!(linked_result(4096, -libc::EIO, 4096), Err(IoFault::Errno { op: "fdatasync", errno: libc::EIO }));
        assert_eq!(linked_result(4096, 0, 4096), Ok(()));
        assert_eq!(write_fault(cqe_bytes(-libc::ENOSPC), 8192), Err(IoFault::Errno { op: "write", errno: libc::ENOSPC }));
        assert_eq!(write_fault(cqe_bytes(0), 8192), Err(IoFault::Short { written: 0, expected: 8192 }));
        assert_eq!(write_fault(cqe_bytes(8192), 8192), Ok(()));
    }

    #[test]
    fn user_data_encodes_buffer_and_part() {
        for b in [0usize, 1, 7, (1 << 20) - 1] {
            for f in [false, true] {
                let ud = user_data(b, f);
                assert_eq!(((ud >> 1) as usize, ud & 1 == 1), (b, f));
            }
        }
    }

    /// The kernel fact the fail-stop mapping relies on (durability.md): a misaligned O_DIRECT
    /// write fails -EINVAL and the fdatasync linked to it completes -ECANCELED.
    #[test]
    fn kernel_cancels_fsync_linked_to_a_failed_write() {
        let ring = match new_ring(4) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("SKIP kernel_cancels_fsync_linked_to_a_failed_write: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let mut ring = ring;
        let dir = std::env::temp_dir();
        let scratch = Scratch::create(&dir, 16384).unwrap();
        let file = sys::open_direct_write(&scratch.path).unwrap();
        let buf = AlignedBuf::new(4096);
        let fd = types::Fd(file.as_raw_fd());
        let w = opcode::Write::new(fd, buf.as_ptr(), 4096).offset(4097).build().user_data(0).flags(squeue::Flags::IO_LINK);
        let f = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(1);
        // SAFETY: `buf` and `file` stay alive until wait_cqes has reaped both CQEs; if it fails,
        // the buffer is leaked (forgotten) before panicking, never freed under the kernel.
        unsafe { ring.submission().push_multiple(&[w, f]) }.unwrap();
        ring.submit().unwrap();
        let mut c = [(0u64, 0i32); 2];
        if let Err(e) = wait_cqes(&mut ring, 2, &mut c) {
            std::mem::forget(buf);
            panic!("{e}");
        }
        c.sort();
        assert_eq!(c, [(0, -libc::EINVAL), (1, -libc::ECANCELED)]);
    }
}

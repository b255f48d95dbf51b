//! The write backends without io_uring: [`PwriteIo`] (O_DIRECT, synchronous `pwritev2` with
//! `RWF_DSYNC`, or `pwrite` + `fdatasync`) and [`BufferedIo`] (no O_DIRECT, for tmpfs: `pwrite` +
//! `fdatasync`). Each write happens inside `submit`; the syscalls are `sys`'s.

use super::buffers::{errno_of, write_fault, Common};
use super::sys;
use super::{BatchIo, Completion, Durability, FileSlot, IoConfig, IoFault};
use std::collections::VecDeque;
use std::io;
use std::path::Path;

/// Synchronous core of the fallbacks: the write happens inside `submit`; its completion is
/// queued (in a queue preallocated for every buffer) until `reap`.
#[derive(Debug)]
struct SyncCore {
    common: Common,
    done: VecDeque<(Completion, FileSlot, usize)>,
    durability: Durability,
}

impl SyncCore {
    fn new(dir: &Path, cfg: &IoConfig, direct: bool) -> io::Result<SyncCore> {
        let common = Common::new(dir, cfg, direct)?;
        Ok(SyncCore { common, done: VecDeque::with_capacity(cfg.buffers), durability: cfg.durability })
    }

    fn submit(&mut self, slot: FileSlot, offset: u64, buf: usize, len: usize, tag: u64, dsync: bool) -> io::Result<()> {
        let fd = self.common.check(slot, buf, len)?;
        let data = &self.common.bufs[buf].as_slice()[..len];
        let res = if dsync { sys::pwritev2_dsync(fd, data, offset) } else { sys::pwrite_once(fd, data, offset) };
        let mut result = write_fault(res.map_err(|e| errno_of(&e)), len);
        if result.is_ok() && !dsync {
            let seg = self.common.segs[slot as usize].as_ref().expect("checked above");
            if let Err(e) = seg.file.sync_data() {
                result = Err(IoFault::Errno { op: "fdatasync", errno: errno_of(&e) });
            }
        }
        assert!(self.done.len() < self.done.capacity(), "completion queue sized for every buffer");
        self.common.mark(slot, buf);
        self.done.push_back((Completion { tag, result }, slot, buf));
        Ok(())
    }

    fn reap(&mut self, out: &mut dyn FnMut(Completion)) -> usize {
        let mut n = 0;
        while let Some((c, slot, buf)) = self.done.pop_front() {
            self.common.unmark(slot, buf);
            n += 1;
            out(c);
        }
        n
    }
}

/// Fallback without io_uring: O_DIRECT files, each batch written synchronously in `submit` with
/// `pwritev2(RWF_DSYNC)` (`Durability::Dsync`) or `pwrite` + `fdatasync` (`LinkedFdatasync`).
#[derive(Debug)]
pub struct PwriteIo(SyncCore);

impl PwriteIo {
    /// Builds the backend for segment files in `dir`.
    pub fn new(dir: &Path, cfg: &IoConfig) -> io::Result<PwriteIo> {
        Ok(PwriteIo(SyncCore::new(dir, cfg, true)?))
    }
}

/// Fallback where O_DIRECT is unsupported (tmpfs): buffered `pwrite` + `fdatasync` per batch,
/// whatever the durability mode.
#[derive(Debug)]
pub struct BufferedIo(SyncCore);

impl BufferedIo {
    /// Builds the backend for segment files in `dir`.
    pub fn new(dir: &Path, cfg: &IoConfig) -> io::Result<BufferedIo> {
        Ok(BufferedIo(SyncCore::new(dir, cfg, false)?))
    }
}

macro_rules! sync_batch_io {
    ($ty:ty, $dsync:expr, $describe:expr) => {
        impl BatchIo for $ty {
            fn describe(&self) -> String {
                #[allow(clippy::redundant_closure_call)]
                ($describe)(self.0.durability)
            }
            fn buffer_count(&self) -> usize {
                self.0.common.bufs.len()
            }
            fn buffer(&mut self, idx: usize) -> &mut [u8] {
                self.0.common.buffer(idx)
            }
            fn open_segment(&mut self, name: &str) -> io::Result<FileSlot> {
                self.0.common.open_segment(name)
            }
            fn close_segment(&mut self, slot: FileSlot) {
                self.0.common.close_segment(slot)
            }
            fn submit(&mut self, slot: FileSlot, offset: u64, buf: usize, len: usize, tag: u64) -> io::Result<()> {
                #[allow(clippy::redundant_closure_call)]
                let dsync = ($dsync)(self.0.durability);
                self.0.submit(slot, offset, buf, len, tag, dsync)
            }
            fn in_flight(&self) -> usize {
                self.0.common.in_flight
            }
            fn reap(&mut self, _wait: bool, out: &mut dyn FnMut(Completion)) -> io::Result<usize> {
                // Every submission completed inside submit: nothing to wait for.
                Ok(self.0.reap(out))
            }
        }
    };
}

sync_batch_io!(PwriteIo, |d| d == Durability::Dsync, |d| match d {
    Durability::Dsync => "pwritev2 fallback, O_DIRECT, RWF_DSYNC".to_string(),
    Durability::LinkedFdatasync => "pwrite fallback, O_DIRECT, pwrite + fdatasync".to_string(),
});
sync_batch_io!(BufferedIo, |_d| false, |_d| { "buffered fallback (no O_DIRECT), pwrite + fdatasync".to_string() });

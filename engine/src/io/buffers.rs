//! The batch buffers every write backend owns (`Common`): aligned buffers (O_DIRECT), their
//! in-flight marks (the rule of [`BatchIo`](super::BatchIo): a buffer is not touched between its
//! submission and the reaping of its completion), and the open segment files. The allocation
//! itself ([`AlignedBuf`]) is in `sys`, with the raw allocation.

use super::sys::{self, AlignedBuf, ALIGN};
use super::{FileSlot, IoConfig, IoFault};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub(crate) fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

pub(crate) fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Most buffers a backend accepts (a ring needs 2 entries per buffer; the kernel caps rings at
/// 32768 entries).
pub const MAX_BUFFERS: usize = 4096;

/// Checks an [`IoConfig`]: 1..=[`MAX_BUFFERS`] buffers, buffer size a non-zero multiple of 4096 that fits
/// one io_uring write (`u32`).
pub fn validate_config(cfg: &IoConfig) -> io::Result<()> {
    let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    if cfg.buffers == 0 || cfg.buffers > MAX_BUFFERS {
        return bad(format!("IoConfig::buffers must be in 1..={MAX_BUFFERS}, got {}", cfg.buffers));
    }
    if cfg.buffer_bytes == 0 || cfg.buffer_bytes % ALIGN != 0 {
        return bad(format!("IoConfig::buffer_bytes must be a non-zero multiple of 4096, got {}", cfg.buffer_bytes));
    }
    if u32::try_from(cfg.buffer_bytes).is_err() {
        return bad(format!("IoConfig::buffer_bytes {} exceeds one write (u32)", cfg.buffer_bytes));
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) file: File,
    name: String,
    in_flight: usize,
}

/// State shared by every backend: buffers, their in-flight marks, open segment files.
#[derive(Debug)]
pub(crate) struct Common {
    dir: PathBuf,
    direct: bool,
    pub(crate) bufs: Vec<AlignedBuf>,
    pub(crate) busy: Vec<bool>,
    pub(crate) segs: Vec<Option<Segment>>,
    pub(crate) in_flight: usize,
}

impl Common {
    pub(crate) fn new(dir: &Path, cfg: &IoConfig, direct: bool) -> io::Result<Common> {
        validate_config(cfg)?;
        Ok(Common {
            dir: dir.to_path_buf(),
            direct,
            bufs: (0..cfg.buffers).map(|_| AlignedBuf::new(cfg.buffer_bytes)).collect(),
            busy: vec![false; cfg.buffers],
            segs: Vec::new(),
            in_flight: 0,
        })
    }

    pub(crate) fn buffer(&mut self, idx: usize) -> &mut [u8] {
        assert!(idx < self.bufs.len(), "buffer {idx} out of range ({} buffers)", self.bufs.len());
        assert!(!self.busy[idx], "buffer {idx} is in flight: it may not be touched until its completion is reaped");
        self.bufs[idx].as_mut_slice()
    }

    pub(crate) fn open_segment(&mut self, name: &str) -> io::Result<FileSlot> {
        if name.is_empty() || name.contains('/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad segment name {name:?}")));
        }
        let path = self.dir.join(name);
        let file = if self.direct {
            sys::open_direct_write(&path)
        } else {
            OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(&path)
        }
        .map_err(|e| io::Error::new(e.kind(), format!("open {} for writing: {e}", path.display())))?;
        let seg = Segment { file, name: name.to_owned(), in_flight: 0 };
        let slot = match self.segs.iter().position(Option::is_none) {
            Some(i) => {
                self.segs[i] = Some(seg);
                i
            }
            None => {
                self.segs.push(Some(seg));
                self.segs.len() - 1
            }
        };
        FileSlot::try_from(slot).map_err(|_| other("too many open segments"))
    }

    pub(crate) fn close_segment(&mut self, slot: FileSlot) {
        let entry = self.segs.get_mut(slot as usize).unwrap_or_else(|| panic!("close_segment: slot {slot} is not open"));
        let seg = entry.as_ref().unwrap_or_else(|| panic!("close_segment: slot {slot} is not open"));
        // Checked before the file is closed: the kernel may hold its descriptor until then.
        assert!(seg.in_flight == 0, "close_segment: {} writes in flight on {}", seg.in_flight, seg.name);
        *entry = None;
    }

    /// Checks a submission's arguments; returns the file's descriptor.
    pub(crate) fn check(&self, slot: FileSlot, buf: usize, len: usize) -> io::Result<RawFd> {
        assert!(buf < self.bufs.len(), "submit: buffer {buf} out of range");
        assert!(!self.busy[buf], "submit: buffer {buf} is already in flight");
        assert!(len > 0 && len <= self.bufs[buf].len(), "submit: len {len} not in 1..={}", self.bufs[buf].len());
        match self.segs.get(slot as usize) {
            Some(Some(seg)) => Ok(seg.file.as_raw_fd()),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("submit: file slot {slot} is not open"))),
        }
    }

    pub(crate) fn mark(&mut self, slot: FileSlot, buf: usize) {
        self.busy[buf] = true;
        self.in_flight += 1;
        if let Some(Some(seg)) = self.segs.get_mut(slot as usize) {
            seg.in_flight += 1;
        }
    }

    pub(crate) fn unmark(&mut self, slot: FileSlot, buf: usize) {
        assert!(self.busy[buf], "completion for buffer {buf} that is not in flight");
        self.busy[buf] = false;
        self.in_flight -= 1;
        if let Some(Some(seg)) = self.segs.get_mut(slot as usize) {
            seg.in_flight -= 1;
        }
    }
}

/// Turns a write result (bytes or error) into a fault, short writes included (I6: never resubmit).
pub(crate) fn write_fault(res: Result<usize, i32>, expected: usize) -> Result<(), IoFault> {
    match res {
        Err(errno) => Err(IoFault::Errno { op: "write", errno }),
        Ok(written) if written < expected => Err(IoFault::Short { written, expected }),
        Ok(_) => Ok(()),
    }
}

//! Device-level measurements: what one durable 4 KiB write costs with no log on top.
//!
//! The io_uring probes (`RWF_DSYNC` with a sleeping or a spinning waiter, no sync, linked
//! `fdatasync`, sequential bandwidth) live in [`crate::uring_probe`] (the only
//! bench file allowed unsafe_code); this module adds two probes built on `std` only: `pwrite` on an
//! `O_DIRECT|O_DSYNC` file, and a buffered 4 KiB write followed by `fdatasync`. Every probe writes into a file that was zero-filled for real and synced first, so
//! the timed writes are pure overwrites (no unwritten extents, no metadata journaling).

use crate::uring_probe;
use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// One 4 KiB durable-write probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Probe {
    /// io_uring O_DIRECT write with `RWF_DSYNC`, queue depth 1: the floor.
    UringDsync,
    /// The floor with a spinning waiter: submit without waiting, then poll the completion queue.
    UringDsyncSpin,
    /// io_uring O_DIRECT write, no sync (not durable).
    UringNoSync,
    /// io_uring O_DIRECT write linked (`IOSQE_IO_LINK`) to an `fdatasync`.
    UringLinkedFdatasync,
    /// `pwrite` on an `O_DIRECT|O_DSYNC` file (std only).
    PwriteODsync,
    /// Buffered 4 KiB `write` + `fdatasync` (std only; what the JSONL sketch does per trade).
    BufferedFdatasync,
}

impl Probe {
    /// Table name.
    pub fn label(self) -> &'static str {
        match self {
            Probe::UringDsync => "floor: uring O_DIRECT+RWF_DSYNC",
            Probe::UringDsyncSpin => "spin-floor: uring RWF_DSYNC, CQ polled",
            Probe::UringNoSync => "uring O_DIRECT, no sync",
            Probe::UringLinkedFdatasync => "uring write+linked fdatasync",
            Probe::PwriteODsync => "pwrite O_DIRECT|O_DSYNC",
            Probe::BufferedFdatasync => "buffered write+fdatasync",
        }
    }

    /// File-name friendly name.
    pub fn slug(self) -> &'static str {
        match self {
            Probe::UringDsync => "floor",
            Probe::UringDsyncSpin => "spin-floor",
            Probe::UringNoSync => "uring-nosync",
            Probe::UringLinkedFdatasync => "uring-linked-fdatasync",
            Probe::PwriteODsync => "pwrite-odsync",
            Probe::BufferedFdatasync => "buffered-fdatasync",
        }
    }

    /// True when the probe needs io_uring.
    pub fn needs_uring(self) -> bool {
        matches!(self, Probe::UringDsync | Probe::UringDsyncSpin | Probe::UringNoSync | Probe::UringLinkedFdatasync)
    }
}

/// Runs `samples` writes of the probe in a file under `dir`; one duration per write.
pub fn measure(probe: Probe, dir: &Path, samples: usize) -> anyhow::Result<Vec<Duration>> {
    std::fs::create_dir_all(dir)?;
    match probe {
        Probe::UringDsync => Ok(uring_probe::measure_floor(dir, samples)?),
        Probe::UringDsyncSpin => Ok(uring_probe::measure_floor_spin(dir, samples)?),
        Probe::UringNoSync => Ok(uring_probe::measure_nosync(dir, samples)?),
        Probe::UringLinkedFdatasync => Ok(uring_probe::measure_linked_fdatasync(dir, samples)?),
        Probe::PwriteODsync => pwrite_odsync(dir, samples),
        Probe::BufferedFdatasync => buffered_fdatasync(dir, samples),
    }
}

/// Sequential O_DIRECT write bandwidth, bytes per second (`write_bytes` per write).
pub fn bandwidth(dir: &Path, write_bytes: usize, total_bytes: u64) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    Ok(uring_probe::measure_bandwidth(dir, write_bytes, total_bytes)?)
}

/// Blocks in the probe file; writes cycle through them.
const PROBE_BLOCKS: u64 = 1024;

/// Creates `path` with `PROBE_BLOCKS` 4 KiB blocks of real zeros, synced with its directory.
fn zero_filled(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(name);
    let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let zeros = vec![0u8; 4096 * 64];
    for _ in 0..PROBE_BLOCKS / 64 {
        f.write_all(&zeros)?;
    }
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

/// A 4 KiB slice of `backing` that starts on a 4096-byte boundary (O_DIRECT needs it).
fn aligned_block(backing: &mut [u8]) -> &mut [u8] {
    let off = backing.as_ptr().align_offset(4096);
    assert!(off + 4096 <= backing.len(), "backing buffer holds an aligned block");
    &mut backing[off..off + 4096]
}

fn pwrite_odsync(dir: &Path, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let path = zero_filled(dir, "probe-pwrite-odsync.dat")?;
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&path)
        .with_context(|| format!("opening {} with O_DIRECT|O_DSYNC (tmpfs refuses O_DIRECT)", path.display()))?;
    let mut backing = vec![0u8; 8192];
    let block = aligned_block(&mut backing);
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        f.write_all_at(block, (i % PROBE_BLOCKS) * 4096)?;
        out.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(out)
}

fn buffered_fdatasync(dir: &Path, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let path = zero_filled(dir, "probe-buffered-fdatasync.dat")?;
    let f = OpenOptions::new().write(true).open(&path)?;
    let mut block = vec![0u8; 4096];
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        f.write_all_at(&block, (i % PROBE_BLOCKS) * 4096)?;
        f.sync_data()?;
        out.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(out)
}

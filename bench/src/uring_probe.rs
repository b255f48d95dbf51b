//! The io_uring device probes: what one 4 KiB O_DIRECT write costs through the ring with no log
//! on top (the floor, with a sleeping or a spinning waiter, without sync, linked to an
//! `fdatasync`), and sequential O_DIRECT `RWF_DSYNC` bandwidth. They measure the device, so they
//! live in the bench, not in the engine.
//!
//! This is the bench's only file with `unsafe`: the submission-queue pushes, where the kernel
//! starts to hold a pointer into one of our buffers. Every push is sound for the same reason:
//! the buffer is owned by the probe, outlives the wait for its completions, and is leaked (never
//! freed) if the wait fails while the kernel may still hold it.
//!
//! Every probe writes into a scratch file zero-filled for real and fsynced first (so the timed
//! writes are pure overwrites: no unwritten extents, no metadata journaling) and removed afterwards.

use io_uring::{opcode, squeue, types, IoUring};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// O_DIRECT alignment (offsets, lengths, buffer addresses).
const ALIGN: usize = 4096;

/// How long a spinning waiter polls the completion queue before it gives up.
const SPIN_LIMIT: Duration = Duration::from_secs(10);

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// A 4096-aligned window of `len` bytes inside a plain `Vec` (no unsafe allocation needed).
struct Aligned {
    raw: Vec<u8>,
    at: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let raw = vec![0u8; len + ALIGN];
        let at = raw.as_ptr().align_offset(ALIGN);
        assert!(at + len <= raw.len(), "aligned window fits");
        Aligned { raw, at, len }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.at..self.at + self.len]
    }

    fn as_ptr(&self) -> *const u8 {
        self.raw[self.at..].as_ptr()
    }
}

/// A zero-filled, fsynced scratch file removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(dir: &Path, bytes: u64) -> io::Result<Scratch> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(".tradewal-measure-{}-{}.tmp", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        let scratch = Scratch { path };
        let zeros = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(scratch)
    }

    fn open_direct(&self) -> io::Result<File> {
        OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&self.path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A ring of `entries` entries; every reason io_uring cannot be used is an
/// `io::ErrorKind::Unsupported` error.
fn new_ring(entries: u32) -> io::Result<IoUring> {
    let unavailable = |why: String| io::Error::new(io::ErrorKind::Unsupported, format!("io_uring unavailable: {why}"));
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if s.trim() != "0" {
            return Err(unavailable(format!("/proc/sys/kernel/io_uring_disabled = {}", s.trim())));
        }
    }
    IoUring::new(entries).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES) => unavailable(format!("io_uring_setup failed: {e}")),
        _ => io::Error::new(e.kind(), format!("io_uring_setup({entries}) failed: {e}")),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Qd1 {
    /// `RWF_DSYNC`, the waiter sleeps in `io_uring_enter`.
    Dsync,
    /// `RWF_DSYNC`, the waiter submits without waiting and polls the completion queue (yielding).
    DsyncSpin,
    /// No sync (not durable).
    NoSync,
    /// A plain write linked to an `fdatasync`.
    Linked,
}

/// Waits (sleeping in the kernel) for `n` CQEs; returns their (user_data, result) in arrival order.
fn wait_cqes(ring: &mut IoUring, n: usize, out: &mut [(u64, i32); 2]) -> io::Result<()> {
    let mut got = 0;
    while got < n {
        for cqe in ring.completion() {
            assert!(got < n, "more CQEs than submitted");
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

/// Submits what is queued without waiting, then polls the completion queue (never sleeping in
/// `io_uring_enter`; `sched_yield` between polls) until one CQE arrives.
fn spin_one_cqe(ring: &mut IoUring, out: &mut [(u64, i32); 2]) -> io::Result<()> {
    loop {
        match ring.submit() {
            Ok(_) => break,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
    }
    let started = Instant::now();
    loop {
        if let Some(cqe) = ring.completion().next() {
            out[0] = (cqe.user_data(), cqe.result());
            return Ok(());
        }
        if started.elapsed() > SPIN_LIMIT {
            return Err(other(format!("no completion after {SPIN_LIMIT:?} of polling the completion queue")));
        }
        // Yield between polls, never sleep: the write's completion (the DSYNC flush and the CQE
        // it posts) can be work queued on this very CPU, and a loop that never yields keeps it
        // from running until the scheduler tick (measured: p50 4.0 ms with a bare spin_loop on a
        // 2-core machine, against ~100 µs with a yield).
        std::thread::yield_now();
    }
}

/// Submits and waits for one QD1 sample; Err leaves the buffer in the kernel's hands.
fn run_one(ring: &mut IoUring, mode: Qd1, n: usize, cqes: &mut [(u64, i32); 2]) -> io::Result<()> {
    if mode == Qd1::DsyncSpin {
        return spin_one_cqe(ring, cqes);
    }
    loop {
        match ring.submit_and_wait(n) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return wait_cqes(ring, n, cqes),
        }
    }
}

fn check_cqes(cqes: &[(u64, i32)]) -> io::Result<()> {
    for &(ud, res) in cqes {
        if res < 0 {
            let op = if ud == 1 { "fdatasync" } else { "write" };
            return Err(io::Error::new(
                io::Error::from_raw_os_error(-res).kind(),
                format!("{op} failed: {}", io::Error::from_raw_os_error(-res)),
            ));
        }
        if ud == 0 && res as usize != ALIGN {
            return Err(other(format!("short write: {res} of {ALIGN} bytes")));
        }
    }
    Ok(())
}

fn measure_qd1(dir: &Path, samples: usize, mode: Qd1) -> io::Result<Vec<Duration>> {
    const WINDOW_BLOCKS: usize = 16 * 1024; // 64 MiB of scratch at most; offsets wrap around
    let blocks = samples.clamp(1, WINDOW_BLOCKS);
    let scratch = Scratch::create(dir, (blocks * ALIGN) as u64)?;
    let file = scratch.open_direct()?;
    let mut ring = new_ring(4)?;
    let mut buf = Aligned::new(ALIGN);
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let fd = types::Fd(file.as_raw_fd());
    let mut lat = Vec::with_capacity(samples);
    let mut cqes = [(0u64, 0i32); 2];
    for i in 0..samples {
        let offset = ((i % blocks) * ALIGN) as u64;
        let flags = if matches!(mode, Qd1::Dsync | Qd1::DsyncSpin) { libc::RWF_DSYNC } else { 0 };
        let write = opcode::Write::new(fd, buf.as_ptr(), ALIGN as u32).offset(offset).rw_flags(flags).build().user_data(0);
        let n = if mode == Qd1::Linked { 2 } else { 1 };
        let t0 = Instant::now();
        {
            let mut sq = ring.submission();
            let pushed = if mode == Qd1::Linked {
                let fsync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(1);
                // SAFETY: `buf` and `file` outlive the wait below; on any error after this push
                // the buffer is leaked (never freed) while the kernel may hold it.
                unsafe { sq.push_multiple(&[write.flags(squeue::Flags::IO_LINK), fsync]) }
            } else {
                // SAFETY: as above: `buf` outlives the wait, or is leaked if the wait fails.
                unsafe { sq.push(&write) }
            };
            pushed.map_err(|_| other("submission queue full"))?;
        }
        let waited = run_one(&mut ring, mode, n, &mut cqes);
        let elapsed = t0.elapsed();
        if let Err(e) = waited {
            std::mem::forget(buf);
            return Err(e);
        }
        check_cqes(&cqes[..n])?;
        lat.push(elapsed);
    }
    drop(file);
    drop(scratch);
    Ok(lat)
}

/// The durability floor: `samples` latencies of one 4 KiB O_DIRECT write with `RWF_DSYNC` at
/// queue depth 1 through io_uring, the waiter sleeping in `io_uring_enter`, at sequential offsets
/// of a zero-filled, fsynced scratch file in `dir` (at most 64 MiB, offsets wrap) removed
/// afterwards.
pub fn measure_floor(dir: &Path, samples: usize) -> io::Result<Vec<Duration>> {
    measure_qd1(dir, samples, Qd1::Dsync)
}

/// Like [`measure_floor`], but the waiter spins: it submits without waiting, then polls the
/// completion queue in a loop (yielding the CPU between polls) instead of sleeping in
/// `io_uring_enter`: no wake-up on the path, the cost a spinning ticket waiter sees.
pub fn measure_floor_spin(dir: &Path, samples: usize) -> io::Result<Vec<Duration>> {
    measure_qd1(dir, samples, Qd1::DsyncSpin)
}

/// Like [`measure_floor`] without `RWF_DSYNC`: **not durable**, for comparison only.
pub fn measure_nosync(dir: &Path, samples: usize) -> io::Result<Vec<Duration>> {
    measure_qd1(dir, samples, Qd1::NoSync)
}

/// Like [`measure_floor`] but each write is linked (`IO_LINK`) to an `fdatasync`.
pub fn measure_linked_fdatasync(dir: &Path, samples: usize) -> io::Result<Vec<Duration>> {
    measure_qd1(dir, samples, Qd1::Linked)
}

/// Sequential O_DIRECT `RWF_DSYNC` write bandwidth in bytes per second: `total_bytes` written in
/// writes of `write_bytes` (a multiple of 4096), two in flight, into a scratch file of at most
/// 64 MiB (offsets wrap) removed afterwards.
pub fn measure_bandwidth(dir: &Path, write_bytes: usize, total_bytes: u64) -> io::Result<f64> {
    if write_bytes == 0 || write_bytes % ALIGN != 0 || u32::try_from(write_bytes).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("write_bytes {write_bytes} must be a multiple of 4096 below 4 GiB"),
        ));
    }
    let writes = total_bytes.div_ceil(write_bytes as u64).max(1);
    let slots = ((64u64 << 20) / write_bytes as u64).clamp(2, writes.max(2));
    let scratch = Scratch::create(dir, slots * write_bytes as u64)?;
    let file = scratch.open_direct()?;
    let fd = types::Fd(file.as_raw_fd());
    let mut ring = new_ring(4)?;
    let mut bufs = [Aligned::new(write_bytes), Aligned::new(write_bytes)];
    for (k, b) in bufs.iter_mut().enumerate() {
        b.as_mut_slice().fill(0x5a ^ k as u8);
    }
    let mut next = 0u64; // next write number
    let mut done = 0u64;
    let mut in_flight = 0usize;
    let t0 = Instant::now();
    let result: io::Result<()> = (|| loop {
        while in_flight < 2 && next < writes {
            let b = (next % 2) as usize;
            let offset = (next % slots) * write_bytes as u64;
            let e = opcode::Write::new(fd, bufs[b].as_ptr(), write_bytes as u32)
                .offset(offset)
                .rw_flags(libc::RWF_DSYNC)
                .build()
                .user_data(b as u64);
            // SAFETY: buffer `b` is not in flight (writes alternate buffers, at most two in
            // flight, and a buffer is resubmitted only after its CQE); on error the buffers are
            // leaked, never freed under the kernel.
            unsafe { ring.submission().push(&e) }.map_err(|_| other("submission queue full"))?;
            next += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            return Ok(());
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        let mut bad = None;
        for cqe in ring.completion() {
            in_flight -= 1;
            done += 1;
            if cqe.result() < 0 || cqe.result() as usize != write_bytes {
                bad.get_or_insert(cqe.result());
            }
        }
        if let Some(res) = bad {
            // Let the other write finish before reporting, so no buffer is in flight.
            if in_flight > 0 {
                let mut c = [(0, 0); 2];
                wait_cqes(&mut ring, in_flight, &mut c)?;
                in_flight = 0;
            }
            return Err(if res < 0 {
                io::Error::from_raw_os_error(-res)
            } else {
                other(format!("short write: {res} of {write_bytes} bytes"))
            });
        }
    })();
    let secs = t0.elapsed().as_secs_f64();
    if in_flight > 0 {
        // Only an error leaves writes in flight; the kernel may still read the buffers.
        std::mem::forget(bufs);
        return Err(result.err().unwrap_or_else(|| other("writes left in flight")));
    }
    result?;
    drop(file);
    drop(scratch);
    Ok((done * write_bytes as u64) as f64 / secs)
}

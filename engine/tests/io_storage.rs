//! `FsStorage` on the real filesystem: the writer lock (in process and across processes),
//! create_zeroed, reads through O_DIRECT, zero_range, archive (same and other filesystem), and
//! what O_DIRECT does on tmpfs (/dev/shm) on this kernel.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tradewal::io::fs::FsStorage;
use tradewal::io::{sys, Durability, IoConfig, Storage};

const CHILD_ENV: &str = "TRADEWAL_LOCK_PROBE_DIR";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Whether another process can take the lock of `dir`: `flock -n DIR/LOCK true` when util-linux
/// is installed, else this test binary re-executed as a child (see `lock_child_probe`).
fn other_process_can_lock(dir: &Path) -> bool {
    match Command::new("flock").arg("-n").arg(dir.join("LOCK")).arg("true").status() {
        Ok(st) => return st.success(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("spawning flock: {e}"),
    }
    let st = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_child_probe", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .status()
        .unwrap();
    match st.code() {
        Some(0) => true,
        Some(3) => false,
        other => panic!("lock probe child exited with {other:?}"),
    }
}

/// As a child (env var set): tries the lock of the given directory and exits 0 (taken) or 3
/// (held elsewhere). Run directly: a fresh directory's lock is free, released on drop, and
/// free again.
#[test]
fn lock_child_probe() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let got = FsStorage::new(PathBuf::from(dir)).lock().unwrap();
        std::process::exit(if got.is_some() { 0 } else { 3 });
    }
    let dir = tempfile::tempdir().unwrap();
    let st = FsStorage::new(dir.path());
    let g = st.lock().unwrap();
    assert!(g.is_some());
    drop(g);
    assert!(st.lock().unwrap().is_some());
}

#[test]
fn lock_is_exclusive_within_and_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let st = FsStorage::new(dir.path());
    let guard = st.lock().unwrap().expect("first lock");
    assert_eq!(mode(&dir.path().join("LOCK")), 0o600);
    assert!(st.lock().unwrap().is_none(), "same storage, second lock");
    assert!(FsStorage::new(dir.path()).lock().unwrap().is_none(), "another FsStorage in this process");
    assert!(!other_process_can_lock(dir.path()), "another process must not get it");
    drop(guard);
    assert!(other_process_can_lock(dir.path()), "released on drop");
    assert!(st.lock().unwrap().is_some());
}

#[test]
fn create_dir_is_0700_and_idempotent() {
    let parent = tempfile::tempdir().unwrap();
    let d = parent.path().join("a").join("wal");
    let st = FsStorage::new(&d);
    st.create_dir().unwrap();
    st.create_dir().unwrap();
    assert_eq!(mode(&d), 0o700);
    assert_eq!(st.path(), d.as_path());
}

/// A spare prepared while the log runs is zero-filled paced: `pace` is called after every
/// 128 KiB chunk with the bytes zeroed so far, and the result is the same durable all-zero file.
#[test]
fn create_zeroed_paced_calls_pace_per_chunk_and_writes_zeros() {
    let parent = tempfile::tempdir().unwrap();
    let d = parent.path().join("wal");
    let st = FsStorage::new(&d);
    st.create_dir().unwrap();
    let len: u64 = (1 << 20) + 4096;
    let mut seen = Vec::new();
    st.create_zeroed_paced("seg-1", len, &mut |z| seen.push(z)).unwrap();
    let chunk = 128 << 10;
    let want: Vec<u64> = (1..=len.div_ceil(chunk)).map(|i| (i * chunk).min(len)).collect();
    assert_eq!(seen, want, "one call per chunk, with the bytes zeroed so far");
    assert_eq!(st.list().unwrap(), vec!["seg-1".to_string()]);
    let data = st.read_file("seg-1").unwrap();
    assert_eq!(data.len() as u64, len);
    assert!(data.iter().all(|&b| b == 0));
    assert_eq!(mode(&d.join("seg-1")), 0o600);
}

#[test]
fn create_zeroed_is_real_zeros_0600_and_no_tmp() {
    let parent = tempfile::tempdir().unwrap();
    let d = parent.path().join("wal");
    let st = FsStorage::new(&d);
    st.create_dir().unwrap();
    let len = (3 << 20) + 8192;
    st.create_zeroed("seg-1", len).unwrap();
    assert_eq!(st.list().unwrap(), vec!["seg-1".to_string()]);
    assert_eq!(st.file_len("seg-1").unwrap(), len);
    assert_eq!(mode(&d.join("seg-1")), 0o600);
    assert_eq!(mode(&d), 0o700);
    let data = st.read_file("seg-1").unwrap();
    assert_eq!(data.len() as u64, len);
    assert!(data.iter().all(|&b| b == 0));
    // Never replaces an existing file (it could hold acknowledged records).
    assert_eq!(st.create_zeroed("seg-1", 4096).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(st.file_len("seg-1").unwrap(), len);
    // A leftover .tmp from a crash is overwritten, not an obstacle.
    std::fs::write(d.join("seg-2.tmp"), b"junk").unwrap();
    st.create_zeroed("seg-2", 4096).unwrap();
    assert_eq!(st.list().unwrap(), vec!["seg-1".to_string(), "seg-2".to_string()]);

    // No unwritten extents (durability.md): filefrag -v flags them "unwritten".
    match Command::new("filefrag").arg("-v").arg(d.join("seg-1")).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!text.contains("unwritten"), "{text}");
        }
        Ok(out) => eprintln!("filefrag check skipped: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => eprintln!("filefrag check skipped: {e}"),
    }
}

#[test]
fn list_skips_directories_and_read_file_handles_unaligned_tails() {
    let dir = tempfile::tempdir().unwrap();
    let st = FsStorage::new(dir.path());
    std::fs::create_dir(dir.path().join("archive")).unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(dir.path().join("odd"), &data).unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    assert_eq!(st.list().unwrap(), vec!["empty".to_string(), "odd".to_string()]);
    st.sync_file("odd").unwrap();
    st.sync_dir().unwrap();
    assert_eq!(st.read_file("odd").unwrap(), data);
    assert_eq!(st.read_file("empty").unwrap(), Vec::<u8>::new());
    assert_eq!(st.read_file("missing").unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(st.file_len("odd").unwrap(), 10_000);
    // Exactly aligned sizes too.
    let big: Vec<u8> = (0..(1usize << 21) + 4096).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("big"), &big).unwrap();
    assert_eq!(st.read_file("big").unwrap(), big);
    assert_eq!(sys::read_direct(&dir.path().join("big")).unwrap().as_slice(), &big[..]);
}

#[test]
fn zero_range_zeroes_and_sets_length() {
    let dir = tempfile::tempdir().unwrap();
    let st = FsStorage::new(dir.path());
    let data = vec![0x5au8; 16384];
    std::fs::write(dir.path().join("s"), &data).unwrap();
    st.zero_range("s", 5000, 12288).unwrap();
    let got = st.read_file("s").unwrap();
    assert_eq!(got.len(), 12288);
    assert!(got[..5000].iter().all(|&b| b == 0x5a));
    assert!(got[5000..].iter().all(|&b| b == 0));
    // Growing works too (zeros up to the new length).
    st.zero_range("s", 12288, 20000).unwrap();
    let got = st.read_file("s").unwrap();
    assert_eq!(got.len(), 20000);
    assert!(got[5000..].iter().all(|&b| b == 0));
    assert_eq!(st.zero_range("s", 10, 5).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn remove_and_archive_same_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let st = FsStorage::new(dir.path());
    std::fs::write(dir.path().join("a"), b"alpha").unwrap();
    std::fs::write(dir.path().join("b"), b"beta").unwrap();
    st.remove("b").unwrap();
    assert_eq!(st.remove("b").unwrap_err().kind(), io::ErrorKind::NotFound);
    let dest = dir.path().join("archive").join("2024");
    st.archive("a", &dest).unwrap();
    assert_eq!(st.list().unwrap(), Vec::<String>::new());
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"alpha");
    assert_eq!(mode(&dest), 0o700);
}

#[test]
fn archive_across_filesystems_copies_then_removes() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return tradewal_testkit::cannot_run("archive_across_filesystems", "tmpfs", "no /dev/shm");
    }
    let src = tempfile::tempdir_in(shm).unwrap();
    let dest_parent = tempfile::tempdir().unwrap();
    if std::fs::metadata(src.path()).map(|m| std::os::unix::fs::MetadataExt::dev(&m)).unwrap()
        == std::fs::metadata(dest_parent.path()).map(|m| std::os::unix::fs::MetadataExt::dev(&m)).unwrap()
    {
        return tradewal_testkit::cannot_run("archive_across_filesystems", "tmpfs", "/dev/shm and the temp dir share a filesystem");
    }
    let st = FsStorage::new(src.path());
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    std::fs::write(src.path().join("seg"), &data).unwrap();
    let dest = dest_parent.path().join("arch");
    st.archive("seg", &dest).unwrap();
    assert!(!src.path().join("seg").exists());
    assert_eq!(std::fs::read(dest.join("seg")).unwrap(), data);
    assert!(!dest.join("seg.tmp").exists());
    assert_eq!(mode(&dest), 0o700);
}

/// What this kernel's tmpfs does with O_DIRECT, observed directly (open + one aligned write).
fn tmpfs_accepts_direct(dir: &Path) -> Result<(), io::Error> {
    use std::os::fd::AsRawFd;
    let p = dir.join("direct-check");
    let f = sys::create_direct(&p)?;
    let b = sys::AlignedBuf::new(4096);
    let r = sys::pwrite_once(f.as_raw_fd(), b.as_slice(), 0).map(|_| ());
    std::fs::remove_file(&p).unwrap();
    r
}

#[test]
fn tmpfs_behaviour_matches_the_probe() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return tradewal_testkit::cannot_run("tmpfs_behaviour_matches_the_probe", "tmpfs", "no /dev/shm");
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let st = FsStorage::new(dir.path());
    st.create_zeroed("seg", 65536).unwrap();
    let warnings = sys::mount_warnings(dir.path());
    assert!(warnings.iter().any(|w| w.contains("memory filesystem")), "{warnings:?}");
    let mut cfg = IoConfig {
        durability: Durability::Dsync,
        buffers: 2,
        buffer_bytes: 8192,
        disable_io_uring: false,
        allow_buffered_io: false,
        trust_storage: false,
    };
    let mut io = match tmpfs_accepts_direct(dir.path()) {
        Ok(()) => {
            println!("tmpfs on this kernel accepts O_DIRECT: the probe must accept it too");
            let io = st.batch_io(&cfg).unwrap();
            assert!(io.describe().contains("O_DIRECT"), "{}", io.describe());
            io
        }
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
            println!("tmpfs on this kernel refuses O_DIRECT: Unsupported unless allow_buffered_io");
            let err = st.batch_io(&cfg).err().expect("must refuse without allow_buffered_io");
            assert_eq!(err.kind(), io::ErrorKind::Unsupported);
            cfg.allow_buffered_io = true;
            let io = st.batch_io(&cfg).unwrap();
            assert!(io.describe().contains("buffered"), "{}", io.describe());
            io
        }
    };
    let slot = io.open_segment("seg").unwrap();
    io.buffer(1)[..4096].fill(0x77);
    io.submit(slot, 4096, 1, 4096, 42).unwrap();
    let mut got = Vec::new();
    while got.is_empty() {
        io.reap(true, &mut |c| got.push(c)).unwrap();
    }
    assert_eq!(got[0].tag, 42);
    assert_eq!(got[0].result, Ok(()));
    io.close_segment(slot);
    let data = st.read_file("seg").unwrap();
    assert!(data[4096..8192].iter().all(|&b| b == 0x77));
    assert!(data[..4096].iter().all(|&b| b == 0) && data[8192..].iter().all(|&b| b == 0));
    // The probe leaves nothing behind.
    assert_eq!(st.list().unwrap(), vec!["seg".to_string()]);
}

#[test]
fn disk_mount_has_no_barrier_warning() {
    // The temp dir's filesystem here is ext4 without nobarrier; what we check is that the real
    // table yields no barrier warning unless the options say so.
    let dir = tempfile::tempdir().unwrap();
    // The options as util-linux's findmnt reports them (not the engine's own mount-table parsing).
    let out = std::process::Command::new("findmnt").args(["-n", "-o", "OPTIONS", "-T"]).arg(dir.path()).output().expect("findmnt");
    assert!(out.status.success(), "findmnt failed");
    let opts = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let nobarrier = opts.split(',').any(|o| o == "nobarrier" || o == "barrier=0");
    let warned = sys::mount_warnings(dir.path()).iter().any(|w| w.contains("barrier"));
    assert_eq!(nobarrier, warned, "options {opts}");
}

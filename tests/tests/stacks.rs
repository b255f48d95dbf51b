//! The storage-stack table's "verified" rows, checked on real file systems: ext4, xfs and btrfs
//! are made on loop devices (write-back cache, no FUA, like the virtio disk here), a log is opened
//! on each with `WalConfig` defaults, and every acknowledged QD1 append must be matched by a
//! cache flush that reached the block device (`/sys/block/loopN/stat`, flush requests). A stack
//! that acknowledged a write without flushing the device would fail here. The FUSE row is
//! checked by tests/tests/fuse_cut.rs.
//!
//! Needs root, `losetup` and `mkfs.ext4`/`mkfs.xfs`/`mkfs.btrfs` (`./test` installs xfsprogs and
//! btrfs-progs); fails with the reason otherwise unless `TRADEWAL_ALLOW_SKIP=stacks`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tradewal::{Side, TradeIntent, Wal, WalConfig, WritePath};

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A file system on a loop device, mounted in a temporary directory; torn down on drop.
struct LoopFs {
    dev: String,
    mnt: PathBuf,
    img: PathBuf,
}

impl LoopFs {
    fn make(fs: &str) -> Result<LoopFs, String> {
        LoopFs::make_with(fs, None)
    }

    /// Like [`LoopFs::make`], mounted with `-o OPTIONS`.
    fn make_with(fs: &str, options: Option<&str>) -> Result<LoopFs, String> {
        let tag = options.map_or(String::new(), |o| format!("-{}", o.replace(['=', ','], "_")));
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stack-{fs}{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("mnt")).map_err(|e| e.to_string())?;
        let img = base.join("img");
        let f = std::fs::File::create(&img).map_err(|e| e.to_string())?;
        f.set_len(768 << 20).map_err(|e| e.to_string())?;
        drop(f);
        let mkfs = format!("mkfs.{fs}");
        let quiet: &[&str] = match fs {
            "ext4" => &["-q", "-F"],
            _ => &["-q", "-f"],
        };
        let mut args = quiet.to_vec();
        let img_s = img.to_str().unwrap().to_string();
        args.push(&img_s);
        run(&mkfs, &args)?;
        let dev = run("losetup", &["-f", "--show", &img_s])?;
        let mnt = base.join("mnt");
        let lf = LoopFs { dev, mnt, img };
        match options {
            Some(o) => run("mount", &["-o", o, &lf.dev, lf.mnt.to_str().unwrap()])?,
            None => run("mount", &[&lf.dev, lf.mnt.to_str().unwrap()])?,
        };
        Ok(lf)
    }

    fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }

    /// Flush requests completed by the device (field 16 of /sys/block/DEV/stat).
    fn flushes(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/sys/block/{}/stat", self.name())).unwrap();
        let f: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert!(f.len() >= 17, "this kernel's block stat has no flush counters: {s}");
        f[15]
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = run("umount", &[self.mnt.to_str().unwrap()]);
        let _ = run("losetup", &["-d", &self.dev]);
        let _ = std::fs::remove_file(&self.img);
    }
}

fn intent(i: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: i as i64,
        symbol: "BTCUSDT".parse().unwrap(),
        side: Side::Buy,
        price: 100.0 + i as f64,
        qty: 1.0,
        stop_loss: 90.0,
        take_profit: 110.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

#[test]
fn verified_stacks_flush_the_device_for_every_acknowledged_write() {
    const N: u64 = 300;
    let mut report = Vec::new();
    for fs in ["ext4", "xfs", "btrfs"] {
        let lf = match LoopFs::make(fs) {
            Ok(l) => l,
            Err(e) => {
                tradewal_testkit::cannot_run("stacks", "stacks", format!("{fs} on a loop device (needs root, losetup, mkfs.{fs}): {e}"));
                continue;
            }
        };
        let dir = lf.mnt.join("log");
        let wal = Wal::open(WalConfig::new(&dir)).unwrap_or_else(|e| panic!("{fs}: open: {e}"));
        let st = wal.storage_stack().unwrap().clone();
        assert_eq!(st.facts.fs_type, fs);
        assert_eq!(st.facts.device.as_deref(), Some(lf.name()), "{fs}: {st}");
        assert_eq!(st.write_path, WritePath::IoUring, "{fs}: {st}");
        assert!(wal.backend().contains("io_uring"), "{fs}: {}", wal.backend());
        let before = lf.flushes();
        let t = Instant::now();
        let mut lat = Vec::with_capacity(N as usize);
        for i in 0..N {
            let s = Instant::now();
            wal.append(&intent(i)).unwrap().wait().unwrap();
            lat.push(s.elapsed());
        }
        let took = t.elapsed();
        let flushed = lf.flushes() - before;
        wal.close().unwrap();
        lat.sort();
        let p50 = lat[lat.len() / 2];
        assert!(
            flushed >= N,
            "{fs}: {N} acknowledged QD1 appends but only {flushed} device cache flushes: a write was \
             acknowledged before the device flushed it"
        );
        report.push((fs, flushed, p50, took));
    }
    for (fs, flushed, p50, took) in &report {
        println!("stack {fs}: {N} QD1 appends, {flushed} device flushes, p50 {:?}, total {:?}", p50, took);
    }
}

/// The `nobarrier` warning, against mounts whose options the test chose (not against the engine's
/// own mount-table parsing): ext4 mounted with `barrier=0` (fsync no longer flushes the device
/// cache) must warn; the same file system mounted with defaults must not.
#[test]
fn barrier_0_mounts_are_warned_about_and_default_mounts_are_not() {
    if !tradewal_testkit::is_root() {
        tradewal_testkit::cannot_run("barrier warning", "stacks", "needs root to mount a loop device");
        return;
    }
    let lying = match LoopFs::make_with("ext4", Some("barrier=0")) {
        Ok(f) => f,
        Err(e) => {
            tradewal_testkit::cannot_run("barrier warning", "stacks", e);
            return;
        }
    };
    let w = tradewal::io::sys::mount_warnings(&lying.mnt);
    assert!(w.iter().any(|w| w.contains("barrier")), "ext4 mounted barrier=0 gave no warning: {w:?}");
    drop(lying);
    let honest = LoopFs::make("ext4").expect("the same ext4 with default options");
    let w = tradewal::io::sys::mount_warnings(&honest.mnt);
    assert!(!w.iter().any(|w| w.contains("barrier")), "ext4 with default options was warned about: {w:?}");
    println!("barrier warning: ext4 barrier=0 warned, ext4 defaults not");
}

//! The storage-stack table at work: what `Wal::open` found and chose, checked against facts read
//! independently of the engine (coreutils `stat -f`, util-linux `findmnt`, sysfs by device name),
//! and the choice actually changing the write backend.

use std::path::{Path, PathBuf};
use std::process::Command;
use tradewal::{Wal, WalConfig, WritePath};

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd} (coreutils/util-linux) is needed by this test: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn scratch(base: &Path, name: &str) -> PathBuf {
    let d = base.join(format!("tw-stack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn open_reports_the_stack_the_tools_see() {
    let dir = scratch(Path::new(env!("CARGO_TARGET_TMPDIR")), "here");
    let wal = Wal::open(WalConfig::new(&dir).segment_bytes(16 << 20)).expect("open");
    let s = wal.storage_stack().expect("a real directory has a storage stack").clone();
    wal.close().unwrap();
    let d = dir.to_str().unwrap();
    let magic = u64::from_str_radix(&tool("stat", &["-f", "-c", "%t", d]), 16).unwrap();
    assert_eq!(s.facts.fs_magic, magic);
    let fstype = tool("findmnt", &["-n", "-o", "FSTYPE", "-T", d]);
    let target = tool("findmnt", &["-n", "-o", "TARGET", "-T", d]);
    assert_eq!(s.facts.fs_type, fstype);
    assert_eq!(s.facts.mount_point, PathBuf::from(target));
    // The device's cache as sysfs names it for the mount's source (partition → its disk).
    let source = tool("findmnt", &["-n", "-o", "SOURCE", "-T", d]);
    if let Some(dev) = source.strip_prefix("/dev/") {
        let disk = tool("lsblk", &["-n", "-d", "-o", "PKNAME", &format!("/dev/{dev}")]);
        let disk = if disk.is_empty() { dev.to_string() } else { disk };
        assert_eq!(s.facts.device.as_deref(), Some(disk.as_str()));
        let wc = std::fs::read_to_string(format!("/sys/block/{disk}/queue/write_cache")).unwrap();
        assert_eq!(s.facts.write_cache.as_deref(), Some(wc.trim()));
        let fua = std::fs::read_to_string(format!("/sys/block/{disk}/queue/fua")).unwrap();
        assert_eq!(s.facts.fua, Some(fua.trim() == "1"));
    } else {
        assert_eq!(s.facts.device, None, "{source} is not a block device");
    }
    match fstype.as_str() {
        "ext4" | "xfs" | "btrfs" => assert_eq!(s.write_path, WritePath::IoUring),
        other => assert_ne!(s.write_path, WritePath::IoUring, "{other} is not verified for io_uring"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// tmpfs is not verified for io_uring: the table's synchronous path is what the writer really
/// uses, and `trust_storage` restores io_uring (so the routing, not a fallback, decides).
#[test]
fn an_unverified_stack_gets_the_synchronous_path_unless_trusted() {
    let shm = Path::new("/dev/shm");
    assert_eq!(tool("stat", &["-f", "-c", "%T", "/dev/shm"]), "tmpfs", "this test needs a tmpfs at /dev/shm");
    let dir = scratch(shm, "tmpfs");
    let cfg = || WalConfig::new(&dir).segment_bytes(16 << 20).allow_buffered_io(true);
    let wal = Wal::open(cfg()).expect("open on tmpfs");
    let s = wal.storage_stack().unwrap();
    assert_eq!(s.facts.fs_type, "tmpfs");
    assert_eq!(s.write_path, WritePath::SyncSyscalls);
    assert!(!wal.backend().contains("io_uring"), "{}", wal.backend());
    wal.append(&sample()).unwrap().wait().unwrap();
    wal.close().unwrap();
    let direct_ok = !Wal::open(cfg()).unwrap().backend().contains("buffered");
    let wal = Wal::open(cfg().trust_storage(true)).expect("trusted open on tmpfs");
    assert_eq!(wal.storage_stack().unwrap().write_path, WritePath::IoUring);
    if direct_ok {
        // tmpfs takes O_DIRECT on this kernel: trusted, the writer is the io_uring backend.
        assert!(wal.backend().contains("io_uring"), "{}", wal.backend());
    }
    wal.append(&sample()).unwrap().wait().unwrap();
    wal.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn sample() -> tradewal::TradeIntent {
    tradewal::TradeIntent {
        ts_ns: 1,
        symbol: "BTCUSDT".parse().unwrap(),
        side: tradewal::Side::Buy,
        price: 1.0,
        qty: 1.0,
        stop_loss: 0.5,
        take_profit: 2.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

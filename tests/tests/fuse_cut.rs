//! Kill -9 + power cut on a FUSE file system that forgets unsynced writes (tests/src/fusefs.rs).
//!
//! A writer process with `WalConfig` defaults appends until it is killed; then the file system
//! drops everything no fsync covered, as a power cut would. Every acknowledged record must be
//! there afterwards. The same rounds with the storage-stack table overridden
//! (`trust_storage(true)`: io_uring O_DIRECT RWF_DSYNC on FUSE) must lose acknowledged records,
//! which shows that this test can see a flush that never happened.
//!
//! If the kernel has no FUSE the test fails with the reason (set
//! `TRADEWAL_ALLOW_SKIP=fuse` to skip it on such a machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tradewal::{read_log, Lsn, Wal, WalConfig, WalError};
use tradewal_codec::Record;
use tradewal_tests::fusefs::CrashFs;

/// What a line from the child acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acked {
    Intent,
    Outcome { intent_lsn: Lsn },
}

fn mount(name: &str) -> Option<(CrashFs, PathBuf)> {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuse-{name}-{}", std::process::id()));
    let mnt = base.join("mnt");
    if mnt.exists() {
        // A mount left by an earlier run that was killed.
        let _ = Command::new("fusermount3").arg("-u").arg("-q").arg(&mnt).status();
    }
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&mnt).unwrap();
    match CrashFs::mount(&mnt) {
        Ok(fs) => {
            let log = mnt.join("log");
            std::fs::create_dir(&log).unwrap();
            Some((fs, log))
        }
        Err(e) => {
            tradewal_testkit::cannot_run("fuse_cut", "fuse", e);
            None
        }
    }
}

fn spawn(dir: &Path, trust: bool) -> (Child, mpsc::Receiver<String>) {
    tradewal_tests::spawn_with_lines(Command::new(env!("CARGO_BIN_EXE_tw-crash-child")).arg("defaults").arg(dir).arg(if trust {
        "1"
    } else {
        "0"
    }))
}

/// Runs the child until it has acknowledged `target` records (or 20 s pass), kills it with
/// SIGKILL, and returns its backend and what it acknowledged.
fn run_and_kill(dir: &Path, trust: bool, target: usize, acked: &mut BTreeMap<Lsn, Acked>) -> String {
    let (mut child, rx) = spawn(dir, trust);
    let mut backend = String::new();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < target && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else { continue };
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "B" => backend = line[2..].to_string(),
            "I" => {
                acked.insert(f[1].parse().unwrap(), Acked::Intent);
                got += 1;
            }
            "O" => {
                acked.insert(f[1].parse().unwrap(), Acked::Outcome { intent_lsn: f[2].parse().unwrap() });
                got += 1;
            }
            _ => panic!("child: {line}"),
        }
    }
    assert!(got > 0, "the writer acknowledged nothing in 20 s");
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines already written before the kill are acknowledgements too.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "I" => {
                acked.insert(f[1].parse().unwrap(), Acked::Intent);
            }
            "O" => {
                acked.insert(f[1].parse().unwrap(), Acked::Outcome { intent_lsn: f[2].parse().unwrap() });
            }
            _ => {}
        }
    }
    // The dead writer's io_uring keeps the lock until its last write has landed: cut only after.
    let lock = std::fs::File::open(dir.join("LOCK")).unwrap();
    let t = Instant::now();
    while !tradewal::io::sys::flock_exclusive_nonblock(&lock).unwrap() {
        assert!(t.elapsed() < Duration::from_secs(30), "the killed writer's lock was never released");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(lock);
    backend
}

/// LSNs acknowledged but missing (or different) in the log.
fn lost(dir: &Path, acked: &BTreeMap<Lsn, Acked>) -> Vec<Lsn> {
    let mut seen = BTreeMap::new();
    match read_log(dir, |f, r| {
        let a = match r {
            Record::Intent(_) => Some(Acked::Intent),
            Record::Outcome(o) => Some(Acked::Outcome { intent_lsn: o.intent_lsn }),
            _ => None,
        };
        if let Some(a) = a {
            seen.insert(f.lsn, a);
        }
    }) {
        Ok(_) => {}
        // A log refused as corrupt reads as having lost whatever it could not show.
        Err(WalError::Corrupt { .. }) => {}
        Err(e) => panic!("read_log: {e}"),
    }
    acked.iter().filter(|(l, a)| seen.get(l) != Some(a)).map(|(l, _)| *l).collect()
}

#[test]
fn defaults_lose_nothing_across_kill_and_power_cut_on_fuse() {
    let Some((fs, dir)) = mount("defaults") else { return };
    let rounds: usize = std::env::var("TRADEWAL_FUSE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut acked = BTreeMap::new();
    let mut dropped = 0;
    for round in 0..rounds {
        let backend = run_and_kill(&dir, false, 1500 + 700 * round, &mut acked);
        assert!(!backend.contains("io_uring"), "FUSE must not get the io_uring path by default: {backend}");
        let fsyncs_before = fs.counters().fsyncs;
        dropped += fs.power_cut();
        let missing = lost(&dir, &acked);
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged records lost, first {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        // Recovery opens the log (nothing refused) and the next round appends to it.
        let wal = Wal::open(WalConfig::new(&dir)).unwrap_or_else(|e| panic!("round {round}: open after the cut: {e}"));
        assert!(wal.recovered().next_lsn > *acked.keys().last().unwrap());
        wal.close().unwrap();
        assert!(fs.counters().fsyncs > fsyncs_before, "the reopen flushed through the file system");
    }
    let c = fs.counters();
    println!(
        "fuse power cut, defaults: {rounds} rounds, {} acknowledged records, 0 lost; the cuts dropped {dropped} unsynced changes; {} writes, {} fsyncs seen",
        acked.len(),
        c.writes,
        c.fsyncs
    );
    assert!(c.fsyncs > acked.len() as u64 / 100, "the synchronous path flushed through FUSE: {c:?}");
}

#[test]
fn forced_io_uring_on_fuse_loses_acknowledged_records() {
    let Some((fs, dir)) = mount("trusted") else { return };
    let mut acked = BTreeMap::new();
    let backend = run_and_kill(&dir, true, 2000, &mut acked);
    assert!(backend.contains("io_uring"), "trust_storage must give the io_uring path: {backend}");
    let dropped = fs.power_cut();
    let missing = lost(&dir, &acked);
    println!("fuse power cut, io_uring forced: {} acknowledged, {} lost, {dropped} unsynced changes dropped", acked.len(), missing.len());
    assert!(
        !missing.is_empty(),
        "io_uring RWF_DSYNC on FUSE kept every acknowledged record: the FUSE routing (and this \
         test's power cut) would be unproven"
    );
    // And recovery does not restart the log on top of the loss: the manifest refuses.
    match Wal::open(WalConfig::new(&dir).trust_storage(true)) {
        Err(WalError::Corrupt { .. }) => {}
        Ok(w) => panic!("a log that lost acknowledged records opened (next LSN {})", w.recovered().next_lsn),
        Err(e) => panic!("unexpected: {e}"),
    }
}

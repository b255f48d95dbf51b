//! A `tradewal::Follower` in this process follows a log while a writer process is killed with
//! SIGKILL at random moments and restarted at once, for `FOLLOW_KILL9_ROUNDS` rounds (default 100)
//! (issue 10). Afterwards every record the follower yielded must be, byte for byte, what recovery
//! and `tradewal export --raw` show for that LSN; no LSN is yielded twice and none is skipped.
//! Child: `tw-crash-child follow DIR ROUND` (1 MiB segments, everything kept).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tradewal::{read_log, Follower, Lsn, Wal, WalConfig};

/// Deadline for the child's READY line (a hang guard, not a performance figure).
const READY_DEADLINE: Duration = Duration::from_secs(30);

fn seed() -> u64 {
    std::env::var("FOLLOW_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64))
}

fn tradewal_bin() -> PathBuf {
    // The CLI binary beside this test's (built by the same `cargo test --workspace`), as the
    // corruption matrix finds it.
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("tradewal");
    if !bin.exists() {
        let st = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "-q", "--release", "-p", "tradewal-cli"])
            .status()
            .unwrap();
        assert!(st.success() && bin.exists(), "building {} failed", bin.display());
    }
    bin
}

#[test]
fn a_follower_across_kill9_restarts_yields_only_what_recovery_keeps() {
    let rounds: u64 = std::env::var("FOLLOW_KILL9_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let seed = seed();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("follow-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The log exists before the follower starts (a first clean session).
    Wal::open(WalConfig::new(&dir).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer())
        .expect("create the log")
        .close()
        .unwrap();
    let stop = AtomicBool::new(false);
    let yielded: Mutex<Vec<(Lsn, Vec<u8>)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut f = Follower::open(&dir, 1).expect("follower");
            let mut drained_after_stop = false;
            loop {
                match f.next_timeout(Duration::from_millis(20)).expect("the follower never errors here") {
                    Some(r) => yielded.lock().unwrap().push((r.lsn, r.body)),
                    None if drained_after_stop => break,
                    // One more empty poll after the stop: everything recovered has been yielded.
                    None if stop.load(Ordering::Acquire) => drained_after_stop = true,
                    None => {}
                }
            }
        });
        for round in 1..=rounds {
            let (mut child, rx) = tradewal_tests::spawn_with_lines(
                Command::new(env!("CARGO_BIN_EXE_tw-crash-child")).arg("follow").arg(&dir).arg(round.to_string()),
            );
            loop {
                match rx.recv_timeout(READY_DEADLINE) {
                    Ok(l) if l == "READY" => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = child.kill();
                        panic!("round {round} (seed {seed}): no READY from the writer: {e}, {:?}", child.wait());
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(next(30_000)));
            child.kill().expect("SIGKILL the writer");
            child.wait().expect("reap the writer");
        }
        // Recover the last crash (a clean session), then let the follower drain and stop.
        Wal::open(WalConfig::new(&dir).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer())
            .expect("recover")
            .close()
            .unwrap();
        stop.store(true, Ordering::Release);
        follower.join().expect("follower thread");
    });
    let yielded = yielded.into_inner().unwrap();
    // What recovery kept, and what `tradewal export --raw` prints.
    let mut kept: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
    read_log(&dir, |f, _| {
        kept.insert(f.lsn, f.body.to_vec());
    })
    .expect("read the recovered log");
    let out = Command::new(tradewal_bin()).args(["export", "--raw"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "export --raw: {}", String::from_utf8_lossy(&out.stderr));
    let exported: BTreeMap<Lsn, serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["lsn"].as_u64().unwrap(), v)
        })
        .collect();
    assert!(!yielded.is_empty(), "the follower yielded nothing");
    for (i, (lsn, body)) in yielded.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1, "seed {seed}: yielded LSNs must be 1, 2, 3, … (no gap, no duplicate): position {i}");
        assert_eq!(kept.get(lsn), Some(body), "seed {seed}: LSN {lsn} yielded by the follower is not what recovery kept");
        assert!(exported.contains_key(lsn), "seed {seed}: LSN {lsn} yielded but not in export --raw");
    }
    // Everything recovery kept was yielded (the follower caught up after the last recovery).
    assert_eq!(yielded.len(), kept.len(), "seed {seed}: the follower yielded {} of {} records", yielded.len(), kept.len());
    assert_eq!(exported.len(), kept.len(), "export --raw shows every kept record");
    println!(
        "follow kill9: seed {seed} (FOLLOW_KILL9_SEED replays the kill delays): {rounds} writer kills, {} records yielded, each equal to recovery's and in export --raw; {:.1} s",
        yielded.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

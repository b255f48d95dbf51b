//! The io_uring device probes (bench/src/uring_probe.rs): every probe returns one plausible
//! sample per write, removes its scratch file, and refuses a bad write size with a clear error.
//! No timing thresholds.

use std::io;
use std::path::PathBuf;
use std::time::Duration;
use tradewal_bench::uring_probe;

/// Temp dirs on the data disk (O_DIRECT must work; /tmp may be tmpfs).
fn temp_dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-test-data");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn measurements_return_plausible_samples() {
    let dir = temp_dir();
    // More samples for a figure: TRADEWAL_FLOOR_SAMPLES=5000 cargo test --release ... --nocapture
    let n: usize = std::env::var("TRADEWAL_FLOOR_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let floor = match uring_probe::measure_floor(dir.path(), n) {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            return tradewal_testkit::cannot_run("measurements_return_plausible_samples", "io_uring", e);
        }
        Err(e) => panic!("measure_floor: {e}"),
    };
    let spin = uring_probe::measure_floor_spin(dir.path(), n).unwrap();
    let nosync = uring_probe::measure_nosync(dir.path(), n / 2).unwrap();
    let linked = uring_probe::measure_linked_fdatasync(dir.path(), n / 2).unwrap();
    assert_eq!((floor.len(), spin.len(), nosync.len(), linked.len()), (n, n, n / 2, n / 2));
    for v in [&floor, &spin, &nosync, &linked] {
        assert!(v.iter().all(|d| !d.is_zero()));
    }
    let bw = uring_probe::measure_bandwidth(dir.path(), 1 << 20, 32 << 20).unwrap();
    assert!(bw.is_finite() && bw > 0.0, "{bw}");
    // The scratch files are removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    for (name, mut v) in
        [("RWF_DSYNC floor", floor), ("RWF_DSYNC floor, spinning", spin), ("no sync", nosync), ("linked fdatasync", linked)]
    {
        v.sort();
        println!("{name}: p50 {:?} p99 {:?} (n={})", pct(&v, 0.5), pct(&v, 0.99), v.len());
    }
    println!("bandwidth 1 MiB RWF_DSYNC, 2 in flight: {:.2} GB/s", bw / 1e9);
    // Bad write size is a clear error, not a panic.
    assert_eq!(uring_probe::measure_bandwidth(dir.path(), 1000, 1 << 20).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_probe_in_a_missing_directory_fails_cleanly() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-dir");
    for r in [uring_probe::measure_floor(&missing, 4), uring_probe::measure_floor_spin(&missing, 4)] {
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}

//! The batch write backends on the real disk: round trips through every backend and durability
//! mode, the fail-stop path driven by a misaligned O_DIRECT write, and the buffer-in-flight rule.
//! Tests that need io_uring print why they skip where it is unavailable. (The device probes are
//! the bench's: bench/tests/uring_probe.rs.)

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tradewal::io::buffers::MAX_BUFFERS;
use tradewal::io::fs::FsStorage;
use tradewal::io::sync::{BufferedIo, PwriteIo};
use tradewal::io::uring::UringIo;
use tradewal::io::{BatchIo, Completion, Durability, IoConfig, IoFault, Storage};

const SEG: &str = "seg-000001";
const SEG_BYTES: u64 = 1 << 20;

fn cfg(durability: Durability) -> IoConfig {
    IoConfig { durability, buffers: 3, buffer_bytes: 64 * 1024, disable_io_uring: false, allow_buffered_io: false, trust_storage: false }
}

/// A fresh directory (on the disk filesystem holding the temp dir) with one zeroed segment.
fn setup() -> (tempfile::TempDir, FsStorage) {
    let dir = tempfile::tempdir().unwrap();
    let st = FsStorage::new(dir.path());
    st.create_zeroed(SEG, SEG_BYTES).unwrap();
    (dir, st)
}

fn uring_or_skip(dir: &Path, c: &IoConfig, test: &str) -> Option<UringIo> {
    match UringIo::new(dir, c) {
        Ok(u) => Some(u),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            tradewal_testkit::cannot_run(test, "io_uring", e);
            None
        }
        Err(e) => panic!("UringIo::new failed: {e}"),
    }
}

/// Reaps until `n` completions are in (waiting), returning them.
fn reap_n(io: &mut dyn BatchIo, n: usize) -> Vec<Completion> {
    let mut got = Vec::new();
    while got.len() < n {
        assert!(io.in_flight() > 0, "waiting for {n} completions but nothing is in flight (got {got:?})");
        io.reap(true, &mut |c| got.push(c)).unwrap();
    }
    got
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

/// Two writes in flight at once (different buffers and offsets), then reads the file back.
fn round_trip(io: &mut dyn BatchIo, st: &FsStorage) {
    let slot = io.open_segment(SEG).unwrap();
    let a = pattern(3, 8192);
    let b = pattern(9, 4096);
    io.buffer(0)[..a.len()].copy_from_slice(&a);
    io.buffer(2)[..b.len()].copy_from_slice(&b);
    io.submit(slot, 8192, 0, a.len(), 100).unwrap();
    io.submit(slot, 65536, 2, b.len(), 200).unwrap();
    let mut got = reap_n(io, 2);
    got.sort_by_key(|c| c.tag);
    assert_eq!(got, vec![Completion { tag: 100, result: Ok(()) }, Completion { tag: 200, result: Ok(()) }]);
    assert_eq!(io.in_flight(), 0);
    // Nothing more to hand out, and no wait when nothing is in flight.
    assert_eq!(io.reap(true, &mut |c| panic!("unexpected {c:?}")).unwrap(), 0);
    io.close_segment(slot);

    let data = st.read_file(SEG).unwrap();
    assert_eq!(data.len() as u64, SEG_BYTES);
    assert_eq!(&data[8192..8192 + a.len()], &a[..]);
    assert_eq!(&data[65536..65536 + b.len()], &b[..]);
    assert!(data[..8192].iter().all(|&x| x == 0));
    assert!(data[8192 + a.len()..65536].iter().all(|&x| x == 0));
    assert!(data[65536 + b.len()..].iter().all(|&x| x == 0));
}

#[test]
fn uring_dsync_round_trip() {
    let (dir, st) = setup();
    let Some(mut io) = uring_or_skip(dir.path(), &cfg(Durability::Dsync), "uring_dsync_round_trip") else {
        return;
    };
    assert!(io.describe().contains("RWF_DSYNC"), "{}", io.describe());
    round_trip(&mut io, &st);
}

#[test]
fn uring_linked_round_trip() {
    let (dir, st) = setup();
    let Some(mut io) = uring_or_skip(dir.path(), &cfg(Durability::LinkedFdatasync), "uring_linked_round_trip") else {
        return;
    };
    assert!(io.describe().contains("linked fdatasync"), "{}", io.describe());
    round_trip(&mut io, &st);
}

#[test]
fn pwrite_round_trip_both_modes() {
    for d in [Durability::Dsync, Durability::LinkedFdatasync] {
        let (dir, st) = setup();
        let mut io = PwriteIo::new(dir.path(), &cfg(d)).unwrap();
        round_trip(&mut io, &st);
    }
}

#[test]
fn buffered_round_trip_both_modes() {
    for d in [Durability::Dsync, Durability::LinkedFdatasync] {
        let (dir, st) = setup();
        let mut io = BufferedIo::new(dir.path(), &cfg(d)).unwrap();
        assert!(io.describe().contains("buffered"));
        round_trip(&mut io, &st);
    }
}

#[test]
fn storage_batch_io_picks_uring_or_pwrite() {
    let (dir, st) = setup();
    let mut c = cfg(Durability::Dsync);
    let mut io = st.batch_io(&c).unwrap();
    if UringIo::new(dir.path(), &c).is_ok() {
        assert!(io.describe().starts_with("io_uring"), "{}", io.describe());
    } else {
        assert!(io.describe().contains("pwritev2"), "{}", io.describe());
    }
    round_trip(io.as_mut(), &st);
    drop(io);
    c.disable_io_uring = true;
    let io = st.batch_io(&c).unwrap();
    assert!(io.describe().contains("pwritev2"), "{}", io.describe());
}

#[test]
fn bad_config_is_rejected() {
    let (dir, _st) = setup();
    for (buffers, buffer_bytes) in [(0, 4096), (MAX_BUFFERS + 1, 4096), (2, 0), (2, 4097), (2, 512)] {
        let c = IoConfig { buffers, buffer_bytes, ..cfg(Durability::Dsync) };
        assert_eq!(PwriteIo::new(dir.path(), &c).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(UringIo::new(dir.path(), &c).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}

/// Offsets the kernel refuses for O_DIRECT here (the device has 512-byte logical blocks, so
/// 4096 + 512 would be accepted; these are not 512-aligned).
const MISALIGNED: [u64; 2] = [1, 4096 + 1];

#[test]
fn uring_misaligned_linked_write_fails_stop() {
    let (dir, st) = setup();
    let Some(mut io) = uring_or_skip(dir.path(), &cfg(Durability::LinkedFdatasync), "uring_misaligned_linked") else {
        return;
    };
    let slot = io.open_segment(SEG).unwrap();
    for (i, off) in MISALIGNED.into_iter().enumerate() {
        io.buffer(0)[..4096].fill(0xab);
        io.submit(slot, off, 0, 4096, i as u64).unwrap();
        let got = reap_n(&mut io, 1);
        assert_eq!(
            got,
            vec![Completion {
                tag: i as u64,
                result: Err(IoFault::Errno { op: "write (linked fdatasync -ECANCELED)", errno: libc::EINVAL })
            }]
        );
    }
    // The backend stays consistent: an aligned write still goes through afterwards.
    io.submit(slot, 0, 0, 4096, 9).unwrap();
    assert_eq!(reap_n(&mut io, 1), vec![Completion { tag: 9, result: Ok(()) }]);
    io.close_segment(slot);
    assert!(st.read_file(SEG).unwrap()[..4096].iter().all(|&x| x == 0xab));
}

#[test]
fn uring_misaligned_dsync_write_fails() {
    let (dir, _st) = setup();
    let Some(mut io) = uring_or_skip(dir.path(), &cfg(Durability::Dsync), "uring_misaligned_dsync") else {
        return;
    };
    let slot = io.open_segment(SEG).unwrap();
    io.submit(slot, 1, 1, 4096, 5).unwrap();
    assert_eq!(reap_n(&mut io, 1), vec![Completion { tag: 5, result: Err(IoFault::Errno { op: "write", errno: libc::EINVAL }) }]);
}

#[test]
fn pwrite_misaligned_write_fails() {
    for d in [Durability::Dsync, Durability::LinkedFdatasync] {
        let (dir, _st) = setup();
        let mut io = PwriteIo::new(dir.path(), &cfg(d)).unwrap();
        let slot = io.open_segment(SEG).unwrap();
        io.submit(slot, 4097, 0, 4096, 1).unwrap();
        assert_eq!(reap_n(&mut io, 1), vec![Completion { tag: 1, result: Err(IoFault::Errno { op: "write", errno: libc::EINVAL }) }]);
    }
}

fn assert_in_flight_rule(io: &mut dyn BatchIo) {
    let slot = io.open_segment(SEG).unwrap();
    io.submit(slot, 0, 1, 4096, 1).unwrap();
    assert_eq!(io.in_flight(), 1);
    let touched = catch_unwind(AssertUnwindSafe(|| {
        io.buffer(1)[0] = 1;
    }));
    assert!(touched.is_err(), "buffer(1) must panic while in flight");
    let resubmitted = catch_unwind(AssertUnwindSafe(|| io.submit(slot, 4096, 1, 4096, 2)));
    assert!(resubmitted.is_err(), "submitting an in-flight buffer must panic");
    let closed = catch_unwind(AssertUnwindSafe(|| io.close_segment(slot)));
    assert!(closed.is_err(), "closing a segment with writes in flight must panic");
    // Other buffers stay usable.
    io.buffer(0)[0] = 7;
    assert_eq!(reap_n(io, 1), vec![Completion { tag: 1, result: Ok(()) }]);
    io.buffer(1)[0] = 1;
    io.close_segment(slot);
}

#[test]
fn buffer_in_flight_is_refused_uring() {
    let (dir, _st) = setup();
    for d in [Durability::Dsync, Durability::LinkedFdatasync] {
        let Some(mut io) = uring_or_skip(dir.path(), &cfg(d), "buffer_in_flight_is_refused_uring") else {
            return;
        };
        assert_in_flight_rule(&mut io);
    }
}

#[test]
fn buffer_in_flight_is_refused_pwrite() {
    let (dir, _st) = setup();
    let mut io = PwriteIo::new(dir.path(), &cfg(Durability::Dsync)).unwrap();
    assert_in_flight_rule(&mut io);
}

#[test]
fn uring_drop_waits_for_writes_in_flight() {
    let (dir, st) = setup();
    for d in [Durability::Dsync, Durability::LinkedFdatasync] {
        let Some(mut io) = uring_or_skip(dir.path(), &cfg(d), "uring_drop_waits") else {
            return;
        };
        let slot = io.open_segment(SEG).unwrap();
        for b in 0..3 {
            io.buffer(b)[..4096].fill(0x40 + b as u8);
            io.submit(slot, (b * 4096) as u64, b, 4096, b as u64).unwrap();
        }
        drop(io); // must drain the ring before freeing the buffers
        let data = st.read_file(SEG).unwrap();
        for b in 0..3 {
            assert!(data[b * 4096..(b + 1) * 4096].iter().all(|&x| x == 0x40 + b as u8));
        }
    }
}

#[test]
fn many_batches_cycle_through_buffers() {
    let (dir, st) = setup();
    let c = cfg(Durability::LinkedFdatasync);
    let Some(mut io) = uring_or_skip(dir.path(), &c, "many_batches_cycle_through_buffers") else {
        return;
    };
    let slot = io.open_segment(SEG).unwrap();
    let mut next_block = 0u64;
    let mut done = Vec::new();
    let mut free: Vec<usize> = (0..c.buffers).collect();
    let mut tag_buf = std::collections::HashMap::new();
    while next_block < 64 || io.in_flight() > 0 {
        while next_block < 64 && !free.is_empty() {
            let b = free.pop().unwrap();
            io.buffer(b)[..4096].fill(next_block as u8 + 1);
            io.submit(slot, next_block * 4096, b, 4096, next_block).unwrap();
            tag_buf.insert(next_block, b);
            next_block += 1;
        }
        io.reap(true, &mut |cpl| {
            assert_eq!(cpl.result, Ok(()));
            free.push(tag_buf[&cpl.tag]);
            done.push(cpl.tag);
        })
        .unwrap();
    }
    done.sort();
    assert_eq!(done, (0..64).collect::<Vec<_>>());
    io.close_segment(slot);
    let data = st.read_file(SEG).unwrap();
    for blk in 0..64usize {
        assert!(data[blk * 4096..(blk + 1) * 4096].iter().all(|&x| x == blk as u8 + 1), "block {blk}");
    }
}

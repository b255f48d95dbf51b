//! Micro-benches: the cross-thread hand-off a producer pays (crossbeam bounded channel
//! send → recv on another thread, round trip), and a tradewal
//! append + wait on an open log.

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Instant;

fn channel_handoff(c: &mut Criterion) {
    c.bench_function("crossbeam bounded send->recv->reply round trip", |b| {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
        let (back_tx, back_rx) = crossbeam_channel::bounded::<u64>(1024);
        let echo = std::thread::spawn(move || {
            for v in rx {
                if back_tx.send(v).is_err() {
                    break;
                }
            }
        });
        b.iter_custom(|iters| {
            let t = Instant::now();
            for i in 0..iters {
                tx.send(i).expect("echo thread alive");
                back_rx.recv().expect("echo thread alive");
            }
            t.elapsed()
        });
        drop(tx);
        echo.join().expect("echo thread");
    });
    c.bench_function("crossbeam bounded send (consumer draining)", |b| {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(1 << 16);
        let drain = std::thread::spawn(move || rx.iter().count());
        b.iter(|| tx.send(1).expect("drain thread alive"));
        drop(tx);
        drain.join().expect("drain thread");
    });
}

fn ticket_completion(c: &mut Criterion) {
    use tradewal::{Wal, WalConfig};
    let base = std::path::Path::new(tradewal_bench::DEFAULT_DIR);
    std::fs::create_dir_all(base).expect("bench data dir");
    let dir = tempfile::tempdir_in(base).expect("temp dir on the data disk");
    let wal = Wal::open(WalConfig::new(dir.path())).expect("open wal");
    let mut i = 0u64;
    c.bench_function("tradewal append + wait (durable, QD1)", |b| {
        b.iter(|| {
            let lsn = wal.append(&tradewal_bench::systems::sample_intent(i)).expect("append").wait().expect("durable");
            drop(wal.mark_executed(lsn).expect("outcome"));
            i += 1;
        })
    });
    wal.close().expect("close");
}

criterion_group!(benches, channel_handoff, ticket_completion);
criterion_main!(benches);

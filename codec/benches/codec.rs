//! Codec micro-benchmarks: encode + checksum per record (a group-commit batch of ~8000 intents in a
//! 1 MiB buffer), checksum alone, decode of a full segment image, JSONL export to `io::sink`.
//! Run: `cargo bench -p tradewal-codec -- --warm-up-time 1 --measurement-time 2`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::format::{frame_checksum, record_seed};
use tradewal_codec::*;

const BATCH_RECORDS: usize = 8000;
const BATCH_BUF_BYTES: usize = 1 << 20;

fn intent(n: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_767_225_600_000_000_000 + n as i64,
        symbol: Symbol::new("BTCUSDT").expect("valid"),
        side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
        price: 43250.5 + (n % 100) as f64 * 0.5,
        qty: 0.25,
        stop_loss: 42800.0,
        take_profit: 44100.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn header(segment_bytes: u64) -> SegmentHeader {
    SegmentHeader {
        k: 2,
        log_id: 1,
        session_id: 2,
        session_start_unix_s: 1_767_225_600,
        segment_no: 1,
        epoch: 3,
        base_lsn: 1,
        segment_bytes,
        created_unix_ns: 0,
    }
}

fn encode(c: &mut Criterion) {
    let intents: Vec<TradeIntent> = (0..BATCH_RECORDS as u64).map(intent).collect();
    let ctx = SegmentContext::from_header(&header(1 << 30));
    let mut buf = vec![0u8; BATCH_BUF_BYTES];
    // Bytes of one encoded batch, for the bytes/s figure.
    let batch_bytes = {
        let mut enc = BatchEncoder::new(&mut buf, ctx, 0, 1);
        for i in &intents {
            enc.push_intent(i).expect("fits");
        }
        enc.used_bytes() as u64
    };
    let mut g = c.benchmark_group("encode_batch_8000_intents");
    for (name, tp) in [("per_record", Throughput::Elements(BATCH_RECORDS as u64)), ("bytes", Throughput::Bytes(batch_bytes))] {
        g.throughput(tp);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut enc = BatchEncoder::new(&mut buf, ctx, 0, 1);
                for i in &intents {
                    enc.push_intent(black_box(i)).expect("fits");
                }
                black_box(enc.finish())
            })
        });
    }
    g.finish();
}

fn checksum(c: &mut Criterion) {
    // The frames of one encoded batch, checksummed one by one as the encoder and decoder do.
    let ctx = SegmentContext::from_header(&header(1 << 30));
    let mut buf = vec![0u8; BATCH_BUF_BYTES];
    let mut enc = BatchEncoder::new(&mut buf, ctx, 0, 1);
    for n in 0..BATCH_RECORDS as u64 {
        enc.push_intent(&intent(n)).expect("fits");
    }
    let used = enc.used_bytes();
    enc.finish();
    let mut frames = Vec::with_capacity(BATCH_RECORDS);
    let mut f = 64;
    while f < used {
        let len = u32::from_le_bytes(buf[f + 8..f + 12].try_into().expect("4")) as usize;
        frames.push(f..f + 24 + len);
        f += 24 + len;
    }
    let seed = record_seed(1, 3);
    let mut g = c.benchmark_group("checksum_8000_frames");
    for (name, tp) in [("per_record", Throughput::Elements(frames.len() as u64)), ("bytes", Throughput::Bytes((used - 64) as u64))] {
        g.throughput(tp);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut acc = 0u64;
                for r in &frames {
                    acc ^= frame_checksum(seed, &buf[r.start + 8..r.end]);
                }
                black_box(acc)
            })
        });
    }
    g.finish();
}

fn full_image() -> (Vec<u8>, u64) {
    let segment_bytes = 8u64 << 20;
    let mut b = SegmentBuilder::new(header(segment_bytes));
    let mut n = 0u64;
    b.batch(&[Item::Checkpoint(vec![], None)]).expect("fits");
    loop {
        let items: Vec<Item> = (n..n + BATCH_RECORDS as u64).map(|k| Item::Intent(intent(k))).collect();
        if b.end_offset() + BATCH_BUF_BYTES > segment_bytes as usize {
            break;
        }
        b.batch(&items).expect("fits");
        n += BATCH_RECORDS as u64;
    }
    let records = b.next_lsn() - 1;
    (b.into_bytes(), records)
}

fn decode(c: &mut Criterion) {
    let (img, records) = full_image();
    let mut g = c.benchmark_group("decode_full_8MiB_segment");
    for (name, tp) in [("per_record", Throughput::Elements(records)), ("bytes", Throughput::Bytes(img.len() as u64))] {
        g.throughput(tp);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d = SegmentDecoder::new(black_box(&img), Some(1));
                let n = d.by_ref().count();
                assert_eq!(n as u64, records);
                black_box(d.finish())
            })
        });
    }
    g.finish();
}

fn export(c: &mut Criterion) {
    let intents: Vec<TradeIntent> = (0..BATCH_RECORDS as u64).map(intent).collect();
    let mut line = Vec::new();
    write_intent_line(&mut line, 1, &intents[0], IntentStatus::Executed).expect("vec");
    let mut g = c.benchmark_group("export_jsonl_8000_intents");
    for (name, tp) in
        [("per_record", Throughput::Elements(BATCH_RECORDS as u64)), ("bytes", Throughput::Bytes((line.len() * BATCH_RECORDS) as u64))]
    {
        g.throughput(tp);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || std::io::BufWriter::with_capacity(1 << 16, std::io::sink()),
                |w| {
                    for (n, i) in intents.iter().enumerate() {
                        write_intent_line(w, n as u64 + 1, i, IntentStatus::Executed).expect("sink");
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, encode, checksum, decode, export);
criterion_main!(benches);

//! Pins the reading rules of docs/design.md "Reading rules, settled" (issue 12): the points an
//! independent reader written from the docs alone had to guess. Each test names the item it pins.
//!
//! Only two places build the types the format v2 work is changing: [`intent`] (the one
//! `TradeIntent` literal) and [`header`] (the one `SegmentHeader` literal).

use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::format::{record_seed, BatchHeader, HeaderError, SegmentName, CHECKPOINT_ENTRIES_PER_RECORD};
use tradewal_codec::*;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

// ---- the single constructors ----

/// The one place a `TradeIntent` is built in this file.
fn intent_with(n: i64, symbol: &str, price: f64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_767_225_600_000_000_000 + n,
        symbol: Symbol::new(symbol).unwrap(),
        side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
        price,
        qty: 0.25,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn intent(n: i64) -> TradeIntent {
    intent_with(n, "BTCUSDT", 100.0 + n as f64)
}

/// The one place a `SegmentHeader` is built in this file. An even epoch: a file zero-filled for
/// this life (not recycled).
fn header(seg: u64, base: Lsn, k: u32, segment_bytes: u64, epoch: u64) -> SegmentHeader {
    SegmentHeader {
        k,
        log_id: 0xA11CE,
        session_id: 7,
        session_start_unix_s: 1_767_225_600,
        segment_no: seg,
        epoch,
        base_lsn: base,
        segment_bytes,
        created_unix_ns: 3,
    }
}

const BLOCK: usize = BLOCK_BYTES;
const SEG: u64 = 7;
const EPOCH: u64 = 0xE0E0;

// ---- byte surgery: patch a field, then make its checksum valid again ----

fn reseal_header(img: &mut [u8]) {
    let sum = xxh3_64(&img[..88]);
    img[88..96].copy_from_slice(&sum.to_le_bytes());
}

fn reseal_batch(img: &mut [u8], at: usize) {
    let sum = xxh3_64(&img[at..at + 56]);
    img[at + 56..at + 64].copy_from_slice(&sum.to_le_bytes());
}

fn reseal_frame(img: &mut [u8], frame_at: usize, seed: u64) {
    let len = u32::from_le_bytes(img[frame_at + 8..frame_at + 12].try_into().unwrap()) as usize;
    let sum = xxh3_64_with_seed(&img[frame_at + 8..frame_at + 24 + len], seed);
    img[frame_at..frame_at + 8].copy_from_slice(&sum.to_le_bytes());
}

/// Rewrites the batch header at `at` through `f` (checksum recomputed by `encode`).
fn edit_batch(img: &mut [u8], at: usize, f: impl FnOnce(&mut BatchHeader)) {
    let mut h = BatchHeader::decode(&img[at..]).expect("a valid batch header to edit");
    f(&mut h);
    h.encode(&mut img[at..]);
}

fn end_of(img: &[u8], expected: Option<u64>) -> SegmentEnd {
    SegmentDecoder::new(img, expected).finish()
}

/// A segment of `batches` one-block batches (batch 0: an empty checkpoint and one intent; each
/// later batch: one intent), K = `k`, 16 blocks long. Batch `j` starts at `(j + 1) * 4096`.
fn small_segment(k: u32, batches: usize) -> (SegmentHeader, Vec<u8>) {
    let h = header(SEG, 1, k, 16 * BLOCK as u64, EPOCH);
    let mut b = SegmentBuilder::new(h);
    for j in 0..batches {
        let mut items = Vec::new();
        if j == 0 {
            items.push(Item::Checkpoint(Vec::new(), None));
        }
        items.push(Item::Intent(intent(j as i64)));
        b.batch(&items).unwrap();
    }
    assert_eq!(b.batch_offsets(), (1..=batches).map(|j| j * BLOCK).collect::<Vec<_>>());
    (h, b.into_bytes())
}

fn batch_at(j: usize) -> usize {
    (j + 1) * BLOCK
}

/// Damages batch `j`'s payload (a record checksum then fails).
fn damage_payload(img: &mut [u8], j: usize) {
    img[batch_at(j) + 64 + 30] ^= 0x10;
}

fn acknowledged(end: &SegmentEnd) -> Option<(u64, u64, u64)> {
    match end {
        SegmentEnd::Corrupt(Corruption { offset, reason: CorruptReason::AcknowledgedBatch { later_batch, later_offset, .. }, .. }) => {
            Some((*offset, *later_batch, *later_offset))
        }
        _ => None,
    }
}

// ---- 1. checksums: header and batch header plain xxh3-64 (seed 0), records seeded ----

#[test]
fn item1_header_and_batch_checksums_are_unseeded_record_checksums_are_seeded() {
    let (h, img) = small_segment(2, 2);
    // Header: xxh3-64 of bytes 0..88, no seed (seed 0 is the same function).
    let stored = u64::from_le_bytes(img[88..96].try_into().unwrap());
    assert_eq!(stored, xxh3_64(&img[..88]));
    assert_eq!(stored, xxh3_64_with_seed(&img[..88], 0));
    // Batch header: xxh3-64 of its bytes 0..56, no seed.
    let b = batch_at(1);
    assert_eq!(u64::from_le_bytes(img[b + 56..b + 64].try_into().unwrap()), xxh3_64(&img[b..b + 56]));
    // Record frame: seed = xxh3-64 (seed 0) of segment number LE ‖ epoch LE, 16 bytes.
    let mut seed_input = [0u8; 16];
    seed_input[..8].copy_from_slice(&SEG.to_le_bytes());
    seed_input[8..].copy_from_slice(&EPOCH.to_le_bytes());
    let seed = xxh3_64(&seed_input);
    assert_eq!(seed, record_seed(SEG, EPOCH));
    assert_eq!(seed, h.seed());
    let f = b + 64;
    let len = u32::from_le_bytes(img[f + 8..f + 12].try_into().unwrap()) as usize;
    let stored = u64::from_le_bytes(img[f..f + 8].try_into().unwrap());
    assert_eq!(stored, xxh3_64_with_seed(&img[f + 8..f + 24 + len], seed), "covers bytes 8..24+len with the seed");
    assert_ne!(stored, xxh3_64(&img[f + 8..f + 24 + len]), "an unseeded record checksum does not match");
}

// ---- 2. a valid header and an all-zero batch 0 ----

#[test]
fn item2_valid_header_with_zero_batch0_is_a_torn_first_write() {
    for epoch in [EPOCH, EPOCH | 1] {
        // zero-filled and recycled lives alike
        let h = header(SEG, 5, 2, 8 * BLOCK as u64, epoch);
        let mut img = vec![0u8; h.segment_bytes as usize];
        h.encode(&mut img[..BLOCK]);
        let end = end_of(&img, Some(SEG));
        assert_eq!(end, SegmentEnd::TornTail { at: 0, lsn: 5, batches: 0, fault: Fault::BatchHeader }, "epoch {epoch:#x}");
        // Stray bytes further on: still the first write, torn (no valid later batch proves anything).
        img[3 * BLOCK + 7] = 1;
        assert_eq!(
            end_of(&img, Some(SEG)),
            SegmentEnd::TornTail { at: 0, lsn: 5, batches: 0, fault: Fault::DataAfterEnd { offset: 3 * BLOCK as u64 + 7 } }
        );
    }
    // In a log, such a segment must be the last data segment: a later one with data makes it corruption.
    let (h1, img1) = small_segment(2, 2);
    let h2 = header(SEG + 1, 4, 2, 8 * BLOCK as u64, EPOCH);
    let mut img2 = vec![0u8; h2.segment_bytes as usize];
    h2.encode(&mut img2[..BLOCK]);
    let mut b3 = SegmentBuilder::new(header(SEG + 2, 4, 2, 8 * BLOCK as u64, EPOCH));
    b3.batch(&[Item::Checkpoint(
        vec![InDoubt { lsn: 2, intent: intent(1), fill: None }, InDoubt { lsn: 3, intent: intent(2), fill: None }],
        None,
    )])
    .unwrap();
    let _ = h1;
    let mut s = LogScanner::new();
    s.push_segment(SEG, &img1, |_, _| {}).unwrap();
    s.push_segment(SEG + 1, &img2, |_, _| {}).unwrap();
    let err = s.push_segment(SEG + 2, b3.bytes(), |_, _| {}).unwrap_err();
    assert!(matches!(err.reason, CorruptReason::TornBeforeLaterData { later_segment, .. } if later_segment == SEG + 2), "{err:?}");
    assert_eq!((err.segment, err.offset), (SEG + 1, 0));
}

// ---- 3. where the K-window witness is searched for, and what it needs ----

#[test]
fn item3_witness_is_a_valid_bound_batch_header_numbered_e_plus_k_or_more() {
    let (_, mut img) = small_segment(2, 6);
    damage_payload(&mut img, 2);
    // Batches 3, 4, 5 are valid; the first bound header numbered >= 2 + 2 is batch 4.
    assert_eq!(acknowledged(&end_of(&img, Some(SEG))), Some((batch_at(2) as u64, 4, batch_at(4) as u64)));

    // e + K - 1 is not enough.
    let mut only3 = img.clone();
    only3[batch_at(4)..].fill(0);
    assert!(matches!(end_of(&only3, Some(SEG)), SegmentEnd::TornTail { at, .. } if at == batch_at(2) as u64));

    // The header alone suffices: batch 4's payload garbled, batches 3 and 5 gone.
    let mut header_only = img.clone();
    header_only[batch_at(3)..batch_at(4)].fill(0);
    header_only[batch_at(4) + 64..batch_at(4) + BLOCK].fill(0xAB);
    header_only[batch_at(5)..].fill(0);
    assert_eq!(acknowledged(&end_of(&header_only, Some(SEG))), Some((batch_at(2) as u64, 4, batch_at(4) as u64)));

    // Nor are its first LSN, record count or payload length checked.
    let mut odd = header_only.clone();
    edit_batch(&mut odd, batch_at(4), |b| {
        b.first_lsn = 999;
        b.record_count = 77;
        b.payload_bytes = 5;
    });
    assert_eq!(acknowledged(&end_of(&odd, Some(SEG))), Some((batch_at(2) as u64, 4, batch_at(4) as u64)));
}

#[test]
fn item3_witness_is_searched_at_every_4096_boundary_to_the_end_of_the_segment() {
    let (_, mut img) = small_segment(2, 5);
    damage_payload(&mut img, 2);
    let witness: [u8; 64] = img[batch_at(4)..batch_at(4) + 64].try_into().unwrap();
    img[batch_at(3)..].fill(0);

    // At the last block of the segment (its number need not match its place): found.
    let mut last = img.clone();
    let at = 15 * BLOCK;
    last[at..at + 64].copy_from_slice(&witness);
    assert_eq!(acknowledged(&end_of(&last, Some(SEG))), Some((batch_at(2) as u64, 4, at as u64)));

    // Off a 4096 boundary: not looked at.
    let mut off = img.clone();
    let at = 10 * BLOCK + 512;
    off[at..at + 64].copy_from_slice(&witness);
    assert!(matches!(end_of(&off, Some(SEG)), SegmentEnd::TornTail { .. }));

    // In a short image, a header cut by the image's end is not one.
    let mut short = last.clone();
    short.truncate(15 * BLOCK + 63);
    assert!(matches!(end_of(&short, Some(SEG)), SegmentEnd::TornTail { .. }));
    short = last[..15 * BLOCK + 64].to_vec();
    assert!(acknowledged(&end_of(&short, Some(SEG))).is_some());
}

#[test]
fn item3_witness_must_be_bound_to_this_segment_epoch_and_k() {
    let (_, mut img) = small_segment(2, 5);
    damage_payload(&mut img, 2);
    img[batch_at(3)..batch_at(4)].fill(0);
    assert!(acknowledged(&end_of(&img, Some(SEG))).is_some());
    type Edit = fn(&mut BatchHeader);
    let cases: [(&str, Edit); 3] = [("epoch", |b| b.epoch ^= 2), ("segment", |b| b.segment_no += 1), ("k", |b| b.k = 3)];
    for (what, f) in cases {
        let mut x = img.clone();
        edit_batch(&mut x, batch_at(4), f);
        assert!(matches!(end_of(&x, Some(SEG)), SegmentEnd::TornTail { .. }), "another {what} is no witness");
    }
    // Non-zero reserved bytes make a batch header invalid, witness or not.
    let mut x = img.clone();
    x[batch_at(4) + 48] = 1;
    reseal_batch(&mut x, batch_at(4));
    assert!(matches!(end_of(&x, Some(SEG)), SegmentEnd::TornTail { .. }));
}

// ---- 4. a damaged segment header: which epoch and K the search uses ----

#[test]
fn item4_damaged_header_any_epoch_the_witness_own_k_and_the_file_name_number() {
    let (_, mut img) = small_segment(2, 3);
    img[72] ^= 1; // "created": the header checksum fails
                  // Judged as damage to batch 0 (e = 0, offset 0): batch 2 >= 0 + its own K (2) proves it.
    assert_eq!(acknowledged(&end_of(&img, Some(SEG))), Some((0, 2, batch_at(2) as u64)));
    // Any epoch.
    let mut x = img.clone();
    edit_batch(&mut x, batch_at(2), |b| b.epoch = 12345);
    assert_eq!(acknowledged(&end_of(&x, Some(SEG))), Some((0, 2, batch_at(2) as u64)));
    // K is the witness's own field: K = 3 needs batch number >= 3.
    for j in 0..3 {
        edit_batch(&mut x, batch_at(j), |b| b.k = 3);
    }
    assert!(matches!(end_of(&x, Some(SEG)), SegmentEnd::TornTail { at: 0, lsn: 0, batches: 0, .. }));
    // The segment number comes from the file name; without one it is 0.
    assert!(matches!(end_of(&img, Some(SEG + 1)), SegmentEnd::TornTail { at: 0, .. }));
    assert!(matches!(end_of(&img, None), SegmentEnd::TornTail { at: 0, .. }));
    // A header block of zeros over data is the same case (DataAfterEnd at offset 0).
    let mut z = img.clone();
    z[..BLOCK].fill(0);
    assert_eq!(acknowledged(&end_of(&z, Some(SEG))), Some((0, 2, batch_at(2) as u64)));
}

// ---- 5. reserved bytes that are non-zero under a valid checksum ----

#[test]
fn item5_reserved_bytes_header_batch_frame_and_body() {
    let (h, img) = small_segment(2, 2);
    // Segment header reserved (80..88), resealed: the header is invalid (damage to batch 0).
    let mut x = img.clone();
    x[80] = 1;
    reseal_header(&mut x);
    assert_eq!(SegmentHeader::decode(&x[..BLOCK]), Err(HeaderError::Field("reserved bytes not zero")));
    assert!(matches!(end_of(&x, Some(SEG)), SegmentEnd::TornTail { at: 0, fault: Fault::Header(HeaderError::Field(_)), .. }));
    // Header block padding (96..4096) is outside the checksum and must be zero too.
    let mut x = img.clone();
    x[4000] = 1;
    assert_eq!(SegmentHeader::decode(&x[..BLOCK]), Err(HeaderError::Field("reserved bytes not zero")));

    // Batch header reserved (48..56), resealed: the batch header is invalid.
    let mut x = img.clone();
    x[batch_at(1) + 48] = 1;
    reseal_batch(&mut x, batch_at(1));
    assert_eq!(end_of(&x, Some(SEG)), SegmentEnd::TornTail { at: batch_at(1) as u64, lsn: 3, batches: 1, fault: Fault::BatchHeader });

    // Frame header reserved (13..16), resealed: FrameKind, judged by the K-window rule like any
    // batch fault (a torn tail here, in the last batch), not as Impossible.
    let mut x = img.clone();
    let f = batch_at(1) + 64;
    x[f + 14] = 1;
    reseal_frame(&mut x, f, h.seed());
    assert_eq!(
        end_of(&x, Some(SEG)),
        SegmentEnd::TornTail { at: batch_at(1) as u64, lsn: 3, batches: 1, fault: Fault::FrameKind { offset: f as u64 } }
    );

    // Body: a value no writer makes under a valid checksum (side 2, byte 48 of a v2 intent body)
    // is corruption wherever it sits, even in the last batch.
    let mut x = img.clone();
    let side = f + 24 + 48;
    x[side] = 2;
    reseal_frame(&mut x, f, h.seed());
    match end_of(&x, Some(SEG)) {
        SegmentEnd::Corrupt(c) => {
            assert!(matches!(c.reason, CorruptReason::Impossible(Fault::Body { offset, .. }) if offset == f as u64), "{c:?}");
        }
        e => panic!("expected Impossible, got {e:?}"),
    }
}

#[test]
fn item5_frame_reserved_bytes_before_a_witness_are_acknowledged_batch_corruption() {
    let (h, mut img) = small_segment(2, 5);
    let f = batch_at(2) + 64;
    img[f + 13] = 0x80;
    reseal_frame(&mut img, f, h.seed());
    match end_of(&img, Some(SEG)) {
        SegmentEnd::Corrupt(Corruption { reason: CorruptReason::AcknowledgedBatch { fault, later_batch: 4, .. }, .. }) => {
            assert_eq!(fault, Fault::FrameKind { offset: f as u64 })
        }
        e => panic!("{e:?}"),
    }
}

// ---- 6. short images: the decoder reads missing bytes as zeros ----

#[test]
fn item6_decoder_reads_a_short_image_as_never_written_past_its_end() {
    let (_, img) = small_segment(2, 3);
    let short = &img[..batch_at(3)];
    assert!(matches!(end_of(short, Some(SEG)), SegmentEnd::Clean { next_lsn: 5, batches: 3, .. }));
    // A batch that runs past the end of the image is lost (torn), even if what is there is valid.
    let cut = &img[..batch_at(2) + 200];
    assert!(matches!(end_of(cut, Some(SEG)), SegmentEnd::TornTail { at, fault: Fault::BatchLength, .. } if at == batch_at(2) as u64));
    // Fewer than 4096 bytes: block 0 is read padded with zeros; a cut inside the checksummed 88
    // bytes fails the header, a cut after them leaves a valid header with no batch 0.
    assert!(matches!(end_of(&img[..50], Some(SEG)), SegmentEnd::TornTail { at: 0, fault: Fault::Header(HeaderError::Checksum), .. }));
    assert!(matches!(end_of(&img[..100], Some(SEG)), SegmentEnd::TornTail { at: 0, lsn: 1, fault: Fault::BatchHeader, .. }));
    assert_eq!(end_of(&[], Some(SEG)), SegmentEnd::Empty);
}

// ---- 7 and 8. checkpoints ----

/// A segment built batch by batch: each element of `batches` is one batch's records.
enum Rec {
    Part(u32, u32, Vec<InDoubt>),
    Intent(TradeIntent),
}

fn hand_segment(seg: u64, base: Lsn, batches: &[Vec<Rec>]) -> Vec<u8> {
    let h = header(seg, base, 2, 64 * BLOCK as u64, EPOCH + 2 * seg);
    let ctx = SegmentContext::from_header(&h);
    let mut img = vec![0u8; h.segment_bytes as usize];
    let (mut at, mut lsn) = (BLOCK, base);
    for (j, recs) in batches.iter().enumerate() {
        let mut enc = BatchEncoder::new(&mut img[at..at + 8 * BLOCK], ctx, j as u64, lsn);
        for r in recs {
            match r {
                Rec::Part(p, n, e) => enc.push_checkpoint(*p, *n, e, None).unwrap(),
                Rec::Intent(i) => enc.push_intent(i).unwrap(),
            };
        }
        lsn = enc.next_lsn();
        at += enc.finish();
    }
    h.encode(&mut img[..BLOCK]);
    img
}

/// Segment 1: an empty checkpoint then `n` intents (LSN 2..=n+1), all in doubt.
fn first_segment(n: usize) -> (Vec<u8>, Vec<InDoubt>) {
    let set: Vec<InDoubt> = (0..n).map(|i| InDoubt { lsn: i as u64 + 2, intent: intent(i as i64), fill: None }).collect();
    let mut b0 = vec![Rec::Part(0, 1, Vec::new())];
    b0.extend(set.iter().map(|d| Rec::Intent(d.intent)));
    (hand_segment(1, 1, &[b0]), set)
}

fn scan(segs: &[(u64, &[u8])]) -> Result<LogState, Corruption> {
    let mut s = LogScanner::new();
    for (no, img) in segs {
        s.push_segment(*no, img, |_, _| {})?;
    }
    Ok(s.finish())
}

fn lsns(st: &LogState) -> Vec<Lsn> {
    st.in_doubt.iter().map(|d| d.lsn).collect()
}

#[test]
fn item7_a_segment_ending_inside_its_multi_part_checkpoint() {
    let (s1, set) = first_segment(300);
    let base = 302;
    let whole = hand_segment(
        2,
        base,
        &[
            vec![Rec::Part(0, 3, set[..128].to_vec())],
            vec![Rec::Part(1, 3, set[128..256].to_vec())],
            vec![Rec::Part(2, 3, set[256..].to_vec())],
            vec![Rec::Intent(intent(999))],
        ],
    );
    let st = scan(&[(1, &s1[..]), (2, &whole[..])]).unwrap();
    assert_eq!(st.in_doubt.len(), 301);

    // Clean after part 0 (parts 1.. never written): accepted, the set carried from segment 1.
    let mut clean = whole.clone();
    // The offset of batch 1 (part 1): the block holding its header.
    let part1_at = (2..64).map(|b| b * BLOCK).find(|&q| BatchHeader::decode(&whole[q..]).is_some_and(|h| h.batch_no == 1)).unwrap();
    clean[part1_at..].fill(0);
    let st = scan(&[(1, &s1[..]), (2, &clean[..])]).unwrap();
    assert!(matches!(st.segments[1].end, SegmentEnd::Clean { batches: 1, .. }));
    assert_eq!(lsns(&st), set.iter().map(|d| d.lsn).collect::<Vec<_>>(), "the in-doubt set of segment 1, unchanged");
    assert_eq!(st.next_lsn, base + 1);

    // Torn inside part 1 (the last write: nothing after it): the same, as a torn tail.
    let part2_at = (2..64).map(|b| b * BLOCK).find(|&q| BatchHeader::decode(&whole[q..]).is_some_and(|h| h.batch_no == 2)).unwrap();
    let mut torn = whole.clone();
    torn[part2_at..].fill(0);
    torn[part1_at + 64 + 40] ^= 1;
    let st = scan(&[(1, &s1[..]), (2, &torn[..])]).unwrap();
    assert!(matches!(st.torn_tail, Some(TornTail { segment: 2, at, lsn, .. }) if at == part1_at as u64 && lsn == base + 1));
    assert_eq!(st.in_doubt.len(), 300);

    // Seeding (segment 1 removed by retention): only the parts present seed the set.
    let st = scan(&[(2, &clean[..])]).unwrap();
    assert_eq!(lsns(&st), set[..128].iter().map(|d| d.lsn).collect::<Vec<_>>(), "parts 1 and 2 are not known");
}

#[test]
fn item8_checkpoint_parts_any_split_compared_by_content_only_at_the_start() {
    let (s1, set) = first_segment(300);
    let base = 302;
    let ok = |batches: &[Vec<Rec>]| scan(&[(1, &s1[..]), (2, &hand_segment(2, base, batches)[..])]);
    // The writer's split (and the builder's): parts of 128 filled in order.
    let mut b = SegmentBuilder::new(header(9, 1, 2, 64 * BLOCK as u64, EPOCH));
    b.batch(&[Item::Checkpoint(set.clone(), None)]).unwrap();
    let sizes: Vec<usize> = SegmentDecoder::new(b.bytes(), Some(9))
        .map(|f| match f.decode().unwrap() {
            Record::Checkpoint(c) => c.entries.len(),
            r => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(CHECKPOINT_ENTRIES_PER_RECORD, 128);
    assert_eq!(sizes, vec![128, 128, 44]);

    let semantics = |r: Result<LogState, Corruption>| match r {
        Err(Corruption { reason: CorruptReason::Semantics(s), .. }) => s,
        r => panic!("expected Semantics, got {r:?}"),
    };
    // Format 2: parts are filled by 128 in order; any other split is refused (even, uneven, an
    // empty part in the middle).
    ok(&[vec![Rec::Part(0, 3, set[..128].to_vec()), Rec::Part(1, 3, set[128..256].to_vec()), Rec::Part(2, 3, set[256..].to_vec())]])
        .unwrap();
    assert!(semantics(ok(&[vec![
        Rec::Part(0, 3, set[..100].to_vec()),
        Rec::Part(1, 3, set[100..200].to_vec()),
        Rec::Part(2, 3, set[200..].to_vec())
    ]]))
    .contains("not 128"));
    assert!(semantics(ok(&[vec![
        Rec::Part(0, 3, set[..128].to_vec()),
        Rec::Part(1, 3, Vec::new()),
        Rec::Part(2, 3, set[128..256].to_vec())
    ]]))
    .contains("not 128"));

    let whole =
        |s: &[InDoubt]| vec![Rec::Part(0, 3, s[..128].to_vec()), Rec::Part(1, 3, s[128..256].to_vec()), Rec::Part(2, 3, s[256..].to_vec())];
    // By content: the same LSNs with one intent's price changed.
    let mut changed = set.clone();
    changed[10].intent = intent_with(10, "BTCUSDT", 1.5);
    assert!(semantics(ok(&[whole(&changed)])).contains("disagrees"));
    // One entry missing.
    assert!(semantics(ok(&[vec![Rec::Part(0, 1, set[1..128].to_vec())]])).contains("misses"));
    // Only at the start: a checkpoint after an intent.
    let mut b0 = whole(&set);
    b0.push(Rec::Intent(intent(5)));
    b0.push(Rec::Part(0, 1, Vec::new()));
    assert!(semantics(ok(&[b0])).contains("after the start"));
    // An intent before the checkpoint is complete.
    assert!(semantics(ok(&[vec![Rec::Part(0, 2, set[..128].to_vec()), Rec::Intent(intent(5))]])).contains("complete checkpoint"));
}

// ---- 10. the format's segment size limits ----

#[test]
fn item10_header_segment_size_8kib_to_1tib_multiple_of_4096() {
    let ok = |bytes: u64| {
        let h = header(1, 1, 2, 8192, EPOCH);
        let mut b = vec![0u8; BLOCK];
        h.encode(&mut b);
        b[64..72].copy_from_slice(&bytes.to_le_bytes());
        reseal_header(&mut b);
        SegmentHeader::decode(&b).map(|h| h.segment_bytes)
    };
    assert_eq!(ok(8192), Ok(8192));
    assert_eq!(ok(1 << 40), Ok(1 << 40));
    assert_eq!(ok(32 << 30), Ok(32 << 30), "above the engine's 16 GiB, still a valid header");
    for bad in [4096, (1 << 40) + 4096, 8192 + 512, 0] {
        assert_eq!(ok(bad), Err(HeaderError::Field("segment_bytes")), "{bad}");
    }
}

// ---- 11. calendar checks of segment names ----

#[test]
fn item11_segment_names_parse_only_when_they_format_back_to_themselves() {
    let parses = |n: &str| SegmentName::parse(n).map(|s| (s.session_start_unix_s, s.segment_no));
    assert_eq!(parses("wal_20240229_235959_000001.log"), Some((1_709_251_199, 1)), "leap day");
    assert_eq!(parses("wal_20000229_000000_000001.log"), Some((951_782_400, 1)), "2000 is a leap year");
    assert_eq!(parses("wal_19700101_000000_000000.log"), Some((0, 0)), "segment 0 parses");
    assert_eq!(parses("wal_19691231_235959_000001.log"), Some((-1, 1)), "before 1970");
    assert_eq!(parses("wal_00000101_000000_000001.log"), Some((-62_167_219_200, 1)), "year 0");
    assert_eq!(parses("wal_20260109_104800_1234567.log"), Some((1_767_955_680, 1_234_567)), "7 digits, no leading zero");
    for bad in [
        "wal_20250229_000000_000001.log",               // not a leap year
        "wal_19000229_000000_000001.log",               // 1900 is not a leap year
        "wal_20260231_000000_000001.log",               // February 31
        "wal_20260431_000000_000001.log",               // April 31
        "wal_20260100_000000_000001.log",               // day 0
        "wal_20261301_000000_000001.log",               // month 13
        "wal_20260109_240000_000001.log",               // 24:00:00
        "wal_20260109_236000_000001.log",               // minute 60
        "wal_20261231_235960_000001.log",               // second 60 (no leap seconds)
        "wal_20260109_104800_0000001.log",              // 7 digits with a leading zero
        "wal_20260109_104800_00001.log",                // 5 digits
        "wal_20260109_104800_99999999999999999999.log", // over u64
        "wal_20260109_104800_+00001.log",
        "WAL_20260109_104800_000001.log",
        "wal_20260109_104800_000001.LOG",
        "wal_20260109_104800_000001.log.tmp",
        "wal_20260109_104800_000001.log.free",
        "wal_20260109_104800_000001_.log",
    ] {
        assert_eq!(SegmentName::parse(bad), None, "{bad}");
    }
}

// ---- 12. JSONL: floats and strings, byte for byte ----

#[test]
fn item12_float_forms_are_exactly_what_the_export_writes() {
    let cases: &[(f64, &str)] = &[
        (0.1, "0.1"),
        (42800.0, "42800.0"),
        (3.0, "3.0"),
        (123456789.12345679, "123456789.12345679"),
        (1e15, "1000000000000000.0"),
        (9007199254740993.0, "9007199254740992.0"),
        (1e16, "1e+16"),
        (1.2345678901234568e17, "1.2345678901234568e+17"),
        (f64::MAX, "1.7976931348623157e+308"),
        (1e-5, "0.00001"),
        (2.5e-5, "0.000025"),
        (1.2345e-5, "0.000012345"),
        (1e-6, "1e-6"),
        (1.5e-6, "1.5e-6"),
        (1e-7, "1e-7"),
        (1e-300, "1e-300"),
        (5e-324, "5e-324"),
        (2.2250738585072014e-308, "2.2250738585072014e-308"),
    ];
    for &(v, want) in cases {
        let mut line = Vec::new();
        write_intent_line(&mut line, 1, &intent_with(0, "X", v), IntentStatus::Pending).unwrap();
        let line = String::from_utf8(line).unwrap();
        assert!(line.contains(&format!("\"price\":{want},")), "{v:e}: {line}");
        assert_eq!(want.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{want} parses back");
    }
}

#[test]
fn item12_strings_escape_only_quote_and_backslash() {
    // Every printable ASCII byte but `"` and `\` is written as itself; those two as `\"` and `\\`.
    let all: Vec<u8> = (0x21u8..=0x7e).collect();
    for chunk in all.chunks(16) {
        let sym = std::str::from_utf8(chunk).unwrap();
        let mut line = Vec::new();
        write_intent_line(&mut line, 1, &intent_with(0, sym, 1.0), IntentStatus::Pending).unwrap();
        let want: String = sym
            .chars()
            .map(|c| match c {
                '"' => "\\\"".to_string(),
                '\\' => "\\\\".to_string(),
                c => c.to_string(),
            })
            .collect();
        let line = String::from_utf8(line).unwrap();
        assert!(line.contains(&format!("\"sym\":\"{want}\",")), "{line}");
        // Parsed back: the same symbol.
        let back: IntentLine = serde_json::from_str(&line).unwrap();
        assert_eq!(back.sym.as_str(), sym);
    }
    let mut line = Vec::new();
    write_intent_line(&mut line, 7, &intent_with(2, "A\"B\\C/", 2.0), IntentStatus::Executed).unwrap();
    assert_eq!(
        String::from_utf8(line).unwrap(),
        "{\"lsn\":7,\"ts\":1767225600000000002,\"sym\":\"A\\\"B\\\\C/\",\"side\":\"BUY\",\"price\":2.0,\"qty\":0.25,\"sl\":0.0,\"tp\":0.0,\"exec\":true}\n"
    );
}

//! Damage classification of one segment (I2, I4): every single-bit flip is detected, torn last
//! batches are torn tails, damage before K later batches is corruption, stale batches are rejected.

mod common;

use common::*;
use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::decode::{CorruptReason, Fault};
use tradewal_codec::*;

const K: u32 = 2;

/// Header + 3 one-block batches + a zero block (20 KiB), K = 2, holding every format-2 record
/// shape: intents with a client order id and a tag, a two-leg group, and outcomes of every kind of
/// data (a partial fill, a fill with a venue order id and time, a cancel, a reject).
fn small() -> SegmentBuilder {
    let mut b = SegmentBuilder::new(header(1, 1, K, 20 * 1024));
    let with_ids = |n: i64| TradeIntent {
        cl_ord_id: Some(OrderId::new(&format!("CLORD-{n}-ABCDEFGHIJKLMNOPQRSTUVWXY")).unwrap()),
        tag: Some(n as u32),
        ..intent(n)
    };
    let venue = |s: &str| Some(OrderId::new(s).unwrap());
    b.batch(&[Item::Checkpoint(vec![], None), Item::Intent(with_ids(1)), Item::Intent(intent(2)), Item::Intent(with_ids(3))]).unwrap();
    b.batch(&[
        Item::Group(vec![intent(4), with_ids(5)]),
        Item::Report(Outcome {
            intent_lsn: 2,
            status: Status::PartiallyFilled { qty: 0.125, avg_price: 43_250.5 },
            venue_order_id: venue("V-2"),
            ts_ns: 17,
        }),
    ])
    .unwrap();
    b.batch(&[
        Item::Report(Outcome {
            intent_lsn: 2,
            status: Status::Filled { qty: 0.25, avg_price: 43_251.0 },
            venue_order_id: venue("V-2"),
            ts_ns: 18,
        }),
        Item::Report(Outcome::new(3, Status::Cancelled { filled_qty: 0.0 })),
        Item::Report(Outcome { intent_lsn: 5, status: Status::Rejected { reason: 0xDEAD }, venue_order_id: None, ts_ns: -1 }),
    ])
    .unwrap();
    assert_eq!(b.batch_offsets(), &[4096, 8192, 12288]);
    assert_eq!(b.end_offset(), 16384);
    b
}

/// First LSN of each batch of `b`, read back from the image.
fn batch_lsns(b: &SegmentBuilder) -> Vec<Lsn> {
    let mut d = SegmentDecoder::new(b.bytes(), None);
    let offs = b.batch_offsets();
    let mut firsts = vec![0; offs.len()];
    for f in d.by_ref() {
        let j = offs.iter().rposition(|&o| o as u64 <= f.offset).unwrap();
        if firsts[j] == 0 {
            firsts[j] = f.lsn;
        }
    }
    firsts
}

/// Flips every bit of `bytes` (a range of the 20 KiB image) one at a time, decodes, and checks the
/// classification the design gives; returns (corrupt, torn) counts.
fn flip_every_bit(bytes: std::ops::Range<usize>) -> (u32, u32) {
    let b = small();
    let img = b.bytes().to_vec();
    let (good, end) = decode(&img, Some(1));
    assert!(matches!(end, SegmentEnd::Clean { next_lsn: 11, end_offset: 16384, batches: 3 }), "{end:?}");
    let offs = b.batch_offsets().to_vec();
    let firsts = batch_lsns(&b);
    let mut flipped = img.clone();
    let (mut corrupt, mut torn) = (0u32, 0u32);
    for byte in bytes {
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            // Frames are only counted here (cheap); their content was validated by the decoder, and
            // the content of kept records is compared on a sample below.
            let mut d = SegmentDecoder::new(&flipped, Some(1));
            let kept = d.by_ref().count();
            let end = d.end().cloned().expect("ended");
            if (byte * 8 + bit) % 97 == 0 {
                let (recs, _) = decode(&flipped, Some(1));
                assert_eq!(recs[..], good[..kept], "kept records are the original ones");
            }
            flipped[byte] ^= 1 << bit;
            assert!(!(kept == good.len() && matches!(end, SegmentEnd::Clean { .. })), "flip {byte}.{bit} undetected");
            // Which write does the byte belong to? The header block goes with batch 0.
            let e = if byte < offs[0] { 0 } else { offs.iter().rposition(|&o| o <= byte).unwrap() };
            let in_tail = byte >= b.end_offset();
            if in_tail {
                // Zero tail: every batch is kept, the stray byte is beyond the last one.
                // In the first 64 bytes it reads as a damaged batch header, further on as stray data.
                let fault = if byte < 16384 + 64 { Fault::BatchHeader } else { Fault::DataAfterEnd { offset: byte as u64 } };
                assert_eq!(end, SegmentEnd::TornTail { at: 16384, lsn: 11, batches: 3, fault }, "flip {byte}.{bit}");
                assert_eq!(kept, good.len());
                torn += 1;
            } else if (e as u64 + K as u64) < offs.len() as u64 {
                // A valid batch >= e + K follows: batch e was acknowledged (I4).
                let SegmentEnd::Corrupt(c) = &end else { panic!("flip {byte}.{bit}: expected corrupt, got {end:?}") };
                assert_eq!(c.segment, 1);
                if byte < offs[0] {
                    assert_eq!(c.offset, 0);
                    assert_eq!(c.expected_lsn, 0, "header unreadable: expected LSN unknown to the decoder");
                    assert!(
                        matches!(
                            &c.reason,
                            CorruptReason::AcknowledgedBatch { fault: Fault::Header(_), later_batch: 2, later_offset: 12288 }
                        ),
                        "{c:?}"
                    );
                } else {
                    assert_eq!(c.offset, offs[e] as u64);
                    assert_eq!(c.expected_lsn, firsts[e]);
                    assert!(matches!(&c.reason, CorruptReason::AcknowledgedBatch { later_batch: 2, later_offset: 12288, .. }), "{c:?}");
                }
                corrupt += 1;
            } else {
                // Within the last K batches: a torn tail from the damaged batch on.
                let at = if e == 0 { 0 } else { offs[e] as u64 };
                let SegmentEnd::TornTail { at: got_at, lsn, batches, .. } = &end else {
                    panic!("flip {byte}.{bit}: expected torn tail, got {end:?}")
                };
                assert_eq!((*got_at, *lsn, *batches), (at, firsts[e], e as u64), "flip {byte}.{bit}");
                assert_eq!(kept, (firsts[e] - 1) as usize);
                torn += 1;
            }
        }
    }
    (corrupt, torn)
}

// One test per write region, so the harness runs them in parallel.
#[test]
fn every_bit_flip_in_the_header_block_is_corruption() {
    assert_eq!(flip_every_bit(0..4096), (8 * 4096, 0));
}

#[test]
fn every_bit_flip_in_batch_0_is_corruption() {
    assert_eq!(flip_every_bit(4096..8192), (8 * 4096, 0), "batch 2 >= 0 + K follows");
}

#[test]
fn every_bit_flip_in_batch_1_is_a_torn_tail() {
    assert_eq!(flip_every_bit(8192..12288), (0, 8 * 4096), "no batch >= 1 + K follows");
}

#[test]
fn every_bit_flip_in_the_last_batch_is_a_torn_tail() {
    assert_eq!(flip_every_bit(12288..16384), (0, 8 * 4096));
}

#[test]
fn every_bit_flip_in_the_zero_tail_is_a_torn_tail() {
    assert_eq!(flip_every_bit(16384..20480), (0, 8 * 4096));
}

/// A segment whose last batch spans several blocks.
fn long_last() -> (SegmentBuilder, usize, usize) {
    let mut b = segment(header(3, 100, K, 64 * 1024), vec![], 2, 2);
    let items: Vec<Item> = (0..150).map(|n| Item::Intent(intent(n))).collect();
    b.batch(&items).unwrap();
    let last = *b.batch_offsets().last().unwrap();
    let len = b.end_offset() - last;
    assert!(len >= 3 * BLOCK_BYTES);
    (b, last, len)
}

#[test]
fn truncation_at_every_sector_of_the_last_batch_is_a_torn_tail() {
    let (b, last, len) = long_last();
    let (good, _) = decode(b.bytes(), Some(3));
    let kept = good.iter().filter(|(_, _)| true).count() - 150;
    let first_lsn = good[kept].0;
    for cut in (last + SECTOR_BYTES..last + len).step_by(SECTOR_BYTES) {
        let (recs, end) = decode(&b.bytes()[..cut], Some(3));
        assert_eq!(end, SegmentEnd::TornTail { at: last as u64, lsn: first_lsn, batches: 2, fault: Fault::BatchLength }, "cut {cut}");
        assert_eq!(recs[..], good[..kept]);
        // The scanner reports the same torn tail.
        let mut s = LogScanner::new();
        s.push_segment(3, &b.bytes()[..cut], |_, _| {}).unwrap();
        let st = s.finish();
        assert_eq!(st.torn_tail.as_ref().map(|t| (t.segment, t.at, t.lsn)), Some((3, last as u64, first_lsn)));
        assert_eq!(st.next_lsn, first_lsn);
    }
    // Cut exactly at the batch start: the batch reads as never written.
    let (recs, end) = decode(&b.bytes()[..last], Some(3));
    assert_eq!(recs[..], good[..kept]);
    assert!(matches!(end, SegmentEnd::Clean { batches: 2, .. }));
}

#[test]
fn zeroing_any_sector_of_the_last_batch_is_a_torn_tail() {
    let (b, last, len) = long_last();
    let (good, _) = decode(b.bytes(), Some(3));
    let kept = good.len() - 150;
    let mut tested = 0;
    for s in (last..last + len).step_by(SECTOR_BYTES) {
        let mut img = b.bytes().to_vec();
        if img[s..s + SECTOR_BYTES].iter().all(|&x| x == 0) {
            continue; // padding only: zeroing it changes nothing
        }
        img[s..s + SECTOR_BYTES].fill(0);
        let (recs, end) = decode(&img, Some(3));
        let SegmentEnd::TornTail { at, lsn, batches, .. } = end else { panic!("sector at {s}: {end:?}") };
        assert_eq!((at, lsn, batches), (last as u64, good[kept].0, 2), "sector at {s}");
        assert_eq!(recs[..], good[..kept]);
        tested += 1;
    }
    assert!(tested >= 2 * BLOCK_BYTES / SECTOR_BYTES);
}

#[test]
fn torn_first_write_is_a_torn_tail_at_zero() {
    let b = segment(header(4, 50, K, 32 * 1024), vec![], 1, 40);
    let end0 = b.end_offset();
    for cut in (SECTOR_BYTES..end0).step_by(SECTOR_BYTES) {
        let (recs, end) = decode(&b.bytes()[..cut], Some(4));
        assert!(recs.is_empty());
        assert!(matches!(end, SegmentEnd::TornTail { at: 0, batches: 0, .. }), "cut {cut}: {end:?}");
        if cut >= BLOCK_BYTES {
            // The header survived: the expected LSN is known.
            assert!(matches!(end, SegmentEnd::TornTail { lsn: 50, .. }));
        }
    }
}

#[test]
fn damage_before_k_later_batches_is_corruption_with_its_place() {
    let b = segment(header(5, 1000, K, 64 * 1024), vec![], 6, 4);
    let offs = b.batch_offsets().to_vec();
    let firsts = batch_lsns(&b);
    let frames: Vec<u64> = SegmentDecoder::new(b.bytes(), Some(5)).map(|f| f.offset).collect();
    for e in 0..offs.len() {
        let mut img = b.bytes().to_vec();
        let hit = offs[e] + 200; // inside a record frame
        img[hit] ^= 0x10;
        let frame_at = *frames.iter().rfind(|&&f| f <= hit as u64).unwrap();
        let (recs, end) = decode(&img, Some(5));
        assert_eq!(recs.len() as u64, firsts[e] - 1000);
        if e + (K as usize) < offs.len() {
            let want = Corruption {
                segment: 5,
                offset: offs[e] as u64,
                expected_lsn: firsts[e],
                reason: CorruptReason::AcknowledgedBatch {
                    fault: Fault::FrameChecksum { offset: frame_at },
                    later_batch: (e as u64) + K as u64,
                    later_offset: offs[e + K as usize] as u64,
                },
            };
            assert_eq!(end, SegmentEnd::Corrupt(want.clone()), "batch {e}");
            // The scanner stops with the same report (retention: the log starts at LSN 1000).
            let mut s = LogScanner::new();
            assert_eq!(s.push_segment(5, &img, |_, _| {}).unwrap_err(), want);
        } else {
            let at = if e == 0 { 0 } else { offs[e] as u64 };
            assert!(matches!(end, SegmentEnd::TornTail { at: a, lsn, .. } if a == at && lsn == firsts[e]), "batch {e}: {end:?}");
        }
    }
}

#[test]
fn stale_batches_are_never_accepted() {
    let live = small();
    // The same segment number written with another epoch, and another segment number (same epoch
    // rule: the header binds both), each with one more batch than the live segment.
    let mut other_epoch = header(1, 1, K, 20 * 1024);
    other_epoch.epoch ^= 0xFFFF;
    let mut other_seg = header(2, 1, K, 20 * 1024);
    other_seg.epoch = live_epoch();
    for h in [other_epoch, other_seg] {
        let stale = segment(h, vec![], 4, 3);
        assert_eq!(stale.batch_offsets()[3], 16384);
        let (good, _) = decode(live.bytes(), Some(1));

        // Stale batch right after the live ones (same number 3, same LSNs): rejected, torn tail.
        let mut img = live.bytes().to_vec();
        img[16384..20480].copy_from_slice(&stale.bytes()[16384..20480]);
        let (recs, end) = decode(&img, Some(1));
        assert_eq!(recs, good, "no stale record accepted");
        assert_eq!(end, SegmentEnd::TornTail { at: 16384, lsn: 11, batches: 3, fault: Fault::BatchBinding });

        // A stale batch in place of batch 0 (a misdirected write) with batch 2 behind it: corruption.
        let mut img = live.bytes().to_vec();
        img[4096..8192].copy_from_slice(&stale.bytes()[4096..8192]);
        let (recs, end) = decode(&img, Some(1));
        assert!(recs.is_empty());
        let SegmentEnd::Corrupt(c) = end else { panic!("{end:?}") };
        assert!(matches!(c.reason, CorruptReason::AcknowledgedBatch { fault: Fault::BatchBinding, later_batch: 2, .. }), "{c:?}");

        // Stale batch in place of the last batch: torn tail, its records not accepted.
        let mut img = live.bytes().to_vec();
        img[12288..16384].copy_from_slice(&stale.bytes()[12288..16384]);
        let (recs, end) = decode(&img, Some(1));
        assert_eq!(recs[..], good[..7]);
        assert_eq!(end, SegmentEnd::TornTail { at: 12288, lsn: 8, batches: 2, fault: Fault::BatchBinding });
    }
}

fn live_epoch() -> u64 {
    header(1, 1, K, 20 * 1024).epoch
}

#[test]
fn zeroed_header_is_torn_with_fewer_than_k_batches_and_corrupt_otherwise() {
    for batches in 1..=4usize {
        let b = segment(header(6, 1, K, 32 * 1024), vec![], batches, 2);
        let mut img = b.bytes().to_vec();
        img[..BLOCK_BYTES].fill(0);
        let (recs, end) = decode(&img, Some(6));
        assert!(recs.is_empty());
        if batches <= K as usize {
            // Batches 0..K-1 may all have been in flight with the first write: nothing acknowledged.
            assert_eq!(end, SegmentEnd::TornTail { at: 0, lsn: 0, batches: 0, fault: Fault::DataAfterEnd { offset: 4096 } });
        } else {
            assert_eq!(
                end,
                SegmentEnd::Corrupt(Corruption {
                    segment: 6,
                    offset: 0,
                    expected_lsn: 0,
                    reason: CorruptReason::AcknowledgedBatch {
                        fault: Fault::DataAfterEnd { offset: 4096 },
                        later_batch: 2,
                        later_offset: b.batch_offsets()[2] as u64,
                    },
                }),
                "{batches} batches"
            );
        }
    }
}

#[test]
fn swapped_or_misnamed_segment_is_corruption() {
    let b = small();
    let (_, end) = decode(b.bytes(), Some(2));
    assert_eq!(
        end,
        SegmentEnd::Corrupt(Corruption {
            segment: 2,
            offset: 0,
            expected_lsn: 0,
            reason: CorruptReason::Impossible(Fault::SegmentMismatch { found: 1 }),
        })
    );
}

#[test]
fn file_longer_than_its_segment_is_corruption() {
    let mut img = small().into_bytes();
    img.extend_from_slice(&[0u8; BLOCK_BYTES]);
    let (_, end) = decode(&img, Some(1));
    assert!(
        matches!(
            end,
            SegmentEnd::Corrupt(Corruption { offset: 20480, reason: CorruptReason::Impossible(Fault::FileTooLong { len: 24576 }), .. })
        ),
        "{end:?}"
    );
}

#[test]
fn empty_spare_and_header_without_batch() {
    assert_eq!(decode(&vec![0u8; 16 * 1024], Some(9)).1, SegmentEnd::Empty);
    // A header with no batch 0 cannot exist (they are one write): torn at 0.
    let b = small();
    let mut img = b.bytes().to_vec();
    img[4096..].fill(0);
    assert_eq!(decode(&img, Some(1)).1, SegmentEnd::TornTail { at: 0, lsn: 1, batches: 0, fault: Fault::BatchHeader });
}

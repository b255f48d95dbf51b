//! Recycled segment files (docs/design.md, "Reading a segment"): a retired segment's file is put
//! in service again under a new segment number with block 0 zeroed and its old batches left in
//! place. Stale batches never validate for the new segment and epoch (I2), so the end of the new
//! life's data is its first batch that does not validate: Clean when only stale bytes (or zeros)
//! follow, TornTail when a write of the new life left a batch header there, Corrupt only by the
//! K-window rule. Every image here is classified exactly.

mod common;

use common::*;
use tradewal_codec::build::SegmentBuilder;
use tradewal_codec::decode::{CorruptReason, Fault};
use tradewal_codec::format::{life_epoch, SECTOR_BYTES};
use tradewal_codec::*;

const K: u32 = 2;
const SEG: u64 = 96 * 1024;

/// Intents per batch of each life: sizes differ so that the new life's batch boundaries fall on
/// the old life's batch headers, inside its multi-block batches and beyond its end.
const OLD_SIZES: [usize; 12] = [3, 70, 5, 120, 2, 2, 90, 4, 40, 150, 3, 60];
const NEW_SIZES: [usize; 17] = [1, 2, 45, 1, 80, 3, 3, 30, 1, 60, 2, 5, 100, 1, 70, 2, 3];

fn life(seg: u64, epoch: u64, base: Lsn, sizes: &[usize]) -> SegmentBuilder {
    let mut h = header(seg, base, K, SEG);
    h.epoch = epoch;
    let mut b = segment(h, vec![], 0, 0);
    let mut n = base as i64 * 1000;
    for (j, &per) in sizes.iter().enumerate() {
        let mut items = Vec::new();
        if j == 0 {
            items.push(build::Item::Checkpoint(vec![], None));
        }
        for _ in 0..per {
            n += 1;
            items.push(build::Item::Intent(intent(n)));
        }
        b.batch(&items).expect("fits");
    }
    b
}

/// The old life: segment 3, written to its end of data (a previous recycled life, so its epoch
/// is odd too: the rule must not depend on how the old life began).
fn old_life() -> SegmentBuilder {
    let b = life(3, life_epoch(0xA0A0_0000, true), 1, &OLD_SIZES);
    assert!(b.end_offset() > 60 * 1024 && b.end_offset() < SEG as usize, "the old life reaches far into the file");
    b
}

/// The new life (segment 7, recycled epoch) with its first `j` batches.
fn new_life(j: usize) -> SegmentBuilder {
    life(7, life_epoch(0xB0B0_0000, true), 500, &NEW_SIZES[..j])
}

/// The recycled file: the old image with block 0 zeroed, then the new life's writes laid over it.
fn recycled(new: &SegmentBuilder) -> Vec<u8> {
    let mut img = old_life().into_bytes();
    img[..BLOCK_BYTES].fill(0);
    let end = new.end_offset();
    if end > BLOCK_BYTES {
        img[..end].copy_from_slice(&new.bytes()[..end]);
    }
    img
}

fn records_of(b: &SegmentBuilder) -> Vec<(Lsn, Record)> {
    let mut img = b.bytes().to_vec();
    img[b.end_offset()..].fill(0);
    decode(&img, Some(7)).0
}

#[test]
fn the_old_life_reads_as_what_it_is_and_its_offsets_cover_every_case() {
    let old = old_life();
    let (recs, end) = decode(old.bytes(), Some(3));
    assert_eq!(recs.len(), 1 + OLD_SIZES.iter().sum::<usize>());
    assert!(matches!(end, SegmentEnd::Clean { batches: 12, .. }), "{end:?}");
    // The new life's batch boundaries land on old batch headers, inside old batches and past the
    // old end: each case is exercised below.
    let new = new_life(NEW_SIZES.len());
    let olds: Vec<usize> = old.batch_offsets().to_vec();
    let on_header = new.batch_offsets().iter().chain([&new.end_offset()]).filter(|o| olds.contains(o)).count();
    let inside = new.batch_offsets().iter().filter(|&&o| !olds.contains(&o) && o < old.end_offset()).count();
    let beyond = new.batch_offsets().iter().chain([&new.end_offset()]).filter(|&&o| o >= old.end_offset()).count();
    assert!(on_header >= 2 && inside >= 2 && beyond >= 1, "{on_header} {inside} {beyond}");
}

#[test]
fn a_recycled_spare_never_put_in_service_is_empty() {
    let img = recycled(&new_life(0));
    assert_eq!(decode(&img, Some(7)), (vec![], SegmentEnd::Empty));
    // Without the zeroed block 0 it would be the old segment under a wrong name: always corruption.
    let old = old_life();
    let (_, end) = decode(old.bytes(), Some(7));
    assert!(matches!(end, SegmentEnd::Corrupt(Corruption { reason: CorruptReason::Impossible(Fault::SegmentMismatch { found: 3 }), .. })));
}

#[test]
fn the_end_of_a_recycled_life_is_clean_at_every_batch_boundary() {
    for j in 1..=NEW_SIZES.len() {
        let new = new_life(j);
        let img = recycled(&new);
        let (recs, end) = decode(&img, Some(7));
        assert_eq!(recs, records_of(&new), "{j} batches: exactly this life's records");
        assert_eq!(
            end,
            SegmentEnd::Clean { next_lsn: new.next_lsn(), end_offset: new.end_offset() as u64, batches: j as u64 },
            "{j} batches"
        );
        // The follower's resume from any batch boundary ends the same way.
        for (i, &off) in new.batch_offsets().iter().enumerate().skip(1) {
            let h = *SegmentDecoder::new(&img, Some(7)).header().expect("header");
            let resumed = SegmentDecoder::resume(&img, h, format::FORMAT_VERSION, off as u64, i as u64, new_life(i).next_lsn()).finish();
            assert_eq!(resumed, end, "{j} batches, resumed at batch {i}");
        }
    }
}

/// Which sectors of a torn write landed (by index from the write's start).
type Shape = Box<dyn Fn(usize) -> bool>;

/// Lays the sectors of `[from, to)` of `new` over `img` where `keep(sector index)` says so.
fn tear(img: &mut [u8], new: &SegmentBuilder, from: usize, to: usize, keep: impl Fn(usize) -> bool) {
    for (i, s) in (from..to).step_by(SECTOR_BYTES).enumerate() {
        if keep(i) {
            img[s..s + SECTOR_BYTES].copy_from_slice(&new.bytes()[s..s + SECTOR_BYTES]);
        }
    }
}

#[test]
fn a_torn_last_write_of_the_new_life_is_torn_when_its_header_landed_and_the_end_otherwise() {
    for j in 1..=NEW_SIZES.len() {
        let new = new_life(j);
        let prev = new_life(j - 1);
        let offs = new.batch_offsets();
        let last = offs[j - 1];
        // The last write: batch j-1 (with block 0 when it is batch 0).
        let from = if j == 1 { 0 } else { last };
        let to = new.end_offset();
        let sectors = (to - from) / SECTOR_BYTES;
        let header_sector = (last - from) / SECTOR_BYTES;
        let base = recycled(&prev);
        // Some sector missing in every case (else the write completed).
        let shapes: Vec<(&str, Shape)> = vec![
            ("header sector only", Box::new(move |i| i == header_sector)),
            ("all but the header sector", Box::new(move |i| i != header_sector)),
            ("all but the last sector", Box::new(move |i| i + 1 < sectors)),
            ("every other sector", Box::new(move |i| i % 2 == 0)),
            ("every other sector, odd", Box::new(move |i| i % 2 == 1)),
        ];
        for (what, keep) in shapes {
            if (0..sectors).all(&keep) {
                continue;
            }
            let mut img = base.clone();
            tear(&mut img, &new, from, to, &keep);
            if img == recycled(&new) {
                continue; // the missing sectors held what the old life had there too
            }
            let (recs, end) = decode(&img, Some(7));
            let header_landed = keep(header_sector);
            // Block 0 is the header in its first sector and zeros: only that sector changes it.
            let block0_any = j > 1 || img[..BLOCK_BYTES].iter().any(|&b| b != 0);
            let ctx = format!("{j} batches, last write torn: {what}");
            if j == 1 {
                assert!(recs.is_empty(), "{ctx}");
                if !block0_any && !header_landed {
                    // Neither the header block nor batch 0's header: a spare never put in service.
                    assert_eq!(end, SegmentEnd::Empty, "{ctx}");
                } else {
                    assert!(matches!(end, SegmentEnd::TornTail { at: 0, batches: 0, .. }), "{ctx}: {end:?}");
                }
                continue;
            }
            assert_eq!(recs, records_of(&prev), "{ctx}: the records before the torn write");
            if header_landed {
                assert!(
                    matches!(&end, SegmentEnd::TornTail { at, lsn, batches, .. }
                        if *at == last as u64 && *lsn == prev.next_lsn() && *batches == (j - 1) as u64),
                    "{ctx}: {end:?}"
                );
            } else {
                // Nothing of this life at the torn place: stale bytes (and unacknowledged ones).
                assert_eq!(end, SegmentEnd::Clean { next_lsn: prev.next_lsn(), end_offset: last as u64, batches: (j - 1) as u64 }, "{ctx}");
            }
        }
    }
}

#[test]
fn two_writes_in_flight_torn_before_a_landed_one_are_a_torn_tail() {
    // K = 2: batches j-2 and j-1 in flight; j-2 lost entirely (stale bytes), j-1 landed.
    for j in 3..=NEW_SIZES.len() {
        let new = new_life(j);
        let offs = new.batch_offsets().to_vec();
        let mut img = recycled(&new);
        let old = old_life();
        img[offs[j - 2]..offs[j - 1]].copy_from_slice(&old.bytes()[offs[j - 2]..offs[j - 1]]);
        let (recs, end) = decode(&img, Some(7));
        assert_eq!(recs, records_of(&new_life(j - 2)), "{j}");
        assert!(
            matches!(end, SegmentEnd::TornTail { at, batches, .. } if at == offs[j - 2] as u64 && batches == (j - 2) as u64),
            "{j}: {end:?}"
        );
    }
}

#[test]
fn damage_before_k_later_batches_of_the_new_life_is_corruption() {
    let new = new_life(NEW_SIZES.len());
    let offs = new.batch_offsets().to_vec();
    let old = old_life();
    for e in 1..offs.len() - K as usize {
        let mut img = recycled(&new);
        // Batch e replaced by whatever the old life had there (a misdirected or lost write).
        img[offs[e]..offs[e + 1]].copy_from_slice(&old.bytes()[offs[e]..offs[e + 1]]);
        let (_, end) = decode(&img, Some(7));
        let SegmentEnd::Corrupt(c) = &end else { panic!("batch {e}: {end:?}") };
        assert_eq!(c.offset, offs[e] as u64);
        assert!(
            matches!(c.reason, CorruptReason::AcknowledgedBatch { later_batch, .. } if later_batch == (e + K as usize) as u64),
            "{c:?}"
        );
    }
}

#[test]
fn a_file_zero_filled_for_its_life_keeps_the_strict_rule() {
    // The same bytes under an even epoch (not recycled): stale bytes after the end are a torn tail.
    let new = life(7, life_epoch(0xB0B0_0000, false), 500, &NEW_SIZES[..4]);
    let mut img = old_life().into_bytes();
    img[..new.end_offset()].copy_from_slice(&new.bytes()[..new.end_offset()]);
    let (_, end) = decode(&img, Some(7));
    assert!(matches!(end, SegmentEnd::TornTail { at, .. } if at == new.end_offset() as u64), "{end:?}");
}

#[test]
fn stale_batches_never_validate_and_a_scan_across_recycled_segments_keeps_every_record() {
    // Segment 7 recycled and full to its end of data, segment 8 recycled in service after it:
    // the scanner must see a clean segment 7 (not a torn one before later data).
    let s7 = new_life(NEW_SIZES.len());
    let img7 = recycled(&s7);
    let mut h8 = header(8, s7.next_lsn(), K, SEG);
    h8.epoch = life_epoch(0xC0C0_0000, true);
    let mut b8 = SegmentBuilder::new(h8);
    b8.batch(&[build::Item::Checkpoint(
        records_of(&s7)
            .into_iter()
            .filter_map(|(l, r)| if let Record::Intent(i) = r { Some(InDoubt { lsn: l, intent: i, fill: None }) } else { None })
            .collect(),
        None,
    )])
    .unwrap();
    let mut img8 = old_life().into_bytes();
    img8[..BLOCK_BYTES].fill(0);
    img8[..b8.end_offset()].copy_from_slice(&b8.bytes()[..b8.end_offset()]);
    let mut s = LogScanner::new();
    let mut lsns = Vec::new();
    s.push_segment(7, &img7, |f, _| lsns.push(f.lsn)).expect("segment 7 clean");
    s.push_segment(8, &img8, |f, _| lsns.push(f.lsn)).expect("segment 8 clean");
    let st = s.finish();
    assert!(st.torn_tail.is_none());
    assert_eq!(lsns.first(), Some(&500));
    assert_eq!(st.next_lsn, b8.next_lsn());
    assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1));
}

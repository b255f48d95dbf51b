//! LogScanner: the multi-segment decision table (I3, I4), checkpoints, and the in-doubt set
//! against a simple model.

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::decode::{CorruptReason, Fault};
use tradewal_codec::*;

const SEG: u64 = 32 * 1024;

/// A small valid log: segments 1..=n, each with a checkpoint of the in-doubt set, two batches of
/// intents, and an outcome for the first intent of the segment. Returns the images and the model.
fn log(n: u64) -> (Vec<Vec<u8>>, BTreeMap<Lsn, TradeIntent>) {
    let mut model = BTreeMap::new();
    let mut next = 1;
    let mut images = Vec::new();
    for seg in 1..=n {
        let ckpt: Vec<InDoubt> = model.iter().map(|(&lsn, &intent)| InDoubt { lsn, intent, fill: None }).collect();
        let mut b = SegmentBuilder::new(header(seg, next, 2, SEG));
        let l = b.batch(&[Item::Checkpoint(ckpt, None), Item::Intent(intent(seg as i64)), Item::Intent(intent(seg as i64 + 100))]).unwrap();
        model.insert(l[1], intent(seg as i64));
        model.insert(l[2], intent(seg as i64 + 100));
        b.batch(&[Item::Outcome(l[1], OutcomeKind::Executed)]).unwrap();
        model.remove(&l[1]);
        next = b.next_lsn();
        images.push(b.into_bytes());
    }
    (images, model)
}

fn scan(images: &[Vec<u8>], first: u64) -> Result<LogState, Corruption> {
    let mut s = LogScanner::new();
    for (i, img) in images.iter().enumerate() {
        s.push_segment(first + i as u64, img, |_, _| {})?;
    }
    Ok(s.finish())
}

fn in_doubt(model: &BTreeMap<Lsn, TradeIntent>) -> Vec<InDoubt> {
    model.iter().map(|(&lsn, &intent)| InDoubt { lsn, intent, fill: None }).collect()
}

#[test]
fn clean_log_with_trailing_spares() {
    let (mut images, model) = log(3);
    images.push(vec![0u8; SEG as usize]);
    images.push(vec![0u8; SEG as usize]);
    let st = scan(&images, 1).unwrap();
    assert_eq!(st.in_doubt, in_doubt(&model));
    assert_eq!(st.torn_tail, None);
    assert_eq!(st.next_segment_no, 6);
    assert_eq!(st.first_lsn, Some(1));
    assert_eq!(st.next_lsn, 1 + 3 * 4);
    assert_eq!(st.counts, RecordCounts { intents: 6, executed: 3, aborted: 0, checkpoints: 3, ..Default::default() });
    assert_eq!(st.log_id, Some(0xA11CE));
}

#[test]
fn missing_middle_segment_is_corruption() {
    let (images, _) = log(3);
    let mut s = LogScanner::new();
    s.push_segment(1, &images[0], |_, _| {}).unwrap();
    let err = s.push_segment(3, &images[2], |_, _| {}).unwrap_err();
    assert_eq!(err.segment, 2);
    assert_eq!(err.reason, CorruptReason::MissingSegment { expected: 2 });
    assert_eq!(err.expected_lsn, 5);
}

#[test]
fn lsn_gap_between_segments_is_corruption() {
    let (images, _) = log(1);
    // Segment 2 starting at LSN 7 where 5 is expected.
    let b = segment(header(2, 7, 2, SEG), vec![], 1, 1);
    let err = scan(&[images[0].clone(), b.into_bytes()], 1).unwrap_err();
    assert_eq!((err.segment, err.offset, err.expected_lsn), (2, 0, 5));
    assert_eq!(err.reason, CorruptReason::LsnGap { found: 7 });
}

#[test]
fn torn_tail_before_a_later_data_segment_is_corruption() {
    let (mut images, _) = log(3);
    // Tear segment 2's last batch (damage its first frame).
    let last = 8192;
    images[1][last + 64] ^= 1;
    let err = scan(&images, 1).unwrap_err();
    assert_eq!((err.segment, err.offset, err.expected_lsn), (2, last as u64, 8));
    assert!(matches!(err.reason, CorruptReason::TornBeforeLaterData { later_segment: 3, fault: Fault::FrameChecksum { .. } }), "{err:?}");
    // With trailing spares in between, still corruption.
    let (mut images, _) = log(3);
    images[1][last + 64] ^= 1;
    images.insert(2, vec![0u8; SEG as usize]);
    let err = scan(&images, 1).unwrap_err();
    assert!(matches!(err.reason, CorruptReason::TornBeforeLaterData { later_segment: 4, .. }), "{err:?}");
}

#[test]
fn lost_whole_last_batch_before_a_later_segment_is_an_lsn_gap() {
    let (mut images, _) = log(3);
    // Segment 2's last batch (one small record) lies in one sector; zeroed, it reads as never
    // written, so segment 2 looks clean, but segment 3 starts past the LSN it ends at (I3).
    images[1][8192..8192 + 512].fill(0);
    let err = scan(&images, 1).unwrap_err();
    assert_eq!((err.segment, err.offset, err.expected_lsn), (3, 0, 8));
    assert_eq!(err.reason, CorruptReason::LsnGap { found: 9 });
}

#[test]
fn torn_tail_followed_by_spares_is_the_log_end() {
    let (mut images, model) = log(2);
    images[1][8192 + 64] ^= 1; // first frame checksum
    images.push(vec![0u8; SEG as usize]);
    let st = scan(&images, 1).unwrap();
    let t = st.torn_tail.clone().expect("torn tail reported");
    assert_eq!((t.segment, t.at, t.lsn), (2, 8192, 8));
    assert!(matches!(t.fault, Fault::FrameChecksum { .. }));
    assert_eq!(st.next_lsn, 8);
    // The outcome at LSN 8 was lost: its intent is in doubt again.
    let mut m = model.clone();
    m.insert(6, intent(2));
    assert_eq!(st.in_doubt, in_doubt(&m));
}

#[test]
fn first_write_torn_in_the_last_segment_drops_it_whole() {
    let (mut images, _) = log(2);
    images[1][4096 + 200..].fill(0); // batch 0 of segment 2 torn; header intact
    let st = scan(&images, 1).unwrap();
    let t = st.torn_tail.unwrap();
    assert_eq!((t.segment, t.at, t.lsn), (2, 0, 5));
    assert_eq!(st.next_lsn, 5);
    assert_eq!(st.segments[1].first_lsn, None);
}

#[test]
fn foreign_log_is_corruption() {
    let (images, _) = log(1);
    let mut h = header(2, 5, 2, SEG);
    h.log_id ^= 1;
    let b = segment(h, vec![InDoubt { lsn: 3, intent: intent(101), fill: None }], 1, 1);
    let err = scan(&[images[0].clone(), b.into_bytes()], 1).unwrap_err();
    assert_eq!(err.reason, CorruptReason::ForeignLog);
    assert_eq!(err.segment, 2);
}

#[test]
fn checkpoint_disagreeing_with_the_log_is_corruption() {
    let (images, model) = log(1);
    assert_eq!(model.keys().copied().collect::<Vec<_>>(), vec![3]);
    for ckpt in [
        vec![],                                                                                                       // misses LSN 3
        vec![InDoubt { lsn: 2, intent: intent(1), fill: None }],                                                      // resolved one
        vec![InDoubt { lsn: 3, intent: intent(7), fill: None }],                                                      // other content
        vec![InDoubt { lsn: 3, intent: intent(101), fill: None }, InDoubt { lsn: 4, intent: intent(1), fill: None }], // extra
    ] {
        let b = segment(header(2, 5, 2, SEG), ckpt.clone(), 1, 1);
        let err = scan(&[images[0].clone(), b.into_bytes()], 1).unwrap_err();
        assert!(matches!(err.reason, CorruptReason::Semantics(_)), "{ckpt:?}: {err:?}");
        assert_eq!((err.segment, err.offset), (2, 4096 + 64));
    }
    // The right checkpoint passes.
    let b = segment(header(2, 5, 2, SEG), in_doubt(&model), 1, 1);
    assert!(scan(&[images[0].clone(), b.into_bytes()], 1).is_ok());
}

#[test]
fn segment_without_leading_checkpoint_is_corruption() {
    let mut b = SegmentBuilder::new(header(1, 1, 2, SEG));
    b.batch(&[Item::Intent(intent(1))]).unwrap();
    let err = scan(&[b.into_bytes()], 1).unwrap_err();
    assert!(matches!(err.reason, CorruptReason::Semantics(_)));
}

#[test]
fn outcome_for_unknown_intent_is_corruption() {
    for target in [1, 2, 9, 3] {
        let mut b = SegmentBuilder::new(header(1, 1, 2, SEG));
        // LSN 1 checkpoint, 2 intent, 3 outcome of 2; then an outcome naming `target`.
        b.batch(&[Item::Checkpoint(vec![], None), Item::Intent(intent(1)), Item::Outcome(2, OutcomeKind::Aborted)]).unwrap();
        let l = b.batch(&[Item::Outcome(target, OutcomeKind::Executed)]).unwrap();
        let err = scan(&[b.into_bytes()], 1).unwrap_err();
        assert!(matches!(err.reason, CorruptReason::Semantics(_)), "outcome of {target}: {err:?}");
        assert_eq!(err.expected_lsn, l[0]);
    }
}

#[test]
fn retention_first_kept_segment_seeds_the_in_doubt_set() {
    // A log whose segments 1..=3 hold 600 open intents; segment 4's checkpoint spans 3 parts.
    let mut model = BTreeMap::new();
    let mut next = 1;
    let mut images = Vec::new();
    for seg in 1..=4u64 {
        let mut b = SegmentBuilder::new(header(seg, next, 2, 256 * 1024));
        b.batch(&[Item::Checkpoint(in_doubt(&model), None)]).unwrap();
        for chunk in 0..4 {
            let items: Vec<Item> = (0..50).map(|n| Item::Intent(intent((seg * 1000 + chunk * 50 + n) as i64))).collect();
            for (l, it) in b.batch(&items).unwrap().into_iter().zip(&items) {
                let Item::Intent(i) = it else { unreachable!() };
                model.insert(l, *i);
            }
        }
        next = b.next_lsn();
        images.push(b.into_bytes());
    }
    let full = scan(&images, 1).unwrap();
    assert_eq!(full.in_doubt, in_doubt(&model));
    assert_eq!(full.segments[3].counts.checkpoints, 5, "600 entries span 5 parts of 128");
    // Retention removed segments 1..=3: segment 4 starts at base LSN > 1 and its checkpoint seeds the set.
    let kept = scan(&images[3..], 4).unwrap();
    assert_eq!(kept.in_doubt, full.in_doubt);
    assert!(kept.first_lsn.unwrap() > 1);
    assert_eq!(kept.first_lsn, Some(images_base(&images[3])));
    assert_eq!(kept.next_lsn, full.next_lsn);
    // A seeding checkpoint may not name a future LSN.
    let mut b = SegmentBuilder::new(header(9, 100, 2, SEG));
    b.batch(&[Item::Checkpoint(vec![InDoubt { lsn: 100, intent: intent(1), fill: None }], None)]).unwrap();
    assert!(matches!(scan(&[b.into_bytes()], 9).unwrap_err().reason, CorruptReason::Semantics(_)));
}

fn images_base(img: &[u8]) -> Lsn {
    SegmentHeader::decode(&img[..BLOCK_BYTES]).unwrap().base_lsn
}

#[test]
fn swapped_segments_are_corruption() {
    let (images, _) = log(3);
    let err = scan(&[images[0].clone(), images[2].clone(), images[1].clone()], 1).unwrap_err();
    assert_eq!(err.reason, CorruptReason::Impossible(Fault::SegmentMismatch { found: 3 }));
    assert_eq!(err.segment, 2);
}

#[test]
fn out_of_order_feed_is_corruption() {
    let (images, _) = log(2);
    let mut s = LogScanner::new();
    s.push_segment(2, &images[1], |_, _| {}).unwrap();
    assert_eq!(s.push_segment(2, &images[1], |_, _| {}).unwrap_err().reason, CorruptReason::DuplicateSegment);
}

// ---- the in-doubt set against a model ----

#[derive(Debug, Clone)]
enum Op {
    Intent(TradeIntent),
    /// Outcome of the in-doubt intent at this index (mod the set's size); an intent if the set is empty.
    Outcome(usize, OutcomeKind),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => trade_intent().prop_map(Op::Intent),
        1 => (any::<usize>(), outcome_kind()).prop_map(|(i, k)| Op::Outcome(i, k)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn in_doubt_set_matches_a_model(
        segments in prop::collection::vec(prop::collection::vec(prop::collection::vec(op(), 1..80), 1..5), 1..5),
        retained_from in 0usize..4,
    ) {
        let mut model: BTreeMap<Lsn, TradeIntent> = BTreeMap::new();
        let mut next: Lsn = 1;
        let mut images = Vec::new();
        let mut counts = RecordCounts::default();
        for (s, batches) in segments.iter().enumerate() {
            let bytes = 4096 + 8192 * (1 + model.len() / 20) + batches.iter().map(|b| 4096 + 150 * b.len()).sum::<usize>();
            let mut b = SegmentBuilder::new(header(s as u64 + 1, next, 3, format::align_up(bytes) as u64));
            for (j, batch) in batches.iter().enumerate() {
                let mut items = Vec::new();
                let mut lsn = b.next_lsn();
                if j == 0 {
                    items.push(Item::Checkpoint(in_doubt(&model), None));
                    lsn += model.len().div_ceil(format::CHECKPOINT_ENTRIES_PER_RECORD).max(1) as u64;
                    counts.checkpoints += model.len().div_ceil(format::CHECKPOINT_ENTRIES_PER_RECORD).max(1) as u64;
                }
                for o in batch {
                    match (o, model.is_empty()) {
                        (Op::Outcome(i, k), false) => {
                            let target = *model.keys().nth(i % model.len()).unwrap();
                            model.remove(&target);
                            items.push(Item::Outcome(target, *k));
                            match k { OutcomeKind::Executed => counts.executed += 1, OutcomeKind::Aborted => counts.aborted += 1 }
                        }
                        (Op::Intent(i), _) => {
                            model.insert(lsn, *i);
                            items.push(Item::Intent(*i));
                            counts.intents += 1;
                        }
                        (Op::Outcome(..), true) => {
                            let i = intent(lsn as i64);
                            model.insert(lsn, i);
                            items.push(Item::Intent(i));
                            counts.intents += 1;
                        }
                    }
                    lsn += 1;
                }
                b.batch(&items).unwrap();
                prop_assert_eq!(b.next_lsn(), lsn);
            }
            next = b.next_lsn();
            images.push(b.into_bytes());
        }
        let st = scan(&images, 1).unwrap();
        prop_assert_eq!(&st.in_doubt, &in_doubt(&model));
        prop_assert_eq!(st.next_lsn, next);
        prop_assert_eq!(st.counts, counts);
        prop_assert_eq!(st.torn_tail, None);
        // Retention: scanning only the later segments gives the same set, seeded by a checkpoint.
        let r = retained_from.min(images.len() - 1);
        let kept = scan(&images[r..], r as u64 + 1).unwrap();
        prop_assert_eq!(&kept.in_doubt, &st.in_doubt);
        prop_assert_eq!(kept.next_lsn, next);
    }
}

// ---- format 2: outcome, group and time-range rules on disk ----

/// One segment (number 1, base LSN 1): an empty checkpoint, then `batches`.
fn one_segment(batches: &[Vec<Item>]) -> Result<LogState, Corruption> {
    let mut b = SegmentBuilder::new(header(1, 1, 2, SEG));
    b.batch(&[Item::Checkpoint(vec![], None)]).unwrap();
    for items in batches {
        b.batch(items).unwrap();
    }
    scan(&[b.into_bytes()], 1)
}

fn semantics(r: Result<LogState, Corruption>, what: &str) -> String {
    match r {
        Err(Corruption { reason: CorruptReason::Semantics(s), .. }) => s,
        r => panic!("{what}: expected Semantics, got {r:?}"),
    }
}

/// Every outcome sequence the writer refuses is corruption when found on disk; the legal ones
/// leave the in-doubt set with the latest partial fill.
#[test]
fn outcome_rules_on_disk() {
    let qty = intent(1).qty; // 0.25; the intent is LSN 2
    let st = |s| Item::status(2, s);
    let part = |q| st(Status::PartiallyFilled { qty: q, avg_price: 1.0 });
    let ok = one_segment(&[vec![Item::Intent(intent(1)), part(0.1), part(0.1), part(0.2)]]).unwrap();
    assert_eq!(ok.in_doubt.len(), 1);
    assert_eq!(ok.in_doubt[0].fill.map(|f| f.qty), Some(0.2), "the latest partial fill");
    assert_eq!(ok.counts.partially_filled, 3);
    for (what, items) in [
        ("decreasing", vec![part(0.2), part(0.1)]),
        ("over the intent's qty", vec![part(qty * 2.0)]),
        ("filled over the qty", vec![st(Status::Filled { qty: qty * 2.0, avg_price: 0.0 })]),
        ("abort after a fill", vec![part(0.1), st(Status::Aborted)]),
        ("reject after a fill", vec![part(0.1), st(Status::Rejected { reason: 3 })]),
        ("cancel below the fill", vec![part(0.2), st(Status::Cancelled { filled_qty: 0.1 })]),
        ("after Filled", vec![st(Status::Filled { qty, avg_price: 0.0 }), part(0.1)]),
        ("after Rejected", vec![st(Status::Rejected { reason: 1 }), st(Status::Aborted)]),
        ("after Cancelled", vec![st(Status::Cancelled { filled_qty: 0.0 }), st(Status::Rejected { reason: 1 })]),
        ("after Aborted", vec![st(Status::Aborted), st(Status::Filled { qty, avg_price: 0.0 })]),
    ] {
        let mut b = vec![Item::Intent(intent(1))];
        b.extend(items);
        semantics(one_segment(&[b]), what);
    }
    // An outcome of an LSN that is no intent (the checkpoint at LSN 1).
    assert!(semantics(one_segment(&[vec![Item::Intent(intent(1)), Item::status(1, Status::Aborted)]]), "of a checkpoint")
        .contains("not in doubt"));
}

/// Groups on disk: whole, consecutive, in one batch.
#[test]
fn group_rules_on_disk() {
    let g = |n| (0..n).map(|k| intent(k as i64)).collect::<Vec<_>>();
    let st = one_segment(&[vec![Item::Group(g(3)), Item::Intent(intent(9))], vec![Item::Group(g(1))]]).unwrap();
    assert_eq!(st.in_doubt.iter().filter(|d| d.intent.group.is_some()).count(), 4);
    // A leg whose group is cut short by another record, or by the segment's end.
    let leg = |index, size, n| Item::Intent(TradeIntent { group: Some(GroupLeg { index, size }), ..intent(n) });
    assert!(semantics(one_segment(&[vec![leg(0, 2, 1), Item::Intent(intent(2))]]), "cut by an intent").contains("cut short"));
    assert!(semantics(one_segment(&[vec![leg(0, 2, 1)]]), "cut by the end").contains("cut short"));
    assert!(semantics(one_segment(&[vec![leg(1, 2, 1)]]), "leg 1 alone").contains("without its earlier legs"));
    assert!(semantics(one_segment(&[vec![leg(0, 3, 1), leg(1, 2, 2)]]), "sizes differ").contains("cut short"));
    // Across two batches.
    assert!(semantics(one_segment(&[vec![leg(0, 2, 1)], vec![leg(1, 2, 2)]]), "two batches").contains("one batch"));
}

/// The previous segment's time range recorded in a checkpoint must match what the scan found;
/// none in segment 1; and a format 1 segment may not follow a format 2 one.
#[test]
fn time_ranges_and_versions_on_disk() {
    let at = |t: i64| TradeIntent { ts_ns: t, ..intent(1) };
    let seg = |no: u64, base: Lsn, range: Option<TsRange>, ckpt: Vec<InDoubt>, ts: &[i64]| {
        let mut b = SegmentBuilder::new(header(no, base, 2, SEG));
        b.batch(&[Item::Checkpoint(ckpt, range)]).unwrap();
        let items: Vec<Item> = ts.iter().map(|&t| Item::Intent(at(t))).collect();
        b.batch(&items).unwrap();
        let next = b.next_lsn();
        (b.into_bytes(), next)
    };
    let (s1, n1) = seg(1, 1, None, vec![], &[30, 10, 20]);
    let carried: Vec<InDoubt> =
        [30, 10, 20].iter().enumerate().map(|(k, &t)| InDoubt { lsn: 2 + k as u64, intent: at(t), fill: None }).collect();
    let right = TsRange { intents: 3, min_ts: 10, max_ts: 30 };
    let (s2, _) = seg(2, n1, Some(right), carried.clone(), &[5]);
    let st = scan(&[s1.clone(), s2], 1).unwrap();
    assert_eq!((st.segments[0].ts_range, st.segments[1].prev_range), (right, Some(right)));
    for wrong in [TsRange { intents: 2, ..right }, TsRange { min_ts: 11, ..right }, TsRange { max_ts: 31, ..right }] {
        let (s2, _) = seg(2, n1, Some(wrong), carried.clone(), &[5]);
        assert!(semantics(scan(&[s1.clone(), s2], 1), "wrong range").contains("records"));
    }
    // Segment 1 cannot record a predecessor.
    let (bad1, _) = seg(1, 1, Some(right), vec![], &[5]);
    assert!(semantics(scan(&[bad1], 1), "range in segment 1").contains("segment 1"));
    // Seeded (segment 1 removed): the recorded range is taken as written.
    let (s2, _) = seg(2, n1, Some(TsRange { intents: 99, min_ts: 0, max_ts: 1 }), carried, &[5]);
    scan(std::slice::from_ref(&s2), 2).unwrap();
    // A format 1 header after a format 2 segment: refused before its bodies are read.
    let mut v1 = s2;
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&v1[..88]);
    v1[88..96].copy_from_slice(&sum.to_le_bytes());
    match scan(&[s1, v1], 1) {
        Err(Corruption { reason: CorruptReason::Log(m), segment: 2, .. }) => {
            assert!(m.contains("format 1 segment after a format 2"), "{m}")
        }
        r => panic!("a format 1 segment after a format 2 one: {r:?}"),
    }
}

//! Round trips: whatever valid records go in come back exactly, with contiguous LSNs; invalid intents
//! are rejected before anything is written.

mod common;

use common::*;
use proptest::prelude::*;
use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::format::CHECKPOINT_ENTRIES_PER_RECORD;
use tradewal_codec::*;

#[derive(Debug, Clone)]
enum Spec {
    Intent(TradeIntent),
    Group(Vec<TradeIntent>),
    Outcome(Outcome),
    Checkpoint(Vec<InDoubt>, Option<TsRange>),
}

fn in_doubt_entries(max: usize) -> impl Strategy<Value = Vec<InDoubt>> {
    prop::collection::vec((1u64..1_000, trade_intent(), fill(), prop::option::of((1u16..=32, any::<u16>()))), 0..max).prop_map(|v| {
        let mut lsn = 0;
        v.into_iter()
            .map(|(gap, mut intent, fill, group)| {
                lsn += gap;
                intent.group = group.map(|(size, i)| GroupLeg { index: i % size, size });
                // A fill never exceeds its intent's quantity (a decoding rule).
                let fill = fill.map(|f| Fill { qty: f.qty.min(intent.qty), ..f });
                InDoubt { lsn, intent, fill }
            })
            .collect()
    })
}

fn ts_range() -> impl Strategy<Value = Option<TsRange>> {
    prop::option::of(prop_oneof![
        Just(TsRange::default()),
        (1u64..1 << 40, any::<i64>(), any::<i64>()).prop_map(|(intents, a, b)| TsRange { intents, min_ts: a.min(b), max_ts: a.max(b) }),
    ])
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        8 => trade_intent().prop_map(Spec::Intent),
        2 => prop::collection::vec(trade_intent(), 1..=32).prop_map(Spec::Group),
        3 => (1u64..u64::MAX).prop_flat_map(outcome).prop_map(Spec::Outcome),
        1 => (prop_oneof![3 => in_doubt_entries(8), 1 => in_doubt_entries(300)], ts_range()).prop_map(|(e, r)| Spec::Checkpoint(e, r)),
    ]
}

/// Records a spec expands to (a checkpoint becomes ceil(n/128) parts, at least one; a group its
/// legs).
fn expand(s: &Spec) -> Vec<Record> {
    match s {
        Spec::Intent(i) => vec![Record::Intent(*i)],
        Spec::Group(g) => g
            .iter()
            .enumerate()
            .map(|(k, i)| Record::Intent(TradeIntent { group: Some(GroupLeg { index: k as u16, size: g.len() as u16 }), ..*i }))
            .collect(),
        Spec::Outcome(o) => vec![Record::Outcome(*o)],
        Spec::Checkpoint(e, range) => {
            let parts = e.len().div_ceil(CHECKPOINT_ENTRIES_PER_RECORD).max(1);
            (0..parts)
                .map(|p| {
                    let lo = p * CHECKPOINT_ENTRIES_PER_RECORD;
                    let hi = (lo + CHECKPOINT_ENTRIES_PER_RECORD).min(e.len());
                    let prev_range = if p == 0 { *range } else { None };
                    Record::Checkpoint(Checkpoint { part: p as u32, parts: parts as u32, entries: e[lo..hi].to_vec(), prev_range })
                })
                .collect()
        }
    }
}

fn item(s: &Spec) -> Item {
    match s {
        Spec::Intent(i) => Item::Intent(*i),
        Spec::Group(g) => Item::Group(g.clone()),
        Spec::Outcome(o) => Item::Report(*o),
        Spec::Checkpoint(e, r) => Item::Checkpoint(e.clone(), *r),
    }
}

/// Generous upper bound of the bytes a batch occupies.
fn bound(batch: &[Spec]) -> usize {
    let body: usize = batch
        .iter()
        .map(|s| match s {
            Spec::Checkpoint(e, _) => 220 * (e.len() + 1) + 100 * e.len().div_ceil(128),
            Spec::Group(g) => 140 * g.len(),
            _ => 140,
        })
        .sum();
    format::align_up(64 + body)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn segments_round_trip(
        batches in prop::collection::vec(prop::collection::vec(spec(), 1..24), 1..8),
        base in 1u64..1 << 40,
        k in 1u32..=8,
        seg in 0u64..1 << 20,
    ) {
        let segment_bytes = (4096 + batches.iter().map(|b| bound(b)).sum::<usize>() + 4096) as u64;
        let mut b = SegmentBuilder::new(header(seg, base, k, segment_bytes));
        let mut want = Vec::new();
        for batch in &batches {
            let items: Vec<Item> = batch.iter().map(item).collect();
            let lsns = b.batch(&items).unwrap();
            let recs: Vec<Record> = batch.iter().flat_map(expand).collect();
            prop_assert_eq!(lsns.len(), recs.len());
            for (l, r) in lsns.into_iter().zip(recs) {
                want.push((l, r));
            }
        }
        let (got, end) = decode(b.bytes(), Some(seg));
        prop_assert_eq!(&got, &want);
        for (i, (lsn, _)) in got.iter().enumerate() {
            prop_assert_eq!(*lsn, base + i as u64, "contiguous from the base LSN");
        }
        prop_assert_eq!(end, SegmentEnd::Clean {
            next_lsn: base + want.len() as u64,
            end_offset: b.end_offset() as u64,
            batches: batches.len() as u64,
        });
        // Every record body also round-trips through the JSONL raw form.
        for (lsn, r) in &got {
            let line = serde_json::to_string(&RawLine::new(*lsn, r)).unwrap();
            let back: RawLine = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(back, RawLine::new(*lsn, r));
        }
    }

    #[test]
    fn valid_intents_pass_validation(i in trade_intent()) {
        prop_assert!(i.validate().is_ok(), "{:?}", i);
    }

    #[test]
    fn invalid_intents_are_rejected_and_nothing_is_written(
        i in trade_intent(),
        field in 0usize..4,
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0), -1.0e300..-1.0e-300, Just(0.0)],
    ) {
        let mut bad_intent = i;
        match field {
            0 => bad_intent.price = bad,
            1 => bad_intent.qty = bad,
            2 => bad_intent.stop_loss = bad,
            _ => bad_intent.take_profit = bad,
        }
        // 0.0 is allowed for sl/tp (not set), never for price/qty.
        let allowed = field >= 2 && bad == 0.0 && bad.is_sign_positive();
        prop_assert_eq!(bad_intent.validate().is_ok(), allowed);
        if allowed {
            return Ok(());
        }
        let h = header(1, 1, 2, 64 * 1024);
        let mut buf = vec![0xA5u8; 8192];
        let before = buf.clone();
        let mut enc = BatchEncoder::new(&mut buf, SegmentContext::from_header(&h), 0, 1);
        prop_assert!(matches!(enc.push_intent(&bad_intent), Err(EncodeError::InvalidIntent(_))));
        prop_assert_eq!(enc.record_count(), 0);
        prop_assert_eq!(enc.used_bytes(), 64);
        prop_assert_eq!(enc.next_lsn(), 1);
        // A valid intent afterwards gets the LSN the rejected one would have had.
        prop_assert_eq!(enc.push_intent(&i), Ok(1));
        prop_assert_eq!(&buf[..64], &before[..64], "header not written before finish");
    }
}

#[test]
fn invalid_intent_leaves_the_buffer_unchanged() {
    let h = header(1, 1, 2, 64 * 1024);
    let mut buf = vec![0x5Au8; 4096];
    let before = buf.clone();
    let mut enc = BatchEncoder::new(&mut buf, SegmentContext::from_header(&h), 0, 7);
    let mut i = intent(1);
    i.qty = f64::NAN;
    assert!(matches!(enc.push_intent(&i), Err(EncodeError::InvalidIntent(IntentError::NotPositive { field: "qty", .. }))));
    assert_eq!((enc.record_count(), enc.used_bytes(), enc.next_lsn()), (0, 64, 7));
    assert_eq!(buf, before, "nothing written for an invalid intent");
    // Invalid symbols cannot even be built.
    assert!(Symbol::new("").is_err() && Symbol::new("SEVENTEEN-BYTES-X").is_err() && Symbol::new("A B").is_err());
    assert!(Symbol::new("\u{7f}").is_err() && Symbol::new("é").is_err());
}

#[test]
fn invalid_outcome_and_checkpoint_are_rejected() {
    let h = header(1, 1, 2, 64 * 1024);
    let mut buf = vec![0u8; 4096];
    let mut enc = BatchEncoder::new(&mut buf, SegmentContext::from_header(&h), 0, 1);
    assert_eq!(enc.push_outcome(&Outcome::new(0, Status::Aborted)), Err(EncodeError::InvalidOutcome));
    for bad in [
        Status::Filled { qty: 0.0, avg_price: 1.0 },
        Status::PartiallyFilled { qty: f64::NAN, avg_price: 1.0 },
        Status::Filled { qty: 1.0, avg_price: -1.0 },
        Status::Cancelled { filled_qty: -0.0 },
    ] {
        assert!(matches!(enc.push_outcome(&Outcome::new(1, bad)), Err(EncodeError::Outcome(OutcomeError::BadQuantity { .. }))), "{bad:?}");
    }
    assert_eq!(enc.push_checkpoint(1, 1, &[], None), Err(EncodeError::InvalidCheckpoint));
    assert_eq!(enc.push_checkpoint(0, 0, &[], None), Err(EncodeError::InvalidCheckpoint));
    assert_eq!(enc.push_checkpoint(1, 2, &[], Some(TsRange::default())), Err(EncodeError::InvalidCheckpoint), "a range on part 1");
    let many = vec![InDoubt { lsn: 1, intent: intent(1), fill: None }; CHECKPOINT_ENTRIES_PER_RECORD + 1];
    assert_eq!(enc.push_checkpoint(0, 1, &many, None), Err(EncodeError::InvalidCheckpoint));
    assert_eq!(enc.push_group(&[]), Err(EncodeError::GroupSize(0)));
    assert_eq!(enc.push_group(&vec![intent(1); 33]), Err(EncodeError::GroupSize(33)));
    assert_eq!(enc.record_count(), 0);
}

#[test]
fn a_group_that_does_not_fit_leaves_the_batch_as_it_was() {
    let h = header(1, 1, 2, 64 * 1024);
    let mut buf = vec![0u8; 4096];
    let mut enc = BatchEncoder::new(&mut buf, SegmentContext::from_header(&h), 0, 1);
    let mut n = 0;
    // Fill the batch until a 3-leg group no longer fits, one intent at a time.
    loop {
        let used = enc.used_bytes();
        match enc.push_group(&[intent(n), intent(n + 1), intent(n + 2)]) {
            Ok(first) => assert_eq!(first, 1 + n as u64),
            Err(EncodeError::Full) => {
                assert_eq!(enc.used_bytes(), used, "a group that did not fit wrote nothing");
                assert_eq!(enc.next_lsn(), 1 + n as u64);
                break;
            }
            Err(e) => panic!("{e}"),
        }
        n += 3;
    }
    // Single intents may still fit in what is left.
    let mut singles = 0;
    while enc.push_intent(&intent(0)).is_ok() {
        singles += 1;
    }
    assert!(singles < 3, "{singles} single intents fit where a 3-leg group did not");
}

#[test]
fn a_full_batch_says_full_and_keeps_what_fits() {
    let h = header(1, 1, 2, 64 * 1024);
    let mut buf = vec![0u8; 4096];
    let mut enc = BatchEncoder::new(&mut buf, SegmentContext::from_header(&h), 0, 1);
    let mut n = 0;
    while enc.push_intent(&intent(n)).is_ok() {
        n += 1;
    }
    assert!(n > 10);
    assert_eq!(enc.push_intent(&intent(0)), Err(EncodeError::Full));
    assert_eq!(enc.record_count() as i64, n);
    assert_eq!(enc.finish(), 4096);
}

//! Helpers shared by the codec's integration tests.
#![allow(dead_code)]

use proptest::prelude::*;
use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::*;

pub fn intent(n: i64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_767_225_600_000_000_000 + n,
        symbol: Symbol::new("BTCUSDT").unwrap(),
        side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
        price: 43250.5 + n as f64,
        qty: 0.25,
        stop_loss: 42800.0,
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

pub fn header(seg: u64, base: Lsn, k: u32, segment_bytes: u64) -> SegmentHeader {
    SegmentHeader {
        k,
        log_id: 0xA11CE,
        session_id: 2,
        session_start_unix_s: 1_767_225_600,
        segment_no: seg,
        epoch: 0xE0 + 2 * seg, // even: a file zero-filled for this life (not recycled)
        base_lsn: base,
        segment_bytes,
        created_unix_ns: 3,
    }
}

/// Decodes a whole image: records with their LSNs, and the end.
pub fn decode(img: &[u8], expected: Option<u64>) -> (Vec<(Lsn, Record)>, SegmentEnd) {
    let mut d = SegmentDecoder::new(img, expected);
    let recs = d.by_ref().map(|f| (f.lsn, f.decode().expect("yielded frames decode"))).collect();
    (recs, d.end().cloned().expect("ended"))
}

/// A segment holding a checkpoint of `ckpt`, then `batches` batches of `per_batch` intents each
/// (the checkpoint rides in batch 0).
pub fn segment(h: SegmentHeader, ckpt: Vec<InDoubt>, batches: usize, per_batch: usize) -> SegmentBuilder {
    let mut b = SegmentBuilder::new(h);
    let mut n = h.base_lsn as i64 * 1000;
    for j in 0..batches {
        let mut items = Vec::new();
        if j == 0 {
            items.push(Item::Checkpoint(ckpt.clone(), None));
        }
        for _ in 0..per_batch {
            n += 1;
            items.push(Item::Intent(intent(n)));
        }
        b.batch(&items).expect("fits");
    }
    b
}

// ---- proptest strategies for valid values ----

pub fn symbol() -> impl Strategy<Value = Symbol> {
    "[!-~]{1,16}".prop_map(|s| Symbol::new(&s).expect("printable ASCII 1..=16"))
}

/// Finite and > 0: typical prices, and the whole positive range incl. subnormals.
pub fn positive() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.000_001f64..1.0e7,
        (prop::num::f64::POSITIVE | prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL)
            .prop_filter("finite > 0", |v| v.is_finite() && *v > 0.0),
        Just(f64::MAX),
        Just(f64::from_bits(1)),
        Just(0.1),
    ]
}

/// Finite and >= 0 (0 = not set).
pub fn non_negative() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), positive()]
}

/// An order id: 1..=36 bytes of printable ASCII.
pub fn order_id() -> impl Strategy<Value = OrderId> {
    "[!-~]{1,36}".prop_map(|s| OrderId::new(&s).expect("printable ASCII 1..=36"))
}

pub fn trade_intent() -> impl Strategy<Value = TradeIntent> {
    (
        (any::<i64>(), symbol(), any::<bool>(), positive(), positive(), non_negative(), non_negative()),
        (prop::option::of(order_id()), prop::option::of(any::<u32>())),
    )
        .prop_map(|((ts_ns, symbol, buy, price, qty, stop_loss, take_profit), (cl_ord_id, tag))| TradeIntent {
            ts_ns,
            symbol,
            side: if buy { Side::Buy } else { Side::Sell },
            price,
            qty,
            stop_loss,
            take_profit,
            cl_ord_id,
            tag,
            group: None,
        })
}

/// A valid outcome of any status for the intent at `lsn` (fields valid on their own).
pub fn outcome(lsn: Lsn) -> impl Strategy<Value = Outcome> {
    let status = prop_oneof![
        (positive(), non_negative()).prop_map(|(qty, avg_price)| Status::Filled { qty, avg_price }),
        (positive(), non_negative()).prop_map(|(qty, avg_price)| Status::PartiallyFilled { qty, avg_price }),
        any::<u32>().prop_map(|reason| Status::Rejected { reason }),
        non_negative().prop_map(|filled_qty| Status::Cancelled { filled_qty }),
        Just(Status::Aborted),
    ];
    (status, prop::option::of(order_id()), any::<i64>()).prop_map(move |(status, venue_order_id, ts_ns)| Outcome {
        intent_lsn: lsn,
        status,
        venue_order_id,
        ts_ns,
    })
}

/// An in-doubt entry's partial fill (or none).
pub fn fill() -> impl Strategy<Value = Option<Fill>> {
    prop::option::of(
        (positive(), non_negative(), prop::option::of(order_id()), any::<i64>()).prop_map(|(qty, avg_price, venue_order_id, ts_ns)| Fill {
            qty,
            avg_price,
            venue_order_id,
            ts_ns,
        }),
    )
}

pub fn outcome_kind() -> impl Strategy<Value = OutcomeKind> {
    prop_oneof![Just(OutcomeKind::Executed), Just(OutcomeKind::Aborted)]
}

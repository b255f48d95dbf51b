use tradewal_codec::build::{Item, SegmentBuilder};
use tradewal_codec::*;

fn intent(n: i64) -> TradeIntent {
    TradeIntent {
        ts_ns: n,
        symbol: Symbol::new("BTCUSDT").unwrap(),
        side: Side::Buy,
        price: 43250.5,
        qty: 0.25,
        stop_loss: 42800.0,
        take_profit: 44100.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn header(seg: u64, base: Lsn) -> SegmentHeader {
    SegmentHeader {
        k: 2,
        log_id: 1,
        session_id: 2,
        session_start_unix_s: 0,
        segment_no: seg,
        epoch: 99,
        base_lsn: base,
        segment_bytes: 64 * 1024,
        created_unix_ns: 0,
    }
}

#[test]
fn round_trip_and_scan() {
    let mut b = SegmentBuilder::new(header(1, 1));
    b.batch(&[Item::Checkpoint(vec![], None), Item::Intent(intent(1)), Item::Intent(intent(2))]).unwrap();
    b.batch(&[Item::Outcome(2, OutcomeKind::Executed), Item::Intent(intent(3))]).unwrap();
    let img = b.into_bytes();
    let mut d = SegmentDecoder::new(&img, Some(1));
    let lsns: Vec<_> = d.by_ref().map(|f| f.lsn).collect();
    assert_eq!(lsns, vec![1, 2, 3, 4, 5]);
    assert!(matches!(d.end(), Some(SegmentEnd::Clean { next_lsn: 6, batches: 2, .. })));
    let mut s = LogScanner::new();
    s.push_segment(1, &img, |_, _| {}).unwrap();
    let st = s.finish();
    // LSN 1 checkpoint, 2 and 3 intents, 4 executes 2, 5 intent.
    assert_eq!(st.in_doubt.iter().map(|d| d.lsn).collect::<Vec<_>>(), vec![3, 5]);
    assert_eq!(st.next_lsn, 6);
}

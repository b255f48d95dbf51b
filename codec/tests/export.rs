//! JSONL export (docs/jsonl.md): every line parses back to the same values, floats bit-exact,
//! `ts` an integer, `exec`/`aborted` as specified; raw lines round-trip through `RawLine`.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::Value;
use tradewal_codec::export::RawOutcome;
use tradewal_codec::*;

// 123456789.123456789 is more digits than an f64 holds on purpose: the export must print the
// nearest double's shortest round-trip form.
#[allow(clippy::excessive_precision)]
const AWKWARD: [f64; 9] = [
    0.1,
    1e-300,
    123456789.123456789,
    f64::MAX,
    5e-324, // smallest positive subnormal
    f64::MIN_POSITIVE,
    1.0 / 3.0,
    9007199254740993.0,
    43250.5,
];

fn line(lsn: Lsn, i: &TradeIntent, status: IntentStatus) -> String {
    let mut out = Vec::new();
    write_intent_line(&mut out, lsn, i, status).unwrap();
    let s = String::from_utf8(out).unwrap();
    assert!(s.ends_with('\n') && s.matches('\n').count() == 1, "one line: {s:?}");
    s
}

fn bi_ids(l: &IntentLine) -> (Option<OrderId>, Option<u32>) {
    (l.intent().cl_ord_id, l.intent().tag)
}

fn check_line(s: &str, lsn: Lsn, i: &TradeIntent, status: IntentStatus) {
    let v: Value = serde_json::from_str(s).unwrap();
    let o = v.as_object().unwrap();
    assert_eq!(o["lsn"].as_u64(), Some(lsn));
    assert!(o["ts"].is_i64(), "ts is an integer: {s}");
    assert_eq!(o["ts"].as_i64(), Some(i.ts_ns));
    assert_eq!(o["sym"].as_str(), Some(i.symbol.as_str()));
    assert_eq!(o["side"].as_str(), Some(i.side.as_str()));
    for (k, want) in [("price", i.price), ("qty", i.qty), ("sl", i.stop_loss), ("tp", i.take_profit)] {
        assert!(o[k].is_f64(), "{k} is a JSON number with a fraction or exponent: {s}");
        assert_eq!(o[k].as_f64().unwrap().to_bits(), want.to_bits(), "{k} bit-exact in {s}");
    }
    let reported = match status {
        IntentStatus::Reported(o) => Some(o.status),
        _ => None,
    };
    let filled = status == IntentStatus::Executed || matches!(reported, Some(Status::Filled { .. }));
    let aborted = status == IntentStatus::Aborted || reported == Some(Status::Aborted);
    assert_eq!(o["exec"].as_bool(), Some(filled), "exec means fully filled: {s}");
    if aborted {
        assert_eq!(o["aborted"].as_bool(), Some(true));
    } else {
        assert!(!o.contains_key("aborted"), "aborted only when aborted: {s}");
    }
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    // The seed's keys first, in the seed's order.
    let at = |k: &str| s.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing in {s}"));
    let seed = ["lsn", "ts", "sym", "side", "price", "qty", "sl", "tp", "exec"];
    assert!(seed.windows(2).all(|w| at(w[0]) < at(w[1])), "the seed's keys in the seed's order: {s}");
    assert!(keys.iter().all(|k| seed.contains(k) || at(k) > at("exec")), "new keys after the seed's: {s}");
    let mut want_keys = vec!["lsn", "ts", "sym", "side", "price", "qty", "sl", "tp", "exec"];
    if aborted {
        want_keys.push("aborted");
    }
    if let Some(c) = i.cl_ord_id {
        want_keys.push("cl_ord_id");
        assert_eq!(o["cl_ord_id"].as_str(), Some(c.as_str()));
    }
    if let Some(t) = i.tag {
        want_keys.push("tag");
        assert_eq!(o["tag"].as_u64(), Some(t as u64));
    }
    if let IntentStatus::Reported(oc) = status {
        want_keys.push("status");
        assert_eq!(o["status"].as_str(), Some(oc.status.as_str()));
        let q = oc.status.filled_qty();
        if matches!(oc.status, Status::Cancelled { .. }) || q > 0.0 {
            want_keys.push("filled_qty");
            assert_eq!(o["filled_qty"].as_f64().map(f64::to_bits), Some(q.to_bits()));
        }
        if oc.status.avg_price() > 0.0 {
            want_keys.push("avg_price");
        }
        if matches!(oc.status, Status::Rejected { .. }) {
            want_keys.push("reason");
        }
        if oc.venue_order_id.is_some() {
            want_keys.push("venue_order_id");
        }
    }
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    want_keys.sort_unstable();
    assert_eq!(sorted, want_keys);
    // And through the typed line.
    let back: IntentLine = serde_json::from_str(s).unwrap();
    assert_eq!(back.lsn, lsn);
    let want_status = match status {
        IntentStatus::Reported(o) => IntentStatus::Reported(Outcome { ts_ns: 0, intent_lsn: lsn, ..o }),
        s => s,
    };
    assert_eq!(back.status(), want_status);
    assert_eq!((bi_ids(&back)), (i.cl_ord_id, i.tag));
    let bi = back.intent();
    assert_eq!(
        (bi.ts_ns, bi.symbol, bi.side, bi.price.to_bits(), bi.qty.to_bits(), bi.stop_loss.to_bits(), bi.take_profit.to_bits()),
        (i.ts_ns, i.symbol, i.side, i.price.to_bits(), i.qty.to_bits(), i.stop_loss.to_bits(), i.take_profit.to_bits())
    );
}

#[test]
fn awkward_floats_are_bit_exact() {
    for &v in &AWKWARD {
        let mut i = intent(1);
        (i.price, i.qty, i.stop_loss, i.take_profit) = (v, v, v, v);
        assert!(i.validate().is_ok());
        for status in [IntentStatus::Pending, IntentStatus::Executed, IntentStatus::Aborted] {
            check_line(&line(7, &i, status), 7, &i, status);
        }
    }
}

#[test]
fn ts_extremes_are_integers() {
    for ts in [0, 1, -1, i64::MIN, i64::MAX, 1_767_225_600_123_456_789] {
        let mut i = intent(1);
        i.ts_ns = ts;
        check_line(&line(1, &i, IntentStatus::Pending), 1, &i, IntentStatus::Pending);
    }
}

#[test]
fn example_line_matches_the_documented_shape() {
    let i = TradeIntent {
        ts_ns: 1_767_225_600_000_000_000,
        symbol: Symbol::new("BTCUSDT").unwrap(),
        side: Side::Buy,
        price: 43250.5,
        qty: 0.25,
        stop_loss: 42800.0,
        take_profit: 44100.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    };
    assert_eq!(
        line(1, &i, IntentStatus::Pending),
        "{\"lsn\":1,\"ts\":1767225600000000000,\"sym\":\"BTCUSDT\",\"side\":\"BUY\",\"price\":43250.5,\"qty\":0.25,\"sl\":42800.0,\"tp\":44100.0,\"exec\":false}\n"
    );
    assert!(line(1, &i, IntentStatus::Aborted).ends_with(",\"exec\":false,\"aborted\":true}\n"));
    assert!(line(1, &i, IntentStatus::Executed).ends_with(",\"exec\":true}\n"));
}

#[test]
fn raw_lines_round_trip() {
    let i = intent(3);
    let records = [
        Record::Intent(i),
        Record::Outcome(Outcome::shorthand(2, OutcomeKind::Executed, 0.25)),
        Record::Outcome(Outcome::shorthand(3, OutcomeKind::Aborted, 0.25)),
        Record::Checkpoint(Checkpoint { part: 0, parts: 1, entries: vec![], prev_range: None }),
        Record::Checkpoint(Checkpoint {
            part: 1,
            parts: 2,
            entries: vec![InDoubt { lsn: 2, intent: i, fill: None }, InDoubt { lsn: 9, intent: intent(4), fill: None }],
            prev_range: None,
        }),
    ];
    for (n, r) in records.iter().enumerate() {
        let lsn = 10 + n as u64;
        let mut out = Vec::new();
        write_raw_line(&mut out, lsn, r).unwrap();
        let s = String::from_utf8(out).unwrap();
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["kind"].as_str(), Some(r.kind().as_str()));
        assert_eq!(v["lsn"].as_u64(), Some(lsn));
        let back: RawLine = serde_json::from_str(&s).unwrap();
        assert_eq!(back, RawLine::new(lsn, r));
        match (&back, r) {
            (RawLine::Outcome { outcome, intent_lsn, .. }, Record::Outcome(o)) => {
                assert_eq!(*intent_lsn, o.intent_lsn);
                assert_eq!(*outcome == RawOutcome::Executed, o.kind() == Some(OutcomeKind::Executed));
                assert_eq!(v["outcome"].as_str(), Some(if o.kind() == Some(OutcomeKind::Executed) { "executed" } else { "aborted" }));
            }
            (RawLine::Checkpoint { in_doubt, part, parts, .. }, Record::Checkpoint(c)) => {
                assert_eq!((*part, *parts), (c.part, c.parts));
                assert_eq!(
                    in_doubt.iter().map(|l| (l.lsn, l.intent())).collect::<Vec<_>>(),
                    c.entries.iter().map(|e| (e.lsn, e.intent)).collect::<Vec<_>>()
                );
                assert!(in_doubt.iter().all(|l| !l.exec && !l.aborted));
            }
            (RawLine::Intent { .. }, Record::Intent(_)) => assert!(v.get("exec").is_none(), "raw intents carry no exec"),
            _ => panic!("kind changed: {back:?}"),
        }
    }
}

proptest! {
    #[test]
    fn random_intents_export_exactly(i in trade_intent(), lsn in 1u64..u64::MAX, st in 0u8..4, o in outcome(7)) {
        let status = [IntentStatus::Pending, IntentStatus::Executed, IntentStatus::Aborted, IntentStatus::Reported(o)][st as usize];
        check_line(&line(lsn, &i, status), lsn, &i, status);
        let r = Record::Intent(i);
        let back: RawLine = serde_json::from_str(&serde_json::to_string(&RawLine::new(lsn, &r)).unwrap()).unwrap();
        prop_assert_eq!(back, RawLine::new(lsn, &r));
    }
}

#[test]
fn side_has_one_spelling() {
    use tradewal_codec::Side;
    assert_eq!(serde_json::to_string(&Side::Buy).unwrap(), "\"BUY\"");
    assert_eq!(serde_json::to_string(&Side::Sell).unwrap(), "\"SELL\"");
    assert_eq!(serde_json::from_str::<Side>("\"SELL\"").unwrap(), Side::Sell);
    assert!(serde_json::from_str::<Side>("\"Buy\"").is_err(), "the old spelling is gone");
    assert_eq!((Side::Buy.to_string(), Side::Sell.to_string()), ("BUY".to_string(), "SELL".to_string()));
    assert_eq!("BUY".parse::<Side>().unwrap(), Side::Buy);
    assert_eq!("sell".parse::<Side>().unwrap(), Side::Sell);
    assert!("HOLD".parse::<Side>().unwrap_err().to_string().contains("HOLD"));
}

//! Format v2 through the engine (issue 12): outcome rules enforced with typed errors and nothing
//! written, partial fills carried by recovery and checkpoints, groups whole in one batch, and a
//! multi-batch checkpoint never made the oldest record of the log by retention.

mod common;

use common::*;
use tradewal::{read_log, GroupLeg, OrderId, Outcome, OutcomeError, Retention, Status, TradeIntent, Wal, WalError};
use tradewal_codec::{Record, RecordKind};

fn oid(s: &str) -> Option<OrderId> {
    Some(OrderId::new(s).unwrap())
}

fn report(wal: &Wal, lsn: u64, status: Status) -> Result<u64, WalError> {
    wal.report(&Outcome { intent_lsn: lsn, status, venue_order_id: oid(&format!("V-{lsn}")), ts_ns: 42 })?.wait()
}

/// Every illegal outcome is refused with its typed error, and nothing is written for it: the
/// log's next LSN and record count do not move.
#[test]
fn illegal_outcomes_are_refused_and_write_nothing() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    let mut i = intent(1);
    i.qty = 10.0;
    let a = wal.append(&i).unwrap().wait().unwrap();
    let b = wal.append(&i).unwrap().wait().unwrap();
    report(&wal, a, Status::PartiallyFilled { qty: 4.0, avg_price: 100.0 }).unwrap();
    let before = wal.durable_lsn();
    // At once: fields out of range.
    for bad in [
        Status::Filled { qty: 0.0, avg_price: 1.0 },
        Status::PartiallyFilled { qty: -1.0, avg_price: 1.0 },
        Status::PartiallyFilled { qty: f64::NAN, avg_price: 1.0 },
        Status::Filled { qty: 1.0, avg_price: f64::INFINITY },
        Status::Cancelled { filled_qty: -0.0 },
    ] {
        let r = wal.report(&Outcome::new(a, bad));
        assert!(matches!(r, Err(WalError::OutcomeRule(OutcomeError::BadQuantity { .. }))), "{bad:?}: {r:?}");
    }
    // Through the ticket: rules against the intent's state.
    type Is = fn(&WalError) -> bool;
    let cases: Vec<(u64, Status, Is)> = vec![
        (a, Status::PartiallyFilled { qty: 3.0, avg_price: 1.0 }, |e| {
            matches!(e, WalError::OutcomeRule(OutcomeError::QtyDecreased { .. }))
        }),
        (a, Status::Filled { qty: 10.5, avg_price: 1.0 }, |e| matches!(e, WalError::OutcomeRule(OutcomeError::QtyExceedsIntent { .. }))),
        (a, Status::Cancelled { filled_qty: 2.0 }, |e| matches!(e, WalError::OutcomeRule(OutcomeError::QtyDecreased { .. }))),
        (a, Status::Rejected { reason: 7 }, |e| matches!(e, WalError::OutcomeRule(OutcomeError::QtyDecreased { .. }))),
        (a, Status::Aborted, |e| matches!(e, WalError::OutcomeRule(OutcomeError::AbortAfterFill { .. }))),
        (b, Status::PartiallyFilled { qty: 11.0, avg_price: 1.0 }, |e| {
            matches!(e, WalError::OutcomeRule(OutcomeError::QtyExceedsIntent { .. }))
        }),
        (before + 1000, Status::Aborted, |e| matches!(e, WalError::NotInDoubt { .. })),
    ];
    for (lsn, st, is) in &cases {
        let e = report(&wal, *lsn, *st).expect_err("refused");
        assert!(is(&e), "{st:?} on {lsn}: {e:?}");
    }
    // Shorthands follow the same rules.
    assert!(matches!(wal.mark_aborted(a).unwrap().wait(), Err(WalError::OutcomeRule(OutcomeError::AbortAfterFill { .. }))));
    assert_eq!(wal.durable_lsn(), before, "nothing written for a refused outcome");
    // Terminal, then nothing may follow.
    let filled = report(&wal, a, Status::Filled { qty: 10.0, avg_price: 101.0 }).unwrap();
    assert_eq!(filled, before + 1, "a refused outcome takes no LSN");
    for st in [Status::Filled { qty: 10.0, avg_price: 1.0 }, Status::PartiallyFilled { qty: 10.0, avg_price: 1.0 }, Status::Aborted] {
        assert!(matches!(report(&wal, a, st), Err(WalError::NotInDoubt { lsn }) if lsn == a), "{st:?} after Filled");
    }
    assert!(matches!(wal.mark_executed(a).unwrap().wait(), Err(WalError::NotInDoubt { .. })));
    let r = wal.append(&TradeIntent { group: Some(GroupLeg { index: 0, size: 1 }), ..i });
    assert!(matches!(r, Err(WalError::InvalidIntent(tradewal::IntentError::GroupSetByCaller))), "{r:?}");
    wal.close().unwrap();
    // What is on disk: exactly the accepted outcomes.
    let mut outcomes = vec![];
    read_log(d.path(), |f, r| {
        if let Record::Outcome(o) = r {
            outcomes.push((f.lsn, o.intent_lsn, o.status));
        }
    })
    .unwrap();
    assert_eq!(
        outcomes,
        vec![
            (b + 1, a, Status::PartiallyFilled { qty: 4.0, avg_price: 100.0 }),
            (filled, a, Status::Filled { qty: 10.0, avg_price: 101.0 })
        ]
    );
}

/// Nothing follows any terminal status: after each of Filled, Rejected, Cancelled and Aborted,
/// every status (and both shorthands) is refused with `NotInDoubt`, and nothing is written.
#[test]
fn nothing_follows_a_terminal_status() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    let all = |q: f64| {
        [
            Status::Filled { qty: q, avg_price: 1.0 },
            Status::PartiallyFilled { qty: q, avg_price: 1.0 },
            Status::Rejected { reason: 1 },
            Status::Cancelled { filled_qty: q },
            Status::Aborted,
        ]
    };
    let mut i = intent(1);
    i.qty = 2.0;
    for terminal in all(2.0).into_iter().filter(|s| s.is_terminal()) {
        let lsn = wal.append(&i).unwrap().wait().unwrap();
        report(&wal, lsn, terminal).unwrap();
        let durable = wal.durable_lsn();
        for next in all(2.0) {
            assert!(matches!(report(&wal, lsn, next), Err(WalError::NotInDoubt { .. })), "{next:?} after {terminal:?}");
        }
        assert!(matches!(wal.mark_executed(lsn).unwrap().wait(), Err(WalError::NotInDoubt { .. })));
        assert!(matches!(wal.mark_aborted(lsn).unwrap().wait(), Err(WalError::NotInDoubt { .. })));
        assert_eq!(wal.durable_lsn(), durable, "nothing written after {terminal:?}");
    }
    wal.close().unwrap();
}

/// A partial fill keeps the intent in doubt, and recovery (and the checkpoint of every later
/// segment) carries its latest fill and venue order id.
#[test]
fn partial_fills_survive_reopen_and_rotation() {
    let d = tempdir();
    let cfg = || small(d.path());
    let wal = Wal::open(cfg()).unwrap();
    let mut i = intent(7);
    i.qty = 5.0;
    i.cl_ord_id = oid("CL-7");
    i.tag = Some(3);
    let lsn = wal.append(&i).unwrap().wait().unwrap();
    report(&wal, lsn, Status::PartiallyFilled { qty: 1.0, avg_price: 10.0 }).unwrap();
    report(&wal, lsn, Status::PartiallyFilled { qty: 2.5, avg_price: 10.5 }).unwrap();
    // Rotate a few times: the fill must ride in every checkpoint.
    let mut n = 100;
    while wal.stats().rotations < 3 {
        let t: Vec<_> = (0..256).map(|k| wal.append(&intent(n + k)).unwrap()).collect();
        for t in t {
            drop(wal.mark_executed(t.wait().unwrap()).unwrap());
        }
        n += 256;
    }
    wal.close().unwrap();
    let wal = Wal::open(cfg().retention(Retention::Delete)).unwrap();
    let d0 = wal.recovered().in_doubt.iter().find(|x| x.lsn == lsn).expect("still in doubt").to_owned();
    assert_eq!(d0.intent, i);
    let f = d0.fill.expect("its partial fill");
    assert_eq!((f.qty, f.avg_price, f.venue_order_id, f.ts_ns), (2.5, 10.5, oid(&format!("V-{lsn}")), 42));
    report(&wal, lsn, Status::Cancelled { filled_qty: 2.5 }).unwrap();
    wal.close().unwrap();
    let wal = Wal::open(cfg()).unwrap();
    assert!(wal.recovered().in_doubt.iter().all(|x| x.lsn != lsn), "a cancel is terminal");
    wal.close().unwrap();
}

/// A group gets consecutive LSNs in one batch, one ticket for all legs, and recovery reports
/// each leg with its place in the group; a group that cannot be valid is refused whole.
#[test]
fn groups_are_one_batch_and_one_ticket() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    let legs: Vec<TradeIntent> = (0..3).map(intent).collect();
    let first = wal.append_group(&legs).unwrap().wait().unwrap();
    assert!(wal.durable_lsn() >= first + 2, "the ticket resolves once every leg is durable");
    let solo = wal.append_group(&legs[..1]).unwrap().wait().unwrap();
    assert_eq!(solo, first + 3);
    assert!(matches!(wal.append_group(&[]), Err(WalError::GroupSize { legs: 0, .. })));
    assert!(matches!(wal.append_group(&vec![intent(1); 33]), Err(WalError::GroupSize { legs: 33, max: 32 })));
    let mut bad = legs.clone();
    bad[1].price = -1.0;
    assert!(matches!(wal.append_group(&bad), Err(WalError::InvalidIntent(_))));
    assert_eq!(wal.durable_lsn(), solo, "nothing written for a refused group");
    wal.mark_executed(first + 1).unwrap().wait().unwrap();
    wal.close().unwrap();
    let wal = Wal::open(small(d.path())).unwrap();
    let got: Vec<(u64, Option<GroupLeg>)> = wal.recovered().in_doubt.iter().map(|x| (x.lsn, x.intent.group)).collect();
    assert_eq!(
        got,
        vec![
            (first, Some(GroupLeg { index: 0, size: 3 })),
            (first + 2, Some(GroupLeg { index: 2, size: 3 })),
            (solo, Some(GroupLeg { index: 0, size: 1 })),
        ]
    );
    wal.close().unwrap();
    // On disk the legs share one batch: their frames lie within one batch's 4 KiB blocks.
    let mut at = vec![];
    read_log(d.path(), |f, r| {
        if let Record::Intent(i) = r {
            if i.group.is_some_and(|g| g.size == 3) {
                at.push(f.offset);
            }
        }
    })
    .unwrap();
    assert_eq!(at.len(), 3);
    assert_eq!(at[0] / 4096, at[2] / 4096, "the legs are in one batch");
}

/// Groups from many threads at once, with plain appends between them: every group is whole and
/// its legs consecutive.
#[test]
fn concurrent_groups_stay_whole() {
    let d = tempdir();
    let wal = std::sync::Arc::new(Wal::open(small(d.path()).segment_bytes(4 << 20).max_in_doubt(8192)).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for k in 0..200u64 {
                    let n = t * 10_000 + k * 10;
                    let size = 1 + (k % 4) as usize;
                    let legs: Vec<TradeIntent> = (0..size as u64).map(|j| intent(n + j)).collect();
                    let first = wal.append_group(&legs).unwrap().wait().unwrap();
                    drop(wal.append(&intent(n + 9)).unwrap());
                    drop(wal.mark_executed(first).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    std::sync::Arc::try_unwrap(wal).ok().unwrap().close().unwrap();
    let mut legs = vec![];
    read_log(d.path(), |f, r| {
        if let Record::Intent(i) = r {
            if let Some(g) = i.group {
                legs.push((f.lsn, g, i.ts_ns));
            }
        }
    })
    .unwrap();
    assert_eq!(legs.len(), 4 * 200 * 10 / 4, "every leg of every group");
    let mut k = 0;
    while k < legs.len() {
        let (lsn, g, ts) = legs[k];
        assert_eq!(g.index, 0, "a group starts with leg 0 at {lsn}");
        for j in 1..g.size as usize {
            let (l, gj, tj) = legs[k + j];
            assert_eq!((l, gj.index, gj.size), (lsn + j as u64, j as u16, g.size), "legs consecutive");
            assert_eq!(tj, ts + j as i64, "the legs of one append_group");
        }
        k += g.size as usize;
    }
}

/// Retention waits for the WHOLE checkpoint that starts a segment: with a checkpoint spanning
/// several batches and a fault after its first batches, the older segments must still be there,
/// so the next open recovers every in-doubt intent (not only those of the checkpoint's durable
/// parts).
#[test]
fn retention_waits_for_a_whole_multi_batch_checkpoint() {
    let d = tempdir();
    // 32 KiB batches hold about two 128-entry checkpoint parts: 2000 in doubt span 8 batches.
    let cfg = || small(d.path()).max_batch_bytes(32 << 10).max_in_doubt(2048).retention(Retention::Delete);
    let wal = Wal::open(cfg()).unwrap();
    let mut keep = vec![];
    for chunk in 0..8u64 {
        let t: Vec<_> = (0..250).map(|k| wal.append(&intent(chunk * 1000 + k)).unwrap()).collect();
        keep.extend(t.into_iter().map(|t| t.wait().unwrap()));
    }
    wal.close().unwrap();
    // Session 2 starts with that checkpoint; its third batch fails (fail-stop).
    let wal = Wal::open(cfg().inject_misaligned_write(2)).unwrap();
    let t0 = std::time::Instant::now();
    while !matches!(wal.append(&intent(99_999)).map(|t| t.wait()), Err(_) | Ok(Err(_))) {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "the injected fault never came");
    }
    let _ = wal.close();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let wal = Wal::open(small(d.path()).max_in_doubt(2048)).unwrap();
    let got: Vec<u64> = wal.recovered().in_doubt.iter().map(|x| x.lsn).filter(|l| keep.contains(l)).collect();
    assert_eq!(got, keep, "every in-doubt intent recovered after a fault inside a multi-batch checkpoint");
    wal.close().unwrap();
    // The checkpoint did span several batches.
    let mut parts = 0;
    read_log(d.path(), |f, _| parts += (f.kind == RecordKind::Checkpoint) as usize).unwrap();
    assert!(parts > 4, "{parts} checkpoint parts");
}

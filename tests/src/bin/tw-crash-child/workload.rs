//! The kill -9 workload shared by the child binary (`tw-crash-child`) and the parent suite
//! (`tests/tests/kill9.rs`, which includes this file with `#[path]`): the log configuration and a
//! deterministic generator of intents, groups and outcomes, so the parent can tell an appended
//! record from a phantom by its content alone.
//!
//! - An intent's id is carried in `ts_ns`; every other field (client order id, tag included) is a
//!   function of the id ([`intent`]).
//! - Producers number their units 4 apart ([`intent_id`]): a unit is one intent or, in the rich
//!   workload, a group of 2..=4 legs ([`group_size`]) whose leg `j` has id `unit + j`, so a leg's id
//!   names its group (`id & !3`), its index (`id & 3`) and the group's size ([`recorded_intent`]).
//! - Each intent's outcomes follow a plan ([`plan_len`], [`outcome`]): a single terminal status,
//!   or 1..=3 cumulative partial fills and then Filled or Cancelled; every field (status, quantities,
//!   average price, reject reason, venue order id, time) is a function of the id and the step.
//!   Outcomes of one intent are reported in plan order, each after the previous one was
//!   acknowledged, so the outcomes of an intent in the log are always a prefix of its plan.

#![allow(dead_code)] // each includer uses a different part

use std::path::Path;
use tradewal::{GroupLeg, Lsn, OrderId, Outcome, Retention, Side, Status, Symbol, TradeIntent, WalConfig};

/// Segment size of the crash log: small, so sessions rotate within a round.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// In-doubt limit of the crash log (keeps checkpoints small enough for 1 MiB segments: a full
/// checkpoint of format 2's larger entries, up to 184 bytes each, must fit with one 256 KiB batch,
/// `WalConfig::min_segment_bytes`; 2816 is the most that fits).
pub const MAX_IN_DOUBT: usize = 2816;
/// Ids a unit (one intent or one group) takes: legs are `unit..unit + UNIT_IDS`.
pub const UNIT_IDS: u64 = 4;

/// The crash log's configuration; retired segments move to `archive` so the parent can check
/// every record exactly once without the live log growing.
pub fn config(dir: &Path, archive: &Path) -> WalConfig {
    WalConfig::new(dir)
        .segment_bytes(SEGMENT_BYTES)
        .max_batch_bytes(256 << 10)
        .in_flight_batches(2)
        .queue_capacity(1024)
        .max_in_doubt(MAX_IN_DOUBT)
        .unpinned_writer()
        .retention(Retention::ArchiveTo(archive.to_path_buf()))
}

/// splitmix64: a seeded, dependency-free mixer.
pub use tradewal_testkit::rng::splitmix64 as mix;

/// Intent id: round (bits 32..), producer thread (bits 24..32), counter (bits 0..24).
pub fn intent_id(round: u64, thread: u64, counter: u64) -> u64 {
    assert!(thread < 256 && counter < 1 << 24, "id fields in range");
    (round << 32) | (thread << 24) | counter
}

/// Legs of the unit starting at id `unit` (a multiple of [`UNIT_IDS`]) in the rich workload:
/// 1 (a plain intent) three times in four, else a group of 2..=4 legs.
pub fn group_size(unit: u64) -> u16 {
    debug_assert_eq!(unit % UNIT_IDS, 0);
    let h = mix(unit ^ 0x6209);
    if h % 4 != 0 {
        1
    } else {
        2 + (h >> 8) as u16 % 3
    }
}

/// The intent with this id as the producer appends it (no group: the engine sets the legs).
pub fn intent(id: u64) -> TradeIntent {
    const SYMS: [&str; 5] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "A~!z"];
    let h = mix(id);
    let price = 1.0 + (h >> 16 & 0xF_FFFF) as f64 / 64.0;
    let g = mix(id ^ 0xC10D);
    // A client order id on two intents in three, 1..=36 bytes long (a prefix of a hex string).
    let cl_ord_id = (g % 3 != 0).then(|| {
        let s = format!("{id:x}-{g:016x}{:016x}", mix(g));
        OrderId::new(&s[..1 + (g >> 8) as usize % 36]).expect("printable ASCII")
    });
    TradeIntent {
        ts_ns: id as i64,
        symbol: Symbol::new(SYMS[(h % 5) as usize]).expect("static symbol"),
        side: if h >> 8 & 1 == 0 { Side::Buy } else { Side::Sell },
        price,
        qty: 0.001 + (h >> 36 & 0xFFF) as f64 / 1000.0,
        stop_loss: if h >> 48 & 1 == 0 { 0.0 } else { price * 0.9 },
        take_profit: if h >> 49 & 1 == 0 { 0.0 } else { price / 0.9 },
        cl_ord_id,
        // A tag (of any magnitude, 0 included) on three intents in four.
        tag: (g >> 20 & 3 != 0).then_some((g >> 32) as u32 >> (g >> 22 & 31)),
        group: None,
    }
}

/// The intent with this id as the rich workload's log must hold it: [`intent`] with its group leg.
pub fn recorded_intent(id: u64) -> TradeIntent {
    let size = group_size(id & !(UNIT_IDS - 1));
    let index = (id % UNIT_IDS) as u16;
    TradeIntent { group: (size > 1).then_some(GroupLeg { index, size }), ..intent(id) }
}

/// Partial fills before the terminal status of intent `id`, and what the plan is: 0 = one
/// terminal status (Aborted, Rejected or Filled), else that many partial fills then Filled or
/// Cancelled.
fn plan_of(id: u64, rich: bool) -> (u64, u64) {
    let h = mix(id ^ 0xF111);
    if !rich {
        return (0, h);
    }
    let partials = if h % 16 < 8 { 0 } else { 1 + (h >> 4) % 3 };
    (partials, h)
}

/// Outcomes in the plan of intent `id` (the last one terminal).
pub fn plan_len(id: u64, rich: bool) -> usize {
    plan_of(id, rich).0 as usize + 1
}

/// Outcome `step` (`< plan_len`) of the intent with id `id` at `intent_lsn`. The plain workload
/// (`rich == false`) has the shorthands only: Filled with the whole quantity (1 in 4 Aborted).
pub fn outcome(id: u64, intent_lsn: Lsn, step: usize, rich: bool) -> Outcome {
    let it = intent(id);
    let (partials, h) = plan_of(id, rich);
    let partials = partials as usize;
    assert!(step <= partials, "step {step} beyond the plan of {id:#x}");
    if !rich {
        let status = if mix(id ^ 0xA5A5) % 4 == 0 { Status::Aborted } else { Status::Filled { qty: it.qty, avg_price: 0.0 } };
        return Outcome::new(intent_lsn, status);
    }
    let cum = |k: usize| it.qty * (k + 1) as f64 / (partials + 1) as f64;
    let avg = if h >> 20 & 7 == 0 { 0.0 } else { it.price * (1.0 + step as f64 / 1024.0) };
    let status = if step < partials {
        Status::PartiallyFilled { qty: cum(step), avg_price: avg }
    } else if partials == 0 {
        match h % 16 {
            0 | 1 => Status::Aborted,
            2 => Status::Rejected { reason: (h >> 24) as u32 % 1000 },
            3..=5 => return Outcome::new(intent_lsn, Status::Filled { qty: it.qty, avg_price: 0.0 }), // the shorthand
            _ => Status::Filled { qty: it.qty, avg_price: avg },
        }
    } else if h >> 6 & 1 == 0 {
        Status::Filled { qty: it.qty, avg_price: avg }
    } else {
        Status::Cancelled { filled_qty: cum(partials - 1) }
    };
    // The venue's order id is known on three intents in four, from the first or second step.
    let venue_order_id =
        (h >> 12 & 3 != 0 && step as u64 >= h >> 14 & 1).then(|| OrderId::new(&format!("V{id:x}.{}", h >> 40)).expect("printable ASCII"));
    let ts_ns = if h >> 16 & 7 == 0 { 0 } else { 1_700_000_000_000_000_000 + (id << 2) as i64 + step as i64 };
    Outcome { intent_lsn, status, venue_order_id, ts_ns }
}

/// Where the producers stop an intent's plan within their session (about 1 in 32 intents): after
/// this many outcomes (0: none; never after the terminal one). Later sessions finish the plan.
pub fn left_in_doubt_after(id: u64, rich: bool) -> Option<usize> {
    let h = mix(id ^ 0x5A5A);
    (h % 32 == 0).then(|| (h >> 8) as usize % plan_len(id, rich))
}

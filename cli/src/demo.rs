//! `tradewal demo`: the whole pattern end to end, with an honest latency report.
//!
//! A short scenario first (one strategy, tag 7): client order ids supplied by the strategy and
//! derived from `(log_id, lsn)`, partial fills, a reject, a cancel and a two-leg group appended with
//! `append_group`, against a simulated venue that answers by client order id. Then P strategy
//! threads each append an intent and wait for its own ticket (queue depth 1 per thread), so
//! batching happens only across threads (group commit); even threads supply their own order ids,
//! odd ones send derived ids. A simulated exchange thread executes most intents, aborts about 2%
//! and leaves about 1% working at the venue (some partly filled). Then the process "crashes" (the
//! `Wal` is dropped without `close`), reopens the log, lists what is in doubt, reconciles each
//! in-doubt intent with the venue (recover → ask by client order id → report the outcome), checks
//! that exactly the orders the venue is still working stay in doubt, exports JSONL and prints the
//! append→durable latency beside the device floor measured in the same run.

use crate::export::export_to;
use crate::{CmdResult, Failure};
use hdrhistogram::Histogram;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tradewal::{Lsn, OrderId, Outcome, Side, Status, Symbol, Ticket, TradeIntent, Wal, WalConfig, WalError};
use tradewal_codec::intent::ORDER_ID_MAX_BYTES;
use tradewal_codec::{write_in_doubt_line, SegmentName};

const SYMBOLS: [&str; 8] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "LINKUSDT"];
const BASE_PRICES: [f64; 8] = [43250.5, 2280.25, 98.4, 0.6123, 0.5871, 0.0912, 35.12, 14.77];
/// Files the demo itself leaves in its directory besides the log.
const EXPORT_FILE: &str = "export.jsonl";
const HGRM_FILE: &str = "latency_us.hgrm";
/// Device floor samples (one 4 KiB O_DIRECT O_DSYNC pwrite each, QD1).
const FLOOR_SAMPLES: usize = 2000;
/// Outcome tickets the exchange keeps unresolved before it waits for the oldest.
const EXCHANGE_WINDOW: usize = 4096;
/// In-doubt intents shown after the reopen.
const SHOW_IN_DOUBT: usize = 5;

fn fail(context: &str, e: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("{context}: {e}"))
}

/// True for names a tradewal log directory (or an earlier demo) holds.
fn is_log_entry(name: &str) -> bool {
    name == "LOCK"
        || name == EXPORT_FILE
        || name == HGRM_FILE
        || name == tradewal::manifest::MANIFEST_FILE
        || name == tradewal::manifest::MANIFEST_TMP
        || name == tradewal::follower::WATERMARK_FILE
        || SegmentName::parse(name).is_some()
        || name.strip_suffix(".tmp").and_then(SegmentName::parse).is_some()
        || (name.starts_with(".tradewal-") && (name.contains("-probe-") || name.starts_with(".tradewal-measure-")))
}

/// Makes `dir` ready for a fresh log: removes it only if it is empty or a tradewal log directory.
fn prepare_dir(dir: &Path) -> CmdResult {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(&dir.display().to_string(), e)),
    };
    if !meta.is_dir() {
        return Err(Failure::usage(format!("{} exists and is not a directory; refusing to touch it", dir.display())));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| fail(&format!("listing {}", dir.display()), e))? {
        let entry = entry.map_err(|e| fail(&format!("listing {}", dir.display()), e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    let is_log = names.iter().any(|n| n == "LOCK" || SegmentName::parse(n).is_some());
    let removable = names.is_empty() || (is_log && names.iter().all(|n| is_log_entry(n)));
    if !removable {
        return Err(Failure::usage(format!(
            "{} exists and is neither empty nor a tradewal demo log; refusing to remove it (use --dir)",
            dir.display()
        )));
    }
    for n in &names {
        std::fs::remove_file(dir.join(n)).map_err(|e| fail(&format!("removing {}", dir.join(n).display()), e))?;
    }
    std::fs::remove_dir(dir).map_err(|e| fail(&format!("removing {}", dir.display()), e))
}

/// A small deterministic generator (xorshift64*): varied intents without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// An inline order id (no heap) from `args`: how the strategies build the ids they supply.
fn order_id(args: std::fmt::Arguments<'_>) -> OrderId {
    let mut buf = [0u8; ORDER_ID_MAX_BYTES];
    let mut w = &mut buf[..];
    w.write_fmt(args).expect("demo order ids fit in 36 bytes");
    let len = ORDER_ID_MAX_BYTES - w.len();
    OrderId::from_ascii(&buf[..len]).expect("demo order ids are printable ASCII")
}

fn make_intent(rng: &mut Rng, symbols: &[Symbol], cl_ord_id: Option<OrderId>, tag: u32) -> TradeIntent {
    let i = (rng.next() % symbols.len() as u64) as usize;
    let side = if rng.next() & 1 == 0 { Side::Buy } else { Side::Sell };
    let base = BASE_PRICES[i];
    let price = base * (1.0 + (rng.unit() - 0.5) * 0.002);
    let qty = ((rng.unit() * 5.0 + 0.01) * 1000.0).round() / 1000.0;
    let (sl, tp) = match side {
        Side::Buy => (price * 0.99, price * 1.02),
        Side::Sell => (price * 1.01, price * 0.98),
    };
    // Every fifth intent has no stop loss / take profit (0 = not set).
    let (sl, tp) = if rng.next() % 5 == 0 { (0.0, 0.0) } else { (sl, tp) };
    TradeIntent {
        ts_ns: now_ns(),
        symbol: symbols[i],
        side,
        price,
        qty,
        stop_loss: sl,
        take_profit: tp,
        cl_ord_id,
        tag: Some(tag),
        group: None,
    }
}

/// A hash of an LSN (splitmix64's finalizer): the simulated venue's decisions, stable per LSN.
fn mix(lsn: Lsn) -> u64 {
    let mut z = lsn.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What the simulated exchange does with an intent (a hash of its LSN: stable, about 97/2/1 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Execute,
    Abort,
    /// Sent, and still working at the venue when the process crashes (some partly filled).
    Unresolved,
}

fn fate(lsn: Lsn) -> Fate {
    match mix(lsn) % 100 {
        0 | 1 => Fate::Abort,
        2 => Fate::Unresolved,
        _ => Fate::Execute,
    }
}

/// `qty * frac`, rounded down to the intents' 3 decimals.
fn part_of(qty: f64, frac: f64) -> f64 {
    (qty * frac * 1000.0).floor() / 1000.0
}

/// An order the exchange leaves working: (cumulative fill reported to the log before the crash,
/// cumulative fill at the venue when the process crashes, average price). A quarter each: nothing
/// filled; a partial fill, reported; a partial fill reported, then more filled since; a partial
/// fill not reported yet.
fn working_fills(lsn: Lsn, qty: f64, price: f64) -> (f64, f64, f64) {
    let h = mix(lsn ^ 0x5DEE_CE66_D1CE_4E5B);
    let avg = price * (1.0 + ((h >> 8) % 21) as f64 * 1e-5 - 1e-4);
    let (first, more) = (part_of(qty, 0.25), part_of(qty, 0.6));
    match h % 4 {
        0 => (0.0, 0.0, avg),
        1 => (first, first, avg),
        2 => (first, more, avg),
        _ => (0.0, more, avg),
    }
}

/// What the simulated venue knows of an order (quantities cumulative).
#[derive(Debug, Clone, Copy, PartialEq)]
enum VenueState {
    Working { filled: f64, avg_price: f64 },
    Filled { qty: f64, avg_price: f64 },
    Rejected { reason: u32 },
    Cancelled { filled_qty: f64 },
}

impl VenueState {
    /// The status to log for it (None while nothing is filled).
    fn status(self) -> Option<Status> {
        match self {
            VenueState::Working { filled, avg_price } => (filled > 0.0).then_some(Status::PartiallyFilled { qty: filled, avg_price }),
            VenueState::Filled { qty, avg_price } => Some(Status::Filled { qty, avg_price }),
            VenueState::Rejected { reason } => Some(Status::Rejected { reason }),
            VenueState::Cancelled { filled_qty } => Some(Status::Cancelled { filled_qty }),
        }
    }
}

impl std::fmt::Display for VenueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            VenueState::Working { filled, avg_price } if filled > 0.0 => write!(f, "working, {filled} filled @ {avg_price}"),
            VenueState::Working { .. } => write!(f, "working, nothing filled"),
            VenueState::Filled { qty, avg_price } => write!(f, "filled {qty} @ {avg_price}"),
            VenueState::Rejected { reason } => write!(f, "rejected (reason {reason})"),
            VenueState::Cancelled { filled_qty } => write!(f, "cancelled after {filled_qty} filled"),
        }
    }
}

/// One order at the venue.
#[derive(Debug, Clone, Copy)]
struct VenueOrder {
    venue_id: OrderId,
    state: VenueState,
}

/// The simulated venue: the orders it received, by client order id; it refuses a client order
/// id it has seen before. Deterministic: its decisions are functions of the intents' LSNs (made
/// by the callers), its order ids a counter.
#[derive(Debug, Default)]
struct Venue {
    orders: HashMap<OrderId, VenueOrder>,
    next_id: u64,
    duplicates: u64,
}

impl Venue {
    /// A new order arrives: working, nothing filled. Returns the venue's order id, or None (and
    /// counts it) for a client order id already used.
    fn receive(&mut self, cl_ord_id: OrderId) -> Option<OrderId> {
        if self.orders.contains_key(&cl_ord_id) {
            self.duplicates += 1;
            return None;
        }
        self.next_id += 1;
        let venue_id = order_id(format_args!("V{:07}", self.next_id));
        self.orders.insert(cl_ord_id, VenueOrder { venue_id, state: VenueState::Working { filled: 0.0, avg_price: 0.0 } });
        Some(venue_id)
    }

    fn set(&mut self, cl_ord_id: &OrderId, state: VenueState) {
        if let Some(o) = self.orders.get_mut(cl_ord_id) {
            o.state = state;
        }
    }

    /// A status request by client order id (FIX OrderStatusRequest): None = unknown order.
    fn query(&self, cl_ord_id: &OrderId) -> Option<&VenueOrder> {
        self.orders.get(cl_ord_id)
    }
}

/// Logs what the venue now says of `cl_ord_id` (the intent at `lsn`) and waits until durable.
fn report_now(wal: &Wal, venue: &Venue, lsn: Lsn, cl_ord_id: &OrderId) -> Result<(), WalError> {
    let o = venue.query(cl_ord_id).expect("the scenario reports only orders the venue has");
    let status = o.state.status().expect("the scenario reports only states with a status");
    wal.report(&Outcome { intent_lsn: lsn, status, venue_order_id: Some(o.venue_id), ts_ns: now_ns() })?.wait()?;
    Ok(())
}

/// The scenario run before the strategy threads: what it appended and what stays in doubt.
#[derive(Debug, Default)]
struct Scenario {
    /// Every intent of the scenario, in LSN order.
    lsns: BTreeSet<Lsn>,
    /// Intents with no terminal outcome in the log when the process crashes.
    in_doubt_at_crash: BTreeSet<Lsn>,
    /// Of those, the orders the venue is still working (they stay in doubt after reconciliation).
    working: BTreeSet<Lsn>,
}

const SCENARIO_INTENTS: u64 = 11;
const SCENARIO_TAG: u32 = 7;
/// Strategy thread `p` tags its intents `THREAD_TAG_BASE + p`.
const THREAD_TAG_BASE: u32 = 100;

/// The scenario (strategy tag 7): client order ids supplied and derived, partial fills, a reject,
/// a cancel and a two-leg group, some of them with venue reports the crash will cut off. Appends
/// [`SCENARIO_INTENTS`] intents and narrates into `out`.
fn scenario(wal: &Wal, venue: &mut Venue, out: &mut String) -> Result<Scenario, WalError> {
    let log_id = wal.log_id();
    let mut sc = Scenario::default();
    // The strategy's own ids: the log id, its name, and a counter starting at the session's first
    // LSN (every id a session sends belongs to a durable intent, which takes an LSN: a later
    // session's counter starts above every value used before).
    let mut counter = wal.recovered().next_lsn;
    let mut own = || {
        let id = order_id(format_args!("{log_id:016x}-sc-{counter:x}"));
        counter += 1;
        id
    };
    let intent = |sym: &str, side: Side, price: f64, qty: f64, cl_ord_id: Option<OrderId>| TradeIntent {
        ts_ns: now_ns(),
        symbol: Symbol::new(sym).expect("valid demo symbol"),
        side,
        price,
        qty,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id,
        tag: Some(SCENARIO_TAG),
        group: None,
    };
    // Appends `i` and waits until durable (only then is an order sent); its client order id is
    // the one supplied, or else derived from (log id, LSN), known now.
    let append = |i: &TradeIntent, sc: &mut Scenario| -> Result<(Lsn, OrderId), WalError> {
        let lsn = wal.append(i)?.wait()?;
        sc.lsns.insert(lsn);
        Ok((lsn, i.cl_ord_id.unwrap_or_else(|| OrderId::derived(log_id, lsn))))
    };
    let say = |out: &mut String, lsn: Lsn, i: &TradeIntent, id: &OrderId, story: &str| {
        let whose = if i.cl_ord_id.is_some() { "own" } else { "derived" };
        let _ = writeln!(out, "  LSN {lsn:<3} {} {} {} @ {}, {whose} id {id}: {story}", i.side, i.qty, i.symbol, i.price);
    };
    let _ = writeln!(out, "scenario (strategy tag {SCENARIO_TAG}; ids supplied by the strategy, <log id>-sc-<counter>, or derived from the log, <log id>-<LSN hex>):");

    // A: partially filled, then filled; both reported.
    let a = intent("BTCUSDT", Side::Buy, 43250.5, 1.0, Some(own()));
    let (lsn, id) = append(&a, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Working { filled: 0.4, avg_price: 43250.0 });
    report_now(wal, venue, lsn, &id)?;
    venue.set(&id, VenueState::Filled { qty: 1.0, avg_price: 43250.3 });
    report_now(wal, venue, lsn, &id)?;
    say(out, lsn, &a, &id, &format!("venue {v}: partially filled 0.4 @ 43250, then filled 1 @ 43250.3; both reported"));

    // B: rejected, reported.
    let b = intent("SOLUSDT", Side::Sell, 98.4, 5.0, None);
    let (lsn, id) = append(&b, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Rejected { reason: 201 });
    report_now(wal, venue, lsn, &id)?;
    say(out, lsn, &b, &id, &format!("venue {v}: rejected (reason 201); reported"));

    // C: partially filled, then cancelled by the strategy; both reported.
    let c = intent("ETHUSDT", Side::Buy, 2280.25, 3.0, Some(own()));
    let (lsn, id) = append(&c, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Working { filled: 1.2, avg_price: 2280.1 });
    report_now(wal, venue, lsn, &id)?;
    venue.set(&id, VenueState::Cancelled { filled_qty: 1.2 });
    report_now(wal, venue, lsn, &id)?;
    say(out, lsn, &c, &id, &format!("venue {v}: partially filled 1.2 @ 2280.1, then cancelled by the strategy; both reported"));

    // A two-leg group: one append_group, one ticket (the first leg's LSN), whole or absent after
    // any crash. Leg 0's fill is reported; leg 1's report is cut off by the crash.
    let legs = [intent("ETHUSDT", Side::Buy, 2280.25, 2.0, None), intent("ETH-PERP", Side::Sell, 2281.75, 2.0, None)];
    let first = wal.append_group(&legs)?.wait()?;
    let ids = [OrderId::derived(log_id, first), OrderId::derived(log_id, first + 1)];
    sc.lsns.extend([first, first + 1]);
    let v0 = venue.receive(ids[0]).unwrap_or(ids[0]);
    let v1 = venue.receive(ids[1]).unwrap_or(ids[1]);
    venue.set(&ids[0], VenueState::Filled { qty: 2.0, avg_price: 2280.3 });
    report_now(wal, venue, first, &ids[0])?;
    venue.set(&ids[1], VenueState::Filled { qty: 2.0, avg_price: 2281.9 });
    sc.in_doubt_at_crash.insert(first + 1);
    let _ = writeln!(
        out,
        "  LSN {first}..={} group of 2 legs (one append_group, one ticket): BUY 2 ETHUSDT @ 2280.25 / SELL 2 ETH-PERP @ 2281.75, derived ids {} / {}:",
        first + 1,
        ids[0],
        ids[1]
    );
    let _ = writeln!(
        out,
        "           venue {v0}: leg 0 filled 2 @ 2280.3, reported; venue {v1}: leg 1 filled 2 @ 2281.9, the report cut off by the crash"
    );

    // D: filled at the venue; the report cut off by the crash.
    let d = intent("AVAXUSDT", Side::Buy, 35.12, 0.5, Some(own()));
    let (lsn, id) = append(&d, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Filled { qty: 0.5, avg_price: 35.11 });
    sc.in_doubt_at_crash.insert(lsn);
    say(out, lsn, &d, &id, &format!("venue {v}: filled 0.5 @ 35.11, the report cut off by the crash"));

    // E: partially filled (reported), then filled; the last report cut off by the crash.
    let e = intent("LINKUSDT", Side::Sell, 14.77, 4.0, None);
    let (lsn, id) = append(&e, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Working { filled: 1.5, avg_price: 14.78 });
    report_now(wal, venue, lsn, &id)?;
    venue.set(&id, VenueState::Filled { qty: 4.0, avg_price: 14.775 });
    sc.in_doubt_at_crash.insert(lsn);
    say(
        out,
        lsn,
        &e,
        &id,
        &format!("venue {v}: partially filled 1.5 @ 14.78 (reported), then filled 4 @ 14.775, that report cut off by the crash"),
    );

    // F: durable, but the crash comes before it is sent.
    let f = intent("XRPUSDT", Side::Buy, 0.6123, 10.0, Some(own()));
    let (lsn, id) = append(&f, &mut sc)?;
    sc.in_doubt_at_crash.insert(lsn);
    say(out, lsn, &f, &id, "durable, but the crash comes before it is sent");

    // G: rejected; the report cut off by the crash.
    let g = intent("DOGEUSDT", Side::Sell, 0.0912, 1000.0, None);
    let (lsn, id) = append(&g, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Rejected { reason: 103 });
    sc.in_doubt_at_crash.insert(lsn);
    say(out, lsn, &g, &id, &format!("venue {v}: rejected (reason 103), the report cut off by the crash"));

    // H: partially filled (reported); the venue cancels the rest when the session drops.
    let h = intent("ADAUSDT", Side::Buy, 0.5871, 100.0, Some(own()));
    let (lsn, id) = append(&h, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Working { filled: 40.0, avg_price: 0.587 });
    report_now(wal, venue, lsn, &id)?;
    venue.set(&id, VenueState::Cancelled { filled_qty: 40.0 });
    sc.in_doubt_at_crash.insert(lsn);
    say(
        out,
        lsn,
        &h,
        &id,
        &format!("venue {v}: partially filled 40 @ 0.587 (reported); cancels the rest when the session drops (cancel on disconnect)"),
    );

    // I: partially filled (reported) and still working: stays in doubt.
    let i = intent("BTCUSDT", Side::Buy, 43240.0, 0.8, Some(own()));
    let (lsn, id) = append(&i, &mut sc)?;
    let v = venue.receive(id).unwrap_or(id);
    venue.set(&id, VenueState::Working { filled: 0.3, avg_price: 43239.5 });
    report_now(wal, venue, lsn, &id)?;
    sc.in_doubt_at_crash.insert(lsn);
    sc.working.insert(lsn);
    say(out, lsn, &i, &id, &format!("venue {v}: partially filled 0.3 @ 43239.5 (reported), still working"));
    debug_assert_eq!(sc.lsns.len() as u64, SCENARIO_INTENTS);
    Ok(sc)
}

#[derive(Debug, Default)]
struct ExchangeCounts {
    executed: u64,
    aborted: u64,
    unresolved: u64,
    /// Of the unresolved, those with a partial fill reported before the crash.
    partial: u64,
}

/// An order a strategy thread hands the exchange once its intent is durable.
struct Sent {
    lsn: Lsn,
    /// The id the strategy supplied, or None: the exchange sends `OrderId::derived(log id, lsn)`.
    cl_ord_id: Option<OrderId>,
    qty: f64,
    price: f64,
}

fn exchange(wal: &Wal, rx: mpsc::Receiver<Sent>, mut venue: Venue) -> Result<(ExchangeCounts, Venue), WalError> {
    let log_id = wal.log_id();
    let mut c = ExchangeCounts::default();
    let mut pending: VecDeque<Ticket> = VecDeque::with_capacity(EXCHANGE_WINDOW);
    for s in rx {
        let id = s.cl_ord_id.unwrap_or_else(|| OrderId::derived(log_id, s.lsn));
        let t = match fate(s.lsn) {
            Fate::Execute => {
                c.executed += 1;
                if venue.receive(id).is_some() {
                    venue.set(&id, VenueState::Filled { qty: s.qty, avg_price: s.price });
                }
                wal.mark_executed(s.lsn)?
            }
            Fate::Abort => {
                // Never sent: the venue never sees it.
                c.aborted += 1;
                wal.mark_aborted(s.lsn)?
            }
            Fate::Unresolved => {
                c.unresolved += 1;
                let Some(venue_id) = venue.receive(id) else { continue };
                let (reported, filled, avg_price) = working_fills(s.lsn, s.qty, s.price);
                venue.set(&id, VenueState::Working { filled, avg_price });
                if reported == 0.0 {
                    continue;
                }
                c.partial += 1;
                let status = Status::PartiallyFilled { qty: reported, avg_price };
                wal.report(&Outcome { intent_lsn: s.lsn, status, venue_order_id: Some(venue_id), ts_ns: now_ns() })?
            }
        };
        pending.push_back(t);
        // Reap resolved outcome tickets; wait for the oldest only when the window is full.
        while pending.front().is_some_and(|t| t.is_done()) || pending.len() > EXCHANGE_WINDOW {
            pending.pop_front().expect("non-empty").wait()?;
        }
    }
    for t in pending {
        t.wait()?;
    }
    Ok((c, venue))
}

/// The device floor as a plain synchronous write sees it: `samples` latencies of one 4 KiB
/// `pwrite` to a file opened `O_DIRECT | O_DSYNC`, at queue depth 1, at sequential offsets of a
/// zero-filled, fsynced scratch file in `dir` (at most 8 MiB, offsets wrap) removed afterwards.
/// Safe std calls only; the bench's io_uring probes
/// (`tradewal-bench`, device section) measure the same write through the ring.
fn measure_floor(dir: &Path, samples: usize) -> std::io::Result<Vec<Duration>> {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    const BLOCK: usize = 4096;
    let blocks = samples.clamp(1, 2048);
    let path = dir.join(format!(".tradewal-measure-demo-{}.tmp", std::process::id()));
    let measured = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(&vec![0u8; blocks * BLOCK])?;
        f.sync_all()?;
        drop(f);
        let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT | libc::O_DSYNC).open(&path)?;
        // O_DIRECT wants a 4096-aligned buffer: the aligned 4 KiB inside an 8 KiB allocation.
        let mut raw = vec![0u8; 2 * BLOCK];
        let at = raw.as_ptr().align_offset(BLOCK);
        let block = &mut raw[at..at + BLOCK];
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples {
            block[0] = i as u8;
            let offset = ((i % blocks) * BLOCK) as u64;
            let t0 = Instant::now();
            let n = file.write_at(block, offset)?;
            let elapsed = t0.elapsed();
            if n != BLOCK {
                return Err(std::io::Error::other(format!("short write: {n} of {BLOCK} bytes")));
            }
            lat.push(elapsed);
        }
        Ok(lat)
    })();
    let _ = std::fs::remove_file(&path);
    measured
}

fn percentile_us(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_nanos() as f64 / 1000.0
}

/// `tradewal demo`.
pub fn run(dir: &Path, intents: u64, producers: usize) -> CmdResult {
    prepare_dir(dir)?;
    let mut out = String::new();
    let config = WalConfig::new(dir);
    let wal = Wal::open(config.clone()).map_err(|e| fail(&format!("opening {}", dir.display()), e))?;
    let log_id = wal.log_id();
    let _ = writeln!(out, "tradewal demo: {} intents from {} strategy threads into {}", intents, producers, dir.display());
    let _ = writeln!(out, "backend: {}", wal.backend());
    let _ = writeln!(out, "log id: {log_id:016x}");

    // The scenario, then the strategy threads: every intent counts in `intents`.
    let mut venue = Venue::default();
    let sc = if intents >= SCENARIO_INTENTS {
        scenario(&wal, &mut venue, &mut out).map_err(|e| fail("scenario", e))?
    } else {
        let _ = writeln!(out, "scenario skipped (it needs --intents {SCENARIO_INTENTS} or more)");
        Scenario::default()
    };
    let bulk = intents - sc.lsns.len() as u64;
    let _ = writeln!(
        out,
        "strategy threads: {bulk} intents, tag {THREAD_TAG_BASE} + thread; even threads supply their own client order ids (<log id>-s<thread>-<counter>), odd threads send derived ones (<log id>-<LSN hex>)"
    );
    print!("{out}");
    let _ = std::io::stdout().flush();
    out.clear();

    let symbols: Vec<Symbol> = SYMBOLS.iter().map(|s| Symbol::new(s).expect("valid demo symbol")).collect();
    let pb = crate::scan::progress(Some(bulk), "appending");
    let (tx, rx) = mpsc::channel::<Sent>();
    let started = Instant::now();
    let own_counter_start = wal.recovered().next_lsn;
    let (hist, counts, venue) = std::thread::scope(|s| -> Result<(Histogram<u64>, ExchangeCounts, Venue), Failure> {
        let wal = &wal;
        let ex = s.spawn(move || exchange(wal, rx, venue));
        let mut handles = Vec::new();
        for p in 0..producers {
            let n = bulk / producers as u64 + u64::from((p as u64) < bulk % producers as u64);
            let tx = tx.clone();
            let symbols = &symbols;
            let pb = &pb;
            handles.push(s.spawn(move || -> Result<Histogram<u64>, WalError> {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
                let mut rng = Rng(0x243F_6A88_85A3_08D3 ^ ((p as u64 + 1) << 17));
                // Even threads supply their own ids: log id, thread, a counter starting at the
                // session's first LSN (see the scenario).
                let mut counter = own_counter_start;
                for k in 0..n {
                    let cl_ord_id = (p % 2 == 0).then(|| {
                        counter += 1;
                        order_id(format_args!("{log_id:016x}-s{p}-{:x}", counter - 1))
                    });
                    let intent = make_intent(&mut rng, symbols, cl_ord_id, THREAD_TAG_BASE + p as u32);
                    let t0 = Instant::now();
                    let lsn = wal.append(&intent)?.wait()?; // durable now (I1): only now is it sent
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                    // The exchange may have stopped on an error; the producer's own error wins.
                    let _ = tx.send(Sent { lsn, cl_ord_id, qty: intent.qty, price: intent.price });
                    if k % 64 == 63 {
                        pb.inc(64);
                    }
                }
                pb.inc(n % 64);
                Ok(h)
            }));
        }
        drop(tx);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(h)) => hist.add(h).map_err(|e| fail("merging histograms", e))?,
                Ok(Err(e)) => {
                    first_err.get_or_insert(fail("append", e));
                }
                Err(_) => {
                    first_err.get_or_insert(Failure::usage("a strategy thread panicked"));
                }
            }
        }
        let (counts, venue) = match ex.join() {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(first_err.unwrap_or_else(|| fail("exchange", e))),
            Err(_) => return Err(Failure::usage("the exchange thread panicked")),
        };
        match first_err {
            Some(e) => Err(e),
            None => Ok((hist, counts, venue)),
        }
    })?;
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    if venue.duplicates > 0 {
        return Err(Failure::usage(format!("check failed: the venue refused {} duplicate client order ids", venue.duplicates)));
    }
    let stats = wal.stats();
    let backend = wal.backend().to_string();
    let durable = wal.durable_lsn();
    let _ = writeln!(
        out,
        "appended {} intents in {:.2} s; exchange: {} executed, {} aborted, {} left unresolved (working at the venue, {} partly filled and reported)",
        intents,
        elapsed.as_secs_f64(),
        counts.executed,
        counts.aborted,
        counts.unresolved,
        counts.partial
    );

    // The crash: every ticket above was waited for, so everything is durable; drop, no close.
    drop(wal);
    let _ = writeln!(out, "crash: dropped the log without close (durable LSN {durable})");

    let wal = Wal::open(config).map_err(|e| fail(&format!("reopening {}", dir.display()), e))?;
    let rec = wal.recovered().clone();
    let _ = writeln!(
        out,
        "reopened: {} records recovered, next LSN {}, torn tail: {}",
        rec.counts.total(),
        rec.next_lsn,
        rec.torn_tail.as_ref().map_or("none".to_string(), |t| format!("{} at offset {}", t.file, t.offset))
    );
    // In doubt now: what the exchange left working, and the scenario's intents without a terminal
    // outcome in the log.
    let expected_at_reopen =
        |lsn: Lsn| if sc.lsns.contains(&lsn) { sc.in_doubt_at_crash.contains(&lsn) } else { fate(lsn) == Fate::Unresolved };
    let matches = rec.in_doubt.len() as u64 == counts.unresolved + sc.in_doubt_at_crash.len() as u64
        && rec.in_doubt.iter().all(|d| expected_at_reopen(d.lsn));
    if !matches {
        print!("{out}");
        return Err(Failure::usage(format!(
            "check failed: {} in doubt after recovery, but the exchange left {} unresolved and the scenario {}",
            rec.in_doubt.len(),
            counts.unresolved,
            sc.in_doubt_at_crash.len()
        )));
    }
    let _ = writeln!(
        out,
        "in doubt at reopen: {} intents ({} with a partial fill logged): the {} the exchange left unresolved and {} of the scenario, the same LSNs: ok",
        rec.in_doubt.len(),
        rec.in_doubt.iter().filter(|d| d.fill.is_some()).count(),
        counts.unresolved,
        sc.in_doubt_at_crash.len()
    );

    // Reconciliation: for every in-doubt intent, ask the venue by client order id (the one the
    // intent carries, or the one derived from the log id and its LSN) and log what it says.
    let _ = writeln!(out, "reconciliation (recover → ask the venue by client order id → report the outcome):");
    let mut tickets = Vec::new();
    let (mut terminal, mut aborted, mut partial, mut unchanged, mut for_a_human) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut bulk_partial, mut bulk_unchanged) = (0u64, 0u64);
    for d in &rec.in_doubt {
        let id = d.intent.cl_ord_id.unwrap_or_else(|| OrderId::derived(log_id, d.lsn));
        let logged = d.fill.map_or(0.0, |f| f.qty);
        let answer = venue.query(&id);
        let action = match answer {
            // The venue never got it: it was never sent, and this process can no longer send it.
            None if d.fill.is_none() => {
                tickets.push(wal.mark_aborted(d.lsn).map_err(|e| fail("mark_aborted", e))?);
                aborted += 1;
                "mark_aborted (never sent)".to_string()
            }
            None => {
                for_a_human += 1;
                "unknown to the venue after a logged fill: left in doubt for a human".to_string()
            }
            Some(o) => match o.state.status() {
                Some(status) if status.is_terminal() || status.filled_qty() > logged => {
                    let outcome = Outcome { intent_lsn: d.lsn, status, venue_order_id: Some(o.venue_id), ts_ns: now_ns() };
                    tickets.push(wal.report(&outcome).map_err(|e| fail("report", e))?);
                    if status.is_terminal() {
                        terminal += 1;
                    } else {
                        partial += 1;
                    }
                    format!("report {}", status.as_str())
                }
                _ => {
                    unchanged += 1;
                    "nothing new: stays in doubt".to_string()
                }
            },
        };
        if sc.lsns.contains(&d.lsn) {
            let fill = d.fill.map_or(String::new(), |f| format!(", logged fill {}", f.qty));
            let said = answer.map_or("unknown order id".to_string(), |o| format!("{}: {}", o.venue_id, o.state));
            let _ = writeln!(out, "  LSN {:<6} {id}{fill}: venue says {said} → {action}", d.lsn);
        } else if action.starts_with("report") {
            bulk_partial += 1;
        } else {
            bulk_unchanged += 1;
        }
    }
    let _ = writeln!(
        out,
        "  + {} intents of the strategy threads, all working at the venue: {} with a fill newer than the log → report partially_filled, {} nothing new",
        bulk_partial + bulk_unchanged,
        bulk_partial,
        bulk_unchanged
    );
    for t in tickets {
        t.wait().map_err(|e| fail("reconciliation outcome", e))?;
    }
    let _ = writeln!(
        out,
        "reconciled: {} terminal outcomes logged ({} of them mark_aborted), {} partial fills, {} unchanged, {} left for a human; all durable",
        terminal + aborted,
        aborted,
        partial,
        unchanged,
        for_a_human
    );
    wal.close().map_err(|e| fail("closing", e))?;

    // What the log says is in doubt now (`tradewal recover DIR` reads the same).
    let left = tradewal::read_log(dir, |_, _| {}).map_err(|e| fail(&format!("reading {}", dir.display()), e))?.state.in_doubt;
    let _ = writeln!(
        out,
        "in doubt after the crash: {} intents left after reconciliation, the orders the venue is still working (first {} below, as `tradewal recover` prints them)",
        left.len(),
        SHOW_IN_DOUBT.min(left.len())
    );
    let mut lines = Vec::new();
    for d in left.iter().take(SHOW_IN_DOUBT) {
        write_in_doubt_line(&mut lines, d).map_err(|e| fail("formatting", e))?;
    }
    out.push_str(&String::from_utf8_lossy(&lines));
    let still_working = |lsn: Lsn| if sc.lsns.contains(&lsn) { sc.working.contains(&lsn) } else { fate(lsn) == Fate::Unresolved };
    let matches = left.len() as u64 == counts.unresolved + sc.working.len() as u64 && left.iter().all(|d| still_working(d.lsn));
    if !matches {
        print!("{out}");
        return Err(Failure::usage(format!(
            "check failed: {} in doubt after reconciliation, but the venue is working {} + {} orders",
            left.len(),
            counts.unresolved,
            sc.working.len()
        )));
    }
    let _ = writeln!(
        out,
        "check: in-doubt count equals the {} intents the exchange left unresolved plus the scenario's {} still working, and they are the same LSNs: ok",
        counts.unresolved,
        sc.working.len()
    );

    // Export (read-only scan of the closed log).
    let export_path = dir.join(EXPORT_FILE);
    let file = File::create(&export_path).map_err(|e| fail(&format!("creating {}", export_path.display()), e))?;
    let exported = export_to(dir, false, 0, u64::MAX, Box::new(BufWriter::with_capacity(1 << 16, file)), false)?
        .ok_or_else(|| Failure::usage("export output closed"))?;
    let _ = writeln!(out, "exported {} intent lines to {}", exported.lines, export_path.display());
    if exported.lines != intents {
        print!("{out}");
        return Err(Failure::usage(format!("check failed: exported {} intent lines, appended {intents}", exported.lines)));
    }
    if !sc.lsns.is_empty() {
        // The scenario's intents come first in the log: its lines are the export's first ones.
        let _ = writeln!(out, "the scenario's lines (ids, tag, group, status, fills, venue order ids):");
        let f = File::open(&export_path).map_err(|e| fail(&format!("reading {}", export_path.display()), e))?;
        for line in BufReader::new(f).lines().take(sc.lsns.len()) {
            let line = line.map_err(|e| fail(&format!("reading {}", export_path.display()), e))?;
            let _ = writeln!(out, "{line}");
        }
    }

    // Device floor, same run, same directory.
    let floor = match measure_floor(dir, FLOOR_SAMPLES) {
        Ok(mut v) => {
            v.sort();
            Some((percentile_us(&v, 0.50), percentile_us(&v, 0.99)))
        }
        Err(e) => {
            let _ = writeln!(out, "device floor not measured: {e}");
            None
        }
    };

    let hgrm_path = dir.join(HGRM_FILE);
    std::fs::write(&hgrm_path, tradewal_cli::hgrm::render(&hist, 1000.0))
        .map_err(|e| fail(&format!("writing {}", hgrm_path.display()), e))?;

    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let _ = writeln!(out);
    let _ = writeln!(out, "latency append→durable (each strategy thread appends, then waits its ticket; QD1 per thread):");
    let _ = writeln!(
        out,
        "  p50 {:.1} µs   p90 {:.1} µs   p99 {:.1} µs   p99.9 {:.1} µs   max {:.1} µs   ({} samples)",
        us(0.50),
        us(0.90),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0,
        hist.len()
    );
    if let Some((p50, p99)) = floor {
        let _ = writeln!(
            out,
            "  device floor (one 4 KiB O_DIRECT O_DSYNC pwrite, QD1, {FLOOR_SAMPLES} samples, same run): p50 {p50:.1} µs   p99 {p99:.1} µs"
        );
    }
    let _ = writeln!(out, "throughput: {:.0} intents/s durable ({} producers)", bulk as f64 / elapsed.as_secs_f64(), producers);
    let _ = writeln!(
        out,
        "group commit: {} batches for {} records ({:.2} records/batch), {} bytes written",
        stats.batches,
        stats.records,
        if stats.batches > 0 { stats.records as f64 / stats.batches as f64 } else { 0.0 },
        stats.bytes
    );
    let _ = writeln!(out, "backend: {backend}");
    let _ = writeln!(out, "histogram: {} (HdrHistogram percentile distribution, µs)", hgrm_path.display());
    let _ = writeln!(out, "next: tradewal inspect {0}; tradewal recover {0}; tradewal export {0} | jq .", dir.display());
    print!("{out}");
    let _ = std::io::stdout().flush();
    Ok(())
}

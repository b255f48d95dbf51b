//! The code of README.md, "Reconciling after a crash", runnable:
//! `cargo run -p tradewal --example reconcile [-- DIR]` (default `./tradewal-reconcile-example`,
//! removed first; a disk file system: tradewal writes with O_DIRECT).
//!
//! It appends intents with a client order id of the strategy's own and with derived ones, a
//! two-leg group and a partial fill, sends them to a small simulated venue, "crashes" (drops the
//! log without `close`) before every venue report is logged, reopens, and reconciles: recover →
//! ask the venue by client order id → log the outcome. It checks what stays in doubt and exits 0.
//! `cli/tests/demo_v2.rs` checks that README's snippets are this file's code.
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use tradewal::{Lsn, OrderId, Outcome, Side, Status, Symbol, TradeIntent, Wal, WalConfig, WalError};

/// What the venue's order status request (FIX OrderStatusRequest, a REST order query) returns.
#[derive(Debug, Clone, Copy)]
pub enum VenueAnswer {
    /// No order with this client order id: it never arrived.
    Unknown,
    /// The order: its venue id, its status (`None` while it works with nothing filled yet) and
    /// the venue's time of that status.
    Order { venue_order_id: OrderId, status: Option<Status>, ts_ns: i64 },
}

/// For every intent in doubt after `Wal::open`: ask the venue by client order id, log what it
/// says. Returns the LSNs still in doubt (orders the venue is working, or for a human).
pub fn reconcile(wal: &Wal, ask_venue: impl Fn(&OrderId) -> VenueAnswer) -> Result<Vec<Lsn>, WalError> {
    let mut tickets = Vec::new();
    let mut still_in_doubt = Vec::new();
    for d in &wal.recovered().in_doubt {
        // The id the order was sent with: the intent's own, or the one derived from (log id, LSN).
        let id = d.intent.cl_ord_id.unwrap_or_else(|| OrderId::derived(wal.log_id(), d.lsn));
        // d.fill: the latest partial fill logged for it (cumulative), if any.
        let logged_qty = d.fill.map_or(0.0, |f| f.qty);
        match ask_venue(&id) {
            // It never reached the venue, and this process will not send it now: never sent.
            VenueAnswer::Unknown if d.fill.is_none() => tickets.push(wal.mark_aborted(d.lsn)?),
            // Filled, rejected, cancelled, or filled further than logged: log it.
            VenueAnswer::Order { venue_order_id, status: Some(status), ts_ns }
                if status.is_terminal() || status.filled_qty() > logged_qty =>
            {
                let outcome = Outcome { intent_lsn: d.lsn, status, venue_order_id: Some(venue_order_id), ts_ns };
                tickets.push(wal.report(&outcome)?);
                if !status.is_terminal() {
                    still_in_doubt.push(d.lsn); // a partial fill: the order still works
                }
            }
            // Working with nothing new, or a logged fill the venue does not know (for a human).
            _ => still_in_doubt.push(d.lsn),
        }
    }
    for t in tickets {
        t.wait()?; // every outcome durable
    }
    Ok(still_in_doubt)
}

/// Appends `intent` without an id of its own and returns (LSN, the id to send it with).
pub fn append_with_derived_id(wal: &Wal, intent: &TradeIntent) -> Result<(Lsn, OrderId), WalError> {
    let lsn = wal.append(intent)?.wait()?; // durable: only now may the order go out
    let cl_ord_id = OrderId::derived(wal.log_id(), lsn); // "<log id, 16 hex>-<lsn, hex>"
    Ok((lsn, cl_ord_id))
}

/// A strategy's own ids, known before the append: log id, strategy name, a counter.
pub struct OwnIds {
    log_id: u64,
    strategy: &'static str,
    next: u64,
}

impl OwnIds {
    /// The counter starts at the session's first LSN: every id a session sends belongs to a
    /// durable intent, which takes an LSN, so a later session starts above every value used.
    pub fn new(wal: &Wal, strategy: &'static str) -> OwnIds {
        OwnIds { log_id: wal.log_id(), strategy, next: wal.recovered().next_lsn }
    }

    /// The next id (at most 36 bytes: a short strategy name).
    pub fn next_id(&mut self) -> Result<OrderId, WalError> {
        let id = OrderId::new(&format!("{:016x}-{}-{:x}", self.log_id, self.strategy, self.next))?;
        self.next += 1;
        Ok(id)
    }
}

/// A two-leg order: both legs durable in one batch, or neither after any crash.
pub fn append_spread(wal: &Wal, buy: TradeIntent, sell: TradeIntent) -> Result<[(Lsn, OrderId); 2], WalError> {
    let first = wal.append_group(&[buy, sell])?.wait()?; // the ticket resolves to leg 0's LSN
                                                         // Leg i has LSN first + i (recovery and export show "group": first on both).
    Ok([0, 1].map(|i| (first + i, OrderId::derived(wal.log_id(), first + i))))
}

/// README's library quick start: compiled, not run (it opens `./wal`).
#[rustfmt::skip]
#[allow(dead_code, unused_variables)]
fn quick_start() -> Result<(), Box<dyn std::error::Error>> {
use tradewal::{Wal, WalConfig, TradeIntent, Side, Symbol};

let wal = Wal::open(WalConfig::new("./wal"))?;          // recovers, then starts a session
for d in &wal.recovered().in_doubt {
    // d.lsn, d.intent, d.fill: ask the venue, then log what it says (next section)
}
let intent = TradeIntent { ts_ns: 1, symbol: Symbol::new("BTCUSDT")?, side: Side::Buy,
    price: 43250.5, qty: 0.25, stop_loss: 42800.0, take_profit: 44100.0,
    cl_ord_id: None, tag: None, group: None };
let lsn = wal.append(&intent)?.wait()?;                 // durable on the device now
// ... send the order, then:
wal.mark_executed(lsn)?.wait()?;
wal.close()?;
Ok(())
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

fn intent(sym: &str, side: Side, price: f64, qty: f64, cl_ord_id: Option<OrderId>) -> TradeIntent {
    TradeIntent {
        ts_ns: now_ns(),
        symbol: Symbol::new(sym).unwrap(),
        side,
        price,
        qty,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id,
        tag: Some(7),
        group: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "./tradewal-reconcile-example".into()));
    let _ = std::fs::remove_dir_all(&dir);
    // The simulated venue: what it answers, by client order id.
    let mut venue: HashMap<OrderId, VenueAnswer> = HashMap::new();
    let order = |n: u32, status: Option<Status>| VenueAnswer::Order {
        venue_order_id: OrderId::new(&format!("V{n}")).unwrap(),
        status,
        ts_ns: now_ns(),
    };

    let wal = Wal::open(WalConfig::new(&dir))?;
    println!("log id {:016x}", wal.log_id());
    let mut ids = OwnIds::new(&wal, "mm");

    // 1. Own id: partially filled (logged), then filled; the crash cuts off the fill's report.
    let a = ids.next_id()?;
    let lsn_a = wal.append(&intent("BTCUSDT", Side::Buy, 43250.5, 1.0, Some(a)))?.wait()?;
    let partial = Status::PartiallyFilled { qty: 0.4, avg_price: 43250.0 };
    wal.report(&Outcome { intent_lsn: lsn_a, status: partial, venue_order_id: Some(OrderId::new("V1")?), ts_ns: now_ns() })?.wait()?;
    venue.insert(a, order(1, Some(Status::Filled { qty: 1.0, avg_price: 43250.3 })));

    // 2. Derived id: rejected, not logged.
    let (lsn_b, b) = append_with_derived_id(&wal, &intent("SOLUSDT", Side::Sell, 98.4, 5.0, None))?;
    venue.insert(b, order(2, Some(Status::Rejected { reason: 201 })));

    // 3. A spread: leg 0 filled (logged), leg 1 still working, nothing filled.
    let legs = append_spread(&wal, intent("ETHUSDT", Side::Buy, 2280.25, 2.0, None), intent("ETH-PERP", Side::Sell, 2281.75, 2.0, None))?;
    venue.insert(legs[0].1, order(3, Some(Status::Filled { qty: 2.0, avg_price: 2280.3 })));
    venue.insert(legs[1].1, order(4, None));
    wal.report(&Outcome {
        intent_lsn: legs[0].0,
        status: Status::Filled { qty: 2.0, avg_price: 2280.3 },
        venue_order_id: Some(OrderId::new("V3")?),
        ts_ns: now_ns(),
    })?
    .wait()?;

    // 4. Own id, durable, never sent.
    let lsn_d = wal.append(&intent("XRPUSDT", Side::Buy, 0.6123, 10.0, Some(ids.next_id()?)))?.wait()?;

    drop(wal); // the crash: no close
    let wal = Wal::open(WalConfig::new(&dir))?;
    let in_doubt: Vec<Lsn> = wal.recovered().in_doubt.iter().map(|d| d.lsn).collect();
    println!("in doubt after the crash: {in_doubt:?}");
    assert_eq!(in_doubt, [lsn_a, lsn_b, legs[1].0, lsn_d]);
    assert_eq!(wal.recovered().in_doubt[0].fill.map(|f| f.qty), Some(0.4), "the latest partial fill comes back");

    let still = reconcile(&wal, |id| venue.get(id).copied().unwrap_or(VenueAnswer::Unknown))?;
    println!("still in doubt after reconciliation (working at the venue): {still:?}");
    assert_eq!(still, [legs[1].0]);
    wal.close()?;

    let left: Vec<Lsn> = tradewal::read_log(&dir, |_, _| {})?.state.in_doubt.iter().map(|d| d.lsn).collect();
    assert_eq!(left, still, "the log agrees");
    println!("ok");
    Ok(())
}

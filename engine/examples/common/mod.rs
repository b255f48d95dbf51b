//! What the probe examples share.
use tradewal::{Side, Symbol, TradeIntent};

/// The intent every probe appends (its `ts_ns` set per append).
pub fn probe_intent() -> TradeIntent {
    TradeIntent {
        ts_ns: 1,
        symbol: Symbol::new("BTCUSDT").unwrap(),
        side: Side::Buy,
        price: 1.0,
        qty: 1.0,
        stop_loss: 0.0,
        take_profit: 0.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

//! Intent fixtures the test crates share.

use tradewal_codec::TradeIntent;

/// Bit-exact intent equality (floats compared by their bits, so `-0.0 != 0.0` and a NaN equals
/// itself): what a round trip through the log must preserve.
pub fn same_intent(a: &TradeIntent, b: &TradeIntent) -> bool {
    a.ts_ns == b.ts_ns
        && a.symbol == b.symbol
        && a.side == b.side
        && a.price.to_bits() == b.price.to_bits()
        && a.qty.to_bits() == b.qty.to_bits()
        && a.stop_loss.to_bits() == b.stop_loss.to_bits()
        && a.take_profit.to_bits() == b.take_profit.to_bits()
}

//! tradewal benchmarks (filled by the bench issue).
#![deny(missing_docs)]

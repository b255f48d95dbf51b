//! The library half of the `tradewal` package: report formats shared by the CLI's `demo` and the
//! benchmark crate (which depends on this library, never the other way round, so installing the
//! CLI does not build the benchmark's peers).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod hgrm;

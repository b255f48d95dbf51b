//! # tradewal-bench
//!
//! Measures tradewal against the device floor and its peers in one run, alternating systems in
//! rounds so that a noisy neighbour hurts every system alike, and writes reports: a text table
//! per workload (with the machine on top), `.hgrm` percentile files (microseconds), an SVG of
//! latency percentile curves per workload and a JSON summary.
//!
//! Latency is *append → durable*: for tradewal, `append` until its ticket resolves; for a peer,
//! the call that writes and syncs. Systems (see [`systems`], [`device`], [`uring_probe`], [`tw`]):
//! the device floor (one 4 KiB O_DIRECT `RWF_DSYNC` write at queue depth 1, no framing, with a
//! sleeping and with a spinning waiter), the
//! seed's JSONL sketch (buffered line + `fdatasync`), SQLite (WAL, `synchronous=FULL`), okaywal,
//! and tradewal with `Durability::Dsync` and `Durability::LinkedFdatasync`.
//!
//! Entry point: [`run`]. Modes: [`BenchOptions::quick`] (under a minute), [`BenchOptions::full`],
//! and [`BenchOptions::smoke`] (tiny counts, for tests).
#![deny(missing_docs)]
// The lint below is allowed only on uring_probe.rs (the ring pushes), each block with a SAFETY line.
#![deny(unsafe_code)]

pub mod device;
pub mod disk;
pub use tradewal_cli::hgrm;
pub mod machine;
pub mod params;
pub mod recorder;
pub mod report;
mod ship;
pub mod systems;
pub mod tw;
#[allow(unsafe_code)]
pub mod uring_probe;
mod workloads;

pub use report::{Report, Row, Target, Workload};

pub use params::{BenchOptions, Params, DEFAULT_DIR, DEFAULT_OUT};

/// Runs every workload and returns the report (also written to `opts.out` when set).
pub fn run(opts: BenchOptions) -> anyhow::Result<Report> {
    workloads::run(opts)
}

//! Latency recording with coordinated-omission correction.
//!
//! In an open-loop run every operation has an *intended* start time from the schedule
//! (`start + i / rate`). If the system stalls, the load generator falls behind and issues the
//! delayed operations late; timing them from their actual issue would hide the stall
//! (coordinated omission). [`OpenLoopRecorder`] records `completion - intended`, so an
//! operation that waited behind a stall is charged for the wait.

use hdrhistogram::Histogram;

/// Highest latency a histogram tracks: 60 s in ns (larger values are clamped).
pub const HIGHEST_NS: u64 = 60_000_000_000;

/// A fresh histogram for nanosecond latencies (3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds")
}

/// Records `value_ns` clamped into the histogram's range.
pub fn record(hist: &mut Histogram<u64>, value_ns: u64) {
    let v = value_ns.clamp(1, HIGHEST_NS);
    hist.record(v).expect("value clamped into range");
}

/// The open-loop schedule: operation `i` is intended to start at `start_ns + i * interval_ns`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Start of the run, ns on the run's clock.
    pub start_ns: u64,
    /// Time between intended starts, ns (1e9 / rate).
    pub interval_ns: f64,
}

impl Schedule {
    /// A schedule of `rate_per_s` operations per second from `start_ns`.
    pub fn new(start_ns: u64, rate_per_s: f64) -> Self {
        assert!(rate_per_s > 0.0, "rate must be positive");
        Schedule { start_ns, interval_ns: 1e9 / rate_per_s }
    }

    /// Intended start of operation `i`.
    pub fn intended_ns(&self, i: u64) -> u64 {
        self.start_ns + (i as f64 * self.interval_ns) as u64
    }
}

/// Records open-loop latencies measured from intended start times.
#[derive(Debug)]
pub struct OpenLoopRecorder {
    /// Latency from intended start to completion.
    pub corrected: Histogram<u64>,
    /// Latency from actual issue to completion (what a naive harness would report).
    pub uncorrected: Histogram<u64>,
    /// Largest lag between intended and actual issue, ns (how far the generator fell behind).
    pub max_issue_lag_ns: u64,
}

impl Default for OpenLoopRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenLoopRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        OpenLoopRecorder { corrected: new_histogram(), uncorrected: new_histogram(), max_issue_lag_ns: 0 }
    }

    /// Records one operation: intended start, actual issue, completion (ns, same clock).
    pub fn record(&mut self, intended_ns: u64, issued_ns: u64, completed_ns: u64) {
        let issued_ns = issued_ns.max(intended_ns);
        let completed_ns = completed_ns.max(issued_ns);
        record(&mut self.corrected, completed_ns - intended_ns);
        record(&mut self.uncorrected, completed_ns - issued_ns);
        self.max_issue_lag_ns = self.max_issue_lag_ns.max(issued_ns - intended_ns);
    }

    /// Operations recorded.
    pub fn len(&self) -> u64 {
        self.corrected.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.corrected.is_empty()
    }
}

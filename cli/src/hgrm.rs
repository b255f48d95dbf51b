//! HdrHistogram percentile-distribution text (`.hgrm`), the format of Java's
//! `outputPercentileDistribution` that the public plotter
//! (<https://hdrhistogram.github.io/HdrHistogram/plotFiles.html>) reads:
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!       85.311 0.000000000000          1           1.00
//!       ...
//!      412.671 1.000000000000       1000
//! #[Mean    =       90.123, StdDeviation   =        5.432]
//! #[Max     =      412.671, Total count    =         1000]
//! #[Buckets =           27, SubBuckets     =         2048]
//! ```
//!
//! Histograms here record nanoseconds; files carry microseconds (the unit is in the file name).

use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// Ticks per half distance of the percentile iteration (Java's default is 5).
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Renders `hist` (recorded in ns) as `.hgrm` text with values divided by `scale`
/// (1000.0 for microseconds).
pub fn render(hist: &Histogram<u64>, scale: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let total = hist.len();
    if total > 0 {
        let mut cumulative = 0u64;
        for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            cumulative += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = hist.highest_equivalent(v.value_iterated_to()) as f64 / scale;
            if q < 1.0 {
                let _ = writeln!(out, "{:>12.3} {:>2.12} {:>10} {:>14.2}", value, q, cumulative, 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{:>12.3} {:>2.12} {:>10}", value, q, cumulative);
            }
        }
        // The iterator may stop at the last recorded value before reaching quantile 1.0 with
        // the full count; make the final row say "everything" as the format requires.
        if cumulative != total {
            let value = hist.highest_equivalent(hist.max()) as f64 / scale;
            let _ = writeln!(out, "{:>12.3} {:>2.12} {:>10}", value, 1.0, total);
        }
    }
    let _ = writeln!(out, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", hist.mean() / scale, hist.stdev() / scale);
    let _ = writeln!(out, "#[Max     = {:>12.3}, Total count    = {:>12}]", hist.highest_equivalent(hist.max()) as f64 / scale, total);
    let _ = writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", hist.buckets(), sub_bucket_count(hist.sigfig()));
    out
}

/// One parsed data row of a `.hgrm` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Value (in the file's unit).
    pub value: f64,
    /// Percentile as a fraction 0..=1.
    pub percentile: f64,
    /// Count of values at or below `value`.
    pub total_count: u64,
    /// `1/(1-percentile)`; `None` on the last row (infinite).
    pub inverse: Option<f64>,
}

/// Why `.hgrm` text did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub what: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

/// Parses the data rows of `.hgrm` text (header, blank and `#` lines are skipped).
pub fn parse(text: &str) -> Result<Vec<Row>, ParseError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("Value") {
            continue;
        }
        let err = |what: &str| ParseError { line: i + 1, what: what.to_string() };
        let cols: Vec<&str> = t.split_whitespace().collect();
        if cols.len() != 3 && cols.len() != 4 {
            return Err(err("expected 3 or 4 columns"));
        }
        let value = cols[0].parse::<f64>().map_err(|_| err("bad value"))?;
        let percentile = cols[1].parse::<f64>().map_err(|_| err("bad percentile"))?;
        let total_count = cols[2].parse::<u64>().map_err(|_| err("bad total count"))?;
        let inverse = match cols.get(3) {
            Some(c) => Some(c.parse::<f64>().map_err(|_| err("bad 1/(1-percentile)"))?),
            None => None,
        };
        rows.push(Row { value, percentile, total_count, inverse });
    }
    Ok(rows)
}

/// Sub-buckets per bucket for `sigfig` significant digits (what Java prints as `SubBuckets`).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest_single_unit = 2.0 * 10f64.powi(i32::from(sigfig));
    1u64 << (largest_single_unit.log2().ceil() as u32)
}

//! What one run measures and where: [`Params`] (sizes and durations) and [`BenchOptions`].

use std::path::PathBuf;
use std::time::Duration;

/// Sizes and durations of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Params {
    /// Name of the mode (`quick`, `full`, `smoke`).
    pub mode: String,
    /// Rounds the alternating workloads are split into.
    pub rounds: u32,
    /// QD1: most samples per system (over all rounds).
    pub qd1_samples: u64,
    /// QD1 right after open: appends of the long run (the short one is the first 2 000).
    pub qd1_open_long: u64,
    /// QD1 and closed loop: time budget per system per round.
    pub slice: Duration,
    /// Closed loop: producer counts.
    pub producers: Vec<usize>,
    /// Open loop: offered rates tried in order (stops after the first one not sustained).
    pub open_rates: Vec<f64>,
    /// Open loop: duration per rate.
    pub open_duration: Duration,
    /// Pipelined: appends kept outstanding by the one producer.
    pub pipelined_outstanding: usize,
    /// Pipelined: duration.
    pub pipelined_duration: Duration,
    /// Sequential bandwidth probe: bytes written in total.
    pub bandwidth_bytes: u64,
    /// Rotation: segment size of the small-segment log.
    pub rotation_segment_bytes: u64,
    /// Rotation: offered rate.
    pub rotation_rate: f64,
    /// Rotation: duration.
    pub rotation_duration: Duration,
    /// Producer-side cost: `append` calls timed.
    pub append_calls: u64,
    /// Recovery: log bytes (of records) to write before reopening.
    pub recovery_bytes: u64,
    /// JSONL export: records written.
    pub export_records: u64,
    /// Shipping to NATS JetStream: records in the backlog shipped "when behind".
    pub ship_records: u64,
    /// Shipping: how long each live load (demo-like, pipelined) runs with the shipper following.
    pub ship_duration: Duration,
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Base directory for the systems' data (a fresh sub-directory per run, removed at the end).
    /// Must be on a real disk: a memory file system (tmpfs) is refused.
    pub dir: PathBuf,
    /// Where reports go (`report.txt`, `summary.json`, `*.hgrm`, `*.svg`); `None` writes nothing.
    pub out: Option<PathBuf>,
    /// Sizes and durations.
    pub params: Params,
    /// The command line to quote in reports.
    pub command: String,
    /// Print progress lines to stderr.
    pub progress: bool,
    /// Run only these sections (`fsync`, `qd1`, `qd1open`, `closed`, `open`, `pipelined`, `rotation`,
    /// `append`, `recovery`, `export`, `ship`); empty runs everything. For profiling one workload.
    pub only: Vec<String>,
}

impl BenchOptions {
    /// True when section `name` is to run.
    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

/// Default base data directory: on the disk of the workspace, not /tmp (which may be tmpfs).
pub const DEFAULT_DIR: &str = "target/bench-data";
/// Default report directory.
pub const DEFAULT_OUT: &str = "target/bench-report";

impl BenchOptions {
    fn with(params: Params) -> Self {
        BenchOptions {
            dir: PathBuf::from(DEFAULT_DIR),
            out: Some(PathBuf::from(DEFAULT_OUT)),
            params,
            command: String::new(),
            progress: true,
            only: Vec::new(),
        }
    }

    /// Finishes in well under a minute: small sample counts (CI smoke, `tradewal demo`).
    pub fn quick() -> Self {
        Self::with(Params {
            mode: "quick".into(),
            rounds: 2,
            qd1_samples: 1_000,
            qd1_open_long: 20_000,
            slice: Duration::from_millis(150),
            producers: vec![1, 4, 16, 64],
            open_rates: vec![100e3, 250e3, 500e3, 1e6, 2e6, 4e6],
            open_duration: Duration::from_millis(500),
            pipelined_outstanding: 16_384,
            pipelined_duration: Duration::from_secs(1),
            bandwidth_bytes: 256 << 20,
            rotation_segment_bytes: 4 << 20,
            rotation_rate: 250e3,
            rotation_duration: Duration::from_secs(1),
            append_calls: 200_000,
            recovery_bytes: 512 << 20,
            export_records: 500_000,
            ship_records: 300_000,
            ship_duration: Duration::from_secs(3),
        })
    }

    /// The full run: the figures docs/durability.md quotes.
    pub fn full() -> Self {
        Self::with(Params {
            mode: "full".into(),
            rounds: 4,
            qd1_samples: 20_000,
            qd1_open_long: 20_000,
            slice: Duration::from_millis(1_000),
            producers: vec![1, 4, 16, 64],
            open_rates: vec![100e3, 250e3, 500e3, 750e3, 1e6, 1.5e6, 2e6, 3e6, 4e6, 6e6, 8e6],
            open_duration: Duration::from_secs(3),
            pipelined_outstanding: 16_384,
            pipelined_duration: Duration::from_secs(10),
            bandwidth_bytes: 2 << 30,
            rotation_segment_bytes: 4 << 20,
            rotation_rate: 250e3,
            rotation_duration: Duration::from_secs(5),
            append_calls: 5_000_000,
            recovery_bytes: 1 << 30,
            export_records: 5_000_000,
            ship_records: 2_000_000,
            ship_duration: Duration::from_secs(10),
        })
    }

    /// Tiny counts for tests: every workload runs, no figure means anything.
    pub fn smoke() -> Self {
        let mut o = Self::with(Params {
            mode: "smoke".into(),
            rounds: 1,
            qd1_samples: 20,
            qd1_open_long: 50,
            slice: Duration::from_millis(20),
            producers: vec![1, 4],
            open_rates: vec![10e3],
            open_duration: Duration::from_millis(50),
            pipelined_outstanding: 256,
            pipelined_duration: Duration::from_millis(100),
            bandwidth_bytes: 4 << 20,
            rotation_segment_bytes: 1 << 20,
            rotation_rate: 20e3,
            rotation_duration: Duration::from_millis(100),
            append_calls: 2_000,
            recovery_bytes: 1 << 20,
            export_records: 1_000,
            ship_records: 2_000,
            ship_duration: Duration::from_millis(300),
        });
        o.progress = false;
        o
    }
}

//! Reports: text tables (machine on top), `.hgrm` files, SVG percentile plots, JSON summary.

use crate::hgrm;
use crate::machine::MachineInfo;
use crate::params::Params;
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// One system's result in one workload. Latencies are recorded in nanoseconds.
#[derive(Debug, Clone)]
pub struct Row {
    /// System name.
    pub system: String,
    /// Latency histogram (ns).
    pub hist: Histogram<u64>,
    /// Operations completed.
    pub ops: u64,
    /// Wall time the operations took, seconds (0 when not meaningful).
    pub secs: f64,
    /// Anything else to say about this row.
    pub note: Option<String>,
}

impl Row {
    /// Operations per second (0 when no time was measured).
    pub fn ops_per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Latency at quantile `q`, microseconds.
    pub fn us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return f64::NAN;
        }
        self.hist.value_at_quantile(q) as f64 / 1e3
    }

    /// Largest latency, microseconds.
    pub fn max_us(&self) -> f64 {
        if self.hist.is_empty() {
            return f64::NAN;
        }
        self.hist.max() as f64 / 1e3
    }
}

/// One workload: a table of rows plus notes.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short id, used in file names (`qd1`, `closed16`, `open1000k`, ...).
    pub id: String,
    /// Title line.
    pub title: String,
    /// One row per system.
    pub rows: Vec<Row>,
    /// Free-form lines printed under the table.
    pub notes: Vec<String>,
}

/// A target from the issue with the measured figure and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub what: String,
    /// The target.
    pub target: String,
    /// The measured figure.
    pub figure: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
}

impl Target {
    /// A target that could not be measured in this run.
    pub fn not_measured(what: &str, target: &str, why: &str) -> Self {
        Target { what: what.into(), target: target.into(), figure: format!("not measured ({why})"), met: None }
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "n/a",
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine (printed first).
    pub machine: MachineInfo,
    /// The command that produced it.
    pub command: String,
    /// Sizes and durations used.
    pub params: Params,
    /// Workloads in run order.
    pub workloads: Vec<Workload>,
    /// Targets from the issue.
    pub targets: Vec<Target>,
    /// Files written (when an output directory was given).
    pub files: Vec<PathBuf>,
}

/// Name of the floor row (ratios are taken against it).
pub const FLOOR_PREFIX: &str = "floor";
/// Rows whose p50 other rows are compared with, besides the floor.
pub const PEERS: [&str; 3] = ["jsonl-fdatasync", "sqlite-wal-full", "okaywal"];

fn fmt_us(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 10_000.0 {
        format!("{:.0}", v)
    } else {
        format!("{:.1}", v)
    }
}

fn fmt_rate(v: f64) -> String {
    if v <= 0.0 {
        "-".into()
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{:.0}", v)
    }
}

impl Workload {
    /// True for the workloads where a ratio to the QD1 device floor means something: one
    /// operation at a time, each paying one durable write (`fsync` probes and `qd1`).
    pub fn floor_comparable(&self) -> bool {
        self.id == "qd1" || self.id == "fsync"
    }

    /// Renders the table; the `x floor` column is printed only when `floor_p50_us` is given.
    pub fn render(&self, floor_p50_us: Option<f64>) -> String {
        let mut s = String::new();
        s.push_str(&format!("## {} [{}]\n", self.title, self.id));
        let peers: Vec<&Row> = self.rows.iter().filter(|r| PEERS.contains(&r.system.as_str())).collect();
        let mut header =
            format!("{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", "system", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "ops/s");
        if floor_p50_us.is_some() {
            header.push_str(&format!(" {:>9}", "x floor"));
        }
        for p in &peers {
            header.push_str(&format!(" {:>10}", format!("x {}", short(&p.system))));
        }
        s.push_str(&header);
        s.push('\n');
        for r in &self.rows {
            let p50 = r.us(0.5);
            let mut line = format!(
                "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                r.system,
                fmt_us(p50),
                fmt_us(r.us(0.9)),
                fmt_us(r.us(0.99)),
                fmt_us(r.us(0.999)),
                fmt_us(r.max_us()),
                fmt_rate(r.ops_per_s()),
            );
            if let Some(f) = floor_p50_us {
                line.push_str(&format!(" {:>9}", format!("{:.2}", p50 / f)));
            }
            for p in &peers {
                line.push_str(&format!(" {:>10}", format!("{:.2}", p50 / p.us(0.5))));
            }
            if let Some(n) = &r.note {
                line.push_str("  ");
                line.push_str(n);
            }
            s.push_str(&line);
            s.push('\n');
        }
        if !peers.is_empty() {
            s.push_str("(x columns: this row's p50 / that system's p50; below 1 is faster)\n");
        }
        for n in &self.notes {
            s.push_str("  ");
            s.push_str(n);
            s.push('\n');
        }
        s
    }
}

fn short(name: &str) -> &str {
    match name {
        "jsonl-fdatasync" => "jsonl",
        "sqlite-wal-full" => "sqlite",
        other => other,
    }
}

impl Report {
    /// p50 of the floor row of the QD1 workload, µs.
    pub fn floor_p50_us(&self) -> Option<f64> {
        self.workloads
            .iter()
            .find(|w| w.id == "qd1")
            .and_then(|w| w.rows.iter().find(|r| r.system.starts_with(FLOOR_PREFIX)))
            .map(|r| r.us(0.5))
    }

    /// Finds a row by workload id and system name.
    pub fn row(&self, workload: &str, system: &str) -> Option<&Row> {
        self.workloads.iter().find(|w| w.id == workload)?.rows.iter().find(|r| r.system == system)
    }

    /// Writes `report.txt`, `summary.json`, one `.hgrm` per row and one SVG per workload into
    /// `out`; records the paths in `self.files`.
    pub fn write(&mut self, out: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let mut files = Vec::new();
        for w in &self.workloads {
            for r in &w.rows {
                if r.hist.is_empty() {
                    continue;
                }
                let p = out.join(format!("{}_{}_us.hgrm", w.id, slug(&r.system)));
                std::fs::write(&p, hgrm::render(&r.hist, 1e3))?;
                files.push(p);
            }
            if w.rows.iter().any(|r| !r.hist.is_empty()) {
                let p = out.join(format!("{}.svg", w.id));
                plot(w, &p, &self.machine.to_string()).with_context(|| format!("plotting {}", p.display()))?;
                files.push(p);
            }
        }
        let json = out.join("summary.json");
        std::fs::write(&json, serde_json::to_string_pretty(&self.summary())?)?;
        files.push(json);
        let txt = out.join("report.txt");
        files.push(txt.clone());
        self.files = files;
        std::fs::write(&txt, self.to_string())?;
        Ok(())
    }

    /// The JSON summary.
    pub fn summary(&self) -> Summary {
        let floor = self.floor_p50_us();
        Summary {
            machine: self.machine.clone(),
            command: self.command.clone(),
            params: self.params.clone(),
            workloads: self
                .workloads
                .iter()
                .map(|w| SummaryWorkload {
                    id: w.id.clone(),
                    title: w.title.clone(),
                    notes: w.notes.clone(),
                    rows: w
                        .rows
                        .iter()
                        .map(|r| SummaryRow {
                            system: r.system.clone(),
                            count: r.hist.len(),
                            ops: r.ops,
                            secs: r.secs,
                            ops_per_s: r.ops_per_s(),
                            p50_us: nan_none(r.us(0.5)),
                            p90_us: nan_none(r.us(0.9)),
                            p99_us: nan_none(r.us(0.99)),
                            p999_us: nan_none(r.us(0.999)),
                            p9999_us: nan_none(r.us(0.9999)),
                            max_us: nan_none(r.max_us()),
                            mean_us: if r.hist.is_empty() { None } else { Some(r.hist.mean() / 1e3) },
                            ratio_to_floor_p50: floor.filter(|_| w.floor_comparable()).and_then(|f| nan_none(r.us(0.5) / f)),
                            note: r.note.clone(),
                        })
                        .collect(),
                })
                .collect(),
            targets: self.targets.clone(),
        }
    }
}

fn nan_none(v: f64) -> Option<f64> {
    (!v.is_nan() && v.is_finite()).then_some(v)
}

/// File-name friendly form of a system name.
pub fn slug(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

/// JSON summary of a report.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Machine facts.
    pub machine: MachineInfo,
    /// Command.
    pub command: String,
    /// Parameters.
    pub params: Params,
    /// Workloads.
    pub workloads: Vec<SummaryWorkload>,
    /// Targets.
    pub targets: Vec<Target>,
}

/// One workload in the JSON summary.
#[derive(Debug, Serialize)]
pub struct SummaryWorkload {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Notes.
    pub notes: Vec<String>,
    /// Rows.
    pub rows: Vec<SummaryRow>,
}

/// One row in the JSON summary (latencies in µs).
#[derive(Debug, Serialize)]
pub struct SummaryRow {
    /// System.
    pub system: String,
    /// Samples in the histogram.
    pub count: u64,
    /// Operations.
    pub ops: u64,
    /// Seconds.
    pub secs: f64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// p50.
    pub p50_us: Option<f64>,
    /// p90.
    pub p90_us: Option<f64>,
    /// p99.
    pub p99_us: Option<f64>,
    /// p99.9.
    pub p999_us: Option<f64>,
    /// p99.99.
    pub p9999_us: Option<f64>,
    /// Max.
    pub max_us: Option<f64>,
    /// Mean.
    pub mean_us: Option<f64>,
    /// p50 / floor p50.
    pub ratio_to_floor_p50: Option<f64>,
    /// Note.
    pub note: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# tradewal bench ({})", self.params.mode)?;
        writeln!(f, "{}", self.machine)?;
        if !self.command.is_empty() {
            writeln!(f, "command: {}", self.command)?;
        }
        writeln!(f, "latency = append -> durable, microseconds; systems alternate in {} rounds\n", self.params.rounds)?;
        let floor = self.floor_p50_us();
        for w in &self.workloads {
            writeln!(f, "{}", w.render(floor.filter(|_| w.floor_comparable())))?;
        }
        writeln!(f, "## Targets (issue)")?;
        for t in &self.targets {
            writeln!(f, "  [{:<6}] {}: {} (target {})", t.verdict(), t.what, t.figure, t.target)?;
        }
        if !self.files.is_empty() {
            writeln!(f, "\nfiles: {}", self.files.first().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default())?;
        }
        Ok(())
    }
}

/// Plots latency percentile curves (x: percentile on the 1/(1-p) log scale, y: µs, log).
fn plot(w: &Workload, path: &Path, machine: &str) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let series: Vec<(String, Vec<(f64, f64)>)> = w
        .rows
        .iter()
        .filter(|r| !r.hist.is_empty())
        .map(|r| {
            let mut pts: Vec<(f64, f64)> = r
                .hist
                .iter_quantiles(hgrm::TICKS_PER_HALF_DISTANCE)
                .filter(|v| v.quantile_iterated_to() < 1.0)
                .map(|v| {
                    let x = (1.0 / (1.0 - v.quantile_iterated_to())).log10();
                    (x, (r.hist.highest_equivalent(v.value_iterated_to()) as f64 / 1e3).max(0.01))
                })
                .collect();
            let xmax = (r.hist.len() as f64).log10().max(1.0);
            pts.push((xmax, (r.hist.max() as f64 / 1e3).max(0.01)));
            (r.system.clone(), pts)
        })
        .collect();
    let xmax = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(1.0f64, f64::max).ceil();
    let ymin = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(f64::MAX, f64::min).max(0.01) * 0.8;
    let ymax = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(0.0f64, f64::max).max(ymin * 2.0) * 1.25;
    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let caption = format!("{} — latency by percentile", w.title);
    let mut chart = ChartBuilder::on(&root)
        .caption(&caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, (ymin..ymax).log_scale())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc(format!("percentile  ({machine})").chars().take(160).collect::<String>())
        .y_desc("latency (us)")
        .x_labels(xmax as usize + 1)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-*x));
            if p < 99.0 {
                format!("{p:.0}%")
            } else {
                let digits = (*x as i32 - 2).max(0) as usize;
                format!("{p:.digits$}%")
            }
        })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK, RGBColor(255, 140, 0), RGBColor(128, 0, 128)];
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

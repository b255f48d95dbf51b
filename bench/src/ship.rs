//! Shipping into NATS JetStream (tradewal-ship) against one local nats-server the bench starts:
//! the rate when behind (a closed backlog shipped with `once`), and the lag behind the writer
//! while it appends under the demo's load and under a pipelined load.

use crate::params::Params;
use crate::recorder::{new_histogram, record};
use crate::report::{Row, Target, Workload};
use crate::systems::sample_intent;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tradewal::{Wal, WalConfig};
use tradewal_ship::{ShipConfig, ShipProgress};
use tradewal_testkit::nats::NatsServer;

/// How often the lag sampler looks at the writer's watermark and the shipper's position.
const SAMPLE: Duration = Duration::from_micros(250);

/// The shipping workloads and their targets (not measured, with the reason, without nats-server).
pub(crate) fn run(p: &Params, dir: &Path, say: &dyn Fn(&str)) -> (Vec<Workload>, Vec<Target>) {
    let server = match NatsServer::start(dir) {
        Ok(s) => s,
        Err(e) => {
            let why = format!("no NATS server: {e}");
            return (
                Vec::new(),
                vec![
                    Target::not_measured("shipping rate when behind", ">= 200,000 records/s", &why),
                    Target::not_measured(LAG_WHAT, LAG_TARGET, &why),
                ],
            );
        }
    };
    let mut workloads = Vec::new();
    let mut targets = Vec::new();
    say("ship: a closed backlog, shipped once");
    match behind(p, dir, &server.url()) {
        Ok((w, t)) => {
            workloads.push(w);
            targets.push(t);
        }
        Err(e) => targets.push(Target::not_measured("shipping rate when behind", ">= 200,000 records/s", &e)),
    }
    say("ship: lag behind the writer, demo load (4 producers, QD1 each, every intent executed)");
    let demo = live(p, dir, &server.url(), Load::Demo);
    say("ship: lag behind the writer, pipelined load (1 producer, 16 384 outstanding)");
    let piped = live(p, dir, &server.url(), Load::Pipelined);
    match &demo {
        Ok((_, p99)) => targets.push(Target {
            what: LAG_WHAT.into(),
            target: LAG_TARGET.into(),
            figure: format!("lag p99 {:.1} ms", p99 / 1e3),
            met: Some(*p99 < 100_000.0),
        }),
        Err(e) => targets.push(Target::not_measured(LAG_WHAT, LAG_TARGET, e)),
    }
    let rows: Vec<Row> = [demo, piped].into_iter().filter_map(Result::ok).map(|(r, _)| r).collect();
    if !rows.is_empty() {
        workloads.push(Workload {
            id: "ship-lag".into(),
            title: "shipping lag: time from the writer's ack of an LSN to the stream's ack of it (us)".into(),
            rows,
            notes: vec![
                format!("the writer runs WalConfig defaults; the shipper (tradewal_ship::ship, ShipConfig defaults) follows it into one local nats-server (JetStream, file storage, R1) for {:?} per load", p.ship_duration),
                format!("lag sampled every {SAMPLE:?} (the writer's durable watermark and the shipper's acked position); a sample's lag is how long ago the watermark passed what the stream now holds"),
            ],
        });
    }
    (workloads, targets)
}

const LAG_WHAT: &str = "shipping keeps up with the demo's load";
const LAG_TARGET: &str = "lag p99 < 100 ms";

/// Intents, each then marked executed: `n` records in all, pipelined 1 024 at a time.
fn fill(wal: &Wal, n: u64) -> Result<(), String> {
    let mut i = 0;
    while i < n {
        let ts: Vec<_> = (i..i + 512).map(|k| wal.append(&sample_intent(k))).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let ls: Vec<_> = ts.into_iter().map(|t| t.wait()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        for l in ls {
            drop(wal.mark_executed(l).map_err(|e| e.to_string())?); // the outcome's durability is the shipper's concern here
        }
        i += 1024;
    }
    wal.wait_durable(wal.durable_lsn().max(1)).map_err(|e| e.to_string())
}

fn behind(p: &Params, dir: &Path, url: &str) -> Result<(Workload, Target), String> {
    let log = dir.join("backlog");
    let wal = Wal::open(WalConfig::new(&log)).map_err(|e| e.to_string())?;
    fill(&wal, p.ship_records)?;
    wal.close().map_err(|e| e.to_string())?;
    let mut cfg = ShipConfig::new(&log, url, "BENCH_BACKLOG");
    cfg.prefix = "bench_backlog".into();
    cfg.once = true;
    let progress = ShipProgress::default();
    let stop = AtomicBool::new(false);
    let mut hist = new_histogram();
    let start = Instant::now();
    let result = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = tradewal_ship::ship(&cfg, &progress, &stop, &|_| {});
            stop.store(true, Ordering::Release);
            r
        });
        // ns per record over each millisecond.
        let (mut n0, mut t0) = (0, Instant::now());
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
            let (n, t) = (progress.records(), Instant::now());
            if n > n0 {
                record(&mut hist, ((t - t0).as_nanos() as u64) / (n - n0));
            }
            (n0, t0) = (n, t);
        }
        h.join().expect("shipper thread")
    });
    result.map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let (n, bytes) = (progress.records(), progress.bytes());
    let rate = n as f64 / secs;
    let row = Row { system: "tradewal ship, 1 local nats-server (R1, file)".into(), hist, ops: n, secs, note: None };
    let w = Workload {
        id: "ship-behind".into(),
        title: "shipping a backlog into NATS JetStream, us per record (over 1 ms intervals)".into(),
        rows: vec![row],
        notes: vec![format!(
            "{n} records (intents and outcomes), {:.1} MB of JSONL bodies in {secs:.2} s: {rate:.0} records/s, {:.1} MB/s, each acknowledged by the stream (pipelined, {} in flight at most)",
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs,
            cfg.max_in_flight
        )],
    };
    let t = Target {
        what: "shipping rate when behind".into(),
        target: ">= 200,000 records/s".into(),
        figure: format!("{:.0}k records/s ({:.1} MB/s)", rate / 1e3, bytes as f64 / 1e6 / secs),
        met: Some(rate >= 200e3),
    };
    Ok((w, t))
}

#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// As `tradewal demo`: 4 producers, each appends, waits, marks executed.
    Demo,
    /// One producer keeping 16 384 intents outstanding, each marked executed once durable.
    Pipelined,
}

fn demo_producer(wal: &Wal, stop: &AtomicBool, base: u64) -> Result<(), String> {
    let mut i = base;
    while !stop.load(Ordering::Relaxed) {
        let l = wal.append(&sample_intent(i)).and_then(|t| t.wait()).map_err(|e| e.to_string())?;
        drop(wal.mark_executed(l).map_err(|e| e.to_string())?); // the outcome's durability is the shipper's concern here
        i += 1;
    }
    Ok(())
}

fn pipelined_producer(wal: &Wal, stop: &AtomicBool) -> Result<(), String> {
    let mut q = std::collections::VecDeque::with_capacity(16_384);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        while q.len() < 16_384 {
            q.push_back(wal.append(&sample_intent(i)).map_err(|e| e.to_string())?);
            i += 1;
        }
        let l = q.pop_front().expect("non-empty").wait().map_err(|e| e.to_string())?;
        drop(wal.mark_executed(l).map_err(|e| e.to_string())?); // the outcome's durability is the shipper's concern here
    }
    Ok(())
}

/// One live load with the shipper following: the lag row and its p99 (us).
fn live(p: &Params, dir: &Path, url: &str, load: Load) -> Result<(Row, f64), String> {
    let name = if load == Load::Demo { "demo" } else { "pipelined" };
    let log = dir.join(format!("live-{name}"));
    let wal = Wal::open(WalConfig::new(&log)).map_err(|e| e.to_string())?;
    let mut cfg = ShipConfig::new(&log, url, &format!("BENCH_{}", name.to_uppercase()));
    cfg.prefix = format!("bench_{name}"); // one stream per load: their subjects must not overlap
    let progress = ShipProgress::default();
    let (stop_ship, stop_load) = (AtomicBool::new(false), AtomicBool::new(false));
    let mut samples: Vec<(Instant, u64, u64)> = Vec::with_capacity(1 << 16);
    let (load_secs, shipped_during, written, behind) = std::thread::scope(|s| -> Result<_, String> {
        let shipper = s.spawn(|| tradewal_ship::ship(&cfg, &progress, &stop_ship, &|_| {}));
        let started = Instant::now();
        while progress.log_id() == 0 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (w, stop) = (&wal, &stop_load);
        let producers: Vec<_> = match load {
            Load::Demo => (0..4u64).map(|k| s.spawn(move || demo_producer(w, stop, k << 40))).collect(),
            Load::Pipelined => vec![s.spawn(move || pipelined_producer(w, stop))],
        };
        let t0 = Instant::now();
        while t0.elapsed() < p.ship_duration {
            std::thread::sleep(SAMPLE);
            samples.push((Instant::now(), wal.durable_lsn(), progress.shipped()));
        }
        stop_load.store(true, Ordering::Relaxed);
        let load_secs = t0.elapsed().as_secs_f64();
        let shipped_during = progress.records();
        for h in producers {
            h.join().expect("producer")?;
        }
        let written = wal.durable_lsn();
        // Give the shipper up to 2 s to catch up (a pipelined writer outruns it: what is left
        // then is reported, not waited for), then stop it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while progress.shipped() < written && Instant::now() < deadline {
            std::thread::sleep(SAMPLE);
        }
        let behind = written.saturating_sub(progress.shipped());
        stop_ship.store(true, Ordering::Release);
        shipper.join().expect("shipper").map_err(|e| e.to_string())?;
        Ok((load_secs, shipped_during, written, behind))
    })?;
    wal.close().map_err(|e| e.to_string())?;
    let hist = lag_histogram(&samples);
    let p99 = hist.value_at_quantile(0.99) as f64 / 1e3;
    let end_lag = samples.last().map_or(0, |&(_, d, s)| d.saturating_sub(s));
    let note = format!(
        "{name}: writer {:.0}k records/s, shipper {:.0}k records/s while the load ran; {end_lag} records behind when the load stopped, {behind} still behind 2 s later",
        written as f64 / load_secs / 1e3,
        shipped_during as f64 / load_secs / 1e3
    );
    Ok((Row { system: format!("{name} load: writer ack -> stream ack"), hist, ops: written, secs: load_secs, note: Some(note) }, p99))
}

/// For each sample: how long before it the writer's watermark first reached what the stream held
/// then (0 when the stream held nothing new).
fn lag_histogram(samples: &[(Instant, u64, u64)]) -> hdrhistogram::Histogram<u64> {
    let mut hist = new_histogram();
    let mut j = 0; // first sample whose watermark reached the current shipped LSN
    for &(t, _, shipped) in samples {
        if shipped == 0 {
            continue;
        }
        while j < samples.len() && samples[j].1 < shipped {
            j += 1;
        }
        let since = samples.get(j).map_or(Duration::ZERO, |s| t.saturating_duration_since(s.0));
        record(&mut hist, since.as_nanos() as u64);
    }
    hist
}

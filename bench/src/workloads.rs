//! The run: workloads in order, systems alternating in rounds, targets checked.

use crate::device::{self, Probe};
use crate::machine::MachineInfo;
use crate::params::BenchOptions;
use crate::recorder::{new_histogram, record};
use crate::report::{Report, Row, Target, Workload};
use crate::systems::{sample_intent, Kind, System};
use crate::tw;
use anyhow::Context;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Systems of the QD1 and closed-loop tables, in order.
fn systems() -> Vec<Kind> {
    vec![Kind::Jsonl, Kind::Sqlite, Kind::Okaywal, Kind::TradewalDsync, Kind::TradewalLinked]
}

/// Why a target that compares rows was not measured (a row it needs is missing).
const ROW_MISSING: &str = "a row it compares was not measured in this run";

struct Ctx {
    opts: BenchOptions,
    run_dir: PathBuf,
    next_dir: u32,
}

impl Ctx {
    fn progress(&self, msg: &str) {
        if self.opts.progress {
            eprintln!("[bench] {msg}");
        }
    }

    /// A fresh, empty directory under the run directory.
    fn fresh_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        self.next_dir += 1;
        let d = self.run_dir.join(format!("{:03}-{}", self.next_dir, crate::report::slug(what)));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }
}

pub(crate) fn run(opts: BenchOptions) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("creating data dir {}", opts.dir.display()))?;
    let machine = MachineInfo::collect(&opts.dir);
    anyhow::ensure!(
        !machine.is_memory_fs(),
        "data dir {} is on {} (memory): nothing is durable there; pass --dir on a real disk",
        opts.dir.display(),
        machine.fs_type
    );
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let run_dir = opts.dir.join(format!("run-{}-{}", stamp, std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let mut ctx = Ctx { opts, run_dir, next_dir: 0 };
    ctx.progress(&machine.to_string());
    let result = run_all(&mut ctx);
    let _ = std::fs::remove_dir_all(&ctx.run_dir);
    let (workloads, targets) = result?;
    let mut report =
        Report { machine, command: ctx.opts.command.clone(), params: ctx.opts.params.clone(), workloads, targets, files: Vec::new() };
    if let Some(out) = ctx.opts.out.clone() {
        report.write(&out)?;
    }
    Ok(report)
}

fn run_all(ctx: &mut Ctx) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    let mut workloads = Vec::new();
    let mut targets = Vec::new();

    if ctx.opts.wants("fsync") {
        ctx.progress("fsync cost: device probes at QD1");
        workloads.push(fsync_cost(ctx)?);
    }

    let mut qd1_modes = (None, None);
    let mut floor_p50: Option<f64> = None;
    if ctx.opts.wants("qd1") {
        ctx.progress("QD1: floor and every system, alternating");
        let qd1 = qd1(ctx)?;
        let floor = qd1.rows.iter().find(|r| r.system.starts_with("floor")).map(|r| (r.us(0.5), r.us(0.999)));
        // The better of the two floors (sleeping and spinning waiter) at the median.
        floor_p50 = qd1.rows.iter().filter(|r| r.system.contains("floor")).map(|r| r.us(0.5)).reduce(f64::min);
        if let (Some((f50, f999)), Some(t)) = (floor, qd1.rows.iter().find(|r| r.system == Kind::TradewalDsync.label())) {
            let (p50, p999) = (t.us(0.5), t.us(0.999));
            targets.push(Target {
                what: "QD1 p50 vs floor p50 (tradewal-dsync)".into(),
                target: "<= 1.10x".into(),
                figure: format!("{:.1} us vs {:.1} us = {:.2}x", p50, f50, p50 / f50),
                met: Some(p50 <= 1.10 * f50),
            });
            targets.push(Target {
                what: "QD1 p99.9 vs floor p99.9 (tradewal-dsync)".into(),
                target: "<= 1.5x".into(),
                figure: format!("{:.1} us vs {:.1} us = {:.2}x", p999, f999, p999 / f999),
                met: Some(p999 <= 1.5 * f999),
            });
        } else {
            targets.push(Target::not_measured("QD1 vs floor", "p50 <= 1.10x, p99.9 <= 1.5x", ROW_MISSING));
        }
        qd1_modes = (
            qd1.rows.iter().find(|r| r.system == Kind::TradewalDsync.label()).map(|r| (r.us(0.5), r.us(0.999))),
            qd1.rows.iter().find(|r| r.system == Kind::TradewalLinked.label()).map(|r| (r.us(0.5), r.us(0.999))),
        );
        workloads.push(qd1);
    }
    let mut modes16: Option<(f64, f64)> = None;

    let producers = if ctx.opts.wants("closed") { ctx.opts.params.producers.clone() } else { Vec::new() };
    for &p in &producers {
        ctx.progress(&format!("closed loop, {p} producers"));
        let (w, medians) = closed(ctx, p)?;
        if p == 16 {
            let tw_i = w.rows.iter().position(|r| r.system == Kind::TradewalDsync.label());
            let ok_i = w.rows.iter().position(|r| r.system == Kind::Okaywal.label());
            match (tw_i, ok_i) {
                (Some(ti), Some(oi)) => {
                    let (t, o) = (&w.rows[ti], &w.rows[oi]);
                    let (tm, om) = (medians[ti], medians[oi]);
                    let tput = tm / om;
                    let p99 = t.us(0.99) / o.us(0.99);
                    targets.push(Target {
                        what: "16 producers: throughput vs okaywal (median of the alternating rounds)".into(),
                        target: ">= 3x".into(),
                        figure: format!("{tm:.0}/s vs {om:.0}/s = {tput:.2}x"),
                        met: Some(tput >= 3.0),
                    });
                    match floor_p50 {
                        Some(f) => targets.push(Target {
                            what: "16 producers: p50 vs the better floor's p50 (QD1 section, same run)".into(),
                            target: "<= 1.5x".into(),
                            figure: format!("{:.1} us vs {f:.1} us = {:.2}x", t.us(0.5), t.us(0.5) / f),
                            met: Some(t.us(0.5) <= 1.5 * f),
                        }),
                        None => targets.push(Target::not_measured("16 producers: p50 vs floor", "<= 1.5x", "the QD1 section did not run")),
                    }
                    targets.push(Target {
                        what: "16 producers: p99 vs okaywal".into(),
                        target: "<= 0.5x".into(),
                        figure: format!("{:.1} us vs {:.1} us = {:.2}x", t.us(0.99), o.us(0.99), p99),
                        met: Some(p99 <= 0.5),
                    });
                }
                _ => targets.push(Target::not_measured("16 producers vs okaywal", ">= 3x throughput, <= 0.5x p99", ROW_MISSING)),
            }
            let d = w.rows.iter().find(|r| r.system == Kind::TradewalDsync.label());
            let l = w.rows.iter().find(|r| r.system == Kind::TradewalLinked.label());
            if let (Some(d), Some(l)) = (d, l) {
                modes16 = Some((d.ops_per_s(), l.ops_per_s()));
            }
        }
        workloads.push(w);
    }

    if ctx.opts.wants("qd1") {
        targets.push(durability_default(qd1_modes, modes16));
    }

    let params = ctx.opts.params.clone();
    let progress = ctx.opts.progress;
    let only = ctx.opts.clone();
    let tw_work = tw::run_tradewal_workloads(&params, progress, &|s: &str| only.wants(s), &mut |what: &str| ctx.fresh_dir(what));
    match tw_work {
        Ok((ws, ts)) => {
            workloads.extend(ws);
            targets.extend(ts);
        }
        Err(e) => {
            targets.push(Target::not_measured(
                "tradewal open loop / pipelined / rotation / append / recovery",
                "see issue",
                &format!("{e:#}"),
            ));
        }
    }

    if ctx.opts.wants("export") {
        ctx.progress("JSONL export rate");
        let (w, t) = export(ctx)?;
        workloads.push(w);
        targets.push(t);
    }
    if ctx.opts.wants("ship") {
        ctx.progress("shipping into NATS JetStream (one local nats-server)");
        let dir = ctx.fresh_dir("ship")?;
        let (w, t) = crate::ship::run(&ctx.opts.params, &dir, &|m: &str| ctx.progress(m));
        workloads.extend(w);
        targets.extend(t);
    }
    Ok((workloads, targets))
}

/// Two figures of one system, when measured.
type Pair = Option<(f64, f64)>;

/// The issue: "measure both durability modes and default to the faster one on this machine".
/// The engine's default is `Durability::Dsync`; met when Dsync is at least as fast as linked
/// fdatasync both at QD1 (p50) and with 16 producers (throughput).
fn durability_default(qd1: (Pair, Pair), closed16: Pair) -> Target {
    let what = "default durability (Dsync) is the faster mode here";
    let target = "Dsync p50 <= linked at QD1 and Dsync ops/s >= linked at 16 producers";
    match (qd1, closed16) {
        ((Some((d50, d999)), Some((l50, l999))), Some((d16, l16))) => Target {
            what: what.into(),
            target: target.into(),
            figure: format!(
                "QD1 p50 dsync {d50:.1} us vs linked {l50:.1} us (p99.9 {d999:.1} vs {l999:.1}); 16 producers dsync {:.1}k/s vs linked {:.1}k/s",
                d16 / 1e3,
                l16 / 1e3
            ),
            met: Some(d50 <= l50 && d16 >= l16),
        },
        ((Some((d50, _)), Some((l50, _))), None) => Target {
            what: what.into(),
            target: target.into(),
            figure: format!("QD1 p50 dsync {d50:.1} us vs linked {l50:.1} us; 16 producers not run in this mode"),
            met: None,
        },
        _ => Target::not_measured(what, target, ROW_MISSING),
    }
}

fn hist_of(samples: &[Duration]) -> Histogram<u64> {
    let mut h = new_histogram();
    for d in samples {
        record(&mut h, d.as_nanos() as u64);
    }
    h
}

/// The device probes, alternating in rounds.
fn fsync_cost(ctx: &mut Ctx) -> anyhow::Result<Workload> {
    let probes = [
        Probe::UringDsync,
        Probe::UringDsyncSpin,
        Probe::UringNoSync,
        Probe::UringLinkedFdatasync,
        Probe::PwriteODsync,
        Probe::BufferedFdatasync,
    ];
    let dir = ctx.fresh_dir("probes")?;
    let rounds = ctx.opts.params.rounds.max(1) as u64;
    let per_round = (ctx.opts.params.qd1_samples / rounds).max(1) as usize;
    let mut rows: Vec<Row> =
        probes.iter().map(|p| Row { system: p.label().into(), hist: new_histogram(), ops: 0, secs: 0.0, note: None }).collect();
    let mut notes = Vec::new();
    for round in 0..rounds as usize {
        for k in 0..probes.len() {
            let i = (k + round) % probes.len();
            let t = Instant::now();
            match device::measure(probes[i], &dir, per_round) {
                Ok(samples) => {
                    let secs: f64 = samples.iter().map(|d| d.as_secs_f64()).sum();
                    rows[i].hist.add(hist_of(&samples)).expect("same bounds");
                    rows[i].ops += samples.len() as u64;
                    rows[i].secs += secs;
                }
                Err(e) => {
                    let _ = t;
                    rows[i].note = Some(format!("failed: {e:#}"));
                }
            }
        }
    }
    notes.push("one 4 KiB write per sample, queue depth 1, overwrite of a zero-filled synced file; ops/s = 1 / mean latency".into());
    notes.push("the no-sync row is NOT durable (the data may sit in the device's volatile cache)".into());
    Ok(Workload { id: "fsync".into(), title: "What a durable 4 KiB write costs (device probes, QD1)".into(), rows, notes })
}

/// Runs `producers` threads of append→durable against `sys` until `deadline` or `max_ops`.
fn drive(
    sys: &dyn System,
    producers: usize,
    budget: Duration,
    max_ops: u64,
    seq: &AtomicU64,
) -> anyhow::Result<(Histogram<u64>, u64, f64)> {
    let barrier = Barrier::new(producers + 1);
    let done = AtomicU64::new(0);
    let (hists, secs) = std::thread::scope(|s| -> anyhow::Result<(Vec<Histogram<u64>>, f64)> {
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<Histogram<u64>> {
                    let mut h = new_histogram();
                    barrier.wait();
                    let deadline = Instant::now() + budget;
                    loop {
                        if done.fetch_add(1, Ordering::Relaxed) >= max_ops || Instant::now() >= deadline {
                            break;
                        }
                        let i = seq.fetch_add(1, Ordering::Relaxed);
                        let intent = sample_intent(i);
                        let t = Instant::now();
                        sys.append_durable(&intent)?;
                        record(&mut h, t.elapsed().as_nanos() as u64);
                        sys.settle()?;
                    }
                    Ok(h)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut hs = Vec::new();
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(h)) => hs.push(h),
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => first_err = first_err.or(Some(anyhow::anyhow!("producer thread panicked"))),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        match first_err {
            Some(e) => Err(e),
            None => Ok((hs, secs)),
        }
    })?;
    let mut total = new_histogram();
    for h in hists {
        total.add(h).expect("same bounds");
    }
    let ops = total.len();
    Ok((total, ops, secs))
}

/// Opens every system once, warms each up, then runs `slice` (or `cap` ops) per system per
/// round, rotating the order each round. The floors (QD1 only: the sleeping waiter's, then the
/// spinning waiter's) take part in the rotation.
/// Also returns each row's rate (ops/s) in every round.
fn alternate(ctx: &mut Ctx, producers: usize, with_floor: bool, cap_per_round: u64, id: &str) -> anyhow::Result<(Vec<Row>, Vec<Vec<f64>>)> {
    let kinds = systems();
    let mut opened: Vec<(Kind, Box<dyn System>)> = Vec::new();
    for k in &kinds {
        let d = ctx.fresh_dir(&format!("{id}-{}", k.label()))?;
        let sys = tw::open_system(*k, &d).with_context(|| format!("opening {}", k.label()))?;
        opened.push((*k, sys));
    }
    let floor_dir = ctx.fresh_dir(&format!("{id}-floor"))?;
    let seq = AtomicU64::new(0);
    // Warm-up: a few appends each (file creation, first page faults, sqlite statement cache).
    for (_, s) in &opened {
        drive(s.as_ref(), 1, Duration::from_millis(200), 20, &seq)?;
    }
    let mut rows: Vec<Row> = Vec::new();
    let floors: &[(Probe, &str)] = if with_floor {
        &[
            (Probe::UringDsync, "floor (uring RWF_DSYNC, no framing)"),
            (Probe::UringDsyncSpin, "spin-floor (uring RWF_DSYNC, CQ polled, no framing)"),
        ]
    } else {
        &[]
    };
    for (_, name) in floors {
        rows.push(Row { system: (*name).into(), hist: new_histogram(), ops: 0, secs: 0.0, note: None });
    }
    for (k, _) in &opened {
        rows.push(Row { system: k.label().into(), hist: new_histogram(), ops: 0, secs: 0.0, note: None });
    }
    let n = rows.len();
    let off = floors.len();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..ctx.opts.params.rounds.max(1) as usize {
        for j in 0..n {
            let i = (j + round) % n;
            if let Some((probe, _)) = floors.get(i) {
                let samples = device::measure(*probe, &floor_dir, cap_per_round as usize)?;
                rows[i].secs += samples.iter().map(|d| d.as_secs_f64()).sum::<f64>();
                rows[i].ops += samples.len() as u64;
                rows[i].hist.add(hist_of(&samples)).expect("same bounds");
                rates[i].push(samples.len() as f64 / samples.iter().map(|d| d.as_secs_f64()).sum::<f64>().max(1e-9));
                continue;
            }
            let (_, sys) = &opened[i - off];
            let (h, ops, secs) = drive(sys.as_ref(), producers, ctx.opts.params.slice, cap_per_round, &seq)?;
            rows[i].hist.add(h).expect("same bounds");
            rows[i].ops += ops;
            rows[i].secs += secs;
            rates[i].push(ops as f64 / secs.max(1e-9));
        }
    }
    for (k, sys) in opened {
        tw::close_system(k, sys)?;
    }
    Ok((rows, rates))
}

/// Median of a few figures (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn qd1(ctx: &mut Ctx) -> anyhow::Result<Workload> {
    let rounds = ctx.opts.params.rounds.max(1) as u64;
    let cap = (ctx.opts.params.qd1_samples / rounds).max(1);
    let (rows, _) = alternate(ctx, 1, true, cap, "qd1")?;
    let mut notes =
        vec![format!("one producer: append -> durable -> next; up to {} samples or {:?} per system per round", cap, ctx.opts.params.slice)];
    notes.push("spin-floor: the floor's write with a waiter that submits without waiting and polls the completion queue, sched_yield between polls (no sleep in io_uring_enter, no wake-up; a bare busy loop waits for the scheduler tick, as the write's completion work can be queued on the spinning CPU)".into());
    notes.push("tradewal rows: latency is append -> Ticket::wait() (spins up to 300 us when a CPU is free, then parks); like the peers, only the intent is timed. Every 1024 durable intents the producer marks them executed and waits for those outcomes, untimed (an outcome appended right after each intent would be a one-record batch in flight in front of the next intent: a second device flush per timed intent)".into());
    Ok(Workload { id: "qd1".into(), title: "QD1: append -> durable, one producer".into(), rows, notes })
}

/// The closed-loop table for `producers`, and each row's median rate over the rounds (ops/s).
fn closed(ctx: &mut Ctx, producers: usize) -> anyhow::Result<(Workload, Vec<f64>)> {
    let (rows, rates) = alternate(ctx, producers, false, u64::MAX, &format!("closed{producers}"))?;
    let medians: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    let mut notes = vec![format!(
        "{producers} producers, each append -> durable -> next; {:?} per system per round, {} rounds; peers without their own concurrency behind a Mutex (as the seed's sketch)",
        ctx.opts.params.slice, ctx.opts.params.rounds
    )];
    let per_round: Vec<String> = rows
        .iter()
        .zip(&rates)
        .map(|(r, v)| format!("{} {}", r.system, v.iter().map(|x| format!("{:.1}k", x / 1e3)).collect::<Vec<_>>().join("/")))
        .collect();
    notes.push(format!("ops/s per round: {}", per_round.join("; ")));
    Ok((Workload { id: format!("closed{producers}"), title: format!("Closed loop, {producers} producers"), rows, notes }, medians))
}

fn export(ctx: &mut Ctx) -> anyhow::Result<(Workload, Target)> {
    use std::io::Write;
    use tradewal_codec::{write_intent_line, IntentStatus};
    let dir = ctx.fresh_dir("export")?;
    let n = ctx.opts.params.export_records;
    let intents: Vec<_> = (0..1024).map(sample_intent).collect();
    let path = dir.join("export.jsonl");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut chunk = Instant::now();
    for i in 0..n {
        write_intent_line(&mut w, i + 1, &intents[(i % 1024) as usize], IntentStatus::Pending)?;
        if i % 1024 == 1023 {
            let now = Instant::now();
            record(&mut hist, (now - chunk).as_nanos() as u64 / 1024);
            chunk = now;
        }
    }
    w.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path)?.len();
    let rate = n as f64 / secs;
    let row = Row { system: "write_intent_line -> BufWriter<File>".into(), hist, ops: n, secs, note: None };
    let w = Workload {
        id: "export".into(),
        title: "JSONL export (tradewal_codec::write_intent_line), ns per record".into(),
        rows: vec![row],
        notes: vec![
            format!("{n} records, {:.1} MB, {:.0} records/s, {:.0} MB/s (table values: per-record cost in us, averaged over 1024-record chunks)", bytes as f64 / 1e6, rate, bytes as f64 / 1e6 / secs),
            "records come from memory (the recovery scan is measured separately), written through a 1 MiB buffer to a file on the data disk, no fsync".into(),
        ],
    };
    let t = Target {
        what: "JSONL export rate".into(),
        target: ">= 2,000,000 records/s".into(),
        figure: format!("{:.2} M records/s", rate / 1e6),
        met: Some(rate >= 2e6),
    };
    Ok((w, t))
}

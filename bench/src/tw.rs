//! tradewal in the bench: the [`System`] adapter (append → ticket resolved, then an `Executed`
//! outcome, as a strategy would) and the workloads only tradewal can run: open loop at fixed
//! offered rates (coordinated-omission corrected), pipelined throughput against the device
//! bandwidth, rotation under load, producer-side `append` cost and the recovery scan rate.
//!
//! Imports the systems, the probes, the recorder and the report; the harness (`workloads`)
//! imports it, never the other way round.

use crate::device;
use crate::disk::{dir_bytes, intent_bytes_on_disk};
use crate::params::Params;
use crate::recorder::{new_histogram, record, OpenLoopRecorder, Schedule};
use crate::report::{Row, Target, Workload};
use crate::systems::{sample_intent, Kind, System};
use anyhow::Context;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tradewal::Durability;
use tradewal::{Ticket, Wal, WalConfig, WalError};

/// The System adapter.
pub struct Tradewal {
    kind: Kind,
    wal: Arc<Wal>,
    /// Durable intents not resolved yet (resolved in untimed bursts by `settle`).
    pending: Mutex<Vec<u64>>,
}

/// Intents resolved per untimed burst in [`System::settle`].
const SETTLE_EVERY: usize = 1024;

fn durability(kind: Kind) -> Durability {
    match kind {
        Kind::TradewalLinked => Durability::LinkedFdatasync,
        _ => Durability::Dsync,
    }
}

fn config(kind: Kind, dir: &Path) -> WalConfig {
    WalConfig::new(dir).durability(durability(kind))
}

/// Opens a log and waits (up to 10 s) until its maintenance thread has prepared the first spare
/// segment, so that the spare's zero-fill does not compete with the timed part.
fn open_ready(cfg: WalConfig) -> anyhow::Result<Wal> {
    let dir = cfg.dir().to_path_buf();
    let wal = Wal::open(cfg).with_context(|| format!("opening tradewal in {}", dir.display()))?;
    let t = Instant::now();
    while wal.stats().spares_prepared == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(wal)
}

/// A fresh-directory maker handed in by the harness.
pub type FreshDir<'a> = &'a mut dyn FnMut(&str) -> anyhow::Result<PathBuf>;

/// Opens any system of the tables in `dir` (created if missing, expected empty): the peers
/// through [`Kind::open_peer`], tradewal (`kind` selects the durability mode) here.
pub fn open_system(kind: Kind, dir: &Path) -> anyhow::Result<Box<dyn System>> {
    if kind.is_peer() {
        return kind.open_peer(dir);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let wal = open_ready(config(kind, dir))?;
    Ok(Box::new(Tradewal { kind, wal: Arc::new(wal), pending: Mutex::new(Vec::with_capacity(4 * SETTLE_EVERY)) }))
}

/// Closes a system opened by [`open_system`].
pub fn close_system(_kind: Kind, sys: Box<dyn System>) -> anyhow::Result<()> {
    // Peers close on drop; tradewal is closed by `Drop` of `Wal` too, which drains the queue.
    drop(sys);
    Ok(())
}

impl System for Tradewal {
    fn name(&self) -> String {
        self.kind.label().into()
    }

    fn append_durable(&self, intent: &tradewal::TradeIntent) -> anyhow::Result<()> {
        let lsn = self.wal.append(intent)?.wait()?;
        self.pending.lock().map_err(|_| anyhow::anyhow!("pending list poisoned"))?.push(lsn);
        Ok(())
    }

    /// Marks the durable intents executed in bursts of `SETTLE_EVERY` (1024) and waits for the
    /// outcomes, outside the timed call. Appending the outcome right after each durable intent
    /// would put a one-record batch in flight in front of the next intent, which then waits for
    /// that flush too (two device flushes per timed intent at QD1); peers write no outcome at all.
    fn settle(&self) -> anyhow::Result<()> {
        let batch: Vec<u64> = {
            let mut p = self.pending.lock().map_err(|_| anyhow::anyhow!("pending list poisoned"))?;
            if p.len() < SETTLE_EVERY {
                return Ok(());
            }
            std::mem::take(&mut *p)
        };
        let mut last = None;
        for lsn in batch {
            last = Some(self.wal.mark_executed(lsn)?);
        }
        // Outcomes resolve in LSN order: the last one durable means all are.
        if let Some(t) = last {
            t.wait()?;
        }
        Ok(())
    }
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Appends; waits only when the queue is full (back-pressure, charged by the caller's clock).
fn append_retry(wal: &Wal, intent: &tradewal::TradeIntent) -> Result<Ticket, WalError> {
    wal.append(intent)
}

struct OpenLoopResult {
    rec: OpenLoopRecorder,
    /// Lag of each actual issue behind its intended start (the pacer's own lateness), ns.
    lag: hdrhistogram::Histogram<u64>,
    offered: f64,
    achieved: f64,
    secs: f64,
    /// (lsn, corrected latency ns) per op when asked for.
    trace: Vec<(u64, u64)>,
    /// Set when the run stopped early because `max_in_doubt` intents were outstanding (the
    /// engine refuses more appends: the offered rate is beyond what it sustains).
    overloaded: Option<String>,
}

/// Below this gap between intended starts the pacer works in ticks (sleep, then a burst).
const TICK_BELOW_NS: f64 = 200_000.0;
/// In precise mode, the pacer spins (yielding) only this close to the intended start.
const SPIN_TAIL_NS: u64 = 20_000;
/// In precise mode, it sleeps only when the gap is at least this.
const SLEEP_ABOVE_NS: u64 = 100_000;

/// Open loop: this thread paces appends on the schedule; a completer thread waits the tickets
/// in order and records completion − intended start. Stops issuing at `duration`.
///
/// The pacer never busy-spins a core: on a 2-core machine that would starve the pinned writer.
/// At high rates (gap < 200 µs) it sleeps until the next op is due (the kernel's timer slack
/// makes a sleep last ≥ ~55 µs) and then issues every op whose time has come as a burst; at low
/// rates it sleeps until 20 µs before the op and spins (yielding) the rest. Either way latency
/// is measured from the intended start, so the pacer's lateness is charged, not hidden.
fn open_loop(wal: &Arc<Wal>, rate: f64, duration: Duration, trace: bool) -> anyhow::Result<OpenLoopResult> {
    let total = (rate * duration.as_secs_f64()).max(1.0) as u64;
    let (tx, rx) = crossbeam_channel::bounded::<(u64, u64, Ticket)>(1 << 16);
    let base = Instant::now();
    let wal2 = Arc::clone(wal);
    type Completed = (OpenLoopRecorder, Vec<(u64, u64)>, u64);
    let completer = std::thread::spawn(move || -> anyhow::Result<Completed> {
        let mut rec = OpenLoopRecorder::new();
        let mut tr = Vec::with_capacity(if trace { total as usize } else { 0 });
        let mut last_done = 0;
        for (intended, issued, ticket) in rx {
            let lsn = ticket.wait()?;
            let done = now_ns(base);
            rec.record(intended, issued, done);
            if trace {
                tr.push((lsn, done.saturating_sub(intended)));
            }
            drop(wal2.mark_executed(lsn)?);
            last_done = done;
        }
        Ok((rec, tr, last_done))
    });
    let sched = Schedule::new(now_ns(base) + 1_000_000, rate);
    let tick_mode = sched.interval_ns < TICK_BELOW_NS;
    let mut lag = new_histogram();
    let mut issue_err = None;
    let mut overloaded = None;
    let mut i = 0u64;
    'pace: while i < total {
        let due = sched.intended_ns(i);
        let now = now_ns(base);
        if now < due {
            let gap = due - now;
            if tick_mode {
                std::thread::sleep(Duration::from_nanos(gap));
                continue;
            }
            if gap >= SLEEP_ABOVE_NS {
                std::thread::sleep(Duration::from_nanos(gap - SPIN_TAIL_NS));
                continue;
            }
            while now_ns(base) < due {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
        // Issue every op whose intended start has passed (a burst in tick mode).
        let now = now_ns(base);
        while i < total && sched.intended_ns(i) <= now {
            let intended = sched.intended_ns(i);
            let intent = sample_intent(i);
            let issued = now_ns(base);
            record(&mut lag, issued.saturating_sub(intended).max(1));
            match append_retry(wal, &intent) {
                Ok(t) => {
                    if tx.send((intended, issued, t)).is_err() {
                        break 'pace;
                    }
                }
                Err(e @ WalError::InDoubtLimit { .. }) => {
                    overloaded = Some(format!("stopped after {i} of {total} ops: {e}"));
                    break 'pace;
                }
                Err(e) => {
                    issue_err = Some(e);
                    break 'pace;
                }
            }
            i += 1;
        }
    }
    drop(tx);
    let (rec, tr, last_done) = completer.join().map_err(|_| anyhow::anyhow!("completer panicked"))??;
    if let Some(e) = issue_err {
        return Err(e.into());
    }
    let secs = (last_done.saturating_sub(sched.start_ns)) as f64 / 1e9;
    let achieved = rec.len() as f64 / secs.max(1e-9);
    Ok(OpenLoopResult { rec, lag, offered: rate, achieved, secs, trace: tr, overloaded })
}

/// Pipelined: one producer keeps `outstanding` appends in flight for `duration`, marking each
/// intent executed as soon as it is durable (the outcome's ticket is dropped, not waited), as
/// engine/examples/pipelined.rs does. Latency is sampled on one intent in 64 (two clock reads per
/// intent would be a visible share of the producer's work).
fn pipelined(wal: &Wal, outstanding: usize, duration: Duration) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64, f64)> {
    const SAMPLE_EVERY: u64 = 64;
    let mut q: VecDeque<(u64, Ticket)> = VecDeque::with_capacity(outstanding);
    let mut hist = new_histogram();
    let start = Instant::now();
    let deadline_ns = duration.as_nanos() as u64;
    let mut i = 0u64;
    let mut done = 0u64;
    let finish = |t0: u64, t: Ticket, hist: &mut hdrhistogram::Histogram<u64>| -> anyhow::Result<()> {
        let lsn = t.wait()?;
        if t0 != 0 {
            record(hist, now_ns(start).saturating_sub(t0));
        }
        drop(wal.mark_executed(lsn)?);
        Ok(())
    };
    loop {
        if i % 1024 == 0 && now_ns(start) >= deadline_ns {
            break;
        }
        if q.len() >= outstanding {
            let (t0, t) = q.pop_front().expect("queue is full");
            finish(t0, t, &mut hist)?;
            done += 1;
        }
        let t0 = if i % SAMPLE_EVERY == 0 { now_ns(start).max(1) } else { 0 };
        let mut intent = sample_intent(0);
        intent.ts_ns += i as i64;
        i += 1;
        q.push_back((t0, append_retry(wal, &intent)?));
    }
    // The drain is part of the time: only durable intents count.
    while let Some((t0, t)) = q.pop_front() {
        finish(t0, t, &mut hist)?;
        done += 1;
    }
    Ok((hist, done, start.elapsed().as_secs_f64()))
}

/// [`pipelined`] with `producers` threads sharing `outstanding` (each keeps its share in flight).
fn pipelined_n(
    wal: &Wal,
    producers: usize,
    outstanding: usize,
    duration: Duration,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64, f64)> {
    if producers <= 1 {
        return pipelined(wal, outstanding, duration);
    }
    let start = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..producers).map(|_| s.spawn(|| pipelined(wal, (outstanding / producers).max(1), duration))).collect();
        hs.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("producer panicked"))?).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut hist = new_histogram();
    let mut ops = 0;
    for r in results {
        let (h, n, _) = r?;
        hist.add(h).expect("same bounds");
        ops += n;
    }
    Ok((hist, ops, secs))
}

/// CPU time (ns) used so far by this process's threads named `tradewal-writer` (the first field of
/// `/proc/self/task/TID/schedstat`; 0 where /proc does not say).
pub(crate) fn writer_cpu_ns() -> u64 {
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else { return 0 };
    rd.flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "tradewal-writer"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok()?.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn close(wal: Arc<Wal>) -> anyhow::Result<()> {
    match Arc::try_unwrap(wal) {
        Ok(w) => Ok(w.close()?),
        Err(_) => anyhow::bail!("tradewal still shared at close"),
    }
}

fn row(system: &str, hist: hdrhistogram::Histogram<u64>, ops: u64, secs: f64, note: Option<String>) -> Row {
    Row { system: system.into(), hist, ops, secs, note }
}

/// Runs the tradewal-only workloads (`open`, `pipelined`, `rotation`, `append`, `recovery`; those
/// `wants` accepts); returns their tables and the targets they check.
pub fn run_tradewal_workloads(
    p: &Params,
    progress: bool,
    wants: &dyn Fn(&str) -> bool,
    fresh: FreshDir<'_>,
) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    let say = |m: &str| {
        if progress {
            eprintln!("[bench] {m}");
        }
    };
    let mut workloads = Vec::new();
    let mut targets = Vec::new();
    type Section = fn(&Params, &dyn Fn(&str), FreshDir<'_>) -> anyhow::Result<(Vec<Workload>, Vec<Target>)>;
    let sections: [(&str, &str, Section); 6] = [
        ("qd1open", "QD1 right after open", qd1_open_section),
        ("open", "open loop", open_loop_section),
        ("pipelined", "pipelined", pipelined_section),
        ("rotation", "rotation", rotation_section),
        ("append", "append cost", append_section),
        ("recovery", "recovery", recovery_section),
    ];
    for (id, name, f) in sections {
        if !wants(id) {
            continue;
        }
        match f(p, &say, &mut *fresh) {
            Ok((w, t)) => {
                workloads.extend(w);
                targets.extend(t);
            }
            Err(e) => targets.push(Target::not_measured(&format!("tradewal {name}"), "see issue", &format!("failed: {e:#}"))),
        }
    }
    Ok((workloads, targets))
}

/// QD1 right after `Wal::open` with `WalConfig` defaults (no pause): one producer appends and waits
/// for each intent; the histogram of the first `n` appends of a fresh log.
fn qd1_after_open(dir: &Path, n: u64) -> anyhow::Result<(hdrhistogram::Histogram<u64>, f64)> {
    let wal = Wal::open(WalConfig::new(dir)).with_context(|| format!("opening tradewal in {}", dir.display()))?;
    let mut hist = new_histogram();
    let start = Instant::now();
    for i in 0..n {
        let mut intent = sample_intent(i);
        intent.ts_ns += i as i64;
        let t = Instant::now();
        wal.append(&intent)?.wait()?;
        record(&mut hist, t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    wal.close()?;
    Ok((hist, secs))
}

/// The first 2 000 appends after open and a run long enough to rotate once (default 64 MiB segments
/// hold ~16 000 QD1 batches), each on a fresh log, against both floors (sleeping and spinning
/// waiter), all alternating in rounds.
fn qd1_open_section(p: &Params, say: &dyn Fn(&str), fresh: FreshDir<'_>) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    say("QD1 right after Wal::open (defaults, no pause) against both floors");
    let floor_dir = fresh("qd1open-floor")?;
    let long = p.qd1_open_long;
    let names = [
        "floor (uring RWF_DSYNC)".to_string(),
        "spin-floor (uring RWF_DSYNC, CQ polled)".to_string(),
        "tradewal-dsync: first 2000 after open".to_string(),
        format!("tradewal-dsync: {long} after open"),
    ];
    let mut rows: Vec<Row> = names.iter().map(|n| row(n, new_histogram(), 0, 0.0, None)).collect();
    for round in 0..p.rounds.max(1) as usize {
        for j in 0..rows.len() {
            let i = (j + round) % rows.len();
            let (hist, ops, secs) = match i {
                0 | 1 => {
                    let probe = if i == 0 { device::Probe::UringDsync } else { device::Probe::UringDsyncSpin };
                    let samples = device::measure(probe, &floor_dir, 2000)?;
                    let mut h = new_histogram();
                    for d in &samples {
                        record(&mut h, d.as_nanos() as u64);
                    }
                    (h, samples.len() as u64, samples.iter().map(|d| d.as_secs_f64()).sum())
                }
                _ => {
                    let n = if i == 2 { 2000 } else { long };
                    let dir = fresh(&format!("qd1open-{i}-{round}"))?;
                    let (h, secs) = qd1_after_open(&dir, n)?;
                    let _ = std::fs::remove_dir_all(&dir);
                    (h, n, secs)
                }
            };
            rows[i].hist.add(hist).expect("same bounds");
            rows[i].ops += ops;
            rows[i].secs += secs;
        }
    }
    let us = |r: &Row, q: f64| r.hist.value_at_quantile(q) as f64 / 1e3;
    let (f50, f999) = (us(&rows[0], 0.5).min(us(&rows[1], 0.5)), us(&rows[0], 0.999).min(us(&rows[1], 0.999)));
    let mut targets = Vec::new();
    for r in &rows[2..] {
        let (p50, p999) = (us(r, 0.5), us(r, 0.999));
        targets.push(Target {
            what: format!("QD1 p50 vs the better floor's p50 ({})", r.system),
            target: "<= 1.10x".into(),
            figure: format!("{p50:.1} us vs {f50:.1} us = {:.2}x", p50 / f50),
            met: Some(p50 <= 1.10 * f50),
        });
        targets.push(Target {
            what: format!("QD1 p99.9 vs the better floor's p99.9 ({})", r.system),
            target: "<= 1.5x".into(),
            figure: format!("{p999:.1} us vs {f999:.1} us = {:.2}x", p999 / f999),
            met: Some(p999 <= 1.5 * f999),
        });
    }
    let notes = vec![
        format!(
            "{} rounds; each round: both floors (2000 samples each) and two fresh logs opened with WalConfig defaults and timed from the first append (no pause after Wal::open): 2000 appends, then {long} (one rotation with 64 MiB segments: the next spare is zero-filled while the log runs)",
            p.rounds.max(1)
        ),
        "append -> Ticket::wait() -> next, intents only; the better floor is the lower of the two floor rows at each percentile".into(),
    ];
    Ok((vec![Workload { id: "qd1open".into(), title: "QD1 right after Wal::open, against both floors".into(), rows, notes }], targets))
}

fn open_loop_section(p: &Params, say: &dyn Fn(&str), fresh: FreshDir<'_>) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    let mut workloads = Vec::new();
    let mut targets = Vec::new();
    say("open loop (tradewal-dsync), rising offered rate");
    let dir = fresh("open-loop")?;
    let wal = Arc::new(open_ready(config(Kind::TradewalDsync, &dir))?);
    let mut rows = Vec::new();
    let mut notes = vec![
        "latency from the intended start (schedule i/rate), so stalls and the pacer's own lateness are charged to every op behind them (coordinated omission corrected)".to_string(),
        "pacer: sleeps until the next op is due (>= ~55 us with the kernel's timer slack), then issues every op whose time has come as a burst; it never busy-spins a core (that would starve the pinned writer on 2 CPUs). A completer thread waits the tickets in order (Ticket::wait) and marks each intent executed (not waited)".to_string(),
        "peers are not run open loop: their call blocks until durable, so one pacer could not keep the schedule".to_string(),
    ];
    let mut best_sustained = 0.0f64;
    let mut at_1m: Option<(f64, f64, bool)> = None;
    for &rate in &p.open_rates {
        let r = open_loop(&wal, rate, p.open_duration, false)?;
        let p999_us = r.rec.corrected.value_at_quantile(0.999) as f64 / 1e3;
        let sustained = r.overloaded.is_none() && r.achieved >= 0.95 * r.offered && r.rec.corrected.value_at_quantile(0.99) < 10_000_000;
        if sustained {
            best_sustained = best_sustained.max(rate);
        }
        if (rate - 1e6).abs() < 1.0 {
            at_1m = Some((p999_us, r.achieved, sustained));
        }
        notes.push(format!(
            "offered {:.0}k/s: achieved {:.0}k/s, p99.9 {:.1} us (uncorrected {:.1} us); pacer lag p50 {:.1} us, p99.9 {:.1} us, max {:.1} us{}",
            rate / 1e3,
            r.achieved / 1e3,
            p999_us,
            r.rec.uncorrected.value_at_quantile(0.999) as f64 / 1e3,
            r.lag.value_at_quantile(0.5) as f64 / 1e3,
            r.lag.value_at_quantile(0.999) as f64 / 1e3,
            r.lag.max() as f64 / 1e3,
            if sustained { "" } else { "  NOT SUSTAINED" }
        ));
        if let Some(why) = &r.overloaded {
            notes.push(format!("  offered {:.0}k/s: {why}", rate / 1e3));
        }
        let n = r.rec.len();
        rows.push(row(&format!("tradewal-dsync @ {:.0}k/s", rate / 1e3), r.rec.corrected, n, r.secs, None));
        // Climb while the throughput keeps up; the latency verdict is in the notes.
        if r.overloaded.is_some() || r.achieved < 0.95 * r.offered {
            break;
        }
    }
    close(wal)?;
    notes.push(format!("highest offered rate sustained (>= 95% achieved, p99 < 10 ms): {:.0}k/s", best_sustained / 1e3));
    targets.push(match at_1m {
        Some((v, achieved, sustained)) => Target {
            what: "open loop 1M/s offered: p99.9 (CO-corrected)".into(),
            target: "<= 1000 us".into(),
            figure: format!(
                "{v:.1} us, achieved {:.0}k/s{}; highest sustained {:.0}k/s",
                achieved / 1e3,
                if sustained { "" } else { " (not sustained)" },
                best_sustained / 1e3
            ),
            met: Some(v <= 1000.0 && sustained),
        },
        None => Target::not_measured(
            "open loop 1M/s p99.9",
            "<= 1000 us",
            &format!("1M/s not reached (a lower rate was not sustained); highest sustained {:.0}k/s", best_sustained / 1e3),
        ),
    });
    workloads.push(Workload { id: "open".into(), title: "Open loop, tradewal-dsync, fixed offered rates".into(), rows, notes });
    Ok((workloads, targets))
}

fn pipelined_section(p: &Params, say: &dyn Fn(&str), fresh: FreshDir<'_>) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    let mut workloads = Vec::new();
    let mut targets = Vec::new();
    let bytes_per_intent = intent_bytes_on_disk();
    say("pipelined throughput and the device bandwidth limit");
    let bw_dir = fresh("bandwidth")?;
    let bw = device::bandwidth(&bw_dir, 1 << 20, p.bandwidth_bytes)?;
    let limit = bw / (2.0 * bytes_per_intent);
    let mut rows = Vec::new();
    let mut notes = vec![format!(
        "device (same run): sequential 1 MiB O_DIRECT RWF_DSYNC writes, 2 in flight: {:.2} GB/s; an intent takes {:.0} B in the log and its Executed outcome about as much again: bandwidth bound {:.2} M intents/s",
        bw / 1e9,
        bytes_per_intent,
        limit / 1e6
    )];
    // (system, producers): both modes with one producer, the default mode with four.
    let runs = [(Kind::TradewalDsync, 1), (Kind::TradewalLinked, 1), (Kind::TradewalDsync, 4)];
    let mut one = None;
    let mut four = None;
    for (kind, producers) in runs {
        let label = if producers == 1 { kind.label().to_string() } else { format!("{}, {producers} producers", kind.label()) };
        let dir = fresh(&format!("pipelined-{}-{producers}", kind.label()))?;
        // WalConfig defaults (but the durability mode), timed from right after open.
        let wal = Wal::open(config(kind, &dir)).with_context(|| format!("opening tradewal in {}", dir.display()))?;
        let before = wal.stats();
        let cpu_before = writer_cpu_ns();
        let (hist, ops, secs) = pipelined_n(&wal, producers, p.pipelined_outstanding, p.pipelined_duration)?;
        let writer_ns = writer_cpu_ns().saturating_sub(cpu_before);
        let st = wal.stats();
        wal.close()?;
        let rate = ops as f64 / secs;
        let batches = st.batches - before.batches;
        let records = st.records - before.records;
        let per_batch = records as f64 / batches.max(1) as f64;
        let mbps = (st.bytes - before.bytes) as f64 / secs / 1e6;
        let cpu_per_record = writer_ns as f64 / records.max(1) as f64;
        match (kind, producers) {
            (Kind::TradewalDsync, 1) => one = Some((rate, per_batch, mbps, cpu_per_record)),
            (Kind::TradewalDsync, _) => four = Some(rate),
            _ => {}
        }
        notes.push(format!(
            "{label}: {:.2} M durable intents/s; {} batches, {:.0} records/batch, {:.0} MB/s written = {:.2} of the device bandwidth; {:.2} of the bandwidth bound in intents; writer thread CPU {:.0} ns per record ({:.0}% of the run)",
            rate / 1e6,
            batches,
            per_batch,
            mbps,
            mbps * 1e6 / bw,
            rate / limit,
            cpu_per_record,
            writer_ns as f64 / 1e9 / secs * 100.0
        ));
        rows.push(row(&label, hist, ops, secs, Some(format!("{} outstanding", p.pipelined_outstanding))));
    }
    notes.push(format!(
        "{} appends outstanding (shared evenly by the producers), {:?}, WalConfig defaults, timed from right after Wal::open; each durable intent is marked executed at once (outcome ticket dropped, not waited), as engine/examples/pipelined.rs; latency sampled on 1 intent in 64 (queueing dominates); writer CPU from /proc/self/task/*/schedstat of the thread tradewal-writer",
        p.pipelined_outstanding, p.pipelined_duration
    ));
    notes.push("peers are not run pipelined: their append call blocks until durable".into());
    let (rate, per_batch, mbps, cpu) = one.expect("dsync row measured");
    targets.push(Target {
        what: "pipelined durable intents/s, one producer, intent + outcome each (tradewal-dsync)".into(),
        target: ">= 5,000,000/s".into(),
        figure: format!("{:.2} M/s, {:.0} records/batch, writer CPU {:.0} ns/record", rate / 1e6, per_batch, cpu),
        met: Some(rate >= 5e6),
    });
    targets.push(Target {
        what: "pipelined: share of the device's sequential bandwidth (same run)".into(),
        target: ">= 0.50".into(),
        figure: format!("{:.0} MB/s of {:.0} MB/s = {:.2}", mbps, bw / 1e6, mbps * 1e6 / bw),
        met: Some(mbps * 1e6 / bw >= 0.5),
    });
    let four = four.expect("four-producer row measured");
    targets.push(Target {
        what: "pipelined: four producers together vs one".into(),
        target: ">= 1.0x".into(),
        figure: format!("{:.2} M/s vs {:.2} M/s = {:.2}x", four / 1e6, rate / 1e6, four / rate),
        met: Some(four >= rate),
    });
    workloads.push(Workload { id: "pipelined".into(), title: "Pipelined throughput, one and four producers".into(), rows, notes });
    Ok((workloads, targets))
}

fn rotation_section(p: &Params, say: &dyn Fn(&str), fresh: FreshDir<'_>) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    let mut workloads = Vec::new();
    let targets: Vec<Target> = Vec::new();
    // --- rotation -----------------------------------------------------------------------------
    say("rotation under load");
    let mut rows = Vec::new();
    let mut notes = vec![format!(
        "open loop at {:.0}k/s for {:?}; small segments rotate often, large ones not at all in the run",
        p.rotation_rate / 1e3,
        p.rotation_duration
    )];
    for (label, seg) in [("small", p.rotation_segment_bytes), ("large", 1u64 << 30)] {
        let dir = fresh(&format!("rotation-{label}"))?;
        let wal = Arc::new(open_ready(config(Kind::TradewalDsync, &dir).segment_bytes(seg).max_in_doubt(1 << 14))?);
        let r = open_loop(&wal, p.rotation_rate, p.rotation_duration, true)?;
        if let Some(why) = &r.overloaded {
            notes.push(format!("{label} segments: {why}"));
        }
        let st = wal.stats();
        close(wal)?;
        let bases = segment_base_lsns(&dir)?;
        let window = (p.rotation_rate / 1000.0).max(16.0) as u64; // ~1 ms of ops each side
        let mut near = new_histogram();
        let mut far = new_histogram();
        for &(lsn, lat) in &r.trace {
            let close_to = bases.iter().skip(1).any(|&b| lsn + window >= b && lsn <= b + window);
            record(if close_to { &mut near } else { &mut far }, lat);
        }
        notes.push(format!(
            "{label} segments ({} MiB): {} segments used, {} rotations, writer waited for a spare {:.1} us in all (max {:.1} us); ops within ~1 ms of a segment start: {} (max {:.1} us, p99 {:.1} us); elsewhere p99 {:.1} us, max {:.1} us",
            seg >> 20,
            bases.len(),
            st.rotations,
            st.rotation_wait_ns as f64 / 1e3,
            st.rotation_wait_ns_max as f64 / 1e3,
            near.len(),
            if near.is_empty() { 0.0 } else { near.max() as f64 / 1e3 },
            if near.is_empty() { 0.0 } else { near.value_at_quantile(0.99) as f64 / 1e3 },
            far.value_at_quantile(0.99) as f64 / 1e3,
            far.max() as f64 / 1e3,
        ));
        rows.push(row(&format!("tradewal-dsync, {} MiB segments", seg >> 20), r.rec.corrected.clone(), r.rec.len(), r.secs, None));
    }
    workloads.push(Workload { id: "rotation".into(), title: "Rotation under load (open loop)".into(), rows, notes });

    Ok((workloads, targets))
}

fn append_section(p: &Params, say: &dyn Fn(&str), fresh: FreshDir<'_>) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    let mut workloads = Vec::new();
    let mut targets = Vec::new();
    // --- append cost --------------------------------------------------------------------------
    say("producer-side append cost");
    let dir = fresh("append-cost")?;
    let wal = open_ready(config(Kind::TradewalDsync, &dir))?;
    const CHUNK: usize = 64;
    let mut hist = new_histogram();
    let mut tickets: Vec<Ticket> = Vec::with_capacity(CHUNK);
    let intents: Vec<_> = (0..CHUNK as u64).map(sample_intent).collect();
    let mut calls = 0u64;
    let mut timed = Duration::ZERO;
    while calls < p.append_calls {
        let t = Instant::now();
        for it in &intents {
            tickets.push(append_retry(&wal, it)?);
        }
        let d = t.elapsed();
        timed += d;
        record(&mut hist, d.as_nanos() as u64 / CHUNK as u64);
        calls += CHUNK as u64;
        for t in tickets.drain(..) {
            let lsn = t.wait()?;
            drop(wal.mark_executed(lsn)?);
        }
    }
    wal.close()?;
    let mean_ns = timed.as_nanos() as f64 / calls as f64;
    targets.push(Target {
        what: "append() producer-side cost".into(),
        target: "<= 300 ns".into(),
        figure: format!("{mean_ns:.0} ns mean"),
        met: Some(mean_ns <= 300.0),
    });
    workloads.push(Workload {
        id: "append".into(),
        title: "Producer-side cost of append() alone".into(),
        rows: vec![row("tradewal append()", hist, calls, timed.as_secs_f64(), Some(format!("mean {mean_ns:.0} ns/call")))],
        notes: vec![format!(
            "{calls} calls in bursts of {CHUNK} (each burst timed, /{CHUNK}); tickets waited between bursts, untimed; table in us per call"
        )],
    });

    Ok((workloads, targets))
}

fn recovery_section(p: &Params, say: &dyn Fn(&str), fresh: FreshDir<'_>) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    let mut targets = Vec::new();
    say(&format!("recovery: writing a {} MiB log", p.recovery_bytes >> 20));
    let dir = fresh("recovery")?;
    let wal = open_ready(config(Kind::TradewalDsync, &dir))?;
    let mut q: VecDeque<Ticket> = VecDeque::with_capacity(p.pipelined_outstanding);
    let mut target_intents = 0u64;
    for i in 0.. {
        // Write until the log holds `recovery_bytes` (checked every 64k intents).
        if i % 65_536 == 0 && wal.stats().bytes >= p.recovery_bytes {
            break;
        }
        target_intents = i + 1;
        if q.len() >= p.pipelined_outstanding {
            let lsn = q.pop_front().expect("non-empty").wait()?;
            drop(wal.mark_executed(lsn)?);
        }
        q.push_back(append_retry(&wal, &sample_intent(i))?);
    }
    while let Some(t) = q.pop_front() {
        let lsn = t.wait()?;
        drop(wal.mark_executed(lsn)?);
    }
    wal.close()?;
    let file_bytes = dir_bytes(&dir);

    // The scan alone: tradewal::read_log (O_DIRECT reads, checksums, decode, continuity, in-doubt
    // set), no fsync, no repair, no new segment. Three passes; the table has each.
    say("recovery: read_log scan rate");
    let mut scan_hist = new_histogram();
    let mut best: Option<(f64, u64, u64, u64)> = None; // (secs, file bytes, written bytes, records)
    let mut scan_notes = Vec::new();
    for pass in 0..3 {
        let mut records = 0u64;
        let t = Instant::now();
        let r = tradewal::read_log(&dir, |_, _| records += 1)?;
        let secs = t.elapsed().as_secs_f64();
        let files: u64 = r.files.iter().map(|(_, f)| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0)).sum();
        let written: u64 = r
            .state
            .segments
            .iter()
            .map(|s| match s.end {
                tradewal_codec::SegmentEnd::Clean { end_offset, .. } => end_offset,
                _ => 0,
            })
            .sum();
        record(&mut scan_hist, (secs * 1e9) as u64);
        scan_notes.push(format!(
            "read_log pass {}: {} segment files, {:.0} MB of files ({:.0} MB written), {records} records in {:.3} s: {:.2} GB/s of files, {:.2} GB/s of written data, {:.1} M records/s",
            pass + 1,
            r.files.len(),
            files as f64 / 1e6,
            written as f64 / 1e6,
            secs,
            files as f64 / secs / 1e9,
            written as f64 / secs / 1e9,
            records as f64 / secs / 1e6
        ));
        if best.is_none_or(|b| secs < b.0) {
            best = Some((secs, files, written, records));
        }
    }
    let (scan_secs, files, written, records) = best.expect("three passes");

    // Wal::open on the same log: fsync of every segment and the directory, the same scan,
    // repair if needed, then the new session's first segment (created and zero-filled).
    say("recovery: Wal::open time");
    let t = Instant::now();
    let wal = Wal::open(config(Kind::TradewalDsync, &dir))?;
    let open_secs = t.elapsed().as_secs_f64();
    let recovered = wal.recovered().counts.intents + wal.recovered().counts.executed;
    wal.close()?;
    let mut open_hist = new_histogram();
    record(&mut open_hist, (open_secs * 1e9) as u64);

    let gbps = files as f64 / scan_secs / 1e9;
    targets.push(Target {
        what: "recovery scan rate (read_log, best of 3)".into(),
        target: ">= 1 GB/s".into(),
        figure: format!(
            "{gbps:.2} GB/s of segment files ({:.2} GB/s of written data, {:.1} M records/s; {:.0} MB in {:.3} s)",
            written as f64 / scan_secs / 1e9,
            records as f64 / scan_secs / 1e6,
            files as f64 / 1e6,
            scan_secs
        ),
        met: Some(gbps >= 1.0),
    });
    let mut notes = vec![format!(
        "{target_intents} intents, each marked executed, written pipelined ({} outstanding), then closed; segment files total {:.0} MB (the unused spare included)",
        p.pipelined_outstanding,
        file_bytes as f64 / 1e6
    )];
    notes.extend(scan_notes);
    notes.push(format!(
        "Wal::open of the same log: {:.3} s ({recovered} intent and outcome records); beyond the scan it fsyncs every segment and the directory and creates and zero-fills the new session's first segment",
        open_secs
    ));
    let workloads = vec![Workload {
        id: "recovery".into(),
        title: "Recovery: read_log scan and Wal::open on an existing log (table: durations in us)".into(),
        rows: vec![
            row("read_log scan (3 passes)", scan_hist, 3, 0.0, Some(format!("best {gbps:.2} GB/s of files"))),
            row("Wal::open (fsync + scan + new segment)", open_hist, 1, 0.0, Some(format!("{:.3} s", open_secs))),
        ],
        notes,
    }];
    Ok((workloads, targets))
}

/// Base LSN of every segment in `dir`, from the segment headers (sorted).
fn segment_base_lsns(dir: &Path) -> anyhow::Result<Vec<u64>> {
    use std::io::Read;
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if tradewal_codec::SegmentName::parse(&name).is_none() {
            continue;
        }
        let mut block = vec![0u8; tradewal_codec::BLOCK_BYTES];
        let mut f = std::fs::File::open(e.path())?;
        if f.read_exact(&mut block).is_ok() {
            if let Ok(h) = tradewal_codec::SegmentHeader::decode(&block) {
                v.push(h.base_lsn);
            }
        }
    }
    v.sort_unstable();
    Ok(v)
}

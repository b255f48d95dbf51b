//! `tradewal demo`: the whole pattern end to end, with an honest latency report.
//!
//! P strategy threads each append an intent and wait for its own ticket (queue depth 1 per
//! thread), so batching happens only across threads (group commit). A simulated exchange thread
//! executes most intents, aborts about 2% and leaves about 1% unresolved. Then the process
//! "crashes" (the `Wal` is dropped without `close`), reopens the log, lists what is in doubt,
//! checks that count against what the exchange left unresolved, exports JSONL and prints the
//! append→durable latency beside the device floor measured in the same run.

use crate::export::export_to;
use crate::{CmdResult, Failure};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tradewal::{Lsn, Side, Symbol, Ticket, TradeIntent, Wal, WalConfig, WalError};
use tradewal_codec::{write_intent_line, IntentStatus, SegmentName};

const SYMBOLS: [&str; 8] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "LINKUSDT"];
const BASE_PRICES: [f64; 8] = [43250.5, 2280.25, 98.4, 0.6123, 0.5871, 0.0912, 35.12, 14.77];
/// Files the demo itself leaves in its directory besides the log.
const EXPORT_FILE: &str = "export.jsonl";
const HGRM_FILE: &str = "latency_us.hgrm";
/// Device floor samples (one 4 KiB O_DIRECT O_DSYNC pwrite each, QD1).
const FLOOR_SAMPLES: usize = 2000;
/// Outcome tickets the exchange keeps unresolved before it waits for the oldest.
const EXCHANGE_WINDOW: usize = 4096;
/// In-doubt intents shown after the reopen.
const SHOW_IN_DOUBT: usize = 5;

fn fail(context: &str, e: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("{context}: {e}"))
}

/// True for names a tradewal log directory (or an earlier demo) holds.
fn is_log_entry(name: &str) -> bool {
    name == "LOCK"
        || name == EXPORT_FILE
        || name == HGRM_FILE
        || name == tradewal::manifest::MANIFEST_FILE
        || name == tradewal::manifest::MANIFEST_TMP
        || name == tradewal::follower::WATERMARK_FILE
        || SegmentName::parse(name).is_some()
        || name.strip_suffix(".tmp").and_then(SegmentName::parse).is_some()
        || (name.starts_with(".tradewal-") && (name.contains("-probe-") || name.starts_with(".tradewal-measure-")))
}

/// Makes `dir` ready for a fresh log: removes it only if it is empty or a tradewal log directory.
fn prepare_dir(dir: &Path) -> CmdResult {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(&dir.display().to_string(), e)),
    };
    if !meta.is_dir() {
        return Err(Failure::usage(format!("{} exists and is not a directory; refusing to touch it", dir.display())));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| fail(&format!("listing {}", dir.display()), e))? {
        let entry = entry.map_err(|e| fail(&format!("listing {}", dir.display()), e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    let is_log = names.iter().any(|n| n == "LOCK" || SegmentName::parse(n).is_some());
    let removable = names.is_empty() || (is_log && names.iter().all(|n| is_log_entry(n)));
    if !removable {
        return Err(Failure::usage(format!(
            "{} exists and is neither empty nor a tradewal demo log; refusing to remove it (use --dir)",
            dir.display()
        )));
    }
    for n in &names {
        std::fs::remove_file(dir.join(n)).map_err(|e| fail(&format!("removing {}", dir.join(n).display()), e))?;
    }
    std::fs::remove_dir(dir).map_err(|e| fail(&format!("removing {}", dir.display()), e))
}

/// A small deterministic generator (xorshift64*): varied intents without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

fn make_intent(rng: &mut Rng, symbols: &[Symbol]) -> TradeIntent {
    let i = (rng.next() % symbols.len() as u64) as usize;
    let side = if rng.next() & 1 == 0 { Side::Buy } else { Side::Sell };
    let base = BASE_PRICES[i];
    let price = base * (1.0 + (rng.unit() - 0.5) * 0.002);
    let qty = ((rng.unit() * 5.0 + 0.01) * 1000.0).round() / 1000.0;
    let (sl, tp) = match side {
        Side::Buy => (price * 0.99, price * 1.02),
        Side::Sell => (price * 1.01, price * 0.98),
    };
    // Every fifth intent has no stop loss / take profit (0 = not set).
    let (sl, tp) = if rng.next() % 5 == 0 { (0.0, 0.0) } else { (sl, tp) };
    TradeIntent {
        ts_ns: now_ns(),
        symbol: symbols[i],
        side,
        price,
        qty,
        stop_loss: sl,
        take_profit: tp,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

/// What the simulated exchange does with an intent (a hash of its LSN: stable, about 97/2/1 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Execute,
    Abort,
    Unresolved,
}

fn fate(lsn: Lsn) -> Fate {
    let mut z = lsn.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    match (z ^ (z >> 31)) % 100 {
        0 | 1 => Fate::Abort,
        2 => Fate::Unresolved,
        _ => Fate::Execute,
    }
}

#[derive(Debug, Default)]
struct ExchangeCounts {
    executed: u64,
    aborted: u64,
    unresolved: u64,
}

fn exchange(wal: &Wal, rx: mpsc::Receiver<Lsn>) -> Result<ExchangeCounts, WalError> {
    let mut c = ExchangeCounts::default();
    let mut pending: VecDeque<Ticket> = VecDeque::with_capacity(EXCHANGE_WINDOW);
    for lsn in rx {
        let t = match fate(lsn) {
            Fate::Execute => {
                c.executed += 1;
                wal.mark_executed(lsn)?
            }
            Fate::Abort => {
                c.aborted += 1;
                wal.mark_aborted(lsn)?
            }
            Fate::Unresolved => {
                c.unresolved += 1;
                continue;
            }
        };
        pending.push_back(t);
        // Reap resolved outcome tickets; wait for the oldest only when the window is full.
        while pending.front().is_some_and(|t| t.is_done()) || pending.len() > EXCHANGE_WINDOW {
            pending.pop_front().expect("non-empty").wait()?;
        }
    }
    for t in pending {
        t.wait()?;
    }
    Ok(c)
}

/// The device floor as a plain synchronous write sees it: `samples` latencies of one 4 KiB
/// `pwrite` to a file opened `O_DIRECT | O_DSYNC`, at queue depth 1, at sequential offsets of a
/// zero-filled, fsynced scratch file in `dir` (at most 8 MiB, offsets wrap) removed afterwards.
/// Safe std calls only; the bench's io_uring probes
/// (`tradewal-bench`, device section) measure the same write through the ring.
fn measure_floor(dir: &Path, samples: usize) -> std::io::Result<Vec<Duration>> {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    const BLOCK: usize = 4096;
    let blocks = samples.clamp(1, 2048);
    let path = dir.join(format!(".tradewal-measure-demo-{}.tmp", std::process::id()));
    let measured = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(&vec![0u8; blocks * BLOCK])?;
        f.sync_all()?;
        drop(f);
        let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT | libc::O_DSYNC).open(&path)?;
        // O_DIRECT wants a 4096-aligned buffer: the aligned 4 KiB inside an 8 KiB allocation.
        let mut raw = vec![0u8; 2 * BLOCK];
        let at = raw.as_ptr().align_offset(BLOCK);
        let block = &mut raw[at..at + BLOCK];
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples {
            block[0] = i as u8;
            let offset = ((i % blocks) * BLOCK) as u64;
            let t0 = Instant::now();
            let n = file.write_at(block, offset)?;
            let elapsed = t0.elapsed();
            if n != BLOCK {
                return Err(std::io::Error::other(format!("short write: {n} of {BLOCK} bytes")));
            }
            lat.push(elapsed);
        }
        Ok(lat)
    })();
    let _ = std::fs::remove_file(&path);
    measured
}

fn percentile_us(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_nanos() as f64 / 1000.0
}

/// `tradewal demo`.
pub fn run(dir: &Path, intents: u64, producers: usize) -> CmdResult {
    prepare_dir(dir)?;
    let mut out = String::new();
    let config = WalConfig::new(dir);
    let wal = Wal::open(config.clone()).map_err(|e| fail(&format!("opening {}", dir.display()), e))?;
    let _ = writeln!(out, "tradewal demo: {} intents from {} strategy threads into {}", intents, producers, dir.display());
    let _ = writeln!(out, "backend: {}", wal.backend());
    print!("{out}");
    let _ = std::io::stdout().flush();
    out.clear();

    let symbols: Vec<Symbol> = SYMBOLS.iter().map(|s| Symbol::new(s).expect("valid demo symbol")).collect();
    let pb = crate::scan::progress(Some(intents), "appending");
    let (tx, rx) = mpsc::channel::<Lsn>();
    let started = Instant::now();
    let (hist, counts) = std::thread::scope(|s| -> Result<(Histogram<u64>, ExchangeCounts), Failure> {
        let wal = &wal;
        let ex = s.spawn(move || exchange(wal, rx));
        let mut handles = Vec::new();
        for p in 0..producers {
            let n = intents / producers as u64 + u64::from((p as u64) < intents % producers as u64);
            let tx = tx.clone();
            let symbols = &symbols;
            let pb = &pb;
            handles.push(s.spawn(move || -> Result<Histogram<u64>, WalError> {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
                let mut rng = Rng(0x243F_6A88_85A3_08D3 ^ ((p as u64 + 1) << 17));
                for k in 0..n {
                    let intent = make_intent(&mut rng, symbols);
                    let t0 = Instant::now();
                    let lsn = wal.append(&intent)?.wait()?; // durable now (I1)
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                    // The exchange may have stopped on an error; the producer's own error wins.
                    let _ = tx.send(lsn);
                    if k % 64 == 63 {
                        pb.inc(64);
                    }
                }
                pb.inc(n % 64);
                Ok(h)
            }));
        }
        drop(tx);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(h)) => hist.add(h).map_err(|e| fail("merging histograms", e))?,
                Ok(Err(e)) => {
                    first_err.get_or_insert(fail("append", e));
                }
                Err(_) => {
                    first_err.get_or_insert(Failure::usage("a strategy thread panicked"));
                }
            }
        }
        let counts = match ex.join() {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(first_err.unwrap_or_else(|| fail("exchange", e))),
            Err(_) => return Err(Failure::usage("the exchange thread panicked")),
        };
        match first_err {
            Some(e) => Err(e),
            None => Ok((hist, counts)),
        }
    })?;
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    let stats = wal.stats();
    let backend = wal.backend().to_string();
    let durable = wal.durable_lsn();
    let _ = writeln!(
        out,
        "appended {} intents in {:.2} s; exchange: {} executed, {} aborted, {} left unresolved",
        intents,
        elapsed.as_secs_f64(),
        counts.executed,
        counts.aborted,
        counts.unresolved
    );

    // The crash: every ticket above was waited for, so everything is durable; drop, no close.
    drop(wal);
    let _ = writeln!(out, "crash: dropped the log without close (durable LSN {durable})");

    let wal = Wal::open(config).map_err(|e| fail(&format!("reopening {}", dir.display()), e))?;
    let rec = wal.recovered().clone();
    let _ = writeln!(
        out,
        "reopened: {} records recovered, next LSN {}, torn tail: {}",
        rec.counts.total(),
        rec.next_lsn,
        rec.torn_tail.as_ref().map_or("none".to_string(), |t| format!("{} at offset {}", t.file, t.offset))
    );
    let _ =
        writeln!(out, "in doubt after the crash: {} intents (first {} below)", rec.in_doubt.len(), SHOW_IN_DOUBT.min(rec.in_doubt.len()));
    let mut lines = Vec::new();
    for d in rec.in_doubt.iter().take(SHOW_IN_DOUBT) {
        write_intent_line(&mut lines, d.lsn, &d.intent, IntentStatus::Pending).map_err(|e| fail("formatting", e))?;
    }
    out.push_str(&String::from_utf8_lossy(&lines));
    let matches = rec.in_doubt.len() as u64 == counts.unresolved && rec.in_doubt.iter().all(|d| fate(d.lsn) == Fate::Unresolved);
    if !matches {
        print!("{out}");
        return Err(Failure::usage(format!(
            "check failed: {} in doubt after recovery, but the exchange left {} unresolved",
            rec.in_doubt.len(),
            counts.unresolved
        )));
    }
    let _ = writeln!(
        out,
        "check: in-doubt count equals the {} intents the exchange left unresolved, and they are the same LSNs: ok",
        counts.unresolved
    );
    wal.close().map_err(|e| fail("closing", e))?;

    // Export (read-only scan of the closed log).
    let export_path = dir.join(EXPORT_FILE);
    let file = File::create(&export_path).map_err(|e| fail(&format!("creating {}", export_path.display()), e))?;
    let exported = export_to(dir, false, 0, u64::MAX, Box::new(BufWriter::with_capacity(1 << 16, file)), false)?
        .ok_or_else(|| Failure::usage("export output closed"))?;
    let _ = writeln!(out, "exported {} intent lines to {}", exported.lines, export_path.display());
    if exported.lines != intents {
        print!("{out}");
        return Err(Failure::usage(format!("check failed: exported {} intent lines, appended {intents}", exported.lines)));
    }

    // Device floor, same run, same directory.
    let floor = match measure_floor(dir, FLOOR_SAMPLES) {
        Ok(mut v) => {
            v.sort();
            Some((percentile_us(&v, 0.50), percentile_us(&v, 0.99)))
        }
        Err(e) => {
            let _ = writeln!(out, "device floor not measured: {e}");
            None
        }
    };

    let hgrm_path = dir.join(HGRM_FILE);
    std::fs::write(&hgrm_path, tradewal_cli::hgrm::render(&hist, 1000.0))
        .map_err(|e| fail(&format!("writing {}", hgrm_path.display()), e))?;

    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let _ = writeln!(out);
    let _ = writeln!(out, "latency append→durable (each strategy thread appends, then waits its ticket; QD1 per thread):");
    let _ = writeln!(
        out,
        "  p50 {:.1} µs   p90 {:.1} µs   p99 {:.1} µs   p99.9 {:.1} µs   max {:.1} µs   ({} samples)",
        us(0.50),
        us(0.90),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0,
        hist.len()
    );
    if let Some((p50, p99)) = floor {
        let _ = writeln!(
            out,
            "  device floor (one 4 KiB O_DIRECT O_DSYNC pwrite, QD1, {FLOOR_SAMPLES} samples, same run): p50 {p50:.1} µs   p99 {p99:.1} µs"
        );
    }
    let _ = writeln!(out, "throughput: {:.0} intents/s durable ({} producers)", intents as f64 / elapsed.as_secs_f64(), producers);
    let _ = writeln!(
        out,
        "group commit: {} batches for {} records ({:.2} records/batch), {} bytes written",
        stats.batches,
        stats.records,
        if stats.batches > 0 { stats.records as f64 / stats.batches as f64 } else { 0.0 },
        stats.bytes
    );
    let _ = writeln!(out, "backend: {backend}");
    let _ = writeln!(out, "histogram: {} (HdrHistogram percentile distribution, µs)", hgrm_path.display());
    let _ = writeln!(out, "next: tradewal inspect {0}; tradewal recover {0}; tradewal export {0} | jq .", dir.display());
    print!("{out}");
    let _ = std::io::stdout().flush();
    Ok(())
}

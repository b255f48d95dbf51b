//! The workload of the time-seek tests (engine/tests/seek.rs and cli/tests/seek.rs): logs written
//! by the engine with rotation (1 MiB segments), intent timestamps that are not monotonic in LSN
//! in some stretches (some far back, across segments), outcomes in later segments, partial fills
//! then a final status, rejects, cancels, aborts, groups, intents left in doubt for good, and
//! several sessions (closed, or dropped like a crash).
#![allow(dead_code)]
use std::path::Path;
use tradewal::{Lsn, OrderId, Outcome, Retention, Side, Status, Symbol, TradeIntent, Wal, WalConfig, WalError};
use tradewal_testkit::rng::Rng;

/// The configuration of the brief: small segments, small batches.
pub fn config(dir: &Path, retention: Retention) -> WalConfig {
    WalConfig::new(dir).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer().retention(retention)
}

/// Nanoseconds of the first intent (2026-01-01T00:00:00Z).
pub const T0: i64 = 1_767_225_600_000_000_000;
/// The clock advances this much per intent.
pub const STEP: i64 = 1_000_000;

/// An intent still waiting for (more of) its outcome.
#[derive(Debug, Clone, Copy)]
struct Pending {
    lsn: Lsn,
    qty: f64,
    filled: f64,
    due: u64,
}

/// State carried across sessions.
pub struct Workload {
    rng: Rng,
    clock: i64,
    pending: Vec<Pending>,
    chunk: u64,
    forever: u64,
    next_id: u64,
}

impl Workload {
    /// A workload from `seed`.
    pub fn new(seed: u64) -> Self {
        Workload { rng: Rng::new(seed), clock: T0, pending: Vec::new(), chunk: 0, forever: 0, next_id: 0 }
    }

    fn intent(&mut self, wild: bool) -> TradeIntent {
        self.clock += STEP;
        self.next_id += 1;
        let ts = if wild {
            // Far back (up to ~1.5 segments of intents) or ahead: not monotonic in LSN.
            let off = self.rng.below(12_000) as i64 * STEP;
            if self.rng.chance(700) {
                self.clock - off
            } else {
                self.clock + off / 4
            }
        } else {
            self.clock + self.rng.below(500) as i64 - 250
        };
        let n = self.next_id;
        TradeIntent {
            ts_ns: ts,
            symbol: Symbol::new(["BTCUSDT", "ETH-PERP", "SOL"][(n % 3) as usize]).unwrap(),
            side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
            price: 43_250.5 + n as f64 / 7.0,
            qty: 1.0 + (n % 9) as f64,
            stop_loss: if n % 5 == 0 { 0.0 } else { 42_800.0 + 1.0 / (n as f64 + 3.0) },
            take_profit: 0.0,
            cl_ord_id: (n % 4 == 0).then(|| OrderId::new(&format!("c-{n}")).unwrap()),
            tag: (n % 3 == 0).then_some((n % 17) as u32),
            group: None,
        }
    }

    fn due(&mut self) -> Option<u64> {
        let r = self.rng.below(1000);
        Some(
            self.chunk
                + match r {
                    0..=699 => 0,
                    700..=899 => self.rng.range(1, 6),
                    900..=979 => self.rng.range(6, 90),
                    980..=997 => self.rng.range(90, 200),
                    _ => {
                        if self.forever < 60 {
                            self.forever += 1;
                            return None; // in doubt for good
                        }
                        0
                    }
                },
        )
    }

    /// Appends about `n` intents in chunks of 128 (some as groups of 2 or 3 legs), then reports
    /// the outcomes that fall due in each chunk.
    pub fn run(&mut self, wal: &Wal, n: u64) {
        let mut done = 0;
        while done < n {
            self.chunk += 1;
            let wild = self.rng.chance(150);
            let mut tickets = Vec::new();
            let mut k = 0;
            while k < 128 {
                let legs = if self.rng.chance(80) { self.rng.range(2, 4) as usize } else { 1 };
                let its: Vec<TradeIntent> = (0..legs).map(|_| self.intent(wild)).collect();
                let t = if legs == 1 { wal.append(&its[0]).unwrap() } else { wal.append_group(&its).unwrap() };
                tickets.push((t, its));
                k += legs;
            }
            done += k as u64;
            for (t, its) in tickets {
                let first = t.wait().unwrap();
                for (i, it) in its.iter().enumerate() {
                    if let Some(due) = self.due() {
                        self.pending.push(Pending { lsn: first + i as u64, qty: it.qty, filled: 0.0, due });
                    }
                }
            }
            self.outcomes(wal);
        }
    }

    fn outcomes(&mut self, wal: &Wal) {
        // Keep the in-doubt set well below max_in_doubt (1024): the oldest fall due now.
        let limit = 700usize.saturating_sub(self.forever as usize);
        if self.pending.len() > limit {
            self.pending.sort_by_key(|p| p.due);
            let n = self.pending.len() - limit;
            for p in &mut self.pending[..n] {
                p.due = 0;
            }
        }
        let chunk = self.chunk;
        let (due, keep): (Vec<Pending>, Vec<Pending>) = self.pending.drain(..).partition(|p| p.due <= chunk);
        self.pending = keep;
        let mut tickets = Vec::new();
        for mut p in due {
            let r = self.rng.below(100);
            let venue = (r % 2 == 0).then(|| OrderId::new(&format!("v{}", p.lsn)).unwrap());
            let ts_ns = if r % 3 == 0 { 0 } else { self.clock };
            let status = match r {
                0..=39 => Status::Filled { qty: p.qty, avg_price: if r % 4 == 0 { 0.0 } else { 100.0 + r as f64 / 3.0 } },
                40..=64 if p.filled + 0.5 < p.qty => {
                    p.filled += 0.5;
                    p.due = chunk + if self.rng.chance(300) { self.rng.range(20, 120) } else { self.rng.range(1, 8) };
                    self.pending.push(p);
                    Status::PartiallyFilled { qty: p.filled, avg_price: 99.5 }
                }
                65..=74 if p.filled == 0.0 => Status::Rejected { reason: r as u32 },
                75..=84 => Status::Cancelled { filled_qty: p.filled },
                85..=99 if p.filled == 0.0 => Status::Aborted,
                _ => Status::Filled { qty: p.qty, avg_price: 0.0 },
            };
            let o = Outcome { intent_lsn: p.lsn, status, venue_order_id: venue, ts_ns };
            tickets.push(wal.report(&o).unwrap());
        }
        for t in tickets {
            t.wait().unwrap();
        }
    }

    /// Intents still waiting for an outcome (the workload's own count).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Opens a log, or says why this environment cannot run the test (no O_DIRECT).
pub fn open(test: &str, cfg: WalConfig) -> Option<Wal> {
    match Wal::open(cfg) {
        Ok(w) => Some(w),
        Err(WalError::Config(m)) => {
            tradewal_testkit::cannot_run(test, "odirect", m);
            None
        }
        Err(e) => panic!("open: {e}"),
    }
}

/// Writes a log of `sessions` sessions of about `per_session` intents each; every other session
/// ends without `close()` (like a crash at a batch boundary).
pub fn build(test: &str, dir: &Path, retention: Retention, seed: u64, sessions: u64, per_session: u64) -> Option<Workload> {
    let mut w = Workload::new(seed);
    for s in 0..sessions {
        let wal = open(test, config(dir, retention.clone()))?;
        w.run(&wal, per_session);
        if s % 2 == 1 {
            drop(wal);
        } else {
            wal.close().unwrap();
        }
    }
    Some(w)
}

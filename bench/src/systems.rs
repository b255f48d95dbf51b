//! The systems under test behind one trait: the seed's JSONL sketch, SQLite (WAL mode,
//! synchronous=FULL), okaywal, and (module [`crate::tw`]) tradewal. Each opens in a fresh
//! directory and appends one intent durably per call; multi-producer use goes through `&self`
//! (a `Mutex` where the system has no concurrency of its own, as the seed's sketch does).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tradewal_codec::{Side, Symbol, TradeIntent};

/// A system that can make one trade intent durable per call, from many threads.
pub trait System: Send + Sync {
    /// Short name used in tables and file names (`jsonl-fdatasync`, `sqlite-wal-full`, ...).
    fn name(&self) -> String;
    /// Appends `intent` and returns once it is durable (survives power loss).
    fn append_durable(&self, intent: &TradeIntent) -> anyhow::Result<()>;
    /// Untimed housekeeping the harness calls after each timed [`append_durable`](System::append_durable)
    /// of this thread (tradewal: resolve the intents of this thread in bursts, so the in-doubt set
    /// stays bounded without putting an outcome record in front of the next timed intent).
    fn settle(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Which system to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Kind {
    /// The seed's sketch: a JSONL line to a buffered file, then `fdatasync`.
    Jsonl,
    /// SQLite, `journal_mode=WAL`, `synchronous=FULL`, one INSERT transaction per intent.
    Sqlite,
    /// okaywal: one entry with one chunk, `commit()` (group commit across threads).
    Okaywal,
    /// tradewal with `Durability::Dsync`.
    TradewalDsync,
    /// tradewal with `Durability::LinkedFdatasync`.
    TradewalLinked,
}

impl Kind {
    /// The table name of the system.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Jsonl => "jsonl-fdatasync",
            Kind::Sqlite => "sqlite-wal-full",
            Kind::Okaywal => "okaywal",
            Kind::TradewalDsync => "tradewal-dsync",
            Kind::TradewalLinked => "tradewal-linked",
        }
    }

    /// True for the peers (everything but tradewal).
    pub fn is_peer(self) -> bool {
        matches!(self, Kind::Jsonl | Kind::Sqlite | Kind::Okaywal)
    }

    /// Opens the peer in `dir` (created if missing, expected empty). tradewal is opened by
    /// [`tw::open_system`](crate::tw::open_system), which opens any kind.
    pub fn open_peer(self, dir: &Path) -> anyhow::Result<Box<dyn System>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(match self {
            Kind::Jsonl => Box::new(JsonlSketch::open(dir)?),
            Kind::Sqlite => Box::new(SqliteWal::open(dir)?),
            Kind::Okaywal => Box::new(Okaywal::open(dir)?),
            Kind::TradewalDsync | Kind::TradewalLinked => anyhow::bail!("{} is not a peer: tw::open_system opens it", self.label()),
        })
    }
}

/// The seed's `WALEntry`, field for field (the Go struct's JSON tags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalEntry {
    /// Timestamp.
    pub ts: i64,
    /// Symbol.
    pub sym: String,
    /// `"BUY"` / `"SELL"`.
    pub side: String,
    /// Entry price.
    pub price: f64,
    /// Quantity.
    pub qty: f64,
    /// Stop loss.
    pub sl: f64,
    /// Take profit.
    pub tp: f64,
    /// Executed.
    pub exec: bool,
}

impl From<&TradeIntent> for WalEntry {
    fn from(i: &TradeIntent) -> Self {
        WalEntry {
            ts: i.ts_ns,
            sym: i.symbol.as_str().to_string(),
            side: i.side.as_str().to_string(),
            price: i.price,
            qty: i.qty,
            sl: i.stop_loss,
            tp: i.take_profit,
            exec: false,
        }
    }
}

/// A deterministic, valid intent number `i` (what every system appends).
pub fn sample_intent(i: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_767_955_680_000_000_000 + i as i64,
        symbol: Symbol::new(if i % 2 == 0 { "BTCUSDT" } else { "ETHUSDT" }).expect("valid symbol"),
        side: if i % 3 == 0 { Side::Sell } else { Side::Buy },
        price: 43250.5 + (i % 100) as f64 * 0.5,
        qty: 0.25,
        stop_loss: 42800.0,
        take_profit: 44100.0,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

/// The seed's sketch: `wal.Append(entry); wal.Fsync()` with a buffered file behind a mutex.
pub struct JsonlSketch {
    path: PathBuf,
    file: Mutex<BufWriter<File>>,
}

impl JsonlSketch {
    /// File name inside the directory.
    pub const FILE: &'static str = "wal_20260109_104800.log";

    /// Creates (or appends to) `dir/wal_20260109_104800.log`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(Self::FILE);
        let f = OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
        // The directory entry must be durable too, or the file may vanish on power loss.
        File::open(dir)?.sync_all()?;
        Ok(JsonlSketch { path, file: Mutex::new(BufWriter::new(f)) })
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl System for JsonlSketch {
    fn name(&self) -> String {
        Kind::Jsonl.label().into()
    }

    fn append_durable(&self, intent: &TradeIntent) -> anyhow::Result<()> {
        let mut w = self.file.lock().map_err(|_| anyhow::anyhow!("jsonl mutex poisoned"))?;
        serde_json::to_writer(&mut *w, &WalEntry::from(intent))?;
        w.write_all(b"\n")?;
        w.flush()?;
        w.get_ref().sync_data()?;
        Ok(())
    }
}

/// SQLite in WAL mode with `synchronous=FULL`: every committed transaction is fsynced.
pub struct SqliteWal {
    conn: Mutex<rusqlite::Connection>,
}

impl SqliteWal {
    /// Database file name inside the directory.
    pub const FILE: &'static str = "intents.sqlite";

    /// Opens `dir/intents.sqlite`, sets WAL + FULL, creates the table.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let conn = rusqlite::Connection::open(dir.join(Self::FILE))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "sqlite refused WAL mode (got {mode})");
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS wal (
                 id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, sym TEXT NOT NULL, side TEXT NOT NULL,
                 price REAL NOT NULL, qty REAL NOT NULL, sl REAL NOT NULL, tp REAL NOT NULL,
                 exec INTEGER NOT NULL);",
        )?;
        Ok(SqliteWal { conn: Mutex::new(conn) })
    }
}

impl System for SqliteWal {
    fn name(&self) -> String {
        Kind::Sqlite.label().into()
    }

    fn append_durable(&self, i: &TradeIntent) -> anyhow::Result<()> {
        let conn = self.conn.lock().map_err(|_| anyhow::anyhow!("sqlite mutex poisoned"))?;
        // Autocommit: the INSERT is its own transaction, committed (and fsynced: FULL) on return.
        let mut st =
            conn.prepare_cached("INSERT INTO wal (ts, sym, side, price, qty, sl, tp, exec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)")?;
        st.execute(rusqlite::params![i.ts_ns, i.symbol.as_str(), i.side.as_str(), i.price, i.qty, i.stop_loss, i.take_profit])?;
        Ok(())
    }
}

/// okaywal's log manager for the bench: recovers entries into a list (for tests) and accepts
/// checkpoints without doing anything (the bench keeps no other state).
#[derive(Debug, Default)]
pub struct CollectEntries {
    /// Chunks of every recovered entry, in order.
    pub entries: std::sync::Arc<Mutex<Vec<Vec<u8>>>>,
}

impl okaywal::LogManager for CollectEntries {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        if let Some(chunks) = entry.read_all_chunks()? {
            let mut list = self.entries.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            list.extend(chunks);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// okaywal: each intent is one entry of one chunk (the seed's JSON line), `commit()`ed.
pub struct Okaywal {
    wal: okaywal::WriteAheadLog,
}

impl Okaywal {
    /// Opens (recovers) a log in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let wal = okaywal::WriteAheadLog::recover(dir, CollectEntries::default())?;
        Ok(Okaywal { wal })
    }

    /// Shuts the log down (joins its checkpointer thread).
    pub fn shutdown(self) -> anyhow::Result<()> {
        self.wal.shutdown()?;
        Ok(())
    }
}

impl System for Okaywal {
    fn name(&self) -> String {
        Kind::Okaywal.label().into()
    }

    fn append_durable(&self, intent: &TradeIntent) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(&WalEntry::from(intent))?;
        let mut w = self.wal.begin_entry()?;
        w.write_chunk(&bytes)?;
        w.commit()?;
        Ok(())
    }
}

//! The public handle: [`Wal`].

use crate::config::WalConfig;
use crate::io::fs::FsStorage;
use crate::io::stack::StorageStack;
use crate::io::{BatchIo, IoConfig, Storage};
use crate::manifest::{self, Manifest};
use crate::recovery::{self, LogReport, Recovered};
use crate::ticket::Ticket;
use crate::writer::{self, MaintMsg, Msg, Report, SessionIds, Shared, Spare, Writer};
use crate::WalError;
use crossbeam_channel::{bounded, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};
use tradewal_codec::{IntentError, Lsn, Outcome, OutcomeKind, SegmentEnd, SegmentName, TradeIntent};

pub(crate) fn unix_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

pub(crate) fn random_u64() -> u64 {
    // getrandom only fails where the OS has no entropy source at all; fall back to time mixing
    // rather than refusing to rotate (the epoch only needs to differ between file creations).
    getrandom::u64().unwrap_or_else(|_| {
        let t = unix_ns() as u64;
        t ^ (t >> 29).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ std::process::id() as u64
    })
}

/// Counters of the running session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalStats {
    /// Batches written (group commits).
    pub batches: u64,
    /// Records written (intents, outcomes, checkpoint parts).
    pub records: u64,
    /// Bytes written, padding included.
    pub bytes: u64,
    /// Segment rotations.
    pub rotations: u64,
    /// Total time rotations waited for a spare segment, in nanoseconds.
    pub rotation_wait_ns: u64,
    /// Longest wait of one rotation for its spare, in nanoseconds.
    pub rotation_wait_ns_max: u64,
    /// Spare segments the maintenance thread has prepared (zero-filled or recycled, synced) so far.
    pub spares_prepared: u64,
    /// Spares prepared by recycling a retired segment file instead of zero-filling a new one
    /// (only under [`Retention::Delete`](crate::Retention::Delete); docs/design.md, "Recycled
    /// segment files").
    pub segments_recycled: u64,
    /// Manifest updates written this session (the one at open included).
    pub manifest_writes: u64,
    /// Manifest updates that failed (logged; a failure before a spare's creation poisons the log
    /// at the next rotation).
    pub manifest_errors: u64,
    /// The acknowledged LSN in the newest manifest written: recovery refuses a log that ends
    /// below it.
    pub manifest_lsn: u64,
}

/// An intent as a caller may give it: valid, and with no group leg (the log assigns those).
fn check_caller_intent(intent: &TradeIntent) -> Result<(), WalError> {
    intent.validate()?;
    if intent.group.is_some() {
        return Err(WalError::InvalidIntent(IntentError::GroupSetByCaller));
    }
    Ok(())
}

/// A write-ahead log of trade intents, open for one session.
///
/// ```no_run
/// use tradewal::{Wal, WalConfig, TradeIntent, Side, Symbol};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wal = Wal::open(WalConfig::new("./wal"))?;              // recovers, then starts a session
/// for d in &wal.recovered().in_doubt { println!("in doubt: {} {:?}", d.lsn, d.intent); }
/// let intent = TradeIntent { ts_ns: 1, symbol: Symbol::new("BTCUSDT")?, side: Side::Buy,
///     price: 43250.5, qty: 0.25, stop_loss: 42800.0, take_profit: 44100.0, cl_ord_id: None, tag: None, group: None };
/// let lsn = wal.append(&intent)?.wait()?;                      // durable on the device now
/// // ... send the order, then:
/// wal.mark_executed(lsn)?.wait()?;
/// wal.close()?;
/// # Ok(()) }
/// ```
///
/// `Wal` is `Send + Sync`: share it with `Arc` (or scoped threads) between strategy threads.
/// Dropping it without [`close`](Wal::close) stops the writer at the next batch boundary like a
/// crash would: the batches already submitted are waited for (their tickets resolve `Ok`), appends
/// not yet written are abandoned (their tickets resolve to [`WalError::Closed`]: they are not on
/// the device); acknowledged records are safe.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    /// The queue's send side and the next message seq, under one lock so queue order is seq order.
    send: Mutex<SendSide>,
    queue_capacity: u64,
    maint_tx: Sender<MaintMsg>,
    writer: Option<JoinHandle<()>>,
    maint: Option<JoinHandle<()>>,
    spare_rx: crossbeam_channel::Receiver<std::io::Result<Spare>>,
    storage: Arc<dyn Storage>,
    recovered: Recovered,
    max_in_doubt: usize,
    /// A durable LSN seen by `mark` (only rises): marks of LSNs at or below it skip reading the
    /// writer's watermark.
    lsn_hint: AtomicU64,
    backend: String,
    storage_stack: Option<StorageStack>,
    first_segment: String,
    log_id: u64,
    _lock: Box<dyn crate::io::LockGuard>,
}

/// The producers' side of the queue, under `Wal::send`. The hints are copies of values the
/// writer publishes, refreshed only when they would refuse an append: reading the writer's cache
/// lines on every append costs more than the append itself.
#[derive(Debug)]
struct SendSide {
    tx: Option<Sender<Msg>>,
    next_seq: u64,
    /// Intents queued this session plus those recovered in doubt at open.
    intents: u64,
    /// A value `Shared::resolved` had (it only rises).
    resolved_hint: u64,
    /// A value of the durable watermark's seq (it only rises).
    durable_seq_hint: u64,
}

impl Wal {
    /// Opens (creating if needed) the log in `config.dir()`: validates the configuration, takes
    /// the directory's writer lock, recovers (see [`Recovered`]), then starts a new session with a
    /// new segment file. Nothing is written before recovery has decided (I5). Returns once the
    /// first segment and the next spare are both zero-filled and flushed, so no zero-fill
    /// competes with the first appends.
    pub fn open(config: WalConfig) -> Result<Wal, WalError> {
        config.validate()?;
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(config.dir()));
        Self::open_storage(storage, config)
    }

    /// Like [`open`](Wal::open), on any [`Storage`] (a simulated disk in tests: `Wal::open_on`
    /// with the `sim` feature). `config.dir()` is only used in messages. The steps: the write path
    /// (before recovery repairs anything, so an unusable directory is refused with nothing
    /// changed), recovery, the session's manifest and first segment, the shared state, the
    /// threads; it returns once the next spare is ready too. (About 80 lines: each step is one
    /// call; the rest is the two struct literals, the writer's context and the handle.)
    pub(crate) fn open_storage(storage: Arc<dyn Storage>, config: WalConfig) -> Result<Wal, WalError> {
        config.validate()?;
        let dir = storage.path().display().to_string();
        storage.create_dir().map_err(|e| WalError::io(format!("creating {dir}"), e))?;
        let lock = crate::io::wait_for_lock(storage.as_ref(), config.lock_timeout)?;
        let (io, storage_stack) = write_path(&storage, &config, &dir)?;
        let backend = io.describe();
        let (recovered, report) = recovery::recover(&storage)?;
        let ids = SessionIds {
            log_id: report.state.log_id.or(report.manifest.as_ref().map(|m| m.log_id)).unwrap_or_else(random_u64),
            session_id: random_u64(),
            session_start_unix_s: unix_ns().div_euclid(1_000_000_000),
        };
        let first_no = recovery::next_segment_no(&report, &recovered);
        let first_name = SegmentName { session_start_unix_s: ids.session_start_unix_s, segment_no: first_no }.file_name();
        // The manifest for this session, durable before its first segment file exists.
        let manifest = session_manifest(&report, &recovered, ids.log_id, &first_name);
        manifest::store(storage.as_ref(), &manifest).map_err(|e| WalError::io(format!("writing the manifest in {dir}"), e))?;
        storage.create_zeroed(&first_name, config.segment_bytes).map_err(|e| WalError::io(format!("creating {first_name}"), e))?;
        let first =
            Spare { segment_no: first_no, name: first_name.clone(), epoch: tradewal_codec::format::life_epoch(random_u64(), false) };
        let recyclable = writer::recyclable_at_open(storage.as_ref(), &config.retention, config.segment_bytes)
            .map_err(|e| WalError::io(format!("sorting out recyclable segment files in {dir}"), e))?;
        let shared = shared_state(storage.as_ref(), &recovered, manifest.acked_lsn);
        let (tx, rx) = bounded(config.queue_capacity);
        let (maint_tx, maint_rx) = bounded(64);
        let (spare_tx, spare_rx) = bounded(1);
        let w = Writer::new(
            config.clone(),
            ids,
            shared.clone(),
            rx,
            io,
            maint_tx.clone(),
            spare_rx.clone(),
            first,
            recovered.next_lsn,
            &recovered.in_doubt,
            recovery::last_range(&report, first_no),
        )
        .map_err(|e| WalError::io(format!("opening {first_name} for writing"), e))?;
        let mut segments: Vec<(u64, String)> = report.files.iter().filter(|(_, f)| recovered.segments.contains(f)).cloned().collect();
        segments.push((first_no, first_name.clone()));
        let cx = writer::MaintCtx {
            storage: storage.clone(),
            ids,
            segment_bytes: config.segment_bytes,
            retention: config.retention.clone(),
            segments,
            shared: shared.clone(),
            manifest,
            manifest_interval: config.manifest_interval,
            max_reader_lag_bytes: config.max_reader_lag_bytes,
            recyclable,
        };
        let (maint, writer) = spawn_threads(&config, cx, maint_rx, spare_tx, w)?;
        let _ = maint_tx.send(MaintMsg::Prepare(first_no + 1));
        log_open(&dir, &backend, &recovered);
        let wal = Wal {
            shared,
            send: Mutex::new(SendSide {
                tx: Some(tx),
                next_seq: 1,
                intents: recovered.in_doubt.len() as u64,
                resolved_hint: 0,
                durable_seq_hint: 0,
            }),
            lsn_hint: AtomicU64::new(recovered.next_lsn - 1),
            queue_capacity: config.queue_capacity as u64,
            maint_tx,
            writer: Some(writer),
            maint: Some(maint),
            spare_rx,
            storage,
            recovered,
            max_in_doubt: config.max_in_doubt,
            backend,
            storage_stack,
            first_segment: first_name,
            log_id: ids.log_id,
            _lock: lock,
        };
        // Return only when the next spare is zero-filled and flushed too: preparing it while the
        // first appends wait for their flushes put 64 MiB of zeros in front of them (QD1 p99.9
        // 10x the floor in the first seconds of every log; docs/durability.md). On failure the
        // returned error drops `wal`, which stops the threads.
        wal.wait_for_spare(&dir)?;
        Ok(wal)
    }

    fn wait_for_spare(&self, dir: &str) -> Result<(), WalError> {
        while self.shared.counters.spares_prepared.load(Ordering::Acquire) == 0 {
            if self.shared.spare_failed.load(Ordering::Acquire) {
                return Err(WalError::io(
                    format!("preparing the spare segment in {dir}"),
                    std::io::Error::other("the maintenance thread could not create the next segment file"),
                ));
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        Ok(())
    }

    /// What recovery found when this log was opened.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// The storage stack the log sits on and the write path the table chose for it (see
    /// [`StorageStack::probe`](crate::StorageStack::probe)); `None` on a storage without such facts (a
    /// simulated disk).
    pub fn storage_stack(&self) -> Option<&StorageStack> {
        self.storage_stack.as_ref()
    }

    /// The write backend in use (e.g. `"io_uring, RWF_DSYNC"`).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The log's id: random when the directory's first session created the log, then kept in
    /// every segment header and the manifest for the life of the directory. `(log_id, lsn)` names
    /// a record uniquely across logs (the subject and message id of `tradewal ship` use it).
    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    /// The first segment file of this session.
    pub fn first_segment(&self) -> &str {
        &self.first_segment
    }

    /// The durable watermark: every record with an LSN at or below it is on the device.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.acks.wm.durable_lsn()
    }

    /// Waits until every record up to `lsn` is durable (`durable_lsn() >= lsn`): for producers
    /// that keep LSNs rather than tickets. Spins briefly, then parks until the writer publishes a
    /// watermark that covers `lsn`. Errors: [`WalError::Poisoned`] if the log failed first,
    /// [`WalError::Closed`] if it stopped before writing `lsn`.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        self.shared.acks.wait_durable(lsn)
    }

    /// Counters of this session.
    pub fn stats(&self) -> WalStats {
        let c = &self.shared.counters;
        WalStats {
            batches: c.batches.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
            rotation_wait_ns: c.rotation_wait_ns.load(Ordering::Relaxed),
            rotation_wait_ns_max: c.rotation_wait_ns_max.load(Ordering::Relaxed),
            spares_prepared: c.spares_prepared.load(Ordering::Acquire),
            segments_recycled: c.segments_recycled.load(Ordering::Relaxed),
            manifest_writes: c.manifest_writes.load(Ordering::Relaxed),
            manifest_errors: c.manifest_errors.load(Ordering::Relaxed),
            manifest_lsn: c.manifest_lsn.load(Ordering::Acquire),
        }
    }

    fn check_open(&self) -> Result<(), WalError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        Ok(())
    }

    fn poisoned_error(&self) -> WalError {
        self.shared.acks.ended_error()
    }

    /// Validates `intent` and queues it; the ticket resolves to its LSN once it is durable (I1).
    /// Never blocks on I/O; waits only when `queue_capacity` appends are already outstanding
    /// (queued or being written, i.e. not yet covered by the durable watermark; a ticket kept
    /// after it resolved does not count).
    /// Errors (nothing written): [`WalError::InvalidIntent`], [`WalError::InDoubtLimit`],
    /// [`WalError::Poisoned`], [`WalError::Closed`].
    pub fn append(&self, intent: &TradeIntent) -> Result<Ticket, WalError> {
        self.append_inner(intent, false)
    }

    /// Like [`append`](Wal::append) but fails with [`WalError::Full`] instead of waiting when the
    /// queue is full.
    pub fn try_append(&self, intent: &TradeIntent) -> Result<Ticket, WalError> {
        self.append_inner(intent, true)
    }

    fn append_inner(&self, intent: &TradeIntent, non_blocking: bool) -> Result<Ticket, WalError> {
        check_caller_intent(intent)?;
        self.check_open()?;
        self.enqueue(1, |seq, _| Msg::Intent { intent: *intent, seq }, 0, non_blocking)
    }

    /// Appends `intents` as one group (a multi-leg order): one ticket, which resolves to the LSN
    /// of the first leg once **all** legs are durable. The legs get consecutive LSNs and are
    /// written in one batch, so after any crash the group is whole or absent, and never
    /// straddles a segment; recovery and export mark each leg with the group (its first LSN).
    /// Errors (nothing written): [`WalError::GroupSize`] for 0 or more than 32 legs,
    /// [`WalError::InvalidIntent`] for any invalid leg, and those of [`append`](Wal::append).
    pub fn append_group(&self, intents: &[TradeIntent]) -> Result<Ticket, WalError> {
        let max = (tradewal_codec::intent::GROUP_MAX_LEGS as usize).min(self.queue_capacity as usize);
        if intents.is_empty() || intents.len() > max {
            return Err(WalError::GroupSize { legs: intents.len(), max });
        }
        for i in intents {
            check_caller_intent(i)?;
        }
        self.check_open()?;
        let size = intents.len() as u16;
        self.enqueue(intents.len() as u64, |seq, i| Msg::GroupLeg { intent: intents[i as usize], index: i as u16, size, seq }, 0, false)
    }

    /// Gives the next `n` messages their seqs and queues them, in one step under the send lock
    /// (so the writer receives messages in seq order, and a group's legs back to back). Waits (or
    /// fails with [`WalError::Full`] when `non_blocking`) while `queue_capacity` messages are
    /// not yet covered by the watermark. Intents (`mark_lsn == 0`) are refused with
    /// [`WalError::InDoubtLimit`] when they would put more than `max_in_doubt` intents in doubt
    /// (queued or written, no terminal outcome encoded yet). The ticket is the first message's.
    fn enqueue(&self, n: u64, msg: impl Fn(u64, u64) -> Msg, mark_lsn: Lsn, non_blocking: bool) -> Result<Ticket, WalError> {
        let mut side = self.send.lock().unwrap_or_else(PoisonError::into_inner);
        let intents = if mark_lsn == 0 { n } else { 0 };
        let limit = self.max_in_doubt as u64;
        if intents > 0 && side.intents + intents - side.resolved_hint > limit {
            side.resolved_hint = self.shared.resolved.load(Ordering::Acquire);
            if side.intents + intents - side.resolved_hint > limit {
                return Err(WalError::InDoubtLimit { limit: self.max_in_doubt });
            }
        }
        let seq = side.next_seq;
        let last = seq + n - 1;
        let acks = &self.shared.acks;
        if last > side.durable_seq_hint + self.queue_capacity {
            side.durable_seq_hint = acks.wm.durable_seq();
        }
        if last > side.durable_seq_hint + self.queue_capacity {
            if non_blocking {
                return Err(WalError::Full);
            }
            if !acks.wait_room(last - self.queue_capacity) {
                return Err(self.poisoned_error());
            }
        }
        let tx = side.tx.as_ref().ok_or(WalError::Closed)?;
        // At most queue_capacity messages are above the watermark, and the channel holds that
        // many: this never waits.
        for i in 0..n {
            match tx.try_send(msg(seq + i, i)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => panic!("queue fuller than queue_capacity"),
                // The writer is gone (poisoned or died): nothing of this will be written.
                Err(TrySendError::Disconnected(_)) => return Err(self.poisoned_error()),
            }
        }
        side.next_seq = seq + n;
        side.intents += intents;
        Ok(Ticket::new(Arc::clone(acks), seq, mark_lsn))
    }

    /// Records that the intent at `lsn` was fully filled: a shorthand for [`report`](Wal::report)
    /// of `Status::Filled` with the intent's whole quantity (average price not reported). The
    /// ticket resolves to the outcome record's LSN once durable, or to [`WalError::NotInDoubt`]
    /// if `lsn` is not an intent in doubt (nothing is written then).
    pub fn mark_executed(&self, lsn: Lsn) -> Result<Ticket, WalError> {
        self.mark(lsn, Report::Shorthand(OutcomeKind::Executed))
    }

    /// Records that the intent at `lsn` was never sent (`Status::Aborted`). As
    /// [`mark_executed`](Wal::mark_executed); refused with [`WalError::OutcomeRule`] after a
    /// partial fill.
    pub fn mark_aborted(&self, lsn: Lsn) -> Result<Ticket, WalError> {
        self.mark(lsn, Report::Shorthand(OutcomeKind::Aborted))
    }

    /// Records what the venue reported for the intent at `outcome.intent_lsn`: a fill, a partial
    /// fill (cumulative quantity; the intent stays in doubt), a reject or a cancel, with the
    /// venue's order id and time when known. The ticket resolves to the outcome record's LSN once
    /// durable. Refused, with nothing written:
    /// - at once, [`WalError::OutcomeRule`] for fields out of range (a quantity that is negative,
    ///   not finite, or 0 for a fill);
    /// - through the ticket, [`WalError::NotInDoubt`] when the intent is unknown or already has a
    ///   terminal status, and [`WalError::OutcomeRule`] when a cumulative quantity falls below
    ///   the last one reported or exceeds the intent's, or an abort follows a fill.
    pub fn report(&self, outcome: &Outcome) -> Result<Ticket, WalError> {
        outcome.status.validate(false).map_err(WalError::OutcomeRule)?;
        self.mark(outcome.intent_lsn, Report::Full(*outcome))
    }

    fn mark(&self, lsn: Lsn, report: Report) -> Result<Ticket, WalError> {
        self.check_open()?;
        if lsn == 0 {
            return Err(WalError::NotInDoubt { lsn });
        }
        if lsn > self.lsn_hint.load(Ordering::Relaxed) + self.queue_capacity {
            let durable = self.durable_lsn().max(self.recovered.next_lsn);
            self.lsn_hint.fetch_max(durable, Ordering::Relaxed);
            if lsn > durable + self.queue_capacity {
                // Not even assigned yet: cannot name an intent.
                return Err(WalError::NotInDoubt { lsn });
            }
        }
        self.enqueue(1, |seq, _| Msg::Outcome { lsn, report, seq }, lsn, false)
    }

    /// Drains the queue, makes everything appended durable, stops the threads and releases the
    /// directory. Returns [`WalError::Poisoned`] if the log was poisoned.
    pub fn close(mut self) -> Result<(), WalError> {
        let tx = self.send.get_mut().unwrap_or_else(PoisonError::into_inner).tx.take().expect("sender");
        let _ = tx.send(Msg::Close);
        drop(tx);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = self.maint_tx.send(MaintMsg::Stop);
        if let Some(m) = self.maint.take() {
            let _ = m.join();
        }
        // A spare prepared for a rotation that never came: remove it.
        if let Ok(Ok(spare)) = self.spare_rx.try_recv() {
            if self.storage.remove(&spare.name).is_ok() {
                let _ = self.storage.sync_dir();
            }
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        Ok(())
    }
}

/// The line `Wal::open` logs once the log is open.
fn log_open(dir: &str, backend: &str, recovered: &Recovered) {
    tracing::info!(
        dir = %dir,
        backend = %backend,
        next_lsn = recovered.next_lsn,
        in_doubt = recovered.in_doubt.len(),
        segments = recovered.segments.len(),
        read_from_segment = recovered.scanned_from_segment,
        "tradewal: log open (segments before read_from_segment: header checked only; `tradewal verify` reads them all)"
    );
}

/// The write path for the directory (io_uring, or the synchronous fallback the storage stack
/// calls for), and the storage stack it was chosen for; the stack and mount warnings are logged.
fn write_path(storage: &Arc<dyn Storage>, config: &WalConfig, dir: &str) -> Result<(Box<dyn BatchIo>, Option<StorageStack>), WalError> {
    let io_cfg = IoConfig {
        durability: config.durability,
        buffers: config.in_flight_batches as usize + 1,
        buffer_bytes: config.max_batch_bytes + tradewal_codec::BLOCK_BYTES,
        disable_io_uring: config.disable_io_uring,
        allow_buffered_io: config.allow_buffered_io,
        trust_storage: config.trust_storage,
    };
    let io = storage.batch_io(&io_cfg).map_err(|e| match e.kind() {
        std::io::ErrorKind::Unsupported => WalError::Config(format!("{dir}: {e}")),
        _ => WalError::io(format!("setting up the write path in {dir}"), e),
    })?;
    let storage_stack = storage.stack();
    if let Some(s) = &storage_stack {
        tracing::info!(dir = %dir, "tradewal: storage: {s}");
        if let Some(w) = &s.warning {
            tracing::warn!("tradewal: {w}");
        }
    }
    for w in crate::io::sys::mount_warnings(storage.path()) {
        tracing::warn!("tradewal: {w}");
    }
    Ok((io, storage_stack))
}

/// The manifest a new session starts with: the log id, the recovered end, the newest run of
/// consecutive data segments (those read through that are not empty, and those before the scan
/// start whose header validated), and the session's first segment as created.
fn session_manifest(report: &LogReport, recovered: &Recovered, log_id: u64, first_name: &str) -> Manifest {
    let kept: Vec<u64> = report.files.iter().filter(|(_, f)| recovered.segments.contains(f)).map(|(n, _)| *n).collect();
    let mut data: Vec<u64> = report.header_only.iter().filter(|(_, h)| h.is_some()).map(|(n, _)| *n).collect();
    data.extend(
        report.state.segments.iter().filter(|s| !matches!(s.end, SegmentEnd::Empty) && kept.contains(&s.segment_no)).map(|s| s.segment_no),
    );
    // An all-zero segment left in the middle by an old crash is not listed.
    let used = data.last().map(|&hi| {
        let mut lo = hi;
        while lo > 0 && data.contains(&(lo - 1)) {
            lo -= 1;
        }
        (lo, hi)
    });
    Manifest { log_id, acked_lsn: recovered.next_lsn - 1, used, created: vec![first_name.to_string()] }
}

/// The state the handle and the threads share, starting at the recovered end; the watermark file
/// for readers in other processes too (everything recovery kept is durable: it fsynced before
/// deciding), or a warning when it cannot be published.
fn shared_state(storage: &dyn Storage, recovered: &Recovered, manifest_lsn: Lsn) -> Arc<Shared> {
    let watermark = match storage.watermark(true) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "tradewal: cannot publish the watermark file; followers in other processes will only see records once no writer is live");
            None
        }
    };
    if let Some(w) = &watermark {
        w.store(recovered.next_lsn - 1);
    }
    let shared = Arc::new(Shared::new(recovered.next_lsn - 1, watermark));
    shared.counters.manifest_writes.store(1, Ordering::Relaxed);
    shared.counters.manifest_lsn.store(manifest_lsn, Ordering::Relaxed);
    shared
}

/// Starts the maintenance thread and the writer thread (pinned as configured).
fn spawn_threads(
    config: &WalConfig,
    cx: writer::MaintCtx,
    maint_rx: crossbeam_channel::Receiver<MaintMsg>,
    spare_tx: Sender<std::io::Result<Spare>>,
    w: Writer,
) -> Result<(JoinHandle<()>, JoinHandle<()>), WalError> {
    let maint = std::thread::Builder::new()
        .name("tradewal-maint".into())
        .spawn(move || writer::maintenance(cx, maint_rx, spare_tx))
        .map_err(|e| WalError::io("spawning the maintenance thread", e))?;
    let cpu = if config.pin_writer {
        Some(config.writer_cpu.unwrap_or_else(|| std::thread::available_parallelism().map_or(0, |n| n.get() - 1)))
    } else {
        None
    };
    let writer = std::thread::Builder::new()
        .name("tradewal-writer".into())
        .spawn(move || {
            if let Some(cpu) = cpu {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    tracing::warn!(cpu, "tradewal: could not pin the writer thread; running unpinned");
                }
            }
            w.run()
        })
        .map_err(|e| WalError::io("spawning the writer thread", e))?;
    Ok((maint, writer))
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.writer.is_none() {
            return;
        }
        self.shared.abandon.store(true, Ordering::Release);
        self.send.get_mut().unwrap_or_else(PoisonError::into_inner).tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = self.maint_tx.send(MaintMsg::Stop);
        if let Some(m) = self.maint.take() {
            let _ = m.join();
        }
    }
}

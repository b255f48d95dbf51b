//! The writer thread: the only thread that writes log records.
//!
//! State machine (docs/design.md, "Writer state machine"):
//! - **Idle**: nothing in flight, nothing queued → spin briefly on the channel, then block on it.
//! - **Filling**: a free buffer and fewer than K batches in flight → encode the pending
//!   checkpoint parts (at the start of a segment), then whatever is queued, up to
//!   `max_batch_bytes` or the segment's end, and submit it as one durable write (group commit: a
//!   batch is whatever arrived while the previous one was being written; no timer).
//! - **Waiting**: K batches in flight, or nothing more to write → spin on completions and the
//!   channel, then block in the ring for one completion.
//! - **Rotating**: the next record does not fit the segment → stop filling, wait until every
//!   in-flight batch is acknowledged, switch to the spare the maintenance thread prepared, start it
//!   with a checkpoint of the in-doubt set, ask for the next spare.
//! - **Poisoned**: any I/O fault → every waiting and later ticket errors, nothing more is
//!   written, in-flight writes are reaped (so no buffer is freed under the kernel) (I6).
//!
//! Acknowledgements go out strictly in LSN order (I7): the durable watermark (`ticket::Acks`)
//! advances over a batch only when it and every earlier batch completed; tickets are views of it,
//! so the writer does no per-record completion work (one watermark store per reap). Batch `j` of a segment is submitted only when fewer than K
//! batches are unacknowledged, so every batch `<= j-K` had completed (the K-window rule recovery
//! relies on, I4).

use crate::config::{Retention, WalConfig};
use crate::error::PoisonCause;
use crate::indoubt::InDoubtTable;
use crate::io::{BatchIo, Completion, FileSlot, IoFault, Storage};
use crate::manifest::{self, Manifest};
use crate::ticket::{Acks, Era};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use crossbeam_utils::CachePadded;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tradewal_codec::format::{life_epoch, BLOCK_BYTES, CHECKPOINT_ENTRIES_PER_RECORD};
use tradewal_codec::{
    BatchEncoder, EncodeError, InDoubt, Lsn, Outcome, OutcomeError, OutcomeKind, SegmentContext, SegmentHeader, SegmentName, TradeIntent,
    TsRange,
};

/// A request to the writer.
#[derive(Debug)]
pub(crate) enum Msg {
    /// `seq`: the message's place in the queue (1, 2, ...), the number its ticket waits for.
    Intent {
        intent: TradeIntent,
        seq: u64,
    },
    /// Leg `index` of a group of `size`: the legs of one group are sent back to back under the
    /// send lock (consecutive seqs, nothing in between), and written in one batch.
    GroupLeg {
        intent: TradeIntent,
        index: u16,
        size: u16,
        seq: u64,
    },
    Outcome {
        lsn: Lsn,
        report: Report,
        seq: u64,
    },
    Close,
}

/// What an outcome message reports.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Report {
    /// `mark_executed` / `mark_aborted`: the writer fills in the intent's quantity.
    Shorthand(OutcomeKind),
    /// A full outcome (`Wal::report`).
    Full(Outcome),
}

/// The legs of a group being gathered or held back for the next batch (capacity for the
/// largest group, allocated at open).
pub(crate) struct GroupBuf {
    legs: Vec<TradeIntent>,
    first_seq: u64,
    /// All legs are here; they did not fit in the last batch.
    ready: bool,
}

/// The intents of the segment being written, by time, and the complete previous segment's
/// (for the checkpoint that starts the next segment).
#[derive(Default)]
struct Ranges {
    current: TsRange,
    previous: Option<TsRange>,
}

/// Counters the writer publishes (read by `Wal::stats`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub rotations: AtomicU64,
    pub rotation_wait_ns: AtomicU64,
    pub rotation_wait_ns_max: AtomicU64,
    pub spares_prepared: AtomicU64,
    pub segments_recycled: AtomicU64,
    pub manifest_writes: AtomicU64,
    pub manifest_lsn: AtomicU64,
    pub manifest_errors: AtomicU64,
}

/// State shared by the `Wal` handle and its threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub acks: Arc<Acks>,
    /// The acknowledged watermark as readers in other processes see it (the watermark file).
    pub watermark: Option<Arc<dyn crate::io::WatermarkCell>>,
    pub poisoned: AtomicBool,
    pub abandon: AtomicBool,
    /// Intents the writer has resolved (an outcome encoded) this session: stored by the writer
    /// once per batch, read by appends only when their cached copy says the in-doubt limit is
    /// reached. On a cache line of its own: a shared counter that producers and the writer both
    /// modified per record cost a third of the pipelined append path (issue 9 profile).
    pub resolved: CachePadded<AtomicU64>,
    pub counters: Counters,
    /// Highest segment number whose first batch is durable (0: none this session): the
    /// maintenance thread records it in the manifest as holding data.
    pub data_segment_no: AtomicU64,
    /// The maintenance thread failed to prepare a spare (the writer fails at its rotation).
    pub spare_failed: AtomicBool,
}

impl Shared {
    /// Shared state of a session whose last durable record is `durable_lsn`.
    pub(crate) fn new(durable_lsn: Lsn, watermark: Option<Arc<dyn crate::io::WatermarkCell>>) -> Shared {
        Shared {
            acks: Acks::new(durable_lsn),
            watermark,
            poisoned: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            resolved: Default::default(),
            counters: Counters::default(),
            data_segment_no: AtomicU64::new(0),
            spare_failed: AtomicBool::new(false),
        }
    }
}

/// A durable segment file ready to be put in service: zero-filled, or recycled (block 0 zero,
/// stale batches after it; its epoch then has `EPOCH_RECYCLED` set).
#[derive(Debug)]
pub(crate) struct Spare {
    pub segment_no: u64,
    pub name: String,
    pub epoch: u64,
}

/// Requests to the maintenance thread.
#[derive(Debug)]
pub(crate) enum MaintMsg {
    /// Create the spare for this segment number.
    Prepare(u64),
    /// The whole checkpoint that starts this segment is durable: segments numbered below it are
    /// covered by it (apply retention).
    Retire(u64),
    Stop,
}

/// Identity of the session, fixed at open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionIds {
    pub log_id: u64,
    pub session_id: u64,
    pub session_start_unix_s: i64,
}

struct Segment {
    name: String,
    slot: FileSlot,
    header: SegmentHeader,
    ctx: SegmentContext,
    next_offset: u64,
    next_batch: u64,
}

struct InFlight {
    tag: u64,
    buf: usize,
    /// Records in the batch.
    records: u32,
    last_lsn: Lsn,
    /// The last message seq this batch resolves (records, and rejected marks before them).
    last_seq: u64,
    segment_no: u64,
    first_of_segment: bool,
    /// The batch holds the last part of the checkpoint that starts its segment.
    checkpoint_done: bool,
    offset: u64,
    done: bool,
}

/// Where the writer is in emitting the checkpoint that starts a segment.
struct CkptCursor {
    next_part: u32,
    parts: u32,
    /// The previous segment's time range, for part 0.
    range: Option<TsRange>,
}

/// Everything the writer thread owns.
pub(crate) struct Writer {
    cfg: WalConfig,
    ids: SessionIds,
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    io: Box<dyn BatchIo>,
    maint_tx: Sender<MaintMsg>,
    spare_rx: Receiver<std::io::Result<Spare>>,
    table: InDoubtTable,
    scratch: Vec<InDoubt>,
    seg: Segment,
    ckpt: Option<CkptCursor>,
    next_lsn: Lsn,
    next_tag: u64,
    free_bufs: VecDeque<usize>,
    in_flight: VecDeque<InFlight>,
    /// Seq of the last message encoded or rejected (messages arrive in seq order).
    consumed_seq: u64,
    /// Intents resolved by an outcome this session (published as `Shared::resolved`).
    resolved: u64,
    /// The seq → LSN offset of the next message: `lsn = seq + delta` (wrapping; see ticket.rs).
    delta: u64,
    /// The watermark last published.
    published_seq: u64,
    published_lsn: Lsn,
    /// Wakers of async tickets, called outside the waker list's lock (reused: no allocation).
    wake_scratch: Vec<std::task::Waker>,
    pending: Option<Msg>,
    group: GroupBuf,
    ranges: Ranges,
    /// Group commit with a batch in flight: records the last acknowledged batch held, i.e. about
    /// how many producers its acknowledgement released (the arrivals worth gathering).
    expect_records: usize,
    /// When the writer first saw a message queued behind an in-flight batch.
    gather_since: Option<Instant>,
    closing: bool,
    rotate: bool,
    poison: Option<Arc<PoisonCause>>,
}

/// Where a batch goes: the write starts at `write_offset` (0 for batch 0, which carries the header
/// block), its records at `enc_at` in the buffer, with `room` bytes for them.
struct BatchPlace {
    write_offset: u64,
    enc_at: usize,
    room: usize,
    first_of_segment: bool,
}

/// Encodes the pending checkpoint parts (the start of a segment) into `enc`; clears `ckpt` once
/// every part is in. Returns true when the batch is full.
fn encode_checkpoint(ckpt: &mut Option<CkptCursor>, scratch: &[InDoubt], enc: &mut BatchEncoder<'_>) -> bool {
    let Some(c) = ckpt else { return false };
    let mut full = false;
    while c.next_part < c.parts {
        let lo = c.next_part as usize * CHECKPOINT_ENTRIES_PER_RECORD;
        let hi = (lo + CHECKPOINT_ENTRIES_PER_RECORD).min(scratch.len());
        let range = if c.next_part == 0 { c.range } else { None };
        match enc.push_checkpoint(c.next_part, c.parts, &scratch[lo..hi], range) {
            Ok(_) => c.next_part += 1,
            Err(EncodeError::Full) => {
                full = true;
                break;
            }
            Err(e) => panic!("checkpoint encoding failed: {e}"),
        }
    }
    if c.next_part == c.parts {
        *ckpt = None;
    }
    full
}

/// The writer's message intake, borrowed apart from the batch buffer being filled: the queue,
/// the message held back from the last batch, the seq → LSN mapping and the in-doubt table.
struct Intake<'a> {
    rx: &'a Receiver<Msg>,
    pending: &'a mut Option<Msg>,
    closing: &'a mut bool,
    consumed_seq: &'a mut u64,
    delta: &'a mut u64,
    table: &'a mut InDoubtTable,
    resolved: &'a mut u64,
    acks: &'a Acks,
    group: &'a mut GroupBuf,
    range: &'a mut TsRange,
}

impl Intake<'_> {
    /// The next message: the one held back, else the queue's (`None`: empty, or closing).
    fn next(&mut self) -> Option<Msg> {
        if let Some(m) = self.pending.take() {
            return Some(m);
        }
        if *self.closing {
            return None;
        }
        match self.rx.try_recv() {
            Ok(Msg::Close) | Err(TryRecvError::Disconnected) => {
                *self.closing = true;
                None
            }
            Ok(m) => Some(m),
            Err(TryRecvError::Empty) => None,
        }
    }

    /// Encodes queued intents and outcomes into `enc` until it is full (then true, with the
    /// message that did not fit held back) or the queue is empty.
    fn encode_messages(&mut self, enc: &mut BatchEncoder<'_>) -> bool {
        if self.group.ready && self.encode_group(enc) {
            return true;
        }
        while let Some(msg) = self.next() {
            match msg {
                Msg::Intent { intent, seq } => match enc.push_intent(&intent) {
                    Ok(lsn) => {
                        assert!(seq == *self.consumed_seq + 1, "message seq {seq} after {}", self.consumed_seq);
                        let want = seq.wrapping_add(*self.delta);
                        assert!(lsn == want, "seq {seq} got LSN {lsn}, its ticket expects {want}");
                        *self.consumed_seq = seq;
                        self.table.insert(lsn, intent, None);
                        self.range.add(intent.ts_ns);
                    }
                    Err(EncodeError::Full) => {
                        *self.pending = Some(Msg::Intent { intent, seq });
                        return true;
                    }
                    Err(e) => panic!("intent validated at append failed to encode: {e}"),
                },
                Msg::GroupLeg { intent, index, size, seq } => {
                    self.gather_group(intent, index, size, seq);
                    if self.encode_group(enc) {
                        return true;
                    }
                }
                Msg::Outcome { lsn, report, seq } => {
                    if self.outcome(enc, lsn, report, seq) {
                        return true;
                    }
                }
                Msg::Close => {
                    *self.closing = true;
                    break;
                }
            }
        }
        false
    }

    /// Leg 0 of a group arrived: the other legs follow it in the queue at once (the producer
    /// sends them back to back under the send lock), so take them now.
    fn gather_group(&mut self, intent: TradeIntent, index: u16, size: u16, seq: u64) {
        assert!(index == 0 && !self.group.ready, "group leg {index} of {size} out of order");
        self.group.legs.clear();
        self.group.legs.push(intent);
        self.group.first_seq = seq;
        for i in 1..size {
            match self.rx.recv() {
                Ok(Msg::GroupLeg { intent, index, size: s, seq: q }) if index == i && s == size && q == seq + u64::from(i) => {
                    self.group.legs.push(intent)
                }
                other => panic!("group leg {i} of {size} expected after seq {seq}, got {other:?}"),
            }
        }
        self.group.ready = true;
    }

    /// Encodes the gathered group, all legs or none; true when the batch is full (the group is
    /// held back for the next batch, which starts empty and always has room for it).
    fn encode_group(&mut self, enc: &mut BatchEncoder<'_>) -> bool {
        let seq = self.group.first_seq;
        match enc.push_group(&self.group.legs) {
            Ok(first) => {
                assert!(seq == *self.consumed_seq + 1, "message seq {seq} after {}", self.consumed_seq);
                let want = seq.wrapping_add(*self.delta);
                assert!(first == want, "group seq {seq} got LSN {first}, its ticket expects {want}");
                let size = self.group.legs.len() as u16;
                for (i, leg) in self.group.legs.iter().enumerate() {
                    let leg = TradeIntent { group: Some(tradewal_codec::GroupLeg { index: i as u16, size }), ..*leg };
                    self.table.insert(first + i as u64, leg, None);
                    self.range.add(leg.ts_ns);
                }
                *self.consumed_seq = seq + u64::from(size) - 1;
                self.group.ready = false;
                false
            }
            Err(EncodeError::Full) => true,
            Err(e) => panic!("group validated at append failed to encode: {e}"),
        }
    }

    /// Rejects message `seq` (nothing is written): it resolves to `reason` (None: not in doubt),
    /// later seqs shift by one.
    fn reject(&mut self, seq: u64, reason: Option<OutcomeError>) {
        *self.consumed_seq = seq;
        *self.delta = self.delta.wrapping_sub(1);
        self.acks.push_era(Era { first: seq, delta: *self.delta, rejected: true, reason });
    }

    /// Encodes the outcome of intent `lsn` (message `seq`); an outcome for an LSN not in doubt,
    /// or one that breaks the rules against its intent, writes nothing and resolves to that error.
    /// True when the batch is full.
    fn outcome(&mut self, enc: &mut BatchEncoder<'_>, lsn: Lsn, report: Report, seq: u64) -> bool {
        assert!(seq == *self.consumed_seq + 1, "message seq {seq} after {}", self.consumed_seq);
        let Some((intent, fill)) = self.table.get(lsn) else {
            self.reject(seq, None);
            return false;
        };
        let o = match report {
            Report::Shorthand(kind) => Outcome::shorthand(lsn, kind, intent.qty),
            Report::Full(o) => o,
        };
        if let Err(e) = o.check_against(intent, fill, false) {
            self.reject(seq, Some(e));
            return false;
        }
        match enc.push_outcome(&o) {
            Ok(olsn) => {
                assert!(olsn == seq.wrapping_add(*self.delta), "seq {seq} got LSN {olsn}");
                *self.consumed_seq = seq;
                match tradewal_codec::Fill::of(&o) {
                    Some(f) => assert!(self.table.set_fill(lsn, f), "partial fill for LSN {lsn}, which is not in doubt"),
                    None => {
                        let was_in_doubt = self.table.remove(lsn);
                        assert!(was_in_doubt, "outcome for LSN {lsn}, which is not in doubt");
                        *self.resolved += 1;
                    }
                }
                false
            }
            Err(EncodeError::Full) => {
                *self.pending = Some(Msg::Outcome { lsn, report, seq });
                true
            }
            Err(e) => panic!("outcome checked before encoding failed to encode: {e}"),
        }
    }
}

/// What `fill` did.
enum Fill {
    Submitted,
    Nothing,
    NeedRotate,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: WalConfig,
        ids: SessionIds,
        shared: Arc<Shared>,
        rx: Receiver<Msg>,
        mut io: Box<dyn BatchIo>,
        maint_tx: Sender<MaintMsg>,
        spare_rx: Receiver<std::io::Result<Spare>>,
        first: Spare,
        next_lsn: Lsn,
        in_doubt: &[InDoubt],
        prev_range: Option<TsRange>,
    ) -> std::io::Result<Self> {
        let table_limit = cfg.max_in_doubt.max(in_doubt.len());
        let mut table = InDoubtTable::new(table_limit);
        for d in in_doubt {
            table.insert(d.lsn, d.intent, d.fill);
        }
        let k = cfg.in_flight_batches as usize;
        assert!(io.buffer_count() > k, "need K+1 buffers");
        let slot = io.open_segment(&first.name)?;
        let seg = Self::segment(&cfg, &ids, first, slot, next_lsn);
        let mut w = Writer {
            free_bufs: (0..io.buffer_count()).collect(),
            consumed_seq: 0,
            resolved: 0,
            delta: next_lsn.wrapping_sub(1),
            published_seq: 0,
            published_lsn: next_lsn - 1,
            wake_scratch: Vec::with_capacity(64),
            in_flight: VecDeque::with_capacity(k),
            scratch: Vec::with_capacity(table_limit),
            table,
            seg,
            ckpt: None,
            next_lsn,
            next_tag: 0,
            pending: None,
            group: GroupBuf { legs: Vec::with_capacity(tradewal_codec::intent::GROUP_MAX_LEGS as usize), first_seq: 0, ready: false },
            ranges: Ranges { current: TsRange::default(), previous: prev_range },
            expect_records: 0,
            gather_since: None,
            closing: false,
            rotate: false,
            poison: None,
            cfg,
            ids,
            shared,
            rx,
            io,
            maint_tx,
            spare_rx,
        };
        w.start_checkpoint();
        Ok(w)
    }

    fn segment(cfg: &WalConfig, ids: &SessionIds, spare: Spare, slot: FileSlot, base_lsn: Lsn) -> Segment {
        let header = SegmentHeader {
            k: cfg.in_flight_batches,
            log_id: ids.log_id,
            session_id: ids.session_id,
            session_start_unix_s: ids.session_start_unix_s,
            segment_no: spare.segment_no,
            epoch: spare.epoch,
            base_lsn,
            segment_bytes: cfg.segment_bytes,
            created_unix_ns: crate::wal::unix_ns(),
        };
        Segment { name: spare.name, slot, ctx: SegmentContext::from_header(&header), header, next_offset: 0, next_batch: 0 }
    }

    fn start_checkpoint(&mut self) {
        let parts = self.table.len().div_ceil(CHECKPOINT_ENTRIES_PER_RECORD).max(1) as u32;
        self.table.sorted_into(&mut self.scratch);
        self.ckpt = Some(CkptCursor { next_part: 0, parts, range: self.ranges.previous.take() });
        // The checkpoint's records come before the next message: shift the seq → LSN mapping.
        self.delta = self.delta.wrapping_add(u64::from(parts));
        self.shared.acks.push_era(Era { first: self.consumed_seq + 1, delta: self.delta, rejected: false, reason: None });
    }

    /// The thread body.
    pub(crate) fn run(mut self) {
        // Should the writer panic, nobody would publish again: say "unknown" to every waiter.
        struct DiedGuard(Arc<Acks>);
        impl Drop for DiedGuard {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.finish_unknown();
                }
            }
        }
        let _guard = DiedGuard(self.shared.acks.clone());
        self.main_loop();
        self.shutdown();
    }

    fn main_loop(&mut self) {
        let k = self.cfg.in_flight_batches as usize;
        loop {
            if self.poison.is_some() {
                return;
            }
            self.reap(false);
            if self.poison.is_some() {
                return;
            }
            if self.shared.abandon.load(Ordering::Acquire) {
                return;
            }
            if self.rotate {
                if self.in_flight.is_empty() {
                    self.do_rotate();
                    continue;
                }
                self.reap(true);
                continue;
            }
            if self.in_flight.len() < k && !self.free_bufs.is_empty() {
                if self.pending.is_none() && self.ckpt.is_none() && !self.closing {
                    if !self.in_flight.is_empty() && !self.gathered() {
                        // A batch is in flight and too little is queued for another one: let
                        // arrivals gather (bounded; see `gathered`).
                        self.wait_event();
                        continue;
                    }
                    self.pending = self.try_recv();
                }
                if self.pending.is_none() && self.ckpt.is_none() {
                    if !self.in_flight.is_empty() {
                        self.wait_event();
                        continue;
                    }
                    if self.closing {
                        return;
                    }
                    match self.block_recv() {
                        Some(m) => self.pending = Some(m),
                        None => {
                            // Every sender is gone: the Wal was dropped without close.
                            self.shared.abandon.store(true, Ordering::Release);
                            return;
                        }
                    }
                    if matches!(self.pending, Some(Msg::Close)) {
                        self.pending = None;
                        self.closing = true;
                        continue;
                    }
                }
                match self.fill() {
                    Fill::Submitted | Fill::Nothing => {}
                    Fill::NeedRotate => self.rotate = true,
                }
            } else {
                self.reap(true);
            }
        }
    }

    fn try_recv(&mut self) -> Option<Msg> {
        match self.rx.try_recv() {
            Ok(Msg::Close) => {
                self.closing = true;
                None
            }
            Ok(m) => Some(m),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.closing = true;
                None
            }
        }
    }

    /// Spins for `writer_spin`, then blocks. `None` when every sender is gone.
    fn block_recv(&mut self) -> Option<Msg> {
        let start = Instant::now();
        loop {
            match self.rx.try_recv() {
                Ok(m) => return Some(m),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if start.elapsed() >= self.cfg.writer_spin {
                return self.rx.recv().ok();
            }
            spin_pause();
        }
    }

    /// With a batch in flight, is what is queued worth a batch of its own now (group commit across
    /// producers, docs/design.md "Writer state machine")? Yes when
    /// - `parallel_batch_min_records` are queued (a large batch overlaps its transfer with the
    ///   in-flight flush), or
    /// - as many records are queued as the last acknowledged batch held: the producers its
    ///   acknowledgement released are back, so waiting for the in-flight flush would cost each of
    ///   them most of a second flush, or
    /// - the first of them has waited `GATHER_MAX` (the rest are slow to come back: a parked
    ///   thread on a busy CPU).
    ///
    /// Otherwise the writer waits, at most until the in-flight batch completes (then everything
    /// queued goes at once, as without this rule), so the gather never delays a record past the
    /// completion it would have waited for anyway. One producer at queue depth 1 never meets it:
    /// nothing is in flight when its append arrives.
    fn gathered(&mut self) -> bool {
        let queued = self.rx.len();
        if queued == 0 {
            self.gather_since = None;
            return false;
        }
        if queued >= self.cfg.parallel_batch_min_records || queued >= self.expect_records {
            return true;
        }
        let since = *self.gather_since.get_or_insert_with(Instant::now);
        since.elapsed() >= GATHER_MAX
    }

    /// Something is in flight and too little is queued for a parallel batch: spin on completions
    /// and the channel, then block for a completion.
    fn wait_event(&mut self) {
        let start = Instant::now();
        loop {
            if self.reap(false) > 0 || self.gathered() || self.poison.is_some() {
                return;
            }
            if start.elapsed() >= self.cfg.writer_spin {
                self.reap(true);
                return;
            }
            spin_pause();
        }
    }

    /// Reaps completions and acknowledges in order. Returns how many completions came in.
    fn reap(&mut self, wait: bool) -> usize {
        if self.io.in_flight() == 0 {
            return 0;
        }
        let mut faults: Option<(u64, IoFault)> = None;
        let in_flight = &mut self.in_flight;
        let res = self.io.reap(wait, &mut |c: Completion| {
            let front = in_flight.front().map_or(0, |f| f.tag);
            let idx = c.tag.checked_sub(front).map(|i| i as usize);
            match idx.and_then(|i| in_flight.get_mut(i)) {
                Some(b) => {
                    assert!(!b.done, "batch completed twice");
                    match c.result {
                        Ok(()) => b.done = true,
                        Err(f) => {
                            faults.get_or_insert((c.tag, f));
                        }
                    }
                }
                None => panic!("completion for unknown batch tag {}", c.tag),
            }
        });
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                let errno = crate::io::errno_of(&e);
                self.set_poison(IoFault::Errno { op: "io_uring_enter", errno }, String::new(), 0);
                return 0;
            }
        };
        if let Some((tag, fault)) = faults {
            let (file, offset) =
                self.in_flight.iter().find(|b| b.tag == tag).map(|b| (self.segment_name(b.segment_no), b.offset)).unwrap_or_default();
            self.set_poison(fault, file, offset);
            return n;
        }
        self.ack();
        n
    }

    fn segment_name(&self, segment_no: u64) -> String {
        if segment_no == self.seg.header.segment_no {
            self.seg.name.clone()
        } else {
            SegmentName { session_start_unix_s: self.ids.session_start_unix_s, segment_no }.file_name()
        }
    }

    /// Advances the durable watermark over every finished batch at the front, in LSN order (I7):
    /// one watermark store for all of them.
    fn ack(&mut self) {
        let mut advanced = None;
        while self.in_flight.front().is_some_and(|b| b.done) {
            let b = self.in_flight.pop_front().expect("front");
            self.expect_records = b.records as usize;
            if b.first_of_segment {
                // Before the watermark: a durable LSN the manifest records always lies in a segment
                // it records as holding data.
                self.shared.data_segment_no.fetch_max(b.segment_no, Ordering::Release);
            }
            let prev = advanced.map_or(self.published_lsn, |(_, l)| l);
            assert!(prev < b.last_lsn, "durable LSN must rise: {prev} then {}", b.last_lsn);
            advanced = Some((b.last_seq, b.last_lsn));
            self.free_bufs.push_back(b.buf);
            if b.checkpoint_done {
                // The whole checkpoint that starts this segment is durable (it may span batches:
                // retiring older segments after its first batch alone would let a crash leave a
                // partial checkpoint as the oldest record of the log): older segments are covered
                // (retention).
                let _ = self.maint_tx.try_send(MaintMsg::Retire(b.segment_no));
            }
        }
        if let Some((seq, lsn)) = advanced {
            self.publish_durable(seq, lsn);
        }
    }

    /// The one place the durable watermark advances: every message up to `seq`, every record up
    /// to `lsn`, is resolved / durable.
    fn publish_durable(&mut self, seq: u64, lsn: Lsn) {
        assert!(seq >= self.published_seq && lsn >= self.published_lsn, "watermark must not fall");
        self.published_seq = seq;
        self.published_lsn = lsn;
        self.shared.acks.publish(seq, lsn, &mut self.wake_scratch);
        publish_acked(&self.shared, lsn);
    }

    /// Messages consumed that wrote nothing (rejected marks) after the last batch: they resolve
    /// with the batch in flight, or at once when nothing is in flight.
    fn cover_consumed(&mut self) {
        if self.consumed_seq <= self.published_seq {
            return;
        }
        match self.in_flight.back_mut() {
            Some(b) => b.last_seq = b.last_seq.max(self.consumed_seq),
            None => self.publish_durable(self.consumed_seq, self.published_lsn),
        }
    }

    /// Where the next batch goes in the segment, or `None` when not even a block is left.
    fn batch_place(&self) -> Option<BatchPlace> {
        let first_of_segment = self.seg.next_batch == 0;
        // Batch 0 is written from offset 0 with the header block in front of it.
        let (write_offset, enc_at) = if first_of_segment { (0, BLOCK_BYTES) } else { (self.seg.next_offset, 0) };
        let batch_offset = write_offset + enc_at as u64;
        let room = (self.cfg.segment_bytes - batch_offset).min(self.cfg.max_batch_bytes as u64) as usize;
        let room = room - room % BLOCK_BYTES;
        (room > 0).then_some(BatchPlace { write_offset, enc_at, room, first_of_segment })
    }

    /// Encodes one batch from the pending checkpoint and queued messages, and submits it.
    fn fill(&mut self) -> Fill {
        let Some(place) = self.batch_place() else { return Fill::NeedRotate };
        let buf = *self.free_bufs.front().expect("free buffer");
        let (ctx, batch_no, first_lsn) = (self.seg.ctx, self.seg.next_batch, self.next_lsn);
        let data = self.io.buffer(buf);
        let mut enc = BatchEncoder::new(&mut data[place.enc_at..place.enc_at + place.room], ctx, batch_no, first_lsn);
        // 1. The checkpoint that starts every segment; 2. queued intents and outcomes.
        let checkpoint_pending = self.ckpt.is_some();
        let mut full = encode_checkpoint(&mut self.ckpt, &self.scratch, &mut enc);
        let checkpoint_done = checkpoint_pending && self.ckpt.is_none();
        if !full && self.ckpt.is_none() {
            let mut intake = Intake {
                rx: &self.rx,
                pending: &mut self.pending,
                closing: &mut self.closing,
                consumed_seq: &mut self.consumed_seq,
                delta: &mut self.delta,
                table: &mut self.table,
                resolved: &mut self.resolved,
                acks: &self.shared.acks,
                group: &mut self.group,
                range: &mut self.ranges.current,
            };
            full = intake.encode_messages(&mut enc);
        }
        // Before the batch's watermark: an append that waited for this outcome sees the room.
        self.shared.resolved.store(self.resolved, Ordering::Release);
        if enc.is_empty() {
            // Nothing to write (only rejected marks), or not even one record fits in what is
            // left of the segment.
            self.cover_consumed();
            return if full { Fill::NeedRotate } else { Fill::Nothing };
        }
        let (next_lsn, records) = (enc.next_lsn(), enc.record_count() as u64);
        let batch_len = enc.finish();
        self.submit_batch(buf, &place, place.enc_at + batch_len, next_lsn, records, checkpoint_done);
        Fill::Submitted
    }

    /// Puts the header in front of batch 0, checks the batch's place and the K-window (I4), and
    /// hands the write of `len` bytes from buffer `buf` to the device.
    fn submit_batch(&mut self, buf: usize, place: &BatchPlace, len: usize, next_lsn: Lsn, records: u64, checkpoint_done: bool) {
        if place.first_of_segment {
            self.seg.header.encode(&mut self.io.buffer(buf)[..BLOCK_BYTES]);
        }
        let write_offset = place.write_offset;
        let tag = self.next_tag;
        let mut offset = write_offset;
        if self.cfg.misaligned_write_at_batch == Some(tag) {
            offset += 1; // fault injection: O_DIRECT rejects a misaligned offset (EINVAL)
        }
        assert!(write_offset + len as u64 <= self.cfg.segment_bytes, "batch past the segment end");
        assert!(write_offset % BLOCK_BYTES as u64 == 0 && len % BLOCK_BYTES == 0);
        // I4's K-window, which recovery trusts to tell a torn tail from corruption: never more
        // than K batches in flight, so a valid batch K later proves every earlier one landed.
        assert!(
            self.in_flight.len() < self.cfg.in_flight_batches as usize,
            "submitting a batch with {} in flight breaks the K = {} window",
            self.in_flight.len(),
            self.cfg.in_flight_batches
        );
        self.gather_since = None;
        let submitted = self.io.submit(self.seg.slot, offset, buf, len, tag);
        // Tracked as in flight either way: after a failed submit its tickets fail with the rest.
        self.free_bufs.pop_front();
        self.in_flight.push_back(InFlight {
            tag,
            buf,
            records: records as u32,
            last_lsn: next_lsn - 1,
            last_seq: self.consumed_seq,
            segment_no: self.seg.header.segment_no,
            first_of_segment: place.first_of_segment,
            checkpoint_done,
            offset: write_offset,
            done: false,
        });
        if let Err(e) = submitted {
            let errno = crate::io::errno_of(&e);
            self.set_poison(IoFault::Errno { op: "submit", errno }, self.seg.name.clone(), write_offset);
            return;
        }
        self.next_tag += 1;
        self.next_lsn = next_lsn;
        self.seg.next_offset = write_offset + len as u64;
        self.seg.next_batch += 1;
        let c = &self.shared.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.records.fetch_add(records, Ordering::Relaxed);
        c.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Switches to the spare segment. Called with nothing in flight.
    fn do_rotate(&mut self) {
        assert!(self.in_flight.is_empty() && self.io.in_flight() == 0, "rotation with batches in flight");
        self.rotate = false;
        let started = Instant::now();
        let spare = match self.spare_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let errno = crate::io::errno_of(&e);
                let name = self.segment_name(self.seg.header.segment_no + 1);
                self.set_poison(IoFault::Errno { op: "create segment", errno }, name, 0);
                return;
            }
            Err(_) => {
                let name = self.segment_name(self.seg.header.segment_no + 1);
                self.set_poison(IoFault::Errno { op: "create segment", errno: libc::EIO }, name, 0);
                return;
            }
        };
        let waited = started.elapsed().as_nanos() as u64;
        let c = &self.shared.counters;
        c.rotations.fetch_add(1, Ordering::Relaxed);
        c.rotation_wait_ns.fetch_add(waited, Ordering::Relaxed);
        c.rotation_wait_ns_max.fetch_max(waited, Ordering::Relaxed);
        let next_no = spare.segment_no + 1;
        let slot = match self.io.open_segment(&spare.name) {
            Ok(s) => s,
            Err(e) => {
                let errno = crate::io::errno_of(&e);
                self.set_poison(IoFault::Errno { op: "open segment", errno }, spare.name, 0);
                return;
            }
        };
        self.io.close_segment(self.seg.slot);
        self.seg = Self::segment(&self.cfg, &self.ids, spare, slot, self.next_lsn);
        self.ranges.previous = Some(std::mem::take(&mut self.ranges.current));
        self.start_checkpoint();
        let _ = self.maint_tx.send(MaintMsg::Prepare(next_no));
    }

    fn set_poison(&mut self, fault: IoFault, file: String, offset: u64) {
        if self.poison.is_some() {
            return;
        }
        tracing::error!(%fault, %file, offset, "tradewal: I/O fault, log poisoned (fail-stop)");
        let cause = Arc::new(PoisonCause { fault, file, offset });
        self.shared.acks.set_poisoned(cause.clone());
        self.shared.poisoned.store(true, Ordering::Release);
        self.poison = Some(cause);
    }

    /// After the main loop: wait for every submitted batch and publish what completed (so a
    /// ticket above the final watermark was never written, unless the log is poisoned), stop
    /// taking messages, then resolve everything above the watermark (ticket.rs).
    fn shutdown(&mut self) {
        while self.poison.is_none() && self.io.in_flight() > 0 {
            self.reap(true);
        }
        // Poisoned: reap the rest without acknowledging (no buffer is freed under the kernel).
        while self.io.in_flight() > 0 {
            if self.io.reap(true, &mut |_| {}).is_err() {
                break;
            }
        }
        let submitted = self.in_flight.back().map_or(self.published_seq, |b| b.last_seq);
        // Appends from now on fail at once instead of queueing for nobody.
        self.rx = crossbeam_channel::never();
        self.shared.acks.finish(submitted);
    }
}

/// Publishes the acknowledged watermark to readers (the watermark file, docs/design.md): called
/// from [`Writer::publish_durable`], after the durable watermark rose, so the published value
/// never runs ahead of what is durable. The one call site for readers' view.
pub(crate) fn publish_acked(shared: &Shared, lsn: Lsn) {
    if let Some(w) = &shared.watermark {
        w.store(lsn);
    }
}

/// Longest the writer lets records queued behind an in-flight batch gather before it writes them
/// as a batch of their own (`Writer::gathered`).
const GATHER_MAX: Duration = Duration::from_micros(20);

/// One step of a bounded spin: a pause, then a yield so that a thread sharing this CPU (a
/// producer on a busy machine) can run.
fn spin_pause() {
    for _ in 0..32 {
        std::hint::spin_loop();
    }
    std::thread::yield_now();
}

/// What the maintenance thread needs besides its channels.
pub(crate) struct MaintCtx {
    pub storage: Arc<dyn Storage>,
    pub ids: SessionIds,
    pub segment_bytes: u64,
    pub retention: Retention,
    /// Segments kept, in number order (data segments of earlier sessions and this one's).
    pub segments: Vec<(u64, String)>,
    pub shared: Arc<Shared>,
    /// The manifest as last written (at open).
    pub manifest: Manifest,
    /// Longest time between manifest updates while acknowledgements flow.
    pub manifest_interval: Duration,
    /// Bytes of segments retention keeps for one lagging named reader.
    pub max_reader_lag_bytes: u64,
    /// Recyclable files (retired segments renamed `<name>.free`, the rename durable), at most
    /// [`MAX_RECYCLABLE`]; used only under [`Retention::Delete`].
    pub recyclable: Vec<String>,
}

/// Most retired segment files kept for recycling (docs/design.md, "Recycled segment files"):
/// one is enough in steady state (a rotation's spare is prepared from the file retired at the
/// rotation before), two absorb a burst of rotations.
pub(crate) const MAX_RECYCLABLE: usize = 2;

/// Suffix of a recyclable file: a retired segment's name plus this.
pub(crate) const RECYCLABLE_SUFFIX: &str = ".free";

/// Whether retired segment files are recycled: only when retention deletes them. `ArchiveTo`
/// moves the file itself into the archive (recycling it would overwrite the archived copy);
/// `KeepAll` retires nothing.
pub(crate) fn recycles(retention: &Retention) -> bool {
    *retention == Retention::Delete
}

/// The recyclable files found at open (left by an earlier session): up to [`MAX_RECYCLABLE`] of
/// the right size are kept for this session when it recycles, every other one is removed (and
/// the directory fsynced). Their names are durable: recovery fsynced the directory.
pub(crate) fn recyclable_at_open(storage: &dyn Storage, retention: &Retention, segment_bytes: u64) -> std::io::Result<Vec<String>> {
    let mut found: Vec<String> =
        storage.list()?.into_iter().filter(|n| n.strip_suffix(RECYCLABLE_SUFFIX).and_then(SegmentName::parse).is_some()).collect();
    found.sort();
    let mut keep = Vec::new();
    let mut removed = false;
    for name in found {
        if recycles(retention) && keep.len() < MAX_RECYCLABLE && storage.file_len(&name).ok() == Some(segment_bytes) {
            keep.push(name);
        } else {
            storage.remove(&name)?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir()?;
    }
    Ok(keep)
}

/// Makes the spare `name`: recycles a recyclable file when there is one, else creates a
/// zero-filled file. Returns whether it recycled. A recyclable file gone missing is skipped;
/// any other failure is the spare's failure (the writer fails at its rotation, I6).
fn prepare_spare(cx: &mut MaintCtx, name: &str) -> std::io::Result<bool> {
    while let Some(free) = cx.recyclable.pop() {
        match cx.storage.recycle(&free, name) {
            Ok(()) => {
                cx.shared.counters.segments_recycled.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %free, "tradewal: recyclable segment file vanished; trying the next");
            }
            Err(e) => return Err(e),
        }
    }
    let mut pacer = ZeroPacer::new(&cx.shared);
    cx.storage.create_zeroed_paced(name, cx.segment_bytes, &mut |z| pacer.pace(z)).map(|()| false)
}

/// Writes the manifest with the current durable LSN and data segment; counts the write.
fn update_manifest(cx: &mut MaintCtx) -> std::io::Result<()> {
    let data_no = cx.shared.data_segment_no.load(Ordering::Acquire);
    if data_no != 0 && !cx.manifest.lists_used(data_no) {
        let name = cx.segments.iter().find(|(n, _)| *n == data_no).map(|(_, f)| f.clone());
        cx.manifest.note_used(data_no, name.as_deref());
    }
    // Read after the data segment: a durable LSN always lies in a segment already noted.
    cx.manifest.acked_lsn = cx.shared.acks.wm.durable_lsn();
    let c = &cx.shared.counters;
    match manifest::store(cx.storage.as_ref(), &cx.manifest) {
        Ok(()) => {
            c.manifest_writes.fetch_add(1, Ordering::Relaxed);
            c.manifest_lsn.store(cx.manifest.acked_lsn, Ordering::Release);
            Ok(())
        }
        Err(e) => {
            c.manifest_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "tradewal: manifest update failed");
            Err(e)
        }
    }
}

/// The maintenance thread: keeps the manifest, prepares spares ahead of need and applies
/// retention. The manifest is rewritten before each spare is created (so every segment file
/// tradewal creates is accounted for), when a segment's first batch is durable (before retention
/// removes what it covers), at least every `manifest_interval` while the durable LSN moves, and at
/// stop.
pub(crate) fn maintenance(mut cx: MaintCtx, rx: Receiver<MaintMsg>, spare_tx: Sender<std::io::Result<Spare>>) {
    let mut last_write = Instant::now();
    loop {
        let wait = cx.manifest_interval.saturating_sub(last_write.elapsed());
        let m = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match m {
            None => {
                let data_no = cx.shared.data_segment_no.load(Ordering::Acquire);
                let moved = cx.shared.acks.wm.durable_lsn() != cx.manifest.acked_lsn || (data_no != 0 && !cx.manifest.lists_used(data_no));
                if moved {
                    let _ = update_manifest(&mut cx);
                }
                last_write = Instant::now();
            }
            Some(MaintMsg::Prepare(no)) => {
                let name = SegmentName { session_start_unix_s: cx.ids.session_start_unix_s, segment_no: no }.file_name();
                cx.manifest.note_created(&name);
                let r = update_manifest(&mut cx).and_then(|()| prepare_spare(&mut cx, &name)).map(|recycled| Spare {
                    segment_no: no,
                    name: name.clone(),
                    epoch: life_epoch(crate::wal::random_u64(), recycled),
                });
                last_write = Instant::now();
                if r.is_ok() {
                    cx.segments.push((no, name));
                    cx.shared.counters.spares_prepared.fetch_add(1, Ordering::Release);
                } else {
                    cx.shared.spare_failed.store(true, Ordering::Release);
                }
                if spare_tx.send(r).is_err() {
                    break;
                }
            }
            Some(MaintMsg::Retire(below)) => {
                let below = keep_for_readers(&cx, below);
                if cx.retention != Retention::KeepAll {
                    cx.manifest.retire_below(below);
                }
                // The manifest stops listing what retention removes before it is removed.
                let ok = update_manifest(&mut cx).is_ok();
                last_write = Instant::now();
                if ok {
                    retire(&mut cx, below);
                }
            }
            Some(MaintMsg::Stop) => {
                let _ = update_manifest(&mut cx);
                break;
            }
        }
    }
}

/// Paces the zero-fill of a spare against the log being written (docs/design.md "Spares"): the
/// zeros land in the device's write-back cache, and every durable write of the log has to push
/// out whatever is there first, so 64 MiB of zeros written at full speed put a millisecond stall
/// into the log's flushes right after each rotation. While the log is being written, the fill
/// may run at most `ZERO_PACE` times ahead of the bytes the log wrote since the fill started
/// (the spare is then ready long before the segment in service is full); while the log is idle
/// (nothing written for `IDLE_AFTER`) it runs at full speed: then nobody waits for a flush.
struct ZeroPacer<'a> {
    shared: &'a Shared,
    log_start: u64,
    /// Log bytes last seen, and when they last changed.
    seen: u64,
    seen_at: Instant,
}

/// How far the zero-fill may run ahead of the log's own writes.
const ZERO_PACE: u64 = 4;
/// A log that wrote nothing for this long is idle.
const IDLE_AFTER: Duration = Duration::from_millis(1);

impl<'a> ZeroPacer<'a> {
    fn new(shared: &'a Shared) -> Self {
        let b = shared.counters.bytes.load(Ordering::Relaxed);
        ZeroPacer { shared, log_start: b, seen: b, seen_at: Instant::now() }
    }

    /// Called with the bytes zeroed so far; returns when the next chunk may be written.
    fn pace(&mut self, zeroed: u64) {
        loop {
            // The clock before the counter: an unchanged counter read after `now` proves the log
            // wrote nothing from `seen_at` to `now` (this thread being descheduled between the two
            // reads must not look like an idle log).
            let now = Instant::now();
            let b = self.shared.counters.bytes.load(Ordering::Relaxed);
            if b != self.seen {
                (self.seen, self.seen_at) = (b, now);
            }
            let ahead = zeroed > ZERO_PACE.saturating_mul(b - self.log_start);
            let idle = now.saturating_duration_since(self.seen_at) >= IDLE_AFTER;
            if !ahead || idle || self.shared.abandon.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Lowers `below` so that retention keeps the segment holding each named reader's next LSN
/// (`readers/NAME.cursor`, docs/design.md "Named cursors") and every later one. A reader that
/// would keep more than `max_reader_lag_bytes` beyond `below` is marked dropped (with a warning)
/// and no longer kept. An unreadable `readers/` keeps everything (never delete on a guess).
fn keep_for_readers(cx: &MaintCtx, below: u64) -> u64 {
    if cx.retention == Retention::KeepAll {
        return below;
    }
    let Some(readers) = cx.storage.cursor_dir() else { return below };
    let cursors = match crate::follower::read_readers(&readers) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "tradewal: cannot read the named readers' cursors; retention keeps every segment");
            return cx.segments.first().map_or(below, |(no, _)| (*no).min(below));
        }
    };
    let mut keep = below;
    for c in cursors.iter().filter(|c| !c.dropped) {
        let need = c.committed + 1;
        let holder =
            cx.segments.iter().rev().find(|(no, name)| segment_base_lsn(cx.storage.as_ref(), name, *no).is_some_and(|base| base <= need));
        let Some(&(holder, _)) = holder else { continue };
        if holder >= below {
            continue;
        }
        let lag_bytes = (below - holder).saturating_mul(cx.segment_bytes);
        if lag_bytes > cx.max_reader_lag_bytes {
            tracing::warn!(reader = %c.name, committed = c.committed, lag_bytes, max = cx.max_reader_lag_bytes,
                "tradewal: named reader lags more than max_reader_lag_bytes; dropped, retention no longer keeps its segments");
            if let Err(e) = crate::follower::mark_dropped(&readers, &c.name) {
                tracing::warn!(reader = %c.name, error = %e, "tradewal: marking a reader dropped failed");
            }
            continue;
        }
        keep = keep.min(holder);
    }
    keep
}

/// First LSN of a segment, from its header (None: no valid header, e.g. a spare).
fn segment_base_lsn(storage: &dyn Storage, name: &str, no: u64) -> Option<Lsn> {
    let mut block = vec![0u8; tradewal_codec::BLOCK_BYTES];
    let n = storage.read_range(name, 0, &mut block).ok()?;
    let d = tradewal_codec::SegmentDecoder::new(&block[..n], Some(no));
    d.header().filter(|h| h.segment_no == no).map(|h| h.base_lsn)
}

/// Applies retention to the segments numbered below `below`. Under `Delete`, up to
/// [`MAX_RECYCLABLE`] files (of the current segment size) are renamed `<name>.free` instead of
/// deleted; they join the recyclable pool once the directory fsync made the rename durable (so
/// block 0 is never zeroed under the old segment name, where it would read as a data segment
/// with a lost header).
fn retire(cx: &mut MaintCtx, below: u64) {
    let (storage, retention) = (&cx.storage, &cx.retention);
    let mut changed = false;
    let mut freed: Vec<String> = Vec::new();
    let room = MAX_RECYCLABLE.saturating_sub(cx.recyclable.len());
    let segment_bytes = cx.segment_bytes;
    cx.segments.retain(|(no, name)| {
        if *no >= below {
            return true;
        }
        let r = match retention {
            Retention::KeepAll => return true,
            Retention::Delete if freed.len() < room && storage.file_len(name).ok() == Some(segment_bytes) => {
                let free = format!("{name}{RECYCLABLE_SUFFIX}");
                storage.rename(name, &free).map(|()| freed.push(free))
            }
            Retention::Delete => storage.remove(name),
            Retention::ArchiveTo(dir) => storage.archive(name, dir),
        };
        match r {
            Ok(()) => {
                changed = true;
                false
            }
            Err(e) => {
                tracing::warn!(%name, error = %e, "tradewal: retention failed; segment kept");
                true
            }
        }
    });
    if changed {
        match storage.sync_dir() {
            Ok(()) => cx.recyclable.extend(freed),
            Err(e) => tracing::warn!(error = %e, "tradewal: directory fsync after retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared::new(0, None)
    }

    /// An idle log (nothing written) does not hold the zero-fill back beyond `IDLE_AFTER`.
    #[test]
    fn zero_pacer_runs_free_while_the_log_is_idle() {
        let s = shared();
        let mut p = ZeroPacer::new(&s);
        let t = Instant::now();
        p.pace(64 << 20);
        let waited = t.elapsed();
        assert!(waited >= IDLE_AFTER, "returned after {waited:?}, before the log counted as idle");
        assert!(waited < Duration::from_secs(2), "an idle log held the fill back {waited:?}");
    }

    /// While the log writes, the fill stays within ZERO_PACE times the log's progress, unless the
    /// log paused for IDLE_AFTER (the writing thread below records its longest pause).
    #[test]
    fn zero_pacer_stays_within_pace_of_an_active_log() {
        let s = shared();
        let stop = AtomicBool::new(false);
        // The longest time the log wrote nothing while the pacer ran: from the pacer's creation to
        // the first write, between writes, and from the last write to the pacer's return (a
        // writing thread not yet scheduled, or descheduled, is an idle log to the pacer too).
        let (max_gap, progress, zeroed) = std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                let mut at = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    s.counters.bytes.fetch_add(4096, Ordering::Relaxed);
                    at.push(Instant::now());
                    std::thread::sleep(Duration::from_micros(50));
                }
                at
            });
            let t0 = Instant::now();
            let mut p = ZeroPacer::new(&s);
            let zeroed = 1u64 << 20;
            p.pace(zeroed);
            let t1 = Instant::now();
            let progress = s.counters.bytes.load(Ordering::Relaxed) - p.log_start;
            stop.store(true, Ordering::Relaxed);
            let writes = h.join().unwrap();
            let mut edges: Vec<Instant> = writes.into_iter().filter(|&w| w <= t1).collect();
            edges.insert(0, t0);
            edges.push(t1);
            let max_gap = edges.windows(2).map(|w| w[1].saturating_duration_since(w[0])).max().unwrap_or_default();
            (max_gap, progress, zeroed)
        });
        assert!(
            ZERO_PACE * progress >= zeroed || max_gap >= IDLE_AFTER,
            "fill ran {zeroed} bytes ahead of a log that wrote {progress} (longest pause {max_gap:?})"
        );
        eprintln!("longest pause of the writing thread: {max_gap:?}");
    }
}

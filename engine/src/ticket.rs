//! Tickets: acknowledgements as a view of the durable watermark.
//!
//! # Design
//!
//! Every append or mark takes a *sequence number* (`seq`, 1, 2, 3, ...) in the order it enters
//! the writer's queue (the `Wal` hands them out under the queue's send lock, so queue order is seq
//! order). The writer processes messages strictly in seq order and, after each durable batch,
//! publishes **one** watermark: "every message with seq <= `durable_seq` is resolved" (and the
//! matching `durable_lsn`). A [`Ticket`] is its seq plus a pointer to that shared state; waiting
//! is comparing `seq` with the watermark. The writer does no per-record completion work, and there
//! is no ticket pool to run dry: a ticket can be kept as long as the caller likes.
//!
//! The LSN a ticket resolves to follows from its seq: `lsn = seq + delta`, where `delta` changes
//! only when the writer inserts records that are not messages (the checkpoint that starts every
//! segment: `+parts`) or consumes a message that writes nothing (a mark of an LSN not in doubt:
//! that seq resolves to [`WalError::NotInDoubt`], and later seqs get `delta - 1`). Each change is
//! an *era* `(first_seq, delta, first_rejected)`, published before the watermark that covers it;
//! the newest era is read lock-free (a seqlock), older ones from a history under a mutex (eras
//! change once per segment and per rejected mark, never per record).
//!
//! Fail-stop (I6): when the log is poisoned the writer publishes its last watermark, then an end
//! state; every ticket above the final watermark resolves to [`WalError::Poisoned`]. When the
//! writer stops without poison (close, or the `Wal` dropped), it first waits for every submitted
//! batch and publishes what completed, so a ticket above the final watermark was never written
//! ([`WalError::Closed`] is then the truth). Only if the writer thread dies (a panic) without
//! knowing, tickets above the watermark say [`WalError::OutcomeUnknown`]: treat as in doubt.
//!
//! Waiting: spin on the watermark, then park. Parked threads are woken once per batch (after its
//! watermark store the writer takes the park lock, uncontended unless someone is parking, and
//! broadcasts only when the parked-thread count is non-zero: no system call when nobody sleeps). Async tasks register their waker only when a poll finds the ticket
//! pending; the writer wakes the registered wakers whose seq the new watermark covers.
//!
//! Ordering argument (no lost wake-up): a parking thread, under the lock, increments `parked` and
//! checks the watermark before sleeping on the condvar (which releases the lock); the writer
//! stores the watermark, then takes the lock and reads `parked`. Either the writer's critical
//! section comes first (then the waiter's check, ordered after it by the lock, sees the store) or
//! the waiter's does (then the writer sees `parked > 0` and its broadcast finds the waiter
//! asleep). The `loom` model in this file checks it (`RUSTFLAGS="--cfg loom"`). Async wakers use a
//! SeqCst count instead (store, then load of the count; increment, then check): correct in the
//! C++ memory model's single total order of SeqCst operations, which loom does not model, so it is
//! covered by the stress and Future tests only.

use crate::error::{PoisonCause, WalError};
use crate::io::IoFault;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};
use tradewal_codec::Lsn;

/// The atomics and locks of the watermark core: `loom`'s under `--cfg loom` (model checking),
/// std's otherwise.
mod sync {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    #[cfg(loom)]
    pub(crate) use loom::sync::Mutex;
    #[cfg(loom)]
    pub(crate) use loom::thread::{current, park, Thread};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    #[cfg(not(loom))]
    pub(crate) use std::sync::Mutex;
    #[cfg(not(loom))]
    pub(crate) use std::thread::{current, park, Thread};
}

use std::sync::atomic::Ordering as StdOrdering;
use std::sync::atomic::{fence, AtomicBool, AtomicU64 as StdAtomicU64, AtomicUsize as StdAtomicUsize};
use std::sync::Mutex as StdMutex;

/// How long [`Ticket::wait`] spins before it parks when no long-spin place is free.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(30);
/// Spin iterations between two clock reads while spinning for a bounded time.
const SPINS_PER_CLOCK_READ: u32 = 64;
/// How long [`Ticket::wait`] spins when a spinning place is free: longer than a typical durable
/// write (~90 µs here), because waking a parked thread on an idle virtual CPU costs tens of
/// microseconds (measured: QD1 p50 ~160 µs parked vs ~75 µs spinning, floor ~74 µs).
const WAIT_SPIN_LONG: Duration = Duration::from_micros(300);

/// Threads spinning in [`Ticket::wait`] right now, across all logs.
static SPINNERS: StdAtomicUsize = StdAtomicUsize::new(0);

/// At most one spinning waiter per CPU beyond the writer's: more would take the CPU the writer
/// (and the waiters themselves) need.
fn max_spinners() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)))
}

/// A place among the long spinners, released on drop.
struct SpinPlace(bool);

impl SpinPlace {
    fn take() -> SpinPlace {
        let n = SPINNERS.fetch_add(1, StdOrdering::AcqRel);
        if n < max_spinners() {
            SpinPlace(true)
        } else {
            SPINNERS.fetch_sub(1, StdOrdering::AcqRel);
            SpinPlace(false)
        }
    }

    fn budget(&self) -> Duration {
        if self.0 {
            WAIT_SPIN_LONG
        } else {
            SPIN_BEFORE_PARK
        }
    }
}

impl Drop for SpinPlace {
    fn drop(&mut self) {
        if self.0 {
            SPINNERS.fetch_sub(1, StdOrdering::AcqRel);
        }
    }
}

/// How the writer ended (the low two bits of `Watermark::end`).
const END_RUNNING: u64 = 0;
const END_POISONED: u64 = 1;
const END_STOPPED: u64 = 2;
const END_UNKNOWN: u64 = 3;

/// What the watermark says about one seq (or one LSN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not resolved yet.
    Pending,
    /// Covered by the durable watermark.
    Durable,
    /// Above the final watermark of a poisoned log (I6).
    Poisoned,
    /// Above everything the stopped writer submitted: never written.
    Closed,
    /// The writer stopped without knowing whether this was written: treat as in doubt.
    Unknown,
}

/// The watermark core the writer publishes and waiters compare against (model-checked with loom).
/// Aligned to its own cache lines: it is written by the writer once per batch and read by every
/// waiter, and must not share a line with the `Arc` counts that every ticket clone and drop
/// modifies.
#[repr(align(128))]
pub(crate) struct Watermark {
    durable_seq: sync::AtomicU64,
    durable_lsn: sync::AtomicU64,
    /// `END_RUNNING`, or `(submitted_seq << 2) | END_*` once the writer has stopped.
    end: sync::AtomicU64,
    /// Threads registered in `sleepers` (changed only under its lock).
    parked: sync::AtomicUsize,
    sleepers: sync::Mutex<Sleepers>,
}

/// What a parked thread waits for: the watermark to cover a message seq or a record LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Seq(u64),
    Lsn(Lsn),
}

/// A parked thread: woken (and removed) by the publish that covers its key, or by the end.
struct Sleeper {
    key: Key,
    /// Lets a timed-out waiter find its own entry (the timed wait is not modelled under loom).
    #[cfg_attr(loom, allow(dead_code))]
    id: u64,
    thread: sync::Thread,
}

#[derive(Default)]
struct Sleepers {
    list: Vec<Sleeper>,
    next_id: u64,
}

impl Watermark {
    pub(crate) fn new(durable_lsn: Lsn) -> Watermark {
        Watermark {
            durable_seq: sync::AtomicU64::new(0),
            durable_lsn: sync::AtomicU64::new(durable_lsn),
            end: sync::AtomicU64::new(END_RUNNING),
            parked: sync::AtomicUsize::new(0),
            // Room for a few dozen parked threads before the list ever grows.
            sleepers: sync::Mutex::new(Sleepers { list: Vec::with_capacity(64), next_id: 0 }),
        }
    }

    /// Every message with seq <= this is resolved.
    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable_seq.load(sync::Ordering::SeqCst)
    }

    /// Every record with LSN <= this is durable.
    pub(crate) fn durable_lsn(&self) -> Lsn {
        self.durable_lsn.load(sync::Ordering::SeqCst)
    }

    /// Writer: the watermark advanced to (`seq`, `lsn`). Wakes parked threads if there are any.
    pub(crate) fn publish(&self, seq: u64, lsn: Lsn) {
        // Only the writer stores: a plain load is its own previous store.
        let prev_seq = self.durable_seq.load(sync::Ordering::Relaxed);
        let prev_lsn = self.durable_lsn.load(sync::Ordering::Relaxed);
        assert!(seq >= prev_seq && lsn >= prev_lsn, "watermark must not fall: seq {prev_seq}->{seq}, lsn {prev_lsn}->{lsn}");
        assert!(self.end.load(sync::Ordering::Relaxed) == END_RUNNING, "publish after the writer ended");
        // LSN first: a ticket that sees its seq covered sees durable_lsn() cover its record.
        self.durable_lsn.store(lsn, sync::Ordering::SeqCst);
        self.durable_seq.store(seq, sync::Ordering::SeqCst);
        // A waiter registers and checks the watermark under the lock: taking it after the store
        // cannot miss one that saw the old watermark (it is in the list, asleep or about to
        // park, and an unpark before its park makes the park return at once).
        let mut g = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        if self.parked.load(sync::Ordering::Relaxed) > 0 {
            // Only the threads this batch resolves: waking the others only to park them again
            // cost 16 closed-loop producers on 2 CPUs a context switch each per batch.
            let mut i = 0;
            while i < g.list.len() {
                let covered = match g.list[i].key {
                    Key::Seq(s) => s <= seq,
                    Key::Lsn(l) => l <= lsn,
                };
                if covered {
                    let s = g.list.swap_remove(i);
                    self.parked.fetch_sub(1, sync::Ordering::Relaxed);
                    s.thread.unpark();
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Wakes and removes every parked thread (the writer ended).
    fn wake_all(&self) {
        let mut g = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        for s in g.list.drain(..) {
            s.thread.unpark();
        }
        self.parked.store(0, sync::Ordering::Relaxed);
    }

    /// Writer: it has stopped (after its last `publish`). `submitted_seq`: the highest seq it
    /// handed to the device (everything above was never written).
    pub(crate) fn finish(&self, kind: u64, submitted_seq: u64) {
        assert!(kind != END_RUNNING && kind <= END_UNKNOWN);
        assert!(submitted_seq < 1 << 62, "seq out of range");
        // First end wins (a panic guard may try again after a clean finish).
        let _ = self.end.compare_exchange(END_RUNNING, (submitted_seq << 2) | kind, sync::Ordering::SeqCst, sync::Ordering::SeqCst);
        self.wake_all();
    }

    /// True once the writer has stopped.
    pub(crate) fn ended(&self) -> bool {
        self.end.load(sync::Ordering::SeqCst) != END_RUNNING
    }

    /// The status of message `seq`.
    pub(crate) fn status(&self, seq: u64) -> Status {
        if seq <= self.durable_seq.load(sync::Ordering::SeqCst) {
            return Status::Durable;
        }
        let end = self.end.load(sync::Ordering::SeqCst);
        if end == END_RUNNING {
            return Status::Pending;
        }
        // The end is stored after the last publish: this load sees the final watermark.
        if seq <= self.durable_seq.load(sync::Ordering::SeqCst) {
            return Status::Durable;
        }
        match end & 3 {
            END_POISONED => Status::Poisoned,
            END_STOPPED if seq > end >> 2 => Status::Closed,
            _ => Status::Unknown,
        }
    }

    /// The status of the record at `lsn` (for `Wal::wait_durable`).
    pub(crate) fn status_lsn(&self, lsn: Lsn) -> Status {
        if lsn <= self.durable_lsn.load(sync::Ordering::SeqCst) {
            return Status::Durable;
        }
        let end = self.end.load(sync::Ordering::SeqCst);
        if end == END_RUNNING {
            return Status::Pending;
        }
        if lsn <= self.durable_lsn.load(sync::Ordering::SeqCst) {
            return Status::Durable;
        }
        match end & 3 {
            END_POISONED => Status::Poisoned,
            END_STOPPED => Status::Closed,
            _ => Status::Unknown,
        }
    }

    /// Under the lock: `f`'s answer, or else this thread registered as waiting for `key` (its id).
    fn check_or_register<R>(&self, key: Key, f: &impl Fn(&Watermark) -> Option<R>) -> Result<R, u64> {
        let mut g = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = f(self) {
            return Ok(r);
        }
        let id = g.next_id;
        g.next_id += 1;
        g.list.push(Sleeper { key, id, thread: sync::current() });
        self.parked.fetch_add(1, sync::Ordering::Relaxed);
        Err(id)
    }

    /// Blocks until `f` gives `Some`; `key` says which publish can make it so (the one that
    /// covers it) and is woken then, or at the end. `f` must give `Some` once the watermark covers
    /// `key` or the writer ended.
    pub(crate) fn park_until<R>(&self, key: Key, f: impl Fn(&Watermark) -> Option<R>) -> R {
        if let Some(r) = f(self) {
            return r;
        }
        if let Ok(r) = self.check_or_register(key, &f) {
            return r;
        }
        loop {
            sync::park();
            // Woken by the publish that covered `key` (which removed the entry), by the end, or
            // spuriously (the entry is still listed: park again). An entry left behind when `f`
            // turned true before its publish took the lock is removed by that publish.
            if let Some(r) = f(self) {
                return r;
            }
        }
    }

    /// Like [`Watermark::park_until`] with a deadline (`None`: no deadline). `None` if it passed.
    #[cfg(not(loom))]
    pub(crate) fn park_until_deadline<R>(&self, key: Key, deadline: Option<Instant>, f: impl Fn(&Watermark) -> Option<R>) -> Option<R> {
        let Some(deadline) = deadline else {
            return Some(self.park_until(key, f));
        };
        if let Some(r) = f(self) {
            return Some(r);
        }
        let id = match self.check_or_register(key, &f) {
            Ok(r) => return Some(r),
            Err(id) => id,
        };
        loop {
            let now = Instant::now();
            if now < deadline {
                std::thread::park_timeout(deadline - now);
            }
            if let Some(r) = f(self) {
                return Some(r);
            }
            if Instant::now() >= deadline {
                // Leave no entry behind (a later publish would unpark this thread for nothing).
                let mut g = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(i) = g.list.iter().position(|s| s.id == id) {
                    g.list.swap_remove(i);
                    self.parked.fetch_sub(1, sync::Ordering::Relaxed);
                }
                drop(g);
                // The watermark may have moved between the check and the removal.
                return f(self);
            }
        }
    }

    /// Under loom (which has no timed wait) the deadline is ignored; the models do not use it.
    #[cfg(loom)]
    pub(crate) fn park_until_deadline<R>(&self, key: Key, _deadline: Option<Instant>, f: impl Fn(&Watermark) -> Option<R>) -> Option<R> {
        Some(self.park_until(key, f))
    }
}

/// One change of the seq → LSN mapping: from `first` on, `lsn = seq + delta` (wrapping), except
/// that `first` itself wrote nothing when `rejected`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Era {
    pub first: u64,
    pub delta: u64,
    pub rejected: bool,
    /// Why `first` was rejected (kept in the history only; `None` for a mark of an LSN that is
    /// not in doubt, and for eras that reject nothing).
    pub reason: Option<tradewal_codec::OutcomeError>,
}

/// The eras: the newest behind a seqlock (read without a lock), all of them in a history.
struct Eras {
    version: StdAtomicU64,
    first: StdAtomicU64,
    delta: StdAtomicU64,
    rejected: AtomicBool,
    history: StdMutex<Vec<Era>>,
}

impl Eras {
    fn new() -> Eras {
        Eras {
            version: StdAtomicU64::new(1), // odd: nothing published yet
            first: StdAtomicU64::new(0),
            delta: StdAtomicU64::new(0),
            rejected: AtomicBool::new(false),
            history: StdMutex::new(Vec::with_capacity(64)),
        }
    }

    /// Writer only.
    fn push(&self, e: Era) {
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = h.last() {
            assert!(e.first > last.first || (e.first == last.first && !last.rejected), "eras out of order: {last:?} then {e:?}");
            if e.first == last.first {
                h.pop(); // replaced before any message of it was processed
            }
        }
        h.push(e);
        drop(h);
        let v = self.version.load(StdOrdering::Relaxed);
        let odd = if v % 2 == 0 { v + 1 } else { v };
        self.version.store(odd, StdOrdering::Relaxed);
        fence(StdOrdering::Release);
        self.first.store(e.first, StdOrdering::Relaxed);
        self.delta.store(e.delta, StdOrdering::Relaxed);
        self.rejected.store(e.rejected, StdOrdering::Relaxed);
        self.version.store(odd + 1, StdOrdering::Release);
    }

    /// The era that covers `seq` (which must be resolved, so its era is published).
    fn lookup(&self, seq: u64) -> Era {
        let v1 = self.version.load(StdOrdering::Acquire);
        if v1 % 2 == 0 {
            let e = Era {
                first: self.first.load(StdOrdering::Relaxed),
                delta: self.delta.load(StdOrdering::Relaxed),
                rejected: self.rejected.load(StdOrdering::Relaxed),
                reason: None,
            };
            fence(StdOrdering::Acquire);
            if self.version.load(StdOrdering::Relaxed) == v1 && seq >= e.first {
                return e;
            }
        }
        let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let i = h.partition_point(|e| e.first <= seq);
        assert!(i > 0, "no era covers seq {seq}");
        h[i - 1]
    }

    /// Why message `seq` was rejected (its era is in the history: rejections are rare).
    fn reason(&self, seq: u64) -> Option<tradewal_codec::OutcomeError> {
        let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let i = h.partition_point(|e| e.first <= seq);
        h.get(i.checked_sub(1)?).filter(|e| e.first == seq && e.rejected).and_then(|e| e.reason)
    }
}

/// A registered async waker: the seq it waits for and a registration id.
struct WakerEntry {
    seq: u64,
    id: u64,
    waker: Waker,
}

#[derive(Default)]
struct WakerList {
    entries: Vec<Option<WakerEntry>>,
    free: Vec<usize>,
    next_id: u64,
}

/// The state every ticket of one log shares with the writer.
pub(crate) struct Acks {
    pub(crate) wm: Watermark,
    poison: OnceLock<Arc<PoisonCause>>,
    eras: Eras,
    wakers: StdMutex<WakerList>,
    async_waiting: StdAtomicUsize,
}

impl fmt::Debug for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acks")
            .field("durable_seq", &self.wm.durable_seq())
            .field("durable_lsn", &self.wm.durable_lsn())
            .field("ended", &self.wm.ended())
            .field("poisoned", &self.poison.get().is_some())
            .finish()
    }
}

impl Acks {
    /// Shared state for a log whose last durable record is `durable_lsn`.
    pub(crate) fn new(durable_lsn: Lsn) -> Arc<Acks> {
        Arc::new(Acks {
            wm: Watermark::new(durable_lsn),
            poison: OnceLock::new(),
            eras: Eras::new(),
            wakers: StdMutex::new(WakerList::default()),
            async_waiting: StdAtomicUsize::new(0),
        })
    }

    /// Writer: from seq `e.first` on, the mapping is `e` (published before any watermark covers it).
    pub(crate) fn push_era(&self, e: Era) {
        self.eras.push(e);
    }

    /// Writer: one watermark store per batch, then wake whoever waits for it. `scratch` holds the
    /// wakers to call outside the lock (kept by the writer, so waking does not allocate).
    pub(crate) fn publish(&self, seq: u64, lsn: Lsn, scratch: &mut Vec<Waker>) {
        self.wm.publish(seq, lsn);
        self.wake_async(seq, false, scratch);
    }

    /// Writer: records the first poison cause (before `finish`).
    pub(crate) fn set_poisoned(&self, cause: Arc<PoisonCause>) {
        let _ = self.poison.set(cause);
    }

    /// The cause given to the first [`Acks::set_poisoned`], if any.
    pub(crate) fn poison_cause(&self) -> Option<Arc<PoisonCause>> {
        self.poison.get().cloned()
    }

    /// Writer: it stopped; resolves everything above the final watermark (see the module docs).
    pub(crate) fn finish(&self, submitted_seq: u64) {
        let kind = if self.poison.get().is_some() { END_POISONED } else { END_STOPPED };
        self.wm.finish(kind, submitted_seq);
        self.wake_async(u64::MAX, true, &mut Vec::new());
    }

    /// The writer thread died without knowing what it wrote (a panic): tickets above the watermark
    /// are in doubt.
    pub(crate) fn finish_unknown(&self) {
        self.wm.finish(END_UNKNOWN, 0);
        self.wake_async(u64::MAX, true, &mut Vec::new());
    }

    fn wake_async(&self, seq: u64, all: bool, scratch: &mut Vec<Waker>) {
        if self.async_waiting.load(StdOrdering::SeqCst) == 0 {
            return;
        }
        {
            let mut l = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            let WakerList { entries, free, .. } = &mut *l;
            for (i, slot) in entries.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|e| all || e.seq <= seq) {
                    let e = slot.take().expect("checked");
                    scratch.push(e.waker);
                    free.push(i);
                    self.async_waiting.fetch_sub(1, StdOrdering::SeqCst);
                }
            }
        }
        for w in scratch.drain(..) {
            w.wake();
        }
    }

    /// Registers (or updates) the waker of the ticket `seq`; `reg` is the ticket's registration.
    fn register(&self, seq: u64, reg: &mut Option<(usize, u64)>, waker: &Waker) {
        let mut l = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((i, id)) = *reg {
            if let Some(Some(e)) = l.entries.get_mut(i) {
                if e.id == id {
                    if !e.waker.will_wake(waker) {
                        e.waker = waker.clone();
                    }
                    return;
                }
            }
        }
        let id = l.next_id;
        l.next_id += 1;
        let entry = WakerEntry { seq, id, waker: waker.clone() };
        let i = match l.free.pop() {
            Some(i) => {
                l.entries[i] = Some(entry);
                i
            }
            None => {
                l.entries.push(Some(entry));
                l.entries.len() - 1
            }
        };
        *reg = Some((i, id));
        // Inside the lock, so the writer that sees the count finds the entry (module docs).
        self.async_waiting.fetch_add(1, StdOrdering::SeqCst);
    }

    fn deregister(&self, reg: (usize, u64)) {
        let mut l = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        let (i, id) = reg;
        if l.entries.get(i).is_some_and(|e| e.as_ref().is_some_and(|e| e.id == id)) {
            l.entries[i] = None;
            l.free.push(i);
            self.async_waiting.fetch_sub(1, StdOrdering::SeqCst);
        }
    }

    /// Maps a known status of message `seq` (a mark of `mark_lsn`, or 0 for an append) to the
    /// caller-visible result.
    fn resolve(&self, seq: u64, mark_lsn: Lsn, status: Status) -> Result<Lsn, WalError> {
        match status {
            Status::Durable => {
                let e = self.eras.lookup(seq);
                if e.rejected && e.first == seq {
                    Err(match self.eras.reason(seq) {
                        None | Some(tradewal_codec::OutcomeError::NotInDoubt { .. }) => WalError::NotInDoubt { lsn: mark_lsn },
                        Some(r) => WalError::OutcomeRule(r),
                    })
                } else {
                    Ok(seq.wrapping_add(e.delta))
                }
            }
            Status::Closed => Err(WalError::Closed),
            Status::Unknown => Err(WalError::OutcomeUnknown),
            Status::Poisoned | Status::Pending => {
                assert!(status != Status::Pending, "resolve() of a pending ticket");
                Err(self.poisoned_error())
            }
        }
    }

    /// The error of a poisoned log.
    pub(crate) fn poisoned_error(&self) -> WalError {
        WalError::Poisoned { cause: self.poison_cause().unwrap_or_else(unknown_cause) }
    }

    /// The error a stopped writer gives new requests.
    pub(crate) fn ended_error(&self) -> WalError {
        if self.poison.get().is_some() {
            self.poisoned_error()
        } else {
            WalError::Closed
        }
    }

    /// Waits until `durable_lsn() >= lsn`; errors as a ticket of that record would.
    pub(crate) fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        let done = |wm: &Watermark| match wm.status_lsn(lsn) {
            Status::Pending => None,
            s => Some(s),
        };
        let spun = done(&self.wm).or_else(|| {
            let place = SpinPlace::take();
            spin_until(place.budget(), || done(&self.wm))
        });
        match spun.unwrap_or_else(|| self.wm.park_until(Key::Lsn(lsn), done)) {
            Status::Durable => Ok(()),
            Status::Closed => Err(WalError::Closed),
            Status::Unknown => Err(WalError::OutcomeUnknown),
            _ => Err(self.poisoned_error()),
        }
    }

    /// Waits until the watermark covers `seq` (room in the queue for a later message), or the
    /// writer stopped (then `false`).
    pub(crate) fn wait_room(&self, seq: u64) -> bool {
        let done = |wm: &Watermark| {
            if wm.durable_seq() >= seq {
                Some(true)
            } else if wm.ended() {
                Some(wm.durable_seq() >= seq)
            } else {
                None
            }
        };
        spin_until(SPIN_BEFORE_PARK, || done(&self.wm)).unwrap_or_else(|| self.wm.park_until(Key::Seq(seq), done))
    }
}

/// Spins until `f` gives `Some` or `budget` has passed.
fn spin_until<R>(budget: Duration, f: impl Fn() -> Option<R>) -> Option<R> {
    if let Some(r) = f() {
        return Some(r);
    }
    let start = Instant::now();
    let mut spins: u32 = 0;
    loop {
        std::hint::spin_loop();
        if let Some(r) = f() {
            return Some(r);
        }
        spins = spins.wrapping_add(1);
        if spins % SPINS_PER_CLOCK_READ == 0 {
            if start.elapsed() >= budget {
                return None;
            }
            // Let a thread that shares this CPU (the writer, on a busy machine) run.
            thread::yield_now();
        }
    }
}

/// Cause reported when the log is poisoned but no cause was recorded.
fn unknown_cause() -> Arc<PoisonCause> {
    Arc::new(PoisonCause { fault: IoFault::Errno { op: "write (cause not recorded)", errno: libc::EIO }, file: String::new(), offset: 0 })
}

/// The pending outcome of one append: resolves once the writer thread has made the record durable
/// (`Ok(lsn)`) or failed to.
///
/// Wait for it in the way that suits the calling thread:
///
/// - [`Ticket::wait`] spins for a few tens of microseconds, then parks the thread;
/// - [`Ticket::wait_spin`] only spins (for a thread pinned to its own core);
/// - [`Ticket::wait_timeout`] gives up after a time and leaves the ticket usable;
/// - [`Ticket::try_result`] and [`Ticket::is_done`] never block;
/// - `ticket.await` works under any executor (`Ticket` is a [`Future`]).
///
/// Typical use: `let lsn = wal.append(&intent)?.wait()?;` — the LSN is the record's stable id.
///
/// A ticket is a position in the log plus a reference to the log's durable watermark: it holds no
/// queue slot, so keeping or dropping it costs nothing and never holds up other appends.
/// Dropping a ticket before it resolves is allowed: the record is still written, only the
/// notification is lost.
#[must_use = "a Ticket is the acknowledgement: wait on it before acting on the record (dropping it only drops the notification)"]
pub struct Ticket {
    acks: Arc<Acks>,
    seq: u64,
    /// The LSN a mark names (0 for an append): the value of [`WalError::NotInDoubt`].
    mark_lsn: Lsn,
    /// This ticket's async waker registration, if a poll found it pending.
    reg: Option<(usize, u64)>,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).field("done", &self.is_done()).finish()
    }
}

impl Ticket {
    /// The ticket of message `seq` (a mark of `mark_lsn`, or 0 for an append).
    pub(crate) fn new(acks: Arc<Acks>, seq: u64, mark_lsn: Lsn) -> Ticket {
        assert!(seq > 0, "seq 0 is never a message");
        Ticket { acks, seq, mark_lsn, reg: None }
    }

    #[inline]
    fn known(&self) -> Option<Status> {
        match self.acks.wm.status(self.seq) {
            Status::Pending => None,
            s => Some(s),
        }
    }

    fn resolve(&self, s: Status) -> Result<Lsn, WalError> {
        self.acks.resolve(self.seq, self.mark_lsn, s)
    }

    /// True once the outcome is known (never blocks).
    pub fn is_done(&self) -> bool {
        self.known().is_some()
    }

    /// The outcome if it is known, else `None` (never blocks). The ticket stays usable; asking again
    /// returns the same outcome.
    pub fn try_result(&mut self) -> Option<Result<Lsn, WalError>> {
        self.known().map(|s| self.resolve(s))
    }

    /// Blocks until the outcome is known: spins (up to 300 µs while fewer waiters than CPUs - 1
    /// are spinning, else 30 µs), then parks the thread until the writer publishes a watermark
    /// that covers it. Returns the record's LSN once it is durable, or the error that prevented
    /// it ([`WalError::Poisoned`], [`WalError::Closed`], ...).
    pub fn wait(self) -> Result<Lsn, WalError> {
        // Already known (a pipelined producer's oldest ticket usually is): no spin place taken.
        if let Some(s) = self.known() {
            return self.resolve(s);
        }
        let place = SpinPlace::take();
        let spun = spin_until(place.budget(), || self.known());
        drop(place);
        let s = spun.unwrap_or_else(|| {
            self.acks.wm.park_until(Key::Seq(self.seq), |wm| match wm.status(self.seq) {
                Status::Pending => None,
                s => Some(s),
            })
        });
        self.resolve(s)
    }

    /// Like [`Ticket::wait`] but never parks: busy-spins until the outcome is known. For threads
    /// pinned to a core of their own, where a park/unpark round trip costs more than the spin.
    pub fn wait_spin(self) -> Result<Lsn, WalError> {
        loop {
            if let Some(s) = self.known() {
                return self.resolve(s);
            }
            std::hint::spin_loop();
        }
    }

    /// Waits at most `timeout` for the outcome. `None` means it is not known yet; the ticket stays
    /// usable (wait again, poll it, or drop it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Lsn, WalError>> {
        let start = Instant::now();
        if let Some(s) = spin_until(SPIN_BEFORE_PARK.min(timeout), || self.known()) {
            return Some(self.resolve(s));
        }
        // checked_add: a huge timeout means "no deadline".
        let deadline = start.checked_add(timeout);
        let seq = self.seq;
        let s = self.acks.wm.park_until_deadline(Key::Seq(seq), deadline, |wm| match wm.status(seq) {
            Status::Pending => None,
            s => Some(s),
        })?;
        Some(self.resolve(s))
    }
}

impl Future for Ticket {
    type Output = Result<Lsn, WalError>;

    /// Ready with the outcome once known; otherwise registers the task's waker (only then), which
    /// the writer wakes when a watermark covers this ticket.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(s) = this.known() {
            return Poll::Ready(this.resolve(s));
        }
        this.acks.register(this.seq, &mut this.reg, cx.waker());
        // Look again after registering: either the writer's wake finds our entry, or we see the
        // watermark here (module docs).
        match this.known() {
            Some(s) => Poll::Ready(this.resolve(s)),
            None => Poll::Pending,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            self.acks.deregister(reg);
        }
    }
}

// `Ticket` crosses threads (appender → async task, etc.). Compile-time check.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ticket>();
};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    fn cause(offset: u64) -> Arc<PoisonCause> {
        Arc::new(PoisonCause { fault: IoFault::Errno { op: "write", errno: libc::EIO }, file: "00000001.seg".to_string(), offset })
    }

    /// A log whose seq s maps to LSN s + 100 (as after a first checkpoint of one part at LSN 101).
    fn acks() -> Arc<Acks> {
        let a = Acks::new(100);
        a.push_era(Era { first: 1, delta: 100, rejected: false, reason: None });
        a
    }

    fn publish(a: &Acks, seq: u64) {
        a.publish(seq, seq + 100, &mut Vec::new());
    }

    /// Yields until `cond` holds (no timing assumption: the other side makes progress eventually).
    fn until(mut cond: impl FnMut() -> bool) {
        while !cond() {
            thread::yield_now();
        }
    }

    /// A waker that unparks a thread and counts its wakes.
    struct ThreadWaker {
        thread: thread::Thread,
        wakes: AtomicUsize,
    }

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.wakes.fetch_add(1, StdOrdering::SeqCst);
            self.thread.unpark();
        }
    }

    fn thread_waker() -> (Arc<ThreadWaker>, Waker) {
        let tw = Arc::new(ThreadWaker { thread: thread::current(), wakes: AtomicUsize::new(0) });
        let waker = Waker::from(Arc::clone(&tw));
        (tw, waker)
    }

    /// Minimal executor: polls, parks until woken, polls again.
    fn block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let (_tw, waker) = thread_waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            thread::park();
        }
    }

    #[test]
    fn ticket_complete_before_wait() {
        let a = acks();
        let mut t = Ticket::new(a.clone(), 1, 0);
        assert!(!t.is_done());
        assert!(t.try_result().is_none());
        publish(&a, 1);
        assert!(t.is_done());
        assert_eq!(t.try_result().unwrap().unwrap(), 101);
        assert_eq!(t.try_result().unwrap().unwrap(), 101, "asking again gives the same outcome");
        assert_eq!(t.wait().unwrap(), 101);
        assert_eq!(a.wm.durable_lsn(), 101);
    }

    #[test]
    fn ticket_wait_parks_then_published_from_writer_thread() {
        let a = acks();
        let t = Ticket::new(a.clone(), 3, 0);
        let waiter = thread::spawn(move || t.wait());
        // Publish only once the waiter is parked: exercises the wake path.
        until(|| a.wm.parked.load(sync::Ordering::SeqCst) > 0);
        publish(&a, 2);
        assert!(!waiter.is_finished() || a.wm.durable_seq() >= 3);
        publish(&a, 5);
        assert_eq!(waiter.join().unwrap().unwrap(), 103);
        assert_eq!(a.wm.parked.load(sync::Ordering::SeqCst), 0);
    }

    #[test]
    fn ticket_wait_spin() {
        let a = acks();
        let t = Ticket::new(a.clone(), 1, 0);
        let spinner = thread::spawn(move || t.wait_spin());
        thread::yield_now();
        publish(&a, 1);
        assert_eq!(spinner.join().unwrap().unwrap(), 101);
        // Spin after the end too.
        let t = Ticket::new(a.clone(), 2, 0);
        a.finish(1);
        assert!(matches!(t.wait_spin(), Err(WalError::Closed)));
    }

    #[test]
    fn ticket_wait_timeout_expires_then_succeeds() {
        let a = acks();
        let mut t = Ticket::new(a.clone(), 1, 0);
        assert!(t.wait_timeout(Duration::from_millis(2)).is_none());
        assert!(t.wait_timeout(Duration::ZERO).is_none());
        assert!(!t.is_done());
        let p = a.clone();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            publish(&p, 1)
        });
        let got = t.wait_timeout(Duration::from_secs(3600)).expect("resolves");
        assert_eq!(got.unwrap(), 101);
        writer.join().unwrap();
        // A timeout too large for Instant means no deadline.
        assert_eq!(t.wait_timeout(Duration::MAX).unwrap().unwrap(), 101);
        assert_eq!(a.wm.parked.load(sync::Ordering::SeqCst), 0, "expired waits leave no parked count");
    }

    #[test]
    fn ticket_future_pending_then_woken() {
        let a = acks();
        let mut t = Ticket::new(a.clone(), 1, 0);
        let (tw, waker) = thread_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut t).poll(&mut cx).is_pending());
        assert_eq!(tw.wakes.load(StdOrdering::SeqCst), 0, "no wake before the watermark");
        let p = a.clone();
        let writer = thread::spawn(move || publish(&p, 1));
        until(|| tw.wakes.load(StdOrdering::SeqCst) > 0);
        writer.join().unwrap();
        match Pin::new(&mut t).poll(&mut cx) {
            Poll::Ready(Ok(101)) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(tw.wakes.load(StdOrdering::SeqCst), 1);
        assert_eq!(a.async_waiting.load(StdOrdering::SeqCst), 0);
    }

    #[test]
    fn ticket_future_under_block_on() {
        let a = acks();
        // Resolved before the first poll: no waker is registered at all.
        let t = Ticket::new(a.clone(), 1, 0);
        publish(&a, 1);
        assert_eq!(block_on(t).unwrap(), 101);
        assert!(a.wakers.lock().unwrap().entries.is_empty(), "a ready poll registers nothing");
        // Resolved by another thread while the executor parks.
        for seq in 2..200u64 {
            let t = Ticket::new(a.clone(), seq, 0);
            let p = a.clone();
            let writer = thread::spawn(move || publish(&p, seq));
            assert_eq!(block_on(t).unwrap(), seq + 100);
            writer.join().unwrap();
        }
        // The waker may change between polls (task moved): the latest one is woken.
        let mut t = Ticket::new(a.clone(), 200, 0);
        let (tw1, w1) = thread_waker();
        let (tw2, w2) = thread_waker();
        assert!(Pin::new(&mut t).poll(&mut Context::from_waker(&w1)).is_pending());
        assert!(Pin::new(&mut t).poll(&mut Context::from_waker(&w2)).is_pending());
        publish(&a, 200);
        assert_eq!(tw2.wakes.load(StdOrdering::SeqCst), 1);
        assert_eq!(tw1.wakes.load(StdOrdering::SeqCst), 0);
        assert_eq!(block_on(t).unwrap(), 300);
        // A pending ticket dropped takes its registration with it.
        let mut t = Ticket::new(a.clone(), 201, 0);
        assert!(Pin::new(&mut t).poll(&mut Context::from_waker(&w1)).is_pending());
        assert_eq!(a.async_waiting.load(StdOrdering::SeqCst), 1);
        drop(t);
        assert_eq!(a.async_waiting.load(StdOrdering::SeqCst), 0);
    }

    #[test]
    fn ticket_kept_forever_costs_nothing_and_resolves_after_rotations_and_rejections() {
        let a = acks();
        let old = Ticket::new(a.clone(), 1, 0);
        // Many eras later (a checkpoint of 3 parts before seq 5, a rejected mark at seq 9) ...
        publish(&a, 4);
        a.push_era(Era { first: 5, delta: 103, rejected: false, reason: None });
        a.push_era(Era { first: 9, delta: 102, rejected: true, reason: None });
        let rejected = Ticket::new(a.clone(), 9, 77);
        let after = Ticket::new(a.clone(), 10, 0);
        let mid = Ticket::new(a.clone(), 6, 0);
        publish(&a, 10);
        assert_eq!(old.wait().unwrap(), 101);
        assert_eq!(mid.wait().unwrap(), 109);
        assert!(matches!(rejected.wait(), Err(WalError::NotInDoubt { lsn: 77 })));
        assert_eq!(after.wait().unwrap(), 112);
    }

    #[test]
    fn ticket_poisoned_maps_to_cause_and_covers_everything_above_the_watermark() {
        let a = acks();
        assert!(a.poison_cause().is_none());
        let durable = Ticket::new(a.clone(), 1, 0);
        let waiting: Vec<_> = (2..5)
            .map(|seq| {
                let t = Ticket::new(a.clone(), seq, 0);
                thread::spawn(move || t.wait())
            })
            .collect();
        publish(&a, 1);
        until(|| a.wm.parked.load(sync::Ordering::SeqCst) == 3);
        let first = cause(4096);
        a.set_poisoned(Arc::clone(&first));
        a.set_poisoned(cause(8192)); // ignored: the first wins
        a.finish(3);
        for w in waiting {
            match w.join().unwrap() {
                Err(WalError::Poisoned { cause }) => {
                    assert!(Arc::ptr_eq(&cause, &first));
                    assert_eq!(cause.offset, 4096);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Later tickets too (I6); the one below the watermark stays durable.
        assert!(matches!(Ticket::new(a.clone(), 9, 0).wait(), Err(WalError::Poisoned { .. })));
        assert_eq!(durable.wait().unwrap(), 101);
    }

    #[test]
    fn ticket_poisoned_without_cause_is_still_poisoned() {
        let a = acks();
        let t = Ticket::new(a.clone(), 1, 0);
        a.wm.finish(END_POISONED, 0);
        match t.wait() {
            Err(WalError::Poisoned { cause }) => assert!(!cause.to_string().is_empty()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ticket_end_states_closed_unknown() {
        // Stopped: above the submitted seq is Closed (never written), between the watermark and
        // the submitted seq is unknown (never happens with a writer that reaps everything).
        let a = acks();
        publish(&a, 2);
        a.finish(4);
        let r: Vec<_> = (1..=6).map(|s| Ticket::new(a.clone(), s, 0).wait()).collect();
        assert!(matches!(r[0], Ok(101)) && matches!(r[1], Ok(102)));
        assert!(matches!(r[2], Err(WalError::OutcomeUnknown)) && matches!(r[3], Err(WalError::OutcomeUnknown)));
        assert!(matches!(r[4], Err(WalError::Closed)) && matches!(r[5], Err(WalError::Closed)));
        a.finish_unknown(); // the first end wins
        assert!(matches!(Ticket::new(a.clone(), 9, 0).wait(), Err(WalError::Closed)));
        // A writer that died: everything above the watermark is in doubt.
        let a = acks();
        publish(&a, 1);
        let t = Ticket::new(a.clone(), 2, 0);
        let w = thread::spawn(move || t.wait());
        a.finish_unknown();
        assert!(matches!(w.join().unwrap(), Err(WalError::OutcomeUnknown)));
        assert!(a.wait_durable(101).is_ok());
        assert!(matches!(a.wait_durable(102), Err(WalError::OutcomeUnknown)));
    }

    #[test]
    fn wait_durable_and_wait_room() {
        let a = acks();
        let p = a.clone();
        let w = thread::spawn(move || (p.wait_durable(105), p.wait_room(5)));
        thread::sleep(Duration::from_millis(2));
        publish(&a, 5);
        let (d, r) = w.join().unwrap();
        assert!(d.is_ok() && r);
        let p = a.clone();
        let w = thread::spawn(move || p.wait_room(9));
        a.finish(5);
        assert!(!w.join().unwrap(), "no room once the writer stopped");
        assert!(matches!(a.wait_durable(200), Err(WalError::Closed)));
    }

    #[test]
    #[should_panic(expected = "watermark must not fall")]
    fn watermark_cannot_fall() {
        let a = acks();
        publish(&a, 5);
        publish(&a, 4);
    }

    #[test]
    fn ticket_debug_and_send() {
        let a = acks();
        let t = Ticket::new(a.clone(), 1, 0);
        let s = format!("{t:?}");
        assert!(s.contains("seq: 1") && s.contains("done: false"), "{s}");
        let s = thread::spawn(move || format!("{t:?}")).join().unwrap();
        assert!(s.contains("Ticket"));
        assert!(format!("{a:?}").contains("durable_seq: 0"));
    }

    /// 4 producers × 20 000 messages; a writer thread publishes in batches (with an era change
    /// every few thousand, as rotations do); every outcome must be exactly the producer's own.
    /// Wait styles are mixed, some tickets are dropped unwaited, some kept and checked at the end.
    // Over 80 lines on purpose: one scenario (writer thread, producers, final checks) read top to
    // bottom; split into helpers it would hide which thread does what.
    #[test]
    fn ticket_stress_four_producers() {
        const PRODUCERS: u64 = 4;
        const PER_PRODUCER: u64 = 20_000;
        let a = acks();
        let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
        let next = Arc::new(StdMutex::new(1u64));
        let p = a.clone();
        let writer = thread::spawn(move || {
            // Seq s → LSN s + delta; every 5 000 seqs a "checkpoint" of 2 records shifts delta.
            let mut delta = 100u64;
            let mut expect = 1u64;
            let mut scratch = Vec::new();
            while let Ok(first) = rx.recv() {
                let mut last = first;
                let mut n = 1;
                while n < 256 {
                    match rx.try_recv() {
                        Ok(x) => {
                            last = x;
                            n += 1
                        }
                        Err(_) => break,
                    }
                }
                let _ = first;
                for s in expect..=last {
                    if s % 5_000 == 0 {
                        delta += 2;
                        p.push_era(Era { first: s, delta, rejected: false, reason: None });
                    }
                }
                expect = last + 1;
                p.publish(last, last + delta, &mut scratch);
            }
            expect - 1
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let a = a.clone();
                let tx = tx.clone();
                let next = next.clone();
                thread::spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..PER_PRODUCER {
                        let seq = {
                            let mut n = next.lock().unwrap();
                            let s = *n;
                            *n += 1;
                            tx.send(s).unwrap();
                            s
                        };
                        let want = seq + 100 + 2 * (seq / 5_000);
                        let mut t = Ticket::new(a.clone(), seq, 0);
                        let got = match (i + id) % 10 {
                            0..=2 => t.wait(),
                            3 => t.wait_spin(),
                            4 | 5 => block_on(t),
                            6 | 7 => loop {
                                if let Some(r) = t.wait_timeout(Duration::from_micros(50)) {
                                    break r;
                                }
                            },
                            8 => {
                                kept.push((t, want));
                                continue;
                            }
                            _ => {
                                drop(t);
                                continue;
                            }
                        };
                        assert_eq!(got.unwrap(), want, "seq {seq}");
                    }
                    for (t, want) in kept {
                        assert_eq!(t.wait().unwrap(), want);
                    }
                })
            })
            .collect();
        drop(tx);
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(writer.join().unwrap(), PRODUCERS * PER_PRODUCER);
        assert_eq!(a.wm.parked.load(sync::Ordering::SeqCst), 0);
        assert_eq!(a.async_waiting.load(StdOrdering::SeqCst), 0);
    }
}

/// Model checking of the watermark protocol with loom:
/// `RUSTFLAGS="--cfg loom" cargo test -p tradewal --release --lib loom_ --target-dir target/loom`
/// (the `./test` script runs it). Every interleaving of publish / wait / park / poison with two or
/// three threads: no waiter sleeps forever (loom reports a deadlock), and every outcome agrees with
/// the final watermark (durable iff covered; above it Poisoned after a poison, Closed after a stop).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread as lthread;

    fn wait(wm: &Watermark, seq: u64) -> Status {
        wm.park_until(Key::Seq(seq), |wm| match wm.status(seq) {
            Status::Pending => None,
            s => Some(s),
        })
    }

    #[test]
    fn loom_publish_wakes_parked_waiter() {
        loom::model(|| {
            let wm = Arc::new(Watermark::new(0));
            let w = wm.clone();
            let waiter = lthread::spawn(move || wait(&w, 2));
            wm.publish(1, 1);
            wm.publish(2, 2);
            assert_eq!(waiter.join().unwrap(), Status::Durable);
        });
    }

    #[test]
    fn loom_each_publish_wakes_the_waiters_it_covers() {
        loom::model(|| {
            let wm = Arc::new(Watermark::new(0));
            let (w1, w2) = (wm.clone(), wm.clone());
            let a = lthread::spawn(move || wait(&w1, 1));
            let b = lthread::spawn(move || wait(&w2, 2));
            wm.publish(1, 1);
            assert_eq!(a.join().unwrap(), Status::Durable);
            wm.publish(2, 2);
            assert_eq!(b.join().unwrap(), Status::Durable);
            assert_eq!(wm.parked.load(sync::Ordering::SeqCst), 0, "no entry left behind");
        });
    }

    #[test]
    fn loom_two_waiters_one_batch_then_poison() {
        loom::model(|| {
            let wm = Arc::new(Watermark::new(0));
            let (w1, w2) = (wm.clone(), wm.clone());
            let a = lthread::spawn(move || wait(&w1, 1));
            let b = lthread::spawn(move || wait(&w2, 2));
            wm.publish(1, 1);
            wm.finish(END_POISONED, 2);
            assert_eq!(a.join().unwrap(), Status::Durable);
            assert_eq!(b.join().unwrap(), Status::Poisoned);
        });
    }

    #[test]
    fn loom_stop_resolves_waiter_and_spinner() {
        loom::model(|| {
            let wm = Arc::new(Watermark::new(0));
            let w1 = wm.clone();
            let parked = lthread::spawn(move || wait(&w1, 3));
            let w2 = wm.clone();
            let spinner = lthread::spawn(move || loop {
                match w2.status(1) {
                    Status::Pending => lthread::yield_now(),
                    s => break s,
                }
            });
            wm.publish(2, 5);
            wm.finish(END_STOPPED, 2);
            assert_eq!(parked.join().unwrap(), Status::Closed);
            assert_eq!(spinner.join().unwrap(), Status::Durable);
            assert_eq!(wm.status_lsn(5), Status::Durable);
            assert_eq!(wm.status_lsn(6), Status::Closed);
        });
    }
}

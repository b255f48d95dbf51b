//! Tickets: one per append, completed by the writer thread when the record is durable (or failed).
//!
//! # Design
//!
//! A [`TicketPool`] owns a fixed array of slots, all allocated at creation; the free slots' indices
//! sit in a bounded lock-free queue. An append takes a slot ([`TicketPool::try_acquire`] or
//! [`TicketPool::acquire`]) and gets a [`Ticket`] naming it; the writer thread later calls
//! [`TicketPool::complete`] with the slot and the outcome. Nothing is allocated per append.
//!
//! Each slot has one state word (`AtomicU64`):
//!
//! ```text
//! bits 63..32  generation (bumped each time the slot is freed; a Ticket remembers its own)
//! bits 11..8   result kind (valid once DONE is set)
//! bit  4       ABANDONED  the Ticket was dropped; whoever comes second (drop or complete) frees
//! bit  3       WAKER      a future registered its waker in the slot's AtomicWaker
//! bit  2       WAITING    a thread stored its handle in the slot and may be parked
//! bit  1       DONE       the result is set
//! bit  0       IN_USE     the slot belongs to a live append
//! ```
//!
//! The completer writes the LSN (relaxed), then sets DONE and the result kind with one
//! `fetch_or(AcqRel)`: a reader that sees DONE with an Acquire load sees the LSN. The previous value
//! of that `fetch_or` tells the completer whether anyone must be woken: only when WAITING (or WAKER)
//! was set does it touch the slot's mutex / waker. Waiters set their bit with a `fetch_or` too, after
//! storing their thread handle or waker, so exactly one side sees the other (no lost wake-up).
//!
//! Dropping a ticket sets ABANDONED the same way: if the slot was already DONE the dropper frees it;
//! otherwise `complete` sees ABANDONED and frees it. A slot is therefore never reused while a ticket
//! or the writer still refers to it. The generation is checked on every read as a second guard: a
//! ticket never reports a result that belongs to another generation of its slot.

use crate::error::{PoisonCause, WalError};
use crate::io::IoFault;
use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};
use tradewal_codec::Lsn;

const IN_USE: u64 = 1 << 0;
const DONE: u64 = 1 << 1;
const WAITING: u64 = 1 << 2;
const WAKER: u64 = 1 << 3;
const ABANDONED: u64 = 1 << 4;
const KIND_SHIFT: u32 = 8;
const KIND_MASK: u64 = 0xF << KIND_SHIFT;
const GEN_SHIFT: u32 = 32;

const KIND_DURABLE: u64 = 1;
const KIND_POISONED: u64 = 2;
const KIND_NOT_IN_DOUBT: u64 = 3;
const KIND_CLOSED: u64 = 5;

/// How long [`Ticket::wait`] and [`TicketPool::acquire`] spin before they park.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(30);
/// Spin iterations between two clock reads while spinning for a bounded time.
const SPINS_PER_CLOCK_READ: u32 = 64;
/// How long [`Ticket::wait`] spins when a spinning place is free: longer than a typical durable
/// write (~90 µs here), because waking a parked thread on an idle virtual CPU costs tens of
/// microseconds (measured: QD1 p50 ~160 µs parked vs ~75 µs spinning, floor ~74 µs).
const WAIT_SPIN_LONG: Duration = Duration::from_micros(300);

/// Threads spinning in [`Ticket::wait`] right now, across all pools.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

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
        let n = SPINNERS.fetch_add(1, Ordering::AcqRel);
        if n < max_spinners() {
            SpinPlace(true)
        } else {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
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
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Outcome of one append, as the writer thread reports it to [`TicketPool::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketResult {
    /// The record is durable at this LSN.
    Durable(Lsn),
    /// The log is poisoned (the cause is the pool's, see [`TicketPool::set_poisoned`]).
    Poisoned,
    /// A mark named an LSN that is not in doubt.
    NotInDoubt(Lsn),
    /// The log was closed before the record was written.
    Closed,
}

impl TicketResult {
    /// (kind bits, lsn) as stored in a slot.
    fn encode(self) -> (u64, Lsn) {
        match self {
            TicketResult::Durable(l) => (KIND_DURABLE, l),
            TicketResult::Poisoned => (KIND_POISONED, 0),
            TicketResult::NotInDoubt(l) => (KIND_NOT_IN_DOUBT, l),
            TicketResult::Closed => (KIND_CLOSED, 0),
        }
    }
}

#[inline]
fn generation(state: u64) -> u32 {
    (state >> GEN_SHIFT) as u32
}

/// The thread (if any) parked on a slot, tagged with the slot generation it waits for.
struct Parked {
    generation: u32,
    thread: Option<Thread>,
}

/// One append's completion cell. Aligned to a cache line so that producers waiting on neighbouring
/// slots do not share lines.
#[repr(align(64))]
struct Slot {
    state: AtomicU64,
    lsn: AtomicU64,
    waker: AtomicWaker,
    parked: Mutex<Parked>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: AtomicU64::new(0),
            lsn: AtomicU64::new(0),
            waker: AtomicWaker::new(),
            parked: Mutex::new(Parked {
                generation: 0,
                thread: None,
            }),
        }
    }

    fn parked(&self) -> MutexGuard<'_, Parked> {
        // The data is two plain fields, valid whatever a panicking holder was doing.
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fixed set of ticket slots shared by the appenders and the writer thread.
pub(crate) struct TicketPool {
    slots: Box<[Slot]>,
    free_tx: Sender<u32>,
    free_rx: Receiver<u32>,
    closed: AtomicBool,
    poison: OnceLock<Arc<PoisonCause>>,
    /// Number of threads blocked (or about to block) in [`TicketPool::acquire`].
    acquire_waiters: AtomicUsize,
    acquire_lock: Mutex<()>,
    acquire_cv: Condvar,
}

impl fmt::Debug for TicketPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketPool")
            .field("capacity", &self.slots.len())
            .field("free", &self.free_rx.len())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("poisoned", &self.poison.get().is_some())
            .finish()
    }
}

impl TicketPool {
    /// Creates a pool of `capacity` slots (all allocated now).
    pub(crate) fn new(capacity: usize) -> Arc<TicketPool> {
        assert!(capacity >= 1, "ticket pool capacity must be at least 1");
        assert!(
            capacity <= u32::MAX as usize,
            "ticket pool capacity {capacity} exceeds u32"
        );
        let slots: Box<[Slot]> = (0..capacity).map(|_| Slot::new()).collect();
        let (free_tx, free_rx) = crossbeam_channel::bounded(capacity);
        for i in 0..capacity {
            free_tx
                .try_send(i as u32)
                .expect("free list has room for every slot");
        }
        Arc::new(TicketPool {
            slots,
            free_tx,
            free_rx,
            closed: AtomicBool::new(false),
            poison: OnceLock::new(),
            acquire_waiters: AtomicUsize::new(0),
            acquire_lock: Mutex::new(()),
            acquire_cv: Condvar::new(),
        })
    }

    /// Number of slots.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Takes a free slot, or `None` when all are in use. Lock-free, allocation-free. Does not look
    /// at closed/poisoned: the caller checks those.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Ticket> {
        let slot = self.free_rx.try_recv().ok()?;
        let s = &self.slots[slot as usize];
        let state = s.state.load(Ordering::Acquire);
        assert!(
            state & !(u64::MAX << GEN_SHIFT) == 0,
            "free slot {slot} has flags {state:#x}"
        );
        let generation = generation(state);
        s.state.store(
            (u64::from(generation) << GEN_SHIFT) | IN_USE,
            Ordering::Release,
        );
        Some(Ticket {
            pool: Arc::clone(self),
            slot,
            generation,
        })
    }

    /// Takes a free slot, waiting for one (spin briefly, then block). Fails with
    /// [`WalError::Poisoned`] or [`WalError::Closed`] if the pool is (or becomes, while waiting)
    /// poisoned or closed.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Ticket, WalError> {
        let start = Instant::now();
        let mut spins: u32 = 0;
        loop {
            self.check_open()?;
            if let Some(t) = self.try_acquire() {
                return Ok(t);
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_CLOCK_READ == 0 && start.elapsed() >= SPIN_BEFORE_PARK {
                break;
            }
        }
        // Announce ourselves before the last look at the free list; `release` pushes, then looks
        // at the counter. The SeqCst fences on both sides make sure one of us sees the other.
        self.acquire_waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let mut guard = self
            .acquire_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = loop {
            if let Err(e) = self.check_open() {
                break Err(e);
            }
            if let Some(t) = self.try_acquire() {
                break Ok(t);
            }
            guard = self
                .acquire_cv
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(guard);
        self.acquire_waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn check_open(&self) -> Result<(), WalError> {
        if let Some(cause) = self.poison.get() {
            return Err(WalError::Poisoned {
                cause: Arc::clone(cause),
            });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    /// Writer thread: sets the result of the append in `slot` and wakes its waiter, if one is
    /// parked or registered. Takes no lock and makes no system call when nobody waits.
    ///
    /// Panics if `slot` is not an acquired, not yet completed slot (a writer bug).
    pub(crate) fn complete(&self, slot: u32, result: TicketResult) {
        let s = &self.slots[slot as usize];
        let before = s.state.load(Ordering::Relaxed);
        assert!(
            before & IN_USE != 0 && before & DONE == 0,
            "complete() on slot {slot} in state {before:#x} (not acquired, or completed twice)"
        );
        let (kind, lsn) = result.encode();
        s.lsn.store(lsn, Ordering::Relaxed);
        // Release: whoever sees DONE (Acquire) sees the LSN. Acquire: we see the waiter's handle.
        let prev = s
            .state
            .fetch_or(DONE | (kind << KIND_SHIFT), Ordering::AcqRel);
        let now = prev | DONE | (kind << KIND_SHIFT);
        if prev & ABANDONED != 0 {
            // The ticket is gone; we are the last user of this generation.
            self.release(slot, now);
            return;
        }
        if prev & WAKER != 0 {
            s.waker.wake();
        }
        if prev & WAITING != 0 {
            let parked = s.parked();
            // The generation tag makes sure that, should the slot have been freed and reused
            // meanwhile, we do not wake (and confuse) the next generation's waiter.
            if parked.generation == generation(prev) {
                if let Some(t) = &parked.thread {
                    t.unpark();
                }
            }
        }
    }

    /// Frees `slot`, whose last state was `state` (DONE and ABANDONED both happened).
    fn release(&self, slot: u32, state: u64) {
        let s = &self.slots[slot as usize];
        if state & WAITING != 0 {
            s.parked().thread = None;
        }
        if state & WAKER != 0 {
            drop(s.waker.take());
        }
        let next = generation(state).wrapping_add(1);
        s.state
            .store(u64::from(next) << GEN_SHIFT, Ordering::Release);
        match self.free_tx.try_send(slot) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                // The free list holds `capacity` entries and each slot is in it at most once.
                panic!("ticket free list overflow releasing slot {slot}");
            }
        }
        fence(Ordering::SeqCst);
        if self.acquire_waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self
                .acquire_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.acquire_cv.notify_one();
        }
    }

    /// Records why the log is poisoned. The first call wins; later calls are ignored. Wakes
    /// blocked acquirers (they fail with [`WalError::Poisoned`]).
    pub(crate) fn set_poisoned(&self, cause: Arc<PoisonCause>) {
        let _ = self.poison.set(cause);
        self.wake_acquirers();
    }

    /// The cause given to the first [`TicketPool::set_poisoned`], if any.
    pub(crate) fn poison_cause(&self) -> Option<Arc<PoisonCause>> {
        self.poison.get().cloned()
    }

    /// Marks the pool closed: blocked and later [`TicketPool::acquire`] calls fail with
    /// [`WalError::Closed`]. Outstanding tickets still need completing by the writer.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_acquirers();
    }

    fn wake_acquirers(&self) {
        // Taking the lock orders us against an acquirer between its check and its wait.
        let _guard = self
            .acquire_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.acquire_cv.notify_all();
    }

    /// Maps a DONE state word (and the slot's LSN) to the caller-visible result.
    fn resolve(&self, slot: u32, state: u64) -> Result<Lsn, WalError> {
        let lsn = self.slots[slot as usize].lsn.load(Ordering::Relaxed);
        match (state & KIND_MASK) >> KIND_SHIFT {
            KIND_DURABLE => Ok(lsn),
            KIND_NOT_IN_DOUBT => Err(WalError::NotInDoubt { lsn }),
            KIND_CLOSED => Err(WalError::Closed),
            // KIND_POISONED, and (defensively) anything unknown: fail-stop, never Ok.
            _ => Err(WalError::Poisoned {
                cause: self.poison_cause().unwrap_or_else(unknown_cause),
            }),
        }
    }
}

/// Cause reported when a ticket was completed as poisoned but no cause was recorded.
fn unknown_cause() -> Arc<PoisonCause> {
    Arc::new(PoisonCause {
        fault: IoFault::Errno {
            op: "write (cause not recorded)",
            errno: libc::EIO,
        },
        file: String::new(),
        offset: 0,
    })
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
/// Dropping a ticket before it resolves is allowed: the record is still written, only the
/// notification is lost. Tickets come from a fixed pool (no allocation per append); a ticket that
/// is kept alive holds its slot, so drop or consume tickets promptly.
pub struct Ticket {
    pool: Arc<TicketPool>,
    slot: u32,
    generation: u32,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("slot", &self.slot)
            .field("generation", &self.generation)
            .field("done", &self.is_done())
            .finish()
    }
}

impl Ticket {
    /// The pool slot of this ticket (the writer completes it by this number).
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    fn cell(&self) -> &Slot {
        &self.pool.slots[self.slot as usize]
    }

    /// Loads the state word (Acquire); `Some(state)` when this generation is done.
    #[inline]
    fn done_state(&self) -> Option<u64> {
        let state = self.cell().state.load(Ordering::Acquire);
        self.check_done(state)
    }

    #[inline]
    fn check_done(&self, state: u64) -> Option<u64> {
        // The slot cannot be freed while this ticket lives; a different generation is a pool bug.
        assert!(
            generation(state) == self.generation,
            "ticket slot {} generation {} sees generation {}",
            self.slot,
            self.generation,
            generation(state)
        );
        (state & DONE != 0).then_some(state)
    }

    fn resolve(&self, state: u64) -> Result<Lsn, WalError> {
        self.pool.resolve(self.slot, state)
    }

    /// True once the outcome is known (never blocks).
    pub fn is_done(&self) -> bool {
        self.done_state().is_some()
    }

    /// The outcome if it is known, else `None` (never blocks). The ticket stays usable; asking again
    /// returns the same outcome.
    pub fn try_result(&mut self) -> Option<Result<Lsn, WalError>> {
        self.done_state().map(|s| self.resolve(s))
    }

    /// Spins until done or until `budget` has passed; returns the DONE state if reached.
    fn spin_for(&self, budget: Duration) -> Option<u64> {
        if let Some(s) = self.done_state() {
            return Some(s);
        }
        let start = Instant::now();
        let mut spins: u32 = 0;
        loop {
            std::hint::spin_loop();
            if let Some(s) = self.done_state() {
                return Some(s);
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

    /// Stores this thread's handle in the slot and sets WAITING. Returns the DONE state if the
    /// ticket completed meanwhile (then there is no need to park).
    fn register_thread(&self) -> Option<u64> {
        let cell = self.cell();
        {
            let mut parked = cell.parked();
            parked.generation = self.generation;
            parked.thread = Some(thread::current());
        }
        // AcqRel: the completer that sees WAITING sees the handle; if DONE is already set we see the LSN.
        let prev = cell.state.fetch_or(WAITING, Ordering::AcqRel);
        self.check_done(prev)
    }

    /// Blocks until the outcome is known: spins (up to 300 µs while fewer waiters than CPUs - 1
    /// are spinning, else 30 µs), then parks the thread until the writer wakes it. Returns the record's LSN once it is durable, or the error
    /// that prevented it ([`WalError::Poisoned`], [`WalError::Closed`], ...).
    pub fn wait(self) -> Result<Lsn, WalError> {
        let place = SpinPlace::take();
        let spun = self.spin_for(place.budget());
        drop(place);
        if let Some(s) = spun {
            return self.resolve(s);
        }
        if let Some(s) = self.register_thread() {
            return self.resolve(s);
        }
        loop {
            thread::park();
            // Wake-ups can be spurious: only DONE ends the wait.
            if let Some(s) = self.done_state() {
                return self.resolve(s);
            }
        }
    }

    /// Like [`Ticket::wait`] but never parks: busy-spins until the outcome is known. For threads
    /// pinned to a core of their own, where a park/unpark round trip costs more than the spin.
    pub fn wait_spin(self) -> Result<Lsn, WalError> {
        loop {
            if let Some(s) = self.done_state() {
                return self.resolve(s);
            }
            std::hint::spin_loop();
        }
    }

    /// Waits at most `timeout` for the outcome. `None` means it is not known yet; the ticket stays
    /// usable (wait again, poll it, or drop it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Lsn, WalError>> {
        let start = Instant::now();
        if let Some(s) = self.spin_for(SPIN_BEFORE_PARK.min(timeout)) {
            return Some(self.resolve(s));
        }
        // checked_add: a huge timeout means "no deadline".
        let deadline = start.checked_add(timeout);
        if let Some(s) = self.register_thread() {
            return Some(self.resolve(s));
        }
        loop {
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        // WAITING stays set: the completer may unpark this thread later, which
                        // is a harmless spurious wake-up.
                        return None;
                    }
                    thread::park_timeout(d - now);
                }
                None => thread::park(),
            }
            if let Some(s) = self.done_state() {
                return Some(self.resolve(s));
            }
        }
    }
}

impl Future for Ticket {
    type Output = Result<Lsn, WalError>;

    /// Ready with the outcome once known; otherwise registers the task's waker, which the writer
    /// wakes on completion.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(s) = this.done_state() {
            return Poll::Ready(this.resolve(s));
        }
        let cell = this.cell();
        cell.waker.register(cx.waker());
        // Set WAKER after registering, and look at DONE in the same step: either the completer
        // sees WAKER (and wakes the waker registered above) or we see DONE here.
        let prev = cell.state.fetch_or(WAKER, Ordering::AcqRel);
        match this.check_done(prev) {
            Some(s) => Poll::Ready(this.resolve(s)),
            None => Poll::Pending,
        }
    }
}

impl Drop for Ticket {
    /// Gives the slot back: now if the outcome is known, else when the writer completes it.
    fn drop(&mut self) {
        let prev = self.cell().state.fetch_or(ABANDONED, Ordering::AcqRel);
        if self.check_done(prev).is_some() {
            self.pool.release(self.slot, prev | ABANDONED);
        }
    }
}

// `Ticket` crosses threads (appender → async task, etc.). Compile-time check.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ticket>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    fn state_of(pool: &TicketPool, slot: u32) -> u64 {
        pool.slots[slot as usize].state.load(Ordering::SeqCst)
    }

    /// Yields until `cond` holds (no timing assumption: the other side makes progress eventually).
    fn until(mut cond: impl FnMut() -> bool) {
        while !cond() {
            thread::yield_now();
        }
    }

    fn cause(offset: u64) -> Arc<PoisonCause> {
        Arc::new(PoisonCause {
            fault: IoFault::Errno {
                op: "write",
                errno: libc::EIO,
            },
            file: "00000001.seg".to_string(),
            offset,
        })
    }

    /// A waker that unparks a thread and counts its wakes.
    struct ThreadWaker {
        thread: Thread,
        wakes: AtomicUsize,
    }

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    fn thread_waker() -> (Arc<ThreadWaker>, Waker) {
        let tw = Arc::new(ThreadWaker {
            thread: thread::current(),
            wakes: AtomicUsize::new(0),
        });
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
        let pool = TicketPool::new(4);
        let mut t = pool.try_acquire().unwrap();
        assert!(!t.is_done());
        assert!(t.try_result().is_none());
        pool.complete(t.slot(), TicketResult::Durable(42));
        assert!(t.is_done());
        assert_eq!(t.try_result().unwrap().unwrap(), 42);
        assert_eq!(
            t.try_result().unwrap().unwrap(),
            42,
            "asking again gives the same outcome"
        );
        assert_eq!(t.wait().unwrap(), 42);
        assert_eq!(pool.free_rx.len(), 4, "consumed ticket returned its slot");
    }

    #[test]
    fn ticket_wait_parks_then_completed_from_writer_thread() {
        let pool = TicketPool::new(2);
        let t = pool.acquire().unwrap();
        let slot = t.slot();
        let waiter = thread::spawn(move || t.wait());
        // Complete only once the waiter has announced it is parking: exercises the unpark path.
        until(|| state_of(&pool, slot) & WAITING != 0);
        pool.complete(slot, TicketResult::Durable(u64::MAX));
        assert_eq!(waiter.join().unwrap().unwrap(), u64::MAX);
        assert_eq!(pool.free_rx.len(), 2);
    }

    #[test]
    fn ticket_wait_completed_later_by_another_thread() {
        let pool = TicketPool::new(2);
        let t = pool.acquire().unwrap();
        let slot = t.slot();
        let p = Arc::clone(&pool);
        let writer = thread::spawn(move || p.complete(slot, TicketResult::Durable(9)));
        assert_eq!(t.wait().unwrap(), 9);
        writer.join().unwrap();
    }

    #[test]
    fn ticket_wait_spin() {
        let pool = TicketPool::new(1);
        let t = pool.acquire().unwrap();
        let slot = t.slot();
        let spinner = thread::spawn(move || t.wait_spin());
        thread::yield_now();
        pool.complete(slot, TicketResult::Durable(5));
        assert_eq!(spinner.join().unwrap().unwrap(), 5);
        // Spin after completion too.
        let t = pool.acquire().unwrap();
        pool.complete(t.slot(), TicketResult::Closed);
        assert!(matches!(t.wait_spin(), Err(WalError::Closed)));
    }

    #[test]
    fn ticket_wait_timeout_expires_then_succeeds() {
        let pool = TicketPool::new(1);
        let mut t = pool.acquire().unwrap();
        assert!(t.wait_timeout(Duration::from_millis(2)).is_none());
        assert!(t.wait_timeout(Duration::ZERO).is_none());
        assert!(!t.is_done());
        // The expired wait left WAITING set; a later completion must still be delivered.
        let slot = t.slot();
        let p = Arc::clone(&pool);
        let writer = thread::spawn(move || p.complete(slot, TicketResult::Durable(77)));
        let got = t
            .wait_timeout(Duration::from_secs(3600))
            .expect("completes");
        assert_eq!(got.unwrap(), 77);
        writer.join().unwrap();
        // A timeout too large for Instant means no deadline.
        assert_eq!(t.wait_timeout(Duration::MAX).unwrap().unwrap(), 77);
        drop(t);
        assert_eq!(pool.free_rx.len(), 1);
    }

    #[test]
    fn ticket_wait_timeout_parked_then_woken_on_other_thread() {
        let pool = TicketPool::new(1);
        let mut t = pool.acquire().unwrap();
        let slot = t.slot();
        let waiter = thread::spawn(move || t.wait_timeout(Duration::from_secs(3600)));
        until(|| state_of(&pool, slot) & WAITING != 0);
        pool.complete(slot, TicketResult::NotInDoubt(12));
        match waiter.join().unwrap() {
            Some(Err(WalError::NotInDoubt { lsn: 12 })) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ticket_future_pending_then_woken() {
        let pool = TicketPool::new(2);
        let mut t = pool.acquire().unwrap();
        let (tw, waker) = thread_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut t).poll(&mut cx).is_pending());
        assert_eq!(
            tw.wakes.load(Ordering::SeqCst),
            0,
            "no wake before completion"
        );
        let slot = t.slot();
        let p = Arc::clone(&pool);
        let writer = thread::spawn(move || p.complete(slot, TicketResult::Durable(31)));
        // The completion must wake the registered waker.
        until(|| tw.wakes.load(Ordering::SeqCst) > 0);
        writer.join().unwrap();
        match Pin::new(&mut t).poll(&mut cx) {
            Poll::Ready(Ok(31)) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(tw.wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn ticket_future_under_block_on() {
        let pool = TicketPool::new(2);
        // Completed before the first poll.
        let t = pool.acquire().unwrap();
        pool.complete(t.slot(), TicketResult::Durable(1));
        assert_eq!(block_on(t).unwrap(), 1);
        // Completed by another thread while the executor parks.
        for i in 0..200u64 {
            let t = pool.acquire().unwrap();
            let slot = t.slot();
            let p = Arc::clone(&pool);
            let writer = thread::spawn(move || p.complete(slot, TicketResult::Durable(i)));
            assert_eq!(block_on(t).unwrap(), i);
            writer.join().unwrap();
        }
        // The waker may change between polls (task moved): the latest one is woken.
        let mut t = pool.acquire().unwrap();
        let (tw1, w1) = thread_waker();
        let (tw2, w2) = thread_waker();
        assert!(Pin::new(&mut t)
            .poll(&mut Context::from_waker(&w1))
            .is_pending());
        assert!(Pin::new(&mut t)
            .poll(&mut Context::from_waker(&w2))
            .is_pending());
        pool.complete(t.slot(), TicketResult::Durable(2));
        assert_eq!(tw2.wakes.load(Ordering::SeqCst), 1);
        assert_eq!(tw1.wakes.load(Ordering::SeqCst), 0);
        assert_eq!(block_on(t).unwrap(), 2);
        assert_eq!(pool.free_rx.len(), 2);
    }

    #[test]
    fn ticket_dropped_before_completion_is_freed_by_complete_and_reused_with_new_generation() {
        let pool = TicketPool::new(1);
        let t1 = pool.try_acquire().unwrap();
        let (slot, gen1) = (t1.slot(), t1.generation);
        drop(t1);
        assert!(
            pool.try_acquire().is_none(),
            "slot must not be reused before its completion"
        );
        assert!(state_of(&pool, slot) & ABANDONED != 0);
        pool.complete(slot, TicketResult::Durable(100));
        let mut t2 = pool
            .try_acquire()
            .expect("complete freed the abandoned slot");
        assert_eq!(t2.slot(), slot);
        assert_ne!(t2.generation, gen1);
        assert!(!t2.is_done(), "the new ticket does not see the old result");
        assert!(t2.try_result().is_none());
        pool.complete(slot, TicketResult::Durable(200));
        assert_eq!(t2.wait().unwrap(), 200);
        // Dropped after completion without waiting: freed at once.
        let t3 = pool.try_acquire().unwrap();
        pool.complete(t3.slot(), TicketResult::Durable(300));
        drop(t3);
        let t4 = pool.try_acquire().expect("freed by drop");
        assert!(!t4.is_done());
        // Many reuses of the one slot: every ticket gets exactly its own result.
        drop(t4);
        pool.complete(slot, TicketResult::Closed);
        for i in 0..1000u64 {
            let t = pool.try_acquire().unwrap();
            assert!(!t.is_done());
            if i % 3 == 0 {
                drop(t);
                pool.complete(slot, TicketResult::Durable(i));
            } else {
                pool.complete(slot, TicketResult::Durable(i));
                assert_eq!(t.wait().unwrap(), i);
            }
        }
    }

    #[test]
    fn ticket_pool_exhaustion_blocks_acquire_until_a_slot_frees() {
        let pool = TicketPool::new(2);
        assert_eq!(pool.capacity(), 2);
        let a = pool.try_acquire().unwrap();
        let b = pool.try_acquire().unwrap();
        assert_ne!(a.slot(), b.slot());
        assert!(pool.try_acquire().is_none());
        let p = Arc::clone(&pool);
        let acquirer = thread::spawn(move || p.acquire().map(|t| t.slot()));
        until(|| pool.acquire_waiters.load(Ordering::SeqCst) > 0);
        assert!(!acquirer.is_finished());
        let freed = a.slot();
        pool.complete(freed, TicketResult::Durable(1));
        assert_eq!(a.wait().unwrap(), 1);
        assert_eq!(acquirer.join().unwrap().unwrap(), freed);
        drop(b);
        assert_eq!(pool.acquire_waiters.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn ticket_pool_close_wakes_blocked_acquirers() {
        let pool = TicketPool::new(1);
        let held = pool.acquire().unwrap();
        let acquirers: Vec<_> = (0..2)
            .map(|_| {
                let p = Arc::clone(&pool);
                thread::spawn(move || p.acquire())
            })
            .collect();
        until(|| pool.acquire_waiters.load(Ordering::SeqCst) == 2);
        pool.close();
        for a in acquirers {
            assert!(matches!(a.join().unwrap(), Err(WalError::Closed)));
        }
        assert!(matches!(pool.acquire(), Err(WalError::Closed)));
        // Outstanding tickets still resolve.
        pool.complete(held.slot(), TicketResult::Closed);
        assert!(matches!(held.wait(), Err(WalError::Closed)));
        assert!(matches!(pool.acquire(), Err(WalError::Closed)));
    }

    #[test]
    fn ticket_poisoned_maps_to_cause() {
        let pool = TicketPool::new(2);
        assert!(pool.poison_cause().is_none());
        let t1 = pool.acquire().unwrap();
        let held = pool.acquire().unwrap();
        let p = Arc::clone(&pool);
        let blocked = thread::spawn(move || p.acquire());
        until(|| pool.acquire_waiters.load(Ordering::SeqCst) == 1);
        let first = cause(4096);
        pool.set_poisoned(Arc::clone(&first));
        pool.set_poisoned(cause(8192)); // ignored: the first wins
        assert!(Arc::ptr_eq(&pool.poison_cause().unwrap(), &first));
        match blocked.join().unwrap() {
            Err(WalError::Poisoned { cause }) => assert!(Arc::ptr_eq(&cause, &first)),
            other => panic!("unexpected {other:?}"),
        }
        pool.complete(t1.slot(), TicketResult::Poisoned);
        match t1.wait() {
            Err(WalError::Poisoned { cause }) => {
                assert!(Arc::ptr_eq(&cause, &first));
                assert_eq!(cause.offset, 4096);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(pool.acquire(), Err(WalError::Poisoned { .. })));
        drop(held);
    }

    #[test]
    fn ticket_poisoned_without_cause_is_still_poisoned() {
        let pool = TicketPool::new(1);
        let t = pool.acquire().unwrap();
        pool.complete(t.slot(), TicketResult::Poisoned);
        match t.wait() {
            Err(WalError::Poisoned { cause }) => assert!(!cause.to_string().is_empty()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ticket_result_mapping() {
        let pool = TicketPool::new(1);
        type Check = fn(&Result<Lsn, WalError>) -> bool;
        let cases: [(TicketResult, Check); 3] = [
            (TicketResult::Durable(0), |r| matches!(r, Ok(0))),
            (TicketResult::NotInDoubt(8), |r| {
                matches!(r, Err(WalError::NotInDoubt { lsn: 8 }))
            }),
            (TicketResult::Closed, |r| matches!(r, Err(WalError::Closed))),
        ];
        for (result, check) in cases {
            let t = pool.acquire().unwrap();
            pool.complete(t.slot(), result);
            let got = t.wait();
            assert!(check(&got), "{result:?} gave {got:?}");
        }
    }

    #[test]
    #[should_panic(expected = "completed twice")]
    fn ticket_double_complete_is_caught() {
        let pool = TicketPool::new(1);
        let t = pool.acquire().unwrap();
        pool.complete(t.slot(), TicketResult::Durable(1));
        pool.complete(t.slot(), TicketResult::Durable(2));
    }

    #[test]
    fn ticket_debug_and_send() {
        let pool = TicketPool::new(1);
        let t = pool.acquire().unwrap();
        let s = format!("{t:?}");
        assert!(s.contains("slot: 0") && s.contains("done: false"), "{s}");
        let s = thread::spawn(move || format!("{t:?}")).join().unwrap();
        assert!(s.contains("Ticket"));
        assert!(format!("{pool:?}").contains("capacity: 1"));
    }

    /// 4 producers × 20 000 appends through a small pool (so slots are reused and acquire blocks);
    /// a writer thread completes in arrival order, in batches; every outcome must be exactly the
    /// producer's own. Wait styles are mixed, and some tickets are dropped unwaited.
    #[test]
    fn ticket_stress_four_producers() {
        const PRODUCERS: u64 = 4;
        const PER_PRODUCER: u64 = 20_000;
        let pool = TicketPool::new(64);
        let (tx, rx) = crossbeam_channel::bounded::<(u32, u64)>(1024);
        let p = Arc::clone(&pool);
        let writer = thread::spawn(move || {
            let mut batch = Vec::with_capacity(256);
            let mut completed = 0u64;
            while let Ok(first) = rx.recv() {
                batch.push(first);
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(x) => batch.push(x),
                        Err(_) => break,
                    }
                }
                for (slot, value) in batch.drain(..) {
                    p.complete(slot, TicketResult::Durable(value));
                    completed += 1;
                }
            }
            completed
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let pool = Arc::clone(&pool);
                let tx = tx.clone();
                thread::spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        let value = (id << 32) | seq;
                        let mut t = pool.acquire().unwrap();
                        tx.send((t.slot(), value)).unwrap();
                        // wait_spin is rare: with more spinners than cores it starves the writer.
                        let got = match seq % 10 {
                            0..=2 => t.wait(),
                            3 => t.wait_spin(),
                            4 | 5 => block_on(t),
                            6 | 7 => loop {
                                if let Some(r) = t.wait_timeout(Duration::from_micros(50)) {
                                    break r;
                                }
                            },
                            _ => {
                                drop(t);
                                continue;
                            }
                        };
                        assert_eq!(got.unwrap(), value);
                    }
                })
            })
            .collect();
        drop(tx);
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(writer.join().unwrap(), PRODUCERS * PER_PRODUCER);
        assert_eq!(pool.free_rx.len(), 64, "every slot returned");
        for i in 0..64 {
            assert_eq!(
                state_of(&pool, i) & !(u64::MAX << GEN_SHIFT),
                0,
                "slot {i} clean"
            );
        }
    }
}

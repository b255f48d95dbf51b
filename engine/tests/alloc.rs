//! Steady state: zero heap allocations per append (tickets, queue slots and batch buffers come
//! from pools sized at open). Counts every allocation in the process — the producer, the writer
//! thread and the maintenance thread — with a counting global allocator. Runs without the libtest
//! harness (`harness = false`), whose own threads would allocate (e.g. its "running for over 60
//! seconds" notice) and be counted.
mod common;
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tradewal::*;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarding the caller's contract to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarding the caller's contract to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarding the caller's contract to the system allocator.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Intent `i` with a client order id and a tag (format 2 fields, built inline: no allocation).
fn full_intent(i: u64) -> TradeIntent {
    let mut id = *b"CL-0000000000000000";
    for (k, d) in id[3..].iter_mut().rev().enumerate() {
        *d = b'0' + ((i >> (4 * k)) & 0xF) as u8 % 10;
    }
    TradeIntent { cl_ord_id: Some(OrderId::from_ascii(&id).unwrap()), tag: Some(i as u32 % 7), ..intent(i) }
}

/// Outcomes with data: every third intent gets a partial fill with a venue order id, then a fill.
fn settle(wal: &Wal, i: u64, lsn: Lsn) {
    let qty = intent(i).qty;
    if i % 3 == 0 {
        let venue = Some(OrderId::from_ascii(b"VENUE-ORDER-0001").unwrap());
        let part = Outcome {
            intent_lsn: lsn,
            status: Status::PartiallyFilled { qty: qty / 2.0, avg_price: 10.5 },
            venue_order_id: venue,
            ts_ns: 7,
        };
        wal.report(&part).unwrap().wait().unwrap();
        let fill = Outcome { status: Status::Filled { qty, avg_price: 10.75 }, ..part };
        wal.report(&fill).unwrap().wait().unwrap();
    } else {
        wal.mark_executed(lsn).unwrap().wait().unwrap();
    }
}

fn run(wal: &Wal, from: u64, n: u64, pipelined: bool) {
    if pipelined {
        let mut ring: [Option<(u64, Ticket)>; 64] = std::array::from_fn(|_| None);
        for i in from..from + n {
            let slot = &mut ring[(i % 64) as usize];
            if let Some((j, t)) = slot.take() {
                settle(wal, j, t.wait().unwrap());
            }
            *slot = Some((i, wal.append(&full_intent(i)).unwrap()));
        }
        for (j, t) in ring.into_iter().flatten() {
            settle(wal, j, t.wait().unwrap());
        }
    } else {
        for i in from..from + n {
            if i % 10 == 0 {
                // A two-leg group: one ticket for both legs.
                let legs = [full_intent(i), intent(i + 1)];
                let first = wal.append_group(&legs).unwrap().wait().unwrap();
                wal.mark_executed(first).unwrap().wait().unwrap();
                wal.mark_aborted(first + 1).unwrap().wait().unwrap();
                continue;
            }
            let l = wal.append(&full_intent(i)).unwrap().wait().unwrap();
            wal.mark_executed(l).unwrap().wait_spin().unwrap();
        }
    }
}

fn main() {
    zero_allocations_per_append_in_steady_state();
    println!("test zero_allocations_per_append_in_steady_state ... ok");
}

fn zero_allocations_per_append_in_steady_state() {
    let d = tempdir();
    // Segments large enough that no rotation (which names a new file) happens while counting.
    // The maintenance thread's timed manifest update (once a second by default, not per append:
    // it formats a small text file) is moved past the counted window; the count still covers the
    // producer, the writer and the maintenance thread's per-append work (none).
    let cfg = WalConfig::new(d.path()).segment_bytes(256 << 20).queue_capacity(4096).unpinned_writer();
    let wal = Wal::open(cfg.manifest_interval(std::time::Duration::from_secs(60))).unwrap();
    // The spare segment is created in the background: let that finish first (it allocates, and
    // its zero-fill competes with the log for the device).
    while wal.stats().spares_prepared == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Warm up: thread-locals, channel waiter lists, ring, parking.
    run(&wal, 0, 1000, false);
    run(&wal, 10_000, 3000, true);
    COUNTING.store(true, Ordering::SeqCst);
    run(&wal, 100_000, 2000, false);
    run(&wal, 200_000, 20_000, true);
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCS.load(Ordering::SeqCst);
    let st = wal.stats();
    wal.close().unwrap();
    assert_eq!(st.rotations, 0);
    // At open, before the spare's creation, once the first batch was durable (all in warm-up).
    assert_eq!(st.manifest_writes, 3, "{st:?}");
    assert_eq!(
        n, 0,
        "{n} heap allocations during 22 000 appends (with order ids, tags and groups) + outcomes (with fills) in steady state"
    );
}

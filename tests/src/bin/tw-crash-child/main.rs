//! Child process of the kill -9 and hostile-input suites (tests/tests/kill9.rs, hostile.rs).
//!
//! - `tw-crash-child crash DIR ARCHIVE ROUND SEED PRODUCERS DEPTH`: opens the crash log, prints
//!   `R next_lsn in_doubt torn(0|1) removed`, goes on with the outcome plans of about 3/4 of the
//!   recovered in-doubt intents (from the step after the partial fill each carries), and runs
//!   PRODUCERS threads that each keep DEPTH units (an intent, or a group of 2..=4 legs through
//!   `append_group`) outstanding and report each intent's outcome plan (partial fills, then Filled
//!   or Cancelled; or Rejected, Aborted, Filled at once; see workload.rs), printing every
//!   acknowledgement as it resolves: `I lsn id` for an intent, `G lsn id legs` for a group (`lsn`
//!   and `id` of leg 0), `O lsn intent_lsn id step` for outcome `step` of the plan of intent `id`
//!   (one line each, flushed). Runs until killed. Any error prints `E message` and exits 3.
//! - `tw-crash-child hold DIR`: opens a log in DIR, waits for its spare segment, prints `READY`,
//!   keeps it open until stdin closes.
//! - `tw-crash-child defaults DIR TRUST`: opens DIR with `WalConfig` defaults (plus
//!   `trust_storage(TRUST == 1)`), prints `B backend`, then runs two producers with the plain
//!   workload (no groups; one shorthand outcome per intent; same `I`/`O` lines) until killed. The FUSE power-cut suite (tests/tests/fuse_cut.rs).
//! - `tw-crash-child try DIR`: tries to open a log in DIR and prints `OK`, `LOCKED` or `ERR message`.

mod workload;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;
use tradewal::{Fill, Lsn, Outcome, OutcomeKind, Ticket, Wal, WalConfig, WalError};

static OUT: Mutex<()> = Mutex::new(());

/// Prints one line with a single write and flushes it: a line on the pipe means acknowledged.
fn say(line: String) {
    let _g = OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = std::io::stdout().lock();
    let mut buf = line.into_bytes();
    buf.push(b'\n');
    if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
        // The parent went away: nothing left to report to.
        std::process::exit(4);
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    say(format!("E {what}: {e}"));
    std::process::exit(3);
}

enum Pending {
    /// A unit of `legs` intents from id `id` (legs > 1: one `append_group`).
    Unit { id: u64, legs: u16, ticket: Ticket },
    /// Outcome `step` of the plan of intent `id` at `intent_lsn`.
    Outcome { intent_lsn: Lsn, id: u64, step: usize, ticket: Ticket },
}

/// Reports outcome `step` of intent `id` at `intent_lsn`: through the shorthands when it is one
/// (`mark_executed` / `mark_aborted`), else through `Wal::report`.
fn report(wal: &Wal, id: u64, intent_lsn: Lsn, step: usize, rich: bool) -> Pending {
    let o = workload::outcome(id, intent_lsn, step, rich);
    let qty = workload::intent(id).qty;
    let r = if o == Outcome::shorthand(intent_lsn, OutcomeKind::Executed, qty) {
        wal.mark_executed(intent_lsn)
    } else if o == Outcome::shorthand(intent_lsn, OutcomeKind::Aborted, qty) {
        wal.mark_aborted(intent_lsn)
    } else {
        wal.report(&o)
    };
    Pending::Outcome { intent_lsn, id, step, ticket: r.unwrap_or_else(|e| fail("report", e)) }
}

fn resolve(wal: &Wal, p: Pending, q: &mut VecDeque<Pending>, rich: bool) {
    match p {
        Pending::Unit { id, legs, ticket } => {
            let lsn = ticket.wait().unwrap_or_else(|e| fail("intent ticket", e));
            if legs == 1 {
                say(format!("I {lsn} {id}"));
            } else {
                say(format!("G {lsn} {id} {legs}"));
            }
            for j in 0..legs as u64 {
                if workload::left_in_doubt_after(id + j, rich) != Some(0) {
                    q.push_back(report(wal, id + j, lsn + j, 0, rich));
                }
            }
        }
        Pending::Outcome { intent_lsn, id, step, ticket } => {
            let lsn = ticket.wait().unwrap_or_else(|e| fail("outcome ticket", e));
            say(format!("O {lsn} {intent_lsn} {id} {step}"));
            let next = step + 1;
            if next < workload::plan_len(id, rich) && workload::left_in_doubt_after(id, rich) != Some(next) {
                q.push_back(report(wal, id, intent_lsn, next, rich));
            }
        }
    }
}

/// One producer: keeps `depth` units outstanding, and reports each intent's plan as its
/// acknowledgements come. `rich`: groups, partial fills, rejects and cancels (the `crash`
/// workload); else plain intents with the shorthands.
fn producer(wal: &Wal, round: u64, thread: u64, depth: usize, rich: bool) {
    let mut q: VecDeque<Pending> = VecDeque::with_capacity(depth * 2);
    let mut counter = 0u64;
    let mut legs = Vec::with_capacity(4);
    loop {
        while q.len() < depth && counter < (1 << 24) - workload::UNIT_IDS {
            let id = workload::intent_id(round, thread, counter);
            counter += workload::UNIT_IDS;
            let n = if rich { workload::group_size(id) } else { 1 };
            let ticket = if n == 1 {
                wal.append(&workload::intent(id)).unwrap_or_else(|e| fail("append", e))
            } else {
                legs.clear();
                legs.extend((0..n as u64).map(|j| workload::intent(id + j)));
                wal.append_group(&legs).unwrap_or_else(|e| fail("append_group", e))
            };
            q.push_back(Pending::Unit { id, legs: n, ticket });
        }
        match q.pop_front() {
            Some(p) => resolve(wal, p, &mut q, rich),
            None => std::thread::park(),
        }
    }
}

/// The step after the latest partial fill `d` carries (0 when it has none): the plan goes on
/// from there.
fn next_step(d: &tradewal::InDoubt) -> usize {
    let id = d.intent.ts_ns as u64;
    let Some(fill) = &d.fill else { return 0 };
    (0..workload::plan_len(id, true))
        .find(|&k| Fill::of(&workload::outcome(id, d.lsn, k, true)).as_ref() == Some(fill))
        .map(|k| k + 1)
        .unwrap_or_else(|| fail("recovered fill", format!("intent {} carries {fill:?}, which is no step of its plan", d.lsn)))
}

fn crash(args: &[String]) {
    let [dir, archive, round, seed, producers, depth] = args else { fail("usage", "crash DIR ARCHIVE ROUND SEED PRODUCERS DEPTH") };
    let num = |s: &str| s.parse::<u64>().unwrap_or_else(|e| fail("number", e));
    let (round, seed, producers, depth) = (num(round), num(seed), num(producers), num(depth) as usize);
    let wal = Wal::open(workload::config(Path::new(dir), Path::new(archive))).unwrap_or_else(|e| fail("open", e));
    let rec = wal.recovered().clone();
    say(format!("R {} {} {} {}", rec.next_lsn, rec.in_doubt.len(), rec.torn_tail.is_some() as u8, rec.removed.len()));
    std::thread::scope(|s| {
        let wal = &wal;
        s.spawn(move || {
            // Resolve most of what earlier sessions left in doubt (the rest stays for later rounds).
            let mut q = VecDeque::new();
            for (i, d) in rec.in_doubt.iter().enumerate() {
                if workload::mix(seed ^ round.rotate_left(17) ^ i as u64) % 4 != 0 {
                    // Go on with its plan from where the log says it is (to the end).
                    q.push_back(report(wal, d.intent.ts_ns as u64, d.lsn, next_step(d), true));
                }
                if q.len() >= depth.max(1) {
                    let p = q.pop_front().expect("non-empty");
                    resolve(wal, p, &mut q, true);
                }
            }
            while let Some(p) = q.pop_front() {
                resolve(wal, p, &mut q, true);
            }
        });
        for t in 0..producers {
            s.spawn(move || producer(wal, round, t, depth.max(1), true));
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("crash") => crash(&args[1..]),
        Some("defaults") if args.len() == 3 => {
            let wal = Wal::open(WalConfig::new(&args[1]).trust_storage(args[2] == "1")).unwrap_or_else(|e| fail("open", e));
            say(format!("B {}", wal.backend()));
            let round = wal.recovered().next_lsn;
            std::thread::scope(|s| {
                let wal = &wal;
                for t in 0..2 {
                    s.spawn(move || producer(wal, round, t, 64, false));
                }
            });
        }
        Some("follow") if args.len() == 3 => {
            // A writer for tests/tests/follow_kill9.rs: 1 MiB segments, everything kept; resolves
            // what earlier sessions left in doubt, says READY, then two producers run until killed.
            let wal =
                Wal::open(WalConfig::new(&args[1]).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer())
                    .unwrap_or_else(|e| fail("open", e));
            let pending: Vec<_> = wal.recovered().in_doubt.iter().map(|d| d.lsn).collect();
            let marks: Vec<_> = pending.into_iter().map(|l| wal.mark_executed(l).unwrap_or_else(|e| fail("mark", e))).collect();
            for m in marks {
                m.wait().unwrap_or_else(|e| fail("mark", e));
            }
            say("READY".into());
            let round: u64 = args[2].parse().unwrap_or_else(|e| fail("number", e));
            std::thread::scope(|s| {
                let wal = &wal;
                for t in 0..2 {
                    s.spawn(move || producer(wal, round, t, 32, false));
                }
            });
        }
        Some("hold") if args.len() == 2 => {
            let wal =
                Wal::open(WalConfig::new(&args[1]).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer())
                    .unwrap_or_else(|e| fail("open", e));
            // The spare is created in the background: let it settle, so the directory no longer
            // changes while the parent compares its listing.
            while wal.stats().spares_prepared == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            say("READY".into());
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            wal.close().unwrap_or_else(|e| fail("close", e));
        }
        Some("try") if args.len() == 2 => {
            match Wal::open(WalConfig::new(&args[1]).segment_bytes(1 << 20).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer())
            {
                Ok(w) => {
                    say("OK".into());
                    drop(w);
                }
                Err(WalError::Locked { .. }) => say("LOCKED".into()),
                Err(e) => say(format!("ERR {e}")),
            }
        }
        _ => fail("usage", "tw-crash-child crash|hold|try ..."),
    }
}

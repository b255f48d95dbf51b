//! `ship` and `recover --nats`: the log into NATS JetStream and the in-doubt intents back out
//! (tradewal-ship does the work; this prints).

use crate::inspect::write_stdout;
use crate::{CmdResult, Failure};
use std::io::IsTerminal as _;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tradewal_codec::write_in_doubt_line;
use tradewal_ship::{ShipConfig, ShipError, ShipEvent, ShipProgress};

/// `tradewal ship`: runs until killed (or, with `once`, until caught up). Events are one line
/// each on stderr; on a terminal a progress line shows the shipped LSN, the lag and the rate.
pub fn run(cfg: &ShipConfig) -> CmdResult {
    let progress = ShipProgress::default();
    let stop = AtomicBool::new(false);
    let on_event = |ev: ShipEvent| eprintln!("{}", event_line(&ev));
    let result = std::thread::scope(|s| {
        let shipping = s.spawn(|| {
            let r = tradewal_ship::ship(cfg, &progress, &stop, &on_event);
            stop.store(true, std::sync::atomic::Ordering::Release);
            r
        });
        if std::io::stderr().is_terminal() {
            show_progress(&progress, &stop);
        }
        shipping.join().unwrap_or_else(|_| Err(ShipError::Request { what: "shipping".into(), reason: "panicked".into() }))
    });
    result.map_err(failure)?;
    if cfg.once {
        eprintln!("tradewal ship: shipped through LSN {} ({} messages acknowledged by the stream)", progress.shipped(), progress.records());
    }
    Ok(())
}

fn show_progress(p: &ShipProgress, stop: &AtomicBool) {
    let (mut last_n, mut last_t) = (p.records(), Instant::now());
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(250));
        let (n, t) = (p.records(), Instant::now());
        let rate = (n - last_n) as f64 / (t - last_t).as_secs_f64();
        (last_n, last_t) = (n, t);
        eprint!("\rshipped LSN {}  lag {} records  {:.0} records/s   ", p.shipped(), p.lag(), rate);
    }
    eprintln!();
}

/// One stderr line per event.
pub fn event_line(ev: &ShipEvent) -> String {
    match ev {
        ShipEvent::Started { log_id, subject, from, cursor, stream_last } => format!(
            "tradewal ship: log {log_id:016x} to subject {subject}: cursor at LSN {cursor}, stream holds up to LSN {stream_last}, shipping from LSN {from}"
        ),
        ShipEvent::Disconnected => "tradewal ship: disconnected from the server; reconnecting".to_string(),
        ShipEvent::Reconnected => "tradewal ship: connected".to_string(),
        ShipEvent::Stalled { at, error, retry_in } => {
            format!("tradewal ship: stalled at LSN {at}: {error}; starting again from the stream in {} ms", retry_in.as_millis())
        }
        ShipEvent::Reshipping { from, through } => format!(
            "tradewal ship: the stream lost LSNs {from}..={through} after acknowledging them; shipping them again"
        ),
        ShipEvent::Resumed { at } => format!("tradewal ship: resumed from LSN {at}"),
        _ => format!("tradewal ship: {ev:?}"),
    }
}

fn failure(e: ShipError) -> Failure {
    match e {
        ShipError::Follow(tradewal::FollowError::Gap { .. }) => Failure { code: 3, message: format!("ship: {e}") },
        e => Failure::usage(format!("ship: {e}")),
    }
}

/// `tradewal recover --nats URL --stream NAME --log LOG_ID`: the in-doubt intents from the stream.
pub fn recover(urls: &str, stream: &str, prefix: &str, log: &str) -> CmdResult {
    let log_id = u64::from_str_radix(log.trim_start_matches("0x"), 16)
        .map_err(|_| Failure::usage(format!("--log {log:?}: a log id is 16 hex digits (tradewal inspect DIR prints it)")))?;
    let records = tradewal_ship::read_stream(urls, stream, prefix, log_id).map_err(|e| Failure::usage(format!("recover: {e}")))?;
    let open = tradewal_ship::in_doubt(&records).map_err(|e| Failure::usage(format!("recover: {e}")))?;
    let mut buf = Vec::with_capacity(open.len() * 128);
    for d in &open {
        write_in_doubt_line(&mut buf, d).map_err(|e| Failure::usage(e.to_string()))?;
    }
    write_stdout(&buf)
}

//! `readers`: the named readers (cursors) of a log directory, with their lag; `--drop NAME`.

use crate::{CmdResult, Failure};
use std::io::Write as _;
use std::path::Path;

/// The last acknowledged LSN: the live writer's watermark file, else a read-only scan.
fn last_lsn(dir: &Path) -> Result<u64, Failure> {
    if let Some(v) = tradewal::Follower::open(dir, 1).ok().and_then(|mut f| f.acknowledged()) {
        return Ok(v);
    }
    let report = crate::scan::scan_dir(dir, 2, |_, _| {})?;
    Ok(report.state.next_lsn.saturating_sub(1))
}

/// `tradewal readers DIR [--drop NAME]`.
pub fn run(dir: &Path, drop: Option<&str>) -> CmdResult {
    if let Some(name) = drop {
        return match tradewal::drop_reader(dir, name) {
            Ok(true) => {
                println!("dropped reader {name}");
                Ok(())
            }
            Ok(false) => Err(Failure::usage(format!("no reader named {name} in {}", dir.display()))),
            Err(e) => Err(Failure::usage(e.to_string())),
        };
    }
    let readers = tradewal::list_readers(dir).map_err(|e| Failure::usage(e.to_string()))?;
    let last = last_lsn(dir)?;
    let mut out = std::io::stdout().lock();
    for r in &readers {
        let lag = last.saturating_sub(r.committed);
        let dropped = if r.dropped { " dropped (retention no longer keeps its segments)" } else { "" };
        let _ = writeln!(out, "{} committed {} lag {} records{}", r.name, r.committed, lag, dropped);
    }
    if readers.is_empty() {
        let _ = writeln!(out, "no named readers");
    }
    Ok(())
}

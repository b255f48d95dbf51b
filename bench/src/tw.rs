//! tradewal in the bench: the [`System`] adapter (append → ticket resolved, then an `Executed`
//! outcome, as a strategy would) and the workloads only tradewal can run: open loop at fixed
//! offered rates (coordinated-omission corrected), pipelined throughput against the device
//! bandwidth, rotation under load, producer-side `append` cost and the recovery scan rate.
//!
//! Built when the `engine` feature is on (the engine's `Wal` API); without it every function
//! here reports that the adapter is missing.

use crate::report::{Target, Workload};
use crate::systems::{Kind, System};
use crate::Params;
use std::path::{Path, PathBuf};

/// True when the tradewal adapter is compiled in.
pub const AVAILABLE: bool = cfg!(feature = "engine");

/// Why tradewal rows can be missing.
pub const MISSING: &str = "tradewal adapter not built (enable feature `engine` of tradewal-bench)";

/// A fresh-directory maker handed in by the harness.
pub type FreshDir<'a> = &'a mut dyn FnMut(&str) -> anyhow::Result<PathBuf>;

#[cfg(not(feature = "engine"))]
mod imp {
    use super::*;

    pub fn open_system(_kind: Kind, _dir: &Path) -> anyhow::Result<Box<dyn System>> {
        anyhow::bail!(MISSING)
    }

    pub fn close_system(_kind: Kind, _sys: Box<dyn System>) -> anyhow::Result<()> {
        Ok(())
    }

    pub fn run_tradewal_workloads(
        _p: &Params,
        _progress: bool,
        _wants: &dyn Fn(&str) -> bool,
        _fresh: FreshDir<'_>,
    ) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
        anyhow::bail!(MISSING)
    }
}

#[cfg(feature = "engine")]
mod imp;

/// Opens tradewal (`kind` selects the durability mode) in `dir`.
pub fn open_system(kind: Kind, dir: &Path) -> anyhow::Result<Box<dyn System>> {
    imp::open_system(kind, dir)
}

/// Closes a system opened by [`Kind::open`] (tradewal: `Wal::close`, so errors surface).
pub fn close_system(kind: Kind, sys: Box<dyn System>) -> anyhow::Result<()> {
    imp::close_system(kind, sys)
}

/// Runs the tradewal-only workloads (`open`, `pipelined`, `rotation`, `append`, `recovery`; those
/// `wants` accepts); returns their tables and the targets they check.
pub fn run_tradewal_workloads(
    p: &Params,
    progress: bool,
    wants: &dyn Fn(&str) -> bool,
    fresh: FreshDir<'_>,
) -> anyhow::Result<(Vec<Workload>, Vec<Target>)> {
    imp::run_tradewal_workloads(p, progress, wants, fresh)
}

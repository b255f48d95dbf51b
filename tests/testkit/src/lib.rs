//! Test support shared by every tradewal test crate (engine, codec, cli, tests).
//!
//! * [`require`] / [`cannot_run`]: a test that cannot run here **fails** with the reason, unless the
//!   environment names it in the allow-list variable [`ALLOW_SKIP_VAR`]
//!   (`TRADEWAL_ALLOW_SKIP=fulldisk,chmod`). `.ci/run` sets none, so in CI every test runs or fails.
//! * [`rng`]: the seeded generators ([`rng::splitmix64`], [`rng::Rng`]), one copy for every crate.
//! * [`intents`]: intent fixtures ([`intents::same_intent`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt::Display;

pub mod intents;
pub mod nats;
pub mod rng;

/// The allow-list variable: a comma-separated list of capability names whose tests may skip.
pub const ALLOW_SKIP_VAR: &str = "TRADEWAL_ALLOW_SKIP";

/// The capability names the suites use (what a test needs that a machine may lack). A name outside
/// this list in [`cannot_run`] is a bug in the test, so it panics.
pub const CAPABILITIES: &[&str] = &[
    "odirect",  // O_DIRECT in the test's temp dir
    "io_uring", // io_uring_setup succeeds (kernel.io_uring_disabled = 0, no seccomp filter)
    "root",     // effective uid 0 (mounting a tmpfs, dropping to another uid)
    "fulldisk", // mount -t tmpfs of a tiny file system
    "chmod",    // a process without CAP_DAC_OVERRIDE to meet mode 000 (setpriv)
    "tmpfs",    // a tmpfs on a second file system (/dev/shm) for cross-file-system archive tests
    "filefrag", // filefrag (e2fsprogs) to inspect extents
    "fuse",     // /dev/fuse and fusermount3 (the FUSE crash file system)
    "stacks",   // loop devices and mkfs.{ext4,xfs,btrfs} (the storage-stack suite)
    "nats",     // the nats-server binary (the JetStream shipping suite)
];

/// True when `capability` is named in [`ALLOW_SKIP_VAR`].
pub fn skip_allowed(capability: &str) -> bool {
    std::env::var(ALLOW_SKIP_VAR).map(|v| v.split(',').any(|n| n.trim() == capability)).unwrap_or(false)
}

/// The test `test` cannot run because `capability` is missing (`reason` says why). Panics (the test
/// fails, naming the reason and how to allow the skip) unless [`ALLOW_SKIP_VAR`] names the
/// capability; then it prints `SKIP` with the reason and returns, and the caller returns too.
#[track_caller]
pub fn cannot_run(test: &str, capability: &str, reason: impl Display) {
    assert!(CAPABILITIES.contains(&capability), "unknown capability {capability:?}");
    if skip_allowed(capability) {
        eprintln!("SKIP {test}: needs {capability}: {reason} (allowed by {ALLOW_SKIP_VAR})");
        println!("SKIP {test}: needs {capability}: {reason} (allowed by {ALLOW_SKIP_VAR})");
        return;
    }
    panic!(
        "{test} cannot run here: needs {capability}: {reason}. This is a failure, not a skip; \
         to skip it explicitly set {ALLOW_SKIP_VAR}={capability}"
    );
}

/// `Some(v)` when `r` is `Ok(v)`; otherwise [`cannot_run`] (which fails unless allowed) and `None`.
#[track_caller]
pub fn require<T, E: Display>(test: &str, capability: &str, r: Result<T, E>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            cannot_run(test, capability, e);
            None
        }
    }
}

/// Effective uid 0, read from /proc (no `unsafe` in test crates).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "cannot run here")]
    fn a_missing_capability_fails_unless_allowed() {
        // The test binary's environment never names this capability.
        assert!(!skip_allowed("root") || std::env::var(ALLOW_SKIP_VAR).is_ok());
        if std::env::var(ALLOW_SKIP_VAR).is_ok_and(|v| v.split(',').any(|n| n.trim() == "root")) {
            panic!("cannot run here (the environment allows skipping root; this self-test needs it not to)");
        }
        cannot_run("self-test", "root", "pretend");
    }

    #[test]
    #[should_panic(expected = "unknown capability")]
    fn an_unknown_capability_is_a_bug() {
        cannot_run("self-test", "nonsense", "x");
    }
}

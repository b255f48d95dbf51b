//! Stable-toolchain smoke run of the engine fuzz targets `model` and `recover_dir`
//! (fuzz/fuzz_targets/): the same harness functions (`tradewal_tests::model::fuzz_model`,
//! `fuzz_recover_dir`) over a bounded number of seeded random inputs, so CI exercises them
//! without cargo-fuzz. Each harness panics on a violated invariant; a failure prints the input
//! in hex, to be saved as a file and replayed with `cargo fuzz run <target> <file>`.
//!
//! `FUZZ_SMOKE_INPUTS=<n>` sets the number of inputs per target (default 1000 in release builds,
//! 40 in debug; recover_dir runs three times as many); `FUZZ_SMOKE_SEED=<n>` the seed (default 0).

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;
use tradewal_tests::model::{fuzz_model, fuzz_recover_dir, DirReport, ModelReport};
use tradewal_tests::sim::Rng;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

fn inputs() -> (u64, u64) {
    let n = env_u64("FUZZ_SMOKE_INPUTS").unwrap_or(if cfg!(debug_assertions) { 40 } else { 1000 });
    (env_u64("FUZZ_SMOKE_SEED").unwrap_or(0), n)
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `f` on `n` random inputs of `min..=max` bytes; on a panic prints the input and re-raises.
fn each_input(target: &str, seed: u64, n: u64, min: u64, max: u64, mut f: impl FnMut(&[u8])) {
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let mut data = vec![0u8; rng.range(min, max) as usize];
        rng.fill(&mut data);
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| f(&data))) {
            eprintln!("{target}: input {i} (seed {seed}) failed; as hex:\n{}\nreplay: echo <hex> | xxd -r -p > crash && cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none {target} ../crash", hex(&data));
            panic::resume_unwind(e);
        }
    }
}

#[test]
fn model_target_smoke() {
    let (seed, n) = inputs();
    let started = Instant::now();
    let mut t = ModelReport::default();
    each_input("model", seed, n, 4, 160, |d| {
        let r = fuzz_model(d);
        t.ops += r.ops;
        t.reopens += r.reopens;
        t.acked_intents += r.acked_intents;
        t.acked_outcomes += r.acked_outcomes;
        t.not_in_doubt += r.not_in_doubt;
        t.faults_fired += r.faults_fired;
        t.power_cuts += r.power_cuts;
        t.process_crashes += r.process_crashes;
        t.closes += r.closes;
        t.poisoned_closes += r.poisoned_closes;
        t.open_retries += r.open_retries;
        t.torn_tails += r.torn_tails;
        t.multi_segment += r.multi_segment;
    });
    eprintln!("model smoke: {n} inputs, {t:?} in {:.1?}", started.elapsed());
    if n >= 40 {
        // The harness reaches what it claims to.
        assert!(t.reopens > n && t.acked_intents > 0 && t.acked_outcomes > 0, "{t:?}");
        assert!(t.faults_fired > 0 && t.power_cuts > 0 && t.process_crashes > 0 && t.closes > 0, "{t:?}");
    }
}

#[test]
fn recover_dir_target_smoke() {
    let (seed, n) = inputs();
    let n = n * 3;
    let started = Instant::now();
    let (mut opened, mut torn, mut corrupt, mut cut, mut edits) = (0u64, 0u64, 0u64, 0u64, 0u64);
    each_input("recover_dir", seed, n, 1, 120, |d| {
        let r: DirReport = fuzz_recover_dir(d);
        opened += r.opened as u64;
        torn += r.torn_tail as u64;
        corrupt += r.corrupt as u64;
        cut += r.cut_during_recovery as u64;
        edits += r.edits;
    });
    eprintln!(
        "recover_dir smoke: {n} inputs, {edits} edits: {opened} opened ({torn} after a torn tail), {corrupt} refused as corrupt, {cut} with a power cut inside the first recovery; in {:.1?}",
        started.elapsed()
    );
    if n >= 40 {
        assert!(opened > 0 && torn > 0 && corrupt > 0 && cut > 0, "recover_dir smoke did not reach every outcome");
    }
}

/// The inputs saved in fuzz/artifacts/recover_dir/ (the two findings of docs/reliability.md,
/// both fixed) replay through the harness without a finding; their exact states are pinned by
/// tests/tests/manifest_cuts.rs.
#[test]
fn saved_artifacts_replay_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/artifacts/recover_dir");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        fuzz_recover_dir(&data);
        n += 1;
    }
    assert_eq!(n, 2, "the two saved artifacts in {}", dir.display());
}

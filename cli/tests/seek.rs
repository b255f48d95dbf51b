//! `tradewal export --since/--until` (seek by time) against the full export filtered by time, byte
//! for byte, on logs written by the engine with rotation, non-monotonic timestamps, outcomes in
//! later segments, partial fills, groups, several sessions, KeepAll and Delete retention; the
//! segments read (`--stats`); `--follow --since`; the usage errors.
#[path = "../../engine/tests/seek_gen/mod.rs"]
mod seek_gen;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use tradewal::{index_log, Retention};
use tradewal_testkit::rng::Rng;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tradewal"))
}

fn tmpdir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-seek").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

fn export(dir: &Path, extra: &[&str]) -> Output {
    bin().arg("export").arg(dir).args(extra).output().expect("run tradewal")
}

fn ok(o: Output) -> (Vec<u8>, String) {
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "exit {:?}: {err}", o.status);
    (o.stdout, err)
}

/// The `ts` of an intent line.
fn line_ts(line: &[u8]) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    v["ts"].as_i64().unwrap()
}

/// The lines of `full` with `since <= ts <= until`, byte for byte.
fn filtered(full: &[u8], since: i64, until: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for l in full.split_inclusive(|&b| b == b'\n') {
        let t = line_ts(&l[..l.len() - 1]);
        if since <= t && t <= until {
            out.extend_from_slice(l);
        }
    }
    out
}

/// "segments: T in the log, R read" of `--stats`.
fn stats(err: &str) -> (usize, usize) {
    let s = err.split("segments: ").nth(1).unwrap_or_else(|| panic!("no stats in {err:?}"));
    let mut w = s.split(|c: char| !c.is_ascii_digit()).filter(|x| !x.is_empty());
    (w.next().unwrap().parse().unwrap(), w.next().unwrap().parse().unwrap())
}

/// RFC 3339 of `ns`, in UTC or at +01:00.
fn rfc3339(ns: i64, plus_one: bool) -> String {
    let shift = if plus_one { 3_600_000_000_000 } else { 0 };
    let local = ns + shift;
    let (secs, frac) = (local.div_euclid(1_000_000_000), local.rem_euclid(1_000_000_000));
    let (y, mo, d, h, mi, s) = tradewal_codec::format::civil_from_unix(secs);
    let zone = if plus_one { "+01:00" } else { "Z" };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:09}{zone}")
}

/// Random windows: `export --since --until` equals the full export filtered by `ts`, byte for
/// byte. Returns how many windows read fewer segments than the log has.
fn check_windows(dir: &Path, seed: u64, windows: usize) -> usize {
    let (full, _) = ok(export(dir, &[]));
    let ts: Vec<i64> = full.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(line_ts).collect();
    assert!(ts.len() > 1000, "{} intents", ts.len());
    let (lo, hi) = (*ts.iter().min().unwrap(), *ts.iter().max().unwrap());
    let mut rng = Rng::new(seed);
    let mut fewer = 0;
    for k in 0..windows {
        let a = ts[rng.below(ts.len() as u64) as usize];
        let (since, until) = match k % 6 {
            0 => (Some(a), Some(a)),
            1 => (Some(a), Some(a + rng.below(30_000_000_000) as i64)),
            2 => (None, Some(a)),
            3 => (Some(a), None),
            4 => (Some(a - 1_000_000_000), Some(a + 1_000_000_000)),
            _ => {
                let b = lo + rng.below((hi - lo) as u64 + 1) as i64;
                (Some(a.min(b)), Some(a.max(b)))
            }
        };
        let mut args: Vec<String> = vec!["--stats".into()];
        if let Some(s) = since {
            args.push("--since".into());
            args.push(if k % 4 == 1 { rfc3339(s, k % 8 == 1) } else { s.to_string() });
        }
        if let Some(u) = until {
            args.push("--until".into());
            args.push(if k % 4 == 1 { rfc3339(u, false) } else { u.to_string() });
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, err) = ok(export(dir, &args));
        let want = filtered(&full, since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
        assert!(got == want, "window {args:?}: {} bytes, the filtered full export {} ({err})", got.len(), want.len());
        let (total, read) = stats(&err);
        if read < total {
            fewer += 1;
        }
    }
    fewer
}

#[test]
fn export_since_until_equals_the_full_export_filtered_keep_all() {
    let dir = tmpdir("keep-all").join("wal");
    if seek_gen::build("cli_seek_keep_all", &dir, Retention::KeepAll, 21, 3, 20_000).is_none() {
        return;
    }
    let fewer = check_windows(&dir, 5, 48);
    assert!(fewer > 10, "only {fewer} of 48 windows read fewer segments");
    // A window only one early segment can hold: most segments are not read.
    let index = index_log(&dir).unwrap();
    let n = index.segments.len();
    assert!(n >= 6, "{n} segments");
    let r = index.segments[1].range.expect("segment 1 has a recorded range");
    let t = (r.min_ts..=r.max_ts)
        .step_by(((r.max_ts - r.min_ts) / 64).max(1) as usize)
        .min_by_key(|&t| index.segments.iter().filter(|s| s.can_hold(t, t)).count())
        .unwrap();
    let (got, err) = ok(export(&dir, &["--since", &t.to_string(), "--until", &t.to_string(), "--stats"]));
    let (full, _) = ok(export(&dir, &[]));
    assert_eq!(got, filtered(&full, t, t));
    let (total, read) = stats(&err);
    assert_eq!(total, n);
    assert!(read < total / 2, "a window of segment 1 read {read} of {total} segments: {err}");
    // Without a window every segment is read.
    let (_, err) = ok(export(&dir, &["--stats"]));
    assert_eq!(stats(&err), (n, n));
}

#[test]
fn export_since_until_equals_the_full_export_filtered_under_delete_retention() {
    let dir = tmpdir("delete").join("wal");
    let Some(mut w) = seek_gen::build("cli_seek_delete", &dir, Retention::Delete, 22, 3, 12_000) else { return };
    let wal = seek_gen::open("cli_seek_delete", seek_gen::config(&dir, Retention::Delete)).unwrap();
    w.run(&wal, 3_000);
    wal.close().unwrap();
    check_windows(&dir, 6, 24);
}

#[test]
fn export_follow_since_starts_at_the_time_and_writes_only_its_intents() {
    let dir = tmpdir("follow").join("wal");
    if seek_gen::build("cli_seek_follow", &dir, Retention::KeepAll, 23, 2, 20_000).is_none() {
        return;
    }
    let (full, _) = ok(export(&dir, &[]));
    let lines: Vec<&[u8]> = full.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let last_lsn = tradewal::read_log(&dir, |_, _| {}).unwrap().state.next_lsn - 1;
    let t = line_ts(lines[lines.len() * 3 / 4]);
    let o = export(&dir, &["--follow", "--since", &t.to_string(), "--to-lsn", &last_lsn.to_string()]);
    let (got, _) = ok(o);
    let lsn_of = |l: &[u8]| serde_json::from_slice::<serde_json::Value>(l).unwrap()["lsn"].as_u64().unwrap();
    let mut intents = Vec::new();
    for l in got.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        if v.get("kind").is_none() {
            assert!(v["ts"].as_i64().unwrap() >= t);
            intents.push(lsn_of(l));
        } else {
            assert_eq!(v["kind"], "outcome");
            assert!(intents.contains(&v["intent_lsn"].as_u64().unwrap()), "an outcome line of an intent not written: {v}");
        }
    }
    let want: Vec<u64> = lines.iter().filter(|l| line_ts(l) >= t).map(|l| lsn_of(l)).collect();
    assert_eq!(intents, want);
    // It started after the log's beginning (a segment's base LSN, not 1).
    let start = index_log(&dir).unwrap().start_lsn_since(t);
    assert!(start > 1);
}

#[test]
fn usage_errors_exit_2_and_write_nothing() {
    let dir = tmpdir("usage").join("wal");
    if seek_gen::build("cli_seek_usage", &dir, Retention::KeepAll, 24, 1, 500).is_none() {
        return;
    }
    let out = tmpdir("usage-out").join("out.jsonl");
    let out_s = out.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["--since", "yesterday"],
        &["--since", "2026-02-30T00:00:00Z"],
        &["--until", "2026-01-01T00:00:00"],
        &["--until", "2026-01-01T25:00:00Z"],
        &["--since", "1.5"],
        &["--since", "99999999999999999999"],
        &["--since", "2300-01-01T00:00:00Z"],
        &["--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"],
        &["--since", "5", "--until", "4"],
        &["--raw", "--since", "0"],
        &["--raw", "--until", "0"],
        &["--follow", "--until", "0"],
        &["--follow", "--since", "0", "--name", "r"],
        &["--follow", "--stats"],
    ];
    for args in cases {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", out_s]);
        let o = export(&dir, &a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(err.starts_with("tradewal: ") && err.lines().count() == 1, "{args:?}: {err:?}");
        assert!(!out.exists(), "{args:?} created the output file");
    }
    // Negative integers are nanoseconds before 1970, not flags.
    let (got, _) = ok(export(&dir, &["--until", "-1"]));
    assert!(got.is_empty());
    // And the named reader of the refused case was not created.
    assert!(!dir.join("readers").join("r.cursor").exists());
}

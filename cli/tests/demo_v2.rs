//! Issue 12's "done means" for the demo and the README: the demo binary, run as `cli.rs` runs it,
//! shows client order ids (own and derived), a partial fill, a two-leg group and the
//! reconciliation after its crash; `tradewal recover` / `tradewal export` on the directory it
//! leaves carry the format-2 keys; README's Rust snippets are `engine/examples/reconcile.rs`'s
//! code, and that example runs.
//! Directories under CARGO_TARGET_TMPDIR (a disk file system: O_DIRECT works there).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

fn tmpdir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tests").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

fn tw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradewal")).args(args).output().expect("run tradewal")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("utf-8")
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}"))).collect()
}

/// The line of `out` that starts with `prefix` (the first one), without the prefix.
fn after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{out}"))
}

fn has(out: &str, needle: &str) {
    assert!(out.contains(needle), "the demo's output does not show {needle:?}:\n{out}");
}

#[test]
fn demo_shows_ids_fills_a_group_and_the_reconciliation_and_leaves_the_v2_keys() {
    let base = tmpdir("demo-v2");
    let dir = base.join("demo");
    let d = dir.to_str().unwrap();
    let o = tw(&["demo", "--dir", d, "--intents", "3000", "--producers", "2"]);
    let out = text(&o.stdout);
    if o.status.code() == Some(2) && text(&o.stderr).contains("O_DIRECT") {
        return tradewal_testkit::cannot_run("demo_v2", "odirect", text(&o.stderr));
    }
    assert_eq!(o.status.code(), Some(0), "demo failed: {}\n{out}", text(&o.stderr));

    // The log id, as `tradewal inspect` reports it.
    let log_id = after(&out, "log id: ").trim().to_string();
    assert_eq!(log_id.len(), 16, "{log_id}");
    let inspect = tw(&["inspect", d, "--json"]);
    assert_eq!(inspect.status.code(), Some(0));
    let inspected: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["log_id"], log_id.as_str(), "the demo prints the log's id");

    // Ids of the strategy's own and derived ones; a tag; a partial fill then a fill; a reject; a
    // cancel; a two-leg group.
    has(&out, &format!("own id {log_id}-sc-1: "));
    has(&out, &format!("derived id {log_id}-"));
    has(&out, "strategy tag 7");
    has(&out, "partially filled 0.4 @ 43250, then filled 1 @ 43250.3; both reported");
    has(&out, "rejected (reason 201)");
    has(&out, "then cancelled by the strategy");
    has(&out, "group of 2 legs (one append_group, one ticket)");
    has(&out, "even threads supply their own client order ids");

    // The reconciliation after the crash.
    let at_reopen: usize = after(&out, "in doubt at reopen: ").split_whitespace().next().unwrap().parse().unwrap();
    has(&out, "reconciliation (recover → ask the venue by client order id → report the outcome):");
    for action in [
        "venue says unknown order id → mark_aborted (never sent)",
        ", logged fill 1.5: venue says V0000007: filled 4 @ 14.775 → report filled",
        "→ report rejected",
        "cancelled after 40 filled → report cancelled",
        "working, 0.3 filled @ 43239.5 → nothing new: stays in doubt",
    ] {
        has(&out, action);
    }
    let reconciled = after(&out, "reconciled: ");
    assert!(
        reconciled.starts_with("6 terminal outcomes logged (1 of them mark_aborted)") && reconciled.contains("0 left for a human"),
        "{reconciled}"
    );
    let left: usize = after(&out, "in doubt after the crash: ").split_whitespace().next().unwrap().parse().unwrap();
    assert!(left < at_reopen, "reconciliation resolved some: {at_reopen} -> {left}");
    assert!(after(&out, "check: in-doubt count equals the ").ends_with("and they are the same LSNs: ok"));

    // The scenario's export lines, as printed: a fill after a partial, a cancel, an abort, a
    // partial fill still working, and both legs of the group.
    let printed: Vec<Value> = out
        .lines()
        .skip_while(|l| !l.starts_with("the scenario's lines"))
        .skip(1)
        .take_while(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 11, "{out}");
    let first = &printed[0];
    assert_eq!(
        (first["status"].as_str(), first["filled_qty"].as_f64(), first["avg_price"].as_f64()),
        (Some("filled"), Some(1.0), Some(43250.3))
    );
    assert_eq!(first["venue_order_id"], "V0000001");
    assert_eq!(first["cl_ord_id"], format!("{log_id}-sc-1").as_str());
    let legs: Vec<&Value> = printed.iter().filter(|l| l.get("group").is_some()).collect();
    assert_eq!(legs.len(), 2, "two legs");
    assert_eq!(legs[0]["group"], legs[0]["lsn"], "the group's id is its first leg's LSN");
    assert_eq!(legs[1]["group"], legs[0]["lsn"]);
    assert_eq!(legs[1]["lsn"].as_u64(), legs[0]["lsn"].as_u64().map(|l| l + 1), "consecutive LSNs");
    assert!(legs.iter().all(|l| l["exec"] == true), "both legs filled after reconciliation");
    for status in ["rejected", "cancelled", "partially_filled"] {
        assert!(printed.iter().any(|l| l["status"] == status), "no {status} line: {printed:?}");
    }
    assert!(printed.iter().any(|l| l["aborted"] == true));
    assert!(printed.iter().all(|l| l["tag"] == 7));

    // `tradewal recover` on the directory: what the demo says stays in doubt, with the new keys.
    let r = tw(&["recover", d]);
    assert_eq!(r.status.code(), Some(0), "recover: {}", text(&r.stderr));
    let recovered = json_lines(&text(&r.stdout));
    assert_eq!(recovered.len(), left, "recover lists what the demo left in doubt");
    let still = recovered.iter().find(|l| l["cl_ord_id"] == format!("{log_id}-sc-6").as_str()).expect("the scenario's working order");
    assert_eq!(still["status"], "partially_filled");
    assert_eq!((still["filled_qty"].as_f64(), still["avg_price"].as_f64()), (Some(0.3), Some(43239.5)));
    assert_eq!(still["venue_order_id"], "V0000010");
    assert_eq!(still["tag"], 7);
    for l in &recovered {
        assert_eq!(l["exec"], false);
        assert!(l.get("status").is_none() || l["status"] == "partially_filled", "only working orders stay: {l}");
        assert!(l["tag"].as_u64().is_some(), "every demo intent has a tag: {l}");
        if l["status"] == "partially_filled" {
            assert!(l["filled_qty"].as_f64().unwrap() > 0.0 && l["avg_price"].as_f64().unwrap() > 0.0, "{l}");
            assert!(l["venue_order_id"].as_str().is_some_and(|v| v.starts_with('V')), "{l}");
        }
    }

    // `tradewal export`: every intent, ids own (with the log id) or absent (derived), the group.
    let e = tw(&["export", d]);
    assert_eq!(e.status.code(), Some(0), "export: {}", text(&e.stderr));
    let exported = json_lines(&text(&e.stdout));
    assert_eq!(exported.len(), 3000);
    let with_id = exported.iter().filter(|l| l.get("cl_ord_id").is_some()).count();
    assert!(with_id > 1000 && with_id < 2000, "about half the intents carry their own id: {with_id}");
    assert!(exported.iter().filter_map(|l| l["cl_ord_id"].as_str()).all(|id| id.starts_with(&log_id)));
    let mut by_tag: BTreeMap<u64, usize> = BTreeMap::new();
    for l in &exported {
        *by_tag.entry(l["tag"].as_u64().expect("tag")).or_default() += 1;
    }
    assert_eq!(by_tag.keys().copied().collect::<Vec<_>>(), [7, 100, 101]);
    let groups: Vec<&Value> = exported.iter().filter(|l| l.get("group").is_some()).collect();
    assert_eq!(groups.len(), 2);
    assert_eq!(exported, json_lines(&std::fs::read_to_string(dir.join("export.jsonl")).unwrap()), "the demo's own export");

    // Raw lines: the legs with their index, the outcomes with their data.
    let raw = tw(&["export", d, "--raw", "--to-lsn", "30"]);
    let raw = json_lines(&text(&raw.stdout));
    let raw_legs: Vec<&Value> = raw.iter().filter(|l| l.get("legs").is_some()).collect();
    assert_eq!(
        raw_legs.iter().map(|l| (l["leg"].as_u64(), l["legs"].as_u64())).collect::<Vec<_>>(),
        [(Some(0), Some(2)), (Some(1), Some(2))]
    );
    assert!(raw.iter().any(|l| l["kind"] == "outcome" && l["outcome"] == "partially_filled" && l["venue_order_id"] == "V0000001"));
}

/// The ```rust blocks of README.md, each as its trimmed non-empty lines.
fn readme_rust_blocks() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for l in readme.lines() {
        match (&mut cur, l.trim_start()) {
            (None, "```rust") => cur = Some(Vec::new()),
            (Some(_), "```") => blocks.push(cur.take().unwrap()),
            (Some(b), t) if !t.trim().is_empty() => b.push(t.trim().to_string()),
            _ => {}
        }
    }
    blocks
}

#[test]
fn readme_rust_snippets_are_the_reconcile_example() {
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/examples/reconcile.rs")).unwrap();
    let example: Vec<&str> = example.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let blocks = readme_rust_blocks();
    assert!(blocks.len() >= 5, "README's quick start and the reconciliation section: {} blocks", blocks.len());
    for b in &blocks {
        let found = example.windows(b.len()).any(|w| w.iter().zip(b).all(|(a, b)| *a == b));
        assert!(found, "README snippet not in engine/examples/reconcile.rs (keep them the same, so it compiles):\n{}", b.join("\n"));
    }
}

#[test]
fn the_reconcile_example_runs() {
    let dir = tmpdir("reconcile-example").join("wal");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["run", "-q", "-p", "tradewal", "--example", "reconcile", "--manifest-path"]).arg(&manifest);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let o = cmd.arg("--").arg(&dir).output().expect("run cargo");
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    if !o.status.success() && err.contains("O_DIRECT") {
        return tradewal_testkit::cannot_run("the_reconcile_example_runs", "odirect", err);
    }
    assert!(o.status.success(), "cargo run --example reconcile: {err}\n{out}");
    assert!(out.lines().any(|l| l.starts_with("still in doubt after reconciliation")) && out.ends_with("ok\n"), "{out}");
}

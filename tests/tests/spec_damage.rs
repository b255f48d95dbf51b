//! Damage cases on an engine-written format 2 log, classified by the spec reader's
//! `classify_dir` (tests/src/spec_reader.rs, written from docs/design.md alone) and by the real
//! `tradewal verify DIR`: the same verdict on every case (exit 0 clean or torn tail, exit 1
//! corruption), and the same segment and offset wherever verify prints them.
//!
//! Run: `cargo test --release -p tradewal-tests --test spec_damage -- --nocapture`.

use std::path::{Path, PathBuf};
use tradewal::{Side, TradeIntent, Wal, WalConfig};
use tradewal_tests::spec_reader::{classify_dir, parse_segment_name, reseal_batch_header, reseal_frame, segment_layout, SpecVerdict};

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("spec-damage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn intent(i: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_767_225_600_000_000_000 + i as i64 * 1_000,
        symbol: ["BTCUSDT", "A\"B\\C"][(i % 2) as usize].parse().unwrap(),
        side: if i % 3 == 0 { Side::Sell } else { Side::Buy },
        price: 100.0 + i as f64 / 8.0,
        qty: 1.0 + (i % 5) as f64,
        stop_loss: 0.0,
        take_profit: if i % 2 == 0 { 0.0 } else { 200.0 },
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn config(dir: &Path) -> WalConfig {
    WalConfig::new(dir).segment_bytes(1 << 20).in_flight_batches(2).max_batch_bytes(64 << 10).max_in_doubt(1024).unpinned_writer()
}

/// Session 1: 300 intents left in doubt (every checkpoint has three parts), then QD1 appends with
/// outcomes and three-leg groups (one batch each) over several 1 MiB segments. Session 2: a new
/// segment (a three-part checkpoint) and 20 more QD1 batches.
fn pristine(dir: &Path) {
    let w = Wal::open(config(dir)).unwrap();
    let t: Vec<_> = (0..300).map(|i| w.append(&intent(i)).unwrap()).collect();
    for t in t {
        t.wait().unwrap();
    }
    let mut i = 300;
    while i < 900 {
        if i % 50 == 0 {
            let g: Vec<TradeIntent> = (0..3).map(|j| intent(i + j)).collect();
            let first = w.append_group(&g).unwrap().wait().unwrap();
            for j in 0..3 {
                w.mark_executed(first + j).unwrap().wait().unwrap();
            }
            i += 3;
        } else {
            let lsn = w.append(&intent(i)).unwrap().wait().unwrap();
            w.mark_executed(lsn).unwrap().wait().unwrap();
            i += 1;
        }
    }
    w.close().unwrap();
    let w = Wal::open(config(dir)).unwrap();
    for j in 0..20 {
        w.append(&intent(i + j)).unwrap().wait().unwrap();
    }
    w.close().unwrap();
}

/// Segment files by number.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let (_, no) = parse_segment_name(p.file_name()?.to_str()?)?;
            Some((no, p))
        })
        .collect();
    v.sort();
    v
}

/// What verify says: exit code, and the segment and offset it names (from the file name and
/// `offset N` in its report).
fn verify(dir: &Path) -> (i32, Option<(u64, u64)>, String) {
    let o = std::process::Command::new(tradewal_tests::tradewal_bin()).arg("verify").arg(dir).output().expect("run tradewal verify");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let place = (|| {
        let at = text.find("offset ")? + 7;
        let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
        let offset = digits.parse().ok()?;
        // `corruption in <file> (segment N)` or `corruption in segment N (no file)`.
        for pre in ["(segment ", "corruption in segment "] {
            if let Some(i) = text.find(pre) {
                let n: String = text[i + pre.len()..].chars().take_while(char::is_ascii_digit).collect();
                return Some((n.parse().ok()?, offset));
            }
        }
        let s = text.find("wal_")?;
        let e = s + text[s..].find(".log")? + 4;
        let (_, no) = parse_segment_name(&text[s..e])?;
        let at = text.find("offset ")? + 7;
        let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
        Some((no, digits.parse().ok()?))
    })();
    (o.status.code().unwrap_or(-1), place, text.trim().to_string())
}

type Damage = Box<dyn Fn(&Path, &[(u64, PathBuf)])>;

fn edit(p: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(p).unwrap();
    f(&mut b);
    std::fs::write(p, &b).unwrap();
}

#[test]
fn spec_classification_agrees_with_tradewal_verify_on_damage_cases() {
    let base = scratch("base");
    pristine(&base);
    let segs = segments(&base);
    let n = segs.len();
    assert!(n >= 5, "{n} segments");
    let layout = |i: usize| segment_layout(&std::fs::read(&segs[i].1).unwrap());
    let (mid, last, prev) = (1usize, n - 1, n - 2);
    let lay_mid = layout(mid);
    let lay_last = layout(last);
    let lay_prev = layout(prev);
    assert!(
        lay_mid.len() > 100 && lay_last.len() == 21 && lay_prev.len() > 10,
        "layout {} {} {}",
        lay_mid.len(),
        lay_last.len(),
        lay_prev.len()
    );
    let group_batch = lay_mid.iter().find(|b| b.frames.len() == 3 && b.frames.iter().all(|f| f.1 == 1)).expect("a group batch").clone();
    let outcome_frame = lay_mid[50].frames[0];
    assert_eq!(outcome_frame.1, 2, "batch 50 of segment 2 holds an outcome");
    let lbs: [usize; 3] = [lay_last[lay_last.len() - 1].offset, lay_last[lay_last.len() - 2].offset, lay_last[lay_last.len() - 3].offset];
    let lb = move |k: usize| lbs[k - 1];
    let last_b1 = lay_last[1].offset;
    let last_frame = lay_last[lay_last.len() - 1].frames[0].0;
    let group_leg1 = group_batch.frames[1].0;
    let prev_last = lay_prev[lay_prev.len() - 1].offset;
    let (mb1, mb5, mb11) = (lay_mid[1].offset, lay_mid[5].offset, lay_mid[11].offset);
    let other = scratch("other");
    pristine(&other);
    let foreign = segments(&other)[last].1.clone();
    let cases: Vec<(&str, Damage)> = vec![
        ("pristine", Box::new(|_, _| {})),
        ("bit flip in a middle segment's header", Box::new(move |_, s| edit(&s[mid].1, |b| b[40] ^= 1))),
        ("bit flip in the last segment's header checksum", Box::new(move |_, s| edit(&s[last].1, |b| b[88] ^= 0x80))),
        ("bit flip in an early batch (batch 1)", Box::new(move |_, s| edit(&s[mid].1, |b| b[mb1 + 64 + 30] ^= 0x10))),
        ("bit flip in the last batch", Box::new(move |_, s| edit(&s[last].1, |b| b[lb(1) + 64 + 30] ^= 0x10))),
        ("bit flip in the last but one batch (within K)", Box::new(move |_, s| edit(&s[last].1, |b| b[lb(2) + 70] ^= 4))),
        ("bit flip K batches from the end", Box::new(move |_, s| edit(&s[last].1, |b| b[lb(3) + 70] ^= 4))),
        ("bit flip in a checkpoint (batch 0, middle segment)", Box::new(move |_, s| edit(&s[mid].1, |b| b[4096 + 64 + 24 + 200] ^= 2))),
        ("zeroed sector in an early batch header", Box::new(move |_, s| edit(&s[mid].1, |b| b[mb5..mb5 + 512].fill(0)))),
        ("zeroed sector in the last batch", Box::new(move |_, s| edit(&s[last].1, |b| b[lb(1)..lb(1) + 512].fill(0)))),
        ("last batch zeroed (never written)", Box::new(move |_, s| edit(&s[last].1, |b| b[lb(1)..lb(1) + 4096].fill(0)))),
        ("last segment truncated after its last batch", Box::new(move |_, s| edit(&s[last].1, |b| b.truncate(lb(1) + 4096)))),
        ("garbage after the end", Box::new(move |_, s| edit(&s[last].1, |b| b[lb(1) + 4096 + 100] = 0x5a))),
        ("garbage far after the end", Box::new(move |_, s| edit(&s[last].1, |b| b[(1 << 20) - 1] = 1))),
        ("a missing middle segment", Box::new(move |_, s| std::fs::remove_file(&s[2].1).unwrap())),
        (
            "two segments swapped",
            Box::new(move |_, s| {
                let (a, b) = (std::fs::read(&s[2].1).unwrap(), std::fs::read(&s[3].1).unwrap());
                std::fs::write(&s[2].1, b).unwrap();
                std::fs::write(&s[3].1, a).unwrap();
            }),
        ),
        (
            "a foreign segment (another log's, same number)",
            Box::new(move |_, s| {
                std::fs::copy(&foreign, &s[last].1).unwrap();
            }),
        ),
        (
            "a torn multi-part checkpoint (the last segment's first write only, damaged)",
            Box::new(move |_, s| {
                edit(&s[last].1, |b| {
                    b[last_b1..].fill(0);
                    b[4096 + 64 + 24 + 3000] ^= 8;
                })
            }),
        ),
        ("a damaged group leg", Box::new(move |_, s| edit(&s[mid].1, |b| b[group_leg1 + 24 + 10] ^= 1))),
        (
            "a forged group leg (leg index 2 for 1, valid checksum)",
            Box::new(move |_, s| {
                let fp = group_leg1;
                edit(&s[mid].1, |b| {
                    b[fp + 24 + 44] = 2;
                    reseal_frame(b, fp);
                })
            }),
        ),
        (
            "a forged outcome naming an intent not in doubt (valid checksum)",
            Box::new(move |_, s| {
                let fp = outcome_frame.0;
                edit(&s[mid].1, |b| {
                    let l = u64::from_le_bytes(b[fp + 24..fp + 32].try_into().unwrap()) - 1;
                    b[fp + 24..fp + 32].copy_from_slice(&l.to_le_bytes());
                    reseal_frame(b, fp);
                })
            }),
        ),
        (
            "a forged body reserved byte (valid checksum)",
            Box::new(move |_, s| {
                let fp = outcome_frame.0;
                edit(&s[mid].1, |b| {
                    b[fp + 24 + 38] = 1;
                    reseal_frame(b, fp);
                })
            }),
        ),
        (
            "batch header reserved bytes with a valid checksum (middle)",
            Box::new(move |_, s| {
                edit(&s[mid].1, |b| {
                    b[mb11 + 50] = 1;
                    reseal_batch_header(b, mb11);
                })
            }),
        ),
        (
            "frame reserved bytes with a valid checksum (last batch)",
            Box::new(move |_, s| {
                let fp = last_frame;
                edit(&s[last].1, |b| {
                    b[fp + 14] = 1;
                    reseal_frame(b, fp);
                })
            }),
        ),
        ("a valid header over an all-zero batch 0 (last segment)", Box::new(move |_, s| edit(&s[last].1, |b| b[4096..].fill(0)))),
        (
            "an empty spare after the last segment",
            Box::new(move |d, s| {
                let name = s[last].1.file_name().unwrap().to_str().unwrap().to_string();
                let spare = format!("{}{:06}.log", &name[..20], s[last].0 + 1);
                std::fs::write(d.join(spare), vec![0u8; 1 << 20]).unwrap();
            }),
        ),
        (
            "a torn last batch of the last but one segment (later data follows)",
            Box::new(move |_, s| edit(&s[prev].1, |b| b[prev_last + 70] ^= 1)),
        ),
        ("a middle segment cut short", Box::new(move |_, s| edit(&s[mid].1, |b| b.truncate(512 << 10)))),
        (
            "a file that is not a segment name",
            Box::new(move |d, _| std::fs::write(d.join("wal_20260231_000000_000001.log"), b"x").unwrap()),
        ),
    ];
    let (mut agreed, mut disagreed) = (0, Vec::new());
    let (mut clean, mut torn, mut corrupt) = (0, 0, 0);
    let runs = cases.iter().flat_map(|c| [(c, true), (c, false)]);
    let mut n_runs = 0;
    for ((what, damage), manifest) in runs {
        n_runs += 1;
        let what = if manifest { what.to_string() } else { format!("{what} (no MANIFEST)") };
        let d = scratch("case");
        tradewal_tests::copy_dir(&base, &d);
        if !manifest {
            std::fs::remove_file(d.join("MANIFEST")).unwrap();
        }
        let s = segments(&d);
        damage(&d, &s);
        let spec = classify_dir(&d);
        let (code, place, text) = verify(&d);
        let ok = match &spec {
            SpecVerdict::Clean => code == 0 && !text.contains("torn tail"),
            SpecVerdict::TornTail { segment, offset } => code == 0 && text.contains("torn tail") && place == Some((*segment, *offset)),
            SpecVerdict::Corrupt { segment, offset, .. } => code == 1 && place == Some((*segment, *offset)),
        };
        match &spec {
            SpecVerdict::Clean => clean += 1,
            SpecVerdict::TornTail { .. } => torn += 1,
            SpecVerdict::Corrupt { .. } => corrupt += 1,
        }
        println!("{} {what}: spec {spec:?}; verify exit {code}, place {place:?}: {text}", if ok { "agree   " } else { "DISAGREE" });
        if ok {
            agreed += 1;
        } else {
            disagreed.push(format!("{what}: spec {spec:?}, verify exit {code} {place:?}: {text}"));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&other);
    println!(
        "spec damage: {} cases, each with and without MANIFEST: {n_runs} runs ({clean} clean, {torn} torn tail, {corrupt} corrupt by the spec), \
         {agreed} agree with tradewal verify",
        cases.len()
    );
    assert!(cases.len() >= 22);
    assert!(disagreed.is_empty(), "{} cases disagree:\n{}", disagreed.len(), disagreed.join("\n"));
}

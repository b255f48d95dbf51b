//! Runs the real `tradewal` binary on log directories built with the engine API, under
//! CARGO_TARGET_TMPDIR (a disk filesystem: O_DIRECT works there, unlike tmpfs /tmp).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};
use tradewal::{read_log, Lsn, Side, Status, Symbol, TradeIntent, Wal, WalConfig, WalError};
use tradewal_codec::export::RawLine;
use tradewal_codec::{IntentLine, IntentStatus, SegmentEnd, BLOCK_BYTES};

/// Deadline for lines from a running `export --follow`: a hang guard, not a performance figure.
const LINE_DEADLINE: Duration = Duration::from_secs(60);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tradewal"))
}

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

/// Every command's stderr is a pipe here: warnings must come without ANSI colour codes.
fn plain(o: Output) -> Output {
    assert!(!o.stderr.contains(&0x1b), "ANSI escape in stderr that is not a terminal: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn run(args: &[&str]) -> Output {
    plain(bin().args(args).output().expect("run tradewal"))
}

fn run_dir(cmd: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut c = bin();
    c.arg(cmd).arg(dir).args(extra);
    plain(c.output().expect("run tradewal"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

/// Small segments (rotation in a few hundred batches) and few in-doubt entries (small checkpoints).
fn config(dir: &Path) -> WalConfig {
    WalConfig::new(dir).segment_bytes(2 << 20).max_batch_bytes(256 << 10).max_in_doubt(4096).unpinned_writer()
}

/// Opens a log, or says why the environment cannot run this test (no O_DIRECT here).
fn open(dir: &Path) -> Option<Wal> {
    match Wal::open(config(dir)) {
        Ok(w) => Some(w),
        Err(WalError::Config(m)) => {
            tradewal_testkit::cannot_run("cli", "odirect", format!("cannot open a log in {}: {m}", dir.display()));
            None
        }
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn intent(i: u64) -> TradeIntent {
    let syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
    TradeIntent {
        ts_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000_003,
        symbol: Symbol::new(syms[(i % 3) as usize]).unwrap(),
        side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
        // Values with long binary expansions: the export must round-trip them bit-exactly.
        price: 43250.5 + i as f64 / 7.0,
        qty: 0.1 + (i % 13) as f64 * 0.3,
        stop_loss: if i % 5 == 0 { 0.0 } else { 42800.0 + 1.0 / (i as f64 + 3.0) },
        take_profit: if i % 5 == 0 { 0.0 } else { 44100.0 / 3.0 + i as f64 },
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

/// What a test appended: intent and status by LSN.
type Expected = BTreeMap<Lsn, (TradeIntent, IntentStatus)>;

/// Appends `n` intents (each waited: one batch each, QD1), executes every third, aborts every
/// seventh of the rest, leaves the others in doubt.
fn append_n(wal: &Wal, first: u64, n: u64, expected: &mut Expected) {
    for i in first..first + n {
        let it = intent(i);
        let lsn = wal.append(&it).unwrap().wait().unwrap();
        let st = if i % 3 == 0 {
            wal.mark_executed(lsn).unwrap().wait().unwrap();
            IntentStatus::Executed
        } else if i % 7 == 0 {
            wal.mark_aborted(lsn).unwrap().wait().unwrap();
            IntentStatus::Aborted
        } else {
            IntentStatus::Pending
        };
        expected.insert(lsn, (it, st));
    }
}

/// A closed log with `n` intents.
fn build_log(dir: &Path, n: u64) -> Option<Expected> {
    let wal = open(dir)?;
    let mut exp = Expected::new();
    append_n(&wal, 0, n, &mut exp);
    wal.close().unwrap();
    Some(exp)
}

fn parse_intents(text: &str) -> Vec<IntentLine> {
    text.lines().map(|l| serde_json::from_str::<IntentLine>(l).unwrap_or_else(|e| panic!("line {l:?}: {e}"))).collect()
}

use tradewal_testkit::intents::same_intent as same_bits;

fn check_lines(lines: &[IntentLine], exp: &Expected) {
    let want: Vec<_> = exp.iter().collect();
    assert_eq!(lines.len(), want.len(), "one line per intent");
    for (l, (lsn, (it, st))) in lines.iter().zip(want) {
        assert_eq!(l.lsn, *lsn, "LSN order");
        assert!(same_bits(&l.intent(), it), "values bit-exact at LSN {lsn}: {l:?} vs {it:?}");
        match (l.status(), st) {
            // mark_executed is Filled with the intent's whole quantity: `exec` and the fill's keys.
            (IntentStatus::Reported(o), IntentStatus::Executed) => {
                assert!(l.exec && o.status == Status::Filled { qty: it.qty, avg_price: 0.0 }, "status at LSN {lsn}: {l:?}")
            }
            (got, want) => assert_eq!(got, *want, "status at LSN {lsn}"),
        }
    }
}

/// Every file in `dir` with its length, mtime and contents.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, SystemTime, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), (m.len(), m.modified().unwrap(), bytes))
        })
        .collect()
}

fn one_line_error(o: &Output, code: i32, what: &str) {
    assert_eq!(o.status.code(), Some(code), "{what}: exit code; stderr {}", stderr(o));
    let e = stderr(o);
    assert_eq!(e.lines().count(), 1, "{what}: exactly one line on stderr, got {e:?}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{what}: {e}");
}

#[test]
fn demo_completes_and_leaves_a_valid_log() {
    let base = tmpdir("demo");
    let dir = base.join("demo");
    let d = dir.to_str().unwrap();
    let o = run(&["demo", "--dir", d, "--intents", "3000", "--producers", "2"]);
    let out = stdout(&o);
    if o.status.code() == Some(2) && stderr(&o).contains("O_DIRECT") {
        return tradewal_testkit::cannot_run("demo_completes", "odirect", stderr(&o));
    }
    assert_eq!(o.status.code(), Some(0), "demo failed: {}\n{out}", stderr(&o));
    let in_doubt: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("in doubt after the crash: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no in-doubt line in {out}"));
    assert!(out.contains("p99.9") && out.contains("device floor") || out.contains("floor not measured"), "{out}");
    assert!(dir.join("latency_us.hgrm").exists() && dir.join("export.jsonl").exists());
    let hgrm = std::fs::read_to_string(dir.join("latency_us.hgrm")).unwrap();
    assert!(hgrm.lines().next().unwrap().split_whitespace().eq(["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]));
    let export = std::fs::read_to_string(dir.join("export.jsonl")).unwrap();
    assert_eq!(parse_intents(&export).len(), 3000);

    let v = run_dir("verify", &dir, &[]);
    assert_eq!(v.status.code(), Some(0), "verify: {}", stderr(&v));
    let r = run_dir("recover", &dir, &[]);
    assert_eq!(r.status.code(), Some(0));
    assert_eq!(parse_intents(&stdout(&r)).len(), in_doubt, "recover lists what the demo printed");

    // A second run starts clean in the same directory.
    let o2 = run(&["demo", "--dir", d, "--intents", "200", "--producers", "2"]);
    assert_eq!(o2.status.code(), Some(0), "second demo: {}", stderr(&o2));
    assert_eq!(parse_intents(&std::fs::read_to_string(dir.join("export.jsonl")).unwrap()).len(), 200);

    // A directory that is not a log is never removed.
    let other = base.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let o3 = run(&["demo", "--dir", other.to_str().unwrap(), "--intents", "10"]);
    one_line_error(&o3, 2, "demo on a foreign dir");
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn commands_on_a_clean_log() {
    let dir = tmpdir("clean");
    let Some(exp) = build_log(&dir, 700) else { return };
    let before = snapshot(&dir);

    let i = run_dir("inspect", &dir, &[]);
    assert_eq!(i.status.code(), Some(0), "{}", stderr(&i));
    assert!(stdout(&i).contains("torn tail      none"), "{}", stdout(&i));
    let ij = run_dir("inspect", &dir, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&ij)).expect("inspect --json is JSON");
    let pending = exp.values().filter(|(_, s)| *s == IntentStatus::Pending).count() as u64;
    let executed = exp.values().filter(|(_, s)| *s == IntentStatus::Executed).count() as u64;
    let aborted = exp.values().filter(|(_, s)| *s == IntentStatus::Aborted).count() as u64;
    assert_eq!(v["counts"]["intents"], 700);
    assert_eq!(v["counts"]["executed"], executed);
    assert_eq!(v["counts"]["aborted"], aborted);
    assert_eq!(v["in_doubt"], pending);
    assert!(v["torn_tail"].is_null());
    // The writer closed cleanly: its manifest covers every record written.
    let last = v["last_lsn"].as_u64().unwrap();
    assert_eq!(v["manifest_lsn"].as_u64(), Some(last), "{v}");
    assert!(stdout(&i).contains(&format!("manifest       acknowledged through LSN {last}")), "{}", stdout(&i));
    // The storage stack as the engine routes it (the table's rows are unit-tested in the engine).
    let fstype = std::process::Command::new("findmnt").args(["-n", "-o", "FSTYPE", "-T"]).arg(&dir).output().unwrap();
    assert_eq!(v["storage"]["fs"], String::from_utf8_lossy(&fstype.stdout).trim(), "{v}");
    assert!(v["storage"]["write_path"].is_string(), "{v}");
    assert!(stdout(&i).contains("storage        "), "{}", stdout(&i));
    let segs: Vec<&serde_json::Value> = v["sessions"].as_array().unwrap().iter().flat_map(|s| s["segments"].as_array().unwrap()).collect();
    assert!(segs.len() >= 2, "small segments rotated: {v}");
    // The next open reads records from the newest segment that holds data.
    let newest_data = segs.iter().filter(|s| s["first_lsn"].is_u64()).map(|s| s["segment"].as_u64().unwrap()).max();
    assert_eq!(v["open_reads_from_segment"].as_u64(), newest_data, "{v}");
    assert!(stdout(&i).contains(&format!("open reads     from segment {}", newest_data.unwrap())), "{}", stdout(&i));
    assert!(segs.iter().all(|s| s["end"] == "clean" || s["end"] == "empty"), "{v}");

    let vf = run_dir("verify", &dir, &[]);
    assert_eq!(vf.status.code(), Some(0), "{}", stderr(&vf));
    assert!(stdout(&vf).starts_with("ok:"));
    assert!(!stdout(&vf).contains("torn"));

    let ex = run_dir("export", &dir, &[]);
    assert_eq!(ex.status.code(), Some(0), "{}", stderr(&ex));
    check_lines(&parse_intents(&stdout(&ex)), &exp);

    // -o FILE and --format jsonl give the same bytes.
    let file = dir.parent().unwrap().join(format!("{}.jsonl", dir.file_name().unwrap().to_string_lossy()));
    let exf = run_dir("export", &dir, &["--format", "jsonl", "-o", file.to_str().unwrap()]);
    assert_eq!(exf.status.code(), Some(0));
    assert_eq!(std::fs::read(&file).unwrap(), ex.stdout);

    // LSN range filter.
    let lsns: Vec<Lsn> = exp.keys().copied().collect();
    let (from, to) = (lsns[100], lsns[199]);
    let exr = run_dir("export", &dir, &["--from-lsn", &from.to_string(), "--to-lsn", &to.to_string()]);
    let part: Expected = exp.range(from..=to).map(|(k, v)| (*k, *v)).collect();
    check_lines(&parse_intents(&stdout(&exr)), &part);

    // Raw: every record, with its kind.
    let raw = run_dir("export", &dir, &["--raw"]);
    let raw_lines: Vec<RawLine> = stdout(&raw).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let total = v["counts"]["total"].as_u64().unwrap();
    assert_eq!(raw_lines.len() as u64, total);
    let outcomes = raw_lines.iter().filter(|l| matches!(l, RawLine::Outcome { .. })).count() as u64;
    assert_eq!(outcomes, executed + aborted);
    let raw_r = run_dir("export", &dir, &["--raw", "--from-lsn", &from.to_string(), "--to-lsn", &to.to_string()]);
    assert_eq!(stdout(&raw_r).lines().count() as u64, to - from + 1);

    let rc = run_dir("recover", &dir, &[]);
    assert_eq!(rc.status.code(), Some(0));
    let pend: Expected = exp.iter().filter(|(_, (_, s))| *s == IntentStatus::Pending).map(|(k, v)| (*k, *v)).collect();
    check_lines(&parse_intents(&stdout(&rc)), &pend);

    assert_eq!(snapshot(&dir), before, "read-only commands changed a file");
}

/// Offsets of every record in the last data segment, and that segment's file.
fn frames_of_last_segment(dir: &Path) -> (PathBuf, Vec<(Lsn, u64)>, u64) {
    let mut frames = Vec::new();
    let report = read_log(dir, |f, _| frames.push((f.lsn, f.offset))).unwrap();
    let last = report.state.segments.iter().rev().find(|s| !matches!(s.end, SegmentEnd::Empty)).unwrap();
    let file = report.files.iter().find(|(n, _)| *n == last.segment_no).unwrap().1.clone();
    let first = last.first_lsn.unwrap();
    let end = match last.end {
        SegmentEnd::Clean { end_offset, .. } => end_offset,
        ref e => panic!("expected a clean segment, got {e:?}"),
    };
    (dir.join(file), frames.into_iter().filter(|(l, _)| *l >= first).collect(), end)
}

#[test]
fn torn_tail_is_reported_not_corruption() {
    let dir = tmpdir("torn");
    let Some(wal) = open(&dir) else { return };
    let mut exp = Expected::new();
    append_n(&wal, 0, 40, &mut exp);
    // One more intent, waited, then a crash-like drop.
    let last_intent = intent(1000);
    let last_lsn = wal.append(&last_intent).unwrap().wait().unwrap();
    drop(wal);
    let (file, frames, end) = frames_of_last_segment(&dir);
    let (lsn, off) = *frames.last().unwrap();
    assert_eq!(lsn, last_lsn);
    // Garbage over the sectors of the last batch (it holds only that record: QD1 append).
    let block = off - off % BLOCK_BYTES as u64;
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&vec![0xA5u8; (end - block) as usize], block).unwrap();
    f.sync_all().unwrap();
    drop(f);
    // That record was acknowledged and the manifest says so (recovery would rightly refuse);
    // without the manifest the damage is what a crash mid-write leaves: a torn tail.
    std::fs::remove_file(dir.join("MANIFEST")).unwrap();
    let before = snapshot(&dir);

    let v = run_dir("verify", &dir, &[]);
    assert_eq!(v.status.code(), Some(0), "a torn tail is not corruption: {}", stderr(&v));
    let out = stdout(&v);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(out.contains("torn tail") && out.contains(&name) && out.contains(&format!("offset {block}")), "{out}");

    let i = run_dir("inspect", &dir, &["--json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&i)).unwrap();
    assert_eq!(j["torn_tail"]["offset"], block);
    assert_eq!(j["torn_tail"]["lsn"], last_lsn);

    // The torn record is not exported; everything before is.
    let ex = run_dir("export", &dir, &[]);
    assert_eq!(ex.status.code(), Some(0));
    check_lines(&parse_intents(&stdout(&ex)), &exp);
    let rc = run_dir("recover", &dir, &[]);
    assert_eq!(rc.status.code(), Some(0));
    assert!(parse_intents(&stdout(&rc)).iter().all(|l| l.lsn != last_lsn));
    assert_eq!(snapshot(&dir), before, "read-only commands must not truncate the torn tail");
}

#[test]
fn flipped_byte_in_an_early_batch_is_corruption() {
    let dir = tmpdir("corrupt");
    let Some(exp) = build_log(&dir, 30) else { return };
    let mut frames = Vec::new();
    let report = read_log(&dir, |f, _| frames.push((f.lsn, f.offset))).unwrap();
    let (seg_no, name) = report.files[0].clone();
    // An intent early in the first segment: well over K = 2 valid batches follow it.
    let target = *exp.keys().nth(3).unwrap();
    let off = frames.iter().find(|(l, _)| *l == target).unwrap().1;
    let batch = off - off % BLOCK_BYTES as u64;
    let later = frames.iter().filter(|(_, o)| *o > batch + BLOCK_BYTES as u64).count();
    assert!(later > 2, "more than K batches after the damaged one");
    let path = dir.join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[off as usize + 30] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let v = run_dir("verify", &dir, &[]);
    one_line_error(&v, 1, "verify on corruption");
    let e = stderr(&v);
    assert!(e.contains(&name) && e.contains(&format!("offset {batch}")) && e.contains("expected LSN"), "{e}");
    assert!(e.contains(&format!("segment {seg_no}")), "{e}");
    for cmd in ["inspect", "export", "recover"] {
        one_line_error(&run_dir(cmd, &dir, &[]), 2, cmd);
    }
}

#[test]
fn missing_and_foreign_directories_are_usage_errors() {
    let base = tmpdir("foreign");
    let missing = base.join("nope");
    let foreign = base.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("a.txt"), b"x").unwrap();
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for dir in [&missing, &foreign, &empty] {
        for cmd in ["inspect", "verify", "export", "recover"] {
            one_line_error(&run_dir(cmd, dir, &[]), 2, &format!("{cmd} {}", dir.display()));
        }
    }
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    one_line_error(&run(&["verify"]), 2, "missing argument");
    one_line_error(&run(&["frobnicate"]), 2, "unknown command");
    one_line_error(&run(&["export", "x", "--format", "csv"]), 2, "unknown format");
}

#[test]
fn read_only_commands_work_while_a_writer_holds_the_lock() {
    let dir = tmpdir("live");
    let Some(wal) = open(&dir) else { return };
    let mut exp = Expected::new();
    append_n(&wal, 0, 50, &mut exp);
    for cmd in ["inspect", "verify", "recover"] {
        let o = run_dir(cmd, &dir, &[]);
        assert_eq!(o.status.code(), Some(0), "{cmd} on a live log: {}", stderr(&o));
    }
    let ex = run_dir("export", &dir, &[]);
    assert_eq!(ex.status.code(), Some(0));
    // Every waited append is durable, so a live read sees all of it.
    check_lines(&parse_intents(&stdout(&ex)), &exp);
    // The writer still holds its lock and keeps working.
    assert!(matches!(Wal::open(config(&dir)), Err(WalError::Locked { .. })));
    append_n(&wal, 50, 5, &mut exp);
    wal.close().unwrap();
    check_lines(&parse_intents(&stdout(&run_dir("export", &dir, &[]))), &exp);
}

#[test]
fn closed_pipe_ends_export_quietly() {
    let dir = tmpdir("pipe");
    let Some(_) = build_log(&dir, 1500) else { return };
    let mut child = bin().arg("export").arg(&dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    serde_json::from_str::<IntentLine>(&first).unwrap();
    drop(out);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "stderr {err}");
    assert!(err.is_empty(), "no noise on a closed pipe: {err}");
}

/// Reads lines of a child's stdout on a thread.
fn line_reader(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for l in out.lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(LINE_DEADLINE).unwrap_or_else(|_| panic!("no line for {what} within {LINE_DEADLINE:?}"))
}

#[test]
fn follow_streams_records_appended_after_it_started() {
    let dir = tmpdir("follow");
    let Some(exp0) = build_log(&dir, 20) else { return };
    let mut child = bin().args(["export", "--follow"]).arg(&dir).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let rx = line_reader(&mut child);
    let mut initial = Vec::new();
    for _ in 0..exp0.len() {
        initial.push(serde_json::from_str::<IntentLine>(&next_line(&rx, "initial export")).unwrap());
    }
    check_lines(&initial, &exp0);

    // A new session appends while the follower runs: enough QD1 batches to rotate segments.
    let wal = open(&dir).unwrap();
    let first_new = 10_000;
    let n = 1200;
    let mut lsns = Vec::new();
    for i in first_new..first_new + n {
        lsns.push((wal.append(&intent(i)).unwrap().wait().unwrap(), intent(i)));
    }
    let mut seen = 0;
    while seen < lsns.len() {
        let l = next_line(&rx, "followed intent");
        let line: IntentLine = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l}: {e}"));
        let (lsn, it) = &lsns[seen];
        assert_eq!(line.lsn, *lsn, "followed lines in LSN order");
        assert!(same_bits(&line.intent(), it));
        assert_eq!(line.status(), IntentStatus::Pending);
        seen += 1;
    }
    // An outcome of an intent already emitted arrives as a raw outcome line.
    let target = lsns[7].0;
    let out_lsn = wal.mark_executed(target).unwrap().wait().unwrap();
    let l = next_line(&rx, "outcome line");
    let raw: RawLine = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l}: {e}"));
    match raw {
        RawLine::Outcome { lsn, intent_lsn, .. } => {
            assert_eq!((lsn, intent_lsn), (out_lsn, target));
            assert!(l.contains("\"executed\""), "{l}");
        }
        other => panic!("expected an outcome line, got {other:?}"),
    }
    // An intent and its outcome in the same poll fold into one intent line, or arrive as two
    // lines when the poll fell between them: either way the consumer learns both.
    let it = intent(99_999);
    let lsn = wal.append(&it).unwrap().wait().unwrap();
    wal.mark_aborted(lsn).unwrap().wait().unwrap();
    let first: IntentLine = serde_json::from_str(&next_line(&rx, "last intent")).unwrap();
    assert_eq!(first.lsn, lsn);
    assert!(same_bits(&first.intent(), &it));
    if first.status() != IntentStatus::Aborted {
        assert_eq!(first.status(), IntentStatus::Pending);
        let l = next_line(&rx, "its outcome");
        assert!(matches!(serde_json::from_str::<RawLine>(&l).unwrap(), RawLine::Outcome { intent_lsn, .. } if intent_lsn == lsn), "{l}");
    }
    wal.close().unwrap();
    child.kill().unwrap();
    // The follower crossed segment boundaries of the live session.
    let report = read_log(&dir, |_, _| {}).unwrap();
    let data = report.state.segments.iter().filter(|s| !matches!(s.end, SegmentEnd::Empty)).count();
    assert!(data >= 3, "expected rotations during the follow, got {data} data segments");
    let _ = child.wait();
    let _ = std::io::stderr().flush();
}

/// Appends `n` intents, each marked executed, in chunks (keeps the in-doubt set small).
fn fill_executed(wal: &Wal, from: u64, n: u64) {
    for c in (from..from + n).step_by(256) {
        let t: Vec<_> = (c..(c + 256).min(from + n)).map(|i| wal.append(&intent(i)).unwrap()).collect();
        let l: Vec<_> = t.into_iter().map(|t| t.wait().unwrap()).collect();
        let m: Vec<_> = l.into_iter().map(|l| wal.mark_executed(l).unwrap()).collect();
        for m in m {
            m.wait().unwrap();
        }
    }
}

/// Runs a command that must end by itself (a bounded `export --follow`); kills it and fails the test
/// if it is still running after a generous deadline (a hang guard, not a performance figure).
fn bounded(cmd: &mut std::process::Command) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("command still running after 60 s; stdout {:?}, stderr {:?}", stdout(&o), stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn follow_exits_3_on_a_gap_and_a_named_reader_resumes() {
    let dir = tmpdir("follow-gap");
    let cfg = || config(&dir).retention(tradewal::Retention::Delete);
    let Ok(wal) = Wal::open(cfg()) else { panic!("open") };
    // Retention deletes the oldest segments; an unnamed follower from LSN 1 gets the gap: exit 3.
    fill_executed(&wal, 0, 30_000);
    let o = bounded(bin().args(["export", "--follow", "--from-lsn", "1"]).arg(&dir));
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("LSN 1 is gone") && err.contains("now starts at LSN"), "{err}");
    // A named reader from where the log now starts (the writer is idle, so that stays put).
    let m = tradewal::read_log(&dir, |_, _| {}).unwrap().state.first_lsn.unwrap();
    assert!(m > 1, "retention removed the first segment");
    let to = (m + 2).to_string();
    let o =
        bounded(bin().args(["export", "--follow", "--raw", "--name", "kafka", "--from-lsn", &m.to_string(), "--to-lsn", &to]).arg(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 3, "LSNs {m}..={}: {}", m + 2, stdout(&o));
    // Many more rotations: retention must keep what the named reader still needs (from m + 3).
    fill_executed(&wal, 100_000, 30_000);
    let to = (m + 5).to_string();
    let o = bounded(bin().args(["export", "--follow", "--raw", "--name", "kafka", "--to-lsn", &to]).arg(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    let lsns: Vec<u64> =
        stdout(&o).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"].as_u64().unwrap()).collect();
    assert_eq!(lsns, vec![m + 3, m + 4, m + 5], "resumed after the committed cursor, its segment kept");
    let o = run_dir("readers", &dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("kafka committed {} lag", m + 5)), "{}", stdout(&o));
    let o = run_dir("readers", &dir, &["--drop", "kafka"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tradewal::list_readers(&dir).unwrap().is_empty());
    let o = run_dir("readers", &dir, &["--drop", "kafka"]);
    assert_eq!(o.status.code(), Some(2), "dropping an unknown reader is an error");
    wal.close().unwrap();
}

#[test]
fn output_inside_the_log_directory_is_refused() {
    let dir = tmpdir("out-in-log");
    let Some(_) = build_log(&dir, 20) else { return };
    let seg = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "log")).unwrap();
    let before = std::fs::read(&seg).unwrap();
    for target in [seg.clone(), dir.join("new.jsonl"), dir.join(".").join("x.jsonl")] {
        let o = bin().arg("export").arg(&dir).arg("-o").arg(&target).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}: {}", target.display(), stderr(&o));
        assert!(stderr(&o).contains("inside the log directory"), "{}", stderr(&o));
    }
    assert!(std::fs::read(&seg).unwrap() == before, "the segment is untouched");
    assert!(!dir.join("new.jsonl").exists());
    let out = dir.parent().unwrap().join("out-in-log.jsonl");
    let o = bin().arg("export").arg(&dir).arg("-o").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 20);
    let _ = std::fs::remove_file(&out);
}

/// `tradewal bench` runs the separate `tradewal-bench` binary beside it (the CLI does not link the
/// benchmark's peers), and says how to build it when it is missing.
#[test]
fn bench_runs_the_bench_binary_or_says_how_to_build_it() {
    let beside = PathBuf::from(env!("CARGO_BIN_EXE_tradewal")).with_file_name("tradewal-bench");
    if beside.exists() {
        let o = bin().args(["bench", "--help"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("usage: tradewal-bench"), "{}", stdout(&o));
    }
    // A copy of the CLI alone in a directory: no bench binary beside it.
    let alone = tmpdir("bench-alone");
    let exe = alone.join("tradewal");
    std::fs::copy(env!("CARGO_BIN_EXE_tradewal"), &exe).unwrap();
    let o = std::process::Command::new(&exe).args(["bench", "--quick"]).output().unwrap();
    one_line_error(&o, 2, "bench without its binary");
    assert!(stderr(&o).contains("cargo build --release -p tradewal-bench"), "{}", stderr(&o));
}

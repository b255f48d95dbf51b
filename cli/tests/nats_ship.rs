//! `tradewal ship` and `tradewal recover --nats` against real nats-server processes (started here
//! on 127.0.0.1 with free ports, stores in the test's directory, stopped at the end): a 200 000-
//! record log shipped once and byte-equal to `export --raw`; the shipper killed with SIGKILL at
//! random moments while a writer appends; a three-server cluster with an R3 stream losing one
//! server mid-ship; `recover --nats` equal to `recover DIR` after the demo's simulated crash;
//! the error cases. A machine without nats-server fails these tests (with the install command).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tradewal::{Side, Symbol, TradeIntent, Wal, WalConfig};
use tradewal_testkit::nats::{self, NatsServer};

const BIN: &str = env!("CARGO_BIN_EXE_tradewal");

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nats-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// nats-server must be installed: `None` (the caller returns) only when TRADEWAL_ALLOW_SKIP=nats.
fn server_binary(test: &str) -> Option<PathBuf> {
    tradewal_testkit::require(test, "nats", nats::binary())
}

fn tw(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running tradewal")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn intent(i: u64) -> TradeIntent {
    TradeIntent {
        ts_ns: 1_700_000_000_000_000_000 + i as i64,
        symbol: Symbol::new(["BTCUSDT", "ETHUSDT", "SOLUSDT"][(i % 3) as usize]).unwrap(),
        side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
        price: 100.0 + i as f64 / 7.0,
        qty: 0.25 + (i % 5) as f64,
        stop_loss: 0.0,
        take_profit: 101.5,
        cl_ord_id: None,
        tag: None,
        group: None,
    }
}

fn config(dir: &Path) -> WalConfig {
    WalConfig::new(dir).unpinned_writer()
}

/// Appends `groups` groups of `per` intents, each then marked executed (every 7th left in doubt),
/// pipelined; returns the last LSN appended.
fn append_groups(wal: &Wal, first: u64, groups: u64, per: u64) -> u64 {
    let mut last = 0;
    for g in 0..groups {
        let base = first + g * per;
        let ts: Vec<_> = (0..per).map(|k| wal.append(&intent(base + k)).unwrap()).collect();
        let ls: Vec<_> = ts.into_iter().map(|t| t.wait().unwrap()).collect();
        let os: Vec<_> =
            ls.iter().enumerate().filter(|(k, _)| (base + *k as u64) % 7 != 0).map(|(_, l)| wal.mark_executed(*l).unwrap()).collect();
        for o in os {
            last = o.wait().unwrap();
        }
        last = last.max(*ls.last().unwrap());
    }
    last
}

/// The log's id, from `inspect --json`.
fn log_id(dir: &Path) -> String {
    let out = tw(&["inspect", "--json", dir.to_str().unwrap()]);
    assert!(out.status.success(), "inspect: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["log_id"].as_str().expect("inspect --json prints log_id").to_string()
}

/// `export --raw` without checkpoints: what the stream must hold, line for line.
fn shippable_lines(dir: &Path) -> Vec<String> {
    let out = tw(&["export", "--raw", dir.to_str().unwrap()]);
    assert!(out.status.success(), "export --raw: {}", text(&out.stderr));
    text(&out.stdout).lines().filter(|l| !l.starts_with("{\"kind\":\"checkpoint\"")).map(str::to_string).collect()
}

/// The stream's messages for the log (checked by `read_stream` for order, duplicates and gaps).
fn stream_lines(url: &str, stream: &str, log: &str) -> Vec<String> {
    let id = u64::from_str_radix(log, 16).unwrap();
    let recs = tradewal_ship::read_stream(url, stream, tradewal_ship::DEFAULT_PREFIX, id)
        .unwrap_or_else(|e| panic!("reading the stream back: {e}"));
    recs.iter().map(|r| text(&r.payload)).collect()
}

fn assert_same(stream: &[String], log: &[String]) {
    assert_eq!(stream.len(), log.len(), "the stream holds {} messages for {} shippable records", stream.len(), log.len());
    for (i, (s, l)) in stream.iter().zip(log).enumerate() {
        assert_eq!(s, l, "message {i} differs from the export line");
    }
}

fn ship_once(dir: &Path, url: &str, stream: &str, extra: &[&str]) -> Output {
    let mut args = vec!["ship", dir.to_str().unwrap(), "--nats", url, "--stream", stream, "--once"];
    args.extend_from_slice(extra);
    tw(&args)
}

fn spawn_shipper(dir: &Path, url: &str, stream: &str, extra: &[&str], stderr: &Path) -> Child {
    let err = std::fs::File::create(stderr).unwrap();
    Command::new(BIN)
        .args(["ship", dir.to_str().unwrap(), "--nats", url, "--stream", stream])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawning tradewal ship")
}

/// The shipper's committed cursor (`tradewal::list_readers`), 0 if none.
fn cursor(dir: &Path, name: &str) -> u64 {
    tradewal::list_readers(dir).unwrap().into_iter().find(|c| c.name == name).map_or(0, |c| c.committed)
}

#[test]
fn a_200k_record_log_lands_once_in_order_byte_equal_to_export_raw() {
    let Some(_) = server_binary("a_200k_record_log_lands_once") else { return };
    let root = scratch("200k");
    let server = NatsServer::start(&root).unwrap();
    let dir = root.join("log");
    let wal = Wal::open(config(&dir)).unwrap();
    // 100 000 intents and their outcomes (every 7th stays in doubt): 185 715 records.
    append_groups(&wal, 0, 100, 1000);
    for i in 0..14_285u64 {
        let t = wal.append(&intent(1_000_000 + i)).unwrap();
        wal.mark_aborted(t.wait().unwrap()).unwrap().wait().unwrap();
    }
    wal.close().unwrap();
    let lines = shippable_lines(&dir);
    assert!(lines.len() >= 200_000, "{} records", lines.len());
    let started = Instant::now();
    let out = ship_once(&dir, &server.url(), "TW", &[]);
    let took = started.elapsed();
    assert!(out.status.success(), "ship: {}", text(&out.stderr));
    println!("shipped {} records in {took:?} ({:.0} records/s, one local server)", lines.len(), lines.len() as f64 / took.as_secs_f64());
    let log = log_id(&dir);
    assert_same(&stream_lines(&server.url(), "TW", &log), &lines);
    // Again: nothing new is published (the cursor and the stream's last message agree).
    let again = ship_once(&dir, &server.url(), "TW", &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("(0 messages acknowledged"), "{}", text(&again.stderr));
    // Without the cursor the stream's last message says where to resume: still no duplicate.
    let drop = tw(&["readers", dir.to_str().unwrap(), "--drop", "ship-TW"]);
    assert!(drop.status.success(), "{}", text(&drop.stderr));
    let third = ship_once(&dir, &server.url(), "TW", &[]);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert!(text(&third.stderr).contains("(0 messages acknowledged"), "{}", text(&third.stderr));
    assert_same(&stream_lines(&server.url(), "TW", &log), &lines);
}

/// A small deterministic generator for the kill moments.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A writer appending until `stop`, about 20 000 records/s.
fn writer(wal: &Wal, stop: &AtomicBool, last: &AtomicU64) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        last.store(append_groups(wal, i, 1, 200), Ordering::Relaxed);
        i += 200;
        std::thread::sleep(Duration::from_millis(15));
    }
}

#[test]
fn kill_9_of_the_shipper_at_random_moments_loses_and_duplicates_nothing() {
    let Some(_) = server_binary("kill_9_of_the_shipper") else { return };
    let root = scratch("kill9");
    let server = NatsServer::start(&root).unwrap();
    let dir = root.join("log");
    let wal = Wal::open(config(&dir)).unwrap();
    let (stop, last) = (AtomicBool::new(false), AtomicU64::new(0));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let rounds = 24;
    let mut progressed = 0;
    std::thread::scope(|s| {
        s.spawn(|| writer(&wal, &stop, &last));
        let mut before = 0;
        for round in 0..rounds {
            let mut child = spawn_shipper(&dir, &server.url(), "TW", &[], &root.join(format!("ship{round}.err")));
            std::thread::sleep(Duration::from_millis(40 + next(&mut seed) % 400));
            child.kill().unwrap();
            child.wait().unwrap();
            let c = cursor(&dir, "ship-TW");
            progressed += usize::from(c > before);
            before = c;
        }
        stop.store(true, Ordering::Relaxed);
    });
    wal.close().unwrap();
    assert!(progressed >= rounds / 2, "the shipper made progress in only {progressed} of {rounds} rounds");
    let out = ship_once(&dir, &server.url(), "TW", &[]);
    assert!(out.status.success(), "final ship: {}", text(&out.stderr));
    let lines = shippable_lines(&dir);
    println!("{rounds} kill -9 rounds ({progressed} with progress), {} records, last LSN {}", lines.len(), last.load(Ordering::Relaxed));
    assert_same(&stream_lines(&server.url(), "TW", &log_id(&dir)), &lines);
}

#[test]
fn an_r3_stream_survives_losing_a_server_mid_ship() {
    let Some(_) = server_binary("an_r3_stream_survives_losing_a_server") else { return };
    let root = scratch("r3");
    let mut servers = NatsServer::cluster(&root).unwrap();
    let dir = root.join("log");
    let wal = Wal::open(config(&dir)).unwrap();
    let err = root.join("ship.err");
    // Connected to n1 only: the client learns n2 and n3 from the cluster and moves there.
    let mut child = spawn_shipper(&dir, &servers[0].url(), "TW3", &["--replicas", "3"], &err);
    let (stop, last) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| writer(&wal, &stop, &last));
        let wait_cursor = |min: u64| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while cursor(&dir, "ship-TW3") < min {
                assert!(Instant::now() < deadline, "cursor stuck below {min}: {}", std::fs::read_to_string(&err).unwrap_or_default());
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_cursor(2_000);
        servers[0].kill();
        let at_kill = cursor(&dir, "ship-TW3");
        std::thread::sleep(Duration::from_secs(2));
        servers[0].restart().unwrap();
        wait_cursor(at_kill + 5_000);
        stop.store(true, Ordering::Relaxed);
    });
    wal.close().unwrap();
    let lines = shippable_lines(&dir);
    let final_lsn = tradewal::Follower::open(&dir, 1).unwrap().acknowledged().unwrap_or(0).max(last.load(Ordering::Relaxed));
    let deadline = Instant::now() + Duration::from_secs(60);
    while cursor(&dir, "ship-TW3") < final_lsn {
        assert!(Instant::now() < deadline, "the shipper did not catch up: {}", std::fs::read_to_string(&err).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    println!("shipper's stderr:\n{stderr}");
    assert!(stderr.contains("disconnected"), "the shipper did not report losing its server: {stderr}");
    // Read back through another server of the cluster.
    assert_same(&stream_lines(&servers[1].url(), "TW3", &log_id(&dir)), &lines);
}

#[test]
fn recover_from_the_stream_equals_recover_from_the_directory_after_a_crash() {
    let Some(_) = server_binary("recover_from_the_stream") else { return };
    let root = scratch("recover");
    let server = NatsServer::start(&root).unwrap();
    let dir = root.join("demo");
    // The demo ends with a simulated crash (appends in flight when the process "dies") and a reopen.
    let demo = tw(&["demo", "--dir", dir.to_str().unwrap(), "--intents", "20000"]);
    assert!(demo.status.success(), "demo: {}", text(&demo.stderr));
    let out = ship_once(&dir, &server.url(), "TW", &[]);
    assert!(out.status.success(), "ship: {}", text(&out.stderr));
    let local = tw(&["recover", dir.to_str().unwrap()]);
    assert!(local.status.success());
    let remote = tw(&["recover", "--nats", &server.url(), "--stream", "TW", "--log", &log_id(&dir)]);
    assert!(remote.status.success(), "recover --nats: {}", text(&remote.stderr));
    let n = text(&local.stdout).lines().count();
    assert!(n > 0, "the demo leaves intents in doubt");
    assert_eq!(text(&remote.stdout), text(&local.stdout), "{n} in-doubt intents");
}

/// One line on stderr, exit 2, containing `want`.
fn assert_fails(out: &Output, want: &str) {
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {e}");
    assert_eq!(e.lines().filter(|l| l.starts_with("tradewal:")).count(), 1, "one error line: {e}");
    assert!(e.contains(want), "stderr {e:?} does not say {want:?}");
}

fn small_log(dir: &Path, groups: u64) {
    let wal = Wal::open(config(dir)).unwrap();
    append_groups(&wal, 0, groups, 100);
    wal.close().unwrap();
}

/// Runs `f` with a JetStream context on `url` (for streams the shipper must refuse).
fn with_js<F: std::future::Future<Output = ()>>(url: &str, f: impl FnOnce(async_nats::jetstream::Context) -> F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        f(async_nats::jetstream::new(client)).await;
    });
}

#[test]
fn bad_urls_missing_streams_and_foreign_streams_are_clear_errors() {
    let Some(_) = server_binary("bad_urls_missing_streams") else { return };
    let root = scratch("errors");
    let server = NatsServer::start(&root).unwrap();
    let url = server.url();
    let dir = root.join("log");
    small_log(&dir, 3);
    let d = dir.to_str().unwrap();
    let log = log_id(&dir);
    assert_fails(&ship_once(&dir, "nats://bad host:x", "TW", &[]), "bad NATS URL");
    let nobody = format!("nats://127.0.0.1:{}", nats::free_port());
    assert_fails(&ship_once(&dir, &nobody, "TW", &[]), "cannot connect");
    assert_fails(&tw(&["recover", "--nats", &nobody, "--stream", "TW", "--log", &log]), "cannot connect");
    assert_fails(&tw(&["recover", "--nats", &url, "--stream", "NOPE", "--log", &log]), "does not exist");
    assert_fails(&tw(&["recover", "--nats", &url, "--stream", "TW", "--log", "xyz"]), "16 hex digits");
    assert_fails(&ship_once(&root.join("not-a-log"), &url, "TW", &[]), "");
    // A stream that takes other subjects.
    with_js(&url, |js| async move {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "OTHER".into(),
            subjects: vec!["desk.*".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    });
    assert_fails(&ship_once(&dir, &url, "OTHER", &[]), "takes subjects");
    // A stream whose subject for this log holds another log's message.
    let subject = format!("tradewal.{log}");
    with_js(&url, |js| async move {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "MIXED".into(),
            subjects: vec!["tradewal.*".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, "0000000000000001:5");
        js.publish_with_headers(subject, h, "{}".into()).await.unwrap().await.unwrap();
    });
    assert_fails(&ship_once(&dir, &url, "MIXED", &[]), "belongs to log 0000000000000001");
    assert_fails(&tw(&["recover", "--nats", &url, "--stream", "MIXED", "--log", &log]), "belongs to log 0000000000000001");
    // Replicas asked for that the stream does not have.
    assert_fails(&ship_once(&dir, &url, "MIXED", &["--replicas", "3"]), "replicas");
    assert_eq!(cursor(&dir, "ship-MIXED"), 0);
    let _ = d;
}

#[test]
fn a_refused_publish_stops_the_shipper_with_the_cursor_at_what_the_stream_took() {
    let Some(_) = server_binary("a_refused_publish_stops_the_shipper") else { return };
    let root = scratch("refused");
    let server = NatsServer::start(&root).unwrap();
    let url = server.url();
    let dir = root.join("log");
    small_log(&dir, 5); // 500 intents, ~430 outcomes
    with_js(&url, |js| async move {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "FULL".into(),
            subjects: vec!["tradewal.*".into()],
            max_messages: 100,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let out = ship_once(&dir, &url, "FULL", &[]);
    assert_fails(&out, "refused");
    let held = stream_lines(&url, "FULL", &log_id(&dir));
    assert_eq!(held.len(), 100);
    assert_same(&held, &shippable_lines(&dir)[..100]);
    let last_held: serde_json::Value = serde_json::from_str(&held[99]).unwrap();
    let c = cursor(&dir, "ship-FULL");
    assert!(c <= last_held["lsn"].as_u64().unwrap(), "cursor {c} is past the stream's last message {}", held[99]);
}

#[test]
fn a_server_restart_mid_ship_stalls_then_resumes_without_loss_or_duplicates() {
    let Some(_) = server_binary("a_server_restart_mid_ship") else { return };
    let root = scratch("restart");
    let mut server = NatsServer::start(&root).unwrap();
    let dir = root.join("log");
    let wal = Wal::open(config(&dir)).unwrap();
    let err = root.join("ship.err");
    let mut child = spawn_shipper(&dir, &server.url(), "TW", &[], &err);
    let (stop, last) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| writer(&wal, &stop, &last));
        let wait_cursor = |min: u64| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while cursor(&dir, "ship-TW") < min {
                assert!(Instant::now() < deadline, "cursor stuck below {min}: {}", std::fs::read_to_string(&err).unwrap_or_default());
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_cursor(2_000);
        // SIGKILL: a single server may lose messages it acknowledged but had not written yet, and
        // publishes in flight on the dead connection are lost while later ones may still reach
        // the restarted server: the stream must end up whole and in order all the same.
        for round in 0..5u64 {
            server.kill();
            let at_kill = cursor(&dir, "ship-TW");
            std::thread::sleep(Duration::from_millis(300 + 200 * round));
            server.restart().unwrap();
            wait_cursor(at_kill + 3_000);
        }
        stop.store(true, Ordering::Relaxed);
    });
    wal.close().unwrap();
    let lines = shippable_lines(&dir);
    let final_lsn = last.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cursor(&dir, "ship-TW") < final_lsn {
        assert!(Instant::now() < deadline, "the shipper did not catch up: {}", std::fs::read_to_string(&err).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    println!("shipper's stderr:\n{stderr}");
    assert!(stderr.contains("disconnected"), "no report of the lost server: {stderr}");
    assert_same(&stream_lines(&server.url(), "TW", &log_id(&dir)), &lines);
}

/// Copies directory `from` to `to` (replacing `to`).
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_stream_that_lost_acknowledged_messages_gets_them_again() {
    let Some(_) = server_binary("a_stream_that_lost_acknowledged_messages") else { return };
    let root = scratch("lost");
    let mut server = NatsServer::start(&root).unwrap();
    let url = server.url();
    let dir = root.join("log");
    let wal = Wal::open(config(&dir)).unwrap();
    append_groups(&wal, 0, 3, 100);
    let out = ship_once(&dir, &url, "TW", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The server's store as it was then: what a server killed before writing the next messages
    // comes back with.
    server.stop();
    let snapshot = root.join("store-then");
    copy_dir(&server.store_dir(), &snapshot);
    server.restart().unwrap();
    let before = cursor(&dir, "ship-TW");
    append_groups(&wal, 1_000, 3, 100);
    wal.close().unwrap();
    let out = ship_once(&dir, &url, "TW", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let through = cursor(&dir, "ship-TW");
    assert!(through > before);
    server.kill();
    copy_dir(&snapshot, &server.store_dir());
    server.restart().unwrap();
    let lines = shippable_lines(&dir);
    let held = stream_lines(&url, "TW", &log_id(&dir));
    assert!(held.len() < lines.len(), "the restored stream lost the second part");
    assert_same(&held, &lines[..held.len()]);
    let out = ship_once(&dir, &url, "TW", &[]);
    let e = text(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("after acknowledging them; shipping them again"), "no report of the loss: {e}");
    assert!(e.contains(&format!("..={through}")), "{e}");
    assert_same(&stream_lines(&url, "TW", &log_id(&dir)), &lines);
    assert_eq!(cursor(&dir, "ship-TW"), through, "the cursor never moves back");
}

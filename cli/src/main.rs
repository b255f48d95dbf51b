//! `tradewal`: the command-line tool of the tradewal write-ahead log.
//!
//! `demo` runs the whole pattern (append, wait, execute, crash, recover, export, latency report);
//! `inspect`, `verify`, `export` and `recover` read a log directory without locking it or changing
//! any file (they work while a writer is live); `bench` runs the benchmark binary (`tradewal-bench`, a separate package) if it was built.
//!
//! Exit codes: 0 success; 1 corruption found by `verify`; 3 `export --follow` met a gap (retention
//! removed the next LSN); 2 usage error, I/O error, a directory
//! that is not a tradewal log, or corruption met by any other command. Every error is one line on
//! stderr.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod demo;
mod export;
mod inspect;
mod readers;
mod scan;
mod ship;
mod ts;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// A failed command: the exit code and the one line printed on stderr.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code (1: corruption in `verify`, 2: everything else).
    pub code: u8,
    /// The message (one line).
    pub message: String,
}

impl Failure {
    /// Exit code 2 with `message`.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { code: 2, message: message.into() }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::usage(format!("{e:#}"))
    }
}

/// Result of a command.
pub type CmdResult = Result<(), Failure>;

#[derive(Debug, Parser)]
#[command(name = "tradewal", version, about = "tradewal: a durable write-ahead log for trade intents", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pattern end to end: strategy threads append intents and wait for their
    /// tickets, a simulated exchange executes most, aborts a few and leaves some unresolved; the
    /// process "crashes", reopens, lists the in-doubt intents, exports JSONL and prints a
    /// latency report beside the device floor.
    Demo(DemoArgs),
    /// Describe a log directory: sessions, segments, LSN range, record counts, in-doubt count,
    /// torn tail. Read-only; works while a writer is live.
    Inspect {
        /// The log directory.
        dir: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Scan the whole log and check every checksum and rule. Exit 0: clean (a torn tail is
    /// reported but is not corruption); 1: corruption (file, offset, expected LSN on stderr);
    /// 2: usage or I/O error, or not a tradewal directory. Read-only.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
    /// Export the log as JSONL: intent lines in LSN order with "exec"/"aborted" from the
    /// outcomes in the log, or every record with --raw. Read-only.
    ///
    /// With --follow it streams every acknowledged record from --from-lsn (or after the cursor of
    /// --name) like `tail -f`, never a record the writer has not acknowledged: an intent line is
    /// emitted when the intent is first seen, with the status known at that time; an outcome that
    /// arrives later for an intent already emitted is emitted as a raw outcome line
    /// ({"kind":"outcome","lsn":…,"intent_lsn":…,"outcome":"executed"|"aborted"}).
    /// Exit 3 (one line on stderr) when retention removed the next LSN. Stop it with Ctrl-C; a
    /// closed pipe ends it quietly with exit 0.
    ///
    /// With --since/--until it writes the intent lines of a time window, reading only the segments
    /// that can hold it (docs/jsonl.md, "Time windows").
    Export(ExportArgs),
    /// Print the intents in doubt (appended, no outcome) as JSONL intent lines in LSN order.
    /// Read-only: reconcile them with the venue, then mark them from your application.
    ///
    /// With --nats, --stream and --log instead of DIR: the same list computed from what
    /// `tradewal ship` put in the stream for that log (for a host that takes over from a dead one);
    /// the stream's messages are checked for order and gaps first.
    Recover(RecoverArgs),
    /// Ship the log into a NATS JetStream stream and keep following it: every acknowledged intent
    /// and outcome becomes one message (its raw JSONL line; subject PREFIX.<log_id>; header
    /// Nats-Msg-Id <log_id>:<lsn>), exactly once and in LSN order across restarts. Resumes after
    /// the named cursor (readers/NAME.cursor, default ship-STREAM) or after the stream's last
    /// message for this log. Creates the stream if it is missing (file storage, --replicas).
    /// A dropped connection or a server restart stalls it (one line on stderr) and it resends
    /// what was not acknowledged; a refusal by the server ends it with exit 2. Exit 3: retention
    /// removed a segment not shipped yet.
    Ship(ShipArgs),
    /// List the named readers (cursors of `export --follow --name` and `tradewal::Follower::named`)
    /// with the LSN each committed and how many records it lags; --drop NAME removes one (retention
    /// then stops keeping segments for it).
    Readers {
        /// The log directory.
        dir: PathBuf,
        /// Remove this reader's cursor.
        #[arg(long, value_name = "NAME")]
        drop: Option<String>,
    },
    /// Run the benchmark suite (tradewal against the device floor and peers): runs the
    /// `tradewal-bench` binary beside this one with the arguments given (`--quick`, `--full`,
    /// `--dir D`, `--out D`, `--only S`). It is a separate package, so installing the CLI does not
    /// build the peers (SQLite, okaywal); build it with `cargo build --release -p tradewal-bench`.
    /// `tradewal bench --help` shows the benchmark's own options.
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Directory for the demo log (removed first if it holds an earlier demo's log or is empty).
    #[arg(long, default_value = "./tradewal-demo")]
    dir: PathBuf,
    /// Intents to append in total.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    intents: u64,
    /// Strategy threads; each appends and waits for its own ticket (queue depth 1 per thread).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    producers: u64,
}

/// Output format of `export`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// One JSON object per line (docs/jsonl.md).
    Jsonl,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The log directory.
    dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Every record with its "kind" (intent, outcome, checkpoint) instead of intent lines.
    #[arg(long)]
    raw: bool,
    /// First LSN to export (inclusive).
    #[arg(long, value_name = "N")]
    from_lsn: Option<u64>,
    /// Last LSN to export (inclusive).
    #[arg(long, value_name = "N")]
    to_lsn: Option<u64>,
    /// Only intents with ts_ns >= TS (RFC 3339, e.g. 2026-01-01T00:00:00Z or
    /// 2026-01-01T00:00:00.123456789+01:00, or integer nanoseconds since the Unix epoch). The lines
    /// are exactly those of the full export with since <= ts <= until (same bytes, order, status),
    /// but only the segments that can hold that time (by the ranges the log records) and the later
    /// segments still needed for those intents' outcomes are read. Not with --raw. With --follow:
    /// start at the first segment that can hold intents from TS, and write only intent lines with
    /// ts >= TS (and outcome lines of those). Combines with --from-lsn/--to-lsn (both apply).
    #[arg(long, value_name = "TS", value_parser = ts::parse_ts, allow_hyphen_values = true)]
    since: Option<i64>,
    /// Only intents with ts_ns <= TS (see --since). Not with --raw or --follow.
    #[arg(long, value_name = "TS", value_parser = ts::parse_ts, allow_hyphen_values = true)]
    until: Option<i64>,
    /// Print on stderr how many segments the export read (one line, "export: ... segments: N in
    /// the log, R read ..."). Not with --follow.
    #[arg(long)]
    stats: bool,
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Keep streaming newly acknowledged records (see above).
    #[arg(long)]
    follow: bool,
    /// With --follow: a named reader; resumes after its cursor (readers/NAME.cursor in the log
    /// directory) and commits it after each poll's lines are written and flushed. Retention keeps
    /// the segments it still needs (up to max_reader_lag_bytes).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(Debug, Args)]
struct RecoverArgs {
    /// The log directory (or --nats, --stream and --log).
    #[arg(required_unless_present = "nats", conflicts_with = "nats")]
    dir: Option<PathBuf>,
    /// NATS server URL(s), comma-separated: read the in-doubt intents from the stream.
    #[arg(long, value_name = "URL", requires_all = ["stream", "log"])]
    nats: Option<String>,
    /// With --nats: the JetStream stream.
    #[arg(long, value_name = "NAME")]
    stream: Option<String>,
    /// With --nats: the log's id (16 hex digits, from `tradewal inspect`).
    #[arg(long, value_name = "LOG_ID")]
    log: Option<String>,
    /// With --nats: the subject prefix the shipper used.
    #[arg(long, value_name = "PREFIX", default_value = tradewal_ship::DEFAULT_PREFIX)]
    subject: String,
}

#[derive(Debug, Args)]
struct ShipArgs {
    /// The log directory.
    dir: PathBuf,
    /// NATS server URL(s), comma-separated (all servers of a cluster, or any one of them).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The JetStream stream (created when missing).
    #[arg(long, value_name = "NAME")]
    stream: String,
    /// Subject prefix: messages go to PREFIX.<log_id>.
    #[arg(long, value_name = "PREFIX", default_value = tradewal_ship::DEFAULT_PREFIX)]
    subject: String,
    /// The named cursor (default ship-STREAM).
    #[arg(long, value_name = "CURSOR")]
    name: Option<String>,
    /// Replicas of a stream this creates (1, or 3 on a three-server cluster); checked against an
    /// existing stream when given.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=5))]
    replicas: Option<u64>,
    /// Publishes awaiting their JetStream ack at most.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_in_flight: u64,
    /// Ship what is acknowledged now, then exit.
    #[arg(long)]
    once: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Arguments for `tradewal-bench` (see `tradewal-bench --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// `tradewal bench ARGS`: runs the `tradewal-bench` binary that cargo puts beside this one.
fn run_bench(a: BenchArgs) -> CmdResult {
    let exe = std::env::current_exe().map_err(|e| Failure::usage(format!("cannot locate this binary: {e}")))?;
    let bench = exe.with_file_name("tradewal-bench");
    if !bench.exists() {
        return Err(Failure::usage(format!(
            "the benchmark is its own binary and {} was not built: run `cargo build --release -p tradewal-bench` first, or `cargo run --release -p tradewal-bench -- {}`",
            bench.display(),
            a.args.join(" ")
        )));
    }
    let st = std::process::Command::new(&bench)
        .args(&a.args)
        .status()
        .map_err(|e| Failure::usage(format!("running {}: {e}", bench.display())))?;
    match st.code() {
        Some(0) => Ok(()),
        code => Err(Failure { code: code.map_or(2, |c| c.clamp(1, 255) as u8), message: format!("{} exited with {st}", bench.display()) }),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand)
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { ExitCode::from(2) } else { ExitCode::SUCCESS };
            }
            // One line: the error and its details, without the usage block clap appends.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("tradewal: {msg} (see tradewal --help)");
            return ExitCode::from(2);
        }
    };
    // Engine diagnostics (warnings by default, RUST_LOG to change) go to stderr, never stdout.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only on a terminal: a warning redirected to a file or a pipe stays plain text.
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).with_target(false).try_init();

    let result = match cli.command {
        Command::Demo(a) => demo::run(&a.dir, a.intents, a.producers as usize),
        Command::Inspect { dir, json } => inspect::inspect(&dir, json),
        Command::Verify { dir } => inspect::verify(&dir),
        Command::Export(a) => {
            let Format::Jsonl = a.format;
            export::run(&export::ExportOptions {
                dir: a.dir,
                raw: a.raw,
                from_lsn: a.from_lsn.unwrap_or(0),
                to_lsn: a.to_lsn.unwrap_or(u64::MAX),
                output: a.output,
                follow: a.follow,
                name: a.name,
                since: a.since,
                until: a.until,
                stats: a.stats,
            })
        }
        Command::Recover(a) => match (&a.dir, &a.nats, &a.stream, &a.log) {
            (Some(dir), None, ..) => inspect::recover(dir),
            (None, Some(url), Some(stream), Some(log)) => ship::recover(url, stream, &a.subject, log),
            _ => Err(Failure::usage("recover needs DIR, or --nats URL --stream NAME --log LOG_ID")),
        },
        Command::Ship(a) => {
            let mut cfg = tradewal_ship::ShipConfig::new(&a.dir, &a.nats, &a.stream);
            cfg.prefix = a.subject;
            if let Some(n) = a.name {
                cfg.cursor = n;
            }
            cfg.replicas = a.replicas.map(|r| r as usize);
            cfg.max_in_flight = a.max_in_flight as usize;
            cfg.once = a.once;
            ship::run(&cfg)
        }
        Command::Readers { dir, drop } => readers::run(&dir, drop.as_deref()),
        Command::Bench(a) => run_bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let line = f.message.replace(['\n', '\r'], " ");
            eprintln!("tradewal: {line}");
            ExitCode::from(f.code)
        }
    }
}

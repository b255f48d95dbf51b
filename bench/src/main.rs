//! `tradewal-bench [--quick|--full] [--dir D] [--out D]`: runs the bench and prints the report.

use std::path::PathBuf;
use std::process::ExitCode;
use tradewal_bench::{run, BenchOptions};

const USAGE: &str = "usage: tradewal-bench [--quick|--full] [--dir DATA_DIR] [--out REPORT_DIR]
  --quick   small sample counts, under a minute (default)
  --full    the figures docs/durability.md quotes (several minutes)
  --dir     where systems write (default target/bench-data; must not be tmpfs)
  --out     where reports go (default target/bench-report)
  --only S  run only section S (repeatable): fsync qd1 qd1open closed open pipelined rotation append recovery export ship";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = BenchOptions::quick();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => opts = BenchOptions { params: BenchOptions::quick().params, ..opts },
            "--full" => opts = BenchOptions { params: BenchOptions::full().params, ..opts },
            "--only" => match it.next() {
                Some(v) => opts.only.push(v.clone()),
                None => {
                    eprintln!("--only needs a value\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--dir" | "--out" => {
                let Some(v) = it.next() else {
                    eprintln!("{a} needs a value\n{USAGE}");
                    return ExitCode::from(2);
                };
                if a == "--dir" {
                    opts.dir = PathBuf::from(v);
                } else {
                    opts.out = Some(PathBuf::from(v));
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    opts.command = std::iter::once("tradewal-bench".to_string()).chain(args).collect::<Vec<_>>().join(" ");
    match run(opts) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! Shared helpers of the integration suites (simulated disk, workloads).
#![deny(missing_docs)]

pub mod fusefs;
pub mod model;
pub mod sim;
pub mod spec_export;
pub mod spec_reader;

pub use sim::SimDisk;

/// Spawns `cmd` (a child process of a suite: stdin closed, stderr inherited) and returns it with
/// the complete lines of its stdout on a channel ([`line_channel`]).
pub fn spawn_with_lines(cmd: &mut std::process::Command) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn the child process");
    let rx = line_channel(child.stdout.take().expect("piped stdout"));
    (child, rx)
}

/// The complete lines a child process writes to `out`, as they come, on a channel (a thread reads
/// them). A last line without its newline (cut by a kill) was never fully reported and is dropped.
pub fn line_channel(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(out);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.last() != Some(&b'\n') => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if tx.send(s).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The `tradewal` binary: `TRADEWAL_BIN`, else `target/<profile>/tradewal` beside this test's
/// executable (`target/<profile>/deps/<test>-*`), brought up to date by cargo once per run (a
/// binary left from an older build would check the wrong code).
pub fn tradewal_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(b) = std::env::var("TRADEWAL_BIN") {
            return std::path::PathBuf::from(b);
        }
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps/<test>");
        let bin = profile_dir.join("tradewal");
        {
            let profile = profile_dir.file_name().unwrap().to_string_lossy().into_owned();
            let profile = if profile == "debug" { "dev".to_string() } else { profile };
            let st = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
                .args(["build", "-q", "-p", "tradewal-cli", "--profile", &profile])
                .status()
                .expect("run cargo to build the tradewal binary");
            assert!(st.success() && bin.exists(), "building {} failed", bin.display());
        }
        bin
    })
}

/// Copies the regular files of `from` into a fresh `to` (removed first): a log directory to damage.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

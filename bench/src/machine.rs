//! What machine a report was measured on: printed at the top of every report.

use serde::Serialize;
use std::fmt;
use std::path::Path;

/// Facts about the machine and the data directory's file system.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// Online CPUs (`std::thread::available_parallelism`).
    pub nproc: usize,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// First `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Data directory the systems wrote into.
    pub data_dir: String,
    /// Device of the mount holding the data directory (`/proc/self/mounts`).
    pub device: String,
    /// File system type of that mount.
    pub fs_type: String,
    /// Mount point.
    pub mount_point: String,
    /// Mount options (look for `nobarrier`: then fsync does not flush the device cache).
    pub mount_options: String,
    /// `/sys/block/<dev>/queue/write_cache` when it can be found.
    pub write_cache: String,
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// One mount of `/proc/self/mounts`: (device, mount point, fs type, options).
fn mounts() -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.into(), unescape(it.next()?), it.next()?.into(), it.next()?.into()))
        })
        .collect()
}

/// `/proc/self/mounts` escapes spaces and tabs as octal (`\040`).
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
}

/// The mount that holds `dir` (longest mount point that is a prefix of its canonical path):
/// (device, mount point, fs type, options).
pub fn mount_of(dir: &Path) -> Option<(String, String, String, String)> {
    let canon = std::fs::canonicalize(dir).ok()?;
    mounts().into_iter().filter(|(_, mp, _, _)| canon.starts_with(mp)).max_by_key(|(_, mp, _, _)| mp.len())
}

impl MachineInfo {
    /// Collects the facts; `data_dir` must exist.
    pub fn collect(data_dir: &Path) -> Self {
        let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let (device, mount_point, fs_type, mount_options) =
            mount_of(data_dir).unwrap_or_else(|| ("unknown".into(), "unknown".into(), "unknown".into(), String::new()));
        let dev_name = device.rsplit('/').next().unwrap_or("").trim_end_matches(|c: char| c.is_ascii_digit());
        let write_cache =
            if dev_name.is_empty() { "unknown".into() } else { read_trim(&format!("/sys/block/{dev_name}/queue/write_cache")) };
        MachineInfo {
            nproc,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            cpu_model,
            data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()).display().to_string(),
            device,
            fs_type,
            mount_point,
            mount_options,
            write_cache,
        }
    }

    /// True when the data directory is on a memory file system (nothing is durable there).
    pub fn is_memory_fs(&self) -> bool {
        matches!(self.fs_type.as_str(), "tmpfs" | "ramfs" | "devtmpfs")
    }
}

impl fmt::Display for MachineInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "machine: {} CPUs ({}), Linux {}, data dir {} on {} ({}, mounted at {}, write cache: {}{})",
            self.nproc,
            self.cpu_model,
            self.kernel,
            self.data_dir,
            self.device,
            self.fs_type,
            self.mount_point,
            self.write_cache,
            if self.mount_options.contains("nobarrier") { ", NOBARRIER: fsync does not flush the device cache" } else { "" }
        )
    }
}

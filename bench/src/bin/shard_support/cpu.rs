//! Benchmark support (main thread): CPU time of one of this process's threads, found by name,
//! from `/proc/self/task/<tid>/schedstat` (ns) or `stat` (clock ticks, assumed 100 Hz).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The task folder of this process's thread called `name`.
pub fn thread_dir(name: &str) -> Option<PathBuf> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    tasks.flatten().map(|entry| entry.path()).find(|path| {
        std::fs::read_to_string(path.join("comm")).is_ok_and(|comm| comm.trim() == name)
    })
}

/// CPU time the thread has used so far, ns.
pub fn cpu_ns(dir: &Path) -> Option<u64> {
    if let Ok(text) = std::fs::read_to_string(dir.join("schedstat"))
        && let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse().ok())
    {
        return Some(ns);
    }
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

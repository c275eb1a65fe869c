//! Benchmark programs' common parts (benchmark thread): their command-line flags, the machine a
//! figure was measured on, timing statistics, and JSON results written under `bench-results/`
//! at the repository root.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::testdata::repo_root;

/// The machine, kernel and commit a result belongs to.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": model,
        "cores": cores,
        "kernel": kernel.trim(),
        "commit": command_output("git", &["rev-parse", "--short", "HEAD"]),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "unknown".into(),
            |output| String::from_utf8_lossy(&output.stdout).trim().to_string(),
        )
}

/// Minimum and median of repeated timings, per operation, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub min_ns: f64,
    pub median_ns: f64,
}

impl Timing {
    /// Per-operation statistics of `runs` that each did `operations` operations.
    pub fn per_op(runs: &[Duration], operations: usize) -> Timing {
        let mut per_op: Vec<f64> = runs
            .iter()
            .map(|run| run.as_nanos() as f64 / operations as f64)
            .collect();
        let (min_ns, median_ns) = min_median(&mut per_op);
        Timing { min_ns, median_ns }
    }

    /// Operations per second at the best run.
    pub fn best_rate(&self) -> f64 {
        1e9 / self.min_ns
    }

    pub fn to_json(self) -> Value {
        json!({ "ns_per_op_min": self.min_ns, "ns_per_op_median": self.median_ns, "ops_per_s_best": self.best_rate() })
    }
}

/// Minimum and median of `samples` (sorted here); NaN for none.
pub fn min_median(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let min = samples.first().copied().unwrap_or(f64::NAN);
    let median = samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN);
    (min, median)
}

/// Write `result` (with the machine added) to `bench-results/<name>.json`; returns the path.
///
/// # Errors
/// The directory or file cannot be written.
pub fn write_result(name: &str, mut result: Value) -> std::io::Result<PathBuf> {
    let dir = repo_root().join("bench-results");
    std::fs::create_dir_all(&dir)?;
    result["machine"] = machine();
    let path = dir.join(format!("{name}.json"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&result).expect("json") + "\n",
    )?;
    Ok(path)
}

/// Write `result` with [`write_result`] and say where (or why not) on the terminal.
pub fn save(name: &str, result: Value) {
    match write_result(name, result) {
        Ok(path) => println!("wrote {}", path.display()),
        Err(error) => eprintln!("cannot write bench-results/{name}.json: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        assert_eq!(min_median(&mut [3.0, 1.0, 2.0]), (1.0, 2.0));
        assert!(min_median(&mut []).0.is_nan());
    }
}

//! The startup benchmark (`klagg bench-startup`, hidden; runs on the main thread and starts the
//! simulator and the engine in-process): for each symbol count, a simulator with REST latency
//! and a weight limit, then the engine with the default intervals; it records when the API first
//! answered, when the first and the last symbol were Active, the "synchronous baseline" (when
//! the last initial package was ready) and the REST weight per symbol, and compares the startup
//! with the floor: max(3 weight per symbol ÷ limit per minute, 3 requests per symbol × latency ÷
//! concurrency). Results go to `bench-results/startup.json`.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::app::{AppExtensions, start_app};
use crate::clock::ProcessStart;
use crate::config::RunArgs;
use crate::shutdown::StopReason;
use crate::status::StatusBoard;

/// Flags of `klagg bench-startup`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchStartupArgs {
    /// Symbol counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "300,600")]
    pub symbols: Vec<usize>,
    /// Simulated REST latency, ms.
    #[arg(long, default_value_t = 50)]
    pub rest_latency_ms: u64,
    /// Simulated weight limit per minute.
    #[arg(long, default_value_t = 2400)]
    pub weight_limit: u32,
    /// Backfill concurrency of the engine.
    #[arg(long, default_value_t = 2)]
    pub backfill_concurrency: usize,
    /// Total simulated trades per second.
    #[arg(long, default_value_t = 500)]
    pub trade_rate: u64,
    /// Shards of the engine.
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results/startup.json")]
    pub out: std::path::PathBuf,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
}

/// Entry point of `klagg bench-startup`.
pub fn run(args: BenchStartupArgs) -> ExitCode {
    let mut runs = Vec::new();
    for &symbols in &args.symbols {
        match run_one(&args, symbols) {
            Ok(result) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
                runs.push(result);
            }
            Err(error) => {
                eprintln!("klagg bench-startup: error: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let doc = json!({ "benchmark": "startup", "machine": machine(), "runs": runs });
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
    ) {
        Ok(()) => {
            eprintln!("wrote {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "klagg bench-startup: error: {}: {error}",
                args.out.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn run_one(args: &BenchStartupArgs, symbols: usize) -> Result<Value, String> {
    let sim_config = klagg_bench::sim::SimConfig::default()
        .with_listen("127.0.0.1:0".to_string())
        .with_symbols(symbols)
        .with_trade_rate(args.trade_rate)
        .with_rest_latency(Duration::from_millis(args.rest_latency_ms))
        .with_weight_limit(args.weight_limit);
    let sim = klagg_bench::sim::Sim::start(sim_config).map_err(|e| e.to_string())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let run_args = RunArgs {
        rest_url: Some(sim.rest_url()),
        ws_url: Some(sim.ws_url()),
        listen: Some(format!("127.0.0.1:{port}")),
        shards: Some(args.shards),
        backfill_concurrency: Some(args.backfill_concurrency),
        ..RunArgs::default()
    };
    let config = run_args
        .resolve(&crate::runtime::core_ids())
        .map_err(|e| e.to_string())?;
    let start = ProcessStart::now();
    let api_ms = Arc::new(AtomicI64::new(-1));
    let poller = spawn_api_poller(port, start, api_ms.clone());
    let log = crate::log::discard();
    let app =
        start_app(config, start, &log, AppExtensions::default()).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    while app.status.all_active_ms().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = poller.join();
    let result = summarise(
        args,
        symbols,
        &app.status,
        &app.rest,
        api_ms.load(Ordering::Relaxed),
    );
    app.stop(StopReason::RunFor);
    sim.shutdown();
    Ok(result)
}

/// Poll `GET /health` from the start until it answers; store ms since start.
fn spawn_api_poller(
    port: u16,
    start: ProcessStart,
    out: Arc<AtomicI64>,
) -> std::thread::JoinHandle<()> {
    let poll = move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(200)))
            .build()
            .into();
        let url = format!("http://127.0.0.1:{port}/health");
        for _ in 0..10_000 {
            if agent.get(&url).call().is_ok() {
                out.store(start.elapsed_ms(), Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    crate::runtime::spawn_control("api-poller", None, poll).expect("spawn the API poller")
}

fn summarise(
    args: &BenchStartupArgs,
    symbols: usize,
    status: &StatusBoard,
    rest: &crate::symbol_manager::rest::RestClient,
    api_ms: i64,
) -> Value {
    let n = symbols as f64;
    let weight_floor_ms = 3.0 * n / f64::from(args.weight_limit) * 60_000.0;
    let latency_floor_ms = 3.0 * n * args.rest_latency_ms as f64 / args.backfill_concurrency as f64;
    let floor_ms = weight_floor_ms.max(latency_floor_ms);
    let all = status.all_active_ms();
    let built = StatusBoard::get(&status.packages_built).max(1) as f64;
    let counters = &rest.budget.counters;
    json!({
        "symbols": symbols,
        "rest_latency_ms": args.rest_latency_ms,
        "weight_limit_per_minute": args.weight_limit,
        "backfill_concurrency": args.backfill_concurrency,
        "shards": args.shards,
        "api_first_answer_ms": (api_ms >= 0).then_some(api_ms),
        "first_active_ms": status.first_active_ms(),
        "all_active_ms": all,
        "synchronous_baseline_ms": status.last_package_ms(),
        "symbols_active": StatusBoard::get(&status.symbols_active),
        "symbols_failed": StatusBoard::get(&status.symbols_failed),
        "floor_ms": floor_ms.round(),
        "weight_floor_ms": weight_floor_ms.round(),
        "latency_floor_ms": latency_floor_ms.round(),
        "all_active_over_floor": all.map(|ms| ((ms as f64 / floor_ms) * 1000.0).round() / 1000.0),
        "package_weight_per_symbol": StatusBoard::get(&status.package_weight) as f64 / built,
        "package_requests_per_symbol": StatusBoard::get(&status.package_requests) as f64 / built,
        "rest_weight_total": StatusBoard::get(&counters.weight_total),
        "rest_requests_total": StatusBoard::get(&counters.requests),
        "rest_429": StatusBoard::get(&counters.rate_limited_429),
        "targets": {
            "api_within_ms": 200,
            "first_active_within_ms": 1000,
            "all_active_within_ms": (1.2 * floor_ms).round(),
        },
        "met": {
            "api": (0..=200).contains(&api_ms),
            "first_active": status.first_active_ms().is_some_and(|ms| ms <= 1000),
            "all_active": all.is_some_and(|ms| (ms as f64) <= 1.2 * floor_ms),
        },
    })
}

fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "cpu": cpu,
        "cores": crate::runtime::available_cores(),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "commit": commit,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

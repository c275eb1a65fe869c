//! `klagg run` (main thread): the igniter. Flags → config → the kline store opened (`--db`; a
//! bad file is a clear error before anything slow) → logging → the store writer thread → the
//! API listener (so it answers within milliseconds) → the simulator for `--venue sim` → shards
//! (their kline output goes to the store writer) → dispatcher → SymbolManager (registers
//! symbols with the store, runs the history thread) → watchdog; then it waits for
//! SIGINT/SIGTERM, `--run-for` or a fatal health state, and shuts down within
//! `SHUTDOWN_DEADLINE_MS` (`app_stop`): shards and control threads stop first (shards flush
//! their outboxes), then the store writer commits everything and exits. Exit codes (see
//! [`ExitStatus`]): 0 after a clean stop on a signal or `--run-for`, 1 after a fatal error (a bad
//! database or a panicked thread included), 2 for bad flags, 3 when the stop lost data (store
//! rows lost, a shard still running at the deadline).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use klagg_shards::protocol::{
    KLINE_OUT_CAPACITY, KlineMsg, SHARD_REPORT_CAPACITY, ShardHandle, ShardId,
};
use klagg_shards::shard::{KlineSink, ShardConfig, ShardOutputs, ShardThread, spawn_shard};
use slog::{Logger, info, o, warn};

use crate::activation_dispatcher::{Dispatcher, DispatcherCore, DispatcherHealth, HandleLink};
pub use crate::app_stop::{ExitStatus, Stopped};
use crate::app_store;
use crate::clock::{ProcessStart, SystemClock};
use crate::config::{Config, RunArgs, Venue};
use crate::constants::{ACK_CHANNEL_CAPACITY, ACTIVATION_CHANNEL_CAPACITY};
use crate::gateway::{self, ApiHealth, GatewayContext, Router};
use crate::health::HealthReporter;
use crate::runtime::{core_ids, spawn_control};
use crate::shutdown::Shutdown;
use crate::status::StatusBoard;
use crate::symbol_manager::registry::RegistryView;
use crate::symbol_manager::rest::{RestClient, WeightBudget};
use crate::symbol_manager::{self, SymbolManagerConfig, SymbolManagerHealth};
use crate::watchdog::{HealthBoard, ShardHealthReporter, Watchdog};

/// Why `klagg run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    #[error("simulator: {0}")]
    Sim(String),
    #[error("REST client: {0}")]
    Rest(#[from] symbol_manager::rest::RestError),
    #[error("shard {shard}: {reason}")]
    Shard { shard: u16, reason: String },
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What other components plug into `start_app`: the store and the Binance-compatible API add
/// their kline consumers, health reporters and routes here; the registry they read is shared.
#[derive(Default)]
pub struct AppExtensions {
    /// The registry to fill (create it first when a component needs to read it).
    pub registry: RegistryView,
    /// Extra kline consumers: each gets every closed, flat-run and corrected kline (and the
    /// open-kline updates when `updates` is set), from every shard.
    pub kline_sinks: Vec<KlineSink>,
    /// Extra health reporters (store, API).
    pub reporters: Vec<Arc<dyn HealthReporter>>,
    /// Extra routes; the operability endpoints are added after them.
    pub router: Router,
    /// State for the extra routes' handlers (`GatewayContext::state::<T>()` finds it).
    pub gateway_state: Vec<Arc<dyn std::any::Any + Send + Sync>>,
    /// Told every symbol (index, name, scales) before its first activation (e.g. the store's
    /// `RegisterSymbol`). Bounded channels; a full one misses the message (counted).
    pub symbol_listeners: Vec<crossbeam_channel::Sender<klagg_shards::protocol::SymbolSpec>>,
    /// The kline store (`klagg run` opens `--db` and passes it here): its writer gets every
    /// shard's klines, symbols are registered with it, history and repairs run, and its
    /// `StoreView` is added to `gateway_state`. `None` runs without a store.
    pub store: Option<crate::store::Store>,
    /// Told every kline a store repair changed (a gap made it wrong), as
    /// `KlineMsg::Corrected` — the same message a shard sends for a late trade's correction —
    /// so the WebSocket API can re-publish it. `try_send`: a full channel misses it (counted in
    /// `klagg_store_corrections_dropped_total`); the store serves it regardless.
    pub correction_sinks: Vec<crossbeam_channel::Sender<KlineMsg>>,
}

impl std::fmt::Debug for AppExtensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppExtensions")
            .field("kline_sinks", &self.kline_sinks.len())
            .field("reporters", &self.reporters.len())
            .field(
                "store",
                &self.store.as_ref().map(|s| s.path().to_path_buf()),
            )
            .finish_non_exhaustive()
    }
}

/// A running engine (what `klagg run` and the integration tests hold).
#[derive(Debug)]
pub struct RunningApp {
    pub listen: SocketAddr,
    pub rest_url: String,
    pub ws_url: String,
    pub status: Arc<StatusBoard>,
    pub registry: RegistryView,
    pub health: Arc<HealthBoard>,
    pub rest: RestClient,
    pub shards: Vec<ShardHandle>,
    pub shutdown: Shutdown,
    pub log: Logger,
    /// The kline store's counters, health and readers (when one is attached).
    pub store: Option<Arc<crate::store::StoreView>>,
    pub(crate) store_runtime: Option<app_store::StoreRuntime>,
    pub(crate) shard_threads: Vec<ShardThread>,
    pub(crate) threads: Vec<(String, JoinHandle<()>)>,
    pub(crate) sim: Option<klagg_bench::sim::SimHandle>,
}

/// Entry point of `klagg run`: resolve flags, log, start, wait, stop. The exit codes are
/// [`crate::app_stop::ExitStatus`]'s.
pub fn run(args: RunArgs) -> ExitCode {
    let start = ProcessStart::now();
    crate::panic_hook::install();
    let config = match args.resolve(&core_ids()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("klagg run: error: {error}");
            return ExitStatus::BadFlags.code();
        }
    };
    let store = match crate::store::Store::open(&config.db_path) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("klagg run: error: {error}");
            return ExitStatus::Fatal.code();
        }
    };
    let log = crate::log::build(config.log_format, config.log_level);
    let extensions = AppExtensions {
        store: Some(store),
        ..AppExtensions::default()
    };
    let app = match start_app(config.clone(), start, &log.root, extensions) {
        Ok(app) => app,
        Err(error) => {
            // Flush the asynchronous log first: the error line must not land inside a record.
            drop(log);
            eprintln!("klagg run: error: {error}");
            return ExitStatus::Fatal.code();
        }
    };
    // A panicking thread stops the process (exit 1) instead of leaving it half alive.
    crate::panic_hook::attach(&app.shutdown);
    let reason = app.wait(config.run_for);
    let stopped = app.stop(reason);
    drop(log);
    if let Some(line) = stopped.error_line() {
        eprintln!("klagg run: error: {line}");
    }
    stopped.exit_status().code()
}

/// Shared state created before anything starts.
struct Boards {
    shutdown: Shutdown,
    status: Arc<StatusBoard>,
    registry: RegistryView,
    health: Arc<HealthBoard>,
    budget: Arc<WeightBudget>,
}

/// Start every service. `start` is the process start (the API answers relative to it).
///
/// # Errors
/// The listener cannot bind, the simulator or a shard or thread cannot start.
pub fn start_app(
    mut config: Config,
    start: ProcessStart,
    log: &Logger,
    mut extensions: AppExtensions,
) -> Result<RunningApp, AppError> {
    let api = crate::api::Api::install(&config, &mut extensions)?;
    let store = attach_store(&config, &mut extensions)?;
    let boards = Boards {
        shutdown: Shutdown::new(),
        status: Arc::new(StatusBoard::new(start)),
        registry: extensions.registry,
        health: Arc::new(HealthBoard::new()),
        budget: Arc::new(WeightBudget::new()),
    };
    let gateway = (extensions.router, extensions.gateway_state);
    let (ctx, listen, mut threads) = start_gateway(&config, &boards, gateway, log)?;
    threads.extend(api.spawn(&boards.shutdown, config.control_core)?);
    if let Some(store) = &store {
        info!(log, "store writer started"; "db" => store.view.path().display().to_string(),
            "history_bars" => config.store.history_bars,
            "snapshot_ms" => config.store.snapshot_interval.as_millis() as u64);
    }
    let sim = start_sim(&mut config, log)?;
    let rest = RestClient::with_budget(
        &config.rest_url,
        config.proxy.as_deref(),
        boards.budget.clone(),
        boards.shutdown.clone(),
    )?;
    let (report_tx, report_rx) = bounded(SHARD_REPORT_CAPACITY);
    let (shard_threads, sink) =
        start_shards(&config, extensions.kline_sinks, report_tx, &boards, log)?;
    threads.push(sink);
    let shards: Vec<ShardHandle> = shard_threads.iter().map(|s| s.handle.clone()).collect();
    let _ = ctx.shards.set(shards.clone());
    let (activation_tx, dispatcher) = start_dispatcher(&config, &shards, &boards, log)?;
    threads.push(dispatcher);
    let (manager_threads, queue) = start_symbol_manager(
        &config,
        &rest,
        activation_tx,
        report_rx,
        (
            extensions.symbol_listeners,
            store.as_ref().map(|s| s.link.clone()),
        ),
        &boards,
        log,
    )?;
    threads.extend(manager_threads);
    let mut reporters: Vec<Arc<dyn HealthReporter>> = vec![
        Arc::new(SymbolManagerHealth {
            status: boards.status.clone(),
            rest: rest.clone(),
            queue,
            registry: boards.registry.clone(),
            detector: true,
        }),
        Arc::new(DispatcherHealth {
            status: boards.status.clone(),
            clock: SystemClock,
        }),
        Arc::new(ApiHealth { ctx }),
    ];
    reporters.extend(extensions.reporters);
    threads.push(start_watchdog(&config, reporters, &shards, &boards, log)?);
    Ok(RunningApp {
        listen,
        rest_url: config.rest_url.clone(),
        ws_url: config.ws_url.clone(),
        status: boards.status,
        registry: boards.registry,
        health: boards.health,
        rest,
        shards,
        shutdown: boards.shutdown,
        log: log.clone(),
        store: store.as_ref().map(|s| s.view.clone()),
        store_runtime: store,
        shard_threads,
        threads,
        sim,
    })
}

/// Start the store writer when a store was given: its sink, reporter and view join the
/// extensions.
fn attach_store(
    config: &Config,
    extensions: &mut AppExtensions,
) -> Result<Option<app_store::StoreRuntime>, AppError> {
    let Some(store) = extensions.store.take() else {
        return Ok(None);
    };
    let corrections = std::mem::take(&mut extensions.correction_sinks);
    let (runtime, sink) = app_store::start(store, config, corrections)?;
    extensions.kline_sinks.push(sink);
    extensions.reporters.push(runtime.reporter());
    extensions.gateway_state.push(runtime.view.clone());
    Ok(Some(runtime))
}

/// Symbol announcements for `AppExtensions::symbol_listeners`, and the store's link.
type ManagerHooks = (
    Vec<crossbeam_channel::Sender<klagg_shards::protocol::SymbolSpec>>,
    Option<crate::symbol_manager::history::StoreLink>,
);

fn start_symbol_manager(
    config: &Config,
    rest: &RestClient,
    activation_tx: crossbeam_channel::Sender<crate::activation_dispatcher::DispatcherCmd>,
    report_rx: Receiver<klagg_shards::protocol::ShardReport>,
    (listeners, store): ManagerHooks,
    boards: &Boards,
    log: &Logger,
) -> Result<(Vec<Named>, Arc<crate::symbol_manager::backfiller::JobQueue>), AppError> {
    let manager_config = SymbolManagerConfig {
        ws_url: config.ws_url.clone(),
        intervals: config.intervals.clone(),
        rest_has_1s: config.rest_has_1s,
        filter: config.symbols.clone(),
        backfill_concurrency: config.backfill_concurrency,
        refresh_ms: config.exchange_info_refresh_ms,
        control_core: config.control_core,
        detector: true,
        listeners,
        store,
    };
    let manager = symbol_manager::spawn(
        manager_config,
        rest.clone(),
        boards.registry.clone(),
        activation_tx,
        report_rx,
        boards.status.clone(),
        log,
        &boards.shutdown,
    )?;
    Ok((named("symbol-manager", manager.threads), manager.queue))
}

type Named = (String, JoinHandle<()>);

fn start_gateway(
    config: &Config,
    boards: &Boards,
    (router, extra): (Router, Vec<Arc<dyn std::any::Any + Send + Sync>>),
    log: &Logger,
) -> Result<(Arc<GatewayContext>, SocketAddr, Vec<Named>), AppError> {
    let mut ctx = GatewayContext::new(
        boards.status.clone(),
        boards.registry.clone(),
        boards.health.clone(),
        boards.budget.clone(),
    );
    ctx.extra = extra;
    ctx.http_limits.per_client = config.http_conns_per_ip;
    let ctx = Arc::new(ctx);
    let server = gateway::bind(config.listen)?;
    let listen = gateway::local_addr(&server).unwrap_or(config.listen);
    let router = router.operability();
    let threads = gateway::serve(
        server,
        router,
        ctx.clone(),
        &boards.shutdown,
        config.control_core,
    )?;
    info!(log, "api listening"; "addr" => listen.to_string(),
        "ms_since_start" => boards.status.start.elapsed_ms());
    Ok((ctx, listen, named("api", threads)))
}

fn start_shards(
    config: &Config,
    mut sinks: Vec<KlineSink>,
    report_tx: crossbeam_channel::Sender<klagg_shards::protocol::ShardReport>,
    boards: &Boards,
    log: &Logger,
) -> Result<(Vec<ShardThread>, Named), AppError> {
    let (kline_tx, kline_rx) = bounded(KLINE_OUT_CAPACITY);
    sinks.push(KlineSink {
        tx: kline_tx,
        updates: false,
    });
    let shard_threads = spawn_shards(config, &sinks, &report_tx, log)?;
    let counter = kline_sink(kline_rx, boards.status.clone());
    let sink = spawn_control("kline-sink", config.control_core, counter)?;
    Ok((shard_threads, ("kline-sink".into(), sink)))
}

fn start_dispatcher(
    config: &Config,
    shards: &[ShardHandle],
    boards: &Boards,
    log: &Logger,
) -> Result<
    (
        crossbeam_channel::Sender<crate::activation_dispatcher::DispatcherCmd>,
        Named,
    ),
    AppError,
> {
    let (activation_tx, activation_rx) = bounded(ACTIVATION_CHANNEL_CAPACITY);
    let (ack_tx, ack_rx) = bounded(ACK_CHANNEL_CAPACITY);
    let dispatcher = Dispatcher {
        core: DispatcherCore::new(shards.len(), ack_tx),
        link: HandleLink::new(shards.to_vec()),
        activation_rx,
        ack_rx,
        clock: SystemClock,
        status: boards.status.clone(),
        log: log.new(o!("thread" => "activation-dispatcher")),
        shutdown: boards.shutdown.clone(),
    };
    let name = "activation-dispatcher";
    let thread = spawn_control(name, config.control_core, move || dispatcher.run())?;
    Ok((activation_tx, (name.into(), thread)))
}

fn start_watchdog(
    config: &Config,
    mut reporters: Vec<Arc<dyn HealthReporter>>,
    shards: &[ShardHandle],
    boards: &Boards,
    log: &Logger,
) -> Result<Named, AppError> {
    reporters.extend(
        shards
            .iter()
            .map(|h| Arc::new(ShardHealthReporter::new(h.clone())) as Arc<dyn HealthReporter>),
    );
    let watchdog = Watchdog {
        reporters,
        board: boards.health.clone(),
        status: boards.status.clone(),
        shards: shards.iter().map(|h| h.counters.clone()).collect(),
        clock: SystemClock,
        log: log.new(o!("thread" => "watchdog")),
        shutdown: boards.shutdown.clone(),
    };
    let thread = spawn_control("watchdog", config.control_core, move || watchdog.run())?;
    info!(log, "watchdog started"; "ms_since_start" => boards.status.start.elapsed_ms());
    Ok(("watchdog".into(), thread))
}

fn named(prefix: &str, handles: Vec<JoinHandle<()>>) -> Vec<(String, JoinHandle<()>)> {
    handles
        .into_iter()
        .enumerate()
        .map(|(i, h)| (format!("{prefix}-{i}"), h))
        .collect()
}

/// For `--venue sim`: start the simulator on loopback and point the config at it.
fn start_sim(
    config: &mut Config,
    log: &Logger,
) -> Result<Option<klagg_bench::sim::SimHandle>, AppError> {
    let Venue::Sim(settings) = config.venue else {
        return Ok(None);
    };
    let sim_config = klagg_bench::sim::SimConfig::default()
        .with_listen("127.0.0.1:0".to_string())
        .with_symbols(settings.symbols)
        .with_trade_rate(settings.trade_rate)
        .with_seed(settings.seed)
        .with_rest_latency(Duration::from_millis(settings.rest_latency_ms))
        .with_weight_limit(u32::try_from(settings.weight_limit).unwrap_or(u32::MAX));
    let sim = klagg_bench::sim::Sim::start(sim_config).map_err(|e| AppError::Sim(e.to_string()))?;
    if config.rest_url.is_empty() {
        config.rest_url = sim.rest_url();
    }
    if config.ws_url.is_empty() {
        config.ws_url = sim.ws_url();
    }
    info!(log, "simulator started"; "rest" => &config.rest_url, "ws" => &config.ws_url, "symbols" => settings.symbols);
    Ok(Some(sim))
}

fn spawn_shards(
    config: &Config,
    sinks: &[KlineSink],
    report_tx: &crossbeam_channel::Sender<klagg_shards::protocol::ShardReport>,
    log: &Logger,
) -> Result<Vec<ShardThread>, AppError> {
    let mut shards = Vec::with_capacity(config.shards);
    for (index, &core) in config.shard_cores.iter().enumerate() {
        let id = ShardId(u16::try_from(index).unwrap_or(u16::MAX));
        let mut shard_config =
            ShardConfig::new(id, config.intervals.clone(), config.ws_url.clone());
        shard_config.core = core;
        shard_config.close_grace_ms = config.close_grace_ms;
        // Store and API receivers attach here: one KlineSink per consumer.
        let outputs = ShardOutputs {
            klines: sinks.to_vec(),
            reports: report_tx.clone(),
        };
        let shard = spawn_shard(shard_config, outputs).map_err(|e| AppError::Shard {
            shard: id.0,
            reason: e.to_string(),
        })?;
        if shard.handle.pin_failed {
            warn!(log, "shard could not be pinned"; "shard" => id.0, "core" => core);
        }
        info!(log, "shard started"; "shard" => id.0, "core" => shard.handle.core);
        shards.push(shard);
    }
    Ok(shards)
}

/// Until the store and the API consume klines, one thread drains the shards' kline channel
/// (so closed klines never back up in the shard outboxes) and counts them.
fn kline_sink(rx: Receiver<KlineMsg>, status: Arc<StatusBoard>) -> impl FnOnce() + Send + 'static {
    move || {
        // Ends when every shard (sender) is gone.
        while let Ok(message) = rx.recv() {
            if !matches!(message, KlineMsg::Update { .. }) {
                StatusBoard::add(&status.klines_received, 1);
            }
        }
    }
}

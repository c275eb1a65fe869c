//! The SymbolManager (thread `symbol-manager`, plus its sub-task threads `backfill-N` and
//! `new-symbol-detector`): owns the symbol registry and every symbol's lifecycle from discovery
//! to data preparation; the only producer of `ActivateSymbol` (seed "Components").
//!
//! Its own thread: loads the universe from exchangeInfo (USDT perpetuals with status TRADING;
//! `--symbols` / `--max-symbols` narrow it), orders it by 24 h quote volume (one `ticker/24hr`
//! call) and queues it for the backfill threads; then loops: resync requests from shards
//! (`ShardReport::ResyncNeeded` → the same package-and-activate path, at the front of the
//! queue), and the periodic exchangeInfo refresh (promotions of PENDING_TRADING symbols, new
//! listings the detector missed, delistings → `DeactivateSymbol`). Its inboxes: `report_rx`
//! (bounded `SHARD_REPORT_CAPACITY`, from every shard).
//!
//! With a kline store attached ([`SymbolManagerConfig::store`]), symbols are registered with the
//! store writer before their first activation, and the `history` thread ([`history`]) fills the
//! history of every activated symbol and repairs the periods that gaps (reported here) and
//! activations may have left wrong.

pub mod backfiller;
pub mod detector;
pub mod exchange;
pub mod history;
pub mod package;
pub mod registry;
pub mod repair;
pub mod reporter;
pub mod rest;
pub mod store_hooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use klagg_shards::kline::Interval;
use klagg_shards::protocol::ShardReport;
use slog::{Logger, info, o, warn};

use self::backfiller::{Backfiller, Job, JobKind, JobQueue, PackageBuilder, send_activation};
use self::detector::Detector;
use self::exchange::{
    ExchangeInfo, Listing, Ticker24h, parse_exchange_info, parse_ticker_24h, unserved_names,
};
use self::registry::{Lifecycle, RegistryView};
pub use self::reporter::SymbolManagerHealth;
use self::rest::{RestClient, RestError};
use crate::activation_dispatcher::DispatcherCmd;
use crate::clock::epoch_ms;
use crate::config::SymbolFilter;
use crate::runtime::spawn_control;
use crate::shutdown::{Shutdown, StopReason};
use crate::status::StatusBoard;

/// How often the manager thread wakes when nothing arrives (heartbeat, refresh check).
const MANAGER_WAKE_MS: u64 = 250;
/// Weight of `ticker/24hr` without a symbol.
const TICKER_ALL_WEIGHT: u64 = 40;

/// What the SymbolManager needs from the configuration.
#[derive(Debug, Clone)]
pub struct SymbolManagerConfig {
    pub ws_url: String,
    pub intervals: Vec<Interval>,
    pub rest_has_1s: bool,
    pub filter: SymbolFilter,
    pub backfill_concurrency: usize,
    pub refresh_ms: i64,
    pub control_core: Option<usize>,
    /// Start the NewSymbolDetector (tests of the backfill path alone turn it off).
    pub detector: bool,
    /// Told every symbol before its first activation (see `PackageBuilder::listeners`).
    pub listeners: Vec<Sender<klagg_shards::protocol::SymbolSpec>>,
    /// The kline store: registration, history and repairs (`None`: no store).
    pub store: Option<history::StoreLink>,
}

/// The running SymbolManager's threads.
#[derive(Debug)]
pub struct SymbolManagerThreads {
    pub threads: Vec<JoinHandle<()>>,
    pub queue: Arc<JobQueue>,
}

/// The manager thread's state.
#[derive(Debug)]
struct Manager {
    config: SymbolManagerConfig,
    rest: RestClient,
    registry: RegistryView,
    queue: Arc<JobQueue>,
    activation_tx: Sender<DispatcherCmd>,
    report_rx: Receiver<ShardReport>,
    status: Arc<StatusBoard>,
    store: Option<history::StoreHooks>,
    log: Logger,
    shutdown: Shutdown,
}

/// Start the SymbolManager: its thread, the backfill threads and the detector.
///
/// # Errors
/// A thread could not be created.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    config: SymbolManagerConfig,
    rest: RestClient,
    registry: RegistryView,
    activation_tx: Sender<DispatcherCmd>,
    report_rx: Receiver<ShardReport>,
    status: Arc<StatusBoard>,
    log: &Logger,
    shutdown: &Shutdown,
) -> std::io::Result<SymbolManagerThreads> {
    let queue = Arc::new(JobQueue::default());
    let mut builder = PackageBuilder::new(
        rest.clone(),
        &config.intervals,
        config.rest_has_1s,
        status.clone(),
    );
    builder.listeners = Arc::new(config.listeners.clone());
    let hooks = config
        .store
        .as_ref()
        .map(|link| history::StoreHooks::new(link, shutdown.clone()));
    builder.store = hooks.clone();
    let mut threads = Vec::new();
    if let (Some(link), Some(hooks)) = (&config.store, &hooks) {
        let thread = history::HistoryThread {
            inbox: hooks.inbox(),
            packages: queue.clone(),
            rest: rest.clone(),
            store: link.commands.clone(),
            db_path: link.db_path.clone(),
            registry: registry.clone(),
            status: status.clone(),
            intervals: config.intervals.clone(),
            rest_has_1s: config.rest_has_1s,
            settings: link.settings,
            progress: link.progress.clone(),
            log: log.new(o!("thread" => "history")),
            shutdown: shutdown.clone(),
        };
        threads.push(spawn_control("history", config.control_core, move || {
            thread.run();
        })?);
    }
    for id in 0..config.backfill_concurrency {
        let backfiller = Backfiller {
            id,
            queue: queue.clone(),
            builder: builder.clone(),
            registry: registry.clone(),
            activation_tx: activation_tx.clone(),
            log: log.new(o!("thread" => format!("backfill-{id}"))),
            shutdown: shutdown.clone(),
        };
        threads.push(spawn_control(
            &format!("backfill-{id}"),
            config.control_core,
            move || backfiller.run(),
        )?);
    }
    if config.detector {
        // Its exchangeInfo confirmations wait on REST pauses too: keep its heartbeat as well.
        let mut builder = builder;
        let beat_status = status.clone();
        builder.rest = rest.clone().with_wait_beat(move |now| {
            StatusBoard::beat(&beat_status.detector_heartbeat_ms, now);
        });
        let detector = new_detector(
            &config,
            &queue,
            builder,
            &registry,
            &activation_tx,
            log,
            shutdown,
        );
        threads.push(spawn_control(
            "new-symbol-detector",
            config.control_core,
            move || detector.run(),
        )?);
    }
    let core = config.control_core;
    // exchangeInfo is fetched on the manager thread: a REST pause (up to `REST_PAUSE_MAX_MS`)
    // must not look like a hung thread, so its waits beat the manager's heartbeat.
    let beat_status = status.clone();
    let rest = rest.with_wait_beat(move |now| {
        StatusBoard::beat(&beat_status.manager_heartbeat_ms, now);
    });
    let manager = Manager {
        config,
        rest,
        registry,
        queue: queue.clone(),
        activation_tx,
        report_rx,
        status,
        store: hooks,
        log: log.new(o!("thread" => "symbol-manager")),
        shutdown: shutdown.clone(),
    };
    threads.insert(
        0,
        spawn_control("symbol-manager", core, move || manager.run())?,
    );
    Ok(SymbolManagerThreads { threads, queue })
}

fn new_detector(
    config: &SymbolManagerConfig,
    queue: &Arc<JobQueue>,
    builder: PackageBuilder,
    registry: &RegistryView,
    activation_tx: &Sender<DispatcherCmd>,
    log: &Logger,
    shutdown: &Shutdown,
) -> Detector {
    Detector {
        queue: queue.clone(),
        ws_url: config.ws_url.clone(),
        registry: registry.clone(),
        builder,
        activation_tx: activation_tx.clone(),
        filter: config.filter.clone(),
        log: log.new(o!("thread" => "new-symbol-detector")),
        shutdown: shutdown.clone(),
        candidates: Vec::new(),
        recheck: HashMap::new(),
        last_confirm_ms: 0,
    }
}

impl Manager {
    fn run(mut self) {
        info!(self.log, "symbol manager started"; "backfill_concurrency" => self.config.backfill_concurrency,
            "requests_per_symbol" => package::plan(&self.config.intervals, self.config.rest_has_1s).fetches.len());
        if let Err(error) = self.load_universe() {
            if !matches!(error, RestError::Stopped) {
                // One clear line: `run` prints the reason when it exits.
                let message = format!(
                    "cannot load the symbol universe from {}: {error}",
                    self.rest.base_url()
                );
                self.shutdown.request(StopReason::Fatal(message));
            }
            return;
        }
        let mut next_refresh_ms = epoch_ms() + self.config.refresh_ms;
        // The thread's event loop: intentionally unbounded; each step is bounded.
        while !self.shutdown.is_requested() {
            let now = epoch_ms();
            StatusBoard::beat(&self.status.manager_heartbeat_ms, now);
            StatusBoard::put(&self.status.backfill_queue_depth, self.queue.len() as u64);
            if now >= next_refresh_ms {
                self.refresh();
                next_refresh_ms = epoch_ms() + self.config.refresh_ms;
            }
            match self
                .report_rx
                .recv_timeout(Duration::from_millis(MANAGER_WAKE_MS))
            {
                Ok(report) => self.on_report(report),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                // Every shard is gone (stopping): keep the pace without a busy loop.
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    self.shutdown.sleep(Duration::from_millis(MANAGER_WAKE_MS));
                }
            }
        }
        info!(self.log, "symbol manager stopped");
    }

    fn fetch_exchange_info(&self) -> Result<ExchangeInfo, RestError> {
        let body = self.rest.get("/fapi/v1/exchangeInfo", 1)?;
        let info = parse_exchange_info(&body).map_err(|e| RestError::Transport {
            url: format!("{}/fapi/v1/exchangeInfo", self.rest.base_url()),
            reason: e.to_string(),
        })?;
        if let Some(limit) = info.weight_limit_per_minute() {
            self.rest.budget.set_limit(limit);
        }
        Ok(info)
    }

    fn fetch_tickers(&self) -> HashMap<String, Ticker24h> {
        let tickers = self
            .rest
            .get("/fapi/v1/ticker/24hr", TICKER_ALL_WEIGHT)
            .map_err(|e| e.to_string())
            .and_then(|body| parse_ticker_24h(&body).map_err(|e| e.to_string()));
        match tickers {
            Ok(rows) => rows.into_iter().collect(),
            Err(error) => {
                warn!(self.log, "ticker/24hr failed; backfilling in exchangeInfo order"; "error" => error);
                HashMap::new()
            }
        }
    }

    /// The startup universe: register, order busiest first, queue.
    fn load_universe(&mut self) -> Result<(), RestError> {
        let info = self.fetch_exchange_info()?;
        let tickers = self.fetch_tickers();
        let trading = self.classify(&info, &tickers);
        if let Some(only) = &self.config.filter.only {
            let ignored = unserved_names(only, &info, epoch_ms());
            if !ignored.is_empty() {
                warn!(self.log, "--symbols names symbols the venue does not trade; they are ignored";
                    "symbols" => ignored.join(","));
            }
        }
        let mut jobs = Vec::with_capacity(trading.len());
        let mut registry = self.registry.write();
        for (name, scales, ticker) in &trading {
            match registry.insert(name, *scales, Lifecycle::Queued, *ticker) {
                Ok(symbol) => jobs.push(Job {
                    symbol,
                    kind: JobKind::Startup,
                    attempt: 0,
                }),
                Err(error) => {
                    warn!(self.log, "symbol not registered"; "symbol" => name, "error" => error.to_string())
                }
            }
        }
        StatusBoard::put(&self.status.symbols_total, registry.serving_count() as u64);
        drop(registry);
        self.queue
            .startup_remaining
            .store(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if jobs.is_empty() {
            self.status.mark_last_package();
        }
        for job in &jobs {
            self.queue.push(*job);
        }
        self.queue
            .universe_loaded
            .store(true, std::sync::atomic::Ordering::Release);
        info!(self.log, "symbol universe loaded"; "symbols" => jobs.len(),
            "weight_limit" => self.rest.budget.snapshot().limit_per_minute);
        Ok(())
    }

    /// Register PENDING_TRADING symbols and exclusions; return the trading symbols to serve,
    /// busiest first (24 h quote volume; the name breaks ties), cut to `--max-symbols`.
    fn classify(
        &self,
        info: &ExchangeInfo,
        tickers: &HashMap<String, Ticker24h>,
    ) -> Vec<(String, klagg_shards::kline::Scales, Ticker24h)> {
        let now = epoch_ms();
        let mut trading = Vec::new();
        let mut registry = self.registry.write();
        for symbol in &info.symbols {
            let allowed = self.allowed(&symbol.symbol);
            match (symbol.listing(now), symbol.scales()) {
                (Listing::Trading, Ok(scales)) if allowed => {
                    let ticker = tickers.get(&symbol.symbol).copied().unwrap_or_default();
                    trading.push((symbol.symbol.clone(), scales, ticker));
                }
                (Listing::Pending, Ok(scales)) if allowed => {
                    let pending = Lifecycle::Pending;
                    let _ = registry.insert(&symbol.symbol, scales, pending, Ticker24h::default());
                }
                _ => registry.exclude(&symbol.symbol),
            }
        }
        trading.sort_by(|a, b| {
            b.2.quote_volume
                .cmp(&a.2.quote_volume)
                .then_with(|| a.0.cmp(&b.0))
        });
        if let Some(max) = self.config.filter.max {
            for (name, _, _) in trading.drain(max.min(trading.len())..) {
                registry.exclude(&name);
            }
        }
        trading
    }

    fn allowed(&self, name: &str) -> bool {
        let only = self.config.filter.only.as_ref();
        only.is_none_or(|only| only.iter().any(|n| n == name))
    }

    fn on_report(&mut self, report: ShardReport) {
        let ShardReport::ResyncNeeded {
            shard,
            symbol,
            reason,
        } = report;
        if self.registry.lifecycle(symbol) != Some(Lifecycle::Sent) {
            return;
        }
        // Noted before the job is queued: its activation (on a backfill thread) takes the note.
        if let Some(store) = &self.store {
            store.gap_reported(symbol, epoch_ms());
        }
        let job = Job {
            symbol,
            kind: JobKind::Resync,
            attempt: 0,
        };
        if self.queue.push(job) {
            StatusBoard::add(&self.status.resyncs, 1);
            info!(self.log, "resync queued"; "symbol" => self.registry.name(symbol).as_deref().unwrap_or("?"),
                "shard" => shard.0, "reason" => format!("{reason:?}"));
        }
    }

    /// Reconcile the registry with a fresh exchangeInfo.
    fn refresh(&mut self) {
        let info = match self.fetch_exchange_info() {
            Ok(info) => info,
            Err(error) => {
                warn!(self.log, "exchangeInfo refresh failed"; "error" => error.to_string());
                return;
            }
        };
        let now = epoch_ms();
        self.delist(&info, now);
        self.admit(&info, now);
        StatusBoard::put(
            &self.status.symbols_total,
            self.registry.read().serving_count() as u64,
        );
    }

    /// Registered symbols that left TRADING (or vanished) are deactivated and unsubscribed.
    fn delist(&mut self, info: &ExchangeInfo, now_ms: i64) {
        let gone: Vec<_> = self
            .registry
            .read()
            .entries()
            .iter()
            .filter(|e| !matches!(e.lifecycle, Lifecycle::Delisted | Lifecycle::Pending))
            .filter(|e| {
                info.find(&e.name)
                    .is_none_or(|s| s.listing(now_ms) == Listing::Delisted)
            })
            .map(|e| (e.index, e.name.clone(), e.lifecycle))
            .collect();
        for (symbol, name, before) in gone {
            self.registry
                .write()
                .transition(symbol, &[before], Lifecycle::Delisted);
            StatusBoard::add(&self.status.delistings, 1);
            info!(self.log, "symbol delisted, deactivating"; "symbol" => &*name);
            if before == Lifecycle::Sent || before == Lifecycle::Backfilling {
                send_activation(
                    &self.activation_tx,
                    DispatcherCmd::DeactivateSymbol { symbol },
                    &self.shutdown,
                );
            }
        }
    }

    /// PENDING_TRADING symbols that now trade, and trading symbols we do not know, are queued.
    fn admit(&mut self, info: &ExchangeInfo, now_ms: i64) {
        for symbol in info
            .symbols
            .iter()
            .filter(|s| s.listing(now_ms) == Listing::Trading)
        {
            let allowed = self
                .config
                .filter
                .only
                .as_ref()
                .is_none_or(|only| only.contains(&symbol.symbol));
            let Ok(scales) = symbol.scales() else {
                continue;
            };
            let mut registry = self.registry.write();
            if !allowed || registry.is_excluded(&symbol.symbol) {
                continue;
            }
            let index = match registry.index(&symbol.symbol) {
                Some(index)
                    if registry.transition(
                        index,
                        &[Lifecycle::Pending, Lifecycle::Queued],
                        Lifecycle::Queued,
                    ) =>
                {
                    index
                }
                Some(_) => continue,
                None => match registry.insert(
                    &symbol.symbol,
                    scales,
                    Lifecycle::Queued,
                    Ticker24h::default(),
                ) {
                    Ok(index) => index,
                    Err(_) => continue,
                },
            };
            drop(registry);
            if self.queue.push(Job {
                symbol: index,
                kind: JobKind::Listing,
                attempt: 0,
            }) {
                StatusBoard::add(&self.status.listings, 1);
                info!(self.log, "symbol admitted by exchangeInfo refresh"; "symbol" => &symbol.symbol);
            }
        }
    }
}

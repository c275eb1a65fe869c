//! The harness of the shard integration tests (test thread): starts the in-process
//! simulator and N shards over real loopback sockets, plays the ActivationDispatcher (package →
//! ActivateSymbol → ack → SubscribeOne, and the same again on every ResyncNeeded), collects the
//! kline output and compares it with the simulator's REST klines field for field.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use klagg_bench::sim::{Sim, SimConfig, SimHandle, SymbolInfo};
use klagg_bench::workload::sim_specs;
use klagg_shards::kline::Interval;
use klagg_shards::protocol::{
    ActivationId, InitialSymbolData, KLINE_OUT_CAPACITY, KlineMsg, SHARD_REPORT_CAPACITY, ShardCmd,
    ShardId, ShardReport, SymbolIndex, SymbolSpec, WorkerAck, WorkerCmd, WsCmd,
};
use klagg_shards::shard::{KlineSink, ShardConfig, ShardOutputs, ShardThread, spawn_shard};

use super::klines::{self, Finals, sim_interval, sim_klines, to_kline};

/// Generous bound for anything the shards should do "at once" on a noisy 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One simulated symbol as the harness drives it.
#[derive(Debug, Clone)]
pub struct TestSymbol {
    pub spec: SymbolSpec,
    pub shard: usize,
    /// Per interval: open time of the package kline of the latest activation.
    pub valid_from: HashMap<Interval, i64>,
    pub activations: u64,
}

/// The simulator, the shards and their outputs.
pub struct Harness {
    pub sim: SimHandle,
    pub shards: Vec<ShardThread>,
    pub intervals: Vec<Interval>,
    pub symbols: BTreeMap<SymbolIndex, TestSymbol>,
    pub klines_rx: Receiver<KlineMsg>,
    pub reports_rx: Receiver<ShardReport>,
    ack_tx: Sender<WorkerAck>,
    ack_rx: Receiver<WorkerAck>,
    next_activation: u64,
    /// When each symbol's latest activation was acknowledged.
    pub acked_at: HashMap<String, Instant>,
    /// Final klines received, last word per (symbol, interval, open time).
    pub finals: Finals,
    pub resyncs: u64,
}

impl Harness {
    /// Start a simulator and `shard_count` shards (configured by `tweak`).
    pub fn start(
        sim_config: SimConfig,
        shard_count: usize,
        intervals: &[Interval],
        tweak: impl Fn(&mut ShardConfig),
    ) -> Harness {
        let sim = Sim::start(sim_config).expect("simulator starts");
        let (klines_tx, klines_rx) = bounded(KLINE_OUT_CAPACITY);
        let (reports_tx, reports_rx) = bounded(SHARD_REPORT_CAPACITY);
        let mut shards = Vec::new();
        for index in 0..shard_count {
            let mut config =
                ShardConfig::new(ShardId(index as u16), intervals.to_vec(), sim.ws_url());
            config.heartbeat_interval = Duration::from_millis(50);
            config.io.extra_ca_pem = sim.tls().map(|tls| tls.ca_pem.clone());
            tweak(&mut config);
            let outputs = ShardOutputs {
                klines: vec![KlineSink {
                    tx: klines_tx.clone(),
                    updates: false,
                }],
                reports: reports_tx.clone(),
            };
            shards.push(spawn_shard(config, outputs).expect("shard starts"));
        }
        let (ack_tx, ack_rx) = bounded(1024);
        Harness {
            sim,
            shards,
            intervals: intervals.to_vec(),
            symbols: BTreeMap::new(),
            klines_rx,
            reports_rx,
            ack_tx,
            ack_rx,
            next_activation: 1,
            acked_at: HashMap::new(),
            finals: BTreeMap::new(),
            resyncs: 0,
        }
    }

    /// The simulator's trading symbols, first `count`.
    pub fn sim_symbols(&self, count: usize) -> Vec<SymbolInfo> {
        self.sim.symbols().into_iter().take(count).collect()
    }

    /// Register `count` symbols, spread round-robin over the shards, activate and subscribe them.
    pub fn activate_all(&mut self, count: usize) {
        for (position, spec) in sim_specs(&self.sim, count).into_iter().enumerate() {
            self.symbols.insert(
                spec.index,
                TestSymbol {
                    spec,
                    shard: position % self.shards.len(),
                    valid_from: HashMap::new(),
                    activations: 0,
                },
            );
        }
        let indices: Vec<_> = self.symbols.keys().copied().collect();
        for index in indices {
            self.activate(index);
        }
    }

    /// The dispatcher's protocol for one symbol: package, ActivateSymbol, wait for the ack,
    /// then SubscribeOne.
    pub fn activate(&mut self, index: SymbolIndex) {
        let symbol = self.symbols[&index].clone();
        let (initial, valid_from) = self.package(&symbol.spec);
        let activation = ActivationId(self.next_activation);
        self.next_activation += 1;
        self.send(
            symbol.shard,
            ShardCmd::Worker(WorkerCmd::ActivateSymbol {
                symbol: symbol.spec.clone(),
                initial_data: initial,
                activation,
                ack: self.ack_tx.clone(),
            }),
        );
        let ack = self
            .ack_rx
            .recv_timeout(PATIENCE)
            .expect("ack within patience");
        assert_eq!((ack.symbol, ack.activation), (index, activation));
        assert_eq!(ack.result, Ok(()), "activation of {}", symbol.spec.name);
        self.acked_at
            .insert(symbol.spec.name.to_string(), Instant::now());
        let entry = self.symbols.get_mut(&index).expect("known");
        entry.valid_from = valid_from;
        entry.activations += 1;
        self.send(symbol.shard, ShardCmd::Ws(WsCmd::SubscribeOne(index)));
    }

    pub fn send(&self, shard: usize, cmd: ShardCmd) {
        self.shards[shard]
            .handle
            .try_send(cmd)
            .expect("inbox has room");
    }

    /// An initial package from the simulator's REST klines, consistent with the last trade id:
    /// retried until no trade arrived between reading the trades and the klines.
    fn package(&self, spec: &SymbolSpec) -> (InitialSymbolData, HashMap<Interval, i64>) {
        for _ in 0..50 {
            let trades = self.sim.trades(&spec.name);
            let Some(last) = trades.last() else {
                // No trade yet: start at the first live trade; nothing to compare before it.
                let initial = InitialSymbolData {
                    klines: vec![None; self.intervals.len()],
                    taken_at_ms: 0,
                    last_agg_id: None,
                };
                let never = self.intervals.iter().map(|&i| (i, i64::MAX)).collect();
                return (initial, never);
            };
            let mut klines = Vec::new();
            let mut valid_from = HashMap::new();
            let mut consistent = true;
            let mut intervals = self.intervals.clone();
            intervals.sort_unstable();
            for interval in intervals {
                let open = interval.open_time(last.time_ms);
                let rest = self
                    .sim
                    .klines(&spec.name, sim_interval(interval), open, open);
                let Some(kline) = rest.first() else {
                    consistent = false;
                    break;
                };
                consistent &= kline.last_id == last.last_id as i64;
                klines.push(Some(to_kline(kline, spec.scales)));
                valid_from.insert(interval, open);
            }
            if consistent && self.sim.trades(&spec.name).last() == Some(last) {
                let initial = InitialSymbolData {
                    klines,
                    taken_at_ms: last.time_ms,
                    last_agg_id: Some(last.agg_id as i64),
                };
                return (initial, valid_from);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("no consistent package for {}", spec.name);
    }

    /// Drain outputs for `duration`, answering resync requests with re-activations.
    pub fn pump(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.drain_klines();
            while let Ok(ShardReport::ResyncNeeded { symbol, .. }) = self.reports_rx.try_recv() {
                self.resyncs += 1;
                self.activate(symbol);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.drain_klines();
    }

    fn drain_klines(&mut self) {
        while let Ok(message) = self.klines_rx.try_recv() {
            klines::record(&mut self.finals, &message);
        }
    }

    /// Compare every final kline at or after each symbol's latest package with REST; returns
    /// how many were compared per interval. Also checks no period is missing in between.
    pub fn assert_exact(&self) -> HashMap<Interval, usize> {
        let mut compared = HashMap::new();
        for symbol in self.symbols.values() {
            let (index, name) = (symbol.spec.index, &symbol.spec.name);
            for &interval in &self.intervals {
                let from = symbol.valid_from[&interval];
                let ours = klines::recorded(&self.finals, index, interval, (from, i64::MAX));
                let Some(last) = ours.last() else {
                    continue;
                };
                let to = last.open_time_ms;
                let truth = sim_klines(&self.sim, name, interval, (from, to), symbol.spec.scales);
                let what = format!("{name} {interval}: from {from} to {to}");
                klines::assert_same(&ours, &truth, &what);
                *compared.entry(interval).or_default() += ours.len();
            }
        }
        compared
    }

    /// Poll `check` until it holds (or panic after [`PATIENCE`]).
    pub fn wait_for(&mut self, what: &str, mut check: impl FnMut(&Harness) -> bool) {
        let until = Instant::now() + PATIENCE;
        while !check(self) {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            self.pump(Duration::from_millis(20));
        }
    }

    /// Stop every shard and the simulator.
    pub fn stop(self) {
        for shard in &self.shards {
            let _ = shard.handle.try_send(ShardCmd::Shutdown);
        }
        for shard in self.shards {
            shard.join.join().expect("shard thread exits cleanly");
        }
        self.sim.shutdown();
    }
}

//! Deterministic simulation of the activation protocol (one test thread): a SymbolManager-side
//! producer, the real `DispatcherCore`, N fake Workers, a fake clock and a fake transport
//! (bounded shard inboxes, an ack network that drops, duplicates, delays and reorders), stepped in
//! an order chosen by a seeded PRNG. After every step the invariants are checked:
//! - each symbol has at most one owner (one shard holds it live, barring a queued deactivation);
//! - no `SubscribeOne` is sent before the dispatcher received the Ok ack of that attempt, and a
//!   Worker never sees a subscription for a symbol it does not hold;
//! - at most `1 + ACTIVATION_RETRY_MAX` sends per request;
//! - a failed symbol never blocks others: once faults stop, every symbol that can be activated is
//!   Active and subscribed, and every doomed one is Failed.
//!
//! `KLAGG_SIM_SEEDS=N` runs N seeds (default 500); `KLAGG_SIM_SEED=S` runs only seed S. A failure
//! prints its seed. `canary_*` tests break an invariant on purpose and must be caught.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crossbeam_channel::{TrySendError, bounded};
use klagg::activation_dispatcher::{
    DispatchCounters, DispatchState, DispatcherCmd, DispatcherCore, ShardLink,
};
use klagg::constants::{ACTIVATION_ACK_TIMEOUT_MS, ACTIVATION_RETRY_MAX};
use klagg_shards::kline::Scales;
use klagg_shards::protocol::{
    ActivationError, ActivationId, InitialSymbolData, ShardCmd, ShardId, SymbolIndex, SymbolSpec,
    WorkerAck, WorkerCmd, WsCmd,
};

/// splitmix64: small, seedable, good enough for scheduling choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Default)]
struct Canary {
    /// Send a subscription for a symbol that was never acked.
    early_subscribe: bool,
    /// Let one symbol be activated on a second shard while the first still holds it.
    second_owner: bool,
}

/// Shard inboxes plus the checker's view of everything sent.
struct Transport {
    inboxes: Vec<VecDeque<ShardCmd>>,
    capacity: usize,
    full_percent: u64,
    rng: Rng,
    /// Per symbol: the last activation sent (shard, id) and sends since the last request.
    last_activate: HashMap<SymbolIndex, (ShardId, ActivationId)>,
    sends_per_request: HashMap<SymbolIndex, u32>,
    /// Ok acks the dispatcher has received (applied or not).
    delivered_ok: HashSet<(SymbolIndex, ActivationId)>,
    violations: Vec<String>,
}

impl ShardLink for Transport {
    fn try_send(&mut self, shard: ShardId, cmd: ShardCmd) -> Result<(), TrySendError<ShardCmd>> {
        let inbox = &self.inboxes[usize::from(shard.0)];
        if inbox.len() >= self.capacity || self.rng.chance(self.full_percent) {
            return Err(TrySendError::Full(cmd));
        }
        match &cmd {
            ShardCmd::Worker(WorkerCmd::ActivateSymbol {
                symbol, activation, ..
            }) => {
                self.last_activate
                    .insert(symbol.index, (shard, *activation));
                let sends = self.sends_per_request.entry(symbol.index).or_insert(0);
                *sends += 1;
                if *sends > 1 + ACTIVATION_RETRY_MAX {
                    self.violations.push(format!(
                        "{:?} sent {} times for one request",
                        symbol.index, sends
                    ));
                }
            }
            ShardCmd::Ws(WsCmd::SubscribeOne(symbol)) => {
                let acked = self.last_activate.get(symbol).is_some_and(|&(owner, id)| {
                    owner == shard && self.delivered_ok.contains(&(*symbol, id))
                });
                if !acked {
                    self.violations.push(format!(
                        "subscription of {symbol:?} on {shard:?} before its Ok ack"
                    ));
                }
            }
            _ => {}
        }
        self.inboxes[usize::from(shard.0)].push_back(cmd);
        Ok(())
    }
}

#[derive(Default)]
struct FakeWorker {
    live: HashSet<SymbolIndex>,
    subscribed: HashSet<SymbolIndex>,
}

struct World {
    seed: u64,
    rng: Rng,
    now_ms: i64,
    core: DispatcherCore,
    transport: Transport,
    workers: Vec<FakeWorker>,
    /// `activation_tx`: bounded, the producer retries when it is full.
    channel: VecDeque<DispatcherCmd>,
    channel_capacity: usize,
    /// Producer side: requests not yet accepted by the channel.
    pending: VecDeque<DispatcherCmd>,
    /// The ack network: (deliver at, ack).
    network: Vec<(i64, WorkerAck)>,
    symbol_count: u32,
    doomed: HashSet<SymbolIndex>,
    delisted: HashSet<SymbolIndex>,
    faults: bool,
    canary: Canary,
}

fn spec(index: u32) -> SymbolSpec {
    SymbolSpec {
        index: SymbolIndex(index),
        name: Arc::from(format!("SIM{index}USDT")),
        scales: Scales { price: 2, qty: 3 },
    }
}

fn activate(index: u32, expected: u64) -> DispatcherCmd {
    DispatcherCmd::ActivateSymbol {
        symbol: spec(index),
        initial_data: InitialSymbolData {
            klines: vec![None],
            taken_at_ms: 0,
            last_agg_id: None,
        },
        expected_trades_24h: expected,
    }
}

impl World {
    fn new(seed: u64, canary: Canary) -> World {
        let mut rng = Rng(seed);
        let shard_count = 1 + rng.below(4) as usize;
        let symbol_count = 1 + rng.below(24) as u32;
        let (ack_tx, _ack_rx) = bounded(1);
        let transport = Transport {
            inboxes: (0..shard_count).map(|_| VecDeque::new()).collect(),
            capacity: 1 + rng.below(8) as usize,
            full_percent: rng.below(20),
            rng: Rng(seed ^ 0xA5A5),
            last_activate: HashMap::new(),
            sends_per_request: HashMap::new(),
            delivered_ok: HashSet::new(),
            violations: Vec::new(),
        };
        let doomed = (0..symbol_count)
            .filter(|_| rng.chance(10))
            .map(SymbolIndex)
            .collect();
        let pending = (0..symbol_count)
            .map(|i| activate(i, rng.below(1_000_000)))
            .collect();
        World {
            seed,
            now_ms: 1_700_000_000_000,
            core: DispatcherCore::new(shard_count, ack_tx),
            transport,
            workers: (0..shard_count).map(|_| FakeWorker::default()).collect(),
            channel: VecDeque::new(),
            channel_capacity: 1 + rng.below(6) as usize,
            pending,
            network: Vec::new(),
            symbol_count,
            doomed,
            delisted: HashSet::new(),
            faults: true,
            canary,
            rng,
        }
    }

    fn step(&mut self) {
        match self.rng.below(7) {
            0 => self.produce(),
            1 => self.dispatcher_recv(),
            2 | 3 => self.worker_step(),
            4 => self.deliver_ack(),
            5 => self.core.tick(self.now_ms, &mut self.transport),
            _ => self.now_ms += self.rng.below(400) as i64,
        }
        if self.faults && self.rng.chance(2) {
            self.chaos_request();
        }
    }

    /// Producer: move one request into the bounded channel (a full channel keeps it).
    fn produce(&mut self) {
        if self.channel.len() >= self.channel_capacity {
            return;
        }
        if let Some(cmd) = self.pending.pop_front() {
            self.channel.push_back(cmd);
        }
    }

    /// Resync an active symbol, or delist one.
    fn chaos_request(&mut self) {
        let symbol = self.rng.below(u64::from(self.symbol_count)) as u32;
        if self.delisted.contains(&SymbolIndex(symbol)) {
            return;
        }
        if self.rng.chance(15) {
            self.delisted.insert(SymbolIndex(symbol));
            self.pending.push_back(DispatcherCmd::DeactivateSymbol {
                symbol: SymbolIndex(symbol),
            });
        } else if self.core.state(SymbolIndex(symbol)) == DispatchState::Active {
            self.pending.push_back(activate(symbol, 1));
        }
    }

    fn dispatcher_recv(&mut self) {
        if let Some(cmd) = self.channel.pop_front() {
            if let DispatcherCmd::ActivateSymbol { symbol, .. } = &cmd {
                self.transport.sends_per_request.insert(symbol.index, 0);
            }
            self.core.handle_cmd(self.now_ms, cmd, &mut self.transport);
        }
    }

    fn worker_step(&mut self) {
        let shard = self.rng.below(self.workers.len() as u64) as usize;
        let Some(cmd) = self.transport.inboxes[shard].pop_front() else {
            return;
        };
        let shard_id = ShardId(shard as u16);
        match cmd {
            ShardCmd::Worker(WorkerCmd::ActivateSymbol {
                symbol, activation, ..
            }) => {
                self.worker_activate(shard_id, symbol.index, activation);
            }
            ShardCmd::Worker(WorkerCmd::DeactivateSymbol { symbol }) => {
                self.workers[shard].live.remove(&symbol);
                self.workers[shard].subscribed.remove(&symbol);
            }
            ShardCmd::Ws(WsCmd::SubscribeOne(symbol)) => {
                if !self.workers[shard].live.contains(&symbol) {
                    self.transport.violations.push(format!(
                        "{shard_id:?} got a subscription of {symbol:?} it does not hold"
                    ));
                }
                self.workers[shard].subscribed.insert(symbol);
            }
            ShardCmd::Ws(WsCmd::UnsubscribeOne(symbol)) => {
                self.workers[shard].subscribed.remove(&symbol);
            }
            ShardCmd::Shutdown => {}
        }
    }

    fn worker_activate(&mut self, shard: ShardId, symbol: SymbolIndex, activation: ActivationId) {
        let fails = self.doomed.contains(&symbol) || (self.faults && self.rng.chance(15));
        let worker = &mut self.workers[usize::from(shard.0)];
        let result = if fails {
            worker.live.remove(&symbol);
            worker.subscribed.remove(&symbol);
            Err(ActivationError::NoFreeSlot { capacity: 0 })
        } else {
            worker.live.insert(symbol);
            Ok(())
        };
        let ack = WorkerAck {
            shard,
            symbol,
            activation,
            result,
        };
        if self.faults && self.rng.chance(10) {
            return; // dropped
        }
        let max_delay = if self.faults {
            2 * ACTIVATION_ACK_TIMEOUT_MS
        } else {
            50
        };
        let copies = if self.faults && self.rng.chance(10) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now_ms + self.rng.below(max_delay as u64) as i64;
            self.network.push((at, ack.clone()));
        }
    }

    /// Deliver one due ack, picked at random (reordering).
    fn deliver_ack(&mut self) {
        let due: Vec<usize> = (0..self.network.len())
            .filter(|&i| self.network[i].0 <= self.now_ms)
            .collect();
        if due.is_empty() {
            return;
        }
        let pick = due[self.rng.below(due.len() as u64) as usize];
        let (_, ack) = self.network.swap_remove(pick);
        if ack.result.is_ok() {
            self.transport
                .delivered_ok
                .insert((ack.symbol, ack.activation));
        }
        self.core.handle_ack(self.now_ms, ack, &mut self.transport);
    }

    fn inject_canaries(&mut self) {
        if self.canary.early_subscribe && self.now_ms % 7 == 0 {
            let symbol = SymbolIndex(0);
            if self.core.state(symbol) == DispatchState::Activating {
                let _ = self
                    .transport
                    .try_send(ShardId(0), ShardCmd::Ws(WsCmd::SubscribeOne(symbol)));
            }
        }
        if self.canary.second_owner && self.workers.len() > 1 {
            let live_somewhere = self.workers[0].live.iter().next().copied();
            if let Some(symbol) = live_somewhere {
                self.workers[1].live.insert(symbol);
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(violation) = self.transport.violations.first() {
            return Err(violation.clone());
        }
        for index in 0..self.symbol_count {
            self.check_symbol(SymbolIndex(index))?;
        }
        let count = |wanted| {
            (0..self.symbol_count)
                .filter(|&i| self.core.state(SymbolIndex(i)) == wanted)
                .count()
        };
        if count(DispatchState::Active) != self.core.active_count()
            || count(DispatchState::Failed) != self.core.failed_count()
        {
            return Err("active/failed counts drifted from the states".to_string());
        }
        Ok(())
    }

    fn check_symbol(&self, symbol: SymbolIndex) -> Result<(), String> {
        let state = self.core.state(symbol);
        let owned = matches!(
            state,
            DispatchState::Queued
                | DispatchState::Activating
                | DispatchState::Backoff
                | DispatchState::Active
        );
        if owned != self.core.owner(symbol).is_some() {
            return Err(format!(
                "{symbol:?} in {state:?} with owner {:?}",
                self.core.owner(symbol)
            ));
        }
        if self.core.attempts(symbol) > 1 + ACTIVATION_RETRY_MAX {
            return Err(format!(
                "{symbol:?} attempted {} times",
                self.core.attempts(symbol)
            ));
        }
        let holders = (0..self.workers.len())
            .filter(|&s| self.workers[s].live.contains(&symbol))
            .filter(|&s| !self.deactivation_queued(s, symbol))
            .count();
        if holders > 1 {
            return Err(format!("{symbol:?} is live on {holders} shards"));
        }
        Ok(())
    }

    fn deactivation_queued(&self, shard: usize, symbol: SymbolIndex) -> bool {
        self.transport.inboxes[shard].iter().any(|cmd| {
            matches!(cmd, ShardCmd::Worker(WorkerCmd::DeactivateSymbol { symbol: s }) if *s == symbol)
        })
    }

    /// Faults off: run until quiet, then every symbol must have reached its final state.
    fn settle(&mut self) -> Result<(), String> {
        self.faults = false;
        self.transport.full_percent = 0;
        for _ in 0..200_000 {
            if self.quiet() {
                break;
            }
            self.step();
            self.check()?;
        }
        for index in 0..self.symbol_count {
            self.check_final(SymbolIndex(index))?;
        }
        Ok(())
    }

    fn quiet(&self) -> bool {
        self.pending.is_empty()
            && self.channel.is_empty()
            && self.network.is_empty()
            && self.transport.inboxes.iter().all(VecDeque::is_empty)
            && !self.core.has_backlog()
            && self.core.next_timer_ms().is_none()
    }

    fn check_final(&self, symbol: SymbolIndex) -> Result<(), String> {
        let state = self.core.state(symbol);
        let expected = if self.delisted.contains(&symbol) {
            // Deactivated, or still Failed when it had failed before the delisting.
            if state == DispatchState::Failed {
                state
            } else {
                DispatchState::Deactivated
            }
        } else if self.doomed.contains(&symbol) {
            DispatchState::Failed
        } else if state == DispatchState::Failed {
            // Random faults may exhaust the retries of a healthy symbol: allowed, but it must
            // not be live anywhere.
            DispatchState::Failed
        } else {
            DispatchState::Active
        };
        if state != expected {
            return Err(format!("{symbol:?} ended {state:?}, expected {expected:?}"));
        }
        let subscribed = self
            .workers
            .iter()
            .filter(|w| w.subscribed.contains(&symbol))
            .count();
        let wanted = usize::from(expected == DispatchState::Active);
        if subscribed != wanted {
            return Err(format!(
                "{symbol:?} ({state:?}) subscribed on {subscribed} shards"
            ));
        }
        Ok(())
    }
}

fn run_seed(seed: u64, canary: Canary) -> Result<DispatchCounters, String> {
    let mut world = World::new(seed, canary);
    let steps = 500 + world.rng.below(2_500);
    for _ in 0..steps {
        world.step();
        world.inject_canaries();
        world.check()?;
    }
    world.settle()?;
    assert_eq!(world.seed, seed);
    Ok(world.core.counters())
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("KLAGG_SIM_SEED") {
        return vec![seed.parse().expect("KLAGG_SIM_SEED is a number")];
    }
    let count = std::env::var("KLAGG_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500u64);
    (0..count).collect()
}

#[test]
fn activation_protocol_holds_its_invariants_under_faults() {
    let seeds = seeds();
    let mut total = DispatchCounters::default();
    for &seed in &seeds {
        match run_seed(seed, Canary::default()) {
            Ok(c) => {
                total.sends += c.sends;
                total.acks_ok += c.acks_ok;
                total.acks_err += c.acks_err;
                total.timeouts += c.timeouts;
                total.stale_acks += c.stale_acks;
                total.inbox_full += c.inbox_full;
                total.failed += c.failed;
                total.deactivations += c.deactivations;
                total.subscribes += c.subscribes;
            }
            Err(violation) => panic!("seed {seed}: {violation} (rerun with KLAGG_SIM_SEED={seed})"),
        }
    }
    eprintln!(
        "activation simulation: {} seeds passed; totals {total:?}",
        seeds.len()
    );
    // The faults were exercised, not just configured.
    if seeds.len() >= 100 {
        assert!(total.timeouts > 0 && total.stale_acks > 0 && total.acks_err > 0);
        assert!(total.inbox_full > 0 && total.failed > 0 && total.deactivations > 0);
    }
}

#[test]
fn canary_early_subscription_is_caught() {
    let caught = (0..200).find_map(|seed| {
        run_seed(
            seed,
            Canary {
                early_subscribe: true,
                ..Canary::default()
            },
        )
        .err()
    });
    let violation = caught.expect("the checker missed an early subscription");
    assert!(
        violation.contains("before its Ok ack") || violation.contains("does not hold"),
        "{violation}"
    );
}

#[test]
fn canary_second_owner_is_caught() {
    let caught = (0..200).find_map(|seed| {
        run_seed(
            seed,
            Canary {
                second_owner: true,
                ..Canary::default()
            },
        )
        .err()
    });
    let violation = caught.expect("the checker missed a second owner");
    assert!(violation.contains("live on"), "{violation}");
}

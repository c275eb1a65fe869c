//! The market-generator thread (`sim-generator`): owns the synthetic model, the replay cursors
//! and the periodic publishers. Each loop it produces the trades that are due (virtual 10 ms
//! ticks, so a seed fixes the trades relative to start), appends them to the store, publishes
//! aggTrade frames (honouring skip/duplicate faults), runs lifecycle changes, kline and
//! mini-ticker pushes, and the periodic faults (`--list-every` … `--duplicate-ids-every`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::faults::{self, FaultSchedule, PeriodicFault};
use super::market::{Market, SymbolStatus, TradeSource};
use super::publish::{self, KlinePublisher};
use super::render::{self, StoredTrade};
use super::replay::ReplayCursor;
use super::rng::SimRng;
use super::synth::{Synth, TICK_MS};
use super::{Shared, now_ms, universe};

/// Ticks produced per loop at most when the thread fell behind (keeps publishing responsive).
const MAX_CATCH_UP_TICKS: usize = 200;
const MINI_TICKER_PERIOD_MS: i64 = 1_000;
const LOOP_SLEEP_MAX: Duration = Duration::from_millis(10);

/// Generator-thread state.
#[derive(Debug)]
pub struct Generator {
    shared: Arc<Shared>,
    synth: Synth,
    replay: Vec<ReplayCursor>,
    fault_rng: SimRng,
    klines: KlinePublisher,
    next_tick_ms: i64,
    next_kline_ms: i64,
    next_ticker_ms: i64,
    schedule: FaultSchedule,
    malformed_sent: u64,
}

/// A trade ready to send: stream, payload and how many copies (0 = withheld, 2 = duplicated).
type Frame = (Arc<str>, String, u8);

impl Generator {
    /// Build the generator and produce `history` of trades before `start_ms` (not published).
    pub fn new(shared: Arc<Shared>, replay: Vec<ReplayCursor>, start_ms: i64) -> Self {
        let cfg = &shared.cfg;
        let history_ms = cfg.history.as_millis() as i64;
        let mut g = Generator {
            synth: Synth::new(cfg.seed, cfg.trade_rate),
            fault_rng: SimRng::new(cfg.seed ^ 0xFA17),
            klines: KlinePublisher::default(),
            next_tick_ms: (start_ms - history_ms).div_euclid(TICK_MS) * TICK_MS,
            next_kline_ms: start_ms,
            next_ticker_ms: start_ms,
            schedule: FaultSchedule::new(cfg, start_ms),
            malformed_sent: 0,
            replay,
            shared,
        };
        let mut market = g.shared.market.lock();
        while g.next_tick_ms + TICK_MS <= start_ms {
            let n = g.synth.tick(&mut market, g.next_tick_ms).len();
            g.shared
                .hub
                .counters
                .trades_published
                .fetch_add(n as u64, Ordering::Relaxed);
            g.next_tick_ms += TICK_MS;
        }
        if g.shared.cfg.firehose.is_some() {
            // Live aggTrades come from the firehose; synthetic ones would break its id runs.
            g.synth.set_rate(0);
        }
        for cursor in &mut g.replay {
            let n = cursor.due(&mut market, start_ms).len();
            g.shared
                .hub
                .counters
                .trades_published
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        drop(market);
        g
    }

    /// The thread body: an event loop that ends when the simulator shuts down.
    pub fn run(mut self) {
        while !self.shared.shutdown.load(Ordering::Relaxed) {
            let now = now_ms();
            self.produce(now);
            self.lifecycle(now);
            if now >= self.next_kline_ms {
                self.klines.publish(&self.shared, now, self.next_tick_ms);
                self.next_kline_ms = now + self.shared.cfg.kline_update_interval.as_millis() as i64;
            }
            if now >= self.next_ticker_ms {
                publish::publish_mini_tickers(&self.shared, now);
                self.next_ticker_ms = now + MINI_TICKER_PERIOD_MS;
            }
            self.periodic_faults(now);
            let next = (self.next_tick_ms + TICK_MS).min(self.next_kline_ms);
            let wait = Duration::from_millis((next - now_ms()).clamp(1, 1_000) as u64);
            std::thread::sleep(wait.min(LOOP_SLEEP_MAX));
        }
    }

    fn produce(&mut self, now: i64) {
        let mut frames: Vec<Frame> = Vec::new();
        let mut produced = 0u64;
        {
            let mut market = self.shared.market.lock();
            let mut ticks = 0;
            while self.next_tick_ms + TICK_MS <= now && ticks < MAX_CATCH_UP_TICKS {
                let trades = self.synth.tick(&mut market, self.next_tick_ms);
                produced += trades.len() as u64;
                render_all(&mut market, &trades, &mut frames);
                self.next_tick_ms += TICK_MS;
                ticks += 1;
            }
            for cursor in &mut self.replay {
                let trades = cursor.due(&mut market, now);
                produced += trades.len() as u64;
                render_all(&mut market, &trades, &mut frames);
            }
        }
        self.shared
            .hub
            .counters
            .trades_published
            .fetch_add(produced, Ordering::Relaxed);
        for (stream, payload, copies) in frames {
            let payload: Arc<str> = Arc::from(payload);
            for _ in 0..copies {
                self.shared.hub.publish(&stream, payload.clone());
            }
        }
    }

    fn lifecycle(&mut self, now: i64) {
        let mut events = Vec::new();
        {
            let mut market = self.shared.market.lock();
            for b in market.books.iter_mut() {
                if b.status_change_ms.is_some_and(|t| t <= now) {
                    b.status = match b.status {
                        SymbolStatus::PendingTrading => SymbolStatus::Trading,
                        SymbolStatus::Settling => SymbolStatus::Close,
                        s => s,
                    };
                    b.status_change_ms = None;
                    events.push(publish::contract_info(b, now));
                }
            }
        }
        for e in events {
            publish::publish_contract_info(&self.shared, e);
        }
    }

    fn periodic_faults(&mut self, now: i64) {
        for fault in self.schedule.due(now) {
            self.fire(fault, now);
        }
    }

    fn fire(&mut self, fault: PeriodicFault, now: i64) {
        let shared = &*self.shared;
        match fault {
            PeriodicFault::List => self.list_random(now),
            PeriodicFault::Delist => self.delist_random(now),
            PeriodicFault::Disconnect => {
                faults::drop_connections(shared, None);
            }
            PeriodicFault::RestError => faults::inject_rest_errors(shared, 1),
            PeriodicFault::Stall => {
                let until = now.saturating_add(shared.cfg.stall_for.as_millis() as i64);
                faults::stall_connections(shared, None, until);
            }
            PeriodicFault::Malformed => {
                let frame = faults::malformed_kind(self.malformed_sent);
                self.malformed_sent += 1;
                faults::send_malformed(shared, None, &frame);
            }
            PeriodicFault::SkipIds | PeriodicFault::DuplicateIds => {
                let pick = faults::pick_active(&shared.market.lock(), &mut self.fault_rng, now);
                if let Some(symbol) = pick {
                    let duplicate = fault == PeriodicFault::DuplicateIds;
                    let _ =
                        faults::disturb_agg_ids(shared, &symbol, shared.cfg.fault_ids, duplicate);
                }
            }
        }
    }

    fn list_random(&mut self, now: i64) {
        let taken: HashSet<String> = self
            .shared
            .market
            .lock()
            .books
            .iter()
            .map(|b| b.spec.name.clone())
            .collect();
        let spec = universe::new_listing(&mut self.fault_rng, &taken);
        let _ = list_spec(&self.shared, spec, now);
    }

    fn delist_random(&mut self, now: i64) {
        let trading: Vec<String> = {
            let m = self.shared.market.lock();
            m.books
                .iter()
                .filter(|b| b.status == SymbolStatus::Trading && b.source == TradeSource::Synthetic)
                .map(|b| b.spec.name.clone())
                .collect()
        };
        if !trading.is_empty() {
            let pick = &trading[self.fault_rng.below(trading.len() as u64) as usize];
            let _ = delist(&self.shared, pick, now);
        }
    }
}

/// Render the stream frames of freshly appended trades, applying skip/duplicate faults.
fn render_all(market: &mut Market, trades: &[(usize, StoredTrade)], frames: &mut Vec<Frame>) {
    for (idx, t) in trades {
        let b = &mut market.books[*idx];
        let copies = if b.skip_pending > 0 {
            b.skip_pending -= 1;
            0
        } else if b.dup_pending > 0 {
            b.dup_pending -= 1;
            2
        } else {
            1
        };
        let mut payload = String::with_capacity(160);
        render::agg_trade_event(
            &mut payload,
            &b.spec.name,
            t,
            b.spec.price_dp,
            b.spec.qty_dp,
        );
        frames.push((b.agg_stream.clone(), payload, copies));
    }
}

/// List a symbol: PENDING_TRADING now, TRADING after the listing delay.
pub fn list_spec(shared: &Shared, spec: universe::SymbolSpec, now: i64) -> Result<(), String> {
    let delay = shared.cfg.listing_delay.as_millis() as i64;
    let event = {
        let mut m = shared.market.lock();
        if m.find(&spec.name).is_some() {
            return Err(spec.name);
        }
        let idx = m.add(
            spec,
            SymbolStatus::PendingTrading,
            now + delay,
            TradeSource::Synthetic,
        );
        m.books[idx].status_change_ms = Some(now + delay);
        publish::contract_info(&m.books[idx], now)
    };
    publish::publish_contract_info(shared, event);
    Ok(())
}

/// Delist a symbol: SETTLING now (trades stop, deliveryDate = now), CLOSE after the delay.
pub fn delist(shared: &Shared, name: &str, now: i64) -> Result<(), String> {
    let delay = shared.cfg.settle_delay.as_millis() as i64;
    let event = {
        let mut m = shared.market.lock();
        let Some(idx) = m.find(name) else {
            return Err(name.to_string());
        };
        let b = &mut m.books[idx];
        if matches!(b.status, SymbolStatus::Settling | SymbolStatus::Close) {
            return Ok(());
        }
        b.status = SymbolStatus::Settling;
        b.delivery_ms = now;
        b.status_change_ms = Some(now + delay);
        publish::contract_info(b, now)
    };
    publish::publish_contract_info(shared, event);
    Ok(())
}

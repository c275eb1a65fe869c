//! Periodic stream publishers (run on the generator thread): `<symbol>@kline_<interval>`
//! updates every `kline_update_interval` with the final `x:true` update `kline_final_delay`
//! after the close, `!miniTicker@arr` every second for symbols that traded, and `!contractInfo`
//! on lifecycle changes. Klines come from the reference aggregation of the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Shared;
use super::interval::Interval;
use super::market::{Book, Market};
use super::render;

/// Finals waiting per kline stream at most (older ones are dropped).
const MAX_PENDING_FINALS: usize = 64;
const MINI_TICKER_STREAM: &str = "!miniTicker@arr";
/// The contract-info stream name.
pub const CONTRACT_INFO_STREAM: &str = "!contractInfo";

#[derive(Debug)]
struct KlineStreamState {
    current_open: i64,
    last_sent_id: i64,
    pending_finals: VecDeque<i64>,
}

/// State of the kline-stream publisher.
#[derive(Debug, Default)]
pub struct KlinePublisher {
    streams: HashMap<String, KlineStreamState>,
}

/// Split `btcusdt@kline_1m` into (`BTCUSDT`, interval).
pub fn parse_kline_stream(s: &str) -> Option<(String, Interval)> {
    let (sym, rest) = s.split_once('@')?;
    let iv = Interval::parse(rest.strip_prefix("kline_")?)?;
    Some((sym.to_ascii_uppercase(), iv))
}

impl KlinePublisher {
    /// Push due finals and changed current klines of every subscribed kline stream. Finals
    /// wait until the generator has produced every trade up to the kline's close
    /// (`produced_until_ms`), even if it fell behind the clock.
    pub fn publish(&mut self, shared: &Shared, now_ms: i64, produced_until_ms: i64) {
        let active = shared.hub.active_streams(|s| s.contains("@kline_"));
        self.streams.retain(|k, _| active.contains(k));
        let delay = shared.cfg.kline_final_delay.as_millis() as i64;
        let mut frames: Vec<(Arc<str>, String)> = Vec::new();
        {
            let market = shared.market.lock();
            for name in active {
                let Some((sym, iv)) = parse_kline_stream(&name) else {
                    continue;
                };
                let Some(idx) = market.find(&sym) else {
                    continue;
                };
                let st = self
                    .streams
                    .entry(name.clone())
                    .or_insert_with(|| KlineStreamState {
                        current_open: iv.open_of(now_ms),
                        last_sent_id: -2,
                        pending_finals: VecDeque::new(),
                    });
                let stream: Arc<str> = Arc::from(name.as_str());
                let clock = Clock {
                    now: now_ms,
                    produced_until: produced_until_ms,
                    delay,
                };
                for payload in step(st, &market, idx, iv, clock) {
                    frames.push((stream.clone(), payload));
                }
            }
        }
        for (stream, payload) in frames {
            shared.hub.publish(&stream, Arc::from(payload));
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    now: i64,
    produced_until: i64,
    delay: i64,
}

fn step(
    st: &mut KlineStreamState,
    market: &Market,
    idx: usize,
    iv: Interval,
    clock: Clock,
) -> Vec<String> {
    let Clock {
        now,
        produced_until,
        delay,
    } = clock;
    let mut out = Vec::new();
    let b = &market.books[idx];
    let open = iv.open_of(now);
    if open != st.current_open {
        st.pending_finals.push_back(st.current_open);
        if st.pending_finals.len() > MAX_PENDING_FINALS {
            st.pending_finals.pop_front();
        }
        (st.current_open, st.last_sent_id) = (open, -2);
    }
    while let Some(&f) = st.pending_finals.front() {
        if now < iv.close_of(f) + delay || produced_until <= iv.close_of(f) {
            break;
        }
        st.pending_finals.pop_front();
        if let Some(k) = market.compute(idx, iv, f, f).pop() {
            out.push(render::kline_event(&b.spec.name, iv.name(), &k, true, now));
        }
    }
    if let Some(k) = market.compute(idx, iv, open, open).pop()
        && k.last_id != st.last_sent_id
    {
        st.last_sent_id = k.last_id;
        out.push(render::kline_event(&b.spec.name, iv.name(), &k, false, now));
    }
    out
}

/// Push `!miniTicker@arr` for the symbols that traded since the last push.
pub fn publish_mini_tickers(shared: &Shared, now_ms: i64) {
    let wanted = shared.hub.has_subscribers(MINI_TICKER_STREAM);
    let mut market = shared.market.lock();
    let mut body = String::from("[");
    for idx in 0..market.books.len() {
        if !std::mem::take(&mut market.books[idx].ticker_changed) || !wanted {
            continue;
        }
        if let Some(s) = market.stats24(idx, now_ms) {
            let b = &market.books[idx];
            if body.len() > 1 {
                body.push(',');
            }
            render::mini_ticker(
                &mut body,
                &b.spec.name,
                &s,
                b.spec.price_dp,
                b.spec.qty_dp,
                now_ms,
            );
        }
    }
    drop(market);
    body.push(']');
    if wanted && body.len() > 2 {
        shared
            .hub
            .publish(&Arc::from(MINI_TICKER_STREAM), Arc::from(body));
    }
}

/// The `contractInfo` event of a symbol in its current state.
pub fn contract_info(b: &Book, now_ms: i64) -> String {
    format!(
        r#"{{"e":"contractInfo","E":{},"s":"{}","ps":"{}","ct":"PERPETUAL","dt":{},"ot":{},"cs":"{}"}}"#,
        now_ms,
        b.spec.name,
        b.spec.name,
        b.delivery_ms,
        b.onboard_ms,
        b.status.as_str()
    )
}

/// Publish a symbol's `contractInfo` event.
pub fn publish_contract_info(shared: &Shared, payload: String) {
    shared
        .hub
        .publish(&Arc::from(CONTRACT_INFO_STREAM), Arc::from(payload));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kline_stream_names() {
        assert_eq!(
            parse_kline_stream("btcusdt@kline_1m"),
            Some(("BTCUSDT".into(), Interval::parse("1m").unwrap()))
        );
        assert_eq!(parse_kline_stream("btcusdt@kline_2m"), None);
        assert_eq!(parse_kline_stream("btcusdt@aggTrade"), None);
    }
}

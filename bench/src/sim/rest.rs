//! REST endpoints (run on each HTTP connection's thread): routing, request weights, the
//! 429/418 limiter, injected 5xx faults, parameter validation with Binance's error codes, and
//! the answers from the market store.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use klagg_shards::wire::rest::{self, RequestError};

use super::http::{self, Request, Response};
use super::interval::Interval;
use super::market::{Book, Evicted, SymbolStatus};
use super::ratelimit::Verdict;
use super::{Shared, exinfo, now_ms, render};

const KLINES_LIMIT_DEFAULT: usize = 500;
const KLINES_LIMIT_MAX: usize = 1500;
const AGG_TRADES_LIMIT_DEFAULT: usize = 500;
const AGG_TRADES_LIMIT_MAX: usize = 1000;
const AGG_TRADES_MAX_SPAN_MS: i64 = 3_600_000;

/// Answer one request (latency is applied by the caller).
pub fn handle(shared: &Shared, req: &Request, ip: IpAddr) -> Response {
    let now = now_ms();
    let weight = weight_of(req);
    let verdict = shared.limiter.lock().check(ip, weight, now);
    let c = &shared.hub.counters;
    c.rest_requests.fetch_add(1, Ordering::Relaxed);
    let (mut resp, used) = match verdict {
        Verdict::Allow { used } => {
            c.weight_used
                .fetch_add(u64::from(weight), Ordering::Relaxed);
            (serve(shared, req, now), used)
        }
        Verdict::TooMany {
            used,
            retry_after_s,
        } => {
            c.rest_429.fetch_add(1, Ordering::Relaxed);
            let limit = shared.cfg.weight_limit;
            let msg = format!(
                "Too many requests; current limit is {limit} requests per minute. Please use the websocket for live updates to avoid polling the API."
            );
            (retry_later(429, &msg, retry_after_s), used)
        }
        Verdict::Banned {
            used,
            until_ms,
            retry_after_s,
        } => {
            c.rest_418.fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "Way too many requests; IP({ip}) banned until {until_ms}. Please use the websocket for live updates to avoid bans."
            );
            (retry_later(418, &msg, retry_after_s), used)
        }
    };
    resp.headers
        .push(("X-MBX-USED-WEIGHT-1M", used.to_string()));
    resp
}

/// An allowed request: an injected 5xx or the real answer.
fn serve(shared: &Shared, req: &Request, now: i64) -> Response {
    if shared.faults.take_error() {
        shared.hub.counters.rest_5xx.fetch_add(1, Ordering::Relaxed);
        let msg = "Internal error; unable to process your request. Please try again.";
        return http::error(503, -1001, msg);
    }
    dispatch(shared, req, now)
}

fn retry_later(status: u16, msg: &str, retry_after_s: u64) -> Response {
    let mut r = http::error(status, -1003, msg);
    r.headers.push(("Retry-After", retry_after_s.to_string()));
    r
}

/// Request weight as Binance counts it.
pub fn weight_of(req: &Request) -> u32 {
    match req.path.as_str() {
        "/fapi/v1/klines" => {
            let limit = req
                .param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(KLINES_LIMIT_DEFAULT);
            match limit {
                0..100 => 1,
                100..500 => 2,
                500..=1000 => 5,
                _ => 10,
            }
        }
        "/fapi/v1/aggTrades" => 20,
        "/fapi/v1/ticker/24hr" if req.param("symbol").is_none() => 40,
        _ => 1,
    }
}

fn dispatch(shared: &Shared, req: &Request, now: i64) -> Response {
    if req.method != "GET" {
        return http::error(405, -1000, "Only GET is supported by the simulator.");
    }
    let result = match req.path.as_str() {
        "/fapi/v1/ping" => Ok("{}".to_string()),
        "/fapi/v1/time" => Ok(format!(r#"{{"serverTime":{now}}}"#)),
        "/fapi/v1/exchangeInfo" => Ok(exinfo::render(
            &shared.market.lock(),
            shared.cfg.weight_limit,
            now,
        )),
        "/fapi/v1/klines" => klines(shared, req, now),
        "/fapi/v1/aggTrades" => agg_trades(shared, req),
        "/fapi/v1/ticker/24hr" => ticker(shared, req, now),
        _ => return http::error(404, -1000, "Path not found."),
    };
    match result {
        Ok(body) => http::json(200, body),
        Err(e) => e,
    }
}

type Answer = Result<String, Response>;

fn refused(error: RequestError) -> Response {
    http::error(400, error.code, &error.msg)
}

fn mandatory<'a>(req: &'a Request, name: &str) -> Result<&'a str, Response> {
    rest::mandatory(req, name).map_err(refused)
}

fn optional<T: std::str::FromStr>(req: &Request, name: &str) -> Result<Option<T>, Response> {
    rest::optional(req, name).map_err(refused)
}

fn symbol_index(shared: &Shared, name: &str) -> Result<usize, Response> {
    shared
        .market
        .lock()
        .find(name)
        .ok_or_else(|| http::error(400, -1121, "Invalid symbol."))
}

fn limit(req: &Request, default: usize, max: usize) -> Result<usize, Response> {
    rest::limit(req, default, max).map_err(refused)
}

fn time_range(req: &Request) -> Result<(Option<i64>, Option<i64>), Response> {
    rest::time_range(req).map_err(refused)
}

fn klines(shared: &Shared, req: &Request, now: i64) -> Answer {
    let symbol = mandatory(req, "symbol")?;
    let interval = mandatory(req, "interval")?;
    let iv =
        Interval::parse(interval).ok_or_else(|| http::error(400, -1120, "Invalid interval."))?;
    let idx = symbol_index(shared, symbol)?;
    let limit = limit(req, KLINES_LIMIT_DEFAULT, KLINES_LIMIT_MAX)?;
    let (start, end) = time_range(req)?;
    let ks = shared.market.lock().klines(idx, iv, start, end, limit, now);
    let mut out = String::with_capacity(16 + ks.len() * 160);
    out.push('[');
    for (i, k) in ks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render::kline_row(&mut out, k);
    }
    out.push(']');
    Ok(out)
}

fn agg_trades(shared: &Shared, req: &Request) -> Answer {
    let symbol = mandatory(req, "symbol")?;
    let idx = symbol_index(shared, symbol)?;
    let limit = limit(req, AGG_TRADES_LIMIT_DEFAULT, AGG_TRADES_LIMIT_MAX)?;
    let from_id = optional::<u64>(req, "fromId")?;
    let (start, end) = time_range(req)?;
    // The contract: the span must be under one hour, so exactly 3,600,000 ms is refused.
    if let (Some(s), Some(e)) = (start, end)
        && e.saturating_sub(s) >= AGG_TRADES_MAX_SPAN_MS
    {
        return Err(http::error(
            400,
            -1127,
            "More than 1 hours between startTime and endTime.",
        ));
    }
    let market = shared.market.lock();
    let trades = market
        .agg_trades(idx, from_id, start, end, limit)
        .map_err(evicted)?;
    let spec = &market.books[idx].spec;
    let mut out = String::with_capacity(16 + trades.len() * 110);
    out.push('[');
    for (i, t) in trades.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render::agg_trade_row(&mut out, t, spec.price_dp, spec.qty_dp);
    }
    out.push(']');
    Ok(out)
}

/// An aggTrades query reaching into evicted trades: -1130 naming the parameter, and what is
/// still kept (the simulator's honest stand-in for Binance's full history).
fn evicted(e: Evicted) -> Response {
    let msg = format!(
        "Data sent for parameter '{}' is not valid: the simulator no longer keeps aggTrades \
         before id {} (T {}); older ones were evicted (--trade-retention).",
        e.param, e.oldest_id, e.oldest_ms
    );
    http::error(400, -1130, &msg)
}

fn ticker(shared: &Shared, req: &Request, now: i64) -> Answer {
    let mut out = String::new();
    if let Some(symbol) = req.param("symbol") {
        let idx = symbol_index(shared, symbol)?;
        let market = shared.market.lock();
        let b = &market.books[idx];
        let stats = market
            .stats24(idx, now)
            .unwrap_or_else(|| empty_stats(b.price, now));
        ticker_of(&mut out, b, &stats);
        return Ok(out);
    }
    let market = shared.market.lock();
    out.push('[');
    for (idx, b) in market.books.iter().enumerate() {
        if b.status == SymbolStatus::Close {
            continue;
        }
        let Some(stats) = market.stats24(idx, now) else {
            continue;
        };
        if out.len() > 1 {
            out.push(',');
        }
        ticker_of(&mut out, b, &stats);
    }
    let _ = write!(out, "]");
    Ok(out)
}

fn ticker_of(out: &mut String, b: &Book, stats: &render::Stats24) {
    render::ticker_24h(out, &b.spec.name, stats, b.spec.price_dp, b.spec.qty_dp);
}

fn empty_stats(price: i64, now: i64) -> render::Stats24 {
    render::Stats24 {
        open: price,
        high: price,
        low: price,
        close: price,
        last_qty: 0,
        volume: 0,
        quote_volume: 0,
        count: 0,
        first_id: u64::MAX,
        last_id: u64::MAX,
        open_time: now - 86_400_000,
        close_time: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> Request {
        Request::get(target)
    }

    #[test]
    fn weights() {
        assert_eq!(weight_of(&req("/fapi/v1/klines?symbol=A&interval=1m")), 5);
        assert_eq!(weight_of(&req("/fapi/v1/klines?limit=99")), 1);
        assert_eq!(weight_of(&req("/fapi/v1/klines?limit=499")), 2);
        assert_eq!(weight_of(&req("/fapi/v1/klines?limit=1000")), 5);
        assert_eq!(weight_of(&req("/fapi/v1/klines?limit=1500")), 10);
        assert_eq!(weight_of(&req("/fapi/v1/aggTrades?symbol=A")), 20);
        assert_eq!(weight_of(&req("/fapi/v1/ticker/24hr")), 40);
        assert_eq!(weight_of(&req("/fapi/v1/ticker/24hr?symbol=A")), 1);
        assert_eq!(weight_of(&req("/fapi/v1/exchangeInfo")), 1);
    }
}

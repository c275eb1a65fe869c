//! The REST endpoints (on the gateway's connection threads `api-http-N`): `GET /fapi/v1/klines`
//! from the store plus the live klines in memory, `exchangeInfo` of the served symbols, `time`,
//! `ping`, and `/api/v1/intervals` for the chart page. Bad input gets Binance's error body and
//! code with HTTP 400. Store readers (one SQLite connection each) are pooled: a request borrows
//! one and gives it back.

use std::path::PathBuf;

use klagg_shards::kline::{Fixed, Interval, Kline, Scales};
use klagg_shards::wire::exinfo::{self, ExchangeSymbol};
use klagg_shards::wire::rest::{self, RequestError};
use parking_lot::Mutex;

use super::live::{Overlay, merge};
use super::{ApiCounters, ApiState, StreamKey};
use crate::clock::epoch_ms;
use crate::gateway::{GatewayContext, HttpRequest, HttpResponse, error_response, json_response};
use crate::store::{KLINES_LIMIT_DEFAULT, KLINES_LIMIT_MAX, Reader, StoreError};
use crate::symbol_manager::registry::Lifecycle;

/// Idle store readers kept for reuse.
pub const READERS_IDLE_MAX: usize = 16;
/// The request weight per minute exchangeInfo announces (Binance's).
const WEIGHT_LIMIT: u32 = 2400;
/// `deliveryDate` of a perpetual (Binance's sentinel, 2100-12-25).
const PERPETUAL_DELIVERY_MS: i64 = 4_133_404_800_000;

/// Read-only store connections, opened on demand and reused.
#[derive(Debug)]
pub struct ReaderPool {
    path: Option<PathBuf>,
    idle: Mutex<Vec<Reader>>,
}

impl ReaderPool {
    /// A pool over the store at `path` (`None`: no store, memory only).
    pub fn new(path: Option<PathBuf>) -> ReaderPool {
        ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Run `f` with a reader; `Ok(None)` when there is no store (not configured, or its file
    /// does not exist yet).
    ///
    /// # Errors
    /// The store could not be opened.
    pub fn with<R>(&self, f: impl FnOnce(&Reader) -> R) -> Result<Option<R>, StoreError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let reader = match self.idle.lock().pop() {
            Some(reader) => reader,
            None if !path.exists() => return Ok(None),
            None => Reader::open(path)?,
        };
        let result = f(&reader);
        let mut idle = self.idle.lock();
        if idle.len() < READERS_IDLE_MAX {
            idle.push(reader);
        }
        Ok(Some(result))
    }
}

fn bad(code: i32, msg: &str) -> HttpResponse {
    error_response(400, code, msg)
}

fn refused(error: RequestError) -> HttpResponse {
    bad(error.code, &error.msg)
}

/// The validated parameters of a klines request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlinesQuery {
    pub symbol: String,
    pub key: StreamKey,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub limit: u32,
}

/// Validate a klines request in Binance's order: symbol and interval present (-1102), the
/// interval (-1120), the symbol (-1121), `limit` (-1130), the times (-1100, -1023).
///
/// # Errors
/// The 400 answer.
pub fn klines_query(api: &ApiState, request: &HttpRequest) -> Result<KlinesQuery, HttpResponse> {
    let symbol = rest::mandatory(request, "symbol").map_err(refused)?;
    let interval = rest::mandatory(request, "interval").map_err(refused)?;
    let interval: Interval = interval
        .parse()
        .map_err(|_| bad(-1120, "Invalid interval."))?;
    if !api.intervals.contains(&interval) {
        let served: Vec<&str> = api.intervals.iter().map(|i| i.as_str()).collect();
        let msg = format!(
            "Invalid interval. {interval} is not served here (served: {}).",
            served.join(",")
        );
        return Err(bad(-1120, &msg));
    }
    let index = api
        .registry
        .index(symbol)
        .ok_or_else(|| bad(-1121, "Invalid symbol."))?;
    let limit = rest::limit(request, KLINES_LIMIT_DEFAULT, KLINES_LIMIT_MAX).map_err(refused)?;
    let (start_ms, end_ms) = rest::time_range(request).map_err(refused)?;
    Ok(KlinesQuery {
        symbol: symbol.to_string(),
        key: StreamKey {
            symbol: index,
            interval,
        },
        start_ms,
        end_ms,
        limit,
    })
}

/// The klines of a validated query: stored rows with the live ones laid over them.
///
/// # Errors
/// The store failed (its error text).
pub fn klines(api: &ApiState, query: &KlinesQuery) -> Result<Vec<Kline>, StoreError> {
    let stored = api.readers.with(|reader| {
        reader.stored_klines(
            &query.symbol,
            query.key.interval,
            query.start_ms,
            query.end_ms,
            Some(query.limit),
        )
    })?;
    let stored = match stored {
        None | Some(Err(StoreError::UnknownSymbol(_))) => Vec::new(),
        Some(Err(error)) => return Err(error),
        Some(Ok(rows)) => rows
            .into_iter()
            .map(|r| (r.kline, r.source.rank(r.closed)))
            .collect(),
    };
    let overlay: Overlay = api.live.overlay(query.key);
    Ok(merge(
        stored,
        &overlay,
        query.start_ms,
        query.end_ms,
        query.limit as usize,
    ))
}

fn api_state(ctx: &GatewayContext) -> Result<&ApiState, HttpResponse> {
    ctx.state::<ApiState>()
        .ok_or_else(|| error_response(503, -1000, "The API is not running."))
}

/// `GET /fapi/v1/klines`.
pub fn handle_klines(ctx: &GatewayContext, request: &HttpRequest) -> HttpResponse {
    let api = match api_state(ctx) {
        Ok(api) => api,
        Err(answer) => return answer,
    };
    ApiCounters::add(&api.counters.rest_klines, 1);
    let query = match klines_query(api, request) {
        Ok(query) => query,
        Err(answer) => {
            ApiCounters::add(&api.counters.rest_errors, 1);
            return answer;
        }
    };
    let Some(scales) = api.registry.scales(query.key.symbol) else {
        return bad(-1121, "Invalid symbol.");
    };
    match klines(api, &query) {
        Ok(rows) => {
            let mut body = String::with_capacity(2 + rows.len() * 160);
            body.push('[');
            for (i, kline) in rows.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                kline.write_rest_json(&mut body, scales);
            }
            body.push(']');
            json_response(200, body)
        }
        Err(error) => {
            ApiCounters::add(&api.counters.store_errors, 1);
            let msg = format!(
                "Internal error; unable to process your request. Please try again. ({error})"
            );
            error_response(503, -1000, &msg)
        }
    }
}

/// `GET /fapi/v1/time`.
pub fn handle_time(_ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    json_response(200, format!(r#"{{"serverTime":{}}}"#, epoch_ms()))
}

/// `GET /fapi/v1/ping`.
pub fn handle_ping(_ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    json_response(200, "{}".into())
}

/// `GET /api/v1/intervals`: the intervals served (for the chart page).
pub fn handle_intervals(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    let names: Vec<&str> = ctx
        .state::<ApiState>()
        .map(|api| api.intervals.iter().map(|i| i.as_str()).collect())
        .unwrap_or_default();
    json_response(200, serde_json::to_string(&names).unwrap_or_default())
}

/// `GET /fapi/v1/exchangeInfo`: the served symbols in Binance's layout.
pub fn handle_exchange_info(ctx: &GatewayContext, _request: &HttpRequest) -> HttpResponse {
    let entries = ctx.registry.snapshot();
    let symbols = entries.iter().map(|entry| {
        let status = match entry.lifecycle {
            Lifecycle::Pending => "PENDING_TRADING",
            Lifecycle::Delisted => "CLOSE",
            _ => "TRADING",
        };
        exchange_symbol(&entry.name, entry.scales, status)
    });
    json_response(200, exinfo::render(epoch_ms(), WEIGHT_LIMIT, symbols))
}

/// `1` at `scale` decimal places: `"0.01"` for 2, `"1"` for 0.
fn unit(scale: u8) -> String {
    Fixed::new(1, scale).to_string()
}

/// A served symbol as exchangeInfo shows it: one unit at its scales as tick and step, a
/// perpetual's delivery date, fixed maxima.
fn exchange_symbol<'a>(name: &'a str, scales: Scales, status: &'a str) -> ExchangeSymbol<'a> {
    ExchangeSymbol {
        name,
        base: name.strip_suffix("USDT").unwrap_or(name),
        status,
        onboard_ms: 0,
        delivery_ms: PERPETUAL_DELIVERY_MS,
        price_dp: u32::from(scales.price),
        qty_dp: u32::from(scales.qty),
        tick: unit(scales.price),
        max_price: Fixed::new(1_000_000_000i128, 0).to_string(),
        step: unit(scales.qty),
        max_qty: Fixed::new(100_000_000i128, 0).to_string(),
    }
}

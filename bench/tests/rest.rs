//! REST protocol tests against a simulator on loopback (test threads).

mod common;

use std::time::{Duration, Instant};

use common::*;
use klagg_bench::sim::{Interval, SymbolStatus, now_ms};
use rust_decimal::Decimal;
use serde_json::Value;

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .expect("decimal string")
        .parse()
        .expect("decimal")
}

#[test]
fn exchange_info_shape() {
    let sim = start(cfg());
    let a = agent();
    let g = get(&a, &sim, "/fapi/v1/exchangeInfo");
    assert_eq!(g.status, 200);
    assert_eq!(g.weight, Some(1));
    let b = &g.body;
    assert_eq!(b["timezone"], "UTC");
    assert_eq!(b["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT");
    assert_eq!(b["rateLimits"][0]["limit"], 2400);
    let syms = b["symbols"].as_array().unwrap();
    assert_eq!(syms.len(), 6);
    let btc = &syms[0];
    assert_eq!(btc["symbol"], "BTCUSDT");
    assert_eq!(btc["status"], "TRADING");
    assert_eq!(btc["contractType"], "PERPETUAL");
    assert_eq!(btc["quoteAsset"], "USDT");
    assert_eq!(btc["deliveryDate"], 4_133_404_800_000i64);
    assert!(btc["onboardDate"].as_i64().unwrap() < now_ms());
    let f = btc["filters"].as_array().unwrap();
    assert_eq!(f[0]["filterType"], "PRICE_FILTER");
    assert_eq!(f[0]["tickSize"], "0.10");
    assert_eq!(f[1]["stepSize"], "0.001");
    assert_eq!(sim.symbols()[0].tick_size, "0.10");
}

#[test]
fn klines_shape_flats_and_ground_truth() {
    let sim = start(cfg().with_trade_rate(30));
    let a = agent();
    let sym = &sim.symbols()[5];
    let g = get(
        &a,
        &sim,
        &format!("/fapi/v1/klines?symbol={}&interval=1s&limit=80", sym.name),
    );
    assert_eq!((g.status, g.weight), (200, Some(1)));
    let rows = g.body.as_array().unwrap();
    assert_eq!(rows.len(), 80);
    let last = rows.last().unwrap();
    assert!(
        last[6].as_i64().unwrap() >= now_ms() - 1000,
        "current open kline included"
    );
    let mut flats = 0;
    for w in rows.windows(2) {
        let (prev, k) = (&w[0], &w[1]);
        assert_eq!(k.as_array().unwrap().len(), 12);
        assert_eq!(
            k[0].as_i64().unwrap(),
            prev[0].as_i64().unwrap() + 1000,
            "no gaps"
        );
        assert_eq!(k[6].as_i64().unwrap(), k[0].as_i64().unwrap() + 999);
        let open = k[1].as_str().unwrap();
        assert_eq!(
            open.split('.').nth(1).map_or(0, str::len) as u32,
            sym.price_dp,
            "{open}"
        );
        let vol = k[5].as_str().unwrap();
        assert_eq!(
            vol.split('.').nth(1).map_or(0, str::len) as u32,
            sym.qty_dp,
            "{vol}"
        );
        if k[8] == 0 {
            flats += 1;
            assert_eq!(
                dec(&k[1]),
                dec(&prev[4]),
                "flat opens at the previous close"
            );
            assert_eq!(dec(&k[1]), dec(&k[4]));
            assert!(dec(&k[5]).is_zero());
        }
    }
    assert!(flats > 0, "a quiet symbol has empty seconds");
    let first = rows[0][0].as_i64().unwrap();
    let truth = sim.klines(
        &sym.name,
        Interval::parse("1s").unwrap(),
        first,
        first + 30_000,
    );
    for (row, k) in rows.iter().zip(&truth) {
        assert_eq!(row[0].as_i64().unwrap(), k.open_time);
        assert_eq!(dec(&row[4]), k.close);
        assert_eq!(dec(&row[7]), k.quote_volume);
        assert_eq!(row[8].as_u64().unwrap(), k.trades);
    }
}

#[test]
fn klines_window_rules_and_weights() {
    let sim = start(cfg());
    let a = agent();
    let now = now_ms();
    let start_t = (now - 60_000) / 60_000 * 60_000 + 1; // inside a kline
    let g = get(
        &a,
        &sim,
        &format!("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime={start_t}&limit=1"),
    );
    assert_eq!(
        g.body[0][0].as_i64().unwrap(),
        start_t - 1 + 60_000,
        "starts at the next open"
    );
    let g = get(&a, &sim, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m");
    assert_eq!(g.weight, Some(1 + 5), "default limit 500 weighs 5");
    let n = g.body.as_array().unwrap().len();
    assert!((2..=3).contains(&n), "90 s of history: {n} klines");
    for (limit, w) in [(99, 1), (499, 2), (1000, 5), (1500, 10)] {
        let before = sim.weight_used("127.0.0.1".parse().unwrap());
        let g = get(
            &a,
            &sim,
            &format!("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit={limit}"),
        );
        assert_eq!(g.weight, Some(before + w), "limit {limit}");
    }
}

#[test]
fn klines_errors() {
    let sim = start(cfg());
    let a = agent();
    for (q, code) in [
        ("interval=1m", -1102),
        ("symbol=BTCUSDT", -1102),
        ("symbol=BTCUSDT&interval=2m", -1120),
        ("symbol=NOPEUSDT&interval=1m", -1121),
        ("symbol=BTCUSDT&interval=1m&limit=1501", -1130),
        ("symbol=BTCUSDT&interval=1m&startTime=5&endTime=4", -1023),
        ("symbol=BTCUSDT&interval=1m&startTime=abc", -1100),
    ] {
        let g = get(&a, &sim, &format!("/fapi/v1/klines?{q}"));
        assert_eq!(g.status, 400, "{q}");
        assert_eq!(g.body["code"], code, "{q}: {}", g.body);
        assert!(g.body["msg"].is_string());
    }
    for q in [
        "startTime=9223372036854775807",
        "endTime=-9223372036854775808",
        "startTime=-9223372036854775808&endTime=9223372036854775807",
    ] {
        for iv in ["1m", "1w", "1M"] {
            let g = get(
                &a,
                &sim,
                &format!("/fapi/v1/klines?symbol=BTCUSDT&interval={iv}&{q}"),
            );
            assert_eq!(
                g.status, 200,
                "{iv} {q}: extreme times are answered, not a crash"
            );
        }
        let g = get(&a, &sim, &format!("/fapi/v1/aggTrades?symbol=BTCUSDT&{q}"));
        assert!(g.status == 200 || g.body["code"] == -1127, "{q}");
    }
    let g = get(&a, &sim, "/fapi/v1/klines?interval=1m");
    assert_eq!(
        g.body["msg"],
        "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
    );
}

#[test]
fn agg_trades_rules() {
    let sim = start(cfg());
    let a = agent();
    let truth = sim.trades("BTCUSDT");
    let from = truth[10].agg_id;
    let g = get(
        &a,
        &sim,
        &format!("/fapi/v1/aggTrades?symbol=BTCUSDT&fromId={from}&limit=50"),
    );
    assert_eq!(g.weight, Some(20));
    let rows = g.body.as_array().unwrap();
    assert_eq!(rows.len(), 50);
    for (i, r) in rows.iter().enumerate() {
        let t = &truth[10 + i];
        assert_eq!(r["a"].as_u64().unwrap(), t.agg_id);
        assert_eq!(dec(&r["p"]), t.price);
        assert_eq!(dec(&r["q"]), t.qty);
        assert_eq!(
            (r["f"].as_u64().unwrap(), r["l"].as_u64().unwrap()),
            (t.first_id, t.last_id)
        );
        assert_eq!(r["T"].as_i64().unwrap(), t.time_ms);
        assert_eq!(r["m"].as_bool().unwrap(), t.buyer_maker);
    }
    let keys: Vec<_> = rows[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 7);
    let g = get(&a, &sim, "/fapi/v1/aggTrades?symbol=BTCUSDT");
    assert_eq!(
        g.body.as_array().unwrap().len(),
        500,
        "default limit, most recent"
    );
    let s = truth[0].time_ms;
    for (span, code) in [
        (3_600_001, Some(-1127)),
        (3_600_000, Some(-1127)),
        (3_599_999, None),
    ] {
        let e = s + span;
        let g = get(
            &a,
            &sim,
            &format!("/fapi/v1/aggTrades?symbol=BTCUSDT&startTime={s}&endTime={e}"),
        );
        assert_eq!(
            g.body["code"].as_i64(),
            code,
            "span {span} ms must be under one hour"
        );
        assert_eq!(g.status, if code.is_some() { 400 } else { 200 });
    }
    let e = truth[5].time_ms;
    let g = get(
        &a,
        &sim,
        &format!("/fapi/v1/aggTrades?symbol=BTCUSDT&startTime={s}&endTime={e}&limit=1000"),
    );
    let n = truth
        .iter()
        .filter(|t| t.time_ms >= s && t.time_ms <= e)
        .count();
    assert_eq!(g.body.as_array().unwrap().len(), n, "inclusive bounds");
    assert_eq!(
        get(&a, &sim, "/fapi/v1/aggTrades?symbol=BTCUSDT&limit=1001").body["code"],
        -1130
    );
}

/// Retention shortened to one minute (default: 30): the 1s klines and aggTrades of evicted time
/// are never served as a quiet market — the 1m klines there still carry the real trades.
#[test]
fn evicted_time_is_absent_not_flat() {
    let sim = start(
        cfg()
            .with_history(Duration::from_secs(150))
            .with_trade_retention(Duration::from_secs(60)),
    );
    let a = agent();
    sim.delist_symbol("BTCUSDT").unwrap(); // its trades stop: the kept range holds still
    let kept = sim
        .trades_kept_from_ms("BTCUSDT")
        .expect("older trades were evicted");
    let oldest = sim.trades("BTCUSDT")[0].agg_id;
    let q = |query: String| get(&a, &sim, &format!("/fapi/v1/{query}"));
    let m1 = q(format!(
        "klines?symbol=BTCUSDT&interval=1m&startTime={}&limit=1",
        kept - 60_000
    ));
    assert!(m1.body[0][8].as_u64().unwrap() > 0, "the minute had trades");
    let evicted_1s = q(format!(
        "klines?symbol=BTCUSDT&interval=1s&startTime={}&endTime={}",
        kept - 20_000,
        kept - 1
    ));
    assert_eq!(evicted_1s.status, 200);
    assert_eq!(evicted_1s.body, serde_json::json!([]), "no flat 1s klines");
    let from = q(format!(
        "klines?symbol=BTCUSDT&interval=1s&startTime={}&limit=5",
        kept - 20_000
    ));
    assert_eq!(
        from.body[0][0].as_i64(),
        Some(kept),
        "1s klines resume where kept"
    );
    for query in [
        "fromId=1".to_string(),
        format!("fromId={}", oldest - 1),
        format!("startTime={}&endTime={}", kept - 10_000, kept + 10_000),
        format!("endTime={}", kept - 1),
    ] {
        let g = q(format!("aggTrades?symbol=BTCUSDT&{query}"));
        assert_eq!(
            (g.status, g.body["code"].as_i64()),
            (400, Some(-1130)),
            "{query}"
        );
        let msg = g.body["msg"].as_str().unwrap();
        assert!(msg.contains(&format!("before id {oldest} ")), "{msg}");
    }
    let since = q(format!("aggTrades?symbol=BTCUSDT&startTime={kept}&limit=2"));
    assert_eq!(since.body[0]["a"].as_u64(), Some(oldest));
    let by_id = q(format!("aggTrades?symbol=BTCUSDT&fromId={oldest}&limit=2"));
    assert_eq!(by_id.body[0]["a"].as_u64(), Some(oldest));
}

#[test]
fn ticker_time_ping() {
    let sim = start(cfg());
    let a = agent();
    let g = get(&a, &sim, "/fapi/v1/ticker/24hr?symbol=BTCUSDT");
    assert_eq!(g.weight, Some(1));
    assert_eq!(g.body["symbol"], "BTCUSDT");
    assert!(g.body["count"].as_u64().unwrap() > 0);
    assert!(g.body["lastPrice"].is_string());
    let g = get(&a, &sim, "/fapi/v1/ticker/24hr");
    assert_eq!(g.weight, Some(41));
    assert_eq!(g.body.as_array().unwrap().len(), 6);
    let t = get(&a, &sim, "/fapi/v1/time").body["serverTime"]
        .as_i64()
        .unwrap();
    assert!((t - now_ms()).abs() < 5_000);
    assert_eq!(get(&a, &sim, "/fapi/v1/ping").body, serde_json::json!({}));
    assert_eq!(get(&a, &sim, "/fapi/v1/nope").status, 404);
    assert_eq!(
        sim.counters().http_connections,
        1,
        "one keep-alive connection"
    );
}

#[test]
fn weight_limit_429_then_418() {
    let c = cfg()
        .with_weight_limit(30)
        .with_rejections_before_ban(2)
        .with_ban_durations(vec![Duration::from_secs(2)]);
    let sim = start(c);
    let a = agent();
    if 60_000 - now_ms() % 60_000 < 3_000 {
        std::thread::sleep(Duration::from_secs(3)); // keep the test inside one minute window
    }
    let path = "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1000"; // weight 5
    let statuses: Vec<Got> = (0..9).map(|_| get(&a, &sim, path)).collect();
    let codes: Vec<u16> = statuses.iter().map(|g| g.status).collect();
    assert_eq!(
        codes,
        vec![200, 200, 200, 200, 200, 200, 429, 429, 418],
        "{codes:?}"
    );
    assert_eq!(statuses[5].weight, Some(30));
    assert_eq!(statuses[6].body["code"], -1003);
    assert!(
        statuses[6].body["msg"]
            .as_str()
            .unwrap()
            .starts_with("Too many requests; current limit is 30")
    );
    assert!(
        statuses[6]
            .retry_after
            .is_some_and(|s| (1..=60).contains(&s))
    );
    let ban = &statuses[8];
    assert_eq!(ban.body["code"], -1003);
    assert!(ban.body["msg"].as_str().unwrap().contains("banned until"));
    assert_eq!(ban.retry_after, Some(2));
    assert_eq!(
        get(&a, &sim, "/fapi/v1/ping").status,
        418,
        "banned for every endpoint"
    );
    let c = sim.counters();
    assert_eq!((c.rest_429, c.rest_418), (2, 2));
}

#[test]
fn latency_and_injected_errors() {
    let sim = start(cfg());
    let a = agent();
    sim.inject_rest_errors(2);
    let codes: Vec<u16> = (0..3)
        .map(|_| get(&a, &sim, "/fapi/v1/ping").status)
        .collect();
    assert_eq!(codes, vec![503, 503, 200]);
    sim.set_rest_latency(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(get(&a, &sim, "/fapi/v1/ping").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    sim.set_rest_latency(Duration::ZERO);
    sim.set_rest_error_ratio(1.0);
    let g = get(&a, &sim, "/fapi/v1/time");
    assert_eq!((g.status, g.body["code"].as_i64()), (503, Some(-1001)));
}

#[test]
fn listing_and_delisting_lifecycle() {
    let c = cfg()
        .with_listing_delay(Duration::from_millis(400))
        .with_settle_delay(Duration::from_millis(400));
    let sim = start(c);
    let a = agent();
    sim.list_symbol("NEWCOINUSDT").unwrap();
    assert!(sim.list_symbol("NEWCOINUSDT").is_err());
    let status = |name: &str| {
        let g = get(&a, &sim, "/fapi/v1/exchangeInfo");
        let s = g.body["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["symbol"] == name)
            .cloned()
            .unwrap();
        (
            s["status"].as_str().unwrap().to_string(),
            s["deliveryDate"].as_i64().unwrap(),
        )
    };
    assert_eq!(status("NEWCOINUSDT").0, "PENDING_TRADING");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(status("NEWCOINUSDT").0, "TRADING");
    let victim = sim.symbols()[1].name.clone();
    sim.delist_symbol(&victim).unwrap();
    let (st, dd) = status(&victim);
    assert_eq!(st, "SETTLING");
    assert!(
        (dd - now_ms()).abs() < 5_000,
        "deliveryDate set to the delisting time"
    );
    let n = sim.trades(&victim).len();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(status(&victim).0, "CLOSE");
    assert_eq!(sim.trades(&victim).len(), n, "no trades after delisting");
    let info = sim
        .symbols()
        .into_iter()
        .find(|s| s.name == victim)
        .unwrap();
    assert_eq!(info.status, SymbolStatus::Close);
    assert!(sim.delist_symbol("NOPEUSDT").is_err());
}

#[test]
fn periodic_listings_delistings_and_disconnects() {
    let ms = Duration::from_millis;
    let c = cfg()
        .with_list_every(Some(ms(300)))
        .with_delist_every(Some(ms(400)))
        .with_disconnect_every(Some(ms(700)))
        .with_listing_delay(ms(100))
        .with_settle_delay(ms(100));
    let sim = start(c);
    let mut ws = connect(&format!("{}/market/ws/btcusdt@aggTrade", sim.ws_url()));
    let t = Instant::now();
    let dropped = loop {
        match next(&mut ws, Duration::from_secs(1)) {
            Next::Closed(_) => break true,
            _ if t.elapsed() > Duration::from_secs(3) => break false,
            _ => {}
        }
    };
    assert!(dropped, "--disconnect-every drops WebSocket clients");
    std::thread::sleep(ms(600).saturating_sub(t.elapsed()));
    let syms = sim.symbols();
    assert!(syms.len() >= 8, "listings added: {}", syms.len());
    assert!(
        syms[6..].iter().any(|s| s.status == SymbolStatus::Trading),
        "a listing went live"
    );
    assert!(
        syms.iter().any(|s| s.status == SymbolStatus::Close),
        "a delisting completed"
    );
}

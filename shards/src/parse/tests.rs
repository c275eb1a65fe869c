//! Parser tests: the real Binance capture, scanner ≡ serde agreement, extra fields, and a table of
//! malformed payloads that must give typed errors (never a panic).

use std::path::PathBuf;

use super::fallback::parse_frame_serde;
use super::scan::scan_frame;
use super::*;
use crate::kline::Scales;

const TRADE: &str = r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1672531200001,"s":"BTCUSDT","a":770298494,"p":"16500.10","q":"0.010","f":3184717360,"l":3184717361,"T":1672531199998,"m":true}}"#;

/// `../shared/data/<rel>` beside the workspace root, or `None` (skip) when absent outside CI.
fn shared_data(rel: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root
        .join("..")
        .join("..")
        .join("shared")
        .join("data")
        .join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "data file {} is missing (CI=true)",
        path.display()
    );
    eprintln!("skipping: data file {} not found", path.display());
    None
}

/// The `data` object of [`TRADE`] (a raw-stream payload).
fn raw_trade() -> &'static str {
    let start = TRADE.find(r#"{"e""#).expect("data object");
    &TRADE[start..TRADE.len() - 1]
}

fn trade_of(frame: &str) -> RawAggTrade<'_> {
    match parse_frame(frame.as_bytes()) {
        Ok(Frame::Trade(trade)) => trade,
        other => panic!("not a trade: {other:?} for {frame}"),
    }
}

#[test]
fn every_frame_of_the_real_capture_parses_and_agrees_with_serde() {
    let Some(path) = shared_data("cryptofeed/BINANCE_FUTURES.ws.1.0") else {
        return;
    };
    let text = std::fs::read_to_string(path).expect("read capture");
    let (mut trades, mut others) = (0, 0);
    for line in text.lines().skip(1) {
        let (_, json) = line.split_once(": ").expect("`<time>: <json>` line");
        let fast = scan_frame(json.as_bytes());
        let slow = parse_frame_serde(json.as_bytes()).expect("serde parses every frame");
        assert_eq!(parse_frame(json.as_bytes()).expect("parses"), slow);
        match slow {
            Frame::Trade(trade) => {
                trades += 1;
                assert_eq!(fast, Some(Frame::Trade(trade)), "scanner handles {json}");
                let scales = Scales { price: 7, qty: 3 };
                let converted = trade.to_agg_trade(scales).expect("decimals");
                assert!(converted.price > 0 && converted.qty > 0);
                assert!(json.contains(&format!("\"a\":{}", trade.agg_id)));
            }
            Frame::Other => {
                others += 1;
                assert!(matches!(fast, None | Some(Frame::Other)));
                assert!(!json.contains("\"e\":\"aggTrade\""));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(trades, 91, "the capture holds 91 aggTrade frames");
    assert_eq!(others, 1535 - 91);
}

#[test]
fn capture_trade_ids_are_contiguous_per_symbol() {
    let Some(path) = shared_data("cryptofeed/BINANCE_FUTURES.ws.1.0") else {
        return;
    };
    let text = std::fs::read_to_string(path).expect("read capture");
    let mut last: std::collections::HashMap<Vec<u8>, i64> = Default::default();
    for line in text.lines().skip(1) {
        let (_, json) = line.split_once(": ").expect("line");
        if let Ok(Frame::Trade(trade)) = parse_frame(json.as_bytes())
            && let Some(previous) = last.insert(trade.symbol.to_vec(), trade.agg_id)
        {
            assert_eq!(trade.agg_id, previous + 1);
        }
    }
    assert_eq!(last.len(), 4);
}

#[test]
fn extra_fields_and_any_key_order_parse_on_the_fast_path() {
    let variants = [
        TRADE.replace(r#""m":true}"#, r#""m":true,"nq":"0.010"}"#),
        TRADE.replace(
            r#"{"e":"aggTrade","#,
            r#"{"e":"aggTrade","ps":"BTCUSDT","st":1,"#,
        ),
        TRADE.replace(
            r#""p":"16500.10","q":"0.010","#,
            r#""q":"0.010","p":"16500.10","#,
        ),
        TRADE.replace(
            r#""m":true}"#,
            r#""m":true,"x":null,"y":-1.5e-3,"z":false}"#,
        ),
    ];
    let expected = trade_of(TRADE);
    for frame in &variants {
        assert_eq!(scan_frame(frame.as_bytes()), Some(Frame::Trade(expected)));
        assert_eq!(trade_of(frame), expected);
    }
}

#[test]
fn unusual_but_valid_json_goes_through_the_fallback() {
    let expected = trade_of(TRADE);
    let variants = [
        TRADE.replace(',', ", ").replace(':', " : "),
        format!(r#"{{"data":{},"stream":"btcusdt@aggTrade"}}"#, raw_trade()),
        TRADE.replace(r#""m":true}"#, r#""m":true,"x":{"y":[1,2]},"w":"a\"b"}"#),
        format!("  {TRADE}\n"),
    ];
    for frame in &variants {
        assert_eq!(scan_frame(frame.as_bytes()), None, "{frame}");
        assert_eq!(trade_of(frame), expected, "{frame}");
    }
}

#[test]
fn raw_payloads_replies_and_other_streams() {
    let raw = raw_trade();
    assert_eq!(trade_of(raw), trade_of(TRADE));
    let cases: [(&str, Frame<'_>); 9] = [
        (r#"{"result":null,"id":7}"#, Frame::Ack { id: 7 }),
        (r#"{"id":7,"result":null}"#, Frame::Ack { id: 7 }),
        (
            r#"{"result":["btcusdt@aggTrade"],"id":3}"#,
            Frame::Reply { id: 3 },
        ),
        (
            r#"{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}"#,
            Frame::Error {
                id: Some(2),
                code: 2,
                msg: "Invalid request: invalid stream".into(),
            },
        ),
        (
            r#"{"id": null, "error": {"code": 3, "msg": "Invalid json"}}"#,
            Frame::Error {
                id: None,
                code: 3,
                msg: "Invalid json".into(),
            },
        ),
        (
            r#"{"code":2,"msg":"Invalid request: invalid stream"}"#,
            Frame::Error {
                id: None,
                code: 2,
                msg: "Invalid request: invalid stream".into(),
            },
        ),
        (
            r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","k":{"x":false}}}"#,
            Frame::Other,
        ),
        (r#"{"e":"kline","E":1,"s":"BTCUSDT","k":{}}"#, Frame::Other),
        (
            r#"[{"e":"24hrMiniTicker","s":"BTCUSDT","c":"1"}]"#,
            Frame::Other,
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(parse_frame(frame.as_bytes()).expect(frame), expected);
    }
}

#[test]
fn decimals_convert_exactly_at_the_symbol_scale() {
    let trade = trade_of(TRADE);
    let converted = trade.to_agg_trade(Scales { price: 2, qty: 3 }).expect("ok");
    assert_eq!((converted.price, converted.qty), (1_650_010, 10));
    assert_eq!(converted.time_ms, 1_672_531_199_998);
    assert_eq!(converted.trade_count(), 2);
    let error = trade.to_agg_trade(Scales { price: 0, qty: 3 }).unwrap_err();
    assert_eq!(error.field(), Some("p"));
    let error = trade.to_agg_trade(Scales { price: 2, qty: 1 }).unwrap_err();
    assert_eq!(error.field(), Some("q"));
}

struct Malformed {
    frame: String,
    check: fn(&ParseError) -> bool,
}

fn malformed_cases() -> Vec<Malformed> {
    let json = |error: &ParseError| matches!(error, ParseError::Json(_));
    let missing_q = |error: &ParseError| matches!(error, ParseError::MissingField { field: "q" });
    let escaped_s = |error: &ParseError| matches!(error, ParseError::Escaped { field: "s" });
    let unrecognised = |error: &ParseError| matches!(error, ParseError::Unrecognised { .. });
    let missing_e = |error: &ParseError| matches!(error, ParseError::MissingField { field: "e" });
    let case = |frame: String, check| Malformed { frame, check };
    vec![
        case(TRADE[..TRADE.len() - 2].to_string(), json),
        case(TRADE[..40].to_string(), json),
        case(String::new(), json),
        case("not json".to_string(), json),
        case(
            TRADE.replace(r#""a":770298494"#, r#""a":"770298494""#),
            json,
        ),
        case(TRADE.replace(r#""m":true"#, r#""m":"true""#), json),
        case(TRADE.replace(r#""p":"16500.10""#, r#""p":16500.10"#), json),
        case(TRADE.replace(r#""E":1672531200001"#, r#""E":1.5"#), json),
        case(
            TRADE.replace(r#""a":770298494"#, r#""a":99999999999999999999"#),
            json,
        ),
        case(TRADE.replace(r#","q":"0.010""#, ""), missing_q),
        case(TRADE.replace(r#""e":"aggTrade","#, ""), missing_e),
        case(
            TRADE.replace(r#""s":"BTCUSDT""#, r#""s":"BTC\u0055SDT""#),
            escaped_s,
        ),
        case(TRADE.replace(r#""s":"BTCUSDT""#, r#""s":"\uD800""#), json),
        case(TRADE.replace(r#""p":"16500.10""#, r#""p":"\uDC00x""#), json),
        case(
            TRADE.replace(r#""a":770298494"#, r#""a":770298494,"a":1"#),
            json,
        ),
        case(r#"{"foo":1}"#.to_string(), unrecognised),
        case("42".to_string(), json),
    ]
}

#[test]
fn malformed_payloads_give_typed_errors() {
    for Malformed { frame, check } in malformed_cases() {
        let error = parse_frame(frame.as_bytes()).expect_err(&frame);
        assert!(check(&error), "{frame}: {error:?}");
        assert!(!error.to_string().is_empty());
    }
    let bytes = [b'{', 0xff, 0xfe, b'}'];
    assert!(matches!(parse_frame(&bytes), Err(ParseError::Json(_))));
}

#[test]
fn bad_decimals_are_typed_errors_at_conversion() {
    let scales = Scales { price: 2, qty: 3 };
    for (from, to, field) in [
        (r#""p":"16500.10""#, r#""p":"1.2.3""#, "p"),
        (r#""p":"16500.10""#, r#""p":"-1""#, "p"),
        (r#""p":"16500.10""#, r#""p":"""#, "p"),
        (r#""q":"0.010""#, r#""q":"1e5""#, "q"),
        (r#""q":"0.010""#, r#""q":"99999999999999999999""#, "q"),
    ] {
        let frame = TRADE.replace(from, to);
        let error = trade_of(&frame).to_agg_trade(scales).unwrap_err();
        assert!(matches!(error, ParseError::Decimal { .. }), "{frame}");
        assert_eq!(error.field(), Some(field));
    }
}

#[test]
fn never_panics_on_truncations_and_byte_flips() {
    let bytes = TRADE.as_bytes();
    for end in 0..bytes.len() {
        let _ = parse_frame(&bytes[..end]);
    }
    let mut flipped = bytes.to_vec();
    for index in 0..flipped.len() {
        for replacement in [b'"', b'\\', b'}', b'{', b'0', b'-', 0x80, b' '] {
            let original = flipped[index];
            flipped[index] = replacement;
            if let (Ok(slow), Ok(fast)) = (parse_frame_serde(&flipped), parse_frame(&flipped)) {
                assert_eq!(fast, slow);
            }
            flipped[index] = original;
        }
    }
}

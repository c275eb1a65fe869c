//! Benchmark firehose (runs on a WebSocket connection's thread when `SimConfig::firehose` is
//! set): the connection's `<symbol>@aggTrade` subscriptions receive generated aggTrade frames,
//! framed by hand and written in large batches straight to the socket (tungstenite's own
//! buffer is flushed first), optionally paced. Ids are contiguous per symbol and connection.
//! The trades are not stored: REST and the reference aggregation know nothing of them.
//! Streams subscribed after the firehose started are not fed.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tungstenite::Message;

use super::render;
use super::ws_conn::Conn;
use super::{now_ms, ws_proto};

/// Frames rendered per batch (one write of roughly 200 KB).
const BATCH_FRAMES: usize = 1024;
/// Distinct price/quantity pairs per symbol.
const VARIANTS: usize = 64;

struct Sym {
    name: String,
    stream: String,
    variants: Vec<(String, String)>,
    next_agg: u64,
    next_trade: u64,
}

/// True while this connection should be fed by the firehose.
pub(crate) fn wanted(conn: &Conn) -> bool {
    let Some(cfg) = conn.shared.cfg.firehose else {
        return false;
    };
    let left = cfg.trades_per_connection == 0 || conn.firehose_sent < cfg.trades_per_connection;
    left && conn
        .shared
        .hub
        .list(conn.id)
        .iter()
        .any(|s| s.ends_with("@aggTrade"))
}

/// Feed the connection until its budget is spent, it unsubscribes, is killed, or shutdown.
pub(crate) fn run(conn: &mut Conn) -> io::Result<()> {
    let Some(cfg) = conn.shared.cfg.firehose else {
        return Ok(());
    };
    let mut syms = symbols(conn); // fixed for this run: ids stay contiguous
    let started = Instant::now();
    let start_sent = conn.firehose_sent;
    let mut buf = Vec::with_capacity(BATCH_FRAMES * 256);
    let mut round = 0usize;
    while !conn.ctl.kill.load(Ordering::Relaxed) && !conn.shared.shutdown.load(Ordering::Relaxed) {
        let budget = if cfg.trades_per_connection == 0 {
            u64::MAX
        } else {
            cfg.trades_per_connection - conn.firehose_sent
        };
        let n = (BATCH_FRAMES as u64).min(budget) as usize;
        if n == 0 || syms.is_empty() {
            break;
        }
        buf.clear();
        let t = now_ms();
        for i in 0..n {
            let k = (round + i) % syms.len();
            push_frame(&mut buf, &mut syms[k], conn.combined, t, round + i);
        }
        round += n;
        flush_tungstenite(conn)?;
        write_blocking(conn, &buf)?;
        conn.firehose_sent += n as u64;
        let c = &conn.shared.hub.counters;
        c.frames_sent.fetch_add(n as u64, Ordering::Relaxed);
        c.bytes_sent.fetch_add(buf.len() as u64, Ordering::Relaxed);
        drain_incoming(conn)?;
        pace(
            cfg.rate_per_second,
            conn.firehose_sent - start_sent,
            started,
        );
    }
    Ok(())
}

fn symbols(conn: &Conn) -> Vec<Sym> {
    let market = conn.shared.market.lock();
    conn.shared
        .hub
        .list(conn.id)
        .into_iter()
        .filter(|s| s.ends_with("@aggTrade"))
        .map(|stream| {
            let name = stream.trim_end_matches("@aggTrade").to_ascii_uppercase();
            let (pdp, qdp, price, tick, step) = market
                .find(&name)
                .map(|i| {
                    let s = &market.books[i].spec;
                    (s.price_dp, s.qty_dp, s.start_price, s.tick, s.step)
                })
                .unwrap_or((2, 3, 10_000, 1, 1));
            let variants = (0..VARIANTS as i64)
                .map(|v| {
                    let p = (price + (v % 9 - 4) * tick).max(tick);
                    (
                        render::fixed(i128::from(p), pdp),
                        render::fixed(i128::from(step * (1 + v * 7 % 23)), qdp),
                    )
                })
                .collect();
            Sym {
                name,
                stream,
                variants,
                next_agg: 1,
                next_trade: 1,
            }
        })
        .collect()
}

fn push_frame(buf: &mut Vec<u8>, s: &mut Sym, combined: bool, t: i64, n: usize) {
    let (p, q) = &s.variants[n % VARIANTS];
    let count = 1 + (n % 3) as u64;
    let mut payload = String::with_capacity(224);
    if combined {
        payload.push_str(r#"{"stream":""#);
        payload.push_str(&s.stream);
        payload.push_str(r#"","data":"#);
    }
    payload.push_str(r#"{"e":"aggTrade","E":"#);
    push_int(&mut payload, t as u64);
    payload.push_str(r#","s":""#);
    payload.push_str(&s.name);
    payload.push_str(r#"","a":"#);
    push_int(&mut payload, s.next_agg);
    payload.push_str(r#","p":""#);
    payload.push_str(p);
    payload.push_str(r#"","q":""#);
    payload.push_str(q);
    payload.push_str(r#"","f":"#);
    push_int(&mut payload, s.next_trade);
    payload.push_str(r#","l":"#);
    push_int(&mut payload, s.next_trade + count - 1);
    payload.push_str(r#","T":"#);
    push_int(&mut payload, t as u64);
    payload.push_str(if n.is_multiple_of(2) {
        r#","m":true}"#
    } else {
        r#","m":false}"#
    });
    if combined {
        payload.push('}');
    }
    s.next_agg += 1;
    s.next_trade += count;
    push_header(buf, payload.len());
    buf.extend_from_slice(payload.as_bytes());
}

/// Server-to-client text frame header (FIN, unmasked).
fn push_header(buf: &mut Vec<u8>, len: usize) {
    buf.push(0x81);
    if len < 126 {
        buf.push(len as u8);
    } else if len < 65_536 {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

fn push_int(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

fn flush_tungstenite(conn: &mut Conn) -> io::Result<()> {
    for _ in 0..10_000 {
        match conn.ws.flush() {
            Ok(()) => return Ok(()),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(_) => return Err(io::Error::other("websocket closed")),
        }
    }
    Err(io::Error::other("websocket flush timed out"))
}

fn write_blocking(conn: &mut Conn, buf: &[u8]) -> io::Result<()> {
    let stream = conn.ws.get_mut();
    stream.tcp().set_nonblocking(false)?;
    let res = stream.write_all(buf).and_then(|_| stream.flush());
    stream.tcp().set_nonblocking(true)?;
    res
}

/// Answer control requests minimally while streaming (pings are answered by tungstenite).
fn drain_incoming(conn: &mut Conn) -> io::Result<()> {
    for _ in 0..16 {
        match conn.ws.read() {
            Ok(Message::Text(t)) => {
                if let Ok(ws_proto::Request::List { id }) = ws_proto::parse(t.as_str()) {
                    let reply = ws_proto::result_list(id, &conn.shared.hub.list(conn.id));
                    let _ = conn.ws.write(Message::text(reply));
                }
            }
            Ok(Message::Close(_)) => return Err(io::Error::other("client closed")),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if super::http::is_timeout(&e) => return Ok(()),
            Err(_) => return Err(io::Error::other("websocket closed")),
        }
    }
    Ok(())
}

fn pace(rate: u64, sent: u64, started: Instant) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
    if let Some(ahead) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(ahead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_back() {
        let mut s = Sym {
            name: "BTCUSDT".into(),
            stream: "btcusdt@aggTrade".into(),
            variants: vec![("1.50".into(), "0.001".into()); VARIANTS],
            next_agg: 41,
            next_trade: 7,
        };
        let mut buf = Vec::new();
        push_frame(&mut buf, &mut s, true, 1_700_000_000_000, 2);
        assert_eq!(buf[0], 0x81);
        let (len, off) = if buf[1] == 126 {
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        } else {
            (buf[1] as usize, 2)
        };
        assert_eq!(buf.len(), off + len);
        let v: serde_json::Value = serde_json::from_slice(&buf[off..]).unwrap();
        assert_eq!(v["data"]["a"], 41);
        assert_eq!(v["data"]["l"], 9);
        assert_eq!(s.next_agg, 42);
        let mut x = String::new();
        push_int(&mut x, 0);
        push_int(&mut x, 18_446_744_073_709_551_615);
        assert_eq!(x, "018446744073709551615");
    }
}

//! I/O tests over loopback sockets with a fake clock: the test plays the exchange on the
//! server side of each connection (acks, aggTrade frames) and drives the timers by hand.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use mio::{Poll, Token};
use tungstenite::protocol::Role;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::backoff::HEALTHY_AFTER;
use super::*;
use crate::kline::{Interval, Kline, Scales};
use crate::protocol::{
    ActivationId, InitialSymbolData, ResyncReason, ShardId, SymbolSpec, WorkerCmd,
};
use crate::worker::WorkerConfig;

const SYMBOL: SymbolIndex = SymbolIndex(7);
const T0_MS: i64 = 1_700_000_040_000;
/// Below the silence timeout (90 s), so the timers see no silent connection.
const LIFETIME: Duration = Duration::from_secs(60);

type Server = WebSocket<TcpStream>;

struct Rig {
    io: Io,
    requests: Receiver<ConnectRequest>,
    poll: Poll,
    worker: Worker,
}

fn rig() -> Rig {
    let (connect_tx, requests) = bounded(8);
    let mut config = IoConfig::new("ws://127.0.0.1:9");
    config.max_connection_lifetime = LIFETIME;
    let mut worker = Worker::new(&WorkerConfig::new(ShardId(0), vec![Interval::S1], 4));
    let (ack, _ack_rx) = bounded(1);
    worker.process_command(WorkerCmd::ActivateSymbol {
        symbol: SymbolSpec {
            index: SYMBOL,
            name: Arc::from("BTCUSDT"),
            scales: Scales { price: 2, qty: 3 },
        },
        initial_data: InitialSymbolData {
            klines: vec![Some(Kline::flat(Interval::S1, T0_MS, 100))],
            taken_at_ms: T0_MS,
            last_agg_id: Some(99),
        },
        activation: ActivationId(1),
        ack,
    });
    Rig {
        io: Io::new(config, connect_tx, 3),
        requests,
        poll: Poll::new().expect("poll"),
        worker,
    }
}

impl Rig {
    fn tick(&mut self, now: Instant) {
        self.io.tick(now, self.poll.registry(), &mut self.worker);
    }

    /// Answer the pending connect request with an open loopback WebSocket; the server end.
    fn connect(&mut self, now: Instant) -> (usize, Server) {
        self.tick(now);
        let request = self.requests.try_recv().expect("a connect request");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        client.set_nonblocking(true).expect("non-blocking");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let ws = WebSocket::from_raw_socket(MaybeTlsStream::Plain(client), Role::Client, None);
        let result = ConnectResult::Connected {
            slot: request.slot,
            generation: request.generation,
            ws: Box::new(ws),
        };
        self.io.on_connect_result(result, self.poll.registry(), now);
        let server = WebSocket::from_raw_socket(server, Role::Server, None);
        (request.slot, server)
    }

    /// Let the I/O send its SUBSCRIBE, acknowledge it from `server` and read the ack.
    fn subscribe_acked(&mut self, slot: usize, server: &mut Server, now: Instant) {
        self.tick(now);
        let (id, text) = request(server);
        assert!(text.contains("btcusdt@aggTrade"), "{text}");
        send(server, &format!(r#"{{"result":null,"id":{id}}}"#));
        self.read(slot, now);
        assert!(self.io.conns[slot].as_ref().expect("open").subs.settled());
    }

    fn read(&mut self, slot: usize, now: Instant) -> ReadStats {
        self.read_failures(slot, now).0
    }

    /// Read, and also return the symbols whose stream failed.
    fn read_failures(&mut self, slot: usize, now: Instant) -> (ReadStats, StreamFailures) {
        std::thread::sleep(Duration::from_millis(20)); // loopback delivery
        self.io.on_event(Token(slot + FIRST_CONN_TOKEN), true);
        let mut failures = Vec::new();
        let registry = self.poll.registry();
        let stats = self
            .io
            .read_ready(&mut self.worker, registry, now, &mut failures);
        (stats, failures)
    }

    fn last_applied(&self) -> Option<i64> {
        let slot = self.worker.slot_of(SYMBOL).expect("slot");
        self.worker.book().last_agg_id(slot)
    }
}

/// The control request `server` receives next: its id and text.
fn request(server: &mut Server) -> (u64, String) {
    let text = match server.read().expect("a request") {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a request, got {other:?}"),
    };
    let id = text.rsplit("\"id\":").next().expect("id");
    let id = id.trim_end_matches('}').parse().expect("numeric id");
    (id, text)
}

fn send(server: &mut Server, text: &str) {
    server.send(Message::text(text)).expect("server sends");
}

fn trades(server: &mut Server, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        let time = T0_MS + id;
        send(
            server,
            &format!(
                r#"{{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","E":{time},"s":"BTCUSDT","a":{id},"p":"1.00","q":"0.001","f":{id},"l":{id},"T":{time},"m":false}}}}"#
            ),
        );
    }
}

fn backoff_of(io: &Io, slot: usize, now: Instant) -> Duration {
    match io.conns[slot].as_ref().expect("slot").state {
        ConnState::Backoff { until } => until - now,
        ref other => panic!("not backing off: {other:?}"),
    }
}

#[test]
fn lost_connections_back_off_exponentially_until_one_stays_healthy() {
    let mut rig = rig();
    let mut now = Instant::now();
    rig.io.subscribe(SYMBOL, "BTCUSDT", now).expect("room");
    let (min, max) = (
        rig.io.config.reconnect_backoff_min,
        rig.io.config.reconnect_backoff_max,
    );
    // The server accepts and acknowledges, then drops the connection at once: every time.
    for losses in 0..10u32 {
        let (slot, mut server) = rig.connect(now);
        rig.subscribe_acked(slot, &mut server, now);
        rig.io.lose(slot, rig.poll.registry(), now);
        let delay = backoff_of(&rig.io, slot, now);
        let step = min.saturating_mul(1 << losses).min(max);
        assert!(
            delay >= step / 2 && delay <= step,
            "loss {losses}: {delay:?} not in [{:?}, {step:?}]",
            step / 2
        );
        now += delay;
    }
    // A connection that stays open for HEALTHY_AFTER is healthy: back to the minimum.
    let (slot, mut server) = rig.connect(now);
    rig.subscribe_acked(slot, &mut server, now);
    now += HEALTHY_AFTER;
    rig.tick(now);
    rig.io.lose(slot, rig.poll.registry(), now);
    assert!(backoff_of(&rig.io, slot, now) <= min);
}

#[test]
fn rotation_hands_over_without_gap_when_the_replacement_leads() {
    let mut rig = rig();
    let t0 = Instant::now();
    rig.io.subscribe(SYMBOL, "BTCUSDT", t0).expect("room");
    let (old, mut old_server) = rig.connect(t0);
    rig.subscribe_acked(old, &mut old_server, t0);
    trades(&mut old_server, 100..=101);
    rig.read(old, t0);
    assert_eq!(rig.last_applied(), Some(101));

    // At the lifetime limit a replacement subscribes; the old connection stays.
    let now = t0 + LIFETIME;
    rig.tick(now);
    assert!(rig.io.conns[old].as_ref().expect("old").retiring);
    let (new, mut new_server) = rig.connect(now);
    rig.subscribe_acked(new, &mut new_server, now);
    rig.tick(now);
    assert!(
        rig.io.conns[old].is_some(),
        "acks alone do not end the overlap"
    );

    // The replacement leads: 104..106 arrive before the old connection's 102..103.
    trades(&mut new_server, 104..=106);
    let stats = rig.read(new, now);
    assert_eq!(stats.held, 3);
    assert_eq!(rig.last_applied(), Some(101), "held, not applied");
    trades(&mut old_server, 102..=105);
    rig.read(old, now);
    assert_eq!(
        rig.last_applied(),
        Some(106),
        "the old caught up: the held ones applied"
    );
    trades(&mut new_server, 107..=107);
    rig.read(new, now);
    rig.tick(now);
    assert!(rig.io.conns[old].is_none(), "every symbol switched: closed");
    assert_eq!(rig.last_applied(), Some(107));
    let book = rig.worker.book().stats();
    assert_eq!((book.gaps, book.trades_applied), (0, 8), "{book:?}");
    assert_eq!(rig.io.stats().rotations, 1);
    assert_eq!(rig.io.stats().reconnects, 0);
}

#[test]
fn rotation_ends_after_the_bounded_overlap_for_quiet_symbols() {
    let mut rig = rig();
    let t0 = Instant::now();
    rig.io.subscribe(SYMBOL, "BTCUSDT", t0).expect("room");
    let (old, mut old_server) = rig.connect(t0);
    rig.subscribe_acked(old, &mut old_server, t0);
    trades(&mut old_server, 100..=101);
    rig.read(old, t0);
    let now = t0 + LIFETIME;
    rig.tick(now);
    let (new, mut new_server) = rig.connect(now);
    rig.subscribe_acked(new, &mut new_server, now);
    rig.tick(now);
    // The replacement delivers a trade the old one never connects to: it stays held.
    trades(&mut new_server, 105..=105);
    rig.read(new, now);
    rig.tick(now + ROTATION_OVERLAP_MAX - Duration::from_millis(1));
    assert!(rig.io.conns[old].is_some());
    assert_eq!(rig.last_applied(), Some(101));
    rig.tick(now + ROTATION_OVERLAP_MAX);
    assert!(
        rig.io.conns[old].is_none(),
        "closed after the bounded overlap"
    );
    assert_eq!(
        rig.last_applied(),
        Some(105),
        "the held trade applied at the end"
    );
    assert_eq!(
        rig.worker.book().stats().gaps,
        1,
        "the missing trades are a gap (resync)"
    );
}

#[test]
fn a_subscription_the_venue_keeps_refusing_is_reported_and_can_be_made_again() {
    let mut rig = rig();
    let t0 = Instant::now();
    rig.io.subscribe(SYMBOL, "BTCUSDT", t0).expect("room");
    let (slot, mut server) = rig.connect(t0);
    let mut reported = Vec::new();
    for attempt in 0..=u64::from(subs::SUBSCRIBE_RETRY_MAX) {
        let now = t0 + Duration::from_secs(attempt + 1); // past the control-message pacing
        rig.tick(now);
        let (id, _) = request(&mut server);
        send(
            &mut server,
            &format!(r#"{{"error":{{"code":2,"msg":"Invalid request"}},"id":{id}}}"#),
        );
        reported.extend(rig.read_failures(slot, now).1);
    }
    assert_eq!(reported, vec![(SYMBOL, ResyncReason::SubscriptionLost)]);
    assert_eq!(rig.io.stats().subscriptions_given_up, 1);
    // Activated again, the symbol is subscribed again on the same connection.
    let now = t0 + Duration::from_secs(10);
    rig.io.subscribe(SYMBOL, "BTCUSDT", now).expect("room");
    rig.subscribe_acked(slot, &mut server, now);
}

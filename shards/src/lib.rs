//! klagg data plane: the pure kline core ([`kline`]), the activation protocol's messages
//! ([`protocol`]), the frame parser ([`parse`]), the activating Worker ([`worker`]), the
//! shard's mio + tungstenite WebSocket I/O ([`io`]), the pinned shard thread ([`shard`]) and
//! Binance's server-side wire formats shared with the API and the simulator ([`wire`]).
//!
//! ```text
//!  control plane ── ShardCmd (bounded inbox + mio Waker) ──► shard-NN (pinned)
//!                                                            ├─ Worker: slots, activation states, KlineBook
//!                                                            ├─ Io: /market/stream connections, SUBSCRIBE pacing
//!                                                            │    └─ shard-NN-conn: blocking connect/TLS/handshake
//!  store, API ◄── KlineMsg (bounded, outbox for finals) ─────┤
//!  control plane ◄── ShardReport::ResyncNeeded (bounded) ────┘
//! ```

pub mod io;
pub mod kline;
pub mod parse;
pub mod protocol;
pub mod shard;
pub mod wire;
pub mod worker;

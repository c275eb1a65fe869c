//! klagg data plane: the pure kline core ([`kline`]), the activation protocol's messages
//! ([`protocol`]), and (coming) the activating Worker and the pinned shard threads with their
//! mio-driven WebSocket I/O.

pub mod io;
pub mod kline;
pub mod parse;
pub mod protocol;
pub mod shard;
pub mod worker;

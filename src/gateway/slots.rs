//! Connection slots per client address (taken by the acceptor `api-accept` and by the WebSocket
//! handshake on `api-http-N`, given back by whichever thread ends the connection): a global limit
//! plus a limit per client, so that one client cannot take every slot. A client is its IP
//! address; IPv6 addresses count per /64 (one host usually holds a whole /64), IPv4-mapped IPv6
//! addresses as their IPv4 address. The table holds one entry per client with a slot open, so it
//! is bounded by the global limit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefusal {
    #[error("too many connections (limit {0})")]
    Full(usize),
    #[error("too many connections from one client (limit {0} per address)")]
    PerClient(usize),
}

#[derive(Debug, Default)]
struct SlotTable {
    open: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Open connections, in all and per client.
#[derive(Debug, Default)]
pub struct ClientSlots {
    table: Mutex<SlotTable>,
}

/// The address a client is counted under (see the module docs); `None` for an unknown peer,
/// which only the global limit applies to.
pub fn client_key(peer: Option<SocketAddr>) -> Option<IpAddr> {
    let ip = peer?.ip();
    Some(match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    })
}

impl ClientSlots {
    /// Take a slot for `client`: at most `max` in all and `per_client_max` per client.
    ///
    /// # Errors
    /// Which limit is reached (the per-client one is checked first).
    pub fn take(
        &self,
        client: Option<IpAddr>,
        max: usize,
        per_client_max: usize,
    ) -> Result<(), SlotRefusal> {
        let mut table = self.table.lock();
        let held = client.map_or(0, |ip| table.per_client.get(&ip).copied().unwrap_or(0));
        if client.is_some() && held >= per_client_max {
            return Err(SlotRefusal::PerClient(per_client_max));
        }
        if table.open >= max {
            return Err(SlotRefusal::Full(max));
        }
        table.open += 1;
        if let Some(ip) = client {
            table.per_client.insert(ip, held + 1);
        }
        Ok(())
    }

    /// Give back a slot of `client` (taken with [`ClientSlots::take`]).
    pub fn give_back(&self, client: Option<IpAddr>) {
        let mut table = self.table.lock();
        table.open = table.open.saturating_sub(1);
        let Some(ip) = client else {
            return;
        };
        if let Some(held) = table.per_client.get_mut(&ip) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                table.per_client.remove(&ip);
            }
        }
    }

    /// Slots open in all.
    pub fn open(&self) -> usize {
        self.table.lock().open
    }

    /// Slots open of `client`.
    pub fn held_by(&self, client: Option<IpAddr>) -> usize {
        client.map_or(0, |ip| {
            self.table.lock().per_client.get(&ip).copied().unwrap_or(0)
        })
    }
}

/// A slot that is given back when dropped (a connection thread holds it for its life).
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ClientSlots>,
    client: Option<IpAddr>,
}

impl Slot {
    /// Take a slot of `slots` for `client`.
    ///
    /// # Errors
    /// As [`ClientSlots::take`].
    pub fn take(
        slots: &Arc<ClientSlots>,
        client: Option<IpAddr>,
        max: usize,
        per_client_max: usize,
    ) -> Result<Slot, SlotRefusal> {
        slots.take(client, max, per_client_max)?;
        Ok(Slot {
            slots: slots.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.give_back(self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Option<IpAddr> {
        client_key(Some(SocketAddr::new(text.parse().unwrap(), 1)))
    }

    #[test]
    fn per_client_and_global_limits() {
        let slots = ClientSlots::default();
        let (a, b) = (key("10.0.0.1"), key("10.0.0.2"));
        assert_eq!(slots.take(a, 3, 2), Ok(()));
        assert_eq!(slots.take(a, 3, 2), Ok(()));
        assert_eq!(slots.take(a, 3, 2), Err(SlotRefusal::PerClient(2)));
        assert_eq!(slots.take(b, 3, 2), Ok(()));
        assert_eq!(slots.take(None, 3, 2), Err(SlotRefusal::Full(3)));
        assert_eq!((slots.open(), slots.held_by(a)), (3, 2));
        slots.give_back(a);
        assert_eq!(slots.take(b, 3, 2), Ok(()));
        slots.give_back(a);
        slots.give_back(b);
        slots.give_back(b);
        assert_eq!(
            (slots.open(), slots.held_by(a), slots.held_by(b)),
            (0, 0, 0)
        );
        assert!(slots.table.lock().per_client.is_empty(), "no entry is kept");
        // Too many give-backs never underflow.
        slots.give_back(a);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn slots_are_given_back_on_drop() {
        let slots = Arc::new(ClientSlots::default());
        let a = key("127.0.0.1");
        let first = Slot::take(&slots, a, 10, 1).unwrap();
        assert!(Slot::take(&slots, a, 10, 1).is_err());
        drop(first);
        assert!(Slot::take(&slots, a, 10, 1).is_ok());
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:2"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_eq!(client_key(None), None);
    }
}

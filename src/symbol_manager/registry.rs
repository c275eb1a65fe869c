//! The symbol registry (owned by the SymbolManager; its sub-tasks — backfill threads and the
//! NewSymbolDetector — and the gateway read it): name ↔ dense `SymbolIndex`, decimal scales,
//! 24 h statistics and the listing lifecycle. Indices are assigned once and never reused, so a
//! `SymbolIndex` means the same symbol for the life of the process. Cold path only: the lock is
//! taken per listing, per frame of the detector and per API request, never per trade.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use klagg_shards::kline::Scales;
use klagg_shards::protocol::{SymbolIndex, SymbolSpec};
use parking_lot::RwLock;

use super::exchange::Ticker24h;
use crate::constants::SYMBOLS_MAX;

/// Where a registered symbol is in our pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// Announced (`PENDING_TRADING`); promoted when it turns TRADING.
    Pending,
    /// Waiting for a backfill thread.
    Queued,
    /// Its initial package is being built.
    Backfilling,
    /// Its `ActivateSymbol` went to the dispatcher (the dispatcher owns it from there).
    Sent,
    /// Delisted: deactivated and unsubscribed.
    Delisted,
}

impl Lifecycle {
    pub const fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Pending => "pending",
            Lifecycle::Queued => "queued",
            Lifecycle::Backfilling => "backfilling",
            Lifecycle::Sent => "sent",
            Lifecycle::Delisted => "delisted",
        }
    }
}

/// One registered symbol.
#[derive(Debug, Clone)]
pub struct SymbolEntry {
    pub index: SymbolIndex,
    pub name: Arc<str>,
    pub scales: Scales,
    pub lifecycle: Lifecycle,
    pub ticker: Ticker24h,
}

impl SymbolEntry {
    pub fn spec(&self) -> SymbolSpec {
        SymbolSpec {
            index: self.index,
            name: self.name.clone(),
            scales: self.scales,
        }
    }
}

/// Why a symbol could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry full ({SYMBOLS_MAX} symbols)")]
    Full,
}

/// The table itself.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Vec<SymbolEntry>,
    by_name: HashMap<Arc<str>, SymbolIndex>,
    /// Names that are not served (not USDT perpetuals, or outside `--symbols`): the detector
    /// does not ask about them again.
    excluded: HashSet<String>,
}

impl Registry {
    /// Register `name` (or return its existing index).
    ///
    /// # Errors
    /// The registry holds `SYMBOLS_MAX` symbols.
    pub fn insert(
        &mut self,
        name: &str,
        scales: Scales,
        lifecycle: Lifecycle,
        ticker: Ticker24h,
    ) -> Result<SymbolIndex, RegistryError> {
        if let Some(&index) = self.by_name.get(name) {
            return Ok(index);
        }
        if self.entries.len() >= SYMBOLS_MAX {
            return Err(RegistryError::Full);
        }
        let index =
            SymbolIndex(u32::try_from(self.entries.len()).map_err(|_| RegistryError::Full)?);
        let name: Arc<str> = Arc::from(name);
        self.entries.push(SymbolEntry {
            index,
            name: name.clone(),
            scales,
            lifecycle,
            ticker,
        });
        self.by_name.insert(name, index);
        Ok(index)
    }

    pub fn exclude(&mut self, name: &str) {
        self.excluded.insert(name.to_string());
    }

    pub fn is_excluded(&self, name: &str) -> bool {
        self.excluded.contains(name)
    }

    pub fn index(&self, name: &str) -> Option<SymbolIndex> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, index: SymbolIndex) -> Option<&SymbolEntry> {
        self.entries.get(index.0 as usize)
    }

    pub fn get_mut(&mut self, index: SymbolIndex) -> Option<&mut SymbolEntry> {
        self.entries.get_mut(index.0 as usize)
    }

    /// Move `index` from one of `from` to `to`; false (and no change) when it was elsewhere.
    pub fn transition(&mut self, index: SymbolIndex, from: &[Lifecycle], to: Lifecycle) -> bool {
        match self.entries.get_mut(index.0 as usize) {
            Some(entry) if from.contains(&entry.lifecycle) => {
                entry.lifecycle = to;
                true
            }
            _ => false,
        }
    }

    pub fn entries(&self) -> &[SymbolEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Symbols that should be active: registered and neither pending nor delisted.
    pub fn serving_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e.lifecycle, Lifecycle::Pending | Lifecycle::Delisted))
            .count()
    }
}

/// A shared handle on the registry. Readers (gateway, store) use the lookups; writes happen on
/// the SymbolManager's threads only.
#[derive(Debug, Clone, Default)]
pub struct RegistryView {
    inner: Arc<RwLock<Registry>>,
}

impl RegistryView {
    pub fn new() -> RegistryView {
        RegistryView::default()
    }

    /// The symbol's name (upper case, as in exchangeInfo).
    pub fn name(&self, index: SymbolIndex) -> Option<Arc<str>> {
        self.inner.read().get(index).map(|e| e.name.clone())
    }

    /// The index of a name (upper case).
    pub fn index(&self, name: &str) -> Option<SymbolIndex> {
        self.inner.read().index(name)
    }

    /// Decimal places of the symbol's prices and quantities.
    pub fn scales(&self, index: SymbolIndex) -> Option<Scales> {
        self.inner.read().get(index).map(|e| e.scales)
    }

    /// Name, index and scales together.
    pub fn spec(&self, index: SymbolIndex) -> Option<SymbolSpec> {
        self.inner.read().get(index).map(SymbolEntry::spec)
    }

    pub fn lifecycle(&self, index: SymbolIndex) -> Option<Lifecycle> {
        self.inner.read().get(index).map(|e| e.lifecycle)
    }

    /// A copy of every entry (status pages).
    pub fn snapshot(&self) -> Vec<SymbolEntry> {
        self.inner.read().entries().to_vec()
    }

    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.read().is_empty()
    }

    /// Read access (SymbolManager internals and tests).
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Registry> {
        self.inner.read()
    }

    /// Write access: SymbolManager threads only.
    pub(crate) fn write(&self) -> parking_lot::RwLockWriteGuard<'_, Registry> {
        self.inner.write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_stable_and_looked_up_both_ways() {
        let view = RegistryView::new();
        let scales = Scales { price: 2, qty: 3 };
        let a = view
            .write()
            .insert("BTCUSDT", scales, Lifecycle::Queued, Ticker24h::default())
            .unwrap();
        let b = view
            .write()
            .insert("ETHUSDT", scales, Lifecycle::Pending, Ticker24h::default())
            .unwrap();
        assert_eq!((a, b), (SymbolIndex(0), SymbolIndex(1)));
        assert_eq!(
            view.write()
                .insert("BTCUSDT", scales, Lifecycle::Sent, Ticker24h::default()),
            Ok(a)
        );
        assert_eq!(view.index("ETHUSDT"), Some(b));
        assert_eq!(view.name(a).as_deref(), Some("BTCUSDT"));
        assert_eq!(view.scales(b), Some(scales));
        assert_eq!(view.spec(a).unwrap().index, a);
        assert_eq!(view.read().serving_count(), 1);
        assert!(
            view.write()
                .transition(b, &[Lifecycle::Pending], Lifecycle::Queued)
        );
        assert!(
            !view
                .write()
                .transition(b, &[Lifecycle::Pending], Lifecycle::Sent)
        );
        assert_eq!(view.lifecycle(b), Some(Lifecycle::Queued));
        view.write().exclude("BTCUSDT_260327");
        assert!(view.read().is_excluded("BTCUSDT_260327"));
        assert_eq!(view.len(), 2);
    }
}

//! The shard's clocks (shard thread): the only place the data plane reads wall time, and the
//! estimate of the exchange's time from trade event times (`E`) and the local clock, which
//! drives clock closes. The pure kline core never reads a clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Local wall-clock time, epoch ms.
pub fn local_epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// How fast a lower offset sample pulls the estimate down (1/64 of the difference per batch).
const DECAY_SHIFT: u32 = 6;

/// Exchange time ≈ local time + offset. A frame's `E` was stamped by the exchange before the
/// frame travelled, so `E − local_receive` is the offset minus the latency: the largest recent
/// sample is the best (least delayed) estimate. Lower samples pull it down slowly, so the
/// estimate follows a drifting clock without jumping on one delayed frame. It errs on the late
/// side, which delays clock closes a little instead of closing a period early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeClock {
    offset_ms: Option<i64>,
}

impl ExchangeClock {
    /// Record a frame's event time `E`, received at local `local_ms`.
    pub fn observe(&mut self, event_time_ms: i64, local_ms: i64) {
        let sample = event_time_ms - local_ms;
        self.offset_ms = Some(match self.offset_ms {
            None => sample,
            Some(offset) if sample >= offset => sample,
            Some(offset) => offset - ((offset - sample) >> DECAY_SHIFT),
        });
    }

    /// The estimated exchange time at local `local_ms` (the local clock until a trade arrived).
    pub fn now(&self, local_ms: i64) -> i64 {
        local_ms + self.offset_ms.unwrap_or(0)
    }

    pub fn offset_ms(&self) -> Option<i64> {
        self.offset_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_least_delayed_sample_and_decays_slowly() {
        let mut clock = ExchangeClock::default();
        assert_eq!(clock.now(1000), 1000);
        clock.observe(5_000, 4_990); // exchange 10 ms ahead (minus latency)
        assert_eq!(clock.now(6_000), 6_010);
        clock.observe(5_100, 5_200); // a frame delayed by 100 ms barely moves it
        assert_eq!(clock.offset_ms(), Some(10 - (110 >> DECAY_SHIFT)));
        clock.observe(6_000, 5_980);
        assert_eq!(clock.offset_ms(), Some(20));
    }
}

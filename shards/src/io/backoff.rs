//! The reconnect back-off policy (pure; used by the shard thread's I/O): capped exponential
//! growth with jitter, and the small generator that draws the jitter.
//!
//! A connection's `failures` counts consecutive failed connect attempts *and* connections lost
//! after they opened; it is reset only once a connection has stayed open for
//! [`HEALTHY_AFTER`]. So a server that accepts, acknowledges and then drops the connection is
//! retried at 100–200 ms, 200–400 ms, 400–800 ms, … up to the cap, never in a tight loop.

use std::time::Duration;

/// A connection open this long without breaking counts as healthy: its failures are forgotten.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Doublings of the minimum back-off at most (the cap is normally reached long before).
const DOUBLINGS_MAX: u32 = 16;
/// Resolution of the jitter: the delay is `step · (½ + ½ · k / JITTER_STEPS)`, `k < JITTER_STEPS`.
const JITTER_STEPS: u64 = 1024;

/// The delay before the next attempt after `failures` consecutive failures:
/// `step = min(min · 2^failures, max)`, then a jitter in `[½, 1)` of the step chosen by `draw`
/// (any 64 bits; only `draw % 1024` is used).
pub fn delay(min: Duration, max: Duration, failures: u32, draw: u64) -> Duration {
    let step = min
        .saturating_mul(1u32 << failures.min(DOUBLINGS_MAX))
        .min(max);
    let half = step / 2;
    let k = (draw % JITTER_STEPS) as f64;
    half + half.mul_f64(k / JITTER_STEPS as f64)
}

/// xorshift64: good enough for jitter (never for anything that must be unpredictable).
/// `state` must not be 0.
pub fn next_draw(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn grows_exponentially_until_the_cap() {
        let lowest: Vec<u128> = (0..10)
            .map(|failures| delay(MIN, MAX, failures, 0).as_millis())
            .collect();
        assert_eq!(
            lowest,
            [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 15_000, 15_000]
        );
        for failures in 0..8 {
            let step = MIN * (1 << failures);
            let highest = delay(MIN, MAX, failures, JITTER_STEPS - 1);
            assert!(
                highest < step && highest > step.mul_f64(0.99),
                "{highest:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_half_to_full_step() {
        let mut state = 42;
        for failures in [0, 1, 3, 7, 20, u32::MAX] {
            let step = MIN
                .saturating_mul(1 << failures.min(DOUBLINGS_MAX))
                .min(MAX);
            let draws: Vec<Duration> = (0..200)
                .map(|_| delay(MIN, MAX, failures, next_draw(&mut state)))
                .collect();
            for d in &draws {
                assert!(
                    *d >= step / 2 && *d <= step,
                    "{failures}: {d:?} vs {step:?}"
                );
            }
            let (lo, hi) = (draws.iter().min(), draws.iter().max());
            assert!(lo != hi, "the jitter varies: {lo:?}");
        }
    }

    #[test]
    fn capped_and_never_overflows() {
        for failures in [15, 16, 17, 64, u32::MAX] {
            let d = delay(MIN, MAX, failures, u64::MAX);
            assert!(d <= MAX && d >= MAX / 2, "{d:?}");
        }
        let huge = delay(Duration::MAX, Duration::MAX, u32::MAX, 7);
        assert!(huge >= Duration::MAX / 2);
        assert_eq!(delay(Duration::ZERO, MAX, 5, 9), Duration::ZERO);
    }

    #[test]
    fn draws_never_stick_at_zero() {
        let mut state = 1;
        assert!((0..1000).all(|_| next_draw(&mut state) != 0));
    }
}

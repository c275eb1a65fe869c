//! REST request-weight accounting (owned by `Shared::limiter`, a mutex taken briefly by each REST
//! connection thread): weight per IP in fixed calendar minutes, 429 with `Retry-After` beyond
//! the limit, and 418 bans with escalating durations for IPs that keep going after 429s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

const MINUTE_MS: i64 = 60_000;
/// IPs tracked at once; beyond it, IPs idle for a minute (and not banned) are forgotten.
pub const MAX_TRACKED_IPS: usize = 4096;

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it; `used` is the IP's weight in this minute.
    Allow {
        /// Weight used this minute, this request included.
        used: u32,
    },
    /// 429: over the limit; retry after this many seconds (the next minute).
    TooMany {
        /// Weight used this minute.
        used: u32,
        /// Seconds to the next minute.
        retry_after_s: u64,
    },
    /// 418: banned until `until_ms`.
    Banned {
        /// Weight used this minute.
        used: u32,
        /// Ban end, epoch ms.
        until_ms: i64,
        /// Seconds to the ban end.
        retry_after_s: u64,
    },
}

#[derive(Debug, Default, Clone)]
struct IpState {
    window_ms: i64,
    used: u32,
    rejections: u32,
    offences: u32,
    banned_until_ms: i64,
}

/// Weight limiter for all client IPs.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    rejections_before_ban: u32,
    ban_durations: Vec<Duration>,
    ips: HashMap<IpAddr, IpState>,
}

impl RateLimiter {
    /// A limiter with `limit` weight per minute per IP.
    pub fn new(limit: u32, rejections_before_ban: u32, ban_durations: Vec<Duration>) -> Self {
        RateLimiter {
            limit,
            rejections_before_ban,
            ban_durations,
            ips: HashMap::new(),
        }
    }

    /// Charge `weight` to `ip` at `now_ms` and decide.
    pub fn check(&mut self, ip: IpAddr, weight: u32, now_ms: i64) -> Verdict {
        self.forget_idle(now_ms);
        let window = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let st = self.ips.entry(ip).or_default();
        if st.window_ms != window {
            (st.window_ms, st.used, st.rejections) = (window, 0, 0);
        }
        if st.banned_until_ms > now_ms {
            return banned(st, now_ms);
        }
        st.used = st.used.saturating_add(weight);
        if st.used <= self.limit {
            return Verdict::Allow { used: st.used };
        }
        st.rejections += 1;
        if st.rejections > self.rejections_before_ban {
            let i = (st.offences as usize).min(self.ban_durations.len().saturating_sub(1));
            let d = self
                .ban_durations
                .get(i)
                .copied()
                .unwrap_or(Duration::from_secs(120));
            st.offences += 1;
            st.banned_until_ms = now_ms + d.as_millis() as i64;
            return banned(st, now_ms);
        }
        let retry_after_s = ((window + MINUTE_MS - now_ms) as u64).div_ceil(1000).max(1);
        Verdict::TooMany {
            used: st.used,
            retry_after_s,
        }
    }

    /// Weight used by `ip` in the current minute.
    pub fn used(&self, ip: IpAddr, now_ms: i64) -> u32 {
        let window = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        self.ips
            .get(&ip)
            .filter(|s| s.window_ms == window)
            .map_or(0, |s| s.used)
    }

    fn forget_idle(&mut self, now_ms: i64) {
        if self.ips.len() < MAX_TRACKED_IPS {
            return;
        }
        self.ips
            .retain(|_, s| s.banned_until_ms > now_ms || now_ms - s.window_ms < MINUTE_MS);
    }
}

fn banned(st: &IpState, now_ms: i64) -> Verdict {
    let retry_after_s = ((st.banned_until_ms - now_ms) as u64).div_ceil(1000).max(1);
    Verdict::Banned {
        used: st.used,
        until_ms: st.banned_until_ms,
        retry_after_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_429_then_418_and_reset() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut rl = RateLimiter::new(10, 2, vec![Duration::from_secs(5), Duration::from_secs(50)]);
        let t0 = 60_000 * 1000 + 10_000;
        assert_eq!(rl.check(ip, 10, t0), Verdict::Allow { used: 10 });
        assert_eq!(
            rl.check(ip, 1, t0),
            Verdict::TooMany {
                used: 11,
                retry_after_s: 50
            }
        );
        assert!(matches!(rl.check(ip, 1, t0), Verdict::TooMany { .. }));
        match rl.check(ip, 1, t0) {
            Verdict::Banned {
                until_ms,
                retry_after_s,
                ..
            } => {
                assert_eq!((until_ms, retry_after_s), (t0 + 5_000, 5));
            }
            v => panic!("expected a ban, got {v:?}"),
        }
        // Still banned in the next minute until the ban ends, then allowed again.
        assert!(matches!(
            rl.check(ip, 1, t0 + 4_000),
            Verdict::Banned { .. }
        ));
        assert_eq!(rl.check(ip, 1, t0 + 60_000), Verdict::Allow { used: 1 });
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(rl.check(other, 1, t0), Verdict::Allow { used: 1 });
    }

    #[test]
    fn bans_escalate_for_a_client_that_keeps_going() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let durations = vec![Duration::from_secs(5), Duration::from_secs(50)];
        let mut rl = RateLimiter::new(10, 1, durations);
        let ban = |verdict| match verdict {
            Verdict::Banned { retry_after_s, .. } => retry_after_s,
            v => panic!("expected a ban, got {v:?}"),
        };
        let t0 = 60_000 * 1000 + 1_000;
        assert_eq!(rl.check(ip, 10, t0), Verdict::Allow { used: 10 });
        assert!(matches!(rl.check(ip, 1, t0), Verdict::TooMany { .. }));
        assert_eq!(ban(rl.check(ip, 1, t0)), 5, "first offence");
        // Back after the first ban, still over the minute's limit: the second ban is longer.
        assert_eq!(ban(rl.check(ip, 1, t0 + 5_000)), 50, "second offence");
        assert_eq!(ban(rl.check(ip, 1, t0 + 54_000)), 1, "still banned");
        // A later minute: allowed again, and a third offence keeps the longest duration.
        let t1 = t0 + 2 * 60_000;
        assert_eq!(rl.check(ip, 10, t1), Verdict::Allow { used: 10 });
        assert!(matches!(rl.check(ip, 1, t1), Verdict::TooMany { .. }));
        assert_eq!(ban(rl.check(ip, 1, t1)), 50, "third offence");
    }
}

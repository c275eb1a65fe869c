//! Checks of `klagg run`'s flags against the machine and each other (main thread, while the
//! configuration is resolved, before anything starts): cores against the process's allowed CPU
//! set, the simulator's knobs and their venue, the proxy URL. Each failure is one
//! [`ConfigError`] naming its flag (exit code 2).

use super::{ConfigError, RunArgs, SimSettings, invalid};
use crate::constants::{REST_TIMEOUT_MS, SYMBOLS_MAX};

/// The most simulated symbols for `--venue sim` (the simulator's own limit, within ours).
pub const SIM_SYMBOLS_MAX: usize = if klagg_bench::sim::MAX_SYMBOLS < SYMBOLS_MAX {
    klagg_bench::sim::MAX_SYMBOLS
} else {
    SYMBOLS_MAX
};
/// The highest `--sim-trade-rate` (aggregate trades per second over the whole market).
pub const SIM_TRADE_RATE_MAX: u64 = 1_000_000;
/// The lowest `--sim-weight-limit`: a startup needs exchangeInfo (weight 1) and one
/// `ticker/24hr` (40) within our 90 % of a minute's limit; below it the engine crawls at one
/// request per minute (0 never starts).
pub const SIM_WEIGHT_LIMIT_MIN: u64 = 50;
/// The highest `--sim-rest-latency-ms`: half the REST timeout, so a response still arrives.
pub const SIM_REST_LATENCY_MS_MAX: u64 = REST_TIMEOUT_MS / 2;

/// Default shard pinning: shard `i` on the `i`-th core the process may use (`core_ids`, from
/// its affinity mask), round robin when there are more shards than cores; unpinned when the
/// allowed cores are unknown (empty).
pub fn default_pins(shards: usize, core_ids: &[usize]) -> Vec<Option<usize>> {
    (0..shards)
        .map(|i| (!core_ids.is_empty()).then(|| core_ids[i % core_ids.len()]))
        .collect()
}

/// Every core of `listed` must be one the process may use (`available`; not checked when the
/// allowed set is unknown, i.e. empty).
pub fn check_cores(
    flag: &'static str,
    listed: &[usize],
    available: &[usize],
) -> Result<(), ConfigError> {
    match listed.iter().find(|core| !available.contains(core)) {
        Some(core) if !available.is_empty() => Err(invalid(
            flag,
            format!(
                "core {core} is not available to this process (allowed: {})",
                format_cores(available)
            ),
        )),
        _ => Ok(()),
    }
}

/// `0-3,6,8-9` for `[0, 1, 2, 3, 6, 8, 9]` (sorted and deduplicated first).
pub fn format_cores(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for core in sorted {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == core => *end = core,
            _ => runs.push((core, core)),
        }
    }
    let text: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    text.join(",")
}

/// The simulator's settings for `--venue sim`, each in range.
pub fn sim_settings(args: &RunArgs) -> Result<SimSettings, ConfigError> {
    let symbols = args.sim_symbols.unwrap_or(20);
    if !(1..=SIM_SYMBOLS_MAX).contains(&symbols) {
        return Err(invalid(
            "sim-symbols",
            format!("must be 1..={SIM_SYMBOLS_MAX}, not {symbols}"),
        ));
    }
    let trade_rate = args.sim_trade_rate.unwrap_or(200);
    if !(1..=SIM_TRADE_RATE_MAX).contains(&trade_rate) {
        return Err(invalid(
            "sim-trade-rate",
            format!("must be 1..={SIM_TRADE_RATE_MAX} trades per second, not {trade_rate}"),
        ));
    }
    let weight_limit = args.sim_weight_limit.unwrap_or(2400);
    if !(SIM_WEIGHT_LIMIT_MIN..=u64::from(u32::MAX)).contains(&weight_limit) {
        return Err(invalid(
            "sim-weight-limit",
            format!(
                "must be {SIM_WEIGHT_LIMIT_MIN}..={} per minute, not {weight_limit} (below it a startup crawls at a request per minute)",
                u32::MAX
            ),
        ));
    }
    let rest_latency_ms = args.sim_rest_latency_ms.unwrap_or(0);
    if rest_latency_ms > SIM_REST_LATENCY_MS_MAX {
        return Err(invalid(
            "sim-rest-latency-ms",
            format!(
                "must be at most {SIM_REST_LATENCY_MS_MAX} (the REST timeout is {REST_TIMEOUT_MS} ms)"
            ),
        ));
    }
    Ok(SimSettings {
        symbols,
        trade_rate,
        seed: args.sim_seed.unwrap_or(1),
        rest_latency_ms,
        weight_limit,
    })
}

/// `--sim-*` flags only mean something with `--venue sim`.
pub fn reject_sim_flags(args: &RunArgs, venue: &str) -> Result<(), ConfigError> {
    let given: [(&'static str, bool); 5] = [
        ("sim-symbols", args.sim_symbols.is_some()),
        ("sim-trade-rate", args.sim_trade_rate.is_some()),
        ("sim-seed", args.sim_seed.is_some()),
        ("sim-rest-latency-ms", args.sim_rest_latency_ms.is_some()),
        ("sim-weight-limit", args.sim_weight_limit.is_some()),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(invalid(
            flag,
            format!("only applies to --venue sim (the venue is {venue})"),
        )),
        None => Ok(()),
    }
}

/// `--http-conns-per-ip` and `--ws-conns-per-ip`, each within the server's whole limit.
///
/// # Errors
/// A value of 0 or above the whole limit.
pub fn per_address_limits(args: &RunArgs) -> Result<(usize, usize), ConfigError> {
    use crate::api::{WS_CONNECTIONS_MAX, WS_CONNECTIONS_PER_CLIENT_MAX};
    use crate::gateway::server::{HTTP_CONNECTIONS_MAX, HTTP_CONNECTIONS_PER_CLIENT_MAX};
    let check = |flag, value: Option<usize>, default, max| match value.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(invalid(flag, format!("{n} is not in 1..={max}"))),
    };
    Ok((
        check(
            "http-conns-per-ip",
            args.http_conns_per_ip,
            HTTP_CONNECTIONS_PER_CLIENT_MAX,
            HTTP_CONNECTIONS_MAX,
        )?,
        check(
            "ws-conns-per-ip",
            args.ws_conns_per_ip,
            WS_CONNECTIONS_PER_CLIENT_MAX,
            WS_CONNECTIONS_MAX,
        )?,
    ))
}

/// The proxy URL must be one the REST client can use (`http://`, `https://`, `socks4://`,
/// `socks4a://`, `socks5://`, `socks5h://`).
pub fn check_proxy(url: &str) -> Result<(), ConfigError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let known = ["http", "https", "socks4", "socks4a", "socks5", "socks5h"];
    if !scheme.is_some_and(|s| known.contains(&s.to_ascii_lowercase().as_str())) {
        return Err(invalid(
            "proxy",
            format!(
                "{url:?} must start with http://, https://, socks4://, socks4a://, socks5:// or socks5h://"
            ),
        ));
    }
    ureq::Proxy::new(url)
        .map(|_| ())
        .map_err(|e| invalid("proxy", format!("{url:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pins_follow_the_allowed_core_ids() {
        // `taskset -c 1`: the only allowed core is 1, not 0.
        assert_eq!(default_pins(1, &[1]), vec![Some(1)]);
        assert_eq!(
            default_pins(3, &[2, 5]),
            vec![Some(2), Some(5), Some(2)],
            "more shards than cores share them"
        );
        assert_eq!(default_pins(2, &[]), vec![None, None], "unknown: unpinned");
    }

    #[test]
    fn listed_cores_must_be_allowed() {
        assert!(check_cores("shard-cores", &[0, 1], &[0, 1]).is_ok());
        let error = check_cores("shard-cores", &[1, 99], &[0, 1, 2, 3, 6])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--shard-cores: core 99 is not available to this process (allowed: 0-3,6)"
        );
        assert!(check_cores("control-core", &[99], &[]).is_ok());
        assert_eq!(format_cores(&[9, 8, 0, 1, 2, 6, 6]), "0-2,6,8-9");
    }

    #[test]
    fn proxies_need_a_known_scheme() {
        assert!(check_proxy("http://127.0.0.1:3128").is_ok());
        assert!(check_proxy("socks5://user:pw@proxy:1080").is_ok());
        let error = check_proxy("ftp://x").unwrap_err().to_string();
        assert!(
            error.starts_with("--proxy: \"ftp://x\" must start with"),
            "{error}"
        );
        assert!(check_proxy("proxy:3128").is_err());
    }
}

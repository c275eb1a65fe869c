//! Limits of the control plane (compile-time constants, read by every control thread). Every
//! channel capacity, retry maximum and timer period is named here, and the relations between them
//! are asserted at compile time, so a change that breaks one fails the build.

use klagg_shards::protocol::SHARD_INBOX_CAPACITY;

/// Capacity of `activation_tx` (SymbolManager → ActivationDispatcher), seed decision 7.
pub const ACTIVATION_CHANNEL_CAPACITY: usize = 2048;
/// Retries of a failed or timed-out activation before the symbol is marked Failed (seed
/// decision 6): at most `1 + ACTIVATION_RETRY_MAX` `ActivateSymbol` sends per request.
pub const ACTIVATION_RETRY_MAX: u32 = 5;
/// How long the dispatcher waits for a Worker's ack before counting the attempt as failed.
pub const ACTIVATION_ACK_TIMEOUT_MS: i64 = 2_000;
/// Back-off before retry `n` (1-based) is `ACTIVATION_BACKOFF_BASE_MS << (n - 1)`, capped.
pub const ACTIVATION_BACKOFF_BASE_MS: i64 = 100;
/// The longest back-off between two activation attempts.
pub const ACTIVATION_BACKOFF_MAX_MS: i64 = 3_200;
/// Activations sent to one shard and not yet acknowledged; more wait in the dispatcher's
/// per-shard queue, so a shard's inbox never fills with activations alone.
pub const ACTIVATIONS_IN_FLIGHT_PER_SHARD_MAX: usize = 64;
/// Capacity of the ack channel (all shards → dispatcher).
pub const ACK_CHANNEL_CAPACITY: usize = 4096;
/// Commands and acks the dispatcher drains per loop iteration before it looks at its timers.
pub const DISPATCHER_DRAIN_MAX: usize = 256;
/// The dispatcher wakes at least this often when idle (timeouts, retries, status).
pub const DISPATCHER_IDLE_WAKE_MS: i64 = 100;

/// The most symbols a process tracks (the registry and the status table are sized by it).
pub const SYMBOLS_MAX: usize = 4096;
/// The most shards (`--shards`).
pub const SHARDS_MAX: usize = 256;

/// Attempts of one REST request (1 + retries) on transient failures (I/O, 5xx, 408).
pub const REST_ATTEMPTS_MAX: u32 = 4;
/// Back-off after the first transient REST failure; doubled each time, capped.
pub const REST_BACKOFF_BASE_MS: u64 = 200;
/// The longest back-off between two REST attempts.
pub const REST_BACKOFF_MAX_MS: u64 = 5_000;
/// Per-request timeout (connect, send, receive together).
pub const REST_TIMEOUT_MS: u64 = 10_000;
/// The largest REST response body we read (exchangeInfo of ~700 symbols is ~1.5 MB).
pub const REST_BODY_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Fraction of the venue's weight limit we allow ourselves, in percent (headroom for other
/// clients on the same IP and for clock skew between our minute and the venue's).
pub const REST_WEIGHT_BUDGET_PERCENT: u64 = 90;
/// Weight limit per minute assumed until exchangeInfo announces one (Binance USD-M: 2400).
pub const REST_WEIGHT_LIMIT_DEFAULT: u64 = 2400;
/// Pause after a 418 (IP ban) without a `Retry-After` header.
pub const REST_BAN_PAUSE_DEFAULT_MS: u64 = 120_000;
/// The longest pause we accept from a `Retry-After` (a longer one is capped and retried).
pub const REST_PAUSE_MAX_MS: u64 = 600_000;
/// The longest single sleep of a REST wait (a 429/418 pause, a budget wait, a back-off); the
/// client's wait beat runs between the steps, so a thread waiting out a ban still heartbeats.
pub const REST_WAIT_STEP_MS: u64 = 1_000;
/// `klines` requests with a limit below this cost weight 1.
pub const KLINES_WEIGHT1_LIMIT_MAX: u32 = 99;

/// Capacity of the backfill job queue (one job per symbol at most, so this is `SYMBOLS_MAX`).
pub const BACKFILL_QUEUE_CAPACITY: usize = SYMBOLS_MAX;
/// The most backfill threads (`--backfill-concurrency`).
pub const BACKFILL_CONCURRENCY_MAX: usize = 32;
/// Package attempts in one round of a backfill job (each attempt is itself up to
/// `REST_ATTEMPTS_MAX` requests). A startup or listing job whose round fails waits for the next
/// exchangeInfo refresh; a failed resync is deferred (`RESYNC_RETRY_BASE_MS`).
pub const BACKFILL_ATTEMPTS_MAX: u32 = 3;
/// Pause before the second round of a resync whose first round failed; doubled per failed
/// round up to `RESYNC_RETRY_MAX_MS`. A resync is never dropped while its symbol is served (its
/// live klines are known to be wrong until it succeeds): rounds go on at the capped pace.
pub const RESYNC_RETRY_BASE_MS: i64 = 5_000;
/// The longest pause between two rounds of a failing resync.
pub const RESYNC_RETRY_MAX_MS: i64 = 300_000;
/// exchangeInfo refresh period (delistings, promotions of PENDING_TRADING symbols).
pub const EXCHANGE_INFO_REFRESH_MS: i64 = 60_000;
/// Unknown names the detector confirms per exchangeInfo call; more wait for the next call.
pub const DETECTOR_CONFIRM_BATCH_MAX: usize = 64;
/// The shortest time between two confirmation calls of the detector.
pub const DETECTOR_CONFIRM_INTERVAL_MS: i64 = 500;
/// A name exchangeInfo did not confirm is asked about again after this long.
pub const DETECTOR_RECHECK_MS: i64 = 30_000;
/// How long the detector's socket read blocks before it heartbeats anyway.
pub const DETECTOR_READ_TIMEOUT_MS: u64 = 250;
/// Reconnect back-off of the detector's WebSocket: base, doubled per failure, capped.
pub const DETECTOR_RECONNECT_BASE_MS: u64 = 500;
/// The longest detector reconnect back-off.
pub const DETECTOR_RECONNECT_MAX_MS: u64 = 30_000;
/// The detector reconnects when the `!miniTicker@arr` stream (1 frame/s) was silent this long.
pub const DETECTOR_SILENCE_MS: i64 = 30_000;

/// Health reports are collected this often.
pub const HEALTH_POLL_MS: i64 = 1_000;
/// The watchdog logs its consolidated line this often.
pub const WATCHDOG_LOG_MS: i64 = 10_000;
/// A heartbeat older than this is a Warning.
pub const HEARTBEAT_WARN_MS: i64 = 5_000;
/// A heartbeat older than this is an Error, and for a critical service fatal.
pub const HEARTBEAT_FATAL_MS: i64 = 30_000;
/// Period of the progress line while symbols are being activated.
pub const PROGRESS_LOG_MS: i64 = 2_000;

/// Everything must have stopped this long after SIGINT/SIGTERM or the end of `--run-for`.
pub const SHUTDOWN_DEADLINE_MS: u64 = 5_000;
/// Threads serving the operability endpoints.
pub const GATEWAY_THREADS: usize = 2;
/// How long a gateway thread waits for a request before it checks for shutdown.
pub const GATEWAY_RECV_TIMEOUT_MS: u64 = 100;

// The whole universe fits in the activation channel: a burst of activations (startup of every
// symbol at once) never blocks a producer for long.
const _: () = assert!(ACTIVATION_CHANNEL_CAPACITY >= 2048);
const _: () = assert!(SYMBOLS_MAX >= ACTIVATION_CHANNEL_CAPACITY);
const _: () = assert!(ACTIVATION_RETRY_MAX == 5);
// Acks of every activation in flight on every shard fit in the ack channel, duplicates included.
const _: () = assert!(ACK_CHANNEL_CAPACITY >= 2 * ACTIVATIONS_IN_FLIGHT_PER_SHARD_MAX);
// Activations in flight plus their subscriptions never fill a shard's inbox on their own.
const _: () = assert!(SHARD_INBOX_CAPACITY >= 4 * ACTIVATIONS_IN_FLIGHT_PER_SHARD_MAX);
const _: () = assert!(ACTIVATION_BACKOFF_BASE_MS <= ACTIVATION_BACKOFF_MAX_MS);
// The last back-off still ends well inside a watchdog period.
const _: () = assert!(ACTIVATION_BACKOFF_MAX_MS < WATCHDOG_LOG_MS);
const _: () = assert!(DISPATCHER_IDLE_WAKE_MS < ACTIVATION_ACK_TIMEOUT_MS);
const _: () = assert!(KLINES_WEIGHT1_LIMIT_MAX < 100);
const _: () = assert!(REST_WEIGHT_BUDGET_PERCENT <= 100);
const _: () = assert!(REST_BACKOFF_BASE_MS <= REST_BACKOFF_MAX_MS);
// A thread waiting on REST heartbeats well within the warning age.
const _: () = assert!((REST_WAIT_STEP_MS as i64) * 2 < HEARTBEAT_WARN_MS);
// One REST attempt ends (timeout) before a heartbeat it held back turns fatal.
const _: () = assert!((REST_TIMEOUT_MS as i64) < HEARTBEAT_FATAL_MS);
const _: () = assert!(RESYNC_RETRY_BASE_MS > 0 && RESYNC_RETRY_BASE_MS <= RESYNC_RETRY_MAX_MS);
const _: () = assert!(BACKFILL_ATTEMPTS_MAX >= 1);
const _: () = assert!(HEARTBEAT_WARN_MS < HEARTBEAT_FATAL_MS);
const _: () = assert!(HEALTH_POLL_MS < HEARTBEAT_WARN_MS);
const _: () = assert!((GATEWAY_RECV_TIMEOUT_MS as u128) * 10 < SHUTDOWN_DEADLINE_MS as u128);
const _: () = assert!((DETECTOR_READ_TIMEOUT_MS as i64) < HEARTBEAT_WARN_MS);
const _: () = assert!(BACKFILL_QUEUE_CAPACITY >= SYMBOLS_MAX);

#!/usr/bin/env bash
# Startup benchmark: the engine against the in-process simulator (300 and 600 symbols, 50 ms REST
# latency, 2400 weight/min, default intervals, backfill concurrency 2). Writes
# bench-results/startup.json; extra arguments go to `klagg bench-startup` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin klagg
exec target/release/klagg bench-startup "$@"

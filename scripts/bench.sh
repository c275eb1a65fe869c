#!/usr/bin/env bash
# Every benchmark, one after the other, on a release build; each prints its figures and writes
# JSON under bench-results/ (with the machine, kernel and commit). The machines here are shared
# and noisy: run on an otherwise idle machine and compare ratios measured side by side.
# Usage: scripts/bench.sh [NAME...]   NAME: kline_core parse_frames shard_throughput
#        shard_scaling shard_latency sim_throughput api startup   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
all=(kline_core parse_frames shard_throughput shard_scaling shard_latency sim_throughput api startup)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${all[@]}")
cargo build --release --workspace --bins --benches
for name in "${names[@]}"; do
    echo "== ${name}"
    case "${name}" in
        kline_core) cargo bench -p klagg-bench --bench kline_core ;;
        parse_frames | shard_throughput | shard_scaling | shard_latency | sim_throughput)
            "target/release/${name}" ;;
        api) target/release/klagg bench-api ;;
        startup) target/release/klagg bench-startup ;;
        *) echo "bench.sh: unknown benchmark ${name} (one of: ${all[*]})" >&2; exit 2 ;;
    esac
done

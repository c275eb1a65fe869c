#!/usr/bin/env bash
# Render an SVG flamegraph from a perf recording (default perf.data).
#
#   scripts/flamegraph.sh [FILE] [--output flamegraph.svg] [--thread NAME]
#
# Uses the inferno tools (`cargo install inferno`: inferno-collapse-perf, inferno-flamegraph),
# or Brendan Gregg's FlameGraph scripts (stackcollapse-perf.pl, flamegraph.pl) when those are
# on the PATH instead.
set -euo pipefail

source "$(dirname "$0")/perf-common.sh"

input=perf.data
output=flamegraph.svg
thread=""
perf_view_args '2,8p' --output output "$@"
perf_require
perf_require_recording
if command -v inferno-collapse-perf >/dev/null 2>&1 && command -v inferno-flamegraph >/dev/null 2>&1; then
    collapse=(inferno-collapse-perf)
    render=(inferno-flamegraph)
elif command -v stackcollapse-perf.pl >/dev/null 2>&1 && command -v flamegraph.pl >/dev/null 2>&1; then
    collapse=(stackcollapse-perf.pl)
    render=(flamegraph.pl)
else
    echo "flamegraph.sh: no flamegraph tools found. Install them with: cargo install inferno" >&2
    echo "  (or put FlameGraph's stackcollapse-perf.pl and flamegraph.pl on the PATH)" >&2
    exit 1
fi

perf_thread_filter
perf script -i "$input" "${filter[@]}" 2>/dev/null | "${collapse[@]}" | "${render[@]}" > "$output"
echo "wrote $output" >&2

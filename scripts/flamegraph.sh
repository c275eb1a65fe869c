#!/usr/bin/env bash
# Render an SVG flamegraph from a perf recording (default perf.data).
#
#   scripts/flamegraph.sh [FILE] [--output flamegraph.svg] [--thread NAME]
#
# Uses the inferno tools (`cargo install inferno`: inferno-collapse-perf, inferno-flamegraph),
# or Brendan Gregg's FlameGraph scripts (stackcollapse-perf.pl, flamegraph.pl) when those are
# on the PATH instead.
set -euo pipefail

input=perf.data
output=flamegraph.svg
thread=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --output) output="${2:?--output needs a value}"; shift 2 ;;
        --thread) thread="${2:?--thread needs a value}"; shift 2 ;;
        --help|-h) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) input="$1"; shift ;;
    esac
done

if ! command -v perf >/dev/null 2>&1; then
    echo "flamegraph.sh: perf is not installed. On Debian: apt-get install -y linux-perf" >&2
    exit 1
fi
if [[ ! -f "$input" ]]; then
    echo "flamegraph.sh: no recording at $input (make one with scripts/perf-record.sh)" >&2
    exit 1
fi
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

filter=()
if [[ -n "$thread" ]]; then
    filter=(--comms "$thread")
fi
perf script -i "$input" "${filter[@]}" 2>/dev/null | "${collapse[@]}" | "${render[@]}" > "$output"
echo "wrote $output" >&2

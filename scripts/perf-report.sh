#!/usr/bin/env bash
# Print the top symbols of a perf recording (default perf.data), by self time, per thread.
#
#   scripts/perf-report.sh [FILE] [--top N] [--thread NAME]
set -euo pipefail

input=perf.data
top=30
thread=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --top) top="${2:?--top needs a value}"; shift 2 ;;
        --thread) thread="${2:?--thread needs a value}"; shift 2 ;;
        --help|-h) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) input="$1"; shift ;;
    esac
done

if ! command -v perf >/dev/null 2>&1; then
    echo "perf-report.sh: perf is not installed. On Debian: apt-get install -y linux-perf" >&2
    exit 1
fi
if [[ ! -f "$input" ]]; then
    echo "perf-report.sh: no recording at $input (make one with scripts/perf-record.sh)" >&2
    exit 1
fi

filter=()
if [[ -n "$thread" ]]; then
    filter=(--comms "$thread")
fi
perf report -i "$input" --stdio --no-children --sort comm,symbol --percent-limit 0.5 \
    "${filter[@]}" 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n "$top"

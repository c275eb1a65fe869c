#!/usr/bin/env bash
# Print the top symbols of a perf recording (default perf.data), by self time, per thread.
#
#   scripts/perf-report.sh [FILE] [--top N] [--thread NAME]
set -euo pipefail

source "$(dirname "$0")/perf-common.sh"

input=perf.data
top=30
thread=""
perf_view_args '2,4p' --top top "$@"
perf_require
perf_require_recording
perf_thread_filter
perf report -i "$input" --stdio --no-children --sort comm,symbol --percent-limit 0.5 \
    "${filter[@]}" 2>/dev/null \
    | grep -E '^ +[0-9]' | head -n "$top"

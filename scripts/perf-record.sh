#!/usr/bin/env bash
# Record a CPU profile of a running klagg (by pid or process name) or of a benchmark command,
# with call graphs, using fixed perf flags so runs can be compared.
#
#   scripts/perf-record.sh --pid PID [--seconds N] [--output FILE]
#   scripts/perf-record.sh --name klagg [--seconds N] [--output FILE]
#   scripts/perf-record.sh [--output FILE] -- COMMAND [ARGS...]
#
# The event is `cycles` where the machine has hardware counters, else `cpu-clock` (timer
# sampling; virtual machines such as this project's usually have no hardware counters).
# Build with debug info for good symbols: the release profile has `debug = 1`.
# Then: scripts/perf-report.sh [FILE]   or   scripts/flamegraph.sh [FILE]
set -euo pipefail
source "$(dirname "$0")/perf-common.sh"

output=perf.data
seconds=10
frequency=999
pid=""
name=""

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --pid) pid="${2:?--pid needs a value}"; shift 2 ;;
        --name) name="${2:?--name needs a value}"; shift 2 ;;
        --seconds) seconds="${2:?--seconds needs a value}"; shift 2 ;;
        --output) output="${2:?--output needs a value}"; shift 2 ;;
        --frequency) frequency="${2:?--frequency needs a value}"; shift 2 ;;
        --help|-h) usage 0 ;;
        --) shift; break ;;
        *) echo "perf-record.sh: unknown argument $1" >&2; usage ;;
    esac
done

perf_require

# Hardware counters? `perf stat` prints "<not supported>" when there are none.
if perf stat -e cycles true 2>&1 | grep -q "not supported"; then
    event=cpu-clock
else
    event=cycles
fi

if [[ -n "$name" ]]; then
    pid="$(pgrep -o -x "$name" || true)"
    if [[ -z "$pid" ]]; then
        echo "perf-record.sh: no process named $name" >&2
        exit 1
    fi
fi

flags=(record -e "$event" -F "$frequency" -g --call-graph dwarf,16384 -o "$output")
if [[ -n "$pid" ]]; then
    echo "recording pid $pid for ${seconds}s with $event into $output" >&2
    perf "${flags[@]}" -p "$pid" -- sleep "$seconds"
elif [[ $# -gt 0 ]]; then
    echo "recording '$*' with $event into $output" >&2
    perf "${flags[@]}" -- "$@"
else
    echo "perf-record.sh: give --pid, --name or -- COMMAND" >&2
    usage
fi
echo "done: scripts/perf-report.sh $output   or   scripts/flamegraph.sh $output" >&2

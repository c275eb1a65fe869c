# Shell functions shared by perf-record.sh, perf-report.sh and flamegraph.sh (sourced, not run):
# the check that perf is installed, the arguments of the scripts that read a recording, the
# check that the recording exists, and the per-thread filter.

# The script's name for messages (`flamegraph.sh`).
perf_script="${0##*/}"

# Exit 1 with a hint when perf is missing.
perf_require() {
    if ! command -v perf >/dev/null 2>&1; then
        echo "$perf_script: perf is not installed. On Debian: apt-get install -y linux-perf" >&2
        exit 1
    fi
}

# Read the arguments of a script that reads a recording: [FILE], --thread NAME, --help (prints
# the lines HELP_LINES of the script's header) and one more option OPTION whose value goes into
# the variable VAR. Sets `input` and `thread`.
#   perf_view_args HELP_LINES OPTION VAR "$@"
perf_view_args() {
    local help_lines="$1" option="$2" var="$3"
    shift 3
    while [[ $# -gt 0 ]]; do
        case "$1" in
            "$option") printf -v "$var" '%s' "${2:?$option needs a value}"; shift 2 ;;
            --thread) thread="${2:?--thread needs a value}"; shift 2 ;;
            --help|-h) sed -n "$help_lines" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) input="$1"; shift ;;
        esac
    done
}

# Exit 1 when there is no recording at `$input`.
perf_require_recording() {
    if [[ ! -f "$input" ]]; then
        echo "$perf_script: no recording at $input (make one with scripts/perf-record.sh)" >&2
        exit 1
    fi
}

# `filter`: the perf options that keep only the thread `$thread` (none when it is empty).
perf_thread_filter() {
    filter=()
    if [[ -n "$thread" ]]; then
        filter=(--comms "$thread")
    fi
}

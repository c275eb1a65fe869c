#!/usr/bin/env bash
# The chart page renders in headless Chromium with candles drawn: `klagg run --venue sim` on a
# loopback port, the page loaded with --dump-dom and --screenshot, candle colours counted in the
# PNG (scripts/chart_check.py). Installs Debian's chromium when it is missing and we are root
# (apt-get); prints SKIP and exits 0 when no Chromium can be had.
# Usage: scripts/chart-check.sh [--keep shot.png] [--klagg PATH]   (build target/debug/klagg first)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: chart check: python3 not found"
    exit 0
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "chart check: installing chromium (apt-get)"
        if ! { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 \
            apt-get install -y -qq chromium; } >target/chart-check-apt.log 2>&1; then
            echo "SKIP: chart check: apt-get could not install chromium (see target/chart-check-apt.log)"
            exit 0
        fi
    else
        echo "SKIP: chart check: chromium not installed (apt-get install -y chromium)"
        exit 0
    fi
fi
exec timeout 600 python3 scripts/chart_check.py "$@"

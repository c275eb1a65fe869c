#!/usr/bin/env bash
# The project's test command (README "Tests"): every unit, property, integration and end-to-end
# test of the workspace. Tests read real Binance data from ../shared/data; where it is absent they
# skip with a message, except under CI=true, where a missing data file fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
# Without arguments also the checks with clients written by others (ccxt, websocket-client) and
# the chart page in headless Chromium; each skips with a message (exit 0) where its tools cannot
# be installed. KLAGG_SKIP_CLIENT_CHECKS=1 leaves them out.
if [ $# -eq 0 ] && [ "${KLAGG_SKIP_CLIENT_CHECKS:-0}" != 1 ]; then
    scripts/api-client-check.sh
    scripts/chart-check.sh
fi

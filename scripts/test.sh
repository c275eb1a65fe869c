#!/usr/bin/env bash
# The project's test command (README "Tests"): every unit, property, integration and end-to-end
# test of the workspace. Tests read real Binance data from ../shared/data; where it is absent they
# skip with a message, except under CI=true, where a missing data file fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"

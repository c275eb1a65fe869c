#!/usr/bin/env bash
# Third-party clients (ccxt binanceusdm REST + ccxt.pro WebSocket, websocket-client) against
# the simulator (`klagg sim`, bench/scripts/ccxt_check.py) and against klagg's Binance-compatible
# API (`klagg run --venue sim`, scripts/api_client_check.py), on loopback ports.
# Installs what it needs into a venv under target/api-venv; when that is impossible (no python3,
# no venv module, no package index) it prints SKIP and exits 0.
# Usage: scripts/api-client-check.sh [--klagg PATH]   (default target/debug/klagg; build it first)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/api-venv
if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: api client check: python3 not found"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        echo "SKIP: api client check: cannot create a Python venv (python3 -m venv)"
        rm -rf "$venv"
        exit 0
    fi
fi
if ! "$venv/bin/python" -c 'import ccxt, ccxt.pro, websocket' >/dev/null 2>&1; then
    if ! timeout 300 "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 30 --retries 2 \
        ccxt websocket-client >target/api-venv-pip.log 2>&1; then
        echo "SKIP: api client check: pip could not install ccxt websocket-client (see target/api-venv-pip.log)"
        exit 0
    fi
fi
echo "client check: ccxt and websocket-client against klagg sim"
timeout 300 "$venv/bin/python" bench/scripts/ccxt_check.py "$@"
echo "client check: ccxt and websocket-client against klagg's API"
exec timeout 600 "$venv/bin/python" scripts/api_client_check.py "$@"

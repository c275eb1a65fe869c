#!/usr/bin/env python3
"""Third-party client check: ccxt's binanceusdm (REST) and websocket-client (WS) against `klagg sim`.

Usage:
  python3 bench/scripts/ccxt_check.py                      # starts target/debug/klagg sim itself
  python3 bench/scripts/ccxt_check.py --klagg PATH
  python3 bench/scripts/ccxt_check.py --rest http://127.0.0.1:9090 --ws ws://127.0.0.1:9090

Needs `pip install ccxt websocket-client`; exits 0 with a SKIP line when they are missing.
Only loopback addresses are contacted. Exit status 1 on any mismatch.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

try:
    import ccxt
    import websocket
except ImportError as e:  # pragma: no cover - environment dependent
    print(f"SKIP: {e} (pip install ccxt websocket-client)")
    sys.exit(0)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def start_sim(klagg):
    proc = subprocess.Popen(
        [klagg, "sim", "--listen", "127.0.0.1:0", "--symbols", "50", "--trade-rate", "500", "--run-for", "120s"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"rest_url=(\S+) ws_url=(\S+)", line)
        if m:
            return proc, m.group(1), m.group(2)
    proc.kill()
    raise SystemExit("klagg sim did not print its addresses")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        raise SystemExit(1)


def rest_checks(rest):
    ex = ccxt.binanceusdm({"enableRateLimit": False})
    for key, version in (("fapiPublic", "v1"), ("fapiPublicV2", "v2"), ("fapiPublicV3", "v3")):
        ex.urls["api"][key] = f"{rest}/fapi/{version}"
    markets = ex.load_markets()
    check(len(markets) == 50, f"load_markets: {len(markets)} markets")
    btc = markets["BTC/USDT:USDT"]
    check(btc["id"] == "BTCUSDT" and btc["linear"] and btc["swap"], "BTC/USDT:USDT is a linear perpetual")
    check(btc["precision"]["price"] == 0.1, f"tick size from filters: {btc['precision']['price']}")
    ohlcv = ex.fetch_ohlcv("BTC/USDT:USDT", "1m", limit=5)
    check(len(ohlcv) == 5 and all(len(r) == 6 for r in ohlcv), f"fetch_ohlcv 1m: {len(ohlcv)} candles")
    check(all(b[0] - a[0] == 60_000 for a, b in zip(ohlcv, ohlcv[1:])), "candles are consecutive minutes")
    trades = ex.fetch_trades("BTC/USDT:USDT", limit=100)
    ids = [int(t["id"]) for t in trades]
    check(len(ids) == 100 and all(b == a + 1 for a, b in zip(ids, ids[1:])), "fetch_trades: 100 contiguous aggTrade ids")
    ticker = ex.fetch_ticker("ETH/USDT:USDT")
    check(ticker["last"] is not None and ticker["baseVolume"] > 0, f"fetch_ticker: last {ticker['last']}")
    t = ex.fetch_time()
    check(abs(t - time.time() * 1000) < 10_000, "fetch_time close to now")


def ws_checks(ws_base):
    ws = websocket.create_connection(ws_base + "/market/ws", timeout=5)
    ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}))
    ack, ids = None, []
    deadline = time.time() + 10
    while len(ids) < 50 and time.time() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("id") == 1:
            ack = msg
        elif msg.get("e") == "aggTrade":
            ids.append(msg["a"])
    ws.close()
    check(ack == {"result": None, "id": 1}, f"SUBSCRIBE ack {ack}")
    check(len(ids) == 50 and all(b == a + 1 for a, b in zip(ids, ids[1:])), "50 live aggTrades with contiguous ids")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--klagg", default=os.path.join(ROOT, "target", "debug", "klagg"))
    p.add_argument("--rest")
    p.add_argument("--ws")
    a = p.parse_args()
    proc = None
    rest, ws = a.rest, a.ws
    if not rest:
        if not os.path.exists(a.klagg):
            print(f"SKIP: {a.klagg} not built (cargo build)")
            return 0
        proc, rest, ws = start_sim(a.klagg)
    try:
        print(f"ccxt {ccxt.__version__} against {rest} / {ws}")
        rest_checks(rest)
        ws_checks(ws)
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
    print("ccxt check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

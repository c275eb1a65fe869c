#!/usr/bin/env python3
"""The chart page in headless Chromium (run by scripts/chart-check.sh).

Starts `klagg run --venue sim` on loopback ports, waits for live 1s klines, loads
http://ADDR/?symbol=BTCUSDT&interval=1s in headless Chromium twice: --dump-dom (the page
reports how many candles it loaded) and --screenshot, then counts the pixels of the up and down
candle colours in the PNG (decoded with the standard library). Exit 1 when no candles are drawn.

Usage: python3 scripts/chart_check.py [--klagg target/debug/klagg] [--chromium /usr/bin/chromium]
       [--keep PATH]  (copy the screenshot there)
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
UP = (0x26, 0xA6, 0x9A)
DOWN = (0xEF, 0x53, 0x50)


def start_klagg(klagg, db):
    cmd = [klagg, "run", "--venue", "sim", "--listen", "127.0.0.1:0", "--intervals", "1s,1m",
           "--sim-symbols", "5", "--sim-trade-rate", "300", "--db", db, "--run-for", "240s"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"api listening.*addr: (\S+?),", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("FAIL klagg run did not print its address")


def klines(addr):
    url = f"http://{addr}/fapi/v1/klines?symbol=BTCUSDT&interval=1s&limit=1000"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)
    except Exception:  # noqa: BLE001 - not up yet
        return []


def chromium_args(chromium, profile):
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--window-size=1280,800", "--virtual-time-budget=8000"]


def png_pixels(path):
    """RGB(A) rows of a non-interlaced 8-bit PNG (what Chromium writes)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, width, height, ctype = 8, b"", 0, 0, 0
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and ctype in (2, 6), "unsupported PNG"
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    bpp = 4 if ctype == 6 else 3
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        filt, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 0xFF
            elif filt == 2:
                line[i] = (line[i] + b) & 0xFF
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def count_colour(rows, bpp, colour, tolerance=12):
    n = 0
    for line in rows:
        for i in range(0, len(line), bpp):
            if all(abs(line[i + k] - colour[k]) <= tolerance for k in range(3)):
                n += 1
    return n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--klagg", default=os.path.join(ROOT, "target", "debug", "klagg"))
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    p.add_argument("--keep")
    a = p.parse_args()
    if not a.chromium:
        print("SKIP: chromium not found")
        return 0
    if not os.path.exists(a.klagg):
        print(f"SKIP: {a.klagg} not built (cargo build)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start_klagg(a.klagg, os.path.join(tmp, "klagg.db"))
        try:
            deadline = time.time() + 60
            while len(klines(addr)) < 8 and time.time() < deadline:
                time.sleep(0.5)
            rows = klines(addr)
            print(f"klagg at {addr}: {len(rows)} 1s klines of BTCUSDT served", flush=True)
            url = f"http://{addr}/?symbol=BTCUSDT&interval=1s"
            dom = subprocess.run(chromium_args(a.chromium, os.path.join(tmp, "p1")) + ["--dump-dom", url],
                                 capture_output=True, text=True, timeout=120).stdout
            m = re.search(r'data-candles="(\d+)"', dom)
            candles = int(m.group(1)) if m else 0
            print(("ok   " if candles >= 8 else "FAIL ") + f"page loaded {candles} candles", flush=True)
            shot = os.path.join(tmp, "chart.png")
            subprocess.run(chromium_args(a.chromium, os.path.join(tmp, "p2")) + [f"--screenshot={shot}", url],
                           capture_output=True, timeout=120)
            if not os.path.exists(shot):
                print("FAIL no screenshot")
                return 1
            if a.keep:
                shutil.copy(shot, a.keep)
            width, height, bpp, pixels = png_pixels(shot)
            up, down = count_colour(pixels, bpp, UP), count_colour(pixels, bpp, DOWN)
            drawn = up > 50 and down > 50
            print(("ok   " if drawn else "FAIL ") + f"screenshot {width}x{height}: {up} up-candle and {down} down-candle pixels")
            passed = int(candles >= 8) + int(drawn)
            print(f"chart: {passed} passed, {2 - passed} failed")
            if passed < 2:
                return 1
        finally:
            proc.terminate()
            proc.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load: K concurrent gradio_client users generating against a local app for a bounded time.

    python bench/load.py [--users 8] [--seconds 60] [--bars 16] [--url http://127.0.0.1:PORT/]

Starts the app on a free loopback port (unless --url names a running one), then each user
generates pieces back to back with its own seeds until the time is up. Prints requests/s,
p50/p95/max latency and the errors. Only loopback addresses are ever contacted.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_app() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the app did not start")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.url and not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("load tests only target this machine (loopback addresses)")
    from gradio_client import Client

    proc, url = (None, args.url) if args.url else start_app()
    latencies, errors, lock = [], [], threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def user(k: int):
        client = Client(url, verbose=False)
        seed = 1000 * k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                out = client.predict("Pretrained: Bach chorales", seed, args.bars, 100, -1, 1.0, api_name="/generate")
                if not Path(out[2]).read_bytes().startswith(b"MThd"):
                    raise RuntimeError("no MIDI in the answer")
                with lock:
                    latencies.append(time.perf_counter() - t0)
            except Exception as e:  # a load test counts failures; it does not stop on them
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
            seed += 1

    try:
        t0 = time.perf_counter()
        threads = [threading.Thread(target=user, args=(k,)) for k in range(args.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        if proc:
            proc.terminate()
            proc.wait()
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    print(f"{args.users} users, {wall:.0f} s, {args.bars} bars a piece: {len(lat)} pieces, "
          f"{len(lat) / wall:.2f} requests/s")
    print(f"latency p50 {pct(0.5):.2f} s, p95 {pct(0.95):.2f} s, max {lat[-1] if lat else float('nan'):.2f} s")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

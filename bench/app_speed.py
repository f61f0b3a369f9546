"""The app as a user feels it: cold start to first page, and Generate click to everything.

    python bench/app_speed.py

Cold start: seconds from launching ``python app.py`` until the page is served. Generate: the
handler behind the Generate button for 16 bars (piano roll, audio, MIDI; the piece made in a
worker process, as the app does), median of 10 seeds.
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cold_start() -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < 120:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                return time.perf_counter() - t0
            except OSError:
                time.sleep(0.05)
        return float("nan")
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    import app
    from musicgan import api

    api.serve_on_shared_cores()  # as the app runs
    app.build()
    app.COMPOSERS.warm()
    session = app.Session()
    app.generate(app.PRETRAINED, 0, 16, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)  # warm-up (loads the model)
    times = []
    for seed in range(1, 11):
        t0 = time.perf_counter()
        app.generate(app.PRETRAINED, seed, 16, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
        times.append(time.perf_counter() - t0)
    session.close()
    print(f"Generate click, 16 bars -> piano roll + audio (MP3) + MIDI: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s (target <= 1 s)")
    starts = [cold_start() for _ in range(2)]
    print(f"cold start to first page served: {min(starts):.1f} s best of 2, {max(starts):.1f} s worst (target <= 15 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

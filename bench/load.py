"""Many visitors on one server: latency, errors, bytes to the page, and training beside them.

    python bench/load.py [--users 8] [--seconds 60] [--bars 16] [--window 30]

Starts the app on a free loopback port and prints four things, measured in one run:

1. **Latency**: ``--users`` visitors generate ``--bars``-bar pieces back to back for
   ``--seconds`` (each with its own seeds), each fetching the piece's audio as the page does:
   pieces/s, p50, p95 and max seconds from click to audio, and the errors.
2. **Bytes to the page per piece**: the event's JSON (piano roll, status, MIDI link) plus the
   audio file the page's player fetches. (The MIDI is fetched too, to check it, but the page
   only fetches it when someone downloads it.)
3. **Training beside visitors**: a training run on the examples; its steps/s alone, while 4
   visitors generate, and with one busy process (``while True: pass``) beside it, each over
   ``--window`` seconds, and each as a share of the rate alone.
4. **A 16-bar piece beside a training run and beside a busy process**: the library call alone
   (one thread, as the app runs it) in this process, median of 5, and the whole click through
   the server, median of 5 (each click a seed not asked for before: a piece asked for again is
   handed out at once, and that is measured alone, first).

5. **Files left behind**: the size of the server's temporary folder (the visitors' session
   folders and Gradio's cache) when the bench is done, and the most it reached.

Only loopback addresses are ever contacted. Run it with nothing else busy on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PRETRAINED = "Pretrained: Bach chorales"


def start_app(tmp: Path) -> tuple[subprocess.Popen, str]:
    """The app on a free loopback port, with ``tmp`` as its temporary folder (sessions and Gradio's cache)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio")}
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


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def fetch(url: str, path: str) -> bytes:
    return urllib.request.urlopen(url + path, timeout=60).read()


class Visitor:
    """One visitor's tab, as light as a browser is on the server's cores: plain HTTP to Gradio's
    queue (``/gradio_api/call/generate``, then its event stream), with a session of its own.
    (gradio_client, which the bench used before, cost 0.07 s of CPU per piece on the same two cores.)"""

    def __init__(self, url: str):
        self.url, self.session = url, uuid.uuid4().hex

    def predict(self, *data, api_name: str):
        call = f"{self.url}gradio_api/call{api_name}"
        request = urllib.request.Request(call, json.dumps({"data": list(data), "session_hash": self.session}).encode(),
                                         {"Content-Type": "application/json"})
        event = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
        stream = urllib.request.urlopen(f"{call}/{event}", timeout=300).read().decode()
        found = re.search(r"event: complete\ndata: (.*)", stream)
        if found is None:
            raise RuntimeError(f"no piece: {stream[-300:]}")
        return json.loads(found.group(1))


def one_piece(visitor, url: str, seed: int, bars: int) -> tuple[float, int]:
    """Generate as the page does (the click, then the player's audio): (seconds, bytes to the page)."""
    t0 = time.perf_counter()
    html, midi_file, status = visitor.predict(PRETRAINED, seed, bars, 120, -1, 1.0, "From the seed", "From the seed",
                                              api_name="/generate")[:3]  # (then the tab's state)
    piece = json.loads(urllib.parse.unquote(re.search(r'data-piece="([^"]+)"', html).group(1)))
    audio = fetch(url, piece["audio"])
    seconds = time.perf_counter() - t0
    if not fetch(url, "gradio_api/file=" + midi_file["path"]).startswith(b"MThd") or len(audio) < 1000:
        raise RuntimeError("no MIDI or no audio in the answer")
    return seconds, len(json.dumps([html, midi_file, status]).encode()) + len(audio)


def visitors(url: str, users: int, seconds: float, bars: int, first_seed: int = 0):
    """``users`` visitors generating back to back for ``seconds``: (latencies, page bytes, errors, wall)."""
    latencies, sizes, errors, lock = [], [], [], threading.Lock()
    deadline = time.perf_counter() + seconds

    def user(k: int):
        visitor = Visitor(url)
        seed = first_seed + 1000 * k
        while time.perf_counter() < deadline:
            try:
                latency, size = one_piece(visitor, url, seed, bars)
                with lock:
                    latencies.append(latency)
                    sizes.append(size)
            except Exception as e:  # a load test counts failures; it does not stop on them
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
            seed += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(k,)) for k in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, sizes, errors, time.perf_counter() - t0


class Training:
    """A training run in the app, watched through its progress stream."""

    def __init__(self, url: str, minutes: float = 20):
        from gradio_client import handle_file

        self.client = client(url)
        examples = sorted((ROOT / "examples").glob("*.mid"))
        self.client.predict([handle_file(str(p)) for p in examples], api_name="/read_uploads")
        self.job = self.client.submit(minutes, "", 64, 4, 0.75, False, 1e-4, 1e-3, api_name="/train")

    def step(self) -> int:
        outputs = self.job.outputs()
        found = re.search(r"step (\d+)", outputs[-1][4]) if outputs else None
        return int(found.group(1)) if found else 0

    def rate(self, seconds: float) -> float:
        """Steps per second over the next ``seconds``."""
        first, t0 = self.step(), time.perf_counter()
        time.sleep(seconds)
        return (self.step() - first) / (time.perf_counter() - t0)

    def stop(self):
        self.client.predict(api_name="/stop")
        self.job.result(timeout=120)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process and all its living descendants have used so far
    (Linux /proc; 0 where it cannot be read)."""
    tick, total, todo = os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total


def folder_bytes(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except OSError:  # removed while we looked
            pass
    return total


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def library_piece(bars: int = 16, n: int = 5) -> float:
    """Median seconds of the library call behind a 16-bar piece (one thread, as the app runs it)."""
    from musicgan import api, generate

    model = api.load_model()
    times = []
    for seed in range(n):
        t0 = time.perf_counter()
        generate.sample_rolls(model.generator, [seed], bars, 1.0, 120, 0, **model.sampling)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def clicks(url: str, first_seed: int, n: int = 5, bars: int = 16) -> float:
    """Median seconds of ``n`` clicks, each a seed not asked for before (the server hands a piece
    it made already out again at once)."""
    visitor = Visitor(url)
    return statistics.median(one_piece(visitor, url, first_seed + i, bars)[0] for i in range(n))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--window", type=float, default=30, help="seconds over which each training rate is measured")
    args = parser.parse_args(argv)
    from musicgan import api

    api.serve_on_shared_cores()  # this process's own pieces (part 4) run as the app's do
    library_piece(4, 1)  # load the model
    tmp = Path(tempfile.mkdtemp(prefix="musicgan-load-"))
    proc, url = start_app(tmp)
    most, watching = [0], threading.Event()

    def watch():  # the most the server's files reach, looked at every 2 s
        while not watching.wait(2):
            most[0] = max(most[0], folder_bytes(tmp))

    threading.Thread(target=watch, daemon=True).start()
    try:
        alone_click, alone_piece = clicks(url, 50_000), library_piece()
        again_click = clicks(url, 50_000)  # the same seeds: the server hands out the pieces it made
        print(f"alone on this machine: a 16-bar piece {alone_piece:.2f} s (library), {alone_click:.2f} s (click to "
              f"audio), {again_click:.2f} s when asked for again (an example, seed 0 ...)")

        server0, client0 = cpu_seconds(proc.pid), time.process_time()
        lat, sizes, errors, wall = visitors(url, args.users, args.seconds, args.bars)
        server, client_cpu = cpu_seconds(proc.pid) - server0, time.process_time() - client0
        print(f"\n1. {args.users} visitors x {wall:.0f} s, {args.bars} bars a piece: {len(lat)} pieces, "
              f"{len(lat) / wall:.2f} pieces/s; latency p50 {percentile(lat, 0.5):.2f} s, "
              f"p95 {percentile(lat, 0.95):.2f} s, max {max(lat, default=float('nan')):.2f} s; errors: {len(errors)}"
              + (f" (first: {errors[0]})" if errors else ""))
        if lat:  # where the two cores went: the app (server and its workers), and this bench's own visitors
            print(f"   CPU per piece: the app {server / len(lat):.2f} s, the bench's visitors (on the same cores; "
                  f"a real visitor's browser is elsewhere) {client_cpu / len(lat):.3f} s")
        print(f"2. bytes to the page per piece: median {statistics.median(sizes) / 1e6:.2f} MB, "
              f"max {max(sizes) / 1e6:.2f} MB")

        training = Training(url)
        while training.step() < 5:  # past the start-up
            time.sleep(0.5)
        alone = training.rate(args.window)
        box = {}
        worker = threading.Thread(target=lambda: box.update(zip(("lat", "sizes", "errors", "wall"), visitors(
            url, 4, args.window + 4, args.bars, first_seed=100_000))))
        worker.start()
        time.sleep(2)
        beside_visitors = training.rate(args.window)
        worker.join()
        beside_click = clicks(url, 51_000)
        beside_piece = library_piece()
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1)
            beside_busy = training.rate(args.window)
            training.stop()
            busy_click, busy_piece = clicks(url, 52_000), library_piece()
        finally:
            busy.kill()
        print(f"3. training steps/s: alone {alone:.2f}; while 4 visitors generate {beside_visitors:.2f} "
              f"({beside_visitors / alone:.0%}; their p95 {percentile(box['lat'], 0.95):.2f} s, "
              f"{len(box['errors'])} errors); with a busy process beside it {beside_busy:.2f} ({beside_busy / alone:.0%})")
        print(f"4. a 16-bar piece beside the training run: {beside_piece:.2f} s (library), {beside_click:.2f} s "
              f"(click to audio); beside a busy process: {busy_piece:.2f} s, {busy_click:.2f} s "
              f"(alone: {alone_piece:.2f} s, {alone_click:.2f} s)")
        left = folder_bytes(tmp)
        print(f"5. the server's temporary files (sessions and Gradio's cache): {left / 1e6:.1f} MB after the bench, "
              f"at most {max(most[0], left) / 1e6:.1f} MB on the way")
    finally:
        watching.set()
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

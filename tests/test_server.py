"""The running app: its API through gradio_client, concurrency, and a real browser (slow)."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow
SHOTS = ROOT / "docs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "MUSICGAN_CACHE": str(tmp_path_factory.mktemp("cache"))}
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w+")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"the app exited: {log.read()[-3000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not start within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def client(url):
    from gradio_client import Client
    return Client(url, verbose=False)


def test_api_generate_returns_midi_image_and_audio(server):
    html, wav, mid, png, status, *_ = client(server).predict(
        "Pretrained: Bach chorales", 3, 8, 100, -1, 1.0, api_name="/generate")
    assert 'class="mg-roll"' in html
    assert Path(mid).read_bytes()[:4] == b"MThd"
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert Path(wav).read_bytes()[:4] == b"RIFF"


def test_api_bad_upload_returns_an_error_message(server, tmp_path):
    from gradio_client import handle_file
    bad = tmp_path / "notes.mid"
    bad.write_text("not a midi file")
    result = client(server).predict([handle_file(str(bad))], api_name="/read_uploads")
    report = result if isinstance(result, str) else result[0]
    assert "0 file(s) read" in report and "not a MIDI file" in report


def test_api_bad_checkpoint_is_refused_with_a_message(server, tmp_path):
    from gradio_client import handle_file
    bad = tmp_path / "evil.zip"
    bad.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(Exception, match="cannot be used"):
        client(server).predict(handle_file(str(bad)), api_name="/upload_checkpoint")


def test_several_clients_generating_at_once_all_succeed(server):
    def one(i):
        out = client(server).predict("Pretrained: Bach chorales", i, 8, 100, -1, 1.0, api_name="/generate")
        return Path(out[2]).read_bytes()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert all(r[:4] == b"MThd" for r in results)
    assert len(set(results)) == 6


def test_in_a_real_browser_train_then_generate_and_listen(server):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run",
                                          "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(server)

        # Generate tab: one click on an example makes music
        page.get_by_text("Try one").wait_for()
        page.locator("[data-testid='dataset-cell-1-1']").click()
        expect(page.locator(".mg-roll canvas")).to_be_attached(timeout=60_000)
        expect(page.locator("[data-testid^=audio-player]").first).to_be_attached(timeout=30_000)
        expect(page.locator("a[href$='.mid']").first).to_be_attached(timeout=30_000)
        # the playable roll: clicking the middle seeks to the middle; playing moves the playhead on
        canvas = page.locator(".mg-roll canvas")
        box = canvas.bounding_box()
        canvas.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
        steps = json_steps(page)
        page.wait_for_function(f"Math.abs(parseFloat(document.querySelector('.mg-roll').dataset.playhead) - {steps / 2}) < 2",
                               timeout=10_000)
        page.locator(".mg-play").click()
        page.wait_for_function(f"parseFloat(document.querySelector('.mg-roll').dataset.playhead) > {steps / 2 + 2}",
                               timeout=15_000)
        page.locator(".mg-play").click()  # pause
        page.screenshot(path=str(SHOTS / "generate.png"), full_page=True)

        # Train tab: upload, train a little, watch the curves, stop, send the model to Generate
        page.get_by_role("tab", name="Train").click()
        page.locator("input[type=file]").last.set_input_files([str(p) for p in EXAMPLES[:4]])
        page.get_by_text("file(s) read").wait_for(timeout=60_000)
        page.get_by_role("button", name="Start training").click()
        page.wait_for_function(
            "document.querySelector('.mg-progress-text') && /step \\d{2,}/.test(document.querySelector('.mg-progress-text').textContent)",
            timeout=120_000)
        curves = page.locator("#curves img")
        first = curves.get_attribute("src")
        time.sleep(2.5)
        assert curves.get_attribute("src") != first  # the plot updates while training runs
        page.screenshot(path=str(SHOTS / "train.png"), full_page=True)
        page.get_by_role("button", name="Stop (keeps the model)").click()
        page.get_by_text("stopped after").first.wait_for(timeout=60_000)
        expect(page.locator("a[href$='.zip']").first).to_be_attached(timeout=30_000)
        page.get_by_role("button", name="Use this model in Generate").click()
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.get_by_text("seed 42 · 16 bars")).to_be_attached(timeout=60_000)
        expect(page.locator("[data-testid^=audio-player]").first).to_be_attached()
        browser.close()


def json_steps(page) -> int:
    import base64
    import json
    encoded = page.locator(".mg-roll").get_attribute("data-piece")
    return json.loads(base64.b64decode(encoded))["steps"]

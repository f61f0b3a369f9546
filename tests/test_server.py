"""The running app: its API through gradio_client, concurrency, and a real browser (slow)."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import app
from musicgan import midi

from conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow
SHOTS = ROOT / "docs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp_path_factory, **env_extra):
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "MUSICGAN_CACHE": str(tmp_path_factory.mktemp("cache")), **env_extra}
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
    return proc, url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = start_server(tmp_path_factory)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def client(url):
    from gradio_client import Client
    return Client(url, verbose=False)


GENERATE = ("Pretrained: Bach chorales", 3, 8, 100, -1, 1.0)  # model, seed, bars, tempo, instrument, temperature


def piece_of(html: str) -> dict:
    return json.loads(urllib.parse.unquote(re.search(r'data-piece="([^"]+)"', html).group(1)))


def test_api_generate_returns_a_playable_roll_and_midi(server):
    html, mid, status = client(server).predict(*GENERATE, api_name="/generate")
    assert 'class="mg-roll"' in html and "seed 3" in status
    assert Path(mid).read_bytes()[:4] == b"MThd"
    audio = urllib.request.urlopen(server + piece_of(html)["audio"]).read()  # what the page's player fetches
    assert audio[:3] == b"ID3" or audio[:2] in (b"\xff\xfb", b"\xff\xf3")  # an MP3


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
        return Path(out[1]).read_bytes()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert all(r[:4] == b"MThd" for r in results)
    assert len(set(results)) == 6


# --------------------------------------------------------------------------- in a real browser

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BROWSER_ARGS)
        yield browser
        browser.close()


def open_page(browser, url, **viewport):
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 1100})
    page = context.new_page()
    page.goto(url)
    page.get_by_text("Try one").wait_for()
    return context, page


def start_training(page, files=EXAMPLES[:4]):
    page.get_by_role("tab", name="Train").click()
    page.locator("input[type=file]").last.set_input_files([str(p) for p in files])
    page.get_by_text("file(s) read").wait_for(timeout=60_000)
    page.get_by_role("button", name="Start training").click()


def wait_for_steps(page, at_least: int = 2, timeout_ms: int = 120_000):
    page.wait_for_function(
        "document.querySelector('.mg-progress-text') && (m => m && +m[1] >= %d)"
        "(document.querySelector('.mg-progress-text').textContent.match(/step (\\d+)/))" % at_least,
        timeout=timeout_ms)


def legends_inside_their_plots(page):
    """Each line of the live plots is named in a legend the visitor can see (it sat below the box,
    cut off; on a phone the critic's ran off the side)."""
    for plot, names in ((page.locator("#curves"), app.LOSSES.values()), (page.locator(".mg-curves").last,
                                                                          app.CRITIC.values())):
        box = plot.bounding_box()
        for name in names:
            legend = plot.locator("svg text", has_text=name).first.bounding_box()
            assert box["y"] < legend["y"] and legend["y"] + legend["height"] <= box["y"] + box["height"], (name, legend, box)
            assert box["x"] <= legend["x"] and legend["x"] + legend["width"] <= box["x"] + box["width"], (name, legend, box)


def train_and_stop(page):
    start_training(page)
    wait_for_steps(page, 5)
    page.get_by_role("button", name="Stop (keeps the model)").click()
    page.get_by_text("stopped after").first.wait_for(timeout=60_000)


def test_in_a_real_browser_continue_an_uploaded_opening(server, browser):
    from playwright.sync_api import expect

    context, page = open_page(browser, server)
    page.get_by_text("Start from your music").click()
    page.locator("#opening input[type=file]").set_input_files(str(EXAMPLES[6]))
    expect(page.locator("#opening")).to_contain_text(EXAMPLES[6].stem, timeout=30_000)
    page.locator("#continue").click()
    page.wait_for_function("document.querySelector('.mg-roll') && "
                           "JSON.parse(decodeURIComponent(document.querySelector('.mg-roll').dataset.piece)).given.length > 0",
                           timeout=60_000)
    piece = piece_of(page.locator("#pianoroll").inner_html())
    opening = midi.read(EXAMPLES[6])
    bar = opening.steps_per_bar
    rest = bar - piece["bars"][1] if piece["bars"][1] < bar else 0  # (drawn from a pickup: its bar's rest left out)
    assert rest == opening.notes[:, 1].min()
    assert piece["given"] == [int(n[1] + rest < 4 * bar) for n in piece["notes"]]
    assert piece["steps"] + rest >= 12 * bar
    expect(page.locator("#piece-status")).to_contain_text("opening and 8 bars")
    page.locator("#pianoroll").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "continue.png"), full_page=True)
    context.close()


def test_in_a_real_browser_harmonise_a_melody_and_play_it(server, browser, tmp_path):
    from playwright.sync_api import expect

    melody_file = ROOT / "examples" / "melodies" / "old-hundredth.mid"
    context, page = open_page(browser, server)
    page.get_by_text("Start from your music").click()
    page.locator("#opening input[type=file]").set_input_files(str(melody_file))
    expect(page.locator("#opening")).to_contain_text(melody_file.stem, timeout=30_000)
    page.locator("#harmonise").click()
    page.wait_for_function("document.querySelector('.mg-roll') && "
                           "JSON.parse(decodeURIComponent(document.querySelector('.mg-roll').dataset.piece)).given.length > 0",
                           timeout=60_000)
    piece = piece_of(page.locator("#pianoroll").inner_html())
    melody = midi.read(melody_file)
    assert [n[:3] for n, g in zip(piece["notes"], piece["given"]) if g] == melody.notes[:, :3].tolist()
    assert len(piece["notes"]) > 2 * len(melody.notes)
    expect(page.locator("#piece-status")).to_contain_text("harmonised")
    page.locator("#pianoroll").scroll_into_view_if_needed()
    page.locator(".mg-play").click()  # it plays: the playhead moves on
    page.wait_for_function("parseFloat(document.querySelector('.mg-roll').dataset.playhead) > 4", timeout=15_000)
    page.locator(".mg-play").click()
    page.screenshot(path=str(SHOTS / "harmonise.png"), full_page=True)
    # ... and a chorale's bass: the voices written above it
    page.locator("#opening button[aria-label=Clear]").click()
    page.locator("#opening input[type=file]").set_input_files(str(EXAMPLES[9]))
    expect(page.locator("#opening")).to_contain_text(EXAMPLES[9].stem, timeout=30_000)
    page.locator("#harmonise-bass").click()
    expect(page.locator("#piece-status")).to_contain_text("a bass line of", timeout=60_000)
    piece = piece_of(page.locator("#pianoroll").inner_html())
    given = [n for n, g in zip(piece["notes"], piece["given"]) if g]
    assert given and min(n[0] for n in given) == min(n[0] for n in piece["notes"])
    # ... and a melody written from its pickup's first tick: its pickup found, or not when unticked
    from musicgan import pickup
    unmarked = tmp_path / "unmarked.mid"
    midi.write(pickup.as_written(midi.read(EXAMPLES[1]))[0], unmarked)
    page.locator("#opening button[aria-label=Clear]").click()
    page.locator("#opening input[type=file]").set_input_files(str(unmarked))
    expect(page.locator("#opening")).to_contain_text("unmarked", timeout=30_000)
    page.locator("#harmonise").click()
    expect(page.locator("#piece-status")).to_contain_text("pickup of 1 beat found", timeout=60_000)
    page.locator("#given-pickup input[type=checkbox]").uncheck()
    page.locator("#harmonise").click()
    expect(page.locator("#piece-status")).not_to_contain_text("pickup", timeout=60_000)
    expect(page.locator("#piece-status")).to_contain_text("harmonised")
    context.close()


def test_in_a_real_browser_train_then_generate_and_listen(server, browser):
    from playwright.sync_api import expect

    SHOTS.mkdir(exist_ok=True)
    context, page = open_page(browser, server)
    fetched = []
    page.on("requestfinished", lambda request: fetched.append(request))

    # the empty roll's hint reads as one sentence (in a flex box, bare text and <b> were laid out apart)
    assert page.locator(".mg-empty").first.inner_text().startswith("Press Generate or pick an example")
    # Generate tab: one click on an example makes music
    page.get_by_role("button", name="Seed 42: 16 bars, Church Organ, 80 bpm").click()
    expect(page.locator(".mg-roll canvas")).to_be_attached(timeout=60_000)
    expect(page.locator("a[href$='.mid']").first).to_be_attached(timeout=30_000)
    # the playable roll: clicking the middle seeks to the middle; playing moves the playhead on
    canvas = page.locator(".mg-roll canvas")
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    steps = piece_of(page.locator("#pianoroll").inner_html())["steps"]
    page.wait_for_function(f"Math.abs(parseFloat(document.querySelector('.mg-roll').dataset.playhead) - {steps / 2}) < 2",
                           timeout=10_000)
    page.locator(".mg-play").click()
    page.wait_for_function(f"parseFloat(document.querySelector('.mg-roll').dataset.playhead) > {steps / 2 + 2}",
                           timeout=15_000)
    page.locator(".mg-play").click()  # pause
    # the piece's audio reached the page once, as a file (16 bars: well under 1.5 MB in all)
    audio = [r for r in fetched if "/gradio_api/file=" in r.url and r.url.endswith(".mp3")]
    assert len({r.url for r in audio}) == 1
    sent = sum(r.sizes()["responseBodySize"] for r in fetched)
    assert sent < 1.5e6, f"{sent:,} bytes sent for one 16-bar piece: {[(r.url[-50:], r.sizes()['responseBodySize']) for r in fetched]}"
    page.screenshot(path=str(SHOTS / "generate.png"), full_page=True)

    # Train tab: upload, train a little, watch the curves, stop, send the model to Generate
    start_training(page)
    wait_for_steps(page, 10)
    curve = page.locator("#curves path[aria-roledescription='line mark']").first
    drawn = curve.get_attribute("d")
    time.sleep(2.5)
    assert curve.get_attribute("d") != drawn  # the plot grows while training runs
    legends_inside_their_plots(page)
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)
    page.get_by_role("button", name="Stop (keeps the model)").click()
    page.get_by_text("stopped after").first.wait_for(timeout=60_000)
    expect(page.locator("a[href$='.zip']").first).to_be_attached(timeout=30_000)
    page.get_by_role("button", name="Use this model in Generate").click()
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#piece-status")).to_contain_text("My trained model", timeout=60_000)
    expect(page.locator("#pianoroll .mg-roll audio")).to_have_attribute("src", re.compile(r"\.mp3$"))
    context.close()


def test_an_example_click_keeps_the_trained_model(server, browser):
    from playwright.sync_api import expect

    context, page = open_page(browser, server)
    train_and_stop(page)
    page.get_by_role("tab", name="Generate").click()
    page.get_by_role("button", name=re.compile("^Seed 0: 8 bars")).click()  # an example of the pretrained model
    expect(page.locator("#piece-status")).to_contain_text("seed 0 · 8 bars", timeout=60_000)
    page.get_by_label("My trained model").check()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function("document.querySelector('#piece-status').innerText.includes('My trained model') || "
                           "document.body.innerText.includes('No trained model yet')", timeout=60_000)
    assert page.get_by_text("No trained model yet").count() == 0
    # and Stop still knows this tab's (finished) job: nothing is training, nothing lost
    page.get_by_role("tab", name="Train").click()
    page.get_by_role("button", name="Stop (keeps the model)").click()
    expect(page.get_by_text("Nothing is training.")).to_be_attached(timeout=10_000)
    expect(page.locator("a[href$='.zip']").first).to_be_attached()
    context.close()


def test_closing_a_training_tab_frees_the_training_slot(server, browser):
    leaving, page = open_page(browser, server)
    start_training(page)
    wait_for_steps(page, 2)
    staying, other = open_page(browser, server)
    other.get_by_role("tab", name="Train").click()
    other.locator("input[type=file]").last.set_input_files([str(p) for p in EXAMPLES[4:6]])
    other.get_by_text("file(s) read").wait_for(timeout=60_000)
    leaving.close()
    closed = time.monotonic()
    other.get_by_role("button", name="Start training").click()  # waits for the slot, then trains
    other.wait_for_function("/preparing the data|training on|step \\d/.test("
                            "document.querySelector('.mg-progress-text').textContent)", timeout=30_000)
    assert time.monotonic() - closed < 10
    wait_for_steps(other, 1)
    other.get_by_role("button", name="Stop (keeps the model)").click()
    other.get_by_text("stopped after").first.wait_for(timeout=60_000)
    staying.close()


def test_the_page_on_a_phone(server, browser):
    from playwright.sync_api import expect

    context, page = open_page(browser, server, width=390, height=844)
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator(".mg-roll canvas")).to_be_attached(timeout=60_000)
    # nothing is wider than the screen: the roll scrolls inside its own box, the controls fit
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    scroller = page.locator(".mg-scroll").bounding_box()
    assert scroller["x"] >= 0 and scroller["x"] + scroller["width"] <= 390
    for name in ("Generate", "Random seed"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    examples = page.get_by_role("button", name=re.compile(r"^Seed \d+: ")).all()
    assert len(examples) == 4 and "16 bars of a fiddle tune, Violin" in examples[-1].inner_text()
    for example in examples:  # each whole on the screen (they were a table that scrolled sideways)
        box = example.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, example.inner_text()
    page.locator(".mg-roll").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "phone.png"), full_page=True)
    examples[-1].click()  # (the fiddle model's: it plays a tune)
    expect(page.locator("#piece-status")).to_contain_text("16 bars of", timeout=60_000)
    expect(page.locator("#piece-status")).to_contain_text("Pretrained: fiddle tunes")
    page.get_by_role("tab", name="Train").click()
    page.locator("#curves svg text").first.wait_for()
    legends_inside_their_plots(page)
    context.close()


@pytest.fixture(scope="module")
def bounded_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server-tmp")  # the server's temporary folder: sessions and Gradio's cache
    proc, url = start_server(tmp_path_factory, TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"))
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=30)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_files_stay_bounded_after_a_training_and_100_pieces(bounded_server):
    from gradio_client import handle_file

    url, tmp = bounded_server
    trainer, visitor = client(url), client(url)
    trainer.predict([handle_file(str(p)) for p in EXAMPLES], api_name="/read_uploads")
    job = trainer.submit(2, "", 64, 4, 0.75, False, 1e-4, 1e-3, api_name="/train")
    for seed in range(100):  # while it trains, as on a busy Space
        html, mid, status = visitor.predict("Pretrained: Bach chorales", seed, 16, 120, -1, 1.0, api_name="/generate")
        assert f"seed {seed}" in status
    job.result(timeout=600)
    assert "done" in job.outputs()[-1][4]
    total = folder_bytes(tmp)
    assert total < 50e6, f"{total / 1e6:.1f} MB in the server's temporary files"

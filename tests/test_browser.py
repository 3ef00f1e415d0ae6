"""The app in a real headless Chromium (Debian's chromium + Playwright; never `playwright install`).

One flow walks the studio like a user (upload, Interpolate, open a frame, pin, regenerate, drag,
remove and add joints, download the MP4, a bad upload, then a phone-sized window); others check
the live plot and two sessions at once. Screenshots of each stage go to /tmp/app_shots/ (look at them after a change).
"""
import json
import os
import re
import shutil
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
SHOTS = Path(os.environ.get("INTERP_SHOTS", "/tmp/app_shots"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
STATUS = "#interp-status"
POSE_JSON = "#interp-pose-json textarea"


@pytest.fixture(scope="module")
def url():
    from ui import layout
    from interp.models.load import load_bundle
    from interp.rank import build_tiny_clip
    from interp.render import Interpolator
    from interp.settings import Settings
    from interp.store import FrameStore
    bundle = load_bundle("tiny")
    engine = Interpolator(bundle, FrameStore(), build_tiny_clip(counter=bundle.counter))
    tiny = Settings(frames=5, num_inference_steps=10, size=64, candidates=3, prompt="a photo",
                    rank_positive="a photo")
    demo = layout.build_demo(engine, "running on the tiny test model", tiny)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, quiet=True, server_port=port, **layout.launch_options())
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_selector("#interp-run")
    yield page
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_status(page, words: str) -> str:
    """Wait until the status line starts with `words` (a finished run's line: "N frames · ...",
    a running one's: "rendering: ...")."""
    page.wait_for_function("([sel, words]) => document.querySelector(sel).innerText.trim()"
                           ".startsWith(words)", arg=[STATUS, words], timeout=60_000)
    return page.locator(STATUS).inner_text()


def upload(page, a="astronaut.jpg", b="chelsea.jpg") -> None:
    page.locator("#interp-image-a input[type=file]").set_input_files(str(EXAMPLES / a))
    page.locator("#interp-image-b input[type=file]").set_input_files(str(EXAMPLES / b))
    page.wait_for_selector("#interp-image-a img")
    page.wait_for_selector("#interp-image-b img")


def dismiss_toasts(page) -> None:
    for button in page.locator(".toast-close").all():
        button.click()


def open_frame(page, index: int) -> list:
    """Click frame `index` in the strip; the candidates' captions once they show."""
    page.locator("#interp-strip .thumbnail-item").nth(index).click()
    page.wait_for_function("i => document.querySelector('#interp-frame input').value == String(i)",
                           arg=index)
    page.wait_for_function("() => document.querySelectorAll('#interp-candidates .caption-label')"
                           ".length == 3 && document.querySelector('#interp-candidates')"
                           ".innerText.includes('✓')")
    return page.locator("#interp-candidates .caption-label").all_inner_texts()


def neck_x(page) -> float:
    return json.loads(page.locator(POSE_JSON).input_value())["people"][0]["pose_keypoints_2d"][3]


def test_studio_flow(page, tmp_path):
    from interp.video import read_video_frames
    shot(page, "01-start")
    upload(page)
    page.click("#interp-run")
    wait_status(page, "5 frames · regenerated 3, reused 0")
    assert page.locator("#interp-strip .thumbnail-item").count() == 5
    shot(page, "02-rendered")

    captions = open_frame(page, 2)
    assert all(re.fullmatch(r"#\d · -?\d\.\d{3}( ✓)?", c) for c in captions)  # CLIP scores
    shot(page, "03-frame-candidates")
    other = next(i for i, c in enumerate(captions) if not c.endswith("✓"))
    page.locator("#interp-candidates .thumbnail-item").nth(other).click()
    page.wait_for_function("c => document.querySelector('#interp-candidate input').value == "
                           "String(c)", arg=other)
    page.click("#interp-use")
    wait_status(page, "5 frames · regenerated 2, reused 1")  # frame 2's children 1 and 3
    open_frame(page, 1)
    page.click("#interp-regenerate")
    wait_status(page, "5 frames · regenerated 1, reused 2")  # a leaf: only itself
    shot(page, "04-regenerated")

    page.click("#interp-load-pose")
    page.wait_for_selector("#pose-editor svg.pe-svg")
    dismiss_toasts(page)  # "pose detection is unavailable" (no weights offline)
    page.click("#pose-editor [data-act=add-person]")
    page.wait_for_function("s => document.querySelector(s).value.includes('pose_keypoints_2d')",
                           arg=POSE_JSON)
    before = neck_x(page)
    box = page.locator('#pose-editor circle[data-joint="1"]').bounding_box()
    stage = page.locator("#pose-editor svg.pe-svg").bounding_box()
    x, y = box["x"] + box["width"] / 2 + 2, box["y"] + box["height"] / 2 - 1  # off-centre grab
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y + 24, steps=6)
    page.mouse.up()
    page.wait_for_function("([s, old]) => document.querySelector(s).value != old",
                           arg=[POSE_JSON, page.locator(POSE_JSON).input_value()])
    assert neck_x(page) == pytest.approx(before + 40 * 64 / stage["width"], abs=0.05)
    page.locator('#pose-editor circle[data-joint="17"]').dblclick()  # remove the left ear
    page.wait_for_function(f"s => JSON.parse(document.querySelector(s).value).people[0]"
                           f".pose_keypoints_2d[{3 * 17 + 2}] == 0", arg=POSE_JSON)
    page.select_option("#pose-editor select.pe-missing", label="l_ear")  # and put it back
    page.mouse.click(stage["x"] + stage["width"] / 4, stage["y"] + stage["height"] / 4)
    page.wait_for_function(f"s => JSON.parse(document.querySelector(s).value).people[0]"
                           f".pose_keypoints_2d[{3 * 17 + 2}] == 1", arg=POSE_JSON)
    ear = json.loads(page.locator(POSE_JSON).input_value())["people"][0]["pose_keypoints_2d"][51:53]
    assert ear == pytest.approx([16, 16], abs=0.2)
    shot(page, "05-pose-editor")

    with page.expect_download() as download:
        page.click("#interp-dl-mp4")
    mp4 = tmp_path / download.value.suggested_filename
    download.value.save_as(mp4)
    assert mp4.suffix == ".mp4" and len(read_video_frames(mp4)) == 5

    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image")
    page.locator("#interp-image-b input[type=file]").set_input_files(str(notes))
    toast = page.locator(".toast-body", has_text="'notes.png' is not an image")
    toast.wait_for()
    page.screenshot(path=str(SHOTS / "06-bad-upload.png"))
    dismiss_toasts(page)
    upload(page)  # the page keeps working
    page.click("#interp-run")
    wait_status(page, "5 frames · regenerated 0, reused 3")  # same inputs and edits: cached

    page.click("#interp-pace")  # even pacing: the plot follows the respaced custom curve
    page.wait_for_function("s => document.querySelector(s).innerText.includes('pacing: largest')",
                           arg=STATUS, timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('#interp-plot circle.pos')[2]"
                           ".dataset.position != '0.500000'")
    shot(page, "10-even-pacing")
    page.click("#interp-run")  # the knobs now hold the respaced curve: nothing to regenerate
    wait_status(page, "5 frames · regenerated 0, reused 3")

    page.set_viewport_size({"width": 420, "height": 800})  # a phone-sized window
    page.wait_for_function("() => document.documentElement.scrollWidth <= 420")
    page.locator("#interp-strip").scroll_into_view_if_needed()
    shot(page, "09-narrow")


def test_plot_follows_the_curve(page):
    def positions():
        return page.locator("#interp-plot circle.pos").evaluate_all(
            "dots => dots.map(d => +d.dataset.position)")
    page.wait_for_selector("#interp-plot circle.pos")
    assert positions() == [0.0, 0.25, 0.5, 0.75, 1.0]
    page.get_by_label("Schedule curve").click()
    page.get_by_role("option", name="ease in-out").click()
    page.wait_for_function("() => document.querySelectorAll('#interp-plot circle.pos')[1]"
                           ".dataset.position != '0.250000'")
    assert positions() == pytest.approx([0.0, 0.15625, 0.5, 0.84375, 1.0])
    page.get_by_label("number input for Frames (A and B included)").fill("9")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#interp-plot circle.pos').length == 9")
    shot(page, "07-plot-ease-in-out-9-frames")


def test_two_sessions_at_once_get_their_own_results(browser, url):
    pages = []
    for pair in (("astronaut.jpg", "chelsea.jpg"), ("coffee.jpg", "rocket.jpg")):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url)
        page.wait_for_selector("#interp-run")
        upload(page, *pair)
        pages.append(page)
    for page in pages:
        page.click("#interp-run")
    for page in pages:
        wait_status(page, "5 frames ·")
    sources = [p.locator("#interp-strip img").evaluate_all("imgs => imgs.map(i => i.src)")
               for p in pages]
    assert len(sources[0]) == len(sources[1]) == 5
    assert not set(sources[0]) & set(sources[1])  # nothing of one session shows in the other
    captions = [open_frame(p, 2) for p in pages]
    assert captions[0] != captions[1]
    pages[1].screenshot(path=str(SHOTS / "08-second-session.png"))
    for page in pages:
        page.context.close()

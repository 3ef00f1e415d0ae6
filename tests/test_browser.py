"""The studio in a real headless Chromium (Debian's chromium + Playwright; never `playwright install`).

One flow walks the studio like an artist (add images, a third one, reorder, Interpolate, open a
frame of the second segment, regenerate it, pin a candidate, edit a pose, download the MP4, a bad
upload, even pacing, then a phone-sized window); others check the live plot and two sessions at
once. Screenshots of each stage go to /tmp/app_shots/ (look at them after a change).
"""
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from studio import EXAMPLES, studio_fixture
from interp.settings import Settings

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("INTERP_SHOTS", "/tmp/app_shots"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
STATUS = "#interp-status"
POSE_JSON = "#interp-pose-json textarea"
ADD = 'input[data-testid="Add images-upload-button"]'


url = studio_fixture(Settings(frames=5, num_inference_steps=10, size=64, candidates=3,
                              prompt="a photo", rank_positive="a photo"))


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


def new_page(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_selector("#interp-run")
    return page


@pytest.fixture
def page(browser, url):
    page = new_page(browser, url)
    yield page
    page.context.close()


def shot(page, name: str, full: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def wait_status(page, words: str) -> str:
    """Wait until the status line starts with `words` (a finished run's line: "N frames · ...",
    a running one's: "rendering: ...")."""
    page.wait_for_function("([sel, words]) => document.querySelector(sel).innerText.trim()"
                           ".startsWith(words)", arg=[STATUS, words], timeout=90_000)
    return page.locator(STATUS).inner_text()


def add_images(page, *names: str) -> None:
    before = page.locator("#interp-keyframes .thumbnail-item").count()
    page.locator(ADD).set_input_files([str(EXAMPLES / n) for n in names])
    page.wait_for_function("n => document.querySelectorAll('#interp-keyframes .thumbnail-item')"
                           ".length == n", arg=before + len(names))


def captions(page, where: str) -> list:
    return page.locator(f"{where} .caption-label").all_inner_texts()


def dismiss_toasts(page) -> None:
    for button in page.locator(".toast-close").all():
        button.click()


def open_frame(page, index: int) -> list:
    """Click frame `index` in the strip; the candidates' captions once they show."""
    page.locator("#interp-strip .thumbnail-item").nth(index).click()
    page.wait_for_function("i => document.querySelector('#interp-frame input')?.value == String(i)",
                           arg=index)
    page.wait_for_function("() => document.querySelectorAll('#interp-candidates .caption-label')"
                           ".length == 3 && document.querySelector('#interp-candidates')"
                           ".innerText.includes('✓')")
    return captions(page, "#interp-candidates")


def in_view(page, selector: str) -> bool:
    """The element's box lies inside the 1280 x 800 window (no scrolling needed)."""
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 800 \
        and box["x"] + box["width"] <= 1280


def neck_x(page) -> float:
    return json.loads(page.locator(POSE_JSON).input_value())["people"][0]["pose_keypoints_2d"][3]


def test_studio_flow(page, tmp_path):
    from interp.video import read_video_frames
    shot(page, "01-start", full=False)
    add_images(page, "astronaut.jpg", "chelsea.jpg")
    add_images(page, "coffee.jpg")                                      # a third keyframe
    for k, name in ((0, "A"), (2, "C")):     # each click opens that keyframe in the inspector
        page.locator("#interp-keyframes .thumbnail-item").nth(k).click()
        page.wait_for_function("n => document.querySelector('#interp-kf input')?.value == n",
                               arg=name)
    page.locator("#interp-kf-prompt textarea").click()
    page.keyboard.type("a cup of coffee")          # typed: Gradio's input event, as a user's
    page.keyboard.press("Tab")                     # leaving the box updates the row
    page.wait_for_function("() => document.querySelector('#interp-keyframes').innerText"
                           ".includes('C · a cup of coffee')")
    page.click("#interp-earlier")                                       # C moves before B
    page.wait_for_function("() => document.querySelector('#interp-keyframes').innerText"
                           ".includes('B · a cup of coffee')")
    assert captions(page, "#interp-keyframes") == ["A", "B · a cup of coffee", "C"]
    page.click("#interp-run")
    wait_status(page, "9 frames · regenerated 6, reused 0")            # 5 + 5 - 1 frames
    assert page.locator("#interp-strip .thumbnail-item").count() == 9
    assert captions(page, "#interp-strip")[4] == "4 · B"
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "02-rendered-1280x800", full=False)
    for part in ("#interp-keyframes", "#interp-timeline", "#interp-strip", "#interp-video"):
        assert in_view(page, part), part                               # all above the fold

    found = open_frame(page, 6)                  # the middle of the second segment (B -> C)
    assert all(re.fullmatch(r"#\d · -?\d\.\d{3}( ✓)?", c) for c in found)   # CLIP scores
    assert "segment B → C" in page.locator("#interp-side").inner_text()
    shot(page, "03-frame-of-segment-2", full=False)
    page.click("#interp-regenerate")
    wait_status(page, "9 frames · regenerated 3, reused 3")  # frame 6 and its children 5 and 7
    found = open_frame(page, 2)
    other = next(i for i, c in enumerate(found) if not c.endswith("✓"))
    page.locator("#interp-candidates .thumbnail-item").nth(other).click()
    page.wait_for_function("c => document.querySelector('#interp-candidate input')?.value == "
                           "String(c)", arg=other)
    page.click("#interp-use")
    wait_status(page, "9 frames · regenerated 2, reused 4")  # frame 2's children 1 and 3

    _pose_editor(page)
    with page.expect_download() as download:
        page.click("#interp-dl-mp4")
    mp4 = tmp_path / download.value.suggested_filename
    download.value.save_as(mp4)
    assert mp4.suffix == ".mp4" and len(read_video_frames(mp4)) == 9

    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image")
    page.locator(ADD).set_input_files(str(notes))
    page.locator(".toast-body", has_text="Keyframe D: 'notes.png' is not an image").wait_for()
    shot(page, "06-bad-upload", full=False)
    dismiss_toasts(page)
    assert page.locator("#interp-keyframes .thumbnail-item").count() == 3   # nothing added
    page.click("#interp-run")
    wait_status(page, "9 frames · regenerated 0, reused 6")  # same inputs and edits: cached

    page.click("#interp-pace")
    page.wait_for_function("s => document.querySelector(s).innerText.includes('pacing: largest')",
                           arg=STATUS, timeout=90_000)
    shot(page, "07-even-pacing", full=False)
    page.set_viewport_size({"width": 420, "height": 800})  # a phone-sized window
    page.wait_for_function("() => document.documentElement.scrollWidth <= 420")
    shot(page, "08-narrow")


def _pose_editor(page) -> None:
    """Pose tab: load keyframe B's pose, add a person, drag the neck, remove and re-add an ear."""
    page.locator("#interp-keyframes .thumbnail-item").nth(1).click()
    # the click answers by showing the Keyframe tab (the Frame tab is open now): wait for that,
    # then open the Pose tab
    page.get_by_role("tab", name="Keyframe", selected=True).wait_for()
    page.get_by_role("tab", name="Pose").click()
    page.get_by_role("tab", name="Pose", selected=True).wait_for()
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
    old = page.locator(POSE_JSON).input_value()       # before the drag: the server may be quick
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y + 24, steps=6)
    page.mouse.up()
    page.wait_for_function("([s, old]) => document.querySelector(s).value != old",
                           arg=[POSE_JSON, old])
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
    shot(page, "05-pose-editor", full=False)


def test_plot_and_timeline_follow_the_knobs(page):
    def positions():
        return page.locator("#interp-plot circle.pos").evaluate_all(
            "dots => dots.map(d => +d.dataset.position)")
    add_images(page, "astronaut.jpg", "chelsea.jpg", "coffee.jpg")
    page.wait_for_function("() => document.querySelectorAll('#interp-timeline rect.segment')"
                           ".length == 2")
    page.get_by_role("tab", name="Schedule").click()
    page.wait_for_selector("#interp-plot circle.pos")
    assert positions() == [0.0, 0.25, 0.5, 0.75, 1.0]
    page.get_by_label("Schedule curve").click()
    page.get_by_role("option", name="ease in-out").click()
    page.wait_for_function("() => document.querySelectorAll('#interp-plot circle.pos')[1]"
                           ".dataset.position != '0.250000'")
    assert positions() == pytest.approx([0.0, 0.15625, 0.5, 0.84375, 1.0])
    page.get_by_label("number input for Frames per segment (both keyframes included)").fill("9")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#interp-plot circle.pos').length == 9")
    page.wait_for_function("() => [...document.querySelectorAll('#interp-timeline rect.segment')]"
                           ".map(r => r.dataset.frames).join() == '9,9'")
    assert "17 frames · 1.6 s at 10 fps" in page.locator("#interp-timeline").inner_text()
    shot(page, "09-plot-ease-in-out-9-frames", full=False)


def test_two_sessions_at_once_get_their_own_results(browser, url):
    pages = []
    for pair in (("astronaut.jpg", "chelsea.jpg"), ("coffee.jpg", "rocket.jpg")):
        page = new_page(browser, url)
        add_images(page, *pair)
        pages.append(page)
    for page in pages:
        page.click("#interp-run")
    for page in pages:
        wait_status(page, "5 frames ·")
    sources = [p.locator("#interp-strip img").evaluate_all("imgs => imgs.map(i => i.src)")
               for p in pages]
    assert len(sources[0]) == len(sources[1]) == 5
    assert not set(sources[0]) & set(sources[1])  # nothing of one session shows in the other
    found = [open_frame(p, 2) for p in pages]
    assert found[0] != found[1]
    pages[1].screenshot(path=str(SHOTS / "10-second-session.png"))
    for page in pages:
        page.context.close()

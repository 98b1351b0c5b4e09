"""A real browser (Debian's Chromium driven by Playwright) uses the web UI as a person would."""

import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from app.ui import launch
from gen.images import cover_resize, load_image

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CHROMIUM = "/usr/bin/chromium"
# No background networking: this machine's closed network would refuse those connections.
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def ui_out(tmp_path_factory):
    return tmp_path_factory.mktemp("ui-out")


@pytest.fixture(scope="module")
def page(ui_out):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(port=port, out_dir=str(ui_out), device="cpu", block=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        yield page
        browser.close()
    demo.close()


def test_style_transfer_in_the_browser(page, tmp_path):
    page.get_by_role("tab", name="Style").click()
    page.locator("input[type=file]").nth(0).set_input_files(str(ASSETS / "coffee.jpg"))
    page.locator("input[type=file]").nth(1).set_input_files(str(ASSETS / "brick.jpg"))
    page.get_by_role("button", name="Stylise").click()
    result = page.locator("img[src*='style-']")
    expect(result).to_be_visible(timeout=120_000)
    assert page.evaluate("img => img.naturalWidth", result.element_handle()) == 64
    expect(page.get_by_text('"kind": "style"')).to_be_visible()
    page.screenshot(path=str(tmp_path / "style.png"), full_page=True)
    assert (tmp_path / "style.png").stat().st_size > 10_000
    expect(page.get_by_text("noise-like")).to_be_visible()  # the tiny-model notice


def test_image_and_video_in_the_browser(page, tmp_path):
    page.get_by_role("tab", name="Image").click()
    page.get_by_role("tabpanel").get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("img[src*='image-']").first).to_be_visible(timeout=120_000)
    expect(page.get_by_text('"entropy_scaling": "auto"')).to_be_visible()

    page.get_by_role("tab", name="Video").click()
    page.get_by_role("tabpanel").get_by_label("Prompt").fill("waves on a beach")
    page.get_by_role("button", name="Generate video").click()
    expect(page.locator("video[src*='.mp4']")).to_be_visible(timeout=180_000)
    page.screenshot(path=str(tmp_path / "video.png"), full_page=True)


def test_bad_input_shows_a_short_message_not_a_traceback(page):
    page.get_by_role("tab", name="Image").click()
    page.get_by_label("Width (blank: training size)").fill("100")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.get_by_text("Width 100 is not a multiple of 8; nearest valid: 96 or 104")).to_be_visible(
        timeout=60_000)
    assert "Traceback" not in page.content()
    page.get_by_label("Width (blank: training size)").fill("")


def test_prompts_that_look_like_flags_are_text(page):
    page.get_by_role("tab", name="Image").click()
    page.get_by_role("tabpanel").get_by_label("Prompt", exact=True).fill("--help")
    page.get_by_label("Negative prompt").fill("-blurry")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.get_by_text('"prompt": "--help"')).to_be_visible(timeout=120_000)
    expect(page.get_by_text('"negative_prompt": "-blurry"')).to_be_visible()
    page.get_by_label("Negative prompt").fill("")


def test_stop_cancels_between_steps(page):
    page.get_by_role("tab", name="Image").click()
    page.get_by_role("tabpanel").get_by_label("Prompt", exact=True).fill("a long job")
    page.get_by_text("Advanced").first.click()
    page.get_by_label("Steps (blank: per model)").fill("500")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Stop").first.click()
    expect(page.get_by_text("cancelled; nothing was written for the unfinished output")).to_be_visible(
        timeout=60_000)
    page.get_by_label("Steps (blank: per model)").fill("")


def test_painted_mask_gallery_parameters_and_send_back(page, ui_out, tmp_path):
    page.get_by_role("tab", name="Style").click()
    page.locator("input[type=file]").nth(0).set_input_files(str(ASSETS / "coffee.jpg"))
    page.locator("input[type=file]").nth(1).set_input_files(str(ASSETS / "gravel.jpg"))
    page.get_by_role("tabpanel").get_by_text("Advanced").click()
    canvas = page.locator("#style-mask-editor canvas").last
    expect(canvas).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)  # the content becomes the editor's background
    page.locator("#style-mask-editor").get_by_role("button", name="Brush").first.click()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    for step in range(1, 11):  # a stroke down the left part of the picture
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * (0.3 + 0.04 * step), steps=3)
    page.mouse.up()
    page.get_by_role("button", name="Stylise").click()
    expect(page.get_by_text('"mask": true')).to_be_visible(timeout=120_000)
    page.screenshot(path=str(tmp_path / "painted.png"), full_page=True)
    result = Image.open(sorted(ui_out.glob("style-*.png"))[-1])
    content = np.asarray(cover_resize(load_image(ASSETS / "coffee.jpg"), *result.size), dtype=int)
    difference = np.abs(np.asarray(result.convert("RGB"), dtype=int) - content).mean(axis=(0, 2))
    # The stroke covers the left of the picture: stylised there, the content itself on the right.
    assert difference[: result.width // 8].mean() > 10 and difference[result.width // 2:].max() < 2

    page.get_by_role("tab", name="Gallery").click()
    page.locator("#gallery-params").wait_for(state="attached")
    page.get_by_role("tabpanel").locator("img").last.click()
    expect(page.locator("#gallery-params").get_by_text('"kind": "style"')).to_be_visible(timeout=30_000)

    page.get_by_role("tab", name="Style").click()
    page.get_by_label("Temperature T").fill("3")
    page.get_by_role("tab", name="PNG info").click()
    outputs = sorted(ui_out.glob("style-*.png"))
    page.get_by_role("tabpanel").locator("input[type=file]").first.set_input_files(str(outputs[-1]))
    expect(page.locator("#png-info-params").get_by_text('"temperature": 1.5')).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Send to its tab").click()
    expect(page.get_by_role("tab", name="Style", selected=True)).to_be_visible(timeout=30_000)
    expect(page.get_by_label("Temperature T")).to_have_value("1.5")

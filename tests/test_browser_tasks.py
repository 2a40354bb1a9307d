"""A real browser on a model that is not a classifier: the bundled selfie segmenter picked on Model & data, compared
in three modes, and its masks drawn over the photos on Compare (Playwright driving Debian's chromium).

Screenshots go to artifacts/screenshots/ (kept by CI as artifacts).
"""

from __future__ import annotations

import pytest

from live_server import DONE, EXCEPTION, IDLE, SUMMARY_JS
from test_browser import SCREENSHOTS, goto, page, server, shot  # noqa: F401 - the browser, the server, helpers

pytestmark = pytest.mark.browser

DROPPED = ("Weight-only int8", "Full integer int8", "Int8 with float I/O", "16x8 (int16 activations)")
# Every drawn view on the page: a PNG the browser decoded, at the drawing's size (256 px on its longer side; a
# variant's mask and difference map side by side, 12 px apart, in one).
VIEWS_JS = """() => Array.from(document.querySelectorAll('[data-testid="stImage"] img'))
  .filter(i => i.complete && (i.naturalWidth === 256 || i.naturalWidth === 256 + 12 + 256)).length"""


def test_the_segmenter_is_picked_compared_and_its_masks_drawn_over_the_photos(page, server):  # noqa: F811
    page.goto(server)
    page.wait_for_selector("text=What we understood: mobilenet_v2_imagenet")
    page.locator('[data-testid="stSelectbox"]', has_text="Sample").click()
    page.get_by_role("option", name="selfie_segmentation").click()
    page.wait_for_selector("text=What we understood: selfie_segmentation")
    page.wait_for_selector(IDLE)
    page.wait_for_selector("text=/Task: segmentation \\(inferred from activation_10/")
    page.wait_for_selector("text=activation_10 [1,256,256,1]: a mask, values in [0, 1]")
    page.wait_for_selector("text=These images are not labelled by class")
    shot(page, "tasks_01_model_data_segmentation")

    goto(page, "Quantize")
    for title in DROPPED:
        page.locator('[data-testid="stCheckbox"]', has_text=title).locator("label").click()
        page.wait_for_selector(IDLE)
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector('h1:has-text("Compare")')
    page.wait_for_selector(DONE, timeout=300_000)
    rows = page.evaluate(SUMMARY_JS)
    assert list(rows) == ["float32", "dynamic_range", "float16"]
    assert all(r["status"] == "ok" for r in rows.values()) and "mask IoU" in rows["float32"]
    page.wait_for_selector("text=/IoU 0\\.\\d{3} with float32/")
    # 6 photos on the first page: float32's mask, then dynamic range's and float16's masks beside their difference
    # maps.
    page.wait_for_function(f"() => ({VIEWS_JS})() === 18")
    assert page.locator(EXCEPTION).count() == 0
    shot(page, "tasks_02_compare_segmentation")
    page.get_by_text("Per image", exact=True).scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "tasks_03_compare_masks.png"))
    # The other tab draws the error per output in its place (only the open tab is drawn).
    page.get_by_role("tab", name="Error per output").click()
    page.wait_for_selector("text=Error per output: SQNR against float32")
    page.wait_for_selector(IDLE)
    assert page.evaluate(VIEWS_JS) == 0 and page.locator(EXCEPTION).count() == 0
    page.screenshot(path=str(SCREENSHOTS / "tasks_04_compare_error_per_output.png"))

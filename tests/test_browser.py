"""A real browser (Playwright driving Debian's chromium) against `streamlit run` on a free port.

Screenshots of every page are saved to artifacts/screenshots/ (kept by CI as artifacts).
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile

import pytest

from conftest import REPO
from quant_core.results.summary import ACCURACY
from live_server import (CHROMIUM, DONE, ERROR, EXCEPTION, IDLE, LAUNCH_ARGS, RESULT_KEY_JS, SUMMARY_JS,
                         done_other_than, streamlit_server)

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def server():
    """`streamlit run` on loopback with a private cache; stopped after the module."""
    with streamlit_server({"QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-browser-cache-")}) as running:
        yield running.url


@pytest.fixture(scope="module")
def page(server):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (done by .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 2000}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_selector(IDLE)
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_timeout(300)  # let charts and tables finish their first paint
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def goto(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
    page.wait_for_selector(f'h1:has-text("{title}")')
    page.wait_for_selector(IDLE)


def goto_running(page, title: str) -> None:
    """Another page while this one's script is still running (a comparison streams its rows)."""
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
    page.wait_for_selector(f'h1:has-text("{title}")')


def test_upload_quantize_compare_and_download(page, server, model_files, image_dir, labels_file, tmp_path):
    page.goto(server)
    page.wait_for_selector('text=What we understood: mobilenet_v2_imagenet')
    shot(page, "01_model_data_sample")

    # Upload a model and a .zip of class folders through the real file inputs.
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(image_dir.rglob("*.png")):
            zf.write(path, path.relative_to(image_dir.parent))
    page.get_by_text("Upload my own").click()
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    inputs.nth(0).set_input_files(str(model_files["keras"]))
    inputs.nth(1).set_input_files(str(archive))
    inputs.nth(2).set_input_files(str(labels_file))
    page.get_by_role("button", name="Use these files").click()
    page.wait_for_selector("text=What we understood: tiny")
    page.wait_for_selector("text=your model tiny.keras")  # the sidebar follows the upload
    page.wait_for_selector("text=Images: 24")
    page.wait_for_selector("text=Preprocessing: [0,255]")  # the model's own Rescaling layer, not the sample's range
    shot(page, "02_model_data_upload")

    # Select variants: drop 16x8 and dynamic range, keep the rest.
    goto(page, "Quantize")
    for title in ("16x8 (int16 activations)", "Dynamic range"):
        page.locator('[data-testid="stCheckbox"]', has_text=title).locator("label").click()
        page.wait_for_selector(IDLE)
    shot(page, "03_quantize")
    page.get_by_role("button", name="Run").click()  # lands on Compare, where rows appear as they are measured
    page.wait_for_selector('h1:has-text("Compare")')
    page.wait_for_selector(DONE, timeout=300_000)
    rows = page.evaluate(SUMMARY_JS)
    expected = ["float32", "weight_only", "float16", "int8", "int8_float_io"]
    assert list(rows) == expected
    size = {name: float(r["size (KB)"].replace(",", "")) for name, r in rows.items()}
    for name in ("weight_only", "float16", "int8", "int8_float_io"):
        assert size[name] < size["float32"], (name, size)
    assert all(r["status"] == "ok" for r in rows.values())
    # The labels file mapped the class folders (the tiny model scores >= 90% on its own colours).
    assert all(float(r["accuracy"].rstrip("%")) >= 90 for r in rows.values()), rows
    assert page.get_by_text("Per image").count() >= 1
    assert page.locator("text=/red: (0\\.\\d{3}|1\\.000|<0\\.001)/").count() > 0  # top-k predictions per image
    page.wait_for_selector('[data-testid="stPlotlyChart"]')
    shot(page, "04_compare")

    goto(page, "Ops")
    page.wait_for_selector("text=/\\d+ ops — integer-only/")  # the int8 heading, from its measured ops
    shot(page, "05_ops")

    goto(page, "Report & share")
    with page.expect_download() as download:
        page.get_by_role("button", name="HTML report").click()
    report = tmp_path / "report.html"
    download.value.save_as(report)
    text = report.read_text()
    assert "Quantization report: tiny" in text and "<script" in text and "Plotly" in text
    for name in expected:
        assert f"<td>{name}</td>" in text
    kb = re.findall(r"<td[^>]*>([\d,]+\.\d)</td>", text)  # the summary's KB, as the page shows them
    assert rows["int8"]["size (KB)"] in kb and rows["float32"]["size (KB)"] in kb
    shot(page, "06_report")


def test_one_click_run_on_the_imagenet_sample(page, server):
    """The default sample: a real ImageNet MobileNetV2 on real photos, where the variants visibly differ."""
    page.goto(server)
    page.wait_for_selector("text=What we understood: mobilenet_v2_imagenet")
    page.wait_for_selector("text=Preprocessing: ImageNet mean/std")
    page.get_by_role("button", name="Run the full comparison").click()
    page.wait_for_selector('h1:has-text("Compare")', timeout=600_000)
    # Rows stream in: a measured row waits for its latency while later variants are still to be built.
    page.wait_for_selector('[data-testid="stTable"] td:has-text("measuring latency…")', timeout=600_000)
    live = page.inner_text('[data-testid="stTable"]')
    assert "waiting" in live or "building…" in live, live
    page.screenshot(path=str(SCREENSHOTS / "07a_compare_streaming.png"))  # not `shot`: it waits for the end
    # Another page while it runs: the run goes on, and its result is there when it ends.
    goto_running(page, "Ops")
    page.wait_for_selector("text=The comparison is running")
    page.wait_for_selector("text=/\\d+ ops — integer-only/", timeout=600_000)
    goto(page, "Compare")
    page.wait_for_selector(DONE, timeout=600_000)
    rows = page.evaluate(SUMMARY_JS)
    assert list(rows) == ["float32", "weight_only", "dynamic_range", "float16", "int8", "int8_float_io", "int16x8"]
    assert all(r["status"] == "ok" for r in rows.values())
    assert min(float(r["agreement"].rstrip("%")) for r in rows.values()) < 100  # quantization costs something here
    head = page.get_by_text("Which variant to ship").bounding_box()  # the verdict opens the page
    assert head is not None and head["y"] < 500, head
    for target in ("Phone or desktop CPU", "Mobile GPU", "Integer-only NPU, DSP or microcontroller"):
        page.wait_for_selector(f"text={target}")
    page.wait_for_selector("text=Required: the original's answer on at least 99% of the images")
    page.wait_for_selector("text=Mistakes")
    page.wait_for_selector("text=≠ float32")  # a disagreeing image is shown first in the per-image grid
    assert page.locator("text=/espresso: 0\\.\\d{3}/").count() > 0
    shot(page, "07_compare_imagenet")


def test_layers_and_the_full_dataset_on_the_imagenet_sample(page, server, tmp_path):
    """With the ImageNet results: Layers names where int8 loses accuracy; Full dataset scores the variants on a
    server-side dataset (unconfigured, the bundled photo folders): on the comparison's own 22 photos it gives the
    comparison's own accuracies, and its download has every image's prediction."""
    goto(page, "Compare")
    page.wait_for_selector(DONE)
    compared = page.evaluate(SUMMARY_JS)
    goto(page, "Layers")
    page.wait_for_selector("text=/The output of int8\\w* is off by/")  # the variant with the lowest agreement
    page.wait_for_selector('[data-testid="stPlotlyChart"]')
    shot(page, "07b_layers_imagenet")
    goto(page, "Full dataset")
    dataset = page.get_by_role("combobox", name="Dataset")  # the selected option is the input's value
    assert dataset.input_value() == "imagenet_images (22 images, 21 of the model's classes)"  # preselected: it fits
    page.locator('button[data-testid^="stBaseButton-"]', has_text="Evaluate on 22 images").click()
    page.wait_for_selector("text=On imagenet_images", timeout=600_000)
    page.wait_for_selector(IDLE)
    assert page.locator('button:has-text("Stop")').count() == 0  # the run ended: no Stop left behind
    shot(page, "07c_full_dataset_imagenet")
    with page.expect_download() as download:
        page.get_by_role("button", name="Scores and per-image predictions (JSON)").click()
    download.value.save_as(tmp_path / "evaluation.json")
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["evaluated"] == 22 and not evaluation["skipped"]
    scores = {v["name"]: v for v in evaluation["variants"]}
    assert set(scores) == set(compared)  # float32 is the reference; every built variant was scored
    for name, row in compared.items():
        assert row["accuracy"] == ACCURACY.format_number(scores[name]["accuracy"]), name
        assert len(scores[name]["top1"]) == 22 and min(scores[name]["top1"]) >= 0


def test_what_if_rows_stream_in_and_a_newer_change_stops_the_older_run(page, server):
    """On Compare with the ImageNet results: int16x8 off (every other row comes back measured), per-channel off
    (rebuilds the quantized variants), then float16 off while that runs: it supersedes the run before it, and
    the table ends with every change applied. Per-tensor dynamic range is refused, naming the setting (LiteRT's
    hybrid depthwise kernel reads one scale per channel); per-tensor int16x8 is refused by the converter."""
    goto(page, "Compare")
    page.wait_for_selector(DONE)
    first, shown = page.evaluate(SUMMARY_JS), page.evaluate(RESULT_KEY_JS)
    page.locator('[data-testid="stCheckbox"]', has_text="int16x8").locator("label").click()
    page.wait_for_selector(done_other_than(shown))
    page.wait_for_selector(IDLE)
    before, shown = page.evaluate(SUMMARY_JS), page.evaluate(RESULT_KEY_JS)
    assert list(before) == [name for name in first if name != "int16x8"]
    assert all(before[name] == first[name] for name in before)  # every row kept its numbers
    page.locator('[data-testid="stCheckbox"]', has_text="Per-channel weights").locator("label").click()
    page.wait_for_selector('[data-testid="stTable"] td:has-text("building…")')  # the first what-if is running
    page.locator('[data-testid="stCheckbox"]', has_text="float16").locator("label").click()
    page.wait_for_selector(done_other_than(shown), timeout=600_000)
    page.wait_for_selector(IDLE)
    rows = page.evaluate(SUMMARY_JS)
    assert list(rows) == [name for name in before if name != "float16"]
    assert page.locator(EXCEPTION).count() == 0
    errors = page.locator(ERROR).all_inner_texts()
    assert len(errors) == 1 and errors[0].startswith("dynamic_range failed: per-tensor weights break dynamic range"), \
        errors
    assert rows["dynamic_range"]["status"] == "failed"
    page.wait_for_selector("text=What-if settings in this result")  # the banner names the setting changed
    kept = {column: rows["float32"].get(column) for column in before["float32"]}  # a note column may be new
    assert kept == before["float32"], (rows["float32"], before["float32"])  # an unchanged row keeps its numbers
    assert rows["int8"]["size (KB)"] != before["int8"]["size (KB)"]  # per-tensor int8 is another model
    shot(page, "08_compare_what_if")


def test_a_reload_keeps_the_result(page, server):
    """F5 on Compare: a new session, the same comparison (kept under ?r= in the address), no run."""
    goto(page, "Compare")
    page.wait_for_selector(DONE)
    key, rows = page.evaluate(RESULT_KEY_JS), page.evaluate(SUMMARY_JS)
    saved = page.evaluate("() => new URL(location.href).searchParams.get('r')")
    assert saved and len(saved) == 22
    page.reload()
    page.wait_for_selector(DONE)
    page.wait_for_selector('[data-testid="stTable"] table')
    assert page.evaluate(RESULT_KEY_JS) == key and page.evaluate(SUMMARY_JS) == rows
    assert page.locator('[data-testid="stProgress"]').count() == 0  # nothing ran again
    assert page.evaluate("() => new URL(location.href).searchParams.get('r')") == saved


def test_a_bug_shows_its_incident_id_and_the_server_log_has_the_traceback(page, tmp_path):
    """A builder with a typo (tests/broken_builder.py, loaded into the workers) behind a real browser."""
    env = {"QUANT_CACHE_DIR": str(tmp_path / "cache"), "QW_JOB_MODULES": "tests.broken_builder"}
    with streamlit_server(env, allow_internal_errors=True) as running:
        context = page.context.browser.new_context(viewport={"width": 1400, "height": 1200})
        pg = context.new_page()
        pg.set_default_timeout(300_000)
        pg.goto(running.url)
        pg.wait_for_selector("text=What we understood: mobilenet_v2_imagenet")
        pg.get_by_role("button", name="Run the full comparison").click()
        alert = pg.locator(ERROR, has_text="internal error, logged as")
        alert.wait_for()
        shot(pg, "90_internal_error")
        incident = re.search(r"internal error, logged as ([0-9a-f]{8})", alert.inner_text()).group(1)
        assert pg.locator(EXCEPTION).count() == 0  # no traceback in the page
        context.close()
        log = running.log()
    entry = log[log.index(f"internal error {incident}"):]
    assert "Traceback" in entry and "in broken_int8_builder" in entry and "KeyError: 'per_chanel'" in entry

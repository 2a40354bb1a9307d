"""Compare's verdict card, what-if banner and per-image marks, through AppTest on a real comparison."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

import pytest

from conftest import REPO
from html_cells import cells, grid
from quant_core import CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core.cache import ArtifactCache

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
STORE: list[ArtifactCache] = []


@pytest.fixture(scope="module")
def result(model_files, image_dir, labels_file, tmp_path_factory) -> CompareResult:
    """The tiny model's real comparison; int8 made to agree on 90 % so that the floor decides."""
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.FLOAT16), Recipe(Mode.WEIGHT_ONLY, per_channel=False), Recipe(Mode.INT8),
                 Recipe(Mode.INT16X8)), measure_latency=False))
    STORE.append(ArtifactCache(tmp_path_factory.mktemp("page-cache")))  # the variants' models, for Report
    real = run_compare(request, cache=STORE[0])
    assert all(v.ok for v in real.variants)
    base = real.baseline
    flipped = tuple((base.top1[0] + 1) % 3 if k in (0, 5) else c for k, c in enumerate(base.top1))
    agreement = round(1 - 2 / len(real.images), 6)

    def faked(v):  # the same 22 of 24 on every kernel set: the integer-only card reads TFLite Micro's
        kernels = replace(v.kernels, reference_agreement=agreement,
                          micro=replace(v.kernels.micro, agreement=agreement))
        return replace(v, top1_agreement=agreement, top1=flipped, kernels=kernels)

    return replace(real, variants=tuple(faked(v) if v.mode is Mode.INT8 else v for v in real.variants))


def compare_page(result: CompareResult) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.result"] = result
    at.session_state["qw.models"] = STORE[0]
    at.switch_page("pages/compare.py").run()
    at.run()  # the follow-up run a browser's timer starts after the first paint: charts and images
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)


def test_the_first_draw_paints_verdict_and_table_alone_and_the_rest_follows(result):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.result"] = result
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert "Which variant to ship" in [s.value for s in at.subheader] and len(at.table) == 1
    assert not at.get("plotly_chart") and not at.get("imgs") and "w.grid_variants" not in at.session_state
    assert "Charts and per-image results follow…" in texts(at)
    at.run()  # what the placeholder's timer fragment does in a browser: the whole page, once
    assert len(at.get("plotly_chart")) == 4 and at.multiselect(key="w.grid_variants")
    assert "Charts and per-image results follow…" not in texts(at)
    at.switch_page("pages/ops.py").run()
    at.switch_page("pages/compare.py").run()  # later draws in the session: everything at once
    assert len(at.get("plotly_chart")) == 4 and len(at.table) == 2  # the summary and the confusion matrix


def test_the_verdict_names_a_variant_per_target_under_the_default_floor(result):
    at = compare_page(result)
    assert "Which variant to ship" in [s.value for s in at.subheader]
    body = texts(at)
    for heading in ("Phone or desktop CPU", "Mobile GPU", "Integer-only NPU, DSP or microcontroller"):
        assert heading in body
    assert ":orange[Nothing to ship yet]" in body  # int8 agrees on 22 of 24 images: below the 99 % floor
    assert "the closest, int8, has 91.7% agreement with float32" in body
    assert "#### :green[float16]" in body  # GPU: float16 meets the floor


def test_lowering_the_floor_lets_int8_be_picked_for_integer_hardware(result):
    at = compare_page(result)
    at.number_input(key="w.floor_agreement").set_value(90.0).run()
    assert not at.exception
    body = texts(at)
    assert ":orange[Nothing to ship yet]" not in body and "#### :green[int8]" in body
    assert "Every op is integer; needs" in body and "of RAM (measured)" in body
    at.switch_page("pages/ops.py").run()  # the floor is kept for the session (the report uses it)
    at.switch_page("pages/compare.py").run()
    assert "#### :green[int8]" in texts(at)


def test_the_what_if_banner_names_the_setting_and_only_its_variants(result):
    at = compare_page(result)
    banner = next(w.value for w in at.warning if "What-if settings" in w.value)
    assert "**per-tensor weights** (weight_only)" in banner and "calibration" not in banner


def test_each_image_says_which_variants_disagree_even_when_not_shown(result):
    at = compare_page(result)
    at.multiselect(key="w.grid_variants").set_value(["float32", "float16"]).run()
    images = [text for texts in cells(grid(at), "data-image").values() for text in texts]
    marks = [text.split("\n", 1)[1] for text in images if "≠ float32" in text]
    assert marks == ["≠ float32: int8\nnot shown: int8"] * 2
    assert [cell.split("\n")[0] for cell in cells(grid(at), "data-variant")["float16"]] == \
        ["float16"] * len(images)  # its column, without a mark: it agrees everywhere


def test_the_html_report_shows_the_verdict_under_the_floor_in_force(result):
    from quant_core.results.verdict import Floor
    from ui.html_report import render_report

    strict = render_report(result)
    assert "<h2>Which variant to ship</h2>" in strict and "agreement with float32 ≥ 99%" in strict
    assert '<div class="none">None fits</div>' in strict  # integer-only: int8 is below the floor
    loose = render_report(result, floor=Floor(value=0.9))
    assert '<div class="none">' not in loose and '<div class="ship">int8</div>' in loose
    assert strict.index("Which variant to ship") < strict.index("<h2>Summary</h2>")


def test_the_report_page_uses_the_floor_set_on_compare(result):
    at = compare_page(result)
    at.number_input(key="w.floor_agreement").set_value(90.0).run()
    at.switch_page("pages/report.py").run()
    assert not at.exception
    assert any("agreement with float32 ≥ 90%" in c.value for c in at.caption)

"""Words about a variant come from what was measured on it: its ops, its failures, its non-zero scores.

A variant with layers kept in float is built in the int8 mode but is not integer-only; the
report and the Ops page must say what its ops say, not what its mode's help promises. Failed
rows keep the summary table narrow (their reason is printed beneath it), and the per-image
top classes never rank classes an int8 softmax scored exactly 0.
"""

from __future__ import annotations

import html
import os
import re
import tempfile

import pytest

from conftest import CLASSES, REPO
import html_cells
from outlier import write_outlier
from quant_core import CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core.cache import ArtifactCache
from quant_core.cli import format_table
from quant_core.compare import Workbench
from quant_core.modes import MODE_INFO
from quant_core.results.report import report_dict, variant_description, variants_csv
from quant_core.results.summary import prediction_lines
from ui import charts
from ui.html_report import render_report

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
KEPT = "int8+1float"


@pytest.fixture(scope="module")
def kept_in_float(tmp_path_factory) -> CompareResult:
    """A real comparison of the outlier model with int8 and int8 with its worst layer kept in float."""
    path, images, _ = write_outlier(tmp_path_factory.mktemp("outlier"))
    bench = Workbench.open(path, images, class_names=CLASSES, options=CompareOptions(measure_latency=False),
                           cache=ArtifactCache(tmp_path_factory.mktemp("outlier-cache")))
    worst = bench.layer_report(Recipe(Mode.INT8)).worst(1)[0].tensor
    recipes = (Recipe(Mode.FLOAT32), Recipe(Mode.DYNAMIC_RANGE), Recipe(Mode.INT8),
               Recipe(Mode.INT8, float_layers=(worst,)), Recipe(Mode.INT8_FLOAT_IO))
    result = bench.result(tuple(bench.evaluate(r, time_it=False) for r in recipes))
    assert [v.name for v in result.variants] == ["float32", "dynamic_range", "int8", KEPT, "int8_float_io"]
    assert all(v.ok for v in result.variants)
    assert result.variant("int8").ops.integer_only and not result.variant(KEPT).ops.integer_only  # as measured
    return result


@pytest.fixture(scope="module")
def per_tensor(model_files, image_dir, labels_file, tmp_path_factory) -> CompareResult:
    """The tiny model with per-channel weights off: dynamic range really fails, with a long reason."""
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.FLOAT16), Recipe(Mode.DYNAMIC_RANGE, per_channel=False),
                 Recipe(Mode.INT8, per_channel=False)), measure_latency=False))
    result = run_compare(request, cache=ArtifactCache(tmp_path_factory.mktemp("per-tensor-cache")))
    failed = result.variant("dynamic_range")
    assert not failed.ok and len(failed.error) > 100 and "per-channel" in failed.error
    return result


def report_items(result: CompareResult) -> dict[str, str]:
    """The HTML report's "What the variants are", as {variant: its line}."""
    section = re.search(r"<h2>What the variants are</h2>.*?<ul>(.*?)</ul>", render_report(result), re.S).group(1)
    items = re.findall(r"<li><code>(.*?)</code>(.*?)</li>", section, re.S)
    return {html.unescape(name): html.unescape(re.sub(r"<[^>]+>", "", text)) for name, text in items}


def claims_integer_only(text: str) -> bool:
    """True when the text says the variant is integer-only (and not "not integer-only")."""
    return bool(re.search(r"(?<!not )integer-only(?! (NPU|hardware|accelerator))", text, re.I))


def test_the_report_describes_a_float_layers_variant_from_its_ops_not_from_its_modes_blurb(kept_in_float):
    items = report_items(kept_in_float)
    assert list(items) == [v.name for v in kept_in_float.variants]
    kept = items[KEPT]
    assert not claims_integer_only(kept) and "Full integer" not in kept and "Required by" not in kept
    assert "Not integer-only" in kept and "1 runs in float (CONV_2D)" in kept and "run in int8" in kept
    assert "int8 input and output" in kept  # its interface, as measured
    assert claims_integer_only(items["int8"]) and items["int8"].startswith(" — Full integer int8: Integer-only")
    for v in kept_in_float.variants:  # every line agrees with the table's integer-only column
        assert claims_integer_only(items[v.name]) == v.ops.integer_only, (v.name, items[v.name])
    assert "1 QUANTIZE and 1 DEQUANTIZE" in items["int8_float_io"]  # float edges, integer inside
    assert "hybrid" in items["dynamic_range"]


def test_the_json_report_names_and_describes_each_variant_as_measured(kept_in_float):
    variants = {v["name"]: v for v in report_dict(kept_in_float)["variants"]}
    assert variants["int8"]["title"] == MODE_INFO[Mode.INT8].title
    assert variants[KEPT]["title"] == "int8 with 1 layer kept in float"
    assert variants[KEPT]["integer_only"] is False and not claims_integer_only(variants[KEPT]["description"])
    assert variants[KEPT]["description"] == variant_description(kept_in_float.variant(KEPT))


def test_the_ops_page_heads_a_float_layers_variant_with_what_it_is(kept_in_float):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.result"] = kept_in_float
    at.switch_page("pages/ops.py").run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {re.search(r"\(`(.*?)`\)", e.label).group(1): e for e in at.expander}
    kept, int8 = labels[KEPT], labels["int8"]
    assert kept.label.startswith("int8 with 1 layer kept in float") and "Full integer" not in kept.label
    assert "not integer-only: 1 of 6 compute ops in float" in kept.label
    assert int8.label.startswith("Full integer int8") and int8.label.endswith("— integer-only")
    assert not claims_integer_only(kept.markdown[0].value) and "CONV_2D" in kept.markdown[0].value
    assert claims_integer_only(int8.markdown[0].value)


def test_no_mode_help_quotes_a_figure_measured_on_one_model():
    for mode, info in MODE_INFO.items():
        assert "MobileNet" not in info.help, mode
        assert not re.search(r"\d+(\.\d+)?\s*(x|%|ms|MB|KB)\b", info.help), (mode, info.help)


def test_a_failed_row_keeps_the_tables_narrow_and_its_reason_follows_the_table(per_tensor):
    error = per_tensor.variant("dynamic_range").error
    frame = charts.styled_summary(per_tensor).data
    assert "error" not in frame.columns
    assert max(len(str(cell)) for cell in frame.to_numpy().ravel()) < 20  # no cell carries a sentence
    text = format_table(per_tensor)
    table, beneath = text.split("\n\n")[1:]  # heading lines, the table, then the failures
    assert error not in table and beneath == f"dynamic_range failed: {error}\n"
    page = render_report(per_tensor)
    summary = re.search(r"<h2>Summary</h2>.*?(<table>.*?</table>)(.*?)<h3>", page, re.S)
    assert html.escape(error) not in summary.group(1) and "<th>error</th>" not in summary.group(1)
    assert f"dynamic_range failed: {html.escape(error)}" in summary.group(2)
    assert error in variants_csv(per_tensor)  # the CSV keeps every column, the whole reason too


def test_the_compare_page_shows_the_failure_once_outside_the_table(per_tensor):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.result"] = per_tensor
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.table[0].value
    assert "error" not in table.columns and list(table["status"]) == ["ok", "ok", "failed", "ok"]
    error = per_tensor.variant("dynamic_range").error
    assert [e.value for e in at.error] == [f"dynamic_range failed: {error}"]


def test_top_classes_leave_out_what_int8_scored_exactly_zero(per_tensor):
    int8 = per_tensor.variant("int8")
    zeros = [k for k, preds in enumerate(int8.topk) if any(p.prob == 0 for p in preds)]
    assert zeros  # an int8 softmax rounds small probabilities to exactly 0 (the case to show)
    for k in zeros:
        lines = prediction_lines(int8.topk[k], true_index=per_tensor.images[k].label_index)
        assert lines[-1] == "(others 0)" and not any(line.endswith(("0.000", "0.000 ✓")) for line in lines)
        assert len(lines) == sum(p.prob > 0 for p in int8.topk[k]) + 1
    float16 = per_tensor.variant("float16")  # tiny but not zero: "<0.001", never "0.000"
    small = [(k, p) for k, preds in enumerate(float16.topk) for p in preds if 0 < p.prob < 0.0005]
    for k, p in small:
        assert f"{p.label}: <0.001" in " ".join(prediction_lines(float16.topk[k]))


def test_the_per_image_grid_shows_only_classes_with_a_score(per_tensor):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.result"] = per_tensor
    at.switch_page("pages/compare.py").run()
    at.run()  # the follow-up draw with the per-image grid
    at.multiselect(key="w.grid_variants").set_value(["float32", "int8"]).run()
    assert not at.exception, [e.value for e in at.exception]
    cells = html_cells.cells(html_cells.grid(at), "data-variant")["int8"]  # one per image on the first page
    assert cells and not any(re.search(r": 0\.000\b", cell) for cell in cells)
    assert any("(others 0)" in cell for cell in cells)


@pytest.mark.parametrize("mode", list(Mode)[1:])
def test_a_low_agreement_warning_never_suggests_the_variant_itself(mode):
    """A weight_only variant that changes many predictions was told to 'try weight_only or float16'."""
    from quant_core.compare import _agreement_warning
    from quant_core.recipe import compile_recipes

    recipe = compile_recipes((mode,))[0]
    warning = _agreement_warning(recipe, 0.33)
    assert warning is not None and "67%" in warning
    hint = warning.split(", try ", 1)[1]
    assert mode.value not in [choice.split(" (")[0] for choice in hint.split(" or ")], warning
    assert _agreement_warning(recipe, 0.99) is None


def test_a_true_class_scored_zero_has_no_rank_among_the_mistakes():
    """An int8 softmax lists classes at exactly 0 in its top k: the true class there is no rank, it is not scored."""
    from dataclasses import replace

    from quant_core.results.compare_result import Prediction
    from synthetic_results import comparison

    result = comparison({"float32": 10.0, "int8": 5.0}, labelled=True)
    int8 = result.variant("int8")  # wrong on images 0 and 1 (predicts class k + 1)
    zero = (Prediction(1, "class 1", 1.0), Prediction(0, "class 0", 0.0))  # image 0's true class at exactly 0
    low = (Prediction(2, "class 2", 0.9), Prediction(1, "class 1", 0.1))  # image 1's true class second, scored
    topk = (zero, low, *int8.topk[2:])
    result = replace(result, variants=(result.variants[0], replace(int8, topk=topk)))
    ranks = charts.mistakes_frame(result, "int8")["true class rank"].tolist()
    assert ranks == ["not in top 2", "#2"]

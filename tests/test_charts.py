"""The Compare charts and the HTML report tell the story at a glance, on the real shape of the ImageNet sample.

The results are built by hand from the numbers measured on the bundled ImageNet MobileNetV2 (22 photos,
bench/RESULTS.md benchmark 0): six variants within 0.6 MB of each other and with the same accuracy or
agreement, and int16x8 on reference kernels 26x slower than the typical variant.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import replace

import pytest

from quant_core.env import Environment
from quant_core.models import ModelFormat, ModelInfo, OutputKind
from quant_core.modes import Mode
from quant_core.preprocess import Normalization, Preprocessing
from quant_core.recipe import Recipe
from quant_core.results import CalibrationInfo, CompareResult, ImageRecord, Prediction, Status, VariantResult
from quant_core.runner import Latency, Memory
from quant_core.summary import ACCURACY, COLUMNS, summarize
from ui import charts
from ui.html_report import IMAGES_SHOWN, render_report

IMAGES = 22
# name: (.tflite bytes, right of 22, same top-1 as float32 of 22, median ms, p90 ms, heap bytes, mean |Δp|)
MEASURED = {
    "float32": (14_002_452, 20, 22, 8.800, 9.958, 22_563_040, 0.0),
    "weight_only": (3_820_624, 20, 21, 8.880, 9.996, 36_606_000, 0.0426),
    "dynamic_range": (3_811_024, 20, 21, 17.696, 24.839, 18_593_760, 0.0316),
    "float16": (7_072_752, 20, 22, 8.793, 9.188, 22_596_176, 0.0018),
    "int8": (4_031_336, 19, 21, 10.150, 10.841, 7_485_408, 0.0499),
    "int8_float_io": (4_031_704, 19, 21, 10.269, 12.192, 7_944_784, 0.0499),
    "int16x8": (4_251_024, 20, 21, 263.817, 295.514, 6_109_664, 0.0774),
}


def variant(name: str, images: int) -> VariantResult:
    size, right, agree, median, p90, heap, diff = MEASURED[name]
    top1 = tuple(range(images))
    return VariantResult(
        name=name, mode=Mode(name), recipe=Recipe(Mode(name)), status=Status.OK, size_bytes=size,
        size_ratio=size / MEASURED["float32"][0], input_dtype="float32", output_dtype="float32",
        latency=Latency(median, p90, median, median * 0.95, 50, 3, 1), memory=Memory(size, heap),
        top1_agreement=agree / IMAGES, accuracy=right / IMAGES, mean_abs_diff=diff, top1=top1,
        topk=tuple((Prediction(k, f"class {k}", 0.9),) for k in top1))


def imagenet_result(images: int = IMAGES) -> CompareResult:
    """A labelled comparison shaped like the ImageNet sample's, with `images` images."""
    return CompareResult(
        model=ModelInfo("mobilenet_v2_imagenet", ModelFormat.KERAS, "a" * 64, 14_741_526, (None, 224, 224, 3),
                        "float32", (None, 1000), 1000, 3_538_984, (), None),
        output_kind=OutputKind.PROBABILITIES,
        environment=Environment("3.11.7", "Linux", "x86_64", "AMD EPYC", 2, 1, (("numpy", "2.4.6"),)),
        preprocessing=Preprocessing(224, 224, 3, Normalization.of("imagenet")),
        class_names=tuple(f"class {k}" for k in range(1000)), labels_source="folder names",
        images=tuple(ImageRecord(f"photos/{k:03d}.jpg", f"class {k}", k) for k in range(images)), skipped=(),
        variants=tuple(variant(name, images) for name in MEASURED),
        calibration=CalibrationInfo("your images", images, False), source_accuracy=20 / 22,
        source_top5_accuracy=1.0, request_key="k" * 64, seconds=1.0)


def unlabelled(result: CompareResult) -> CompareResult:
    """Without labels, and every quantized variant at the same agreement (21 of 22): the crowded case."""
    return replace(result, images=tuple(replace(i, label=None, label_index=None) for i in result.images),
                   variants=tuple(replace(v, accuracy=None, top1_agreement=1.0 if v.name == "float32" else 21 / 22)
                                  for v in result.variants))


def warned(result: CompareResult, name: str = "int8_float_io") -> CompareResult:
    return replace(result, variants=tuple(replace(v, warning="changes the top-1 prediction on 40% of images")
                                          if v.name == name else v for v in result.variants))


CASES = {"labelled": imagenet_result(), "unlabelled": unlabelled(imagenet_result()),
         "warned": warned(imagenet_result()), "unlabelled and warned": warned(unlabelled(imagenet_result()))}


# --- the fidelity chart --------------------------------------------------------------------------------------------

def drawn_labels(fig, plot_width: float) -> tuple[list[charts.LabelBox], list[tuple[float, float]]]:
    """The label boxes and marker centres in pixels, read back from the figure as plotly draws them."""
    x_end, y_end = fig.layout.xaxis.range[1], fig.layout.yaxis.range[1]
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b

    def pixel(x: float, y: float) -> tuple[float, float]:
        return x / x_end * plot_width, (1 - y / y_end) * plot_height

    boxes = []
    for a in fig.layout.annotations:  # left-middle of the text box at the arrow's tail, (ax, ay) px from the point
        assert (a.xanchor, a.yanchor, a.showarrow) == ("left", "middle", True)
        px, py = pixel(a.x, a.y)
        x0, cy = px + a.ax, py + a.ay
        boxes.append(charts.LabelBox(a.text, x0, cy - charts.LABEL_HEIGHT / 2, x0 + charts.label_width(a.text),
                                     cy + charts.LABEL_HEIGHT / 2))
    points = fig.data[0]
    return boxes, [pixel(x, y) for x, y in zip(points.x, points.y)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stretch", [1, 1.5, 2, 3])
def test_direct_labels_overlap_neither_each_other_nor_other_markers(case, stretch):
    fig = charts.fidelity_chart(CASES[case])
    boxes, markers = drawn_labels(fig, charts.PLOT_WIDTH * stretch)
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert len(boxes) == len(markers) == 7
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    r = charts.MARKER_RADIUS
    for k, box in enumerate(boxes):
        for j, (mx, my) in enumerate(markers):
            marker = charts.LabelBox("marker", mx - r, my - r, mx + r, my + r)
            assert j == k or not box.overlaps(marker), (box.name, j)
        assert box.y0 >= -charts.LABEL_HEIGHT and box.y1 <= plot_height


def test_crowded_labels_stay_near_their_points():
    boxes, markers = drawn_labels(charts.fidelity_chart(CASES["unlabelled"]), charts.PLOT_WIDTH)
    for box, (_, my) in zip(boxes, markers):
        assert abs((box.y0 + box.y1) / 2 - my) <= 4 * (charts.LABEL_HEIGHT + 2), box


def test_place_labels_stacks_labels_of_points_in_one_spot():
    points = [(f"v{k}", 100.0, 150.0) for k in range(5)]
    boxes = charts.place_labels(points, [p[0] for p in points], plot_height=300)
    assert sorted(round((b.y0 + b.y1) / 2) for b in boxes) == [110, 130, 150, 170, 190]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


@pytest.mark.parametrize("case", CASES)
def test_fidelity_axes_start_at_zero_and_y_is_in_percent(case):
    fig = charts.fidelity_chart(CASES[case])
    assert fig.layout.xaxis.range[0] == 0 and fig.layout.xaxis.range[1] > 14_002_452 / 1024**2
    assert fig.layout.xaxis.title.text == "file size (MB)"
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= 1.0
    assert fig.layout.yaxis.tickformat == ".0%" and fig.layout.yaxis.type == "linear"
    assert fig.layout.yaxis.title.text == ("agreement" if "unlabelled" in case else "accuracy")


def test_float32_is_a_dashed_reference_line_labelled_with_its_value():
    for result, value, text in [(CASES["labelled"], 20 / 22, "float32: 90.9%"),
                                (CASES["unlabelled"], 1.0, "float32: 100.0%")]:
        fig = charts.fidelity_chart(result)
        (line,) = fig.layout.shapes
        assert line.line.dash == "dash" and line.y0 == line.y1 == pytest.approx(value)
        assert line.x0 == 0 and line.x1 == fig.layout.xaxis.range[1]
        assert text in [a.text for a in fig.layout.annotations]


def test_a_warned_variant_is_hollow_grey_and_says_so():
    fig = charts.fidelity_chart(CASES["warned"])
    points = fig.data[0]
    k = [a.text for a in fig.layout.annotations].index("int8_float_io (warning)")
    assert points.marker.symbol[k] == "circle-open" and points.marker.color[k] == "#9E9E9E"
    assert {s for j, s in enumerate(points.marker.symbol) if j != k} == {"circle"}
    assert "warning: changes the top-1 prediction on 40% of images" in points.hovertext[k]


def test_hover_says_the_numbers_in_words_as_the_table_prints_them():
    fig = charts.fidelity_chart(CASES["labelled"])
    hover = dict(zip([a.text.split(":")[0] for a in fig.layout.annotations], fig.data[0].hovertext))
    assert "3,936.9 KB file, 3.47x smaller than float32" in hover["int8"]
    assert "right on 19 of 22 images (86.4% accuracy)" in hover["int8"]
    assert "same top-1 class as float32 on 21 of 22 images (95.5% agreement)" in hover["int8"]
    assert "mean |Δp| 0.0499" in hover["int8"]
    assert "agreement" not in hover["float32"]  # float32 agrees with itself: not worth a line
    assert "1.00x" not in hover["float32"]
    words = re.sub(r"</?i>", "", hover["int8"]).replace("<br>", " ")
    assert f"accuracy: {ACCURACY.explain}" in words  # the column's own explanation


# --- latency, size, memory -----------------------------------------------------------------------------------------

def test_latency_bars_are_linear_with_p90_whiskers_and_median_labels():
    result = replace(CASES["labelled"], variants=tuple(v for v in CASES["labelled"].variants if v.name != "int16x8"))
    fig = charts.latency_chart(result)
    bars = fig.data[0]
    vs = sorted(result.variants, key=lambda v: v.latency.median_ms)
    assert fig.layout.xaxis.type == "linear" and fig.layout.xaxis.range[0] == 0
    assert list(bars.y) == [v.name for v in vs] and bars.orientation == "h"
    assert list(bars.x) == [v.latency.median_ms for v in vs]
    assert list(bars.error_x.array) == pytest.approx([v.latency.p90_ms - v.latency.median_ms for v in vs])
    assert set(bars.error_x.arrayminus) == {0}
    assert list(bars.text) == ["8.8 ms", "8.8 ms", "8.9 ms", "10.2 ms", "10.3 ms", "17.7 ms"]
    assert fig.layout.xaxis.range[1] >= max(v.latency.p90_ms for v in vs)
    assert "cut" not in fig.layout.title.text


def test_a_far_slower_variant_gets_a_cut_bar_labelled_with_its_real_median():
    fig = charts.latency_chart(CASES["labelled"])
    bars, cut = fig.data
    assert list(bars.y) + list(cut.y) == [n for n, m in sorted(MEASURED.items(), key=lambda item: item[1][3])]
    assert list(cut.y) == ["int16x8"] and list(cut.text) == ["264 ms →"]
    x_end = fig.layout.xaxis.range[1]
    assert fig.layout.xaxis.type == "linear" and list(cut.x) == [x_end] and x_end < 263.817
    assert x_end >= 24.839 and x_end >= 3 * 17.696  # every other whisker fits, with room to see the cut
    assert cut.error_x.array is None and cut.marker.pattern.shape == "/"  # no whisker: hatched
    assert list(bars.error_x.array) == pytest.approx([MEASURED[n][4] - MEASURED[n][3] for n in bars.y])
    assert fig.layout.barmode == "overlay"  # one bar per variant, not grouped beside an empty one
    assert "int16x8's bar is cut at the edge: 264 ms, 26x the typical variant" in fig.layout.title.text


@pytest.mark.parametrize("ms,text", [(263.817, "264 ms"), (10.149, "10.1 ms"), (0.142, "0.14 ms"),
                                     (0.065, "0.065 ms"), (1234.5, "1,234 ms")])
def test_latency_labels_keep_three_significant_digits_or_fewer(ms, text):
    assert charts.ms_text(ms) == text


def test_size_and_memory_bars_start_at_zero_with_plain_labels():
    size = charts.size_chart(CASES["labelled"])
    memory = charts.memory_chart(CASES["labelled"])
    for fig in (size, memory):
        assert fig.layout.xaxis.range[0] == 0 and fig.layout.xaxis.type == "linear"
        assert fig.layout.xaxis.range[1] >= max(fig.data[0].x)
    labels = dict(zip(size.data[0].y, size.data[0].text))
    assert labels["float32"] == "13.4 MB" and labels["int8"] == "3.8 MB · 3.47x smaller"
    labels = dict(zip(memory.data[0].y, memory.data[0].text))
    assert labels["float32"] == "21.5 MB" and labels["weight_only"] == "34.9 MB · 1.6x float32's"
    assert labels["int8"] == "7.1 MB · 3.0x less than float32"
    assert "35,748 KB heap while running" in dict(zip(memory.data[0].y, memory.data[0].hovertext))["weight_only"]


def test_memory_chart_says_when_memory_was_not_measured():
    result = replace(CASES["labelled"], variants=tuple(replace(v, memory=None) for v in CASES["labelled"].variants))
    fig = charts.memory_chart(result)
    assert not fig.data and "not measured" in fig.layout.annotations[0].text


# --- explanations and the HTML report ------------------------------------------------------------------------------

def test_every_summary_column_explains_itself_in_one_line():
    for column in COLUMNS:
        assert len(column.explain) > 20 and "\n" not in column.explain, column.key
    help_ = charts.summary_column_help(CASES["labelled"])
    assert list(help_) == [c.title for c in summarize(CASES["labelled"]).columns]
    assert help_["agreement"] == "share of images where this variant's top-1 class is the same as float32's"


def test_the_report_lists_what_every_column_means_under_its_table():
    result = CASES["labelled"]
    text = render_report(result)
    glossary = re.search(r"</table>.*?<h3>What the columns mean</h3><ul class=\"glossary\">(.*?)</ul>", text, re.S)
    assert glossary is not None
    items = re.findall(r"<li><b>(.*?)</b>: (.*?)</li>", glossary.group(1))
    assert [(html.unescape(t), html.unescape(e)) for t, e in items] == list(
        charts.summary_column_help(result).items())
    assert text.index("<!-- verdict: start --><h2>Which variant to ship</h2>") < text.index("<h2>Summary</h2>")


def summary_cells(text: str) -> dict[str, dict[str, str]]:
    table = re.search(r"<h2>Summary</h2>.*?(<table>.*?</table>)", text, re.S).group(1)
    header, *rows = [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)]
                     for tr in re.findall(r"<tr>(.*?)</tr>", table)]
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_the_report_prints_every_number_as_the_app_does():
    result = replace(CASES["labelled"], variants=tuple(replace(v, mean_abs_diff=0.00049) if v.name == "float16"
                                                       else v for v in CASES["labelled"].variants))
    cells = summary_cells(render_report(result))
    assert cells["float16"]["mean |Δp|"] == "0.0005"
    assert cells["weight_only"]["size (KB)"] == "3,731.1" and cells["int8"]["x smaller"] == "3.47x"
    assert cells["int8"]["accuracy"] == "86.4%" and cells["weight_only"]["memory (KB)"] == "35,748"
    table = summarize(result)
    assert cells == {r.name: {c.title: table.text(r, c) for c in table.columns} for r in table.rows}


def test_the_report_shows_all_images_or_says_how_many_it_left_out():
    small = render_report(CASES["labelled"])
    assert "images shown" not in small and small.count('class="img"><tr><th>image</th>') == 1
    assert all(f"{k:03d}.jpg" in small for k in range(IMAGES))
    many = imagenet_result(images=130)
    text = render_report(many)
    assert f"First {IMAGES_SHOWN} of 130 images shown" in text and "the JSON report has every image" in text
    rows = re.search(r'<table class="img">(.*?)</table>', text, re.S).group(1).count("<tr>")
    assert rows == IMAGES_SHOWN + 1  # and the header


def test_the_report_draws_the_new_charts():
    text = render_report(CASES["labelled"])
    for title in ("File size vs accuracy", "Latency per image", "File size (MB)", "Memory while running"):
        assert title in text

"""The Compare charts and the HTML report tell the story at a glance, on the real shape of the ImageNet sample.

The results are built by hand from the numbers measured on the bundled ImageNet MobileNetV2 (22 photos,
bench/RESULTS.md benchmark 0): six variants within 0.6 MB of each other and with the same accuracy or
agreement, and int16x8 on reference kernels 26x slower than the typical variant.
"""

from __future__ import annotations

import html
import itertools
import math
import random
import re
from dataclasses import replace

import pytest

from quant_core.env import Environment
from quant_core.inputs.models import ModelFormat, ModelInfo, OutputKind
from quant_core.inputs.preprocess import Normalization, Preprocessing
from quant_core.modes import Mode
from quant_core.recipe import Recipe
from quant_core.results.compare_result import (CalibrationInfo, CompareResult, ImageRecord, Prediction, Status,
                                               VariantResult)
from quant_core.results.summary import ACCURACY, COLUMNS, summarize
from quant_core.runner import Latency, Memory
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


# --- the fidelity chart ---------------------------------------------------------------------------------------------

MB = 1024 * 1024
# Scatter layouts as the chart meets them: name -> (.tflite bytes, accuracy or agreement)
LAYOUTS: dict[str, dict[str, tuple[float, float]]] = {
    "the ImageNet sample": {"float32": (14.0 * MB, 1.0), "float16": (7.0 * MB, 1.0), "dynamic_range": (3.9 * MB, 0.95),
                            "weight_only": (3.9 * MB, 1.0), "int8": (3.9 * MB, 0.80),
                            "int8_float_io": (4.0 * MB, 0.86), "int16x8": (4.3 * MB, 0.90)},
    "identical points": {"float32": (4.2 * MB, 1.0), "float16": (2.1 * MB, 1.0), "dynamic_range": (1.1 * MB, 0.95),
                         "weight_only": (1.1 * MB, 0.95), "int8": (1.2 * MB, 0.9), "int8_float_io": (1.2 * MB, 0.9),
                         "int16x8": (1.3 * MB, 0.95)},
    "all at 100%": {"float32": (9.1 * MB, 1.0), "float16": (4.6 * MB, 1.0), "dynamic_range": (2.4 * MB, 1.0),
                    "weight_only": (2.4 * MB, 1.0), "int8": (2.5 * MB, 1.0), "int8_float_io": (2.5 * MB, 1.0),
                    "int16x8": (2.6 * MB, 1.0)},
    "a tiny model in KB": {"float32": (48_000, 1.0), "float16": (26_500, 1.0), "dynamic_range": (15_200, 0.9),
                           "weight_only": (15_200, 1.0), "int8": (14_100, 0.75), "int8_float_io": (14_300, 0.8),
                           "int16x8": (16_000, 0.95)},
    "two variants": {"float32": (14.0 * MB, 1.0), "int8": (3.9 * MB, 0.8)},
    "two identical variants": {"float32": (3.0 * MB, 1.0), "float16": (3.0 * MB, 1.0)},
    "nine with float layers": {"float32": (14.0 * MB, 1.0), "float16": (7.0 * MB, 1.0),
                               "dynamic_range": (3.9 * MB, 0.95), "weight_only": (3.9 * MB, 1.0),
                               "int8": (3.9 * MB, 0.80), "int8_float_io": (4.0 * MB, 0.86),
                               "int16x8": (4.3 * MB, 0.90), "int8+1float": (3.95 * MB, 0.86),
                               "int8+3float": (4.1 * MB, 0.95)},
    "nine all at 100%": {"float32": (14.0 * MB, 1.0), "float16": (7.0 * MB, 1.0), "dynamic_range": (3.9 * MB, 1.0),
                         "weight_only": (3.9 * MB, 1.0), "int8": (3.9 * MB, 1.0), "int8_float_io": (4.0 * MB, 1.0),
                         "int16x8": (4.3 * MB, 1.0), "int8+1float": (3.95 * MB, 1.0),
                         "int8+3float": (4.1 * MB, 1.0)},
}


def scatter_result(points: dict[str, tuple[float, float]], *, labelled: bool = False) -> CompareResult:
    """The ImageNet result with its variants moved to `points` (accuracy when labelled, else agreement)."""
    base = imagenet_result()
    proto = base.variants[0]
    size = points["float32"][0]
    vs = tuple(replace(proto, name=name, size_bytes=int(bytes_), size_ratio=bytes_ / size, top1_agreement=fidelity,
                       accuracy=fidelity if labelled else None) for name, (bytes_, fidelity) in points.items())
    result = replace(base, variants=vs)
    return result if labelled else replace(result, images=tuple(replace(i, label=None, label_index=None)
                                                                   for i in result.images))


def random_layout(seed: int) -> dict[str, tuple[float, float]]:
    """A plausible layout: float32, float16 half its size, the rest near a quarter, often tied, mostly >= 75%."""
    rng = random.Random(seed)
    size = rng.choice([40_000, 900_000, 4.2 * MB, 14 * MB, 90 * MB])
    names = ["dynamic_range", "weight_only", "int8", "int8_float_io", "int16x8", "int8+1float", "int8+3float",
             "int16x8+2float"]
    layout = {"float32": (size, 1.0), "float16": (size / 2, rng.choice([1.0, 1.0, 21 / 22]))}
    sizes = [size * rng.uniform(0.26, 0.31) for _ in range(2)]  # variants come in size clusters
    scores = [1.0, 21 / 22, 20 / 22, 19 / 22, 18 / 22, 0.75, 0.5]
    for name in rng.sample(names, rng.randint(0, len(names) - 1)):
        layout[name] = (rng.choice(sizes) * rng.choice([1.0, 1.0, 1.01, 1.05]), rng.choice(scores))
    return layout


Pixel = tuple[float, float]


def drawn_labels(fig, plot_width: float) -> tuple[list[charts.LabelBox], list[tuple[Pixel, Pixel]], list[Pixel]]:
    """The label boxes, leader lines (point, far end) and marker centres in pixels, read from the figure."""
    x_end, y_end = fig.layout.xaxis.range[1], fig.layout.yaxis.range[1]
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b

    def pixel(x: float, y: float) -> Pixel:
        return x / x_end * plot_width, (1 - y / y_end) * plot_height

    boxes, leaders = [], []
    for a in fig.layout.annotations:  # the text box hangs off the arrow's tail, its anchor side against it
        assert a.yanchor == "middle" and a.showarrow and a.xanchor in ("left", "right")
        head = pixel(a.x, a.y)
        tail = pixel(a.ax, a.ay) if a.axref == "x" and a.ayref == "y" else (head[0] + a.ax, head[1] + a.ay)
        width = charts.label_width(a.text)
        x0 = tail[0] if a.xanchor == "left" else tail[0] - width
        boxes.append(charts.LabelBox(a.text, x0, tail[1] - charts.LABEL_HEIGHT / 2, x0 + width,
                                     tail[1] + charts.LABEL_HEIGHT / 2))
        leaders.append((head, tail))
    points = fig.data[0]
    return boxes, leaders, [pixel(x, y) for x, y in zip(points.x, points.y)]


def check_labels(fig, stretch: float, *, lines_clear_markers: bool = True) -> None:
    """Every label belongs visibly to its own point, on a plot `stretch` times the nominal width.

    Each label's leader line starts at its own marker; the label's end of it is nearer its own marker than any
    other (in plot fractions), or the line crosses no other leader line. No label overlaps another label or a
    marker, and no leader line runs through another label, nor (`lines_clear_markers`) over another marker
    (aside from markers that overlap its own even on the widest plot laid out for: they are one blob).
    """
    boxes, leaders, markers = drawn_labels(fig, charts.PLOT_WIDTH * stretch)
    widest = drawn_labels(fig, charts.PLOT_WIDTH * charts.MAX_STRETCH)[2]
    plot_width = charts.PLOT_WIDTH * stretch
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    r = charts.MARKER_RADIUS
    assert len(boxes) == len(markers)
    for k, (box, (head, tail)) in enumerate(zip(boxes, leaders)):
        assert head == pytest.approx(markers[k]), box.name
        nearest = min(range(len(markers)), key=lambda j: (math.dist(
            (tail[0] / plot_width, tail[1] / plot_height), (markers[j][0] / plot_width, markers[j][1] / plot_height)),
            j != k))
        uncrossed = not any(charts.crosses(head, tail, *other) for j, other in enumerate(leaders) if j != k)
        assert nearest == k or uncrossed, f"{box.name}'s label is nearer {boxes[nearest].name} and its line crosses"
        for j, other in enumerate(boxes):
            assert j == k or not (box.overlaps(other) or charts.cuts(head, tail, other)), (box.name, other.name)
        for j, (mx, my) in enumerate(markers):
            if j != k:
                assert not box.overlaps(charts.LabelBox("marker", mx - r, my - r, mx + r, my + r)), (box.name, j)
                blob = math.dist(widest[j], widest[k]) < 2 * r or math.dist((mx, my), head) < 2 * r
                assert blob or not lines_clear_markers or segment_distance((mx, my), head, tail) > r, (box.name, j)
        assert box.y0 >= -charts.LABEL_HEIGHT and box.y1 <= plot_height
        assert box.x0 >= -0.5 and box.x1 <= plot_width + 0.5


def segment_distance(p, a, b) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / ((dx * dx + dy * dy) or 1.0)))
    return math.dist(p, (a[0] + t * dx, a[1] + t * dy))


STRETCHES = [1, 1.5, charts.MAX_STRETCH, 3]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stretch", STRETCHES)
def test_each_label_belongs_to_its_own_point_on_the_imagenet_results(case, stretch):
    check_labels(charts.fidelity_chart(CASES[case]), stretch)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("labelled", [False, True])
@pytest.mark.parametrize("warning", [False, True])
def test_each_label_belongs_to_its_own_point_on_uploaded_model_layouts(layout, labelled, warning):
    result = scatter_result(LAYOUTS[layout], labelled=labelled)
    fig = charts.fidelity_chart(warned(result, "int8") if warning else result)
    assert len(fig.layout.annotations) == len(LAYOUTS[layout])
    for stretch in STRETCHES:
        check_labels(fig, stretch)


def test_each_label_belongs_to_its_own_point_on_many_random_layouts():
    """Denser blobs than real results make (three float-layer variants among four others within 0.1 MB): a blob too
    tight for any line to leave it clear of the other markers may have lines over them."""
    for seed in range(60):
        fig = charts.fidelity_chart(scatter_result(random_layout(seed)))
        for stretch in STRETCHES:
            try:
                check_labels(fig, stretch, lines_clear_markers=False)
            except AssertionError as e:
                raise AssertionError(f"layout {seed} ({random_layout(seed)}), stretch {stretch}: {e}") from e


def test_the_int8_label_of_the_imagenet_sample_is_beside_int8():
    """The issue's layout: int8 at 80 % with its label on the 100 % line beside float16."""
    fig = charts.fidelity_chart(scatter_result(LAYOUTS["the ImageNet sample"]))
    boxes, _, markers = drawn_labels(fig, charts.PLOT_WIDTH)
    k = [b.name for b in boxes].index("int8")
    assert abs((boxes[k].y0 + boxes[k].y1) / 2 - markers[k][1]) < charts.LABEL_HEIGHT


def test_crowded_labels_stay_near_their_points():
    boxes, _, markers = drawn_labels(charts.fidelity_chart(CASES["unlabelled"]), charts.PLOT_WIDTH)
    for box, (_, my) in zip(boxes, markers):
        assert abs((box.y0 + box.y1) / 2 - my) <= 4 * (charts.LABEL_HEIGHT + 2), box


def test_place_labels_fans_out_the_labels_of_points_in_one_spot():
    points = [(f"v{k}", 100.0, 150.0) for k in range(5)]
    labels = charts.place_labels(points, [p[0] for p in points], plot_height=300)
    assert {(b.box.y0 + b.box.y1) / 2 for b in labels} == {130, 150, 170}  # the own row, and one up or down
    assert {b.right for b in labels} == {True, False}  # the short labels fit either side
    assert not any(a.box.overlaps(b.box) for a, b in itertools.combinations(labels, 2))
    assert not any(charts.crosses(a.point, a.tail, b.point, b.tail) for a, b in itertools.combinations(labels, 2))


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

def latency_traces(fig):
    """The median bars, the cut bars (or None) and the value labels (or None) of a latency chart."""
    bars = [t for t in fig.data if t.type == "bar"]
    labels = [t for t in fig.data if t.type == "scatter"]
    return bars[0], (bars[1] if len(bars) > 1 else None), (labels[0] if labels else None)


def test_latency_bars_are_linear_with_p90_whiskers_and_median_labels():
    result = replace(CASES["labelled"], variants=tuple(v for v in CASES["labelled"].variants if v.name != "int16x8"))
    fig = charts.latency_chart(result)
    bars, cut, labels = latency_traces(fig)
    vs = sorted(result.variants, key=lambda v: v.latency.median_ms)
    assert fig.layout.xaxis.type == "linear" and fig.layout.xaxis.range[0] == 0 and cut is None
    assert list(bars.y) == [v.name for v in vs] and bars.orientation == "h"
    assert list(bars.x) == [v.latency.median_ms for v in vs]
    assert list(bars.error_x.array) == pytest.approx([v.latency.p90_ms - v.latency.median_ms for v in vs])
    assert set(bars.error_x.arrayminus) == {0}
    assert list(labels.y) == list(bars.y)
    assert list(labels.text) == ["8.8 ms", "8.8 ms", "8.9 ms", "10.2 ms", "10.3 ms", "17.7 ms"]
    assert fig.layout.xaxis.range[1] >= max(v.latency.p90_ms for v in vs)
    assert "cut" not in fig.layout.title.text


@pytest.mark.parametrize("slowest", ["cut at the edge", "drawn whole"])
@pytest.mark.parametrize("spread", [1, 3])  # p90 as measured, and three times as far from the median
def test_latency_labels_sit_past_their_whiskers(slowest, spread):
    """A value label drawn over the bar's end is struck through by the whisker that starts there."""
    result = CASES["labelled"] if slowest == "cut at the edge" else replace(
        CASES["labelled"], variants=tuple(v for v in CASES["labelled"].variants if v.name != "int16x8"))
    result = replace(result, variants=tuple(replace(v, latency=replace(
        v.latency, p90_ms=v.latency.median_ms + spread * (v.latency.p90_ms - v.latency.median_ms)))
        for v in result.variants))
    fig = charts.latency_chart(result)
    bars, _, labels = latency_traces(fig)
    assert bars.text is None  # nothing written where the whisker starts
    whisker = {name: (median, median + plus) for name, median, plus in zip(bars.y, bars.x, bars.error_x.array)}
    assert labels is not None and set(labels.y) == set(whisker)
    assert labels.textposition == "middle right" and labels.marker.size > 0  # text starts a marker's radius right
    x_end = fig.layout.xaxis.range[1]
    for name, x, text in zip(labels.y, labels.x, labels.text):
        start, end = whisker[name]
        assert x >= end > start, name  # the label's left edge is past the whisker's right end
        assert (x / x_end * charts.BAR_PLOT_WIDTH + labels.marker.size / 2 + charts.label_width(text)
                <= charts.BAR_PLOT_WIDTH), name  # and it fits on the narrowest plot


def test_a_far_slower_variant_gets_a_cut_bar_labelled_with_its_real_median():
    fig = charts.latency_chart(CASES["labelled"])
    bars, cut, _ = latency_traces(fig)
    assert list(bars.y) + list(cut.y) == [n for n, m in sorted(MEASURED.items(), key=lambda item: item[1][3])]
    assert list(cut.y) == ["int16x8"] and list(cut.text) == ["264 ms →"] and cut.textposition == "inside"
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

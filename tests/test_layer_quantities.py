"""The Layers page's numbers add up: along the path the output's error came through, the input's rounding plus every
layer's `added` is the output's error, and the sentence, the table and the chart show the same numbers.

Models: the outlier model (tests/outlier.py: one broken layer), the bundled digits CNN (pooling and a softmax even
noise out: negative adds) and a tiny net with two branches that join (a layer off the output's path).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from conftest import CLASSES, REPO, SIZE, colour_images
from outlier import write_outlier
from quant_core import CompareOptions, Mode, Recipe
from quant_core.cache import ArtifactCache
from quant_core.compare import Workbench
from quant_core.inputs.images import ImageItem, ImageSet, load_images
from quant_core.layers import LayerReport, percent

NO_LATENCY = CompareOptions(measure_latency=False)


@pytest.fixture(scope="module")
def outlier(tmp_path_factory) -> Workbench:
    path, images, _ = write_outlier(tmp_path_factory.mktemp("quantities-outlier"))
    return Workbench.open(path, images, class_names=CLASSES, options=NO_LATENCY,
                          cache=ArtifactCache(tmp_path_factory.mktemp("quantities-outlier-cache")))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Workbench:
    images = load_images([REPO / "sample_models" / "digits_images"])
    return Workbench.open(REPO / "sample_models" / "digits_cnn.keras", images, options=NO_LATENCY,
                          cache=ArtifactCache(tmp_path_factory.mktemp("quantities-digits-cache")))


@pytest.fixture(scope="module")
def branches(tmp_path_factory) -> Workbench:
    """Two convolutions read the stem and are added: one of them is off the path of the output's error."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(
        keras.layers.Rescaling(1 / 255.0)(inputs))
    left = keras.layers.Conv2D(8, 3, padding="same", name="left")(stem)
    right = keras.layers.Conv2D(8, 1, padding="same", name="right")(stem)
    joined = keras.layers.Add(name="join")([left, right])
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.ReLU(name="relu")(joined))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(pooled))
    root = tmp_path_factory.mktemp("quantities-branches")
    model.save(root / "branches.keras")
    pixels, _ = colour_images(24, seed=5)
    images = ImageSet(tuple(ImageItem(name=f"{k:02d}.png", pixels=p) for k, p in enumerate(pixels)))
    return Workbench.open(root / "branches.keras", images, options=NO_LATENCY, cache=ArtifactCache(root / "cache"))


CASES = [("outlier", Mode.INT8), ("outlier", Mode.INT8_FLOAT_IO), ("digits", Mode.INT8), ("branches", Mode.INT8)]


def report_of(request, name: str, mode: Mode) -> LayerReport:
    return request.getfixturevalue(name).layer_report(Recipe(mode))


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_the_output_error_is_the_inputs_plus_what_the_layers_on_its_path_add(request, name, mode):
    report = report_of(request, name, mode)
    path, ledger = report.path(), report.ledger()
    assert path[-1] is report.layers[-1] and path[0].source is None
    assert all(later.source == earlier.position for earlier, later in itertools.pairwise(path))
    for layer in path[1:]:  # each step of the line is its bar
        before = report.layers[layer.source].relative_error
        assert layer.relative_error == pytest.approx(before + layer.added, abs=1e-12)
    assert ledger.start + ledger.added - ledger.removed == pytest.approx(report.output_error, abs=1e-12)
    assert ledger.added >= 0 and ledger.removed >= 0 and ledger.path == len(path) <= ledger.layers


def test_pooling_and_the_softmax_even_noise_out_so_the_line_falls(digits):
    report = digits.layer_report(Recipe(Mode.INT8))
    evened = [layer.op for layer in report.layers if layer.added < 0]
    assert "SOFTMAX" in evened and "MAX_POOL_2D" in evened
    assert report.ledger().removed > report.output_error  # more is evened out than reaches the output
    peak = max(layer.relative_error for layer in report.layers)
    assert peak > 2 * report.output_error  # the accumulated error peaks before the output, and the bars say why


def test_where_branches_join_the_path_follows_the_worse_one(branches):
    report = branches.layer_report(Recipe(Mode.INT8))
    names = {layer.tensor.split(";")[0].split("/")[1].removesuffix("_1"): layer for layer in report.layers
             if "/" in layer.tensor}
    on_path = {layer.position for layer in report.path()}
    join = next(layer for layer in report.layers if layer.op == "ADD")
    assert join.position in on_path and join.source in (names["left"].position, names["right"].position)
    off = ({names["left"].position, names["right"].position} - {join.source}).pop()
    assert off not in on_path and report.ledger().path < report.ledger().layers
    from ui import layers as page

    assert f"the {report.ledger().path} of {report.ledger().layers} layers it came through" in page.summary(report)


SENTENCE = re.compile(r"off by (?P<output>[\d.]+)% of its signal")
LISTED = re.compile(r"\((?P<op>[A-Z_0-9]+)\) (?P<adds>[+-][\d.]+)%")
TOGETHER = re.compile(r"([\d.]+)% together")
EQUATION = re.compile(r"(?:(?P<start>[\d.]+)% in the input \(its rounding\) \+ )?(?P<added>[\d.]+)% added by layers"
                      r"(?: − (?P<removed>[\d.]+)% evened out by others[^=]*)? = (?P<output>[\d.]+)%\.")


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_the_sentence_shows_the_tables_numbers_and_its_sums_add_up(request, name, mode):
    from ui import layers as page

    report = report_of(request, name, mode)
    text, table = page.summary(report), page.worst_table(report, 10)
    output = SENTENCE.search(text).group("output")
    assert f"{output}%" == percent(report.output_error)
    listed = LISTED.findall(text)
    assert 1 <= len(listed) <= 3
    assert [(op, f"{adds}%") for op, adds in listed] == list(zip(table["op"], table["adds"]))[:len(listed)]
    shown = [float(adds) for _, adds in listed]
    if len(listed) > 1:  # what the sentence says the listed layers add together is the sum of their shown values
        assert float(TOGETHER.search(text).group(1)) == pytest.approx(sum(shown), abs=1e-9)
    equation = EQUATION.search(text)
    assert equation, text
    start, added, removed = (float(equation.group(k) or 0) for k in ("start", "added", "removed"))
    assert equation.group("output") == output  # the equation ends where the sentence starts...
    assert round(start + added - removed, 1) == float(output)  # ...and its shown terms add up to it
    if report.ledger().path == len(report.layers):  # one chain: the listed layers are part of what layers add
        assert added >= sum(shown) - 1e-9
    assert abs(added - 100 * report.ledger().added) <= 0.05 * len(report.path()) + 0.1  # shown terms, each rounded
    assert abs(removed - 100 * report.ledger().removed) <= 0.05 * len(report.path()) + 0.2


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_the_chart_shows_every_add_and_the_line_the_bars_sum_to(request, name, mode):
    import json

    from ui import charts

    report = report_of(request, name, mode)
    figure = json.loads(charts.layer_error_chart(report, set()).to_json())
    bars, line = figure["data"][0], figure["data"][1]
    assert np.allclose(bars["y"], [100 * layer.added for layer in report.layers])  # negative ones too
    assert np.allclose(line["y"], [100 * layer.relative_error for layer in report.layers])
    start = report.ledger().start * 100
    for layer in report.path():  # along the path, the line is the running sum of the bars
        before = start if layer.source is None else line["y"][layer.source]
        assert line["y"][layer.position] == pytest.approx(before + bars["y"][layer.position], abs=1e-9)
    rows = {row["#"]: row for row in _rows(report)}
    for layer, hover in zip(report.layers, bars["hovertext"]):  # the hover shows the table's numbers
        assert f"adds {percent(layer.added, signed=True)}, accumulated {percent(layer.relative_error)}" in hover
        if layer.position in rows:
            assert rows[layer.position]["adds"] in hover and rows[layer.position]["accumulated"] in hover


def _rows(report: LayerReport) -> list[dict]:
    from ui import layers as page

    return page.worst_table(report, len(report.layers)).to_dict("records")

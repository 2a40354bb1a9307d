"""Nested calibration sets: a larger calibration count feeds only the extra images.

The calibration samples for a count are the leading rows of those for any larger count,
and the calibration memo extends what it fed with only the extra rows. The models built
that way must be byte-identical to calibrating from scratch on the whole set.
"""

from __future__ import annotations

import hashlib
import math
from itertools import pairwise

import numpy as np
import pytest

from conftest import SIZE
from quant_core.builders import Built, CalibratedModels, build_variant
from quant_core.calibration import NestedStates, spread_order
from quant_core.compare import Workbench
from quant_core.inputs.images import load_images
from quant_core.modes import Backend, Mode
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.request import CompareOptions

SMALL, LARGE = 8, 20


@pytest.mark.parametrize("available", [1, 2, 3, 7, 22, 24, 100])
def test_spread_order_is_nested_and_every_prefix_spans_the_set(available):
    order = spread_order(available)
    assert sorted(order) == list(range(available)) and order == spread_order(available)
    if available >= 2:
        assert order[:2] == [0, available - 1]
    for k in range(2, available + 1):
        chosen = sorted(order[:k])
        widest = max(b - a for a, b in pairwise(chosen))
        assert widest <= 2 * math.ceil((available - 1) / (k - 1))  # at most twice the best possible gap


def test_spread_order_puts_the_middle_third():
    assert spread_order(24)[:3] == [0, 23, 12]  # the old even spread of 3 images, as a set
    assert spread_order(5) == [0, 4, 2, 1, 3]


def _tiny_classifier():
    """Conv2D + BN + ReLU + global average pool + softmax dense on 16x16x3, untrained but deterministic."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="nested_calibration")


@pytest.fixture(scope="module")
def bench(image_dir, tmp_path_factory):
    """A workbench on the tiny classifier and the 24 test images, through quant_core's normal path."""
    from quant_core.cache import ArtifactCache

    root = tmp_path_factory.mktemp("nested")
    path = root / "tiny.keras"
    _tiny_classifier().save(path)
    return Workbench.open(path, load_images([image_dir]), options=CompareOptions(measure_latency=False),
                          cache=ArtifactCache(root / "cache"))


def _recipe(mode: Mode, count: int, backend: Backend = Backend.TF_CONVERTER) -> Recipe:
    return Recipe(mode, backend=backend, calibration_count=count).resolve(source_is_tflite=False)


def _build(bench: Workbench, recipe: Recipe, memo: CalibratedModels, data: np.ndarray | None = None) -> Built:
    data = bench.calibration_data(recipe) if data is None else data
    return build_variant(bench.source, recipe, data, hashlib.sha256(data.tobytes()).hexdigest(), memo)


@pytest.fixture()
def tf_rows_fed(monkeypatch):
    """Counts the samples fed through the converter's calibrator (the float model's calibration pass)."""
    from tensorflow.lite.python.optimize import calibrator

    fed = {"rows": 0}
    feed = calibrator.Calibrator._feed_tensors

    def counting(self, dataset_gen, resize_input):
        fed["rows"] += sum(1 for _ in dataset_gen())
        return feed(self, dataset_gen, resize_input)

    monkeypatch.setattr(calibrator.Calibrator, "_feed_tensors", counting)
    return fed


def test_calibration_data_for_a_count_is_a_prefix_of_that_for_a_larger_count(bench):
    small = bench.calibration_data(Recipe(Mode.INT8, calibration_count=SMALL))
    large = bench.calibration_data(Recipe(Mode.INT8, calibration_count=LARGE))
    everything = bench.calibration_data(Recipe(Mode.INT8, calibration_count=100))
    assert (len(small), len(large), len(everything)) == (SMALL, LARGE, len(bench.x)) == (8, 20, 24)
    np.testing.assert_array_equal(large[:SMALL], small)
    np.testing.assert_array_equal(everything[:LARGE], large)
    np.testing.assert_array_equal(everything[:2], bench.x[[0, len(bench.x) - 1]])
    np.testing.assert_array_equal(np.sort(everything, axis=0), np.sort(bench.x, axis=0))
    assert small.flags.c_contiguous


@pytest.mark.parametrize("mode", [Mode.INT8, Mode.INT8_FLOAT_IO, Mode.INT16X8])
def test_converter_extension_feeds_only_the_extra_rows_and_matches_from_scratch(bench, tf_rows_fed, mode):
    memo = CalibratedModels()
    small = _build(bench, _recipe(mode, SMALL), memo)
    assert tf_rows_fed["rows"] == SMALL
    incremental = _build(bench, _recipe(mode, LARGE), memo)
    assert tf_rows_fed["rows"] == LARGE  # only the 12 extra rows went through the float model
    scratch = _build(bench, _recipe(mode, LARGE), CalibratedModels())
    assert incremental.model == scratch.model
    assert small.model != incremental.model  # the extra rows did widen some ranges


def test_the_smaller_set_stays_itself_after_its_calibrator_was_extended(bench, tf_rows_fed):
    memo = CalibratedModels()
    _build(bench, _recipe(Mode.INT8, SMALL), memo)
    _build(bench, _recipe(Mode.INT8, LARGE), memo)  # extends the calibrator fed with SMALL rows
    fed = tf_rows_fed["rows"]
    int8 = _build(bench, _recipe(Mode.INT8, SMALL), memo)  # memoized calibrated model: nothing fed
    assert tf_rows_fed["rows"] == fed
    int16 = _build(bench, _recipe(Mode.INT16X8, SMALL), memo)  # needs a calibrator for SMALL: a fresh one
    assert tf_rows_fed["rows"] == fed + SMALL
    fresh = CalibratedModels()
    assert int8.model == _build(bench, _recipe(Mode.INT8, SMALL), fresh).model
    assert int16.model == _build(bench, _recipe(Mode.INT16X8, SMALL), fresh).model


def test_data_that_does_not_start_with_a_fed_set_is_fed_whole(bench, tf_rows_fed):
    memo = CalibratedModels()
    large = bench.calibration_data(_recipe(Mode.INT8, LARGE))
    _build(bench, _recipe(Mode.INT8, SMALL), memo)
    _build(bench, _recipe(Mode.INT8, LARGE), memo, np.ascontiguousarray(large[::-1]))
    assert tf_rows_fed["rows"] == SMALL + LARGE


def test_random_what_if_data_nests_too(bench, tf_rows_fed):
    def noise(count: int) -> Recipe:
        return Recipe(Mode.INT8, calibration_count=count, calibration_source=CalibrationSource.RANDOM,
                      backend=Backend.TF_CONVERTER).resolve(source_is_tflite=False)

    memo = CalibratedModels()
    _build(bench, noise(SMALL), memo)
    incremental = _build(bench, noise(LARGE), memo)
    assert tf_rows_fed["rows"] == LARGE
    assert incremental.model == _build(bench, noise(LARGE), CalibratedModels()).model


def test_workbench_raising_the_count_feeds_only_the_extra_images(bench, tf_rows_fed, tmp_path):
    from quant_core.cache import ArtifactCache

    bench._calibrated = CalibratedModels()  # this test's own calibration state
    bench.cache = ArtifactCache(tmp_path / "cache")
    bench.build(Recipe(Mode.INT8, calibration_count=SMALL))
    bench.build(Recipe(Mode.INT8, calibration_count=LARGE))
    assert tf_rows_fed["rows"] == LARGE


def test_nested_states_resume_without_dropping_when_not_in_place():
    calls: list[tuple[str, int]] = []

    def start(rows: np.ndarray) -> float:
        calls.append(("start", len(rows)))
        return float(rows.sum())

    def extend(state: float, rows: np.ndarray) -> float:
        calls.append(("extend", len(rows)))
        return state + float(rows.sum())

    data = np.arange(10, dtype=np.float32).reshape(10, 1)
    states: NestedStates[float] = NestedStates(in_place=False)
    got = [states.get(data[:n], f"d{n}", start=start, extend=extend) for n in (3, 7, 3, 10)]
    other = states.get(data[:7], "d7", start=start, extend=extend, group="other recipe")
    assert got == [3.0, 21.0, 3.0, 45.0] and other == 21.0
    assert calls == [("start", 3), ("extend", 4), ("extend", 3), ("start", 7)]


@pytest.mark.parametrize("mode", [Mode.INT8, Mode.INT16X8])
def test_litert_extension_resumes_the_calibration_and_matches_from_scratch(bench, monkeypatch, mode):
    litert = pytest.importorskip("litert_quantizer")
    fed = {"rows": 0}
    calibrate = litert.Quantizer.calibrate

    def counting(self, calibration_data, *args, **kwargs):
        fed["rows"] += sum(len(list(samples)) for samples in calibration_data.values())
        return calibrate(self, calibration_data, *args, **kwargs)

    monkeypatch.setattr(litert.Quantizer, "calibrate", counting)
    memo = CalibratedModels()
    _build(bench, _recipe(mode, SMALL, Backend.LITERT_QUANTIZER), memo)
    incremental = _build(bench, _recipe(mode, LARGE, Backend.LITERT_QUANTIZER), memo)
    assert fed["rows"] == LARGE
    scratch = _build(bench, _recipe(mode, LARGE, Backend.LITERT_QUANTIZER), CalibratedModels())
    assert incremental.model == scratch.model
    again = _build(bench, _recipe(mode, SMALL, Backend.LITERT_QUANTIZER), memo)  # its result is still kept
    assert fed["rows"] == 2 * LARGE
    assert again.model == _build(bench, _recipe(mode, SMALL, Backend.LITERT_QUANTIZER), CalibratedModels()).model

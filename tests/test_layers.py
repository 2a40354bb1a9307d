"""Per-layer error and float fallback on a model made hard to quantize in one known layer (tests/outlier.py)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from conftest import CLASSES
from outlier import write_outlier
from quant_core import Backend, CompareOptions, InputError, Mode, Recipe
from quant_core.cache import ArtifactCache
from quant_core.compare import Workbench, float_tflite
from quant_core.layers import MAX_IMAGES
from quant_core.ops import OpKind


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    """(model path, images) of the outlier model and 48 labelled colour images."""
    path, images, _ = write_outlier(tmp_path_factory.mktemp("outlier"))
    return path, images


@pytest.fixture(scope="module")
def bench(outlier, tmp_path_factory) -> Workbench:
    path, images = outlier
    return Workbench.open(path, images, class_names=CLASSES, options=CompareOptions(measure_latency=False),
                          cache=ArtifactCache(tmp_path_factory.mktemp("outlier-cache")))


CALIBRATED = [(Mode.INT8, None), (Mode.INT8_FLOAT_IO, None), (Mode.INT8, Backend.LITERT_QUANTIZER),
              (Mode.INT16X8, Backend.LITERT_QUANTIZER)]


@pytest.mark.parametrize(("mode", "backend"), CALIBRATED)
def test_the_per_layer_error_names_the_outlier_layer_first(bench, mode, backend):
    report = bench.layer_report(Recipe(mode, backend=backend))
    assert [layer.op for layer in report.layers][:5] == ["CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED",
                                                          "FULLY_CONNECTED"]  # graph order (then the softmax)
    worst, second = report.worst(2)
    assert "/conv_b" in worst.tensor and worst.op == "CONV_2D"
    assert worst.added > 0.5 and worst.added > 1.5 * second.added  # (the softmax amplifies what reaches it)
    conv_a = report.layers[0]
    assert "/conv_a" in conv_a.tensor and conv_a.relative_error < 0.05  # before it, the variant is fine
    assert worst.rmse_steps > 20 * conv_a.rmse_steps  # in its own quantization steps, too
    assert report.output_error > 0.5 and report.images == MAX_IMAGES  # of the 48


def test_it_is_the_layer_tensorflows_own_debugger_finds_worst(outlier, bench):
    """TF's QuantizationDebugger (each op against its float twin fed the same quantized input) agrees."""
    import tensorflow as tf

    path, _ = outlier
    model = tf.keras.models.load_model(path)
    calibration = bench.calibration_data(Recipe(Mode.INT8))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[k: k + 1]] for k in range(len(calibration)))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([bench.x[k: k + 1]] for k in range(16)))
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    steps = {row["tensor_name"]: float(row["mean_squared_error"]) ** 0.5 / float(row["scale"]) for row in rows}
    ours = bench.layer_report(Recipe(Mode.INT8)).worst(1)[0]
    assert max(steps, key=steps.get) == ours.tensor  # same layer, named the same way (what float_layers takes)


@pytest.mark.parametrize(("mode", "backend"), CALIBRATED)
def test_keeping_the_worst_layer_in_float_recovers_the_agreement(bench, mode, backend):
    recipe = Recipe(mode, backend=backend)
    plain = bench.evaluate(recipe, time_it=False)
    worst = bench.layer_report(recipe).worst(1)[0]
    kept = bench.evaluate(Recipe(mode, backend=backend, float_layers=(worst.tensor,)), time_it=False)
    assert plain.ok and plain.top1_agreement < 0.5  # the outlier breaks plain int8...
    assert kept.ok and kept.top1_agreement >= 0.95  # ...and one float layer mends it
    assert kept.name == f"{mode.value}+1float" and kept.warning is None
    assert not kept.ops.integer_only  # float compute: no longer for integer-only accelerators
    assert {(c.op, c.kind) for c in kept.ops.by_op} >= {("CONV_2D", OpKind.FLOAT), ("CONV_2D", plain_kind(mode))}
    assert kept.size_bytes > plain.size_bytes  # conv_b's weights are float32 now
    again = bench.layer_report(kept.recipe)
    assert again.layer(worst.tensor).dtype == "float32" and again.output_error < 0.1 * plain_error(bench, recipe)


def plain_kind(mode: Mode) -> OpKind:
    return OpKind.INT16 if mode is Mode.INT16X8 else OpKind.INT8


def plain_error(bench: Workbench, recipe: Recipe) -> float:
    return bench.layer_report(recipe).output_error


@pytest.mark.parametrize(("mode", "backend"), [(Mode.INT8, None), (Mode.INT8, Backend.LITERT_QUANTIZER)])
def test_the_winners_recipe_rebuilds_byte_identical_bytes(outlier, bench, tmp_path, mode, backend):
    worst = bench.layer_report(Recipe(mode, backend=backend)).worst(1)[0]
    kept = bench.evaluate(Recipe(mode, backend=backend, float_layers=(worst.tensor,)), time_it=False)
    written = kept.recipe.to_dict()
    assert written["float_layers"] == [worst.tensor]
    path, images = outlier
    fresh = Workbench.open(path, images, class_names=CLASSES, options=CompareOptions(measure_latency=False),
                           cache=ArtifactCache(tmp_path / "elsewhere"))
    rebuilt = fresh.build(Recipe.from_dict(written))
    import hashlib

    assert hashlib.sha256(rebuilt.model).hexdigest() == kept.tflite_sha256


def test_recipes_with_float_layers_validate_and_keep_old_cache_keys():
    recipe = Recipe(Mode.INT8, float_layers=["b;x", "a", "b;x"])
    assert recipe.float_layers == ("a", "b;x") and recipe.name == "int8+2float"
    assert "float_layers" not in Recipe(Mode.INT8).to_dict()  # every earlier recipe's key is unchanged
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert "2 layers kept in float" in recipe.what_ifs()
    with pytest.raises(InputError, match="keeping layers in float applies to int8, int8_float_io and int16x8"):
        Recipe(Mode.FLOAT16, float_layers=("a",))
    with pytest.raises(InputError, match="must be a list of tensor names"):
        Recipe(Mode.INT8, float_layers="a")


def test_the_converters_16x8_refuses_float_layers_with_the_way_out(bench):
    worst = bench.layer_report(Recipe(Mode.INT8)).worst(1)[0]
    refused = bench.evaluate(Recipe(Mode.INT16X8, backend=Backend.TF_CONVERTER, float_layers=(worst.tensor,)),
                             time_it=False)
    assert not refused.ok and "choose the LiteRT Quantizer backend" in refused.error


def test_modes_without_quantized_activations_have_no_layer_report(bench):
    with pytest.raises(InputError, match="per-layer error is for int8"):
        bench.layer_report(Recipe(Mode.DYNAMIC_RANGE))


def test_a_layer_report_of_the_float_model_against_itself_is_zero(bench):
    from quant_core.layers import layer_errors

    reference = float_tflite(bench.source, bench.cache)
    report = layer_errors(reference, reference, bench.x[:4], variant="float32")
    assert report.layers and all(layer.relative_error == 0 and layer.scale is None for layer in report.layers)
    assert np.isclose(report.output_error, 0.0)

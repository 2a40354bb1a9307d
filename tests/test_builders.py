"""Every mode through the real backends: dtypes, op kinds, numbers, and equivalence with the bare converter."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CLASSES
from quant_core.compare import CompareOptions, Workbench
from quant_core.inputs.images import load_images
from quant_core.modes import MODE_INFO, Backend, IOType, Mode
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.runner import TFLiteRunner


@pytest.fixture(scope="session")
def bench(model_files, image_dir, labels_file, session_cache):
    from quant_core.inputs.images import read_labels_file

    return Workbench.open(model_files["keras"], load_images([image_dir]), class_names=read_labels_file(labels_file),
                          options=CompareOptions(measure_latency=False), cache=session_cache)


@pytest.fixture(scope="session")
def tflite_bench(model_files, image_dir, session_cache):
    return Workbench.open(model_files["tflite"], load_images([image_dir]),
                          options=CompareOptions(measure_latency=False), cache=session_cache)


def _tensor_dtypes(model: bytes) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=model,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}


# mode -> (input dtype, output dtype, op kinds that must be present, integer_only)
EXPECTED = {
    Mode.FLOAT32: ("float32", "float32", {"float"}, False),
    Mode.WEIGHT_ONLY: ("float32", "float32", {"float", "dequantize"}, False),
    Mode.DYNAMIC_RANGE: ("float32", "float32", {"hybrid"}, False),
    Mode.FLOAT16: ("float32", "float32", {"float", "dequantize"}, False),
    Mode.INT8: ("int8", "int8", {"int8"}, True),
    Mode.INT8_FLOAT_IO: ("float32", "float32", {"int8", "quantize", "dequantize"}, False),
    Mode.INT16X8: ("float32", "float32", {"int16", "quantize", "dequantize"}, False),
}


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_has_real_dtypes_ops_and_accuracy(bench, mode):
    v = bench.evaluate(Recipe(mode))
    assert v.ok, v.error
    in_dtype, out_dtype, kinds, integer_only = EXPECTED[mode]
    assert (v.input_dtype, v.output_dtype) == (in_dtype, out_dtype)
    present = {c.kind for c in v.ops.by_op}
    assert kinds <= present, present
    assert v.ops.integer_only is integer_only
    assert v.accuracy is not None and v.accuracy >= 0.9
    assert v.top1_agreement >= 0.9
    assert 0 <= v.mean_abs_diff < 0.15
    assert len(v.topk) == len(bench.x) and len(v.topk[0]) == 3
    assert {p.label for p in v.topk[0]} == set(CLASSES)
    assert v.backend_settings["backend"]
    if mode is Mode.FLOAT32:
        assert v.size_ratio == 1.0 and v.mean_abs_diff < 1e-5
    if mode is Mode.FLOAT16:
        assert "float16" in _tensor_dtypes(v.tflite_bytes(bench.cache))
        assert 0.4 < v.size_ratio < 0.9
    if mode in (Mode.WEIGHT_ONLY, Mode.INT8):
        assert v.size_ratio < 0.75


def test_quantized_variants_differ_from_float_but_stay_close(bench):
    """The error figures are measured, not zero: quantization really happened."""
    for mode in (Mode.INT8, Mode.INT16X8):
        assert bench.evaluate(Recipe(mode)).mean_abs_diff > 1e-5, mode
    weight_only = bench.evaluate(Recipe(Mode.WEIGHT_ONLY))
    assert weight_only.mean_abs_diff > 0 and "int8" in _tensor_dtypes(weight_only.tflite_bytes(bench.cache))
    int8, int16 = bench.evaluate(Recipe(Mode.INT8)), bench.evaluate(Recipe(Mode.INT16X8))
    assert int16.mean_abs_diff < int8.mean_abs_diff  # 16-bit activations are more precise


@pytest.mark.parametrize("mode,io,extra", [
    (Mode.INT8, "int8", {"supported_ops": "TFLITE_BUILTINS_INT8"}),
    (Mode.INT8_FLOAT_IO, None, {}),
    (Mode.INT16X8, None, {"supported_ops": "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"}),
])
def test_calibrated_modes_are_byte_identical_to_the_bare_converter(bench, tiny_model, mode, io, extra):
    import tensorflow as tf

    recipe = Recipe(mode).resolve(source_is_tflite=False)
    data = bench.calibration_data(recipe)
    conv = tf.lite.TFLiteConverter.from_keras_model(tiny_model)
    conv.exclude_conversion_metadata = True
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([data[i : i + 1]] for i in range(len(data)))
    if extra:
        conv.target_spec.supported_ops = [getattr(tf.lite.OpsSet, extra["supported_ops"])]
    if io:
        conv.inference_input_type = conv.inference_output_type = tf.int8
    bare = bytes(conv.convert())
    assert bench.build(recipe)[0] == bare


def test_int8_io_round_trip_matches_manual_quantization(bench):
    v = bench.evaluate(Recipe(Mode.INT8))
    model = v.tflite_bytes(bench.cache)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = bench.x[:1]
    scale, zero = inp["quantization"]
    q = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interp.set_tensor(inp["index"], q)
    interp.invoke()
    raw = interp.get_tensor(out["index"])
    assert raw.dtype == np.int8
    o_scale, o_zero = out["quantization"]
    manual = (raw.astype(np.float32) - o_zero) * o_scale
    np.testing.assert_allclose(TFLiteRunner(model).predict(x), manual, atol=1e-7)
    # and the dequantized output is close to the float model's probabilities
    np.testing.assert_allclose(manual, bench.reference_probs[:1], atol=0.08)


def test_uint8_io(bench):
    v = bench.evaluate(Recipe(Mode.INT8, io_type=IOType.UINT8))
    assert v.ok, v.error
    assert (v.input_dtype, v.output_dtype) == ("uint8", "uint8")
    assert v.top1_agreement >= 0.9


def _weight_scales(model: bytes) -> list[int]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    return [len(t["quantization_parameters"]["scales"]) for t in interp.get_tensor_details()
            if np.dtype(t["dtype"]) == np.int8 and len(t["shape"]) == 4]


@pytest.mark.parametrize("backend", [Backend.TF_CONVERTER, Backend.LITERT_QUANTIZER])
def test_per_tensor_gives_one_scale_per_weight_tensor(bench, backend):
    per_channel = bench.evaluate(Recipe(Mode.INT8, backend=backend))
    per_tensor = bench.evaluate(Recipe(Mode.INT8, backend=backend, per_channel=False))
    assert per_tensor.ok and per_channel.ok
    assert max(_weight_scales(per_channel.tflite_bytes(bench.cache))) > 1
    assert set(_weight_scales(per_tensor.tflite_bytes(bench.cache))) == {1}
    assert per_tensor.tflite_sha256 != per_channel.tflite_sha256


@pytest.mark.parametrize("mode,io", [(Mode.INT8, "int8"), (Mode.INT16X8, "int16"), (Mode.DYNAMIC_RANGE, "float32"),
                                     (Mode.FLOAT16, "float32"), (Mode.WEIGHT_ONLY, "float32")])
def test_litert_quantizer_backend(bench, mode, io):
    """The LiteRT Quantizer builds five modes from the float .tflite."""
    v = bench.evaluate(Recipe(mode, backend=Backend.LITERT_QUANTIZER))
    assert v.ok, v.error
    assert v.input_dtype == io
    assert v.recipe.backend is Backend.LITERT_QUANTIZER
    assert "litert-quantizer" in v.backend_settings["backend"]
    assert v.top1_agreement >= 0.9


@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_applies_to_a_float_tflite(tflite_bench, model_files, mode):
    v = tflite_bench.evaluate(Recipe(mode))
    assert v.ok, v.error
    assert v.recipe.backend in MODE_INFO[mode].tflite_backends
    assert v.top1_agreement >= 0.9
    if mode is Mode.FLOAT32:
        assert v.tflite_bytes(tflite_bench.cache) == model_files["tflite"].read_bytes()


@pytest.mark.parametrize("mode", [Mode.DYNAMIC_RANGE, Mode.FLOAT16])
def test_converter_backend_for_weight_modes(bench, mode):
    v = bench.evaluate(Recipe(mode, backend=Backend.TF_CONVERTER))
    assert v.ok, v.error
    assert v.input_dtype == "float32" and v.top1_agreement >= 0.9
    assert {c.kind for c in v.ops.by_op} >= EXPECTED[mode][2]


def test_converter_only_route_is_refused_for_tflite_source(tflite_bench):
    v = tflite_bench.evaluate(Recipe(Mode.DYNAMIC_RANGE, backend=Backend.TF_CONVERTER))
    assert not v.ok and "needs litert_quantizer" in v.error


def test_calibration_count_and_source_change_the_model(bench):
    few = bench.evaluate(Recipe(Mode.INT8, calibration_count=2))
    many = bench.evaluate(Recipe(Mode.INT8, calibration_count=24))
    noise = bench.evaluate(Recipe(Mode.INT8, calibration_source=CalibrationSource.RANDOM))
    assert (few.calibration_samples, many.calibration_samples) == (2, 24)
    assert len({few.tflite_sha256, many.tflite_sha256, noise.tflite_sha256}) == 3


def test_calibration_samples_are_spread_over_the_images(bench):
    data = bench.calibration_data(Recipe(Mode.INT8, calibration_count=3))
    assert len(bench.x) == 24
    np.testing.assert_array_equal(data, bench.x[[0, 23, 12]])  # both ends, then the middle (nested order)


@pytest.mark.parametrize("mode", [Mode.DYNAMIC_RANGE, Mode.FLOAT16, Mode.INT8])
def test_saved_model_source_builds_converter_modes(model_files, image_dir, session_cache, mode):
    bench = Workbench.open(model_files["zip"], load_images([image_dir]),
                           options=CompareOptions(measure_latency=False), cache=session_cache)
    v = bench.evaluate(Recipe(mode, backend=Backend.TF_CONVERTER))
    assert v.ok, v.error
    assert v.recipe.backend is Backend.TF_CONVERTER
    assert "TFLiteConverter" in v.backend_settings["backend"]
    assert v.top1_agreement >= 0.9 and v.size_ratio < 0.9


def test_calibrated_modes_do_not_depend_on_build_order(model_files, image_dir, bench, tmp_path):
    """One fed calibrator serves int16x8 and int8 alike, whichever is built first."""
    from quant_core.cache import ArtifactCache

    fresh = Workbench.open(model_files["keras"], load_images([image_dir]),
                           options=CompareOptions(measure_latency=False), cache=ArtifactCache(tmp_path))
    int16_first = fresh.build(Recipe(Mode.INT16X8).resolve(source_is_tflite=False)).model
    int8_second = fresh.build(Recipe(Mode.INT8).resolve(source_is_tflite=False)).model
    assert int16_first == bench.build(Recipe(Mode.INT16X8).resolve(source_is_tflite=False)).model
    assert int8_second == bench.build(Recipe(Mode.INT8).resolve(source_is_tflite=False)).model


def test_large_inputs_are_evaluated_in_small_batches():
    from quant_core.runner import batch_size

    assert batch_size((32, 32, 3)) == 64
    assert batch_size((224, 224, 3)) == 13
    assert batch_size((4096, 4096, 3)) == 1


def test_build_accepts_an_unresolved_recipe(bench):
    """build() resolves the backend itself (it used to hit the registry with backend None)."""
    assert bench.build(Recipe(Mode.INT8)).model == bench.build(Recipe(Mode.INT8).resolve(source_is_tflite=False)).model

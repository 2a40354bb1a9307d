"""A real detector whose .tflite ends in TFLite_Detection_PostProcess, and the workbench on it.

The model is built here by sample_models/build_postprocess_detector.py (about a minute): the
bundled shapes detector's frozen backbone, an SSD head trained on the same synthetic scenes,
and the op fused by the TFLite converter from an ``experimental_implements`` function, as
TensorFlow's Object Detection API exports SSD models. Its detections are checked against the
un-fused network's outputs decoded independently (TensorFlow's own NMS), then read by the
workbench: its reader, and a whole comparison of five modes.

The workbench had to learn four things for it: the converter leaves the op's outputs unshaped in
the file (shaped, with a count [1], once allocated); the rows past ``count`` are left unwritten
(whatever the buffer held), so they are cleared after every run; the converter's calibrator runs
this op (TFLite's builtin resolver registers it), so int8 with float I/O builds; and a TF2 export
writes the scores before the classes, told apart by their values.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conftest import REPO
from quant_core import ArtifactCache, CompareOptions, CompareRequest, CompareResult, Mode, Recipe, boxes, run_compare
from quant_core.errors import QuantError
from quant_core.inputs.images import load_images
from quant_core.runner import TFLiteRunner
from quant_core.tasks import Role, Task, infer_outputs

SAMPLES = REPO / "sample_models"
IMAGES = SAMPLES / "shapes_images"  # the shapes detector's 24 test scenes (seed 1), 74 shapes
TRUTH = SAMPLES / "shapes_truth"
OP = "TFLite_Detection_PostProcess"
MODES = (Mode.FLOAT32, Mode.DYNAMIC_RANGE, Mode.FLOAT16, Mode.INT8, Mode.INT8_FLOAT_IO)

@functools.cache
def _script() -> ModuleType:
    """The build script as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("build_postprocess_detector",
                                                  SAMPLES / "build_postprocess_detector.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return _script().build(tmp_path_factory.mktemp("postprocess") / "detector.tflite")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """The test scenes as the model takes them: (24, 256, 256, 3) float32 in [0, 1]."""
    return np.stack([item.pixels for item in load_images([IMAGES]).items]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def compared(built, tmp_path_factory) -> CompareResult | QuantError:
    """The workbench's comparison of the five modes, or the one-line error that stopped it."""
    options = CompareOptions(recipes=tuple(Recipe(m) for m in MODES), measure_latency=False, truth=(str(TRUTH),))
    try:
        return run_compare(CompareRequest(str(built), (str(IMAGES),), None, options),
                           cache=ArtifactCache(tmp_path_factory.mktemp("postprocess_cache")))
    except QuantError as err:
        return err


def _result(compared: CompareResult | QuantError) -> CompareResult:
    if isinstance(compared, QuantError):
        raise compared
    return compared


def _plain_interpreter(model: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


# ----------------------------------------------------------------------------------------------- the model


def test_the_graph_ends_in_the_detection_postprocess_custom_op(built):
    interpreter = _plain_interpreter(built.read_bytes())
    ops = interpreter._get_ops_details()
    kinds = [op["op_name"] for op in ops]
    assert kinds[-1] == OP and kinds.count(OP) == 1
    assert not {"VAR_HANDLE", "READ_VARIABLE"} & set(kinds)  # the weights are constants, not empty variables
    assert sorted(ops[-1]["outputs"]) == sorted(d["index"] for d in interpreter.get_output_details())
    shapes = {tuple(d["shape"]) for d in interpreter.get_output_details()}
    assert shapes == {(1, 10, 4), (1, 10), (1,)}
    assert interpreter.get_signature_list()["serving_default"]["outputs"] == list(_script().OUTPUTS)


def test_its_detections_are_the_unfused_networks_decoded_by_tensorflows_nms(built, x):
    import keras
    import tensorflow as tf

    script = _script()
    network = keras.saving.load_model(built.with_suffix(".keras"), safe_mode=True, compile=False)
    encodings, predictions = (np.asarray(t) for t in network(x, training=False))
    assert encodings.shape == (len(x), 128, 4) and predictions.shape == (len(x), 128, 4)
    ya, xa, ha, wa = script.anchors().T
    fused = script.run_fused(built.read_bytes(), x)
    for image, found in enumerate(fused):
        ty, tx, th, tw = encodings[image].T
        yc, xc = ty / 10 * ha + ya, tx / 10 * wa + xa
        h, w = np.exp(th / 5) * ha, np.exp(tw / 5) * wa
        corners = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
        scores = predictions[image, :, 1:].max(axis=1)  # column 0 is the background
        keep = tf.image.non_max_suppression(corners, scores, max_output_size=10, iou_threshold=0.5,
                                            score_threshold=0.1).numpy()
        assert len(found.scores) == len(keep), image
        np.testing.assert_allclose(found.boxes, corners[keep], atol=1e-4)
        np.testing.assert_allclose(found.scores, scores[keep], atol=1e-5)
        np.testing.assert_array_equal(found.classes, predictions[image, keep, 1:].argmax(axis=1))
    assert sum(len(f.scores) for f in fused) > 50  # 74 shapes in the scenes: the model detects


def test_the_workbench_reads_the_ops_outputs_as_its_detections_in_pixels(built, x):
    model = built.read_bytes()
    runner = TFLiteRunner(model)
    outputs = runner.predict_all(x)
    specs = infer_outputs(list(zip(runner.output_names, runner.output_shapes)), outputs, input_hw=(256, 256))
    decoder = boxes.infer_decoder(specs, outputs, input_hw=(256, 256))
    assert decoder is not None and decoder.kind is boxes.DecoderKind.POSTPROCESS
    assert [runner.output_shapes[i] for i in decoder.outputs] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    found = boxes.decode(decoder, outputs)
    for image, expected in enumerate(_script().run_fused(model, x)):
        kept = expected.scores >= decoder.floor
        np.testing.assert_allclose(found[image].boxes, expected.boxes[kept][:, [1, 0, 3, 2]] * 256, atol=1e-3)
        np.testing.assert_allclose(found[image].scores, expected.scores[kept], atol=1e-6)
        np.testing.assert_array_equal(found[image].classes, expected.classes[kept])


def test_a_tf2_exports_output_order_is_read_with_classes_and_scores_apart(built, x):
    import keras

    script = _script()
    network = keras.saving.load_model(built.with_suffix(".keras"), safe_mode=True, compile=False)
    model = script.fused_tflite(network, tf2_export_order=True)
    runner = TFLiteRunner(model)
    assert runner.output_shapes == ((1, 10), (1, 10, 4), (1,), (1, 10))  # scores, boxes, count, classes
    outputs = runner.predict_all(x[:4])
    specs = infer_outputs(list(zip(runner.output_names, runner.output_shapes)), outputs, input_hw=(256, 256))
    decoder = boxes.infer_decoder(specs, outputs, input_hw=(256, 256))
    assert decoder is not None
    for found, expected in zip(boxes.decode(decoder, outputs), script.run_fused(built.read_bytes(), x[:4])):
        np.testing.assert_array_equal(found.classes, expected.classes[expected.scores >= decoder.floor])


# ----------------------------------------------------------------------------------------------- the workbench


def test_the_workbench_compares_it_as_a_detector_with_the_postprocess_decoder(compared):
    result = _result(compared)
    assert result.task is Task.DETECTION
    assert result.decoder is not None and result.decoder.kind is boxes.DecoderKind.POSTPROCESS
    assert not result.decoder.set_by_user
    assert [result.output_specs[i].shape for i in result.decoder.outputs] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    assert result.output_specs[result.decoder.outputs[0]].role is Role.BOXES
    float32 = result.variant("float32")
    assert float32.ok and float32.top1_agreement == 1.0
    assert len(float32.detections) == 24 and sum(len(d.scores) for d in float32.detections) > 50
    assert float32.accuracy is not None and float32.accuracy > 0.6  # mAP@0.5 against the scenes' true boxes


def test_each_mode_keeps_the_float_models_boxes_or_is_refused_in_one_line(compared):
    result = _result(compared)
    f1 = {v.name: v.top1_agreement for v in result.variants if v.ok}
    # Measured (one build, 24 scenes): dynamic_range 1.0, float16 1.0, int8_float_io 0.992.
    assert f1["dynamic_range"] >= 0.98 and f1["float16"] >= 0.98
    assert 0.9 <= f1["int8_float_io"] <= 1.0
    # Both backends build int8 only with the op in float between DEQUANTIZE and QUANTIZE: not integer-only.
    int8 = result.variant("int8")
    assert not int8.ok and OP in int8.error and "\n" not in int8.error


def test_the_integer_only_verdict_says_why_int8_could_not_be_made(compared):
    from quant_core.results.verdict import Target, decide

    pick = next(p for p in decide(_result(compared)).picks if p.target is Target.INTEGER)
    assert pick.variant is None
    assert f"int8 could not be made: not integer-only: {OP} stayed in float" in pick.reason, pick.reason


def test_the_bundled_sample_is_this_build_documented_and_read_as_a_detector():
    import hashlib
    import json

    entry = next(e for e in json.loads((SAMPLES / "samples.json").read_text()) if e["name"] == "shapes_postprocess")
    model = (SAMPLES / entry["file"]).read_bytes()
    assert hashlib.sha256(model).hexdigest() in (SAMPLES / "README.md").read_text()
    assert entry["task"] == "detection" and entry["truth_dir"] == "shapes_truth"
    ops = [op["op_name"] for op in _plain_interpreter(model)._get_ops_details()]
    assert ops[-1] == OP
    runner = TFLiteRunner(model)
    x = np.stack([item.pixels for item in load_images([IMAGES]).items][:4]).astype(np.float32) / 255.0
    first, again = runner.predict_all(x), runner.predict_all(x)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # rows past the count cleared: runs agree
    specs = infer_outputs(list(zip(runner.output_names, runner.output_shapes)), first, input_hw=(256, 256))
    assert [s.role for s in specs].count(Role.BOXES) == 1
    decoder = boxes.infer_decoder(specs, first, input_hw=(256, 256))
    assert decoder is not None and decoder.kind is boxes.DecoderKind.POSTPROCESS

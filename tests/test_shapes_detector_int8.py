"""The bundled YOLO-style shapes detector: int8 collapses its class scores, and three remedies restore its detections.

The detector's head concatenates box coordinates in input pixels (0 to 256) and sigmoid class
probabilities into one output, as ultralytics' exports do. Full integer quantization gives that
output one scale, set by the pixels: about one unit per step, so every probability reads 0 or
about 1. The concatenation is inside the graph, so float output alone does not help, and keeping
only the concatenation in float does not either (the converter has already given the reshape
before it the concatenation's scale). What works, measured here with the workbench's own
builders: int16 activations; float output with the head's reshape, concatenation and transpose in
float; or boxes divided by the input size before the concatenation (full int8 still).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from quant_core.builders import CalibratedModels, build_variant, graph_layers, match_layers
from quant_core.inputs.models import SourceModel, load_model
from quant_core.modes import Mode
from quant_core.recipe import Recipe
from quant_core.runner import TFLiteRunner

ROOT = REPO / "sample_models"
MANIFEST = json.loads((ROOT / "shapes_detector.json").read_text())
MEASURED = MANIFEST["measured"]["variants"]
IMAGES = sorted((ROOT / "shapes_images").iterdir())


@functools.cache
def _script():
    """The build script as a module (it is a script, not a package): its decoding, NMS and matching."""
    spec = importlib.util.spec_from_file_location("build_shapes_detector", ROOT / "build_shapes_detector.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Outputs:
    """One variant's outputs on the bundled test images, boxes in input pixels, and its output's quantization."""

    values: np.ndarray  # (images, 4 + classes, cells)
    output_dtype: np.dtype
    output_scale: float

    @property
    def probabilities(self) -> np.ndarray:
        return self.values[:, 4:]


def _outputs(model: bytes, x: np.ndarray, *, box_scale: float = 1.0) -> Outputs:
    runner = TFLiteRunner(model)
    (values,) = runner.predict_all(x)
    values = np.array(values, dtype=np.float32)
    values[:, :4] *= box_scale
    from ai_edge_litert.interpreter import Interpreter

    (out,) = Interpreter(model_content=model).get_output_details()
    return Outputs(values, np.dtype(out["dtype"]), float(out["quantization"][0]))


def _build(source: SourceModel, mode: Mode, calibration: np.ndarray, memo: CalibratedModels,
           float_layers: tuple[str, ...] = ()) -> bytes:
    recipe = Recipe(mode, calibration_count=len(calibration), float_layers=float_layers)
    return build_variant(source, recipe.resolve(source_is_tflite=False), calibration, "shapes", memo).model


def _from_concat(layers: tuple[str, ...]) -> tuple[str, ...]:
    """The head's concatenation and every op after it (the transpose, whose tensor is the model's output)."""
    (start,) = [i for i, name in enumerate(layers) if "/head_concat_" in name]
    return layers[start:]


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> dict[str, Outputs]:
    """Every variant built by the workbench's builders from the bundled .keras, run on the bundled test images."""
    import keras

    script = _script()
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255 for p in IMAGES])
    calibration = script.calibration_images()
    source = load_model(ROOT / "shapes_detector.keras")
    memo = CalibratedModels()
    layers = graph_layers(source.float_tflite)
    concat_on = _from_concat(layers)
    head = match_layers(["class_probs"], layers) + concat_on
    normalized_path = tmp_path_factory.mktemp("normalized") / "shapes_detector_normalized.keras"
    script.normalized_head(keras.saving.load_model(ROOT / "shapes_detector.keras", compile=False)).save(normalized_path)
    normalized = load_model(normalized_path)
    built = {
        "float32": (source.float_tflite, 1.0),
        "int8": (_build(source, Mode.INT8, calibration, memo), 1.0),
        "int8_float_io": (_build(source, Mode.INT8_FLOAT_IO, calibration, memo), 1.0),
        "int16x8": (_build(source, Mode.INT16X8, calibration, memo), 1.0),
        "int8_float_io_concat_float": (_build(source, Mode.INT8_FLOAT_IO, calibration, memo, concat_on), 1.0),
        "int8_float_io_head_float": (_build(source, Mode.INT8_FLOAT_IO, calibration, memo, head), 1.0),
        "int8_head_float": (_build(source, Mode.INT8, calibration, memo, head), 1.0),
        "int8_normalized_boxes": (_build(normalized, Mode.INT8, calibration, CalibratedModels()), float(script.SIZE)),
    }
    return {name: _outputs(model, x, box_scale=scale) for name, (model, scale) in built.items()}


def _truth() -> list:
    script = _script()
    return [script.read_truth(ROOT / "shapes_truth" / f"{path.stem}.txt") for path in IMAGES]


def _vs_float(variants: dict[str, Outputs], name: str, threshold: float):
    script = _script()
    found = [script.decode(o, threshold=threshold) for o in variants[name].values]
    reference = [script.decode(o, threshold=threshold) for o in variants["float32"].values]
    return script.score(found, reference)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_bundled_files_are_the_ones_the_manifest_names():
    assert _sha256(ROOT / MANIFEST["file"]) == MANIFEST["sha256"]
    assert (ROOT / MANIFEST["file"]).stat().st_size < 2_000_000
    files = MANIFEST["test_images"]["files"]
    assert [ROOT / f["image"] for f in files] == IMAGES and len(IMAGES) == 24
    for entry in files:
        assert _sha256(ROOT / entry["image"]) == entry["image_sha256"]
        assert _sha256(ROOT / entry["truth"]) == entry["truth_sha256"]
    assert sorted(p.name for p in (ROOT / "shapes_truth").iterdir()) == sorted(f"{p.stem}.txt" for p in IMAGES)
    readme = (ROOT / "README.md").read_text()
    for name in ("shapes_detector.keras", "shapes_detector.json", "build_shapes_detector.py", "shapes_truth/"):
        assert name in readme


def test_the_truth_files_are_yolo_txt_and_each_image_holds_one_to_four_shapes():
    for path in IMAGES:
        rows = [line.split() for line in (ROOT / "shapes_truth" / f"{path.stem}.txt").read_text().splitlines()]
        assert 1 <= len(rows) <= 4
        for kind, *box in rows:
            assert int(kind) in range(len(MANIFEST["classes"])) and len(box) == 4
            assert all(0.0 < float(v) < 1.0 for v in box)
        with Image.open(path) as image:
            assert image.size == (256, 256) and image.mode == "RGB"


def test_the_model_has_one_yolo_style_output_of_pixel_boxes_and_probabilities(variants):
    source = load_model(ROOT / "shapes_detector.keras")
    assert source.info.input_shape == (None, 256, 256, 3) and source.info.outputs == ((None, 7, 64),)
    values = variants["float32"].values
    assert values.shape == (24, 7, 64)
    assert values[:, :4].max() > 200  # centres and sizes in input pixels
    assert variants["float32"].probabilities.min() >= 0 and variants["float32"].probabilities.max() <= 1


def test_the_float_model_finds_the_shapes(variants):
    script = _script()
    found = [script.decode(o) for o in variants["float32"].values]
    measured = script.score(found, _truth())
    assert measured.recall > 0.8 and measured.precision > 0.8 and measured.mean_iou > 0.8
    assert measured.to_dict() == pytest.approx(MEASURED["float32"]["vs_truth"], abs=1e-3)


@pytest.mark.parametrize("name", ["int8", "int8_float_io", "int8_float_io_concat_float", "int8_head_float"])
def test_int8_collapses_every_class_probability_to_0_or_about_1(variants, name):
    """One int8 scale for pixels up to 256 and probabilities: each probability keeps two values."""
    probabilities = variants[name].probabilities
    values = np.unique(probabilities)
    assert len(values) == 2 and values[0] == 0.0 and 0.9 < values[1] < 1.1, values
    assert np.abs(probabilities - variants["float32"].probabilities).max() > 0.4
    # Detections the float model scores under about 0.5 read 0 and are lost; the boxes that remain are fine.
    at_025 = _vs_float(variants, name, 0.25)
    assert at_025.recall < 0.95 and at_025.precision > 0.95 and at_025.mean_iou > 0.9
    assert at_025.score_error > 0.05


def test_the_int8_output_scale_is_set_by_the_pixel_coordinates(variants):
    int8 = variants["int8"]
    assert int8.output_dtype == np.int8
    boxes = variants["float32"].values[:, :4]
    assert int8.output_scale == pytest.approx((boxes.max() - min(boxes.min(), 0.0)) / 255, rel=0.1)
    assert int8.output_scale > 0.9  # one step is about a whole probability


@pytest.mark.parametrize("name", ["int16x8", "int8_float_io_head_float", "int8_normalized_boxes"])
def test_each_remedy_restores_the_probabilities_and_the_detections(variants, name):
    probabilities = variants[name].probabilities
    assert len(np.unique(probabilities)) >= 20
    assert np.abs(probabilities - variants["float32"].probabilities).max() < 0.15
    for threshold in (0.25, 0.5):
        measured = _vs_float(variants, name, threshold)
        assert measured.recall >= 0.97 and measured.precision >= 0.97 and measured.mean_iou > 0.9, threshold
        assert measured.score_error < 0.05


def test_the_normalized_head_is_still_full_integer_with_an_int8_output(variants):
    normalized = variants["int8_normalized_boxes"]
    assert normalized.output_dtype == np.int8 and normalized.output_scale < 1.5 / 255


@pytest.mark.parametrize("name", ["int8", "int8_float_io", "int16x8"])
def test_the_workbench_builds_the_same_variants_the_build_script_measured(variants, name):
    """The script converts with TFLiteConverter directly; the workbench's builders give the same detections."""
    for threshold in ("0.25", "0.5"):
        measured = _vs_float(variants, name, float(threshold)).to_dict()
        assert measured == pytest.approx(MEASURED[name]["vs_float"][threshold], abs=1e-3)

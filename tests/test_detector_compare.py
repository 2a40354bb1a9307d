"""Detectors compared as detectors: the bundled MediaPipe face detector and the YOLO-style shapes detector, measured
by their decoded boxes against float32's (box F1 is their agreement), and against ground truth when given (mAP)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from quant_core import ArtifactCache, CompareOptions, CompareRequest, CompareResult, Mode, Recipe, boxes, run_compare
from quant_core.detection import SsdPreset
from quant_core.results.report import output_fidelity_dict
from quant_core.results.summary import worst_words
from quant_core.inputs.images import load_images
from quant_core.inputs.preprocess import to_model_input
from quant_core.runner import TFLiteRunner
from quant_core.tasks import Role, Task

SAMPLES = REPO / "sample_models"
FACE_MODEL = SAMPLES / "face_detection_short_range.tflite"
PEOPLE = SAMPLES / "people_images"
SHAPES_MODEL = SAMPLES / "shapes_detector.keras"
SHAPES_IMAGES = SAMPLES / "shapes_images"
SHAPES_TRUTH = SAMPLES / "shapes_truth"
MEASURED = json.loads((SAMPLES / "shapes_detector.json").read_text())["measured"]["variants"]


def _compare(model: Path, images: Path, cache: ArtifactCache, *modes: Mode, **options) -> CompareResult:
    return run_compare(CompareRequest(str(model), (str(images),), None, CompareOptions(
        recipes=tuple(Recipe(m) for m in modes), measure_latency=False, **options)), cache=cache)


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> CompareResult:
    cache = ArtifactCache(tmp_path_factory.mktemp("face_cache"))
    return _compare(FACE_MODEL, PEOPLE, cache, Mode.FLOAT32, Mode.INT8, Mode.DYNAMIC_RANGE)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[CompareResult, ArtifactCache]:
    cache = ArtifactCache(tmp_path_factory.mktemp("shapes_cache"))
    result = _compare(SHAPES_MODEL, SHAPES_IMAGES, cache, Mode.FLOAT32, Mode.INT8, Mode.INT16X8,
                      truth=(str(SHAPES_TRUTH),))
    return result, cache


# ----------------------------------------------------------------------------------------------- the face detector


def test_the_face_detector_is_compared_by_its_boxes(face):
    assert face.task is Task.DETECTION
    assert face.decoder is not None and face.decoder.ssd == SsdPreset.FACE_SHORT_RANGE.config
    assert face.decoder.choice == "ssd:face_detection_short_range" and not face.decoder.set_by_user
    assert [s.role for s in face.output_specs] == [Role.BOXES, Role.BOX_SCORES]
    images = len(face.images)
    assert images == 7
    for variant in face.variants:
        assert variant.ok, variant.name
        main = variant.outputs[0]
        assert main.role is Role.BOXES and main.boxes is not None, variant.name
        assert variant.top1_agreement == main.boxes.f1, variant.name
        assert len(variant.detections) == images, variant.name
    float32 = face.variant("float32")
    assert float32.top1_agreement == 1.0 and float32.outputs[0].boxes.mean_iou == 1.0
    threshold = face.decoder.threshold
    assert [sum(s >= threshold for s in d.scores) for d in float32.detections] == [1] * images  # one face per photo
    int8 = face.variant("int8").outputs[0].boxes
    assert int8.mean_keypoint_error_px is not None and math.isfinite(int8.mean_keypoint_error_px)
    assert int8.keypoint_matches == int8.true_positives > 0


def test_a_detectors_result_round_trips_with_its_boxes_and_decoder(face):
    again = CompareResult.from_dict(json.loads(json.dumps(face.to_dict())))
    assert again.decoder == face.decoder
    assert [v.detections for v in again.variants] == [v.detections for v in face.variants]
    assert again == face


# ----------------------------------------------------------------------------------------------- the shapes detector


def test_int8_loses_the_shapes_detectors_boxes_and_int16x8_keeps_them(shapes):
    result, _ = shapes
    assert result.task is Task.DETECTION and result.decoder is not None and result.decoder.yolo is not None
    assert result.decoder.yolo.num_classes == 3 and result.truth_source == "YOLO boxes of 24 images, 74 objects"
    float32, int8, int16x8 = (result.variant(m) for m in ("float32", "int8", "int16x8"))
    assert all(v.ok for v in (float32, int8, int16x8))
    assert float32.outputs[0].boxes.recall == 1.0
    # The sample's measured collapse (shapes_detector.json "measured": int8 recall 0.85, int16x8 1.0).
    assert MEASURED["int8"]["vs_float"]["0.25"]["recall"] < 0.9 and MEASURED["int16x8"]["vs_float"]["0.25"][
        "recall"] == 1.0
    assert int8.outputs[0].boxes.recall < 0.9
    assert int16x8.outputs[0].boxes.recall == 1.0
    assert int8.top1_agreement == int8.outputs[0].boxes.f1 < int16x8.top1_agreement


def test_the_shapes_detectors_channels_are_its_box_values_and_class_scores(shapes):
    result, _ = shapes
    (spec,) = result.output_specs
    assert spec.channel_axis == 1 and "64 candidate boxes" in spec.description
    int8 = result.variant("int8").outputs[0]
    assert len(int8.channels) == 7
    assert int8.worst_channel is not None and int8.worst_channel >= 4  # a class score, not a box value
    assert spec.channel_names == ("box cx", "box cy", "box w", "box h", "class score 0", "class score 1",
                                  "class score 2")
    assert int8.channel_names == spec.channel_names
    assert worst_words(int8) == f"{spec.name} class score {int8.worst_channel - 4}"
    again = CompareResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.output_specs == result.output_specs and again.variant("int8").outputs[0] == int8
    assert output_fidelity_dict(int8)["worst_channel_name"] == f"class score {int8.worst_channel - 4}"


def test_the_shapes_detector_is_scored_against_its_true_boxes(shapes):
    result, _ = shapes
    scores = {v.name: v.accuracy for v in result.variants}
    assert all(s is not None and 0 < s <= 1 for s in scores.values()), scores
    assert scores["int8"] < scores["float32"]
    main = result.variant("float32").outputs[0].boxes
    assert main.map_50 == scores["float32"] and main.map_50_95 is not None
    assert result.source_accuracy == pytest.approx(scores["float32"], abs=0.02)


def test_the_shared_scale_of_the_shapes_detectors_output_is_found_on_float32s(shapes):
    result, cache = shapes
    float32 = result.variant("float32")
    images = load_images([SHAPES_IMAGES])
    x = to_model_input([i.pixels for i in images.items], result.preprocessing)
    model = cache.model_bytes(float32.tflite_sha256)
    runner = TFLiteRunner(model)
    found = boxes.shared_scale(result.decoder, runner.predict_all(x))
    assert found is not None and found.output == 0 and found.classes == 3
    assert found.box_range > 200 and found.score_range < 1.0 and found.steps < 1.5
    assert runner.output_names[0] in boxes.head_layers(model)


# ----------------------------------------------------------------------------------------------- the runner


def test_a_model_fixing_batch_one_inside_is_run_one_image_at_a_time():
    photos = load_images([PEOPLE]).items
    x = np.stack([np.asarray(Image.fromarray(p.pixels).resize((128, 128)), np.float32) / 127.5 - 1 for p in photos])
    assert len(x) == 7
    (regressors, scores) = TFLiteRunner(FACE_MODEL.read_bytes()).predict_all(x)
    assert regressors.shape == (7, 896, 16) and scores.shape == (7, 896, 1)
    single = TFLiteRunner(FACE_MODEL.read_bytes())
    alone = [single.predict_all(x[i:i + 1]) for i in range(len(x))]
    assert np.allclose(regressors, np.concatenate([a[0] for a in alone]), atol=1e-5)
    assert np.allclose(scores, np.concatenate([a[1] for a in alone]), atol=1e-5)


def test_the_html_report_says_how_boxes_were_read_and_draws_each_variants_boxes(shapes):
    import base64
    import io
    import re

    from ui.html_report import render_report

    result, _ = shapes
    thumbs = {item.name: item.pixels for item in load_images([SHAPES_IMAGES]).items}
    page = render_report(result, thumbnails=thumbs)
    assert "Boxes read by the decoder <code>yolo</code>" in page and "Kept at a score of 0.25" in page
    assert "mAP@0.5 and mAP@0.5:0.95 (pycocotools)" in page and "YOLO boxes of 24 images" in page
    assert "head_output holds box coordinates up to" in page  # the shared scale's cause, in one sentence
    assert "<th>float32</th><th>int8</th><th>int16x8</th>" in page
    pictures = re.findall(r'<img class="boxes" alt="" src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(pictures) == 12 * 3  # the 12 images with most missed and extra boxes: float32's, int8's, int16x8's
    first_int8 = np.asarray(Image.open(io.BytesIO(base64.b64decode(pictures[1]))).convert("RGB"), np.int32)
    yellow = np.all(np.abs(first_int8 - (255, 220, 0)) < 40, axis=-1).sum()  # JPEG: near the missed boxes' yellow
    assert yellow > 50  # the worst image first: int8 missed a box there, drawn thick in yellow
    assert re.search(r"F1 0\.\d\d · [1-9] missed · 0 extra", page)

"""Compare's per-image views of a detector: float32's boxes and a variant's on one photo, the missed and extra ones
marked (pixel checks, Pillow and numpy only), and the Compare page on the bundled face detector's real comparison
(AppTest): a score threshold that re-matches kept detections, the figures at it, and the drawn images."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from quant_core import ArtifactCache, CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core import detection as det
from quant_core.inputs.preprocess import Normalization, Preprocessing, ResizeMethod
from quant_core.tasks import Task
from ui import box_views
from ui.task_views import FLOAT32_RGB, VARIANT_RGB

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
MODEL = REPO / "sample_models" / "face_detection_short_range.tflite"
PEOPLE = REPO / "sample_models" / "people_images"
PRE = Preprocessing(128, 128, 3, Normalization.of("0,1"), ResizeMethod.BILINEAR)  # drawn at 256: 2 px per input px


def found(boxes: list[tuple[float, float, float, float]], scores: list[float],
          points: list[tuple[float, float]] | None = None) -> det.Detections:
    keypoints = None if points is None else np.asarray(points, np.float64)[:, None, :]
    return det.Detections(np.asarray(boxes, np.float64), np.asarray(scores), np.zeros(len(boxes), np.int64),
                          keypoints)


def colour_at(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(c) for c in np.asarray(image)[y, x])


def has(image: Image.Image, rgb: tuple[int, int, int]) -> int:
    return int(np.all(np.asarray(image) == rgb, axis=-1).sum())


# Float32 finds a face at (10..40) and one at (70..100); the variant finds the first, a pixel off, misses the second
# and adds one at (10..40, 80..110) scoring 0.3: extra only when the threshold is below 0.3.
REFERENCE = found([(10, 10, 40, 40), (70, 70, 100, 100)], [0.9, 0.8], [(25, 25), (85, 85)])
VARIANT = found([(11, 11, 41, 41), (10, 80, 40, 110)], [0.85, 0.3], [(26, 26), (25, 95)])


def test_a_missed_box_is_thick_yellow_an_extra_one_orange_and_matched_ones_green_and_red():
    frame = Image.new("RGB", (256, 256), "black")
    image = box_views.compared_boxes(frame, PRE, REFERENCE, VARIANT, threshold=0.2)
    # Left edges at mid height, away from the labels: the missed box at x = 70 * 2, 6 px thick (3 lines of 2 px).
    assert [colour_at(image, x, 170) for x in (140, 145)] == [box_views.MISSED_RGB] * 2
    assert colour_at(image, 146, 170) == (0, 0, 0)
    assert colour_at(image, 21, 190) == box_views.EXTRA_RGB  # the extra box at x = 10 * 2, y = 80..110
    # The matched pair: float32's thick green band at x = 20..25 with the variant's thin red line (x = 22) inside it.
    assert [colour_at(image, x, 50) for x in (20, 21, 22, 23, 24, 25)] == [FLOAT32_RGB] * 2 + [VARIANT_RGB] * 2 + \
        [FLOAT32_RGB] * 2
    assert colour_at(image, 52, 52) == VARIANT_RGB  # the variant's keypoint (26, 26) over float32's ring at (25, 25)
    assert colour_at(image, 170, 170) == box_views.MISSED_RGB  # the missed face's keypoint, in its colour


def test_a_higher_threshold_drops_the_low_scoring_extra_box():
    frame = Image.new("RGB", (256, 256), "black")
    low = box_views.compared_boxes(frame, PRE, REFERENCE, VARIANT, threshold=0.2)
    high = box_views.compared_boxes(frame, PRE, REFERENCE, VARIANT, threshold=0.5)
    assert has(low, box_views.EXTRA_RGB) > 100 and has(high, box_views.EXTRA_RGB) == 0
    assert has(high, box_views.MISSED_RGB) > 100  # the missed face still is, whatever the threshold below 0.8
    above_all = box_views.compared_boxes(frame, PRE, REFERENCE, VARIANT, threshold=0.95)
    assert np.asarray(above_all).max() == 0  # nothing scores 0.95: the photo as it was


def test_float32s_picture_has_its_boxes_in_green_and_nothing_else():
    frame = Image.new("RGB", (256, 256), "black")
    image = box_views.reference_boxes(frame, PRE, REFERENCE, threshold=0.85)
    assert colour_at(image, 20, 50) == FLOAT32_RGB and colour_at(image, 140, 170) == (0, 0, 0)  # 0.8 < 0.85
    for rgb in (VARIANT_RGB, box_views.MISSED_RGB, box_views.EXTRA_RGB):
        assert has(image, rgb) == 0


def test_labels_name_the_class_only_when_the_model_tells_classes_apart():
    assert box_views.Labelling(classes=True).text(0.8123, 2, "missed") == "missed class 2 0.81"
    assert box_views.Labelling().text(0.5, 0) == "0.50"


def test_an_image_caption_and_the_order_come_from_the_matches():
    match = det.match_detections(REFERENCE, VARIANT, score_threshold=0.2)
    assert box_views.image_caption(match) == "F1 0.50 · 1 missed · 1 extra"
    assert box_views.image_caption(det.match_detections(REFERENCE, REFERENCE)) == "the same boxes as float32's"
    fidelity = det.box_fidelity([REFERENCE, REFERENCE, REFERENCE], [REFERENCE, VARIANT, REFERENCE.above(0.85)],
                                score_threshold=0.2)
    assert box_views.worst_first({"int8": fidelity}, 3) == [1, 2, 0]  # 2 wrong, 1 missed, none


# ----------------------------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> CompareResult:
    request = CompareRequest(str(MODEL), (str(PEOPLE),), None, CompareOptions(
        recipes=(Recipe(Mode.INT8), Recipe(Mode.DYNAMIC_RANGE)), measure_latency=False))
    result = run_compare(request, cache=ArtifactCache(tmp_path_factory.mktemp("boxes-cache")))
    assert result.task is Task.DETECTION and result.decoder is not None
    assert [v.name for v in result.variants] == ["float32", "int8", "dynamic_range"] and all(
        len(v.detections) == len(result.images) for v in result.variants)
    return result


def compare_page(result: CompareResult) -> AppTest:
    from ui.inputs import Inputs, files_digest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.inputs"] = Inputs("your model", MODEL, (PEOPLE,), None,
                                           digest=files_digest(MODEL, (PEOPLE,), None))
    at.session_state["qw.result"] = result
    at.switch_page("pages/compare.py").run()
    at.run()  # the follow-up run: charts and views
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest) -> dict[str, dict]:
    frame = next(d.value for d in at.dataframe if "recall" in d.value.columns)
    return {row["variant"]: row for row in frame.to_dict("records")}


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_the_threshold_re_scores_the_kept_boxes_and_each_image_is_drawn(detector):
    at = compare_page(detector)
    slider = at.slider(key="w.box_threshold")
    assert slider.value == pytest.approx(detector.decoder.threshold) and slider.min == pytest.approx(0.1)
    at_headline = table(at)
    assert set(at_headline) == {"int8", "dynamic_range"}
    # 7 photos, 6 on the first page: float32's boxes and each of the two variants'.
    assert len(at.get("image")) == 6 * 3
    assert captions(at).count("· float32") == 6
    at.slider(key="w.box_threshold").set_value(0.1).run()
    assert not at.exception, [e.value for e in at.exception]
    at_floor = table(at)
    at.slider(key="w.box_threshold").set_value(0.95).run()
    at_top = table(at)
    for name in ("int8", "dynamic_range"):
        assert at_floor[name]["matched"] > at_top[name]["matched"]
        assert at_floor[name]["matched"] >= at_headline[name]["matched"]
    base = detector.baseline.detections
    assert at_floor["dynamic_range"]["matched"] + at_floor["dynamic_range"]["missed"] == sum(
        len(b.scores) for b in base)  # at the floor every kept float32 box is matched or missed
    assert "missed" in captions(at) or "the same boxes as float32's" in captions(at)


def test_without_a_decoder_the_page_says_boxes_need_one(detector):
    from dataclasses import replace

    at = compare_page(replace(detector, decoder=None))
    assert "Boxes need a decoder" in captions(at)
    assert not [s for s in at.slider if s.key == "w.box_threshold"]

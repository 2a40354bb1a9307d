"""quant_core.detection: anchors, SSD/YOLO/PostProcess decoding, NMS, box fidelity, ground truth and mAP.

Synthetic arrays with answers worked out by hand (or taken from MediaPipe's own golden
anchor file), and the real MediaPipe short-range face detector on the bundled photos.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quant_core import detection as det
from quant_core.detection import (AnchorOptions, BoxCoding, BoxUnits, Detections, Fit, GroundTruth, ImageToInput,
                                  NmsAlgorithm, NmsOptions, SsdConfig, SsdPreset, YoloFormat, YoloLayout)
from quant_core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
FACE_MODEL = REPO / "sample_models" / "face_detection_short_range.tflite"
PEOPLE = REPO / "sample_models" / "people_images"
MANIFEST = REPO / "sample_models" / "mediapipe_samples.json"


def dets(boxes, scores, classes=None, keypoints=None) -> Detections:
    """Detections from lists."""
    classes = [0] * len(scores) if classes is None else classes
    return Detections(np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(classes), keypoints)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ----------------------------------------------------------------------------------------------- Detections, IoU


def test_detections_are_checked_read_only_and_round_trip_through_json():
    with pytest.raises(ValueError, match=r"boxes: expected \[N, 4\]"):
        Detections(np.zeros((2, 3)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="2 boxes but scores"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="keypoints"):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros(2), np.zeros((2, 3)))
    found = dets([[0, 0, 2, 2], [1, 1, 3, 3]], [0.9, 0.4], [1, 2], np.arange(8.0).reshape(2, 2, 2))
    with pytest.raises(ValueError, match="read-only"):
        found.boxes[0, 0] = 5
    back = Detections.from_dict(json.loads(json.dumps(found.to_dict())))
    assert np.array_equal(back.boxes, found.boxes) and np.array_equal(back.classes, [1, 2])
    assert np.array_equal(back.keypoints, found.keypoints)
    above = found.above(0.5)
    assert len(above) == 1 and above.scores.tolist() == [0.9] and above.keypoints.shape == (1, 2, 2)
    assert len(Detections.empty(num_keypoints=6).keypoints) == 0


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
    b = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6], [1, 1, 1, 1]], float)
    got = det.iou_matrix(a, b)
    assert got.shape == (2, 4)
    assert got[0].tolist() == pytest.approx([1.0, 2 / 6, 0.0, 0.0])
    assert got[1].tolist() == pytest.approx([0.25, 0.0, 0.0, 0.0])  # touching edges: no area in common
    assert det.iou_matrix(np.array([[1, 1, 1, 1.0]]), np.array([[1, 1, 1, 1.0]]))[0, 0] == 0.0  # empty union


# ----------------------------------------------------------------------------------------------- NMS


def test_nms_keeps_the_best_of_overlapping_boxes_per_class_up_to_the_cap():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]]
    found = dets(boxes, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 1])
    kept = det.nms(found, iou_threshold=0.5)
    assert kept.scores.tolist() == [0.9, 0.7, 0.6]  # box 1 (IoU 0.82 with box 0) dropped; box 3 is another class
    assert det.nms(found, iou_threshold=0.5, per_class=False).scores.tolist() == [0.9, 0.7]
    assert det.nms(found, iou_threshold=0.5, max_detections=2).scores.tolist() == [0.9, 0.7]
    assert len(det.nms(found, iou_threshold=0.9)) == 4  # every IoU is under 0.9


def test_nms_suppresses_only_above_the_threshold():
    found = dets([[0, 0, 2, 2], [1, 0, 3, 2]], [0.9, 0.8])  # IoU exactly 1/3
    assert len(det.nms(found, iou_threshold=1 / 3)) == 2
    assert len(det.nms(found, iou_threshold=0.3)) == 1


def test_plain_nms_then_a_score_threshold_equals_the_threshold_then_nms():
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 100, (300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (300, 2))], axis=1)
    found = Detections(boxes, rng.uniform(0, 1, 300), rng.integers(0, 3, 300))
    for threshold in (0.2, 0.5, 0.8):
        late = det.nms(found, iou_threshold=0.45).above(threshold)
        early = det.nms(found.above(threshold), iou_threshold=0.45)
        assert np.array_equal(late.boxes, early.boxes) and len(late) > 0


def test_weighted_nms_blends_overlapping_boxes_and_keypoints_by_score():
    points = np.array([[[0, 0]], [[4, 8]], [[50, 50]]], float)
    found = dets([[0, 0, 10, 10], [2, 0, 12, 10], [20, 20, 30, 30]], [0.75, 0.25, 0.6], [0, 1, 0], points)
    kept = det.weighted_nms(found, iou_threshold=0.3)  # boxes 0 and 1: IoU 80/120 = 0.67
    assert kept.boxes == pytest.approx(np.array([[0.5, 0, 10.5, 10], [20, 20, 30, 30]]))
    assert kept.keypoints[:, 0] == pytest.approx(np.array([[1.0, 2.0], [50, 50]]))
    assert kept.scores.tolist() == [0.75, 0.6] and kept.classes.tolist() == [0, 0]  # the best member's score and class
    assert len(det.weighted_nms(found, iou_threshold=0.7)) == 3
    assert len(det.weighted_nms(found, iou_threshold=0.3, max_detections=1)) == 1
    options = NmsOptions(iou_threshold=0.3, algorithm=NmsAlgorithm.PLAIN)
    assert det.suppress(found, options).boxes[0].tolist() == [0, 0, 10, 10]
    with pytest.raises(InputError, match="IoU threshold"):
        NmsOptions(iou_threshold=1.5)


# ----------------------------------------------------------------------------------------------- anchors


@pytest.mark.parametrize(("preset", "count", "coords", "size"), [
    (SsdPreset.FACE_SHORT_RANGE, 896, 16, (128, 128)),
    (SsdPreset.FACE_FULL_RANGE, 2304, 16, (192, 192)),
    (SsdPreset.PALM, 2016, 18, (192, 192)),
    (SsdPreset.POSE, 2254, 12, (224, 224)),
])
def test_each_preset_has_its_models_anchor_count(preset, count, coords, size):
    config = preset.config
    assert config.num_anchors == count and config.coding.num_coords == coords and config.input_size == size
    assert det.matching_presets(num_anchors=count) == (preset,)
    assert preset.description


def test_short_range_face_anchors_sit_at_known_centres():
    anchors = det.generate_anchors(SsdPreset.FACE_SHORT_RANGE.config.anchors)
    # 16x16 grid, 2 anchors per cell, then one 8x8 grid shared by three stride-16 layers, 6 per cell.
    assert anchors[0].tolist() == anchors[1].tolist() == [1 / 32, 1 / 32, 1, 1]
    assert anchors[2].tolist() == [3 / 32, 1 / 32, 1, 1]
    assert anchors[2 * 16].tolist() == [1 / 32, 3 / 32, 1, 1]  # second row
    assert anchors[512].tolist() == anchors[517].tolist() == [1 / 16, 1 / 16, 1, 1]
    assert anchors[518].tolist() == [3 / 16, 1 / 16, 1, 1]
    assert anchors[-1].tolist() == [15 / 16, 15 / 16, 1, 1]
    assert not anchors.flags.writeable


# Lines of MediaPipe's anchor_golden_file_1.txt (mediapipe/calculators/tflite/testdata: x, y, w, h),
# the expected anchors of its SsdAnchorsCalculator test "MobileSSDConfig" (300x300, six layers,
# five aspect ratios, reduced lowest layer, sizes not fixed): 1917 anchors.
MOBILE_SSD = AnchorOptions(input_width=300, input_height=300, num_layers=6, strides=(16, 32, 64, 128, 256, 512),
                           min_scale=0.2, max_scale=0.95, aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333),
                           reduce_boxes_in_lowest_layer=True)
MOBILE_SSD_GOLDEN = {
    0: (0.0263158, 0.0263158, 0.1, 0.1), 1: (0.0263158, 0.0263158, 0.282843, 0.141421),
    2: (0.0263158, 0.0263158, 0.141421, 0.282843), 3: (0.0789474, 0.0263158, 0.1, 0.1),
    1082: (0.973684, 0.973684, 0.141421, 0.282843), 1083: (0.05, 0.05, 0.35, 0.35),
    1084: (0.05, 0.05, 0.494975, 0.247487), 1086: (0.05, 0.05, 0.606218, 0.202073),
    1087: (0.05, 0.05, 0.202062, 0.606248), 1088: (0.05, 0.05, 0.41833, 0.41833), 1089: (0.15, 0.05, 0.35, 0.35),
    1909: (0.75, 0.75, 0.461857, 1.38571), 1911: (0.5, 0.5, 0.95, 0.95), 1912: (0.5, 0.5, 1.3435, 0.671751),
    1915: (0.5, 0.5, 0.548455, 1.64553), 1916: (0.5, 0.5, 0.974679, 0.974679),
}


def test_anchors_with_sizes_match_mediapipes_golden_file():
    anchors = det.generate_anchors(MOBILE_SSD)
    assert len(anchors) == 1917
    for index, expected in MOBILE_SSD_GOLDEN.items():
        assert anchors[index] == pytest.approx(expected, abs=1e-5), index  # MediaPipe's test tolerance


def test_anchor_options_are_checked():
    with pytest.raises(InputError, match="3 layers but strides"):
        AnchorOptions(input_width=128, input_height=128, num_layers=3, strides=(8, 16), min_scale=0.1, max_scale=0.7)
    with pytest.raises(InputError, match="aspect ratios"):
        AnchorOptions(input_width=128, input_height=128, num_layers=1, strides=(8,), min_scale=0.1, max_scale=0.7,
                      aspect_ratios=(0.0,))
    one = AnchorOptions(input_width=64, input_height=32, num_layers=1, strides=(16,), min_scale=0.2, max_scale=0.6,
                        interpolated_scale_aspect_ratio=0.0)
    anchors = det.generate_anchors(one)
    assert len(anchors) == 4 * 2  # a 4x2 grid, one anchor per cell
    assert anchors[0] == pytest.approx([1 / 8, 1 / 4, 0.4, 0.4])  # one layer: the mean of min and max scale


# ----------------------------------------------------------------------------------------------- SSD decoding


def encode_face(regressors: np.ndarray, row: int, box: tuple[float, float, float, float],
                points: list[tuple[float, float]], *, anchors: np.ndarray, size: int = 128) -> None:
    """Writes a box (x0, y0, x1, y1) and keypoints in input pixels into a row, as the face model encodes them."""
    ax, ay = anchors[row, 0] * size, anchors[row, 1] * size
    x0, y0, x1, y1 = box
    regressors[0, row, :4] = [(x0 + x1) / 2 - ax, (y0 + y1) / 2 - ay, x1 - x0, y1 - y0]
    for k, (x, y) in enumerate(points):
        regressors[0, row, 4 + 2 * k:6 + 2 * k] = [x - ax, y - ay]


def test_ssd_decoding_round_trips_boxes_keypoints_and_scores():
    config = SsdPreset.FACE_SHORT_RANGE.config
    anchors = det.generate_anchors(config.anchors)
    regressors, logits = np.zeros((1, 896, 16), np.float32), np.full((1, 896, 1), -8.0, np.float32)
    points_a = [(30.0 + k, 40.0 + 2 * k) for k in range(6)]
    encode_face(regressors, 37, (20.0, 30.0, 60.0, 80.0), points_a, anchors=anchors)
    encode_face(regressors, 700, (90.0, 10.0, 120.0, 44.0), [(100.0, 20.0)] * 6, anchors=anchors)
    logits[0, 37, 0], logits[0, 700, 0] = 3.0, 1.0
    found = det.decode_ssd(regressors, logits, config=config)
    assert len(found) == 2
    assert found.boxes == pytest.approx(np.array([[20, 30, 60, 80], [90, 10, 120, 44]]), abs=1e-4)
    assert found.scores.tolist() == pytest.approx([sigmoid(3.0), sigmoid(1.0)])
    assert found.keypoints.shape == (2, 6, 2) and found.keypoints[0] == pytest.approx(np.array(points_a), abs=1e-4)
    assert found.classes.tolist() == [0, 0]
    lower = det.decode_ssd(regressors, logits, config=config, min_score=0.0)  # every anchor, suppressed
    assert len(lower) > 2 and lower.above(0.5).boxes == pytest.approx(np.array(found.boxes))


def test_ssd_decoding_reads_yxhw_order_exponential_sizes_and_several_classes():
    anchors = AnchorOptions(input_width=100, input_height=50, num_layers=1, strides=(50,), min_scale=0.2,
                            max_scale=0.2, interpolated_scale_aspect_ratio=0.0)
    coding = BoxCoding(x_scale=10, y_scale=10, w_scale=5, h_scale=5, apply_exponential_on_box_size=True,
                       num_keypoints=1, keypoint_coord_offset=4, num_values_per_keypoint=3)
    config = SsdConfig(anchors, coding, NmsOptions(algorithm=NmsAlgorithm.PLAIN))
    grid = det.generate_anchors(anchors)
    assert grid == pytest.approx(np.array([[0.25, 0.5, 0.2, 0.2], [0.75, 0.5, 0.2, 0.2]]))
    # Row 1: y offset 5 (0.5 anchor heights), x offset 10 (one anchor width), h log 2, w log 1; keypoint (y, x, extra).
    raw = np.array([[[0, 0, 0, 0, 0, 0, 9], [5, 10, 5 * math.log(2), 0, 10, -10, 9]]])
    scores = np.array([[[-5, -5, -5], [0.2, 0.9, 0.1]]])
    found = det.decode_ssd(raw, scores, config=config)
    assert len(found) == 2 and found.classes.tolist() == [1, 0]  # raw scores, no sigmoid: row 1 first (0.9)
    x, y, w, h = 0.75 + 0.2, 0.5 + 0.1, 0.2, 0.4
    assert found.boxes[0].tolist() == pytest.approx([(x - w / 2) * 100, (y - h / 2) * 50, (x + w / 2) * 100,
                                                     (y + h / 2) * 50])
    assert found.keypoints[0, 0].tolist() == pytest.approx([(0.75 - 0.2) * 100, (0.5 + 0.2) * 50])


def test_ssd_scores_are_clipped_and_broken_rows_dropped():
    config = SsdPreset.FACE_SHORT_RANGE.config
    regressors, logits = np.zeros((1, 896, 16)), np.full((1, 896, 1), -50.0)
    regressors[0, :, 2:4] = 10.0  # 10-pixel boxes everywhere
    regressors[0, 3, 2] = -4.0  # a negative width
    logits[0, 0, 0], logits[0, 3, 0], logits[0, 600, 0], logits[0, 601, 0] = 1e6, 5.0, np.nan, 2.0
    regressors[0, 601, 0] = np.nan
    found = det.decode_ssd(regressors, logits, config=config)
    assert len(found) == 1 and found.scores[0] == pytest.approx(sigmoid(100.0))
    assert np.isfinite(found.boxes).all()


def test_ssd_outputs_are_told_apart_by_shape():
    assert det.ssd_output_order([(1, 896, 16), (1, 896, 1)]) == (0, 1)
    assert det.ssd_output_order([[1, 2016, 1], [1, 2016, 18]]) == (1, 0)
    for shapes in ([(1, 896, 16)], [(1, 896, 16), (1, 900, 1)], [(1, 896, 2), (1, 896, 2)], [(1, 10), (1, 10, 4)]):
        with pytest.raises(InputError, match="expected two"):
            det.ssd_output_order(shapes)


def test_ssd_refuses_outputs_that_do_not_fit_the_anchors_in_one_line():
    config = SsdPreset.FACE_SHORT_RANGE.config
    with pytest.raises(InputError, match=r"896 anchors, but the model's outputs have 2016 rows; the "
                                         r"palm_detection preset has 2016") as err:
        det.decode_ssd(np.zeros((1, 2016, 18)), np.zeros((1, 2016, 1)), config=config)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="enter the model's own SsdAnchorsCalculator options"):
        det.decode_ssd(np.zeros((1, 1000, 16)), np.zeros((1, 1000, 1)), config=config)
    with pytest.raises(InputError, match="reads 16 values per box"):
        det.decode_ssd(np.zeros((1, 896, 12)), np.zeros((1, 896, 1)), config=config)
    with pytest.raises(InputError, match="for one image"):
        det.decode_ssd(np.zeros((2, 896, 16)), np.zeros((2, 896, 1)), config=config)


def test_ssd_weighted_nms_merges_neighbouring_anchors_that_see_one_face():
    config = SsdPreset.FACE_SHORT_RANGE.config
    anchors = det.generate_anchors(config.anchors)
    regressors, logits = np.zeros((1, 896, 16)), np.full((1, 896, 1), -20.0)
    encode_face(regressors, 100, (40, 40, 80, 80), [(50, 50)] * 6, anchors=anchors)
    encode_face(regressors, 101, (44, 40, 84, 80), [(54, 50)] * 6, anchors=anchors)
    logits[0, 100, 0] = logits[0, 101, 0] = 2.0  # equal scores: the mean
    found = det.decode_ssd(regressors, logits, config=config)
    assert len(found) == 1
    assert found.boxes[0].tolist() == pytest.approx([42, 40, 82, 80], abs=1e-4)
    assert found.keypoints[0, 0].tolist() == pytest.approx([52, 50], abs=1e-4)


# ----------------------------------------------------------------------------------------------- YOLO


def yolo_output(*, normalized: bool = False, objectness: bool = False) -> np.ndarray:
    """[1, 4+C, A] with C = 3, A = 40, two objects (class 2 at 0.9, class 0 at 0.6), input 320x160."""
    rng = np.random.default_rng(0)
    channels = 4 + int(objectness) + 3
    table = np.zeros((40, channels))
    table[:, 0], table[:, 1] = rng.uniform(0, 320, 40), rng.uniform(0, 160, 40)
    table[:, 2:4] = rng.uniform(5, 40, (40, 2))
    table[:, -3:] = rng.uniform(0, 0.1, (40, 3))
    table[5, :4], table[5, -1] = [100, 50, 40, 20], 0.9
    table[6, :4], table[6, -1] = [102, 51, 40, 20], 0.8  # overlaps object 5, same class: suppressed
    table[7, :4], table[7, -3] = [250, 100, 60, 80], 0.6
    if objectness:
        table[:, 4] = 1.0
    if normalized:
        table[:, :4] /= [320, 160, 320, 160]
    return table.T[None]


EXPECTED_YOLO = [[80, 40, 120, 60], [220, 60, 280, 140]]


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_yolo_layouts_and_units_are_inferred_and_decoded(normalized, transposed):
    output = yolo_output(normalized=normalized)
    if transposed:
        output = output.transpose(0, 2, 1)
    fmt = YoloFormat.infer(output)
    assert fmt.layout is (YoloLayout.CHANNELS_LAST if transposed else YoloLayout.CHANNELS_FIRST)
    assert fmt.units is (BoxUnits.NORMALIZED if normalized else BoxUnits.PIXELS)
    assert fmt.num_classes == 3 and "inferred" not in fmt.describe() and fmt.units.value in fmt.describe()
    found = det.decode_yolo(output, fmt=fmt, input_size=(320, 160), min_score=0.25)
    assert found.boxes == pytest.approx(np.array(EXPECTED_YOLO))
    assert found.classes.tolist() == [2, 0] and found.scores.tolist() == pytest.approx([0.9, 0.6])


def test_yolo_nms_is_per_class_and_the_format_is_kept_for_variants():
    output = yolo_output()
    output[0, 4:, 6] = [0.0, 0.8, 0.0]  # the overlapping candidate now has class 1: kept
    fmt = YoloFormat.infer(output)
    found = det.decode_yolo(output, fmt=fmt, input_size=(320, 160))
    assert found.classes.tolist() == [2, 1, 0]
    collapsed = np.zeros_like(output)  # an int8 output with its boxes collapsed to 0: still read in pixels
    collapsed[0, 4:] = output[0, 4:]
    assert YoloFormat.infer(collapsed).units is BoxUnits.NORMALIZED
    assert det.decode_yolo(collapsed, fmt=fmt, input_size=(320, 160)).boxes[0].tolist() == [0, 0, 0, 0]


def test_yolo_objectness_multiplies_class_scores():
    output = yolo_output(objectness=True)
    output[0, 4, 7] = 0.5  # object 7's objectness halves its 0.6
    fmt = YoloFormat.infer(output, num_classes=3, objectness=True)
    assert fmt.layout is YoloLayout.CHANNELS_FIRST and fmt.channels == 8
    found = det.decode_yolo(output, fmt=fmt, input_size=(320, 160))
    assert found.scores.tolist() == pytest.approx([0.9, 0.3])


def test_yolo_shapes_that_cannot_be_read_are_refused_in_one_line():
    with pytest.raises(InputError, match="both axes could hold the candidates"):
        YoloFormat.infer(np.zeros((1, 8, 8)))
    assert YoloFormat.infer(np.zeros((1, 8, 8)), num_classes=4, layout=YoloLayout.CHANNELS_LAST).num_classes == 4
    with pytest.raises(InputError, match="no axis has 84 values"):
        YoloFormat.infer(np.zeros((1, 85, 8400)), num_classes=80)
    assert YoloFormat.infer(np.zeros((1, 8400, 84)), num_classes=80).layout is YoloLayout.CHANNELS_LAST
    with pytest.raises(InputError, match="one image's"):
        YoloFormat.infer(np.zeros((2, 84, 100)))
    fmt = YoloFormat.infer(yolo_output())
    with pytest.raises(InputError, match="has 7"):
        det.decode_yolo(np.zeros((1, 9, 40)), fmt=fmt, input_size=(320, 160))


# ----------------------------------------------------------------------------------------------- PostProcess


def test_postprocess_outputs_are_read_up_to_their_count():
    boxes = np.zeros((1, 10, 4), np.float32)
    boxes[0, 0] = [0.1, 0.2, 0.5, 0.6]  # ymin, xmin, ymax, xmax
    boxes[0, 1] = [0.0, 0.0, 1.0, 0.5]
    boxes[0, 2] = [0.5, 0.5, 0.75, 1.0]
    classes = np.array([[3, 0, 17, 5, 5, 5, 5, 5, 5, 5]], np.float32)
    scores = np.array([[0.9, 0.7, 0.8] + [0.0] * 7], np.float32)
    found = det.read_detection_postprocess(boxes=boxes, classes=classes, scores=scores,
                                           count=np.array([3.0], np.float32), input_size=(200, 100))
    assert found.boxes == pytest.approx(np.array([[40, 10, 120, 50], [100, 50, 200, 75], [0, 0, 100, 100]]))
    assert found.classes.tolist() == [3, 17, 0] and found.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert len(det.read_detection_postprocess(boxes=boxes, classes=classes, scores=scores, count=np.array([25.0]),
                                              input_size=(200, 100))) == 10
    with pytest.raises(InputError, match="count"):
        det.read_detection_postprocess(boxes=boxes, classes=classes, scores=scores, count=np.array([-1.0]),
                                       input_size=(200, 100))
    with pytest.raises(InputError, match=r"expected boxes \[1, N, 4\]"):
        det.read_detection_postprocess(boxes=boxes[0], classes=classes, scores=scores, count=np.array([3.0]),
                                       input_size=(200, 100))


# ----------------------------------------------------------------------------------------------- box fidelity


def test_identical_detections_agree_fully():
    reference = [dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8]), Detections.empty()]
    fidelity = det.box_fidelity(reference, reference)
    assert (fidelity.true_positives, fidelity.missed, fidelity.extra) == (2, 0, 0)
    assert (fidelity.precision, fidelity.recall, fidelity.f1) == (1.0, 1.0, 1.0)
    assert fidelity.mean_iou == 1.0 and fidelity.mean_score_error == 0.0 and fidelity.mean_keypoint_error_px is None
    assert fidelity.images[0].pairs == ((0, 0), (1, 1)) and fidelity.images[1].pairs == ()
    json.dumps(fidelity.to_dict())


def test_a_box_shifted_below_iou_half_is_a_miss_and_an_extra():
    reference = [dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8])]
    variant = [dets([[0, 0, 10, 10], [55, 50, 65, 60]], [0.85, 0.7])]  # shifted by half: IoU 1/3
    fidelity = det.box_fidelity(reference, variant)
    image = fidelity.images[0]
    assert image.pairs == ((0, 0),) and image.missed == (1,) and image.extra == (1,)
    assert (fidelity.precision, fidelity.recall, fidelity.f1) == (0.5, 0.5, 0.5)
    assert fidelity.mean_score_error == pytest.approx(0.05)
    nudged = [dets([[0, 0, 10, 10], [52, 50, 62, 60]], [0.85, 0.7])]  # IoU 80/120
    close = det.box_fidelity(reference, nudged)
    assert close.f1 == 1.0 and close.mean_iou == pytest.approx((1 + 80 / 120) / 2)


def test_matches_need_the_same_class_and_go_greedily_by_score():
    reference = [dets([[0, 0, 10, 10]], [0.9], [1])]
    assert det.box_fidelity(reference, [dets([[0, 0, 10, 10]], [0.9], [2])]).f1 == 0.0
    # Two variant boxes on one reference box: the better scored takes it although the other overlaps more.
    variant = [dets([[0, 0, 10, 10], [1, 0, 11, 10]], [0.5, 0.8], [1, 1])]
    image = det.box_fidelity(reference, variant).images[0]
    assert image.pairs == ((0, 1),) and image.extra == (0,) and image.ious == pytest.approx((90 / 110,))


def test_score_threshold_filters_both_sides_and_indices_stay_those_given():
    reference = [dets([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.9, 0.6, 0.3])]
    variant = [dets([[40, 0, 50, 10], [20, 0, 30, 10], [0, 0, 10, 10]], [0.35, 0.45, 0.95])]
    low = det.box_fidelity(reference, variant, score_threshold=0.2)
    assert low.f1 == 1.0 and low.images[0].pairs == ((0, 2), (1, 1), (2, 0))
    high = det.box_fidelity(reference, variant, score_threshold=0.5)
    assert high.images[0].pairs == ((0, 2),) and high.images[0].missed == (1,) and high.images[0].extra == ()
    assert high.recall == 0.5 and high.precision == 1.0 and high.score_threshold == 0.5


def test_keypoint_error_is_the_mean_distance_of_matched_keypoints_in_pixels():
    ref_points = np.zeros((1, 2, 2))
    var_points = np.array([[[3.0, 4.0], [0.0, 1.0]]])  # 5 px and 1 px
    fidelity = det.box_fidelity([dets([[0, 0, 10, 10]], [0.9], keypoints=ref_points)],
                                [dets([[0, 0, 10, 10]], [0.9], keypoints=var_points)])
    assert fidelity.mean_keypoint_error_px == pytest.approx(3.0)


def test_empty_sides_give_defined_figures():
    nothing = [Detections.empty()]
    one = [dets([[0, 0, 1, 1]], [0.9])]
    assert det.box_fidelity(nothing, nothing).f1 == 1.0
    lost = det.box_fidelity(one, nothing)
    assert (lost.precision, lost.recall, lost.f1, lost.mean_iou) == (1.0, 0.0, 0.0, None)
    invented = det.box_fidelity(nothing, one)
    assert (invented.precision, invented.recall, invented.f1) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="1 reference images but 2"):
        det.box_fidelity(one, one + one)


# ----------------------------------------------------------------------------------------------- image mapping


def test_image_to_input_mappings():
    stretch = ImageToInput.of(fit=Fit.STRETCH, image_size=(400, 200), input_size=(100, 100))
    assert stretch.boxes_to_input(np.array([[0, 0, 400, 200]])).tolist() == [[0, 0, 100, 100]]
    letterbox = ImageToInput.of(fit=Fit.LETTERBOX, image_size=(400, 200), input_size=(100, 100))
    assert letterbox.boxes_to_input(np.array([[0, 0, 400, 200]])).tolist() == [[0, 25, 100, 75]]
    crop = ImageToInput.of(fit=Fit.CENTER_CROP, image_size=(400, 200), input_size=(100, 100))
    assert crop.boxes_to_input(np.array([[100, 0, 300, 200]])).tolist() == [[0, 0, 100, 100]]
    found = dets([[0, 25, 50, 50]], [0.9], keypoints=np.array([[[50.0, 50.0]]]))
    back = letterbox.to_image(found)
    assert back.boxes.tolist() == [[0, 0, 200, 100]] and back.keypoints.tolist() == [[[200, 100]]]
    with pytest.raises(InputError, match="positive sizes"):
        ImageToInput.of(fit=Fit.STRETCH, image_size=(0, 10), input_size=(10, 10))


# ----------------------------------------------------------------------------------------------- ground truth


def write_coco(folder: Path, name: str = "truth.json", **changes) -> Path:
    data = {
        "images": [{"id": 7, "file_name": "val/astronaut.jpg", "width": 400, "height": 200},
                   {"id": 8, "file_name": "camera.png", "width": 400, "height": 200},
                   {"id": 9, "file_name": "not_uploaded.png"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [40, 20, 80, 40]},
                        {"id": 2, "image_id": 7, "category_id": 5, "bbox": [0, 0, 400, 200]},
                        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1},
                        {"id": 4, "image_id": 9, "category_id": 3, "bbox": [0, 0, 5000, 5000]}],
        "categories": [{"id": 5, "name": "b"}, {"id": 3, "name": "a"}],
    }
    data.update(changes)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def mappings(*names: str, size=(400, 200), fit=Fit.STRETCH) -> dict[str, ImageToInput]:
    return {name: ImageToInput.of(fit=fit, image_size=size, input_size=(100, 100)) for name in names}


def test_coco_json_is_read_into_input_pixels_by_file_name(tmp_path):
    truth = det.read_coco_json(write_coco(tmp_path), images=mappings("astronaut.png", "camera.png", "other.png"))
    assert sorted(truth) == ["astronaut.png", "camera.png"]  # other.png is not in the JSON: no entry
    astronaut = truth["astronaut.png"]
    assert astronaut.boxes.tolist() == [[10, 10, 30, 30], [0, 0, 100, 100]]  # the crowd box left out
    assert astronaut.classes.tolist() == [0, 1]  # categories 3, 5 in id order
    assert len(truth["camera.png"]) == 0
    mapped = det.read_coco_json(write_coco(tmp_path), images=mappings("astronaut.png"),
                                category_to_class={3: 7, 5: 0})
    assert mapped["astronaut.png"].classes.tolist() == [7, 0]


def test_bad_or_mismatched_coco_json_is_refused_in_one_line(tmp_path):
    cases = [
        (write_coco(tmp_path), mappings("nobody.png"), "none of its 3 images"),
        (write_coco(tmp_path), mappings("astronaut.png", size=(512, 512)),
         "400x200 in the JSON but the image is 512x512"),
        (write_coco(tmp_path, "outside.json", annotations=[{"id": 1, "image_id": 8, "category_id": 3,
                                                            "bbox": [300, 0, 200, 10]}]),
         mappings("camera.png"), "lies outside the 400x200 image"),
        (write_coco(tmp_path, "negative.json", annotations=[{"id": 1, "image_id": 8, "category_id": 3,
                                                             "bbox": [0, 0, -1, 10]}]),
         mappings("camera.png"), r"expected \[x, y, width, height\]"),
        (write_coco(tmp_path, "no_list.json", images="x"), mappings("camera.png"), "\"images\" is a string"),
    ]
    for path, images, message in cases:
        with pytest.raises(InputError, match=message) as err:
            det.read_coco_json(path, images=images)
        assert "\n" not in str(err.value)
    twice = write_coco(tmp_path, "twice.json", images=[{"id": 1, "file_name": "a/camera.png"},
                                                        {"id": 2, "file_name": "b/camera.png"}])
    with pytest.raises(InputError, match="listed twice"):
        det.read_coco_json(twice, images=mappings("camera.png"))
    odd = write_coco(tmp_path, "odd.json", annotations=[{"id": 1, "image_id": 8, "category_id": [3],
                                                         "bbox": [0, 0, 1, 1]}])
    with pytest.raises(InputError, match=r"category \[3\] is not one of"):
        det.read_coco_json(odd, images=mappings("camera.png"))
    with pytest.raises(InputError, match="category 5 is not one of"):
        det.read_coco_json(write_coco(tmp_path), images=mappings("astronaut.png"), category_to_class={3: 0})
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InputError, match="invalid JSON"):
        det.read_coco_json(broken, images=mappings("a.png"))


def test_yolo_txt_is_read_into_input_pixels(tmp_path):
    (tmp_path / "astronaut.txt").write_text("0 0.5 0.5 0.5 0.5\n\n2 0.25 0.75 0.1 0.2\n")
    images = mappings("people/astronaut.png", "camera.png", fit=Fit.LETTERBOX)
    truth = det.read_yolo_txt(tmp_path, images=images, num_classes=3)
    # 400x200 letterboxed into 100x100: scale 0.25, 25 px of padding above.
    assert truth["people/astronaut.png"].boxes == pytest.approx(np.array([[25, 37.5, 75, 62.5], [20, 57.5, 30, 67.5]]))
    assert truth["people/astronaut.png"].classes.tolist() == [0, 2]
    assert len(truth["camera.png"]) == 0  # no label file: no objects
    same = det.read_yolo_txt({"astronaut.txt": "0 0.5 0.5 0.5 0.5"}, images=images)
    assert same["people/astronaut.png"].boxes == pytest.approx(np.array([[25, 37.5, 75, 62.5]]))


@pytest.mark.parametrize(("text", "message"), [
    ("0 0.5 0.5 0.5", "4 values; expected 5"),
    ("0 0.5 0.5 0.5 0.5 0.1 0.1 0.2 0.2", "segmentation label"),
    ("3 0.5 0.5 0.5 0.5", "class 3; expected an integer from 0 to 2"),
    ("1.5 0.5 0.5 0.5 0.5", "class 1.5"),
    ("0 1.5 0.5 0.5 0.5", "expected cx cy w h as shares"),
    ("0 a b c d", "not five numbers"),
])
def test_bad_yolo_lines_are_refused_with_their_file_and_line(text, message):
    with pytest.raises(InputError, match=message) as err:
        det.read_yolo_txt({"a.txt": "0 0.5 0.5 0.1 0.1\n" + text}, images=mappings("a.png"), num_classes=3)
    assert str(err.value).startswith("a.txt line 2:")
    with pytest.raises(InputError, match="none of the 1 label files"):
        det.read_yolo_txt({"b.txt": "0 0.5 0.5 0.1 0.1"}, images=mappings("a.png"))


# ----------------------------------------------------------------------------------------------- mAP


TRUTH = [GroundTruth(np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float), np.array([0, 0])),
         GroundTruth(np.array([[5, 5, 25, 25]], float), np.array([1]))]


def test_map_of_perfect_detections_is_one():
    perfect = [dets(t.boxes, [0.9] * len(t), t.classes) for t in TRUTH]
    result = det.mean_average_precision(TRUTH, perfect)
    assert (result.map_50, result.map_50_95, result.images, result.objects) == (1.0, 1.0, 2, 3)
    json.dumps(result.to_dict())


def test_map_with_one_box_missing_is_cocos_101_point_value():
    truth = TRUTH[:1]
    found = [dets([[0, 0, 10, 10]], [0.9])]
    # Recall reaches 0.5 at precision 1, never more: 51 of COCO's 101 recall points have precision 1.
    result = det.mean_average_precision(truth, found)
    assert result.map_50 == pytest.approx(51 / 101) and result.map_50_95 == pytest.approx(51 / 101)


def test_map_counts_a_better_scored_false_positive_and_the_score_threshold():
    truth = [GroundTruth(np.array([[0, 0, 10, 10]], float), np.array([0]))]
    found = [dets([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8])]
    assert det.mean_average_precision(truth, found).map_50 == pytest.approx(0.5)  # precision 1/2 at full recall
    assert det.mean_average_precision(truth, found, score_threshold=0.85).map_50 == 0.0
    # IoU 0.62 (a taller box): found at IoU thresholds 0.5, 0.55 and 0.6, not at 0.65 ... 0.95: 3 of 10.
    loose = det.mean_average_precision(truth, [dets([[0, 0, 10, 10 / 0.62]], [0.9])])
    assert loose.map_50 == pytest.approx(1.0) and loose.map_50_95 == pytest.approx(0.3)


def test_map_without_true_boxes_is_undefined():
    result = det.mean_average_precision([GroundTruth(np.zeros((0, 4)), np.zeros(0))], [dets([[0, 0, 1, 1]], [0.9])])
    assert result.map_50 is None and result.map_50_95 is None


# ----------------------------------------------------------------------------------------------- the real face detector


def letterboxed(image: Image.Image, size: int) -> tuple[np.ndarray, ImageToInput]:
    """The photo fitted into the detector's square input, padded with black, in [-1, 1] (as MediaPipe feeds it)."""
    rgb = image.convert("RGB")
    side = max(rgb.size)
    square = Image.new("RGB", (side, side))
    square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    pixels = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 127.5 - 1.0
    return pixels, ImageToInput.of(fit=Fit.LETTERBOX, image_size=rgb.size, input_size=(size, size))


def manifest_faces() -> dict[str, dict]:
    """The sample build's face records by photo file name (its detector score and crop), if recorded."""
    if not MANIFEST.exists():
        return {}
    records = json.loads(MANIFEST.read_text()).get("face_images", [])
    return {Path(r["from"]).name: r for r in records if {"from", "detector_score", "crop_center_xy"} <= set(r)}


@pytest.mark.skipif(not FACE_MODEL.exists(), reason=f"{FACE_MODEL.name} is not in sample_models (built by "
                                                    "build_mediapipe_samples.py)")
def test_the_real_face_detector_finds_the_face_in_every_photo():
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(FACE_MODEL), num_threads=1)
    interpreter.allocate_tensors()
    config = SsdPreset.FACE_SHORT_RANGE.config
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    recorded = manifest_faces()
    photos = sorted(p for p in PEOPLE.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    assert len(photos) >= 5
    for path in photos:
        with Image.open(path) as image:
            x, mapping = letterboxed(image, 128)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None])
        interpreter.invoke()
        found = det.decode_ssd(interpreter.get_tensor(outputs["regressors"]),
                               interpreter.get_tensor(outputs["classificators"]), config=config)
        assert len(found) >= 1 and found.scores[0] >= 0.5, path.name
        box, eyes = found.boxes[0], found.keypoints[0, :2]
        assert np.all((eyes >= box[:2]) & (eyes <= box[2:])), path.name  # both eyes inside the face's box
        face = mapping.to_image(found.select(np.array([0])))
        if path.name in recorded:  # the sample build's own decoding of the same photo
            record = recorded[path.name]
            x0, y0, x1, y1 = face.boxes[0]
            assert found.scores[0] == pytest.approx(record["detector_score"], abs=1e-3), path.name
            assert [(x0 + x1) / 2, (y0 + y1) / 2] == pytest.approx(record["crop_center_xy"], abs=1.5), path.name
            assert 1.5 * max(x1 - x0, y1 - y0) == pytest.approx(record["crop_side"], abs=2.0), path.name

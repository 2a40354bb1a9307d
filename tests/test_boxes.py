"""quant_core.boxes: which decoder reads a detector's outputs, its kept boxes, and their totals against float32's.

Synthetic outputs and hand-made detections with answers worked out by hand; numpy only (no TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quant_core import boxes
from quant_core import detection as det
from quant_core._serde import from_jsonable, to_jsonable
from quant_core.boxes import MAX_KEPT, BoxSummary, Decoder, DecoderKind, ImageBoxes
from quant_core.detection import BoxUnits, Detections, SsdPreset, YoloLayout
from quant_core.errors import InputError
from quant_core.inputs.images import load_images
from quant_core.inputs.preprocess import Preprocessing
from quant_core.tasks import OutputSpec, Role

FACE_HW = (128, 128)


def spec(index: int, shape: tuple[int, ...], role: Role = Role.GENERIC) -> OutputSpec:
    """An output spec as `outputs.specs_of` gives one (only what the decoders read)."""
    return OutputSpec(index, f"out{index}", shape, role, None, f"out{index}", "")


def ssd_specs(anchors: int = 896, coords: int = 16) -> tuple[OutputSpec, ...]:
    return spec(0, (1, anchors, coords), Role.BOXES), spec(1, (1, anchors, 1), Role.BOX_SCORES)


def ssd_outputs(images: int = 2, anchors: int = 896, coords: int = 16, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Regressors and logits [images, A, K], [images, A, 1]: small random boxes, a few confident anchors."""
    rng = np.random.default_rng(seed)
    regressors = rng.normal(0, 3, (images, anchors, coords))
    regressors[:, :, 2:4] = rng.uniform(8, 30, (images, anchors, 2))
    logits = rng.normal(-6, 2, (images, anchors, 1))
    logits[:, rng.choice(anchors, 12, replace=False), 0] = 3.0
    return regressors, logits


def yolo_table(*, normalized: bool = False, candidates: int = 64, side: float = 256.0) -> np.ndarray:
    """[1, 7, A] channels first: cx, cy, w, h (pixels of a side x side input, or shares) and 3 class scores."""
    rng = np.random.default_rng(1)
    table = np.zeros((candidates, 7))
    table[:, :2] = rng.uniform(20, side - 20, (candidates, 2))
    table[:, 2:4] = rng.uniform(8, 40, (candidates, 2))
    table[:, 4:] = rng.uniform(0, 0.05, (candidates, 3))
    table[3, :4], table[3, 6] = [100, 60, 40, 30], 0.95
    table[9, :4], table[9, 4] = [200, 180, 30, 50], 0.7
    if normalized:
        table[:, :4] /= side
    return table.T[None]


YOLO_SPECS = (spec(0, (1, 7, 64), Role.BOXES),)
POSTPROCESS_SPECS = (spec(0, (1, 10, 4), Role.BOXES), spec(1, (1, 10)), spec(2, (1, 10)), spec(3, (1,)))


def postprocess_outputs() -> tuple[np.ndarray, ...]:
    """One image: two rows valid of ten (boxes ymin, xmin, ymax, xmax normalized), the rest padding."""
    found = np.zeros((1, 10, 4))
    found[0, 0], found[0, 1], found[0, 2] = [0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.5], [0.5, 0.5, 0.9, 0.9]
    classes = np.array([[3, 0, 1] + [0] * 7], float)
    scores = np.array([[0.9, 0.05, 0.8] + [0.0] * 7])
    return found, classes, scores, np.array([2.0])


def dets(found: list, scores: list, classes: list | None = None, keypoints: np.ndarray | None = None) -> Detections:
    classes = [0] * len(scores) if classes is None else classes
    return Detections(np.array(found, float).reshape(-1, 4), np.array(scores, float), np.array(classes), keypoints)


# ----------------------------------------------------------------------------------------------- inferring


def test_two_ssd_outputs_with_a_presets_anchor_count_get_that_preset():
    decoder = boxes.infer_decoder(ssd_specs(), ssd_outputs(), input_hw=FACE_HW)
    assert decoder is not None and decoder.kind is DecoderKind.SSD and not decoder.set_by_user
    assert decoder.ssd == SsdPreset.FACE_SHORT_RANGE.config and decoder.outputs == (0, 1)
    assert decoder.input_size == (128, 128) and decoder.threshold == 0.5 and decoder.keypoints == 6
    assert decoder.floor == boxes.FLOOR and decoder.choice == "ssd:face_detection_short_range"
    assert "896 anchors and 16 values per box" in decoder.description
    swapped = (spec(0, (1, 896, 1), Role.BOX_SCORES), spec(1, (1, 896, 16), Role.BOXES))
    outs = ssd_outputs()
    found = boxes.infer_decoder(swapped, (outs[1], outs[0]), input_hw=FACE_HW)
    assert found is not None and found.outputs == (1, 0)


@pytest.mark.parametrize(("anchors", "coords"), [(1000, 16), (896, 12)])
def test_ssd_outputs_no_preset_fits_leave_the_choice_to_the_user(anchors, coords):
    assert boxes.infer_decoder(ssd_specs(anchors, coords), ssd_outputs(anchors=anchors, coords=coords),
                               input_hw=FACE_HW) is None


def test_one_yolo_output_with_pixel_boxes_reads_channels_first_with_three_classes():
    decoder = boxes.infer_decoder(YOLO_SPECS, (yolo_table(),), input_hw=(256, 256))
    assert decoder is not None and decoder.kind is DecoderKind.YOLO and decoder.outputs == (0,)
    assert decoder.yolo is not None and decoder.yolo.layout is YoloLayout.CHANNELS_FIRST
    assert decoder.yolo.units is BoxUnits.PIXELS and decoder.yolo.num_classes == 3
    assert decoder.threshold == boxes.YOLO_THRESHOLD and decoder.floor == boxes.FLOOR and decoder.keypoints == 0
    assert decoder.input_size == (256, 256) and decoder.choice == "yolo"
    wide = boxes.infer_decoder(YOLO_SPECS, (yolo_table(),), input_hw=(128, 320))
    assert wide is not None and wide.input_size == (320, 128)  # (width, height)


def test_four_postprocess_outputs_read_as_the_op_and_no_boxes_role_reads_as_nothing():
    decoder = boxes.infer_decoder(POSTPROCESS_SPECS, postprocess_outputs(), input_hw=(100, 200))
    assert decoder is not None and decoder.kind is DecoderKind.POSTPROCESS
    assert decoder.outputs == (0, 1, 2, 3) and decoder.input_size == (200, 100) and decoder.choice == "postprocess"
    plain = tuple(spec(s.index, s.shape) for s in ssd_specs())
    assert boxes.infer_decoder(plain, ssd_outputs(), input_hw=FACE_HW) is None


def test_choices_list_what_the_outputs_can_hold():
    assert boxes.choices(ssd_specs()) == ("ssd:face_detection_short_range",)  # two [1, A, n] outputs: not YOLO
    assert boxes.choices(ssd_specs(2016, 18))[0] == "ssd:palm_detection"
    assert boxes.choices(YOLO_SPECS) == ("yolo",)
    assert "postprocess" in boxes.choices(POSTPROCESS_SPECS)
    assert boxes.choices((spec(0, (1, 10), Role.CLASS_SCORES),)) == ()


# ----------------------------------------------------------------------------------------------- choosing


def test_chosen_presets_yolo_and_postprocess_are_read_back():
    preset = boxes.parse_decoder(" ssd:face_detection_short_range ", ssd_specs(), ssd_outputs(), input_hw=FACE_HW)
    assert preset.set_by_user and preset.ssd == SsdPreset.FACE_SHORT_RANGE.config and "chosen" in preset.description
    yolo = boxes.parse_decoder("yolo:classes=3 layout=channels_first", YOLO_SPECS, (yolo_table(),),
                               input_hw=(256, 256))
    assert yolo.set_by_user and yolo.yolo is not None and yolo.yolo.num_classes == 3
    again = boxes.parse_decoder("YOLO", YOLO_SPECS, (yolo_table(),), input_hw=(256, 256)).yolo
    assert again is not None and (again.layout, again.units, again.num_classes) == (
        YoloLayout.CHANNELS_FIRST, BoxUnits.PIXELS, 3)
    five = boxes.parse_decoder("yolo:objectness=1", YOLO_SPECS, (yolo_table(),), input_hw=(256, 256))
    assert five.yolo is not None and five.yolo.objectness and five.yolo.num_classes == 2
    post = boxes.parse_decoder("postprocess", POSTPROCESS_SPECS, postprocess_outputs(), input_hw=(100, 200))
    assert post.kind is DecoderKind.POSTPROCESS and post.set_by_user


def test_custom_ssd_anchors_with_the_face_values_decode_as_the_face_preset():
    outs = ssd_outputs()
    custom = boxes.parse_decoder("ssd:custom strides=8,16,16,16 keypoints=6", ssd_specs(), outs, input_hw=FACE_HW)
    assert custom.ssd is not None and custom.ssd.name == "custom" and custom.ssd.num_anchors == 896
    assert custom.keypoints == 6 and custom.threshold == 0.5 and custom.choice == "ssd:custom"
    assert "custom SSD anchors (896 anchors, 6 keypoints)" in custom.description
    preset = boxes.infer_decoder(ssd_specs(), outs, input_hw=FACE_HW)
    assert preset is not None
    mine, theirs = boxes.decode(custom, outs), boxes.decode(preset, outs)
    assert [len(d) for d in mine] == [len(d) for d in theirs] and all(len(d) for d in mine)
    for a, b in zip(mine, theirs):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.keypoints, b.keypoints)
    stricter = boxes.parse_decoder("ssd:custom keypoints=6 min_score=0.7 nms_iou=0.5", ssd_specs(), outs,
                                   input_hw=FACE_HW)
    assert stricter.threshold == 0.7 and stricter.ssd is not None and stricter.ssd.nms.iou_threshold == 0.5


@pytest.mark.parametrize(("text", "specs", "message"), [
    ("centernet", "ssd", r"decoder 'centernet': expected ssd:<preset>.*this model fits "
                         r"ssd:face_detection_short_range$"),
    ("", "ssd", "decoder ''"),
    ("ssd:nosuch", "ssd", "SSD preset 'nosuch': expected one of face_detection_short_range"),
    ("ssd:palm_detection", "ssd", "the palm_detection preset has 2016|2016 anchors"),
    ("ssd:face_detection_short_range", "ssd_192", "anchors for a 128x128 input, but the model's input is 192x192"),
    ("ssd:face_detection_short_range", "yolo", "SSD decoding reads two outputs"),
    ("ssd:custom strides=8,x", "ssd", "strides must be whole numbers"),
    ("ssd:custom keypoints=6 colour=red", "ssd", "unknown option colour"),
    ("ssd:custom keypoints", "ssd", "'keypoints'; expected key=value"),
    ("ssd:custom keypoints=inf", "ssd", "keypoints must be a finite number"),
    ("ssd:custom keypoints=6 min_scale=abc", "ssd", "min_scale='abc'; expected a number"),
    ("yolo:classes=abc", "yolo", "classes must be a whole number"),
    ("yolo:layout=diagonal", "yolo", "layout channels_first or channels_last"),
    ("yolo:classes=5", "yolo", "no axis has 9 values"),
    ("yolo:anchors=3", "yolo", "unknown option anchors"),
    ("yolo", "two_boxes", "this model has 2 such outputs"),
    ("postprocess", "ssd", "expected the four outputs of TFLite_Detection_PostProcess"),
])
def test_bad_decoder_texts_are_refused_in_one_line(text, specs, message):
    cases = {
        "ssd": (ssd_specs(), ssd_outputs(), FACE_HW),
        "ssd_192": (ssd_specs(), ssd_outputs(), (192, 192)),
        "yolo": (YOLO_SPECS, (yolo_table(),), (256, 256)),
        "two_boxes": ((spec(0, (1, 7, 64), Role.BOXES), spec(1, (1, 7, 64), Role.BOXES)),
                      (yolo_table(), yolo_table()), (256, 256)),
    }
    given, outs, hw = cases[specs]
    with pytest.raises(InputError, match=message) as err:
        boxes.parse_decoder(text, given, outs, input_hw=hw)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------- decoding


def test_decode_keeps_at_most_max_kept_per_image_best_first_and_nothing_under_the_floor():
    side, grid = 400, 15  # 225 separate 10-pixel boxes, scores spread from 0.01 to 0.99
    cells = np.arange(grid * grid)
    table = np.zeros((grid * grid, 5))
    table[:, 0], table[:, 1] = 13 + 26 * (cells % grid), 13 + 26 * (cells // grid)
    table[:, 2:4] = 10.0
    table[:, 4] = np.linspace(0.01, 0.99, len(cells))
    output = np.concatenate([table.T[None], table.T[None] * [[1], [1], [1], [1], [0.5]]])  # image 2: half scores
    specs = (spec(0, (1, 5, grid * grid), Role.BOXES),)
    decoder = boxes.infer_decoder(specs, (output,), input_hw=(side, side))
    assert decoder is not None and decoder.yolo is not None and decoder.yolo.num_classes == 1
    first, second = boxes.decode(decoder, (output,))
    above = int((table[:, 4] >= boxes.FLOOR).sum())
    assert above > MAX_KEPT and len(first) == MAX_KEPT
    assert first.scores.tolist() == sorted(table[:, 4], reverse=True)[:MAX_KEPT]
    assert len(second) == MAX_KEPT and second.scores.min() >= boxes.FLOOR
    halved = boxes.decode(decoder, (output[1:] * [[1], [1], [1], [1], [0.2]],))[0]  # scores up to 0.099
    assert len(halved) == 0


def test_decode_reads_ssd_and_postprocess_outputs_down_to_the_floor():
    outs = ssd_outputs(images=3)
    decoder = boxes.infer_decoder(ssd_specs(), outs, input_hw=FACE_HW)
    assert decoder is not None
    found = boxes.decode(decoder, outs)
    assert len(found) == 3 and all(0 < len(d) <= MAX_KEPT and d.scores.min() >= boxes.FLOOR for d in found)
    assert any(d.scores.min() < decoder.threshold for d in found)  # kept under the headline threshold too
    for i, d in enumerate(found):
        alone = det.decode_ssd(outs[0][i:i + 1], outs[1][i:i + 1], config=decoder.ssd, min_score=boxes.FLOOR)
        assert np.array_equal(d.boxes, alone.boxes)
    post = boxes.infer_decoder(POSTPROCESS_SPECS, postprocess_outputs(), input_hw=(100, 200))
    assert post is not None
    (one,) = boxes.decode(post, postprocess_outputs())
    assert one.boxes == pytest.approx(np.array([[40, 10, 120, 50]])) and one.classes.tolist() == [3]  # 0.05 < floor


# ----------------------------------------------------------------------------------------------- kept boxes


def test_image_boxes_round_to_a_tenth_of_a_pixel_and_come_back_as_detections():
    found = dets([[10.04, 20.06, 30.0, 40.0], [1, 2, 3, 4]], [0.912345, 0.5], [2, 0],
                 np.array([[[1.04, 2.0], [3.0, 4.06]], [[0, 0], [1, 1]]]))
    kept = ImageBoxes.of(found)
    assert kept.boxes == ((10.0, 20.1, 30.0, 40.0), (1.0, 2.0, 3.0, 4.0)) and kept.scores == (0.9123, 0.5)
    assert kept.classes == (2, 0) and kept.keypoints[0] == ((1.0, 2.0), (3.0, 4.1))
    back = kept.detections()
    assert back.boxes.tolist() == [[10.0, 20.1, 30.0, 40.0], [1, 2, 3, 4]] and back.scores.tolist() == [0.9123, 0.5]
    assert back.classes.tolist() == [2, 0] and back.keypoints.shape == (2, 2, 2)
    assert ImageBoxes.of(back) == kept
    plain = ImageBoxes.of(dets([[0, 0, 5, 5]], [0.7]))
    assert plain.keypoints == () and plain.detections().keypoints is None
    assert plain.detections(keypoints=6).keypoints.shape == (1, 6, 2)
    empty = ImageBoxes()
    assert len(empty.detections()) == 0 and empty.detections(keypoints=6).keypoints.shape == (0, 6, 2)
    assert [len(d) for d in boxes.kept((kept, plain, empty))] == [2, 1, 0]


def test_image_boxes_and_decoders_round_trip_through_json():
    kept = (ImageBoxes.of(dets([[10.04, 20.06, 30.0, 40.0]], [0.91], [1], np.array([[[1.0, 2.0]]]))),
            ImageBoxes(), ImageBoxes.of(dets([[0, 0, 5, 5]], [0.7])))
    text = json.dumps(to_jsonable(kept))
    assert from_jsonable(tuple[ImageBoxes, ...], json.loads(text)) == kept
    decoders = [boxes.infer_decoder(ssd_specs(), ssd_outputs(), input_hw=FACE_HW),
                boxes.parse_decoder("ssd:custom keypoints=6 min_score=0.6", ssd_specs(), ssd_outputs(),
                                    input_hw=FACE_HW),
                boxes.infer_decoder(YOLO_SPECS, (yolo_table(),), input_hw=(256, 256)),
                boxes.infer_decoder(POSTPROCESS_SPECS, postprocess_outputs(), input_hw=(100, 200))]
    for decoder in decoders:
        back = from_jsonable(Decoder, json.loads(json.dumps(to_jsonable(decoder))))
        assert back == decoder and back.choice == decoder.choice


# ----------------------------------------------------------------------------------------------- against float32


def hand_made() -> tuple[list[Detections], list[Detections]]:
    """Float32's and a variant's detections on three images, threshold 0.5.

    Image 0: a match at IoU 0.8 (score 0.9 vs 0.7, keypoints 3 px and 5 px apart), a miss (0.8),
    an extra (0.6); both sides' 0.3 boxes are under the threshold. Image 1: a perfect match.
    Image 2: nothing on either side.
    """
    points = np.zeros((3, 2, 2))
    moved = np.zeros((3, 2, 2))
    moved[0] = [[3, 0], [0, 5]]  # distances 3 and 5: mean 4
    reference = [dets([[0, 0, 10, 10], [20, 20, 30, 30], [70, 70, 80, 80]], [0.9, 0.8, 0.3], keypoints=points),
                 dets([[5, 5, 15, 15]], [0.6], [2], np.zeros((1, 2, 2))), dets([], [], [], np.zeros((0, 2, 2)))]
    variant = [dets([[0, 0, 10, 8], [50, 50, 60, 60], [20, 20, 30, 30]], [0.7, 0.6, 0.3], keypoints=moved),
               dets([[5, 5, 15, 15]], [0.6], [2], np.zeros((1, 2, 2))), dets([], [], [], np.zeros((0, 2, 2)))]
    return reference, variant


def test_box_summary_counts_matches_misses_and_extras_exactly():
    reference, variant = hand_made()
    summary = BoxSummary.of(reference, variant, threshold=0.5)
    assert (summary.reference_boxes, summary.true_positives, summary.missed, summary.extra) == (3, 2, 1, 1)
    assert summary.precision == pytest.approx(2 / 3) and summary.recall == pytest.approx(2 / 3)
    assert summary.f1 == pytest.approx(2 / 3)
    assert summary.mean_iou == pytest.approx((0.8 + 1.0) / 2)
    assert summary.mean_score_error == pytest.approx((0.2 + 0.0) / 2)
    assert summary.mean_keypoint_error_px == pytest.approx((4.0 + 0.0) / 2) and summary.keypoint_matches == 2
    assert summary.map_50 is None and summary.figures()["f1"] == summary.f1
    loose = BoxSummary.of(reference, variant, threshold=0.2)  # the variant's 0.3 box now matches the miss
    assert (loose.reference_boxes, loose.true_positives, loose.missed, loose.extra) == (4, 3, 1, 1)
    same = BoxSummary.of(reference, reference, threshold=0.5)
    assert same.f1 == 1.0 and same.mean_iou == 1.0 and same.mean_keypoint_error_px == 0.0
    nothing = BoxSummary.of(reference[2:], variant[2:], threshold=0.5)
    assert nothing.f1 == 1.0 and nothing.mean_iou is None and nothing.mean_keypoint_error_px is None


def test_shards_merged_equal_the_summary_of_all_images():
    reference, variant = hand_made()
    whole = BoxSummary.of(reference, variant, threshold=0.5)
    first = BoxSummary.of(reference[:1], variant[:1], threshold=0.5)
    rest = BoxSummary.of(reference[1:], variant[1:], threshold=0.5)
    merged = first.merged(rest)
    assert merged.figures() == pytest.approx(whole.figures())
    assert (merged.reference_boxes, merged.true_positives, merged.missed, merged.extra, merged.keypoint_matches) == (
        whole.reference_boxes, whole.true_positives, whole.missed, whole.extra, whole.keypoint_matches)
    scored = boxes.with_truth(first, [det.GroundTruth(np.array([[0, 0, 10, 10]], float), np.array([0]))],
                              variant[:1])
    assert scored.map_50 is not None and scored.merged(rest).map_50 is None  # mAP is not additive


# ----------------------------------------------------------------------------------------------- the shared scale


def test_shared_scale_finds_pixel_boxes_beside_probabilities_in_one_tensor():
    pixels = yolo_table()
    decoder = boxes.infer_decoder(YOLO_SPECS, (pixels,), input_hw=(256, 256))
    found = boxes.shared_scale(decoder, (pixels,))
    assert found is not None and found.output == 0 and found.classes == 3
    assert found.box_range == pytest.approx(np.abs(pixels[0, :4]).max()) and found.score_range == pytest.approx(0.95)
    assert found.steps == pytest.approx(255 * 0.95 / (2 * found.box_range)) and found.steps < 1.5
    words = found.sentence("head_output")
    assert "head_output holds box coordinates up to" in words and "3 class scores up to 0.95" in words
    assert "about 1 int8 step " in words and "int16x8" in words
    shares = yolo_table(normalized=True)
    normal = boxes.infer_decoder(YOLO_SPECS, (shares,), input_hw=(256, 256))
    assert normal is not None and normal.yolo is not None and normal.yolo.units is BoxUnits.NORMALIZED
    assert boxes.shared_scale(normal, (shares,)) is None
    assert boxes.shared_scale(None, (pixels,)) is None
    ssd = boxes.infer_decoder(ssd_specs(), ssd_outputs(), input_hw=FACE_HW)
    assert boxes.shared_scale(ssd, ssd_outputs()) is None


def test_described_specs_name_a_yolo_outputs_channels():
    first = boxes.infer_decoder(YOLO_SPECS, (yolo_table(),), input_hw=(256, 256))
    (said,) = boxes.described(YOLO_SPECS, first)
    assert said.channel_axis == 1
    assert said.description.startswith("out0 [1,7,64]: 64 candidate boxes of cx, cy, w, h (pixels)")
    assert said.description.endswith("and 3 class scores")
    last_specs = (spec(0, (1, 64, 7), Role.BOXES),)
    last = boxes.infer_decoder(last_specs, (yolo_table().transpose(0, 2, 1),), input_hw=(256, 256))
    assert last is not None and last.yolo is not None and last.yolo.layout is YoloLayout.CHANNELS_LAST
    (kept,) = boxes.described(last_specs, last)
    assert kept.channel_axis == -1 and "64 candidate boxes" in kept.description
    ssd = boxes.infer_decoder(ssd_specs(), ssd_outputs(), input_hw=FACE_HW)
    assert boxes.described(ssd_specs(), ssd) == ssd_specs() == boxes.described(ssd_specs(), None)


# ----------------------------------------------------------------------------------------------- ground truth


@pytest.fixture()
def three_images(tmp_path) -> Path:
    """a.png and b.png 200x100, c.jpg 100x100, in a folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name, size in (("a.png", (200, 100)), ("b.png", (200, 100)), ("c.jpg", (100, 100))):
        Image.new("RGB", size, (90, 120, 150)).save(folder / name)
    return folder


YOLO_INPUT = Preprocessing(height=100, width=100, channels=3)


def test_truth_from_yolo_txt_files_lands_in_input_pixels(three_images, tmp_path):
    images = load_images([three_images])
    decoder = boxes.infer_decoder(YOLO_SPECS, (yolo_table(side=100),), input_hw=(100, 100))
    assert decoder is not None
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n2 0.25 0.75 0.1 0.2\n")
    (labels / "c.txt").write_text("1 0.1 0.1 0.2 0.2\n")
    truth, words = boxes.read_truth([str(labels)], images, YOLO_INPUT, decoder)
    assert words == "YOLO boxes of 2 images, 3 objects"
    a, b, c = truth
    assert a is not None and a.boxes == pytest.approx(np.array([[25, 25, 75, 75], [20, 65, 30, 85]]))  # stretched
    assert a.classes.tolist() == [0, 2]
    assert b is not None and len(b) == 0  # no label file: no objects
    assert c is not None and c.boxes == pytest.approx(np.array([[0, 0, 20, 20]])) and c.classes.tolist() == [1]
    one_file, said = boxes.read_truth([str(labels / "c.txt")], images, YOLO_INPUT, decoder)
    assert said == "YOLO boxes of 1 images, 1 objects" and one_file[2] is not None and len(one_file[2]) == 1
    cropped, _ = boxes.read_truth([str(labels)], images, Preprocessing(100, 100, 3, center_crop=True), decoder)
    assert cropped[0] is not None  # the centred 100x100 of a 200x100 image
    assert cropped[0].boxes[0].tolist() == pytest.approx([0, 25, 100, 75])
    (labels / "b.txt").write_text("3 0.5 0.5 0.1 0.1\n")  # class 3 of a 3-class detector
    with pytest.raises(InputError, match="b.txt line 1: class 3") as err:
        boxes.read_truth([str(labels)], images, YOLO_INPUT, decoder)
    assert "\n" not in str(err.value)
    odd = tmp_path / "boxes.csv"
    odd.write_text("a,b")
    with pytest.raises(InputError, match="boxes.csv is neither a COCO .json file nor a YOLO .txt file"):
        boxes.read_truth([str(odd)], images, YOLO_INPUT, decoder)


def test_truth_from_a_coco_json_matches_images_by_file_name(three_images, tmp_path):
    images = load_images([three_images])
    decoder = boxes.infer_decoder(YOLO_SPECS, (yolo_table(side=100),), input_hw=(100, 100))
    assert decoder is not None
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100},
                       {"id": 2, "file_name": "c.jpg", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [50, 25, 100, 50]},
                            {"id": 2, "image_id": 2, "category_id": 9, "bbox": [0, 0, 10, 20]}],
            "categories": [{"id": 7, "name": "ellipse"}, {"id": 9, "name": "triangle"}]}
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(coco))
    truth, words = boxes.read_truth([str(path)], images, YOLO_INPUT, decoder)
    assert words == "COCO boxes of 2 images (truth.json), 2 objects"
    a, b, c = truth
    assert a is not None and a.boxes == pytest.approx(np.array([[25, 25, 75, 75]])) and a.classes.tolist() == [0]
    assert b is None  # not in the JSON: not annotated
    assert c is not None and c.boxes == pytest.approx(np.array([[0, 0, 10, 20]])) and c.classes.tolist() == [1]
    path.write_text("{")
    with pytest.raises(InputError, match="invalid JSON"):
        boxes.read_truth([str(path)], images, YOLO_INPUT, decoder)

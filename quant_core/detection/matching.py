"""A variant's detections matched with float32's: per image, and summed over images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant_core.detection.found import Detections, iou_matrix

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



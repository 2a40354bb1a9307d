"""mAP@0.5 and mAP@0.5:0.95 of detections against ground truth (pycocotools' COCOeval)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant_core.detection.found import Detections
from quant_core.detection.truth import GroundTruth

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

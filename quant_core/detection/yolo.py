"""YOLO-style single outputs ([1, 4+C, A] or [1, A, 4+C]) and TFLite_Detection_PostProcess's four outputs."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from quant_core.detection.found import Detections, Size, nms
from quant_core.errors import InputError

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



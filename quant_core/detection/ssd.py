"""Anchor-based SSD heads: MediaPipe's anchors, box and keypoint decoding and presets."""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quant_core.detection.found import Detections, NmsAlgorithm, NmsOptions, Size, frozen_array, suppress
from quant_core.errors import InputError

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
    return frozen_array(np.concatenate(parts), np.float64)


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
    nms: NmsOptions = NmsOptions()  # noqa: RUF009  (a frozen dataclass: one shared default is safe)
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



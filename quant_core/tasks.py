"""What each output of a model is (its role) and what the model does (its task), inferred and overridable.

A model with one image input may have any number of outputs. Each gets a `Role`, inferred
from its shape, its name and the values the float model gives on the user's images
(`infer_outputs`); the roles give the model's `Task` (`task_of`). Every decision is kept
as evidence and said in one line (`OutputSpec.description`), and the user can override
any role (`with_roles`, `parse_roles`) or the task (`with_task`, `parse_task`).

Pure numpy: no TensorFlow, no LiteRT; cheap to import.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from quant_core.errors import InputError, parse_choice


class Task(enum.StrEnum):
    """What a model does, decided by its main output."""

    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"
    LANDMARKS = "landmarks"
    EMBEDDING = "embedding"
    DETECTION = "detection"
    GENERIC = "generic"


class Role(enum.StrEnum):
    """What one output of a model holds."""

    CLASS_SCORES = "class_scores"  # [1, classes]: probabilities or logits
    MASK = "mask"  # [1, H, W, 1]: one channel per pixel, probabilities (sigmoid) or logits
    CLASS_MAP = "class_map"  # [1, H, W, C>1]: C class scores per pixel (softmax or logits)
    LANDMARKS = "landmarks"  # K points of D values, flattened [1, K*D] / [1, 1, 1, K*D] or [1, K, D]
    HEATMAPS = "heatmaps"  # [1, h, w, K] small maps, one per keypoint
    EMBEDDING = "embedding"  # [1, D] vector, raw or L2-normalised
    SCORE = "score"  # a few scalars: presence, handedness ([1, 1], [1, 1, 1, 1], [1, 2])
    BOXES = "boxes"  # [1, N, 4+] detection regressors (anchor offsets, keypoints)
    BOX_SCORES = "box_scores"  # [1, N, 1] a score per anchor
    GENERIC = "generic"  # anything else: compared as a tensor only


class CoordSpace(enum.StrEnum):
    """Where the x, y values of points lie."""

    PIXELS = "pixels"  # the model's input pixels
    NORMALIZED = "normalized"  # [0, 1] of the input's width and height
    UNKNOWN = "unknown"  # neither (e.g. world coordinates in metres): errors stay in the output's units


TASK_OF_ROLE: Mapping[Role, Task] = {
    Role.BOXES: Task.DETECTION, Role.BOX_SCORES: Task.DETECTION,
    Role.LANDMARKS: Task.LANDMARKS, Role.HEATMAPS: Task.LANDMARKS,
    Role.MASK: Task.SEGMENTATION, Role.CLASS_MAP: Task.SEGMENTATION,
    Role.EMBEDDING: Task.EMBEDDING, Role.CLASS_SCORES: Task.CLASSIFICATION,
    Role.SCORE: Task.GENERIC, Role.GENERIC: Task.GENERIC,
}
# Most specific first: a pose model's landmarks outrank its side mask; a detector's boxes outrank its keypoints.
SPECIFICITY: tuple[Task, ...] = (Task.DETECTION, Task.LANDMARKS, Task.SEGMENTATION, Task.EMBEDDING,
                                 Task.CLASSIFICATION, Task.GENERIC)
# The roles that carry each task, preferred first (what `with_task` gives an output).
TASK_ROLES: Mapping[Task, tuple[Role, ...]] = {
    Task.CLASSIFICATION: (Role.CLASS_SCORES,), Task.SEGMENTATION: (Role.MASK, Role.CLASS_MAP),
    Task.LANDMARKS: (Role.LANDMARKS, Role.HEATMAPS), Task.EMBEDDING: (Role.EMBEDDING,),
    Task.DETECTION: (Role.BOXES,), Task.GENERIC: (Role.GENERIC,),
}

INSIDE_SHARE = 0.5  # points whose (x, y) lie in the frame, at least: coordinates, not some other vector
MIN_SPREAD = 0.05  # pixel points spread over at least this share of the input size (world metres do not)
MIN_EMBEDDING = 16  # values in a vector read as an embedding


@dataclass(frozen=True)
class PointLayout:
    """How an output's values read as points: K points of D values, and where their x, y lie.

    Kept for every output whose shape can hold points, whatever its role, so that a role
    set later (`with_roles`, without the images' outputs at hand) still knows its units.
    """

    points: int
    coords: int  # values per point: x, y first (then z, visibility, ...)
    space: CoordSpace
    inside: float  # share of points inside the frame in `space` (0 when unknown)


@dataclass(frozen=True)
class OutputSpec:
    """One output of a model: what it is and why the workbench thinks so."""

    index: int
    name: str
    shape: tuple[int, ...]
    role: Role
    value_range: tuple[float, float] | None  # (min, max) of the float model's finite outputs on the images
    description: str  # one line, e.g. "segment_back [1,144,256,1]: a mask, values in [0, 1]"
    evidence: str  # the rules that decided, e.g. "one channel per pixel; values in [0, 1]: probabilities"
    layout: PointLayout | None = None  # how the values read as points (any output whose shape can hold them)
    set_by_user: bool = False
    channel_axis: int = -1  # the axis whose entries are its channels (1 for a YOLO [1, 4+C, A] output)
    channel_names: tuple[str, ...] = ()  # each channel in words when the role's word is not enough (a YOLO output's)

    @property
    def points(self) -> int | None:
        """Landmarks: K points; heatmaps: K maps; else None."""
        if self.role is Role.HEATMAPS:
            return self.shape[-1]
        return self.layout.points if self.role is Role.LANDMARKS and self.layout else None

    @property
    def coords(self) -> int | None:
        """Landmarks: values per point (2: x, y; 3: x, y, z; more: extra values per point); else None."""
        return self.layout.coords if self.role is Role.LANDMARKS and self.layout else None

    @property
    def space(self) -> CoordSpace | None:
        """Landmarks: where their x, y lie (heatmap peaks are always in input pixels); else None."""
        if self.role is Role.HEATMAPS:
            return CoordSpace.PIXELS
        return self.layout.space if self.role is Role.LANDMARKS and self.layout else None

    @property
    def mask_threshold(self) -> float:
        """The value splitting foreground from background: 0.5 for probabilities, 0 for logits."""
        return 0.5 if _within_unit(self.value_range) else 0.0

    @property
    def shape_text(self) -> str:
        """The shape as written in descriptions: [1,256,256,1]."""
        return "[" + ",".join(str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class _Facts:
    """What the rules look at for one output."""

    name: str  # lower case
    shape: tuple[int, ...]
    values: np.ndarray  # floats [images, *shape[1:]]
    input_hw: tuple[int, int]
    sole: bool  # the model's only output
    heatmap_k: int | None = None  # K of a heatmaps output of the same model
    landmark_shapes: frozenset[tuple[int, ...]] = frozenset()  # shapes of outputs read as landmarks

    @property
    def vector(self) -> int | None:
        """D when the shape is a vector [1, D] or [1, 1, 1, D]."""
        return _vector(self.shape)

    @property
    def dense(self) -> tuple[int, int, int] | None:
        """(h, w, C) when the shape is a map [1, h, w, C]."""
        return _dense(self.shape)

    @property
    def rows(self) -> tuple[int, int] | None:
        """(N, F) when the shape is [1, N, F]."""
        return _rows(self.shape)


def _vector(shape: tuple[int, ...]) -> int | None:
    """D when the shape is [1, D] or [1, 1, 1, D] (every middle dimension 1)."""
    return shape[-1] if len(shape) >= 2 and all(d == 1 for d in shape[1:-1]) else None


def _dense(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(h, w, C) when the shape is a map [1, h, w, C] with h, w > 1."""
    return (shape[1], shape[2], shape[3]) if len(shape) == 4 and shape[1] > 1 and shape[2] > 1 else None


def _rows(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(N, F) when the shape is [1, N, F] with N > 1."""
    return (shape[1], shape[2]) if len(shape) == 3 and shape[1] > 1 else None


@dataclass(frozen=True)
class _Verdict:
    """A rule's decision: the role and why."""

    role: Role
    evidence: str


Rule = Callable[[_Facts, PointLayout | None], _Verdict | None]


def infer_outputs(outputs: Sequence[tuple[str, tuple[int, ...]]], samples: Sequence[np.ndarray], *,
                  input_hw: tuple[int, int], roles: Mapping[int | str, Role] | None = None,
                  ) -> tuple[OutputSpec, ...]:
    """The role of each output, from its shape, its name and the float model's values on the user's images.

    Rules, first match wins (`NAME_RULES`, then `SHAPE_RULES`):

    1. Name (lower case, substring): "heatmap" on a map -> heatmaps; "segment", "mask", "matting"
       on a map -> mask (1 channel) or class_map; "landmark", "keypoint" on a shape that holds
       points -> landmarks; "embedding", "embed", "feature", "descriptor" on a vector -> embedding;
       "regressor", "box" on [1, N, 4+] -> boxes; "classificator", "score", "presence",
       "handedness", "visibility", "confidence" on [1, N, 1] -> box_scores, on a vector of 1-2
       values beside other outputs -> score; "logits", "softmax", "classifier", "prob", "prediction" on a vector ->
       class_scores. A name whose role does not fit the shape is ignored.
    2. A map [1, h, w, C]: C = 1 -> mask; values summing to 1 per pixel -> class_map (softmax);
       h and w at most half the input's -> heatmaps (one per keypoint); else class_map (logits).
    3. [1, N, F]: F = 1 -> box_scores; F = 2 or 3 -> landmarks (N points); 4 <= F <= 64 -> boxes.
    4. A vector [1, D] or [1, 1, 1, D]: D <= 2 beside other outputs -> score; values in [0, 1]
       summing to 1 -> class_scores; unit-length rows with D >= 16 -> embedding; the model's only
       output -> class_scores (today's path) unless its values are points in input pixels beyond
       doubt (90 % inside the frame, spread over a quarter of it); points in input pixels or in
       [0, 1] -> landmarks; D a multiple of a heatmaps output's K, or the shape of another
       landmarks output -> landmarks (units unknown: world coordinates); D >= 16 -> embedding.
    5. Anything else -> generic.

    Points: K points of D values, with D = 3 (x, y, z) when it divides the size, else 2 (a
    heatmaps output's K decides first: pose models give 5 values per keypoint). Their x, y
    are in input pixels when at least half of the points lie in the frame and they spread
    over 5 % of it; in [0, 1] when half lie in the unit square; else their units are unknown.

    Args:
        outputs: (name, shape) of each output, in the model's order; shapes with batch 1.
        samples: samples[i] is the float model's output i on the images, stacked: [images, *shape[1:]]
            (a few dozen images are plenty).
        input_hw: the model's input height and width, in pixels.
        roles: roles set by the user, by output index or name (see `parse_roles`); they win.

    Raises:
        InputError: a role set by the user names no output or does not fit its output's shape.
    """
    if len(outputs) != len(samples):
        raise ValueError(f"{len(outputs)} outputs but {len(samples)} sample arrays")
    order = postprocess_order([shape for _, shape in outputs], samples, [name for name, _ in outputs])
    if order is not None:
        return with_roles(_postprocess_specs(outputs, samples, order), roles or {})
    facts = [_Facts(name.lower(), tuple(int(d) for d in shape), _stacked(values, shape), input_hw, len(outputs) == 1)
             for (name, shape), values in zip(outputs, samples)]
    first = [_decide(f) for f in facts]
    heatmap_k = next((f.shape[-1] for f, (v, _) in zip(facts, first) if v.role is Role.HEATMAPS), None)
    landmark_shapes = frozenset(f.shape for f, (v, _) in zip(facts, first) if v.role is Role.LANDMARKS)
    specs = []
    for index, ((name, _), f) in enumerate(zip(outputs, facts)):
        f = replace(f, heatmap_k=heatmap_k, landmark_shapes=landmark_shapes)
        verdict, layout = _decide(f)
        specs.append(_spec(index, name, f.shape, verdict, _value_range(f.values), layout))
    return with_roles(tuple(specs), roles or {})


POSTPROCESS_OP = "TFLite_Detection_PostProcess"  # TFLite's builtin resolver registers it: any LiteRT runs it


def postprocess_order(shapes: Sequence[Sequence[int]], samples: Sequence[np.ndarray] | None = None,
                      names: Sequence[str] | None = None) -> tuple[int, int, int, int] | None:
    """(boxes, classes, scores, count) when four outputs are shaped as TFLite_Detection_PostProcess's:
    boxes [1, N, 4], two [1, N] and a count [1]; None otherwise.

    The op writes classes before scores, but TF2's Object Detection API exports them the other
    way round: with the float model's values, the output holding fractions is the scores
    (class indices are whole numbers); else a name saying "score" or "class"; else the op's order.
    """
    if len(shapes) != 4:
        return None
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[2] == 4]
    rows = [i for i, s in enumerate(shapes) if len(s) == 2 and len(boxes) == 1 and s[1] == shapes[boxes[0]][1]]
    count = [i for i, s in enumerate(shapes) if tuple(s) == (1,)]
    if len(boxes) != 1 or len(rows) != 2 or len(count) != 1:
        return None
    first, second = rows
    if samples is not None:
        fractions = [bool(np.any(np.abs(np.nan_to_num(samples[i]) % 1.0) > 1e-6)) for i in rows]
        if fractions == [True, False]:
            first, second = second, first
        if fractions in ([True, False], [False, True]):
            return boxes[0], first, second, count[0]
    if names is not None and ("score" in names[first].lower() or "class" in names[second].lower()):
        first, second = second, first
    return boxes[0], first, second, count[0]


def clear_past_count(outputs: list[np.ndarray], order: tuple[int, int, int, int]) -> None:
    """Zeroes, in place, the rows of one image's PostProcess outputs past its count: the op leaves them unwritten
    (whatever the buffer held: values of earlier images, NaN, 1e23), so no two runs would compare equal."""
    boxes, classes, scores, count = order
    valid = np.nan_to_num(np.asarray(outputs[count], np.float64).reshape(-1)[:1], nan=0.0)
    rows = outputs[boxes].shape[1]
    first = int(min(max(valid[0] if valid.size else 0.0, 0.0), rows))
    for k in (boxes, classes, scores):
        outputs[k][:, first:] = 0


_POSTPROCESS_WORDS = ("detected boxes (TFLite_Detection_PostProcess)", "class indices of the detected boxes",
                      "scores of the detected boxes", "how many boxes were detected")


def _postprocess_specs(outputs: Sequence[tuple[str, tuple[int, ...]]], samples: Sequence[np.ndarray],
                       order: tuple[int, int, int, int]) -> tuple[OutputSpec, ...]:
    """The four outputs of TFLite_Detection_PostProcess: its boxes, and three tensors read with them."""
    specs = []
    for index, (name, shape) in enumerate(outputs):
        what = _POSTPROCESS_WORDS[order.index(index)]
        role = Role.BOXES if index == order[0] else Role.GENERIC
        verdict = _Verdict(role, f"{what}: four outputs shaped as that op's (boxes [1, N, 4], [1, N] twice, a count)")
        spec = _spec(index, name, tuple(int(d) for d in shape), verdict, _value_range(np.asarray(samples[index])),
                     None)
        specs.append(replace(spec, description=f"{spec.description} ({what})"))
    return tuple(specs)


def _stacked(values: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The float outputs as floats [images, *shape[1:]] (accepts an extra batch-1 axis per image)."""
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    tail = tuple(int(d) for d in shape[1:])
    if array.size % max(1, int(np.prod(tail))):
        raise ValueError(f"sample array of shape {array.shape} does not hold outputs of shape {tuple(shape)}")
    return array.reshape((-1, *tail))


def _value_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values; None when there are none."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def _decide(f: _Facts) -> tuple[_Verdict, PointLayout | None]:
    """The first rule that matches (name rules, then shape rules; generic when none does)."""
    layout = _layout(f)
    for rule in (*NAME_RULES, *SHAPE_RULES):
        verdict = rule(f, layout)
        if verdict is not None:
            return verdict, layout
    return _Verdict(Role.GENERIC, "no rule matched its shape"), layout


def _spec(index: int, name: str, shape: tuple[int, ...], verdict: _Verdict,
          value_range: tuple[float, float] | None, layout: PointLayout | None, *, by_user: bool = False) -> OutputSpec:
    """An OutputSpec with its one-line description."""
    spec = OutputSpec(index, name, shape, verdict.role, value_range, "", verdict.evidence, layout, by_user)
    return replace(spec, description=describe(spec))


# ----------------------------------------------------------------------------------------------- points


def _layout(f: _Facts) -> PointLayout | None:
    """How the output's values group into points, and where their x, y lie; None when they cannot."""
    grouping = _grouping(f)
    if grouping is None:
        return None
    points, coords = grouping
    xy = f.values.reshape(len(f.values), points, coords)[..., :2].reshape(-1, 2)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if not len(xy):
        return PointLayout(points, coords, CoordSpace.UNKNOWN, 0.0)
    height, width = f.input_hw
    unit = float(np.mean(np.all((xy >= 0) & (xy <= 1), axis=1)))
    inside = float(np.mean((xy[:, 0] >= 0) & (xy[:, 0] <= width) & (xy[:, 1] >= 0) & (xy[:, 1] <= height)))
    spread = float(np.ptp(xy, axis=0).max())
    if unit >= INSIDE_SHARE and spread > 0:
        return PointLayout(points, coords, CoordSpace.NORMALIZED, unit)
    if inside >= INSIDE_SHARE and spread >= MIN_SPREAD * max(height, width):
        return PointLayout(points, coords, CoordSpace.PIXELS, inside)
    return PointLayout(points, coords, CoordSpace.UNKNOWN, 0.0)


def _grouping(f: _Facts) -> tuple[int, int] | None:
    """(K points, D values each) the shape can hold: [1, K, 2 or 3], or a vector of K*D values."""
    if f.rows and f.rows[1] in (2, 3):
        return f.rows
    size = f.vector
    if size is None or size < 4:
        return None
    if f.heatmap_k and size % f.heatmap_k == 0 and 2 <= size // f.heatmap_k <= 5:
        return f.heatmap_k, size // f.heatmap_k
    for coords in (3, 2):
        if size % coords == 0:
            return size // coords, coords
    return None


def _point_words(layout: PointLayout) -> str:
    """'in input pixels' / 'normalised to [0, 1]' / 'in unknown units'."""
    return {CoordSpace.PIXELS: "in input pixels", CoordSpace.NORMALIZED: "normalised to [0, 1]",
            CoordSpace.UNKNOWN: "in unknown units"}[layout.space]


def _space_evidence(layout: PointLayout) -> str:
    """Why the points are read in their units."""
    if layout.space is CoordSpace.UNKNOWN:
        return "x, y neither in input pixels nor in [0, 1]: units unknown"
    return f"{layout.inside:.0%} of points inside the frame, {_point_words(layout)}"


# ----------------------------------------------------------------------------------------------- name rules

_NAME_ROLES: tuple[tuple[tuple[str, ...], Role], ...] = (
    (("heatmap",), Role.HEATMAPS),
    (("segment", "mask", "matting"), Role.MASK),
    (("landmark", "keypoint"), Role.LANDMARKS),
    (("embedding", "embed", "feature", "descriptor"), Role.EMBEDDING),
    (("regressor", "box"), Role.BOXES),
    (("classificator", "score", "presence", "handedness", "visibility", "confidence"), Role.SCORE),
    (("logits", "softmax", "classifier", "prob", "prediction"), Role.CLASS_SCORES),
)


def _by_name(f: _Facts, layout: PointLayout | None) -> _Verdict | None:
    """The role the output's name says, when it fits the shape."""
    for words, role in _NAME_ROLES:
        word = next((w for w in words if w in f.name), None)
        if word is None:
            continue
        fitted = _fit_named(role, f, layout)
        if fitted is not None:
            return _Verdict(fitted, f"name says '{word}'")
    return None


def _fit_named(role: Role, f: _Facts, layout: PointLayout | None) -> Role | None:
    """The role a name asks for, adjusted to the shape (a mask of C > 1 channels is a class map); None if unfit."""
    if role is Role.MASK and f.dense:
        return Role.MASK if f.dense[2] == 1 else Role.CLASS_MAP
    if role is Role.SCORE and f.rows and f.rows[1] == 1:
        return Role.BOX_SCORES
    if role is Role.SCORE and f.sole:
        return None  # one score and nothing else is a binary classifier: today's path
    return role if fits(role, f.shape, layout=layout) and (role is not Role.SCORE or (f.vector or 0) <= 2) else None


# ----------------------------------------------------------------------------------------------- shape rules


def _map_rule(f: _Facts, layout: PointLayout | None) -> _Verdict | None:
    """A map [1, h, w, C]: mask, class map (softmax or logits) or heatmaps."""
    if not f.dense:
        return None
    h, w, c = f.dense
    if c == 1:
        unit = _within_unit(_value_range(f.values))
        words = "values in [0, 1]: probabilities" if unit else "values beyond [0, 1]: logits"
        return _Verdict(Role.MASK, f"one channel per pixel; {words}")
    if _sums_to_one(f.values):
        return _Verdict(Role.CLASS_MAP, f"{c} channels per pixel summing to 1: class probabilities")
    if 2 * h <= f.input_hw[0] and 2 * w <= f.input_hw[1]:
        return _Verdict(Role.HEATMAPS, f"{c} maps of {h}x{w}, at most half the input's size: one per keypoint")
    return _Verdict(Role.CLASS_MAP, f"{c} channels per pixel at {h}x{w}, not summing to 1: class logits")


def _rows_rule(f: _Facts, layout: PointLayout | None) -> _Verdict | None:
    """[1, N, F]: a score per anchor, N points, or N box regressors."""
    if not f.rows:
        return None
    n, features = f.rows
    if features == 1:
        return _Verdict(Role.BOX_SCORES, f"[1, N, 1]: one score for each of {n} anchors")
    if features in (2, 3) and layout is not None:
        return _Verdict(Role.LANDMARKS, f"[1, K, {features}]: {n} points; {_space_evidence(layout)}")
    if 4 <= features <= 64:
        return _Verdict(Role.BOXES, f"[1, N, {features}]: {features} values for each of {n} anchors")
    return None


def _scores_rule(f: _Facts, layout: PointLayout | None) -> _Verdict | None:
    """A vector: a score beside other outputs, class probabilities, a unit-length embedding, or the only output."""
    size = f.vector
    if size is None:
        return None
    if size <= 2 and not f.sole:
        return _Verdict(Role.SCORE, f"{size} value{'s' if size > 1 else ''} beside other outputs: a score")
    if size >= 2 and _within_unit(_value_range(f.values)) and _sums_to_one(f.values):
        return _Verdict(Role.CLASS_SCORES, "values in [0, 1] summing to 1: class probabilities")
    if size >= MIN_EMBEDDING and _unit_rows(f.values):
        return _Verdict(Role.EMBEDDING, f"{size} values of unit length: an L2-normalised embedding")
    if f.sole and not (layout and layout.space is CoordSpace.PIXELS and _strong_pixels(f, layout)):
        return _Verdict(Role.CLASS_SCORES, "the model's only output, a vector: class scores")
    return None


def _strong_pixels(f: _Facts, layout: PointLayout) -> bool:
    """Points in input pixels beyond doubt: 90 % inside the frame, spread over a quarter of it."""
    xy = f.values.reshape(len(f.values), layout.points, layout.coords)[..., :2].reshape(-1, 2)
    return layout.inside >= 0.9 and float(np.ptp(xy, axis=0).max()) >= 0.25 * max(f.input_hw)


def _vector_rule(f: _Facts, layout: PointLayout | None) -> _Verdict | None:
    """A vector beside other outputs: landmarks or an embedding."""
    size = f.vector
    if size is None:
        return None
    if layout and layout.space is not CoordSpace.UNKNOWN:
        return _Verdict(Role.LANDMARKS, f"{size} values as {layout.points} points of {layout.coords}; "
                                        f"{_space_evidence(layout)}")
    if layout and f.heatmap_k == layout.points:
        return _Verdict(Role.LANDMARKS, f"{size} values: {layout.coords} for each of the {layout.points} "
                                        "heatmaps' keypoints; units unknown")
    if layout and f.shape in f.landmark_shapes:
        return _Verdict(Role.LANDMARKS, "the same shape as a landmarks output; units unknown")
    if size >= MIN_EMBEDDING:
        return _Verdict(Role.EMBEDDING, f"{size} values that are not points: an embedding")
    return None


NAME_RULES: tuple[Rule, ...] = (_by_name,)
SHAPE_RULES: tuple[Rule, ...] = (_map_rule, _rows_rule, _scores_rule, _vector_rule)


def _within_unit(value_range: tuple[float, float] | None) -> bool:
    """True when every value lies in [0, 1] (within rounding)."""
    return value_range is not None and value_range[0] >= -1e-4 and value_range[1] <= 1 + 1e-4


def _sums_to_one(values: np.ndarray) -> bool:
    """True when the last axis holds non-negative values summing to 1 everywhere."""
    finite = bool(values.size) and bool(np.all(np.isfinite(values)))
    return finite and values.min() >= -1e-4 and bool(np.allclose(values.sum(-1), 1.0, atol=2e-2))


def _unit_rows(values: np.ndarray) -> bool:
    """True when each image's vector has length 1."""
    rows = values.reshape(len(values), -1)
    return bool(len(rows)) and bool(np.all(np.isfinite(rows))) and bool(
        np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-2))


# ----------------------------------------------------------------------------------------------- roles a shape allows

_FITS: Mapping[Role, tuple[Callable[[tuple[int, ...], PointLayout | None], bool], str]] = {
    Role.CLASS_SCORES: (lambda s, _: _vector(s) is not None, "a vector [1, classes]"),
    Role.MASK: (lambda s, _: (_dense(s) or (0, 0, 0))[2] == 1, "a map [1, H, W, 1]"),
    Role.CLASS_MAP: (lambda s, _: (_dense(s) or (0, 0, 0))[2] > 1, "a map [1, H, W, C] of C > 1 classes"),
    Role.LANDMARKS: (lambda s, layout: layout is not None,
                     "K points of 2 or 3 values: [1, K*D], [1, 1, 1, K*D] or [1, K, D]"),
    Role.HEATMAPS: (lambda s, _: _dense(s) is not None, "maps [1, h, w, K]"),
    Role.EMBEDDING: (lambda s, _: (_vector(s) or 0) >= 2, "a vector [1, D]"),
    Role.SCORE: (lambda s, _: 1 <= (_vector(s) or 0) <= 4, "a vector of 1 to 4 values, e.g. [1, 1]"),
    Role.BOXES: (lambda s, _: (_rows(s) or (0, 0))[1] >= 4, "[1, N, 4 or more]"),
    Role.BOX_SCORES: (lambda s, _: (_rows(s) or (0, 0))[1] == 1, "[1, N, 1]"),
    Role.GENERIC: (lambda s, _: True, "any tensor"),
}


def fits(role: Role, shape: tuple[int, ...], *, layout: PointLayout | None = None) -> bool:
    """True when an output of this shape can hold `role` (landmarks need the output's point layout)."""
    return _FITS[role][0](tuple(shape), layout)


# ----------------------------------------------------------------------------------------------- descriptions


def _axes(coords: int) -> str:
    """'x, y, z' for three values per point; extra values are counted."""
    names = ("x", "y", "z")[:coords]
    extra = f" + {coords - 3} more" if coords > 3 else ""
    return ", ".join(names) + extra


_SCORE_WORDS = ("presence", "handedness", "visibility", "confidence")

_PHRASES: Mapping[Role, Callable[[OutputSpec], str]] = {
    Role.CLASS_SCORES: lambda o: f"scores for {o.shape[-1]} classes",
    Role.MASK: lambda o: "a mask" if o.mask_threshold else "a mask of logits",
    Role.CLASS_MAP: lambda o: f"a map of {o.shape[-1]} classes",
    Role.LANDMARKS: lambda o: (f"{o.points} landmarks ({_axes(o.coords or 2)}) "
                               f"{_point_words(o.layout) if o.layout else ''}").strip(),
    Role.HEATMAPS: lambda o: f"{o.shape[-1]} heatmaps of {o.shape[1]}x{o.shape[2]}",
    Role.EMBEDDING: lambda o: f"an embedding of {o.shape[-1]} values",
    Role.SCORE: lambda o: "a score" + next((f" ({w})" for w in _SCORE_WORDS if w in o.name.lower()), ""),
    Role.BOXES: lambda o: f"{o.shape[1]} boxes of {o.shape[2]} values",
    Role.BOX_SCORES: lambda o: f"{o.shape[1]} box scores",
    Role.GENERIC: lambda o: "a tensor",
}


def describe(spec: OutputSpec) -> str:
    """One line: "<name> <shape>: <what it is>, values in [min, max]"."""
    values = (f"values in [{_num(spec.value_range[0])}, {_num(spec.value_range[1])}]"
              if spec.value_range else "no finite values")
    mark = " (set by you)" if spec.set_by_user else ""
    return f"{spec.name} {spec.shape_text}: {_PHRASES[spec.role](spec)}{mark}, {values}"


def _num(value: float) -> str:
    """A value with four significant digits: 0, 1, 190.2, -0.0855."""
    return f"{value:.4g}"


# ----------------------------------------------------------------------------------------------- overrides


def with_roles(specs: Sequence[OutputSpec], overrides: Mapping[int | str, Role]) -> tuple[OutputSpec, ...]:
    """The specs with roles set by the user (by output index or name); the rest unchanged.

    Raises:
        InputError: a key names no output, or a role does not fit its output's shape.
    """
    chosen = {_output_index(specs, key): parse_choice(Role, role, "role") for key, role in overrides.items()}
    return tuple(_set_role(spec, chosen[spec.index]) if spec.index in chosen else spec for spec in specs)


def _output_index(specs: Sequence[OutputSpec], key: int | str) -> int:
    """The index of the output a key names (its index, or its name)."""
    for spec in specs:
        if key == spec.index or key == spec.name or (isinstance(key, str) and key.isdecimal()
                                                      and int(key) == spec.index and key not in names(specs)):
            return spec.index
    known = ", ".join(f"{s.index} ({s.name})" for s in specs)
    raise InputError(f"no output {key!r}; expected an output index or name: {known}")


def names(specs: Sequence[OutputSpec]) -> set[str]:
    """The outputs' names (a key that is one of them names that output, even when it looks like an index)."""
    return {s.name for s in specs}


def _set_role(spec: OutputSpec, role: Role) -> OutputSpec:
    """The spec with its role set by the user."""
    if not fits(role, spec.shape, layout=spec.layout):
        raise InputError(f"output {spec.index} ({spec.name} {spec.shape_text}) cannot hold {role}: "
                         f"expected {_FITS[role][1]}")
    evidence = spec.evidence if spec.set_by_user else f"set by you (inferred {spec.role}: {spec.evidence})"
    return _spec(spec.index, spec.name, spec.shape, _Verdict(role, evidence), spec.value_range, spec.layout,
                 by_user=True)


_PAIR = re.compile(r"^\s*([^=,]+?)\s*=\s*([^=,]+?)\s*$")


def parse_roles(text: str) -> dict[int | str, Role]:
    """Roles given as text, e.g. "0=mask,Identity_1=score" (an output index or name = a role).

    Raises:
        InputError: a malformed pair, an unknown role or an output named twice.
    """
    roles: dict[int | str, Role] = {}
    for pair in (p for p in text.split(",") if p.strip()):
        match = _PAIR.match(pair)
        if match is None:
            raise InputError(f"roles: expected OUTPUT=ROLE pairs separated by commas, e.g. 0=mask,Identity_1=score; "
                             f"got {pair.strip()!r}")
        key: int | str = int(match[1]) if match[1].isdecimal() else match[1]
        if key in roles:
            raise InputError(f"roles: output {key!r} is given two roles; expected one role per output")
        roles[key] = parse_choice(Role, match[2], "role")
    return roles


def parse_task(text: str) -> Task:
    """The task named by `text` (e.g. "segmentation").

    Raises:
        InputError: "unknown task ...; expected one of: classification, segmentation, ...".
    """
    return parse_choice(Task, text, "task")


# ----------------------------------------------------------------------------------------------- the model's task


def main_output(specs: Sequence[OutputSpec]) -> OutputSpec | None:
    """The output that decides the task: the first of those whose role's task is the most specific."""
    return min(specs, key=lambda s: (SPECIFICITY.index(TASK_OF_ROLE[s.role]), s.index), default=None)


def task_of(specs: Sequence[OutputSpec]) -> Task:
    """The model's task from its outputs' roles: the main output's (`main_output`); generic when none.

    One class_scores output and nothing else is classification: today's path.
    """
    main = main_output(specs)
    return TASK_OF_ROLE[main.role] if main else Task.GENERIC


def with_task(specs: Sequence[OutputSpec], task: Task) -> tuple[OutputSpec, ...]:
    """The specs with `task` carried by an output: unchanged when one already has a role of it.

    Otherwise the first output able to hold one of the task's roles (`TASK_ROLES`, preferred
    first) gets it, as if the user had set it. Generic makes every output generic. Other
    outputs keep their roles (and their metrics): the caller keeps the task the user chose.

    Raises:
        InputError: no output can hold a role of the task.
    """
    if task is Task.GENERIC:
        return with_roles(specs, {s.index: Role.GENERIC for s in specs if s.role is not Role.GENERIC})
    if any(s.role in TASK_ROLES[task] for s in specs):
        return tuple(specs)
    for spec in specs:
        for role in TASK_ROLES[task]:
            if fits(role, spec.shape, layout=spec.layout):
                return with_roles(specs, {spec.index: role})
    wanted = " or ".join(_FITS[r][1] for r in TASK_ROLES[task])
    shapes = ", ".join(f"{s.name} {s.shape_text}" for s in specs)
    raise InputError(f"no output can be read as {task}: expected {wanted}; the outputs are {shapes}")

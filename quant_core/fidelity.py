"""How close a variant's outputs are to float32's on the same images: per output, per channel, per task.

Every output gets tensor figures (`TensorFidelity`: SQNR, cosine similarity, max |Δ|,
relative RMSE) over the whole tensor and per channel, so that one channel whose range
differs from its neighbours (a presence score beside landmark coordinates, a box's score
beside its offsets) stands out as the worst channel. Its role adds the task's own figures:
masks (`MaskMetrics`), landmarks and heatmaps (`LandmarkMetrics`), embeddings
(`EmbeddingMetrics`). Classification keeps quant_core.metrics.

Arrays are [images, *shape[1:]] as the runner stacks them. Results are frozen dataclasses of
plain numbers that round-trip through JSON: an infinite SQNR (identical outputs) is stored as
`sqnr_db=None` with `exact=True`, never as infinity; undefined figures are None.
Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant_core.boxes import BoxSummary
from quant_core.tasks import CoordSpace, OutputSpec, Role

PCK_SHARE = 0.05  # a point is correct within 5 % of the input size (the larger side) of the reference point
MAX_CHANNELS = 4096  # outputs with more channels get whole-tensor figures only (a 100k-value vector)


@dataclass(frozen=True)
class TensorFidelity:
    """How close one tensor (or one channel of it) is to float32's, over all its values on all images.

    SQNR = 10 log10(Σ ref² / Σ (ref − got)²) in dB (higher is better; ~6 dB per bit);
    cosine similarity of the flattened tensors (1: same direction; both all-zero: 1; one
    all-zero: 0); max |Δ|; relative RMSE = RMSE / RMS of the reference.
    """

    sqnr_db: float | None  # None when exact (infinite) or undefined (the reference is all zeros)
    cosine: float | None  # None when values are not finite
    max_abs: float | None
    rel_rmse: float | None  # None when the reference is all zeros and the output is not
    exact: bool = False  # identical to float32 everywhere
    nonfinite: int = 0  # NaN or infinite values in either tensor: the figures are then None

    @classmethod
    def of(cls, reference: np.ndarray, got: np.ndarray) -> TensorFidelity:
        """Figures over every value of two arrays of the same shape."""
        return columns(np.reshape(reference, (-1, 1)), np.reshape(got, (-1, 1)))[0]

    @property
    def rank(self) -> float:
        """For ordering channels worst first: the SQNR; +inf when exact; -inf when undefined."""
        if self.exact:
            return math.inf
        return -math.inf if self.sqnr_db is None else self.sqnr_db


def columns(reference: np.ndarray, got: np.ndarray) -> tuple[TensorFidelity, ...]:
    """`TensorFidelity` of each column of two [values, columns] arrays (vectorised)."""
    ref, out = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, got {out.shape}")
    bad = np.sum(~np.isfinite(ref) | ~np.isfinite(out), axis=0)
    ref, out = np.where(np.isfinite(ref), ref, 0.0), np.where(np.isfinite(out), out, 0.0)
    diff = ref - out
    signal, noise = np.sum(ref * ref, axis=0), np.sum(diff * diff, axis=0)
    norms = np.sqrt(signal * np.sum(out * out, axis=0))
    dots = np.sum(ref * out, axis=0)
    peaks = np.abs(diff).max(axis=0, initial=0.0)
    return tuple(from_sums(int(b), float(s), float(n), float(d), float(m), float(p))
                 for b, s, n, d, m, p in zip(bad, signal, noise, dots, norms, peaks))


def from_sums(bad: int, signal: float, noise: float, dot: float, norm: float, peak: float) -> TensorFidelity:
    """The figures from their sums: Σ ref², Σ (ref − got)², Σ ref·got, √(Σ ref² Σ got²), max |Δ| (one column, or a
    whole dataset summed shard by shard), and the count of values that were not finite."""
    if bad:
        return TensorFidelity(None, None, None, None, exact=False, nonfinite=bad)
    exact = noise == 0.0
    sqnr = 10.0 * math.log10(signal / noise) if signal > 0 and noise > 0 else None
    cosine = max(-1.0, min(1.0, dot / norm)) if norm > 0 else (1.0 if exact else 0.0)  # zero vectors: see above
    rel_rmse = math.sqrt(noise / signal) if signal > 0 else (0.0 if exact else None)
    return TensorFidelity(sqnr, cosine, peak, rel_rmse, exact=exact)


def _worst(channels: tuple[TensorFidelity, ...]) -> int | None:
    """The index of the channel with the lowest SQNR (the first among equals); None when there are none."""
    return min(range(len(channels)), key=lambda i: (channels[i].rank, i)) if channels else None


# ----------------------------------------------------------------------------------------------- masks


@dataclass(frozen=True)
class MaskMetrics:
    """How well a variant's masks match float32's (or the ground truth's).

    One channel (a sigmoid mask): both are thresholded; `iou` is the mean over images of the
    foreground IoU (an image where both masks are empty counts 1). C channels (a class map):
    each pixel's class is its argmax; `class_iou[c]` is class c's IoU pooled over all images
    (None where neither map has the class) and `iou` their mean: the mIoU.
    """

    iou: float
    pixel_agreement: float  # share of pixels given the same label
    per_image_iou: tuple[float, ...]
    per_image_agreement: tuple[float, ...]
    class_iou: tuple[float | None, ...] = ()  # class maps only

    @classmethod
    def of(cls, reference: np.ndarray, got: np.ndarray, *, threshold: float = 0.5) -> MaskMetrics:
        """Compares two masks or class maps [images, H, W, C] (C = 1: thresholded at `threshold`)."""
        classes = np.shape(got)[-1]
        return _compare_labels(labels(reference, threshold=threshold), labels(got, threshold=threshold),
                               classes=max(2, classes), binary=classes == 1)

    @classmethod
    def against_truth(cls, got: np.ndarray, truth: np.ndarray, *, threshold: float = 0.5) -> MaskMetrics:
        """Compares masks or class maps [images, H, W, C] with ground-truth labels [images, H, W].

        Ground truth holds 0/1 for a one-channel mask, class indices for a class map
        (quant_core.inputs.ground_truth.load_masks gives them at the output's size).
        """
        predicted = labels(got, threshold=threshold)
        if np.shape(truth) != predicted.shape:
            raise ValueError(f"ground truth {np.shape(truth)} does not match the output's labels {predicted.shape}")
        classes = np.shape(got)[-1]
        return _compare_labels(np.asarray(truth, np.int64), predicted, classes=max(2, classes), binary=classes == 1)


def labels(maps: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Per-pixel labels [images, H, W]: a one-channel mask above `threshold` is 1; a class map's argmax."""
    maps = np.asarray(maps)
    if maps.shape[-1] == 1:
        return (maps[..., 0] > threshold).astype(np.int64)
    return np.argmax(maps, axis=-1).astype(np.int64)


def _compare_labels(ref: np.ndarray, got: np.ndarray, *, classes: int, binary: bool) -> MaskMetrics:
    """Mask figures from two label maps [images, H, W]."""
    n = len(ref)
    flat_ref, flat_got = ref.reshape(n, -1), got.reshape(n, -1)
    agreement = tuple(float(v) for v in np.mean(flat_ref == flat_got, axis=1))
    inter = np.stack([np.sum((flat_ref == c) & (flat_got == c), axis=1) for c in range(classes)], axis=1)
    union = np.stack([np.sum((flat_ref == c) | (flat_got == c), axis=1) for c in range(classes)], axis=1)
    if binary:
        per_image = tuple(float(i / u) if u else 1.0 for i, u in zip(inter[:, 1], union[:, 1]))
        return MaskMetrics(_mean(per_image), _mean(agreement), per_image, agreement)
    pooled_i, pooled_u = inter.sum(axis=0), union.sum(axis=0)
    class_iou = tuple(float(i / u) if u else None for i, u in zip(pooled_i, pooled_u))
    per_image = tuple(_mean([float(i / u) for i, u in zip(ri, ru) if u]) for ri, ru in zip(inter, union))
    return MaskMetrics(_mean([v for v in class_iou if v is not None]), _mean(agreement), per_image, agreement,
                       class_iou)


def _mean(values: Any) -> float:
    """The mean of a non-empty sequence of floats (1.0 for an empty one: nothing disagrees)."""
    values = list(values)
    return float(np.mean(values)) if values else 1.0


# ----------------------------------------------------------------------------------------------- landmarks


@dataclass(frozen=True)
class LandmarkMetrics:
    """How far a variant's points are from float32's (or the ground truth's), on x and y only.

    Errors are in the model's input pixels (normalised points are scaled by the input's width
    and height); in the output's own units when those are unknown (`space`), and then the
    shares and PCK are None. The image size is the input's larger side: 5 % of a 192x192
    input is 9.6 px.
    """

    mean_error: float | None  # mean distance between corresponding points; None when any is not finite
    mean_error_share: float | None  # mean_error / the input's larger side
    pck_5: float | None  # share of points within 5 % of the input's larger side of the reference point
    per_image_error: tuple[float | None, ...]
    per_image_pck: tuple[float | None, ...]
    per_point_error: tuple[float | None, ...]  # mean over images, one per point
    worst_point: int | None  # the point with the largest mean error
    space: CoordSpace = CoordSpace.PIXELS

    @classmethod
    def of(cls, reference: np.ndarray, got: np.ndarray, *, input_hw: tuple[int, int], coords: int,
           space: CoordSpace = CoordSpace.PIXELS) -> LandmarkMetrics:
        """Compares two landmark outputs [images, ...] holding K points of `coords` values each."""
        n = len(reference)
        ref = np.asarray(reference, np.float64).reshape(n, -1, coords)[..., :2]
        out = np.asarray(got, np.float64).reshape(n, -1, coords)[..., :2]
        return from_points(ref, out, input_hw=input_hw, space=space)

    @classmethod
    def against_truth(cls, got: np.ndarray, truth: np.ndarray, *, input_hw: tuple[int, int], coords: int,
                      space: CoordSpace = CoordSpace.PIXELS) -> LandmarkMetrics:
        """Compares a landmark output with ground-truth points [images, K, 2] in input pixels."""
        n = len(got)
        out = _to_pixels(np.asarray(got, np.float64).reshape(n, -1, coords)[..., :2], input_hw, space)
        return from_points(np.asarray(truth, np.float64), out, input_hw=input_hw, space=CoordSpace.PIXELS)


def from_points(reference: np.ndarray, got: np.ndarray, *, input_hw: tuple[int, int],
                space: CoordSpace = CoordSpace.PIXELS) -> LandmarkMetrics:
    """Landmark figures from points [images, K, 2] (x, y) in `space`."""
    ref, out = _to_pixels(reference, input_hw, space), _to_pixels(got, input_hw, space)
    if ref.shape != out.shape:
        raise ValueError(f"points differ in shape: reference {ref.shape}, got {out.shape}")
    distance = np.linalg.norm(ref - out, axis=-1)  # [images, K]
    size = float(max(input_hw)) if space is not CoordSpace.UNKNOWN else None
    error = _finite_mean(distance)
    per_point = tuple(_finite_mean(distance[:, k]) for k in range(distance.shape[1]))
    worst = max(range(len(per_point)), key=lambda k: (math.inf if per_point[k] is None else per_point[k], -k),
                default=None)
    return LandmarkMetrics(
        mean_error=error,
        mean_error_share=None if error is None or size is None else error / size,
        pck_5=None if size is None else _pck(distance, size),
        per_image_error=tuple(_finite_mean(row) for row in distance),
        per_image_pck=tuple(None if size is None else _pck(row, size) for row in distance),
        per_point_error=per_point, worst_point=worst, space=space)


def _to_pixels(points: np.ndarray, input_hw: tuple[int, int], space: CoordSpace) -> np.ndarray:
    """Points (x, y) in input pixels: normalised ones scaled by the input's width and height."""
    if space is CoordSpace.NORMALIZED:
        return points * np.array([input_hw[1], input_hw[0]], np.float64)
    return points


def _finite_mean(values: np.ndarray) -> float | None:
    """The mean, or None when any value is NaN or infinite."""
    return float(np.mean(values)) if values.size and np.all(np.isfinite(values)) else None


def _pck(distance: np.ndarray, size: float) -> float:
    """Share of points within PCK_SHARE of `size` (a NaN distance is a miss)."""
    return float(np.mean(np.nan_to_num(distance, nan=math.inf) <= PCK_SHARE * size))


def heatmap_points(maps: np.ndarray, *, input_hw: tuple[int, int]) -> np.ndarray:
    """Each heatmap's peak as a point (x, y) in input pixels: [images, K, 2] from maps [images, h, w, K].

    A peak in cell (row, col) is the cell's centre, scaled to the input: x = (col + 0.5) * W / w.
    """
    maps = np.nan_to_num(np.asarray(maps, np.float64), nan=-math.inf)
    n, h, w, k = maps.shape
    peak = np.argmax(maps.reshape(n, h * w, k), axis=1)  # [images, K]
    rows, cols = np.divmod(peak, w)
    return np.stack([(cols + 0.5) * input_hw[1] / w, (rows + 0.5) * input_hw[0] / h], axis=-1)


# ----------------------------------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class EmbeddingMetrics:
    """How well a variant's embeddings keep float32's: per image, and as neighbours among the images."""

    mean_cosine: float | None  # mean over images of the cosine similarity to float32's vector
    min_cosine: float | None
    per_image_cosine: tuple[float | None, ...]
    nn_agreement: float | None  # share of images whose nearest other image is the same; None below 3 images

    @classmethod
    def of(cls, reference: np.ndarray, got: np.ndarray) -> EmbeddingMetrics:
        """Compares embeddings [images, ...] (each image's values flattened into one vector)."""
        n = len(reference)
        ref, out = np.asarray(reference, np.float64).reshape(n, -1), np.asarray(got, np.float64).reshape(n, -1)
        cosines = tuple(_cosine(a, b) for a, b in zip(ref, out))
        finite = [c for c in cosines if c is not None]
        whole = len(finite) == n and n > 0
        return cls(float(np.mean(finite)) if whole else None, float(min(finite)) if whole else None, cosines,
                   _nn_agreement(ref, out) if whole and n >= 3 else None)


def _cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine similarity of two vectors: both zero 1, one zero 0, None when not finite."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return None
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return max(-1.0, min(1.0, float(a @ b) / norm))


def _nn_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Share of images whose most similar other image (by cosine) is the same under both embeddings."""
    return float(np.mean(_nearest(ref) == _nearest(got)))


def _nearest(vectors: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """For each row, the index of the most cosine-similar other row (rows taken `chunk` at a time)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    nearest = np.empty(len(unit), np.int64)
    for start in range(0, len(unit), chunk):
        similarity = unit[start:start + chunk] @ unit.T
        rows = np.arange(len(similarity))
        similarity[rows, start + rows] = -math.inf
        nearest[start:start + chunk] = np.argmax(similarity, axis=1)
    return nearest


# ----------------------------------------------------------------------------------------------- one output


@dataclass(frozen=True)
class OutputFidelity:
    """Everything measured on one output of a variant against float32's.

    `channels` are the last axis for maps and vectors (a class, a mask channel, a heatmap, one
    of a box's values); for landmarks one entry per point (its x, y, z together), with `axes`
    one entry per value of a point (x, y, z, ...) across all points. Outputs of more than
    `MAX_CHANNELS` channels have none.
    """

    index: int
    name: str
    role: Role
    whole: TensorFidelity
    channels: tuple[TensorFidelity, ...]
    worst_channel: int | None  # index into channels: the lowest SQNR
    axes: tuple[TensorFidelity, ...] = ()
    worst_axis: int | None = None
    mask: MaskMetrics | None = None
    landmarks: LandmarkMetrics | None = None
    embedding: EmbeddingMetrics | None = None
    boxes: BoxSummary | None = None  # a detector's main output: its decoded boxes against float32's (quant_core.boxes)
    channel_names: tuple[str, ...] = ()  # the spec's: each channel in words where the role's word is not enough

    @classmethod
    def of(cls, spec: OutputSpec, reference: np.ndarray, got: np.ndarray, *,
           input_hw: tuple[int, int]) -> OutputFidelity:
        """Tensor, channel and task figures of one output, arrays [images, *spec.shape[1:]]."""
        n = len(reference)
        ref = np.asarray(reference, np.float64).reshape(n, *spec.shape[1:])
        out = np.asarray(got, np.float64).reshape(n, *spec.shape[1:])
        channels, axes = _breakdown(spec, ref, out)
        task = _TASK_METRICS.get(spec.role, _no_task_metrics)(spec, ref, out, input_hw)
        return cls(spec.index, spec.name, spec.role, TensorFidelity.of(ref, out), channels, _worst(channels),
                   axes, _worst(axes), **task, channel_names=spec.channel_names if channels else ())


def _breakdown(spec: OutputSpec, ref: np.ndarray, out: np.ndarray,
               ) -> tuple[tuple[TensorFidelity, ...], tuple[TensorFidelity, ...]]:
    """(channels, axes): per point and per coordinate for landmarks; per last-axis channel otherwise."""
    n = len(ref)
    if spec.role is Role.LANDMARKS and spec.points and spec.coords:
        k, d = spec.points, spec.coords
        per_point = columns(_points_major(ref, k, d), _points_major(out, k, d)) if k <= MAX_CHANNELS else ()
        return per_point, columns(ref.reshape(n * k, d), out.reshape(n * k, d))
    if spec.channel_axis != -1 and ref.ndim > 2:  # a YOLO [1, 4+C, A] output: a channel is one of the 4+C values
        ref, out = np.moveaxis(ref, spec.channel_axis, -1), np.moveaxis(out, spec.channel_axis, -1)
    width = ref.shape[-1] if ref.ndim > 1 else 1
    if width > MAX_CHANNELS:
        return (), ()
    return columns(ref.reshape(-1, width), out.reshape(-1, width)), ()


def _points_major(values: np.ndarray, points: int, coords: int) -> np.ndarray:
    """[images, K*D] to [images*D, K]: one column per point holding its values on every image."""
    return values.reshape(len(values), points, coords).transpose(0, 2, 1).reshape(-1, points)


TaskMetrics = Callable[[OutputSpec, np.ndarray, np.ndarray, tuple[int, int]], dict[str, Any]]


def _no_task_metrics(spec: OutputSpec, ref: np.ndarray, out: np.ndarray, input_hw: tuple[int, int]) -> dict[str, Any]:
    """Roles measured as tensors only (scores, boxes until detection, generic; class scores: metrics.py)."""
    return {}


_TASK_METRICS: Mapping[Role, TaskMetrics] = {
    Role.MASK: lambda s, r, o, hw: {"mask": MaskMetrics.of(r, o, threshold=s.mask_threshold)},
    Role.CLASS_MAP: lambda s, r, o, hw: {"mask": MaskMetrics.of(r, o)},
    Role.LANDMARKS: lambda s, r, o, hw: {"landmarks": LandmarkMetrics.of(
        r, o, input_hw=hw, coords=s.coords or 2, space=s.space or CoordSpace.UNKNOWN)},
    Role.HEATMAPS: lambda s, r, o, hw: {"landmarks": from_points(
        heatmap_points(r, input_hw=hw), heatmap_points(o, input_hw=hw), input_hw=hw)},
    Role.EMBEDDING: lambda s, r, o, hw: {"embedding": EmbeddingMetrics.of(r, o)},
}

"""Whole-dataset scores and how they fold into a comparison.

Calibration, the checks, latency, sizes and the per-image detail need a few hundred images
in memory (a spread sample); agreement, accuracy and output fidelity need every image, which
an executor streams shard by shard (quant_core.serving.dataset_evaluation) into a
`DatasetEvaluation`. `apply_evaluation` puts the whole-set numbers into the comparison, so
its table and verdict speak for the whole dataset.

Every output of every variant is tallied image by image (`OutputTally`): the sums its
tensor figures are made of (`Sums`: SQNR, cosine, max |Δ| and relative RMSE are then taken
over every value of every image, as on all images at once, never averaged over shards) and
the task's per-image figures (mask IoU, PCK, cosine) whose means are the whole set's. A
model that is not a classifier is scored by its task's agreement (quant_core.outputs.AGREEMENT)
on every image; labels and accuracy are a classifier's only. Per-channel and per-point
figures stay the sample's: a few hundred images find the worst channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from quant_core import outputs
from quant_core._serde import from_jsonable, to_jsonable
from quant_core.fidelity import (EmbeddingMetrics, LandmarkMetrics, MaskMetrics, OutputFidelity, TensorFidelity,
                                 from_sums, labels)
from quant_core.inputs.images import SkippedFile
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.tasks import CoordSpace, OutputSpec, Role, Task, main_output

# float32 scoring this far below its accuracy on the comparison's own images puts the set's labels in doubt. Not
# less: a few chosen photos are easier than a whole validation set (the bundled ImageNet photos: 90.9 % against
# the published 71.9 %, 19 points), and beyond 3 standard errors of the comparison's figure on a small sample.
DOUBT_POINTS = 0.20
MEAN_COSINE = "mean cosine"  # an embedding's agreement on a whole set: nearest neighbours need every vector at once


@dataclass(frozen=True, eq=False)
class Sums:
    """Per image, the sums a tensor's `TensorFidelity` against float32's is made of.

    Kept per image, so that the whole set's totals are one sum over every image in dataset
    order: the same numbers however the set was cut into shards. Values that are not finite
    in either tensor are counted (`bad`) and left out of the sums.
    """

    signal: np.ndarray  # [images] Σ ref²
    noise: np.ndarray  # [images] Σ (ref − got)²
    dot: np.ndarray  # [images] Σ ref·got
    power: np.ndarray  # [images] Σ got²
    peak: np.ndarray  # [images] max |ref − got|
    bad: np.ndarray  # [images] values not finite in either tensor

    @classmethod
    def of(cls, reference: np.ndarray, got: np.ndarray) -> Sums:
        """The sums of each image of two arrays [images, ...]."""
        ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
        out = np.asarray(got, np.float64).reshape(len(got), -1)
        bad = np.sum(~np.isfinite(ref) | ~np.isfinite(out), axis=1)
        ref, out = np.where(np.isfinite(ref), ref, 0.0), np.where(np.isfinite(out), out, 0.0)
        diff = ref - out
        return cls(np.sum(ref * ref, axis=1), np.sum(diff * diff, axis=1), np.sum(ref * out, axis=1),
                   np.sum(out * out, axis=1), np.abs(diff).max(axis=1, initial=0.0), bad)

    def figures(self) -> TensorFidelity:
        """The figures over every image, defined as `quant_core.fidelity.TensorFidelity.of` defines them.

        SQNR = 10 log10(Σ ref² / Σ (ref − got)²); cosine = Σ ref·got / √(Σ ref² Σ got²), 1 when
        both are all zeros and 0 when one is; relative RMSE = √(Σ (ref − got)² / Σ ref²).
        """
        signal, power = float(np.sum(self.signal)), float(np.sum(self.power))
        return from_sums(int(np.sum(self.bad)), signal, float(np.sum(self.noise)), float(np.sum(self.dot)),
                         math.sqrt(signal * power), float(np.max(self.peak, initial=0.0)))


_COUNTS = ("class_inter", "class_union")  # OutputTally's fields that are counts over images, not per image


@dataclass(frozen=True, eq=False)
class OutputTally:
    """One output of one variant against float32's on some images: what its whole-set figures are made of.

    Per-image figures (one entry per image read, NaN where undefined) are concatenated in
    dataset order; the whole set's figures are taken over them at the end, so they do not
    depend on how the set was cut into shards. The task's per-image figures are those of
    `OutputFidelity.of` on the same images.
    """

    whole: Sums
    cosine: np.ndarray  # per image: cosine similarity of the image's values with float32's
    iou: np.ndarray | None = None  # masks and class maps, per image
    pixels: np.ndarray | None = None  # masks and class maps, per image: share of pixels given the same label
    class_inter: np.ndarray | None = None  # class maps, per class: pixels both give the class (counts: added exactly)
    class_union: np.ndarray | None = None  # class maps, per class: pixels either gives the class
    pck: np.ndarray | None = None  # landmarks and heatmaps, per image (NaN: units unknown)
    error: np.ndarray | None = None  # landmarks and heatmaps, per image: mean distance (NaN: not finite)

    @classmethod
    def of(cls, spec: OutputSpec, reference: np.ndarray, got: np.ndarray, *, input_hw: tuple[int, int]) -> OutputTally:
        """The tally of one output on a batch of images, arrays [images, *spec.shape[1:]]."""
        n = len(reference)
        ref = np.asarray(reference, np.float64).reshape(n, *spec.shape[1:])
        out = np.asarray(got, np.float64).reshape(n, *spec.shape[1:])
        tally = cls(Sums.of(ref, out), _cosines(ref, out))
        if spec.role not in (Role.MASK, Role.CLASS_MAP, Role.LANDMARKS, Role.HEATMAPS):
            return tally
        found = OutputFidelity.of(spec, ref, out, input_hw=input_hw)  # the task's figures as the comparison's
        if found.mask is not None:
            inter, union = _class_overlap(spec, ref, out) if spec.role is Role.CLASS_MAP else (None, None)
            return replace(tally, iou=_array(found.mask.per_image_iou), pixels=_array(found.mask.per_image_agreement),
                           class_inter=inter, class_union=union)
        if found.landmarks is not None:
            return replace(tally, pck=_array(found.landmarks.per_image_pck),
                           error=_array(found.landmarks.per_image_error))
        return tally

    @classmethod
    def joined(cls, tallies: Sequence[OutputTally]) -> OutputTally:
        """The tallies' images in the order given (counts added, per-image figures concatenated)."""
        return cls(**{f.name: _joined([getattr(t, f.name) for t in tallies], added=f.name in _COUNTS)
                      for f in fields(cls)})

    def fidelity(self, spec: OutputSpec, *, input_hw: tuple[int, int]) -> OutputFidelity:
        """The output's whole-tensor and task figures on every image tallied.

        Per channel, per point and per image figures are left empty: the comparison's sample
        keeps its own (`apply_evaluation`).
        """
        return OutputFidelity(spec.index, spec.name, spec.role, self.whole.figures(), (), None, mask=self._mask(),
                              landmarks=self._landmarks(spec, input_hw),
                              embedding=self._embedding() if spec.role is Role.EMBEDDING else None)

    def per_image(self, task: Task) -> np.ndarray:
        """The task's agreement with float32 on each image, as the main output gives it: mask IoU, PCK, else cosine."""
        if task is Task.SEGMENTATION and self.iou is not None:
            return self.iou
        if task is Task.LANDMARKS and self.pck is not None and not np.all(np.isnan(self.pck)):
            return self.pck
        return self.cosine

    def _mask(self) -> MaskMetrics | None:
        if self.iou is None or self.pixels is None:
            return None
        if self.class_inter is None or self.class_union is None:
            return MaskMetrics(_mean(self.iou), _mean(self.pixels), (), ())
        class_iou = tuple(float(i / u) if u else None for i, u in zip(self.class_inter, self.class_union))
        present = [v for v in class_iou if v is not None]
        return MaskMetrics(float(np.mean(present)) if present else 1.0, _mean(self.pixels), (), (), class_iou)

    def _landmarks(self, spec: OutputSpec, input_hw: tuple[int, int]) -> LandmarkMetrics | None:
        if self.error is None or self.pck is None:
            return None
        space = spec.space or CoordSpace.UNKNOWN
        size = float(max(input_hw)) if space is not CoordSpace.UNKNOWN else None
        error = _finite_mean(self.error)  # every image has the same points: the mean over all points
        share = None if error is None or size is None else error / size
        return LandmarkMetrics(mean_error=error, mean_error_share=share,
                               pck_5=None if size is None else _finite_mean(self.pck), per_image_error=(),
                               per_image_pck=(), per_point_error=(), worst_point=None, space=space)

    def _embedding(self) -> EmbeddingMetrics:
        whole = bool(len(self.cosine)) and bool(np.all(np.isfinite(self.cosine)))
        return EmbeddingMetrics(float(np.mean(self.cosine)) if whole else None,
                                float(np.min(self.cosine)) if whole else None, (), None)


def _cosines(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Each image's cosine similarity with float32's (both zero: 1; one zero: 0; NaN when not finite)."""
    a, b = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    finite = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1)
    a, b = np.where(finite[:, None], a, 0.0), np.where(finite[:, None], b, 0.0)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    zero = np.where(~a.any(axis=1) & ~b.any(axis=1), 1.0, 0.0)
    cosine = np.where(norm > 0, np.clip(np.sum(a * b, axis=1) / np.where(norm > 0, norm, 1.0), -1.0, 1.0), zero)
    return np.where(finite, cosine, np.nan)


def _class_overlap(spec: OutputSpec, ref: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the pixels both maps give the class, and that either does (each pixel's argmax), on all images."""
    want, have = labels(ref), labels(out)
    classes = range(max(2, spec.shape[-1]))
    return (np.array([np.sum((want == c) & (have == c)) for c in classes], np.int64),
            np.array([np.sum((want == c) | (have == c)) for c in classes], np.int64))


def _array(values: Sequence[float | None]) -> np.ndarray:
    """Floats with NaN for None."""
    return np.array([math.nan if v is None else v for v in values], np.float64)


def _joined(parts: list[Any], *, added: bool) -> Any:
    """One field of several tallies: counts added, anything per image concatenated (Sums field by field)."""
    if any(p is None for p in parts):
        return None
    if added:
        return np.sum(parts, axis=0)
    if isinstance(parts[0], Sums):
        return Sums(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Sums)})
    return np.concatenate(parts)


def _mean(values: np.ndarray) -> float:
    """The mean (1.0 for no values: nothing disagrees), as quant_core.fidelity's masks define it."""
    return float(np.mean(values)) if len(values) else 1.0


def _finite_mean(values: np.ndarray) -> float | None:
    """The mean, or None when any value is NaN or infinite (or there are none)."""
    return float(np.mean(values)) if len(values) and bool(np.all(np.isfinite(values))) else None


def measure_of(task: Task, specs: Sequence[OutputSpec], found: Sequence[OutputFidelity]) -> str:
    """The title of what `outputs.agreement` gives for these figures (an embedding's on a whole set: mean cosine)."""
    main = main_output(specs)
    if task is Task.CLASSIFICATION or main is None or main.index >= len(found):
        return outputs.AGREEMENT[task][0]
    f = found[main.index]
    if task is Task.SEGMENTATION and f.mask is not None:
        return outputs.AGREEMENT[task][0]
    if task is Task.LANDMARKS and f.landmarks is not None and f.landmarks.pck_5 is not None:
        return outputs.AGREEMENT[task][0]
    if task is Task.EMBEDDING and f.embedding is not None:
        return outputs.AGREEMENT[task][0] if f.embedding.nn_agreement is not None else MEAN_COSINE
    if task is Task.DETECTION and f.boxes is not None:
        return outputs.AGREEMENT[task][0]
    return outputs.AGREEMENT[Task.GENERIC][0]


@dataclass(frozen=True)
class VariantScore:
    """A variant's numbers on the whole dataset.

    A classifier's: top-1 agreement, accuracy with labels, and per image its top-1 class. Any
    other task's: `top1_agreement` is the task's agreement (`DatasetEvaluation.measure`), and
    `per_image` its figure per image; the class-score fields stay empty. `outputs` holds every
    output's whole-tensor and task figures on the whole set (per channel, per point and per
    image detail stays the comparison sample's: empty here).
    """

    name: str
    tflite_sha256: str
    top1_agreement: float | None  # with the float32 reference (another task: its agreement)
    top5_agreement: float | None  # the reference's top-1 among this variant's top 5
    accuracy: float | None  # with labels
    top5_accuracy: float | None
    mean_abs_diff: float | None
    kl_divergence: float | None
    top1: tuple[int, ...]  # per image in dataset order; -1 where the image was skipped (classifiers only)
    per_image: tuple[float | None, ...] = ()  # another task: its agreement per image; None where skipped or undefined
    outputs: tuple[OutputFidelity, ...] = ()  # every output against float32's on the whole set (no per-channel detail)


@dataclass(frozen=True)
class DatasetEvaluation:
    """Every variant on every image of a dataset, and how the work ran."""

    dataset: str
    images: tuple[str, ...]  # names, in dataset order
    labels: tuple[int | None, ...]  # class index per image
    labels_source: str
    variants: tuple[VariantScore, ...]
    skipped: tuple[SkippedFile, ...]
    executor: str
    workers: int
    shards: int
    seconds: float
    cancelled: bool = False  # stopped early: the numbers cover `evaluated` images only
    worker_names: tuple[str, ...] = field(default=())  # host:pid of every process that ran a shard
    task: Task = Task.CLASSIFICATION  # what the model does: a classifier is scored by classes, others by outputs
    measure: str = outputs.AGREEMENT[Task.CLASSIFICATION][0]  # what `VariantScore.top1_agreement` measures
    read: tuple[bool, ...] = ()  # per image in dataset order: decoded and run
    stopped_because: str | None = None  # why a `cancelled` run stopped when nobody asked it to (a lost cluster)
    incidents: tuple[str, ...] = ()  # what went wrong and was overcome (a node lost, a hung task run again)

    @property
    def evaluated(self) -> int:
        """Images decoded and run (skipped and, when cancelled, not reached images excluded)."""
        if self.read:
            return sum(self.read)
        return sum(1 for t in self.variants[0].top1 if t >= 0) if self.variants else 0

    @property
    def images_per_second(self) -> float:
        return self.evaluated / self.seconds if self.seconds > 0 else 0.0

    def score(self, name: str) -> VariantScore:
        """The named variant's numbers."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-ready form (round-trips through `from_dict`)."""
        return to_jsonable(self) | {"evaluated": self.evaluated, "images_per_second": self.images_per_second}

    @classmethod
    def from_dict(cls, data: dict) -> DatasetEvaluation:
        return from_jsonable(cls, {k: v for k, v in data.items() if k not in ("evaluated", "images_per_second")})


def apply_evaluation(result: CompareResult, evaluation: DatasetEvaluation) -> CompareResult:
    """The comparison with each variant's agreement, accuracy and output fidelity taken from the whole dataset.

    Sizes, latency, ops and the per-image detail stay the sample's; the source model's own
    accuracy and the agreement with it are not measured on the whole set (None).
    """
    return replace(result, variants=rescored(result.variants, evaluation), source_accuracy=None,
                   source_top5_accuracy=None, scored_images=evaluation.evaluated)


def rescored(variants: Sequence[VariantResult], evaluation: DatasetEvaluation) -> tuple[VariantResult, ...]:
    """The variants with the fidelity numbers of `evaluation` (matched by model bytes); others as they are."""
    scores = {s.tflite_sha256: s for s in evaluation.variants}
    out = []
    for v in variants:
        score = scores.get(v.tflite_sha256 or "")
        if score is None or not v.ok:
            out.append(v)
            continue
        found = _with_sample_detail(score.outputs, v.outputs) if score.outputs else v.outputs
        if evaluation.task is not Task.CLASSIFICATION:
            out.append(replace(v, top1_agreement=score.top1_agreement, outputs=found))
            continue
        out.append(replace(
            v, top1_agreement=score.top1_agreement, top5_agreement=score.top5_agreement, accuracy=score.accuracy,
            top5_accuracy=score.top5_accuracy, mean_abs_diff=score.mean_abs_diff, kl_divergence=score.kl_divergence,
            top1_agreement_source=None, outputs=found))
    return tuple(out)


def _with_sample_detail(whole: Sequence[OutputFidelity], sample: Sequence[OutputFidelity],
                        ) -> tuple[OutputFidelity, ...]:
    """Each output's whole-set figures (whole tensor, the task's means), with the sample's detail: per channel, per
    point and per image (the views' images)."""
    mine = {f.index: f for f in sample}
    merged = []
    for f in whole:
        own = mine.get(f.index)
        if own is not None:
            f = replace(own, whole=f.whole, **{name: _detail_kept(getattr(f, name), getattr(own, name))
                                               for name in ("mask", "landmarks", "embedding")})
        merged.append(f)
    return tuple(merged)


_DETAIL = ("per_image_", "per_point_", "worst_")  # task figures that stay the sample's


def _detail_kept(whole: Any, sample: Any) -> Any:
    """`whole` (task figures on the whole set) with `sample`'s per-image and per-point fields, when both exist."""
    if whole is None or sample is None or type(whole) is not type(sample):
        return whole
    kept = {f.name: getattr(sample, f.name) for f in fields(sample) if f.name.startswith(_DETAIL)}
    return replace(whole, **kept)


def describe(evaluation: DatasetEvaluation) -> str:
    """One line: how many images, how they were run and how fast."""
    skipped = f", {len(evaluation.skipped)} skipped" if evaluation.skipped else ""
    stopped = (f" (stopped: {evaluation.stopped_because}; numbers cover the images done)" if evaluation.stopped_because
               else " (cancelled: numbers cover the images done)" if evaluation.cancelled else "")
    return (f"{evaluation.evaluated:,} of {len(evaluation.images):,} images{skipped}{stopped}; "
            f"{evaluation.executor}, {len(evaluation.worker_names)} worker process(es), "
            f"{evaluation.seconds:.1f} s, {evaluation.images_per_second:.1f} images/s for "
            f"{len(evaluation.variants)} models")


@dataclass(frozen=True)
class AccuracyDoubt:
    """float32 scores far below its accuracy on the comparison's images, or no better than chance, on a dataset."""

    dataset_accuracy: float  # float32 on the whole set
    sample_accuracy: float | None  # float32 on the comparison's images (None: they had no labels)
    sample_images: int
    chance: float  # 1 / classes

    @property
    def message(self) -> str:
        """What the numbers say, and why the accuracy columns cannot be read as a quantization loss."""
        against = (f"against {self.sample_accuracy:.2%} on the comparison's {self.sample_images} images"
                   if self.sample_accuracy is not None else f"no better than chance ({self.chance:.2%})")
        return (f"float32 itself scores {self.dataset_accuracy:.2%} accuracy on this set, {against}: its class "
                "folders probably do not name what the model's classes are (or it is a far harder set). Agreement "
                "is still measured against float32, but these accuracies say nothing about quantization.")


def accuracy_doubt(result: CompareResult, evaluation: DatasetEvaluation) -> AccuracyDoubt | None:
    """Doubt about a set's labels (see `labels_in_doubt`), or None when float32 scores plausibly on it."""
    reference = evaluation.variants[0] if evaluation.variants else None
    if reference is None or reference.accuracy is None or math.isnan(reference.accuracy):
        return None
    own = next((v.accuracy for v in result.variants if v.ok and v.tflite_sha256 == reference.tflite_sha256), None)
    doubt = AccuracyDoubt(reference.accuracy, own, result.fidelity_images, 1 / max(len(result.class_names), 1))
    return doubt if labels_in_doubt(own=own, dataset=doubt.dataset_accuracy, images=doubt.sample_images,
                                    chance=doubt.chance) else None


def labels_in_doubt(*, own: float | None, dataset: float, images: int, chance: float) -> bool:
    """True when float32's accuracy on a set (`dataset`) is far below its accuracy on the comparison's `images`
    (`own`): by more than max(DOUBT_POINTS, 3 standard errors of `own`); without `own`, at `chance` or below."""
    if own is None:
        return dataset <= chance
    return own - dataset > max(DOUBT_POINTS, 3 * math.sqrt(own * (1 - own) / max(images, 1)))

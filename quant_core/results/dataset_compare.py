"""Whole-dataset scores and how they fold into a comparison.

Calibration, the checks, latency, sizes and the per-image detail need a few hundred images
in memory (a spread sample); agreement and accuracy need every image, which an executor
streams shard by shard (quant_core.serving.dataset_evaluation) into a `DatasetEvaluation`.
`apply_evaluation` puts the whole-set numbers into the comparison, so its table and verdict
speak for the whole dataset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from quant_core._serde import from_jsonable, to_jsonable
from quant_core.inputs.images import SkippedFile
from quant_core.results.compare_result import CompareResult, VariantResult

# float32 scoring this far below its accuracy on the comparison's own images puts the set's labels in doubt. Not
# less: a few chosen photos are easier than a whole validation set (the bundled ImageNet photos: 90.9 % against
# the published 71.9 %, 19 points), and beyond 3 standard errors of the comparison's figure on a small sample.
DOUBT_POINTS = 0.20


@dataclass(frozen=True)
class VariantScore:
    """A variant's numbers on the whole dataset."""

    name: str
    tflite_sha256: str
    top1_agreement: float  # with the float32 reference
    top5_agreement: float  # the reference's top-1 among this variant's top 5
    accuracy: float | None  # with labels
    top5_accuracy: float | None
    mean_abs_diff: float
    kl_divergence: float
    top1: tuple[int, ...]  # per image in dataset order; -1 where the image was skipped


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

    @property
    def evaluated(self) -> int:
        """Images decoded and run (skipped and, when cancelled, not reached images excluded)."""
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
    """The comparison with each variant's agreement, accuracy and output error taken from the whole dataset.

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
        out.append(v if score is None or not v.ok else replace(
            v, top1_agreement=score.top1_agreement, top5_agreement=score.top5_agreement, accuracy=score.accuracy,
            top5_accuracy=score.top5_accuracy, mean_abs_diff=score.mean_abs_diff, kl_divergence=score.kl_divergence,
            top1_agreement_source=None))
    return tuple(out)


def describe(evaluation: DatasetEvaluation) -> str:
    """One line: how many images, how they were run and how fast."""
    skipped = f", {len(evaluation.skipped)} skipped" if evaluation.skipped else ""
    stopped = " (cancelled: numbers cover the images done)" if evaluation.cancelled else ""
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

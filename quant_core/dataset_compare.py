"""A comparison on a dataset of any size: variants built and timed on a sample, scored on every image.

Calibration, the checks, latency, sizes and the per-image detail need a few hundred images
in memory (a spread sample); agreement and accuracy need every image, which an executor
streams shard by shard (quant_core.evaluation). `apply_evaluation` puts the whole-set numbers
into the comparison, so its table and verdict speak for the whole dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from quant_core.cache import ArtifactCache
from quant_core.errors import Cancelled
from quant_core.compare import Workbench, measure_variants
from quant_core.datasets import Dataset
from quant_core.evaluation import DatasetEvaluation, EvaluationProgress, evaluate_dataset
from quant_core.executors import Executor
from quant_core.images import resolve_label_names
from quant_core.models import load_model
from quant_core.request import CompareOptions, ProgressCallback
from quant_core.results import CompareResult, VariantResult

SAMPLE_IMAGES = 500  # the in-memory sample: calibration (up to 100 by default), checks and per-image detail
# float32 scoring this far below its accuracy on the comparison's own images puts the set's labels in doubt. Not
# less: a few chosen photos are easier than a whole validation set (the bundled ImageNet photos: 90.9 % against
# the published 71.9 %, 19 points), and beyond 3 standard errors of the comparison's figure on a small sample.
DOUBT_POINTS = 0.20


def compare_on_dataset(model: str | Path, dataset: Dataset, options: CompareOptions, *, executor: Executor,
                       sample: int = SAMPLE_IMAGES, class_names: Sequence[str] | None = None,
                       cache: ArtifactCache | None = None,
                       on_progress: ProgressCallback | None = None,
                       on_evaluation: Callable[[EvaluationProgress], None] | None = None,
                       ) -> tuple[CompareResult, DatasetEvaluation]:
    """Builds and measures the variants on a sample of `dataset`, then scores them on all of it.

    Labels are resolved on the whole dataset first, so a sample that misses a class maps
    folder names to the same indices as the full set.

    Raises:
        QuantError: the model, images or options cannot be used; ExecutorError: the executor failed.
    """
    bench = open_sampled(model, dataset, options, sample=sample, class_names=class_names, cache=cache)
    result = measure_variants(bench, options, on_progress=on_progress or (lambda p: None))
    evaluation = evaluate_dataset(dataset, bench.model_set(result.variants), num_classes=bench.source.info.num_classes,
                                  class_names=bench.labels.class_names, executor=executor, on_progress=on_evaluation)
    return apply_evaluation(result, evaluation), evaluation


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


class DatasetScorer:
    """Scores built variants on every image of a dataset through an executor (the searches' way beyond one machine).

    Given to `tune` and `calibration_sweep`: each variant they build on the workbench's sample
    is then judged on the whole dataset. Each call is one pass over the dataset, with the
    float32 reference beside the variants (agreement is measured against it, image by image).
    """

    def __init__(self, bench: Workbench, dataset: Dataset, executor: Executor, *,
                 on_evaluation: Callable[[EvaluationProgress], None] | None = None) -> None:
        self.bench, self.dataset, self.executor, self.on_evaluation = bench, dataset, executor, on_evaluation
        self.passes: list[DatasetEvaluation] = []  # every pass, in order (how the work ran)

    def __call__(self, variants: Sequence[VariantResult]) -> tuple[VariantResult, ...]:
        if not any(v.ok for v in variants):
            return tuple(variants)
        evaluation = evaluate_dataset(self.dataset, self.bench.model_set(variants),
                                      num_classes=self.bench.source.info.num_classes,
                                      class_names=self.bench.labels.class_names, executor=self.executor,
                                      on_progress=self.on_evaluation)
        if evaluation.cancelled:
            raise Cancelled("stopped while scoring on the whole dataset")
        self.passes.append(evaluation)
        return rescored(variants, evaluation)


def open_sampled(model: str | Path, dataset: Dataset, options: CompareOptions, *, sample: int = SAMPLE_IMAGES,
                 class_names: Sequence[str] | None = None, cache: ArtifactCache | None = None) -> Workbench:
    """A workbench on a spread sample of `dataset`, its labels resolved on the whole set (same indices)."""
    source = load_model(model)
    names = resolve_label_names([e.label_name for e in dataset.entries], source.info.num_classes, class_names)
    bench = Workbench.open(model, dataset.sample(sample), class_names=names.class_names, options=options,
                           cache=cache, source=source)
    bench.labels = replace(bench.labels, source=names.source)  # how the whole set's folders were read
    return bench


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

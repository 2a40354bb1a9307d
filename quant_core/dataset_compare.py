"""A comparison on a dataset of any size: variants built and timed on a sample, scored on every image.

Calibration, the checks, latency, sizes and the per-image detail need a few hundred images
in memory (a spread sample); agreement and accuracy need every image, which an executor
streams shard by shard (quant_core.evaluation). `apply_evaluation` puts the whole-set numbers
into the comparison, so its table and verdict speak for the whole dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
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

"""A comparison on a dataset of any size: variants built and timed on a sample, scored on every image.

Calibration, the checks, latency, sizes and the per-image detail need a few hundred images
in memory (a spread sample); agreement and accuracy need every image, which an executor
streams shard by shard (quant_core.evaluation). `apply_evaluation` puts the whole-set numbers
into the comparison, so its table and verdict speak for the whole dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from quant_core.cache import ArtifactCache
from quant_core.compare import Workbench, measure_variants
from quant_core.datasets import Dataset
from quant_core.evaluation import DatasetEvaluation, EvaluationProgress, evaluate_dataset
from quant_core.executors import Executor
from quant_core.images import resolve_label_names
from quant_core.models import load_model
from quant_core.request import CompareOptions, ProgressCallback
from quant_core.results import CompareResult

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
    source = load_model(model)
    names = resolve_label_names([e.label_name for e in dataset.entries], source.info.num_classes, class_names)
    bench = Workbench.open(model, dataset.sample(sample), class_names=names.class_names, options=options,
                           cache=cache, source=source)
    result = replace(measure_variants(bench, options, on_progress=on_progress or (lambda p: None)),
                     labels_source=names.source)  # how the whole set's folders were read, not the sample's
    evaluation = evaluate_dataset(dataset, bench.model_set(result.variants), num_classes=source.info.num_classes,
                                  class_names=names.class_names, executor=executor, on_progress=on_evaluation)
    return apply_evaluation(result, evaluation), evaluation


def apply_evaluation(result: CompareResult, evaluation: DatasetEvaluation) -> CompareResult:
    """The comparison with each variant's agreement, accuracy and output error taken from the whole dataset.

    Sizes, latency, ops and the per-image detail stay the sample's; the source model's own
    accuracy and the agreement with it are not measured on the whole set (None).
    """
    scores = {s.tflite_sha256: s for s in evaluation.variants}
    variants = []
    for v in result.variants:
        score = scores.get(v.tflite_sha256 or "")
        if score is None or not v.ok:
            variants.append(v)
            continue
        variants.append(replace(v, top1_agreement=score.top1_agreement, top5_agreement=score.top5_agreement,
                                accuracy=score.accuracy, top5_accuracy=score.top5_accuracy,
                                mean_abs_diff=score.mean_abs_diff, kl_divergence=score.kl_divergence,
                                top1_agreement_source=None))
    return replace(result, variants=tuple(variants), source_accuracy=None, source_top5_accuracy=None,
                   scored_images=evaluation.evaluated)


def describe(evaluation: DatasetEvaluation) -> str:
    """One line: how many images, how they were run and how fast."""
    skipped = f", {len(evaluation.skipped)} skipped" if evaluation.skipped else ""
    stopped = " (cancelled: numbers cover the images done)" if evaluation.cancelled else ""
    rate = evaluation.images_per_second
    return (f"{evaluation.evaluated:,} of {len(evaluation.images):,} images{skipped}{stopped}; "
            f"{evaluation.executor}, {len(evaluation.worker_names)} worker process(es), "
            f"{evaluation.seconds:.1f} s, {rate:.1f} images/s for {len(evaluation.variants)} models"
            if not math.isnan(rate) else "")

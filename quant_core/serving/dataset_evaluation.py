"""Evaluating built variants on a whole dataset, shard by shard, through an executor.

Named apart from evaluating one variant on the workbench's images (quant_core.compare):
`compare_on_dataset` builds and times the variants on a sample, then scores them here on
every image; `DatasetScorer` does the same for the searches (quant_core.tune).

The variants' .tflite bytes (the float32 reference first) travel once to wherever shards
run; each shard decodes its own images with the workbench's preprocessing, runs every
variant on them with the LiteRT interpreter and sends back only what the metrics need, image
by image: for every output, the sums its SQNR, cosine and RMSE are made of and the task's
figures against the reference (`quant_core.results.dataset_compare.OutputTally`) and, for a
classifier, top-k classes and errors of its class scores. Merged in dataset order, the
numbers are the same whichever executor ran the shards, however many; only timings differ.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from quant_core import metrics, outputs
from quant_core.boxes import BoxSummary, Decoder, decode
from quant_core.cache import ArtifactCache
from quant_core.compare import ModelSet, Workbench, measure_variants
from quant_core.errors import Cancelled, ImageError, InputError
from quant_core.fidelity import OutputFidelity
from quant_core.inputs.datasets import Dataset, decode_entries
from quant_core.inputs.images import Labels, SkippedFile, resolve_label_names
from quant_core.inputs.models import load_model
from quant_core.inputs.preprocess import to_model_input
from quant_core.request import CompareOptions, ProgressCallback
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.results.dataset_compare import (DatasetEvaluation, OutputTally, VariantScore, apply_evaluation,
                                                measure_of, rescored)
from quant_core.runner import TFLiteRunner
from quant_core.serving.executors import ClusterLost, Executor, ExecutorError, LocalExecutor
from quant_core.tasks import main_output

SHARD_SIZE = 64  # images per task: big enough to amortize a task (~ms), small enough to stream
TOP_K = 5
SAMPLE_IMAGES = 500  # the in-memory sample: calibration (up to 100 by default), checks and per-image detail
NOT_A_CLASSIFIER = "not used: the model is not a classifier"

Tallies = tuple[tuple[OutputTally, ...], ...]  # [variant][output]


@dataclass(frozen=True)
class Shard:
    """A task: a slice of the dataset, and where it starts."""

    start: int
    images: Dataset


@dataclass(frozen=True)
class ShardResult:
    """One shard's numbers, per variant and image (rows of skipped images are left at zero)."""

    start: int
    read: np.ndarray  # [n] bool: decoded and evaluated
    top: np.ndarray  # [variants, n, k] int32: the k best classes, best first (-1: not a classifier, or not read)
    max_abs_diff: np.ndarray  # [variants, n] float64: largest |Δp| against the reference
    kl: np.ndarray  # [variants, n] float64: KL(reference || variant)
    skipped: tuple[SkippedFile, ...]
    seconds: float
    worker: str  # host:pid, to see where shards ran
    outputs: Tallies = ()  # every output of every variant against the reference's, on the images read
    boxes: tuple[BoxSummary, ...] = ()  # a detector's: each variant's boxes against the reference's, on the shard


@dataclass(frozen=True)
class EvaluationProgress:
    """How far an evaluation is: images done of all, and the pace so far."""

    done: int
    total: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        rate = self.images_per_second
        return (self.total - self.done) / rate if rate > 0 else None

    @property
    def message(self) -> str:
        left = self.seconds_left
        eta = f", about {_duration(left)} left" if left is not None and self.done < self.total else ""
        return f"{self.done:,} of {self.total:,} images, {self.images_per_second:.1f} images/s{eta}"


_RUNNERS: dict[str, list[TFLiteRunner]] = {}  # in a worker process: the interpreters of the last ModelSet


def evaluate_shard(shard: Shard, models: ModelSet) -> ShardResult:
    """Decodes a shard's images and runs every model on them (runs in whichever process the executor picks)."""
    start = time.perf_counter()
    if models.key not in _RUNNERS:
        _RUNNERS.clear()  # one set at a time: a new evaluation frees the last one's interpreters
        _RUNNERS[models.key] = [TFLiteRunner(m.tobytes(), num_threads=models.threads) for m in models.models]
    runners = _RUNNERS[models.key]
    n = len(shard.images)
    read = np.zeros(n, bool)
    pixels, skipped = [], []
    for index, decoded in decode_entries(shard.images, range(n)):
        if isinstance(decoded, SkippedFile):
            skipped.append(decoded)
        else:
            read[index] = True
            pixels.append(decoded)
    top = np.full((len(runners), n, TOP_K), -1, np.int32)
    mad = np.zeros((len(runners), n))
    kl = np.zeros((len(runners), n))
    tallies: Tallies = ()
    if pixels:
        x = to_model_input(pixels, models.preprocessing)
        got = [runner.predict_all(x) for runner in runners]
        tallies = tuple(tuple(OutputTally.of(spec, got[0][spec.index], mine[spec.index], input_hw=models.input_hw)
                              for spec in models.specs) for mine in got)
        if models.classifier:
            _score_classes(got, models, read, top, mad, kl)
    return ShardResult(shard.start, read, top, mad, kl, tuple(skipped), time.perf_counter() - start,
                       f"{os.uname().nodename}:{os.getpid()}", tallies, _box_summaries(got, models.decoder))


def _box_summaries(got: Sequence[tuple[np.ndarray, ...]], decoder: Decoder | None) -> tuple[BoxSummary, ...]:
    """A detector's boxes of every variant against the reference's (the first model's), on one shard."""
    if decoder is None or not got:
        return ()
    reference = decode(decoder, got[0])
    return tuple(BoxSummary.of(reference, decode(decoder, mine), threshold=decoder.threshold) for mine in got)


def _score_classes(got: Sequence[tuple[np.ndarray, ...]], models: ModelSet, read: np.ndarray, top: np.ndarray,
                   mad: np.ndarray, kl: np.ndarray) -> None:
    """Fills a classifier's top-k classes and per-image errors against the reference, for the images read."""
    reference = None
    for k, outs in enumerate(got):
        probs = metrics.to_probabilities(outs[models.class_output], models.output_kind)
        reference = probs if reference is None else reference
        k_top = min(TOP_K, probs.shape[1])
        top[k, read, :k_top] = metrics.top_classes(probs, k_top)
        mad[k, read] = metrics.max_abs_diffs(probs, reference)
        kl[k, read] = metrics.kl_divergences(probs, reference)


class _Merged:
    """Shard results gathered in dataset order, whatever order they arrive in."""

    def __init__(self, n: int, variants: int) -> None:
        self.read = np.zeros(n, bool)
        self.top = np.full((variants, n, TOP_K), -1, np.int32)
        self.mad, self.kl = np.zeros((variants, n)), np.zeros((variants, n))
        self.skipped: list[tuple[int, SkippedFile]] = []
        self.workers: set[str] = set()
        self.tallies: dict[int, Tallies] = {}  # by shard start
        self.boxes: dict[int, tuple[BoxSummary, ...]] = {}  # by shard start: a detector's box totals per variant

    def add(self, a: int, b: int, result: ShardResult) -> None:
        self.read[a:b], self.top[:, a:b] = result.read, result.top
        self.mad[:, a:b], self.kl[:, a:b] = result.max_abs_diff, result.kl
        self.skipped += [(a, s) for s in result.skipped]
        self.workers.add(result.worker)
        if result.outputs:
            self.tallies[a] = result.outputs
        if result.boxes:
            self.boxes[a] = result.boxes

    def outputs(self, models: ModelSet) -> list[tuple[OutputFidelity, ...]]:
        """Each variant's outputs on every image read: the shards' tallies added in dataset order."""
        shards = [self.tallies[a] for a in sorted(self.tallies)]
        if not shards or not models.specs:
            return [() for _ in models.names]
        found = [tuple(OutputTally.joined([s[k][i] for s in shards]).fidelity(spec, input_hw=models.input_hw)
                       for i, spec in enumerate(models.specs)) for k in range(len(models.names))]
        main = main_output(models.specs)
        if not self.boxes or main is None:
            return found
        totals = [functools.reduce(BoxSummary.merged, [self.boxes[a][k] for a in sorted(self.boxes)])
                  for k in range(len(models.names))]
        return [tuple(replace(f, boxes=total) if f.index == main.index else f for f in figures)
                for figures, total in zip(found, totals)]

    def per_image(self, models: ModelSet, k: int) -> tuple[float | None, ...]:
        """Variant k's agreement on each image, in dataset order (None: not read, or undefined)."""
        main = main_output(models.specs)
        if main is None or not self.tallies:
            return (None,) * len(self.read)
        values = np.concatenate([self.tallies[a][k][main.index].per_image(models.task) for a in sorted(self.tallies)])
        full = np.full(len(self.read), np.nan)
        full[self.read] = values
        return tuple(None if math.isnan(v) else float(v) for v in full)


def evaluate_dataset(dataset: Dataset, models: ModelSet, *, num_classes: int,
                     class_names: Sequence[str] | None = None, executor: Executor | None = None,
                     shard_size: int | None = None, on_progress: Callable[[EvaluationProgress], None] | None = None,
                     shard_fn: Callable[[Shard, ModelSet], ShardResult] = evaluate_shard) -> DatasetEvaluation:
    """Every model of `models` on every image of `dataset`, merged in dataset order.

    Shards hold `shard_size` images; by default SHARD_SIZE, or fewer on a small set, so
    that every worker gets several shards (progress moves, and the last shard is short).
    `on_progress` hears after each shard. Raising `Cancelled` from it (or Ctrl-C) stops the
    executor's pending work; the result then covers the shards done so far and says
    `cancelled`. `shard_fn` is the per-shard function (tests wrap it to inject faults).
    A model that is not a classifier (`ModelSet.task`) is scored by its task's agreement on
    every image; its class folders, if any, are not read.

    Raises:
        ImageError: class folders that do not fit a classifier.
        InputError: no models; ExecutorError: the executor failed.
    """
    if not models.names:
        raise InputError("nothing to evaluate: no built variants")
    labels = _labels(dataset, models, num_classes, class_names)
    executor = executor or LocalExecutor()
    ranges = dataset.shards(shard_size or _shard_size(len(dataset), executor.workers))
    shards = [Shard(a, Dataset(dataset.entries[a:b], (), dataset.description)) for a, b in ranges]
    merged = _Merged(len(dataset), len(models.names))
    report = on_progress or (lambda p: None)
    begin, done = time.perf_counter(), 0
    runs, cancelled, stopped_because = executor.run(shard_fn, shards, models), False, None
    try:
        for position, result in runs:
            a, b = ranges[position]
            merged.add(a, b, result)
            done += b - a
            report(EvaluationProgress(done, len(dataset), time.perf_counter() - begin))
    except (Cancelled, KeyboardInterrupt):  # stopped: the shards done so far are the result
        cancelled = True
    except ClusterLost as err:  # the same, for a reason the user did not choose
        cancelled, stopped_because = True, str(err)
    finally:
        runs.close()  # the executor cancels the work still pending
    seconds = time.perf_counter() - begin
    found = merged.outputs(models)
    scores = tuple(_score(name, sha, k, merged, labels.indices, found[k]) if models.classifier else
                   _task_score(name, sha, k, merged, models, found[k])
                   for k, (name, sha) in enumerate(zip(models.names, models.shas)))
    return DatasetEvaluation(
        dataset=dataset.description, images=tuple(e.name for e in dataset.entries), labels=labels.indices,
        labels_source=labels.source, variants=scores,
        skipped=dataset.skipped + tuple(s for _, s in sorted(merged.skipped, key=lambda p: p[0])),
        executor=executor.description, workers=executor.workers, shards=len(shards), seconds=seconds,
        cancelled=cancelled, worker_names=tuple(sorted(merged.workers)), task=models.task,
        measure=measure_of(models.task, models.specs, found[0]), read=tuple(bool(r) for r in merged.read),
        stopped_because=stopped_because, incidents=tuple(getattr(executor, "incidents", ())))


def _labels(dataset: Dataset, models: ModelSet, num_classes: int, class_names: Sequence[str] | None) -> Labels:
    """A classifier's class index per image from its folders; none for another task (folders are not read)."""
    if not models.classifier:
        return Labels((), (None,) * len(dataset), NOT_A_CLASSIFIER)
    return resolve_label_names([e.label_name for e in dataset.entries], num_classes, class_names)


def _shard_size(images: int, workers: int) -> int:
    """At most SHARD_SIZE images, and at least four shards per worker while shards keep 8 images or more."""
    return max(8, min(SHARD_SIZE, math.ceil(images / (4 * workers))))


def _score(name: str, sha: str, k: int, merged: _Merged, labels: tuple[int | None, ...],
           found: tuple[OutputFidelity, ...]) -> VariantScore:
    """A classifier's metrics over the images that were read (the same definitions as quant_core.metrics)."""
    top, read, reference_top = merged.top[k], merged.read, merged.top[0]
    rows, ref1 = top[read], reference_top[read][:, 0]
    known = [label for label, r in zip(labels, read) if r]
    labelled = bool(known) and all(label is not None for label in known)
    truth = np.asarray(known if labelled else [], dtype=np.int64)

    def share(hits: np.ndarray) -> float:
        return float(np.mean(hits)) if len(hits) else math.nan

    return VariantScore(
        name=name, tflite_sha256=sha, top1_agreement=share(rows[:, 0] == ref1),
        top5_agreement=share(np.any(rows == ref1[:, None], 1)),
        accuracy=share(rows[:, 0] == truth) if labelled else None,
        top5_accuracy=share(np.any(rows == truth[:, None], 1)) if labelled else None,
        mean_abs_diff=share(merged.mad[k][read]), kl_divergence=share(merged.kl[k][read]),
        top1=tuple(int(c) if r else -1 for c, r in zip(top[:, 0], read)), outputs=found)


def _task_score(name: str, sha: str, k: int, merged: _Merged, models: ModelSet,
                found: tuple[OutputFidelity, ...]) -> VariantScore:
    """Another task's scores: its agreement on every image read (`quant_core.outputs.agreement`), and per image."""
    agreement = outputs.agreement(models.task, models.specs, found) if found else None
    return VariantScore(name=name, tflite_sha256=sha, top1_agreement=agreement, top5_agreement=None, accuracy=None,
                        top5_accuracy=None, mean_abs_diff=None, kl_divergence=None, top1=(),
                        per_image=merged.per_image(models, k), outputs=found)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
        if evaluation.stopped_because:
            raise ExecutorError(evaluation.stopped_because)
        if evaluation.cancelled:
            raise Cancelled("stopped while scoring on the whole dataset")
        self.passes.append(evaluation)
        return rescored(variants, evaluation)


def open_sampled(model: str | Path, dataset: Dataset, options: CompareOptions, *, sample: int = SAMPLE_IMAGES,
                 class_names: Sequence[str] | None = None, cache: ArtifactCache | None = None) -> Workbench:
    """A workbench on a spread sample of `dataset`; a classifier's labels resolved on the whole set (same indices).

    Raises:
        ImageError: class folders that do not fit a classifier (another task does not read them).
    """
    source = load_model(model)
    try:
        names: Labels | ImageError = resolve_label_names([e.label_name for e in dataset.entries],
                                                         source.info.num_classes, class_names)
    except ImageError as err:  # a refusal only if the model turns out to be a classifier
        names = err
    bench = Workbench.open(model, dataset.sample(sample), options=options, cache=cache, source=source,
                           class_names=names.class_names if isinstance(names, Labels) else None)
    if not bench.reference.classifier:
        return bench
    if isinstance(names, ImageError):
        raise names
    labels = replace(bench.labels, source=names.source)  # how the whole set's folders were read
    bench.reference = replace(bench.reference, labels=labels)
    return bench

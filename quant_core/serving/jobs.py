"""What a worker process does for each job request (quant_core.serving.protocol): typed request in, typed answer out.

Importing this module registers the handlers, as worker jobs (`python -m quant_core.serving.worker`
imports it) and for `JobClient.in_process`.
"""

from __future__ import annotations

import os

from quant_core.compare import (Workbench, Workbenches, describe_outputs, labels_and_preprocessing,
                                run_compare, variant_names)
from quant_core.config import config
from quant_core.errors import InputError
from quant_core.inputs.datasets import open_dataset
from quant_core.inputs.images import class_counts, load_images, read_labels_file, spread_over_classes
from quant_core.layers import LayerReport
from quant_core.request import CompareRequest
from quant_core.results.compare_result import CompareResult
from quant_core.results.dataset_compare import DatasetEvaluation
from quant_core.serving.dataset_evaluation import evaluate_dataset
from quant_core.serving.executors import Executor, make_executor
from quant_core.serving.protocol import (CalibrationJob, CompareJob, DescribeJob, DatasetJob, ExecutorChoice,
                                         LayersJob, ModelDescription, Place, PrepareJob, Report, StatsJob, TuneJob,
                                         WorkerStats, serve)
from quant_core.tune import CalibrationSweep, TuneResult, calibration_sweep, tune

# What this worker process keeps between jobs: in a warm worker (quant_core.serving.pool) the next
# request on the same model skips loading it, and on the same images re-measures nothing.
WORKBENCHES = Workbenches(size=config().worker_workbenches)


@serve(StatsJob)
def stats_job(request: StatsJob, report: Report) -> WorkerStats:
    return WorkerStats(os.getpid(), WORKBENCHES.models_loaded)


@serve(CompareJob)
def compare_job(request: CompareJob, report: Report) -> CompareResult:
    return run_compare(request.request, cache=request.place.cache(), on_progress=report,
                       work_dir=request.place.folder(), workbenches=WORKBENCHES, earlier=request.earlier)


@serve(PrepareJob)
def prepare_job(request: PrepareJob, report: Report) -> WorkerStats:
    """Opens the workbench and measures its variants, whatever the results cache holds.

    Run in a warm worker right after a model is described: the user's first run then finds
    the model loaded, converted and its float32 baseline measured (and a what-if after a
    cached run finds a warm worker).
    """
    bench = _workbench(request.request, request.place, report)
    recipes = request.request.options.recipes
    for recipe, name in zip(recipes, variant_names(recipes)):
        variant = bench.evaluate(recipe, name=name, time_it=False)
        if variant.ok and variant.latency is None and request.request.options.measure_latency:
            bench.time(variant)
    return WorkerStats(os.getpid(), WORKBENCHES.models_loaded)


@serve(LayersJob)
def layers_job(request: LayersJob, report: Report) -> LayerReport:
    return _workbench(request.request, request.place, report).layer_report(request.recipe, name=request.name)


@serve(TuneJob)
def tune_job(request: TuneJob, report: Report) -> TuneResult:
    bench = _workbench(request.request, request.place, report)
    return tune(bench, request.budget, objective=request.objective, target=request.target, base=request.base,
                max_steps=request.max_steps, on_progress=report, on_step=report)


@serve(CalibrationJob)
def calibration_job(request: CalibrationJob, report: Report) -> CalibrationSweep:
    return calibration_sweep(_workbench(request.request, request.place, report), base=request.base,
                             on_progress=report)


@serve(DatasetJob)
def dataset_job(request: DatasetJob, report: Report) -> DatasetEvaluation:
    """The executor chosen (the server's configuration) stays open in this worker for the next evaluation."""
    bench = _workbench(request.request, request.place, report)
    wanted = set(request.variants)
    models = bench.model_set([v for v in request.result.variants if v.name in wanted])
    return evaluate_dataset(open_dataset([request.dataset]), models, num_classes=bench.source.info.num_classes,
                            class_names=bench.labels.class_names, executor=_executor(request.executor),
                            on_progress=report)


@serve(DescribeJob)
def describe_job(request: DescribeJob, report: Report) -> ModelDescription:
    work_dir = request.place.folder()
    if not os.path.exists(request.model):
        raise InputError(f"{request.model}: no such file or folder")
    images = load_images(request.images, work_dir=work_dir)
    names = read_labels_file(request.labels) if request.labels else None
    source = WORKBENCHES.source(request.model, work_dir=work_dir)
    labels, preprocessing = labels_and_preprocessing(source, images, names, request.override,
                                                     cache=request.place.cache())
    specs, task = describe_outputs(source, images, preprocessing, cache=request.place.cache())
    return ModelDescription(
        info=source.info, preprocessing=preprocessing,
        class_counts=tuple(class_counts(labels)), labels_source=labels.source, skipped=images.skipped,
        image_count=len(images.items),
        thumbnails=tuple(spread_over_classes(labels.indices, limit=request.thumbnails)), task=task, outputs=specs)


_EXECUTORS: dict[ExecutorChoice, Executor] = {}  # made on first use (a local Ray takes ~5 s)


def _executor(choice: ExecutorChoice) -> Executor:
    if choice not in _EXECUTORS:
        _EXECUTORS[choice] = make_executor(choice.kind, address=choice.address)
    return _EXECUTORS[choice]


def _workbench(request: CompareRequest, place: Place, report: Report) -> Workbench:
    """The request's workbench, opened in this process (kept for the next job)."""
    work_dir = place.folder()
    images = load_images(request.images, work_dir=work_dir)
    class_names = read_labels_file(request.labels_file) if request.labels_file else None
    return WORKBENCHES.open(request.model, images, class_names=class_names, options=request.options,
                            cache=place.cache(), work_dir=work_dir, on_progress=report)

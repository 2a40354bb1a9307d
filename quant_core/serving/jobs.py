"""The jobs a worker process can run (see quant_core.serving.worker): plain JSON in, JSON out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from quant_core._serde import from_jsonable, to_jsonable
from quant_core.cache import ArtifactCache
from quant_core.compare import (CompareRequest, Progress, Workbench, Workbenches, infer_preprocessing, run_compare,
                                variant_names)
from quant_core.config import config
from quant_core.errors import InputError
from quant_core.inputs.datasets import open_dataset
from quant_core.inputs.images import class_counts, load_images, read_labels_file, resolve_labels, spread_over_classes
from quant_core.inputs.preprocess import PreprocessingOverride
from quant_core.recipe import Recipe
from quant_core.results.compare_result import CompareResult
from quant_core.results.verdict import Floor, Target
from quant_core.serving.dataset_evaluation import evaluate_dataset
from quant_core.serving.executors import Executor, make_executor
from quant_core.serving.worker import job
from quant_core.tune import Objective, calibration_sweep, tune


# What this worker process keeps between jobs: in a warm engine (quant_core.serving.pool) the next
# request on the same model skips loading it, and on the same images re-measures nothing.
WORKBENCHES = Workbenches(size=config().engine_workbenches)


@job("engine.stats")
def stats_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """What this process has done so far: its id and how many models it loaded."""
    return {"pid": os.getpid(), "models_loaded": WORKBENCHES.models_loaded}


@job("compare")
def compare_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """run_compare on a serialized CompareRequest; returns CompareResult.to_dict()."""
    request = from_jsonable(CompareRequest, payload["request"])
    cache = ArtifactCache(Path(payload["cache_dir"])) if payload.get("cache_dir") else ArtifactCache()
    work_dir = Path(payload["work_dir"]) if payload.get("work_dir") else None

    def relay(p: Progress) -> None:
        progress(to_jsonable(p))

    earlier = CompareResult.from_dict(payload["earlier"]) if payload.get("earlier") else None
    return run_compare(request, cache=cache, on_progress=relay, work_dir=work_dir, workbenches=WORKBENCHES,
                       earlier=earlier).to_dict()


@job("prepare")
def prepare_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """Opens a request's workbench in this engine and measures its variants, whatever the results cache holds.

    Run in a warm engine right after a model is described: the user's first run then
    finds the model loaded, converted and its float32 baseline measured (and a what-if
    after a cached run finds a warm engine).
    """
    request, bench = _workbench(payload, progress)
    for recipe, name in zip(request.options.recipes, variant_names(request.options.recipes)):
        variant = bench.evaluate(recipe, name=name, time_it=False)
        if variant.ok and variant.latency is None and request.options.measure_latency:
            bench.time(variant)
    return {"pid": os.getpid(), "models_loaded": WORKBENCHES.models_loaded}


@job("layers")
def layers_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """Workbench.layer_report for one recipe of a serialized CompareRequest; returns the LayerReport as JSON."""
    _, bench = _workbench(payload, progress)
    return to_jsonable(bench.layer_report(Recipe.from_dict(payload["recipe"]), name=payload.get("name")))


@job("tune")
def tune_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """quant_core.tune on a serialized request; each step is reported as it is measured ({"step": ...})."""
    _, bench = _workbench(payload, progress)
    result = tune(bench, from_jsonable(Floor, payload["budget"]), objective=Objective(payload["objective"]),
                  target=Target(payload.get("target", Target.CPU.value)),
                  base=Recipe.from_dict(payload["base"]), max_steps=int(payload.get("max_steps", 12)),
                  on_progress=lambda p: progress(to_jsonable(p)),
                  on_step=lambda step: progress({"step": to_jsonable(step)}))
    return to_jsonable(result)


@job("calibration")
def calibration_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """quant_core.tune.calibration_sweep of one calibrated recipe on a serialized request."""
    _, bench = _workbench(payload, progress)
    return to_jsonable(calibration_sweep(bench, base=Recipe.from_dict(payload["base"]),
                                         on_progress=lambda p: progress(to_jsonable(p))))


@job("evaluate")
def evaluate_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """Scores chosen variants of a result on a server-side dataset; progress as {"evaluation": ...} messages.

    The payload's executor ({"kind": "local" | "ray", "address": ...}; the server's configuration)
    stays open in this engine for the next evaluation.
    """
    _, bench = _workbench(payload, progress)
    result = CompareResult.from_dict(payload["result"])
    wanted = set(payload["variants"])
    dataset = open_dataset([payload["dataset"]])
    models = bench.model_set([v for v in result.variants if v.name in wanted])
    evaluation = evaluate_dataset(dataset, models, num_classes=bench.source.info.num_classes,
                                  class_names=bench.labels.class_names,
                                  executor=_executor(**payload.get("executor", {})),
                                  on_progress=lambda p: progress({"evaluation": to_jsonable(p)}))
    return evaluation.to_dict()


_EXECUTORS: dict[tuple[str | None, str | None], Executor] = {}  # made on first use (a local Ray takes ~5 s)


def _executor(kind: str | None = None, address: str | None = None) -> Executor:
    if (kind, address) not in _EXECUTORS:
        _EXECUTORS[kind, address] = make_executor(kind, address=address)
    return _EXECUTORS[kind, address]


def _workbench(payload: dict[str, Any], progress) -> tuple[CompareRequest, Workbench]:
    """The request of a job's payload and its workbench, opened in this engine (kept for the next job)."""
    request = from_jsonable(CompareRequest, payload["request"])
    cache = ArtifactCache(Path(payload["cache_dir"])) if payload.get("cache_dir") else ArtifactCache()
    work_dir = Path(payload["work_dir"]) if payload.get("work_dir") else None
    images = load_images(request.images, work_dir=work_dir)
    class_names = read_labels_file(request.labels_file) if request.labels_file else None
    bench = WORKBENCHES.open(request.model, images, class_names=class_names, options=request.options, cache=cache,
                             work_dir=work_dir, on_progress=lambda p: progress(to_jsonable(p)))
    return request, bench


@job("describe")
def describe_job(payload: dict[str, Any], progress) -> dict[str, Any]:
    """Model facts, inferred preprocessing and an image summary, without evaluating anything."""
    work_dir = Path(payload["work_dir"]) if payload.get("work_dir") else None
    if not Path(payload["model"]).exists():
        raise InputError(f"{payload['model']}: no such file or folder")
    images = load_images(payload["images"], work_dir=work_dir)
    names = read_labels_file(payload["labels"]) if payload.get("labels") else None
    source = WORKBENCHES.source(payload["model"], work_dir=work_dir)
    labels = resolve_labels(images, source.info.num_classes, names)
    override = from_jsonable(PreprocessingOverride, payload.get("override") or {})
    preprocessing = infer_preprocessing(source, images, labels, override)
    return {
        "info": to_jsonable(source.info), "preprocessing": to_jsonable(preprocessing),
        "class_counts": class_counts(labels), "labels_source": labels.source,
        "skipped": to_jsonable(images.skipped), "image_count": len(images.items),
        # positions in the image list of a preview that shows every class (the server decodes only those)
        "thumbnails": spread_over_classes(labels.indices, limit=int(payload.get("thumbnails", 16))),
    }

"""The only place the app calls the engine: typed job requests run by a JobClient on the inputs' warm worker."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st

from quant_core import (ArtifactCache, CompareOptions, CompareRequest, CompareResult, InternalError, KeptModels, Mode,
                        PreprocessingOverride, Progress, QuantError, Recipe, load_images)
from quant_core import builders
from quant_core.cache import cache_key
from quant_core.compare import cached_result
from quant_core.config import config
from quant_core.env import package_versions
from quant_core.errors import report_internal
from quant_core.layers import LayerReport
from quant_core.results import from_jsonable, to_jsonable
from quant_core.results.dataset_compare import DatasetEvaluation
from quant_core.results.verdict import Floor, Target
from quant_core.serving.client import JobClient
from quant_core.serving.dataset_evaluation import EvaluationProgress
from quant_core.serving.pool import WarmPool
from quant_core.serving.protocol import (CalibrationJob, CompareJob, DescribeJob, DatasetJob, ExecutorChoice,
                                         LayersJob, Message, ModelDescription, Place, PrepareJob, TuneJob)
from quant_core.serving.worker import Limits
from quant_core.tune import CalibrationSweep, Objective, Step, TuneResult
from ui import state
from ui.inputs import Inputs
from ui.settings import Reading, Settings

THUMBNAILS = 16  # images previewed on Model & data, spread over the classes
EVALUATION_TIMEOUT_S = config().evaluation_timeout_s  # a whole dataset: hours
DESCRIBE_SCHEMA = 4  # bump when the describe job's answer changes shape: stored descriptions are then ignored
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Description:
    """What the Model & data page shows about the inputs: the describe job's answer and a few images' pixels."""

    found: ModelDescription  # the model's facts, preprocessing, outputs and an image summary
    pictures: tuple[tuple[str, np.ndarray], ...]  # (file name, RGB pixels): a few images of every class


def inputs_key(inputs: Inputs) -> str:
    """Content hash of every input file, taken when the Inputs were made (no file is read here)."""
    return inputs.digest


@st.cache_resource(show_spinner=False)
def artifact_cache() -> ArtifactCache:
    """The server's content-addressed cache of built variants and results."""
    return ArtifactCache()


@st.cache_resource(show_spinner=False)
def warm_pool() -> WarmPool:
    """The server's warm workers (one per model in use, plus a spare with TensorFlow imported)."""
    pool = WarmPool()
    pool.warm_up()
    return pool


def worker_key(inputs: Inputs, override: PreprocessingOverride, reading: Reading | None = None) -> str:
    """Which warm worker serves these inputs: their content, the preprocessing and the reading chosen for them.

    `reading` defaults to the session's (`ui.state.current_reading`): a worker keeps the
    workbench of one reading of the model's outputs.
    """
    reading = state.current_reading() if reading is None else reading
    return f"{inputs.digest}:{to_jsonable(override)}" + ("" if reading.inferred else f":{to_jsonable(reading)}")


def client(inputs: Inputs, override: PreprocessingOverride, pool: WarmPool | None = None) -> JobClient:
    """Jobs on the inputs' warm worker (`pool` defaults to the server's)."""
    return JobClient.warm(pool or warm_pool(), worker_key(inputs, override))


def place(inputs: Inputs, cache: ArtifactCache | None = None, work_dir: Path | None = None) -> Place:
    """Where a job on these inputs finds its files: the cache and the folder their archives were unpacked in."""
    return Place.of(cache or artifact_cache(), work_dir or inputs.folder)


def describe(inputs: Inputs, override: PreprocessingOverride) -> Description:
    """Model facts, inferred preprocessing and image summary (cached by content)."""
    return _describe(inputs, inputs_key(inputs), override)


@st.cache_data(show_spinner="Loading the model and images…", max_entries=32)
def _describe(_inputs: Inputs, key: str, override: PreprocessingOverride) -> Description:
    found = stored_description(_inputs, override, artifact_cache(), client(_inputs, override))
    prepare(_inputs, override)
    # Thumbnails: Pillow only, no TensorFlow in the server; the worker chose which (round-robin over classes).
    images = load_images(_inputs.images, work_dir=_inputs.folder).items
    return Description(found, tuple((images[k].name, _small(images[k].pixels))
                                    for k in found.thumbnails if k < len(images)))


def stored_description(inputs: Inputs, override: PreprocessingOverride, cache: ArtifactCache,
                       jobs: JobClient) -> ModelDescription:
    """The describe job's answer, kept on disk by content: a restarted server answers without a worker.

    The key holds every file's name and bytes, the preprocessing chosen and the backends' versions.
    """
    stored = cache_key("describe", DESCRIBE_SCHEMA, THUMBNAILS, inputs.digest, to_jsonable(override),
                       package_versions())
    answer = cache.get_json("descriptions", stored)
    if answer is not None:
        return from_jsonable(ModelDescription, answer)
    found = jobs.run(DescribeJob(str(inputs.model), tuple(str(p) for p in inputs.images),
                                 str(inputs.labels) if inputs.labels else None, override, place(inputs, cache),
                                 thumbnails=THUMBNAILS))
    cache.put_json("descriptions", stored, to_jsonable(found))
    return found


def compare_request(inputs: Inputs, override: PreprocessingOverride, settings: Settings, *,
                    recipes: tuple[Recipe, ...] | None = None, reading: Reading | None = None) -> CompareRequest:
    """The comparison of these inputs with these settings, compiled here unless `recipes` already are.

    `reading` (the task and roles set on Model & data) defaults to the session's
    (`ui.state.current_reading`), so every job of the session reads the outputs alike.

    Raises:
        InputError: settings that cannot be built.
    """
    reading = state.current_reading() if reading is None else reading
    return CompareRequest(
        str(inputs.model), tuple(str(p) for p in inputs.images), str(inputs.labels) if inputs.labels else None,
        CompareOptions(recipes=settings.recipes() if recipes is None else recipes, threads=settings.threads,
                       preprocessing=override, task=reading.task, roles=reading.roles,
                       truth=tuple(str(p) for p in inputs.truth), decoder=reading.decoder))


def baseline_job(inputs: Inputs, override: PreprocessingOverride, cache: ArtifactCache) -> CompareJob:
    """The comparison that opens the inputs' workbench: float conversion and the measured float32 baseline."""
    return CompareJob(compare_request(inputs, override, Settings(modes=(Mode.FLOAT32,))), place(inputs, cache))


@st.cache_resource(show_spinner=False)
def _prepared() -> set[str]:
    """Worker keys this server has prepared (see `prepare`)."""
    return set()


def prepare(inputs: Inputs, override: PreprocessingOverride) -> None:
    """Opens the inputs' workbench in their warm worker, in the background, while the user reads the page.

    The first run on a model otherwise starts by converting it to float and measuring the
    float32 baseline (~10 s for MobileNetV2 on 2 cores: bench/RESULTS.md, section 1). Here
    that happens once per worker key, right after the model is described; a run that comes
    meanwhile waits for this worker (quant_core.serving.pool) instead of loading the model a
    second time. QW_PREPARE=0 turns it off.
    """
    key = worker_key(inputs, override)
    prepared = _prepared()
    if not config().prepare or key in prepared:
        return
    prepared.add(key)
    jobs, baseline = client(inputs, override), baseline_job(inputs, override, artifact_cache())

    def work() -> None:
        try:
            jobs.run(PrepareJob(baseline.request, baseline.place))
        except (QuantError, InternalError) as err:  # the user's own run meets it again and shows it
            log.info("preparing %s stopped: %s", inputs.title, err)
        except Exception as err:  # noqa: BLE001 - a bug: logged with its traceback under an incident id
            report_internal(err, context=f"preparing {inputs.title}")

    threading.Thread(target=work, name="prepare", daemon=True).start()


def graph_layers(inputs: Inputs) -> tuple[str, ...]:
    """The layers of the inputs' float model, in graph order (what float layers name; cached for the server).

    The float model is the float32 variant of the baseline comparison: stored by `ui.prewarm`
    for the bundled samples, else measured now by the inputs' warm worker.

    Raises:
        QuantError: the model cannot be converted to float.
    """
    return _graph_layers(inputs, inputs.digest)


@st.cache_data(show_spinner="Reading the model's layers…", max_entries=16)
def _graph_layers(_inputs: Inputs, key: str) -> tuple[str, ...]:
    override = PreprocessingOverride()  # the float model is the same whatever the preprocessing
    cache = artifact_cache()
    baseline = baseline_job(_inputs, override, cache)
    found = cached_result(baseline.request, cache)
    if not isinstance(found, CompareResult):
        found = client(_inputs, override).run(baseline)
    float32 = found.variants[0]
    if not float32.ok or float32.tflite_sha256 is None:
        raise QuantError(f"the model's float conversion failed: {float32.error}")
    return builders.graph_layers(cache.model_bytes(float32.tflite_sha256))


def cached(request: CompareRequest, work_dir: Path) -> CompareResult | None:
    """The stored result of this exact comparison with its models kept for the session, or None (Pillow only)."""
    try:
        found = cached_result(request, artifact_cache(), work_dir=work_dir)
    except QuantError:  # a run meets the problem again and reports it
        return None
    return found if isinstance(found, CompareResult) else None


def compare(request: CompareRequest, jobs: JobClient, *, on_progress: Callable[[Progress], None], work_dir: Path,
            earlier: CompareResult | None = None, cancel: threading.Event | None = None,
            cache: ArtifactCache | None = None, watch: Callable[[], None] | None = None) -> CompareResult:
    """The comparison run by a warm worker (callers look in the results cache first: `cached`).

    `cache` defaults to the server's; a thread without a script run passes it.
    Raises `Cancelled` when `cancel` is set meanwhile; `watch` is called while it runs, even
    between reports, and what it raises stops the job and kills its worker.
    """
    def relay(message: Message) -> None:
        if isinstance(message, Progress):
            on_progress(message)

    return jobs.run(CompareJob(request, Place.of(cache or artifact_cache(), work_dir), earlier),
                    on_progress=relay, cancel=cancel, watch=watch,
                    on_wait=lambda: on_progress(Progress(0.0, "Waiting for a worker: it is busy (with this model, "
                                                              "or other comparisons run)…")))


def layer_report(inputs: Inputs, override: PreprocessingOverride, settings: Settings, recipe: Recipe,
                 name: str) -> LayerReport:
    """The variant's per-layer error, measured by the inputs' warm worker (cached for the server by content)."""
    return _layer_report(inputs, worker_key(inputs, override), override, settings, json.dumps(recipe.to_dict()), name)


@st.cache_data(show_spinner=False, max_entries=32)
def _layer_report(_inputs: Inputs, key: str, override: PreprocessingOverride, settings: Settings, recipe: str,
                  name: str) -> LayerReport:
    return client(_inputs, override).run(LayersJob(compare_request(_inputs, override, settings), place(_inputs),
                                                   Recipe.from_dict(json.loads(recipe)), name))


def tune(inputs: Inputs, override: PreprocessingOverride, settings: Settings, budget: Floor, objective: Objective, *,
         target: Target = Target.CPU, on_progress: Callable[[Progress], None],
         on_step: Callable[[Step], None]) -> TuneResult:
    """The accuracy-budget search from the settings' int8, run by the inputs' warm worker; steps come as measured."""
    base = replace(settings, modes=(Mode.INT8,), float_layers=()).recipes()[0]

    def relay(message: Message) -> None:
        if isinstance(message, Step):
            on_step(message)
        elif isinstance(message, Progress):
            on_progress(message)

    return client(inputs, override).run(
        TuneJob(compare_request(inputs, override, settings), place(inputs), budget, objective, base, target=target),
        on_progress=relay)


def calibration_sweep(inputs: Inputs, override: PreprocessingOverride, settings: Settings,
                      recipe: Recipe) -> CalibrationSweep:
    """A calibrated recipe built from 1, 5, 10, 20 and all images and from random data (cached by content)."""
    return _calibration_sweep(inputs, worker_key(inputs, override), override, settings, json.dumps(recipe.to_dict()))


@st.cache_data(show_spinner=False, max_entries=16)
def _calibration_sweep(_inputs: Inputs, key: str, override: PreprocessingOverride, settings: Settings,
                       recipe: str) -> CalibrationSweep:
    return client(_inputs, override).run(CalibrationJob(compare_request(_inputs, override, settings), place(_inputs),
                                                        Recipe.from_dict(json.loads(recipe))))


def evaluate_dataset(inputs: Inputs, override: PreprocessingOverride, settings: Settings, result: CompareResult,
             variants: tuple[str, ...], dataset: str, *, executor: ExecutorChoice,
             on_progress: Callable[[EvaluationProgress], None]) -> DatasetEvaluation:
    """The variants scored on every image of a server-side dataset by the inputs' warm worker."""
    def relay(message: Message) -> None:
        if isinstance(message, EvaluationProgress):
            on_progress(message)

    return client(inputs, override).run(
        DatasetJob(compare_request(inputs, override, settings), place(inputs), result, variants, dataset, executor),
        on_progress=relay, limits=Limits(timeout_s=EVALUATION_TIMEOUT_S))


def keep_models(result: CompareResult, session_dir: Path, cache: ArtifactCache | None = None) -> KeptModels:
    """Keeps the result's .tflite files in the session's folder: its downloads survive the cache's cleaning.

    Raises:
        MissingModelError: a model was removed from the cache before it could be kept.
    """
    return (cache or artifact_cache()).keep([v.tflite_sha256 for v in result.variants if v.ok and v.tflite_sha256],
                                            session_dir / "models")


def _small(pixels: np.ndarray, size: int = 160) -> np.ndarray:
    """A thumbnail's pixels: the browser gets a small image, not a full photo to scale down."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    return np.asarray(image)


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnails(paths: tuple[str, ...], key: str, size: int = 96) -> dict[str, np.ndarray]:
    """Small RGB thumbnails of every image, by the display name the engine uses."""
    return {item.name: _small(item.pixels, size) for item in load_images([Path(p) for p in paths]).items}

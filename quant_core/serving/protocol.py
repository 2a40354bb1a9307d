"""The jobs a worker runs, as types: one request and one answer type per job, serialised here and nowhere else.

A request is a frozen dataclass that names its job and, by its base class, the type of its
answer: `class CompareJob(JobRequest[CompareResult], job="compare")`. Callers (the web app's
`ui/engine.py`, the CLI, bench) build requests and run them with a
`quant_core.serving.client.JobClient`; the worker process gets the same typed request back
(`quant_core.serving.jobs`, whose handlers `serve` a request type). What goes over the pipe
between them, and how, is decided in this module only:

- a request is `{"job": <name>, "payload": to_jsonable(request)}` (quant_core.serving.worker);
- an answer is `to_jsonable(answer)`, read back as the request's answer type;
- a progress message is one of `Message`: `{"progress": ...}`, `{"step": ...}` (a search step)
  or `{"evaluation": ...}` (a whole-dataset pass). A comparison's progress carries the
  comparison so far (`Progress.partial`); on the wire it goes as a patch, only the variants
  that changed since the job's previous message (`MessageWriter`, `MessageReader`): the
  reader rebuilds the whole partial and decodes only what is new (bench/bench_protocol.py
  measures the difference).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from quant_core._serde import from_jsonable, to_jsonable
from quant_core.cache import ArtifactCache
from quant_core.inputs.images import SkippedFile
from quant_core.inputs.models import ModelInfo
from quant_core.inputs.preprocess import Preprocessing, PreprocessingOverride
from quant_core.layers import LayerReport
from quant_core.recipe import Recipe
from quant_core.request import CompareRequest, Progress
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.results.dataset_compare import DatasetEvaluation
from quant_core.results.verdict import Floor, Target
from quant_core.serving.dataset_evaluation import EvaluationProgress
from quant_core.serving.worker import job
from quant_core.tasks import OutputSpec, Task
from quant_core.tune import CalibrationSweep, Objective, Step, TuneResult

A = TypeVar("A")
Message = Progress | Step | EvaluationProgress  # what a job reports while it works
Report = Callable[[Message], None]
REQUESTS: dict[str, type[JobRequest[Any]]] = {}  # request types by job name
HANDLERS: dict[type, Callable[[Any, Report], Any]] = {}  # in a process that imported quant_core.serving.jobs


class JobRequest(Generic[A]):
    """A job's request; its subclass names the job and, as the type argument, the answer's type."""

    job: ClassVar[str]
    answer: ClassVar[Any]

    def __init_subclass__(cls, *, job: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.job = job
        cls.answer = typing.get_args(cls.__orig_bases__[0])[0]  # type: ignore[attr-defined]
        REQUESTS[job] = cls


@dataclass(frozen=True)
class Place:
    """Where a job's files are: the artifact cache and the folder a user's archives were unpacked in."""

    cache_dir: str | None = None  # None: the configured cache (QUANT_CACHE_DIR)
    work_dir: str | None = None

    @classmethod
    def of(cls, cache: ArtifactCache | None, work_dir: Path | None) -> Place:
        return cls(str(cache.root) if cache is not None else None, str(work_dir) if work_dir is not None else None)

    def cache(self) -> ArtifactCache:
        return ArtifactCache(Path(self.cache_dir)) if self.cache_dir else ArtifactCache()

    def folder(self) -> Path | None:
        return Path(self.work_dir) if self.work_dir else None


@dataclass(frozen=True)
class ModelDescription:
    """What the describe job finds: the model's facts, its preprocessing and a summary of the images."""

    info: ModelInfo
    preprocessing: Preprocessing
    class_counts: tuple[tuple[str, int], ...]  # (class name or "unlabelled", image count) in class-index order
    labels_source: str
    skipped: tuple[SkippedFile, ...]
    image_count: int
    thumbnails: tuple[int, ...]  # positions in the image list of a preview that shows every class
    task: Task = Task.CLASSIFICATION  # what the model does, inferred from its outputs on the images
    outputs: tuple[OutputSpec, ...] = ()  # what each output is, and why the workbench thinks so


@dataclass(frozen=True)
class WorkerStats:
    """What a worker process has done: its id and how many models it loaded."""

    pid: int
    models_loaded: int


@dataclass(frozen=True)
class ExecutorChoice:
    """Where a whole-dataset evaluation's shards run (quant_core.serving.executors.make_executor)."""

    kind: str | None = None  # "local" | "ray"; None: QW_EXECUTOR
    address: str | None = None  # a Ray cluster's address


@dataclass(frozen=True)
class DescribeJob(JobRequest[ModelDescription], job="describe"):
    """The model's facts, its inferred preprocessing and an image summary, without evaluating anything."""

    model: str
    images: tuple[str, ...]
    labels: str | None
    override: PreprocessingOverride
    place: Place
    thumbnails: int = 16


@dataclass(frozen=True)
class CompareJob(JobRequest[CompareResult], job="compare"):
    """A comparison; `earlier` (the result on screen) lends the variants it measured."""

    request: CompareRequest
    place: Place
    earlier: CompareResult | None = None


@dataclass(frozen=True)
class PrepareJob(JobRequest[WorkerStats], job="prepare"):
    """Opens a comparison's workbench in the worker and measures its variants, whatever the cache holds."""

    request: CompareRequest
    place: Place


@dataclass(frozen=True)
class LayersJob(JobRequest[LayerReport], job="layers"):
    """One recipe's per-layer error on the comparison's images."""

    request: CompareRequest
    place: Place
    recipe: Recipe
    name: str | None = None


@dataclass(frozen=True)
class TuneJob(JobRequest[TuneResult], job="tune"):
    """The accuracy-budget search from `base`; each step is reported as it is measured."""

    request: CompareRequest
    place: Place
    budget: Floor
    objective: Objective
    base: Recipe
    target: Target = Target.CPU
    max_steps: int = 12


@dataclass(frozen=True)
class CalibrationJob(JobRequest[CalibrationSweep], job="calibration"):
    """The calibration-count sweep of one calibrated recipe."""

    request: CompareRequest
    place: Place
    base: Recipe


@dataclass(frozen=True)
class DatasetJob(JobRequest[DatasetEvaluation], job="dataset"):
    """Chosen variants of a result scored on every image of a server-side dataset."""

    request: CompareRequest
    place: Place
    result: CompareResult
    variants: tuple[str, ...]
    dataset: str
    executor: ExecutorChoice = ExecutorChoice()


@dataclass(frozen=True)
class StatsJob(JobRequest[WorkerStats], job="worker.stats"):
    """What the worker process has done so far."""


def encode_request(request: JobRequest[Any]) -> dict[str, Any]:
    return typing.cast(dict[str, Any], to_jsonable(request))


def decode_request(name: str, payload: dict[str, Any]) -> JobRequest[Any]:
    return typing.cast(JobRequest[Any], from_jsonable(REQUESTS[name], payload))


def encode_answer(answer: Any) -> Any:
    return to_jsonable(answer)


def decode_answer(request: JobRequest[A], raw: Any) -> A:
    return typing.cast(A, from_jsonable(request.answer, raw))


def serve(request_type: type[JobRequest[A]]) -> Callable[[Callable[[Any, Report], A]], Callable[[Any, Report], A]]:
    """Registers a typed handler `(request, report) -> answer` as the worker job of `request_type`."""
    def register(handler: Callable[[Any, Report], A]) -> Callable[[Any, Report], A]:
        HANDLERS[request_type] = handler

        @job(request_type.job)
        def on_the_wire(payload: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> Any:
            writer = MessageWriter()
            answer = handler(decode_request(request_type.job, payload), lambda m: progress(writer.encode(m)))
            return encode_answer(answer)

        return handler
    return register


class MessageWriter:
    """A job's progress messages as JSON; a comparison so far goes as the variants changed since the last one."""

    def __init__(self, *, patches: bool = True) -> None:
        self.patches = patches
        self._head: dict[str, Any] | None = None
        self._variants: tuple[VariantResult, ...] = ()

    def encode(self, message: Message) -> dict[str, Any]:
        if isinstance(message, Step):
            return {"step": to_jsonable(message)}
        if isinstance(message, EvaluationProgress):
            return {"evaluation": to_jsonable(message)}
        partial = message.partial
        if partial is None or not self.patches:
            return {"progress": to_jsonable(message)}
        head = {f.name: to_jsonable(getattr(partial, f.name)) for f in fields(partial) if f.name != "variants"}
        sent, self._variants = self._variants, partial.variants
        patch: dict[str, Any] = {"count": len(partial.variants), "variants": {
            str(i): to_jsonable(v) for i, v in enumerate(partial.variants) if i >= len(sent) or sent[i] is not v}}
        if head != self._head:
            patch["head"] = self._head = head
        return {"progress": to_jsonable(replace(message, partial=None)), "partial": patch}


class MessageReader:
    """The inverse of one job's `MessageWriter`: each message as its type, a patch applied to the partial so far."""

    def __init__(self) -> None:
        self._head: CompareResult | None = None  # the partial's fields besides its variants
        self._variants: tuple[VariantResult, ...] = ()

    def decode(self, raw: dict[str, Any]) -> Message:
        if "step" in raw:
            return typing.cast(Step, from_jsonable(Step, raw["step"]))
        if "evaluation" in raw:
            return typing.cast(EvaluationProgress, from_jsonable(EvaluationProgress, raw["evaluation"]))
        progress = typing.cast(Progress, from_jsonable(Progress, raw["progress"]))
        patch = raw.get("partial")
        if patch is None:
            return progress
        if "head" in patch:
            self._head = CompareResult.from_dict(patch["head"] | {"variants": []})
        changed = {int(i): from_jsonable(VariantResult, v) for i, v in patch["variants"].items()}
        self._variants = tuple(changed[i] if i in changed else self._variants[i] for i in range(patch["count"]))
        if self._head is None:
            raise ValueError("a progress patch came before the comparison it patches")
        return replace(progress, partial=replace(self._head, variants=self._variants))

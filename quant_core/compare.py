"""The comparison: request in, measured side-by-side result out.

`run_compare` is the whole pipeline for one request. `Workbench` keeps a `Reference` (a
loaded model, its images and the float baseline, quant_core.reference) in memory so that a
new variant (another mode, another calibration count) costs only its own build and evaluation.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from quant_core import metrics, outputs
from quant_core.boxes import Decoder, ImageBoxes
from quant_core.builders import CalibratedModels, build_variant, check_float_layers, graph_layers
from quant_core.cache import ArtifactCache, CacheFullError, MissingModelError, cache_key, content_sha256
from quant_core.env import package_versions
from quant_core.errors import Cancelled, ConversionError, InputError, QuantError
from quant_core.inputs.images import ImageSet, Labels, load_images, read_labels_file, resolve_labels
from quant_core.inputs.models import OutputKind, SourceModel, load_model
from quant_core.inputs.preprocess import Preprocessing, PreprocessingOverride, to_model_input
from quant_core.inputs.preprocess_inference import infer_preprocessing
from quant_core.kernels import check_kernels
from quant_core.layers import LayerReport, layer_errors
from quant_core.modes import MODE_INFO, Mode
from quant_core.ops import op_inventory
from quant_core.recipe import Recipe
from quant_core.reference import Reference, float_tflite
from quant_core.request import CompareOptions, CompareRequest, Progress, ProgressCallback
from quant_core.results.compare_result import CompareResult, Status, VariantResult
from quant_core.results.verdict import contested
from quant_core.runner import TFLiteRunner, measure_memory
from quant_core.tasks import OutputSpec, Role, Task, main_output

log = logging.getLogger(__name__)

_DESCRIBE_IMAGES = 16  # images the Model & data page's description runs the float model on
RESULT_SCHEMA = 11  # bump when CompareResult changes shape: old cache entries are then ignored
_LOW_AGREEMENT = 0.8  # below this top-1 agreement with float32 a variant gets a warning
_RETIME_ROUNDS = 2  # extra timing rounds, at most, for variants whose speeds are too close to call
_RETIME_BUDGET_S = 0.5  # seconds of runs per variant and extra round (at least `measure_latency`'s min_runs)


class BuiltVariant(NamedTuple):
    """A variant's model bytes and where they came from."""

    model: bytes
    settings: dict[str, Any]
    seconds: float  # build time; 0.0 when served from the artifact cache
    calibration_samples: int | None


def run_compare(request: CompareRequest, *, cache: ArtifactCache | None = None,
                on_progress: ProgressCallback | None = None, work_dir: Path | None = None,
                workbenches: Workbenches | None = None, earlier: CompareResult | None = None) -> CompareResult:
    """Builds, checks and measures every requested variant.

    Identical requests (same model bytes, images, labels and options) are answered from
    the cache without loading TensorFlow. With `workbenches` (a warm worker's open
    workbenches) a model already loaded for the same images and preprocessing is reused,
    and only variants it has not measured yet are built. `earlier` (the result the user is
    looking at) lends its variants to an identical setup, so a what-if keeps their numbers.

    Raises:
        QuantError: the model, images or options cannot be used (one-line message).
    """
    cache = cache or ArtifactCache()
    report = on_progress or (lambda p: None)
    found = cached_result(request, cache, work_dir=work_dir, on_progress=report)
    if isinstance(found, CompareResult):
        return found
    images, class_names, key = found
    start = time.perf_counter()
    if workbenches is None:
        report(Progress(0.02, "Loading the model"))
        bench = Workbench.open(request.model, images, class_names=class_names, options=request.options,
                               cache=cache, work_dir=work_dir)
    else:
        bench = workbenches.open(request.model, images, class_names=class_names, options=request.options,
                                 cache=cache, work_dir=work_dir, on_progress=report)
    if earlier is not None:
        bench.adopt(earlier)
    result = measure_variants(bench, request.options, on_progress=report, request_key=key, start=start)
    cache.put_json("results", key, result.to_dict())
    report(Progress(1.0, "Done"))
    return result


def measure_variants(bench: Workbench, options: CompareOptions, *, on_progress: ProgressCallback,
                     request_key: str = "", start: float | None = None) -> CompareResult:
    """Every recipe of `options` built, checked and measured on the workbench; latency last."""
    report, start = on_progress, time.perf_counter() if start is None else start
    recipes = options.recipes
    if any(r.float_layers for r in recipes):  # refused as a whole: layers of another model are not a what-if
        check_float_layers(recipes, graph_layers(float_tflite(bench.source, bench.cache)))
    names = variant_names(recipes)
    timing = options.measure_latency
    variants: list[VariantResult] = []
    for i, (recipe, name) in enumerate(zip(recipes, names)):

        def sub(p: Progress, i: int = i) -> None:
            report(Progress(0.1 + (0.6 if timing else 0.9) * (i + p.fraction) / len(recipes), p.message, p.variant))

        # Latency comes afterwards: a slow variant's timing (int16x8) never holds back the others' numbers.
        variants.append(bench.evaluate(recipe, name=name, on_progress=sub, time_it=False))
        report(Progress(0.1 + (0.6 if timing else 0.9) * (i + 1) / len(recipes), f"{name}: measured", name,
                        partial=bench.result(tuple(variants))))
    untimed = [i for i, v in enumerate(variants) if timing and v.ok and v.latency is None]
    for n, i in enumerate(untimed):
        report(Progress(0.7 + 0.25 * n / len(untimed), f"Timing {variants[i].name}", variants[i].name))
        variants[i] = bench.time(variants[i])
        report(Progress(0.7 + 0.25 * (n + 1) / len(untimed), f"{variants[i].name}: timed", variants[i].name,
                        partial=bench.result(tuple(variants))))
    retime_contested(bench, variants, {variants[i].name for i in untimed}, on_progress=report)
    return bench.result(tuple(variants), request_key=request_key, seconds=time.perf_counter() - start)


def retime_contested(bench: Workbench, variants: list[VariantResult], timed_now: set[str], *,
                     on_progress: ProgressCallback) -> None:
    """Times again, in turn, the variants just timed whose speeds are too close to call (`verdict.contested`).

    Each round adds runs at another moment to each contested variant's own, so a drift of
    the machine's load shows in their spread; after `_RETIME_ROUNDS` rounds what is still
    too close to call stays a tie (the verdict counts it as equally fast). Variants timed
    earlier (lent by the result on screen) keep the numbers the user saw. Each round ends
    with the comparison so far (`Progress.partial`).
    """
    for round_ in range(_RETIME_ROUNDS):
        names = [name for name in contested(variants) if name in timed_now]
        if not names:
            return
        on_progress(Progress(0.95 + 0.05 * round_ / _RETIME_ROUNDS,
                             f"Timing again, too close to call: {', '.join(names)}"))
        for i, v in enumerate(variants):
            if v.name in names:
                variants[i] = bench.time(v, again=True)
        on_progress(Progress(0.95 + 0.05 * (round_ + 1) / _RETIME_ROUNDS, f"Timed again: {', '.join(names)}",
                             partial=bench.result(tuple(variants))))


def cached_result(request: CompareRequest, cache: ArtifactCache, *, work_dir: Path | None = None,
                  on_progress: ProgressCallback | None = None,
                  ) -> CompareResult | tuple[ImageSet, tuple[str, ...] | None, str]:
    """The cached result of an identical request, without TensorFlow (Pillow reads the images).

    Returns:
        The result when the cache has it (and every model it names); otherwise what a run
        needs next: the images, the class names and the request's cache key.

    Raises:
        QuantError: the model, images or labels file cannot be used.
    """
    report = on_progress or (lambda p: None)
    if not Path(request.model).exists():
        raise InputError(f"{request.model}: no such file or folder")
    for path in request.options.truth:
        if not Path(path).exists():
            raise InputError(f"{path}: no such file or folder")
    report(Progress(0.0, "Reading images"))
    images = load_images(request.images, work_dir=work_dir)
    class_names = read_labels_file(request.labels_file) if request.labels_file else None
    key = _request_key(request, images, class_names)
    cached = cache.get_json("results", key)
    if cached is not None:
        try:
            result = CompareResult.from_dict(cached)
            if all(not v.ok or (v.tflite_sha256 and cache.has_model(v.tflite_sha256)) for v in result.variants):
                report(Progress(1.0, "Served from cache"))
                return result
        except (KeyError, TypeError, ValueError, QuantError):
            log.warning("ignoring an unreadable cached result %s", key)
    return images, class_names, key


def _agreement_warning(recipe: Recipe, agreement: float, task: Task = Task.CLASSIFICATION) -> str | None:
    """A plain-language warning when a variant changes many predictions (or, for another task, strays far)."""
    if not agreement < _LOW_AGREEMENT:
        return None
    changed = recipe.what_ifs()
    if changed:
        hint = f"with {' and '.join(changed)} (changed from the defaults): undo that first"
    else:
        hint = f"try {' or '.join(_alternatives(recipe))}"
    if task is not Task.CLASSIFICATION:
        return f"{outputs.AGREEMENT[task][0]} with float32 is only {agreement:.0%}, {hint}"
    return f"changes the top-1 prediction on {1 - agreement:.0%} of images compared with float32, {hint}"


def _alternatives(recipe: Recipe) -> list[str]:
    """What else to try after `recipe` changed many predictions: never the variant itself."""
    if recipe.needs_calibration:
        others = [m.value for m in (Mode.INT16X8,) if m is not recipe.mode]
        return ["more or more representative calibration images", *others]
    others = [m.value for m in (Mode.WEIGHT_ONLY, Mode.FLOAT16) if m is not recipe.mode]
    return others if recipe.mode is not Mode.FLOAT16 else ["float32 (this model is sensitive to float16 rounding)"]


def class_labels(source: SourceModel, images: ImageSet, class_names: Sequence[str] | None, *,
                 task: Task | None = None) -> Labels:
    """The images' class labels; none for a model that is not a classifier (its class folders are not read).

    Raises:
        ImageError: class folders or a labels file that do not fit a classifier's classes.
    """
    if source.info.num_classes == 0 or task not in (None, Task.CLASSIFICATION):
        return Labels((), (None,) * len(images.items), "not used: the model is not a classifier")
    return resolve_labels(images, source.info.num_classes, class_names)


def labels_and_preprocessing(source: SourceModel, images: ImageSet, class_names: Sequence[str] | None,
                             override: PreprocessingOverride, *, cache: ArtifactCache, task: Task | None = None,
                             roles: Sequence[tuple[str, Role]] = ()) -> tuple[Labels, Preprocessing]:
    """The images' class labels and the preprocessing, class folders read only for a model read as a classifier.

    An embedder's [1, D] output has the shape of D class scores: read first, its class folders
    would choose its normalization by "accuracy" and refuse it when there are more than D of
    them. So when the task is not given and the images sit in class folders (or a labels file
    came), the model is first read without labels (preprocessing from the images alone, outputs
    described) and its folders are resolved only when that reading is a classifier.

    Raises:
        ImageError: class folders or a labels file that do not fit a classifier's classes.
    """
    foldered = class_names is not None or any(i.label_name is not None for i in images.items)
    if task is not None or not foldered or source.info.num_classes == 0:
        labels = class_labels(source, images, class_names, task=task)
        return labels, infer_preprocessing(source, images, labels, override)
    unlabelled = class_labels(source, images, class_names, task=Task.GENERIC)
    first = infer_preprocessing(source, images, unlabelled, override)
    if describe_outputs(source, images, first, cache=cache, roles=roles)[1] is not Task.CLASSIFICATION:
        return unlabelled, first
    labels = class_labels(source, images, class_names)
    return labels, infer_preprocessing(source, images, labels, override)


def describe_outputs(source: SourceModel, images: ImageSet, preprocessing: Preprocessing, *, cache: ArtifactCache,
                     task: Task | None = None, roles: Sequence[tuple[str, Role]] = ()) -> tuple[tuple[OutputSpec, ...],
                                                                                               Task]:
    """What each output of the model is and its task, from the float .tflite on (up to 16 of) the images."""
    runner = TFLiteRunner(float_tflite(source, cache))
    x = to_model_input([i.pixels for i in images.items[:_DESCRIBE_IMAGES]], preprocessing)
    floats = runner.predict_all(x)
    names = runner.output_names if source.is_tflite else outputs.names_of(
        runner.output_names, source.info.output_names, outputs.matching(source.predict_all(x), floats))
    return outputs.specs_of(names, runner.output_shapes, floats, input_hw=(preprocessing.height, preprocessing.width),
                            task=task, roles=roles)


def variant_names(recipes: tuple[Recipe, ...]) -> tuple[str, ...]:
    """Each recipe's row name: its mode's name (with its float layers), numbered when it appears more than once."""
    def name(recipe: Recipe) -> str:
        same = [r for r in recipes if r.name == recipe.name]
        return recipe.name if len(same) == 1 else f"{recipe.name}-{same.index(recipe) + 1}"
    return tuple(name(r) for r in recipes)


def _request_key(request: CompareRequest, images: ImageSet, class_names: tuple[str, ...] | None) -> str:
    """Content hash of everything that determines the result."""
    model_path = Path(request.model)  # run_compare has checked that it exists
    opts = request.options
    # Every name the result shows is part of the key: a hit then reveals nothing the requester did not send.
    return cache_key(
        RESULT_SCHEMA, content_sha256(model_path), model_path.name, images.digest(),
        [(s.name, s.reason) for s in images.skipped], class_names,
        [r.to_dict() for r in opts.recipes], opts.threads, opts.top_k, opts.preprocessing.to_dict(),
        opts.measure_latency, package_versions(),
        *([opts.task, [list(r) for r in opts.roles]] if opts.task or opts.roles else []),
        *([[(Path(p).name, content_sha256(Path(p))) for p in opts.truth]] if opts.truth else []),
        *([opts.decoder] if opts.decoder else []),
    )


@dataclass(frozen=True)
class ModelSet:
    """What every shard needs besides its images: the models (reference first) and how to feed and score them.

    The workbench builds it (`Workbench.model_set`); whole-dataset evaluation runs it
    (quant_core.serving.dataset_evaluation). A classifier's shards score class scores
    (`output_kind`); every model's shards tally each output of `specs` against the
    reference's, and a model that is not a classifier (`output_kind` NONE) is scored by them.
    """

    names: tuple[str, ...]
    models: tuple[np.ndarray, ...]  # uint8 views of .tflite bytes: Ray's object store shares them unpickled
    preprocessing: Preprocessing
    output_kind: OutputKind
    threads: int = 1
    shas: tuple[str, ...] = ()  # sha256 of each model
    key: str = ""  # digest of the models: a worker keeps their interpreters while the key stays
    task: Task = Task.CLASSIFICATION  # what the model does: it decides the agreement every image is scored by
    specs: tuple[OutputSpec, ...] = ()  # what each output is, in the models' output order (none: class scores only)
    decoder: Decoder | None = None  # a detector's: every shard decodes boxes and matches them with the reference's

    @classmethod
    def of(cls, variants: Sequence[tuple[str, bytes]], *, preprocessing: Preprocessing, output_kind: OutputKind,
           threads: int = 1, task: Task = Task.CLASSIFICATION, specs: Sequence[OutputSpec] = (),
           decoder: Decoder | None = None) -> ModelSet:
        """The set for (name, .tflite bytes) pairs, the float32 reference first."""
        shas = tuple(hashlib.sha256(m).hexdigest() for _, m in variants)
        key = hashlib.sha256("\0".join(f"{n}\0{h}" for (n, _), h in zip(variants, shas)).encode()).hexdigest()
        return cls(tuple(n for n, _ in variants), tuple(np.frombuffer(m, np.uint8) for _, m in variants),
                   preprocessing, output_kind, threads, shas, key, task, tuple(specs), decoder)

    @property
    def classifier(self) -> bool:
        """True when the models are scored by class: top-k, agreement, accuracy with labels."""
        return self.task is Task.CLASSIFICATION

    @property
    def input_hw(self) -> tuple[int, int]:
        """The models' input height and width in pixels (landmark errors and PCK are measured in them)."""
        return self.preprocessing.height, self.preprocessing.width

    @property
    def class_output(self) -> int:
        """A classifier's class-score output (its position among the outputs)."""
        return next((s.index for s in self.specs if s.role is Role.CLASS_SCORES), 0)


class Workbench:
    """Variants built, checked, measured and timed against one `Reference`, each at most once.

    The reference (the loaded model, its images and the float32 answers) never changes; the
    workbench keeps what building and measuring need between variants: the artifact cache,
    the backends' calibrated models and, when it `remember`s (a warm worker), every variant
    measured so far. No interpreter outlives the step that opened it.
    """

    def __init__(self, reference: Reference, *, options: CompareOptions, cache: ArtifactCache,
                 remember: bool = False) -> None:
        self.reference = reference
        self.options = options
        self.cache = cache
        self._calibrated = CalibratedModels()
        self._float_size = len(reference.source.float_tflite)
        # With `remember` (a warm worker), each measured variant is kept: asking again costs nothing.
        self._measured: dict[tuple[Recipe, str], VariantResult] | None = {} if remember else None

    @classmethod
    def open(cls, model: str | Path, images: ImageSet, *, class_names: tuple[str, ...] | None = None,
             options: CompareOptions | None = None, cache: ArtifactCache | None = None,
             work_dir: Path | None = None, source: SourceModel | None = None, remember: bool = False) -> Workbench:
        """Loads the model (unless `source` is it, already loaded), resolves labels and preprocessing."""
        options = options or CompareOptions()
        cache = cache or ArtifactCache()
        source = source or load_model(model, work_dir=work_dir)
        labels, pre = labels_and_preprocessing(source, images, class_names, options.preprocessing, cache=cache,
                                               task=options.task, roles=options.roles)
        reference = Reference.of(source, images, labels, pre, threads=options.threads, cache=cache,
                                 task=options.task, roles=options.roles, truth=options.truth,
                                 decoder=options.decoder)
        return cls(reference, options=options, cache=cache, remember=remember)

    # The reference's parts, read through the workbench.
    @property
    def source(self) -> SourceModel:
        return self.reference.source

    @property
    def images(self) -> ImageSet:
        return self.reference.images

    @property
    def labels(self) -> Labels:
        return self.reference.labels

    @property
    def preprocessing(self) -> Preprocessing:
        return self.reference.preprocessing

    @property
    def x(self) -> np.ndarray:
        return self.reference.x

    @property
    def output_kind(self) -> OutputKind:
        return self.reference.output_kind

    @property
    def source_probs(self) -> np.ndarray:
        return self.reference.source_probs

    @property
    def reference_probs(self) -> np.ndarray:
        return self.reference.reference_probs

    def calibration_data(self, recipe: Recipe) -> np.ndarray:
        """The recipe's calibration samples (`Reference.calibration_data`)."""
        return self.reference.calibration_data(recipe)

    def build(self, recipe: Recipe) -> BuiltVariant:
        """Builds one variant, or fetches it from the artifact cache (the recipe is resolved first).

        Raises:
            InputError: the recipe's backend cannot build it from this source.
            ConversionError: the backend failed.
        """
        recipe = recipe.resolve(source_is_tflite=self.source.is_tflite)
        data = self.calibration_data(recipe) if recipe.needs_calibration else None
        digest = hashlib.sha256(data.tobytes()).hexdigest() if data is not None else None
        key = cache_key(self.source.info.sha256, recipe.to_dict(), digest, package_versions())
        entry = self.cache.get_json("builds", key)  # {"tflite_sha256": content key of the model, "settings": ...}
        if entry is not None and self.cache.has_model(entry["tflite_sha256"]):
            try:
                model = self.cache.model_bytes(entry["tflite_sha256"])
                return BuiltVariant(model, entry["settings"], 0.0, None if data is None else len(data))
            except MissingModelError:  # removed meanwhile: build it again
                pass
        start = time.perf_counter()
        built = build_variant(self.source, recipe, data, digest or "", self._calibrated)
        seconds = time.perf_counter() - start
        self.cache.put_json("builds", key, {"tflite_sha256": self.cache.put_model(built.model),
                                            "settings": built.settings})
        return BuiltVariant(built.model, built.settings, seconds, None if data is None else len(data))

    def evaluate(self, recipe: Recipe, *, name: str | None = None, on_progress: ProgressCallback | None = None,
                 time_it: bool = True) -> VariantResult:
        """Builds, checks and measures one variant; user and backend errors become a failed result.

        With `time_it` False latency is left for `time` (None until then, unless it was
        measured before). A cancelled request and anything else that is not a user or
        backend error propagate: a bug must not pass for a variant the backend refused.
        """
        report = on_progress or (lambda p: None)
        name = name or recipe.name
        asked = recipe
        try:
            recipe = recipe.resolve(source_is_tflite=self.source.is_tflite)
            key = (recipe, name)
            known = self._measured.get(key) if self._measured is not None else None
            if known is not None and (not known.ok or self.cache.has_model(known.tflite_sha256 or "")):
                report(Progress(1.0, f"{name}: measured before on this model", name))
                return known
            report(Progress(0.0, f"Building {name}", name))
            recipe, built = self._build_best(asked, recipe)
            report(Progress(0.5, f"Evaluating {name}", name))
            result = self._measure(name, recipe, built, report, time_it=time_it)
        except (Cancelled, CacheFullError):  # not this variant's fault: the whole request stops, in one line
            raise
        except QuantError as err:
            return VariantResult(name=name, mode=recipe.mode, recipe=recipe, status=Status.FAILED, error=str(err))
        if self._measured is not None:
            self._measured[key] = self._measured[(recipe, name)] = result
        return result

    def _build_best(self, asked: Recipe, preferred: Recipe) -> tuple[Recipe, BuiltVariant]:
        """Builds the preferred backend's recipe; with no backend chosen ("best per mode"), the next one if it fails.

        Raises:
            ConversionError: every backend able to build it failed (their reasons, in one line).
        """
        try:
            return preferred, self.build(preferred)
        except ConversionError as err:
            if asked.backend is not None:
                raise
            first = err
        info = MODE_INFO[asked.mode]
        for backend in info.tflite_backends if self.source.is_tflite else info.backends:
            if backend is preferred.backend:
                continue
            try:
                other = replace(asked, backend=backend).resolve(source_is_tflite=self.source.is_tflite)
                return other, self.build(other)
            except QuantError as err:
                if str(err) == str(first):  # the same failure (a shared step): nothing more to say
                    raise first from None
                # The other backend's reason is the one left to act on; the preferred one's refusal is said briefly.
                raise ConversionError(f"{err} ({preferred.backend_used} refused it too)") from None
        raise first

    def _measure(self, name: str, recipe: Recipe, built: BuiltVariant, report: ProgressCallback, *,
                 time_it: bool = True) -> VariantResult:
        """Evaluation, checks, op inventory and (with `time_it`) latency of a built variant."""
        model = built.model
        runner = TFLiteRunner(model, num_threads=self.options.threads)
        got = runner.predict_all(self.x)
        ops = op_inventory(model)
        self.reference.check(recipe, model, got, ops)
        latency = None
        if self.options.measure_latency and time_it:
            report(Progress(0.7, f"Timing {name}", name))
            latency = runner.measure_latency(self.x[:1])
        dtypes, steps = (str(runner.input_dtype), str(runner.output_dtype)), runner.output_steps
        # Closed before the next interpreters open: at the images' batch size its tensors are ~100 MB on a 224x224
        # net, and kept until timing (as they once were), seven variants' held ~0.5 GB. `time` opens its own.
        del runner
        detected = self.reference.detect(got)
        found = self.reference.fidelity(got, detected)
        measured = VariantResult(
            name=name, mode=recipe.mode, recipe=recipe, status=Status.OK, backend_settings=built.settings,
            size_bytes=len(model), size_ratio=len(model) / self._float_size,
            input_dtype=dtypes[0], output_dtype=dtypes[1], latency=latency,
            memory=measure_memory(model, num_threads=self.options.threads), ops=ops,
            tflite_sha256=hashlib.sha256(model).hexdigest(), build_seconds=built.seconds,
            calibration_samples=built.calibration_samples, outputs=found, views=self.reference.views(got),
            detections=tuple(ImageBoxes.of(d) for d in detected),
            calibration_images=self.reference.calibration_images(recipe))
        if self.options.device_kernels:
            report(Progress(0.8, f"Running {name} on the builtin kernels without XNNPACK"
                                 + (" and in TFLite Micro" if ops.integer_only else ""), name))
            measured = replace(measured, kernels=check_kernels(model, self.x, got, integer_only=ops.integer_only,
                                                               agreement=self._agreement, steps=steps))
        if not self.reference.classifier:
            agreement = outputs.agreement(self.reference.task, self.reference.specs, found)
            scored = next((f.boxes for f in found if f.boxes is not None), None)  # mAP already measured: not twice
            accuracy = scored.map_50 if scored is not None else self.reference.truth_score(got)
            return replace(measured, top1_agreement=agreement, accuracy=accuracy,
                           warning=None if agreement is None else _agreement_warning(recipe, agreement,
                                                                                      self.reference.task))
        return self._scored(measured, self.reference.probabilities(got))

    def _agreement(self, got: Sequence[np.ndarray]) -> float | None:
        """The task's agreement with float32 of raw outputs (as `_measure` scores a variant's)."""
        if self.reference.classifier:
            return metrics.top1_agreement(self.reference.probabilities(got), self.reference_probs)
        found = self.reference.fidelity(got, self.reference.detect(got))
        return outputs.agreement(self.reference.task, self.reference.specs, found)

    def _scored(self, measured: VariantResult, probs: np.ndarray) -> VariantResult:
        """A classifier's variant with its class-score figures: agreement, accuracy, top-k."""
        labels = self.reference.known_labels()
        agreement = metrics.top1_agreement(probs, self.reference_probs)
        return replace(
            measured, warning=_agreement_warning(measured.recipe, agreement, Task.CLASSIFICATION),
            top1_agreement=agreement,
            top1_agreement_source=metrics.top1_agreement(probs, self.source_probs),
            top5_agreement=metrics.topk_agreement(probs, self.reference_probs, 5),
            accuracy=metrics.accuracy(probs, labels) if self.labels.known else None,
            top5_accuracy=metrics.topk_accuracy(probs, labels, 5) if self.labels.known else None,
            mean_abs_diff=metrics.mean_abs_diff(probs, self.reference_probs),
            kl_divergence=metrics.kl_divergence(probs, self.reference_probs),
            top1=tuple(int(i) for i in probs.argmax(1)), topk=self.reference.topk(probs, self.options.top_k),
        )

    def layer_report(self, recipe: Recipe, *, name: str | None = None) -> LayerReport:
        """Where this calibrated variant loses accuracy: each layer's error against the float model.

        Raises:
            InputError: a mode that quantizes no activations, or a model the interpreter cannot run.
            ConversionError: the backend cannot build the variant.
        """
        recipe = recipe.resolve(source_is_tflite=self.source.is_tflite)
        if not recipe.needs_calibration:
            raise InputError(f"{recipe.mode} quantizes no activations: per-layer error is for int8, int8_float_io "
                             "and int16x8")
        built = self.build(recipe)
        main = main_output(self.reference.specs)
        return layer_errors(float_tflite(self.source, self.cache), built.model, self.x, variant=name or recipe.name,
                            output=main.index if main is not None else 0)

    def model_set(self, variants: Sequence[VariantResult]) -> ModelSet:
        """The built variants that passed, with the float32 .tflite first, to evaluate on a whole dataset."""
        reference = float_tflite(self.source, self.cache)
        models, seen = [("float32", reference)], {hashlib.sha256(reference).hexdigest()}
        for v in variants:  # a variant with the reference's bytes (float32) is scored as the reference
            if v.ok and v.tflite_sha256 and v.tflite_sha256 not in seen:
                models.append((v.name, self.cache.model_bytes(v.tflite_sha256)))
                seen.add(v.tflite_sha256)
        return ModelSet.of(models, preprocessing=self.preprocessing, output_kind=self.output_kind,
                           threads=self.options.threads, task=self.reference.task, specs=self.reference.specs,
                           decoder=self.reference.decoder)

    def time(self, variant: VariantResult, *, again: bool = False) -> VariantResult:
        """The variant with its latency measured, on an interpreter of its own (opened here, closed after).

        With `again`, a variant already timed gets more runs (`_RETIME_BUDGET_S` seconds'
        worth), merged with those it has.
        """
        sha = variant.tflite_sha256 or ""
        runner = TFLiteRunner(self.cache.model_bytes(sha), num_threads=self.options.threads)
        if again and variant.latency is not None:
            latency = variant.latency.merged(runner.measure_latency(self.x[:1], budget_s=_RETIME_BUDGET_S))
        else:
            latency = runner.measure_latency(self.x[:1])
        timed = replace(variant, latency=latency)
        if self._measured is not None:
            self._measured[(timed.recipe, timed.name)] = timed
        return timed

    def adopt(self, earlier: CompareResult) -> int:
        """Remembers the variants of an earlier result of this same setup as measured; returns how many.

        A what-if then changes exactly the rows whose recipe changed: the others keep the
        numbers the user already saw (the same model bytes, measured on the same images),
        instead of a second timing's noise. An earlier result of other inputs, preprocessing
        or measurement options is ignored, and so are variants whose model left the cache.
        """
        if not self.reference.same_inputs(earlier, threads=self.options.threads):
            return 0
        if self._measured is None:
            self._measured = {}
        top_k = min(self.options.top_k, self.reference_probs.shape[1])
        adopted = 0
        for v in earlier.variants:
            fits = (v.ok and v.tflite_sha256 is not None
                    and (not self.reference.classifier or (bool(v.topk) and len(v.topk[0]) == top_k))
                    and (v.latency is not None) == self.options.measure_latency)
            if fits and self.cache.has_model(v.tflite_sha256 or ""):
                self._measured[(v.recipe, v.name)] = v
                adopted += 1
        return adopted

    def result(self, variants: tuple[VariantResult, ...], *, request_key: str = "",
               seconds: float = 0.0) -> CompareResult:
        """Assembles the comparison from evaluated variants."""
        return self.reference.result(variants, threads=self.options.threads, request_key=request_key, seconds=seconds)


class Workbenches:
    """The workbenches a warm worker keeps open between requests (least recently used closed first).

    A workbench is reused for a request with the same model file (path and bytes), images
    (names, labels and pixels), class names and the options that shape its measurements
    (preprocessing, threads, top-k, latency on or off); loaded models are shared between
    workbenches of the same file. Everything here lives in one worker process: it is gone
    with the process, and it never crosses to another session's process.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._benches: OrderedDict[str, Workbench] = OrderedDict()
        self._sources: OrderedDict[str, SourceModel] = OrderedDict()
        self.models_loaded = 0  # how many times a model file was actually loaded (tests, benchmarks)

    def open(self, model: str | Path, images: ImageSet, *, class_names: tuple[str, ...] | None,
             options: CompareOptions, cache: ArtifactCache, work_dir: Path | None = None,
             on_progress: ProgressCallback | None = None) -> Workbench:
        """An open workbench for these inputs: the kept one, or a new one (loading the model if needed)."""
        report = on_progress or (lambda p: None)
        key = cache_key(self._model_key(model), images.digest(), class_names, options.preprocessing.to_dict(),
                        options.threads, options.top_k, options.measure_latency, options.task,
                        [list(r) for r in options.roles], [(p, content_sha256(Path(p))) for p in options.truth],
                        options.decoder)
        if key in self._benches:  # reported before anything is taken out: a cancel here loses nothing
            report(Progress(0.05, "Using the model already loaded in this worker"))
        bench = self._benches.pop(key, None)
        if bench is None:
            source = self.source(model, work_dir=work_dir, on_progress=report)
            bench = Workbench.open(model, images, class_names=class_names, options=options, cache=cache,
                                   source=source, remember=True)
        bench.cache = cache  # this request's cache: variants are stored where the caller looks for them
        self._benches[key] = bench
        _keep_last(self._benches, self.size)
        return bench

    def source(self, model: str | Path, *, work_dir: Path | None = None,
               on_progress: ProgressCallback | None = None) -> SourceModel:
        """The loaded model of this file: kept from an earlier request, or loaded now."""
        report = on_progress or (lambda p: None)
        key = self._model_key(model)
        report(Progress(0.02, "Reusing the loaded model" if key in self._sources else "Loading the model"))
        source = self._sources.pop(key, None)
        if source is None:
            source = load_model(model, work_dir=work_dir)
            self.models_loaded += 1
        self._sources[key] = source
        _keep_last(self._sources, self.size)
        return source

    @staticmethod
    def _model_key(model: str | Path) -> str:
        """A model file by its path and its bytes (a changed file at the same path is another model)."""
        return cache_key(str(model), content_sha256(Path(model)))


def _keep_last(entries: OrderedDict, size: int) -> None:
    """Drops the oldest entries beyond `size`."""
    while len(entries) > size:
        entries.popitem(last=False)

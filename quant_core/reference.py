"""What every variant of one comparison is measured against: the inputs and the float32 reference.

A `Reference` holds the loaded model, its images with their labels and preprocessing, the
images as model input, and the answers on them of the source model and of its float32
.tflite; it checks a variant's answers against them and frames the comparison's result. It
never changes once made; building, measuring, timing and remembering variants against it
is the workbench's job (quant_core.compare.Workbench).
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from quant_core import boxes, metrics, outputs
from quant_core.cache import ArtifactCache, MissingModelError, cache_key
from quant_core.calibration import spread_order
from quant_core.env import describe_environment, package_versions
from quant_core.errors import ConversionError, InputError
from quant_core.inputs.images import ImageSet, Labels
from quant_core.inputs.models import OutputKind, SourceModel
from quant_core.inputs.preprocess import Preprocessing, to_model_input
from quant_core.modes import Mode
from quant_core.ops import OpInventory, per_tensor_hybrid_depthwise
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.detection import Detections, GroundTruth
from quant_core.fidelity import OutputFidelity
from quant_core.results.compare_result import (CalibrationImage, CalibrationInfo, CompareResult, ImageRecord,
                                               Prediction, VariantResult)
from quant_core.runner import TFLiteRunner
from quant_core.tasks import OutputSpec, Role, Task, main_output
from quant_core.views import OutputViews, views_of

_FLOAT_TOLERANCE = 0.01  # max |Δp| allowed between the float32 .tflite and the source model


def float_tflite(source: SourceModel, cache: ArtifactCache) -> bytes:
    """The source's float .tflite: a conversion of the same model bytes by the same packages is taken from the cache.

    Converting a Keras model costs seconds (~10 s for MobileNetV2 on 2 cores, bench/RESULTS.md
    section 1) and depends only on its bytes and the package versions. What comes from the
    cache is still checked like a fresh conversion: the float32 variant must reproduce the
    source model.
    """
    if not source.float_tflite_pending:
        return source.float_tflite
    key = cache_key("float-tflite", source.info.sha256, package_versions())
    entry = cache.get_json("floats", key)
    if entry is not None:
        try:
            source.use_float_tflite(cache.model_bytes(entry["tflite_sha256"]))
            return source.float_tflite
        except MissingModelError:  # removed meanwhile: convert again
            pass
    data = source.float_tflite
    # The conversion leaves TensorFlow's traced graph in reference cycles (~270 MB for a 4.7M-parameter net) that
    # only a full collection frees: freed now, the variants' interpreters reuse that memory instead of adding to it.
    gc.collect()
    cache.put_json("floats", key, {"tflite_sha256": cache.put_model(data)})
    return data


@dataclass(frozen=True, eq=False)
class Reference:
    """A comparison's inputs and the answers a variant's are held against (arrays: compared by identity)."""

    source: SourceModel
    images: ImageSet
    labels: Labels
    preprocessing: Preprocessing
    x: np.ndarray  # the images as model input, in the images' order
    output_kind: OutputKind  # NONE when the model is not a classifier
    source_probs: np.ndarray  # a classifier's class probabilities, one row per image ([images, 0] otherwise)
    reference_probs: np.ndarray  # the float32 .tflite's: agreement and output error are measured against these
    task: Task = Task.CLASSIFICATION
    specs: tuple[OutputSpec, ...] = ()  # what each output is
    outputs: tuple[np.ndarray, ...] = ()  # the float32 .tflite's raw outputs, one array [images, ...] each
    source_outputs: tuple[np.ndarray, ...] = ()  # the source model's, in the same order
    truth: np.ndarray | None = None  # ground truth of the main output: labels [images, H, W] or points [images, K, 2]
    truth_source: str = ""  # where it came from, in words
    decoder: boxes.Decoder | None = None  # a detector's: how its outputs become boxes (quant_core.boxes)
    detections: tuple[Detections, ...] = ()  # float32's, one per image, down to the decoder's floor
    box_truth: tuple[GroundTruth | None, ...] = ()  # a detector's true boxes per image (None: not annotated)
    shared_scale: boxes.SharedScale | None = None  # boxes and scores in one tensor: int8's classic failure

    @classmethod
    def of(cls, source: SourceModel, images: ImageSet, labels: Labels, preprocessing: Preprocessing, *,
           threads: int, cache: ArtifactCache, task: Task | None = None,
           roles: Sequence[tuple[str, Role]] = (), truth: Sequence[str] = (), decoder: str = "") -> Reference:
        """Runs the source model and its float32 .tflite (converted, or taken from `cache`) on the images.

        Raises:
            InputError: a task or role the outputs cannot hold.
        """
        x = to_model_input([i.pixels for i in images.items], preprocessing)
        runner = TFLiteRunner(float_tflite(source, cache), num_threads=threads)
        floats = runner.predict_all(x)
        theirs = source.predict_all(x)
        order = outputs.matching(theirs, floats)
        names = runner.output_names if source.is_tflite else outputs.names_of(
            runner.output_names, source.info.output_names, order)
        specs, task = outputs.specs_of(names, runner.output_shapes, floats,
                                       input_hw=(preprocessing.height, preprocessing.width), task=task, roles=roles)
        mine = tuple(theirs[i] for i in order)
        if task is Task.DETECTION:
            return cls._detector(source, images, labels, preprocessing, x, specs, floats, mine, truth=truth,
                                 decoder=decoder, float_model=float_tflite(source, cache))
        if decoder:
            raise InputError(f"a decoder is for a detector; this model reads as {task.value}")
        if task is not Task.CLASSIFICATION:
            none = np.zeros((len(x), 0))
            known, said = outputs.truth_of(truth, specs, images, preprocessing)
            return cls(source, images, labels, preprocessing, x, OutputKind.NONE, none, none, task, specs, floats,
                       mine, known, said)
        if truth:
            raise InputError("ground-truth masks and points are for segmentation and landmark models; a classifier's "
                             "labels are its class folders or a labels file")
        main = next(s.index for s in specs if s.role is Role.CLASS_SCORES)
        kind = metrics.detect_output_kind(mine[main])
        return cls(source, images, labels, preprocessing, x, kind, metrics.to_probabilities(mine[main], kind),
                   metrics.to_probabilities(floats[main], kind), task, specs, floats, mine)

    @classmethod
    def _detector(cls, source: SourceModel, images: ImageSet, labels: Labels, preprocessing: Preprocessing,
                  x: np.ndarray, specs: tuple[OutputSpec, ...], floats: tuple[np.ndarray, ...],
                  mine: tuple[np.ndarray, ...], *, truth: Sequence[str], decoder: str,
                  float_model: bytes) -> Reference:
        """A detector's reference: its decoder (chosen, or inferred; None if ambiguous), float32's boxes, the truth."""
        hw = (preprocessing.height, preprocessing.width)
        chosen = boxes.parse_decoder(decoder, specs, floats, input_hw=hw) if decoder else \
            boxes.infer_decoder(specs, floats, input_hw=hw)
        specs = boxes.described(specs, chosen)
        none = np.zeros((len(x), 0))
        if chosen is None:
            if truth:
                raise InputError("ground-truth boxes need a decoder: choose how the model's outputs become boxes")
            return cls(source, images, labels, preprocessing, x, OutputKind.NONE, none, none, Task.DETECTION, specs,
                       floats, mine)
        found = boxes.decode(chosen, floats)
        known, said = boxes.read_truth(truth, images, preprocessing, chosen) if truth else ((), "")
        return cls(source, images, labels, preprocessing, x, OutputKind.NONE, none, none, Task.DETECTION, specs,
                   floats, mine, None, said, chosen, found, known,
                   boxes.shared_scale(chosen, floats, float_model=float_model))

    @property
    def classifier(self) -> bool:
        """True when the comparison reads class scores (top-1, top-5, accuracy)."""
        return self.task is Task.CLASSIFICATION

    @property
    def scored(self) -> bool:
        """True when accuracy can be measured: a classifier with every image labelled."""
        return self.classifier and self.labels.known

    @property
    def class_output(self) -> int:
        """A classifier's class-score output (its position among the outputs)."""
        return next((s.index for s in self.specs if s.role is Role.CLASS_SCORES), 0)

    def truth_score(self, got: Sequence[np.ndarray]) -> float | None:
        """A non-classifier's main output scored against the ground truth (None without one)."""
        if self.decoder is not None:
            return self.box_truth_summary(boxes.decode(self.decoder, got)).map_50 if self.box_truth else None
        main = main_output(self.specs)
        if self.truth is None or main is None:
            return None
        return outputs.truth_score(main, got[main.index], self.truth,
                                   input_hw=(self.preprocessing.height, self.preprocessing.width))

    def views(self, got: Sequence[np.ndarray]) -> tuple[OutputViews, ...]:
        """A variant's masks and points on the first images (`quant_core.views`)."""
        return views_of(self.specs, got, input_hw=(self.preprocessing.height, self.preprocessing.width))

    def fidelity(self, got: Sequence[np.ndarray], found: Sequence[Detections] | None = None,
                 ) -> tuple[OutputFidelity, ...]:
        """Each output of a variant against float32's on these images; a detector's main output with its boxes'.

        Args:
            got: the variant's raw outputs.
            found: its detections when already decoded (`detect`).
        """
        figures = outputs.fidelities(self.specs, self.outputs, got,
                                     input_hw=(self.preprocessing.height, self.preprocessing.width))
        main = main_output(self.specs)
        if self.decoder is None or main is None:
            return figures
        summary = self.box_truth_summary(self.detect(got) if found is None else found)
        return tuple(replace(f, boxes=summary) if f.index == main.index else f for f in figures)

    def detect(self, got: Sequence[np.ndarray]) -> tuple[Detections, ...]:
        """A variant's detections on these images (none without a decoder)."""
        return boxes.decode(self.decoder, got) if self.decoder is not None else ()

    def box_truth_summary(self, found: Sequence[Detections]) -> boxes.BoxSummary:
        """Detections against float32's at the decoder's threshold, with mAP against the true boxes when given."""
        assert self.decoder is not None
        summary = boxes.BoxSummary.of(self.detections, found, threshold=self.decoder.threshold)
        scored = [(t, d) for t, d in zip(self.box_truth, found) if t is not None]
        if not scored:
            return summary
        return boxes.with_truth(summary, [t for t, _ in scored], [d for _, d in scored])

    def calibration_data(self, recipe: Recipe) -> np.ndarray:
        """Calibration samples: evenly spread user images, or uniform noise as a what-if.

        Images come in a nested order (`spread_order`): the samples for a count are the
        leading rows of those for any larger count, so raising the count feeds only the
        extra images through the float model.
        """
        if recipe.calibration_source is CalibrationSource.RANDOM:  # uniform pixels, normalized as images are
            rng = np.random.default_rng(0)
            shape = (recipe.calibration_count, *self.x.shape[1:])
            return self.preprocessing.normalization.apply(rng.uniform(0.0, 255.0, size=shape))
        return np.ascontiguousarray(self.x[self._calibration_rows(recipe)])

    def calibration_images(self, recipe: Recipe) -> tuple[CalibrationImage, ...]:
        """The images `calibration_data` feeds for this recipe, in its order, named with their digests.

        Empty for a mode that calibrates nothing, or on random data.
        """
        if not recipe.needs_calibration or recipe.calibration_source is CalibrationSource.RANDOM:
            return ()
        items = [self.images.items[i] for i in self._calibration_rows(recipe)]
        return tuple(CalibrationImage(item.name, item.sha256, hashlib.sha256(item.pixels.tobytes()).hexdigest())
                     for item in items)

    def _calibration_rows(self, recipe: Recipe) -> list[int]:
        """The positions of the images calibration feeds, in the order it feeds them (`spread_order`)."""
        return spread_order(len(self.x))[:min(recipe.calibration_count, len(self.x))]

    def check(self, recipe: Recipe, model: bytes, got: Sequence[np.ndarray], ops: OpInventory) -> None:
        """Raises ConversionError when a variant is unusable or breaks its mode's promise.

        Unusable: per-tensor depthwise weights LiteRT's hybrid kernel gets wrong, or outputs
        collapsed against the float32 reference's (`got`: the variant's raw outputs on these
        images). Broken promises: a float32 that does not reproduce the source model, a full
        int8 whose `ops` are not all integer.
        """
        broken = per_tensor_hybrid_depthwise(model) if not recipe.per_channel else 0
        if broken:
            raise ConversionError(
                f"per-tensor weights break dynamic range here: LiteRT's hybrid DEPTHWISE_CONV_2D kernel needs one "
                f"scale per channel, so {broken} depthwise op(s) give different outputs on every run; "
                "turn per-channel weights back on"
            )
        if self.classifier:
            self._check_classes(recipe, self.probabilities(got))
        else:
            outputs.check(self.specs, self.outputs, got, float32=False)
            if recipe.mode is Mode.FLOAT32:
                outputs.check(self.specs, self.source_outputs, got, float32=True)
        if recipe.mode is Mode.INT8 and not recipe.float_layers and not ops.integer_only:
            floats = sorted({c.op for c in ops.by_op if c.kind.uses_float})
            raise ConversionError(
                f"not integer-only: {', '.join(floats) or 'float I/O'} stayed in float; these ops have no int8 kernel"
            )

    def probabilities(self, got: Sequence[np.ndarray]) -> np.ndarray:
        """A classifier's class probabilities from a variant's raw outputs."""
        return metrics.to_probabilities(got[self.class_output], self.output_kind)

    def _check_classes(self, recipe: Recipe, probs: np.ndarray) -> None:
        reason = metrics.collapse_reason(probs, self.reference_probs)
        if reason:
            raise ConversionError(reason)
        if recipe.mode is Mode.FLOAT32:
            gap = float(np.abs(probs - self.source_probs).max()) if len(probs) else 0.0
            if gap > _FLOAT_TOLERANCE:
                raise ConversionError(
                    f"the converted float32 model does not reproduce the source model (max |Δp| = {gap:.3g}); "
                    "the conversion route is broken for this model"
                )

    def known_labels(self) -> list[int]:
        """The class index of every labelled image (all of them when `labels.known`)."""
        return [i for i in self.labels.indices if i is not None]

    def topk(self, probs: np.ndarray, k: int) -> tuple[tuple[Prediction, ...], ...]:
        """Each image's `k` most probable classes (at most as many as there are), named by the class names."""
        k = min(k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        names = self.labels.class_names
        return tuple(
            tuple(Prediction(int(c), names[c] if c < len(names) else str(c), round(float(p[c]), 6)) for c in row)
            for p, row in zip(probs, order)
        )

    def result(self, variants: Sequence[VariantResult], *, threads: int, request_key: str = "",
               seconds: float = 0.0) -> CompareResult:
        """The comparison of `variants` on these inputs: the model, images, labels and source accuracy around them."""
        recipes = [v.recipe for v in variants if v.recipe.needs_calibration]
        random = any(r.calibration_source is CalibrationSource.RANDOM for r in recipes)
        labels = self.known_labels()
        return CompareResult(
            model=self.source.info, output_kind=self.output_kind,
            environment=describe_environment(threads=threads), preprocessing=self.preprocessing,
            class_names=self.labels.class_names, labels_source=self.labels.source,
            images=tuple(ImageRecord(item.name, None if idx is None else self.labels.class_names[idx], idx)
                         for item, idx in zip(self.images.items, self.labels.indices)),
            skipped=self.images.skipped, variants=tuple(variants),
            calibration=CalibrationInfo(
                source="random uniform noise (what-if)" if random else "your images, evenly spread",
                available_images=len(self.x), what_if=random),
            source_accuracy=(metrics.accuracy(self.source_probs, labels) if self.scored
                             else self.truth_score(self.source_outputs)),
            source_top5_accuracy=metrics.topk_accuracy(self.source_probs, labels, 5) if self.scored else None,
            request_key=request_key, seconds=seconds, task=self.task, output_specs=self.specs,
            truth_source=self.truth_source, decoder=self.decoder, shared_scale=self.shared_scale,
        )

    def same_inputs(self, earlier: CompareResult, *, threads: int) -> bool:
        """True when `earlier` was measured on these same inputs: model, preprocessing, class names, images, threads."""
        frame = self.result((), threads=threads)
        return (earlier.model == frame.model and earlier.preprocessing == frame.preprocessing
                and earlier.class_names == frame.class_names and earlier.images == frame.images
                and earlier.environment.threads == frame.environment.threads
                and earlier.task == frame.task and earlier.output_specs == frame.output_specs
                and earlier.decoder == frame.decoder)

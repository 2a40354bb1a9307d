"""Every output of a model against float32's: which outputs the model has, what they are, how close a variant stays.

A classifier's comparison reads one output as class scores (quant_core.metrics); any model
also gets, for each of its outputs, what that output is (`quant_core.tasks.OutputSpec`) and,
per variant, its fidelity to float32's (`quant_core.fidelity.OutputFidelity`). A model that is
not a classifier (segmentation, landmarks, embedding, generic; detection comes next) is
measured by these alone: its headline agreement with float32 is the task's own measure
(`agreement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from quant_core.errors import ConversionError, InputError
from quant_core.fidelity import LandmarkMetrics, MaskMetrics, OutputFidelity
from quant_core.inputs import ground_truth
from quant_core.inputs.images import ImageSet
from quant_core.inputs.preprocess import Preprocessing
from quant_core.tasks import CoordSpace, OutputSpec, Role, Task, infer_outputs, main_output, task_of, with_task

CLASS_CHANNELS = 64  # class scores keep per-class figures up to this many classes (1,000 would fill the result)
_FLOAT_TOLERANCE = 1e-3  # the float32 .tflite against the source model: relative RMSE allowed per output

# What "agreement with float32" means for each task, and its column title.
AGREEMENT = {
    Task.CLASSIFICATION: ("agreement", "share of images where this variant's top-1 class is the same as float32's"),
    Task.SEGMENTATION: ("mask IoU", "overlap of this variant's mask with float32's (intersection over union, mean "
                                    "over images; per class and averaged for class maps)"),
    Task.LANDMARKS: ("PCK@5%", "share of points within 5% of the image size of float32's point"),
    Task.EMBEDDING: ("NN agreement", "share of images whose nearest other image (by cosine) is the same as with "
                                     "float32's embeddings (mean cosine below 3 images)"),
    Task.DETECTION: ("box F1", "F1 of this variant's boxes against float32's on the same images: matched at IoU >= "
                               "0.5 with the same class, both kept at the decoder's score threshold"),
    Task.GENERIC: ("cosine", "cosine similarity of the main output with float32's"),
}


def specs_of(names: Sequence[str], shapes: Sequence[tuple[int | None, ...]], outputs: Sequence[np.ndarray], *,
             input_hw: tuple[int, int], task: Task | None = None,
             roles: Sequence[tuple[str, Role]] = ()) -> tuple[tuple[OutputSpec, ...], Task]:
    """What each output is (inferred from the float model's `outputs` on the images, then the user's choices).

    Raises:
        InputError: a role or task the outputs cannot hold, or an output named that does not exist.
    """
    known = [(1, *(1 if d is None else int(d) for d in shape[1:])) for shape in shapes]  # one image's
    specs = infer_outputs(list(zip(names, known)), outputs, input_hw=input_hw, roles=dict(roles) or None)
    if task is not None:
        specs = with_task(specs, task)
    return specs, task or task_of(specs)


def matching(source: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> tuple[int, ...]:
    """For each float .tflite output, the source model's output it is (the converter may reorder them).

    Matched by shape, else by position.
    """
    left = list(range(len(source)))
    order = []
    for j, ref in enumerate(reference):
        same = [i for i in left if source[i].shape == ref.shape]
        i = same[0] if same else (j if j in left else left[0])
        left.remove(i)
        order.append(i)
    return tuple(order)


def names_of(tflite_names: Sequence[str], source_names: Sequence[str], order: Sequence[int]) -> tuple[str, ...]:
    """The outputs' names: the source model's (a Keras layer's) where it has them, else the .tflite's."""
    if len(source_names) != len(tflite_names):
        return tuple(tflite_names)
    return tuple(source_names[i] for i in order)


def fidelities(specs: Sequence[OutputSpec], reference: Sequence[np.ndarray], got: Sequence[np.ndarray], *,
               input_hw: tuple[int, int]) -> tuple[OutputFidelity, ...]:
    """Each output's fidelity to float32's; class scores beyond `CLASS_CHANNELS` classes as a whole only."""
    found = []
    for spec, ref, out in zip(specs, reference, got):
        fidelity = OutputFidelity.of(spec, ref, out, input_hw=input_hw)
        if spec.role is Role.CLASS_SCORES and len(fidelity.channels) > CLASS_CHANNELS:
            fidelity = replace(fidelity, channels=(), worst_channel=None)
        found.append(fidelity)
    return tuple(found)


def agreement(task: Task, specs: Sequence[OutputSpec], found: Sequence[OutputFidelity]) -> float | None:
    """A non-classifier's headline agreement with float32, from its main output (see `AGREEMENT`)."""
    main = main_output(specs)
    if main is None:
        return None
    f = found[main.index]
    if task is Task.SEGMENTATION and f.mask is not None:
        return f.mask.iou
    if task is Task.LANDMARKS and f.landmarks is not None and f.landmarks.pck_5 is not None:
        return f.landmarks.pck_5
    if task is Task.DETECTION and f.boxes is not None:
        return f.boxes.f1
    if task is Task.EMBEDDING and f.embedding is not None:
        return f.embedding.nn_agreement if f.embedding.nn_agreement is not None else f.embedding.mean_cosine
    cosine = f.whole.cosine
    return None if cosine is None else max(0.0, min(1.0, cosine))


def check(specs: Sequence[OutputSpec], reference: Sequence[np.ndarray], got: Sequence[np.ndarray], *,
          float32: bool) -> None:
    """Raises ConversionError when a variant's outputs are unusable, or a float32 that does not reproduce its source.

    Unusable: values that are not finite where float32's are, or an output that became
    constant where float32's varies (the quantized graph collapsed).
    """
    for spec, ref, out in zip(specs, reference, got):
        if np.isfinite(ref).all() and not np.isfinite(out).all():
            raise ConversionError(f"{spec.name}: the variant's outputs are not finite (NaN or infinite values)")
        if len(ref) and np.ptp(ref) > 0 and np.ptp(out) == 0:
            raise ConversionError(f"{spec.name}: the variant's output is the same constant on every image")
        if float32:
            scale = float(np.sqrt(np.mean(np.square(ref.astype(np.float64))))) or 1.0
            error = float(np.sqrt(np.mean(np.square(ref.astype(np.float64) - out)))) / scale
            if error > _FLOAT_TOLERANCE:
                raise ConversionError(
                    f"the converted float32 model does not reproduce the source model ({spec.name}: relative RMSE "
                    f"{error:.3g}); the conversion route is broken for this model")


def truth_of(paths: Sequence[str], specs: Sequence[OutputSpec], images: ImageSet,
             preprocessing: Preprocessing) -> tuple[np.ndarray | None, str]:
    """The ground truth of the main output, aligned to the images, and where it came from in words.

    Raises:
        InputError: ground truth for a main output that is not a mask, a class map or landmarks,
            or files that do not fit (quant_core.inputs.ground_truth).
    """
    if not paths:
        return None, ""
    main = main_output(specs)
    crop = preprocessing.center_crop
    if main is not None and main.role in (Role.MASK, Role.CLASS_MAP):
        classes = 1 if main.role is Role.MASK else main.shape[-1]
        masks = ground_truth.load_masks(paths, images=images, output_hw=(main.shape[1], main.shape[2]),
                                        classes=classes, center_crop=crop)
        return masks, f"{len(masks)} ground-truth masks"
    if main is not None and main.role is Role.LANDMARKS and main.points and len(paths) == 1:
        points = ground_truth.load_landmarks(paths[0], images=images, input_hw=(preprocessing.height,
                                                                                preprocessing.width),
                                             points=main.points, center_crop=crop)
        return points, f"ground-truth points of {len(points)} images"
    what = "nothing" if main is None else f"{main.name} ({main.role})"
    raise InputError(f"ground truth is for a mask, a class map or landmarks (one JSON file); the model's main output "
                     f"is {what}")


def truth_score(spec: OutputSpec, got: np.ndarray, truth: np.ndarray, *, input_hw: tuple[int, int]) -> float | None:
    """The main output's score against ground truth: mask IoU (mean IoU for a class map) or PCK at 5 %."""
    n = len(got)
    values = np.asarray(got, np.float64).reshape(n, *spec.shape[1:])
    if spec.role in (Role.MASK, Role.CLASS_MAP):
        return MaskMetrics.against_truth(values, truth, threshold=spec.mask_threshold).iou
    return LandmarkMetrics.against_truth(values, truth, input_hw=input_hw, coords=spec.coords or 2,
                                         space=spec.space or CoordSpace.PIXELS).pck_5

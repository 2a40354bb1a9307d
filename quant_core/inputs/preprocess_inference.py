"""Which input normalization a model expects, inferred from the model and the images, with its evidence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from quant_core import metrics
from quant_core.errors import InputError
from quant_core.inputs.images import ImageSet, Labels
from quant_core.inputs.models import SourceModel
from quant_core.inputs.preprocess import Normalization, Preprocessing, PreprocessingOverride, Preset, to_model_input
from quant_core.runner import TFLiteRunner

_RAW_SCALE_LIMIT = 0.02  # an input multiplied by less than this expects 0..255 pixels


def infer_preprocessing(source: SourceModel, images: ImageSet, labels: Labels,
                        override: PreprocessingOverride) -> Preprocessing:
    """Chooses the input normalization, saying how and by what margin, in this order of evidence.

    1. the user's choice; 2. a model that scales its own input (Rescaling/Normalization)
    takes raw 0..255 pixels; 3. a Keras model with batch norm (also inside a nested base
    model): the preset whose activations best match the first BatchNormalization layer's
    training statistics; 4. labelled images: the preset with the best accuracy (ties: the
    order of `Preset`); 5. otherwise [0,1], flagged as an assumption to check.
    """
    info = source.info
    base = override.apply(Preprocessing(info.height, info.width, info.channels))
    if override.normalization is not None:
        return base
    if info.input_scale is not None and abs(info.input_scale) < _RAW_SCALE_LIMIT:
        layer = info.preprocessing_layers[0] if info.preprocessing_layers else "a scaling op at the input"
        return _with(base, override, Normalization.of(Preset.RAW),
                     f"the model scales its input itself ({layer}), so it takes raw 0..255 pixels")
    sample = [i.pixels for i in images.items[:64]]
    candidates = Normalization.presets(channels=info.channels)

    def inputs(candidate: Normalization) -> np.ndarray:
        return to_model_input(sample, _with(base, override, candidate, ""))

    if source.statistics_mismatch is not None:
        scores = {c: source.statistics_mismatch(inputs(c)) for c in candidates}
        ranked = sorted(candidates, key=lambda c: scores[c])
        best, second = ranked[0], ranked[1]
        detail = ", ".join(f"{c.label}: {scores[c]:.2g}" for c in candidates)
        return _with(base, override, best, (
            f"no rescaling layer; the normalization whose activations best match the first BatchNormalization "
            f"layer's training statistics: {best.label}, mismatch {scores[best]:.2g} against {scores[second]:.2g} "
            f"for the next best, {second.label} (all: {detail})"))
    known = [(k, i) for k, i in enumerate(labels.indices[:64]) if i is not None]
    detector = _detector_range(source)
    if not known and detector is not None:
        preset, name = detector
        return _with(base, override, Normalization.of(preset), (
            f"no rescaling or batch-norm layer; the outputs are those of MediaPipe's {name} detector (its anchor "
            f"count and box values), whose graph feeds it {preset.value}"))
    if not known:
        return _with(base, override, Normalization.of(Preset.ZERO_ONE), (
            "could not be inferred (no rescaling or batch-norm layer, no labels): assumed [0,1]; "
            "override it if predictions look wrong"))
    runner = TFLiteRunner(source.float_tflite)
    accuracy = {}
    for candidate in candidates:
        raw = runner.predict(inputs(candidate))
        probs = metrics.to_probabilities(raw, metrics.detect_output_kind(raw))
        accuracy[candidate] = float(np.mean([probs[k].argmax() == i for k, i in known]))
    ranked = sorted(candidates, key=lambda c: (-accuracy[c], candidates.index(c)))
    best, second = ranked[0], ranked[1]
    detail = ", ".join(f"{c.label}: {accuracy[c]:.2f}" for c in candidates)
    return _with(base, override, best, (
        f"no rescaling layer; the normalization with the best accuracy on your labelled images: {best.label}, "
        f"{accuracy[best]:.2f} against {accuracy[second]:.2f} for the next best, {second.label} (all: {detail})"))


def _with(base: Preprocessing, override: PreprocessingOverride, normalization: Normalization,
          source: str) -> Preprocessing:
    """`base` with an inferred normalization and its preset's channel order (unless the user chose one)."""
    order = override.channel_order or normalization.preset.channel_order
    return replace(base, normalization=normalization, channel_order=order, source=source)


_RANGES = {(-1.0, 1.0): Preset.MINUS_ONE_ONE, (0.0, 1.0): Preset.ZERO_ONE}


def _detector_range(source: SourceModel) -> tuple[Preset, str] | None:
    """The input range of a MediaPipe SSD detector recognised by its outputs' shapes (one preset only), else None."""
    from quant_core import detection  # pylint: disable=import-outside-toplevel

    if not source.is_tflite:  # a Keras model's float .tflite is converted (and cached) later, not here
        return None
    shapes = TFLiteRunner(source.float_tflite).output_shapes
    try:
        regressors, _ = detection.ssd_output_order([tuple(d or 1 for d in s) for s in shapes])
    except InputError:
        return None
    rows = shapes[regressors]
    fits = detection.matching_presets(num_anchors=rows[1] or 0, num_coords=rows[2] or 0)
    wanted = fits[0].config.input_range if len(fits) == 1 else None
    preset = _RANGES.get(wanted) if wanted is not None else None
    return None if preset is None else (preset, fits[0].value)

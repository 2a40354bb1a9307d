"""What the workbench reads from a loaded Keras model: preprocessing layers, input scaling, batch norm.

Everything here works on an already loaded model (safe mode, no custom code) and never
changes it. `bn_mismatch` is the evidence `infer_preprocessing` uses for models without a
rescaling layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from quant_core.errors import UnsupportedModelError

_PREPROCESSING_LAYERS = {"Rescaling", "Normalization", "Resizing", "CenterCrop"}


def traced_call(model: Any, input_shape: tuple) -> Any:
    """`model(batch, training=False)` as one graph, traced once for every batch size.

    Memory, not speed: run_compare on a MobileNetV2-size model peaked at 2.1 GB with eager
    calls and 1.3 GB with this graph (bench 4), with matching outputs. The None batch
    dimension lets full batches and the shorter last one share the one trace.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    spec = tf.TensorSpec((None, *(int(d) for d in input_shape[1:])), tf.as_dtype(model.inputs[0].dtype))
    return tf.function(lambda batch: model(batch, training=False), input_signature=[spec])


def preprocessing_layers(model: Any) -> tuple[str, ...]:
    """Class names of rescaling/normalization layers anywhere in the model."""
    found: list[str] = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        if type(layer).__name__ in _PREPROCESSING_LAYERS:
            found.append(f"{type(layer).__name__} ({layer.name})")
        stack.extend(getattr(layer, "layers", []))
    return tuple(found)


def input_scale(model: Any) -> float | None:
    """The factor of the first Rescaling/Normalization layer (the converter may fold it away)."""
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        kind = type(layer).__name__
        if kind == "Rescaling":
            return float(np.median(np.abs(np.asarray(layer.scale, dtype=np.float64))))
        if kind == "Normalization" and getattr(layer, "variance", None) is not None:
            return float(1.0 / np.sqrt(np.median(np.asarray(layer.variance, dtype=np.float64)) + 1e-12))
        stack[:0] = list(getattr(layer, "layers", []))
    return None


def bn_mismatch(model: Any) -> Callable[[np.ndarray], float] | None:
    """A function scoring how unlike training data a batch looks to the first BatchNormalization.

    The score is the mean over channels of KL(batch statistics || BN moving statistics)
    for Gaussians; None when the model has no BatchNormalization layer reachable from the
    input. Nested models (a keras.applications base inside a transfer-learning model) are
    searched too.
    """
    try:
        found = _first_bn(model)
    except UnsupportedModelError:
        found = None
    if found is None:
        return None
    probe, bn = found
    mean_bn = np.asarray(bn.moving_mean, np.float64)
    var_bn = np.asarray(bn.moving_variance, np.float64) + 1e-6

    def mismatch(x: np.ndarray) -> float:
        with warnings.catch_warnings():  # models saved with list inputs warn about the structure
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            acts = np.asarray(probe(x[:16]), np.float64).reshape(-1, mean_bn.size)
        mean, var = acts.mean(0), acts.var(0) + 1e-6
        return float(np.mean(0.5 * (np.log(var_bn / var) + (var + (mean - mean_bn) ** 2) / var_bn - 1.0)))

    return mismatch


def _first_bn(model: Any) -> tuple[Callable[[np.ndarray], Any], Any] | None:
    """(input -> the first BatchNormalization layer's input, that layer), descending into nested models.

    Layers are visited in the model's (topological) order; a nested model is entered
    through the part of the outer graph that feeds it.
    """
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "BatchNormalization":
            return _path_to(model, layer), layer
        inner = _first_bn(layer) if getattr(layer, "layers", None) else None
        if inner is not None:
            outer, (inner_probe, bn) = _path_to(model, layer), inner
            return (lambda x, probe=inner_probe, feed=outer: probe(feed(x))), bn
    return None


def _path_to(model: Any, layer: Any) -> Callable[[np.ndarray], Any]:
    """The part of `model` from its input to `layer`'s input, as a function (identity when adjacent).

    Uses the layer's call nodes: `layer.input` of a nested model is its own inner input,
    not the outer tensor that feeds it.
    """
    import keras  # pylint: disable=import-outside-toplevel

    for node in layer._inbound_nodes:  # pylint: disable=protected-access
        feed = node.input_tensors[0] if node.input_tensors else None
        if feed is model.inputs[0]:
            return lambda x: x
        try:
            prefix = keras.Model(model.inputs, feed)
        except (ValueError, AttributeError, TypeError):
            continue  # a call of a shared layer from another graph
        return lambda x: prefix(x, training=False)
    raise UnsupportedModelError(f"layer {layer.name} is not connected to the model's input")

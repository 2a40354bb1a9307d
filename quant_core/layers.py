"""Where a quantized variant loses accuracy: each layer's error against the float model, in graph order.

Both models run on the same images with every intermediate tensor kept; each quantized
op's output is dequantized and compared with the float model's tensor of the same name
(both backends keep the float model's tensor names). Per layer:
- `rmse_steps`: RMSE / the output's quantization scale, i.e. how many quantization steps
  the tensor is off on average (1 is what rounding alone gives at worst, ~0.3 typically);
- `max_abs_error`: the largest |quantized - float| seen, in the tensor's own units;
- `relative_error`: RMSE / RMS of the float tensor, the noise-to-signal ratio accumulated
  from the input up to this layer;
- `added`: this layer's relative error minus its input's (the largest among its inputs, named
  by `source`): the error the layer itself adds, negative when it evens noise out (pooling,
  averaging, a softmax), which is why the accumulated error can fall on the way to the output.

So the quantities add up: following `source` back from the last layer gives the path the
output's error came through, and along it the input's own rounding plus every `added` is the
output's relative error, exactly (`LayerReport.ledger`). Layers off that path (the better
branch where two join) add to a branch the output's error does not follow: their `added` is
still what they add there. The ranking that matters for "keep it in float" is `added`;
`relative_error` at the last layers is what changes predictions.

The same measure serves every backend (the TF converter and the LiteRT Quantizer) and every
calibrated mode, and it is checked against TensorFlow's own QuantizationDebugger in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from quant_core.calibration import spread_order
from quant_core.errors import InputError, first_line

_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE"}  # inserted at float/int boundaries: they carry their input's error
_SKIP = {"DELEGATE"}
_CUSTOM_OP = re.compile(r"unresolved custom op: (\w+(?:[.-]\w+)*)")  # the op name, not the sentence's full stop
MAX_IMAGES = 32  # the error statistics settle after a few dozen images; every tensor is kept per image


@dataclass(frozen=True)
class LayerError:
    """One quantized op's output compared with the float model's."""

    position: int  # execution order among the compared layers (0 = first)
    op: str  # the op type, e.g. CONV_2D
    tensor: str  # the output tensor's name: what `Recipe.float_layers` takes
    dtype: str  # the output's dtype in the variant: int8, int16, or float32 for a layer kept in float
    scale: float | None  # the output's quantization scale (None for a float output)
    rmse_steps: float | None  # RMSE in quantization steps (None for a float output)
    max_abs_error: float
    relative_error: float  # RMSE / RMS(float): noise-to-signal, accumulated up to here
    added: float  # relative_error minus the largest relative error among the op's inputs
    source: int | None = None  # position of the layer that input comes from (None: the model's input)


@dataclass(frozen=True)
class ErrorLedger:
    """How the output's error adds up along its path: start + added - removed = output, exactly."""

    start: float  # the error already in the model's input (rounding an int8 input); 0 for a float input
    added: float  # the sum of the positive `added` along the path
    removed: float  # minus the sum of the negative `added` along the path: noise evened out
    output: float  # the output's relative error
    path: int  # layers on the path
    layers: int  # layers compared


@dataclass(frozen=True)
class OutputLayer:
    """One output of the model, and the layer its error comes from."""

    name: str  # the output tensor's name in the float model
    layer: int | None  # position of that layer among the compared ones (None: no compared layer leads to it)


@dataclass(frozen=True)
class LayerReport:
    """A variant's per-layer error on some images.

    A model with several outputs (landmarks beside a presence score, a mask beside
    heatmaps) has one path per output: `output_error`, `path` and `ledger` follow the
    output `output` names (the main one, quant_core.tasks.main_output); `output_errors`
    gives every output's. A model with one output follows its last layer.
    """

    variant: str
    images: int
    layers: tuple[LayerError, ...]
    outputs: tuple[OutputLayer, ...] = ()  # every output of the model, in its order
    output: int = 0  # index into `outputs`: the output the report follows

    def worst(self, n: int) -> tuple[LayerError, ...]:
        """The n layers that add the most error, worst first (float layers add none of their own)."""
        quantized = [layer for layer in self.layers if layer.scale is not None]
        return tuple(sorted(quantized, key=lambda layer: -layer.added)[:n])

    def layer(self, tensor: str) -> LayerError:
        """The layer whose output tensor has this name."""
        return next(layer for layer in self.layers if layer.tensor == tensor)

    @property
    def end(self) -> int | None:
        """The position of the layer the report follows: the followed output's (several outputs), else the last."""
        if len(self.outputs) > 1 and 0 <= self.output < len(self.outputs):
            position = self.outputs[self.output].layer
            if position is not None:
                return position
        return len(self.layers) - 1 if self.layers else None

    @property
    def output_name(self) -> str | None:
        """The followed output's name when the model has several outputs, else None."""
        return self.outputs[self.output].name if len(self.outputs) > 1 and self.output < len(self.outputs) else None

    @property
    def output_error(self) -> float:
        """The relative error of the followed output's layer (what the predictions see)."""
        return self.layers[self.end].relative_error if self.end is not None else 0.0

    def output_errors(self) -> tuple[tuple[str, float | None], ...]:
        """(name, relative error) of every output of the model; None where no compared layer leads to it."""
        return tuple((o.name, None if o.layer is None else self.layers[o.layer].relative_error) for o in self.outputs)

    def path(self) -> tuple[LayerError, ...]:
        """The layers the output's error came through, input first: back from the followed layer by `source`."""
        chain: list[LayerError] = []
        position = self.end
        while position is not None:
            chain.append(self.layers[position])
            position = self.layers[position].source
        return tuple(reversed(chain))

    def ledger(self) -> ErrorLedger:
        """The output's error as the input's plus what the layers on its path add and take away."""
        path = self.path()
        adds = [layer.added for layer in path]
        start = path[0].relative_error - path[0].added if path else 0.0
        return ErrorLedger(start=start, added=sum(a for a in adds if a > 0), removed=-sum(a for a in adds if a < 0),
                           output=self.output_error, path=len(path), layers=len(self.layers))


def percent(value: float, *, signed: bool = False) -> str:
    """A relative error as every view shows it (one decimal), e.g. '13.4%', or '+22.0%' / '-1.6%' for an add."""
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def layer_name(tensor: str) -> str:
    """A layer's readable name from its output tensor's: 'model_1/block_16_project_BN_1/batchnorm/add_1;...' ->
    'block_16_project_BN' (the Keras layer; Keras 3's '_1' suffix dropped)."""
    first = tensor.split(";")[0]
    if re.fullmatch(r"StatefulPartitionedCall(_\d+)?:\d+", first):  # the converter's name for the model's output
        return "model output"
    parts = first.split("/")
    return re.sub(r"_\d+$", "", parts[1] if len(parts) >= 2 else parts[0])


def layer_errors(float_model: bytes, quantized: bytes, x: np.ndarray, *, variant: str, output: int = 0) -> LayerReport:
    """Compares every quantized op's output with the float model's on up to MAX_IMAGES images (float32, [N, ...]),
    evenly spread over `x` (images come grouped by class). With several outputs, the report follows `output`
    (an index into the model's outputs; by default the first).

    Raises:
        InputError: a model the interpreter cannot run (a custom op the builtin kernels lack), or no layer the
            two models share.
    """
    x = np.asarray(x[spread_order(len(x))[:MAX_IMAGES]], dtype=np.float32)  # spread over the folders (classes)
    floats, quant = _Preserving(float_model), _Preserving(quantized)
    float_index = {t["name"]: t["index"] for t in floats.tensors.values()}
    steps = [op for op in quant.ops if op["op_name"] not in _SKIP]
    compared = [op for op in steps if op["op_name"] not in _PASS_THROUGH
                and quant.tensors[op["outputs"][0]]["name"] in float_index
                and _activation(quant.tensors[op["outputs"][0]])]
    if not compared:
        raise InputError("the quantized model shares no layer names with the float model: nothing to compare")
    sums = {op["index"]: _Sums() for op in compared}
    inputs = quant.input_indices
    input_sums = {i: _Sums() for i in inputs if quant.tensors[i]["name"] in float_index}
    for k in range(len(x)):
        floats.run(x[k : k + 1])
        quant.run(x[k : k + 1])
        for i, acc in input_sums.items():
            acc.add(quant.value(i), floats.value(float_index[quant.tensors[i]["name"]]))
        for op in compared:
            out = op["outputs"][0]
            sums[op["index"]].add(quant.value(out), floats.value(float_index[quant.tensors[out]["name"]]))
    relative = {i: acc.relative for i, acc in input_sums.items()}  # by tensor index in the quantized model
    origin: dict[int, int | None] = dict.fromkeys(relative)  # by tensor index: the layer its error comes from
    layers: list[LayerError] = []
    for op in steps:
        out = op["outputs"][0]
        worst_input = max((i for i in op["inputs"] if i >= 0 and i in relative), key=relative.__getitem__,
                          default=None)
        before = 0.0 if worst_input is None else relative[worst_input]
        source = None if worst_input is None else origin[worst_input]
        if op["index"] not in sums:  # QUANTIZE/DEQUANTIZE, or a tensor the float model has not: carries its input's
            relative[out], origin[out] = before, source
            continue
        acc, tensor = sums[op["index"]], quant.tensors[out]
        relative[out], origin[out] = acc.relative, len(layers)
        scale = _scale(tensor)
        layers.append(LayerError(
            position=len(layers), op=op["op_name"], tensor=tensor["name"], dtype=np.dtype(tensor["dtype"]).name,
            scale=scale, rmse_steps=None if scale is None else acc.rmse / scale, max_abs_error=acc.max_abs,
            relative_error=acc.relative, added=acc.relative - before, source=source))
    outputs = tuple(OutputLayer(name, origin.get(i)) for name, i in zip(floats.output_names, quant.output_indices))
    return LayerReport(variant=variant, images=len(x), layers=tuple(layers), outputs=outputs,
                       output=output if 0 <= output < len(outputs) else 0)


class _Sums:
    """Running sums of one tensor's error over images."""

    def __init__(self) -> None:
        self.squared_error = 0.0
        self.squared_signal = 0.0
        self.count = 0
        self.max_abs = 0.0

    def add(self, got: np.ndarray, want: np.ndarray) -> None:
        diff = got.astype(np.float64) - want.astype(np.float64)
        self.squared_error += float(np.sum(diff * diff))
        self.squared_signal += float(np.sum(want.astype(np.float64) ** 2))
        self.count += diff.size
        self.max_abs = max(self.max_abs, float(np.max(np.abs(diff)))) if diff.size else self.max_abs

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.squared_error / self.count)) if self.count else 0.0

    @property
    def relative(self) -> float:
        return float(np.sqrt(self.squared_error / self.squared_signal)) if self.squared_signal > 0 else 0.0


class _Preserving:
    """An interpreter (builtin kernels) that keeps every intermediate tensor; values come back dequantized."""

    def __init__(self, model: bytes) -> None:
        try:
            self.interp = Interpreter(model_content=bytes(model), experimental_preserve_all_tensors=True,
                                      experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self.interp.allocate_tensors()
        except (RuntimeError, ValueError) as err:
            custom = _CUSTOM_OP.search(str(err))
            if custom:
                raise InputError(
                    f"per-layer error runs LiteRT's builtin kernels, keeping every tensor, and they lack the custom op "
                    f"{custom[1]} of this model (only the XNNPACK delegate runs it, as a whole): its layers cannot be "
                    "compared one by one") from None
            raise InputError(f"the LiteRT interpreter cannot load this model: {first_line(err)}") from None
        self.tensors: dict[int, dict[str, Any]] = {t["index"]: t for t in self.interp.get_tensor_details()}
        self.ops: list[dict[str, Any]] = self.interp._get_ops_details()  # pylint: disable=protected-access
        details = self.interp.get_input_details()
        if len(details) != 1:
            raise InputError(f"expected a model with one input, got {len(details)}")
        self.input = details[0]
        self.input_indices = [self.input["index"]]
        outputs = self.interp.get_output_details()
        self.output_indices = [int(o["index"]) for o in outputs]
        self.output_names = [str(o["name"]) for o in outputs]

    def run(self, batch: np.ndarray) -> None:
        dtype = np.dtype(self.input["dtype"])
        if dtype.kind in "iu":
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
        self.interp.set_tensor(self.input["index"], batch.astype(dtype))
        try:
            self.interp.invoke()
        except RuntimeError as err:
            raise InputError(f"the LiteRT interpreter failed to run this model: {first_line(err)}") from None

    def value(self, index: int) -> np.ndarray:
        """A tensor's value in real units (quantized tensors dequantized with their per-tensor scale)."""
        tensor = self.tensors[index]
        raw = self.interp.get_tensor(index)
        scale = _scale(tensor)
        if scale is None:
            return raw.astype(np.float32)
        zero_point = tensor["quantization_parameters"]["zero_points"][0]
        return ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _scale(tensor: dict[str, Any]) -> float | None:
    """A quantized activation's scale, or None for a float tensor."""
    if np.dtype(tensor["dtype"]).kind == "f":
        return None
    scales = tensor["quantization_parameters"]["scales"]
    return float(scales[0]) if len(scales) else None


def _activation(tensor: dict[str, Any]) -> bool:
    """A float or per-tensor quantized activation (not an index, shape or boolean tensor)."""
    dtype = np.dtype(tensor["dtype"])
    if dtype.kind == "f":
        return True
    return dtype in (np.int8, np.uint8, np.int16) and len(tensor["quantization_parameters"]["scales"]) == 1
